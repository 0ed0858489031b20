// Test support, for tests/ only: a booted machine for the length of a test.
//
//     TEST_CASE("...", "[unit]") {
//         usmp::test::machine m(4);             // boots 4 CPUs
//         m.run([] { ... on a green thread ... });
//     }                                          // shutdown; checks leaks
//
// At teardown it checks that no green thread is left alive and that every
// stack came back (no stack owned by a thread any more).
#pragma once

#include <catch2/catch.hpp>

#include <cstdio>
#include <exception>

#include "runtime/machine.h"
#include "runtime/stack.h"
#include "runtime/thread.h"

namespace usmp::test {

class machine {
public:
	explicit machine(int ncpus, bool full_preemption = false)
	{
		machine_config cfg;
		cfg.ncpus = ncpus;
		cfg.full_preemption = full_preemption;
		boot(cfg);
	}
	explicit machine(const machine_config &cfg) { boot(cfg); }
	~machine()
	{
		int live = machine_shutdown();
		stack_stats s = stack_get_stats();
		// Destructors must not throw: report with CHECK only.
		CHECK(live == 0);
		CHECK(s.in_use == 0);
	}
	machine(const machine &) = delete;
	machine &operator=(const machine &) = delete;

	// Run fn on a green thread (named "test") and wait for it.  An
	// exception fn throws (a failed REQUIRE) is carried back and rethrown
	// here, on the test's own thread, instead of escaping the green thread
	// (which panics, as std::thread would terminate).
	template <class F>
	void run(F &&fn, thread_attr attr = {})
	{
		if (attr.name == nullptr)
			attr.name = "test";
		std::exception_ptr ex;
		thread *td;
		// Catch2 2.x is not thread-safe: no REQUIRE on this thread
		// while fn may be running its own CHECKs on a CPU.  Both
		// results are checked once the thread is joined.
		int error = thread_create(&td, attr, [&] {
			try {
				// Through the application boundary
				// (runtime/app_call.h), so that a test body's loop
				// is preemptible like a user's thread.
				usmp_app_call(fn);
			} catch (...) {
				ex = std::current_exception();
			}
		});
		int jerror = error == 0 ? thread_join(td) : 0;
		REQUIRE(error == 0);
		REQUIRE(jerror == 0);
		if (ex)
			std::rethrow_exception(ex);
	}

private:
	void boot(const machine_config &cfg)
	{
		int error = machine_boot(cfg);
		REQUIRE(error == 0);
	}
};

} // namespace usmp::test

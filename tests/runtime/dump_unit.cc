// Thread dumps (runtime/dump.h): the API names a thread blocked on a named
// mutex with its wait channel, shows the locks-held hook's lines, and the
// dump signal (SIGQUIT by default) writes the dump from the dumper thread;
// dump_signal = 0 leaves the signal alone.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/counters.h"
#include "runtime/dump.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "support/death.h"
#include "support/machine.h"
#include "support/observe.h"
#include "sync/mutex.h"

using namespace usmp;

namespace {

const thread *g_hook_holder = nullptr;

} // namespace

TEST_CASE("thread_dump() names a thread blocked on a named mutex, with its wait channel and the owner", "[unit]")
{
	test::machine m(2);
	m.run([] {
		mutex mtx("dump test mutex");
		mtx.lock();
		green_thread t(thread_attr{.name = "dump-waiter"}, [&] {
			mtx.lock();
			mtx.unlock();
		});
		thread *td = t.native_handle();
		test::wait_blocked_on_lock(td);
		g_hook_holder = curthread();
		thread_dump_set_locks_hook([](const thread *t, void (*emit)(void *, const char *),
					       void *ctx) {
			if (t == g_hook_holder)
				emit(ctx, "exclusive sleep mutex \"dump test mutex\"");
		});
		std::string d = test::capture(thread_dump);
		thread_dump_set_locks_hook(nullptr);
		INFO(d);
		char want[128];
		std::snprintf(want, sizeof(want), "\"dump-waiter\" tid %d: blocked, cpu",
		    td->td_tid);
		CHECK(d.find(want) != std::string::npos);
		std::snprintf(want, sizeof(want), "wchan %p \"dump test mutex\"",
		    td->td_wchan);
		CHECK(d.find(want) != std::string::npos);
		// The owner, from the turnstile: this thread.
		std::snprintf(want, sizeof(want),
		    "(sleep mutex \"dump test mutex\", owner \"test\" tid %d)",
		    curthread()->td_tid);
		CHECK(d.find(want) != std::string::npos);
		CHECK(d.find("pri 120 (base 120)") != std::string::npos);
		std::snprintf(want, sizeof(want), "\"test\" tid %d: running",
		    curthread()->td_tid);
		CHECK(d.find(want) != std::string::npos);
		CHECK(d.find("locks held:\n      exclusive sleep mutex \"dump test mutex\"") !=
		    std::string::npos);
		CHECK(d.rfind("usmp: thread dump: 2 CPUs,", 0) == 0);
		mtx.unlock();
		t.join();
	});
}

TEST_CASE("SIGQUIT writes a thread dump to stderr; dump_signal = 0 leaves it alone", "[unit][death]")
{
	auto r = test::run_death("dump on SIGQUIT", [] {
		usmp::run({.ncpus = 2}, [] {
			mutex mtx("sigquit mutex");
			mtx.lock();
			green_thread t(thread_attr{.name = "quit-waiter"}, [&] {
				mtx.lock();
				mtx.unlock();
			});
			test::wait_blocked_on_lock(t.native_handle());
			uint64_t n0 = 0, n = 0;
			counter_read("kern.dump.count", &n0);
			kill(getpid(), SIGQUIT);
			// The dumper thread writes it; wait for its count.
			do {
				thread_yield();
				counter_read("kern.dump.count", &n);
			} while (n == n0);
			mtx.unlock();
			t.join();
		});
	});
	INFO(r.describe());
	CHECK(r.exited_with(0));
	CHECK(r.contains("usmp: thread dump: 2 CPUs"));
	CHECK(r.contains("\"quit-waiter\" tid "));
	CHECK(r.contains("blocked"));
	CHECK(r.contains("\"sigquit mutex\""));

	auto off = test::run_death("dump signal off", [] {
		usmp::run({.ncpus = 1, .dump_signal = 0}, [] {
			kill(getpid(), SIGQUIT);
			for (;;)
				thread_yield();
		});
	});
	CHECK(off.killed_by(SIGQUIT));
	CHECK_FALSE(off.contains("thread dump"));
}

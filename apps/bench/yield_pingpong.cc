// yield_pingpong: two threads on one CPU yield to each other.
//
// One iteration is one yield.  The measuring thread yields once per pass
// and its partner yields once in between, so a pass is two yields and is
// counted as two iterations (KeepRunningBatch(2)); the time per iteration is
// the total over both threads' yields divided by their number, the "ns/yield"
// of the peers' figures (Boost.Fiber: 72-93 ns).
//
// usmp: both green threads are bound to CPU 0 of a 2-CPU machine
// (thread_attr.cpu), so no switch crosses CPUs; thread_yield() is
// kern_yield(9).  Boost.Fiber: two fibers of the round_robin scheduler of
// the benchmark's OS thread; this_fiber::yield().
//
// Target: usmp <= 0.4x Boost.Fiber.

#include "apps/bench/bench.h"

#include <boost/fiber/all.hpp>

#include <atomic>

namespace usmp_bench {
namespace {

const machine_spec yield_machine = {
	"yield_pingpong: 2 CPUs",
	usmp::machine_config{},
};

// The partner yields until the measuring side is done.  A relaxed flag is
// enough: both sides run on one CPU (one OS thread), one at a time.
void
yield_pingpong_usmp(benchmark::State &state)
{
	if (!use_machine(state, yield_machine))
		return;
	usmp::thread_attr attr;
	attr.cpu = 0;
	std::atomic<bool> stop{false};

	attr.name = "yield partner";
	usmp::thread *partner;
	if (int error = usmp::thread_create(&partner, attr, [&stop] {
		    while (!stop.load(std::memory_order_relaxed))
			    usmp::thread_yield();
	    });
	    error != 0) {
		state.SkipWithError("thread_create() of the partner failed");
		return;
	}

	attr.name = "yield measure";
	bool ran = run_on_green_thread(state, attr, [&] {
		while (state.KeepRunningBatch(2))
			usmp::thread_yield();
		stop.store(true, std::memory_order_relaxed);
	});
	if (!ran)
		stop.store(true, std::memory_order_relaxed);
	usmp::thread_join(partner);
}

void
yield_pingpong_boost_fiber(benchmark::State &state)
{
	use_no_machine();
	bool stop = false;
	boost::fibers::fiber partner([&stop] {
		while (!stop)
			boost::this_fiber::yield();
	});
	run_on_fiber([&] {
		while (state.KeepRunningBatch(2))
			boost::this_fiber::yield();
		stop = true;
	});
	partner.join();
}

} // namespace

void
register_yield_pingpong()
{
	timed("yield_pingpong", "usmp", yield_pingpong_usmp)
	    ->Unit(benchmark::kNanosecond);
	timed("yield_pingpong", "boost_fiber", yield_pingpong_boost_fiber)
	    ->Unit(benchmark::kNanosecond);
	add_ratio({"yield_pingpong", "usmp", "boost_fiber", 0.4});
}

} // namespace usmp_bench

// spawn_join: create one thread that does nothing, and join it.
//
// One iteration is one create plus one join, with one thread alive besides
// the creator at any time, so a stack is reused from one iteration to the
// next.
//
// usmp: the creator is an unbound green thread on a 2-CPU machine, the
// child gets the machine's default stack (64 KiB usable between two red
// zones, from the per-CPU stack cache) and the default priority; where the
// child runs is the scheduler's choice, as it would be in a program.
// Boost.Fiber: a fiber of the round_robin scheduler of the benchmark's OS
// thread creates the child with the default launch policy (post) and its
// default, unguarded stack allocator (fixedsize_stack: 128 KiB from malloc),
// the peers' "create+join, default_stack" (473-513 ns).
//
// Target: usmp (red-zoned stacks) <= 0.5x Boost.Fiber (unguarded stacks).

#include "apps/bench/bench.h"

#include <boost/fiber/all.hpp>

namespace usmp_bench {
namespace {

const machine_spec spawn_machine = {
	"spawn_join: 2 CPUs, default stacks",
	usmp::machine_config{},
};

void
spawn_join_usmp(benchmark::State &state)
{
	if (!use_machine(state, spawn_machine))
		return;
	usmp::thread_attr loop_attr;
	loop_attr.name = "spawn_join loop";
	run_on_green_thread(state, loop_attr, [&state] {
		const usmp::thread_attr child_attr;
		for (auto _ : state) {
			usmp::thread *td;
			int error = usmp::thread_create(&td, child_attr, [] {});
			if (error != 0) {
				state.SkipWithError("thread_create() failed");
				break;
			}
			usmp::thread_join(td);
		}
	});
}

void
spawn_join_boost_fiber(benchmark::State &state)
{
	use_no_machine();
	run_on_fiber([&state] {
		for (auto _ : state) {
			boost::fibers::fiber f([] {});
			f.join();
		}
	});
}

} // namespace

void
register_spawn_join()
{
	timed("spawn_join", "usmp", spawn_join_usmp)
	    ->Unit(benchmark::kNanosecond);
	timed("spawn_join", "boost_fiber", spawn_join_boost_fiber)
	    ->Unit(benchmark::kNanosecond);
	add_ratio({"spawn_join", "usmp", "boost_fiber", 0.5});
}

} // namespace usmp_bench

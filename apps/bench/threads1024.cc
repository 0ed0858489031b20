// threads1024: 1024 threads alive at once, then all joined; Plan 9's
// experiment with three-segment stacks (red zone, stack, red zone) against
// malloc'd ones: 2.25 s against 0.87 s on a 400 MHz K6, a 2.6x penalty.
//
// One iteration creates 1024 threads and joins them.  Every thread counts
// itself in and waits until all 1024 have, so all of them are alive (and
// have run on their stacks) before the first is joined.  Every iteration is
// a cold start: before it, untimed, every cached and pooled stack goes back
// to the system (usmp::stack_drain_all()).
//
// usmp_redzone: default stacks, 64 KiB usable between two SG_NONE red zones.
// usmp_malloc:  the same machine booted with malloc_stacks (64 KiB from
//               malloc, no red zones): the baseline of the red zones' cost.
// Both machines have 2 CPUs, and stack_cache_low = 0 so that an idle CPU
// does not refill its stack cache between the drain and the next iteration
// (the start would not be cold).  A usmp thread waits with thread_yield().
//
// std_thread: 1024 std::threads with glibc's default 8 MiB stacks, waiting
// on a std::latch (an OS thread that spins on sched_yield() would steal the
// creator's CPU).  There is no cache to drain: glibc keeps at most 40 MiB
// of exited threads' stacks, five of these.
//
// Target: usmp_redzone <= 1.1x usmp_malloc.

#include "apps/bench/bench.h"

#include <atomic>
#include <cstdio>
#include <latch>
#include <system_error>
#include <thread>
#include <vector>

#include "runtime/stack.h"

namespace usmp_bench {
namespace {

constexpr int nthreads = 1024;

usmp::machine_config
threads1024_config(bool malloc_stacks)
{
	usmp::machine_config cfg;
	cfg.malloc_stacks = malloc_stacks;
	cfg.stack_cache_low = 0;
	return cfg;
}

const machine_spec redzone_machine = {
	"threads1024: 2 CPUs, red-zoned stacks, no idle refill",
	threads1024_config(false),
};
const machine_spec malloc_machine = {
	"threads1024: 2 CPUs, malloc'd stacks, no idle refill",
	threads1024_config(true),
};

void
set_counters(benchmark::State &state)
{
	state.counters["s_per_thread"] = benchmark::Counter(nthreads,
	    benchmark::Counter::kIsIterationInvariantRate |
		benchmark::Counter::kInvert);
}

// Return every cached stack to the system and check that it went: the
// benchmark claims a cold start.  False after SkipWithError.
bool
drain_stacks(benchmark::State &state)
{
	usmp::stack_drain_all();
	usmp::stack_stats st = usmp::stack_get_stats();
	if (st.cached != 0 || st.pooled != 0) {
		char msg[160];
		std::snprintf(msg, sizeof(msg),
		    "stack_drain_all() left %zu cached and %zu pooled stacks: "
		    "not a cold start", st.cached, st.pooled);
		state.SkipWithError(msg);
		return false;
	}
	return true;
}

void
threads1024_usmp(benchmark::State &state, const machine_spec &spec)
{
	if (!use_machine(state, spec))
		return;
	usmp::thread_attr loop_attr;
	loop_attr.name = "threads1024 loop";
	run_on_green_thread(state, loop_attr, [&state] {
		std::vector<usmp::thread *> tds(nthreads);
		std::atomic<int> started;
		for (auto _ : state) {
			state.PauseTiming();
			started.store(0, std::memory_order_relaxed);
			bool cold = drain_stacks(state);
			state.ResumeTiming();
			if (!cold)
				break;

			int n = 0;
			for (; n < nthreads; n++) {
				int error = usmp::thread_create(&tds[n], {},
				    [&started] {
					    started.fetch_add(1,
						std::memory_order_relaxed);
					    while (started.load(
						std::memory_order_relaxed) <
					        nthreads)
						    usmp::thread_yield();
				    });
				if (error != 0)
					break;
			}
			if (n < nthreads) {
				// Let the ones made so far finish.
				started.fetch_add(nthreads,
				    std::memory_order_relaxed);
				state.SkipWithError("thread_create() failed");
			}
			for (int i = 0; i < n; i++)
				usmp::thread_join(tds[i]);
			if (n < nthreads)
				break;
		}
	});
	set_counters(state);
}

void
threads1024_usmp_redzone(benchmark::State &state)
{
	threads1024_usmp(state, redzone_machine);
}

void
threads1024_usmp_malloc(benchmark::State &state)
{
	threads1024_usmp(state, malloc_machine);
}

void
threads1024_std_thread(benchmark::State &state)
{
	use_no_machine();
	std::vector<std::thread> threads;
	threads.reserve(nthreads);
	for (auto _ : state) {
		std::latch all_started(nthreads);
		try {
			for (int i = 0; i < nthreads; i++)
				threads.emplace_back(
				    [&all_started] { all_started.arrive_and_wait(); });
		} catch (const std::system_error &e) {
			all_started.count_down(nthreads - threads.size());
			for (std::thread &t : threads)
				t.join();
			state.SkipWithError(e.what());
			break;
		}
		for (std::thread &t : threads)
			t.join();
		threads.clear();
	}
	set_counters(state);
}

} // namespace

void
register_threads1024()
{
	timed("threads1024", "usmp_redzone", threads1024_usmp_redzone)
	    ->Unit(benchmark::kMillisecond);
	timed("threads1024", "usmp_malloc", threads1024_usmp_malloc)
	    ->Unit(benchmark::kMillisecond);
	timed("threads1024", "std_thread", threads1024_std_thread)
	    ->Unit(benchmark::kMillisecond);
	add_ratio({"threads1024", "usmp_redzone", "usmp_malloc", 1.1});
	add_ratio({"threads1024", "usmp_redzone", "std_thread", 0});
}

} // namespace usmp_bench

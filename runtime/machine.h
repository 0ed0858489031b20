// The machine: boot N CPUs, run green threads on them, shut down.
//
//     int main() {
//         return usmp::run({.ncpus = 4}, [] {
//             usmp::green_thread t([] { std::printf("on CPU %d\n", usmp::curcpu()); });
//             t.join();
//             return 0;
//         });
//     }
//
// One machine runs per process at a time.  Each CPU is an OS thread, named
// "usmp cpu<N>", pinned with hwloc to a processing unit (round robin when
// there are more CPUs than processing units).
#pragma once

#include <csignal>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <type_traits>

#include "runtime/app_call.h"

namespace usmp {

class sim_log;

// Deterministic simulation (runtime/sim.h): the scheduling strategy.
enum class sim_strategy : unsigned char {
	random, // uniform choice among the CPUs that can run, at every point
	pct,    // PCT: random thread priorities, pct_depth - 1 change points
};

// The simulation's knobs, used when machine_config::simulate is set.
struct sim_config {
	uint64_t seed = 1;
	sim_strategy strategy = sim_strategy::random;
	int pct_depth = 3;            // PCT's d (bug depth): d - 1 change points
	uint64_t pct_steps = 0;       // PCT's k (run length in steps); 0: 64,
	                              // and explore() learns it from each run
	int preempt_bound = -1;       // at most this many preemptions; -1: no bound
	uint64_t max_steps = 2000000; // more steps than this: a livelock, reported
	uint64_t step_ns = 1000;      // virtual time each step takes
	int intr_hold_max = 8;        // a due interrupt waits 0..this many of
	                              // its CPU's points, drawn (runtime/sim.cc)
	sim_log *log = nullptr;       // append every step here (may be null)
	const char *log_file = nullptr; // write the log here at the end or on failure
	const sim_log *replay = nullptr; // take the choices from this log
	const char *replay_hint = nullptr; // the command line printed on failure
};

struct machine_config {
	int ncpus = 0;                    // 0: one per processing unit hwloc reports
	bool pin = true;                  // pin each CPU's OS thread to a PU
	bool full_preemption = false;     // FULL_PREEMPTION: see sched/sched.h
	std::size_t stack_size = 64 * 1024; // default usable stack bytes
	std::size_t commit_limit = 0;     // SG_COMMIT bytes allowed; 0: RLIMIT_MEMLOCK
	int hz = 1000;                    // clock ticks per second
	int slice_ticks = 10;             // timeshare slice, in ticks
	bool malloc_stacks = false;       // stacks from malloc, no red zones (baseline)
	unsigned stack_cache_low = 16;    // see runtime/stack.h
	unsigned stack_cache_high = 256;
	// Signal that writes a thread dump to stderr (runtime/dump.h), Java and
	// Go style; 0: none (the signal keeps its previous action).
	int dump_signal = SIGQUIT;
	// Deterministic simulation (runtime/sim.h): every CPU on the calling OS
	// thread, every choice from sim.seed, virtual time.  ncpus 0 means 4
	// then (the host's count would make runs differ between machines).
	bool simulate = false;
	sim_config sim{};
};

// Boot a machine.  Returns 0, EBUSY if one already runs, or an errno from
// the system.  The caller (a foreign OS thread) may then create and join
// green threads.  Context: a foreign OS thread.
int machine_boot(const machine_config &cfg = {}) noexcept;

// Stop the machine.  Green threads still alive are reported on stderr by
// name, tid and state, and their number is returned; they never run again.
// Context: a foreign OS thread (the one that booted it, or any other).
int machine_shutdown() noexcept;

// True while a machine runs.
bool machine_running() noexcept;

// Boot, run main_fn as the green thread "main", shut down when it returns.
// Returns main_fn's int result (0 for a void main_fn); a machine that cannot
// boot returns 70 (EX_SOFTWARE) after a message.  Context: a foreign OS
// thread (typically main()).
int run_main(const machine_config &cfg, std::function<int()> main_fn);

template <class F>
int
run(const machine_config &cfg, F &&main_fn)
{
	if constexpr (std::is_void_v<std::invoke_result_t<F &>>)
		return run_main(cfg, [&]() -> int {
			usmp_app_call(main_fn);
			return 0;
		});
	else
		return run_main(cfg, [&]() -> int {
			return static_cast<int>(usmp_app_call(main_fn));
		});
}

// The number of live green threads (not counting idle threads).
int machine_live_threads() noexcept;

// The clock, in nanoseconds (CLOCK_MONOTONIC; virtual time in a
// simulation, runtime/sim.h).  Context: any.
uint64_t clock_ns() noexcept;

// Ticks since boot (hardclock).  Context: any.
uint64_t ticks() noexcept;

} // namespace usmp

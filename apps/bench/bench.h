// usmp-bench's shared harness: private to apps/bench/*.cc.
//
// usmp-bench puts usmp's hot paths beside the same operation on its peers
// (Boost.Fiber, std::thread), in one binary and one run, so that the ratios
// mean something on a noisy 2-core VM.  Rules every family follows:
//
// Names.  A benchmark is registered as "<operation>/<system>"
// (yield_pingpong/usmp, yield_pingpong/boost_fiber, ...).  Google Benchmark
// appends "/process_time/real_time" to the reported name (see Timing); the
// JSON's "run_name" and "name" carry it, so strip it when you match names.
//
// One iteration is the same unit of work for every system of an operation,
// so that the JSON's real_time of two systems divides into a fair ratio.
//
// Timing.  Every benchmark uses ->UseRealTime()->MeasureProcessCPUTime()
// (see timed()).  The measured loop of a green-thread or fiber system does
// not run on the OS thread that Google Benchmark gave the State to: it runs
// on a green thread (usmp) or a fiber (Boost.Fiber) while that OS thread
// waits in a join, so only one of them ever touches the State at a time.
// The green thread may run on, and move between, any CPU (OS thread) of the
// machine, so the State's per-thread CPU clock would subtract readings of
// two different OS threads.  Wall time decides the iteration count and is
// the figure compared; the "CPU" column is the whole process's CPU time,
// which shows what idle spinning costs (Boost's work_stealing spins, an idle
// usmp CPU spins a little before it parks).  Using wall time for all systems
// of an operation keeps the ratios fair.
//
// Machines.  A usmp benchmark runs on a machine booted for its family
// (use_machine()): booted on first use, kept for every run of that
// configuration, shut down when a benchmark needs another configuration or
// none.  Boot and shutdown are never inside a timed region.  Baselines call
// use_no_machine() so that an idle usmp machine does not share the two
// cores with them.
//
// Adding a family (issue 3 adds the locks): a new .cc file with a
// register_<family>() that registers its benchmarks and their ratio targets,
// declared below and called from main.cc in the order the families run.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/machine.h"
#include "runtime/thread.h"

namespace usmp_bench {

// --- Families, in the order main.cc registers (and so runs) them. ---

void register_yield_pingpong();
void register_spawn_join();
void register_threads1024();
void register_skynet();

// --- Run-time options that main.cc parses off the command line. ---

struct options {
	// skynet's leaf count: a power of 10 (each node has 10 children).
	// The ctest smoke run makes it small; see CMakeLists.txt.
	uint64_t skynet_leaves = 1000000;
};
options &opts() noexcept;

// --- Registration. ---

// Register fn as "<operation>/<system>", timed as every benchmark here is
// (wall time, process CPU time; see above).
benchmark::internal::Benchmark *timed(const std::string &operation,
    const std::string &system, void (*fn)(benchmark::State &));

// A line of the ratio table printed after a plain (console) run:
// <operation>/<system> over <operation>/<peer>, with the target the issue
// sets (a ratio at or below `limit` meets it; limit 0: no target, shown for
// information).  The table is computed from the results of the same run.
struct ratio_row {
	std::string operation;
	std::string system;
	std::string peer;
	double limit;
};
void add_ratio(ratio_row row);
const std::vector<ratio_row> &ratio_rows() noexcept;

// --- The machine of a family. ---

// A machine configuration with a name for messages.  Define one per family
// as a static object: use_machine() tells configurations apart by address.
struct machine_spec {
	const char *name;
	usmp::machine_config cfg;
};

// Make `spec`'s machine the running one: nothing to do if it already runs,
// otherwise shut down the running machine (if any) and boot this one.
// Returns false after state.SkipWithError() if it cannot boot.
// Context: the benchmark's OS thread, outside the timed loop.
bool use_machine(benchmark::State &state, const machine_spec &spec);

// Shut down the running machine, if any (baselines; the end of the run).
void use_no_machine();

// Run body() on a new green thread with attributes `attr`, while the
// calling (foreign) OS thread waits for it in thread_join().  Returns false
// after state.SkipWithError() if the thread cannot be created.
// Context: the benchmark's OS thread, with use_machine() done.
template <class F>
bool
run_on_green_thread(benchmark::State &state, const usmp::thread_attr &attr,
    F &&body)
{
	usmp::thread *td;
	int error = usmp::thread_create(&td, attr, [&body] { body(); });
	if (error != 0) {
		char msg[96];
		std::snprintf(msg, sizeof(msg),
		    "thread_create() of the benchmark's green thread: error %d",
		    error);
		state.SkipWithError(msg);
		return false;
	}
	usmp::thread_join(td);
	return true;
}

// --- Boost.Fiber. ---

// Run body() on a new fiber (Boost's default stack) of the calling OS
// thread's scheduler (round_robin, Boost.Fiber's default); the OS thread's
// main fiber joins it.
void run_on_fiber(const std::function<void()> &body);

// Run body() on a fiber of a pool of two OS threads scheduled by Boost's
// work_stealing algorithm (default suspend=false: an idle thread spins
// looking for work, as in the peers' figures).  The calling OS thread blocks
// until body() returns.  The pool is made
// on first use and lives until shutdown_fiber_pool(): Boost 1.74's
// work_stealing keeps its schedulers in static members and cannot be set up
// twice in one process (boostorg/fiber#217).  Between jobs both pool threads
// wait on a std::condition_variable, so they do not spin while other
// benchmarks run.
void run_on_work_stealing_pool(const std::function<void()> &body);
void shutdown_fiber_pool();

// Number of OS threads in that pool.
inline constexpr unsigned work_stealing_threads = 2;

} // namespace usmp_bench

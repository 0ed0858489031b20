// usmp-bench's harness: registration, the machine of a family, and the
// Boost.Fiber runners (see bench.h for the rules they implement).

#include "apps/bench/bench.h"

#include <boost/fiber/all.hpp>

#include <condition_variable>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

namespace usmp_bench {

options &
opts() noexcept
{
	static options o;
	return o;
}

benchmark::internal::Benchmark *
timed(const std::string &operation, const std::string &system,
    void (*fn)(benchmark::State &))
{
	return benchmark::RegisterBenchmark((operation + "/" + system).c_str(),
	    fn)
	    ->UseRealTime()
	    ->MeasureProcessCPUTime();
}

static std::vector<ratio_row> &
rows() noexcept
{
	static std::vector<ratio_row> r;
	return r;
}

void
add_ratio(ratio_row row)
{
	rows().push_back(std::move(row));
}

const std::vector<ratio_row> &
ratio_rows() noexcept
{
	return rows();
}

// --- The machine of a family. ---

// The spec of the running machine, or null.  Only the benchmark's OS thread
// (Google Benchmark runs every benchmark here on it) touches it.
static const machine_spec *running_spec;

void
use_no_machine()
{
	if (running_spec == nullptr)
		return;
	int live = usmp::machine_shutdown();
	if (live != 0)
		std::fprintf(stderr,
		    "usmp-bench: %d green thread(s) still alive at the shutdown "
		    "of the machine \"%s\" (a benchmark leaked them)\n",
		    live, running_spec->name);
	running_spec = nullptr;
}

bool
use_machine(benchmark::State &state, const machine_spec &spec)
{
	if (running_spec == &spec)
		return true;
	use_no_machine();
	int error = usmp::machine_boot(spec.cfg);
	if (error != 0) {
		char msg[160];
		std::snprintf(msg, sizeof(msg),
		    "machine_boot() of \"%s\" failed: error %d", spec.name, error);
		state.SkipWithError(msg);
		return false;
	}
	running_spec = &spec;
	return true;
}

// --- Boost.Fiber on the benchmark's own OS thread. ---

void
run_on_fiber(const std::function<void()> &body)
{
	boost::fibers::fiber f(body);
	f.join();
}

// --- The work_stealing pool. ---
//
// Two OS threads, each running Boost's work_stealing(2) scheduler.  A job
// (one benchmark run) goes through three steps:
//   1. The submitter (the benchmark's OS thread) publishes the job under
//      pool_mtx and wakes both pool threads through pool_cv.
//   2. Pool thread 0 launches the job's fiber and joins it.  Pool thread 1's
//      main fiber waits on the job's fiber-level `finished` future, which
//      leaves its dispatcher free to steal the job's fibers.
//   3. Thread 0 sets `finished` (waking thread 1's main fiber, which goes
//      back to waiting on pool_cv) and then `done` (waking the submitter).
// Between jobs both threads block in pool_cv.wait(): no spinning while other
// benchmarks run.

namespace {

struct job {
	std::function<void()> body;
	boost::fibers::promise<void> finished;    // fiber-level: thread 1 waits
	boost::fibers::shared_future<void> finished_future;
	std::promise<void> done;                   // OS-level: submitter waits
};

struct pool {
	std::mutex mtx;
	std::condition_variable cv;
	std::shared_ptr<job> current; // (mtx) the job of generation `gen`
	uint64_t gen = 0;             // (mtx)
	bool stop = false;            // (mtx)
	std::thread threads[work_stealing_threads];

	// Wait for a job newer than *seen; null at stop.
	std::shared_ptr<job>
	next(uint64_t *seen)
	{
		std::unique_lock lk(mtx);
		cv.wait(lk, [&] { return stop || gen != *seen; });
		if (stop)
			return nullptr;
		*seen = gen;
		return current;
	}

	void
	worker(unsigned index)
	{
		// Blocks until every pool thread has constructed its scheduler.
		boost::fibers::use_scheduling_algorithm<
		    boost::fibers::algo::work_stealing>(work_stealing_threads);
		uint64_t seen = 0;
		while (std::shared_ptr<job> j = next(&seen)) {
			if (index == 0) {
				boost::fibers::fiber f(j->body);
				f.join();
				j->finished.set_value();
				j->done.set_value();
			} else {
				j->finished_future.wait();
			}
		}
	}
};

pool *the_pool;

} // namespace

void
run_on_work_stealing_pool(const std::function<void()> &body)
{
	if (the_pool == nullptr) {
		the_pool = new pool;
		for (unsigned i = 0; i < work_stealing_threads; i++)
			the_pool->threads[i] =
			    std::thread([i] { the_pool->worker(i); });
	}
	auto j = std::make_shared<job>();
	j->body = body;
	j->finished_future = j->finished.get_future().share();
	std::future<void> done = j->done.get_future();
	{
		std::lock_guard lk(the_pool->mtx);
		the_pool->current = j;
		the_pool->gen++;
	}
	the_pool->cv.notify_all();
	done.wait();
}

void
shutdown_fiber_pool()
{
	if (the_pool == nullptr)
		return;
	{
		std::lock_guard lk(the_pool->mtx);
		the_pool->stop = true;
		the_pool->current.reset();
	}
	the_pool->cv.notify_all();
	for (std::thread &t : the_pool->threads)
		t.join();
	delete the_pool;
	the_pool = nullptr;
}

} // namespace usmp_bench

// mutex: the lock hot paths (issue 3).
//
// mutex_uncontended: one lock+unlock of an uncontended mutex per iteration:
//   usmp::mutex on a green thread, std::mutex on the OS thread,
//   boost::fibers::mutex on a fiber.  Target: usmp <= 1.0x std::mutex.
// spin_uncontended: one lock+unlock of a spin lock, critical section
//   included: usmp::spin_mutex (spinlock_enter, CAS, store, spinlock_exit)
//   against pthread_spin_lock/unlock.  Target: usmp <= 1.0x pthread spin.
// mutex_1000threads: one iteration = 1,000 threads doing 2,000 locked
//   increments each (2,000,000 in all), created and joined: usmp green
//   threads on 2 CPUs with usmp::mutex; Boost.Fiber fibers on a 2-thread
//   work_stealing pool with boost::fibers::mutex; and 2 OS threads doing
//   1,000,000 each with std::mutex.  Target: usmp >= 4x Boost.Fiber's
//   throughput (time ratio <= 0.25).

#include "apps/bench/bench.h"

#include <pthread.h>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "sync/mutex.h"

namespace usmp_bench {
namespace {

constexpr int contended_threads = 1000;
constexpr int increments_per_thread = 2000;
constexpr long total_increments =
    static_cast<long>(contended_threads) * increments_per_thread;

usmp::machine_config
two_cpus()
{
	usmp::machine_config cfg;
	cfg.ncpus = 2;
	return cfg;
}

const machine_spec mutex_machine = {"mutex: 2 CPUs", two_cpus()};

void
mutex_uncontended_usmp(benchmark::State &state)
{
	if (!use_machine(state, mutex_machine))
		return;
	usmp::thread_attr attr;
	attr.name = "mutex uncontended";
	run_on_green_thread(state, attr, [&state] {
		usmp::mutex m("bench");
		for (auto _ : state) {
			m.lock();
			benchmark::ClobberMemory();
			m.unlock();
		}
	});
}

void
mutex_uncontended_std(benchmark::State &state)
{
	use_no_machine();
	std::mutex m;
	for (auto _ : state) {
		m.lock();
		benchmark::ClobberMemory();
		m.unlock();
	}
}

void
mutex_uncontended_boost_fiber(benchmark::State &state)
{
	use_no_machine();
	run_on_fiber([&state] {
		boost::fibers::mutex m;
		for (auto _ : state) {
			m.lock();
			benchmark::ClobberMemory();
			m.unlock();
		}
	});
}

void
spin_uncontended_usmp(benchmark::State &state)
{
	if (!use_machine(state, mutex_machine))
		return;
	usmp::thread_attr attr;
	attr.name = "spin uncontended";
	run_on_green_thread(state, attr, [&state] {
		usmp::spin_mutex m("bench spin");
		for (auto _ : state) {
			m.lock();
			benchmark::ClobberMemory();
			m.unlock();
		}
	});
}

void
spin_uncontended_pthread(benchmark::State &state)
{
	use_no_machine();
	pthread_spinlock_t s;
	pthread_spin_init(&s, PTHREAD_PROCESS_PRIVATE);
	for (auto _ : state) {
		pthread_spin_lock(&s);
		benchmark::ClobberMemory();
		pthread_spin_unlock(&s);
	}
	pthread_spin_destroy(&s);
}

void
check_sum(benchmark::State &state, long counter, long iterations)
{
	if (counter != total_increments * iterations)
		state.SkipWithError("lost increments");
}

void
mutex_1000threads_usmp(benchmark::State &state)
{
	if (!use_machine(state, mutex_machine))
		return;
	usmp::thread_attr attr;
	attr.name = "mutex 1000 threads";
	run_on_green_thread(state, attr, [&state] {
		usmp::mutex m("bench counter");
		long counter = 0;
		long iterations = 0;
		std::vector<usmp::thread *> tds(contended_threads);
		for (auto _ : state) {
			int n = 0;
			for (; n < contended_threads; n++)
				if (usmp::thread_create(&tds[n], {}, [&] {
					    for (int k = 0; k < increments_per_thread;
						 k++) {
						    m.lock();
						    counter++;
						    m.unlock();
					    }
				    }) != 0)
					break;
			for (int i = 0; i < n; i++)
				usmp::thread_join(tds[i]);
			if (n < contended_threads) {
				state.SkipWithError("thread_create() failed");
				return;
			}
			iterations++;
		}
		check_sum(state, counter, iterations);
	});
	state.counters["increments_per_s"] = benchmark::Counter(
	    static_cast<double>(total_increments),
	    benchmark::Counter::kIsIterationInvariantRate);
}

void
mutex_1000threads_boost_fiber_ws(benchmark::State &state)
{
	use_no_machine();
	long counter = 0;
	long iterations = 0;
	for (auto _ : state) {
		run_on_work_stealing_pool([&counter] {
			boost::fibers::mutex m;
			std::vector<boost::fibers::fiber> fs;
			fs.reserve(contended_threads);
			for (int i = 0; i < contended_threads; i++)
				fs.emplace_back([&] {
					for (int k = 0; k < increments_per_thread; k++) {
						m.lock();
						counter++;
						m.unlock();
					}
				});
			for (auto &f : fs)
				f.join();
		});
		iterations++;
	}
	check_sum(state, counter, iterations);
	state.counters["increments_per_s"] = benchmark::Counter(
	    static_cast<double>(total_increments),
	    benchmark::Counter::kIsIterationInvariantRate);
}

void
mutex_1000threads_std_mutex_2threads(benchmark::State &state)
{
	use_no_machine();
	long counter = 0;
	long iterations = 0;
	for (auto _ : state) {
		std::mutex m;
		std::thread a([&] {
			for (long k = 0; k < total_increments / 2; k++) {
				std::lock_guard<std::mutex> g(m);
				counter++;
			}
		});
		std::thread b([&] {
			for (long k = 0; k < total_increments / 2; k++) {
				std::lock_guard<std::mutex> g(m);
				counter++;
			}
		});
		a.join();
		b.join();
		iterations++;
	}
	check_sum(state, counter, iterations);
	state.counters["increments_per_s"] = benchmark::Counter(
	    static_cast<double>(total_increments),
	    benchmark::Counter::kIsIterationInvariantRate);
}

} // namespace

void
register_mutex()
{
	timed("mutex_uncontended", "usmp", mutex_uncontended_usmp);
	timed("mutex_uncontended", "std_mutex", mutex_uncontended_std);
	timed("mutex_uncontended", "boost_fiber", mutex_uncontended_boost_fiber);
	timed("spin_uncontended", "usmp", spin_uncontended_usmp);
	timed("spin_uncontended", "pthread_spin", spin_uncontended_pthread);
	timed("mutex_1000threads", "usmp", mutex_1000threads_usmp)
	    ->Unit(benchmark::kMillisecond);
	timed("mutex_1000threads", "boost_fiber_ws", mutex_1000threads_boost_fiber_ws)
	    ->Unit(benchmark::kMillisecond);
	timed("mutex_1000threads", "std_mutex_2threads",
	    mutex_1000threads_std_mutex_2threads)
	    ->Unit(benchmark::kMillisecond);
	add_ratio({"mutex_uncontended", "usmp", "std_mutex", 1.0});
	add_ratio({"mutex_uncontended", "usmp", "boost_fiber", 0});
	add_ratio({"spin_uncontended", "usmp", "pthread_spin", 1.0});
	add_ratio({"mutex_1000threads", "usmp", "boost_fiber_ws", 0.25});
	add_ratio({"mutex_1000threads", "usmp", "std_mutex_2threads", 0});
}

} // namespace usmp_bench

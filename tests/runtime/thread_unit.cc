// Green threads: create, join, detach, exit, yield, sleep, errno, foreign
// OS threads, the machine's boot and shutdown.
#include <catch2/catch.hpp>

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "runtime/machine.h"
#include "runtime/pcpu.h"
#include "runtime/segment.h"
#include "runtime/stack.h"
#include "runtime/thread.h"
#include "sched/sched.h"
#include "support/death.h"
#include "support/machine.h"

using namespace usmp;
using namespace std::chrono_literals;

TEST_CASE("run() boots every CPU, runs main and returns its result", "[unit]")
{
	std::atomic<int> seen{0};
	int r = usmp::run(machine_config{.ncpus = 4}, [&] {
		CHECK(mp_ncpus() == 4);
		CHECK(on_cpu());
		CHECK(std::string(curthread()->td_name) == "main");
		// One thread bound to each CPU reports where it ran.
		std::vector<green_thread> v;
		for (int c = 0; c < 4; c++) {
			thread_attr a;
			a.cpu = c;
			v.emplace_back(a, [&seen, c] {
				if (curcpu() == c)
					seen.fetch_or(1 << c);
			});
		}
		for (auto &t : v)
			t.join();
		return 42;
	});
	CHECK(r == 42);
	CHECK(seen.load() == 0xf);
	CHECK_FALSE(machine_running());
}

TEST_CASE("each CPU is an OS thread named after it", "[unit]")
{
	test::machine m(3);
	for (int c = 0; c < 3; c++) {
		m.run([c] {
			CHECK(curcpu() == c);
			char name[32] = {};
			pthread_getname_np(pthread_self(), name, sizeof(name));
			CHECK(std::string(name) == "usmp cpu" + std::to_string(c));
		}, thread_attr{.cpu = c});
	}
}

TEST_CASE("a second machine cannot boot while one runs", "[unit]")
{
	test::machine m(1);
	CHECK(machine_boot({.ncpus = 1}) == EBUSY);
}

TEST_CASE("thread_create rejects bad attributes", "[unit]")
{
	test::machine m(2);
	m.run([] {
		thread *td;
		CHECK(thread_create(&td, thread_attr{.priority = 300}, [] {}) == EINVAL);
		CHECK(thread_create(&td, thread_attr{.cpu = 7}, [] {}) == EINVAL);
		CHECK(thread_create(&td, thread_attr{.stack_size = 100}, [] {}) == EINVAL);
	});
	thread *td;
	machine_shutdown();
	CHECK(thread_create(&td, {}, [] {}) == EAGAIN);
	REQUIRE(machine_boot({.ncpus = 1}) == 0); // for the fixture's teardown
}

TEST_CASE("join returns after the thread ran; errors for self and detached", "[unit]")
{
	test::machine m(2);
	m.run([] {
		int x = 0;
		thread *td;
		REQUIRE(thread_create(&td, {}, [&x] {
			thread_yield();
			x = 7;
		}) == 0);
		REQUIRE(thread_join(td) == 0);
		CHECK(x == 7);

		CHECK(thread_join(curthread()) == EDEADLK);

		std::atomic<bool> go{false}, done{false};
		REQUIRE(thread_create(&td, {}, [&] {
			while (!go)
				thread_yield();
			done = true;
		}) == 0);
		REQUIRE(thread_detach(td) == 0);
		CHECK(thread_join(td) == EINVAL);
		go = true;
		while (!done)
			thread_yield();
	});
}

TEST_CASE("detached threads are reaped when they exit", "[unit]")
{
	test::machine m(2);
	m.run([] {
		std::atomic<int> n{0};
		for (int i = 0; i < 1000; i++) {
			thread *td;
			REQUIRE(thread_create(&td, thread_attr{.detached = true},
				    [&n] { n++; }) == 0);
		}
		while (n.load() < 1000)
			thread_yield();
		// Let the last ones switch out for good.
		thread_sleep(5ms);
	});
	// The fixture checks that every stack came back.
}

TEST_CASE("thread_exit ends the thread at once", "[unit]")
{
	test::machine m(1);
	m.run([] {
		int stage = 0;
		green_thread t([&] {
			stage = 1;
			thread_exit();
			stage = 2;
		});
		t.join();
		CHECK(stage == 1);
	});
}

namespace {

// errno through a fresh call each time: the compiler may keep the address
// of errno (a const function's result) across a call that moved us to
// another CPU, exactly as it may for any thread_local (runtime/thread.h).
__attribute__((noinline)) void
set_errno(int v)
{
	errno = v;
}

__attribute__((noinline)) int
get_errno()
{
	return errno;
}

} // namespace

TEST_CASE("errno is saved and restored with the thread", "[unit]")
{
	test::machine m(4);
	m.run([] {
		std::vector<green_thread> v;
		std::atomic<int> bad{0};
		std::atomic<uint64_t> cpus{0};
		for (int i = 0; i < 16; i++) {
			v.emplace_back([i, &bad, &cpus] {
				for (int k = 0; k < 2000; k++) {
					set_errno(1000 + i);
					// Move to another CPU, whose errno other
					// threads are setting meanwhile.
					sched_bind((i + k) % 4);
					thread_yield();
					cpus |= uint64_t(1) << curcpu();
					if (get_errno() != 1000 + i)
						bad++;
				}
				sched_unbind();
			});
		}
		for (auto &t : v)
			t.join();
		CHECK(bad.load() == 0);
		CHECK(cpus.load() == 0xf); // threads did move
	});
}

TEST_CASE("thread_sleep sleeps at least its duration", "[unit]")
{
	test::machine m(2);
	m.run([] {
		for (auto d : {1ms, 20ms, 50ms}) {
			auto t0 = std::chrono::steady_clock::now();
			CHECK(thread_sleep(d) == 0);
			auto el = std::chrono::steady_clock::now() - t0;
			CHECK(el >= d);
			CHECK(el < d + 500ms);
		}
		// Many sleepers on several CPUs wake in deadline order per CPU
		// and all wake.
		std::atomic<int> woke{0};
		std::vector<green_thread> v;
		for (int i = 0; i < 100; i++)
			v.emplace_back([i, &woke] {
				thread_sleep(std::chrono::milliseconds(i % 10));
				woke++;
			});
		for (auto &t : v)
			t.join();
		CHECK(woke.load() == 100);
	});
}

TEST_CASE("a foreign OS thread creates and joins green threads", "[unit]")
{
	test::machine m(2);
	// The test's own thread is foreign: create and join from it.
	std::atomic<int> cpu{-2};
	thread *td;
	REQUIRE(thread_create(&td, {}, [&] { cpu = curcpu(); }) == 0);
	REQUIRE(thread_join(td) == 0);
	CHECK(cpu.load() >= 0);
	CHECK(curcpu() == NOCPU);
	CHECK_FALSE(on_cpu());

	// Several plain std::threads at once, each with many green threads.
	std::vector<std::thread> os;
	std::atomic<long> sum{0};
	for (int k = 0; k < 4; k++)
		os.emplace_back([&sum, k] {
			for (int i = 0; i < 200; i++) {
				green_thread g([&sum, i, k] {
					thread_yield();
					sum += i * (k + 1);
				});
				g.join();
			}
		});
	for (auto &t : os)
		t.join();
	CHECK(sum.load() == 19900L * (1 + 2 + 3 + 4));
}

TEST_CASE("a green thread joins a thread that a foreign thread created", "[unit]")
{
	test::machine m(2);
	std::atomic<bool> release{false};
	thread *td;
	REQUIRE(thread_create(&td, {}, [&] {
		while (!release)
			thread_sleep(1ms);
	}) == 0);
	m.run([&] {
		release = true;
		CHECK(thread_join(td) == 0);
	});
}

TEST_CASE("100,000 threads leave the segment table and the stacks where they started", "[unit]")
{
	machine_shutdown();
	const std::size_t segs0 = seg_count();
	const unsigned ncpus = 4, high = 256;
	machine_config cfg;
	cfg.ncpus = ncpus;
	cfg.stack_cache_high = high;
	test::machine m(cfg);
	m.run([&] {
		auto batch = [](int n) {
			std::vector<thread *> v(n);
			for (auto &td : v)
				REQUIRE(thread_create(&td, {}, [] { thread_yield(); }) == 0);
			for (auto td : v)
				REQUIRE(thread_join(td) == 0);
		};
		// The statistics are summed from every CPU's cache while idle
		// CPUs refill and trim theirs: read them once they settle.
		auto settled = [] {
			stack_stats s = stack_get_stats();
			for (int k = 0; k < 200 && s.in_use != 1; k++) {
				thread_sleep(1ms);
				s = stack_get_stats();
			}
			return s;
		};
		for (int i = 0; i < 100; i++) {
			batch(1000);
			stack_stats s = settled();
			// Only this thread holds a stack: every other one came back
			// to a cache or the pool.
			REQUIRE(s.in_use == 1);
			REQUIRE(s.mapped == s.in_use + s.cached + s.pooled);
			// The same stacks go round: at most one batch plus what the
			// per-CPU caches may keep, whatever the batch count.
			REQUIRE(s.mapped <= 1000 + ncpus * high + 256);
		}
	});
	// Shutdown drains every cache and the pool: the table is as it was.
	CHECK(machine_shutdown() == 0);
	CHECK(stack_get_stats().mapped == 0);
	CHECK(seg_count() == segs0);
}

TEST_CASE("shutdown reports live threads by name", "[death]")
{
	auto r = test::run_death("live threads at shutdown", [] {
		machine_boot({.ncpus = 2});
		thread *a, *b;
		thread_create(&a, thread_attr{.name = "sleeper"},
		    [] { thread_sleep(std::chrono::hours(1)); });
		thread_create(&b, thread_attr{.name = "waiter"},
		    [a] { thread_join(a); });
		std::this_thread::sleep_for(50ms);
		int live = machine_shutdown();
		std::fflush(stderr);
		_exit(live);
	});
	INFO(r.describe());
	CHECK(r.exited_with(2));
	CHECK(r.contains("\"sleeper\""));
	CHECK(r.contains("sleeping"));
	CHECK(r.contains("\"waiter\""));
	CHECK(r.contains("joining"));
}

TEST_CASE("a green_thread neither joined nor detached panics", "[death]")
{
	auto r = test::run_death("green_thread not joined", [] {
		usmp::run(machine_config{.ncpus = 1}, [] {
			green_thread t(thread_attr{.name = "forgotten"}, [] {});
		});
	});
	USMP_REQUIRE_DEATH(r, "thread \"forgotten\"");
	CHECK(r.contains("neither joined nor detached"));
	CHECK(r.aborted());
}

TEST_CASE("an exception escaping a thread panics naming it", "[death]")
{
	auto r = test::run_death("uncaught exception", [] {
		usmp::run(machine_config{.ncpus = 1}, [] {
			green_thread t(thread_attr{.name = "thrower"},
			    [] { throw std::runtime_error("boom"); });
			t.join();
		});
	});
	USMP_REQUIRE_DEATH(r, "uncaught exception in thread \"thrower\"");
	CHECK(r.contains("boom"));
}

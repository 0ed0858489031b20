// The scheduler: pinning, binding, priorities, critical sections and
// preemption, time slices, stealing, parking.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>

#include "runtime/critical.h"
#include "runtime/machine.h"
#include "runtime/pcpu.h"
#include "runtime/thread.h"
#include "sched/priority.h"
#include "sched/sched.h"
#include "support/machine.h"

using namespace usmp;
using namespace std::chrono_literals;

namespace {

uint64_t
total_steals()
{
	uint64_t n = 0;
	for (int c = 0; c < mp_ncpus(); c++)
		n += __atomic_load_n(&pcpu_find(c)->pc_cnt_steals, __ATOMIC_RELAXED);
	return n;
}

// A CPU-bound loop in application code: no call into usmp, no preemption
// point.  Runs until *stop or the deadline.
__attribute__((noinline)) bool
spin_until(const std::atomic<bool> &stop, std::chrono::steady_clock::time_point deadline)
{
	for (;;) {
		for (int i = 0; i < 10000; i++) {
			if (stop.load(std::memory_order_relaxed))
				return true;
			asm volatile("" ::: "memory");
		}
		if (std::chrono::steady_clock::now() > deadline)
			return false;
	}
}

} // namespace

TEST_CASE("a pinned thread never changes CPU while 8 CPUs steal around it", "[unit]")
{
	test::machine m(8);
	m.run([] {
		uint64_t steals0 = total_steals();
		std::atomic<bool> stop{false};
		std::vector<green_thread> others;
		// Created on this CPU: the other CPUs must steal them.
		// They sleep now and then, so CPUs keep going idle and
		// stealing from the busy ones.
		for (int i = 0; i < 24; i++)
			others.emplace_back([&stop, i] {
				for (int k = 0; !stop; k++) {
					if ((k + i) % 20 == 0)
						thread_sleep(100us);
					else
						thread_yield();
				}
			});
		// Both loops below switch by yielding and, every 50 switches, by
		// sleeping: a wakeup is placed anew (the least loaded CPU), so an
		// unpinned thread moves even once the CPUs are balanced and no
		// longer steal.
		int moved = 0;
		green_thread pinned([&moved] {
			sched_pin();
			int cpu = curcpu();
			for (int i = 0; i < 10000; i++) {
				if (i % 50 == 49)
					thread_sleep(20us);
				else
					thread_yield();
				if (curcpu() != cpu)
					moved++;
			}
			sched_unpin();
		});
		// An unpinned control doing the same does move: the test can see
		// migration when it happens.
		int control_cpus = 0;
		green_thread control([&control_cpus] {
			uint64_t seen = 0;
			auto deadline = std::chrono::steady_clock::now() + 20s;
			for (int i = 0; i < 10000 ||
			     (__builtin_popcountll(seen) < 2 &&
				 std::chrono::steady_clock::now() < deadline);
			     i++) {
				if (i % 50 == 49)
					thread_sleep(20us);
				else
					thread_yield();
				seen |= uint64_t(1) << curcpu();
			}
			control_cpus = __builtin_popcountll(seen);
		});
		pinned.join();
		control.join();
		stop = true;
		for (auto &t : others)
			t.join();
		CHECK(moved == 0);
		CHECK(total_steals() > steals0);
		CHECK(control_cpus > 1);
	});
}

TEST_CASE("sched_bind moves the thread and keeps it there", "[unit]")
{
	test::machine m(4);
	m.run([] {
		for (int c : {3, 0, 2, 1}) {
			REQUIRE(sched_bind(c) == 0);
			CHECK(sched_is_bound());
			for (int i = 0; i < 200; i++) {
				CHECK(curcpu() == c);
				thread_yield();
			}
		}
		sched_unbind();
		CHECK_FALSE(sched_is_bound());
		CHECK(sched_bind(9) == EINVAL);
	});
}

TEST_CASE("sched_pin nests", "[unit]")
{
	test::machine m(2);
	m.run([] {
		thread *td = curthread();
		sched_pin();
		sched_pin();
		CHECK(td->td_pinned == 2);
		sched_unpin();
		CHECK(td->td_pinned == 1);
		sched_unpin();
		CHECK(td->td_pinned == 0);
	});
}

TEST_CASE("threads of better priority run first", "[unit]")
{
	test::machine m(1);
	m.run([] {
		std::vector<int> order;
		std::vector<green_thread> v;
		// Worse than main (120): none preempts; created worst first.
		for (int pri : {220, 200, 160, 130, 180}) {
			v.emplace_back(thread_attr{.priority = pri},
			    [&order, pri] { order.push_back(pri); });
		}
		CHECK(order.empty());
		// Main sleeps: the queue runs in priority order.
		thread_sleep(10ms);
		for (auto &t : v)
			t.join();
		CHECK(order == std::vector<int>{130, 160, 180, 200, 220});
	});
}

TEST_CASE("a realtime thread made runnable preempts at once", "[unit]")
{
	test::machine m(1);
	m.run([] {
		bool ran = false;
		green_thread rt(thread_attr{.priority = PRI_MIN_REALTIME + 2},
		    [&ran] { ran = true; });
		// No yield: creation itself switched to it.
		CHECK(ran);
		rt.join();

		// A timeshare thread does not preempt another timeshare thread.
		bool ts_ran = false;
		green_thread ts(thread_attr{.priority = PRI_MIN_TIMESHARE},
		    [&ts_ran] { ts_ran = true; });
		CHECK_FALSE(ts_ran);
		ts.join();
		CHECK(ts_ran);
	});
}

TEST_CASE("a preemption owed in a critical section is taken at the outermost exit", "[unit]")
{
	test::machine m(1);
	m.run([] {
		bool ran = false;
		thread *td;
		critical_enter();
		critical_enter();
		REQUIRE(thread_create(&td, thread_attr{.priority = PI_NET},
			    [&ran] { ran = true; }) == 0);
		CHECK(curthread()->td_owepreempt != 0);
		CHECK_FALSE(ran);
		critical_exit();
		CHECK_FALSE(ran); // inner exit: still deferred
		critical_exit();
		CHECK(ran); // outermost exit: taken, not dropped
		CHECK(curthread()->td_owepreempt == 0);
		REQUIRE(thread_join(td) == 0);
	});
}

TEST_CASE("a realtime thread on another CPU preempts it by IPI", "[unit]")
{
	test::machine m(2);
	m.run([] {
		std::atomic<bool> flag{false};
		std::atomic<bool> spinning{false};
		bool ok = false;
		// A timeshare thread spins on CPU 1 in application code, with no
		// preemption point, until the flag is set.
		green_thread spinner(thread_attr{.cpu = 1}, [&] {
			spinning = true;
			ok = spin_until(flag, std::chrono::steady_clock::now() + 10s);
		});
		while (!spinning)
			thread_sleep(1ms);
		// A realtime thread bound to CPU 1 sets it: it can only run if the
		// IPI preempted the spinner.
		green_thread rt(thread_attr{.priority = PRI_MIN_REALTIME, .cpu = 1},
		    [&] { flag = true; });
		rt.join();
		spinner.join();
		CHECK(ok);
	});
}

TEST_CASE("timeshare threads rotate by time slice at preemption points", "[unit]")
{
	test::machine m(1);
	m.run([] {
		std::atomic<int> a{0}, b{0};
		bool a_saw_b = false, b_saw_a = false;
		auto body = [](std::atomic<int> &mine, std::atomic<int> &other,
				bool &saw) {
			auto deadline = std::chrono::steady_clock::now() + 10s;
			while (std::chrono::steady_clock::now() < deadline) {
				mine++;
				maybe_yield(); // a preemption point, not a yield
				if (other.load() > 0 && mine.load() > 1000) {
					saw = true;
					break;
				}
			}
		};
		green_thread ta([&] { body(a, b, a_saw_b); });
		green_thread tb([&] { body(b, a, b_saw_a); });
		ta.join();
		tb.join();
		CHECK(a_saw_b);
		CHECK(b_saw_a);
	});
}

TEST_CASE("full preemption interleaves two CPU-bound threads on one CPU", "[unit]")
{
	test::machine m(1, /*full_preemption=*/true);
	CHECK(sched_full_preemption());
	m.run([] {
		uint64_t async0 = pcpu_find(0)->pc_cnt_async_preempt;
		std::atomic<bool> a_run{false}, b_run{false};
		bool a_ok = false, b_ok = false;
		// Each spins in application code (no preemption point) until the
		// other has run: only an asynchronous preemption lets that happen.
		green_thread ta([&] {
			a_run = true;
			a_ok = spin_until(b_run, std::chrono::steady_clock::now() + 10s);
		});
		green_thread tb([&] {
			b_run = true;
			b_ok = spin_until(a_run, std::chrono::steady_clock::now() + 10s);
		});
		ta.join();
		tb.join();
		CHECK(a_ok);
		CHECK(b_ok);
		CHECK(pcpu_find(0)->pc_cnt_async_preempt > async0);
	});
}

TEST_CASE("without full preemption CPU-bound application code is not preempted", "[unit]")
{
	test::machine m(1);
	m.run([] {
		std::atomic<bool> b_run{false};
		bool a_ok = true;
		green_thread ta([&] {
			a_ok = spin_until(b_run, std::chrono::steady_clock::now() + 300ms);
		});
		green_thread tb([&] { b_run = true; });
		ta.join();
		tb.join();
		CHECK_FALSE(a_ok); // a ran to its deadline: nobody preempted it
		CHECK(pcpu_find(0)->pc_cnt_async_preempt == 0);
	});
}

TEST_CASE("idle CPUs park and an IPI wakes them for new work", "[unit]")
{
	test::machine m(4);
	m.run([] {
		thread_sleep(100ms); // everybody else idles, then parks
		uint64_t parks = 0;
		for (int c = 1; c < 4; c++)
			parks += pcpu_find(c)->pc_cnt_parks;
		CHECK(parks > 0);
		for (int c = 1; c < 4; c++) {
			auto t0 = std::chrono::steady_clock::now();
			int where = -1;
			green_thread t(thread_attr{.cpu = c}, [&where] { where = curcpu(); });
			t.join();
			CHECK(where == c);
			// A lost wakeup would leave it parked for good; the bound
			// is loose because the test host may be oversubscribed.
			CHECK(std::chrono::steady_clock::now() - t0 < 5s);
		}
	});
}

TEST_CASE("sched_prio re-queues and can preempt", "[unit]")
{
	test::machine m(1);
	m.run([] {
		bool ran = false;
		green_thread t(thread_attr{.priority = 200}, [&ran] { ran = true; });
		CHECK_FALSE(ran);
		// Raised above main (120) and to a preempting class: runs now.
		CHECK(sched_prio(t.native_handle(), PRI_MIN_KERN) == 0);
		critical_enter();
		critical_exit();
		CHECK(ran);
		t.join();
		CHECK(sched_prio(curthread(), 999) == EINVAL);
	});
}

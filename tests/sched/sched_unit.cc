// The scheduler: pinning, binding, priorities, critical sections and
// preemption, time slices, stealing, parking, the runnext handoff.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/counters.h"
#include "runtime/critical.h"
#include "runtime/machine.h"
#include "runtime/pcpu.h"
#include "runtime/thread.h"
#include "sched/priority.h"
#include "sched/sched.h"
#include "support/machine.h"
#include "sync/condvar.h"
#include "sync/mutex.h"

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


uint64_t
counter(const char *name)
{
	uint64_t v = 0;
	REQUIRE(counter_read(name, &v));
	return v;
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

// The loop is written in the thread's own lambda, which the compiler inlines
// into the function that calls it: the code map must still see application
// code there (runtime/app_call.h), not the usmp function that starts threads.
TEST_CASE("full preemption preempts a loop written inline in a thread's lambda",
    "[unit]")
{
	test::machine m(1, /*full_preemption=*/true);
	m.run([] {
		uint64_t async0 = pcpu_find(0)->pc_cnt_async_preempt;
		std::atomic<bool> a_run{false}, b_run{false};
		bool a_ok = false, b_ok = false;
		auto deadline = std::chrono::steady_clock::now() + 10s;
		// A closure of this test function, inlined into each thread's
		// lambda: the loop is written in the lambdas, not in a function
		// of its own.
		auto spin = [&](std::atomic<bool> &mine,
				const std::atomic<bool> &other, bool &ok) {
			mine = true;
			for (unsigned i = 1;; i++) {
				if (other.load(std::memory_order_relaxed)) {
					ok = true;
					break;
				}
				if (i % 100000 == 0 &&
				    std::chrono::steady_clock::now() > deadline)
					break;
			}
		};
		green_thread ta([&] { spin(a_run, b_run, a_ok); });
		green_thread tb([&] { spin(b_run, a_run, b_ok); });
		ta.join();
		tb.join();
		CHECK(a_ok);
		CHECK(b_ok);
		CHECK(pcpu_find(0)->pc_cnt_async_preempt > async0);
	});
}

// Without full preemption a time slice ends only at a preemption point: an
// equal-priority thread waits.  (A better thread, such as an ithread woken by
// an interrupt, may still preempt it asynchronously: that is not counted
// here, only whether b ran.)
TEST_CASE("without full preemption CPU-bound application code keeps the CPU from an equal thread", "[unit]")
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
		CHECK_FALSE(a_ok); // a ran to its deadline: b never ran meanwhile
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

// The direct handoff (sched_ule.cc, protocol step 7): a wakeup on the
// waker's own CPU goes to the tdq's runnext slot, which the next switch
// there takes without the run-queue lock.  The path is taken, it does not
// jump a better-priority queued thread, and an idle CPU steals a runnext
// thread from a CPU whose running thread never switches.

TEST_CASE("runnext: a condvar ping-pong on one CPU hands off directly", "[unit]")
{
	test::machine m(1);
	m.run([] {
		constexpr int rounds = 1000;
		mutex mtx("pingpong");
		condvar cv("pingpong");
		int turn = 0;
		uint64_t before = counter("kern.sched.runnext_handoffs");
		green_thread b([&] {
			std::unique_lock<mutex> g(mtx);
			for (int i = 0; i < rounds; i++) {
				cv.wait(g, [&] { return turn == 1; });
				turn = 0;
				cv.notify_one();
			}
		});
		{
			std::unique_lock<mutex> g(mtx);
			for (int i = 0; i < rounds; i++) {
				turn = 1;
				cv.notify_one();
				cv.wait(g, [&] { return turn == 0; });
			}
		}
		b.join();
		// Every round trip is two handoffs; a few may take the locked
		// path (a slot already full), none should be lost.
		CHECK(counter("kern.sched.runnext_handoffs") - before >= rounds);
	});
}

TEST_CASE("runnext: a better-priority queued thread runs before the handoff", "[unit]")
{
	test::machine m(1);
	m.run([] {
		mutex mtx("order");
		condvar cv("order");
		bool go = false;
		std::string order;
		green_thread b(thread_attr{.name = "woken", .priority = PRI_MIN_TIMESHARE},
		    [&] {
			    std::unique_lock<mutex> g(mtx);
			    cv.wait(g, [&] { return go; });
			    order += 'B';
		    });
		// Let b block on the condvar.
		while (cv.waiters() == 0)
			thread_yield();
		uint64_t before = counter("kern.sched.runnext_handoffs");
		green_thread h;
		{
			std::unique_lock<mutex> g(mtx);
			go = true;
			cv.notify_one(); // b: into the runnext slot
			// Better than b, not enough to preempt us (a kernel
			// priority above the preemption threshold): queued.
			h = green_thread(thread_attr{.name = "better", .priority = PRI_MIN_KERN + 20},
			    [&] { order += 'H'; });
			CHECK(order.empty());
		}
		// We block: the switch must choose h over the slot.
		h.join();
		b.join();
		CHECK(order == "HB");
		// And b still left through the slot once h was done.
		CHECK(counter("kern.sched.runnext_handoffs") - before >= 1);
	});
}

TEST_CASE("runnext: an idle CPU steals it from a CPU that keeps running", "[unit]")
{
	test::machine m(2);
	m.run([] {
		// We are the owner: on cpu0, we wake b into cpu0's slot and then
		// never switch.
		REQUIRE(sched_bind(0) == 0);
		mutex mtx("steal");
		condvar cv("steal");
		bool go = false;
		std::atomic<bool> b_ran{false}, b_on0{false};
		std::atomic<bool> busy_stop{false}, busy_on{false};
		std::atomic<int> b_cpu{-1};
		green_thread b(thread_attr{.name = "sleeper"}, [&] {
			// Last run on cpu0, free to migrate.
			sched_bind(0);
			sched_unbind();
			std::unique_lock<mutex> g(mtx);
			b_on0.store(true);
			cv.wait(g, [&] { return go; });
			b_cpu.store(curcpu());
			b_ran.store(true);
		});
		while (!b_on0.load() || cv.waiters() == 0)
			thread_yield();
		// Keep cpu1 busy while the wakeup places b, so that cpu0 (its
		// last CPU) is no busier than the least loaded: b stays there.
		green_thread busy(thread_attr{.name = "busy", .cpu = 1}, [&] {
			busy_on.store(true);
			spin_until(busy_stop, std::chrono::steady_clock::now() + 10s);
		});
		while (!busy_on.load())
			thread_yield();
		uint64_t steals = counter("kern.sched.runnext_steals");
		{
			std::lock_guard<mutex> g(mtx);
			go = true;
			cv.notify_one(); // b: into cpu0's runnext slot
		}
		// cpu1 goes idle; we do not switch: only a steal runs b.
		busy_stop.store(true);
		bool ran = spin_until(b_ran, std::chrono::steady_clock::now() + 10s);
		REQUIRE(ran);
		busy.join();
		b.join();
		CHECK(b_cpu.load() == 1);
		CHECK(counter("kern.sched.runnext_steals") - steals == 1);
		sched_unbind();
	});
}

// Step 7d: a ping-pong pair hands the CPU back and forth thousands of times
// a millisecond, but each handoff inherits the running time slice, so the
// hardclock still sees the slice end and an equal-priority thread queued
// behind them gets the CPU.  (A handoff that started a fresh slice would
// leave it to any other preemption, e.g. an interrupt thread's, to get the
// third thread in.)  The deadline only bounds a failure.
TEST_CASE("runnext: a ping-pong pair does not starve an equal-priority thread", "[unit]")
{
	test::machine m(1);
	m.run([] {
		mutex mtx("pair");
		condvar cv("pair");
		int turn = 0;
		std::atomic<bool> other_ran{false}, gave_up{false};
		auto deadline = std::chrono::steady_clock::now() + 5s;
		auto player = [&](int me) {
			std::unique_lock<mutex> g(mtx);
			while (!other_ran.load()) {
				if (std::chrono::steady_clock::now() > deadline) {
					gave_up.store(true);
					break;
				}
				cv.wait(g, [&] { return turn == me; });
				turn = 1 - me;
				cv.notify_one();
			}
			// Release the partner, whatever it waits for.
			turn = 1 - me;
			cv.notify_all();
		};
		green_thread a([&] { player(0); });
		green_thread b([&] { player(1); });
		// Queued behind the pair, at their priority.
		green_thread other([&] { other_ran.store(true); });
		a.join();
		b.join();
		other.join();
		CHECK(other_ran.load());
		CHECK(!gave_up.load());
	});
}

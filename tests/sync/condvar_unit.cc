// condvar(9): ping-pong without lost wakeups, timed and interruptible
// waits, std Lockable interlocks, condition_variable_any, foreign OS
// threads on both sides.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "support/machine.h"
#include "support/tlock.h"
#include "runtime/thread.h"
#include "sync/condvar.h"
#include "sync/lock.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sync/sleepqueue.h"

using namespace std::chrono_literals;
using namespace usmp;

using test::tlock;

namespace {

// Two green threads alternate `n` round trips through one condvar.
void
pingpong(long n, int cpu = NOCPU)
{
	tlock l("pp");
	condvar cv("pp");
	int turn = 0;
	long done = 0;
	thread_attr a;
	a.cpu = cpu;
	green_thread t(a, [&] {
		l.lock();
		for (long i = 0; i < n; i++) {
			while (turn != 1)
				cv.wait(l);
			turn = 0;
			cv.signal();
		}
		l.unlock();
	});
	l.lock();
	for (long i = 0; i < n; i++) {
		turn = 1;
		cv.signal();
		while (turn != 0)
			cv.wait(l);
		done++;
	}
	l.unlock();
	t.join();
	REQUIRE(done == n);
}

} // namespace

TEST_CASE("condvar ping-pong: 1,000,000 round trips, no lost wakeup",
    "[unit][condvar]")
{
	// Both threads on one CPU (a cross-CPU wakeup costs 6-79 us on these
	// VMs, which makes a million of them a two-minute run); the case
	// below bounces between CPUs.
	for (int ncpus : {1, 2}) {
		INFO("ncpus " << ncpus);
		test::machine m(ncpus);
		thread_attr a;
		a.cpu = 0;
		m.run([] { pingpong(1000000, 0); }, a);
	}
}

TEST_CASE("condvar ping-pong across 2 CPUs", "[unit][condvar]")
{
	test::machine m(2);
	thread_attr a;
	a.cpu = 0;
	m.run([] { pingpong(5000, 1); }, a);
	m.run([] { pingpong(5000); });
}

TEST_CASE("condvar ping-pong with full preemption over 1/2/4/8 CPUs",
    "[unit][condvar]")
{
	for (int ncpus : {1, 2, 4, 8}) {
		INFO("ncpus " << ncpus);
		test::machine m(ncpus, true);
		m.run([] { pingpong(3000); });
	}
}

TEST_CASE("cv timedwait, wait_sig, wait_unlock, broadcast", "[unit][condvar]")
{
	test::machine m(2);
	m.run([] {
		tlock l("cvl");
		condvar cv("cv");
		l.lock();
		CHECK(cv.timedwait(l.lo(), 2ms) == EWOULDBLOCK);
		CHECK(l.word.load() != 0);
		thread_interrupt(curthread());
		CHECK(cv.wait_sig(l.lo()) == EINTR);
		CHECK(cv.timedwait_sig(l.lo(), 1s) == EINTR);
		CHECK(thread_interrupt_clear());
		l.unlock();

		// broadcast wakes all; wait_unlock returns unlocked.
		int go = 0;
		std::atomic<int> woke{0};
		std::vector<green_thread> ts;
		for (int i = 0; i < 8; i++)
			ts.emplace_back([&] {
				l.lock();
				while (go == 0)
					cv.wait(l);
				l.unlock();
				woke++;
			});
		green_thread u([&] {
			l.lock();
			cv.wait_unlock(l.lo());
			woke++;
		});
		// Count the sleepers themselves: cv.waiters() is an upper
		// bound (the timed-out and interrupted waits above stay
		// counted), so it could pass before u sleeps, and a u that
		// sleeps after the broadcast would sleep for ever.
		auto sleepers = [&] {
			sleepq_lock(&cv);
			int n = sleepq_sleepcnt(&cv, 0);
			sleepq_release(&cv);
			return n;
		};
		while (sleepers() < 9)
			pause("settle", 1ms);
		l.lock();
		go = 1;
		cv.broadcast();
		l.unlock();
		for (auto &t : ts)
			t.join();
		u.join();
		CHECK(woke.load() == 9);
	});
}

TEST_CASE("cv with std::unique_lock<std::mutex> and condition_variable_any "
	  "with a usmp lock", "[unit][condvar]")
{
	test::machine m(2);
	m.run([] {
		std::mutex sm;
		condvar cv("std");
		bool flag = false;
		green_thread t([&] {
			std::unique_lock<std::mutex> g(sm);
			cv.wait(g, [&] { return flag; });
		});
		pause("w", 2ms);
		{
			std::lock_guard<std::mutex> g(sm);
			flag = true;
		}
		cv.signal();
		t.join();
		std::unique_lock<std::mutex> g(sm);
		CHECK(cv.timedwait(g, 1ms) == EWOULDBLOCK);
	});
	// std::condition_variable_any blocks the OS thread (the CPU): the
	// waiter and the notifier run on different CPUs.
	m.run([] {
		tlock l("cva");
		std::condition_variable_any cva;
		bool flag = false;
		thread_attr a0, a1;
		a0.cpu = 0;
		a1.cpu = 1;
		green_thread w(a0, [&] {
			std::unique_lock<tlock> g(l);
			cva.wait(g, [&] { return flag; });
		});
		green_thread n(a1, [&] {
			pause("w", 2ms);
			std::lock_guard<tlock> g(l);
			flag = true;
			cva.notify_all();
		});
		w.join();
		n.join();
	});
}

TEST_CASE("foreign OS thread waits on a condvar signalled by a green thread "
	  "and the reverse", "[unit][condvar]")
{
	test::machine m(2);
	tlock l("fl");
	condvar cv("fcv");
	int turn = 0;
	constexpr int N = 2000;
	std::thread os([&] {
		l.lock();
		for (int i = 0; i < N; i++) {
			while (turn != 1)
				cv.wait(l);
			turn = 0;
			cv.signal();
		}
		CHECK(cv.timedwait(l.lo(), 1ms) == EWOULDBLOCK);
		l.unlock();
	});
	m.run([&] {
		l.lock();
		for (int i = 0; i < N; i++) {
			turn = 1;
			cv.signal();
			while (turn != 0)
				cv.wait(l);
		}
		l.unlock();
	});
	os.join();
}

TEST_CASE("cv waits with a usmp::mutex interlock: EWOULDBLOCK, EINTR, "
	  "wait_unlock, recursion restored", "[unit][condvar]")
{
	test::machine m(2);
	m.run([] {
		mutex mx("cv interlock", nullptr, LOCK_RECURSE);
		condvar cv("cv mutex");
		mx.lock();
		CHECK(cv.timedwait(mx, 1ms) == EWOULDBLOCK);
		CHECK(mx.owned());
		thread_interrupt(curthread());
		CHECK(cv.wait_sig(mx.lo()) == EINTR);
		CHECK(mx.owned());
		CHECK(cv.timedwait_sig(mx.lo(), 1s) == EINTR);
		CHECK(thread_interrupt_clear());
		mx.lock(); // recursed: both levels go and come back
		int state = 0;
		green_thread t([&] {
			std::scoped_lock g(mx);
			state = 1;
			cv.signal();
		});
		while (state == 0)
			cv.wait(mx);
		mx.assert_recursed();
		mx.unlock();
		green_thread u([&] {
			std::scoped_lock g(mx);
			state = 2;
			cv.broadcast();
		});
		cv.wait_unlock(mx.lo()); // returns unlocked
		CHECK(!mx.owned());
		t.join();
		u.join();
		std::scoped_lock g(mx);
		CHECK(state == 2);
	});
}

// Fairness (no starvation): cv_signal wakes the longest sleeper among equal
// priorities, so a waiter that takes its permit and waits again queues
// behind the others, and the permits go round robin.  A LIFO queue, or a
// wakeup that favoured the waiter that ran last (the cache-warm one, the
// one a same-CPU handoff just ran), would hand one waiter every permit and
// leave the others asleep for ever: then the round robin below breaks.
TEST_CASE("condvar signal is FIFO among equal priorities: no waiter starves",
    "[unit][condvar]")
{
	constexpr int nwaiters = 4;
	constexpr int rounds = 25; // permits per waiter
	struct cfg {
		int ncpus;
		bool full;
	};
	for (cfg c : {cfg{1, false}, cfg{2, false}, cfg{4, true}}) {
		INFO("ncpus " << c.ncpus << " full preemption " << c.full);
		test::machine m(c.ncpus, c.full);
		m.run([&] {
			mutex mtx("fair");
			condvar cv("fair");
			int permits = 0;     // (mtx)
			bool done = false;   // (mtx)
			std::vector<int> order; // (mtx) waiter ids, in permit order
			auto sleepers = [&] {
				sleepq_lock(&cv);
				int n = sleepq_sleepcnt(&cv, 0);
				sleepq_release(&cv);
				return n;
			};
			std::vector<green_thread> ts;
			for (int i = 0; i < nwaiters; i++)
				ts.emplace_back([&, i] {
					std::unique_lock<mutex> g(mtx);
					for (;;) {
						cv.wait(g, [&] {
							return permits > 0 || done;
						});
						if (permits == 0)
							return;
						permits--;
						order.push_back(i);
					}
				});
			for (int r = 0; r < nwaiters * rounds; r++) {
				// Every waiter queued again: the one the signal
				// wakes is decided by the queue alone.
				while (sleepers() != nwaiters)
					thread_yield();
				{
					std::lock_guard<mutex> g(mtx);
					permits++;
				}
				cv.signal();
			}
			while (sleepers() != nwaiters)
				thread_yield();
			{
				std::lock_guard<mutex> g(mtx);
				done = true;
			}
			cv.broadcast();
			for (auto &t : ts)
				t.join();
			REQUIRE(order.size() == size_t{nwaiters} * rounds);
			// The first permits went to every waiter once (the order
			// they first queued in), and each later one to the waiter
			// served nwaiters permits before.
			std::vector<int> first(order.begin(), order.begin() + nwaiters);
			std::sort(first.begin(), first.end());
			long distinct =
			    std::unique(first.begin(), first.end()) - first.begin();
			CHECK(distinct == nwaiters);
			int out_of_turn = 0;
			for (size_t k = nwaiters; k < order.size(); k++)
				out_of_turn += order[k] != order[k - nwaiters];
			CHECK(out_of_turn == 0);
		});
	}
}

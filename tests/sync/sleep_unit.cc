// sleep(9) and sleep queues: msleep/wakeup, timeouts (EWOULDBLOCK),
// interrupts (EINTR) and their races with a wakeup, foreign OS threads.
#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "support/machine.h"
#include "support/tlock.h"
#include "runtime/thread.h"
#include "sync/lock.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sync/sleepqueue.h"

using namespace std::chrono_literals;
using namespace usmp;

using test::tlock;

TEST_CASE("msleep/wakeup hands a condition over", "[unit][sleep]")
{
	for (int ncpus : {1, 2}) {
		test::machine m(ncpus);
		m.run([] {
			tlock l("cond");
			int state = 0;
			green_thread t([&] {
				l.lock();
				while (state == 0)
					REQUIRE(msleep(&state, l, 0, "wait") == 0);
				state = 2;
				wakeup(&state);
				l.unlock();
			});
			l.lock();
			state = 1;
			wakeup(&state);
			while (state != 2)
				msleep(&state, l, 0, "back");
			l.unlock();
			t.join();
		});
	}
}

TEST_CASE("timeouts return EWOULDBLOCK", "[unit][sleep]")
{
	test::machine m(2);
	m.run([] {
		int chan;
		auto t0 = std::chrono::steady_clock::now();
		CHECK(tsleep(&chan, 0, "timo", 5ms) == EWOULDBLOCK);
		CHECK(std::chrono::steady_clock::now() - t0 >= 5ms);
		tlock l("timo lock");
		l.lock();
		CHECK(msleep(&chan, l, PCATCH, "timo", 2ms) == EWOULDBLOCK);
		CHECK(l.word.load() != 0); // re-acquired
		CHECK(msleep(&chan, l, PDROP, "timo", 1ms) == EWOULDBLOCK);
		CHECK(l.word.load() == 0); // PDROP
		CHECK(pause("pause", 1ms) == EWOULDBLOCK);
	});
}

TEST_CASE("thread_interrupt: EINTR in progress, pending, consumed",
    "[unit][sleep]")
{
	test::machine m(2);
	m.run([] {
		int chan;
		std::atomic<int> phase{0};
		thread *me = curthread();
		green_thread t([&] {
			while (phase.load() == 0)
				pause("spin", 1ms);
			pause("late", 5ms);
			thread_interrupt(me);
		});
		phase = 1;
		CHECK(tsleep(&chan, PCATCH, "intr") == EINTR);
		CHECK(thread_interrupt_pending(me));
		// Pending: the next interruptible sleep fails at once...
		CHECK(tsleep(&chan, PCATCH, "intr2", 1s) == EINTR);
		// ...an uninterruptible one is not affected.
		CHECK(tsleep(&chan, 0, "plain", 1ms) == EWOULDBLOCK);
		CHECK(thread_interrupt_clear());
		CHECK(!thread_interrupt_clear());
		CHECK(tsleep(&chan, PCATCH, "after", 1ms) == EWOULDBLOCK);
		t.join();
	});
}

TEST_CASE("a wakeup racing a timeout: exactly one result, nobody lost",
    "[unit][sleep]")
{
	test::machine m(2);
	m.run([] {
		constexpr int N = 2000;
		int woke = 0, timed = 0;
		for (int i = 0; i < N; i++) {
			int chan;
			std::atomic<int> ready{0};
			green_thread t([&] {
				while (ready.load() == 0)
					thread_yield();
				// Land near the sleeper's deadline.
				if (i & 1)
					thread_yield();
				wakeup(&chan);
			});
			ready = 1;
			// Never a zero timeout: that means "no timeout", and
			// with no interlock the wakeup may come before the
			// sleep begins, which would then never end.
			int r = tsleep(&chan, 0, "race",
			    std::chrono::microseconds(1 + i % 50));
			REQUIRE((r == 0 || r == EWOULDBLOCK));
			(r == 0 ? woke : timed)++;
			t.join();
		}
		CHECK(woke + timed == N);
	});
}

TEST_CASE("an interrupt racing a wakeup: 0 or EINTR, nobody lost",
    "[unit][sleep]")
{
	test::machine m(2);
	m.run([] {
		thread *me = curthread();
		for (int i = 0; i < 1000; i++) {
			int chan;
			green_thread a([&] { wakeup(&chan); });
			green_thread b([&] { thread_interrupt(me); });
			int r = tsleep(&chan, PCATCH, "race", 20ms);
			REQUIRE((r == 0 || r == EINTR || r == EWOULDBLOCK));
			a.join();
			b.join();
			thread_interrupt_clear();
		}
	});
}

TEST_CASE("wakeup_one picks the highest priority, then FIFO", "[unit][sleep]")
{
	test::machine m(1);
	m.run([] {
		int chan;
		std::vector<int> order;
		std::vector<green_thread> ts;
		int pris[] = {150, 130, 150, 130};
		for (int i = 0; i < 4; i++) {
			thread_attr a;
			a.priority = pris[i];
			ts.emplace_back(a, [&, i] {
				tsleep(&chan, 0, "order");
				order.push_back(i);
			});
		}
		while ([&] {
			sleepq_lock(&chan);
			int n = sleepq_sleepcnt(&chan, 0);
			sleepq_release(&chan);
			return n;
		}() != 4)
			pause("settle", 1ms);
		for (int i = 0; i < 4; i++) {
			wakeup_one(&chan);
			while (order.size() != static_cast<size_t>(i + 1))
				pause("run", 1ms);
		}
		for (auto &t : ts)
			t.join();
		CHECK(order == std::vector<int>{1, 3, 0, 2});
	});
}

TEST_CASE("foreign OS threads msleep, time out and are interrupted",
    "[unit][sleep]")
{
	test::machine m(2);
	int chan;
	std::atomic<int> state{0};
	std::atomic<thread *> ftd{nullptr};
	std::thread os([&] {
		ftd = curthread();
		CHECK(tsleep(&chan, 0, "ftimo", 2ms) == EWOULDBLOCK);
		state = 1;
		while (state.load() == 1)
			tsleep(&chan, 0, "fwait", 100ms);
		CHECK(tsleep(&chan, PCATCH, "fintr") == EINTR);
		CHECK(thread_interrupt_clear());
		state = 3;
	});
	m.run([&] {
		while (state.load() != 1)
			pause("w", 1ms);
		state = 2;
		wakeup(&chan);
		// Interrupt it while it sleeps on fintr.
		pause("w", 5ms);
		thread_interrupt(ftd.load());
		while (state.load() != 3)
			pause("w", 1ms);
	});
	os.join();
}

TEST_CASE("msleep with a usmp::mutex interlock: EWOULDBLOCK, EINTR, PDROP, "
	  "recursion restored", "[unit][sleep]")
{
	test::machine m(2);
	m.run([] {
		mutex mx("sleep interlock", nullptr, LOCK_RECURSE);
		int chan;
		mx.lock();
		CHECK(msleep(&chan, mx, 0, "timo", 1ms) == EWOULDBLOCK);
		CHECK(mx.owned());
		thread_interrupt(curthread());
		CHECK(msleep(&chan, mx, PCATCH, "intr", 1s) == EINTR);
		CHECK(mx.owned());
		CHECK(thread_interrupt_clear());
		// Every level is released around the sleep and restored after.
		mx.lock();
		mx.lock();
		std::atomic<bool> got{false};
		green_thread t([&] {
			mx.lock(); // only possible while the owner sleeps
			got = true;
			wakeup(&chan);
			mx.unlock();
		});
		while (!got.load())
			CHECK(msleep(&chan, mx, 0, "levels", 10ms) != EINTR);
		mx.assert_recursed();
		mx.unlock();
		mx.unlock();
		mx.assert_not_recursed();
		CHECK(msleep(&chan, mx, PDROP, "drop", 1ms) == EWOULDBLOCK);
		CHECK(!mx.owned());
		t.join();
	});
}

TEST_CASE("msleep with a usmp::mutex interlock: a wakeup racing a timeout or "
	  "an interrupt", "[unit][sleep]")
{
	test::machine m(2, true);
	m.run([] {
		mutex mx("race interlock");
		thread *me = curthread();
		int woke = 0, timed = 0, intr = 0;
		for (int i = 0; i < 2000; i++) {
			int state = 0; // (mx)
			green_thread w([&] {
				if (i & 1)
					thread_yield();
				std::scoped_lock g(mx);
				state = 1;
				wakeup(&state);
			});
			green_thread b([&] {
				if (i % 3 == 0)
					thread_interrupt(me);
			});
			mx.lock();
			int r = 0;
			// One sleep: its result, whatever it is, must leave the
			// interlock held; the wakeup, if it came first, made
			// state 1 before the sleep began (never lost: then the
			// loop does not sleep at all).
			if (state == 0)
				r = msleep(&state, mx, PCATCH, "race",
				    std::chrono::microseconds(1 + i % 50));
			REQUIRE(mx.owned());
			REQUIRE((r == 0 || r == EWOULDBLOCK || r == EINTR));
			if (r == 0 && state == 0) {
				// Woken only by... nothing else wakes &state.
				FAIL("msleep returned 0 without a wakeup");
			}
			(r == 0 ? woke : r == EWOULDBLOCK ? timed : intr)++;
			mx.unlock();
			w.join();
			b.join();
			thread_interrupt_clear();
		}
		CHECK(woke + timed + intr == 2000);
	});
}

// sx(9): shared/exclusive, writer preference, recursion, upgrade and
// downgrade, interruptible waits, std lock adaptors, msleep on an sx.
#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <shared_mutex>

#include "support/machine.h"
#include "runtime/thread.h"
#include "sync/condvar.h"
#include "sync/sleep.h"
#include "sync/sleepqueue.h"
#include "sync/sx.h"

using namespace std::chrono_literals;
using namespace usmp;

TEST_CASE("sx basics: shared, exclusive, try, upgrade, downgrade, recursion",
    "[unit][sx]")
{
	test::machine m(2);
	m.run([] {
		sx s("basic");
		s.lock();
		s.assert_xlocked();
		CHECK(s.xlocked());
		CHECK(!s.try_lock_shared());
		s.downgrade();
		s.assert_slocked();
		CHECK(s.try_lock_shared());
		CHECK(!s.try_upgrade()); // two sharers
		s.unlock_shared();
		CHECK(s.try_upgrade());
		s.assert_xlocked();
		s.unlock();
		s.assert_unlocked();
		CHECK(!s.try_lock() == false);
		s.unlock();

		sx r("recursive", LOCK_RECURSE);
		r.lock();
		r.lock();
		CHECK(r.try_lock());
		r.unlock();
		r.unlock();
		r.assert_xlocked();
		r.unlock();
		r.assert_unlocked();

		{
			std::unique_lock<sx> g(s);
			CHECK(s.xlocked());
		}
		{
			std::shared_lock<sx> g(s);
			s.assert_slocked();
		}
		std::scoped_lock g(s, r);
	});
}

TEST_CASE("sx writer preference and wakeups", "[unit][sx]")
{
	test::machine m(2);
	m.run([] {
		sx s("pref");
		std::atomic<int> stage{0};
		s.lock_shared();
		green_thread w([&] {
			s.lock(); // waits for the reader
			stage = 1;
			pause("hold", 2ms);
			s.unlock();
		});
		auto waiting = [&](int q) {
			sleepq_lock(&s);
			int n = sleepq_sleepcnt(&s, q);
			sleepq_release(&s);
			return n;
		};
		while (waiting(0) == 0)
			pause("w", 1ms);
		// A writer waits: a new reader is refused and sleeps.
		green_thread r([&] {
			s.lock_shared();
			CHECK(stage.load() == 1); // the writer went first
			stage = 2;
			s.unlock_shared();
		});
		while (waiting(1) == 0)
			pause("w", 1ms);
		CHECK(stage.load() == 0);
		s.unlock_shared();
		w.join();
		r.join();
		CHECK(stage.load() == 2);
	});
}

TEST_CASE("sx lock_sig returns EINTR; msleep and condvar with an sx",
    "[unit][sx]")
{
	test::machine m(2);
	m.run([] {
		sx s("sig");
		thread *me = curthread();
		// h holds the sx until lock_sig has returned (sx holders may
		// sleep), so lock_sig must sleep; the interrupt, whether it
		// lands before or during that sleep, ends it with EINTR.
		std::atomic<bool> held{false}, done{false};
		green_thread h([&] {
			s.lock();
			held = true;
			while (!done.load())
				pause("hold", 1ms);
			s.unlock();
		});
		while (!held.load())
			pause("w", 1ms);
		green_thread k([&] {
			pause("w", 5ms);
			thread_interrupt(me);
		});
		CHECK(s.lock_sig() == EINTR);
		done = true;
		CHECK(thread_interrupt_clear());
		k.join();
		h.join();

		int chan;
		s.lock_shared();
		CHECK(msleep(&chan, s, 0, "sxsleep", 1ms) == EWOULDBLOCK);
		s.assert_slocked(); // re-taken shared
		s.unlock_shared();
		condvar cv("sxcv");
		s.lock();
		CHECK(cv.timedwait(s, 1ms) == EWOULDBLOCK);
		s.assert_xlocked();
		s.unlock();
	});
}

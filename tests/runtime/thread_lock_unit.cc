// thread_lock(9) (runtime/switch.cc): the lock a thread's td_lock points to
// can change while another CPU waits for it, and the waiter must follow.
//
// The case that hung usmp-stress's `order` scenario: CPU A wants the thread
// lock of a thread blocked on turnstile T (td_lock = &T's ts_lock).  The
// thread is woken (td_lock moves to a run-queue lock) and T is reused by a
// new waiter, which holds T's ts_lock while it spins for a thread lock that
// CPU A holds.  A waiter that keeps spinning on the lock it first read never
// gets it: both CPUs spin forever.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "runtime/internal/seam.h"
#include "runtime/internal/spinlock.h"
#include "runtime/thread.h"
#include "support/machine.h"

using namespace usmp;
using namespace std::chrono_literals;

TEST_CASE("thread_lock follows td_lock when it moves while the lock is held",
    "[unit]")
{
	test::machine m(2);
	// A stand-in thread: only its td_lock is used.  `stale` plays T's
	// ts_lock, held for good by its next user; `current` the run-queue
	// lock the thread moved to, which is free.
	auto victim = std::make_unique<thread>();
	spinlock stale, current;
	stale.lock();
	victim->td_lock.store(&stale, std::memory_order_release);

	std::atomic<int> phase{0}; // 1: waiter started; 2: it got the lock
	bool early = false;
	// The mover is a foreign OS thread, so that it runs whatever the
	// waiter's CPU does (the waiter spins in a spinlock section).
	std::thread mover([&] {
		while (phase.load() == 0)
			std::this_thread::yield();
		// Long enough that the waiter is spinning on `stale` (this
		// only makes the test sharper: an earlier move passes anyway).
		std::this_thread::sleep_for(50ms);
		early = phase.load() == 2;
		victim->td_lock.store(&current, std::memory_order_release);
	});
	m.run([&] {
		phase.store(1);
		thread_lock(victim.get()); // hung here before the fix
		phase.store(2);
		CHECK(current.held());
		thread_unlock(victim.get());
	});
	mover.join();
	CHECK_FALSE(early);           // it did wait while `stale` was its lock
	CHECK_FALSE(current.held());  // and released the lock it took
	CHECK(stale.held());          // never the stale one
	stale.unlock();
}

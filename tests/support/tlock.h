// Test support, for tests/ only: a small sleep lock on the sleep queues, with
// a lock_class, to use as the interlock of msleep() and condvar waits in
// tests of those alone (without usmp::mutex or usmp::sx underneath).
//
//     usmp::test::tlock l("cond");
//     l.lock();
//     while (!ready)
//         usmp::msleep(&ready, l, 0, "wait");
//     l.unlock();
//
// Its class is marked sleepable, so msleep() and condvars release it with
// the sleep-queue chain lock dropped (its own unlock takes a chain lock to
// wake its waiters).  `word` is public so tests can check whether a sleep
// gave it back (0 free, 1 held, 2 held with waiters).  Not recursive, no
// owner: tests use it correctly.
#pragma once

#include <atomic>
#include <cstdint>

#include "sync/lock.h"
#include "sync/sleepqueue.h"

namespace usmp::test {

struct tlock {
	lock_object lo_;
	std::atomic<int> word{0}; // 0 free, 1 held, 2 held with waiters

	explicit tlock(const char *name)
	{
		lock_init(&lo_, &cls, name, nullptr, 0, "tlock", __FILE__, __LINE__);
	}
	tlock(const tlock &) = delete;
	tlock &operator=(const tlock &) = delete;
	lock_object *lo() noexcept { return &lo_; }
	void lock() noexcept
	{
		for (;;) {
			int v = 0;
			if (word.compare_exchange_strong(v, 1))
				return;
			// Mark "waiters" under the chain lock, then sleep: an
			// unlock that sees 2 wakes under the same chain lock.
			sleepq_lock(this);
			v = word.load();
			if (v != 0 && (v == 2 || word.compare_exchange_strong(v, 2))) {
				sleepq_add(this, nullptr, "tlock", SLEEPQ_SLEEP, 0);
				sleepq_wait(this, 0);
			} else {
				sleepq_release(this);
			}
		}
	}
	void unlock() noexcept
	{
		if (word.exchange(0) == 2) {
			sleepq_lock(this);
			sleepq_broadcast(this, SLEEPQ_SLEEP, 0, 0);
			sleepq_release(this);
		}
	}

	static const lock_class cls;
};

inline const lock_class tlock::cls = {
	"test lock", LC_SLEEPLOCK | LC_SLEEPABLE, nullptr,
	[](lock_object *lo) -> uintptr_t {
		reinterpret_cast<tlock *>(lo)->unlock();
		return 0;
	},
	[](lock_object *lo, uintptr_t) { reinterpret_cast<tlock *>(lo)->lock(); },
	nullptr,
};

} // namespace usmp::test

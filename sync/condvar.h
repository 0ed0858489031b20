// condvar(9): condition variables.
//
// A condvar is a wait channel (its own address) with a description (the
// wait message) and a count of waiters that lets signal() and broadcast()
// return without touching the sleep queue when nobody waits (section 3.4).
// Waits release the interlock and sleep atomically with respect to
// signal/broadcast, provided the condition is changed under the interlock
// (signalling itself may happen after the unlock).
//
// The interlock is any usmp lock but a spin mutex, passed as its
// lock_object (m.lo()), as the lock itself (anything with lo()), or as any
// C++ BasicLockable (std::unique_lock<usmp::mutex>, std::mutex, ...):
//
//     usmp::mutex m("queue");
//     usmp::condvar cv("queue not empty");
//     std::unique_lock<usmp::mutex> l(m);
//     cv.wait(l, [&] { return !q.empty(); });
//
// Results of the int-returning waits: 0 signalled (or spurious: re-test),
// EWOULDBLOCK timed out, EINTR interrupted (thread_interrupt()).
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <mutex>

#include "sync/lock.h"

namespace usmp {

class condvar {
public:
	explicit condvar(const char *desc = "condvar") noexcept : cv_description(desc) {}
	// cv_destroy(): panics if threads still wait (USMP_INVARIANTS).
	~condvar();
	condvar(const condvar &) = delete;
	condvar &operator=(const condvar &) = delete;

	const char *description() const noexcept { return cv_description; }

	// Waits on a lock_object.  Context: may sleep; not in a critical
	// section or with a spin lock held (panic).
	void wait(lock_object *lock, const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	int wait_sig(lock_object *lock, const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	int timedwait(lock_object *lock, std::chrono::nanoseconds timo,
	    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;
	int timedwait_sig(lock_object *lock, std::chrono::nanoseconds timo,
	    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;
	// cv_wait_unlock(): returns with the lock released.
	void wait_unlock(lock_object *lock, const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// The same with a usmp lock (anything with lo()).
	template <class L>
	    requires requires(L &l) { { l.lo() } -> std::same_as<lock_object *>; }
	void wait(L &l, const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		wait(l.lo(), file, line);
	}

	// Any BasicLockable (unlock() and lock()), including
	// std::unique_lock<usmp::mutex>; usmp locks inside a unique_lock take
	// the lock_object path.
	template <class L>
	    requires(!requires(L &l) { l.lo(); })
	void wait(L &l, const char *file = __builtin_FILE(),
	    int line = __builtin_LINE())
	{
		if constexpr (requires { { l.mutex()->lo() } -> std::same_as<lock_object *>; })
			wait(l.mutex()->lo(), file, line);
		else
			generic_wait(l, file, line);
	}
	template <class L, class Pred>
	void wait(L &l, Pred pred)
	{
		while (!pred())
			wait(l);
	}
	template <class L>
	int timedwait(L &l, std::chrono::nanoseconds timo,
	    const char *file = __builtin_FILE(), int line = __builtin_LINE())
	{
		if constexpr (requires { { l.lo() } -> std::same_as<lock_object *>; })
			return timedwait(l.lo(), timo, file, line);
		else if constexpr (requires { { l.mutex()->lo() } -> std::same_as<lock_object *>; })
			return timedwait(l.mutex()->lo(), timo, file, line);
		else
			return generic_timedwait(l, timo, file, line);
	}

	// cv_signal(): wake the best waiter.  cv_broadcast(): wake all.
	// Context: any but filters.
	void signal() noexcept;
	void broadcast() noexcept;
	// std-style names.
	void notify_one() noexcept { signal(); }
	void notify_all() noexcept { broadcast(); }

	// Waiters as counted (an upper bound; tests).
	int waiters() const noexcept { return cv_waiters.load(std::memory_order_relaxed); }

private:
	// Generic BasicLockable: the sleepable-interlock order (the chain
	// lock is dropped around l.unlock()).
	struct any_lock {
		void *l;
		void (*unlock)(void *);
		void (*lock)(void *);
	};
	template <class L>
	static any_lock erase(L &l)
	{
		return {&l, [](void *p) { static_cast<L *>(p)->unlock(); },
		    [](void *p) { static_cast<L *>(p)->lock(); }};
	}
	template <class L>
	void generic_wait(L &l, const char *file, int line)
	{
		any_lock a = erase(l);
		(void)wait_any(a, std::chrono::nanoseconds::zero(), 0, file, line);
	}
	template <class L>
	int generic_timedwait(L &l, std::chrono::nanoseconds timo, const char *file, int line)
	{
		any_lock a = erase(l);
		return wait_any(a, timo, 0, file, line);
	}
	int wait_any(any_lock &a, std::chrono::nanoseconds timo, int flags,
	    const char *file, int line) noexcept;
	int wait_common(lock_object *lock, std::chrono::nanoseconds timo,
	    int flags, bool relock, const char *call, const char *file,
	    int line) noexcept;

	const char *cv_description;     // (c) wait message
	std::atomic<int> cv_waiters{0}; // sleep-queue chain lock; racy reads
};

} // namespace usmp

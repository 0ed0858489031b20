// sx(9): sleepable shared/exclusive locks.
//
// Holders may sleep (msleep, condvar waits, other sx) for unbounded time;
// waiters sleep on sleep queues (type SLEEPQ_SX, queue 0 exclusive, 1
// shared), so no priority is lent to holders (section 4.2).  Writer
// preference: once a thread waits for exclusive access, new shared
// requests wait too (shared holdings are anonymous here: a thread that
// already holds the lock shared and asks again while a writer waits
// deadlocks, as td_sx_slocks is not tracked).  Exclusive recursion only
// with LOCK_RECURSE.  Meets Lockable and SharedLockable, so
// std::unique_lock, std::shared_lock and std::scoped_lock work.
//
// The lock word sx_lock: the layout shared with rwlock (sync/internal/
// shared_word.h): SHARED (shared mode or unlocked), SHARED_WAITERS
// (sleepers on queue 1), EXCLUSIVE_WAITERS (sleepers on queue 0), then the
// number of sharers or the owner.  No adaptive spinning here, and
// recursion is sx_recurse alone, which only the owner touches.
//
// Invariants: unlocked = SHARED with 0 sharers (0x1, waiter bits may stay
// set only while the chain lock holder is about to clear them); destroyed
// = 0x6; a waiter bit is set only under the sleep-queue chain lock of the
// sx, by a thread about to sleep, and cleared only under it, by the thread
// that wakes that queue.
//
// Transitions (C: CAS without the chain lock; Q: under the chain lock):
//
//     from                      op            to
//     unlocked                  xlock    C    td
//     unlocked (+ waiter bits)  xlock    Q    td | waiter bits
//     td                        xlock         td, sx_recurse++ (LOCK_RECURSE)
//     SHARED|n, no EXCL_WAIT    slock    C    SHARED|n+1
//     td, no waiters            xunlock  C    unlocked
//     td | waiters              xunlock  Q    unlocked (| SHARED_WAITERS if
//                                             the writers were woken)
//     SHARED|n>1 or no waiters  sunlock  C    SHARED|n-1
//     SHARED|1 | waiters        sunlock  Q    unlocked (same rule)
//     SHARED|1 [| EXCL_WAIT]    try_upgrade C td [| EXCL_WAIT]
//     td [| waiters]            downgrade Q   SHARED|1 [| EXCL_WAIT], wake
//                                             the shared queue
//     unlocked                  destroy       0x6
#pragma once

#include <atomic>
#include <cstdint>

#include "sync/internal/shared_word.h"
#include "sync/lock.h"

namespace usmp {

enum : uintptr_t {
	SX_LOCK_SHARED = SW_SHARED,
	SX_LOCK_SHARED_WAITERS = SW_SHARED_WAITERS,
	SX_LOCK_EXCLUSIVE_WAITERS = SW_EXCLUSIVE_WAITERS,
	SX_LOCK_FLAGMASK = SW_FLAGMASK,
	SX_SHARERS_SHIFT = SW_SHARERS_SHIFT,
	SX_ONE_SHARER = SW_ONE_SHARER,
	SX_LOCK_UNLOCKED = SW_UNLOCKED,
	SX_LOCK_DESTROYED = SW_DESTROYED,
	SX_LOCK_WAITERS = SW_WAITERS,
};

extern const lock_class lock_class_sx;

class sx {
public:
	// sx_init_flags(): opts from lock_opts (LOCK_RECURSE, LOCK_DUPOK, ...).
	explicit sx(const char *name, unsigned opts = 0,
	    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;
	// sx_destroy() if not yet destroyed; panics if held.
	~sx();
	sx(const sx &) = delete;
	sx &operator=(const sx &) = delete;

	// sx_destroy(): the lock must be unlocked.
	void destroy(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// Exclusive.  Context: may sleep.
	void lock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	// sx_xlock_sig(): 0 or EINTR (thread_interrupt()).
	int lock_sig(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	bool try_lock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	void unlock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// Shared.  Context: may sleep.
	void lock_shared(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	int lock_shared_sig(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	bool try_lock_shared(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	void unlock_shared(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// sx_try_upgrade(): shared -> exclusive if the caller is the only
	// sharer.  sx_downgrade(): exclusive (not recursed) -> shared.
	bool try_upgrade(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	void downgrade(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// sx_assert().  Panic messages as FreeBSD's.
	void assert_xlocked(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;
	void assert_slocked(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;
	void assert_locked(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;
	void assert_unlocked(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;

	bool xlocked() const noexcept;   // sx_xlocked(): by curthread
	thread *xholder() const noexcept; // sx_xholder()
	lock_object *lo() noexcept { return &sx_lo; }
	const lock_object *lo() const noexcept { return &sx_lo; }

private:
	int xlock_hard(uintptr_t tid, int flags, const char *file, int line) noexcept;
	int slock_hard(int flags, const char *file, int line) noexcept;
	void xunlock_hard(const char *file, int line) noexcept;
	void sunlock_hard(const char *file, int line) noexcept;

	lock_object sx_lo;              // (c)
	std::atomic<uintptr_t> sx_lock; // (a) the lock word, above
	unsigned sx_recurse = 0;        // exclusive recursion (owner only)
};

} // namespace usmp

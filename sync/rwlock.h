// Reader/writer locks (rwlock(9)): usmp::rwlock.  Not sleepable: holders
// may not sleep; waiters block on turnstiles (readers on the shared queue,
// writers on the exclusive one) and lend their priority to a write owner
// (readers are anonymous, so nobody can lend to them).  Readers always
// recurse; writers recurse with LOCK_RECURSE.  Writer preference: a new
// reader waits while writers wait, unless it already holds read locks.
//
// Lock word (rw_lock): the layout shared with sx (sync/internal/
// shared_word.h), READ = SHARED, RWAITER / WWAITER = the shared / exclusive
// waiter bits.  FreeBSD also keeps WRITE_SPINNER and a RECURSED bit in the
// word; here writer recursion is counted in rw_recurse alone (the owner's
// unlock fast path checks it first).
//
// Invariants:
//   - READ set: read mode (count << 5 readers, 0 = unlocked); READ clear:
//     write-locked by the owner in the bits above the low three.
//   - RW_UNLOCKED = READ with 0 readers and no waiter bits (0x1).
//   - RWAITER / WWAITER set  =>  the lock's turnstile has (or had, until
//     the next release under the chain lock) readers / writers queued; set
//     under the turnstile chain lock by the thread that then waits, cleared
//     by a release under that lock.
//   - rw_recurse > 0 only while write-locked (changed by the owner only).
//   - RW_DESTROYED = RWAITER | WWAITER, READ clear (0x6): destroyed.
//
// Transitions (T = curthread, n readers):
//
//	from                  to                     by
//	UNLOCKED              T                      wlock (CAS)
//	T                     UNLOCKED               wunlock (CAS)
//	T|waiters             UNLOCKED|other waiter  wunlock, chain locked: wake
//	                                             writers if any, else readers
//	READ|n[|waiters]      READ|n+1[|waiters]     rlock, when no writer waits
//	                                             (or T holds read locks)
//	READ|n+1              READ|n                 runlock
//	READ|1|waiters        UNLOCKED|other waiter  last runlock, chain locked
//	READ|0|waiters        T|waiters              wlock claims the turnstile
//	READ|1|bits           T|bits                 try_upgrade
//	T|bits                READ|1[|bits if WWAITER] downgrade (wakes readers if
//	                                             no writer waits)
//	UNLOCKED              RW_DESTROYED           destroy()
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/internal/curthread.h"
#include "runtime/sim.h"
#include "runtime/thread.h"
#include "sync/internal/shared_word.h"
#include "sync/lock.h"
#include "sync/witness.h"

namespace usmp {

enum : uintptr_t {
	RW_LOCK_READ = SW_SHARED,
	RW_LOCK_READ_WAITERS = SW_SHARED_WAITERS,
	RW_LOCK_WRITE_WAITERS = SW_EXCLUSIVE_WAITERS,
	RW_LOCK_FLAGMASK = SW_FLAGMASK,
	RW_LOCK_WAITERS = SW_WAITERS,
	RW_READERS_SHIFT = SW_SHARERS_SHIFT,
	RW_ONE_READER = SW_ONE_SHARER,
	RW_UNLOCKED = SW_UNLOCKED,
	RW_DESTROYED = SW_DESTROYED,
};

// rw_assert() kinds (RA_*).
enum : int {
	RA_LOCKED = LA_LOCKED,
	RA_RLOCKED = LA_SLOCKED,
	RA_WLOCKED = LA_XLOCKED,
	RA_UNLOCKED = LA_UNLOCKED,
	RA_RECURSED = LA_RECURSED,
	RA_NOTRECURSED = LA_NOTRECURSED,
};

extern const lock_class lock_class_rw;

// Lockable and SharedLockable: std::unique_lock, std::shared_lock work.
// Locking key: (a) rw_lock, acquire on lock, release on unlock; (o) the
// write owner; (c) constant after init.
class rwlock {
public:
	// rw_init_flags(rw, name, opts): LOCK_RECURSE, LOCK_NOWITNESS,
	// LOCK_DUPOK, LOCK_QUIET, LOCK_NOPROFILE, LOCK_NEW.  Context: any.
	explicit rwlock(const char *name, unsigned opts = 0,
	    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;
	~rwlock();
	rwlock(const rwlock &) = delete;
	rwlock &operator=(const rwlock &) = delete;

	// rw_wlock().  Context: may block (bounded); not in a critical section.
	void lock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		if (sim_active()) // a scheduling point (runtime/sim.h)
			sim::lock_point(true);
		thread *td = curthread_fast();
		uintptr_t v = RW_UNLOCKED;
		if (__builtin_expect(td->td_critnest == 0 &&
			!witness_watched(&rw_lo) && !config::lock_profiling &&
			rw_lock.compare_exchange_strong(v,
			    reinterpret_cast<uintptr_t>(td),
			    std::memory_order_acquire, std::memory_order_relaxed),
			1)) {
			held(td, 0, 1);
			return;
		}
		wlock_hard(file, line);
	}
	// rw_try_wlock().
	bool try_lock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	// rw_wunlock().
	void unlock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// rw_rlock(), rw_try_rlock(), rw_runlock().
	void lock_shared(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	bool try_lock_shared(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	void unlock_shared(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// rw_try_upgrade(): read -> write if we are the only reader.
	bool try_upgrade(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	// rw_downgrade(): write (not recursed) -> read.
	void downgrade(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// rw_destroy(): must be unlocked.
	void destroy(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// rw_wowned(), rw_assert().
	bool wowned() const noexcept
	{
		uintptr_t v = rw_lock.load(std::memory_order_relaxed);
		return !(v & RW_LOCK_READ) &&
		    (v & ~uintptr_t{RW_LOCK_FLAGMASK}) ==
		    reinterpret_cast<uintptr_t>(curthread_fast());
	}
	void assert_state(int what, const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;
	const char *name() const noexcept { return rw_lo.lo_name; }
	thread *owner() const noexcept;
	// Readers now (racy; for tests).
	unsigned readers() const noexcept;

	lock_object *lo() noexcept { return &rw_lo; }
	static rwlock *from_lo(lock_object *lo) noexcept;

private:
	void wlock_hard(const char *file, int line) noexcept;
	// Count a hold change in td's rwlock holds (td_sync; td is curthread).
	static void held(thread *td, int drl, int dwl) noexcept
	{
		td->td_sync.ts_rlocks += drl;
		td->td_sync.ts_wlocks += dwl;
	}

	lock_object rw_lo;                          // (c)
	std::atomic<uintptr_t> rw_lock{RW_UNLOCKED}; // (a)
	unsigned rw_recurse = 0;                    // (o)
};

} // namespace usmp

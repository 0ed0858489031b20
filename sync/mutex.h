// Mutexes (mutex(9)): usmp::mutex (MTX_DEF, a sleep mutex that blocks on a
// turnstile), usmp::spin_mutex (MTX_SPIN), Giant.
//
// The sleep mutex is one lock word plus the lock object; its fast paths are
// a single CAS each and are inline here; everything else is in
// sync/mutex.cc, whose top says how the slow paths work.
//
// Lock word of usmp::mutex (mtx_lock), FreeBSD's:
//
//	63                                   3    2          1         0
//	+------------------------------------+---------+-----------+---------+
//	| owner: struct thread *, 8-aligned  |DESTROYED| CONTESTED | RECURSED|
//	+------------------------------------+---------+-----------+---------+
//
// Invariants:
//   - 0 (MTX_UNOWNED): free, and nobody waits on its turnstile except
//     threads already woken that have not retried yet.
//   - RECURSED set  <=>  owner set and mtx_recurse > 0; only the owner
//     changes RECURSED and mtx_recurse.
//   - CONTESTED set  =>  owner set, and the lock's turnstile exists with at
//     least one waiter; it is set only under the turnstile chain lock, by a
//     thread that then waits, and cleared only by the owner's release under
//     that same chain lock.
//   - MTX_DESTROYED alone: destroyed; every fast path fails on it, and the
//     slow path reports the use after destroy.
//
// State transitions (T = curthread):
//
//	from              to                 by
//	0                 T                  lock fast path (CAS, acquire)
//	T                 0                  unlock fast path (CAS, release)
//	T[|C]             T|R[|C]            recursive lock by T
//	T|R[|C]           T[|C]              unlock of the last recursion
//	U (another)       U|C                a waiter, chain locked, then waits
//	T|C               0                  unlock slow path, chain locked;
//	                                     wakes every waiter (no hand-off)
//	0 or T            DESTROYED          destroy()
//
// Spin mutex (usmp::spin_mutex): mtx_lock holds the owner or 0 (or
// MTX_DESTROYED), with MTX_RECURSED set while mtx_recurse > 0 (only the
// owner writes either), so that the unlock fast path is one compare of the
// word with curthread.  It is held inside a spinlock section (critical
// section, "interrupts" off).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "runtime/critical.h"
#include "runtime/internal/curthread.h"
#include "runtime/sim.h"
#include "runtime/thread.h"
#include "sync/internal/witness_fast.h"
#include "sync/lock.h"
#include "sync/lock_profile.h"
#include "sync/witness.h"

namespace usmp {

// Lock word bits.
enum : uintptr_t {
	MTX_UNOWNED = 0x0,
	MTX_RECURSED = 0x1,
	MTX_CONTESTED = 0x2,
	MTX_DESTROYED = 0x4,
	MTX_FLAGMASK = MTX_RECURSED | MTX_CONTESTED | MTX_DESTROYED,
};

// mtx_assert() kinds (MA_*).
enum : int {
	MA_OWNED = LA_XLOCKED,
	MA_NOTOWNED = LA_UNLOCKED,
	MA_RECURSED = LA_RECURSED,
	MA_NOTRECURSED = LA_NOTRECURSED,
};

extern const lock_class lock_class_mtx_sleep;
extern const lock_class lock_class_mtx_spin;

// A sleep mutex (MTX_DEF).  Lockable: std::scoped_lock, std::unique_lock
// and std::condition_variable_any work with it.
//
// Locking key: (a) mtx_lock, atomic: acquire on lock, release on unlock;
// (o) the owner only; (c) constant after init.
class mutex {
public:
	// mtx_init(m, name, type, MTX_DEF | opts).  opts: LOCK_RECURSE,
	// LOCK_NOWITNESS, LOCK_DUPOK, LOCK_QUIET, LOCK_NOPROFILE, LOCK_NEW.
	// Context: any.
	explicit mutex(const char *name, const char *type = nullptr,
	    unsigned opts = 0, const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	// Destroys it if destroy() was not called (the same rules apply).
	~mutex();
	mutex(const mutex &) = delete;
	mutex &operator=(const mutex &) = delete;

	// mtx_lock().  Blocks on a turnstile, lending our priority to the
	// owner.  Context: may block (bounded); not in a critical section or
	// with a spin mutex held; a green thread or a foreign OS thread.
	// lock() and unlock() are always inlined: with the WITNESS and sim
	// paths beside the CAS, GCC's size heuristics otherwise make them
	// calls (+1 ns on usmp-bench's mutex_uncontended).
	[[gnu::always_inline]] void lock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		if (sim_active()) // a scheduling point (runtime/sim.h)
			sim::lock_point(true);
		thread *td = curthread_fast();
		uintptr_t v = MTX_UNOWNED;
		if (__builtin_expect(td->td_critnest == 0 &&
			!config::lock_profiling, 1)) {
			if (!witness_watched(&mtx_lo)) {
				if (__builtin_expect(mtx_lock.compare_exchange_strong(v,
					reinterpret_cast<uintptr_t>(td),
					std::memory_order_acquire,
					std::memory_order_relaxed), 1))
					return;
			} else if constexpr (config::witness) {
				// WITNESS's inline known-order path (sync/
				// internal/witness_fast.h; not in a build
				// without USMP_WITNESS); else lock_hard checks.
				witness_detail::witness_held *wh =
				    witness_detail::fast_checkorder(&mtx_lo, td);
				if (wh != nullptr &&
				    mtx_lock.compare_exchange_strong(v,
					reinterpret_cast<uintptr_t>(td),
					std::memory_order_acquire,
					std::memory_order_relaxed)) {
					witness_detail::fast_push(wh, &mtx_lo, file,
					    line);
					return;
				}
			}
		}
		lock_hard(file, line, 0);
	}
	// mtx_lock_flags(m, MTX_RECURSE): one recursive acquisition allowed
	// even without LOCK_RECURSE.  Context: as lock().
	void lock_recurse(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		lock_hard(file, line, LOCK_RECURSE);
	}
	// mtx_trylock(): true if acquired (recursion only if LOCK_RECURSE).
	// Context: any green or foreign thread; try-locks are permitted even
	// with a spin mutex held (locking(9)), as they never block.
	bool try_lock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	// mtx_unlock().  Context: the owner.
	[[gnu::always_inline]] void unlock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		if (sim_active()) // a scheduling point (runtime/sim.h)
			sim::lock_point(false);
		uintptr_t v = reinterpret_cast<uintptr_t>(curthread_fast());
		if (__builtin_expect(!witness_watched(&mtx_lo) &&
			!config::lock_profiling &&
			mtx_lock.compare_exchange_strong(v, MTX_UNOWNED,
			    std::memory_order_release, std::memory_order_relaxed),
			1))
			return;
		// WITNESS's inline path: the top entry, released.
		if constexpr (config::witness && !config::lock_profiling) {
			if (witness_watched(&mtx_lo)) {
				thread *td = curthread_fast();
				v = reinterpret_cast<uintptr_t>(td);
				witness_detail::witness_held *wh =
				    witness_detail::fast_unlock_check(&mtx_lo, td);
				if (wh != nullptr) {
					// Off the held list before the
					// release, as WITNESS_UNLOCK: no
					// other thread's list shows it yet.
					witness_detail::fast_pop(wh);
					if (mtx_lock.compare_exchange_strong(v,
						MTX_UNOWNED,
						std::memory_order_release,
						std::memory_order_relaxed))
						return;
					unlock_hard(file, line, true);
					return;
				}
			}
		}
		unlock_hard(file, line);
	}
	// mtx_destroy(): allowed unowned or owned once by the caller; panics
	// with waiters or recursion.  Context: as unlock().
	void destroy(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// mtx_owned(), mtx_recursed(), mtx_name().
	bool owned() const noexcept
	{
		return (mtx_lock.load(std::memory_order_relaxed) & ~MTX_FLAGMASK) ==
		    reinterpret_cast<uintptr_t>(curthread_fast());
	}
	bool recursed() const noexcept
	{
		return owned() &&
		    (mtx_lock.load(std::memory_order_relaxed) & MTX_RECURSED);
	}
	const char *name() const noexcept { return mtx_lo.lo_name; }
	// The owner, or null.
	thread *owner() const noexcept
	{
		uintptr_t v = mtx_lock.load(std::memory_order_relaxed);
		return v == MTX_DESTROYED ? nullptr :
		    reinterpret_cast<thread *>(v & ~MTX_FLAGMASK);
	}

	// mtx_assert(): panic "mutex <name> not owned at file:line" etc.
	void assert_owned(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;
	void assert_not_owned(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;
	void assert_recursed(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;
	void assert_not_recursed(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;
	// mtx_assert(m, what) with MA_* bits.
	void assert_state(int what, const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;

	// The lock object, for generic code (msleep()'s interlock, condvars).
	lock_object *lo() noexcept { return &mtx_lo; }
	const lock_object *lo() const noexcept { return &mtx_lo; }
	static mutex *from_lo(lock_object *lo) noexcept;

	// Release every recursion level, returning the depth (1 + recursion);
	// take it back with relock_depth().  The lock class and Giant use them.
	unsigned unlock_all(const char *file, int line) noexcept;
	void relock_depth(unsigned depth, const char *file, int line) noexcept;

private:
	void lock_hard(const char *file, int line, unsigned opts) noexcept;
	void lock_slow(const char *file, int line, unsigned opts) noexcept;
	// witnessed: WITNESS's held list no longer shows it (the inline
	// path popped it).
	void unlock_hard(const char *file, int line,
	    bool witnessed = false) noexcept;

	lock_object mtx_lo;                       // (c)
	std::atomic<uintptr_t> mtx_lock{MTX_UNOWNED}; // (a)
	unsigned mtx_recurse = 0;                 // (o)
};

// A spin mutex (MTX_SPIN).  Held inside a spinlock section; waiters spin,
// with "interrupts" enabled while they wait.  Lockable.
//
// Locking key: (a) mtx_lock: acquire/release; (o) owner only; (c) constant.
class spin_mutex {
public:
	// mtx_init(m, name, type, MTX_SPIN | opts).  Context: any.
	explicit spin_mutex(const char *name, const char *type = nullptr,
	    unsigned opts = 0, const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	~spin_mutex();
	spin_mutex(const spin_mutex &) = delete;
	spin_mutex &operator=(const spin_mutex &) = delete;

	// mtx_lock_spin().  Enters a spinlock section.  Recursion only with
	// LOCK_RECURSE.  Panics if the holder keeps it longer than the bound
	// (spin_mutex_set_hang_limit).  Context: any.
	void lock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		if (sim_active()) // a scheduling point (runtime/sim.h)
			sim::lock_point(true);
		// One test for everything that is not the plain case (WITNESS
		// watching, profiling): lock_watched() does the whole of it.
		if (__builtin_expect(witness_watched(&mtx_lo) ||
			config::lock_profiling, 0)) {
			lock_watched(file, line);
			return;
		}
		thread *td = curthread_fast();
		spinlock_enter_td(td);
		uintptr_t v = MTX_UNOWNED;
		if (__builtin_expect(mtx_lock.compare_exchange_strong(v,
					 reinterpret_cast<uintptr_t>(td),
					 std::memory_order_acquire,
					 std::memory_order_relaxed),
			1))
			return;
		lock_hard(v, file, line);
	}
	// mtx_trylock_spin(): no recursion.  Context: any.
	bool try_lock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	// mtx_unlock_spin().  Context: the owner.
	void unlock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		if (sim_active()) // a scheduling point (runtime/sim.h)
			sim::lock_point(false);
		if (__builtin_expect(witness_watched(&mtx_lo) ||
			config::lock_profiling, 0)) {
			unlock_watched(file, line);
			return;
		}
		thread *td = curthread_fast();
		// One compare covers ownership and recursion: a recursed word
		// carries MTX_RECURSED.
		if (__builtin_expect(mtx_lock.load(std::memory_order_relaxed) !=
			reinterpret_cast<uintptr_t>(td), 0)) {
			unlock_hard(file, line);
			return;
		}
		mtx_lock.store(MTX_UNOWNED, std::memory_order_release);
		spinlock_exit_td(td);
	}
	// mtx_destroy(): unowned, or owned once by the caller.
	void destroy(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	bool owned() const noexcept
	{
		return (mtx_lock.load(std::memory_order_relaxed) &
			   ~uintptr_t{MTX_RECURSED}) ==
		    reinterpret_cast<uintptr_t>(curthread_fast());
	}
	bool recursed() const noexcept { return owned() && mtx_recurse != 0; }
	const char *name() const noexcept { return mtx_lo.lo_name; }
	thread *owner() const noexcept
	{
		uintptr_t v = mtx_lock.load(std::memory_order_relaxed);
		return v == MTX_DESTROYED ? nullptr :
		    reinterpret_cast<thread *>(v & ~uintptr_t{MTX_RECURSED});
	}

	void assert_owned(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;
	void assert_not_owned(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;
	void assert_state(int what, const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) const noexcept;

	lock_object *lo() noexcept { return &mtx_lo; }
	const lock_object *lo() const noexcept { return &mtx_lo; }
	static spin_mutex *from_lo(lock_object *lo) noexcept;

private:
	void lock_hard(uintptr_t v, const char *file, int line) noexcept;
	void unlock_hard(const char *file, int line) noexcept;
	void lock_watched(const char *file, int line) noexcept;
	void unlock_watched(const char *file, int line) noexcept;

	lock_object mtx_lo;                        // (c)
	std::atomic<uintptr_t> mtx_lock{MTX_UNOWNED}; // (a)
	unsigned mtx_recurse = 0;                  // (o)
};

// How long a waiter may see one holder keep a spin mutex before the "held
// too long" panic (default 10 s).  Context: any.
void spin_mutex_set_hang_limit(std::chrono::nanoseconds limit) noexcept;

// Giant: the process-wide recursive sleep mutex, for code not marked MPSAFE.
extern mutex Giant;

// DROP_GIANT(): release every recursion level of Giant if curthread holds
// it, and return how many there were (0 if not held); PICKUP_GIANT():
// take it back that many times.  The sleep code calls them around every
// sleep.  Context: may block (pickup).
// Inline: every sleep calls them, and Giant is rarely held.
int drop_giant_hard() noexcept;
void pickup_giant_hard(int depth) noexcept;
inline int
drop_giant() noexcept
{
	return Giant.owned() ? drop_giant_hard() : 0;
}
inline void
pickup_giant(int depth) noexcept
{
	if (depth > 0)
		pickup_giant_hard(depth);
}

} // namespace usmp

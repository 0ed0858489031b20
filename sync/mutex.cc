// Mutexes: the slow paths of usmp::mutex and usmp::spin_mutex, their lock
// classes, Giant (kern_mutex.c).
//
// Sleep mutex, contested lock (_mtx_lock_sleep):
//  1. Recursion: the word's owner is curthread; allowed with LOCK_RECURSE
//     (or lock_recurse()), counted in mtx_recurse, flagged MTX_RECURSED.
//  2. A free word is taken by CAS (acquire; pairs with the release store or
//     CAS of the previous owner's unlock).
//  3. Adaptive spinning: while the owner runs on a CPU (td_state ==
//     TDS_RUNNING, not us) it will likely release soon, so spin with
//     exponential backoff (lock_delay), for at most MTX_SPIN_LIMIT pauses in
//     all: these CPUs are OS threads that the host may deschedule, and a
//     foreign owner always looks "running".
//  4. turnstile_trywait, re-read the word under the chain lock; free, or
//     the owner running again and spin budget left: cancel and retry.
//  5. Set MTX_CONTESTED by CAS (a failure re-evaluates with the chain still
//     locked), then turnstile_wait: block, lending our priority.  When
//     woken, go back to 2: no hand-off, newcomers may barge.
//
// Unlock (_mtx_unlock_sleep): a recursed word unrecurses.  A contested one
// is released (store, release) under the chain lock, and every waiter is
// woken (turnstile_broadcast, turnstile_unpend), which also gives back the
// priority lent to us through this lock.
//
// Misuse is reported always (one load or compare on paths that are already
// slow): unlock by a non-owner, recursion without the flag, a sleep mutex
// taken in a critical section or with a spin mutex held (checked in the
// inline fast path too: one load of td_critnest), destroy of a held
// (recursed) mutex or one with waiters, any use after destroy (the word is
// MTX_DESTROYED, so the fast CAS fails and the slow path names the lock).
//
// Reading a possible owner's td_state while spinning is racy, as in
// FreeBSD: the owner may have released and exited.  Stacks (where struct
// thread lives) go back to per-CPU caches and stay mapped in practice.
#include "sync/mutex.h"
#include "sync/lock_profile.h"

#include <sched.h>
#include <time.h>

#include <cstddef>
#include <type_traits>

#include "runtime/panic.h"
#include "sync/internal/lock_delay.h"
#include "sync/internal/ts_block.h"
#include "sync/turnstile.h"

namespace usmp {

static_assert(std::is_standard_layout_v<mutex>, "mutex: lock object first");
static_assert(std::is_standard_layout_v<spin_mutex>, "spin_mutex: lock object first");
static_assert(alignof(thread) >= 8, "mutex: the owner leaves three low bits");

namespace {

constexpr unsigned MTX_SPIN_LIMIT = 4096; // pauses of adaptive spinning
constexpr unsigned MTX_DELAY_MAX = 128;

std::atomic<uint64_t> spin_hang_ns{10'000'000'000ull};

uint64_t
mono_ns() noexcept
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull +
	    static_cast<uint64_t>(ts.tv_nsec);
}

inline thread *
word_owner(uintptr_t v) noexcept
{
	return reinterpret_cast<thread *>(v & ~uintptr_t{MTX_FLAGMASK});
}

// mtx_assert() of either kind of mutex, given what its word says: whether
// curthread owns it and whether it is recursed.  FreeBSD's messages.
void
mtx_assert_common(const lock_object *lo, bool own, bool recursed, int what,
    const char *file, int line) noexcept
{
	switch (what & ~(MA_RECURSED | MA_NOTRECURSED)) {
	case MA_OWNED:
		if (!own)
			panic("mutex %s not owned at %s:%d", lo->lo_name, file,
			    line);
		if ((what & MA_RECURSED) && !recursed)
			panic("mutex %s unrecursed at %s:%d", lo->lo_name, file,
			    line);
		if ((what & MA_NOTRECURSED) && recursed)
			panic("mutex %s recursed at %s:%d", lo->lo_name, file,
			    line);
		return;
	case MA_NOTOWNED:
		if (what != MA_NOTOWNED)
			break;
		if (own)
			panic("mutex %s owned at %s:%d", lo->lo_name, file, line);
		return;
	}
	panic("unknown mtx_assert at %s:%d", file, line);
}

// ---- Lock classes.

void
assert_mtx(const lock_object *lo, int what, const char *file, int line)
{
	reinterpret_cast<const mutex *>(lo)->assert_state(what, file, line);
}

uintptr_t
unlock_mtx(lock_object *lo)
{
	return mutex::from_lo(lo)->unlock_all("lc_unlock", 0);
}

void
lock_mtx(lock_object *lo, uintptr_t how)
{
	mutex::from_lo(lo)->relock_depth(static_cast<unsigned>(how), "lc_lock", 0);
}

thread *
owner_mtx(const lock_object *lo)
{
	return reinterpret_cast<const mutex *>(lo)->owner();
}

void
assert_spin(const lock_object *lo, int what, const char *file, int line)
{
	reinterpret_cast<const spin_mutex *>(lo)->assert_state(what, file, line);
}

uintptr_t
unlock_spin(lock_object *lo)
{
	panic("spin locks can only use msleep_spin (spin mutex \"%s\")", lo->lo_name);
}

void
lock_spin(lock_object *lo, uintptr_t)
{
	panic("spin locks can only use msleep_spin (spin mutex \"%s\")", lo->lo_name);
}

thread *
owner_spin(const lock_object *lo)
{
	return reinterpret_cast<const spin_mutex *>(lo)->owner();
}

} // namespace

const lock_class lock_class_mtx_sleep = {
	"sleep mutex",
	LC_SLEEPLOCK | LC_RECURSABLE,
	assert_mtx,
	unlock_mtx,
	lock_mtx,
	owner_mtx,
};

const lock_class lock_class_mtx_spin = {
	"spin mutex",
	LC_SPINLOCK | LC_RECURSABLE,
	assert_spin,
	unlock_spin,
	lock_spin,
	owner_spin,
};

// ---- usmp::mutex.

mutex::mutex(const char *name, const char *type, unsigned opts,
    const char *file, int line) noexcept
{
	lock_init(&mtx_lo, &lock_class_mtx_sleep, name, type, opts, "mtx_init()",
	    file, line);
}

mutex::~mutex()
{
	if (mtx_lo.lo_flags & LO_INITIALIZED)
		destroy("~mutex()", 0);
}

mutex *
mutex::from_lo(lock_object *lo) noexcept
{
	return reinterpret_cast<mutex *>(lo);
}

// The out-of-line lock: WITNESS's order check around the acquisition.
void
mutex::lock_hard(const char *file, int line, unsigned opts) noexcept
{
	bool w = witness_watched(&mtx_lo);
	if (!w && !config::lock_profiling) {
		lock_slow(file, line, opts);
		return;
	}
	if (w)
		witness_checkorder(&mtx_lo,
		    LOP_EXCLUSIVE | ((opts & LOCK_RECURSE) ? LOP_RECURSE : 0u),
		    file, line);
	if constexpr (config::lock_profiling) {
		// Contested: found held by another thread at the first look.
		uintptr_t v = mtx_lock.load(std::memory_order_relaxed);
		bool recursing = word_owner(v) == curthread_fast();
		bool contested = v != MTX_UNOWNED && !recursing;
		uint64_t t0 = contested ? lock_profile_now() : 0;
		lock_slow(file, line, opts);
		if (!recursing)
			lock_profile_obtain(&mtx_lo, true, contested,
			    contested ? lock_profile_now() - t0 : 0, file, line);
	} else {
		lock_slow(file, line, opts);
	}
	if (w)
		witness_lock(&mtx_lo, LOP_EXCLUSIVE, file, line);
}

void
mutex::lock_slow(const char *file, int line, unsigned opts) noexcept
{
	thread *td = curthread_fast();
	const uintptr_t tid = reinterpret_cast<uintptr_t>(td);
	lock_check_live(&mtx_lo, "mtx_lock()", file, line);
	if (td->td_critnest != 0)
		panic("mtx_lock() of sleep mutex \"%s\" in a critical section%s "
		      "@ %s:%d",
		    mtx_lo.lo_name,
		    td->td_spinlock_count != 0 ? " (a spin mutex is held)" : "",
		    file, line);
	if constexpr (config::invariants) {
		if (td->td_flags & TDF_IDLETD)
			panic("mtx_lock() by idle thread %p on sleep mutex %s @ %s:%d",
			    static_cast<void *>(td), mtx_lo.lo_name, file, line);
	}
	uintptr_t v = mtx_lock.load(std::memory_order_relaxed);
	if ((v & ~uintptr_t{MTX_FLAGMASK}) == tid) {
		if (!(mtx_lo.lo_flags & LO_RECURSABLE) && !(opts & LOCK_RECURSE))
			panic("_mtx_lock_sleep: recursed on non-recursive mutex %s "
			      "@ %s:%d",
			    mtx_lo.lo_name, file, line);
		mtx_recurse++;
		mtx_lock.fetch_or(MTX_RECURSED, std::memory_order_relaxed);
		return;
	}

	unsigned spun = 0;
	for (;;) {
		if (v == MTX_UNOWNED) {
			if (mtx_lock.compare_exchange_weak(v, tid,
				std::memory_order_acquire, std::memory_order_relaxed))
				return;
			continue;
		}
		if (__builtin_expect(v == MTX_DESTROYED, 0))
			lock_check_failed(&mtx_lo, "mtx_lock()", file, line);
		thread *owner = word_owner(v);
		if (spun < MTX_SPIN_LIMIT && owner != td &&
		    owner->td_state == TDS_RUNNING) {
			// Adaptive spin while the owner runs.
			unsigned delay = 1;
			while (spun < MTX_SPIN_LIMIT) {
				spun += delay;
				lock_delay(delay, MTX_DELAY_MAX);
				v = mtx_lock.load(std::memory_order_relaxed);
				if (word_owner(v) != owner ||
				    owner->td_state != TDS_RUNNING)
					break;
			}
			v = mtx_lock.load(std::memory_order_relaxed);
			continue;
		}

		auto look = [](uintptr_t &x, turnstile *) {
			return x == MTX_UNOWNED || x == MTX_DESTROYED ? TSL_RETRY :
									 TSL_BLOCK;
		};
		(void)turnstile_block(&mtx_lo, mtx_lock, v, MTX_CONTESTED,
		    TS_EXCLUSIVE_QUEUE, spun < MTX_SPIN_LIMIT, look, word_owner,
		    file, line);
	}
}

void
mutex::unlock_hard(const char *file, int line, bool witnessed) noexcept
{
	thread *td = curthread_fast();
	if constexpr (config::lock_profiling) {
		if (word_owner(mtx_lock.load(std::memory_order_relaxed)) == td &&
		    mtx_recurse == 0)
			lock_profile_release(&mtx_lo);
	}
	if (!witnessed && witness_watched(&mtx_lo)) {
		witness_unlock(&mtx_lo, LOP_EXCLUSIVE, file, line);
		uintptr_t u = reinterpret_cast<uintptr_t>(td);
		if (mtx_lock.compare_exchange_strong(u, MTX_UNOWNED,
			std::memory_order_release, std::memory_order_relaxed))
			return;
	}
	uintptr_t v = mtx_lock.load(std::memory_order_relaxed);
	if (v == MTX_DESTROYED)
		lock_check_failed(&mtx_lo, "mtx_unlock()", file, line);
	lock_check_live(&mtx_lo, "mtx_unlock()", file, line);
	if (word_owner(v) != td) {
		thread *o = word_owner(v);
		if (o == nullptr)
			panic("mtx_unlock() of mutex \"%s\" not owned @ %s:%d "
			      "(it is unlocked)",
			    mtx_lo.lo_name, file, line);
		panic("mtx_unlock() of mutex \"%s\" not owned @ %s:%d "
		      "(held by thread \"%s\", tid %d)",
		    mtx_lo.lo_name, file, line, o->td_name, o->td_tid);
	}
	if (v & MTX_RECURSED) {
		if (--mtx_recurse == 0)
			mtx_lock.fetch_and(~uintptr_t{MTX_RECURSED},
			    std::memory_order_relaxed);
		return;
	}
	// Contested: release under the chain lock and wake everybody.
	turnstile_chain_lock(&mtx_lo);
	mtx_lock.store(MTX_UNOWNED, std::memory_order_release);
	turnstile *ts = turnstile_lookup(&mtx_lo);
	if (ts != nullptr) {
		turnstile_broadcast(ts, TS_EXCLUSIVE_QUEUE);
		turnstile_unpend(ts);
	}
	turnstile_chain_unlock(&mtx_lo);
}

bool
mutex::try_lock(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	const uintptr_t tid = reinterpret_cast<uintptr_t>(td);
	uintptr_t v = MTX_UNOWNED;
	if (mtx_lock.compare_exchange_strong(v, tid, std::memory_order_acquire,
		std::memory_order_relaxed)) {
		if constexpr (config::lock_profiling)
			lock_profile_obtain(&mtx_lo, true, false, 0, file, line);
		if (witness_watched(&mtx_lo))
			witness_lock(&mtx_lo, LOP_EXCLUSIVE | LOP_TRYLOCK, file,
			    line);
		return true;
	}
	if (v == MTX_DESTROYED)
		lock_check_failed(&mtx_lo, "mtx_trylock()", file, line);
	lock_check_live(&mtx_lo, "mtx_trylock()", file, line);
	if (word_owner(v) == td && (mtx_lo.lo_flags & LO_RECURSABLE)) {
		mtx_recurse++;
		mtx_lock.fetch_or(MTX_RECURSED, std::memory_order_relaxed);
		if (witness_watched(&mtx_lo))
			witness_lock(&mtx_lo, LOP_EXCLUSIVE | LOP_TRYLOCK, file,
			    line);
		return true;
	}
	if (word_owner(v) == td && witness_watched(&mtx_lo))
		witness_try_recursion(&mtx_lo, file, line);
	return false;
}

void
mutex::destroy(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	uintptr_t v = mtx_lock.load(std::memory_order_acquire);
	if (v == MTX_DESTROYED)
		lock_check_failed(&mtx_lo, "mtx_destroy()", file, line);
	lock_check_live(&mtx_lo, "mtx_destroy()", file, line);
	if (v != MTX_UNOWNED) {
		thread *o = word_owner(v);
		if (o != td)
			panic("mtx_destroy() of mutex \"%s\" held by thread \"%s\" "
			      "(tid %d) @ %s:%d",
			    mtx_lo.lo_name, o->td_name, o->td_tid, file, line);
		if (v & MTX_RECURSED)
			panic("mtx_destroy() of recursed mutex \"%s\" @ %s:%d",
			    mtx_lo.lo_name, file, line);
		if (v & MTX_CONTESTED)
			panic("mtx_destroy() of mutex \"%s\" with waiters @ %s:%d",
			    mtx_lo.lo_name, file, line);
		if (witness_watched(&mtx_lo))
			witness_unlock(&mtx_lo, LOP_EXCLUSIVE, file, line);
	}
	mtx_lock.store(MTX_DESTROYED, std::memory_order_release);
	lock_destroy(&mtx_lo);
}

void
mutex::assert_state(int what, const char *file, int line) const noexcept
{
	uintptr_t v = mtx_lock.load(std::memory_order_relaxed);
	bool own = v != MTX_DESTROYED && word_owner(v) == curthread_fast();
	mtx_assert_common(&mtx_lo, own, (v & MTX_RECURSED) != 0, what, file,
	    line);
}

void
mutex::assert_owned(const char *file, int line) const noexcept
{
	assert_state(MA_OWNED, file, line);
}

void
mutex::assert_not_owned(const char *file, int line) const noexcept
{
	assert_state(MA_NOTOWNED, file, line);
}

void
mutex::assert_recursed(const char *file, int line) const noexcept
{
	assert_state(MA_OWNED | MA_RECURSED, file, line);
}

void
mutex::assert_not_recursed(const char *file, int line) const noexcept
{
	assert_state(MA_OWNED | MA_NOTRECURSED, file, line);
}

unsigned
mutex::unlock_all(const char *file, int line) noexcept
{
	assert_state(MA_OWNED, file, line);
	unsigned depth = 1 + mtx_recurse;
	if (witness_watched(&mtx_lo))
		for (unsigned i = 0; i < mtx_recurse; i++)
			witness_unlock(&mtx_lo, LOP_EXCLUSIVE, file, line);
	if (mtx_recurse != 0) {
		mtx_recurse = 0;
		mtx_lock.fetch_and(~uintptr_t{MTX_RECURSED},
		    std::memory_order_relaxed);
	}
	unlock(file, line);
	return depth;
}

void
mutex::relock_depth(unsigned depth, const char *file, int line) noexcept
{
	lock(file, line);
	if (witness_watched(&mtx_lo))
		for (unsigned i = 1; i < depth; i++)
			witness_lock(&mtx_lo, LOP_EXCLUSIVE, file, line);
	if (depth > 1) {
		mtx_recurse = depth - 1;
		mtx_lock.fetch_or(MTX_RECURSED, std::memory_order_relaxed);
	}
}

// ---- usmp::spin_mutex.

void
spin_mutex_set_hang_limit(std::chrono::nanoseconds limit) noexcept
{
	spin_hang_ns.store(static_cast<uint64_t>(limit.count()),
	    std::memory_order_relaxed);
}

spin_mutex::spin_mutex(const char *name, const char *type, unsigned opts,
    const char *file, int line) noexcept
{
	lock_init(&mtx_lo, &lock_class_mtx_spin, name, type, opts, "mtx_init()",
	    file, line);
}

spin_mutex::~spin_mutex()
{
	if (mtx_lo.lo_flags & LO_INITIALIZED)
		destroy("~spin_mutex()", 0);
}

spin_mutex *
spin_mutex::from_lo(lock_object *lo) noexcept
{
	return reinterpret_cast<spin_mutex *>(lo);
}

// Entered inside the spinlock section of lock(); returns inside one, owning.
//
// Waiting.  The holder is another CPU, i.e. another OS thread, which the
// host may deschedule (tests run 8 CPUs on 2 cores).  A waiter that only
// executes pause instructions then burns its whole host time slice while
// the holder cannot run.  So the wait backs off exponentially up to
// SPIN_DELAY_MAX pauses a step (about 2,000 pauses, tens of microseconds,
// in all), and from then on gives its core away (sched_yield) at every
// step, as cpu_spinwait() does for the raw spinlocks.  It waits with its
// own spinlock section released (interrupts enabled, as mtx_lock_spin()
// does), and a preemption that becomes owed meanwhile is taken if the
// waiter is in no other section: the signal handler defers to us inside
// usmp code, and without this a spinning waiter would never switch.
//
// The "held too long" bound is in time, not in steps, and times one
// holder: it restarts whenever the owner word changes, so a waiter that
// keeps losing the race to others (the lock is unfair) is not taken for a
// holder that never lets go.  Its default (10 s) is far above any host
// scheduling delay of a descheduled holder.
void
spin_mutex::lock_hard(uintptr_t v, const char *file, int line) noexcept
{
	constexpr unsigned SPIN_DELAY_MAX = 1024;
	thread *td = curthread_fast();
	const uintptr_t tid = reinterpret_cast<uintptr_t>(td);
	if (v == MTX_DESTROYED)
		lock_check_failed(&mtx_lo, "mtx_lock_spin()", file, line);
	lock_check_live(&mtx_lo, "mtx_lock_spin()", file, line);
	if ((v & ~uintptr_t{MTX_RECURSED}) == tid) {
		if (!(mtx_lo.lo_flags & LO_RECURSABLE))
			panic("mtx_lock_spin: recursed on non-recursive mutex %s "
			      "@ %s:%d",
			    mtx_lo.lo_name, file, line);
		mtx_recurse++;
		mtx_lock.store(tid | MTX_RECURSED, std::memory_order_relaxed);
		return;
	}
	uint64_t start = 0;
	uintptr_t timed_owner = MTX_UNOWNED;
	unsigned n = 0;
	for (;;) {
		// Give interrupts (preemption) a chance while we spin.
		spinlock_exit_td(td);
		unsigned delay = 1;
		while ((v = mtx_lock.load(std::memory_order_relaxed)) !=
		    MTX_UNOWNED) {
			if (v == MTX_DESTROYED)
				lock_check_failed(&mtx_lo, "mtx_lock_spin()", file,
				    line);
			if (delay < SPIN_DELAY_MAX)
				lock_delay(delay, SPIN_DELAY_MAX);
			else
				sched_yield();
			if (td->td_owepreempt != 0 && td->td_critnest == 0 &&
			    !(td->td_flags & (TDF_FOREIGN | TDF_IDLETD))) {
				// We may resume on another CPU: td stays ours.
				critical_enter();
				critical_exit();
			}
			if ((++n & 255) == 0 || delay >= SPIN_DELAY_MAX) {
				uint64_t now = mono_ns();
				if (start == 0 || v != timed_owner) {
					start = now;
					timed_owner = v;
				} else if (now - start >
				    spin_hang_ns.load(std::memory_order_relaxed)) {
					thread *o = word_owner(v);
					panic("spin lock %p (%s) held by %p (tid %d) "
					      "too long @ %s:%d: spin lock held too "
					      "long",
					    static_cast<void *>(this),
					    mtx_lo.lo_name, static_cast<void *>(o),
					    o != nullptr ? o->td_tid : 0, file, line);
				}
			}
		}
		spinlock_enter_td(td);
		v = MTX_UNOWNED;
		if (mtx_lock.compare_exchange_strong(v, tid,
			std::memory_order_acquire, std::memory_order_relaxed))
			return;
	}
}

// lock() with WITNESS watching the lock or lock profiling compiled in.
void
spin_mutex::lock_watched(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	if (witness_watched(&mtx_lo))
		witness_checkorder(&mtx_lo, LOP_EXCLUSIVE, file, line);
	spinlock_enter_td(td);
	uintptr_t v = MTX_UNOWNED;
	if (mtx_lock.compare_exchange_strong(v, reinterpret_cast<uintptr_t>(td),
		std::memory_order_acquire, std::memory_order_relaxed)) {
		lock_profile_acquired(&mtx_lo, true, 0, file, line);
	} else {
		// Profiling: contested unless a recursion (lock_hard's).
		bool recursing = (v & ~uintptr_t{MTX_RECURSED}) ==
		    reinterpret_cast<uintptr_t>(td);
		uint64_t t0 = lock_profile_wait_start(!recursing);
		lock_hard(v, file, line);
		if (!recursing)
			lock_profile_acquired(&mtx_lo, true, t0, file, line);
	}
	if (witness_watched(&mtx_lo))
		witness_lock(&mtx_lo, LOP_EXCLUSIVE, file, line);
}

// unlock() with WITNESS watching the lock or lock profiling compiled in.
void
spin_mutex::unlock_watched(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	if (witness_watched(&mtx_lo))
		witness_unlock(&mtx_lo, LOP_EXCLUSIVE, file, line);
	if (mtx_lock.load(std::memory_order_relaxed) !=
	    reinterpret_cast<uintptr_t>(td)) {
		unlock_hard(file, line);
		return;
	}
	lock_profile_released(&mtx_lo);
	mtx_lock.store(MTX_UNOWNED, std::memory_order_release);
	spinlock_exit_td(td);
}

// Not the owner, or a recursed release.
void
spin_mutex::unlock_hard(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	const uintptr_t tid = reinterpret_cast<uintptr_t>(td);
	uintptr_t v = mtx_lock.load(std::memory_order_relaxed);
	if (v == MTX_DESTROYED)
		lock_check_failed(&mtx_lo, "mtx_unlock_spin()", file, line);
	lock_check_live(&mtx_lo, "mtx_unlock_spin()", file, line);
	if (v != (tid | MTX_RECURSED))
		panic("mtx_unlock_spin() of spin mutex \"%s\" not owned @ %s:%d",
		    mtx_lo.lo_name, file, line);
	if (--mtx_recurse == 0)
		mtx_lock.store(tid, std::memory_order_relaxed);
	spinlock_exit_td(td);
}

bool
spin_mutex::try_lock(const char *file, int line) noexcept
{
	spinlock_enter();
	uintptr_t v = MTX_UNOWNED;
	if (mtx_lock.compare_exchange_strong(v,
		reinterpret_cast<uintptr_t>(curthread_fast()),
		std::memory_order_acquire, std::memory_order_relaxed)) {
		lock_profile_acquired(&mtx_lo, true, 0, file, line);
		if (witness_watched(&mtx_lo))
			witness_lock(&mtx_lo, LOP_EXCLUSIVE | LOP_TRYLOCK, file,
			    line);
		return true;
	}
	if ((v & ~uintptr_t{MTX_RECURSED}) ==
		reinterpret_cast<uintptr_t>(curthread_fast()) &&
	    !(mtx_lo.lo_flags & LO_RECURSABLE) && witness_watched(&mtx_lo))
		witness_try_recursion(&mtx_lo, file, line);
	spinlock_exit();
	if (v == MTX_DESTROYED)
		lock_check_failed(&mtx_lo, "mtx_trylock_spin()", file, line);
	return false;
}

void
spin_mutex::destroy(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	uintptr_t v = mtx_lock.load(std::memory_order_acquire);
	if (v == MTX_DESTROYED)
		lock_check_failed(&mtx_lo, "mtx_destroy()", file, line);
	lock_check_live(&mtx_lo, "mtx_destroy()", file, line);
	bool held = false;
	if (v != MTX_UNOWNED) {
		thread *o = word_owner(v);
		if (o != td)
			panic("mtx_destroy() of spin mutex \"%s\" held by thread "
			      "\"%s\" (tid %d) @ %s:%d",
			    mtx_lo.lo_name, o->td_name, o->td_tid, file, line);
		if (mtx_recurse != 0)
			panic("mtx_destroy() of recursed spin mutex \"%s\" @ %s:%d",
			    mtx_lo.lo_name, file, line);
		held = true;
		if (witness_watched(&mtx_lo))
			witness_unlock(&mtx_lo, LOP_EXCLUSIVE, file, line);
	}
	mtx_lock.store(MTX_DESTROYED, std::memory_order_release);
	lock_destroy(&mtx_lo);
	if (held)
		spinlock_exit();
}

void
spin_mutex::assert_state(int what, const char *file, int line) const noexcept
{
	mtx_assert_common(&mtx_lo, owned(), mtx_recurse != 0, what, file, line);
}

void
spin_mutex::assert_owned(const char *file, int line) const noexcept
{
	assert_state(MA_OWNED, file, line);
}

void
spin_mutex::assert_not_owned(const char *file, int line) const noexcept
{
	assert_state(MA_NOTOWNED, file, line);
}

// ---- Giant.

mutex Giant("Giant", nullptr, LOCK_RECURSE);

int
drop_giant_hard() noexcept
{
	return static_cast<int>(Giant.unlock_all(__FILE__, __LINE__));
}

void
pickup_giant_hard(int depth) noexcept
{
	Giant.relock_depth(static_cast<unsigned>(depth), __FILE__, __LINE__);
}

} // namespace usmp

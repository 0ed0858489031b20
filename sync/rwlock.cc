// Reader/writer locks (kern_rwlock.c), on turnstiles.  The word layout and
// its transitions are in sync/rwlock.h.
//
// Read acquire: while the lock is read-mode and no writer waits (or we
// already hold read locks: td_rw_rlocks, so that a recursing reader cannot
// deadlock behind a waiting writer), CAS the count up.  Otherwise spin
// while a write owner runs (bounded), then turnstile_trywait, re-check,
// set RW_LOCK_READ_WAITERS and wait on the shared queue, lending our
// priority to the write owner.
//
// Write acquire: CAS from RW_UNLOCKED; else spin while a writer runs or
// readers hold it (bounded), then under the chain lock: a lock free but for
// waiter bits is taken keeping them, and the turnstile claimed (we become
// its owner and borrow its best waiter's priority); else set
// RW_LOCK_WRITE_WAITERS and wait on the exclusive queue.
//
// Release (write, or last read with waiters), under the chain lock: wake
// all writers if any wait, keeping the read-waiters bit, else all readers;
// the woken race for the lock again (no hand-off), as in FreeBSD.
#include "sync/rwlock.h"

#include <type_traits>

#include "runtime/critical.h"
#include "runtime/internal/spinlock.h"
#include "runtime/panic.h"
#include "sync/internal/lock_delay.h"
#include "sync/internal/ts_block.h"
#include "sync/internal/ts_tdstate.h"
#include "sync/lock_profile.h"
#include "sync/turnstile.h"

namespace usmp {

static_assert(std::is_standard_layout_v<rwlock>, "rwlock: lock object first");
static_assert(alignof(thread) >= 8, "rwlock: the owner leaves three low bits");

// ---- rwlock.

namespace {

constexpr unsigned RW_SPIN_LIMIT = 4096;
constexpr unsigned RW_DELAY_MAX = 128;

void
assert_rw(const lock_object *lo, int what, const char *file, int line)
{
	reinterpret_cast<const rwlock *>(lo)->assert_state(what, file, line);
}

// how: 1 = read, 2 = write (plus recursion << 2).
uintptr_t
unlock_rw(lock_object *lo)
{
	rwlock *rw = rwlock::from_lo(lo);
	if (rw->wowned()) {
		rw->unlock("lc_unlock", 0);
		return 2;
	}
	rw->unlock_shared("lc_unlock", 0);
	return 1;
}

void
lock_rw(lock_object *lo, uintptr_t how)
{
	rwlock *rw = rwlock::from_lo(lo);
	if (how == 2)
		rw->lock("lc_lock", 0);
	else
		rw->lock_shared("lc_lock", 0);
}

thread *
owner_rw(const lock_object *lo)
{
	return reinterpret_cast<const rwlock *>(lo)->owner();
}

} // namespace

const lock_class lock_class_rw = {
	"rw",
	LC_SLEEPLOCK | LC_RECURSABLE | LC_UPGRADABLE,
	assert_rw,
	unlock_rw,
	lock_rw,
	owner_rw,
};

rwlock::rwlock(const char *name, unsigned opts, const char *file, int line) noexcept
{
	lock_init(&rw_lo, &lock_class_rw, name, nullptr, opts, "rw_init()", file,
	    line);
}

rwlock::~rwlock()
{
	if (rw_lo.lo_flags & LO_INITIALIZED)
		destroy("~rwlock()", 0);
}

rwlock *
rwlock::from_lo(lock_object *lo) noexcept
{
	return reinterpret_cast<rwlock *>(lo);
}

thread *
rwlock::owner() const noexcept
{
	uintptr_t v = rw_lock.load(std::memory_order_relaxed);
	return v == RW_DESTROYED ? nullptr : sw_owner(v);
}

unsigned
rwlock::readers() const noexcept
{
	return static_cast<unsigned>(sw_sharers(rw_lock.load(std::memory_order_relaxed)));
}

void
rwlock::wlock_hard(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	const uintptr_t tid = reinterpret_cast<uintptr_t>(td);
	lock_check_live(&rw_lo, "rw_wlock()", file, line);
	bool w = witness_watched(&rw_lo);
	if (w)
		witness_checkorder(&rw_lo, LOP_EXCLUSIVE, file, line);
	if (td->td_critnest != 0)
		panic("rw_wlock() of rwlock \"%s\" in a critical section @ %s:%d",
		    rw_lo.lo_name, file, line);
	uintptr_t v = rw_lock.load(std::memory_order_relaxed);
	if (sw_owner(v) == td) {
		if (!(rw_lo.lo_flags & LO_RECURSABLE))
			panic("_rw_wlock_hard: recursed on non-recursive rwlock %s "
			      "@ %s:%d",
			    rw_lo.lo_name, file, line);
		rw_recurse++;
		if (w)
			witness_lock(&rw_lo, LOP_EXCLUSIVE, file, line);
		return;
	}
	uint64_t t0 = lock_profile_wait_start(v != RW_UNLOCKED);
	unsigned spun = 0;
	for (;;) {
		if (v == RW_UNLOCKED) {
			if (rw_lock.compare_exchange_weak(v, tid,
				std::memory_order_acquire, std::memory_order_relaxed))
				break;
			continue;
		}
		if (v == RW_DESTROYED)
			lock_check_failed(&rw_lo, "rw_wlock()", file, line);
		thread *owner = sw_owner(v);
		if (spun < RW_SPIN_LIMIT &&
		    ((owner != nullptr && owner->td_state == TDS_RUNNING) ||
			(owner == nullptr && sw_sharers(v) != 0))) {
			unsigned delay = 1;
			spun += delay;
			lock_delay(delay, RW_DELAY_MAX);
			v = rw_lock.load(std::memory_order_relaxed);
			continue;
		}
		auto look = [&](uintptr_t &x, turnstile *ts) {
			if (x == RW_DESTROYED)
				return TSL_RETRY;
			if ((x & ~uintptr_t{RW_LOCK_WAITERS}) != RW_UNLOCKED)
				return TSL_BLOCK;
			// Free but for waiter bits: take it, keep the bits, and
			// own the turnstile if anyone waits on it.
			uintptr_t bits = x & RW_LOCK_WAITERS;
			if (!rw_lock.compare_exchange_strong(x, tid | bits,
				std::memory_order_acquire, std::memory_order_relaxed))
				return TSL_REREAD;
			if (bits != 0 && ts != nullptr)
				turnstile_claim(ts, &rw_lo);
			else
				turnstile_cancel(ts, &rw_lo);
			return TSL_TAKEN;
		};
		if (turnstile_block(&rw_lo, rw_lock, v, RW_LOCK_WRITE_WAITERS,
			TS_EXCLUSIVE_QUEUE, spun < RW_SPIN_LIMIT, look, sw_owner,
			file, line) == TSL_TAKEN)
			break;
	}
	held(td, 0, 1);
	lock_profile_acquired(&rw_lo, true, t0, file, line);
	if (w)
		witness_lock(&rw_lo, LOP_EXCLUSIVE, file, line);
}

bool
rwlock::try_lock(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	uintptr_t v = rw_lock.load(std::memory_order_relaxed);
	if (v == RW_DESTROYED)
		lock_check_failed(&rw_lo, "rw_try_wlock()", file, line);
	lock_check_live(&rw_lo, "rw_try_wlock()", file, line);
	bool w = witness_watched(&rw_lo);
	if (sw_owner(v) == td && (rw_lo.lo_flags & LO_RECURSABLE)) {
		rw_recurse++;
		if (w)
			witness_lock(&rw_lo, LOP_EXCLUSIVE | LOP_TRYLOCK, file,
			    line);
		return true;
	}
	if (sw_owner(v) == td && w)
		witness_try_recursion(&rw_lo, file, line);
	v = RW_UNLOCKED;
	if (rw_lock.compare_exchange_strong(v, reinterpret_cast<uintptr_t>(td),
		std::memory_order_acquire, std::memory_order_relaxed)) {
		held(td, 0, 1);
		lock_profile_acquired(&rw_lo, true, 0, file, line);
		if (w)
			witness_lock(&rw_lo, LOP_EXCLUSIVE | LOP_TRYLOCK, file,
			    line);
		return true;
	}
	return false;
}

void
rwlock::unlock(const char *file, int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(false);
	thread *td = curthread_fast();
	const uintptr_t tid = reinterpret_cast<uintptr_t>(td);
	if (witness_watched(&rw_lo))
		witness_unlock(&rw_lo, LOP_EXCLUSIVE, file, line);
	if (rw_recurse == 0)
		lock_profile_released(&rw_lo);
	uintptr_t v = tid;
	if (__builtin_expect(rw_recurse == 0 &&
			rw_lock.compare_exchange_strong(v, RW_UNLOCKED,
			    std::memory_order_release, std::memory_order_relaxed),
		1)) {
		held(td, 0, -1);
		return;
	}
	v = rw_lock.load(std::memory_order_relaxed);
	if (v == RW_DESTROYED)
		lock_check_failed(&rw_lo, "rw_wunlock()", file, line);
	lock_check_live(&rw_lo, "rw_wunlock()", file, line);
	if (sw_owner(v) != td)
		panic("rw_wunlock() of rwlock \"%s\" not write-locked @ %s:%d",
		    rw_lo.lo_name, file, line);
	if (rw_recurse != 0) {
		rw_recurse--;
		return;
	}
	turnstile_chain_lock(&rw_lo);
	v = rw_lock.load(std::memory_order_relaxed);
	int queue = TS_SHARED_QUEUE;
	uintptr_t setv = RW_UNLOCKED;
	if (v & RW_LOCK_WRITE_WAITERS) {
		queue = TS_EXCLUSIVE_QUEUE;
		setv |= v & RW_LOCK_READ_WAITERS;
	}
	rw_lock.store(setv, std::memory_order_release);
	turnstile *ts = turnstile_lookup(&rw_lo);
	if (ts != nullptr) {
		turnstile_broadcast(ts, queue);
		turnstile_unpend(ts);
	}
	turnstile_chain_unlock(&rw_lo);
	held(td, 0, -1);
}

void
rwlock::lock_shared(const char *file, int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(true);
	thread *td = curthread_fast();
	bool w = witness_watched(&rw_lo);
	if (w)
		witness_checkorder(&rw_lo, 0, file, line);
	uintptr_t v = rw_lock.load(std::memory_order_relaxed);
	// Fast path: read mode, no writer waiting or spinning.
	while ((v & (RW_LOCK_READ | RW_LOCK_WRITE_WAITERS)) == RW_LOCK_READ &&
	    td->td_critnest == 0) {
		if (rw_lock.compare_exchange_weak(v, v + RW_ONE_READER,
			std::memory_order_acquire, std::memory_order_relaxed)) {
			held(td, 1, 0);
			lock_profile_acquired(&rw_lo, false, 0, file, line);
			if (w)
				witness_lock(&rw_lo, 0, file, line);
			return;
		}
	}
	// Contested: a writer holds it or waits (the fast loop ends only
	// then, or in a critical section, which panics below).
	uint64_t t0 = lock_profile_wait_start(true);
	if (v == RW_DESTROYED)
		lock_check_failed(&rw_lo, "rw_rlock()", file, line);
	lock_check_live(&rw_lo, "rw_rlock()", file, line);
	if (td->td_critnest != 0)
		panic("rw_rlock() of rwlock \"%s\" in a critical section @ %s:%d",
		    rw_lo.lo_name, file, line);
	if (sw_owner(v) == td)
		panic("rw_rlock: wlock already held for %s @ %s:%d", rw_lo.lo_name,
		    file, line);
	bool recursing = td_rw_rlocks(td) > 0;
	unsigned spun = 0;
	for (;;) {
		if ((v & RW_LOCK_READ) &&
		    (recursing || !(v & RW_LOCK_WRITE_WAITERS))) {
			if (rw_lock.compare_exchange_weak(v, v + RW_ONE_READER,
				std::memory_order_acquire, std::memory_order_relaxed))
				break;
			continue;
		}
		if (v == RW_DESTROYED)
			lock_check_failed(&rw_lo, "rw_rlock()", file, line);
		thread *owner = sw_owner(v);
		if (owner != nullptr && spun < RW_SPIN_LIMIT &&
		    owner->td_state == TDS_RUNNING) {
			unsigned delay = 1;
			spun += delay;
			lock_delay(delay, RW_DELAY_MAX);
			v = rw_lock.load(std::memory_order_relaxed);
			continue;
		}
		auto look = [&](uintptr_t &x, turnstile *) {
			return x == RW_DESTROYED ||
				((x & RW_LOCK_READ) &&
				    (recursing || !(x & RW_LOCK_WRITE_WAITERS))) ?
			    TSL_RETRY :
			    TSL_BLOCK;
		};
		(void)turnstile_block(&rw_lo, rw_lock, v, RW_LOCK_READ_WAITERS,
		    TS_SHARED_QUEUE, spun < RW_SPIN_LIMIT, look, sw_owner, file,
		    line);
	}
	held(td, 1, 0);
	lock_profile_acquired(&rw_lo, false, t0, file, line);
	if (w)
		witness_lock(&rw_lo, 0, file, line);
}

bool
rwlock::try_lock_shared(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	uintptr_t v = rw_lock.load(std::memory_order_relaxed);
	for (;;) {
		if (v == RW_DESTROYED)
			lock_check_failed(&rw_lo, "rw_try_rlock()", file, line);
		if (!(v & RW_LOCK_READ))
			return false;
		if (rw_lock.compare_exchange_weak(v, v + RW_ONE_READER,
			std::memory_order_acquire, std::memory_order_relaxed)) {
			held(td, 1, 0);
			lock_profile_acquired(&rw_lo, false, 0, file, line);
			if (witness_watched(&rw_lo))
				witness_lock(&rw_lo, LOP_TRYLOCK, file, line);
			return true;
		}
	}
}

void
rwlock::unlock_shared(const char *file, int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(false);
	thread *td = curthread_fast();
	if (witness_watched(&rw_lo))
		witness_unlock(&rw_lo, 0, file, line);
	lock_profile_released(&rw_lo, false);
	uintptr_t v = rw_lock.load(std::memory_order_relaxed);
	for (;;) {
		if (v == RW_DESTROYED)
			lock_check_failed(&rw_lo, "rw_runlock()", file, line);
		if (!(v & RW_LOCK_READ) || sw_sharers(v) == 0) {
			lock_check_live(&rw_lo, "rw_runlock()", file, line);
			panic("rw_runlock() of rwlock \"%s\" not read-locked @ %s:%d",
			    rw_lo.lo_name, file, line);
		}
		if (sw_sharers(v) > 1 || !(v & RW_LOCK_WAITERS)) {
			if (rw_lock.compare_exchange_weak(v, v - RW_ONE_READER,
				std::memory_order_release, std::memory_order_relaxed))
				break;
			continue;
		}
		// The last reader, with waiters: release under the chain lock.
		turnstile_chain_lock(&rw_lo);
		v = rw_lock.load(std::memory_order_relaxed);
		if (sw_sharers(v) != 1 || !(v & RW_LOCK_WAITERS)) {
			turnstile_chain_unlock(&rw_lo);
			continue;
		}
		int queue = TS_SHARED_QUEUE;
		uintptr_t setv = RW_UNLOCKED;
		if (v & RW_LOCK_WRITE_WAITERS) {
			queue = TS_EXCLUSIVE_QUEUE;
			setv |= v & RW_LOCK_READ_WAITERS;
		}
		if (!rw_lock.compare_exchange_strong(v, setv,
			std::memory_order_release, std::memory_order_relaxed)) {
			turnstile_chain_unlock(&rw_lo);
			continue;
		}
		turnstile *ts = turnstile_lookup(&rw_lo);
		if (ts != nullptr) {
			turnstile_broadcast(ts, queue);
			turnstile_unpend(ts);
		}
		turnstile_chain_unlock(&rw_lo);
		break;
	}
	held(td, -1, 0);
}

bool
rwlock::try_upgrade(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	const uintptr_t tid = reinterpret_cast<uintptr_t>(td);
	uintptr_t v = rw_lock.load(std::memory_order_relaxed);
	if (v == RW_DESTROYED)
		lock_check_failed(&rw_lo, "rw_try_upgrade()", file, line);
	bool w = witness_watched(&rw_lo);
	if (w)
		witness_upgrade(&rw_lo, LOP_EXCLUSIVE | LOP_TRYLOCK |
			WITNESS_LOP_CHECKONLY, file, line);
	if (!(v & RW_LOCK_READ) || sw_sharers(v) == 0)
		panic("rw_try_upgrade() of rwlock \"%s\" not read-locked @ %s:%d",
		    rw_lo.lo_name, file, line);
	for (;;) {
		if (sw_sharers(v) > 1)
			return false;
		if (!(v & RW_LOCK_WAITERS)) {
			if (rw_lock.compare_exchange_weak(v, tid,
				std::memory_order_acquire, std::memory_order_relaxed))
				break;
			continue;
		}
		turnstile *ts = turnstile_trywait(&rw_lo);
		v = rw_lock.load(std::memory_order_relaxed);
		bool ok = false;
		for (;;) {
			if (sw_sharers(v) > 1) {
				turnstile_cancel(ts, &rw_lo);
				return false;
			}
			uintptr_t x = v & RW_LOCK_WAITERS;
			if (rw_lock.compare_exchange_strong(v, tid | x,
				std::memory_order_acquire, std::memory_order_relaxed)) {
				if (x != 0 && ts != nullptr)
					turnstile_claim(ts, &rw_lo);
				else
					turnstile_cancel(ts, &rw_lo);
				ok = true;
				break;
			}
		}
		if (ok)
			break;
	}
	held(td, -1, 1);
	lock_profile_upgraded(&rw_lo);
	if (w)
		witness_upgrade(&rw_lo, LOP_EXCLUSIVE | LOP_TRYLOCK, file, line);
	return true;
}

void
rwlock::downgrade(const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	const uintptr_t tid = reinterpret_cast<uintptr_t>(td);
	uintptr_t v = rw_lock.load(std::memory_order_relaxed);
	if (v == RW_DESTROYED)
		lock_check_failed(&rw_lo, "rw_downgrade()", file, line);
	if (witness_watched(&rw_lo))
		witness_downgrade(&rw_lo, 0, file, line);
	if (sw_owner(v) != td)
		panic("rw_downgrade() of rwlock \"%s\" not write-locked @ %s:%d",
		    rw_lo.lo_name, file, line);
	if (rw_recurse != 0)
		panic("rw_downgrade() of recursed rwlock \"%s\" @ %s:%d",
		    rw_lo.lo_name, file, line);
	lock_profile_downgraded(&rw_lo); // the hold goes on, shared
	v = tid;
	if (!rw_lock.compare_exchange_strong(v, RW_LOCK_READ | RW_ONE_READER,
		std::memory_order_release, std::memory_order_relaxed)) {
		// Waiters: with the chain lock, keep the writers' bit and
		// wake the readers if no writer waits; else just disown.
		turnstile_chain_lock(&rw_lo);
		v = rw_lock.load(std::memory_order_relaxed);
		bool rwait = (v & RW_LOCK_READ_WAITERS) != 0;
		bool wwait = (v & RW_LOCK_WRITE_WAITERS) != 0;
		// Readers that cannot run past the waiting writers keep
		// their bit, or the last reader's release would forget them.
		rw_lock.store(RW_LOCK_READ | RW_ONE_READER |
			(wwait ? (v & RW_LOCK_WAITERS) : 0),
		    std::memory_order_release);
		turnstile *ts = turnstile_lookup(&rw_lo);
		if (ts != nullptr) {
			if (rwait && !wwait) {
				turnstile_broadcast(ts, TS_SHARED_QUEUE);
				turnstile_unpend(ts);
			} else {
				turnstile_disown(ts);
			}
		}
		turnstile_chain_unlock(&rw_lo);
	}
	held(td, 1, -1);
}

void
rwlock::destroy(const char *file, int line) noexcept
{
	uintptr_t v = rw_lock.load(std::memory_order_acquire);
	if (v == RW_DESTROYED)
		lock_check_failed(&rw_lo, "rw_destroy()", file, line);
	lock_check_live(&rw_lo, "rw_destroy()", file, line);
	if (v != RW_UNLOCKED)
		panic("rw_destroy() of rwlock \"%s\" still locked @ %s:%d",
		    rw_lo.lo_name, file, line);
	rw_lock.store(RW_DESTROYED, std::memory_order_release);
	lock_destroy(&rw_lo);
}

void
rwlock::assert_state(int what, const char *file, int line) const noexcept
{
	uintptr_t v = rw_lock.load(std::memory_order_relaxed);
	thread *td = curthread_fast();
	bool wown = v != RW_DESTROYED && sw_owner(v) == td;
	switch (what & ~(RA_RECURSED | RA_NOTRECURSED)) {
	case RA_LOCKED:
	case RA_RLOCKED:
		if (wown && what != RA_RLOCKED)
			return;
		if (!(v & RW_LOCK_READ) || sw_sharers(v) == 0 ||
		    td_rw_rlocks(td) == 0)
			panic("Lock %s not %slocked @ %s:%d", rw_lo.lo_name,
			    what == RA_RLOCKED ? "read " : "", file, line);
		return;
	case RA_WLOCKED:
		if (!wown)
			panic("Lock %s not exclusively locked @ %s:%d",
			    rw_lo.lo_name, file, line);
		if ((what & RA_RECURSED) && rw_recurse == 0)
			panic("Lock %s not recursed @ %s:%d", rw_lo.lo_name, file,
			    line);
		if ((what & RA_NOTRECURSED) && rw_recurse != 0)
			panic("Lock %s recursed @ %s:%d", rw_lo.lo_name, file, line);
		return;
	case RA_UNLOCKED:
		if (wown)
			panic("Lock %s exclusively locked @ %s:%d", rw_lo.lo_name,
			    file, line);
		return;
	}
	panic("Unknown rw lock assertion: %d @ %s:%d", what, file, line);
}

} // namespace usmp

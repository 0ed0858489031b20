// sx(9) (kern_sx.c) over the sleep queues.  The word layout and the state
// table are in sync/sx.h.
//
// Blocking, for either kind of waiter: take the sx's chain lock
// (sleepq_lock(this)), re-read the word; if the lock can now be had, take
// it (CAS) and leave; otherwise set this queue's waiter bit with a CAS (if
// the word changed meanwhile, start over), sleepq_add and sleep.  A
// releaser that sees a waiter bit takes the same chain lock before it
// clears the bits and wakes: it either runs before our re-read (and we see
// the lock free) or after our bit is set (and it wakes us), never between.
// Every woken waiter competes again from the top (no hand-off), as
// FreeBSD's does.
//
// Giant (kern_sx.c's GIANT_SAVE / GIANT_RESTORE): a waiter about to sleep
// releases every level of Giant it holds (once, under the chain lock, just
// before its first sleepq_add) and takes them back when it leaves the slow
// path, holding the sx (or with EINTR): a thread that sleeps on an sx
// never blocks Giant's other users.
#include "sync/sx.h"

#include <cerrno>

#include "runtime/internal/curthread.h"
#include "runtime/panic.h"
#include "sync/internal/sq_check.h"
#include "sync/mutex.h"
#include "sync/lock_profile.h"
#include "sync/sleepqueue.h"
#include "sync/witness.h"

namespace usmp {

namespace {

enum : int { SQ_EXCLUSIVE_QUEUE = 0, SQ_SHARED_QUEUE = 1 };

// GIANT_SAVE / GIANT_RESTORE: save() before each sleep (only the first
// drops anything); the destructor, on every way out of the slow path,
// restores the depth saved.
class giant_save {
public:
	giant_save() noexcept = default;
	giant_save(const giant_save &) = delete;
	giant_save &operator=(const giant_save &) = delete;
	~giant_save() { pickup_giant(gs_depth); }
	void save() noexcept
	{
		if (!gs_saved) {
			gs_depth = drop_giant();
			gs_saved = true;
		}
	}

private:
	int gs_depth = 0;
	bool gs_saved = false;
};

// The sleeping half of both slow paths.  Requires the chain lock of chan
// (the sx), with x the word read under it and the lock not available to
// us: set `bit` (the waiters' bit of `queue`) if it is not set yet and
// sleep on `queue`.  A failed CAS (the word changed: re-evaluate) or a
// wakeup returns 0; an interrupted interruptible sleep returns EINTR.
// Returns with the chain lock released.
int
sleep_on(std::atomic<uintptr_t> &word, uintptr_t x, uintptr_t bit,
    const void *chan, const char *name, int queue, int flags,
    giant_save &giant, const char *file, int line) noexcept
{
	if (!(x & bit) &&
	    !word.compare_exchange_strong(x, x | bit, std::memory_order_relaxed)) {
		sleepq_release(chan);
		return 0;
	}
	giant.save();
	sleepq_add(chan, nullptr, name, SLEEPQ_SX | flags, queue, file, line);
	// The wait channel is the sx, whose lock object comes first; its
	// exclusive owner, if any, is in the word (WITNESS deadlock check).
	witness_block(static_cast<const lock_object *>(chan),
	    (x & SX_LOCK_SHARED) ? nullptr :
	    reinterpret_cast<thread *>(x & ~uintptr_t{SX_LOCK_FLAGMASK}),
	    file, line);
	int error = 0;
	if (flags & SLEEPQ_INTERRUPTIBLE)
		error = sleepq_wait_sig(chan, 0) == EINTR ? EINTR : 0;
	else
		sleepq_wait(chan, 0);
	witness_unblock();
	return error;
}

inline uintptr_t
tid_of(thread *td) noexcept
{
	return reinterpret_cast<uintptr_t>(td);
}

void
sx_lc_assert(const lock_object *lo, int what, const char *file, int line)
{
	const sx *s = reinterpret_cast<const sx *>(lo);
	switch (what & (LA_LOCKED | LA_SLOCKED | LA_XLOCKED)) {
	case LA_XLOCKED:
		s->assert_xlocked(file, line);
		break;
	case LA_SLOCKED:
		s->assert_slocked(file, line);
		break;
	case LA_LOCKED:
		s->assert_locked(file, line);
		break;
	default:
		s->assert_unlocked(file, line);
	}
}

uintptr_t
sx_lc_unlock(lock_object *lo)
{
	sx *s = reinterpret_cast<sx *>(lo);
	if (s->xlocked()) {
		s->unlock();
		return 0;
	}
	s->unlock_shared();
	return 1;
}

void
sx_lc_lock(lock_object *lo, uintptr_t how)
{
	sx *s = reinterpret_cast<sx *>(lo);
	if (how)
		s->lock_shared();
	else
		s->lock();
}

thread *
sx_lc_owner(const lock_object *lo)
{
	return reinterpret_cast<const sx *>(lo)->xholder();
}

} // namespace

const lock_class lock_class_sx = {
	"sx", LC_SLEEPLOCK | LC_SLEEPABLE | LC_RECURSABLE | LC_UPGRADABLE,
	sx_lc_assert, sx_lc_unlock, sx_lc_lock, sx_lc_owner,
};


sx::sx(const char *name, unsigned opts, const char *file, int line) noexcept
    : sx_lock(SX_LOCK_UNLOCKED)
{
	lock_init(&sx_lo, &lock_class_sx, name, nullptr, opts | LOCK_UPGRADABLE,
	    "sx_init", file, line);
}

sx::~sx()
{
	if (!(sx_lo.lo_flags & LO_DESTROYED))
		destroy("~sx", 0);
}

void
sx::destroy(const char *file, int line) noexcept
{
	lock_check_live(&sx_lo, "sx_destroy", file, line);
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	if (x != SX_LOCK_UNLOCKED || sx_recurse != 0)
		panic("sx_destroy: sx lock \"%s\" still held (word %#lx) @ %s:%d",
		    sx_lo.lo_name, static_cast<unsigned long>(x), file, line);
	sx_lock.store(SX_LOCK_DESTROYED, std::memory_order_relaxed);
	lock_destroy(&sx_lo);
}

// ---- Exclusive.

void
sx::lock(const char *file, int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(true);
	lock_check_live(&sx_lo, "sx_xlock", file, line);
	bool w = witness_watched(&sx_lo);
	if (w)
		witness_checkorder(&sx_lo, LOP_EXCLUSIVE, file, line);
	uintptr_t tid = tid_of(curthread_fast());
	uintptr_t v = SX_LOCK_UNLOCKED;
	bool recursing = false;
	uint64_t t0 = 0;
	if (__builtin_expect(!sx_lock.compare_exchange_strong(v, tid,
		std::memory_order_acquire, std::memory_order_relaxed), 0)) {
		recursing = sw_owner(v) == reinterpret_cast<thread *>(tid);
		t0 = lock_profile_wait_start(!recursing);
		(void)xlock_hard(tid, 0, file, line);
	}
	if (!recursing)
		lock_profile_acquired(&sx_lo, true, t0, file, line);
	if (w)
		witness_lock(&sx_lo, LOP_EXCLUSIVE, file, line);
}

int
sx::lock_sig(const char *file, int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(true);
	lock_check_live(&sx_lo, "sx_xlock_sig", file, line);
	bool w = witness_watched(&sx_lo);
	if (w)
		witness_checkorder(&sx_lo, LOP_EXCLUSIVE, file, line);
	uintptr_t tid = tid_of(curthread_fast());
	uintptr_t v = SX_LOCK_UNLOCKED;
	int error = 0;
	bool recursing = false;
	uint64_t t0 = 0;
	if (!sx_lock.compare_exchange_strong(v, tid, std::memory_order_acquire,
		std::memory_order_relaxed)) {
		recursing = sw_owner(v) == reinterpret_cast<thread *>(tid);
		t0 = lock_profile_wait_start(!recursing);
		error = xlock_hard(tid, SLEEPQ_INTERRUPTIBLE, file, line);
	}
	if (!recursing && error == 0)
		lock_profile_acquired(&sx_lo, true, t0, file, line);
	if (w && error == 0)
		witness_lock(&sx_lo, LOP_EXCLUSIVE, file, line);
	return error;
}

bool
sx::try_lock(const char *file, int line) noexcept
{
	lock_check_live(&sx_lo, "sx_try_xlock", file, line);
	thread *td = curthread_fast();
	uintptr_t v = SX_LOCK_UNLOCKED;
	bool got = sx_lock.compare_exchange_strong(v, tid_of(td),
	    std::memory_order_acquire, std::memory_order_relaxed);
	if (got)
		lock_profile_acquired(&sx_lo, true, 0, file, line);
	else if (sw_owner(v) == td && (sx_lo.lo_flags & LO_RECURSABLE)) {
		sx_recurse++;
		got = true;
	}
	if (got) {
		if (witness_watched(&sx_lo))
			witness_lock(&sx_lo, LOP_EXCLUSIVE | LOP_TRYLOCK, file,
			    line);
		return true;
	}
	if (sw_owner(v) == td && witness_watched(&sx_lo))
		witness_try_recursion(&sx_lo, file, line);
	return false;
}

int
sx::xlock_hard(uintptr_t tid, int flags, const char *file, int line) noexcept
{
	thread *td = reinterpret_cast<thread *>(tid);
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	if (sw_owner(x) == td) {
		if (!(sx_lo.lo_flags & LO_RECURSABLE))
			panic("_sx_xlock_hard: recursed on non-recursive sx \"%s\" "
			    "@ %s:%d", sx_lo.lo_name, file, line);
		sx_recurse++;
		return 0;
	}
	sleep_check(td, "sx_xlock", sx_lo.lo_name, file, line);
	giant_save giant;
	for (;;) {
		x = sx_lock.load(std::memory_order_relaxed);
		if (x == SX_LOCK_UNLOCKED) {
			if (sx_lock.compare_exchange_weak(x, tid,
				std::memory_order_acquire, std::memory_order_relaxed))
				return 0;
			continue;
		}
		sleepq_lock(this);
		x = sx_lock.load(std::memory_order_relaxed);
		if ((x & ~uintptr_t{SX_LOCK_WAITERS}) == SX_LOCK_UNLOCKED) {
			// Free but for waiter bits: take it, keeping them.
			if (sx_lock.compare_exchange_strong(x,
				tid | (x & SX_LOCK_WAITERS),
				std::memory_order_acquire, std::memory_order_relaxed)) {
				sleepq_release(this);
				return 0;
			}
			sleepq_release(this);
			continue;
		}
		if (sleep_on(sx_lock, x, SX_LOCK_EXCLUSIVE_WAITERS, this,
			sx_lo.lo_name, SQ_EXCLUSIVE_QUEUE, flags, giant, file,
			line) == EINTR)
			return EINTR;
	}
}

void
sx::unlock(const char *file, int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(false);
	lock_check_live(&sx_lo, "sx_xunlock", file, line);
	if (witness_watched(&sx_lo))
		witness_unlock(&sx_lo, LOP_EXCLUSIVE, file, line);
	thread *td = curthread_fast();
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	if (__builtin_expect(sw_owner(x) != td, 0))
		panic("sx_xunlock: sx \"%s\" not exclusively locked by thread "
		    "\"%s\" (tid %d) @ %s:%d", sx_lo.lo_name, td->td_name,
		    td->td_tid, file, line);
	if (sx_recurse != 0) {
		sx_recurse--;
		return;
	}
	lock_profile_released(&sx_lo);
	uintptr_t v = tid_of(td);
	if (__builtin_expect(!sx_lock.compare_exchange_strong(v,
		SX_LOCK_UNLOCKED, std::memory_order_release,
		std::memory_order_relaxed), 0))
		xunlock_hard(file, line);
}

void
sx::xunlock_hard(const char *file, int line) noexcept
{
	sleepq_lock(this);
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	// Writers first; the shared waiters' bit stays for the next release.
	int queue = (x & SX_LOCK_EXCLUSIVE_WAITERS) ? SQ_EXCLUSIVE_QUEUE :
						      SQ_SHARED_QUEUE;
	uintptr_t setx = SX_LOCK_UNLOCKED;
	if (queue == SQ_EXCLUSIVE_QUEUE)
		setx |= x & SX_LOCK_SHARED_WAITERS;
	// Only we change the word while we own it and hold the chain lock.
	sx_lock.store(setx, std::memory_order_release);
	sleepq_broadcast(this, SLEEPQ_SX, 0, queue);
	sleepq_release(this);
}

// ---- Shared.

void
sx::lock_shared(const char *file, int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(true);
	lock_check_live(&sx_lo, "sx_slock", file, line);
	bool w = witness_watched(&sx_lo);
	if (w)
		witness_checkorder(&sx_lo, 0, file, line);
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	uint64_t t0 = 0;
	if (!__builtin_expect((x & (SX_LOCK_SHARED | SX_LOCK_EXCLUSIVE_WAITERS)) ==
		    SX_LOCK_SHARED &&
		sx_lock.compare_exchange_strong(x, x + SX_ONE_SHARER,
		    std::memory_order_acquire, std::memory_order_relaxed), 1)) {
		// Contested: held exclusively or with writers waiting (a race
		// with another sharer is not).
		t0 = lock_profile_wait_start(
		    (x & (SX_LOCK_SHARED | SX_LOCK_EXCLUSIVE_WAITERS)) !=
		    SX_LOCK_SHARED);
		(void)slock_hard(0, file, line);
	}
	lock_profile_acquired(&sx_lo, false, t0, file, line);
	if (w)
		witness_lock(&sx_lo, 0, file, line);
}

int
sx::lock_shared_sig(const char *file, int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(true);
	lock_check_live(&sx_lo, "sx_slock_sig", file, line);
	bool w = witness_watched(&sx_lo);
	if (w)
		witness_checkorder(&sx_lo, 0, file, line);
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	uint64_t t0 = lock_profile_wait_start(
	    (x & (SX_LOCK_SHARED | SX_LOCK_EXCLUSIVE_WAITERS)) != SX_LOCK_SHARED);
	int error = slock_hard(SLEEPQ_INTERRUPTIBLE, file, line);
	if (error == 0)
		lock_profile_acquired(&sx_lo, false, t0, file, line);
	if (w && error == 0)
		witness_lock(&sx_lo, 0, file, line);
	return error;
}

bool
sx::try_lock_shared(const char *file, int line) noexcept
{
	lock_check_live(&sx_lo, "sx_try_slock", file, line);
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	while (x & SX_LOCK_SHARED) {
		if (sx_lock.compare_exchange_weak(x, x + SX_ONE_SHARER,
			std::memory_order_acquire, std::memory_order_relaxed)) {
			lock_profile_acquired(&sx_lo, false, 0, file, line);
			if (witness_watched(&sx_lo))
				witness_lock(&sx_lo, LOP_TRYLOCK, file, line);
			return true;
		}
	}
	return false;
}

int
sx::slock_hard(int flags, const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	if (__builtin_expect(sw_owner(x) == td, 0))
		panic("sx_slock: sx \"%s\" already exclusively locked by thread "
		    "\"%s\" @ %s:%d", sx_lo.lo_name, td->td_name, file, line);
	bool checked = false;
	giant_save giant;
	for (;;) {
		x = sx_lock.load(std::memory_order_relaxed);
		if ((x & (SX_LOCK_SHARED | SX_LOCK_EXCLUSIVE_WAITERS)) ==
		    SX_LOCK_SHARED) {
			if (sx_lock.compare_exchange_weak(x, x + SX_ONE_SHARER,
				std::memory_order_acquire,
				std::memory_order_relaxed))
				return 0;
			continue;
		}
		if (!checked) {
			sleep_check(td, "sx_slock", sx_lo.lo_name, file, line);
			checked = true;
		}
		sleepq_lock(this);
		x = sx_lock.load(std::memory_order_relaxed);
		if ((x & (SX_LOCK_SHARED | SX_LOCK_EXCLUSIVE_WAITERS)) ==
		    SX_LOCK_SHARED) {
			sleepq_release(this);
			continue;
		}
		if (sleep_on(sx_lock, x, SX_LOCK_SHARED_WAITERS, this,
			sx_lo.lo_name, SQ_SHARED_QUEUE, flags, giant, file,
			line) == EINTR)
			return EINTR;
	}
}

void
sx::unlock_shared(const char *file, int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(false);
	lock_check_live(&sx_lo, "sx_sunlock", file, line);
	if (witness_watched(&sx_lo))
		witness_unlock(&sx_lo, 0, file, line);
	lock_profile_released(&sx_lo, false);
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	for (;;) {
		if (__builtin_expect(!(x & SX_LOCK_SHARED) || sw_sharers(x) == 0, 0))
			panic("sx_sunlock: sx \"%s\" not share locked @ %s:%d",
			    sx_lo.lo_name, file, line);
		if (sw_sharers(x) > 1 || !(x & SX_LOCK_WAITERS)) {
			if (sx_lock.compare_exchange_weak(x, x - SX_ONE_SHARER,
				std::memory_order_release,
				std::memory_order_relaxed))
				return;
			continue;
		}
		break;
	}
	sunlock_hard(file, line);
}

void
sx::sunlock_hard(const char *file, int line) noexcept
{
	sleepq_lock(this);
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	for (;;) {
		if (sw_sharers(x) > 1 || !(x & SX_LOCK_WAITERS)) {
			if (sx_lock.compare_exchange_weak(x, x - SX_ONE_SHARER,
				std::memory_order_release,
				std::memory_order_relaxed)) {
				sleepq_release(this);
				return;
			}
			continue;
		}
		// The last sharer, with waiters.
		int queue = (x & SX_LOCK_EXCLUSIVE_WAITERS) ?
		    SQ_EXCLUSIVE_QUEUE : SQ_SHARED_QUEUE;
		uintptr_t setx = SX_LOCK_UNLOCKED;
		if (queue == SQ_EXCLUSIVE_QUEUE)
			setx |= x & SX_LOCK_SHARED_WAITERS;
		if (!sx_lock.compare_exchange_weak(x, setx,
			std::memory_order_release, std::memory_order_relaxed))
			continue;
		sleepq_broadcast(this, SLEEPQ_SX, 0, queue);
		sleepq_release(this);
		return;
	}
}

// ---- Upgrade, downgrade.

bool
sx::try_upgrade(const char *file, int line) noexcept
{
	lock_check_live(&sx_lo, "sx_try_upgrade", file, line);
	bool wit = witness_watched(&sx_lo);
	if (wit)
		witness_upgrade(&sx_lo, LOP_EXCLUSIVE | LOP_TRYLOCK |
			WITNESS_LOP_CHECKONLY, file, line);
	assert_slocked(file, line);
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	uintptr_t w = x & SX_LOCK_EXCLUSIVE_WAITERS;
	uintptr_t v = SX_LOCK_SHARED | SX_ONE_SHARER | w;
	if (!sx_lock.compare_exchange_strong(v, tid_of(curthread_fast()) | w,
		std::memory_order_acquire, std::memory_order_relaxed))
		return false;
	lock_profile_upgraded(&sx_lo);
	if (wit)
		witness_upgrade(&sx_lo, LOP_EXCLUSIVE | LOP_TRYLOCK, file, line);
	return true;
}

void
sx::downgrade(const char *file, int line) noexcept
{
	lock_check_live(&sx_lo, "sx_downgrade", file, line);
	if (witness_watched(&sx_lo))
		witness_downgrade(&sx_lo, 0, file, line);
	assert_xlocked(file, line);
	if (sx_recurse != 0)
		panic("sx_downgrade: sx \"%s\" recursed @ %s:%d", sx_lo.lo_name,
		    file, line);
	lock_profile_downgraded(&sx_lo); // the hold goes on, shared
	uintptr_t v = tid_of(curthread_fast());
	if (sx_lock.compare_exchange_strong(v, SX_LOCK_SHARED | SX_ONE_SHARER,
		std::memory_order_release, std::memory_order_relaxed))
		return;
	sleepq_lock(this);
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	sx_lock.store(SX_LOCK_SHARED | SX_ONE_SHARER |
	    (x & SX_LOCK_EXCLUSIVE_WAITERS), std::memory_order_release);
	if (x & SX_LOCK_SHARED_WAITERS)
		sleepq_broadcast(this, SLEEPQ_SX, 0, SQ_SHARED_QUEUE);
	sleepq_release(this);
}

// ---- Asserts.

bool
sx::xlocked() const noexcept
{
	return sw_owner(sx_lock.load(std::memory_order_relaxed)) ==
	    curthread_fast();
}

thread *
sx::xholder() const noexcept
{
	return sw_owner(sx_lock.load(std::memory_order_relaxed));
}

void
sx::assert_xlocked(const char *file, int line) const noexcept
{
	if (!xlocked())
		panic("Lock %s not exclusively locked @ %s:%d", sx_lo.lo_name,
		    file, line);
}

void
sx::assert_slocked(const char *file, int line) const noexcept
{
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	if (!(x & SX_LOCK_SHARED) || sw_sharers(x) == 0)
		panic("Lock %s not share locked @ %s:%d", sx_lo.lo_name, file,
		    line);
}

void
sx::assert_locked(const char *file, int line) const noexcept
{
	uintptr_t x = sx_lock.load(std::memory_order_relaxed);
	if (!xlocked() && !((x & SX_LOCK_SHARED) && sw_sharers(x) != 0))
		panic("Lock %s not locked @ %s:%d", sx_lo.lo_name, file, line);
}

void
sx::assert_unlocked(const char *file, int line) const noexcept
{
	if (xlocked())
		panic("Lock %s exclusively locked @ %s:%d", sx_lo.lo_name, file,
		    line);
}

} // namespace usmp

// condvar(9) (kern_condvar.c) over the sleep queues of sync/sleepqueue.cc.
//
// cv_waiters.  Each waiter increments it under the sleep-queue chain lock
// before it releases the interlock; signal() and broadcast() read it
// without any lock and return at once when it is 0.  That read is correct
// when the condition was changed under the interlock: the signaller took
// the interlock after the waiter released it, which is after the increment
// (the interlock's release/acquire orders it; the counter itself is
// relaxed).  A waiter that leaves by timeout or interrupt does not
// decrement it: it is an upper bound, and a signal that finds the queue
// empty only brings it down.  It saturates at INT_MAX (CV_WAITERS_BOUND),
// after which signal() always looks at the queue.
//
// Giant, as in sleep(9) (sync/sleep.cc): every level the waiter holds is
// released inside the chain lock, right after the waiter is counted, and
// taken back after the wait, before the interlock.  Giant as the interlock
// is released and restored that way only.
#include "sync/condvar.h"

#include <cerrno>
#include <climits>

#include "runtime/internal/curthread.h"
#include "runtime/panic.h"
#include "sync/internal/sq_check.h"
#include "sync/mutex.h"
#include "sync/sleepqueue.h"
#include "sync/witness.h"

namespace usmp {

namespace {

constexpr int CV_WAITERS_BOUND = INT_MAX;

// WITNESS checks at all (compiled in and not switched off at run time):
// witness_warn() formats its message before it knows whether it has
// anything to report, which a sleep with WITNESS off should not pay for.
inline bool
witness_on() noexcept
{
	if constexpr (!config::witness)
		return false;
	else
		return witness_detail::w_watch.load(std::memory_order_relaxed) > 0;
}

} // namespace

condvar::~condvar()
{
	if constexpr (config::invariants) {
		sleepq_lock(this);
		int n = sleepq_sleepcnt(this, 0);
		sleepq_release(this);
		if (n != 0)
			panic("cv_destroy: condvar \"%s\" %p destroyed with %d "
			    "waiters", cv_description, static_cast<void *>(this), n);
	}
}

int
condvar::wait_common(lock_object *lock, std::chrono::nanoseconds timo,
    int flags, bool relock, const char *call, const char *file,
    int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(true);
	thread *td = curthread_fast();
	if (witness_on())
		witness_warn(WARN_GIANTOK | WARN_SLEEPOK, lock,
		    "Waiting on \"%s\"", cv_description);
	sleep_check(td, call, cv_description, file, line, lock);
	if (__builtin_expect(lock == nullptr, 0))
		panic("%s: condvar \"%s\" waited on without a lock @ %s:%d",
		    call, cv_description, file, line);
	interlock_check(lock, call, file, line);
	bool giant_lock = lock == Giant.lo();
	if (giant_lock)
		Giant.assert_owned(file, line);
	bool sleepable = (lock->lo_class->lc_flags & LC_SLEEPABLE) != 0;
	// The common interlock, a sleep mutex held once, is released and
	// taken back by its inline fast paths rather than through the lock
	// class: the same effect as unlock_all()/relock_depth() with a depth
	// of 1 (a contested or witnessed mutex still takes the slow paths).
	mutex *mtx = lock->lo_class == &lock_class_mtx_sleep && !giant_lock ?
	    mutex::from_lo(lock) : nullptr;
	if (mtx != nullptr && !(mtx->owned() && !mtx->recursed()))
		mtx = nullptr;
	uintptr_t how = 0;
	const char *wfile = nullptr;
	int wline = 0;
	if (witness_watched(lock))
		witness_save(lock, &wfile, &wline); // WITNESS_SAVE

	sleepq_lock(this);
	int w = cv_waiters.load(std::memory_order_relaxed);
	if (w != CV_WAITERS_BOUND)
		cv_waiters.store(w + 1, std::memory_order_relaxed);
	int giant = drop_giant();
	if (mtx != nullptr) {
		mtx->unlock(file, line);
		how = 1;
	} else if (!sleepable && !giant_lock) {
		how = lock->lo_class->lc_unlock(lock);
	}
	sleepq_add(this, lock, cv_description, SLEEPQ_CONDVAR | flags, 0,
	    file, line);
	bool timed = timo.count() > 0;
	if (timed)
		sleepq_set_timeout(this, timo);
	if (sleepable) {
		sleepq_release(this);
		how = lock->lo_class->lc_unlock(lock);
		sleepq_lock(this);
	}
	int rval;
	bool sig = (flags & SLEEPQ_INTERRUPTIBLE) != 0;
	if (timed)
		rval = sig ? sleepq_timedwait_sig(this, 0) : sleepq_timedwait(this, 0);
	else if (sig)
		rval = sleepq_wait_sig(this, 0);
	else {
		sleepq_wait(this, 0);
		rval = 0;
	}
	// cv_wait_unlock() with Giant as the interlock leaves it released.
	if (relock || !giant_lock)
		pickup_giant(giant);
	if (relock && !giant_lock) {
		if (mtx != nullptr)
			mtx->lock(file, line);
		else
			lock->lo_class->lc_lock(lock, how);
		if (wfile != nullptr)
			witness_restore(lock, wfile, wline);
	}
	return rval;
}

int
condvar::wait_any(any_lock &a, std::chrono::nanoseconds timo, int flags,
    const char *file, int line) noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(true);
	thread *td = curthread_fast();
	// rwlock holds: checked once the generic lock is released, below.
	if (__builtin_expect((td->td_spinlock_count | td->td_critnest) != 0 ||
		(td->td_pflags & TDP_NOSLEEPING), 0))
		sleep_check(td, "cv_wait", cv_description, file, line);
	sleepq_lock(this);
	int w = cv_waiters.load(std::memory_order_relaxed);
	if (w != CV_WAITERS_BOUND)
		cv_waiters.store(w + 1, std::memory_order_relaxed);
	int giant = drop_giant();
	sleepq_add(this, nullptr, cv_description, SLEEPQ_CONDVAR | flags, 0,
	    file, line);
	bool timed = timo.count() > 0;
	if (timed)
		sleepq_set_timeout(this, timo);
	sleepq_release(this);
	a.unlock(a.l);
	// The generic lock may be an rwlock (or wrap one): its holds are known
	// only now that it is released.
	if (__builtin_expect(td_nonsleepable_locks(td) != 0, 0))
		rwlock_sleep_check(td, 0, "cv_wait", cv_description, file, line);
	sleepq_lock(this);
	int rval = 0;
	if (timed)
		rval = sleepq_timedwait(this, 0);
	else
		sleepq_wait(this, 0);
	pickup_giant(giant);
	a.lock(a.l);
	return rval;
}

void
condvar::wait(lock_object *lock, const char *file, int line) noexcept
{
	(void)wait_common(lock, std::chrono::nanoseconds::zero(), 0, true,
	    "cv_wait", file, line);
}

int
condvar::wait_sig(lock_object *lock, const char *file, int line) noexcept
{
	return wait_common(lock, std::chrono::nanoseconds::zero(),
	    SLEEPQ_INTERRUPTIBLE, true, "cv_wait_sig", file, line);
}

int
condvar::timedwait(lock_object *lock, std::chrono::nanoseconds timo,
    const char *file, int line) noexcept
{
	if (timo.count() <= 0)
		timo = std::chrono::nanoseconds(1);
	return wait_common(lock, timo, 0, true, "cv_timedwait", file, line);
}

int
condvar::timedwait_sig(lock_object *lock, std::chrono::nanoseconds timo,
    const char *file, int line) noexcept
{
	if (timo.count() <= 0)
		timo = std::chrono::nanoseconds(1);
	return wait_common(lock, timo, SLEEPQ_INTERRUPTIBLE, true,
	    "cv_timedwait_sig", file, line);
}

void
condvar::wait_unlock(lock_object *lock, const char *file, int line) noexcept
{
	(void)wait_common(lock, std::chrono::nanoseconds::zero(), 0, false,
	    "cv_wait_unlock", file, line);
}

void
condvar::signal() noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(false);
	if (cv_waiters.load(std::memory_order_relaxed) == 0)
		return;
	sleepq_lock(this);
	int w = cv_waiters.load(std::memory_order_relaxed);
	if (w > 0) {
		if (w != CV_WAITERS_BOUND) {
			cv_waiters.store(w - 1, std::memory_order_relaxed);
		} else if (sleepq_sleepcnt(this, 0) <= 1) {
			// Saturated: count again.
			cv_waiters.store(0, std::memory_order_relaxed);
		}
		sleepq_signal(this, SLEEPQ_CONDVAR | SLEEPQ_DROP, 0, 0);
		return;
	}
	sleepq_release(this);
}

void
condvar::broadcast() noexcept
{
	if (sim_active()) // a scheduling point (runtime/sim.h)
		sim::lock_point(false);
	if (cv_waiters.load(std::memory_order_relaxed) == 0)
		return;
	sleepq_lock(this);
	if (cv_waiters.load(std::memory_order_relaxed) > 0) {
		cv_waiters.store(0, std::memory_order_relaxed);
		sleepq_broadcast(this, SLEEPQ_CONDVAR, 0, 0);
	}
	sleepq_release(this);
}

} // namespace usmp

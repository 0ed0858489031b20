// sleep(9) (kern_synch.c's _sleep, wakeup): the interlock ordering over
// the sleep-queue protocol of sync/sleepqueue.cc.
//
// _sleep, in the order of FreeBSD's (reference section 3.3):
//  1. sleepq_lock(chan).
//  2. A non-sleepable interlock (a mutex) is released now, inside the chain
//     lock: a waker needs the interlock to change the condition and then
//     the chain lock to wake, so it cannot slip in between.
//  3. sleepq_add, then the timeout.
//  4. A sleepable interlock (sx) is released with the chain lock dropped
//     (its own release may sleep-queue-wake others, possibly on this
//     chain) and the chain lock is taken again; a wakeup in between has
//     already taken us off the queue, which the wait notices.
//  5. Wait; re-acquire the interlock in the mode it was held, unless PDROP.
//
// Giant (DROP_GIANT / PICKUP_GIANT).  Every level of Giant the sleeper holds
// is released right after step 1, inside the chain lock (Giant may be the
// interlock itself, which must go atomically with the sleep), and taken
// back, to the same recursion depth, after the wait and before the
// interlock: Giant is ordered before every other lock.  With Giant as the
// interlock, the Giant drop is its release and PDROP does not apply to it:
// Giant comes back regardless, as in FreeBSD.
#include "sync/sleep.h"

#include <cerrno>
#include <thread>

#include "runtime/internal/curthread.h"
#include "runtime/panic.h"
#include "sync/internal/sq_check.h"
#include "sync/mutex.h"
#include "sync/witness.h"

namespace usmp {

namespace {

int
sleep_common(const void *chan, lock_object *lock, int pri, const char *wmesg,
    std::chrono::nanoseconds timo, int type, const char *call,
    const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	witness_warn(WARN_GIANTOK | WARN_SLEEPOK, lock, "Sleeping on \"%s\"",
	    wmesg);
	sleep_check(td, call, wmesg, file, line, lock);
	if (__builtin_expect(chan == nullptr, 0))
		panic("%s: NULL ident (\"%s\") @ %s:%d", call, wmesg, file, line);
	interlock_check(lock, call, file, line);
	if (__builtin_expect((pri & PDROP) && lock == nullptr, 0))
		panic("%s: PDROP requires a lock (\"%s\") @ %s:%d", call, wmesg,
		    file, line);
	int flags = type;
	if (pri & PCATCH)
		flags |= SLEEPQ_INTERRUPTIBLE;
	// ilock: the interlock this code releases and takes back; Giant as
	// the interlock is released and restored as Giant.
	lock_object *ilock = lock;
	if (lock == Giant.lo()) {
		Giant.assert_owned(file, line);
		ilock = nullptr;
	}
	bool sleepable = ilock != nullptr &&
	    (ilock->lo_class->lc_flags & LC_SLEEPABLE) != 0;
	uintptr_t how = 0;
	// The interlock's acquisition site survives the sleep (WITNESS_SAVE).
	const char *wfile = nullptr;
	int wline = 0;
	if (lock != nullptr)
		witness_save(lock, &wfile, &wline);

	sleepq_lock(chan);
	int giant = drop_giant();
	if (ilock != nullptr && !sleepable)
		how = ilock->lo_class->lc_unlock(ilock);
	sleepq_add(chan, lock, wmesg, flags, 0, file, line);
	bool timed = timo.count() > 0;
	if (timed)
		sleepq_set_timeout(chan, timo);
	if (sleepable) {
		sleepq_release(chan);
		how = ilock->lo_class->lc_unlock(ilock);
		sleepq_lock(chan);
	}
	int rval;
	if (timed && (pri & PCATCH))
		rval = sleepq_timedwait_sig(chan, pri & PRIMASK);
	else if (timed)
		rval = sleepq_timedwait(chan, pri & PRIMASK);
	else if (pri & PCATCH)
		rval = sleepq_wait_sig(chan, pri & PRIMASK);
	else {
		sleepq_wait(chan, pri & PRIMASK);
		rval = 0;
	}
	pickup_giant(giant);
	if (ilock != nullptr && !(pri & PDROP)) {
		ilock->lo_class->lc_lock(ilock, how);
		witness_restore(ilock, wfile, wline);
	}
	return rval;
}

} // namespace

int
msleep(const void *chan, lock_object *lock, int pri, const char *wmesg,
    std::chrono::nanoseconds timo, const char *file, int line) noexcept
{
	return sleep_common(chan, lock, pri, wmesg, timo, SLEEPQ_SLEEP,
	    "msleep", file, line);
}

int
pause(const char *wmesg, std::chrono::nanoseconds duration, const char *file,
    int line) noexcept
{
	if (duration.count() <= 0)
		duration = std::chrono::milliseconds(1);
	thread *td = curthread_fast();
	if (td->td_flags & TDF_FOREIGN) {
		witness_warn(WARN_GIANTOK | WARN_SLEEPOK, nullptr,
		    "Sleeping on \"%s\"", wmesg);
		sleep_check(td, "pause", wmesg, file, line);
		int giant = drop_giant();
		std::this_thread::sleep_for(duration);
		pickup_giant(giant);
		return EWOULDBLOCK;
	}
	// A channel nobody else knows: the thread's own futex word.
	return sleep_common(&td->td_sqwait, nullptr, 0, wmesg, duration,
	    SLEEPQ_PAUSE, "pause", file, line);
}

void
wakeup(const void *chan) noexcept
{
	sleepq_lock(chan);
	sleepq_broadcast(chan, SLEEPQ_SLEEP, 0, 0);
	sleepq_release(chan);
}

void
wakeup_one(const void *chan) noexcept
{
	sleepq_lock(chan);
	sleepq_signal(chan, SLEEPQ_SLEEP | SLEEPQ_DROP, 0, 0);
}

void
wakeup_any(const void *chan) noexcept
{
	sleepq_lock(chan);
	sleepq_signal(chan, SLEEPQ_SLEEP | SLEEPQ_UNFAIR | SLEEPQ_DROP, 0, 0);
}

} // namespace usmp

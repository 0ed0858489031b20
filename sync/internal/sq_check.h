// Private to sync/ (sleep.cc, condvar.cc, sx.cc, sema.cc): the checks every
// sleep makes before it commits to sleeping.
#pragma once

#include "runtime/panic.h"
#include "runtime/thread.h"
#include "sync/internal/ts_tdstate.h"
#include "sync/lock.h"
#include "sync/rwlock.h"

namespace usmp {

// Panic if td holds an rwlock (read or write) that would stay held across
// the sleep: rwlocks are not sleepable (rwlock(9): "no sleeping while
// held"; FreeBSD's WITNESS reports it, and propagate_priority panics later
// if a waiter finds the owner asleep).  `allowed` holds are the interlock,
// which the sleep releases.  The held rwlocks are anonymous (only counts
// are kept per thread), so the message gives the counts.
[[gnu::cold, gnu::noinline]] inline void
rwlock_sleep_check(const thread *td, int allowed, const char *call,
    const char *what, const char *file, int line) noexcept
{
	int rl = td_rw_rlocks(td), wl = td_nonsleepable_locks(td) - rl;
	if (rl + wl <= allowed)
		return;
	panic("%s: sleeping on \"%s\" with a non-sleepable rwlock held (thread "
	    "\"%s\", tid %d, rwlock read holds %d, write holds %d%s) @ %s:%d",
	    call, what, td->td_name, td->td_tid, rl, wl,
	    allowed ? ", one of them the interlock" : "", file, line);
}

// Panic if curthread td may not sleep here: inside a critical section, with
// a spin lock held (td_spinlock_count), marked TDP_NOSLEEPING (the idle
// thread, filters), or holding an rwlock other than `interlock` (the lock
// the sleep releases; null if none, or released by other means: the
// caller then calls rwlock_sleep_check itself once it is released).
// `call` is the public call ("msleep", "cv_wait"), `what` the wait message
// or the lock, file:line the caller's site.  The common case costs one
// test of four per-thread words.
inline void
sleep_check(const thread *td, const char *call, const char *what,
    const char *file, int line, const lock_object *interlock = nullptr) noexcept
{
	if (__builtin_expect((td->td_spinlock_count | td->td_critnest |
		td_nonsleepable_locks(td)) == 0 &&
		!(td->td_pflags & TDP_NOSLEEPING), 1))
		return;
	if (td->td_spinlock_count != 0)
		panic("%s: sleeping on \"%s\" with a spin lock held (thread "
		    "\"%s\", tid %d, spinlock count %d) @ %s:%d", call, what,
		    td->td_name, td->td_tid, td->td_spinlock_count, file, line);
	if (td->td_critnest != 0)
		panic("%s: sleeping on \"%s\" in a critical section (thread "
		    "\"%s\", tid %d, critnest %d) @ %s:%d", call, what,
		    td->td_name, td->td_tid, td->td_critnest, file, line);
	if (td->td_pflags & TDP_NOSLEEPING)
		panic("%s: sleeping on \"%s\" with sleeping prohibited (thread "
		    "\"%s\", tid %d) @ %s:%d", call, what, td->td_name,
		    td->td_tid, file, line);
	// An rwlock interlock releases one hold (lc_unlock drops one level).
	rwlock_sleep_check(td,
	    interlock != nullptr && interlock->lo_class == &lock_class_rw ? 1 : 0,
	    call, what, file, line);
}

// The interlock of a sleep: live, and not a spin lock.
inline void
interlock_check(const lock_object *lock, const char *call, const char *file,
    int line) noexcept
{
	if (lock == nullptr)
		return;
	lock_check_live(lock, call, file, line);
	if (__builtin_expect(lock->lo_class->lc_flags & LC_SPINLOCK, 0))
		panic("%s: interlock %s \"%s\" is a spin lock @ %s:%d", call,
		    lock->lo_class->lc_name, lock->lo_name, file, line);
}

} // namespace usmp

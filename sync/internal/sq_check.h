// Private to sync/ (sleep.cc, condvar.cc, sx.cc, sema.cc): the checks every
// sleep makes before it commits to sleeping.
#pragma once

#include "runtime/panic.h"
#include "runtime/thread.h"
#include "sync/lock.h"

namespace usmp {

// Panic if curthread td may not sleep here: inside a critical section, with
// a spin lock held (td_spinlock_count), or marked TDF_NOSLEEPING (the idle
// thread, filters).  `call` is the public call ("msleep", "cv_wait"), `what`
// the wait message or the lock, file:line the caller's site.
inline void
sleep_check(const thread *td, const char *call, const char *what,
    const char *file, int line) noexcept
{
	if (__builtin_expect((td->td_spinlock_count | td->td_critnest) == 0 &&
		!(td->td_flags & TDF_NOSLEEPING), 1))
		return;
	if (td->td_spinlock_count != 0)
		panic("%s: sleeping on \"%s\" with a spin lock held (thread "
		    "\"%s\", tid %d, spinlock count %d) @ %s:%d", call, what,
		    td->td_name, td->td_tid, td->td_spinlock_count, file, line);
	if (td->td_critnest != 0)
		panic("%s: sleeping on \"%s\" in a critical section (thread "
		    "\"%s\", tid %d, critnest %d) @ %s:%d", call, what,
		    td->td_name, td->td_tid, td->td_critnest, file, line);
	panic("%s: sleeping on \"%s\" with sleeping prohibited (thread \"%s\", "
	    "tid %d) @ %s:%d", call, what, td->td_name, td->td_tid, file, line);
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

// Private to sync/ (rwlock.cc; the sleep checks read td_nonsleepable_locks):
// per-thread counts of the non-sleepable locks a thread holds that its lock
// words cannot tell (rwlock read holds are anonymous).
//
// FreeBSD keeps td_rw_rlocks in struct thread; usmp keeps it, with the write
// holds, in td_sync (runtime/thread.h), which runtime/ reserves for sync/.
// Invariant: only the thread itself changes or reads its counts (k), so the
// uncontended rwlock paths pay one plain add, no lock and no atomic.  An
// interrupt filter never takes an rwlock (it runs in a critical section,
// which the rwlock paths refuse), so nothing else updates them under us.
#pragma once

#include "runtime/thread.h"

namespace usmp {

// Add drl to td's count of rwlock read holds and dwl to its rwlock write
// holds.  Context: td is curthread; any context.
inline void
tdstate_adjust(thread *td, int drl, int dwl) noexcept
{
	td->td_sync.ts_rlocks += drl;
	td->td_sync.ts_wlocks += dwl;
}

// td's count of rwlock read holds (td_rw_rlocks).  Context: td is curthread.
inline int
td_rw_rlocks(const thread *td) noexcept
{
	return td->td_sync.ts_rlocks;
}

// The number of non-sleepable sleep locks td holds that the sleep path must
// refuse: rwlocks, read or write.  (Sleep mutexes are not counted: their
// fast paths stay one CAS; a thread that sleeps holding a contested mutex
// is caught by propagate_priority's "Sleeping thread ... owns a
// non-sleepable lock" panic, as in FreeBSD without WITNESS.)  Spin locks
// show in td_spinlock_count.  Context: td is curthread.
inline int
td_nonsleepable_locks(const thread *td) noexcept
{
	return td->td_sync.ts_rlocks + td->td_sync.ts_wlocks;
}

} // namespace usmp

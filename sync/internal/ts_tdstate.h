// Private to sync/ (rwlock.cc; the sleep path reads td_nonsleepable_locks):
// per-thread counts of the non-sleepable locks a thread holds that its lock
// words cannot tell (rwlock read holds are anonymous).
//
// FreeBSD keeps td_rw_rlocks in struct thread.  usmp's struct thread has no
// field for it, so the counts live in a small hash table keyed by thread,
// an entry existing only while a count is non-zero.  Only the thread itself
// changes its entry (k); the table's bucket spin locks keep the chains
// intact.  The cost (one short spin-locked bucket each rlock and runlock)
// is paid only by rwlock users.
#pragma once

namespace usmp {

struct thread;

// Add drl to td's count of rwlock read holds and dwl to its rwlock write
// holds.  Context: td is curthread; any context.
void tdstate_adjust(thread *td, int drl, int dwl) noexcept;

// td's count of rwlock read holds (td_rw_rlocks).  Context: td is curthread.
int td_rw_rlocks(thread *td) noexcept;

// The number of non-sleepable sleep locks td holds that the sleep path must
// refuse: rwlocks, read or write.  (Sleep mutexes are not counted: their
// fast paths stay one CAS; a thread that sleeps holding a contested mutex
// is caught by propagate_priority's "Sleeping thread ... owns a
// non-sleepable lock" panic, as in FreeBSD without WITNESS.)  Spin locks
// show in td_spinlock_count.  Context: td is curthread.
int td_nonsleepable_locks(thread *td) noexcept;

} // namespace usmp

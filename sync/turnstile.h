// Turnstiles (turnstile(9), subr_turnstile.c): the wait queues of the locks
// whose holders never sleep (usmp::mutex, usmp::rwlock), with priority
// propagation.  The design prose is at the top of sync/turnstile.cc.
//
// This is the lock implementor's interface, as in FreeBSD; application code
// uses the locks.  The protocol, for a lock whose word says it is held:
//
//	ts = turnstile_trywait(lo);	// chain locked; re-read the lock word
//	if (the lock became free)	//   ...
//		turnstile_cancel(lo);	// chain unlocked, retry
//	else				// mark the word "waiters", then
//		turnstile_wait(ts, lo, owner, TS_EXCLUSIVE_QUEUE);
//
// and on release, with the chain locked (turnstile_chain_lock) and the word
// already released:
//
//	ts = turnstile_lookup(lo);
//	turnstile_broadcast(ts, queue);	// move the queue to pending
//	turnstile_unpend(ts);		// give back priority, wake them
//	turnstile_chain_unlock(lo);
#pragma once

#include <cstddef>
#include <cstdint>

namespace usmp {

struct lock_object;
struct thread;
struct turnstile;

enum : int {
	TS_EXCLUSIVE_QUEUE = 0,
	TS_SHARED_QUEUE = 1,
};

// Lock the hash chain of lo (enters a spinlock section).  Context: any but a
// filter; no turnstile or thread lock held.
void turnstile_chain_lock(const lock_object *lo) noexcept;
void turnstile_chain_unlock(const lock_object *lo) noexcept;

// The turnstile of lo, or null.  Requires lo's chain lock; the turnstile
// returned is locked (turnstile_broadcast/unpend/claim/disown unlock it).
turnstile *turnstile_lookup(const lock_object *lo) noexcept;

// Prepare to block on lo: reserve a turnstile (may allocate, outside any
// spin lock: the block path itself never does), lock lo's chain and return
// lo's turnstile, locked, or null if lo has none yet.  Context: may block
// (not in a critical section).
turnstile *turnstile_trywait(const lock_object *lo) noexcept;

// Give up after turnstile_trywait: unlock ts (if any) and the chain.
void turnstile_cancel(turnstile *ts, const lock_object *lo) noexcept;

// Block curthread on lo (ts from turnstile_trywait, maybe null), owned by
// owner (null: read-locked, nobody to lend to), in queue q.  Lends
// curthread's priority along the chain of owners.  Requires the chain lock
// and ts locked; returns, woken, with neither held.  A foreign OS thread
// sleeps on a futex instead.  Context: may block.
void turnstile_wait(turnstile *ts, const lock_object *lo, thread *owner,
    int q) noexcept;

// Move every waiter of queue q to the pending list.  Requires the chain
// lock and ts locked.
void turnstile_broadcast(turnstile *ts, int q) noexcept;

// Give back the priority curthread borrowed through ts (recomputed from the
// best waiter of the turnstiles it still owns), make the pending waiters
// runnable, and free ts if it has no waiters left.  Requires the chain lock
// and ts locked; returns with ts unlocked, the chain still locked.
void turnstile_unpend(turnstile *ts) noexcept;

// curthread becomes the owner of ts (a writer that took the lock with
// waiters queued: rw_wlock, rw_try_upgrade) and borrows its best waiter's
// priority.  Requires the chain lock and ts locked; returns with ts
// unlocked and the chain unlocked.
void turnstile_claim(turnstile *ts, const lock_object *lo) noexcept;

// curthread gives up ownership of ts without waking anyone (rw_downgrade
// with writers waiting) and its borrowed priority.  Requires the chain lock
// and ts locked; returns with ts unlocked, the chain still locked.
void turnstile_disown(turnstile *ts) noexcept;

// True if queue q of ts has no waiters.  Requires ts locked.
bool turnstile_empty(const turnstile *ts, int q) noexcept;

// turnstile_adjust(): td, blocked on a turnstile (TDI_LOCK), has just had
// its priority changed from oldpri by sched_prio().  Re-sort it in its
// queue and, if it got better, lend the new priority along the chain of
// owners.  Called by the scheduler through its hook (installed by sync/);
// requires td's thread lock, which is its turnstile's ts_lock, and keeps it.
void turnstile_adjust(thread *td, int oldpri) noexcept;

// For the thread dump (runtime/dump.h): if td is blocked on a turnstile,
// write the lock's class and name to buf ("sleep mutex \"so_rcv\"") and
// return true, with *owner the lock's owner (null for a read-locked rwlock).
// Racy, without the turnstile's lock, as ddb reads: turnstiles are never
// freed while a machine runs, so the reads are safe, but the result may be
// stale and *owner must be compared against known threads, never
// dereferenced.  Context: any.
bool turnstile_describe_blocked(const thread *td, char *buf, std::size_t len,
    const thread **owner) noexcept;

// Test hook: switch priority propagation off (true by default), to show a
// priority inversion happening.  Context: any.
void turnstile_set_propagation(bool on) noexcept;

} // namespace usmp

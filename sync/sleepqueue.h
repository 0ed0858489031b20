// Sleep queues (sleepqueue(9)): the wait queues under sleep(9), condvar(9),
// sx(9) and sema(9).
//
// A sleep queue holds the threads waiting on one wait channel (any address)
// in two FIFO sub-queues; it has no owner and lends no priority (turnstiles
// do that).  The design, the locking protocol and the proof that no wakeup
// is lost are at the top of sync/sleepqueue.cc.
//
// Usage (the order is the protocol; see sync/sleep.cc for a full caller):
//
//     sleepq_lock(wchan);                       // chain spin lock
//     ... release the caller's interlock ...
//     sleepq_add(wchan, lock, "wmesg", SLEEPQ_SLEEP, 0);
//     sleepq_set_timeout(wchan, 10ms);          // optional
//     error = sleepq_timedwait(wchan, 0);       // returns unlocked
//
//     sleepq_lock(wchan);                       // the waker
//     sleepq_broadcast(wchan, SLEEPQ_SLEEP, 0, 0);
//     sleepq_release(wchan);
#pragma once

#include <chrono>

#include "sync/lock.h"

namespace usmp {

struct thread;

// Flags of sleepq_add/signal/broadcast: a type (must match between the
// sleepers and the wakers of one channel) and options.
enum : int {
	SLEEPQ_SLEEP = 0x00,   // sleep(9)
	SLEEPQ_CONDVAR = 0x01, // condvar(9)
	SLEEPQ_PAUSE = 0x02,   // pause(9)
	SLEEPQ_SX = 0x03,      // sx(9)
	SLEEPQ_LK = 0x04,      // lockmgr (unused)
	SLEEPQ_TYPE = 0x0ff,
	SLEEPQ_INTERRUPTIBLE = 0x100, // thread_interrupt() aborts the sleep
	SLEEPQ_UNFAIR = 0x200,        // signal: most recent sleeper (LIFO)
	SLEEPQ_DROP = 0x400,          // signal: release the chain lock inside
};

// Number of sub-queues of a sleep queue (sx: 0 exclusive, 1 shared).
inline constexpr int NR_SLEEPQS = 2;

// Lock the hash chain of wchan.  Enters a spinlock section.
// Context: any thread or OS thread.
void sleepq_lock(const void *wchan) noexcept;
// Unlock it.  Requires the chain lock.
void sleepq_release(const void *wchan) noexcept;

// Queue curthread on wchan's sub-queue `queue`.  `lock` is the interlock
// the caller released (recorded under USMP_INVARIANTS: every sleeper of a
// channel must use the same one).  Requires the chain lock; keeps it.
void sleepq_add(const void *wchan, lock_object *lock, const char *wmesg,
    int flags, int queue, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept;

// Arm a timeout for the sleep just added (timo > 0).  Requires the chain
// lock; keeps it.
void sleepq_set_timeout(const void *wchan, std::chrono::nanoseconds timo) noexcept;

// Sleep until woken.  Require the chain lock (taken by sleepq_lock, after
// sleepq_add); return with it released.  Results: 0 (woken), EWOULDBLOCK
// (the timeout of a timed wait), EINTR (an interruptible wait aborted by
// thread_interrupt(); it wins over a timeout).  `pri` is accepted for
// FreeBSD's signature; the scheduler does not boost sleepers here.
// Context: may sleep.  A foreign OS thread blocks on a futex.
void sleepq_wait(const void *wchan, int pri) noexcept;
int sleepq_wait_sig(const void *wchan, int pri) noexcept;
int sleepq_timedwait(const void *wchan, int pri) noexcept;
int sleepq_timedwait_sig(const void *wchan, int pri) noexcept;

// Wake the best sleeper of `queue` (highest priority, the longest sleeper
// among equals; the newest with SLEEPQ_UNFAIR).  Returns true if a thread
// was woken.  Requires the chain lock; keeps it unless SLEEPQ_DROP.
// Panics if the sleepers' type differs from flags & SLEEPQ_TYPE.
// Context: any, including the hardclock thread.
bool sleepq_signal(const void *wchan, int flags, int pri, int queue) noexcept;
// Wake every sleeper of `queue`.  Returns the number woken.  Requires the
// chain lock; keeps it.
int sleepq_broadcast(const void *wchan, int flags, int pri, int queue) noexcept;
// Wake td if it sleeps on wchan.  Takes and releases the chain lock.
void sleepq_remove(thread *td, const void *wchan) noexcept;

// Sleepers on wchan's sub-queue.  Requires the chain lock.
int sleepq_sleepcnt(const void *wchan, int queue) noexcept;
// The type of wchan's sleepers, or -1 when none.  Requires the chain lock.
int sleepq_type(const void *wchan) noexcept;

// Interrupts (the stand-in for signals, used for cancellation and
// shutdown).  thread_interrupt() sets td's pending flag: an interruptible
// sleep in progress ends with EINTR, and every later interruptible sleep
// returns EINTR at once, until td consumes the flag with
// thread_interrupt_clear().  td must be alive (as for pthread_kill).
// Context: any, including the hardclock thread and foreign OS threads.
void thread_interrupt(thread *td) noexcept;
// True if an interrupt of td is pending.  Context: any.
bool thread_interrupt_pending(const thread *td) noexcept;
// Consume curthread's pending interrupt; returns whether one was pending.
bool thread_interrupt_clear() noexcept;

} // namespace usmp

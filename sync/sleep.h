// sleep(9): msleep(), tsleep(), pause(), wakeup(), wakeup_one().
//
// A thread sleeps on a wait channel (any address) until another calls
// wakeup() on the same address, a timeout passes, or (PCATCH) the thread is
// interrupted (thread_interrupt(), sync/sleepqueue.h).  msleep() releases
// its interlock and goes to sleep atomically with respect to wakeup(): a
// wakeup by a thread that took the interlock after the sleeper released it
// is never missed.  The interlock is any lock with a lock_class that is not
// a spin lock (usmp::mutex, usmp::sx, ...); it is re-acquired, in the same
// mode, before msleep() returns, unless PDROP.
//
// Results: 0 woken; EWOULDBLOCK the timeout passed; EINTR interrupted (a
// PCATCH sleep).  As in the kernel, a wakeup does not mean the condition
// holds: test it again in a loop.
#pragma once

#include <chrono>
#include <concepts>

#include "sync/lock.h"
#include "sync/sleepqueue.h"

namespace usmp {

// Flags in msleep()'s `pri` argument (sys/param.h).
enum : int {
	PRIMASK = 0x0ff, // priority on wakeup (accepted, not used here)
	PCATCH = 0x100,  // interruptible: thread_interrupt() ends it with EINTR
	PDROP = 0x200,   // do not re-acquire the interlock
	PNOLOCK = 0x400, // no interlock (documentation only)
};

// Sleep on chan, releasing interlock `lock` (may be null) while asleep.
// timo 0: no timeout.  Panics when called in a critical section, with a
// spin lock held, by a thread that may not sleep, or with a null chan.
// Giant is fully released across the sleep (every recursion level) and
// taken back, to the same depth, before the interlock; Giant itself may be
// the interlock (it then comes back even with PDROP).  Context: may sleep;
// a foreign OS thread blocks.
int msleep(const void *chan, lock_object *lock, int pri, const char *wmesg,
    std::chrono::nanoseconds timo = std::chrono::nanoseconds::zero(),
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;

// msleep() with any usmp lock that has lo() (usmp::mutex, usmp::sx).
template <class L>
    requires requires(L &l) { { l.lo() } -> std::same_as<lock_object *>; }
inline int
msleep(const void *chan, L &lock, int pri, const char *wmesg,
    std::chrono::nanoseconds timo = std::chrono::nanoseconds::zero(),
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept
{
	return msleep(chan, lock.lo(), pri, wmesg, timo, file, line);
}

// msleep() without an interlock.
inline int
tsleep(const void *chan, int pri, const char *wmesg,
    std::chrono::nanoseconds timo = std::chrono::nanoseconds::zero(),
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept
{
	return msleep(chan, nullptr, pri, wmesg, timo, file, line);
}

// Sleep for `duration` (0: one tick, 1 ms) on a channel nobody can wake.
// Returns EWOULDBLOCK, as the kernel's pause_sbt().  From a foreign OS
// thread it sleeps the OS thread and returns EWOULDBLOCK.
// Context: may sleep.
int pause(const char *wmesg, std::chrono::nanoseconds duration,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;

// Wake every thread sleeping on chan.  Context: any but filters (takes a
// spin lock only: also the hardclock thread and foreign OS threads).
void wakeup(const void *chan) noexcept;
// Wake the best (highest priority, then longest sleeping) thread on chan.
void wakeup_one(const void *chan) noexcept;
// Wake the thread that slept on chan most recently (taskqueue pools).
void wakeup_any(const void *chan) noexcept;

} // namespace usmp

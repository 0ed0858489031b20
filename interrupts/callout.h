// Callouts (callout(9)): run a function once, at or after a time, on a CPU.
//
//     usmp::callout c;
//     callout_init_mtx(&c, sc->mtx, 0);       // the handler runs with sc->mtx held
//     sc->mtx.lock();
//     callout_reset(&c, 10ms, tick, sc);      // in 10 ms, on c's CPU
//     sc->mtx.unlock();
//     ...
//     callout_drain(&c);                      // before freeing c or sc->mtx
//
// Each CPU has a callout wheel, run by its softclock: a software interrupt
// ("clock (N)", SWI_CLOCK, bound to CPU N) that CPU N's event timer
// schedules when the wheel's next callout comes due.  The event timer is a
// timeout on the CPU's io_uring, armed for the wheel's next event, so an
// idle CPU sleeps in its ring until then (no tick wakes it) and a callout
// runs when its time (plus its precision) comes, not at the next tick;
// without rings (USMP_IDLE_BACKEND=futex) the hardclock's tick looks at the
// wheels.  A handler runs on its callout's CPU, in that softclock's
// ithread: at interrupt priority, with sleeping forbidden (it may take
// sleep mutexes), with the callout's lock held if it has one (Giant for
// callout_init(c, false)); a C_DIRECT_EXEC one in the CPU's clock
// interrupt itself, as a filter.  A callout never runs early.
//
// Results, as callout(9):
//   callout_reset*: 1 if a pending call was cancelled (or a call waiting for
//     the callout's lock, which the caller holds), else 0.
//   callout_stop / callout_drain: 1 if a pending call was stopped (or a
//     call waiting for the lock the caller holds was cancelled); 0 if the
//     handler is running and could not be stopped (callout_stop: a
//     pending re-run is unscheduled too; callout_drain waited for the
//     handler to finish, and says 1 if it unscheduled a re-run); -1 if
//     it was neither pending nor running.  A run that an earlier stop or
//     reset under the lock cancelled, or whose handler has returned (seen
//     with the callout's lock held), is not "running": so, with the lock
//     held, the results count exactly the calls that were scheduled.
// callout_stop and callout_reset clear/set "active"; the handler's own
// pending/active/deactivate idiom works as callout(9)'s "Avoiding Race
// Conditions" describes.
//
// The lock protocol, the wheel and the races are described at the top of
// interrupts/callout.cc.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "runtime/thread.h"
#include "sync/lock.h"

namespace usmp {

using callout_func_t = void (*)(void *arg);

// The callout constants (sys/callout.h), one enum so that flags of the
// different kinds combine without enum-enum conversions:
// callout_init_mtx() flags, callout_reset_sbt() flags, and the callout
// flags (c_flags / c_iflags, readable through callout_pending() and
// callout_active()).
enum : int {
	CALLOUT_ACTIVE = 0x0002,    // (c_flags) set by reset, cleared by stop
	CALLOUT_PENDING = 0x0004,   // (c_iflags) scheduled, not yet started
	CALLOUT_MPSAFE = 0x0008,    // no lock
	CALLOUT_RETURNUNLOCKED = 0x0010, // the handler releases the lock itself
	CALLOUT_SHAREDLOCK = 0x0020,     // an rwlock is taken shared
	CALLOUT_PROCESSED = 0x0040, // (c_iflags) on the softclock's expired list
	CALLOUT_DFRMIGRATION = 0x0080, // (c_iflags) moves CPU when its run ends
	CALLOUT_DIRECT = 0x0100,    // (c_iflags) reset with C_DIRECT_EXEC
	C_DIRECT_EXEC = 0x0001,          // run the handler in the clock interrupt
	C_HARDCLOCK = 0x0100,            // align to the ticks (1 ms), >= 1 tick
	C_ABSOLUTE = 0x0200,             // the time is a clock_ns() value
	C_EXACT = 0x10000,               // usmp: no default deviation (below)
};
// Relative precision: the callout may run up to (delay >> x) late, so that
// the event timer can serve several callouts with one interrupt.  Without
// C_PREL (and without C_EXACT) a relative callout_reset_sbt*() may be a
// sixteenth of its delay late (CALLOUT_PRECEXP; the kernel's default,
// kern.timecounter.alloweddeviation, is 5%).  The precision argument is a
// floor: the larger of the two applies.
constexpr int C_PRELBITS = 7;
constexpr int C_PRELRANGE = (1 << C_PRELBITS) - 1;
constexpr int
C_PREL(int x) noexcept
{
	return (x + 1) << 1;
}
constexpr int
C_PRELGET(int flags) noexcept
{
	return ((flags >> 1) & C_PRELRANGE) - 1;
}
constexpr int CALLOUT_PRECEXP = 4;

// The callout.  Locking key: (w) the wheel lock of the callout's CPU
// (c_cpu; interrupts/callout.cc); (l) its lock (c_lock) or the wheel lock;
// (a) atomic, relaxed (read racily by callout_pending/active, as in the
// kernel).
struct callout {
	callout *c_next = nullptr;          // (w) bucket / expired list links
	callout *c_prev = nullptr;          // (w)
	uint64_t c_time = 0;                // (w) when it is due, clock_ns()
	uint64_t c_precision = 0;           // (w) how late it may run, ns
	callout_func_t c_func = nullptr;    // (w)
	void *c_arg = nullptr;              // (w)
	lock_object *c_lock = nullptr;      // (c) after init
	std::atomic<int> c_flags{0};        // (a) CALLOUT_ACTIVE; (l) writes
	std::atomic<int> c_iflags{0};       // (a) PENDING, PROCESSED, ...; (w) writes
	std::atomic<int> c_cpu{0};          // (a) its CPU; CPUBLOCK while moving
	int c_bucket = -1;                  // (w) wheel slot, or -1
	int c_initflags = 0;                // (c) RETURNUNLOCKED, SHAREDLOCK, MPSAFE
	uint32_t c_magic = 0;               // (c) initialised
};

// Initialise c: mpsafe false runs the handler with Giant held.  The callout
// starts on CPU 0.  Context: any.
void callout_init(callout *c, bool mpsafe) noexcept;
// Initialise c with `lock` (a sleep mutex, an rwlock, or a spin mutex,
// which a C_DIRECT_EXEC callout needs; sleepable locks (sx) panic
// "callout_init_lock: invalid lock class"): the handler runs with it held;
// callout_reset/stop must be called with it held, and then a call waiting
// for the lock is cancelled atomically.  flags: CALLOUT_RETURNUNLOCKED,
// CALLOUT_SHAREDLOCK.  Context: any.
void callout_init_lock(callout *c, lock_object *lock, int flags) noexcept;
template <class L>
    requires requires(L &l) { { l.lo() } -> std::same_as<lock_object *>; }
inline void
callout_init_mtx(callout *c, L &lock, int flags) noexcept
{
	callout_init_lock(c, lock.lo(), flags);
}
template <class L>
    requires requires(L &l) { { l.lo() } -> std::same_as<lock_object *>; }
inline void
callout_init_rw(callout *c, L &lock, int flags) noexcept
{
	callout_init_lock(c, lock.lo(), flags);
}

// Schedule c: fn(arg) at `when` (relative, or a clock_ns() time with
// C_ABSOLUTE) on `cpu` (NOCPU: the callout's current CPU), at the latest
// `precision` later (see C_PREL and C_HARDCLOCK above; C_ABSOLUTE takes
// `precision` as it is).  With C_DIRECT_EXEC the handler runs in the clock
// interrupt of the CPU itself (the event timer's completion, primary
// interrupt context: a spinlock section, TDP_INFILTER, WITNESS's filter
// context), not in the softclock's ithread: it may take spin mutexes, wake
// threads and fire events, never a sleep lock or a sleep (both panic, as in
// a filter); the callout must have no lock or a spin mutex (a sleep lock,
// Giant included, panics "callout_reset: C_DIRECT_EXEC callout ... may only
// have a spin mutex").  A callout_async_drain() function of a direct
// callout runs there too.  Returns 1 if a pending call was cancelled, else
// 0.  Context: any but a signal handler; with the callout's lock held if
// it has one (panics otherwise).
int callout_reset_sbt_on(callout *c, std::chrono::nanoseconds when,
    std::chrono::nanoseconds precision, callout_func_t fn, void *arg, int cpu,
    int flags, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept;

inline int
callout_reset_sbt(callout *c, std::chrono::nanoseconds when,
    std::chrono::nanoseconds precision, callout_func_t fn, void *arg,
    int flags, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept
{
	return callout_reset_sbt_on(c, when, precision, fn, arg, NOCPU, flags,
	    file, line);
}
inline int
callout_reset_on(callout *c, std::chrono::nanoseconds d, callout_func_t fn,
    void *arg, int cpu, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept
{
	return callout_reset_sbt_on(c, d, std::chrono::nanoseconds::zero(), fn,
	    arg, cpu, C_EXACT, file, line);
}
inline int
callout_reset(callout *c, std::chrono::nanoseconds d, callout_func_t fn,
    void *arg, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept
{
	return callout_reset_on(c, d, fn, arg, NOCPU, file, line);
}
// On the caller's CPU.  Context: a green thread.
int callout_reset_curcpu(callout *c, std::chrono::nanoseconds d,
    callout_func_t fn, void *arg, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept;
// Again, with the function and argument of the last reset.
inline int
callout_schedule(callout *c, std::chrono::nanoseconds d,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept
{
	return callout_reset_on(c, d, c->c_func, c->c_arg, NOCPU, file, line);
}
inline int
callout_schedule_on(callout *c, std::chrono::nanoseconds d, int cpu,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept
{
	return callout_reset_on(c, d, c->c_func, c->c_arg, cpu, file, line);
}

// The duration-based calls above (callout_reset, _on, callout_schedule,
// _on, and callout_reset_curcpu) take a duration, not ticks: they run the
// handler as soon as `d` has passed (C_EXACT: no deviation, no tick
// alignment), where the kernel's tick-based ones pass C_HARDCLOCK.

// The time and precision callout_reset_sbt_on() would give a callout
// (callout_when(9)): *timep on the clock_ns() clock, *precp in ns.
// Context: any.
void callout_when(std::chrono::nanoseconds when,
    std::chrono::nanoseconds precision, int flags, uint64_t *timep,
    uint64_t *precp) noexcept;

// Stop c (results above).  Context: any but a signal handler; with the
// callout's lock held if it has one, for the lock-cancel guarantee.
int callout_stop(callout *c, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept;
// Stop c and wait for a running handler to finish.  Context: may sleep;
// not holding the callout's lock (or any lock the handler takes).
int callout_drain(callout *c, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept;

// Stop c without waiting: as callout_stop, and if the result is 0 (the
// handler is running and could not be stopped), drain(arg) is called, with
// the argument of c's last reset, once the handler has returned (in the
// softclock's ithread, with no lock held): after that call, c and its
// handler's data may be freed.  For any other result drain is not called.
// Context: as callout_stop (never sleeps).
int callout_async_drain(callout *c, callout_func_t drain,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;

// Context: any.
inline bool
callout_pending(const callout *c) noexcept
{
	return (c->c_iflags.load(std::memory_order_relaxed) & CALLOUT_PENDING) != 0;
}
inline bool
callout_active(const callout *c) noexcept
{
	return (c->c_flags.load(std::memory_order_relaxed) & CALLOUT_ACTIVE) != 0;
}
inline void
callout_deactivate(callout *c) noexcept
{
	c->c_flags.fetch_and(~CALLOUT_ACTIVE, std::memory_order_relaxed);
}

// USMP_INVARIANTS: a handler that runs longer than this is reported
// ("Expensive callout(9) function"), the kernel's DIAGNOSTIC check; the
// default is 2 ms; 0 turns it off.  Context: any.
void callout_set_slow_threshold(std::chrono::nanoseconds t) noexcept;
// How many handlers were reported as slow since the process started.
uint64_t callout_slow_count() noexcept;
// Callouts pending on a CPU (for tests and reports).  Context: any.
int callout_pending_count(int cpu) noexcept;

} // namespace usmp

// Lock profiling (LOCK_PROFILING(9), subr_lock.c): per lock type and
// acquisition site, how often a lock was taken, how often it was found held
// (contended), and the total and longest hold and wait times; for every
// lock class: sleep and spin mutexes, sx and rw locks, in both modes.
//
// Built with the option USMP_LOCK_PROFILING=ON (CMake); otherwise the hooks
// compile to nothing and lock_profile_stats() reports that it is off.  The
// records are per CPU (the OS thread's own table, touched only inside a
// critical section: no global lock on the acquisition path), merged by
// site when dumped.  Hold times are measured for exclusive holds (the lock
// object keeps the acquisition time, as only one thread holds it); shared
// acquisitions count acquisitions, contention and wait time (timing a
// shared hold needs a record per holder: FreeBSD keeps one per thread, and
// usmp has no such field yet), and a downgrade ends the exclusive hold.  As FreeBSD's
// man page warns, do not read hold times from a build that also runs
// WITNESS checks: switch WITNESS off at run time (USMP_WITNESS=off).
//
// Environment: USMP_LOCK_PROFILING_DUMP=<path> or "stderr" writes the
// table at exit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/config.h"
#include "sync/lock.h"

namespace usmp {

// One acquisition site, merged over the CPUs.  Times in nanoseconds.
struct lock_profile_record {
	const char *type;   // lock type (lo_type)
	const char *cls;    // lock class ("sleep mutex", ...)
	const char *file;
	int line;
	uint64_t count;      // acquisitions (recursions excluded)
	uint64_t contested;  // found held: had to spin, block or sleep
	uint64_t hold_total, hold_max;
	uint64_t wait_total, wait_max;
};

// Start or stop collecting (default: collecting when built in).  Enabling
// does not reset.  Context: any thread.
void lock_profile_enable(bool on) noexcept;
// Forget every record.  Context: not with a spin lock held; records being
// updated concurrently may survive.
void lock_profile_reset() noexcept;
// The records, merged by site, sorted by total hold time (largest first).
std::vector<lock_profile_record> lock_profile_records();
// The table, in FreeBSD's debug.lock.prof.stats format (times in us):
//   max wait_max total wait_total count avg wait_avg cnt_hold cnt_lock name
std::string lock_profile_stats();

// ---- Hooks of the lock primitives (sync/ only).  All compile out without
// USMP_LOCK_PROFILING.

// Now, for wait times.
uint64_t lock_profile_now() noexcept;
// A successful acquisition of lo at file:line; contested if the lock was
// found held, waited (ns) the time from the first failed look.
void lock_profile_obtain(lock_object *lo, bool exclusive, bool contested,
    uint64_t waited, const char *file, int line) noexcept;
// The final release (not a recursion) of an exclusive hold.
void lock_profile_release(lock_object *lo) noexcept;

// The helpers the primitives call (each compiles to nothing without
// USMP_LOCK_PROFILING).  The pattern, for every lock class and mode:
//   uint64_t t0 = lock_profile_wait_start(<first look found it held by
//       another thread>);
//   ... acquire (spin, block or sleep) ...
//   lock_profile_acquired(lo, exclusive, t0, file, line); // not on recursion
// and lock_profile_released(lo) before the final release of an exclusive
// hold.  t0 is 0 when uncontested (CLOCK_MONOTONIC is never 0).
inline uint64_t
lock_profile_wait_start(bool contested) noexcept
{
	if constexpr (!config::lock_profiling)
		return 0;
	else
		return contested ? lock_profile_now() : 0;
}

inline void
lock_profile_acquired(lock_object *lo, bool exclusive, uint64_t t0,
    const char *file, int line) noexcept
{
	if constexpr (config::lock_profiling)
		lock_profile_obtain(lo, exclusive, t0 != 0,
		    t0 != 0 ? lock_profile_now() - t0 : 0, file, line);
}

inline void
lock_profile_released(lock_object *lo) noexcept
{
	if constexpr (config::lock_profiling)
		lock_profile_release(lo);
}

} // namespace usmp

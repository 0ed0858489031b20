// Lock profiling (LOCK_PROFILING(9), subr_lock.c): per lock type and
// acquisition site, how often a lock was taken, how often it was found held
// (contended), and the total and longest hold and wait times; for every
// lock class: sleep and spin mutexes, sx and rw locks, in both modes.
//
// Built with the option USMP_LOCK_PROFILING=ON (CMake); otherwise the hooks
// compile to nothing and lock_profile_stats() reports that it is off.  The
// records are per CPU (the OS thread's own table, touched only inside a
// critical section: no global lock on the acquisition path), merged by
// site when dumped.  Hold times are measured for every hold: an exclusive
// hold's start is kept in the lock object (it has one holder), a shared
// hold's in its holder's thread (td_sync.ts_lprof, as FreeBSD's td_lprof;
// up to 8 shared holds at once per thread are timed, more go untimed).  An
// upgrade or a downgrade continues the hold: its time goes to the site of
// the acquisition that began it.  As FreeBSD's man page warns, do not read hold times from a build that also runs
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
// The release of one shared hold of lo by curthread.
void lock_profile_release_shared(lock_object *lo) noexcept;
// curthread's shared hold of lo became exclusive (a successful try_upgrade),
// or its exclusive hold became shared (downgrade); the hold goes on.
void lock_profile_upgrade(lock_object *lo) noexcept;
void lock_profile_downgrade(lock_object *lo) noexcept;

// The helpers the primitives call (each compiles to nothing without
// USMP_LOCK_PROFILING).  The pattern, for every lock class and mode:
//   uint64_t t0 = lock_profile_wait_start(<first look found it held by
//       another thread>);
//   ... acquire (spin, block or sleep) ...
//   lock_profile_acquired(lo, exclusive, t0, file, line); // not on recursion
// and lock_profile_released(lo, exclusive) at the final release of an
// exclusive hold or at the release of a shared one; lock_profile_upgraded()
// and lock_profile_downgraded() after a mode change.  t0 is 0 when
// uncontested (CLOCK_MONOTONIC is never 0).
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
lock_profile_released(lock_object *lo, bool exclusive = true) noexcept
{
	if constexpr (config::lock_profiling) {
		if (exclusive)
			lock_profile_release(lo);
		else
			lock_profile_release_shared(lo);
	}
}

inline void
lock_profile_upgraded(lock_object *lo) noexcept
{
	if constexpr (config::lock_profiling)
		lock_profile_upgrade(lo);
}

inline void
lock_profile_downgraded(lock_object *lo) noexcept
{
	if constexpr (config::lock_profiling)
		lock_profile_downgrade(lo);
}

} // namespace usmp

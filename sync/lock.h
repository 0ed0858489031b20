// The lock object shared by every lock (sys/lock.h, lock(9)).
//
// Every usmp lock (spin_mutex, mutex, sx, rwlock; later the WITNESS keys)
// begins with a lock_object: its name, its type name (the WITNESS key: locks
// of one type are ordered as one), its class, and its flags.  The class is a
// small table of functions that let generic code (msleep()'s interlock,
// condvar waits, WITNESS, "show locks") lock, unlock, assert and describe a
// lock of any kind, as FreeBSD's struct lock_class does.
//
// Life cycle.  A lock is initialised by its constructor and destroyed by its
// destructor or by an explicit destroy() (mtx_destroy); lo_flags records
// both, so that a second init over a live lock (placement new, or init()),
// and any use after destroy, panic with the lock's name and the call site
// instead of corrupting memory.
#pragma once

#include <cstdint>

#include "runtime/config.h"

namespace usmp {

struct lock_object;
struct thread;

// Per-lock options, FreeBSD's MTX_* / SX_* / RW_* init options (one set for
// every kind; each kind rejects what it cannot do).
enum lock_opts : unsigned {
	LOCK_RECURSE = 0x0004,   // may be acquired recursively (MTX_RECURSE)
	LOCK_NOWITNESS = 0x0008, // not checked by WITNESS
	LOCK_DUPOK = 0x0010,     // several locks of this type may be held at once
	LOCK_QUIET = 0x0020,     // do not log acquisitions (KTR)
	LOCK_NOPROFILE = 0x0040, // not counted by lock profiling
	LOCK_NEW = 0x0080,       // skip the double-init check (MTX_NEW)
	LOCK_UPGRADABLE = 0x0100, // sx: upgrade/downgrade allowed (always, here)
};

// lo_flags.
enum : unsigned {
	LO_RECURSABLE = 0x00000001,
	LO_DUPOK = 0x00000002,
	LO_WITNESS = 0x00000004,   // WITNESS checks it
	LO_QUIET = 0x00000008,
	LO_NOPROFILE = 0x00000010,
	LO_SLEEPABLE = 0x00000020, // holders may sleep (sx)
	LO_UPGRADABLE = 0x00000040,
	LO_INITIALIZED = 0x00010000, // set by init, cleared by destroy
	LO_DESTROYED = 0x00020000,   // set by destroy
	LO_MAGIC_MASK = 0xff000000,
	LO_MAGIC = 0x5a000000,       // lo_flags of a live lock carry it
};

// lock_class flags.
enum : unsigned {
	LC_SLEEPLOCK = 0x01,  // blocks its waiters (mutex, rw, sx)
	LC_SPINLOCK = 0x02,   // spins (spin_mutex)
	LC_SLEEPABLE = 0x04,  // holders may sleep
	LC_RECURSABLE = 0x08,
	LC_UPGRADABLE = 0x10,
};

// Assertion kinds for lc_assert (LA_* of lock(9)).
enum : int {
	LA_UNLOCKED = 0x00,
	LA_LOCKED = 0x01,   // held shared or exclusive
	LA_SLOCKED = 0x02,  // held shared
	LA_XLOCKED = 0x04,  // held exclusive
	LA_RECURSED = 0x08,
	LA_NOTRECURSED = 0x10,
};

struct lock_class {
	const char *lc_name; // "sleep mutex", "spin mutex", "sx", "rw"
	unsigned lc_flags;   // LC_*
	// Assert the state of lock (LA_*), naming file:line on failure.
	void (*lc_assert)(const lock_object *lock, int what, const char *file,
	    int line);
	// Release lock fully (all recursion) and return how to re-acquire it
	// (shared or exclusive, recursion depth): the interlock of msleep()
	// and condvar waits.
	uintptr_t (*lc_unlock)(lock_object *lock);
	// Re-acquire as lc_unlock said.
	void (*lc_lock)(lock_object *lock, uintptr_t how);
	// The owner thread, or null when unowned or shared (for "show lock",
	// deadlock reports).
	thread *(*lc_owner)(const lock_object *lock);
};

struct lock_object {
	const char *lo_name = nullptr;  // (c) the lock's name
	const char *lo_type = nullptr;  // (c) WITNESS key: type name, or the name
	unsigned lo_flags = 0;          // (c) LO_*, set at init
	const lock_class *lo_class = nullptr; // (c)
#if USMP_WITNESS
	// The lock type's node in WITNESS (struct witness, sync/witness.cc),
	// set at init; null if the lock is not witnessed or the table is
	// full.  Nothing else may be added without updating every lock's
	// layout comment.
	void *lo_witness = nullptr;           // (c)
#endif
#if USMP_LOCK_PROFILING
	// The current exclusive hold (sync/lock_profile.cc): when and where
	// it began, its wait; written by the holder only.
	uint64_t lo_prof_start = 0;           // (o) ns, 0: not recorded
	const char *lo_prof_file = nullptr;   // (o)
	int lo_prof_line = 0;                 // (o)
#endif
};

// Initialise lo for class cls, checking a double init (a live magic in
// lo_flags) unless LOCK_NEW.  Panics "<call>: lock \"<name>\" already
// initialized @ file:line".  Context: any.
void lock_init(lock_object *lo, const lock_class *cls, const char *name,
    const char *type, unsigned opts, const char *call, const char *file,
    int line) noexcept;

// Mark lo destroyed (any later operation panics through lock_check_live).
void lock_destroy(lock_object *lo) noexcept;

// Panic unless lo is initialised and not destroyed:
//   "<call> of destroyed <class> \"<name>\" @ file:line"
//   "<call> of uninitialized lock @ file:line"
// Inline fast check; the panic is out of line.
[[noreturn]] void lock_check_failed(const lock_object *lo, const char *call,
    const char *file, int line) noexcept;
inline void
lock_check_live(const lock_object *lo, const char *call, const char *file,
    int line) noexcept
{
	if (__builtin_expect((lo->lo_flags & (LO_MAGIC_MASK | LO_INITIALIZED |
				 LO_DESTROYED)) != (LO_MAGIC | LO_INITIALIZED),
		0))
		lock_check_failed(lo, call, file, line);
}

} // namespace usmp

// WITNESS (witness(4), subr_witness.c): lock-order checking and lock
// debugging for every usmp lock.  The design prose is at the top of
// sync/witness.cc.
//
// What it does, for a user.  Every lock has a type (the `type` argument of
// its constructor, or its name); WITNESS learns, per type, the order in
// which types are acquired ("A before B"), keeps the transitive closure of
// that order, and reports the first acquisition that contradicts it (a lock
// order reversal: a deadlock waiting to happen, even if this run never
// deadlocked), with both locks' name, type and site and the stacks where the
// order was established and where it was attempted.  It also reports the
// misuse witness(4) reports: a blocking lock in a critical section or with a
// spin lock held, shared/exclusive mismatches, same-type duplicates without
// LOCK_DUPOK, recursion on a non-recursive lock (also through try_lock),
// unlock of a lock not held or in the wrong mode, a thread exiting with
// locks held, sleeping with non-sleepable locks held, sleep locks in an
// interrupt filter, sleeping in an ithread or a callout, interlock errors,
// upgrade/downgrade misuse; and, beyond witness(4), real deadlocks (a cycle
// of threads blocked on each other's locks) and order reversals against a
// graph saved by another process.
//
// Configuration (all optional):
//   USMP_WITNESS=off|warn|count|abort   the mode (default warn); see
//                                       witness_set_mode()
//   USMP_WITNESS_JSON=<path>            also append each report as one JSON
//                                       line to <path>
//   USMP_WITNESS_GRAPH=<path>           load the order graph saved in <path>
//                                       at start (if it exists) and save the
//                                       graph learned (old and new) there at
//                                       exit
//   USMP_WITNESS_TRACE=0                no stacks in reports
//
// The build option USMP_WITNESS=OFF compiles all of it out: the hooks below
// become empty inline functions, lock_object and thread lose their fields.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/config.h"
#include "sync/lock.h"

namespace usmp {

struct thread;

// Flags of the lock hooks (LOP_* of sys/lock.h).
enum : unsigned {
	LOP_EXCLUSIVE = 0x01, // exclusive acquisition / release
	LOP_TRYLOCK = 0x02,   // a try-lock: never blocks, makes no order
	LOP_DUPOK = 0x04,     // a duplicate of the same type is fine here
	LOP_RECURSE = 0x08,   // this acquisition may recurse (MTX_RECURSE)
	LOP_NOSLEEP = 0x10,   // a sleepable lock taken as non-sleepable
	// witness_upgrade/downgrade: check for misuse, change nothing (the
	// primitive calls it before trying, and again without it on success).
	WITNESS_LOP_CHECKONLY = 0x100,
};

// Flags of witness_warn().
enum : unsigned {
	WARN_GIANTOK = 0x01, // Giant may be held
	WARN_SLEEPOK = 0x02, // sleepable locks may be held
	WARN_PANIC = 0x04,   // panic whatever the mode
};

// The mode: what a report does.
enum class witness_mode : int {
	off = 0,   // no checking at all (the hooks return at once)
	warn = 1,  // print each report to the sinks and go on (default)
	count = 2, // check and count reports, print nothing
	abort = 3, // print the report, then panic
};

// What a report is about (witness_report::kind).
enum class witness_kind : int {
	reversal,          // lock order reversal
	duplicate,         // acquiring duplicate lock of same type
	critical,          // blockable sleep lock in a critical section / with spin lock
	filter,            // sleep lock in an interrupt filter
	recursion,         // recursed on non-recursive lock (also try_lock)
	mode_mismatch,     // share->excl, excl->share, excl->ushare, share->uexcl
	not_locked,        // unlock (or save, upgrade...) of a lock not held
	interlock,         // interlock not locked / recursed
	upgrade,           // upgrade/downgrade misuse
	thread_exit,       // thread exiting with locks held
	sleeping,          // sleeping with non-sleepable locks held
	nosleep_context,   // sleeping in an ithread or a callout
	deadlock,          // a real deadlock: a cycle of blocked threads
	assertion,         // witness_assert failed
	internal,          // witness itself (exhausted tables)
	count_             // number of kinds
};

// A report, as given to the callback sink.  All strings stay valid only
// during the call.
struct witness_report {
	witness_kind kind;
	const char *kind_name; // "lock order reversal", "duplicate lock", ...
	const char *text;      // the whole report as printed on stderr
	// The locks involved (first = held / established, second = the new
	// one); null when not applicable.
	const char *lock1_name, *lock1_type, *lock1_class, *lock1_file;
	int lock1_line;
	const char *lock2_name, *lock2_type, *lock2_class, *lock2_file;
	int lock2_line;
	int tid;               // the reporting thread
};

using witness_callback_fn = void (*)(const witness_report &r, void *arg);

// Where show/dump output goes: fn(arg, bytes, n).
struct witness_out {
	void (*fn)(void *arg, const char *s, std::size_t n);
	void *arg;
};
// Output to a file descriptor (2 = stderr), or appended to a std::string.
witness_out witness_out_fd(int fd) noexcept;
witness_out witness_out_string(std::string &s) noexcept;

// ---- Configuration.  Context: any thread; not with a spin lock held.

// Set the mode (overrides USMP_WITNESS).  Switch modes while the threads
// that use witnessed locks hold none: a lock taken while the mode was off
// is unknown to WITNESS, and its shared release is reported as "not
// locked".  Returns the previous mode.
witness_mode witness_set_mode(witness_mode m) noexcept;
witness_mode witness_get_mode() noexcept;
// Print reports on stderr (default true).
void witness_set_stderr(bool on) noexcept;
// Append reports as JSON lines to path (null: stop).  Returns 0 or errno.
int witness_set_json(const char *path) noexcept;
// Call fn for each report (null: stop).  It runs on the reporting thread,
// outside WITNESS's own lock; it may take locks (those are not checked).
void witness_set_callback(witness_callback_fn fn, void *arg) noexcept;
// Print stacks in reports (default true; USMP_WITNESS_TRACE=0).
void witness_set_trace(bool on) noexcept;
// Reports made so far, in total or of one kind (counted in every mode but
// off, including reports of already-reported pairs that were suppressed:
// those are not counted).
uint64_t witness_report_count() noexcept;
uint64_t witness_report_count(witness_kind k) noexcept;

// Declare that locks of type `first` come before locks of type `second`
// (witness_defineorder, and FreeBSD's static order lists).  Types need not
// have locks yet.  Returns 0, EDOOFUS-like EDEADLK if the reverse order is
// already known, EINVAL for a bad argument, ENOMEM if the tables are full
// (WITNESS_COUNT types, WITNESS_LO_DATA_COUNT orders: see the report).
int witness_defineorder(const char *first, const char *second,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;
// The same for a null-terminated list: list[0] < list[1] < ...
int witness_defineorder_list(const char *const *list,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;
// Bless the pair {a, b}: a reversal between them is recorded, not reported.
int witness_bless(const char *a, const char *b) noexcept;

// ---- Inspection.  Context: any thread; not with a spin lock held.

// "show locks": the locks td holds (sleep locks; and the spin locks of
// this CPU if td is curthread).  Returns the number of locks listed.
int witness_show_locks(const thread *td, witness_out out) noexcept;
// "show all locks": every thread known to WITNESS that holds locks.
int witness_show_all_locks(witness_out out) noexcept;
// "show badstacks": every reversal seen, with the stacks of both orders.
void witness_badstacks(witness_out out) noexcept;
// The order graph in Graphviz DOT (direct orders; reversed pairs in red).
void witness_dump_dot(witness_out out) noexcept;
// "fullgraph": one line per direct order, "parent","child".
void witness_fullgraph(witness_out out) noexcept;
// Save the learned graph to path / merge the graph in path into ours.
// Returns 0 or an errno.
int witness_save_graph(const char *path) noexcept;
int witness_load_graph(const char *path) noexcept;
// The number of locks curthread holds that WITNESS tracks.
int witness_held_count() noexcept;

// ---- Contexts set by interrupts/ (and tests).  Context: curthread.

// Entering / leaving a primary interrupt filter on this CPU: no sleep lock
// may be acquired in between ("acquiring sleep lock ... in an interrupt
// filter").  Nests.  Context: a critical or spinlock section, as a real
// filter runs in (the inline lock paths skip WITNESS's slow checks outside
// one, so the filter depth is only read there; see witness_fast.h).
void witness_filter_enter() noexcept;
void witness_filter_exit() noexcept;
// Entering / leaving code that may not sleep although it may take sleep
// mutexes: an ithread handler, a callout function.  `what` names it in the
// report ("ithread", "callout").  Nests.
void witness_nosleep_enter(const char *what) noexcept;
void witness_nosleep_exit() noexcept;

// ---- Hooks called by the lock primitives (sync/ only).

namespace witness_detail {
// > 0: checking (the mode is not off).  Read by the inline guard below.
extern std::atomic<int> w_watch;
} // namespace witness_detail

// True if WITNESS checks lo now: one relaxed load and a flag test.  The
// global first: with WITNESS off at run time (the fast paths' case) that
// is the one test made, and not taken, where the flag of an enrolled lock
// would be set and branch away to the second test on every lock.
inline bool
witness_watched(const lock_object *lo) noexcept
{
	if constexpr (!config::witness)
		return false;
	else
		return witness_detail::w_watch.load(std::memory_order_relaxed) > 0 &&
		    (lo->lo_flags & LO_WITNESS) != 0;
}

// Enroll lo (from lock_init) / forget it (lock_destroy).
void witness_init(lock_object *lo) noexcept;
void witness_destroy(lock_object *lo) noexcept;
// Before a blocking acquisition (and, with LOP_TRYLOCK, before a
// try-lock: only the recursion and context checks).  interlock: a lock
// held that is released by the acquisition (msleep's), or null.
void witness_checkorder(lock_object *lo, unsigned flags, const char *file,
    int line, const lock_object *interlock = nullptr) noexcept;
// After a successful acquisition.
void witness_lock(lock_object *lo, unsigned flags, const char *file,
    int line) noexcept;
// Before a release.
void witness_unlock(lock_object *lo, unsigned flags, const char *file,
    int line) noexcept;
// After a successful upgrade / before a downgrade (sx, rw).
void witness_upgrade(lock_object *lo, unsigned flags, const char *file,
    int line) noexcept;
void witness_downgrade(lock_object *lo, unsigned flags, const char *file,
    int line) noexcept;
// A try_lock that failed because curthread already holds lo and lo is not
// recursable: report the recursion FreeBSD's try-locks hide.
void witness_try_recursion(lock_object *lo, const char *file,
    int line) noexcept;
// Sleeping or blocking soon: report the non-sleepable locks held (all but
// `lock`, Giant with WARN_GIANTOK, sleepable ones with WARN_SLEEPOK), and
// sleeping in a no-sleep context.  Returns the number of offending locks.
int witness_warn(unsigned flags, const lock_object *lock, const char *fmt,
    ...) noexcept __attribute__((format(printf, 3, 4)));
// curthread is about to block on lo, held by owner (null if unknown or
// shared): record it and report a real deadlock if owner is, through the
// locks the threads block on, waiting for curthread.  witness_unblock()
// when woken.  Context: may be called with a turnstile/sleepq chain lock.
void witness_block(const lock_object *lo, thread *owner, const char *file,
    int line) noexcept;
void witness_unblock() noexcept;
// witness_assert (LA_*), for sx_assert/rw_assert under WITNESS.
void witness_assert(const lock_object *lo, int what, const char *file,
    int line) noexcept;
// The thread is exiting: report the locks it still holds, free its state.
void witness_thread_exit(thread *td) noexcept;
// WITNESS_SAVE / WITNESS_RESTORE: keep the acquisition site of an interlock
// across the release and re-acquisition a sleep makes (file is null if lo
// is not tracked).
void witness_save(const lock_object *lo, const char **file, int *line) noexcept;
void witness_restore(const lock_object *lo, const char *file, int line) noexcept;

} // namespace usmp

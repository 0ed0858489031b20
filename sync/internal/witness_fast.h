// Private to sync/ (witness.cc and the inline lock paths of mutex.h): the
// part of WITNESS's per-thread state and order matrix that the inline
// known-order fast path reads, and that path itself.  Everything else about
// WITNESS is in sync/witness.cc (design prose) and sync/witness.h (API).
//
// The fast path handles the steady state of a sleep mutex: an exclusive,
// blocking, non-recursable acquisition whose order against the locks held
// is already known, and the release of the lock most recently acquired.
// It reads the thread's held list (its own: no lock), the top entry's
// LI_CHAIN bit and one byte of the matrix; it takes no lock, allocates
// nothing, captures no stack.  Anything else returns false and the caller
// takes the out-of-line path (witness_checkorder/witness_lock/
// witness_unlock), which makes the same decision and every other check.
// Why the top entry is enough: known_order() in sync/witness.cc.
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/config.h"
#include "runtime/thread.h"
#include "sync/lock.h"
#include "sync/witness.h"

namespace usmp::witness_detail {

struct witness_held;

#if USMP_WITNESS

constexpr int WITNESS_COUNT = 1024; // lock types (matrix rows); the
				    // error when full names this constant
constexpr int WITNESS_HELD = 64;    // sleep locks held per thread

// Matrix bits (w_rmatrix[i][j] says what i is to j).
enum : uint8_t {
	WITNESS_PARENT = 0x01,     // i -> j directly
	WITNESS_ANCESTOR = 0x02,   // i -> ... -> j
	WITNESS_CHILD = 0x04,      // j -> i directly
	WITNESS_DESCENDANT = 0x08, // j -> ... -> i
	WITNESS_REVERSAL = 0x10,   // the pair's reversal was reported
	WITNESS_LOCK_ORDER_KNOWN = 0x80, // i -> j has an order record
	WITNESS_RELATED_MASK = WITNESS_PARENT | WITNESS_ANCESTOR,
};

// lock_instance li_flags.
enum : unsigned {
	LI_RECURSEMASK = 0x0000ffff,
	LI_EXCLUSIVE = 0x00010000,
	// The fast path's invariants (see known_order() in witness.cc).
	// LI_CHAIN: this entry and every one below it form a chain in the
	// order graph (each entry's type is an ancestor of, or for a DUPOK
	// run equal to, the next one's).  LI_NONSLEEP: this entry or one
	// below it is a non-sleepable lock other than Giant.  Both are set at
	// push from the entry below; removing an entry from the middle keeps
	// LI_CHAIN true (the relation is transitive) and may leave LI_NONSLEEP
	// set without need (conservative: the slow path runs).
	LI_CHAIN = 0x00020000,
	LI_NONSLEEP = 0x00040000,
};

// One held lock.
struct lock_instance {
	lock_object *li_lock;
	const char *li_file;
	int li_line;
	unsigned li_flags;
	int li_windex; // its type's matrix index (saves two dependent loads)
};

// The head of the per-thread state (td_witness; witness_td in witness.cc
// derives from it).  Locking key: (k) the thread only (others read racily,
// for display and the deadlock walk).
struct alignas(64) witness_held { // no false sharing between threads'
	lock_instance wt_locks[WITNESS_HELD]; // (k) sleep locks, oldest first
	int wt_count;     // (k) entries used
	int wt_untracked; // (k) acquisitions beyond WITNESS_HELD
	int wt_in_report; // (k) the sinks run: do not check
};

// The head of struct witness (a lock type's node): its matrix index.
struct witness_node {
	int w_index; // (c)
};

// The order matrix: bits are only ever set (protocol step 2 of witness.cc).
extern std::atomic<uint8_t> w_rmatrix[WITNESS_COUNT + 1][WITNESS_COUNT + 1];

// The held list of td if it may take the fast path for lo: lo is
// witnessed, of a known type and not recursable (Giant is); td is not
// making a report and has no untracked lock.  The caller checked that td
// is in no critical section (which also excludes interrupt filters: they
// run in a spinlock section).
inline witness_held *
fast_list(const lock_object *lo, thread *td) noexcept
{
	auto *wh = static_cast<witness_held *>(td->td_witness);
	if (wh == nullptr || lo->lo_witness == nullptr ||
	    (lo->lo_flags & LO_RECURSABLE) ||
	    (wh->wt_in_report | wh->wt_untracked) != 0)
		return nullptr;
	return wh;
}

// The exclusive blocking acquisition of lo (a non-sleepable sleep lock) by
// td, in no critical section, is on the known-order path: nothing held, or the top entry is a chain
// whose type is a known direct parent of lo's.  Returns the list to push
// on after the acquisition, or null (take the slow path).
inline witness_held *
fast_checkorder(const lock_object *lo, thread *td) noexcept
{
	witness_held *wh = fast_list(lo, td);
	if (wh == nullptr)
		return nullptr;
	int n = wh->wt_count;
	if (n == 0)
		return wh;
	if (n >= WITNESS_HELD)
		return nullptr;
	const lock_instance &top = wh->wt_locks[n - 1];
	if (!(top.li_flags & LI_CHAIN))
		return nullptr;
	int c = static_cast<const witness_node *>(lo->lo_witness)->w_index;
	uint8_t b = w_rmatrix[top.li_windex][c].load(std::memory_order_acquire);
	constexpr uint8_t known = WITNESS_PARENT | WITNESS_LOCK_ORDER_KNOWN;
	return (b & known) == known ? wh : nullptr;
}

// After the acquisition fast_checkorder() allowed: push lo (a chain entry,
// exclusive, non-sleepable).
inline void
fast_push(witness_held *wh, lock_object *lo, const char *file,
    int line) noexcept
{
	int n = wh->wt_count;
	wh->wt_locks[n] = {lo, file, line,
	    LI_EXCLUSIVE | LI_CHAIN | LI_NONSLEEP,
	    static_cast<const witness_node *>(lo->lo_witness)->w_index};
	// The entry is complete before the count shows it (show all locks
	// reads other threads' lists).
	std::atomic_signal_fence(std::memory_order_release);
	wh->wt_count = n + 1;
}

// The release of lo by td is on the fast path: lo is the top entry,
// exclusive and not recursed (td may be in a critical section: a release
// checks no order).  Returns the list to pop after the release.
inline witness_held *
fast_unlock_check(const lock_object *lo, thread *td) noexcept
{
	witness_held *wh = fast_list(lo, td);
	if (wh == nullptr)
		return nullptr;
	int n = wh->wt_count;
	if (n == 0)
		return nullptr;
	const lock_instance &top = wh->wt_locks[n - 1];
	return top.li_lock == lo &&
		(top.li_flags & (LI_EXCLUSIVE | LI_RECURSEMASK)) == LI_EXCLUSIVE ?
	    wh :
	    nullptr;
}

// Before the release fast_unlock_check() allowed (as WITNESS_UNLOCK comes
// before the release in FreeBSD): once released, lo may be another
// thread's, and no two held lists may show it at once.
inline void
fast_pop(witness_held *wh) noexcept
{
	wh->wt_count--;
}

#else // !USMP_WITNESS: no fields to read; the fast path never applies.

inline witness_held *fast_checkorder(const lock_object *, thread *) noexcept
{
	return nullptr;
}
inline void fast_push(witness_held *, lock_object *, const char *, int) noexcept {}
inline witness_held *fast_unlock_check(const lock_object *, thread *) noexcept
{
	return nullptr;
}
inline void fast_pop(witness_held *) noexcept {}

#endif // USMP_WITNESS

} // namespace usmp::witness_detail

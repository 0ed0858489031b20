// Private to sync/ (rwlock.h, sx.h and their .cc files): the lock word that
// rwlock(9) and sx(9) share, as FreeBSD's rw_lock and sx_lock do.  The two
// locks differ in everything else (sx sleeps on sleep queues and lends no
// priority; rw blocks on turnstiles and lends it to a write owner), so each
// header keeps its own names (RW_*, SX_*), invariants and transitions, as
// aliases of these:
//
//	63                              5  4    3       2         1        0
//	+--------------------------------+---------+---------+---------+------+
//	| shared mode: count of sharers  |  (zero) | XWAITER | SWAITER |SHARED|
//	+--------------------------------+---------+---------+---------+------+
//	| exclusive mode: owner struct thread *, 8-aligned | XWAITER | SWAITER | 0 |
//	+--------------------------------------------------+---------+---------+---+
//
// struct thread is only 8-aligned, so the owner leaves three low bits:
// FreeBSD's spinner and recursion bits have no room, and recursion is
// counted beside the word, by the owner only.
#pragma once

#include <cstdint>

namespace usmp {

struct thread;

enum : uintptr_t {
	SW_SHARED = 0x01,            // shared mode (or unlocked)
	SW_SHARED_WAITERS = 0x02,    // readers / sharers wait
	SW_EXCLUSIVE_WAITERS = 0x04, // writers / exclusive lockers wait
	SW_FLAGMASK = 0x07,
	SW_WAITERS = SW_SHARED_WAITERS | SW_EXCLUSIVE_WAITERS,
	SW_SHARERS_SHIFT = 5,
	SW_ONE_SHARER = uintptr_t{1} << SW_SHARERS_SHIFT,
	SW_UNLOCKED = SW_SHARED,            // shared with no sharers (0x1)
	SW_DESTROYED = SW_WAITERS,          // both waiter bits, not shared (0x6)
};

// The exclusive owner of word v, or null in shared mode.
inline thread *
sw_owner(uintptr_t v) noexcept
{
	return (v & SW_SHARED) ? nullptr :
	    reinterpret_cast<thread *>(v & ~uintptr_t{SW_FLAGMASK});
}

// The number of sharers of word v (0 in exclusive mode).
inline uintptr_t
sw_sharers(uintptr_t v) noexcept
{
	return (v & SW_SHARED) ? v >> SW_SHARERS_SHIFT : 0;
}

} // namespace usmp

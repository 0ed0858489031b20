// Private to sync/ (mutex.cc, rwlock.cc): the blocking half of a contested
// acquisition of a lock that waits on a turnstile, common to the sleep
// mutex (_mtx_lock_sleep), the rwlock writer (__rw_wlock_hard) and reader
// (__rw_rlock_hard).  Each lock keeps its own first half (recursion, the
// CAS of a free word, adaptive spinning) and says, through `look`, what a
// word read under the chain lock means for it.
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/thread.h"
#include "sync/lock.h"
#include "sync/turnstile.h"
#include "sync/witness.h"

namespace usmp {

// What a lock makes of its word, read under the turnstile chain lock.
enum ts_look : int {
	TSL_BLOCK,  // held by `owner_of(v)` (maybe null: readers): block
	TSL_RETRY,  // free for us, or destroyed: give the turnstile up, retry
	TSL_REREAD, // a CAS in `look` failed and re-read v: look again
	TSL_TAKEN,  // `look` took the lock and settled ts (claim or cancel)
};

// The protocol of sync/turnstile.h for one pass: turnstile_trywait(); then,
// as `look(v, ts)` says, give up (TSL_RETRY), or, unless the owner runs on
// a CPU and `may_spin` (the caller's adaptive spin budget is not spent;
// it cancels, to spin again), set `waiters` in the word by CAS (a failed
// CAS looks again, chain still locked) and block on `queue` under WITNESS's
// deadlock watch.  Returns TSL_BLOCK once woken (the caller retries from
// the top: no hand-off, newcomers may barge), TSL_RETRY or TSL_TAKEN; v is
// the word as last read.  Context: may block; not in a critical section.
template <class Look, class OwnerOf>
inline ts_look
turnstile_block(const lock_object *lo, std::atomic<uintptr_t> &word,
    uintptr_t &v, uintptr_t waiters, int queue, bool may_spin, Look look,
    OwnerOf owner_of, const char *file, int line) noexcept
{
	turnstile *ts = turnstile_trywait(lo);
	v = word.load(std::memory_order_relaxed);
	for (;;) {
		ts_look l = look(v, ts);
		if (l == TSL_REREAD)
			continue;
		if (l == TSL_TAKEN)
			return TSL_TAKEN;
		if (l == TSL_RETRY) {
			turnstile_cancel(ts, lo);
			return TSL_RETRY;
		}
		thread *owner = owner_of(v);
		if (owner != nullptr && may_spin &&
		    owner->td_state == TDS_RUNNING &&
		    !(owner->td_flags & TDF_FOREIGN)) {
			turnstile_cancel(ts, lo);
			v = word.load(std::memory_order_relaxed);
			return TSL_RETRY;
		}
		if (!(v & waiters) &&
		    !word.compare_exchange_strong(v, v | waiters,
			std::memory_order_relaxed, std::memory_order_relaxed))
			continue;
		witness_block(lo, owner, file, line);
		turnstile_wait(ts, lo, owner, queue);
		witness_unblock();
		v = word.load(std::memory_order_relaxed);
		return TSL_BLOCK;
	}
}

} // namespace usmp

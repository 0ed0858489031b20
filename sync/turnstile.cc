// Turnstiles and priority propagation (subr_turnstile.c).
//
// Vocabulary.  A *turnstile* is the wait queue of one contested lock that is
// held only for a bounded time (usmp::mutex, usmp::rwlock): two queues,
// exclusive and shared, each ordered by priority (FIFO among equals), the
// lock it serves (ts_lockobj) and the thread that holds that lock
// (ts_owner; null while an rwlock is read-locked, readers being anonymous).
// Turnstiles are found by a hash of the lock's address (128 chains, a spin
// lock each), so a lock word carries no queue and no pointer: one word is
// the whole lock.  *Propagation* lends a blocking thread's priority to the
// owner, and to the owner's owner if that one is blocked in turn, along the
// whole chain; *unpend* gives it back when the lock is released.
//
// The problem.  A low-priority thread holding a lock that a high-priority
// thread needs, preempted by medium-priority work, stalls the high-priority
// thread for as long as the medium work runs (Mars Pathfinder, 1997).  And a
// thread that blocks must publish itself as a waiter before it switches out,
// yet nobody may make it runnable before its context is saved.
//
// Approaches rejected.  A queue inside every lock: a mutex would grow from
// one word to five, for the rare contested case.  Priority ceilings: they
// need every lock's users known in advance.  Hand-off of the lock to the
// first waiter: a woken thread must first be scheduled, during which the
// lock is idle; FreeBSD wakes all waiters and lets them (and barging newcomers)
// race, with adaptive spinning absorbing the herd (MUTEX_WAKE_ALL).
//
// Where the turnstiles come from.  FreeBSD gives every thread one turnstile
// at creation and has the first blocker lend its own to the lock.  Here
// struct thread has no field of ours to hold one, and threads end without a
// hook, so turnstiles live in a pool with the same counting argument: a
// thread about to block *reserves* one (turnstile_trywait; the pool grows,
// by allocation, only there, before any spin lock is taken), and the pool
// keeps total >= reserved >= turnstiles in use, so the block path pops a
// turnstile without ever allocating.  The waiter record (ts_waiter: queue
// links, and the futex word of a foreign OS thread) lives on the blocking
// thread's stack, which outlives the wait.
//
// Which turnstiles a thread owns (FreeBSD's td_contested list) is kept in a
// second hash, keyed by owner, under the leaf spin lock td_contested_lock,
// which also protects the order of every queue.  A blocked thread's
// turnstile is in td_wchan (its wait channel: the thread is TDI_LOCK, not
// TDI_SLEEPING) and the lock's name in td_wmesg.
//
// Lock order: chain lock -> ts_lock -> thread locks (the owners' locks, down
// the chain; a run-queue lock) -> td_contested_lock.  ts_lock is the thread
// lock of every thread blocked on ts.
//
// The protocol.
//  1. turnstile_trywait reserves a turnstile, locks lo's chain and, if lo
//     has a turnstile, its ts_lock.  The caller re-reads the lock word under
//     the chain lock: the releasing side needs the chain lock to release a
//     word marked "contested", so the caller's CAS that sets the contested
//     bit (acq_rel) either fails or happens before that release.
//  2. turnstile_wait: a first waiter pops a turnstile, tags it with lo and
//     puts it on the chain; the waiter record goes into its queue by
//     priority (under td_contested_lock); the thread's lock moves from its
//     run-queue lock to ts_lock (thread_lock_set); it is marked INHIBITED
//     and TDI_LOCK; the chain is unlocked; its priority is propagated; then
//     mi_switch.  sched_switch releases ts_lock only once td_lock points at
//     blocked_lock, and stores ts_lock back (release) after the context is
//     saved (runtime/switch.cc): a waker that takes ts_lock and then
//     thread_lock_block_wait() (acquire) sees a saved context.
//  3. propagate_priority walks owner -> the turnstile it is blocked on ->
//     its owner, each time taking the owner's thread lock before dropping
//     the previous turnstile's lock; it stops at an owner that already has
//     the priority, that runs or is runnable (sched_lend_prio re-queues it),
//     or at a foreign owner; an owner that sleeps panics.
//  4. The releasing side, under the chain lock, stores the lock word
//     (release; pairs with the acquire CAS of the next owner), then
//     broadcasts and unpends: with its own thread lock, it recomputes the
//     priority it still borrows from the turnstiles it still owns
//     (sched_unlend_prio), then makes each pending green waiter runnable
//     (thread_lock_block_wait, sched_wakeup: ts_lock held, as the wait lock
//     sched_wakeup requires) and wakes each foreign one (store 1 release,
//     FUTEX_WAKE; the foreign waiter's acquire load pairs with it).  An
//     emptied turnstile leaves the chain and goes back to the pool.
#include "sync/turnstile.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <new>

#include "runtime/critical.h"
#include "runtime/internal/curthread.h"
#include "runtime/internal/seam.h"
#include "runtime/internal/sim.h"
#include "runtime/internal/spinlock.h"
#include "runtime/counters.h"
#include "runtime/ktr.h"
#include "runtime/panic.h"
#include "runtime/thread.h"
#include "sched/priority.h"
#include "sync/lock.h"

namespace usmp {

// A waiter, on the blocking thread's stack.  Locking key: (q) queue links
// under ts_lock and td_contested_lock; (c) constant; (a) atomic.
struct ts_waiter {
	ts_waiter *tw_next = nullptr;        // (q)
	ts_waiter *tw_prev = nullptr;        // (q)
	thread *tw_td = nullptr;             // (c)
	std::atomic<uint32_t> tw_woken{0};   // (a) foreign: 1 when woken (release)
	bool tw_foreign = false;             // (c)
};

// Locking key: (c) chain lock; (l) ts_lock; (o) td_contested_lock;
// (p) the pool lock while free.
struct turnstile {
	spinlock ts_lock;                    // thread lock of its waiters
	ts_waiter *ts_blocked[2] = {};       // (l,o) queues, best first
	ts_waiter *ts_pending = nullptr;     // (l) woken, not yet runnable
	turnstile *ts_hash = nullptr;        // (c) chain link; (p) free link
	turnstile *ts_olink = nullptr;       // (o) owner-hash link
	const lock_object *ts_lockobj = nullptr; // (c,l)
	thread *ts_owner = nullptr;          // (o,l)
};

namespace {

constexpr int TC_TABLESIZE = 128;
constexpr int TO_TABLESIZE = 128;

struct alignas(64) turnstile_chain {
	spinlock tc_lock;
	turnstile *tc_head = nullptr;
};

turnstile_chain tc_table[TC_TABLESIZE];

// Turnstiles by owner (td_contested), under td_contested_lock.
spinlock td_contested_lock;
turnstile *to_table[TO_TABLESIZE];

// The pool (see the prose).
spinlock ts_pool_lock;
turnstile *ts_pool_free = nullptr;   // (p)
long ts_pool_total = 0;              // (p)
long ts_pool_reserved = 0;           // (p)

std::atomic<bool> ts_propagate{true};

inline unsigned
hash_ptr(const void *p, unsigned size) noexcept
{
	uint64_t v = reinterpret_cast<uintptr_t>(p) * 0x9E3779B97F4A7C15ull;
	return static_cast<unsigned>(v >> 57) & (size - 1); // 7 bits: 128
}

inline turnstile_chain *
tc_lookup(const lock_object *lo) noexcept
{
	return &tc_table[hash_ptr(lo, TC_TABLESIZE)];
}

inline void
spin_lock(spinlock *l) noexcept
{
	spinlock_enter();
	l->lock();
}

inline void
spin_unlock(spinlock *l) noexcept
{
	l->unlock();
	spinlock_exit();
}

long
futex_op(std::atomic<uint32_t> *word, int op, uint32_t val) noexcept
{
	return syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), op, val,
	    nullptr, nullptr, 0);
}

inline int
waiter_pri(const ts_waiter *w) noexcept
{
	// Foreign OS threads queue behind every green thread and lend nothing.
	return w->tw_foreign ? PRI_MAX + 1 : w->tw_td->td_priority;
}

void
ts_reserve() noexcept
{
	spin_lock(&ts_pool_lock);
	if (ts_pool_reserved < ts_pool_total) {
		ts_pool_reserved++;
		spin_unlock(&ts_pool_lock);
		return;
	}
	spin_unlock(&ts_pool_lock);
	// Grow outside the spin lock, in a batch.
	constexpr int batch = 16;
	turnstile *head = nullptr;
	for (int i = 0; i < batch; i++) {
		turnstile *ts = new (std::nothrow) turnstile;
		if (ts == nullptr)
			panic("turnstile_trywait: out of memory for turnstiles");
		ts->ts_hash = head;
		head = ts;
	}
	spin_lock(&ts_pool_lock);
	for (int i = 0; i < batch; i++) {
		turnstile *ts = head;
		head = ts->ts_hash;
		ts->ts_hash = ts_pool_free;
		ts_pool_free = ts;
	}
	ts_pool_total += batch;
	ts_pool_reserved++;
	spin_unlock(&ts_pool_lock);
}

void
ts_unreserve() noexcept
{
	spin_lock(&ts_pool_lock);
	ts_pool_reserved--;
	spin_unlock(&ts_pool_lock);
}

// Pop a turnstile; the caller holds a reservation, so one is free.
turnstile *
ts_pool_get() noexcept
{
	spin_lock(&ts_pool_lock);
	turnstile *ts = ts_pool_free;
	if (ts == nullptr)
		panic("turnstile_wait: turnstile pool empty (reservation lost)");
	ts_pool_free = ts->ts_hash;
	spin_unlock(&ts_pool_lock);
	ts->ts_hash = nullptr;
	return ts;
}

void
ts_pool_put(turnstile *ts) noexcept
{
	ts->ts_lockobj = nullptr;
	ts->ts_owner = nullptr;
	spin_lock(&ts_pool_lock);
	ts->ts_hash = ts_pool_free;
	ts_pool_free = ts;
	spin_unlock(&ts_pool_lock);
}

// ---- Queues (ts_lock and td_contested_lock).

void
queue_insert(turnstile *ts, int q, ts_waiter *w) noexcept
{
	int pri = waiter_pri(w);
	ts_waiter **pp = &ts->ts_blocked[q];
	ts_waiter *prev = nullptr;
	while (*pp != nullptr && waiter_pri(*pp) <= pri) {
		prev = *pp;
		pp = &(*pp)->tw_next;
	}
	w->tw_next = *pp;
	w->tw_prev = prev;
	if (*pp != nullptr)
		(*pp)->tw_prev = w;
	*pp = w;
}

void
queue_remove(turnstile *ts, int q, ts_waiter *w) noexcept
{
	if (w->tw_prev != nullptr)
		w->tw_prev->tw_next = w->tw_next;
	else
		ts->ts_blocked[q] = w->tw_next;
	if (w->tw_next != nullptr)
		w->tw_next->tw_prev = w->tw_prev;
	w->tw_next = w->tw_prev = nullptr;
}

// Re-sort td in the turnstile it is blocked on, after its priority changed.
void
turnstile_adjust_thread(turnstile *ts, thread *td) noexcept
{
	for (int q = 0; q < 2; q++)
		for (ts_waiter *w = ts->ts_blocked[q]; w != nullptr; w = w->tw_next)
			if (w->tw_td == td) {
				queue_remove(ts, q, w);
				queue_insert(ts, q, w);
				return;
			}
}

// Best (numerically lowest) priority among the first green waiters of ts.
int
turnstile_first_pri(const turnstile *ts) noexcept
{
	int pri = PRI_MAX;
	for (int q = 0; q < 2; q++) {
		const ts_waiter *w = ts->ts_blocked[q];
		if (w != nullptr && !w->tw_foreign && w->tw_td->td_priority < pri)
			pri = w->tw_td->td_priority;
	}
	return pri;
}

// Owner hash (td_contested_lock).
void
owner_link(turnstile *ts, thread *owner) noexcept
{
	ts->ts_owner = owner;
	turnstile **head = &to_table[hash_ptr(owner, TO_TABLESIZE)];
	ts->ts_olink = *head;
	*head = ts;
}

void
owner_unlink(turnstile *ts) noexcept
{
	turnstile **pp = &to_table[hash_ptr(ts->ts_owner, TO_TABLESIZE)];
	while (*pp != ts)
		pp = &(*pp)->ts_olink;
	*pp = ts->ts_olink;
	ts->ts_olink = nullptr;
	ts->ts_owner = nullptr;
}

// The best priority lent to td by the turnstiles it owns.
int
owned_best_pri(thread *td) noexcept
{
	int pri = PRI_MAX;
	for (turnstile *ts = to_table[hash_ptr(td, TO_TABLESIZE)]; ts != nullptr;
	     ts = ts->ts_olink)
		if (ts->ts_owner == td) {
			int p = turnstile_first_pri(ts);
			if (p < pri)
				pri = p;
		}
	return pri;
}

// Lend td's priority along the chain of owners.  Requires td's thread lock
// (top->ts_lock), which it keeps; every intermediate lock is released.
void
propagate_priority(thread *td, turnstile *top) noexcept
{
	if (!ts_propagate.load(std::memory_order_relaxed))
		return;
	int pri = td->td_priority;
	turnstile *ts = top;
	for (;;) {
		thread *owner = ts->ts_owner;
		if (owner == nullptr || (owner->td_flags & TDF_FOREIGN)) {
			// Read-locked, or an OS thread we cannot lend to.
			if (ts != top)
				spin_unlock(&ts->ts_lock);
			return;
		}
		thread_lock(owner);
		if (ts != top)
			spin_unlock(&ts->ts_lock);
		if (owner->td_state == TDS_INHIBITED &&
		    !(owner->td_inhibitors & TDI_LOCK))
			panic("Sleeping thread \"%s\" (tid %d) owns a non-sleepable "
			      "lock (\"%s\", wait \"%s\")",
			    owner->td_name, owner->td_tid,
			    ts->ts_lockobj != nullptr ? ts->ts_lockobj->lo_name : "?",
			    owner->td_wmesg != nullptr ? owner->td_wmesg : "?");
		if (owner->td_priority <= pri) {
			thread_unlock(owner);
			return;
		}
		sched_lend_prio(owner, pri);
		if (owner->td_state != TDS_INHIBITED) {
			thread_unlock(owner);
			return;
		}
		// Blocked on a turnstile: owner's thread lock is that
		// turnstile's lock, which we now hold.
		turnstile *nts = static_cast<turnstile *>(
		    const_cast<void *>(owner->td_wchan));
		if (owner == curthread_fast())
			panic("Deadlock detected: thread \"%s\" (tid %d) blocks on a "
			      "lock it owns",
			    owner->td_name, owner->td_tid);
		spin_lock(&td_contested_lock);
		turnstile_adjust_thread(nts, owner);
		spin_unlock(&td_contested_lock);
		ts = nts;
		// The thread lock taken above is released as ts's lock: the
		// spinlock-section depth matches (thread_lock entered one).
	}
}

// Make the pending waiters of ts runnable.  Requires ts locked.
void
wake_pending(turnstile *ts) noexcept
{
	ts_waiter *w = ts->ts_pending;
	ts->ts_pending = nullptr;
	while (w != nullptr) {
		ts_waiter *next = w->tw_next;
		if (w->tw_foreign) {
			std::atomic<uint32_t> *word = &w->tw_woken;
			word->store(1, std::memory_order_release);
			// w may be gone now; a FUTEX_WAKE only hashes the
			// address and never touches the memory.
			futex_op(word, FUTEX_WAKE_PRIVATE, 1);
		} else {
			thread *td = w->tw_td;
			thread_lock_block_wait(td);
			td->td_inhibitors &= ~TDI_LOCK;
			td->td_wchan = nullptr;
			td->td_wmesg = nullptr;
			sched_wakeup(td);
		}
		w = next;
	}
}

void
chain_remove(turnstile_chain *tc, turnstile *ts) noexcept
{
	turnstile **pp = &tc->tc_head;
	while (*pp != ts)
		pp = &(*pp)->ts_hash;
	*pp = ts->ts_hash;
	ts->ts_hash = nullptr;
}

} // namespace

// sched_prio()'s hook into the turnstiles, defined (null) in
// sched/sched_ule.cc: sched/ sits below sync/ and may not call up, so sync/
// installs turnstile_adjust() there before main() (a dynamic initializer of
// this file, which every lock pulls in).  The type must match the
// definition there.
extern void (*sched_turnstile_adjust)(thread *td, int oldpri) noexcept;

namespace {
[[maybe_unused]] const bool ts_adjust_installed =
    (sched_turnstile_adjust = turnstile_adjust, true);
} // namespace

void
turnstile_adjust(thread *td, int oldpri) noexcept
{
	turnstile *ts = static_cast<turnstile *>(const_cast<void *>(td->td_wchan));
	if (ts == nullptr)
		return;
	// Its place in the queue follows its priority (turnstile_first_pri,
	// hence every later recomputation of the owner's lent priority,
	// reads the head).  A thread already moved to ts_pending is not in a
	// queue: turnstile_adjust_thread finds nothing to move.
	spin_lock(&td_contested_lock);
	turnstile_adjust_thread(ts, td);
	spin_unlock(&td_contested_lock);
	// A better priority is lent along the chain of owners now; a worse
	// one is given back only when the owners release (as FreeBSD).
	if (td->td_priority < oldpri)
		propagate_priority(td, ts);
}

void
turnstile_set_propagation(bool on) noexcept
{
	ts_propagate.store(on, std::memory_order_relaxed);
}

void
turnstile_chain_lock(const lock_object *lo) noexcept
{
	spin_lock(&tc_lookup(lo)->tc_lock);
}

void
turnstile_chain_unlock(const lock_object *lo) noexcept
{
	spin_unlock(&tc_lookup(lo)->tc_lock);
}

turnstile *
turnstile_lookup(const lock_object *lo) noexcept
{
	turnstile_chain *tc = tc_lookup(lo);
	for (turnstile *ts = tc->tc_head; ts != nullptr; ts = ts->ts_hash)
		if (ts->ts_lockobj == lo) {
			spin_lock(&ts->ts_lock);
			return ts;
		}
	return nullptr;
}

turnstile *
turnstile_trywait(const lock_object *lo) noexcept
{
	ts_reserve();
	turnstile_chain_lock(lo);
	return turnstile_lookup(lo);
}

void
turnstile_cancel(turnstile *ts, const lock_object *lo) noexcept
{
	if (ts != nullptr)
		spin_unlock(&ts->ts_lock);
	turnstile_chain_unlock(lo);
	ts_unreserve();
}

bool
turnstile_empty(const turnstile *ts, int q) noexcept
{
	return ts->ts_blocked[q] == nullptr;
}

static counter_u64 c_ts_waits("kern.lock.turnstile_waits",
    "threads that blocked on a turnstile (contended sleep, rw locks)");

void
turnstile_wait(turnstile *ts, const lock_object *lo, thread *owner, int q) noexcept
{
	thread *td = curthread_fast();
	c_ts_waits.add();
	ktr_lock_contend(lo, lo->lo_name);
	turnstile_chain *tc = tc_lookup(lo);
	if (ts == nullptr) {
		ts = ts_pool_get();
		ts->ts_lockobj = lo;
		spin_lock(&ts->ts_lock);
		ts->ts_hash = tc->tc_head;
		tc->tc_head = ts;
	}
	ts_waiter w;
	w.tw_td = td;
	w.tw_foreign = (td->td_flags & TDF_FOREIGN) != 0;
	spin_lock(&td_contested_lock);
	if (owner != nullptr && ts->ts_owner == nullptr)
		owner_link(ts, owner);
	else
		USMP_KASSERT(owner == ts->ts_owner,
		    "turnstile_wait: lock \"%s\" owned by %p, turnstile says %p",
		    lo->lo_name, static_cast<void *>(owner),
		    static_cast<void *>(ts->ts_owner));
	queue_insert(ts, q, &w);
	spin_unlock(&td_contested_lock);

	if (w.tw_foreign) {
		// An OS thread: sleep on the futex in the waiter record.
		spin_unlock(&ts->ts_lock);
		turnstile_chain_unlock(lo);
		if (sim_active()) // the driver runs the simulation instead
			sim_wait_word(&w.tw_woken, 0, 0);
		while (w.tw_woken.load(std::memory_order_acquire) == 0)
			futex_op(&w.tw_woken, FUTEX_WAIT_PRIVATE, 0);
		ts_unreserve();
		return;
	}

	thread_lock(td);
	thread_lock_set(td, &ts->ts_lock);
	td->td_state = TDS_INHIBITED;
	td->td_inhibitors |= TDI_LOCK;
	td->td_wchan = ts;
	td->td_wmesg = lo->lo_name;
	turnstile_chain_unlock(lo);
	propagate_priority(td, ts);
	mi_switch(SW_VOL);
	ts_unreserve();
}

void
turnstile_broadcast(turnstile *ts, int q) noexcept
{
	spin_lock(&td_contested_lock);
	ts_waiter *w = ts->ts_blocked[q];
	ts->ts_blocked[q] = nullptr;
	spin_unlock(&td_contested_lock);
	if (w == nullptr)
		return;
	// Append to pending (order kept: best first).
	ts_waiter **pp = &ts->ts_pending;
	while (*pp != nullptr)
		pp = &(*pp)->tw_next;
	*pp = w;
}

void
turnstile_unpend(turnstile *ts) noexcept
{
	thread *td = curthread_fast();
	ktr_lock_release(ts->ts_lockobj, ts->ts_lockobj->lo_name);
	if (ts->ts_owner != nullptr) {
		// Give back what we borrowed through ts.
		bool green = !(td->td_flags & TDF_FOREIGN);
		if (green)
			thread_lock(td);
		spin_lock(&td_contested_lock);
		owner_unlink(ts);
		int pri = green ? owned_best_pri(td) : PRI_MAX;
		spin_unlock(&td_contested_lock);
		if (green) {
			sched_unlend_prio(td, pri);
			thread_unlock(td);
		}
	}
	wake_pending(ts);
	if (ts->ts_blocked[0] == nullptr && ts->ts_blocked[1] == nullptr) {
		chain_remove(tc_lookup(ts->ts_lockobj), ts);
		spin_unlock(&ts->ts_lock);
		ts_pool_put(ts);
		return;
	}
	spin_unlock(&ts->ts_lock);
}

void
turnstile_claim(turnstile *ts, const lock_object *lo) noexcept
{
	thread *td = curthread_fast();
	ktr_lock_acquire(lo, lo->lo_name);
	bool green = !(td->td_flags & TDF_FOREIGN);
	if (green)
		thread_lock(td);
	spin_lock(&td_contested_lock);
	if (ts->ts_owner != nullptr)
		owner_unlink(ts);
	owner_link(ts, td);
	int pri = turnstile_first_pri(ts);
	spin_unlock(&td_contested_lock);
	if (green) {
		if (ts_propagate.load(std::memory_order_relaxed) &&
		    pri < td->td_priority)
			sched_lend_prio(td, pri);
		thread_unlock(td);
	}
	spin_unlock(&ts->ts_lock);
	turnstile_chain_unlock(lo);
	ts_unreserve();
}

void
turnstile_disown(turnstile *ts) noexcept
{
	thread *td = curthread_fast();
	if (ts->ts_owner != nullptr) {
		bool green = !(td->td_flags & TDF_FOREIGN);
		if (green)
			thread_lock(td);
		spin_lock(&td_contested_lock);
		owner_unlink(ts);
		int pri = green ? owned_best_pri(td) : PRI_MAX;
		spin_unlock(&td_contested_lock);
		if (green) {
			sched_unlend_prio(td, pri);
			thread_unlock(td);
		}
	}
	spin_unlock(&ts->ts_lock);
}

bool
turnstile_describe_blocked(const thread *td, char *buf, std::size_t len,
    const thread **owner) noexcept
{
	if (!(__atomic_load_n(&td->td_inhibitors, __ATOMIC_RELAXED) & TDI_LOCK))
		return false;
	const auto *ts = static_cast<const turnstile *>(
	    __atomic_load_n(&td->td_wchan, __ATOMIC_RELAXED));
	if (ts == nullptr)
		return false;
	const lock_object *lo = __atomic_load_n(&ts->ts_lockobj, __ATOMIC_RELAXED);
	if (lo == nullptr)
		return false;
	std::snprintf(buf, len, "%s \"%s\"", lo->lo_class->lc_name, lo->lo_name);
	*owner = __atomic_load_n(&ts->ts_owner, __ATOMIC_RELAXED);
	return true;
}

} // namespace usmp

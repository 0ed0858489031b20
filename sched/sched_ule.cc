// The scheduler: per-CPU run queues, placement, stealing, preemption, time
// slices, the idle loop and the sleep timers.
//
// Vocabulary.  Each CPU has a tdq (ULE's name): a spinlock, a run queue of
// 64 queues and a bitmap (sched/runq.h), a load (threads running or queued
// here, idle excluded), the count of queued threads that may migrate
// ("transferable"), the priority of the running thread, and a heap of
// threads sleeping until a deadline.  The tdq lock is the container lock
// (td_lock) of every thread running, queued or timed-sleeping on that CPU.
//
// The problem.  Keep every CPU busy while work exists, keep threads near
// their caches, never move a pinned or bound thread, give better priorities
// the CPU first (at once for interrupt and realtime threads), rotate equal
// timeshare threads, and cost next to nothing on the switch path, which the
// yield ping-pong benchmark measures at a few dozen nanoseconds.
//
// Approaches rejected.  A global run queue (4BSD, Boost.Fiber's shared
// scheduler): one lock for every switch of every CPU.  Pushing new threads
// to idle CPUs at creation: an IPI to a parked vCPU costs 6-79 us here,
// far more than running the thread locally; idle CPUs pull instead (steal),
// and the hardclock wakes a parked CPU when another has spare work (ULE's
// balancer, at tick granularity).  Reading the clock on every switch: the
// vDSO clock costs ~30 ns here, so slices are counted in hardclock ticks
// and timers compare against a clock the hardclock refreshes each tick.
//
// The protocol.
//  1. Placement.  A new thread goes on its creator's CPU (or its bound CPU;
//     a foreign creator uses the least loaded CPU).  A woken thread goes to
//     its last CPU if that CPU is idle or no busier than the least loaded
//     one, else to the least loaded (sched_pickcpu).  Pinned and bound
//     threads always go back to their CPU.
//  2. Notification (tdq_notify).  After queueing on tdq T (holding T's lock,
//     load incremented with seq_cst; a waker on T's own CPU needs no such
//     edge, T cannot be parked, tdq_load_add_local), the waker reads T's park word with
//     seq_cst: this pairs with the idle loop's seq_cst store of the park word
//     followed by its seq_cst re-read of the load, so either the idle CPU
//     sees the load or the waker sees it parked and wakes it (ipi_wake: a
//     message on T's io_uring, or a futex wake; runtime/internal/idle.h).  If T
//     runs a thread that the new one should preempt, the waker sets
//     tdq_owepreempt and sends the preemption signal (an IPI); a local
//     preemption just sets curthread's td_owepreempt, taken at the outermost
//     critical_exit() (the waker's own lock release).
//  3. Preemption.  should_preempt(pri, cur): only a better priority, and only
//     up to preempt_thresh: PRI_MIN_KERN normally (interrupt, realtime and
//     kernel-priority threads), every priority in full-preemption mode.
//  4. Switch.  sched_switch() queues a still-running thread (at the head if
//     it was preempted, at the tail if it yielded or its slice ended), or
//     drops it from the load if it sleeps or exits, then chooses the best
//     queued thread, or the idle thread.  A thread bound to another CPU is
//     moved there with its td_lock blocked (see runtime/switch.cc).
//  5. Stealing.  An idle CPU looks for a tdq with load >= 2 and a
//     transferable thread (lock-free reads), locks both tdqs in address
//     order, re-checks, and moves one migratable thread whose td_lock is that
//     tdq's lock (a thread whose lock is blocked_lock is still switching
//     out).  It spins a few tens of microseconds looking for work, then
//     parks in the kernel until an IPI or its next timer.
//  6. Slices.  The hardclock thread, once per tick, marks CPUs whose running
//     thread has had `slice_ticks` and has company on its queue, and signals
//     them; the signal handler turns that into td_owepreempt (or, in full
//     preemption mode and inside application code, an immediate switch).
//  7. Direct handoff (runnext, Go's name).  A wakeup that places a thread
//     on the waker's own CPU (a condvar ping-pong, a request and its
//     reply) puts it in the tdq's one-thread slot tdq_runnext instead of
//     the run queue, without taking the run-queue lock: the waker usually
//     sleeps next, and its switch takes the slot.  The slot's rules:
//     a. Only q's own CPU puts, only into an empty slot, with a release
//        store of the slot and then of td_lock (= q's lock); a full slot
//        sends the wakeup down the locked path.  Everyone else reaches the
//        thread through td_lock, i.e. holding q's lock, and so sees it in
//        the slot (TDRQ_RUNNEXT) with its fields written.
//     b. The slot is emptied only under q's lock: by q's switch (choosing
//        it, or demoting it to the run queue) and by a thief.  As the owner
//        only fills an empty slot, a lock holder that read a thread there
//        still finds it there until it lets go of the lock.
//     c. The slot's thread is not counted in tdq_load (the owner could not
//        count it without a locked add, against remote writers of the
//        load); lockless readers use tdq_load_est(), which adds it.  It
//        counts in the load from the moment it runs.
//     d. Priority first: the switch takes the slot only if no queued
//        thread is better.  Among equals the slot goes first, but it
//        inherits the current time slice (tdq_switchtick is not restarted),
//        so a ping-pong pair cannot starve its equals past one slice: once
//        the slice is over, the slot is demoted to the queue's tail.
//     e. Stealing: the slot's thread, if it may migrate, is stolen by an
//        idle CPU on the rule for the newest thread (step 5): once the
//        victim has made no switch for steal_newest_ns.  A CPU whose
//        running thread never switches thus loses it within microseconds.
//     f. Preemption as for any wakeup (step 2, the local case).
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime/counters.h"
#include "runtime/critical.h"
#include "runtime/machine.h"
#include "runtime/internal/curthread.h"
#include "runtime/internal/intr_hook.h"
#include "runtime/internal/seam.h"
#include "runtime/ktr.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/sim.h"
#include "runtime/stack.h"
#include "runtime/thread.h"
#include "sched/priority.h"
#include "sched/runq.h"
#include "sched/sched.h"

namespace usmp {

namespace {

// td_rqflags.
enum : uint8_t {
	TDRQ_TRANSFERABLE = 0x01, // counted in tdq_transferable
	TDRQ_RUNNEXT = 0x02,      // in its tdq's runnext slot (step 7)
};

// Locking key: (q) tdq_lock; (a) atomic, read locklessly by other CPUs;
// (c) constant after boot.
struct alignas(64) tdq {
	spinlock tdq_lock;                      // "sched lock N"
	runq tdq_runq;                          // (q)
	std::atomic<int> tdq_load{0};           // (a, written under q)
	std::atomic<int> tdq_transferable{0};   // (a, written under q)
	std::atomic<int> tdq_curpri{PRI_MAX};   // (a) running thread's priority
	std::atomic<uint64_t> tdq_switchtick{0}; // (a) tick of the last switch
	std::atomic<uint32_t> tdq_cpu_idle{0};  // (a) park word: 1 = parked
	std::atomic<int> tdq_owepreempt{0};     // (a) remote preemption asked
	std::atomic<int> tdq_slice_ipi{0};      // (a) hardclock: slice ended
	std::atomic<int> tdq_retry_ipi{0};      // (a) hardclock: signal again
	std::atomic<uint64_t> tdq_next_timer{UINT64_MAX}; // (a, written under q)
	std::atomic<uint64_t> tdq_switchcnt{0}; // (a, written under q) switches
	thread *tdq_newest = nullptr;           // (q) last thread made runnable here
	std::atomic<thread *> tdq_runnext{nullptr}; // (a) step 7: put by q's CPU, emptied under q
	thread **tdq_timers = nullptr;          // (q) min-heap on td_timo
	int tdq_ntimers = 0;                    // (q)
	int tdq_timers_cap = 0;                 // (q)
	pcpu *tdq_pcpu = nullptr;               // (c)
	int tdq_cpu = NOCPU;                    // (c)
};

struct sched_state {
	tdq *tdqs = nullptr;
	int ncpus = 0;
	int preempt_thresh = PRI_MIN_KERN;
	bool full_preemption = false;
	int slice_ticks = 10;
	uint64_t idle_spin_ns = 25000;
	std::atomic<uint64_t> ticks{0};
};

sched_state ss;

counter_u64 c_runnext("kern.sched.runnext_handoffs",
    "switches to the thread a wakeup on the same CPU put in runnext");
counter_u64 c_runnext_steals("kern.sched.runnext_steals",
    "runnext threads stolen by an idle CPU");

inline tdq *
tdq_of(int cpu) noexcept
{
	return &ss.tdqs[cpu];
}

inline tdq *
tdq_self() noexcept
{
	return static_cast<tdq *>(curpcpu_fast()->pc_sched);
}

inline bool
thread_can_migrate(const thread *td) noexcept
{
	return td->td_pinned == 0 && !(td->td_flags & TDF_BOUND);
}

bool
should_preempt(int pri, int cpri, bool remote) noexcept
{
	if (pri >= cpri)
		return false;
	if (cpri >= PRI_MIN_IDLE)
		return true;
	return pri <= ss.preempt_thresh;
}

// ---- Run-queue bookkeeping.  All require the tdq lock.

void
tdq_runq_add(tdq *q, thread *td, bool at_head) noexcept
{
	td->td_state = TDS_RUNQ;
	q->tdq_runq.add(td, at_head);
	if (thread_can_migrate(td)) {
		td->td_rqflags |= TDRQ_TRANSFERABLE;
		q->tdq_transferable.store(
		    q->tdq_transferable.load(std::memory_order_relaxed) + 1,
		    std::memory_order_relaxed);
	}
}

void
tdq_runq_rem(tdq *q, thread *td) noexcept
{
	q->tdq_runq.remove(td);
	if (q->tdq_newest == td)
		q->tdq_newest = nullptr;
	if (td->td_rqflags & TDRQ_TRANSFERABLE) {
		td->td_rqflags &= ~TDRQ_TRANSFERABLE;
		q->tdq_transferable.store(
		    q->tdq_transferable.load(std::memory_order_relaxed) - 1,
		    std::memory_order_relaxed);
	}
}

inline void
tdq_load_add(tdq *q) noexcept
{
	q->tdq_load.fetch_add(1, std::memory_order_seq_cst);
}

// The same on q by q's own CPU, holding q's lock.  Every other CPU that
// writes q's load holds q's lock, and q's own CPU is one thread of control,
// so a plain load and store loses no update; and no CPU parks on q's park
// word while q's CPU runs this, so step 2's seq_cst edge is not needed
// (lockless readers only estimate).  A locked instruction less on every
// same-CPU wakeup and sleep.
inline void
tdq_load_add_local(tdq *q) noexcept
{
	q->tdq_load.store(q->tdq_load.load(std::memory_order_relaxed) + 1,
	    std::memory_order_relaxed);
}

inline void
tdq_load_rem_local(tdq *q) noexcept
{
	q->tdq_load.store(q->tdq_load.load(std::memory_order_relaxed) - 1,
	    std::memory_order_relaxed);
}

inline void
tdq_load_rem(tdq *q) noexcept
{
	q->tdq_load.fetch_sub(1, std::memory_order_relaxed);
}

// The load as lockless readers should see it: the runnext thread is not in
// tdq_load (step 7c).
inline int
tdq_load_est(const tdq *q) noexcept
{
	return q->tdq_load.load(std::memory_order_relaxed) +
	    (q->tdq_runnext.load(std::memory_order_relaxed) != nullptr);
}

// What a remote CPU needs after a thread was queued on it (step 2).
enum notify_action { NOTIFY_NONE, NOTIFY_WAKE, NOTIFY_IPI };

// Step 2 of the protocol, the decision.  Requires q's lock; td was just
// queued on q.  The system call it may call for (a futex wake or a signal)
// is made by tdq_notify_send() once q's lock is released: a lock holder in
// a system call keeps every other CPU that wants the lock spinning, and on
// an oversubscribed host the holder may not even be scheduled.
notify_action
tdq_notify(tdq *q, thread *td) noexcept
{
	pcpu *me = curpcpu_fast();
	if (me != nullptr && me->pc_cpuid == q->tdq_cpu) {
		thread *cur = me->pc_curthread;
		if (should_preempt(td->td_priority, cur->td_priority, false))
			cur->td_owepreempt = cur->td_owepreempt | OWEPREEMPT_PRI;
		return NOTIFY_NONE;
	}
	std::atomic_thread_fence(std::memory_order_seq_cst);
	if (q->tdq_cpu_idle.load(std::memory_order_seq_cst) != 0) {
		if (q->tdq_cpu_idle.exchange(0, std::memory_order_seq_cst) != 0)
			return NOTIFY_WAKE;
		return NOTIFY_NONE;
	}
	if (should_preempt(td->td_priority,
		q->tdq_curpri.load(std::memory_order_relaxed), true) &&
	    q->tdq_owepreempt.exchange(1, std::memory_order_relaxed) == 0)
		return NOTIFY_IPI;
	return NOTIFY_NONE;
}

// Step 2, the system call.  Called with no run-queue lock held.
void
tdq_notify_send(tdq *q, notify_action a) noexcept
{
	if (a == NOTIFY_WAKE)
		ipi_wake(q->tdq_pcpu, &q->tdq_cpu_idle);
	else if (a == NOTIFY_IPI)
		ipi_preempt(q->tdq_pcpu);
}

// ---- Timers (thread_sleep).  All require the tdq lock.

inline void
timer_set(tdq *q, int i, thread *td) noexcept
{
	q->tdq_timers[i] = td;
	td->td_timo_index = i;
}

void
timer_sift_up(tdq *q, int i) noexcept
{
	thread *td = q->tdq_timers[i];
	while (i > 0) {
		int p = (i - 1) / 2;
		if (q->tdq_timers[p]->td_timo <= td->td_timo)
			break;
		timer_set(q, i, q->tdq_timers[p]);
		i = p;
	}
	timer_set(q, i, td);
}

void
timer_sift_down(tdq *q, int i) noexcept
{
	thread *td = q->tdq_timers[i];
	int n = q->tdq_ntimers;
	for (;;) {
		int c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && q->tdq_timers[c + 1]->td_timo < q->tdq_timers[c]->td_timo)
			c++;
		if (td->td_timo <= q->tdq_timers[c]->td_timo)
			break;
		timer_set(q, i, q->tdq_timers[c]);
		i = c;
	}
	timer_set(q, i, td);
}

void
timer_publish(tdq *q) noexcept
{
	q->tdq_next_timer.store(q->tdq_ntimers > 0 ? q->tdq_timers[0]->td_timo :
						     UINT64_MAX,
	    std::memory_order_release);
}

void
timer_insert(tdq *q, thread *td) noexcept
{
	if (q->tdq_ntimers == q->tdq_timers_cap) {
		int cap = q->tdq_timers_cap ? q->tdq_timers_cap * 2 : 64;
		void *p = std::realloc(q->tdq_timers, sizeof(thread *) * cap);
		if (p == nullptr)
			panic("thread_sleep(): no memory for the timer heap of cpu%d",
			    q->tdq_cpu);
		q->tdq_timers = static_cast<thread **>(p);
		q->tdq_timers_cap = cap;
	}
	timer_set(q, q->tdq_ntimers++, td);
	timer_sift_up(q, q->tdq_ntimers - 1);
	timer_publish(q);
}

thread *
timer_pop(tdq *q) noexcept
{
	thread *td = q->tdq_timers[0];
	td->td_timo_index = -1;
	if (--q->tdq_ntimers > 0) {
		timer_set(q, 0, q->tdq_timers[q->tdq_ntimers]);
		timer_sift_down(q, 0);
	}
	return td;
}

// Wake every sleeper whose deadline has passed.  The sleepers stay on this
// CPU (their cache is here); idle CPUs steal if that unbalances the load.
void
tdq_run_timers(tdq *q, uint64_t now) noexcept
{
	while (q->tdq_ntimers > 0 && q->tdq_timers[0]->td_timo <= now) {
		thread *td = timer_pop(q);
		spinlock *l = td->td_lock.load(std::memory_order_relaxed);
		if (__builtin_expect(l != &q->tdq_lock && l != &blocked_lock, 0))
			panic("softclock: sleeping thread \"%s\" (tid %d) in cpu%d's "
			    "timers has another thread lock", td->td_name, td->td_tid,
			    q->tdq_cpu);
		td->td_inhibitors &= ~TDI_SLEEPING;
		td->td_flags |= TDF_TIMEOUT;
		td->td_wchan = nullptr;
		td->td_wmesg = nullptr;
		tdq_runq_add(q, td, false);
		tdq_load_add(q);
		// Timers run on their own CPU: a local notification, which
		// never asks for a system call.
		(void)tdq_notify(q, td);
	}
	timer_publish(q);
}

// A thread that runs again after a switch holds, as its thread lock, the
// run-queue lock of the CPU it resumed on (handed over by the switch).
// Anything else would release the wrong lock and leave that CPU's locked.
void
tdq_check_resumed(thread *td, const char *where) noexcept
{
	if constexpr (config::invariants) {
		tdq *q = tdq_self();
		spinlock *l = td->td_lock.load(std::memory_order_relaxed);
		if (__builtin_expect(l != &q->tdq_lock || !l->held(), 0))
			panic("%s: thread \"%s\" (tid %d) resumed on cpu%d with "
			    "td_lock %p, not that CPU's run-queue lock %p%s", where,
			    td->td_name, td->td_tid, q->tdq_cpu,
			    static_cast<void *>(l), static_cast<void *>(&q->tdq_lock),
			    l == &blocked_lock ? " (blocked_lock)" : "");
	}
}

// Run newtd in place of td on q's CPU: the bookkeeping every switch does
// (state, CPU, slice start, the CPU's running priority and switch count),
// then cpu_switch() with `after` as td's lock once it is saved.  Requires
// q's lock; returns, when td runs again, with its CPU's run-queue lock.
inline void
tdq_switch_to(tdq *q, pcpu *pc, thread *td, thread *newtd, spinlock *after,
    uint64_t now_tick, const char *where) noexcept
{
	newtd->td_state = TDS_RUNNING;
	newtd->td_cpu = newtd->td_lastcpu = q->tdq_cpu;
	newtd->td_slicetick = now_tick;
	q->tdq_curpri.store(newtd->td_priority, std::memory_order_relaxed);
	q->tdq_switchtick.store(now_tick, std::memory_order_relaxed);
	q->tdq_switchcnt.store(q->tdq_switchcnt.load(std::memory_order_relaxed) + 1,
	    std::memory_order_relaxed);
	pc->pc_switchticks = now_tick;
	cpu_switch(td, newtd, after);
	tdq_check_resumed(td, where);
}

// ---- Placement (step 1).

int
sched_lowest(int prefer) noexcept
{
	int best = prefer;
	int bload = prefer != NOCPU ? tdq_load_est(tdq_of(prefer)) : INT32_MAX;
	for (int c = 0; c < ss.ncpus; c++) {
		int l = tdq_load_est(tdq_of(c));
		if (l < bload) {
			bload = l;
			best = c;
		}
	}
	return best;
}

// `waker_leaves`: the waker is about to block or exit (thread_exit waking
// its joiner, Linux's WF_SYNC): count its CPU as one thread lighter, so a
// spawn-then-join or a request-then-wait stays on one CPU instead of
// bouncing between two.
int
sched_pickcpu(thread *td, bool waker_leaves) noexcept
{
	if (td->td_flags & TDF_BOUND)
		return td->td_bound_cpu;
	if (td->td_pinned != 0)
		return td->td_lastcpu;
	pcpu *me = curpcpu_fast();
	int last = td->td_lastcpu;
	if (last == NOCPU)
		last = me != nullptr ? me->pc_cpuid : 0;
	tdq *lq = tdq_of(last);
	if (waker_leaves && me != nullptr && me->pc_cpuid == last &&
	    tdq_load_est(lq) <= 1)
		return last;
	if (tdq_load_est(lq) == 0) {
		// Idle and awake (spinning in its idle loop): the best place.
		// Parked: waking a halted vCPU costs 6-79 us here, more than
		// running on the waker's CPU, from which an awake idle CPU can
		// still steal it.
		if (lq->tdq_cpu_idle.load(std::memory_order_relaxed) == 0 ||
		    me == nullptr)
			return last;
		return me->pc_cpuid;
	}
	return sched_lowest(last);
}

// Choose the next thread on q (step 4).  Requires q's lock.
//
// A queued thread whose td_lock is blocked_lock is still being switched out
// by the CPU that moved it here (sched_bind, or a wakeup racing a switch):
// its context is not saved yet.  Skip it rather than wait for it: two CPUs
// that each moved a thread to the other and each waited for the other's
// thread would wait forever (a context is only saved by jumping away from
// it).  It becomes choosable as soon as that CPU's switch completes, and the
// load keeps our idle loop polling until then.  `self`, the thread switching
// out here (blocked by us), is choosable: choosing it means no switch.
// Step 7d: the runnext thread if the switch should run it (out of the
// slot and counted in the load), else null: left in the slot behind a
// better queued thread, or demoted to the queue's tail once the time slice
// it would inherit is over.  Requires q's lock, on q's CPU.
thread *
tdq_runnext_choose(tdq *q) noexcept
{
	thread *rn = q->tdq_runnext.load(std::memory_order_relaxed);
	if (rn == nullptr || rn->td_priority > q->tdq_runq.best_pri())
		return nullptr;
	q->tdq_runnext.store(nullptr, std::memory_order_relaxed);
	rn->td_rqflags &= ~TDRQ_RUNNEXT;
	tdq_load_add_local(q);
	if (rn->td_priority == q->tdq_runq.best_pri() &&
	    ss.ticks.load(std::memory_order_relaxed) -
		    q->tdq_switchtick.load(std::memory_order_relaxed) >=
		static_cast<uint64_t>(ss.slice_ticks)) {
		tdq_runq_add(q, rn, false);
		return nullptr;
	}
	return rn;
}

// `*handoff` is set when the choice is the runnext thread (step 7), which
// inherits the running time slice.
thread *
tdq_choose(tdq *q, pcpu *pc, thread *self, bool *handoff) noexcept
{
	if (__builtin_expect(machine_stopping(), 0))
		return pc->pc_idlethread;
	if (thread *rn = tdq_runnext_choose(q)) {
		*handoff = true;
		c_runnext.add();
		return rn;
	}
	thread *td = q->tdq_runq.choose();
	if (td == nullptr)
		return pc->pc_idlethread;
	if (__builtin_expect(td != self &&
		td->td_lock.load(std::memory_order_acquire) == &blocked_lock, 0)) {
		td = nullptr;
		uint64_t bits = q->tdq_runq.rq_status;
		while (bits != 0 && td == nullptr) {
			int i = __builtin_ctzll(bits);
			bits &= bits - 1;
			for (thread *t = q->tdq_runq.rq_queues[i].first; t != nullptr;
			     t = t->td_runq_next) {
				if (t == self ||
				    t->td_lock.load(std::memory_order_acquire) !=
					&blocked_lock) {
					td = t;
					break;
				}
			}
		}
		if (td == nullptr)
			return pc->pc_idlethread;
	}
	tdq_runq_rem(q, td);
	return td;
}

// Step 4's second half: run due timers, choose the next thread on q and
// switch to it; `after` becomes td's lock once td is saved.  td is queued
// on q, or blocked (not runnable).  Requires q's lock; returns, when td runs
// again, with its CPU's run-queue lock held.
inline void
tdq_switch_out(tdq *q, pcpu *pc, thread *td, spinlock *after,
    const char *where) noexcept
{
	uint64_t next = q->tdq_next_timer.load(std::memory_order_relaxed);
	if (__builtin_expect(next != UINT64_MAX, 0) && next <= coarse_ns())
		tdq_run_timers(q, clock_ns());

	bool handoff = false;
	thread *newtd = tdq_choose(q, pc, td, &handoff);
	// The idle thread has no slice to hand on.
	uint64_t now_tick = handoff && !(td->td_flags & TDF_IDLETD) ?
	    q->tdq_switchtick.load(std::memory_order_relaxed) :
	    ss.ticks.load(std::memory_order_relaxed);
	q->tdq_retry_ipi.store(0, std::memory_order_relaxed);
	if (newtd == td) {
		td->td_state = TDS_RUNNING;
		td->td_slicetick = now_tick;
		td->td_lock.store(after, std::memory_order_relaxed);
		return;
	}
	tdq_switch_to(q, pc, td, newtd, after, now_tick, where);
}

// What an idle CPU remembers between its steal attempts: the victim whose
// only stealable thread was its newest, and that victim's switch count then.
struct steal_watch {
	tdq *victim = nullptr;
	uint64_t switchcnt = 0;
	uint64_t since_ns = 0;
};

// The newest thread made runnable on a busy CPU is most likely about to run
// there: its creator or waker is typically about to block on it (a spawn
// then join, a request then wait).  Stealing it costs a cross-CPU hop both
// ways, so a thief takes it only once the victim has made no switch for
// steal_newest_ns (Go's runnext rule, with the victim's switch count
// standing in for Go's "is the P still running" test).
constexpr uint64_t steal_newest_ns = 20000;

// Steal one thread for the idle CPU q (step 5).  Called by q's idle thread,
// with no lock held.  Returns true if q's queue got a thread.
bool
tdq_idled(tdq *q, steal_watch &w, uint64_t now) noexcept
{
	for (int k = 1; k < ss.ncpus; k++) {
		tdq *v = tdq_of((q->tdq_cpu + k) % ss.ncpus);
		if (tdq_load_est(v) < 2 ||
		    (v->tdq_transferable.load(std::memory_order_relaxed) < 1 &&
			v->tdq_runnext.load(std::memory_order_relaxed) == nullptr))
			continue;
		uint64_t cnt = v->tdq_switchcnt.load(std::memory_order_relaxed);
		bool newest_ok = w.victim == v && w.switchcnt == cnt &&
		    now - w.since_ns >= steal_newest_ns;
		spinlock_enter();
		tdq *a = q < v ? q : v, *b = q < v ? v : q;
		a->tdq_lock.lock();
		b->tdq_lock.lock();
		thread *found = nullptr;
		bool only_newest = false, from_runnext = false;
		if (tdq_load_est(v) >= 2) {
			uint64_t bits = v->tdq_runq.rq_status;
			while (bits != 0 && found == nullptr) {
				int i = __builtin_ctzll(bits);
				bits &= bits - 1;
				for (thread *td = v->tdq_runq.rq_queues[i].first;
				     td != nullptr; td = td->td_runq_next) {
					if (!(td->td_rqflags & TDRQ_TRANSFERABLE) ||
					    td->td_lock.load(std::memory_order_relaxed) !=
						&v->tdq_lock)
						continue;
					if (td == v->tdq_newest && !newest_ok) {
						only_newest = true;
						continue;
					}
					found = td;
					break;
				}
			}
			// Step 7e: the runnext thread, on the newest's rule.
			thread *rn = v->tdq_runnext.load(std::memory_order_acquire);
			if (found == nullptr && rn != nullptr &&
			    thread_can_migrate(rn) &&
			    rn->td_lock.load(std::memory_order_relaxed) ==
				&v->tdq_lock) {
				if (newest_ok) {
					found = rn;
					from_runnext = true;
				} else {
					only_newest = true;
				}
			}
		}
		if (found != nullptr) {
			if (from_runnext) {
				// Not in v's load (step 7c).
				v->tdq_runnext.store(nullptr, std::memory_order_relaxed);
				found->td_rqflags &= ~TDRQ_RUNNEXT;
				c_runnext_steals.add();
			} else {
				tdq_runq_rem(v, found);
				tdq_load_rem(v);
			}
			found->td_cpu = q->tdq_cpu;
			tdq_runq_add(q, found, false);
			tdq_load_add(q);
			found->td_lock.store(&q->tdq_lock, std::memory_order_release);
			q->tdq_pcpu->pc_cnt_steals++;
			ktr_event_record(KTR_STEAL, static_cast<uint64_t>(found->td_tid),
			    static_cast<uint64_t>(v->tdq_cpu), found->td_name);
		}
		b->tdq_lock.unlock();
		a->tdq_lock.unlock();
		spinlock_exit();
		if (found != nullptr) {
			w.victim = nullptr;
			return true;
		}
		if (only_newest && (w.victim != v || w.switchcnt != cnt)) {
			w.victim = v;
			w.switchcnt = cnt;
			w.since_ns = now;
		}
	}
	return false;
}

} // namespace

// ---- The seam (runtime/internal/seam.h).

void
sched_boot(const machine_config &cfg, int ncpus) noexcept
{
	ss.tdqs = new (std::align_val_t(64)) tdq[ncpus];
	ss.ncpus = ncpus;
	ss.full_preemption = cfg.full_preemption;
	ss.preempt_thresh = cfg.full_preemption ? PRI_MAX : PRI_MIN_KERN;
	ss.slice_ticks = cfg.slice_ticks > 0 ? cfg.slice_ticks : 1;
	ss.ticks.store(0, std::memory_order_relaxed);
	for (int c = 0; c < ncpus; c++) {
		tdq *q = tdq_of(c);
		pcpu *pc = pcpu_find(c);
		q->tdq_pcpu = pc;
		q->tdq_cpu = c;
		pc->pc_sched = q;
		pc->pc_idlethread->td_lock.store(&q->tdq_lock,
		    std::memory_order_relaxed);
	}
}

void
sched_shutdown() noexcept
{
	for (int c = 0; c < ss.ncpus; c++)
		std::free(tdq_of(c)->tdq_timers);
	::operator delete[](ss.tdqs, std::align_val_t(64));
	ss.tdqs = nullptr;
	ss.ncpus = 0;
}

void
sched_shutdown_kick(int cpu) noexcept
{
	tdq *q = tdq_of(cpu);
	if (q->tdq_cpu_idle.exchange(0, std::memory_order_seq_cst) != 0)
		ipi_wake(q->tdq_pcpu, &q->tdq_cpu_idle);
}

void
sched_fork(thread *td, int pri, int bound_cpu) noexcept
{
	td->td_priority = td->td_base_pri = static_cast<uint8_t>(pri);
	if (bound_cpu != NOCPU) {
		td->td_flags |= TDF_BOUND;
		td->td_bound_cpu = bound_cpu;
		td->td_pinned = 1;
		td->td_lastcpu = bound_cpu;
	}
}

void
sched_add_new(thread *td) noexcept
{
	int cpu;
	pcpu *me = curpcpu_fast();
	if (td->td_flags & TDF_BOUND)
		cpu = td->td_bound_cpu;
	else if (me != nullptr)
		cpu = me->pc_cpuid;
	else
		cpu = sched_lowest(NOCPU);
	tdq *q = tdq_of(cpu);
	spinlock_enter();
	q->tdq_lock.lock();
	td->td_cpu = td->td_lastcpu = cpu;
	td->td_lock.store(&q->tdq_lock, std::memory_order_relaxed);
	tdq_runq_add(q, td, false);
	q->tdq_newest = td;
	tdq_load_add(q);
	notify_action a = tdq_notify(q, td);
	q->tdq_lock.unlock();
	tdq_notify_send(q, a);
	spinlock_exit();
}

static counter_u64 c_wakeups("kern.sched.wakeups", "sleeping or blocked threads made runnable");
static counter_u64 c_wakeup_migrations("kern.sched.wakeup_migrations",
    "wakeups that placed the thread on another CPU than it last ran on");

void
sched_wakeup(thread *td, int flags) noexcept
{
	td->td_state = TDS_CAN_RUN;
	int cpu = sched_pickcpu(td, (flags & SRQ_WAKER_LEAVES) != 0);
	c_wakeups.add();
	if (cpu != td->td_lastcpu)
		c_wakeup_migrations.add();
	ktr_event_record(KTR_WAKEUP, static_cast<uint64_t>(td->td_tid),
	    static_cast<uint64_t>(cpu), td->td_name);
	tdq *q = tdq_of(cpu);
	pcpu *me = curpcpu_fast();
	if (me != nullptr && me->pc_sched == q &&
	    q->tdq_runnext.load(std::memory_order_relaxed) == nullptr) {
		// Step 7a: the slot, without q's lock (we are q's CPU, in a
		// spinlock section: td's thread lock is held).
		td->td_cpu = cpu;
		td->td_state = TDS_RUNQ;
		td->td_rqflags |= TDRQ_RUNNEXT;
		q->tdq_runnext.store(td, std::memory_order_release);
		td->td_lock.store(&q->tdq_lock, std::memory_order_release);
		// Step 7f: step 2's local case.
		thread *cur = me->pc_curthread;
		if (should_preempt(td->td_priority, cur->td_priority, false))
			cur->td_owepreempt = cur->td_owepreempt | OWEPREEMPT_PRI;
		return;
	}
	q->tdq_lock.lock();
	td->td_cpu = cpu;
	tdq_runq_add(q, td, false);
	q->tdq_newest = td;
	if (me != nullptr && me->pc_sched == q)
		tdq_load_add_local(q);
	else
		tdq_load_add(q);
	td->td_lock.store(&q->tdq_lock, std::memory_order_release);
	notify_action a = tdq_notify(q, td);
	q->tdq_lock.unlock();
	tdq_notify_send(q, a);
}

void
sched_switch(thread *td, int flags) noexcept
{
	pcpu *pc = curpcpu_fast();
	tdq *q = static_cast<tdq *>(pc->pc_sched);
	spinlock *mtx = td->td_lock.load(std::memory_order_relaxed);
	spinlock *after = mtx; // td's lock once its context is saved

	// A thread that stays runnable here keeps q's lock as its td_lock: we
	// hold that lock until the next thread has finished the switch, so
	// nobody can touch td before its context is saved.  Any other thread
	// is blocked (td_lock = &blocked_lock) for the length of the switch.
	if (td->td_flags & TDF_IDLETD) {
		// The idle thread is never queued.
	} else if (td->td_state == TDS_RUNNING) {
		if ((flags & SWT_BIND) && td->td_bound_cpu != q->tdq_cpu) {
			thread_lock_block(td);
			// Move to the bound CPU; td_lock stays blocked until
			// our switch saves td (runtime/switch.cc).
			tdq *t = tdq_of(td->td_bound_cpu);
			q->tdq_lock.unlock();
			tdq_load_rem(q);
			t->tdq_lock.lock();
			td->td_cpu = t->tdq_cpu;
			tdq_runq_add(t, td, false);
			tdq_load_add(t);
			notify_action a = tdq_notify(t, td);
			t->tdq_lock.unlock();
			tdq_notify_send(t, a);
			q->tdq_lock.lock();
			after = &t->tdq_lock;
		} else {
			tdq_runq_add(q, td, (flags & SW_PREEMPT) != 0);
		}
	} else {
		// Going to sleep, blocking or exiting.
		thread_lock_block(td);
		if (mtx != &q->tdq_lock) {
			mtx->unlock();
			q->tdq_lock.lock();
		}
		tdq_load_rem(q);
	}
	if (flags & SW_INVOL) {
		pc->pc_cnt_preempt++;
		ktr_event_record(KTR_PREEMPT, static_cast<uint64_t>(flags), 0,
		    td->td_name);
	}
	tdq_switch_out(q, pc, td, after, "sched_switch");
}

void
sched_sleep_switch(thread *td, spinlock *wl) noexcept
{
	pcpu *pc = curpcpu_fast();
	tdq *q = static_cast<tdq *>(pc->pc_sched);
	if (__builtin_expect(td->td_spinlock_count != 2 || td->td_critnest != 1 ||
		td->td_lock.load(std::memory_order_relaxed) != &q->tdq_lock, 0))
		panic("sched_sleep_switch: thread \"%s\" (tid %d) must hold its "
		    "wait lock and its thread lock, cpu%d's run-queue lock, and "
		    "nothing else (critnest %d, spinlock count %d)", td->td_name,
		    td->td_tid, q->tdq_cpu, td->td_critnest, td->td_spinlock_count);
	// What sched_switch() does for a sleeping thread whose lock is the
	// wait lock, without first handing the thread lock to the wait lock
	// and taking the run-queue lock back.
	thread_lock_block(td);
	wl->unlock();
	td->td_spinlock_count = 1; // still in the critical section
	tdq_load_rem_local(q);
	tdq_switch_out(q, pc, td, wl, "sched_sleep_switch");
	// Running again, holding our CPU's run-queue lock (our thread lock).
	thread_unlock(td);
}

// kern_yield(): the hot path of thread_yield(), which the yield ping-pong
// benchmark measures.  It is sched_switch() for the one case of a running
// thread going back to the tail of its own CPU's queue, with thread_lock(),
// mi_switch()'s checks and the general branches folded away: the thread
// lock of a running thread is its CPU's run-queue lock, taken directly.
void
sched_yield(thread *td) noexcept
{
	pcpu *pc = curpcpu_fast();
	tdq *q = static_cast<tdq *>(pc->pc_sched);
	// Nothing else queued here: nothing to yield to.  A racing wakeup that
	// this racy read misses only makes this yield come a moment early.
	if (__atomic_load_n(&q->tdq_runq.rq_status, __ATOMIC_RELAXED) == 0 &&
	    q->tdq_runnext.load(std::memory_order_relaxed) == nullptr &&
	    __builtin_expect(!machine_stopping(), 1))
		return;
	if (__builtin_expect(td->td_critnest != 0 || td->td_spinlock_count != 0, 0))
		panic("thread_yield(): thread \"%s\" (tid %d) in a critical section",
		    td->td_name, td->td_tid);
	// spinlock_enter(), knowing the counts are zero.
	td->td_critnest = 1;
	std::atomic_signal_fence(std::memory_order_seq_cst);
	td->td_spinlock_count = 1;
	std::atomic_signal_fence(std::memory_order_seq_cst);
	q->tdq_lock.lock();
	tdq_runq_add(q, td, false);
	uint64_t next = q->tdq_next_timer.load(std::memory_order_relaxed);
	if (__builtin_expect(next != UINT64_MAX, 0) && next <= coarse_ns())
		tdq_run_timers(q, clock_ns());
	bool handoff = false;
	thread *newtd = tdq_choose(q, pc, td, &handoff);
	q->tdq_retry_ipi.store(0, std::memory_order_relaxed);
	if (newtd == td) {
		td->td_state = TDS_RUNNING;
	} else {
		tdq_switch_to(q, pc, td, newtd, &q->tdq_lock, handoff ?
			q->tdq_switchtick.load(std::memory_order_relaxed) :
			ss.ticks.load(std::memory_order_relaxed),
		    "sched_yield");
	}
	thread_unlock(td);
}

void
sched_sleep_until(thread *td, uint64_t deadline_ns) noexcept
{
	tdq *q = tdq_self();
	if (__builtin_expect(td->td_lock.load(std::memory_order_relaxed) != &q->tdq_lock ||
		!q->tdq_lock.held(), 0))
		panic("thread_sleep(): thread \"%s\" (tid %d) on cpu%d does not hold "
		    "that CPU's run-queue lock (td_cpu %d)", td->td_name, td->td_tid,
		    q->tdq_cpu, td->td_cpu);
	td->td_timo = deadline_ns;
	td->td_flags &= ~TDF_TIMEOUT;
	timer_insert(q, td);
	td->td_state = TDS_INHIBITED;
	td->td_inhibitors |= TDI_SLEEPING;
	td->td_wchan = td;
	td->td_wmesg = "sleep";
	mi_switch(SW_VOL);
}

void
sched_idle_loop(pcpu *pc) noexcept
{
	tdq *q = static_cast<tdq *>(pc->pc_sched);
	thread *idle = pc->pc_idlethread;
	uint64_t spin_start = 0;
	steal_watch watch;
	for (;;) {
		if (machine_stopping())
			return;
		// Interrupt point 1 (runtime/internal/intr_hook.h): filters run
		// here on the idle thread; an ithread they wake shows in the load.
		if (pc->pc_intr_pending.load(std::memory_order_acquire) != 0) {
			intr_deliver_pending(pc);
			spin_start = 0;
			continue;
		}
		if (q->tdq_load.load(std::memory_order_acquire) > 0 ||
		    q->tdq_runnext.load(std::memory_order_relaxed) != nullptr) {
			uint64_t sw = pc->pc_cnt_switches;
			thread_lock(idle);
			mi_switch(SW_VOL);
			// Nothing could run yet (its thread is still being
			// switched out by the CPU that moved it here): back off
			// instead of hammering our lock, which that CPU may need.
			if (pc->pc_cnt_switches == sw) {
				if (sim_active()) // that CPU must run first
					sim_spin();
				else
					for (int i = 0; i < 256; i++)
						__builtin_ia32_pause();
			}
			spin_start = 0;
			continue;
		}
		// Interrupts first (I/O completions waiting in the CPU's
		// ring): they may make threads runnable here.
		if (cpu_intr_poll(pc) > 0) {
			spin_start = 0;
			continue;
		}
		uint64_t now = clock_ns();
		if (q->tdq_next_timer.load(std::memory_order_acquire) <= now) {
			spinlock_enter();
			q->tdq_lock.lock();
			tdq_run_timers(q, now);
			q->tdq_lock.unlock();
			spinlock_exit();
			continue;
		}
		if (tdq_idled(q, watch, now)) {
			spin_start = 0;
			continue;
		}
		// Simulated, virtual time does not pass while we spin: park at
		// once (the simulation runs another CPU).
		if (spin_start == 0 && !sim_active()) {
			spin_start = now;
			continue;
		}
		if (now - spin_start < ss.idle_spin_ns && !sim_active()) {
			for (int i = 0; i < 64; i++)
				__builtin_ia32_pause();
			continue;
		}
		// Housekeeping before parking: top up the stack cache, as an
		// idle kernel pre-zeroes pages.
		stack_cache_refill();
		stack_cache_trim();
		q->tdq_cpu_idle.store(1, std::memory_order_seq_cst);
		if (q->tdq_load.load(std::memory_order_seq_cst) > 0 ||
		    pc->pc_intr_pending.load(std::memory_order_seq_cst) != 0 ||
		    machine_stopping()) {
			q->tdq_cpu_idle.store(0, std::memory_order_relaxed);
			continue;
		}
		pc->pc_cnt_parks++;
		// Wake for the next timer, or for the stack cache's next chance
		// to give memory back after a burst (stack_trim_deadline()).
		uint64_t next = q->tdq_next_timer.load(std::memory_order_acquire);
		uint64_t trim = stack_trim_deadline(); // real time: not simulated
		if (trim < next && !sim_active())
			next = trim;
		cpu_park(pc, &q->tdq_cpu_idle, 1, next == UINT64_MAX ? 0 : next);
		q->tdq_cpu_idle.store(0, std::memory_order_relaxed);
		spin_start = 0;
	}
}

void
sched_hardclock(uint64_t ticks) noexcept
{
	ss.ticks.store(ticks, std::memory_order_relaxed);
	uint64_t now = coarse_ns();
	tdq *parked = nullptr, *busy = nullptr;
	for (int c = 0; c < ss.ncpus; c++) {
		tdq *q = tdq_of(c);
		if (q->tdq_cpu_idle.load(std::memory_order_relaxed) != 0) {
			parked = q;
			continue;
		}
		int load = tdq_load_est(q);
		if (load >= 2 &&
		    (q->tdq_transferable.load(std::memory_order_relaxed) > 0 ||
			q->tdq_runnext.load(std::memory_order_relaxed) != nullptr))
			busy = q;
		bool slice = load >= 2 &&
		    ticks - q->tdq_switchtick.load(std::memory_order_relaxed) >=
			static_cast<uint64_t>(ss.slice_ticks);
		bool timer = q->tdq_next_timer.load(std::memory_order_relaxed) <= now;
		if (slice)
			q->tdq_slice_ipi.store(1, std::memory_order_relaxed);
		// A preemption the signal could not take (sched_ipi_retry) is
		// asked again each tick until the CPU switches.
		bool retry = q->tdq_retry_ipi.load(std::memory_order_relaxed) != 0;
		if (slice || timer || retry)
			ipi_preempt(q->tdq_pcpu);
	}
	// The balancer: a parked CPU while another has spare work.
	if (parked != nullptr && busy != nullptr &&
	    parked->tdq_cpu_idle.exchange(0, std::memory_order_seq_cst) != 0)
		ipi_wake(parked->tdq_pcpu, &parked->tdq_cpu_idle);
}

int
sched_ipi(pcpu *pc, bool can_lock) noexcept
{
	tdq *q = static_cast<tdq *>(pc->pc_sched);
	int owe = 0;
	if (q->tdq_owepreempt.exchange(0, std::memory_order_relaxed) != 0)
		owe |= OWEPREEMPT_PRI;
	if (q->tdq_slice_ipi.exchange(0, std::memory_order_relaxed) != 0)
		owe |= OWEPREEMPT_SLICE;
	if (machine_stopping())
		owe |= OWEPREEMPT_PRI;
	if (pc->pc_curthread->td_flags & TDF_IDLETD) {
		// The signal may have caught the idle thread in its park (the
		// futex wait restarts after the handler).  Run nothing here:
		// whatever this handler queued locally would wake nobody.  Cut
		// the park short instead, so the idle loop looks at its timers
		// and its queue itself.
		q->tdq_cpu_idle.store(0, std::memory_order_seq_cst);
		return owe;
	}
	if (can_lock) {
		uint64_t now = clock_ns();
		if (q->tdq_next_timer.load(std::memory_order_acquire) <= now) {
			spinlock_enter();
			q->tdq_lock.lock();
			tdq_run_timers(q, now);
			q->tdq_lock.unlock();
			spinlock_exit();
			if (pc->pc_curthread->td_owepreempt != 0)
				owe |= OWEPREEMPT_PRI;
		}
	}
	return owe;
}

void
sched_dump_cpu(int cpu) noexcept
{
	if (cpu < 0 || cpu >= ss.ncpus)
		return;
	tdq *q = tdq_of(cpu);
	printf_diag("  cpu%d: load %d transferable %d parked %u owepreempt %d "
	    "curpri %d switches %llu timers %d lock %s", cpu,
	    q->tdq_load.load(), q->tdq_transferable.load(),
	    q->tdq_cpu_idle.load(), q->tdq_owepreempt.load(),
	    q->tdq_curpri.load(),
	    static_cast<unsigned long long>(q->tdq_switchcnt.load()),
	    q->tdq_ntimers, q->tdq_lock.held() ? "held" : "free");
	if (thread *rn = q->tdq_runnext.load())
		printf_diag("    runnext: \"%s\" (tid %d) state %d pri %d", rn->td_name,
		    rn->td_tid, rn->td_state, rn->td_priority);
	uint64_t bits = q->tdq_runq.rq_status;
	for (int i = 0; i < RQ_NQS; i++) {
		const runq::head &h = q->tdq_runq.rq_queues[i];
		bool bit = (bits >> i) & 1;
		if (!bit && h.first == nullptr)
			continue;
		for (thread *td = h.first; td != nullptr; td = td->td_runq_next) {
			spinlock *l = td->td_lock.load();
			int lc = -1;
			for (int c = 0; c < ss.ncpus; c++)
				if (l == &tdq_of(c)->tdq_lock)
					lc = c;
			printf_diag("    queue %d%s: \"%s\" (tid %d) state %d pri %d "
			    "td_cpu %d td_lock %s%d", i, bit ? "" : " (bit clear!)",
			    td->td_name, td->td_tid, td->td_state, td->td_priority,
			    td->td_cpu, l == &blocked_lock ? "blocked " : "cpu",
			    lc);
		}
	}
}

void
sched_ipi_retry(pcpu *pc) noexcept
{
	tdq *q = static_cast<tdq *>(pc->pc_sched);
	q->tdq_owepreempt.store(1, std::memory_order_relaxed);
	q->tdq_retry_ipi.store(1, std::memory_order_relaxed);
}

void
sched_intr_kick(int cpu) noexcept
{
	if (cpu < 0 || cpu >= ss.ncpus)
		return;
	tdq *q = tdq_of(cpu);
	// Pairs with the idle loop's seq_cst store of its park word and its
	// re-read of pc_intr_pending: either it sees the pending word, or we
	// see it parked and wake it.
	if (q->tdq_cpu_idle.load(std::memory_order_seq_cst) != 0) {
		if (q->tdq_cpu_idle.exchange(0, std::memory_order_seq_cst) != 0)
			ipi_wake(q->tdq_pcpu, &q->tdq_cpu_idle);
		return;
	}
	ipi_preempt(q->tdq_pcpu);
}

int
sched_load(int cpu) noexcept
{
	if (cpu < 0 || cpu >= ss.ncpus)
		return 0;
	return tdq_load_est(tdq_of(cpu));
}

// ---- Public calls (sched/sched.h).

void
sched_pin() noexcept
{
	thread *td = curthread_fast();
	td->td_pinned++;
	std::atomic_signal_fence(std::memory_order_seq_cst);
}

void
sched_unpin() noexcept
{
	thread *td = curthread_fast();
	std::atomic_signal_fence(std::memory_order_seq_cst);
	if (__builtin_expect(td->td_pinned <= 0, 0))
		panic("sched_unpin(): thread \"%s\" (tid %d) is not pinned",
		    td->td_name, td->td_tid);
	td->td_pinned--;
}

int
sched_bind(int cpu) noexcept
{
	thread *td = curthread_fast();
	if (td->td_flags & TDF_FOREIGN)
		return EINVAL;
	if (cpu < 0 || cpu >= ss.ncpus) {
		printf_diag("sched_bind(): no CPU %d (machine has %d) in thread \"%s\"",
		    cpu, ss.ncpus, td->td_name);
		return EINVAL;
	}
	if (td->td_critnest != 0)
		panic("sched_bind(): thread \"%s\" (tid %d) in a critical section",
		    td->td_name, td->td_tid);
	if (td->td_flags & TDF_BOUND)
		sched_unbind();
	td->td_flags |= TDF_BOUND;
	td->td_bound_cpu = cpu;
	td->td_pinned++;
	if (curcpu() != cpu) {
		thread_lock(td);
		mi_switch(SW_VOL | SWT_BIND);
	}
	return 0;
}

void
sched_unbind() noexcept
{
	thread *td = curthread_fast();
	if (!(td->td_flags & TDF_BOUND))
		return;
	td->td_flags &= ~TDF_BOUND;
	td->td_bound_cpu = NOCPU;
	sched_unpin();
}

bool
sched_is_bound() noexcept
{
	return (curthread_fast()->td_flags & TDF_BOUND) != 0;
}

namespace {

// Give td the effective priority eff.  Requires td's thread lock.  A queued
// thread moves to its new queue (at the head when it gains: a borrower runs
// first among its equals, FreeBSD's SRQ_BORROWING); a running one updates
// its CPU's curpri and owes a preemption if a better thread now waits there.
void
sched_thread_priority(thread *td, int eff) noexcept
{
	if (td->td_priority == eff)
		return;
	bool gain = eff < td->td_priority;
	if (td->td_state == TDS_RUNQ) {
		tdq *q = tdq_of(td->td_cpu);
		if (td->td_rqflags & TDRQ_RUNNEXT) {
			// The switch compares it with the queue (step 7d).
			td->td_priority = static_cast<uint8_t>(eff);
		} else {
			tdq_runq_rem(q, td);
			td->td_priority = static_cast<uint8_t>(eff);
			tdq_runq_add(q, td, gain);
		}
		// Rare (a priority change of a queued thread): the system
		// call, if any, is made under the thread lock.
		tdq_notify_send(q, tdq_notify(q, td));
		return;
	}
	td->td_priority = static_cast<uint8_t>(eff);
	if (td->td_state == TDS_RUNNING && !(td->td_flags & TDF_FOREIGN) &&
	    td->td_cpu != NOCPU) {
		tdq *q = tdq_of(td->td_cpu);
		q->tdq_curpri.store(eff, std::memory_order_relaxed);
		if (td == curthread_fast() && q->tdq_runq.best_pri() < eff)
			td->td_owepreempt = td->td_owepreempt | OWEPREEMPT_PRI;
	}
}

inline int
effective_pri(const thread *td) noexcept
{
	return td->td_base_pri < td->td_lend_pri ? td->td_base_pri : td->td_lend_pri;
}

} // namespace

// Installed by sync/turnstile.cc (turnstile_adjust): sched/ may not call up
// into sync/.  Null until then.
void (*sched_turnstile_adjust)(thread *td, int oldpri) noexcept = nullptr;

int
sched_prio(thread *td, int pri) noexcept
{
	if (pri < PRI_MIN || pri > PRI_MAX)
		return EINVAL;
	thread_lock(td);
	int oldpri = td->td_priority;
	td->td_base_pri = static_cast<uint8_t>(pri);
	sched_thread_priority(td, effective_pri(td));
	// Blocked on a turnstile (its thread lock is the turnstile's): let
	// the turnstile re-sort it and propagate (FreeBSD's sched_prio).
	if (td->td_state == TDS_INHIBITED && (td->td_inhibitors & TDI_LOCK) &&
	    td->td_priority != oldpri && sched_turnstile_adjust != nullptr)
		sched_turnstile_adjust(td, oldpri);
	thread_unlock(td);
	return 0;
}

void
sched_lend_prio(thread *td, int pri) noexcept
{
	td->td_lend_pri = static_cast<uint8_t>(pri);
	sched_thread_priority(td, effective_pri(td));
}

void
sched_unlend_prio(thread *td, int pri) noexcept
{
	td->td_lend_pri = static_cast<uint8_t>(pri);
	sched_thread_priority(td, effective_pri(td));
}

void
maybe_yield() noexcept
{
	thread *td = curthread_fast();
	if (td->td_owepreempt != 0 && td->td_critnest == 0 &&
	    !(td->td_flags & (TDF_FOREIGN | TDF_IDLETD))) {
		critical_enter();
		critical_exit();
	}
}

bool
should_yield() noexcept
{
	thread *td = curthread_fast();
	return td->td_owepreempt != 0 ||
	    ss.ticks.load(std::memory_order_relaxed) - td->td_slicetick >=
		static_cast<uint64_t>(ss.slice_ticks);
}

bool
sched_full_preemption() noexcept
{
	return ss.full_preemption;
}

} // namespace usmp

// Context switches, thread locks and critical sections.
//
// Vocabulary.  A thread's *container lock* (td_lock, FreeBSD's thread lock)
// is whichever spinlock currently protects its scheduling state: the
// run-queue lock of its CPU while it runs or waits to run, the lock of the
// wait structure it sleeps on (a join lock, later a sleep-queue chain or a
// turnstile), or blocked_lock while it is in the middle of a switch.
//
// The problem.  A thread that goes to sleep must publish that it sleeps (so
// a waker can find it) before its context is saved, yet nobody may resume it
// until its context is saved: the waker on another CPU could otherwise put it
// on a run queue and a third CPU could jump into a half-saved context.
//
// Rejected: a global scheduler lock (4BSD's sched_lock), which serialises
// every switch of every CPU; an "on CPU" flag checked by wakers (Linux),
// which every path that touches a thread must remember to test.
//
// The protocol (FreeBSD's, with Boost.Context doing the register save):
//  1. The switching thread holds its container lock L (thread_lock).
//  2. sched_switch points td_lock at blocked_lock, queues the thread or lets
//     go of L, holds its CPU's run-queue lock Q and chooses the next thread.
//  3. cpu_switch records (old, L') in the pcpu, where L' is the lock old's
//     td_lock must point to once saved, and jumps to the new context.
//  4. The new thread, first thing (cpu_switch_finish), stores old's saved
//     context into old->td_ctx and then old->td_lock = L' with release
//     order.  This store pairs with the acquire load in thread_lock() and in
//     cpu_switch()'s wait: whoever sees td_lock != &blocked_lock also sees
//     the saved context.
//  5. The new thread returns from its own mi_switch (or starts) holding Q,
//     which is its own container lock, and releases it.
// Q is therefore held across the switch, and handed from the old thread to
// the new one, as in FreeBSD.  errno is saved in step 3 and restored in step
// 4, through the pcpu read afresh after the jump, so that the compiler cannot keep
// the address of the old OS thread's errno across the jump: each pcpu
// keeps the address of its OS thread's errno (pc_errnop).
#include <cerrno>
#include <exception>
#include <new>

#include "runtime/critical.h"
#include "runtime/internal/intr_hook.h"
#include "runtime/internal/machine.h"
#include "runtime/internal/seam.h"
#include "runtime/ktr.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/thread.h"

namespace usmp {

spinlock blocked_lock{1};

} // namespace usmp

__thread usmp::pcpu *usmp_tl_pcpu = nullptr;

namespace usmp {

namespace {

// The stand-in struct thread of a foreign OS thread, made on first use and
// freed when the OS thread ends.  The holder is emptied as it is freed: code
// that runs after the thread_local destructors (the main thread's exit
// handlers: a static lock's destructor reaches curthread through WITNESS)
// then makes a new one instead of using the freed one (ASan: heap use after
// free).
struct foreign_holder {
	thread *td = nullptr;
	~foreign_holder()
	{
		thread *t = td;
		td = nullptr;
		delete t;
	}
};
thread_local foreign_holder tl_foreign;

} // namespace

thread *
foreign_self() noexcept
{
	thread *td = tl_foreign.td;
	if (__builtin_expect(td == nullptr, 0)) {
		td = new (std::nothrow) thread;
		if (td == nullptr)
			panic("curthread: out of memory for a foreign thread");
		td->td_flags.store(TDF_FOREIGN, std::memory_order_relaxed);
		td->td_state = TDS_RUNNING;
		td->td_tid = -g_machine.ms_next_tid.fetch_add(1);
		__builtin_strcpy(td->td_name, "foreign");
		tl_foreign.td = td;
	}
	return td;
}

// The simulation (runtime/sim.cc) runs its hardclock agent on the OS thread
// that drives it: each gets its own stand-in, swapped in and out here.
thread *
foreign_swap(thread *td) noexcept
{
	thread *old = tl_foreign.td;
	tl_foreign.td = td;
	return old;
}

pcpu *
curpcpu() noexcept
{
	return curpcpu_fast();
}

thread *
curthread() noexcept
{
	return curthread_fast();
}

int
curcpu() noexcept
{
	pcpu *pc = curpcpu_fast();
	return pc != nullptr ? pc->pc_cpuid : NOCPU;
}

bool
on_cpu() noexcept
{
	pcpu *pc = curpcpu_fast();
	return pc != nullptr && !(pc->pc_curthread->td_flags.load(
	    std::memory_order_relaxed) & TDF_IDLETD);
}

// ---- Critical and spinlock sections.

void
critical_exit_underflow(thread *td) noexcept
{
	panic("critical_exit: td_critnest == 0 in thread \"%s\" (tid %d)",
	    td->td_name, td->td_tid);
}

void
critical_exit_preempt() noexcept
{
	thread *td = curthread_fast();
	// Re-entered, or a foreign OS thread or the idle thread (which poll).
	if (td->td_critnest != 0 ||
	    (td->td_flags.load(std::memory_order_relaxed) &
		(TDF_FOREIGN | TDF_IDLETD)) != 0) {
		td->td_owepreempt = 0;
		return;
	}
	// Interrupts queued while we were in the section (interrupt point 3,
	// runtime/internal/intr_hook.h).  Delivering them opens and closes a
	// spinlock section of its own, whose exit takes any preemption a
	// woken ithread asked for; what is still owed after that is ours.
	if (td->td_owepreempt & OWEPREEMPT_INTR) {
		td->td_owepreempt = td->td_owepreempt & ~OWEPREEMPT_INTR;
		intr_deliver_pending(curpcpu_fast());
		if (td->td_owepreempt == 0)
			return;
	}
	// We committed to switch: keep the signal handler from preempting us
	// again while we spin for the thread lock.
	td->td_critnest = 1;
	thread_lock(td);
	td->td_critnest = td->td_critnest - 1;
	int owe = td->td_owepreempt;
	td->td_owepreempt = 0;
	// owe may be 0 if the handler raced us; a switch is still harmless.
	mi_switch(SW_INVOL | ((owe & OWEPREEMPT_PRI) ? SW_PREEMPT : SWT_SLICE));
}

void
spinlock_exit_underflow(thread *td) noexcept
{
	panic("spinlock_exit: no spinlock section in thread \"%s\"",
	    td->td_name);
}

// ---- Thread locks.

// td_lock may move while we wait for it, and the lock it pointed to may be
// one we can never get: a turnstile's ts_lock is td's lock only while td is
// blocked there; once td is woken, the turnstile goes back to the pool and
// its next user may hold that ts_lock while it waits for a thread lock we
// hold (propagate_priority takes the owners' thread locks with a ts_lock
// held).  Spinning on the stale lock with l->lock() then deadlocks.  So the
// wait re-reads td_lock at every step and starts over on the new lock, as
// FreeBSD's _thread_lock_flags() does ("if (m != td->td_lock) goto retry").
void
thread_lock(thread *td) noexcept
{
	spinlock_enter_td(curthread_fast());
	for (unsigned n = 0;;) {
		spinlock *l = td->td_lock.load(std::memory_order_acquire);
		if (l == &blocked_lock || l == nullptr || !l->try_lock()) {
			cpu_spinwait(n);
			continue;
		}
		if (td->td_lock.load(std::memory_order_relaxed) == l)
			return;
		l->unlock();
	}
}

void
thread_unlock(thread *td) noexcept
{
	td->td_lock.load(std::memory_order_relaxed)->unlock();
	spinlock_exit_td(curthread_fast());
}

void
thread_lock_set(thread *td, spinlock *lock) noexcept
{
	spinlock *old = td->td_lock.load(std::memory_order_relaxed);
	td->td_lock.store(lock, std::memory_order_release);
	old->unlock();
	spinlock_exit_td(curthread_fast());
}

spinlock *
thread_lock_block(thread *td) noexcept
{
	spinlock *old = td->td_lock.load(std::memory_order_relaxed);
	td->td_lock.store(&blocked_lock, std::memory_order_release);
	return old;
}

spinlock *
thread_lock_block_wait(thread *td) noexcept
{
	spinlock *l;
	unsigned n = 0;
	while ((l = td->td_lock.load(std::memory_order_acquire)) == &blocked_lock)
		cpu_spinwait(n);
	return l;
}

// ---- The switch.

namespace {

// Step 4 of the protocol, on the new thread; `from` is old's context.
__attribute__((noinline)) void
cpu_switch_finish(context from) noexcept
{
	pcpu *pc = curpcpu_fast();
	thread *old = pc->pc_switch_from;
	thread *td = pc->pc_curthread;
	*pc->pc_errnop = td->td_errno;
	context_save(&old->td_ctx, from);
	if (__builtin_expect(old->td_state == TDS_INACTIVE, 0)) {
		// old exited: its context is never resumed.
		context_forget(&old->td_ctx);
		thread_switched_out_dead(old);
		return;
	}
	old->td_lock.store(pc->pc_switch_lock, std::memory_order_release);
}

} // namespace

void
cpu_switch(thread *old, thread *newtd, spinlock *mtx) noexcept
{
	pcpu *pc = curpcpu_fast();
	// The scheduler never chooses a thread still being switched out
	// elsewhere (sched_ule.cc, tdq_choose): its context would not be saved.
	if (__builtin_expect(
		newtd->td_lock.load(std::memory_order_acquire) == &blocked_lock, 0))
		panic("cpu_switch: thread \"%s\" (tid %d) chosen while still "
		    "switching out", newtd->td_name, newtd->td_tid);
	old->td_errno = *pc->pc_errnop;
	pc->pc_switch_from = old;
	pc->pc_switch_lock = mtx;
	pc->pc_curthread = newtd;
	pc->pc_cnt_switches++;
	newtd->td_switches++;
	ktr_event_record(KTR_SWITCH, static_cast<uint64_t>(newtd->td_tid),
	    newtd->td_priority, newtd->td_name,
	    (newtd->td_flags.load(std::memory_order_relaxed) & TDF_IDLETD) ?
		KTRF_IDLE : 0);
	// The idle thread runs on its OS thread's own stack (no made context).
	context from = context_resume(&newtd->td_ctx,
	    (old->td_flags.load(std::memory_order_relaxed) & TDF_IDLETD) ?
		nullptr : &old->td_ctx,
	    old->td_state == TDS_INACTIVE);
	cpu_switch_finish(from);
}

void
thread_entry(context from) noexcept
{
	cpu_switch_finish(from);
	// Like fork_exit(): we hold our CPU's run-queue lock, handed over by
	// the switch, inside the spinlock section the thread was created with.
	thread *td = curthread_fast();
	thread_unlock(td);
	try {
		td->td_entry(td->td_arg);
	} catch (const std::exception &e) {
		panic("uncaught exception in thread \"%s\" (tid %d): %s",
		    td->td_name, td->td_tid, e.what());
	} catch (...) {
		panic("uncaught exception in thread \"%s\" (tid %d)",
		    td->td_name, td->td_tid);
	}
	thread_exit();
}

void
mi_switch(int flags) noexcept
{
	thread *td = curthread_fast();
	if (__builtin_expect(td->td_spinlock_count != 1 || td->td_critnest != 1, 0))
		panic("mi_switch: switch in a critical section: thread \"%s\" "
		    "(tid %d) critnest %d spinlock count %d",
		    td->td_name, td->td_tid, td->td_critnest,
		    td->td_spinlock_count);
	sched_switch(td, flags);
	// Running again, maybe on another CPU, holding its run-queue lock,
	// which is now our container lock.
	thread_unlock(td);
}

} // namespace usmp

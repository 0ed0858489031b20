// Private to runtime/, sched/ and sync/: the seam between runtime/ and sched/,
// which sync/ also uses to block and wake threads (turnstiles, sleep queues).
//
// runtime/ owns contexts, CPUs, threads and the switch itself; sched/ owns
// run queues and every choice (which thread next, where a thread goes, when
// to preempt).  They call each other only through the functions declared
// here.  runtime/ declares what sched/ defines (and the reverse) so that
// runtime/ never includes a sched/ header.  A deterministic simulation
// policy (a later capability) replaces the sched/ side of this seam.
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/internal/spinlock.h"
#include "runtime/internal/timeout.h"

namespace usmp {

struct machine_config;
struct pcpu;
struct thread;

// ---- Switch flags (mi_switch / sched_switch), as FreeBSD's SW_* / SWT_*.
enum : int {
	SW_VOL = 0x0100,     // voluntary (yield, sleep, exit)
	SW_INVOL = 0x0200,   // involuntary (preemption)
	SW_PREEMPT = 0x0400, // preempted by a better thread: back at the head
	SWT_SLICE = 0x0001,  // time slice ended: back at the tail
	SWT_RELINQUISH = 0x0002, // thread_yield()
	SWT_BIND = 0x0004,   // sched_bind(): move to the bound CPU
	SWT_ASYNC = 0x0008,  // from the preemption signal
};

// Values of td_owepreempt.
enum : int { OWEPREEMPT_PRI = 1, OWEPREEMPT_SLICE = 2 };

// ---- Defined in runtime/ (runtime/switch.cc, runtime/thread.cc, ...).

// The permanently held lock a thread's td_lock points to while it is being
// switched out or moved: whoever needs the thread spins until it changes.
extern spinlock blocked_lock;

// Lock td's container lock (thread_lock(9)).  Enters a spinlock section.
void thread_lock(thread *td) noexcept;
void thread_unlock(thread *td) noexcept;
// Point td's lock at `lock`, which the caller holds, and release the old
// one, which the caller held (thread_lock_set).  The spinlock-section depth
// drops by one (one lock is now held instead of two).
void thread_lock_set(thread *td, spinlock *lock) noexcept;
// Block td's lock (td_lock := &blocked_lock) and return the old lock, still
// held.
spinlock *thread_lock_block(thread *td) noexcept;
// Spin until td is no longer in the middle of a switch.  Returns td's lock.
spinlock *thread_lock_block_wait(thread *td) noexcept;

// Switch from curthread.  Requires curthread's thread lock, held once
// (spinlock section depth 1); returns, when the thread runs again, with the
// lock released.
void mi_switch(int flags) noexcept;

// Save old's context and run newtd (cpu_switch(9)); `mtx` becomes old's
// td_lock once old's context is saved.  Requires the CPU's run-queue lock;
// returns (in old, maybe on another CPU) with that CPU's run-queue lock
// held.
void cpu_switch(thread *old, thread *newtd, spinlock *mtx) noexcept;

// The hardclock's clock (ns) and tick count, updated once per tick.
uint64_t coarse_ns() noexcept;

// Send the preemption IPI to a CPU.
void ipi_preempt(pcpu *pc) noexcept;
// Wake CPU pc, parked on its park word *word, which the waker exchanged
// from 1 to 0 (the park protocol: runtime/internal/idle.h).  Through the
// idle backend: a futex wake, or a message on the CPU's ring.
void ipi_wake(pcpu *pc, std::atomic<uint32_t> *word) noexcept;
// Park the calling CPU pc on *word while it holds `val`, at most until
// deadline_ns (0: no deadline): a futex wait, or a wait in the CPU's ring.
void cpu_park(pcpu *pc, std::atomic<uint32_t> *word, uint32_t val,
    uint64_t deadline_ns) noexcept;
// Deliver the calling CPU's pending interrupts (I/O completions) from its
// idle loop.  Returns how many ran (0 with the futex backend).
// Context: the CPU's idle thread, outside spinlock sections.
int cpu_intr_poll(pcpu *pc) noexcept;

// True once machine_shutdown() has begun.
extern std::atomic<bool> g_machine_stopping;
inline bool
machine_stopping() noexcept
{
	return g_machine_stopping.load(std::memory_order_relaxed);
}


// ---- Defined in sched/ (sched/sched_ule.cc).

void sched_boot(const machine_config &cfg, int ncpus) noexcept;
void sched_shutdown() noexcept;
// Wake CPU `cpu` if it is parked (shutdown).
void sched_shutdown_kick(int cpu) noexcept;
// Initialise the scheduler fields of a new thread (priority, CPU binding).
void sched_fork(thread *td, int pri, int bound_cpu) noexcept;
// Make a new thread runnable: on the creator's CPU, or its bound CPU.
void sched_add_new(thread *td) noexcept;
// Make a sleeping thread runnable.  Requires the lock td->td_lock points to
// (a wait lock, never a run-queue lock), which the caller still holds on
// return; td's lock is then its new CPU's run-queue lock.  Flags: SRQ_*.
enum : int {
	SRQ_WAKER_LEAVES = 0x1, // the waker is about to block or exit
};
void sched_wakeup(thread *td, int flags = 0) noexcept;
// Queue curthread as the switch requires and pick the next thread, then
// cpu_switch().  Requires curthread's thread lock, blocked by the caller
// into *mtx... see sched_ule.cc.  Returns with the run-queue lock held.
void sched_switch(thread *td, int flags) noexcept;
// Put curthread td to sleep on a wait structure (a sleep queue) locked by
// wl: the one-lock-round-trip form of thread_lock_set(td, wl) +
// mi_switch(SW_VOL).  Requires wl, then td's thread lock (its CPU's
// run-queue lock), and nothing else (spinlock depth 2), with td already
// marked inhibited and findable by wakers under wl.  td_lock is
// blocked_lock from before wl is released until td is saved, then wl.
// Returns, when td runs again, with nothing held.
void sched_sleep_switch(thread *td, spinlock *wl) noexcept;
// thread_yield() of curthread td (kern_yield): back to the tail of its
// CPU's queue, the best queued thread runs.  Requires no lock held.
void sched_yield(thread *td) noexcept;
// Put curthread to sleep until deadline_ns on its CPU's timer queue.
// Requires curthread's thread lock (its run-queue lock); returns with it
// released, after the deadline.
void sched_sleep_until(thread *td, uint64_t deadline_ns) noexcept;
// The idle loop of the calling CPU; returns at shutdown.
void sched_idle_loop(pcpu *pc) noexcept;
// Once per tick, on the hardclock thread: time slices, balancing, timers.
void sched_hardclock(uint64_t ticks) noexcept;
// In the preemption signal handler of the CPU: what is owed?  Returns 0, or
// OWEPREEMPT_PRI / OWEPREEMPT_SLICE, and runs due timers when safe.
int sched_ipi(pcpu *pc, bool can_lock) noexcept;
// Priority lending (turnstiles): td's effective priority becomes the better
// of its base priority and pri (PRI_MAX: nothing lent).  A queued thread is
// re-queued, a running one may owe a preemption.  Requires td's thread lock.
void sched_lend_prio(thread *td, int pri) noexcept;
void sched_unlend_prio(thread *td, int pri) noexcept;
// Print a CPU's run queue state ("show tdq"), for reports.
void sched_dump_cpu(int cpu) noexcept;
// The preemption signal could not preempt (the CPU was in code that may not
// be preempted): signal again at the next tick, until a switch happens.
void sched_ipi_retry(pcpu *pc) noexcept;
// Count of threads queued or running on a CPU (tests, counters).
int sched_load(int cpu) noexcept;

} // namespace usmp

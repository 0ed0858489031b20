// Private to runtime/, sched/ and interrupts/: the hooks through which the
// runtime reaches interrupt-event delivery and the subsystems' life cycle
// (sysinits), without including interrupts/ (three layers above it).
//
// interrupts/ registers them from static initialisers of its own objects, so
// a program that links no interrupt code pays nothing, and a program that
// does gets them before main().
//
// The interrupt points.  An interrupt queued for a CPU (pc_intr_pending set,
// the events on interrupts/' per-CPU list) is delivered by that CPU, by
// intr_deliver_pending(), at the first of:
//   1. its idle loop (sched/), before it parks and after every wake;
//   2. the preemption signal handler (runtime/intr.cc), when the interrupted
//      thread is in no critical or spinlock section;
//   3. the outermost critical_exit() / spinlock_exit() of a thread that was
//      in such a section when 2 came (td_owepreempt |= OWEPREEMPT_INTR,
//      taken in critical_exit_preempt(), runtime/switch.cc);
//   4. the hardclock's next tick re-sends the IPI to a CPU whose pending
//      word stayed set across a whole tick (the backstop for a thread that
//      reaches no preemption point: interrupts/' tick hook).
// sched_intr_kick() makes 1 or 2 happen: it wakes the CPU if it is parked,
// else sends it the preemption IPI.
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/pcpu.h"

namespace usmp {

// td_owepreempt bit: interrupts were queued for this CPU while the thread
// was in a critical or spinlock section; deliver them at its outermost exit.
// (OWEPREEMPT_PRI = 1 and OWEPREEMPT_SLICE = 2 are in the seam.)
inline constexpr int OWEPREEMPT_INTR = 4;

// Subsystem life-cycle hooks (the kernel's SYSINIT/SYSUNINIT, plus a tick),
// the one hook mechanism of the machine: the interrupt controller
// (interrupts/ring.cc) uses the machine and CPU hooks, the subsystems
// (interrupt events, callouts, taskqueues) the boot, shutdown and tick ones.
// The boot-side hooks (si_machine_boot, si_cpu_start, si_boot) are called
// in si_order order, the stop side (si_shutdown, si_cpu_stop,
// si_machine_shutdown) in the reverse order.  Registered once (static
// initialisers, or machine_boot() for the controller), never removed.
//
// machine_boot(): si_machine_boot(ncpus); each CPU's OS thread starts and
// calls si_cpu_start(pc); the hardclock starts; si_boot().
// machine_shutdown(): si_shutdown(); the machine stops; each CPU's OS thread,
// its idle loop returned, calls si_cpu_stop(pc) and ends;
// si_machine_shutdown().
struct sysinit {
	// On the booting OS thread, after the pcpus exist and before any
	// CPU's OS thread starts (the controller installs its idle backend,
	// or leaves the futex one and says why once, on stderr).
	void (*si_machine_boot)(int ncpus) noexcept = nullptr;
	// On CPU pc's OS thread, before its idle loop / after its idle loop
	// returned (machine stopping; other CPUs may still run theirs): cancel
	// and drain what is in flight while it is still a CPU.
	void (*si_cpu_start)(pcpu *pc) noexcept = nullptr;
	void (*si_cpu_stop)(pcpu *pc) noexcept = nullptr;
	// On the OS thread of machine_shutdown(), once every CPU's OS thread
	// has ended (nothing runs green code any more): free what they used.
	void (*si_machine_shutdown)() noexcept = nullptr;
	// After the CPUs and the hardclock run, on the booting OS thread (a
	// foreign thread: it may create and join green threads).
	void (*si_boot)() noexcept = nullptr;
	// At machine_shutdown(), before the machine stops, on the shutting-down
	// OS thread: end the green threads the boot hook made.
	void (*si_shutdown)() noexcept = nullptr;
	// Each hardclock tick, on the hardclock thread (a foreign OS thread:
	// spin locks and wakeups only, never sleep).  The hardclock ticks
	// only while some CPU is busy (tickless idle, runtime/intr.cc), or
	// while some si_tick_wanted says the subsystem needs the tick even
	// with every CPU parked (asked before each sleep of the hardclock,
	// on its thread; returns quickly, takes no lock a CPU may hold long).
	void (*si_tick)(uint64_t ticks) noexcept = nullptr;
	bool (*si_tick_wanted)() noexcept = nullptr;
	int si_order = 0;
	sysinit *si_next = nullptr;
};
// Context: static initialisation, or machine_boot() (no machine running).
void sysinit_register(sysinit *h) noexcept;
// A subsystem whose si_tick_wanted answer may just have turned true calls
// this after the change that makes it so (e.g. a callout inserted by a
// foreign OS thread while every CPU is parked): if the hardclock sleeps
// without a tick, it wakes and asks again.  Step 5 of the tickless
// protocol (runtime/intr.cc).  Context: any, including filters and
// foreign OS threads.
void hardclock_tick_wanted() noexcept;
// The interrupt controller's sysinit, defined in interrupts/ring.cc and
// registered by machine_boot() itself: that reference is what makes a
// static libusmp link the ring backend in, even into a program that calls
// nothing of interrupts/.
sysinit *intr_controller_sysinit() noexcept;

// Deliver the interrupts queued for pc's CPU.  Set once by interrupts/.
// Called on that CPU only, in no spinlock section, by any thread running
// there (the idle thread, or the interrupted thread inside the preemption
// signal handler); it opens its own spinlock section.
using intr_deliver_fn = void (*)(pcpu *pc) noexcept;
extern std::atomic<intr_deliver_fn> g_intr_deliver;

inline void
intr_deliver_pending(pcpu *pc) noexcept
{
	if (pc->pc_intr_pending.load(std::memory_order_acquire) == 0)
		return;
	intr_deliver_fn fn = g_intr_deliver.load(std::memory_order_acquire);
	if (fn != nullptr)
		fn(pc);
}

// Make CPU `cpu` look at its pending interrupts: wake it if it is parked,
// else send it the preemption IPI.  The caller has set pc_intr_pending with
// a seq_cst store before (it pairs with the idle loop's seq_cst store of its
// park word and re-read of the pending word).  Async-signal-safe (atomics, a
// futex wake or a signal through the seam).  Defined in sched/.
void sched_intr_kick(int cpu) noexcept;

} // namespace usmp

// Private to runtime/ and interrupts/: the idle backend (how an idle CPU waits
// and how an IPI wakes it).
//
// runtime/ owns the park protocol (below); interrupts/ supplies the device
// that implements it (interrupts/ring.cc: one io_uring per CPU), installed
// from the controller's sysinit (runtime/internal/intr_hook.h,
// intr_controller_sysinit()).  Until a controller installs a backend, or when it declines at boot (io_uring not permitted, or
// USMP_IDLE_BACKEND=futex in the environment), the futex backend of
// runtime/intr.cc is used.
//
// The park protocol (unchanged from the futex-only design; sched/ follows it,
// see sched/sched_ule.cc step 2):
//  1. The idle CPU stores 1 in its park word (seq_cst), re-reads its load
//     (seq_cst) and calls cpu_park(pc, word, 1, deadline) only if it is 0.
//  2. A waker that queued work on that CPU reads the word (seq_cst after its
//     seq_cst load increment); if it is 1 it exchanges it to 0 and, only if
//     the exchange saw 1, calls ipi_wake(pc, word).  So each park gets at
//     most one wake, and a park word of 0 means "awake or about to be".
//  3. ib_wait must return if the word no longer holds `val`, if ib_wake was
//     called at any time after the waker's exchange (before or during the
//     wait: the wake must be remembered, as a futex compares the word and
//     a ring keeps the wake's completion), or at the deadline.  Spurious
//     returns are allowed; the idle loop re-checks everything.
//  4. The preemption signal may land while the idle thread is in ib_wait;
//     sched_ipi() then stores 0 in the word to cut the park short.  ib_wait
//     must notice that store (the futex re-compares the word when the
//     interrupted wait restarts; the ring backend waits with the signal
//     blocked except inside the kernel's wait, as pselect does).
#pragma once

#include <atomic>
#include <cstdint>

namespace usmp {

struct pcpu;

struct idle_backend {
	const char *ib_name;
	// Park the calling CPU `pc` (its idle thread, outside any spinlock
	// section) while *word == val, at most until deadline_ns on
	// CLOCK_MONOTONIC (0: no deadline).  Step 3 above.
	void (*ib_wait)(pcpu *pc, std::atomic<uint32_t> *word, uint32_t val,
	    uint64_t deadline_ns) noexcept;
	// Wake CPU `pc` after exchanging its park word to 0 (step 2).
	// Context: any: a CPU (green thread, idle thread, preemption signal
	// handler outside spinlock sections), the hardclock, a foreign OS
	// thread, machine_shutdown().
	void (*ib_wake)(pcpu *pc, std::atomic<uint32_t> *word) noexcept;
	// Deliver the calling CPU's pending interrupts (may be null).  Called
	// by the idle loop while it spins and by the preemption signal handler
	// when the interrupted thread is outside critical sections.  Returns
	// the number delivered.  Context: the CPU `pc`, outside spinlock
	// sections.
	int (*ib_poll)(pcpu *pc) noexcept;
	// Whether CPU `pc` has interrupts waiting (may be null).  Lock-free,
	// racy; the hardclock asks it each tick and signals a busy CPU that
	// has some.  Context: any.
	bool (*ib_pending)(pcpu *pc) noexcept;
};

// The backend in use (the futex one by default).
const idle_backend *idle_backend_current() noexcept;
// Install `ib` (null: the futex backend).  Only from the interrupt
// controller's si_machine_boot hook, before any CPU runs.
void idle_backend_install(const idle_backend *ib) noexcept;

} // namespace usmp

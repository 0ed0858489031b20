// Per-CPU data: struct pcpu, one per CPU of the machine.
//
// A CPU is an OS thread pinned (hwloc) to a processing unit.  Its pcpu is
// reached from the OS thread (curpcpu()) and holds the running green thread,
// the idle thread (the OS thread's own stack, which runs the idle loop), the
// scheduler's run queue and the stack cache.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>

#include "runtime/stack.h"
#include "runtime/thread.h"

namespace usmp {

// Locking key: (c) constant after boot; (k) only this CPU (its OS thread,
// including its signal handler) touches it; (q) the CPU's run-queue lock;
// (a) atomic, ordering at the use.
struct alignas(64) pcpu {
	thread *pc_curthread = nullptr;     // (k) running thread
	thread *pc_idlethread = nullptr;    // (c)
	int pc_cpuid = NOCPU;               // (c)
	pthread_t pc_pthread{};             // (c) for IPIs (pthread_kill)
	int pc_os_tid = 0;                  // (c) Linux tid
	void *pc_sched = nullptr;           // (c) the scheduler's per-CPU queue
	thread *pc_switch_from = nullptr;   // (k) thread being switched out
	spinlock *pc_switch_lock = nullptr; // (k) its thread lock after the switch
	stack_cache pc_stacks;              // (k) ready stacks
	int *pc_errnop = nullptr;           // (c) this OS thread's errno
	uint64_t pc_switchticks = 0;        // (k) tick of the last switch
	std::atomic<uint32_t> pc_idle_word{0}; // (a) park futex: 0 running, 1 parked
	std::atomic<uint32_t> pc_ipi_pending{0}; // (a) an IPI is pending
	// (a) interrupts are queued for this CPU (interrupts/): set seq_cst by
	// the firer before it kicks the CPU, exchanged to 0 by the CPU before
	// it takes the queue (runtime/internal/intr_hook.h).
	std::atomic<uint32_t> pc_intr_pending{0};
	int pc_pu = -1;                     // (c) processing unit it is pinned to
	// Counters (k), read racily by observers.
	uint64_t pc_cnt_switches = 0;
	uint64_t pc_cnt_preempt = 0;
	uint64_t pc_cnt_async_preempt = 0;
	uint64_t pc_cnt_steals = 0;
	uint64_t pc_cnt_parks = 0;
	uint64_t pc_cnt_ipis = 0;
	uint64_t *pc_counters = nullptr;    // (c) counter_u64 block (counters.cc)
};

// The pcpu of the calling OS thread, or null on a foreign OS thread.
pcpu *curpcpu() noexcept;

// The pcpu of CPU `cpu` of the running machine (0 <= cpu < mp_ncpus()).
pcpu *pcpu_find(int cpu) noexcept;

} // namespace usmp

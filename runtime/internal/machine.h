// Private to runtime/: the state of the running machine.
#pragma once

#include <atomic>
#include <cstdint>

#include "runtime/internal/curthread.h"
#include "runtime/internal/spinlock.h"
#include "runtime/machine.h"
#include "runtime/pcpu.h"

namespace usmp {

// Per-CPU list of the live green threads created there (for the shutdown
// report and the thread dump).  A thread is removed from the list of the CPU
// that created it, whatever CPU it exits on.
struct alignas(64) thread_list {
	spinlock tl_lock;
	thread *tl_head = nullptr;
	long tl_count = 0;
};

struct machine_state {
	machine_config ms_config;
	int ms_ncpus = 0;
	pcpu *ms_pcpus = nullptr;            // [ms_ncpus]
	thread_list *ms_threads = nullptr;   // [ms_ncpus + 1]; the last: foreign creators
	std::atomic<bool> ms_running{false};
	std::atomic<int> ms_next_tid{1};
};

extern machine_state g_machine;


// runtime/thread.cc
void thread_list_insert(thread *td, int list) noexcept;
void thread_list_remove(thread *td) noexcept;
// Called by cpu_switch's finish when td has switched out for the last time.
void thread_switched_out_dead(thread *td) noexcept;
// The first code a new thread runs.
void thread_entry(context from) noexcept;
// Make the idle thread of a CPU.
thread *thread_make_idle(int cpu) noexcept;

// runtime/intr.cc
void preempt_init() noexcept;
void hardclock_start() noexcept;
void hardclock_stop() noexcept;
// runtime/machine.cc: the machine hooks' si_tick and si_tick_wanted,
// from the hardclock.
void sysinit_tick(uint64_t ticks) noexcept;
// Whether a subsystem needs the hardclock's tick with every CPU parked.
bool sysinit_tick_wanted() noexcept;

// runtime/topology.cc
int topology_npus() noexcept;
// Pin the calling OS thread to processing unit `pu` (modulo the count).
int topology_pin(int pu) noexcept;

// runtime/counters.cc: make (zeroed) and hand out the per-CPU counter
// blocks, before any CPU runs; keep the procedures' last values, once the
// CPUs have stopped and while the pcpus still exist.
void counters_boot(pcpu *pcpus, int ncpus) noexcept;
void counters_shutdown() noexcept;

// runtime/ktr.cc: make the trace rings (USMP_KTR), before any CPU runs.
void ktr_boot(int ncpus) noexcept;

// A thread's state in words ("blocked", "sleeping", "runnable", ...), for
// the shutdown report and thread dumps.  Defined in runtime/machine.cc.
const char *td_state_name(td_state_t st, uint8_t inhib) noexcept;

// runtime/dump.cc: the dump signal's handler and dumper thread (sig 0: none).
void dump_signal_start(int sig) noexcept;
void dump_signal_stop() noexcept;

// runtime/codemap.cc
int codemap_init() noexcept;
bool codemap_preemptible(uintptr_t pc) noexcept;

} // namespace usmp

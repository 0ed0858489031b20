// Private to runtime/, sched/, sync/ and interrupts/: the hooks of the deterministic
// simulation (runtime/sim.cc) where the machine's floor changes.
//
// Each hook is called only behind sim_active() (runtime/sim.h), so the
// default machine pays one predictable branch on a global at most.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "runtime/sim.h"

namespace usmp {

struct idle_backend;
struct pcpu;
struct thread;

// ---- runtime/machine.cc, at boot and shutdown.

// Turn the simulation on (before the interrupt controller's boot hook, which
// then declines: no io_uring in a simulation) and reset virtual time.
void sim_prepare(const machine_config &cfg, int ncpus) noexcept;
// Make the CPUs' and the hardclock's simulated agents; each CPU agent runs
// cpu_run(pc) (the body of a CPU's OS thread) when first scheduled.
void sim_boot(pcpu *pcpus, int ncpus, void (*cpu_run)(pcpu *pc) noexcept) noexcept;
// The idle backend of a simulated CPU (park = hand the OS thread back).
const idle_backend *sim_idle_backend() noexcept;
// Shutdown: stop the hardclock agent, drive the simulation until every CPU
// agent has left its idle loop, then free the agents and turn it off.
void sim_stop_hardclock() noexcept;
void sim_wait_cpus_done() noexcept;
void sim_teardown() noexcept;

// ---- Blocking and spinning.

// The calling OS thread (the one that booted the simulated machine, not a
// CPU) must wait until pred(arg): run the simulation until then.  A
// deadlock on the way is reported (and ends the run).
void sim_drive(bool (*pred)(void *arg), void *arg) noexcept;
// The driving OS thread would sleep on a futex word while *word == val
// (sleep queues, turnstiles, a foreign OS thread's wait): run the
// simulation until it changes or virtual time reaches deadline_ns (0:
// none).  Returns at once on any other OS thread (it then blocks as usual).
void sim_wait_word(std::atomic<uint32_t> *word, uint32_t val,
    uint64_t deadline_ns) noexcept;
// One step of a spin-wait: a CPU hands the OS thread back (it may run
// again once another agent made progress); the driving OS thread runs one
// step of the simulation.
void sim_spin() noexcept;
// Called by thread_yield() before it yields (a point).
void sim_yield_point() noexcept;

// ---- Interrupts and time (runtime/intr.cc, interrupts/ring.cc).

// The virtual clock (ns) and whether a preemption IPI was recorded for pc
// (ipi_preempt in a simulation only marks it: the CPU takes it at its next
// point).
uint64_t sim_clock_ns() noexcept;
void sim_ipi(pcpu *pc) noexcept;
// The event timer of the calling CPU (interrupts/internal/eventtimer.h):
// arm for deadline (or move earlier).  The clock handler runs at the CPU's
// next interrupt point once virtual time reaches it.
bool sim_timer_arm(uint64_t deadline_ns) noexcept;
void sim_set_clock_intr(void (*fn)(int cpu) noexcept) noexcept;

// runtime/intr.cc: the hardclock's work at virtual time now (timeouts due,
// then a tick if one is due), on the hardclock agent; and its next deadline
// (the next tick or timeout; with_tick false: the next timeout only).
void hardclock_sim_run(uint64_t now) noexcept;
uint64_t hardclock_sim_next(bool with_tick) noexcept;
// runtime/intr.cc: what the preemption signal handler does, at a simulated
// interrupt point of CPU pc; `may_switch`: the thread may be switched here
// (no critical or spinlock section, not the idle thread).
void preempt_sim_deliver(pcpu *pc, bool may_switch) noexcept;

// runtime/switch.cc: make td the calling OS thread's stand-in struct thread
// (curthread() off any CPU); returns the previous one (may be null).
thread *foreign_swap(thread *td) noexcept;

// ---- Per-agent storage for what the runtime keeps per OS thread and means
// per CPU (WITNESS's spin-lock list): zeroed `size` bytes for the running
// agent (a CPU, the hardclock or the driving thread), slot `key`.
enum : int { SIM_LOCAL_WITNESS = 0, SIM_LOCAL_COUNT = 1 };
void *sim_agent_local(int key, std::size_t size) noexcept;

// Something the simulation does not control happened (an OS thread other
// than the simulation's woke or made a thread; real I/O, interrupts/io.cc):
// counted, flagged on the next step of the log, named (`prefix` `what`) in
// the log's header and in a warning: replay cannot be trusted.
void sim_uncontrolled(const char *what, const char *what2 = "") noexcept;

} // namespace usmp

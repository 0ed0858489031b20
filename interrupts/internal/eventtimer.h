// Private to interrupts/: the per-CPU event timer (the kernel's
// eventtimers(4) "one-shot" mode), between the callout wheels
// (interrupts/callout.cc) and the ring that implements it
// (interrupts/ring.cc).
//
// Each CPU's ring holds at most one IORING_OP_TIMEOUT (absolute, on
// CLOCK_MONOTONIC), armed for the earliest time the CPU's callout wheel
// wants to be looked at.  Its completion is a clock interrupt of that CPU:
// the ring calls callout_clock_intr() in primary interrupt context (a
// spinlock section on the CPU).  An idle CPU waits in its ring, so the
// timer is what ends its wait: no periodic tick wakes it.
#pragma once

#include <cstdint>

namespace usmp {

// Arm the calling CPU's event timer for deadline_ns (CLOCK_MONOTONIC), or
// move it earlier if it is armed for later; a later deadline than the
// armed one is ignored (the timer's interrupt re-arms for what is then
// next).  Returns false if the CPU has no ring (futex backend, foreign OS
// thread): the hardclock then drives the wheels.  Requires a spinlock
// section on a CPU.  Never drains the CQ (no completion handler runs).
bool ring_timer_arm(uint64_t deadline_ns) noexcept;

// Whether the running machine's CPUs have event timers (rings).
// Context: any.
bool ring_timer_enabled() noexcept;

// The clock interrupt: CPU `cpu`'s event timer expired.  The ring calls
// the handler set here in primary interrupt context on that CPU.  Set once,
// by interrupts/callout.cc's static initialiser (callout_clock_intr): a
// function pointer rather than a call, so that a program that uses no
// callout does not link the callout wheels (and their softclock threads)
// in just because it links the ring.
using clock_intr_fn = void (*)(int cpu) noexcept;
void ring_timer_set_handler(clock_intr_fn fn) noexcept;

} // namespace usmp

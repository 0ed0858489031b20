// The scheduler's public calls: pinning, binding, priorities, preemption
// points (sched_pin(9), sched_bind(9), kern_yield(9), maybe_yield(9)).
//
// Scheduling in usmp is FreeBSD ULE's shape on a smaller scale: one run queue
// per CPU (64 queues and a bitmap, sched/runq.h), threads placed at wakeup
// (affinity to the last CPU while it is cheap, otherwise the least loaded),
// idle CPUs that steal and then park until an IPI, timeshare threads rotated
// by time slice at preemption points, and preemption when a better interrupt
// or realtime thread becomes runnable.  Full preemption (a boot option, the
// kernel's FULL_PREEMPTION) preempts for every better priority, and also
// asynchronously, by a signal, while application code runs.
#pragma once

#include "sched/priority.h"

namespace usmp {

struct thread;

// Keep the current thread on its CPU until the matching sched_unpin().
// Nests.  Context: a green thread (no-op on a foreign OS thread).
void sched_pin() noexcept;
void sched_unpin() noexcept;

// Move the current thread to `cpu` and keep it there (until sched_unbind()).
// Returns 0, or EINVAL for a CPU that does not exist.  Context: a green
// thread, may switch, not inside a critical section.
int sched_bind(int cpu) noexcept;
void sched_unbind() noexcept;
bool sched_is_bound() noexcept;

// Set the base priority of td (PRI_MIN..PRI_MAX).  Takes effect at once: a
// runnable thread is re-queued, a better one may preempt.  Returns 0 or
// EINVAL.  Context: any green thread.
int sched_prio(thread *td, int pri) noexcept;

// A preemption point: switch if a preemption or the end of the time slice
// is pending.  Context: may switch.
void maybe_yield() noexcept;
// True if maybe_yield() would switch.
bool should_yield() noexcept;

// Test hook: whether the machine runs in full-preemption mode.
bool sched_full_preemption() noexcept;

} // namespace usmp

// critical_enter(9), critical_exit(9) and the spinlock sections under spin
// locks.
//
// A critical section keeps the current thread on its CPU and defers any
// preemption: a preemption requested inside (by a wakeup of a better thread,
// the end of a time slice, or the preemption signal) sets td_owepreempt and
// is taken at the exit of the outermost section, never dropped.  Like the
// kernel's, it is only a compiler barrier: it orders nothing between CPUs and
// must not be used to protect shared data.
//
// A spinlock section (spinlock_enter) is a critical section that also
// "disables interrupts" on the CPU: the preemption signal and, later,
// interrupt delivery are deferred while the count is non-zero.  Every spin
// lock is held inside one.
#pragma once

#include <atomic>

#include "runtime/internal/curthread.h"
#include "runtime/thread.h"

namespace usmp {

// Take a deferred preemption (out of line: the rare path).
void critical_exit_preempt() noexcept;
// Panic: critical_exit() without critical_enter().
[[noreturn]] void critical_exit_underflow(thread *td) noexcept;
// Panic: spinlock_exit() without spinlock_enter().
[[noreturn]] void spinlock_exit_underflow(thread *td) noexcept;

// Context: any, including filters and signal handlers of the CPU.
inline void
critical_enter() noexcept
{
	thread *td = curthread_fast();
	td->td_critnest = td->td_critnest + 1;
	std::atomic_signal_fence(std::memory_order_seq_cst);
}

// Context: any; must match a critical_enter() on the same thread.
inline void
critical_exit() noexcept
{
	thread *td = curthread_fast();
	std::atomic_signal_fence(std::memory_order_seq_cst);
	int n = td->td_critnest;
	if (__builtin_expect(n <= 0, 0))
		critical_exit_underflow(td);
	td->td_critnest = n - 1;
	std::atomic_signal_fence(std::memory_order_seq_cst);
	if (__builtin_expect(n == 1 && td->td_owepreempt != 0, 0))
		critical_exit_preempt();
}

// spinlock_enter() and spinlock_exit() for curthread td, for callers that
// have it at hand.  The first section of a thread enters a critical section,
// then counts itself; the last one uncounts itself, then leaves the critical
// section.  The signal fences keep that order against the CPU's preemption
// handler, which reads both counts of the thread it interrupts.  Inline:
// every spin lock, thread lock and sleep-queue chain lock takes them.
inline void
spinlock_enter_td(thread *td) noexcept
{
	// The outermost entry is the common case: the fall-through.
	if (__builtin_expect(td->td_spinlock_count == 0, 1)) {
		td->td_critnest = td->td_critnest + 1;
		std::atomic_signal_fence(std::memory_order_seq_cst);
		td->td_spinlock_count = 1;
	} else {
		td->td_spinlock_count = td->td_spinlock_count + 1;
	}
	std::atomic_signal_fence(std::memory_order_seq_cst);
}

inline void
spinlock_exit_td(thread *td) noexcept
{
	std::atomic_signal_fence(std::memory_order_seq_cst);
	int n = td->td_spinlock_count - 1;
	td->td_spinlock_count = n;
	// The outermost exit is the common case (a spin lock alone): laid
	// out as the fall-through.
	if (__builtin_expect(n == 0, 1)) {
		std::atomic_signal_fence(std::memory_order_seq_cst);
		int c = td->td_critnest;
		td->td_critnest = c - 1;
		std::atomic_signal_fence(std::memory_order_seq_cst);
		if (__builtin_expect(c == 1 && td->td_owepreempt != 0, 0))
			critical_exit_preempt();
	} else if (__builtin_expect(n < 0, 0)) {
		// Tested off the common path (the outermost exit).
		spinlock_exit_underflow(td);
	}
}

// Context: any.
inline void
spinlock_enter() noexcept
{
	spinlock_enter_td(curthread_fast());
}

inline void
spinlock_exit() noexcept
{
	spinlock_exit_td(curthread_fast());
}

// RAII critical section.
class critical_section {
public:
	critical_section() noexcept { critical_enter(); }
	~critical_section() { critical_exit(); }
	critical_section(const critical_section &) = delete;
	critical_section &operator=(const critical_section &) = delete;
};

} // namespace usmp

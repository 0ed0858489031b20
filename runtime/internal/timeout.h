// Private to runtime/, sched/ and sync/: timeouts, the machine's softclock
// until interrupts/ brings callouts.  struct thread embeds one (the timeout
// of a timed sleep), which is why this small header stands apart from the
// rest of the seam.
#pragma once

#include <cstdint>

namespace usmp {

// Timeouts: fn(arg) runs once, at or after deadline_ns (CLOCK_MONOTONIC),
// on the hardclock thread (a foreign OS thread: it may take spin locks and
// wake threads, never sleep).  The entry belongs to the caller (e.g. in a
// struct thread) and must stay valid while armed.  timeout_disarm() returns
// true if it removed an armed entry (fn will not run), false if fn already
// ran or is running: the caller's own locking must settle that race (as
// sleepq_timeout() does with TDF_TIMEOUT).  Until interrupts/ brings
// callouts, this is the machine's softclock.
struct timeout {
	uint64_t to_deadline = 0;
	void (*to_fn)(void *) = nullptr;
	void *to_arg = nullptr;
	int to_index = -1; // place in the heap; -1 when not armed
};
void timeout_arm(timeout *t, uint64_t deadline_ns, void (*fn)(void *),
    void *arg) noexcept;
bool timeout_disarm(timeout *t) noexcept;

} // namespace usmp

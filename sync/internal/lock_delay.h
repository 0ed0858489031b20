// Private to sync/ (mutex.cc, rwlock.cc): the backoff of a thread spinning
// on a lock word.
#pragma once

#include "runtime/internal/spinlock.h"

namespace usmp {

// Pause `delay` times (the x86 PAUSE hint: the spinning hyperthread yields
// its core's resources and the loop stops flooding the memory system),
// then double `delay` up to `max`.  Exponential backoff keeps the waiters
// of a hot word from re-reading it in lockstep.
inline void
lock_delay(unsigned &delay, unsigned max) noexcept
{
	// Simulated (runtime/sim.h): the lock's holder runs only when this
	// CPU hands the OS thread back, so each step hands it back instead of
	// pausing, and `delay` stays below max: a caller that gives up
	// pausing at max (spin_mutex's sched_yield) would spin for ever.
	if (__builtin_expect(sim_detail::g_sim_on, false)) {
		sim_spin();
		if (delay * 2 < max)
			delay <<= 1;
		return;
	}
	for (unsigned i = 0; i < delay; i++)
		__builtin_ia32_pause();
	if (delay < max)
		delay <<= 1;
}

} // namespace usmp

// Private to sync/ (mutex.cc, rwlock.cc): the backoff of a thread spinning
// on a lock word.
#pragma once

namespace usmp {

// Pause `delay` times (the x86 PAUSE hint: the spinning hyperthread yields
// its core's resources and the loop stops flooding the memory system),
// then double `delay` up to `max`.  Exponential backoff keeps the waiters
// of a hot word from re-reading it in lockstep.
inline void
lock_delay(unsigned &delay, unsigned max) noexcept
{
	for (unsigned i = 0; i < delay; i++)
		__builtin_ia32_pause();
	if (delay < max)
		delay <<= 1;
}

} // namespace usmp

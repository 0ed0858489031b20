// Test support, for tests/ only: helpers of the tests of usmp's
// observability (dumps, traces, counters).
//
//     std::string s = test::capture([](std::FILE *f) { thread_dump(f); });
//     test::wait_blocked_on_lock(t.native_handle());
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/thread.h"

namespace usmp::test {

// What write(f) writes to a FILE, as a string (an open_memstream).
template <class F>
std::string
capture(F &&write)
{
	char *buf = nullptr;
	std::size_t len = 0;
	std::FILE *f = open_memstream(&buf, &len);
	if (f == nullptr)
		return "";
	write(f);
	std::fclose(f);
	std::string s(buf, len);
	std::free(buf);
	return s;
}

// Whether td is blocked on a lock (a turnstile: inhibited with TDI_LOCK).
// A racy read, as a test waiting for that state needs.
inline bool
blocked_on_lock(const thread *td) noexcept
{
	return __atomic_load_n(&td->td_state, __ATOMIC_ACQUIRE) == TDS_INHIBITED &&
	    (__atomic_load_n(&td->td_inhibitors, __ATOMIC_RELAXED) & TDI_LOCK);
}

// Yield until td blocks on a lock.  Context: a green thread.
inline void
wait_blocked_on_lock(const thread *td) noexcept
{
	while (!blocked_on_lock(td))
		thread_yield();
}

} // namespace usmp::test

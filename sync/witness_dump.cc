// The thread dump's "locks held" lines (runtime/dump.h) from WITNESS's
// "show locks" (sync/witness.h), and the lock and owner a blocked thread
// waits for, from its turnstile (sync/turnstile.h): runtime/ cannot call
// sync/, so the dump calls hooks, installed here at static initialisation.
//
// What is shown: the sleep locks each thread holds, as WITNESS tracks them
// (name, type, recursion, where taken), newest first; for the thread that
// dumps, also the spin locks of its CPU.  A dump reads other threads' lists
// without their owners' consent, as ddb's `show alllocks` does: a thread
// that takes or drops a lock meanwhile may be shown with or without it.
// With WITNESS compiled out (or its mode off) nothing is tracked and no
// lines are shown.
//
// Static linking: nothing calls into this file, so sync/lock.cc (linked by
// every lock) keeps a reference to g_witness_dump_hooked, which pulls this
// object file, and so its initialiser, out of libusmp.a.
#include <string>

#include "runtime/config.h"
#include "runtime/dump.h"
#include "sync/turnstile.h"
#include "sync/witness.h"

namespace usmp {

namespace {

// Requires the thread's live-thread list lock (dump.h): td stays valid.
// Runs in a spinlock section: WITNESS's show-locks takes no sleep lock.
void
witness_dump_locks(const thread *td, void (*emit)(void *ctx, const char *line),
    void *ctx)
{
	try {
		std::string s;
		witness_show_locks(td, witness_out_string(s));
		// One emit() per line, without its newline.
		std::size_t at = 0;
		while (at < s.size()) {
			std::size_t nl = s.find('\n', at);
			if (nl == std::string::npos)
				nl = s.size();
			emit(ctx, s.substr(at, nl - at).c_str());
			at = nl + 1;
		}
	} catch (...) {
		// Out of memory: fewer lines rather than no dump.
	}
}

bool
hook() noexcept
{
	if constexpr (config::witness)
		thread_dump_set_locks_hook(witness_dump_locks);
	thread_dump_set_blocked_hook(turnstile_describe_blocked);
	return true;
}

} // namespace

// Referenced by sync/lock.cc (see above).
extern const bool g_witness_dump_hooked;
const bool g_witness_dump_hooked = hook();

} // namespace usmp

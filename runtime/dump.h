// Thread dumps: every green thread with its id, name, state, CPU, base and
// lent priority, wait channel and message, and the locks it holds: the Java
// and Go habit (kill -QUIT), with the content of the kernel debugger's `ps`
// and `show alllocks`.
//
//     usmp::thread_dump(stderr);                // from anywhere, any time
//     kill -QUIT <pid>                          // machine_config::dump_signal
//
// A dump reads other threads' fields without their thread locks (as ddb's
// `ps` does): a thread that changes state meanwhile may be shown in its old
// or new state, never torn into freed memory (the live-thread lists are
// locked while they are walked).  A thread blocked on a lock is shown with
// the lock's owner, e.g. `wchan 0x... "so_rcv" (sleep mutex "so_rcv",
// owner "reader" tid 7)`: the kernel's `show turnstile`, inline.
#pragma once

#include <cstddef>
#include <cstdio>

namespace usmp {

struct thread;

// Write the dump to f.  Context: a green thread or a foreign OS thread, no
// spin lock held; allocates.  Not async-signal-safe (the dump signal hands
// the work to a thread, see runtime/dump.cc).
void thread_dump(std::FILE *f) noexcept;

// The hook the dump calls for each thread, to print the locks it holds
// (sync/'s WITNESS installs it).  It runs with the thread's live-thread list
// locked (a spin lock: it must not sleep or take sleep locks) and calls
// emit(ctx, line) once per lock held, each line without a newline, e.g.
// `exclusive sleep mutex "so_rcv" (sleep mutex) r = 0 @ socket.cc:120`.
using thread_dump_locks_fn = void (*)(const thread *td,
    void (*emit)(void *ctx, const char *line), void *ctx);
void thread_dump_set_locks_hook(thread_dump_locks_fn fn) noexcept;

// The hook the dump calls for a thread blocked on a lock, to name the lock
// and its owner (sync/ installs it): it writes the lock's class and name to
// buf and returns true, with *owner the owning thread or null (none, or
// anonymous readers).  Same context as the locks hook.  The dump names the
// owner only if it is one of the threads it lists, and never dereferences
// it otherwise (a stale owner may be gone).
using thread_dump_blocked_fn = bool (*)(const thread *td, char *buf,
    std::size_t len, const thread **owner);
void thread_dump_set_blocked_hook(thread_dump_blocked_fn fn) noexcept;

} // namespace usmp

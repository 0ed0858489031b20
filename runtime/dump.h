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
// locked while they are walked).
#pragma once

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

} // namespace usmp

// panic(9) and KASSERT for usmp.
//
// panic() never allocates and takes no lock: it formats into a buffer on the
// stack, writes the message with the CPU, the current thread and a backtrace
// to stderr with write(2), then aborts.  Messages name the call, the object
// and the call site, in FreeBSD's formats where they exist:
//     mtx_unlock() of mutex "vnode interlock" not owned @ fs.cc:88
#pragma once

#include "runtime/config.h"

namespace usmp {

// Context: any, including signal handlers.
[[noreturn]] void panic(const char *fmt, ...) noexcept
    __attribute__((format(printf, 1, 2), cold));

// Print a one-line diagnostic (no abort), in the same no-allocation way.
// Context: any, including signal handlers.
void printf_diag(const char *fmt, ...) noexcept
    __attribute__((format(printf, 1, 2)));

// Hook that lets upper layers (sync/ for WITNESS "locks held") append lines to
// a panic report.  Set once at start-up; called from panic() with the buffer
// writer.  May be null.
using panic_hook_fn = void (*)(void (*write)(const char *, unsigned long));
void panic_set_hook(panic_hook_fn fn) noexcept;

} // namespace usmp

// KASSERT: checked only under USMP_INVARIANTS, compiled (and type-checked)
// always.
#define USMP_KASSERT(cond, ...)                                              \
	do {                                                                 \
		if constexpr (::usmp::config::invariants) {                  \
			if (__builtin_expect(!(cond), 0))                    \
				::usmp::panic(__VA_ARGS__);                  \
		}                                                            \
	} while (0)

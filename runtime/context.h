// Machine contexts: the one seam to Boost.Context.
//
// runtime/context.cc is the only file that includes Boost.Context; everything
// else sees a context as an opaque word.  A context is the saved state of a
// suspended execution (a boost::context::fiber continuation).  It is
// consumed when resumed: context_resume() takes the target's context and
// returns, when someone later resumes *us*, the context of whoever did so.
// The switch code (runtime/switch.cc) stores that returned context into the
// thread that switched to us ("finish the switch"), as FreeBSD's cpu_switch
// hands the old thread over to the new one.
//
// Sanitizers and Valgrind follow every switch here: AddressSanitizer's fiber
// annotations (the stack the context runs on travels with the context),
// ThreadSanitizer's fibers (one per context made, the OS thread's own for a
// context of an OS thread's stack), Valgrind's stack registration.
#pragma once

#include <cstddef>

#include "runtime/config.h"

// Whether a switch must carry the suspended context's description to the
// resumed side (sanitizer builds: see context.cc).
#define USMP_CONTEXT_NOTES (USMP_SANITIZE_ADDRESS || USMP_SANITIZE_THREAD)

namespace usmp {

struct context {
	void *c_word = nullptr; // a boost::context::fiber, stored bit for bit
	// The stack it runs on (AddressSanitizer), its ThreadSanitizer fiber and
	// its Valgrind stack id: kept in every build, so that the layout of
	// struct thread does not depend on the sanitizers.
	const void *c_stack_lo = nullptr;
	std::size_t c_stack_size = 0;
	void *c_tsan_fiber = nullptr;
	unsigned c_vg_stack = 0;
	bool c_made = false; // by context_make (its fiber and stack id are ours)
	bool valid() const noexcept { return c_word != nullptr; }
};

// First code run by a new context: `from` is the context that resumed it.
// It must never return.
using context_entry_fn = void (*)(context from);

// Build a context on the stack [lo, top) (top aligned to 16) that calls
// entry(from) when first resumed.  Context: any.
void context_make(context *c, void *lo, void *top, context_entry_fn entry) noexcept;

// Resume *to (which becomes invalid) and return the context that resumes us
// later.  `self`: the context we run on (its c_word is stale; its stack,
// fiber and Valgrind id are passed on to whoever saves us), or null for an
// OS thread's own stack.  `last`: the caller never runs again (an exiting
// thread), so the sanitizers may drop what they keep for its stack.
// Context: any; the caller owns every protocol around it.
context context_resume(context *to, const context *self = nullptr,
    bool last = false) noexcept;

// Save `from` (what context_resume() returned, or what a context entry
// received) as the context of the thread that was suspended, *dst.  Only a
// sanitizer build learns anything at a switch (ASan the bounds of an OS
// thread's own stack, TSan its fiber), so without one only the fiber word
// is copied: the rest of *dst was set by context_make() and stays.
inline void
context_save(context *dst, const context &from) noexcept
{
#if USMP_CONTEXT_NOTES
	*dst = from;
#else
	dst->c_word = from.c_word;
#endif
}

// Forget a context without unwinding it: for the context of a thread that
// exited (its stack is going back to the cache; nothing on it is unwound).
// Releases its ThreadSanitizer fiber and Valgrind stack registration.
void context_forget(context *c) noexcept;

// True when the process runs under Valgrind (its client request; false when
// built without valgrind/valgrind.h).  Valgrind 3.19 treats io_uring_enter as
// a system call that does not block, and its signal handling then asserts
// when the preemption signal lands in a CPU waiting in its ring; the
// interrupt controller uses the futex backend instead.  Context: any.
bool context_under_valgrind() noexcept;

} // namespace usmp

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
#pragma once

#include <cstddef>

namespace usmp {

struct context {
	void *c_word = nullptr; // a boost::context::fiber, stored bit for bit
	bool valid() const noexcept { return c_word != nullptr; }
};

// First code run by a new context: `from` is the context that resumed it.
// It must never return.
using context_entry_fn = void (*)(context from);

// Build a context on the stack [lo, top) (top aligned to 16) that calls
// entry(from) when first resumed.  Context: any.
void context_make(context *c, void *lo, void *top, context_entry_fn entry) noexcept;

// Resume *to (which becomes invalid) and return the context that resumes us
// later.  Context: any; the caller owns every protocol around it.
context context_resume(context *to) noexcept;

// Forget a context without unwinding it: for the context of a thread that
// exited (its stack is going back to the cache; nothing on it is unwound).
inline void context_forget(context *c) noexcept { c->c_word = nullptr; }

} // namespace usmp

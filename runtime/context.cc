// The only file that includes Boost.Context (see runtime/context.h).
//
// A usmp context is a boost::context::fiber kept bit for bit in one word, so
// that struct thread does not need Boost's headers.  We never let a fiber
// object with a live continuation run its destructor: that would unwind the
// suspended stack, and usmp owns its stacks and never unwinds them (a thread
// that exits is forgotten, its stack goes back to the cache).
#include "runtime/context.h"

#include <boost/context/fiber.hpp>
#include <boost/context/preallocated.hpp>
#include <boost/context/stack_context.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "runtime/panic.h"

namespace usmp {

namespace bctx = boost::context;

static_assert(sizeof(bctx::fiber) == sizeof(void *),
    "a boost::context::fiber must be one word");

namespace {

// Stacks belong to usmp (runtime/stack.h); Boost must not free them.
struct no_dealloc {
	bctx::stack_context allocate() { std::abort(); }
	void deallocate(bctx::stack_context &) noexcept {}
};

// Move a fiber into a context word without running any destructor.
inline void
store(context *c, bctx::fiber &&f) noexcept
{
	alignas(bctx::fiber) unsigned char buf[sizeof(bctx::fiber)];
	::new (buf) bctx::fiber(std::move(f));
	std::memcpy(&c->c_word, buf, sizeof(void *));
}

// Take the fiber out of a context word; the word becomes invalid.
inline bctx::fiber
take(context *c) noexcept
{
	bctx::fiber f;
	std::memcpy(static_cast<void *>(&f), &c->c_word, sizeof(void *));
	c->c_word = nullptr;
	return f;
}

} // namespace

void
context_make(context *c, void *lo, void *top, context_entry_fn entry) noexcept
{
	bctx::stack_context sctx;
	sctx.sp = top;
	sctx.size = static_cast<std::size_t>(static_cast<char *>(top) -
	    static_cast<char *>(lo));
	bctx::preallocated palloc(top, sctx.size, sctx);
	bctx::fiber f(std::allocator_arg, palloc, no_dealloc{},
	    [entry](bctx::fiber &&from) -> bctx::fiber {
		    context fromc;
		    store(&fromc, std::move(from));
		    entry(fromc);
		    panic("context_make: context entry returned");
	    });
	store(c, std::move(f));
}

context
context_resume(context *to) noexcept
{
	bctx::fiber f = take(to);
	bctx::fiber from = std::move(f).resume();
	context r;
	store(&r, std::move(from));
	return r;
}

} // namespace usmp

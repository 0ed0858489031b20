// The only file that includes Boost.Context (see runtime/context.h).
//
// A usmp context is a boost::context::fiber kept bit for bit in one word, so
// that struct thread does not need Boost's headers.  We never let a fiber
// object with a live continuation run its destructor: that would unwind the
// suspended stack, and usmp owns its stacks and never unwinds them (a thread
// that exits is forgotten, its stack goes back to the cache).
//
// Sanitizers (USMP_SANITIZE_ADDRESS / USMP_SANITIZE_THREAD) and Valgrind.
// Each must be told about every stack switch, or it reports the new stack's
// frames as wild accesses (ASan), mixes two threads' histories (TSan) or
// takes a switch for a huge stack growth (Valgrind).  The protocol, around
// each jump (which never changes OS thread: a jump is within one CPU):
//  1. Before: ASan's __sanitizer_start_switch_fiber with the target's stack
//     (NULL fake-stack save slot when the caller never runs again, so ASan
//     frees its fake stack); TSan's __tsan_switch_to_fiber to the target's
//     fiber, after noting the current fiber in the OS thread's tl_from.
//  2. After (in the resumed code: after the jump returns, or first thing in
//     a new context): __sanitizer_finish_switch_fiber, which returns the
//     stack we came from; with tl_from's fiber, that describes the context
//     just suspended, which is what context_resume() returns.
// A context of an OS thread's own stack (the idle thread) thus gets its
// bounds and fiber the first time it is suspended.
#include "runtime/context.h"

#include <boost/context/fiber.hpp>
#include <boost/context/preallocated.hpp>
#include <boost/context/stack_context.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "runtime/config.h"
#include "runtime/panic.h"

#if USMP_SANITIZE_ADDRESS
#include <sanitizer/common_interface_defs.h>
#endif
#if USMP_SANITIZE_THREAD
#include <sanitizer/tsan_interface.h>
#endif
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define USMP_HAVE_VALGRIND 1
#else
#define USMP_HAVE_VALGRIND 0
#endif

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

#if USMP_CONTEXT_NOTES
// Step 1's note of the context being suspended, per OS thread (the jump
// stays on the OS thread, so the other side reads it right after).  Written
// and read by noinline functions: the compiler must not reuse a
// thread-local address computed before a jump (runtime/thread.h).
thread_local context tl_from;

__attribute__((noinline)) void
note_from(const context *self) noexcept
{
	context d;
	if (self != nullptr) {
		d.c_stack_lo = self->c_stack_lo;
		d.c_stack_size = self->c_stack_size;
		d.c_tsan_fiber = self->c_tsan_fiber;
		d.c_vg_stack = self->c_vg_stack;
		d.c_made = self->c_made;
	}
#if USMP_SANITIZE_THREAD
	if (d.c_tsan_fiber == nullptr) // an OS thread's own stack
		d.c_tsan_fiber = __tsan_get_current_fiber();
#endif
	tl_from = d;
}

// Step 2: describe the context just suspended, in *r (all but c_word).
__attribute__((noinline)) void
finish_switch(void *fake_stack, context *r) noexcept
{
	*r = tl_from;
#if USMP_SANITIZE_ADDRESS
	const void *lo = nullptr;
	std::size_t size = 0;
	__sanitizer_finish_switch_fiber(fake_stack, &lo, &size);
	r->c_stack_lo = lo;
	r->c_stack_size = size;
#else
	(void)fake_stack;
#endif
}
#else
// No sanitizer: nothing learns anything at a switch (a made context's
// stack and Valgrind id never change, and context_save() keeps them), so
// the switch path carries only the fiber word.
inline void note_from(const context *) noexcept {}
inline void finish_switch(void *, context *) noexcept {}
#endif

// Resume the Boost context fctx; returns, when something resumes us, the
// context that did (boost::context::fiber::resume() without the wrapper).
//
// Boost's jump_fcontext enters the resumed context with an indirect jmp,
// not a ret.  Called with a call, as fiber::resume() does, it leaves in the
// return-stack buffer one entry that no ret consumes, so every return after
// the jump is predicted one frame off and mispredicts, all the way up the
// switch path (a dozen returns on a sleep: condvar wait -> sleep queue ->
// scheduler -> cpu_switch; condvar ping-pong 208 -> 135 ns a round trip
// when this was found).  usmp_jump_nocall is called normally, but enters
// jump_fcontext with a push of its resume point and a jmp, which the
// return-stack buffer does not see; the resumed side comes back to that
// point with the same jmp and returns from usmp_jump_nocall with a ret that
// pops the entry of its own call.  Every context is suspended here, from
// the one call site in context_resume(), so that ret is predicted too.
// Being a real function, it costs callers exactly what a call to
// jump_fcontext does (the ABI's clobbers, nothing in the red zone), and
// its CFI lets gdb unwind a parked thread (tools/gdb/usmp-gdb.py).  Not
// with CET shadow stacks (a jump would need to switch those too).
#if defined(__x86_64__) && defined(__ELF__) && \
    !(defined(__CET__) && (__CET__ & 2))
#define USMP_JUMP_NOCALL 1
extern "C" void *usmp_jump_nocall(void *fctx) noexcept;
asm(R"(
	.text
	.p2align 4
	.globl usmp_jump_nocall
	.hidden usmp_jump_nocall
	.type usmp_jump_nocall, @function
usmp_jump_nocall:
	.cfi_startproc
	xorl %esi, %esi			# the transfer's data: unused
	leaq 1f(%rip), %rax
	pushq %rax
	.cfi_adjust_cfa_offset 8
	jmp jump_fcontext@PLT
1:
	.cfi_adjust_cfa_offset -8
	ret				# rax: the fcontext we came from
	.cfi_endproc
	.size usmp_jump_nocall, .-usmp_jump_nocall
)");
#else
#define USMP_JUMP_NOCALL 0
#endif

} // namespace

void
context_make(context *c, void *lo, void *top, context_entry_fn entry) noexcept
{
	bctx::stack_context sctx;
	sctx.sp = top;
	sctx.size = static_cast<std::size_t>(static_cast<char *>(top) -
	    static_cast<char *>(lo));
#if USMP_HAVE_VALGRIND
	// Before the fiber writes its record at the top of the new stack:
	// Valgrind takes writes to an unregistered stack for writes below
	// some thread's stack pointer.
	c->c_vg_stack = VALGRIND_STACK_REGISTER(lo, top);
#endif
	bctx::preallocated palloc(top, sctx.size, sctx);
	bctx::fiber f(std::allocator_arg, palloc, no_dealloc{},
	    [entry](bctx::fiber &&from) -> bctx::fiber {
		    context fromc;
		    finish_switch(nullptr, &fromc);
		    store(&fromc, std::move(from));
		    entry(fromc);
		    panic("context_make: context entry returned");
	    });
	store(c, std::move(f));
	c->c_stack_lo = lo;
	c->c_stack_size = sctx.size;
	c->c_made = true;
#if USMP_SANITIZE_THREAD
	c->c_tsan_fiber = __tsan_create_fiber(0);
#endif
}

context
context_resume(context *to, const context *self, bool last) noexcept
{
	note_from(self);
	void *fake_stack = nullptr;
#if USMP_SANITIZE_ADDRESS
	__sanitizer_start_switch_fiber(last ? nullptr : &fake_stack,
	    to->c_stack_lo, to->c_stack_size);
#else
	(void)last;
#endif
#if USMP_SANITIZE_THREAD
	// A context without a fiber of its own is an OS thread's stack, which
	// we came from earlier: its fiber was noted then (step 2).
	if (to->c_tsan_fiber != nullptr)
		__tsan_switch_to_fiber(to->c_tsan_fiber, 0);
#endif
#if USMP_JUMP_NOCALL
	void *fctx = to->c_word;
	to->c_word = nullptr;
	void *from = usmp_jump_nocall(fctx);
	context r;
	finish_switch(fake_stack, &r);
	r.c_word = from; // the fiber's one word (store())
	return r;
#else
	bctx::fiber f = take(to);
	bctx::fiber from = std::move(f).resume();
	context r;
	finish_switch(fake_stack, &r);
	store(&r, std::move(from));
	return r;
#endif
}

void
context_forget(context *c) noexcept
{
	c->c_word = nullptr;
	if (!c->c_made)
		return;
#if USMP_SANITIZE_THREAD
	if (c->c_tsan_fiber != nullptr)
		__tsan_destroy_fiber(c->c_tsan_fiber);
#endif
#if USMP_HAVE_VALGRIND
	if (c->c_vg_stack != 0)
		VALGRIND_STACK_DEREGISTER(c->c_vg_stack);
#endif
	c->c_tsan_fiber = nullptr;
	c->c_vg_stack = 0;
	c->c_made = false;
}

bool
context_under_valgrind() noexcept
{
#if USMP_HAVE_VALGRIND
	return RUNNING_ON_VALGRIND != 0;
#else
	return false;
#endif
}

} // namespace usmp

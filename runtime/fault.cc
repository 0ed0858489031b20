// The fault handler: a stack overflow into a red zone, or any other SIGSEGV
// or SIGBUS, becomes a report that names the thread, the address and the
// stack, then a panic -- never a bare SIGSEGV.
//
// A thread that overflows its stack faults with its stack pointer at the
// bottom of that stack, so the handler cannot run there: every OS thread
// that runs green threads has an alternate signal stack (fault_init_thread;
// each CPU calls it), and the handler is installed with SA_ONSTACK.  It
// runs on the OS thread of the faulting green thread, so it must not
// allocate or lock: it finds the segment of the fault address with
// seg_lookup() (lock-free; runtime/segment.cc), reads the stack descriptor
// and the owner thread's name and id (constant while the thread lives, and
// the thread is alive: it is the one that faulted), formats into a buffer on
// the signal stack and calls panic(), which adds the CPU, the thread and a
// backtrace and aborts.  SIGSEGV stays blocked in the handler, so a fault in
// the report itself ends the process at once rather than looping.
//
// A fault that is not in a stack's red zone is handed to the handler that
// was installed before ours, if there was one (a sanitizer, a test
// framework, the application); otherwise it is reported as such.
#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/segment.h"
#include "runtime/stack.h"
#include "runtime/thread.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

namespace usmp {

namespace {

constexpr std::size_t ALTSTACK_SIZE = 64 * 1024;

// The handlers ours replaced, for faults that are not ours to report.
// Written by fault_init() before our handler is installed; read by it.
struct sigaction g_prev_segv;
struct sigaction g_prev_bus;

// One OS thread's alternate signal stack, given back when the thread ends.
struct altstack {
	char *as_map = nullptr; // guard page, then the stack
	std::size_t as_len = 0;

	~altstack()
	{
		if (as_map == nullptr)
			return;
		stack_t ss{};
		ss.ss_flags = SS_DISABLE;
		sigaltstack(&ss, nullptr);
		munmap(as_map, as_len);
	}
};
thread_local altstack tl_altstack;

// "thread "name" (tid N)" for a green thread, or the foreign OS thread.
void
describe_current(char *buf, std::size_t len) noexcept
{
	pcpu *pc = curpcpu();
	const thread *td = pc != nullptr ? pc->pc_curthread : nullptr;
	if (td != nullptr)
		std::snprintf(buf, len, "thread \"%.32s\" (tid %d) on cpu %d",
		    td->td_name, td->td_tid, pc->pc_cpuid);
	else
		std::snprintf(buf, len, "a foreign OS thread (Linux tid %ld)",
		    static_cast<long>(syscall(SYS_gettid)));
}

// Chain to the handler ours replaced.  Returns false if there was none.
bool
chain(int sig, siginfo_t *si, void *uc) noexcept
{
	const struct sigaction *p = sig == SIGBUS ? &g_prev_bus : &g_prev_segv;
	if (p->sa_flags & SA_SIGINFO) {
		if (p->sa_sigaction == nullptr)
			return false;
		p->sa_sigaction(sig, si, uc);
		return true;
	}
	if (p->sa_handler == SIG_DFL || p->sa_handler == SIG_IGN ||
	    p->sa_handler == nullptr)
		return false;
	p->sa_handler(sig);
	return true;
}

void
fault_handler(int sig, siginfo_t *si, void *uc)
{
	const char *signame = sig == SIGBUS ? "SIGBUS" : "SIGSEGV";
	if (si->si_code <= 0 && !chain(sig, si, uc)) {
		// kill(2), tgkill(2), sigqueue(3): no fault, no address.
		char who[96];
		describe_current(who, sizeof(who));
		panic("%s sent by process %d (not a fault) to %s", signame,
		    static_cast<int>(si->si_pid), who);
	}
	void *addr = si->si_addr;
	bool in_rz = false;
	const stack *st = stack_lookup(addr, &in_rz);
	if (st != nullptr && in_rz) {
		const thread *td = static_cast<const thread *>(st->st_owner);
		segment rz;
		bool have = seg_lookup(addr, &rz);
		bool below = have && rz.end() == st->st_lo;
		panic("stack %s in thread \"%.32s\" (tid %d): %s at %p, "
		    "stack %p-%p (%zu bytes), red zone %p-%p",
		    below ? "overflow" : "underflow (write above its top)",
		    td != nullptr ? td->td_name : "(no thread)",
		    td != nullptr ? td->td_tid : -1, signame, addr,
		    static_cast<void *>(st->st_lo), static_cast<void *>(st->st_hi),
		    st->st_size, have ? static_cast<void *>(rz.base()) : nullptr,
		    have ? static_cast<void *>(rz.end()) : nullptr);
	}
	if (chain(sig, si, uc))
		return;
	char who[96];
	describe_current(who, sizeof(who));
	segment s;
	if (seg_lookup(addr, &s))
		panic("%s at %p in %s (not a stack red zone; in segment \"%s\" "
		    "%p-%p%s)", signame, addr, who, s.s_name,
		    static_cast<void *>(s.base()), static_cast<void *>(s.end()),
		    (s.s_flags & SG_NONE) ? ", SG_NONE: no access" : "");
	panic("%s at %p in %s (not a stack red zone)", signame, addr, who);
}

void
install(int sig, struct sigaction *prev) noexcept
{
	struct sigaction cur;
	if (sigaction(sig, nullptr, &cur) != 0)
		return;
	if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == fault_handler)
		return; // ours already
	*prev = cur;
	struct sigaction sa;
	std::memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fault_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, nullptr);
}

} // namespace

void
fault_init() noexcept
{
	// Idempotent, and re-installs after someone reset the disposition (a
	// fork()ed death-test child resets fatal signals to SIG_DFL).
	install(SIGSEGV, &g_prev_segv);
	install(SIGBUS, &g_prev_bus);
	// glibc's backtrace() loads libgcc_s (dlopen, which allocates) on its
	// first call, and panic() calls it from the handler above, where
	// malloc is not async-signal-safe (ThreadSanitizer reports it; a
	// fault inside malloc would deadlock).  Load it now, outside any
	// signal; later calls only unwind.
	void *frame;
	(void)backtrace(&frame, 1);
	fault_init_thread();
}

void
fault_init_thread() noexcept
{
	if (tl_altstack.as_map != nullptr)
		return;
	stack_t cur;
	if (sigaltstack(nullptr, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
		return; // this OS thread has one already (a sanitizer's, say)
	std::size_t guard = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
	std::size_t len = guard + ALTSTACK_SIZE;
	char *p = static_cast<char *>(mmap(nullptr, len, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0));
	if (p == MAP_FAILED) {
		printf_diag("fault_init_thread(): no memory for a signal stack: "
		    "stack overflows on this OS thread will not be reported");
		return;
	}
	if (madvise(p, guard, MADV_GUARD_INSTALL) != 0)
		mprotect(p, guard, PROT_NONE);
	stack_t ss{};
	ss.ss_sp = p + guard;
	ss.ss_size = ALTSTACK_SIZE;
	if (sigaltstack(&ss, nullptr) != 0) {
		munmap(p, len);
		return;
	}
	tl_altstack.as_map = p;
	tl_altstack.as_len = len;
}

} // namespace usmp

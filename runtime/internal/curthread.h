// Private to runtime/, sched/ and sync/: the fast curpcpu() and curthread()
// (other layers reach them only through the inline fast paths of
// runtime/critical.h and sync/mutex.h).
//
// The CPU's pcpu pointer is a per-OS-thread variable, but a green thread can
// move to another OS thread at any switch, and compilers assume that the
// address of a thread-local variable never changes within a function: after
// inlining, the old CPU's pcpu could be read after a switch that moved us.
// So the pointer is read with a volatile asm (initial-exec TLS, which works
// in the executable and in a shared libusmp that is not dlopen'ed) that also
// clobbers memory: the compiler can neither reuse an earlier read nor move
// this one across a call that may switch.
#pragma once

#include "runtime/pcpu.h"
#include "runtime/thread.h"

extern "C" {
extern __thread usmp::pcpu *usmp_tl_pcpu;
}

namespace usmp {

thread *foreign_self() noexcept;

inline pcpu *
curpcpu_fast() noexcept
{
	pcpu *pc;
	asm volatile("movq usmp_tl_pcpu@gottpoff(%%rip), %0\n\t"
		     "movq %%fs:(%0), %0"
		     : "=r"(pc)
		     :
		     : "memory");
	return pc;
}

inline thread *
curthread_fast() noexcept
{
	pcpu *pc = curpcpu_fast();
	if (__builtin_expect(pc != nullptr, 1))
		return pc->pc_curthread;
	return foreign_self();
}

} // namespace usmp

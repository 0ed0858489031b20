// Green threads: creation, join, detach, exit, yield and sleep.
//
// A thread lives at the top of its own stack segment: stack_alloc() gives a
// stack whose descriptor sits in the top bytes; struct thread goes right
// below it, then the thread's callable, then the coloured top where the
// thread's frames begin.  So creating a thread allocates nothing but a
// stack, which the per-CPU cache hands out without a system call.
//
// Join protocol (td_exit):
//  1. The exiting thread takes its td_joinlock, sets td_exit = 1 (release),
//     wakes a green joiner (which slept with td_joinlock as its container
//     lock) and drops the lock; a foreign OS thread waiting on the futex
//     word td_exit is woken after that.
//  2. It switches out for the last time; the next thread on that CPU, in
//     cpu_switch_finish, calls thread_switched_out_dead(), which sets
//     td_exit = 2 (release) — from then on nothing runs on the stack — and
//     reaps a detached thread at once.
//  3. A joiner that saw td_exit == 1 spins (briefly: step 2 is a few dozen
//     instructions away) until it reads 2 (acquire), then frees the stack.
// thread_detach() and thread_exit() decide under td_joinlock who reaps.
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "runtime/critical.h"
#include "runtime/internal/machine.h"
#include "runtime/internal/seam.h"
#include "runtime/internal/sim.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/stack.h"
#include "runtime/thread.h"

namespace usmp {

machine_state g_machine;

namespace {

long
futex(std::atomic<int> *word, int op, int val, const struct timespec *ts) noexcept
{
	return syscall(SYS_futex, reinterpret_cast<int *>(word), op, val, ts,
	    nullptr, 0);
}

constexpr std::size_t
align_down(std::size_t v, std::size_t a) noexcept
{
	return v & ~(a - 1);
}

// The default name, "thread <tid>", without snprintf (which costs about as
// much as the rest of a thread's creation).
void
default_name(char *buf, std::size_t size, int tid) noexcept
{
	static constexpr char prefix[] = "thread ";
	std::memcpy(buf, prefix, sizeof(prefix) - 1);
	char digits[12];
	int n = 0;
	unsigned v = static_cast<unsigned>(tid);
	do {
		digits[n++] = static_cast<char>('0' + v % 10);
		v /= 10;
	} while (v != 0 && n < 11);
	std::size_t at = sizeof(prefix) - 1;
	while (n > 0 && at + 1 < size)
		buf[at++] = digits[--n];
	buf[at] = '\0';
}

} // namespace

// ---- The list of live threads.

void
thread_list_insert(thread *td, int list) noexcept
{
	thread_list &l = g_machine.ms_threads[list];
	td->td_alllist = list;
	spinlock_enter();
	l.tl_lock.lock();
	td->td_allprev = nullptr;
	td->td_allnext = l.tl_head;
	if (l.tl_head != nullptr)
		l.tl_head->td_allprev = td;
	l.tl_head = td;
	l.tl_count++;
	l.tl_lock.unlock();
	spinlock_exit();
}

void
thread_list_remove(thread *td) noexcept
{
	thread_list &l = g_machine.ms_threads[td->td_alllist];
	spinlock_enter();
	l.tl_lock.lock();
	if (td->td_allprev != nullptr)
		td->td_allprev->td_allnext = td->td_allnext;
	else
		l.tl_head = td->td_allnext;
	if (td->td_allnext != nullptr)
		td->td_allnext->td_allprev = td->td_allprev;
	l.tl_count--;
	l.tl_lock.unlock();
	spinlock_exit();
}

int
machine_live_threads() noexcept
{
	if (!g_machine.ms_running.load(std::memory_order_acquire))
		return 0;
	long n = 0;
	for (int i = 0; i <= g_machine.ms_ncpus; i++)
		n += __atomic_load_n(&g_machine.ms_threads[i].tl_count,
		    __ATOMIC_RELAXED);
	return static_cast<int>(n);
}

// ---- Creation.

int
thread_alloc(thread **tdp, const thread_attr &attr, std::size_t size,
    std::size_t align, void **storage, const char *file, int line) noexcept
{
	*tdp = nullptr;
	if (!g_machine.ms_running.load(std::memory_order_acquire) ||
	    machine_stopping())
		return EAGAIN;
	int pri = attr.priority;
	if (pri == -1)
		pri = 120; // PRI_TIMESHARE_DEFAULT (sched/priority.h)
	if (pri < 0 || pri > 255) {
		printf_diag("thread_create(): priority %d out of range 0..255 @ %s:%d",
		    attr.priority, file, line);
		return EINVAL;
	}
	if (attr.cpu != NOCPU && (attr.cpu < 0 || attr.cpu >= g_machine.ms_ncpus)) {
		printf_diag("thread_create(): no CPU %d (machine has %d) @ %s:%d",
		    attr.cpu, g_machine.ms_ncpus, file, line);
		return EINVAL;
	}
	std::size_t need = sizeof(thread) + size + align + 1024;
	std::size_t ssize = attr.stack_size;
	if (ssize != 0 && ssize < need + 4096) {
		printf_diag("thread_create(): stack_size %zu too small (need > %zu) @ %s:%d",
		    ssize, need + 4096, file, line);
		return EINVAL;
	}
	stack *st = stack_alloc(ssize);
	if (st == nullptr)
		return ENOMEM;

	// Carve the thread and the callable from the top of the stack.
	uintptr_t top = reinterpret_cast<uintptr_t>(st->st_top);
	top = align_down(top - sizeof(thread), alignof(thread));
	thread *td = ::new (reinterpret_cast<void *>(top)) thread;
	if (align < 16)
		align = 16;
	top = align_down(top - size, align);
	*storage = reinterpret_cast<void *>(top);
	top = align_down(top, 256);

	td->td_stack = st;
	st->st_owner = td;
	td->td_tid = g_machine.ms_next_tid.fetch_add(1, std::memory_order_relaxed);
	if (attr.name != nullptr)
		std::snprintf(td->td_name, sizeof(td->td_name), "%s", attr.name);
	else
		default_name(td->td_name, sizeof(td->td_name), td->td_tid);
	if (attr.detached)
		td->td_flags.fetch_or(TDF_DETACHED, std::memory_order_relaxed);
	// A new thread starts as if returning from mi_switch: inside the
	// spinlock section of its (run-queue) thread lock.
	td->td_critnest = 1;
	td->td_spinlock_count = 1;
	sched_fork(td, pri, attr.cpu);
	context_make(&td->td_ctx, st->st_lo, reinterpret_cast<void *>(top),
	    thread_entry);
	*tdp = td;
	return 0;
}

int
thread_create_fn(thread **tdp, const thread_attr &attr, void (*fn)(void *),
    void *arg, const char *file, int line) noexcept
{
	void *storage;
	int error = thread_alloc(tdp, attr, 0, 1, &storage, file, line);
	if (error != 0)
		return error;
	(*tdp)->td_entry = fn;
	(*tdp)->td_arg = arg;
	thread_start(*tdp);
	return 0;
}

void
thread_start(thread *td) noexcept
{
	pcpu *pc = curpcpu_fast();
	thread_list_insert(td, pc != nullptr ? pc->pc_cpuid : g_machine.ms_ncpus);
	sched_add_new(td);
}

thread *
thread_make_idle(int cpu) noexcept
{
	thread *td = new thread;
	td->td_flags.store(TDF_IDLETD, std::memory_order_relaxed);
	td->td_pflags = TDP_NOSLEEPING;
	td->td_state = TDS_RUNNING;
	td->td_priority = td->td_base_pri = 255;
	td->td_cpu = td->td_lastcpu = cpu;
	td->td_pinned = 1;
	td->td_tid = g_machine.ms_next_tid.fetch_add(1, std::memory_order_relaxed);
	std::snprintf(td->td_name, sizeof(td->td_name), "idle: cpu%d", cpu);
	return td;
}

// ---- Exit and join.

void
thread_switched_out_dead(thread *td) noexcept
{
	bool detached =
	    (td->td_flags.load(std::memory_order_relaxed) & TDF_DETACHED) != 0;
	bool foreign = td->td_foreign_join.load(std::memory_order_relaxed) != 0;
	stack *st = td->td_stack;
	td->td_exit.store(2, std::memory_order_release);
	if (foreign)
		futex(&td->td_exit, FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr);
	if (detached)
		stack_free(st);
}

namespace {
std::atomic<thread_exit_hook_fn> g_thread_exit_hook{nullptr};
} // namespace

void
thread_set_exit_hook(thread_exit_hook_fn fn) noexcept
{
	g_thread_exit_hook.store(fn, std::memory_order_release);
}

void
thread_exit() noexcept
{
	thread *td = curthread_fast();
	uint32_t flags = td->td_flags.load(std::memory_order_relaxed);
	if (flags & (TDF_FOREIGN | TDF_IDLETD))
		panic("thread_exit() called from %s \"%s\"",
		    (flags & TDF_FOREIGN) ? "a foreign OS thread" :
						   "the idle thread",
		    td->td_name);
	if (thread_exit_hook_fn hook =
		g_thread_exit_hook.load(std::memory_order_acquire))
		hook(td);
	if (td->td_critnest != 0 || td->td_spinlock_count != 0)
		panic("thread_exit(): thread \"%s\" (tid %d) exits in a critical "
		    "section (critnest %d, spinlock count %d)",
		    td->td_name, td->td_tid, td->td_critnest,
		    td->td_spinlock_count);
	thread_list_remove(td);

	// From here to the last switch we stay in one spinlock section: a
	// preemption in between would let a joiner that saw td_exit == 1 spin
	// for step 2 while we wait behind it (on one CPU, for ever).
	spinlock_enter();
	td->td_joinlock.lock();
	td->td_exit.store(1, std::memory_order_release);
	thread *joiner = td->td_joiner;
	if (joiner != nullptr &&
	    !(joiner->td_flags.load(std::memory_order_relaxed) & TDF_FOREIGN)) {
		thread_lock_block_wait(joiner);
		joiner->td_inhibitors &= ~TDI_JOIN;
		joiner->td_wchan = nullptr;
		joiner->td_wmesg = nullptr;
		sched_wakeup(joiner, SRQ_WAKER_LEAVES);
	}
	td->td_joinlock.unlock();
	if (td->td_foreign_join.load(std::memory_order_relaxed) != 0)
		futex(&td->td_exit, FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr);

	// thread_lock(td), inside the section we already hold.  A running
	// thread's lock is its CPU's run-queue lock, never blocked_lock.
	for (;;) {
		spinlock *l = td->td_lock.load(std::memory_order_acquire);
		l->lock();
		if (td->td_lock.load(std::memory_order_relaxed) == l)
			break;
		l->unlock();
	}
	td->td_state = TDS_INACTIVE;
	mi_switch(SW_VOL);
	panic("thread_exit: dead thread \"%s\" resumed", td->td_name);
}

namespace {

// Wait for step 2 of the join protocol and free the stack.
void
thread_reap(thread *td) noexcept
{
	// td is in its last few instructions (it cannot be preempted there,
	// see thread_exit()), on another CPU.
	unsigned n = 0;
	while (td->td_exit.load(std::memory_order_acquire) != 2)
		cpu_spinwait(n);
	stack_free(td->td_stack);
}

} // namespace

int
thread_join(thread *td, const char *file, int line) noexcept
{
	thread *me = curthread_fast();
	if (td == nullptr)
		panic("thread_join() of a null thread @ %s:%d", file, line);
	if (td == me) {
		printf_diag("thread_join(): thread \"%s\" joins itself @ %s:%d",
		    td->td_name, file, line);
		return EDEADLK;
	}
	bool foreign =
	    (me->td_flags.load(std::memory_order_relaxed) & TDF_FOREIGN) != 0;
	if (!foreign && me->td_critnest != 0)
		panic("thread_join() of \"%s\" in a critical section @ %s:%d",
		    td->td_name, file, line);

	spinlock_enter();
	td->td_joinlock.lock();
	if ((td->td_flags.load(std::memory_order_relaxed) & TDF_DETACHED) ||
	    td->td_joiner != nullptr) {
		td->td_joinlock.unlock();
		spinlock_exit();
		printf_diag("thread_join(): thread \"%s\" is detached or already "
		    "joined @ %s:%d", td->td_name, file, line);
		return EINVAL;
	}
	if (td->td_exit.load(std::memory_order_relaxed) != 0) {
		td->td_joinlock.unlock();
		spinlock_exit();
	} else if (foreign) {
		td->td_joiner = me;
		td->td_foreign_join.store(1, std::memory_order_relaxed);
		td->td_joinlock.unlock();
		spinlock_exit();
		// Simulated, this OS thread drives every CPU: run them until
		// td has exited, instead of blocking.
		if (sim_active())
			sim_drive([](void *a) {
				return static_cast<thread *>(a)->td_exit.load(
				    std::memory_order_acquire) != 0;
			}, td);
		while (td->td_exit.load(std::memory_order_acquire) == 0)
			futex(&td->td_exit, FUTEX_WAIT_PRIVATE, 0, nullptr);
	} else {
		// Sleep with td_joinlock as our container lock.
		td->td_joiner = me;
		thread_lock(me);
		me->td_state = TDS_INHIBITED;
		me->td_inhibitors |= TDI_JOIN;
		me->td_wchan = td;
		me->td_wmesg = "join";
		thread_lock_set(me, &td->td_joinlock);
		mi_switch(SW_VOL);
	}
	thread_reap(td);
	return 0;
}

int
thread_detach(thread *td) noexcept
{
	spinlock_enter();
	td->td_joinlock.lock();
	if ((td->td_flags.load(std::memory_order_relaxed) & TDF_DETACHED) ||
	    td->td_joiner != nullptr) {
		td->td_joinlock.unlock();
		spinlock_exit();
		return EINVAL;
	}
	bool exited = td->td_exit.load(std::memory_order_relaxed) != 0;
	if (!exited)
		td->td_flags.fetch_or(TDF_DETACHED, std::memory_order_relaxed);
	td->td_joinlock.unlock();
	spinlock_exit();
	if (exited)
		thread_reap(td);
	return 0;
}

// ---- Yield and sleep.

void
thread_yield() noexcept
{
	thread *td = curthread_fast();
	if (td->td_flags.load(std::memory_order_relaxed) & TDF_FOREIGN) {
		std::this_thread::yield();
		return;
	}
	if (sim_active())
		sim_yield_point();
	sched_yield(td);
}

int
thread_sleep(std::chrono::nanoseconds d) noexcept
{
	thread *td = curthread_fast();
	if (td->td_flags.load(std::memory_order_relaxed) & TDF_FOREIGN) {
		std::this_thread::sleep_for(d);
		return 0;
	}
	if (td->td_pflags & TDP_NOSLEEPING)
		panic("thread_sleep(): thread \"%s\" may not sleep", td->td_name);
	uint64_t deadline = clock_ns() + static_cast<uint64_t>(
	    d.count() > 0 ? d.count() : 0);
	thread_lock(td);
	sched_sleep_until(td, deadline);
	return 0;
}

// ---- green_thread.

green_thread &
green_thread::operator=(green_thread &&o) noexcept
{
	if (td_ != nullptr)
		panic("green_thread: move-assigned over a joinable thread \"%s\"",
		    td_->td_name);
	td_ = std::exchange(o.td_, nullptr);
	return *this;
}

green_thread::~green_thread()
{
	if (td_ != nullptr)
		panic("green_thread: destroyed while joinable: thread \"%s\" "
		    "(tid %d) was neither joined nor detached",
		    td_->td_name, td_->td_tid);
}

void
green_thread::join()
{
	if (td_ == nullptr)
		throw std::system_error(EINVAL, std::generic_category(),
		    "usmp::green_thread::join: not joinable");
	int error = thread_join(td_);
	if (error != 0)
		throw std::system_error(error, std::generic_category(),
		    "usmp::green_thread::join");
	td_ = nullptr;
}

void
green_thread::detach()
{
	if (td_ == nullptr)
		throw std::system_error(EINVAL, std::generic_category(),
		    "usmp::green_thread::detach: not joinable");
	int error = thread_detach(td_);
	td_ = nullptr;
	if (error != 0)
		throw std::system_error(error, std::generic_category(),
		    "usmp::green_thread::detach");
}

} // namespace usmp

// Green threads: struct thread and the calls that create, run and end them.
//
// A green thread is FreeBSD's struct thread: a Boost.Context context on a
// stack segment (runtime/stack.h), with a base and a lent priority, a state,
// a critical-section nesting count, a pin count, an optional bound CPU, a
// wait channel and a name.  Green threads run on CPUs (runtime/machine.h);
// the scheduler (sched/) moves unpinned ones between CPUs.
//
// thread_local IS PER CPU.  A thread_local variable belongs to the OS thread
// of the CPU a green thread happens to run on, exactly as per-CPU data does in
// the kernel.  A green thread that is not pinned may move to another CPU at
// any switch (yield, a blocking lock, a sleep, a preemption), and the compiler
// may keep the address of a thread_local across such a call.  Use
// thread_local data only between sched_pin() and sched_unpin() (sched/sched.h),
// or inside a critical section.
//
// errno is saved and restored with the green thread at every switch, so its
// value follows the thread from CPU to CPU.  But errno is a thread_local
// too: within one function the compiler may keep its address across a call
// that switched, and then read the old CPU's errno.  Read errno right after
// the call that set it (the usual habit), or in a function of its own after
// a call that may switch, or pin.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <new>
#include <system_error>
#include <type_traits>
#include <utility>

#include "runtime/app_call.h"
#include "runtime/config.h"
#include "runtime/context.h"
#include "runtime/internal/timeout.h"
#include "runtime/internal/spinlock.h"

namespace usmp {

struct pcpu;
struct stack;
struct thread;

inline constexpr int NOCPU = -1;

// Thread states (td_state), as in FreeBSD.
enum td_state_t : uint8_t {
	TDS_INACTIVE,  // created, not yet started; or dead
	TDS_INHIBITED, // sleeping, blocked on a lock, or suspended (see td_inhibitors)
	TDS_CAN_RUN,   // runnable, not on a run queue (in transit)
	TDS_RUNQ,      // on a run queue
	TDS_RUNNING,   // on a CPU
};

// Inhibitors (td_inhibitors).
enum : uint8_t {
	TDI_SLEEPING = 0x01, // sleeping on a wait channel
	TDI_LOCK = 0x02,     // blocked on a turnstile
	TDI_IWAIT = 0x04,    // ithread waiting for an interrupt
	TDI_JOIN = 0x08,     // waiting in thread_join() (a kind of sleep)
};

// td_flags: public flags.  Bits are set by holders of different locks
// (TDF_DETACHED under td_joinlock by any thread, TDF_BOUND by the thread
// itself, TDF_TIMEOUT under the thread lock by a softclock) and read by
// other CPUs without the thread lock (thread_join(), steal, dump), so the
// word is atomic and every update a relaxed read-modify-write: a plain
// `|=` from one holder could lose a bit set by another.  What a bit
// means is still ordered by the lock that guards it, not by the word.
enum : uint32_t {
	TDF_IDLETD = 0x0001,      // the idle thread of a CPU (c)
	TDF_FOREIGN = 0x0002,     // stands for an OS thread that is no CPU (c)
	TDF_DETACHED = 0x0004,    // no joiner; reaped at exit (j)
	TDF_BOUND = 0x0008,       // sched_bind() (k, read by others under (t))
	TDF_MAIN = 0x0010,        // the main thread of run() (c)
	TDF_ASYNCPREEMPT = 0x0020, // switched out from the preemption signal
	TDF_TIMEOUT = 0x0040,     // sleep ended by its timeout (t)
};

// td_pflags: private flags (FreeBSD's TDP_*).  Only the thread itself
// reads or writes them, and the interrupt code that sets them (filters,
// ithread handlers, callouts) saves and restores the old bits around its
// handler, so a nested setter (an interrupt taken on the way out of a
// spinlock section) leaves the word as it found it.  No atomics.
enum : uint32_t {
	TDP_NOSLEEPING = 0x0001,  // may not sleep (idle, filters, handlers)
	TDP_INFILTER = 0x0002,    // running an interrupt filter (interrupts/)
};

// Entry of a thread: the callable was constructed in td_arg; td_entry runs
// it and destroys it.
using thread_entry_fn = void (*)(void *arg);

// The thread structure.
//
// Locking key:
//   (a) atomic, ordering given at the use
//   (c) constant after creation
//   (k) only curthread touches it (and the CPU's own signal handler, which
//       runs on the same OS thread: such fields are read and written with
//       signal fences, not atomics)
//   (t) the thread lock: whatever td_lock points to
//   (j) td_joinlock
//   (q) sync/sleepqueue.cc: written with td's thread lock held, and also
//       the sleep-queue chain lock while td is on a sleep queue (when td
//       sleeps these are one lock); see the protocol there.  A foreign
//       thread has no thread lock: the chain lock alone.
struct sleepqueue;
struct thread {
	std::atomic<spinlock *> td_lock{nullptr}; // (a) container lock
	thread *td_runq_next = nullptr;            // (t) run queue links
	thread *td_runq_prev = nullptr;            // (t)
	volatile int td_critnest = 0;              // (k) critical_enter() depth
	volatile int td_owepreempt = 0;            // (k) preemption deferred
	int td_spinlock_count = 0;                 // (k) spinlock_enter() depth
	int td_pinned = 0;                         // (k) sched_pin() depth
	uint8_t td_priority = 0;                   // (t) effective priority
	uint8_t td_base_pri = 0;                   // (t) base priority
	uint8_t td_lend_pri = 255;                 // (t) lent by waiters (sync/)
	td_state_t td_state = TDS_INACTIVE;        // (t)
	uint8_t td_inhibitors = 0;                 // (t)
	std::atomic<uint32_t> td_flags{0};         // (a) relaxed: TDF_*, see above
	uint32_t td_pflags = 0;                    // (k) TDP_*
	int td_cpu = NOCPU;                        // (t) CPU it runs or waits on
	int td_lastcpu = NOCPU;                    // (t) CPU it last ran on
	int td_bound_cpu = NOCPU;                  // (k) sched_bind() target
	int td_tid = 0;                            // (c)
	int td_errno = 0;                          // (k) errno while switched out
	uint64_t td_slicetick = 0;                 // (t) tick its slice began
	uint64_t td_timo = 0;                      // (t) sleep deadline, ns
	int td_timo_index = -1;                    // (t) place in a timer heap
	const void *td_wchan = nullptr;            // (t) wait channel
	const char *td_wmesg = nullptr;            // (t) wait message
	uint64_t td_switches = 0;                  // (t) times switched in
	context td_ctx;                            // (t) saved context
	stack *td_stack = nullptr;                 // (c) its stack segment
	thread_entry_fn td_entry = nullptr;        // (c)
	void *td_arg = nullptr;                    // (c)
	void *td_sched = nullptr;                  // (c) scheduler private
	// (k) sync/ private: the thread's rwlock read and write holds
	// (FreeBSD's td_rw_rlocks), read by the reader-recursion rule and the
	// sleep checks (sync/internal/ts_tdstate.h).  Only the thread itself
	// changes or reads them, so no lock and no atomic.
	struct {
		int ts_rlocks = 0;
		int ts_wlocks = 0;
#if USMP_LOCK_PROFILING
		// Lock profiling's timed shared holds (FreeBSD's td_lprof),
		// newest last: a shared lock has many holders, so the start
		// of each hold is kept by its holder, not in the lock.  Holds
		// beyond 8 at once go untimed (sync/lock_profile.cc).
		struct {
			const void *lp_lock;
			const char *lp_file;
			int lp_line;
			uint64_t lp_start; // ns
		} ts_lprof[8];
		int ts_lprof_n = 0;
#endif
	} td_sync;

	// Join protocol.  td_exit moves 0 -> 1 (exiting, joiner woken) under
	// td_joinlock, then 1 -> 2 (context switched out for good; the stack
	// may be freed) from the thread that runs next.  A joiner that sees 1
	// spins until 2.
	spinlock td_joinlock;                      // (c)
	std::atomic<int> td_exit{0};               // (a) release/acquire
	thread *td_joiner = nullptr;               // (j)
	std::atomic<int> td_foreign_join{0};       // (a) futex word for OS-thread joiners

	thread *td_allnext = nullptr;              // live-thread list (its lock)
	thread *td_allprev = nullptr;
	int td_alllist = 0;                        // (c) which live-thread list
	uint8_t td_rqflags = 0;                    // (t) scheduler's run-queue flags
	char td_name[32] = {};                     // (c)

	// Sleep queues and sleep(9) (sync/sleepqueue.cc).
	thread *td_slpq_next = nullptr;            // (q) links on sq_blocked[]
	thread *td_slpq_prev = nullptr;            // (q)
	sleepqueue *td_sleepqueue = nullptr;       // (q) the queue td is on
	uint8_t td_sqqueue = 0;                    // (q) its sub-queue
	uint8_t td_sqflags = 0;                    // (q) SQF_* (sleepqueue.cc)
	std::atomic<uint32_t> td_sqintr{0};        // (a) thread_interrupt() pending
	std::atomic<uint32_t> td_sqwait{0};        // (a) futex word of a foreign sleeper
	std::atomic<uint32_t> td_sqtimo_busy{0};   // (a) its timeout may still run
	timeout td_sqtimo;                         // (q) the sleep's timeout
#if USMP_WITNESS
	void *td_witness = nullptr;                // (k) sync/ WITNESS state
#endif
};

// Attributes of a new green thread.
struct thread_attr {
	const char *name = nullptr;  // copied; default "thread <tid>"
	int priority = -1;           // -1: PRI_TIMESHARE_DEFAULT (sched/priority.h)
	std::size_t stack_size = 0;  // 0: the machine's default
	int cpu = NOCPU;             // bound to this CPU for life (sched_bind)
	bool detached = false;       // reaped at exit, cannot be joined
};

// Low-level creation, used by the template below: reserves `size` bytes
// aligned to `align` at the top of the new thread's stack for the callable
// (*storage), without starting the thread.  Returns 0 or an errno: EAGAIN if
// no machine is running, ENOMEM if no stack could be had, EINVAL for a bad
// attribute (priority, CPU).
// Context: a green thread or a foreign OS thread; may not be called with a
// spin lock held.
int thread_alloc(thread **tdp, const thread_attr &attr, std::size_t size,
    std::size_t align, void **storage,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;

// Make a thread from thread_alloc() runnable.  Context: as thread_alloc().
void thread_start(thread *td) noexcept;

// Create and start a green thread running f().  An exception escaping f is a
// panic naming the thread (the std::thread rule).  Returns 0 or an errno as
// thread_alloc().  Context: a green thread or a foreign OS thread.
template <class F>
int thread_create(thread **tdp, const thread_attr &attr, F &&f,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept
{
	using Fn = std::decay_t<F>;
	void *storage;
	int error = thread_alloc(tdp, attr, sizeof(Fn), alignof(Fn), &storage,
	    file, line);
	if (error != 0)
		return error;
	::new (storage) Fn(std::forward<F>(f));
	(*tdp)->td_entry = [](void *p) {
		Fn *fn = static_cast<Fn *>(p);
		usmp_app_call(*fn);
		fn->~Fn();
	};
	(*tdp)->td_arg = storage;
	thread_start(*tdp);
	return 0;
}

// Create and start a green thread running fn(arg), the kthread_add(9) form.
// fn is called directly, so its own symbol decides whether the code map
// (runtime/codemap.h) lets it be preempted asynchronously: usmp's own
// threads (ithreads, taskqueue threads, softclocks) are made this way, as a
// usmp callable given to thread_create would be classified as application
// code (runtime/app_call.h).  Returns and context as thread_create().
int thread_create_fn(thread **tdp, const thread_attr &attr,
    void (*fn)(void *), void *arg, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept;

// Wait for td to end and reap it.  Returns 0, EDEADLK for the calling thread
// itself, EINVAL for a detached thread.  From a foreign OS thread it blocks
// that OS thread.  Context: may sleep.
int thread_join(thread *td, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept;

// Let td be reaped when it ends.  Returns 0 or EINVAL if already detached.
int thread_detach(thread *td) noexcept;

// End the calling green thread.  Context: a green thread, no locks held.
[[noreturn]] void thread_exit() noexcept;

// Hook that thread_exit() calls first, with the exiting thread, so that
// upper layers (sync/ WITNESS: "exiting with the following locks held")
// can check and release what they keep per thread.  Set once at start-up;
// may be null.
using thread_exit_hook_fn = void (*)(thread *td);
void thread_set_exit_hook(thread_exit_hook_fn fn) noexcept;

// Give the CPU to the other runnable threads of the same or better priority
// (kern_yield).  Context: may sleep (a preemption point).
void thread_yield() noexcept;

// Sleep for at least d (pause(9)).  Returns 0.  From a foreign OS thread it
// sleeps the OS thread.  Context: may sleep.
int thread_sleep(std::chrono::nanoseconds d) noexcept;

// The running thread: a green thread, the idle thread of a CPU, or the
// stand-in of a foreign OS thread (made on first use).  Never null.
thread *curthread() noexcept;

// The CPU the caller runs on, or NOCPU on a foreign OS thread.  Only stable
// while pinned or in a critical section.
int curcpu() noexcept;

// True if the caller is a green thread on a CPU of the running machine.
bool on_cpu() noexcept;

// The CPU count of the running machine (0 when none runs).
int mp_ncpus() noexcept;

// RAII handle, the std::thread of usmp: joins or detaches explicitly, and
// its destructor panics if neither was done (std::thread's terminate).
class green_thread {
public:
	green_thread() noexcept = default;
	template <class F, class = std::enable_if_t<!std::is_same_v<
	    std::decay_t<F>, thread_attr>>>
	explicit green_thread(F &&f)
	    : green_thread(thread_attr{}, std::forward<F>(f))
	{
	}
	// Throws std::system_error when the thread cannot be made.
	template <class F>
	green_thread(const thread_attr &attr, F &&f)
	{
		int error = thread_create(&td_, attr, std::forward<F>(f));
		if (error != 0)
			throw std::system_error(error, std::generic_category(),
			    "usmp::green_thread");
	}
	green_thread(green_thread &&o) noexcept : td_(std::exchange(o.td_, nullptr)) {}
	green_thread &operator=(green_thread &&o) noexcept;
	green_thread(const green_thread &) = delete;
	green_thread &operator=(const green_thread &) = delete;
	~green_thread();

	bool joinable() const noexcept { return td_ != nullptr; }
	void join();
	void detach();
	thread *native_handle() const noexcept { return td_; }

private:
	thread *td_ = nullptr;
};

} // namespace usmp

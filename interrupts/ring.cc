// The interrupt controller: one io_uring per CPU, the idle backend that
// waits in it, IPIs as ring messages, completions delivered as interrupts.
// The only file of usmp that includes <liburing.h>.
//
// Vocabulary.  A CPU's ring (ring_cpu) is an io_uring created at boot by the
// booting thread and used only by that CPU's OS thread afterwards: every
// submission queue (SQ) entry is written by the CPU itself, inside a
// spinlock section, so neither another CPU nor the CPU's own preemption
// signal handler can interleave with a half-written SQ.  Completion queue
// (CQ) entries carry a tag in user_data: a ring_op pointer (the request's
// handler runs), or one of the RU_* values below (controller traffic).
//
// The problem.  An idle CPU must sleep in the kernel, and wake for three
// reasons: its next timer, an IPI (work was queued for it), and the
// completion of I/O that its threads submitted.  With a futex park the third
// needs a second mechanism (an eventfd per ring, polled, or a helper
// thread); waiting in the ring serves all three with one system call, and
// completions are taken on the CPU that submitted the request, where the
// waiting thread's cache is.
//
// Approaches rejected.  One shared ring (or an epoll thread) for the whole
// machine: a lock on every submission, and a hop to another OS thread for
// every completion.  Waking a parked CPU by signal: io_uring_enter would
// return EINTR, but the signal costs more than a message, and a parked
// thread that blocks the signal would never see it.  IORING_SETUP_
// DEFER_TASKRUN: completions would only be produced when the CPU enters the
// ring, so a busy CPU could not see them by looking at its CQ each tick.
//
// The protocol.
//  1. Park (ring_wait, the idle backend's ib_wait).  The idle loop has stored
//     1 in its park word and found no work (runtime/internal/idle.h).  Block
//     the preemption signal, re-read the word, and only if it still holds 1
//     wait in io_uring_enter(GETEVENTS, min_complete 1, timeout = the
//     deadline, sigmask = the old mask minus the signal): the kernel
//     unblocks the signal only for the wait, so a signal that came after the
//     re-read is taken inside the wait and ends it (pselect's protocol; the
//     handler's store of 0 in the word is thereby never missed).
//  2. Wake (ring_wake, ib_wake).  The waker exchanged the word 1 -> 0.  From
//     a CPU, it submits IORING_OP_MSG_RING on its own ring, targeted at the
//     parked CPU's ring: the kernel posts a CQE (RU_WAKE) there, which ends
//     the wait, or, if the CPU has not entered it yet, makes it return at
//     once: a posted CQE is remembered, as a futex word is.  The message's
//     own CQE is skipped on success; a failure comes back as RU_MSG_FAILED
//     with the target CPU, and the eventfd is used instead.  From a thread
//     that is no CPU (the hardclock, a foreign OS thread, shutdown), or
//     without MSG_RING: write 1 to the target's eventfd, on which the target
//     ring always has a read pending (RU_EVENTFD, re-armed by the CPU when
//     its completion is delivered).
//  3. Deliver (ring_drain).  On the CPU, inside a spinlock section, take one
//     CQE at a time (mark it seen, then act: a handler may submit, e.g. an
//     IPI message, and may thereby add CQEs, which the loop then takes).
//     For a ring_op: the in-flight count drops and the handler runs.
//  4. Busy CPUs.  The hardclock asks ring_pending() each tick: completions
//     waiting on a CPU that is not in its ring wait (posted to the CQ, or,
//     if the CPU has not entered the kernel since the last tick, held as
//     task work: IORING_SETUP_COOP_TASKRUN, see hook_boot) fire the ring's
//     interrupt event ("ring cpuN", interrupts/intr_event.h, bound to the
//     CPU), whose filter drains the CQ at the CPU's next interrupt point
//     (its preemption signal outside critical sections, else the outermost
//     critical_exit()).  Without the event the CPU gets the preemption
//     signal, whose handler calls ring_poll_backend() when the interrupted
//     code is outside critical and spinlock sections.  Submissions drain
//     too, and the idle loop polls.
//  6. The event timer (interrupts/internal/eventtimer.h).  At most one
//     IORING_OP_TIMEOUT per ring (absolute, CLOCK_MONOTONIC), tagged
//     RU_TIMER, armed by the CPU itself (it writes its own SQ) for its
//     callout wheel's next event; moved earlier by IORING_OP_TIMEOUT_REMOVE
//     with IORING_TIMEOUT_UPDATE (whose own CQE is ignored: if the timer
//     fired first, the update fails with -ENOENT and the RU_TIMER CQE
//     already in the CQ re-evaluates the wheel).  Its completion runs the
//     clock interrupt (callout_clock_intr) in primary interrupt context,
//     which schedules the softclock or arms the timer again.  An idle CPU
//     thereby sleeps in its ring until its next callout, not a tick.
//  5. Shutdown.  After its idle loop returns, each CPU (si_cpu_stop) cancels everything on
//     its ring (IORING_ASYNC_CANCEL_ANY) and drains until no request is in
//     flight, so no kernel write lands in memory after the machine is gone
//     (handlers still run: threads waiting for I/O are woken, and stay on
//     their queues like every thread left behind at shutdown).  The rings
//     close only once every CPU's OS thread has ended: until then another
//     CPU's drain may still send a wake message to any ring.
#include <liburing.h>

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <new>

#include "interrupts/internal/eventtimer.h"
#include "interrupts/intr_event.h"
#include "interrupts/ring.h"
#include "runtime/config.h"
#include "runtime/context.h"
#include "runtime/critical.h"
#include "runtime/internal/idle.h"
#include "runtime/internal/intr_hook.h"
#include "runtime/internal/sim.h"
#include "runtime/machine.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/thread.h"
#include "sched/priority.h"

namespace usmp {

namespace {

// Tags in user_data (ring_op pointers are 8-aligned, so a tag never is one).
enum : uint64_t {
	RU_IGNORE = 1,     // link timeouts, cancels: nothing to do
	RU_WAKE = 2,       // an IPI message arrived
	RU_EVENTFD = 3,    // the eventfd read completed (an IPI)
	RU_MSG_FAILED = 4, // (cpu << 3) | 4: an IPI message could not be sent
	RU_TIMER = 5,      // the CPU's event timer (interrupts/internal/eventtimer.h)
	RU_TAG_MASK = 7,
};

constexpr unsigned RING_SQ_ENTRIES = 256;
constexpr unsigned RING_CQ_ENTRIES = 4096;

// Locking key: (c) constant between boot and shutdown; (k) only the CPU's
// OS thread, inside a spinlock section; (a) atomic, relaxed (counters and
// the hardclock's racy look); (h) the hardclock thread only.
struct alignas(64) ring_cpu {
	io_uring rc_ring;                       // (c) SQ: (k); CQ: (k)
	int rc_efd = -1;                        // (c) IPIs from non-CPUs
	uint64_t rc_efd_buf = 0;                // (k) the eventfd read's buffer
	bool rc_efd_armed = false;              // (k) a read is pending
	bool rc_stopping = false;               // (k) si_cpu_stop began
	bool rc_timer_armed = false;            // (k) an RU_TIMER timeout is pending
	uint64_t rc_timer_at = 0;               // (k) its deadline
	__kernel_timespec rc_timer_ts{};        // (k) read by the kernel at submission
	std::atomic<uint32_t> rc_waiting{0};    // (a) 1 inside ring_wait's enter
	// (k) 1 from ring_sqe() to the ring_flush() that submits: the CPU is
	// writing its SQ.  A signal handler on the CPU's OS thread (an
	// application's, firing an interrupt event: intr_event_fire_async)
	// may interrupt that, and then must not write the SQ itself: its
	// ring_wake() takes the eventfd instead.
	std::atomic<int> rc_sq_busy{0};
	std::atomic<int64_t> rc_inflight{0};    // (a, written k) ring_ops pending
	std::atomic<uint64_t> rc_waits{0};
	std::atomic<uint64_t> rc_wakeups{0};
	std::atomic<uint64_t> rc_msg_sent{0};
	std::atomic<uint64_t> rc_eventfd_sent{0};
	std::atomic<uint64_t> rc_completions{0};
	std::atomic<uint64_t> rc_submitted{0};
	std::atomic<uint64_t> rc_overflows{0};
	std::atomic<uint64_t> rc_taskruns{0};   // entries to run held task work
	std::atomic<uint64_t> rc_enters{0};     // submissions and get_events entries
	uint64_t rc_hc_enters = 0;              // (h) rc_enters at the last tick
	std::atomic<uint64_t> rc_held_kicks{0}; // (a, written h) ticks that fired for held ones
	std::atomic<uint64_t> rc_timer_fires{0};
	std::atomic<uint64_t> rc_timer_arms{0};
};

ring_cpu *g_rc = nullptr; // [g_nrc], (c)
std::atomic<clock_intr_fn> g_clock_intr{nullptr}; // set once (callout.cc)
int g_nrc = 0;
bool g_msg_ring = false; // (c) IORING_OP_MSG_RING supported

inline void
bump(std::atomic<uint64_t> &c) noexcept
{
	c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// Completions the kernel holds for rc that only an entry into the kernel
// posts to the CQ: overflowed ones, and (IORING_SETUP_COOP_TASKRUN) task
// work the kernel queued for the CPU's OS thread instead of interrupting
// it (IORING_SQ_TASKRUN).  Any thread may ask (a racy hint: the hardclock
// does); only the ring's CPU acts on it.
inline bool
ring_held(const ring_cpu *rc) noexcept
{
	return __atomic_load_n(rc->rc_ring.sq.kflags, __ATOMIC_RELAXED) &
	    (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN);
}

// The ring of the calling CPU, or null (foreign OS thread, no rings).
ring_cpu *
ring_self() noexcept
{
	if (g_rc == nullptr)
		return nullptr;
	pcpu *pc = curpcpu();
	if (pc == nullptr || pc->pc_cpuid < 0 || pc->pc_cpuid >= g_nrc)
		return nullptr;
	return &g_rc[pc->pc_cpuid];
}

// Submit what is queued in rc's SQ.  Requires a spinlock section on rc's
// CPU.
inline void
ring_flush(ring_cpu *rc) noexcept
{
	bump(rc->rc_enters);
	io_uring_submit(&rc->rc_ring);
	std::atomic_signal_fence(std::memory_order_seq_cst);
	rc->rc_sq_busy.store(0, std::memory_order_relaxed);
}

// An SQE of rc, submitting what is queued if the SQ is full.  Requires a
// spinlock section on rc's CPU.
io_uring_sqe *
ring_sqe(ring_cpu *rc, unsigned need) noexcept
{
	if (io_uring_sq_space_left(&rc->rc_ring) < need)
		ring_flush(rc);
	if (io_uring_sq_space_left(&rc->rc_ring) < need)
		return nullptr;
	// Until the ring_flush() that submits it (every caller makes one).
	rc->rc_sq_busy.store(1, std::memory_order_relaxed);
	std::atomic_signal_fence(std::memory_order_seq_cst);
	return io_uring_get_sqe(&rc->rc_ring);
}

// Keep a read pending on the eventfd (step 2).  Requires a spinlock section.
void
ring_arm_eventfd(ring_cpu *rc) noexcept
{
	if (rc->rc_efd_armed || rc->rc_stopping)
		return;
	io_uring_sqe *sqe = ring_sqe(rc, 1);
	if (sqe == nullptr)
		return; // the next drain tries again
	io_uring_prep_read(sqe, rc->rc_efd, &rc->rc_efd_buf, sizeof(rc->rc_efd_buf), 0);
	io_uring_sqe_set_data64(sqe, RU_EVENTFD);
	rc->rc_efd_armed = true;
	ring_flush(rc);
}

void
eventfd_kick(ring_cpu *target) noexcept
{
	bump(target->rc_eventfd_sent);
	uint64_t one = 1;
	// EAGAIN (the counter is at its maximum) still leaves it readable.
	ssize_t r = ::write(target->rc_efd, &one, sizeof(one));
	(void)r;
}

// Step 3.  Requires nothing; enters its own spinlock section.
int
ring_drain(ring_cpu *rc) noexcept
{
	int n = 0;
	spinlock_enter();
	for (;;) {
		io_uring_cqe *cqe = nullptr;
		if (io_uring_cq_ready(&rc->rc_ring) == 0) {
			// Completions the kernel had no room for wait in its
			// overflow list until we ask for them; with
			// COOP_TASKRUN, completions whose task work waits for
			// our next entry into the kernel.
			if (!ring_held(rc))
				break;
			if (io_uring_cq_has_overflow(&rc->rc_ring))
				bump(rc->rc_overflows);
			else
				bump(rc->rc_taskruns);
			bump(rc->rc_enters);
			io_uring_get_events(&rc->rc_ring);
			if (io_uring_cq_ready(&rc->rc_ring) == 0)
				break;
		}
		if (io_uring_peek_cqe(&rc->rc_ring, &cqe) != 0 || cqe == nullptr)
			break;
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		int32_t res = cqe->res;
		uint32_t flags = cqe->flags;
		io_uring_cqe_seen(&rc->rc_ring, cqe);
		switch (ud & RU_TAG_MASK) {
		case 0: {
			auto *op = reinterpret_cast<ring_op *>(ud);
			rc->rc_inflight.fetch_sub(1, std::memory_order_relaxed);
			bump(rc->rc_completions);
			n++;
			if constexpr (config::invariants) {
				// A handler runs like a filter: it must leave
				// the spinlock sections as it found them.
				thread *td = curthread();
				int spin = td->td_spinlock_count;
				auto *fn = op->ro_handler;
				fn(op, res, flags);
				if (td->td_spinlock_count != spin)
					panic("ring completion handler %p (request %p) "
					      "returned with spinlock depth %d, not %d",
					    reinterpret_cast<void *>(fn),
					    static_cast<void *>(op),
					    td->td_spinlock_count, spin);
			} else {
				op->ro_handler(op, res, flags);
			}
			break;
		}
		case RU_WAKE:
			bump(rc->rc_wakeups);
			n++;
			break;
		case RU_EVENTFD:
			rc->rc_efd_armed = false;
			if (res > 0) {
				bump(rc->rc_wakeups);
				n++;
			}
			break;
		case RU_TIMER:
			// Step 6: the clock interrupt (or its cancellation at
			// shutdown, which needs nothing).
			rc->rc_timer_armed = false;
			bump(rc->rc_timer_fires);
			n++;
			if (!rc->rc_stopping) {
				clock_intr_fn fn = g_clock_intr.load(
				    std::memory_order_acquire);
				if (fn != nullptr)
					fn(static_cast<int>(rc - g_rc));
			}
			break;
		case RU_MSG_FAILED: {
			int cpu = static_cast<int>(ud >> 3);
			if (cpu >= 0 && cpu < g_nrc)
				eventfd_kick(&g_rc[cpu]);
			break;
		}
		default:
			break;
		}
	}
	ring_arm_eventfd(rc);
	spinlock_exit();
	return n;
}

// ---- The event timer (step 6).

bool
ring_timer_arm_on(ring_cpu *rc, uint64_t deadline_ns) noexcept
{
	if (rc->rc_stopping)
		return true;
	if (rc->rc_timer_armed && deadline_ns >= rc->rc_timer_at)
		return true;
	io_uring_sqe *sqe = ring_sqe(rc, 1);
	if (sqe == nullptr)
		return true; // SQ full even after a submit: the tick's backstop
	rc->rc_timer_ts.tv_sec = static_cast<long long>(deadline_ns / 1000000000ull);
	rc->rc_timer_ts.tv_nsec = static_cast<long long>(deadline_ns % 1000000000ull);
	if (rc->rc_timer_armed) {
		io_uring_prep_timeout_update(sqe, &rc->rc_timer_ts, RU_TIMER,
		    IORING_TIMEOUT_ABS);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		io_uring_sqe_set_data64(sqe, RU_IGNORE);
	} else {
		io_uring_prep_timeout(sqe, &rc->rc_timer_ts, 0, IORING_TIMEOUT_ABS);
		io_uring_sqe_set_data64(sqe, RU_TIMER);
		rc->rc_timer_armed = true;
	}
	rc->rc_timer_at = deadline_ns;
	bump(rc->rc_timer_arms);
	ring_flush(rc);
	return true;
}

// ---- The idle backend (runtime/internal/idle.h).

void
ring_wait(pcpu *pc, std::atomic<uint32_t> *word, uint32_t val,
    uint64_t deadline_ns) noexcept
{
	ring_cpu *rc = &g_rc[pc->pc_cpuid];
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGURG);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	if (word->load(std::memory_order_seq_cst) == val) {
		sigset_t waitmask = old;
		sigdelset(&waitmask, SIGURG);
		__kernel_timespec ts{};
		__kernel_timespec *tsp = nullptr;
		bool wait = true;
		if (deadline_ns != 0) {
			uint64_t now = clock_ns();
			if (deadline_ns <= now) {
				wait = false;
			} else {
				uint64_t d = deadline_ns - now;
				ts.tv_sec = static_cast<long long>(d / 1000000000ull);
				ts.tv_nsec = static_cast<long long>(d % 1000000000ull);
				tsp = &ts;
			}
		}
		if (wait) {
			bump(rc->rc_waits);
			rc->rc_waiting.store(1, std::memory_order_relaxed);
			io_uring_cqe *cqe = nullptr;
			// Returns with a CQE ready, or -ETIME, or -EINTR
			// (the signal, step 1).  The CQE is not consumed
			// here: the idle loop's poll takes it.
			io_uring_wait_cqes(&rc->rc_ring, &cqe, 1, tsp, &waitmask);
			rc->rc_waiting.store(0, std::memory_order_relaxed);
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, nullptr);
	// The CQEs are left for the idle loop's poll (ring_poll_backend), once
	// it has reset its park word: a handler that wakes a thread here makes
	// the idle thread switch, and a CPU that runs threads must not look
	// parked (the hardclock skips parked CPUs' slices and timers).
}

void
ring_wake(pcpu *target, std::atomic<uint32_t> *) noexcept
{
	ring_cpu *trc = &g_rc[target->pc_cpuid];
	ring_cpu *me = ring_self();
	// From a signal handler that interrupted this CPU's own SQ work, the
	// SQ is not ours to write (rc_sq_busy).
	std::atomic_signal_fence(std::memory_order_seq_cst);
	if (g_msg_ring && me != nullptr && me != trc &&
	    me->rc_sq_busy.load(std::memory_order_relaxed) == 0) {
		spinlock_enter();
		if (!me->rc_stopping) {
			io_uring_sqe *sqe = ring_sqe(me, 1);
			if (sqe != nullptr) {
				io_uring_prep_msg_ring(sqe, trc->rc_ring.ring_fd, 0,
				    RU_WAKE, 0);
				sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
				io_uring_sqe_set_data64(sqe,
				    (static_cast<uint64_t>(target->pc_cpuid) << 3) |
					RU_MSG_FAILED);
				bump(me->rc_msg_sent);
				ring_flush(me);
				spinlock_exit();
				return;
			}
		}
		spinlock_exit();
	}
	eventfd_kick(trc);
}

int
ring_poll_backend(pcpu *pc) noexcept
{
	ring_cpu *rc = &g_rc[pc->pc_cpuid];
	if (io_uring_cq_ready(&rc->rc_ring) == 0 && !ring_held(rc))
		return 0;
	return ring_drain(rc);
}

// ---- Each ring is an interrupt event ("ring cpuN", bound to its CPU,
// one filter that drains the CQ), so that completions waiting on a busy
// CPU are delivered by interrupts/intr_event.cc at that CPU's next
// interrupt point: its preemption signal when the thread is outside
// critical sections, else the outermost critical_exit().  The events live
// as long as the process (made at the first boot with rings, re-bound at
// every boot): the hardclock may fire one at any time while the machine
// runs, and nothing ever frees one under it.
constexpr int RING_IE_MAX = 1024;
intr_event *g_ring_ie[RING_IE_MAX];            // made once, then constant
std::atomic<bool> g_ring_ie_ready{false};      // bound for this boot

int
ring_filter(void *arg) noexcept
{
	int cpu = static_cast<int>(reinterpret_cast<intptr_t>(arg));
	if (g_rc != nullptr && cpu < g_nrc)
		ring_drain(&g_rc[cpu]);
	// The ring is this event's only source: never stray, even when a
	// submission drained the CQ first.
	return FILTER_HANDLED;
}

void
ring_si_boot() noexcept
{
	if (g_rc == nullptr)
		return;
	for (int c = 0; c < g_nrc && c < RING_IE_MAX; c++) {
		if (g_ring_ie[c] == nullptr) {
			char name[32];
			std::snprintf(name, sizeof(name), "ring cpu%d", c);
			intr_event *ie;
			intr_handler *ih;
			if (intr_event_create(&ie, name) != 0)
				return;
			if (intr_event_add_handler(ie, name, ring_filter, nullptr,
				reinterpret_cast<void *>(static_cast<intptr_t>(c)),
				PI_DISK, INTR_MPSAFE | INTR_TYPE_BIO, &ih) != 0) {
				intr_event_destroy(ie);
				return;
			}
			g_ring_ie[c] = ie;
		}
		if (intr_event_bind(g_ring_ie[c], c) != 0)
			return;
	}
	g_ring_ie_ready.store(g_nrc <= RING_IE_MAX, std::memory_order_release);
}

void
ring_si_shutdown() noexcept
{
	g_ring_ie_ready.store(false, std::memory_order_release);
}

// The controller's sysinit (hook_* below, and the events above), made
// after them; registered by machine_boot() (intr_controller_sysinit()).
sysinit g_ring_sysinit;

// The hardclock's question, each tick (step 4): completions waiting on a
// CPU that is not in its ring wait.  With the ring's interrupt event
// bound, fire it (delivery is the event's business) and say no; else say
// yes, and the hardclock sends the preemption signal itself.
bool
ring_pending(pcpu *pc) noexcept
{
	ring_cpu *rc = &g_rc[pc->pc_cpuid];
	// Another thread's ring: io_uring_cq_ready() reads the CQ head
	// plainly, as only the ring's owner may, while the owner advances it
	// (a data race, ThreadSanitizer says).  Both indices are read here
	// atomically; the answer stays a racy hint, re-checked by the owner.
	const io_uring_cq &cq = rc->rc_ring.cq;
	unsigned tail = __atomic_load_n(cq.ktail, __ATOMIC_ACQUIRE);
	unsigned head = __atomic_load_n(cq.khead, __ATOMIC_RELAXED);
	if (rc->rc_waiting.load(std::memory_order_relaxed) != 0)
		return false;
	// Held completions (task work, overflow) wait for the CPU's next
	// entry into the kernel; a CPU that entered since the last tick
	// enters often and needs no interrupt for them, one that did not
	// gets one.
	uint64_t enters = rc->rc_enters.load(std::memory_order_relaxed);
	bool entering = enters != rc->rc_hc_enters;
	rc->rc_hc_enters = enters;
	bool pending = tail != head;
	if (!pending && !entering && ring_held(rc)) {
		bump(rc->rc_held_kicks);
		pending = true;
	}
	if (!pending)
		return false;
	if (g_ring_ie_ready.load(std::memory_order_acquire)) {
		intr_event_fire(g_ring_ie[pc->pc_cpuid]);
		return false;
	}
	return true;
}

constexpr idle_backend ring_backend = {
	.ib_name = "io_uring",
	.ib_wait = ring_wait,
	.ib_wake = ring_wake,
	.ib_poll = ring_poll_backend,
	.ib_pending = ring_pending,
};

// ---- Machine hooks.

void
rings_free(int n) noexcept
{
	for (int c = 0; c < n; c++) {
		io_uring_queue_exit(&g_rc[c].rc_ring);
		if (g_rc[c].rc_efd >= 0)
			::close(g_rc[c].rc_efd);
	}
	// ring_cpu is trivially destructible (PODs and lock-free atomics).
	::operator delete[](g_rc, std::align_val_t(64));
	g_rc = nullptr;
	g_nrc = 0;
}

void
hook_boot(int ncpus) noexcept
{
	idle_backend_install(nullptr);
	// Simulated (runtime/sim.h): no ring; the simulation is the idle
	// backend and the event timer.
	if (sim_active())
		return;
	const char *env = std::getenv("USMP_IDLE_BACKEND");
	if (env != nullptr && std::strcmp(env, "futex") == 0)
		return;
	if (context_under_valgrind()) // see runtime/context.h
		return;
	void *mem = ::operator new[](sizeof(ring_cpu) * ncpus, std::align_val_t(64),
	    std::nothrow);
	if (mem == nullptr)
		return;
	g_rc = static_cast<ring_cpu *>(mem);
	for (int c = 0; c < ncpus; c++)
		new (&g_rc[c]) ring_cpu;
	int made = 0;
	const char *why = nullptr;
	int err = 0;
	for (; made < ncpus; made++) {
		ring_cpu *rc = &g_rc[made];
		// COOP_TASKRUN: a completion (a socket became readable) does
		// not interrupt the CPU's OS thread with an IPI to post its
		// CQE; the kernel runs that task work at the thread's next
		// system call (every submission is one) or wakes it if it
		// waits in its ring, and TASKRUN_FLAG says so in the SQ flags
		// for the drains, the idle poll and the hardclock (ring_held).
		// Linux 5.19; older kernels refuse the flags: set up without.
		io_uring_params p{};
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN |
		    IORING_SETUP_TASKRUN_FLAG;
		p.cq_entries = RING_CQ_ENTRIES;
		int r = io_uring_queue_init_params(RING_SQ_ENTRIES, &rc->rc_ring, &p);
		if (r == -EINVAL) {
			p = {};
			p.flags = IORING_SETUP_CQSIZE;
			p.cq_entries = RING_CQ_ENTRIES;
			r = io_uring_queue_init_params(RING_SQ_ENTRIES, &rc->rc_ring, &p);
		}
		if (r < 0) {
			why = "io_uring_setup";
			err = -r;
			break;
		}
		if (!(p.features & IORING_FEAT_EXT_ARG) ||
		    !(p.features & IORING_FEAT_NODROP)) {
			io_uring_queue_exit(&rc->rc_ring);
			why = "kernel lacks IORING_FEAT_EXT_ARG/NODROP (Linux 5.11)";
			break;
		}
		rc->rc_efd = eventfd(0, EFD_CLOEXEC);
		if (rc->rc_efd < 0) {
			io_uring_queue_exit(&rc->rc_ring);
			why = "eventfd";
			err = errno;
			break;
		}
	}
	if (made < ncpus) {
		static std::atomic<bool> said{false};
		if (!said.exchange(true))
			printf_diag("usmp: no io_uring interrupt controller (%s%s%s): "
			    "idle CPUs park on futexes, I/O calls are plain system calls",
			    why, err != 0 ? ": " : "", err != 0 ? std::strerror(err) : "");
		g_nrc = made;
		rings_free(made);
		return;
	}
	g_nrc = ncpus;
	g_msg_ring = false;
	if (io_uring_probe *probe = io_uring_get_probe_ring(&g_rc[0].rc_ring)) {
		g_msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
		io_uring_free_probe(probe);
	}
	// USMP_RING_IPI=eventfd: IPIs as on a kernel without MSG_RING (tests).
	const char *ipi = std::getenv("USMP_RING_IPI");
	if (ipi != nullptr && std::strcmp(ipi, "eventfd") == 0)
		g_msg_ring = false;
	idle_backend_install(&ring_backend);
}

void
hook_cpu_start(pcpu *pc) noexcept
{
	if (g_rc == nullptr)
		return;
	spinlock_enter();
	ring_arm_eventfd(&g_rc[pc->pc_cpuid]);
	spinlock_exit();
}

void
hook_cpu_stop(pcpu *pc) noexcept
{
	if (g_rc == nullptr)
		return;
	ring_cpu *rc = &g_rc[pc->pc_cpuid];
	spinlock_enter();
	rc->rc_stopping = true;
	io_uring_sqe *sqe = ring_sqe(rc, 1);
	if (sqe != nullptr) {
		io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
		io_uring_sqe_set_data64(sqe, RU_IGNORE);
		ring_flush(rc);
	}
	spinlock_exit();
	// Wait for every request's completion (cancelled, or finished: a
	// regular-file read in an io-wq worker cannot be interrupted), and for
	// the eventfd read's and the event timer's.  Bounded: a request the kernel never completes
	// is reported rather than hanging the shutdown.
	uint64_t give_up = clock_ns() + 10000000000ull;
	for (;;) {
		ring_drain(rc);
		if (rc->rc_inflight.load(std::memory_order_relaxed) == 0 &&
		    !rc->rc_efd_armed && !rc->rc_timer_armed)
			break;
		if (clock_ns() > give_up) {
			printf_diag("machine_shutdown(): cpu%d: %lld I/O request%s "
			    "still in flight after 10 s; its ring is closed anyway",
			    pc->pc_cpuid,
			    static_cast<long long>(rc->rc_inflight.load()),
			    rc->rc_inflight.load() == 1 ? "" : "s");
			break;
		}
		__kernel_timespec ts{.tv_sec = 0, .tv_nsec = 100000000};
		io_uring_cqe *cqe = nullptr;
		io_uring_wait_cqe_timeout(&rc->rc_ring, &cqe, &ts);
	}
}

void
hook_shutdown() noexcept
{
	idle_backend_install(nullptr);
	if (g_rc != nullptr)
		rings_free(g_nrc);
	g_msg_ring = false;
}

} // namespace

sysinit *
intr_controller_sysinit() noexcept
{
	// After interrupt events (order 0), before callouts (10): the ring
	// events exist when the callout wheels' timers may fire them.
	g_ring_sysinit.si_machine_boot = hook_boot;
	g_ring_sysinit.si_cpu_start = hook_cpu_start;
	g_ring_sysinit.si_cpu_stop = hook_cpu_stop;
	g_ring_sysinit.si_machine_shutdown = hook_shutdown;
	g_ring_sysinit.si_boot = ring_si_boot;
	g_ring_sysinit.si_shutdown = ring_si_shutdown;
	g_ring_sysinit.si_order = 5;
	return &g_ring_sysinit;
}

bool
ring_timer_arm(uint64_t deadline_ns) noexcept
{
	if (sim_active())
		return sim_timer_arm(deadline_ns);
	ring_cpu *rc = ring_self();
	if (rc == nullptr)
		return false;
	if (__builtin_expect(curthread()->td_spinlock_count == 0, 0))
		panic("ring_timer_arm() by thread \"%s\" outside a spinlock section",
		    curthread()->td_name);
	return ring_timer_arm_on(rc, deadline_ns);
}

void
ring_timer_set_handler(clock_intr_fn fn) noexcept
{
	g_clock_intr.store(fn, std::memory_order_release);
	sim_set_clock_intr(fn);
}

bool
ring_timer_enabled() noexcept
{
	return g_rc != nullptr || sim_active();
}

bool
ring_enabled() noexcept
{
	return g_rc != nullptr && machine_running();
}

intr_event *
ring_intr_event(int cpu) noexcept
{
	if (cpu < 0 || cpu >= RING_IE_MAX || !g_ring_ie_ready.load(std::memory_order_acquire))
		return nullptr;
	return g_ring_ie[cpu];
}

bool
ring_has_msg_ring() noexcept
{
	return g_rc != nullptr && g_msg_ring;
}

int
ring_submit(const ring_req &rq, ring_op *op) noexcept
{
	ring_cpu *rc = ring_self();
	if (rc == nullptr)
		return -ENXIO;
	thread *td = curthread();
	if (td->td_spinlock_count == 0)
		panic("ring_submit() by thread \"%s\" outside a spinlock section",
		    td->td_name);
	if (rc->rc_stopping)
		return -EBUSY;
	io_uring_sqe *sqe = ring_sqe(rc, rq.rq_timeout_ns != 0 ? 2 : 1);
	if (sqe == nullptr)
		return -EAGAIN;
	__kernel_timespec ts{};
	switch (rq.rq_op) {
	case ring_opcode::nop:
		io_uring_prep_nop(sqe);
		break;
	case ring_opcode::read:
		io_uring_prep_read(sqe, rq.rq_fd, rq.rq_buf, rq.rq_len, rq.rq_off);
		break;
	case ring_opcode::write:
		io_uring_prep_write(sqe, rq.rq_fd, rq.rq_buf, rq.rq_len, rq.rq_off);
		break;
	case ring_opcode::readv:
		io_uring_prep_readv(sqe, rq.rq_fd, static_cast<const iovec *>(rq.rq_buf),
		    rq.rq_len, rq.rq_off);
		break;
	case ring_opcode::writev:
		io_uring_prep_writev(sqe, rq.rq_fd, static_cast<const iovec *>(rq.rq_buf),
		    rq.rq_len, rq.rq_off);
		break;
	case ring_opcode::recv:
		io_uring_prep_recv(sqe, rq.rq_fd, rq.rq_buf, rq.rq_len, rq.rq_flags);
		break;
	case ring_opcode::send:
		io_uring_prep_send(sqe, rq.rq_fd, rq.rq_buf, rq.rq_len, rq.rq_flags);
		break;
	case ring_opcode::accept:
		io_uring_prep_accept(sqe, rq.rq_fd, static_cast<sockaddr *>(rq.rq_buf),
		    static_cast<socklen_t *>(rq.rq_addrlen), rq.rq_flags);
		break;
	case ring_opcode::connect:
		io_uring_prep_connect(sqe, rq.rq_fd, static_cast<const sockaddr *>(rq.rq_buf),
		    rq.rq_len);
		break;
	case ring_opcode::close:
		io_uring_prep_close(sqe, rq.rq_fd);
		break;
	case ring_opcode::fsync:
		io_uring_prep_fsync(sqe, rq.rq_fd, static_cast<unsigned>(rq.rq_flags));
		break;
	case ring_opcode::poll:
		io_uring_prep_poll_add(sqe, rq.rq_fd, rq.rq_len);
		break;
	case ring_opcode::timeout:
		ts.tv_sec = static_cast<long long>(rq.rq_off / 1000000000ull);
		ts.tv_nsec = static_cast<long long>(rq.rq_off % 1000000000ull);
		// The kernel copies the timespec at submission (below).
		io_uring_prep_timeout(sqe, &ts, 0, 0);
		break;
	}
	io_uring_sqe_set_data(sqe, op);
	__kernel_timespec lts{};
	if (rq.rq_timeout_ns != 0) {
		sqe->flags |= IOSQE_IO_LINK;
		io_uring_sqe *lsqe = io_uring_get_sqe(&rc->rc_ring);
		lts.tv_sec = static_cast<long long>(rq.rq_timeout_ns / 1000000000ull);
		lts.tv_nsec = static_cast<long long>(rq.rq_timeout_ns % 1000000000ull);
		io_uring_prep_link_timeout(lsqe, &lts, 0);
		io_uring_sqe_set_data64(lsqe, RU_IGNORE);
	}
	rc->rc_inflight.fetch_add(1, std::memory_order_relaxed);
	bump(rc->rc_submitted);
	// The SQEs now belong to the kernel even if io_uring_enter fails (a
	// later enter submits them), so the request is in flight either way.
	ring_flush(rc);
	ring_drain(rc);
	return static_cast<int>(rc - g_rc);
}

int
ring_cancel(ring_op *op) noexcept
{
	ring_cpu *rc = ring_self();
	if (rc == nullptr)
		return -ENXIO;
	io_uring_sqe *sqe = ring_sqe(rc, 1);
	if (sqe == nullptr)
		return -EAGAIN;
	io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(op), 0);
	io_uring_sqe_set_data64(sqe, RU_IGNORE);
	ring_flush(rc);
	return 0;
}

int
ring_poll() noexcept
{
	ring_cpu *rc = ring_self();
	if (rc == nullptr)
		return 0;
	return ring_drain(rc);
}

ring_stats
ring_get_stats(int cpu) noexcept
{
	ring_stats s;
	if (g_rc == nullptr || cpu < 0 || cpu >= g_nrc)
		return s;
	ring_cpu *rc = &g_rc[cpu];
	s.rs_waits = rc->rc_waits.load(std::memory_order_relaxed);
	s.rs_wakeups = rc->rc_wakeups.load(std::memory_order_relaxed);
	s.rs_msg_sent = rc->rc_msg_sent.load(std::memory_order_relaxed);
	s.rs_eventfd_sent = rc->rc_eventfd_sent.load(std::memory_order_relaxed);
	s.rs_completions = rc->rc_completions.load(std::memory_order_relaxed);
	s.rs_submitted = rc->rc_submitted.load(std::memory_order_relaxed);
	s.rs_inflight = rc->rc_inflight.load(std::memory_order_relaxed);
	s.rs_overflows = rc->rc_overflows.load(std::memory_order_relaxed);
	s.rs_taskruns = rc->rc_taskruns.load(std::memory_order_relaxed);
	s.rs_held_kicks = rc->rc_held_kicks.load(std::memory_order_relaxed);
	s.rs_enters = rc->rc_enters.load(std::memory_order_relaxed);
	s.rs_timer_fires = rc->rc_timer_fires.load(std::memory_order_relaxed);
	s.rs_timer_arms = rc->rc_timer_arms.load(std::memory_order_relaxed);
	s.rs_waiting = rc->rc_waiting.load(std::memory_order_relaxed) != 0;
	return s;
}

} // namespace usmp

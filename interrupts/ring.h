// The interrupt controller: one io_uring per CPU (interrupts/ring.cc).
//
// Each CPU of the machine owns a ring, created at machine_boot() and closed
// at machine_shutdown().  The ring is that CPU's interrupt controller:
//
//   - an idle CPU waits in its ring (io_uring_enter) instead of a futex, so
//     an I/O completion, a timer or an IPI all end the same wait;
//   - an IPI to a CPU is a message on its ring (IORING_OP_MSG_RING from
//     another CPU's ring; from a thread that is no CPU, or on a kernel
//     without MSG_RING, a write to an eventfd the target ring reads);
//   - a completion is an interrupt of the CPU that submitted the request:
//     its CQ is drained on that CPU, in primary interrupt context (a
//     spinlock section: interrupts disabled, no sleeping, no sleep locks),
//     and each completion runs its request's handler like a filter.
//
// The CQ is drained (interrupts are delivered) by the idle loop, after
// each submission on the CPU (completions that are ready at once, e.g. a
// read of a socket that has data, are handled before the submitter even
// thinks of sleeping), and, on a busy CPU, by the preemption signal that
// the hardclock sends each tick when the ring has completions waiting.
//
// This header is the liburing-free interface for the rest of interrupts/
// (the blocking I/O calls of interrupts/io.h are built on it) and for tests.
// Only interrupts/ring.cc includes <liburing.h>.
//
// The ring is used only when the kernel permits io_uring with the features
// needed (IORING_FEAT_EXT_ARG, Linux 5.11) and USMP_IDLE_BACKEND is not
// "futex" in the environment; otherwise ring_enabled() is false, idle CPUs
// park on futexes and the I/O calls fall back to plain system calls.
#pragma once

#include <cstdint>

namespace usmp {

// A request on a CPU's ring.  Embed it in the caller's state; it must stay
// valid until its handler has run.
struct ring_op {
	// Runs once, on the CPU whose ring the request was submitted to, in
	// primary interrupt context (spinlock section), with the completion's
	// result (>= 0, or -errno) and CQE flags.  It may take spin locks and
	// wake threads (sleepq_signal); it may not sleep or take sleep locks.
	void (*ro_handler)(ring_op *op, int32_t res, uint32_t cqe_flags) noexcept = nullptr;
};

enum class ring_opcode : uint8_t {
	nop,
	read,    // rq_buf, rq_len bytes, at rq_off (UINT64_MAX: the file position)
	write,   // same
	readv,   // rq_buf: const iovec *, rq_len: count, at rq_off
	writev,  // same
	recv,    // rq_buf, rq_len, rq_flags: MSG_*
	send,    // same
	accept,  // rq_buf: sockaddr * (or null), rq_addrlen: socklen_t *, rq_flags: SOCK_*
	connect, // rq_buf: const sockaddr *, rq_len: its length
	close,   // rq_fd
	fsync,   // rq_flags: IORING_FSYNC_DATASYNC (1) for fdatasync
	poll,    // rq_len: poll events; result: revents
	timeout, // rq_off: nanoseconds; result: -ETIME when it expires
};

struct ring_req {
	ring_opcode rq_op = ring_opcode::nop;
	int rq_fd = -1;
	void *rq_buf = nullptr;
	uint32_t rq_len = 0;
	uint64_t rq_off = 0;
	void *rq_addrlen = nullptr;
	int rq_flags = 0;
	// If non-zero, a linked timeout (IORING_OP_LINK_TIMEOUT): the request
	// is cancelled after this many nanoseconds and completes with
	// -ECANCELED (or -EINTR for some) instead.
	uint64_t rq_timeout_ns = 0;
};

// Whether the running machine uses the ring backend.  Context: any.
bool ring_enabled() noexcept;

// Submit `req` on the calling CPU's ring; `op`'s handler runs when it
// completes.  Then deliver whatever completions are ready (maybe op's own).
// Returns the CPU whose ring holds the request, or -errno (-ENXIO: no ring:
// a foreign OS thread or ring_enabled() false; -EBUSY: the machine is
// stopping).  Requires a spinlock section (the SQ belongs to the CPU and is
// filled with interrupts disabled); the caller must stay on this CPU
// (sched_pin) until it has cancelled or seen the completion if it may
// call ring_cancel().  Context: a green thread of a CPU.
int ring_submit(const ring_req &req, ring_op *op) noexcept;

// Ask the calling CPU's ring to cancel `op` (IORING_OP_ASYNC_CANCEL).
// `op` must have been submitted on this CPU's ring; its handler still runs
// exactly once (with -ECANCELED, or its result if it completed first).
// Requires a spinlock section.  Returns 0 or -errno.
int ring_cancel(ring_op *op) noexcept;

// Deliver the calling CPU's ready completions now.  Returns how many.
// Context: a CPU, outside spinlock sections or inside one.
int ring_poll() noexcept;

// Counters of one CPU's ring, read racily.
struct ring_stats {
	uint64_t rs_waits = 0;         // idle waits in the ring
	uint64_t rs_wakeups = 0;       // waits ended by a ring message or eventfd
	uint64_t rs_msg_sent = 0;      // IPIs sent as IORING_OP_MSG_RING from here
	uint64_t rs_eventfd_sent = 0;  // IPIs to this CPU sent through its eventfd
	uint64_t rs_completions = 0;   // handlers run (interrupts delivered)
	uint64_t rs_submitted = 0;     // requests submitted
	int64_t rs_inflight = 0;       // submitted, handler not run yet
	uint64_t rs_taskruns = 0;      // entries to fetch completions held as task work
	uint64_t rs_held_kicks = 0;    // hardclock ticks that interrupted a busy CPU for held ones
	uint64_t rs_enters = 0;        // entries into the kernel (submissions, fetches)
	uint64_t rs_overflows = 0;     // drains that fetched CQEs the CQ had no room for
	uint64_t rs_timer_fires = 0;   // event timer completions (clock interrupts)
	uint64_t rs_timer_arms = 0;    // event timer arms and moves earlier
	bool rs_waiting = false;       // the CPU is waiting in its ring now
};
// Counters of CPU `cpu` of the running machine (zeros without rings).
ring_stats ring_get_stats(int cpu) noexcept;
// CPU `cpu`'s ring as an interrupt event ("ring cpuN", bound to the CPU, one
// filter that drains the CQ), or null when the machine has no rings.  The
// hardclock fires it for completions waiting on a busy CPU.
struct intr_event;
intr_event *ring_intr_event(int cpu) noexcept;
// Whether IPIs go as ring messages (IORING_OP_MSG_RING supported).
bool ring_has_msg_ring() noexcept;

} // namespace usmp

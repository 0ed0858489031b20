// Blocking I/O for green threads on the CPUs' rings (interrupts/io.h).
//
// The protocol of one call (io_run), for a request R of thread T submitted on
// CPU C:
//  1. T submits R to C's ring inside a spinlock section (T cannot move
//     between choosing the ring and filling it); ring_submit() then drains
//     C's CQ, so R's handler may already have run.
//  2. The handler (io_done), in interrupt context on C: under the sleep
//     queue chain lock of the wait channel &w, store the result, set
//     iw_done (release), and sleepq_signal(&w).
//  3. T: take the chain lock of &w; if iw_done is set, done (the handler
//     has released the chain lock, so it no longer touches w, which lives
//     on T's stack).  Else sleepq_add + sleepq_wait_sig: the handler can
//     only set iw_done while holding the chain lock, so it runs either
//     before T's check (T sees the flag) or after T is queued (T is woken):
//     no wakeup is lost.  T is not pinned: while it sleeps, and when it is
//     woken, the scheduler may place it on any CPU; R's completion still
//     lands on C's ring and C's handler wakes T wherever it is.
//  4. If T's sleep ends with EINTR (thread_interrupt), T asks C's ring to
//     cancel R.  A ring's SQ is filled only by its own CPU, so if T has
//     moved, it binds itself to C for the submission (sched_bind) and
//     unbinds after it (a pinned or bound thread cannot have moved).  Then
//     T goes back to 3 with an uninterruptible sleep, until R's handler has
//     run: R's buffer is not touched after the call returns.  The interrupt
//     stays pending.
//  5. A timeout is a linked IORING_OP_LINK_TIMEOUT: the kernel cancels R,
//     whose handler sees -ECANCELED, reported as ETIMEDOUT.
// At shutdown the CPU cancels every request in flight and runs the
// handlers (interrupts/ring.cc, step 5), so T is woken, never to run again
// (machine_shutdown() reports it like every thread left behind).
#include "interrupts/io.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>

#include "interrupts/ring.h"
#include "runtime/critical.h"
#include "runtime/internal/sim.h"
#include "runtime/panic.h"
#include "runtime/thread.h"
#include "sched/sched.h"
#include "sync/sleepqueue.h"

namespace usmp::io {

namespace {

struct io_wait final : ring_op {
	std::atomic<int> iw_done{0}; // set by the handler under the chain lock
	int32_t iw_res = 0;          // written before iw_done
};

void
io_done(ring_op *op, int32_t res, uint32_t) noexcept
{
	auto *w = static_cast<io_wait *>(op);
	sleepq_lock(w);
	w->iw_res = res;
	w->iw_done.store(1, std::memory_order_release);
	sleepq_signal(w, SLEEPQ_SLEEP, 0, 0);
	sleepq_release(w);
}

// Whether this call goes through the ring (else: the plain system call).
bool
use_ring(const char *what) noexcept
{
	if (sim_active()) // real I/O: the simulation does not control it
		sim_uncontrolled("usmp::io::", what);
	if (!on_cpu() || !ring_enabled())
		return false;
	thread *td = curthread();
	if (td->td_critnest != 0 || td->td_spinlock_count != 0)
		panic("usmp::io::%s() by thread \"%s\" in a critical section "
		      "or with a spin lock held (it may sleep)",
		    what, td->td_name);
	return true;
}

int
nsec_to_ms(nanoseconds t) noexcept
{
	if (t <= no_timeout)
		return -1;
	auto ms = (t.count() + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

// Cancel op, submitted on CPU `cpu`'s ring, from that CPU (step 4).
void
cancel_on(int cpu, ring_op *op, const char *wmesg) noexcept
{
	bool bound = false;
	int e;
	for (;;) {
		spinlock_enter();
		if (curcpu() == cpu) {
			e = ring_cancel(op);
			spinlock_exit();
			break;
		}
		spinlock_exit();
		if (bound || sched_bind(cpu) != 0)
			panic("usmp::io: thread \"%s\" cannot get back to cpu%d "
			      "to cancel its %s request",
			    curthread()->td_name, cpu, wmesg);
		bound = true;
	}
	if (bound)
		sched_unbind();
	if (e != 0)
		panic("usmp::io: cannot cancel the %s request of thread \"%s\" "
		      "on cpu%d: error %d",
		    wmesg, curthread()->td_name, cpu, -e);
}

// The request's result (>= 0) or -errno.  Protocol steps 1-5 above.
long
io_run(ring_req rq, nanoseconds timeout, const char *wmesg) noexcept
{
	if (thread_interrupt_pending(curthread()))
		return -EINTR;
	if (timeout > no_timeout)
		rq.rq_timeout_ns = static_cast<uint64_t>(timeout.count());
	io_wait w;
	w.ro_handler = io_done;
	spinlock_enter();
	int cpu = ring_submit(rq, &w);
	spinlock_exit();
	if (cpu < 0)
		return cpu;
	bool cancelled = false;
	for (;;) {
		sleepq_lock(&w);
		if (w.iw_done.load(std::memory_order_acquire) != 0) {
			sleepq_release(&w);
			break;
		}
		if (cancelled) {
			sleepq_add(&w, nullptr, wmesg, SLEEPQ_SLEEP, 0);
			sleepq_wait(&w, 0);
			continue;
		}
		sleepq_add(&w, nullptr, wmesg, SLEEPQ_SLEEP | SLEEPQ_INTERRUPTIBLE, 0);
		if (sleepq_wait_sig(&w, 0) == EINTR) {
			cancelled = true;
			cancel_on(cpu, &w, wmesg);
		}
	}
	int32_t res = w.iw_res;
	if (res == -ECANCELED || (cancelled && res == -EINTR))
		res = cancelled ? -EINTR : (rq.rq_timeout_ns != 0 ? -ETIMEDOUT : -ECANCELED);
	return res;
}

inline long
ret(long r) noexcept
{
	if (r < 0) {
		errno = static_cast<int>(-r);
		return -1;
	}
	return r;
}

// The plain system call's result, with a timeout: wait for readiness first.
// Returns 0 if ready, -1 with errno (ETIMEDOUT) otherwise.
int
plain_wait(int fd, short events, nanoseconds timeout) noexcept
{
	if (timeout <= no_timeout)
		return 0;
	pollfd p{.fd = fd, .events = events, .revents = 0};
	int r = ::poll(&p, 1, nsec_to_ms(timeout));
	if (r == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	return r < 0 ? -1 : 0;
}

uint32_t
clamp_len(size_t n) noexcept
{
	return n > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(n);
}

} // namespace

ssize_t
read(int fd, void *buf, size_t n, nanoseconds timeout) noexcept
{
	if (!use_ring("read"))
		return plain_wait(fd, POLLIN, timeout) < 0 ? -1 : ::read(fd, buf, n);
	ring_req rq{.rq_op = ring_opcode::read, .rq_fd = fd, .rq_buf = buf,
	    .rq_len = clamp_len(n), .rq_off = UINT64_MAX};
	return ret(io_run(rq, timeout, "read"));
}

ssize_t
write(int fd, const void *buf, size_t n, nanoseconds timeout) noexcept
{
	if (!use_ring("write"))
		return plain_wait(fd, POLLOUT, timeout) < 0 ? -1 : ::write(fd, buf, n);
	ring_req rq{.rq_op = ring_opcode::write, .rq_fd = fd,
	    .rq_buf = const_cast<void *>(buf), .rq_len = clamp_len(n),
	    .rq_off = UINT64_MAX};
	return ret(io_run(rq, timeout, "write"));
}

ssize_t
readv(int fd, const iovec *iov, int iovcnt, nanoseconds timeout) noexcept
{
	if (!use_ring("readv"))
		return plain_wait(fd, POLLIN, timeout) < 0 ? -1 : ::readv(fd, iov, iovcnt);
	if (iovcnt < 0)
		return ret(-EINVAL);
	ring_req rq{.rq_op = ring_opcode::readv, .rq_fd = fd,
	    .rq_buf = const_cast<iovec *>(iov), .rq_len = static_cast<uint32_t>(iovcnt),
	    .rq_off = UINT64_MAX};
	return ret(io_run(rq, timeout, "readv"));
}

ssize_t
writev(int fd, const iovec *iov, int iovcnt, nanoseconds timeout) noexcept
{
	if (!use_ring("writev"))
		return plain_wait(fd, POLLOUT, timeout) < 0 ? -1 : ::writev(fd, iov, iovcnt);
	if (iovcnt < 0)
		return ret(-EINVAL);
	ring_req rq{.rq_op = ring_opcode::writev, .rq_fd = fd,
	    .rq_buf = const_cast<iovec *>(iov), .rq_len = static_cast<uint32_t>(iovcnt),
	    .rq_off = UINT64_MAX};
	return ret(io_run(rq, timeout, "writev"));
}

ssize_t
pread(int fd, void *buf, size_t n, off_t off, nanoseconds timeout) noexcept
{
	if (!use_ring("pread"))
		return plain_wait(fd, POLLIN, timeout) < 0 ? -1 : ::pread(fd, buf, n, off);
	if (off < 0)
		return ret(-EINVAL);
	ring_req rq{.rq_op = ring_opcode::read, .rq_fd = fd, .rq_buf = buf,
	    .rq_len = clamp_len(n), .rq_off = static_cast<uint64_t>(off)};
	return ret(io_run(rq, timeout, "pread"));
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off, nanoseconds timeout) noexcept
{
	if (!use_ring("pwrite"))
		return plain_wait(fd, POLLOUT, timeout) < 0 ? -1 : ::pwrite(fd, buf, n, off);
	if (off < 0)
		return ret(-EINVAL);
	ring_req rq{.rq_op = ring_opcode::write, .rq_fd = fd,
	    .rq_buf = const_cast<void *>(buf), .rq_len = clamp_len(n),
	    .rq_off = static_cast<uint64_t>(off)};
	return ret(io_run(rq, timeout, "pwrite"));
}

int
accept(int fd, sockaddr *addr, socklen_t *addrlen, int flags, nanoseconds timeout) noexcept
{
	if (!use_ring("accept"))
		return plain_wait(fd, POLLIN, timeout) < 0 ? -1 :
							     ::accept4(fd, addr, addrlen, flags);
	ring_req rq{.rq_op = ring_opcode::accept, .rq_fd = fd, .rq_buf = addr,
	    .rq_addrlen = addrlen, .rq_flags = flags};
	return static_cast<int>(ret(io_run(rq, timeout, "accept")));
}

int
connect(int fd, const sockaddr *addr, socklen_t addrlen, nanoseconds timeout) noexcept
{
	if (!use_ring("connect")) {
		// A plain connect cannot be bounded without making the socket
		// non-blocking; a timeout is not applied here.
		return ::connect(fd, addr, addrlen);
	}
	ring_req rq{.rq_op = ring_opcode::connect, .rq_fd = fd,
	    .rq_buf = const_cast<sockaddr *>(addr), .rq_len = addrlen};
	return static_cast<int>(ret(io_run(rq, timeout, "connect")));
}

ssize_t
recv(int fd, void *buf, size_t n, int flags, nanoseconds timeout) noexcept
{
	if (!use_ring("recv"))
		return plain_wait(fd, POLLIN, timeout) < 0 ? -1 : ::recv(fd, buf, n, flags);
	ring_req rq{.rq_op = ring_opcode::recv, .rq_fd = fd, .rq_buf = buf,
	    .rq_len = clamp_len(n), .rq_flags = flags};
	return ret(io_run(rq, timeout, "recv"));
}

ssize_t
send(int fd, const void *buf, size_t n, int flags, nanoseconds timeout) noexcept
{
	if (!use_ring("send"))
		return plain_wait(fd, POLLOUT, timeout) < 0 ? -1 : ::send(fd, buf, n, flags);
	ring_req rq{.rq_op = ring_opcode::send, .rq_fd = fd,
	    .rq_buf = const_cast<void *>(buf), .rq_len = clamp_len(n), .rq_flags = flags};
	return ret(io_run(rq, timeout, "send"));
}

int
close(int fd) noexcept
{
	if (!use_ring("close"))
		return ::close(fd);
	ring_req rq{.rq_op = ring_opcode::close, .rq_fd = fd};
	return static_cast<int>(ret(io_run(rq, no_timeout, "close")));
}

int
fsync(int fd, bool datasync) noexcept
{
	if (!use_ring("fsync"))
		return datasync ? ::fdatasync(fd) : ::fsync(fd);
	ring_req rq{.rq_op = ring_opcode::fsync, .rq_fd = fd,
	    .rq_flags = datasync ? 1 : 0}; // IORING_FSYNC_DATASYNC
	return static_cast<int>(ret(io_run(rq, no_timeout, "fsync")));
}

int
poll(int fd, short events, nanoseconds timeout) noexcept
{
	if (!use_ring("poll")) {
		pollfd p{.fd = fd, .events = events, .revents = 0};
		int r = ::poll(&p, 1, nsec_to_ms(timeout));
		return r <= 0 ? r : p.revents;
	}
	ring_req rq{.rq_op = ring_opcode::poll, .rq_fd = fd,
	    .rq_len = static_cast<uint16_t>(events)};
	long r = io_run(rq, timeout, "poll");
	if (r == -ETIMEDOUT)
		return 0;
	return static_cast<int>(ret(r));
}

int
sleep(nanoseconds d) noexcept
{
	if (d <= no_timeout)
		return 0;
	if (sim_active() || !use_ring("sleep")) { // virtual time: controlled
		thread_sleep(d);
		return 0;
	}
	ring_req rq{.rq_op = ring_opcode::timeout, .rq_off = static_cast<uint64_t>(d.count())};
	long r = io_run(rq, no_timeout, "sleep");
	if (r == -ETIME)
		r = 0;
	return static_cast<int>(ret(r));
}

} // namespace usmp::io

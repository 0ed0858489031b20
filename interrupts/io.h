// Blocking I/O for green threads: usmp::io::read(), write(), accept(), ...
//
// Each call has the signature and the result convention of the system call
// of the same name (-1 and errno on failure; errno travels with the green
// thread), plus an optional per-call timeout.  On a CPU of a machine whose
// interrupt controller is the ring (interrupts/ring.h), the call submits the
// request to the current CPU's io_uring and sleeps on a sleep queue until
// the completion's handler (run in interrupt context on that CPU) wakes it;
// a request that completes at once (a read of a socket with data) returns
// without sleeping.  Other CPUs keep running threads meanwhile.
//
// The thread is not pinned while it waits: the scheduler may wake it on
// another CPU (an idle one) than the one that submitted; the completion
// still lands on the submitting CPU's ring, whose handler wakes the thread
// wherever it is.  Pinned and bound threads stay where they are.
//
// Errors:
//   - the system's errno for the operation (EBADF, ECONNRESET, EPIPE, ...);
//     EOF is a 0 result, as for read(2);
//   - ETIMEDOUT: the timeout passed before the operation completed; it was
//     cancelled (IORING_OP_LINK_TIMEOUT).  poll() returns 0 instead, as
//     poll(2).  A timeout of zero means none.
//   - EINTR: the thread was interrupted (thread_interrupt(),
//     sync/sleepqueue.h) before the operation completed: it was cancelled,
//     and its completion was waited for, so the kernel no longer touches
//     the buffer when the call returns.  If the operation completed anyway,
//     its result is returned.  As for interruptible sleeps, an interrupt
//     stays pending until thread_interrupt_clear(): a call made while one is
//     pending returns EINTR at once without doing anything.
//
// Context: may sleep (a green thread outside critical sections and without
// spin locks; panics otherwise).  From an OS thread that is no CPU of the
// machine, or when the machine has no rings (ring_enabled() false), each
// call is the plain system call (with a timeout: poll(2) for readiness
// first), blocking that OS thread.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <chrono>
#include <cstddef>

namespace usmp::io {

using std::chrono::nanoseconds;
inline constexpr nanoseconds no_timeout{0};

ssize_t read(int fd, void *buf, size_t n, nanoseconds timeout = no_timeout) noexcept;
ssize_t write(int fd, const void *buf, size_t n, nanoseconds timeout = no_timeout) noexcept;
ssize_t readv(int fd, const iovec *iov, int iovcnt, nanoseconds timeout = no_timeout) noexcept;
ssize_t writev(int fd, const iovec *iov, int iovcnt, nanoseconds timeout = no_timeout) noexcept;
ssize_t pread(int fd, void *buf, size_t n, off_t off, nanoseconds timeout = no_timeout) noexcept;
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off,
    nanoseconds timeout = no_timeout) noexcept;

// accept4(2): `flags` are SOCK_CLOEXEC / SOCK_NONBLOCK (default: CLOEXEC).
int accept(int fd, sockaddr *addr, socklen_t *addrlen, int flags = SOCK_CLOEXEC,
    nanoseconds timeout = no_timeout) noexcept;
int connect(int fd, const sockaddr *addr, socklen_t addrlen,
    nanoseconds timeout = no_timeout) noexcept;
ssize_t recv(int fd, void *buf, size_t n, int flags = 0,
    nanoseconds timeout = no_timeout) noexcept;
ssize_t send(int fd, const void *buf, size_t n, int flags = MSG_NOSIGNAL,
    nanoseconds timeout = no_timeout) noexcept;

// close(2) and fsync(2) / fdatasync(2) (datasync true).
int close(int fd) noexcept;
int fsync(int fd, bool datasync = false) noexcept;

// Readiness of one descriptor: wait until one of `events` (POLLIN,
// POLLOUT, ...) holds.  Returns the revents (> 0), 0 at the timeout, or -1.
int poll(int fd, short events, nanoseconds timeout = no_timeout) noexcept;

// Sleep for `d` on a ring timeout.  Returns 0, or -1 with EINTR when
// interrupted.
int sleep(nanoseconds d) noexcept;

} // namespace usmp::io

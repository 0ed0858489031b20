// I/O scenario: an echo over socketpairs on usmp::io.
//
// Pairs of green threads, a client and an echo server on the two ends of a
// Unix stream socketpair, pass messages of random length (1 byte to 16 KiB,
// so both short and split reads and writes happen); the client checks that
// every byte comes back, in order.  Clients sometimes wait with poll() or
// with a timeout that does not expire, and threads migrate between the
// submit and the completion.  At the end each client shuts its end down and
// the server sees EOF: every I/O in flight has completed.
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "apps/stress/stress.h"
#include "apps/stress/workers.h"
#include "interrupts/io.h"

namespace usmp::stress {
namespace {

constexpr size_t kMaxMsg = 16 * 1024;

// The byte at offset i of message m of stream s: a function of all three,
// so a byte from the wrong place or the wrong message shows.
inline uint8_t
pattern(uint64_t s, uint64_t m, size_t i)
{
	return uint8_t((s * 131 + m * 31 + i * 7) ^ (i >> 8));
}

// All of n bytes, or an errno.
int
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = io::write(fd, p, n);
		if (w < 0)
			return errno;
		p += w;
		n -= size_t(w);
	}
	return 0;
}

void
run_io(context &ctx)
{
	int npairs = ctx.ncpus() * 2;
	std::vector<int> fds(2 * npairs, -1);
	for (int i = 0; i < npairs; i++) {
		if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
			&fds[2 * i]) != 0) {
			ctx.fail("io: socketpair: %s", std::strerror(errno));
			for (int fd : fds)
				if (fd >= 0)
					::close(fd);
			return;
		}
	}

	run_workers(ctx, 2 * npairs, [&](int id, rng &r) {
		int pair = id / 2, fd = fds[id];
		std::vector<uint8_t> buf(kMaxMsg), want(kMaxMsg);
		if (id % 2 == 1) {
			// The echo server: whatever comes in goes back, until EOF.
			for (;;) {
				ssize_t n = io::read(fd, buf.data(), buf.size());
				if (n == 0)
					break;
				if (n < 0) {
					ctx.fail("io: server %d: read: %s", pair,
					    std::strerror(errno));
					break;
				}
				if (int e = write_all(fd, buf.data(), size_t(n))) {
					ctx.fail("io: server %d: write: %s", pair,
					    std::strerror(e));
					break;
				}
			}
			// On an error, the client must not wait for ever.
			::shutdown(fd, SHUT_RDWR);
			return;
		}
		uint64_t batch = 0;
		for (uint64_t m = 0; ctx.running(); m++) {
			size_t len = 1 + r.below(r.one_in(4) ? kMaxMsg : 512);
			for (size_t i = 0; i < len; i++)
				want[i] = pattern(uint64_t(pair), m, i);
			if (int e = write_all(fd, want.data(), len)) {
				ctx.fail("io: client %d: write: %s", pair,
				    std::strerror(e));
				break;
			}
			size_t got = 0;
			while (got < len) {
				if (r.one_in(8)) {
					int pr = io::poll(fd, POLLIN,
					    std::chrono::seconds(30));
					if (pr <= 0 || !(pr & POLLIN)) {
						ctx.fail("io: client %d: poll returned "
						    "%d (%s)", pair, pr,
						    pr < 0 ? std::strerror(errno) :
						    "timed out");
						break;
					}
				}
				ssize_t n = r.one_in(4) ?
				    io::read(fd, buf.data() + got, len - got,
					std::chrono::seconds(30)) :
				    io::read(fd, buf.data() + got, len - got);
				if (n <= 0) {
					ctx.fail("io: client %d: read returned %zd "
					    "(%s) after %zu of %zu bytes", pair, n,
					    n < 0 ? std::strerror(errno) : "EOF",
					    got, len);
					break;
				}
				got += size_t(n);
			}
			if (got < len)
				break;
			if (std::memcmp(buf.data(), want.data(), len) != 0) {
				size_t i = 0;
				while (buf[i] == want[i])
					i++;
				ctx.fail("io: client %d message %llu: byte %zu of "
				    "%zu came back as %u, sent %u", pair,
				    (unsigned long long)m, i, len, buf[i], want[i]);
				break;
			}
			if (++batch == kOpBatch / 8) {
				ctx.add_ops(batch);
				batch = 0;
			}
		}
		ctx.add_ops(batch);
		// The server reads EOF and leaves.
		::shutdown(fd, SHUT_WR);
	});

	for (int fd : fds)
		if (io::close(fd) != 0)
			ctx.fail("io: close(%d): %s", fd, std::strerror(errno));
}

} // namespace

USMP_STRESS_SCENARIO("io",
    "echo over socketpairs on usmp::io: every byte back in order",
    run_io);

} // namespace usmp::stress

// Echo over socketpairs: many green threads blocked in recv/send on the
// CPUs' rings at once, random message sizes and interrupts thrown in, over
// 1, 2 and 8 CPUs.  The soak case is the 10,000 concurrent threads
// (5,000 echo pairs) on 8 CPUs.
#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <string>
#include <vector>

#include "interrupts/io.h"
#include "interrupts/ring.h"
#include "runtime/thread.h"
#include "support/machine.h"
#include "support/seed.h"

namespace io = usmp::io;

namespace {

// Enough descriptors for `pairs` socketpairs; returns how many pairs fit.
int
fit_pairs(int pairs)
{
	rlimit rl;
	REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rlim_t want = static_cast<rlim_t>(pairs) * 2 + 256;
	if (rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	int fit = static_cast<int>((rl.rlim_cur - 256) / 2);
	if (fit < pairs)
		WARN("RLIMIT_NOFILE allows only " << fit << " socketpairs of " << pairs);
	return fit < pairs ? fit : pairs;
}

void
echo_run(int ncpus, int pairs, int rounds, uint64_t seed)
{
	pairs = fit_pairs(pairs);
	usmp::test::machine m(ncpus);
	m.run([&] {
		std::vector<int> fds(static_cast<size_t>(pairs) * 2);
		for (int i = 0; i < pairs; i++)
			REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				    &fds[static_cast<size_t>(i) * 2]) == 0);
		std::atomic<long> echoed{0}, verified{0}, bad{0};
		std::vector<usmp::thread *> tds;
		tds.reserve(static_cast<size_t>(pairs) * 2);
		for (int i = 0; i < pairs; i++) {
			int a = fds[static_cast<size_t>(i) * 2], b = fds[static_cast<size_t>(i) * 2 + 1];
			usmp::thread *td;
			// The echo side: until EOF.
			REQUIRE(usmp::thread_create(&td, {.name = "echo"}, [b, &echoed, &bad] {
				char buf[2048];
				ssize_t r;
				while ((r = io::recv(b, buf, sizeof(buf))) > 0) {
					ssize_t off = 0;
					while (off < r) {
						ssize_t w = io::send(b, buf + off,
						    static_cast<size_t>(r - off));
						if (w <= 0) {
							bad.fetch_add(1);
							return;
						}
						off += w;
					}
					echoed.fetch_add(r);
				}
				if (r < 0)
					bad.fetch_add(1);
			}) == 0);
			tds.push_back(td);
			uint64_t s = usmp::test::derive_seed(seed, static_cast<uint64_t>(i));
			REQUIRE(usmp::thread_create(&td, {.name = "client"},
				    [a, s, rounds, &verified, &bad] {
				std::mt19937_64 rng(s);
				std::string msg, got;
				for (int k = 0; k < rounds; k++) {
					size_t len = 1 + rng() % 3000;
					msg.resize(len);
					for (auto &c : msg)
						c = static_cast<char>('a' + rng() % 26);
					if (io::send(a, msg.data(), len) != static_cast<ssize_t>(len)) {
						bad.fetch_add(1);
						return;
					}
					got.clear();
					char buf[4096];
					while (got.size() < len) {
						ssize_t r = io::recv(a, buf, sizeof(buf));
						if (r <= 0) {
							bad.fetch_add(1);
							return;
						}
						got.append(buf, static_cast<size_t>(r));
					}
					if (got != msg)
						bad.fetch_add(1);
					else
						verified.fetch_add(1);
				}
				::shutdown(a, SHUT_WR);
			}) == 0);
			tds.push_back(td);
		}
		for (auto *td : tds)
			REQUIRE(usmp::thread_join(td) == 0);
		for (int fd : fds)
			::close(fd);
		CHECK(bad.load() == 0);
		CHECK(verified.load() == static_cast<long>(pairs) * rounds);
		long inflight = 0;
		for (int c = 0; c < ncpus; c++)
			inflight += usmp::ring_get_stats(c).rs_inflight;
		CHECK(inflight == 0);
	});
}

} // namespace

TEST_CASE("echo over socketpairs on 1, 2 and 8 CPUs", "[stress]")
{
	USMP_TEST_SEED(seed);
	for (int n : {1, 2, 8})
		echo_run(n, 200, 20, usmp::test::derive_seed(seed, static_cast<uint64_t>(n)));
}

TEST_CASE("echo with 10,000 concurrent green threads on 8 CPUs", "[.soak]")
{
	USMP_TEST_SEED(seed);
	echo_run(8, 5000, 50, seed);
}

TEST_CASE("more completions at once than the CQ holds: none is lost", "[stress]")
{
	// 6,000 polls of one pipe on one CPU, all completed by one write: more
	// CQEs than the ring's CQ has entries (4,096), so the kernel keeps the
	// rest in its overflow list until the drain asks for them.
	static constexpr int N = 6000;
	usmp::test::machine m(1);
	m.run([] {
		int p[2];
		REQUIRE(pipe(p) == 0);
		std::atomic<int> waiting{0}, ready{0};
		std::vector<usmp::thread *> tds(N);
		for (int i = 0; i < N; i++)
			REQUIRE(usmp::thread_create(&tds[static_cast<size_t>(i)],
				    {.name = "poller", .stack_size = 16384}, [&] {
				waiting.fetch_add(1);
				if ((io::poll(p[0], POLLIN) & POLLIN) != 0)
					ready.fetch_add(1);
			}) == 0);
		while (waiting.load() < N ||
		    usmp::ring_get_stats(0).rs_inflight < N)
			usmp::thread_yield();
		CHECK(io::write(p[1], "!", 1) == 1);
		for (auto *td : tds)
			REQUIRE(usmp::thread_join(td) == 0);
		CHECK(ready.load() == N);
		CHECK(usmp::ring_get_stats(0).rs_inflight == 0);
		// The overflow path ran (the kernel may post in batches, but
		// 6,000 readiness events from one write do not fit).
		CHECK(usmp::ring_get_stats(0).rs_overflows > 0);
		::close(p[0]);
		::close(p[1]);
	});
}

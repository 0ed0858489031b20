// Blocking I/O for green threads (interrupts/io.h): results and errno,
// timeouts, interrupts racing completions, pinned threads, foreign OS
// threads, and shutdown with I/O in flight.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "interrupts/io.h"
#include "interrupts/ring.h"
#include "runtime/critical.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sched/sched.h"
#include "support/death.h"
#include "support/machine.h"
#include "sync/sleepqueue.h"

using namespace std::chrono_literals;
namespace io = usmp::io;

namespace {

struct fd_pair {
	int r = -1, w = -1;
	explicit fd_pair(bool sockets = false)
	{
		int p[2];
		if (sockets)
			REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0);
		else
			REQUIRE(pipe2(p, O_CLOEXEC) == 0);
		r = p[0];
		w = p[1];
	}
	~fd_pair()
	{
		if (r >= 0)
			::close(r);
		if (w >= 0)
			::close(w);
	}
};

// Wait until td sleeps (its wait message is set), without asserting on time.
void
wait_sleeping(usmp::thread *td)
{
	for (int i = 0; i < 100000; i++) {
		if (td->td_state == usmp::TDS_INHIBITED && td->td_wmesg != nullptr)
			return;
		usmp::thread_sleep(100us);
	}
	FAIL("thread never went to sleep");
}

} // namespace

TEST_CASE("read and write on a pipe: the reader sleeps until the data comes",
    "[unit]")
{
	for (int n : {1, 2, 8}) {
		usmp::test::machine m(n);
		m.run([] {
			fd_pair p;
			char buf[16] = {};
			usmp::thread *td;
			ssize_t got = -2;
			REQUIRE(usmp::thread_create(&td, {.name = "reader"}, [&] {
				got = io::read(p.r, buf, sizeof(buf));
			}) == 0);
			wait_sleeping(td);
			CHECK(std::string(td->td_wmesg) == "read");
			CHECK(io::write(p.w, "hello", 5) == 5);
			REQUIRE(usmp::thread_join(td) == 0);
			CHECK(got == 5);
			CHECK(std::string(buf, 5) == "hello");
		});
	}
}

TEST_CASE("EOF is 0; EBADF, EPIPE and ECONNRESET come back in errno", "[unit]")
{
	usmp::test::machine m(2);
	m.run([] {
		char c;
		errno = 0;
		CHECK(io::read(-1, &c, 1) == -1);
		CHECK(errno == EBADF);
		errno = 0;
		CHECK(io::write(12345, &c, 1) == -1);
		CHECK(errno == EBADF);
		{
			fd_pair p;
			::close(p.w);
			p.w = -1;
			CHECK(io::read(p.r, &c, 1) == 0); // EOF
		}
		{
			fd_pair s(true);
			::close(s.r);
			s.r = -1;
			errno = 0;
			CHECK(io::send(s.w, "x", 1) == -1); // MSG_NOSIGNAL by default
			CHECK(errno == EPIPE);
		}
		{
			// ECONNRESET: the peer closes with unread data and a
			// zero linger time (a TCP reset).
			int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			REQUIRE(ls >= 0);
			sockaddr_in a{};
			a.sin_family = AF_INET;
			a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			REQUIRE(bind(ls, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
			REQUIRE(listen(ls, 4) == 0);
			socklen_t al = sizeof(a);
			REQUIRE(getsockname(ls, reinterpret_cast<sockaddr *>(&a), &al) == 0);
			int cs = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			REQUIRE(io::connect(cs, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
			int as = io::accept(ls, nullptr, nullptr);
			REQUIRE(as >= 0);
			CHECK(io::send(cs, "abc", 3) == 3);
			linger lg{.l_onoff = 1, .l_linger = 0};
			REQUIRE(setsockopt(as, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
			::close(as);
			errno = 0;
			char b[8];
			CHECK(io::recv(cs, b, sizeof(b)) == -1);
			CHECK(errno == ECONNRESET);
			::close(cs);
			::close(ls);
		}
	});
}

TEST_CASE("loopback accept and connect, many connections at once", "[unit]")
{
	usmp::test::machine m(4);
	m.run([] {
		int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		REQUIRE(ls >= 0);
		sockaddr_in a{};
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		REQUIRE(bind(ls, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
		REQUIRE(listen(ls, 128) == 0);
		socklen_t al = sizeof(a);
		REQUIRE(getsockname(ls, reinterpret_cast<sockaddr *>(&a), &al) == 0);
		constexpr int N = 50;
		std::atomic<int> served{0};
		usmp::thread *acceptor;
		REQUIRE(usmp::thread_create(&acceptor, {.name = "acceptor"}, [&] {
			for (int i = 0; i < N; i++) {
				sockaddr_in peer{};
				socklen_t pl = sizeof(peer);
				int s = io::accept(ls, reinterpret_cast<sockaddr *>(&peer), &pl);
				REQUIRE(s >= 0);
				CHECK(pl == sizeof(peer));
				usmp::thread *h;
				REQUIRE(usmp::thread_create(&h, {.detached = true}, [s, &served] {
					char b[64];
					ssize_t r;
					while ((r = io::recv(s, b, sizeof(b))) > 0)
						CHECK(io::send(s, b, static_cast<size_t>(r)) == r);
					CHECK(r == 0);
					CHECK(io::close(s) == 0);
					served.fetch_add(1);
				}) == 0);
			}
		}) == 0);
		std::vector<usmp::thread *> clients(N);
		for (int i = 0; i < N; i++)
			REQUIRE(usmp::thread_create(&clients[i], {}, [&a, i] {
				int cs = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
				REQUIRE(cs >= 0);
				REQUIRE(io::connect(cs, reinterpret_cast<const sockaddr *>(&a),
					    sizeof(a)) == 0);
				std::string msg = "ping " + std::to_string(i);
				for (int k = 0; k < 10; k++) {
					REQUIRE(io::send(cs, msg.data(), msg.size()) ==
					    static_cast<ssize_t>(msg.size()));
					std::string got;
					while (got.size() < msg.size()) {
						char b[64];
						ssize_t r = io::recv(cs, b, sizeof(b));
						REQUIRE(r > 0);
						got.append(b, static_cast<size_t>(r));
					}
					CHECK(got == msg);
				}
				CHECK(io::close(cs) == 0);
			}) == 0);
		for (auto *c : clients)
			REQUIRE(usmp::thread_join(c) == 0);
		REQUIRE(usmp::thread_join(acceptor) == 0);
		while (served.load() < N)
			usmp::thread_sleep(1ms);
		::close(ls);
	});
}

TEST_CASE("files: pwrite, pread, writev, readv, fsync, close", "[unit]")
{
	usmp::test::machine m(2);
	m.run([] {
		char path[] = "/tmp/usmp_io_unit_XXXXXX";
		int fd = mkstemp(path);
		REQUIRE(fd >= 0);
		unlink(path);
		CHECK(io::pwrite(fd, "0123456789", 10, 0) == 10);
		char b[4] = {};
		CHECK(io::pread(fd, b, 4, 3) == 4);
		CHECK(std::string(b, 4) == "3456");
		// writev/readv use the file position.
		REQUIRE(lseek(fd, 10, SEEK_SET) == 10);
		iovec wv[2] = {{const_cast<char *>("ab"), 2}, {const_cast<char *>("cde"), 3}};
		CHECK(io::writev(fd, wv, 2) == 5);
		CHECK(lseek(fd, 0, SEEK_CUR) == 15);
		REQUIRE(lseek(fd, 8, SEEK_SET) == 8);
		char x[3] = {}, y[4] = {};
		iovec rv[2] = {{x, 3}, {y, 4}};
		CHECK(io::readv(fd, rv, 2) == 7);
		CHECK(std::string(x, 3) == "89a");
		CHECK(std::string(y, 4) == "bcde");
		CHECK(io::fsync(fd) == 0);
		CHECK(io::fsync(fd, true) == 0);
		CHECK(io::close(fd) == 0);
		errno = 0;
		CHECK(io::close(fd) == -1);
		CHECK(errno == EBADF);
		errno = 0;
		CHECK(io::pread(fd, b, 1, -1) == -1);
		CHECK(errno == EINVAL);
	});
}

TEST_CASE("timeouts: the operation is cancelled and reports ETIMEDOUT; poll says 0",
    "[unit]")
{
	usmp::test::machine m(2);
	m.run([] {
		fd_pair p;
		char c;
		errno = 0;
		CHECK(io::read(p.r, &c, 1, 10ms) == -1);
		CHECK(errno == ETIMEDOUT);
		CHECK(io::poll(p.r, POLLIN, 10ms) == 0);
		// The cancelled read took nothing: the byte is still there.
		CHECK(io::write(p.w, "z", 1) == 1);
		CHECK((io::poll(p.r, POLLIN, 1s) & POLLIN) != 0);
		CHECK(io::read(p.r, &c, 1, 1s) == 1);
		CHECK(c == 'z');
		// A timeout that does not expire changes nothing.
		CHECK((io::poll(p.w, POLLOUT, 10s) & POLLOUT) != 0);
	});
}

TEST_CASE("an interrupted read returns EINTR, and the buffer is left alone", "[unit]")
{
	usmp::test::machine m(2);
	m.run([] {
		fd_pair p;
		char buf[8] = {'-', '-', '-', '-', '-', '-', '-', '-'};
		ssize_t got = -2;
		int err = 0;
		bool pending_after = false;
		usmp::thread *td;
		REQUIRE(usmp::thread_create(&td, {.name = "reader"}, [&] {
			got = io::read(p.r, buf, sizeof(buf));
			err = errno;
			// The interrupt stays pending: the next call is EINTR too.
			char c;
			pending_after = io::read(p.r, &c, 1) == -1 && errno == EINTR;
			usmp::thread_interrupt_clear();
		}) == 0);
		wait_sleeping(td);
		usmp::thread_interrupt(td);
		REQUIRE(usmp::thread_join(td) == 0);
		CHECK(got == -1);
		CHECK(err == EINTR);
		CHECK(pending_after);
		// Data written now stays in the pipe: nobody reads it any more.
		CHECK(io::write(p.w, "after", 5) == 5);
		CHECK(std::string(buf, 8) == "--------");
		char b[8];
		CHECK(io::read(p.r, b, sizeof(b)) == 5);
		CHECK(io::sleep(1ms) == 0);
	});
}

TEST_CASE("interrupts racing completions: no byte is lost or read twice", "[unit]")
{
	for (int n : {1, 2, 8}) {
		usmp::test::machine m(n);
		m.run([] {
			fd_pair p;
			constexpr int ROUNDS = 300;
			long read_bytes = 0, eintr = 0;
			usmp::thread *td;
			// Lockstep: round i's byte and interrupt are sent while the
			// reader is in its round i; the reader stays alive until the
			// last interrupt was sent (thread_interrupt() needs a live
			// thread).
			std::atomic<int> started{0}, finished{0};
			std::atomic<bool> sender_done{false};
			REQUIRE(usmp::thread_create(&td, {.name = "reader"}, [&] {
				for (int i = 0; i < ROUNDS; i++) {
					started.store(i + 1);
					char c;
					ssize_t r = io::read(p.r, &c, 1);
					if (r == 1)
						read_bytes++;
					else if (r == -1 && errno == EINTR)
						eintr++;
					usmp::thread_interrupt_clear();
					finished.store(i + 1);
				}
				while (!sender_done.load())
					usmp::thread_yield();
			}) == 0);
			for (int i = 0; i < ROUNDS; i++) {
				while (started.load() <= i)
					usmp::thread_yield();
				// Race: the byte and the interrupt at about the
				// same time.
				CHECK(io::write(p.w, "b", 1) == 1);
				usmp::thread_interrupt(td);
				while (finished.load() <= i)
					usmp::thread_yield();
			}
			sender_done.store(true);
			REQUIRE(usmp::thread_join(td) == 0);
			CHECK(read_bytes + eintr == ROUNDS);
			// What was not read is still in the pipe.
			long left = 0;
			char b[512];
			while (io::poll(p.r, POLLIN, 1ms) > 0) {
				ssize_t r = io::read(p.r, b, sizeof(b));
				REQUIRE(r > 0);
				left += r;
			}
			CHECK(read_bytes + left == ROUNDS);
		});
	}
}

TEST_CASE("a pinned thread and a bound thread do I/O and stay put", "[unit]")
{
	usmp::test::machine m(4);
	m.run([] {
		fd_pair p;
		usmp::thread *a, *b;
		REQUIRE(usmp::thread_create(&a, {.name = "bound", .cpu = 2}, [&] {
			char c;
			for (int i = 0; i < 20; i++) {
				CHECK(io::read(p.r, &c, 1) == 1);
				CHECK(usmp::curcpu() == 2);
			}
		}) == 0);
		REQUIRE(usmp::thread_create(&b, {.name = "pinned"}, [&] {
			usmp::sched_pin();
			int me = usmp::curcpu();
			for (int i = 0; i < 20; i++) {
				CHECK(io::write(p.w, "x", 1) == 1);
				CHECK(io::sleep(100us) == 0);
				CHECK(usmp::curcpu() == me);
			}
			usmp::sched_unpin();
		}) == 0);
		REQUIRE(usmp::thread_join(a) == 0);
		REQUIRE(usmp::thread_join(b) == 0);
	});
}

TEST_CASE("a foreign OS thread gets the plain system calls", "[unit]")
{
	usmp::test::machine m(2);
	fd_pair p;
	std::thread t([&] {
		char c = 0;
		CHECK(io::read(p.r, &c, 1) == 1);
		CHECK(c == 'q');
		errno = 0;
		CHECK(io::read(p.r, &c, 1, 5ms) == -1);
		CHECK(errno == ETIMEDOUT);
		CHECK(io::poll(p.r, POLLIN, 1ms) == 0);
	});
	m.run([&] { CHECK(io::write(p.w, "q", 1) == 1); });
	t.join();
}

TEST_CASE("shutdown with reads in flight cancels and drains them", "[unit]")
{
	// In a child process: the readers are left behind by the shutdown
	// (their stacks stay allocated), which a later test would see.
	auto r = usmp::test::run_death("shutdown with I/O in flight", [] {
		int p[2];
		if (pipe(p) != 0)
			_exit(2);
		if (usmp::machine_boot({.ncpus = 2}) != 0)
			_exit(3);
		std::atomic<int> sleeping{0};
		static char bufs[8][64];
		for (int i = 0; i < 8; i++) {
			usmp::thread *td;
			if (usmp::thread_create(&td, {.detached = true}, [&, i] {
				sleeping.fetch_add(1);
				io::read(p[0], bufs[i], sizeof(bufs[i]));
			}) != 0)
				_exit(4);
		}
		while (sleeping.load() < 8)
			std::this_thread::sleep_for(1ms);
		std::this_thread::sleep_for(20ms);
		int live = usmp::machine_shutdown();
		// The reads were cancelled: data written now stays in the pipe
		// and no buffer changes.
		if (::write(p[1], "late", 4) != 4)
			_exit(5);
		char b[8];
		if (::read(p[0], b, sizeof(b)) != 4)
			_exit(6);
		for (auto &buf : bufs)
			for (char c : buf)
				if (c != 0)
					_exit(7);
		_exit(live == 8 ? 0 : 8);
	});
	INFO(r.describe());
	CHECK(r.exited_with(0));
	CHECK(r.contains("green threads still alive"));
}

TEST_CASE("an interrupted io::sleep and io::accept return EINTR", "[unit]")
{
	usmp::test::machine m(2);
	m.run([] {
		int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		REQUIRE(ls >= 0);
		sockaddr_in a{};
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		REQUIRE(bind(ls, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0);
		REQUIRE(listen(ls, 4) == 0);
		int slept = 0, accepted = 0, e1 = 0, e2 = 0;
		usmp::thread *t1, *t2;
		REQUIRE(usmp::thread_create(&t1, {.name = "sleeper"}, [&] {
			slept = io::sleep(1h);
			e1 = errno;
			usmp::thread_interrupt_clear();
		}) == 0);
		REQUIRE(usmp::thread_create(&t2, {.name = "acceptor"}, [&] {
			accepted = io::accept(ls, nullptr, nullptr);
			e2 = errno;
			usmp::thread_interrupt_clear();
		}) == 0);
		wait_sleeping(t1);
		wait_sleeping(t2);
		usmp::thread_interrupt(t1);
		usmp::thread_interrupt(t2);
		REQUIRE(usmp::thread_join(t1) == 0);
		REQUIRE(usmp::thread_join(t2) == 0);
		CHECK(slept == -1);
		CHECK(e1 == EINTR);
		CHECK(accepted == -1);
		CHECK(e2 == EINTR);
		::close(ls);
	});
}

TEST_CASE("I/O in a critical section panics, naming the call and the thread", "[death]")
{
	auto r = usmp::test::run_death("io::read in a critical section", [] {
		usmp::run({.ncpus = 1}, [] {
			usmp::green_thread t(usmp::thread_attr{.name = "careless"}, [] {
				char c;
				usmp::critical_enter();
				io::read(0, &c, 1);
				usmp::critical_exit();
			});
			t.join();
		});
	});
	USMP_REQUIRE_DEATH(r, "usmp::io::read() by thread \"careless\" in a critical section");
	CHECK(r.aborted());
}

TEST_CASE("a thread woken on another CPU than it submitted on gets its result; "
	  "an interrupted one cancels on the submitting CPU", "[unit]")
{
	// cpu0 runs a hog bound to it; the reader submits there, then sleeps.
	// This test's own OS thread (no CPU) completes or interrupts the read,
	// so cpu1 is idle and the scheduler wakes the reader there: the
	// completion (or the cancel) is on cpu0's ring, the thread on cpu1.
	usmp::test::machine m(2);
	fd_pair p;
	std::atomic<bool> stop{false};
	usmp::thread *hog;
	REQUIRE(usmp::thread_create(&hog, {.name = "hog", .cpu = 0}, [&] {
		while (!stop.load()) {
			for (int i = 0; i < 1000; i++)
				__builtin_ia32_pause();
			usmp::maybe_yield();
		}
	}) == 0);
	constexpr int ROUNDS = 20;
	int moved = 0, ok = 0, eintr = 0;
	for (int k = 0; k < 2 * ROUNDS; k++) {
		bool interrupt = k % 2 == 1;
		std::atomic<int> cpu_before{-1}, cpu_after{-1};
		ssize_t got = -2;
		int err = 0;
		char c = 0;
		usmp::thread *td;
		REQUIRE(usmp::thread_create(&td, {.name = "reader"}, [&] {
			REQUIRE(usmp::sched_bind(0) == 0);
			usmp::sched_unbind(); // on cpu0, free to move
			cpu_before.store(usmp::curcpu());
			got = io::read(p.r, &c, 1);
			err = errno;
			cpu_after.store(usmp::curcpu());
			usmp::thread_interrupt_clear();
		}) == 0);
		for (int i = 0; i < 100000 && !(td->td_state == usmp::TDS_INHIBITED &&
						 td->td_wmesg != nullptr &&
						 std::string(td->td_wmesg) == "read");
		     i++)
			std::this_thread::sleep_for(50us);
		if (interrupt)
			usmp::thread_interrupt(td);
		else
			REQUIRE(::write(p.w, "m", 1) == 1);
		REQUIRE(usmp::thread_join(td) == 0);
		CHECK(cpu_before.load() == 0);
		if (cpu_after.load() != cpu_before.load())
			moved++;
		if (interrupt) {
			CHECK(got == -1);
			CHECK(err == EINTR);
			eintr += got == -1 && err == EINTR;
		} else {
			CHECK(got == 1);
			CHECK(c == 'm');
			ok += got == 1;
		}
	}
	stop.store(true);
	REQUIRE(usmp::thread_join(hog) == 0);
	CHECK(ok == ROUNDS);
	CHECK(eintr == ROUNDS);
	// The pipe holds nothing: every byte went to the read that got it,
	// none to a cancelled one.
	pollfd pf{.fd = p.r, .events = POLLIN, .revents = 0};
	CHECK(::poll(&pf, 1, 0) == 0);
	INFO("reads that returned on another CPU: " << moved);
	CHECK(moved > 0);
}

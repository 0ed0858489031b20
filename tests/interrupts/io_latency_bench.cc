// I/O completion-to-wakeup latency: a writer stamps the clock into a pipe,
// the reader, asleep in usmp::io::read, takes the difference when it runs.
// Prints the median and the 99th percentile for a reader on the writer's
// CPU, on another CPU (parked: the completion lands on the reader's ring,
// a wake message ends its wait), and, as the baseline, two OS threads with
// plain read(2)/write(2).  Figures only (no assertion on time): they need a
// quiet machine to mean anything.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "interrupts/io.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "support/machine.h"

namespace io = usmp::io;
using namespace std::chrono_literals;

namespace {

constexpr int SAMPLES = 2000;

void
report(const char *what, std::vector<uint64_t> &v)
{
	REQUIRE(v.size() == static_cast<size_t>(SAMPLES));
	std::sort(v.begin(), v.end());
	std::printf("%-46s median %7.1f us   p99 %8.1f us\n", what,
	    static_cast<double>(v[v.size() / 2]) / 1000.0,
	    static_cast<double>(v[v.size() * 99 / 100]) / 1000.0);
	std::fflush(stdout);
}

// Ping-pong over two pipes; the latency of each one-way hop, as seen by
// its reader.
std::vector<uint64_t>
green_pingpong(int ncpus, int cpu_a, int cpu_b)
{
	std::vector<uint64_t> lat;
	usmp::test::machine m(ncpus);
	m.run([&] {
		int ab[2], ba[2];
		REQUIRE(pipe(ab) == 0);
		REQUIRE(pipe(ba) == 0);
		usmp::thread *b;
		REQUIRE(usmp::thread_create(&b, {.name = "b", .cpu = cpu_b}, [&] {
			for (int i = 0; i < SAMPLES; i++) {
				uint64_t t0;
				REQUIRE(io::read(ab[0], &t0, sizeof(t0)) == sizeof(t0));
				lat.push_back(usmp::clock_ns() - t0);
				char c = 0;
				REQUIRE(io::write(ba[1], &c, 1) == 1);
			}
		}) == 0);
		usmp::thread *a;
		REQUIRE(usmp::thread_create(&a, {.name = "a", .cpu = cpu_a}, [&] {
			for (int i = 0; i < SAMPLES; i++) {
				// Let the reader fall asleep (and its CPU park).
				io::sleep(50us);
				uint64_t t0 = usmp::clock_ns();
				REQUIRE(io::write(ab[1], &t0, sizeof(t0)) == sizeof(t0));
				char c;
				REQUIRE(io::read(ba[0], &c, 1) == 1);
			}
		}) == 0);
		REQUIRE(usmp::thread_join(a) == 0);
		REQUIRE(usmp::thread_join(b) == 0);
		for (int fd : {ab[0], ab[1], ba[0], ba[1]})
			::close(fd);
	});
	return lat;
}

std::vector<uint64_t>
os_pingpong()
{
	std::vector<uint64_t> lat;
	int ab[2], ba[2];
	REQUIRE(pipe(ab) == 0);
	REQUIRE(pipe(ba) == 0);
	std::thread b([&] {
		for (int i = 0; i < SAMPLES; i++) {
			uint64_t t0;
			if (::read(ab[0], &t0, sizeof(t0)) != sizeof(t0))
				return;
			lat.push_back(usmp::clock_ns() - t0);
			char c = 0;
			if (::write(ba[1], &c, 1) != 1)
				return;
		}
	});
	for (int i = 0; i < SAMPLES; i++) {
		std::this_thread::sleep_for(50us);
		uint64_t t0 = usmp::clock_ns();
		REQUIRE(::write(ab[1], &t0, sizeof(t0)) == sizeof(t0));
		char c;
		REQUIRE(::read(ba[0], &c, 1) == 1);
	}
	b.join();
	for (int fd : {ab[0], ab[1], ba[0], ba[1]})
		::close(fd);
	return lat;
}

} // namespace

TEST_CASE("I/O completion to thread wakeup latency", "[bench]")
{
	auto same = green_pingpong(1, 0, 0);
	report("usmp::io, reader on the writer's CPU", same);
	auto cross = green_pingpong(2, 0, 1);
	report("usmp::io, reader on another (parked) CPU", cross);
	auto os = os_pingpong();
	report("OS threads, read(2)/write(2)", os);
}

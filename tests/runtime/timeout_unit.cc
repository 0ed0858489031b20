// Timeouts (runtime/internal/seam.h): the machine's softclock until
// interrupts/ brings callouts.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>

#include "runtime/internal/seam.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "support/machine.h"

using namespace usmp;
using namespace std::chrono_literals;

namespace {

struct probe {
	timeout to;
	uint64_t deadline = 0;
	std::atomic<uint64_t> fired_at{0};
	int id = 0;
	std::vector<int> *order = nullptr;
	std::mutex *m = nullptr;
};

void
fire(void *arg)
{
	auto *p = static_cast<probe *>(arg);
	p->fired_at = clock_ns();
	std::lock_guard<std::mutex> g(*p->m);
	p->order->push_back(p->id);
}

} // namespace

TEST_CASE("timeouts fire in deadline order, never early; disarmed ones never", "[unit]")
{
	test::machine m(2);
	std::vector<int> order;
	std::mutex mtx;
	std::vector<probe> probes(20);
	m.run([&] {
		uint64_t now = clock_ns();
		// Deadlines 19 ms, 18 ms, ... 0 ms: armed latest first.
		for (int i = 0; i < 20; i++) {
			probe &p = probes[i];
			p.id = 19 - i;
			p.order = &order;
			p.m = &mtx;
			p.deadline = now + static_cast<uint64_t>(19 - i) * 1000000 + 200000;
			timeout_arm(&p.to, p.deadline, fire, &p);
		}
		// Disarm the odd ones.
		for (probe &p : probes)
			if (p.id % 2 == 1)
				CHECK(timeout_disarm(&p.to));
		thread_sleep(40ms);
	});
	std::lock_guard<std::mutex> g(mtx);
	REQUIRE(order.size() == 10);
	for (std::size_t i = 0; i < order.size(); i++)
		CHECK(order[i] == static_cast<int>(2 * i));
	for (probe &p : probes) {
		if (p.id % 2 == 1) {
			CHECK(p.fired_at.load() == 0);
		} else {
			CHECK(p.fired_at.load() >= p.deadline);
			CHECK(timeout_disarm(&p.to) == false); // already fired
		}
	}
}

TEST_CASE("a timeout sooner than the next tick wakes the hardclock early", "[unit]")
{
	machine_config cfg;
	cfg.ncpus = 1;
	cfg.hz = 10; // 100 ms ticks
	test::machine m(cfg);
	std::vector<int> order;
	std::mutex mtx;
	probe p;
	p.order = &order;
	p.m = &mtx;
	m.run([&] {
		thread_sleep(5ms); // the hardclock is now asleep until its tick
		p.deadline = clock_ns() + 2000000;
		timeout_arm(&p.to, p.deadline, fire, &p);
		thread_sleep(30ms);
	});
	REQUIRE(p.fired_at.load() != 0);
	CHECK(p.fired_at.load() >= p.deadline);
	CHECK(p.fired_at.load() - p.deadline < 20000000); // not at the 100 ms tick
}

// Tickless idle (runtime/intr.cc): the hardclock thread sleeps while every
// CPU is parked and ticks again as soon as one is busy; time slices still
// end; ticks() follows the clock through idle time.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "interrupts/callout.h"
#include "interrupts/ring.h"
#include "runtime/counters.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sched/sched.h"
#include "support/machine.h"

using namespace std::chrono_literals;
using namespace usmp;

namespace {

uint64_t
counter(const char *name)
{
	uint64_t v = 0;
	INFO(name);
	REQUIRE(counter_read(name, &v));
	return v;
}

// With every CPU idle, the hardclock's wakes over 300 ms (a ticking
// hardclock wakes ~300 times at hz 1000).
uint64_t
idle_wakeups()
{
	// Let the boot's threads settle and the CPUs park.
	std::this_thread::sleep_for(50ms);
	uint64_t w0 = counter("kern.clock.hardclock.wakeups");
	std::this_thread::sleep_for(300ms);
	return counter("kern.clock.hardclock.wakeups") - w0;
}

} // namespace

TEST_CASE("an idle machine's hardclock does not tick", "[unit][intr]")
{
	test::machine m(2);
	uint64_t wakes = idle_wakeups();
	CHECK(wakes < 30);
}

TEST_CASE("without rings, an idle machine's hardclock does not tick either "
    "(no callout pending)", "[unit][intr]")
{
	setenv("USMP_IDLE_BACKEND", "futex", 1);
	{
		test::machine m(2);
		CHECK_FALSE(ring_enabled());
		uint64_t wakes = idle_wakeups();
		CHECK(wakes < 30);
	}
	unsetenv("USMP_IDLE_BACKEND");
}

TEST_CASE("without rings, a callout reset by a foreign OS thread while "
    "every CPU is parked wakes the hardclock and runs", "[unit][intr]")
{
	setenv("USMP_IDLE_BACKEND", "futex", 1);
	{
		test::machine m(2);
		CHECK_FALSE(ring_enabled());
		// Every CPU parked, no callout pending: the hardclock sleeps
		// without a tick (and without a deadline).
		CHECK(idle_wakeups() < 30);
		callout c;
		callout_init(&c, true);
		std::atomic<int> runs{0};
		// From this OS thread, which is no CPU of the machine.
		CHECK(callout_reset_on(&c, 2ms,
			  [](void *a) { static_cast<std::atomic<int> *>(a)->fetch_add(1); },
			  &runs, 1) == 0);
		// Without the wake the callout would wait for a CPU to unpark,
		// which nothing here makes happen.
		for (int i = 0; i < 2000 && runs.load() == 0; i++)
			std::this_thread::sleep_for(1ms);
		CHECK(runs.load() == 1);
		CHECK(callout_stop(&c) == -1);
	}
	unsetenv("USMP_IDLE_BACKEND");
}

TEST_CASE("after an idle stretch, a busy CPU gets its ticks and time slices "
    "end", "[unit][intr]")
{
	test::machine m(1);
	std::this_thread::sleep_for(50ms); // the hardclock goes tickless
	uint64_t ticks0 = counter("kern.clock.hardclock.ticks");
	m.run([] {
		// A CPU-bound thread, at a preemption point (not a yield) every
		// turn, and then a thread of the same priority on the same CPU:
		// the second runs before the first gives up only if a time
		// slice ended, which the hardclock's tick marks.
		std::atomic<bool> b_ran{false};
		bool a_saw_b = false;
		green_thread ta([&] {
			auto deadline = std::chrono::steady_clock::now() + 10s;
			while (!b_ran.load() && std::chrono::steady_clock::now() < deadline)
				maybe_yield();
			a_saw_b = b_ran.load();
		});
		green_thread tb([&] { b_ran = true; });
		ta.join();
		tb.join();
		CHECK(a_saw_b);
	});
	CHECK(counter("kern.clock.hardclock.ticks") > ticks0);
}

TEST_CASE("ticks() follows the clock through idle time", "[unit][intr]")
{
	machine_config cfg;
	cfg.ncpus = 1;
	cfg.hz = 1000;
	test::machine m(cfg);
	std::this_thread::sleep_for(20ms);
	uint64_t t0 = ticks();
	uint64_t w0 = counter("kern.clock.hardclock.wakeups");
	std::this_thread::sleep_for(200ms);
	uint64_t t1 = ticks();
	// 200 ms at 1000 Hz is at least 199 whole ticks, counted without the
	// hardclock waking for each.
	CHECK(t1 - t0 >= 199);
	CHECK(counter("kern.clock.hardclock.wakeups") - w0 < 30);
}

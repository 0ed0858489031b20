// Interrupt-to-ithread latency and callout firing lateness, median and p99.
//
// Interrupt to ithread: an event with a filter that returns
// FILTER_SCHEDULE_THREAD and an ithread handler; the firer stamps the clock
// and fires, the ithread handler takes the difference.  Fired by a green
// thread on the event's CPU, by a green thread on another CPU (the bound
// CPU is parked: a ring message wakes it), and by a foreign OS thread.
//
// Callout lateness: how long after its due time (c_time) a callout's
// handler starts, with exact callouts (C_EXACT) of 1-3 ms, on an idle CPU
// (its ring's event timer ends its wait) and on a CPU kept busy by a
// thread that spins 200 us between preemption points (the timer's
// completion waits for an interrupt point).
// Figures only (no assertion on time): they need a quiet machine.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "interrupts/callout.h"
#include "interrupts/intr_event.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sched/priority.h"
#include "support/machine.h"
#include "sync/sleep.h"

using namespace std::chrono_literals;
using namespace usmp;

namespace {

constexpr int SAMPLES = 1000;
constexpr int CALLOUT_SAMPLES = 300;

void
report(const char *what, std::vector<uint64_t> &v, size_t want)
{
	REQUIRE(v.size() == want);
	std::sort(v.begin(), v.end());
	std::printf("%-52s median %7.1f us   p99 %8.1f us\n", what,
	    static_cast<double>(v[v.size() / 2]) / 1000.0,
	    static_cast<double>(v[v.size() * 99 / 100]) / 1000.0);
	std::fflush(stdout);
}

struct ithread_probe {
	std::atomic<uint64_t> stamp{0};
	std::atomic<int> seen{0};
	std::vector<uint64_t> lat;
};

int
probe_filter(void *) noexcept
{
	return FILTER_SCHEDULE_THREAD;
}

void
probe_handler(void *arg)
{
	auto *p = static_cast<ithread_probe *>(arg);
	p->lat.push_back(clock_ns() - p->stamp.load(std::memory_order_acquire));
	p->seen.fetch_add(1, std::memory_order_release);
}

// from: 0 a green thread on the event's CPU, 1 one on the other CPU,
// 2 a foreign OS thread.
std::vector<uint64_t>
fire_to_ithread(int from)
{
	ithread_probe p;
	p.lat.reserve(SAMPLES);
	test::machine m(2);
	intr_event *ie = nullptr;
	intr_handler *ih = nullptr;
	m.run([&] {
		REQUIRE(intr_event_create(&ie, "bench") == 0);
		REQUIRE(intr_event_add_handler(ie, "bench", probe_filter,
		    probe_handler, &p, PI_NET, INTR_MPSAFE | INTR_TYPE_NET,
		    &ih) == 0);
		REQUIRE(intr_event_bind(ie, 1) == 0);
	});
	auto one = [&](int i, auto nap) {
		nap(); // let the ithread sleep and its CPU park
		p.stamp.store(clock_ns(), std::memory_order_release);
		intr_event_fire(ie);
		while (p.seen.load(std::memory_order_acquire) != i + 1)
			__builtin_ia32_pause();
	};
	if (from == 2) {
		for (int i = 0; i < SAMPLES; i++)
			one(i, [] { std::this_thread::sleep_for(50us); });
	} else {
		thread_attr a;
		a.name = "firer";
		a.cpu = from == 0 ? 1 : 0;
		m.run([&] {
			for (int i = 0; i < SAMPLES; i++)
				one(i, [] { thread_sleep(50us); });
		}, a);
	}
	m.run([&] {
		REQUIRE(intr_event_remove_handler(ih) == 0);
		REQUIRE(intr_event_destroy(ie) == 0);
	});
	return p.lat;
}

struct lateness_probe {
	callout c;
	uint64_t due = 0;
	std::atomic<int> fired{0};
	std::vector<uint64_t> late;
};

void
lateness_handler(void *arg)
{
	auto *p = static_cast<lateness_probe *>(arg);
	p->late.push_back(clock_ns() - p->due);
	p->fired.fetch_add(1, std::memory_order_release);
}

std::vector<uint64_t>
callout_lateness(bool busy)
{
	lateness_probe p;
	p.late.reserve(CALLOUT_SAMPLES);
	test::machine m(2);
	std::atomic<bool> stop{false};
	thread *spinner = nullptr;
	m.run([&] {
		callout_init(&p.c, true);
		if (busy) {
			thread_attr a;
			a.name = "spinner";
			a.cpu = 1;
			REQUIRE(thread_create(&spinner, a, [&] {
				// Busy, with a preemption point every 200 us: a
				// thread that reaches none keeps the softclock
				// from running at all (see the README).
				while (!stop.load(std::memory_order_relaxed)) {
					uint64_t t = clock_ns();
					while (clock_ns() - t < 200000)
						__builtin_ia32_pause();
					thread_yield();
				}
			}) == 0);
		}
		for (int i = 0; i < CALLOUT_SAMPLES; i++) {
			auto d = std::chrono::microseconds(1000 + (i * 7919) % 2000);
			p.due = clock_ns() + static_cast<uint64_t>(
			    std::chrono::nanoseconds(d).count());
			callout_reset_on(&p.c, d, lateness_handler, &p, 1);
			while (p.fired.load(std::memory_order_acquire) != i + 1)
				thread_sleep(200us);
		}
		REQUIRE(callout_drain(&p.c) == -1);
		stop = true;
		if (spinner != nullptr)
			REQUIRE(thread_join(spinner) == 0);
	});
	return p.late;
}

} // namespace

TEST_CASE("interrupt to ithread latency", "[bench]")
{
	auto same = fire_to_ithread(0);
	report("fire on the event's CPU -> ithread", same, SAMPLES);
	auto cross = fire_to_ithread(1);
	report("fire from another CPU -> ithread (parked CPU)", cross, SAMPLES);
	auto foreign = fire_to_ithread(2);
	report("fire from a foreign OS thread -> ithread", foreign, SAMPLES);
}

TEST_CASE("callout firing lateness", "[bench]")
{
	auto idle = callout_lateness(false);
	report("callout lateness, idle CPU (ring event timer)", idle,
	    CALLOUT_SAMPLES);
	auto busy = callout_lateness(true);
	report("callout lateness, CPU busy (yields every 200 us)", busy,
	    CALLOUT_SAMPLES);
}

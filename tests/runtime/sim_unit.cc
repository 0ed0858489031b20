// The deterministic simulation (runtime/sim.h): same seed, same steps;
// virtual time; the planted bugs it must find within a bounded number of
// seeds and then replay step for step.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>

#include "runtime/machine.h"
#include "runtime/sim.h"
#include "runtime/thread.h"
#include "sched/priority.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sync/witness.h"

using namespace std::chrono_literals;

namespace {

usmp::machine_config
sim_cfg(int ncpus, uint64_t seed,
    usmp::sim_strategy st = usmp::sim_strategy::random)
{
	usmp::machine_config cfg;
	cfg.ncpus = ncpus;
	cfg.simulate = true;
	cfg.sim.seed = seed;
	cfg.sim.strategy = st;
	return cfg;
}

// A small concurrent program: workers share a counter under a mutex, yield,
// sleep a little, and main joins them.  Its interleaving depends on every
// choice the simulation makes.
void
workload()
{
	usmp::mutex m("sim workload");
	int counter = 0;
	std::vector<usmp::green_thread> ts;
	for (int i = 0; i < 4; i++)
		ts.emplace_back(usmp::thread_attr{.name = "worker"}, [&] {
			for (int k = 0; k < 20; k++) {
				m.lock();
				counter++;
				m.unlock();
				if (k % 5 == 0)
					usmp::thread_sleep(1ms);
				else
					usmp::thread_yield();
			}
		});
	for (auto &t : ts)
		t.join();
	usmp::sim::check(counter == 80, "every increment counted");
}

// Run workload in this process under cfg; return its log.
usmp::sim_log
run_logged(usmp::machine_config cfg)
{
	usmp::sim_log log;
	cfg.sim.log = &log;
	int rc = usmp::run(cfg, workload);
	REQUIRE(rc == 0);
	return log;
}

} // namespace

TEST_CASE("sim: the same seed gives the same step log", "[unit][sim]")
{
	for (auto st : {usmp::sim_strategy::random, usmp::sim_strategy::pct}) {
		usmp::sim_log a = run_logged(sim_cfg(3, 7, st));
		usmp::sim_log b = run_logged(sim_cfg(3, 7, st));
		INFO("strategy " << (st == usmp::sim_strategy::pct ? "pct" : "random"));
		REQUIRE(a.steps.size() > 100);
		CHECK(a.first_difference(b) == -1);
		CHECK(a.to_text() == b.to_text());
		CHECK(a.trustworthy());
	}
}

TEST_CASE("sim: different seeds give different step logs", "[unit][sim]")
{
	usmp::sim_log a = run_logged(sim_cfg(3, 1));
	usmp::sim_log b = run_logged(sim_cfg(3, 2));
	usmp::sim_log c = run_logged(sim_cfg(3, 1, usmp::sim_strategy::pct));
	CHECK(a.first_difference(b) >= 0);
	CHECK(a.first_difference(c) >= 0);
}

TEST_CASE("sim: the log survives its text form", "[unit][sim]")
{
	usmp::sim_log a = run_logged(sim_cfg(2, 11));
	usmp::sim_log b;
	std::string err;
	REQUIRE(b.from_text(a.to_text(), &err));
	CHECK(err.empty());
	CHECK(a == b);
	CHECK(b.seed == 11);
	CHECK(b.ncpus == 2);
	usmp::sim_log bad;
	CHECK_FALSE(bad.from_text("usmp-sim-log 1\nsteps 3\n", &err));
	CHECK(err.find("3 steps") != std::string::npos);
}

TEST_CASE("sim: virtual time: a 10 s sleep ends at once, the clock shows it",
    "[unit][sim]")
{
	uint64_t before = 0, after = 0, ticks_after = 0;
	int rc = usmp::run(sim_cfg(2, 3), [&] {
		before = usmp::sim::now_ns();
		usmp::thread_sleep(10s);
		after = usmp::sim::now_ns();
		ticks_after = usmp::ticks();
	});
	REQUIRE(rc == 0);
	CHECK(after - before >= 10'000'000'000ull);
	CHECK(after - before < 10'100'000'000ull); // it jumped, it did not tick
	CHECK(ticks_after >= 10000); // hz 1000: ticks follow virtual time
}

TEST_CASE("sim: timed sleeps on a sleep queue and several sleepers wake in "
	  "deadline order", "[unit][sim]")
{
	std::vector<int> order;
	usmp::mutex m("order");
	int rc = usmp::run(sim_cfg(2, 5), [&] {
		std::vector<usmp::green_thread> ts;
		for (int i : {3, 1, 2})
			ts.emplace_back([&, i] {
				int chan = 0;
				// tsleep with a timeout: a sleep queue and the
				// hardclock's timeout heap, in virtual time.
				int e = usmp::tsleep(&chan, 0, "nap",
				    std::chrono::seconds(i));
				usmp::sim::check(e == EWOULDBLOCK, "timed out");
				m.lock();
				order.push_back(i);
				m.unlock();
			});
		for (auto &t : ts)
			t.join();
	});
	REQUIRE(rc == 0);
	CHECK(order == std::vector<int>{1, 2, 3});
}

// ---- Planted bugs: found within a bounded number of seeds, then replayed
// exactly (the replay checks every step against the failing run's log).

namespace {

// Explore, require a failure whose reason contains `want` within `seeds`,
// then replay its log and require the same failure and the same steps.
usmp::sim::result
find_and_replay(usmp::machine_config cfg, int seeds, const char *want,
    const std::function<void()> &scenario)
{
	usmp::sim::result r = usmp::sim::explore(cfg, seeds, scenario);
	INFO("runs " << r.runs << ", reason: " << r.reason);
	REQUIRE(r.failed);
	CHECK(r.reason.find(want) != std::string::npos);
	REQUIRE(r.log.steps.size() > 0);
	CHECK(r.log.seed == r.seed);

	// The seed alone reproduces it, step for step.
	cfg.sim.pct_steps = r.log.pct_steps;
	usmp::sim::result again = usmp::sim::run_seed(cfg, r.seed, scenario);
	CHECK(again.failed);
	CHECK(again.reason == r.reason);
	CHECK(again.log.first_difference(r.log) == -1);

	// So does the log: its choices fed back, each step checked.
	usmp::sim::result rep = usmp::sim::replay(cfg, r.log, scenario);
	INFO("replay: " << rep.reason);
	CHECK(rep.failed);
	CHECK(rep.reason == r.reason);
	CHECK(rep.log.first_difference(r.log) == -1);
	return r;
}

} // namespace

TEST_CASE("sim: planted lost update (read, point, write) is found and replayed",
    "[unit][sim]")
{
	auto scenario = [] {
		int x = 0;
		auto inc = [&] {
			int v = x;
			usmp::sim::point();
			x = v + 1;
		};
		usmp::green_thread a(inc), b(inc);
		a.join();
		b.join();
		usmp::sim::check(x == 2, "lost update");
	};
	find_and_replay(sim_cfg(2, 1), 50, "lost update", scenario);
	find_and_replay(sim_cfg(2, 1, usmp::sim_strategy::pct), 50, "lost update",
	    scenario);
}

TEST_CASE("sim: planted ABBA deadlock with WITNESS off is detected as a "
	  "deadlock and replayed", "[unit][sim]")
{
	auto scenario = [] {
		usmp::witness_set_mode(usmp::witness_mode::off);
		usmp::mutex a("A"), b("B");
		usmp::green_thread t1([&] {
			a.lock();
			b.lock();
			b.unlock();
			a.unlock();
		});
		usmp::green_thread t2([&] {
			b.lock();
			a.lock();
			a.unlock();
			b.unlock();
		});
		t1.join();
		t2.join();
	};
	find_and_replay(sim_cfg(2, 1), 100, "deadlock", scenario);
}

TEST_CASE("sim: planted missed wakeup (check, then sleep without the "
	  "interlock) is found as a deadlock and replayed", "[unit][sim]")
{
	auto scenario = [] {
		bool ready = false;
		usmp::green_thread waiter([&] {
			if (!ready) {
				// The bug: nothing holds the waker off between
				// the check and the sleep.
				usmp::sim::point();
				usmp::tsleep(&ready, 0, "ready");
			}
		});
		usmp::green_thread waker([&] {
			ready = true;
			usmp::wakeup(&ready);
		});
		waiter.join();
		waker.join();
	};
	find_and_replay(sim_cfg(2, 1), 100, "deadlock", scenario);
}

TEST_CASE("sim: the correct missed-wakeup protocol (msleep with the "
	  "interlock) survives every seed", "[unit][sim]")
{
	auto scenario = [] {
		usmp::mutex m("ready");
		bool ready = false;
		usmp::green_thread waiter([&] {
			m.lock();
			while (!ready) {
				usmp::sim::point();
				usmp::msleep(&ready, m, 0, "ready");
			}
			m.unlock();
		});
		usmp::green_thread waker([&] {
			m.lock();
			ready = true;
			usmp::wakeup(&ready);
			m.unlock();
		});
		waiter.join();
		waker.join();
	};
	usmp::sim::result r = usmp::sim::explore(sim_cfg(2, 1), 40, scenario);
	INFO(r.reason);
	CHECK_FALSE(r.failed);
	CHECK(r.runs == 40);
}

namespace {

// A lock of the test's own with no priority propagation: a waiter that
// finds it held sleeps a tick and tries again (a common hand-made lock).
struct planted_lock {
	std::atomic<int> held{0};
	void lock()
	{
		while (held.exchange(1, std::memory_order_acquire) != 0)
			usmp::thread_sleep(1ms);
	}
	void unlock() { held.store(0, std::memory_order_release); }
};

// usmp's sleep mutex: a waiter blocks on a turnstile and lends its priority.
struct usmp_lock {
	usmp::mutex m{"inversion"};
	void lock() { m.lock(); }
	void unlock() { m.unlock(); }
};

// Priority inversion on one CPU: L (low) holds the lock, H (high) wants
// it, M (medium) must not run while H waits.  With propagation L runs at
// H's priority until it lets go; without, M takes the CPU from L.
template <class Lock>
void
inversion_scenario()
{
	Lock lk;
	std::atomic<bool> l_holds{false}, h_waiting{false};
	int m_while_h_waits = 0;
	usmp::green_thread boss(usmp::thread_attr{.name = "boss", .priority = 40},
	    [&] {
		usmp::green_thread l(usmp::thread_attr{.name = "L",
		    .priority = usmp::PRI_MIN_TIMESHARE + 60}, [&] {
			lk.lock();
			l_holds = true;
			while (!h_waiting) // hold it until H wants it
				usmp::sim::point();
			for (int i = 0; i < 20; i++)
				usmp::sim::point();
			lk.unlock();
		});
		while (!l_holds)
			usmp::thread_sleep(1ms);
		usmp::green_thread m(usmp::thread_attr{.name = "M",
		    .priority = usmp::PRI_MIN_TIMESHARE + 30}, [&] {
			for (int i = 0; i < 20; i++) {
				if (h_waiting)
					m_while_h_waits++;
				usmp::sim::point();
			}
		});
		usmp::green_thread h(usmp::thread_attr{.name = "H",
		    .priority = usmp::PRI_MIN_REALTIME}, [&] {
			h_waiting = true;
			lk.lock();
			h_waiting = false;
			lk.unlock();
		});
		h.join();
		m.join();
		l.join();
	});
	boss.join();
	usmp::sim::check(m_while_h_waits == 0,
	    "priority inversion: M ran while H waited for L's lock");
}

} // namespace

TEST_CASE("sim: planted priority inversion (no propagation) is found and "
	  "replayed; usmp::mutex does not invert", "[unit][sim]")
{
	find_and_replay(sim_cfg(1, 1), 20, "priority inversion",
	    inversion_scenario<planted_lock>);
	usmp::sim::result r = usmp::sim::explore(sim_cfg(1, 1), 20,
	    inversion_scenario<usmp_lock>);
	INFO(r.reason);
	CHECK_FALSE(r.failed);
	CHECK(r.runs == 20);
}

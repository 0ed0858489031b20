// callout(9): firing on the callout's CPU, the stop results 1 / 0 / -1,
// drain, the lock protocol (a call waiting for the lock the stopper holds is
// cancelled), Giant, migration, absolute times, pending/active, and the
// slow-handler report.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "interrupts/callout.h"
#include "interrupts/ring.h"
#include "runtime/config.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sched/sched.h"
#include "support/death.h"
#include "support/machine.h"
#include "support/wait.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/sx.h"
#include "sync/sleep.h"

using namespace std::chrono_literals;
using namespace usmp;
using test::wait_for;
using test::yield_until;

namespace {

struct rec : test::gate {
	std::atomic<int> runs{0};
	std::atomic<int> cpu{-2};
	std::atomic<bool> giant{false};
	std::atomic<bool> locked{false};
	std::atomic<bool> nosleep{false};
	std::atomic<bool> pending_in_handler{true};
	mutex *mtx = nullptr;
	callout *c = nullptr;
};

void
record(void *arg)
{
	auto *r = static_cast<rec *>(arg);
	r->cpu = curcpu();
	r->giant = Giant.owned();
	r->locked = r->mtx != nullptr && r->mtx->owned();
	r->nosleep = (curthread()->td_pflags & TDP_NOSLEEPING) != 0;
	if (r->c != nullptr)
		r->pending_in_handler = callout_pending(r->c);
	r->pass(false); // may not sleep: spin while the test holds it
	r->runs++;
}

void
yield_for(std::chrono::nanoseconds d)
{
	uint64_t end = clock_ns() + static_cast<uint64_t>(d.count());
	while (clock_ns() < end)
		thread_yield();
}

} // namespace

TEST_CASE("a callout runs once, later, on its CPU, and not sleepable",
    "[unit][callout]")
{
	test::machine m(4);
	m.run([] {
		callout c;
		callout_init(&c, true);
		rec r;
		r.c = &c;
		CHECK(!callout_pending(&c));
		CHECK(!callout_active(&c));
		uint64_t t0 = clock_ns();
		CHECK(callout_reset_on(&c, 5ms, record, &r, 2) == 0);
		CHECK(callout_pending(&c));
		CHECK(callout_active(&c));
		REQUIRE(wait_for([&] { return r.runs == 1; }));
		CHECK(clock_ns() - t0 >= 5000000); // never early
		CHECK(r.cpu == 2);
		CHECK(!r.giant);
		CHECK(r.nosleep);
		CHECK(!r.pending_in_handler); // pending clears before the call
		CHECK(!callout_pending(&c));
		CHECK(callout_active(&c)); // until stop or deactivate
		callout_deactivate(&c);
		CHECK(!callout_active(&c));
		thread_sleep(10ms);
		CHECK(r.runs == 1);
		CHECK(callout_drain(&c) == -1);
	});
}

TEST_CASE("callout_stop returns 1 for a pending call, -1 for none",
    "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		callout c;
		callout_init(&c, true);
		rec r;
		CHECK(callout_stop(&c) == -1);
		CHECK(callout_reset(&c, 10s, record, &r) == 0);
		CHECK(callout_reset(&c, 10s, record, &r) == 1); // re-armed
		CHECK(callout_pending_count(0) == 1);
		CHECK(callout_stop(&c) == 1);
		CHECK(!callout_pending(&c));
		CHECK(!callout_active(&c));
		CHECK(callout_pending_count(0) == 0);
		CHECK(callout_stop(&c) == -1);
		CHECK(r.runs == 0);
		// callout_schedule reuses the function and argument.
		CHECK(callout_schedule(&c, 1ms) == 0);
		REQUIRE(wait_for([&] { return r.runs == 1; }));
		CHECK(callout_drain(&c) == -1);
	});
}

TEST_CASE("callout_stop of a running handler returns 0; callout_drain "
	  "waits for it", "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		callout c;
		callout_init(&c, true);
		rec r;
		r.close();
		callout_reset_on(&c, 1ms, record, &r, 1);
		REQUIRE(wait_for([&] { return r.entered.load(); }));
		CHECK(!callout_pending(&c));
		CHECK(callout_stop(&c) == 0); // running: cannot be stopped
		CHECK(!callout_active(&c));
		// A re-run scheduled while it runs is unscheduled by stop (0).
		CHECK(callout_reset_on(&c, 1ms, record, &r, 1) == 0);
		CHECK(callout_pending(&c));
		CHECK(callout_stop(&c) == 0);
		CHECK(!callout_pending(&c));
		// Drain from another thread: it returns only after the handler.
		std::atomic<int> drained{-5};
		std::atomic<int> runs_at_drain{-1};
		green_thread d([&] {
			drained = callout_drain(&c);
			runs_at_drain = r.runs.load();
		});
		thread_sleep(5ms);
		CHECK(drained == -5); // still waiting
		r.open();
		d.join();
		CHECK(drained == 0);
		CHECK(runs_at_drain == 1);
		thread_sleep(5ms);
		CHECK(r.runs == 1); // the unscheduled re-run never happened
	});
}

TEST_CASE("callout_drain without the lock of a running handler that was "
	  "re-armed returns 1: the re-run it removed never happens",
    "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		callout c;
		callout_init(&c, true); // no lock: the drainer cannot hold it
		rec r;
		r.close();
		callout_reset_on(&c, 1ms, record, &r, 1);
		REQUIRE(wait_for([&] { return r.entered.load(); }));
		// Re-armed while the handler runs (as a handler that
		// reschedules itself does).
		CHECK(callout_reset_on(&c, 1ms, record, &r, 1) == 0);
		CHECK(callout_pending(&c));
		std::atomic<int> drained{-5};
		green_thread d([&] { drained = callout_drain(&c); });
		REQUIRE(yield_until([&] { return !callout_pending(&c); }));
		CHECK(drained == -5); // waits for the handler
		r.open();
		d.join();
		CHECK(drained == 1); // it stopped a scheduled call
		thread_sleep(5ms);
		CHECK(r.runs == 1);  // which never ran
		CHECK(callout_drain(&c) == -1);
	});
}

TEST_CASE("a callout that reschedules itself does not come back after "
	  "callout_drain", "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		struct self {
			callout c;
			std::atomic<int> runs{0};
		} s;
		callout_init(&s.c, true);
		auto fn = [](void *arg) {
			auto *p = static_cast<self *>(arg);
			p->runs++;
			callout_schedule(&p->c, 1ms);
		};
		callout_reset(&s.c, 1ms, fn, &s);
		REQUIRE(wait_for([&] { return s.runs >= 3; }));
		int r = callout_drain(&s.c);
		CHECK((r == 0 || r == 1));
		int after = s.runs;
		CHECK(!callout_pending(&s.c));
		thread_sleep(10ms);
		CHECK(s.runs == after);
	});
}

TEST_CASE("callout_init_mtx: the handler runs with the mutex held; a stop "
	  "while it waits for the mutex cancels it", "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		mutex mtx("softc");
		callout c;
		callout_init_mtx(&c, mtx, 0);
		rec r;
		r.mtx = &mtx;
		mtx.lock();
		CHECK(callout_reset_on(&c, 1ms, record, &r, 1) == 0);
		mtx.unlock();
		REQUIRE(wait_for([&] { return r.runs == 1; }));
		CHECK(r.locked);
		CHECK(!mtx.owned());

		// Hold the mutex across the due time: the softclock takes the
		// callout off the wheel (pending clears) and waits for the mutex.
		mtx.lock();
		CHECK(callout_reset_on(&c, 1ms, record, &r, 1) == 0);
		REQUIRE(yield_until([&] { return !callout_pending(&c); }));
		yield_for(2ms);
		CHECK(r.runs == 1);
		CHECK(callout_stop(&c) == 1); // cancelled while waiting
		mtx.unlock();
		// The softclock may still be returning the mutex (0).
		int dr = callout_drain(&c);
		CHECK((dr == -1 || dr == 0));
		thread_sleep(5ms);
		CHECK(r.runs == 1); // never ran

		// Same race, settled by a reset instead: it returns 1 and the
		// new call runs once.
		mtx.lock();
		callout_reset_on(&c, 1ms, record, &r, 1);
		REQUIRE(yield_until([&] { return !callout_pending(&c); }));
		CHECK(callout_reset_on(&c, 1ms, record, &r, 1) == 1);
		mtx.unlock();
		REQUIRE(wait_for([&] { return r.runs == 2; }));
		thread_sleep(5ms);
		CHECK(r.runs == 2);

		// A reset cancels the waiting run and arms a new call; a stop
		// under the lock then stops that call: 1 (the cancelled run is
		// no running handler), and again -1.  (It answered 0, and the
		// caller's book kept a call that never ran.)
		mtx.lock();
		callout_reset_on(&c, 1ms, record, &r, 1);
		REQUIRE(yield_until([&] { return !callout_pending(&c); }));
		CHECK(callout_reset_on(&c, 10s, record, &r, 1) == 1);
		CHECK(callout_stop(&c) == 1);
		CHECK(callout_stop(&c) == -1);
		mtx.unlock();
		CHECK(callout_drain(&c) == -1);
		thread_sleep(5ms);
		CHECK(r.runs == 2);
	});
}

TEST_CASE("CALLOUT_RETURNUNLOCKED: the handler releases the lock",
    "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		static mutex mtx("returnunlocked");
		static std::atomic<int> runs{0};
		callout c;
		callout_init_mtx(&c, mtx, CALLOUT_RETURNUNLOCKED);
		mtx.lock();
		callout_reset(&c, 1ms, [](void *) {
			CHECK(mtx.owned());
			runs++;
			mtx.unlock();
		}, nullptr);
		mtx.unlock();
		REQUIRE(wait_for([&] { return runs == 1; }));
		mtx.lock(); // would panic on recursion if the softclock kept it
		mtx.unlock();
		CHECK(callout_drain(&c) == -1);
	});
}

TEST_CASE("a callout on an rwlock runs with it write-locked, or read-locked "
	  "with CALLOUT_SHAREDLOCK", "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		static rwlock rw("cfg");
		static std::atomic<int> w{0}, r{0};
		callout cw, cr;
		callout_init_rw(&cw, rw, 0);
		callout_init_rw(&cr, rw, CALLOUT_SHAREDLOCK);
		rw.lock();
		callout_reset(&cw, 1ms, [](void *) {
			if (rw.wowned())
				w++;
		}, nullptr);
		rw.unlock();
		rw.lock_shared();
		callout_reset(&cr, 1ms, [](void *) { r++; }, nullptr);
		rw.unlock_shared();
		REQUIRE(wait_for([&] { return w == 1 && r == 1; }));
		CHECK(callout_drain(&cw) == -1);
		CHECK(callout_drain(&cr) == -1);
	});
}

TEST_CASE("callout_init(c, false) runs the handler under Giant",
    "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		callout c;
		callout_init(&c, false);
		rec r;
		callout_reset(&c, 1ms, record, &r);
		REQUIRE(wait_for([&] { return r.runs == 1; }));
		CHECK(r.giant);
		CHECK(callout_drain(&c) == -1);
	});
}

TEST_CASE("callouts move between CPUs, also while running (deferred)",
    "[unit][callout]")
{
	test::machine m(4);
	m.run([] {
		callout c;
		callout_init(&c, true);
		rec r;
		for (int cpu : {3, 0, 2}) {
			int before = r.runs;
			callout_reset_on(&c, 1ms, record, &r, cpu);
			REQUIRE(wait_for([&] { return r.runs > before; }));
			CHECK(r.cpu == cpu);
		}
		// Reset to CPU 1 while it runs on CPU 2: it moves afterwards.
		r.close();
		callout_reset_on(&c, 1ms, record, &r, 2);
		REQUIRE(wait_for([&] { return r.entered.load(); }));
		CHECK(callout_reset_on(&c, 1ms, record, &r, 1) == 0);
		CHECK(callout_pending(&c));
		r.open();
		REQUIRE(wait_for([&] { return r.runs == 5; }));
		CHECK(r.cpu == 1);
		CHECK(callout_drain(&c) == -1);
		// A deferred move that is stopped does not happen.
		r.close();
		callout_reset_on(&c, 1ms, record, &r, 0);
		REQUIRE(wait_for([&] { return r.entered.load(); }));
		callout_reset_on(&c, 1ms, record, &r, 3);
		CHECK(callout_stop(&c) == 0); // running; the move is cancelled
		CHECK(!callout_pending(&c));
		r.open();
		REQUIRE(wait_for([&] { return r.runs == 6; }));
		thread_sleep(5ms);
		CHECK(r.runs == 6);
		CHECK(callout_drain(&c) == -1);
	});
}

TEST_CASE("C_ABSOLUTE and callout_reset_curcpu", "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		callout c;
		callout_init(&c, true);
		rec r;
		uint64_t at = clock_ns() + 3000000;
		callout_reset_sbt(&c, std::chrono::nanoseconds(at), 0ns, record,
		    &r, C_ABSOLUTE);
		REQUIRE(wait_for([&] { return r.runs == 1; }));
		CHECK(clock_ns() >= at);
		sched_pin();
		int me = curcpu();
		callout_reset_curcpu(&c, 1ms, record, &r);
		sched_unpin();
		REQUIRE(wait_for([&] { return r.runs == 2; }));
		CHECK(r.cpu == me);
		CHECK(callout_drain(&c) == -1);
	});
}

TEST_CASE("many callouts, far and near, all fire once", "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		constexpr int N = 300;
		static callout cs[N];
		static std::atomic<int> hits[N];
		for (int i = 0; i < N; i++) {
			hits[i] = 0;
			callout_init(&cs[i], true);
			// Spread over more than one turn of the 256-slot wheel.
			callout_reset_on(&cs[i], std::chrono::milliseconds(i % 300),
			    [](void *a) { hits[reinterpret_cast<intptr_t>(a)]++; },
			    reinterpret_cast<void *>(static_cast<intptr_t>(i)), i % 2);
		}
		REQUIRE(wait_for([&] {
			for (int i = 0; i < N; i++)
				if (hits[i] == 0)
					return false;
			return true;
		}));
		thread_sleep(5ms);
		for (int i = 0; i < N; i++)
			CHECK(hits[i] == 1);
		CHECK(callout_pending_count(0) == 0);
		CHECK(callout_pending_count(1) == 0);
	});
}

TEST_CASE("a slow callout handler is reported under USMP_INVARIANTS",
    "[unit][callout]")
{
	if (!config::invariants)
		return;
	test::machine m(1);
	m.run([] {
		callout_set_slow_threshold(1ms);
		uint64_t before = callout_slow_count();
		callout c;
		callout_init(&c, true);
		static std::atomic<int> done{0};
		callout_reset(&c, 1ms, [](void *) {
			uint64_t t = clock_ns();
			while (clock_ns() - t < 5000000)
				__builtin_ia32_pause();
			done++;
		}, nullptr);
		REQUIRE(wait_for([&] { return done == 1; }));
		thread_sleep(2ms);
		CHECK(callout_slow_count() == before + 1);
		callout_set_slow_threshold(2ms);
		CHECK(callout_drain(&c) == -1);
	});
}

TEST_CASE("an idle machine's CPUs sleep in their rings; a callout wakes its CPU "
    "through the ring's event timer", "[unit][callout]")
{
	test::machine m(2);
	if (!ring_enabled())
		return; // the hardclock drives the wheels: nothing to show
	auto waits = [] {
		uint64_t n = 0;
		for (int c = 0; c < 2; c++)
			n += ring_get_stats(c).rs_waits;
		return n;
	};
	// Let the boot's threads settle, then stay idle for 300 ticks.
	std::this_thread::sleep_for(50ms);
	uint64_t w0 = waits();
	std::this_thread::sleep_for(300ms);
	uint64_t idle_waits = waits() - w0;
	// A tick-driven machine would wake each CPU ~300 times here.
	CHECK(idle_waits < 30);

	ring_stats before = ring_get_stats(1);
	static std::atomic<int> runs{0};
	static std::atomic<uint64_t> ran_at{0};
	runs = 0;
	callout c;
	uint64_t due = 0;
	m.run([&] {
		callout_init(&c, true);
		due = clock_ns() + 100000000;
		callout_reset_on(&c, 100ms, [](void *) {
			ran_at = clock_ns();
			runs++;
		}, nullptr, 1);
	});
	std::this_thread::sleep_for(150ms);
	REQUIRE(wait_for([&] { return runs == 1; }));
	CHECK(ran_at >= due);
	ring_stats after = ring_get_stats(1);
	CHECK(after.rs_timer_fires > before.rs_timer_fires);
	CHECK(after.rs_waits - before.rs_waits < 30);
	m.run([&] { CHECK(callout_drain(&c) == -1); });
}

TEST_CASE("callouts fire in time order and never early", "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		constexpr int N = 20;
		struct slot {
			callout c;
			uint64_t due = 0;
			uint64_t at = 0;
			int order = -1;
		};
		static slot s[N];
		static std::atomic<int> seq{0};
		seq = 0;
		uint64_t fires0 = ring_get_stats(1).rs_timer_fires;
		// Scheduled in reverse, 2 ms apart, all on cpu1.
		for (int i = N - 1; i >= 0; i--) {
			callout_init(&s[i].c, true);
			s[i].due = clock_ns() + static_cast<uint64_t>(i + 1) * 2000000;
			callout_reset_on(&s[i].c, std::chrono::milliseconds(2 * (i + 1)),
			    [](void *a) {
				    auto *sl = static_cast<slot *>(a);
				    sl->at = clock_ns();
				    sl->order = seq++;
			    }, &s[i], 1);
		}
		REQUIRE(wait_for([] { return seq == N; }));
		for (int i = 0; i < N; i++) {
			CHECK(s[i].order == i);
			CHECK(s[i].at >= s[i].due);
			CHECK(callout_drain(&s[i].c) == -1);
		}
		if (ring_enabled())
			CHECK(ring_get_stats(1).rs_timer_fires > fires0);
	});
}

TEST_CASE("callout_when: C_EXACT, the default deviation, C_PREL, C_HARDCLOCK, "
    "C_ABSOLUTE", "[unit][callout]")
{
	uint64_t t, p;
	uint64_t now = clock_ns();
	callout_when(64ms, 0ns, C_EXACT, &t, &p);
	CHECK(t >= now + 64000000);
	CHECK(p == 0);
	callout_when(64ms, 0ns, 0, &t, &p);
	CHECK(p == 64000000u >> CALLOUT_PRECEXP);
	callout_when(64ms, 0ns, C_PREL(2), &t, &p);
	CHECK(p == 16000000u);
	callout_when(64ms, 20ms, C_PREL(2), &t, &p); // the argument is a floor
	CHECK(p == 20000000u);
	now = clock_ns();
	callout_when(10us, 0ns, C_HARDCLOCK | C_PREL(10), &t, &p);
	CHECK(t >= now + 1000000); // at least one tick
	CHECK((t + p) % 1000000 == 0); // may wait for the tick's end
	callout_when(std::chrono::nanoseconds(12345), 7ns, C_ABSOLUTE, &t, &p);
	CHECK(t == 12345u);
	CHECK(p == 7u);
}

TEST_CASE("a callout's precision lets the event timer serve a later callout "
    "with the same interrupt", "[unit][callout]")
{
	test::machine m(2);
	if (!ring_enabled())
		return;
	// Bound to CPU 0, so that CPU 1 stays parked and processes its wheel
	// only at its event timer: an unparked CPU 1 (this thread stolen
	// there while it waits) would run c1 at its first tick after 10 ms.
	thread_attr on0;
	on0.cpu = 0;
	m.run([] {
		static std::atomic<uint64_t> at1{0}, at2{0};
		at1 = at2 = 0;
		callout c1, c2;
		callout_init(&c1, true);
		callout_init(&c2, true);
		uint64_t t0 = clock_ns();
		// c1 is due at 10 ms but may wait until 40 ms; c2 is due at 25 ms
		// exactly.  One timer interrupt at 25 ms runs both.
		callout_reset_sbt_on(&c1, 10ms, 30ms, [](void *) { at1 = clock_ns(); },
		    nullptr, 1, C_PREL(63));
		callout_reset_sbt_on(&c2, 25ms, 0ns, [](void *) { at2 = clock_ns(); },
		    nullptr, 1, C_EXACT);
		REQUIRE(wait_for([] { return at1 != 0 && at2 != 0; }));
		CHECK(at1 >= t0 + 25000000); // batched: not at its 10 ms
		CHECK(at2 >= t0 + 25000000);
		CHECK(callout_drain(&c1) == -1);
		CHECK(callout_drain(&c2) == -1);
	}, on0);
}

TEST_CASE("callout_async_drain: 0 and the drain function after a running "
    "handler returns; 1 or -1 and no call otherwise", "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		static std::atomic<int> drained{0};
		static std::atomic<void *> drained_arg{nullptr};
		static rec *rp = nullptr;
		drained = 0;
		auto drain_fn = [](void *a) {
			// The handler has returned by now.
			CHECK(rp->runs == 1);
			drained_arg = a;
			drained++;
		};
		callout c;
		callout_init(&c, true);
		rec r;
		rp = &r;
		r.close();
		callout_reset_on(&c, 1ms, record, &r, 1);
		REQUIRE(wait_for([&] { return r.entered.load(); }));
		CHECK(callout_async_drain(&c, drain_fn) == 0);
		thread_sleep(5ms);
		CHECK(drained == 0); // still running
		r.open();
		REQUIRE(wait_for([&] { return drained == 1; }));
		CHECK(drained_arg == static_cast<void *>(&r));
		// Pending: stopped (1), no drain call; idle: -1.
		callout_reset_on(&c, 10s, record, &r, 1);
		CHECK(callout_async_drain(&c, drain_fn) == 1);
		CHECK(callout_async_drain(&c, drain_fn) == -1);
		thread_sleep(5ms);
		CHECK(drained == 1);
		CHECK(callout_drain(&c) == -1);
	});
}

// ---- Misuse.

TEST_CASE("callout_reset without the callout's mutex panics", "[death][callout]")
{
	auto r = test::run_death("reset unlocked", [] {
		usmp::run({.ncpus = 1}, [] {
			mutex mtx("unheld softc");
			callout c;
			callout_init_mtx(&c, mtx, 0);
			callout_reset(&c, 1ms, [](void *) {}, nullptr);
		});
	});
	USMP_REQUIRE_DEATH(r, "unheld softc");
	CHECK(r.contains("callout_unit.cc"));
}

TEST_CASE("a callout on a sleepable lock (sx) panics", "[death][callout]")
{
	// Spin mutexes are allowed (C_DIRECT_EXEC callouts need them):
	// callout_direct_unit.cc.
	auto r = test::run_death("sx callout", [] {
		sx sl("sleepy sx");
		callout c;
		callout_init_lock(&c, sl.lo(), 0);
	});
	USMP_REQUIRE_DEATH(r, "callout_init_lock: invalid lock class");
	CHECK(r.contains("sleepy sx"));
}

TEST_CASE("an uninitialised callout panics", "[death][callout]")
{
	auto r = test::run_death("uninit callout", [] {
		usmp::run({.ncpus = 1}, [] {
			callout c;
			callout_reset(&c, 1ms, [](void *) {}, nullptr);
		});
	});
	USMP_REQUIRE_DEATH(r, "callout_reset: callout");
	CHECK(r.contains("not initialized"));
}

TEST_CASE("sleeping in a callout handler panics", "[death][callout]")
{
	auto r = test::run_death("sleepy callout", [] {
		usmp::run({.ncpus = 1}, [] {
			callout c;
			callout_init(&c, true);
			static std::atomic<bool> never{false};
			callout_reset(&c, 1ms, [](void *) {
				usmp::pause("zzz", 1ms);
			}, nullptr);
			while (!never)
				thread_sleep(1ms);
		});
	}, {.timeout = std::chrono::seconds(30)});
	USMP_REQUIRE_DEATH(r, "sleeping on \"zzz\" with sleeping prohibited");
}

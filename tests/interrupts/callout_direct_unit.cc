// callout(9) C_DIRECT_EXEC: the handler runs in the clock interrupt of its
// CPU, as a filter (spinlock section, TDP_INFILTER, WITNESS's filter
// context); spin mutexes only; the stop / drain results as for the
// softclock's callouts; misuse panics.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <atomic>
#include <chrono>

#include "interrupts/callout.h"
#include "interrupts/intr_event.h"
#include "interrupts/ring.h"
#include "runtime/config.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sched/sched.h"
#include "support/death.h"
#include "support/machine.h"
#include "support/wait.h"
#include "sync/mutex.h"
#include "sync/witness.h"

using namespace std::chrono_literals;
using namespace usmp;
using test::wait_for;

namespace {

struct direct_rec : test::gate {
	std::atomic<int> runs{0};
	std::atomic<int> cpu{-2};
	std::atomic<bool> in_filter{false};
	std::atomic<bool> spin_section{false};
	std::atomic<bool> nosleep{false};
	std::atomic<bool> softclock{true};
	std::atomic<bool> spin_held{false};
	spin_mutex *spin = nullptr;
};

void
direct_record(void *arg)
{
	auto *r = static_cast<direct_rec *>(arg);
	thread *td = curthread();
	r->cpu = curcpu();
	r->in_filter = intr_in_filter();
	r->spin_section = td->td_spinlock_count > 0;
	r->nosleep = (td->td_pflags & TDP_NOSLEEPING) != 0;
	// The softclock's ithread is the event's ("swi4: clock (N)"); a
	// direct run is on whatever thread the interrupt found there.
	r->softclock = td->td_name[0] == 's' && td->td_name[1] == 'w' &&
	    td->td_name[2] == 'i';
	r->spin_held = r->spin != nullptr && r->spin->owned();
	r->pass(false);
	r->runs++;
}

void
runs_in_the_clock_interrupt()
{
	test::machine m(2);
	m.run([] {
		callout c;
		callout_init(&c, true);
		direct_rec r;
		CHECK(callout_reset_sbt_on(&c, 2ms, 0ns, direct_record, &r, 1,
		    C_DIRECT_EXEC) == 0);
		CHECK(callout_pending(&c));
		REQUIRE(wait_for([&] { return r.runs == 1; }));
		CHECK(r.cpu == 1);
		CHECK(r.in_filter);
		CHECK(r.spin_section);
		CHECK(r.nosleep);
		CHECK_FALSE(r.softclock);
		CHECK(!callout_pending(&c));
		// Reset without the flag: the softclock's ithread runs it.
		CHECK(callout_reset_sbt_on(&c, 1ms, 0ns, direct_record, &r, 1,
		    C_EXACT) == 0);
		REQUIRE(wait_for([&] { return r.runs == 2; }));
		CHECK_FALSE(r.in_filter);
		CHECK(r.softclock);
		CHECK(callout_drain(&c) == -1);
	});
}

} // namespace

TEST_CASE("a C_DIRECT_EXEC callout runs in its CPU's clock interrupt, as a "
    "filter", "[unit][callout]")
{
	runs_in_the_clock_interrupt();
}

TEST_CASE("without rings, a C_DIRECT_EXEC callout runs in the clock "
    "interrupt the hardclock raises", "[unit][callout]")
{
	setenv("USMP_IDLE_BACKEND", "futex", 1);
	runs_in_the_clock_interrupt();
	unsetenv("USMP_IDLE_BACKEND");
}

TEST_CASE("a direct callout with a spin mutex runs with it held; a stop "
    "under the lock cancels it exactly", "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		REQUIRE(sched_bind(0) == 0); // the callout's CPU is 1
		spin_mutex spin("direct softc");
		callout c;
		callout_init_mtx(&c, spin, 0);
		direct_rec r;
		r.spin = &spin;
		spin.lock();
		CHECK(callout_reset_sbt_on(&c, 1ms, 0ns, direct_record, &r, 1,
		    C_DIRECT_EXEC) == 0);
		spin.unlock();
		REQUIRE(wait_for([&] { return r.runs == 1; }));
		CHECK(r.spin_held);
		CHECK(r.in_filter);
		CHECK(!spin.owned());

		// Hold the lock past the due time: CPU 1's clock interrupt
		// finds the callout due and waits for the lock (or has not come
		// yet); either way the stop under the lock cancels the call.
		spin.lock();
		CHECK(callout_reset_sbt_on(&c, 1ms, 0ns, direct_record, &r, 1,
		    C_DIRECT_EXEC) == 0);
		uint64_t end = clock_ns() + 5000000;
		while (clock_ns() < end)
			__builtin_ia32_pause();
		CHECK(callout_stop(&c) == 1);
		spin.unlock();
		thread_sleep(10ms);
		CHECK(r.runs == 1);
		CHECK(callout_drain(&c) == -1);
		sched_unbind();
	});
}

TEST_CASE("stop and drain of a running direct callout", "[unit][callout]")
{
	test::machine m(2);
	m.run([] {
		callout c;
		callout_init(&c, true);
		// Off CPU 1: its clock interrupt spins in the handler until the
		// gate opens, and must not have interrupted us.
		REQUIRE(sched_bind(0) == 0);
		direct_rec r;
		r.close(); // the handler spins in the interrupt until opened
		callout_reset_sbt_on(&c, 1ms, 0ns, direct_record, &r, 1,
		    C_DIRECT_EXEC);
		REQUIRE(wait_for([&] { return r.entered.load(); }));
		CHECK(callout_stop(&c) == 0); // running: cannot be stopped
		CHECK(callout_reset_sbt_on(&c, 1ms, 0ns, direct_record, &r, 1,
		    C_DIRECT_EXEC) == 0);     // re-armed while it runs
		CHECK(callout_pending(&c));
		green_thread opener(thread_attr{.cpu = 0}, [&] {
			thread_sleep(5ms);
			r.open();
		});
		// Removes the re-run (so 1: a scheduled call was stopped),
		// then waits for the running handler.
		CHECK(callout_drain(&c) == 1);
		CHECK(r.runs == 1);
		opener.join();
		thread_sleep(5ms);
		CHECK(r.runs == 1);
		sched_unbind();
	});
}

TEST_CASE("C_DIRECT_EXEC on a callout with a sleep mutex panics at the reset",
    "[death][callout]")
{
	auto r = test::run_death("direct with a sleep mutex", [] {
		run({.ncpus = 1}, [] {
			mutex mtx("sleepy softc");
			callout c;
			callout_init_mtx(&c, mtx, 0);
			mtx.lock();
			callout_reset_sbt_on(&c, 1ms, 0ns, [](void *) {}, nullptr,
			    NOCPU, C_DIRECT_EXEC);
			mtx.unlock();
		});
	});
	USMP_REQUIRE_DEATH(r, "callout_reset: C_DIRECT_EXEC callout");
	USMP_REQUIRE_DEATH(r, "sleep mutex \"sleepy softc\"");
	CHECK(r.aborted());
}

namespace {
mutex *g_direct_sleep_mtx;
void
locking_direct(void *)
{
	g_direct_sleep_mtx->lock();
	g_direct_sleep_mtx->unlock();
}
void
run_locking_direct()
{
	run({.ncpus = 1}, [] {
		callout c;
		callout_init(&c, true);
		callout_reset_sbt_on(&c, 1ms, 0ns, locking_direct, nullptr, NOCPU,
		    C_DIRECT_EXEC);
		thread_sleep(200ms);
		callout_drain(&c);
	});
}
} // namespace

TEST_CASE("a sleep mutex taken in a direct callout's handler panics",
    "[death][callout]")
{
	auto r = test::run_death("sleep lock in a direct callout", [] {
		mutex mtx("direct-taken mutex");
		g_direct_sleep_mtx = &mtx;
		run_locking_direct();
	});
	USMP_REQUIRE_DEATH(r, "mtx_lock() of sleep mutex \"direct-taken mutex\"");
	CHECK(r.aborted());
}

TEST_CASE("WITNESS reports a sleep lock taken in a direct callout as taken in "
    "an interrupt filter", "[death][callout]")
{
	if constexpr (!config::witness)
		return;
	auto r = test::run_death("witness direct callout", [] {
		witness_set_mode(witness_mode::warn);
		mutex mtx("direct-taken mutex");
		g_direct_sleep_mtx = &mtx;
		run_locking_direct();
	});
	USMP_REQUIRE_DEATH(r, "acquiring sleep lock (sleep mutex) direct-taken "
			      "mutex in an interrupt filter @ ");
}

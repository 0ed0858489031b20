// Interrupt events: filters in primary interrupt context, ithreads at the
// best handler's priority, Giant for handlers not MPSAFE, binding, stray
// interrupts, storms, and firing from green threads, plain OS threads and
// signal handlers.
#include <catch2/catch.hpp>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "interrupts/intr_event.h"
#include "interrupts/swi.h"
#include "runtime/config.h"
#include "runtime/counters.h"
#include "runtime/critical.h"
#include "runtime/internal/intr_hook.h"
#include "runtime/machine.h"
#include "runtime/pcpu.h"
#include "runtime/thread.h"
#include "sched/sched.h"
#include "support/death.h"
#include "support/machine.h"
#include "support/wait.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sync/witness.h"

using namespace std::chrono_literals;
using namespace usmp;
using test::wait_for;

namespace {

struct probe {
	std::atomic<int> filter_runs{0};
	std::atomic<int> ithread_runs{0};
	std::atomic<int> filter_cpu{-2};
	std::atomic<int> ithread_cpu{-2};
	std::atomic<bool> filter_ctx_ok{true};
	std::atomic<bool> giant_held{false};
	std::atomic<int> ithread_pri{-1};
	int result = FILTER_HANDLED;
};

int
probe_filter(void *arg)
{
	auto *p = static_cast<probe *>(arg);
	thread *td = curthread();
	// Primary interrupt context: interrupts disabled, no sleeping.
	if (!intr_in_filter() || td->td_spinlock_count == 0 ||
	    td->td_critnest == 0 || !(td->td_pflags & TDP_NOSLEEPING))
		p->filter_ctx_ok = false;
	p->filter_cpu = curcpu();
	p->filter_runs++;
	return p->result;
}

void
probe_ithread(void *arg)
{
	auto *p = static_cast<probe *>(arg);
	p->ithread_cpu = curcpu();
	p->giant_held = Giant.owned();
	p->ithread_pri = curthread()->td_priority;
	if (intr_in_filter())
		p->filter_ctx_ok = false;
	p->ithread_runs++;
}

} // namespace

TEST_CASE("a filter fired from a green thread runs at once on its CPU, in "
	  "interrupt context", "[unit][intr]")
{
	test::machine m(2);
	m.run([] {
		intr_event *ie;
		REQUIRE(intr_event_create(&ie, "test0") == 0);
		probe p;
		intr_handler *h;
		REQUIRE(intr_event_add_handler(ie, "test0 f", probe_filter,
		    nullptr, &p, PI_DULL, INTR_MPSAFE, &h) == 0);
		CHECK(intr_event_ithread(ie) == nullptr); // filter only
		sched_pin();
		int cpu = curcpu();
		REQUIRE(intr_event_fire(ie) == 0);
		CHECK(p.filter_runs == 1); // synchronous on our own CPU
		CHECK(p.filter_cpu == cpu);
		sched_unpin();
		CHECK(p.filter_ctx_ok);
		CHECK(!intr_in_filter());
		CHECK((curthread()->td_pflags & TDP_NOSLEEPING) == 0);
		intr_event_stats st;
		intr_event_get_stats(ie, &st);
		CHECK(st.ies_fires == 1);
		CHECK(st.ies_handled == 1);
		CHECK(st.ies_stray == 0);
		CHECK(intr_event_destroy(ie) == EBUSY);
		REQUIRE(intr_event_remove_handler(h) == 0);
		CHECK(intr_event_destroy(ie) == 0);
	});
}

TEST_CASE("FILTER_SCHEDULE_THREAD runs the ithread handler; ithread "
	  "priority follows the best handler", "[unit][intr]")
{
	test::machine m(2);
	m.run([] {
		intr_event *ie;
		REQUIRE(intr_event_create(&ie, "disk0") == 0);
		probe p;
		p.result = FILTER_SCHEDULE_THREAD;
		intr_handler *h1, *h2;
		REQUIRE(intr_event_add_handler(ie, "disk0 a", probe_filter,
		    probe_ithread, &p, PI_DISK, INTR_MPSAFE, &h1) == 0);
		thread *it = intr_event_ithread(ie);
		REQUIRE(it != nullptr);
		CHECK(it->td_base_pri == PI_DISK);
		REQUIRE(intr_event_fire(ie) == 0);
		REQUIRE(wait_for([&] { return p.ithread_runs >= 1; }));
		CHECK(p.filter_runs == 1);
		CHECK(p.ithread_pri == PI_DISK);
		CHECK(!p.giant_held);
		CHECK(p.filter_ctx_ok);

		// A better handler raises the ithread; removing it lowers it.
		probe q;
		q.result = FILTER_HANDLED;
		REQUIRE(intr_event_add_handler(ie, "disk0 b", probe_filter,
		    probe_ithread, &q, PI_NET, INTR_MPSAFE, &h2) == 0);
		CHECK(it->td_base_pri == PI_NET);
		REQUIRE(intr_event_fire(ie) == 0);
		// p's filter asks for the thread: every ithread handler runs.
		REQUIRE(wait_for([&] { return p.ithread_runs >= 2 && q.ithread_runs >= 1; }));
		CHECK(p.ithread_pri == PI_NET);
		REQUIRE(intr_event_remove_handler(h2) == 0);
		CHECK(it->td_base_pri == PI_DISK);
		REQUIRE(intr_event_remove_handler(h1) == 0);
		CHECK(intr_event_destroy(ie) == 0);
	});
}

TEST_CASE("an ithread-only handler not marked MPSAFE runs under Giant",
    "[unit][intr]")
{
	test::machine m(2);
	m.run([] {
		intr_event *ie;
		REQUIRE(intr_event_create(&ie, "legacy") == 0);
		probe p;
		intr_handler *h;
		REQUIRE(intr_event_add_handler(ie, "legacy", nullptr,
		    probe_ithread, &p, PI_TTY, 0, &h) == 0);
		REQUIRE(intr_event_fire(ie) == 0);
		REQUIRE(wait_for([&] { return p.ithread_runs >= 1; }));
		CHECK(p.giant_held);
		CHECK(!Giant.owned());
		REQUIRE(intr_event_remove_handler(h) == 0);
		CHECK(intr_event_destroy(ie) == 0);
	});
}

TEST_CASE("stray interrupts are counted", "[unit][intr]")
{
	test::machine m(1);
	m.run([] {
		intr_event *ie;
		REQUIRE(intr_event_create(&ie, "nobody") == 0);
		uint64_t before = intr_stray_count();
		REQUIRE(intr_event_fire(ie) == 0); // no handler at all
		probe p;
		p.result = FILTER_STRAY;
		intr_handler *h;
		REQUIRE(intr_event_add_handler(ie, "not mine", probe_filter,
		    nullptr, &p, PI_DULL, INTR_MPSAFE, &h) == 0);
		REQUIRE(intr_event_fire(ie) == 0);
		CHECK(p.filter_runs == 1);
		intr_event_stats st;
		intr_event_get_stats(ie, &st);
		CHECK(st.ies_stray == 2);
		CHECK(st.ies_handled == 0);
		CHECK(intr_stray_count() == before + 2);
		REQUIRE(intr_event_remove_handler(h) == 0);
		CHECK(intr_event_destroy(ie) == 0);
	});
}

TEST_CASE("a bound event delivers on its CPU and binds its ithread",
    "[unit][intr]")
{
	test::machine m(4);
	m.run([] {
		intr_event *ie;
		REQUIRE(intr_event_create(&ie, "bound") == 0);
		probe p;
		p.result = FILTER_SCHEDULE_THREAD | FILTER_HANDLED;
		intr_handler *h;
		REQUIRE(intr_event_add_handler(ie, "bound", probe_filter,
		    probe_ithread, &p, PI_NET, INTR_MPSAFE, &h) == 0);
		CHECK(intr_event_bind(ie, 7) == EINVAL);
		for (int cpu : {2, 3, 1}) {
			REQUIRE(intr_event_bind(ie, cpu) == 0);
			CHECK(intr_event_bound_cpu(ie) == cpu);
			int before = p.ithread_runs;
			// Fire from a CPU that is not the bound one.
			REQUIRE(sched_bind(0) == 0);
			REQUIRE(intr_event_fire(ie) == 0);
			sched_unbind();
			REQUIRE(wait_for([&] { return p.ithread_runs > before; }));
			CHECK(p.filter_cpu == cpu);
			CHECK(p.ithread_cpu == cpu);
		}
		REQUIRE(intr_event_bind(ie, NOCPU) == 0);
		CHECK(intr_event_bound_cpu(ie) == NOCPU);
		CHECK(p.filter_ctx_ok);
		REQUIRE(intr_event_remove_handler(h) == 0);
		CHECK(intr_event_destroy(ie) == 0);
	});
}

TEST_CASE("an event fired from a plain OS thread is delivered on a CPU",
    "[unit][intr]")
{
	test::machine m(2);
	intr_event *ie;
	REQUIRE(intr_event_create(&ie, "foreign") == 0);
	probe p;
	p.result = FILTER_SCHEDULE_THREAD;
	intr_handler *h;
	REQUIRE(intr_event_add_handler(ie, "foreign", probe_filter,
	    probe_ithread, &p, PI_AV, INTR_MPSAFE, &h) == 0);
	std::thread t([&] {
		for (int i = 0; i < 50; i++) {
			intr_event_fire(ie);
			std::this_thread::sleep_for(100us);
		}
	});
	t.join();
	REQUIRE(wait_for([&] {
		intr_event_stats st;
		intr_event_get_stats(ie, &st);
		return st.ies_delivered >= 1 && p.ithread_runs >= 1 &&
		    st.ies_fires == 50;
	}));
	// Coalescing may merge fires, never lose the last one.
	CHECK(p.filter_runs >= 1);
	CHECK(p.filter_runs <= 50);
	CHECK(p.filter_cpu == intr_event_cpu(ie));
	CHECK(p.filter_ctx_ok);
	REQUIRE(intr_event_remove_handler(h) == 0);
	CHECK(intr_event_destroy(ie) == 0);
}

namespace {
std::atomic<intr_event *> g_sig_event{nullptr};
void
sig_fire(int)
{
	intr_event_fire_async(g_sig_event.load());
}
} // namespace

TEST_CASE("an event fired from a signal handler is delivered",
    "[unit][intr]")
{
	test::machine m(2);
	intr_event *ie;
	REQUIRE(intr_event_create(&ie, "signal") == 0);
	probe p;
	intr_handler *h;
	REQUIRE(intr_event_add_handler(ie, "signal", probe_filter, nullptr, &p,
	    PI_DULL, INTR_MPSAFE, &h) == 0);
	g_sig_event = ie;
	struct sigaction sa = {}, old;
	sa.sa_handler = sig_fire;
	sigemptyset(&sa.sa_mask);
	REQUIRE(sigaction(SIGUSR1, &sa, &old) == 0);
	// To a plain OS thread, then to each CPU's own OS thread with the
	// event bound to it (delivered at that CPU's next interrupt point)
	// and to the other one.
	std::thread t([] { pthread_kill(pthread_self(), SIGUSR1); });
	t.join();
	REQUIRE(wait_for([&] { return p.filter_runs >= 1; }));
	for (int bound : {0, 1}) {
		for (int victim : {0, 1}) {
			REQUIRE(intr_event_bind(ie, bound) == 0);
			int before = p.filter_runs;
			pthread_kill(pcpu_find(victim)->pc_pthread, SIGUSR1);
			REQUIRE(wait_for([&] { return p.filter_runs > before; }));
			CHECK(p.filter_cpu == bound);
		}
	}
	sigaction(SIGUSR1, &old, nullptr);
	CHECK(p.filter_ctx_ok);
	REQUIRE(intr_event_remove_handler(h) == 0);
	CHECK(intr_event_destroy(ie) == 0);
}

namespace {
struct storm {
	intr_event *ie = nullptr;
	std::atomic<int> runs{0};
	int refire = 0;
};
void
storm_handler(void *arg)
{
	auto *s = static_cast<storm *>(arg);
	// A source that keeps interrupting: back-to-back ithread passes.
	if (++s->runs < s->refire)
		intr_event_schedule_thread(s->ie);
}
} // namespace

TEST_CASE("an interrupt storm is throttled past the threshold", "[unit][intr]")
{
	test::machine m(2);
	m.run([] {
		intr_storm_threshold_set(5);
		CHECK(intr_storm_threshold() == 5);
		storm s;
		s.refire = 20;
		REQUIRE(intr_event_create(&s.ie, "stormy") == 0);
		intr_handler *h;
		REQUIRE(intr_event_add_handler(s.ie, "stormy", nullptr,
		    storm_handler, &s, PI_DULL, INTR_MPSAFE, &h) == 0);
		REQUIRE(intr_event_fire(s.ie) == 0);
		REQUIRE(wait_for([&] { return s.runs >= 20; }));
		intr_event_stats st;
		intr_event_get_stats(s.ie, &st);
		// Passes 6..20 ran past the threshold of 5.
		CHECK(st.ies_storms >= 10);
		uint64_t storms = 0;
		CHECK(counter_read("hw.intr.stormy.storms", &storms));
		CHECK(storms >= 10);
		intr_storm_threshold_set(0);
		REQUIRE(intr_event_remove_handler(h) == 0);
		CHECK(intr_event_destroy(s.ie) == 0);
	});
}

TEST_CASE("hw.intr.<event>.* counters move with the event and go with it",
    "[unit][intr]")
{
	test::machine m(2);
	m.run([] {
		auto read = [](const char *name) {
			uint64_t v = ~0ull;
			INFO(name);
			CHECK(counter_read(name, &v));
			return v;
		};
		intr_event *ie;
		// Characters a counter name may not hold fold into one '_'.
		REQUIRE(intr_event_create(&ie, "nic0: rx") == 0);
		CHECK(read("hw.intr.nic0_rx.fires") == 0);
		probe p;
		p.result = FILTER_HANDLED | FILTER_SCHEDULE_THREAD;
		intr_handler *h;
		REQUIRE(intr_event_add_handler(ie, "nic0 rx", probe_filter,
		    probe_ithread, &p, PI_NET, INTR_MPSAFE, &h) == 0);
		for (int i = 1; i <= 3; i++) {
			REQUIRE(intr_event_fire(ie) == 0);
			REQUIRE(wait_for([&] { return p.ithread_runs == i; }));
		}
		p.result = FILTER_STRAY;
		REQUIRE(intr_event_fire(ie) == 0);
		CHECK(read("hw.intr.nic0_rx.fires") == 4);
		CHECK(read("hw.intr.nic0_rx.delivered") == 4);
		CHECK(read("hw.intr.nic0_rx.handled") == 3);
		CHECK(read("hw.intr.nic0_rx.scheduled") == 3);
		CHECK(read("hw.intr.nic0_rx.stray") == 1);
		CHECK(read("hw.intr.nic0_rx.ithread_runs") == 3);
		CHECK(read("hw.intr.nic0_rx.storms") == 0);
		// A second live event of the same name is counted apart.
		intr_event *twin;
		REQUIRE(intr_event_create(&twin, "nic0: rx") == 0);
		CHECK(read("hw.intr.nic0_rx_2.fires") == 0);
		REQUIRE(intr_event_fire(twin) == 0);
		CHECK(read("hw.intr.nic0_rx_2.fires") == 1);
		CHECK(read("hw.intr.nic0_rx.fires") == 4);
		REQUIRE(intr_event_remove_handler(h) == 0);
		CHECK(intr_event_destroy(ie) == 0);
		CHECK(intr_event_destroy(twin) == 0);
		uint64_t v;
		CHECK(!counter_read("hw.intr.nic0_rx.fires", &v));
		CHECK(!counter_read("hw.intr.nic0_rx_2.stray", &v));
		CHECK(counters_snapshot("hw.intr.nic0_rx").empty());
	});
}

TEST_CASE("the storm message is printed, rate-limited", "[unit][intr]")
{
	auto r = test::run_death("storm message", [] {
		usmp::run({.ncpus = 1}, [] {
			intr_storm_threshold_set(2);
			storm s;
			s.refire = 10;
			intr_event_create(&s.ie, "noisy0");
			intr_handler *h;
			intr_event_add_handler(s.ie, "noisy0", nullptr,
			    storm_handler, &s, PI_DULL, INTR_MPSAFE, &h);
			intr_event_fire(s.ie);
			wait_for([&] { return s.runs >= 10; });
			intr_event_remove_handler(h);
			intr_event_destroy(s.ie);
		});
	});
	CHECK(r.exited_with(0));
	INFO(r.output);
	CHECK(r.contains("interrupt storm detected on \"noisy0\"; throttling "
			 "interrupt source"));
	// Once a second at most: one line for a burst far shorter than that.
	auto first = r.output.find("interrupt storm");
	CHECK(r.output.find("interrupt storm", first + 1) == std::string::npos);
}

TEST_CASE("intr_event_add_handler rejects bad arguments", "[unit][intr]")
{
	test::machine m(1);
	m.run([] {
		intr_event *ie;
		CHECK(intr_event_create(&ie, nullptr) == EINVAL);
		REQUIRE(intr_event_create(&ie, "args") == 0);
		intr_handler *h, *h2;
		CHECK(intr_event_add_handler(ie, "none", nullptr, nullptr, nullptr,
		    PI_DULL, 0, &h) == EINVAL);
		CHECK(intr_event_add_handler(ie, "pri", probe_filter, nullptr,
		    nullptr, PRI_MAX_ITHD + 1, 0, &h) == EINVAL);
		probe p;
		REQUIRE(intr_event_add_handler(ie, "excl", probe_filter, nullptr,
		    &p, PI_DULL, INTR_EXCL | INTR_MPSAFE, &h) == 0);
		CHECK(intr_event_add_handler(ie, "second", probe_filter, nullptr,
		    &p, PI_DULL, INTR_MPSAFE, &h2) == EINVAL);
		REQUIRE(intr_event_remove_handler(h) == 0);
		CHECK(intr_event_destroy(ie) == 0);
		CHECK(intr_priority(INTR_TYPE_NET) == PI_NET);
		CHECK(intr_priority(INTR_TYPE_CLK | INTR_MPSAFE) == PI_REALTIME);
	});
}

namespace {
std::atomic<intr_event *> g_stop_fire{nullptr};
std::atomic<int> g_stop_filter_runs{0};

// CPU 0, its idle loop returned: fire the event bound to CPU 1, which may
// already have left its own loop (then nobody delivers it).
void
fire_at_cpu_stop(pcpu *pc) noexcept
{
	intr_event *ie = g_stop_fire.load();
	if (ie != nullptr && pc->pc_cpuid == 0)
		intr_event_fire(ie);
}

sysinit g_stop_sysinit = [] {
	sysinit si;
	si.si_cpu_stop = fire_at_cpu_stop;
	si.si_order = 100;
	return si;
}();
} // namespace

TEST_CASE("an interrupt still queued at shutdown is dropped: the event fires "
    "and is destroyed normally on the next boot", "[unit][intr]")
{
	static bool registered = false;
	if (!registered) {
		sysinit_register(&g_stop_sysinit);
		registered = true;
	}
	intr_event *ie = nullptr;
	intr_handler *ih = nullptr;
	for (int boot = 0; boot < 5; boot++) {
		test::machine m(2);
		m.run([&] {
			if (ie == nullptr) {
				REQUIRE(intr_event_create(&ie, "fired at stop") == 0);
				REQUIRE(intr_event_add_handler(ie, "fired at stop",
				    [](void *) noexcept -> int {
					    g_stop_filter_runs++;
					    return FILTER_HANDLED;
				    }, nullptr, nullptr, PI_NET,
				    INTR_MPSAFE | INTR_TYPE_NET, &ih) == 0);
			}
			REQUIRE(intr_event_bind(ie, 1) == 0);
			// Whatever the last shutdown left queued, a fire now is
			// delivered.
			int before = g_stop_filter_runs.load();
			intr_event_fire(ie);
			CHECK(wait_for([&] { return g_stop_filter_runs.load() > before; }));
		});
		g_stop_fire = ie;
	}
	g_stop_fire = nullptr;
	test::machine m(2);
	m.run([&] {
		REQUIRE(intr_event_remove_handler(ih) == 0);
		REQUIRE(intr_event_destroy(ie) == 0); // nothing left in flight
	});
}

TEST_CASE("intr_event_suspend_handler: a suspended filter does not run (the "
    "fire is stray); resume runs it again", "[unit][intr]")
{
	test::machine m(2);
	m.run([] {
		static std::atomic<int> runs{0};
		runs = 0;
		intr_event *ie;
		intr_handler *ih;
		REQUIRE(intr_event_create(&ie, "suspended filter") == 0);
		REQUIRE(intr_event_add_handler(ie, "susp", [](void *) -> int {
			runs++;
			return FILTER_HANDLED;
		}, nullptr, nullptr, PI_NET, INTR_MPSAFE | INTR_TYPE_NET, &ih) == 0);
		REQUIRE(intr_event_suspend_handler(ih) == 0);
		intr_event_fire(ie);
		intr_event_stats st;
		REQUIRE(wait_for([&] {
			intr_event_get_stats(ie, &st);
			return st.ies_delivered == 1;
		}));
		CHECK(runs == 0);
		CHECK(st.ies_stray == 1);
		REQUIRE(intr_event_resume_handler(ih) == 0);
		intr_event_fire(ie);
		REQUIRE(wait_for([] { return runs == 1; }));
		REQUIRE(intr_event_remove_handler(ih) == 0);
		REQUIRE(intr_event_destroy(ie) == 0);
	});
}

TEST_CASE("intr_event_suspend_handler waits for the ithread handler to return; "
    "a swi scheduled while suspended runs at resume", "[unit][intr]")
{
	test::machine m(2);
	m.run([] {
		static std::atomic<int> runs{0};
		static std::atomic<bool> inside{false}, release{false};
		runs = 0;
		inside = release = false;
		intr_event *ie = nullptr;
		void *cookie;
		REQUIRE(swi_add(&ie, "suspended swi", [](void *) {
			inside = true;
			while (!release.load())
				__builtin_ia32_pause();
			inside = false;
			runs++;
		}, nullptr, SWI_TQ, INTR_MPSAFE, &cookie) == 0);
		auto *ih = static_cast<intr_handler *>(cookie);
		swi_sched(cookie, 0);
		REQUIRE(wait_for([] { return inside.load(); }));
		std::atomic<bool> suspended{false};
		thread *td;
		REQUIRE(thread_create(&td, {}, [&] {
			REQUIRE(intr_event_suspend_handler(ih) == 0);
			CHECK_FALSE(inside.load()); // it returned first
			suspended = true;
		}) == 0);
		thread_sleep(20ms);
		CHECK_FALSE(suspended.load()); // still waiting for the handler
		release = true;
		REQUIRE(thread_join(td) == 0);
		CHECK(suspended.load());
		CHECK(runs == 1);
		// Scheduled while suspended: does not run until the resume.
		swi_sched(cookie, 0);
		thread_sleep(20ms);
		CHECK(runs == 1);
		REQUIRE(intr_event_resume_handler(ih) == 0);
		REQUIRE(wait_for([] { return runs == 2; }));
		swi_remove(cookie);
		intr_event_destroy(ie);
	});
}

// ---- Misuse.

namespace {
int
bad_filter(void *)
{
	return 0x40;
}
int
sleepy_filter(void *)
{
	pause("nap", 1ms);
	return FILTER_HANDLED;
}
mutex *g_sleep_mtx;
int
locking_filter(void *)
{
	g_sleep_mtx->lock();
	g_sleep_mtx->unlock();
	return FILTER_HANDLED;
}
void
fire_one(driver_filter_t f)
{
	usmp::run({.ncpus = 1}, [f] {
		intr_event *ie;
		intr_event_create(&ie, "misused");
		intr_handler *h;
		intr_event_add_handler(ie, "culprit", f, nullptr, nullptr,
		    PI_DULL, INTR_MPSAFE, &h);
		intr_event_fire(ie);
	});
}
} // namespace

TEST_CASE("a bad filter result panics naming the handler", "[death][intr]")
{
	auto r = test::run_death("bad filter", [] { fire_one(bad_filter); });
	USMP_REQUIRE_DEATH(r, "incorrect return value 0x40 from filter of "
			      "handler \"culprit\" on event \"misused\"");
	CHECK(r.aborted());
}

TEST_CASE("sleeping in a filter panics", "[death][intr]")
{
	auto r = test::run_death("sleepy filter", [] { fire_one(sleepy_filter); });
	USMP_REQUIRE_DEATH(r, "pause: sleeping on \"nap\"");
	CHECK(r.contains("intr_event_unit.cc"));
	CHECK(r.aborted());
}

TEST_CASE("a sleep mutex in a filter panics", "[death][intr]")
{
	auto r = test::run_death("locking filter", [] {
		mutex mtx("driver softc");
		g_sleep_mtx = &mtx;
		fire_one(locking_filter);
	});
	USMP_REQUIRE_DEATH(r, "mtx_lock() of sleep mutex \"driver softc\"");
	CHECK(r.aborted());
}

TEST_CASE("WITNESS reports a sleep lock taken in a filter, naming the lock",
    "[death][intr]")
{
	if constexpr (!config::witness)
		return;
	auto r = test::run_death("witness filter", [] {
		witness_set_mode(witness_mode::warn);
		mutex mtx("filter-taken mutex");
		g_sleep_mtx = &mtx;
		fire_one(locking_filter);
	});
	USMP_REQUIRE_DEATH(r, "acquiring sleep lock (sleep mutex) filter-taken "
			      "mutex in an interrupt filter @ ");
}

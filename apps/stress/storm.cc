// Interrupt scenario: an interrupt storm over intr_event(9).
//
// A dozen events, some bound to a CPU and some not, each with one handler
// that has a filter and an ithread part, are fired as fast as possible from
// green threads on every CPU, from two foreign OS threads (delivered on the
// event's home CPU), and now and then from a filter (chained interrupts).
// Storm detection is on (hw.intr_storm_threshold), and one event screams:
// its ithread raises it again at every pass, so that ithread is throttled.  The filter returns, by a per-event generator, HANDLED,
// SCHEDULE_THREAD or both, or (one event) STRAY; a scheduling filter hands one unit of work to
// the ithread under a spin mutex that the ithread handler takes too.
//
// Invariants, checked after the firers stop and the events go quiet:
//  - no lost fire: a firer bumps the event's sequence number, then fires; a
//    delivery pass reads the sequence under the event's filter lock, so
//    the last pass must have seen the last number (fires coalesce, as a
//    level-triggered line, but never after the filter last ran);
//  - every pass accounted for: the event's counters (intr_event_get_stats)
//    agree with what the filter returned: passes, stray, handled,
//    scheduled; and every intr_event_fire() that returned 0 was counted;
//  - no lost ithread run: all the work handed to the ithread was consumed
//    (a schedule that the ithread missed leaves work behind), and the
//    ithread ran its handlers as often as the event says, throttled passes
//    (storms) included.
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <memory>
#include <thread>
#include <vector>

#include "apps/stress/stress.h"
#include "apps/stress/workers.h"
#include "interrupts/intr_event.h"
#include "runtime/thread.h"
#include "sched/priority.h"
#include "sync/mutex.h"

namespace usmp::stress {
namespace {

constexpr int kEvents = 12;
constexpr int kForeignFirers = 2;
// Throttle an ithread that runs this many passes back to back.
constexpr int kStormThreshold = 20;
// The event whose filter sometimes disowns an interrupt.
constexpr int kStrayEvent = 1;
// The screaming event: its ithread raises the line again while the storm
// lasts (a device that never quiets down), so its ithread never goes idle
// and is throttled.
constexpr int kScreamEvent = 2;

struct storm_event;

struct storm_state {
	context *ctx;
	std::vector<std::unique_ptr<storm_event>> events;
	std::atomic<uint64_t> fires_ok{0}; // intr_event_fire() returned 0
	// Handlers fire events (chained interrupts, the screaming line) only
	// while `chain` is set, and count themselves in `chain_firing` around
	// the check and the fire (both seq_cst: once the scenario has cleared
	// `chain` and then seen `chain_firing` at 0, no handler fires any
	// more).  Without this gate a filter that read "running" just before
	// the end could fire an event after the checks, or after its
	// intr_event_destroy().
	std::atomic<bool> chain{true};
	std::atomic<int> chain_firing{0};
};

struct storm_event {
	storm_state *st = nullptr;
	int index = 0;
	intr_event *ie = nullptr;
	intr_handler *cookie = nullptr;
	// (a) bumped by a firer before each fire.
	std::atomic<uint64_t> seq{0};
	// Written by the filter only: filters of one event never run at
	// once (they run under the event's spin lock); atomics so that the
	// final check can read them from another thread.
	std::atomic<uint64_t> seen{0}; // the sequence number the last pass saw
	std::atomic<uint64_t> passes{0}, stray{0}, handled{0}, scheduled{0};
	rng filter_rng{0};             // the filter's choices
	// Work handed from the filter to the ithread.
	usmp::spin_mutex m{"stress intr work", nullptr};
	uint64_t work = 0;      // (m) units not yet consumed
	uint64_t consumed = 0;  // (m) units the ithread took
	std::atomic<uint64_t> ithread_calls{0};
	intr_event_stats base{}; // the event's counters before the storm
};

void
fire(storm_event &e)
{
	e.seq.fetch_add(1, std::memory_order_relaxed);
	if (intr_event_fire(e.ie) == 0)
		e.st->fires_ok.fetch_add(1, std::memory_order_relaxed);
	else
		e.st->ctx->fail("intr: intr_event_fire(\"%s\") failed",
		    intr_event_name(e.ie));
}

// A fire from a handler: only while the storm lasts (see storm_state).
void
chain_fire(storm_state &st, storm_event &e)
{
	st.chain_firing.fetch_add(1, std::memory_order_seq_cst);
	if (st.chain.load(std::memory_order_seq_cst))
		fire(e);
	st.chain_firing.fetch_sub(1, std::memory_order_seq_cst);
}

int
storm_filter(void *arg)
{
	auto &e = *static_cast<storm_event *>(arg);
	// Everything written before a fire that led to this pass is visible
	// here (protocol step 3 of interrupts/intr_event.cc).
	e.seen.store(e.seq.load(std::memory_order_relaxed),
	    std::memory_order_relaxed);
	e.passes.fetch_add(1, std::memory_order_relaxed);
	// Only one event answers "stray": each stray event logs its first
	// five strays (as FreeBSD does), and one is enough to count them.
	int res;
	switch (e.filter_rng.below(8)) {
	case 0:
		if (e.index != kStrayEvent) {
			res = FILTER_HANDLED;
			break;
		}
		res = FILTER_STRAY;
		e.stray.fetch_add(1, std::memory_order_relaxed);
		break;
	case 1:
	case 2:
		res = FILTER_HANDLED;
		break;
	case 3:
		res = FILTER_HANDLED | FILTER_SCHEDULE_THREAD;
		break;
	default:
		res = FILTER_SCHEDULE_THREAD;
		break;
	}
	if (e.index == kScreamEvent)
		res = FILTER_HANDLED | FILTER_SCHEDULE_THREAD;
	if (res & FILTER_HANDLED)
		e.handled.fetch_add(1, std::memory_order_relaxed);
	if (res & FILTER_SCHEDULE_THREAD) {
		e.scheduled.fetch_add(1, std::memory_order_relaxed);
		e.m.lock();
		e.work++;
		e.m.unlock();
	}
	// A chained interrupt: a filter may fire events, its own included.
	if (e.filter_rng.one_in(16)) {
		auto &evs = e.st->events;
		chain_fire(*e.st, *evs[e.filter_rng.below(uint32_t(evs.size()))]);
	}
	return res;
}

void
storm_ithread(void *arg)
{
	auto &e = *static_cast<storm_event *>(arg);
	e.ithread_calls.fetch_add(1, std::memory_order_relaxed);
	e.m.lock();
	e.consumed += e.work;
	e.work = 0;
	e.m.unlock();
	if (e.index == kScreamEvent)
		chain_fire(*e.st, e);
}

// The events are quiet when every fire was delivered and every scheduled
// unit of work consumed.  Filters and ithreads keep running after the
// firers stop; give them a few seconds.
bool
wait_quiet(storm_state &st)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
	for (;;) {
		bool quiet = true;
		for (auto &ep : st.events) {
			storm_event &e = *ep;
			e.m.lock();
			uint64_t work = e.work;
			e.m.unlock();
			intr_event_stats s;
			intr_event_get_stats(e.ie, &s);
			if (e.seen.load() != e.seq.load() || work != 0 ||
			    s.ies_ithread_runs - e.base.ies_ithread_runs !=
				e.ithread_calls.load())
				quiet = false;
		}
		if (quiet)
			return true;
		if (std::chrono::steady_clock::now() > deadline)
			return false;
		thread_sleep(std::chrono::milliseconds(1));
	}
}

void
check_event(context &ctx, storm_event &e)
{
	intr_event_stats s;
	intr_event_get_stats(e.ie, &s);
	const char *n = intr_event_name(e.ie);
	uint64_t seq = e.seq.load(), seen = e.seen.load();
	if (seen != seq)
		ctx.fail("intr: \"%s\" lost a fire: fired up to #%" PRIu64
		    ", the last filter pass saw #%" PRIu64, n, seq, seen);
	struct {
		const char *what;
		uint64_t stats, ours;
	} rows[] = {
		{"passes", s.ies_delivered - e.base.ies_delivered, e.passes.load()},
		{"stray", s.ies_stray - e.base.ies_stray, e.stray.load()},
		{"handled", s.ies_handled - e.base.ies_handled, e.handled.load()},
		{"scheduled", s.ies_scheduled - e.base.ies_scheduled,
		    e.scheduled.load()},
		{"ithread runs", s.ies_ithread_runs - e.base.ies_ithread_runs,
		    e.ithread_calls.load()},
	};
	for (auto &r : rows)
		if (r.stats != r.ours)
			ctx.fail("intr: \"%s\": %" PRIu64 " %s counted by the event, "
			    "%" PRIu64 " seen by the handler", n, r.stats, r.what,
			    r.ours);
	e.m.lock();
	uint64_t work = e.work, consumed = e.consumed;
	e.m.unlock();
	if (work != 0 || consumed != e.scheduled.load())
		ctx.fail("intr: \"%s\" lost an ithread run: %" PRIu64 " units "
		    "scheduled, %" PRIu64 " consumed, %" PRIu64 " left", n,
		    e.scheduled.load(), consumed, work);
	if (s.ies_delivered - e.base.ies_delivered >
	    s.ies_fires - e.base.ies_fires)
		ctx.fail("intr: \"%s\": more passes (%" PRIu64 ") than fires "
		    "(%" PRIu64 ")", n, s.ies_delivered - e.base.ies_delivered,
		    s.ies_fires - e.base.ies_fires);
}

void
run_storm(context &ctx)
{
	storm_state st;
	st.ctx = &ctx;
	int old_threshold = intr_storm_threshold();
	intr_storm_threshold_set(kStormThreshold);
	static const int kPri[] = {PI_NET, PI_DISK, PI_AV, PI_TTY};
	for (int i = 0; i < kEvents; i++) {
		auto e = std::make_unique<storm_event>();
		e->st = &st;
		e->index = i;
		e->filter_rng = ctx.make_rng(1000 + uint64_t(i));
		char name[32];
		std::snprintf(name, sizeof(name), "stress%d", i);
		if (intr_event_create(&e->ie, name) != 0 ||
		    intr_event_add_handler(e->ie, name, storm_filter,
			storm_ithread, e.get(), kPri[i % 4], INTR_MPSAFE,
			&e->cookie) != 0) {
			ctx.fail("intr: cannot create event \"%s\"", name);
			return;
		}
		// A third of the events are bound, spread over the CPUs.
		if (i % 3 == 0)
			intr_event_bind(e->ie, (i / 3) % ctx.ncpus());
		intr_event_get_stats(e->ie, &e->base);
		st.events.push_back(std::move(e));
	}

	// Foreign OS threads fire too: their events are delivered on the
	// event's home CPU (or its bound one), kicked from outside.
	std::vector<std::thread> foreign;
	for (int f = 0; f < kForeignFirers; f++)
		foreign.emplace_back([&st, &ctx, f] {
			rng r = ctx.make_rng(2000 + uint64_t(f));
			while (ctx.running()) {
				fire(*st.events[r.below(kEvents)]);
				if (r.one_in(64))
					std::this_thread::yield();
			}
		});
	run_workers(ctx, worker_count(ctx, 1), [&](int, rng &r) {
		uint64_t batch = 0;
		while (ctx.running()) {
			fire(*st.events[r.below(kEvents)]);
			if (r.one_in(8))
				thread_yield();
			if (++batch == kOpBatch) {
				ctx.add_ops(batch);
				batch = 0;
			}
		}
		ctx.add_ops(batch);
	});
	for (auto &t : foreign)
		t.join();
	// Stop the handlers' fires, and wait out those in progress.
	st.chain.store(false, std::memory_order_seq_cst);
	while (st.chain_firing.load(std::memory_order_seq_cst) != 0)
		thread_yield();

	if (!wait_quiet(st))
		ctx.fail("intr: the events did not go quiet within 10 s of the "
		    "last fire (a lost delivery or ithread run; details follow)");
	uint64_t fires = 0;
	for (auto &e : st.events) {
		check_event(ctx, *e);
		intr_event_stats s;
		intr_event_get_stats(e->ie, &s);
		fires += s.ies_fires - e->base.ies_fires;
	}
	if (fires != st.fires_ok.load())
		ctx.fail("intr: %" PRIu64 " fires returned 0, the events counted "
		    "%" PRIu64, st.fires_ok.load(), fires);
	// Every handler goes before any event: removal waits out its filter
	// pass in progress, so no filter runs once the loop is done.
	for (auto &e : st.events)
		intr_event_remove_handler(e->cookie);
	for (auto &e : st.events) {
		if (intr_event_destroy(e->ie) != 0)
			ctx.fail("intr: intr_event_destroy(\"%s\") failed",
			    intr_event_name(e->ie));
	}
	intr_storm_threshold_set(old_threshold);
}

} // namespace

USMP_STRESS_SCENARIO("intr",
    "interrupt storm: filters and ithreads fired from CPUs, OS threads and "
    "filters; no lost fire or ithread run, every pass counted",
    run_storm);

} // namespace usmp::stress

// Callout and taskqueue churn.
//
// `callout`: every worker owns a mutex and a few callouts initialised with
// it (callout_init_mtx), and keeps resetting them (random delay 0-3 ms,
// random CPU) and stopping them, always with the mutex held.  With the lock
// held, callout(9) promises exact answers, and the scenario checks them
// against its own book of which callouts are pending: callout_reset
// returns 1 exactly when a call was pending, callout_stop never says -1 for
// a pending call nor 1 for one that was not (0 while an earlier run is
// still finishing), and a handler
// runs (with the mutex held) only when one was.  At the end each callout is
// stopped and drained, and no handler runs after that.
//
// `taskqueue`: workers enqueue a few shared tasks on taskqueue_thread and
// on a private pool of three threads; enqueues of a task that is already
// queued coalesce, and the handler gets the number coalesced.  After
// draining, the pending counts handed to the handler add up to the number
// of enqueues: none is lost or counted twice.
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <memory>
#include <vector>

#include "apps/stress/stress.h"
#include "apps/stress/workers.h"
#include "interrupts/callout.h"
#include "interrupts/taskqueue.h"
#include "runtime/thread.h"
#include "sync/mutex.h"
#include "sync/sleep.h"

namespace usmp::stress {
namespace {

constexpr int kCallouts = 4;

struct co_owner {
	context *ctx;
	usmp::mutex m{"stress callout", "stress callout", LOCK_DUPOK};
	struct slot {
		callout c;
		co_owner *owner;
		bool pending = false; // protected by m: our book
		uint64_t fired = 0;   // protected by m
	} slots[kCallouts];
	bool drained = false;          // protected by m
};

void
co_handler(void *arg)
{
	auto *s = static_cast<co_owner::slot *>(arg);
	co_owner *o = s->owner;
	// The handler runs with o->m held (callout_init_mtx).
	if (o->drained)
		o->ctx->fail("callout: a handler ran after callout_drain");
	else if (!s->pending)
		o->ctx->fail("callout: a handler ran for a callout that was not "
		    "pending (stopped with the lock held?)");
	s->pending = false;
	s->fired++;
}

void
run_callout(context &ctx)
{
	int nworkers = worker_count(ctx, 1);
	std::vector<std::unique_ptr<co_owner>> owners;
	for (int i = 0; i < nworkers; i++) {
		auto o = std::make_unique<co_owner>();
		o->ctx = &ctx;
		for (auto &s : o->slots) {
			s.owner = o.get();
			callout_init_mtx(&s.c, o->m, 0);
		}
		owners.push_back(std::move(o));
	}
	int ncpus = ctx.ncpus();

	run_workers(ctx, nworkers, [&](int id, rng &r) {
		co_owner &o = *owners[id];
		uint64_t batch = 0;
		while (ctx.running()) {
			auto &s = o.slots[r.below(kCallouts)];
			o.m.lock();
			if (r.below(3) != 0) {
				int cpu = r.one_in(2) ? int(r.below(uint32_t(ncpus))) :
				    NOCPU;
				int was = callout_reset_on(&s.c,
				    std::chrono::microseconds(r.below(3000)),
				    co_handler, &s, cpu);
				if (was != (s.pending ? 1 : 0))
					ctx.fail("callout: callout_reset returned %d "
					    "but a call was %s", was,
					    s.pending ? "pending" : "not pending");
				s.pending = true;
			} else {
				// callout(9): 1 if it was pending and is
				// stopped; 0 if a run is still executing; -1
				// if it was neither.  With the lock held a run
				// whose handler returned (the softclock has not
				// yet let go of the callout) is not executing
				// any more (interrupts/callout.h).  So: never
				// -1 for a pending call, never 1 for one that
				// was not.
				int was = callout_stop(&s.c);
				if (s.pending ? was == -1 : was == 1)
					ctx.fail("callout: callout_stop returned %d "
					    "with the lock held, but a call was %s",
					    was, s.pending ? "pending" : "not pending");
				s.pending = false;
			}
			o.m.unlock();
			if (r.one_in(8))
				thread_sleep(std::chrono::microseconds(r.below(1500)));
			if (++batch == kOpBatch / 8) {
				ctx.add_ops(batch);
				batch = 0;
			}
		}
		ctx.add_ops(batch);
		// Stop (exact, under the lock), then drain (waits for a
		// handler that is running, without the lock).
		for (auto &s : o.slots) {
			o.m.lock();
			callout_stop(&s.c);
			s.pending = false;
			o.m.unlock();
			callout_drain(&s.c);
		}
		o.m.lock();
		o.drained = true;
		o.m.unlock();
	});
	// A handler that still ran now would fail the run (drained is set).
	thread_sleep(std::chrono::milliseconds(5));
}

// --- taskqueue --------------------------------------------------------------

constexpr int kTasks = 6;

struct tq_task {
	task t;
	std::atomic<uint64_t> enqueued{0};
	std::atomic<uint64_t> pending_sum{0};
	std::atomic<uint64_t> runs{0};
};

void
tq_handler(void *arg, int pending)
{
	auto *t = static_cast<tq_task *>(arg);
	t->pending_sum.fetch_add(uint64_t(pending), std::memory_order_relaxed);
	t->runs.fetch_add(1, std::memory_order_relaxed);
}

void
run_taskqueue(context &ctx)
{
	static taskqueue *pool;
	pool = taskqueue_create("stress pool", taskqueue_thread_enqueue, &pool);
	if (pool == nullptr || taskqueue_start_threads(&pool, 3, 0,
				   "stress pool") != 0) {
		ctx.fail("taskqueue: cannot create the pool");
		return;
	}
	// Tasks 0..2 go to taskqueue_thread, 3..5 to the pool.
	std::vector<std::unique_ptr<tq_task>> tasks;
	for (int i = 0; i < kTasks; i++) {
		auto t = std::make_unique<tq_task>();
		task_init(&t->t, i % 3, tq_handler, t.get());
		tasks.push_back(std::move(t));
	}
	auto queue_of = [&](int i) { return i < 3 ? taskqueue_thread : pool; };

	run_workers(ctx, worker_count(ctx, 1), [&](int id, rng &r) {
		uint64_t batch = 0;
		while (ctx.running()) {
			int i = int(r.below(kTasks));
			tq_task &t = *tasks[i];
			t.enqueued.fetch_add(1, std::memory_order_relaxed);
			int e = taskqueue_enqueue(queue_of(i), &t.t);
			if (e != 0)
				ctx.fail("taskqueue: enqueue returned %d", e);
			if (r.one_in(4))
				thread_yield();
			if (r.one_in(64))
				taskqueue_drain(queue_of(i), &t.t);
			if (++batch == kOpBatch) {
				ctx.add_ops(batch);
				batch = 0;
			}
		}
		ctx.add_ops(batch);
	});

	for (int i = 0; i < kTasks; i++) {
		tq_task &t = *tasks[i];
		taskqueue_drain(queue_of(i), &t.t);
		uint64_t want = t.enqueued.load(), got = t.pending_sum.load();
		if (got != want)
			ctx.fail("taskqueue: task %d enqueued %" PRIu64 " times, "
			    "handlers were told %" PRIu64 " (in %" PRIu64 " runs)",
			    i, want, got, t.runs.load());
	}
	taskqueue_free(pool);
}

} // namespace

USMP_STRESS_SCENARIO("callout",
    "callout reset/stop churn under callout_init_mtx: exact results, no "
    "handler after drain",
    run_callout);
USMP_STRESS_SCENARIO("taskqueue",
    "taskqueue enqueue churn (thread queue and a pool): coalesced counts add up",
    run_taskqueue);

} // namespace usmp::stress

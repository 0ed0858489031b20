// taskqueue(9): coalescing (the pending count reaches the handler),
// priority order, cancel (EBUSY while running), drain, drain_all, thread
// pools, timeout tasks, the fast queue from a filter, and the ready-made
// queues.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <vector>

#include "interrupts/intr_event.h"
#include "interrupts/taskqueue.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "support/machine.h"
#include "support/wait.h"
#include "sync/mutex.h"

using namespace std::chrono_literals;
using namespace usmp;
using test::wait_for;

namespace {

struct counter : test::gate {
	std::atomic<int> runs{0};
	std::atomic<int> pending_sum{0};
	std::atomic<int> last_pending{0};
};

void
count_fn(void *ctx, int pending)
{
	auto *c = static_cast<counter *>(ctx);
	c->pass(true);
	c->last_pending = pending;
	c->pending_sum += pending;
	c->runs++;
}

} // namespace

TEST_CASE("enqueues of a pending task coalesce; the handler gets the count",
    "[unit][taskqueue]")
{
	test::machine m(2);
	m.run([] {
		taskqueue *tq = taskqueue_create("coalesce", nullptr, nullptr);
		REQUIRE(tq != nullptr);
		counter c;
		task t;
		task_init(&t, 0, count_fn, &c);
		for (int i = 0; i < 5; i++)
			CHECK(taskqueue_enqueue(tq, &t) == 0);
		CHECK(t.ta_pending == 5);
		taskqueue_run(tq); // nobody serves this queue: run it here
		CHECK(c.runs == 1);
		CHECK(c.last_pending == 5);
		CHECK(t.ta_pending == 0);
		taskqueue_free(tq);
	});
}

TEST_CASE("tasks run by priority, FIFO within a priority", "[unit][taskqueue]")
{
	test::machine m(1);
	m.run([] {
		taskqueue *tq = taskqueue_create("prio", nullptr, nullptr);
		static std::vector<int> order;
		order.clear();
		struct item {
			task t;
			int id;
		} items[5];
		int pris[5] = {0, 5, 0, 9, 5};
		for (int i = 0; i < 5; i++) {
			items[i].id = i;
			task_init(&items[i].t, pris[i], [](void *ctx, int) {
				order.push_back(static_cast<item *>(ctx)->id);
			}, &items[i]);
			taskqueue_enqueue(tq, &items[i].t);
		}
		taskqueue_run(tq);
		CHECK(order == std::vector<int>{3, 1, 4, 0, 2});
		taskqueue_free(tq);
	});
}

TEST_CASE("a taskqueue thread runs tasks; cancel returns EBUSY while running "
	  "and the pending count; drain waits", "[unit][taskqueue]")
{
	test::machine m(2);
	m.run([] {
		// One thread: with more, as in FreeBSD, another thread of the
		// pool may dequeue and run the task re-enqueued while it runs,
		// and the pending count the cancel sees would depend on timing.
		test::thread_taskqueue q("pool", 1);
		taskqueue *tq = q.tq;
		counter c;
		c.close();
		task t;
		task_init(&t, 0, count_fn, &c);
		taskqueue_enqueue(tq, &t);
		REQUIRE(wait_for([&] { return c.entered.load(); }));
		// Running, and enqueued again twice meanwhile.
		taskqueue_enqueue(tq, &t);
		taskqueue_enqueue(tq, &t);
		unsigned pend = 99;
		CHECK(taskqueue_cancel(tq, &t, &pend) == EBUSY);
		CHECK(pend == 2);
		CHECK(t.ta_pending == 0);
		// Not running, not queued: 0 and 0.
		c.open();
		taskqueue_drain(tq, &t);
		CHECK(c.runs == 1);
		CHECK(taskqueue_cancel(tq, &t, &pend) == 0);
		CHECK(pend == 0);
		// Enqueued, not yet run: cancel takes it off.
		c.close();
		taskqueue_enqueue(tq, &t);
		REQUIRE(wait_for([&] { return c.entered.load(); }));
		taskqueue_enqueue(tq, &t);
		c.open();
		taskqueue_drain(tq, &t); // waits for the re-run too
		CHECK(c.runs == 3);
		CHECK(c.last_pending == 1);
	});
}

TEST_CASE("taskqueue_drain_all waits for what was queued and running",
    "[unit][taskqueue]")
{
	test::machine m(2);
	m.run([] {
		test::thread_taskqueue q("drainall", 2);
		taskqueue *tq = q.tq;
		constexpr int N = 20;
		counter cs[N];
		task ts[N];
		for (int i = 0; i < N; i++) {
			task_init(&ts[i], i % 3, count_fn, &cs[i]);
			taskqueue_enqueue(tq, &ts[i]);
		}
		taskqueue_drain_all(tq);
		for (int i = 0; i < N; i++)
			CHECK(cs[i].runs == 1);
		taskqueue_drain_all(tq); // an empty queue returns at once
	});
}

TEST_CASE("timeout tasks: enqueue after a delay, cancel, drain",
    "[unit][taskqueue]")
{
	test::machine m(2);
	m.run([] {
		test::thread_taskqueue q("timeouts", 1);
		taskqueue *tq = q.tq;
		counter c;
		timeout_task tt;
		timeout_task_init(tq, &tt, 0, count_fn, &c);
		uint64_t t0 = clock_ns();
		CHECK(taskqueue_enqueue_timeout(tq, &tt, 5ms) == 0);
		CHECK(taskqueue_enqueue_timeout(tq, &tt, 5ms) == 1); // re-armed
		REQUIRE(wait_for([&] { return c.runs == 1; }));
		CHECK(clock_ns() - t0 >= 5000000);
		// Cancel while armed: the callout counts in the pending result.
		CHECK(taskqueue_enqueue_timeout(tq, &tt, 10s) == 0);
		unsigned pend = 0;
		CHECK(taskqueue_cancel_timeout(tq, &tt, &pend) == 0);
		CHECK(pend == 1);
		// Negative: not pushed back when already armed.
		CHECK(taskqueue_enqueue_timeout(tq, &tt, 2ms) == 0);
		CHECK(taskqueue_enqueue_timeout(tq, &tt, -10s) == 1);
		REQUIRE(wait_for([&] { return c.runs == 2; }));
		// Zero: at once.
		CHECK(taskqueue_enqueue_timeout(tq, &tt, 0ns) == 0);
		taskqueue_drain_timeout(tq, &tt);
		CHECK(c.runs == 3);
	});
}

TEST_CASE("taskqueue_block: enqueue only queues, a running task finishes; "
    "unblock runs what waits", "[unit][taskqueue]")
{
	test::machine m(2);
	m.run([] {
		test::thread_taskqueue q("blocked", 1);
		taskqueue *tq = q.tq;
		counter running, waiting;
		running.close();
		task tr, tw;
		task_init(&tr, 0, count_fn, &running);
		task_init(&tw, 0, count_fn, &waiting);
		taskqueue_enqueue(tq, &tr);
		REQUIRE(wait_for([&] { return running.entered.load(); }));
		taskqueue_block(tq);
		CHECK(taskqueue_enqueue(tq, &tw) == 0);
		CHECK(taskqueue_enqueue(tq, &tw) == 0); // coalesces while blocked
		running.open();
		REQUIRE(wait_for([&] { return running.runs == 1; }));
		// The runner finished its task but starts no other.
		thread_sleep(20ms);
		CHECK(waiting.runs == 0);
		CHECK(tw.ta_pending == 2);
		taskqueue_unblock(tq);
		taskqueue_drain(tq, &tw);
		CHECK(waiting.runs == 1);
		CHECK(waiting.last_pending == 2);
	});
}

TEST_CASE("taskqueue_quiesce waits for queued, running and newly enqueued tasks",
    "[unit][taskqueue]")
{
	test::machine m(2);
	m.run([] {
		test::thread_taskqueue q("quiesce", 2);
		static taskqueue *tq; // for the captureless handler below
		tq = q.tq;
		static counter second;
		static task t2;
		task_init(&t2, 0, count_fn, &second);
		counter first;
		first.close();
		task t1;
		// t1 enqueues t2 when it is done: quiesce must wait for both.
		task_init(&t1, 0, [](void *ctx, int pending) {
			count_fn(ctx, pending);
			taskqueue_enqueue(tq, &t2);
		}, &first);
		taskqueue_enqueue(tq, &t1);
		REQUIRE(wait_for([&] { return first.entered.load(); }));
		thread *rel;
		REQUIRE(thread_create(&rel, {}, [&] {
			thread_sleep(10ms);
			first.open();
		}) == 0);
		taskqueue_quiesce(tq);
		CHECK(first.runs == 1);
		CHECK(second.runs == 1);
		REQUIRE(thread_join(rel) == 0);
		taskqueue_quiesce(tq); // idle: returns at once
	});
}

namespace {
task g_fast_task;
counter g_fast_counter;
int
enqueue_filter(void *)
{
	taskqueue_enqueue(taskqueue_fast, &g_fast_task);
	return FILTER_HANDLED;
}
} // namespace

TEST_CASE("the ready-made queues run tasks; the fast one from a filter",
    "[unit][taskqueue]")
{
	test::machine m(2);
	m.run([] {
		REQUIRE(taskqueue_thread != nullptr);
		REQUIRE(taskqueue_swi != nullptr);
		REQUIRE(taskqueue_fast != nullptr);
		counter a, b;
		task ta, tb;
		task_init(&ta, 0, count_fn, &a);
		task_init(&tb, 0, count_fn, &b);
		taskqueue_enqueue(taskqueue_thread, &ta);
		taskqueue_enqueue(taskqueue_swi, &tb);
		REQUIRE(wait_for([&] { return a.runs == 1 && b.runs == 1; }));
		taskqueue_drain(taskqueue_thread, &ta);
		taskqueue_drain(taskqueue_swi, &tb);

		task_init(&g_fast_task, 0, [](void *ctx, int p) {
			static_cast<counter *>(ctx)->runs++;
		}, &g_fast_counter);
		intr_event *ie;
		REQUIRE(intr_event_create(&ie, "fastq src") == 0);
		intr_handler *h;
		REQUIRE(intr_event_add_handler(ie, "fastq", enqueue_filter, nullptr,
		    nullptr, PI_NET, INTR_MPSAFE, &h) == 0);
		intr_event_fire(ie);
		REQUIRE(wait_for([&] { return g_fast_counter.runs >= 1; }));
		taskqueue_drain(taskqueue_fast, &g_fast_task);
		REQUIRE(intr_event_remove_handler(h) == 0);
		CHECK(intr_event_destroy(ie) == 0);
	});
}

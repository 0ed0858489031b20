// The counter tree (runtime/counters.h): counter_u64 sums, the scheduler's
// kern.sched.* nodes (switches, wakeups, preemptions) and the turnstile
// count moving with what the test makes happen, per-CPU expansion, lookup by
// name, text and JSON dumps (the JSON parsed), values kept after shutdown.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "runtime/counters.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sched/priority.h"
#include "sched/sched.h"
#include "support/death.h"
#include "support/json.h"
#include "support/machine.h"
#include "support/observe.h"
#include "sync/mutex.h"

using namespace usmp;

namespace {

uint64_t
read(const char *name)
{
	uint64_t v = ~0ull;
	INFO(name);
	REQUIRE(counter_read(name, &v));
	return v;
}

std::string
dump(const char *prefix, counter_format fmt)
{
	return test::capture([&](std::FILE *f) { counters_dump(f, prefix, fmt); });
}

} // namespace

TEST_CASE("counter_u64 sums the adds of every CPU and of foreign threads", "[unit]")
{
	counter_u64 c("test.counters.adds", "adds from the test");
	test::machine m(4);
	m.run([&] {
		std::vector<green_thread> v;
		for (int i = 0; i < 8; i++)
			v.emplace_back([&] {
				for (int k = 0; k < 1000; k++) {
					c.add();
					if (k % 100 == 0)
						thread_yield();
				}
			});
		for (auto &t : v)
			t.join();
	});
	std::thread([&] { c.add(5); }).join(); // a foreign OS thread
	CHECK(c.fetch() == 8 * 1000 + 5);
	CHECK(read("test.counters.adds") == 8005);
	c.zero();
	CHECK(c.fetch() == 0);
}

TEST_CASE("kern.sched counters move with switches, and per-CPU nodes exist", "[unit]")
{
	test::machine m(2);
	m.run([&] {
		uint64_t sw0 = read("kern.sched.switches");
		CHECK(read("hw.ncpu") == 2);
		// A ping-pong of two threads bound to CPU 1: every yield switches.
		// Both start before either counts its yields: a thread that
		// ran its 100 before the other was queued on CPU 1 would have
		// nothing to switch to (a yield alone is not a switch).
		thread_attr a;
		a.cpu = 1;
		std::atomic<int> started{0};
		std::vector<green_thread> v;
		for (int i = 0; i < 2; i++)
			v.emplace_back(a, [&started] {
				started++;
				while (started.load() < 2)
					thread_yield();
				for (int k = 0; k < 100; k++)
					thread_yield();
			});
		for (auto &t : v)
			t.join();
		uint64_t sw1 = read("kern.sched.switches");
		// A join that sleeps is ended by a wakeup.
		uint64_t wk0 = read("kern.sched.wakeups");
		thread *me = curthread();
		green_thread waiter([me] {
			// Exit only once the joiner sleeps in thread_join().
			while (__atomic_load_n(&me->td_state, __ATOMIC_RELAXED) !=
			    TDS_INHIBITED)
				thread_yield();
		});
		waiter.join();
		CHECK(read("kern.sched.wakeups") >= wk0 + 1);
		CHECK(sw1 >= sw0 + 200);
		CHECK(read("kern.sched.cpu.1.switches") >= 200);
		CHECK(read("kern.sched.cpu.0.switches") + read("kern.sched.cpu.1.switches") ==
		    read("kern.sched.switches"));
		// This thread is running: the load counts it.
		CHECK(read("kern.sched.load") >= 1);
		CHECK(read("kern.threads.live") >= 1);
		uint64_t v2;
		CHECK_FALSE(counter_read("kern.sched.cpu.2.load", &v2));
		CHECK_FALSE(counter_read("kern.sched.cpu.*.load", &v2));
		CHECK_FALSE(counter_read("kern.sched.nonesuch", &v2));
	});
}

TEST_CASE("lock contention and preemption counters move; the JSON dump parses", "[unit]")
{
	test::machine m(2);
	m.run([&] {
		// A thread that blocks on a held mutex waits on a turnstile.
		uint64_t ts0 = read("kern.lock.turnstile_waits");
		mutex mtx("counters contended");
		mtx.lock();
		green_thread w([&] {
			mtx.lock();
			mtx.unlock();
		});
		test::wait_blocked_on_lock(w.native_handle());
		CHECK(read("kern.lock.turnstile_waits") >= ts0 + 1);
		mtx.unlock();
		w.join();

		// A realtime thread made runnable on a CPU that runs a
		// timeshare thread preempts it at once (an involuntary switch).
		uint64_t pre0 = read("kern.sched.preemptions");
		uint64_t pre1_0 = read("kern.sched.cpu.1.preemptions");
		green_thread ts(thread_attr{.name = "timeshare", .cpu = 1}, [] {
			green_thread rt(thread_attr{.name = "realtime",
					    .priority = PRI_MIN_REALTIME, .cpu = 1},
			    [] {});
			rt.join();
		});
		ts.join();
		CHECK(read("kern.sched.preemptions") >= pre0 + 1);
		CHECK(read("kern.sched.cpu.1.preemptions") >= pre1_0 + 1);

		// The whole tree as JSON: one object, a number per node, and
		// the same nodes as the text dump.
		std::string j = dump("", counter_format::json);
		test::json doc;
		std::string err;
		INFO(j);
		REQUIRE(test::json_parse(j, doc, &err));
		INFO(err);
		REQUIRE(doc.is_object());
		std::vector<counter_value> snap = counters_snapshot();
		CHECK(doc.members.size() == snap.size());
		for (const auto &[name, v] : doc.members) {
			INFO(name);
			CHECK(v.is_number());
		}
		for (const char *n : {"kern.sched.switches", "kern.sched.steals",
			 "kern.sched.preemptions", "kern.sched.cpu.0.load",
			 "kern.sched.cpu.1.switches", "kern.lock.turnstile_waits",
			 "kern.sched.wakeups", "hw.ncpu"}) {
			INFO(n);
			CHECK(doc.has(n));
		}
		CHECK(doc["hw.ncpu"].num == 2);
	});
}

TEST_CASE("procedure values are kept after machine_shutdown()", "[unit]")
{
	uint64_t during = 0;
	{
		test::machine m(2);
		m.run([&] {
			for (int k = 0; k < 50; k++)
				thread_yield();
			during = read("kern.sched.switches");
		});
	}
	// The machine is gone; its counts stay readable.
	uint64_t after = read("kern.sched.switches");
	CHECK(after >= during);
	CHECK(read("hw.ncpu") == 2);
	CHECK(read("kern.sched.cpu.1.switches") <= after);
	uint64_t v;
	CHECK_FALSE(counter_read("kern.sched.cpu.2.switches", &v));
}

TEST_CASE("counters_dump() writes text and JSON, filtered by prefix", "[unit]")
{
	counter_u64 a("test.dump.a");
	counter_u64 b("test.dump.b");
	a.add(3);
	b.add(40);
	static int seven = 7;
	CHECK(counter_register_proc("test.dump.c", "a procedure",
	    [](void *arg) -> uint64_t { return *static_cast<int *>(arg); },
	    &seven) == 0);
	CHECK(counter_register_proc("test.dump.c", "", [](void *) -> uint64_t { return 0; }) ==
	    EEXIST);
	CHECK(counter_register_proc("test..bad", "", [](void *) -> uint64_t { return 0; }) ==
	    EINVAL);
	CHECK(counter_register_cpu_proc("test.nostar", "",
	    [](int, void *) -> uint64_t { return 0; }) == EINVAL);
	CHECK(dump("test.dump.", counter_format::text) ==
	    "test.dump.a: 3\ntest.dump.b: 40\ntest.dump.c: 7\n");
	CHECK(dump("test.dump.", counter_format::json) ==
	    "{\"test.dump.a\": 3, \"test.dump.b\": 40, \"test.dump.c\": 7}\n");
	counter_unregister("test.dump.c");
	CHECK(dump("test.dump.c", counter_format::text).empty());
	// Per-CPU nodes sort by CPU number, not as strings.
	test::machine m(12);
	std::string t = dump("kern.sched.cpu.", counter_format::text);
	CHECK(t.find("kern.sched.cpu.2.load") < t.find("kern.sched.cpu.10.load"));
}

TEST_CASE("a counter name registered twice panics", "[unit][death]")
{
	auto r = test::run_death("duplicate counter", [] {
		counter_u64 a("test.dup");
		counter_u64 b("test.dup");
	});
	USMP_REQUIRE_DEATH(r, "counter \"test.dup\" registered twice");
	auto r2 = test::run_death("bad counter name", [] { counter_u64 a("test.Bad name"); });
	USMP_REQUIRE_DEATH(r2, "bad counter name \"test.Bad name\"");
}

// sema(9): post/wait/trywait/timedwait/value, no unit lost between many
// producers and consumers, a timed wait racing a post, the std shapes
// (counting_semaphore, Lockable), foreign OS threads, and the misuse
// reports (destroy with waiters, use after destroy, negative value).
#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "support/death.h"
#include "support/machine.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sync/sema.h"
#include "sync/sleep.h"

using namespace std::chrono_literals;
using namespace usmp;

TEST_CASE("sema: trywait, post, value, timedwait", "[unit][sema]")
{
	test::machine m(1);
	m.run([] {
		sema s(2, "basic");
		CHECK(std::string(s.description()) == "basic");
		CHECK(s.value() == 2);
		CHECK(s.trywait());
		CHECK(s.trywait());
		CHECK(!s.trywait());
		CHECK(s.value() == 0);
		CHECK(s.timedwait(0ns) == EWOULDBLOCK); // a poll
		CHECK(s.timedwait(1ms) == EWOULDBLOCK);
		s.post();
		CHECK(s.value() == 1);
		CHECK(s.timedwait(1s) == 0);
		CHECK(s.value() == 0);
		s.post();
		s.wait();
		CHECK(s.value() == 0);
		CHECK(s.waiters() == 0);
	});
}

TEST_CASE("sema: a waiter sleeps until a post", "[unit][sema]")
{
	test::machine m(2);
	m.run([] {
		sema s(0, "gate");
		std::atomic<bool> through{false};
		green_thread t([&] {
			s.wait();
			through = true;
		});
		while (s.waiters() == 0)
			pause("settle", 1ms);
		// Counted as a waiter, so it is asleep or about to be: without
		// a post it cannot pass.
		CHECK(!through.load());
		s.post();
		t.join();
		CHECK(through.load());
		CHECK(s.value() == 0);
		CHECK(s.waiters() == 0);
	});
}

TEST_CASE("sema: producers and consumers over 1/2/4 CPUs, no unit lost",
    "[unit][sema]")
{
	for (int ncpus : {1, 2, 4}) {
		INFO("ncpus " << ncpus);
		test::machine m(ncpus, true);
		m.run([] {
			constexpr int P = 4, C = 4, N = 5000;
			sema s(0, "items");
			std::atomic<long> consumed{0};
			std::vector<green_thread> ts;
			for (int i = 0; i < C; i++)
				ts.emplace_back([&] {
					for (int k = 0; k < N; k++) {
						// Mix the three ways of taking one.
						if (k % 3 == 0)
							s.wait();
						else if (k % 3 == 1)
							REQUIRE(s.timedwait(60s) == 0);
						else
							while (!s.trywait())
								thread_yield();
						consumed++;
					}
				});
			for (int i = 0; i < P; i++)
				ts.emplace_back([&] {
					for (int k = 0; k < N; k++)
						s.post();
				});
			for (auto &t : ts)
				t.join();
			CHECK(consumed.load() == long{C} * N);
			CHECK(s.value() == 0);
			CHECK(s.waiters() == 0);
		});
	}
}

TEST_CASE("sema: a timed wait racing a post takes the unit or leaves it",
    "[unit][sema]")
{
	test::machine m(2);
	m.run([] {
		int took = 0, timed = 0;
		for (int i = 0; i < 2000; i++) {
			sema s(0, "race");
			green_thread t([&] {
				if (i & 1)
					thread_yield();
				s.post();
			});
			int r = s.timedwait(std::chrono::microseconds(i % 50));
			REQUIRE((r == 0 || r == EWOULDBLOCK));
			t.join();
			// Exactly one unit was posted: taken, or still there.
			REQUIRE(s.value() == (r == 0 ? 0 : 1));
			(r == 0 ? took : timed)++;
		}
		CHECK(took + timed == 2000);
	});
}

TEST_CASE("sema: std::counting_semaphore shape and Lockable", "[unit][sema]")
{
	test::machine m(2, true);
	m.run([] {
		sema s(1, "binary");
		s.acquire();
		CHECK(!s.try_acquire());
		CHECK(!s.try_acquire_for(1ms));
		s.release();
		CHECK(s.try_acquire_for(1s));
		s.release();

		// A binary semaphore as a lock for std::scoped_lock.
		long counter = 0;
		std::vector<green_thread> ts;
		for (int i = 0; i < 8; i++)
			ts.emplace_back([&] {
				for (int k = 0; k < 2000; k++) {
					std::scoped_lock g(s);
					counter++;
				}
			});
		for (auto &t : ts)
			t.join();
		CHECK(counter == 16000);
		CHECK(s.value() == 1);
		{
			std::unique_lock g(s, std::try_to_lock);
			CHECK(g.owns_lock());
			CHECK(s.value() == 0);
		}
		CHECK(s.value() == 1);
	});
}

TEST_CASE("sema: foreign OS threads wait and post", "[unit][sema]")
{
	test::machine m(2);
	sema to_os(0, "to os"), to_green(0, "to green");
	constexpr int N = 2000;
	std::thread os([&] {
		for (int i = 0; i < N; i++) {
			to_os.wait();
			to_green.post();
		}
		CHECK(to_os.timedwait(1ms) == EWOULDBLOCK);
	});
	m.run([&] {
		for (int i = 0; i < N; i++) {
			to_os.post();
			to_green.wait();
		}
	});
	os.join();
	CHECK(to_os.value() == 0);
	CHECK(to_green.value() == 0);
}

TEST_CASE("sema_destroy with a waiter panics", "[death][sema]")
{
	auto r = test::run_death("sema destroy with waiters", [] {
		usmp::run({.ncpus = 2}, [] {
			sema s(0, "doomed");
			green_thread t([&] { s.wait(); });
			while (s.waiters() == 0)
				pause("settle", 1ms);
			s.destroy();
		});
	});
	USMP_REQUIRE_DEATH(r, "sema_destroy(): sema \"doomed\"");
	CHECK(r.contains("with 1 waiters"));
	CHECK(r.contains("sema_unit.cc"));
}

TEST_CASE("sema: use after destroy and a negative value panic",
    "[death][sema]")
{
	auto r = test::run_death("sema post after destroy", [] {
		usmp::run({.ncpus = 1}, [] {
			sema s(0, "gone");
			s.destroy();
			s.post();
		});
	});
	USMP_REQUIRE_DEATH(r, "sema_post() of destroyed sema \"gone\"");
	CHECK(r.contains("sema_unit.cc"));

	auto w = test::run_death("sema wait after destroy", [] {
		usmp::run({.ncpus = 1}, [] {
			sema s(1, "gone too");
			s.destroy();
			s.wait();
		});
	});
	USMP_REQUIRE_DEATH(w, "sema_wait() of destroyed sema \"gone too\"");

	auto n = test::run_death("sema negative", [] {
		usmp::run({.ncpus = 1}, [] { sema s(-1, "negative"); });
	});
	USMP_REQUIRE_DEATH(n, "sema_init(): negative value -1 for sema "
			      "\"negative\"");
}

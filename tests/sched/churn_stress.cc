// Stress: threads created, joined, detached, yielding, sleeping, binding and
// pinning at random, over 1, 2, 4 and 8 CPUs on 2 cores, with and without
// full preemption.  Checks that no thread is lost or run twice, that pinned
// threads never move and that bound threads stay bound.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <random>
#include <vector>

#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sched/sched.h"
#include "support/machine.h"
#include "support/seed.h"

using namespace usmp;
using namespace std::chrono_literals;

namespace {

struct tally {
	std::atomic<long> created{0}; // counted before the thread exists
	std::atomic<long> started{0};
	std::atomic<long> finished{0};
	std::atomic<long> pin_moves{0};
	std::atomic<long> bind_moves{0};
};

// One worker: a random walk of operations, spawning children.
void
worker(uint64_t seed, int depth, tally &t)
{
	t.started++;
	std::mt19937_64 rng(seed);
	int ncpus = mp_ncpus();
	std::vector<thread *> kids;
	for (int step = 0; step < 40; step++) {
		switch (rng() % 8) {
		case 0:
		case 1:
			thread_yield();
			break;
		case 2:
			if (depth < 3) {
				thread *td;
				uint64_t s = rng();
				bool detach = rng() % 4 == 0;
				thread_attr a;
				a.detached = detach;
				if (rng() % 5 == 0)
					a.cpu = static_cast<int>(rng() % ncpus);
				t.created++;
				if (thread_create(&td, a, [s, depth, &t] {
					    worker(s, depth + 1, t);
				    }) != 0)
					t.created--;
				else if (!detach)
					kids.push_back(td);
			}
			break;
		case 3: {
			sched_pin();
			int c = curcpu();
			for (int i = 0; i < 3; i++) {
				thread_yield();
				if (curcpu() != c)
					t.pin_moves++;
			}
			sched_unpin();
			break;
		}
		case 4: {
			int c = static_cast<int>(rng() % ncpus);
			sched_bind(c);
			thread_yield();
			if (curcpu() != c)
				t.bind_moves++;
			sched_unbind();
			break;
		}
		case 5:
			thread_sleep(std::chrono::microseconds(rng() % 300));
			break;
		case 6:
			if (!kids.empty()) {
				thread_join(kids.back());
				kids.pop_back();
			}
			break;
		default:
			for (int i = 0; i < 2000; i++)
				asm volatile("" ::: "memory"); // CPU work, kept
			break;
		}
	}
	for (thread *td : kids)
		thread_join(td);
	t.finished++;
}

} // namespace

TEST_CASE("random thread churn keeps every thread and every pin", "[stress]")
{
	USMP_TEST_SEED(seed);
	for (bool full : {false, true}) {
		for (int ncpus : {1, 2, 4, 8}) {
			INFO("ncpus " << ncpus << " full_preemption " << full);
			tally t;
			{
				test::machine m(ncpus, full);
				m.run([&] {
					std::vector<thread *> roots;
					for (int i = 0; i < 16; i++) {
						thread *td;
						uint64_t s = test::derive_seed(seed,
						    ncpus * 100 + i + (full ? 50 : 0));
						t.created++;
						REQUIRE(thread_create(&td, {}, [s, &t] {
							worker(s, 0, t);
						}) == 0);
						roots.push_back(td);
					}
					for (thread *td : roots)
						thread_join(td);
					// Detached stragglers, including ones created
					// but not started yet.
					auto deadline = std::chrono::steady_clock::now() + 30s;
					while (t.finished.load() < t.created.load() &&
					    std::chrono::steady_clock::now() < deadline)
						thread_sleep(1ms);
					thread_sleep(2ms);
				});
			}
			CHECK(t.started.load() > 16);
			CHECK(t.started.load() == t.created.load());
			CHECK(t.finished.load() == t.started.load());
			CHECK(t.pin_moves.load() == 0);
			CHECK(t.bind_moves.load() == 0);
		}
	}
}

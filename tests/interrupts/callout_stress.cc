// callout(9) under concurrent resets, stops and drains from several threads,
// over CPU counts 1, 2, 4 and 8, with randomized delays and target CPUs.
//
// With a mutex-associated callout, every reset and stop made with the mutex
// held has an exact result: reset returns 1 iff it replaced a scheduled
// call, stop returns 1 iff it removed one (including one waiting for the
// mutex), and the handler runs with the mutex held.  So, counted under the
// mutex: runs == resets that returned 0 - stops that returned 1 - the final
// drain's 1.  An MPSAFE callout is checked for the drain guarantee: no run
// starts after callout_drain() returned.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <random>
#include <vector>

#include "interrupts/callout.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "support/machine.h"
#include "support/seed.h"
#include "sync/mutex.h"

using namespace std::chrono_literals;
using namespace usmp;

namespace {

struct slot {
	mutex mtx{"stress softc", nullptr, LOCK_DUPOK};
	callout c;
	long armed = 0;  // (mtx) calls scheduled and not cancelled
	long runs = 0;   // (mtx) handler runs
	bool in_handler = false;
};

void
handler(void *arg)
{
	auto *s = static_cast<slot *>(arg);
	s->mtx.assert_owned();
	s->runs++;
}

struct free_slot {
	callout c;
	std::atomic<long> runs{0};
	std::atomic<bool> drained{false};
	std::atomic<long> late{0};
};

void
free_handler(void *arg)
{
	auto *s = static_cast<free_slot *>(arg);
	if (s->drained.load())
		s->late++;
	s->runs++;
}

void
run_once(int ncpus, uint64_t seed, int iters)
{
	test::machine m(ncpus);
	m.run([&] {
		constexpr int NSLOTS = 6, NTHREADS = 4;
		static slot slots[NSLOTS];
		static free_slot frees[NSLOTS];
		for (auto &s : slots) {
			callout_init_mtx(&s.c, s.mtx, 0);
			s.armed = s.runs = 0;
		}
		for (auto &f : frees) {
			callout_init(&f.c, true);
			f.runs = 0;
			f.drained = false;
			f.late = 0;
		}
		std::vector<green_thread> ts;
		for (int t = 0; t < NTHREADS; t++) {
			ts.emplace_back([&, t] {
				std::mt19937_64 rng(test::derive_seed(seed, t));
				for (int i = 0; i < iters; i++) {
					slot &s = slots[rng() % NSLOTS];
					int cpu = static_cast<int>(rng() % (ncpus + 1)) - 1;
					auto d = std::chrono::microseconds(rng() % 3000);
					s.mtx.lock();
					if (rng() % 3 != 0) {
						if (callout_reset_on(&s.c, d, handler, &s, cpu) == 0)
							s.armed++;
					} else {
						if (callout_stop(&s.c) == 1)
							s.armed--;
					}
					s.mtx.unlock();
					free_slot &f = frees[rng() % NSLOTS];
					if (!f.drained.load())
						callout_reset_on(&f.c, d, free_handler, &f, cpu);
					if (rng() % 64 == 0)
						thread_sleep(std::chrono::microseconds(rng() % 2000));
				}
			});
		}
		for (auto &t : ts)
			t.join();
		for (auto &s : slots) {
			// Drain: a pending call is cancelled (1), a running one
			// finishes (0): either way nothing is left.
			int r = callout_drain(&s.c);
			s.mtx.lock();
			if (r == 1)
				s.armed--;
			INFO("ncpus " << ncpus << " armed " << s.armed << " runs " << s.runs);
			CHECK(s.armed == s.runs);
			CHECK(!callout_pending(&s.c));
			s.mtx.unlock();
		}
		for (auto &f : frees) {
			// Nobody resets any more: after the drain, no run starts.
			callout_drain(&f.c);
			f.drained = true;
		}
		thread_sleep(4ms);
		for (auto &f : frees) {
			CHECK(f.late == 0);
			CHECK(!callout_pending(&f.c));
		}
		for (int c = 0; c < ncpus; c++)
			CHECK(callout_pending_count(c) == 0);
	});
}

} // namespace

TEST_CASE("callout reset/stop/drain races keep exact counts", "[stress][callout]")
{
	USMP_TEST_SEED(seed);
	for (int ncpus : {1, 2, 4, 8})
		run_once(ncpus, test::derive_seed(seed, ncpus), 400);
}

TEST_CASE("callout races, long", "[.soak][callout]")
{
	USMP_TEST_SEED(seed);
	for (int round = 0; round < 20; round++)
		for (int ncpus : {1, 2, 4, 8})
			run_once(ncpus, test::derive_seed(seed, round * 16 + ncpus), 5000);
}

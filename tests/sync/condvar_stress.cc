// Stress of condvar(9) and sleep(9) over 1, 2, 4 and 8 CPUs with full
// preemption, seeded:
//  - condvar ping-pong with a usmp::mutex interlock: 1,000,000 round trips
//    per CPU count in the soak run, 25,000 in the default run; a lost
//    wakeup hangs the pair (the ctest timeout reports it, with the seed
//    printed when it was chosen);
//  - tokens handed from producers to consumers that msleep (or cv-wait)
//    on a usmp::mutex interlock with random timeouts, random PCATCH and an
//    interrupter thread: every result is 0, EWOULDBLOCK or EINTR, the
//    interlock is held again on return, and no token is lost or doubled.
#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <random>
#include <vector>

#include "support/machine.h"
#include "support/seed.h"
#include "runtime/thread.h"
#include "sync/condvar.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sync/sleepqueue.h"

using namespace std::chrono_literals;
using namespace usmp;

namespace {

// Two green threads alternate n round trips through one condvar, under a
// usmp::mutex.  With the seed's stream each side sometimes yields inside
// the critical section (so the other contends on the mutex) and sometimes
// waits with cv_timedwait (a timeout must not lose the turn either).
void
pingpong(long n, std::uint64_t seed)
{
	mutex mx("pingpong");
	condvar cv("pingpong");
	int turn = 0; // (mx)
	long back = 0, forth = 0;
	auto wait_for = [&](std::mt19937_64 &rng, int want) {
		while (turn != want) {
			if ((rng() & 15) == 0)
				(void)cv.timedwait(mx,
				    std::chrono::microseconds(1 + rng() % 200));
			else
				cv.wait(mx);
			REQUIRE(mx.owned());
		}
	};
	green_thread t([&] {
		std::mt19937_64 rng(test::derive_seed(seed, 1));
		mx.lock();
		for (long i = 0; i < n; i++) {
			wait_for(rng, 1);
			turn = 0;
			back++;
			cv.signal();
			if ((rng() & 63) == 0) {
				mx.unlock();
				thread_yield();
				mx.lock();
			}
		}
		mx.unlock();
	});
	std::mt19937_64 rng(test::derive_seed(seed, 2));
	mx.lock();
	for (long i = 0; i < n; i++) {
		turn = 1;
		forth++;
		cv.signal();
		wait_for(rng, 0);
	}
	mx.unlock();
	t.join();
	REQUIRE(forth == n);
	REQUIRE(back == n);
}

// Producers add `per_producer` tokens each to a count under mx and wake
// (wakeup_one or wakeup, or cv signal/broadcast); consumers take equal
// shares, sleeping while the count is 0 with a random timeout (or none)
// and, randomly, interruptibly; an interrupter interrupts them meanwhile.
void
tokens(bool use_cv, int producers, int consumers, long per_producer,
    std::uint64_t seed)
{
	mutex mx("tokens");
	condvar cv("tokens");
	long count = 0; // (mx)
	long taken = 0; // (mx)
	std::vector<char> active(consumers, 1); // (mx) consumer still taking
	int consumers_left = consumers;        // (mx)
	std::atomic<long> timeouts{0}, interrupts{0};
	const long share = producers * per_producer / consumers;
	REQUIRE(share * consumers == producers * per_producer);

	std::vector<green_thread> cs;
	for (int c = 0; c < consumers; c++)
		cs.emplace_back([&, c] {
			std::mt19937_64 rng(test::derive_seed(seed, 100 + c));
			for (long k = 0; k < share; k++) {
				mx.lock();
				while (count == 0) {
					bool sig = (rng() & 3) == 0;
					auto timo = (rng() & 1) ?
					    std::chrono::nanoseconds(
						1000 + rng() % 300'000) :
					    std::chrono::nanoseconds::zero();
					int r;
					if (use_cv && sig)
						r = timo.count() ?
						    cv.timedwait_sig(mx.lo(), timo) :
						    cv.wait_sig(mx.lo());
					else if (use_cv)
						r = timo.count() ?
						    cv.timedwait(mx, timo) :
						    (cv.wait(mx), 0);
					else
						r = msleep(&count, mx,
						    sig ? PCATCH : 0, "token", timo);
					REQUIRE((r == 0 || r == EWOULDBLOCK ||
					    r == EINTR));
					REQUIRE(mx.owned());
					if (r == EWOULDBLOCK)
						timeouts++;
					if (r == EINTR) {
						REQUIRE(sig);
						interrupts++;
						REQUIRE(thread_interrupt_clear());
					}
				}
				count--;
				taken++;
				mx.unlock();
			}
			// Leaving: no interrupt names us after this (an
			// interrupt that came after our last sleep stays
			// pending, harmlessly).
			mx.lock();
			active[c] = 0;
			consumers_left--;
			mx.unlock();
		});

	// The interrupter names only consumers still in their loop (active,
	// under mx, which a consumer holds to leave it), so every td it
	// interrupts is alive.
	green_thread intr([&] {
		std::mt19937_64 rng(test::derive_seed(seed, 3));
		for (;;) {
			mx.lock();
			if (consumers_left == 0) {
				mx.unlock();
				break;
			}
			int c = static_cast<int>(rng() % active.size());
			if (active[c])
				thread_interrupt(cs[c].native_handle());
			mx.unlock();
			(void)pause("intr", std::chrono::microseconds(50 + rng() % 500));
		}
	});

	std::vector<green_thread> ps;
	for (int p = 0; p < producers; p++)
		ps.emplace_back([&, p] {
			std::mt19937_64 rng(test::derive_seed(seed, 200 + p));
			for (long k = 0; k < per_producer; k++) {
				mx.lock();
				count++;
				bool all = (rng() & 7) == 0;
				if (use_cv)
					all ? cv.broadcast() : cv.signal();
				else
					all ? wakeup(&count) : wakeup_one(&count);
				mx.unlock();
				if ((rng() & 31) == 0)
					thread_yield();
			}
		});
	for (auto &t : ps)
		t.join();
	for (auto &t : cs)
		t.join();
	intr.join();
	std::scoped_lock g(mx);
	CHECK(count == 0);
	CHECK(taken == producers * per_producer);
	INFO("timeouts " << timeouts.load() << ", interrupts "
			 << interrupts.load());
}

} // namespace

TEST_CASE("stress: condvar ping-pong over 1/2/4/8 CPUs with full preemption",
    "[stress][condvar]")
{
	USMP_TEST_SEED(seed);
	for (int ncpus : {1, 2, 4, 8}) {
		INFO("ncpus " << ncpus);
		test::machine m(ncpus, true);
		m.run([&] { pingpong(25'000, test::derive_seed(seed, ncpus)); });
	}
}

TEST_CASE("soak: condvar ping-pong of 1,000,000 round trips over 1/2/4/8 CPUs",
    "[.soak][condvar]")
{
	USMP_TEST_SEED(seed);
	for (int ncpus : {1, 2, 4, 8}) {
		INFO("ncpus " << ncpus);
		test::machine m(ncpus, true);
		m.run([&] { pingpong(1'000'000, test::derive_seed(seed, ncpus)); });
	}
}

TEST_CASE("stress: msleep/wakeup with timeouts and interrupts, mutex interlock",
    "[stress][sleep]")
{
	USMP_TEST_SEED(seed);
	long n = 1'000;
	for (int ncpus : {1, 2, 4, 8}) {
		INFO("ncpus " << ncpus);
		test::machine m(ncpus, true);
		m.run([&] { tokens(false, 4, 4, n, test::derive_seed(seed, ncpus)); });
	}
}

TEST_CASE("stress: condvar waits with timeouts and interrupts, mutex interlock",
    "[stress][condvar]")
{
	USMP_TEST_SEED(seed);
	long n = 1'000;
	for (int ncpus : {1, 2, 4, 8}) {
		INFO("ncpus " << ncpus);
		test::machine m(ncpus, true);
		m.run([&] { tokens(true, 4, 4, n, test::derive_seed(seed, ncpus)); });
	}
}

TEST_CASE("soak: msleep and condvar token hand-off, long run", "[.soak][sleep]")
{
	USMP_TEST_SEED(seed);
	for (int ncpus : {2, 8}) {
		INFO("ncpus " << ncpus);
		test::machine m(ncpus, true);
		m.run([&] {
			tokens(false, 4, 4, 50'000, test::derive_seed(seed, ncpus));
			tokens(true, 4, 4, 50'000, test::derive_seed(seed, 10 + ncpus));
		});
	}
}

// Giant is dropped around every sleep (DROP_GIANT / PICKUP_GIANT): while a
// thread that holds Giant recursively sleeps (msleep, tsleep, pause,
// condvar waits, sema waits, sx sleeps), another thread can take Giant;
// the sleeper gets every recursion level back when it wakes.
#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <thread>

#include "support/machine.h"
#include "runtime/thread.h"
#include "sync/condvar.h"
#include "sync/mutex.h"
#include "sync/sema.h"
#include "sync/sleep.h"
#include "sync/sx.h"

using namespace std::chrono_literals;
using namespace usmp;

namespace {

// Poll Giant from a thread that does not hold it.  It is free only while
// its holder sleeps, if the sleep dropped it.  Bounded (about 30 s): a
// sleep that keeps Giant makes the case fail instead of hang.
bool
poll_giant()
{
	for (int i = 0; i < 30000; i++) {
		if (Giant.try_lock())
			return true;
		pause("poll Giant", 1ms);
	}
	return false;
}

// Curthread holds Giant exactly `depth` times (and not recursed beyond):
// release them, checking ownership at each level.
void
require_giant_depth(int depth)
{
	for (int i = 0; i < depth; i++) {
		INFO("level " << i << " of " << depth);
		REQUIRE(Giant.owned());
		REQUIRE(Giant.recursed() == (i < depth - 1));
		Giant.unlock();
	}
	REQUIRE(!Giant.owned());
}

// The scenario: `prepare` runs on the other thread first (e.g. it takes a
// lock the sleeper will sleep on); then the sleeper takes Giant `depth`
// times and calls `sleep`, which must sleep until `wake` (on the other
// thread) lets it return.  The other thread calls `wake` after it polled
// Giant, holding Giant if it got it.
void
giant_case(int depth, const std::function<void()> &prepare,
    const std::function<void()> &sleep, const std::function<void()> &wake)
{
	std::atomic<int> phase{0};
	bool got = false;
	green_thread other([&] {
		prepare();
		phase = 1;
		while (phase.load() != 2)
			thread_yield();
		got = poll_giant();
		wake();
		if (got)
			Giant.unlock();
	});
	while (phase.load() != 1)
		thread_yield();
	for (int i = 0; i < depth; i++)
		Giant.lock();
	phase = 2;
	sleep();
	CHECK(got);
	require_giant_depth(depth);
	other.join();
}

const std::function<void()> nothing = [] {};

} // namespace

TEST_CASE("Giant is dropped around msleep, tsleep and pause",
    "[unit][giant]")
{
	test::machine m(2);
	m.run([] {
		SECTION("msleep with a mutex interlock")
		{
			mutex mx("interlock");
			int state = 0;
			giant_case(3, nothing,
			    [&] {
				    mx.lock();
				    while (state == 0)
					    REQUIRE(msleep(&state, mx, 0, "giant") == 0);
				    REQUIRE(mx.owned());
				    mx.unlock();
			    },
			    [&] {
				    std::scoped_lock g(mx);
				    state = 1;
				    wakeup(&state);
			    });
		}
		SECTION("msleep with Giant as the interlock")
		{
			int state = 0; // under Giant
			giant_case(2, nothing,
			    [&] {
				    while (state == 0)
					    REQUIRE(msleep(&state, Giant.lo(), 0,
							"giant") == 0);
			    },
			    [&] {
				    state = 1;
				    wakeup(&state);
			    });
		}
		SECTION("msleep with Giant as the interlock and PDROP")
		{
			// PDROP does not apply to Giant: it comes back.
			std::atomic<int> state{0};
			giant_case(2, nothing,
			    [&] {
				    while (state.load() == 0)
					    (void)msleep(&state, Giant.lo(),
						PDROP, "giant", 10ms);
			    },
			    [&] { state = 1; });
		}
		SECTION("msleep with an sx interlock")
		{
			sx s("sx interlock");
			int state = 0;
			giant_case(2, nothing,
			    [&] {
				    s.lock();
				    while (state == 0)
					    REQUIRE(msleep(&state, s, 0, "giant") == 0);
				    s.assert_xlocked();
				    s.unlock();
			    },
			    [&] {
				    std::scoped_lock g(s);
				    state = 1;
				    wakeup(&state);
			    });
		}
		SECTION("tsleep")
		{
			std::atomic<int> state{0};
			giant_case(2, nothing,
			    [&] {
				    while (state.load() == 0)
					    (void)tsleep(&state, 0, "giant", 1s);
			    },
			    [&] {
				    state = 1;
				    wakeup(&state);
			    });
		}
		SECTION("pause")
		{
			std::atomic<int> state{0};
			giant_case(4, nothing,
			    [&] {
				    while (state.load() == 0)
					    REQUIRE(pause("giant", 1ms) == EWOULDBLOCK);
			    },
			    [&] { state = 1; });
		}
	});
}

TEST_CASE("Giant is dropped around condvar and sema waits", "[unit][giant]")
{
	test::machine m(2);
	m.run([] {
		SECTION("cv_wait with a mutex interlock")
		{
			mutex mx("cv interlock");
			condvar cv("giant cv");
			int state = 0;
			giant_case(3, nothing,
			    [&] {
				    std::unique_lock g(mx);
				    cv.wait(g, [&] { return state != 0; });
			    },
			    [&] {
				    std::scoped_lock g(mx);
				    state = 1;
				    cv.signal();
			    });
		}
		SECTION("cv_timedwait with Giant as the interlock")
		{
			condvar cv("giant cv");
			int state = 0; // under Giant
			giant_case(2, nothing,
			    [&] {
				    while (state == 0)
					    (void)cv.timedwait(Giant.lo(), 1s);
			    },
			    [&] {
				    state = 1;
				    cv.broadcast();
			    });
		}
		SECTION("cv_wait with a std::mutex (generic BasicLockable)")
		{
			std::mutex sm;
			condvar cv("giant cv");
			int state = 0;
			giant_case(2, nothing,
			    [&] {
				    std::unique_lock g(sm);
				    cv.wait(g, [&] { return state != 0; });
			    },
			    [&] {
				    {
					    std::scoped_lock g(sm);
					    state = 1;
				    }
				    cv.signal();
			    });
		}
		SECTION("sema_wait")
		{
			sema s(0, "giant sema");
			giant_case(3, nothing, [&] { s.wait(); }, [&] { s.post(); });
			CHECK(s.value() == 0);
		}
	});
}

TEST_CASE("Giant is dropped while sleeping on an sx", "[unit][giant]")
{
	test::machine m(2);
	m.run([] {
		sx s("held sx");
		SECTION("exclusive")
		{
			giant_case(3, [&] { s.lock(); },
			    [&] {
				    s.lock();
				    s.unlock();
			    },
			    [&] { s.unlock(); });
		}
		SECTION("shared")
		{
			giant_case(2, [&] { s.lock(); },
			    [&] {
				    s.lock_shared();
				    s.unlock_shared();
			    },
			    [&] { s.unlock(); });
		}
	});
}

TEST_CASE("a sleep without Giant leaves it alone", "[unit][giant]")
{
	test::machine m(1);
	m.run([] {
		int chan;
		CHECK(drop_giant() == 0);
		CHECK(tsleep(&chan, 0, "no giant", 1ms) == EWOULDBLOCK);
		CHECK(!Giant.owned());
		Giant.lock();
		CHECK(tsleep(&chan, 0, "one giant", 1ms) == EWOULDBLOCK);
		require_giant_depth(1);
	});
}

TEST_CASE("a foreign OS thread drops Giant around pause and msleep",
    "[unit][giant]")
{
	test::machine m(2);
	std::atomic<int> phase{0};
	bool got_in_pause = false, got_in_msleep = false;
	int chan = 0;
	std::thread os([&] {
		Giant.lock();
		Giant.lock();
		phase = 1;
		while (phase.load() == 1)
			CHECK(pause("foreign giant", 1ms) == EWOULDBLOCK);
		// phase 2: the green thread took and released Giant.
		phase = 3;
		while (phase.load() == 3)
			(void)tsleep(&chan, 0, "foreign giant", 1s);
		require_giant_depth(2);
	});
	m.run([&] {
		while (phase.load() != 1)
			thread_yield();
		got_in_pause = poll_giant();
		if (got_in_pause)
			Giant.unlock();
		phase = 2;
		while (phase.load() != 3)
			thread_yield();
		got_in_msleep = poll_giant();
		phase = 4;
		wakeup(&chan);
		if (got_in_msleep)
			Giant.unlock();
	});
	os.join();
	CHECK(got_in_pause);
	CHECK(got_in_msleep);
}

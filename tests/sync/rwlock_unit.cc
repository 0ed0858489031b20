// usmp::rwlock: read sharing, write exclusion, recursion, upgrade and
// downgrade, std::shared_lock, per-thread counts, writer preference.
#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "runtime/thread.h"
#include "support/machine.h"
#include "sync/condvar.h"
#include "sync/internal/ts_tdstate.h"
#include "sync/rwlock.h"
#include "sync/sleep.h"

using namespace usmp;
using namespace std::chrono_literals;

TEST_CASE("rwlock: readers share, a writer excludes", "[unit]")
{
	test::machine m(2);
	m.run([] {
		rwlock rw("unit rw");
		thread *td = curthread();
		rw.lock_shared();
		REQUIRE(rw.readers() == 1);
		REQUIRE(rw.try_lock_shared());
		REQUIRE(rw.readers() == 2);
		REQUIRE(td_rw_rlocks(td) == 2);
		REQUIRE(td_nonsleepable_locks(td) == 2);
		REQUIRE(!rw.try_lock());
		rw.assert_state(RA_RLOCKED);
		rw.unlock_shared();
		rw.unlock_shared();
		REQUIRE(td_nonsleepable_locks(td) == 0);
		rw.lock();
		REQUIRE(rw.wowned());
		REQUIRE(rw.owner() == td);
		REQUIRE(td_nonsleepable_locks(td) == 1);
		REQUIRE(!rw.try_lock_shared());
		rw.assert_state(RA_WLOCKED | RA_NOTRECURSED);
		rw.unlock();
		rw.assert_state(RA_UNLOCKED);
		REQUIRE(td_nonsleepable_locks(td) == 0);
	});
}

TEST_CASE("rwlock: writer recursion with LOCK_RECURSE", "[unit]")
{
	test::machine m(1);
	m.run([] {
		rwlock rw("rec rw", LOCK_RECURSE);
		rw.lock();
		rw.lock();
		REQUIRE(rw.try_lock());
		rw.assert_state(RA_WLOCKED | RA_RECURSED);
		rw.unlock();
		rw.unlock();
		rw.assert_state(RA_WLOCKED | RA_NOTRECURSED);
		rw.unlock();
		REQUIRE(!rw.wowned());
	});
}

TEST_CASE("rwlock: try_upgrade and downgrade", "[unit]")
{
	test::machine m(2);
	m.run([] {
		rwlock rw("updown");
		rw.lock_shared();
		REQUIRE(rw.try_upgrade());
		REQUIRE(rw.wowned());
		rw.downgrade();
		REQUIRE(rw.readers() == 1);
		REQUIRE(!rw.wowned());
		// Two readers: no upgrade.
		std::atomic<int> st{0};
		green_thread t([&] {
			rw.lock_shared();
			st = 1;
			while (st != 2)
				thread_yield();
			rw.unlock_shared();
		});
		while (st != 1)
			thread_yield();
		REQUIRE(!rw.try_upgrade());
		st = 2;
		t.join();
		REQUIRE(rw.try_upgrade());
		rw.unlock();
	});
}

TEST_CASE("rwlock: std::shared_lock and std::unique_lock", "[unit]")
{
	test::machine m(1);
	m.run([] {
		rwlock rw("std rw");
		{
			std::shared_lock<rwlock> s(rw);
			REQUIRE(rw.readers() == 1);
		}
		{
			std::unique_lock<rwlock> u(rw);
			REQUIRE(rw.wowned());
		}
		REQUIRE(rw.readers() == 0);
	});
}

TEST_CASE("rwlock: a reader that holds it recurses past a waiting writer", "[unit]")
{
	test::machine m(2);
	m.run([] {
		rwlock rw("pref");
		std::atomic<bool> wrote{false};
		rw.lock_shared();
		green_thread w([&] {
			rw.lock();
			wrote = true;
			rw.unlock();
		});
		// Let the writer block and set the write-waiters bit.
		for (int i = 0; i < 50 && rw.readers() == 1 &&
		     !(reinterpret_cast<std::atomic<uintptr_t> *>(
			   reinterpret_cast<char *>(&rw) + sizeof(lock_object))
			     ->load() & RW_LOCK_WRITE_WAITERS);
		     i++)
			thread_sleep(1ms);
		rw.lock_shared(); // would deadlock without td_rw_rlocks
		REQUIRE(!wrote);
		rw.unlock_shared();
		rw.unlock_shared();
		w.join();
		REQUIRE(wrote);
	});
}

TEST_CASE("rwlock: writers and readers across CPUs keep counters consistent", "[unit]")
{
	test::machine m(2);
	m.run([] {
		rwlock rw("pair");
		long a = 0, b = 0;
		std::atomic<long> bad{0};
		std::vector<green_thread> ts;
		for (int i = 0; i < 4; i++)
			ts.emplace_back([&] {
				for (int k = 0; k < 5000; k++) {
					rw.lock();
					a++;
					if ((k & 31) == 0)
						thread_yield();
					b++;
					rw.unlock();
				}
			});
		for (int i = 0; i < 4; i++)
			ts.emplace_back([&] {
				for (int k = 0; k < 5000; k++) {
					rw.lock_shared();
					if (a != b)
						bad++;
					rw.unlock_shared();
				}
			});
		for (auto &t : ts)
			t.join();
		REQUIRE(bad == 0);
		REQUIRE(a == 4 * 5000);
		REQUIRE(b == 4 * 5000);
	});
}

TEST_CASE("rwlock: an rwlock may be the interlock of a sleep (rw_sleep)",
    "[unit]")
{
	test::machine m(1);
	m.run([] {
		rwlock rw("rw interlock");
		condvar cv("rw cv");
		thread *td = curthread();
		int chan;
		// Write-held and read-held interlocks are released by the sleep
		// and taken back in the same mode: no "rwlock held" panic.
		rw.lock();
		REQUIRE(msleep(&chan, rw, 0, "rwsleep", 1ms) == EWOULDBLOCK);
		REQUIRE(rw.wowned());
		REQUIRE(td_nonsleepable_locks(td) == 1);
		rw.unlock();
		rw.lock_shared();
		REQUIRE(cv.timedwait(rw, 1ms) == EWOULDBLOCK);
		REQUIRE(td_rw_rlocks(td) == 1);
		rw.unlock_shared();
		REQUIRE(td_nonsleepable_locks(td) == 0);
	});
}

// usmp::mutex and usmp::spin_mutex: fast and slow paths, recursion,
// try_lock, asserts, the lock class, Giant, foreign OS threads, std
// Lockable.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/critical.h"
#include "runtime/thread.h"
#include "sched/sched.h"
#include "support/machine.h"
#include "sync/mtx_pool.h"
#include "sync/mutex.h"
#include "sync/sleep.h"

using namespace usmp;

TEST_CASE("mutex: lock, unlock, try_lock, owned", "[unit]")
{
	test::machine m(1);
	m.run([] {
		mutex mtx("unit");
		REQUIRE(!mtx.owned());
		mtx.lock();
		REQUIRE(mtx.owned());
		REQUIRE(mtx.owner() == curthread());
		mtx.assert_owned();
		mtx.assert_not_recursed();
		REQUIRE(!mtx.try_lock()); // not recursable
		mtx.unlock();
		mtx.assert_not_owned();
		REQUIRE(mtx.try_lock());
		mtx.unlock();
		REQUIRE(mtx.owner() == nullptr);
	});
}

TEST_CASE("mutex: recursion with LOCK_RECURSE and lock_recurse()", "[unit]")
{
	test::machine m(1);
	m.run([] {
		mutex r("rec", nullptr, LOCK_RECURSE);
		r.lock();
		r.lock();
		REQUIRE(r.try_lock());
		r.assert_recursed();
		REQUIRE(r.recursed());
		r.unlock();
		r.unlock();
		REQUIRE(!r.recursed());
		r.assert_not_recursed();
		r.unlock();
		r.assert_not_owned();

		mutex n("nonrec");
		n.lock();
		n.lock_recurse();
		n.assert_recursed();
		n.unlock();
		n.unlock();
		n.assert_not_owned();
	});
}

TEST_CASE("mutex: std::scoped_lock and std::unique_lock", "[unit]")
{
	test::machine m(2);
	m.run([] {
		mutex a("a"), b("b");
		{
			std::scoped_lock l(a, b);
			REQUIRE(a.owned());
			REQUIRE(b.owned());
		}
		REQUIRE(!a.owned());
		std::unique_lock<mutex> u(a);
		REQUIRE(a.owned());
		u.unlock();
		REQUIRE(u.try_lock());
	});
}

TEST_CASE("mutex: contended between green threads, none lost", "[unit]")
{
	for (int ncpu : {1, 2}) {
		test::machine m(ncpu);
		m.run([] {
			mutex mtx("counter");
			long counter = 0;
			std::vector<green_thread> ts;
			for (int i = 0; i < 8; i++)
				ts.emplace_back([&] {
					for (int k = 0; k < 20000; k++) {
						mtx.lock();
						counter++;
						if ((k & 63) == 0)
							thread_yield(); // block others
						mtx.unlock();
					}
				});
			for (auto &t : ts)
				t.join();
			REQUIRE(counter == 8 * 20000);
		});
	}
}

TEST_CASE("mutex: foreign OS threads and green threads share one mutex", "[unit]")
{
	test::machine m(2);
	mutex mtx("shared");
	long counter = 0;
	std::atomic<bool> go{false};
	std::vector<std::thread> os;
	for (int i = 0; i < 2; i++)
		os.emplace_back([&] {
			while (!go.load())
				std::this_thread::yield();
			for (int k = 0; k < 20000; k++) {
				std::lock_guard<mutex> g(mtx);
				counter++;
			}
		});
	m.run([&] {
		std::vector<green_thread> ts;
		for (int i = 0; i < 4; i++)
			ts.emplace_back([&] {
				for (int k = 0; k < 20000; k++) {
					mtx.lock();
					counter++;
					if ((k & 255) == 0)
						thread_yield();
					mtx.unlock();
				}
			});
		go = true;
		for (auto &t : ts)
			t.join();
	});
	for (auto &t : os)
		t.join();
	REQUIRE(counter == 6 * 20000);
}

TEST_CASE("mutex: a foreign thread blocks until a green owner unlocks", "[unit]")
{
	test::machine m(1);
	mutex mtx("held");
	std::atomic<int> stage{0};
	std::thread os([&] {
		while (stage.load() != 1)
			std::this_thread::yield();
		mtx.lock(); // blocks on the futex
		stage = 3;
		mtx.unlock();
	});
	m.run([&] {
		mtx.lock();
		stage = 1;
		thread_sleep(std::chrono::milliseconds(50));
		REQUIRE(stage.load() == 1);
		stage = 2;
		mtx.unlock();
		while (stage.load() != 3)
			thread_sleep(std::chrono::milliseconds(1));
	});
	os.join();
}

TEST_CASE("mutex: the lock class releases and restores recursion", "[unit]")
{
	test::machine m(1);
	m.run([] {
		mutex r("interlock", nullptr, LOCK_RECURSE);
		lock_object *lo = r.lo();
		REQUIRE(lo->lo_class == &lock_class_mtx_sleep);
		REQUIRE(mutex::from_lo(lo) == &r);
		r.lock();
		r.lock();
		uintptr_t how = lo->lo_class->lc_unlock(lo);
		REQUIRE(!r.owned());
		REQUIRE(lo->lo_class->lc_owner(lo) == nullptr);
		lo->lo_class->lc_lock(lo, how);
		REQUIRE(lo->lo_class->lc_owner(lo) == curthread());
		lo->lo_class->lc_assert(lo, LA_XLOCKED | LA_RECURSED, __FILE__, __LINE__);
		r.unlock();
		r.unlock();
		r.assert_not_owned();
	});
}

TEST_CASE("Giant: drop_giant and pickup_giant restore every level", "[unit]")
{
	test::machine m(1);
	m.run([] {
		REQUIRE(drop_giant() == 0);
		Giant.lock();
		Giant.lock();
		Giant.lock();
		int n = drop_giant();
		REQUIRE(n == 3);
		REQUIRE(!Giant.owned());
		pickup_giant(n);
		Giant.assert_recursed();
		Giant.unlock();
		Giant.unlock();
		Giant.unlock();
		Giant.assert_not_owned();
		REQUIRE(std::string(Giant.name()) == "Giant");
	});
}

TEST_CASE("spin_mutex: lock, recursion, try_lock, critical section", "[unit]")
{
	test::machine m(2);
	m.run([] {
		spin_mutex s("spin");
		thread *td = curthread();
		int crit = td->td_critnest;
		s.lock();
		REQUIRE(td->td_spinlock_count == 1);
		REQUIRE(td->td_critnest == crit + 1);
		s.assert_owned();
		REQUIRE(!s.try_lock());
		s.unlock();
		REQUIRE(td->td_spinlock_count == 0);
		REQUIRE(td->td_critnest == crit);
		REQUIRE(s.try_lock());
		s.unlock();

		spin_mutex r("spin rec", nullptr, LOCK_RECURSE);
		r.lock();
		r.lock();
		REQUIRE(r.recursed());
		REQUIRE(r.owner() == td);
		REQUIRE(td->td_spinlock_count == 2);
		r.unlock();
		// The recursion flag in the word is gone with the last level:
		// the next unlock is the fast path's, a full release.
		REQUIRE(r.owned());
		REQUIRE(!r.recursed());
		REQUIRE(r.owner() == td);
		r.unlock();
		REQUIRE(!r.owned());
		REQUIRE(r.owner() == nullptr);
		REQUIRE(td->td_spinlock_count == 0);
		REQUIRE(r.try_lock());
		r.unlock();

		long counter = 0;
		std::vector<green_thread> ts;
		for (int i = 0; i < 4; i++)
			ts.emplace_back([&] {
				for (int k = 0; k < 50000; k++) {
					std::lock_guard<spin_mutex> g(s);
					counter++;
				}
			});
		for (auto &t : ts)
			t.join();
		REQUIRE(counter == 4 * 50000);
	});
}

// A waiter spinning for a spin mutex is outside its own spinlock section
// (mtx_lock_spin() spins with interrupts enabled), so a preemption owed to
// it is taken there.  Here the holder, on cpu0, wakes a kernel-priority
// thread bound to cpu1, where the waiter spins, and keeps the lock until
// that thread has run: it can only run if the spinning waiter is
// preempted.  The deadline only bounds a failure (a waiter that never
// switches), it times nothing.
TEST_CASE("spin_mutex: a spinning waiter takes an owed preemption", "[unit]")
{
	test::machine m(2);
	m.run([] {
		spin_mutex s("spin preempt");
		std::atomic<int> phase{0};
		std::atomic<bool> go{false}, ran{false}, waited{false};
		int chan = 0;
		thread_attr ha;
		ha.name = "preemptor";
		ha.cpu = 1;
		ha.priority = PRI_MIN_KERN;
		green_thread h(ha, [&] {
			phase.store(1);
			// Timed sleeps: a missed wakeup only costs a retry.
			while (!go.load())
				tsleep(&chan, 0, "preemptor", std::chrono::milliseconds(1));
			ran.store(true);
		});
		while (phase.load() == 0)
			thread_yield();
		thread_attr wa;
		wa.name = "spinner";
		wa.cpu = 1;
		thread_attr oa;
		oa.name = "holder";
		oa.cpu = 0;
		green_thread o(oa, [&] {
			s.lock();
			phase.store(2);
			while (phase.load() != 3)
				__builtin_ia32_pause();
			// Let the waiter get into its spin.
			auto t0 = std::chrono::steady_clock::now();
			while (std::chrono::steady_clock::now() - t0 <
			    std::chrono::milliseconds(20))
				__builtin_ia32_pause();
			go.store(true);
			wakeup(&chan);
			auto deadline = std::chrono::steady_clock::now() +
			    std::chrono::seconds(10);
			while (!ran.load() &&
			    std::chrono::steady_clock::now() < deadline)
				__builtin_ia32_pause();
			s.unlock();
		});
		green_thread w(wa, [&] {
			while (phase.load() != 2)
				thread_yield();
			phase.store(3);
			s.lock();
			// The preemptor ran while we still waited for the lock.
			waited.store(ran.load());
			s.unlock();
		});
		o.join();
		w.join();
		h.join();
		REQUIRE(ran.load());
		REQUIRE(waited.load());
	});
}

TEST_CASE("mtx_pool: an address always maps to the same pool mutex", "[unit]")
{
	test::machine m(1);
	m.run([] {
		int objs[64];
		for (int &o : objs) {
			mutex &a = mtx_pool_find(mtxpool_sleep, &o);
			REQUIRE(&a == &mtx_pool_find(mtxpool_sleep, &o));
			REQUIRE(std::string(a.name()) == "sleep mtxpool");
			mtx_pool_lock(mtxpool_sleep, &o);
			a.assert_owned();
			mtx_pool_unlock(mtxpool_sleep, &o);
		}
		mtx_pool p(16, "small pool");
		REQUIRE(&mtx_pool_find(&p, &objs[0]) == &mtx_pool_find(&p, &objs[0]));
	});
}

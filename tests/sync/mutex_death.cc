// Misuse of mutexes and rwlocks panics with a message that names the call,
// the lock and the call site.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "runtime/critical.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "support/death.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"

using namespace usmp;

TEST_CASE("unlock of a mutex not owned", "[death]")
{
	auto r = test::run_death("unlock not owned", [] {
		run({.ncpus = 1}, [] {
			mutex m("vnode interlock");
			m.unlock();
		});
	});
	USMP_REQUIRE_DEATH(r, "mtx_unlock() of mutex \"vnode interlock\" not owned @ ");
	USMP_REQUIRE_DEATH(r, "mutex_death.cc:");
	CHECK(r.aborted());
}

TEST_CASE("unlock of a mutex held by another thread", "[death]")
{
	auto r = test::run_death("unlock other", [] {
		run({.ncpus = 1}, [] {
			mutex m("theirs");
			green_thread t([&] { m.lock(); });
			t.join();
			m.unlock();
		});
	});
	USMP_REQUIRE_DEATH(r, "mtx_unlock() of mutex \"theirs\" not owned @ ");
	USMP_REQUIRE_DEATH(r, "held by thread");
}

TEST_CASE("recursion on a non-recursive mutex", "[death]")
{
	auto r = test::run_death("recurse", [] {
		run({.ncpus = 1}, [] {
			mutex m("plain");
			m.lock();
			m.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "_mtx_lock_sleep: recursed on non-recursive mutex plain @ ");
	USMP_REQUIRE_DEATH(r, "mutex_death.cc:");
}

TEST_CASE("recursion on a non-recursive spin mutex", "[death]")
{
	auto r = test::run_death("recurse spin", [] {
		run({.ncpus = 1}, [] {
			spin_mutex m("plain spin");
			m.lock();
			m.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "mtx_lock_spin: recursed on non-recursive mutex plain spin @ ");
}

TEST_CASE("destroy of a recursed mutex", "[death]")
{
	auto r = test::run_death("destroy recursed", [] {
		run({.ncpus = 1}, [] {
			mutex m("rec", nullptr, LOCK_RECURSE);
			m.lock();
			m.lock();
			m.destroy();
		});
	});
	USMP_REQUIRE_DEATH(r, "mtx_destroy() of recursed mutex \"rec\" @ ");
}

TEST_CASE("destroy of a mutex with waiters", "[death]")
{
	auto r = test::run_death("destroy with waiters", [] {
		run({.ncpus = 1}, [] {
			mutex m("busy");
			m.lock();
			green_thread t([&] { m.lock(); });
			thread_yield(); // t blocks on the turnstile
			thread_sleep(std::chrono::milliseconds(10));
			m.destroy();
			t.detach();
		});
	});
	USMP_REQUIRE_DEATH(r, "mtx_destroy() of mutex \"busy\" with waiters @ ");
}

TEST_CASE("destroy of a mutex held by another thread", "[death]")
{
	auto r = test::run_death("destroy held", [] {
		run({.ncpus = 1}, [] {
			mutex m("held elsewhere");
			green_thread t([&] { m.lock(); });
			t.join();
			m.destroy();
		});
	});
	USMP_REQUIRE_DEATH(r, "mtx_destroy() of mutex \"held elsewhere\" held by thread");
}

TEST_CASE("a sleep mutex taken in a critical section", "[death]")
{
	auto r = test::run_death("sleep mutex in critical section", [] {
		run({.ncpus = 1}, [] {
			mutex m("sleepy");
			critical_enter();
			m.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "mtx_lock() of sleep mutex \"sleepy\" in a critical section @ ");
}

TEST_CASE("a sleep mutex taken with a spin mutex held", "[death]")
{
	auto r = test::run_death("sleep mutex under spin", [] {
		run({.ncpus = 1}, [] {
			spin_mutex s("spinner");
			mutex m("sleepy");
			s.lock();
			m.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "mtx_lock() of sleep mutex \"sleepy\" in a critical section (a spin mutex is held) @ ");
}

TEST_CASE("lock of a destroyed mutex", "[death]")
{
	auto r = test::run_death("use after destroy", [] {
		run({.ncpus = 1}, [] {
			mutex m("gone");
			m.destroy();
			m.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "mtx_lock() of destroyed sleep mutex \"gone\" @ ");
}

TEST_CASE("lock of a destroyed spin mutex", "[death]")
{
	auto r = test::run_death("spin use after destroy", [] {
		run({.ncpus = 1}, [] {
			spin_mutex m("gone spin");
			m.destroy();
			m.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "mtx_lock_spin() of destroyed spin mutex \"gone spin\" @ ");
}

TEST_CASE("a spin mutex held too long", "[death]")
{
	auto r = test::run_death("spin held too long", [] {
		spin_mutex_set_hang_limit(std::chrono::milliseconds(200));
		spin_mutex s("stuck");
		run({.ncpus = 1}, [&] {
			// A foreign OS thread holds it and never lets go.
			std::thread os([&] {
				s.lock();
				for (;;)
					std::this_thread::sleep_for(std::chrono::seconds(1));
			});
			os.detach();
			while (s.owner() == nullptr)
				thread_sleep(std::chrono::milliseconds(1));
			s.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "(stuck) held by ");
	USMP_REQUIRE_DEATH(r, "too long");
}

TEST_CASE("mtx_assert reports with FreeBSD's messages", "[death]")
{
	auto r = test::run_death("assert owned", [] {
		run({.ncpus = 1}, [] {
			mutex m("asserted");
			m.assert_owned();
		});
	});
	USMP_REQUIRE_DEATH(r, "mutex asserted not owned at ");
	auto r2 = test::run_death("assert not owned", [] {
		run({.ncpus = 1}, [] {
			mutex m("asserted2");
			m.lock();
			m.assert_not_owned();
		});
	});
	USMP_REQUIRE_DEATH(r2, "mutex asserted2 owned at ");
	auto r3 = test::run_death("assert recursed", [] {
		run({.ncpus = 1}, [] {
			mutex m("asserted3");
			m.lock();
			m.assert_recursed();
		});
	});
	USMP_REQUIRE_DEATH(r3, "mutex asserted3 unrecursed at ");
}

TEST_CASE("rwlock: write unlock not owned, read after write", "[death]")
{
	auto r = test::run_death("rw unlock not owned", [] {
		run({.ncpus = 1}, [] {
			rwlock rw("rwl");
			rw.unlock();
		});
	});
	USMP_REQUIRE_DEATH(r, "rw_wunlock() of rwlock \"rwl\" not write-locked @ ");
	auto r2 = test::run_death("rw rlock after wlock", [] {
		run({.ncpus = 1}, [] {
			rwlock rw("rwl2");
			rw.lock();
			rw.lock_shared();
		});
	});
	USMP_REQUIRE_DEATH(r2, "rw_rlock: wlock already held for rwl2 @ ");
	auto r3 = test::run_death("rw write recursion", [] {
		run({.ncpus = 1}, [] {
			rwlock rw("rwl3");
			rw.lock();
			rw.lock();
		});
	});
	USMP_REQUIRE_DEATH(r3, "_rw_wlock_hard: recursed on non-recursive rwlock rwl3 @ ");
	auto r4 = test::run_death("rw runlock not read-locked", [] {
		run({.ncpus = 1}, [] {
			rwlock rw("rwl4");
			rw.unlock_shared();
		});
	});
	USMP_REQUIRE_DEATH(r4, "rw_runlock() of rwlock \"rwl4\" not read-locked @ ");
}

// rwlock(9): "no sleeping while held".  Every sleep (msleep, cv_wait,
// pause, an sx lock that must sleep) refuses to start with an rwlock held,
// read or write, other than the interlock it releases, and panics naming
// the call, the wait message or lock, the hold counts and the call site.
#include <catch2/catch.hpp>

#include <chrono>
#include <mutex>

#include "support/death.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sync/condvar.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/sleep.h"
#include "sync/sx.h"

using namespace std::chrono_literals;
using namespace usmp;

TEST_CASE("msleep with an rwlock read-held panics", "[death][rwlock]")
{
	auto r = test::run_death("msleep with rlock", [] {
		usmp::run({.ncpus = 1}, [] {
			rwlock rw("held rw");
			mutex m("interlock");
			int chan;
			rw.lock_shared();
			m.lock();
			msleep(&chan, m, 0, "rwsleep", 1ms);
		});
	});
	USMP_REQUIRE_DEATH(r, "msleep: sleeping on \"rwsleep\" with a "
			      "non-sleepable rwlock held");
	CHECK(r.contains("read holds 1, write holds 0"));
	CHECK(r.contains("rwlock_death.cc"));
}

TEST_CASE("cv_wait with an rwlock write-held panics", "[death][rwlock]")
{
	auto r = test::run_death("cv_wait with wlock", [] {
		usmp::run({.ncpus = 1}, [] {
			rwlock rw("held rw");
			mutex m("cv interlock");
			condvar cv("rw cv");
			rw.lock();
			std::unique_lock<mutex> g(m);
			cv.wait(g);
		});
	});
	USMP_REQUIRE_DEATH(r, "cv_wait: sleeping on \"rw cv\" with a "
			      "non-sleepable rwlock held");
	CHECK(r.contains("read holds 0, write holds 1"));
	CHECK(r.contains("rwlock_death.cc"));
}

TEST_CASE("pause with an rwlock held panics", "[death][rwlock]")
{
	auto r = test::run_death("pause with rlock", [] {
		usmp::run({.ncpus = 1}, [] {
			rwlock rw("held rw");
			rw.lock_shared();
			pause("rwpause", 1ms);
		});
	});
	USMP_REQUIRE_DEATH(r, "pause: sleeping on \"rwpause\" with a "
			      "non-sleepable rwlock held");
	CHECK(r.contains("rwlock_death.cc"));
}

TEST_CASE("an rwlock interlock read-held twice still panics: one hold stays",
    "[death][rwlock]")
{
	auto r = test::run_death("rw interlock recursed", [] {
		usmp::run({.ncpus = 1}, [] {
			rwlock rw("recursed rw");
			int chan;
			rw.lock_shared();
			rw.lock_shared();
			msleep(&chan, rw, 0, "rwrec", 1ms);
		});
	});
	USMP_REQUIRE_DEATH(r, "msleep: sleeping on \"rwrec\" with a "
			      "non-sleepable rwlock held");
	CHECK(r.contains("read holds 2, write holds 0, one of them the "
			 "interlock"));
}

TEST_CASE("an sx lock that must sleep with an rwlock held panics",
    "[death][rwlock][sx]")
{
	auto r = test::run_death("sx with rlock", [] {
		usmp::run({.ncpus = 1}, [] {
			sx s("busy sx");
			rwlock rw("held rw");
			s.lock();
			thread *td;
			// The other thread finds the sx held and must sleep.
			thread_create(&td, {.name = "sx waiter"}, [&] {
				rw.lock_shared();
				s.lock();
			});
			thread_join(td);
		});
	});
	USMP_REQUIRE_DEATH(r, "sx_xlock: sleeping on \"busy sx\" with a "
			      "non-sleepable rwlock held");
	CHECK(r.contains("rwlock_death.cc"));
}

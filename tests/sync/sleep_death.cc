// Misuse of sleep(9), condvar(9) and sx(9) panics with the call, the lock
// or wait message, and the call site.
#include <catch2/catch.hpp>

#include <chrono>

#include "support/death.h"
#include "runtime/critical.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sync/sx.h"

using namespace std::chrono_literals;
using namespace usmp;

TEST_CASE("sleeping in a critical section panics", "[death][sleep]")
{
	auto r = test::run_death("sleep in critical", [] {
		usmp::run({.ncpus = 1}, [] {
			int chan;
			critical_enter();
			tsleep(&chan, 0, "crit", 1ms);
		});
	});
	USMP_REQUIRE_DEATH(r, "msleep: sleeping on \"crit\" in a critical section");
	CHECK(r.contains("sleep_death.cc"));
}

TEST_CASE("sleeping with a spin lock held panics", "[death][sleep]")
{
	auto r = test::run_death("sleep with spin", [] {
		usmp::run({.ncpus = 1}, [] {
			spin_mutex sm("spinny");
			int chan;
			sm.lock();
			tsleep(&chan, 0, "spun", 1ms);
		});
	});
	USMP_REQUIRE_DEATH(r, "with a spin lock held");
}

TEST_CASE("sx unlock not owned, recursion without flag, destroy held, use "
	  "after destroy", "[death][sx]")
{
	auto r1 = test::run_death("sx unlock not owned", [] {
		usmp::run({.ncpus = 1}, [] {
			sx s("vnode sx");
			s.unlock();
		});
	});
	USMP_REQUIRE_DEATH(r1, "sx_xunlock: sx \"vnode sx\" not exclusively locked");
	auto r2 = test::run_death("sx recursion", [] {
		usmp::run({.ncpus = 1}, [] {
			sx s("norec");
			s.lock();
			s.lock();
		});
	});
	USMP_REQUIRE_DEATH(r2, "recursed on non-recursive sx \"norec\"");
	auto r3 = test::run_death("sx destroy held", [] {
		usmp::run({.ncpus = 1}, [] {
			sx s("held");
			s.lock_shared();
			s.destroy();
		});
	});
	USMP_REQUIRE_DEATH(r3, "sx_destroy: sx lock \"held\" still held");
	auto r4 = test::run_death("sx use after destroy", [] {
		usmp::run({.ncpus = 1}, [] {
			sx s("gone");
			s.destroy();
			s.lock();
		});
	});
	USMP_REQUIRE_DEATH(r4, "sx_xlock of destroyed sx \"gone\"");
}

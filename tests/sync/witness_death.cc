// WITNESS in abort mode: each report panics, naming the locks and sites;
// the checks whose primitive would hang or panic anyway (share->excl,
// excl->share, wrong-mode unlock, blocking in a critical section,
// upgrade/downgrade misuse) are proven here; the saved graph makes a
// reversal between two processes; a real deadlock is reported instead of
// hanging.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>

#include "runtime/critical.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "support/death.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/sleep.h"
#include "sync/sx.h"
#include "sync/witness.h"

using namespace usmp;

namespace {

// Boot one machine and run fn in abort mode.
template <class F>
void
abort_mode(int ncpus, F fn)
{
	witness_set_mode(witness_mode::abort);
	run({.ncpus = ncpus}, fn);
}

} // namespace

TEST_CASE("abort mode: a reversal panics after its report", "[death][witness]")
{
	auto r = test::run_death("abba abort", [] {
		abort_mode(1, [] {
			mutex a("dabba A"), b("dabba B");
			a.lock();
			b.lock();
			b.unlock();
			a.unlock();
			b.lock();
			a.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "lock order reversal:\n 1st ");
	USMP_REQUIRE_DEATH(r, "dabba B (dabba B, sleep mutex) @ ");
	USMP_REQUIRE_DEATH(r, "witness_death.cc:");
	USMP_REQUIRE_DEATH(r, "panic: witness: lock order reversal");
	CHECK(r.aborted());
}

TEST_CASE("exclusive lock of a share-locked sx", "[death][witness]")
{
	auto r = test::run_death("share->excl", [] {
		abort_mode(1, [] {
			sx s("mode sx");
			s.lock_shared();
			s.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "exclusive lock of (sx) mode sx @ ");
	USMP_REQUIRE_DEATH(r, "while share locked from ");
	USMP_REQUIRE_DEATH(r, "share->excl");
}

TEST_CASE("shared lock of an exclusively locked sx", "[death][witness]")
{
	auto r = test::run_death("excl->share", [] {
		abort_mode(1, [] {
			sx s("mode sx2");
			s.lock();
			s.lock_shared();
		});
	});
	USMP_REQUIRE_DEATH(r, "shared lock of (sx) mode sx2 @ ");
	USMP_REQUIRE_DEATH(r, "while exclusively locked from ");
	USMP_REQUIRE_DEATH(r, "excl->share");
}

TEST_CASE("unlock in the wrong mode", "[death][witness]")
{
	auto r = test::run_death("share->uexcl", [] {
		abort_mode(1, [] {
			sx s("umode sx");
			s.lock_shared();
			s.unlock();
		});
	});
	USMP_REQUIRE_DEATH(r, "exclusive unlock of (sx) umode sx @ ");
	USMP_REQUIRE_DEATH(r, "while share locked from ");
	auto r2 = test::run_death("excl->ushare", [] {
		abort_mode(1, [] {
			rwlock rw("umode rw");
			rw.lock();
			rw.unlock_shared();
		});
	});
	USMP_REQUIRE_DEATH(r2, "shared unlock of (rw) umode rw @ ");
	USMP_REQUIRE_DEATH(r2, "while exclusively locked from ");
}

TEST_CASE("unlock of a mutex not held", "[death][witness]")
{
	auto r = test::run_death("not locked", [] {
		abort_mode(1, [] {
			mutex m("unheld mtx");
			m.unlock();
		});
	});
	USMP_REQUIRE_DEATH(r, "lock (sleep mutex) unheld mtx not locked @ ");
	USMP_REQUIRE_DEATH(r, "witness_death.cc:");
}

TEST_CASE("recursion on a non-recursive mutex", "[death][witness]")
{
	auto r = test::run_death("recursion", [] {
		abort_mode(1, [] {
			mutex m("rec mtx");
			m.lock();
			m.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "recursed on non-recursive lock (sleep mutex) rec mtx @ ");
	USMP_REQUIRE_DEATH(r, "first acquired @ ");
}

TEST_CASE("blockable lock in a critical section or with a spin lock held",
    "[death][witness]")
{
	auto r = test::run_death("critical", [] {
		abort_mode(1, [] {
			mutex m("crit mtx");
			critical_enter();
			m.lock();
		});
	});
	USMP_REQUIRE_DEATH(r, "acquiring blockable sleep lock with spinlock or "
			      "critical section held (sleep mutex) crit mtx @ ");
	auto r2 = test::run_death("spin held", [] {
		abort_mode(1, [] {
			spin_mutex s("crit spin");
			rwlock rw("crit rw");
			s.lock();
			rw.lock_shared();
		});
	});
	USMP_REQUIRE_DEATH(r2, "acquiring blockable sleep lock with spinlock or "
			       "critical section held (rw) crit rw @ ");
}

TEST_CASE("sleeping with a spin lock held", "[death][witness]")
{
	auto r = test::run_death("sleep spin", [] {
		abort_mode(1, [] {
			spin_mutex s("nap spin");
			s.lock();
			usmp::pause("nap", std::chrono::milliseconds(1));
		});
	});
	USMP_REQUIRE_DEATH(r, "Sleeping on \"nap\" with the following "
			      "non-sleepable locks held:\n exclusive spin mutex "
			      "nap spin r = 0 (");
}

TEST_CASE("upgrade and downgrade misuse", "[death][witness]")
{
	auto r = test::run_death("downgrade shared", [] {
		abort_mode(1, [] {
			sx s("dg sx");
			s.lock_shared();
			s.downgrade();
		});
	});
	USMP_REQUIRE_DEATH(r, "downgrade of shared lock (sx) dg sx @ ");
	auto r2 = test::run_death("upgrade excl", [] {
		abort_mode(1, [] {
			rwlock rw("ug rw");
			rw.lock();
			(void)rw.try_upgrade();
		});
	});
	USMP_REQUIRE_DEATH(r2, "upgrade of exclusive lock (rw) ug rw @ ");
	auto r3 = test::run_death("upgrade recursed", [] {
		abort_mode(1, [] {
			sx s("ug sx");
			s.lock_shared();
			s.lock_shared();
			(void)s.try_upgrade();
		});
	});
	USMP_REQUIRE_DEATH(r3, "upgrade of recursed lock (sx) ug sx r=1 @ ");
	auto r4 = test::run_death("downgrade recursed", [] {
		abort_mode(1, [] {
			sx s("dg rec", LOCK_RECURSE);
			s.lock();
			s.lock();
			s.downgrade();
		});
	});
	USMP_REQUIRE_DEATH(r4, "downgrade of recursed lock (sx) dg rec r=1 @ ");
}

TEST_CASE("a saved graph makes a reversal across two processes",
    "[death][witness]")
{
	char path[] = "/tmp/usmp-witness-graph-XXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	close(fd);
	std::string p = path;
	// Process 1: learns "xproc A" -> "xproc B" and saves it.
	auto r1 = test::run_death("first process", [p] {
		run({.ncpus = 1}, [] {
			mutex a("xproc A"), b("xproc B");
			a.lock();
			b.lock();
			b.unlock();
			a.unlock();
		});
		_exit(witness_save_graph(p.c_str()));
	});
	INFO(r1.describe());
	REQUIRE(r1.exited_with(0));
	// Process 2: loads it, and takes B then A.
	auto r2 = test::run_death("second process", [p] {
		if (witness_load_graph(p.c_str()) != 0)
			_exit(3);
		abort_mode(1, [] {
			mutex a("xproc A"), b("xproc B");
			b.lock();
			a.lock();
		});
	});
	unlink(path);
	USMP_REQUIRE_DEATH(r2, "lock order reversal:\n 1st ");
	USMP_REQUIRE_DEATH(r2, "xproc B (xproc B, sleep mutex) @ ");
	USMP_REQUIRE_DEATH(r2, "lock order xproc A -> xproc B established at:\n "
			       "xproc A (xproc A) @ ");
	// The first process's sites and its name[pid], then its stack.
	USMP_REQUIRE_DEATH(r2, ", in test_sync_witn");
	USMP_REQUIRE_DEATH(r2, "lock order xproc B -> xproc A attempted at:");
}

TEST_CASE("a real deadlock is reported with threads, locks and sites",
    "[death][witness]")
{
	auto r = test::run_death("deadlock", [] {
		abort_mode(2, [] {
			// Blessed: the reversal is recorded, not reported,
			// so that the deadlock itself is what is reported.
			witness_bless("dl A", "dl B");
			mutex a("dl A"), b("dl B");
			std::atomic<int> step{0};
			green_thread t([&] {
				b.lock();
				step = 1;
				while (step.load() != 2)
					thread_yield();
				a.lock(); // waits for the main thread
			});
			a.lock();
			while (step.load() != 1)
				thread_yield();
			step = 2;
			b.lock(); // waits for t: a cycle
		});
	}, {.timeout = std::chrono::milliseconds(60'000)});
	USMP_REQUIRE_DEATH(r, "deadlock: 2 threads wait for each other's locks:");
	USMP_REQUIRE_DEATH(r, "waits for (sleep mutex) dl A @ ");
	USMP_REQUIRE_DEATH(r, "waits for (sleep mutex) dl B @ ");
	USMP_REQUIRE_DEATH(r, "while holding (sleep mutex) dl");
	USMP_REQUIRE_DEATH(r, "witness_death.cc:");
	CHECK(!r.timed_out);
}

TEST_CASE("a thread that exits holding a lock panics in abort mode",
    "[death][witness]")
{
	auto r = test::run_death("exit held", [] {
		abort_mode(1, [] {
			static mutex lost("dexit lost");
			green_thread t([] { lost.lock(); });
			t.join();
		});
	});
	USMP_REQUIRE_DEATH(r, "exiting with the following locks held:\n "
			      "exclusive sleep mutex dexit lost r = 0 (");
	USMP_REQUIRE_DEATH(r, "thread exiting with locks held");
}

TEST_CASE("a deadlock through a shared holder of an sx is reported",
    "[death][witness]")
{
	// t holds S shared and blocks on X, which the main thread holds; the
	// main thread blocks to take S exclusively, waiting for t, a reader.
	auto r = test::run_death("deadlock sx shared", [] {
		abort_mode(2, [] {
			witness_bless("dlsx S", "dlsx X"); // report the deadlock
			sx s("dlsx S"), x("dlsx X");
			std::atomic<int> step{0};
			green_thread t([&] {
				s.lock_shared();
				step = 1;
				while (step.load() != 2)
					thread_yield();
				x.lock(); // waits for the main thread
			});
			x.lock();
			while (step.load() != 1)
				thread_yield();
			step = 2;
			s.lock(); // waits for t, a shared holder: a cycle
		});
	}, {.timeout = std::chrono::milliseconds(60'000)});
	USMP_REQUIRE_DEATH(r, "deadlock: 2 threads wait for each other's locks:");
	USMP_REQUIRE_DEATH(r, "waits for (sx) dlsx S @ ");
	USMP_REQUIRE_DEATH(r, "while holding (sx) dlsx S share locked @ ");
	USMP_REQUIRE_DEATH(r, "while holding (sx) dlsx X locked @ ");
	CHECK(!r.timed_out);
}

TEST_CASE("a deadlock through a reader of an rwlock is reported",
    "[death][witness]")
{
	auto r = test::run_death("deadlock rw reader", [] {
		abort_mode(2, [] {
			witness_bless("dlrw R", "dlrw M");
			rwlock rw("dlrw R");
			mutex mx("dlrw M");
			std::atomic<int> step{0};
			green_thread t([&] {
				rw.lock_shared();
				step = 1;
				while (step.load() != 2)
					thread_yield();
				mx.lock(); // waits for the main thread
			});
			mx.lock();
			while (step.load() != 1)
				thread_yield();
			step = 2;
			rw.lock(); // waits for t, a reader: a cycle
		});
	}, {.timeout = std::chrono::milliseconds(60'000)});
	USMP_REQUIRE_DEATH(r, "deadlock: 2 threads wait for each other's locks:");
	USMP_REQUIRE_DEATH(r, "waits for (rw) dlrw R @ ");
	USMP_REQUIRE_DEATH(r, "while holding (rw) dlrw R share locked @ ");
	USMP_REQUIRE_DEATH(r, "while holding (sleep mutex) dlrw M locked @ ");
	CHECK(!r.timed_out);
}

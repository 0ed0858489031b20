// Turnstiles: priority propagation (the Mars Pathfinder inversion), chained
// propagation through three mutexes, and the priority given back.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>

#include "runtime/thread.h"
#include "sched/priority.h"
#include "sched/sched.h"
#include "support/machine.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/turnstile.h"

using namespace usmp;
using namespace std::chrono_literals;

namespace {

// CPU work in application code with preemption points.
__attribute__((noinline)) void
burn(long iterations)
{
	for (long i = 0; i < iterations; i++) {
		for (int k = 0; k < 200; k++)
			asm volatile("" ::: "memory");
		if ((i & 63) == 0)
			maybe_yield();
	}
}

struct inversion_result {
	int h_order = 0; // when H got the lock (sequence number)
	int m_order = 0; // when M finished its work
};

// One CPU.  L (kernel priority 80) holds m and has work left; H (50) blocks
// on m; M (60) is CPU-bound for 300 ms.  The test thread runs at 20.
inversion_result
pathfinder(bool propagate)
{
	inversion_result res;
	test::machine m(1);
	m.run([&] {
		REQUIRE(sched_prio(curthread(), 20) == 0);
		turnstile_set_propagation(propagate);
		mutex mtx("bus");
		std::atomic<int> seq{0};
		std::atomic<bool> l_locked{false}, go{false};
		thread_attr la;
		la.priority = 80;
		la.name = "L";
		green_thread L(la, [&] {
			mtx.lock();
			l_locked = true;
			// Keep it until M and H exist (however late the test
			// thread's timer fires on a loaded host), then work.
			while (!go)
				maybe_yield();
			burn(20000); // some ms of work holding the lock
			mtx.unlock();
		});
		while (!l_locked)
			thread_sleep(1ms);
		thread_attr ma;
		ma.priority = 60;
		ma.name = "M";
		green_thread M(ma, [&] {
			auto end = std::chrono::steady_clock::now() + 300ms;
			while (std::chrono::steady_clock::now() < end)
				burn(100);
			res.m_order = ++seq;
		});
		thread_attr ha;
		ha.priority = 50;
		ha.name = "H";
		green_thread H(ha, [&] {
			mtx.lock();
			res.h_order = ++seq;
			mtx.unlock();
		});
		go = true;
		H.join();
		M.join();
		L.join();
		turnstile_set_propagation(true);
	});
	return res;
}

} // namespace

TEST_CASE("priority inversion: with propagation H gets the lock before M ends", "[unit]")
{
	inversion_result r = pathfinder(true);
	CHECK(r.h_order == 1);
	CHECK(r.m_order == 2);
}

TEST_CASE("priority inversion: without propagation M starves H (test hook)", "[unit]")
{
	inversion_result r = pathfinder(false);
	CHECK(r.m_order == 1);
	CHECK(r.h_order == 2);
}

TEST_CASE("chained propagation through three mutexes, given back on release", "[unit]")
{
	test::machine m(1);
	m.run([] {
		REQUIRE(sched_prio(curthread(), 20) == 0);
		mutex m1("m1"), m2("m2"), m3("m3");
		std::atomic<bool> release{false};
		std::atomic<int> stage{0};
		std::atomic<int> after[3] = {0, 0, 0};
		thread_attr a;
		a.priority = 100;
		a.name = "L1";
		green_thread L1(a, [&] {
			m1.lock();
			stage = 1;
			while (!release)
				thread_yield();
			m1.unlock();
			after[0] = curthread()->td_priority;
		});
		while (stage != 1)
			thread_sleep(1ms);
		a.name = "L2";
		green_thread L2(a, [&] {
			m2.lock();
			stage = 2;
			m1.lock();
			m1.unlock();
			m2.unlock();
			after[1] = curthread()->td_priority;
		});
		while (stage != 2)
			thread_sleep(1ms);
		a.name = "L3";
		green_thread L3(a, [&] {
			m3.lock();
			stage = 3;
			m2.lock();
			m2.unlock();
			m3.unlock();
			after[2] = curthread()->td_priority;
		});
		while (stage != 3)
			thread_sleep(1ms);
		thread_sleep(5ms); // L3 blocks on m2
		CHECK(L1.native_handle()->td_priority == 100);
		thread_attr ha;
		ha.priority = 50;
		ha.name = "H";
		std::atomic<bool> h_done{false};
		green_thread H(ha, [&] {
			m3.lock();
			m3.unlock();
			h_done = true;
		});
		thread_sleep(5ms); // H blocks on m3: 50 flows to L3, L2, L1
		CHECK(!h_done);
		CHECK(L3.native_handle()->td_priority == 50);
		CHECK(L2.native_handle()->td_priority == 50);
		CHECK(L1.native_handle()->td_priority == 50);
		CHECK(m1.owner() == L1.native_handle());
		release = true;
		H.join();
		L3.join();
		L2.join();
		L1.join();
		CHECK(h_done);
		// Each got its own priority back on release.
		CHECK(after[0] == 100);
		CHECK(after[1] == 100);
		CHECK(after[2] == 100);
	});
}

TEST_CASE("a write owner of an rwlock borrows a blocked reader's priority", "[unit]")
{
	test::machine m(1);
	m.run([] {
		REQUIRE(sched_prio(curthread(), 20) == 0);
		rwlock rw("rw pi");
		std::atomic<bool> locked{false}, release{false};
		std::atomic<int> after{0};
		thread_attr a;
		a.priority = 100;
		a.name = "W";
		green_thread W(a, [&] {
			rw.lock();
			locked = true;
			while (!release)
				thread_yield();
			rw.unlock();
			after = curthread()->td_priority;
		});
		while (!locked)
			thread_sleep(1ms);
		thread_attr ra;
		ra.priority = 60;
		ra.name = "R";
		green_thread R(ra, [&] {
			rw.lock_shared();
			rw.unlock_shared();
		});
		thread_sleep(5ms);
		CHECK(W.native_handle()->td_priority == 60);
		release = true;
		R.join();
		W.join();
		CHECK(after == 100);
	});
}

namespace {

// Wait (sleeping) until td is blocked on a turnstile.
void
await_blocked_on_lock(thread *td)
{
	while (!(td->td_inhibitors & TDI_LOCK))
		thread_sleep(1ms);
}

} // namespace

TEST_CASE("sched_prio of a thread blocked on a turnstile re-sorts it and "
	  "propagates (turnstile_adjust)", "[unit]")
{
	test::machine m(1);
	m.run([] {
		REQUIRE(sched_prio(curthread(), 20) == 0);
		mutex ma("ma"), mb("mb"), mc("mc");
		std::atomic<int> stage{0};
		std::atomic<bool> release_b{false}, release_a{false};
		std::atomic<int> pri_after_b{0};
		thread_attr a;
		a.priority = 200;
		a.name = "L";
		green_thread L(a, [&] {
			ma.lock();
			mb.lock();
			stage = 1;
			while (!release_b)
				thread_yield();
			mb.unlock();
			// Lent now only through ma: its first waiter's.
			pri_after_b = curthread()->td_priority;
			while (!release_a)
				thread_yield();
			ma.unlock();
		});
		while (stage != 1)
			thread_sleep(1ms);
		auto blocker = [&](mutex &mx, int pri, const char *name) {
			thread_attr wa;
			wa.priority = pri;
			wa.name = name;
			return green_thread(wa, [&mx] {
				mx.lock();
				mx.unlock();
			});
		};
		// Each must be better than L's priority of the moment to run
		// (L spins in thread_yield) and block.
		green_thread X = blocker(mb, 180, "X");
		await_blocked_on_lock(X.native_handle());
		green_thread W1 = blocker(ma, 170, "W1");
		await_blocked_on_lock(W1.native_handle());
		green_thread W2 = blocker(ma, 160, "W2");
		await_blocked_on_lock(W2.native_handle());
		CHECK(L.native_handle()->td_priority == 160);

		// W1 gets better than W2: lent to L at once...
		REQUIRE(sched_prio(W1.native_handle(), 150) == 0);
		CHECK(W1.native_handle()->td_priority == 150);
		CHECK(L.native_handle()->td_priority == 150);
		// ...and W1 now heads ma's queue: when mb's release makes L
		// recompute what it borrows, it still gets 150, not W2's 160.
		release_b = true;
		while (pri_after_b == 0)
			thread_sleep(1ms);
		CHECK(pri_after_b == 150);

		// Along a chain: Y blocks on mc, owned by K, which blocks on ma
		// (owned by L).  Raising Y raises K and L.
		std::atomic<bool> k_has_c{false};
		a.priority = 140;
		a.name = "K";
		green_thread K(a, [&] {
			mc.lock();
			k_has_c = true;
			ma.lock();
			ma.unlock();
			mc.unlock();
		});
		while (!k_has_c)
			thread_sleep(1ms);
		await_blocked_on_lock(K.native_handle());
		green_thread Y = blocker(mc, 130, "Y");
		await_blocked_on_lock(Y.native_handle());
		CHECK(K.native_handle()->td_priority == 130);
		CHECK(L.native_handle()->td_priority == 130);
		REQUIRE(sched_prio(Y.native_handle(), 100) == 0);
		CHECK(K.native_handle()->td_priority == 100);
		CHECK(L.native_handle()->td_priority == 100);

		release_a = true;
		L.join();
		W1.join();
		W2.join();
		X.join();
		K.join();
		Y.join();
	});
}

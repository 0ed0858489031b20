// Lock profiling: figures that match a scripted hold and wait, for every
// lock class (sleep and spin mutexes, sx and rw, exclusive and shared).  In the
// default build (USMP_LOCK_PROFILING=OFF) it checks that nothing is
// recorded and the table says so; the ctest build_options_on
// (tests/CMakeLists.txt) builds and runs this file with it ON.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>

#include "runtime/config.h"
#include "support/machine.h"
#include "sync/lock_profile.h"
#include "runtime/thread.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/sx.h"
#include "sync/witness.h"

using namespace std::chrono_literals;
using namespace usmp;

namespace {

const lock_profile_record *
find(const std::vector<lock_profile_record> &v, const char *type, int line)
{
	for (const auto &r : v)
		if (std::string(r.type) == type && r.line == line)
			return &r;
	return nullptr;
}

} // namespace

TEST_CASE("lock profiling: a scripted hold and wait", "[unit][profiling]")
{
	witness_set_mode(witness_mode::off); // hold times without WITNESS
	lock_profile_reset();
	int hold_line = 0, wait_line = 0;
	test::machine m(2);
	m.run([&] {
		mutex mtx("prof scripted");
		std::atomic<int> step{0};
		green_thread holder([&] {
			hold_line = __LINE__ + 1;
			mtx.lock();
			step = 1;
			// Hold it at least 30 ms while the other thread waits
			// (a mutex holder may not sleep: yield instead).
			auto t0 = std::chrono::steady_clock::now();
			while (std::chrono::steady_clock::now() - t0 < 30ms)
				thread_yield();
			mtx.unlock();
		});
		while (step.load() != 1)
			thread_yield();
		wait_line = __LINE__ + 1;
		mtx.lock(); // contested: waits until the holder's pause ends
		mtx.unlock();
		holder.join();
		for (int i = 0; i < 10; i++) {
			mtx.lock();
			mtx.unlock();
		}
	});
	witness_set_mode(witness_mode::warn);
	auto recs = lock_profile_records();
	std::string table = lock_profile_stats();
	INFO(table);
	if constexpr (!config::lock_profiling) {
		CHECK(recs.empty());
		CHECK(table.find("not built in") != std::string::npos);
		return;
	}
	const lock_profile_record *h = find(recs, "prof scripted", hold_line);
	const lock_profile_record *w = find(recs, "prof scripted", wait_line);
	REQUIRE(h != nullptr);
	REQUIRE(w != nullptr);
	CHECK(h->count == 1);
	CHECK(h->contested == 0);
	CHECK(h->hold_max >= 30'000'000); // at least the scripted 30 ms
	CHECK(h->hold_total == h->hold_max);
	CHECK(w->count == 1);
	CHECK(w->contested == 1);
	CHECK(w->wait_max > 0);
	CHECK(w->wait_total == w->wait_max);
	CHECK(std::string(w->cls) == "sleep mutex");
	CHECK(table.find("wait_max       total  wait_total       count") !=
	    std::string::npos);
	CHECK(table.find("cnt_hold cnt_lock name") != std::string::npos);
	CHECK(table.find("lock_profile_unit.cc:" + std::to_string(hold_line) +
		  " (sleep mutex:prof scripted)") != std::string::npos);
	// The loop's site: 10 acquisitions, none contested.
	bool loop = false;
	for (const auto &r : recs)
		if (std::string(r.type) == "prof scripted" && r.count == 10 &&
		    r.contested == 0)
			loop = true;
	CHECK(loop);
}

namespace {

// One scripted hold and wait on a lock of any class: a holder bound to CPU
// 1 takes it exclusively (hold()), keeps it at least 30 ms, and releases it;
// meanwhile this thread (CPU 0) takes it with wait() and releases it with
// done().  Records the two sites' lines.  keep: how the holder passes 30 ms
// with the lock held (a spin mutex holder may not yield).
template <class Hold, class Release, class Wait, class Done, class Keep>
void
scripted(int &hold_line, int &wait_line, Hold hold, Release release,
    Wait wait, Done done, Keep keep)
{
	std::atomic<int> step{0};
	thread_attr a;
	a.cpu = 1;
	a.name = "prof holder";
	green_thread holder(a, [&] {
		hold_line = hold();
		step = 1;
		auto t0 = std::chrono::steady_clock::now();
		while (std::chrono::steady_clock::now() - t0 < 30ms)
			keep();
		release();
	});
	while (step.load() != 1)
		thread_yield();
	wait_line = wait(); // contested: the holder keeps it 30 ms
	done();
	holder.join();
}

void
check_scripted(const std::vector<lock_profile_record> &recs, const char *type,
    const char *cls, int hold_line, int wait_line, bool wait_exclusive)
{
	INFO(type);
	const lock_profile_record *h = find(recs, type, hold_line);
	const lock_profile_record *w = find(recs, type, wait_line);
	REQUIRE(h != nullptr);
	REQUIRE(w != nullptr);
	CHECK(std::string(h->cls) == cls);
	CHECK(h->count == 1);
	CHECK(h->contested == 0);
	CHECK(h->wait_total == 0);
	CHECK(h->hold_max >= 30'000'000);
	CHECK(h->hold_total == h->hold_max);
	CHECK(w->count == 1);
	CHECK(w->contested == 1);
	CHECK(w->wait_max > 0);
	CHECK(w->wait_total == w->wait_max);
	// Timed from acquisition to release, in either mode (a shared hold
	// by its holder's record).
	(void)wait_exclusive;
	CHECK(w->hold_total == w->hold_max);
	CHECK(w->hold_max > 0);
}

} // namespace

TEST_CASE("lock profiling: spin mutexes, sx and rwlocks, both modes",
    "[unit][profiling]")
{
	witness_set_mode(witness_mode::off);
	lock_profile_reset();
	int spin_h = 0, spin_w = 0, sxx_h = 0, sxx_w = 0, sxs_h = 0, sxs_w = 0;
	int rww_h = 0, rww_w = 0, rwr_h = 0, rwr_w = 0;
	test::machine m(2);
	m.run([&] {
		spin_mutex sm("prof spin");
		sx s1("prof sx x"), s2("prof sx s");
		rwlock r1("prof rw w"), r2("prof rw r");
		auto spin = [] {}; // a spin mutex holder may not yield
		auto yield = [] { thread_yield(); };
		scripted(spin_h, spin_w,
		    [&] { int l = __LINE__; sm.lock(); return l; },
		    [&] { sm.unlock(); },
		    [&] { int l = __LINE__; sm.lock(); return l; },
		    [&] { sm.unlock(); }, spin);
		scripted(sxx_h, sxx_w,
		    [&] { int l = __LINE__; s1.lock(); return l; },
		    [&] { s1.unlock(); },
		    [&] { int l = __LINE__; s1.lock(); return l; },
		    [&] { s1.unlock(); }, yield);
		scripted(sxs_h, sxs_w,
		    [&] { int l = __LINE__; s2.lock(); return l; },
		    [&] { s2.unlock(); },
		    [&] { int l = __LINE__; s2.lock_shared(); return l; },
		    [&] { s2.unlock_shared(); }, yield);
		scripted(rww_h, rww_w,
		    [&] { int l = __LINE__; r1.lock(); return l; },
		    [&] { r1.unlock(); },
		    [&] { int l = __LINE__; r1.lock(); return l; },
		    [&] { r1.unlock(); }, yield);
		scripted(rwr_h, rwr_w,
		    [&] { int l = __LINE__; r2.lock(); return l; },
		    [&] { r2.unlock(); },
		    [&] { int l = __LINE__; r2.lock_shared(); return l; },
		    [&] { r2.unlock_shared(); }, yield);
	});
	witness_set_mode(witness_mode::warn);
	auto recs = lock_profile_records();
	INFO(lock_profile_stats());
	if constexpr (!config::lock_profiling) {
		CHECK(recs.empty());
		return;
	}
	check_scripted(recs, "prof spin", "spin mutex", spin_h, spin_w, true);
	check_scripted(recs, "prof sx x", "sx", sxx_h, sxx_w, true);
	check_scripted(recs, "prof sx s", "sx", sxs_h, sxs_w, false);
	check_scripted(recs, "prof rw w", "rw", rww_h, rww_w, true);
	check_scripted(recs, "prof rw r", "rw", rwr_h, rwr_w, false);
}

namespace {

// Holds curthread in a loop for at least d (a lock holder that may not
// sleep: an rwlock's).
void
keep_for(std::chrono::milliseconds d)
{
	auto t0 = std::chrono::steady_clock::now();
	while (std::chrono::steady_clock::now() - t0 < d)
		thread_yield();
}

} // namespace

TEST_CASE("lock profiling: shared holds are timed per holder, across "
	  "upgrade and downgrade", "[unit][profiling]")
{
	witness_set_mode(witness_mode::off);
	lock_profile_reset();
	int long_line = 0, short_line = 0, down_line = 0, up_line = 0;
	int rw_down_line = 0, rw_up_line = 0;
	test::machine m(2);
	m.run([&] {
		sx s("prof shared sx");
		rwlock rw("prof shared rw");
		// Two readers overlap: one holds 40 ms, the other 5 ms inside
		// that; each hold is timed by its own holder.
		std::atomic<int> step{0};
		thread_attr a;
		a.cpu = 1;
		green_thread other(a, [&] {
			while (step.load() != 1)
				thread_yield();
			short_line = __LINE__ + 1;
			s.lock_shared();
			keep_for(5ms);
			s.unlock_shared();
			step = 2;
		});
		long_line = __LINE__ + 1;
		s.lock_shared();
		step = 1;
		while (step.load() != 2)
			thread_yield();
		keep_for(40ms);
		s.unlock_shared();
		other.join();
		// Exclusive 10 ms, then shared 20 ms: one hold of 30 ms, at
		// the site that began it.
		down_line = __LINE__ + 1;
		s.lock();
		keep_for(10ms);
		s.downgrade();
		keep_for(20ms);
		s.unlock_shared();
		// Shared 10 ms, then exclusive 20 ms.
		up_line = __LINE__ + 1;
		s.lock_shared();
		keep_for(10ms);
		REQUIRE(s.try_upgrade());
		keep_for(20ms);
		s.unlock();
		// The same two for an rwlock.
		rw_down_line = __LINE__ + 1;
		rw.lock();
		keep_for(10ms);
		rw.downgrade();
		keep_for(20ms);
		rw.unlock_shared();
		rw_up_line = __LINE__ + 1;
		rw.lock_shared();
		keep_for(10ms);
		REQUIRE(rw.try_upgrade());
		keep_for(20ms);
		rw.unlock();
	});
	witness_set_mode(witness_mode::warn);
	auto recs = lock_profile_records();
	INFO(lock_profile_stats());
	if constexpr (!config::lock_profiling) {
		CHECK(recs.empty());
		return;
	}
	const lock_profile_record *l = find(recs, "prof shared sx", long_line);
	const lock_profile_record *sh = find(recs, "prof shared sx", short_line);
	REQUIRE(l != nullptr);
	REQUIRE(sh != nullptr);
	CHECK(l->hold_max >= 45'000'000); // its wait for the other, then 40 ms
	CHECK(sh->hold_max >= 5'000'000);
	CHECK(sh->hold_max < l->hold_max);
	CHECK(l->count == 1);
	CHECK(sh->count == 1);
	for (auto [type, line] : {std::pair{"prof shared sx", down_line},
		 {"prof shared sx", up_line}, {"prof shared rw", rw_down_line},
		 {"prof shared rw", rw_up_line}}) {
		INFO(type << ":" << line);
		const lock_profile_record *r = find(recs, type, line);
		REQUIRE(r != nullptr);
		CHECK(r->count == 1);
		CHECK(r->hold_max >= 30'000'000);
		CHECK(r->hold_total == r->hold_max);
	}
	// Nothing was attributed to the mode changes' own lines.
	for (const auto &r : recs)
		if (std::string(r.type).rfind("prof shared", 0) == 0)
			CHECK((r.line == long_line || r.line == short_line ||
			    r.line == down_line || r.line == up_line ||
			    r.line == rw_down_line || r.line == rw_up_line));
}

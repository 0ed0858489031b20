// Lock profiling: figures that match a scripted hold and wait.  In the
// default build (USMP_LOCK_PROFILING=OFF) it checks that nothing is
// recorded and the table says so; the ctest test_sync_lock_profile_on
// (lock_profile_unit.cmake) builds and runs this file with it ON.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>

#include "runtime/config.h"
#include "support/machine.h"
#include "sync/lock_profile.h"
#include "sync/mutex.h"
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

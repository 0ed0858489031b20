// WITNESS under load: 1,000,000 acquisitions in consistent orders by 8
// threads on 8 CPUs (mutexes, an sx shared and exclusive, rwlocks, a spin
// mutex, try-locks, recursion where allowed; the locks shared by all
// threads, so the threads block on each other) must give no report at all,
// and every held list must be empty at the end.
#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <vector>

#include "support/machine.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/sx.h"
#include "sync/witness.h"

using namespace usmp;

namespace {

std::atomic<uint64_t> reports{0};

void
count_cb(const witness_report &, void *)
{
	reports.fetch_add(1);
}

} // namespace

TEST_CASE("a million consistent acquisitions on 8 CPUs: no report",
    "[stress][witness]")
{
	witness_set_mode(witness_mode::warn);
	witness_set_callback(count_cb, nullptr);
	uint64_t before = witness_report_count();
	constexpr int nthreads = 8;
	constexpr long per_thread = 1'000'000 / nthreads;
	std::atomic<long> acquisitions{0};
	test::machine m(8);
	m.run([&] {
		sx top("stress top");
		mutex a("stress a"), b("stress b", nullptr, LOCK_RECURSE);
		rwlock rw("stress rw");
		mutex leaf_type_1("stress leaf 1", "stress leaf", LOCK_DUPOK);
		mutex leaf_type_2("stress leaf 2", "stress leaf", LOCK_DUPOK);
		spin_mutex sp("stress spin");
		std::vector<green_thread> ts;
		for (int t = 0; t < nthreads; t++) {
			ts.emplace_back([&, t] {
				long n = 0;
				unsigned i = static_cast<unsigned>(t);
				while (n < per_thread) {
					i = i * 1103515245u + 12345u;
					bool shared = (i >> 8) & 1;
					if (shared)
						top.lock_shared();
					else
						top.lock();
					a.lock();
					b.lock();
					b.lock(); // recursion: b is LOCK_RECURSE
					if ((i >> 9) & 1)
						rw.lock_shared();
					else
						rw.lock();
					leaf_type_1.lock();
					if (leaf_type_2.try_lock())
						leaf_type_2.unlock(), n++;
					sp.lock();
					sp.unlock();
					leaf_type_1.unlock();
					if ((i >> 9) & 1)
						rw.unlock_shared();
					else
						rw.unlock();
					b.unlock();
					b.unlock();
					a.unlock();
					if (shared)
						top.unlock_shared();
					else
						top.unlock();
					n += 7;
				}
				CHECK(witness_held_count() == 0);
				acquisitions.fetch_add(n);
			});
		}
		for (auto &t : ts)
			t.join();
	});
	witness_set_callback(nullptr, nullptr);
	CHECK(acquisitions.load() >= 1'000'000);
	CHECK(reports.load() == 0);
	CHECK(witness_report_count() == before);
}

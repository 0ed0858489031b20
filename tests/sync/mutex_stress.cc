// Stress: many threads updating shared counters under spin_mutex, mutex and
// rwlock (writers, with readers checking consistency, upgrading and
// downgrading), over 1, 2, 4 and 8 CPUs on 2 cores with full preemption.
// Seeded: the seed picks the per-thread work and yield pattern.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "runtime/thread.h"
#include "sched/sched.h"
#include "support/machine.h"
#include "support/seed.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"

using namespace usmp;

namespace {

struct rng {
	uint64_t s;
	uint64_t next()
	{
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		return s;
	}
};

constexpr int nthreads = 16;
constexpr int iters = 20000;

} // namespace

TEST_CASE("stress: counters under spin_mutex, mutex and rwlock", "[stress]")
{
	USMP_TEST_SEED(seed);
	for (int ncpu : {1, 2, 4, 8}) {
		INFO("ncpus " << ncpu);
		test::machine m(ncpu, true);
		m.run([&] {
			spin_mutex sm("stress spin");
			mutex mx("stress mutex");
			mutex rec("stress rec", nullptr, LOCK_RECURSE);
			rwlock rw("stress rw");
			long c_spin = 0, c_mtx = 0, c_rec = 0;
			long rw_a = 0, rw_b = 0;
			std::atomic<long> bad{0};
			std::vector<green_thread> ts;
			for (int t = 0; t < nthreads; t++) {
				thread_attr a;
				a.priority = PRI_MIN_KERN + (t % 3) * 20;
				ts.emplace_back(a, [&, t] {
					rng r{test::derive_seed(seed, t * 16 + ncpu) | 1};
					for (int k = 0; k < iters; k++) {
						uint64_t x = r.next();
						sm.lock();
						c_spin++;
						sm.unlock();

						mx.lock();
						c_mtx++;
						if ((x & 15) == 0)
							thread_yield();
						mx.unlock();

						rec.lock();
						rec.lock();
						c_rec++;
						rec.unlock();
						rec.unlock();

						switch ((x >> 8) & 3) {
						case 0:
							rw.lock();
							rw_a++;
							if ((x & 0x30000) == 0)
								thread_yield();
							rw_b++;
							rw.unlock();
							break;
						case 1:
							rw.lock_shared();
							if (rw_a != rw_b)
								bad++;
							rw.lock_shared(); // recurse
							rw.unlock_shared();
							if (rw.try_upgrade()) {
								rw_a++;
								rw_b++;
								rw.downgrade();
							}
							if (rw_a != rw_b)
								bad++;
							rw.unlock_shared();
							break;
						case 2:
							rw.lock();
							rw_a++;
							rw_b++;
							rw.downgrade();
							if (rw_a != rw_b)
								bad++;
							rw.unlock_shared();
							break;
						default:
							rw.lock_shared();
							if (rw_a != rw_b)
								bad++;
							rw.unlock_shared();
							break;
						}
					}
				});
			}
			for (auto &t : ts)
				t.join();
			REQUIRE(c_spin == long(nthreads) * iters);
			REQUIRE(c_mtx == long(nthreads) * iters);
			REQUIRE(c_rec == long(nthreads) * iters);
			REQUIRE(rw_a == rw_b);
			REQUIRE(bad == 0);
		});
	}
}

TEST_CASE("stress: foreign OS threads and green threads on one mutex", "[stress]")
{
	for (int ncpu : {1, 4}) {
		INFO("ncpus " << ncpu);
		test::machine m(ncpu, true);
		mutex mx("mixed");
		long counter = 0;
		std::vector<std::thread> os;
		for (int i = 0; i < 3; i++)
			os.emplace_back([&] {
				for (int k = 0; k < 20000; k++) {
					mx.lock();
					counter++;
					mx.unlock();
				}
			});
		m.run([&] {
			std::vector<green_thread> ts;
			for (int i = 0; i < 8; i++)
				ts.emplace_back([&] {
					for (int k = 0; k < 10000; k++) {
						mx.lock();
						counter++;
						mx.unlock();
					}
				});
			for (auto &t : ts)
				t.join();
		});
		for (auto &t : os)
			t.join();
		REQUIRE(counter == 3 * 20000 + 8 * 10000);
	}
}

// sx under full preemption over 1, 2, 4 and 8 CPUs: readers always see a
// consistent snapshot while writers write, upgrade and downgrade.  Seeded.
#include <catch2/catch.hpp>

#include <atomic>
#include <random>
#include <vector>

#include "support/machine.h"
#include "support/seed.h"
#include "runtime/thread.h"
#include "sync/sx.h"

using namespace usmp;

TEST_CASE("sx readers see consistent snapshots while writers upgrade and "
	  "downgrade", "[stress][sx]")
{
	USMP_TEST_SEED(seed);
	for (int ncpus : {1, 2, 4, 8}) {
		INFO("ncpus " << ncpus);
		test::machine m(ncpus, true);
		m.run([&] {
			sx s("snap");
			volatile long a = 0, b = 0; // invariant: a == b
			std::atomic<long> bad{0}, writes{0};
			std::vector<green_thread> ts;
			for (int i = 0; i < 8; i++) {
				ts.emplace_back([&, i] {
					std::mt19937_64 rng(test::derive_seed(seed, i));
					for (int k = 0; k < 1500; k++) {
						int op = static_cast<int>(rng() % 4);
						if (op == 0) {
							s.lock();
							a = a + 1;
							b = b + 1;
							writes++;
							s.downgrade();
							if (a != b)
								bad++;
							s.unlock_shared();
						} else if (op == 1) {
							s.lock_shared();
							if (s.try_upgrade()) {
								a = a + 1;
								b = b + 1;
								writes++;
								s.unlock();
							} else {
								if (a != b)
									bad++;
								s.unlock_shared();
							}
						} else {
							s.lock_shared();
							long x = a;
							long y = b;
							if (x != y)
								bad++;
							s.unlock_shared();
						}
					}
				});
			}
			for (auto &t : ts)
				t.join();
			CHECK(bad.load() == 0);
			CHECK(a == writes.load());
		});
	}
}

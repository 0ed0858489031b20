// usmp-demo: boot every CPU, run green threads on them, print what ran where.
//
// The main job of the README until the stress tool exists.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "runtime/machine.h"
#include "runtime/pcpu.h"
#include "runtime/thread.h"
#include "sched/sched.h"

int
main(int argc, char **argv)
{
	usmp::machine_config cfg;
	cfg.ncpus = argc > 1 ? std::atoi(argv[1]) : 0; // 0: every processing unit
	return usmp::run(cfg, [] {
		int n = usmp::mp_ncpus();
		std::printf("usmp-demo: %d CPUs booted\n", n);

		// One thread bound to each CPU says where it runs.
		std::vector<usmp::green_thread> bound;
		std::vector<int> pu(n, -1);
		for (int c = 0; c < n; c++) {
			usmp::thread_attr a;
			a.cpu = c;
			char name[32];
			std::snprintf(name, sizeof(name), "hello %d", c);
			a.name = name;
			bound.emplace_back(a, [&pu, c] {
				pu[c] = usmp::pcpu_find(usmp::curcpu())->pc_pu;
			});
		}
		for (auto &t : bound)
			t.join();
		for (int c = 0; c < n; c++)
			std::printf("  cpu%d: OS thread \"usmp cpu%d\" pinned to PU %d\n",
			    c, c, pu[c]);

		// 1000 unbound threads, created on this CPU, yield a few times;
		// idle CPUs steal them.  Count where they finished.
		std::vector<std::atomic<int>> ran(n);
		std::vector<usmp::green_thread> v;
		for (int i = 0; i < 1000; i++)
			v.emplace_back([&ran] {
				for (int k = 0; k < 10; k++)
					usmp::thread_yield();
				ran[usmp::curcpu()]++;
			});
		for (auto &t : v)
			t.join();
		std::printf("usmp-demo: 1000 threads created on cpu%d finished on:\n",
		    usmp::curcpu());
		for (int c = 0; c < n; c++)
			std::printf("  cpu%d: %d threads, %llu switches, %llu steals\n", c,
			    ran[c].load(),
			    (unsigned long long)usmp::pcpu_find(c)->pc_cnt_switches,
			    (unsigned long long)usmp::pcpu_find(c)->pc_cnt_steals);
		return 0;
	});
}

// usmp-sim-bench: runs needed to find one planted bug, by the deterministic
// simulation (runtime/sim.h) and by real-time stress on 8 CPUs.
//
// The bug: two threads increment a shared counter without a lock (read, a
// scheduling point, write).  Real-time stress finds it only when the host
// happens to interleave the two within the window; the simulation chooses
// the interleaving.  Prints the runs each needed (a cap when not found) and
// their ratio.  The figures are counts, not times: meaningful on a loaded
// machine too.
#include <cstdio>
#include <cstdlib>

#include "runtime/machine.h"
#include "runtime/sim.h"
#include "runtime/thread.h"

namespace {

// One run of the planted bug; true if the update was lost.
bool
lost_update_once()
{
	int x = 0;
	auto inc = [&] {
		int v = x;
		usmp::sim::point(); // a no-op outside the simulation
		x = v + 1;
	};
	usmp::green_thread a(inc), b(inc);
	a.join();
	b.join();
	return x != 2;
}

} // namespace

int
main(int argc, char **argv)
{
	int cap = argc > 1 ? std::atoi(argv[1]) : 200;
	if (cap <= 0)
		cap = 200;

	usmp::machine_config sim;
	sim.ncpus = 8;
	sim.simulate = true;
	sim.sim.seed = 1;
	usmp::sim::result r = usmp::sim::explore(sim, cap, [] {
		usmp::sim::check(!lost_update_once(), "lost update");
	});
	int sim_runs = r.failed ? r.runs : -1;

	int real_runs = -1;
	for (int i = 1; i <= cap && real_runs < 0; i++) {
		bool lost = false;
		usmp::run({.ncpus = 8, .full_preemption = true},
		    [&] { lost = lost_update_once(); });
		if (lost)
			real_runs = i;
	}

	auto show = [cap](int n) {
		static char b[32];
		if (n < 0)
			std::snprintf(b, sizeof(b), ">%d (not found)", cap);
		else
			std::snprintf(b, sizeof(b), "%d", n);
		return b;
	};
	std::printf("planted bug: lost update (read, point, write), 2 threads, 8 CPUs\n");
	std::printf("runs to find  simulation (random, seed 1..): %s\n", show(sim_runs));
	std::printf("runs to find  real-time stress (full preemption): %s\n",
	    show(real_runs));
	if (sim_runs > 0)
		std::printf("ratio real/sim: %s%.1f\n", real_runs < 0 ? ">" : "",
		    double(real_runs < 0 ? cap : real_runs) / sim_runs);
	return sim_runs > 0 ? 0 : 1;
}

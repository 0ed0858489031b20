// usmp-sim-bench: runs needed to find one planted bug, by the deterministic
// simulation (runtime/sim.h) and by real-time stress on 8 CPUs, as a Google
// Benchmark (like apps/bench), with the comparison printed after the run.
//
//     usmp-sim-bench                         every search, cap 1000 runs each
//     usmp-sim-bench --cap=20                a smaller cap (the ctest smoke run)
//     usmp-sim-bench --benchmark_format=json Google Benchmark's JSON only
//
// The bug: two threads increment a shared counter without a lock (read, a
// scheduling point, write).  Real-time stress finds it only when the host
// happens to interleave the two within the window; the simulation chooses
// the interleaving.  One benchmark per searcher, one iteration each (a
// search, not a hot path): its counters are `runs` (runs it needed; the cap
// when it did not find the bug), `found` (1 or 0) and `cap`.  The figures
// are counts, not times, so they mean the same on a loaded machine; the
// wall time is reported too, for information.  Exit status 1 when the
// simulation did not find the bug within the cap.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "runtime/machine.h"
#include "runtime/sim.h"
#include "runtime/thread.h"

namespace {

int g_cap = 1000;
constexpr int NCPUS = 8;

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

// Runs each searcher needed (-1: not found within the cap), by name.
std::map<std::string, int> g_found;

void
report(benchmark::State &state, const char *who, int runs)
{
	g_found[who] = runs;
	state.counters["runs"] = runs < 0 ? g_cap : runs;
	state.counters["found"] = runs < 0 ? 0 : 1;
	state.counters["cap"] = g_cap;
}

int
sim_search(usmp::sim_strategy st)
{
	usmp::machine_config cfg;
	cfg.ncpus = NCPUS;
	cfg.simulate = true;
	cfg.sim.seed = 1;
	cfg.sim.strategy = st;
	usmp::sim::result r = usmp::sim::explore(cfg, g_cap, [] {
		usmp::sim::check(!lost_update_once(), "lost update");
	});
	return r.failed ? r.runs : -1;
}

void
bm_sim(benchmark::State &state, usmp::sim_strategy st, const char *who)
{
	int runs = -1;
	for (auto _ : state)
		runs = sim_search(st);
	report(state, who, runs);
}

void
bm_realtime(benchmark::State &state)
{
	int runs = -1;
	for (auto _ : state) {
		runs = -1;
		for (int i = 1; i <= g_cap && runs < 0; i++) {
			bool lost = false;
			usmp::run({.ncpus = NCPUS, .full_preemption = true},
			    [&] { lost = lost_update_once(); });
			if (lost)
				runs = i;
		}
	}
	report(state, "real-time stress", runs);
}

} // namespace

BENCHMARK_CAPTURE(bm_sim, sim_random, usmp::sim_strategy::random,
    "simulation, random")
    ->Name("runs_to_find/lost_update/sim_random")
    ->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_sim, sim_pct, usmp::sim_strategy::pct, "simulation, pct")
    ->Name("runs_to_find/lost_update/sim_pct")
    ->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bm_realtime)
    ->Name("runs_to_find/lost_update/realtime_stress")
    ->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

int
main(int argc, char **argv)
{
	// Our flag (and the old positional cap) out of Google Benchmark's way.
	std::vector<char *> args;
	for (int i = 0; i < argc; i++) {
		if (std::strncmp(argv[i], "--cap=", 6) == 0)
			g_cap = std::atoi(argv[i] + 6);
		else if (i == 1 && argv[i][0] >= '0' && argv[i][0] <= '9')
			g_cap = std::atoi(argv[i]);
		else
			args.push_back(argv[i]);
	}
	if (g_cap <= 0) {
		std::fprintf(stderr, "usmp-sim-bench: --cap must be > 0\n");
		return 2;
	}
	int n = static_cast<int>(args.size());
	benchmark::Initialize(&n, args.data());
	if (benchmark::ReportUnrecognizedArguments(n, args.data()))
		return 2;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();

	auto show = [](int runs) {
		static char b[32];
		if (runs < 0)
			std::snprintf(b, sizeof(b), ">%d (not found)", g_cap);
		else
			std::snprintf(b, sizeof(b), "%d", runs);
		return b;
	};
	std::printf("\nplanted bug: lost update (read, point, write), 2 threads, "
		    "%d CPUs; runs to find it (cap %d)\n", NCPUS, g_cap);
	for (const auto &[who, runs] : g_found)
		std::printf("  %-22s %s\n", who.c_str(), show(runs));
	auto rt = g_found.find("real-time stress");
	for (const char *s : {"simulation, random", "simulation, pct"}) {
		auto sim = g_found.find(s);
		if (rt == g_found.end() || sim == g_found.end() || sim->second < 0)
			continue;
		int real = rt->second < 0 ? g_cap : rt->second;
		std::printf("  ratio real-time / %s: %s%.1f\n", s,
		    rt->second < 0 ? ">" : "", double(real) / sim->second);
	}
	auto r = g_found.find("simulation, random");
	return r != g_found.end() && r->second < 0 ? 1 : 0;
}

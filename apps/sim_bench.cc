// usmp-sim-bench: runs needed to find a planted bug, by the deterministic
// simulation (runtime/sim.h) and by real-time stress on 8 CPUs, as a Google
// Benchmark (like apps/bench), with the comparison printed after the run.
//
//     usmp-sim-bench                         every search, cap 1000 runs each
//     usmp-sim-bench --cap=20                a smaller cap (the ctest smoke run)
//     usmp-sim-bench --benchmark_filter=lost_update   one bug
//     usmp-sim-bench --benchmark_format=json Google Benchmark's JSON only
//
// The bugs: a lost update (two threads increment a counter without a
// lock: read, a scheduling point, write) and a missed wakeup (check, a
// scheduling point, sleep without the interlock).  Real-time stress finds
// them only when the host happens to interleave the threads within the
// window; the simulation chooses the interleaving.  One benchmark per bug
// and searcher (simulation random, simulation PCT, real-time stress), one
// iteration each (a search, not a hot path): its counters are `runs` (runs
// it needed; the cap when it did not find the bug), `found` (1 or 0) and
// `cap`.  The figures are counts, not times, so they mean the same on a
// loaded machine; the wall time is reported too, for information.  Exit
// status 1 when the random simulation missed a bug within the cap.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "runtime/machine.h"
#include "runtime/sim.h"
#include "runtime/thread.h"
#include "sync/sleep.h"

namespace {

int g_cap = 1000;
constexpr int NCPUS = 8;

// One run of a planted bug: true if it struck.  The window of each is a
// sim::point(): a scheduling point in the simulation, nothing in real time
// (where only the host's timing can open it).

// Two threads increment a counter without a lock.
bool
lost_update_once()
{
	int x = 0;
	auto inc = [&] {
		int v = x;
		usmp::sim::point();
		x = v + 1;
	};
	usmp::green_thread a(inc), b(inc);
	a.join();
	b.join();
	return x != 2;
}

// Check, then sleep without the interlock: the wakeup can come in between
// and be lost; the waiter then sleeps until its timeout (virtual time in
// the simulation).
bool
missed_wakeup_once()
{
	std::atomic<bool> ready{false}, missed{false};
	usmp::green_thread waiter([&] {
		if (!ready.load()) {
			usmp::sim::point();
			if (usmp::tsleep(&ready, 0, "ready",
				std::chrono::milliseconds(20)) == EWOULDBLOCK)
				missed = true;
		}
	});
	usmp::green_thread waker([&] {
		ready = true;
		usmp::wakeup(&ready);
	});
	waiter.join();
	waker.join();
	return missed.load();
}

struct bug {
	const char *name;
	bool (*once)();
};
constexpr bug BUGS[] = {
	{"lost_update", lost_update_once},
	{"missed_wakeup", missed_wakeup_once},
};
bool (*g_once)() = nullptr; // the bug explore() runs (a plain function)

// Runs each searcher needed (-1: not found within the cap), by
// "bug/searcher".
std::map<std::string, int> g_found;

void
report(benchmark::State &state, const std::string &key, int runs)
{
	g_found[key] = runs;
	state.counters["runs"] = runs < 0 ? g_cap : runs;
	state.counters["found"] = runs < 0 ? 0 : 1;
	state.counters["cap"] = g_cap;
}

int
sim_search(bool (*once)(), usmp::sim_strategy st)
{
	usmp::machine_config cfg;
	cfg.ncpus = NCPUS;
	cfg.simulate = true;
	cfg.sim.seed = 1;
	cfg.sim.strategy = st;
	g_once = once;
	usmp::sim::result r = usmp::sim::explore(cfg, g_cap, [] {
		usmp::sim::check(!g_once(), "the planted bug struck");
	});
	return r.failed ? r.runs : -1;
}

int
realtime_search(bool (*once)())
{
	for (int i = 1; i <= g_cap; i++) {
		bool struck = false;
		usmp::run({.ncpus = NCPUS, .full_preemption = true},
		    [&] { struck = once(); });
		if (struck)
			return i;
	}
	return -1;
}

// searcher: 0 simulation random, 1 simulation PCT, 2 real-time stress.
const char *const SEARCHERS[] = {"sim_random", "sim_pct", "realtime_stress"};

void
bm_search(benchmark::State &state, const bug *b, int searcher)
{
	int runs = -1;
	for (auto _ : state)
		runs = searcher == 2 ? realtime_search(b->once) :
		    sim_search(b->once, searcher == 0 ? usmp::sim_strategy::random :
							usmp::sim_strategy::pct);
	report(state, std::string(b->name) + "/" + SEARCHERS[searcher], runs);
}

void
register_all()
{
	for (const bug &b : BUGS)
		for (int s = 0; s < 3; s++)
			benchmark::RegisterBenchmark(
			    ("runs_to_find/" + std::string(b.name) + "/" +
				SEARCHERS[s]).c_str(), bm_search, &b, s)
			    ->Iterations(1)
			    ->UseRealTime()
			    ->Unit(benchmark::kMillisecond);
}

} // namespace

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
	register_all();
	benchmark::Initialize(&n, args.data());
	if (benchmark::ReportUnrecognizedArguments(n, args.data()))
		return 2;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();

	// runs: > 0 found after that many, < 0 not found, 0 not searched.
	auto show = [](int runs, char *b) {
		if (runs == 0)
			std::snprintf(b, 32, "-");
		else if (runs < 0)
			std::snprintf(b, 32, ">%d", g_cap);
		else
			std::snprintf(b, 32, "%d", runs);
		return b;
	};
	std::printf("\nruns to find a planted bug on %d CPUs (cap %d; counts, "
		    "not times)\n%-14s %12s %12s %16s %10s\n", NCPUS, g_cap, "bug",
	    "sim random", "sim pct", "real-time stress", "real/sim");
	for (const bug &b : BUGS) {
		int runs[3];
		bool any = false;
		for (int s = 0; s < 3; s++) {
			auto it = g_found.find(std::string(b.name) + "/" + SEARCHERS[s]);
			runs[s] = it == g_found.end() ? 0 : it->second;
			any |= it != g_found.end();
		}
		if (!any)
			continue;
		char ratio[32] = "-";
		if (runs[0] > 0 && runs[2] != 0)
			std::snprintf(ratio, sizeof(ratio), "%s%.1f",
			    runs[2] < 0 ? ">" : "",
			    double(runs[2] < 0 ? g_cap : runs[2]) / runs[0]);
		char c0[32], c1[32], c2[32];
		std::printf("%-14s %12s %12s %16s %10s\n", b.name,
		    show(runs[0], c0), show(runs[1], c1), show(runs[2], c2), ratio);
	}
	// Exit 1 if the random simulation missed one it searched for.
	for (const auto &[key, runs] : g_found)
		if (runs < 0 && key.find("/sim_random") != std::string::npos)
			return 1;
	return 0;
}

// usmp-stress: run named stress scenarios on N CPUs with full preemption,
// check their invariants, and sum up.  See apps/stress/README.md.
//
// The driver boots one machine for the whole run and gives each scenario
// the same budget (a duration or an operation count).  It watches from the
// green thread "main": progress every 100 ms, the deadline, and a watchdog
// that turns a scenario which does not finish (a deadlock, a lost wakeup)
// into a failure with a thread report instead of a hang.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include <CLI/CLI.hpp>

#include "apps/stress/stress.h"
#include "runtime/counters.h"
#include "runtime/ktr.h"
#include "runtime/machine.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/sim.h"
#include "runtime/thread.h"
#include "sync/witness.h"

namespace usmp::stress {

std::vector<scenario> &
scenarios() noexcept
{
	static std::vector<scenario> all;
	return all;
}

context::context(const char *scenario, uint64_t seed, int ncpus,
    uint64_t op_budget) noexcept
    : scenario_(scenario), seed_(seed), ncpus_(ncpus), op_budget_(op_budget)
{
}

void
context::add_ops(uint64_t n) noexcept
{
	uint64_t total = ops_.fetch_add(n, std::memory_order_relaxed) + n;
	if (op_budget_ != 0 && total >= op_budget_)
		stop();
}

void
context::fail(const char *fmt, ...) noexcept
{
	// The first failure wins the message; later ones only stop the run.
	if (!failing_.exchange(true, std::memory_order_acq_rel)) {
		va_list ap;
		va_start(ap, fmt);
		std::vsnprintf(failure_, sizeof(failure_), fmt, ap);
		va_end(ap);
		failed_.store(true, std::memory_order_release);
	}
	stop();
}

rng
context::make_rng(uint64_t stream) const noexcept
{
	// FNV-1a of the name, so that scenarios draw different numbers from
	// one seed and adding a scenario changes no other's.
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *p = scenario_; *p; p++)
		h = (h ^ uint8_t(*p)) * 0x100000001b3ull;
	rng mix(seed_ ^ h);
	mix.next();
	return rng(mix.next() + stream * 0x9e3779b97f4a7c15ull);
}

namespace {

struct options {
	std::vector<std::string> names;
	int cpus = 8;
	double seconds = 2.0;
	uint64_t iterations = 0;
	uint64_t seed = 0;
	bool seed_given = false;
	bool no_preempt = false;
	bool json = false;
	bool quiet = false;
	double watchdog = 0; // 0: max(20 s, 10 x the duration)
	std::string witness = "warn";
	std::string witness_graph;
	std::string trace;           // --trace: Chrome trace JSON path
	uint64_t trace_entries = 0;  // 0: the library's default ring size
	bool sim = false;            // --sim: deterministic simulation
	std::string strategy = "random";
	int pct_depth = 3;
	int preempt_bound = -1;
	std::string sim_log;         // --sim-log: the step log
	std::string replay_hint;     // the replay command line
};

// Seconds since t0: virtual time under --sim (the budget must not depend
// on how fast the host runs the simulation), else the steady clock.
double
elapsed(const options &o, std::chrono::steady_clock::time_point t0,
    uint64_t v0)
{
	if (o.sim)
		return double(usmp::sim::now_ns() - v0) / 1e9;
	return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
	    .count();
}

// The scheduler's counters (runtime/counters.h), read by name as sysctl
// would: kern.sched.preemptions counts every involuntary switch, those
// taken inside the preemption signal handler included.
struct sched_counts {
	uint64_t switches = 0, preemptions = 0, steals = 0;
};

uint64_t
read_counter(const char *name)
{
	uint64_t v = 0;
	if (!counter_read(name, &v))
		panic("usmp-stress: no counter \"%s\"", name);
	return v;
}

sched_counts
read_counts()
{
	return {read_counter("kern.sched.switches"),
	    read_counter("kern.sched.preemptions"),
	    read_counter("kern.sched.steals")};
}

struct result {
	const scenario *s;
	uint64_t ops = 0;
	double seconds = 0;
	sched_counts counts;
	uint64_t witness_reports = 0;
	bool failed = false;
	bool hung = false;
	std::string failure;
};

std::string
human(double v)
{
	char b[32];
	if (v >= 1e9)
		std::snprintf(b, sizeof(b), "%.2fG", v / 1e9);
	else if (v >= 1e6)
		std::snprintf(b, sizeof(b), "%.2fM", v / 1e6);
	else if (v >= 1e3)
		std::snprintf(b, sizeof(b), "%.1fk", v / 1e3);
	else
		std::snprintf(b, sizeof(b), "%.0f", v);
	return b;
}

// One progress line, redrawn in place on a terminal.
void
draw_progress(const scenario &s, double frac, double rate)
{
	constexpr int kWidth = 30;
	int fill = int(std::clamp(frac, 0.0, 1.0) * kWidth);
	char bar[kWidth + 1];
	for (int i = 0; i < kWidth; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[kWidth] = '\0';
	std::fprintf(stderr, "\r  %-10s [%s] %3d%%  %8s ops/s ", s.name, bar,
	    int(frac * 100), human(rate).c_str());
	std::fflush(stderr);
}

result
run_one(const scenario &s, const options &o, bool tty)
{
	using clock = std::chrono::steady_clock;
	result res;
	res.s = &s;
	context ctx(s.name, o.seed, mp_ncpus(), o.iterations);
	std::atomic<bool> finished{false};
	sched_counts before = read_counts();
	uint64_t reports_before = witness_report_count();
	auto start = clock::now();
	uint64_t vstart = usmp::sim::now_ns();

	thread_attr a;
	a.name = "stress main";
	green_thread runner(a, [&] {
		s.run(ctx);
		finished.store(true, std::memory_order_release);
	});

	double budget = o.iterations ? 0 : o.seconds;
	double watchdog = o.watchdog > 0 ? o.watchdog :
	    std::max(20.0, 10.0 * (o.iterations ? 10.0 : o.seconds));
	auto last_draw = start;
	while (!finished.load(std::memory_order_acquire)) {
		thread_sleep(std::chrono::milliseconds(10));
		auto now = clock::now();
		double t = elapsed(o, start, vstart);
		if (budget > 0 && t >= budget)
			ctx.stop();
		if (tty && now - last_draw >= std::chrono::milliseconds(100)) {
			last_draw = now;
			double frac = budget > 0 ? t / budget :
			    double(ctx.ops()) / double(o.iterations);
			draw_progress(s, frac, t > 0 ? double(ctx.ops()) / t : 0);
		}
		if (t >= (budget > 0 ? budget : 0) + watchdog) {
			// The runner may be stuck for good (a deadlock, a
			// lost wakeup): report and leave without joining.
			res.hung = true;
			break;
		}
	}
	if (tty)
		std::fprintf(stderr, "\r%*s\r", 70, "");
	if (!res.hung)
		runner.join();
	else
		runner.detach(); // stuck for good: the driver reports and exits

	res.seconds = elapsed(o, start, vstart);
	sched_counts after = read_counts();
	res.counts = {after.switches - before.switches,
	    after.preemptions - before.preemptions, after.steals - before.steals};
	res.ops = ctx.ops();
	res.witness_reports = witness_report_count() - reports_before;
	if (res.hung) {
		res.failed = true;
		char b[160];
		std::snprintf(b, sizeof(b), "did not finish %.0f s after it was "
		    "told to stop (deadlock or lost wakeup?)", watchdog);
		res.failure = b;
	} else if (ctx.failed()) {
		res.failed = true;
		res.failure = ctx.failure();
	} else if (res.witness_reports != 0) {
		// Any report fails the run, even in count mode: the tool's
		// exit status is how a script learns of a lock-order bug.
		res.failed = true;
		res.failure = std::to_string(res.witness_reports) +
		    (o.witness == "warn" ? " WITNESS report(s), printed above" :
		    " WITNESS report(s) (counted only: --witness warn prints them)");
	}
	return res;
}

void
json_string(FILE *f, const std::string &s)
{
	std::fputc('"', f);
	for (unsigned char c : s) {
		if (c == '"' || c == '\\')
			std::fprintf(f, "\\%c", c);
		else if (c < 0x20)
			std::fprintf(f, "\\u%04x", c);
		else
			std::fputc(c, f);
	}
	std::fputc('"', f);
}

void
print_json(FILE *f, const options &o, const std::vector<result> &rs, bool ok)
{
	std::fprintf(f, "{\"seed\":%" PRIu64 ",\"cpus\":%d,\"full_preemption\":%s,"
	    "\"scenarios\":[", o.seed, mp_ncpus(), o.no_preempt ? "false" : "true");
	for (size_t i = 0; i < rs.size(); i++) {
		const result &r = rs[i];
		std::fprintf(f, "%s{\"name\":", i ? "," : "");
		json_string(f, r.s->name);
		std::fprintf(f, ",\"ops\":%" PRIu64 ",\"seconds\":%.3f,"
		    "\"ops_per_second\":%.0f,\"switches\":%" PRIu64
		    ",\"preemptions\":%" PRIu64 ",\"steals\":%" PRIu64
		    ",\"witness_reports\":%" PRIu64 ",\"passed\":%s", r.ops,
		    r.seconds, r.seconds > 0 ? double(r.ops) / r.seconds : 0.0,
		    r.counts.switches, r.counts.preemptions, r.counts.steals,
		    r.witness_reports, r.failed ? "false" : "true");
		if (r.failed) {
			std::fprintf(f, ",\"failure\":");
			json_string(f, r.failure);
		}
		std::fputc('}', f);
	}
	std::fprintf(f, "],\"passed\":%s}\n", ok ? "true" : "false");
}

void
print_table(FILE *f, const std::vector<result> &rs)
{
	std::fprintf(f, "%-12s %10s %10s %10s %10s %8s %8s  %s\n", "scenario",
	    "ops", "ops/s", "switches", "preempts", "steals", "witness",
	    "result");
	for (const result &r : rs)
		std::fprintf(f, "%-12s %10s %10s %10s %10s %8s %8" PRIu64 "  %s\n",
		    r.s->name,
		    human(double(r.ops)).c_str(),
		    human(r.seconds > 0 ? double(r.ops) / r.seconds : 0).c_str(),
		    human(double(r.counts.switches)).c_str(),
		    human(double(r.counts.preemptions)).c_str(),
		    human(double(r.counts.steals)).c_str(), r.witness_reports,
		    r.failed ? (r.hung ? "HUNG" : "FAILED") : "ok");
}

// Render WITNESS's order graph (reversals in red) to path: DOT as is for a
// .dot or .gv path, otherwise through Graphviz's dot, the format from the
// extension (svg, png, pdf).  Returns false after a message.
bool
write_witness_graph(const std::string &path)
{
	std::string dot;
	witness_dump_dot(witness_out_string(dot));
	std::string ext = path.substr(path.find_last_of('.') + 1);
	if (path.find('.') == std::string::npos)
		ext = "svg";
	if (ext == "dot" || ext == "gv") {
		FILE *f = std::fopen(path.c_str(), "w");
		if (f == nullptr || std::fwrite(dot.data(), 1, dot.size(), f) !=
		    dot.size() || std::fclose(f) != 0) {
			std::fprintf(stderr, "usmp-stress: --witness-graph: %s: "
			    "%s\n", path.c_str(), std::strerror(errno));
			return false;
		}
		return true;
	}
	// The path goes to the shell quoted; refuse a quote in it.
	if (path.find('\'') != std::string::npos) {
		std::fprintf(stderr, "usmp-stress: --witness-graph: a path with "
		    "a quote is not supported: %s\n", path.c_str());
		return false;
	}
	std::string cmd = "dot -T" + ext + " -o '" + path + "'";
	// A dot that is missing or dies early closes the pipe: take that as
	// a write error, not as SIGPIPE killing the tool.
	struct sigaction ign = {}, old = {};
	ign.sa_handler = SIG_IGN;
	::sigaction(SIGPIPE, &ign, &old);
	FILE *p = ::popen(cmd.c_str(), "w");
	if (p == nullptr) {
		::sigaction(SIGPIPE, &old, nullptr);
		std::fprintf(stderr, "usmp-stress: --witness-graph: cannot run "
		    "dot: %s\n", std::strerror(errno));
		return false;
	}
	std::fwrite(dot.data(), 1, dot.size(), p);
	int st = ::pclose(p);
	::sigaction(SIGPIPE, &old, nullptr);
	if (st != 0) {
		std::fprintf(stderr, "usmp-stress: --witness-graph: \"%s\" "
		    "failed (status %d; is Graphviz installed?)\n", cmd.c_str(),
		    st);
		return false;
	}
	return true;
}

// Write the KTR rings as Chrome trace-event JSON (Perfetto opens it).
// Returns false after a message.
bool
write_trace(const std::string &path)
{
	int e = ktr_export_chrome(path.c_str());
	if (e != 0) {
		std::fprintf(stderr, "usmp-stress: --trace: %s: %s\n", path.c_str(),
		    std::strerror(e));
		return false;
	}
	return true;
}

} // namespace
} // namespace usmp::stress

int
main(int argc, char **argv)
{
	using namespace usmp::stress;
	auto &all = scenarios();
	std::sort(all.begin(), all.end(), [](const scenario &a, const scenario &b) {
		return std::strcmp(a.name, b.name) < 0;
	});

	options o;
	bool list = false;
	CLI::App app{"usmp-stress: stress scenarios on usmp's green threads, "
	    "with invariant checks"};
	app.add_option("-s,--scenario", o.names,
	    "scenarios to run (default: every default one; see --list)");
	app.add_flag("-l,--list", list, "list the scenarios and exit");
	app.add_option("-c,--cpus", o.cpus, "virtual CPUs (0: one per processing unit)")
	    ->check(CLI::Range(0, 1024));
	app.add_option("-d,--duration", o.seconds, "seconds per scenario")
	    ->check(CLI::PositiveNumber);
	app.add_option("-n,--iterations", o.iterations,
	    "operations per scenario instead of a duration");
	auto *seed_opt = app.add_option("--seed", o.seed,
	    "seed of every random choice (default: random, printed)");
	app.add_flag("--no-preempt", o.no_preempt,
	    "no full preemption (threads switch at slices and blocking only)");
	app.add_flag("--json", o.json,
	    "print the summary as JSON on stdout (the table goes to stderr)");
	app.add_flag("-q,--quiet", o.quiet, "no progress and no table");
	app.add_option("--watchdog", o.watchdog,
	    "seconds a scenario may overrun before it counts as hung");
	app.add_option("--witness", o.witness,
	    "WITNESS mode: warn (print reports, fail the run), count (fail "
	    "without printing), abort (panic at the first), off")
	    ->check(CLI::IsMember({"off", "warn", "count", "abort"}));
	app.add_option("--trace", o.trace,
	    "write a Chrome trace-event JSON of what each CPU ran (open it in "
	    "ui.perfetto.dev); needs a build with KTR (cmake --preset ktr)");
	app.add_option("--trace-entries", o.trace_entries,
	    "KTR ring entries per CPU (the trace keeps the latest ones)")
	    ->check(CLI::Range(uint64_t(64), uint64_t(1) << 24));
	app.add_option("--witness-graph", o.witness_graph,
	    "write the learned lock-order graph here at the end (.svg, .png, "
	    ".pdf through Graphviz; .dot as is), reversals in red");
	app.add_flag("--sim", o.sim,
	    "deterministic simulation (runtime/sim.h): every CPU on one OS "
	    "thread, every choice from --seed, virtual time; the same seed "
	    "replays the same interleaving (the io scenario is left out)");
	app.add_option("--strategy", o.strategy, "--sim strategy: random or pct")
	    ->check(CLI::IsMember({"random", "pct"}));
	app.add_option("--pct-depth", o.pct_depth, "--sim pct: bug depth d")
	    ->check(CLI::Range(1, 64));
	app.add_option("--preempt-bound", o.preempt_bound,
	    "--sim: at most this many preemptions (-1: no bound)");
	app.add_option("--sim-log", o.sim_log,
	    "--sim: write the step log here (also on failure)");
	CLI11_PARSE(app, argc, argv);
	o.seed_given = seed_opt->count() > 0;
	if (!o.trace.empty()) {
		if constexpr (!usmp::config::ktr) {
			// An empty trace would look like a run with nothing in
			// it: refuse, and say how to get a build that traces.
			std::fprintf(stderr, "usmp-stress: --trace: this build has "
			    "no KTR (configured with USMP_KTR=OFF).  Build one with "
			    "it:\n  cmake --preset ktr && cmake --build --preset ktr\n"
			    "  build-ktr/apps/stress/usmp-stress --trace %s ...\n"
			    "(or configure any build with -DUSMP_KTR=ON)\n",
			    o.trace.c_str());
			return 2;
		}
		if (o.trace_entries != 0)
			usmp::ktr_set_entries(o.trace_entries);
	}
	if constexpr (!usmp::config::witness) {
		// Say so rather than pass silently: nothing can be reported.
		if (!o.witness_graph.empty()) {
			std::fprintf(stderr, "usmp-stress: --witness-graph: this "
			    "build has no WITNESS (configure with -DUSMP_WITNESS=ON)\n");
			return 2;
		}
		if (o.witness != "off")
			std::fprintf(stderr, "usmp-stress: note: this build has no "
			    "WITNESS (USMP_WITNESS=OFF): lock order is not checked\n");
	}

	if (list) {
		for (const scenario &s : all)
			std::printf("%-10s %s%s\n", s.name, s.summary,
			    s.by_default ? "" : " (only when named)");
		return 0;
	}

	std::vector<const scenario *> chosen;
	if (o.names.empty()) {
		for (const scenario &s : all)
			// --sim leaves out what the simulation does not
			// control: real I/O, interrupts fired by OS threads.
			if (s.by_default && !(o.sim && (std::strcmp(s.name, "io") == 0 ||
			    std::strcmp(s.name, "intr") == 0)))
				chosen.push_back(&s);
	} else {
		for (const std::string &n : o.names) {
			auto it = std::find_if(all.begin(), all.end(),
			    [&](const scenario &s) { return n == s.name; });
			if (it == all.end()) {
				std::fprintf(stderr, "usmp-stress: no scenario "
				    "\"%s\" (--list shows them)\n", n.c_str());
				return 2;
			}
			if (o.sim && n == "io") {
				std::fprintf(stderr, "usmp-stress: --sim: the io "
				    "scenario does real I/O, which the simulation does "
				    "not control\n");
				return 2;
			}
			chosen.push_back(&*it);
		}
	}
	if (!o.seed_given)
		o.seed = (uint64_t(std::random_device{}()) << 32) ^
		    std::random_device{}();

	usmp::machine_config cfg;
	cfg.ncpus = o.cpus;
	cfg.full_preemption = !o.no_preempt;
	if (o.sim) {
		// A budget of operations, not seconds: how far a simulated run
		// gets in a second depends on the host.
		if (o.iterations == 0)
			o.iterations = 1000;
		cfg.ncpus = o.cpus > 0 ? o.cpus : 4;
		cfg.simulate = true;
		cfg.sim.seed = o.seed;
		cfg.sim.strategy = o.strategy == "pct" ? usmp::sim_strategy::pct :
		    usmp::sim_strategy::random;
		cfg.sim.pct_depth = o.pct_depth;
		cfg.sim.pct_steps = 100000;
		cfg.sim.preempt_bound = o.preempt_bound;
		cfg.sim.log_file = o.sim_log.empty() ? nullptr : o.sim_log.c_str();
		o.replay_hint = "usmp-stress --sim --seed " + std::to_string(o.seed) +
		    " --strategy " + o.strategy + " --pct-depth " +
		    std::to_string(o.pct_depth) + " --preempt-bound " +
		    std::to_string(o.preempt_bound) + " -c " +
		    std::to_string(cfg.ncpus) + " -n " + std::to_string(o.iterations);
		for (const scenario *s : chosen)
			o.replay_hint += std::string(" -s ") + s->name;
		if (o.no_preempt)
			o.replay_hint += " --no-preempt";
		cfg.sim.replay_hint = o.replay_hint.c_str();
	}
	bool tty = !o.quiet && isatty(STDERR_FILENO);
	FILE *report = o.json ? stderr : stdout;

	int rc = usmp::run(cfg, [&]() -> int {
		usmp::witness_set_mode(o.witness == "off" ? usmp::witness_mode::off :
		    o.witness == "count" ? usmp::witness_mode::count :
		    o.witness == "abort" ? usmp::witness_mode::abort :
		    usmp::witness_mode::warn);
		if (!o.quiet) {
			char budget[64];
			if (o.iterations)
				std::snprintf(budget, sizeof(budget), "%" PRIu64
				    " operations", o.iterations);
			else
				std::snprintf(budget, sizeof(budget), "%g s",
				    o.seconds);
			std::string mode = o.sim ? "simulated (" + o.strategy +
			    " schedule, virtual time), " : "";
			std::fprintf(report, "usmp-stress: %d CPUs, %s%s, seed %"
			    PRIu64 ", %s per scenario\n", usmp::mp_ncpus(),
			    mode.c_str(),
			    o.no_preempt ? "no full preemption" : "full preemption",
			    o.seed, budget);
		}
		std::vector<result> results;
		bool ok = true;
		for (const scenario *s : chosen) {
			results.push_back(run_one(*s, o, tty));
			const result &r = results.back();
			if (!o.quiet && !tty)
				std::fprintf(report, "  %-10s %s\n", s->name,
				    r.failed ? "FAILED" : "ok");
			if (r.failed) {
				ok = false;
				if (o.sim)
					std::fprintf(stderr, "usmp-stress: %s FAILED: "
					    "%s\nusmp-stress: replay with: %s\n",
					    s->name, r.failure.c_str(),
					    o.replay_hint.c_str());
				else
					std::fprintf(stderr, "usmp-stress: %s FAILED: %s\n"
					    "usmp-stress: replay with: usmp-stress "
					    "--scenario %s --cpus %d --seed %" PRIu64 "%s\n",
					    s->name, r.failure.c_str(), s->name,
					    usmp::mp_ncpus(), o.seed,
					    o.no_preempt ? " --no-preempt" : "");
				if (r.hung) {
					// Threads are stuck: the machine
					// cannot shut down cleanly.
					if (o.json)
						print_json(stdout, o, results, false);
					// The trace of a hang is the most
					// useful one; the rings are read
					// while stuck threads may still write.
					if (!o.trace.empty())
						write_trace(o.trace);
					std::fflush(nullptr);
					_exit(1);
				}
			}
		}
		if (!o.quiet)
			print_table(report, results);
		if (!o.witness_graph.empty() && !write_witness_graph(o.witness_graph))
			ok = false;
		if (o.json)
			print_json(stdout, o, results, ok);
		if (!o.quiet)
			std::fprintf(report, "usmp-stress: %s (seed %" PRIu64 ")\n",
			    ok ? "all scenarios passed" : "FAILED", o.seed);
		return ok ? 0 : 1;
	});
	// After run(): the machine has stopped, so the rings are exact.
	if (!o.trace.empty()) {
		if (!write_trace(o.trace))
			return rc != 0 ? rc : 1;
		if (!o.quiet)
			std::fprintf(report, "usmp-stress: trace written to %s "
			    "(open it in ui.perfetto.dev)\n", o.trace.c_str());
	}
	return rc;
}

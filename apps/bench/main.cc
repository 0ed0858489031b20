// usmp-bench: usmp's hot paths beside Boost.Fiber and std::thread, in one
// run (see bench.h for the rules every benchmark follows).
//
//     usmp-bench                                  everything, then the ratios
//     usmp-bench --benchmark_format=json          Google Benchmark's JSON only
//     usmp-bench --benchmark_filter='^skynet/'    one operation
//     usmp-bench --skynet_leaves=10000            a smaller skynet tree
//
// After a run in the console format, a table gives each usmp result over
// its peer's from this same run, with the target set for it.

#include "apps/bench/bench.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "sync/witness.h"

namespace usmp_bench {

// Families not declared in bench.h.
void register_mutex(); // mutex.cc
void register_locks(); // locks.cc
void register_witness(); // witness.cc

namespace {

// Passes every report through to Google Benchmark's own display reporter
// (the one --benchmark_format asks for) and keeps the wall time per
// iteration of each benchmark for the ratio table.
class collecting_reporter final : public benchmark::BenchmarkReporter {
public:
	explicit collecting_reporter(benchmark::BenchmarkReporter *display)
	    : display_(display)
	{
	}

	bool
	ReportContext(const Context &context) override
	{
		return display_->ReportContext(context);
	}

	void
	ReportRuns(const std::vector<Run> &runs) override
	{
		for (const Run &r : runs) {
			if (r.error_occurred)
				continue;
			double ns = r.GetAdjustedRealTime() * 1e9 /
			    benchmark::GetTimeUnitMultiplier(r.time_unit);
			times &t = times_[r.run_name.function_name];
			if (r.run_type == Run::RT_Iteration)
				t.runs.push_back(ns);
			else if (r.aggregate_name == "median")
				t.median = ns;
		}
		display_->ReportRuns(runs);
	}

	void
	Finalize() override
	{
		display_->Finalize();
	}

	bool
	is_console() const
	{
		return dynamic_cast<benchmark::ConsoleReporter *>(display_) !=
		    nullptr;
	}

	// Nanoseconds per iteration of "<operation>/<system>": the median of
	// its repetitions (one, unless --benchmark_repetitions), or NAN.
	double
	ns_per_iteration(const std::string &name) const
	{
		auto it = times_.find(name);
		if (it == times_.end())
			return NAN;
		std::vector<double> v = it->second.runs;
		if (v.empty())
			return it->second.median;
		std::sort(v.begin(), v.end());
		size_t m = v.size() / 2;
		return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
	}

	bool
	empty() const
	{
		return times_.empty();
	}

private:
	struct times {
		std::vector<double> runs; // per repetition
		double median = NAN;      // the "median" aggregate, if reported
	};
	benchmark::BenchmarkReporter *display_; // not ours (a static singleton)
	std::map<std::string, times> times_;
};

std::string
format_ns(double ns)
{
	char buf[32];
	if (std::isnan(ns))
		return "-";
	if (ns < 1e3)
		std::snprintf(buf, sizeof(buf), "%.1f ns", ns);
	else if (ns < 1e6)
		std::snprintf(buf, sizeof(buf), "%.2f us", ns / 1e3);
	else if (ns < 1e9)
		std::snprintf(buf, sizeof(buf), "%.2f ms", ns / 1e6);
	else
		std::snprintf(buf, sizeof(buf), "%.3f s", ns / 1e9);
	return buf;
}

void
print_ratio_table(const collecting_reporter &rep)
{
	std::printf("\nusmp vs. peers, wall time per iteration from this run "
		    "(median of repetitions); ratio = system / peer\n");
	std::printf("%-16s %-13s %-15s %11s %11s %8s  %s\n", "operation",
	    "system", "peer", "system", "peer", "ratio", "target");
	int met = 0, missed = 0;
	for (const ratio_row &row : ratio_rows()) {
		double a = rep.ns_per_iteration(row.operation + "/" + row.system);
		double b = rep.ns_per_iteration(row.operation + "/" + row.peer);
		double ratio = a / b;
		char rbuf[16], tbuf[48];
		if (std::isnan(ratio))
			std::snprintf(rbuf, sizeof(rbuf), "-");
		else
			std::snprintf(rbuf, sizeof(rbuf), "%.2fx", ratio);
		if (row.limit <= 0)
			std::snprintf(tbuf, sizeof(tbuf), "(for information)");
		else if (std::isnan(ratio))
			std::snprintf(tbuf, sizeof(tbuf), "<= %.2fx  not run",
			    row.limit);
		else if (ratio <= row.limit) {
			std::snprintf(tbuf, sizeof(tbuf), "<= %.2fx  met",
			    row.limit);
			met++;
		} else {
			std::snprintf(tbuf, sizeof(tbuf),
			    "<= %.2fx  MISSED by %.2fx", row.limit,
			    ratio / row.limit);
			missed++;
		}
		std::printf("%-16s %-13s %-15s %11s %11s %8s  %s\n",
		    row.operation.c_str(), row.system.c_str(),
		    row.peer.c_str(), format_ns(a).c_str(),
		    format_ns(b).c_str(), rbuf, tbuf);
	}
	std::printf("targets met: %d, missed: %d; skynet ran %" PRIu64
		    " leaves\n", met, missed, opts().skynet_leaves);
}

void
print_help()
{
	benchmark::PrintDefaultHelp();
	std::fprintf(stdout,
	    "usmp-bench options:\n"
	    "  [--skynet_leaves=<power of 10, >= 10>]  default 1000000\n");
}

// Take usmp-bench's own flags off argv (before Google Benchmark sees it).
// Returns false after a message for a bad value.
bool
parse_own_flags(int *argc, char **argv)
{
	static const char leaves_flag[] = "--skynet_leaves=";
	int out = 1;
	for (int i = 1; i < *argc; i++) {
		if (std::strncmp(argv[i], leaves_flag, sizeof(leaves_flag) - 1)
		    != 0) {
			argv[out++] = argv[i];
			continue;
		}
		const char *v = argv[i] + sizeof(leaves_flag) - 1;
		char *end;
		errno = 0;
		unsigned long long n = std::strtoull(v, &end, 10);
		unsigned long long p = 10;
		while (p < n && p <= UINT64_MAX / 10)
			p *= 10;
		if (errno != 0 || *end != '\0' || *v == '\0' || n < 10 ||
		    p != n) {
			std::fprintf(stderr,
			    "usmp-bench: --skynet_leaves must be a power of "
			    "10, at least 10: \"%s\"\n", v);
			return false;
		}
		opts().skynet_leaves = n;
	}
	*argc = out;
	argv[out] = nullptr;
	return true;
}

} // namespace
} // namespace usmp_bench

int
main(int argc, char **argv)
{
	using namespace usmp_bench;

	if (!parse_own_flags(&argc, argv))
		return 2;
	benchmark::Initialize(&argc, argv, print_help);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 2;

	// The peers check no lock order, so the comparisons run usmp with
	// WITNESS compiled in (the default build) but switched off at run
	// time, as a FreeBSD kernel with debug.witness.watch=0; the witness_*
	// rows measure what turning it on costs.  USMP_WITNESS set in the
	// environment keeps the mode it names.
	if (std::getenv("USMP_WITNESS") == nullptr) {
		usmp::witness_set_mode(usmp::witness_mode::off);
		std::fprintf(stderr, "usmp-bench: WITNESS off at run time for the "
		    "peer comparisons (USMP_WITNESS=warn keeps it on); the "
		    "witness_* rows measure it\n");
	}

	register_yield_pingpong();
	register_spawn_join();
	register_threads1024();
	register_skynet();
	register_mutex();
	register_locks();
	register_witness();

	collecting_reporter rep(benchmark::CreateDefaultDisplayReporter());
	benchmark::RunSpecifiedBenchmarks(&rep);
	use_no_machine();
	shutdown_fiber_pool();
	benchmark::Shutdown();

	if (rep.is_console() && !rep.empty())
		print_ratio_table(rep);
	return 0;
}

// KTR (runtime/ktr.h).  In the default build (USMP_KTR=OFF) the event calls
// compile to nothing: no rings, a trace with no events.  With USMP_KTR=ON
// (this file in the options-on sub-build, build_options_on in
// tests/CMakeLists.txt), every CPU records its switches, and the Chrome
// trace it exports parses as JSON and has a track per CPU with the slices
// of the threads that ran there, and the contention on a named mutex.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "runtime/config.h"
#include "runtime/ktr.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "support/json.h"
#include "support/machine.h"
#include "support/observe.h"
#include "sync/mutex.h"

using namespace usmp;

namespace {

// Two threads bound to each CPU take turns on one mutex and yield to each
// other: both run on every CPU.  The mutex is held until one of them has
// blocked on it, so that the trace has a contention on it.
void
contend_on_every_cpu(int ncpus)
{
	mutex m("ktr test mutex");
	long shared = 0;
	std::vector<green_thread> v;
	m.lock();
	for (int c = 0; c < ncpus; c++)
		for (int k = 0; k < 2; k++)
			v.emplace_back(thread_attr{.name = "yielder", .cpu = c}, [&] {
				for (int i = 0; i < 10; i++) {
					m.lock();
					shared++;
					thread_yield();
					m.unlock();
					thread_yield();
				}
			});
	test::wait_blocked_on_lock(v[0].native_handle());
	m.unlock();
	for (auto &t : v)
		t.join();
	CHECK(shared == ncpus * 2 * 10);
}

} // namespace

TEST_CASE("KTR: the Chrome trace parses and shows switches on every CPU, or nothing when compiled out", "[unit]")
{
	constexpr int ncpus = 4;
	ktr_set_entries(1024);
	{
		test::machine m(ncpus);
		m.run([] { contend_on_every_cpu(ncpus); });
	}
	int error = -1;
	std::string text = test::capture([&](std::FILE *f) { error = ktr_export_chrome(f); });
	REQUIRE(error == 0);
	test::json doc;
	std::string err;
	INFO(text.substr(0, 2000));
	REQUIRE(test::json_parse(text, doc, &err));
	INFO(err);
	REQUIRE(doc.is_object());
	CHECK(doc["displayTimeUnit"].str == "ns");
	REQUIRE(doc["traceEvents"].is_array());
	REQUIRE(doc["otherData"]["usmp_ktr"].kind == test::json::boolean);
	CHECK(doc["otherData"]["usmp_ktr"].b == config::ktr);

	// The tracks (metadata) and what ran on each (complete "sched" events).
	std::vector<std::string> track(ncpus + 2);
	std::vector<std::set<std::string>> ran(ncpus + 2); // slice names by track
	int slices = 0, contended = 0;
	for (const test::json &ev : doc["traceEvents"].array()) {
		REQUIRE(ev.is_object());
		REQUIRE(ev["ph"].is_string());
		REQUIRE(ev["tid"].is_number());
		int tid = static_cast<int>(ev["tid"].num);
		const std::string &ph = ev["ph"].str;
		if (ph == "M" && ev["name"].str == "thread_name") {
			REQUIRE(tid >= 0);
			REQUIRE(tid < static_cast<int>(track.size()));
			track[tid] = ev["args"]["name"].str;
		} else if (ph == "X" && ev["cat"].str == "sched") {
			CHECK(ev["ts"].is_number());
			CHECK(ev["dur"].is_number());
			CHECK(ev["dur"].num >= 0);
			REQUIRE(tid >= 0);
			REQUIRE(tid < static_cast<int>(ran.size()));
			slices++;
			if (ev["name"].str.rfind("yielder (tid ", 0) == 0)
				ran[tid].insert(ev["name"].str);
		} else if (ph == "i" && ev["cat"].str == "lock") {
			contended += ev["name"].str == "contend ktr test mutex";
		}
	}
	if constexpr (!config::ktr) {
		CHECK(ktr_rings() == 0);
		CHECK(ktr_recorded(0) == 0);
		CHECK(slices == 0);
		CHECK(doc["traceEvents"].array().size() == 1); // process_name only
	} else {
		REQUIRE(ktr_rings() == ncpus + 1); // the CPUs and the foreign ring
		for (int c = 0; c < ncpus; c++) {
			INFO("cpu" << c);
			CHECK(track[c] == "cpu" + std::to_string(c));
			// Both threads bound here ran here: a slice each.
			CHECK(ran[c].size() == 2);
			std::vector<ktr_entry> e(1024);
			e.resize(ktr_read(c, e.data(), e.size()));
			int switches = 0;
			for (auto &x : e)
				switches += x.ke_event == KTR_SWITCH;
			CHECK(switches >= 2);
		}
		CHECK(track[ncpus] == "foreign threads");
		CHECK(contended > 0);
		ktr_clear();
		CHECK(ktr_recorded(0) == 0);
	}
}

TEST_CASE("KTR rings wrap, keeping the newest entries", "[unit]")
{
	if constexpr (!config::ktr)
		return;
	ktr_set_entries(64);
	{
		test::machine m(1);
		m.run([] {
			for (int i = 0; i < 200; i++)
				ktr_event_record(KTR_USER, static_cast<uint64_t>(i), 0, "tick");
		});
	}
	CHECK(ktr_recorded(0) > 200);
	std::vector<ktr_entry> e(64);
	e.resize(ktr_read(0, e.data(), e.size()));
	REQUIRE(e.size() == 64);
	uint64_t last = 0;
	for (auto &x : e)
		if (x.ke_event == KTR_USER)
			last = x.ke_a;
	CHECK(last == 199);
	ktr_set_entries(32768);
}

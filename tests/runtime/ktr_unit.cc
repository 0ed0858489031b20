// KTR (runtime/ktr.h).  In the default build (USMP_KTR=OFF) the event calls
// compile to nothing: no rings, an empty trace.  With USMP_KTR=ON (this file
// in a KTR build, and the sub-build test of ktr_unit.cmake), every CPU
// records its switches and the export names the threads that ran.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/config.h"
#include "runtime/ktr.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "support/machine.h"

using namespace usmp;

namespace {

std::string
export_string()
{
	char *buf = nullptr;
	size_t len = 0;
	std::FILE *f = open_memstream(&buf, &len);
	REQUIRE(ktr_export_chrome(f) == 0);
	std::fclose(f);
	std::string s(buf, len);
	std::free(buf);
	return s;
}

void
yield_on_every_cpu(int ncpus)
{
	std::vector<green_thread> v;
	for (int c = 0; c < ncpus; c++)
		for (int k = 0; k < 2; k++)
			v.emplace_back(thread_attr{.name = "yielder", .cpu = c}, [] {
				for (int i = 0; i < 10; i++)
					thread_yield();
			});
	for (auto &t : v)
		t.join();
}

} // namespace

TEST_CASE("KTR records switches on every CPU, or nothing when compiled out", "[unit]")
{
	ktr_set_entries(1024);
	{
		test::machine m(2);
		m.run([] { yield_on_every_cpu(2); });
	}
	std::string json = export_string();
	CHECK(json.rfind("{\"displayTimeUnit\":\"ns\"", 0) == 0);
	CHECK(json.find("\"traceEvents\":[") != std::string::npos);
	if constexpr (!config::ktr) {
		CHECK(ktr_rings() == 0);
		CHECK(ktr_recorded(0) == 0);
		CHECK(json.find("\"usmp_ktr\":false") != std::string::npos);
		CHECK(json.find("\"ph\":\"X\"") == std::string::npos);
	} else {
		REQUIRE(ktr_rings() == 3); // two CPUs and the foreign ring
		for (int c = 0; c < 2; c++) {
			std::vector<ktr_entry> e(1024);
			e.resize(ktr_read(c, e.data(), e.size()));
			int switches = 0;
			for (auto &x : e)
				switches += x.ke_event == KTR_SWITCH;
			INFO("cpu" << c);
			CHECK(switches >= 20);
		}
		CHECK(json.find("\"name\":\"yielder (tid ") != std::string::npos);
		CHECK(json.find("\"name\":\"cpu1\"") != std::string::npos);
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

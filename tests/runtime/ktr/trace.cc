// Runs a small machine with KTR compiled in and writes the trace
// (Chrome trace-event JSON) to argv[1]; cmake/ktr-test.cmake checks it.
// Exits non-zero if KTR is not compiled in or a ring recorded no switch.
#include <cstdio>
#include <vector>

#include "runtime/config.h"
#include "runtime/ktr.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sync/mutex.h"

int
main(int argc, char **argv)
{
	if (argc != 2) {
		std::fprintf(stderr, "usage: ktr_trace out.json\n");
		return 2;
	}
	if (!usmp::config::ktr) {
		std::fprintf(stderr, "ktr_trace: built without USMP_KTR\n");
		return 1;
	}
	constexpr int ncpus = 4;
	usmp::ktr_set_entries(256); // keep the JSON small for the checker
	usmp::run({.ncpus = ncpus}, [] {
		usmp::mutex m("ktr test mutex");
		long shared = 0;
		std::vector<usmp::green_thread> v;
		// Two threads bound to each CPU yield to each other (a switch on
		// every CPU), and all contend on one mutex.
		for (int c = 0; c < ncpus; c++)
			for (int k = 0; k < 2; k++)
				v.emplace_back(usmp::thread_attr{.name = "worker", .cpu = c},
				    [&] {
					    for (int i = 0; i < 20; i++) {
						    m.lock();
						    shared++;
						    usmp::thread_yield();
						    m.unlock();
						    usmp::thread_yield();
					    }
				    });
		for (auto &t : v)
			t.join();
	});
	for (int c = 0; c < ncpus; c++) {
		std::vector<usmp::ktr_entry> e(usmp::ktr_recorded(c) + 1);
		e.resize(usmp::ktr_read(c, e.data(), e.size()));
		int switches = 0;
		for (auto &x : e)
			switches += x.ke_event == usmp::KTR_SWITCH;
		std::printf("ktr_trace: cpu%d: %zu entries, %d switches\n", c,
		    e.size(), switches);
		if (switches == 0)
			return 1;
	}
	int error = usmp::ktr_export_chrome(argv[1]);
	if (error != 0) {
		std::fprintf(stderr, "ktr_trace: export failed: %d\n", error);
		return 1;
	}
	return 0;
}

// A program that uses usmp from outside (see CMakeLists.txt here): boots a
// machine of two CPUs, runs green threads on it, and checks that the
// build options it was compiled with are those of the library.
#include <cstdio>

#include "runtime/config.h"
#include "runtime/machine.h"
#include "runtime/thread.h"
#include "sched/sched.h"

static_assert(usmp::config::witness == (USMP_WITNESS != 0));

int
main()
{
	int where[2] = {-2, -2};
	int rc = usmp::run({.ncpus = 2}, [&] {
		usmp::green_thread a([&] { where[0] = usmp::curcpu(); });
		usmp::green_thread b([&] {
			usmp::sched_pin();
			where[1] = usmp::curcpu();
			usmp::sched_unpin();
		});
		a.join();
		b.join();
	});
	if (rc != 0 || where[0] < 0 || where[1] < 0) {
		std::printf("consumer: FAILED (rc %d, cpus %d %d)\n", rc, where[0],
		    where[1]);
		return 1;
	}
	std::printf("consumer: ok (threads ran on CPUs %d and %d)\n", where[0],
	    where[1]);
	return 0;
}

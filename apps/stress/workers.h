// usmp-stress: starting and joining a scenario's worker threads.
#pragma once

#include <cstdio>
#include <vector>

#include "apps/stress/stress.h"
#include "runtime/thread.h"

namespace usmp::stress {

// More threads than CPUs, so that every CPU has several to switch between
// and preemption, stealing and blocking all happen.
inline int
worker_count(const context &ctx, int per_cpu = 4)
{
	int n = ctx.ncpus() * per_cpu;
	return n < 4 ? 4 : n;
}

// Run fn(id, rng) on n green threads named "<scenario> <id>" and join them.
// Each gets its own generator, a function of the seed and its id.
template <class Fn>
void
run_workers(context &ctx, int n, Fn &&fn)
{
	std::vector<green_thread> threads;
	threads.reserve(n);
	for (int i = 0; i < n; i++) {
		char name[48];
		std::snprintf(name, sizeof(name), "%s %d", ctx.scenario(), i);
		thread_attr a;
		a.name = name;
		threads.emplace_back(a, [&ctx, &fn, i] {
			rng r = ctx.make_rng(uint64_t(i));
			fn(i, r);
		});
	}
	for (auto &t : threads)
		t.join();
}

} // namespace usmp::stress

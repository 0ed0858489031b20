// skynet: a 10-ary tree of threads with 1,000,000 leaves
// (github.com/atemerev/skynet).  Every inner node creates its 10 children
// and returns the sum of their results; a leaf returns its own number, so
// the root returns 0 + 1 + ... + 999,999 = 499,999,500,000 (the sum is
// checked).  The root is computed by the measuring thread itself; every
// other node is a thread of its own: 1,111,110 threads an iteration.
//
// One iteration is the whole tree.  Each system runs it in its own idiom:
//   usmp: each child writes its result into the parent's array and the
//         parent joins its children in order (usmp has no channels yet).
//   Boost.Fiber: Boost's own skynet (libs/fiber/performance/fiber/
//         skynet_*.cpp): detached children push their results into the
//         parent's buffered_channel.  The join-shaped version was 1.4-2.9x
//         slower for Boost in side runs here (a finished fiber keeps its
//         stack until it is joined; round_robin peaked at 3.5 GB against
//         1.5 GB), so comparing with it would flatter usmp.
//
// Stacks: every node's thread has a 16 KiB stack, as in the peers' figures.
//   usmp: thread_attr.stack_size = 16 KiB, usable between two red zones; the
//         skynet machine is booted with a 16 KiB default stack size so that
//         these are the stacks its per-CPU caches hold.
//   Boost.Fiber: fixedsize_stack(16 KiB) (malloc, no guard page).
// The measuring thread itself gets a bigger stack (Google Benchmark's frames
// are below the root node's).
//
// usmp: a machine of 2 CPUs (every processing unit of this VM); threads are
// unbound and the scheduler spreads them.
// boost_fiber_ws: work_stealing on 2 OS threads; children start at once
// (launch::dispatch), the parent waits in the ready queue, where the other
// thread can steal it (the peers: 1.05-1.19 s).
// boost_fiber_rr: round_robin on 1 OS thread, launch::dispatch (the peers:
// 3.0-3.3 s; dispatch with a FIFO ready queue expands the tree breadth-wise).
//
// Each run starts with one untimed tree, as the peers' figures were taken
// after a warm-up: the first tree of a process pays for mapping or
// malloc'ing and first-touching every stack (20% more here for usmp), which
// is threads1024's subject, not skynet's.
//
// The sum is checked after the loop, which is what keeps the work from
// being optimised away.  No benchmark::DoNotOptimize() on it: with g++ 12
// and -fsanitize=address, its "+m,r" asm operand made the stored sum read
// back as 0 (Google Benchmark 1.7.1's GCC variant of DoNotOptimize).
//
// The leaf count can be lowered (--skynet_leaves, a power of 10) for the
// ctest smoke run.
//
// Target: usmp <= 0.5x boost_fiber_ws.

#include "apps/bench/bench.h"

#include <boost/fiber/all.hpp>

#include <atomic>
#include <cstdio>

namespace usmp_bench {
namespace {

constexpr int fanout = 10;
constexpr std::size_t node_stack_size = 16 * 1024;
constexpr std::size_t root_stack_size = 256 * 1024;

uint64_t
threads_per_tree(uint64_t leaves)
{
	uint64_t n = 0;
	for (uint64_t level = leaves; level > 1; level /= fanout)
		n += level;
	return n;
}

uint64_t
expected_sum(uint64_t leaves)
{
	return leaves * (leaves - 1) / 2;
}

// Report a wrong sum or a failed creation, after the timed loop.
void
check_result(benchmark::State &state, uint64_t sum, bool failed)
{
	char msg[128];
	if (failed) {
		state.SkipWithError("thread creation failed inside the tree");
	} else if (sum != expected_sum(opts().skynet_leaves)) {
		std::snprintf(msg, sizeof(msg),
		    "wrong sum %llu, expected %llu", (unsigned long long)sum,
		    (unsigned long long)expected_sum(opts().skynet_leaves));
		state.SkipWithError(msg);
	}
	state.counters["s_per_thread"] = benchmark::Counter(
	    double(threads_per_tree(opts().skynet_leaves)),
	    benchmark::Counter::kIsIterationInvariantRate |
		benchmark::Counter::kInvert);
}

// --- usmp ---

usmp::machine_config
skynet_config()
{
	usmp::machine_config cfg;
	cfg.stack_size = node_stack_size;
	return cfg;
}

const machine_spec skynet_machine = {
	"skynet: 2 CPUs, 16 KiB default stacks",
	skynet_config(),
};

std::atomic<bool> usmp_failed;

usmp::thread_attr
node_attr()
{
	usmp::thread_attr attr;
	attr.name = "skynet";
	attr.stack_size = node_stack_size;
	return attr;
}
const usmp::thread_attr skynet_node_attr = node_attr();

uint64_t
skynet_usmp(uint64_t num, uint64_t size)
{
	if (size == 1)
		return num;
	size /= fanout;
	usmp::thread *kids[fanout];
	uint64_t sums[fanout];
	int n = 0;
	for (; n < fanout; n++) {
		uint64_t *out = &sums[n];
		uint64_t sub = num + n * size;
		if (usmp::thread_create(&kids[n], skynet_node_attr, [out, sub, size] {
			    *out = skynet_usmp(sub, size);
		    }) != 0)
			break;
	}
	if (n < fanout) {
		// Out of stacks: finish the subtree inline, fail the run.
		usmp_failed.store(true, std::memory_order_relaxed);
		for (int i = n; i < fanout; i++)
			sums[i] = skynet_usmp(num + i * size, size);
	}
	uint64_t sum = 0;
	for (int i = 0; i < fanout; i++) {
		if (i < n)
			usmp::thread_join(kids[i]);
		sum += sums[i];
	}
	return sum;
}

void
skynet_usmp_bench(benchmark::State &state)
{
	if (!use_machine(state, skynet_machine))
		return;
	usmp_failed.store(false, std::memory_order_relaxed);
	usmp::thread_attr root_attr;
	root_attr.name = "skynet root";
	root_attr.stack_size = root_stack_size;
	uint64_t sum = 0;
	if (!run_on_green_thread(state, root_attr, [&] {
		    sum = skynet_usmp(0, opts().skynet_leaves); // warm-up
		    for (auto _ : state)
			    sum = skynet_usmp(0, opts().skynet_leaves);
	    }))
		return;
	check_result(state, sum, usmp_failed.load(std::memory_order_relaxed));
}

// --- Boost.Fiber ---

// A node's results; 16 >= fanout, so a child's push never blocks.
using result_channel = boost::fibers::buffered_channel<uint64_t>;
constexpr std::size_t channel_capacity = 16;

void
skynet_fiber(result_channel &out, uint64_t num, uint64_t size)
{
	if (size == 1) {
		out.push(num);
		return;
	}
	result_channel results(channel_capacity);
	size /= fanout;
	for (int i = 0; i < fanout; i++)
		boost::fibers::fiber(boost::fibers::launch::dispatch,
		    std::allocator_arg,
		    boost::fibers::fixedsize_stack(node_stack_size),
		    skynet_fiber, std::ref(results), num + i * size, size)
		    .detach();
	uint64_t sum = 0;
	for (int i = 0; i < fanout; i++)
		sum += results.value_pop();
	out.push(sum);
}

// The measured loop of both Boost.Fiber variants.
void
skynet_fiber_loop(benchmark::State &state, uint64_t *sum)
{
	result_channel root(2);
	skynet_fiber(root, 0, opts().skynet_leaves); // warm-up
	*sum = root.value_pop();
	for (auto _ : state) {
		skynet_fiber(root, 0, opts().skynet_leaves);
		*sum = root.value_pop();
	}
}

void
skynet_boost_fiber_ws(benchmark::State &state)
{
	use_no_machine();
	uint64_t sum = 0;
	run_on_work_stealing_pool([&] { skynet_fiber_loop(state, &sum); });
	check_result(state, sum, false);
}

void
skynet_boost_fiber_rr(benchmark::State &state)
{
	use_no_machine();
	uint64_t sum = 0;
	run_on_fiber([&] { skynet_fiber_loop(state, &sum); });
	check_result(state, sum, false);
}

} // namespace

void
register_skynet()
{
	timed("skynet", "usmp", skynet_usmp_bench)
	    ->Unit(benchmark::kMillisecond);
	timed("skynet", "boost_fiber_ws", skynet_boost_fiber_ws)
	    ->Unit(benchmark::kMillisecond);
	timed("skynet", "boost_fiber_rr", skynet_boost_fiber_rr)
	    ->Unit(benchmark::kMillisecond);
	add_ratio({"skynet", "usmp", "boost_fiber_ws", 0.5});
	add_ratio({"skynet", "usmp", "boost_fiber_rr", 0});
}

} // namespace usmp_bench

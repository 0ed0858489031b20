// Thread stacks (runtime/stack.h): red-zoned segments from arenas, the
// per-CPU caches and the pool, colours, drain, and the baseline malloc mode.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

#include "runtime/machine.h"
#include "runtime/pcpu.h"
#include "runtime/segment.h"
#include "runtime/stack.h"
#include "runtime/thread.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sched/sched.h"
#include "support/death.h"

using namespace usmp;

namespace {

const std::size_t PG = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));

// Where the stack subsystem stands: what must come back after a drain.
struct snapshot {
	std::size_t segs;
	stack_stats st;
};

snapshot
snap()
{
	return snapshot{seg_count(), stack_get_stats()};
}

void
require_same(const snapshot &a, const snapshot &b)
{
	CHECK(a.segs == b.segs);
	CHECK(a.st.mapped == b.st.mapped);
	CHECK(a.st.cached == b.st.cached);
	CHECK(a.st.pooled == b.st.pooled);
	CHECK(a.st.in_use == b.st.in_use);
}

// Start each test from empty caches and pool.
struct fresh {
	fresh()
	{
		stack_configure(stack_params{});
		stack_drain_all();
	}
	~fresh() { stack_drain_all(); }
};

} // namespace

TEST_CASE("a stack: bounds, descriptor at the top, coloured top, lookup",
    "[stack]")
{
	fresh f;
	snapshot s0 = snap();
	CHECK(s0.st.mapped == 0);
	stack *st = stack_alloc();
	REQUIRE(st != nullptr);
	CHECK(st->st_size == stack_config().default_size);
	CHECK(st->st_hi - st->st_lo == static_cast<long>(st->st_size));
	CHECK(reinterpret_cast<char *>(st) >= st->st_lo);
	CHECK(reinterpret_cast<char *>(st + 1) <= st->st_hi);
	CHECK(reinterpret_cast<char *>(st) + 2 * sizeof(stack) > st->st_hi);
	CHECK(st->st_top <= reinterpret_cast<char *>(st));
	CHECK(reinterpret_cast<uintptr_t>(st->st_top) % 256 == 0);
	CHECK(reinterpret_cast<char *>(st) - st->st_top <
	    static_cast<long>(16 * 256 + 256));
	CHECK_FALSE(st->st_malloced);
	CHECK(st->st_owner == nullptr);
	std::memset(st->st_lo, 0x5a, static_cast<std::size_t>(st->st_top -
	    st->st_lo)); // all of it is usable

	stack_stats s = stack_get_stats();
	CHECK(s.in_use == 1);
	CHECK(s.mapped >= 1);
	CHECK(seg_count() > s0.segs); // an arena: red zones and slots

	bool rz = true;
	CHECK(stack_lookup(st->st_lo, &rz) == st);
	CHECK_FALSE(rz);
	CHECK(stack_lookup(st->st_top - 1, &rz) == st);
	CHECK(stack_lookup(st->st_hi - 1, &rz) == st);
	CHECK_FALSE(rz);
	CHECK(stack_lookup(st->st_lo - 1, &rz) == st); // the red zone below
	CHECK(rz);
	rz = false;
	CHECK(stack_lookup(st->st_lo - stack_config().redzone_size, &rz) == st);
	CHECK(rz);
	int local;
	CHECK(stack_lookup(&local, &rz) == nullptr); // an OS thread's stack

	segment seg;
	REQUIRE(seg_lookup(st->st_lo, &seg));
	CHECK((seg.s_flags & SG_STACK));
	CHECK(seg.s_owner == st);
	REQUIRE(seg_lookup(st->st_lo - 1, &seg));
	CHECK(seg.s_flags == (SG_STACK | SG_NONE));

	stack_free(st);
	s = stack_get_stats();
	CHECK(s.in_use == 0);
	CHECK(s.pooled >= 1);
	stack_drain_all();
	require_same(snap(), s0);
}

TEST_CASE("stacks come back to the pool and are reused, LIFO", "[stack]")
{
	fresh f;
	stack *a = stack_alloc();
	REQUIRE(a != nullptr);
	stack_free(a);
	stack *b = stack_alloc();
	CHECK(b == a);
	stack_free(b);
}

TEST_CASE("colours differ between stacks", "[stack]")
{
	fresh f;
	std::vector<stack *> v;
	std::set<unsigned> colours;
	std::set<long> offsets;
	for (int i = 0; i < 32; i++) {
		stack *st = stack_alloc();
		REQUIRE(st != nullptr);
		v.push_back(st);
		colours.insert(st->st_colour);
		offsets.insert(reinterpret_cast<uintptr_t>(st->st_top) % 4096);
	}
	CHECK(colours.size() == 16);
	CHECK(offsets.size() == 16); // 16 different cache-set positions
	for (stack *st : v)
		stack_free(st);
}

TEST_CASE("red zones below and above a stack fault", "[stack][death]")
{
	fresh f;
	for (bool guard : {true, false}) {
		seg_set_redzone_method(guard);
		stack_drain_all(); // new arenas with this method
		INFO("red zones by " << seg_redzone_method());
		stack *st = stack_alloc();
		REQUIRE(st != nullptr);
		volatile char *lo = reinterpret_cast<volatile char *>(st->st_lo);
		volatile char *hi = reinterpret_cast<volatile char *>(st->st_hi);
		std::size_t rz = stack_config().redzone_size;
		lo[0] = 1; // usable
		hi[-1] = 1;
		auto r = test::run_death("below", [lo] { lo[-1] = 1; });
		INFO(r.describe());
		CHECK(r.killed_by(SIGSEGV));
		r = test::run_death("bottom of the red zone",
		    [lo, rz] { (void)lo[-static_cast<long>(rz)]; });
		INFO(r.describe());
		CHECK(r.killed_by(SIGSEGV));
		r = test::run_death("above", [hi] { hi[0] = 1; });
		INFO(r.describe());
		CHECK(r.killed_by(SIGSEGV));
		stack_free(st);
	}
	seg_set_redzone_method(true);
}

namespace {

// The number of distinct VMAs (lines of /proc/self/maps) that hold the
// stacks' usable bottoms and the red zones below them.
std::size_t
vmas_holding(const std::vector<stack *> &v)
{
	std::vector<std::pair<uintptr_t, uintptr_t>> maps;
	FILE *f = std::fopen("/proc/self/maps", "r");
	unsigned long lo, hi;
	char line[512];
	while (std::fgets(line, sizeof(line), f) != nullptr)
		if (std::sscanf(line, "%lx-%lx", &lo, &hi) == 2)
			maps.emplace_back(lo, hi);
	std::fclose(f);
	std::set<std::size_t> used;
	for (stack *st : v)
		for (char *a : {st->st_lo, st->st_lo - 1}) {
			uintptr_t x = reinterpret_cast<uintptr_t>(a);
			for (std::size_t i = 0; i < maps.size(); i++)
				if (x >= maps[i].first && x < maps[i].second)
					used.insert(i);
		}
	return used.size();
}

} // namespace

TEST_CASE("guard red zones split no VMA; the mprotect fallback does",
    "[stack]")
{
	fresh f;
	const int N = 200;
	std::vector<stack *> v(N);
	for (bool guard : {true, false}) {
		seg_set_redzone_method(guard);
		stack_drain_all();
		for (auto &st : v)
			st = stack_alloc();
		std::size_t n = vmas_holding(v);
		INFO("red zones by " << seg_redzone_method() << ": " << N
		    << " stacks and their red zones lie in " << n << " VMAs");
		if (guard)
			CHECK(n <= (N + 63) / 64); // one per arena at most
		else
			CHECK(n == 2 * N); // a VMA per stack and per red zone
		for (auto &st : v)
			stack_free(st);
	}
	seg_set_redzone_method(true);
}

TEST_CASE("drain_all gives everything back: segments and stats return",
    "[stack]")
{
	fresh f;
	snapshot s0 = snap();
	std::vector<stack *> v;
	for (int i = 0; i < 300; i++) { // several arenas
		stack *st = stack_alloc();
		REQUIRE(st != nullptr);
		st->st_lo[0] = 1;
		st->st_top[-1] = 1;
		v.push_back(st);
	}
	CHECK(stack_get_stats().in_use == 300);
	CHECK(seg_count() > s0.segs + 2 * 300);
	for (stack *st : v)
		stack_free(st);
	stack_drain_all();
	require_same(snap(), s0);

	// With one stack still in use, its arena stays; the rest goes.
	v.clear();
	for (int i = 0; i < 100; i++)
		v.push_back(stack_alloc());
	stack *keep = v[50];
	for (stack *st : v)
		if (st != keep)
			stack_free(st);
	stack_drain_all();
	stack_stats s = stack_get_stats();
	CHECK(s.mapped == 1);
	CHECK(s.in_use == 1);
	CHECK(s.pooled == 0);
	segment seg;
	REQUIRE(seg_lookup(keep->st_lo, &seg));
	CHECK(seg.s_owner == keep);
	keep->st_top[-100] = 7; // still there, still ours
	// A released slot of the kept arena can be carved again.
	stack *again = stack_alloc();
	REQUIRE(again != nullptr);
	again->st_top[-1] = 1;
	stack_free(again);
	stack_free(keep);
	stack_drain_all();
	require_same(snap(), s0);
}

TEST_CASE("100k alloc/free cycles grow nothing", "[stack]")
{
	fresh f;
	// Warm up to the loop's peak working set: 1 + 40 stacks.
	std::vector<stack *> v(40);
	stack *first = stack_alloc();
	for (auto &st : v)
		st = stack_alloc();
	for (auto &st : v)
		stack_free(st);
	stack_free(first);
	snapshot s1 = snap();
	uint64_t u1 = seg_get_table_info().ti_updates;
	for (int i = 0; i < 100000; i++) {
		stack *st = stack_alloc();
		REQUIRE(st != nullptr);
		if (i % 1000 == 0) {
			for (auto &x : v)
				x = stack_alloc();
			for (auto &x : v)
				stack_free(x);
		}
		stack_free(st);
	}
	require_same(snap(), s1);
	CHECK(seg_get_table_info().ti_updates == u1); // no map, no unmap
}

TEST_CASE("sizes: below the default a default stack, above it a class "
    "stack, above every class a lone mapping", "[stack]")
{
	fresh f;
	snapshot s0 = snap();
	stack *big = stack_alloc(1 << 20);
	REQUIRE(big != nullptr);
	CHECK(big->st_size == (1u << 20));
	CHECK(big->st_arena != nullptr); // the 1 MiB class's arena
	CHECK(big->st_class == 20);
	std::memset(big->st_lo, 1, 4096);
	bool rz = false;
	CHECK(stack_lookup(big->st_lo - 1, &rz) == big);
	CHECK(rz);
	CHECK(stack_lookup(big->st_hi, &rz) == big);
	CHECK(rz);
	stack *odd = stack_alloc((1 << 20) + 1); // rounds up to 2 MiB
	REQUIRE(odd != nullptr);
	CHECK(odd->st_size == (2u << 20));
	stack_free(odd);
	stack_free(big);
	CHECK(stack_alloc(1 << 20) == big); // pooled, LIFO
	stack_free(big);
	stack *small = stack_alloc(1000); // rounds up to the default
	REQUIRE(small != nullptr);
	CHECK(small->st_size == stack_config().default_size);
	CHECK(small->st_class == 0);
	stack_free(small);

	// Bigger than every class (64 MiB): mapped alone, a zombie when freed,
	// unmapped by the next slow path.
	std::size_t segs = seg_count();
	stack *huge = stack_alloc(65u << 20);
	REQUIRE(huge != nullptr);
	CHECK(huge->st_arena == nullptr);
	CHECK(seg_count() == segs + 3); // red zone, stack, red zone
	CHECK(stack_lookup(huge->st_hi, &rz) == huge);
	stack_free(huge); // no system call here
	CHECK(seg_count() == segs + 3);
	stack_free(stack_alloc(1 << 20));
	CHECK(seg_count() == segs);
	for (int i = 0; i < 50; i++)
		stack_free(stack_alloc(256 * 1024));
	stack_drain_all();
	require_same(snap(), s0);
}

TEST_CASE("10,000 stacks of a non-default size map a bounded number of "
    "arenas; drain gives them back", "[stack]")
{
	fresh f;
	snapshot s0 = snap();
	// Above the default (a class) and below it (a default stack).
	for (std::size_t size : {std::size_t{256} << 10, std::size_t{16} << 10}) {
		INFO("size " << size);
		stack_stats b = stack_get_stats();
		uint64_t u0 = seg_get_table_info().ti_updates;
		const int N = 10000, live = 40;
		std::vector<stack *> v(live);
		for (int i = 0; i < N; i += live) {
			for (auto &st : v) {
				st = stack_alloc(size);
				REQUIRE(st != nullptr);
				REQUIRE(st->st_size >= size);
				st->st_top[-1] = 1;
			}
			for (auto &st : v)
				stack_free(st);
		}
		stack_stats a = stack_get_stats();
		// 40 alive at once: a few arenas, whatever the count.
		CHECK(a.maps - b.maps <= 2);
		CHECK(a.released == b.released);
		CHECK(seg_get_table_info().ti_updates - u0 <= 2);
		CHECK(a.mapped - b.mapped <= 64);
		CHECK(a.in_use == 0);
		stack_drain_all();
		CHECK(stack_get_stats().arenas == 0);
		require_same(snap(), s0);
	}
}

TEST_CASE("a class pool is bounded: the overflow goes back to the system",
    "[stack]")
{
	fresh f;
	snapshot s0 = snap();
	const std::size_t size = 128 << 10; // 32 MiB of them: 256
	std::vector<stack *> v(600);
	for (auto &st : v) {
		st = stack_alloc(size);
		REQUIRE(st != nullptr);
	}
	stack_stats b = stack_get_stats();
	for (auto &st : v)
		stack_free(st);
	stack_cache_trim(); // releases the overflow (zombies), nothing else
	stack_stats a = stack_get_stats();
	CHECK(a.pooled == 256);
	CHECK(a.released - b.released == 600 - 256);
	CHECK(a.mapped == 256);
	// The pooled ones are reused without a map.
	for (auto &st : v)
		st = stack_alloc(size);
	// 344 carved again: the unmapped arenas' worth, 56 slots each.
	CHECK(stack_get_stats().maps - a.maps <= (600 - 256) / 56 + 1);
	for (auto &st : v)
		stack_free(st);
	stack_drain_all();
	require_same(snap(), s0);
}

TEST_CASE("the pool gives back only beyond its high-water mark, oldest "
    "first, after release_delay_ns, a batch per trim", "[stack]")
{
	fresh f;
	snapshot s0 = snap();
	stack_params p;
	p.release_delay_ns = 3600ull * 1000000000; // an hour
	p.release_batch = 100;
	stack_configure(p);
	const std::size_t floor = p.cache_high; // per CPU; no machine: one
	const int N = 1000;
	std::vector<stack *> v(N);
	for (auto &st : v) {
		st = stack_alloc();
		REQUIRE(st != nullptr);
		st->st_top[-1] = 1;
	}
	// Freed from a foreign thread: to the pool, oldest first.
	for (auto &st : v)
		stack_free(st);
	stack_stats a = stack_get_stats();
	CHECK(a.pooled == N);
	uint64_t now = clock_ns();
	uint64_t due = stack_trim_deadline();
	CHECK(due > now + 3000ull * 1000000000);
	CHECK(due != UINT64_MAX);
	stack_cache_trim(); // nothing is old enough
	CHECK(stack_get_stats().pooled == N);
	CHECK(stack_get_stats().released == a.released);

	p.release_delay_ns = 0; // same geometry: no drain
	stack_configure(p);
	CHECK(stack_get_stats().pooled == N);
	usleep(25000); // the pools' clock is coarse: up to a tick (1/HZ) late
	CHECK(stack_trim_deadline() <= clock_ns());
	stack_cache_trim();
	CHECK(stack_get_stats().pooled == N - 100);
	CHECK(stack_get_stats().released == a.released + 100);
	for (int i = 0; i < 20; i++)
		stack_cache_trim();
	stack_stats b = stack_get_stats();
	CHECK(b.pooled == floor);
	CHECK(b.released == a.released + N - floor);
	CHECK(stack_trim_deadline() == UINT64_MAX);
	// What stayed is the newest: the last stacks freed (within a chain,
	// a foreign thread's batch of 16, all are the same age).
	std::set<stack *> newest(v.end() - static_cast<long>(floor + 16),
	    v.end());
	std::vector<stack *> kept(floor);
	for (auto &st : kept) {
		st = stack_alloc();
		CHECK(newest.count(st) == 1);
	}
	CHECK(stack_get_stats().maps == b.maps);
	for (stack *st : kept)
		stack_free(st);
	stack_drain_all();
	stack_configure(stack_params{});
	require_same(snap(), s0);
}

TEST_CASE("a new geometry never hands out a stack of the old one", "[stack]")
{
	fresh f;
	snapshot s0 = snap();
	stack *old = stack_alloc();
	REQUIRE(old != nullptr);
	stack *spare = stack_alloc();
	stack_free(spare); // pooled: the drain in stack_configure() takes it
	stack_params p;
	p.default_size = 2 * stack_params{}.default_size;
	stack_configure(p);
	CHECK(stack_get_stats().mapped == 1);
	stack_free(old); // a zombie
	stack *st = stack_alloc();
	REQUIRE(st != nullptr);
	CHECK(st->st_size == p.default_size);
	CHECK(st != old);
	stack_free(st);
	for (int i = 0; i < 100; i++) { // never the old arena's free slots
		st = stack_alloc();
		CHECK(st->st_size == p.default_size);
		stack_free(st);
	}
	stack_drain_all();
	stack_configure(stack_params{});
	require_same(snap(), s0);
}

TEST_CASE("the malloc baseline: no red zones, nothing in the table",
    "[stack]")
{
	fresh f;
	snapshot s0 = snap();
	stack_params p;
	p.malloc_stacks = true;
	stack_configure(p);
	stack *st = stack_alloc();
	REQUIRE(st != nullptr);
	CHECK(st->st_malloced);
	CHECK(st->st_size >= p.default_size);
	CHECK(seg_count() == s0.segs);
	bool rz;
	CHECK(stack_lookup(st->st_lo, &rz) == nullptr);
	CHECK(stack_get_stats().in_use == 1);
	std::memset(st->st_lo, 0, static_cast<std::size_t>(st->st_top - st->st_lo));
	stack_free(st);
	CHECK(stack_get_stats().mapped == 0);
	stack_drain_all();
	stack_configure(stack_params{});
	require_same(snap(), s0);
}

TEST_CASE("per-CPU caches: threads reuse cached stacks, the pool takes the "
    "excess, drain empties every CPU", "[stack][machine]")
{
	fresh f;
	snapshot s0 = snap();
	machine_config cfg;
	cfg.ncpus = 2;
	cfg.stack_cache_low = 8;
	cfg.stack_cache_high = 32;
	std::atomic<long> bad_lookup{0};
	// Catch2 is used from the main green thread only (one at a time).
	int r = usmp::run(cfg, [&] {
		// 300 threads alive at once, on both CPUs.
		std::atomic<bool> go{false};
		std::vector<green_thread> v;
		for (int i = 0; i < 300; i++)
			v.emplace_back([&bad_lookup, &go] {
				volatile char buf[2048];
				buf[0] = 1;
				bool rz = true;
				const stack *st = stack_lookup(
				    const_cast<char *>(&buf[0]), &rz);
				if (st == nullptr || rz ||
				    st->st_owner != curthread())
					bad_lookup++;
				while (!go.load())
					thread_yield();
			});
		stack_stats s = stack_get_stats();
		CHECK(s.in_use == 301);
		CHECK(s.mapped >= 301);
		go = true;
		for (auto &t : v)
			t.join();
		// The statistics are read racily while the other CPU moves
		// stacks between its cache, the pool and the system: wait for
		// them to settle.
		for (int i = 0; i < 2000; i++) {
			s = stack_get_stats();
			if (s.in_use == 1)
				break;
			thread_sleep(std::chrono::milliseconds(1));
		}
		CHECK(s.in_use == 1); // main
		CHECK(s.cached <= 2 * cfg.stack_cache_high);

		// On a CPU, alloc/free hits that CPU's cache, LIFO.
		sched_pin();
		stack *w = stack_alloc();
		stack_free(w);
		long not_lifo = 0;
		for (int i = 0; i < 20000; i++) {
			stack *st = stack_alloc();
			not_lifo += st != w;
			stack_free(st);
		}
		CHECK(not_lifo == 0);
		sched_unpin();

		// Drain from a green thread while the other CPU idles (an idle
		// CPU may top its cache up again right after).
		stack_drain_all();
		for (int i = 0; i < 2000; i++) {
			s = stack_get_stats();
			if (s.in_use == 1)
				break;
			thread_sleep(std::chrono::milliseconds(1));
		}
		CHECK(s.in_use == 1);
		CHECK(s.mapped <= 1 + 2 * cfg.stack_cache_low);
		return 0;
	});
	CHECK(r == 0);
	CHECK(bad_lookup.load() == 0);
	// The machine's shutdown drained what its CPUs had cached.
	CHECK(stack_get_stats().mapped == 0);
	require_same(snap(), s0);
}

TEST_CASE("on a CPU, alloc/free of a cached stack maps nothing",
    "[stack][machine]")
{
	fresh f;
	// One CPU: its idle housekeeping cannot run while main does.
	machine_config cfg;
	cfg.ncpus = 1;
	int r = usmp::run(cfg, [&] {
		stack *w = stack_alloc();
		stack_free(w);
		uint64_t u = seg_get_table_info().ti_updates;
		stack_stats s1 = stack_get_stats();
		for (int i = 0; i < 50000; i++) {
			stack *a = stack_alloc();
			stack *b = stack_alloc();
			if (a == nullptr || b == nullptr)
				return 1;
			stack_free(b);
			stack_free(a);
		}
		stack_stats s2 = stack_get_stats();
		CHECK(seg_get_table_info().ti_updates == u);
		CHECK(s2.mapped == s1.mapped);
		CHECK(s2.cached == s1.cached);
		CHECK(s2.pooled == s1.pooled);
		return 0;
	});
	CHECK(r == 0);
}

TEST_CASE("bursts with idle gaps between them: no map, no release after the "
    "first", "[stack][machine]")
{
	fresh f;
	machine_config cfg;
	cfg.ncpus = 2;
	int r = usmp::run(cfg, [&] {
		// Every burst has all 3000 threads alive at once (they sleep
		// until `go`), so each needs the same number of stacks however
		// the host schedules the two CPUs: otherwise how many are
		// alive together at the peak, hence mapped, varies with load.
		// They sleep rather than yield, so that a burst stays short
		// (well under the pool's release delay).
		auto burst = [] {
			usmp::mutex m("burst");
			bool go = false;
			std::vector<green_thread> v;
			for (int i = 0; i < 3000; i++)
				v.emplace_back([&] {
					volatile char buf[4096];
					buf[0] = 1;
					m.lock();
					while (!go)
						usmp::msleep(&go, m, 0, "burst");
					m.unlock();
				});
			m.lock();
			go = true;
			m.unlock();
			usmp::wakeup(&go);
			for (auto &t : v)
				t.join();
		};
		burst();
		thread_sleep(std::chrono::milliseconds(20)); // idle passes
		stack_stats s1 = stack_get_stats();
		uint64_t u1 = seg_get_table_info().ti_updates;
		for (int i = 0; i < 10; i++) {
			burst();
			// Both CPUs idle, refill and trim, and park.
			thread_sleep(std::chrono::milliseconds(20));
		}
		// Nothing went back to the system.  A burst may still map a
		// little more than the first did: stacks that wait in one CPU's
		// cache (cache_high at most) are not where the other CPU needs
		// them.
		stack_stats s2 = stack_get_stats();
		const unsigned slack = 2 * stack_config().cache_high;
		CHECK(s2.released == s1.released);
		CHECK(s2.mapped <= s1.mapped + slack);
		const unsigned nslots = 64; // an arena: 8 MiB / 80 KiB, at most 64
		CHECK(s2.maps - s1.maps <= slack / nslots + 1);
		CHECK(seg_get_table_info().ti_updates - u1 <= slack / nslots + 1);
		return 0;
	});
	CHECK(r == 0);
	CHECK(stack_get_stats().mapped == 0);
}

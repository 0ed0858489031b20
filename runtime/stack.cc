// Thread stacks (see runtime/stack.h): red-zoned segments carved from
// arenas, cached per CPU, pooled, and given back to the system only when a
// burst is long over.
//
// Vocabulary.  An *arena* is one mapping cut into slots for stacks of one
// size, every slot between two red zones that it shares with its
// neighbours:
//
//     | rz | slot 0 | rz | slot 1 | rz | ... | slot n-1 | rz |
//
// made by one segattachv() (runtime/segment.h): one mmap, one
// MADV_GUARD_INSTALL per red zone (no VMA is split; with the mprotect
// fallback each red zone costs two VMAs, so vm.max_map_count, 65530, caps the
// stacks near 32k), and one update of the segment table for all 2n + 1
// segments.  Each slot is an SG_STACK segment whose owner is its descriptor;
// each red zone's owner is the stack above it (the one that overflows into
// it), or for the topmost, the stack below.  A slot is *cold* while it has
// no descriptor (never used, or its pages were given back with
// MADV_DONTNEED); *carving* a slot writes its descriptor, the first touch of
// its top page, which the thread would make anyway.
//
// A *zone* holds the stacks of one size: its arenas with cold slots and its
// *pool* of ready stacks.  The default zone has the default size and feeds
// the per-CPU caches; a *class* zone has a power of two above the default
// (up to 2^CLASS_MAX_SHIFT) and no cache.  A pool is a deque of *chains*
// (lists linked by st_next whose first stack holds the chain's length, the
// time it was pooled and the links to the neighbouring chains), newest
// first: stacks move between a cache and the pool a chain at a time, in
// O(1), and since chains enter and leave at the new end, the old end holds
// the stacks unused the longest.  A *generation* is one geometry (default
// size, red-zone size, malloc mode); stacks and arenas of an older one are
// never handed out again.
//
// Where a stack can be, and who may touch it there:
//   in use      its thread (st_owner)
//   cached      a CPU's stack_cache: that CPU, in a critical section, holding
//               sc_lock; stack_drain_all() from any thread, holding sc_lock
//   pooled      its zone's pool: g_pool.lock
//   zombie      waiting to go back to the system (lone stacks bigger than
//               every class, a class pool's overflow, an older generation):
//               g_pool.lock
//
// The problem: thread create and exit are hot, and a fresh red-zoned stack
// costs 12-25 us of mmap and guard installation here against 0.2 us for a
// system call and 2 us for a page's first touch; and real workloads are
// bursty.  skynet (apps/bench/skynet.cc) keeps thousands of 16 KiB stacks
// alive at a peak, frees them on whichever CPU stole the work, and peaks
// again a few milliseconds later.
//
// Rejected: a segattach() per stack (three segments, three table updates, a
// VMA split per red zone); a plain free list under one lock (every CPU's
// create and exit would meet on it); a pool with a fixed high-water mark
// trimmed on every idle pass (the first version: every lull between two
// peaks gave stacks back, and the next peak re-mapped, re-guarded and
// re-faulted them: skynet spent a third of its time in mmap, page faults
// and munmap, 2200 arenas a tree); MADV_DONTNEED on stacks going back to a
// cache or pool (a recycled stack would fault its pages in again: warm
// stacks are the point of recycling); mapping every odd size alone (an mmap,
// a guard install and an munmap per thread for users of one explicit size).
//
// The protocol:
//  1. stack_alloc() of a default stack on a CPU pops its cache, LIFO, with no
//     system call and no shared write but the uncontended sc_lock.  An empty
//     cache takes the newest chain from the pool (one pop under
//     g_pool.lock), else carves up to a batch of cold slots of an arena,
//     else maps a new arena: the system calls and page touches are made
//     holding no lock and outside the critical section.  Zombies are
//     unmapped on this slow path only.  A class stack comes from its zone
//     the same way, one stack at a time; a stack bigger than every class is
//     mapped alone.
//  2. stack_free() pushes onto the CPU's cache; above cache_high it cuts the
//     cache back to cache_low and gives the rest to the pool as one chain.
//     A class stack goes to its pool, or becomes a zombie if the pool holds
//     z_cap already.  stack_free() never makes a system call, never sleeps
//     and takes only spin locks (sc_lock, then g_pool.lock), so it may be
//     called with spin locks held (the exiting thread's stack is freed from
//     the switch path).  Stacks it cannot pool (lone stacks, an older
//     generation) become zombies, unmapped by the next slow-path
//     stack_alloc(), stack_cache_trim() or stack_drain_all().
//  3. Foreign OS threads have no cache: they take from and give to the pool.
//  4. Giving stacks back to the system is serialised by g_release_mtx.
//     stack_cache_trim() takes, from the old end of each pool, stacks beyond
//     the pool's high-water mark (z_floor; the default zone's is per CPU)
//     whose chain was pooled release_delay_ns ago or more, release_batch at
//     most per call, and the zombies; stack_drain_all() takes every idle
//     stack.  Then: each stack's slot is marked releasing and its arena's
//     live count dropped under g_pool.lock; holding no spin lock, an arena
//     left with no live slot is detached and unmapped whole, and the other
//     slots get MADV_DONTNEED; then, under g_pool.lock again, those slots
//     become cold (carvable, if the arena is of this generation) only now
//     that their pages are gone.
//  5. An idle CPU bounds its park by stack_trim_deadline(), the time the
//     oldest chain beyond a high-water mark comes due, so that a process
//     that goes idle after a burst still gives the burst back.
//
// Lock order: sc_lock -> g_pool.lock; g_release_mtx -> g_pool.lock; the
// segment table's lock is taken with none of these held.  On a CPU,
// g_pool.lock and sc_lock are held inside a critical section (so the holder
// is never preempted); they are not taken from filters or signal handlers,
// so the spinlock section of runtime/internal/spinlock.h is not needed.
//
// Colours: st_top lies a colour * 256 bytes below the descriptor, the
// colour cycling over 16 as stacks are carved, so the top frames of the
// threads spread over 4 KiB of cache sets.
#include "runtime/stack.h"

#include <malloc.h>
#include <sanitizer/asan_interface.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "runtime/config.h"
#include "runtime/critical.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/segment.h"
#include "runtime/thread.h"

namespace usmp {

namespace {

constexpr unsigned NCOLOURS = 16;
constexpr std::size_t COLOUR_STEP = 256;
constexpr unsigned ARENA_MAX_SLOTS = 64;        // a_cold is a 64-bit map
constexpr std::size_t ARENA_TARGET = 8u << 20;  // address space per arena
constexpr unsigned CLASS_MAX_SHIFT = 26;        // the biggest class: 64 MiB
constexpr std::size_t CLASS_POOL_BYTES = 32u << 20; // a class pools this much,
constexpr std::size_t CLASS_MIN_CAP = 4;        // or at least this many

const std::size_t g_pagesz = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));

std::size_t
round_page(std::size_t n) noexcept
{
	return (n + g_pagesz - 1) & ~(g_pagesz - 1);
}

uintptr_t
align_down(uintptr_t v, std::size_t a) noexcept
{
	return v & ~(static_cast<uintptr_t>(a) - 1);
}

// The pools' clock: CLOCK_MONOTONIC_COARSE, the clock of clock_ns()
// (runtime/machine.h) up to g_coarse_res behind, read without a system call
// whatever the clocksource (stack_free() may read it with spin locks held).
uint64_t
ts_ns(const struct timespec &ts) noexcept
{
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull +
	    static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t
pool_now() noexcept
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return ts_ns(ts);
}

const uint64_t g_coarse_res = [] {
	struct timespec ts;
	if (clock_getres(CLOCK_MONOTONIC_COARSE, &ts) != 0)
		return uint64_t{10000000};
	return ts_ns(ts);
}();

struct stk_zone;

// A batch of stack slots.  Locking key: (c) constant; (p) g_pool.lock;
// (r) g_release_mtx.
struct stk_arena {
	char *a_base = nullptr;      // (c) the mapping
	std::size_t a_len = 0;       // (c)
	std::size_t a_usable = 0;    // (c) usable bytes of a slot
	std::size_t a_rz = 0;        // (c) red-zone bytes
	unsigned a_nslots = 0;       // (c)
	unsigned a_gen = 0;          // (c) generation it was mapped in
	stk_zone *a_zone = nullptr;  // (c) the zone it was mapped for
	uint64_t a_cold = 0;         // (p) slots without a descriptor
	uint64_t a_releasing = 0;    // (p) slots going back to the system
	unsigned a_live = 0;         // (p) slots with a descriptor
	bool a_oncold = false;       // (p) on a_zone->z_cold
	stk_arena *a_cnext = nullptr; // (p) arenas with cold slots
	stk_arena *a_cprev = nullptr;
	stk_arena *a_rnext = nullptr; // (r) arenas touched by one release
	bool a_rmark = false;        // (r)

	char *slot_lo(unsigned i) const noexcept
	{
		return a_base + a_rz + i * (a_rz + a_usable);
	}
};

// The stacks of one size.  Locking key: (g) set by stack_configure() at a
// quiet point, with the pool empty when the geometry changes; (p)
// g_pool.lock.
struct stk_zone {
	std::size_t z_usable = 0;     // (g) usable bytes of a stack; 0: unused
	unsigned z_nslots = 0;        // (g) slots per arena
	unsigned z_class = 0;         // (g) st_class of its stacks
	unsigned z_batch = 1;         // (g) stacks carved at once; loose stacks
	                              //     make a chain at this count
	std::size_t z_floor = 0;      // (g) high-water mark: the pool keeps this
	                              //     many (the default zone: per CPU)
	std::size_t z_cap = SIZE_MAX; // (g) a class pool holds at most this many
	stack *z_newest = nullptr;    // (p) chains: st_chain leads to older ones
	stack *z_oldest = nullptr;    // (p) st_chainprev leads to newer ones
	std::size_t z_nchained = 0;   // (p) stacks in the chains
	stack *z_loose = nullptr;     // (p) stacks freed one by one by foreign
	unsigned z_nloose = 0;        // (p)   threads, until they make a chain
	stk_arena *z_cold = nullptr;  // (p) arenas of this generation with cold
	                              //     slots
};

// The geometry of default-size stacks.  (g) after stack_configure().
struct stk_geometry {
	std::size_t g_usable;   // usable bytes of a default stack
	std::size_t g_rz;       // red-zone bytes
	unsigned g_nslots;      // slots per arena
	unsigned g_batch;       // stacks moved between a cache and the pool
	std::size_t g_poolhigh; // the pool's high-water mark, per CPU
};

unsigned
slots_for(std::size_t usable, std::size_t rz) noexcept
{
	std::size_t n = ARENA_TARGET / (usable + rz);
	return static_cast<unsigned>(std::clamp<std::size_t>(n, 1,
	    ARENA_MAX_SLOTS));
}

stk_geometry
make_geometry(const stack_params &p) noexcept
{
	stk_geometry g;
	g.g_usable = round_page(std::max<std::size_t>(p.default_size, 2 * g_pagesz));
	g.g_rz = round_page(std::max<std::size_t>(p.redzone_size, g_pagesz));
	g.g_nslots = slots_for(g.g_usable, g.g_rz);
	unsigned b = p.cache_low != 0 ? p.cache_low : 16;
	g.g_batch = std::clamp(b, 1u, std::max(1u, std::min(64u, p.cache_high)));
	g.g_poolhigh = std::max<std::size_t>(p.cache_high, g.g_batch);
	return g;
}

stack_params g_params;
stk_geometry g_geom = make_geometry(stack_params{});
unsigned g_gen = 1;        // (g) the current generation

// The pool: one lock over every zone's pool and cold arenas (class stacks
// are not hot enough to want locks of their own), and the zombies.
struct stk_pool {
	spinlock lock;
	stack *p_zombies = nullptr;  // (lock)
	std::size_t p_nzombies = 0;  // (lock)
};
stk_pool g_pool;
stk_zone g_dflt;                        // the default size
stk_zone g_class[CLASS_MAX_SHIFT + 1];  // by log2 of the size; used where
                                        // z_usable != 0

// Set every zone's geometry from g_geom.  Requires that the pools hold no
// stack of another geometry (stack_configure()).
void
zones_setup() noexcept
{
	const stk_geometry &g = g_geom;
	g_dflt.z_usable = g.g_usable;
	g_dflt.z_nslots = g.g_nslots;
	g_dflt.z_class = 0;
	g_dflt.z_batch = g.g_batch;
	g_dflt.z_floor = g.g_poolhigh;
	g_dflt.z_cap = SIZE_MAX;
	for (unsigned s = 0; s <= CLASS_MAX_SHIFT; s++) {
		stk_zone *z = &g_class[s];
		std::size_t size = std::size_t{1} << s;
		if (size <= g.g_usable) {
			z->z_usable = 0;
			continue;
		}
		z->z_usable = size;
		z->z_nslots = slots_for(size, g.g_rz);
		z->z_class = s;
		z->z_batch = 1;
		z->z_cap = std::max(CLASS_MIN_CAP, CLASS_POOL_BYTES / size);
		z->z_floor = std::min<std::size_t>(z->z_cap, z->z_nslots);
	}
}
const bool g_zones_ready = (zones_setup(), true);

template <class F>
void
foreach_zone(F &&f) noexcept
{
	f(&g_dflt);
	for (stk_zone &z : g_class)
		if (z.z_usable != 0)
			f(&z);
}

std::size_t
zone_pooled(const stk_zone *z) noexcept
{
	return z->z_nchained + z->z_nloose;
}

std::size_t
zone_floor(const stk_zone *z) noexcept
{
	if (z == &g_dflt)
		return z->z_floor * static_cast<std::size_t>(std::max(1, mp_ncpus()));
	return z->z_floor;
}

std::mutex g_release_mtx;
std::atomic<std::size_t> g_nlive{0};   // stacks with a descriptor
std::atomic<std::size_t> g_narenas{0}; // arenas mapped
std::atomic<uint64_t> g_nmaps{0};      // mappings made
std::atomic<uint64_t> g_nreleased{0};  // stacks given back
std::atomic<std::size_t> g_nzombie_hint{0}; // racy copy of p_nzombies
std::atomic<unsigned> g_colour{0};

// Hold g_pool.lock, inside a critical section on a CPU.
class pool_guard {
public:
	pool_guard() noexcept : oncpu_(curpcpu() != nullptr)
	{
		if (oncpu_)
			critical_enter();
		g_pool.lock.lock();
	}
	~pool_guard()
	{
		g_pool.lock.unlock();
		if (oncpu_)
			critical_exit();
	}
	pool_guard(const pool_guard &) = delete;
	pool_guard &operator=(const pool_guard &) = delete;

private:
	bool oncpu_;
};

// ---- Descriptors.

stack *
desc_of(char *lo, std::size_t usable) noexcept
{
	return reinterpret_cast<stack *>(align_down(
	    reinterpret_cast<uintptr_t>(lo + usable - sizeof(stack)), 64));
}

stack *
stack_init(char *lo, std::size_t usable, stk_arena *a, unsigned slot,
    bool malloced) noexcept
{
	stack *st = ::new (desc_of(lo, usable)) stack;
	st->st_lo = lo;
	st->st_hi = lo + usable;
	st->st_size = usable;
	unsigned c = g_colour.fetch_add(1, std::memory_order_relaxed) % NCOLOURS;
	st->st_colour = c;
	st->st_top = reinterpret_cast<char *>(align_down(
	    reinterpret_cast<uintptr_t>(st), COLOUR_STEP) - c * COLOUR_STEP);
	st->st_arena = a;
	st->st_slot = slot;
	st->st_malloced = malloced;
	st->st_class = a != nullptr ? a->a_zone->z_class : 0;
	st->st_gen = a != nullptr ? a->a_gen : 0;
	return st;
}

// ---- Arenas.

void
cold_insert(stk_zone *z, stk_arena *a) noexcept
{
	if (a->a_oncold)
		return;
	a->a_oncold = true;
	a->a_cprev = nullptr;
	a->a_cnext = z->z_cold;
	if (a->a_cnext != nullptr)
		a->a_cnext->a_cprev = a;
	z->z_cold = a;
}

void
cold_remove(stk_zone *z, stk_arena *a) noexcept
{
	if (!a->a_oncold)
		return;
	a->a_oncold = false;
	if (a->a_cprev != nullptr)
		a->a_cprev->a_cnext = a->a_cnext;
	else
		z->z_cold = a->a_cnext;
	if (a->a_cnext != nullptr)
		a->a_cnext->a_cprev = a->a_cprev;
	a->a_cnext = a->a_cprev = nullptr;
}

// Claim up to n cold slots of a (g_pool.lock held).  Returns the slot map.
uint64_t
arena_claim(stk_arena *a, unsigned n) noexcept
{
	uint64_t got = 0;
	for (unsigned k = 0; k < n && a->a_cold != 0; k++) {
		uint64_t bit = a->a_cold & -a->a_cold;
		a->a_cold &= ~bit;
		got |= bit;
	}
	a->a_live += static_cast<unsigned>(__builtin_popcountll(got));
	g_nlive.fetch_add(__builtin_popcountll(got), std::memory_order_relaxed);
	if (a->a_cold == 0)
		cold_remove(a->a_zone, a);
	return got;
}

// Write the descriptors of the claimed slots (no lock: the slots are ours).
// Returns them as a list; *np receives its length.
stack *
arena_carve(stk_arena *a, uint64_t slots, unsigned *np) noexcept
{
	stack *head = nullptr;
	unsigned n = 0;
	// Highest slot first, so the list hands out the lowest first.
	while (slots != 0) {
		unsigned i = 63 - static_cast<unsigned>(__builtin_clzll(slots));
		slots &= ~(uint64_t{1} << i);
		stack *st = stack_init(a->slot_lo(i), a->a_usable, a, i, false);
		st->st_next = head;
		head = st;
		n++;
	}
	*np = n;
	return head;
}

void
arena_prepare(seg_spec *v, std::size_t n, void *) noexcept
{
	// v: rz, slot, rz, slot, ..., slot, rz.  A red zone belongs to the
	// stack above it; the topmost to the stack below.
	for (std::size_t i = 1; i < n; i += 2)
		v[i].ss_owner = desc_of(static_cast<char *>(v[i].ss_addr),
		    v[i].ss_len);
	for (std::size_t i = 0; i + 1 < n; i += 2)
		v[i].ss_owner = v[i + 1].ss_owner;
	v[n - 1].ss_owner = v[n - 2].ss_owner;
}

// Map a new arena for zone z, every slot cold.  No lock held.
stk_arena *
arena_map(stk_zone *z) noexcept
{
	const std::size_t usable = z->z_usable, rz = g_geom.g_rz;
	const unsigned nslots = z->z_nslots;
	stk_arena *a = static_cast<stk_arena *>(std::malloc(sizeof(stk_arena)));
	if (a == nullptr)
		return nullptr;
	::new (a) stk_arena;
	std::size_t n = 2 * nslots + 1;
	seg_spec v[2 * ARENA_MAX_SLOTS + 1];
	for (std::size_t i = 0; i < n; i++) {
		bool isrz = (i % 2) == 0;
		v[i].ss_flags = isrz ? SG_STACK | SG_NONE : SG_STACK;
		v[i].ss_len = isrz ? rz : usable;
		v[i].ss_name = isrz ? "stack redzone" : "stack";
	}
	if (segattachv(v, n, arena_prepare, nullptr) != 0) {
		std::free(a);
		return nullptr;
	}
	a->a_base = static_cast<char *>(v[0].ss_addr);
	a->a_len = nslots * (usable + rz) + rz;
	a->a_usable = usable;
	a->a_rz = rz;
	a->a_nslots = nslots;
	a->a_gen = g_gen;
	a->a_zone = z;
	a->a_cold = nslots == 64 ? ~uint64_t{0} : (uint64_t{1} << nslots) - 1;
	g_narenas.fetch_add(1, std::memory_order_relaxed);
	g_nmaps.fetch_add(1, std::memory_order_relaxed);
	return a;
}

// ---- The pools.

// Push a chain of n stacks at z's new end, pooled at `now` (g_pool.lock
// held).
void
pool_push_locked(stk_zone *z, stack *chain, unsigned n, uint64_t now) noexcept
{
	chain->st_nchain = n;
	chain->st_pooltime = now;
	chain->st_chainprev = nullptr;
	chain->st_chain = z->z_newest;
	if (z->z_newest != nullptr)
		z->z_newest->st_chainprev = chain;
	else
		z->z_oldest = chain;
	z->z_newest = chain;
	z->z_nchained += n;
}

// Pop the newest chain of z, or null (g_pool.lock held).
stack *
pool_pop_newest_locked(stk_zone *z, unsigned *np) noexcept
{
	stack *c = z->z_newest;
	if (c == nullptr)
		return nullptr;
	z->z_newest = c->st_chain;
	if (z->z_newest != nullptr)
		z->z_newest->st_chainprev = nullptr;
	else
		z->z_oldest = nullptr;
	z->z_nchained -= c->st_nchain;
	*np = c->st_nchain;
	return c;
}

// Take up to k (>= 1) stacks of the oldest chain of z, which must exist: the
// whole chain, or its first k stacks, the rest staying as a chain of the
// same age (g_pool.lock held).
stack *
pool_take_oldest_locked(stk_zone *z, unsigned k, unsigned *np) noexcept
{
	stack *c = z->z_oldest;
	unsigned n = c->st_nchain;
	if (k >= n) {
		z->z_oldest = c->st_chainprev;
		if (z->z_oldest != nullptr)
			z->z_oldest->st_chain = nullptr;
		else
			z->z_newest = nullptr;
		z->z_nchained -= n;
		*np = n;
		return c;
	}
	stack *t = c;
	for (unsigned i = 1; i < k; i++)
		t = t->st_next;
	stack *rest = t->st_next;
	t->st_next = nullptr;
	rest->st_nchain = n - k;
	rest->st_pooltime = c->st_pooltime;
	rest->st_chain = nullptr;
	rest->st_chainprev = c->st_chainprev;
	if (rest->st_chainprev != nullptr)
		rest->st_chainprev->st_chain = rest;
	else
		z->z_newest = rest;
	z->z_oldest = rest;
	z->z_nchained -= k;
	*np = k;
	return c;
}

void
pool_put_loose_locked(stk_zone *z, stack *st, uint64_t now) noexcept
{
	st->st_next = z->z_loose;
	z->z_loose = st;
	if (++z->z_nloose >= z->z_batch) {
		pool_push_locked(z, z->z_loose, z->z_nloose, now);
		z->z_loose = nullptr;
		z->z_nloose = 0;
	}
}

// Get a list of 1 to `want` (or a whole pooled chain of) stacks of zone z:
// step 1's slow path.  No lock held on entry; may map.  Null if out of
// memory.
stack *
pool_take(stk_zone *z, unsigned want, unsigned *np) noexcept
{
	stk_arena *a = nullptr;
	uint64_t slots = 0;
	{
		pool_guard pg;
		if (want == 1 && z->z_loose != nullptr) {
			stack *st = z->z_loose;
			z->z_loose = st->st_next;
			z->z_nloose--;
			st->st_next = nullptr;
			*np = 1;
			return st;
		}
		if (stack *c = pool_pop_newest_locked(z, np))
			return c;
		if (z->z_loose != nullptr) {
			stack *c = z->z_loose;
			*np = z->z_nloose;
			z->z_loose = nullptr;
			z->z_nloose = 0;
			return c;
		}
		if ((a = z->z_cold) != nullptr)
			slots = arena_claim(a, want);
	}
	if (a == nullptr) {
		if ((a = arena_map(z)) == nullptr)
			return nullptr;
		pool_guard pg;
		slots = arena_claim(a, want);
		if (a->a_cold != 0)
			cold_insert(z, a);
	}
	return arena_carve(a, slots, np);
}

// Give back to the system, from the old end of z's pool, up to `budget`
// stacks beyond its high-water mark pooled at least release_delay_ns before
// `now`: prepend them to *out.  Returns how many (g_pool.lock held).
unsigned
pool_take_due_locked(stk_zone *z, uint64_t now, unsigned budget,
    stack **out) noexcept
{
	const uint64_t delay = g_params.release_delay_ns;
	const std::size_t floor = zone_floor(z);
	unsigned took = 0;
	while (took < budget && z->z_oldest != nullptr &&
	    zone_pooled(z) > floor && now >= z->z_oldest->st_pooltime &&
	    now - z->z_oldest->st_pooltime >= delay) {
		std::size_t k = std::min<std::size_t>(budget - took,
		    zone_pooled(z) - floor);
		unsigned n;
		stack *l = pool_take_oldest_locked(z, static_cast<unsigned>(k), &n);
		stack *t = l;
		while (t->st_next != nullptr)
			t = t->st_next;
		t->st_next = *out;
		*out = l;
		took += n;
	}
	return took;
}

// ---- CPU caches.

// Cut c back to `keep` stacks; return the rest (*np of them) or null.
// sc_lock held.
stack *
cache_cut(stack_cache *c, unsigned keep, unsigned *np) noexcept
{
	if (c->sc_count <= keep)
		return nullptr;
	*np = c->sc_count - keep;
	stack *excess;
	if (keep == 0) {
		excess = c->sc_head;
		c->sc_head = nullptr;
	} else {
		stack *st = c->sc_head;
		for (unsigned i = 1; i < keep; i++)
			st = st->st_next;
		excess = st->st_next;
		st->st_next = nullptr;
	}
	c->sc_count = keep;
	return excess;
}

// Give a cut-off list of n default stacks to the pool as one chain.
// Context: on a CPU, in a critical section, no spin lock held.
void
cache_excess_to_pool(stack *excess, unsigned n) noexcept
{
	uint64_t now = pool_now();
	g_pool.lock.lock();
	pool_push_locked(&g_dflt, excess, n, now);
	g_pool.lock.unlock();
}

// Put a list of n default stacks on the current CPU's cache, below the
// stacks it holds (those are warmer), the excess over cache_high to the
// pool.  Context: on a CPU, in a critical section.
void
cache_put_list(pcpu *pc, stack *list, unsigned n) noexcept
{
	stack_cache *c = &pc->pc_stacks;
	unsigned nx = 0;
	c->sc_lock.lock();
	if (c->sc_head == nullptr) {
		c->sc_head = list;
	} else {
		stack *t = c->sc_head;
		while (t->st_next != nullptr)
			t = t->st_next;
		t->st_next = list;
	}
	c->sc_count += n;
	stack *excess = nullptr;
	if (c->sc_count > g_params.cache_high)
		excess = cache_cut(c, std::min(g_params.cache_low,
		    g_params.cache_high), &nx);
	c->sc_lock.unlock();
	if (excess != nullptr)
		cache_excess_to_pool(excess, nx);
}

// ---- Giving stacks back to the system (step 4).

// Release a list of stacks (linked by st_next) of arenas.  Requires
// g_release_mtx; no spin lock held.
void
release_arena_stacks(stack *list) noexcept
{
	stk_arena *touched = nullptr;
	stk_arena *dead = nullptr;
	std::size_t released = 0;
	{
		pool_guard pg;
		for (stack *st = list; st != nullptr; st = st->st_next) {
			released++;
			stk_arena *a = static_cast<stk_arena *>(st->st_arena);
			a->a_releasing |= uint64_t{1} << st->st_slot;
			a->a_live--;
			if (!a->a_rmark) {
				a->a_rmark = true;
				a->a_rnext = touched;
				touched = a;
			}
		}
		stk_arena **pp = &touched;
		while (*pp != nullptr) {
			stk_arena *a = *pp;
			if (a->a_live == 0) {
				cold_remove(a->a_zone, a);
				*pp = a->a_rnext;
				a->a_rnext = dead;
				dead = a;
			} else {
				pp = &a->a_rnext;
			}
		}
		g_nlive.fetch_sub(released, std::memory_order_relaxed);
	}
	g_nreleased.fetch_add(released, std::memory_order_relaxed);
	for (stk_arena *a = dead, *next; a != nullptr; a = next) {
		next = a->a_rnext;
		int error = segdetach_range(a->a_base, a->a_len);
		if (error != 0)
			panic("stack_drain_all(): segdetach_range() of stack arena "
			    "%p (%zu bytes) failed: %d", a->a_base, a->a_len, error);
		a->~stk_arena();
		std::free(a);
		g_narenas.fetch_sub(1, std::memory_order_relaxed);
	}
	for (stk_arena *a = touched; a != nullptr; a = a->a_rnext) {
		uint64_t m = a->a_releasing;
		while (m != 0) {
			unsigned i = static_cast<unsigned>(__builtin_ctzll(m));
			m &= m - 1;
			madvise(a->slot_lo(i), a->a_usable, MADV_DONTNEED);
		}
	}
	{
		pool_guard pg;
		for (stk_arena *a = touched; a != nullptr; a = a->a_rnext) {
			a->a_cold |= a->a_releasing;
			a->a_releasing = 0;
			a->a_rmark = false;
			// An arena of an older generation only waits for its
			// last live slot, then goes.
			if (a->a_gen == g_gen)
				cold_insert(a->a_zone, a);
		}
	}
}

// Unmap a stack mapped alone.  No lock held.
void
release_direct(stack *st) noexcept
{
	segment below, above;
	if (!seg_lookup(st->st_lo - 1, &below) || !seg_lookup(st->st_hi, &above))
		panic("stack_free(): stack %p-%p has lost its red zones",
		    st->st_lo, st->st_hi);
	char *lo = below.base();
	std::size_t len = static_cast<std::size_t>(above.end() - lo);
	int error = segdetach_range(lo, len);
	if (error != 0)
		panic("stack_free(): segdetach_range() of stack %p-%p failed: %d",
		    st->st_lo, st->st_hi, error);
	g_nlive.fetch_sub(1, std::memory_order_relaxed);
	g_nreleased.fetch_add(1, std::memory_order_relaxed);
}

// Release a list of stacks of any kind.  Requires g_release_mtx.
void
release_list(stack *list) noexcept
{
	stack *arena_list = nullptr;
	for (stack *st = list, *next; st != nullptr; st = next) {
		next = st->st_next;
		if (st->st_arena != nullptr) {
			st->st_next = arena_list;
			arena_list = st;
		} else {
			release_direct(st);
		}
	}
	if (arena_list != nullptr)
		release_arena_stacks(arena_list);
}

// Take the zombies out of the pool (g_pool.lock held).
stack *
take_zombies_locked() noexcept
{
	stack *z = g_pool.p_zombies;
	g_pool.p_zombies = nullptr;
	g_pool.p_nzombies = 0;
	g_nzombie_hint.store(0, std::memory_order_relaxed);
	return z;
}

// Release the zombies, unless another thread is releasing already.
void
reap_zombies() noexcept
{
	std::unique_lock<std::mutex> lk(g_release_mtx, std::try_to_lock);
	if (!lk.owns_lock())
		return;
	stack *z;
	{
		pool_guard pg;
		z = take_zombies_locked();
	}
	if (z != nullptr)
		release_list(z);
}

void
zombie_put_locked(stack *st) noexcept
{
	st->st_next = g_pool.p_zombies;
	g_pool.p_zombies = st;
	g_pool.p_nzombies++;
	g_nzombie_hint.store(g_pool.p_nzombies, std::memory_order_relaxed);
}

void
zombie_put(stack *st) noexcept
{
	pool_guard pg;
	zombie_put_locked(st);
}

// Append list b to list a; returns the head.
stack *
list_concat(stack *a, stack *b) noexcept
{
	if (a == nullptr)
		return b;
	stack *t = a;
	while (t->st_next != nullptr)
		t = t->st_next;
	t->st_next = b;
	return a;
}

// ---- malloc'd stacks (the benchmark baseline).

stack *
malloc_stack_alloc(std::size_t size) noexcept
{
	std::size_t want = size == 0 ? g_geom.g_usable : round_page(size);
	char *p = static_cast<char *>(std::malloc(want));
	if (p == nullptr)
		return nullptr;
	g_nlive.fetch_add(1, std::memory_order_relaxed);
	return stack_init(p, want, nullptr, 0, true);
}

// A stack of `want` bytes, bigger than every class, in a mapping of its own.
stack *
direct_alloc(std::size_t want) noexcept
{
	const std::size_t rz = g_geom.g_rz;
	seg_spec v[3];
	v[0].ss_flags = v[2].ss_flags = SG_STACK | SG_NONE;
	v[0].ss_len = v[2].ss_len = rz;
	v[0].ss_name = v[2].ss_name = "stack redzone";
	v[1].ss_flags = SG_STACK;
	v[1].ss_len = want;
	v[1].ss_name = "stack";
	if (segattachv(v, 3, arena_prepare, nullptr) != 0)
		return nullptr;
	g_nlive.fetch_add(1, std::memory_order_relaxed);
	g_nmaps.fetch_add(1, std::memory_order_relaxed);
	return stack_init(static_cast<char *>(v[1].ss_addr), want, nullptr, 0,
	    false);
}

stack *
ready(stack *st) noexcept
{
	st->st_next = nullptr;
	st->st_owner = nullptr;
	st->st_chain = nullptr;
	st->st_chainprev = nullptr;
	st->st_nchain = 0;
	return st;
}

// The zone of a stack of `want` bytes, more than the default, or null if
// it is bigger than every class.
stk_zone *
class_zone(std::size_t want) noexcept
{
	unsigned s = 64 - static_cast<unsigned>(__builtin_clzll(want - 1));
	if (s > CLASS_MAX_SHIFT || g_class[s].z_usable == 0)
		return nullptr;
	return &g_class[s];
}

// Step 1 for a size above the default.
stack *
class_alloc(std::size_t want) noexcept
{
	if (g_nzombie_hint.load(std::memory_order_relaxed) != 0)
		reap_zombies();
	stk_zone *z = class_zone(want);
	if (z == nullptr)
		return direct_alloc(want);
	unsigned n;
	stack *st = pool_take(z, 1, &n);
	if (st == nullptr)
		return nullptr;
	if (n > 1) {
		uint64_t now = pool_now();
		pool_guard pg;
		pool_push_locked(z, st->st_next, n - 1, now);
	}
	return ready(st);
}

// Step 2 for a class stack of this generation.
void
class_free(stack *st) noexcept
{
	stk_zone *z = &g_class[st->st_class];
	uint64_t now = pool_now();
	pool_guard pg;
	if (z->z_nchained >= z->z_cap) {
		zombie_put_locked(st);
		return;
	}
	st->st_next = nullptr;
	pool_push_locked(z, st, 1, now);
}

} // namespace

// ---- The interface.

void
stack_configure(const stack_params &p) noexcept
{
	stack_params q = p;
	if (q.cache_high < q.cache_low)
		q.cache_high = q.cache_low;
	if (q.release_batch == 0)
		q.release_batch = 1;
	stk_geometry g = make_geometry(q);
	bool changed = g.g_usable != g_geom.g_usable || g.g_rz != g_geom.g_rz ||
	    q.malloc_stacks != g_params.malloc_stacks;
	if (changed) {
		// Idle stacks of the old geometry go back to the system; those
		// in use become zombies when freed, and the free slots of their
		// arenas are never carved again.
		stack_drain_all();
		pool_guard pg;
		foreach_zone([](stk_zone *z) {
			while (stk_arena *a = z->z_cold)
				cold_remove(z, a);
		});
		g_gen++;
	}
	g_params = q;
	g_geom = g;
	zones_setup();
}

const stack_params &
stack_config() noexcept
{
	return g_params;
}

stack *
stack_alloc(std::size_t size) noexcept
{
	if (g_params.malloc_stacks)
		return malloc_stack_alloc(size);
	std::size_t want = size == 0 ? g_geom.g_usable : round_page(size);
	if (want > g_geom.g_usable)
		return class_alloc(want);

	pcpu *pc = curpcpu();
	if (pc != nullptr) {
		critical_enter();
		pc = curpcpu();
		stack_cache *c = &pc->pc_stacks;
		c->sc_lock.lock();
		stack *st = c->sc_head;
		if (st != nullptr) {
			c->sc_head = st->st_next;
			c->sc_count--;
		}
		c->sc_lock.unlock();
		critical_exit();
		if (st != nullptr)
			return ready(st);
	}

	if (g_nzombie_hint.load(std::memory_order_relaxed) != 0)
		reap_zombies();
	unsigned n;
	stack *list = pool_take(&g_dflt, pc != nullptr ? g_geom.g_batch : 1, &n);
	if (list == nullptr)
		return nullptr;
	stack *st = list;
	stack *rest = st->st_next;
	if (rest != nullptr) {
		if (pc != nullptr) {
			critical_enter();
			cache_put_list(curpcpu(), rest, n - 1);
			critical_exit();
		} else {
			uint64_t now = pool_now();
			pool_guard pg;
			pool_push_locked(&g_dflt, rest, n - 1, now);
		}
	}
	return ready(st);
}

void
stack_free(stack *st) noexcept
{
	if (st == nullptr)
		return;
	if (st->st_malloced) {
		g_nlive.fetch_sub(1, std::memory_order_relaxed);
		std::free(st->st_lo);
		return;
	}
	st->st_owner = nullptr;
	// A thread never returns through its frames (it switches away in
	// thread_exit()), so AddressSanitizer's poison of their red zones
	// stays behind: wipe it, or the next thread on this stack trips on it.
	if constexpr (config::sanitize_address)
		__asan_unpoison_memory_region(st->st_lo, st->st_size);
	if (st->st_arena == nullptr || st->st_gen != g_gen) {
		zombie_put(st);
		return;
	}
	if (st->st_class != 0) {
		class_free(st);
		return;
	}
	pcpu *pc = curpcpu();
	if (pc == nullptr) {
		uint64_t now = pool_now();
		pool_guard pg;
		pool_put_loose_locked(&g_dflt, st, now);
		return;
	}
	critical_enter();
	pc = curpcpu();
	stack_cache *c = &pc->pc_stacks;
	unsigned nx = 0;
	c->sc_lock.lock();
	st->st_next = c->sc_head;
	c->sc_head = st;
	stack *excess = nullptr;
	if (++c->sc_count > g_params.cache_high)
		excess = cache_cut(c, std::min(g_params.cache_low,
		    g_params.cache_high), &nx);
	c->sc_lock.unlock();
	if (excess != nullptr)
		cache_excess_to_pool(excess, nx);
	critical_exit();
}

void
stack_cache_refill() noexcept
{
	if (g_params.malloc_stacks || curpcpu() == nullptr)
		return;
	if (g_nzombie_hint.load(std::memory_order_relaxed) != 0)
		reap_zombies();
	critical_enter();
	unsigned have = curpcpu()->pc_stacks.sc_count;
	critical_exit();
	while (have < g_params.cache_low) {
		unsigned n;
		stack *list = pool_take(&g_dflt, g_params.cache_low - have, &n);
		if (list == nullptr)
			return;
		critical_enter();
		cache_put_list(curpcpu(), list, n);
		critical_exit();
		have += n;
	}
}

void
stack_cache_trim() noexcept
{
	pcpu *pc = curpcpu();
	if (pc != nullptr) {
		unsigned nx = 0;
		critical_enter();
		stack_cache *c = &curpcpu()->pc_stacks;
		c->sc_lock.lock();
		stack *excess = cache_cut(c, g_params.cache_high, &nx);
		c->sc_lock.unlock();
		if (excess != nullptr)
			cache_excess_to_pool(excess, nx);
		critical_exit();
	}
	// Each pool gives back what lies beyond its high-water mark and has
	// lain unused long enough, a bounded batch per call.
	std::unique_lock<std::mutex> lk(g_release_mtx, std::try_to_lock);
	if (!lk.owns_lock())
		return;
	const uint64_t now = pool_now();
	stack *out = nullptr;
	{
		pool_guard pg;
		unsigned budget = g_params.release_batch;
		foreach_zone([&](stk_zone *z) {
			budget -= pool_take_due_locked(z, now, budget, &out);
		});
		out = list_concat(take_zombies_locked(), out);
	}
	if (out != nullptr)
		release_list(out);
}

uint64_t
stack_trim_deadline() noexcept
{
	const uint64_t delay = g_params.release_delay_ns;
	uint64_t due = UINT64_MAX;
	pool_guard pg;
	if (g_pool.p_nzombies != 0)
		return pool_now();
	foreach_zone([&](stk_zone *z) {
		if (z->z_oldest != nullptr && zone_pooled(z) > zone_floor(z)) {
			// Late by a tick of the coarse clock, so that the
			// trim then sees the chain as due.
			uint64_t t = z->z_oldest->st_pooltime + g_coarse_res;
			due = std::min(due, t + std::min(delay, UINT64_MAX - t));
		}
	});
	return due;
}

void
stack_drain_all() noexcept
{
	std::lock_guard<std::mutex> lk(g_release_mtx);
	stack *out = nullptr;
	bool oncpu = curpcpu() != nullptr;
	for (int cpu = 0;; cpu++) {
		pcpu *pc = pcpu_find(cpu);
		if (pc == nullptr)
			break;
		if (oncpu)
			critical_enter();
		stack_cache *c = &pc->pc_stacks;
		c->sc_lock.lock();
		stack *l = c->sc_head;
		c->sc_head = nullptr;
		c->sc_count = 0;
		c->sc_lock.unlock();
		if (oncpu)
			critical_exit();
		out = list_concat(l, out);
	}
	{
		pool_guard pg;
		foreach_zone([&](stk_zone *z) {
			unsigned n;
			while (stack *ch = pool_pop_newest_locked(z, &n))
				out = list_concat(ch, out);
			out = list_concat(z->z_loose, out);
			z->z_loose = nullptr;
			z->z_nloose = 0;
		});
		out = list_concat(take_zombies_locked(), out);
	}
	if (out != nullptr)
		release_list(out);
	if (g_params.malloc_stacks)
		malloc_trim(0);
}

stack_stats
stack_get_stats() noexcept
{
	stack_stats s{};
	s.mapped = g_nlive.load(std::memory_order_relaxed);
	for (int cpu = 0;; cpu++) {
		pcpu *pc = pcpu_find(cpu);
		if (pc == nullptr)
			break;
		s.cached += __atomic_load_n(&pc->pc_stacks.sc_count,
		    __ATOMIC_RELAXED);
	}
	{
		pool_guard pg;
		foreach_zone([&](stk_zone *z) { s.pooled += zone_pooled(z); });
		s.pooled += g_pool.p_nzombies;
	}
	std::size_t idle = s.cached + s.pooled;
	s.in_use = s.mapped > idle ? s.mapped - idle : 0;
	s.arenas = g_narenas.load(std::memory_order_relaxed);
	s.maps = g_nmaps.load(std::memory_order_relaxed);
	s.released = g_nreleased.load(std::memory_order_relaxed);
	return s;
}

const stack *
stack_lookup(const void *addr, bool *in_redzone) noexcept
{
	segment s;
	if (!seg_lookup(addr, &s) || !(s.s_flags & SG_STACK))
		return nullptr;
	bool rz = (s.s_flags & SG_NONE) != 0;
	const stack *st = static_cast<const stack *>(s.s_owner);
	if (!rz) {
		// A cold slot has no descriptor (its page reads as zeros).
		if (st == nullptr || st->st_lo != s.base())
			return nullptr;
	} else if (st == nullptr ||
	    (st->st_lo != s.end() && st->st_hi != s.base())) {
		// The stack above is cold: try the one below.
		segment b;
		st = nullptr;
		if (seg_lookup(s.base() - 1, &b) && (b.s_flags & SG_STACK) &&
		    !(b.s_flags & SG_NONE)) {
			const stack *sb = static_cast<const stack *>(b.s_owner);
			if (sb != nullptr && sb->st_lo == b.base() &&
			    sb->st_hi == s.base())
				st = sb;
		}
		if (st == nullptr)
			return nullptr;
	}
	if (in_redzone != nullptr)
		*in_redzone = rz;
	return st;
}

} // namespace usmp

// Thread stacks: an anonymous segment between two SG_NONE red zones
// (runtime/segment.h), after Plan 9's libthread-on-segattach.
//
// Layout of one stack, low to high addresses:
//
//   [ red zone (SG_NONE) | usable, lazily faulted ... | struct stack ] [ red zone ...
//                        ^st_lo                st_top^ ^st_hi
//
// The descriptor (struct stack) lives in the top bytes of its own usable
// region, so a stack costs no allocation besides its segment.  st_top, where
// the thread's own frames begin, is staggered below the descriptor by a cache
// colour (a multiple of 256 bytes, the alignment Boost.Context gives its
// record), so that the hot top frames of many threads do not all fall on the
// same cache sets (page colouring, FreeBSD VM design).
//
// Ready stacks are cached per CPU (struct stack_cache in struct pcpu): thread
// create and exit make no system call while the cache has stacks; an idle CPU
// refills its cache (as an idle kernel pre-zeroes pages); a cache over its
// high-water mark gives stacks back to a global pool.  The pool keeps every
// stack a burst needed, pages and all (a recycled stack is warm), and gives
// back to the system only what lies beyond its own high-water mark and has
// gone unused for release_delay_ns, a bounded batch per idle pass.
//
// Sizes above the default are rounded up to a power of two and pooled per
// size class (no per-CPU cache), boundedly; only stacks larger than the
// biggest class are mapped alone.  Sizes at or below the default get a
// default stack.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/internal/spinlock.h"

namespace usmp {

struct segment;

// Locking key: (c) constant while the stack exists; (o) the owner (the
// cache that holds it, or the thread that runs on it); (p) the stack pool's
// lock (stack.cc), while the stack is in the pool.
struct stack {
	char *st_lo = nullptr;        // (c) lowest usable byte
	char *st_hi = nullptr;        // (c) one past the highest usable byte
	char *st_top = nullptr;       // (c) coloured top for the thread's frames
	std::size_t st_size = 0;      // (c) usable bytes (st_hi - st_lo)
	void *st_owner = nullptr;     // (o) struct thread running on it, or null
	stack *st_next = nullptr;     // (o) cache or pool link
	unsigned st_colour = 0;       // (c) colour index
	bool st_malloced = false;     // (c) plain malloc'd (no red zones; benchmark baseline)
	unsigned st_slot = 0;         // (c) index in its arena
	void *st_arena = nullptr;     // (c) arena it was carved from; null: mapped alone
	stack *st_chain = nullptr;    // (p) pool: next older chain (in a chain's first stack)
	unsigned st_nchain = 0;       // (p) pool: length of the chain it heads
	unsigned st_class = 0;        // (c) 0: default size; else log2 of its size class
	stack *st_chainprev = nullptr; // (p) pool: next newer chain (in a chain's first stack)
	uint64_t st_pooltime = 0;     // (p) pool: when its chain was pooled (ns)
	unsigned st_gen = 0;          // (c) stack geometry generation it was carved in
};

// One CPU's cache of ready stacks of the default size.  Its CPU uses it
// inside a critical section, holding sc_lock (uncontended: the only other
// taker is stack_drain_all(), which empties every CPU's cache).
struct stack_cache {
	spinlock sc_lock;
	stack *sc_head = nullptr;     // (sc_lock) LIFO: hottest first
	unsigned sc_count = 0;        // (sc_lock); read racily by stack_get_stats()
};

// Tunables, set at boot from machine_config (runtime/machine.h).
struct stack_params {
	std::size_t default_size = 64 * 1024; // usable bytes of a default stack
	unsigned cache_low = 16;   // an idle CPU refills its cache to this
	unsigned cache_high = 256; // above this, stack_free() gives back a batch
	bool malloc_stacks = false; // benchmark baseline: malloc'd, no red zones
	std::size_t redzone_size = 16 * 1024; // SG_NONE bytes below (and above) a stack
	// Giving back to the system (stack_cache_trim()): a pooled stack beyond
	// the pool's high-water mark goes once it has been unused this long,
	// at most release_batch stacks per call.
	uint64_t release_delay_ns = 1000000000;
	unsigned release_batch = 256;
};
void stack_configure(const stack_params &p) noexcept;
const stack_params &stack_config() noexcept;

// Get a stack with at least `size` usable bytes (0: the default size).
// A size at or below the default gets a default stack; a bigger one, a stack
// of its power-of-two size class.  Returns null when memory (or the segment
// commit limit) is exhausted.
// Context: any thread, not a signal handler; on a CPU it runs in a critical
// section and makes no system call when the CPU's cache has a stack.
stack *stack_alloc(std::size_t size = 0) noexcept;

// Give a stack back: to the current CPU's cache, or the global pool.
// Context: any thread, not a signal handler; may be called with spin locks
// held: it never makes a system call, never sleeps, and takes only spin
// locks (see stack.cc, step 2).
void stack_free(stack *st) noexcept;

// Refill the current CPU's cache up to cache_low.  Called by the idle loop.
// Context: a CPU's idle loop; may map.
void stack_cache_refill() noexcept;

// Trim the current CPU's cache down to cache_high, giving the excess to the
// pool; then give back to the system at most release_batch pooled stacks
// that lie beyond the pool's high-water mark and have been unused for
// release_delay_ns, and any zombies.  Called by the idle loop.
// Context: no spin lock held; may unmap.
void stack_cache_trim() noexcept;

// When (clock_ns(), runtime/machine.h) stack_cache_trim() will next have
// something to give back to the system: a time already past if it has now,
// UINT64_MAX if nothing is due at all; never 0 (cpu_park()'s "no deadline").
// An idle CPU about to park bounds its sleep by it, so that a process gone
// idle after a burst still returns the memory.
// Context: any thread, not a signal handler.
uint64_t stack_trim_deadline() noexcept;

// Give every cached and pooled stack back to the system (unmap): a cold
// start (the threads1024 benchmark), machine shutdown.  Only the caches of
// CPUs that are idle or stopped may be drained; the machine calls it at a
// quiet point.  Context: a green thread or foreign thread, no spin locks.
void stack_drain_all() noexcept;

struct stack_stats {
	std::size_t mapped;   // stacks that exist (in use, cached or pooled)
	std::size_t cached;   // stacks in per-CPU caches
	std::size_t pooled;   // stacks in the global pool (any size, and zombies)
	std::size_t in_use;   // stacks owned by threads
	std::size_t arenas;   // arenas mapped now (any size class)
	uint64_t maps;        // mappings made so far: arenas and lone stacks
	uint64_t released;    // stacks given back to the system so far
};
stack_stats stack_get_stats() noexcept;

// The stack that contains addr in its usable range or its red zones, or
// null.  Async-signal-safe (the SIGSEGV handler uses it); lock-free.
const stack *stack_lookup(const void *addr, bool *in_redzone) noexcept;

// Install the SIGSEGV/SIGBUS handler (on an alternate signal stack per OS
// thread) that reports a stack overflow into a red zone with the thread's
// name and id, the stack's bounds and the faulting address, then aborts.
// Other faults are reported too (address, thread), then abort.
void fault_init() noexcept;
// Give the calling OS thread an alternate signal stack (each CPU calls it).
void fault_init_thread() noexcept;

} // namespace usmp

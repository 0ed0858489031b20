// Callouts: per-CPU wheels, the softclock, and the stop/drain races.
//
// Vocabulary.  Each CPU has a callout_cpu "cc": a spin mutex (the wheel
// lock, "callout"), a wheel of 256 slots of 1 ms (a slot holds the callouts
// due in any millisecond that is congruent to it, unsorted), the expired
// list, and the execution state of its softclock: cc_curr (the callout
// whose handler runs or is about to), cc_cancel, cc_waiting (a drainer
// sleeps), and a deferred migration.  The softclock of CPU N is a software
// interrupt handler ("clock (N)", SWI_CLOCK) on an event bound to CPU N.
//
// The problem.  callout(9)'s contract has three races to settle exactly:
// stop versus a handler that is about to run (it must be told apart from
// one that already runs: 1 versus 0), stop versus a handler that waits for
// the callout's lock which the stopper holds (must cancel it: 1), and drain
// versus a handler that reschedules itself (must not run again).  And the
// timer must cost nothing when no callout is due.
//
// Approaches rejected.  One timer heap for the machine (the runtime's
// timeouts): a global lock for every reset, and handlers would run on the
// hardclock thread, which is no CPU.  A heap per CPU: reset and stop are
// O(log n) and a heap cannot tell the hardclock cheaply, without the lock,
// whether anything is due; the wheel's slot bitmap can (and the kernel's
// wheel is what callout(9)'s users expect: coarse, never early).
//
// The protocol.
//  1. A callout belongs to the wheel of c_cpu; callout_lock() reads c_cpu,
//     locks that wheel and re-checks c_cpu (a mover sets it to CPUBLOCK
//     under the old wheel's lock, then stores the new CPU, release, under
//     the new wheel's lock).  Every field marked (w) is the wheel's.
//  2. Insertion puts the callout in slot max(due ms, cc_lastscan + 1) and
//     sets the slot's bit (relaxed, under the lock).  cc_lastscan is the
//     last millisecond every callout of which has been examined.
//  3. Each hardclock tick, for each CPU with callouts, the tick hook reads
//     cc_lastscan and the bits of the slots up to now, without the lock;
//     if one is set it schedules the softclock (swi_sched).  A bit it
//     misses is seen at the next tick, as cc_lastscan has not moved.
//  4. The softclock, under the lock, moves every callout due by now from
//     the slots (cc_lastscan, now] to the expired list (PROCESSED), and
//     sets cc_lastscan = now - 1 ms (the current millisecond is examined
//     again).  Then for each expired callout: clear PENDING, set cc_curr,
//     clear cc_cancel, drop the lock; if it has a lock, take it (lc_lock),
//     re-take the wheel lock and skip the handler if cc_cancel was set
//     meanwhile (a stop or reset by the lock's holder), else set cc_cancel
//     (the handler can no longer be stopped); run the handler; release its
//     lock unless CALLOUT_RETURNUNLOCKED; under the wheel lock clear cc_curr,
//     and wake a drainer, or perform a deferred migration.
//  5. callout_stop, under the wheel lock: clears ACTIVE; if cc_curr is the
//     callout and the caller holds its lock and cc_cancel is clear, sets
//     cc_cancel (result 1); removes a pending instance (1, or 0 if the
//     handler runs and was not cancelled); -1 if neither.
//  6. callout_drain removes the pending instance first, then while cc_curr
//     is the callout: takes the sleep queue chain lock of &cc_waiting, sets
//     cc_waiting, drops the wheel lock and sleeps; the softclock clears
//     cc_waiting under the wheel lock, drops it, and wakes the channel (the
//     chain lock makes the wakeup wait until the drainer is queued).  A
//     reset while cc_waiting is set does nothing: a drained callout does
//     not come back.
//  7. A reset to another CPU while the handler runs is deferred: the new
//     CPU, time, function and argument wait in the old wheel (the callout
//     is PENDING | DFRMIGRATION) and are applied when the handler returns.
#include "interrupts/callout.h"

#include <cerrno>
#include <cstdio>
#include <new>

#include "interrupts/intr_event.h"
#include "interrupts/swi.h"
#include "runtime/config.h"
#include "runtime/internal/intr_hook.h"
#include "runtime/machine.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/sleep.h"
#include "sync/sleepqueue.h"

namespace usmp {

namespace {

constexpr int CPUBLOCK = -2;
constexpr int NSLOTS = 256;
constexpr uint64_t SLOT_NS = 1000000;
constexpr uint32_t CALLOUT_MAGIC = 0xca11007u;
constexpr int BUCKET_EXPIRED = -2;

// Locking key: (w) cc_lock; (a) atomic; (c) constant after boot.
struct alignas(64) callout_cpu {
	spin_mutex cc_lock{"callout", nullptr, LOCK_RECURSE};
	callout *cc_wheel[NSLOTS] = {};            // (w)
	std::atomic<uint64_t> cc_bits[NSLOTS / 64] = {}; // (w) written, (a) read
	callout *cc_exp_head = nullptr;            // (w)
	callout *cc_exp_tail = nullptr;            // (w)
	std::atomic<uint64_t> cc_lastscan{0};      // (w) written, (a) read
	std::atomic<int> cc_count{0};              // (w) written: pending here
	callout *cc_curr = nullptr;                // (w)
	bool cc_cancel = false;                    // (w)
	bool cc_waiting = false;                   // (w)
	int cc_mig_cpu = NOCPU;                    // (w) deferred migration
	uint64_t cc_mig_time = 0;                  // (w)
	callout_func_t cc_mig_func = nullptr;      // (w)
	void *cc_mig_arg = nullptr;                // (w)
	int cc_cpuid = 0;                          // (c)
	intr_event *cc_ie = nullptr;               // (c)
	void *cc_cookie = nullptr;                 // (c)
};

std::atomic<callout_cpu *> g_cc{nullptr};
std::atomic<int> g_ncc{0};
std::atomic<int> g_tick_busy{0};
std::atomic<uint64_t> g_slow_ns{2000000};
std::atomic<uint64_t> g_slow_count{0};

callout_cpu *
cc_of(int cpu) noexcept
{
	return &g_cc.load(std::memory_order_acquire)[cpu];
}

void
check_init(const callout *c, const char *call, const char *file, int line) noexcept
{
	if (__builtin_expect(c->c_magic != CALLOUT_MAGIC, 0))
		panic("%s: callout %p not initialized @ %s:%d", call,
		    static_cast<const void *>(c), file, line);
	if (__builtin_expect(g_ncc.load(std::memory_order_acquire) == 0, 0))
		panic("%s: callout %p used with no machine running @ %s:%d",
		    call, static_cast<const void *>(c), file, line);
}

// Step 1.
callout_cpu *
callout_lock(callout *c) noexcept
{
	for (unsigned n = 0;; n++) {
		int cpu = c->c_cpu.load(std::memory_order_acquire);
		if (cpu == CPUBLOCK) {
			__builtin_ia32_pause();
			continue;
		}
		if (cpu < 0 || cpu >= g_ncc.load(std::memory_order_relaxed)) {
			// Initialised for a machine with more CPUs: start over
			// on CPU 0 (nobody else may use it meanwhile).
			c->c_cpu.store(0, std::memory_order_relaxed);
			continue;
		}
		callout_cpu *cc = cc_of(cpu);
		cc->cc_lock.lock();
		if (c->c_cpu.load(std::memory_order_relaxed) == cpu)
			return cc;
		cc->cc_lock.unlock();
	}
}

void
bit_set(callout_cpu *cc, int b) noexcept
{
	auto &w = cc->cc_bits[b / 64];
	w.store(w.load(std::memory_order_relaxed) | (1ull << (b % 64)),
	    std::memory_order_relaxed);
}

void
bit_clear(callout_cpu *cc, int b) noexcept
{
	auto &w = cc->cc_bits[b / 64];
	w.store(w.load(std::memory_order_relaxed) & ~(1ull << (b % 64)),
	    std::memory_order_relaxed);
}

// Step 2.  Requires the wheel lock.
void
cc_insert(callout_cpu *cc, callout *c) noexcept
{
	uint64_t slot = c->c_time / SLOT_NS;
	uint64_t last = cc->cc_lastscan.load(std::memory_order_relaxed);
	if (slot <= last)
		slot = last + 1;
	int b = static_cast<int>(slot % NSLOTS);
	c->c_bucket = b;
	c->c_prev = nullptr;
	c->c_next = cc->cc_wheel[b];
	if (c->c_next != nullptr)
		c->c_next->c_prev = c;
	cc->cc_wheel[b] = c;
	bit_set(cc, b);
	c->c_iflags.fetch_or(CALLOUT_PENDING, std::memory_order_relaxed);
	cc->cc_count.fetch_add(1, std::memory_order_relaxed);
}

// Unlink a pending callout from its slot or the expired list.  Requires
// the wheel lock; clears PENDING and PROCESSED.
void
cc_remove(callout_cpu *cc, callout *c) noexcept
{
	if (c->c_bucket == BUCKET_EXPIRED) {
		if (c->c_prev != nullptr)
			c->c_prev->c_next = c->c_next;
		else
			cc->cc_exp_head = c->c_next;
		if (c->c_next != nullptr)
			c->c_next->c_prev = c->c_prev;
		else
			cc->cc_exp_tail = c->c_prev;
	} else if (c->c_bucket >= 0) {
		int b = c->c_bucket;
		if (c->c_prev != nullptr)
			c->c_prev->c_next = c->c_next;
		else
			cc->cc_wheel[b] = c->c_next;
		if (c->c_next != nullptr)
			c->c_next->c_prev = c->c_prev;
		if (cc->cc_wheel[b] == nullptr)
			bit_clear(cc, b);
	}
	c->c_bucket = -1;
	c->c_next = c->c_prev = nullptr;
	c->c_iflags.fetch_and(~(CALLOUT_PENDING | CALLOUT_PROCESSED),
	    std::memory_order_relaxed);
	cc->cc_count.fetch_sub(1, std::memory_order_relaxed);
}

// Move c (not pending, not running) to `cpu`'s wheel.  Requires cc's lock;
// returns with the new wheel's lock instead.
callout_cpu *
cc_switch(callout *c, callout_cpu *cc, int cpu) noexcept
{
	c->c_cpu.store(CPUBLOCK, std::memory_order_relaxed);
	cc->cc_lock.unlock();
	callout_cpu *ncc = cc_of(cpu);
	ncc->cc_lock.lock();
	c->c_cpu.store(cpu, std::memory_order_release);
	return ncc;
}

// Step 4, the scan.  Requires the wheel lock.
void
cc_scan(callout_cpu *cc, uint64_t now) noexcept
{
	uint64_t nowslot = now / SLOT_NS;
	uint64_t last = cc->cc_lastscan.load(std::memory_order_relaxed);
	if (nowslot <= last)
		return;
	uint64_t from = nowslot - last >= NSLOTS ? nowslot - NSLOTS + 1 : last + 1;
	for (uint64_t s = from; s <= nowslot; s++) {
		int b = static_cast<int>(s % NSLOTS);
		callout *c = cc->cc_wheel[b];
		while (c != nullptr) {
			callout *next = c->c_next;
			if (c->c_time <= now) {
				if (c->c_prev != nullptr)
					c->c_prev->c_next = c->c_next;
				else
					cc->cc_wheel[b] = c->c_next;
				if (c->c_next != nullptr)
					c->c_next->c_prev = c->c_prev;
				c->c_bucket = BUCKET_EXPIRED;
				c->c_next = nullptr;
				c->c_prev = cc->cc_exp_tail;
				if (cc->cc_exp_tail != nullptr)
					cc->cc_exp_tail->c_next = c;
				else
					cc->cc_exp_head = c;
				cc->cc_exp_tail = c;
				c->c_iflags.fetch_or(CALLOUT_PROCESSED,
				    std::memory_order_relaxed);
			}
			c = next;
		}
		if (cc->cc_wheel[b] == nullptr)
			bit_clear(cc, b);
	}
	cc->cc_lastscan.store(nowslot - 1, std::memory_order_relaxed);
}

uintptr_t
lock_how(const callout *c) noexcept
{
	// The lock classes' lc_lock encodings: a sleep mutex takes a depth,
	// an rwlock 1 (read) or 2 (write).
	if (c->c_lock->lo_class == &lock_class_rw)
		return (c->c_initflags & CALLOUT_SHAREDLOCK) ? 1 : 2;
	return 1;
}

void
wake_drainers(callout_cpu *cc) noexcept
{
	cc->cc_waiting = false;
	cc->cc_lock.unlock();
	wakeup(&cc->cc_waiting);
	cc->cc_lock.lock();
}

// Step 4, the runs: the softclock swi handler of one CPU.
void
softclock(void *arg) noexcept
{
	auto *cc = static_cast<callout_cpu *>(arg);
	thread *td = curthread();
	cc->cc_lock.lock();
	cc_scan(cc, clock_ns());
	while (cc->cc_exp_head != nullptr) {
		callout *c = cc->cc_exp_head;
		cc_remove(cc, c);
		callout_func_t fn = c->c_func;
		void *fnarg = c->c_arg;
		lock_object *lock = c->c_lock;
		int initflags = c->c_initflags;
		cc->cc_curr = c;
		cc->cc_cancel = false;
		bool run = true;
		if (lock == nullptr) {
			cc->cc_cancel = true;
			cc->cc_lock.unlock();
		} else {
			uintptr_t how = lock_how(c);
			cc->cc_lock.unlock();
			lock->lo_class->lc_lock(lock, how);
			cc->cc_lock.lock();
			if (cc->cc_cancel) {
				// Stopped or reset by the lock's holder while we
				// waited for the lock.
				cc->cc_lock.unlock();
				lock->lo_class->lc_unlock(lock);
				run = false;
			} else {
				cc->cc_cancel = true;
				cc->cc_lock.unlock();
			}
		}
		if (run) {
			uint32_t saved = td->td_flags & TDF_NOSLEEPING;
			td->td_flags |= TDF_NOSLEEPING;
			uint64_t t0 = config::invariants ? clock_ns() : 0;
			fn(fnarg);
			if constexpr (config::invariants) {
				uint64_t dt = clock_ns() - t0;
				uint64_t lim = g_slow_ns.load(std::memory_order_relaxed);
				if (lim != 0 && dt > lim) {
					g_slow_count.fetch_add(1, std::memory_order_relaxed);
					printf_diag("Expensive callout(9) function: %p(%p) "
					    "%llu.%09llu s on cpu%d",
					    reinterpret_cast<void *>(fn), fnarg,
					    static_cast<unsigned long long>(dt / 1000000000ull),
					    static_cast<unsigned long long>(dt % 1000000000ull),
					    cc->cc_cpuid);
				}
			}
			td->td_flags = (td->td_flags & ~TDF_NOSLEEPING) | saved;
			if (lock != nullptr && !(initflags & CALLOUT_RETURNUNLOCKED))
				lock->lo_class->lc_unlock(lock);
		}
		cc->cc_lock.lock();
		cc->cc_curr = nullptr;
		if (cc->cc_waiting) {
			// A drain cancels a deferred migration (step 6).
			if (cc->cc_mig_cpu != NOCPU) {
				cc->cc_mig_cpu = NOCPU;
				c->c_iflags.fetch_and(~(CALLOUT_PENDING |
				    CALLOUT_DFRMIGRATION), std::memory_order_relaxed);
			}
			wake_drainers(cc);
		} else if (cc->cc_mig_cpu != NOCPU) {
			// Step 7: the deferred migration.
			int cpu = cc->cc_mig_cpu;
			cc->cc_mig_cpu = NOCPU;
			c->c_iflags.fetch_and(~(CALLOUT_PENDING | CALLOUT_DFRMIGRATION),
			    std::memory_order_relaxed);
			c->c_func = cc->cc_mig_func;
			c->c_arg = cc->cc_mig_arg;
			c->c_time = cc->cc_mig_time;
			callout_cpu *ncc = cc_switch(c, cc, cpu);
			cc_insert(ncc, c);
			ncc->cc_lock.unlock();
			cc->cc_lock.lock();
		}
	}
	cc->cc_lock.unlock();
}

// Step 3, on the hardclock thread.
void
callout_tick(uint64_t) noexcept
{
	g_tick_busy.store(1, std::memory_order_seq_cst);
	callout_cpu *ccs = g_cc.load(std::memory_order_seq_cst);
	int n = g_ncc.load(std::memory_order_acquire);
	uint64_t nowslot = clock_ns() / SLOT_NS;
	for (int cpu = 0; ccs != nullptr && cpu < n; cpu++) {
		callout_cpu *cc = &ccs[cpu];
		if (cc->cc_count.load(std::memory_order_relaxed) == 0)
			continue;
		uint64_t last = cc->cc_lastscan.load(std::memory_order_relaxed);
		if (nowslot <= last)
			continue;
		uint64_t from = nowslot - last >= NSLOTS ? nowslot - NSLOTS + 1 : last + 1;
		for (uint64_t s = from; s <= nowslot; s++) {
			int b = static_cast<int>(s % NSLOTS);
			if (cc->cc_bits[b / 64].load(std::memory_order_relaxed) &
			    (1ull << (b % 64))) {
				swi_sched(cc->cc_cookie, 0);
				break;
			}
		}
	}
	g_tick_busy.store(0, std::memory_order_release);
}

void
callout_boot() noexcept
{
	int n = mp_ncpus();
	auto *ccs = new callout_cpu[n]; // alignas(64): aligned new
	uint64_t nowslot = clock_ns() / SLOT_NS;
	for (int cpu = 0; cpu < n; cpu++) {
		callout_cpu *cc = &ccs[cpu];
		cc->cc_cpuid = cpu;
		cc->cc_lastscan.store(nowslot, std::memory_order_relaxed);
		char name[24];
		std::snprintf(name, sizeof(name), "clock (%d)", cpu);
		if (swi_add(&cc->cc_ie, name, softclock, cc, SWI_CLOCK,
			INTR_MPSAFE, &cc->cc_cookie) != 0)
			panic("callout_boot: cannot add the softclock of cpu%d", cpu);
		intr_event_bind(cc->cc_ie, cpu);
	}
	g_cc.store(ccs, std::memory_order_seq_cst);
	g_ncc.store(n, std::memory_order_release);
}

void
callout_shutdown() noexcept
{
	callout_cpu *ccs = g_cc.load(std::memory_order_acquire);
	int n = g_ncc.load(std::memory_order_acquire);
	if (ccs == nullptr)
		return;
	for (int cpu = 0; cpu < n; cpu++) {
		callout_cpu *cc = &ccs[cpu];
		swi_remove(cc->cc_cookie);
		intr_event_destroy(cc->cc_ie);
		int left = cc->cc_count.load(std::memory_order_relaxed);
		if (left != 0)
			printf_diag("machine_shutdown(): %d callout%s still pending "
			    "on cpu%d (they never run)", left, left == 1 ? "" : "s",
			    cpu);
	}
	g_ncc.store(0, std::memory_order_seq_cst);
	g_cc.store(nullptr, std::memory_order_seq_cst);
	// Pairs with callout_tick's seq_cst store of g_tick_busy before its
	// load of g_cc: it either saw null or we see it busy.
	while (g_tick_busy.load(std::memory_order_seq_cst) != 0)
		__builtin_ia32_pause();
	delete[] ccs;
}

sysinit g_callout_sysinit = [] {
	sysinit si;
	si.si_boot = callout_boot;
	si.si_shutdown = callout_shutdown;
	si.si_tick = callout_tick;
	si.si_order = 10;
	return si;
}();

struct callout_registrar {
	callout_registrar() noexcept { sysinit_register(&g_callout_sysinit); }
} g_callout_registrar;

void
init_common(callout *c, lock_object *lock, int flags) noexcept
{
	c->c_next = c->c_prev = nullptr;
	c->c_bucket = -1;
	c->c_time = 0;
	c->c_func = nullptr;
	c->c_arg = nullptr;
	c->c_lock = lock;
	c->c_flags.store(0, std::memory_order_relaxed);
	c->c_iflags.store(0, std::memory_order_relaxed);
	c->c_cpu.store(0, std::memory_order_relaxed);
	c->c_initflags = flags;
	c->c_magic = CALLOUT_MAGIC;
}

bool
lock_owned_by_me(const lock_object *lock) noexcept
{
	return lock->lo_class->lc_owner != nullptr &&
	    lock->lo_class->lc_owner(lock) == curthread();
}

int
stop_safe(callout *c, bool drain, const char *call, const char *file,
    int line) noexcept
{
	check_init(c, call, file, line);
	callout_cpu *cc = callout_lock(c);
	bool running = cc->cc_curr == c;
	bool lock_cancelled = false, removed = false;
	c->c_flags.fetch_and(~CALLOUT_ACTIVE, std::memory_order_relaxed);
	if (running && !drain && c->c_lock != nullptr && !cc->cc_cancel &&
	    lock_owned_by_me(c->c_lock)) {
		// Step 5: the handler waits for the lock we hold.
		cc->cc_cancel = true;
		lock_cancelled = true;
	}
	int ifl = c->c_iflags.load(std::memory_order_relaxed);
	if (ifl & CALLOUT_DFRMIGRATION) {
		cc->cc_mig_cpu = NOCPU;
		c->c_iflags.fetch_and(~(CALLOUT_PENDING | CALLOUT_DFRMIGRATION),
		    std::memory_order_relaxed);
		removed = true;
	} else if (ifl & CALLOUT_PENDING) {
		cc_remove(cc, c);
		removed = true;
	}
	if (drain) {
		// Step 6.
		const void *chan = &cc->cc_waiting;
		while (cc->cc_curr == c) {
			sleepq_lock(chan);
			cc->cc_waiting = true;
			cc->cc_lock.unlock();
			sleepq_add(chan, nullptr, "codrain", SLEEPQ_SLEEP, 0, file, line);
			sleepq_wait(chan, 0);
			cc = callout_lock(c);
			chan = &cc->cc_waiting;
		}
	}
	cc->cc_lock.unlock();
	if (lock_cancelled)
		return 1;
	if (running)
		return 0;
	return removed ? 1 : -1;
}

} // namespace

void
callout_init(callout *c, bool mpsafe) noexcept
{
	if (mpsafe)
		init_common(c, nullptr, CALLOUT_MPSAFE | CALLOUT_RETURNUNLOCKED);
	else
		init_common(c, Giant.lo(), 0);
}

void
callout_init_lock(callout *c, lock_object *lock, int flags) noexcept
{
	if (lock == nullptr || (lock->lo_class->lc_flags & (LC_SPINLOCK | LC_SLEEPABLE)))
		panic("callout_init_lock: invalid lock class %s for lock \"%s\"",
		    lock != nullptr ? lock->lo_class->lc_name : "(null)",
		    lock != nullptr ? lock->lo_name : "(null)");
	if (flags & ~(CALLOUT_RETURNUNLOCKED | CALLOUT_SHAREDLOCK))
		panic("callout_init_lock: bad flags %#x for lock \"%s\"", flags,
		    lock->lo_name);
	init_common(c, lock, flags);
}

int
callout_reset_sbt_on(callout *c, std::chrono::nanoseconds when,
    std::chrono::nanoseconds, callout_func_t fn, void *arg, int cpu,
    int flags, const char *file, int line) noexcept
{
	check_init(c, "callout_reset", file, line);
	int ncc = g_ncc.load(std::memory_order_acquire);
	if (cpu != NOCPU && (cpu < 0 || cpu >= ncc))
		panic("callout_reset_on: no cpu%d (machine has %d) @ %s:%d", cpu,
		    ncc, file, line);
	if (c->c_lock != nullptr && c->c_lock != Giant.lo())
		c->c_lock->lo_class->lc_assert(c->c_lock,
		    (c->c_initflags & CALLOUT_SHAREDLOCK) ? LA_LOCKED : LA_XLOCKED,
		    file, line);
	uint64_t now = clock_ns();
	int64_t w = when.count();
	uint64_t t = (flags & C_ABSOLUTE) ? (w > 0 ? static_cast<uint64_t>(w) : 0)
	    : now + (w > 0 ? static_cast<uint64_t>(w) : 0);
	callout_cpu *cc = callout_lock(c);
	if (cpu == NOCPU)
		cpu = cc->cc_cpuid;
	int cancelled = 0;
	if (cc->cc_curr == c) {
		if (cc->cc_waiting) {
			// Being drained: it does not come back (step 6).
			cc->cc_lock.unlock();
			return 0;
		}
		if (c->c_lock != nullptr && !cc->cc_cancel) {
			// It waits for the lock our caller holds: cancel it.
			cc->cc_cancel = true;
			cancelled = 1;
		}
		if (cpu != cc->cc_cpuid) {
			// Step 7: move when the handler returns.
			if (cc->cc_mig_cpu != NOCPU)
				cancelled = 1;
			else if (c->c_iflags.load(std::memory_order_relaxed) &
			    CALLOUT_PENDING) {
				cc_remove(cc, c);
				cancelled = 1;
			}
			cc->cc_mig_cpu = cpu;
			cc->cc_mig_time = t;
			cc->cc_mig_func = fn;
			cc->cc_mig_arg = arg;
			c->c_iflags.fetch_or(CALLOUT_PENDING | CALLOUT_DFRMIGRATION,
			    std::memory_order_relaxed);
			c->c_flags.fetch_or(CALLOUT_ACTIVE, std::memory_order_relaxed);
			cc->cc_lock.unlock();
			return cancelled;
		}
	}
	int ifl = c->c_iflags.load(std::memory_order_relaxed);
	if (ifl & CALLOUT_DFRMIGRATION) {
		cc->cc_mig_cpu = NOCPU;
		c->c_iflags.fetch_and(~(CALLOUT_PENDING | CALLOUT_DFRMIGRATION),
		    std::memory_order_relaxed);
		cancelled = 1;
	} else if (ifl & CALLOUT_PENDING) {
		cc_remove(cc, c);
		cancelled = 1;
	}
	if (cpu != cc->cc_cpuid)
		cc = cc_switch(c, cc, cpu);
	c->c_func = fn;
	c->c_arg = arg;
	c->c_time = t;
	cc_insert(cc, c);
	c->c_flags.fetch_or(CALLOUT_ACTIVE, std::memory_order_relaxed);
	cc->cc_lock.unlock();
	return cancelled;
}

int
callout_reset_curcpu(callout *c, std::chrono::nanoseconds d, callout_func_t fn,
    void *arg, const char *file, int line) noexcept
{
	int cpu = curcpu();
	return callout_reset_on(c, d, fn, arg, cpu == NOCPU ? 0 : cpu, file, line);
}

int
callout_stop(callout *c, const char *file, int line) noexcept
{
	return stop_safe(c, false, "callout_stop", file, line);
}

int
callout_drain(callout *c, const char *file, int line) noexcept
{
	return stop_safe(c, true, "callout_drain", file, line);
}

void
callout_set_slow_threshold(std::chrono::nanoseconds t) noexcept
{
	g_slow_ns.store(t.count() > 0 ? static_cast<uint64_t>(t.count()) : 0,
	    std::memory_order_relaxed);
}

uint64_t
callout_slow_count() noexcept
{
	return g_slow_count.load(std::memory_order_relaxed);
}

int
callout_pending_count(int cpu) noexcept
{
	if (cpu < 0 || cpu >= g_ncc.load(std::memory_order_acquire))
		return 0;
	return cc_of(cpu)->cc_count.load(std::memory_order_relaxed);
}

} // namespace usmp

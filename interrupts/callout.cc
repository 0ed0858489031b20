// Callouts: per-CPU wheels, the softclock, and the stop/drain races.
//
// Vocabulary.  Each CPU has a callout_cpu "cc": a spin mutex (the wheel
// lock, "callout"), a wheel of 256 slots of 1 ms (a slot holds the callouts
// due in any millisecond that is congruent to it, unsorted), two expired
// lists, and two execution states (cc_exec, the kernel's cc_exec_entity):
// [0] the softclock's, [1] the clock interrupt's, for C_DIRECT_EXEC
// callouts.  An execution state holds ce_curr (the callout whose handler
// runs or is about to), ce_cancel, ce_waiting (a drainer sleeps), and a
// deferred migration.  The softclock of CPU N is a software interrupt
// handler ("clock (N)", SWI_CLOCK) on an event bound to CPU N; the clock
// interrupt of CPU N is its event timer's completion, or the filter of its
// "timer cpuN" event, in primary interrupt context on CPU N.
//
// Direct execution (C_DIRECT_EXEC, callout(9)): the handler runs in the
// clock interrupt itself, as a filter does: in a spinlock section on the
// callout's CPU, with TDP_INFILTER | TDP_NOSLEEPING and WITNESS's filter
// context, so a sleep lock or a sleep in it panics or is reported.  Such a
// callout may have no lock or a spin mutex (callout_init_mtx with a
// spin_mutex); a sleep lock (or Giant) panics at the reset.
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
//  3. The event timer.  cc_firstevent (w) is a lower bound of the earliest
//     c_time + c_precision of the wheel (the latest moment the wheel must
//     be looked at): an insertion that goes below it lowers it and
//     re-programs the CPU's event timer (cc_program: on the CPU itself the
//     ring's timeout is armed or moved earlier at once, under the wheel
//     lock; from elsewhere the CPU's "timer cpuN" event is fired and its
//     filter does it there, as only a CPU writes its own ring).  A stop
//     leaves it low: the timer then fires early for nothing, and the clock
//     interrupt (clock_intr, primary interrupt context on the CPU, under
//     the wheel lock) scans the wheel (step 4's scan), runs the direct
//     callouts that are due (step 4's runs, execution state [1]),
//     recomputes the next event exactly (cc_next_event) and either
//     schedules the softclock (swi_sched) or re-arms the timer.  Without
//     rings the hardclock tick reads cc_lastscan and the slot bits up to
//     now, without the lock, and fires the CPU's "timer cpuN" event if one
//     is set (a bit it misses is seen at the next tick), whose filter is
//     the clock interrupt.  Either way a callout never runs before c_time:
//     handlers run only for callouts due by the runner's clock_ns().
//  4. The scan, under the lock (softclock or clock interrupt), moves every
//     callout due by now from the slots (cc_lastscan, now] to an expired
//     list (PROCESSED): the direct ones to [1], the others to [0]; and sets
//     cc_lastscan = now - 1 ms (the current millisecond is examined again).
//     The runs (cc_run; the softclock runs list [0], the clock interrupt
//     list [1]; a softclock that scanned direct callouts fires the clock
//     interrupt for them) use the execution state of the list: for each
//     expired callout: clear PENDING, set ce_curr, clear ce_cancel, drop the
//     lock; if it has a lock, take it (lc_lock),
//     re-take the wheel lock and skip the handler if ce_cancel was set
//     meanwhile (a stop or reset by the lock's holder), else set ce_cancel
//     (the handler can no longer be stopped); run the handler; release its
//     lock unless CALLOUT_RETURNUNLOCKED; under the wheel lock clear ce_curr,
//     and wake a drainer, or perform a deferred migration.  Last, under
//     the lock, it recomputes cc_firstevent exactly and programs the timer
//     (step 3), or starts over if something came due meanwhile.
//  5. callout_stop, under the wheel lock: clears ACTIVE; if the ce_curr of
//     either execution state is the callout and the caller holds its lock
//     and that ce_cancel is clear, sets it and ce_skip (result 1); removes
//     a pending instance (1, or 0 if the handler may still be running: its
//     run was not cancelled (ce_skip) and, if the caller holds the lock,
//     the handler has not returned (ce_done, set before the runner releases
//     the lock)); -1 if neither.
//  6. callout_drain removes the pending instance first (its result is 1
//     if there was one, even while the handler runs: that call never
//     runs; else 0 if a handler ran, -1 if nothing), then while a
//     ce_curr is the callout: takes the sleep queue chain lock of that
//     state's &ce_waiting, sets ce_waiting, drops the wheel lock and sleeps;
//     the runner clears ce_waiting under the wheel lock, drops it, and wakes
//     the channel (the chain lock makes the wakeup wait until the drainer is
//     queued).  A reset while ce_waiting is set does nothing: a drained
//     callout does not come back.
//  7. A reset to another CPU while the handler runs is deferred: the new
//     CPU, time, function and argument wait in the old wheel (the callout
//     is PENDING | DFRMIGRATION) and are applied when the handler returns.
#include "interrupts/callout.h"

#include <cerrno>
#include <cstdio>
#include <new>

#include "interrupts/internal/eventtimer.h"
#include "interrupts/intr_event.h"
#include "interrupts/swi.h"
#include "runtime/config.h"
#include "runtime/internal/intr_hook.h"
#include "runtime/internal/sim.h"
#include "runtime/ktr.h"
#include "runtime/machine.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/sleep.h"
#include "sync/sleepqueue.h"
#include "sync/witness.h"

namespace usmp {

namespace {

constexpr int CPUBLOCK = -2;
constexpr int NSLOTS = 256;
constexpr uint64_t SLOT_NS = 1000000;
constexpr uint32_t CALLOUT_MAGIC = 0xca11007u;
constexpr int BUCKET_EXPIRED = -2;   // on cc_exp[0] (the softclock's)
constexpr int BUCKET_DEXPIRED = -3;  // on cc_exp[1] (the clock interrupt's)

// One execution state (the kernel's cc_exec_entity): [0] the softclock's,
// [1] the clock interrupt's (C_DIRECT_EXEC).  Locking key: (w) the wheel
// lock of the callout_cpu that holds it.
struct cc_exec {
	callout *ce_curr = nullptr;           // (w) runs, or is about to
	bool ce_cancel = false;               // (w)
	bool ce_skip = false;                 // (w) a stop/reset cancelled the run
	std::atomic<bool> ce_done{false};     // (a) the handler returned (step 5)
	bool ce_waiting = false;              // (w) a drainer sleeps on it
	callout_func_t ce_drain = nullptr;    // (w) callout_async_drain's
	void *ce_drain_arg = nullptr;         // (w)
	int ce_mig_cpu = NOCPU;               // (w) deferred migration
	bool ce_mig_direct = false;           // (w)
	uint64_t ce_mig_time = 0;             // (w)
	uint64_t ce_mig_prec = 0;             // (w)
	callout_func_t ce_mig_func = nullptr; // (w)
	void *ce_mig_arg = nullptr;           // (w)
};

struct cc_list {
	callout *head = nullptr;
	callout *tail = nullptr;
};

// Locking key: (w) cc_lock; (a) atomic; (c) constant after boot.
struct alignas(64) callout_cpu {
	spin_mutex cc_lock{"callout", nullptr, LOCK_RECURSE};
	callout *cc_wheel[NSLOTS] = {};            // (w)
	std::atomic<uint64_t> cc_bits[NSLOTS / 64] = {}; // (w) written, (a) read
	cc_list cc_exp[2];                         // (w) expired: [0] softclock, [1] direct
	std::atomic<uint64_t> cc_lastscan{0};      // (w) written, (a) read
	std::atomic<int> cc_count{0};              // (w) written: pending here
	uint64_t cc_firstevent = UINT64_MAX;       // (w) the event timer's time
	intr_event *cc_timer_ie = nullptr;         // (c) "timer cpuN": re-arm
	intr_handler *cc_timer_ih = nullptr;       // (c)
	cc_exec cc_ex[2];                          // (w) [0] softclock, [1] direct
	int cc_cpuid = 0;                          // (c)
	intr_event *cc_ie = nullptr;               // (c)
	void *cc_cookie = nullptr;                 // (c)
};

std::atomic<callout_cpu *> g_cc{nullptr};
std::atomic<int> g_ncc{0};
// Clock interrupts and hardclock ticks inside the wheels now (see
// callout_shutdown).
std::atomic<int> g_users{0};
std::atomic<uint64_t> g_slow_ns{2000000};
std::atomic<uint64_t> g_slow_count{0};

callout_cpu *
cc_of(int cpu) noexcept
{
	return &g_cc.load(std::memory_order_acquire)[cpu];
}

// The execution state whose handler c is (about to be), or null.
// Requires the wheel lock.
cc_exec *
cc_running(callout_cpu *cc, const callout *c) noexcept
{
	for (cc_exec &ex : cc->cc_ex)
		if (ex.ce_curr == c)
			return &ex;
	return nullptr;
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
			if (sim_active()) // the blocker runs when we hand back
				sim_spin();
			else
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

// Step 2.  Requires the wheel lock.  Returns true if c is now the wheel's
// first event (c_time + c_precision earlier than cc_firstevent): the event
// timer must move (cc_program).
bool
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
	uint64_t latest = c->c_time + c->c_precision;
	if (latest < c->c_time)
		latest = UINT64_MAX;
	if (latest >= cc->cc_firstevent)
		return false;
	cc->cc_firstevent = latest;
	return true;
}

// Step 3: when the wheel must next be looked at: the earliest
// c_time + c_precision of its callouts (0 if some wait on the expired
// list; UINT64_MAX if none).  Callouts in a slot s after the first are due
// at or after s, so the walk stops at the first slot that starts after the
// best time found.  Requires the wheel lock.
uint64_t
cc_next_event(callout_cpu *cc) noexcept
{
	if (cc->cc_exp[0].head != nullptr || cc->cc_exp[1].head != nullptr)
		return 0;
	if (cc->cc_count.load(std::memory_order_relaxed) == 0)
		return UINT64_MAX;
	uint64_t best = UINT64_MAX;
	uint64_t last = cc->cc_lastscan.load(std::memory_order_relaxed);
	for (uint64_t s = last + 1; s <= last + NSLOTS; s++) {
		if (s > last + 1 && s * SLOT_NS > best)
			break;
		int b = static_cast<int>(s % NSLOTS);
		if (!(cc->cc_bits[b / 64].load(std::memory_order_relaxed) &
			(1ull << (b % 64))))
			continue;
		for (callout *c = cc->cc_wheel[b]; c != nullptr; c = c->c_next) {
			uint64_t latest = c->c_time + c->c_precision;
			if (latest < c->c_time)
				latest = UINT64_MAX;
			if (latest < best)
				best = latest;
		}
	}
	return best;
}

// Make the event timer of cc's CPU fire at cc_firstevent.  On that CPU,
// arm its ring's timer directly; from anywhere else, fire the CPU's
// "timer cpuN" event, whose filter (callout_clock_intr) arms it there (only
// the CPU writes its own ring).  Without rings the hardclock's tick looks
// at the wheels instead.  Requires the wheel lock.
void
cc_program(callout_cpu *cc) noexcept
{
	if (!ring_timer_enabled() || cc->cc_firstevent == UINT64_MAX)
		return;
	if (curcpu() == cc->cc_cpuid && ring_timer_arm(cc->cc_firstevent))
		return;
	if (cc->cc_timer_ie != nullptr)
		intr_event_fire(cc->cc_timer_ie);
}

// Unlink a pending callout from its slot or the expired list.  Requires
// the wheel lock; clears PENDING and PROCESSED.
void
cc_remove(callout_cpu *cc, callout *c) noexcept
{
	if (c->c_bucket == BUCKET_EXPIRED || c->c_bucket == BUCKET_DEXPIRED) {
		cc_list &l = cc->cc_exp[c->c_bucket == BUCKET_DEXPIRED];
		if (c->c_prev != nullptr)
			c->c_prev->c_next = c->c_next;
		else
			l.head = c->c_next;
		if (c->c_next != nullptr)
			c->c_next->c_prev = c->c_prev;
		else
			l.tail = c->c_prev;
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
				bool direct = c->c_iflags.load(
				    std::memory_order_relaxed) & CALLOUT_DIRECT;
				cc_list &l = cc->cc_exp[direct];
				c->c_bucket = direct ? BUCKET_DEXPIRED : BUCKET_EXPIRED;
				c->c_next = nullptr;
				c->c_prev = l.tail;
				if (l.tail != nullptr)
					l.tail->c_next = c;
				else
					l.head = c;
				l.tail = c;
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
wake_drainers(callout_cpu *cc, cc_exec *ex) noexcept
{
	ex->ce_waiting = false;
	cc->cc_lock.unlock();
	wakeup(&ex->ce_waiting);
	cc->cc_lock.lock();
}

// Take / release the callout's lock around its handler.  Spin mutexes
// (direct callouts) are taken directly: their lock class, as the kernel's,
// refuses lc_lock (it is for sleeps that drop and retake a lock).
void
handler_lock(lock_object *lock, const callout *c) noexcept
{
	if (lock->lo_class->lc_flags & LC_SPINLOCK)
		spin_mutex::from_lo(lock)->lock(__FILE__, __LINE__);
	else
		lock->lo_class->lc_lock(lock, lock_how(c));
}

void
handler_unlock(lock_object *lock) noexcept
{
	if (lock->lo_class->lc_flags & LC_SPINLOCK)
		spin_mutex::from_lo(lock)->unlock(__FILE__, __LINE__);
	else
		lock->lo_class->lc_unlock(lock);
}

// Step 4, one run: c, the head of expired list e, with execution state e
// ([0] in the softclock's ithread, [1] in the clock interrupt).  Requires
// the wheel lock; returns with it held.
void
cc_run(callout_cpu *cc, int e, callout *c) noexcept
{
	cc_exec *ex = &cc->cc_ex[e];
	bool direct = e == 1;
	thread *td = curthread();
	cc_remove(cc, c);
	callout_func_t fn = c->c_func;
	void *fnarg = c->c_arg;
	lock_object *lock = c->c_lock;
	int initflags = c->c_initflags;
	ex->ce_curr = c;
	ex->ce_cancel = false;
	ex->ce_skip = false;
	ex->ce_done.store(false, std::memory_order_relaxed);
	bool run = true;
	if (lock == nullptr) {
		ex->ce_cancel = true;
		cc->cc_lock.unlock();
	} else {
		cc->cc_lock.unlock();
		handler_lock(lock, c);
		cc->cc_lock.lock();
		if (ex->ce_cancel) {
			// Stopped or reset by the lock's holder while we waited
			// for the lock.
			cc->cc_lock.unlock();
			handler_unlock(lock);
			run = false;
		} else {
			ex->ce_cancel = true;
			cc->cc_lock.unlock();
		}
	}
	if (run) {
		// The softclock's handlers may not sleep; direct ones run as
		// filters (primary interrupt context).
		uint32_t mask = direct ? (TDP_NOSLEEPING | TDP_INFILTER) :
		    TDP_NOSLEEPING;
		uint32_t saved = td->td_pflags & mask;
		td->td_pflags |= mask;
		if constexpr (config::witness) {
			if (direct)
				witness_filter_enter();
			else
				witness_nosleep_enter("callout");
		}
		uint64_t t0 = config::invariants ? clock_ns() : 0;
		ktr_callout_begin(c, direct ? "callout direct" : "callout");
		fn(fnarg);
		// Before its lock is released (release: pairs with the acquire
		// load in stop_safe by the lock's next holder, step 5).
		ex->ce_done.store(true, std::memory_order_release);
		ktr_callout_end(c, direct ? "callout direct" : "callout");
		if constexpr (config::witness) {
			if (direct)
				witness_filter_exit();
			else
				witness_nosleep_exit();
		}
		if constexpr (config::invariants) {
			uint64_t dt = clock_ns() - t0;
			uint64_t lim = g_slow_ns.load(std::memory_order_relaxed);
			if (lim != 0 && dt > lim) {
				g_slow_count.fetch_add(1, std::memory_order_relaxed);
				printf_diag("Expensive callout(9) function: %p(%p) "
				    "%llu.%09llu s on cpu%d%s",
				    reinterpret_cast<void *>(fn), fnarg,
				    static_cast<unsigned long long>(dt / 1000000000ull),
				    static_cast<unsigned long long>(dt % 1000000000ull),
				    cc->cc_cpuid, direct ? " (direct)" : "");
			}
		}
		td->td_pflags = (td->td_pflags & ~mask) | saved;
		if (lock != nullptr && !(initflags & CALLOUT_RETURNUNLOCKED))
			handler_unlock(lock);
	}
	cc->cc_lock.lock();
	ex->ce_curr = nullptr;
	if (ex->ce_drain != nullptr) {
		// callout_async_drain(): the handler has returned; the drain
		// function runs with the wheel unlocked (in the runner's
		// context).  It cancels a deferred migration, as a drain does.
		callout_func_t dfn = ex->ce_drain;
		void *darg = ex->ce_drain_arg;
		ex->ce_drain = nullptr;
		if (ex->ce_mig_cpu != NOCPU) {
			ex->ce_mig_cpu = NOCPU;
			c->c_iflags.fetch_and(~(CALLOUT_PENDING |
			    CALLOUT_DFRMIGRATION), std::memory_order_relaxed);
		}
		cc->cc_lock.unlock();
		dfn(darg);
		cc->cc_lock.lock();
	}
	if (ex->ce_waiting) {
		// A drain cancels a deferred migration (step 6).
		if (ex->ce_mig_cpu != NOCPU) {
			ex->ce_mig_cpu = NOCPU;
			c->c_iflags.fetch_and(~(CALLOUT_PENDING |
			    CALLOUT_DFRMIGRATION), std::memory_order_relaxed);
		}
		wake_drainers(cc, ex);
	} else if (ex->ce_mig_cpu != NOCPU) {
		// Step 7: the deferred migration.
		int cpu = ex->ce_mig_cpu;
		ex->ce_mig_cpu = NOCPU;
		c->c_iflags.fetch_and(~(CALLOUT_PENDING | CALLOUT_DFRMIGRATION |
		    CALLOUT_DIRECT), std::memory_order_relaxed);
		if (ex->ce_mig_direct)
			c->c_iflags.fetch_or(CALLOUT_DIRECT, std::memory_order_relaxed);
		c->c_func = ex->ce_mig_func;
		c->c_arg = ex->ce_mig_arg;
		c->c_time = ex->ce_mig_time;
		c->c_precision = ex->ce_mig_prec;
		callout_cpu *ncc = cc_switch(c, cc, cpu);
		if (cc_insert(ncc, c))
			cc_program(ncc);
		ncc->cc_lock.unlock();
		cc->cc_lock.lock();
	}
}

// Step 4: the softclock swi handler of one CPU.
void
softclock(void *arg) noexcept
{
	auto *cc = static_cast<callout_cpu *>(arg);
	cc->cc_lock.lock();
again:
	cc_scan(cc, clock_ns());
	while (cc->cc_exp[0].head != nullptr)
		cc_run(cc, 0, cc->cc_exp[0].head);
	if (cc->cc_exp[1].head != nullptr) {
		// Direct callouts came due: they run in the clock interrupt,
		// which then finds the next event and arms the timer.  (On
		// this CPU: the event is bound here, and its delivery waits for
		// the end of our spinlock section.)
		cc->cc_firstevent = 0;
		cc->cc_lock.unlock();
		intr_event_fire(cc->cc_timer_ie);
		return;
	}
	// Step 4's end: the wheel's next event, found exactly (resets and
	// stops moved it meanwhile), and the timer armed for it; a callout
	// that came due while the handlers ran is run now.
	uint64_t next = cc_next_event(cc);
	if (next <= clock_ns()) {
		// Simulated, virtual time passes only between steps: let one
		// go by, or a callout re-armed for "now" would loop for ever.
		sim::point();
		goto again;
	}
	cc->cc_firstevent = next;
	cc_program(cc);
	cc->cc_lock.unlock();
}

// The clock interrupt of one CPU (interrupts/internal/eventtimer.h): its
// ring's event timer expired, or another CPU asked it to re-arm (its
// "timer cpuN" filter).  Primary interrupt context on that CPU.  Schedule
// the direct callouts that are due, then schedule the softclock if
// something else is due, else arm the timer for the next event (the
// kernel's callout_process()).
void
clock_intr(callout_cpu *cc) noexcept
{
	cc->cc_lock.lock();
	cc_scan(cc, clock_ns());
	while (cc->cc_exp[1].head != nullptr)
		cc_run(cc, 1, cc->cc_exp[1].head);
	uint64_t next = cc_next_event(cc);
	bool due = next <= clock_ns();
	if (due) {
		// The softclock recomputes and re-arms when it has run.
		cc->cc_firstevent = 0;
	} else {
		cc->cc_firstevent = next;
		if (next != UINT64_MAX)
			ring_timer_arm(next);
	}
	cc->cc_lock.unlock();
	if (due)
		swi_sched(cc->cc_cookie, 0);
}

int
timer_filter(void *arg) noexcept
{
	auto *cc = static_cast<callout_cpu *>(arg);
	g_users.fetch_add(1, std::memory_order_seq_cst);
	if (g_cc.load(std::memory_order_seq_cst) != nullptr)
		clock_intr(cc);
	g_users.fetch_sub(1, std::memory_order_release);
	return FILTER_HANDLED;
}

// Step 3, on the hardclock thread.
void
callout_tick(uint64_t) noexcept
{
	// With rings, each CPU's event timer drives its wheel (step 3).
	if (ring_timer_enabled())
		return;
	g_users.fetch_add(1, std::memory_order_seq_cst);
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
				// The clock interrupt of that CPU: it runs the
				// direct callouts and schedules the softclock.
				intr_event_fire(cc->cc_timer_ie);
				break;
			}
		}
	}
	g_users.fetch_sub(1, std::memory_order_release);
}

// Without rings the wheels have no event timers: the hardclock must keep
// ticking, even with every CPU parked, while some wheel holds a callout.
bool
callout_tick_wanted() noexcept
{
	if (ring_timer_enabled())
		return false;
	g_users.fetch_add(1, std::memory_order_seq_cst);
	callout_cpu *ccs = g_cc.load(std::memory_order_seq_cst);
	int n = g_ncc.load(std::memory_order_acquire);
	bool wanted = false;
	for (int cpu = 0; ccs != nullptr && cpu < n && !wanted; cpu++)
		wanted = ccs[cpu].cc_count.load(std::memory_order_relaxed) != 0;
	g_users.fetch_sub(1, std::memory_order_release);
	return wanted;
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
		std::snprintf(name, sizeof(name), "timer cpu%d", cpu);
		if (intr_event_create(&cc->cc_timer_ie, name) != 0 ||
		    intr_event_add_handler(cc->cc_timer_ie, name, timer_filter,
			nullptr, cc, PI_REALTIME, INTR_MPSAFE | INTR_TYPE_CLK,
			&cc->cc_timer_ih) != 0 ||
		    intr_event_bind(cc->cc_timer_ie, cpu) != 0)
			panic("callout_boot: cannot add the event timer of cpu%d", cpu);
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
	g_ncc.store(0, std::memory_order_seq_cst);
	g_cc.store(nullptr, std::memory_order_seq_cst);
	// Pairs with the clock interrupts' and callout_tick's seq_cst
	// increment of g_users before their load of g_cc: either they saw
	// null, or we see them inside.  A timer that fires later finds null.
	while (g_users.load(std::memory_order_seq_cst) != 0) {
		if (sim_active()) // the user runs when we hand back
			sim_spin();
		else
			__builtin_ia32_pause();
	}
	for (int cpu = 0; cpu < n; cpu++) {
		callout_cpu *cc = &ccs[cpu];
		swi_remove(cc->cc_cookie);
		intr_event_destroy(cc->cc_ie);
		intr_event_remove_handler(cc->cc_timer_ih);
		intr_event_destroy(cc->cc_timer_ie);
		int left = cc->cc_count.load(std::memory_order_relaxed);
		if (left != 0)
			printf_diag("machine_shutdown(): %d callout%s still pending "
			    "on cpu%d (they never run)", left, left == 1 ? "" : "s",
			    cpu);
	}
	delete[] ccs;
}

sysinit g_callout_sysinit = [] {
	sysinit si;
	si.si_boot = callout_boot;
	si.si_shutdown = callout_shutdown;
	si.si_tick = callout_tick;
	si.si_tick_wanted = callout_tick_wanted;
	si.si_order = 10;
	return si;
}();

void clock_intr_entry(int cpu) noexcept;

struct callout_registrar {
	callout_registrar() noexcept
	{
		sysinit_register(&g_callout_sysinit);
		ring_timer_set_handler(clock_intr_entry);
	}
} g_callout_registrar;

void
init_common(callout *c, lock_object *lock, int flags) noexcept
{
	c->c_next = c->c_prev = nullptr;
	c->c_bucket = -1;
	c->c_time = 0;
	c->c_precision = 0;
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
stop_safe(callout *c, bool drain, callout_func_t drain_fn, const char *call,
    const char *file, int line) noexcept
{
	check_init(c, call, file, line);
	callout_cpu *cc = callout_lock(c);
	cc_exec *ex = cc_running(cc, c);
	bool running = ex != nullptr;
	bool lock_cancelled = false, removed = false;
	bool lock_held = c->c_lock != nullptr && lock_owned_by_me(c->c_lock);
	c->c_flags.fetch_and(~CALLOUT_ACTIVE, std::memory_order_relaxed);
	if (running && !drain && lock_held && !ex->ce_cancel) {
		// Step 5: the handler waits for the lock we hold.
		ex->ce_cancel = true;
		ex->ce_skip = true;
		lock_cancelled = true;
	}
	// Step 5: for the result, the run is a running handler only while its
	// handler may still run: not once a stop or reset under the lock
	// cancelled it (ce_skip), nor once the handler returned (ce_done, set
	// before the handler's lock was released; we hold that lock now, so
	// we see it).  Otherwise a stop under the lock that removes a re-armed
	// call would answer 0, and the caller's book would keep a call that
	// never runs.
	bool busy = running && !ex->ce_skip &&
	    !(lock_held && ex->ce_done.load(std::memory_order_acquire));
	int ifl = c->c_iflags.load(std::memory_order_relaxed);
	if (ifl & CALLOUT_DFRMIGRATION) {
		// Deferred while its handler runs, so ex is that run's state.
		(ex != nullptr ? ex : &cc->cc_ex[0])->ce_mig_cpu = NOCPU;
		c->c_iflags.fetch_and(~(CALLOUT_PENDING | CALLOUT_DFRMIGRATION),
		    std::memory_order_relaxed);
		removed = true;
	} else if (ifl & CALLOUT_PENDING) {
		cc_remove(cc, c);
		removed = true;
	}
	if (drain) {
		// Step 6.
		for (cc_exec *w; (w = cc_running(cc, c)) != nullptr;
		     cc = callout_lock(c)) {
			const void *chan = &w->ce_waiting;
			sleepq_lock(chan);
			w->ce_waiting = true;
			cc->cc_lock.unlock();
			sleepq_add(chan, nullptr, "codrain", SLEEPQ_SLEEP, 0, file, line);
			sleepq_wait(chan, 0);
		}
	}
	if (busy && drain_fn != nullptr) {
		// callout_async_drain(): the runner calls drain_fn when the
		// handler returns (result 0).
		ex->ce_drain = drain_fn;
		ex->ce_drain_arg = c->c_arg;
	}
	cc->cc_lock.unlock();
	if (lock_cancelled)
		return 1;
	// A drain has waited for the handler, so its result only says
	// whether a call was scheduled that now never runs: a re-run the
	// handler (or anyone) armed while it ran, removed above, is one (1),
	// with or without the callout's lock.  Answering 0 there would leave
	// that call in the caller's book.
	if (drain && removed)
		return 1;
	if (busy)
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
	if (lock == nullptr || (lock->lo_class->lc_flags & LC_SLEEPABLE))
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
    std::chrono::nanoseconds precision, callout_func_t fn, void *arg, int cpu,
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
	bool direct = (flags & C_DIRECT_EXEC) != 0;
	if (direct && c->c_lock != nullptr &&
	    !(c->c_lock->lo_class->lc_flags & LC_SPINLOCK))
		panic("callout_reset: C_DIRECT_EXEC callout %p has %s \"%s\": a "
		    "direct callout runs in the clock interrupt and may only have "
		    "a spin mutex @ %s:%d", static_cast<void *>(c),
		    c->c_lock->lo_class->lc_name, c->c_lock->lo_name, file, line);
	uint64_t t, prec;
	callout_when(when, precision, flags, &t, &prec);
	callout_cpu *cc = callout_lock(c);
	if (cpu == NOCPU)
		cpu = cc->cc_cpuid;
	int cancelled = 0;
	cc_exec *ex = cc_running(cc, c);
	if (ex != nullptr) {
		if (ex->ce_waiting) {
			// Being drained: it does not come back (step 6).
			cc->cc_lock.unlock();
			return 0;
		}
		if (c->c_lock != nullptr && !ex->ce_cancel) {
			// It waits for the lock our caller holds: cancel it.
			ex->ce_cancel = true;
			ex->ce_skip = true;
			cancelled = 1;
		}
		if (cpu != cc->cc_cpuid) {
			// Step 7: move when the handler returns.
			if (ex->ce_mig_cpu != NOCPU)
				cancelled = 1;
			else if (c->c_iflags.load(std::memory_order_relaxed) &
			    CALLOUT_PENDING) {
				cc_remove(cc, c);
				cancelled = 1;
			}
			ex->ce_mig_cpu = cpu;
			ex->ce_mig_direct = direct;
			ex->ce_mig_time = t;
			ex->ce_mig_prec = prec;
			ex->ce_mig_func = fn;
			ex->ce_mig_arg = arg;
			c->c_iflags.fetch_or(CALLOUT_PENDING | CALLOUT_DFRMIGRATION,
			    std::memory_order_relaxed);
			c->c_flags.fetch_or(CALLOUT_ACTIVE, std::memory_order_relaxed);
			cc->cc_lock.unlock();
			return cancelled;
		}
	}
	int ifl = c->c_iflags.load(std::memory_order_relaxed);
	if (ifl & CALLOUT_DFRMIGRATION) {
		(ex != nullptr ? ex : &cc->cc_ex[0])->ce_mig_cpu = NOCPU;
		c->c_iflags.fetch_and(~(CALLOUT_PENDING | CALLOUT_DFRMIGRATION),
		    std::memory_order_relaxed);
		cancelled = 1;
	} else if (ifl & CALLOUT_PENDING) {
		cc_remove(cc, c);
		cancelled = 1;
	}
	if (cpu != cc->cc_cpuid)
		cc = cc_switch(c, cc, cpu);
	// Which expired list (and runner) the scan gives it to.  Not pending
	// here, so no list holds it: the flag may change.
	if (direct)
		c->c_iflags.fetch_or(CALLOUT_DIRECT, std::memory_order_relaxed);
	else
		c->c_iflags.fetch_and(~CALLOUT_DIRECT, std::memory_order_relaxed);
	c->c_func = fn;
	c->c_arg = arg;
	c->c_time = t;
	c->c_precision = prec;
	if (cc_insert(cc, c))
		cc_program(cc);
	c->c_flags.fetch_or(CALLOUT_ACTIVE, std::memory_order_relaxed);
	cc->cc_lock.unlock();
	// Without event timers the hardclock's tick drives the wheels, and it
	// sleeps without a tick while every CPU is parked and no wheel holds
	// a callout (callout_tick_wanted): a reset by a foreign OS thread
	// then must wake it (step 3), or the callout waits for the next CPU
	// that happens to unpark.
	if (!ring_timer_enabled())
		hardclock_tick_wanted();
	return cancelled;
}

void
callout_when(std::chrono::nanoseconds when, std::chrono::nanoseconds precision,
    int flags, uint64_t *timep, uint64_t *precp) noexcept
{
	int64_t w = when.count() > 0 ? when.count() : 0;
	uint64_t p = precision.count() > 0 ? static_cast<uint64_t>(precision.count()) : 0;
	if (flags & C_ABSOLUTE) {
		*timep = static_cast<uint64_t>(w);
		*precp = p;
		return;
	}
	// C_HARDCLOCK: at least one tick (a wheel slot, 1 ms) away.
	if ((flags & C_HARDCLOCK) && static_cast<uint64_t>(w) < SLOT_NS)
		w = static_cast<int64_t>(SLOT_NS);
	uint64_t base = clock_ns();
	uint64_t d = static_cast<uint64_t>(w);
	*timep = base + d < base ? UINT64_MAX : base + d;
	int prel = C_PRELGET(flags);
	uint64_t rel = 0;
	if (flags & C_EXACT)
		rel = 0;
	else if (prel < 0)
		rel = d >> CALLOUT_PRECEXP;
	else if (prel < 64)
		rel = d >> prel;
	if (rel < p)
		rel = p;
	if ((flags & C_HARDCLOCK) && *timep < UINT64_MAX - 2 * SLOT_NS - rel) {
		// Aligned to the ticks: allowed to wait for the end of the
		// tick (slot) it falls in, or, when its own precision reaches
		// past that, for the end of the tick the precision ends in; so
		// such callouts fire together, and time + precision is a tick
		// edge.
		uint64_t edge = (*timep / SLOT_NS + 1) * SLOT_NS;
		uint64_t end = *timep + rel;
		if (end > edge)
			edge = (end + SLOT_NS - 1) / SLOT_NS * SLOT_NS;
		rel = edge - *timep;
	}
	*precp = rel;
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
	return stop_safe(c, false, nullptr, "callout_stop", file, line);
}

int
callout_drain(callout *c, const char *file, int line) noexcept
{
	return stop_safe(c, true, nullptr, "callout_drain", file, line);
}

int
callout_async_drain(callout *c, callout_func_t drain, const char *file,
    int line) noexcept
{
	if (drain == nullptr)
		panic("callout_async_drain: callout %p with a null drain function "
		    "@ %s:%d", static_cast<void *>(c), file, line);
	return stop_safe(c, false, drain, "callout_async_drain", file, line);
}

namespace {
// The ring's clock interrupt (interrupts/internal/eventtimer.h).
void
clock_intr_entry(int cpu) noexcept
{
	g_users.fetch_add(1, std::memory_order_seq_cst);
	callout_cpu *ccs = g_cc.load(std::memory_order_seq_cst);
	if (ccs != nullptr && cpu < g_ncc.load(std::memory_order_acquire))
		clock_intr(&ccs[cpu]);
	g_users.fetch_sub(1, std::memory_order_release);
}
} // namespace

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

// Interrupt events: delivery of filters on a CPU, the ithreads.
//
// Vocabulary.  An event is "fired" (the line is raised) by anyone; it is
// "delivered" on one CPU, which runs its filters in primary interrupt
// context (a spinlock section, sleeping forbidden, TDP_INFILTER); a filter
// may "schedule" the event's ithread, a green thread at interrupt priority
// that runs the ithread handlers.  The "target" CPU of a fire is the bound
// CPU, else the firer's own CPU (a green thread), else the event's home CPU
// (a foreign OS thread or a signal handler).
//
// The problem.  A real interrupt arrives on a CPU between two instructions,
// whatever that CPU runs, and runs at once unless the CPU disabled
// interrupts.  Here a CPU is an OS thread that may be running green code,
// be inside the scheduler with spin locks held, or be parked in the kernel;
// and the firer may be another CPU, an OS thread the runtime does not know,
// or a signal handler that may do nothing but atomics and system calls.
//
// Approaches rejected.  Running filters on the firing thread: a foreign OS
// thread has no CPU, no critical section and no curthread that the
// scheduler can preempt for the ithread, and a filter bound to a CPU must
// run there.  A per-CPU mutex-protected queue: a signal handler may not
// take a lock the interrupted code may hold.  A dedicated "interrupt OS
// thread" per CPU: one more context switch through the host kernel for
// every interrupt, and filters would race the CPU's own threads for the
// CPU's data.
//
// The protocol.
//  0. Firing.  Every fire counts itself in ie_inflight for as long as it
//     touches the event (intr_fire_begin/end); intr_event_destroy() sets
//     ie_dying, then waits for ie_inflight to drain (seq_cst on both sides:
//     either the destroy waits for the fire, or the fire sees ie_dying and
//     panics, naming the misuse).
//  1. Queueing.  The firer sets ie_queued 0 -> 1 (exchange, acq_rel); if it
//     was already 1 the fire coalesces with the delivery in flight (a
//     level-triggered line: the filters will run after the exchange in
//     step 3, so they see everything written before this fire).  Otherwise
//     it counts ie_inflight up, pushes the event on the target CPU's
//     lock-free stack ic_head (CAS, release; pairs with the acquire
//     exchange of step 3), and stores pc_intr_pending = 1 (seq_cst).
//  2. Kicking.  A remote target is kicked with sched_intr_kick() (a futex
//     wake if it is parked, the preemption IPI otherwise; the seq_cst
//     store of step 1 pairs with the idle loop's seq_cst park-word store
//     and pending re-read, runtime/internal/intr_hook.h).  A green thread
//     whose own CPU is the target delivers at once if it is in no spinlock
//     section, and otherwise sets td_owepreempt |= OWEPREEMPT_INTR, taken at
//     its outermost spinlock_exit().  A signal handler on the target CPU
//     does the latter (it may not deliver: the code it interrupted may hold
//     anything) and leaves the rest to the hardclock's backstop (step 5).
//  3. Delivery (intr_deliver, on the target CPU, in a spinlock section,
//     not nested: ic_nest).  Loop: exchange pc_intr_pending to 0 (acq_rel),
//     then take the whole stack (exchange ic_head, acquire), reverse it to
//     firing order, and for each event: clear ie_queued (seq_cst; a fire
//     from now on queues again), run its filters under ie_spin
//     (intr_event_handle), count ie_inflight down (release; pairs with
//     intr_event_destroy's acquire).  Until the pending word stays 0.  A
//     fire that happens during delivery (a filter firing an event on its
//     own CPU) only queues (ic_nest != 0) and is picked up by the loop.
//  4. The ithread.  Scheduling stores ie_it_need = 1 (seq_cst) and signals
//     the sleep queue of &ie_it_need under its chain lock.  The ithread
//     exchanges ie_it_need to 0 before each pass over its handlers; it
//     goes to sleep only after re-reading ie_it_need == 0 under the chain
//     lock, so a schedule is never lost.  The wakeup places it (ULE) and
//     preempts the interrupted thread at the end of the delivery's spinlock
//     section, or at the signal handler's return (runtime/intr.cc).
//  5. Backstop.  Each hardclock tick, a CPU whose pending word was set at
//     the previous tick too is kicked again (it may have been running code
//     that reaches no preemption point, or the kick came from its own
//     signal handler).
//
// Handler lists.  ie_handlers is a singly linked list in priority order.
// Links are written under ie_spin (release) and read by the filter pass
// under ie_spin and by the ithread without it (acquire).  So a handler may
// only be unlinked by the ithread (between its passes) when the event has
// one: intr_event_remove_handler() marks it dead, schedules the ithread and
// sleeps until the ithread has unlinked it; without an ithread it is
// unlinked under ie_spin, which is the barrier against a filter pass.
#include "interrupts/intr_event.h"
#include "interrupts/internal/intr_event.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <new>

#include "runtime/config.h"
#include "runtime/counters.h"
#include "runtime/critical.h"
#include "runtime/internal/intr_hook.h"
#include "runtime/ktr.h"
#include "runtime/machine.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "sched/sched.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sync/sleepqueue.h"
#include "sync/witness.h"

namespace usmp {

namespace {

constexpr int MAXCPU = 1024; // machine_boot()'s limit

struct alignas(64) intr_cpu {
	std::atomic<intr_event *> ic_head{nullptr}; // (a) protocol step 1/3
	int ic_nest = 0;        // (k) delivery in progress on this CPU
	bool ic_seen = false;   // (hardclock) pending at the last tick
};

intr_cpu g_ic[MAXCPU];
std::atomic<unsigned> g_home_seq{0};
std::atomic<uint64_t> g_stray{0};
std::atomic<int> g_storm_threshold{0};
constexpr uint64_t STRAY_LOG_MAX = 5;

int
home_cpu(const intr_event *ie, int ncpus) noexcept
{
	return ncpus > 0 ? static_cast<int>(ie->ie_home_seq % static_cast<unsigned>(ncpus)) : 0;
}

// The start of every fire (protocol step 0): count the fire in ie_inflight
// for as long as it touches the event, so that intr_event_destroy(), which
// waits for ie_inflight to drain, never frees an event under a fire that
// began before it (a filter chain-firing an event while another thread
// destroys it).  A fire that begins after the destroy did is the caller's
// bug: it panics while the event still exists, instead of writing into
// freed memory later.  The seq_cst increment pairs with destroy's seq_cst
// store of ie_dying before its first read of ie_inflight: either destroy
// sees this fire and waits, or this fire sees ie_dying.
void
intr_fire_begin(intr_event *ie, const char *call) noexcept
{
	ie->ie_inflight.fetch_add(1, std::memory_order_seq_cst);
	if (__builtin_expect(ie->ie_dying.load(std::memory_order_seq_cst) != 0, 0))
		panic("%s() of event \"%s\" during or after its "
		    "intr_event_destroy()", call, ie->ie_name);
	ie->ie_fires.fetch_add(1, std::memory_order_relaxed);
}

// The end of a fire: give back the count of intr_fire_begin() (release:
// the fire's last access to the event happens before destroy frees it).
inline void
intr_fire_end(intr_event *ie) noexcept
{
	ie->ie_inflight.fetch_sub(1, std::memory_order_release);
}

// Step 1.  Returns false if the fire coalesced with a queued delivery.
// Called between intr_fire_begin() and intr_fire_end(), so the event
// cannot be freed between the exchange and the increment.
bool
intr_enqueue(intr_event *ie, int cpu) noexcept
{
	if (ie->ie_queued.exchange(1, std::memory_order_acq_rel) != 0)
		return false;
	ie->ie_inflight.fetch_add(1, std::memory_order_relaxed);
	intr_cpu *ic = &g_ic[cpu];
	intr_event *head = ic->ic_head.load(std::memory_order_relaxed);
	do {
		ie->ie_qnext.store(head, std::memory_order_relaxed);
	} while (!ic->ic_head.compare_exchange_weak(head, ie,
	    std::memory_order_release, std::memory_order_relaxed));
	pcpu_find(cpu)->pc_intr_pending.store(1, std::memory_order_seq_cst);
	return true;
}

[[noreturn]] void
bad_filter_result(intr_event *ie, intr_handler *ih, int ret) noexcept
{
	panic("intr_event_handle: incorrect return value %#x from filter of "
	    "handler \"%s\" on event \"%s\" (FILTER_STRAY, FILTER_HANDLED, "
	    "FILTER_SCHEDULE_THREAD expected)", ret, ih->ih_name, ie->ie_name);
}

void
schedule_ithread(intr_event *ie) noexcept
{
	ie->ie_it_need.store(1, std::memory_order_seq_cst);
	const void *chan = &ie->ie_it_need;
	sleepq_lock(chan);
	sleepq_signal(chan, SLEEPQ_SLEEP, 0, 0);
	sleepq_release(chan);
}

// The filter pass (intr_event_handle in the kernel).  On the delivering
// CPU, in its spinlock section.
void
intr_event_handle(intr_event *ie) noexcept
{
	ie->ie_delivered.fetch_add(1, std::memory_order_relaxed);
	if (ie->ie_flags & IE_SOFT) {
		// A software interrupt raised from a signal handler
		// (swi_sched(SWI_FROMNMI)): only the ithread has work.
		if (ie->ie_ithread != nullptr) {
			schedule_ithread(ie);
			ie->ie_scheduled.fetch_add(1, std::memory_order_relaxed);
		}
		return;
	}
	thread *td = curthread();
	bool handled = false, sched = false;
	ktr_intr_begin(ie, ie->ie_name);
	ie->ie_spin.lock();
	for (intr_handler *ih = ie->ie_handlers.load(std::memory_order_acquire);
	     ih != nullptr; ih = ih->ih_next.load(std::memory_order_acquire)) {
		if (ih->ih_dead.load(std::memory_order_relaxed) ||
		    ih->ih_suspended.load(std::memory_order_relaxed))
			continue;
		if (ih->ih_filter == nullptr) {
			sched = true;
			continue;
		}
		uint32_t saved = td->td_pflags & (TDP_NOSLEEPING | TDP_INFILTER);
		td->td_pflags |= TDP_NOSLEEPING | TDP_INFILTER;
		// WITNESS: a sleep lock taken in here is reported as "acquiring
		// sleep lock ... in an interrupt filter".
		if constexpr (config::witness)
			witness_filter_enter();
		std::atomic_signal_fence(std::memory_order_seq_cst);
		int ret = ih->ih_filter(ih->ih_arg);
		std::atomic_signal_fence(std::memory_order_seq_cst);
		if constexpr (config::witness)
			witness_filter_exit();
		td->td_pflags = (td->td_pflags & ~(TDP_NOSLEEPING | TDP_INFILTER)) |
		    saved;
		if (ret != FILTER_STRAY &&
		    ((ret & (FILTER_HANDLED | FILTER_SCHEDULE_THREAD)) == 0 ||
			(ret & ~(FILTER_HANDLED | FILTER_SCHEDULE_THREAD)) != 0)) {
			ie->ie_spin.unlock();
			bad_filter_result(ie, ih, ret);
		}
		if (ret & FILTER_SCHEDULE_THREAD) {
			if (ih->ih_handler == nullptr) {
				ie->ie_spin.unlock();
				panic("intr_event_handle: filter of handler \"%s\" on "
				    "event \"%s\" returned FILTER_SCHEDULE_THREAD but "
				    "the handler has no ithread part", ih->ih_name,
				    ie->ie_name);
			}
			sched = true;
		}
		if (ret & FILTER_HANDLED)
			handled = true;
	}
	ie->ie_spin.unlock();
	if (handled)
		ie->ie_handled.fetch_add(1, std::memory_order_relaxed);
	if (sched && ie->ie_ithread != nullptr) {
		schedule_ithread(ie);
		ie->ie_scheduled.fetch_add(1, std::memory_order_relaxed);
	}
	ktr_intr_end(ie, ie->ie_name);
	if (!handled && !sched) {
		uint64_t n = ie->ie_stray.fetch_add(1, std::memory_order_relaxed) + 1;
		g_stray.fetch_add(1, std::memory_order_relaxed);
		if (n <= STRAY_LOG_MAX)
			printf_diag("stray interrupt on \"%s\"", ie->ie_name);
		else if (n == STRAY_LOG_MAX + 1)
			printf_diag("too many stray interrupts on \"%s\": not "
			    "logging anymore", ie->ie_name);
	}
}

// Step 3.  Registered as g_intr_deliver.
void
intr_deliver(pcpu *pc) noexcept
{
	spinlock_enter();
	intr_cpu *ic = &g_ic[pc->pc_cpuid];
	if (ic->ic_nest++ == 0) {
		while (pc->pc_intr_pending.exchange(0, std::memory_order_acq_rel) != 0) {
			intr_event *list = ic->ic_head.exchange(nullptr,
			    std::memory_order_acquire);
			intr_event *fifo = nullptr;
			while (list != nullptr) {
				intr_event *next = list->ie_qnext.load(std::memory_order_relaxed);
				list->ie_qnext.store(fifo, std::memory_order_relaxed);
				fifo = list;
				list = next;
			}
			while (fifo != nullptr) {
				intr_event *ie = fifo;
				fifo = ie->ie_qnext.load(std::memory_order_relaxed);
				ie->ie_queued.store(0, std::memory_order_seq_cst);
				intr_event_handle(ie);
				ie->ie_inflight.fetch_sub(1, std::memory_order_release);
			}
		}
	}
	ic->ic_nest--;
	spinlock_exit();
}

// Step 5, on the hardclock thread.
void
intr_tick(uint64_t) noexcept
{
	int n = mp_ncpus();
	for (int c = 0; c < n && c < MAXCPU; c++) {
		pcpu *pc = pcpu_find(c);
		if (pc == nullptr)
			break;
		bool pending = pc->pc_intr_pending.load(std::memory_order_relaxed) != 0;
		if (pending && g_ic[c].ic_seen)
			sched_intr_kick(c);
		g_ic[c].ic_seen = pending;
	}
}

// Every CPU's OS thread has ended: interrupts still queued (fired after
// their CPU's last delivery) are dropped, as a halted CPU drops its pending
// interrupts.  Their ie_queued flags are cleared and ie_inflight given
// back, so the events fire (and are delivered) on the next boot, and
// intr_event_destroy() does not wait for a delivery that will never come.
void
intr_machine_shutdown() noexcept
{
	for (auto &ic : g_ic) {
		intr_event *ie = ic.ic_head.exchange(nullptr, std::memory_order_acquire);
		while (ie != nullptr) {
			intr_event *next = ie->ie_qnext.load(std::memory_order_relaxed);
			ie->ie_queued.store(0, std::memory_order_seq_cst);
			ie->ie_inflight.fetch_sub(1, std::memory_order_release);
			ie = next;
		}
		ic.ic_nest = 0;
		ic.ic_seen = false;
	}
}

sysinit g_intr_sysinit = [] {
	sysinit h;
	h.si_machine_shutdown = intr_machine_shutdown;
	h.si_tick = intr_tick;
	h.si_order = 0;
	return h;
}();

struct intr_registrar {
	intr_registrar() noexcept
	{
		g_intr_deliver.store(intr_deliver, std::memory_order_release);
		sysinit_register(&g_intr_sysinit);
	}
} g_intr_registrar;

// ---- The ithread.

void
unlink_dead(intr_event *ie) noexcept
{
	intr_handler *dead = nullptr;
	ie->ie_spin.lock();
	std::atomic<intr_handler *> *pp = &ie->ie_handlers;
	for (intr_handler *ih = pp->load(std::memory_order_relaxed); ih != nullptr;
	     ih = pp->load(std::memory_order_relaxed)) {
		if (ih->ih_dead.load(std::memory_order_acquire)) {
			pp->store(ih->ih_next.load(std::memory_order_relaxed),
			    std::memory_order_release);
			ih->ih_next.store(dead, std::memory_order_relaxed);
			dead = ih;
			continue;
		}
		pp = &ih->ih_next;
	}
	ie->ie_spin.unlock();
	while (dead != nullptr) {
		intr_handler *next = dead->ih_next.load(std::memory_order_relaxed);
		// The remover sleeps on the handler until this store; it frees it.
		sleepq_lock(dead);
		dead->ih_unlinked.store(1, std::memory_order_seq_cst);
		sleepq_broadcast(dead, SLEEPQ_SLEEP, 0, 0);
		sleepq_release(dead);
		dead = next;
	}
}

// The ithread left a handler: wake suspenders waiting for that.
void
it_curr_clear(intr_event *ie) noexcept
{
	ie->ie_it_curr.store(nullptr, std::memory_order_seq_cst);
	if (ie->ie_it_waiters.load(std::memory_order_seq_cst) != 0) {
		const void *chan = &ie->ie_it_curr;
		sleepq_lock(chan);
		sleepq_broadcast(chan, SLEEPQ_SLEEP, 0, 0);
		sleepq_release(chan);
	}
}

void
ithread_execute_handlers(intr_event *ie) noexcept
{
	thread *td = curthread();
	unlink_dead(ie);
	ie->ie_ithread_runs.fetch_add(1, std::memory_order_relaxed);
	bool soft = ie->ie_flags & IE_SOFT;
	for (intr_handler *ih = ie->ie_handlers.load(std::memory_order_acquire);
	     ih != nullptr; ih = ih->ih_next.load(std::memory_order_acquire)) {
		if (ih->ih_dead.load(std::memory_order_relaxed) ||
		    ih->ih_handler == nullptr)
			continue;
		// Suspension barrier: publish the handler before re-reading
		// ih_suspended (both seq_cst; pairs with the suspender's store
		// of ih_suspended before its read of ie_it_curr): either we see
		// it suspended, or the suspender sees us in it and waits.
		ie->ie_it_curr.store(ih, std::memory_order_seq_cst);
		if (ih->ih_suspended.load(std::memory_order_seq_cst)) {
			// A swi's ih_need stays set: the resume runs it.
			it_curr_clear(ie);
			continue;
		}
		if (soft) {
			int one = 1;
			if (!ih->ih_need.compare_exchange_strong(one, 0,
			    std::memory_order_acquire, std::memory_order_relaxed)) {
				it_curr_clear(ie);
				continue;
			}
		}
		bool giant = !(ih->ih_flags & INTR_MPSAFE);
		if (giant)
			Giant.lock(__FILE__, __LINE__);
		// Hardware ithread handlers may not sleep (THREAD_NO_SLEEPING).
		uint32_t saved = td->td_pflags & TDP_NOSLEEPING;
		if (!soft) {
			td->td_pflags |= TDP_NOSLEEPING;
			// WITNESS names the context of a sleep in here.
			if constexpr (config::witness)
				witness_nosleep_enter("ithread");
		}
		ktr_intr_begin(ih, ih->ih_name);
		ih->ih_handler(ih->ih_arg);
		ktr_intr_end(ih, ih->ih_name);
		if constexpr (config::witness)
			if (!soft)
				witness_nosleep_exit();
		td->td_pflags = (td->td_pflags & ~TDP_NOSLEEPING) | saved;
		if (giant)
			Giant.unlock(__FILE__, __LINE__);
		it_curr_clear(ie);
	}
	// Storm detection (hardware events only).
	int thr = g_storm_threshold.load(std::memory_order_relaxed);
	if (thr != 0 && !soft && ie->ie_count >= thr) {
		uint64_t now = clock_ns();
		if (ie->ie_warntm == 0 || now - ie->ie_warntm >= 1000000000ull) {
			ie->ie_warntm = now;
			printf_diag("interrupt storm detected on \"%s\"; "
			    "throttling interrupt source", ie->ie_name);
		}
		ie->ie_storms.fetch_add(1, std::memory_order_relaxed);
		pause("istorm", std::chrono::milliseconds(1));
	} else {
		ie->ie_count++;
	}
}

void
ithread_loop(intr_event *ie) noexcept
{
	unsigned gen = 0;
	const void *chan = &ie->ie_it_need;
	for (;;) {
		unsigned g = ie->ie_bind_gen.load(std::memory_order_acquire);
		if (g != gen) {
			gen = g;
			int cpu = ie->ie_cpu.load(std::memory_order_relaxed);
			if (cpu == NOCPU)
				sched_unbind();
			else
				sched_bind(cpu);
		}
		if (ie->ie_it_need.exchange(0, std::memory_order_acq_rel) != 0) {
			ithread_execute_handlers(ie);
			continue;
		}
		if (ie->ie_it_dying.load(std::memory_order_acquire)) {
			unlink_dead(ie);
			return;
		}
		ie->ie_count = 0;
		sleepq_lock(chan);
		if (ie->ie_it_need.load(std::memory_order_seq_cst) == 0 &&
		    ie->ie_it_dying.load(std::memory_order_relaxed) == 0 &&
		    ie->ie_bind_gen.load(std::memory_order_relaxed) == gen) {
			sleepq_add(chan, nullptr, "iwait", SLEEPQ_SLEEP, 0);
			sleepq_wait(chan, 0);
		} else {
			sleepq_release(chan);
		}
	}
}

// Best priority of the live handlers, or -1.  Requires ie_lock.
int
best_pri(intr_event *ie) noexcept
{
	int best = -1;
	for (intr_handler *ih = ie->ie_handlers.load(std::memory_order_acquire);
	     ih != nullptr; ih = ih->ih_next.load(std::memory_order_acquire))
		if (!ih->ih_dead.load(std::memory_order_relaxed) &&
		    (best < 0 || ih->ih_pri < best))
			best = ih->ih_pri;
	return best;
}

void
ithread_update(intr_event *ie) noexcept
{
	int best = best_pri(ie);
	if (ie->ie_ithread != nullptr && best >= 0)
		sched_prio(ie->ie_ithread, best);
}

// ---- hw.intr.<event>.<counter>: the event's statistics in the counter
// tree (runtime/counters.h), as procedure nodes that read its relaxed
// counters; registered by intr_event_create(), removed by
// intr_event_destroy() (after which no procedure runs: the registry's lock
// orders the removal with a read in progress).

template <std::atomic<uint64_t> intr_event::*F>
uint64_t
ie_counter(void *arg) noexcept
{
	return (static_cast<intr_event *>(arg)->*F).load(std::memory_order_relaxed);
}

struct ie_counter_node {
	const char *leaf;
	const char *descr;
	counter_proc_fn fn;
};

constexpr ie_counter_node g_ie_nodes[] = {
	{"fires", "intr_event_fire*() calls", ie_counter<&intr_event::ie_fires>},
	{"delivered", "passes over the filters", ie_counter<&intr_event::ie_delivered>},
	{"handled", "passes some filter handled", ie_counter<&intr_event::ie_handled>},
	{"scheduled", "passes that scheduled the ithread",
	    ie_counter<&intr_event::ie_scheduled>},
	{"stray", "passes nobody claimed", ie_counter<&intr_event::ie_stray>},
	{"ithread_runs", "ithread passes over its handlers",
	    ie_counter<&intr_event::ie_ithread_runs>},
	{"storms", "ithread passes throttled as a storm",
	    ie_counter<&intr_event::ie_storms>},
};

// The event's name as one component of a counter name: each run of
// characters a counter name may not hold ("swi4: clock (0)") becomes one
// '_', with none at either end ("swi4_clock_0").
void
counter_component(const char *name, char *out, size_t len) noexcept
{
	size_t n = 0;
	bool gap = false;
	for (const char *p = name; *p != '\0' && n + 2 < len; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-';
		if (!ok) {
			gap = n > 0;
			continue;
		}
		if (gap)
			out[n++] = '_';
		gap = false;
		out[n++] = c;
	}
	if (n == 0)
		out[n++] = '_';
	out[n] = '\0';
}

// Register the event's nodes under hw.intr.<component>; a second live event
// of the same name gets "<component>_2", and so on.  Leaves ie_cname empty
// if no name could be had (the event works, uncounted in the tree).
void
ie_counters_register(intr_event *ie) noexcept
{
	char base[sizeof(ie->ie_cname) - 8];
	counter_component(ie->ie_name, base, sizeof(base));
	char node[sizeof(ie->ie_cname) + 32];
	for (int dup = 1; dup < 1000; dup++) {
		if (dup == 1)
			std::snprintf(ie->ie_cname, sizeof(ie->ie_cname), "hw.intr.%s", base);
		else
			std::snprintf(ie->ie_cname, sizeof(ie->ie_cname), "hw.intr.%s_%d",
			    base, dup);
		size_t i = 0;
		for (; i < std::size(g_ie_nodes); i++) {
			std::snprintf(node, sizeof(node), "%s.%s", ie->ie_cname,
			    g_ie_nodes[i].leaf);
			if (counter_register_proc(node, g_ie_nodes[i].descr,
				g_ie_nodes[i].fn, ie) != 0)
				break;
		}
		if (i == std::size(g_ie_nodes))
			return;
		// Taken (or refused): undo what this try registered.
		while (i-- > 0) {
			std::snprintf(node, sizeof(node), "%s.%s", ie->ie_cname,
			    g_ie_nodes[i].leaf);
			counter_unregister(node);
		}
	}
	ie->ie_cname[0] = '\0';
}

void
ie_counters_unregister(intr_event *ie) noexcept
{
	if (ie->ie_cname[0] == '\0')
		return;
	char node[sizeof(ie->ie_cname) + 32];
	for (const ie_counter_node &n : g_ie_nodes) {
		std::snprintf(node, sizeof(node), "%s.%s", ie->ie_cname, n.leaf);
		counter_unregister(node);
	}
}

} // namespace

// ---- Public calls.

int
intr_priority(int flags) noexcept
{
	if (flags & INTR_TYPE_CLK)
		return PI_REALTIME;
	if (flags & INTR_TYPE_AV)
		return PI_AV;
	if (flags & INTR_TYPE_NET)
		return PI_NET;
	if (flags & (INTR_TYPE_BIO | INTR_TYPE_CAM))
		return PI_DISK;
	if (flags & INTR_TYPE_TTY)
		return PI_TTY;
	if (flags & INTR_TYPE_MISC)
		return PI_DULL;
	panic("intr_priority: no interrupt type in flags %#x", flags);
}

int
intr_event_create(intr_event **iep, const char *name, int flags) noexcept
{
	if (iep == nullptr || name == nullptr || (flags & ~IE_SOFT) != 0)
		return EINVAL;
	auto *ie = new (std::nothrow) intr_event;
	if (ie == nullptr)
		return ENOMEM;
	std::snprintf(ie->ie_name, sizeof(ie->ie_name), "%s", name);
	ie->ie_flags = flags;
	ie->ie_home_seq = g_home_seq.fetch_add(1, std::memory_order_relaxed);
	ie_counters_register(ie);
	*iep = ie;
	return 0;
}

int
intr_event_destroy(intr_event *ie) noexcept
{
	if (ie == nullptr)
		return EINVAL;
	ie->ie_lock.lock();
	if (ie->ie_nhandlers != 0) {
		ie->ie_lock.unlock();
		return EBUSY;
	}
	thread *it = ie->ie_ithread;
	ie->ie_lock.unlock();
	// Fires that began before this point finish; later ones panic (see
	// intr_fire_begin()).  A delivery in flight (queued, or running its
	// filter pass) ends on its own; pairs with intr_deliver's and
	// intr_fire_end()'s release decrements.
	ie->ie_dying.store(1, std::memory_order_seq_cst);
	while (ie->ie_inflight.load(std::memory_order_seq_cst) != 0)
		thread_sleep(std::chrono::microseconds(100));
	if (it != nullptr) {
		ie->ie_it_dying.store(1, std::memory_order_seq_cst);
		schedule_ithread(ie);
		thread_join(it);
	}
	ie_counters_unregister(ie);
	delete ie;
	return 0;
}

int
intr_event_add_handler(intr_event *ie, const char *name, driver_filter_t filter,
    driver_intr_t handler, void *arg, int pri, int flags,
    intr_handler **cookiep) noexcept
{
	if (ie == nullptr || (filter == nullptr && handler == nullptr) ||
	    pri < PRI_MIN_ITHD || pri > PRI_MAX_ITHD)
		return EINVAL;
	if ((ie->ie_flags & IE_SOFT) && filter != nullptr)
		return EINVAL;
	auto *ih = new (std::nothrow) intr_handler;
	if (ih == nullptr)
		return ENOMEM;
	ih->ih_filter = filter;
	ih->ih_handler = handler;
	ih->ih_arg = arg;
	ih->ih_pri = pri;
	ih->ih_flags = flags;
	ih->ih_event = ie;
	std::snprintf(ih->ih_name, sizeof(ih->ih_name), "%s",
	    name != nullptr ? name : ie->ie_name);
	ie->ie_lock.lock();
	if ((flags & INTR_EXCL) ? ie->ie_nhandlers != 0 : ie->ie_excl) {
		ie->ie_lock.unlock();
		delete ih;
		return EINVAL;
	}
	if (handler != nullptr && ie->ie_ithread == nullptr) {
		if (!machine_running()) {
			ie->ie_lock.unlock();
			delete ih;
			return EAGAIN;
		}
		thread_attr attr;
		attr.name = ie->ie_name;
		attr.priority = pri;
		thread *td;
		int error = thread_create_fn(&td, attr, [](void *p) {
			ithread_loop(static_cast<intr_event *>(p));
		}, ie);
		if (error != 0) {
			ie->ie_lock.unlock();
			delete ih;
			return error;
		}
		ie->ie_ithread = td;
	}
	// Insert in priority order, after the handlers of the same priority.
	ie->ie_spin.lock();
	std::atomic<intr_handler *> *pp = &ie->ie_handlers;
	for (intr_handler *p = pp->load(std::memory_order_relaxed);
	     p != nullptr && p->ih_pri <= pri; p = pp->load(std::memory_order_relaxed))
		pp = &p->ih_next;
	ih->ih_next.store(pp->load(std::memory_order_relaxed), std::memory_order_relaxed);
	pp->store(ih, std::memory_order_release);
	ie->ie_spin.unlock();
	ie->ie_nhandlers++;
	if (flags & INTR_EXCL)
		ie->ie_excl = true;
	ithread_update(ie);
	ie->ie_lock.unlock();
	if (cookiep != nullptr)
		*cookiep = ih;
	return 0;
}

int
intr_event_remove_handler(intr_handler *ih) noexcept
{
	if (ih == nullptr)
		return EINVAL;
	intr_event *ie = ih->ih_event;
	ie->ie_lock.lock();
	if (ie->ie_ithread != nullptr) {
		// The ithread unlinks it between two passes (see the top); we
		// wait without ie_lock, which its handlers may need.
		ih->ih_dead.store(1, std::memory_order_seq_cst);
		ie->ie_lock.unlock();
		schedule_ithread(ie);
		sleepq_lock(ih);
		while (ih->ih_unlinked.load(std::memory_order_seq_cst) == 0) {
			sleepq_add(ih, nullptr, "iev_rmh", SLEEPQ_SLEEP, 0);
			sleepq_wait(ih, 0);
			sleepq_lock(ih);
		}
		sleepq_release(ih);
		ie->ie_lock.lock();
	} else {
		ie->ie_spin.lock();
		std::atomic<intr_handler *> *pp = &ie->ie_handlers;
		while (pp->load(std::memory_order_relaxed) != ih)
			pp = &pp->load(std::memory_order_relaxed)->ih_next;
		pp->store(ih->ih_next.load(std::memory_order_relaxed),
		    std::memory_order_release);
		ie->ie_spin.unlock(); // the barrier: no filter pass uses ih now
	}
	ie->ie_nhandlers--;
	if (ih->ih_flags & INTR_EXCL)
		ie->ie_excl = false;
	ithread_update(ie);
	ie->ie_lock.unlock();
	delete ih;
	return 0;
}

int
intr_event_suspend_handler(intr_handler *ih, const char *file, int line) noexcept
{
	if (ih == nullptr)
		return EINVAL;
	intr_event *ie = ih->ih_event;
	if (ie->ie_ithread != nullptr && curthread() == ie->ie_ithread)
		panic("intr_event_suspend_handler() of handler \"%s\" from the "
		    "ithread of event \"%s\" @ %s:%d", ih->ih_name, ie->ie_name,
		    file, line);
	ih->ih_suspended.store(1, std::memory_order_seq_cst);
	// Filters: a pass in progress holds ie_spin; later ones skip it.
	ie->ie_spin.lock();
	ie->ie_spin.unlock();
	// The ithread: wait until it is not in this handler (see
	// ithread_execute_handlers; the chain lock orders our check-then-sleep
	// with its clear-then-broadcast).
	if (ie->ie_ithread != nullptr) {
		const void *chan = &ie->ie_it_curr;
		ie->ie_it_waiters.fetch_add(1, std::memory_order_seq_cst);
		sleepq_lock(chan);
		while (ie->ie_it_curr.load(std::memory_order_seq_cst) == ih) {
			sleepq_add(chan, nullptr, "iev_susp", SLEEPQ_SLEEP, 0, file,
			    line);
			sleepq_wait(chan, 0);
			sleepq_lock(chan);
		}
		sleepq_release(chan);
		ie->ie_it_waiters.fetch_sub(1, std::memory_order_seq_cst);
	}
	return 0;
}

int
intr_event_resume_handler(intr_handler *ih) noexcept
{
	if (ih == nullptr)
		return EINVAL;
	ih->ih_suspended.store(0, std::memory_order_seq_cst);
	// A software interrupt scheduled while suspended runs now.
	if (ih->ih_need.load(std::memory_order_seq_cst) != 0 &&
	    ih->ih_event->ie_ithread != nullptr)
		schedule_ithread(ih->ih_event);
	return 0;
}

int
intr_event_bind(intr_event *ie, int cpu) noexcept
{
	if (ie == nullptr || (cpu != NOCPU && (cpu < 0 || cpu >= mp_ncpus())))
		return EINVAL;
	ie->ie_lock.lock();
	ie->ie_cpu.store(cpu, std::memory_order_relaxed);
	ie->ie_bind_gen.fetch_add(1, std::memory_order_release);
	if (ie->ie_ithread != nullptr) {
		// Wake it so that it binds itself before its next pass.
		const void *chan = &ie->ie_it_need;
		sleepq_lock(chan);
		sleepq_signal(chan, SLEEPQ_SLEEP, 0, 0);
		sleepq_release(chan);
	}
	ie->ie_lock.unlock();
	return 0;
}

int
intr_event_fire(intr_event *ie) noexcept
{
	intr_fire_begin(ie, "intr_event_fire");
	// An instant on the firer's track: the line raised.
	ktr_event_record(KTR_USER, reinterpret_cast<uintptr_t>(ie),
	    static_cast<uint64_t>(ie->ie_cpu.load(std::memory_order_relaxed)),
	    ie->ie_name);
	int ncpus = mp_ncpus();
	if (ncpus == 0) {
		intr_fire_end(ie);
		return ENXIO;
	}
	int bound = ie->ie_cpu.load(std::memory_order_relaxed);
	if (curpcpu() == nullptr) {
		// A foreign OS thread (or the hardclock): the remote path.
		int target = bound != NOCPU ? bound : home_cpu(ie, ncpus);
		bool kick = intr_enqueue(ie, target);
		intr_fire_end(ie);
		if (kick)
			sched_intr_kick(target);
		return 0;
	}
	critical_enter();
	pcpu *pc = curpcpu();
	int me = pc->pc_cpuid;
	int target = bound != NOCPU ? bound : me;
	if (target != me) {
		bool kick = intr_enqueue(ie, target);
		intr_fire_end(ie);
		critical_exit();
		if (kick)
			sched_intr_kick(target);
		return 0;
	}
	intr_enqueue(ie, me);
	intr_fire_end(ie); // the queued delivery holds its own count now
	thread *td = curthread();
	if (td->td_spinlock_count == 0 && g_ic[me].ic_nest == 0)
		intr_deliver(pc);
	else if (g_ic[me].ic_nest == 0)
		td->td_owepreempt = td->td_owepreempt | OWEPREEMPT_INTR;
	// else: inside this CPU's delivery loop, which picks it up.
	critical_exit(); // a better ithread the filters woke preempts here
	return 0;
}

int
intr_event_fire_async(intr_event *ie) noexcept
{
	intr_fire_begin(ie, "intr_event_fire_async");
	int ncpus = mp_ncpus();
	if (ncpus == 0) {
		intr_fire_end(ie);
		return ENXIO;
	}
	int bound = ie->ie_cpu.load(std::memory_order_relaxed);
	int target = bound != NOCPU ? bound : home_cpu(ie, ncpus);
	bool queued = intr_enqueue(ie, target);
	intr_fire_end(ie);
	if (!queued)
		return 0;
	pcpu *pc = curpcpu();
	if (pc != nullptr && pc->pc_cpuid == target) {
		// Our own CPU, from a handler that interrupted its thread:
		// deliver at that thread's next outermost critical_exit(), or
		// the idle loop's next turn.  The idle thread may have made its
		// last check already and be about to wait in the ring, where no
		// tick comes (tickless) while every CPU is parked: kick our own
		// ring too, so that the wait returns at once.
		thread *td = pc->pc_curthread;
		td->td_owepreempt = td->td_owepreempt | OWEPREEMPT_INTR;
		if (td->td_flags & TDF_IDLETD)
			sched_intr_kick(target);
		return 0;
	}
	sched_intr_kick(target);
	return 0;
}

int
intr_event_schedule_thread(intr_event *ie) noexcept
{
	if (ie == nullptr || ie->ie_ithread == nullptr)
		return EINVAL;
	schedule_ithread(ie);
	ie->ie_scheduled.fetch_add(1, std::memory_order_relaxed);
	return 0;
}

void
intr_event_get_stats(const intr_event *ie, intr_event_stats *st) noexcept
{
	st->ies_fires = ie->ie_fires.load(std::memory_order_relaxed);
	st->ies_delivered = ie->ie_delivered.load(std::memory_order_relaxed);
	st->ies_handled = ie->ie_handled.load(std::memory_order_relaxed);
	st->ies_scheduled = ie->ie_scheduled.load(std::memory_order_relaxed);
	st->ies_stray = ie->ie_stray.load(std::memory_order_relaxed);
	st->ies_ithread_runs = ie->ie_ithread_runs.load(std::memory_order_relaxed);
	st->ies_storms = ie->ie_storms.load(std::memory_order_relaxed);
}

const char *
intr_event_name(const intr_event *ie) noexcept
{
	return ie->ie_name;
}

int
intr_event_bound_cpu(const intr_event *ie) noexcept
{
	return ie->ie_cpu.load(std::memory_order_relaxed);
}

int
intr_event_cpu(const intr_event *ie) noexcept
{
	int bound = ie->ie_cpu.load(std::memory_order_relaxed);
	return bound != NOCPU ? bound : home_cpu(ie, mp_ncpus());
}

thread *
intr_event_ithread(const intr_event *ie) noexcept
{
	return ie->ie_ithread;
}

uint64_t
intr_stray_count() noexcept
{
	return g_stray.load(std::memory_order_relaxed);
}

void
intr_storm_threshold_set(int threshold) noexcept
{
	g_storm_threshold.store(threshold < 0 ? 0 : threshold,
	    std::memory_order_relaxed);
}

int
intr_storm_threshold() noexcept
{
	return g_storm_threshold.load(std::memory_order_relaxed);
}

bool
intr_in_filter() noexcept
{
	return (curthread()->td_pflags & TDP_INFILTER) != 0;
}

} // namespace usmp

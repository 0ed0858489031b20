// Interrupt events (intr_event, FreeBSD's kern_intr.c and bus_setup_intr(9)):
// named interrupt sources with handlers, each a filter, an ithread handler,
// or both.
//
//     intr_event *ie;
//     intr_event_create(&ie, "nic0");
//     intr_handler *cookie;
//     intr_event_add_handler(ie, "nic0 rx", rx_filter, rx_ithread, sc,
//         PI_NET, INTR_MPSAFE, &cookie);
//     ...
//     intr_event_fire(ie);          // "the device raised its line"
//
// A filter runs in primary interrupt context: on the event's CPU, inside a
// spinlock section ("interrupts disabled" on that CPU), on whatever thread
// was interrupted (or the CPU's idle thread), with sleeping forbidden.  It
// may take spin mutexes, wake threads, schedule software interrupts and fire
// events; a sleep mutex, sx, msleep() or a condvar wait panics.  It returns
// FILTER_STRAY (not mine), FILTER_HANDLED (done), FILTER_SCHEDULE_THREAD
// (run the ithread handlers), or HANDLED | SCHEDULE_THREAD; anything else
// panics naming the handler.
//
// The event's ithread (one green thread per event, made with its first
// handler) runs the ithread handlers at the priority of the event's best
// handler, bound to the event's CPU if intr_event_bind() set one.  Handlers
// not marked INTR_MPSAFE run with Giant held.  Ithread handlers may take
// sleep mutexes but not sleep (msleep panics), as in the kernel.
//
// Where an interrupt is delivered (the protocol is at the top of
// interrupts/intr_event.cc):
//  - bound event (intr_event_bind(ie, cpu)): always on that CPU;
//  - unbound, fired from a green thread: on the firer's CPU, at once;
//  - unbound, fired from a foreign OS thread or a signal handler: on the
//    event's home CPU, chosen round robin at creation (intr_event_cpu()).
// A remote delivery queues the event on the target CPU and kicks it (an IPI
// or a wake of its park); the target runs the filters at its next interrupt
// point: its idle loop, its preemption signal handler, or the end of the
// critical section it was in.  Several fires before delivery coalesce into
// one pass over the filters (a level-triggered line).
#pragma once

#include <cstdint>

#include "runtime/thread.h"
#include "sched/priority.h"

namespace usmp {

// The interrupt constants, in one place as in sys/bus.h and sys/interrupt.h
// (one enum: flags of different kinds combine without enum-enum
// conversions).
enum : int {
	// Filter results (sys/bus.h).
	FILTER_STRAY = 0x01,
	FILTER_HANDLED = 0x02,
	FILTER_SCHEDULE_THREAD = 0x04,

	// Handler flags (sys/bus.h INTR_*).  The type flags choose a priority
	// for intr_priority(); INTR_EXCL asks for an event of its own;
	// INTR_MPSAFE runs the ithread handler without Giant.
	INTR_TYPE_TTY = 1,
	INTR_TYPE_BIO = 2,
	INTR_TYPE_NET = 4,
	INTR_TYPE_CAM = 8,
	INTR_TYPE_MISC = 16,
	INTR_TYPE_CLK = 32,
	INTR_TYPE_AV = 64,
	INTR_EXCL = 256,
	INTR_MPSAFE = 512,

	// Event flags (intr_event_create).
	IE_SOFT = 0x0001, // a software interrupt (swi(9)): ih_need per handler

	// Software interrupt priorities (sys/interrupt.h; swi_add(), whose
	// handler's ithread priority is PI_SWI(pri), interrupts/swi.h).
	SWI_TTY = 0,
	SWI_NET = 1,
	SWI_CAMBIO = 2,
	SWI_VM = 3,
	SWI_CLOCK = 4,
	SWI_TQ_FAST = 5,
	SWI_TQ = 6,
	SWI_TQ_GIANT = 6,

	// swi_sched() flags (interrupts/swi.h).
	SWI_DELAY = 0x2,   // mark it needed, but do not wake the ithread: it
			   // runs the next time the ithread runs for another
			   // reason
	SWI_FROMNMI = 0x4, // from a signal handler: async-signal-safe (through
			   // the event's CPU, see intr_event_fire_async())
};

using driver_filter_t = int (*)(void *arg);
using driver_intr_t = void (*)(void *arg);

struct intr_event;
struct intr_handler;

// The ithread priority of a handler type (intr_priority()): INTR_TYPE_CLK
// PI_REALTIME, AV PI_AV, NET PI_NET, BIO/CAM PI_DISK, TTY PI_TTY, MISC
// PI_DULL.  Panics "intr_priority: no interrupt type in flags".
int intr_priority(int flags) noexcept;

// Create an event named `name` (copied).  flags: IE_SOFT or 0.  Returns 0,
// or EINVAL (no name, bad flags), ENOMEM.  Context: may sleep; a machine
// need not run.
int intr_event_create(intr_event **iep, const char *name, int flags = 0) noexcept;

// Destroy an event with no handlers left: EBUSY if it still has some.
// Waits until the fires that began before it returned and the deliveries
// of the event in flight on any CPU are over.  A fire that begins once the
// destroy has begun panics ("intr_event_fire() of event ... during or after
// its intr_event_destroy()") while the event still exists; after the
// destroy returned the event is freed.  So stop every firer, filters that
// chain-fire it included (remove their handlers first), before destroying.
// Context: may sleep.
int intr_event_destroy(intr_event *ie) noexcept;

// Add a handler: a filter, an ithread handler (`handler`), or both (at least
// one).  `pri` is the ithread priority (PI_*, 0..PRI_MAX_ITHD; see
// intr_priority()); `flags` INTR_MPSAFE, INTR_EXCL, INTR_TYPE_*.  Handlers
// run in priority order.  The event's ithread is made with the first handler
// that has an ithread part, and its priority becomes that of the best
// handler.  Returns 0, or EINVAL (neither function, bad priority, an
// INTR_EXCL handler on a shared event or a second handler on an exclusive
// one), EAGAIN (no machine runs and an ithread is needed), ENOMEM.
// Context: may sleep (a green thread or a foreign OS thread).
int intr_event_add_handler(intr_event *ie, const char *name,
    driver_filter_t filter, driver_intr_t handler, void *arg, int pri,
    int flags, intr_handler **cookiep) noexcept;

// Remove a handler.  On return its functions are not running and will not
// run again (the ithread unlinks it, or the filter barrier drains).  The
// ithread's priority is recomputed.  Returns 0 or EINVAL (null cookie).
// Context: may sleep; not from the event's own handlers.
int intr_event_remove_handler(intr_handler *cookie) noexcept;

// Suspend a handler (intr_event_suspend_handler in kern_intr.c, for a
// device that is being suspended): from now on neither its filter nor its
// ithread part runs (a fire only its other handlers claim is stray), and on
// return neither is running.  A swi scheduled meanwhile (swi_sched) stays
// pending.  Resume makes it run again, and runs such a pending swi.
// Returns 0 or EINVAL (null cookie).  Context: suspend may sleep, not from
// the event's own ithread (panics); resume: any but filters.
int intr_event_suspend_handler(intr_handler *cookie,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;
int intr_event_resume_handler(intr_handler *cookie) noexcept;

// Bind the event to `cpu` (NOCPU: unbind): its filters are delivered there
// and its ithread is bound there (sched_bind) before it next runs handlers.
// Returns 0 or EINVAL (no such CPU).  Context: may sleep.
int intr_event_bind(intr_event *ie, int cpu) noexcept;

// Raise the event (the interrupt line).  Returns 0, or ENXIO when no machine
// runs.  Context: a green thread, a filter, a foreign OS thread; NOT a
// signal handler (use intr_event_fire_async).
int intr_event_fire(intr_event *ie) noexcept;

// Raise the event from a signal handler: only atomics and the kick of the
// target CPU (an IPI or a futex wake).  Always queues, never runs a filter
// inline.  On the signalled CPU itself the event is delivered at that CPU's
// next interrupt point (at the latest the next hardclock tick).
// Context: any, async-signal-safe.
int intr_event_fire_async(intr_event *ie) noexcept;

// Wake the ithread to run the ithread handlers (what FILTER_SCHEDULE_THREAD
// does).  Returns 0 or EINVAL if the event has no ithread.  Context: any but
// a signal handler.
int intr_event_schedule_thread(intr_event *ie) noexcept;

// Observers.
struct intr_event_stats {
	uint64_t ies_fires;     // intr_event_fire*() calls
	uint64_t ies_delivered; // passes over the filters
	uint64_t ies_handled;   // passes some filter handled
	uint64_t ies_scheduled; // passes that scheduled the ithread
	uint64_t ies_stray;     // passes nobody claimed
	uint64_t ies_ithread_runs; // ithread passes over its handlers
	uint64_t ies_storms;    // ithread passes throttled as a storm
};
void intr_event_get_stats(const intr_event *ie, intr_event_stats *st) noexcept;
const char *intr_event_name(const intr_event *ie) noexcept;
// The bound CPU, or NOCPU.
int intr_event_bound_cpu(const intr_event *ie) noexcept;
// Where an unbound event fired from outside a CPU is delivered.
int intr_event_cpu(const intr_event *ie) noexcept;
// The event's ithread (null before the first ithread handler).
thread *intr_event_ithread(const intr_event *ie) noexcept;
// Stray interrupts of every event since the process started.
uint64_t intr_stray_count() noexcept;

// hw.intr_storm_threshold: an ithread that runs its handlers more than
// `threshold` times back to back without going idle is throttled (one tick
// pause per pass) with "interrupt storm detected on \"<event>\"; throttling
// interrupt source", printed at most once a second.  0 (the default, as in
// current FreeBSD) turns detection off.  Context: any.
void intr_storm_threshold_set(int threshold) noexcept;
int intr_storm_threshold() noexcept;

// True while the calling thread runs an interrupt filter.  Context: any.
bool intr_in_filter() noexcept;

} // namespace usmp

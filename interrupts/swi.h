// Software interrupts (swi(9)): swi_add(), swi_sched(), swi_remove().
//
// A software interrupt is a handler on an IE_SOFT interrupt event: it has no
// filter, and runs on the event's ithread at PI_SWI(pri) when swi_sched()
// asks for it.  Several handlers may share one event (one ithread); each
// runs only when it was scheduled itself (ih_need).
//
//     void *cookie;
//     swi_add(nullptr, "net", netisr, nullptr, SWI_NET, INTR_MPSAFE, &cookie);
//     ...
//     swi_sched(cookie, 0);    // from anywhere but a signal handler
#pragma once

#include "interrupts/intr_event.h"
#include "sched/priority.h"

namespace usmp {

// Software interrupt priorities (sys/interrupt.h): the handler's ithread
// priority is PI_SWI(pri).
enum : int {
	SWI_TTY = 0,
	SWI_NET = 1,
	SWI_CAMBIO = 2,
	SWI_VM = 3,
	SWI_CLOCK = 4,
	SWI_TQ_FAST = 5,
	SWI_TQ = 6,
	SWI_TQ_GIANT = 6,
};
constexpr int
PI_SWI(int pri) noexcept
{
	return PI_SOFT + pri;
}

// swi_sched() flags.
enum : int {
	SWI_DELAY = 0x2,   // mark it needed, but do not wake the ithread: it runs
			   // the next time the ithread runs for another reason
	SWI_FROMNMI = 0x4, // from a signal handler: async-signal-safe (through
			   // the event's CPU, see intr_event_fire_async())
};

// Add a software interrupt handler.  If *eventp is a (soft) event, the
// handler joins it; otherwise a new event named "swi<pri>: <name>" is made
// and returned in *eventp (eventp may be null).  Returns 0, or EINVAL (no
// handler, *eventp not IE_SOFT, bad pri), EAGAIN (no machine), ENOMEM.
// Context: may sleep.
int swi_add(intr_event **eventp, const char *name, driver_intr_t handler,
    void *arg, int pri, int flags, void **cookiep) noexcept;

// Schedule the handler.  Context: any (a green thread, a filter, a foreign
// OS thread, the hardclock); a signal handler only with SWI_FROMNMI.
void swi_sched(void *cookie, int flags) noexcept;

// Remove the handler (the event stays: intr_event_destroy() it if you made
// it).  On return it is not running and will not run.  Returns 0 or EINVAL.
// Context: may sleep.
int swi_remove(void *cookie) noexcept;

} // namespace usmp

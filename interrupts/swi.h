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

// The SWI_* priorities and the swi_sched() flags (SWI_DELAY, SWI_FROMNMI)
// are with the other interrupt constants in interrupts/intr_event.h.
// A handler's ithread priority:
constexpr int
PI_SWI(int pri) noexcept
{
	return PI_SOFT + pri;
}

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

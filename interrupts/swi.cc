// Software interrupts: handlers on IE_SOFT events (interrupts/swi.h).
//
// swi_sched() sets the handler's ih_need (seq_cst) and then schedules the
// event's ithread, whose pass over its handlers runs exactly those whose
// ih_need it swaps from 1 to 0 (acquire; pairs with the store here, so the
// handler sees what the scheduler wrote before swi_sched).  SWI_DELAY stops
// after the store.  SWI_FROMNMI goes through the event's CPU instead (a
// signal handler may not take the sleep-queue chain lock): the delivery
// there schedules the ithread (intr_event.cc, IE_SOFT).
#include "interrupts/swi.h"

#include <cerrno>
#include <cstdio>

#include "interrupts/internal/intr_event.h"

namespace usmp {

int
swi_add(intr_event **eventp, const char *name, driver_intr_t handler,
    void *arg, int pri, int flags, void **cookiep) noexcept
{
	if (handler == nullptr || pri < 0 || PI_SWI(pri) > PRI_MAX_ITHD)
		return EINVAL;
	intr_event *ie = eventp != nullptr ? *eventp : nullptr;
	bool made = false;
	if (ie != nullptr) {
		if (!(ie->ie_flags & IE_SOFT))
			return EINVAL;
	} else {
		char ename[32];
		std::snprintf(ename, sizeof(ename), "swi%d: %s", pri,
		    name != nullptr ? name : "");
		int error = intr_event_create(&ie, ename, IE_SOFT);
		if (error != 0)
			return error;
		made = true;
	}
	intr_handler *ih;
	int error = intr_event_add_handler(ie, name, nullptr, handler, arg,
	    PI_SWI(pri), flags, &ih);
	if (error != 0) {
		if (made)
			intr_event_destroy(ie);
		return error;
	}
	if (eventp != nullptr)
		*eventp = ie;
	if (cookiep != nullptr)
		*cookiep = ih;
	return 0;
}

void
swi_sched(void *cookie, int flags) noexcept
{
	auto *ih = static_cast<intr_handler *>(cookie);
	intr_event *ie = ih->ih_event;
	ih->ih_need.store(1, std::memory_order_seq_cst);
	if (flags & SWI_DELAY)
		return;
	if (flags & SWI_FROMNMI)
		intr_event_fire_async(ie);
	else
		intr_event_schedule_thread(ie);
}

int
swi_remove(void *cookie) noexcept
{
	return intr_event_remove_handler(static_cast<intr_handler *>(cookie));
}

} // namespace usmp

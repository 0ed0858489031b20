// Private to interrupts/: the interrupt event and handler structures, for
// intr_event.cc and swi.cc (the locking protocol is at the top of
// intr_event.cc).
#pragma once

#include <atomic>
#include <cstdint>

#include "interrupts/intr_event.h"
#include "sync/mutex.h"

namespace usmp {

// Locking key: (c) constant after creation; (s) ie_spin; (m) ie_lock;
// (i) the ithread only; (a) atomic, ordering at the use.
struct intr_handler {
	std::atomic<intr_handler *> ih_next{nullptr}; // (s) written, (a) read
	driver_filter_t ih_filter = nullptr;  // (c)
	driver_intr_t ih_handler = nullptr;   // (c)
	void *ih_arg = nullptr;               // (c)
	int ih_pri = 0;                       // (c)
	int ih_flags = 0;                     // (c) INTR_*
	std::atomic<int> ih_need{0};          // (a) swi: run me (swi_sched)
	std::atomic<int> ih_dead{0};          // (a) being removed
	std::atomic<int> ih_unlinked{0};      // (a) the ithread unlinked it
	std::atomic<int> ih_suspended{0};     // (a) intr_event_suspend_handler
	intr_event *ih_event = nullptr;       // (c)
	char ih_name[32] = {};                // (c)
};

struct intr_event {
	char ie_name[32] = {};                       // (c)
	char ie_cname[64] = {};                      // (c) "hw.intr.<name>", or ""
	int ie_flags = 0;                            // (c) IE_*
	unsigned ie_home_seq = 0;                    // (c) picks the home CPU
	spin_mutex ie_spin{"intr event"};
	mutex ie_lock{"intr event config"};          // add/remove/bind/destroy
	std::atomic<intr_handler *> ie_handlers{nullptr}; // (s) written, (a) read
	int ie_nhandlers = 0;                        // (m)
	bool ie_excl = false;                        // (m) an INTR_EXCL handler
	thread *ie_ithread = nullptr;                // (m) written once, then (c)
	std::atomic<int> ie_it_need{0};              // (a) protocol step 4
	std::atomic<int> ie_it_dying{0};             // (a) destroy: exit
	std::atomic<int> ie_cpu{NOCPU};              // (a) bound CPU
	std::atomic<unsigned> ie_bind_gen{0};        // (a) bumped by bind
	// The handler the ithread runs now, and how many suspenders wait for
	// it to change (intr_event_suspend_handler's barrier).
	std::atomic<intr_handler *> ie_it_curr{nullptr}; // (a) written by (i)
	std::atomic<int> ie_it_waiters{0};           // (a)
	// Delivery (protocol steps 1 and 3).
	std::atomic<intr_event *> ie_qnext{nullptr};
	std::atomic<int> ie_queued{0};
	// Fires in progress plus queued or running deliveries: destroy
	// waits for 0 (intr_fire_begin() in intr_event.cc).
	std::atomic<int> ie_inflight{0};
	std::atomic<int> ie_dying{0};                // (a) destroy began
	// Storm detection (i).
	int ie_count = 0;
	uint64_t ie_warntm = 0;
	// (a) relaxed counters.
	std::atomic<uint64_t> ie_fires{0}, ie_delivered{0}, ie_handled{0},
	    ie_scheduled{0}, ie_stray{0}, ie_ithread_runs{0}, ie_storms{0};
};

} // namespace usmp

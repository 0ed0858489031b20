// Run queues (kern_switch.c runq_*): RQ_NQS FIFO queues of RQ_PPQ
// priorities each, and a bitmap of the non-empty ones, so that choosing the
// best thread is one find-first-set.
//
// Locking: a run queue belongs to one CPU's tdq and is protected by its
// tdq_lock (the thread lock of every thread queued on it).
#pragma once

#include <cstdint>

#include "runtime/thread.h"
#include "sched/priority.h"

namespace usmp {

struct runq {
	uint64_t rq_status = 0; // bit i: queue i is not empty
	struct head {
		thread *first = nullptr;
		thread *last = nullptr;
	} rq_queues[RQ_NQS];

	static int index(int pri) noexcept { return pri / RQ_PPQ; }

	// Add td at the tail of its queue, or at the head (a preempted thread
	// resumes first).
	void add(thread *td, bool at_head) noexcept
	{
		int i = index(td->td_priority);
		head &h = rq_queues[i];
		if (h.first == nullptr) {
			td->td_runq_next = td->td_runq_prev = nullptr;
			h.first = h.last = td;
			rq_status |= uint64_t(1) << i;
		} else if (at_head) {
			td->td_runq_prev = nullptr;
			td->td_runq_next = h.first;
			h.first->td_runq_prev = td;
			h.first = td;
		} else {
			td->td_runq_next = nullptr;
			td->td_runq_prev = h.last;
			h.last->td_runq_next = td;
			h.last = td;
		}
	}

	// Remove td, which is on queue index(td->td_priority).
	void remove(thread *td) noexcept
	{
		int i = index(td->td_priority);
		head &h = rq_queues[i];
		if (td->td_runq_prev != nullptr)
			td->td_runq_prev->td_runq_next = td->td_runq_next;
		else
			h.first = td->td_runq_next;
		if (td->td_runq_next != nullptr)
			td->td_runq_next->td_runq_prev = td->td_runq_prev;
		else
			h.last = td->td_runq_prev;
		td->td_runq_next = td->td_runq_prev = nullptr;
		if (h.first == nullptr)
			rq_status &= ~(uint64_t(1) << i);
	}

	// The best queued thread (not removed), or null.
	thread *choose() const noexcept
	{
		if (rq_status == 0)
			return nullptr;
		return rq_queues[__builtin_ctzll(rq_status)].first;
	}

	// Priority of the best queued thread, or PRI_MAX + 1 if empty.
	int best_pri() const noexcept
	{
		thread *td = choose();
		return td != nullptr ? td->td_priority : PRI_MAX + 1;
	}

	bool empty() const noexcept { return rq_status == 0; }
};

} // namespace usmp

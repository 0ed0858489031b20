// Taskqueues (taskqueue(9)): deferred work run by a pool of green threads or
// by a software interrupt.
//
//     usmp::task t;
//     task_init(&t, 0, [](void *ctx, int pending) { ... }, sc);
//     taskqueue_enqueue(taskqueue_thread, &t);   // from anywhere
//     ...
//     taskqueue_drain(taskqueue_thread, &t);     // before freeing t
//
// A task is never queued twice: enqueueing a pending task only counts
// (ta_pending, saturating at 65535), and the handler gets the count of the
// enqueues it coalesced.  A task may be enqueued again while it runs, and
// then runs again; one task never runs concurrently with itself.  Queues
// run tasks by priority (higher ta_priority first), FIFO within one.
//
// Ready-made queues (made at machine boot, gone at shutdown):
// taskqueue_thread (its own thread, PWAIT), taskqueue_swi (the "task queue"
// software interrupt, SWI_TQ), taskqueue_fast (a spin-mutex queue on the
// "fast taskq" software interrupt, SWI_TQ_FAST: enqueue from filters).
#pragma once

#include <chrono>
#include <cstdint>

#include "interrupts/callout.h"

namespace usmp {

struct taskqueue;

using task_fn_t = void (*)(void *context, int pending);

// Locking key: (q) the queue's lock of the queue it is on; (c) set by
// task_init.
struct task {
	task *ta_next = nullptr;      // (q)
	uint16_t ta_pending = 0;      // (q) enqueues since it last started
	uint8_t ta_priority = 0;      // (c)
	task_fn_t ta_func = nullptr;  // (c)
	void *ta_context = nullptr;   // (c)
};

// TASK_INIT(9).  Context: any.
inline void
task_init(task *t, int priority, task_fn_t fn, void *context) noexcept
{
	t->ta_next = nullptr;
	t->ta_pending = 0;
	t->ta_priority = static_cast<uint8_t>(priority);
	t->ta_func = fn;
	t->ta_context = context;
}

// A task enqueued after a delay (a callout on the queue's lock).
struct timeout_task {
	taskqueue *q = nullptr;
	task t;
	callout c;
	int f = 0; // DT_* (taskqueue.cc)
};

// Called (with the queue's lock NOT held) when a task is queued on an idle
// queue: wakes whatever runs the queue.
using taskqueue_enqueue_fn = void (*)(void *context);

// Make a queue with a sleep mutex (taskqueue_create) or a spin mutex
// (taskqueue_create_fast: enqueue is then allowed from filters and spin
// sections; timeout tasks are not).  `enqueue(context)` is called when work
// arrives; use taskqueue_thread_enqueue with context &queue_pointer to run
// it by taskqueue_start_threads().  Returns null without memory.
// Context: may sleep.
taskqueue *taskqueue_create(const char *name, taskqueue_enqueue_fn enqueue,
    void *context) noexcept;
taskqueue *taskqueue_create_fast(const char *name, taskqueue_enqueue_fn enqueue,
    void *context) noexcept;

// The enqueue function of thread pools: context is a taskqueue **.
void taskqueue_thread_enqueue(void *context) noexcept;

// Start `count` green threads ("<name>" or "<name>_<i>") at priority pri
// that run the queue.  Returns 0, EINVAL, EAGAIN (no machine) or an errno
// of thread creation.  Context: may sleep.
int taskqueue_start_threads(taskqueue **tqp, int count, int pri,
    const char *name) noexcept;

// Stop the threads (tasks still queued are left unrun, as in the kernel's
// taskqueue_free after draining is the caller's job) and free the queue.
// Context: may sleep; not from one of its own tasks.
void taskqueue_free(taskqueue *tq) noexcept;

// Queue t (or count it if pending).  Returns 0.  Context: any for a fast
// queue; for a sleep-mutex queue any but filters and spin sections.
int taskqueue_enqueue(taskqueue *tq, task *t) noexcept;

// Dequeue t if pending: *pendp (may be null) gets its pending count (0 if
// it was not queued).  Returns EBUSY if t is running (it is still dequeued
// if pending), else 0.  Context: as taskqueue_enqueue.
int taskqueue_cancel(taskqueue *tq, task *t, unsigned *pendp) noexcept;

// taskqueue_block(9): from now on no queued task starts (a running one
// finishes; taskqueue_block does not wait for it) and enqueue only queues,
// until taskqueue_unblock(), which has the queue run what waits.
// Context: as taskqueue_enqueue.
void taskqueue_block(taskqueue *tq) noexcept;
void taskqueue_unblock(taskqueue *tq) noexcept;
// Wait until no task is queued or running (tasks enqueued meanwhile run
// too).  On a blocked queue with tasks queued it waits for the unblock.
// Context: may sleep; not from one of the queue's own tasks.
void taskqueue_quiesce(taskqueue *tq) noexcept;

// Wait until t is neither pending nor running.  Context: may sleep.
void taskqueue_drain(taskqueue *tq, task *t) noexcept;
// Wait until every task queued or running at the call has finished (tasks
// queued meanwhile are not waited for).  Context: may sleep.
void taskqueue_drain_all(taskqueue *tq) noexcept;

// Run the queue's tasks on the calling thread until it is empty (the body
// of a software interrupt handler that serves a queue).  Context: may
// sleep, as the tasks may.
void taskqueue_run(taskqueue *tq) noexcept;

// Timeout tasks.  Context of all: may sleep, not for fast queues.
void timeout_task_init(taskqueue *tq, timeout_task *tt, int priority,
    task_fn_t fn, void *context) noexcept;
// Enqueue after d (0: now; negative: after -d, unless already armed, which
// is then not pushed back).  Returns the task's pending count before, plus
// 1 if it was armed; -1 while a drain is in progress.
int taskqueue_enqueue_timeout(taskqueue *tq, timeout_task *tt,
    std::chrono::nanoseconds d) noexcept;
int taskqueue_cancel_timeout(taskqueue *tq, timeout_task *tt,
    unsigned *pendp) noexcept;
void taskqueue_drain_timeout(taskqueue *tq, timeout_task *tt) noexcept;

// The ready-made queues (null while no machine runs).
extern taskqueue *taskqueue_thread;
extern taskqueue *taskqueue_swi;
extern taskqueue *taskqueue_fast;

} // namespace usmp

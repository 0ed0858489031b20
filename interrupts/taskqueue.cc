// Taskqueues: a priority-ordered queue of tasks under one lock, run by a
// pool of green threads or by a software interrupt handler.
//
// The protocol.
//  1. Every field of a queue and the ta_next/ta_pending of the tasks on it
//     are under the queue's lock: a sleep mutex, or a spin mutex for fast
//     queues (so that filters may enqueue).
//  2. Enqueue: a pending task only counts; otherwise it is inserted after
//     the last task of higher or equal priority, ta_pending = 1, and the
//     queue's enqueue function is called after the lock is dropped (it
//     takes sleep-queue chain locks or schedules a swi).
//  3. Run (taskqueue_run_locked): pop the head, take its pending count and
//     clear it (a new enqueue while it runs queues it again), record it in
//     this runner's busy record (tb_running, tb_seq from tq_seq), drop the
//     lock, call it, re-lock, clear tb_running and wake drainers of the
//     task.  Busy records are on the runners' stacks, linked in tq_active.
//  4. Sleeping with the queue's lock (drain, the pool's idle wait):
//     sleepq_lock(chan) while holding the queue lock, drop the queue lock,
//     sleepq_add, sleepq_wait, re-take the queue lock.  Wakers call
//     wakeup(chan) with the queue lock held or not; the chain lock makes
//     the check-then-sleep atomic.  The order is always queue lock, then
//     chain lock.
//  6. Blocking (taskqueue_block): enqueue still queues, but calls no enqueue
//     function, and runners stop popping tasks (a running task finishes);
//     unblock calls the enqueue function if tasks wait.  quiesce waits,
//     on &tq_active, until no task is queued or running (the runners wake
//     that channel after each task while someone quiesces).
//  5. drain_all appends a barrier task (priority 255, at the tail), waits
//     for it to have run, then for the runners whose tb_seq is older than
//     the call to finish.
#include "interrupts/taskqueue.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <new>

#include "interrupts/intr_event.h"
#include "interrupts/swi.h"
#include "runtime/internal/intr_hook.h"
#include "runtime/machine.h"
#include "runtime/panic.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sync/sleepqueue.h"

namespace usmp {

taskqueue *taskqueue_thread = nullptr;
taskqueue *taskqueue_swi = nullptr;
taskqueue *taskqueue_fast = nullptr;

namespace {

enum : int { DT_CALLOUT_ARMED = 0x1, DT_DRAIN_IN_PROGRESS = 0x2 };

struct taskqueue_busy {
	task *tb_running = nullptr;
	uint64_t tb_seq = 0;
	taskqueue_busy *tb_next = nullptr;
};

} // namespace

// Locking key: (q) tq_lock (the mutex or the spin mutex); (c) constant.
struct taskqueue {
	char tq_name[32] = {};                 // (c)
	bool tq_spin = false;                  // (c)
	mutex tq_mtx{"taskqueue", nullptr, LOCK_DUPOK};
	spin_mutex tq_smtx{"fast_taskqueue", nullptr, LOCK_DUPOK};
	task *tq_head = nullptr;               // (q)
	taskqueue_busy *tq_active = nullptr;   // (q)
	uint64_t tq_seq = 0;                   // (q)
	bool tq_running = true;                // (q) threads keep running
	bool tq_blocked = false;               // (q) taskqueue_block()
	int tq_quiescers = 0;                  // (q) in taskqueue_quiesce()
	int tq_callouts = 0;                   // (q) armed timeout tasks
	taskqueue_enqueue_fn tq_enqueue = nullptr; // (c)
	void *tq_context = nullptr;            // (c)
	thread **tq_threads = nullptr;         // (c) after start_threads
	int tq_tcount = 0;                     // (c)
	// A queue served by a swi (the ready-made ones).
	intr_event *tq_ie = nullptr;           // (c)
	void *tq_cookie = nullptr;             // (c)

	void lock() noexcept
	{
		if (tq_spin)
			tq_smtx.lock(__FILE__, __LINE__);
		else
			tq_mtx.lock(__FILE__, __LINE__);
	}
	void unlock() noexcept
	{
		if (tq_spin)
			tq_smtx.unlock(__FILE__, __LINE__);
		else
			tq_mtx.unlock(__FILE__, __LINE__);
	}
};

namespace {

// Step 4.  Requires the queue lock; returns with it.
void
tq_sleep(taskqueue *tq, const void *chan, const char *wmesg) noexcept
{
	sleepq_lock(chan);
	tq->unlock();
	sleepq_add(chan, nullptr, wmesg, SLEEPQ_SLEEP, 0);
	sleepq_wait(chan, 0);
	tq->lock();
}

// Step 2.  Requires the queue lock; returns with it released.
int
enqueue_locked(taskqueue *tq, task *t) noexcept
{
	if (t->ta_pending != 0) {
		if (t->ta_pending < USHRT_MAX)
			t->ta_pending++;
		tq->unlock();
		return 0;
	}
	task **pp = &tq->tq_head;
	while (*pp != nullptr && (*pp)->ta_priority >= t->ta_priority)
		pp = &(*pp)->ta_next;
	t->ta_next = *pp;
	*pp = t;
	t->ta_pending = 1;
	// A blocked queue keeps the task; taskqueue_unblock() calls the
	// enqueue function.
	bool kick = !tq->tq_blocked;
	tq->unlock();
	if (kick && tq->tq_enqueue != nullptr)
		tq->tq_enqueue(tq->tq_context);
	return 0;
}

bool
task_is_running(taskqueue *tq, task *t) noexcept
{
	for (taskqueue_busy *tb = tq->tq_active; tb != nullptr; tb = tb->tb_next)
		if (tb->tb_running == t)
			return true;
	return false;
}

// Step 3.  Requires the queue lock; returns with it.
void
run_locked(taskqueue *tq) noexcept
{
	taskqueue_busy tb;
	tb.tb_seq = ++tq->tq_seq;
	tb.tb_next = tq->tq_active;
	tq->tq_active = &tb;
	while (tq->tq_head != nullptr && !tq->tq_blocked) {
		task *t = tq->tq_head;
		tq->tq_head = t->ta_next;
		t->ta_next = nullptr;
		int pending = t->ta_pending;
		t->ta_pending = 0;
		tb.tb_running = t;
		tb.tb_seq = ++tq->tq_seq;
		tq->unlock();
		t->ta_func(t->ta_context, pending);
		tq->lock();
		tb.tb_running = nullptr;
		wakeup(t);
		if (tq->tq_quiescers != 0)
			wakeup(&tq->tq_active);
	}
	taskqueue_busy **pp = &tq->tq_active;
	while (*pp != &tb)
		pp = &(*pp)->tb_next;
	*pp = tb.tb_next;
	// drain_all waits for older runners to leave.
	wakeup(&tq->tq_active);
}

void
thread_loop(taskqueue *tq) noexcept
{
	tq->lock();
	while (tq->tq_running) {
		run_locked(tq);
		if (!tq->tq_running)
			break;
		tq_sleep(tq, tq, "-");
	}
	tq->unlock();
}

taskqueue *
create(const char *name, taskqueue_enqueue_fn enqueue, void *context,
    bool spin) noexcept
{
	auto *tq = new (std::nothrow) taskqueue;
	if (tq == nullptr)
		return nullptr;
	std::snprintf(tq->tq_name, sizeof(tq->tq_name), "%s",
	    name != nullptr ? name : "taskqueue");
	tq->tq_spin = spin;
	tq->tq_enqueue = enqueue;
	tq->tq_context = context;
	return tq;
}

void
timeout_func(void *arg) noexcept
{
	// The callout runs with the queue's mutex held (callout_init_mtx,
	// CALLOUT_RETURNUNLOCKED): enqueue_locked releases it.
	auto *tt = static_cast<timeout_task *>(arg);
	taskqueue *tq = tt->q;
	tt->f &= ~DT_CALLOUT_ARMED;
	tq->tq_callouts--;
	enqueue_locked(tq, &tt->t);
}

// The swi handler of a swi-served queue.
void
swi_run(void *arg) noexcept
{
	taskqueue_run(*static_cast<taskqueue **>(arg));
}

void
swi_enqueue(void *context) noexcept
{
	taskqueue *tq = *static_cast<taskqueue **>(context);
	swi_sched(tq->tq_cookie, 0);
}

taskqueue *
make_swi_queue(taskqueue **slot, const char *name, bool spin, int pri) noexcept
{
	taskqueue *tq = create(name, swi_enqueue, slot, spin);
	if (tq == nullptr || swi_add(&tq->tq_ie, name, swi_run, slot, pri,
				 INTR_MPSAFE, &tq->tq_cookie) != 0)
		panic("taskqueue boot: cannot make \"%s\"", name);
	return tq;
}

void
taskqueue_boot() noexcept
{
	taskqueue_swi = make_swi_queue(&taskqueue_swi, "task queue", false, SWI_TQ);
	taskqueue_fast = make_swi_queue(&taskqueue_fast, "fast taskq", true,
	    SWI_TQ_FAST);
	taskqueue *tq = taskqueue_create("thread taskq", taskqueue_thread_enqueue,
	    &taskqueue_thread);
	taskqueue_thread = tq;
	if (tq == nullptr ||
	    taskqueue_start_threads(&taskqueue_thread, 1, PWAIT, "thread taskq") != 0)
		panic("taskqueue boot: cannot make \"thread taskq\"");
}

void
free_swi_queue(taskqueue **slot) noexcept
{
	taskqueue *tq = *slot;
	if (tq == nullptr)
		return;
	swi_remove(tq->tq_cookie);
	intr_event_destroy(tq->tq_ie);
	*slot = nullptr;
	delete tq;
}

void
taskqueue_shutdown() noexcept
{
	if (taskqueue_thread != nullptr) {
		taskqueue_free(taskqueue_thread);
		taskqueue_thread = nullptr;
	}
	free_swi_queue(&taskqueue_swi);
	free_swi_queue(&taskqueue_fast);
}

sysinit g_tq_sysinit = [] {
	sysinit si;
	si.si_boot = taskqueue_boot;
	si.si_shutdown = taskqueue_shutdown;
	si.si_order = 20;
	return si;
}();

struct tq_registrar {
	tq_registrar() noexcept { sysinit_register(&g_tq_sysinit); }
} g_tq_registrar;

} // namespace

taskqueue *
taskqueue_create(const char *name, taskqueue_enqueue_fn enqueue,
    void *context) noexcept
{
	return create(name, enqueue, context, false);
}

taskqueue *
taskqueue_create_fast(const char *name, taskqueue_enqueue_fn enqueue,
    void *context) noexcept
{
	return create(name, enqueue, context, true);
}

void
taskqueue_thread_enqueue(void *context) noexcept
{
	taskqueue *tq = *static_cast<taskqueue **>(context);
	// The most recently idle thread: its cache is warm (wakeup_any).
	wakeup_any(tq);
}

int
taskqueue_start_threads(taskqueue **tqp, int count, int pri,
    const char *name) noexcept
{
	if (tqp == nullptr || *tqp == nullptr || count <= 0 ||
	    (*tqp)->tq_threads != nullptr)
		return EINVAL;
	if (!machine_running())
		return EAGAIN;
	taskqueue *tq = *tqp;
	tq->tq_threads = new (std::nothrow) thread *[count];
	if (tq->tq_threads == nullptr)
		return ENOMEM;
	for (int i = 0; i < count; i++) {
		char tname[32];
		if (count == 1)
			std::snprintf(tname, sizeof(tname), "%s", name);
		else
			std::snprintf(tname, sizeof(tname), "%s_%d", name, i);
		thread_attr attr;
		attr.name = tname;
		attr.priority = pri;
		int error = thread_create_fn(&tq->tq_threads[i], attr,
		    [](void *p) { thread_loop(static_cast<taskqueue *>(p)); }, tq);
		if (error != 0) {
			// Keep what started; they stop at taskqueue_free.
			tq->tq_tcount = i;
			return error;
		}
		tq->tq_tcount = i + 1;
	}
	return 0;
}

void
taskqueue_free(taskqueue *tq) noexcept
{
	tq->lock();
	tq->tq_running = false;
	tq->unlock();
	wakeup(tq);
	for (int i = 0; i < tq->tq_tcount; i++)
		thread_join(tq->tq_threads[i]);
	delete[] tq->tq_threads;
	delete tq;
}

int
taskqueue_enqueue(taskqueue *tq, task *t) noexcept
{
	tq->lock();
	return enqueue_locked(tq, t);
}

int
taskqueue_cancel(taskqueue *tq, task *t, unsigned *pendp) noexcept
{
	tq->lock();
	unsigned pending = t->ta_pending;
	if (pending != 0) {
		task **pp = &tq->tq_head;
		while (*pp != nullptr && *pp != t)
			pp = &(*pp)->ta_next;
		if (*pp == t)
			*pp = t->ta_next;
		t->ta_next = nullptr;
		t->ta_pending = 0;
	}
	int error = task_is_running(tq, t) ? EBUSY : 0;
	tq->unlock();
	if (pendp != nullptr)
		*pendp = pending;
	return error;
}

void
taskqueue_drain(taskqueue *tq, task *t) noexcept
{
	tq->lock();
	while (t->ta_pending != 0 || task_is_running(tq, t))
		tq_sleep(tq, t, "tq_drain");
	tq->unlock();
}

void
taskqueue_drain_all(taskqueue *tq) noexcept
{
	struct barrier {
		task t;
		bool done = false;
	} b;
	task_init(&b.t, UCHAR_MAX, [](void *ctx, int) {
		static_cast<barrier *>(ctx)->done = true;
	}, &b);
	tq->lock();
	uint64_t seq = tq->tq_seq;
	if (tq->tq_head != nullptr) {
		// Step 5: behind everything queued now.
		task **pp = &tq->tq_head;
		while (*pp != nullptr)
			pp = &(*pp)->ta_next;
		*pp = &b.t;
		b.t.ta_pending = 1;
		// b.done is written by the runner with the lock dropped; the
		// runner's wakeup(&b.t) comes after it re-takes the lock.
		while (b.t.ta_pending != 0 || task_is_running(tq, &b.t))
			tq_sleep(tq, &b.t, "tq_adrain");
	}
	for (;;) {
		bool older = false;
		for (taskqueue_busy *tb = tq->tq_active; tb != nullptr; tb = tb->tb_next)
			if (tb->tb_running != nullptr && tb->tb_seq <= seq)
				older = true;
		if (!older)
			break;
		tq_sleep(tq, &tq->tq_active, "tq_adrain");
	}
	tq->unlock();
}

void
taskqueue_block(taskqueue *tq) noexcept
{
	tq->lock();
	tq->tq_blocked = true;
	tq->unlock();
}

void
taskqueue_unblock(taskqueue *tq) noexcept
{
	tq->lock();
	tq->tq_blocked = false;
	bool kick = tq->tq_head != nullptr;
	tq->unlock();
	if (kick && tq->tq_enqueue != nullptr)
		tq->tq_enqueue(tq->tq_context);
}

void
taskqueue_quiesce(taskqueue *tq) noexcept
{
	tq->lock();
	tq->tq_quiescers++;
	for (;;) {
		bool busy = tq->tq_head != nullptr;
		for (taskqueue_busy *tb = tq->tq_active; tb != nullptr && !busy;
		     tb = tb->tb_next)
			busy = tb->tb_running != nullptr;
		if (!busy)
			break;
		tq_sleep(tq, &tq->tq_active, "tq_qdrain");
	}
	tq->tq_quiescers--;
	tq->unlock();
}

void
taskqueue_run(taskqueue *tq) noexcept
{
	tq->lock();
	run_locked(tq);
	tq->unlock();
}

void
timeout_task_init(taskqueue *tq, timeout_task *tt, int priority, task_fn_t fn,
    void *context) noexcept
{
	if (tq->tq_spin)
		panic("timeout_task_init: fast taskqueue \"%s\" cannot have timeout "
		    "tasks", tq->tq_name);
	tt->q = tq;
	task_init(&tt->t, priority, fn, context);
	callout_init_mtx(&tt->c, tq->tq_mtx, CALLOUT_RETURNUNLOCKED);
	tt->f = 0;
}

int
taskqueue_enqueue_timeout(taskqueue *tq, timeout_task *tt,
    std::chrono::nanoseconds d) noexcept
{
	tq->lock();
	if (tt->q != tq)
		panic("taskqueue_enqueue_timeout: timeout task of queue \"%s\" "
		    "enqueued on \"%s\"", tt->q != nullptr ? tt->q->tq_name : "?",
		    tq->tq_name);
	int res = tt->t.ta_pending;
	if (tt->f & DT_DRAIN_IN_PROGRESS) {
		tq->unlock();
		return -1;
	}
	if (d == std::chrono::nanoseconds::zero()) {
		enqueue_locked(tq, &tt->t);
		return res;
	}
	if (tt->f & DT_CALLOUT_ARMED) {
		res++;
	} else {
		tq->tq_callouts++;
		tt->f |= DT_CALLOUT_ARMED;
	}
	if (d < std::chrono::nanoseconds::zero()) {
		d = -d;
		if (callout_pending(&tt->c)) {
			// Already armed: not pushed back.
			tq->unlock();
			return res;
		}
	}
	callout_reset(&tt->c, d, timeout_func, tt);
	tq->unlock();
	return res;
}

int
taskqueue_cancel_timeout(taskqueue *tq, timeout_task *tt, unsigned *pendp) noexcept
{
	tq->lock();
	int stopped = callout_stop(&tt->c) > 0 ? 1 : 0;
	if (stopped && (tt->f & DT_CALLOUT_ARMED)) {
		tt->f &= ~DT_CALLOUT_ARMED;
		tq->tq_callouts--;
	}
	unsigned pending = tt->t.ta_pending;
	if (pending != 0) {
		task **pp = &tq->tq_head;
		while (*pp != nullptr && *pp != &tt->t)
			pp = &(*pp)->ta_next;
		if (*pp == &tt->t)
			*pp = tt->t.ta_next;
		tt->t.ta_next = nullptr;
		tt->t.ta_pending = 0;
	}
	int error = task_is_running(tq, &tt->t) ? EBUSY : 0;
	tq->unlock();
	if (pendp != nullptr)
		*pendp = pending + stopped;
	return error;
}

void
taskqueue_drain_timeout(taskqueue *tq, timeout_task *tt) noexcept
{
	tq->lock();
	tt->f |= DT_DRAIN_IN_PROGRESS;
	tq->unlock();
	callout_drain(&tt->c);
	taskqueue_drain(tq, &tt->t);
	tq->lock();
	tt->f &= ~DT_DRAIN_IN_PROGRESS;
	tq->unlock();
}

} // namespace usmp

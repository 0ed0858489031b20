// Sleep queues (subr_sleepqueue.c): the wait queues of sleep(9),
// condvar(9), sx(9) and sema(9).
//
// Vocabulary.  A *wait channel* (wchan) is any address threads wait on.  A
// *sleep queue* holds the threads sleeping on one channel, in two FIFO
// sub-queues (sx puts exclusive waiters on 0, shared ones on 1), with a type
// (SLEEPQ_SLEEP, _CONDVAR, _PAUSE, _SX) that every sleeper and waker of the
// channel must agree on.  Queues hang off 256 hash *chains*, each with a
// spin lock (the *chain lock*) and a list of the queues in use.  A thread's
// *thread lock* is its container lock (td_lock, runtime/switch.cc): its
// run-queue lock while it runs, the chain lock while it sleeps here.
//
// The problem.  A thread must be able to give up its interlock (the mutex
// protecting the condition it waits for) and go to sleep with no window in
// which a wakeup can be missed, must never allocate while doing so, and a
// timeout, an interrupt and a wakeup may all race to end the same sleep:
// exactly one of them must win, and the sleeper must learn which.
//
// Approaches rejected.  A queue embedded in every waitable object (a
// condvar, an sx): it costs every lock a queue head and makes msleep() on
// an arbitrary address impossible.  One global queue lock: serialises
// every sleep and wakeup of the machine.  A queue per thread donated to the
// channel, as FreeBSD does (td_sleepqueue): here a green thread lives on its
// own stack and is reaped without any hook into sync/, so a queue a thread
// holds when it dies, perhaps one still serving other sleepers, could not
// be given back.  Instead queues are type-stable memory that never goes
// back to malloc: a sleeper brings a queue to a channel only if the
// channel has none, taking it from its chain's free list (or, when that is
// empty, from a global pool, which grows by a batch only when more threads
// sleep at once than ever before); the last thread to leave a channel puts
// the queue on the chain's free list.  So the chain lock, which the sleeper
// holds anyway, covers the supply too, and steady-state sleeping allocates
// nothing and takes no other lock.
//
// Locking.  The chain lock protects the chain's lists and every field of
// its queues.  A thread's sleep fields (td_sleepqueue, td_wchan, td_wmesg,
// td_sqqueue, td_sqflags, the td_slpq links; key (q) in runtime/thread.h)
// are written with both the chain lock and the thread's thread lock held;
// while the thread sleeps these are the same lock.  So the waker, which
// holds the chain lock, may rely on them; the timeout and thread_interrupt(),
// which find a thread without knowing its channel, take its thread lock.
// One exception: sleepq_add() fills in the fields of curthread, which is
// running, under the chain lock alone.  Nobody else can be at them then:
// a waker needs the chain lock; a timeout is armed only after the add (and
// the last sleep's was settled in step 7); thread_interrupt() looks at the
// fields only once it has seen the thread asleep, which step 5 marks under
// the thread lock after the add.  This saves a thread-lock round trip on
// every sleep.
// Lock order: chain lock, then thread lock, then the run-queue lock that
// sched_wakeup() takes.
//
// The protocol, for a green thread (FreeBSD's, section 3.2):
//  1. sleepq_lock(wchan): spinlock section, chain lock.
//  2. The caller releases its interlock (for a sleepable interlock, sx,
//     after step 3 and with the chain lock dropped around it; then a waker
//     may already have removed us, which step 5 notices).  Any waker must
//     take the chain lock first, so it cannot run between steps 1 and 5.
//  3. sleepq_add: the thread is queued and marked SQF_ONQ, under the chain
//     and thread locks.  From here a wakeup ends the sleep.
//  4. sleepq_set_timeout (optional): td_sqtimo_busy := 1, then the timeout
//     is armed on the hardclock.
//  5. sleepq_switch: thread lock.  If SQF_ONQ is clear, a waker already
//     removed us: return.  If the timeout already fired (SQF_TIMEOUT) or an
//     interruptible sleep finds an interrupt pending (td_sqintr, read under
//     the thread lock, see thread_interrupt), leave the queue and return.
//     Otherwise TDI_SLEEPING and sched_sleep_switch(td, chain lock): it
//     points our td_lock at blocked_lock, releases the chain lock, switches,
//     and makes the chain lock our thread lock once our context is saved;
//     a waker that takes the chain lock meanwhile waits
//     (thread_lock_block_wait) until then.
//  6. A waker (signal, broadcast, the timeout, an interrupt) holding the
//     chain lock and the sleeper's thread lock unlinks it, clears SQF_ONQ,
//     records why (SQF_TIMEOUT, SQF_ABORT), and, if it was asleep, clears
//     TDI_SLEEPING and calls sched_wakeup().  The first to take the lock
//     wins; the others find SQF_ONQ clear and do nothing.  Everything the
//     waker wrote is visible to the sleeper after its switch back (the
//     run-queue lock's release/acquire).
//  7. A timed sleeper, awake, disarms its timeout.  If that fails, the
//     timeout function is running or about to: the sleeper waits for it to
//     clear td_sqtimo_busy (release, its very last access to the thread;
//     acquire here), so no stale timeout can end a later sleep or touch a
//     thread that has exited.
//
// A foreign OS thread (no CPU, no thread lock) sleeps on the futex word
// td_sqwait instead: 1 while queued, bit 2 set by thread_interrupt(), 0
// stored by the waker (release) under the chain lock.  Its timeout is the
// futex's; on a timeout or an interrupt it takes the chain lock and leaves
// the queue itself if it is still on it (otherwise a waker won).
#include "sync/sleepqueue.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <thread>

#include "runtime/critical.h"
#include "runtime/internal/curthread.h"
#include "runtime/internal/seam.h"
#include "runtime/internal/sim.h"
#include "runtime/machine.h"
#include "runtime/panic.h"
#include "runtime/thread.h"

namespace usmp {

uint64_t clock_ns() noexcept; // runtime/intr.cc

// td_sqflags.
enum : uint8_t {
	SQF_ONQ = 0x01,     // on a sleep queue (FreeBSD's TD_ON_SLEEPQ)
	SQF_SINTR = 0x02,   // the sleep is interruptible (TDF_SINTR)
	SQF_TIMEOUT = 0x04, // ended (or to end) by its timeout
	SQF_ABORT = 0x08,   // ended (or to end) by thread_interrupt()
	SQF_TIMED = 0x10,   // a timeout is armed (green thread) or set (foreign)
};

// The sleep queue of one channel.  Locking key: (c) the chain lock.
struct sleepqueue {
	thread *sq_head[NR_SLEEPQS];      // (c) FIFO of sleepers
	thread *sq_tail[NR_SLEEPQS];      // (c)
	int sq_blockedcnt[NR_SLEEPQS];    // (c)
	sleepqueue *sq_next;              // (c) chain's in-use or free list
	const void *sq_wchan;             // (c) null when free
	int sq_type;                      // (c) SLEEPQ_TYPE of the sleepers
	lock_object *sq_lock;             // (c) interlock (USMP_INVARIANTS)
	uint64_t sq_timeo_ns;             // (c) foreign sleepers: deadline
};

namespace {

constexpr int SC_TABLESIZE = 256;

struct alignas(64) sleepqueue_chain {
	spinlock sc_lock;
	sleepqueue *sc_queues = nullptr; // (c) in use
	sleepqueue *sc_free = nullptr;   // (c) free
};

sleepqueue_chain g_chains[SC_TABLESIZE];

// The global pool: (p) g_pool_lock, a leaf taken under a chain lock.
spinlock g_pool_lock;
sleepqueue *g_pool = nullptr; // (p)

inline sleepqueue_chain *
sc_lookup(const void *wchan) noexcept
{
	uintptr_t wc = reinterpret_cast<uintptr_t>(wchan);
	// FreeBSD's SC_HASH, after dropping the alignment bits.
	wc >>= 3;
	return &g_chains[((wc >> 8) ^ wc) & (SC_TABLESIZE - 1)];
}

sleepqueue *
sq_lookup(sleepqueue_chain *sc, const void *wchan) noexcept
{
	for (sleepqueue *sq = sc->sc_queues; sq != nullptr; sq = sq->sq_next)
		if (sq->sq_wchan == wchan)
			return sq;
	return nullptr;
}

// A free queue for a channel that has none.  Requires the chain lock.
sleepqueue *
sq_get(sleepqueue_chain *sc) noexcept
{
	sleepqueue *sq = sc->sc_free;
	if (__builtin_expect(sq != nullptr, 1)) {
		sc->sc_free = sq->sq_next;
		return sq;
	}
	g_pool_lock.lock();
	sq = g_pool;
	if (sq == nullptr) {
		// More sleepers at once than ever before: grow by a batch.
		// (The only allocation of this file; never in steady state.)
		constexpr int BATCH = 64;
		sleepqueue *b = static_cast<sleepqueue *>(
		    std::calloc(BATCH, sizeof(sleepqueue)));
		if (b == nullptr)
			panic("sleepq_add: no memory for sleep queues");
		for (int i = 1; i < BATCH - 1; i++)
			b[i].sq_next = &b[i + 1];
		g_pool = BATCH > 1 ? &b[1] : nullptr;
		sq = &b[0];
	} else {
		g_pool = sq->sq_next;
	}
	g_pool_lock.unlock();
	return sq;
}

inline spinlock *
td_lockptr(thread *td) noexcept
{
	return td->td_lock.load(std::memory_order_relaxed);
}

inline bool
td_asleep(const thread *td) noexcept
{
	return (__atomic_load_n(&td->td_inhibitors, __ATOMIC_RELAXED) &
	    TDI_SLEEPING) != 0;
}

long
futex(std::atomic<uint32_t> *w, int op, uint32_t val,
    const struct timespec *ts) noexcept
{
	return syscall(SYS_futex, reinterpret_cast<uint32_t *>(w), op, val, ts,
	    nullptr, FUTEX_BITSET_MATCH_ANY);
}

// Unlink td from sq; the last one out frees the queue.  Requires the chain
// lock and td's thread lock (green).
void
sq_unlink(sleepqueue_chain *sc, sleepqueue *sq, thread *td) noexcept
{
	int q = td->td_sqqueue;
	if (td->td_slpq_prev != nullptr)
		td->td_slpq_prev->td_slpq_next = td->td_slpq_next;
	else
		sq->sq_head[q] = td->td_slpq_next;
	if (td->td_slpq_next != nullptr)
		td->td_slpq_next->td_slpq_prev = td->td_slpq_prev;
	else
		sq->sq_tail[q] = td->td_slpq_prev;
	td->td_slpq_next = td->td_slpq_prev = nullptr;
	// The count just stored is tested from the register: a load of both
	// counts as one word right after the 4-byte store would miss store
	// forwarding (a stall on every wakeup).
	int left = --sq->sq_blockedcnt[q];
	td->td_sleepqueue = nullptr;
	td->td_wchan = nullptr;
	td->td_wmesg = nullptr;
	td->td_sqflags &= static_cast<uint8_t>(~(SQF_ONQ | SQF_SINTR));
	if (left == 0 && sq->sq_blockedcnt[q ^ 1] == 0) {
		sleepqueue **pp = &sc->sc_queues;
		while (*pp != sq)
			pp = &(*pp)->sq_next;
		*pp = sq->sq_next;
		sq->sq_wchan = nullptr;
		sq->sq_lock = nullptr;
		sq->sq_next = sc->sc_free;
		sc->sc_free = sq;
	}
}

// Step 6: end td's sleep for `why` (0, SQF_TIMEOUT, SQF_ABORT).  Requires
// the chain lock and, for a green td, its thread lock (taken here if td is
// not asleep, when it is a different lock).  `tdlocked`: the caller already
// holds td's thread lock.
void
sq_resume(sleepqueue_chain *sc, sleepqueue *sq, thread *td, uint8_t why,
    bool tdlocked) noexcept
{
	if (td->td_flags & TDF_FOREIGN) {
		sq_unlink(sc, sq, td);
		td->td_sqflags |= why;
		td->td_sqwait.store(0, std::memory_order_release);
		futex(&td->td_sqwait, FUTEX_WAKE_PRIVATE, 1, nullptr);
		return;
	}
	if (td_asleep(td)) {
		// Its thread lock is our chain lock, or blocked_lock until its
		// switch has saved it.
		if (__builtin_expect(td->td_lock.load(std::memory_order_acquire) ==
			&blocked_lock, 0))
			thread_lock_block_wait(td);
		sq_unlink(sc, sq, td);
		td->td_sqflags |= why;
		td->td_inhibitors &= static_cast<uint8_t>(~TDI_SLEEPING);
		if (td->td_inhibitors == 0)
			sched_wakeup(td);
		return;
	}
	// On the queue but not asleep yet (between its steps 3 and 5 with the
	// chain lock dropped for a sleepable interlock): step 5 will see it.
	if (!tdlocked)
		thread_lock(td);
	sq_unlink(sc, sq, td);
	td->td_sqflags |= why;
	if (!tdlocked)
		thread_unlock(td);
}

[[noreturn]] void
sq_type_panic(const char *call, const void *wchan, int have, int want)
{
	panic("%s: mismatch between sleep/wakeup and cv_*: wait channel %p has "
	    "sleepers of type %d, woken as type %d", call, wchan, have, want);
}

// The timeout of a green sleeper, on the hardclock thread.
void
sq_timeout(void *arg) noexcept
{
	thread *td = static_cast<thread *>(arg);
	thread_lock(td);
	spinlock *held = td_lockptr(td);
	if (td->td_sqflags & SQF_ONQ) {
		if (td_asleep(td)) {
			// held is the chain lock.
			sleepqueue_chain *sc = sc_lookup(td->td_wchan);
			sq_resume(sc, td->td_sleepqueue, td, SQF_TIMEOUT, true);
		} else {
			// Step 5 will see it.
			td->td_sqflags |= SQF_TIMEOUT;
		}
	}
	held->unlock();
	spinlock_exit();
	// Our last access to td (step 7).
	td->td_sqtimo_busy.store(0, std::memory_order_release);
}

// Step 7.
void
sq_timeout_settle(thread *td) noexcept
{
	if (timeout_disarm(&td->td_sqtimo)) {
		td->td_sqtimo_busy.store(0, std::memory_order_relaxed);
		return;
	}
	for (int i = 0; td->td_sqtimo_busy.load(std::memory_order_acquire); i++) {
		if (i < 1000)
			__builtin_ia32_pause();
		else
			thread_yield();
	}
}

// Step 5 for a green thread.  Requires the chain lock (spinlock depth 1);
// returns with nothing held.
void
sq_switch(sleepqueue_chain *sc, thread *td) noexcept
{
	// thread_lock(td) for curthread: a running thread's td_lock is its
	// CPU's run-queue lock, and only its own switch changes that, so it
	// is taken directly, without thread_lock()'s call and re-check loop.
	spinlock_enter_td(td);
	td_lockptr(td)->lock();
	if (!(td->td_sqflags & SQF_ONQ)) {
		// Woken already.
		thread_unlock(td);
		sc->sc_lock.unlock();
		spinlock_exit();
		return;
	}
	uint8_t why = 0;
	if (td->td_sqflags & SQF_TIMEOUT)
		why = SQF_TIMEOUT;
	else if ((td->td_sqflags & SQF_SINTR) &&
	    td->td_sqintr.load(std::memory_order_seq_cst) != 0)
		why = SQF_ABORT;
	if (why != 0) {
		sq_unlink(sc, td->td_sleepqueue, td);
		td->td_sqflags |= why;
		thread_unlock(td);
		sc->sc_lock.unlock();
		spinlock_exit();
		return;
	}
	td->td_state = TDS_INHIBITED;
	td->td_inhibitors |= TDI_SLEEPING;
	// The chain lock becomes our thread lock once the switch has saved us.
	sched_sleep_switch(td, &sc->sc_lock);
}

// The foreign-thread version: block the OS thread on td_sqwait.  Requires
// the chain lock; returns with nothing held.
void
sq_foreign_wait(sleepqueue_chain *sc, thread *td) noexcept
{
	bool sintr = (td->td_sqflags & SQF_SINTR) != 0;
	bool timed = (td->td_sqflags & SQF_TIMED) != 0;
	uint64_t deadline = td->td_sqtimo.to_deadline;
	if (sintr && td->td_sqintr.load(std::memory_order_seq_cst) != 0) {
		sq_unlink(sc, td->td_sleepqueue, td);
		td->td_sqflags |= SQF_ABORT;
		sc->sc_lock.unlock();
		spinlock_exit();
		return;
	}
	sc->sc_lock.unlock();
	spinlock_exit();
	for (;;) {
		uint32_t w = td->td_sqwait.load(std::memory_order_acquire);
		if (!(w & 1))
			return; // woken: the waker wrote td_sqflags before
		uint8_t why = 0;
		if (w & 2) {
			if (sintr && td->td_sqintr.load(std::memory_order_seq_cst))
				why = SQF_ABORT;
			else {
				td->td_sqwait.fetch_and(~2u);
				continue;
			}
		} else if (timed && clock_ns() >= deadline) {
			why = SQF_TIMEOUT;
		}
		if (why != 0) {
			spinlock_enter();
			sc->sc_lock.lock();
			if (td->td_sqflags & SQF_ONQ) {
				sq_unlink(sc, td->td_sleepqueue, td);
				td->td_sqflags |= why;
				td->td_sqwait.store(0, std::memory_order_relaxed);
			}
			sc->sc_lock.unlock();
			spinlock_exit();
			// Woken meanwhile, or we left: either way done.
			return;
		}
		if (sim_active()) { // the driver runs the simulation instead
			sim_wait_word(&td->td_sqwait, w, timed ? deadline : 0);
			continue;
		}
		if (timed) {
			struct timespec ts;
			ts.tv_sec = static_cast<time_t>(deadline / 1000000000ull);
			ts.tv_nsec = static_cast<long>(deadline % 1000000000ull);
			futex(&td->td_sqwait, FUTEX_WAIT_BITSET_PRIVATE, w, &ts);
		} else {
			futex(&td->td_sqwait, FUTEX_WAIT_PRIVATE, w, nullptr);
		}
	}
}

// Steps 5-7; returns td_sqflags' reason bits.
uint8_t
sq_wait_common(const void *wchan) noexcept
{
	thread *td = curthread_fast();
	sleepqueue_chain *sc = sc_lookup(wchan);
	if (td->td_flags & TDF_FOREIGN) {
		sq_foreign_wait(sc, td);
	} else {
		bool timed = (td->td_sqflags & SQF_TIMED) != 0;
		sq_switch(sc, td);
		if (timed)
			sq_timeout_settle(td);
	}
	// Nobody writes td_sqflags now: we are off every queue.
	uint8_t why = td->td_sqflags & (SQF_TIMEOUT | SQF_ABORT);
	td->td_sqflags = 0;
	return why;
}

} // namespace

void
sleepq_lock(const void *wchan) noexcept
{
	spinlock_enter_td(curthread_fast());
	sc_lookup(wchan)->sc_lock.lock();
}

void
sleepq_release(const void *wchan) noexcept
{
	sc_lookup(wchan)->sc_lock.unlock();
	spinlock_exit_td(curthread_fast());
}

void
sleepq_add(const void *wchan, lock_object *lock, const char *wmesg,
    int flags, int queue, const char *file, int line) noexcept
{
	thread *td = curthread_fast();
	sleepqueue_chain *sc = sc_lookup(wchan);
	if (__builtin_expect(wchan == nullptr, 0))
		panic("sleepq_add: null wait channel @ %s:%d", file, line);
	if (__builtin_expect(td->td_pflags & TDP_NOSLEEPING, 0))
		panic("sleepq_add: thread \"%s\" (tid %d) to sleep on wchan %p "
		    "(\"%s\") with sleeping prohibited @ %s:%d", td->td_name,
		    td->td_tid, wchan, wmesg, file, line);
	if (__builtin_expect(td->td_sqflags & SQF_ONQ, 0))
		panic("sleepq_add: recursive sleep of thread \"%s\" on \"%s\" "
		    "@ %s:%d", td->td_name, wmesg, file, line);
	USMP_KASSERT(queue >= 0 && queue < NR_SLEEPQS,
	    "sleepq_add: bad queue %d @ %s:%d", queue, file, line);
	sleepqueue *sq = sq_lookup(sc, wchan);
	int type = flags & SLEEPQ_TYPE;
	if (sq == nullptr) {
		sq = sq_get(sc);
		sq->sq_wchan = wchan;
		sq->sq_type = type;
		sq->sq_lock = lock;
		sq->sq_head[0] = sq->sq_head[1] = nullptr;
		sq->sq_tail[0] = sq->sq_tail[1] = nullptr;
		sq->sq_blockedcnt[0] = sq->sq_blockedcnt[1] = 0;
		sq->sq_next = sc->sc_queues;
		sc->sc_queues = sq;
	} else {
		if (__builtin_expect(sq->sq_type != type, 0))
			panic("sleepq_add: mismatched sleep types on wait channel "
			    "%p: %d and %d (\"%s\") @ %s:%d", wchan, sq->sq_type,
			    type, wmesg, file, line);
		if constexpr (config::invariants) {
			if (sq->sq_lock != lock)
				panic("sleepq_add: wait channel %p (\"%s\") used "
				    "with different interlocks @ %s:%d", wchan,
				    wmesg, file, line);
		}
	}
	// curthread's fields under the chain lock alone (see Locking).
	td->td_slpq_next = nullptr;
	td->td_slpq_prev = sq->sq_tail[queue];
	if (sq->sq_tail[queue] != nullptr)
		sq->sq_tail[queue]->td_slpq_next = td;
	else
		sq->sq_head[queue] = td;
	sq->sq_tail[queue] = td;
	sq->sq_blockedcnt[queue]++;
	td->td_sleepqueue = sq;
	td->td_sqqueue = static_cast<uint8_t>(queue);
	td->td_wchan = wchan;
	td->td_wmesg = wmesg;
	td->td_sqflags = SQF_ONQ |
	    ((flags & SLEEPQ_INTERRUPTIBLE) ? SQF_SINTR : 0);
	if (td->td_flags & TDF_FOREIGN)
		td->td_sqwait.store(1, std::memory_order_relaxed);
}

void
sleepq_set_timeout(const void *wchan, std::chrono::nanoseconds timo) noexcept
{
	thread *td = curthread_fast();
	uint64_t deadline = clock_ns() +
	    static_cast<uint64_t>(timo.count() > 0 ? timo.count() : 1);
	// td_sqflags is ours to write: a waker clears SQF_ONQ only, under
	// the chain lock we hold.
	if (td->td_flags & TDF_FOREIGN) {
		td->td_sqtimo.to_deadline = deadline;
		td->td_sqflags |= SQF_TIMED;
		return;
	}
	thread_lock(td);
	td->td_sqflags |= SQF_TIMED;
	thread_unlock(td);
	td->td_sqtimo_busy.store(1, std::memory_order_relaxed);
	timeout_arm(&td->td_sqtimo, deadline, sq_timeout, td);
}

void
sleepq_wait(const void *wchan, int pri) noexcept
{
	(void)sq_wait_common(wchan);
}

int
sleepq_wait_sig(const void *wchan, int pri) noexcept
{
	return (sq_wait_common(wchan) & SQF_ABORT) ? EINTR : 0;
}

int
sleepq_timedwait(const void *wchan, int pri) noexcept
{
	return (sq_wait_common(wchan) & SQF_TIMEOUT) ? EWOULDBLOCK : 0;
}

int
sleepq_timedwait_sig(const void *wchan, int pri) noexcept
{
	uint8_t why = sq_wait_common(wchan);
	if (why & SQF_ABORT)
		return EINTR;
	return (why & SQF_TIMEOUT) ? EWOULDBLOCK : 0;
}

bool
sleepq_signal(const void *wchan, int flags, int pri, int queue) noexcept
{
	sleepqueue_chain *sc = sc_lookup(wchan);
	sleepqueue *sq = sq_lookup(sc, wchan);
	thread *best = nullptr;
	if (sq != nullptr) {
		if (__builtin_expect(sq->sq_type != (flags & SLEEPQ_TYPE), 0))
			sq_type_panic("sleepq_signal", wchan, sq->sq_type,
			    flags & SLEEPQ_TYPE);
		if (flags & SLEEPQ_UNFAIR) {
			best = sq->sq_tail[queue];
		} else {
			// Highest priority (lowest number); ties: the first,
			// the longest sleeper.
			for (thread *td = sq->sq_head[queue]; td != nullptr;
			     td = td->td_slpq_next)
				if (best == nullptr ||
				    td->td_priority < best->td_priority)
					best = td;
		}
		if (best != nullptr)
			sq_resume(sc, sq, best, 0, false);
	}
	if (flags & SLEEPQ_DROP) {
		sc->sc_lock.unlock();
		spinlock_exit_td(curthread_fast());
	}
	return best != nullptr;
}

int
sleepq_broadcast(const void *wchan, int flags, int pri, int queue) noexcept
{
	sleepqueue_chain *sc = sc_lookup(wchan);
	sleepqueue *sq = sq_lookup(sc, wchan);
	if (sq == nullptr)
		return 0;
	if (__builtin_expect(sq->sq_type != (flags & SLEEPQ_TYPE), 0))
		sq_type_panic("sleepq_broadcast", wchan, sq->sq_type,
		    flags & SLEEPQ_TYPE);
	int n = 0;
	// The queue may be freed when its last sleeper leaves: stop then.
	for (;;) {
		thread *td = sq->sq_head[queue];
		if (td == nullptr)
			break;
		bool last = sq->sq_blockedcnt[0] + sq->sq_blockedcnt[1] == 1;
		sq_resume(sc, sq, td, 0, false);
		n++;
		if (last)
			break;
	}
	return n;
}

void
sleepq_remove(thread *td, const void *wchan) noexcept
{
	sleepqueue_chain *sc = sc_lookup(wchan);
	spinlock_enter();
	sc->sc_lock.lock();
	// td_wchan is stable under the chain lock while it names wchan.
	if (td->td_wchan == wchan && (td->td_sqflags & SQF_ONQ))
		sq_resume(sc, td->td_sleepqueue, td, 0, false);
	sc->sc_lock.unlock();
	spinlock_exit();
}

int
sleepq_sleepcnt(const void *wchan, int queue) noexcept
{
	sleepqueue *sq = sq_lookup(sc_lookup(wchan), wchan);
	return sq != nullptr ? sq->sq_blockedcnt[queue] : 0;
}

int
sleepq_type(const void *wchan) noexcept
{
	sleepqueue *sq = sq_lookup(sc_lookup(wchan), wchan);
	return sq != nullptr ? sq->sq_type : -1;
}

// ---- Interrupts.

void
thread_interrupt(thread *td) noexcept
{
	// Pairs with step 5's seq_cst load under the thread lock: either it
	// sees the flag, or td is asleep when we take its lock below.
	td->td_sqintr.store(1, std::memory_order_seq_cst);
	if (td->td_flags & TDF_FOREIGN) {
		td->td_sqwait.fetch_or(2, std::memory_order_seq_cst);
		futex(&td->td_sqwait, FUTEX_WAKE_PRIVATE, 1, nullptr);
		return;
	}
	thread_lock(td);
	spinlock *held = td_lockptr(td);
	// Asleep first: only then are td's sleep fields ours to read (a
	// running td fills them in under the chain lock alone, sleepq_add).
	if (td_asleep(td) &&
	    (td->td_sqflags & (SQF_ONQ | SQF_SINTR)) == (SQF_ONQ | SQF_SINTR)) {
		// held is the chain lock of td's channel.
		sq_resume(sc_lookup(td->td_wchan), td->td_sleepqueue, td,
		    SQF_ABORT, true);
	}
	held->unlock();
	spinlock_exit();
}

bool
thread_interrupt_pending(const thread *td) noexcept
{
	return td->td_sqintr.load(std::memory_order_acquire) != 0;
}

bool
thread_interrupt_clear() noexcept
{
	return curthread_fast()->td_sqintr.exchange(0) != 0;
}

} // namespace usmp

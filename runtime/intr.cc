// The CPU's "interrupts": the preemption signal (IPI), parking an idle CPU,
// and the hardclock.
//
// Vocabulary.  An IPI to a running CPU is a signal (SIGURG, reserved by
// usmp, as Go reserves it) sent with pthread_kill to that CPU's OS thread; an
// IPI to a parked CPU goes through the idle backend (runtime/internal/idle.h):
// a message on the CPU's io_uring (interrupts/ring.cc), or a futex wake on
// its park word when no ring could be set up.  The hardclock is one
// OS thread that ticks `hz` times a second while some CPU is busy, keeps the
// coarse clock, and lets the scheduler mark ended time slices, due timers
// and spare work.
//
// Tickless idle (FreeBSD's "no_hz" idle: a CPU that goes idle stops its
// periodic timer).  While every CPU is parked in its idle backend there is
// nothing for a tick to do: no slice can end, no busy CPU has interrupts
// waiting, the balancer has no busy CPU to take work from, and each parked
// CPU waits with its own deadline (its next timer, its event timer).  The
// hardclock then sleeps until the first timeout of its heap, or until a
// subsystem says it needs the tick (sysinit::si_tick_wanted: the callout
// wheels without rings), or until a CPU leaves its park.  The protocol:
//  1. cpu_park() counts the CPU in g_parked (seq_cst) before the backend
//     wait, and out after it;
//  2. the hardclock, before a sleep, stores g_hc_idle = 1 (seq_cst), then
//     reads g_parked (seq_cst): if some CPU is not parked it clears
//     g_hc_idle and sleeps until its next tick as before;
//  3. a CPU leaving its park, after its decrement, reads g_hc_idle
//     (seq_cst); if set, it exchanges it to 0 and wakes the hardclock (a
//     g_hc_word bump and a futex wake).  Steps 2 and 3 are a Dekker pair:
//     either the hardclock sees the CPU unparked and keeps ticking, or the
//     CPU sees the hardclock idle and wakes it.  The word is read before
//     step 2, so a wake between step 2 and the futex wait is not lost;
//  4. woken by a CPU, the hardclock ticks at once (the clock-derived tick
//     number jumps over the idle time), so the scheduler's tick count is
//     fresh when the CPU's first time slice starts;
//  5. a subsystem whose si_tick_wanted turns true while no CPU runs (a
//     callout reset by a foreign OS thread, without rings) calls
//     hardclock_tick_wanted() after its change: a seq_cst fence, then step
//     3's read of g_hc_idle.  It pairs with the fence between the
//     hardclock's store of g_hc_idle and its si_tick_wanted question, as
//     steps 2 and 3 pair: either the hardclock sees the change and ticks,
//     or the subsystem sees it idle and wakes it.
// ticks() is derived from the clock ((now - boot) / period), so it stays
// meaningful across idle time; kern.clock.hardclock.wakeups and .ticks
// count the hardclock's wakes and tick passes.
//
// The preemption signal handler runs on the interrupted green thread's own
// stack (not the alternate stack: a switch from inside the handler must
// leave the signal frame with the thread it interrupted, so that the
// thread's full register state comes back with it at sigreturn).  It is
// installed with SA_NODEFER, so that the threads that run after such a
// switch are not left with the signal blocked; a nested delivery finds the
// critical section the handler opened and only records what it owes.
//
// The rule of asynchronous preemption (DESIGN.md): switch inside the handler
// only if the interrupted thread is in no critical or spinlock section, the
// interrupted instruction lies in application code (runtime/codemap.h: not
// libc, not the C++ runtime, not usmp), and either a better thread asked for
// the CPU or full preemption is on.  Otherwise record td_owepreempt, taken at
// the next preemption point.  A thread preempted asynchronously is pinned
// until it resumes, so it resumes on the same CPU: code it was running may
// hold the address of per-CPU (thread_local) data.
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "runtime/counters.h"
#include "runtime/critical.h"
#include "runtime/internal/idle.h"
#include "runtime/internal/intr_hook.h"
#include "runtime/internal/machine.h"
#include "runtime/internal/seam.h"
#include "runtime/internal/sim.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"

namespace usmp {

namespace {

constexpr int SIGPREEMPT = SIGURG;

std::atomic<uint64_t> g_coarse_ns{0};
std::atomic<uint64_t> g_boot_ns{0};   // the clock at hardclock_start()
std::atomic<uint64_t> g_period_ns{1000000};
std::atomic<uint64_t> g_ticks_at_stop{0}; // ticks() while no machine runs
std::atomic<uint64_t> g_ticks{0};      // the last tick the hardclock ran
std::atomic<bool> g_hardclock_run{false};
std::thread g_hardclock;

// Tickless idle (the protocol at the top).
// CPUs inside cpu_park()'s backend wait.  Never reset: each park's
// increment is matched by its decrement, and a CPU may park before the
// hardclock starts.
std::atomic<int> g_parked{0};
std::atomic<int> g_hc_idle{0};       // the hardclock sleeps without a tick
std::atomic<uint64_t> g_hc_wakeups{0}; // kern.clock.hardclock.wakeups
std::atomic<uint64_t> g_hc_ticks{0};   // kern.clock.hardclock.ticks

// The timeouts (a binary heap on to_deadline) and the hardclock's wake word.
// Locking key: (h) g_to_lock.
spinlock g_to_lock;
timeout **g_to_heap = nullptr; // (h)
int g_to_n = 0, g_to_cap = 0;  // (h)
std::atomic<uint64_t> g_hc_wake_at{0}; // when the hardclock plans to wake
std::atomic<uint32_t> g_hc_word{0};    // bumped to wake it early
uint64_t g_sim_boot_ns = 0;            // simulated: virtual time at boot

inline void
to_set(int i, timeout *t) noexcept
{
	g_to_heap[i] = t;
	t->to_index = i;
}

void
to_sift_up(int i) noexcept
{
	timeout *t = g_to_heap[i];
	while (i > 0) {
		int p = (i - 1) / 2;
		if (g_to_heap[p]->to_deadline <= t->to_deadline)
			break;
		to_set(i, g_to_heap[p]);
		i = p;
	}
	to_set(i, t);
}

void
to_sift_down(int i) noexcept
{
	timeout *t = g_to_heap[i];
	for (;;) {
		int c = 2 * i + 1;
		if (c >= g_to_n)
			break;
		if (c + 1 < g_to_n &&
		    g_to_heap[c + 1]->to_deadline < g_to_heap[c]->to_deadline)
			c++;
		if (t->to_deadline <= g_to_heap[c]->to_deadline)
			break;
		to_set(i, g_to_heap[c]);
		i = c;
	}
	to_set(i, t);
}

void
to_remove_at(int i) noexcept
{
	timeout *t = g_to_heap[i];
	t->to_index = -1;
	if (--g_to_n > i) {
		to_set(i, g_to_heap[g_to_n]);
		to_sift_down(i);
		to_sift_up(g_to_heap[i]->to_index);
	}
}

// Run the due timeouts, on the hardclock thread, with no lock held.
void
timeouts_fire(uint64_t now) noexcept
{
	for (;;) {
		spinlock_enter();
		g_to_lock.lock();
		timeout *t = nullptr;
		if (g_to_n > 0 && g_to_heap[0]->to_deadline <= now) {
			t = g_to_heap[0];
			to_remove_at(0);
		}
		g_to_lock.unlock();
		spinlock_exit();
		if (t == nullptr)
			return;
		t->to_fn(t->to_arg);
	}
}

uint64_t
timeouts_next() noexcept
{
	spinlock_enter();
	g_to_lock.lock();
	uint64_t d = g_to_n > 0 ? g_to_heap[0]->to_deadline : UINT64_MAX;
	g_to_lock.unlock();
	spinlock_exit();
	return d;
}

// The preemption signal's work on CPU pc.  uc: the interrupted context, or
// null at a simulated interrupt point (runtime/sim.cc), where sim_switch
// says whether the thread may be switched there (it stands in for the
// code-map test: a simulated point is a call, never an arbitrary
// instruction).
void
preempt_deliver(pcpu *pc, const ucontext_t *uc, bool sim_switch) noexcept
{
	pc->pc_ipi_pending.store(0, std::memory_order_relaxed);
	pc->pc_cnt_ipis++;
	thread *td = pc->pc_curthread;
	int crit = td->td_critnest;
	int spin = td->td_spinlock_count;
	td->td_critnest = crit + 1;
	std::atomic_signal_fence(std::memory_order_seq_cst);
	int owe = sched_ipi(pc, crit == 0 && spin == 0);
	// Interrupts the hardclock saw waiting (the CPU was busy): deliver
	// them now, unless the interrupted code disabled interrupts (a
	// spinlock section) or is in a critical section, or this is the idle
	// thread (its loop polls by itself, maybe from inside the backend).
	if (crit == 0 && spin == 0 && !(td->td_flags & TDF_IDLETD)) {
		const idle_backend *ib = idle_backend_current();
		if (ib->ib_poll != nullptr && ib->ib_poll(pc) > 0 &&
		    td->td_owepreempt != 0)
			owe |= OWEPREEMPT_PRI;
	}
	// Interrupts queued for this CPU (interrupt point 2 of
	// runtime/internal/intr_hook.h): deliver them now if the thread was
	// in no critical or spinlock section, else at its outermost exit.  A
	// filter that woke a better ithread left OWEPREEMPT_PRI behind.
	if (pc->pc_intr_pending.load(std::memory_order_relaxed) != 0 &&
	    !(td->td_flags & TDF_IDLETD)) {
		if (crit == 0 && spin == 0) {
			intr_deliver_pending(pc);
			owe |= td->td_owepreempt & OWEPREEMPT_PRI;
		} else {
			td->td_owepreempt = td->td_owepreempt | OWEPREEMPT_INTR;
		}
	}
	std::atomic_signal_fence(std::memory_order_seq_cst);
	td->td_critnest = crit;
	if (owe == 0 || (td->td_flags & TDF_IDLETD))
		return;
	bool async;
	if (uc == nullptr) {
		async = crit == 0 && spin == 0 && sim_switch;
	} else {
		uintptr_t rip =
		    static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
		async = crit == 0 && spin == 0 &&
		    ((owe & OWEPREEMPT_PRI) || g_machine.ms_config.full_preemption) &&
		    codemap_preemptible(rip);
	}
	if (!async) {
		td->td_owepreempt = td->td_owepreempt | owe;
		// Outside any critical section but in code that may not be
		// preempted (libc, usmp): a CPU-bound thread may never reach a
		// preemption point, so have the hardclock signal again.
		if (crit == 0 && spin == 0 && (owe & OWEPREEMPT_PRI))
			sched_ipi_retry(pc);
		return;
	}
	pc->pc_cnt_async_preempt++;
	td->td_pinned++;
	td->td_critnest = 1;
	thread_lock(td);
	td->td_critnest = td->td_critnest - 1;
	td->td_owepreempt = 0;
	mi_switch(SW_INVOL | SWT_ASYNC |
	    ((owe & OWEPREEMPT_PRI) ? SW_PREEMPT : SWT_SLICE));
	td->td_pinned--;
}

void
preempt_handler(int, siginfo_t *, void *ucv) noexcept
{
	int saved_errno = errno;
	pcpu *pc = curpcpu_fast();
	if (pc != nullptr && pc->pc_sched != nullptr)
		preempt_deliver(pc, static_cast<ucontext_t *>(ucv), false);
	errno = saved_errno;
}

long
futex_word(std::atomic<uint32_t> *w, int op, uint32_t val,
    const struct timespec *ts) noexcept
{
	return syscall(SYS_futex, reinterpret_cast<uint32_t *>(w), op, val, ts,
	    nullptr, FUTEX_BITSET_MATCH_ANY);
}

// ---- The idle backend (runtime/internal/idle.h).  The futex backend
// parks on the park word itself: FUTEX_WAIT compares the word atomically
// with going to sleep, and a wait interrupted by the preemption signal
// restarts and compares again (step 4 of the park protocol).

void
futex_wait(pcpu *, std::atomic<uint32_t> *word, uint32_t val,
    uint64_t deadline_ns) noexcept
{
	if (deadline_ns == 0) {
		futex_word(word, FUTEX_WAIT_PRIVATE, val, nullptr);
		return;
	}
	struct timespec ts;
	ts.tv_sec = static_cast<time_t>(deadline_ns / 1000000000ull);
	ts.tv_nsec = static_cast<long>(deadline_ns % 1000000000ull);
	futex_word(word, FUTEX_WAIT_BITSET_PRIVATE, val, &ts);
}

void
futex_wake(pcpu *, std::atomic<uint32_t> *word) noexcept
{
	futex_word(word, FUTEX_WAKE_PRIVATE, 1, nullptr);
}

constexpr idle_backend futex_backend = {
	.ib_name = "futex",
	.ib_wait = futex_wait,
	.ib_wake = futex_wake,
	.ib_poll = nullptr,
	.ib_pending = nullptr,
};

std::atomic<const idle_backend *> g_idle_backend{&futex_backend};

// Once per tick: a busy CPU (not waiting in its backend) with interrupts
// waiting gets the preemption signal, whose handler delivers them when the
// interrupted code allows (else the next poll point does).
void
intr_pending_kick() noexcept
{
	const idle_backend *ib = idle_backend_current();
	if (ib->ib_pending == nullptr)
		return;
	for (int c = 0; c < g_machine.ms_ncpus; c++) {
		pcpu *pc = &g_machine.ms_pcpus[c];
		if (ib->ib_pending(pc))
			ipi_preempt(pc);
	}
}

// Step 3 of the tickless protocol: a CPU left its park; wake the
// hardclock if it sleeps without a tick.
inline void
hardclock_resume() noexcept
{
	if (g_hc_idle.load(std::memory_order_seq_cst) == 0)
		return;
	if (g_hc_idle.exchange(0, std::memory_order_seq_cst) == 0)
		return;
	g_hc_word.fetch_add(1, std::memory_order_seq_cst);
	futex_word(&g_hc_word, FUTEX_WAKE_PRIVATE, 1, nullptr);
}

} // namespace

void
hardclock_tick_wanted() noexcept
{
	// Step 5 of the tickless protocol: the caller's change, then this
	// fence, then the read of g_hc_idle.
	std::atomic_thread_fence(std::memory_order_seq_cst);
	hardclock_resume();
}

namespace {

void
hardclock_main() noexcept
{
	pthread_setname_np(pthread_self(), "usmp hardclock");
	// Block the preemption signal here: this is no CPU.
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPREEMPT);
	pthread_sigmask(SIG_BLOCK, &set, nullptr);
	const uint64_t period = g_period_ns.load(std::memory_order_relaxed);
	const uint64_t boot = g_boot_ns.load(std::memory_order_relaxed);
	const int ncpus = g_machine.ms_ncpus;
	uint64_t next_tick = boot + period;
	while (g_hardclock_run.load(std::memory_order_acquire)) {
		// Sleep until the next tick or the first timeout, whichever
		// comes first; timeout_arm() wakes us if it brings that closer.
		// With every CPU parked and no subsystem wanting the tick, sleep
		// without a tick (steps 2 and 3 of the protocol at the top).
		uint32_t word = g_hc_word.load(std::memory_order_acquire);
		uint64_t to = timeouts_next();
		g_hc_idle.store(1, std::memory_order_seq_cst);
		// Pairs with hardclock_tick_wanted()'s fence (step 5): the
		// subsystems' answers are read with relaxed loads.
		std::atomic_thread_fence(std::memory_order_seq_cst);
		bool tickless = g_parked.load(std::memory_order_seq_cst) >= ncpus &&
		    !sysinit_tick_wanted();
		if (!tickless)
			g_hc_idle.store(0, std::memory_order_relaxed);
		uint64_t wake = tickless ? to : (to < next_tick ? to : next_tick);
		g_hc_wake_at.store(wake, std::memory_order_seq_cst);
		if (g_hc_word.load(std::memory_order_seq_cst) == word) {
			struct timespec ts;
			ts.tv_sec = static_cast<time_t>(wake / 1000000000ull);
			ts.tv_nsec = static_cast<long>(wake % 1000000000ull);
			futex_word(&g_hc_word, FUTEX_WAIT_BITSET_PRIVATE, word,
			    wake == UINT64_MAX ? nullptr : &ts);
		}
		g_hc_wakeups.fetch_add(1, std::memory_order_relaxed);
		// Woken by a CPU that left its park (step 4: tick now), or by
		// a timeout or a deadline.
		bool resumed = tickless &&
		    g_hc_idle.exchange(0, std::memory_order_seq_cst) == 0;
		uint64_t now = clock_ns();
		g_coarse_ns.store(now, std::memory_order_relaxed);
		timeouts_fire(now);
		if (now < next_tick && !resumed)
			continue;
		// The tick number comes from the clock: after a loaded host
		// held us back, or an idle stretch, it skips ahead.
		uint64_t t = (now - boot) / period;
		next_tick = boot + (t + 1) * period;
		g_hc_ticks.fetch_add(1, std::memory_order_relaxed);
		g_ticks.store(t, std::memory_order_relaxed);
		sched_hardclock(t);
		intr_pending_kick();
		sysinit_tick(t);
	}
}

void
hardclock_counters_register() noexcept
{
	static std::once_flag once;
	std::call_once(once, [] {
		counter_register_proc("kern.clock.hardclock.wakeups",
		    "times the hardclock thread woke (ticks, timeouts, CPUs "
		    "leaving their park)",
		    [](void *) -> uint64_t {
			    return g_hc_wakeups.load(std::memory_order_relaxed);
		    });
		counter_register_proc("kern.clock.hardclock.ticks",
		    "hardclock tick passes (scheduler, interrupt kicks, "
		    "subsystem tick hooks)",
		    [](void *) -> uint64_t {
			    return g_hc_ticks.load(std::memory_order_relaxed);
		    });
	});
}

} // namespace

uint64_t
clock_ns() noexcept
{
	if (sim_active())
		return sim_clock_ns();
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull +
	    static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t
coarse_ns() noexcept
{
	return g_coarse_ns.load(std::memory_order_relaxed);
}

uint64_t
ticks() noexcept
{
	if (sim_active()) // virtual time: the simulated hardclock's count
		return g_ticks.load(std::memory_order_relaxed);
	if (!g_hardclock_run.load(std::memory_order_relaxed))
		return g_ticks_at_stop.load(std::memory_order_relaxed);
	uint64_t boot = g_boot_ns.load(std::memory_order_relaxed);
	uint64_t now = clock_ns();
	return now > boot ? (now - boot) / g_period_ns.load(std::memory_order_relaxed) : 0;
}

void
timeout_arm(timeout *t, uint64_t deadline_ns, void (*fn)(void *), void *arg) noexcept
{
	spinlock_enter();
	g_to_lock.lock();
	if (t->to_index >= 0)
		panic("timeout_arm: timeout %p already armed", static_cast<void *>(t));
	if (g_to_n == g_to_cap) {
		int cap = g_to_cap ? g_to_cap * 2 : 256;
		void *p = std::realloc(g_to_heap, sizeof(timeout *) * cap);
		if (p == nullptr)
			panic("timeout_arm: no memory for the timeout heap");
		g_to_heap = static_cast<timeout **>(p);
		g_to_cap = cap;
	}
	t->to_deadline = deadline_ns;
	t->to_fn = fn;
	t->to_arg = arg;
	to_set(g_to_n++, t);
	to_sift_up(g_to_n - 1);
	bool first = g_to_heap[0] == t;
	g_to_lock.unlock();
	spinlock_exit();
	// Pairs with the hardclock's seq_cst store of g_hc_wake_at before its
	// re-read of g_hc_word: it either sees our bump or we see its plan.
	if (first && deadline_ns < g_hc_wake_at.load(std::memory_order_seq_cst)) {
		g_hc_word.fetch_add(1, std::memory_order_seq_cst);
		futex_word(&g_hc_word, FUTEX_WAKE_PRIVATE, 1, nullptr);
	}
}

bool
timeout_disarm(timeout *t) noexcept
{
	spinlock_enter();
	g_to_lock.lock();
	bool armed = t->to_index >= 0;
	if (armed)
		to_remove_at(t->to_index);
	g_to_lock.unlock();
	spinlock_exit();
	return armed;
}

void
preempt_init() noexcept
{
	struct sigaction sa = {};
	sa.sa_sigaction = preempt_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGPREEMPT, &sa, nullptr) != 0)
		panic("preempt_init: sigaction(SIGURG) failed: errno %d", errno);
}

void
ipi_preempt(pcpu *pc) noexcept
{
	// One signal in flight per CPU is enough: the handler reads every
	// reason from the tdq.
	if (sim_active()) {
		sim_ipi(pc);
		return;
	}
	if (pc->pc_ipi_pending.exchange(1, std::memory_order_relaxed) != 0)
		return;
	pthread_kill(pc->pc_pthread, SIGPREEMPT);
}

const idle_backend *
idle_backend_current() noexcept
{
	return g_idle_backend.load(std::memory_order_acquire);
}

void
idle_backend_install(const idle_backend *ib) noexcept
{
	g_idle_backend.store(ib != nullptr ? ib : &futex_backend,
	    std::memory_order_release);
}

void
ipi_wake(pcpu *pc, std::atomic<uint32_t> *word) noexcept
{
	idle_backend_current()->ib_wake(pc, word);
	// The CPU we woke will need ticks: wake the hardclock from here, after
	// the IPI, so that the woken CPU usually finds it awake and does not
	// pay for the wake on its way to the thread it was woken for (step 3
	// of the tickless protocol stays the rule; this only runs it early).
	hardclock_resume();
}

void
cpu_park(pcpu *pc, std::atomic<uint32_t> *word, uint32_t val,
    uint64_t deadline_ns) noexcept
{
	// Steps 1 and 3 of the tickless protocol (top of this file).
	g_parked.fetch_add(1, std::memory_order_seq_cst);
	idle_backend_current()->ib_wait(pc, word, val, deadline_ns);
	g_parked.fetch_sub(1, std::memory_order_seq_cst);
	hardclock_resume();
}

int
cpu_intr_poll(pcpu *pc) noexcept
{
	const idle_backend *ib = idle_backend_current();
	return ib->ib_poll != nullptr ? ib->ib_poll(pc) : 0;
}

void
hardclock_start() noexcept
{
	int hz = g_machine.ms_config.hz > 0 ? g_machine.ms_config.hz : 1000;
	uint64_t now = clock_ns();
	g_period_ns.store(1000000000ull / static_cast<uint64_t>(hz),
	    std::memory_order_relaxed);
	g_boot_ns.store(now, std::memory_order_relaxed);
	g_coarse_ns.store(now, std::memory_order_relaxed);
	g_ticks.store(0, std::memory_order_relaxed);
	g_hc_idle.store(0, std::memory_order_relaxed);
	hardclock_counters_register();
	if (sim_active()) {
		// The hardclock is a simulated agent (runtime/sim.cc), which
		// calls hardclock_sim_run() when virtual time reaches
		// hardclock_sim_next().
		g_sim_boot_ns = now;
		return;
	}
	g_hardclock_run.store(true, std::memory_order_release);
	g_hardclock = std::thread(hardclock_main);
}

void
hardclock_stop() noexcept
{
	if (sim_active()) {
		sim_stop_hardclock();
		return;
	}
	g_ticks_at_stop.store(ticks(), std::memory_order_relaxed);
	g_hardclock_run.store(false, std::memory_order_release);
	g_hc_word.fetch_add(1, std::memory_order_seq_cst);
	futex_word(&g_hc_word, FUTEX_WAKE_PRIVATE, 1, nullptr);
	if (g_hardclock.joinable())
		g_hardclock.join();
}

// The simulated hardclock (runtime/sim.cc's hardclock agent, which may spin
// and hand the OS thread back like a CPU): the timeouts due, then the tick
// that virtual time has reached.  Ticks count virtual periods since boot;
// after a jump of virtual time (every CPU idle) several are skipped at
// once, as a tickless kernel's are.
void
hardclock_sim_run(uint64_t now) noexcept
{
	timeouts_fire(now);
	int hz = g_machine.ms_config.hz > 0 ? g_machine.ms_config.hz : 1000;
	uint64_t period = 1000000000ull / static_cast<uint64_t>(hz);
	uint64_t t = (now - g_sim_boot_ns) / period;
	if (t <= g_ticks.load(std::memory_order_relaxed))
		return;
	g_coarse_ns.store(now, std::memory_order_relaxed);
	g_ticks.store(t, std::memory_order_relaxed);
	sched_hardclock(t);
	intr_pending_kick();
	sysinit_tick(t);
}

uint64_t
hardclock_sim_next(bool with_tick) noexcept
{
	if (!with_tick)
		return timeouts_next();
	int hz = g_machine.ms_config.hz > 0 ? g_machine.ms_config.hz : 1000;
	uint64_t period = 1000000000ull / static_cast<uint64_t>(hz);
	uint64_t tick = g_sim_boot_ns +
	    (g_ticks.load(std::memory_order_relaxed) + 1) * period;
	uint64_t to = timeouts_next();
	return to < tick ? to : tick;
}

void
preempt_sim_deliver(pcpu *pc, bool may_switch) noexcept
{
	preempt_deliver(pc, nullptr, may_switch);
}

} // namespace usmp

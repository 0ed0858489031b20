// Deterministic simulation: every CPU of the machine on one OS thread, every
// scheduling choice from a seeded generator, virtual time (runtime/sim.h).
//
// Vocabulary.  An *agent* is something the simulation runs: each CPU (its
// idle thread and whatever green thread it switches to, all on the CPU's
// saved context), and the hardclock.  The *driver* is the OS thread that
// booted the machine: wherever it would block (joining the main thread,
// shutting down, spinning for a lock an agent holds) it runs the
// simulation's loop instead, one *step* at a time.  A step picks one agent
// that can run, resumes it, and lets it run until it hands the OS thread
// back at a *point*: sim::point(), thread_yield(), a sleep mutex's lock or
// unlock, a spin-wait step, the idle loop's park, the hardclock's wait.
//
// The problem.  The runtime's CPUs are OS threads that block on futexes and
// io_uring, spin on each other's locks, are interrupted by a signal, and
// read CLOCK_MONOTONIC; the host's scheduler decides every interleaving, so
// a failure cannot be reproduced.  The simulation must take over exactly
// the floor (what a CPU is, how it waits, spins, is interrupted and tells
// time) and nothing above it: the scheduler, locks, sleep queues, WITNESS,
// callouts run unchanged, so what the simulation finds is a bug of the
// program on the real runtime, not of a model.
//
// Approaches rejected.  A model of the runtime in the test (loom's
// approach): the model would not be usmp.  One OS thread per CPU with a
// baton passed between them (a turn lock): every switch a futex round trip,
// and the host can still reorder what happens between batons (signals,
// I/O).  Recording and replaying the host's interleavings (rr): needs
// hardware counters, and finds nothing new.  Here a CPU is a stackful
// context (runtime/context.h) on the driver's OS thread, resumed and
// suspended like a green thread one level down.
//
// The protocol.
//  1. Boot (sim_prepare, sim_boot): usmp_tl_pcpu is the only per-CPU
//     thing the runtime reads from the OS thread; the loop sets it to the
//     agent's pcpu before resuming the agent and clears it after.  What
//     else is per OS thread and meant per CPU (WITNESS's spin-lock list) is
//     per agent here (sim_agent_local).  The hardclock agent has its own
//     foreign stand-in thread (foreign_swap).
//  2. A step (sim_step): the agents that can run are listed (a CPU parked
//     in its idle backend can run once its park word changed, it was woken,
//     its park deadline or event timer came, or interrupts or an IPI wait
//     for it; a spinning agent once another agent made progress since it
//     spun; the hardclock once its next tick or timeout came).  The
//     strategy (or the replayed log) picks one, and may ask it to preempt
//     its thread.  Virtual time advances by step_ns, the agent runs to its
//     next point, and the step is logged: (step, agent, thread, event,
//     flags, virtual time).
//  3. At a point (after_resume), the CPU takes what an interrupt would have
//     brought it: the preemption IPI (ipi_preempt only marks it in a
//     simulation), its event timer, queued interrupts; through the same
//     code as the preemption signal handler (preempt_sim_deliver), with
//     "may switch here" standing in for the handler's code-map test: a
//     switch only outside critical and spinlock sections, never of the
//     idle thread.  Then the strategy's preemption, under the same rules.
//  4. Nobody can run: virtual time jumps to the earliest deadline (a
//     timeout, a CPU's sleep timer or event timer).  There is none: a
//     deadlock (threads wait for something no agent will ever do), reported
//     with the thread dump.  Too many steps: a livelock, reported.
//  5. Failures end the process after the report (seed, strategy, the
//     replay command, the log written where asked): the simulated world
//     holds locks and stacks that cannot be unwound.  explore() and
//     replay() fork a child per run, so the caller survives them.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "runtime/context.h"
#include "runtime/critical.h"
#include "runtime/dump.h"
#include "runtime/internal/curthread.h"
#include "runtime/internal/idle.h"
#include "runtime/internal/machine.h"
#include "runtime/internal/seam.h"
#include "runtime/internal/sim.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/sim.h"
#include "runtime/stack.h"

namespace usmp {

namespace sim_detail {
bool g_sim_on = false;
} // namespace sim_detail

namespace {

enum event : int {
	EV_START = 0, // (never logged as a yield reason: first resume)
	EV_POINT,
	EV_LOCK,
	EV_UNLOCK,
	EV_YIELD,
	EV_SPIN,
	EV_PARK,
	EV_HARDCLOCK,
	EV_DONE,
	EV_JUMP,
	EV_FAIL, // the run failed during this step
	EV_COUNT_,
};
const char *const event_names[EV_COUNT_] = {"start", "point", "lock",
	"unlock", "yield", "spin", "park", "hardclock", "done", "jump", "fail"};

enum agent_state : int {
	A_NEW,    // not started yet
	A_RUN,    // handed back at a point: may run
	A_SPIN,   // handed back spinning: may run once another agent progressed
	A_PARK,   // idle CPU parked in its backend
	A_HCWAIT, // the hardclock, waiting for its next tick or timeout
	A_DONE,   // returned (CPU: idle loop ended at shutdown)
};

constexpr std::size_t AGENT_STACK = 256 * 1024;

// Locking key: everything here belongs to the one OS thread that drives the
// simulation (the driver and the agents it resumes take turns on it).
struct agent {
	context a_ctx;                // saved while it does not run
	void *a_map = nullptr;        // its stack mapping (guard page first)
	pcpu *a_pc = nullptr;         // null: the hardclock
	int a_id = 0;                 // CPU id, or -1: the hardclock
	int a_state = A_NEW;
	int a_event = EV_START;       // why it last handed back
	std::atomic<uint32_t> *a_word = nullptr; // park word
	uint32_t a_val = 0;           // parked while *a_word == a_val
	uint64_t a_deadline = 0;      // park deadline (0: none)
	bool a_woken = false;         // ib_wake since it parked
	uint64_t a_spin_epoch = 0;    // S.progress when it spun
	uint64_t a_timer = UINT64_MAX; // event timer (callout wheels)
	bool a_preempt = false;       // the strategy asks for a preemption
	int a_hold = -1;              // points a due interrupt is still held
	                              // back (-1: none drawn yet)
	thread *a_standin = nullptr;  // hardclock: its foreign stand-in
	void *a_local[SIM_LOCAL_COUNT] = {};
};

// xoshiro256**, seeded by splitmix64: the same numbers on every platform
// (the standard distributions are not specified bit for bit).
struct rng {
	uint64_t s[4] = {};
	static uint64_t splitmix(uint64_t &x) noexcept
	{
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		return z ^ (z >> 31);
	}
	void seed(uint64_t v) noexcept
	{
		for (auto &w : s)
			w = splitmix(v);
	}
	static uint64_t rotl(uint64_t x, int k) noexcept
	{
		return (x << k) | (x >> (64 - k));
	}
	uint64_t next() noexcept
	{
		uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
		s[2] ^= s[0];
		s[3] ^= s[1];
		s[1] ^= s[2];
		s[0] ^= s[3];
		s[2] ^= t;
		s[3] = rotl(s[3], 45);
		return r;
	}
	uint64_t below(uint64_t n) noexcept { return n <= 1 ? 0 : next() % n; }
};

struct sim_state {
	sim_config sc;
	int ncpus = 0;
	agent *agents = nullptr; // [ncpus + 1]: the CPUs, then the hardclock
	int nagents = 0;
	agent *cur = nullptr;    // the agent running, null: the driver
	void *driver_local[SIM_LOCAL_COUNT] = {};
	context loop_ctx;        // the driver, while an agent runs
	int os_tid = 0;
	uint64_t now = 0;        // virtual ns (CLOCK_MONOTONIC-like)
	uint64_t boot = 0;
	uint64_t step = 0;
	uint64_t progress = 0;   // steps that were not spins
	rng r;
	rng ir;                  // interrupt timing: a stream of its own
	int preemptions = 0;
	int last = -1;           // agent index of the last step
	std::vector<uint64_t> pct_prio; // by tid
	std::vector<uint64_t> pct_change; // step numbers, ascending
	std::size_t pct_next = 0;
	sim_log own_log;
	sim_log *log = nullptr;
	const sim_log *replay = nullptr;
	uint64_t uncontrolled = 0;
	bool uncontrolled_flag = false;
	char uncontrolled_what[64] = {}; // the first one
	int step_flags = 0;      // flags the running step raised (STEP_INTR_HELD)
	void (*cpu_run)(pcpu *pc) noexcept = nullptr;
	bool hc_stop = false;
	uint64_t driver_deadline = UINT64_MAX; // sim_wait_word()'s timeout
	bool failing = false;
	bool in_step = false;    // an agent runs step `pending`
	sim::step pending;
	char fail_buf[512] = {};
};

sim_state S;
std::atomic<void (*)(int) noexcept> g_clock_fn{nullptr};
thread_local bool tl_sim_thread = false; // this OS thread drives it
int g_child_fd = -1;                     // explore()'s child: report here
struct sigaction g_old_abrt;

const char *
strategy_name(sim_strategy s) noexcept
{
	return s == sim_strategy::pct ? "pct" : "random";
}

bool
strategy_parse(const char *s, sim_strategy *out) noexcept
{
	if (std::strcmp(s, "random") == 0)
		*out = sim_strategy::random;
	else if (std::strcmp(s, "pct") == 0)
		*out = sim_strategy::pct;
	else
		return false;
	return true;
}

// ---- Agents: resume, hand back.

// Hand the OS thread back to the driver; returns when the driver resumes
// this agent.  errno belongs to the thread that runs, so it travels.
void
agent_yield(agent *a, int ev) noexcept
{
	a->a_event = ev;
	int saved_errno = errno;
	context from = context_resume(&S.loop_ctx, nullptr);
	context_save(&S.loop_ctx, from);
	errno = saved_errno;
}

// Resume agent a from the driver, until it hands back.
void
run_agent(agent *a) noexcept
{
	S.cur = a;
	usmp_tl_pcpu = a->a_pc;
	thread *standin = nullptr;
	if (a->a_standin != nullptr)
		standin = foreign_swap(a->a_standin);
	context from = context_resume(&a->a_ctx, nullptr);
	context_save(&a->a_ctx, from);
	if (a->a_standin != nullptr)
		foreign_swap(standin);
	usmp_tl_pcpu = nullptr;
	S.cur = nullptr;
}

void
hardclock_body(agent *a) noexcept
{
	for (;;) {
		if (S.hc_stop)
			return;
		a->a_state = A_HCWAIT;
		agent_yield(a, EV_HARDCLOCK);
		a->a_state = A_RUN;
		if (S.hc_stop)
			return;
		hardclock_sim_run(S.now);
	}
}

void
agent_entry(context from) noexcept
{
	context_save(&S.loop_ctx, from);
	agent *a = S.cur;
	a->a_state = A_RUN;
	if (a->a_pc != nullptr) {
		pcpu *pc = a->a_pc;
		pc->pc_errnop = &errno;
		pc->pc_os_tid = S.os_tid;
		pc->pc_pthread = pthread_self();
		S.cpu_run(pc);
	} else {
		hardclock_body(a);
	}
	a->a_state = A_DONE;
	for (;;)
		agent_yield(a, EV_DONE);
}

agent *
agent_of(const pcpu *pc) noexcept
{
	return &S.agents[pc->pc_cpuid];
}

// Step 3's seeded interrupt timing: an interrupt (the event timer, a
// queued interrupt, the preemption IPI) that is due when a CPU reaches a
// point is held back for a number of that CPU's points drawn uniformly from
// [0, intr_hold_max], then delivered: where a callout or an ithread lands
// among a busy CPU's thread steps is the generator's choice, not virtual
// time's alone, and never later than the bound (an idle CPU takes it when
// the strategy picks it).  The draws come from a stream of their own (ir),
// so that a replay, which takes the CPU choices from the log and not from
// the main stream, makes the same draws; each held point is flagged
// STEP_INTR_HELD, so the replay's step check compares them too.  Returns
// true to hold it at this point.
bool
intr_hold(agent *a) noexcept
{
	if (a->a_hold < 0)
		a->a_hold = static_cast<int>(S.ir.below(
		    static_cast<uint64_t>(S.sc.intr_hold_max) + 1));
	if (a->a_hold == 0) {
		a->a_hold = -1;
		return false;
	}
	a->a_hold--;
	S.step_flags |= sim::STEP_INTR_HELD;
	return true;
}

// Step 3: what an interrupt would have brought, then the strategy's
// preemption.  `can`: the point allows a switch at all (a spin-wait
// inside a lock's slow path does; every point is a call, not an arbitrary
// instruction).
void
after_resume(bool can) noexcept
{
	agent *a = S.cur;
	pcpu *pc = a->a_pc;
	if (pc == nullptr)
		return;
	thread *td = pc->pc_curthread;
	bool safe = can && td->td_critnest == 0 && td->td_spinlock_count == 0 &&
	    !(td->td_flags & TDF_IDLETD);
	bool preempt = a->a_preempt;
	a->a_preempt = false;
	if ((pc->pc_ipi_pending.load(std::memory_order_relaxed) != 0 ||
		pc->pc_intr_pending.load(std::memory_order_relaxed) != 0 ||
		a->a_timer <= S.now) && !intr_hold(a)) {
		preempt_sim_deliver(pc, safe);
		// It may have switched and come back (pinned: same CPU).
		td = pc->pc_curthread;
		safe = can && td->td_critnest == 0 && td->td_spinlock_count == 0 &&
		    !(td->td_flags & TDF_IDLETD);
	}
	if (preempt && safe && sched_load(pc->pc_cpuid) >= 2) {
		// The preemption signal's switch (runtime/intr.cc), asked by
		// the strategy: back to the tail of the queue, pinned until it
		// runs again, like an asynchronous preemption.
		td->td_pinned++;
		td->td_critnest = 1;
		thread_lock(td);
		td->td_critnest = td->td_critnest - 1;
		td->td_owepreempt = 0;
		mi_switch(SW_INVOL | SWT_SLICE);
		td->td_pinned--;
	}
}

// ---- Failure reports (step 5).

std::string
replay_line() noexcept
{
	if (S.sc.replay_hint != nullptr)
		return S.sc.replay_hint;
	char buf[128];
	std::snprintf(buf, sizeof(buf), "USMP_SIM_SEED=%" PRIu64
	    " USMP_SIM_STRATEGY=%s USMP_SIM_PCT_STEPS=%" PRIu64, S.sc.seed,
	    strategy_name(S.sc.strategy), S.sc.pct_steps);
	std::string line = buf;
	int fd = ::open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char cmd[1024];
		ssize_t n = ::read(fd, cmd, sizeof(cmd) - 1);
		::close(fd);
		for (ssize_t i = 0; i < n;) {
			line += ' ';
			line += &cmd[i];
			i += static_cast<ssize_t>(std::strlen(&cmd[i])) + 1;
		}
	}
	return line;
}

void
log_fill_header(sim_log *l) noexcept
{
	l->seed = S.sc.seed;
	l->strategy = S.sc.strategy;
	l->pct_depth = S.sc.pct_depth;
	l->pct_steps = S.sc.pct_steps;
	l->preempt_bound = S.sc.preempt_bound;
	l->intr_hold_max = S.sc.intr_hold_max;
	l->ncpus = S.ncpus;
	l->uncontrolled = S.uncontrolled;
	l->uncontrolled_what = S.uncontrolled_what;
}

// Write the outcome where it is wanted: the log file, and the report of
// explore()'s child.  Not async-signal-safe (it formats into a string), but
// only called once the run is over, on the way out.
void
write_outcome(const char *reason) noexcept
{
	if (S.in_step) {
		// The step that failed: in the log, so that a replay runs it.
		S.in_step = false;
		S.pending.s_event = EV_FAIL;
		S.pending.s_flags |= S.step_flags;
		S.log->steps.push_back(S.pending);
	}
	log_fill_header(S.log);
	if (S.sc.log_file != nullptr && !S.log->write_file(S.sc.log_file))
		printf_diag("sim: cannot write the step log to %s",
		    S.sc.log_file);
	if (g_child_fd >= 0) {
		std::string text = "reason ";
		text += reason != nullptr ? reason : "";
		text += '\n';
		text += S.log->to_text();
		::lseek(g_child_fd, 0, SEEK_SET);
		const char *p = text.data();
		std::size_t left = text.size();
		while (left > 0) {
			ssize_t n = ::write(g_child_fd, p, left);
			if (n <= 0)
				break;
			p += n;
			left -= static_cast<std::size_t>(n);
		}
	}
}

void
banner(const char *reason) noexcept
{
	printf_diag("sim: FAILED at step %" PRIu64 " (virtual time %.3f ms): %s",
	    S.step, static_cast<double>(S.now - S.boot) / 1e6, reason);
	printf_diag("sim: seed %" PRIu64 ", strategy %s, pct depth %d over %"
	    PRIu64 " steps, preemption bound %d, %d CPUs, %d preemptions%s%s%s",
	    S.sc.seed, strategy_name(S.sc.strategy), S.sc.pct_depth,
	    S.sc.pct_steps, S.sc.preempt_bound,
	    S.ncpus, S.preemptions,
	    S.uncontrolled != 0 ? "; replay cannot be trusted (uncontrolled "
				  "events, the first: " : "",
	    S.uncontrolled_what, S.uncontrolled != 0 ? ")" : "");
	printf_diag("sim: replay: %s", replay_line().c_str());
}

[[noreturn]] void
sim_fail(const char *reason, bool dump) noexcept
{
	if (S.failing)
		::_exit(1);
	S.failing = true;
	banner(reason);
	if (dump) {
		thread_dump(stderr);
		for (int c = 0; c < S.ncpus; c++)
			sched_dump_cpu(c);
	}
	write_outcome(reason);
	std::fflush(nullptr);
	::_exit(1);
}

// panic(), a KASSERT, WITNESS in abort mode, std::abort(): the message is
// out; add the seed, strategy and replay line, and the log.
void
abort_handler(int) noexcept
{
	if (!S.failing) {
		S.failing = true;
		banner("abort (panic, KASSERT or WITNESS; message above)");
		write_outcome("abort (panic, KASSERT or WITNESS)");
	}
	::signal(SIGABRT, SIG_DFL);
	::raise(SIGABRT);
}

// ---- The strategies (step 2).

uint64_t
pct_prio_of(int tid) noexcept
{
	if (tid < 0)
		return UINT64_MAX - 2;
	auto i = static_cast<std::size_t>(tid);
	while (S.pct_prio.size() <= i) {
		// Initial priorities lie above every changed one (1 .. d-1).
		uint64_t p = static_cast<uint64_t>(S.sc.pct_depth) + 1 +
		    (S.r.next() >> 8);
		S.pct_prio.push_back(p);
	}
	return S.pct_prio[i];
}

int
agent_tid(const agent *a) noexcept
{
	if (a->a_pc == nullptr)
		return -1;
	return a->a_pc->pc_curthread->td_tid;
}

// A real idle CPU spins a while looking for work to steal before it parks
// (sched/sched_ule.cc, step 5); a simulated one parks at once (virtual time
// does not pass while it spins), so it is let run again, once something
// happened, when another CPU has a thread to spare.
bool
steal_possible(const agent *a) noexcept
{
	for (int c = 0; c < S.ncpus; c++)
		if (c != a->a_id && S.agents[c].a_state != A_DONE &&
		    sched_load(c) >= 2)
			return true;
	return false;
}

bool
agent_can_run(const agent *a) noexcept
{
	switch (a->a_state) {
	case A_NEW:
	case A_RUN:
		return true;
	case A_SPIN:
		return a->a_spin_epoch != S.progress;
	case A_PARK: {
		const pcpu *pc = a->a_pc;
		if (a->a_spin_epoch != S.progress && steal_possible(a))
			return true;
		return a->a_woken ||
		    a->a_word->load(std::memory_order_relaxed) != a->a_val ||
		    (a->a_deadline != 0 && a->a_deadline <= S.now) ||
		    a->a_timer <= S.now ||
		    pc->pc_intr_pending.load(std::memory_order_relaxed) != 0 ||
		    pc->pc_ipi_pending.load(std::memory_order_relaxed) != 0;
	}
	case A_HCWAIT:
		return S.hc_stop || hardclock_sim_next(true) <= S.now;
	default:
		return false;
	}
}

// The earliest deadline anyone waits for (step 4), or UINT64_MAX.
uint64_t
next_deadline() noexcept
{
	uint64_t next = hardclock_sim_next(false);
	if (S.driver_deadline < next)
		next = S.driver_deadline;
	for (int i = 0; i < S.ncpus; i++) {
		const agent *a = &S.agents[i];
		if (a->a_state == A_DONE)
			continue;
		if (a->a_timer < next)
			next = a->a_timer;
		if (a->a_state == A_PARK && a->a_deadline != 0 &&
		    a->a_deadline < next)
			next = a->a_deadline;
	}
	return next;
}

// The agent of the last step, if it can go on (it handed back at a plain
// point): choosing another one counts as a preemption.  Else -1.
int
last_runnable(const int *can, int n) noexcept
{
	for (int i = 0; i < n; i++)
		if (can[i] == S.last && S.agents[S.last].a_state == A_RUN)
			return S.last;
	return -1;
}

// Choose among the agents that can run.  Returns the index, and whether to
// ask it for a preemption in *preempt, and logs flags in *flags.
int
choose(const int *can, int n, bool *preempt, int *flags) noexcept
{
	*preempt = false;
	bool bounded = S.sc.preempt_bound >= 0 &&
	    S.preemptions >= S.sc.preempt_bound;
	int last = last_runnable(can, n);
	if (bounded && last >= 0)
		return last; // no more preemptions: the running one goes on
	int pick;
	if (S.sc.strategy == sim_strategy::pct) {
		uint64_t best = 0;
		pick = can[0];
		for (int i = 0; i < n; i++) {
			const agent *a = &S.agents[can[i]];
			uint64_t p;
			if (a->a_pc == nullptr)
				p = UINT64_MAX; // the hardclock first
			else if (a->a_pc->pc_curthread->td_flags & TDF_IDLETD)
				p = UINT64_MAX - 1; // an idle CPU picks up work
			else if (a->a_event == EV_YIELD || a->a_state == A_SPIN)
				p = 0; // it asked to let others run
			else
				p = pct_prio_of(agent_tid(a));
			if (p > best || i == 0) {
				best = p;
				pick = can[i];
			}
		}
		agent *a = &S.agents[pick];
		if (S.pct_next < S.pct_change.size() &&
		    S.step >= S.pct_change[S.pct_next]) {
			// Change point i: the running thread drops to d-1-i,
			// below every initial priority.
			int tid = agent_tid(a);
			if (tid >= 0 && !(a->a_pc->pc_curthread->td_flags & TDF_IDLETD)) {
				pct_prio_of(tid);
				S.pct_prio[static_cast<std::size_t>(tid)] =
				    static_cast<uint64_t>(S.sc.pct_depth - 1) -
				    S.pct_next;
				*flags |= sim::STEP_CHANGE_POINT;
				if (a->a_state == A_RUN && !bounded)
					*preempt = true;
				S.pct_next++;
			}
		}
	} else {
		pick = can[S.r.below(static_cast<uint64_t>(n))];
		agent *a = &S.agents[pick];
		// A preemption of its thread, one time in four, where the
		// CPU has another thread to run.
		if (!bounded && a->a_state == A_RUN && a->a_pc != nullptr &&
		    !(a->a_pc->pc_curthread->td_flags & TDF_IDLETD) &&
		    sched_load(a->a_id) >= 2 && S.r.below(4) == 0)
			*preempt = true;
	}
	if (last >= 0 && pick != last)
		S.preemptions++;
	if (*preempt)
		S.preemptions++;
	return pick;
}

void
nondeterminism(const sim::step &want, const sim::step &got) noexcept
{
	std::snprintf(S.fail_buf, sizeof(S.fail_buf),
	    "nondeterminism at step %" PRIu64 ": the log has agent %d thread %d "
	    "%s at %" PRIu64 " ns, the replay agent %d thread %d %s at %" PRIu64
	    " ns%s", want.s_step, want.s_agent, want.s_tid,
	    sim::event_name(want.s_event), want.s_vtime, got.s_agent, got.s_tid,
	    sim::event_name(got.s_event), got.s_vtime,
	    // The likely cause, when the log says so.
	    S.replay->trustworthy() ? "" : " (the log records events the "
	    "simulation does not control: real I/O or another OS thread)");
	sim_fail(S.fail_buf, false);
}

void
record(sim::step st) noexcept
{
	if (S.uncontrolled_flag) {
		st.s_flags |= sim::STEP_UNCONTROLLED;
		S.uncontrolled_flag = false;
	}
	if (S.replay != nullptr) {
		if (st.s_step >= S.replay->steps.size()) {
			std::snprintf(S.fail_buf, sizeof(S.fail_buf),
			    "nondeterminism: the replay goes on past the log's "
			    "%zu steps", S.replay->steps.size());
			sim_fail(S.fail_buf, false);
		}
		sim::step want = S.replay->steps[st.s_step];
		want.s_flags &= ~sim::STEP_UNCONTROLLED;
		sim::step got = st;
		got.s_flags &= ~sim::STEP_UNCONTROLLED;
		if (!(want == got))
			nondeterminism(want, got);
	}
	S.log->steps.push_back(st);
}

// One step (step 2); false when no agent can run and no deadline is
// pending (the caller reports the deadlock).
bool
sim_step() noexcept
{
	if (S.step >= S.sc.max_steps) {
		std::snprintf(S.fail_buf, sizeof(S.fail_buf),
		    "livelock: %" PRIu64 " steps without the end (max_steps)",
		    S.sc.max_steps);
		sim_fail(S.fail_buf, true);
	}
	int can[1025];
	int n = 0;
	for (int i = 0; i < S.nagents; i++)
		if (agent_can_run(&S.agents[i]))
			can[n++] = i;
	if (n == 0) {
		uint64_t next = next_deadline();
		if (next == UINT64_MAX || next <= S.now)
			return false;
		S.now = next;
		sim::step st;
		st.s_step = S.step++;
		st.s_agent = -2;
		st.s_event = EV_JUMP;
		st.s_vtime = S.now - S.boot;
		if (S.replay != nullptr && st.s_step < S.replay->steps.size() &&
		    S.replay->steps[st.s_step].s_agent != -2)
			nondeterminism(S.replay->steps[st.s_step], st);
		record(st);
		return true;
	}
	bool preempt = false;
	int flags = 0;
	int pick;
	if (S.replay != nullptr && S.step < S.replay->steps.size()) {
		const sim::step &want = S.replay->steps[S.step];
		int idx = want.s_agent == -1 ? S.ncpus : want.s_agent;
		bool ok = false;
		for (int i = 0; i < n; i++)
			ok |= can[i] == idx;
		if (!ok || want.s_agent < -1) {
			sim::step got;
			got.s_step = S.step;
			got.s_agent = can[0] == S.ncpus ? -1 : can[0];
			got.s_vtime = S.now - S.boot;
			nondeterminism(want, got);
		}
		pick = idx;
		preempt = (want.s_flags & sim::STEP_PREEMPT) != 0;
		flags = want.s_flags & (sim::STEP_PREEMPT | sim::STEP_CHANGE_POINT);
		// Counted as choose() counts them, for the banner.
		int last = last_runnable(can, n);
		if (last >= 0 && pick != last)
			S.preemptions++;
		if (preempt)
			S.preemptions++;
	} else {
		pick = choose(can, n, &preempt, &flags);
	}
	agent *a = &S.agents[pick];
	if (preempt)
		flags |= sim::STEP_PREEMPT;
	a->a_preempt = preempt;
	S.now += S.sc.step_ns;
	sim::step st;
	st.s_step = S.step;
	st.s_agent = a->a_pc == nullptr ? -1 : a->a_id;
	st.s_tid = agent_tid(a);
	st.s_flags = flags;
	st.s_vtime = S.now - S.boot;
	S.last = pick;
	S.pending = st;
	S.in_step = true;
	S.step_flags = 0;
	run_agent(a);
	S.in_step = false;
	st.s_flags |= S.step_flags;
	st.s_event = a->a_event;
	if (a->a_event != EV_SPIN)
		S.progress++;
	S.step++;
	record(st);
	return true;
}

[[noreturn]] void
deadlock() noexcept
{
	sim_fail("deadlock: every CPU is idle, no timeout or timer is pending, "
		 "and threads still wait (thread dump below)", true);
}

// ---- The idle backend (runtime/internal/idle.h): a parked CPU hands back.

void
ib_wait(pcpu *pc, std::atomic<uint32_t> *word, uint32_t val,
    uint64_t deadline_ns) noexcept
{
	agent *a = agent_of(pc);
	a->a_word = word;
	a->a_val = val;
	a->a_deadline = deadline_ns;
	a->a_woken = false;
	a->a_spin_epoch = S.progress;
	a->a_state = A_PARK;
	agent_yield(a, EV_PARK);
	a->a_state = A_RUN;
	// The IPI that woke it, if any: the idle loop looks at everything.
	pc->pc_ipi_pending.store(0, std::memory_order_relaxed);
}

void
ib_wake(pcpu *pc, std::atomic<uint32_t> *) noexcept
{
	if (!tl_sim_thread)
		sim_uncontrolled("another OS thread: ", "a wakeup");
	agent_of(pc)->a_woken = true;
}

// The event timer's interrupt, in primary interrupt context on the CPU.
int
ib_poll(pcpu *pc) noexcept
{
	agent *a = agent_of(pc);
	if (a->a_timer > S.now)
		return 0;
	a->a_timer = UINT64_MAX;
	auto fn = g_clock_fn.load(std::memory_order_acquire);
	if (fn != nullptr) {
		spinlock_enter();
		fn(pc->pc_cpuid);
		spinlock_exit();
	}
	return 1;
}

bool
ib_pending(pcpu *pc) noexcept
{
	return agent_of(pc)->a_timer <= S.now;
}

constexpr idle_backend sim_backend = {
	.ib_name = "sim",
	.ib_wait = ib_wait,
	.ib_wake = ib_wake,
	.ib_poll = ib_poll,
	.ib_pending = ib_pending,
};

bool
all_done(void *) noexcept
{
	for (int i = 0; i < S.nagents; i++)
		if (S.agents[i].a_state != A_DONE)
			return false;
	return true;
}

} // namespace

// ---- runtime/internal/sim.h

void
sim_prepare(const machine_config &cfg, int ncpus) noexcept
{
	// The driver's stand-in exists before the count restarts, so that
	// thread ids are the same in every run of a program.
	(void)curthread();
	g_machine.ms_next_tid.store(1);
	S.~sim_state();
	new (&S) sim_state;
	S.sc = cfg.sim;
	if (S.sc.pct_depth < 1)
		S.sc.pct_depth = 1;
	if (S.sc.step_ns == 0)
		S.sc.step_ns = 1;
	S.ncpus = ncpus;
	S.os_tid = static_cast<int>(syscall(SYS_gettid));
	S.boot = S.now = 1000000000ull; // 1 s: no deadline is ever 0
	S.log = cfg.sim.log != nullptr ? cfg.sim.log : &S.own_log;
	S.log->steps.clear();
	S.log->uncontrolled = 0;
	S.replay = cfg.sim.replay;
	if (S.replay != nullptr) {
		S.sc.seed = S.replay->seed;
		S.sc.strategy = S.replay->strategy;
		S.sc.pct_depth = S.replay->pct_depth;
		S.sc.pct_steps = S.replay->pct_steps;
		S.sc.preempt_bound = S.replay->preempt_bound;
		S.sc.intr_hold_max = S.replay->intr_hold_max;
	}
	S.r.seed(S.sc.seed);
	S.ir.seed(S.sc.seed ^ 0x696e7472686f6c64ull); // "intrhold"
	if (S.sc.intr_hold_max < 0)
		S.sc.intr_hold_max = 0;
	// PCT's k, the length of a run in steps: the caller's estimate
	// (explore() passes the previous run's), else a short run's.
	if (S.sc.pct_steps == 0)
		S.sc.pct_steps = 64;
	uint64_t k = S.sc.pct_steps;
	for (int i = 1; i < S.sc.pct_depth; i++)
		S.pct_change.push_back(1 + S.r.below(k));
	std::sort(S.pct_change.begin(), S.pct_change.end());
	tl_sim_thread = true;
	sim_detail::g_sim_on = true;
	struct sigaction sa = {};
	sa.sa_handler = abort_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGABRT, &sa, &g_old_abrt);
}

void
sim_boot(pcpu *pcpus, int ncpus, void (*cpu_run)(pcpu *pc) noexcept) noexcept
{
	S.cpu_run = cpu_run;
	S.nagents = ncpus + 1;
	S.agents = new agent[S.nagents];
	for (int i = 0; i < S.nagents; i++) {
		agent *a = &S.agents[i];
		a->a_pc = i < ncpus ? &pcpus[i] : nullptr;
		a->a_id = i < ncpus ? i : -1;
		void *m = ::mmap(nullptr, AGENT_STACK, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED)
			panic("sim_boot: no memory for agent stacks");
		::mprotect(m, 4096, PROT_NONE); // red zone
		a->a_map = m;
		char *lo = static_cast<char *>(m) + 4096;
		context_make(&a->a_ctx, lo, static_cast<char *>(m) + AGENT_STACK,
		    agent_entry);
		if (a->a_pc == nullptr) {
			thread *td = new thread;
			td->td_flags = TDF_FOREIGN;
			td->td_state = TDS_RUNNING;
			td->td_tid = -1;
			std::snprintf(td->td_name, sizeof(td->td_name), "hardclock");
			a->a_standin = td;
		}
	}
}

const idle_backend *
sim_idle_backend() noexcept
{
	return &sim_backend;
}

void
sim_stop_hardclock() noexcept
{
	S.hc_stop = true;
}

void
sim_wait_cpus_done() noexcept
{
	sim_drive(all_done, nullptr);
}

void
sim_teardown() noexcept
{
	log_fill_header(S.log);
	if (!S.log->trustworthy())
		printf_diag("sim: %s", S.log->trust_warning().c_str());
	if (S.sc.log_file != nullptr && !S.log->write_file(S.sc.log_file))
		printf_diag("sim: cannot write the step log to %s",
		    S.sc.log_file);
	for (int i = 0; i < S.nagents; i++) {
		agent *a = &S.agents[i];
		context_forget(&a->a_ctx);
		::munmap(a->a_map, AGENT_STACK);
		delete a->a_standin;
		for (void *p : a->a_local)
			std::free(p);
	}
	for (void *&p : S.driver_local) {
		std::free(p);
		p = nullptr;
	}
	delete[] S.agents;
	S.agents = nullptr;
	S.nagents = 0;
	sim_detail::g_sim_on = false;
	tl_sim_thread = false;
	sigaction(SIGABRT, &g_old_abrt, nullptr);
}

void
sim_drive(bool (*pred)(void *arg), void *arg) noexcept
{
	if (!tl_sim_thread || S.cur != nullptr) {
		sim_uncontrolled("another OS thread: ", "a wait");
		return; // the caller blocks the OS thread as usual
	}
	while (!pred(arg))
		if (!sim_step())
			deadlock();
}

namespace {
struct word_wait {
	std::atomic<uint32_t> *w;
	uint32_t val;
	uint64_t deadline;
};
} // namespace

void
sim_wait_word(std::atomic<uint32_t> *word, uint32_t val,
    uint64_t deadline_ns) noexcept
{
	word_wait ww{word, val, deadline_ns};
	uint64_t saved = S.driver_deadline;
	if (deadline_ns != 0 && deadline_ns < S.driver_deadline)
		S.driver_deadline = deadline_ns;
	sim_drive([](void *a) {
		auto *x = static_cast<word_wait *>(a);
		return x->w->load(std::memory_order_acquire) != x->val ||
		    (x->deadline != 0 && S.now >= x->deadline);
	}, &ww);
	S.driver_deadline = saved;
}

void
sim_spin() noexcept
{
	if (!tl_sim_thread) {
		sim_uncontrolled("another OS thread: ", "a spin-wait");
		::sched_yield();
		return;
	}
	agent *a = S.cur;
	if (a == nullptr) {
		// The driver waits for an agent: let them run.
		if (!sim_step())
			deadlock();
		return;
	}
	a->a_state = A_SPIN;
	a->a_spin_epoch = S.progress;
	agent_yield(a, EV_SPIN);
	a->a_state = A_RUN;
	after_resume(true);
}

namespace {

void
cpu_point(int ev) noexcept
{
	if (!tl_sim_thread) {
		sim_uncontrolled("another OS thread: ", "a scheduling point");
		return;
	}
	agent *a = S.cur;
	if (a == nullptr || a->a_pc == nullptr)
		return; // the driver or the hardclock: not a CPU's thread
	a->a_state = A_RUN;
	agent_yield(a, ev);
	after_resume(true);
}

} // namespace

void
sim_yield_point() noexcept
{
	cpu_point(EV_YIELD);
}

uint64_t
sim_clock_ns() noexcept
{
	return S.now;
}

void
sim_ipi(pcpu *pc) noexcept
{
	if (!tl_sim_thread)
		sim_uncontrolled("another OS thread: ", "an IPI");
	pc->pc_ipi_pending.store(1, std::memory_order_relaxed);
}

bool
sim_timer_arm(uint64_t deadline_ns) noexcept
{
	pcpu *pc = curpcpu_fast();
	if (pc == nullptr)
		return false;
	agent *a = agent_of(pc);
	if (deadline_ns < a->a_timer)
		a->a_timer = deadline_ns;
	return true;
}

void
sim_set_clock_intr(void (*fn)(int cpu) noexcept) noexcept
{
	g_clock_fn.store(fn, std::memory_order_release);
}

void *
sim_agent_local(int key, std::size_t size) noexcept
{
	void **slot = S.cur != nullptr ? &S.cur->a_local[key] :
					 &S.driver_local[key];
	if (*slot == nullptr) {
		*slot = std::calloc(1, size);
		if (*slot == nullptr)
			panic("sim: no memory for per-agent state");
	}
	return *slot;
}

void
sim_uncontrolled(const char *what, const char *what2) noexcept
{
	// Possibly from another OS thread, racing with the driver: a counter
	// and a flag, good enough to warn; the run is untrustworthy anyway.
	S.uncontrolled++;
	S.uncontrolled_flag = true;
	if (S.uncontrolled_what[0] == '\0') {
		std::snprintf(S.uncontrolled_what, sizeof(S.uncontrolled_what),
		    "%s%s", what, what2);
		printf_diag("sim: %s at step %" PRIu64 " is not controlled by the "
		    "simulation: replay of this run cannot be trusted",
		    S.uncontrolled_what, S.step);
	}
}

// ---- runtime/sim.h

namespace sim {

const char *
event_name(int ev) noexcept
{
	return ev >= 0 && ev < EV_COUNT_ ? event_names[ev] : "?";
}

void
point_slow() noexcept
{
	cpu_point(EV_POINT);
}

void
lock_point(bool acquire) noexcept
{
	cpu_point(acquire ? EV_LOCK : EV_UNLOCK);
}

void
check(bool ok, const char *what, const char *file, int line) noexcept
{
	if (ok)
		return;
	if (!sim_active())
		panic("sim::check() failed: %s @ %s:%d", what, file, line);
	std::snprintf(S.fail_buf, sizeof(S.fail_buf), "check failed: %s @ %s:%d",
	    what, file, line);
	sim_fail(S.fail_buf, false);
}

uint64_t
now_ns() noexcept
{
	if (sim_active())
		return S.now - S.boot;
	return clock_ns();
}

uint64_t
steps() noexcept
{
	return S.step;
}

} // namespace sim

// ---- sim_log

std::string
sim_log::to_text() const
{
	std::string out;
	char buf[256];
	std::snprintf(buf, sizeof(buf),
	    "usmp-sim-log 1\nseed %" PRIu64 "\nstrategy %s\npct_depth %d\n"
	    "pct_steps %" PRIu64 "\npreempt_bound %d\nintr_hold_max %d\n"
	    "ncpus %d\nuncontrolled %" PRIu64 "\n",
	    seed, strategy_name(strategy), pct_depth, pct_steps, preempt_bound,
	    intr_hold_max, ncpus, uncontrolled);
	out += buf;
	if (!uncontrolled_what.empty()) // the rest of the line
		out += "uncontrolled_what " + uncontrolled_what + "\n";
	out += "steps " + std::to_string(steps.size()) + "\n";
	out += "# step agent thread event flags vtime_ns\n";
	for (const sim::step &s : steps) {
		std::snprintf(buf, sizeof(buf), "%" PRIu64 " %d %d %s %d %" PRIu64 "\n",
		    s.s_step, s.s_agent, s.s_tid, sim::event_name(s.s_event),
		    s.s_flags, s.s_vtime);
		out += buf;
	}
	return out;
}

bool
sim_log::from_text(const std::string &text, std::string *error)
{
	auto fail = [&](const std::string &why) {
		if (error != nullptr)
			*error = why;
		return false;
	};
	steps.clear();
	std::size_t pos = 0, nsteps = 0;
	int lineno = 0;
	bool header = true;
	while (pos < text.size()) {
		std::size_t end = text.find('\n', pos);
		if (end == std::string::npos)
			end = text.size();
		std::string line = text.substr(pos, end - pos);
		pos = end + 1;
		lineno++;
		if (line.empty() || line[0] == '#')
			continue;
		if (lineno == 1) {
			if (line != "usmp-sim-log 1")
				return fail("not a usmp step log (version 1)");
			continue;
		}
		char key[32], val[64];
		if (header && std::sscanf(line.c_str(), "%31s %63s", key, val) == 2 &&
		    !(key[0] >= '0' && key[0] <= '9')) {
			std::string k = key;
			if (k == "seed")
				seed = std::strtoull(val, nullptr, 10);
			else if (k == "strategy") {
				if (!strategy_parse(val, &strategy))
					return fail("unknown strategy " + std::string(val));
			} else if (k == "pct_depth")
				pct_depth = std::atoi(val);
			else if (k == "pct_steps")
				pct_steps = std::strtoull(val, nullptr, 10);
			else if (k == "preempt_bound")
				preempt_bound = std::atoi(val);
			else if (k == "ncpus")
				ncpus = std::atoi(val);
			else if (k == "uncontrolled")
				uncontrolled = std::strtoull(val, nullptr, 10);
			else if (k == "uncontrolled_what")
				uncontrolled_what = line.substr(k.size() + 1);
			else if (k == "intr_hold_max")
				intr_hold_max = std::atoi(val);
			else if (k == "steps")
				nsteps = std::strtoull(val, nullptr, 10);
			else
				return fail("line " + std::to_string(lineno) +
				    ": unknown key " + k);
			continue;
		}
		header = false;
		sim::step s;
		char ev[32];
		unsigned long long st, vt;
		if (std::sscanf(line.c_str(), "%llu %d %d %31s %d %llu", &st,
			&s.s_agent, &s.s_tid, ev, &s.s_flags, &vt) != 6)
			return fail("line " + std::to_string(lineno) + ": malformed step");
		s.s_step = st;
		s.s_vtime = vt;
		s.s_event = -1;
		for (int e = 0; e < EV_COUNT_; e++)
			if (std::strcmp(ev, event_names[e]) == 0)
				s.s_event = e;
		if (s.s_event < 0)
			return fail("line " + std::to_string(lineno) +
			    ": unknown event " + ev);
		steps.push_back(s);
	}
	if (steps.size() != nsteps)
		return fail("the log says " + std::to_string(nsteps) +
		    " steps and has " + std::to_string(steps.size()));
	return true;
}

std::string
sim_log::trust_warning() const
{
	if (trustworthy())
		return {};
	return std::to_string(uncontrolled) + " event(s) the simulation does "
	    "not control (the first: " + uncontrolled_what + "): real I/O or "
	    "another OS thread; a replay of this run cannot be trusted to "
	    "reproduce it";
}

bool
sim_log::write_file(const char *path) const
{
	std::FILE *f = std::fopen(path, "w");
	if (f == nullptr)
		return false;
	std::string t = to_text();
	bool ok = std::fwrite(t.data(), 1, t.size(), f) == t.size();
	return std::fclose(f) == 0 && ok;
}

bool
sim_log::read_file(const char *path, std::string *error)
{
	std::FILE *f = std::fopen(path, "r");
	if (f == nullptr) {
		if (error != nullptr)
			*error = std::string("cannot open ") + path;
		return false;
	}
	std::string t;
	char buf[65536];
	std::size_t n;
	while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0)
		t.append(buf, n);
	std::fclose(f);
	return from_text(t, error);
}

long
sim_log::first_difference(const sim_log &o) const noexcept
{
	if (seed != o.seed || strategy != o.strategy || ncpus != o.ncpus)
		return 0;
	std::size_t n = std::min(steps.size(), o.steps.size());
	for (std::size_t i = 0; i < n; i++)
		if (!(steps[i] == o.steps[i]))
			return static_cast<long>(i);
	if (steps.size() != o.steps.size())
		return static_cast<long>(n);
	return -1;
}

// ---- explore(), run_seed(), replay(): one forked child per run.

namespace sim {

namespace {

// How long a child may take (wall clock) before it is taken for a hang: a
// loop with no scheduling point never hands back.
constexpr int CHILD_TIMEOUT_S = 60;

result
run_child(machine_config cfg, const std::function<void()> &scenario)
{
	result r;
	r.seed = cfg.sim.replay != nullptr ? cfg.sim.replay->seed : cfg.sim.seed;
	r.runs = 1;
	int fd = ::memfd_create("usmp-sim", MFD_CLOEXEC);
	if (fd < 0) {
		r.failed = true;
		r.reason = "memfd_create failed";
		return r;
	}
	std::fflush(nullptr);
	pid_t pid = ::fork();
	if (pid < 0) {
		::close(fd);
		r.failed = true;
		r.reason = "fork failed";
		return r;
	}
	if (pid == 0) {
		// The parent's handlers (Catch2's) would report our abort.
		for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTERM, SIGINT})
			::signal(sig, SIG_DFL);
		g_child_fd = fd;
		sim_log log;
		cfg.simulate = true;
		cfg.sim.log = &log;
		int rc = run_main(cfg, [&]() -> int {
			scenario();
			return 0;
		});
		// The run is over: S still holds its outcome.
		S.log = &log;
		write_outcome(rc == 0 ? "" : "main returned non-zero");
		std::fflush(nullptr);
		::_exit(rc == 0 ? 0 : 1);
	}
	auto deadline = std::chrono::steady_clock::now() +
	    std::chrono::seconds(CHILD_TIMEOUT_S);
	int status = 0;
	for (;;) {
		pid_t w = ::waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			status = -1;
			break;
		}
		if (std::chrono::steady_clock::now() > deadline) {
			::kill(pid, SIGKILL);
			::waitpid(pid, &status, 0);
			r.failed = true;
			r.reason = "timeout: the run took more than 60 s (a loop "
				   "without scheduling points?)";
			break;
		}
		std::this_thread::sleep_for(std::chrono::milliseconds(2));
	}
	std::string text;
	::lseek(fd, 0, SEEK_SET);
	char buf[65536];
	ssize_t n;
	while ((n = ::read(fd, buf, sizeof(buf))) > 0)
		text.append(buf, static_cast<std::size_t>(n));
	::close(fd);
	std::string reason;
	if (text.compare(0, 7, "reason ") == 0) {
		std::size_t nl = text.find('\n');
		reason = text.substr(7, nl - 7);
		std::string err;
		if (!r.log.from_text(text.substr(nl + 1), &err) && reason.empty())
			reason = "unreadable log: " + err;
	}
	if (r.failed)
		return r;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && reason.empty())
		return r;
	r.failed = true;
	if (!reason.empty())
		r.reason = reason;
	else if (WIFSIGNALED(status))
		r.reason = "killed by signal " + std::to_string(WTERMSIG(status));
	else
		r.reason = "exit status " + std::to_string(WEXITSTATUS(status));
	return r;
}

} // namespace

result
run_seed(machine_config cfg, uint64_t seed, const std::function<void()> &scenario)
{
	cfg.sim.seed = seed;
	cfg.sim.replay = nullptr;
	return run_child(cfg, scenario);
}

result
explore(machine_config cfg, int seeds, const std::function<void()> &scenario)
{
	if (const char *s = std::getenv("USMP_SIM_STRATEGY")) {
		sim_strategy st;
		if (strategy_parse(s, &st))
			cfg.sim.strategy = st;
	}
	if (const char *s = std::getenv("USMP_SIM_PCT_STEPS"))
		cfg.sim.pct_steps = std::strtoull(s, nullptr, 10);
	uint64_t first = cfg.sim.seed;
	if (const char *s = std::getenv("USMP_SIM_SEED")) {
		first = std::strtoull(s, nullptr, 10);
		seeds = 1;
	}
	result r;
	bool auto_k = cfg.sim.pct_steps == 0;
	for (int i = 0; i < seeds; i++) {
		r = run_seed(cfg, first + static_cast<uint64_t>(i), scenario);
		r.runs = i + 1;
		if (r.failed)
			return r;
		// PCT spreads its change points over the length of a run.
		if (auto_k && !r.log.steps.empty())
			cfg.sim.pct_steps = r.log.steps.size();
	}
	return r;
}

result
replay(machine_config cfg, const sim_log &log, const std::function<void()> &scenario)
{
	cfg.sim.replay = &log;
	cfg.ncpus = log.ncpus;
	if (!log.trustworthy())
		printf_diag("sim: replaying seed %" PRIu64 ": the log records %s",
		    log.seed, log.trust_warning().c_str());
	return run_child(cfg, scenario);
}

} // namespace sim

} // namespace usmp

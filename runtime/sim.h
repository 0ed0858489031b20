// Deterministic simulation: the same runtime, the same program, with every
// CPU multiplexed on one OS thread, every scheduling choice taken from a
// seeded generator, and virtual time.
//
//     usmp::machine_config cfg{.ncpus = 2, .simulate = true};
//     auto r = usmp::sim::explore(cfg, 100, [] {        // seeds 1..100
//         int x = 0;
//         usmp::green_thread a([&] { int v = x; usmp::sim::point(); x = v + 1; });
//         usmp::green_thread b([&] { int v = x; usmp::sim::point(); x = v + 1; });
//         a.join(); b.join();
//         usmp::sim::check(x == 2, "lost update");
//     });
//     if (r.failed) { /* r.seed, r.reason, r.log: replay(cfg, r.log, ...) */ }
//
// What the simulation controls.  A CPU runs until it reaches a scheduling
// point, then hands the OS thread back to the simulation, which picks the
// next CPU to run (and may ask the one it resumes to preempt its thread).
// The points: sim::point(), thread_yield(), the sleep mutex's lock and
// unlock, every spin-wait (a spinning CPU yields: it would spin for ever on
// one OS thread), and the idle loop's park.  Interrupts and the preemption
// IPI are delivered at those points; the hardclock is one more simulated
// agent, run when virtual time reaches its next tick or timeout.  Virtual
// time advances by sim_config::step_ns each step and jumps to the next
// deadline (timeout, sleep timer, callout event timer) when every CPU is
// idle; when nothing is pending and threads still wait, that is a deadlock.
//
// Interrupt timing.  An interrupt that is due when a CPU reaches a point
// (its event timer, hence callouts; a queued interrupt; a preemption IPI)
// is held back for 0..sim_config::intr_hold_max of that CPU's points, the
// number drawn from the seed: where a callout lands among a thread's steps
// is a seeded, bounded choice (steps flagged STEP_INTR_HELD).
//
// What it does not control, and flags as "replay cannot be trusted": an
// OS thread other than the simulation's calling into the runtime (waking a
// thread, taking a lock, waiting), and real I/O (every usmp::io call but
// sleep: a plain system call in a simulation, there is no io_uring
// controller, and its outcome and duration come from the host).  The log
// counts them, flags the step after each, names the first in its header;
// the run, its failure banner and replay() print sim_log::trust_warning().
//
// Known weaknesses.  thread_local data is per OS thread, hence shared by
// every simulated CPU: what your code keeps in thread_local as per-CPU data
// is one copy (WITNESS's per-CPU spin-lock lists are swapped per CPU by the
// simulation; yours are not: index an array by curcpu() while pinned).
// Lock profiling's per-CPU record tables are one table too (sync/
// lock_profile.cc: its slots are atomic, so the counts stay right; its
// hold and wait times are the host's, not virtual).  A loop without a
// scheduling point (no lock, no yield, no sim::point()) never hands back:
// the run is ended as a hang by explore()'s 60 s child timeout.
//
// Failures.  A failed sim::check(), a deadlock, a livelock (max_steps), a
// panic or KASSERT, a WITNESS report in abort mode: each prints the seed,
// the strategy and the command that replays the run, then ends the process
// (the simulated world cannot be unwound: threads are stuck holding locks).
// That is why explore() and replay() run each seed in a forked child: the
// caller (a Catch2 test) survives, and gets the failing seed and log.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/machine.h"

namespace usmp {

namespace sim_detail {
extern bool g_sim_on; // (c) while a simulated machine runs
} // namespace sim_detail

// True while a simulated machine runs: the one predicate every hook of the
// simulation in the runtime tests (a predictable branch on a global).
inline bool
sim_active() noexcept
{
	return __builtin_expect(sim_detail::g_sim_on, false);
}

namespace sim {

// A scheduling point: the simulation may run another CPU here, or preempt
// the calling thread.  Without a simulation: nothing.  Context: any.
inline void point() noexcept;

// One step of the step log.
struct step {
	uint64_t s_step = 0;
	int s_agent = 0;   // CPU, or -1 the hardclock, -2 a virtual time jump
	int s_tid = 0;     // thread running on it when resumed (relative id)
	int s_event = 0;   // why it handed back (event_name())
	int s_flags = 0;   // STEP_* below
	uint64_t s_vtime = 0; // virtual ns since boot when it was resumed
	bool operator==(const step &) const = default;
};
enum : int {
	STEP_PREEMPT = 0x1,      // the simulation asked for a preemption here
	STEP_CHANGE_POINT = 0x2, // PCT: the thread's priority dropped here
	STEP_UNCONTROLLED = 0x4, // something the simulation does not control
	                         // happened before this step
	STEP_INTR_HELD = 0x8,    // an interrupt was due on this CPU and the
	                         // generator held it back at this point
};
const char *event_name(int event) noexcept;

} // namespace sim

// The step log of one run: the configuration that made it and every step.
// Written as text, one step a line, and read back for replay.
class sim_log {
public:
	uint64_t seed = 0;
	sim_strategy strategy = sim_strategy::random;
	int pct_depth = 0;
	uint64_t pct_steps = 0;
	int preempt_bound = -1;
	int intr_hold_max = 8;
	int ncpus = 0;
	uint64_t uncontrolled = 0; // events the simulation did not control
	std::string uncontrolled_what; // the first of them, e.g. "usmp::io::read"
	std::vector<sim::step> steps;

	// Whether a replay of this log can be trusted (no uncontrolled event).
	bool trustworthy() const noexcept { return uncontrolled == 0; }
	// Empty if trustworthy(); else the warning to show the user (how many
	// uncontrolled events, the first one, what it means for replay).
	std::string trust_warning() const;
	std::string to_text() const;
	// Parse to_text()'s output; false (and *error) if malformed.
	bool from_text(const std::string &text, std::string *error = nullptr);
	bool write_file(const char *path) const;
	bool read_file(const char *path, std::string *error = nullptr);
	// The first step where the two logs differ, or -1.
	long first_difference(const sim_log &o) const noexcept;
	bool operator==(const sim_log &o) const noexcept
	{
		return first_difference(o) < 0;
	}
};

namespace sim {

// A user assertion inside a simulated run: when !ok, the run fails with
// `what` (seed, strategy and replay command printed, process ended: see
// above).  Outside a simulation it panics.  Context: any.
void check(bool ok, const char *what, const char *file = __builtin_FILE(),
    int line = __builtin_LINE()) noexcept;

// The outcome of runs in forked children.
struct result {
	bool failed = false;
	uint64_t seed = 0;     // the failing seed (or the last one run)
	int runs = 0;          // seeds run
	std::string reason;    // "deadlock", "check failed: ...", "panic", ...
	sim_log log;           // the failing run's log (or the last run's)
};

// Run `scenario` as the main green thread of a simulated machine `cfg`
// (simulate is forced on) with seeds cfg.sim.seed, cfg.sim.seed + 1, ...,
// `seeds` of them, each in a forked child, until one fails.  The
// environment overrides, so that a printed replay line works unchanged:
// USMP_SIM_SEED (run that seed only), USMP_SIM_STRATEGY (random|pct),
// USMP_SIM_PCT_STEPS (PCT's k).  With cfg.sim.pct_steps 0, PCT's k is
// learned: each run's length becomes the next one's k (the failing run's
// is in result.log.pct_steps: run_seed() needs it to reproduce the run).
// Context: a foreign OS thread, no machine running.
result explore(machine_config cfg, int seeds, const std::function<void()> &scenario);

// Run one seed (in a forked child).
result run_seed(machine_config cfg, uint64_t seed,
    const std::function<void()> &scenario);

// Replay `log`: its seed and strategy, its recorded choices fed back, every
// step checked against the record (a difference fails the run as
// "nondeterminism at step N").  In a forked child.
result replay(machine_config cfg, const sim_log &log,
    const std::function<void()> &scenario);

// The virtual (or, outside a simulation, real) time since boot, in ns.
uint64_t now_ns() noexcept;
// Steps taken so far by the running simulation.
uint64_t steps() noexcept;

// Out of line: the simulated point.
void point_slow() noexcept;

inline void
point() noexcept
{
	if (sim_active())
		point_slow();
}

// Lock points (sync/): before a sleep lock's acquisition, after its
// release.  Context: the lock's.
void lock_point(bool acquire) noexcept;

} // namespace sim

} // namespace usmp

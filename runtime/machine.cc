// The machine: boot, the CPUs' OS threads, shutdown, run().
//
// Boot order: the code map and the fault and preemption handlers (once per
// process), the stack tunables, the pcpus and their idle threads, the
// scheduler, then one OS thread per CPU (pinned, named "usmp cpuN", with an
// alternate signal stack) which enters its idle loop, and the hardclock.
//
// Shutdown: ms_stopping makes every CPU choose its idle thread at its next
// switch (runnable threads are left on their queues, never to run again) and
// makes the idle loops return.  The CPUs meet at a barrier before their OS
// threads end, so that no green thread runs anywhere once any CPU's OS thread
// is gone (a running thread could otherwise signal a dead OS thread).  Then
// the live threads are reported, and the caches are drained.
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <execinfo.h>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "runtime/critical.h"
#include "runtime/internal/idle.h"
#include "runtime/internal/intr_hook.h"
#include "runtime/internal/machine.h"
#include "runtime/internal/seam.h"
#include "runtime/internal/sim.h"
#include "runtime/machine.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/segment.h"
#include "runtime/stack.h"
#include "runtime/thread.h"

namespace usmp {

namespace {

std::mutex g_boot_mtx;
std::vector<std::thread> g_cpu_threads;
std::atomic<int> g_cpus_ready{0};
std::atomic<int> g_cpus_in_idle_exit{0};

// The sysinits (runtime/internal/intr_hook.h), sorted by si_order.
// Written only by static initialisers, before any machine runs.
sysinit *g_sysinits = nullptr;

// Call fn on every sysinit, last registered order first (the stop side).
// The list does not change while a machine runs.
template <class F>
void
sysinits_reverse(F fn) noexcept
{
	sysinit *rev[64];
	int n = 0;
	for (sysinit *h = g_sysinits; h != nullptr; h = h->si_next) {
		if (n == 64)
			panic("machine: more than 64 sysinits");
		rev[n++] = h;
	}
	while (n > 0)
		fn(rev[--n]);
}

// A CPU's life on its OS thread (or, simulated, on its agent: sim_boot()),
// from its start hooks to its stop hooks.
void
cpu_run(pcpu *pc) noexcept
{
	for (sysinit *h = g_sysinits; h != nullptr; h = h->si_next)
		if (h->si_cpu_start != nullptr)
			h->si_cpu_start(pc);
	g_cpus_ready.fetch_add(1, std::memory_order_release);

	sched_idle_loop(pc);
	// Cancel and drain this CPU's interrupt sources (I/O in flight)
	// while it is still a CPU: their handlers wake threads.
	sysinits_reverse([pc](sysinit *h) {
		if (h->si_cpu_stop != nullptr)
			h->si_cpu_stop(pc);
	});
}

void
cpu_main(pcpu *pc) noexcept
{
	usmp_tl_pcpu = pc;
	pc->pc_errnop = &errno;
	pc->pc_os_tid = static_cast<int>(syscall(SYS_gettid));
	char name[16];
	std::snprintf(name, sizeof(name), "usmp cpu%d", pc->pc_cpuid);
	pthread_setname_np(pthread_self(), name);
	if (g_machine.ms_config.pin)
		pc->pc_pu = topology_pin(pc->pc_cpuid);
	fault_init_thread();
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGURG);
	pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
	cpu_run(pc);

	// The exit barrier (see above).
	g_cpus_in_idle_exit.fetch_add(1, std::memory_order_acq_rel);
	while (g_cpus_in_idle_exit.load(std::memory_order_acquire) <
	    g_machine.ms_ncpus)
		std::this_thread::yield();
	usmp_tl_pcpu = nullptr;
}

} // namespace

std::atomic<bool> g_machine_stopping{false};
std::atomic<intr_deliver_fn> g_intr_deliver{nullptr};

// A thread's state in words, for diagnostics (runtime/internal/machine.h).
const char *
td_state_name(td_state_t st, uint8_t inhib) noexcept
{
	switch (st) {
	case TDS_INACTIVE:
		return "inactive";
	case TDS_INHIBITED:
		return (inhib & TDI_JOIN)       ? "joining" :
		    (inhib & TDI_SLEEPING)      ? "sleeping" :
		    (inhib & TDI_LOCK)          ? "blocked" :
		    (inhib & TDI_IWAIT)         ? "iwait" :
						  "inhibited";
	case TDS_CAN_RUN:
		return "can run";
	case TDS_RUNQ:
		return "runnable";
	case TDS_RUNNING:
		return "running";
	}
	return "?";
}

void
sysinit_register(sysinit *h) noexcept
{
	sysinit **pp = &g_sysinits;
	while (*pp != nullptr && (*pp)->si_order <= h->si_order)
		pp = &(*pp)->si_next;
	h->si_next = *pp;
	*pp = h;
}

void
sysinit_tick(uint64_t ticks) noexcept
{
	for (sysinit *h = g_sysinits; h != nullptr; h = h->si_next)
		if (h->si_tick != nullptr)
			h->si_tick(ticks);
}

bool
sysinit_tick_wanted() noexcept
{
	for (sysinit *h = g_sysinits; h != nullptr; h = h->si_next)
		if (h->si_tick_wanted != nullptr && h->si_tick_wanted())
			return true;
	return false;
}

bool
machine_running() noexcept
{
	return g_machine.ms_running.load(std::memory_order_acquire);
}

int
mp_ncpus() noexcept
{
	return machine_running() ? g_machine.ms_ncpus : 0;
}

pcpu *
pcpu_find(int cpu) noexcept
{
	if (g_machine.ms_pcpus == nullptr || cpu < 0 || cpu >= g_machine.ms_ncpus)
		return nullptr;
	return &g_machine.ms_pcpus[cpu];
}

int
machine_boot(const machine_config &cfg) noexcept
{
	std::lock_guard<std::mutex> guard(g_boot_mtx);
	if (g_machine.ms_running.load())
		return EBUSY;
	if (curpcpu_fast() != nullptr)
		return EBUSY;
	int ncpus = cfg.ncpus > 0 ? cfg.ncpus : cfg.simulate ? 4 : topology_npus();
	if (cfg.ncpus < 0 || ncpus > 1024) {
		printf_diag("machine_boot(): bad CPU count %d", cfg.ncpus);
		return EINVAL;
	}

	static std::once_flag once;
	std::call_once(once, [] {
		void *frames[4];
		backtrace(frames, 4); // load libgcc now: panic() must not allocate
		codemap_init();
	});
	// Every boot: a forked child may have reset the handlers (death tests
	// do), and both calls are idempotent.
	fault_init();
	preempt_init();
	seg_set_commit_limit(cfg.commit_limit);

	g_machine.ms_config = cfg;
	g_machine.ms_ncpus = ncpus;
	// Simulated (runtime/sim.cc): on before the controller's boot hook,
	// which then declines (no io_uring under the simulation).
	if (cfg.simulate)
		sim_prepare(cfg, ncpus);
	g_machine_stopping.store(false);
	stack_params sp;
	sp.default_size = cfg.stack_size;
	sp.cache_low = cfg.stack_cache_low;
	sp.cache_high = cfg.stack_cache_high;
	sp.malloc_stacks = cfg.malloc_stacks;
	stack_configure(sp);

	g_machine.ms_pcpus = new (std::align_val_t(64)) pcpu[ncpus];
	g_machine.ms_threads = new thread_list[ncpus + 1];
	for (int c = 0; c < ncpus; c++) {
		pcpu *pc = &g_machine.ms_pcpus[c];
		pc->pc_cpuid = c;
		pc->pc_idlethread = thread_make_idle(c);
		pc->pc_curthread = pc->pc_idlethread;
	}
	counters_boot(g_machine.ms_pcpus, ncpus);
	ktr_boot(ncpus);
	sched_boot(cfg, ncpus);
	// The interrupt controller (interrupts/ring.cc): one io_uring per
	// CPU, and the idle backend that waits in it.
	static bool controller_registered = false; // (g_boot_mtx)
	if (!controller_registered) {
		sysinit_register(intr_controller_sysinit());
		controller_registered = true;
	}
	for (sysinit *h = g_sysinits; h != nullptr; h = h->si_next)
		if (h->si_machine_boot != nullptr)
			h->si_machine_boot(ncpus);

	g_cpus_ready.store(0);
	g_cpus_in_idle_exit.store(0);
	g_cpu_threads.clear();
	if (cfg.simulate) {
		// No OS threads: each CPU is an agent of the simulation on this
		// OS thread, started when the simulation first runs it.
		idle_backend_install(sim_idle_backend());
		sim_boot(g_machine.ms_pcpus, ncpus, cpu_run);
	} else {
		g_cpu_threads.reserve(ncpus);
		for (int c = 0; c < ncpus; c++) {
			pcpu *pc = &g_machine.ms_pcpus[c];
			g_cpu_threads.emplace_back(cpu_main, pc);
			pc->pc_pthread = g_cpu_threads.back().native_handle();
		}
		while (g_cpus_ready.load(std::memory_order_acquire) < ncpus)
			std::this_thread::yield();
	}
	g_machine.ms_running.store(true, std::memory_order_release);
	hardclock_start();
	for (sysinit *h = g_sysinits; h != nullptr; h = h->si_next)
		if (h->si_boot != nullptr)
			h->si_boot();
	dump_signal_start(cfg.dump_signal);
	return 0;
}

int
machine_shutdown() noexcept
{
	std::lock_guard<std::mutex> guard(g_boot_mtx);
	if (!g_machine.ms_running.load())
		return 0;
	if (curpcpu_fast() != nullptr)
		panic("machine_shutdown() called from a green thread \"%s\"",
		    curthread_fast()->td_name);
	dump_signal_stop();
	// The hooks end their green threads (softclocks, taskqueue threads)
	// while the machine still runs, in the reverse order of boot.
	sysinits_reverse([](sysinit *h) {
		if (h->si_shutdown != nullptr)
			h->si_shutdown();
	});
	g_machine_stopping.store(true, std::memory_order_seq_cst);
	hardclock_stop();
	for (int c = 0; c < g_machine.ms_ncpus; c++) {
		pcpu *pc = &g_machine.ms_pcpus[c];
		// Wake it if parked, and signal it if running (it then owes a
		// preemption and reaches its idle loop at its next switch).
		sched_shutdown_kick(c);
		ipi_preempt(pc);
	}
	if (sim_active())
		sim_wait_cpus_done();
	for (auto &t : g_cpu_threads)
		t.join();
	g_cpu_threads.clear();
	// Every CPU drained its ring in si_cpu_stop; now nothing can wake
	// one (the hardclock is gone), so the rings can close.
	sysinits_reverse([](sysinit *h) {
		if (h->si_machine_shutdown != nullptr)
			h->si_machine_shutdown();
	});

	int live = 0;
	for (int i = 0; i <= g_machine.ms_ncpus; i++) {
		for (thread *td = g_machine.ms_threads[i].tl_head; td != nullptr;
		     td = td->td_allnext) {
			if (live == 0)
				printf_diag("machine_shutdown(): green threads still alive:");
			live++;
			printf_diag("  \"%s\" (tid %d) %s%s%s%s, cpu%d, pri %d%s",
			    td->td_name, td->td_tid,
			    td_state_name(td->td_state, td->td_inhibitors),
			    td->td_wmesg != nullptr ? " on \"" : "",
			    td->td_wmesg != nullptr ? td->td_wmesg : "",
			    td->td_wmesg != nullptr ? "\"" : "", td->td_cpu,
			    td->td_priority,
			    td->td_lock.load() == &blocked_lock ? " (switching)" : "");
		}
	}
	if (live != 0) {
		printf_diag("machine_shutdown(): %d green thread%s left behind "
		    "(they never run again)", live, live == 1 ? "" : "s");
		for (int c = 0; c < g_machine.ms_ncpus; c++)
			sched_dump_cpu(c);
	}

	counters_shutdown();
	g_machine.ms_running.store(false, std::memory_order_release);
	stack_drain_all();
	sched_shutdown();
	for (int c = 0; c < g_machine.ms_ncpus; c++)
		delete g_machine.ms_pcpus[c].pc_idlethread;
	::operator delete[](g_machine.ms_pcpus, std::align_val_t(64));
	g_machine.ms_pcpus = nullptr;
	delete[] g_machine.ms_threads;
	g_machine.ms_threads = nullptr;
	g_machine.ms_ncpus = 0;
	if (sim_active())
		sim_teardown();
	return live;
}

int
run_main(const machine_config &cfg, std::function<int()> main_fn)
{
	int error = machine_boot(cfg);
	if (error != 0) {
		printf_diag("run(): cannot boot the machine: %s", std::strerror(error));
		return 70;
	}
	struct main_call {
		std::function<int()> *mc_fn;
		int mc_result = 0;
	} call{&main_fn};
	thread *td;
	thread_attr attr;
	attr.name = "main";
	// usmp's own entry (thread_create_fn): run<F> passes the application's
	// callable through usmp_app_call itself.
	error = thread_create_fn(&td, attr, [](void *p) {
		auto *c = static_cast<main_call *>(p);
		c->mc_result = (*c->mc_fn)();
	}, &call);
	if (error != 0) {
		printf_diag("run(): cannot create the main thread: %s",
		    std::strerror(error));
		machine_shutdown();
		return 70;
	}
	thread_join(td);
	machine_shutdown();
	return call.mc_result;
}

} // namespace usmp

// Thread dumps (runtime/dump.h) and the dump signal.
//
// The dump signal (machine_config::dump_signal, SIGQUIT by default) cannot
// dump from its handler: a dump walks lists under spin locks, formats with
// stdio and allocates, none of which is async-signal-safe, and the signal
// may land on a CPU inside a critical section or on any OS thread of the
// program.  So the handler only write(2)s one byte to a pipe, which is
// async-signal-safe, and a dumper OS thread (no CPU; made at boot, ended at
// shutdown) reads the pipe and dumps to stderr.  The dump then runs even if
// every CPU is stuck (a deadlock is what people send SIGQUIT for).
//
// Protocol of the dumper: machine_boot() makes the pipe and the thread,
// then installs the handler (keeping the old action); machine_shutdown()
// first restores the old action, clears g_dump_fd (the handler reads it
// once, relaxed), writes 'x' to the pipe, joins the thread and closes the
// pipe.  A handler that read the descriptor just before it was cleared may
// write to it after the close: EBADF, or one stray byte into whatever
// reused the number in that instant; a signal racing shutdown is accepted
// to be that rare.
#include "runtime/dump.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "runtime/counters.h"
#include "runtime/critical.h"
#include "runtime/internal/machine.h"
#include "runtime/internal/seam.h"
#include "runtime/machine.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/thread.h"

// The gdb extension, inline in .debug_gdb_scripts (format 4: a Python script,
// its name on the first line), so that gdb auto-loads it with the library.
// This file is always linked (machine_boot() calls dump_signal_start()).
#ifdef USMP_GDB_SCRIPT
asm(".pushsection \".debug_gdb_scripts\", \"MS\",@progbits,1\n"
    ".byte 4\n"
    ".ascii \"gdb.inlined-script.usmp-gdb.py\\n\"\n"
    ".incbin \"" USMP_GDB_SCRIPT "\"\n"
    ".byte 0\n"
    ".popsection\n");
#endif

namespace usmp {

namespace {

std::atomic<thread_dump_locks_fn> g_locks_hook{nullptr};
std::atomic<thread_dump_blocked_fn> g_blocked_hook{nullptr};

// The threads a dump lists, read first, under their lists' locks: a blocked
// thread's owner is named from here, by pointer, so that the dump never
// dereferences an owner that may have exited since.
struct known_thread {
	const thread *kt_td;
	int kt_tid;
	char kt_name[sizeof(thread::td_name)];
};
counter_u64 c_dumps("kern.dump.count", "thread dumps written");

std::atomic<int> g_dump_fd{-1}; // the pipe's write end, for the handler
int g_dump_rfd = -1;
int g_dump_sig = 0;
struct sigaction g_dump_oldact;
std::thread g_dumper;

void
emit_line(void *ctx, const char *line)
{
	auto *s = static_cast<std::string *>(ctx);
	*s += "      ";
	*s += line;
	*s += '\n';
}

// One thread's lines.  Requires its live-thread list's lock (td cannot be
// freed meanwhile).
void
describe(std::string &out, const thread *td,
    const std::vector<known_thread> &known)
{
	// Racy reads (see dump.h): one load of each field.
	td_state_t st = __atomic_load_n(&td->td_state, __ATOMIC_RELAXED);
	uint8_t inhib = __atomic_load_n(&td->td_inhibitors, __ATOMIC_RELAXED);
	int cpu = __atomic_load_n(&td->td_cpu, __ATOMIC_RELAXED);
	int pri = __atomic_load_n(&td->td_priority, __ATOMIC_RELAXED);
	int base = __atomic_load_n(&td->td_base_pri, __ATOMIC_RELAXED);
	int lend = __atomic_load_n(&td->td_lend_pri, __ATOMIC_RELAXED);
	const void *wchan = __atomic_load_n(&td->td_wchan, __ATOMIC_RELAXED);
	const char *wmesg = __atomic_load_n(&td->td_wmesg, __ATOMIC_RELAXED);
	char buf[512];
	int n = std::snprintf(buf, sizeof(buf),
	    "  \"%s\" tid %d: %s, cpu%d, pri %d (base %d", td->td_name,
	    td->td_tid, td_state_name(st, inhib), cpu, pri, base);
	if (lend != 255)
		n += std::snprintf(buf + n, sizeof(buf) - n, ", lent %d", lend);
	n += std::snprintf(buf + n, sizeof(buf) - n, ")");
	if (td->td_pinned != 0 && !(td->td_flags & TDF_IDLETD))
		n += std::snprintf(buf + n, sizeof(buf) - n, ", pinned");
	if (td->td_flags & TDF_BOUND)
		n += std::snprintf(buf + n, sizeof(buf) - n, ", bound to cpu%d",
		    td->td_bound_cpu);
	if (st == TDS_INHIBITED && (wchan != nullptr || wmesg != nullptr))
		n += std::snprintf(buf + n, sizeof(buf) - n, ", wchan %p \"%s\"",
		    wchan, wmesg != nullptr ? wmesg : "");
	thread_dump_blocked_fn blocked =
	    g_blocked_hook.load(std::memory_order_acquire);
	char what[160];
	const thread *owner = nullptr;
	if (st == TDS_INHIBITED && blocked != nullptr &&
	    blocked(td, what, sizeof(what), &owner)) {
		const known_thread *k = nullptr;
		for (const known_thread &kt : known)
			if (kt.kt_td == owner)
				k = &kt;
		if (owner == nullptr)
			std::snprintf(buf + n, sizeof(buf) - n, " (%s, no owner)", what);
		else if (k != nullptr)
			std::snprintf(buf + n, sizeof(buf) - n,
			    " (%s, owner \"%s\" tid %d)", what, k->kt_name, k->kt_tid);
		else
			std::snprintf(buf + n, sizeof(buf) - n,
			    " (%s, owner %p, not a listed thread)", what,
			    static_cast<const void *>(owner));
	}
	out += buf;
	out += '\n';
	thread_dump_locks_fn hook = g_locks_hook.load(std::memory_order_acquire);
	if (hook != nullptr) {
		std::string locks;
		hook(td, emit_line, &locks);
		if (!locks.empty()) {
			out += "    locks held:\n";
			out += locks;
		}
	}
}

// Call fn(td) for every live thread, each list walked under its lock (a
// spin lock: fn must not sleep, and td is valid only during the call).
template <class F>
void
for_each_listed(int ncpus, F fn)
{
	for (int l = 0; l <= ncpus; l++) {
		thread_list &tl = g_machine.ms_threads[l];
		spinlock_enter();
		tl.tl_lock.lock();
		for (thread *td = tl.tl_head; td != nullptr; td = td->td_allnext)
			fn(td);
		tl.tl_lock.unlock();
		spinlock_exit();
	}
}

void
dumper_main() noexcept
{
	pthread_setname_np(pthread_self(), "usmp dumper");
	sigset_t set;
	sigfillset(&set);
	pthread_sigmask(SIG_BLOCK, &set, nullptr); // signals go to other threads
	for (;;) {
		char c;
		ssize_t r = ::read(g_dump_rfd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || c == 'x')
			return;
		thread_dump(stderr);
	}
}

void
dump_handler(int) noexcept
{
	int saved = errno;
	int fd = g_dump_fd.load(std::memory_order_relaxed);
	if (fd >= 0) {
		char c = 'd';
		ssize_t r = ::write(fd, &c, 1); // async-signal-safe
		(void)r;
	}
	errno = saved;
}

} // namespace

void
thread_dump_set_locks_hook(thread_dump_locks_fn fn) noexcept
{
	g_locks_hook.store(fn, std::memory_order_release);
}

void
thread_dump_set_blocked_hook(thread_dump_blocked_fn fn) noexcept
{
	g_blocked_hook.store(fn, std::memory_order_release);
}

void
thread_dump(std::FILE *f) noexcept
{
	std::string out;
	try {
		if (!machine_running()) {
			std::fputs("usmp: thread dump: no machine is running\n", f);
			return;
		}
		int ncpus = g_machine.ms_ncpus;
		char buf[256];
		std::snprintf(buf, sizeof(buf),
		    "usmp: thread dump: %d CPUs, %d green threads, tick %llu\n",
		    ncpus, machine_live_threads(),
		    static_cast<unsigned long long>(ticks()));
		out += buf;
		for (int c = 0; c < ncpus; c++) {
			pcpu *pc = pcpu_find(c);
			thread *cur = __atomic_load_n(&pc->pc_curthread, __ATOMIC_RELAXED);
			std::snprintf(buf, sizeof(buf), "cpu%d: load %d, running ", c,
			    sched_load(c));
			out += buf;
			if (cur == nullptr || (cur->td_flags & TDF_IDLETD)) {
				out += "idle\n";
			} else {
				// The running thread may exit meanwhile: its tid
				// only (its name is in the list below).
				std::snprintf(buf, sizeof(buf), "tid %d\n",
				    __atomic_load_n(&cur->td_tid, __ATOMIC_RELAXED));
				out += buf;
			}
		}
		// Reserved before the lists are locked (no allocation under a
		// spin lock); threads made meanwhile beyond it go unnamed.
		std::vector<known_thread> known;
		known.reserve(static_cast<std::size_t>(machine_live_threads()) +
		    static_cast<std::size_t>(ncpus) + 256);
		for_each_listed(ncpus, [&](const thread *td) {
			known_thread kt{td, td->td_tid, {}};
			std::memcpy(kt.kt_name, td->td_name, sizeof(kt.kt_name));
			kt.kt_name[sizeof(kt.kt_name) - 1] = '\0';
			if (known.size() < known.capacity())
				known.push_back(kt); // no allocation here
		});
		out += "threads:\n";
		for_each_listed(ncpus, [&](const thread *td) {
			describe(out, td, known);
		});
	} catch (...) {
		out += "usmp: thread dump: out of memory\n";
	}
	std::fwrite(out.data(), 1, out.size(), f);
	std::fflush(f);
	c_dumps.add();
}

// ---- The dump signal (runtime/internal/machine.h).

void
dump_signal_start(int sig) noexcept
{
	if (sig <= 0)
		return;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0) {
		printf_diag("machine_boot(): no pipe for the dump signal: errno %d; "
		    "signal %d not handled", errno, sig);
		return;
	}
	g_dump_rfd = fds[0];
	g_dump_fd.store(fds[1], std::memory_order_relaxed);
	g_dumper = std::thread(dumper_main);
	struct sigaction sa = {};
	sa.sa_handler = dump_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, &g_dump_oldact) != 0)
		panic("machine_boot(): sigaction(%d) for the dump signal failed: "
		    "errno %d", sig, errno);
	g_dump_sig = sig;
}

void
dump_signal_stop() noexcept
{
	if (g_dump_sig == 0)
		return;
	sigaction(g_dump_sig, &g_dump_oldact, nullptr);
	g_dump_sig = 0;
	int wfd = g_dump_fd.exchange(-1, std::memory_order_relaxed);
	char c = 'x';
	ssize_t r = ::write(wfd, &c, 1);
	(void)r;
	g_dumper.join();
	::close(wfd);
	::close(g_dump_rfd);
	g_dump_rfd = -1;
}

} // namespace usmp

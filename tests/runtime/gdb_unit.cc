// The gdb extension (tools/gdb/usmp-gdb.py), auto-loaded from libusmp's
// .debug_gdb_scripts section: gdb in batch mode runs this same executable's
// hidden case [.gdb_target], stops at usmp_gdb_test_stop() while a named
// green thread is blocked on a mutex, and must list the thread (info
// usmp-threads) and show the blocked thread's frames (usmp-bt).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/machine.h"
#include "runtime/thread.h"
#include "support/observe.h"
#include "sync/mutex.h"

using namespace usmp;

extern "C" {
// Read by gdb: the tid for usmp-bt.
int usmp_gdb_test_tid = 0;

__attribute__((noinline, used)) void
usmp_gdb_test_stop()
{
	asm volatile("" ::: "memory");
}
}

namespace {

__attribute__((noinline)) void
gdb_blocked_frame(mutex &m)
{
	m.lock();
	m.unlock();
	asm volatile("" ::: "memory"); // keep this frame (no tail call)
}

std::string
run_command(const std::string &cmd)
{
	std::string out;
	std::FILE *p = popen(cmd.c_str(), "r");
	REQUIRE(p != nullptr);
	char buf[4096];
	size_t n;
	while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0)
		out.append(buf, n);
	pclose(p);
	return out;
}

} // namespace

TEST_CASE("gdb target: a green thread blocked on a mutex", "[.gdb_target]")
{
	usmp::run({.ncpus = 2}, [] {
		mutex m("gdb test mutex");
		m.lock();
		green_thread t(thread_attr{.name = "gdb-blocked"}, [&] { gdb_blocked_frame(m); });
		thread *td = t.native_handle();
		test::wait_blocked_on_lock(td);
		usmp_gdb_test_tid = td->td_tid;
		usmp_gdb_test_stop();
		m.unlock();
		t.join();
	});
}

TEST_CASE("gdb lists green threads and backtraces a parked one", "[unit]")
{
	if (system("command -v gdb >/dev/null 2>&1") != 0) {
		WARN("gdb not installed: skipped (bash .ci/setup installs it)");
		return;
	}
	// A container without ptrace (seccomp, no CAP_SYS_PTRACE) cannot run
	// any program under gdb: that is no failure of the extension.
	if (run_command("gdb -batch -nx -ex run --args /bin/true 2>&1")
		.find("exited normally") == std::string::npos) {
		WARN("gdb cannot run programs here (ptrace denied?): skipped");
		return;
	}
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	REQUIRE(n > 0);
	self[n] = '\0';
	std::string cmd = std::string("gdb -batch -nx") +
	    " -iex 'set auto-load safe-path /'" +
	    " -iex 'set debuginfod enabled off'" +
	    " -ex 'set pagination off'" +
	    " -ex 'break usmp_gdb_test_stop'" +
	    " -ex run" +
	    " -ex 'info usmp-threads'" +
	    " -ex 'usmp-bt usmp_gdb_test_tid'" +
	    " -ex kill" +
	    " --args '" + self + "' '[.gdb_target]' 2>&1";
	std::string out = run_command(cmd);
	INFO(out);
	CHECK(out.find("Breakpoint 1, ") != std::string::npos);
	// The listing: the blocked thread, its state and wait message.
	CHECK(out.find("\"gdb-blocked\"") != std::string::npos);
	CHECK(out.find("blocked") != std::string::npos);
	CHECK(out.find("\"gdb test mutex\"") != std::string::npos);
	CHECK(out.find("green threads") != std::string::npos);
	// The backtrace of the parked thread reaches its own frame.
	CHECK(out.find("green thread \"gdb-blocked\"") != std::string::npos);
	CHECK(out.find("gdb_blocked_frame") != std::string::npos);
}

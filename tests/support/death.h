// Test support, for tests/ only: run a named scenario in a child process and
// capture what it wrote to stderr, to prove that misuse is reported (a panic
// naming the lock, the thread and the call site) and not silent.
//
//     TEST_CASE("unlock of a mutex not owned panics", "[death]") {
//         auto r = usmp::test::run_death("unlock not owned", [] {
//             usmp::run({.ncpus = 1}, [] {
//                 usmp::mutex m("vnode interlock");
//                 m.unlock();
//             });
//         });
//         USMP_REQUIRE_DEATH(r, "not owned");   // died (not exit 0) + message
//         CHECK(r.aborted());                    // by SIGABRT, as panic() does
//     }
//
// The scenario runs in a fork()ed child: it may boot its own usmp machine and
// must not return if it is meant to die (returning is exit status 0).  The
// parent must not be running a machine when it forks (only the forking OS
// thread exists in the child, so the CPUs would be gone): run_death() checks
// and throws std::logic_error.  Boot the machine inside the scenario instead.
// In the child, the fatal signals are reset to their defaults (Catch2's
// handlers would print a report into the captured text), core dumps are off,
// and an exception escaping the scenario exits with status 125 after a line
// naming it.  A child still running at the timeout is killed with SIGKILL.
// Do not use Catch2 assertions inside the scenario (the child would report
// them to nobody): make the child exit or die, and check the result here.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace usmp::test {

struct death_options {
	std::chrono::milliseconds timeout{60'000};
	bool capture_stdout = false; // also capture stdout (into the same text)
};

struct death_result {
	std::string name;       // the scenario's name
	bool exited = false;    // ended by exit() / _exit(): see exit_code
	int exit_code = -1;
	bool signaled = false;  // ended by a signal: see signal
	int signal = 0;
	bool timed_out = false; // killed by us at the timeout
	std::string output;     // everything the child wrote to stderr

	bool aborted() const noexcept; // killed by SIGABRT (panic(), abort())
	bool killed_by(int sig) const noexcept;
	bool exited_with(int code) const noexcept;
	// True if it died: not exit 0 and not timed out.
	bool died() const noexcept;
	bool contains(std::string_view text) const noexcept;
	// "scenario 'x': killed by signal 6 (Aborted)" and the captured text.
	std::string describe() const;
};

// Run scenario in a child process; return how it ended and its stderr.
// Throws std::logic_error if a usmp machine runs in this process, and
// std::system_error if pipe() or fork() fails.
death_result run_death(std::string name, const std::function<void()> &scenario,
    const death_options &opts = {});

} // namespace usmp::test

// Require that r died (a signal or a non-zero exit, not a timeout) and that
// its captured text contains `text`; on failure print the whole result.
#define USMP_REQUIRE_DEATH(r, text)                                          \
	do {                                                                 \
		INFO((r).describe());                                        \
		REQUIRE((r).died());                                         \
		REQUIRE((r).contains(text));                                 \
	} while (0)

// The same with CHECK: the test goes on after a failure.
#define USMP_CHECK_DEATH(r, text)                                            \
	do {                                                                 \
		INFO((r).describe());                                        \
		CHECK((r).died());                                           \
		CHECK((r).contains(text));                                   \
	} while (0)

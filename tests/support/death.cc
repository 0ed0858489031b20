// Test support: run a scenario in a child process (see death.h).
#include "support/death.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <system_error>

#include "runtime/machine.h"

namespace usmp::test {

namespace {

constexpr int uncaught_exit = 125;
constexpr std::size_t max_output = 4u << 20; // keep at most 4 MiB of text

[[noreturn]] void
child(int wfd, const std::string &name, const std::function<void()> &scenario,
    const death_options &opts)
{
	// Catch2's handlers would print a report into the text we capture;
	// the scenario (or the usmp machine it boots) installs its own.
	for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTERM,
		 SIGINT, SIGTRAP})
		::signal(sig, SIG_DFL);
	struct rlimit nocore = {0, 0};
	::setrlimit(RLIMIT_CORE, &nocore);
	::setenv("USMP_DEATH_SCENARIO", name.c_str(), 1);

	if (::dup2(wfd, STDERR_FILENO) < 0)
		::_exit(127);
	if (opts.capture_stdout && ::dup2(wfd, STDOUT_FILENO) < 0)
		::_exit(127);
	::close(wfd);
	std::setvbuf(stderr, nullptr, _IONBF, 0);

	try {
		scenario();
	} catch (const std::exception &e) {
		std::fprintf(stderr, "death scenario '%s': uncaught exception: %s\n",
		    name.c_str(), e.what());
		std::fflush(nullptr);
		::_exit(uncaught_exit);
	} catch (...) {
		std::fprintf(stderr, "death scenario '%s': uncaught exception\n",
		    name.c_str());
		std::fflush(nullptr);
		::_exit(uncaught_exit);
	}
	std::fflush(nullptr);
	::_exit(0);
}

long
remaining_ms(std::chrono::steady_clock::time_point deadline)
{
	auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
	    deadline - std::chrono::steady_clock::now());
	return left.count() < 0 ? 0 : left.count();
}

} // namespace

death_result
run_death(std::string name, const std::function<void()> &scenario,
    const death_options &opts)
{
	if (usmp::machine_running())
		throw std::logic_error("run_death('" + name +
		    "'): a usmp machine is running in the parent; boot it inside "
		    "the scenario instead");

	int fds[2];
	if (::pipe2(fds, O_CLOEXEC) != 0)
		throw std::system_error(errno, std::generic_category(), "pipe2");
	std::fflush(nullptr); // nothing buffered may be written twice
	pid_t pid = ::fork();
	if (pid < 0) {
		int e = errno;
		::close(fds[0]);
		::close(fds[1]);
		throw std::system_error(e, std::generic_category(), "fork");
	}
	if (pid == 0) {
		::close(fds[0]);
		child(fds[1], name, scenario, opts);
	}
	::close(fds[1]);

	death_result r;
	r.name = std::move(name);
	auto deadline = std::chrono::steady_clock::now() + opts.timeout;
	char buf[4096];
	for (;;) {
		struct pollfd p = {fds[0], POLLIN, 0};
		int n = ::poll(&p, 1, static_cast<int>(remaining_ms(deadline)));
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) { // timeout: kill it, keep what it wrote
			r.timed_out = true;
			::kill(pid, SIGKILL);
			break;
		}
		ssize_t got = ::read(fds[0], buf, sizeof buf);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break; // EOF: the child (and anything it forked) is done
		if (r.output.size() < max_output)
			r.output.append(buf, static_cast<std::size_t>(got));
	}
	if (r.timed_out) { // drain what is already in the pipe
		::fcntl(fds[0], F_SETFL, O_NONBLOCK);
		ssize_t got;
		while ((got = ::read(fds[0], buf, sizeof buf)) > 0 &&
		    r.output.size() < max_output)
			r.output.append(buf, static_cast<std::size_t>(got));
	}
	::close(fds[0]);

	int status = 0;
	while (::waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			throw std::system_error(errno, std::generic_category(),
			    "waitpid");
	}
	if (WIFEXITED(status)) {
		r.exited = true;
		r.exit_code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		r.signaled = true;
		r.signal = WTERMSIG(status);
	}
	return r;
}

bool
death_result::aborted() const noexcept
{
	return killed_by(SIGABRT);
}

bool
death_result::killed_by(int sig) const noexcept
{
	return signaled && !timed_out && signal == sig;
}

bool
death_result::exited_with(int code) const noexcept
{
	return exited && exit_code == code;
}

bool
death_result::died() const noexcept
{
	return !timed_out && (signaled || (exited && exit_code != 0));
}

bool
death_result::contains(std::string_view text) const noexcept
{
	return output.find(text) != std::string::npos;
}

std::string
death_result::describe() const
{
	std::string s = "death scenario '" + name + "': ";
	if (timed_out)
		s += "timed out (killed with SIGKILL)";
	else if (signaled)
		s += "killed by signal " + std::to_string(signal) + " (" +
		    ::strsignal(signal) + ")";
	else if (exited)
		s += "exited with status " + std::to_string(exit_code);
	else
		s += "ended in an unknown way";
	if (output.empty())
		s += "; it wrote nothing to stderr";
	else
		s += "; it wrote:\n" + output;
	return s;
}

} // namespace usmp::test

// Stacks for WITNESS reports: capture (async-signal-safe unwinding into a
// caller's buffer) and symbolization, through Boost.Stacktrace.
//
// This is the only file that includes Boost.Stacktrace.  The back end is
// chosen by CMake: libbacktrace (GCC's, which reads DWARF in-process and
// gives function, file and line) when the compiler can link it, else
// addr2line (a child process per frame: slow, but reports are rare), else
// the basic back end (function names from the dynamic symbol table only).
#if defined(USMP_STACKTRACE_BACKTRACE)
#define BOOST_STACKTRACE_USE_BACKTRACE
#elif defined(USMP_STACKTRACE_ADDR2LINE)
#define BOOST_STACKTRACE_USE_ADDR2LINE
#endif
#include "sync/internal/witness_stack.h"

#include <cstdio>

#include <boost/stacktrace.hpp>

namespace usmp {

int
witness_stack_capture(void **frames, int max, int skip) noexcept
{
	if (max <= 0)
		return 0;
	// safe_dump_to writes native frame pointers and returns how many;
	// +1 skips this function.
	std::size_t n = boost::stacktrace::safe_dump_to(
	    static_cast<std::size_t>(skip + 1), frames,
	    sizeof(void *) * static_cast<std::size_t>(max));
	return static_cast<int>(n);
}

void
witness_stack_format(std::string &out, void *const *frames, int n,
    const char *indent) noexcept
{
	try {
		for (int i = 0; i < n; i++) {
			if (frames[i] == nullptr)
				break;
			boost::stacktrace::frame f(
			    reinterpret_cast<boost::stacktrace::frame::native_frame_ptr_t>(
				frames[i]));
			char head[64];
			std::snprintf(head, sizeof head, "#%d %p at ", i, frames[i]);
			out += indent;
			out += head;
			std::string name = f.name();
			out += name.empty() ? "??" : name;
			std::string file = f.source_file();
			if (!file.empty()) {
				out += " (";
				out += file;
				out += ':';
				out += std::to_string(f.source_line());
				out += ')';
			}
			out += '\n';
		}
	} catch (...) {
		out += indent;
		out += "(stack unavailable: out of memory)\n";
	}
}

} // namespace usmp

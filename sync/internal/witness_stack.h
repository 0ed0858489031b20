// Private to sync/ (witness.cc, lock_profile.cc): capturing and printing
// stacks for WITNESS reports.  Implemented in sync/witness_stack.cc, the
// only file that includes Boost.Stacktrace (STYLE.md: one includer per
// third-party library).
#pragma once

#include <string>

namespace usmp {

// Capture up to max return addresses of the caller's stack, skipping the
// `skip` innermost frames (beyond this function's own).  No allocation, no
// lock: safe in spin sections.  Returns the number captured.
int witness_stack_capture(void **frames, int max, int skip) noexcept;

// Append the symbolized stack, one frame a line, each line starting with
// indent: "#<n> <addr> at <function> (<file>:<line>)".  Allocates (the
// symbolizer reads debug information): call it outside WITNESS's lock.
void witness_stack_format(std::string &out, void *const *frames, int n,
    const char *indent) noexcept;

} // namespace usmp

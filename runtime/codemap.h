// The code map: may the instruction at this address be preempted
// asynchronously?
//
// In full-preemption mode the preemption signal interrupts a CPU's OS thread
// at an arbitrary instruction.  The handler may switch green threads right
// there only if that instruction is application code; anywhere else (libc,
// the C++ runtime, the dynamic loader, Boost, hwloc, liburing, usmp itself,
// out-of-line std:: code) it defers to the next preemption point.  The code
// map answers that question from the interrupted RIP, inside the handler.
//
// Only the main executable's text can be preemptible.  Every shared object
// is excluded, so application code that lives in its own shared library is
// never preempted asynchronously (it still is at preemption points), and a
// libusmp.so is excluded with the rest.  Inside the executable the map is
// built from the ELF symbol table; runtime/codemap.cc says how each function
// is classified and why.  Code with no symbol is not preemptible.
//
// Rules this places on usmp's own sources (names are all the map sees):
//   - all usmp code lives in namespace usmp (anonymous namespaces and static
//     functions nested inside it are fine); extern "C" functions of usmp are
//     named usmp_*;
//   - usmp code in headers that the compiler inlines into application
//     functions is indistinguishable from them: it must be safe to interrupt
//     at any instruction, or run inside a critical section.  The code map is
//     therefore the handler's second test, never its only one: it defers
//     first whenever td_critnest or the spinlock count is non-zero.
#pragma once

#include <cstddef>
#include <cstdint>

namespace usmp {

// Build the map.  Reads the executable's symbol table and allocates, so it
// is not signal-safe; call it once at boot, before the first preemption
// signal can arrive.  Later calls return 0 and change nothing.  An executable
// whose functions cannot be classified (stripped, a statically linked C or
// C++ runtime, an unreadable file) is wholly non-preemptible: that is not an
// error, and codemap_note() says why.  Returns 0, or ENOMEM.
// Context: a foreign OS thread or a green thread; may allocate.
int codemap_init() noexcept;

// True if the instruction at pc may be preempted asynchronously.  False
// before codemap_init() has published the map.  Lock-free, allocation-free,
// async-signal-safe.  Context: any, including signal handlers.
bool codemap_preemptible(uintptr_t pc) noexcept;

// What covers pc, for diagnostics: "app", "usmp", "std::", "boost::",
// "Catch::", "runtime" (compiler, C/C++ runtime, start-up code), "allocator",
// "library" (system library code linked into the executable), "special"
// (thunks, TLS wrappers), "no symbol" (executable text no function covers),
// "unclassified" (the executable when it is wholly excluded), the basename
// of a shared object ("libc.so.6", "linux-vdso.so.1"), or "unknown".  The
// string lives as long as the process.  Async-signal-safe.
// Context: any, including signal handlers.
const char *codemap_describe(uintptr_t pc) noexcept;

// The number of disjoint preemptible ranges (preemptible == true) or of
// excluded ranges classified by symbol (false) in the executable; 0 before
// codemap_init().  For tests and diagnostics.  Context: any.
size_t codemap_count(bool preemptible) noexcept;

// Null, or one line saying why the executable, or part of it, is not
// classified (e.g. "stripped executable: no .symtab").  Never printed by
// the code map itself.  Context: any.
const char *codemap_note() noexcept;

} // namespace usmp

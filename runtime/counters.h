// Counters: a sysctl(9)-like tree of named 64-bit statistics, and counter(9).
//
//     usmp::counter_u64 g_retries("app.rpc.retries", "RPCs sent again");
//     g_retries.add();                          // hot path: this CPU's slot
//     uint64_t v;
//     usmp::counter_read("kern.sched.switches", &v);
//     usmp::counters_dump(stdout);              // "name: value" lines
//     usmp::counters_dump(stdout, "kern.sched.", counter_format::json);
//
// Names are dotted paths, FreeBSD sysctl style: `kern.sched.switches`,
// `kern.sched.cpu.3.load`.  A node is one of:
//   - a counter_u64 (counter(9)): per-CPU slots, summed on read.  add() on a
//     CPU touches only that CPU's slot (no shared cache line, no lock prefix:
//     one add instruction, which a signal handler on the same OS thread cannot
//     split); a foreign OS thread adds atomically to a shared slot.
//   - a procedure (SYSCTL_PROC): a function that computes the value, e.g. the
//     sum of a pcpu field.
//   - a per-CPU procedure: a name with one `*` component, expanded to one node
//     per CPU of the running machine (`kern.sched.cpu.*.load`).
// The runtime registers the scheduler's nodes (`kern.sched.*`); other layers
// register their own (sync/ lock contention, interrupts/ `hw.intr.<name>`),
// with counter_u64 objects or counter_register_proc().
//
// Values are read racily (relaxed loads of other CPUs' slots), as sysctl does:
// a sum is exact once the counted activity has stopped.  counter_u64 slots
// outlive the machine: they are zeroed at each machine_boot() and keep their
// values after machine_shutdown(); procedures registered at the last
// shutdown answer with their values then (per-CPU ones for that machine's
// CPUs), so a program can dump the counters after run().
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace usmp {

// counter(9): a named per-CPU counter.  Construction registers the name
// (copied; a duplicate name panics naming both), destruction unregisters it.
// Context (construction): not with a spin lock held; any thread.
class counter_u64 {
public:
	counter_u64(const char *name, const char *descr = "") noexcept;
	~counter_u64();
	counter_u64(const counter_u64 &) = delete;
	counter_u64 &operator=(const counter_u64 &) = delete;

	// counter_u64_add().  Context: any, including signal handlers.
	void add(uint64_t n = 1) noexcept;
	// counter_u64_fetch(): the sum over CPUs.  Context: any.
	uint64_t fetch() const noexcept;
	// counter_u64_zero().  Exact only while nobody adds.  Context: any.
	void zero() noexcept;

private:
	unsigned slot_;
};

// A procedure node: its value is fn(arg).  Returns 0, or EEXIST for a name
// taken, EINVAL for a malformed one.  fn runs with the registry lock held
// and must not register nodes; it is also called at machine_shutdown() (the
// last value is kept while no machine runs), and must then still work.
using counter_proc_fn = uint64_t (*)(void *arg);
int counter_register_proc(const char *name, const char *descr,
    counter_proc_fn fn, void *arg = nullptr) noexcept;

// A per-CPU procedure: `name` has exactly one `*` component, replaced by each
// CPU number; the value for CPU c is fn(c, arg), called only while a machine
// runs (with c < mp_ncpus()).
using counter_cpu_fn = uint64_t (*)(int cpu, void *arg);
int counter_register_cpu_proc(const char *name, const char *descr,
    counter_cpu_fn fn, void *arg = nullptr) noexcept;

// Remove a procedure node (by its registered name, `*` included).
void counter_unregister(const char *name) noexcept;

// One node's value.
struct counter_value {
	std::string name;
	std::string descr;
	uint64_t value;
};

// Read one node by full name (`kern.sched.cpu.2.load`).  Returns true and
// sets *value if it exists.  Context: a green thread or a foreign OS thread,
// no spin lock held.
bool counter_read(const char *name, uint64_t *value) noexcept;

// Every node whose name starts with `prefix`, sorted by name.
std::vector<counter_value> counters_snapshot(const char *prefix = "");

enum class counter_format { text, json };

// Write the snapshot: text is one "name: value" line per node; json is one
// object {"name": value, ...} on one line, names sorted.
void counters_dump(std::FILE *f, const char *prefix = "",
    counter_format fmt = counter_format::text);

} // namespace usmp

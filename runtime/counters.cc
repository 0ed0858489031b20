// The counter tree (runtime/counters.h): counter(9) slots and sysctl-like
// procedure nodes.
//
// Vocabulary.  A *slot* is the index of a counter_u64 in every CPU's counter
// block: CPU c's count of the counter is blocks[c][slot].  A foreign OS
// thread (no CPU) adds to g_foreign[slot] with an atomic add.
//
// The problem.  Counting on the hot path (every switch, every steal, every
// contended lock) must not bounce a cache line between CPUs or take a lock,
// yet a reader wants one number.  So each CPU counts in its own block and a
// reader sums the blocks (FreeBSD's counter(9) does the same with per-CPU
// zones).  A shared atomic per counter (rejected) costs a locked instruction
// and a cache-line transfer on every event.
//
// Protocol.
//  1. Slots are handed out and taken back under g_reg.lock (registration is
//     rare).  A slot is zeroed in every block and in g_foreign when handed
//     out, so a new counter never inherits a dead one's counts.
//  2. The blocks live here, not in struct pcpu: counters_boot() (re)makes
//     them, zeroed, before any CPU runs, and points each pcpu's pc_counters
//     at its block; they stay after counters_shutdown(), so counts can be
//     read after machine_shutdown().
//  3. add() on a CPU is one non-locked `add` instruction on the calling
//     CPU's block: only that CPU's OS thread writes it, and a signal handler
//     (the preemption signal) on the same OS thread cannot split one
//     instruction.  The green thread may migrate just before the add only by
//     an asynchronous preemption, which pins it until it resumes (intr.cc),
//     so the block it read is still its CPU's.
//  4. Readers load slots with relaxed atomics and sum: a sum is exact once
//     the counting stops, and otherwise some recent value.
//  5. Procedure nodes are called under g_reg.lock.  counters_shutdown(), run
//     once the CPUs have stopped and before the pcpus are freed, keeps each
//     procedure's last value(s); while no machine runs, reads return those.
#include "runtime/counters.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <new>

#include "runtime/internal/machine.h"
#include "runtime/internal/seam.h"
#include "runtime/machine.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"

namespace usmp {

namespace {

constexpr unsigned COUNTER_SLOTS = 1024; // 8 KiB per CPU

enum node_kind { NODE_COUNTER, NODE_PROC, NODE_CPU_PROC };

struct node {
	node(node_kind k, const char *descr)
	    : n_kind(k), n_descr(descr != nullptr ? descr : "")
	{
	}
	node_kind n_kind;
	std::string n_descr;
	unsigned n_slot = 0;                    // NODE_COUNTER
	counter_proc_fn n_fn = nullptr;         // NODE_PROC
	counter_cpu_fn n_cpufn = nullptr;       // NODE_CPU_PROC
	void *n_arg = nullptr;
	std::vector<uint64_t> n_last;           // values kept at shutdown
};

// Locking key: (r) r_lock.
struct registry {
	std::mutex r_lock;
	std::map<std::string, node> r_nodes;    // (r) by registered name
	std::vector<bool> r_slot_used = std::vector<bool>(COUNTER_SLOTS); // (r)
	uint64_t **r_blocks = nullptr;          // (r) [r_nblocks], written at boot
	int r_nblocks = 0;                      // (r)
	bool r_running = false;                 // (r) between boot and shutdown
};

// Function-local: counter_u64 objects of other files are constructed during
// static initialisation, in any order.
registry &
reg() noexcept
{
	static registry *r = new registry; // never destroyed: static destructors
	return *r;                         // of other files may still unregister
}

alignas(64) uint64_t g_foreign[COUNTER_SLOTS];

bool
valid_name(const char *name, bool cpu_pattern) noexcept
{
	if (name == nullptr || *name == '\0')
		return false;
	int stars = 0;
	const char *comp = name;
	for (const char *p = name;; p++) {
		if (*p == '.' || *p == '\0') {
			if (p == comp)
				return false; // empty component
			if (p - comp == 1 && *comp == '*')
				stars++;
			if (*p == '\0')
				break;
			comp = p + 1;
			continue;
		}
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		    (c == '*' && cpu_pattern);
		if (!ok)
			return false;
	}
	return cpu_pattern ? stars == 1 : stars == 0;
}

uint64_t
slot_sum(registry &r, unsigned slot) noexcept
{
	uint64_t s = __atomic_load_n(&g_foreign[slot], __ATOMIC_RELAXED);
	for (int c = 0; c < r.r_nblocks; c++)
		s += __atomic_load_n(&r.r_blocks[c][slot], __ATOMIC_RELAXED);
	return s;
}

void
slot_zero(registry &r, unsigned slot) noexcept
{
	__atomic_store_n(&g_foreign[slot], 0, __ATOMIC_RELAXED);
	for (int c = 0; c < r.r_nblocks; c++)
		__atomic_store_n(&r.r_blocks[c][slot], 0, __ATOMIC_RELAXED);
}

// Expand a `*` pattern for CPU c.
std::string
expand(const std::string &pattern, int c)
{
	std::string s = pattern;
	s.replace(s.find('*'), 1, std::to_string(c));
	return s;
}

int
cpu_count(registry &r, const node &n) noexcept
{
	return r.r_running ? mp_ncpus() : static_cast<int>(n.n_last.size());
}

uint64_t
cpu_value(registry &r, const node &n, int c) noexcept
{
	return r.r_running ? n.n_cpufn(c, n.n_arg) : n.n_last[c];
}

uint64_t
proc_value(registry &r, const node &n) noexcept
{
	// Not kept at a shutdown (registered since, or no machine ran yet):
	// the procedure does not depend on a machine, or answers for none.
	if (r.r_running || n.n_last.empty())
		return n.n_fn(n.n_arg);
	return n.n_last[0];
}

int
register_node(const char *name, node &&n) noexcept
{
	registry &r = reg();
	std::lock_guard<std::mutex> g(r.r_lock);
	if (r.r_nodes.count(name) != 0)
		return EEXIST;
	r.r_nodes.emplace(name, std::move(n));
	return 0;
}

// ---- The runtime's own nodes: the scheduler's pcpu counters.

template <uint64_t pcpu::*F>
uint64_t
pcpu_field(int cpu, void *) noexcept
{
	pcpu *pc = pcpu_find(cpu);
	return pc != nullptr ? __atomic_load_n(&(pc->*F), __ATOMIC_RELAXED) : 0;
}

template <uint64_t pcpu::*F>
uint64_t
pcpu_field_sum(void *) noexcept
{
	uint64_t s = 0;
	for (int c = 0; c < mp_ncpus(); c++)
		s += pcpu_field<F>(c, nullptr);
	return s;
}

template <uint64_t pcpu::*F>
void
register_pcpu_field(const char *leaf, const char *descr)
{
	std::string total = std::string("kern.sched.") + leaf;
	std::string percpu = std::string("kern.sched.cpu.*.") + leaf;
	counter_register_proc(total.c_str(), descr, pcpu_field_sum<F>);
	counter_register_cpu_proc(percpu.c_str(), descr, pcpu_field<F>);
}

struct runtime_nodes {
	runtime_nodes()
	{
		register_pcpu_field<&pcpu::pc_cnt_switches>("switches",
		    "context switches");
		register_pcpu_field<&pcpu::pc_cnt_preempt>("preemptions",
		    "involuntary switches (preemptions and ended slices)");
		register_pcpu_field<&pcpu::pc_cnt_async_preempt>(
		    "async_preemptions",
		    "switches from inside the preemption signal handler");
		register_pcpu_field<&pcpu::pc_cnt_steals>("steals",
		    "threads an idle CPU took from another CPU's queue");
		register_pcpu_field<&pcpu::pc_cnt_parks>("parks",
		    "times an idle CPU parked its OS thread");
		register_pcpu_field<&pcpu::pc_cnt_ipis>("ipis",
		    "preemption signals received");
		counter_register_cpu_proc("kern.sched.cpu.*.load",
		    "threads queued or running on the CPU",
		    [](int cpu, void *) -> uint64_t {
			    return static_cast<uint64_t>(sched_load(cpu));
		    });
		counter_register_proc("kern.sched.load",
		    "threads queued or running on all CPUs",
		    [](void *) -> uint64_t {
			    uint64_t s = 0;
			    for (int c = 0; c < mp_ncpus(); c++)
				    s += static_cast<uint64_t>(sched_load(c));
			    return s;
		    });
		counter_register_proc("kern.threads.live",
		    "live green threads (idle threads not counted)",
		    [](void *) -> uint64_t {
			    return static_cast<uint64_t>(machine_live_threads());
		    });
		counter_register_proc("hw.ncpu", "CPUs of the machine",
		    [](void *) -> uint64_t {
			    return static_cast<uint64_t>(mp_ncpus());
		    });
		counter_register_proc("kern.ticks", "hardclock ticks since boot",
		    [](void *) -> uint64_t { return ticks(); });
	}
};
runtime_nodes g_runtime_nodes;

} // namespace

// ---- counter_u64.

counter_u64::counter_u64(const char *name, const char *descr) noexcept
{
	if (!valid_name(name, false))
		panic("counter_u64: bad counter name \"%s\" (dotted components "
		    "of [A-Za-z0-9_-])", name != nullptr ? name : "(null)");
	registry &r = reg();
	std::lock_guard<std::mutex> g(r.r_lock);
	unsigned slot = 0;
	while (slot < COUNTER_SLOTS && r.r_slot_used[slot])
		slot++;
	if (slot == COUNTER_SLOTS)
		panic("counter_u64: all %u counter slots in use (registering \"%s\")",
		    COUNTER_SLOTS, name);
	node n(NODE_COUNTER, descr);
	n.n_slot = slot;
	if (!r.r_nodes.emplace(name, std::move(n)).second)
		panic("counter_u64: counter \"%s\" registered twice", name);
	r.r_slot_used[slot] = true;
	slot_zero(r, slot);
	slot_ = slot;
}

counter_u64::~counter_u64()
{
	registry &r = reg();
	std::lock_guard<std::mutex> g(r.r_lock);
	for (auto it = r.r_nodes.begin(); it != r.r_nodes.end(); ++it) {
		if (it->second.n_kind == NODE_COUNTER && it->second.n_slot == slot_) {
			r.r_nodes.erase(it);
			break;
		}
	}
	r.r_slot_used[slot_] = false;
}

void
counter_u64::add(uint64_t n) noexcept
{
	pcpu *pc = curpcpu_fast();
	if (__builtin_expect(pc != nullptr && pc->pc_counters != nullptr, 1)) {
		// Step 3: one instruction, no lock prefix.
		uint64_t *p = &pc->pc_counters[slot_];
		asm volatile("addq %1, %0" : "+m"(*p) : "er"(n));
	} else {
		__atomic_fetch_add(&g_foreign[slot_], n, __ATOMIC_RELAXED);
	}
}

uint64_t
counter_u64::fetch() const noexcept
{
	registry &r = reg();
	std::lock_guard<std::mutex> g(r.r_lock);
	return slot_sum(r, slot_);
}

void
counter_u64::zero() noexcept
{
	registry &r = reg();
	std::lock_guard<std::mutex> g(r.r_lock);
	slot_zero(r, slot_);
}

// ---- Procedure nodes.

int
counter_register_proc(const char *name, const char *descr, counter_proc_fn fn,
    void *arg) noexcept
{
	if (!valid_name(name, false) || fn == nullptr)
		return EINVAL;
	node n(NODE_PROC, descr);
	n.n_fn = fn;
	n.n_arg = arg;
	return register_node(name, std::move(n));
}

int
counter_register_cpu_proc(const char *name, const char *descr,
    counter_cpu_fn fn, void *arg) noexcept
{
	if (!valid_name(name, true) || fn == nullptr)
		return EINVAL;
	node n(NODE_CPU_PROC, descr);
	n.n_cpufn = fn;
	n.n_arg = arg;
	return register_node(name, std::move(n));
}

void
counter_unregister(const char *name) noexcept
{
	registry &r = reg();
	std::lock_guard<std::mutex> g(r.r_lock);
	auto it = r.r_nodes.find(name);
	if (it != r.r_nodes.end() && it->second.n_kind != NODE_COUNTER)
		r.r_nodes.erase(it);
}

// ---- Reading.

bool
counter_read(const char *name, uint64_t *value) noexcept
{
	registry &r = reg();
	std::lock_guard<std::mutex> g(r.r_lock);
	auto it = r.r_nodes.find(name);
	if (it != r.r_nodes.end()) {
		const node &n = it->second;
		if (n.n_kind == NODE_COUNTER) {
			*value = slot_sum(r, n.n_slot);
			return true;
		}
		if (n.n_kind == NODE_PROC) {
			*value = proc_value(r, n);
			return true;
		}
		return false; // a `*` pattern is no node of its own
	}
	// A per-CPU node: find the component that is a number and try the
	// pattern with `*` in its place.
	std::string s = name;
	for (size_t b = 0; b < s.size();) {
		size_t e = s.find('.', b);
		if (e == std::string::npos)
			e = s.size();
		if (e > b && std::all_of(s.begin() + b, s.begin() + e,
				 [](char c) { return c >= '0' && c <= '9'; })) {
			std::string pat = s.substr(0, b) + "*" + s.substr(e);
			auto p = r.r_nodes.find(pat);
			if (p != r.r_nodes.end() && p->second.n_kind == NODE_CPU_PROC &&
			    e - b < 6) {
				int c = std::stoi(s.substr(b, e - b));
				if (c < cpu_count(r, p->second)) {
					*value = cpu_value(r, p->second, c);
					return true;
				}
			}
		}
		b = e + 1;
	}
	return false;
}

std::vector<counter_value>
counters_snapshot(const char *prefix)
{
	std::string pre = prefix != nullptr ? prefix : "";
	std::vector<counter_value> v;
	registry &r = reg();
	{
		std::lock_guard<std::mutex> g(r.r_lock);
		for (auto &[name, n] : r.r_nodes) {
			switch (n.n_kind) {
			case NODE_COUNTER:
				v.push_back({name, n.n_descr, slot_sum(r, n.n_slot)});
				break;
			case NODE_PROC:
				v.push_back({name, n.n_descr, proc_value(r, n)});
				break;
			case NODE_CPU_PROC:
				for (int c = 0; c < cpu_count(r, n); c++)
					v.push_back({expand(name, c), n.n_descr,
					    cpu_value(r, n, c)});
				break;
			}
		}
	}
	std::erase_if(v, [&](const counter_value &cv) {
		return cv.name.compare(0, pre.size(), pre) != 0;
	});
	// Numeric components sort as numbers: cpu.2 before cpu.10.
	auto key = [](const std::string &s) {
		std::string k;
		for (size_t i = 0; i < s.size();) {
			if (s[i] >= '0' && s[i] <= '9') {
				size_t j = i;
				while (j < s.size() && s[j] >= '0' && s[j] <= '9')
					j++;
				k += static_cast<char>('0' + (j - i)); // length first
				k.append(s, i, j - i);
				i = j;
			} else {
				k += s[i++];
			}
		}
		return k;
	};
	std::sort(v.begin(), v.end(), [&](const counter_value &a,
					  const counter_value &b) {
		return key(a.name) < key(b.name);
	});
	return v;
}

void
counters_dump(std::FILE *f, const char *prefix, counter_format fmt)
{
	std::vector<counter_value> v = counters_snapshot(prefix);
	if (fmt == counter_format::text) {
		for (const auto &cv : v)
			std::fprintf(f, "%s: %llu\n", cv.name.c_str(),
			    static_cast<unsigned long long>(cv.value));
		return;
	}
	// Names are [A-Za-z0-9_.-]: nothing to escape.
	std::fputc('{', f);
	for (size_t i = 0; i < v.size(); i++)
		std::fprintf(f, "%s\"%s\": %llu", i ? ", " : "", v[i].name.c_str(),
		    static_cast<unsigned long long>(v[i].value));
	std::fputs("}\n", f);
}

// ---- Machine boot and shutdown (runtime/internal/machine.h).

void
counters_boot(pcpu *pcpus, int ncpus) noexcept
{
	registry &r = reg();
	std::lock_guard<std::mutex> g(r.r_lock);
	for (int c = 0; c < r.r_nblocks; c++)
		::operator delete[](r.r_blocks[c], std::align_val_t(64));
	delete[] r.r_blocks;
	r.r_blocks = new uint64_t *[ncpus];
	r.r_nblocks = ncpus;
	for (int c = 0; c < ncpus; c++) {
		r.r_blocks[c] = static_cast<uint64_t *>(::operator new[](
		    COUNTER_SLOTS * sizeof(uint64_t), std::align_val_t(64)));
		std::memset(r.r_blocks[c], 0, COUNTER_SLOTS * sizeof(uint64_t));
		pcpus[c].pc_counters = r.r_blocks[c];
	}
	std::memset(g_foreign, 0, sizeof(g_foreign));
	for (auto &[name, n] : r.r_nodes)
		n.n_last.clear();
	r.r_running = true;
}

void
counters_shutdown() noexcept
{
	registry &r = reg();
	std::lock_guard<std::mutex> g(r.r_lock);
	for (auto &[name, n] : r.r_nodes) {
		n.n_last.clear();
		if (n.n_kind == NODE_PROC) {
			n.n_last.push_back(n.n_fn(n.n_arg));
		} else if (n.n_kind == NODE_CPU_PROC) {
			for (int c = 0; c < mp_ncpus(); c++)
				n.n_last.push_back(n.n_cpufn(c, n.n_arg));
		}
	}
	r.r_running = false;
}

} // namespace usmp

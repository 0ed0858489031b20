// KTR rings and their Chrome trace-event export (runtime/ktr.h).
//
// The problem.  A trace of every switch must cost a few nanoseconds, take no
// lock (a switch runs with run-queue locks held and from the preemption
// signal), and never make two CPUs write the same cache line; yet the
// export wants one timeline.
//
// Rejected: a global ring with an atomic index (every event of every CPU
// bounces its cache line); clock_gettime() per event (a vDSO call, several
// times rdtsc's cost); formatting at record time (ktr(4)'s printf-style
// descriptions are formatted when shown, for the same reason).
//
// Protocol.
//  1. ktr_boot() (machine_boot, before any CPU runs, USMP_KTR only) frees the
//     previous rings and makes one per CPU plus the foreign ring, zeroed,
//     and samples (TSC, CLOCK_MONOTONIC) for the export's time base.
//  2. A CPU claims slot kr_idx of its own ring with one non-locked xadd: only
//     its OS thread writes the index, and the preemption signal handler on
//     that thread cannot split the instruction (a nested event takes the
//     next slot).  A green thread reaches ktr_record() only from usmp code,
//     which is never preempted asynchronously, so it cannot change CPUs
//     between reading its pcpu and claiming the slot.
//  3. Foreign OS threads claim slots of the foreign ring with an atomic
//     fetch_add (several of them may record at once).
//  4. The entry is written after the claim with plain stores.  Readers
//     (export) run once the machine has stopped, or accept torn entries: an
//     entry whose event is KTR_NONE (never written) is skipped.
//  5. The export maps TSC to nanoseconds with the boot sample and a second
//     sample taken at export (an invariant TSC, which every x86-64 CPU of
//     the last decade has, ticks at a constant rate on every core).
#include "runtime/ktr.h"

#include <x86intrin.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "runtime/internal/curthread.h"
#include "runtime/internal/machine.h"
#include "runtime/machine.h"
#include "runtime/pcpu.h"
#include "runtime/thread.h"

namespace usmp {

namespace {

struct alignas(64) ktr_ring {
	uint64_t kr_idx = 0;         // (a) slots claimed; see steps 2 and 3
	uint64_t kr_mask = 0;        // (c) entries - 1
	ktr_entry *kr_buf = nullptr; // (c)
};

ktr_ring *g_rings = nullptr;     // [g_nrings], made at boot
int g_nrings = 0;
std::size_t g_entries = 32768;
uint64_t g_tsc0 = 0, g_ns0 = 0;  // the boot sample

void
free_rings() noexcept
{
	for (int r = 0; r < g_nrings; r++)
		::operator delete[](g_rings[r].kr_buf, std::align_val_t(64));
	delete[] g_rings;
	g_rings = nullptr;
	g_nrings = 0;
}

// JSON string body: escape quotes, backslashes and control characters.
void
json_str(std::string &out, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = static_cast<unsigned char>(*s);
		if (c == '"' || c == '\\') {
			out += '\\';
			out += static_cast<char>(c);
		} else if (c < 0x20) {
			char buf[8];
			std::snprintf(buf, sizeof(buf), "\\u%04x", c);
			out += buf;
		} else {
			out += static_cast<char>(c);
		}
	}
}

struct exporter {
	std::string out;
	bool first = true;
	double tsc_to_us = 0;

	double us(uint64_t tsc) const
	{
		return static_cast<double>(static_cast<int64_t>(tsc - g_tsc0)) * tsc_to_us;
	}
	void begin(const char *ph, const char *cat, int track, double ts)
	{
		char buf[160];
		std::snprintf(buf, sizeof(buf),
		    "%s\n{\"ph\":\"%s\",\"cat\":\"%s\",\"pid\":1,\"tid\":%d,\"ts\":%.3f",
		    first ? "" : ",", ph, cat, track, ts);
		first = false;
		out += buf;
	}
	void name(const char *prefix, const char *n, int tid)
	{
		out += ",\"name\":\"";
		json_str(out, prefix);
		json_str(out, n);
		if (tid != 0) {
			char buf[32];
			std::snprintf(buf, sizeof(buf), " (tid %d)", tid);
			out += buf;
		}
		out += '"';
	}
	void complete(const char *cat, int track, double ts, double end,
	    const char *prefix, const char *n, int tid, const char *args)
	{
		begin("X", cat, track, ts);
		char buf[64];
		std::snprintf(buf, sizeof(buf), ",\"dur\":%.3f", end > ts ? end - ts : 0.0);
		out += buf;
		name(prefix, n, tid);
		out += ",\"args\":{";
		out += args;
		out += "}}";
	}
	void instant(const char *cat, int track, double ts, const char *prefix,
	    const char *n, int tid, const char *args)
	{
		begin("i", cat, track, ts);
		out += ",\"s\":\"t\"";
		name(prefix, n, tid);
		out += ",\"args\":{";
		out += args;
		out += "}}";
	}
	void meta(const char *what, int track, const char *key, const std::string &val)
	{
		out += first ? "\n" : ",\n";
		first = false;
		out += "{\"ph\":\"M\",\"pid\":1,\"tid\":";
		out += std::to_string(track);
		out += ",\"name\":\"";
		out += what;
		out += "\",\"args\":{\"";
		out += key;
		out += "\":";
		out += val;
		out += "}}";
	}
};

struct open_span {
	uint64_t tsc;
	uint64_t a;
	uint16_t event;
	char name[32];
};

void
export_ring(exporter &x, int r, uint64_t end_tsc)
{
	uint64_t n = ktr_recorded(r);
	std::size_t size = g_rings[r].kr_mask + 1;
	std::vector<ktr_entry> v(n < size ? n : size);
	v.resize(ktr_read(r, v.data(), v.size()));
	int track = r;
	bool running = false;       // a thread's slice is open
	ktr_entry run{};            // the switch that opened it
	std::vector<open_span> spans;
	char args[160];
	for (const ktr_entry &e : v) {
		double ts = x.us(e.ke_tsc);
		switch (e.ke_event) {
		case KTR_SWITCH:
			if (running) {
				std::snprintf(args, sizeof(args), "\"tid\":%lld,\"pri\":%llu",
				    static_cast<long long>(run.ke_a),
				    static_cast<unsigned long long>(run.ke_b));
				x.complete("sched", track, x.us(run.ke_tsc), ts, "",
				    run.ke_name, static_cast<int>(run.ke_a), args);
			}
			running = !(e.ke_flags & KTRF_IDLE);
			run = e;
			break;
		case KTR_WAKEUP:
			std::snprintf(args, sizeof(args), "\"waker\":%d,\"tid\":%lld,\"cpu\":%lld",
			    e.ke_tid, static_cast<long long>(e.ke_a),
			    static_cast<long long>(e.ke_b));
			x.instant("sched", track, ts, "wakeup ", e.ke_name,
			    static_cast<int>(e.ke_a), args);
			break;
		case KTR_STEAL:
			std::snprintf(args, sizeof(args), "\"tid\":%lld,\"from_cpu\":%lld",
			    static_cast<long long>(e.ke_a),
			    static_cast<long long>(e.ke_b));
			x.instant("sched", track, ts, "steal ", e.ke_name,
			    static_cast<int>(e.ke_a), args);
			break;
		case KTR_PREEMPT:
			std::snprintf(args, sizeof(args), "\"tid\":%d,\"flags\":%llu",
			    e.ke_tid, static_cast<unsigned long long>(e.ke_a));
			x.instant("sched", track, ts, "preempt ", e.ke_name, e.ke_tid,
			    args);
			break;
		case KTR_LOCK_CONTEND:
		case KTR_LOCK_ACQUIRE:
		case KTR_LOCK_RELEASE:
			std::snprintf(args, sizeof(args), "\"tid\":%d,\"lock\":\"%#llx\"",
			    e.ke_tid, static_cast<unsigned long long>(e.ke_a));
			x.instant("lock", track, ts,
			    e.ke_event == KTR_LOCK_CONTEND	 ? "contend " :
				e.ke_event == KTR_LOCK_ACQUIRE ? "acquire " :
								 "release ",
			    e.ke_name, 0, args);
			break;
		case KTR_INTR_BEGIN:
		case KTR_CALLOUT_BEGIN: {
			open_span s{e.ke_tsc, e.ke_a, e.ke_event, {}};
			std::memcpy(s.name, e.ke_name, sizeof(s.name));
			spans.push_back(s);
			break;
		}
		case KTR_INTR_END:
		case KTR_CALLOUT_END: {
			uint16_t want = e.ke_event == KTR_INTR_END ? KTR_INTR_BEGIN :
								     KTR_CALLOUT_BEGIN;
			const char *cat = want == KTR_INTR_BEGIN ? "intr" : "callout";
			std::snprintf(args, sizeof(args), "\"tid\":%d,\"cookie\":\"%#llx\"",
			    e.ke_tid, static_cast<unsigned long long>(e.ke_a));
			bool found = false;
			for (size_t i = spans.size(); i-- > 0;) {
				if (spans[i].event == want && spans[i].a == e.ke_a) {
					x.complete(cat, track, x.us(spans[i].tsc), ts, "",
					    spans[i].name, 0, args);
					spans.erase(spans.begin() + static_cast<long>(i));
					found = true;
					break;
				}
			}
			if (!found) // its begin was overwritten
				x.instant(cat, track, ts, "end ", e.ke_name, 0, args);
			break;
		}
		case KTR_USER:
			std::snprintf(args, sizeof(args), "\"tid\":%d,\"a\":%llu,\"b\":%llu",
			    e.ke_tid, static_cast<unsigned long long>(e.ke_a),
			    static_cast<unsigned long long>(e.ke_b));
			x.instant("user", track, ts, "", e.ke_name, 0, args);
			break;
		default:
			break;
		}
	}
	// Still running at the end of the trace, and handlers never ended.
	if (running) {
		std::snprintf(args, sizeof(args), "\"tid\":%lld,\"pri\":%llu",
		    static_cast<long long>(run.ke_a),
		    static_cast<unsigned long long>(run.ke_b));
		x.complete("sched", track, x.us(run.ke_tsc), x.us(end_tsc), "",
		    run.ke_name, static_cast<int>(run.ke_a), args);
	}
	for (const open_span &s : spans)
		x.instant(s.event == KTR_INTR_BEGIN ? "intr" : "callout", track,
		    x.us(s.tsc), "begin ", s.name, 0, "");
}

} // namespace

// ---- Boot (runtime/internal/machine.h).

void
ktr_boot(int ncpus) noexcept
{
	free_rings();
	if constexpr (!config::ktr)
		return;
	g_rings = new ktr_ring[ncpus + 1];
	for (int r = 0; r <= ncpus; r++) {
		g_rings[r].kr_buf = static_cast<ktr_entry *>(::operator new[](
		    g_entries * sizeof(ktr_entry), std::align_val_t(64)));
		std::memset(static_cast<void *>(g_rings[r].kr_buf), 0,
		    g_entries * sizeof(ktr_entry));
		g_rings[r].kr_mask = g_entries - 1;
	}
	g_tsc0 = __rdtsc();
	g_ns0 = clock_ns();
	// Published last: ktr_record() of a foreign thread tests g_nrings.
	__atomic_store_n(&g_nrings, ncpus + 1, __ATOMIC_RELEASE);
}

// ---- Recording.

void
ktr_record(ktr_event ev, uint16_t flags, uint64_t a, uint64_t b,
    const char *name) noexcept
{
	pcpu *pc = curpcpu_fast();
	ktr_ring *r;
	uint64_t i;
	int tid;
	if (__builtin_expect(pc != nullptr, 1)) {
		r = &g_rings[pc->pc_cpuid];
		i = 1;
		asm volatile("xaddq %0, %1" : "+r"(i), "+m"(r->kr_idx)); // step 2
		tid = pc->pc_curthread->td_tid;
	} else {
		int n = __atomic_load_n(&g_nrings, __ATOMIC_ACQUIRE);
		if (n == 0)
			return;
		r = &g_rings[n - 1];
		i = __atomic_fetch_add(&r->kr_idx, 1, __ATOMIC_RELAXED); // step 3
		tid = curthread_fast()->td_tid;
	}
	ktr_entry *e = &r->kr_buf[i & r->kr_mask];
	e->ke_tsc = __rdtsc();
	e->ke_flags = flags;
	e->ke_tid = tid;
	e->ke_a = a;
	e->ke_b = b;
	std::size_t k = 0;
	if (name != nullptr)
		for (; k < sizeof(e->ke_name) - 1 && name[k] != '\0'; k++)
			e->ke_name[k] = name[k];
	e->ke_name[k] = '\0';
	e->ke_event = ev;
}

// ---- Reading and export.

void
ktr_set_entries(std::size_t n) noexcept
{
	std::size_t e = 64;
	while (e < n && e < (std::size_t(1) << 30))
		e <<= 1;
	g_entries = e;
}

int
ktr_rings() noexcept
{
	return __atomic_load_n(&g_nrings, __ATOMIC_ACQUIRE);
}

uint64_t
ktr_recorded(int ring) noexcept
{
	if (ring < 0 || ring >= ktr_rings())
		return 0;
	return __atomic_load_n(&g_rings[ring].kr_idx, __ATOMIC_RELAXED);
}

std::size_t
ktr_read(int ring, ktr_entry *out, std::size_t max) noexcept
{
	if (ring < 0 || ring >= ktr_rings())
		return 0;
	const ktr_ring &r = g_rings[ring];
	uint64_t end = __atomic_load_n(&r.kr_idx, __ATOMIC_ACQUIRE);
	uint64_t size = r.kr_mask + 1;
	uint64_t start = end > size ? end - size : 0;
	std::size_t n = 0;
	for (uint64_t i = start; i < end && n < max; i++) {
		const ktr_entry &e = r.kr_buf[i & r.kr_mask];
		if (e.ke_event == KTR_NONE) // step 4: claimed, not yet written
			continue;
		out[n++] = e;
	}
	return n;
}

void
ktr_clear() noexcept
{
	for (int r = 0; r < ktr_rings(); r++) {
		std::memset(static_cast<void *>(g_rings[r].kr_buf), 0,
		    (g_rings[r].kr_mask + 1) * sizeof(ktr_entry));
		__atomic_store_n(&g_rings[r].kr_idx, 0, __ATOMIC_RELEASE);
	}
}

int
ktr_export_chrome(std::FILE *f) noexcept
{
	try {
		exporter x;
		uint64_t tsc1 = __rdtsc(), ns1 = clock_ns();
		x.tsc_to_us = tsc1 > g_tsc0 ?
		    static_cast<double>(ns1 - g_ns0) / 1000.0 /
			static_cast<double>(tsc1 - g_tsc0) :
		    0.0;
		int rings = ktr_rings();
		x.out = "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"usmp_ktr\":";
		x.out += config::ktr ? "true" : "false";
		x.out += "},\"traceEvents\":[";
		x.meta("process_name", 0, "name", "\"usmp\"");
		for (int r = 0; r < rings; r++) {
			x.meta("thread_name", r, "name",
			    r == rings - 1 ? std::string("\"foreign threads\"") :
					     "\"cpu" + std::to_string(r) + "\"");
			x.meta("thread_sort_index", r, "sort_index", std::to_string(r));
		}
		for (int r = 0; r < rings; r++)
			export_ring(x, r, tsc1);
		x.out += "\n]}\n";
		if (std::fwrite(x.out.data(), 1, x.out.size(), f) != x.out.size())
			return EIO;
		return std::fflush(f) == 0 ? 0 : errno;
	} catch (const std::bad_alloc &) {
		return ENOMEM;
	}
}

int
ktr_export_chrome(const char *path) noexcept
{
	std::FILE *f = std::fopen(path, "w");
	if (f == nullptr)
		return errno;
	int error = ktr_export_chrome(f);
	if (std::fclose(f) != 0 && error == 0)
		error = errno;
	return error;
}

} // namespace usmp

// Lock profiling (sync/lock_profile.h; FreeBSD's subr_lock.c).
//
// Each CPU (OS thread) owns an open-addressed table of records keyed by
// (lock type, file, line), updated only by code running on that CPU inside
// a critical section, so acquisitions take no global lock and never
// contend.  A table registers itself once, under prof_reg_lock, in a fixed
// registry that the dump walks.  The dump reads other CPUs' records with
// relaxed atomics (the counters are atomics written by one CPU): figures
// of acquisitions still in flight may be missed, never torn.
//
// Hold time: the holder writes lo_prof_start/file/line into the lock object
// after acquiring it exclusively and reads them back at the final release
// (one holder at a time: no race).  A shared hold's start and site go on
// its holder's list (td_sync.ts_lprof, touched by that thread only), found
// again at its release by the lock's address, newest first (a recursed
// read hold releases its newest acquisition: the totals are the same).
#include "sync/lock_profile.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <tuple>

#include "runtime/critical.h"
#include "runtime/thread.h"
#include "runtime/internal/spinlock.h"

namespace usmp {

namespace {

constexpr int PROF_SLOTS = 4096; // records per CPU (power of two)
constexpr int PROF_TABLES = 512; // CPUs and foreign threads

struct prof_slot {
	std::atomic<const char *> ps_type{nullptr}; // null: free; (c) once set
	const char *ps_cls = nullptr;
	const char *ps_file = nullptr;
	int ps_line = 0;
	std::atomic<uint64_t> ps_count{0}, ps_contested{0};
	std::atomic<uint64_t> ps_hold_total{0}, ps_hold_max{0};
	std::atomic<uint64_t> ps_wait_total{0}, ps_wait_max{0};
};

struct prof_table {
	prof_slot pt_slots[PROF_SLOTS];
	bool pt_registered = false;
};

spinlock prof_reg_lock;
prof_table *prof_reg[PROF_TABLES];   // (prof_reg_lock) append-only
std::atomic<int> prof_nreg{0};
std::atomic<uint64_t> prof_rejected{0};
std::atomic<bool> prof_on{true};
std::atomic<bool> prof_dump_registered{false};

// Per CPU: allocated on first use (4096 records is too large a
// thread_local for every OS thread to carry).
thread_local prof_table *prof_mine = nullptr;

__attribute__((noinline)) prof_table *
my_table() noexcept
{
	prof_table *t = prof_mine;
	if (__builtin_expect(t != nullptr, 1))
		return t;
	t = new (std::nothrow) prof_table;
	if (t == nullptr)
		return nullptr;
	spinlock_enter();
	prof_reg_lock.lock();
	int n = prof_nreg.load(std::memory_order_relaxed);
	if (n < PROF_TABLES) {
		prof_reg[n] = t;
		t->pt_registered = true;
		prof_nreg.store(n + 1, std::memory_order_release);
	}
	prof_reg_lock.unlock();
	spinlock_exit();
	prof_mine = t;
	// Unregistered (more than PROF_TABLES OS threads): the dump could
	// not see its records, so it takes none (counted as rejected).
	return t->pt_registered ? t : nullptr;
}

inline void
atomic_max(std::atomic<uint64_t> &a, uint64_t v) noexcept
{
	uint64_t cur = a.load(std::memory_order_relaxed);
	while (v > cur && !a.compare_exchange_weak(cur, v,
			      std::memory_order_relaxed))
		;
}

// The slot of (type, file, line) in t, made if new; null if t is full.
prof_slot *
slot_of(prof_table *t, const char *type, const char *cls, const char *file,
    int line) noexcept
{
	uintptr_t h = reinterpret_cast<uintptr_t>(type) * 31 +
	    reinterpret_cast<uintptr_t>(file) * 17 + static_cast<unsigned>(line);
	h ^= h >> 15;
	for (int probe = 0; probe < PROF_SLOTS; probe++) {
		prof_slot &s = t->pt_slots[(h + probe) & (PROF_SLOTS - 1)];
		const char *ty = s.ps_type.load(std::memory_order_acquire);
		if (ty == nullptr) {
			s.ps_cls = cls;
			s.ps_file = file;
			s.ps_line = line;
			s.ps_type.store(type, std::memory_order_release);
			return &s;
		}
		if (ty == type && s.ps_file == file && s.ps_line == line)
			return &s;
	}
	prof_rejected.fetch_add(1, std::memory_order_relaxed);
	return nullptr;
}

void
dump_at_exit() noexcept
{
	const char *where = std::getenv("USMP_LOCK_PROFILING_DUMP");
	if (where == nullptr)
		return;
	std::string s = lock_profile_stats();
	FILE *f = std::strcmp(where, "stderr") == 0 ? stderr :
						      std::fopen(where, "w");
	if (f == nullptr)
		return;
	std::fputs(s.c_str(), f);
	if (f != stderr)
		std::fclose(f);
}

} // namespace

uint64_t
lock_profile_now() noexcept
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull +
	    static_cast<uint64_t>(ts.tv_nsec);
}

void
lock_profile_enable(bool on) noexcept
{
	prof_on.store(on, std::memory_order_relaxed);
}

void
lock_profile_reset() noexcept
{
	int n = prof_nreg.load(std::memory_order_acquire);
	for (int i = 0; i < n; i++)
		for (prof_slot &s : prof_reg[i]->pt_slots) {
			s.ps_count.store(0, std::memory_order_relaxed);
			s.ps_contested.store(0, std::memory_order_relaxed);
			s.ps_hold_total.store(0, std::memory_order_relaxed);
			s.ps_hold_max.store(0, std::memory_order_relaxed);
			s.ps_wait_total.store(0, std::memory_order_relaxed);
			s.ps_wait_max.store(0, std::memory_order_relaxed);
		}
}

std::vector<lock_profile_record>
lock_profile_records()
{
	std::map<std::tuple<std::string, std::string, int>, lock_profile_record> m;
	int n = prof_nreg.load(std::memory_order_acquire);
	for (int i = 0; i < n; i++) {
		for (prof_slot &s : prof_reg[i]->pt_slots) {
			const char *ty = s.ps_type.load(std::memory_order_acquire);
			if (ty == nullptr)
				continue;
			auto key = std::make_tuple(std::string(ty),
			    std::string(s.ps_file), s.ps_line);
			auto [it, fresh] = m.try_emplace(key,
			    lock_profile_record{ty, s.ps_cls, s.ps_file, s.ps_line,
				0, 0, 0, 0, 0, 0});
			lock_profile_record &r = it->second;
			r.count += s.ps_count.load(std::memory_order_relaxed);
			r.contested += s.ps_contested.load(std::memory_order_relaxed);
			r.hold_total += s.ps_hold_total.load(std::memory_order_relaxed);
			r.hold_max = std::max(r.hold_max,
			    s.ps_hold_max.load(std::memory_order_relaxed));
			r.wait_total += s.ps_wait_total.load(std::memory_order_relaxed);
			r.wait_max = std::max(r.wait_max,
			    s.ps_wait_max.load(std::memory_order_relaxed));
		}
	}
	std::vector<lock_profile_record> v;
	for (auto &[k, r] : m)
		if (r.count != 0 || r.hold_total != 0)
			v.push_back(r);
	std::sort(v.begin(), v.end(), [](const auto &a, const auto &b) {
		return a.hold_total > b.hold_total;
	});
	return v;
}

std::string
lock_profile_stats()
{
	if constexpr (!config::lock_profiling)
		return "lock profiling is not built in (USMP_LOCK_PROFILING=OFF)\n";
	std::string s = "     max  wait_max       total  wait_total       count"
			"    avg wait_avg cnt_hold cnt_lock name\n";
	char line[768];
	for (const auto &r : lock_profile_records()) {
		uint64_t c = r.count != 0 ? r.count : 1;
		std::snprintf(line, sizeof line,
		    "%8ju %9ju %11ju %11ju %11ju %6ju %6ju %2ju %6ju %s:%d (%s:%s)\n",
		    static_cast<uintmax_t>(r.hold_max / 1000),
		    static_cast<uintmax_t>(r.wait_max / 1000),
		    static_cast<uintmax_t>(r.hold_total / 1000),
		    static_cast<uintmax_t>(r.wait_total / 1000),
		    static_cast<uintmax_t>(r.count),
		    static_cast<uintmax_t>(r.hold_total / 1000 / c),
		    static_cast<uintmax_t>(r.wait_total / 1000 / c),
		    static_cast<uintmax_t>(0), static_cast<uintmax_t>(r.contested),
		    r.file, r.line, r.cls, r.type);
		s += line;
	}
	uint64_t rej = prof_rejected.load(std::memory_order_relaxed);
	if (rej != 0)
		s += "(" + std::to_string(rej) + " acquisitions not recorded: a "
		    "CPU's table is full (PROF_SLOTS = " +
		    std::to_string(PROF_SLOTS) + " sites) or more than "
		    "PROF_TABLES = " + std::to_string(PROF_TABLES) +
		    " OS threads took locks; raise them in sync/lock_profile.cc "
		    "and rebuild)\n";
	return s;
}

namespace {

#if USMP_LOCK_PROFILING
// Adds a hold of lo that began at start (ns) at file:line to this CPU's
// record of that site.
void
add_hold(const lock_object *lo, const char *file, int line,
    uint64_t start) noexcept
{
	uint64_t held = lock_profile_now() - start;
	critical_enter();
	prof_table *t = my_table();
	prof_slot *s = t != nullptr ? slot_of(t, lo->lo_type,
	    lo->lo_class->lc_name, file, line) : nullptr;
	if (s != nullptr) {
		s->ps_hold_total.fetch_add(held, std::memory_order_relaxed);
		atomic_max(s->ps_hold_max, held);
	}
	critical_exit();
}

// Records the start of a shared hold of lo by curthread (untimed if its
// list is full).
void
push_shared(const lock_object *lo, const char *file, int line,
    uint64_t start) noexcept
{
	auto &ts = curthread_fast()->td_sync;
	if (ts.ts_lprof_n == static_cast<int>(std::size(ts.ts_lprof)))
		return;
	ts.ts_lprof[ts.ts_lprof_n++] = {lo, file, line, start};
}

// Takes curthread's newest shared-hold record of lo off its list: false
// if there is none (the hold was untimed, or began with profiling off).
bool
pop_shared(const lock_object *lo, const char **file, int *line,
    uint64_t *start) noexcept
{
	auto &ts = curthread_fast()->td_sync;
	for (int i = ts.ts_lprof_n - 1; i >= 0; i--) {
		if (ts.ts_lprof[i].lp_lock != lo)
			continue;
		*file = ts.ts_lprof[i].lp_file;
		*line = ts.ts_lprof[i].lp_line;
		*start = ts.ts_lprof[i].lp_start;
		for (int j = i + 1; j < ts.ts_lprof_n; j++)
			ts.ts_lprof[j - 1] = ts.ts_lprof[j];
		ts.ts_lprof_n--;
		return true;
	}
	return false;
}
#endif

} // namespace

void
lock_profile_obtain(lock_object *lo, bool exclusive, bool contested,
    uint64_t waited, const char *file, int line) noexcept
{
	if constexpr (!config::lock_profiling)
		return;
	if ((lo->lo_flags & LO_NOPROFILE) ||
	    !prof_on.load(std::memory_order_relaxed))
		return;
	if (!prof_dump_registered.load(std::memory_order_relaxed) &&
	    !prof_dump_registered.exchange(true))
		std::atexit([] { dump_at_exit(); });
	critical_enter();
	prof_table *t = my_table();
	prof_slot *s = t != nullptr ? slot_of(t, lo->lo_type,
	    lo->lo_class->lc_name, file, line) : nullptr;
	if (t == nullptr)
		prof_rejected.fetch_add(1, std::memory_order_relaxed);
	if (s != nullptr) {
		s->ps_count.fetch_add(1, std::memory_order_relaxed);
		if (contested) {
			s->ps_contested.fetch_add(1, std::memory_order_relaxed);
			s->ps_wait_total.fetch_add(waited, std::memory_order_relaxed);
			atomic_max(s->ps_wait_max, waited);
		}
	}
	critical_exit();
#if USMP_LOCK_PROFILING
	if (exclusive) {
		lo->lo_prof_start = lock_profile_now();
		lo->lo_prof_file = file;
		lo->lo_prof_line = line;
	} else {
		push_shared(lo, file, line, lock_profile_now());
	}
#endif
}

void
lock_profile_release(lock_object *lo) noexcept
{
#if USMP_LOCK_PROFILING
	uint64_t start = lo->lo_prof_start;
	if (start == 0)
		return;
	lo->lo_prof_start = 0;
	add_hold(lo, lo->lo_prof_file, lo->lo_prof_line, start);
#else
	(void)lo;
#endif
}

void
lock_profile_release_shared(lock_object *lo) noexcept
{
#if USMP_LOCK_PROFILING
	const char *file;
	int line;
	uint64_t start;
	if (pop_shared(lo, &file, &line, &start))
		add_hold(lo, file, line, start);
#else
	(void)lo;
#endif
}

void
lock_profile_upgrade(lock_object *lo) noexcept
{
#if USMP_LOCK_PROFILING
	const char *file;
	int line;
	uint64_t start;
	if (pop_shared(lo, &file, &line, &start)) {
		lo->lo_prof_start = start;
		lo->lo_prof_file = file;
		lo->lo_prof_line = line;
	} else {
		lo->lo_prof_start = 0;
	}
#else
	(void)lo;
#endif
}

void
lock_profile_downgrade(lock_object *lo) noexcept
{
#if USMP_LOCK_PROFILING
	uint64_t start = lo->lo_prof_start;
	if (start == 0)
		return;
	lo->lo_prof_start = 0;
	push_shared(lo, lo->lo_prof_file, lo->lo_prof_line, start);
#else
	(void)lo;
#endif
}

} // namespace usmp

// Segments (runtime/segment.h): the three classes, the commit limit, the
// address-ordered table and its lock-free lookup under concurrent updates.
#include <catch2/catch.hpp>

#include <linux/capability.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "runtime/segment.h"
#include "support/death.h"

using namespace usmp;

namespace {

const std::size_t PG = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));

// A distinct owner token per index.
void *
tok(std::size_t i)
{
	return reinterpret_cast<void *>(0x1000 + i * 16);
}

bool
resident(void *p, std::size_t len)
{
	std::vector<unsigned char> v((len + PG - 1) / PG);
	if (mincore(p, len, v.data()) != 0)
		return false;
	for (unsigned char c : v)
		if (!(c & 1))
			return false;
	return true;
}

struct commit_limit_guard {
	~commit_limit_guard() { seg_set_commit_limit(0); }
};

} // namespace

TEST_CASE("segattach and segdetach of a plain segment", "[segment]")
{
	std::size_t n0 = seg_count();
	void *p = nullptr;
	int tokv;
	REQUIRE(segattach(0, 3 * PG - 5, &p, "plain test", &tokv) == 0);
	REQUIRE(p != nullptr);
	REQUIRE(seg_count() == n0 + 1);
	std::memset(p, 0xa5, 3 * PG); // rounded up to whole pages, writable

	segment s;
	char *c = static_cast<char *>(p);
	for (char *a : {c, c + PG + 17, c + 3 * PG - 1}) {
		REQUIRE(seg_lookup(a, &s));
		CHECK(s.base() == c);
		CHECK(s.s_len == 3 * PG);
		CHECK(s.s_flags == 0);
		CHECK(s.s_owner == &tokv);
		CHECK(std::strcmp(s.s_name, "plain test") == 0);
	}
	// One past the end is not in it (it may be in a neighbour).
	if (seg_lookup(c + 3 * PG, &s))
		CHECK(s.base() == c + 3 * PG);

	REQUIRE(segdetach(c + PG) == 0); // any address inside detaches it
	CHECK(!seg_lookup(c, &s));
	CHECK(seg_count() == n0);
	CHECK(segdetach(c) == EINVAL);
}

TEST_CASE("segattach rejects bad requests and leaves the table alone",
    "[segment]")
{
	std::size_t n0 = seg_count();
	void *p = nullptr;
	CHECK(segattach(SG_NONE | SG_COMMIT, PG, &p) == EINVAL);
	CHECK(segattach(0, 0, &p) == EINVAL);
	CHECK(segattach(0x8000, PG, &p) == EINVAL);
	p = reinterpret_cast<void *>(0x12345); // not page-aligned
	CHECK(segattach(0, PG, &p) == EINVAL);
	seg_spec v[2];
	v[0].ss_len = PG;
	v[1].ss_len = PG / 2; // not a page multiple
	CHECK(segattachv(v, 2) == EINVAL);
	v[1].ss_len = PG;
	v[1].ss_flags = SG_NONE | SG_COMMIT;
	CHECK(segattachv(v, 2) == EINVAL);
	CHECK(v[0].ss_addr == nullptr);
	CHECK(seg_count() == n0);
	// Long names are truncated, not overrun.
	p = nullptr;
	REQUIRE(segattach(0, PG, &p,
	    "a name much longer than twenty characters") == 0);
	segment s;
	REQUIRE(seg_lookup(p, &s));
	CHECK(std::strlen(s.s_name) == SEG_NAMELEN - 1);
	REQUIRE(segdetach(p) == 0);
}

TEST_CASE("segattach at a fixed address", "[segment]")
{
	void *p = nullptr;
	REQUIRE(segattach(0, 4 * PG, &p) == 0);
	void *q = p;
	REQUIRE(segattach(0, PG, &q) == EEXIST); // occupied
	REQUIRE(segdetach(p) == 0);
	q = p;
	REQUIRE(segattach(0, 2 * PG, &q, "fixed") == 0);
	CHECK(q == p);
	segment s;
	REQUIRE(seg_lookup(static_cast<char *>(p) + PG, &s));
	CHECK(std::strcmp(s.s_name, "fixed") == 0);
	REQUIRE(segdetach(q) == 0);
}

TEST_CASE("SG_NONE segments fault on any access", "[segment][death]")
{
	void *p = nullptr;
	REQUIRE(segattach(SG_NONE, 2 * PG, &p, "red zone") == 0);
	segment s;
	REQUIRE(seg_lookup(p, &s));
	CHECK(s.s_flags == SG_NONE);
	volatile char *c = static_cast<volatile char *>(p);

	auto r = test::run_death("read SG_NONE", [c] { (void)c[PG + 3]; });
	INFO(r.describe());
	CHECK(r.killed_by(SIGSEGV));
	r = test::run_death("write SG_NONE", [c] { c[0] = 1; });
	INFO(r.describe());
	CHECK(r.killed_by(SIGSEGV));
	REQUIRE(segdetach(p) == 0);
}

TEST_CASE("segattachv: one mapping, red zones fault, owners from prepare",
    "[segment][death]")
{
	for (bool guard : {true, false}) {
		seg_set_redzone_method(guard);
		INFO("red zones by " << seg_redzone_method());
		std::size_t n0 = seg_count();
		seg_spec v[5];
		for (int i = 0; i < 5; i++) {
			v[i].ss_flags = (i % 2 == 0) ? SG_NONE : 0;
			v[i].ss_len = (i % 2 == 0) ? PG : 4 * PG;
			v[i].ss_name = (i % 2 == 0) ? "rz" : "data";
		}
		REQUIRE(segattachv(v, 5, [](seg_spec *vv, std::size_t n, void *) {
			for (std::size_t i = 0; i < n; i++)
				vv[i].ss_owner = tok(i);
		}, nullptr) == 0);
		REQUIRE(seg_count() == n0 + 5);
		for (int i = 0; i < 5; i++) {
			if (i > 0)
				CHECK(v[i].ss_addr == static_cast<char *>(
				    v[i - 1].ss_addr) + v[i - 1].ss_len);
			segment s;
			REQUIRE(seg_lookup(v[i].ss_addr, &s));
			CHECK(s.s_owner == tok(i));
			CHECK(s.s_flags == v[i].ss_flags);
		}
		std::memset(v[1].ss_addr, 1, 4 * PG);
		std::memset(v[3].ss_addr, 1, 4 * PG);
		volatile char *rz = static_cast<volatile char *>(v[2].ss_addr);
		auto r = test::run_death("red zone between", [rz] { rz[5] = 1; });
		INFO(r.describe());
		CHECK(r.killed_by(SIGSEGV));
		volatile char *past = static_cast<volatile char *>(v[3].ss_addr) +
		    4 * PG;
		r = test::run_death("red zone above", [past] { (void)*past; });
		INFO(r.describe());
		CHECK(r.killed_by(SIGSEGV));

		// A range with no segment is EINVAL and publishes nothing.
		uint64_t u = seg_get_table_info().ti_updates;
		void *hole = nullptr;
		REQUIRE(segattach(0, PG, &hole) == 0);
		REQUIRE(segdetach(hole) == 0);
		CHECK(segdetach_range(hole, PG) == EINVAL);
		CHECK(seg_get_table_info().ti_updates == u + 2);
		// A range detach may not cut a segment in two.
		CHECK(segdetach_range(static_cast<char *>(v[0].ss_addr) + PG,
		    PG) == EINVAL);
		CHECK(seg_count() == n0 + 5);
		// One piece may go on its own.
		REQUIRE(segdetach(v[4].ss_addr) == 0);
		REQUIRE(segdetach_range(v[0].ss_addr, 3 * PG + 8 * PG) == 0);
		CHECK(seg_count() == n0);
	}
	seg_set_redzone_method(true);
}

TEST_CASE("SG_COMMIT counts against the commit limit", "[segment]")
{
	commit_limit_guard restore;
	struct rlimit rl;
	REQUIRE(getrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	std::size_t dflt = rl.rlim_cur == RLIM_INFINITY ? SIZE_MAX :
	    static_cast<std::size_t>(rl.rlim_cur);
	CHECK(seg_commit_limit() == dflt);

	seg_set_commit_limit(64 * PG);
	CHECK(seg_commit_limit() == 64 * PG);
	std::size_t c0 = seg_committed();
	std::size_t n0 = seg_count();
	void *a = nullptr;
	REQUIRE(segattach(SG_COMMIT, 40 * PG, &a, "committed") == 0);
	CHECK(seg_committed() == c0 + 40 * PG);
	CHECK(resident(a, 40 * PG)); // pre-faulted
	segment s;
	REQUIRE(seg_lookup(a, &s));
	CHECK(s.s_flags == SG_COMMIT);

	// Over the limit: ENOMEM, nothing mapped, nothing in the table.
	void *b = nullptr;
	CHECK(segattach(SG_COMMIT, 30 * PG, &b) == ENOMEM);
	CHECK(b == nullptr);
	CHECK(seg_count() == n0 + 1);
	CHECK(seg_committed() == c0 + 40 * PG);
	seg_spec v[3];
	v[0].ss_len = v[1].ss_len = v[2].ss_len = 16 * PG;
	v[1].ss_flags = SG_COMMIT;
	v[2].ss_flags = SG_COMMIT; // 32 pages more: over
	CHECK(segattachv(v, 3) == ENOMEM);
	CHECK(v[0].ss_addr == nullptr);
	CHECK(seg_count() == n0 + 1);
	CHECK(seg_committed() == c0 + 40 * PG);
	// Within it, a batch commits only its SG_COMMIT pieces.
	v[2].ss_flags = 0;
	REQUIRE(segattachv(v, 3) == 0);
	CHECK(seg_committed() == c0 + 56 * PG);
	CHECK(resident(v[1].ss_addr, 16 * PG));
	REQUIRE(segdetach_range(v[0].ss_addr, 48 * PG) == 0);
	CHECK(seg_committed() == c0 + 40 * PG);

	REQUIRE(segdetach(a) == 0);
	CHECK(seg_committed() == c0);
	// The freed room can be committed again.
	REQUIRE(segattach(SG_COMMIT, 64 * PG, &b) == 0);
	REQUIRE(segdetach(b) == 0);
	CHECK(seg_count() == n0);
}

TEST_CASE("SG_COMMIT whose mlock fails is ENOMEM and leaves nothing",
    "[segment][death]")
{
	// In a child without CAP_IPC_LOCK, mlock obeys a small RLIMIT_MEMLOCK
	// while our own limit would allow the attach.
	auto r = test::run_death("mlock fails", [] {
		__user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
		__user_cap_data_struct d[2] = {};
		if (syscall(SYS_capget, &h, d) != 0)
			_exit(10);
		d[0].effective &= ~(1u << CAP_IPC_LOCK);
		if (syscall(SYS_capset, &h, d) != 0)
			_exit(11);
		struct rlimit rl = {16 * PG, 16 * PG};
		if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
			_exit(12);
		seg_set_commit_limit(std::size_t{1} << 30);
		std::size_t n0 = seg_count(), c0 = seg_committed();
		void *p = nullptr;
		if (segattach(SG_COMMIT, 256 * PG, &p) != ENOMEM)
			_exit(13);
		if (p != nullptr || seg_count() != n0 || seg_committed() != c0)
			_exit(14);
		seg_spec v[2];
		v[0].ss_len = v[1].ss_len = 128 * PG;
		v[1].ss_flags = SG_COMMIT;
		if (segattachv(v, 2) != ENOMEM)
			_exit(15);
		if (v[0].ss_addr != nullptr || seg_count() != n0 ||
		    seg_committed() != c0)
			_exit(16);
		// Something small still fits under the rlimit.
		if (segattach(SG_COMMIT, 4 * PG, &p) != 0)
			_exit(17);
		if (segdetach(p) != 0 || seg_committed() != c0)
			_exit(18);
		_exit(0);
	});
	INFO(r.describe());
	CHECK(r.exited_with(0));
}

TEST_CASE("the table holds thousands of segments, in order, found by address",
    "[segment]")
{
	const std::size_t N = 5000;
	std::size_t n0 = seg_count();
	seg_table_info t0 = seg_get_table_info();
	std::vector<char *> base(N);
	for (std::size_t i = 0; i < N; i++) {
		void *p = nullptr;
		REQUIRE(segattach(i % 3 == 0 ? SG_NONE : 0, (1 + i % 4) * PG, &p,
		    "many", tok(i)) == 0);
		base[i] = static_cast<char *>(p);
	}
	// A 301-piece batch too (a big arena).
	std::vector<seg_spec> v(301);
	for (std::size_t i = 0; i < v.size(); i++) {
		v[i].ss_len = PG;
		v[i].ss_flags = i % 2 == 0 ? SG_NONE : 0;
		v[i].ss_owner = tok(N + i);
	}
	REQUIRE(segattachv(v.data(), v.size()) == 0);
	REQUIRE(seg_count() == n0 + N + v.size());
	seg_table_info t1 = seg_get_table_info();
	CHECK(t1.ti_chunks >= (N + v.size()) / 1024);
	CHECK(t1.ti_chunks > t0.ti_chunks);

	auto check_all = [&](const std::vector<bool> &gone) {
		segment s;
		for (std::size_t i = 0; i < N; i++) {
			std::size_t len = (1 + i % 4) * PG;
			bool f1 = seg_lookup(base[i], &s);
			bool ok = gone[i] ? (!f1 || s.s_owner != tok(i)) :
			    (f1 && s.s_owner == tok(i) && s.base() == base[i] &&
				s.s_len == len);
			bool f2 = seg_lookup(base[i] + len - 1, &s);
			ok = ok && (gone[i] ? (!f2 || s.s_owner != tok(i)) :
			    (f2 && s.s_owner == tok(i)));
			if (!ok)
				FAIL("segment " << i << " looked up wrongly");
		}
		for (std::size_t i = 0; i < v.size(); i++) {
			REQUIRE(seg_lookup(static_cast<char *>(v[i].ss_addr) + 7, &s));
			REQUIRE(s.s_owner == tok(N + i));
		}
	};
	std::vector<bool> gone(N, false);
	check_all(gone);

	// seg_foreach sees them in strictly increasing, disjoint order.
	struct walk {
		uintptr_t last_end = 0;
		std::size_t n = 0;
		bool ordered = true;
	} w;
	seg_foreach([](const segment &s, void *arg) {
		walk *wp = static_cast<walk *>(arg);
		if (s.s_base < wp->last_end)
			wp->ordered = false;
		wp->last_end = s.s_base + s.s_len;
		wp->n++;
		return true;
	}, &w);
	CHECK(w.ordered);
	CHECK(w.n == seg_count());

	// Detach a random half, check, then the rest.
	std::mt19937 rng(12345);
	for (std::size_t i = 0; i < N; i++)
		if (rng() & 1) {
			REQUIRE(segdetach(base[i]) == 0);
			gone[i] = true;
		}
	check_all(gone);
	for (std::size_t i = 0; i < N; i++)
		if (!gone[i])
			REQUIRE(segdetach(base[i] + PG / 2) == 0);
	REQUIRE(segdetach_range(v[0].ss_addr, v.size() * PG) == 0);
	CHECK(seg_count() == n0);
	seg_table_info t2 = seg_get_table_info();
	CHECK(t2.ti_retired == 0); // no reader holds an old version
	CHECK(t2.ti_chunks <= t0.ti_chunks + 1);
}

namespace {

// A signal handler's lookup, for the concurrent test: it must not lock.
std::atomic<void *> g_sig_addr{nullptr};
std::atomic<void *> g_sig_owner{nullptr};
std::atomic<long> g_sig_bad{0};

void
lookup_handler(int)
{
	segment s;
	void *a = g_sig_addr.load(std::memory_order_relaxed);
	if (a == nullptr)
		return;
	if (!seg_lookup(a, &s) ||
	    s.s_owner != g_sig_owner.load(std::memory_order_relaxed))
		g_sig_bad.fetch_add(1, std::memory_order_relaxed);
}

} // namespace

TEST_CASE("lookups stay right while another thread attaches and detaches",
    "[segment]")
{
	const std::size_t STABLE = 300;
	std::size_t n0 = seg_count();
	std::vector<char *> stable(STABLE);
	for (std::size_t i = 0; i < STABLE; i++) {
		void *p = nullptr;
		REQUIRE(segattach(0, PG, &p, "stable", tok(i)) == 0);
		stable[i] = static_cast<char *>(p);
	}
	g_sig_addr = stable[7];
	g_sig_owner = tok(7);
	struct sigaction sa {}, old {};
	sa.sa_handler = lookup_handler;
	sigemptyset(&sa.sa_mask);
	REQUIRE(sigaction(SIGUSR1, &sa, &old) == 0);

	std::atomic<bool> stop{false};
	std::atomic<long> bad{0}, lookups{0}, churn_seen{0};
	auto reader = [&](unsigned seed) {
		std::mt19937 rng(seed);
		long n = 0;
		while (!stop.load(std::memory_order_relaxed)) {
			std::size_t i = rng() % STABLE;
			segment s;
			if (!seg_lookup(stable[i] + rng() % PG, &s) ||
			    s.s_owner != tok(i) || s.base() != stable[i])
				bad.fetch_add(1);
			// A lookup that lands on a churning segment must see
			// a whole entry.
			if (seg_lookup(reinterpret_cast<void *>(s.s_base + s.s_len),
			    &s) && std::strcmp(s.s_name, "churn") == 0) {
				churn_seen.fetch_add(1, std::memory_order_relaxed);
				if (s.s_owner != reinterpret_cast<void *>(s.s_base ^
				    0x5a5a))
					bad.fetch_add(1);
			}
			n++;
		}
		lookups.fetch_add(n);
	};
	std::thread r1(reader, 1), r2(reader, 2);
	pthread_t r1h = r1.native_handle();

	std::mt19937 rng(99);
	std::vector<void *> live;
	auto t_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
	long updates = 0;
	while (std::chrono::steady_clock::now() < t_end) {
		if (live.size() < 400 && (live.empty() || rng() % 3 != 0)) {
			if (rng() % 4 == 0) {
				seg_spec v[9];
				for (auto &x : v) {
					x.ss_len = PG;
					x.ss_name = "churn";
				}
				REQUIRE(segattachv(v, 9, [](seg_spec *vv,
				    std::size_t n, void *) {
					for (std::size_t i = 0; i < n; i++)
						vv[i].ss_owner = reinterpret_cast<void *>(
						    reinterpret_cast<uintptr_t>(
							vv[i].ss_addr) ^ 0x5a5a);
				}, nullptr) == 0);
				for (auto &x : v)
					live.push_back(x.ss_addr);
			} else {
				seg_spec v1;
				v1.ss_len = PG;
				v1.ss_name = "churn";
				REQUIRE(segattachv(&v1, 1, [](seg_spec *vv,
				    std::size_t, void *) {
					vv->ss_owner = reinterpret_cast<void *>(
					    reinterpret_cast<uintptr_t>(vv->ss_addr) ^
					    0x5a5a);
				}, nullptr) == 0);
				live.push_back(v1.ss_addr);
			}
		} else {
			std::size_t k = rng() % live.size();
			REQUIRE(segdetach(live[k]) == 0);
			live[k] = live.back();
			live.pop_back();
		}
		updates++;
		if (updates % 64 == 0)
			pthread_kill(r1h, SIGUSR1);
	}
	stop = true;
	r1.join();
	r2.join();
	sigaction(SIGUSR1, &old, nullptr);
	INFO("lookups " << lookups.load() << ", updates " << updates
	    << ", churn seen " << churn_seen.load());
	CHECK(bad.load() == 0);
	CHECK(g_sig_bad.load() == 0);
	CHECK(lookups.load() > 1000);
	CHECK(updates > 1000);
	for (void *p : live)
		REQUIRE(segdetach(p) == 0);
	for (char *p : stable)
		REQUIRE(segdetach(p) == 0);
	CHECK(seg_count() == n0);
	CHECK(seg_get_table_info().ti_retired == 0);
}

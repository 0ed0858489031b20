// Segments and the segment table (see runtime/segment.h).
//
// Vocabulary.  The *table* is the set of attached segments in address order.
// A *version* of it is an immutable root (struct seg_root) over immutable
// chunks (struct seg_chunk, up to CHUNK_MAX entries each, sorted, disjoint).
// A *reader* searches one version (seg_lookup, seg_count, seg_foreach); a
// *writer* (attach, detach) makes the next version and publishes it.
//
// The problem.  The SIGSEGV handler must find the segment of a faulting
// address while the faulting thread, or any other, may be half-way through
// an attach or a detach: so a reader may take no lock and allocate nothing,
// and must never see freed memory.  The table has no fixed size (Plan 9's
// was four slots), and a million threads make three million segments, so an
// update may not copy the whole table either.
//
// Approaches rejected.
//  - A lock around lookup: the handler may interrupt the lock's holder on
//    the same OS thread and deadlock.
//  - A seqlock over one growable array: the array cannot move while readers
//    may be in it, so it needs a fixed reservation (a fixed limit again); a
//    handler that interrupts the writer on its own OS thread spins forever on
//    the odd sequence; and every update is an O(n) memmove.
//  - One flat copy-on-write array: simple, but each update copies all n
//    entries: quadratic over the life of a process that grows to n stacks.
//  - Epoch or hazard-pointer reclamation: needs per-reader state (a
//    registered slot per OS thread), which a signal handler on a foreign
//    thread does not have.
//
// The design: copy-on-write over two levels, reclaimed by split reference
// counts.  An update copies the root (an array of chunk pointers, n/K of
// them) and rebuilds only the chunks it touches (a stack arena's 129
// segments land in one or two chunks): O(n/K + K) per update, K = 1024.
// The current root and a reader count share one 64-bit word, g_word:
//
//     g_word = root pointer << 16 | readers that entered through this word
//
// (a user-space pointer fits in 48 bits).  Each root also has an internal
// count, r_refs, which starts at 0.
//
// The protocol, numbered:
//  1. A reader enters with a CAS that adds 1 to g_word's count (acquire;
//     pairs with the writer's exchange in step 4, so the root and its chunks
//     are fully built when the reader sees them).  The count is never let
//     reach 0xffff (a reader waits for it to fall): it cannot carry into the
//     pointer.  g_word == 0 means an empty table and takes no count.
//  2. The reader searches the root and chunks it got, copying out what it
//     needs.  It never writes them.
//  3. To leave, the reader CASes g_word's count down by 1 (release) if
//     g_word still holds its root; otherwise its root was replaced (step 4)
//     and it decrements that root's r_refs (release).  The two are exclusive:
//     the word changes only by CAS or exchange, so either the reader's
//     decrement lands before the writer's exchange (and is not in the count
//     the writer moves) or after (and goes to r_refs).
//  4. A writer, under g_wlock, builds the new root from the current one and
//     publishes it with an exchange on g_word (acq_rel: release publishes
//     the new version, acquire pairs with the leaving readers of step 3).
//     It then adds the count it took out of the old word to the old root's
//     r_refs (so r_refs = readers still inside it, once the decrements of
//     step 3 are in) and queues the old root on the retired FIFO, noting
//     which of its chunks the new version no longer uses.
//  5. A writer frees retired roots from the head of the FIFO while the head's
//     r_refs reads 0 (acquire; pairs with the release of step 3): no reader
//     can enter a retired root, so 0 stays 0.  A dropped chunk may still be
//     referenced by roots older than the one that dropped it, never by newer
//     ones, so freeing strictly in FIFO order frees a chunk only when every
//     root that could lead to it is gone.
//
// So a reader costs two uncontended atomic RMWs and a two-level binary
// search; memory held by old versions is bounded by the readers inside them,
// and freed at the next update after they leave (seg_get_table_info().
// ti_retired counts what waits).  Readers never wait for writers (but for the
// bounded count in step 1) and writers never wait for readers.
//
// Lock order: g_wlock is a leaf; no system call is made while holding it
// (mmap before taking it, munmap after dropping it), so no address range can
// be reused between its removal from the table and its unmapping.
#include "runtime/segment.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "runtime/panic.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 // Linux 6.13
#endif

namespace usmp {

namespace {

constexpr std::size_t CHUNK_MAX = 1024; // entries per chunk (56 KiB)
constexpr std::size_t CHUNK_MIN = CHUNK_MAX / 4; // merge below this
constexpr unsigned SG_KNOWN = SG_NONE | SG_COMMIT | SG_STACK;
constexpr uint64_t CNT_BITS = 16;
constexpr uint64_t CNT_MASK = (uint64_t{1} << CNT_BITS) - 1;

// An immutable, sorted run of segments: ch_n bases (searched: dense, so
// the last steps of a binary search stay in one cache line), then the
// ch_n entries.
struct seg_chunk {
	std::size_t ch_n;
	uintptr_t *bases() noexcept { return reinterpret_cast<uintptr_t *>(this + 1); }
	segment *segs() noexcept
	{
		return reinterpret_cast<segment *>(bases() + ch_n);
	}
};

// One version of the table.  Immutable once published, but for r_refs and
// the fields the writer sets when it retires the root.
//
// Locking key: (c) constant once published; (a) atomic, see the protocol;
// (w) g_wlock.
struct seg_root {
	std::atomic<int64_t> r_refs{0}; // (a) internal reader count (step 4)
	seg_root *r_retired_next = nullptr; // (w) retired FIFO link
	std::size_t r_drop_lo = 0;      // (w) chunks [lo, lo + n) are no longer
	std::size_t r_drop_n = 0;       // (w) used by the next version
	std::size_t r_nchunks = 0;      // (c)
	std::size_t r_nsegs = 0;        // (c)
	uintptr_t *r_lo = nullptr;      // (c) first base of each chunk
	seg_chunk **r_chunk = nullptr;  // (c)
};

const std::size_t g_pagesz = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));

std::atomic<uint64_t> g_word{0};          // root << 16 | entered readers
// The current root, unshifted: read by nobody, kept so that a leak checker
// (LeakSanitizer, Valgrind), which finds live blocks by scanning memory for
// their addresses, sees the root, that g_word holds only shifted.
[[gnu::used]] seg_root *g_root_plain = nullptr; // (w); used: the stores stay
std::mutex g_wlock;                       // writers
seg_root *g_retired_head = nullptr;       // (w) oldest retired root
seg_root *g_retired_tail = nullptr;       // (w)
std::size_t g_nretired = 0;               // (w)
std::atomic<uint64_t> g_updates{0};       // versions published

std::atomic<std::size_t> g_committed{0};  // SG_COMMIT bytes attached
std::atomic<std::size_t> g_commit_limit{0}; // 0: RLIMIT_MEMLOCK

// Red-zone method: 0 undecided, 1 MADV_GUARD_INSTALL, 2 mprotect.
std::atomic<int> g_rzmethod{0};

std::once_flag g_atfork_once;

// ---- Readers.

// Step 1.  Returns the root (null: empty table) and the word we entered by.
seg_root *
read_enter(uint64_t *wp) noexcept
{
	uint64_t w = g_word.load(std::memory_order_relaxed);
	for (;;) {
		if (w == 0) {
			std::atomic_thread_fence(std::memory_order_acquire);
			*wp = 0;
			return nullptr;
		}
		if ((w & CNT_MASK) == CNT_MASK) {
			__builtin_ia32_pause();
			w = g_word.load(std::memory_order_relaxed);
			continue;
		}
		if (g_word.compare_exchange_weak(w, w + 1,
		    std::memory_order_acquire, std::memory_order_relaxed))
			break;
	}
	*wp = w;
	return reinterpret_cast<seg_root *>(w >> CNT_BITS);
}

// Step 3.
void
read_exit(seg_root *r, uint64_t w) noexcept
{
	if (r == nullptr)
		return;
	uint64_t cur = g_word.load(std::memory_order_relaxed);
	while ((cur >> CNT_BITS) == (w >> CNT_BITS)) {
		if (g_word.compare_exchange_weak(cur, cur - 1,
		    std::memory_order_release, std::memory_order_relaxed))
			return;
	}
	r->r_refs.fetch_sub(1, std::memory_order_release);
}

// Index of the last chunk whose first base is <= a, or -1.
long
root_find_chunk(const seg_root *r, uintptr_t a) noexcept
{
	std::size_t lo = 0, hi = r->r_nchunks; // answer in [lo - 1, hi - 1]
	while (lo < hi) {
		std::size_t mid = lo + (hi - lo) / 2;
		if (r->r_lo[mid] <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return static_cast<long>(lo) - 1;
}

// Index of the last entry of c whose base is <= a, or -1.
long
chunk_find(seg_chunk *c, uintptr_t a) noexcept
{
	const uintptr_t *b = c->bases();
	std::size_t lo = 0, hi = c->ch_n;
	while (lo < hi) {
		std::size_t mid = lo + (hi - lo) / 2;
		if (b[mid] <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return static_cast<long>(lo) - 1;
}

// The entry that contains a, or null.
const segment *
root_lookup(const seg_root *r, uintptr_t a) noexcept
{
	if (r == nullptr)
		return nullptr;
	long ci = root_find_chunk(r, a);
	if (ci < 0)
		return nullptr;
	seg_chunk *c = r->r_chunk[ci];
	long si = chunk_find(c, a);
	if (si < 0)
		return nullptr;
	const segment *s = &c->segs()[si];
	return s->contains(reinterpret_cast<const void *>(a)) ? s : nullptr;
}

// ---- Writers.  Everything below requires g_wlock.

seg_root *
current_root() noexcept
{
	// Only writers change the pointer bits, under g_wlock.
	return reinterpret_cast<seg_root *>(
	    g_word.load(std::memory_order_relaxed) >> CNT_BITS);
}

seg_root *
root_alloc(std::size_t nchunks) noexcept
{
	std::size_t sz = sizeof(seg_root) + nchunks * (sizeof(uintptr_t) +
	    sizeof(seg_chunk *));
	void *p = std::malloc(sz);
	if (p == nullptr)
		return nullptr;
	seg_root *r = ::new (p) seg_root;
	r->r_nchunks = nchunks;
	r->r_lo = reinterpret_cast<uintptr_t *>(r + 1);
	r->r_chunk = reinterpret_cast<seg_chunk **>(r->r_lo + nchunks);
	return r;
}

void
root_free(seg_root *r) noexcept
{
	r->~seg_root();
	std::free(r);
}

seg_chunk *
chunk_alloc(const segment *src, std::size_t n) noexcept
{
	void *p = std::malloc(sizeof(seg_chunk) + n * (sizeof(uintptr_t) +
	    sizeof(segment)));
	if (p == nullptr)
		return nullptr;
	seg_chunk *c = static_cast<seg_chunk *>(p);
	c->ch_n = n;
	for (std::size_t i = 0; i < n; i++)
		c->bases()[i] = src[i].s_base;
	std::memcpy(static_cast<void *>(c->segs()), src, n * sizeof(segment));
	return c;
}

// Step 5.
void
reclaim() noexcept
{
	while (g_retired_head != nullptr &&
	    g_retired_head->r_refs.load(std::memory_order_acquire) == 0) {
		seg_root *r = g_retired_head;
		g_retired_head = r->r_retired_next;
		if (g_retired_head == nullptr)
			g_retired_tail = nullptr;
		g_nretired--;
		for (std::size_t i = 0; i < r->r_drop_n; i++)
			std::free(r->r_chunk[r->r_drop_lo + i]);
		root_free(r);
	}
}

// Step 4: publish nr (null: the table is empty), which replaces chunks
// [drop_lo, drop_lo + drop_n) of the current root.
void
publish(seg_root *nr, std::size_t drop_lo, std::size_t drop_n) noexcept
{
	uintptr_t bits = reinterpret_cast<uintptr_t>(nr);
	if ((bits >> (64 - CNT_BITS)) != 0)
		panic("segment table: root %p does not fit in 48 bits", nr);
	seg_root *old = current_root();
	uint64_t ow = g_word.exchange(static_cast<uint64_t>(bits) << CNT_BITS,
	    std::memory_order_acq_rel);
	g_root_plain = nr;
	g_updates.fetch_add(1, std::memory_order_relaxed);
	if (old != nullptr) {
		old->r_drop_lo = drop_lo;
		old->r_drop_n = drop_n;
		old->r_retired_next = nullptr;
		old->r_refs.fetch_add(static_cast<int64_t>(ow & CNT_MASK),
		    std::memory_order_acq_rel);
		if (g_retired_tail != nullptr)
			g_retired_tail->r_retired_next = old;
		else
			g_retired_head = old;
		g_retired_tail = old;
		g_nretired++;
	}
	reclaim();
}

bool
overlaps(const segment &a, const segment &b) noexcept
{
	return a.s_base < b.s_base + b.s_len && b.s_base < a.s_base + a.s_len;
}

[[noreturn]] void
overlap_panic(const char *call, const segment &nw, const segment &old) noexcept
{
	panic("%s: new segment \"%s\" %#lx-%#lx overlaps segment \"%s\" "
	    "%#lx-%#lx in the table (unmapped behind segdetach()'s back?)",
	    call, nw.s_name, static_cast<unsigned long>(nw.s_base),
	    static_cast<unsigned long>(nw.s_base + nw.s_len), old.s_name,
	    static_cast<unsigned long>(old.s_base),
	    static_cast<unsigned long>(old.s_base + old.s_len));
}

// Make and publish the next version: the current one without the entries
// whose base lies in [dlo, dhi), plus ins[0..k) (sorted by base, disjoint).
// Returns 0 or ENOMEM (nothing changed).  *ndel and *delcommit receive the
// number of entries removed and their SG_COMMIT bytes.
int
table_update(const char *call, uintptr_t dlo, uintptr_t dhi,
    const segment *ins, std::size_t k, std::size_t *ndel = nullptr,
    std::size_t *delcommit = nullptr) noexcept
{
	seg_root *cur = current_root();
	std::size_t nch = cur != nullptr ? cur->r_nchunks : 0;

	// The chunks the update touches: [a, b).
	std::size_t a = nch, b = 0;
	auto touch = [&](uintptr_t x) {
		long ci = cur != nullptr ? root_find_chunk(cur, x) : -1;
		std::size_t c = ci < 0 ? 0 : static_cast<std::size_t>(ci);
		if (c < a)
			a = c;
		if (c + 1 > b)
			b = c + 1;
	};
	if (nch != 0) {
		if (dlo < dhi) {
			touch(dlo);
			touch(dhi - 1);
		}
		for (std::size_t i = 0; i < k; i++)
			touch(ins[i].s_base);
		if (a > b)
			a = b = 0;
	} else {
		a = b = 0;
	}
	auto count_in = [&](std::size_t lo, std::size_t hi) {
		std::size_t m = 0;
		for (std::size_t c = lo; c < hi; c++)
			m += cur->r_chunk[c]->ch_n;
		return m;
	};
	auto count_del = [&](std::size_t lo, std::size_t hi) {
		std::size_t m = 0;
		for (std::size_t c = lo; c < hi; c++) {
			const segment *s = cur->r_chunk[c]->segs();
			for (std::size_t i = 0; i < cur->r_chunk[c]->ch_n; i++)
				if (s[i].s_base >= dlo && s[i].s_base < dhi)
					m++;
		}
		return m;
	};
	// Small results absorb a neighbour, so chunks stay >= CHUNK_MIN.
	std::size_t m = (nch != 0 ? count_in(a, b) - count_del(a, b) : 0) + k;
	while (m < CHUNK_MIN && (a > 0 || b < nch)) {
		if (a > 0) {
			a--;
			m += cur->r_chunk[a]->ch_n;
		} else {
			m += cur->r_chunk[b]->ch_n;
			b++;
		}
	}

	// Merge [a, b) less the deleted entries with ins.
	segment *tmp = nullptr;
	if (m != 0) {
		tmp = static_cast<segment *>(std::malloc(m * sizeof(segment)));
		if (tmp == nullptr)
			return ENOMEM;
	}
	std::size_t o = 0, j = 0, removed = 0, rcommit = 0;
	for (std::size_t c = a; c < b; c++) {
		const segment *s = cur->r_chunk[c]->segs();
		for (std::size_t i = 0; i < cur->r_chunk[c]->ch_n; i++) {
			if (s[i].s_base >= dlo && s[i].s_base < dhi) {
				removed++;
				if (s[i].s_flags & SG_COMMIT)
					rcommit += s[i].s_len;
				continue;
			}
			while (j < k && ins[j].s_base < s[i].s_base)
				tmp[o++] = ins[j++];
			tmp[o++] = s[i];
		}
	}
	while (j < k)
		tmp[o++] = ins[j++];
	if (o != m)
		panic("%s: segment table update miscounted (%zu != %zu)", call,
		    o, m);
	if (removed == 0 && k == 0) { // nothing to change: publish nothing
		std::free(tmp);
		if (ndel != nullptr)
			*ndel = 0;
		if (delcommit != nullptr)
			*delcommit = 0;
		return 0;
	}
	// Disjointness, including the neighbours outside [a, b).
	for (std::size_t i = 1; i < m; i++)
		if (overlaps(tmp[i - 1], tmp[i]))
			overlap_panic(call, tmp[i], tmp[i - 1]);
	if (m != 0 && a > 0) {
		seg_chunk *pc = cur->r_chunk[a - 1];
		const segment &last = pc->segs()[pc->ch_n - 1];
		if (overlaps(last, tmp[0]))
			overlap_panic(call, tmp[0], last);
	}
	if (m != 0 && b < nch) {
		const segment &first = cur->r_chunk[b]->segs()[0];
		if (overlaps(first, tmp[m - 1]))
			overlap_panic(call, tmp[m - 1], first);
	}

	// Split into p chunks of nearly equal size, at most CHUNK_MAX each.
	std::size_t p = (m + CHUNK_MAX - 1) / CHUNK_MAX;
	std::size_t nnch = nch - (b - a) + p;
	seg_root *nr = nullptr;
	if (nnch != 0) {
		nr = root_alloc(nnch);
		if (nr == nullptr) {
			std::free(tmp);
			return ENOMEM;
		}
		std::size_t x = 0;
		for (std::size_t c = 0; c < a; c++, x++) {
			nr->r_lo[x] = cur->r_lo[c];
			nr->r_chunk[x] = cur->r_chunk[c];
		}
		std::size_t off = 0;
		for (std::size_t q = 0; q < p; q++, x++) {
			std::size_t len = m / p + (q < m % p ? 1 : 0);
			seg_chunk *c = chunk_alloc(tmp + off, len);
			if (c == nullptr) {
				for (std::size_t y = a; y < x; y++)
					std::free(nr->r_chunk[y]);
				root_free(nr);
				std::free(tmp);
				return ENOMEM;
			}
			nr->r_lo[x] = tmp[off].s_base;
			nr->r_chunk[x] = c;
			off += len;
		}
		for (std::size_t c = b; c < nch; c++, x++) {
			nr->r_lo[x] = cur->r_lo[c];
			nr->r_chunk[x] = cur->r_chunk[c];
		}
		nr->r_nsegs = (cur != nullptr ? cur->r_nsegs : 0) - removed + k;
	}
	std::free(tmp);
	publish(nr, a, b - a);
	if (ndel != nullptr)
		*ndel = removed;
	if (delcommit != nullptr)
		*delcommit = rcommit;
	return 0;
}

// ---- Mapping helpers (no lock held).

std::size_t
round_page(std::size_t n) noexcept
{
	return (n + g_pagesz - 1) & ~(g_pagesz - 1);
}

void
fill(segment *s, uintptr_t base, std::size_t len, unsigned flags,
    const char *name, void *owner) noexcept
{
	*s = segment{};
	s->s_base = base;
	s->s_len = len;
	s->s_flags = flags;
	s->s_owner = owner;
	if (name != nullptr) {
		std::size_t n = std::strlen(name);
		if (n >= SEG_NAMELEN)
			n = SEG_NAMELEN - 1;
		std::memcpy(s->s_name, name, n);
	}
}

bool
commit_reserve(std::size_t bytes) noexcept
{
	if (bytes == 0)
		return true;
	std::size_t limit = seg_commit_limit();
	std::size_t cur = g_committed.load(std::memory_order_relaxed);
	do {
		if (cur > limit || bytes > limit - cur)
			return false;
	} while (!g_committed.compare_exchange_weak(cur, cur + bytes,
	    std::memory_order_relaxed));
	return true;
}

void
commit_release(std::size_t bytes) noexcept
{
	if (bytes != 0)
		g_committed.fetch_sub(bytes, std::memory_order_relaxed);
}

// mlock(2) itself: the sanitizers' runtimes replace the libc call with a
// no-op that reports success, and SG_COMMIT must lock (and fail) for real.
int
sys_mlock(void *p, std::size_t len) noexcept
{
	return static_cast<int>(syscall(SYS_mlock, p, len));
}

int
redzone_method() noexcept
{
	int m = g_rzmethod.load(std::memory_order_relaxed);
	if (m == 0) {
		const char *e = std::getenv("USMP_SEG_REDZONE");
		if (e != nullptr && std::strcmp(e, "mprotect") == 0)
			m = 2;
		else
			m = 1; // until the kernel says EINVAL
		g_rzmethod.store(m, std::memory_order_relaxed);
	}
	return m;
}

// Make [p, p + len) of a read-write mapping fault on any access.
int
redzone_install(char *p, std::size_t len) noexcept
{
	if (redzone_method() == 1) {
		if (madvise(p, len, MADV_GUARD_INSTALL) == 0)
			return 0;
		if (errno != EINVAL)
			return ENOMEM;
		g_rzmethod.store(2, std::memory_order_relaxed); // kernel < 6.13
	}
	return mprotect(p, len, PROT_NONE) == 0 ? 0 : ENOMEM;
}

void
atfork_prepare() noexcept
{
	g_wlock.lock();
}

void
atfork_release() noexcept
{
	g_wlock.unlock();
}

// Take the writer lock (and, once, make fork() safe with respect to it).
std::unique_lock<std::mutex>
writer_lock() noexcept
{
	std::call_once(g_atfork_once, [] {
		pthread_atfork(atfork_prepare, atfork_release, atfork_release);
	});
	return std::unique_lock<std::mutex>(g_wlock);
}

} // namespace

// ---- The interface.

int
segattach(unsigned flags, std::size_t len, void **addrp, const char *name,
    void *owner) noexcept
{
	if (addrp == nullptr || len == 0 || (flags & ~SG_KNOWN) != 0 ||
	    (flags & (SG_NONE | SG_COMMIT)) == (SG_NONE | SG_COMMIT))
		return EINVAL;
	if (len > SIZE_MAX - g_pagesz)
		return ENOMEM;
	len = round_page(len);
	uintptr_t fixed = reinterpret_cast<uintptr_t>(*addrp);
	if (fixed & (g_pagesz - 1))
		return EINVAL;
	std::size_t commit = (flags & SG_COMMIT) ? len : 0;
	if (!commit_reserve(commit))
		return ENOMEM;

	int prot = (flags & SG_NONE) ? PROT_NONE : PROT_READ | PROT_WRITE;
	int mflags = MAP_PRIVATE | MAP_ANONYMOUS;
	if (flags & SG_NONE)
		mflags |= MAP_NORESERVE;
	if (flags & SG_STACK)
		mflags |= MAP_STACK; // and no transparent huge pages
	if (fixed != 0)
		mflags |= MAP_FIXED_NOREPLACE;
	void *p = mmap(*addrp, len, prot, mflags, -1, 0);
	if (p == MAP_FAILED) {
		int error = errno == EEXIST ? EEXIST : ENOMEM;
		commit_release(commit);
		return error;
	}
	if (fixed != 0 && p != *addrp) { // a kernel older than 4.17
		munmap(p, len);
		commit_release(commit);
		return EEXIST;
	}
	// SG_COMMIT: mlock(2) faults every page in (what MAP_POPULATE would do)
	// and, unlike MAP_POPULATE, fails when it cannot.
	if ((flags & SG_COMMIT) && sys_mlock(p, len) != 0) {
		munmap(p, len);
		commit_release(commit);
		return ENOMEM;
	}
	segment s;
	fill(&s, reinterpret_cast<uintptr_t>(p), len, flags, name, owner);
	int error;
	{
		auto lk = writer_lock();
		error = table_update("segattach()", 0, 0, &s, 1);
	}
	if (error != 0) {
		munmap(p, len);
		commit_release(commit);
		return error;
	}
	*addrp = p;
	return 0;
}

int
segattachv(seg_spec *v, std::size_t n, seg_prepare_fn prepare,
    void *arg) noexcept
{
	if (v == nullptr || n == 0)
		return EINVAL;
	std::size_t total = 0, commit = 0;
	bool all_none = true, stack = false;
	for (std::size_t i = 0; i < n; i++) {
		unsigned f = v[i].ss_flags;
		if (v[i].ss_len == 0 || (v[i].ss_len & (g_pagesz - 1)) != 0 ||
		    (f & ~SG_KNOWN) != 0 ||
		    (f & (SG_NONE | SG_COMMIT)) == (SG_NONE | SG_COMMIT))
			return EINVAL;
		if (v[i].ss_len > SIZE_MAX - total)
			return ENOMEM;
		total += v[i].ss_len;
		if (f & SG_COMMIT)
			commit += v[i].ss_len;
		if (!(f & SG_NONE))
			all_none = false;
		if (f & SG_STACK)
			stack = true;
	}
	if (!commit_reserve(commit))
		return ENOMEM;
	int mflags = MAP_PRIVATE | MAP_ANONYMOUS;
	if (stack)
		mflags |= MAP_STACK;
	if (all_none)
		mflags |= MAP_NORESERVE;
	char *p = static_cast<char *>(mmap(nullptr, total,
	    all_none ? PROT_NONE : PROT_READ | PROT_WRITE, mflags, -1, 0));
	if (p == MAP_FAILED) {
		commit_release(commit);
		return ENOMEM;
	}
	int error = 0;
	char *q = p;
	for (std::size_t i = 0; i < n; i++) {
		v[i].ss_addr = q;
		q += v[i].ss_len;
	}
	for (std::size_t i = 0; i < n && error == 0 && !all_none; i++) {
		if (v[i].ss_flags & SG_NONE) {
			// Neighbouring red zones in one call.
			std::size_t len = v[i].ss_len;
			std::size_t j = i + 1;
			while (j < n && (v[j].ss_flags & SG_NONE))
				len += v[j++].ss_len;
			error = redzone_install(static_cast<char *>(v[i].ss_addr),
			    len);
			i = j - 1;
		} else if ((v[i].ss_flags & SG_COMMIT) &&
		    sys_mlock(v[i].ss_addr, v[i].ss_len) != 0) {
			error = ENOMEM;
		}
	}
	if (error == 0 && prepare != nullptr)
		prepare(v, n, arg);
	if (error == 0) {
		// Pieces are in address order already.
		segment stackbuf[8];
		segment *s = n <= 8 ? stackbuf :
		    static_cast<segment *>(std::malloc(n * sizeof(segment)));
		if (s == nullptr) {
			error = ENOMEM;
		} else {
			for (std::size_t i = 0; i < n; i++)
				fill(&s[i], reinterpret_cast<uintptr_t>(v[i].ss_addr),
				    v[i].ss_len, v[i].ss_flags, v[i].ss_name,
				    v[i].ss_owner);
			auto lk = writer_lock();
			error = table_update("segattachv()", 0, 0, s, n);
		}
		if (s != stackbuf)
			std::free(s);
	}
	if (error != 0) {
		munmap(p, total);
		commit_release(commit);
		for (std::size_t i = 0; i < n; i++)
			v[i].ss_addr = nullptr;
	}
	return error;
}

int
segdetach(void *addr) noexcept
{
	segment s;
	std::size_t ndel = 0, commit = 0;
	{
		auto lk = writer_lock();
		const segment *o = root_lookup(current_root(),
		    reinterpret_cast<uintptr_t>(addr));
		if (o == nullptr)
			return EINVAL;
		s = *o;
		int error = table_update("segdetach()", s.s_base,
		    s.s_base + s.s_len, nullptr, 0, &ndel, &commit);
		if (error != 0)
			return error;
	}
	munmap(s.base(), s.s_len);
	commit_release(commit);
	return 0;
}

int
segdetach_range(void *lo, std::size_t len) noexcept
{
	uintptr_t a = reinterpret_cast<uintptr_t>(lo);
	if (len == 0 || (a & (g_pagesz - 1)) != 0 || (len & (g_pagesz - 1)) != 0 ||
	    a + len < a)
		return EINVAL;
	std::size_t ndel = 0, commit = 0;
	{
		auto lk = writer_lock();
		seg_root *r = current_root();
		// No segment may cross either end of the range.
		const segment *s = root_lookup(r, a);
		if (s != nullptr && s->s_base != a)
			return EINVAL;
		s = root_lookup(r, a + len - 1);
		if (s != nullptr && s->s_base + s->s_len != a + len)
			return EINVAL;
		int error = table_update("segdetach_range()", a, a + len,
		    nullptr, 0, &ndel, &commit);
		if (error != 0)
			return error;
		if (ndel == 0)
			return EINVAL;
	}
	munmap(lo, len);
	commit_release(commit);
	return 0;
}

bool
seg_lookup(const void *addr, segment *out) noexcept
{
	uint64_t w;
	seg_root *r = read_enter(&w);
	const segment *s = root_lookup(r, reinterpret_cast<uintptr_t>(addr));
	if (s != nullptr && out != nullptr)
		std::memcpy(static_cast<void *>(out), s, sizeof(*out));
	read_exit(r, w);
	return s != nullptr;
}

std::size_t
seg_count() noexcept
{
	uint64_t w;
	seg_root *r = read_enter(&w);
	std::size_t n = r != nullptr ? r->r_nsegs : 0;
	read_exit(r, w);
	return n;
}

void
seg_foreach(seg_visit_fn fn, void *arg) noexcept
{
	uint64_t w;
	seg_root *r = read_enter(&w);
	bool go = true;
	for (std::size_t c = 0; r != nullptr && go && c < r->r_nchunks; c++) {
		const segment *s = r->r_chunk[c]->segs();
		for (std::size_t i = 0; go && i < r->r_chunk[c]->ch_n; i++)
			go = fn(s[i], arg);
	}
	read_exit(r, w);
}

void
seg_dump() noexcept
{
	printf_diag("segment table: %zu segments, %zu bytes committed of %zu",
	    seg_count(), seg_committed(), seg_commit_limit());
	seg_foreach([](const segment &s, void *) {
		printf_diag("  %#014lx-%#014lx %8zu KiB %-6s%-6s \"%s\" owner %p",
		    static_cast<unsigned long>(s.s_base),
		    static_cast<unsigned long>(s.s_base + s.s_len), s.s_len / 1024,
		    (s.s_flags & SG_NONE) ? "none" :
		    (s.s_flags & SG_COMMIT) ? "commit" : "anon",
		    (s.s_flags & SG_STACK) ? "stack" : "", s.s_name, s.s_owner);
		return true;
	}, nullptr);
}

void
seg_set_commit_limit(std::size_t bytes) noexcept
{
	g_commit_limit.store(bytes, std::memory_order_relaxed);
}

std::size_t
seg_commit_limit() noexcept
{
	std::size_t l = g_commit_limit.load(std::memory_order_relaxed);
	if (l != 0)
		return l;
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return SIZE_MAX;
	return static_cast<std::size_t>(rl.rlim_cur);
}

std::size_t
seg_committed() noexcept
{
	return g_committed.load(std::memory_order_relaxed);
}

const char *
seg_redzone_method() noexcept
{
	return redzone_method() == 1 ? "guard" : "mprotect";
}

void
seg_set_redzone_method(bool use_guard) noexcept
{
	g_rzmethod.store(use_guard ? 1 : 2, std::memory_order_relaxed);
}

seg_table_info
seg_get_table_info() noexcept
{
	seg_table_info ti{};
	{
		auto lk = writer_lock();
		seg_root *r = current_root();
		ti.ti_segments = r != nullptr ? r->r_nsegs : 0;
		ti.ti_chunks = r != nullptr ? r->r_nchunks : 0;
		reclaim();
		ti.ti_retired = g_nretired;
	}
	ti.ti_updates = g_updates.load(std::memory_order_relaxed);
	return ti;
}

} // namespace usmp

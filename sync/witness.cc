// WITNESS (subr_witness.c, witness(4)): lock-order checking.
//
// Vocabulary.  A *witness* is the node of one lock type (lo_type: the type
// given at init, or the lock's name): every lock of the type shares it, so
// what is learned from one vnode lock applies to all of them.  An *order*
// "A before B" (an edge A -> B) is learned when a thread that holds a lock
// of type A blocks to acquire one of type B.  A *reversal* is an
// acquisition of A while B is held when A -> ... -> B is known: two threads
// doing both can deadlock, whether or not this run did.  A *lock instance*
// is one held lock in a thread's (sleep locks) or CPU's (spin locks) list,
// with the file:line of its acquisition, its mode and its recursion.
//
// Problem.  Check every blocking acquisition against every order ever seen,
// whatever the length of the cycle, at a cost that lets WITNESS stay on in
// ordinary test runs; report each bad pair once, with where both orders were
// seen; never deadlock, allocate in a spin section or recurse into itself.
//
// Approaches rejected.  Per-instance nodes (TSan, Helgrind, Abseil) find
// cycles only among the very objects of one run and grow with the number of
// locks; per-type nodes are what FreeBSD and lockdep use and what makes a
// saved graph meaningful in another process.  A cycle search on each new
// edge (Abseil's) costs a graph walk under a global lock on every first
// acquisition pair; a relation matrix with the transitive closure (FreeBSD's
// w_rmatrix) answers "is B an ancestor of A" with one byte load, and the
// closure is updated only when a new edge is added (O(n^2) in the types
// used, n small).  Capturing a stack on every acquisition (Helgrind) is
// what makes it 400x; we capture one only for a new edge and for a report.
//
// Protocol.
//  1. w_spin (a raw spinlock, inside a spinlock section) guards the witness
//     table, the hash, the order data pool and every *write* of the matrix.
//     Nothing under it allocates, takes another lock or calls out.
//  2. The matrix bytes are atomics.  Writers (under w_spin) set bits with
//     relaxed fetch_or after the order data is complete and publish with a
//     release store of WITNESS_LOCK_ORDER_KNOWN last; the lock-free fast
//     path reads [top][new] with acquire: if it sees KNOWN|PARENT, the
//     edge exists, and edges are never removed, so no lock is needed.
//     The fast path (known_order(), and its inline copy for sleep mutexes
//     in sync/internal/witness_fast.h) needs the top held entry to carry
//     LI_CHAIN; why that makes one byte enough is said at known_order().
//     A stack is captured only when an order is first recorded or a
//     report is made, outside w_spin (checkorder_slow).
//  3. The held lists are written only by their owner (the thread, or the
//     code running on the CPU inside a critical section); "show all locks"
//     and the deadlock walk read other threads' lists racily, for display
//     (FreeBSD's DDB does the same with the machine stopped).
//  4. Reports are formatted and written outside w_spin: the decision and a
//     copy of what to print (names, sites, saved frames) is made under it,
//     then it is dropped, then the stacks are symbolized and the sinks
//     called with wt_in_report set, so that locks the sinks take are not
//     checked (no recursion into WITNESS).
//  5. Each reversed pair is marked WITNESS_REVERSAL in both directions
//     under w_spin before it is reported: only one thread reports it.
#include "sync/witness.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime/critical.h"
#include "runtime/internal/curthread.h"
#include "runtime/internal/sim.h"
#include "runtime/internal/spinlock.h"
#include "runtime/panic.h"
#include "runtime/thread.h"
#include "sync/internal/witness_fast.h"
#include "sync/internal/witness_stack.h"
#include "sync/mutex.h"

namespace usmp {

namespace witness_detail {
std::atomic<int> w_watch{1};
} // namespace witness_detail

witness_out
witness_out_fd(int fd) noexcept
{
	return {[](void *arg, const char *s, std::size_t n) {
			int d = static_cast<int>(reinterpret_cast<intptr_t>(arg));
			while (n > 0) {
				ssize_t w = ::write(d, s, n);
				if (w <= 0) {
					if (w < 0 && errno == EINTR)
						continue;
					return;
				}
				s += w;
				n -= static_cast<std::size_t>(w);
			}
		},
	    reinterpret_cast<void *>(static_cast<intptr_t>(fd))};
}

witness_out
witness_out_string(std::string &s) noexcept
{
	return {[](void *arg, const char *p, std::size_t n) {
			static_cast<std::string *>(arg)->append(p, n);
		},
	    &s};
}

} // namespace usmp

#if USMP_WITNESS

namespace usmp {

namespace witness_detail {
// (a) written under w_spin, read without it (protocol step 2).
std::atomic<uint8_t> w_rmatrix[WITNESS_COUNT + 1][WITNESS_COUNT + 1];
} // namespace witness_detail

namespace {

// ---- Sizes (FreeBSD's defaults, scaled to a process).
constexpr int WITNESS_HASH = 251;          // name hash buckets
constexpr int WITNESS_NAME = 64;           // type name bytes
constexpr int WITNESS_LO_DATA_COUNT = 4096; // order records (edges + attempts)
constexpr int WITNESS_LO_HASH = 1021;
constexpr int WITNESS_STACK_DEPTH = 20;    // frames kept per order
constexpr int WITNESS_SPIN_HELD = 32;      // spin locks held per CPU
constexpr int WITNESS_TD_STATIC = 128;     // per-thread blocks preallocated
constexpr int WITNESS_BLESSED = 64;
constexpr int WITNESS_PATH = 8;            // edges printed for a long cycle

using namespace witness_detail;

struct witness : witness_node {
	char w_name[WITNESS_NAME]; // (w) the type
	const lock_class *w_class; // (w) null while only named by an order
	unsigned w_kind;           // (w) LC_SLEEPLOCK or LC_SPINLOCK, 0 unknown
	witness *w_hash_next;      // (w)
	int w_refcount;            // (w) live locks of the type
};

// An order record: where the direct order from -> to was first seen (or a
// reversed attempt, for badstacks).  Written once under w_spin before the
// matrix bit that publishes it.
struct lock_order {
	int lod_from, lod_to;           // (c) witness indices
	bool lod_attempt;               // (c) a reversed attempt, not an edge
	char lod_name1[48], lod_name2[48]; // (c) instance names
	const char *lod_file1, *lod_file2; // (c) acquisition sites
	int lod_line1, lod_line2;
	int lod_nframes;
	void *lod_frames[WITNESS_STACK_DEPTH];
	char *lod_ext;                  // (c) loaded: symbolized stack text
	char *lod_origin;               // (c) loaded: "program[pid]"
	lock_order *lod_next;           // (w) hash chain
};

// Per-thread WITNESS state (td_witness).  Locking key: (k) the thread
// only; (w) w_spin; (a) atomic.  The held list and its counts are in the
// base (sync/internal/witness_fast.h), which the inline fast path reads.
struct alignas(64) witness_td : witness_held {
	int wt_nosleep;                 // (k) witness_nosleep_enter depth
	const char *wt_nosleep_what;    // (k)
	std::atomic<const lock_object *> wt_blocked_on; // (a) seq_cst
	// (a) seq_cst: bumped as the thread starts and ends blocking, so a
	// thread seen twice with the same value was blocked on the same lock
	// throughout (the deadlock walk's confirmation).
	std::atomic<uint64_t> wt_block_gen;
	const char *wt_block_file;      // (k)
	int wt_block_line;              // (k)
	thread *wt_td;                  // (w)
	witness_td *wt_next;            // (w) free list / all list
	witness_td *wt_prev;            // (w) all list
};

// Per-CPU WITNESS state: the spin locks held on this CPU (they cannot
// migrate: their holder is in a spinlock section).  A foreign OS thread
// has its own, as it has its own thread_local.
struct witness_cpu {
	lock_instance wc_locks[WITNESS_SPIN_HELD];
	int wc_count;
	int wc_untracked;
	int wc_filter; // witness_filter_enter depth
};

// ---- Global state.  All constant-initialised: locks are created (and
// enrolled) from static constructors, Giant first.
spinlock w_spin;                                    // protocol step 1
witness w_data[WITNESS_COUNT + 1];                  // (w) [0] unused
int w_count;                                        // (w) used entries
witness *w_hash[WITNESS_HASH];                      // (w)
lock_order w_lod[WITNESS_LO_DATA_COUNT];           // (w)
int w_lod_count;                                    // (w)
lock_order *w_lod_hash[WITNESS_LO_HASH];            // (w)
int w_edges;                                        // (w) direct orders
witness_td w_td_static[WITNESS_TD_STATIC];          // (w)
int w_td_static_used;                               // (w)
witness_td *w_td_free;                              // (w)
witness_td *w_td_all;                               // (w)
struct {
	char a[WITNESS_NAME], b[WITNESS_NAME];
} w_blessed[WITNESS_BLESSED];                       // (w)
int w_blessed_count;                                // (w)
std::atomic<unsigned> w_exhausted_reported{0}; // one bit per table

std::atomic<int> w_mode{static_cast<int>(witness_mode::warn)};
std::atomic<bool> w_stderr{true};
std::atomic<bool> w_trace{true};
std::atomic<int> w_json_fd{-1};
spinlock w_json_lock; // serialises JSON lines (taken without w_spin)
std::atomic<witness_callback_fn> w_callback{nullptr};
std::atomic<void *> w_callback_arg{nullptr};
std::atomic<uint64_t> w_reports[static_cast<int>(witness_kind::count_)];
std::atomic<int> w_setup_state{0}; // 0 not yet, 1 running, 2 done
char w_graph_path[512];            // USMP_WITNESS_GRAPH

thread_local witness_cpu w_cpu;

const char *const kind_names[] = {
	"lock order reversal",
	"duplicate lock",
	"blockable lock in critical section",
	"sleep lock in interrupt filter",
	"recursion on non-recursive lock",
	"lock mode mismatch",
	"lock not locked",
	"interlock error",
	"upgrade/downgrade misuse",
	"thread exit with locks held",
	"sleeping with locks held",
	"sleeping in a no-sleep context",
	"deadlock",
	"lock assertion",
	"witness internal",
};
static_assert(sizeof(kind_names) / sizeof(kind_names[0]) ==
    static_cast<std::size_t>(witness_kind::count_));

// The spin list of the CPU we run on.  Not inline: the address of a
// thread_local must not be cached across a switch (runtime/internal/
// curthread.h); callers are in a critical section while they use it.
__attribute__((noinline)) witness_cpu *
cpu_list() noexcept
{
	// Simulated, every CPU shares one OS thread: the list is the
	// simulated agent's (runtime/sim.h).
	if (sim_active())
		return static_cast<witness_cpu *>(
		    sim_agent_local(SIM_LOCAL_WITNESS, sizeof(witness_cpu)));
	return &w_cpu;
}

inline void
w_lock() noexcept
{
	spinlock_enter();
	w_spin.lock();
}

inline void
w_unlock() noexcept
{
	w_spin.unlock();
	spinlock_exit();
}

inline uint8_t
rm(int i, int j) noexcept
{
	return w_rmatrix[i][j].load(std::memory_order_acquire);
}

inline void
rm_set(int i, int j, uint8_t bits) noexcept
{
	w_rmatrix[i][j].fetch_or(bits, std::memory_order_release);
}

// i before j (directly or transitively).  Requires nothing: bits are only
// ever set.
inline bool
isitmydescendant(int i, int j) noexcept
{
	return (rm(i, j) & WITNESS_RELATED_MASK) != 0;
}

inline witness *
lo_w(const lock_object *lo) noexcept
{
	return static_cast<witness *>(lo->lo_witness);
}

bool
is_giant(const lock_object *lo) noexcept
{
	return lo == Giant.lo();
}

inline bool
lo_sleepable(const lock_object *lo) noexcept
{
	return (lo->lo_flags & LO_SLEEPABLE) != 0;
}

const char *
class_name(const lock_object *lo) noexcept
{
	return lo->lo_class != nullptr ? lo->lo_class->lc_name : "lock";
}

const char *
type_name(const lock_object *lo) noexcept
{
	witness *w = lo_w(lo);
	return w != nullptr ? w->w_name : lo->lo_type;
}

const char *
kind_str(unsigned k) noexcept
{
	return k == LC_SPINLOCK ? "spin" : k == LC_SLEEPLOCK ? "sleep" : "?";
}

unsigned
class_kind(const lock_class *c) noexcept
{
	if (c == nullptr)
		return 0;
	return (c->lc_flags & LC_SPINLOCK) ? LC_SPINLOCK : LC_SLEEPLOCK;
}

unsigned
djb2(const char *s) noexcept
{
	unsigned h = 5381;
	for (; *s != '\0'; s++)
		h = h * 33 + static_cast<unsigned char>(*s);
	return h % WITNESS_HASH;
}

// ---- Formatting into a std::string (reports are made outside w_spin).
void
sappendv(std::string &s, const char *fmt, va_list ap) noexcept
{
	char buf[1024];
	va_list aq;
	va_copy(aq, ap);
	int n = std::vsnprintf(buf, sizeof buf, fmt, aq);
	va_end(aq);
	if (n < 0)
		return;
	try {
		if (static_cast<std::size_t>(n) < sizeof buf) {
			s.append(buf, static_cast<std::size_t>(n));
		} else {
			std::string big(static_cast<std::size_t>(n) + 1, '\0');
			std::vsnprintf(big.data(), big.size(), fmt, ap);
			s.append(big.data(), static_cast<std::size_t>(n));
		}
	} catch (...) {
	}
}

void sappend(std::string &s, const char *fmt, ...) noexcept
    __attribute__((format(printf, 2, 3)));
void
sappend(std::string &s, const char *fmt, ...) noexcept
{
	va_list ap;
	va_start(ap, fmt);
	sappendv(s, fmt, ap);
	va_end(ap);
}

void
out_str(witness_out out, const std::string &s) noexcept
{
	if (out.fn != nullptr && !s.empty())
		out.fn(out.arg, s.data(), s.size());
}

// ---- Setup (environment), once, from the first lock's init or API call.
void save_at_exit() noexcept;
void thread_exit_hook(thread *td) noexcept;
void panic_hook(void (*write)(const char *, unsigned long)) noexcept;

void
setup_slow() noexcept
{
	int expect = 0;
	if (!w_setup_state.compare_exchange_strong(expect, 1,
		std::memory_order_acq_rel)) {
		// Another thread sets up: wait (it does not take long).
		unsigned n = 0;
		while (w_setup_state.load(std::memory_order_acquire) != 2)
			cpu_spinwait(n);
		return;
	}
	if (const char *m = std::getenv("USMP_WITNESS")) {
		witness_mode mode = witness_mode::warn;
		if (std::strcmp(m, "off") == 0 || std::strcmp(m, "0") == 0)
			mode = witness_mode::off;
		else if (std::strcmp(m, "count") == 0)
			mode = witness_mode::count;
		else if (std::strcmp(m, "abort") == 0 ||
		    std::strcmp(m, "panic") == 0)
			mode = witness_mode::abort;
		w_mode.store(static_cast<int>(mode), std::memory_order_relaxed);
		witness_detail::w_watch.store(mode == witness_mode::off ? 0 : 1,
		    std::memory_order_relaxed);
	}
	if (const char *t = std::getenv("USMP_WITNESS_TRACE"))
		w_trace.store(std::strcmp(t, "0") != 0, std::memory_order_relaxed);
	thread_set_exit_hook(thread_exit_hook);
	panic_set_hook(panic_hook);
	w_setup_state.store(2, std::memory_order_release);
	// After the state is "done": these enroll locks of their own.
	if (const char *j = std::getenv("USMP_WITNESS_JSON"))
		(void)witness_set_json(j);
	if (const char *g = std::getenv("USMP_WITNESS_GRAPH")) {
		std::snprintf(w_graph_path, sizeof w_graph_path, "%s", g);
		(void)witness_load_graph(w_graph_path);
		std::atexit([] { save_at_exit(); });
	}
}

inline void
setup() noexcept
{
	if (__builtin_expect(w_setup_state.load(std::memory_order_acquire) != 2,
		0))
		setup_slow();
}

// ---- Witness objects.

// Find or make the witness of `name` for locks of class cls (null: a
// name from an order declaration or a saved graph, of any kind).  A spin
// and a sleep lock of one name get two witnesses (FreeBSD panics, "does not
// match earlier lock"; usmp programs name locks freely, and the two kinds
// are never ordered against each other anyway).  Requires w_spin.  Null
// when the table is full.
witness *
enroll_locked(const char *name, const lock_class *cls) noexcept
{
	unsigned h = djb2(name);
	unsigned kind = class_kind(cls);
	for (witness *w = w_hash[h]; w != nullptr; w = w->w_hash_next) {
		if (std::strncmp(w->w_name, name, WITNESS_NAME - 1) != 0)
			continue;
		if (cls == nullptr || w->w_kind == 0 || w->w_kind == kind) {
			if (cls != nullptr && w->w_class == nullptr) {
				w->w_class = cls;
				w->w_kind = kind;
			}
			return w;
		}
	}
	if (w_count >= WITNESS_COUNT)
		return nullptr;
	witness *w = &w_data[++w_count];
	std::snprintf(w->w_name, sizeof w->w_name, "%s", name);
	w->w_class = cls;
	w->w_kind = class_kind(cls);
	w->w_index = w_count;
	w->w_hash_next = w_hash[h];
	w_hash[h] = w;
	return w;
}

// ---- Order records.

unsigned
lod_hash(int from, int to) noexcept
{
	return (static_cast<unsigned>(from) * 31u + static_cast<unsigned>(to)) %
	    WITNESS_LO_HASH;
}

lock_order *
lod_find_locked(int from, int to, bool attempt) noexcept
{
	for (lock_order *l = w_lod_hash[lod_hash(from, to)]; l != nullptr;
	     l = l->lod_next)
		if (l->lod_from == from && l->lod_to == to &&
		    l->lod_attempt == attempt)
			return l;
	return nullptr;
}

lock_order *
lod_new_locked(int from, int to, bool attempt) noexcept
{
	if (w_lod_count >= WITNESS_LO_DATA_COUNT)
		return nullptr;
	lock_order *l = &w_lod[w_lod_count++];
	*l = lock_order{};
	l->lod_from = from;
	l->lod_to = to;
	l->lod_attempt = attempt;
	unsigned h = lod_hash(from, to);
	l->lod_next = w_lod_hash[h];
	w_lod_hash[h] = l;
	return l;
}

void
lod_fill(lock_order *l, const char *n1, const char *f1, int l1,
    const char *n2, const char *f2, int l2, void *const *frames,
    int nframes) noexcept
{
	std::snprintf(l->lod_name1, sizeof l->lod_name1, "%.47s", n1);
	std::snprintf(l->lod_name2, sizeof l->lod_name2, "%.47s", n2);
	l->lod_file1 = f1;
	l->lod_line1 = l1;
	l->lod_file2 = f2;
	l->lod_line2 = l2;
	l->lod_nframes = nframes;
	for (int i = 0; i < nframes; i++)
		l->lod_frames[i] = frames[i];
}

// Add the direct order parent -> child and the closure.  Requires w_spin;
// the caller checked that child is not before parent.
void
adopt_locked(int p, int c) noexcept
{
	// Ancestors of p (with p) and descendants of c (with c).
	static int anc[WITNESS_COUNT + 1], desc[WITNESS_COUNT + 1]; // (w)
	int na = 0, nd = 0;
	anc[na++] = p;
	desc[nd++] = c;
	for (int i = 1; i <= w_count; i++) {
		if (i != p && (rm(i, p) & WITNESS_RELATED_MASK))
			anc[na++] = i;
		if (i != c && (rm(c, i) & WITNESS_RELATED_MASK))
			desc[nd++] = i;
	}
	for (int a = 0; a < na; a++)
		for (int d = 0; d < nd; d++) {
			int i = anc[a], j = desc[d];
			if (i == p && j == c)
				continue;
			if (i == j)
				continue; // cannot happen in an acyclic graph
			rm_set(i, j, WITNESS_ANCESTOR);
			rm_set(j, i, WITNESS_DESCENDANT);
		}
	rm_set(c, p, WITNESS_CHILD);
	// Last: the fast path trusts PARENT|KNOWN (protocol step 2).
	rm_set(p, c, WITNESS_PARENT | WITNESS_LOCK_ORDER_KNOWN);
	w_edges++;
}

bool
blessed_locked(const witness *a, const witness *b) noexcept
{
	for (int i = 0; i < w_blessed_count; i++) {
		if ((std::strcmp(w_blessed[i].a, a->w_name) == 0 &&
			std::strcmp(w_blessed[i].b, b->w_name) == 0) ||
		    (std::strcmp(w_blessed[i].a, b->w_name) == 0 &&
			std::strcmp(w_blessed[i].b, a->w_name) == 0))
			return true;
	}
	return false;
}

// The path from -> ... -> to over direct orders (BFS).  Requires w_spin.
// Returns the number of edges written to path (as lock_order copies), 0 if
// none is found within WITNESS_PATH edges.
int
find_path_locked(int from, int to, lock_order *path) noexcept
{
	static int prev[WITNESS_COUNT + 1]; // (w)
	static int queue[WITNESS_COUNT + 1];
	for (int i = 0; i <= w_count; i++)
		prev[i] = -1;
	int qh = 0, qt = 0;
	queue[qt++] = from;
	prev[from] = from;
	while (qh < qt) {
		int x = queue[qh++];
		if (x == to)
			break;
		for (int y = 1; y <= w_count; y++) {
			if (prev[y] != -1 || !(rm(x, y) & WITNESS_PARENT))
				continue;
			prev[y] = x;
			queue[qt++] = y;
		}
	}
	if (prev[to] == -1)
		return 0;
	int nodes[WITNESS_PATH + 1];
	int n = 0;
	for (int x = to; n <= WITNESS_PATH; x = prev[x]) {
		nodes[n++] = x;
		if (x == from)
			break;
	}
	if (nodes[n - 1] != from)
		return 0; // longer than we print
	int ne = 0;
	for (int k = n - 1; k > 0; k--) {
		lock_order *l = lod_find_locked(nodes[k], nodes[k - 1], false);
		if (l != nullptr)
			path[ne] = *l;
		else {
			path[ne] = lock_order{};
			path[ne].lod_from = nodes[k];
			path[ne].lod_to = nodes[k - 1];
		}
		ne++;
	}
	return ne;
}

// ---- Per-thread state.

witness_td *
wt_alloc_locked() noexcept
{
	witness_td *wt = w_td_free;
	if (wt != nullptr) {
		w_td_free = wt->wt_next;
	} else if (w_td_static_used < WITNESS_TD_STATIC) {
		wt = &w_td_static[w_td_static_used++];
	} else {
		// Beyond the preallocated blocks: the C allocator, which a
		// CPU's OS thread may call in a spin section (no signal
		// handler runs WITNESS hooks).
		wt = static_cast<witness_td *>(
		    std::aligned_alloc(alignof(witness_td), sizeof(witness_td)));
		if (wt == nullptr)
			return nullptr;
	}
	::new (wt) witness_td{};
	wt->wt_next = w_td_all;
	wt->wt_prev = nullptr;
	if (w_td_all != nullptr)
		w_td_all->wt_prev = wt;
	w_td_all = wt;
	return wt;
}

void
wt_free_locked(witness_td *wt) noexcept
{
	if (wt->wt_prev != nullptr)
		wt->wt_prev->wt_next = wt->wt_next;
	else
		w_td_all = wt->wt_next;
	if (wt->wt_next != nullptr)
		wt->wt_next->wt_prev = wt->wt_prev;
	wt->wt_td = nullptr;
	wt->wt_next = w_td_free;
	w_td_free = wt;
}

inline witness_td *
wt_of(const thread *td) noexcept
{
	return static_cast<witness_td *>(td->td_witness);
}

// A foreign OS thread never calls thread_exit(): runtime/switch.cc deletes
// its stand-in struct thread from a thread_local destructor when the OS
// thread ends.  This thread_local is first used when WITNESS gives such a
// thread its state, after the stand-in exists, so its destructor runs
// before the stand-in's (thread_local destructors run in the reverse order
// of construction): it reports the locks still held and frees the state.
struct foreign_exit {
	thread *fe_td = nullptr;
	~foreign_exit()
	{
		if (fe_td != nullptr)
			witness_thread_exit(fe_td);
	}
};
thread_local foreign_exit w_foreign_exit;

witness_td *
wt_get(thread *td) noexcept
{
	witness_td *wt = wt_of(td);
	if (__builtin_expect(wt != nullptr, 1))
		return wt;
	w_lock();
	wt = wt_alloc_locked();
	if (wt != nullptr)
		wt->wt_td = td;
	w_unlock();
	td->td_witness = wt;
	if (wt != nullptr && (td->td_flags & TDF_FOREIGN))
		w_foreign_exit.fe_td = td;
	return wt;
}

lock_instance *
find_instance(lock_instance *v, int n, const lock_object *lo) noexcept
{
	for (int i = n - 1; i >= 0; i--)
		if (v[i].li_lock == lo)
			return &v[i];
	return nullptr;
}

// ---- Reports.

struct lockdesc {
	const char *name = nullptr, *type = nullptr, *cls = nullptr;
	const char *file = nullptr;
	int line = 0;
};

lockdesc
desc_of(const lock_object *lo, const char *file, int line) noexcept
{
	return {lo->lo_name, type_name(lo), class_name(lo), file, line};
}

void
json_str(std::string &j, const char *s) noexcept
{
	j += '"';
	for (; s != nullptr && *s != '\0'; s++) {
		unsigned char c = static_cast<unsigned char>(*s);
		if (c == '"' || c == '\\') {
			j += '\\';
			j += static_cast<char>(c);
		} else if (c == '\n') {
			j += "\\n";
		} else if (c < 0x20) {
			char b[8];
			std::snprintf(b, sizeof b, "\\u%04x", c);
			j += b;
		} else {
			j += static_cast<char>(c);
		}
	}
	j += '"';
}

void
json_lock(std::string &j, const char *key, const lockdesc &d) noexcept
{
	json_str(j, key);
	j += ':';
	if (d.name == nullptr) {
		j += "null";
		return;
	}
	j += "{\"name\":";
	json_str(j, d.name);
	j += ",\"type\":";
	json_str(j, d.type);
	j += ",\"class\":";
	json_str(j, d.cls);
	j += ",\"file\":";
	json_str(j, d.file);
	j += ",\"line\":" + std::to_string(d.line) + "}";
}

// Send a report to the sinks, then panic in abort mode (or if force_panic).
// `reason` is the one-line panic message (FreeBSD's "share->excl"...).
void
emit(witness_kind kind, std::string &text, const lockdesc &l1,
    const lockdesc &l2, const char *reason, bool force_panic = false) noexcept
{
	w_reports[static_cast<int>(kind)].fetch_add(1, std::memory_order_relaxed);
	witness_mode mode =
	    static_cast<witness_mode>(w_mode.load(std::memory_order_relaxed));
	if (mode == witness_mode::count && !force_panic)
		return;
	thread *td = curthread_fast();
	witness_td *wt = wt_of(td);
	if (wt != nullptr)
		wt->wt_in_report++;
	if (text.empty() || text.back() != '\n')
		text += '\n';
	if (w_stderr.load(std::memory_order_relaxed))
		out_str(witness_out_fd(2), text);
	int fd = w_json_fd.load(std::memory_order_relaxed);
	if (fd >= 0) {
		std::string j;
		try {
			j = "{\"kind\":";
			json_str(j, kind_names[static_cast<int>(kind)]);
			j += ",\"pid\":" + std::to_string(getpid());
			j += ",\"tid\":" + std::to_string(td->td_tid);
			j += ",\"thread\":";
			json_str(j, td->td_name);
			j += ',';
			json_lock(j, "lock1", l1);
			j += ',';
			json_lock(j, "lock2", l2);
			j += ",\"text\":";
			json_str(j, text.c_str());
			j += "}\n";
		} catch (...) {
		}
		// One write per line (O_APPEND): lines of several processes
		// do not interleave; the spinlock keeps ours whole too.
		spinlock_enter();
		w_json_lock.lock();
		out_str(witness_out_fd(fd), j);
		w_json_lock.unlock();
		spinlock_exit();
	}
	if (witness_callback_fn cb = w_callback.load(std::memory_order_acquire)) {
		witness_report r{};
		r.kind = kind;
		r.kind_name = kind_names[static_cast<int>(kind)];
		r.text = text.c_str();
		r.lock1_name = l1.name;
		r.lock1_type = l1.type;
		r.lock1_class = l1.cls;
		r.lock1_file = l1.file;
		r.lock1_line = l1.line;
		r.lock2_name = l2.name;
		r.lock2_type = l2.type;
		r.lock2_class = l2.cls;
		r.lock2_file = l2.file;
		r.lock2_line = l2.line;
		r.tid = td->td_tid;
		cb(r, w_callback_arg.load(std::memory_order_relaxed));
	}
	if (wt != nullptr)
		wt->wt_in_report--;
	if (mode == witness_mode::abort || force_panic)
		panic("witness: %s", reason);
}

// "stack backtrace:" and the current stack (witness_debugger()).
void
append_backtrace(std::string &s, int skip) noexcept
{
	if (!w_trace.load(std::memory_order_relaxed))
		return;
	void *frames[WITNESS_STACK_DEPTH];
	int n = witness_stack_capture(frames, WITNESS_STACK_DEPTH, skip + 1);
	s += "stack backtrace:\n";
	witness_stack_format(s, frames, n, "");
}

// One line of "show locks" (witness_list_lock).
void
list_lock(std::string &s, const lock_instance &li, const char *prefix) noexcept
{
	const lock_object *lo = li.li_lock;
	sappend(s, "%s%s %s %s", prefix,
	    (li.li_flags & LI_EXCLUSIVE) ? "exclusive" : "shared",
	    class_name(lo), lo->lo_name);
	if (std::strcmp(type_name(lo), lo->lo_name) != 0)
		sappend(s, " (%s)", type_name(lo));
	sappend(s, " r = %u (%p) locked @ %s:%d\n", li.li_flags & LI_RECURSEMASK,
	    static_cast<const void *>(lo), li.li_file, li.li_line);
}

// A fixed-size table, for the message when it is full: the tables are
// static (the matrix is read without a lock, so it cannot move), and a
// full one is reported once, naming the constant that sizes it.
struct witness_table {
	int bit;
	const char *what, *limit;
	int value;
	const char *effect, *where;
};
const witness_table table_types = {0, "the lock type table", "WITNESS_COUNT",
	WITNESS_COUNT, "locks of new types are not checked",
	"sync/internal/witness_fast.h"};
const witness_table table_lod = {1, "the order record table",
	"WITNESS_LO_DATA_COUNT", WITNESS_LO_DATA_COUNT,
	"new orders are not learned", "sync/witness.cc"};
const witness_table table_held = {2, "a thread's held-lock list",
	"WITNESS_HELD", WITNESS_HELD,
	"further sleep locks it takes are not checked",
	"sync/internal/witness_fast.h"};
const witness_table table_spin_held = {3, "a CPU's held spin lock list",
	"WITNESS_SPIN_HELD", WITNESS_SPIN_HELD,
	"further spin locks taken there are not checked", "sync/witness.cc"};

void
report_exhausted(const witness_table &t) noexcept
{
	unsigned bit = 1u << t.bit;
	if (w_exhausted_reported.fetch_or(bit, std::memory_order_relaxed) & bit)
		return;
	std::string s;
	sappend(s, "WITNESS: %s is full (%s = %d): %s; raise %s in %s and "
		   "rebuild\n",
	    t.what, t.limit, t.value, t.effect, t.limit, t.where);
	emit(witness_kind::internal, s, {}, {}, "witness table full");
}

// ---- The checks.

// A lock order reversal: lock1 (held, established after `lo` in the
// graph) and the attempt to take lo.  Called without w_spin; the pair was
// marked under it.  path: the established order lo -> ... -> lock1.
void
report_reversal(const lock_instance &held, const lock_object *lo,
    const char *file, int line, const char *header, lock_order *path,
    int npath, void *const *frames, int nframes) noexcept
{
	const lock_object *l1 = held.li_lock;
	std::string s;
	s += header;
	sappend(s, " 1st %p %s (%s, %s) @ %s:%d\n",
	    static_cast<const void *>(l1), l1->lo_name, type_name(l1),
	    class_name(l1), held.li_file, held.li_line);
	sappend(s, " 2nd %p %s (%s, %s) @ %s:%d\n",
	    static_cast<const void *>(lo), lo->lo_name, type_name(lo),
	    class_name(lo), file, line);
	bool trace = w_trace.load(std::memory_order_relaxed);
	if (npath > 1) {
		s += "lock order ";
		for (int i = 0; i < npath; i++)
			sappend(s, "%s -> ", w_data[path[i].lod_from].w_name);
		sappend(s, "%s is established by %d orders:\n",
		    w_data[path[npath - 1].lod_to].w_name, npath);
	}
	for (int i = 0; i < npath; i++) {
		const lock_order &e = path[i];
		sappend(s, "lock order %s -> %s established at:\n",
		    w_data[e.lod_from].w_name, w_data[e.lod_to].w_name);
		if (e.lod_file1 != nullptr)
			sappend(s, " %s (%s) @ %s:%d, then %s (%s) @ %s:%d%s%s\n",
			    e.lod_name1, w_data[e.lod_from].w_name, e.lod_file1,
			    e.lod_line1, e.lod_name2, w_data[e.lod_to].w_name,
			    e.lod_file2, e.lod_line2,
			    e.lod_origin != nullptr ? ", in " : "",
			    e.lod_origin != nullptr ? e.lod_origin : "");
		else
			s += " (declared order)\n";
		if (trace) {
			if (e.lod_ext != nullptr)
				s += e.lod_ext;
			else
				witness_stack_format(s, e.lod_frames,
				    e.lod_nframes, "");
		}
	}
	if (npath == 0)
		sappend(s, "lock order %s -> %s established (stack not "
			   "recorded)\n",
		    type_name(lo), type_name(l1));
	sappend(s, "lock order %s -> %s attempted at:\n", type_name(l1),
	    type_name(lo));
	if (trace)
		witness_stack_format(s, frames, nframes, "");
	emit(witness_kind::reversal, s, desc_of(l1, held.li_file, held.li_line),
	    desc_of(lo, file, line), "lock order reversal");
}

void
report_simple(witness_kind kind, const char *reason, const lock_object *lo,
    const char *file, int line, const lock_instance *held,
    const char *fmt, ...) noexcept __attribute__((format(printf, 7, 8)));
void
report_simple(witness_kind kind, const char *reason, const lock_object *lo,
    const char *file, int line, const lock_instance *held, const char *fmt,
    ...) noexcept
{
	std::string s;
	va_list ap;
	va_start(ap, fmt);
	sappendv(s, fmt, ap);
	va_end(ap);
	append_backtrace(s, 2);
	lockdesc d1 = held != nullptr ?
	    desc_of(held->li_lock, held->li_file, held->li_line) :
	    lockdesc{};
	emit(kind, s, d1, desc_of(lo, file, line), reason);
}

// The stack of an attempt, from checkorder_slow's caller's caller.
__attribute__((noinline)) int
capture_attempt(void **frames) noexcept
{
	return witness_stack_capture(frames, WITNESS_STACK_DEPTH, 3);
}

// The slow path of checkorder: the new lock's type is not a direct child
// of the previous lock's.  v/n: the list of the same kind (thread's sleep
// list or CPU's spin list).  Requires nothing; takes w_spin.
void
checkorder_slow(lock_object *lo, witness *w, unsigned flags,
    const char *file, int line, const lock_object *interlock,
    lock_instance *v, int n) noexcept
{
	// The stack of this attempt, for a new edge or a report only: it is
	// captured outside w_spin (the unwinder may take the loader's lock)
	// the first time the decision under w_spin needs it, and the decision
	// is then made again from the start, as the graph may have changed.
	void *frames[WITNESS_STACK_DEPTH];
	int nframes = 0;
	bool need_frames = w_trace.load(std::memory_order_relaxed);

	// The previous lock: the most recent one that is not the interlock.
	int pi = n - 1;
	if (interlock != nullptr && pi >= 0 && v[pi].li_lock == interlock)
		pi--;
	if (pi < 0)
		return;
	lock_instance plock = v[pi];
	witness *pw = lo_w(plock.li_lock);

	// True (w_spin dropped, frames captured): decide again from retry.
	auto capture_first = [&]() noexcept {
		if (!need_frames)
			return false;
		w_unlock();
		nframes = capture_attempt(frames);
		need_frames = false;
		return true;
	};
retry:
	w_lock();
	// Duplicate of the same type.
	if (pw == w) {
		bool dupok = (flags & LOP_DUPOK) ||
		    (lo->lo_flags & LO_DUPOK) ||
		    (plock.li_lock->lo_flags & LO_DUPOK);
		if (!dupok && !(rm(w->w_index, w->w_index) & WITNESS_REVERSAL)) {
			if (capture_first())
				goto retry;
			rm_set(w->w_index, w->w_index, WITNESS_REVERSAL);
			w_unlock();
			std::string s;
			sappend(s, "acquiring duplicate lock of same type: \"%s\"\n",
			    w->w_name);
			sappend(s, " 1st %s @ %s:%d\n", plock.li_lock->lo_name,
			    plock.li_file, plock.li_line);
			sappend(s, " 2nd %s @ %s:%d\n", lo->lo_name, file, line);
			if (w_trace.load(std::memory_order_relaxed)) {
				s += "stack backtrace:\n";
				witness_stack_format(s, frames, nframes, "");
			}
			emit(witness_kind::duplicate, s,
			    desc_of(plock.li_lock, plock.li_file, plock.li_line),
			    desc_of(lo, file, line), "duplicate lock of same type");
			return;
		}
	}
	// Scan the held locks, most recent first.
	for (int i = n - 1; i >= 0; i--) {
		lock_object *l1 = v[i].li_lock;
		if (l1 == interlock || !(l1->lo_flags & LO_WITNESS))
			continue;
		witness *w1 = lo_w(l1);
		if (w1 == nullptr || w1 == w)
			continue;
		const char *header = nullptr;
		bool giant1 = is_giant(l1), giant = is_giant(lo);
		if (isitmydescendant(w->w_index, w1->w_index))
			header = "lock order reversal:\n";
		else if (lo_sleepable(lo) && !(flags & LOP_NOSLEEP) &&
		    !lo_sleepable(l1) && !giant1)
			header = "lock order reversal: (sleepable after "
				 "non-sleepable)\n";
		else if (giant && !lo_sleepable(l1) && !giant1)
			header = "lock order reversal: (Giant after "
				 "non-sleepable)\n";
		if (header == nullptr)
			continue;
		// Giant and sleepable locks may be taken in either order.
		if ((giant1 && lo_sleepable(lo)) || (giant && lo_sleepable(l1)))
			continue;
		if (rm(w1->w_index, w->w_index) & WITNESS_REVERSAL) {
			w_unlock();
			return; // reported once per pair
		}
		if (capture_first())
			goto retry;
		rm_set(w1->w_index, w->w_index, WITNESS_REVERSAL);
		rm_set(w->w_index, w1->w_index, WITNESS_REVERSAL);
		// Keep the attempt for badstacks.
		if (lod_find_locked(w1->w_index, w->w_index, true) == nullptr) {
			if (lock_order *a = lod_new_locked(w1->w_index,
				w->w_index, true))
				lod_fill(a, l1->lo_name, v[i].li_file,
				    v[i].li_line, lo->lo_name, file, line, frames,
				    nframes);
		}
		if (blessed_locked(w, w1)) {
			w_unlock();
			return;
		}
		lock_order path[WITNESS_PATH];
		int npath = find_path_locked(w->w_index, w1->w_index, path);
		lock_instance held = v[i];
		w_unlock();
		report_reversal(held, lo, file, line, header, path, npath,
		    frames, nframes);
		return;
	}
	// No violation: learn plock -> lo (not for try-locks, nor sleepable
	// after Giant, nor between types of different kinds).
	if (!(flags & LOP_TRYLOCK) && pw != nullptr && pw != w &&
	    !(is_giant(plock.li_lock) && lo_sleepable(lo)) &&
	    !(rm(pw->w_index, w->w_index) & WITNESS_PARENT) &&
	    // Never a cycle (a Giant exemption above may have skipped a
	    // reversal): the fast path's proof needs an acyclic graph.
	    !isitmydescendant(w->w_index, pw->w_index) &&
	    (plock.li_lock->lo_flags & LO_WITNESS)) {
		if (capture_first())
			goto retry;
		lock_order *l = lod_find_locked(pw->w_index, w->w_index, false);
		if (l == nullptr)
			l = lod_new_locked(pw->w_index, w->w_index, false);
		if (l == nullptr) {
			w_unlock();
			report_exhausted(table_lod);
			return;
		}
		lod_fill(l, plock.li_lock->lo_name, plock.li_file,
		    plock.li_line, lo->lo_name, file, line, frames, nframes);
		adopt_locked(pw->w_index, w->w_index);
	}
	w_unlock();
}

// p -> c is a direct order whose record is complete (protocol step 2).
inline bool
parent_known(const witness *p, const witness *c) noexcept
{
	return (rm(p->w_index, c->w_index) &
		   (WITNESS_PARENT | WITNESS_LOCK_ORDER_KNOWN)) ==
	    (WITNESS_PARENT | WITNESS_LOCK_ORDER_KNOWN);
}

inline bool
dupok(const lock_object *lo, const lock_object *held, unsigned flags) noexcept
{
	return (flags & LOP_DUPOK) || (lo->lo_flags & LO_DUPOK) ||
	    (held->lo_flags & LO_DUPOK);
}

// The known-order fast path (protocol step 2): true if acquiring lo (of
// type w) with the locks v[0..n) held (n > 0) can produce no report and
// teach nothing, decided from the top entry and one matrix byte: no global
// lock, no allocation, no stack, no scan of the list.
//
// Why the most recent lock is enough.  FreeBSD compares the new lock with
// every held lock (and, as a shortcut, stops if it is a child of the most
// recent one, which misses a reversal against a lock below a try-locked
// one).  Here the shortcut is made exact.  The graph is acyclic (an edge is
// added only after checking, under w_spin, that it closes no cycle; loaded
// and declared orders are checked too) and its closure is kept.  If the
// top entry carries LI_CHAIN, the types of the held locks, bottom to top,
// are each an ancestor of (or, for a DUPOK run, equal to) the next.  If
// moreover top -> w is a known direct order, every held type is a strict
// ancestor of w, hence:
//  - no held lock has type w, so lo is not held (no recursion or mode
//    mismatch to check) and there is no duplicate;
//  - w is an ancestor of no held type (that would be a cycle), so there is
//    no reversal, whatever the length of the cycle it would close;
//  - top -> w is known, so there is no order to learn.
// What the graph does not say: "sleepable after non-sleepable" and "Giant
// after non-sleepable", which LI_NONSLEEP answers for the whole list.  A
// DUPOK duplicate of the top's type is fast too if no lock of the same-type
// run at the top is lo itself.  Untracked locks (the list overflowed), an
// interlock, or a try-lock (which checks recursion only) take the slow path.
inline bool
known_order(const lock_object *lo, const witness *w, unsigned flags,
    const lock_object *interlock, const lock_instance *v, int n,
    int untracked) noexcept
{
	const lock_instance &top = v[n - 1];
	if (!(top.li_flags & LI_CHAIN) || interlock != nullptr ||
	    (flags & LOP_TRYLOCK) || untracked != 0)
		return false;
	if (((lo_sleepable(lo) && !(flags & LOP_NOSLEEP)) || is_giant(lo)) &&
	    (top.li_flags & LI_NONSLEEP))
		return false;
	const witness *tw = lo_w(top.li_lock);
	if (tw != w)
		return parent_known(tw, w);
	if (!dupok(lo, top.li_lock, flags))
		return false;
	for (int i = n - 1; i >= 0 && lo_w(v[i].li_lock) == w; i--)
		if (v[i].li_lock == lo)
			return false;
	return true;
}

// The LI_CHAIN and LI_NONSLEEP bits of lo pushed above v[0..n).  Sets
// *fresh if lo cannot be in the list (see known_order()).
inline unsigned
push_flags(const lock_object *lo, const witness *w, const lock_instance *v,
    int n, bool *fresh) noexcept
{
	unsigned f = (!lo_sleepable(lo) && !is_giant(lo)) ? LI_NONSLEEP : 0u;
	*fresh = n == 0;
	if (n == 0)
		return f | LI_CHAIN;
	const lock_instance &top = v[n - 1];
	f |= top.li_flags & LI_NONSLEEP;
	if (top.li_flags & LI_CHAIN) {
		const witness *tw = lo_w(top.li_lock);
		if (tw == w) {
			f |= LI_CHAIN;
		} else if (isitmydescendant(tw->w_index, w->w_index)) {
			f |= LI_CHAIN;
			*fresh = true;
		}
	}
	return f;
}

// The list curthread's acquisition of lo goes to.  For spin locks the
// caller is in a critical section.
inline void
list_for(thread *td, const lock_object *lo, witness_td *wt,
    lock_instance **v, int **n, int **untracked, int *cap) noexcept
{
	if (lo->lo_class->lc_flags & LC_SPINLOCK) {
		witness_cpu *wc = cpu_list();
		*v = wc->wc_locks;
		*n = &wc->wc_count;
		*untracked = &wc->wc_untracked;
		*cap = WITNESS_SPIN_HELD;
	} else {
		*v = wt->wt_locks;
		*n = &wt->wt_count;
		*untracked = &wt->wt_untracked;
		*cap = WITNESS_HELD;
	}
}

void
checkorder_impl(thread *td, witness_td *wt, lock_object *lo, witness *w,
    unsigned flags, const char *file, int line,
    const lock_object *interlock) noexcept
{
	bool spin = (lo->lo_class->lc_flags & LC_SPINLOCK) != 0;
	if (!spin) {
		if (cpu_list()->wc_filter > 0) {
			report_simple(witness_kind::filter, "sleep lock in filter",
			    lo, file, line, nullptr,
			    "acquiring sleep lock (%s) %s in an interrupt filter "
			    "@ %s:%d\n", class_name(lo), lo->lo_name, file, line);
			return;
		}
		if (td->td_critnest != 0 && !(flags & LOP_TRYLOCK)) {
			report_simple(witness_kind::critical,
			    "blockable sleep lock", lo, file, line, nullptr,
			    "acquiring blockable sleep lock with spinlock or "
			    "critical section held (%s) %s @ %s:%d\n",
			    class_name(lo), lo->lo_name, file, line);
			return;
		}
	}
	lock_instance *v;
	int *np, *unt, cap;
	list_for(td, lo, wt, &v, &np, &unt, &cap);
	int n = *np;
	if (n == 0)
		return;
	if (known_order(lo, w, flags, interlock, v, n, *unt))
		return;
	if (interlock != nullptr) {
		lock_instance *il = find_instance(v, n, interlock);
		if (il == nullptr &&
		    (interlock->lo_class->lc_flags & LC_SPINLOCK) == 0 && spin)
			il = find_instance(wt->wt_locks, wt->wt_count, interlock);
		if (il == nullptr) {
			report_simple(witness_kind::interlock, "interlock not locked",
			    lo, file, line, nullptr,
			    "interlock (%s) %s not locked @ %s:%d\n",
			    class_name(interlock), interlock->lo_name, file, line);
			return;
		}
		if ((il->li_flags & LI_RECURSEMASK) != 0) {
			report_simple(witness_kind::interlock, "interlock recursed",
			    lo, file, line, il,
			    "interlock (%s) %s recursed @ %s:%d\n",
			    class_name(interlock), interlock->lo_name, file, line);
			return;
		}
	}
	// Re-acquisition of a lock held.
	if (lock_instance *li = find_instance(v, n, lo)) {
		lock_instance held = *li;
		if ((held.li_flags & LI_EXCLUSIVE) == 0 && (flags & LOP_EXCLUSIVE)) {
			report_simple(witness_kind::mode_mismatch, "share->excl", lo,
			    file, line, &held,
			    "exclusive lock of (%s) %s @ %s:%d\n"
			    "while share locked from %s:%d\n",
			    class_name(lo), lo->lo_name, file, line, held.li_file,
			    held.li_line);
			return;
		}
		if ((held.li_flags & LI_EXCLUSIVE) && !(flags & LOP_EXCLUSIVE)) {
			report_simple(witness_kind::mode_mismatch, "excl->share", lo,
			    file, line, &held,
			    "shared lock of (%s) %s @ %s:%d\n"
			    "while exclusively locked from %s:%d\n",
			    class_name(lo), lo->lo_name, file, line, held.li_file,
			    held.li_line);
			return;
		}
		// Shared re-acquisition is legal (sx and rw read recursion).
		if ((flags & LOP_EXCLUSIVE) && !(lo->lo_flags & LO_RECURSABLE) &&
		    !(flags & LOP_RECURSE)) {
			report_simple(witness_kind::recursion,
			    "recursed on non-recursive lock", lo, file, line, &held,
			    "recursed on non-recursive lock (%s) %s @ %s:%d\n"
			    "first acquired @ %s:%d\n",
			    class_name(lo), lo->lo_name, file, line, held.li_file,
			    held.li_line);
		}
		return;
	}
	if (flags & LOP_TRYLOCK)
		return;
	checkorder_slow(lo, w, flags, file, line, interlock, v, n);
}

// ---- Deadlock detection (waits-for cycles).

// The walk follows, from the lock a thread blocks on, every thread that
// holds it: the exclusive owner the primitive passes or its class reports
// (lc_owner), or else, for an sx or rw lock held shared, the threads whose
// WITNESS held lists show it held shared.  A writer waits for all readers,
// so a cycle through any one of them is a deadlock.  What the walk cannot
// see: shared holds taken while WITNESS was off or beyond a thread's
// WITNESS_HELD entries, locks created with LOCK_NOWITNESS, and readers of
// more than DL_FANOUT threads (the first ones are followed); a cycle
// through those hangs unreported, as before.
constexpr int DL_MAXC = 16;   // threads in a reported cycle
constexpr int DL_FANOUT = 16; // holders followed per lock
constexpr int DL_SEEN = 64;   // threads visited per walk

struct dl_walk {
	thread *me;
	thread *cycle[DL_MAXC]; // the path: cycle[k] waits for cycle[k+1]
	const lock_object *waits[DL_MAXC]; // what cycle[k] was seen waiting for
	uint64_t gens[DL_MAXC];  // cycle[k]'s wt_block_gen, read before waits[k]
	int nc = 0;
	thread *seen[DL_SEEN];  // explored without reaching me
	int nseen = 0;
};

// The threads holding l (see above), at most DL_FANOUT, into out.  Takes
// w_spin for the list of threads (callers may hold a turnstile or sleep
// queue chain lock: w_spin is a leaf).
int
lock_holders(const lock_object *l, thread *owner, thread **out) noexcept
{
	if (owner == nullptr && l->lo_class != nullptr &&
	    l->lo_class->lc_owner != nullptr)
		owner = l->lo_class->lc_owner(l);
	if (owner != nullptr) {
		out[0] = owner;
		return 1;
	}
	int n = 0;
	w_lock();
	for (witness_td *o = w_td_all; o != nullptr && n < DL_FANOUT;
	     o = o->wt_next) {
		if (o->wt_td == nullptr)
			continue;
		// Racy read of another thread's list (protocol step 3).
		int cnt = o->wt_count < WITNESS_HELD ? o->wt_count : WITNESS_HELD;
		for (int i = 0; i < cnt; i++) {
			const lock_instance &li = o->wt_locks[i];
			if (li.li_lock == l && !(li.li_flags & LI_EXCLUSIVE)) {
				out[n++] = o->wt_td;
				break;
			}
		}
	}
	w_unlock();
	return n;
}

// Depth-first search of the waits-for graph from t, a holder of what the
// last thread of w.cycle waits for: true, with the cycle in w.cycle, if it
// leads back to w.me.
bool
dl_search(dl_walk &w, thread *t) noexcept
{
	if (t == w.me)
		return true;
	if (w.nc >= DL_MAXC || w.nseen >= DL_SEEN)
		return false;
	for (int k = 1; k < w.nc; k++)
		if (w.cycle[k] == t)
			return false; // a cycle not through us: theirs to report
	for (int k = 0; k < w.nseen; k++)
		if (w.seen[k] == t)
			return false;
	witness_td *twt = wt_of(t);
	if (twt == nullptr)
		return false;
	uint64_t gen = twt->wt_block_gen.load(std::memory_order_seq_cst);
	const lock_object *next =
	    twt->wt_blocked_on.load(std::memory_order_seq_cst);
	if (next == nullptr)
		return false;
	w.gens[w.nc] = gen;
	w.waits[w.nc] = next;
	w.cycle[w.nc++] = t;
	thread *h[DL_FANOUT];
	int nh = lock_holders(next, nullptr, h);
	for (int i = 0; i < nh; i++) {
		if (h[i] == t)
			continue; // it got it meanwhile, or waits behind a writer
		if (dl_search(w, h[i]))
			return true;
	}
	w.nc--;
	w.seen[w.nseen++] = t;
	return false;
}

void
report_deadlock(thread *me, const lock_object *lo, const char *file,
    int line, thread *const *cycle, int ncycle) noexcept
{
	std::string s;
	sappend(s, "deadlock: %d threads wait for each other's locks:\n",
	    ncycle);
	for (int k = 0; k < ncycle; k++) {
		thread *t = cycle[k];
		witness_td *wt = wt_of(t);
		const lock_object *want = wt != nullptr ?
		    wt->wt_blocked_on.load(std::memory_order_seq_cst) : nullptr;
		const char *wf = wt != nullptr ? wt->wt_block_file : "?";
		int wl = wt != nullptr ? wt->wt_block_line : 0;
		if (t == me) {
			want = lo;
			wf = file;
			wl = line;
		}
		sappend(s, " thread \"%s\" (tid %d) waits for (%s) %s @ %s:%d\n",
		    t->td_name, t->td_tid, want != nullptr ? class_name(want) : "?",
		    want != nullptr ? want->lo_name : "?", wf, wl);
		// What it holds that the previous thread of the cycle wants.
		thread *prev = cycle[(k + ncycle - 1) % ncycle];
		witness_td *pwt = wt_of(prev);
		const lock_object *pwant = prev == me ? lo :
		    pwt != nullptr ? pwt->wt_blocked_on.load(std::memory_order_seq_cst) :
				     nullptr;
		if (wt != nullptr && pwant != nullptr) {
			int cnt = wt->wt_count;
			for (int i = 0; i < cnt && i < WITNESS_HELD; i++) {
				if (wt->wt_locks[i].li_lock != pwant)
					continue;
				sappend(s, "   while holding (%s) %s %slocked @ %s:%d\n",
				    class_name(pwant), pwant->lo_name,
				    (wt->wt_locks[i].li_flags & LI_EXCLUSIVE) ?
					"" : "share ",
				    wt->wt_locks[i].li_file, wt->wt_locks[i].li_line);
			}
		}
	}
	append_backtrace(s, 2);
	const lock_object *first = nullptr;
	if (ncycle > 1) {
		witness_td *w1 = wt_of(cycle[1]);
		if (w1 != nullptr)
			first = w1->wt_blocked_on.load(std::memory_order_seq_cst);
	}
	emit(witness_kind::deadlock, s,
	    first != nullptr ? desc_of(first, "?", 0) : lockdesc{},
	    desc_of(lo, file, line), "deadlock");
}

// ---- Graph file.

void
save_at_exit() noexcept
{
	if (w_graph_path[0] != '\0')
		(void)witness_save_graph(w_graph_path);
}

char *
dupstr(const char *s) noexcept
{
	std::size_t n = std::strlen(s);
	char *p = static_cast<char *>(std::malloc(n + 1));
	if (p != nullptr)
		std::memcpy(p, s, n + 1);
	return p;
}

// ---- Runtime hooks.

void
thread_exit_hook(thread *td) noexcept
{
	witness_thread_exit(td);
}

void
panic_hook(void (*write)(const char *, unsigned long)) noexcept
{
	// No allocation here (panic context): format each line on the stack.
	thread *td = curthread_fast();
	witness_td *wt = wt_of(td);
	witness_cpu *wc = cpu_list();
	int n = wt != nullptr ? wt->wt_count : 0;
	if (n + wc->wc_count == 0)
		return;
	char line[512];
	int k = std::snprintf(line, sizeof line, "locks held by thread \"%s\":\n",
	    td->td_name);
	write(line, static_cast<unsigned long>(k));
	auto one = [&](const lock_instance &li) {
		const lock_object *lo = li.li_lock;
		int m = std::snprintf(line, sizeof line,
		    " %s %s %s (%s) r = %u (%p) locked @ %s:%d\n",
		    (li.li_flags & LI_EXCLUSIVE) ? "exclusive" : "shared",
		    class_name(lo), lo->lo_name, type_name(lo),
		    li.li_flags & LI_RECURSEMASK, static_cast<const void *>(lo),
		    li.li_file, li.li_line);
		if (m > 0)
			write(line, static_cast<unsigned long>(
					m < static_cast<int>(sizeof line) ?
					    m : static_cast<int>(sizeof line) - 1));
	};
	for (int i = n - 1; i >= 0 && i < WITNESS_HELD; i--)
		one(wt->wt_locks[i]);
	for (int i = wc->wc_count - 1; i >= 0; i--)
		one(wc->wc_locks[i]);
}

} // namespace

// ==== Public API.

witness_mode
witness_set_mode(witness_mode m) noexcept
{
	setup();
	witness_mode old =
	    static_cast<witness_mode>(w_mode.exchange(static_cast<int>(m)));
	witness_detail::w_watch.store(m == witness_mode::off ? 0 : 1,
	    std::memory_order_relaxed);
	return old;
}

witness_mode
witness_get_mode() noexcept
{
	setup();
	return static_cast<witness_mode>(w_mode.load(std::memory_order_relaxed));
}

void
witness_set_stderr(bool on) noexcept
{
	w_stderr.store(on, std::memory_order_relaxed);
}

int
witness_set_json(const char *path) noexcept
{
	int fd = -1;
	if (path != nullptr) {
		fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0)
			return errno;
	}
	int old = w_json_fd.exchange(fd);
	if (old >= 0) {
		// Let a report in flight finish its line.
		spinlock_enter();
		w_json_lock.lock();
		w_json_lock.unlock();
		spinlock_exit();
		::close(old);
	}
	return 0;
}

void
witness_set_callback(witness_callback_fn fn, void *arg) noexcept
{
	w_callback_arg.store(arg, std::memory_order_relaxed);
	w_callback.store(fn, std::memory_order_release);
}

void
witness_set_trace(bool on) noexcept
{
	w_trace.store(on, std::memory_order_relaxed);
}

uint64_t
witness_report_count() noexcept
{
	uint64_t t = 0;
	for (auto &c : w_reports)
		t += c.load(std::memory_order_relaxed);
	return t;
}

uint64_t
witness_report_count(witness_kind k) noexcept
{
	int i = static_cast<int>(k);
	if (i < 0 || i >= static_cast<int>(witness_kind::count_))
		return 0;
	return w_reports[i].load(std::memory_order_relaxed);
}

int
witness_defineorder(const char *first, const char *second, const char *file,
    int line) noexcept
{
	setup();
	if (first == nullptr || second == nullptr ||
	    std::strcmp(first, second) == 0)
		return EINVAL;
	w_lock();
	witness *a = enroll_locked(first, nullptr);
	witness *b = a != nullptr ? enroll_locked(second, nullptr) : nullptr;
	if (a == nullptr || b == nullptr) {
		w_unlock();
		return ENOMEM;
	}
	if (a->w_kind != 0 && b->w_kind != 0 && a->w_kind != b->w_kind) {
		w_unlock();
		panic("witness_defineorder: parent \"%s\" (%s) and child \"%s\" "
		      "(%s) are not the same lock type @ %s:%d",
		    a->w_name, kind_str(a->w_kind), b->w_name,
		    kind_str(b->w_kind), file, line);
	}
	if (isitmydescendant(b->w_index, a->w_index)) {
		w_unlock();
		return EDEADLK;
	}
	if (!(rm(a->w_index, b->w_index) & WITNESS_PARENT)) {
		lock_order *l = lod_find_locked(a->w_index, b->w_index, false);
		if (l == nullptr)
			l = lod_new_locked(a->w_index, b->w_index, false);
		if (l == nullptr) {
			w_unlock();
			return ENOMEM;
		}
		lod_fill(l, a->w_name, file, line, b->w_name, file, line,
		    nullptr, 0);
		l->lod_origin = const_cast<char *>("declared order");
		adopt_locked(a->w_index, b->w_index);
	}
	w_unlock();
	return 0;
}

int
witness_defineorder_list(const char *const *list, const char *file,
    int line) noexcept
{
	if (list == nullptr || list[0] == nullptr)
		return EINVAL;
	for (int i = 1; list[i] != nullptr; i++) {
		int e = witness_defineorder(list[i - 1], list[i], file, line);
		if (e != 0)
			return e;
	}
	return 0;
}

int
witness_bless(const char *a, const char *b) noexcept
{
	if (a == nullptr || b == nullptr)
		return EINVAL;
	w_lock();
	if (w_blessed_count >= WITNESS_BLESSED) {
		w_unlock();
		return ENOMEM;
	}
	std::snprintf(w_blessed[w_blessed_count].a, WITNESS_NAME, "%s", a);
	std::snprintf(w_blessed[w_blessed_count].b, WITNESS_NAME, "%s", b);
	w_blessed_count++;
	w_unlock();
	return 0;
}

int
witness_show_locks(const thread *td, witness_out out) noexcept
{
	std::string s;
	int listed = 0;
	witness_td *wt = wt_of(td);
	int n = wt != nullptr ? wt->wt_count : 0;
	for (int i = n - 1; i >= 0 && i < WITNESS_HELD; i--, listed++)
		list_lock(s, wt->wt_locks[i], "");
	if (td == curthread_fast()) {
		critical_enter();
		witness_cpu *wc = cpu_list();
		for (int i = wc->wc_count - 1; i >= 0; i--, listed++)
			list_lock(s, wc->wc_locks[i], "");
		critical_exit();
	}
	out_str(out, s);
	return listed;
}

int
witness_show_all_locks(witness_out out) noexcept
{
	// Snapshot the threads under w_spin, list them outside it.
	constexpr int MAXT = 256;
	witness_td *tds[MAXT];
	int nt = 0;
	w_lock();
	for (witness_td *wt = w_td_all; wt != nullptr && nt < MAXT;
	     wt = wt->wt_next)
		if (wt->wt_td != nullptr && wt->wt_count > 0)
			tds[nt++] = wt;
	w_unlock();
	int total = 0;
	for (int k = 0; k < nt; k++) {
		witness_td *wt = tds[k];
		thread *t = wt->wt_td;
		if (t == nullptr)
			continue;
		std::string s;
		sappend(s, "Thread %p (tid %d, \"%s\"):\n",
		    static_cast<const void *>(t), t->td_tid, t->td_name);
		int n = wt->wt_count;
		for (int i = n - 1; i >= 0 && i < WITNESS_HELD; i--, total++)
			list_lock(s, wt->wt_locks[i], " ");
		out_str(out, s);
	}
	return total;
}

void
witness_badstacks(witness_out out) noexcept
{
	// Copy the records under w_spin (they are written once), format
	// outside it.
	std::string s;
	w_lock();
	int edges = w_edges;
	int nrev = 0;
	int n = w_count;
	w_unlock();
	sappend(s, "Number of known direct relationships is %d\n", edges);
	for (int i = 1; i <= n; i++) {
		for (int j = i + 1; j <= n; j++) {
			if (!(rm(i, j) & WITNESS_REVERSAL))
				continue;
			nrev++;
			const witness &a = w_data[i], &b = w_data[j];
			sappend(s, "\nLock order reversal between \"%s\"(%s) and "
				   "\"%s\"(%s)!\n",
			    a.w_name, kind_str(a.w_kind), b.w_name,
			    kind_str(b.w_kind));
			for (int dir = 0; dir < 2; dir++) {
				int x = dir == 0 ? i : j, y = dir == 0 ? j : i;
				lock_order rec[2];
				bool have[2] = {false, false};
				w_lock();
				for (int att = 0; att < 2; att++) {
					if (lock_order *l = lod_find_locked(x, y,
						att == 1)) {
						rec[att] = *l;
						have[att] = true;
					}
				}
				w_unlock();
				for (int att = 0; att < 2; att++) {
					if (!have[att])
						continue;
					const lock_order &l = rec[att];
					sappend(s, "Lock order \"%s\"(%s) -> \"%s\"(%s) "
						   "%s at:\n",
					    w_data[x].w_name, kind_str(w_data[x].w_kind),
					    w_data[y].w_name, kind_str(w_data[y].w_kind),
					    att == 0 ? "first seen" : "attempted");
					if (l.lod_file1 != nullptr)
						sappend(s, " %s @ %s:%d, then %s @ %s:%d%s%s\n",
						    l.lod_name1, l.lod_file1, l.lod_line1,
						    l.lod_name2, l.lod_file2, l.lod_line2,
						    l.lod_origin ? ", in " : "",
						    l.lod_origin ? l.lod_origin : "");
					if (l.lod_ext != nullptr)
						s += l.lod_ext;
					else
						witness_stack_format(s, l.lod_frames,
						    l.lod_nframes, "");
				}
				if (!have[0] && isitmydescendant(x, y))
					sappend(s, "Lock order \"%s\" -> \"%s\" is "
						   "transitive (through other "
						   "locks)\n",
					    w_data[x].w_name, w_data[y].w_name);
			}
		}
		for (int j = i; j == i; j++)
			if (rm(i, i) & WITNESS_REVERSAL)
				sappend(s, "\nDuplicate locks of type \"%s\" were "
					   "acquired without DUPOK\n",
				    w_data[i].w_name);
	}
	sappend(s, "\n%d lock order reversals\n", nrev);
	out_str(out, s);
}

void
witness_dump_dot(witness_out out) noexcept
{
	std::string s = "digraph witness {\n\trankdir=LR;\n"
			"\tnode [shape=box, fontname=\"monospace\"];\n";
	int n = w_count;
	for (int i = 1; i <= n; i++)
		sappend(s, "\tw%d [label=\"%s\\n(%s)\"%s];\n", i, w_data[i].w_name,
		    kind_str(w_data[i].w_kind),
		    w_data[i].w_kind == LC_SPINLOCK ? ", style=dashed" : "");
	for (int i = 1; i <= n; i++)
		for (int j = 1; j <= n; j++) {
			uint8_t b = rm(i, j);
			if (b & WITNESS_PARENT)
				sappend(s, "\tw%d -> w%d%s;\n", i, j,
				    (b & WITNESS_REVERSAL) ?
					" [color=red, penwidth=2, label=\"reversed\"]" :
					"");
		}
	s += "}\n";
	out_str(out, s);
}

void
witness_fullgraph(witness_out out) noexcept
{
	std::string s;
	int n = w_count;
	for (int i = 1; i <= n; i++)
		for (int j = 1; j <= n; j++)
			if (rm(i, j) & WITNESS_PARENT)
				sappend(s, "\"%s\",\"%s\"\n", w_data[i].w_name,
				    w_data[j].w_name);
	out_str(out, s);
}

// Saved graph, one record a line, fields separated by tabs:
//   usmp-witness-graph 1
//   W <type> <kind: sleep|spin|?>
//   E <from> <to> <name1> <file1> <line1> <name2> <file2> <line2> <origin>
//   S <one symbolized stack line of the E above>
int
witness_save_graph(const char *path) noexcept
{
	std::string s = "usmp-witness-graph 1\n";
	char origin[256];
	char prog[200] = "?";
	{
		int fd = ::open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t r = ::read(fd, prog, sizeof prog - 1);
			::close(fd);
			if (r > 0) {
				prog[r] = '\0';
				if (prog[r - 1] == '\n')
					prog[r - 1] = '\0';
			}
		}
	}
	std::snprintf(origin, sizeof origin, "%s[%d]", prog, getpid());
	int n = w_count;
	for (int i = 1; i <= n; i++)
		sappend(s, "W\t%s\t%s\n", w_data[i].w_name,
		    kind_str(w_data[i].w_kind));
	int nl = w_lod_count;
	for (int k = 0; k < nl; k++) {
		lock_order l;
		w_lock();
		l = w_lod[k];
		w_unlock();
		if (l.lod_attempt)
			continue;
		sappend(s, "E\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n",
		    w_data[l.lod_from].w_name, w_data[l.lod_to].w_name,
		    l.lod_name1, l.lod_file1 ? l.lod_file1 : "?", l.lod_line1,
		    l.lod_name2, l.lod_file2 ? l.lod_file2 : "?", l.lod_line2,
		    l.lod_origin != nullptr ? l.lod_origin : origin);
		std::string st;
		if (l.lod_ext != nullptr)
			st = l.lod_ext;
		else
			witness_stack_format(st, l.lod_frames, l.lod_nframes, "");
		std::size_t p = 0;
		while (p < st.size()) {
			std::size_t e = st.find('\n', p);
			if (e == std::string::npos)
				e = st.size();
			s += "S\t";
			s.append(st, p, e - p);
			s += '\n';
			p = e + 1;
		}
	}
	std::string tmp = std::string(path) + ".tmp." + std::to_string(getpid());
	int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644);
	if (fd < 0)
		return errno;
	out_str(witness_out_fd(fd), s);
	if (::fsync(fd) != 0 || ::close(fd) != 0) {
		int e = errno;
		::unlink(tmp.c_str());
		return e;
	}
	if (::rename(tmp.c_str(), path) != 0) {
		int e = errno;
		::unlink(tmp.c_str());
		return e;
	}
	return 0;
}

int
witness_load_graph(const char *path) noexcept
{
	setup();
	FILE *f = std::fopen(path, "re");
	if (f == nullptr)
		return errno;
	char *buf = nullptr;
	std::size_t cap = 0;
	ssize_t len;
	if ((len = getline(&buf, &cap, f)) <= 0 ||
	    std::strncmp(buf, "usmp-witness-graph 1", 20) != 0) {
		std::free(buf);
		std::fclose(f);
		return EINVAL;
	}
	lock_order *cur = nullptr;
	std::string stack;
	auto flush = [&] {
		if (cur != nullptr && !stack.empty())
			cur->lod_ext = dupstr(stack.c_str());
		cur = nullptr;
		stack.clear();
	};
	while ((len = getline(&buf, &cap, f)) > 0) {
		if (buf[len - 1] == '\n')
			buf[--len] = '\0';
		char *fld[10];
		int nf = 0;
		char *p = buf;
		while (nf < 10) {
			fld[nf++] = p;
			char *t = std::strchr(p, '\t');
			if (t == nullptr)
				break;
			*t = '\0';
			p = t + 1;
		}
		if (std::strcmp(fld[0], "S") == 0 && nf >= 2) {
			if (cur != nullptr) {
				stack += fld[1];
				stack += '\n';
			}
			continue;
		}
		flush();
		if (std::strcmp(fld[0], "W") == 0 && nf >= 3) {
			w_lock();
			witness *w = enroll_locked(fld[1], nullptr);
			if (w != nullptr && w->w_kind == 0)
				w->w_kind = std::strcmp(fld[2], "spin") == 0 ?
				    unsigned{LC_SPINLOCK} :
				    std::strcmp(fld[2], "sleep") == 0 ?
				    unsigned{LC_SLEEPLOCK} : 0u;
			w_unlock();
		} else if (std::strcmp(fld[0], "E") == 0 && nf >= 10) {
			// Strings of the record live as long as the process.
			char *f1 = dupstr(fld[4]), *f2 = dupstr(fld[7]);
			char *org = dupstr(fld[9]);
			w_lock();
			witness *a = enroll_locked(fld[1], nullptr);
			witness *b = enroll_locked(fld[2], nullptr);
			if (a != nullptr && b != nullptr && a != b &&
			    !(rm(a->w_index, b->w_index) & WITNESS_PARENT) &&
			    !isitmydescendant(b->w_index, a->w_index)) {
				lock_order *l = lod_new_locked(a->w_index,
				    b->w_index, false);
				if (l != nullptr) {
					lod_fill(l, fld[3], f1, std::atoi(fld[5]),
					    fld[6], f2, std::atoi(fld[8]), nullptr, 0);
					l->lod_origin = org;
					adopt_locked(a->w_index, b->w_index);
					cur = l;
				}
			}
			w_unlock();
		}
	}
	flush();
	std::free(buf);
	std::fclose(f);
	return 0;
}

int
witness_held_count() noexcept
{
	thread *td = curthread_fast();
	witness_td *wt = wt_of(td);
	critical_enter();
	int n = (wt != nullptr ? wt->wt_count : 0) + cpu_list()->wc_count;
	critical_exit();
	return n;
}

void
witness_filter_enter() noexcept
{
	USMP_KASSERT(curthread_fast()->td_critnest > 0,
	    "witness_filter_enter: not in a critical section");
	critical_enter();
	cpu_list()->wc_filter++;
	critical_exit();
}

void
witness_filter_exit() noexcept
{
	critical_enter();
	cpu_list()->wc_filter--;
	critical_exit();
}

void
witness_nosleep_enter(const char *what) noexcept
{
	witness_td *wt = wt_get(curthread_fast());
	if (wt == nullptr)
		return;
	if (wt->wt_nosleep++ == 0)
		wt->wt_nosleep_what = what;
}

void
witness_nosleep_exit() noexcept
{
	witness_td *wt = wt_of(curthread_fast());
	if (wt != nullptr && wt->wt_nosleep > 0)
		wt->wt_nosleep--;
}

// ---- Hooks.

void
witness_init(lock_object *lo) noexcept
{
	setup();
	if (!(lo->lo_flags & LO_WITNESS))
		return;
	const lock_class *c = lo->lo_class;
	if ((lo->lo_flags & LO_RECURSABLE) && !(c->lc_flags & LC_RECURSABLE))
		panic("witness_init: lock (%s) %s can not be recursable",
		    c->lc_name, lo->lo_name);
	if ((lo->lo_flags & LO_SLEEPABLE) && !(c->lc_flags & LC_SLEEPABLE))
		panic("witness_init: lock (%s) %s can not be sleepable",
		    c->lc_name, lo->lo_name);
	w_lock();
	witness *w = enroll_locked(lo->lo_type, c);
	if (w != nullptr)
		w->w_refcount++;
	w_unlock();
	lo->lo_witness = w;
	if (w == nullptr)
		report_exhausted(table_types);
}

void
witness_destroy(lock_object *lo) noexcept
{
	witness *w = lo_w(lo);
	if (w == nullptr)
		return;
	w_lock();
	w->w_refcount--;
	w_unlock();
}

void
witness_checkorder(lock_object *lo, unsigned flags, const char *file,
    int line, const lock_object *interlock) noexcept
{
	if (!witness_watched(lo))
		return;
	witness *w = lo_w(lo);
	if (w == nullptr)
		return;
	thread *td = curthread_fast();
	witness_td *wt = wt_get(td);
	if (wt == nullptr || wt->wt_in_report)
		return;
	// No critical section is needed for the CPU's spin list: a thread
	// holding no spin lock sees it empty wherever it runs (spin locks
	// are held only inside spinlock sections, which do not switch), and
	// one holding a spin lock cannot migrate.  Reports (and the callback
	// sink) run in the caller's context.
	checkorder_impl(td, wt, lo, w, flags, file, line, interlock);
}

void
witness_lock(lock_object *lo, unsigned flags, const char *file,
    int line) noexcept
{
	if (!witness_watched(lo) || lo_w(lo) == nullptr)
		return;
	thread *td = curthread_fast();
	witness_td *wt = wt_get(td);
	if (wt == nullptr || wt->wt_in_report)
		return;
	lock_instance *v;
	int *np, *unt, cap;
	list_for(td, lo, wt, &v, &np, &unt, &cap);
	bool fresh;
	unsigned f = push_flags(lo, lo_w(lo), v, *np, &fresh);
	lock_instance *li = fresh ? nullptr : find_instance(v, *np, lo);
	if (li != nullptr) {
		li->li_flags++;
	} else if (*np < cap) {
		v[*np] = {lo, file, line,
		    f | ((flags & LOP_EXCLUSIVE) ? LI_EXCLUSIVE : 0u),
		    lo_w(lo)->w_index};
		// The entry is complete before the count shows it (show all
		// locks reads other threads' lists).
		std::atomic_signal_fence(std::memory_order_release);
		++*np;
	} else {
		++*unt;
		report_exhausted(cap == WITNESS_HELD ? table_held : table_spin_held);
		return;
	}
}

void
witness_unlock(lock_object *lo, unsigned flags, const char *file,
    int line) noexcept
{
	if (!witness_watched(lo) || lo_w(lo) == nullptr)
		return;
	thread *td = curthread_fast();
	witness_td *wt = wt_get(td);
	if (wt == nullptr || wt->wt_in_report)
		return;
	lock_instance *v;
	int *np, *unt, cap;
	list_for(td, lo, wt, &v, &np, &unt, &cap);
	lock_instance *li = find_instance(v, *np, lo);
	if (li == nullptr) {
		if (*unt > 0) {
			--*unt;
				return;
		}
		const lock_class *c = lo->lo_class;
		// Taken while WITNESS was off: the owner word says it is ours.
		if (c->lc_owner != nullptr && c->lc_owner(lo) == td) {
				return;
		}
		report_simple(witness_kind::not_locked, "lock not locked", lo,
		    file, line, nullptr, "lock (%s) %s not locked @ %s:%d\n",
		    class_name(lo), lo->lo_name, file, line);
		return;
	}
	lock_instance held = *li;
	if ((held.li_flags & LI_EXCLUSIVE) && !(flags & LOP_EXCLUSIVE)) {
		report_simple(witness_kind::mode_mismatch, "excl->ushare", lo,
		    file, line, &held,
		    "shared unlock of (%s) %s @ %s:%d\n"
		    "while exclusively locked from %s:%d\n",
		    class_name(lo), lo->lo_name, file, line, held.li_file,
		    held.li_line);
		return;
	}
	if (!(held.li_flags & LI_EXCLUSIVE) && (flags & LOP_EXCLUSIVE)) {
		report_simple(witness_kind::mode_mismatch, "share->uexcl", lo,
		    file, line, &held,
		    "exclusive unlock of (%s) %s @ %s:%d\n"
		    "while share locked from %s:%d\n",
		    class_name(lo), lo->lo_name, file, line, held.li_file,
		    held.li_line);
		return;
	}
	if ((li->li_flags & LI_RECURSEMASK) > 0) {
		li->li_flags--;
		return;
	}
	int n = *np;
	int idx = static_cast<int>(li - v);
	// Hide the tail first, then close the gap (show all locks reads it).
	*np = idx;
	std::atomic_signal_fence(std::memory_order_release);
	for (int i = idx; i < n - 1; i++)
		v[i] = v[i + 1];
	std::atomic_signal_fence(std::memory_order_release);
	*np = n - 1;
}

namespace {

// witness_upgrade() and witness_downgrade(): the same checks, with the verb
// and the mode the lock must be held in swapped.  FreeBSD's messages
// ("upgrade of non-upgradable lock", ...).  An upgrade also moves the
// instance's acquisition site to the upgrade, as the exclusive hold begins
// there; a downgrade keeps it.
void
witness_change_mode(lock_object *lo, bool up, unsigned flags,
    const char *file, int line) noexcept
{
	if (!witness_watched(lo) || lo_w(lo) == nullptr)
		return;
	thread *td = curthread_fast();
	witness_td *wt = wt_get(td);
	if (wt == nullptr || wt->wt_in_report)
		return;
	const char *verb = up ? "upgrade" : "downgrade";
	const char *what = nullptr;
	lock_instance *li = find_instance(wt->wt_locks, wt->wt_count, lo);
	if (!(lo->lo_flags & LO_UPGRADABLE))
		what = "non-upgradable lock";
	else if (lo->lo_class->lc_flags & LC_SPINLOCK)
		what = "non-sleep lock";
	else if (li == nullptr)
		what = "unlocked lock";
	else if (((li->li_flags & LI_EXCLUSIVE) != 0) == up)
		what = up ? "exclusive lock" : "shared lock";
	else if (li->li_flags & LI_RECURSEMASK) {
		lock_instance held = *li;
		char kind[40];
		std::snprintf(kind, sizeof(kind), "%s of recursed lock", verb);
		report_simple(witness_kind::upgrade, kind, lo, file, line, &held,
		    "%s (%s) %s r=%u @ %s:%d\n", kind, class_name(lo),
		    lo->lo_name, held.li_flags & LI_RECURSEMASK, file, line);
		return;
	}
	if (what != nullptr) {
		char kind[40];
		std::snprintf(kind, sizeof(kind), "%s of %s", verb, what);
		report_simple(witness_kind::upgrade, kind, lo, file, line, nullptr,
		    "%s (%s) %s @ %s:%d\n", kind, class_name(lo), lo->lo_name,
		    file, line);
		return;
	}
	if (flags & WITNESS_LOP_CHECKONLY)
		return;
	if (up) {
		li->li_flags |= LI_EXCLUSIVE;
		li->li_file = file;
		li->li_line = line;
	} else {
		li->li_flags &= ~LI_EXCLUSIVE;
	}
}

} // namespace

void
witness_upgrade(lock_object *lo, unsigned flags, const char *file,
    int line) noexcept
{
	witness_change_mode(lo, true, flags, file, line);
}

void
witness_downgrade(lock_object *lo, unsigned flags, const char *file,
    int line) noexcept
{
	witness_change_mode(lo, false, flags, file, line);
}

void
witness_try_recursion(lock_object *lo, const char *file, int line) noexcept
{
	if (!witness_watched(lo) || lo_w(lo) == nullptr)
		return;
	thread *td = curthread_fast();
	witness_td *wt = wt_get(td);
	if (wt == nullptr || wt->wt_in_report)
		return;
	lock_instance *v;
	int *np, *unt, cap;
	list_for(td, lo, wt, &v, &np, &unt, &cap);
	lock_instance *li = find_instance(v, *np, lo);
	lock_instance held = li != nullptr ? *li : lock_instance{lo, "?", 0, 0, 0};
	report_simple(witness_kind::recursion, "recursed on non-recursive lock",
	    lo, file, line, &held,
	    "recursed on non-recursive lock (%s) %s through try_lock @ %s:%d\n"
	    "first acquired @ %s:%d\n",
	    class_name(lo), lo->lo_name, file, line, held.li_file, held.li_line);
}

int
witness_warn(unsigned flags, const lock_object *lock, const char *fmt,
    ...) noexcept
{
	if constexpr (!config::witness)
		return 0;
	if (witness_detail::w_watch.load(std::memory_order_relaxed) <= 0)
		return 0;
	thread *td = curthread_fast();
	witness_td *wt = wt_of(td);
	if (wt != nullptr && wt->wt_in_report)
		return 0;
	// The locks that make this sleep wrong: every held one but `lock`,
	// less those the flags allow.  Counted before anything is formatted:
	// this runs on every sleep with WITNESS on, and almost always finds
	// nothing.
	auto offends = [&](const lock_object *lo, bool spin) {
		if (lo == lock)
			return false;
		if (spin)
			return true;
		if ((flags & WARN_GIANTOK) && is_giant(lo))
			return false;
		return !((flags & WARN_SLEEPOK) && lo_sleepable(lo));
	};
	int bad = 0;
	int n = wt != nullptr ? wt->wt_count : 0;
	critical_enter();
	witness_cpu *wc = cpu_list();
	for (int i = 0; i < wc->wc_count; i++)
		bad += offends(wc->wc_locks[i].li_lock, true);
	critical_exit();
	for (int i = 0; i < n; i++)
		bad += offends(wt->wt_locks[i].li_lock, false);
	if (bad == 0 && (wt == nullptr || wt->wt_nosleep == 0))
		return 0;

	std::string s;
	va_list ap;
	va_start(ap, fmt);
	std::string head;
	sappendv(head, fmt, ap);
	va_end(ap);
	bad = 0;
	critical_enter();
	wc = cpu_list();
	std::string lines;
	for (int i = wc->wc_count - 1; i >= 0; i--) {
		if (!offends(wc->wc_locks[i].li_lock, true))
			continue;
		bad++;
		list_lock(lines, wc->wc_locks[i], " ");
	}
	critical_exit();
	for (int i = n - 1; i >= 0; i--) {
		const lock_instance &li = wt->wt_locks[i];
		if (!offends(li.li_lock, false))
			continue;
		bad++;
		list_lock(lines, li, " ");
	}
	if (bad > 0) {
		s = head;
		sappend(s, " with the following %slocks held:\n",
		    (flags & WARN_SLEEPOK) ? "non-sleepable " : "");
		s += lines;
		append_backtrace(s, 1);
		lockdesc d = lock != nullptr ? desc_of(lock, "?", 0) : lockdesc{};
		emit(witness_kind::sleeping, s, d, {}, "sleeping with locks held",
		    (flags & WARN_PANIC) != 0);
	}
	if (wt != nullptr && wt->wt_nosleep > 0) {
		s = head;
		sappend(s, " in %s context (sleeping prohibited)\n",
		    wt->wt_nosleep_what != nullptr ? wt->wt_nosleep_what : "a no-sleep");
		append_backtrace(s, 1);
		emit(witness_kind::nosleep_context, s, {}, {},
		    "sleeping in a no-sleep context", (flags & WARN_PANIC) != 0);
		bad++;
	}
	return bad;
}

// The walk read each thread's state at a different moment, so the cycle it
// found may be a composite of states that never coexisted (a holder that
// has since let go, a waiter already woken: seen under heavy
// oversubscription as a false report).  Before reporting, every edge is
// checked again: the next thread of the cycle holds the lock the thread
// before it waits for.  Then every other thread's block generation and
// lock are read a last time: unchanged, it was blocked on that lock from
// the walk's first look until now without a break.  A blocked thread
// releases nothing, so every holder checked in between still holds its
// lock at this last read, when all of the cycle are blocked at once: the
// cycle existed, at that moment, as a whole.  (We are blocked too.)
bool
dl_confirm(const dl_walk &w, thread *owner) noexcept
{
	for (int k = 0; k < w.nc; k++) {
		thread *next = w.cycle[(k + 1) % w.nc];
		thread *h[DL_FANOUT];
		int nh = lock_holders(w.waits[k], k == 0 ? owner : nullptr, h);
		bool held = false;
		for (int i = 0; i < nh && !held; i++)
			held = h[i] == next;
		if (!held)
			return false;
	}
	for (int k = 1; k < w.nc; k++) {
		witness_td *twt = wt_of(w.cycle[k]);
		if (twt == nullptr ||
		    twt->wt_blocked_on.load(std::memory_order_seq_cst) !=
			w.waits[k] ||
		    twt->wt_block_gen.load(std::memory_order_seq_cst) !=
			w.gens[k])
			return false;
	}
	return true;
}

void
witness_block(const lock_object *lo, thread *owner, const char *file,
    int line) noexcept
{
	if (!witness_watched(lo))
		return;
	thread *me = curthread_fast();
	witness_td *wt = wt_of(me);
	if (wt == nullptr || wt->wt_in_report)
		return;
	wt->wt_block_file = file;
	wt->wt_block_line = line;
	// seq_cst store, then seq_cst loads of the others' (Dekker): of two
	// threads closing a cycle at once, at least one sees the other.  The
	// generation moves first: a walker that reads it and then sees lo
	// holds this block's generation.
	wt->wt_block_gen.fetch_add(1, std::memory_order_seq_cst);
	wt->wt_blocked_on.store(lo, std::memory_order_seq_cst);
	dl_walk w;
	w.me = me;
	w.waits[w.nc] = lo;
	w.cycle[w.nc++] = me;
	thread *h[DL_FANOUT];
	int nh = lock_holders(lo, owner, h);
	for (int i = 0; i < nh; i++) {
		if (h[i] == me || !dl_search(w, h[i]))
			continue;
		if (dl_confirm(w, owner))
			report_deadlock(me, lo, file, line, w.cycle, w.nc);
		return;
	}
}

void
witness_unblock() noexcept
{
	if (witness_detail::w_watch.load(std::memory_order_relaxed) <= 0)
		return;
	witness_td *wt = wt_of(curthread_fast());
	if (wt != nullptr && wt->wt_blocked_on.load(std::memory_order_relaxed) !=
	    nullptr) {
		wt->wt_blocked_on.store(nullptr, std::memory_order_seq_cst);
		wt->wt_block_gen.fetch_add(1, std::memory_order_seq_cst);
	}
}

void
witness_assert(const lock_object *lo, int what, const char *file,
    int line) noexcept
{
	if (!witness_watched(lo) || lo_w(lo) == nullptr)
		return;
	thread *td = curthread_fast();
	witness_td *wt = wt_of(td);
	if (wt != nullptr && wt->wt_in_report)
		return;
	const lock_instance *li = nullptr;
	if (lo->lo_class->lc_flags & LC_SPINLOCK) {
		witness_cpu *wc = cpu_list();
		li = find_instance(wc->wc_locks, wc->wc_count, lo);
	} else if (wt != nullptr) {
		li = find_instance(wt->wt_locks, wt->wt_count, lo);
	}
	lock_instance held = li != nullptr ? *li : lock_instance{};
	const char *bad = nullptr;
	switch (what & ~(LA_RECURSED | LA_NOTRECURSED)) {
	case LA_UNLOCKED:
		if (li != nullptr)
			bad = "Lock (%s) %s locked @ %s:%d.\n";
		break;
	case LA_LOCKED:
	case LA_SLOCKED:
	case LA_XLOCKED:
		if (li == nullptr)
			bad = "Lock (%s) %s not locked @ %s:%d.\n";
		else if ((what & ~(LA_RECURSED | LA_NOTRECURSED)) == LA_XLOCKED &&
		    !(held.li_flags & LI_EXCLUSIVE))
			bad = "Lock (%s) %s not exclusively locked @ %s:%d.\n";
		else if ((what & ~(LA_RECURSED | LA_NOTRECURSED)) == LA_SLOCKED &&
		    (held.li_flags & LI_EXCLUSIVE))
			bad = "Lock (%s) %s exclusively locked @ %s:%d.\n";
		else if ((what & LA_RECURSED) &&
		    !(held.li_flags & LI_RECURSEMASK))
			bad = "Lock (%s) %s not recursed @ %s:%d.\n";
		else if ((what & LA_NOTRECURSED) &&
		    (held.li_flags & LI_RECURSEMASK))
			bad = "Lock (%s) %s recursed @ %s:%d.\n";
		break;
	default:
		report_simple(witness_kind::assertion, "invalid lock assertion",
		    lo, file, line, nullptr, "Invalid lock assertion at %s:%d.\n",
		    file, line);
		return;
	}
	if (bad != nullptr) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		std::string s;
		sappend(s, bad, class_name(lo), lo->lo_name, file, line);
#pragma GCC diagnostic pop
		append_backtrace(s, 1);
		emit(witness_kind::assertion, s,
		    li != nullptr ? desc_of(lo, held.li_file, held.li_line) :
				    lockdesc{},
		    desc_of(lo, file, line), "lock assertion");
	}
}

void
witness_thread_exit(thread *td) noexcept
{
	witness_td *wt = wt_of(td);
	if (wt == nullptr)
		return;
	if (wt->wt_count > 0 &&
	    witness_detail::w_watch.load(std::memory_order_relaxed) > 0) {
		std::string s;
		sappend(s, "Thread %p exiting with the following locks held:\n",
		    static_cast<void *>(td));
		for (int i = wt->wt_count - 1; i >= 0; i--)
			list_lock(s, wt->wt_locks[i], " ");
		sappend(s, "Thread %p (\"%s\", tid %d) cannot exit while holding "
			   "sleeplocks\n",
		    static_cast<void *>(td), td->td_name, td->td_tid);
		const lock_instance &li = wt->wt_locks[wt->wt_count - 1];
		emit(witness_kind::thread_exit, s,
		    desc_of(li.li_lock, li.li_file, li.li_line), {},
		    "thread exiting with locks held");
	}
	td->td_witness = nullptr;
	w_lock();
	wt_free_locked(wt);
	w_unlock();
}

void
witness_save(const lock_object *lo, const char **file, int *line) noexcept
{
	*file = nullptr;
	*line = 0;
	if (!witness_watched(lo))
		return;
	witness_td *wt = wt_of(curthread_fast());
	if (wt == nullptr)
		return;
	if (lock_instance *li = find_instance(wt->wt_locks, wt->wt_count, lo)) {
		*file = li->li_file;
		*line = li->li_line;
	}
}

void
witness_restore(const lock_object *lo, const char *file, int line) noexcept
{
	if (file == nullptr || !witness_watched(lo))
		return;
	witness_td *wt = wt_of(curthread_fast());
	if (wt == nullptr)
		return;
	if (lock_instance *li = find_instance(wt->wt_locks, wt->wt_count, lo)) {
		li->li_file = file;
		li->li_line = line;
	}
}

} // namespace usmp

#else // !USMP_WITNESS: the API links, and does nothing.

namespace usmp {
witness_mode witness_set_mode(witness_mode) noexcept { return witness_mode::off; }
witness_mode witness_get_mode() noexcept { return witness_mode::off; }
void witness_set_stderr(bool) noexcept {}
int witness_set_json(const char *) noexcept { return 0; }
void witness_set_callback(witness_callback_fn, void *) noexcept {}
void witness_set_trace(bool) noexcept {}
uint64_t witness_report_count() noexcept { return 0; }
uint64_t witness_report_count(witness_kind) noexcept { return 0; }
int witness_defineorder(const char *, const char *, const char *, int) noexcept { return 0; }
int witness_defineorder_list(const char *const *, const char *, int) noexcept { return 0; }
int witness_bless(const char *, const char *) noexcept { return 0; }
int witness_show_locks(const thread *, witness_out) noexcept { return 0; }
int witness_show_all_locks(witness_out) noexcept { return 0; }
void witness_badstacks(witness_out) noexcept {}
void witness_dump_dot(witness_out) noexcept {}
void witness_fullgraph(witness_out) noexcept {}
int witness_save_graph(const char *) noexcept { return ENOTSUP; }
int witness_load_graph(const char *) noexcept { return ENOTSUP; }
int witness_held_count() noexcept { return 0; }
void witness_filter_enter() noexcept {}
void witness_filter_exit() noexcept {}
void witness_nosleep_enter(const char *) noexcept {}
void witness_nosleep_exit() noexcept {}
void witness_init(lock_object *) noexcept {}
void witness_destroy(lock_object *) noexcept {}
void witness_checkorder(lock_object *, unsigned, const char *, int, const lock_object *) noexcept {}
void witness_lock(lock_object *, unsigned, const char *, int) noexcept {}
void witness_unlock(lock_object *, unsigned, const char *, int) noexcept {}
void witness_upgrade(lock_object *, unsigned, const char *, int) noexcept {}
void witness_downgrade(lock_object *, unsigned, const char *, int) noexcept {}
void witness_try_recursion(lock_object *, const char *, int) noexcept {}
int witness_warn(unsigned, const lock_object *, const char *, ...) noexcept { return 0; }
void witness_block(const lock_object *, thread *, const char *, int) noexcept {}
void witness_unblock() noexcept {}
void witness_assert(const lock_object *, int, const char *, int) noexcept {}
void witness_thread_exit(thread *) noexcept {}
void witness_save(const lock_object *, const char **file, int *line) noexcept { *file = nullptr; *line = 0; }
void witness_restore(const lock_object *, const char *, int) noexcept {}
} // namespace usmp

#endif

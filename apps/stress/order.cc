// WITNESS scenarios: lock-order churn, and a deliberate reversal.
//
// `order` takes random chains of locks of 12 types, always in one global
// order (type index increasing: the sx types, then the mutex types),
// nested 2 to 5 deep, mixing sx locks (shared and exclusive) and sleep
// mutexes, blocking acquisitions and try-locks:
// WITNESS learns a large order graph and must report nothing.  The driver
// counts WITNESS reports during every scenario and fails the run on any.
// Each lock also checks its own exclusion (one exclusive holder, no reader
// beside it), and a hang is the watchdog's: this scenario is what found
// thread_lock() spinning on a recycled turnstile lock (runtime/switch.cc).
//
// `reversal` (only when named) establishes "stress A before stress B" in one
// thread, then, after it has finished, takes B then A in another: no
// deadlock can happen in this run, yet WITNESS reports the reversal, with
// both stacks, and the run fails.  It shows what a lock-order report looks
// like and that the tool's exit status carries it.
#include <atomic>
#include <memory>
#include <vector>

#include "apps/stress/stress.h"
#include "apps/stress/workers.h"
#include "runtime/config.h"
#include "runtime/thread.h"
#include "sync/mutex.h"
#include "sync/sx.h"

namespace usmp::stress {
namespace {

constexpr int kTypes = 12;
constexpr int kPerType = 3; // several locks of a type: DUPOK is not needed
			    // as a chain takes at most one lock per type

const char *const kTypeNames[kTypes] = {"stress order 0", "stress order 1",
	"stress order 2", "stress order 3", "stress order 4", "stress order 5",
	"stress order 6", "stress order 7", "stress order 8", "stress order 9",
	"stress order 10", "stress order 11"};

// Types 0-5 are sx locks, 6-11 sleep mutexes: a chain takes every sx it
// wants before any mutex, since a sleepable lock may not be acquired with
// a non-sleepable one held (WITNESS reports that as a reversal).
struct order_lock {
	std::unique_ptr<usmp::mutex> m;
	std::unique_ptr<usmp::sx> s;
	const char *name = nullptr; // its type's name
	// Exclusion check: the exclusive holder's id (-1: none) and the
	// number of shared holders.  Atomic because a broken lock is what
	// they are there to catch.
	std::atomic<int> holder{-1};
	std::atomic<int> readers{0};
};

// After l is acquired (shared or not) by worker id: nobody else may hold
// it exclusively, and no reader may hold it beside an exclusive holder.
void
check_acquired(context &ctx, order_lock &l, int id, bool shared)
{
	if (shared) {
		l.readers.fetch_add(1, std::memory_order_relaxed);
		int h = l.holder.load(std::memory_order_relaxed);
		if (h != -1)
			ctx.fail("order: \"%s\" read-locked by worker %d while "
			    "worker %d holds it exclusively", l.name, id, h);
		return;
	}
	int h = l.holder.exchange(id, std::memory_order_relaxed);
	int r = l.readers.load(std::memory_order_relaxed);
	if (h != -1 || r != 0)
		ctx.fail("order: \"%s\" locked by worker %d while held by "
		    "worker %d and %d readers", l.name,
		    id, h, r);
}

void
check_releasing(context &ctx, order_lock &l, int id, bool shared)
{
	if (shared) {
		l.readers.fetch_sub(1, std::memory_order_relaxed);
		return;
	}
	int h = l.holder.exchange(-1, std::memory_order_relaxed);
	if (h != id)
		ctx.fail("order: worker %d releasing \"%s\" found holder %d",
		    id, l.name, h);
}

void
run_order(context &ctx)
{
	std::vector<order_lock> locks(kTypes * kPerType);
	for (int t = 0; t < kTypes; t++)
		for (int k = 0; k < kPerType; k++) {
			order_lock &l = locks[t * kPerType + k];
			l.name = kTypeNames[t];
			if (t >= kTypes / 2)
				l.m = std::make_unique<usmp::mutex>(kTypeNames[t],
				    kTypeNames[t]);
			else
				l.s = std::make_unique<usmp::sx>(kTypeNames[t]);
		}

	run_workers(ctx, worker_count(ctx, 2), [&](int id, rng &r) {
		uint64_t batch = 0;
		struct held {
			order_lock *l;
			bool shared;
		};
		held chain[kTypes];
		while (ctx.running()) {
			// A chain of increasing types.
			int n = 0, depth = 2 + int(r.below(4));
			for (int t = int(r.below(kTypes)); t < kTypes && n < depth;
			     t += 1 + int(r.below(3))) {
				order_lock &l = locks[t * kPerType + r.below(kPerType)];
				bool shared = false;
				if (l.m) {
					if (r.one_in(4)) {
						if (!l.m->try_lock())
							continue;
					} else {
						l.m->lock();
					}
				} else {
					shared = r.one_in(2);
					if (shared)
						l.s->lock_shared();
					else
						l.s->lock();
				}
				check_acquired(ctx, l, id, shared);
				chain[n++] = held{&l, shared};
			}
			if (r.one_in(16))
				thread_yield();
			// Release in either order: WITNESS only orders
			// acquisitions.
			bool backwards = r.one_in(2);
			for (int k = 0; k < n; k++) {
				held &h = chain[backwards ? n - 1 - k : k];
				check_releasing(ctx, *h.l, id, h.shared);
				if (h.l->m)
					h.l->m->unlock();
				else if (h.shared)
					h.l->s->unlock_shared();
				else
					h.l->s->unlock();
			}
			if (++batch == kOpBatch) {
				ctx.add_ops(batch);
				batch = 0;
			}
		}
		ctx.add_ops(batch);
	});
}

void
run_reversal(context &ctx)
{
	usmp::mutex a("stress A", "stress A");
	usmp::mutex b("stress B", "stress B");
	thread_attr at;
	at.name = "reversal AB";
	green_thread first(at, [&] {
		a.lock();
		b.lock();
		b.unlock();
		a.unlock();
	});
	first.join();
	at.name = "reversal BA";
	green_thread second(at, [&] {
		b.lock();
		a.lock(); // the reversal: reported here
		a.unlock();
		b.unlock();
	});
	second.join();
	ctx.add_ops(2);
	if constexpr (!config::witness)
		ctx.fail("reversal: this build has no WITNESS (USMP_WITNESS=OFF), "
		    "so the reversal went unreported");
	// Keep going until the deadline, so the run looks like the others.
	while (ctx.running())
		thread_sleep(std::chrono::milliseconds(5));
}

} // namespace

USMP_STRESS_SCENARIO("order",
    "lock-order churn over 12 types of mutex and sx: WITNESS reports nothing",
    run_order);
USMP_STRESS_SCENARIO("reversal",
    "a deliberate lock-order reversal (A then B, later B then A): WITNESS "
    "reports it and the run fails",
    run_reversal, false);

} // namespace usmp::stress

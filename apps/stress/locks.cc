// Lock contention scenarios: mutex, spin, sx, rw.
//
// Each keeps a handful of hot locks and more threads than CPUs fighting for
// them, with full preemption on, and checks mutual exclusion directly (a
// holder field that must be empty on entry and ours on exit) and
// conservation at the end (every increment a worker made is in the
// protected counters).  The shared/exclusive scenarios also check that a
// reader always sees a consistent snapshot while writers upgrade and
// downgrade.
#include <array>
#include <cinttypes>
#include <memory>
#include <vector>

#include "apps/stress/stress.h"
#include "apps/stress/workers.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/sx.h"

namespace usmp::stress {
namespace {

constexpr int kSlots = 8;

// A short critical section: enough work that contention happens, random
// enough that the interleavings vary.
inline void
spin_work(rng &r, uint32_t max)
{
	for (uint32_t i = r.below(max); i > 0; i--)
		__asm__ __volatile__("" ::: "memory");
}

// --- exclusive locks -------------------------------------------------------

template <class Lock>
struct excl_slot {
	Lock lock;
	uint64_t count = 0;       // protected by lock
	uint32_t holder = 0;      // protected by lock: worker id + 1
	explicit excl_slot(const char *name) : lock(name, "stress slot", LOCK_DUPOK) {}
};

// Mutual exclusion and conservation under one exclusive lock type.  A
// sleep mutex holder may also yield (a preemption inside the section,
// which turns waiters into turnstile sleepers); a spin mutex holder may not.
template <class Lock, bool kMayYield>
void
run_exclusive(context &ctx, const char *lock_name)
{
	std::vector<std::unique_ptr<excl_slot<Lock>>> slots;
	for (int i = 0; i < kSlots; i++)
		slots.push_back(std::make_unique<excl_slot<Lock>>(lock_name));
	int nworkers = worker_count(ctx);
	std::vector<std::array<uint64_t, kSlots>> done(nworkers);

	run_workers(ctx, nworkers, [&](int id, rng &r) {
		auto &mine = done[id];
		mine.fill(0);
		uint64_t batch = 0;
		while (ctx.running()) {
			int s = int(r.below(kSlots));
			auto &slot = *slots[s];
			slot.lock.lock();
			if (slot.holder != 0)
				ctx.fail("%s slot %d: worker %d entered while "
				    "worker %u held it", lock_name, s, id,
				    slot.holder - 1);
			slot.holder = uint32_t(id) + 1;
			spin_work(r, 200);
			if constexpr (kMayYield) {
				if (r.one_in(64))
					thread_yield();
			}
			if (slot.holder != uint32_t(id) + 1)
				ctx.fail("%s slot %d: worker %u entered while "
				    "worker %d held it", lock_name, s,
				    slot.holder - 1, id);
			slot.holder = 0;
			slot.count++;
			slot.lock.unlock();
			mine[s]++;
			if (++batch == kOpBatch) {
				ctx.add_ops(batch);
				batch = 0;
			}
		}
		ctx.add_ops(batch);
	});

	for (int s = 0; s < kSlots; s++) {
		uint64_t want = 0;
		for (auto &d : done)
			want += d[s];
		if (slots[s]->count != want)
			ctx.fail("%s slot %d: counter %" PRIu64 " but workers "
			    "made %" PRIu64 " increments (lost updates)", lock_name,
			    s, slots[s]->count, want);
	}
}

void
run_mutex(context &ctx)
{
	run_exclusive<usmp::mutex, true>(ctx, "stress mutex");
}

void
run_spin(context &ctx)
{
	run_exclusive<usmp::spin_mutex, false>(ctx, "stress spin");
}

// --- shared/exclusive locks --------------------------------------------------

// The protected data: writers keep every word equal to the number of
// writes so far, writing them one at a time (with a yield in between for
// sx, whose holders may sleep), so a reader not excluded would see them
// differ.
constexpr int kWords = 8;

template <class Lock>
struct shared_data {
	Lock lock;
	uint64_t word[kWords] = {};
	explicit shared_data(const char *name) : lock(name) {}
};

template <class Lock>
bool
consistent(const shared_data<Lock> &d, uint64_t *first)
{
	*first = d.word[0];
	for (int i = 1; i < kWords; i++)
		if (d.word[i] != d.word[0])
			return false;
	return true;
}

template <class Lock, bool kSleepable>
void
write_words(shared_data<Lock> &d, rng &r)
{
	for (int i = 0; i < kWords; i++) {
		d.word[i]++;
		if constexpr (kSleepable) {
			if (r.one_in(256))
				thread_yield();
		}
	}
}

// Readers (3 of 4 workers' operations) check snapshots; writers write;
// some readers try to upgrade and write, then downgrade and check again;
// some writers downgrade and check what they wrote is still there.
template <class Lock, bool kSleepable>
void
run_shared_exclusive(context &ctx, const char *name)
{
	shared_data<Lock> d(name);
	int nworkers = worker_count(ctx);
	std::vector<uint64_t> writes(nworkers, 0);

	run_workers(ctx, nworkers, [&](int id, rng &r) {
		uint64_t batch = 0, v;
		while (ctx.running()) {
			uint32_t op = r.below(16);
			if (op < 12) {
				d.lock.lock_shared();
				if (!consistent(d, &v))
					ctx.fail("%s: reader %d saw a torn snapshot "
					    "(word 0 = %" PRIu64 ")", name, id, v);
				if (op == 0 && d.lock.try_upgrade()) {
					write_words<Lock, kSleepable>(d, r);
					writes[id]++;
					d.lock.downgrade();
					if (!consistent(d, &v))
						ctx.fail("%s: worker %d saw a torn "
						    "snapshot after upgrade and "
						    "downgrade", name, id);
				}
				d.lock.unlock_shared();
			} else {
				d.lock.lock();
				if (!consistent(d, &v))
					ctx.fail("%s: writer %d found a torn "
					    "snapshot", name, id);
				write_words<Lock, kSleepable>(d, r);
				writes[id]++;
				if (op == 15) {
					uint64_t mine = d.word[0];
					d.lock.downgrade();
					if (!consistent(d, &v) || v != mine)
						ctx.fail("%s: worker %d lost its "
						    "write across downgrade (%" PRIu64
						    " then %" PRIu64 ")", name, id, mine,
						    v);
					d.lock.unlock_shared();
				} else {
					d.lock.unlock();
				}
			}
			if (++batch == kOpBatch) {
				ctx.add_ops(batch);
				batch = 0;
			}
		}
		ctx.add_ops(batch);
	});

	uint64_t want = 0, v;
	for (uint64_t w : writes)
		want += w;
	if (!consistent(d, &v) || v != want)
		ctx.fail("%s: words end at %" PRIu64 " but %" PRIu64
		    " writes were made", name, d.word[0], want);
}

void
run_sx(context &ctx)
{
	run_shared_exclusive<usmp::sx, true>(ctx, "stress sx");
}

void
run_rw(context &ctx)
{
	run_shared_exclusive<usmp::rwlock, false>(ctx, "stress rw");
}

// A planted bug, to show (and test) what a failure looks like: a counter
// updated with no lock, read and written around a yield, loses updates as
// soon as two threads interleave.
void
run_planted_race(context &ctx)
{
	uint64_t counter = 0;
	int nworkers = worker_count(ctx);
	std::vector<uint64_t> made(nworkers, 0);
	run_workers(ctx, nworkers, [&](int id, rng &r) {
		uint64_t batch = 0;
		while (ctx.running()) {
			uint64_t v = __atomic_load_n(&counter, __ATOMIC_RELAXED);
			if (r.one_in(4))
				thread_yield();
			__atomic_store_n(&counter, v + 1, __ATOMIC_RELAXED);
			made[id]++;
			if (++batch == kOpBatch) {
				ctx.add_ops(batch);
				batch = 0;
			}
		}
		ctx.add_ops(batch);
	});
	uint64_t want = 0;
	for (uint64_t m : made)
		want += m;
	if (counter != want)
		ctx.fail("planted-race: counter %" PRIu64 " after %" PRIu64
		    " unlocked increments (lost updates, as planted)", counter,
		    want);
}

} // namespace

USMP_STRESS_SCENARIO("planted-race",
    "a planted bug: unlocked read-yield-write increments lose updates",
    run_planted_race, false);
USMP_STRESS_SCENARIO("mutex",
    "sleep mutexes: mutual exclusion and no lost update, holders yield",
    run_mutex);
USMP_STRESS_SCENARIO("spin", "spin mutexes: mutual exclusion, no lost update",
    run_spin);
USMP_STRESS_SCENARIO("sx",
    "sx: consistent snapshots while writers upgrade and downgrade", run_sx);
USMP_STRESS_SCENARIO("rw",
    "rwlock: consistent snapshots while writers upgrade and downgrade",
    run_rw);

} // namespace usmp::stress

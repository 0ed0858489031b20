// Sleep and wakeup scenarios: condvar ping-pong and a bounded buffer,
// msleep/wakeup with timeouts and interrupts.
//
// A lost wakeup shows as a hang: no timeout hides it (waits without a
// timeout wait for a state change that must be signalled), and the driver's
// watchdog reports a scenario that does not finish.
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <deque>
#include <memory>
#include <vector>

#include "apps/stress/stress.h"
#include "apps/stress/workers.h"
#include "runtime/thread.h"
#include "sync/condvar.h"
#include "sync/mutex.h"
#include "sync/sleep.h"
#include "sync/sleepqueue.h"

namespace usmp::stress {
namespace {

using namespace std::chrono_literals;

// --- condvar ----------------------------------------------------------------

// Two threads pass a turn back and forth: side k waits for turn % 2 == k.
// Each side checks that the turn it sees is exactly one past the last it
// set (a wakeup without the state change is fine; a state change without
// the wakeup hangs).
struct pingpong {
	usmp::mutex m{"stress pingpong", "stress pingpong", LOCK_DUPOK};
	usmp::condvar cv{"stress pingpong"};
	uint64_t turn = 0; // protected by m
	bool done = false; // protected by m
};

// A bounded FIFO with several producers and consumers: every item carries
// its producer and sequence number; a consumer sees each producer's items
// in increasing order, and at the end every produced item was consumed
// once.
struct item {
	uint32_t producer;
	uint64_t seq;
};

struct buffer {
	usmp::mutex m{"stress buffer"};
	usmp::condvar not_empty{"stress not empty"};
	usmp::condvar not_full{"stress not full"};
	std::deque<item> q; // protected by m
	bool closed = false;
	static constexpr size_t kCap = 16;
};

void
run_condvar(context &ctx)
{
	int npairs = ctx.ncpus() < 2 ? 2 : ctx.ncpus();
	std::vector<std::unique_ptr<pingpong>> pairs;
	for (int i = 0; i < npairs; i++)
		pairs.push_back(std::make_unique<pingpong>());

	buffer buf;
	int nprod = ctx.ncpus() < 2 ? 2 : ctx.ncpus();
	int ncons = nprod;
	std::vector<uint64_t> produced(nprod, 0), consumed_sum(ncons, 0);
	std::vector<uint64_t> consumed_count(ncons, 0);

	int nworkers = 2 * npairs + nprod + ncons;
	run_workers(ctx, nworkers, [&](int id, rng &r) {
		uint64_t batch = 0;
		auto count = [&] {
			if (++batch == kOpBatch) {
				ctx.add_ops(batch);
				batch = 0;
			}
		};
		if (id < 2 * npairs) {
			// Ping-pong side `side` of pair `id / 2`.
			pingpong &p = *pairs[id / 2];
			uint64_t side = uint64_t(id % 2);
			// The turn this side set last: the other side moves
			// it on by exactly one before it is ours again.
			int64_t last = side == 0 ? -1 : 0;
			p.m.lock();
			for (;;) {
				while (p.turn % 2 != side && !p.done)
					p.cv.wait(p.m);
				if (p.done)
					break;
				if (int64_t(p.turn) != last + 1)
					ctx.fail("condvar pair %d side %d: turn %" PRIu64
					    " after %" PRId64 " (a turn was lost or "
					    "repeated)", id / 2, int(side), p.turn, last);
				p.turn++;
				last = int64_t(p.turn);
				if (r.one_in(2))
					p.cv.signal();
				else
					p.cv.broadcast();
				count();
				if (!ctx.running()) {
					p.done = true;
					p.cv.broadcast();
					break;
				}
			}
			p.m.unlock();
		} else if (id < 2 * npairs + nprod) {
			int pid = id - 2 * npairs;
			buf.m.lock();
			while (ctx.running() && !buf.closed) {
				while (buf.q.size() >= buffer::kCap && !buf.closed)
					buf.not_full.wait(buf.m);
				if (buf.closed)
					break;
				buf.q.push_back(item{uint32_t(pid), ++produced[pid]});
				buf.not_empty.signal();
				count();
				if (r.one_in(8)) {
					buf.m.unlock();
					thread_yield();
					buf.m.lock();
				}
			}
			// The first producer to stop closes the buffer: the
			// others stop, and consumers drain it and leave.
			buf.closed = true;
			buf.not_full.broadcast();
			buf.not_empty.broadcast();
			buf.m.unlock();
		} else {
			int cid = id - 2 * npairs - nprod;
			std::vector<uint64_t> last(nprod, 0);
			buf.m.lock();
			for (;;) {
				while (buf.q.empty() && !buf.closed)
					buf.not_empty.wait(buf.m);
				if (buf.q.empty())
					break;
				item it = buf.q.front();
				buf.q.pop_front();
				buf.not_full.signal();
				if (it.seq <= last[it.producer])
					ctx.fail("buffer: consumer %d got producer "
					    "%u's item %" PRIu64 " after %" PRIu64,
					    cid, it.producer, it.seq,
					    last[it.producer]);
				last[it.producer] = it.seq;
				consumed_count[cid]++;
				consumed_sum[cid] += it.seq;
			}
			buf.m.unlock();
		}
		ctx.add_ops(batch);
	});

	// Every produced item was consumed exactly once: the counts match and
	// so do the sums of sequence numbers (1 + ... + n per producer).
	uint64_t want_n = 0, want_sum = 0, got_n = 0, got_sum = 0;
	for (uint64_t n : produced) {
		want_n += n;
		want_sum += n * (n + 1) / 2;
	}
	for (int c = 0; c < ncons; c++) {
		got_n += consumed_count[c];
		got_sum += consumed_sum[c];
	}
	if (got_n != want_n || got_sum != want_sum)
		ctx.fail("buffer: %" PRIu64 " items produced, %" PRIu64
		    " consumed (sequence sums %" PRIu64 " vs %" PRIu64 ")",
		    want_n, got_n, want_sum, got_sum);
}

// --- msleep/wakeup ------------------------------------------------------------

// Tokens on a few channels: givers add a token under the interlock and wake
// one or all sleepers; takers msleep (with a random timeout, sometimes
// none) until a token is there.  Checks: msleep returns only 0,
// EWOULDBLOCK (and only with a timeout) or EINTR (and only when
// interrupted); tokens are conserved; a self-interrupted interruptible
// sleep returns EINTR at once.
constexpr int kChannels = 4;

struct channel {
	usmp::mutex m{"stress channel", "stress channel", LOCK_DUPOK};
	uint64_t tokens = 0;   // protected by m
	uint64_t given = 0;    // protected by m
	uint64_t taken = 0;    // protected by m
};

void
run_sleep(context &ctx)
{
	std::vector<std::unique_ptr<channel>> ch;
	for (int i = 0; i < kChannels; i++)
		ch.push_back(std::make_unique<channel>());
	int nworkers = worker_count(ctx, 2);
	if (nworkers % 2)
		nworkers++;
	std::atomic<int> takers_left{nworkers / 2};

	run_workers(ctx, nworkers, [&](int id, rng &r) {
		uint64_t batch = 0;
		bool giver = id % 2 == 0;
		while (ctx.running() || (giver && takers_left.load() > 0)) {
			channel &c = *ch[r.below(kChannels)];
			if (giver) {
				c.m.lock();
				c.tokens++;
				c.given++;
				c.m.unlock();
				if (r.one_in(2))
					wakeup_one(&c);
				else
					wakeup(&c);
				if (r.one_in(4))
					thread_yield();
			} else {
				c.m.lock();
				if (r.one_in(64)) {
					thread_interrupt(curthread());
					int e = msleep(&c, c.m, PCATCH, "stress intr",
					    1s);
					thread_interrupt_clear();
					if (e != EINTR)
						ctx.fail("sleep: an interrupted "
						    "PCATCH msleep returned %d, not "
						    "EINTR", e);
				}
				while (c.tokens == 0 && ctx.running()) {
					bool timed = !r.one_in(4);
					auto timo = timed ? std::chrono::microseconds(
					    50 + r.below(2000)) : 0us;
					int e = msleep(&c, c.m, 0, "stress token",
					    timo);
					if (e != 0 && !(e == EWOULDBLOCK && timed))
						ctx.fail("sleep: msleep returned %d "
						    "(timeout %s)", e,
						    timed ? "set" : "none");
				}
				if (c.tokens > 0) {
					c.tokens--;
					c.taken++;
				}
				c.m.unlock();
			}
			if (++batch == kOpBatch) {
				ctx.add_ops(batch);
				batch = 0;
			}
		}
		if (!giver)
			takers_left.fetch_sub(1);
		ctx.add_ops(batch);
	});

	for (int i = 0; i < kChannels; i++) {
		channel &c = *ch[i];
		if (c.given != c.taken + c.tokens)
			ctx.fail("sleep: channel %d: %" PRIu64 " tokens given, %"
			    PRIu64 " taken, %" PRIu64 " left", i, c.given,
			    c.taken, c.tokens);
	}
}

} // namespace

USMP_STRESS_SCENARIO("condvar",
    "condvar ping-pong pairs and a bounded buffer: no lost wakeup, FIFO kept",
    run_condvar);
USMP_STRESS_SCENARIO("sleep",
    "msleep/wakeup with timeouts and interrupts: results and tokens checked",
    run_sleep);

} // namespace usmp::stress

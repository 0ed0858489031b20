// locks: condvar ping-pong, sx read-mostly throughput, and uncontended
// lock+unlock of the lock types that mutex.cc does not cover (issue 3).
//
// condvar_pingpong: one iteration = one round trip: A sets the turn and
//   signals, B (waiting for it) sets it back and signals, A wakes.  usmp:
//   two green threads of a one-CPU machine with usmp::mutex and
//   usmp::condvar; boost_fiber: two fibers of one OS thread (round_robin)
//   with boost::fibers::mutex and condition_variable; std: two OS threads
//   with std::mutex and std::condition_variable.  So usmp and Boost.Fiber
//   each run the pair on one OS thread, with no second OS thread of theirs
//   spinning beside it (a second usmp CPU would idle-spin, as Boost's
//   work_stealing does, and take a core from the pair on this 2-core VM);
//   both pay the same Boost.Context jump per switch.  Both sides take the
//   lock for real: usmp's wait and signal go through the sleep queue, its
//   chain lock and the run-queue lock, as any usmp condvar does (the
//   wakeup is a same-CPU runnext handoff, sched/sched_ule.cc step 7).
//   Target: usmp <= 0.3x Boost.Fiber.
// sx_read_mostly: one iteration = 4 threads doing 25,000 operations each
//   on a shared 8-word record, one in 100 an exclusive update of every
//   word, the rest a shared read of all of it (a reader that sees the words
//   differ reports an error).  usmp: 4 green threads on 2 CPUs with
//   usmp::sx; std_shared_mutex: 4 OS threads with std::shared_mutex.
//   Boost.Fiber has no shared mutex, so no fiber peer.  For information.
// sema_uncontended, sx_uncontended, rwlock_uncontended: one acquire and
//   release per iteration, no other thread: usmp::sema (wait+post) beside
//   std::binary_semaphore (acquire+release); usmp::sx and usmp::rwlock
//   exclusive beside std::shared_mutex exclusive.  For information.

#include "apps/bench/bench.h"

#include <boost/fiber/all.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <semaphore>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "sync/condvar.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/sema.h"
#include "sync/sx.h"

namespace usmp_bench {
namespace {

constexpr int rm_threads = 4;
constexpr int rm_ops_per_thread = 25000;
constexpr int rm_write_every = 100;
constexpr int rm_words = 8;

usmp::machine_config
two_cpus()
{
	usmp::machine_config cfg;
	cfg.ncpus = 2;
	return cfg;
}

const machine_spec locks_machine = {"locks: 2 CPUs", two_cpus()};

usmp::machine_config
one_cpu()
{
	usmp::machine_config cfg;
	cfg.ncpus = 1;
	return cfg;
}

const machine_spec pingpong_machine = {"condvar ping-pong: 1 CPU", one_cpu()};

// ---- condvar_pingpong.

// The turn protocol shared by the three systems: 0 = A's move, 1 = B's
// move, 2 = B must leave.
template <class Lock, class Cv>
void
pingpong_b(Lock &m, Cv &cv, int &turn)
{
	std::unique_lock<Lock> g(m);
	for (;;) {
		cv.wait(g, [&] { return turn != 0; });
		if (turn == 2)
			return;
		turn = 0;
		cv.notify_one();
	}
}

template <class Lock, class Cv>
void
pingpong_a(benchmark::State &state, Lock &m, Cv &cv, int &turn)
{
	std::unique_lock<Lock> g(m);
	for (auto _ : state) {
		turn = 1;
		cv.notify_one();
		cv.wait(g, [&] { return turn == 0; });
	}
	turn = 2;
	cv.notify_one();
}

void
condvar_pingpong_usmp(benchmark::State &state)
{
	if (!use_machine(state, pingpong_machine))
		return;
	usmp::thread_attr attr;
	attr.name = "condvar pingpong A";
	attr.cpu = 0;
	run_on_green_thread(state, attr, [&state] {
		usmp::mutex m("pingpong");
		usmp::condvar cv("pingpong");
		int turn = 0;
		usmp::thread_attr battr;
		battr.name = "condvar pingpong B";
		battr.cpu = 0;
		usmp::green_thread b(battr, [&] { pingpong_b(m, cv, turn); });
		pingpong_a(state, m, cv, turn);
		b.join();
	});
}

void
condvar_pingpong_boost_fiber(benchmark::State &state)
{
	use_no_machine();
	run_on_fiber([&state] {
		boost::fibers::mutex m;
		boost::fibers::condition_variable cv;
		int turn = 0;
		boost::fibers::fiber b([&] { pingpong_b(m, cv, turn); });
		pingpong_a(state, m, cv, turn);
		b.join();
	});
}

void
condvar_pingpong_std(benchmark::State &state)
{
	use_no_machine();
	std::mutex m;
	std::condition_variable cv;
	int turn = 0;
	std::thread b([&] { pingpong_b(m, cv, turn); });
	pingpong_a(state, m, cv, turn);
	b.join();
}

// ---- sx_read_mostly.

// The shared record: every word equal after each update.
struct record {
	long w[rm_words] = {};
};

// One thread's share of an iteration; false if a read saw a torn record.
template <class Lock>
bool
read_mostly_worker(Lock &l, record &r, int seed)
{
	bool ok = true;
	for (int k = 0; k < rm_ops_per_thread; k++) {
		if ((k + seed) % rm_write_every == 0) {
			std::unique_lock<Lock> g(l);
			for (long &w : r.w)
				w++;
		} else {
			std::shared_lock<Lock> g(l);
			long first = r.w[0];
			for (long w : r.w)
				ok &= w == first;
		}
	}
	return ok;
}

void
report_read_mostly(benchmark::State &state, bool ok)
{
	if (!ok)
		state.SkipWithError("a reader saw a torn record");
	state.counters["ops_per_s"] = benchmark::Counter(
	    static_cast<double>(rm_threads) * rm_ops_per_thread,
	    benchmark::Counter::kIsIterationInvariantRate);
}

void
sx_read_mostly_usmp(benchmark::State &state)
{
	if (!use_machine(state, locks_machine))
		return;
	std::atomic<bool> ok{true};
	usmp::thread_attr attr;
	attr.name = "sx read mostly";
	run_on_green_thread(state, attr, [&] {
		usmp::sx l("bench record");
		record r;
		for (auto _ : state) {
			std::vector<usmp::green_thread> ts;
			ts.reserve(rm_threads);
			for (int i = 0; i < rm_threads; i++)
				ts.emplace_back([&, i] {
					if (!read_mostly_worker(l, r, i * 37))
						ok = false;
				});
			for (auto &t : ts)
				t.join();
		}
	});
	report_read_mostly(state, ok.load());
}

void
sx_read_mostly_std_shared_mutex(benchmark::State &state)
{
	use_no_machine();
	std::atomic<bool> ok{true};
	std::shared_mutex l;
	record r;
	for (auto _ : state) {
		std::vector<std::thread> ts;
		ts.reserve(rm_threads);
		for (int i = 0; i < rm_threads; i++)
			ts.emplace_back([&, i] {
				if (!read_mostly_worker(l, r, i * 37))
					ok = false;
			});
		for (auto &t : ts)
			t.join();
	}
	report_read_mostly(state, ok.load());
}

// ---- Uncontended acquire+release.

template <class Acquire, class Release>
void
uncontended_loop(benchmark::State &state, Acquire acquire, Release release)
{
	for (auto _ : state) {
		acquire();
		benchmark::ClobberMemory();
		release();
	}
}

template <class Body>
void
on_green_thread(benchmark::State &state, const char *name, Body body)
{
	if (!use_machine(state, locks_machine))
		return;
	usmp::thread_attr attr;
	attr.name = name;
	run_on_green_thread(state, attr, body);
}

void
sema_uncontended_usmp(benchmark::State &state)
{
	on_green_thread(state, "sema uncontended", [&state] {
		usmp::sema s(1, "bench sema");
		uncontended_loop(state, [&] { s.wait(); }, [&] { s.post(); });
	});
}

void
sema_uncontended_std(benchmark::State &state)
{
	use_no_machine();
	std::binary_semaphore s(1);
	uncontended_loop(state, [&] { s.acquire(); }, [&] { s.release(); });
}

void
sx_uncontended_usmp(benchmark::State &state)
{
	on_green_thread(state, "sx uncontended", [&state] {
		usmp::sx l("bench sx");
		uncontended_loop(state, [&] { l.lock(); }, [&] { l.unlock(); });
	});
}

void
rwlock_uncontended_usmp(benchmark::State &state)
{
	on_green_thread(state, "rwlock uncontended", [&state] {
		usmp::rwlock l("bench rwlock");
		uncontended_loop(state, [&] { l.lock(); }, [&] { l.unlock(); });
	});
}

void
shared_mutex_uncontended(benchmark::State &state)
{
	use_no_machine();
	std::shared_mutex l;
	uncontended_loop(state, [&] { l.lock(); }, [&] { l.unlock(); });
}

} // namespace

void
register_locks()
{
	timed("condvar_pingpong", "usmp", condvar_pingpong_usmp);
	timed("condvar_pingpong", "boost_fiber", condvar_pingpong_boost_fiber);
	timed("condvar_pingpong", "std", condvar_pingpong_std);
	timed("sx_read_mostly", "usmp", sx_read_mostly_usmp)
	    ->Unit(benchmark::kMillisecond);
	timed("sx_read_mostly", "std_shared_mutex", sx_read_mostly_std_shared_mutex)
	    ->Unit(benchmark::kMillisecond);
	timed("sema_uncontended", "usmp", sema_uncontended_usmp);
	timed("sema_uncontended", "std_semaphore", sema_uncontended_std);
	timed("sx_uncontended", "usmp", sx_uncontended_usmp);
	timed("sx_uncontended", "std_shared_mutex", shared_mutex_uncontended);
	timed("rwlock_uncontended", "usmp", rwlock_uncontended_usmp);
	timed("rwlock_uncontended", "std_shared_mutex", shared_mutex_uncontended);
	add_ratio({"condvar_pingpong", "usmp", "boost_fiber", 0.3});
	add_ratio({"condvar_pingpong", "usmp", "std", 0});
	add_ratio({"sx_read_mostly", "usmp", "std_shared_mutex", 0});
	add_ratio({"sema_uncontended", "usmp", "std_semaphore", 0});
	add_ratio({"sx_uncontended", "usmp", "std_shared_mutex", 0});
	add_ratio({"rwlock_uncontended", "usmp", "std_shared_mutex", 0});
}

} // namespace usmp_bench

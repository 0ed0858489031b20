// witness: the cost of WITNESS (issue 4), in a build with it compiled in.
//
// witness_nested8: one iteration = 8 nested usmp::mutex lock()s and their 8
//   unlock()s, on a green thread, while a second green thread on the other
//   CPU does the same loop on its own 8 mutexes of the same 8 types (so
//   both share the witness of each type, as a real program's locks would).
//   "off": WITNESS switched off at run time (witness_set_mode(off));
//   "on": checking (warn mode), every order already known after the first
//   pass.  Target: on <= 1.5x off (the peers measured on this loop: Abseil's
//   deadlock detection 4.2-4.4x, TSan 10-13x, Helgrind 390-510x).
//   "on_alone" / "off_alone": the same loop with no peer on the other
//   CPU.  on over on_alone is the scaling figure: WITNESS's known-order
//   path shares only read-mostly data (the order matrix) between CPUs, so
//   a second CPU running the same lock types should not slow the first
//   (target <= 1.2x; off over off_alone shows what the hardware alone
//   costs, e.g. two hyperthreads of one core).
// witness_uncontended: one lock+unlock of one mutex, WITNESS off / on (no
//   target; the price of the held-list bookkeeping alone).
#include "apps/bench/bench.h"

#include <atomic>
#include <memory>

#include "sync/mutex.h"
#include "sync/witness.h"

namespace usmp_bench {
namespace {

usmp::machine_config
two_cpus()
{
	usmp::machine_config cfg;
	cfg.ncpus = 2;
	return cfg;
}

const machine_spec witness_machine = {"witness: 2 CPUs", two_cpus()};

const char *const nested_types[8] = {"bench w0", "bench w1", "bench w2",
	"bench w3", "bench w4", "bench w5", "bench w6", "bench w7"};

struct nest {
	std::unique_ptr<usmp::mutex> m[8];
	nest()
	{
		for (int i = 0; i < 8; i++)
			m[i] = std::make_unique<usmp::mutex>(nested_types[i]);
	}
	void pass()
	{
		for (int i = 0; i < 8; i++)
			m[i]->lock();
		benchmark::ClobberMemory();
		for (int i = 7; i >= 0; i--)
			m[i]->unlock();
	}
};

void
nested8(benchmark::State &state, usmp::witness_mode mode, bool with_peer)
{
	if (!use_machine(state, witness_machine))
		return;
	usmp::witness_mode old = usmp::witness_set_mode(mode);
	usmp::thread_attr attr;
	attr.name = "witness nested8";
	attr.cpu = 0;
	run_on_green_thread(state, attr, [&state, with_peer] {
		std::atomic<bool> stop{false};
		usmp::thread_attr other;
		other.name = "witness nested8 peer";
		other.cpu = 1;
		usmp::green_thread peer(other, [&stop, with_peer] {
			nest n;
			while (with_peer && !stop.load(std::memory_order_relaxed))
				n.pass();
		});
		nest n;
		n.pass(); // orders learned outside the timed loop
		for (auto _ : state)
			n.pass();
		stop.store(true, std::memory_order_relaxed);
		peer.join();
	});
	usmp::witness_set_mode(old);
}

void
nested8_off(benchmark::State &state)
{
	nested8(state, usmp::witness_mode::off, true);
}

void
nested8_on(benchmark::State &state)
{
	nested8(state, usmp::witness_mode::warn, true);
}

void
nested8_off_alone(benchmark::State &state)
{
	nested8(state, usmp::witness_mode::off, false);
}

void
nested8_on_alone(benchmark::State &state)
{
	nested8(state, usmp::witness_mode::warn, false);
}

void
uncontended(benchmark::State &state, usmp::witness_mode mode)
{
	if (!use_machine(state, witness_machine))
		return;
	usmp::witness_mode old = usmp::witness_set_mode(mode);
	usmp::thread_attr attr;
	attr.name = "witness uncontended";
	run_on_green_thread(state, attr, [&state] {
		usmp::mutex m("bench witness uncontended");
		for (auto _ : state) {
			m.lock();
			benchmark::ClobberMemory();
			m.unlock();
		}
	});
	usmp::witness_set_mode(old);
}

void
uncontended_off(benchmark::State &state)
{
	uncontended(state, usmp::witness_mode::off);
}

void
uncontended_on(benchmark::State &state)
{
	uncontended(state, usmp::witness_mode::warn);
}

} // namespace

void
register_witness()
{
	timed("witness_nested8", "off", nested8_off);
	timed("witness_nested8", "on", nested8_on);
	timed("witness_nested8", "off_alone", nested8_off_alone);
	timed("witness_nested8", "on_alone", nested8_on_alone);
	timed("witness_uncontended", "off", uncontended_off);
	timed("witness_uncontended", "on", uncontended_on);
	add_ratio({"witness_nested8", "on", "off", 1.5});
	add_ratio({"witness_nested8", "on", "on_alone", 1.2});
	add_ratio({"witness_nested8", "off", "off_alone", 0});
	add_ratio({"witness_uncontended", "on", "off", 0});
}

} // namespace usmp_bench

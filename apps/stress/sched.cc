// Scheduler scenario: a migration and pinning storm.
//
// Many more threads than CPUs yield, sleep briefly, spin (long enough for
// the hardclock to preempt them), pin themselves with sched_pin() and bind
// themselves to random CPUs with sched_bind(), while idle CPUs steal and the
// balancer moves work.  A pinned thread must stay on its CPU across yields,
// sleeps and preemptions (a pinned thread is woken where it slept), and a
// bound one must run on the CPU it asked for.
#include <chrono>

#include "apps/stress/stress.h"
#include "apps/stress/workers.h"
#include "runtime/thread.h"
#include "sched/sched.h"

namespace usmp::stress {
namespace {

// Busy for about `us` microseconds: the slice may end and full preemption
// may switch us out in the middle.
void
spin_for(std::chrono::microseconds us)
{
	auto end = std::chrono::steady_clock::now() + us;
	while (std::chrono::steady_clock::now() < end)
		__asm__ __volatile__("" ::: "memory");
}

void
run_migrate(context &ctx)
{
	int ncpus = ctx.ncpus();
	run_workers(ctx, worker_count(ctx), [&](int id, rng &r) {
		uint64_t batch = 0;
		while (ctx.running()) {
			switch (r.below(5)) {
			case 0: { // pinned across yields, sleeps, preemptions
				sched_pin();
				int cpu = curcpu();
				for (uint32_t k = r.below(4); k > 0; k--) {
					if (r.one_in(4))
						thread_sleep(std::chrono::microseconds(
						    r.below(200)));
					else
						thread_yield();
					spin_for(std::chrono::microseconds(
					    r.below(300)));
					if (curcpu() != cpu)
						ctx.fail("migrate: worker %d pinned on "
						    "cpu%d now runs on cpu%d", id, cpu,
						    curcpu());
				}
				sched_unpin();
				break;
			}
			case 1: { // bound to a random CPU
				int cpu = int(r.below(uint32_t(ncpus)));
				int e = sched_bind(cpu);
				if (e != 0)
					ctx.fail("migrate: sched_bind(%d) returned %d",
					    cpu, e);
				for (uint32_t k = r.below(4) + 1; k > 0; k--) {
					if (curcpu() != cpu)
						ctx.fail("migrate: worker %d bound to "
						    "cpu%d runs on cpu%d", id, cpu,
						    curcpu());
					if (r.one_in(2))
						thread_yield();
					else
						spin_for(std::chrono::microseconds(
						    r.below(200)));
				}
				sched_unbind();
				break;
			}
			case 2:
				thread_yield();
				break;
			case 3:
				thread_sleep(std::chrono::microseconds(r.below(500)));
				break;
			default:
				spin_for(std::chrono::microseconds(r.below(200)));
				break;
			}
			if (++batch == kOpBatch / 8) {
				ctx.add_ops(batch);
				batch = 0;
			}
		}
		ctx.add_ops(batch);
	});
}

} // namespace

USMP_STRESS_SCENARIO("migrate",
    "migration and pinning storm: pinned and bound threads never move",
    run_migrate);

} // namespace usmp::stress

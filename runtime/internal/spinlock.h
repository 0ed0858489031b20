// Private to runtime/, sched/ and sync/: the raw spin lock under the scheduler.
//
// A spinlock is the bare owner word that FreeBSD's MTX_SPIN mutexes wrap: no
// WITNESS, no profiling, no recursion.  The run-queue locks, the thread
// container locks (td_lock) and blocked_lock are spinlocks.  usmp::spin_mutex
// (sync/) is the public, checked lock built on the same spinlock_enter().
//
// Protocol: the caller is inside a spinlock section (spinlock_enter(), which
// implies a critical section) for as long as it holds the lock, so that no
// preemption or simulated interrupt can run on this CPU and spin on a lock the
// CPU itself holds.  lock() uses acquire ordering and unlock() release
// ordering; both pair with each other across CPUs.
#pragma once

#include <sched.h>

#include <atomic>
#include <cstdint>

namespace usmp {

// The deterministic simulation (runtime/sim.h, runtime/internal/sim.h),
// declared here to keep this header light.
namespace sim_detail {
extern bool g_sim_on;
} // namespace sim_detail
void sim_spin() noexcept;

// One step of a spin-wait (cpu_spinwait(9) with a userspace twist): a
// kernel spinner waits for a holder that cannot lose its CPU; ours can,
// since the host deschedules OS threads at will and tests run 8 CPUs on 2
// cores.  So after about 10 us of pause instructions, every further step
// gives the core away (sched_yield) so that a descheduled holder can run.
// Simulated, every CPU shares one OS thread: each step hands it back to the
// simulation, or the holder would never run.
inline void
cpu_spinwait(unsigned &n) noexcept
{
	if (__builtin_expect(sim_detail::g_sim_on, false))
		sim_spin();
	else if (++n < 1024)
		__builtin_ia32_pause();
	else
		sched_yield();
}

struct spinlock {
	// sl_word: 0 = free, 1 = held.  (a) acquire on lock, release on unlock.
	std::atomic<uint32_t> sl_word{0};

	void lock() noexcept
	{
		for (unsigned n = 0;;) {
			if (sl_word.exchange(1, std::memory_order_acquire) == 0)
				return;
			while (sl_word.load(std::memory_order_relaxed) != 0)
				cpu_spinwait(n);
		}
	}
	bool try_lock() noexcept
	{
		return sl_word.load(std::memory_order_relaxed) == 0 &&
		    sl_word.exchange(1, std::memory_order_acquire) == 0;
	}
	void unlock() noexcept { sl_word.store(0, std::memory_order_release); }
	bool held() const noexcept
	{
		return sl_word.load(std::memory_order_relaxed) != 0;
	}
};

} // namespace usmp

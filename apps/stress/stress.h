// usmp-stress: the scenario interface.
//
// A scenario is a function that starts green threads which hammer one part of
// the runtime while checking an invariant, until the context says stop.  The
// driver (main.cc) boots the machine, runs each chosen scenario in turn,
// shows progress, and sums up.  A scenario file registers its scenarios with
// USMP_STRESS_SCENARIO at static-initialisation time; the executable is one
// program, so registration order is link order and the driver sorts by name.
//
// Protocol between a scenario and the driver:
//   - the scenario's run() is called on a green thread ("stress main") and
//     must return only after every thread it started has finished;
//   - its workers loop while ctx.running(), and report work done with
//     ctx.add_ops(n) in batches (a shared atomic per batch, not per op);
//   - a broken invariant is reported with ctx.fail(...), which keeps the
//     first message, marks the run failed and makes running() false;
//   - all randomness comes from ctx.rng(stream): the seed decides every
//     choice the scenario makes (which lock, how long, when to pin), so a
//     failing seed replays the same choices; the interleaving itself is the
//     real scheduler's (deterministic replay is the simulator's job).
#pragma once

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <string>
#include <vector>

namespace usmp::stress {

// splitmix64: a small, well-mixed generator; one per worker thread.
class rng {
public:
	explicit rng(uint64_t seed) noexcept : s_(seed) {}
	uint64_t next() noexcept
	{
		uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		return z ^ (z >> 31);
	}
	// Uniform in [0, n), n > 0 (Lemire's multiply-shift; bias < 2^-32
	// for the small n used here).
	uint32_t below(uint32_t n) noexcept
	{
		return uint32_t((uint64_t(uint32_t(next())) * n) >> 32);
	}
	bool one_in(uint32_t n) noexcept { return below(n) == 0; }

private:
	uint64_t s_;
};

class context {
public:
	context(const char *scenario, uint64_t seed, int ncpus,
	    uint64_t op_budget) noexcept;

	const char *scenario() const noexcept { return scenario_; }
	uint64_t seed() const noexcept { return seed_; }
	int ncpus() const noexcept { return ncpus_; }

	// Workers keep going while this is true.
	bool running() const noexcept
	{
		return !stop_.load(std::memory_order_relaxed);
	}
	// Count n operations done; ends the run when the budget is spent.
	void add_ops(uint64_t n) noexcept;
	uint64_t ops() const noexcept
	{
		return ops_.load(std::memory_order_relaxed);
	}

	// The invariant broke: keep the first message (printf format), stop.
	void fail(const char *fmt, ...) noexcept
	    __attribute__((format(printf, 2, 3)));
	bool failed() const noexcept
	{
		return failed_.load(std::memory_order_acquire);
	}
	const char *failure() const noexcept { return failure_; }

	// The generator for worker `stream` (0, 1, ...): a function of the
	// seed, the scenario's name and the stream only.
	rng make_rng(uint64_t stream) const noexcept;

	// Called by the driver: stop at the deadline.
	void stop() noexcept { stop_.store(true, std::memory_order_relaxed); }

private:
	const char *scenario_;
	uint64_t seed_;
	int ncpus_;
	uint64_t op_budget_; // 0: no budget (the driver's deadline stops it)
	std::atomic<bool> stop_{false};
	std::atomic<uint64_t> ops_{0};
	std::atomic<bool> failed_{false};
	std::atomic<bool> failing_{false};
	char failure_[512] = {};
};

struct scenario {
	const char *name;
	const char *summary;
	void (*run)(context &ctx);
	// Off unless named: scenarios that exist to fail (the deliberate
	// order reversal) or need something not always there.
	bool by_default = true;
};

std::vector<scenario> &scenarios() noexcept;

struct registrar {
	explicit registrar(const scenario &s) { scenarios().push_back(s); }
};

// A worker's batch of operations before it touches the shared counter.
inline constexpr uint64_t kOpBatch = 64;

} // namespace usmp::stress

#define USMP_STRESS_CAT2(a, b) a##b
#define USMP_STRESS_CAT(a, b) USMP_STRESS_CAT2(a, b)
#define USMP_STRESS_SCENARIO(...)                                          \
	static const ::usmp::stress::registrar USMP_STRESS_CAT(               \
	    usmp_stress_reg_, __LINE__)(::usmp::stress::scenario{__VA_ARGS__})

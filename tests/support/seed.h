// Test support, for tests/ only: the seed of a randomized (stress) test.
//
//     TEST_CASE("mutex handoff under preemption", "[stress]") {
//         USMP_TEST_SEED(seed);  // USMP_SEED from the environment, or random
//         std::mt19937_64 rng(seed);
//         ...
//     }
//
// USMP_TEST_SEED declares `const std::uint64_t seed` and attaches
// "seed=N (replay with USMP_SEED=N)" to every failure reported in the rest of
// the scope (a Catch2 INFO).  The same line is also written to stderr when the
// seed is chosen, so that a run that dies outright (a panic, a signal) still
// names it: ctest --output-on-failure shows it.  Replay a failure with
//     USMP_SEED=N ctest --test-dir build -R <test> --output-on-failure
// Derive independent streams from one seed with derive_seed(seed, k), so that
// one number replays the whole test.
#pragma once

#include <cstdint>
#include <string>

namespace usmp::test {

// USMP_SEED (decimal or 0x-hex) if set, else a fresh random seed.  Writes the
// replay line to stderr.  Throws std::invalid_argument for a bad USMP_SEED.
std::uint64_t test_seed();

// "seed=N (replay with USMP_SEED=N)"
std::string seed_message(std::uint64_t seed);

// An independent seed for stream k of a test (splitmix64 of seed and k).
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t k) noexcept;

} // namespace usmp::test

#define USMP_TEST_SEED(var)                                                  \
	const std::uint64_t var = ::usmp::test::test_seed();                 \
	INFO(::usmp::test::seed_message(var))

// Test support: seeds of randomized tests (see seed.h).
#include "support/seed.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>

namespace usmp::test {

std::uint64_t
test_seed()
{
	std::uint64_t seed;
	const char *env = std::getenv("USMP_SEED");
	if (env != nullptr && *env != '\0') {
		char *end = nullptr;
		errno = 0;
		unsigned long long v = std::strtoull(env, &end, 0);
		if (errno != 0 || end == env || *end != '\0')
			throw std::invalid_argument(
			    std::string("USMP_SEED is not a number: ") + env);
		seed = v;
	} else {
		std::random_device rd;
		seed = (std::uint64_t(rd()) << 32) ^ rd() ^
		    std::uint64_t(std::chrono::steady_clock::now()
			    .time_since_epoch()
			    .count());
	}
	std::fprintf(stderr, "%s\n", seed_message(seed).c_str());
	return seed;
}

std::string
seed_message(std::uint64_t seed)
{
	std::string n = std::to_string(seed);
	return "seed=" + n + " (replay with USMP_SEED=" + n + ")";
}

std::uint64_t
derive_seed(std::uint64_t seed, std::uint64_t k) noexcept
{
	std::uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

} // namespace usmp::test

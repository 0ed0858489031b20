// Mutex pools (mtx_pool(9)): a power-of-two array of sleep mutexes, one of
// which an address hashes to (Fibonacci hashing), for structures too many or
// too small to carry a mutex each.  Pool mutexes are leaf locks (one may be
// the interlock of msleep()); all share one name, so WITNESS cannot order
// two of them.
#pragma once

#include <cstddef>

#include "sync/mutex.h"

namespace usmp {

// Locking key: (c) constant after construction.
class mtx_pool {
public:
	// A pool of `size` mutexes (rounded up to a power of two) named
	// `name`.  Context: any (it allocates).
	explicit mtx_pool(std::size_t size, const char *name = "sleep mtxpool",
	    unsigned opts = LOCK_DUPOK) noexcept;
	~mtx_pool();
	mtx_pool(const mtx_pool &) = delete;
	mtx_pool &operator=(const mtx_pool &) = delete;

	// mtx_pool_find(): the mutex ptr hashes to.
	mutex &find(const void *ptr) noexcept
	{
		std::size_t h = (reinterpret_cast<std::uintptr_t>(ptr) *
				    0x9E3779B97F4A7C15ull) >> mp_shift;
		return *reinterpret_cast<mutex *>(mp_mutexes +
		    (h & mp_mask) * sizeof(mutex));
	}
	// mtx_pool_alloc(): the next mutex, round robin (unlocked counter).
	mutex &alloc() noexcept;
	std::size_t size() const noexcept { return mp_mask + 1; }

private:
	unsigned char *mp_mutexes;  // (c) mp_mask + 1 mutexes
	std::size_t mp_mask;        // (c)
	int mp_shift;               // (c) 64 - log2(size)
	unsigned mp_next = 0;       // racy round robin
};

// The default pool: 1024 sleep mutexes named "sleep mtxpool".
extern mtx_pool *const mtxpool_sleep;

// Context: as mutex::lock() / unlock().
inline mutex &
mtx_pool_find(mtx_pool *pool, const void *ptr) noexcept
{
	return pool->find(ptr);
}
inline void
mtx_pool_lock(mtx_pool *pool, const void *ptr,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept
{
	pool->find(ptr).lock(file, line);
}
inline void
mtx_pool_unlock(mtx_pool *pool, const void *ptr,
    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept
{
	pool->find(ptr).unlock(file, line);
}
inline mutex &
mtx_pool_alloc(mtx_pool *pool) noexcept
{
	return pool->alloc();
}

} // namespace usmp

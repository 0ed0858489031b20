// Mutex pools (kern_mtxpool.c).
#include "sync/mtx_pool.h"

#include <new>

#include "runtime/panic.h"

namespace usmp {

mtx_pool::mtx_pool(std::size_t size, const char *name, unsigned opts) noexcept
{
	std::size_t n = 1;
	int bits = 0;
	while (n < size) {
		n <<= 1;
		bits++;
	}
	mp_mask = n - 1;
	mp_shift = 64 - bits;
	if (bits == 0)
		mp_shift = 63; // one mutex: any hash works
	mp_mutexes = static_cast<unsigned char *>(
	    ::operator new(n * sizeof(mutex), std::align_val_t{alignof(mutex)},
		std::nothrow));
	if (mp_mutexes == nullptr)
		panic("mtx_pool: out of memory for %zu mutexes \"%s\"", n, name);
	for (std::size_t i = 0; i < n; i++)
		::new (mp_mutexes + i * sizeof(mutex)) mutex(name, nullptr,
		    opts | LOCK_NEW);
}

mtx_pool::~mtx_pool()
{
	for (std::size_t i = 0; i <= mp_mask; i++)
		reinterpret_cast<mutex *>(mp_mutexes + i * sizeof(mutex))->~mutex();
	::operator delete(mp_mutexes, std::align_val_t{alignof(mutex)});
}

mutex &
mtx_pool::alloc() noexcept
{
	unsigned i = __atomic_fetch_add(&mp_next, 1, __ATOMIC_RELAXED);
	return *reinterpret_cast<mutex *>(mp_mutexes + (i & mp_mask) * sizeof(mutex));
}

namespace {
mtx_pool pool_sleep(1024, "sleep mtxpool");
} // namespace

mtx_pool *const mtxpool_sleep = &pool_sleep;

} // namespace usmp

// sema(9) (kern_sema.c): a value and a waiter count under a sleep mutex,
// waiters on a condvar.
//
// Protocol.  Every field is read and written under sema_mtx.  A waiter
// counts itself in sema_waiters and waits on sema_cv while the value is 0;
// post() increments the value and signals only when someone counted
// itself, under the same mutex, so a post can neither slip between a
// waiter's test and its sleep (the condvar releases sema_mtx atomically
// with respect to the signal) nor be lost.  A woken waiter tests the value
// again: another thread may have taken the unit first (trywait, or a
// waiter that had not slept yet), in which case it sleeps again.
//
// Destruction: sema_destroy() with a waiter counted is a panic (FreeBSD's
// KASSERT).  Afterwards the backing mutex is destroyed, and every call
// checks it first so that a use after destroy names the semaphore.
#include "sync/sema.h"

#include <cerrno>
#include <climits>

#include "runtime/machine.h"
#include "runtime/panic.h"

namespace usmp {

sema::sema(int value, const char *description, const char *file, int line) noexcept
    : sema_mtx("sema backing lock", description, LOCK_NOWITNESS | LOCK_QUIET,
	  file, line),
      sema_cv(description),
      sema_value(value)
{
	if (value < 0)
		panic("sema_init(): negative value %d for sema \"%s\" @ %s:%d",
		    value, description, file, line);
}

sema::~sema()
{
	if (sema_mtx.lo()->lo_flags & LO_INITIALIZED)
		destroy("~sema()", 0);
}

void
sema::check_live(const char *call, const char *file, int line) noexcept
{
	const lock_object *lo = sema_mtx.lo();
	if (__builtin_expect((lo->lo_flags & (LO_MAGIC_MASK | LO_INITIALIZED |
				 LO_DESTROYED)) != (LO_MAGIC | LO_INITIALIZED),
		0)) {
		if ((lo->lo_flags & LO_MAGIC_MASK) == LO_MAGIC &&
		    (lo->lo_flags & LO_DESTROYED))
			panic("%s of destroyed sema \"%s\" %p @ %s:%d", call,
			    sema_cv.description(), static_cast<void *>(this),
			    file, line);
		panic("%s of uninitialized sema %p @ %s:%d", call,
		    static_cast<void *>(this), file, line);
	}
}

void
sema::destroy(const char *file, int line) noexcept
{
	check_live("sema_destroy()", file, line);
	sema_mtx.lock(file, line);
	int waiters = sema_waiters;
	sema_mtx.unlock(file, line);
	if (waiters != 0)
		panic("sema_destroy(): sema \"%s\" %p destroyed with %d waiters "
		      "@ %s:%d",
		    sema_cv.description(), static_cast<void *>(this), waiters,
		    file, line);
	sema_mtx.destroy(file, line);
}

void
sema::post(const char *file, int line) noexcept
{
	check_live("sema_post()", file, line);
	sema_mtx.lock(file, line);
	if (__builtin_expect(sema_value == INT_MAX, 0))
		panic("sema_post(): sema \"%s\" %p value overflows @ %s:%d",
		    sema_cv.description(), static_cast<void *>(this), file, line);
	sema_value++;
	if (sema_waiters != 0)
		sema_cv.signal();
	sema_mtx.unlock(file, line);
}

void
sema::wait(const char *file, int line) noexcept
{
	check_live("sema_wait()", file, line);
	sema_mtx.lock(file, line);
	while (sema_value == 0) {
		sema_waiters++;
		sema_cv.wait(sema_mtx.lo(), file, line);
		sema_waiters--;
	}
	sema_value--;
	sema_mtx.unlock(file, line);
}

int
sema::timedwait(std::chrono::nanoseconds timo, const char *file, int line) noexcept
{
	check_live("sema_timedwait()", file, line);
	// The deadline, so that a wakeup that finds the unit gone (taken by
	// trywait or a thread that had not slept) does not restart the clock.
	uint64_t deadline = timo.count() > 0 ?
	    clock_ns() + static_cast<uint64_t>(timo.count()) : 0;
	sema_mtx.lock(file, line);
	int error = 0;
	while (sema_value == 0) {
		uint64_t now = clock_ns();
		if (deadline == 0 || now >= deadline) {
			error = EWOULDBLOCK;
			break;
		}
		sema_waiters++;
		(void)sema_cv.timedwait(sema_mtx.lo(),
		    std::chrono::nanoseconds(deadline - now), file, line);
		sema_waiters--;
	}
	if (error == 0)
		sema_value--;
	sema_mtx.unlock(file, line);
	return error;
}

bool
sema::trywait(const char *file, int line) noexcept
{
	check_live("sema_trywait()", file, line);
	sema_mtx.lock(file, line);
	bool took = sema_value > 0;
	if (took)
		sema_value--;
	sema_mtx.unlock(file, line);
	return took;
}

int
sema::value(const char *file, int line) noexcept
{
	return read_locked(sema_value, "sema_value()", file, line);
}

int
sema::waiters(const char *file, int line) noexcept
{
	return read_locked(sema_waiters, "sema_waiters()", file, line);
}

int
sema::read_locked(const int &field, const char *call, const char *file,
    int line) noexcept
{
	check_live(call, file, line);
	sema_mtx.lock(file, line);
	int v = field;
	sema_mtx.unlock(file, line);
	return v;
}

} // namespace usmp

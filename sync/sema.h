// sema(9): counting semaphores.
//
// A semaphore holds a count (its value).  post() adds one and wakes a
// waiter; wait() sleeps until the value is positive and takes one.  As in
// FreeBSD (kern_sema.c) it is a sleep mutex, a condvar and two counters,
// so a waiter sleeps on a sleep queue (no priority is lent: a semaphore
// has no owner) and Giant is dropped around the sleep by the condvar.
//
//     usmp::sema done(0, "io done");
//     ... start the work, whose completion calls done.post() ...
//     done.wait();
//
// It also has the shape of std::counting_semaphore (acquire, release,
// try_acquire, try_acquire_for), and of a Lockable (lock = wait, unlock =
// post, try_lock = trywait) for its use as a binary semaphore with
// std::scoped_lock / std::unique_lock.  It has no owner: any thread may
// post, and no WITNESS order is recorded for it.
//
// Locking key: (m) sema_mtx; (c) constant after init.
#pragma once

#include <chrono>

#include "sync/condvar.h"
#include "sync/mutex.h"

namespace usmp {

class sema {
public:
	// sema_init(): initial value >= 0 (panic otherwise).  Context: any.
	explicit sema(int value, const char *description = "sema",
	    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;
	// sema_destroy() unless destroy() was called.
	~sema();
	sema(const sema &) = delete;
	sema &operator=(const sema &) = delete;

	// sema_destroy(): panics if threads wait on it ("sema_destroy(): sema
	// \"<desc>\" ... with N waiters @ file:line").  Any later use panics.
	// Context: may block (briefly, on the backing mutex).
	void destroy(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// sema_post(): value + 1, and wake one waiter if any.  Panics if the
	// value would pass INT_MAX.  Context: may block briefly (the backing
	// mutex); a green thread or a foreign OS thread; not in a critical
	// section.
	void post(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	// sema_wait(): sleep until the value is positive, then take one.
	// Context: may sleep.
	void wait(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	// sema_timedwait(): as wait() but for at most timo (<= 0: no sleep, a
	// poll).  0 if one was taken, EWOULDBLOCK if the time ran out.
	// Spurious condvar wakeups do not extend the wait.  Context: may sleep.
	int timedwait(std::chrono::nanoseconds timo,
	    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept;
	// sema_trywait(): take one if the value is positive, never sleep.
	// Context: as post().
	bool trywait(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	// sema_value(): the value now (stale as soon as it returns).
	int value(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;
	const char *description() const noexcept { return sema_cv.description(); }
	// Threads counted as waiting now (tests, reports).  Context: as post().
	int waiters(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept;

	// std::counting_semaphore shape.
	void release(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		post(file, line);
	}
	void acquire(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		wait(file, line);
	}
	bool try_acquire(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		return trywait(file, line);
	}
	template <class Rep, class Period>
	bool try_acquire_for(const std::chrono::duration<Rep, Period> &d,
	    const char *file = __builtin_FILE(), int line = __builtin_LINE()) noexcept
	{
		return timedwait(std::chrono::duration_cast<std::chrono::nanoseconds>(d),
			   file, line) == 0;
	}

	// Lockable (a binary semaphore as a lock; no owner is checked).
	void lock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		wait(file, line);
	}
	bool try_lock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		return trywait(file, line);
	}
	void unlock(const char *file = __builtin_FILE(),
	    int line = __builtin_LINE()) noexcept
	{
		post(file, line);
	}

private:
	void check_live(const char *call, const char *file, int line) noexcept;
	// A field read under sema_mtx (value(), waiters()).
	int read_locked(const int &field, const char *call, const char *file,
	    int line) noexcept;

	mutex sema_mtx;       // (c) the backing lock
	condvar sema_cv;      // (c) waiters sleep here
	int sema_waiters = 0; // (m) threads in wait()/timedwait()
	int sema_value;       // (m)
};

} // namespace usmp

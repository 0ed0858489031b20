// Test support, for tests/ only: waiting for a condition, and holding a
// handler in place, shared by the interrupt-side tests (callouts, taskqueues,
// interrupt events).
//
//     REQUIRE(usmp::test::wait_for([&] { return runs == 1; }));
//
//     usmp::test::gate g;          // in the handler: g.pass(may_sleep)
//     g.close();                   // the next pass waits in the handler
//     ... fire / reset / enqueue ...
//     REQUIRE(usmp::test::wait_for([&] { return g.entered.load(); }));
//     g.open();                    // let it return
//
//     usmp::test::thread_taskqueue q("name", 2);   // a pool of 2 threads
//     taskqueue_enqueue(q.tq, &t);                  // freed at scope end
#pragma once

#include <atomic>
#include <chrono>
#include <thread>

#include <catch2/catch.hpp>

#include "interrupts/taskqueue.h"
#include "runtime/machine.h"
#include "runtime/thread.h"

namespace usmp::test {

// Wait until pred() or about 20 s; returns pred().  On a green thread it
// sleeps (so other threads run), elsewhere it sleeps the OS thread.  The
// bound only keeps a broken build from hanging the suite: tests assert the
// outcome, never the time it took.
template <class P>
bool
wait_for(P pred)
{
	using namespace std::chrono_literals;
	for (int i = 0; i < 20000 && !pred(); i++) {
		if (on_cpu())
			thread_sleep(1ms);
		else
			std::this_thread::sleep_for(1ms);
	}
	return pred();
}

// The same, for a green thread that may not sleep (WITNESS forbids
// sleeping with a mutex held): yield, so that other threads (a softclock's
// ithread) get the CPU.
template <class P>
bool
yield_until(P pred)
{
	uint64_t end = clock_ns() + 20000000000ull;
	while (!pred() && clock_ns() < end)
		thread_yield();
	return pred();
}

// Keep a handler inside its run: the handler calls pass(), which marks
// `entered` and waits while the gate is closed (spinning if the handler
// may not sleep, sleeping 1 ms at a time otherwise).  Open by default.
struct gate {
	std::atomic<bool> entered{false};
	std::atomic<bool> release{true};

	void close() noexcept
	{
		entered = false;
		release = false;
	}
	void open() noexcept { release = true; }
	void pass(bool may_sleep) noexcept
	{
		entered = true;
		while (!release.load()) {
			if (may_sleep)
				thread_sleep(std::chrono::milliseconds(1));
			else
				__builtin_ia32_pause();
		}
	}
};

// A taskqueue served by a pool of `nthreads` threads (taskqueue_create()
// with taskqueue_thread_enqueue, taskqueue_start_threads() at PWAIT), freed
// (taskqueue_free(): drained) when it goes out of scope.  Not movable: the
// queue's context is the address of `tq`.  On a green thread.
struct thread_taskqueue {
	taskqueue *tq = nullptr;

	thread_taskqueue(const char *name, int nthreads)
	{
		tq = taskqueue_create(name, taskqueue_thread_enqueue, &tq);
		REQUIRE(tq != nullptr);
		REQUIRE(taskqueue_start_threads(&tq, nthreads, PWAIT, name) == 0);
	}
	~thread_taskqueue() { taskqueue_free(tq); }
	thread_taskqueue(const thread_taskqueue &) = delete;
	thread_taskqueue &operator=(const thread_taskqueue &) = delete;
};

} // namespace usmp::test

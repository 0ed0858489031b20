// The fault handler (runtime/fault.cc): a stack overflow into a red zone is
// reported with the thread's name and id, the stack and the red zone, and
// other faults are reported as such -- by panic (SIGABRT), never a bare
// SIGSEGV.  Each case runs in a forked child (tests/support/death.h).
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "runtime/context.h"
#include "runtime/machine.h"
#include "runtime/segment.h"
#include "runtime/stack.h"
#include "runtime/thread.h"
#include "support/death.h"

using namespace usmp;

namespace {

// Recurse until the stack runs out (256 bytes a frame at least).
[[gnu::noinline]] int
recurse(int depth)
{
	volatile char pad[256];
	pad[0] = static_cast<char>(depth);
	if (depth > 100000000)
		return pad[0];
	return recurse(depth + 1) + pad[0];
}

// A pointer to an absurd address, hidden from the compiler's bounds checks.
volatile int *
wild(uintptr_t a)
{
	volatile int *p = reinterpret_cast<volatile int *>(a);
	asm volatile("" : "+r"(p));
	return p;
}

// Run recurse() on a raw context over a stack from stack_alloc(), owned by
// a struct thread with the given name and id (null name: no owner).
[[noreturn]] void
overflow_on_raw_context(const char *name, int tid)
{
	fault_init();
	stack *st = stack_alloc();
	if (st == nullptr)
		_exit(90);
	static thread td;
	if (name != nullptr) {
		std::snprintf(td.td_name, sizeof(td.td_name), "%s", name);
		td.td_tid = tid;
		st->st_owner = &td;
	}
	static context ctx;
	context_make(&ctx, st->st_lo, st->st_top, [](context) {
		recurse(0);
		_exit(91);
	});
	context_resume(&ctx);
	_exit(92);
}

void
require_reported_overflow(const test::death_result &r, const std::string &who)
{
	INFO(r.describe());
	CHECK(r.aborted()); // panic(), not a bare SIGSEGV
	CHECK(r.contains("stack overflow in thread " + who));
	CHECK(r.contains("red zone 0x"));
	CHECK(r.contains("(65536 bytes)"));
	CHECK_FALSE(r.contains("not a stack red zone"));
}

} // namespace

TEST_CASE("an overflow into the red zone names the thread (raw context)",
    "[fault][death]")
{
	auto r = test::run_death("overflow on a raw context",
	    [] { overflow_on_raw_context("victim 7", 4242); });
	require_reported_overflow(r, "\"victim 7\" (tid 4242)");
}

TEST_CASE("an overflow is reported with mprotect red zones too",
    "[fault][death]")
{
	auto r = test::run_death("overflow, mprotect red zones", [] {
		seg_set_redzone_method(false);
		stack_drain_all();
		overflow_on_raw_context("mprotected", 77);
	});
	require_reported_overflow(r, "\"mprotected\" (tid 77)");
}

TEST_CASE("an overflow on a stack without a thread still reports",
    "[fault][death]")
{
	auto r = test::run_death("overflow, no owner",
	    [] { overflow_on_raw_context(nullptr, 0); });
	require_reported_overflow(r, "\"(no thread)\" (tid -1)");
}

TEST_CASE("a green thread that recurses too deep is named in the report",
    "[fault][death][machine]")
{
	auto r = test::run_death("green thread overflow", [] {
		machine_config cfg;
		cfg.ncpus = 2;
		usmp::run(cfg, [] {
			thread_attr a;
			a.name = "deep recursion";
			green_thread t(a, [] { recurse(0); });
			t.join();
		});
		_exit(93);
	});
	INFO(r.describe());
	CHECK(r.aborted());
	CHECK(r.contains("stack overflow in thread \"deep recursion\" (tid "));
	CHECK(r.contains("red zone 0x"));
}

TEST_CASE("a wild pointer is reported as not a red zone", "[fault][death]")
{
	auto r = test::run_death("wild pointer, foreign thread", [] {
		fault_init();
		*wild(0x18) = 1;
		_exit(94);
	});
	INFO(r.describe());
	CHECK(r.aborted());
	CHECK(r.contains("SIGSEGV at 0x18 in a foreign OS thread"));
	CHECK(r.contains("(not a stack red zone)"));

	r = test::run_death("wild pointer, green thread", [] {
		usmp::run(machine_config{.ncpus = 1}, [] {
			thread_attr a;
			a.name = "wild writer";
			green_thread t(a, [] {
				*wild(0x28) = 1;
			});
			t.join();
		});
		_exit(95);
	});
	INFO(r.describe());
	CHECK(r.aborted());
	CHECK(r.contains("SIGSEGV at 0x28 in thread \"wild writer\""));
	CHECK(r.contains("(not a stack red zone)"));
}

TEST_CASE("an access to an SG_NONE segment that is no stack names it",
    "[fault][death]")
{
	auto r = test::run_death("SG_NONE segment", [] {
		fault_init();
		void *p = nullptr;
		if (segattach(SG_NONE, 4096, &p, "fence") != 0)
			_exit(96);
		(void)*static_cast<volatile char *>(p);
		_exit(97);
	});
	INFO(r.describe());
	CHECK(r.aborted());
	CHECK(r.contains("not a stack red zone; in segment \"fence\""));
	CHECK(r.contains("SG_NONE"));
}

TEST_CASE("a SIGSEGV sent by kill is not taken for a fault", "[fault][death]")
{
	auto r = test::run_death("kill -SEGV", [] {
		fault_init();
		raise(SIGSEGV);
		_exit(98);
	});
	INFO(r.describe());
	CHECK(r.aborted());
	CHECK(r.contains("SIGSEGV sent by process "));
	CHECK(r.contains("(not a fault)"));
}

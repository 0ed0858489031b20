// The thread dump (runtime/dump.h) with WITNESS's locks-held lines
// (sync/witness_dump.cc): a thread blocked on a named mutex is shown with
// that mutex as its wait channel, and the mutex's owner, itself blocked on
// another lock, is shown with the locks it holds.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/config.h"
#include "runtime/dump.h"
#include "runtime/thread.h"
#include "support/machine.h"
#include "support/observe.h"
#include "sync/mutex.h"
#include "sync/sx.h"
#include "sync/witness.h"

using namespace usmp;

namespace {

// The lines of one thread's entry in a dump: from its header line to the
// next thread's header (or the end).
std::string
entry_of(const std::string &d, const char *name, int tid)
{
	char head[128];
	std::snprintf(head, sizeof(head), "  \"%s\" tid %d: ", name, tid);
	std::size_t at = d.find(head);
	if (at == std::string::npos)
		return "";
	std::size_t end = d.find("\n  \"", at + 1);
	return d.substr(at, end == std::string::npos ? end : end - at + 1);
}

} // namespace

TEST_CASE("thread dump: a thread blocked on a named mutex, and the locks its owner holds", "[unit]")
{
	witness_set_mode(witness_mode::warn);
	test::machine m(2);
	m.run([] {
		mutex gate("dump gate");
		mutex wanted("dump wanted mutex");
		sx shared_sx("dump owner sx");
		gate.lock();
		// The owner takes the sx and the wanted mutex, then blocks on
		// the gate (held here): it is parked holding both.
		green_thread owner(thread_attr{.name = "dump-owner"}, [&] {
			shared_sx.lock_shared();
			wanted.lock();
			gate.lock();
			gate.unlock();
			wanted.unlock();
			shared_sx.unlock_shared();
		});
		thread *otd = owner.native_handle();
		test::wait_blocked_on_lock(otd);
		green_thread waiter(thread_attr{.name = "dump-waiter"}, [&] {
			wanted.lock();
			wanted.unlock();
		});
		thread *wtd = waiter.native_handle();
		test::wait_blocked_on_lock(wtd);

		std::string d = test::capture(thread_dump);
		INFO(d);
		std::string w = entry_of(d, "dump-waiter", wtd->td_tid);
		std::string o = entry_of(d, "dump-owner", otd->td_tid);
		std::string me = entry_of(d, curthread()->td_name, curthread()->td_tid);
		REQUIRE(!w.empty());
		REQUIRE(!o.empty());
		REQUIRE(!me.empty());
		CHECK(w.find(": blocked, ") != std::string::npos);
		CHECK(w.find("\"dump wanted mutex\"") != std::string::npos);
		CHECK(o.find(": blocked, ") != std::string::npos);
		CHECK(o.find("\"dump gate\"") != std::string::npos);
		if constexpr (config::witness) {
			// The owner's locks, newest first, as witness(4) lists
			// them; the waiter holds none.
			std::size_t held = o.find("    locks held:\n");
			REQUIRE(held != std::string::npos);
			std::size_t mtx = o.find("      exclusive sleep mutex dump wanted mutex r = 0 (0x");
			std::size_t sxl = o.find("      shared sx dump owner sx r = 0 (0x");
			CHECK(mtx != std::string::npos);
			CHECK(sxl != std::string::npos);
			CHECK(mtx < sxl);
			CHECK(o.find("locked @ ") != std::string::npos);
			CHECK(o.find("dump_locks_unit.cc:") != std::string::npos);
			CHECK(w.find("locks held:") == std::string::npos);
			// The dumping thread's own lock.
			CHECK(me.find("exclusive sleep mutex dump gate r = 0") != std::string::npos);
		} else {
			CHECK(d.find("locks held:") == std::string::npos);
		}
		gate.unlock();
		owner.join();
		waiter.join();
	});
}

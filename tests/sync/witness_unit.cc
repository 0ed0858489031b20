// WITNESS: every check as a scenario whose report is matched (warn mode,
// reports captured by the callback sink), the peers' lock-order scenarios
// (ABBA across threads and in one thread, a 3-lock cycle across three
// threads, a 4-lock cycle among 50 consistently ordered types), declared
// orders, blessed pairs, show locks, badstacks, DOT, the JSON sink.
//
// WITNESS reports each pair once per process and learns orders for good,
// so every case uses lock types of its own.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/critical.h"
#include "runtime/thread.h"
#include "support/machine.h"
#include "sync/condvar.h"
#include "sync/mutex.h"
#include "sync/rwlock.h"
#include "sync/sleep.h"
#include "sync/sx.h"
#include "sync/witness.h"

using namespace std::chrono_literals;
using namespace usmp;

namespace {

// Captures the reports made while it lives (stderr off, warn mode).
struct capture {
	struct rep {
		witness_kind kind;
		std::string text, l1, l1type, l2, l2type, l1file, l2file;
		int l1line, l2line;
	};
	std::mutex mu;
	std::vector<rep> reps;

	static void cb(const witness_report &r, void *arg)
	{
		auto *c = static_cast<capture *>(arg);
		std::lock_guard<std::mutex> g(c->mu);
		c->reps.push_back({r.kind, r.text, r.lock1_name ? r.lock1_name : "",
		    r.lock1_type ? r.lock1_type : "",
		    r.lock2_name ? r.lock2_name : "",
		    r.lock2_type ? r.lock2_type : "",
		    r.lock1_file ? r.lock1_file : "",
		    r.lock2_file ? r.lock2_file : "", r.lock1_line, r.lock2_line});
	}
	capture()
	{
		witness_set_mode(witness_mode::warn);
		witness_set_stderr(false);
		witness_set_callback(cb, this);
	}
	~capture()
	{
		witness_set_callback(nullptr, nullptr);
		witness_set_stderr(true);
	}
	std::size_t count(witness_kind k)
	{
		std::lock_guard<std::mutex> g(mu);
		std::size_t n = 0;
		for (auto &r : reps)
			n += r.kind == k;
		return n;
	}
	std::size_t total()
	{
		std::lock_guard<std::mutex> g(mu);
		return reps.size();
	}
	rep first(witness_kind k)
	{
		std::lock_guard<std::mutex> g(mu);
		for (auto &r : reps)
			if (r.kind == k)
				return r;
		return {};
	}
	std::string all()
	{
		std::lock_guard<std::mutex> g(mu);
		std::string s;
		for (auto &r : reps)
			s += r.text;
		return s;
	}
};

bool
has(const std::string &s, const std::string &sub)
{
	return s.find(sub) != std::string::npos;
}

} // namespace

TEST_CASE("ABBA across two threads is a reversal with both sites and stacks",
    "[unit][witness]")
{
	capture c;
	test::machine m(2);
	m.run([&] {
		mutex a("abba2 A"), b("abba2 B");
		green_thread t1([&] {
			a.lock();
			b.lock();
			b.unlock();
			a.unlock();
		});
		t1.join();
		CHECK(c.total() == 0);
		green_thread t2([&] {
			b.lock();
			a.lock(); // reversal: A -> B is known
			a.unlock();
			b.unlock();
		});
		t2.join();
	});
	REQUIRE(c.count(witness_kind::reversal) == 1);
	auto r = c.first(witness_kind::reversal);
	INFO(r.text);
	CHECK(has(r.text, "lock order reversal:\n"));
	CHECK(has(r.text, " 1st "));
	CHECK(has(r.text, "abba2 B (abba2 B, sleep mutex) @ "));
	CHECK(has(r.text, " 2nd "));
	CHECK(has(r.text, "abba2 A (abba2 A, sleep mutex) @ "));
	CHECK(has(r.text, "lock order abba2 A -> abba2 B established at:"));
	CHECK(has(r.text, "lock order abba2 B -> abba2 A attempted at:"));
	CHECK(has(r.text, "witness_unit.cc:"));
	// Stacks are symbolized: a frame of this file's lambdas.
	CHECK(has(r.text, "#0 0x"));
	CHECK(r.l1 == "abba2 B");
	CHECK(r.l2 == "abba2 A");
	CHECK(has(r.l2file, "witness_unit.cc"));
	CHECK(r.l2line > 0);
}

TEST_CASE("ABBA in one thread at different times; reported once per pair",
    "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		mutex a("abba1 A"), b("abba1 B");
		{
			std::scoped_lock g1(a);
			std::lock_guard g2(b);
		}
		for (int i = 0; i < 3; i++) {
			std::lock_guard g1(b);
			std::lock_guard g2(a);
		}
	});
	CHECK(c.count(witness_kind::reversal) == 1);
	CHECK(c.total() == 1);
}

TEST_CASE("a 3-lock cycle across three threads shows the established path",
    "[unit][witness]")
{
	capture c;
	test::machine m(2);
	m.run([&] {
		mutex a("cyc3 A"), b("cyc3 B"), cc("cyc3 C");
		auto pair = [](mutex &x, mutex &y) {
			green_thread t([&] {
				x.lock();
				y.lock();
				y.unlock();
				x.unlock();
			});
			t.join();
		};
		pair(a, b);
		pair(b, cc);
		CHECK(c.total() == 0);
		pair(cc, a);
	});
	REQUIRE(c.count(witness_kind::reversal) == 1);
	auto r = c.first(witness_kind::reversal);
	INFO(r.text);
	CHECK(has(r.text, "lock order cyc3 A -> cyc3 B -> cyc3 C is established "
			  "by 2 orders"));
	CHECK(has(r.text, "lock order cyc3 A -> cyc3 B established at:"));
	CHECK(has(r.text, "lock order cyc3 B -> cyc3 C established at:"));
	CHECK(has(r.text, "lock order cyc3 C -> cyc3 A attempted at:"));
}

TEST_CASE("a 4-lock cycle hidden among 50 consistently ordered lock types",
    "[unit][witness]")
{
	capture c;
	test::machine m(2);
	m.run([&] {
		std::vector<std::string> names;
		for (int i = 0; i < 50; i++)
			names.push_back("fifty " + std::to_string(i));
		std::vector<std::unique_ptr<mutex>> l;
		for (auto &n : names)
			l.push_back(std::make_unique<mutex>(n.c_str()));
		// Consistent orders: i before j for i < j, in chains of 3.
		for (int i = 0; i + 2 < 50; i++) {
			l[i]->lock();
			l[i + 1]->lock();
			l[i + 2]->lock();
			l[i + 2]->unlock();
			l[i + 1]->unlock();
			l[i]->unlock();
		}
		CHECK(c.total() == 0);
		// 10 -> 20 -> 30 -> 40 -> 10: the last closes the cycle (and
		// contradicts the chain 10 -> 11 -> ... -> 40 too).
		int cyc[] = {10, 20, 30, 40, 10};
		for (int k = 0; k < 4; k++) {
			l[cyc[k]]->lock();
			l[cyc[k + 1]]->lock();
			l[cyc[k + 1]]->unlock();
			l[cyc[k]]->unlock();
		}
	});
	REQUIRE(c.count(witness_kind::reversal) == 1);
	auto r = c.first(witness_kind::reversal);
	INFO(r.text);
	CHECK(r.l1 == "fifty 40");
	CHECK(r.l2 == "fifty 10");
	CHECK(has(r.text, "lock order fifty 40 -> fifty 10 attempted at:"));
}

TEST_CASE("duplicate lock of same type, and LOCK_DUPOK", "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		mutex a("dup one", "dup type"), b("dup two", "dup type");
		a.lock();
		b.lock();
		b.unlock();
		a.unlock();
		mutex x("dupok one", "dupok type", LOCK_DUPOK);
		mutex y("dupok two", "dupok type", LOCK_DUPOK);
		x.lock();
		y.lock();
		y.unlock();
		x.unlock();
	});
	REQUIRE(c.count(witness_kind::duplicate) == 1);
	auto r = c.first(witness_kind::duplicate);
	INFO(r.text);
	CHECK(has(r.text, "acquiring duplicate lock of same type: \"dup type\"\n"));
	CHECK(has(r.text, " 1st dup one @ "));
	CHECK(has(r.text, " 2nd dup two @ "));
	CHECK(c.total() == 1);
}

TEST_CASE("recursion through try_lock on non-recursive locks",
    "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		mutex a("tryrec mutex");
		a.lock();
		CHECK(!a.try_lock());
		a.unlock();
		sx s("tryrec sx");
		s.lock();
		CHECK(!s.try_lock());
		s.unlock();
		rwlock rw("tryrec rw");
		rw.lock();
		CHECK(!rw.try_lock());
		rw.unlock();
		spin_mutex sp("tryrec spin");
		sp.lock();
		CHECK(!sp.try_lock());
		sp.unlock();
		// Recursable: no report.
		mutex r("tryrec ok", nullptr, LOCK_RECURSE);
		r.lock();
		CHECK(r.try_lock());
		r.unlock();
		r.unlock();
	});
	CHECK(c.count(witness_kind::recursion) == 4);
	std::string all = c.all();
	INFO(all);
	CHECK(has(all, "recursed on non-recursive lock (sleep mutex) tryrec mutex "
		       "through try_lock @ "));
	CHECK(has(all, "recursed on non-recursive lock (sx) tryrec sx through "));
	CHECK(has(all, "recursed on non-recursive lock (rw) tryrec rw through "));
	CHECK(has(all, "recursed on non-recursive lock (spin mutex) tryrec spin "));
	CHECK(has(all, "first acquired @ "));
	CHECK(c.total() == 4);
}

TEST_CASE("shared unlock of a lock this thread does not hold",
    "[unit][witness]")
{
	capture c;
	test::machine m(2);
	m.run([&] {
		sx s("unheld sx");
		s.lock_shared();
		// Another thread releases our share: the sx word (one sharer)
		// cannot tell, WITNESS can.
		green_thread t([&] { s.unlock_shared(); });
		t.join();
		// Drop our own record of the share the other thread released.
		witness_unlock(s.lo(), 0, __FILE__, __LINE__);
	});
	REQUIRE(c.count(witness_kind::not_locked) == 1);
	INFO(c.all());
	CHECK(has(c.all(), "lock (sx) unheld sx not locked @ "));
	CHECK(has(c.all(), "witness_unit.cc:"));
	CHECK(c.total() == 1);
}

TEST_CASE("sleeping with non-sleepable locks held, cv wait and pause",
    "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		mutex held("sleepy held");
		mutex il("sleepy interlock");
		condvar cv("sleepy cv");
		held.lock();
		pause("sleepy pause", 1ms);
		il.lock();
		cv.timedwait(il, 1ms);
		il.unlock();
		held.unlock();
		// An sx may be held (sleepable); the interlock itself is fine.
		sx s("sleepy sx");
		s.lock();
		il.lock();
		cv.timedwait(il, 1ms);
		il.unlock();
		s.unlock();
	});
	CHECK(c.count(witness_kind::sleeping) == 2);
	std::string all = c.all();
	INFO(all);
	CHECK(has(all, "Sleeping on \"sleepy pause\" with the following "
		       "non-sleepable locks held:\n exclusive sleep mutex sleepy "
		       "held r = 0 ("));
	CHECK(has(all, "Waiting on \"sleepy cv\" with the following non-sleepable "
		       "locks held:\n exclusive sleep mutex sleepy held"));
	CHECK(!has(all, "exclusive sleep mutex sleepy interlock"));
	CHECK(!has(all, "sleepy sx"));
}

TEST_CASE("a reversal against a lock below a try-locked one is found",
    "[unit][witness]")
{
	// FreeBSD stops checking when the new lock is a child of the most
	// recent one; here the most recent one (A, try-locked) is no link of
	// a chain from B, so C is checked against B: C -> B is known.
	capture c;
	test::machine m(1);
	m.run([&] {
		mutex a("trychain A"), b("trychain B"), cc("trychain C");
		{
			std::lock_guard g1(a);
			std::lock_guard g2(cc); // A -> C
		}
		{
			std::lock_guard g1(cc);
			std::lock_guard g2(b); // C -> B
		}
		CHECK(c.total() == 0);
		b.lock();
		REQUIRE(a.try_lock()); // no order is checked or made
		cc.lock();             // A -> C is known, but C -> B too
		cc.unlock();
		a.unlock();
		b.unlock();
	});
	REQUIRE(c.count(witness_kind::reversal) == 1);
	auto r = c.first(witness_kind::reversal);
	INFO(r.text);
	CHECK(r.l1 == "trychain B");
	CHECK(r.l2 == "trychain C");
}

TEST_CASE("known orders take the fast path and stay exact after unlocks out "
	  "of order", "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		mutex a("fastpath A"), b("fastpath B"), cc("fastpath C"),
		    d("fastpath D");
		for (int i = 0; i < 3; i++) { // learn A -> B -> C -> D
			std::lock_guard g1(a);
			std::lock_guard g2(b);
			std::lock_guard g3(cc);
			std::lock_guard g4(d);
		}
		CHECK(c.total() == 0);
		a.lock();
		b.lock();
		cc.lock();
		CHECK(witness_held_count() == 3);
		b.unlock(); // out of order: A, C remain, still a chain
		CHECK(witness_held_count() == 2);
		d.lock();   // C -> D known: no report
		CHECK(witness_held_count() == 3);
		CHECK(c.total() == 0);
		d.unlock();
		cc.unlock();
		CHECK(witness_held_count() == 1);
		// A held: B after it is fine, then A's type again would be a
		// recursion/duplicate, and D then B a reversal.
		d.lock();
		b.lock(); // B -> D is known (closure): reversal
		b.unlock();
		d.unlock();
		a.unlock();
		CHECK(witness_held_count() == 0);
	});
	REQUIRE(c.count(witness_kind::reversal) == 1);
	auto r = c.first(witness_kind::reversal);
	INFO(r.text);
	CHECK(r.l1 == "fastpath D");
	CHECK(r.l2 == "fastpath B");
	CHECK(has(r.text, "lock order fastpath B -> fastpath C -> fastpath D is "
			  "established by 2 orders:"));
}

TEST_CASE("a declared mutex -> sx order does not hide sleepable after "
	  "non-sleepable", "[unit][witness]")
{
	capture c;
	REQUIRE(witness_defineorder("declsleep mutex", "declsleep sx") == 0);
	test::machine m(1);
	m.run([&] {
		mutex mx("declsleep mutex");
		sx s("declsleep sx");
		mx.lock();
		s.lock();
		s.unlock();
		mx.unlock();
	});
	REQUIRE(c.count(witness_kind::reversal) == 1);
	CHECK(has(c.all(), "lock order reversal: (sleepable after non-sleepable)"));
}

TEST_CASE("an sx taken with a mutex held is a sleepable-after-non-sleepable "
	  "reversal", "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		mutex mx("sx-after mutex");
		sx s("sx-after sx");
		mx.lock();
		s.lock();
		s.unlock();
		mx.unlock();
	});
	REQUIRE(c.count(witness_kind::reversal) == 1);
	CHECK(has(c.all(), "lock order reversal: (sleepable after non-sleepable)"));
}

TEST_CASE("sleep lock in an interrupt filter; sleeping in an ithread",
    "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		mutex a("filter mutex");
		// A filter runs in a spinlock section (the inline lock path
		// relies on that to skip the filter check outside one), where
		// mtx_lock() itself would panic: ask WITNESS directly.
		critical_enter();
		witness_filter_enter();
		witness_checkorder(a.lo(), LOP_EXCLUSIVE, __FILE__, __LINE__,
		    nullptr);
		witness_filter_exit();
		critical_exit();
		a.lock(); // outside the filter: fine
		a.unlock();
		witness_nosleep_enter("an ithread");
		pause("ithread nap", 1ms);
		witness_nosleep_exit();
		pause("free nap", 1ms);
	});
	CHECK(c.count(witness_kind::filter) == 1);
	CHECK(c.count(witness_kind::nosleep_context) == 1);
	std::string all = c.all();
	INFO(all);
	CHECK(has(all, "acquiring sleep lock (sleep mutex) filter mutex in an "
		       "interrupt filter @ "));
	CHECK(has(all, "Sleeping on \"ithread nap\" in an ithread context "
		       "(sleeping prohibited)"));
	CHECK(c.total() == 2);
}

TEST_CASE("interlock errors", "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		mutex a("il a"), b("il b"), il("il interlock",
		    nullptr, LOCK_RECURSE);
		a.lock();
		witness_checkorder(b.lo(), LOP_EXCLUSIVE, "here.cc", 1, il.lo());
		il.lock();
		il.lock();
		witness_checkorder(b.lo(), LOP_EXCLUSIVE, "here.cc", 2, il.lo());
		il.unlock();
		il.unlock();
		a.unlock();
	});
	CHECK(c.count(witness_kind::interlock) == 2);
	std::string all = c.all();
	INFO(all);
	CHECK(has(all, "interlock (sleep mutex) il interlock not locked @ here.cc:1"));
	CHECK(has(all, "interlock (sleep mutex) il interlock recursed @ here.cc:2"));
}

TEST_CASE("thread exit with a lock held", "[unit][witness]")
{
	capture c;
	test::machine m(2);
	m.run([&] {
		// Leaked on purpose: its owner dies holding it.  Kept in a
		// static, so that LeakSanitizer sees it reachable.
		static mutex *lost;
		lost = new mutex("exit lost");
		green_thread t([&] { lost->lock(); });
		t.join();
	});
	REQUIRE(c.count(witness_kind::thread_exit) == 1);
	std::string all = c.all();
	INFO(all);
	CHECK(has(all, "exiting with the following locks held:\n exclusive sleep "
		       "mutex exit lost r = 0 ("));
	CHECK(has(all, "cannot exit while holding sleeplocks"));
}

TEST_CASE("declared orders and blessed pairs", "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		const char *list[] = {"decl A", "decl B", "decl C", nullptr};
		CHECK(witness_defineorder_list(list) == 0);
		CHECK(witness_defineorder("decl C", "decl A") == EDEADLK);
		mutex a("decl A"), cc("decl C");
		cc.lock();
		a.lock(); // A -> B -> C declared
		a.unlock();
		cc.unlock();
		CHECK(witness_bless("bless P", "bless Q") == 0);
		mutex p("bless P"), q("bless Q");
		p.lock();
		q.lock();
		q.unlock();
		p.unlock();
		q.lock();
		p.lock();
		p.unlock();
		q.unlock();
	});
	REQUIRE(c.count(witness_kind::reversal) == 1);
	std::string all = c.all();
	INFO(all);
	CHECK(has(all, "lock order decl A -> decl B -> decl C is established"));
	CHECK(has(all, ", in declared order"));
	CHECK(!has(all, "bless"));
}

TEST_CASE("show locks, show all locks, badstacks, DOT, fullgraph",
    "[unit][witness]")
{
	capture c;
	test::machine m(2);
	m.run([&] {
		mutex a("show A"), b("show B");
		sx s("show S");
		s.lock_shared();
		a.lock();
		b.lock();
		std::string mine;
		CHECK(witness_show_locks(curthread(), witness_out_string(mine)) >= 3);
		INFO(mine);
		CHECK(has(mine, "exclusive sleep mutex show B r = 0 ("));
		CHECK(has(mine, "exclusive sleep mutex show A r = 0 ("));
		CHECK(has(mine, "shared sx show S r = 0 ("));
		CHECK(has(mine, "witness_unit.cc:"));
		CHECK(witness_held_count() >= 3);
		std::string everyone;
		green_thread t([&] {
			witness_show_all_locks(witness_out_string(everyone));
		});
		t.join();
		CHECK(has(everyone, "(tid "));
		CHECK(has(everyone, "show B"));
		b.unlock();
		a.unlock();
		s.unlock_shared();
		// A reversal for badstacks.
		b.lock();
		a.lock();
		a.unlock();
		b.unlock();
		std::string bad, dot, full;
		witness_badstacks(witness_out_string(bad));
		witness_dump_dot(witness_out_string(dot));
		witness_fullgraph(witness_out_string(full));
		INFO(bad);
		CHECK(has(bad, "Number of known direct relationships is "));
		CHECK(has(bad, "Lock order reversal between \"show A\"(sleep) and "
			       "\"show B\"(sleep)!"));
		CHECK(has(bad, "Lock order \"show A\"(sleep) -> \"show B\"(sleep) "
			       "first seen at:"));
		CHECK(has(bad, "Lock order \"show B\"(sleep) -> \"show A\"(sleep) "
			       "attempted at:"));
		CHECK(has(dot, "digraph witness {"));
		CHECK(has(dot, "label=\"show A\\n(sleep)\""));
		CHECK(has(dot, "color=red"));
		CHECK(has(full, "\"show A\",\"show B\"\n"));
	});
}

TEST_CASE("JSON-lines sink and count mode", "[unit][witness]")
{
	char path[] = "/tmp/usmp-witness-json-XXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	close(fd);
	test::machine m(1);
	m.run([&] {
		witness_set_stderr(false);
		REQUIRE(witness_set_json(path) == 0);
		mutex a("json A"), b("json B");
		a.lock();
		b.lock();
		b.unlock();
		a.unlock();
		b.lock();
		a.lock();
		a.unlock();
		b.unlock();
		REQUIRE(witness_set_json(nullptr) == 0);
		// Count mode: counted, not written.
		uint64_t before = witness_report_count(witness_kind::duplicate);
		witness_set_mode(witness_mode::count);
		mutex d1("json dup", "json dup"), d2("json dup 2", "json dup");
		d1.lock();
		d2.lock();
		d2.unlock();
		d1.unlock();
		witness_set_mode(witness_mode::warn);
		witness_set_stderr(true);
		CHECK(witness_report_count(witness_kind::duplicate) == before + 1);
	});
	std::ifstream in(path);
	std::stringstream ss;
	ss << in.rdbuf();
	std::string j = ss.str();
	unlink(path);
	INFO(j);
	CHECK(has(j, "{\"kind\":\"lock order reversal\""));
	CHECK(has(j, "\"lock1\":{\"name\":\"json B\",\"type\":\"json B\","
		     "\"class\":\"sleep mutex\",\"file\":"));
	CHECK(has(j, "\"lock2\":{\"name\":\"json A\""));
	CHECK(has(j, "\"text\":\"lock order reversal:\\n"));
	CHECK(!has(j, "json dup"));
	CHECK(std::count(j.begin(), j.end(), '\n') == 1);
}

TEST_CASE("mode switch off: nothing checked", "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		witness_set_mode(witness_mode::off);
		mutex a("off A"), b("off B");
		a.lock();
		b.lock();
		b.unlock();
		a.unlock();
		b.lock();
		a.lock();
		a.unlock();
		b.unlock();
		witness_set_mode(witness_mode::warn);
	});
	CHECK(c.total() == 0);
}

TEST_CASE("witness_assert", "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		sx s("assert sx");
		s.lock_shared();
		witness_assert(s.lo(), LA_SLOCKED, "a.cc", 1);
		witness_assert(s.lo(), LA_XLOCKED, "a.cc", 2);
		s.unlock_shared();
		witness_assert(s.lo(), LA_LOCKED, "a.cc", 3);
	});
	CHECK(c.count(witness_kind::assertion) == 2);
	CHECK(has(c.all(), "Lock (sx) assert sx not exclusively locked @ a.cc:2."));
	CHECK(has(c.all(), "Lock (sx) assert sx not locked @ a.cc:3."));
}

TEST_CASE("a foreign OS thread's state is freed when it ends, with a report "
	  "of the locks it still holds", "[unit][witness]")
{
	capture c;
	test::machine m(1);
	// Owned by a thread that is gone: never destroyed (static storage,
	// no destructor run).
	alignas(mutex) static unsigned char buf[sizeof(mutex)];
	mutex *lost = new (buf) mutex("foreign exit lost");
	mutex ok("foreign exit ok");
	std::thread os([&] {
		ok.lock();
		ok.unlock();
		lost->lock();
	});
	os.join();
	REQUIRE(c.count(witness_kind::thread_exit) == 1);
	auto r = c.first(witness_kind::thread_exit);
	INFO(r.text);
	CHECK(has(r.text, "exiting with the following locks held:"));
	CHECK(has(r.text, "foreign exit lost"));
	CHECK(has(r.text, "(\"foreign\", tid -"));
	// Its state is gone: show all locks no longer lists it.
	std::string all;
	witness_show_all_locks(witness_out_string(all));
	CHECK(!has(all, "foreign exit lost"));
}

TEST_CASE("a full held-lock list is reported once, naming its limit",
    "[unit][witness]")
{
	capture c;
	test::machine m(1);
	m.run([&] {
		std::vector<std::unique_ptr<mutex>> v;
		for (int i = 0; i < 70; i++)
			v.push_back(std::make_unique<mutex>("heldfull",
			    nullptr, LOCK_DUPOK));
		for (auto &x : v)
			x->lock();
		CHECK(witness_held_count() == 64);
		for (auto it = v.rbegin(); it != v.rend(); ++it)
			(*it)->unlock();
		CHECK(witness_held_count() == 0);
	});
	REQUIRE(c.count(witness_kind::internal) == 1);
	CHECK(c.total() == 1);
	auto r = c.first(witness_kind::internal);
	INFO(r.text);
	CHECK(has(r.text, "a thread's held-lock list is full (WITNESS_HELD = "
			  "64): further sleep locks it takes are not checked; "
			  "raise WITNESS_HELD in sync/internal/witness_fast.h "
			  "and rebuild"));
}

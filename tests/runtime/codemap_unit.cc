// Unit tests of the code map (runtime/codemap.h).
//
// The oracle is this test executable itself: its own functions, the
// namespace usmp and std:: code instantiated in it, Catch2's internals, and
// libc and libstdc++ as shared objects.  A test reads the executable's
// symbol table independently (a few lines of <elf.h>) and checks every
// function whose name plainly belongs to usmp, std::, Catch2, Boost or the
// toolchain.  Two tests run a copy of this executable in a child process:
// one with its .symtab removed (stripped), one started as "ld.so ./test".
#include "runtime/codemap.h"

#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <utility>
#include <vector>

// --- Code of every class, defined in this executable -------------------

// The current instruction address, in the caller's own code.
__attribute__((always_inline)) static inline uintptr_t
here()
{
	uintptr_t pc;
	asm volatile("lea 0(%%rip), %0" : "=r"(pc));
	return pc;
}

// Application code.  Bodies differ so that identical code folding cannot
// merge them with the usmp ones below.
__attribute__((noinline)) uintptr_t
app_function(int x)
{
	asm volatile("" : "+r"(x));
	return here() + uintptr_t(x) * 0;
}

// Busy application code for the signal test; its range is looked up.
__attribute__((noinline)) unsigned long
app_spin(unsigned long n)
{
	unsigned long h = 1469598103934665603ul;
	for (unsigned long i = 0; i < n; i++) {
		h = (h ^ i) * 1099511628211ul;
		asm volatile("" : "+r"(h));
	}
	return h;
}

namespace usmp::test_only {
// In the executable and mangled with usmp: never preemptible.
__attribute__((noinline)) uintptr_t
f()
{
	asm volatile("nop; nop; nop");
	return here();
}
} // namespace usmp::test_only

// A tag for an application-defined operator new overload: an allocator.
struct app_arena {};
__attribute__((noinline)) void *
operator new(std::size_t n, const app_arena &)
{
	return ::operator new(n);
}

// Virtual bases make the compiler emit thunks for app_derived::g.
struct app_base1 {
	virtual ~app_base1() = default;
	virtual int g() { return 1; }
};
struct app_base2 {
	virtual ~app_base2() = default;
	virtual int g() { return 2; }
};
struct app_derived : app_base1, app_base2 {
	__attribute__((noinline)) int g() override { return 3; }
};

// A big trivially copyable type for std:: instantiations in this file.
struct app_blob {
	char b[48];
};

// --- An independent reader of this executable's symbol table -----------

namespace {

struct symbol {
	std::string name;
	uintptr_t addr;
	size_t size;
};

int
find_exe(struct dl_phdr_info *info, size_t, void *arg)
{
	auto *out = static_cast<std::pair<uintptr_t, std::string> *>(arg);
	if (reinterpret_cast<uintptr_t>(info->dlpi_phdr) != getauxval(AT_PHDR))
		return 0;
	out->first = info->dlpi_addr;
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_INTERP)
			out->second = reinterpret_cast<const char *>(
			    info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
	return 1;
}

// The load bias of this executable and its program interpreter.
std::pair<uintptr_t, std::string>
exe_info()
{
	std::pair<uintptr_t, std::string> r{0, ""};
	dl_iterate_phdr(find_exe, &r);
	return r;
}

std::string
read_file(const char *path)
{
	std::string s;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(fd >= 0);
	char buf[65536];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		s.append(buf, size_t(n));
	close(fd);
	return s;
}

std::vector<symbol>
read_symbols()
{
	std::vector<symbol> v;
	std::string img = read_file("/proc/self/exe");
	const char *base = img.data();
	uintptr_t bias = exe_info().first;
	auto *eh = reinterpret_cast<const Elf64_Ehdr *>(base);
	auto *sh = reinterpret_cast<const Elf64_Shdr *>(base + eh->e_shoff);
	for (int i = 0; i < eh->e_shnum; i++) {
		if (sh[i].sh_type != SHT_SYMTAB)
			continue;
		auto *s = reinterpret_cast<const Elf64_Sym *>(base +
		    sh[i].sh_offset);
		const char *str = base + sh[sh[i].sh_link].sh_offset;
		size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
		for (size_t j = 0; j < n; j++)
			if (ELF64_ST_TYPE(s[j].st_info) == STT_FUNC &&
			    s[j].st_shndx != SHN_UNDEF && s[j].st_size > 0)
				v.push_back({str + s[j].st_name,
				    bias + s[j].st_value, s[j].st_size});
	}
	return v;
}

// The sized functions of .symtab, at run-time addresses.
const std::vector<symbol> &
symbols()
{
	static std::vector<symbol> syms = read_symbols();
	return syms;
}

const symbol *
symbol_at(uintptr_t addr)
{
	for (const symbol &s : symbols())
		if (s.addr == addr)
			return &s;
	return nullptr;
}

bool
starts(const std::string &s, const char *prefix)
{
	return s.compare(0, std::strlen(prefix), prefix) == 0;
}

// True if any byte of [lo, lo + n) is preemptible.
bool
any_preemptible(uintptr_t lo, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (usmp::codemap_preemptible(lo + i))
			return true;
	return false;
}

// The address of the code of a non-virtual member function.
template <class M>
uintptr_t
member_address(M m)
{
	uintptr_t a;
	static_assert(sizeof(m) >= sizeof(a));
	std::memcpy(&a, &m, sizeof(a));
	return a;
}

// The address of `name` in the loaded shared object `lib` itself, not an
// interposed one (a sanitizer's printf).
uintptr_t
dso_symbol(const char *lib, const char *name)
{
	void *h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
	REQUIRE(h != nullptr);
	void *p = dlsym(h, name);
	dlclose(h);
	REQUIRE(p != nullptr);
	return reinterpret_cast<uintptr_t>(p);
}

std::string
describe(uintptr_t pc)
{
	return usmp::codemap_describe(pc);
}

void
init()
{
	REQUIRE(usmp::codemap_init() == 0);
}

} // namespace

// --- Tests -------------------------------------------------------------

TEST_CASE("codemap_init builds a classified map", "[runtime][codemap]")
{
	init();
	CHECK(usmp::codemap_note() == nullptr);
	CHECK(usmp::codemap_count(true) > 0);
	CHECK(usmp::codemap_count(false) > 0);

	// Idempotent.
	size_t np = usmp::codemap_count(true), nx = usmp::codemap_count(false);
	REQUIRE(usmp::codemap_init() == 0);
	CHECK(usmp::codemap_count(true) == np);
	CHECK(usmp::codemap_count(false) == nx);
}

TEST_CASE("application functions are preemptible", "[runtime][codemap]")
{
	init();
	uintptr_t entry = reinterpret_cast<uintptr_t>(&app_function);
	CHECK(usmp::codemap_preemptible(entry));
	CHECK(describe(entry) == "app");
	uintptr_t inside = app_function(1);
	CHECK(usmp::codemap_preemptible(inside));

	// The body of this test case (a function Catch2's macros made): app.
	uintptr_t pc = here();
	CHECK(usmp::codemap_preemptible(pc));
	CHECK(describe(pc) == "app");

	// main, made by Catch2's CATCH_CONFIG_MAIN in this executable.
	const symbol *m = nullptr;
	for (const symbol &s : symbols())
		if (s.name == "main")
			m = &s;
	REQUIRE(m != nullptr);
	CHECK(usmp::codemap_preemptible(m->addr));
}

TEST_CASE("lambda bodies are app, std::function's invoker is std::",
    "[runtime][codemap]")
{
	init();
	uintptr_t pc = 0;
	auto body = [&pc]() __attribute__((noinline)) {
		asm volatile("nop; nop");
		pc = here();
	};
	std::function<void()> fn = body;
	fn();
	REQUIRE(pc != 0);
	CHECK(usmp::codemap_preemptible(pc));
	CHECK(describe(pc) == "app");

	// The lambda's operator() and std::function's handler, by name.
	int lambdas = 0, handlers = 0;
	for (const symbol &s : symbols()) {
		bool in_test = starts(s.name, "_ZZL") &&
		    s.name.find("C_A_T_C_H_T_E_S_T") != std::string::npos;
		if (in_test && s.name.find("clEv") != std::string::npos) {
			lambdas++;
			CHECK(usmp::codemap_preemptible(s.addr));
		}
		if (starts(s.name, "_ZNSt17_Function_handler")) {
			handlers++;
			INFO(s.name);
			CHECK_FALSE(any_preemptible(s.addr, s.size));
			CHECK(describe(s.addr) == "std::");
		}
	}
	CHECK(lambdas > 0);
	CHECK(handlers > 0);
}

TEST_CASE("usmp's code is not preemptible", "[runtime][codemap]")
{
	init();
	uintptr_t pc = usmp::test_only::f();
	CHECK_FALSE(usmp::codemap_preemptible(pc));
	CHECK(describe(pc) == "usmp");
	uintptr_t entry = reinterpret_cast<uintptr_t>(&usmp::test_only::f);
	CHECK_FALSE(usmp::codemap_preemptible(entry));

	// The code map itself: in this executable ("usmp"), or in libusmp.so
	// when usmp is built as a shared library.
	for (uintptr_t a : {reinterpret_cast<uintptr_t>(&usmp::codemap_init),
		 reinterpret_cast<uintptr_t>(&usmp::codemap_preemptible),
		 reinterpret_cast<uintptr_t>(&usmp::codemap_describe)}) {
		CHECK_FALSE(usmp::codemap_preemptible(a));
		std::string d = describe(a);
		INFO(d);
		CHECK((d == "usmp" || d.find(".so") != std::string::npos));
	}
}

TEST_CASE("libc and libstdc++ are not preemptible", "[runtime][codemap]")
{
	init();
	for (const char *name : {"printf", "memcpy", "malloc", "free"}) {
		uintptr_t a = dso_symbol("libc.so.6", name);
		INFO(name);
		CHECK_FALSE(usmp::codemap_preemptible(a));
		CHECK(describe(a) == "libc.so.6");
	}
	uintptr_t tle = dso_symbol("libstdc++.so.6",
	    "_ZSt20__throw_length_errorPKc");
	CHECK_FALSE(usmp::codemap_preemptible(tle));
	CHECK(describe(tle) == "libstdc++.so.6");

	// The dynamic loader's entry point.
	std::string interp = exe_info().second;
	REQUIRE(!interp.empty());
	uintptr_t base = getauxval(AT_BASE);
	REQUIRE(base != 0);
	uintptr_t ld = base +
	    reinterpret_cast<const Elf64_Ehdr *>(base)->e_entry;
	CHECK_FALSE(usmp::codemap_preemptible(ld));
	CHECK(describe(ld) == interp.substr(interp.rfind('/') + 1));
	CHECK_FALSE(usmp::codemap_preemptible(0));
	CHECK(describe(0) == "unknown");
	CHECK(describe(reinterpret_cast<uintptr_t>(&tle)) == "unknown");
}

TEST_CASE("std:: code instantiated in the executable is not preemptible",
    "[runtime][codemap]")
{
	init();
	// Taking the address forces an out-of-line instantiation here.
	void (*swp)(app_blob &, app_blob &) = &std::swap<app_blob>;
	uintptr_t a = reinterpret_cast<uintptr_t>(swp);
	REQUIRE(symbol_at(a) != nullptr);
	CHECK_FALSE(usmp::codemap_preemptible(a));
	CHECK(describe(a) == "std::");

	using push_fn = void (std::vector<app_blob>::*)(const app_blob &);
	uintptr_t pb = member_address(
	    static_cast<push_fn>(&std::vector<app_blob>::push_back));
	const symbol *s = symbol_at(pb);
	REQUIRE(s != nullptr);
	CHECK_FALSE(any_preemptible(s->addr, s->size));
	CHECK(describe(pb) == "std::");

	// std::sort over the application's own type: its helpers are std::.
	std::vector<int> v(100);
	for (int i = 0; i < 100; i++)
		v[size_t(i)] = (i * 37) % 101;
	std::sort(v.begin(), v.end(), [](int x, int y) { return x > y; });
	int sorts = 0;
	for (const symbol &t : symbols())
		if (starts(t.name, "_ZSt16__introsort_loop") ||
		    starts(t.name, "_ZSt16__insertion_sort")) {
			sorts++;
			CHECK_FALSE(any_preemptible(t.addr, t.size));
		}
	CHECK(sorts > 0);
}

TEST_CASE("thunks and replacement operator new are excluded",
    "[runtime][codemap]")
{
	init();
	app_base2 *b = new app_derived;
	CHECK(b->g() == 3);
	delete b;
	void *p = ::operator new(16, app_arena{});
	::operator delete(p);

	int thunks = 0, news = 0;
	for (const symbol &s : symbols()) {
		INFO(s.name);
		if (starts(s.name, "_ZThn") &&
		    s.name.find("app_derived") != std::string::npos) {
			thunks++;
			CHECK_FALSE(any_preemptible(s.addr, s.size));
			CHECK(describe(s.addr) == "special");
		}
		if (starts(s.name, "_ZnwmRK9app_arena")) {
			news++;
			CHECK_FALSE(any_preemptible(s.addr, s.size));
			CHECK(describe(s.addr) == "allocator");
		}
		if (s.name == "_ZN11app_derived1gEv")
			CHECK(usmp::codemap_preemptible(s.addr));
	}
	CHECK(thunks > 0);
	CHECK(news == 1);
}

// Every function whose name plainly says usmp, std::, Catch2, Boost or the
// toolchain: no byte of it is preemptible.
TEST_CASE("no byte of an excluded function is preemptible",
    "[runtime][codemap]")
{
	init();
	static const char *const excluded[] = {
		"_ZN4usmp", "_ZNK4usmp", "_ZZN4usmp", "_ZZNK4usmp",
		"_ZSt", "_ZNSt", "_ZNKSt", "_ZZNSt", "_ZZNKSt",
		"_ZNSa", "_ZNSs",
		"_ZN9__gnu_cxx", "_ZNK9__gnu_cxx", "_ZN10__cxxabiv1",
		"_ZN5Catch", "_ZNK5Catch", "_ZZN5Catch", "_ZZNK5Catch",
		"_ZN5boost", "_ZNK5boost", "_ZT", "_ZG",
		"__", "_start", "_init", "_fini", "_GLOBAL__",
		"frame_dummy", "register_tm_clones", "deregister_tm_clones",
	};
	size_t checked = 0, app = 0;
	for (const symbol &s : symbols()) {
		bool excl = false;
		for (const char *p : excluded)
			excl = excl || starts(s.name, p);
		if (!excl) {
			app += usmp::codemap_preemptible(s.addr);
			continue;
		}
		INFO(s.name << " " << describe(s.addr));
		CHECK_FALSE(any_preemptible(s.addr, s.size));
		CHECK(describe(s.addr) != "app");
		checked++;
	}
	CHECK(checked > 1000);	// Catch2 alone has thousands
	CHECK(app > 0);
}

// --- Signal safety -----------------------------------------------------

namespace {

struct signal_probe {
	uintptr_t spin_lo, spin_hi;
	std::atomic<long> ticks{0}, in_app{0}, in_dso{0}, bad{0};
};
signal_probe *g_probe;

void
on_alarm(int, siginfo_t *, void *uc)
{
	int saved = errno;
	uintptr_t pc = uintptr_t(
	    static_cast<ucontext_t *>(uc)->uc_mcontext.gregs[REG_RIP]);
	bool p = usmp::codemap_preemptible(pc);
	const char *d = usmp::codemap_describe(pc);
	bool is_app = std::strcmp(d, "app") == 0;

	g_probe->ticks++;
	if (p != is_app)
		g_probe->bad++;
	if (pc >= g_probe->spin_lo && pc < g_probe->spin_hi) {
		g_probe->in_app++;
		if (!p)
			g_probe->bad++;
	}
	if (std::strstr(d, ".so") != nullptr) {	// libc, or a sanitizer's
		g_probe->in_dso++;
		if (p)
			g_probe->bad++;
	}
	errno = saved;
}

} // namespace

TEST_CASE("lookups from a signal handler", "[runtime][codemap]")
{
	init();
	signal_probe probe;
	const symbol *s = symbol_at(reinterpret_cast<uintptr_t>(&app_spin));
	REQUIRE(s != nullptr);
	probe.spin_lo = s->addr;
	probe.spin_hi = s->addr + s->size;
	g_probe = &probe;

	struct sigaction sa = {}, old;
	sa.sa_sigaction = on_alarm;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	REQUIRE(sigaction(SIGALRM, &sa, &old) == 0);
	struct itimerval it = {{0, 200}, {0, 200}};
	REQUIRE(setitimer(ITIMER_REAL, &it, nullptr) == 0);

	// 100 ms, half in application code, half in libc's memset.
	std::vector<char> buf(1 << 20);
	volatile unsigned long sink = 0;
	auto t0 = std::chrono::steady_clock::now();
	while (std::chrono::steady_clock::now() - t0 <
	    std::chrono::milliseconds(100)) {
		sink = sink + app_spin(20000);
		std::memset(buf.data(), int(sink & 0x7f), buf.size());
		asm volatile("" : : "r"(buf.data()) : "memory");
	}

	struct itimerval off = {};
	setitimer(ITIMER_REAL, &off, nullptr);
	sigaction(SIGALRM, &old, nullptr);
	g_probe = nullptr;

	INFO("ticks " << probe.ticks << " app " << probe.in_app << " dso "
	    << probe.in_dso);
	CHECK(probe.ticks >= 20);
	CHECK(probe.bad == 0);
	CHECK(probe.in_app > 0);
	CHECK(probe.in_dso > 0);
}

// --- Other executables: a stripped copy, and "ld.so ./test" ------------

namespace {

std::string
self_path()
{
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	REQUIRE(n > 0);
	return std::string(buf, size_t(n));
}

// Run args (args[0] is the program) and return its exit status; its output
// is shown only if it fails.
int
run(const std::vector<std::string> &args)
{
	std::vector<char *> argv;
	for (const std::string &a : args)
		argv.push_back(const_cast<char *>(a.c_str()));
	argv.push_back(nullptr);
	std::FILE *out = std::tmpfile();
	REQUIRE(out != nullptr);
	std::fflush(nullptr);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		dup2(fileno(out), STDOUT_FILENO);
		dup2(fileno(out), STDERR_FILENO);
		execv(argv[0], argv.data());
		_exit(127);
	}
	int st = 0;
	REQUIRE(waitpid(pid, &st, 0) == pid);
	int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	if (status != 0) {
		std::string text;
		char buf[4096];
		size_t n;
		std::rewind(out);
		while ((n = std::fread(buf, 1, sizeof(buf), out)) > 0)
			text.append(buf, n);
		UNSCOPED_INFO("child " << args[0] << " exited " << status
		    << ":\n" << text);
	}
	std::fclose(out);
	return status;
}

} // namespace

TEST_CASE("a stripped executable is wholly non-preemptible",
    "[runtime][codemap]")
{
	// A copy of this executable whose .symtab is turned into SHT_NULL.
	std::string img = read_file("/proc/self/exe");
	auto *eh = reinterpret_cast<Elf64_Ehdr *>(img.data());
	auto *sh = reinterpret_cast<Elf64_Shdr *>(img.data() + eh->e_shoff);
	int n = 0;
	for (int i = 0; i < eh->e_shnum; i++)
		if (sh[i].sh_type == SHT_SYMTAB) {
			sh[i].sh_type = SHT_NULL;
			n++;
		}
	REQUIRE(n == 1);
	char path[] = "/tmp/codemap_unit.XXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, img.data(), img.size()) == ssize_t(img.size()));
	REQUIRE(fchmod(fd, 0700) == 0);
	close(fd);
	int st = run({path, "codemap child stripped"});
	unlink(path);
	CHECK(st == 0);
}

TEST_CASE("codemap child stripped", "[.][codemap-child]")
{
	init();
	REQUIRE(usmp::codemap_note() != nullptr);
	CHECK(std::string(usmp::codemap_note()).find("stripped") !=
	    std::string::npos);
	CHECK(usmp::codemap_count(true) == 0);
	uintptr_t a = reinterpret_cast<uintptr_t>(&app_function);
	CHECK_FALSE(usmp::codemap_preemptible(a));
	CHECK(describe(a) == "unclassified");
	CHECK(describe(dso_symbol("libc.so.6", "printf")) == "libc.so.6");
}

TEST_CASE("an executable started by the dynamic loader is classified",
    "[runtime][codemap]")
{
	std::string interp = exe_info().second;
	REQUIRE(!interp.empty());
	CHECK(run({interp, self_path(), "codemap child via ld.so"}) == 0);
}

TEST_CASE("codemap child via ld.so", "[.][codemap-child]")
{
	init();
	CHECK(usmp::codemap_note() == nullptr);
	uintptr_t a = reinterpret_cast<uintptr_t>(&app_function);
	CHECK(usmp::codemap_preemptible(a));
	CHECK_FALSE(usmp::codemap_preemptible(usmp::test_only::f()));
}

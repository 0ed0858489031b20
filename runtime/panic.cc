// panic(): report and abort without allocating or locking.
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <execinfo.h>

#include "runtime/internal/machine.h"
#include "runtime/panic.h"
#include "runtime/pcpu.h"
#include "runtime/thread.h"

namespace usmp {

namespace {

std::atomic<panic_hook_fn> g_panic_hook{nullptr};
std::atomic<int> g_panicking{0};

void
write_all(const char *s, unsigned long n) noexcept
{
	while (n > 0) {
		ssize_t w = ::write(2, s, n);
		if (w <= 0)
			return;
		s += w;
		n -= static_cast<unsigned long>(w);
	}
}

void
write_str(const char *s) noexcept
{
	write_all(s, std::strlen(s));
}

} // namespace

void
panic_set_hook(panic_hook_fn fn) noexcept
{
	g_panic_hook.store(fn, std::memory_order_release);
}

void
printf_diag(const char *fmt, ...) noexcept
{
	char buf[1024];
	int n = std::snprintf(buf, sizeof(buf), "usmp: ");
	va_list ap;
	va_start(ap, fmt);
	n += std::vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	if (n > static_cast<int>(sizeof(buf)) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	write_all(buf, static_cast<unsigned long>(n));
}

void
panic(const char *fmt, ...) noexcept
{
	char buf[1536];
	if (g_panicking.fetch_add(1) != 0) {
		// A panic inside a panic: say so and stop at once.
		write_str("usmp: panic: nested panic\n");
		std::abort();
	}
	int n = std::snprintf(buf, sizeof(buf), "usmp: panic: ");
	va_list ap;
	va_start(ap, fmt);
	n += std::vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	if (n > static_cast<int>(sizeof(buf)) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	write_all(buf, static_cast<unsigned long>(n));

	pcpu *pc = curpcpu_fast();
	if (pc != nullptr) {
		thread *td = pc->pc_curthread;
		n = std::snprintf(buf, sizeof(buf),
		    "usmp: cpuid = %d; thread \"%s\" (tid %d)\n", pc->pc_cpuid,
		    td != nullptr ? td->td_name : "?", td != nullptr ? td->td_tid : -1);
	} else {
		n = std::snprintf(buf, sizeof(buf),
		    "usmp: on a foreign OS thread (not a CPU of the machine)\n");
	}
	write_all(buf, static_cast<unsigned long>(n));
	if (panic_hook_fn hook = g_panic_hook.load(std::memory_order_acquire))
		hook(write_all);
	write_str("usmp: backtrace:\n");
	void *frames[48];
	int nf = backtrace(frames, 48);
	backtrace_symbols_fd(frames, nf, 2);
	std::abort();
}

} // namespace usmp

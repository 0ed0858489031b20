// KTR: per-CPU event trace rings (FreeBSD's ktr(4)), exported in the Chrome
// trace-event JSON format, which Perfetto (ui.perfetto.dev) and
// chrome://tracing open as a timeline of what each CPU ran: the modern form
// of FreeBSD's schedgraph.
//
//     cmake -DUSMP_KTR=ON ...
//     usmp::run(cfg, [] { ... });
//     usmp::ktr_export_chrome("trace.json");    // after run(): the rings stay
//
// Built with USMP_KTR=OFF (the default), every ktr_*() event call below is an
// empty inline function: no code, no data, at the call sites.  With it on,
// each CPU records into its own ring of ktr_entries() entries (64 bytes: a
// TSC timestamp, the event, the current thread's id and two words, and a
// name copied in), claimed with one non-locked xadd on the CPU's own index:
// no lock, no shared cache line, safe against the preemption signal on the
// same OS thread.  Foreign OS threads (the hardclock, threads that are no
// CPU) share one more ring, claimed with an atomic add.  A full ring
// overwrites its oldest entries.
//
// What the runtime records: every context switch (old and new thread, on
// the CPU that switched), wakeups (on the waker's CPU), steals (on the
// stealing CPU), preemptions.  Other layers call the same functions: sync/
// for turnstile contention, interrupts/ for interrupt handlers and callouts
// (ktr_intr_begin/end, ktr_callout_begin/end).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "runtime/config.h"

namespace usmp {

enum ktr_event : uint16_t {
	KTR_NONE,
	KTR_SWITCH,         // tid: old; a: new tid; b: new priority; name: new
	KTR_WAKEUP,         // tid: waker; a: woken tid; b: its CPU; name: woken
	KTR_STEAL,          // tid: stealer's curthread; a: stolen tid; b: from CPU
	KTR_PREEMPT,        // tid: preempted; a: switch flags (SW_*)
	KTR_LOCK_CONTEND,   // tid: blocked; a: lock address; name: lock
	KTR_LOCK_ACQUIRE,   // after a contention; as KTR_LOCK_CONTEND
	KTR_LOCK_RELEASE,   // a release that woke waiters; as KTR_LOCK_CONTEND
	KTR_INTR_BEGIN,     // a: event cookie; name: interrupt event
	KTR_INTR_END,       // as KTR_INTR_BEGIN
	KTR_CALLOUT_BEGIN,  // a: callout address; name: its function or name
	KTR_CALLOUT_END,    // as KTR_CALLOUT_BEGIN
	KTR_USER,           // a, b: anything; name: the event's name
};

// KTR_SWITCH flags.
enum : uint16_t {
	KTRF_IDLE = 0x1, // the new thread is the CPU's idle thread
};

struct ktr_entry {
	uint64_t ke_tsc;      // rdtsc
	uint16_t ke_event;    // ktr_event
	uint16_t ke_flags;
	int32_t ke_tid;       // the current thread
	uint64_t ke_a, ke_b;
	char ke_name[32];     // NUL-terminated, truncated
};
static_assert(sizeof(ktr_entry) == 64);

// Out of line; the inline functions below call it only when USMP_KTR is on.
// Context: any, including signal handlers.
void ktr_record(ktr_event ev, uint16_t flags, uint64_t a, uint64_t b,
    const char *name) noexcept;

inline void
ktr_event_record(ktr_event ev, uint64_t a = 0, uint64_t b = 0,
    const char *name = nullptr, uint16_t flags = 0) noexcept
{
	if constexpr (config::ktr)
		ktr_record(ev, flags, a, b, name);
}
inline void
ktr_lock_contend(const void *lock, const char *name) noexcept
{
	ktr_event_record(KTR_LOCK_CONTEND, reinterpret_cast<uintptr_t>(lock), 0, name);
}
inline void
ktr_lock_acquire(const void *lock, const char *name) noexcept
{
	ktr_event_record(KTR_LOCK_ACQUIRE, reinterpret_cast<uintptr_t>(lock), 0, name);
}
inline void
ktr_lock_release(const void *lock, const char *name) noexcept
{
	ktr_event_record(KTR_LOCK_RELEASE, reinterpret_cast<uintptr_t>(lock), 0, name);
}
inline void
ktr_intr_begin(const void *ie, const char *name) noexcept
{
	ktr_event_record(KTR_INTR_BEGIN, reinterpret_cast<uintptr_t>(ie), 0, name);
}
inline void
ktr_intr_end(const void *ie, const char *name) noexcept
{
	ktr_event_record(KTR_INTR_END, reinterpret_cast<uintptr_t>(ie), 0, name);
}
inline void
ktr_callout_begin(const void *c, const char *name) noexcept
{
	ktr_event_record(KTR_CALLOUT_BEGIN, reinterpret_cast<uintptr_t>(c), 0, name);
}
inline void
ktr_callout_end(const void *c, const char *name) noexcept
{
	ktr_event_record(KTR_CALLOUT_END, reinterpret_cast<uintptr_t>(c), 0, name);
}

// Entries per ring for the next machine_boot() (rounded up to a power of two,
// at least 64; default 32768 = 2 MiB per CPU).  Context: no machine running.
void ktr_set_entries(std::size_t n) noexcept;

// The rings are made at machine_boot() (only with USMP_KTR on) and kept after
// machine_shutdown() until the next boot, so that a program exports after
// run().  Rings: one per CPU of the last machine, then the foreign ring.
int ktr_rings() noexcept;
// Entries recorded in ring r since boot (may exceed its size: overwritten).
uint64_t ktr_recorded(int ring) noexcept;
// Copy ring r's surviving entries, oldest first, into out (at most max);
// returns the count.  Exact once the machine has stopped.
std::size_t ktr_read(int ring, ktr_entry *out, std::size_t max) noexcept;
// Forget every entry (keeps the rings).
void ktr_clear() noexcept;

// Write the rings as Chrome trace-event JSON: one process "usmp", one track
// per CPU (tid = CPU number; the foreign ring is the last track) with a
// complete ("X") event for each stretch a green thread ran, named
// "<name> (tid N)", and instant ("i") events for wakeups, steals,
// preemptions and lock events; interrupt handlers and callouts become
// complete events (begin/end pairs) on their CPU's track.  Exact once the
// machine has stopped; while it runs, entries being written may be torn.
// Returns 0 or an errno.  Context: a foreign OS thread or a green thread;
// allocates.
int ktr_export_chrome(std::FILE *f) noexcept;
int ktr_export_chrome(const char *path) noexcept;

} // namespace usmp

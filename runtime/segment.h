// Segments: Plan 9's segattach(2) with the SG_NONE and SG_COMMIT classes and
// an address-ordered segment table without a fixed limit (Venkatesh
// Srinivas's 2010 segment work), over mmap(2) in one Linux process.
//
// A segment is a page-aligned range of address space with one backing
// class, a short name and an opaque owner:
//
//   plain      anonymous memory, faulted in lazily (flags 0)
//   SG_NONE    no backing store: any access, read or write, faults.  Red
//              zones.  Made with MADV_GUARD_INSTALL (Linux 6.13; no VMA
//              split) inside a larger mapping, else PROT_NONE.
//   SG_COMMIT  pre-faulted and locked (mlock); counted against a
//              process-wide commit limit.  An attach that would pass the
//              limit, or whose pages cannot all be faulted in and locked,
//              fails with ENOMEM and leaves nothing behind.
//
// SG_NONE | SG_COMMIT is EINVAL, as in Plan 9.  SG_STACK is informational:
// the segment is part of a thread stack and its owner is a struct stack
// (runtime/stack.h).
//
// Every segment is in one table, ordered by address, that any thread or a
// signal handler may search (seg_lookup) without a lock and without
// allocating; the SIGSEGV handler uses it to tell a stack overflow from a
// wild pointer.  Writers (attach, detach) serialise on a mutex and publish a
// new version of the table; segattachv() attaches several neighbouring
// segments (a stack arena: red zone, stack, red zone, stack, ..., red zone)
// with one mmap and one table update.  The table's design is at the top of
// runtime/segment.cc.
#pragma once

#include <cstddef>
#include <cstdint>

namespace usmp {

// Segment classes and attributes (s_flags).
inline constexpr unsigned SG_NONE = 0x01;   // no backing store: any access faults
inline constexpr unsigned SG_COMMIT = 0x02; // pre-faulted and locked; counted
inline constexpr unsigned SG_STACK = 0x10;  // part of a thread stack: s_owner
                                            // is a struct stack

inline constexpr std::size_t SEG_NAMELEN = 20;

// One entry of the segment table.  Entries are immutable: a lookup returns
// a copy, valid even if the segment is detached right after.
struct segment {
	uintptr_t s_base = 0;        // first byte (page-aligned)
	std::size_t s_len = 0;       // bytes (a multiple of the page size)
	void *s_owner = nullptr;     // opaque; a struct stack for SG_STACK
	unsigned s_flags = 0;        // SG_*
	char s_name[SEG_NAMELEN] = {}; // NUL-terminated, truncated

	bool contains(const void *a) const noexcept
	{
		uintptr_t p = reinterpret_cast<uintptr_t>(a);
		return p >= s_base && p - s_base < s_len;
	}
	char *base() const noexcept { return reinterpret_cast<char *>(s_base); }
	char *end() const noexcept { return base() + s_len; }
};

// Attach a new segment of `len` bytes (rounded up to whole pages).  If
// *addrp is null on entry, the system picks the address; otherwise *addrp
// must be page-aligned and the range free (EEXIST if it is not).  On success
// *addrp is the segment's base.  Returns 0, EINVAL (bad flags, len 0),
// ENOMEM (no address space or memory; for SG_COMMIT, over the commit limit or
// mlock failed), EEXIST.  On failure nothing is mapped and the table is
// unchanged.  Context: any thread (not a signal handler); makes system calls.
int segattach(unsigned flags, std::size_t len, void **addrp,
    const char *name = nullptr, void *owner = nullptr) noexcept;

// One segment of a segattachv() batch.
struct seg_spec {
	unsigned ss_flags = 0;       // SG_* of this piece
	std::size_t ss_len = 0;      // bytes, a multiple of the page size
	const char *ss_name = nullptr;
	void *ss_owner = nullptr;    // may be set by the prepare callback
	void *ss_addr = nullptr;     // out: the piece's base
};

// Called by segattachv() once the pieces are mapped (ss_addr filled in; the
// non-SG_NONE pieces readable and writable) and before they are published:
// it may set ss_owner, e.g. to a descriptor it places inside a piece.
using seg_prepare_fn = void (*)(seg_spec *v, std::size_t n, void *arg);

// Attach n segments laid out back to back, in the order given, with one
// mmap and one table update: all or nothing.  Each ss_len must be a multiple
// of the page size.  SG_NONE pieces become guard pages (MADV_GUARD_INSTALL,
// falling back to mprotect(PROT_NONE), which costs a VMA each: mind
// vm.max_map_count, 65530 by default); SG_COMMIT pieces are locked and
// counted.  Returns as segattach().  Context: as segattach().
int segattachv(seg_spec *v, std::size_t n, seg_prepare_fn prepare = nullptr,
    void *arg = nullptr) noexcept;

// Detach the segment that contains addr and unmap it.  Returns 0 or EINVAL
// (no segment there).  Context: as segattach().
int segdetach(void *addr) noexcept;

// Detach every segment inside [lo, lo + len) with one table update and one
// munmap: the inverse of segattachv().  Returns 0 or EINVAL (a segment
// crosses an end of the range, the range is not page-aligned, or it holds no
// segment).  Context: as segattach().
int segdetach_range(void *lo, std::size_t len) noexcept;

// Copy the segment that contains addr into *out.  Returns false if none
// does.  Context: any, including signal handlers: lock-free, wait-free but
// for a CAS retry loop, allocates nothing.
bool seg_lookup(const void *addr, segment *out) noexcept;

// Number of segments in the table.  Context: any (lock-free).
std::size_t seg_count() noexcept;

// Call fn on a consistent snapshot of the table, in address order, until it
// returns false.  fn must not attach or detach.  Context: any thread.
using seg_visit_fn = bool (*)(const segment &s, void *arg);
void seg_foreach(seg_visit_fn fn, void *arg) noexcept;

// Print the table to stderr, one segment a line.  Context: any thread.
void seg_dump() noexcept;

// The SG_COMMIT limit in bytes; 0 restores the default, the soft
// RLIMIT_MEMLOCK (unlimited if that is).  Lowering it below what is already
// committed only refuses new SG_COMMIT attaches.  Context: any thread.
void seg_set_commit_limit(std::size_t bytes) noexcept;
std::size_t seg_commit_limit() noexcept;
// Bytes currently attached with SG_COMMIT.
std::size_t seg_committed() noexcept;

// How SG_NONE pieces inside a segattachv() mapping are made:
// "guard" (MADV_GUARD_INSTALL) or "mprotect".  Decided on first use: guard
// unless the kernel refuses it (EINVAL, before 6.13) or the environment has
// USMP_SEG_REDZONE=mprotect.  seg_set_redzone_method() forces one (tests);
// it affects later attaches only.
const char *seg_redzone_method() noexcept;
void seg_set_redzone_method(bool use_guard) noexcept;

// Internals, for tests and diagnostics.
struct seg_table_info {
	std::size_t ti_segments; // entries in the current table
	std::size_t ti_chunks;   // its chunks
	std::size_t ti_retired;  // old versions not yet freed (held by readers)
	uint64_t ti_updates;     // table versions published so far
};
seg_table_info seg_get_table_info() noexcept;

} // namespace usmp

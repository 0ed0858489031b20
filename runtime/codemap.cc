// The code map: which instructions may be preempted asynchronously.
//
// Vocabulary.  An *object* is anything the dynamic loader reports: the main
// executable, each shared object, the vDSO.  Its *text* is its executable
// PT_LOAD segments.  A *range* is a half-open [lo, hi) interval of text
// addresses with one *class* (app, usmp, std::, ...); only class app is
// preemptible.  The *load bias* is what the loader added to the link-time
// addresses of a position-independent executable (dlpi_addr; 0 otherwise).
//
// The problem.  The full-preemption signal lands on an arbitrary instruction.
// Switching green threads there is safe only if the interrupted code keeps
// no state that another green thread on the same CPU (OS thread) could
// touch: application code qualifies, because it already runs among other
// green threads and uses usmp's locks.  libc (malloc arenas, stdio locks,
// per-OS-thread caches), the C++ runtime (exception and allocator state),
// the loader, system libraries and usmp itself (run queues, per-CPU data)
// do not.  The handler must decide from the interrupted PC alone, without
// locks, system calls or allocation.
//
// Approaches rejected:
//  - Address ranges only (the executable is preemptible, shared objects are
//    not).  usmp is a static library: its scheduler lies in the executable's
//    text, and so do std:: and Catch2 instantiations.
//  - dladdr() in the handler.  It takes the loader lock (not signal-safe)
//    and sees only exported symbols.
//  - A text section of usmp's own, by attribute or linker script.  Inline
//    functions, template instantiations and lambdas go to COMDAT sections of
//    their own, GCC has no per-file section flag, and users would inherit a
//    linker script.
//  - DWARF, which also knows inlined code.  Absent from release builds and
//    far too heavy to read at boot.
// What remains is the symbol table, which every unstripped executable has
// and which names every function, clone and lambda body, mangled.
//
// Classification (classify() and friends below).  Each FUNC symbol of the
// executable's .symtab (.dynsym if stripped) is judged by its name; the
// outermost name of a mangled name decides, whatever the template arguments:
// std::function's invoker for an application lambda is std::, usmp::run<F>
// for an application F is usmp, app::f<usmp::mutex> is app, and the lambda's
// own body (_ZZ4mainENKUlvE_clEv, a local entity of main) is app.
//  - usmp: namespace usmp (_ZN4usmp, _ZNK4usmp, local entities _ZZN4usmp,
//    static and anonymous-namespace functions nested in it, lambdas and
//    instantiations whose outermost name is usmp), and extern "C" usmp_*.
//  - std::: _ZSt, _ZNSt, _ZNKSt, _ZZNSt and the other standard
//    abbreviations (Sa, Sb, Ss, Si, So, Sd), and __gnu_cxx.
//  - boost::, Catch:: (Catch2's internals are a runtime of their own).
//  - runtime: reserved names, i.e. any outermost name at global scope that
//    begins with an underscore (__cxxabiv1, __gnu_debug, __sanitizer, _start,
//    _init, _fini, __libc_csu_init, _GLOBAL__sub_I_*, __do_global_dtors_aux),
//    crtstuff's frame_dummy and *register_tm_clones, libc_nonshared's
//    atexit, at_quick_exit and pthread_atfork, sanitizer module constructors,
//    and every local function of an object that has no source file name
//    (toolchain objects such as libgcc's cpuinfo.o, crt*.o).
//  - allocator: global operator new and delete, and malloc and friends if
//    the executable defines them.
//  - library: Boost.Context's assembly (jump_fcontext, make_fcontext,
//    ontop_fcontext) and the inline helpers of liburing and hwloc
//    (io_uring_*, hwloc_*) that the compiler emitted out of line.
//  - special: thunks, TLS wrappers and init functions, transaction clones
//    (_ZT*, _ZG*), and GNU indirect-function resolvers.
//  - unknown: a mangled name this parser does not understand.
//  - app: everything else, which includes main, global-scope functions,
//    top-level anonymous namespaces and static functions, and Catch2's
//    test-case bodies (C_A_T_C_H_T_E_S_T_<n>, or the reserved
//    ____C_A_T_C_H____T_E_S_T____<n> of Catch2 before 2.13.5).
// Clones keep their origin's class (main.cold, f.part.0, g.constprop.1).
// When ranges overlap (aliases, and identical code folding, which at -O2
// folds a usmp static function and an application one into one body),
// excluded wins: a byte is preemptible only if every symbol that covers it
// is app.  Code no symbol covers (PLT stubs, padding) is not preemptible.
//
// When names cannot be trusted the whole executable is excluded, with a
// note (codemap_note()) and codemap_init() still returning 0:
//  - no symbol table (stripped, and nothing exported in .dynsym);
//  - a statically linked C or C++ runtime, detected by the executable
//    defining __libc_start_main, __cxa_throw, __gxx_personality_v0,
//    _Unwind_RaiseException, malloc (static libc or an allocator linked
//    in), a sanitizer's __*san_init, io_uring_queue_init or
//    hwloc_topology_init: their C functions and file-local helpers have
//    names no different from the application's;
//  - /proc/self/exe unreadable, malformed, or not the image that is loaded
//    (its PT_LOAD headers must match the loader's).
//
// Known limits.  Library or usmp code that the compiler inlined into an
// application function is part of that function (runtime/codemap.h states
// the rule this puts on usmp's headers).  A static C library other than
// those detected above is indistinguishable from application C code: link
// it dynamically.  So are the file-local functions of a C++ library outside
// any namespace: Catch2's benchmark statistics (erf_inv, standard_deviation
// in a top-level anonymous namespace) count as app, harmlessly, as they
// are pure arithmetic.  Objects opened later with dlopen() are not in the
// map, so they are "unknown" and, like every shared object, not
// preemptible.
//
// The protocol:
//  1. codemap_init(), serialised by init_lock, collects the text segments of
//     every object with dl_iterate_phdr() and finds the executable by
//     getauxval(AT_PHDR).
//  2. It maps /proc/self/exe (for "ld.so ./prog", which makes that the
//     loader, the file /proc/self/maps shows at the executable's text),
//     checks that its PT_LOAD headers match the loaded ones, classifies
//     every defined FUNC symbol, and turns the symbols into ranges at
//     link-time address + load bias, clipped to the executable's text.
//  3. A sweep over the range ends yields sorted, disjoint ranges, each of
//     the highest-priority class covering it (enum cm_class order, app
//     last), adjacent equal ranges merged.
//  4. Self-check: codemap_init and codemap_preemptible themselves must not
//     be preemptible.  If they are, the names were misread: the executable
//     is wholly excluded instead.
//  5. The map is published with a release store of g_map; the handler's
//     acquire load in codemap_preemptible() pairs with it, so a handler that
//     sees the pointer sees the finished arrays.  The map is never written
//     again and never freed (a handler may be reading it), so lookups need
//     no lock and no reference count.
//  6. Before publication g_map is null and every lookup says "not
//     preemptible".
#include "runtime/codemap.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace usmp {

namespace {

// The classes, in priority order: when ranges of several classes overlap,
// the first one in this list names the result.  CM_APP must stay last.
enum cm_class : uint8_t {
	CM_USMP,
	CM_STD,
	CM_BOOST,
	CM_CATCH,
	CM_ALLOC,
	CM_LIBRARY,
	CM_RUNTIME,
	CM_SPECIAL,
	CM_UNKNOWN,
	CM_APP,
	CM_NCLASS
};

const char *const class_names[CM_NCLASS] = {
	"usmp", "std::", "boost::", "Catch::", "allocator", "library",
	"runtime", "special", "unknown", "app",
};

// Text of one loaded object.  cmo_name is an offset into cm_names, or
// NO_NAME for the main executable.
struct cm_object {
	uintptr_t cmo_lo;
	uintptr_t cmo_hi;
	size_t cmo_name;
};
constexpr size_t NO_NAME = ~size_t(0);

// The published map.  Every field is (c): written by codemap_init() before
// the release store of g_map, never written afterwards, never freed.
struct codemap {
	// Ranges of the executable, sorted and disjoint (struct of arrays: the
	// binary search touches only cm_lo).
	std::vector<uintptr_t> cm_lo;
	std::vector<uintptr_t> cm_hi;
	std::vector<uint8_t> cm_class;
	size_t cm_npreempt = 0;
	size_t cm_nexcluded = 0;
	// Text of every object, sorted by address.
	std::vector<cm_object> cm_objects;
	std::string cm_names;	// NUL-separated basenames
	const char *cm_note = nullptr;	// null or cm_notebuf
	char cm_notebuf[192] = {};
	// False when the executable is wholly excluded.
	bool cm_classified = false;
};

std::atomic<const codemap *> g_map{nullptr};	// (a) release/acquire
static_assert(std::atomic<const codemap *>::is_always_lock_free,
    "the signal handler loads g_map");
std::mutex init_lock;	// serialises codemap_init()

// --- Classification of names ------------------------------------------

bool
starts_with(const char *s, const char *prefix) noexcept
{
	return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}

// The Itanium ABI's one-letter abbreviations after 'S' that mean std::
// (St std::, Sa allocator, Sb basic_string, Ss string, Si istream,
// So ostream, Sd iostream).
bool
std_abbreviation(char c) noexcept
{
	return c != '\0' && std::strchr("tabsiod", c) != nullptr;
}

// Class of an outermost name, an identifier at global scope of length len.
cm_class
classify_outer(const char *id, size_t len) noexcept
{
	auto is = [&](const char *s) {
		return std::strlen(s) == len && std::memcmp(id, s, len) == 0;
	};
	auto has_prefix = [&](const char *s) {
		size_t n = std::strlen(s);
		return n <= len && std::memcmp(id, s, n) == 0;
	};

	if (is("usmp"))
		return CM_USMP;
	if (is("std") || is("__gnu_cxx"))
		return CM_STD;
	if (is("boost"))
		return CM_BOOST;
	if (is("Catch"))
		return CM_CATCH;
	// A top-level anonymous namespace: the application's (usmp nests its
	// own inside namespace usmp).
	if (has_prefix("_GLOBAL__N"))
		return CM_APP;
	// Catch2's TEST_CASE bodies before 2.13.5: reserved names made by
	// its macros, but application code.
	if (has_prefix("____C_A_T_C_H____"))
		return CM_APP;
	// At global scope every name that begins with an underscore is
	// reserved to the implementation.
	if (id[0] == '_')
		return CM_RUNTIME;
	return CM_APP;
}

// Parse an Itanium <source-name> (decimal length, then the identifier) at
// *pp.  On success point *pp past it and return the identifier.
const char *
source_name(const char **pp, size_t *lenp) noexcept
{
	const char *p = *pp;
	size_t len = 0;

	if (*p < '1' || *p > '9')
		return nullptr;
	while (*p >= '0' && *p <= '9') {
		len = len * 10 + size_t(*p - '0');
		if (len > 4096)
			return nullptr;
		p++;
	}
	if (strnlen(p, len) < len)
		return nullptr;
	*pp = p + len;
	*lenp = len;
	return p;
}

cm_class classify_encoding(const char *p, int depth) noexcept;

// After "N": [CV-qualifiers] [ref-qualifier] then the outermost prefix.
cm_class
classify_nested(const char *p) noexcept
{
	size_t len;
	const char *id;

	while (*p == 'r' || *p == 'V' || *p == 'K')
		p++;
	if (*p == 'R' || *p == 'O')
		p++;
	if (*p == 'S')
		return std_abbreviation(p[1]) ? CM_STD : CM_UNKNOWN;
	if (*p == 'L')	// internal linkage
		p++;
	if ((id = source_name(&p, &len)) != nullptr)
		return classify_outer(id, len);
	// A closure or unnamed type at global scope.
	if (p[0] == 'U' && (p[1] == 'l' || p[1] == 't'))
		return CM_APP;
	return CM_UNKNOWN;
}

// A name not in a nested-name: "L"? then a source name, an operator, or a
// std abbreviation.
cm_class
classify_unscoped(const char *p) noexcept
{
	size_t len;
	const char *id;

	if (*p == 'L')
		p++;
	if (*p == 'S')
		return std_abbreviation(p[1]) ? CM_STD : CM_UNKNOWN;
	if ((id = source_name(&p, &len)) != nullptr)
		return classify_outer(id, len);
	if (p[0] >= 'a' && p[0] <= 'z' && p[1] != '\0') {
		// Global operator new, new[], delete, delete[] (every
		// overload): an allocator if the executable replaces them.
		if ((p[0] == 'n' && (p[1] == 'w' || p[1] == 'a')) ||
		    (p[0] == 'd' && (p[1] == 'l' || p[1] == 'a')))
			return CM_ALLOC;
		return CM_APP;	// other global operators, literal operators
	}
	return CM_UNKNOWN;
}

// An <encoding>, the part of a mangled name after "_Z".
cm_class
classify_encoding(const char *p, int depth) noexcept
{
	if (depth > 16)
		return CM_UNKNOWN;
	switch (*p) {
	case 'Z':	// local entity: the enclosing function decides
		return classify_encoding(p + 1, depth + 1);
	case 'T':	// thunks, TLS wrappers and init functions
	case 'G':	// transaction clones, guard variables
		return CM_SPECIAL;
	case 'N':
		return classify_nested(p + 1);
	default:
		return classify_unscoped(p);
	}
}

bool
in_list(const char *s, size_t len, const char *const *list) noexcept
{
	for (; *list != nullptr; list++)
		if (std::strlen(*list) == len &&
		    std::memcmp(s, *list, len) == 0)
			return true;
	return false;
}

const char *const startup_names[] = {
	// crtstuff.c
	"frame_dummy", "register_tm_clones", "deregister_tm_clones",
	// libc_nonshared.a, linked into every executable
	"atexit", "at_quick_exit", "pthread_atfork",
	nullptr,
};

const char *const library_names[] = {
	// Boost.Context's assembly, if linked statically
	"jump_fcontext", "make_fcontext", "ontop_fcontext",
	nullptr,
};

const char *const allocator_names[] = {
	"malloc", "free", "calloc", "realloc", "reallocarray", "memalign",
	"aligned_alloc", "posix_memalign", "valloc", "pvalloc",
	"malloc_usable_size",
	nullptr,
};

// Names whose definition in the executable means a statically linked
// runtime (see the top of this file).
const char *const static_runtime_names[] = {
	"__libc_start_main", "__cxa_throw", "__gxx_personality_v0",
	"_Unwind_RaiseException", "malloc", "__asan_init", "__tsan_init",
	"__msan_init", "__hwasan_init", "__lsan_init", "io_uring_queue_init",
	"hwloc_topology_init",
	nullptr,
};

cm_class
classify_c(const char *name) noexcept
{
	const char *dot = std::strchr(name, '.');
	size_t len = dot != nullptr ? size_t(dot - name) : std::strlen(name);

	if (len == 4 && std::memcmp(name, "main", 4) == 0)
		return CM_APP;
	if (len == 0 || name[0] == '_')
		return CM_RUNTIME;
	if (starts_with(name, "usmp_"))
		return CM_USMP;
	if (in_list(name, len, startup_names))
		return CM_RUNTIME;
	// asan.module_ctor, tsan.module_dtor, sancov.module_ctor_trace_pc_guard
	if (dot != nullptr && (starts_with(dot, ".module_ctor") ||
	    starts_with(dot, ".module_dtor")))
		return CM_RUNTIME;
	if (in_list(name, len, library_names) ||
	    starts_with(name, "io_uring_") || starts_with(name, "hwloc_"))
		return CM_LIBRARY;
	if (in_list(name, len, allocator_names))
		return CM_ALLOC;
	return CM_APP;
}

// Class of a function symbol of the executable, by its name.
cm_class
classify(const char *name) noexcept
{
	if (name[0] == '_' && name[1] == 'Z')
		return classify_encoding(name + 2, 0);
	return classify_c(name);
}

// --- Loaded objects ----------------------------------------------------

struct text_seg {
	uintptr_t lo;
	uintptr_t hi;
};

struct exe_image {
	bool found = false;
	uintptr_t bias = 0;
	std::string path;	// dlpi_name, often empty
	std::vector<ElfW(Phdr)> phdrs;
	std::vector<text_seg> text;
};

struct phdr_walk {
	codemap *map;
	exe_image *exe;
	uintptr_t at_phdr;
	bool nomem;
};

int
phdr_callback(struct dl_phdr_info *info, size_t, void *arg) noexcept
{
	auto *w = static_cast<phdr_walk *>(arg);
	bool is_exe =
	    reinterpret_cast<uintptr_t>(info->dlpi_phdr) == w->at_phdr;
	const char *dlname = info->dlpi_name != nullptr ? info->dlpi_name : "";

	try {
		size_t name = NO_NAME;
		if (!is_exe) {
			const char *n = dlname;
			const char *slash = std::strrchr(n, '/');
			if (slash != nullptr)
				n = slash + 1;
			if (*n == '\0')
				n = "unknown";
			name = w->map->cm_names.size();
			w->map->cm_names.append(n);
			w->map->cm_names.push_back('\0');
		} else {
			w->exe->found = true;
			w->exe->bias = info->dlpi_addr;
			w->exe->path = dlname;
			w->exe->phdrs.assign(info->dlpi_phdr,
			    info->dlpi_phdr + info->dlpi_phnum);
		}
		for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
			const ElfW(Phdr) &ph = info->dlpi_phdr[i];
			if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0 ||
			    ph.p_memsz == 0)
				continue;
			uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
			uintptr_t hi = lo + ph.p_memsz;
			w->map->cm_objects.push_back({lo, hi, name});
			if (is_exe)
				w->exe->text.push_back({lo, hi});
		}
	} catch (const std::bad_alloc &) {
		w->nomem = true;
		return 1;
	}
	return 0;
}

// --- The executable's file ---------------------------------------------

// A read-only mapping of a file, unmapped on scope exit.
struct file_map {
	const unsigned char *fm_base = nullptr;
	size_t fm_size = 0;

	~file_map()
	{
		if (fm_base != nullptr)
			munmap(const_cast<unsigned char *>(fm_base), fm_size);
	}

	bool
	open(const char *path) noexcept
	{
		int fd = ::open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return false;
		struct stat st;
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
		    st.st_size < off_t(sizeof(ElfW(Ehdr)))) {
			::close(fd);
			return false;
		}
		void *p = mmap(nullptr, size_t(st.st_size), PROT_READ,
		    MAP_PRIVATE, fd, 0);
		::close(fd);
		if (p == MAP_FAILED)
			return false;
		fm_base = static_cast<const unsigned char *>(p);
		fm_size = size_t(st.st_size);
		return true;
	}

	// A pointer to n bytes at off, or null if they are not all in the file.
	const void *
	at(uint64_t off, uint64_t n) const noexcept
	{
		if (off > fm_size || n > fm_size - off)
			return nullptr;
		return fm_base + off;
	}
};

const ElfW(Ehdr) *
elf_header(const file_map &f) noexcept
{
	auto *eh = static_cast<const ElfW(Ehdr) *>(f.at(0, sizeof(ElfW(Ehdr))));
	if (eh == nullptr || std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_phentsize != sizeof(ElfW(Phdr)))
		return nullptr;
	return eh;
}

// True if the file's PT_LOAD headers are the loaded image's.
bool
matches_image(const file_map &f, const exe_image &exe) noexcept
{
	const ElfW(Ehdr) *eh = elf_header(f);
	if (eh == nullptr)
		return false;
	auto *ph = static_cast<const ElfW(Phdr) *>(
	    f.at(eh->e_phoff, uint64_t(eh->e_phnum) * sizeof(ElfW(Phdr))));
	if (ph == nullptr)
		return false;
	size_t j = 0;
	for (size_t i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		while (j < exe.phdrs.size() && exe.phdrs[j].p_type != PT_LOAD)
			j++;
		if (j == exe.phdrs.size())
			return false;
		const ElfW(Phdr) &q = exe.phdrs[j++];
		if (ph[i].p_vaddr != q.p_vaddr || ph[i].p_memsz != q.p_memsz ||
		    ph[i].p_offset != q.p_offset || ph[i].p_flags != q.p_flags)
			return false;
	}
	while (j < exe.phdrs.size() && exe.phdrs[j].p_type != PT_LOAD)
		j++;
	return j == exe.phdrs.size();
}

struct sym_range {
	uintptr_t lo;
	uintptr_t hi;
	cm_class cls;
};

enum class symtab_result { ok, none, malformed, static_runtime };

// Classify every defined function of the symbol table of type `type`
// (SHT_SYMTAB or SHT_DYNSYM) into out.  On static_runtime, *culprit names
// the symbol that gave it away.
symtab_result
read_symbols(const file_map &f, const exe_image &exe, uint32_t type,
    std::vector<sym_range> &out, const char **culprit)
{
	const ElfW(Ehdr) *eh = elf_header(f);
	if (eh == nullptr || eh->e_shoff == 0)
		return symtab_result::malformed;
	if (eh->e_shentsize != sizeof(ElfW(Shdr)))
		return symtab_result::malformed;
	auto *sh0 = static_cast<const ElfW(Shdr) *>(
	    f.at(eh->e_shoff, sizeof(ElfW(Shdr))));
	if (sh0 == nullptr)
		return symtab_result::malformed;
	uint64_t shnum = eh->e_shnum != 0 ? eh->e_shnum : sh0->sh_size;
	auto *sh = static_cast<const ElfW(Shdr) *>(
	    f.at(eh->e_shoff, shnum * sizeof(ElfW(Shdr))));
	if (sh == nullptr)
		return symtab_result::malformed;

	const ElfW(Shdr) *symsh = nullptr;
	for (uint64_t i = 0; i < shnum; i++)
		if (sh[i].sh_type == type) {
			symsh = &sh[i];
			break;
		}
	if (symsh == nullptr)
		return symtab_result::none;
	if (symsh->sh_entsize != sizeof(ElfW(Sym)) || symsh->sh_link >= shnum)
		return symtab_result::malformed;
	const ElfW(Shdr) &strsh = sh[symsh->sh_link];
	if (strsh.sh_type != SHT_STRTAB)
		return symtab_result::malformed;
	auto *syms = static_cast<const ElfW(Sym) *>(
	    f.at(symsh->sh_offset, symsh->sh_size));
	auto *strs = static_cast<const char *>(
	    f.at(strsh.sh_offset, strsh.sh_size));
	if (syms == nullptr || strs == nullptr || strsh.sh_size == 0 ||
	    strs[strsh.sh_size - 1] != '\0')
		return symtab_result::malformed;
	size_t nsyms = symsh->sh_size / sizeof(ElfW(Sym));

	// Local symbols follow the STT_FILE symbol of their object; an object
	// the linker had to name itself ("cpuinfo.o", "Scrt1.o") was built
	// without a source name: toolchain code.
	bool toolchain_file = false;
	for (size_t i = 0; i < nsyms; i++) {
		const ElfW(Sym) &s = syms[i];
		if (s.st_name >= strsh.sh_size)
			return symtab_result::malformed;
		const char *name = strs + s.st_name;
		unsigned stt = ELF64_ST_TYPE(s.st_info);

		if (stt == STT_FILE) {
			size_t n = std::strlen(name);
			toolchain_file = std::strcmp(name, "crtstuff.c") == 0 ||
			    (n >= 2 && std::strcmp(name + n - 2, ".o") == 0);
			continue;
		}
		if (stt != STT_FUNC && stt != STT_GNU_IFUNC)
			continue;
		if (s.st_shndx == SHN_UNDEF || s.st_shndx == SHN_ABS)
			continue;
		if (in_list(name, std::strlen(name), static_runtime_names)) {
			*culprit = name;
			return symtab_result::static_runtime;
		}
		if (s.st_size == 0)
			continue;

		cm_class cls;
		if (stt == STT_GNU_IFUNC)
			cls = CM_SPECIAL;	// the resolver, run by ld.so
		else if (toolchain_file &&
		    ELF64_ST_BIND(s.st_info) == STB_LOCAL)
			cls = CM_RUNTIME;
		else
			cls = classify(name);

		uintptr_t lo = exe.bias + s.st_value;
		uintptr_t hi = lo + s.st_size;
		if (hi < lo)
			continue;
		// Clip to the executable's text.
		for (const text_seg &t : exe.text) {
			uintptr_t l = std::max(lo, t.lo);
			uintptr_t h = std::min(hi, t.hi);
			if (l < h)
				out.push_back({l, h, cls});
		}
	}
	return symtab_result::ok;
}

// Steps 2 and 3: the sorted, disjoint ranges of the executable.
void
build_ranges(codemap *m, std::vector<sym_range> &syms)
{
	struct edge {
		uintptr_t at;
		int delta;
		cm_class cls;
	};
	std::vector<edge> edges;
	edges.reserve(2 * syms.size());
	for (const sym_range &r : syms) {
		edges.push_back({r.lo, +1, r.cls});
		edges.push_back({r.hi, -1, r.cls});
	}
	std::sort(edges.begin(), edges.end(),
	    [](const edge &a, const edge &b) { return a.at < b.at; });

	ptrdiff_t count[CM_NCLASS] = {};
	for (size_t i = 0; i < edges.size();) {
		uintptr_t at = edges[i].at;
		for (; i < edges.size() && edges[i].at == at; i++)
			count[edges[i].cls] += edges[i].delta;
		if (i == edges.size())
			break;
		int cls = 0;
		while (cls < CM_NCLASS && count[cls] == 0)
			cls++;
		if (cls == CM_NCLASS)
			continue;	// a gap: no symbol
		uintptr_t next = edges[i].at;
		if (!m->cm_hi.empty() && m->cm_hi.back() == at &&
		    m->cm_class.back() == cls) {
			m->cm_hi.back() = next;
			continue;
		}
		m->cm_lo.push_back(at);
		m->cm_hi.push_back(next);
		m->cm_class.push_back(uint8_t(cls));
	}
	for (uint8_t c : m->cm_class)
		(c == CM_APP ? m->cm_npreempt : m->cm_nexcluded)++;
}

__attribute__((format(printf, 2, 3))) void
set_note(codemap *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	std::vsnprintf(m->cm_notebuf, sizeof(m->cm_notebuf), fmt, ap);
	va_end(ap);
	m->cm_note = m->cm_notebuf;
}

void
exclude_all(codemap *m)
{
	m->cm_lo.clear();
	m->cm_hi.clear();
	m->cm_class.clear();
	m->cm_npreempt = m->cm_nexcluded = 0;
	m->cm_classified = false;
}

// The file mapped at addr, from /proc/self/maps, or "".
std::string
mapped_file(uintptr_t addr)
{
	std::string maps, path;
	int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return path;
	char buf[4096];
	ssize_t n;
	while ((n = ::read(fd, buf, sizeof(buf))) > 0)
		maps.append(buf, size_t(n));
	::close(fd);

	// "lo-hi perms offset dev inode   path"
	size_t pos = 0;
	while (pos < maps.size()) {
		size_t eol = maps.find('\n', pos);
		if (eol == std::string::npos)
			eol = maps.size();
		std::string line = maps.substr(pos, eol - pos);
		pos = eol + 1;
		unsigned long lo, hi;
		int off = 0;
		if (std::sscanf(line.c_str(), "%lx-%lx %*s %*s %*s %*s %n",
		    &lo, &hi, &off) < 2 || off == 0)
			continue;
		if (addr >= lo && addr < hi) {
			if (line[size_t(off)] == '/')
				path = line.substr(size_t(off));
			break;
		}
	}
	return path;
}

// Steps 2 and 3 for the executable.  Leaves m unclassified, with a note,
// when its names cannot be trusted.
void
classify_executable(codemap *m, const exe_image &exe)
{
	// /proc/self/exe, unless the program was started as "ld.so ./prog":
	// then it is the loader, and the file is found by its mapping.
	file_map f;
	if (!f.open("/proc/self/exe") || !matches_image(f, exe)) {
		file_map g;
		std::string path = exe.path;
		if (path.empty() && !exe.text.empty())
			path = mapped_file(exe.text[0].lo);
		if (path.empty() || !g.open(path.c_str()) ||
		    !matches_image(g, exe)) {
			set_note(m, "cannot read the loaded executable; "
			    "not preemptible");
			return;
		}
		std::swap(f.fm_base, g.fm_base);
		std::swap(f.fm_size, g.fm_size);
	}

	std::vector<sym_range> syms;
	const char *culprit = nullptr;
	symtab_result r = read_symbols(f, exe, SHT_SYMTAB, syms, &culprit);
	bool dynsym = false;
	if (r == symtab_result::none) {
		dynsym = true;
		r = read_symbols(f, exe, SHT_DYNSYM, syms, &culprit);
	}
	switch (r) {
	case symtab_result::ok:
		break;
	case symtab_result::none:
		set_note(m, "stripped executable: no symbol table; "
		    "not preemptible");
		return;
	case symtab_result::malformed:
		set_note(m, "malformed symbol table in the executable; "
		    "not preemptible");
		return;
	case symtab_result::static_runtime:
		set_note(m, "statically linked runtime in the executable "
		    "(defines %s); not preemptible", culprit);
		return;
	}
	if (dynsym && std::none_of(syms.begin(), syms.end(),
	    [](const sym_range &r) { return r.cls == CM_APP; })) {
		set_note(m, "stripped executable: no .symtab; not preemptible");
		return;
	}
	if (dynsym)
		set_note(m, "stripped executable: only exported functions "
		    "(.dynsym) may be preempted");
	build_ranges(m, syms);
	m->cm_classified = true;
}

// Index of the range that holds pc, or -1.  Async-signal-safe.
ptrdiff_t
find_range(const codemap *m, uintptr_t pc) noexcept
{
	const uintptr_t *lo = m->cm_lo.data();
	size_t n = m->cm_lo.size();
	if (n == 0 || pc < lo[0] || pc >= m->cm_hi.data()[n - 1])
		return -1;
	// The last range with lo <= pc, by a branch-free binary search (the
	// interrupted PCs are random: branches would mispredict).
	const uintptr_t *base = lo;
	while (n > 1) {
		size_t half = n / 2;
		base = base[half] <= pc ? base + half : base;
		n -= half;
	}
	size_t a = size_t(base - lo);
	return pc < m->cm_hi.data()[a] ? ptrdiff_t(a) : -1;
}

bool
preemptible_in(const codemap *m, uintptr_t pc) noexcept
{
	ptrdiff_t i = find_range(m, pc);
	return i >= 0 && m->cm_class.data()[i] == CM_APP;
}

} // namespace

int
codemap_init() noexcept
{
	std::lock_guard<std::mutex> guard(init_lock);
	if (g_map.load(std::memory_order_relaxed) != nullptr)
		return 0;

	codemap *m = new (std::nothrow) codemap;
	if (m == nullptr)
		return ENOMEM;
	try {
		// Step 1.
		exe_image exe;
		phdr_walk w{m, &exe, uintptr_t(getauxval(AT_PHDR)), false};
		dl_iterate_phdr(phdr_callback, &w);
		if (w.nomem)
			throw std::bad_alloc();
		std::sort(m->cm_objects.begin(), m->cm_objects.end(),
		    [](const cm_object &a, const cm_object &b) {
			    return a.cmo_lo < b.cmo_lo;
		    });

		// Steps 2 and 3.
		if (!exe.found)
			set_note(m, "no main executable among the loaded "
			    "objects; not preemptible");
		else
			classify_executable(m, exe);

		// Step 4.
		if (m->cm_classified &&
		    (preemptible_in(m, uintptr_t(&codemap_init)) ||
		    preemptible_in(m, uintptr_t(&codemap_preemptible)))) {
			exclude_all(m);
			set_note(m, "usmp's own code classified preemptible; "
			    "not preemptible");
		}
	} catch (const std::bad_alloc &) {
		delete m;
		return ENOMEM;
	}

	// Step 5: pairs with the acquire loads below.
	g_map.store(m, std::memory_order_release);
	return 0;
}

bool
codemap_preemptible(uintptr_t pc) noexcept
{
	const codemap *m = g_map.load(std::memory_order_acquire);
	return m != nullptr && preemptible_in(m, pc);
}

const char *
codemap_describe(uintptr_t pc) noexcept
{
	const codemap *m = g_map.load(std::memory_order_acquire);
	if (m == nullptr)
		return "unknown";
	ptrdiff_t i = find_range(m, pc);
	if (i >= 0)
		return class_names[m->cm_class.data()[i]];

	const cm_object *o = m->cm_objects.data();
	size_t n = m->cm_objects.size();
	size_t a = 0, b = n;
	while (a < b) {	// the first object with cmo_hi > pc
		size_t mid = a + (b - a) / 2;
		if (o[mid].cmo_hi <= pc)
			a = mid + 1;
		else
			b = mid;
	}
	if (a == n || pc < o[a].cmo_lo)
		return "unknown";
	if (o[a].cmo_name != NO_NAME)
		return m->cm_names.c_str() + o[a].cmo_name;
	return m->cm_classified ? "no symbol" : "unclassified";
}

size_t
codemap_count(bool preemptible) noexcept
{
	const codemap *m = g_map.load(std::memory_order_acquire);
	if (m == nullptr)
		return 0;
	return preemptible ? m->cm_npreempt : m->cm_nexcluded;
}

const char *
codemap_note() noexcept
{
	const codemap *m = g_map.load(std::memory_order_acquire);
	return m != nullptr ? m->cm_note : nullptr;
}

} // namespace usmp

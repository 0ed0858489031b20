// The lock object base (sync/lock.h).
#include "sync/lock.h"

#include "runtime/panic.h"
#include "sync/witness.h"

namespace usmp {

// The thread dump's locks-held hook lives in sync/witness_dump.cc, which
// nothing calls: this reference, in a file every lock links, makes a static
// link keep it (and its initialiser, which installs the hook).
extern const bool g_witness_dump_hooked;
[[gnu::used]] static const bool *const g_keep_witness_dump = &g_witness_dump_hooked;

void
lock_init(lock_object *lo, const lock_class *cls, const char *name,
    const char *type, unsigned opts, const char *call, const char *file,
    int line) noexcept
{
	if (!(opts & LOCK_NEW) &&
	    (lo->lo_flags & (LO_MAGIC_MASK | LO_INITIALIZED)) ==
		(LO_MAGIC | LO_INITIALIZED))
		panic("%s: lock \"%s\" %p already initialized @ %s:%d", call,
		    lo->lo_name != nullptr ? lo->lo_name : "?",
		    static_cast<const void *>(lo), file, line);
	if (name == nullptr)
		panic("%s: a lock needs a name @ %s:%d", call, file, line);
	unsigned f = LO_MAGIC | LO_INITIALIZED;
	if (opts & LOCK_RECURSE)
		f |= LO_RECURSABLE;
	if (opts & LOCK_DUPOK)
		f |= LO_DUPOK;
	if (!(opts & LOCK_NOWITNESS))
		f |= LO_WITNESS;
	if (opts & LOCK_QUIET)
		f |= LO_QUIET;
	if (opts & LOCK_NOPROFILE)
		f |= LO_NOPROFILE;
	if (cls->lc_flags & LC_SLEEPABLE)
		f |= LO_SLEEPABLE;
	if (cls->lc_flags & LC_UPGRADABLE)
		f |= LO_UPGRADABLE;
	lo->lo_name = name;
	lo->lo_type = type != nullptr ? type : name;
	lo->lo_class = cls;
	lo->lo_flags = f;
	if constexpr (config::witness)
		witness_init(lo);
}

void
lock_destroy(lock_object *lo) noexcept
{
	if constexpr (config::witness)
		witness_destroy(lo);
	lo->lo_flags = (lo->lo_flags & ~LO_INITIALIZED) | LO_DESTROYED;
}

void
lock_check_failed(const lock_object *lo, const char *call, const char *file,
    int line) noexcept
{
	if ((lo->lo_flags & LO_MAGIC_MASK) == LO_MAGIC &&
	    (lo->lo_flags & LO_DESTROYED))
		panic("%s of destroyed %s \"%s\" @ %s:%d", call,
		    lo->lo_class != nullptr ? lo->lo_class->lc_name : "lock",
		    lo->lo_name != nullptr ? lo->lo_name : "?", file, line);
	panic("%s of uninitialized lock %p @ %s:%d", call,
	    static_cast<const void *>(lo), file, line);
}

} // namespace usmp

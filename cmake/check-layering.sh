#!/usr/bin/env bash
# Include layering of usmp (DESIGN.md "Layers"), checked on every
# `#include` of the source tree.  Run by ctest (build_layering); by hand:
#
#     bash cmake/check-layering.sh [SOURCE_DIR]     check a tree (default: .)
#     bash cmake/check-layering.sh --self-test      prove each rule fires
#
# Rules:
#  1. Layers, each may include only itself and those above it:
#        runtime/ < sched/ < sync/ < interrupts/ < apps/ < tests/
#     (runtime/ includes nothing from sched/ sync/ interrupts/ apps/; ...)
#  2. <component>/internal/ headers are private to their component: nobody
#     else includes them, except the pairs in ALLOW_INTERNAL below.
#  3. Each third-party library is included by exactly one file of the
#     library (runtime/ sched/ sync/ interrupts/), see THIRD_PARTY below.
#     apps/ and tests/ are programs and may include what they like.
# A violation is printed as `file:line: rule: #include ...` and the script
# exits 1.
set -euo pipefail

LAYERS=(runtime sched sync interrupts apps tests)
LIBRARY=(runtime sched sync interrupts)

# Rule 2 exceptions, the one allowlist: "<component> <internal header>", one
# pair a line: files of <component>/ (and tests/<component>/) may include that
# header of another component.  Every entry must also be named on the first
# line of the header itself ("Private to runtime/, sched/ and sync/: ..."),
# which the check verifies, so the list and the headers cannot drift apart.
ALLOW_INTERNAL='
sched runtime/internal/spinlock.h
sync  runtime/internal/spinlock.h
sched runtime/internal/seam.h
sched runtime/internal/curthread.h
sync  runtime/internal/seam.h
sync  runtime/internal/curthread.h
sched runtime/internal/timeout.h
sync  runtime/internal/timeout.h
interrupts runtime/internal/idle.h
sched runtime/internal/intr_hook.h
interrupts runtime/internal/intr_hook.h
sched runtime/internal/sim.h
sync  runtime/internal/sim.h
interrupts runtime/internal/sim.h
'
# Why: spinlock.h is the raw spin lock under the scheduler (run-queue and
# thread locks are spinlocks; sync/'s spin_mutex and turnstiles take them).
# seam.h is DESIGN.md's one narrow seam between runtime/ and sched/ (the
# switch and the choice of the next thread), and curthread.h the fast
# curthread() the scheduler's hot paths need; sync/ blocks and wakes threads
# through the same seam (thread_lock, mi_switch, sched_wakeup, priority
# lending), as FreeBSD's turnstiles and sleep queues call into the
# scheduler.  idle.h is how interrupts/' ring backend plugs into the idle
# park (the controller is a device driver of runtime/'s CPUs).  intr_hook.h
# carries interrupt delivery (interrupt events) and the sysinit hooks (the
# machine's and each CPU's boot and shutdown, which the controller uses, and
# the subsystems' boot, shutdown and tick) from runtime/ and sched/ up to
# interrupts/, which they may not include.  sim.h carries the deterministic
# simulation's hooks (runtime/sim.cc) to the places of the floor it replaces:
# the idle loop's spin (sched/), a lock's backoff and WITNESS's per-CPU list
# (sync/), the event timer (interrupts/).  Tests
# are white-box besides:
# tests/<component>/ may include <component>/internal/ and what
# <component>/ itself may include.

# Rule 3: "<include pattern (ERE)> <the one file allowed, or a directory/>".
# A directory (trailing /) means: at most one file, and it lies there.
THIRD_PARTY='
^boost/context/       runtime/context.cc
^boost/stacktrace     sync/witness_stack.cc
^hwloc(\.h|/)         runtime/topology.cc
^liburing(\.h|/)      interrupts/
'

declare -A RANK=()
for i in "${!LAYERS[@]}"; do
	RANK[${LAYERS[$i]}]=$i
done
declare -A IS_LIBRARY=()
for c in "${LIBRARY[@]}"; do
	IS_LIBRARY[$c]=1
done
declare -A ALLOWED=() # "<component> <header>" -> 1
while read -r c h; do
	[[ -n ${c:-} ]] && ALLOWED["$c $h"]=1
done <<<"$ALLOW_INTERNAL"
TP_PATS=()
TP_WANT=()
while read -r pat want; do
	[[ -z ${pat:-} ]] && continue
	TP_PATS+=("$pat")
	TP_WANT+=("$want")
done <<<"$THIRD_PARTY"

INCLUDE_RE='^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]+)[>"]'

# check ROOT: prints violations, returns 1 if any.
check() {
	local root=$1 bad=0 nfiles=0
	local -a files=()
	local -A users=()    # third-party pattern index -> "file:line ..."
	local -A nusers=()   # pattern index -> distinct including files
	local -A firstline_ok=()
	local f rel comp sub as line lineno text inc icomp i first

	mapfile -d '' files < <(find "$root" \
		\( -path "$root/build*" -o -path "$root/.git" -o -path "$root/tests/consumer" \) -prune -o \
		-type f \( -name '*.h' -o -name '*.hh' -o -name '*.hpp' -o -name '*.cc' -o -name '*.cpp' -o -name '*.h.in' \) \
		\( -path "$root/runtime/*" -o -path "$root/sched/*" -o -path "$root/sync/*" -o -path "$root/interrupts/*" \
		-o -path "$root/apps/*" -o -path "$root/tests/*" \) -print0 | sort -z)
	nfiles=${#files[@]}
	((nfiles == 0)) && { echo "layering: no source files under $root"; return 1; }

	local prev=""
	while IFS= read -r line; do
		# grep -Hn: FILE:LINE:TEXT (file names have no colons here)
		f=${line%%:*}
		line=${line#*:}
		lineno=${line%%:*}
		text=${line#*:}
		[[ $text =~ $INCLUDE_RE ]] || continue
		inc=${BASH_REMATCH[1]}
		rel=${f#"$root"/}
		comp=${rel%%/*}
		# For rule 2, tests/<component>/ acts as <component>.
		as=$comp
		if [[ $comp == tests ]]; then
			sub=${rel#tests/}
			as=${sub%%/*}
		fi
		icomp=${inc%%/*}
		if [[ $inc == */* && -n ${RANK[$icomp]:-} ]]; then
			# Rule 1: layers.
			if ((RANK[$icomp] > RANK[$comp])); then
				echo "$rel:$lineno: layering: $comp/ may not include $icomp/: $text"
				bad=1
			fi
			# Rule 2: internal headers.
			if [[ $inc == */internal/* && $icomp != "$comp" && $icomp != "$as" ]]; then
				if [[ -n ${ALLOWED["$as $inc"]:-} ]]; then
					# The header's first line must name the includer.
					if [[ -z ${firstline_ok["$as $inc"]:-} ]]; then
						first=""
						[[ -f $root/$inc ]] && IFS= read -r first <"$root/$inc" || true
						if [[ $first != *"$as/"* ]]; then
							echo "$rel:$lineno: internal: $inc is allowlisted for $as/, but its first line does not say so: ${first:-<missing>}"
							bad=1
						fi
						firstline_ok["$as $inc"]=1
					fi
				else
					echo "$rel:$lineno: internal: $inc is private to $icomp/ (allowlist in ${BASH_SOURCE[0]##*/}): $text"
					bad=1
				fi
			fi
		fi
		# Rule 3: third-party libraries, in the library only.
		if [[ -n ${IS_LIBRARY[$comp]:-} ]]; then
			for i in "${!TP_PATS[@]}"; do
				if [[ $inc =~ ${TP_PATS[$i]} ]]; then
					users[$i]+="$rel:$lineno "
					if [[ " ${users[$i]} " != *" $rel:"*" $rel:"* ]]; then
						nusers[$i]=$((${nusers[$i]:-0} + 1))
					fi
				fi
			done
		fi
	done < <(printf '%s\0' "${files[@]}" | xargs -0 grep -HnE '^[[:space:]]*#[[:space:]]*include' || true)

	local want u ufile
	for i in "${!TP_PATS[@]}"; do
		[[ -z ${users[$i]:-} ]] && continue
		want=${TP_WANT[$i]}
		for u in ${users[$i]}; do
			ufile=${u%:*}
			if [[ $want == */ ]]; then
				[[ $ufile == "$want"* ]] && continue
			else
				[[ $ufile == "$want" ]] && continue
			fi
			echo "$u: third-party: only $want may include ${TP_PATS[$i]} (one includer per library)"
			bad=1
		done
		if [[ $want == */ ]] && ((${nusers[$i]:-0} > 1)); then
			echo "third-party: ${TP_PATS[$i]} is included by ${nusers[$i]} files, must be one, under $want: ${users[$i]}"
			bad=1
		fi
	done

	if ((bad)); then
		echo "layering: violations found in $root (rules and allowlist: ${BASH_SOURCE[0]})"
		return 1
	fi
	echo "layering: $nfiles files checked, no violations"
	return 0
}

self_test() {
	local tmp fails=0
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	mk() { mkdir -p "$(dirname "$tmp/$1")"; printf '%s\n' "${@:2}" >"$tmp/$1"; }
	expect() { # name expected(0|1) ; runs check on $tmp
		local out rc=0
		out=$(check "$tmp" 2>&1) || rc=$?
		if [[ $rc -ne $2 ]]; then
			echo "self-test FAILED: $1: exit $rc, wanted $2"
			echo "$out"
			fails=$((fails + 1))
		else
			echo "self-test ok: $1"
		fi
	}
	reset() { rm -rf "${tmp:?}"/*; }

	reset
	mk runtime/thread.h '#include "runtime/internal/spinlock.h"'
	mk runtime/internal/spinlock.h '// Private to runtime/, sched/ and sync/: the raw spin lock.' '#include <atomic>'
	mk runtime/internal/seam.h '// Private to runtime/ and sched/: the seam.'
	mk runtime/context.cc '#include <boost/context/fiber.hpp>'
	mk runtime/topology.cc '#include <hwloc.h>'
	mk sched/sched.cc '#include "runtime/thread.h"' '#include "runtime/internal/spinlock.h"' '#include "runtime/internal/seam.h"'
	mk tests/sched/runq_unit.cc '#include "runtime/internal/seam.h"' '#include "sched/internal/runq.h"'
	mk sync/mutex.cc '#include "sched/sched.h"' '#include "runtime/internal/spinlock.h"'
	mk interrupts/ring.cc '#include <liburing.h>' '#include "sync/mutex.h"'
	mk apps/bench/bench.cc '#include <boost/context/fiber.hpp>' '#include "interrupts/callout.h"'
	mk tests/runtime/segment_unit.cc '#include "runtime/internal/segment.h"' '#include <hwloc.h>'
	mk tests/sync/mutex_unit.cc '#include "apps/x.h"' '#include "runtime/internal/spinlock.h"'
	mk runtime/x.cc '// #include "sched/sched.h" in a comment is fine'
	expect "a clean tree passes" 0

	mk runtime/bad.cc '#include "sched/sched.h"'
	expect "runtime/ including sched/ fails" 1
	reset
	mk sched/bad.cc '#include <sync/mutex.h>'
	expect "sched/ including sync/ (angle brackets) fails" 1
	reset
	mk sync/bad.cc '  #  include "interrupts/callout.h"'
	expect "sync/ including interrupts/ fails" 1
	reset
	mk interrupts/bad.cc '#include "apps/bench/x.h"'
	expect "interrupts/ including apps/ fails" 1
	reset
	mk apps/bad.cc '#include "tests/support/death.h"'
	expect "apps/ including tests/ fails" 1
	reset
	mk sync/bad.cc '#include "sched/internal/runq.h"'
	expect "sync/ including sched/internal/ fails" 1
	reset
	mk apps/bad.cc '#include "runtime/internal/spinlock.h"'
	expect "apps/ including runtime/internal/spinlock.h fails" 1
	reset
	mk sched/bad.cc '#include "runtime/internal/segment.h"'
	expect "sched/ including a runtime/internal/ header not allowlisted fails" 1
	reset
	mk runtime/internal/seam.h '// Private to runtime/: the seam.'
	mk sched/sched.cc '#include "runtime/internal/seam.h"'
	expect "an allowlisted header whose first line does not name the includer fails" 1
	reset
	mk sync/bad.cc '#include "runtime/internal/seam.h"'
	mk runtime/internal/seam.h '// Private to runtime/ and sched/: the seam.'
	expect "sync/ including the runtime/sched seam fails" 1
	reset
	mk tests/sync/bad_unit.cc '#include "sched/internal/runq.h"'
	expect "tests/sync/ including sched/internal/ fails" 1
	reset
	mk runtime/context.cc '#include <boost/context/fiber.hpp>'
	mk runtime/switch.cc '#include <boost/context/fiber.hpp>'
	expect "a second includer of Boost.Context fails" 1
	reset
	mk sync/topo.cc '#include <hwloc/bitmap.h>'
	expect "hwloc outside runtime/topology.cc fails" 1
	reset
	mk interrupts/ring.cc '#include <liburing.h>'
	mk interrupts/io.cc '#include <liburing.h>'
	expect "two liburing includers in interrupts/ fail" 1
	reset
	mk runtime/ring.cc '#include <liburing.h>'
	expect "liburing outside interrupts/ fails" 1

	if ((fails)); then
		echo "layering self-test: $fails case(s) FAILED"
		return 1
	fi
	echo "layering self-test: all cases behave"
}

if [[ ${1:-} == --self-test ]]; then
	self_test
else
	root=$(cd "${1:-.}" && pwd)
	check "$root"
fi

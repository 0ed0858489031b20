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

# Rule 2 exceptions: "<including file glob>|<included header>", one per line.
# Keep this list short and say why each entry is here.
ALLOW_INTERNAL='
sched/*|runtime/internal/spinlock.h
sync/*|runtime/internal/spinlock.h
'
# (The raw spin lock under the scheduler: run-queue and thread locks are
# spinlocks, and sync/'s spin_mutex and turnstiles take them; see the header's
# first line.)  Tests are white-box: tests/<component>/ may include
# <component>/internal/ (and what that component itself may include).

# Rule 3: "<include pattern (ERE)> <the one file allowed, or a directory/>".
# A directory (trailing /) means: at most one file, and it lies there.
THIRD_PARTY='
^boost/context/       runtime/context.cc
^hwloc(\.h|/)         runtime/topology.cc
^liburing(\.h|/)      interrupts/
'

layer_rank() {
	local i
	for i in "${!LAYERS[@]}"; do
		if [[ ${LAYERS[$i]} == "$1" ]]; then
			echo "$i"
			return
		fi
	done
	echo -1
}

is_library() {
	local c
	for c in "${LIBRARY[@]}"; do
		[[ $c == "$1" ]] && return 0
	done
	return 1
}

internal_allowed() { # file included
	local file=$1 inc=$2 line pat hdr
	while IFS= read -r line; do
		[[ -z $line ]] && continue
		pat=${line%%|*}
		hdr=${line#*|}
		# shellcheck disable=SC2053
		if [[ $file == $pat && $inc == "$hdr" ]]; then
			return 0
		fi
	done <<<"$ALLOW_INTERNAL"
	return 1
}

# check ROOT: prints violations, returns 1 if any.
check() {
	local root=$1 bad=0 nfiles=0
	local -A third_users=()
	local f rel comp sub line lineno text inc icomp frank irank owner

	while IFS= read -r -d '' f; do
		rel=${f#"$root"/}
		comp=${rel%%/*}
		frank=$(layer_rank "$comp")
		# Where rule 2 treats a test: tests/<component>/ is <component>.
		sub=""
		if [[ $comp == tests ]]; then
			sub=${rel#tests/}
			sub=${sub%%/*}
		fi
		nfiles=$((nfiles + 1))
		while IFS= read -r line; do
			lineno=${line%%:*}
			text=${line#*:}
			inc=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]+)[>"].*/\1/' <<<"$text")
			icomp=${inc%%/*}
			irank=$(layer_rank "$icomp")
			if [[ $inc == */* && $irank -ge 0 ]]; then
				# Rule 1: layers.
				if ((irank > frank)); then
					echo "$rel:$lineno: layering: $comp/ may not include $icomp/: $text"
					bad=1
				fi
				# Rule 2: internal headers.
				if [[ $inc == */internal/* && $icomp != "$comp" ]]; then
					if internal_allowed "$rel" "$inc"; then
						:
					elif [[ $comp == tests && ($icomp == "$sub" ||
					    $inc == runtime/internal/spinlock.h) ]]; then
						:
					else
						echo "$rel:$lineno: internal: $inc is private to $icomp/: $text"
						bad=1
					fi
				fi
			fi
			# Rule 3: third-party libraries, in the library only.
			if is_library "$comp"; then
				local pat want
				while read -r pat want; do
					[[ -z $pat ]] && continue
					if [[ $inc =~ $pat ]]; then
						third_users[$pat]+="$rel:$lineno "
					fi
				done <<<"$THIRD_PARTY"
			fi
		done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]' "$f" || true)
	done < <(find "$root" \( -path "$root/build*" -o -path "$root/.git" -o -path "$root/tests/consumer" \) -prune -o \
		-type f \( -name '*.h' -o -name '*.hh' -o -name '*.hpp' -o -name '*.cc' -o -name '*.cpp' -o -name '*.h.in' \) \
		\( -path "$root/runtime/*" -o -path "$root/sched/*" -o -path "$root/sync/*" -o -path "$root/interrupts/*" \
		-o -path "$root/apps/*" -o -path "$root/tests/*" \) -print0 | sort -z)

	local pat want files u ufile nusers
	while read -r pat want; do
		[[ -z $pat ]] && continue
		files=${third_users[$pat]:-}
		[[ -z $files ]] && continue
		# Distinct files.
		nusers=$(tr ' ' '\n' <<<"$files" | sed -E 's/:[0-9]+$//' | grep -v '^$' | sort -u | wc -l)
		for u in $files; do
			ufile=${u%:*}
			if [[ $want == */ ]]; then
				[[ $ufile == "$want"* ]] && continue
			else
				[[ $ufile == "$want" ]] && continue
			fi
			echo "$u: third-party: only $want may include ${pat} (one includer per library)"
			bad=1
		done
		if [[ $want == */ ]] && ((nusers > 1)); then
			echo "third-party: ${pat} is included by $nusers files under $want, must be one: $files"
			bad=1
		fi
	done <<<"$THIRD_PARTY"

	if ((bad)); then
		echo "layering: violations found in $root (see DESIGN.md, Layers; allowlist in ${BASH_SOURCE[0]})"
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
	mk runtime/internal/spinlock.h '#include <atomic>'
	mk runtime/context.cc '#include <boost/context/fiber.hpp>'
	mk runtime/topology.cc '#include <hwloc.h>'
	mk sched/sched.cc '#include "runtime/thread.h"' '#include "runtime/internal/spinlock.h"'
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

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Wall time of the whole suite in the VM, several variants in ONE boot: a variant is a build
# of the suite and a `--jobs` value, `head:2` (this tree's release build at --jobs 2) or
# `base:2` (the release build of git revision BASE_REV at --jobs 2); `head-dev:2` and
# `base-dev:2` are the dev-profile builds, the ones scripts/test.sh runs in CI. The runs
# alternate (v1 v2 v3 v1 v2 v3 …), so whatever else loads the machine loads every variant
# alike, and the table gives each variant's best and median time and its ratio to the first
# variant's median. Every number printed comes from this one run.
#
#   bash scripts/bench-suite.sh                                  # VARIANTS="head:2 head:3 head:4"
#   VARIANTS="base:2 head:2" BASE_REV=5a8d371 ROUNDS=3 bash scripts/bench-suite.sh
#   VARIANTS="head:2 head:4" bash scripts/bench-suite.sh -- paths/   # arguments after -- go to the suite
#   VARIANTS="base-dev:2 head-dev:2 head:2" BASE_REV=ff37b26 bash scripts/bench-suite.sh -- maclen/
#
# Needs what the main job needs (scripts/setup.sh); about ROUNDS × len(VARIANTS) × 1.5 min
# under TCG, plus the builds of BASE_REV (in target/bench-base) when a variant uses them.
set -euo pipefail
cd "$(dirname "$0")/.."
variants=${VARIANTS:-head:2 head:3 head:4}
rounds=${ROUNDS:-2}
[ "${1:-}" = "--" ] && shift
bash scripts/setup.sh >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/tcpao-bench-suite.XXXXXX")
trap 'git worktree remove --force "$work/base" 2>/dev/null || true; rm -rf "$work"' EXIT
# A build is `head` or `base` (BASE_REV), in the release profile or, with `-dev`, the dev
# profile (what scripts/test.sh runs in CI's VM). Each is built once and copied: a build in
# this tree while the bench runs must not change what it measures.
build() { # build name -> prints the copied binary's path
    local b=$1 tree=. target=$PWD/target profile=release
    case $b in *-dev) profile=dev ;; esac
    if [ "${b%-dev}" = base ]; then
        : "${BASE_REV:?a base variant needs BASE_REV (a git revision)}"
        [ -d "$work/base" ] || git worktree add -q --detach "$work/base" "$BASE_REV" >&2
        tree=$work/base target=$PWD/target/bench-base
    fi
    if [ ! -x "$work/$b-tcpao-selftests" ]; then
        CARGO_TARGET_DIR=$target cargo build -q --profile "$profile" \
            --manifest-path "$tree/Cargo.toml" -p tcpao-selftests >&2
        local dir=$profile; [ "$profile" = dev ] && dir=debug
        cp "$target/$dir/tcpao-selftests" "$work/$b-tcpao-selftests"
    fi
    echo "$work/$b-tcpao-selftests"
}
build head > /dev/null   # the build that runs the guest
head_bin=$work/head-tcpao-selftests
cases=
for v in $variants; do
    case $v in
    head:[0-9]* | base:[0-9]* | head-dev:[0-9]* | base-dev:[0-9]*)
        cases+="  $v) bin=$(printf %q "$(build "${v%%:*}")") ;;"$'\n' ;;
    *) echo "bench-suite: variant '$v' is not head:N, base:N, head-dev:N or base-dev:N" >&2; exit 2 ;;
    esac
done
# The guest sees the host's file system read-only: results go to the guest's /tmp and are
# printed as `BENCH variant ms exit totals` lines.
{
    echo '#!/bin/sh'
    printf 'for r in $(seq %d); do for v in %s; do\n' "$rounds" "$variants"
    printf '  case $v in\n%s  esac\n' "$cases"
    printf '  t0=$(date +%%s%%N); "$bin" run --jobs "${v#*:}"'
    for a in "$@"; do printf ' %q' "$a"; done
    echo ' > /tmp/bench.ktap 2>&1; rc=$?; t1=$(date +%s%N)'
    echo '  echo "BENCH $v $(( (t1 - t0) / 1000000 )) $rc $(grep -a "^# Totals" /tmp/bench.ktap | tail -1)"'
    echo '  grep -a "^not ok" /tmp/bench.ktap | sed "s/^/FAILED $v: /"'
    echo 'done; done'
} > "$work/guest.sh"
# The guest runs in its own session, stopped with this script (every process of the session:
# vng puts qemu in a process group of its own): an interrupted bench must not leave its qemu
# running and loading the next measurement. `wait` lets the trap run at once; under `set -e`
# every command of a trap must not fail, or the trap stops there.
: > "$work/vm.log"
setsid "$head_bin" vm --timeout 7200 --exec-script "$work/guest.sh" > "$work/vm.log" 2>&1 &
vm_pid=$!
trap 'pkill -TERM -s $vm_pid 2>/dev/null || true; git worktree remove --force "$work/base" 2>/dev/null || true; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
tail -n +1 --pid=$vm_pid -f "$work/vm.log" | grep -a --line-buffered '^BENCH \|^FAILED ' &
wait $vm_pid || true
wait
grep -a '^BENCH ' "$work/vm.log" | awk -v order="$variants" '
    { ms[$2] = ms[$2] " " $3; if ($4 != 0) bad[$2]++ }
    END {
        n = split(order, vs, " ")
        printf "%-11s %-6s %10s %10s %8s  %s\n", "variant", "runs", "best s", "median s", "ratio", "failed runs"
        for (i = 1; i <= n; i++) {
            k = split(ms[vs[i]], v, " "); if (k == 0) continue
            for (a = 1; a <= k; a++) for (b = a + 1; b <= k; b++) if (v[b] + 0 < v[a] + 0) { t = v[a]; v[a] = v[b]; v[b] = t }
            med = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
            if (i == 1) base = med
            printf "%-11s %-6d %10.1f %10.1f %8.2f  %d\n", vs[i], k, v[1] / 1000, med / 1000, med / base, bad[vs[i]] + 0
        }
    }'

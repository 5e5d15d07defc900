#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Wall time of the whole suite in the VM, several variants in ONE boot: a variant is a build
# of the suite and a `--jobs` value, `head:2` (this tree at --jobs 2) or `base:2` (the build of
# git revision BASE_REV at --jobs 2). The runs alternate (v1 v2 v3 v1 v2 v3 …), so whatever
# else loads the machine loads every variant alike, and the table gives each variant's best
# and median time and its ratio to the first variant's median. Every number printed comes
# from this one run.
#
#   bash scripts/bench-suite.sh                                  # VARIANTS="head:2 head:3 head:4"
#   VARIANTS="base:2 head:2" BASE_REV=5a8d371 ROUNDS=3 bash scripts/bench-suite.sh
#   VARIANTS="head:2 head:4" bash scripts/bench-suite.sh -- paths/   # arguments after -- go to the suite
#
# Needs what the main job needs (scripts/setup.sh); about ROUNDS × len(VARIANTS) × 1.5 min
# under TCG, plus a release build of BASE_REV (in target/bench-base) when a variant uses it.
set -euo pipefail
cd "$(dirname "$0")/.."
variants=${VARIANTS:-head:2 head:3 head:4}
rounds=${ROUNDS:-2}
[ "${1:-}" = "--" ] && shift
bash scripts/setup.sh >&2
cargo build -q --release -p tcpao-selftests
work=$(mktemp -d "${TMPDIR:-/tmp}/tcpao-bench-suite.XXXXXX")
trap 'git worktree remove --force "$work/base" 2>/dev/null || true; rm -rf "$work"' EXIT
# Copies: a build in this tree while the bench runs must not change what it measures.
head_bin=$work/head-tcpao-selftests
cp target/release/tcpao-selftests "$head_bin"
base_bin=
for v in $variants; do
    case $v in
    head:[0-9]*) ;;
    base:[0-9]*)
        if [ -z "$base_bin" ]; then
            : "${BASE_REV:?a base: variant needs BASE_REV (a git revision)}"
            git worktree add -q --detach "$work/base" "$BASE_REV"
            CARGO_TARGET_DIR=$PWD/target/bench-base cargo build -q --release \
                --manifest-path "$work/base/Cargo.toml" -p tcpao-selftests
            base_bin=$work/base-tcpao-selftests
            cp target/bench-base/release/tcpao-selftests "$base_bin"
        fi
        ;;
    *) echo "bench-suite: variant '$v' is not head:N or base:N" >&2; exit 2 ;;
    esac
done
# The guest sees the host's file system read-only: results go to the guest's /tmp and are
# printed as `BENCH variant ms exit totals` lines.
{
    echo '#!/bin/sh'
    printf 'for r in $(seq %d); do for v in %s; do\n' "$rounds" "$variants"
    printf '  case $v in head:*) bin=%q ;; *) bin=%q ;; esac\n' "$head_bin" "${base_bin:-none}"
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
        printf "%-8s %-6s %10s %10s %8s  %s\n", "variant", "runs", "best s", "median s", "ratio", "failed runs"
        for (i = 1; i <= n; i++) {
            k = split(ms[vs[i]], v, " "); if (k == 0) continue
            for (a = 1; a <= k; a++) for (b = a + 1; b <= k; b++) if (v[b] + 0 < v[a] + 0) { t = v[a]; v[a] = v[b]; v[b] = t }
            med = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
            if (i == 1) base = med
            printf "%-8s %-6d %10.1f %10.1f %8.2f  %d\n", vs[i], k, v[1] / 1000, med / 1000, med / base, bad[vs[i]] + 0
        }
    }'

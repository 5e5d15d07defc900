#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Wall time of the whole suite in the VM at several `--jobs` values, in ONE boot: the runs
# alternate (2 4 3 2 4 3 … for JOBS="2 4 3"), so whatever else loads the machine loads every
# value alike, and the table gives each value's best and median time and its ratio to the
# first value's median. Every number printed comes from this one run.
#
#   bash scripts/bench-jobs.sh                 # JOBS="2 3 4", ROUNDS=2
#   JOBS="2 4" ROUNDS=3 bash scripts/bench-jobs.sh -- paths/   # arguments after -- go to the suite
#
# Needs what the main job needs (scripts/setup.sh); about ROUNDS × len(JOBS) × 1.5 min under TCG.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs_list=${JOBS:-2 3 4}
rounds=${ROUNDS:-2}
[ "${1:-}" = "--" ] && shift
bash scripts/setup.sh >&2
cargo build -q --release -p tcpao-selftests
bin=$(realpath target/release/tcpao-selftests)
work=$(mktemp -d "${TMPDIR:-/tmp}/tcpao-bench-jobs.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The guest sees the host's file system read-only: results go to the guest's /tmp and are
# printed as `BENCH j secs exit totals` lines.
{
    echo '#!/bin/sh'
    printf 'for r in $(seq %d); do for j in %s; do\n' "$rounds" "$jobs_list"
    printf '  t0=$(date +%%s%%N); %q run --jobs $j' "$bin"
    for a in "$@"; do printf ' %q' "$a"; done
    echo ' > /tmp/bench.ktap 2>&1; rc=$?; t1=$(date +%s%N)'
    echo '  echo "BENCH $j $(( (t1 - t0) / 1000000 )) $rc $(grep -a "^# Totals" /tmp/bench.ktap | tail -1)"'
    echo 'done; done'
} > "$work/guest.sh"
"$bin" vm --timeout 7200 --exec-script "$work/guest.sh" 2>&1 | tee "$work/vm.log" \
    | grep -a --line-buffered '^BENCH ' || true
grep -a '^BENCH ' "$work/vm.log" | awk -v order="$jobs_list" '
    { ms[$2] = ms[$2] " " $3; if ($4 != 0) bad[$2]++ }
    END {
        n = split(order, js, " ")
        printf "%-6s %-6s %10s %10s %8s  %s\n", "jobs", "runs", "best s", "median s", "ratio", "failed runs"
        for (i = 1; i <= n; i++) {
            k = split(ms[js[i]], v, " "); if (k == 0) continue
            for (a = 1; a <= k; a++) for (b = a + 1; b <= k; b++) if (v[b] + 0 < v[a] + 0) { t = v[a]; v[a] = v[b]; v[b] = t }
            med = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
            if (i == 1) base = med
            printf "%-6s %-6d %10.1f %10.1f %8.2f  %d\n", js[i], k, v[1] / 1000, med / 1000, med / base, bad[js[i]] + 0
        }
    }'

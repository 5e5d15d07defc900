#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# tcpao-verify benchmark: segments/s, ratio to the bare MAC cost of the same bytes, ratio to
# `tshark -r` merely reading the same file, and peak memory, on two captures:
#
#   synthetic  1,000,000 segments over 2,000 flows (IPv4 and IPv6; HMAC-SHA-1, AES-128-CMAC,
#              HMAC-SHA-256; payloads 0..1448 bytes), signed with tcpao-refimpl's signing API
#   flows100k  the same mix over 100,000 connections open at once (the memory bound)
#   real       a bulk transfer over one TCP-AO connection (HMAC-SHA-1), captured from the
#              Linux 7.2 TCP-AO kernel in the VM (selftest corpus-bulk/ipv4/transfer)
#   jumbo      the same with a 65,535-byte MTU: segments as large as on lo
#              (corpus-bulk/ipv4/jumbo)
#   bgp        a BGP session on port 179 announcing a full IPv4 table of 2^20 /24s over
#              TCP-AO (corpus-bulk/ipv4/bgp-full-table): tshark dissects every BGP message
#
# tcpao-verify runs single-threaded (-j 1) for segments/s and the CPU ratios, and with one
# thread per core (-j NPROC, the default) for the wall-time ratio; connections are spread
# over threads, so a capture of one connection gains nothing from more threads.
#
# Inputs are made once and kept in ${XDG_CACHE_HOME:-~/.cache}/tcpao/bench (not in git).
# Making the real one boots the VM (root, ~5 min under TCG). Every number in the table comes
# from this one run. RUNS=N takes the best of N runs of each command (default 3; the machine may be shared).
# BASE=DIR also measures the tcpao-verify in DIR (another build's target/release, e.g. of the
# base of a change), row by row next to this tree's, so before and after come from one run.
#
#   scripts/bench-verify.sh
#   BASE=/path/to/base/target/release scripts/bench-verify.sh
set -eu
cd "$(dirname "$0")/.."
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tcpao/bench"
runs="${RUNS:-3}"
mkdir -p "$cache"
command -v tshark >/dev/null || {
    echo "bench-verify: tshark is missing (DEBIAN_FRONTEND=noninteractive apt-get install -y tshark)" >&2
    exit 2
}
[ -x /usr/bin/time ] || { echo "bench-verify: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }

cargo build --release -q -p tcpao-refimpl --bin tcpao-verify --example bench_verify
V=target/release/tcpao-verify
B=target/release/examples/bench_verify

if [ ! -s "$cache/synthetic.pcap" ]; then
    echo "# making $cache/synthetic.pcap" >&2
    $B gen "$cache/synthetic.pcap.tmp" "$cache/synthetic.keys.toml" 1000000 2000 >&2
    mv "$cache/synthetic.pcap.tmp" "$cache/synthetic.pcap"
fi
if [ ! -s "$cache/flows100k.pcap" ]; then
    echo "# making $cache/flows100k.pcap" >&2
    $B gen "$cache/flows100k.pcap.tmp" "$cache/flows100k.keys.toml" 1000000 100000 >&2
    mv "$cache/flows100k.pcap.tmp" "$cache/flows100k.pcap"
fi
if [ ! -s "$cache/real.pcap" ] || [ ! -s "$cache/jumbo.pcap" ] || [ ! -s "$cache/bgp.pcap" ]; then
    echo "# making $cache/{real,jumbo,bgp}.pcap in the TCP-AO VM" >&2
    cargo build --release -q -p tcpao-selftests
    rm -rf "$cache/real.tmp"
    target/release/tcpao-selftests vm -- --save-pcaps "$cache/real.tmp" corpus-bulk/ >&2
    for pair in real:transfer jumbo:jumbo bgp:bgp-full-table; do
        name=${pair%%:*}; case=${pair#*:}
        for ext in keys.toml expect.toml pcap; do
            mv "$cache/real.tmp/corpus-bulk_ipv4_$case.$ext" "$cache/$name.$ext"
        done
    done
    rm -rf "$cache/real.tmp"
fi
threads=$(nproc)

# timed CMD...: run RUNS times; sets T (best wall s), CPU (best user+sys s), RSS (max KiB)
timed() {
    T=""; CPU=""; RSS=0
    i=0
    while [ "$i" -lt "$runs" ]; do
        t0=$(date +%s%N)
        /usr/bin/time -v -o "$cache/time.txt" "$@" > "$cache/out.txt" 2> "$cache/err.txt" || true
        t1=$(date +%s%N)
        # Wall time to the nanosecond (time -v rounds to 10 ms; the real capture takes ~50 ms).
        t=$(awk "BEGIN { printf \"%.4f\", ($t1 - $t0) / 1e9 }")
        c=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { print u + s }' "$cache/time.txt")
        r=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$cache/time.txt")
        if [ -z "$T" ] || awk "BEGIN { exit !($t < $T) }"; then T=$t; fi
        if [ -z "$CPU" ] || awk "BEGIN { exit !($c < $CPU) }"; then CPU=$c; fi
        [ "$r" -gt "$RSS" ] && RSS=$r
        i=$((i + 1))
    done
}

# cpu CMD...: best CPU seconds of RUNS runs, to the millisecond with perf (else from time -v).
cpu() {
    if command -v perf >/dev/null 2>&1 && perf stat -x, -e task-clock true >/dev/null 2>&1; then
        best=""
        i=0
        while [ "$i" -lt "$runs" ]; do
            c=$(perf stat -x, -e task-clock -o "$cache/perf.txt" "$@" >/dev/null 2>&1; awk -F, '/task-clock/ { printf "%.4f", $1 / 1000 }' "$cache/perf.txt")
            if [ -z "$best" ] || awk "BEGIN { exit !($c < $best) }"; then best=$c; fi
            i=$((i + 1))
        done
        echo "$best"
    else
        timed "$@"
        echo "$CPU"
    fi
}

if [ -n "${BASE:-}" ]; then
    [ -x "$BASE/tcpao-verify" ] || { echo "bench-verify: no $BASE/tcpao-verify" >&2; exit 2; }
    builds="base this"
else
    builds="this"
fi

printf '%-16s %7s %8s %9s %8s %8s %8s %7s %9s %8s %8s %8s %12s\n' capture MB segments "seg/s" wall_s wallN_s cpu_s bare_cpu "x bare" tshark_s "x tshark" "x wallN" "RSS MiB"
for name in synthetic flows100k real jumbo bgp; do
  f="$cache/$name.pcap"; k="$cache/$name.keys.toml"
  mb=$(awk "BEGIN { printf \"%.1f\", $(stat -c %s "$f") / 1048576 }")
  # The same bytes, whichever build verifies them.
  bare_cpu=$($B bare "$f" "$k" | awk '{ print $6 }')
  timed tshark -r "$f"
  tt=$T; tcpu=$CPU; trss=$RSS
  for build in $builds; do
    if [ "$build" = base ]; then V="$BASE/tcpao-verify"; else V=target/release/tcpao-verify; fi
    label=$name; [ -n "${BASE:-}" ] && label="$name/$build"
    timed "$V" -j 1 --keys "$k" --quiet "$f"
    vt=$T; vrss=$RSS
    # summary: N frames, M TCP segments in F flows; good G, bad B, ...
    segs=$(sed -n 's/^summary: [0-9]* frames, \([0-9]*\) TCP segments.*/\1/p' "$cache/out.txt")
    good=$(sed -n 's/^summary: .*; good \([0-9]*\),.*/\1/p' "$cache/out.txt")
    result=$(grep '^result:' "$cache/out.txt" || true)
    if [ "$good" != "$segs" ]; then
        echo "bench-verify: $name: only $good of $segs segments verified ($result)" >&2
        exit 1
    fi
    vcpu=$(cpu "$V" -j 1 --keys "$k" --quiet "$f")
    timed "$V" -j "$threads" --keys "$k" --quiet "$f"
    vtn=$T; [ "$RSS" -gt "$vrss" ] && vrss=$RSS
    awk -v n="$label" -v mb="$mb" -v s="$segs" -v vt="$vt" -v vtn="$vtn" -v vc="$vcpu" -v b="$bare_cpu" -v tt="$tt" -v tc="$tcpu" -v vr="$vrss" -v tr="$trss" 'BEGIN {
        printf "%-16s %7s %8d %9.0f %8.3f %8.3f %8.3f %8.3f %7.2f %9.2f %8.1f %8.1f %5.1f/%-6.0f\n",
            n, mb, s, s / vc, vt, vtn, vc, b, vc / b, tc, tc / vc, tt / vtn, vr / 1024, tr / 1024 }'
  done
done
echo "# seg/s: TCP segments per CPU second of tcpao-verify -j 1 (one thread, every MAC checked). cpu_s: its user+sys"
echo "# time (perf task-clock); wall_s: its wall time; wallN_s: wall time of tcpao-verify -j $threads. bare_cpu: CPU time"
echo "# of the bare RustCrypto MAC over the same bytes. x bare = cpu_s / bare_cpu. tshark_s: user+sys of tshark -r;"
echo "# x tshark = tshark CPU / tcpao-verify -j 1 CPU; x wallN = tshark wall / tcpao-verify -j $threads wall."
echo "# RSS MiB: peak resident memory, tcpao-verify (either run) / tshark (/usr/bin/time -v)."
echo "# Best of $runs runs each; CPU times rather than wall times for the ratios, as the machine may be shared."

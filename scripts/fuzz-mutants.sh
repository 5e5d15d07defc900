#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# How long the fuzzer takes to flag planted bugs: one lab build per mutant (`vm --patch`),
# the same seed and budget for each, and a baseline run on the unpatched kernel whose
# findings are subtracted (a mutant counts as flagged by a finding the baseline does not have).
#
#   scripts/fuzz-mutants.sh OUT [FLAVOUR [SECS [SEED]]]     (default: kcov 600 1)
#
# Mutants: selftests/fuzz-cases/mutants/*.patch. Writes OUT/<name>/summary.json and
# OUT/table.md. Builds wait for the lab lock; one VM at a time.
set -eu
OUT=$1
FLAVOUR=${2:-kcov}
SECS=${3:-600}
SEED=${4:-1}
BIN=${TCPAO_SELFTESTS:-target/debug/tcpao-selftests}
mkdir -p "$OUT"
run() { # name, extra vm args...
	name=$1
	shift
	"$BIN" vm --flavour "$FLAVOUR" "$@" --fuzz --timeout $((SECS + 900)) -- \
		--time "$SECS" --seed "$SEED" --sample-secs 30 --out "$OUT/$name" \
		> "$OUT/$name.log" 2>&1 || true
}
run baseline
for p in selftests/fuzz-cases/mutants/*.patch; do
	run "$(basename "$p" .patch)" --patch "$p"
done
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(n):
    try:
        return json.load(open(os.path.join(out, n, "summary.json")))
    except OSError:
        return None
base = load("baseline")
seen = {f["signature"] for f in (base or {}).get("findings", [])}
rows = ["| mutant | flagged after | by | execs then | new findings |", "|---|---|---|---|---|"]
for n in sorted(os.listdir(out)):
    if n == "baseline" or not os.path.isdir(os.path.join(out, n)):
        continue
    s = load(n)
    if s is None:
        rows.append(f"| {n} | no result (see {n}.log) | | | |")
        continue
    new = [f for f in s["findings"] if f["signature"] not in seen]
    if new:
        f = min(new, key=lambda f: f["first_secs"])
        rows.append(f"| {n} | {f['first_secs']:.0f} s | {f['kind']}: {f['detail'][:80]} | {f['first_exec']} | {len(new)} |")
    else:
        rows.append(f"| {n} | not flagged in {s['secs']:.0f} s ({s['execs']} programs) | | | 0 |")
open(os.path.join(out, "table.md"), "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PY

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The one test command for a fresh machine (CI runs it through .ci/run):
#   1. scripts/setup.sh (tools, virtme-ng venv, default TCP-AO kernel),
#   2. cargo fmt --check, clippy -D warnings, cargo doc -D warnings, cargo test --workspace on the host kernel
#      (pure tests run; kernel-facing ones skip with a reason when the host lacks TCP-AO),
#   3. one boot of the default kernel (Debian sid, CONFIG_TCP_AO=y) running the tcpao-sys
#      test binaries with TCPAO_REQUIRE_TCP_AO=1 and the whole selftest suite, plus a smoke
#      run of every race program (--race-smoke: a dozen iterations each),
#   4. a summary: kernel-facing tests that ran in the VM vs skipped, and a closing
#      "N passed, N failed, N skipped" line. Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
log_dir=$(mktemp -d "${TMPDIR:-/tmp}/tcpao-test.XXXXXX")
failed_steps=()

step() { echo; echo "=== $* ==="; }
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }

step "setup"
if ! bash scripts/setup.sh; then
    echo "test.sh: setup failed" >&2
    exit 1
fi

step "cargo fmt --check"
cargo fmt --all --check || failed_steps+=(fmt)

step "cargo clippy"
cargo clippy -q --workspace --all-targets -- -D warnings || failed_steps+=(clippy)

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc -q --workspace --no-deps || failed_steps+=(doc)

step "cargo test --workspace (host kernel $(uname -r))"
cargo test --workspace --no-fail-fast 2>&1 | tee "$log_dir/host.log"
[ "${PIPESTATUS[0]}" = 0 ] || failed_steps+=(host-tests)
read -r host_pass host_fail host_skip < <(awk '/^test result:/ {
    for (i = 1; i < NF; i++) {
        if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i
    } } END { print p+0, f+0, s+0 }' "$log_dir/host.log")

step "VM: build the kernel-facing test binaries"
cargo build -q -p tcpao-selftests || failed_steps+=(build)
# The kernel-facing tcpao-sys binaries: integration-test targets named in TCPAO_VM_TESTS
# (default: `kernel`, i.e. tcpao-sys/tests/kernel.rs). Pure tests (unit tests, the uapi
# layout check that needs the network for Debian's headers) already ran on the host.
vm_targets=${TCPAO_VM_TESTS:-kernel}
sys_json=$(cargo test -q -p tcpao-sys --no-run --message-format=json 2>/dev/null | grep '"executable":"/')
sys_bins=()
for t in $vm_targets; do
    while IFS= read -r exe; do
        [ -n "$exe" ] && sys_bins+=("$exe")
    done < <(echo "$sys_json" | grep '"kind":\["test"\]' | grep "\"name\":\"$t\"" \
        | grep -o '"executable":"[^"]*"' | cut -d'"' -f4)
done
echo "tcpao-sys kernel-facing test binaries ($vm_targets): ${sys_bins[*]}"
[ "${#sys_bins[@]}" -gt 0 ] || failed_steps+=(no-sys-test-binaries)

step "VM: boot the default TCP-AO kernel once and run everything inside it"
vm_args=(vm --timeout "${TCPAO_VM_TIMEOUT:-2400}")
for b in "${sys_bins[@]}"; do vm_args+=(--cargo-test "$b"); done
vm_args+=(-- --jobs 2 --race-smoke)
target/debug/tcpao-selftests "${vm_args[@]}" 2>&1 | tee "$log_dir/vm.log"
vm_rc=${PIPESTATUS[0]}
[ "$vm_rc" = 0 ] || failed_steps+=("vm(exit $vm_rc)")

# "# vm: in-vm: ran R (passed P, failed F, xfail X), skipped S, errors E; ..."
vm_line=$(grep '^# vm: in-vm:' "$log_dir/vm.log" | tail -1)
read -r vm_ran vm_pass vm_fail vm_xfail vm_skip vm_err < <(echo "$vm_line" |
    sed -E 's/.*ran ([0-9]+) \(passed ([0-9]+), failed ([0-9]+), xfail ([0-9]+)\), skipped ([0-9]+), errors ([0-9]+).*/\1 \2 \3 \4 \5 \6/;t;s/.*/0 0 0 0 0 0/')

step "summary"
echo "host ($(uname -r)): ${host_pass} passed, ${host_fail} failed, ${host_skip} skipped/ignored"
echo "in the VM (TCP-AO kernel): ${vm_ran} kernel-facing tests ran for real (${vm_pass} passed, ${vm_fail} failed, ${vm_xfail} xfail), ${vm_skip} skipped, ${vm_err} errors"
echo "wall time: $(elapsed)"
if ((${#failed_steps[@]})); then
    echo "FAILED steps: ${failed_steps[*]} (logs in $log_dir)"
fi
total_pass=$((host_pass + vm_pass + vm_xfail))
total_fail=$((host_fail + vm_fail + vm_err))
total_skip=$((host_skip + vm_skip))
if ((${#failed_steps[@]})) && [ "$total_fail" = 0 ]; then
    total_fail=1   # a failed step (fmt, clippy, a crashed VM) counts as a failure
fi
echo "${total_pass} passed, ${total_fail} failed, ${total_skip} skipped"
((${#failed_steps[@]} == 0))

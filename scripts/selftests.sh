#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The main job: install what is needed (scripts/setup.sh), build the selftest binary, boot the
# default TCP-AO kernel (Debian sid linux-image-amd64, cached) and run the whole suite inside it.
# KTAP goes to stdout; the exit code is the suite's kselftest code (0 pass, 1 fail, 4 skip).
#
#   bash scripts/selftests.sh                      # the whole suite
#   bash scripts/selftests.sh -- connect/ipv6      # only tests whose name matches
#   bash scripts/selftests.sh --kernel bzImage     # your own kernel (see docs/running.md)
#
# Arguments before `--` go to `tcpao-selftests vm`, those after it to the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
cargo build -q --release -p tcpao-selftests
vm_args=()
while (($#)) && [ "$1" != "--" ]; do vm_args+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
exec target/release/tcpao-selftests vm "${vm_args[@]}" -- --jobs "${TCPAO_JOBS:-2}" "$@"

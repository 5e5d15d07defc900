#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Installs what running the suite inside a TCP-AO kernel needs on a Debian-like machine:
# qemu, kmod (depmod), udev (vng loses the guest's exit code without it), file and a static
# busybox (vng's initramfs), iproute2 (the guest's `ip`), tcpdump (the interop tests' second
# opinion on TCP-MD5), a Python venv with virtme-ng, the default kernel (Debian sid's
# linux-image-amd64, cached) and Debian sid's BIRD 3 for the interop tests
# (scripts/sid-bird.sh, cached). Idempotent: a second run only checks and returns within
# seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tcpao"
venv="$cache/venv"
vng_version="1.42"   # measured on these machines; see docs/running.md

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

python=/usr/bin/python3
[ -x "$python" ] || python=python3

pkgs=()
have qemu-system-x86_64 || pkgs+=(qemu-system-x86)
have depmod || pkgs+=(kmod)
have udevadm || pkgs+=(udev)
have file || pkgs+=(file)
have ip || pkgs+=(iproute2)
have tcpdump || pkgs+=(tcpdump)
have patch || pkgs+=(patch)       # lab: journalled patches (unit-tested on the host)
installed busybox-static || pkgs+=(busybox-static)
"$python" -c 'import ensurepip, venv' >/dev/null 2>&1 || pkgs+=(python3-venv)

if ((${#pkgs[@]})); then
    echo "setup: installing ${pkgs[*]}"
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null
fi

if ! "$venv/bin/vng" --version 2>/dev/null | grep -qx "virtme-ng $vng_version"; then
    echo "setup: virtme-ng $vng_version into $venv"
    mkdir -p "$cache"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q "virtme-ng==$vng_version"
fi

# The default kernel: resolved, downloaded and unpacked by the binary itself (cached).
cargo build -q -p tcpao-selftests
kernel=$(target/debug/tcpao-selftests vm --fetch-only)

# BIRD 3 from Debian sid for the interop tests (interop/*). Without it those tests skip
# with the reason (kept in ~/.cache/tcpao/sid-bird.error); the rest of the suite runs.
if ! bash scripts/sid-bird.sh; then
    echo "setup: WARNING: no BIRD sid root; the interop tests will be skipped" >&2
fi
echo "setup: ok (vng $("$venv/bin/vng" --version | cut -d' ' -f2), kernel $kernel)"

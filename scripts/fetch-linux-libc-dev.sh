#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Fetch Debian sid's linux-libc-dev (the real <linux/tcp.h> with the TCP-AO uAPI) without
# touching the system's apt sources, extract it into a cache directory and print the include
# directory (the only line on stdout). Diagnostics go to stderr. Exit status non-zero with a
# reason if anything fails (no network, no apt-get, ...).
#
# Environment:
#   TCPAO_CACHE   cache root (default: $XDG_CACHE_HOME/tcpao or $HOME/.cache/tcpao)
#   TCPAO_SUITE   Debian suite to take the header from (default: sid)
#   TCPAO_MIRROR  Debian mirror (default: http://deb.debian.org/debian)
set -eu

cache="${TCPAO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcpao}"
suite="${TCPAO_SUITE:-sid}"
mirror="${TCPAO_MIRROR:-http://deb.debian.org/debian}"
apt_dir="$cache/apt-$suite"

die() { echo "fetch-linux-libc-dev: $*" >&2; exit 1; }

command -v apt-get >/dev/null 2>&1 || die "apt-get not found (a Debian-like host is needed)"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found"

mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$cache/linux-libc-dev"
printf 'deb %s %s main\n' "$mirror" "$suite" > "$apt_dir/sources.list"

# run_apt apt-get|apt-cache ARGS...: run with the private sources, lists and caches.
run_apt() {
    tool="$1"
    shift
    "$tool" -q \
        -o Dir::Etc::sourcelist="$apt_dir/sources.list" \
        -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$apt_dir/lists" \
        -o Dir::Cache::archives="$apt_dir/archives" \
        -o Dir::Cache::pkgcache="$apt_dir/pkgcache.bin" \
        -o Dir::Cache::srcpkgcache="$apt_dir/srcpkgcache.bin" \
        -o APT::Sandbox::User=root \
        -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false \
        -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false \
        "$@"
}

# Refresh the private lists at most once a day.
stamp="$apt_dir/updated"
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ]; then
    run_apt apt-get update >&2 || die "apt-get update against $mirror $suite failed (no network?)"
    touch "$stamp"
fi

version="$(run_apt apt-cache policy linux-libc-dev 2>/dev/null | awk '/Candidate:/ {print $2}')"
[ -n "$version" ] && [ "$version" != "(none)" ] || die "no linux-libc-dev candidate in $suite"

dest="$cache/linux-libc-dev/$version"
if [ ! -f "$dest/usr/include/linux/tcp.h" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && run_apt apt-get download "linux-libc-dev=$version" >&2) \
        || die "apt-get download linux-libc-dev=$version failed"
    deb="$(ls "$work"/linux-libc-dev_*.deb 2>/dev/null | head -n1)"
    [ -n "$deb" ] || die "downloaded package not found"
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    dpkg-deb -x "$deb" "$dest.tmp" || die "dpkg-deb -x failed"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
fi
grep -q 'TCP_AO_ADD_KEY' "$dest/usr/include/linux/tcp.h" \
    || die "$dest/usr/include/linux/tcp.h has no TCP-AO definitions"
echo "$dest/usr/include"

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Makes the Debian sid root that runs BIRD 3 (the one BGP daemon with working Linux TCP-AO)
# for the interop selftests (`interop/*`), cached in ~/.cache/tcpao/sid-bird:
#
#   root/            sid's bird3 package and the libraries it needs, unpacked (not a chroot)
#   bin/bird, bin/birdc, bin/birdcl
#                    wrappers that start them with sid's dynamic loader and libraries, so
#                    they run on this machine's root (bookworm's glibc 2.36 is too old for
#                    them) and inside the vm guest, which sees this directory read-only
#   stamp            what was installed (package versions)
#   files            the loader, bird and the libraries it loads (relative to root/): what
#                    the selftests copy to the guest's RAM (starting bird from the 9p share
#                    takes seconds, from RAM milliseconds)
#
# Debian sid's binary packages come through a private apt configuration (the host's apt
# state is not touched): the dependency closure of bird3 is resolved against an empty dpkg
# status, downloaded, and unpacked with `dpkg-deb -x`. About 5 s on a fresh machine
# (debootstrap --variant=minbase --include=bird3 took 66 s here for the same result).
#
# Idempotent: when the stamp is there and `bird --version` runs, it returns at once.
# TCPAO_SID_REFRESH=1 makes it again. On failure the reason is kept in
# ~/.cache/tcpao/sid-bird.error, which the interop tests quote when they skip.
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tcpao"
dest="$cache/sid-bird"
apt_dir="$cache/sid-bird-apt"
err_file="$cache/sid-bird.error"
package=bird3

mkdir -p "$cache"

if [ -z "${TCPAO_SID_REFRESH:-}" ] && [ -f "$dest/stamp" ] && [ -f "$dest/files" ] &&
    "$dest/bin/bird" --version >/dev/null 2>&1; then
    echo "sid-bird: ok ($(head -n1 "$dest/stamp"), $dest)"
    exit 0
fi

fail() {
    echo "sid-bird: $*" >&2
    echo "$*" >"$err_file"
    exit 1
}

for t in apt-get dpkg-deb; do
    command -v "$t" >/dev/null 2>&1 || fail "$t is missing (a Debian-like host is needed)"
done

t0=$(date +%s)
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/state"
echo "deb http://deb.debian.org/debian sid main" >"$apt_dir/sources.list"
: >"$apt_dir/status" # empty dpkg status: resolve the whole dependency closure

apt_opts=(
    -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State=$apt_dir/state"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::State::status=$apt_dir/status"
    -o "Dir::Cache=$apt_dir"
    -o "Dir::Cache::archives=$apt_dir/archives"
    -o "APT::Architecture=amd64"
    -o "APT::Install-Recommends=false"
    -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=1"
)

echo "sid-bird: resolving $package in Debian sid"
if ! out=$(apt-get -q "${apt_opts[@]}" update 2>&1); then
    fail "apt-get update of Debian sid failed: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
fi
rm -f "$apt_dir"/archives/*.deb
if ! out=$(apt-get -q -y "${apt_opts[@]}" install --download-only "$package" 2>&1); then
    fail "downloading $package and its dependencies failed: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
fi

new="$dest.new.$$"
rm -rf "$new"
mkdir -p "$new/root" "$new/bin"
trap 'rm -rf "$new"' EXIT
n=0
for deb in "$apt_dir"/archives/*.deb; do
    dpkg-deb -x "$deb" "$new/root" || fail "dpkg-deb -x $deb failed"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || fail "apt downloaded no packages"

loader=usr/lib64/ld-linux-x86-64.so.2
[ -x "$new/root/$loader" ] || fail "sid's libc6 has no $loader"
for prog in bird birdc birdcl; do
    [ -x "$new/root/usr/sbin/$prog" ] || fail "$package has no /usr/sbin/$prog"
    cat >"$new/bin/$prog" <<EOF
#!/bin/sh
# Runs Debian sid's $prog with sid's loader and libraries (made by scripts/sid-bird.sh).
r="\$(cd "\$(dirname "\$0")/../root" && pwd)"
exec "\$r/$loader" --library-path "\$r/usr/lib/x86_64-linux-gnu" "\$r/usr/sbin/$prog" "\$@"
EOF
    chmod 755 "$new/bin/$prog"
done

version=$("$new/bin/bird" --version 2>&1) || fail "the unpacked bird does not run: $version"
{
    echo "$loader"
    echo usr/sbin/bird
    echo usr/sbin/birdc
    for prog in bird birdc; do
        "$new/root/$loader" --library-path "$new/root/usr/lib/x86_64-linux-gnu" --list "$new/root/usr/sbin/$prog"
    done | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sed "s|^$new/root/||" | grep -v "^$loader\$"
} | sort -u >"$new/files"
{
    echo "$package $(dpkg-deb -f "$apt_dir"/archives/${package}_*.deb Version) ($version)"
    for deb in "$apt_dir"/archives/*.deb; do
        dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb"
    done
} >"$new/stamp"
rm -f "$apt_dir"/archives/*.deb

rm -rf "$dest"
mv "$new" "$dest"
trap - EXIT
rm -f "$err_file"
echo "sid-bird: made $dest ($(head -n1 "$dest/stamp"), $n packages) in $(($(date +%s) - t0))s"

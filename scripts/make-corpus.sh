#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Re-make the kernel capture corpus in pcaps/kernel/: boot the TCP-AO kernel (Debian sid
# linux-image-amd64) under virtme-ng and run the `corpus` selftest program there with
# --save-pcaps. Every case is a normal selftest that must pass; it writes NAME.pcap,
# NAME.keys.toml and NAME.expect.toml (expected verdicts from the kernel's counters).
# Then check the corpus with tcpao-verify (refimpl/tests/corpus.rs).
#
#   scripts/make-corpus.sh            # needs root (network namespaces in the guest), ~2 min
set -eu
cd "$(dirname "$0")/.."
out=pcaps/kernel
cargo build -q -p tcpao-selftests
rm -rf "$out.new"
mkdir -p "$out.new"
target/debug/tcpao-selftests vm -- --save-pcaps "$out.new" --jobs 2 'corpus/'
# Only a complete, passing run replaces the corpus.
rm -rf "$out"
mv "$out.new" "$out"
ls -l "$out"
cargo test -q -p tcpao-refimpl --test corpus

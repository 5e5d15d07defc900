#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Validates socket_inet_tcp_ao.txt with syzkaller's own parser and compiler (pkg/ast,
# pkg/compiler): every description of sys/linux plus ours, with the .const files syzkaller
# ships and ours, then the optval size of each of our calls (must equal sizeof in C:
# add 288, del 144, info 48, get-keys 4 x 304, repair 16, md5sig 216).
#
#   check.sh SYZKALLER_CHECKOUT GO_BINARY
#
# Where the Go module proxy is unreachable (our machines), check/stubs give pkg/stat the
# two tiny APIs it uses (prometheus, gohistogram) and golang.org/x/sys comes from Debian's
# golang-golang-x-sys-dev; `replace` lines in a scratch copy of go.mod point at them.
set -eu
SYZ=$1
GO=$2
HERE=$(cd "$(dirname "$0")" && pwd)
cp "$HERE/socket_inet_tcp_ao.txt" "$SYZ/sys/linux/"
mkdir -p "$SYZ/tools/tcpaocheck"
cp "$HERE/check/main.go" "$SYZ/tools/tcpaocheck/"
grep -v '^#\|^arches' "$HERE/socket_inet_tcp_ao.txt.const" > "$SYZ/tcp_ao.const"
cd "$SYZ"
GOFLAGS=-mod=mod "$GO" build -o tcpaocheck ./tools/tcpaocheck
./tcpaocheck tcp_ao.const

#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Capture real TCP-MD5 signed loopback segments from the running Linux kernel.

Needs root (AF_PACKET) and CONFIG_TCP_MD5SIG. Opens a loopback connection over IPv4 and
IPv6 with TCP_MD5SIG set on both ends, sends a payload, and records every segment of the
connection as seen on `lo` (outgoing copies dropped). Prints JSON on stdout.

Usage: python3 md5_capture.py > md5_kernel.json
"""

import json
import os
import platform
import socket
import struct
import threading
import time

TCP_MD5SIG = 14
KEY = b"md5 key from the kernel test"


def md5sig(family, addr):
    ss = bytearray(128)
    if family == socket.AF_INET:
        struct.pack_into("=H2s4s", ss, 0, socket.AF_INET, b"\0\0", socket.inet_aton(addr))
    else:
        struct.pack_into("=HHI16sI", ss, 0, socket.AF_INET6, 0, 0,
                         socket.inet_pton(socket.AF_INET6, addr), 0)
    # struct tcp_md5sig: addr, flags, prefixlen, keylen, ifindex, key[80]
    return bytes(ss) + struct.pack("=BBHI", 0, 0, len(KEY), 0) + KEY.ljust(80, b"\0")


def run(family, addr):
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    cap.bind(("lo", 0))
    cap.settimeout(0.2)
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(family, addr))
    srv.bind((addr, 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve():
        c, _ = srv.accept()
        c.recv(100)
        c.sendall(b"reply from server")
        c.close()

    th = threading.Thread(target=serve)
    th.start()
    cli = socket.socket(family, socket.SOCK_STREAM)
    cli.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(family, addr))
    cli.connect((addr, port))
    cli.sendall(b"hello, signed world")
    cli.recv(100)
    cli.close()
    th.join()
    pkts = []
    deadline = time.time() + 2
    while time.time() < deadline:
        try:
            data, sa = cap.recvfrom(70000)
        except socket.timeout:
            if pkts:
                break
            continue
        if sa[2] == socket.PACKET_OUTGOING:
            continue
        ip = data[14:]
        ethertype = struct.unpack(">H", data[12:14])[0]
        if ethertype == 0x0800 and ip[9] == 6:
            tcp = ip[(ip[0] & 15) * 4:]
        elif ethertype == 0x86DD and ip[6] == 6:
            tcp = ip[40:]
        else:
            continue
        sport, dport = struct.unpack(">HH", tcp[:4])
        if port in (sport, dport):
            pkts.append(ip.hex())
    cap.close()
    srv.close()
    return port, pkts


def main():
    out = {
        "source": "real loopback segments signed by Linux %s (CONFIG_TCP_MD5SIG), captured "
                  "with tests/data/md5_capture.py (AF_PACKET on lo)" % platform.release(),
        "key_hex": KEY.hex(),
        "captures": [],
    }
    for family, addr in [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]:
        port, pkts = run(family, addr)
        out["captures"].append({"family": "ipv4" if family == socket.AF_INET else "ipv6",
                                "server_port": port, "packets": pkts})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

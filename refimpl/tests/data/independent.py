#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Generate independent TCP-AO / TCP-MD5 fixtures for tcpao-refimpl.

Written from the RFC text (RFC 5925 sections 5.1 and 5.2, RFC 5926 section 3, RFC 4615,
RFC 2385), without looking at or calling the Rust code. Uses only Python's hmac/hashlib
and the `cryptography` package (AES-CMAC).

Usage: python3 independent.py > independent.json

Every fixture contains the full IP packet. Its layout mirrors what
`tcpao_refimpl::sign::build_segment` documents (auth option first, NOP-padded to 4 bytes;
TCP-MD5 preceded by two NOPs; then the other options, EOL-padded), so the Rust tests can
compare built packets byte for byte, checksums included.
"""

import hashlib
import hmac
import ipaddress
import json
import random
import struct
import sys

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms


def aes_cmac(key, msg):
    c = cmac.CMAC(algorithms.AES(key))
    c.update(msg)
    return c.finalize()


def aes_cmac_prf_128(key, msg):
    # RFC 4615 section 3: keys that are not 16 bytes are folded with a zero key first.
    if len(key) != 16:
        key = aes_cmac(bytes(16), key)
    return aes_cmac(key, msg)


ALGS = {
    # name: (prf(key, msg), digest size)
    "hmac-sha1": (lambda k, m: hmac.new(k, m, hashlib.sha1).digest(), 20),
    "hmac-sha256": (lambda k, m: hmac.new(k, m, hashlib.sha256).digest(), 32),
    "aes-128-cmac": (aes_cmac_prf_128, 16),
}


def mac_fn(alg, traffic_key, msg):
    if alg == "aes-128-cmac":
        return aes_cmac(traffic_key, msg)
    return ALGS[alg][0](traffic_key, msg)


def kdf(alg, master, context):
    # RFC 5926 section 3.1: i=1 | "TCP-AO" | context | output length in bits (digest size).
    prf, size = ALGS[alg]
    block = b"\x01" + b"TCP-AO" + context + struct.pack(">H", size * 8)
    return prf(master, block)


def context(src, dst, sport, dport, sisn, disn):
    # RFC 5925 section 5.2.
    return src.packed + dst.packed + struct.pack(">HHII", sport, dport, sisn, disn)


def csum(data):
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(">%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def pseudo(src, dst, tcp_len):
    if src.version == 4:
        return src.packed + dst.packed + struct.pack(">BBH", 0, 6, tcp_len)
    return src.packed + dst.packed + struct.pack(">I", tcp_len) + b"\x00\x00\x00\x06"


def tcp_header(sport, dport, seq, ack, flags, window, options, checksum=0):
    doff = (20 + len(options)) // 4
    return struct.pack(">HHIIHHHH", sport, dport, seq, ack, (doff << 12) | flags, window,
                       checksum, 0) + options


def ip_header(src, dst, tcp_len):
    if src.version == 4:
        h = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 0, 0x4000, 64, 6, 0,
                        src.packed, dst.packed)
        return h[:10] + struct.pack(">H", csum(h)) + h[12:]
    return struct.pack(">IHBB16s16s", 6 << 28, tcp_len, 6, 64, src.packed, dst.packed)


def pad(opts, byte):
    while len(opts) % 4:
        opts += bytes([byte])
    return opts


def build(case):
    src = ipaddress.ip_address(case["src"])
    dst = ipaddress.ip_address(case["dst"])
    other = bytes.fromhex(case["options"])
    payload = bytes.fromhex(case["payload"])
    flags = case["flags"]
    if case["auth"] == "ao":
        maclen = case["mac_len"]
        ao_hdr = bytes([29, 4 + maclen, case["key_id"], case["rnext_key_id"]])
        auth = pad(ao_hdr + bytes(maclen), 1)
    else:
        auth = bytes([1, 1, 19, 18]) + bytes(16)
    opts = pad(auth + other, 0)
    tcp0 = tcp_header(case["sport"], case["dport"], case["seq"], case["ack"], flags, 65535, opts)
    tcp0 += payload
    tcp_len = len(tcp0)
    if case["auth"] == "ao":
        master = bytes.fromhex(case["master_key_hex"])
        syn_only = (flags & 0x02) and not (flags & 0x10)
        # RFC 5925 section 5.2: SYN uses ISN 0 for the remote; the SYN-ACK uses both ISNs.
        disn = 0 if syn_only else case["dst_isn"]
        tk = kdf(case["alg"], master, context(src, dst, case["sport"], case["dport"],
                                              case["src_isn"], disn))
        # RFC 5925 section 5.1 message.
        msg = struct.pack(">I", case["sne"]) + pseudo(src, dst, tcp_len)
        if case["include_options"]:
            msg += tcp0[: 20 + len(opts)]  # checksum and MAC are still zero here
        else:
            msg += tcp0[:20] + ao_hdr + bytes(maclen)
        msg += payload
        mac = mac_fn(case["alg"], tk, msg)[:maclen]
        opts = pad(ao_hdr + mac, 1)
        opts = pad(opts + other, 0)
        case["traffic_key_hex"] = tk.hex()
        case["mac_hex"] = mac.hex()
    else:
        key = bytes.fromhex(case["master_key_hex"])
        # RFC 2385: pseudo-header, 20-byte header with zero checksum, payload, key.
        digest = hashlib.md5(pseudo(src, dst, tcp_len) + tcp0[:20] + payload + key).digest()
        opts = bytes([1, 1, 19, 18]) + digest + other
        opts = pad(opts, 0)
        case["mac_hex"] = digest.hex()
    tcp = tcp_header(case["sport"], case["dport"], case["seq"], case["ack"], flags, 65535, opts)
    tcp += payload
    c = csum(pseudo(src, dst, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack(">H", c) + tcp[18:]
    case["packet_hex"] = (ip_header(src, dst, len(tcp)) + tcp).hex()
    return case


def main():
    rnd = random.Random(5925)
    addrs = [("192.0.2.1", "198.51.100.7"), ("2001:db8::1", "2001:db8:ffff::7")]
    keys = [b"testvector", b"k", bytes(range(16)), b"x" * 80, b"a 61-character sentence used as a key by the kernel tests...."]
    opt_sets = [
        "",
        "020405b4",  # MSS
        "0101080a0000000100000002",  # NOP NOP TS
        "020405b40402",  # MSS, SACK-permitted
    ]
    flag_sets = [0x002, 0x012, 0x018, 0x010, 0x011, 0x014]
    cases = []
    n = 0
    for alg in ["hmac-sha1", "aes-128-cmac", "hmac-sha256"]:
        for mac_len in [1, 4, 7, 12, 16]:
            for fam in addrs:
                n += 1
                flags = flag_sets[n % len(flag_sets)]
                opts = opt_sets[n % len(opt_sets)]
                if mac_len > 12 and opts == "020405b40402":
                    opts = "020405b4"
                case = {
                    "id": "ao-%d" % n,
                    "auth": "ao",
                    "alg": alg,
                    "mac_len": mac_len,
                    "include_options": n % 3 != 0,
                    "master_key_hex": keys[n % len(keys)].hex(),
                    "src": fam[0],
                    "dst": fam[1],
                    "sport": rnd.randrange(1024, 65536),
                    "dport": 179,
                    "src_isn": rnd.randrange(1 << 32),
                    "dst_isn": rnd.randrange(1 << 32),
                    "seq": 0,
                    "ack": 0,
                    "flags": flags,
                    "key_id": rnd.randrange(256),
                    "rnext_key_id": rnd.randrange(256),
                    "sne": [0, 1, 0xDEADBEEF, 0xFFFFFFFF][n % 4],
                    "options": opts,
                    "payload": bytes(rnd.randrange(256) for _ in range([0, 1, 33, 64][n % 4])).hex(),
                }
                if flags & 0x02:
                    case["sne"] = 0
                    case["payload"] = ""
                case["seq"] = case["src_isn"] if flags & 0x02 else rnd.randrange(1 << 32)
                case["ack"] = case["dst_isn"] + 1 if flags & 0x10 else 0
                case["ack"] &= 0xFFFFFFFF
                cases.append(build(case))
    for i, fam in enumerate(addrs * 2):
        case = {
            "id": "md5-%d" % i,
            "auth": "md5",
            "master_key_hex": keys[i % len(keys)].hex(),
            "src": fam[0],
            "dst": fam[1],
            "sport": 40000 + i,
            "dport": 179,
            "seq": rnd.randrange(1 << 32),
            "ack": rnd.randrange(1 << 32) if i % 2 else 0,
            "flags": 0x018 if i % 2 else 0x002,
            "options": opt_sets[(i + 1) % len(opt_sets)],
            "payload": (b"BGP" * (i * 5)).hex(),
        }
        cases.append(build(case))
    json.dump({
        "source": "generated by tests/data/independent.py (Python hmac/hashlib + cryptography "
                  "AES-CMAC), written from RFC 5925/5926/4615/2385 independently of the Rust code",
        "how": "python3 tests/data/independent.py > tests/data/independent.json "
               "(deterministic: random.Random(5925))",
        "cases": cases,
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

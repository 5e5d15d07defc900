// SPDX-License-Identifier: MIT OR Apache-2.0
//! Known-answer tests driven by data files in `tests/data/`. Test name == data file name.
//!
//! * `rfc9235.json`: RFC 9235 §4 (IPv4, HMAC-SHA-1-96) and §7 (IPv6, AES-128-CMAC-96);
//!   provenance in the file's `source`/`notes`.
//! * `rfc4493_4615.json`: RFC 4493 §4 AES-CMAC and RFC 4615 §4 AES-CMAC-PRF-128.
//!
//! The other data files have their own test files: `independent.json` (HMAC-SHA-256 and
//! non-default MAC lengths from Python's `hmac`/`hashlib`) in `tests/independent.rs`, and
//! `md5_kernel.json` (Linux-signed TCP-MD5 segments) in `tests/md5.rs`.

use serde::Deserialize;
use tcpao_refimpl::kdf::{self, Context};
use tcpao_refimpl::mkt::decode_hex;
use tcpao_refimpl::validate::Direction;
use tcpao_refimpl::{
    Algorithm, Connection, FlowValidator, Mkt, SegmentRef, TrafficKey, TrafficKeys, Verdict,
    compute_mac, verify_mac,
};

fn hex(s: &str) -> Vec<u8> {
    decode_hex(s).unwrap().to_vec()
}

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[derive(Deserialize)]
struct Rfc9235 {
    source: String,
    vectors: Vec<AoVector>,
}

#[derive(Deserialize)]
struct AoVector {
    id: String,
    mac_algorithm: String,
    include_tcp_options: bool,
    master_key_hex: String,
    segment_type: String,
    direction: String,
    client_addr: String,
    client_port: u16,
    server_addr: String,
    server_port: u16,
    client_isn: String,
    server_isn: String,
    key_id: u8,
    rnext_key_id: u8,
    sne: u32,
    traffic_key_hex: String,
    mac_hex: String,
    packet_hex: String,
}

fn parse_alg(rfc_name: &str) -> Algorithm {
    rfc_name.parse().unwrap()
}

/// Check one RFC 9235 vector: traffic key from the sender's connection view, MAC
/// over the packet, constant-time verification, and a validator on both ends.
fn check_ao_vector(v: &AoVector) {
    let ctx = |step: &str| format!("{} ({}): {step}", v.id, v.segment_type);
    let alg = parse_alg(&v.mac_algorithm);
    let client: std::net::SocketAddr = format!("{}:{}", fmt_ip(&v.client_addr), v.client_port)
        .parse()
        .unwrap();
    let server: std::net::SocketAddr = format!("{}:{}", fmt_ip(&v.server_addr), v.server_port)
        .parse()
        .unwrap();
    let cisn = u32::from_str_radix(&v.client_isn, 16).unwrap();
    let sisn = u32::from_str_radix(&v.server_isn, 16).unwrap();
    let from_client = match v.direction.as_str() {
        "client_to_server" => true,
        "server_to_client" => false,
        d => panic!("{}", ctx(&format!("unknown direction {d}"))),
    };
    // The sender's view of the connection; the sender's SendID is the KeyID.
    let conn = if from_client {
        Connection::new(client, server, cisn, sisn)
    } else {
        Connection::new(server, client, sisn, cisn)
    };
    let key = hex(&v.master_key_hex);
    let mkt = Mkt::new(v.key_id, v.rnext_key_id, alg, &key[..])
        .with_include_options(v.include_tcp_options);
    let keys = TrafficKeys::derive(&mkt, &conn).unwrap();
    let packet = hex(&v.packet_hex);
    let seg = SegmentRef::parse(&packet).unwrap();
    let tcp = seg.tcp_packet();
    let syn_only = tcp.syn() && !tcp.ack();
    let tk = keys.for_send(syn_only);
    assert_eq!(
        tk.as_bytes(),
        &hex(&v.traffic_key_hex)[..],
        "{}",
        ctx("traffic key")
    );
    // The raw KDF with an explicitly built context gives the same key.
    let (isn_s, isn_d) = if syn_only {
        (conn.local_isn, 0)
    } else {
        (conn.local_isn, conn.remote_isn)
    };
    let c = Context::new(conn.local, conn.remote, isn_s, isn_d).unwrap();
    assert_eq!(
        kdf::kdf(alg, &key, c.as_bytes()).as_bytes(),
        tk.as_bytes(),
        "{}",
        ctx("raw KDF")
    );
    // The peer's receive key equals the sender's send key.
    let peer = TrafficKeys::derive(&mkt.peer_view(), &conn.reversed()).unwrap();
    assert_eq!(peer.for_recv(syn_only), tk, "{}", ctx("peer receive key"));

    let mac = hex(&v.mac_hex);
    let got = compute_mac(tk, mac.len(), v.sne, &seg, v.include_tcp_options).unwrap();
    assert_eq!(got.as_bytes(), &mac[..], "{}", ctx("MAC"));
    let from_vector_key = TrafficKey::new(alg, &hex(&v.traffic_key_hex)).unwrap();
    assert!(
        verify_mac(&from_vector_key, v.sne, &seg, v.include_tcp_options).unwrap(),
        "{}",
        ctx("verify with the published traffic key")
    );
    // The wrong option flag must not verify.
    assert!(
        !verify_mac(tk, v.sne, &seg, !v.include_tcp_options).unwrap(),
        "{}",
        ctx("verify with the option flag flipped")
    );
    // RFC 9235 IPv4 checksums are wrong on purpose; verification ignores them.
    let _ = tcp.verify_checksum(&seg.src, &seg.dst);

    // Validators at both ends accept the packet.
    let sender_view = FlowValidator::new(conn, [mkt.clone()]).unwrap();
    let dir = sender_view.direction_of(&seg).unwrap();
    assert_eq!(dir, Direction::LocalToRemote, "{}", ctx("direction"));
    let mut receiver = FlowValidator::new(conn.reversed(), [mkt.peer_view()]).unwrap();
    let verdict = receiver.validate_packet(&packet).unwrap();
    assert_eq!(
        verdict,
        Verdict::Good {
            key_id: v.key_id,
            rnext_key_id: v.rnext_key_id,
            sne: v.sne
        },
        "{}",
        ctx("receiver verdict")
    );
    let mut sender = sender_view;
    assert!(
        matches!(
            sender.validate_packet(&packet).unwrap(),
            Verdict::Good { .. }
        ),
        "{}",
        ctx("sender-side verdict")
    );
    // A receiver with a different master key says Bad. (A NUL-terminated "testvector\0"
    // would not do for HMAC: HMAC zero-pads short keys, so it is the same HMAC key.)
    let wrong = Mkt::new(v.rnext_key_id, v.key_id, alg, "Testvector")
        .with_include_options(v.include_tcp_options);
    let mut w = FlowValidator::new(conn.reversed(), [wrong]).unwrap();
    let wv = w.validate_packet(&packet).unwrap();
    assert!(
        matches!(wv, Verdict::Bad { .. }),
        "{}: {wv:?}",
        ctx("a different key must fail")
    );
}

fn fmt_ip(s: &str) -> String {
    if s.contains(':') {
        format!("[{s}]")
    } else {
        s.to_owned()
    }
}

#[test]
fn rfc9235() {
    let data: Rfc9235 = load("rfc9235.json");
    assert!(data.source.contains("RFC 9235"));
    assert_eq!(data.vectors.len(), 16);
    for v in &data.vectors {
        check_ao_vector(v);
    }
}

#[test]
fn rfc9235_ipv4_checksums_are_wrong_but_macs_verify() {
    let data: Rfc9235 = load("rfc9235.json");
    let mut bad_checksums = 0;
    for v in data.vectors.iter().filter(|v| !v.client_addr.contains(':')) {
        let packet = hex(&v.packet_hex);
        let seg = SegmentRef::parse(&packet).unwrap();
        if !seg.tcp_packet().verify_checksum(&seg.src, &seg.dst) {
            bad_checksums += 1;
        }
    }
    assert_eq!(bad_checksums, 8);
}

#[derive(Deserialize)]
struct CmacFile {
    rfc4493: Vec<CmacVector>,
    rfc4615: Vec<PrfVector>,
}

#[derive(Deserialize)]
struct CmacVector {
    key: String,
    message: String,
    tag: String,
}

#[derive(Deserialize)]
struct PrfVector {
    key: String,
    message: String,
    output: String,
}

#[test]
fn rfc4493_4615() {
    let data: CmacFile = load("rfc4493_4615.json");
    assert_eq!(data.rfc4493.len(), 4);
    for (i, v) in data.rfc4493.iter().enumerate() {
        let k: [u8; 16] = hex(&v.key).try_into().unwrap();
        assert_eq!(
            kdf::aes_cmac(&k, &hex(&v.message)).to_vec(),
            hex(&v.tag),
            "RFC 4493 example {i}"
        );
    }
    let lens: Vec<usize> = data.rfc4615.iter().map(|v| hex(&v.key).len()).collect();
    assert_eq!(lens, [18, 16, 10]);
    for v in &data.rfc4615 {
        assert_eq!(
            kdf::aes_cmac_prf_128(&hex(&v.key), &hex(&v.message)).to_vec(),
            hex(&v.output),
            "RFC 4615 key length {}",
            hex(&v.key).len()
        );
    }
}

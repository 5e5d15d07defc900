// SPDX-License-Identifier: MIT OR Apache-2.0
//! TCP-MD5 (RFC 2385) against real Linux-signed loopback segments
//! (`tests/data/md5_kernel.json`, made by `tests/data/md5_capture.py`), IPv4 and IPv6.
//! The Python-computed MD5 known answers are in `tests/independent.rs`.

use serde::Deserialize;
use std::net::SocketAddr;
use tcpao_refimpl::mkt::decode_hex;
use tcpao_refimpl::sign::{Auth, IpHeader, build_segment, flip_bit, sign_md5_in_place};
use tcpao_refimpl::wire::TcpRepr;
use tcpao_refimpl::{
    Algorithm, Connection, Counter, FlowValidator, MasterKey, Mkt, SegmentRef, Verdict, verify_md5,
};

#[derive(Deserialize)]
struct File {
    source: String,
    key_hex: String,
    captures: Vec<Capture>,
}

#[derive(Deserialize)]
struct Capture {
    family: String,
    packets: Vec<String>,
}

fn load() -> File {
    let path = format!("{}/tests/data/md5_kernel.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn conn_of(seg: &SegmentRef<'_>) -> Connection {
    let t = seg.tcp_packet();
    Connection::new(
        SocketAddr::new(seg.src, t.src_port()),
        SocketAddr::new(seg.dst, t.dst_port()),
        0,
        0,
    )
}

#[test]
fn md5_kernel() {
    let f = load();
    assert!(f.source.contains("Linux"));
    let key = decode_hex(&f.key_hex).unwrap().to_vec();
    let mut families = Vec::new();
    for cap in &f.captures {
        families.push(cap.family.clone());
        assert!(
            cap.packets.len() >= 8,
            "{}: handshake, data, FIN",
            cap.family
        );
        for (i, h) in cap.packets.iter().enumerate() {
            let pkt = decode_hex(h).unwrap().to_vec();
            let seg = SegmentRef::parse(&pkt).unwrap();
            assert!(verify_md5(&seg, &key).unwrap(), "{} #{i}", cap.family);
            assert!(!verify_md5(&seg, b"wrong").unwrap(), "{} #{i}", cap.family);
            let conn = conn_of(&seg);
            let mut v = FlowValidator::new(conn, [])
                .unwrap()
                .with_md5_key(MasterKey::new(key.clone()));
            assert_eq!(v.validate_packet(&pkt).unwrap(), Verdict::Md5Good);
            // No MD5 key: TCPMD5Unexpected; also for a TCP-AO-only end.
            let mut v = FlowValidator::new(conn, []).unwrap();
            assert_eq!(v.validate_packet(&pkt).unwrap(), Verdict::Md5Unexpected);
            let mut v =
                FlowValidator::new(conn, [Mkt::new(1, 1, Algorithm::HmacSha1, "k")]).unwrap();
            assert_eq!(v.validate_packet(&pkt).unwrap(), Verdict::Md5Unexpected);
            // Tampered header (sequence number; options are not covered): TCPMD5Failure.
            let mut bad = pkt.clone();
            flip_bit(&mut bad, (seg.tcp_offset + 7) * 8);
            let mut v = FlowValidator::new(conn, [])
                .unwrap()
                .with_md5_key(MasterKey::new(key.clone()));
            assert_eq!(v.validate_packet(&bad).unwrap(), Verdict::Md5Bad);
            assert_eq!(v.counts().get(Counter::TCPMD5Failure), 1);
            // Re-signing in place restores it.
            sign_md5_in_place(&mut bad, &key).unwrap();
            let seg2 = SegmentRef::parse(&bad).unwrap();
            assert!(verify_md5(&seg2, &key).unwrap());
            // Our own builder reproduces the kernel's digest for the same segment fields.
            let t = seg.tcp_packet();
            let repr = TcpRepr::parse(&t).unwrap();
            let others: Vec<u8> = {
                // the kernel's options minus its NOP NOP MD5 prefix
                let r = t.auth_options().unwrap().md5.unwrap();
                let mut o = t.options().to_vec();
                let (mut s, e) = (r.start - 20, r.end - 20);
                if s >= 2 && o[s - 2..s] == [1, 1] {
                    s -= 2;
                }
                o.drain(s..e);
                o
            };
            let rebuilt = build_segment(
                &IpHeader::new(seg.src, seg.dst),
                &TcpRepr {
                    options: &others,
                    ..repr
                },
                &Auth::Md5(&key),
            )
            .unwrap();
            let rs = SegmentRef::parse(&rebuilt).unwrap();
            let r = rs.tcp_packet().auth_options().unwrap().md5.unwrap();
            let k = t.auth_options().unwrap().md5.unwrap();
            assert_eq!(
                rs.tcp[r.start..r.end],
                seg.tcp[k.start..k.end],
                "{} #{i}",
                cap.family
            );
        }
    }
    assert_eq!(families, ["ipv4", "ipv6"]);
}

#[test]
fn unsigned_segment_with_md5_key_is_not_found() {
    let pkt = build_segment(
        &IpHeader::new("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()),
        &TcpRepr {
            src_port: 1,
            dst_port: 2,
            seq_number: 3,
            ack_number: 0,
            flags: tcpao_refimpl::wire::TcpFlags::SYN,
            window_len: 100,
            urgent_at: 0,
            options: &[],
            payload: &[],
        },
        &Auth::None,
    )
    .unwrap();
    let seg = SegmentRef::parse(&pkt).unwrap();
    let conn = conn_of(&seg);
    let mut v = FlowValidator::new(conn, [])
        .unwrap()
        .with_md5_key(MasterKey::from("k"));
    assert_eq!(v.validate_packet(&pkt).unwrap(), Verdict::Md5NotFound);
    let mut v = FlowValidator::new(conn, []).unwrap();
    assert_eq!(v.validate_packet(&pkt).unwrap(), Verdict::Unauthenticated);
    let mut v = FlowValidator::new(conn, [Mkt::new(1, 1, Algorithm::HmacSha1, "k")]).unwrap();
    assert_eq!(v.validate_packet(&pkt).unwrap(), Verdict::Unsigned);
    assert_eq!(v.counts().get(Counter::TCPAORequired), 1);
}

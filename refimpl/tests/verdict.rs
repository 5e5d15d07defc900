// SPDX-License-Identifier: MIT OR Apache-2.0
//! One verification engine: the capture checker and the flow validator decide every segment
//! with the same function, so they give the same verdict, including on the inputs where they
//! used to disagree (RFC 5925 §2.2, §3.1, §7.3; Linux `tcp_inbound_hash()`).

#[path = "support/verify.rs"]
mod support;

use std::io::Cursor;

use support::*;
use tcpao_refimpl::capture::{CaptureReader, LinkType, SkipReason};
use tcpao_refimpl::verify::keys::KeysFile;
use tcpao_refimpl::verify::{Checker, Options, Report};
use tcpao_refimpl::wire::TcpFlags;
use tcpao_refimpl::{
    Algorithm, BadReason, Connection, Counter, FlowValidator, MasterKey, Mkt, Verdict,
};

/// Every segment's verdict from the capture checker.
fn checker(keys: &str, packets: &[Vec<u8>]) -> Report {
    let keys = KeysFile::parse(keys).unwrap();
    let opts = Options {
        record_segments: true,
        ..Options::default()
    };
    let mut c = Checker::new(&keys, opts);
    let mut r = CaptureReader::new(Cursor::new(pcap(LinkType::Ethernet, packets))).unwrap();
    c.check_capture("test.pcap", &mut r, |_| {}).unwrap();
    c.finish()
}

fn verdicts(r: &Report) -> Vec<Verdict> {
    r.flows
        .iter()
        .flat_map(|f| f.segments.iter().map(|s| s.verdict))
        .collect()
}

/// The client's validator of the standard session (client 10.0.0.1:40000, IDs 1/2).
fn validator(s: &Session, mkts: impl IntoIterator<Item = Mkt>) -> FlowValidator {
    let conn = Connection::new(s.c.addr, s.s.addr, s.c.isn, s.s.isn);
    FlowValidator::new(conn, mkts).unwrap()
}

#[test]
fn checker_and_validator_agree_segment_by_segment() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(3);
    // One segment with another secret: bad in both.
    let mut tampered = standard(Signing::Ao(mkt(1, 2, Algorithm::HmacSha1, "x")), ao(2, 1));
    tampered.conversation(3);
    s.packets[5] = tampered.packets[5].clone();
    let r = checker(KEYS_STD, &s.packets);
    let mut v = validator(&s, [mkt(1, 2, Algorithm::HmacSha1, "secret")]);
    let expected: Vec<Verdict> = s
        .packets
        .iter()
        .map(|p| v.validate_packet(p).unwrap())
        .collect();
    assert_eq!(verdicts(&r), expected);
    assert!(matches!(
        expected[5],
        Verdict::Bad {
            reason: BadReason::MacMismatch,
            ..
        }
    ));
    assert_eq!(
        r.counts.get(Counter::TCPAOGood),
        v.counts().get(Counter::TCPAOGood)
    );
}

/// RFC 5925 §2.2/§2.4: a segment with two authentication options is malformed. Linux drops
/// it before any counter (`tcp_hash_bad_header`); the checker skips it as malformed TCP
/// instead of counting it bad (`TCPAOBad`).
#[test]
fn two_authentication_options_are_malformed_not_bad() {
    // The signer refuses a TCP-MD5 option: sign with an experimental option of its size
    // (RFC 6994 kind 253), then make it TCP-MD5 (kind 19).
    let mut option = vec![253u8, 18];
    option.extend_from_slice(&[0; 16]);
    option.extend_from_slice(&[1, 1]);
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.handshake();
    s.send(true, TcpFlags::PSH | TcpFlags::ACK, &option, b"hello");
    let last = s.packets.last_mut().unwrap();
    // After the 20-byte IPv4 and TCP headers, and the TCP-AO option the signer put first.
    let at = 20 + 20 + 16;
    assert_eq!(last[at..at + 2], [253, 18]);
    last[at] = 19;
    let mut v = validator(&s, [mkt(1, 2, Algorithm::HmacSha1, "secret")]);
    let last = s.packets.last().unwrap();
    for p in &s.packets[..3] {
        assert!(matches!(
            v.validate_packet(p).unwrap(),
            Verdict::Good { .. }
        ));
    }
    assert!(matches!(
        v.validate_packet(last).unwrap(),
        Verdict::Malformed { .. }
    ));
    assert_eq!(v.counts().get(Counter::TCPAOBad), 0);
    let r = checker(KEYS_STD, &s.packets);
    assert_eq!((r.counts.good(), r.counts.bad()), (3, 0));
    assert_eq!(r.skipped.get(SkipReason::MalformedTcp), 1);
    assert_eq!(r.tcp_segments, 3);
    assert_eq!(r.exit_code(), 0);
}

/// A TCP-MD5 option without an MD5 key is `TCPMD5Unexpected` (Linux
/// `tcp_inbound_md5_hash()`), an unsigned segment to an MD5-keyed peer `TCPMD5NotFound`; the
/// report still lists them as `key_not_found` and `unsigned`.
#[test]
fn md5_without_a_key_counts_the_md5_counters() {
    let mut s = standard(Signing::Md5(b"md5key".to_vec()), Signing::None);
    s.conversation(1);
    let r = checker(KEYS_STD, &s.packets);
    // SYN, ACK, data, FIN, ACK from the client; SYN-ACK, data, FIN from the server.
    let from_client = 5;
    assert_eq!(r.counts.key_not_found(), from_client as u64);
    assert_eq!(r.counts.get(Counter::TCPMD5Unexpected), from_client as u64);
    assert_eq!(r.counts.get(Counter::TCPAOKeyNotFound), 0);
    let mut v = validator(&s, []);
    assert_eq!(
        v.validate_packet(&s.packets[0]).unwrap(),
        Verdict::Md5Unexpected
    );

    let md5_keys = "[[mkt]]\nalgorithm = \"md5\"\nsecret = \"md5key\"\nlocal = \"10.0.0.1\"\n";
    let r = checker(md5_keys, &s.packets);
    assert_eq!(r.counts.md5_good(), from_client as u64);
    assert_eq!(r.counts.unsigned(), (s.packets.len() - from_client) as u64);
    assert_eq!(r.counts.get(Counter::TCPMD5NotFound), r.counts.unsigned());
    assert_eq!(r.counts.get(Counter::TCPAORequired), 0);
    let mut v = validator(&s, []).with_md5_key(MasterKey::from("md5key"));
    let got: Vec<Verdict> = s
        .packets
        .iter()
        .map(|p| v.validate_packet(p).unwrap())
        .collect();
    assert_eq!(verdicts(&r), got);
}

/// RFC 5925 §3.1/§7.3: the KeyID selects one MKT. With two tuples of the same IDs and
/// addresses (the keys file warns), the first decides; the second is only tried by
/// `--explain`.
#[test]
fn the_first_matching_mkt_decides() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(1);
    let keys = format!("{}{KEYS_STD}", KEYS_STD.replace("\"secret\"", "\"stale\""));
    let parsed = KeysFile::parse(&keys).unwrap();
    assert!(parsed.warnings[0].contains("segments always select MKT #1"));
    let r = checker(&keys, &s.packets);
    assert_eq!(r.counts.bad(), s.packets.len() as u64);
    assert!(
        r.flows[0].segments.iter().all(|x| x.mkt == Some(1)),
        "{:?}",
        r.flows[0].segments
    );
    let mut v = validator(
        &s,
        [
            mkt(1, 2, Algorithm::HmacSha1, "stale"),
            mkt(1, 2, Algorithm::HmacSha1, "secret"),
        ],
    );
    for p in &s.packets {
        assert!(matches!(v.validate_packet(p).unwrap(), Verdict::Bad { .. }));
    }
}

/// A MAC of another length than the MKT's can never verify: bad (RFC 5925 §2.2; Linux
/// `tcp_ao_wrong_maclen`), whether or not the capture holds the ISNs.
#[test]
fn a_wrong_mac_length_is_bad_even_without_isns() {
    let m = mkt(1, 2, Algorithm::HmacSha1, "secret")
        .with_mac_len(16)
        .unwrap();
    let mut s = standard(Signing::Ao(m.clone()), Signing::Ao(m.peer_view()));
    s.conversation(1);
    // Without the handshake the ISNs are unknown.
    let r = checker(KEYS_STD, &s.packets[3..]);
    assert_eq!(r.counts.bad(), (s.packets.len() - 3) as u64);
    assert_eq!(r.counts.unverifiable(), 0);
    let f = &r.flows[0];
    assert!(
        f.failures[0]
            .reason
            .as_deref()
            .is_some_and(|t| t.contains("MAC is 16 bytes but MKT #1 has maclen = 12")),
        "{:?}",
        f.failures[0]
    );
    // With a correct MAC length and no ISNs the segment cannot be checked.
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(1);
    let r = checker(KEYS_STD, &s.packets[3..]);
    assert_eq!(r.counts.unverifiable(), (s.packets.len() - 3) as u64);
}

#[test]
fn keys_file_round_trips_through_toml() {
    let text = format!(
        "{KEYS_STD}[[mkt]]\nalgorithm = \"md5\"\nsecret_hex = \"00ff22\"\npeer = \"10.0.0.0/24\"\n\
         [[mkt]]\nalgorithm = \"aes-128-cmac\"\nsecret = \"a \\\"quoted\\\" one\"\nsend_id = 5\n\
         recv_id = 6\nlocal = \"fd00::1\"\npeer = \"fd00::/64\"\ninclude_options = false\nmaclen = 4\n\
         [[flow]]\nclient = \"10.0.0.1:40000\"\nserver = \"10.0.0.2:179\"\nclient_isn = 1\n\
         server_isn = 4294967295\nserver_sne = 3\n"
    );
    let k = KeysFile::parse(&text).unwrap();
    let out = k.to_toml().unwrap();
    assert!(out.contains("secret_hex = \"00ff22\""), "{}", out.as_str());
    assert!(
        out.contains("secret_hex = \"612022717") || out.contains("secret_hex = \"6120227175"),
        "quotes go to hex: {}",
        out.as_str()
    );
    let back = KeysFile::parse(&out).unwrap();
    assert_eq!(back.mkts.len(), 3);
    assert_eq!(back.flows, k.flows);
    for (a, b) in k.mkts.iter().zip(&back.mkts) {
        assert_eq!(a.secret(), b.secret());
        assert_eq!(a.mkt(), b.mkt());
        assert_eq!((a.local, a.peer), (b.local, b.peer));
    }
    // The Debug output never shows a secret.
    assert!(!format!("{k:?}").contains("quoted"));
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The checker on synthetic connections signed by refimpl: every verdict kind, both
//! directions, mid-connection captures with [[flow]], SNE wrap, key rotation, options
//! excluded, RSTs, retransmissions, simultaneous open, TCP-MD5, and each --explain finding.

#[path = "support/verify.rs"]
mod support;

use std::io::Cursor;

use support::*;
use tcpao_refimpl::Algorithm;
use tcpao_refimpl::capture::{CaptureReader, LinkType, SkipReason};
use tcpao_refimpl::kdf::Context;
use tcpao_refimpl::verify::keys::KeysFile;
use tcpao_refimpl::verify::{Checker, Counts, IsnSource, Options, Report, Verdict};
use tcpao_refimpl::wire::TcpFlags;

fn run_opts(keys: &str, packets: &[Vec<u8>], opts: Options) -> Report {
    let keys = KeysFile::parse(keys).unwrap();
    let mut c = Checker::new(&keys, opts);
    let mut r = CaptureReader::new(Cursor::new(pcap(LinkType::Ethernet, packets))).unwrap();
    c.check_capture("test.pcap", &mut r, |_| {}).unwrap();
    c.finish()
}

fn run(keys: &str, packets: &[Vec<u8>]) -> Report {
    run_opts(keys, packets, Options::default())
}

fn explain(keys: &str, packets: &[Vec<u8>]) -> Report {
    run_opts(
        keys,
        packets,
        Options {
            explain: true,
            ..Options::default()
        },
    )
}

/// Expected report counts by name ([`Verdict::NAMES`]); TCP-MD5 and `not_covered` are 0.
fn counts(good: u64, bad: u64, knf: u64, unsigned: u64, unverifiable: u64) -> [u64; 8] {
    [good, bad, knf, unsigned, unverifiable, 0, 0, 0]
}

/// The report counts of `c` by name.
fn named(c: &Counts) -> [u64; 8] {
    Verdict::NAMES.map(|n| c.named(n))
}

fn diagnosis(r: &Report) -> String {
    r.flows
        .iter()
        .flat_map(|f| f.diagnosis.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn good_conversation_every_algorithm_both_families() {
    for alg in Algorithm::ALL {
        for v6 in [false, true] {
            let (c, s) = if v6 {
                (sa("[fd00::1]:40000"), sa("[fd00::2]:179"))
            } else {
                (sa("10.0.0.1:40000"), sa("10.0.0.2:179"))
            };
            let mut sess = Session::new(
                c,
                s,
                1000,
                2_000_000,
                Signing::Ao(mkt(7, 9, alg, "pass")),
                Signing::Ao(mkt(9, 7, alg, "pass")),
            );
            sess.conversation(3);
            let keys = format!(
                "[[mkt]]\nalgorithm = \"{}\"\nsecret = \"pass\"\nsend_id = 7\nrecv_id = 9\nlocal = \"{}\"\n",
                alg.keyfile_name(),
                c.ip()
            );
            let r = run(&keys, &sess.packets);
            assert_eq!(named(&r.counts), counts(12, 0, 0, 0, 0), "{alg} v6={v6}");
            assert_eq!(r.exit_code(), 0);
            let f = &r.flows[0];
            assert_eq!((f.client, f.server), (c, s));
            assert_eq!((f.client_isn, f.server_isn), (Some(1000), Some(2_000_000)));
            assert_eq!(f.isn_source, IsnSource::Handshake);
            assert_eq!(f.client_key_ids.0, vec![7]);
            assert_eq!(f.server_key_ids.0, vec![9]);
            assert_eq!(f.state, "fin");
        }
    }
}

#[test]
fn wrong_secret_is_bad_in_both_directions() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(2);
    let r = run(&KEYS_STD.replace("\"secret\"", "\"other\""), &s.packets);
    assert_eq!(named(&r.counts), counts(0, 10, 0, 0, 0));
    assert_eq!(r.exit_code(), 1);
    let f = &r.flows[0];
    assert_eq!(f.failures.len(), 10);
    assert!(matches!(f.failures[0].verdict, Verdict::Bad { .. }));
    assert_eq!(f.failures[0].frame, 1);
    assert!(f.failures[0].reason.as_deref().unwrap().contains("MKT #1"));
}

#[test]
fn one_tampered_segment() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(2);
    let n = s.packets[4].len();
    s.packets[4][n - 1] ^= 1; // payload byte
    let r = run(KEYS_STD, &s.packets);
    assert_eq!(named(&r.counts), counts(9, 1, 0, 0, 0));
    assert_eq!(r.flows[0].failures[0].frame, 5);
}

#[test]
fn key_not_found_when_no_tuple_has_the_key_id() {
    let mut s = standard(ao(5, 2), ao(2, 5));
    s.conversation(1);
    let r = run(KEYS_STD, &s.packets);
    // Client sends KeyID 5 (we expect 1); the server sends KeyID 2 (expected, but signed
    // for the peer's RecvID 5, with the same secret, so it verifies).
    assert_eq!(named(&r.counts), counts(3, 0, 5, 0, 0));
    let f = &r.flows[0];
    assert!(
        f.failures
            .iter()
            .all(|x| matches!(x.verdict, Verdict::KeyNotFound { .. }))
    );
    assert!(f.failures[0].reason.as_deref().unwrap().contains("KeyID 5"));
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn unsigned_where_a_key_is_expected() {
    let mut s = standard(ao(1, 2), Signing::None);
    s.conversation(1);
    let r = explain(KEYS_STD, &s.packets);
    assert_eq!(named(&r.counts), counts(5, 0, 0, 3, 0));
    assert!(
        diagnosis(&r).contains("10.0.0.2 sends segments without TCP-AO"),
        "{}",
        diagnosis(&r)
    );
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn traffic_outside_the_keys_is_not_covered() {
    let mut s = standard(Signing::None, Signing::None);
    s.conversation(1);
    let keys = KEYS_STD.replace("local = \"10.0.0.1\"", "local = \"192.0.2.1\"");
    let r = run(&keys, &s.packets);
    assert_eq!(r.counts.not_covered(), 8);
    assert_eq!(r.counts.failures(), 0);
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn mid_connection_is_unverifiable_without_flow_and_good_with_it() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(3);
    let tail = &s.packets[3..];
    let r = run(KEYS_STD, tail);
    assert_eq!(named(&r.counts), counts(0, 0, 0, 0, 9));
    assert_eq!(r.exit_code(), 0, "unverifiable alone does not fail");
    assert!(
        r.flows[0].failures[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("[[flow]]")
    );
    let keys = format!(
        "{KEYS_STD}\n[[flow]]\nclient = \"10.0.0.1:40000\"\nserver = \"10.0.0.2:179\"\nclient_isn = 3625560951\nserver_isn = 1885426355\n"
    );
    let r = run(&keys, tail);
    assert_eq!(named(&r.counts), counts(9, 0, 0, 0, 0));
    assert_eq!(r.flows[0].isn_source, IsnSource::FlowEntry);
    // --explain points at the missing [[flow]].
    let r = explain(KEYS_STD, tail);
    assert!(
        diagnosis(&r).contains("add a [[flow]] entry"),
        "{}",
        diagnosis(&r)
    );
}

#[test]
fn sne_wrap_in_both_directions() {
    // ISNs just below 2^32: data crosses the wrap in both directions.
    let mut s = Session::new(
        sa("10.0.0.1:40000"),
        sa("10.0.0.2:179"),
        u32::MAX - 100,
        u32::MAX - 50,
        ao(1, 2),
        ao(2, 1),
    );
    s.handshake();
    for _ in 0..4 {
        s.data(true, 60);
        s.data(false, 60);
    }
    s.close();
    let r = run_opts(
        KEYS_STD,
        &s.packets,
        Options {
            record_segments: true,
            ..Options::default()
        },
    );
    assert_eq!(named(&r.counts), counts(14, 0, 0, 0, 0));
    let snes: Vec<u32> = r.flows[0].segments.iter().filter_map(|x| x.sne).collect();
    assert!(snes.contains(&1), "{snes:?}");
    // A retransmission of a pre-wrap segment after the wrap keeps the old SNE.
    let mut p = s.packets.clone();
    p.push(s.packets[3].clone());
    let r = run(KEYS_STD, &p);
    assert_eq!(r.counts.good(), 15);
    // Mid-connection after the wrap: SNE from [[flow]].
    let tail = &s.packets[9..];
    let keys = format!(
        "{KEYS_STD}\n[[flow]]\nclient = \"10.0.0.1:40000\"\nserver = \"10.0.0.2:179\"\nclient_isn = {}\nserver_isn = {}\nclient_sne = 1\nserver_sne = 1\n",
        u32::MAX - 100,
        u32::MAX - 50
    );
    let r = run(&keys, tail);
    assert_eq!(r.counts.good(), tail.len() as u64);
    let r = run(&keys.replace("client_sne = 1", "client_sne = 0"), tail);
    assert!(r.counts.bad() > 0);
}

#[test]
fn key_rotation_mid_connection() {
    let m1 = mkt(1, 2, Algorithm::HmacSha1, "old");
    let m2 = mkt(3, 4, Algorithm::AesCmac128, "new");
    let mut s = standard(Signing::Ao(m1.clone()), Signing::Ao(m1.peer_view()));
    s.conversation(1);
    // Both ends switch to the new MKT; keep sequence state.
    let mut s2 = Session::new(
        s.c.addr,
        s.s.addr,
        s.c.isn,
        s.s.isn,
        Signing::Ao(m2.clone()),
        Signing::Ao(m2.peer_view()),
    );
    s2.c.next = s.c.next;
    s2.s.next = s.s.next;
    s2.data(true, 10);
    s2.data(false, 10);
    let mut packets = s.packets[..5].to_vec();
    packets.extend(s2.packets);
    let keys = "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"old\"\nsend_id = 1\nrecv_id = 2\nlocal = \"10.0.0.1\"\n\
                [[mkt]]\nalgorithm = \"aes-128-cmac\"\nsecret = \"new\"\nsend_id = 3\nrecv_id = 4\nlocal = \"10.0.0.1\"\n";
    let r = run(keys, &packets);
    assert_eq!(named(&r.counts), counts(7, 0, 0, 0, 0));
    assert_eq!(r.flows[0].client_key_ids.0, vec![1, 3]);
    assert_eq!(r.flows[0].server_key_ids.0, vec![2, 4]);
}

#[test]
fn options_excluded_on_both_ends() {
    let m = mkt(1, 2, Algorithm::HmacSha1, "secret").with_include_options(false);
    let mut s = standard(Signing::Ao(m.clone()), Signing::Ao(m.peer_view()));
    s.conversation(2);
    let keys = format!("{KEYS_STD}include_options = false\n");
    assert_eq!(
        named(&run(&keys, &s.packets).counts),
        counts(10, 0, 0, 0, 0)
    );
    let r = explain(KEYS_STD, &s.packets);
    assert_eq!(r.counts.bad(), 10);
    let d = diagnosis(&r);
    assert!(
        d.contains(
            "sign with TCP options excluded from the MAC; set include_options = false for MKT #1"
        ),
        "{d}"
    );
}

#[test]
fn explain_options_one_side() {
    let m = mkt(1, 2, Algorithm::HmacSha1, "secret").with_include_options(false);
    let mut s = standard(Signing::Ao(m), ao(2, 1));
    s.conversation(2);
    let r = explain(KEYS_STD, &s.packets);
    assert_eq!(named(&r.counts), counts(4, 6, 0, 0, 0));
    let d = diagnosis(&r);
    assert!(
        d.contains("10.0.0.1 signs with TCP options excluded from the MAC; set include_options = false for MKT #1 or enable option inclusion on the router"),
        "{d}"
    );
}

#[test]
fn explain_other_secret() {
    let mut s = standard(
        Signing::Ao(mkt(1, 2, Algorithm::HmacSha1, "second")),
        ao(2, 1),
    );
    s.conversation(1);
    let keys = format!(
        "{KEYS_STD}[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"second\"\nsend_id = 9\nrecv_id = 9\nlocal = \"10.0.0.1\"\n"
    );
    let r = explain(&keys, &s.packets);
    assert_eq!(r.counts.bad(), 5);
    let d = diagnosis(&r);
    assert!(
        d.contains("10.0.0.1 signs with the secret of MKT #2, not the one of MKT #1"),
        "{d}"
    );
}

#[test]
fn explain_ids_swapped() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(1);
    let keys = KEYS_STD.replace("send_id = 1\nrecv_id = 2", "send_id = 2\nrecv_id = 1");
    let r = explain(&keys, &s.packets);
    assert_eq!(r.counts.key_not_found(), 8);
    let d = diagnosis(&r);
    assert!(d.contains("swap send_id and recv_id for MKT #1"), "{d}");
}

#[test]
fn explain_algorithm() {
    let mut s = standard(
        Signing::Ao(mkt(1, 2, Algorithm::AesCmac128, "secret")),
        Signing::Ao(mkt(2, 1, Algorithm::AesCmac128, "secret")),
    );
    s.conversation(1);
    let r = explain(KEYS_STD, &s.packets);
    assert_eq!(r.counts.bad(), 8);
    let d = diagnosis(&r);
    assert!(
        d.contains("set algorithm = \"aes-128-cmac\" for MKT #1"),
        "{d}"
    );
}

#[test]
fn explain_mac_length() {
    let m = mkt(1, 2, Algorithm::HmacSha256, "secret")
        .with_mac_len(16)
        .unwrap();
    let mut s = standard(
        Signing::Ao(m),
        Signing::Ao(mkt(2, 1, Algorithm::HmacSha256, "secret")),
    );
    s.conversation(1);
    let keys = KEYS_STD.replace("hmac-sha1", "hmac-sha256");
    let r = explain(&keys, &s.packets);
    assert_eq!(named(&r.counts), counts(3, 5, 0, 0, 0));
    assert!(
        r.flows[0].failures[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("MAC is 16 bytes")
    );
    let d = diagnosis(&r);
    assert!(
        d.contains("10.0.0.1 sends 16-byte MACs; set maclen = 16 for MKT #1"),
        "{d}"
    );
}

#[test]
fn explain_sne_off_by_one() {
    let mut s = standard(
        Signing::AoSneAhead(mkt(1, 2, Algorithm::HmacSha1, "secret")),
        ao(2, 1),
    );
    s.conversation(2);
    let r = explain(KEYS_STD, &s.packets);
    // Every client segment fails (this signer gets the SYN wrong too).
    assert_eq!(r.counts.bad(), 6);
    let d = diagnosis(&r);
    assert!(
        d.contains("10.0.0.1's segments verify (MKT #1) with an SNE one higher"),
        "{d}"
    );
}

#[test]
fn explain_isns_swapped_in_flow_entry() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(2);
    let tail = &s.packets[3..];
    let keys = format!(
        "{KEYS_STD}\n[[flow]]\nclient = \"10.0.0.1:40000\"\nserver = \"10.0.0.2:179\"\nclient_isn = 1885426355\nserver_isn = 3625560951\n"
    );
    let r = explain(&keys, tail);
    assert_eq!(r.counts.bad(), tail.len() as u64);
    let d = diagnosis(&r);
    assert!(
        d.contains("client_isn and server_isn of the [[flow]] entry are swapped"),
        "{d}"
    );
}

#[test]
fn explain_nul_terminated_secret() {
    // With HMAC a trailing NUL is invisible (HMAC zero-pads short keys); with AES-CMAC
    // the key is folded and the NUL matters.
    let alg = Algorithm::AesCmac128;
    let mut s = standard(
        Signing::Ao(mkt(1, 2, alg, "secret\0")),
        Signing::Ao(mkt(2, 1, alg, "secret")),
    );
    s.conversation(1);
    let r = explain(&KEYS_STD.replace("hmac-sha1", "aes-128-cmac"), &s.packets);
    assert_eq!(r.counts.bad(), 5, "{:?}", r.counts);
    let d = diagnosis(&r);
    assert!(
        d.contains("10.0.0.1 appends a NUL byte to the secret of MKT #1"),
        "{d}"
    );
}

#[test]
fn explain_syn_ack_signed_with_syn_key() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(1);
    // Re-sign the SYN-ACK with the SYN key (peer ISN 0).
    let m = mkt(2, 1, Algorithm::HmacSha1, "secret");
    let ctx = Context::new(s.s.addr, s.c.addr, s.s.isn, 0).unwrap();
    resign(&mut s.packets[1], &m, &ctx, 0);
    let r = explain(KEYS_STD, &s.packets);
    assert_eq!(r.counts.bad(), 1);
    let d = diagnosis(&r);
    assert!(
        d.contains("10.0.0.2 signs its SYN-ACK with the SYN traffic key"),
        "{d}"
    );
}

#[test]
fn explain_finds_nothing_for_an_unknown_secret() {
    let mut s = standard(Signing::Ao(mkt(1, 2, Algorithm::HmacSha1, "zzz")), ao(2, 1));
    s.conversation(1);
    let d = diagnosis(&explain(KEYS_STD, &s.packets));
    assert!(
        d.contains("10.0.0.1: 5 failing segment(s) verify under none"),
        "{d}"
    );
}

#[test]
fn rst_is_signed_with_the_traffic_keys() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.handshake();
    s.data(true, 10);
    s.send(false, TcpFlags::RST | TcpFlags::ACK, &[], &[]);
    let r = run(KEYS_STD, &s.packets);
    assert_eq!(named(&r.counts), counts(5, 0, 0, 0, 0));
    assert_eq!(r.flows[0].state, "rst");
}

#[test]
fn retransmissions_and_duplicate_syns() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(2);
    let mut p = s.packets.clone();
    p.insert(1, s.packets[0].clone()); // SYN retransmitted
    p.insert(6, s.packets[4].clone()); // data retransmitted
    let r = run(KEYS_STD, &p);
    assert_eq!(named(&r.counts), counts(12, 0, 0, 0, 0));
    assert_eq!(r.flows.len(), 1);
}

#[test]
fn new_connection_on_the_same_ports_is_a_new_flow() {
    let mut a = standard(ao(1, 2), ao(2, 1));
    a.conversation(1);
    let mut b = Session::new(a.c.addr, a.s.addr, 77, 88, ao(1, 2), ao(2, 1));
    b.conversation(1);
    let mut p = a.packets.clone();
    p.extend(b.packets);
    let r = run(KEYS_STD, &p);
    assert_eq!(r.counts.good(), 16);
    assert_eq!(r.flows.len(), 2);
    assert_eq!(r.flows[1].client_isn, Some(77));
}

#[test]
fn simultaneous_open() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.send(true, TcpFlags::SYN, &MSS, &[]);
    s.send(false, TcpFlags::SYN, &MSS, &[]);
    // Each side answers with a SYN-ACK carrying its own ISN and acknowledging the other.
    s.c.next = s.c.isn;
    s.send(true, TcpFlags::SYN | TcpFlags::ACK, &MSS, &[]);
    s.s.next = s.s.isn;
    s.send(false, TcpFlags::SYN | TcpFlags::ACK, &MSS, &[]);
    s.data(true, 5);
    s.data(false, 5);
    let r = run(KEYS_STD, &s.packets);
    assert_eq!(named(&r.counts), counts(6, 0, 0, 0, 0));
}

#[test]
fn tcp_md5_good_bad_and_explain() {
    let mut s = standard(
        Signing::Md5(b"md5key".to_vec()),
        Signing::Md5(b"md5key".to_vec()),
    );
    s.conversation(1);
    let keys = "[[mkt]]\nalgorithm = \"md5\"\nsecret = \"md5key\"\npeer = \"10.0.0.0/24\"\n";
    let r = run(keys, &s.packets);
    assert_eq!(r.counts.md5_good(), 8);
    assert_eq!(r.exit_code(), 0);
    let keys2 = "[[mkt]]\nalgorithm = \"md5\"\nsecret = \"wrong\"\npeer = \"10.0.0.0/24\"\n\
                 [[mkt]]\nalgorithm = \"md5\"\nsecret = \"md5key\"\npeer = \"192.0.2.0/24\"\n";
    let r = explain(keys2, &s.packets);
    assert_eq!(r.counts.md5_bad(), 8);
    assert_eq!(r.exit_code(), 1);
    assert!(
        diagnosis(&r).contains("secret of MKT #2"),
        "{}",
        diagnosis(&r)
    );
    // An AO-only keys file: MD5-signed segments have no key.
    let r = run(KEYS_STD, &s.packets);
    assert_eq!(r.counts.key_not_found(), 8);
}

#[test]
fn flows_are_evicted_under_the_lru_cap() {
    let mut p = Vec::new();
    for i in 0..40u16 {
        let mut s = Session::new(
            sa(&format!("10.0.0.1:{}", 30000 + i)),
            sa("10.0.0.2:179"),
            1000 + u32::from(i),
            5000,
            ao(1, 2),
            ao(2, 1),
        );
        s.handshake();
        s.data(true, 4);
        p.extend(s.packets);
    }
    let keys = KeysFile::parse(KEYS_STD).unwrap();
    let mut c = Checker::new(
        &keys,
        Options {
            max_flows: 8,
            ..Options::default()
        },
    );
    let mut r = CaptureReader::new(Cursor::new(pcap(LinkType::Raw(101), &p))).unwrap();
    c.check_capture("x", &mut r, |_| {}).unwrap();
    assert!(c.live_flows() <= 8);
    let rep = c.finish();
    assert_eq!(rep.flows.len(), 40);
    assert_eq!(rep.counts.good(), 160);
}

#[test]
fn every_link_type_end_to_end() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(1);
    let keys = KeysFile::parse(KEYS_STD).unwrap();
    for lt in [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Raw(101),
        LinkType::Raw(12),
        LinkType::Raw(14),
        LinkType::Ipv4,
        LinkType::Null,
        LinkType::Loop,
    ] {
        for file in [pcap(lt, &s.packets), pcapng(lt, &s.packets)] {
            let mut c = Checker::new(&keys, Options::default());
            let mut r = CaptureReader::new(Cursor::new(file)).unwrap();
            c.check_capture("x", &mut r, |_| {}).unwrap();
            assert_eq!(named(&c.finish().counts), counts(8, 0, 0, 0, 0), "{lt}");
        }
    }
}

#[test]
fn snaplen_cut_frames_are_unverifiable() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(1);
    let mut w = tcpao_refimpl::capture::writer::PcapWriter::new(
        Vec::new(),
        tcpao_refimpl::capture::writer::ByteOrder::Little,
        false,
        LinkType::Raw(101),
        70,
    )
    .unwrap();
    for (i, p) in s.packets.iter().enumerate() {
        w.write_frame(ts(i), p).unwrap();
    }
    let keys = KeysFile::parse(KEYS_STD).unwrap();
    let mut c = Checker::new(&keys, Options::default());
    let mut r = CaptureReader::new(Cursor::new(w.finish().unwrap())).unwrap();
    c.check_capture("x", &mut r, |_| {}).unwrap();
    let rep = c.finish();
    // Data segments (72+ bytes) are cut; the rest verify.
    assert!(rep.truncated > 0);
    assert_eq!(rep.counts.unverifiable(), rep.truncated);
    assert_eq!(rep.counts.good() + rep.truncated, 8);
}

#[test]
fn truncated_capture_keeps_earlier_verdicts() {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(2);
    let file = pcap(LinkType::Ethernet, &s.packets);
    let cut = &file[..file.len() - 30];
    let keys = KeysFile::parse(KEYS_STD).unwrap();
    let mut c = Checker::new(&keys, Options::default());
    let mut r = CaptureReader::new(Cursor::new(cut.to_vec())).unwrap();
    let e = c.check_capture("cut.pcap", &mut r, |_| {}).unwrap_err();
    assert_eq!(e.frame, 10);
    let rep = c.finish();
    assert_eq!(rep.counts.good(), 9);
    assert_eq!(rep.exit_code(), 2);
    assert!(rep.errors[0].contains("frame 10"), "{:?}", rep.errors);
}

/// A segment that crossed the network as IP fragments is checked once its datagram is
/// whole again (RFC 5925 §5.1: the MAC covers the whole segment), in both families; a
/// changed fragment makes it bad, a missing one leaves it unchecked and counted.
#[test]
fn fragmented_segments_are_checked_after_reassembly() {
    for v6 in [false, true] {
        let (c, s) = if v6 {
            (sa("[fd00::1]:40000"), sa("[fd00::2]:179"))
        } else {
            (sa("10.0.0.1:40000"), sa("10.0.0.2:179"))
        };
        let mut sess = Session::new(c, s, 1000, 2_000_000, ao(1, 2), ao(2, 1));
        sess.handshake();
        sess.data(true, 1200);
        sess.data(false, 600);
        sess.close();
        let whole = sess.packets;
        let keys = format!(
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"secret\"\nsend_id = 1\nrecv_id = 2\nlocal = \"{}\"\n",
            c.ip()
        );
        // The client's data (packet 3) in 256-byte pieces, the server's (4) in 64-byte ones.
        let split = |change: &dyn Fn(&mut Vec<Vec<u8>>)| -> Vec<Vec<u8>> {
            let mut client = tcpao_refimpl::reassembly::fragment(&whole[3], 256).unwrap();
            change(&mut client);
            let server = tcpao_refimpl::reassembly::fragment(&whole[4], 64).unwrap();
            [&whole[..3], &client[..], &server[..], &whole[5..]].concat()
        };
        let n_client = tcpao_refimpl::reassembly::fragment(&whole[3], 256)
            .unwrap()
            .len() as u64;
        let n_server = tcpao_refimpl::reassembly::fragment(&whole[4], 64)
            .unwrap()
            .len() as u64;
        let flip = |f: &mut Vec<Vec<u8>>| {
            let last = f.last_mut().unwrap();
            let at = last.len() - 1;
            last[at] ^= 1;
        };
        let drop_one = |f: &mut Vec<Vec<u8>>| {
            f.remove(1);
        };
        let keep = |_: &mut Vec<Vec<u8>>| {};
        // (name, packets, [good, bad, …], TCP segments, datagrams, fragments lost)
        type Row<'a> = (&'a str, Vec<Vec<u8>>, [u64; 8], u64, u64, u64);
        let rows: [Row<'_>; 4] = [
            ("whole", whole.clone(), counts(8, 0, 0, 0, 0), 8, 0, 0),
            ("fragmented", split(&keep), counts(8, 0, 0, 0, 0), 8, 2, 0),
            (
                "a fragment changed",
                split(&flip),
                counts(7, 1, 0, 0, 0),
                8,
                2,
                0,
            ),
            (
                "a fragment missing",
                split(&drop_one),
                counts(7, 0, 0, 0, 0),
                7,
                1,
                n_client - 1,
            ),
        ];
        for (name, packets, want, segments, datagrams, lost) in rows {
            let r = run(&keys, &packets);
            let ctx = format!("{name} (v6 {v6})");
            assert_eq!(named(&r.counts), want, "{ctx}");
            assert_eq!(r.tcp_segments, segments, "{ctx}");
            assert_eq!(r.reassembly.datagrams, datagrams, "{ctx}");
            assert_eq!(r.reassembly.incomplete, lost, "{ctx}");
            assert_eq!(r.skipped.get(SkipReason::IpFragment), lost, "{ctx}");
            if datagrams == 2 {
                assert_eq!(r.reassembly.reassembled, n_client + n_server, "{ctx}");
            }
        }
    }
}

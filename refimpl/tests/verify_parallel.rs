// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-verify --threads N` makes the report the sequential checker makes: the whole
//! kernel corpus in one run, and a synthetic capture of many interleaved connections with
//! every verdict kind, non-TCP frames, a truncated frame and IPv6, compared as JSON with
//! per-segment detail and --explain.

#[path = "support/verify.rs"]
mod support;

use std::path::{Path, PathBuf};

use support::*;
use tcpao_refimpl::Algorithm;
use tcpao_refimpl::SegmentRef;
use tcpao_refimpl::capture::{LinkType, SkipReason};
use tcpao_refimpl::reassembly::fragment;
use tcpao_refimpl::verify::keys::KeysFile;
use tcpao_refimpl::verify::parallel::check_files_threads;
use tcpao_refimpl::verify::{Options, check_files, report};
use tcpao_refimpl::wire::TcpFlags;

fn opts() -> Options {
    Options {
        record_segments: true,
        explain: true,
        ..Options::default()
    }
}

/// Sequential and threaded reports of `captures`, as JSON with segments.
fn both(keys: &KeysFile, captures: &[PathBuf], threads: usize) -> (String, String) {
    let seq = check_files(keys, opts(), captures, |_, _, _| {});
    let par = check_files_threads(keys, opts(), captures, threads, |_, _, _| {});
    (
        serde_json::to_string_pretty(&report::to_json(&seq, true)).unwrap(),
        serde_json::to_string_pretty(&report::to_json(&par, true)).unwrap(),
    )
}

fn assert_same(seq: &str, par: &str) {
    if seq != par {
        let first = seq
            .lines()
            .zip(par.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "threaded report differs from the sequential one at line {first}:\n  sequential: {}\n  threaded:   {}",
            seq.lines().nth(first).unwrap_or(""),
            par.lines().nth(first).unwrap_or("")
        );
    }
}

#[test]
fn every_corpus_capture_gives_the_same_report() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps/kernel");
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    pcaps.sort();
    assert!(pcaps.len() >= 20, "corpus missing in {}", dir.display());
    // One capture at a time with its own keys, then every capture in one run (flows do not
    // span captures; the numbering runs across them).
    let mut all_keys = String::new();
    for p in &pcaps {
        let text = std::fs::read_to_string(p.with_extension("keys.toml")).unwrap();
        let keys = KeysFile::parse(&text).unwrap();
        for threads in [2, 3] {
            let (s, t) = both(&keys, std::slice::from_ref(p), threads);
            assert_same(&s, &t);
        }
        if !text.contains("[[flow]]") {
            all_keys.push_str(&text);
            all_keys.push('\n');
        }
    }
    let keys = KeysFile::parse(&all_keys).unwrap();
    let (s, t) = both(&keys, &pcaps, 2);
    assert!(s.contains("\"flows\""));
    assert_same(&s, &t);
}

#[test]
fn many_interleaved_connections_give_the_same_report() {
    // 40 connections (IPv4 and IPv6), each with its own verdicts: good, a wrong secret on
    // one side (bad), an unknown KeyID (key not found), an unsigned side, and some cut
    // before the handshake ends. Their segments are interleaved round robin.
    let keys_text = format!(
        "{KEYS_STD}\n[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"secret\"\n\
         send_id = 1\nrecv_id = 2\nlocal = \"fd00::1\"\n"
    );
    let keys = KeysFile::parse(&keys_text).unwrap();
    let mut sessions = Vec::new();
    for i in 0..40u16 {
        let (c, s) = if i % 3 == 0 {
            (
                format!("[fd00::1]:{}", 40_000 + i),
                "[fd00::2]:179".to_string(),
            )
        } else {
            (
                format!("10.0.0.1:{}", 40_000 + i),
                "10.0.0.2:179".to_string(),
            )
        };
        let good_s = ao(2, 1);
        let ssign = match i % 5 {
            1 => Signing::Ao(mkt(2, 1, Algorithm::HmacSha1, "wrong")),
            2 => Signing::Ao(mkt(9, 1, Algorithm::HmacSha1, "secret")),
            3 => Signing::None,
            _ => good_s,
        };
        let mut sess = Session::new(
            sa(&c),
            sa(&s),
            1_000 + u32::from(i) * 7_919,
            u32::MAX - u32::from(i) * 104_729,
            ao(1, 2),
            ssign,
        );
        if i % 7 == 6 {
            sess.send(true, TcpFlags::SYN, &MSS, &[]);
        } else {
            sess.conversation(3 + usize::from(i % 4));
        }
        let mut packets = sess.packets;
        if i % 4 == 1 {
            // Data segments as IP fragments of 16 bytes, reassembled before sharding; one
            // connection loses a fragment.
            packets = packets
                .into_iter()
                .flat_map(|p| match p.len() > 80 {
                    true => fragment(&p, 16).unwrap(),
                    false => vec![p],
                })
                .collect();
            if i == 9 {
                let second = packets
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| SegmentRef::parse(p).is_err())
                    .nth(1)
                    .unwrap()
                    .0;
                packets.remove(second);
            }
        }
        sessions.push(packets);
    }
    let mut packets = Vec::new();
    let longest = sessions.iter().map(Vec::len).max().unwrap();
    for n in 0..longest {
        for s in &sessions {
            if let Some(p) = s.get(n) {
                packets.push(p.clone());
            }
        }
        if n == 2 {
            // A UDP datagram and an ICMP echo among them.
            packets.push(vec![
                0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 53, 0, 53,
                0, 8, 0, 0,
            ]);
            packets.push(vec![
                0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 8, 0, 0, 0, 0,
                0, 0, 0,
            ]);
        }
    }
    let dir = std::env::temp_dir().join(format!("tcpao-verify-par-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = dir.join("a.pcap");
    let b = dir.join("b.pcapng");
    std::fs::write(&a, pcap(LinkType::Ethernet, &packets)).unwrap();
    // A second capture (pcapng) holding a frame cut by the snaplen at the end.
    let mut ng = pcapng(LinkType::Raw(101), &packets[..200]);
    let short = pcap_truncated_frame(&packets[5]);
    ng.extend_from_slice(&short);
    std::fs::write(&b, ng).unwrap();
    for threads in [2, 3, 4] {
        let (s, t) = both(&keys, &[a.clone(), b.clone()], threads);
        assert!(s.contains("\"bad\": "), "{s}");
        assert_same(&s, &t);
    }
    let r = check_files_threads(&keys, opts(), std::slice::from_ref(&a), 3, |_, _, _| {});
    assert_eq!(r.flows.len(), 40);
    // Sessions 1, 5, …, 37 had their data fragmented; session 9 lost one fragment.
    assert!(r.reassembly.datagrams > 20, "{:?}", r.reassembly);
    assert!(r.reassembly.incomplete > 0, "{:?}", r.reassembly);
    assert_eq!(
        r.skipped.get(SkipReason::IpFragment),
        r.reassembly.incomplete + r.reassembly.discarded
    );
    assert!(r.counts.good() > 0 && r.counts.bad() > 0 && r.counts.key_not_found() > 0);
    assert!(r.counts.unsigned() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pcapng Enhanced Packet Block for interface 0 (raw IP) whose captured length is half
/// the original: a frame cut by the snaplen.
fn pcap_truncated_frame(ip: &[u8]) -> Vec<u8> {
    let cap = ip.len() / 2;
    let padded = cap.div_ceil(4) * 4;
    let total = 32 + padded;
    let mut b = Vec::new();
    let be = |v: u32| v.to_be_bytes();
    b.extend_from_slice(&be(6));
    b.extend_from_slice(&be(total as u32));
    b.extend_from_slice(&be(0));
    b.extend_from_slice(&be(0));
    b.extend_from_slice(&be(0));
    b.extend_from_slice(&be(cap as u32));
    b.extend_from_slice(&be(ip.len() as u32));
    b.extend_from_slice(&ip[..cap]);
    b.resize(b.len() + padded - cap, 0);
    b.extend_from_slice(&be(total as u32));
    b
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Bounded memory: more concurrent connections than the live-flow cap stay verifiable
//! (evicted flows resume from their ISNs and SNE state), and flow reports beyond their cap
//! are counted, not kept.

#[path = "support/verify.rs"]
mod support;

use std::io::Cursor;

use support::*;
use tcpao_refimpl::capture::{CaptureReader, LinkType};
use tcpao_refimpl::verify::keys::KeysFile;
use tcpao_refimpl::verify::{Checker, Options, Report};

/// `n` connections, all handshakes first, then `rounds` data segments each way, interleaved
/// round-robin (every connection stays open the whole time).
fn interleaved(n: u16, rounds: usize) -> Vec<Vec<u8>> {
    let mut sessions: Vec<Session> = (0..n)
        .map(|i| {
            Session::new(
                sa(&format!("10.0.0.1:{}", 30000 + i)),
                sa("10.0.0.2:179"),
                1000 + u32::from(i) * 7919,
                5000,
                ao(1, 2),
                ao(2, 1),
            )
        })
        .collect();
    let mut p = Vec::new();
    for s in &mut sessions {
        s.handshake();
        p.append(&mut s.packets);
    }
    for _ in 0..rounds {
        for s in &mut sessions {
            s.data(true, 100);
            s.data(false, 20);
            p.append(&mut s.packets);
        }
    }
    p
}

fn check(p: &[Vec<u8>], opts: Options) -> (Report, usize) {
    let keys = KeysFile::parse(KEYS_STD).unwrap();
    let mut c = Checker::new(&keys, opts);
    let mut r = CaptureReader::new(Cursor::new(pcap(LinkType::Raw(101), p))).unwrap();
    let mut max_live = 0;
    // Frame by frame, to watch the live-flow count.
    r.for_each_frame(|f| {
        c.process(f);
        max_live = max_live.max(c.live_flows());
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    (c.finish(), max_live)
}

#[test]
fn more_open_connections_than_the_cap_all_verify() {
    let p = interleaved(50, 3);
    let (rep, max_live) = check(
        &p,
        Options {
            max_flows: 8,
            ..Options::default()
        },
    );
    assert!(max_live <= 8, "{max_live} live flows");
    // 50 × (3 handshake + 3 × 2 data): every one verifies, none is unverifiable.
    assert_eq!(rep.counts.good(), 50 * 9);
    assert_eq!(rep.counts.unverifiable(), 0);
    assert_eq!(rep.counts.failures(), 0);
}

#[test]
fn without_the_cold_table_evicted_connections_are_unverifiable() {
    let p = interleaved(50, 3);
    let (rep, _) = check(
        &p,
        Options {
            max_flows: 8,
            max_cold_flows: 0,
            ..Options::default()
        },
    );
    assert!(rep.counts.unverifiable() > 0);
    assert_eq!(rep.counts.good() + rep.counts.unverifiable(), 50 * 9);
}

#[test]
fn flow_reports_beyond_the_cap_are_counted_not_kept() {
    let p = interleaved(30, 1);
    let (rep, _) = check(
        &p,
        Options {
            max_flow_reports: 10,
            ..Options::default()
        },
    );
    assert_eq!(rep.flows.len(), 10);
    assert_eq!(rep.omitted_flows, 20);
    assert_eq!(rep.counts.good(), 30 * 5);
    let json = tcpao_refimpl::verify::report::to_json(&rep, false);
    assert_eq!(json["summary"]["flows"], 30);
    assert_eq!(json["summary"]["flows_omitted"], 20);
}

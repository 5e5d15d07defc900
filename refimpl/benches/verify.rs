// SPDX-License-Identifier: MIT OR Apache-2.0
//! tcpao-verify throughput on a synthetic capture: reading only vs reading and verifying.
//!
//! `cargo bench -p tcpao-refimpl --bench verify` builds a 4,000-segment HMAC-SHA-1 BGP-like
//! session (1,400-byte payloads, ~6 MB pcap) in memory and prints, in one run, the time of
//! the capture reader alone and of the full check, so their ratio is measured together.
//! Set `TCPAO_VERIFY_BENCH_DUMP=FILE` to also write the capture (e.g. to time `tshark -r`).

use std::io::Cursor;
use std::ops::ControlFlow;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tcpao_refimpl::capture::writer::{ByteOrder, PcapWriter, encapsulate};
use tcpao_refimpl::capture::{CaptureReader, LinkType, Timestamp};
use tcpao_refimpl::kdf::Connection;
use tcpao_refimpl::sign::ConnectionSigner;
use tcpao_refimpl::verify::keys::KeysFile;
use tcpao_refimpl::verify::{Checker, Options};
use tcpao_refimpl::wire::{TcpFlags, TcpRepr};
use tcpao_refimpl::{Algorithm, Mkt};

const SEGMENTS: u32 = 4000;
const KEYS: &str = "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"bench\"\nsend_id = 1\nrecv_id = 2\nlocal = \"10.0.0.1\"\n";

fn capture() -> Vec<u8> {
    let c = "10.0.0.1:40000".parse().unwrap();
    let s = "10.0.0.2:179".parse().unwrap();
    let m = Mkt::new(1, 2, Algorithm::HmacSha1, "bench");
    let mut cs = ConnectionSigner::new(m.clone(), Connection::new(c, s, 1000, 9000)).unwrap();
    let mut ss = ConnectionSigner::new(m.peer_view(), Connection::new(s, c, 9000, 1000)).unwrap();
    let mut w = PcapWriter::new(
        Vec::new(),
        ByteOrder::Little,
        false,
        LinkType::Ethernet,
        65535,
    )
    .unwrap();
    let payload = vec![0x5a; 1400];
    let ts = Timestamp::default();
    let seg = |signer: &mut ConnectionSigner, sp, dp, seq, ack, flags, p: &[u8]| {
        let t = TcpRepr {
            src_port: sp,
            dst_port: dp,
            seq_number: seq,
            ack_number: ack,
            flags,
            window_len: 1000,
            urgent_at: 0,
            options: &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            payload: p,
        };
        signer.sign(&t).unwrap().0
    };
    let mut out = |p: Vec<u8>| {
        w.write_frame(ts, &encapsulate(LinkType::Ethernet, &p))
            .unwrap()
    };
    out(seg(&mut cs, 40000, 179, 1000, 0, TcpFlags::SYN, &[]));
    out(seg(
        &mut ss,
        179,
        40000,
        9000,
        1001,
        TcpFlags::SYN | TcpFlags::ACK,
        &[],
    ));
    let mut cseq = 1001u32;
    for i in 0..SEGMENTS {
        if i % 2 == 0 {
            out(seg(
                &mut cs,
                40000,
                179,
                cseq,
                9001,
                TcpFlags::ACK | TcpFlags::PSH,
                &payload,
            ));
            cseq = cseq.wrapping_add(1400);
        } else {
            out(seg(&mut ss, 179, 40000, 9001, cseq, TcpFlags::ACK, &[]));
        }
    }
    w.finish().unwrap()
}

fn bench(c: &mut Criterion) {
    let file = capture();
    if let Ok(p) = std::env::var("TCPAO_VERIFY_BENCH_DUMP") {
        std::fs::write(p, &file).unwrap();
    }
    let keys = KeysFile::parse(KEYS).unwrap();
    let mut g = c.benchmark_group("tcpao-verify");
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.bench_function("read only", |b| {
        b.iter(|| {
            let mut r = CaptureReader::new(Cursor::new(file.clone())).unwrap();
            let mut n = 0usize;
            r.for_each_frame(|f| {
                n += f.ip.len();
                ControlFlow::Continue(())
            })
            .unwrap();
            n
        })
    });
    g.bench_function("read and verify", |b| {
        b.iter(|| {
            let mut ch = Checker::new(&keys, Options::default());
            let mut r = CaptureReader::new(Cursor::new(file.clone())).unwrap();
            ch.check_capture("bench", &mut r, |_| {}).unwrap();
            let rep = ch.finish();
            assert_eq!(rep.counts.good(), u64::from(SEGMENTS) + 2);
            rep.counts.good()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers of `scripts/bench-verify.sh` (the tcpao-verify benchmark).
//!
//! ```text
//! bench_verify gen OUT.pcap OUT.keys.toml [SEGMENTS] [FLOWS]
//!     A synthetic capture signed with the reference's signing API: SEGMENTS TCP segments
//!     (default 1,000,000) over FLOWS connections (default 2,000; IPv4 and IPv6), each flow
//!     with one of HMAC-SHA-1, AES-128-CMAC and HMAC-SHA-256, payloads of 0 to 1,448 bytes.
//! bench_verify bare FILE KEYS
//!     The bare MAC cost of the same bytes: for every TCP-AO segment of FILE, the RustCrypto
//!     MAC of its tuple's algorithm (keyed state cloned, as tcpao-verify does) over a
//!     contiguous buffer as long as the segment's RFC 5925 §5.1 MAC message. Prints
//!     `segments N seconds S cpu_seconds C` (best of 3 passes over the pre-computed
//!     lengths; wall and thread CPU time).
//! bench_verify read FILE
//!     The capture reader alone: every frame read, nothing parsed. Prints `frames N seconds S`.
//! ```

use std::hint::black_box;
use std::io::BufWriter;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

use tcpao_refimpl::capture::writer::{ByteOrder, PcapWriter, encapsulate};
use tcpao_refimpl::capture::{CaptureReader, LinkType, Timestamp};
use tcpao_refimpl::kdf::Connection;
use tcpao_refimpl::mac::mac_message;
use tcpao_refimpl::sign::ConnectionSigner;
use tcpao_refimpl::verify::keys::{EntryKey, KeyEntry, KeysFile};
use tcpao_refimpl::wire::{TcpFlags, TcpRepr};
use tcpao_refimpl::{Algorithm, Mkt, SegmentRef};

const ALGS: [(Algorithm, &str, u8, u8); 3] = [
    (Algorithm::HmacSha1, "hmac-sha1", 1, 2),
    (Algorithm::AesCmac128, "aes-128-cmac", 3, 4),
    (Algorithm::HmacSha256, "hmac-sha256", 5, 6),
];
/// A 20-byte traffic key, as the KDF outputs (AES-CMAC uses 16 of them).
const TRAFFIC_KEY: [u8; 20] = [0x42; 20];
const SECRET: &str = "synthetic benchmark secret";
/// Payload sizes of data segments (pure ACKs have none).
const SIZES: [usize; 6] = [1, 64, 200, 536, 1200, 1448];
/// Timestamp option (NOP, NOP, TS), as Linux sends it.
const TS_OPTION: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("gen") if args.len() >= 3 => gen_capture(
            &args[1],
            &args[2],
            args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1_000_000),
            args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2_000),
        ),
        Some("bare") if args.len() == 3 => bare(&args[1], &args[2]),
        Some("read") if args.len() == 2 => read(&args[1]),
        _ => Err("usage: bench_verify gen OUT.pcap OUT.keys.toml [SEGMENTS] [FLOWS] | bare FILE KEYS | read FILE".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_verify: {e}");
            ExitCode::from(2)
        }
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Flow {
    client: ConnectionSigner,
    server: ConnectionSigner,
    c: SocketAddr,
    s: SocketAddr,
    cseq: u32,
    sseq: u32,
}

fn gen_capture(pcap: &str, keys: &str, segments: u64, flows: u32) -> Res {
    let file = KeysFile {
        mkts: ALGS
            .iter()
            .enumerate()
            .map(|(i, &(alg, _, s, r))| KeyEntry {
                index: i + 1,
                key: EntryKey::Ao(Mkt::new(s, r, alg, SECRET)),
                local: None,
                peer: None,
            })
            .collect(),
        ..KeysFile::default()
    };
    std::fs::write(keys, file.to_toml()?.as_bytes())?;
    let out = BufWriter::with_capacity(1 << 20, std::fs::File::create(pcap)?);
    let mut w = PcapWriter::new(out, ByteOrder::Little, false, LinkType::Ethernet, 65535)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ts = Timestamp {
        secs: 1_700_000_000,
        nanos: 0,
    };
    let mut written = 0u64;
    let mut emit = |w: &mut PcapWriter<_>, pkt: &[u8]| -> std::io::Result<()> {
        ts.nanos += 10_000;
        if ts.nanos >= 1_000_000_000 {
            ts.nanos -= 1_000_000_000;
            ts.secs += 1;
        }
        w.write_frame(ts, &encapsulate(LinkType::Ethernet, pkt))
    };
    let tcp = |sp, dp, seq, ack, flags, payload| TcpRepr {
        src_port: sp,
        dst_port: dp,
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: 501,
        urgent_at: 0,
        options: &TS_OPTION,
        payload,
    };
    let payload = vec![0xa5u8; 1448];
    let mut live: Vec<Flow> = Vec::with_capacity(flows as usize);
    for i in 0..flows {
        let (alg, _, sid, rid) = ALGS[i as usize % 3];
        // Addresses repeat every 65,536 flows; the port keeps the 4-tuples apart.
        let port = 40_000 + (i >> 16) as u16;
        let (c, s): (SocketAddr, SocketAddr) = if i % 4 == 3 {
            (
                SocketAddr::new(IpAddr::from([0x2001, 0xdb8, 1, 0, 0, 0, 0, i as u16]), port),
                SocketAddr::new(IpAddr::from([0x2001, 0xdb8, 2, 0, 0, 0, 0, 1]), 179),
            )
        } else {
            (
                SocketAddr::new(IpAddr::from([10, 1, (i >> 8) as u8, i as u8]), port),
                SocketAddr::new(IpAddr::from([10, 2, 0, 1]), 179),
            )
        };
        let (cisn, sisn) = (rng.next() as u32, rng.next() as u32);
        let mkt = Mkt::new(sid, rid, alg, SECRET);
        let mut f = Flow {
            client: ConnectionSigner::new(mkt.clone(), Connection::new(c, s, cisn, sisn))?,
            server: ConnectionSigner::new(mkt.peer_view(), Connection::new(s, c, sisn, cisn))?,
            c,
            s,
            cseq: cisn.wrapping_add(1),
            sseq: sisn.wrapping_add(1),
        };
        if written + 3 > segments {
            break;
        }
        let syn = tcp(c.port(), s.port(), cisn, 0, TcpFlags::SYN, &payload[..0]);
        emit(&mut w, &f.client.sign(&syn)?.0)?;
        let synack = tcp(
            s.port(),
            c.port(),
            sisn,
            f.cseq,
            TcpFlags::SYN | TcpFlags::ACK,
            &payload[..0],
        );
        emit(&mut w, &f.server.sign(&synack)?.0)?;
        let ack = tcp(
            c.port(),
            s.port(),
            f.cseq,
            f.sseq,
            TcpFlags::ACK,
            &payload[..0],
        );
        emit(&mut w, &f.client.sign(&ack)?.0)?;
        written += 3;
        live.push(f);
    }
    while written < segments && !live.is_empty() {
        let r = rng.next();
        let n = live.len() as u64;
        let f = &mut live[(r % n) as usize];
        let len = if (r >> 20) % 10 < 4 {
            0
        } else {
            SIZES[((r >> 28) % SIZES.len() as u64) as usize]
        };
        let from_client = (r >> 40) % 3 != 0;
        let flags = if len > 0 {
            TcpFlags::ACK | TcpFlags::PSH
        } else {
            TcpFlags::ACK
        };
        let pkt = if from_client {
            let t = tcp(
                f.c.port(),
                f.s.port(),
                f.cseq,
                f.sseq,
                flags,
                &payload[..len],
            );
            f.cseq = f.cseq.wrapping_add(len as u32);
            f.client.sign(&t)?.0
        } else {
            let t = tcp(
                f.s.port(),
                f.c.port(),
                f.sseq,
                f.cseq,
                flags,
                &payload[..len],
            );
            f.sseq = f.sseq.wrapping_add(len as u32);
            f.server.sign(&t)?.0
        };
        emit(&mut w, &pkt)?;
        written += 1;
    }
    w.finish()?;
    println!("segments {written} flows {}", live.len());
    Ok(())
}

#[path = "../benches/support/bare.rs"]
mod bare;

use bare::Bare;

fn bare(file: &str, keys: &str) -> Res {
    let keys = KeysFile::load(keys)?;
    // Pre-pass (not timed): the algorithm and MAC message length of every TCP-AO segment.
    let mut work: Vec<(u8, u32)> = Vec::new();
    let mut reader = CaptureReader::open(file)?;
    reader.for_each_frame(|f| {
        let Ok(seg) = SegmentRef::parse(f.ip) else {
            return ControlFlow::Continue(());
        };
        let Ok(auth) = seg.tcp_packet().auth_options() else {
            return ControlFlow::Continue(());
        };
        let Some(r) = auth.ao else {
            return ControlFlow::Continue(());
        };
        let key_id = seg.tcp[r.start + 2];
        let mkt = keys
            .mkts
            .iter()
            .filter_map(|e| e.mkt())
            .find(|m| m.send_id == key_id || m.recv_id == key_id);
        if let Some(m) = mkt {
            let idx = ALGS.iter().position(|a| a.0 == m.algorithm).unwrap_or(0) as u8;
            if let Ok(m) = mac_message(0, &seg, m.include_options) {
                work.push((idx, m.len() as u32));
            }
        }
        ControlFlow::Continue(())
    })?;
    let states: Vec<Bare> = ALGS.iter().map(|a| Bare::new(a.0, &TRAFFIC_KEY)).collect();
    let buf = vec![0x5au8; 70_000];
    let tag = [0u8; 12];
    let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let (t, c) = (Instant::now(), thread_cpu());
        let mut ok = 0u64;
        for &(i, len) in &work {
            ok += u64::from(states[usize::from(i)].verify(black_box(&buf[..len as usize]), &tag));
        }
        black_box(ok);
        best = best.min(t.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (c, thread_cpu()) {
            best_cpu = best_cpu.min(b - a);
        }
    }
    if best_cpu == f64::MAX {
        best_cpu = best;
    }
    println!(
        "segments {} seconds {best:.6} cpu_seconds {best_cpu:.6}",
        work.len()
    );
    Ok(())
}

/// CPU time of the calling thread in seconds (`/proc/thread-self/schedstat`, nanoseconds on
/// the CPU), so that a busy machine does not inflate the bare cost.
fn thread_cpu() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

fn read(file: &str) -> Res {
    let t = Instant::now();
    let mut r = CaptureReader::open(file)?;
    let mut bytes = 0usize;
    r.for_each_frame(|f| {
        bytes += f.ip.len();
        ControlFlow::Continue(())
    })?;
    black_box(bytes);
    println!(
        "frames {} seconds {:.6}",
        r.frames(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

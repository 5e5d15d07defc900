// SPDX-License-Identifier: MIT OR Apache-2.0
//! TCP-AO MAC verification per algorithm at 64, 512 and 1460-byte payloads, against the
//! bare RustCrypto MAC over the same number of bytes, measured in the same run.
//!
//! For each (algorithm, payload) criterion group there are three functions:
//!
//! * `verify`: `SegmentRef::parse` of the IPv4 packet + `verify_mac` (RFC 5925 §5.1 message
//!   fed incrementally, constant-time truncated compare);
//! * `validator`: the same through `FlowValidator::check` (auth option walk, key lookup
//!   by KeyID, key choice);
//! * `bare`: clone a keyed `Hmac<Sha1>`/`Cmac<Aes128>`/`Hmac<Sha256>`, update with a
//!   contiguous buffer of the MAC message's length, `verify_truncated_left`.
//!
//! After the groups, the bench times the three loops interleaved in short bursts and
//! prints `alg payload seg/s bare_seg/s overhead%` (overhead = verify time / bare time − 1,
//! from the fastest burst of each), then the same table from criterion's `estimates.json`.
//! A criterion filter that matches nothing (`-- table-only`) prints just the tables.
//!
//! Run: `cargo bench -p tcpao-refimpl --bench mac -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput};
use tcpao_refimpl::mac::mac_message;
use tcpao_refimpl::sign::{AoSign, Auth, IpHeader, build_segment};
use tcpao_refimpl::validate::Direction;
use tcpao_refimpl::wire::{TcpFlags, TcpOption, TcpRepr, build_options};
use tcpao_refimpl::{
    Algorithm, Connection, FlowValidator, Mkt, SegmentRef, TrafficKeys, verify_mac,
};

const PAYLOADS: [usize; 3] = [64, 512, 1460];

#[path = "support/bare.rs"]
mod bare;

use bare::Bare;

struct Setup {
    packet: Vec<u8>,
    keys: TrafficKeys,
    validator: FlowValidator,
    bare: Bare,
    msg: Vec<u8>,
    tag: Vec<u8>,
}

fn setup(alg: Algorithm, payload_len: usize) -> Setup {
    let conn = Connection::new(
        "10.0.0.1:40000".parse().unwrap(),
        "10.0.0.2:179".parse().unwrap(),
        1000,
        5000,
    );
    let mkt = Mkt::new(1, 2, alg, "benchmark key");
    let keys = TrafficKeys::derive(&mkt, &conn).unwrap();
    // A typical established segment: NOP NOP timestamps + TCP-AO.
    let opts = build_options(&[
        TcpOption::NoOperation,
        TcpOption::NoOperation,
        TcpOption::Timestamp { tsval: 1, tsecr: 2 },
    ])
    .unwrap();
    let payload = vec![0x42u8; payload_len];
    let tcp = TcpRepr {
        src_port: 40000,
        dst_port: 179,
        seq_number: 1001,
        ack_number: 5001,
        flags: TcpFlags::ACK | TcpFlags::PSH,
        window_len: 512,
        urgent_at: 0,
        options: &opts,
        payload: &payload,
    };
    let packet = build_segment(
        &IpHeader::new(conn.local.ip(), conn.remote.ip()),
        &tcp,
        &Auth::Ao(AoSign::from_mkt(&mkt, &keys.send_other, 0)),
    )
    .unwrap();
    let seg = SegmentRef::parse(&packet).unwrap();
    assert!(verify_mac(&keys.send_other, 0, &seg, true).unwrap());
    let msg_len = mac_message(0, &seg, true).unwrap().len();
    let msg = vec![0x42u8; msg_len];
    let bare = Bare::new(alg, keys.send_other.as_bytes());
    // A tag the bare loop verifies successfully, so both loops do the same work.
    let tag = bare.tag(&msg, 12);
    assert!(bare.verify(&msg, &tag));
    let validator = FlowValidator::new(conn, [mkt]).unwrap();
    Setup {
        packet,
        keys,
        validator,
        bare,
        msg,
        tag,
    }
}

fn group_name(alg: Algorithm, payload: usize) -> String {
    format!("mac_{}_{payload}", alg.keyfile_name())
}

fn mean_ns(dir: &Path, group: &str, func: &str) -> Option<f64> {
    let p = dir
        .join(group)
        .join(func)
        .join("new")
        .join("estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn output_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("criterion");
    }
    // target/<profile>/deps/<bench binary>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("criterion"))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

fn main() {
    let dir = output_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    for alg in Algorithm::ALL {
        for payload in PAYLOADS {
            let s = setup(alg, payload);
            let mut g = c.benchmark_group(group_name(alg, payload));
            g.throughput(Throughput::Elements(1));
            g.bench_function("verify", |b| {
                b.iter(|| {
                    let seg = SegmentRef::parse(black_box(&s.packet)).unwrap();
                    verify_mac(&s.keys.send_other, 0, &seg, true).unwrap()
                })
            });
            g.bench_function("validator", |b| {
                b.iter(|| {
                    let seg = SegmentRef::parse(black_box(&s.packet)).unwrap();
                    s.validator.check(Direction::LocalToRemote, &seg, 0)
                })
            });
            g.bench_function("bare", |b| {
                b.iter(|| s.bare.verify(black_box(&s.msg), black_box(&s.tag)))
            });
            g.finish();
        }
    }
    c.final_summary();
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --benches` / listing: no timing table
    }

    // The ratio table. The machine is shared, so criterion's sequential estimates can be
    // skewed by load that comes and goes. Here the loops run interleaved in short bursts;
    // seg/s and overhead% use the fastest burst of each loop (the least disturbed), and
    // the median of the per-round ratios is printed beside it.
    println!();
    println!("Interleaved timing ({ROUNDS} rounds of ~{BURST_MS} ms bursts per loop; best burst):");
    println!(
        "{:<13} {:>7} {:>12} {:>12} {:>10} {:>11} {:>16} {:>15}",
        "alg",
        "payload",
        "seg/s",
        "bare_seg/s",
        "overhead%",
        "median_ovh%",
        "validator_seg/s",
        "validator_ovh%"
    );
    for alg in Algorithm::ALL {
        for payload in PAYLOADS {
            let s = setup(alg, payload);
            let verify = || {
                let seg = SegmentRef::parse(black_box(&s.packet)).unwrap();
                verify_mac(&s.keys.send_other, 0, &seg, true).unwrap()
            };
            let validator = || {
                let seg = SegmentRef::parse(black_box(&s.packet)).unwrap();
                s.validator.check(Direction::LocalToRemote, &seg, 0)
            };
            let bare = || s.bare.verify(black_box(&s.msg), black_box(&s.tag));
            let n = calibrate(&bare);
            let (mut ratios, mut tv, mut tval, mut tb) = (vec![], vec![], vec![], vec![]);
            for _ in 0..ROUNDS {
                let b = time_n(&bare, n);
                let v = time_n(&verify, n);
                let val = time_n(&validator, n);
                ratios.push(v / b);
                tv.push(v);
                tval.push(val);
                tb.push(b);
            }
            let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
            let (v, val, b) = (min(&tv), min(&tval), min(&tb));
            let per_s = |t: f64| n as f64 / t;
            println!(
                "{:<13} {:>7} {:>12.0} {:>12.0} {:>9.1}% {:>10.1}% {:>16.0} {:>14.1}%",
                alg.keyfile_name(),
                payload,
                per_s(v),
                per_s(b),
                (v / b - 1.0) * 100.0,
                (median(&mut ratios) - 1.0) * 100.0,
                per_s(val),
                (val / b - 1.0) * 100.0
            );
        }
    }

    let mut rows = Vec::new();
    for alg in Algorithm::ALL {
        for payload in PAYLOADS {
            let g = group_name(alg, payload);
            if let (Some(v), Some(val), Some(b)) = (
                mean_ns(&dir, &g, "verify"),
                mean_ns(&dir, &g, "validator"),
                mean_ns(&dir, &g, "bare"),
            ) {
                rows.push((alg, payload, v, val, b));
            }
        }
    }
    println!();
    println!("Criterion mean estimates (sequential, more exposed to load changes):");
    println!(
        "{:<13} {:>7} {:>12} {:>12} {:>10} {:>16} {:>15}",
        "alg", "payload", "seg/s", "bare_seg/s", "overhead%", "validator_seg/s", "validator_ovh%"
    );
    for (alg, payload, v, val, b) in rows {
        println!(
            "{:<13} {:>7} {:>12.0} {:>12.0} {:>9.1}% {:>16.0} {:>14.1}%",
            alg.keyfile_name(),
            payload,
            1e9 / v,
            1e9 / b,
            (v / b - 1.0) * 100.0,
            1e9 / val,
            (val / b - 1.0) * 100.0
        );
    }
}

const ROUNDS: usize = 201;
const BURST_MS: u64 = 2;

fn time_n<R>(f: &impl Fn() -> R, n: u64) -> f64 {
    let t = std::time::Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    t.elapsed().as_secs_f64()
}

fn calibrate<R>(f: &impl Fn() -> R) -> u64 {
    let mut n = 64;
    loop {
        let t = time_n(f, n);
        if t * 1000.0 >= BURST_MS as f64 || n > 1 << 26 {
            return n;
        }
        n *= 2;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

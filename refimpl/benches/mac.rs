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
//! After the groups, the bench reads criterion's `estimates.json` files and prints
//! `alg payload seg/s bare_seg/s overhead%` (overhead = verify time / bare time − 1).
//!
//! Run: `cargo bench -p tcpao-refimpl --bench mac -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;
use std::path::{Path, PathBuf};

use aes::Aes128;
use cmac::Cmac;
use criterion::{Criterion, Throughput};
use digest::{KeyInit, Mac};
use hmac::Hmac;
use sha1::Sha1;
use sha2::Sha256;
use tcpao_refimpl::mac::mac_message;
use tcpao_refimpl::sign::{AoSign, Auth, IpHeader, build_segment};
use tcpao_refimpl::validate::Direction;
use tcpao_refimpl::wire::{TcpFlags, TcpOption, TcpRepr, build_options};
use tcpao_refimpl::{
    Algorithm, Connection, FlowValidator, Mkt, SegmentRef, TrafficKeys, verify_mac,
};

const PAYLOADS: [usize; 3] = [64, 512, 1460];

// Same layout as the crate's keyed state: not boxed, cloned per segment.
#[allow(clippy::large_enum_variant)]
enum Bare {
    Sha1(Hmac<Sha1>),
    Cmac(Cmac<Aes128>),
    Sha256(Hmac<Sha256>),
}

impl Bare {
    fn new(alg: Algorithm, key: &[u8]) -> Self {
        match alg {
            Algorithm::HmacSha1 => Bare::Sha1(KeyInit::new_from_slice(key).unwrap()),
            Algorithm::AesCmac128 => Bare::Cmac(KeyInit::new_from_slice(key).unwrap()),
            Algorithm::HmacSha256 => Bare::Sha256(KeyInit::new_from_slice(key).unwrap()),
        }
    }

    fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        match self {
            Bare::Sha1(m) => m
                .clone()
                .chain_update(msg)
                .verify_truncated_left(tag)
                .is_ok(),
            Bare::Cmac(m) => m
                .clone()
                .chain_update(msg)
                .verify_truncated_left(tag)
                .is_ok(),
            Bare::Sha256(m) => m
                .clone()
                .chain_update(msg)
                .verify_truncated_left(tag)
                .is_ok(),
        }
    }
}

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
    let mut tag = vec![0u8; 12];
    // A tag the bare loop verifies successfully, so both loops do the same work.
    match &bare {
        Bare::Sha1(m) => {
            tag.copy_from_slice(&m.clone().chain_update(&msg).finalize().into_bytes()[..12])
        }
        Bare::Cmac(m) => {
            tag.copy_from_slice(&m.clone().chain_update(&msg).finalize().into_bytes()[..12])
        }
        Bare::Sha256(m) => {
            tag.copy_from_slice(&m.clone().chain_update(&msg).finalize().into_bytes()[..12])
        }
    }
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
    // skewed by load that comes and goes; here the two loops run interleaved in short
    // bursts and the median of the per-round ratios is reported.
    println!();
    println!("Interleaved timing (median of {ROUNDS} rounds, each ~{BURST_MS} ms per loop):");
    println!(
        "{:<13} {:>7} {:>12} {:>12} {:>10} {:>16} {:>15}",
        "alg", "payload", "seg/s", "bare_seg/s", "overhead%", "validator_seg/s", "validator_ovh%"
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
            let (mut rv, mut rval, mut tv, mut tval, mut tb) =
                (vec![], vec![], vec![], vec![], vec![]);
            for _ in 0..ROUNDS {
                let b = time_n(&bare, n);
                let v = time_n(&verify, n);
                let val = time_n(&validator, n);
                rv.push(v / b);
                rval.push(val / b);
                tv.push(v);
                tval.push(val);
                tb.push(b);
            }
            let per_s = |t: f64| n as f64 / t;
            println!(
                "{:<13} {:>7} {:>12.0} {:>12.0} {:>9.1}% {:>16.0} {:>14.1}%",
                alg.keyfile_name(),
                payload,
                per_s(median(&mut tv)),
                per_s(median(&mut tb)),
                (median(&mut rv) - 1.0) * 100.0,
                per_s(median(&mut tval)),
                (median(&mut rval) - 1.0) * 100.0
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

const ROUNDS: usize = 31;
const BURST_MS: u64 = 10;

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

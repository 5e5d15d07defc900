// SPDX-License-Identifier: MIT OR Apache-2.0
//! `corpus`: normal passing selftests whose captures make the `pcaps/kernel/` corpus.
//!
//! Each case sets up two peers, exchanges traffic that shows one feature on the wire (an
//! algorithm, a MAC length, options excluded, a key rotation, a signed RST, TCP-MD5, an SNE
//! wrap, a connection without its handshake, a misconfigured pair), then asserts what the
//! kernel counted. Every case records both peers' netns counter deltas over the captured
//! traffic and checks that each TCP-AO segment on the wire was counted exactly once by its
//! receiver (`TCPAOGood + TCPAOBad + TCPAOKeyNotFound` summed over both peers equals the
//! TCP-AO segments in the capture).
//!
//! With `--save-pcaps DIR` each case also writes, next to the capture's `NAME.pcap` and
//! `NAME.keys.toml`, a `NAME.expect.toml` with those kernel deltas, the segments counted in
//! the saved capture, and the verdict totals they imply for tcpao-verify. The expectation
//! comes from the kernel, never from tcpao-verify. `scripts/make-corpus.sh` runs this
//! program in the TCP-AO VM; `refimpl/tests/corpus.rs` checks tcpao-verify against the files.
//!
//! The hidden program `corpus-bulk` makes the large real capture of the benchmark
//! (`scripts/bench-verify.sh`): one AO connection carrying a bulk transfer.
//!
//! Quiescence: a case's counters are read only when no segment can still be in flight. After
//! a FIN exchange the passive closer waits until its socket is `TCP_CLOSE` (the last ACK was
//! received), the active closer until it read EOF (it sent that last ACK), then both meet at
//! a barrier and read their counters.

mod bgp;

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use socket2::{SockAddr, Socket};
use std::ops::ControlFlow;

use tcpao_refimpl::SegmentRef;
use tcpao_refimpl::capture::CaptureReader;
use tcpao_refimpl::verify::keys::FlowHint;
use tcpao_sys::repair::{self, Queue, RepairMode, RepairOption, RepairWindow};
use tcpao_sys::uapi::TCP_CLOSE;
use tcpao_sys::{Algorithm, AoRepair, TcpAoExt};

use crate::capture::RestoredFlow;
use crate::counters::NetnsMib;
use crate::failure;
use crate::outcome::{Failure, OrFail, Outcome, PeerResult, TestResult};
use crate::peers::{Peer, run_pair};
use crate::probe::Feature;
use crate::programs::pair_config;
use crate::registry::{Ctx, Test};
use crate::rng::Rng;
use crate::sockets::{self, Connect, TestKey};
use crate::topology::{Family, Netlink, Side, VETH_NAME};

/// The netns counters an expectation is built from.
pub const COUNTERS: [&str; 7] = [
    "TCPAOGood",
    "TCPAOBad",
    "TCPAOKeyNotFound",
    "TCPAORequired",
    "TCPMD5NotFound",
    "TCPMD5Unexpected",
    "TCPMD5Failure",
];

/// One key configuration of an algorithm case.
#[derive(Debug, Clone, Copy)]
struct KeySpec {
    alg: fn() -> Algorithm,
    secret: &'static [u8],
    maclen: u8,
    include_options: bool,
}

/// What a case does.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Echo traffic with one key per side, then a FIN close.
    Echo(KeySpec),
    /// Rotate from key 1/2 (HMAC-SHA-1) to key 3/4 (HMAC-SHA-256) mid-connection.
    Rotation,
    /// Close with `SO_LINGER` 0: a signed RST.
    Rst,
    /// TCP-MD5 instead of TCP-AO.
    Md5,
    /// Both peers restored with `TCP_REPAIR` just below 2^32: the SNE goes from 0 to 1.
    SneWrap,
    /// The handshake is cut from the saved capture; ISNs come from `TCP_AO_REPAIR`.
    MidConnection,
    /// The client excludes TCP options, the server includes them: every SYN is rejected.
    Misconfigured,
    /// A bulk transfer for the benchmark (hidden program `corpus-bulk`); with an MTU, both
    /// veth ends get it first (65,535: segments as large as on `lo`).
    Bulk(Option<u32>),
    /// A BGP session on port 179 announcing a full IPv4 table (hidden, benchmark input).
    BgpTable,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    what: &'static str,
    kind: Kind,
}

/// A 16-byte AES key (no RFC 5926 folding).
const AES_KEY_16: &[u8] = b"sixteen byte key";
/// Our corpus password (not the kernel suite's).
const CORPUS_SECRET: &[u8] = b"corpus secret shared by both peers";

const CASES: [Case; 11] = [
    Case {
        name: "hmac-sha1",
        what: "HMAC-SHA-1, MAC 12 bytes, options included",
        kind: Kind::Echo(KeySpec {
            alg: || Algorithm::HmacSha1,
            secret: CORPUS_SECRET,
            maclen: 12,
            include_options: true,
        }),
    },
    Case {
        name: "hmac-sha256-mac16",
        what: "HMAC-SHA-256, MAC 16 bytes, options included",
        kind: Kind::Echo(KeySpec {
            alg: || Algorithm::HmacSha256,
            secret: CORPUS_SECRET,
            maclen: 16,
            include_options: true,
        }),
    },
    Case {
        name: "aes-cmac-mac4",
        what: "AES-128-CMAC with a 16-byte key, MAC 4 bytes, options included",
        kind: Kind::Echo(KeySpec {
            alg: || Algorithm::AesCmac128,
            secret: AES_KEY_16,
            maclen: 4,
            include_options: true,
        }),
    },
    Case {
        name: "aes-cmac-longkey-mac13-noopts",
        what: "AES-128-CMAC with a 34-byte key (RFC 5926 folding), MAC 13 bytes, options excluded",
        kind: Kind::Echo(KeySpec {
            alg: || Algorithm::AesCmac128,
            secret: CORPUS_SECRET,
            maclen: 13,
            include_options: false,
        }),
    },
    Case {
        name: "hmac-sha1-noopts",
        what: "HMAC-SHA-1, MAC 12 bytes, options excluded",
        kind: Kind::Echo(KeySpec {
            alg: || Algorithm::HmacSha1,
            secret: CORPUS_SECRET,
            maclen: 12,
            include_options: false,
        }),
    },
    Case {
        name: "key-rotation",
        what: "KeyID 1/RNextKeyID 2 (HMAC-SHA-1) rotated to 3/4 (HMAC-SHA-256) mid-connection",
        kind: Kind::Rotation,
    },
    Case {
        name: "rst",
        what: "AES-128-CMAC connection closed with SO_LINGER 0: a signed RST",
        kind: Kind::Rst,
    },
    Case {
        name: "md5",
        what: "TCP-MD5 (RFC 2385) connection",
        kind: Kind::Md5,
    },
    Case {
        name: "sne-wrap",
        what: "both peers restored with TCP_REPAIR just below 2^32: SNE 0 -> 1 (needs [[flow]])",
        kind: Kind::SneWrap,
    },
    Case {
        name: "mid-connection",
        what: "HMAC-SHA-256 connection captured without its handshake (needs [[flow]], ISNs from TCP_AO_REPAIR)",
        kind: Kind::MidConnection,
    },
    Case {
        name: "misconfigured-options",
        what: "the client excludes TCP options, the server includes them: every SYN is bad",
        kind: Kind::Misconfigured,
    },
];

/// The program's tests (`corpus/*`) and the hidden `corpus-bulk/*` benchmark capture.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    for case in CASES {
        for family in Family::ALL {
            v.push(make_test("corpus", case, family, false));
        }
    }
    v.push(make_test(
        "corpus-bulk",
        Case {
            name: "transfer",
            what: "bulk transfer over one HMAC-SHA-1 connection (benchmark input)",
            kind: Kind::Bulk(None),
        },
        Family::Ipv4,
        true,
    ));
    v.push(make_test(
        "corpus-bulk",
        Case {
            name: "bgp-full-table",
            what: "a BGP session on port 179 announcing a full IPv4 table of /24s (benchmark input)",
            kind: Kind::BgpTable,
        },
        Family::Ipv4,
        true,
    ));
    v.push(make_test(
        "corpus-bulk",
        Case {
            name: "jumbo",
            what: "the same with a 65,535-byte MTU: segments as large as on lo (benchmark input)",
            kind: Kind::Bulk(Some(JUMBO_MTU)),
        },
        Family::Ipv4,
        true,
    ));
    v
}

fn make_test(program: &str, case: Case, family: Family, hidden: bool) -> Test {
    let mut req = vec![Feature::Netns, Feature::Veth];
    req.push(if matches!(case.kind, Kind::Md5) {
        Feature::TcpMd5
    } else {
        Feature::TcpAo
    });
    if family == Family::Ipv6 {
        req.push(Feature::Ipv6);
    }
    let timeout = match case.kind {
        Kind::Bulk(_) | Kind::BgpTable => Duration::from_secs(600),
        Kind::SneWrap | Kind::Misconfigured => Duration::from_secs(90),
        _ => Duration::from_secs(60),
    };
    let t = Test::new(
        format!("{program}/{}/{}", family.name(), case.name),
        move |ctx: &Ctx| run(ctx, case, family),
    )
    .requires(&req)
    .timeout(timeout);
    if hidden { t.hidden() } else { t }
}

/// Counter deltas of one peer, in [`COUNTERS`] order.
type Deltas = [u64; COUNTERS.len()];

/// What the peers hand back to the test body.
#[derive(Debug, Default)]
struct Record {
    /// Deltas over the part of the traffic the saved capture keeps (server, client).
    kept: [Option<Deltas>; 2],
    /// Deltas over everything (server, client).
    total: [Option<Deltas>; 2],
    kernel: String,
}

impl Record {
    fn lock(m: &Mutex<Record>) -> std::sync::MutexGuard<'_, Record> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn index(side: Side) -> usize {
    match side {
        Side::Server => 0,
        Side::Client => 1,
    }
}

fn snapshot() -> PeerResult<NetnsMib> {
    NetnsMib::read().or_fail("reading the netns counters failed")
}

fn deltas(before: &NetnsMib, after: &NetnsMib) -> Deltas {
    let mut d = [0; COUNTERS.len()];
    for (i, c) in COUNTERS.iter().enumerate() {
        d[i] = after.get(c).saturating_sub(before.get(c));
    }
    d
}

fn get(d: &Deltas, name: &str) -> u64 {
    COUNTERS.iter().position(|c| *c == name).map_or(0, |i| d[i])
}

/// Both peers are done and nothing is in flight: meet, then record this side's deltas.
fn settle(p: &Peer<'_>, rec: &Mutex<Record>, base: &NetnsMib, kept: &NetnsMib) -> PeerResult {
    p.sync()?;
    let now = snapshot()?;
    let mut r = Record::lock(rec);
    r.total[index(p.side())] = Some(deltas(base, &now));
    r.kept[index(p.side())] = Some(deltas(kept, &now));
    if r.kernel.is_empty() {
        r.kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
    }
    Ok(())
}

fn run(ctx: &Ctx, case: Case, family: Family) -> TestResult {
    let cfg = pair_config(ctx, family, ctx.name());
    let rec = Mutex::new(Record::default());
    let report = run_pair(&cfg, |p| server(p, case, &rec), |p| client(p, case, &rec));
    for d in &report.diagnostics {
        ctx.diag(d);
    }
    if report.outcome != Outcome::Pass {
        return Ok(report.outcome);
    }
    let rec = rec
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(x) = &report.xcheck else {
        return Ok(Outcome::fail("the test ran without a capture"));
    };
    let (Some(ts), Some(tc)) = (rec.total[0], rec.total[1]) else {
        return Ok(Outcome::fail("a peer recorded no counters"));
    };
    // Every TCP-AO segment on the wire was verified (good, bad or key not found) by its
    // receiver, exactly once.
    let counted: u64 = ["TCPAOGood", "TCPAOBad", "TCPAOKeyNotFound"]
        .iter()
        .map(|c| get(&ts, c) + get(&tc, c))
        .sum();
    ctx.diag(format!(
        "kernel: server {}; client {}; wire: {} TCP-AO and {} TCP-MD5 segments",
        fmt_deltas(&ts),
        fmt_deltas(&tc),
        x.ao_segments,
        x.md5_segments
    ));
    if counted != x.ao_segments as u64 {
        return Ok(Outcome::fail(format!(
            "the peers' kernels verified {counted} TCP-AO segments, the capture holds {}",
            x.ao_segments
        )));
    }
    if let Some(dir) = ctx.pcap_dir() {
        let stem = ctx.name().replace('/', "_");
        if let Err(e) = write_corpus_files(dir, &stem, ctx.name(), case, family, &rec) {
            return Ok(Outcome::fail(format!(
                "writing the corpus files failed: {e}"
            )));
        }
    }
    Ok(Outcome::Pass)
}

fn fmt_deltas(d: &Deltas) -> String {
    COUNTERS
        .iter()
        .zip(d)
        .filter(|(_, v)| **v > 0)
        .map(|(c, v)| format!("{c} +{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------
// Peers

fn key_of(p: &Peer<'_>, spec: &KeySpec, send_id: u8, recv_id: u8) -> TestKey {
    let mut k = TestKey::new(p.remote_addr(), send_id, recv_id)
        .algorithm((spec.alg)())
        .password(spec.secret)
        .maclen(spec.maclen);
    k.include_options = spec.include_options;
    k
}

const SHA1_SPEC: KeySpec = KeySpec {
    alg: || Algorithm::HmacSha1,
    secret: CORPUS_SECRET,
    maclen: 12,
    include_options: true,
};

fn server(p: &Peer<'_>, case: Case, rec: &Mutex<Record>) -> PeerResult {
    let base = snapshot()?;
    match case.kind {
        Kind::Echo(spec) => {
            let (lsk, sk) = accept_one(p, |p, lsk| {
                sockets::add_key(p, lsk, &key_of(p, &spec, 100, 101))
            })?;
            drop(lsk);
            serve_and_close(p, &sk)?;
            settle(p, rec, &base, &base)
        }
        Kind::BgpTable => {
            let (lsk, sk) = accept_on(p, BGP_PORT, |p, lsk| {
                sockets::add_key(p, lsk, &key_of(p, &SHA1_SPEC, 100, 101))
            })?;
            drop(lsk);
            let open = bgp::open_and_keepalive(BGP_SERVER_AS, BGP_SERVER_ID);
            sockets::write_all(p, &sk, &open, p.deadline())?;
            receive_and_close(p, &sk, "bytes of BGP messages")?;
            settle(p, rec, &base, &base)
        }
        Kind::Bulk(mtu) => {
            set_mtu(p, mtu)?;
            let (_lsk, sk) = accept_one(p, |p, lsk| {
                sockets::add_key(p, lsk, &key_of(p, &SHA1_SPEC, 100, 101))
            })?;
            receive_and_close(p, &sk, "bytes")?;
            settle(p, rec, &base, &base)
        }
        Kind::Rotation => {
            let (_lsk, sk) = accept_one(p, |p, lsk| {
                sockets::add_key(p, lsk, &key_of(p, &SHA1_SPEC, 2, 1))?;
                let mut k2 = key_of(p, &SHA1_SPEC, 4, 3);
                k2.algorithm = Algorithm::HmacSha256;
                sockets::add_key(p, lsk, &k2)
            })?;
            serve_and_close(p, &sk)?;
            let info = sk
                .ao_info()
                .or_fail("TCP_AO_INFO failed")?
                .ok_or_else(|| failure!("the accepted socket has no TCP-AO state"))?;
            if info.current_key != Some(4) {
                return Err(failure!(
                    "after the client's RNextKeyID 4 the server's Current_key is {:?}, not 4",
                    info.current_key
                ));
            }
            settle(p, rec, &base, &base)
        }
        Kind::Rst => {
            let spec = KeySpec {
                alg: || Algorithm::AesCmac128,
                secret: CORPUS_SECRET,
                maclen: 12,
                include_options: true,
            };
            let (_lsk, sk) = accept_one(p, |p, lsk| {
                sockets::add_key(p, lsk, &key_of(p, &spec, 7, 9))
            })?;
            let err = serve_until_error(p, &sk)?;
            if err != Some(io::ErrorKind::ConnectionReset) {
                return Err(failure!(
                    "the server expected the client's RST (ECONNRESET), got {err:?}"
                ));
            }
            wait_closed(p, &sk)?;
            settle(p, rec, &base, &base)
        }
        Kind::Md5 => {
            let (_lsk, sk) = accept_one(p, |p, lsk| {
                let prefix = p.family().host_prefix();
                sockets::add_md5_key(p, lsk, p.remote_addr(), prefix, CORPUS_SECRET)
            })?;
            serve_and_close(p, &sk)?;
            settle(p, rec, &base, &base)
        }
        Kind::SneWrap => {
            let key = TestKey::new(p.remote_addr(), 5, 6);
            let sk = restore(p, &key, SERVER_WRAP)?;
            p.sync()?;
            serve_and_close(p, &sk)?;
            settle(p, rec, &base, &base)
        }
        Kind::MidConnection => {
            let spec = KeySpec {
                alg: || Algorithm::HmacSha256,
                ..SHA1_SPEC
            };
            let (_lsk, sk) = accept_one(p, |p, lsk| {
                sockets::add_key(p, lsk, &key_of(p, &spec, 20, 10))
            })?;
            p.sync()?; // the client read the ISNs
            let kept = snapshot()?;
            p.sync()?;
            serve_and_close(p, &sk)?;
            settle(p, rec, &base, &kept)
        }
        Kind::Misconfigured => {
            let lsk = sockets::listen(p, p.port(), 1)?;
            sockets::add_key(p, &lsk, &key_of(p, &SHA1_SPEC, 100, 101))?;
            p.sync()?;
            let bad = p.wait_for(p.deadline(), || {
                let now = snapshot()?;
                Ok((now.ao_bad() > base.ao_bad()).then_some(()))
            })?;
            if bad.is_none() {
                return Err(failure!(
                    "TCPAOBad did not grow: the client's SYN signed without options was not rejected"
                ));
            }
            p.signal();
            if let Some(_sk) = sockets::accept(p, &lsk, Instant::now(), || false)? {
                return Err(failure!(
                    "the server accepted a connection signed the wrong way"
                ));
            }
            settle(p, rec, &base, &base)
        }
    }
}

fn client(p: &Peer<'_>, case: Case, rec: &Mutex<Record>) -> PeerResult {
    let base = snapshot()?;
    match case.kind {
        Kind::Echo(spec) => {
            let sk = connect_with(p, &[key_of(p, &spec, 101, 100)])?;
            echo_and_close(p, &sk, 10, 300)?;
            settle(p, rec, &base, &base)
        }
        Kind::BgpTable => {
            let sk = sockets::client_socket(p)?;
            sockets::add_key(p, &sk, &key_of(p, &SHA1_SPEC, 101, 100))?;
            p.sync()?;
            sockets::connect_ok(p, &sk, p.remote_addr(), BGP_PORT)?;
            let prefixes = bgp_prefixes();
            let mut stream = bgp::open_and_keepalive(BGP_CLIENT_AS, BGP_CLIENT_ID);
            stream.extend(bgp::full_table(BGP_CLIENT_AS, BGP_CLIENT_ID, prefixes));
            sockets::write_all(p, &sk, &stream, p.test_deadline())?;
            p.diag(format!(
                "sent {} bytes of BGP messages ({prefixes} prefixes)",
                stream.len()
            ));
            sk.shutdown(std::net::Shutdown::Write)
                .or_fail("shutdown(SHUT_WR) failed")?;
            let got = discard_until_eof(p, &sk, p.deadline())?;
            p.diag(format!("received {got} bytes of BGP messages"));
            settle(p, rec, &base, &base)
        }
        Kind::Bulk(mtu) => {
            set_mtu(p, mtu)?;
            let sk = connect_with(p, &[key_of(p, &SHA1_SPEC, 101, 100)])?;
            let total = bulk_bytes();
            send_bulk(p, &sk, total)?;
            p.diag(format!("sent {total} bytes"));
            close_after_eof(p, &sk)?;
            settle(p, rec, &base, &base)
        }
        Kind::Rotation => {
            let mut k2 = key_of(p, &SHA1_SPEC, 3, 4);
            k2.algorithm = Algorithm::HmacSha256;
            let sk = connect_with(p, &[key_of(p, &SHA1_SPEC, 1, 2), k2])?;
            sockets::echo_verify(p, &sk, 5, 200, p.deadline())?;
            sk.set_ao_rnext_key(4)
                .or_fail("setting RNext_key 4 failed")?;
            sk.set_ao_current_key(3)
                .or_fail("setting Current_key 3 failed")?;
            sockets::echo_verify(p, &sk, 5, 200, p.deadline())?;
            close_after_eof(p, &sk)?;
            settle(p, rec, &base, &base)
        }
        Kind::Rst => {
            let spec = KeySpec {
                alg: || Algorithm::AesCmac128,
                secret: CORPUS_SECRET,
                maclen: 12,
                include_options: true,
            };
            let sk = connect_with(p, &[key_of(p, &spec, 9, 7)])?;
            sockets::echo_verify(p, &sk, 5, 200, p.deadline())?;
            sk.set_linger(Some(Duration::ZERO))
                .or_fail("SO_LINGER 0 failed")?;
            drop(sk); // sends a RST signed with the current key
            settle(p, rec, &base, &base)
        }
        Kind::Md5 => {
            let sk = sockets::client_socket(p)?;
            let prefix = p.family().host_prefix();
            sockets::add_md5_key(p, &sk, p.remote_addr(), prefix, CORPUS_SECRET)?;
            p.sync()?;
            sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
            echo_and_close(p, &sk, 10, 300)?;
            settle(p, rec, &base, &base)
        }
        Kind::SneWrap => {
            let key = TestKey::new(p.remote_addr(), 6, 5);
            let sk = restore(p, &key, CLIENT_WRAP)?;
            let (srv, cli) = wrap_endpoints(p);
            if let Some(c) = p.capture() {
                c.register_restored(RestoredFlow {
                    server: (srv.ip(), srv.port()),
                    client: (cli.ip(), cli.port()),
                    server_isn: SERVER_WRAP.isn,
                    client_isn: CLIENT_WRAP.isn,
                    server_next_seq: SERVER_WRAP.seq,
                    client_next_seq: CLIENT_WRAP.seq,
                    server_sne: 0,
                    client_sne: 0,
                });
            }
            if let Some(c) = p.capture() {
                c.register_flow_hint(FlowHint {
                    index: 1,
                    client: cli,
                    server: srv,
                    client_isn: CLIENT_WRAP.isn,
                    server_isn: SERVER_WRAP.isn,
                    client_sne: 0,
                    server_sne: 0,
                });
            }
            p.sync()?;
            // 3.6 KB each way: both sequence spaces cross 2^32 (1.5 and 2.5 KB in). A restored
            // socket starts with a receive window of a few hundred bytes, so keep it short.
            echo_and_close(p, &sk, WRAP_MESSAGES, WRAP_MESSAGE_LEN)?;
            settle(p, rec, &base, &base)
        }
        Kind::MidConnection => {
            let spec = KeySpec {
                alg: || Algorithm::HmacSha256,
                ..SHA1_SPEC
            };
            let sk = connect_with(p, &[key_of(p, &spec, 10, 20)])?;
            repair::set_repair(&sk, RepairMode::On).or_fail("TCP_REPAIR on failed")?;
            let r = sk.ao_repair();
            repair::set_repair(&sk, RepairMode::OffNoWindowProbe)
                .or_fail("TCP_REPAIR off failed")?;
            let r = r.or_fail("getsockopt(TCP_AO_REPAIR) failed")?;
            let local = sk
                .local_addr()
                .or_fail("getsockname failed")?
                .as_socket()
                .ok_or_else(|| failure!("the client socket has no IP address"))?;
            if let Some(c) = p.capture() {
                c.register_flow_hint(FlowHint {
                    index: 1,
                    client: local,
                    server: SocketAddr::new(p.remote_addr(), p.port()),
                    client_isn: r.snt_isn,
                    server_isn: r.rcv_isn,
                    client_sne: r.snd_sne,
                    server_sne: r.rcv_sne,
                });
                c.save_without_handshake();
            }
            p.sync()?;
            let kept = snapshot()?;
            p.sync()?;
            echo_and_close(p, &sk, 10, 300)?;
            settle(p, rec, &base, &kept)
        }
        Kind::Misconfigured => {
            let sk = sockets::client_socket(p)?;
            let mut k = key_of(p, &SHA1_SPEC, 101, 100);
            k.include_options = false;
            // Kept out of the saved keys file: that is the server's configuration, which is
            // what tcpao-verify is asked to diagnose. Its identifiers are registered: the
            // cross-check's field rule checks the client's SYNs against the key it holds.
            sk.add_ao_key(&k.to_ao_key()?)
                .or_fail("setsockopt(TCP_AO_ADD_KEY) failed")?;
            sockets::register_ids(p, &k);
            p.sync()?;
            match sockets::connect(
                p,
                &sk,
                p.remote_addr(),
                p.port(),
                p.deadline_in(p.timeout() * 4),
                || p.peer_signals() > 0,
            )? {
                Connect::TimedOut if p.peer_signals() > 0 => {}
                Connect::TimedOut => {
                    return Err(failure!("the server never saw the client's SYN as bad"));
                }
                Connect::Established => {
                    return Err(failure!(
                        "the connection was established although the options setting differs"
                    ));
                }
                Connect::Failed(e) => {
                    return Err(failure!("connect() failed instead of timing out: {e}"));
                }
            }
            drop(sk); // SYN-SENT: closing sends nothing
            settle(p, rec, &base, &base)
        }
    }
}

/// Listen on the current port, configure the listener, let the client connect, accept.
fn accept_one(
    p: &Peer<'_>,
    configure: impl FnOnce(&Peer<'_>, &Socket) -> PeerResult,
) -> PeerResult<(Socket, Socket)> {
    accept_on(p, p.port(), configure)
}

/// Read until EOF (saying how many `what` came), close our half, wait for the last ACK.
fn receive_and_close(p: &Peer<'_>, sk: &Socket, what: &str) -> PeerResult {
    let got = discard_until_eof(p, sk, p.test_deadline())?;
    p.diag(format!("received {got} {what}"));
    sk.shutdown(std::net::Shutdown::Write)
        .or_fail("shutdown(SHUT_WR) failed")?;
    wait_closed(p, sk)
}

/// [`accept_one`] on `port`.
fn accept_on(
    p: &Peer<'_>,
    port: u16,
    configure: impl FnOnce(&Peer<'_>, &Socket) -> PeerResult,
) -> PeerResult<(Socket, Socket)> {
    let lsk = sockets::listen(p, port, 1)?;
    configure(p, &lsk)?;
    p.sync()?;
    let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))?;
    Ok((lsk, sk))
}

fn connect_with(p: &Peer<'_>, keys: &[TestKey]) -> PeerResult<Socket> {
    let sk = sockets::client_socket(p)?;
    for k in keys {
        sockets::add_key(p, &sk, k)?;
    }
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    Ok(sk)
}

/// Echo until EOF, close our half, and wait until the client's last ACK arrived.
fn serve_and_close(p: &Peer<'_>, sk: &Socket) -> PeerResult {
    let deadline = p.deadline_in(p.timeout() * 4);
    let served = sockets::echo_server(p, sk, deadline)?;
    p.diag(format!("echoed {served} bytes"));
    sk.shutdown(std::net::Shutdown::Write)
        .or_fail("shutdown(SHUT_WR) failed")?;
    wait_closed(p, sk)
}

/// Echo `count` messages of `len` bytes, then close first and wait for the server's FIN.
fn echo_and_close(p: &Peer<'_>, sk: &Socket, count: usize, len: usize) -> PeerResult {
    sockets::echo_verify(p, sk, count, len, p.deadline_in(p.timeout() * 4))?;
    close_after_eof(p, sk)
}

fn close_after_eof(p: &Peer<'_>, sk: &Socket) -> PeerResult {
    sk.shutdown(std::net::Shutdown::Write)
        .or_fail("shutdown(SHUT_WR) failed")?;
    let extra = discard_until_eof(p, sk, p.deadline())?;
    if extra != 0 {
        return Err(failure!(
            "{extra} unexpected bytes arrived before the server's FIN"
        ));
    }
    Ok(())
}

/// Wait until `sk` is `TCP_CLOSE`: the peer's final ACK (or RST) was processed.
fn wait_closed(p: &Peer<'_>, sk: &Socket) -> PeerResult {
    let closed = p.wait_for(p.deadline(), || {
        let info = repair::tcp_info(sk).or_fail("TCP_INFO failed")?;
        Ok((info.state == TCP_CLOSE).then_some(()))
    })?;
    closed.ok_or_else(|| failure!("the socket did not reach TCP_CLOSE in {:?}", p.timeout()))
}

/// Read and drop everything until EOF; returns the byte count.
fn discard_until_eof(p: &Peer<'_>, mut sk: &Socket, deadline: Instant) -> PeerResult<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match sk.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, PollFlags::POLLIN, deadline, || false)? {
                    return Err(failure!("no EOF before the deadline ({total} bytes read)"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failure!("read() failed after {total} bytes: {e}")),
        }
    }
}

/// Echo until the connection fails; returns the error kind (`None` on a clean EOF).
fn serve_until_error(p: &Peer<'_>, mut sk: &Socket) -> PeerResult<Option<io::ErrorKind>> {
    let deadline = p.deadline_in(p.timeout() * 4);
    let mut buf = vec![0u8; 65536];
    loop {
        match sk.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    match sk.write(rest) {
                        Ok(w) => rest = &rest[w..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            sockets::wait_fd(p, sk, PollFlags::POLLOUT, deadline, || false)?;
                        }
                        Err(e) => return Ok(Some(e.kind())),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, PollFlags::POLLIN, deadline, || false)? {
                    return Err(failure!("the connection neither closed nor failed in time"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Ok(Some(e.kind())),
        }
    }
}

const BGP_PORT: u16 = 179;
const BGP_CLIENT_AS: u32 = 65_001;
const BGP_SERVER_AS: u32 = 4_200_000_002;

/// BGP Identifiers (and the client's NEXT_HOP): the peers' IPv4 test addresses.
const BGP_SERVER_ID: [u8; 4] = [10, 0, 254, 1];
const BGP_CLIENT_ID: [u8; 4] = [10, 0, 1, 1];

/// Prefixes of the full table: `TCPAO_BGP_PREFIXES`, default 1,048,576 (about the size of
/// the IPv4 Internet table).
fn bgp_prefixes() -> u32 {
    std::env::var("TCPAO_BGP_PREFIXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20)
}

/// The largest veth MTU (`ETH_MAX_MTU`); `lo` has 65,536.
const JUMBO_MTU: u32 = 65_535;

/// Give this side's veth `mtu` (before the handshake, so that the MSS follows).
fn set_mtu(p: &Peer<'_>, mtu: Option<u32>) -> PeerResult {
    let Some(mtu) = mtu else { return Ok(()) };
    let nl = Netlink::open().map_err(|e| Failure::Setup(e.to_string()))?;
    nl.set_mtu(p.link().veth_index, mtu)
        .map_err(|e| Failure::Setup(e.to_string()))
}

/// Bytes of the bulk transfer: `TCPAO_BULK_BYTES`, default 48 MiB.
fn bulk_bytes() -> u64 {
    std::env::var("TCPAO_BULK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48 << 20)
}

fn send_bulk(p: &Peer<'_>, mut sk: &Socket, total: u64) -> PeerResult {
    let mut chunk = vec![0u8; 64 * 1024];
    Rng::from_clock().fill(&mut chunk);
    let deadline = p.test_deadline();
    let mut sent = 0u64;
    while sent < total {
        let n = usize::try_from((total - sent).min(chunk.len() as u64)).unwrap_or(chunk.len());
        match sk.write(&chunk[..n]) {
            Ok(w) => sent += w as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, PollFlags::POLLOUT, deadline, || false)? {
                    return Err(failure!("the bulk transfer stalled after {sent} bytes"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failure!("write() failed after {sent} bytes: {e}")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// TCP_REPAIR: a connection that starts just below 2^32

/// Sequence state a side is restored with.
#[derive(Debug, Clone, Copy)]
struct WrapState {
    /// Our ISN (what `TCP_AO_REPAIR` gets as `snt_isn`).
    isn: u32,
    /// Our next sequence number.
    seq: u32,
}

const CLIENT_WRAP: WrapState = WrapState {
    isn: 0x3c0f_fee1,
    seq: u32::MAX - 1_500 + 1,
};
const SERVER_WRAP: WrapState = WrapState {
    isn: 0x5eed_0b0e,
    seq: u32::MAX - 2_500 + 1,
};
const WRAP_CLIENT_PORT: u16 = 41_000;
const WRAP_MESSAGES: usize = 6;
const WRAP_MESSAGE_LEN: usize = 600;

/// (server, client) endpoints of the restored connection.
fn wrap_endpoints(p: &Peer<'_>) -> (SocketAddr, SocketAddr) {
    let f = p.family();
    (
        SocketAddr::new(f.server_addr(), p.port()),
        SocketAddr::new(f.client_addr(), WRAP_CLIENT_PORT),
    )
}

/// A socket restored into ESTABLISHED with `TCP_REPAIR` (the recipe of measured.md), with
/// our `me` and the peer's `SERVER_WRAP`/`CLIENT_WRAP` state, no handshake on the wire.
fn restore(p: &Peer<'_>, key: &TestKey, me: WrapState) -> PeerResult<Socket> {
    let (srv, cli) = wrap_endpoints(p);
    let (local, remote, peer) = match p.side() {
        Side::Server => (srv, cli, CLIENT_WRAP),
        Side::Client => (cli, srv, SERVER_WRAP),
    };
    let sk = sockets::tcp_socket(p.family())?;
    repair::set_repair(&sk, RepairMode::On).or_fail("TCP_REPAIR on failed")?;
    sk.set_reuse_address(true).or_fail("SO_REUSEADDR failed")?;
    sk.bind_device(Some(VETH_NAME.as_bytes()))
        .or_fail("SO_BINDTODEVICE failed")?;
    sockets::add_key(p, &sk, key)?;
    sk.bind(&SockAddr::from(local))
        .or_fail(&format!("bind({local}) failed"))?;
    repair::set_repair_queue(&sk, Queue::Send).or_fail("TCP_REPAIR_QUEUE send failed")?;
    repair::set_queue_seq(&sk, me.seq).or_fail("TCP_QUEUE_SEQ send failed")?;
    repair::set_repair_queue(&sk, Queue::Recv).or_fail("TCP_REPAIR_QUEUE recv failed")?;
    repair::set_queue_seq(&sk, peer.seq).or_fail("TCP_QUEUE_SEQ recv failed")?;
    match sk.connect(&SockAddr::from(remote)) {
        Ok(()) => {}
        Err(e) => return Err(failure!("connect() in repair mode failed: {e}")),
    }
    repair::set_repair_options(&sk, &[RepairOption::Mss(1400)])
        .or_fail("TCP_REPAIR_OPTIONS failed")?;
    repair::set_repair_window(
        &sk,
        &RepairWindow {
            snd_wl1: peer.seq,
            snd_wnd: 65_535,
            max_window: 65_535,
            rcv_wnd: 65_535,
            rcv_wup: peer.seq,
        },
    )
    .or_fail("TCP_REPAIR_WINDOW failed")?;
    sk.set_ao_repair(&AoRepair {
        snt_isn: me.isn,
        rcv_isn: peer.isn,
        snd_sne: 0,
        rcv_sne: 0,
    })
    .or_fail("setsockopt(TCP_AO_REPAIR) failed")?;
    repair::set_repair_queue(&sk, Queue::None).or_fail("TCP_REPAIR_QUEUE none failed")?;
    repair::set_repair(&sk, RepairMode::OffNoWindowProbe).or_fail("TCP_REPAIR off failed")?;
    Ok(sk)
}

// ---------------------------------------------------------------------------------------
// Corpus files

/// Frames, TCP segments, TCP-AO and TCP-MD5 segments of a capture.
#[derive(Debug, Default, Clone, Copy)]
struct Wire {
    frames: u64,
    tcp: u64,
    ao: u64,
    md5: u64,
}

/// Frames, TCP segments and TCP-AO/TCP-MD5 segments of a saved capture, read with
/// tcpao-refimpl's reader.
fn count(path: &Path) -> io::Result<Wire> {
    let mut r = CaptureReader::open(path).map_err(io::Error::other)?;
    let mut w = Wire::default();
    r.for_each_frame(|f| {
        if let Ok(seg) = SegmentRef::parse(f.ip) {
            w.tcp += 1;
            if let Ok(a) = seg.tcp_packet().auth_options() {
                w.ao += u64::from(a.ao.is_some());
                w.md5 += u64::from(a.md5.is_some());
            }
        }
        ControlFlow::Continue(())
    })
    .map_err(io::Error::other)?;
    w.frames = r.frames();
    Ok(w)
}

fn write_corpus_files(
    dir: &Path,
    stem: &str,
    test: &str,
    case: Case,
    family: Family,
    rec: &Record,
) -> io::Result<()> {
    let wire = count(&dir.join(format!("{stem}.pcap")))?;
    let (Some(s), Some(c)) = (rec.kept[0], rec.kept[1]) else {
        return Err(io::Error::other("a peer recorded no counters"));
    };
    let sum = |n: &str| get(&s, n) + get(&c, n);
    // The kept part must also account for every TCP-AO segment left in the capture.
    let verified = sum("TCPAOGood") + sum("TCPAOBad") + sum("TCPAOKeyNotFound");
    if verified != wire.ao {
        return Err(io::Error::other(format!(
            "the kernels verified {verified} TCP-AO segments of the saved capture's part, it holds {}",
            wire.ao
        )));
    }
    let md5_bad = sum("TCPMD5Failure");
    let failing = sum("TCPAOBad") + sum("TCPAOKeyNotFound") + sum("TCPAORequired") + md5_bad;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Expected verdicts for {stem}.pcap, derived from the kernel, not from tcpao-verify.\n\
         # Written by `tcpao-selftests --save-pcaps DIR {test}` (scripts/make-corpus.sh).\n"
    );
    let _ = writeln!(
        t,
        "[capture]\ntest = \"{test}\"\nkernel = \"{}\"\ndescription = \"{}\"\n",
        rec.kernel, case.what
    );
    let _ = writeln!(
        t,
        "# Counted in the saved capture.\n[wire]\nframes = {}\ntcp_segments = {}\n\
         ao_segments = {}\nmd5_segments = {}\n",
        wire.frames, wire.tcp, wire.ao, wire.md5
    );
    let _ = writeln!(
        t,
        "# Netns counter deltas of each peer over the traffic the capture holds."
    );
    for (name, d) in [("server", &s), ("client", &c)] {
        let _ = writeln!(t, "[kernel.{name}]");
        for (n, v) in COUNTERS.iter().zip(d.iter()) {
            let _ = writeln!(t, "{n} = {v}");
        }
        t.push('\n');
    }
    let _ = writeln!(
        t,
        "# What tcpao-verify must report: good/bad/key_not_found/unsigned = the sums of\n\
         # TCPAOGood/TCPAOBad/TCPAOKeyNotFound/TCPAORequired, md5_bad = TCPMD5Failure,\n\
         # md5_good = TCP-MD5 segments - md5_bad, unverifiable = 0."
    );
    let _ = writeln!(
        t,
        "[expect]\ngood = {}\nbad = {}\nkey_not_found = {}\nunsigned = {}\nunverifiable = 0\n\
         md5_good = {}\nmd5_bad = {md5_bad}\nresult = \"{}\"",
        sum("TCPAOGood"),
        sum("TCPAOBad"),
        sum("TCPAOKeyNotFound"),
        sum("TCPAORequired"),
        wire.md5.saturating_sub(md5_bad),
        if failing == 0 { "pass" } else { "fail" }
    );
    if let Kind::Misconfigured = case.kind {
        let client = family.client_addr();
        let _ = writeln!(
            t,
            "# The fault we injected: the client signs with TCP options excluded.\n\
             explain = \"{client} signs with TCP options excluded from the MAC\""
        );
    }
    std::fs::write(dir.join(format!("{stem}.expect.toml")), t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_unique() {
        let t = tests();
        let mut names: Vec<&str> = t.iter().map(Test::name).collect();
        for n in &names {
            crate::registry::validate_name(n).unwrap();
        }
        let len = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), len);
        // The corpus cases for both families, and three hidden benchmark captures.
        assert_eq!(len, CASES.len() * 2 + 3);
        let hidden: Vec<&str> = t.iter().filter(|t| t.is_hidden()).map(Test::name).collect();
        assert_eq!(
            hidden,
            [
                "corpus-bulk/ipv4/transfer",
                "corpus-bulk/ipv4/bgp-full-table",
                "corpus-bulk/ipv4/jumbo"
            ]
        );
    }

    #[test]
    fn wrap_states_cross_two_to_the_32() {
        // The echo traffic must cross the wrap in both directions, well before its end.
        for w in [CLIENT_WRAP, SERVER_WRAP] {
            assert!(
                u64::from(w.seq) + (WRAP_MESSAGES * WRAP_MESSAGE_LEN) as u64 > (1 << 32) + 1000
            );
        }
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The test programs: one module per kernel selftest program (`connect`, `connect-deny`, ...),
//! each run for IPv4 and IPv6, each case in fresh network namespaces.
//!
//! # Writing a program
//!
//! A program is a module under `programs/` with `pub fn tests() -> Vec<Test>`, added to
//! [`tests`] below. A case is two functions, server and client, each given a [`Peer`]: build
//! it with [`PairTest`], which registers `program/ipv4/case` and `program/ipv6/case` and runs
//! each in its own pair of namespaces ([`crate::peers::run_pair`]) with the traffic captured
//! and cross-checked by tcpao-refimpl. Read it like the kernel's C: set up both peers, `sync()`,
//! act, then assert which counters grew and that the others did not. Never sleep: wait with
//! the deadline helpers ([`Peer::wait_for`], [`sockets::connect`], [`sockets::accept`]), which
//! also return at once when the other side fails.
//!
//! ```no_run
//! use tcpao_selftests::counters::{Counters, Grew};
//! use tcpao_selftests::PeerResult;
//! use tcpao_selftests::peers::Peer;
//! use tcpao_selftests::programs::PairTest;
//! use tcpao_selftests::sockets::{self, TestKey};
//! use tcpao_selftests::{Test, failure};
//!
//! pub fn tests() -> Vec<Test> {
//!     PairTest::new("example", "echo-with-key").ao().build(server, client)
//! }
//!
//! fn server(p: &Peer<'_>) -> PeerResult {
//!     let lsk = sockets::listen(p, p.port(), 1)?;
//!     sockets::add_key(p, &lsk, &TestKey::new(p.remote_addr(), 100, 100))?;
//!     p.sync()?;                                             // client may connect now
//!     let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
//!         .ok_or_else(|| failure!("no connection was accepted"))?;
//!     sockets::echo_server(p, &sk, p.deadline()).map(drop)
//! }
//!
//! fn client(p: &Peer<'_>) -> PeerResult {
//!     let sk = sockets::client_socket(p)?;
//!     sockets::add_key(p, &sk, &TestKey::new(p.remote_addr(), 100, 100))?;
//!     p.sync()?;
//!     sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
//!     let before = Counters::of(&sk)?;                       // netns + TCP_AO_INFO + keys
//!     sockets::echo_verify(p, &sk, 20, 100, p.deadline())?;
//!     Counters::of(&sk)?.assert_grew_exactly(&before, Grew::GOOD)
//! }
//! ```
//!
//! Keys added with [`sockets::add_key`] / [`sockets::add_md5_key`] are registered with the
//! capture, so every signed segment is checked by the reference, its MAC and its fields; a key
//! installed another way must be registered with [`sockets::register`] by hand: the
//! cross-check fails a segment whose KeyID no registered key of its sender has. Return
//! `Err(failure!(..))` with a full sentence to fail, `Err(Failure::Skip(..))` to skip,
//! `Err(Failure::XFail(..))` for a known kernel issue.

pub mod algorithms;
pub mod bench_lookups;
pub mod connect;
pub mod connect_deny;
pub mod corpus;
pub mod exclude_opt;
pub mod extras;
pub mod icmps_accept;
pub mod icmps_discard;
pub mod inject;
pub mod interop;
pub mod key_management;
pub mod maclen;
pub mod paths;
pub mod race;
pub mod regress;
pub mod restore;
pub mod rotation;
pub mod rst;
pub mod self_connect;
pub mod seq_ext;
pub mod setsockopt_closed;
pub mod sockopt;
pub mod unsigned_md5;
pub mod vrf_keys;

use std::sync::Arc;
use std::time::Duration;

use crate::capture::CaptureConfig;
use crate::outcome::{Outcome, PeerResult, TestResult};
pub use crate::peers::{PairConfig, PairReport};
use crate::peers::{Peer, run_pair};
use crate::probe::Feature;
use crate::registry::{Ctx, Test};
use crate::sockets;
use crate::topology::{Family, Side, TopologyConfig};

/// Every program's tests.
pub fn tests() -> Vec<Test> {
    let mut v = connect::tests();
    v.extend(connect_deny::tests());
    v.extend(setsockopt_closed::tests());
    v.extend(key_management::tests());
    v.extend(unsigned_md5::tests());
    v.extend(icmps_discard::tests());
    v.extend(icmps_accept::tests());
    v.extend(rst::tests());
    v.extend(corpus::tests());
    v.extend(exclude_opt::tests());
    v.extend(maclen::tests());
    v.extend(algorithms::tests());
    v.extend(vrf_keys::tests());
    v.extend(rotation::tests());
    v.extend(inject::tests());
    v.extend(paths::tests());
    v.extend(restore::tests());
    v.extend(seq_ext::tests());
    v.extend(self_connect::tests());
    v.extend(bench_lookups::tests());
    v.extend(regress::tests());
    v.extend(race::tests());
    v.extend(interop::tests());
    v
}

/// A two-peer test case, registered for both families.
#[derive(Debug, Clone)]
pub struct PairTest {
    program: String,
    case: String,
    requires: Vec<Feature>,
    topology: TopologyConfig,
    timeout: Duration,
    xcheck_snes: Vec<(Side, u32)>,
    exclusive: bool,
}

impl PairTest {
    /// Case `case` of `program`; needs network namespaces and veth.
    pub fn new(program: &str, case: &str) -> Self {
        Self {
            program: program.to_owned(),
            case: case.to_owned(),
            requires: vec![Feature::Netns, Feature::Veth],
            topology: TopologyConfig::default(),
            timeout: Duration::from_secs(30),
            xcheck_snes: Vec::new(),
            exclusive: false,
        }
    }

    /// Each family's test runs alone ([`Test::exclusive`]).
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// Also needs TCP-AO.
    pub fn ao(self) -> Self {
        self.requires(&[Feature::TcpAo])
    }

    /// Also needs these features.
    pub fn requires(mut self, f: &[Feature]) -> Self {
        self.requires.extend_from_slice(f);
        self
    }

    /// Extra topology (client addresses, VRF; a VRF adds [`Feature::Vrf`]).
    pub fn topology(mut self, t: TopologyConfig) -> Self {
        if t.vrf {
            self.requires.push(Feature::Vrf);
        }
        self.topology = t;
        self
    }

    /// Per-test timeout (default 30 s, scaled on slow machines by the harness).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The capture cross-check must have verified, from each peer, at least one segment in
    /// each of these SNEs (RFC 5925 §6.2): proof that segments across a 2^32 wrap were
    /// checked by the reference, not only counted by the kernel.
    pub fn xcheck_snes(self, snes: &[u32]) -> Self {
        self.xcheck_snes_from(Side::Server, snes)
            .xcheck_snes_from(Side::Client, snes)
    }

    /// Like [`PairTest::xcheck_snes`], for the segments one peer sent.
    pub fn xcheck_snes_from(mut self, sender: Side, snes: &[u32]) -> Self {
        self.xcheck_snes.extend(snes.iter().map(|s| (sender, *s)));
        self
    }

    /// Register `program/ipv4/case` and `program/ipv6/case`.
    pub fn build<S, C>(self, server: S, client: C) -> Vec<Test>
    where
        S: Fn(&Peer<'_>) -> PeerResult + Send + Sync + 'static,
        C: Fn(&Peer<'_>) -> PeerResult + Send + Sync + 'static,
    {
        let server = Arc::new(server);
        let client = Arc::new(client);
        Family::ALL
            .into_iter()
            .map(|family| {
                let (s, c, topo, snes) = (
                    Arc::clone(&server),
                    Arc::clone(&client),
                    self.topology.clone(),
                    self.xcheck_snes.clone(),
                );
                let mut req = self.requires.clone();
                if family == Family::Ipv6 {
                    req.push(Feature::Ipv6);
                }
                let t = Test::new(
                    format!("{}/{}/{}", self.program, family.name(), self.case),
                    move |ctx: &Ctx| {
                        run_case_checked(ctx, family, &topo, &snes, |p| s(p), |p| c(p))
                    },
                )
                .requires(&req)
                .timeout(self.timeout);
                if self.exclusive { t.exclusive() } else { t }
            })
            .collect()
    }
}

/// The pair configuration of a test the harness runs: its family and slowness, a timeout
/// that leaves the harness a margin to report a hang as a timeout of ours (not its own), and
/// a capture named `name` (saved with `--save-pcaps`).
pub fn pair_config(ctx: &Ctx, family: Family, name: &str) -> PairConfig {
    let mut cfg = PairConfig::new(family);
    cfg.slow_factor = ctx.slow_factor();
    cfg.timeout = ctx
        .timeout()
        .saturating_sub(ctx.timeout() / 10)
        .max(Duration::from_secs(1));
    cfg.capture = Some(CaptureConfig::new(
        name,
        ctx.pcap_dir().map(std::path::Path::to_path_buf),
    ));
    cfg
}

/// Run one case under the harness: fresh topology, capture (saved with `--save-pcaps`),
/// diagnostics and the cross-check count printed as KTAP `#` lines.
///
/// # Errors
/// Never: every failure is an [`Outcome`]; the `Result` is the harness's signature.
pub fn run_case<S, C>(
    ctx: &Ctx,
    family: Family,
    topology: &TopologyConfig,
    server: S,
    client: C,
) -> TestResult
where
    S: FnOnce(&Peer<'_>) -> PeerResult + Send,
    C: FnOnce(&Peer<'_>) -> PeerResult + Send,
{
    run_case_checked(ctx, family, topology, &[], server, client)
}

/// [`run_case`], and a pass also needs the cross-check to have verified segments sent by
/// each `(peer, SNE)` of `snes` ([`PairTest::xcheck_snes`]).
///
/// # Errors
/// Never, as [`run_case`].
pub fn run_case_checked<S, C>(
    ctx: &Ctx,
    family: Family,
    topology: &TopologyConfig,
    snes: &[(Side, u32)],
    server: S,
    client: C,
) -> TestResult
where
    S: FnOnce(&Peer<'_>) -> PeerResult + Send,
    C: FnOnce(&Peer<'_>) -> PeerResult + Send,
{
    let mut cfg = pair_config(ctx, family, ctx.name());
    cfg.topology = topology.clone();
    let report = run_pair(&cfg, server, client);
    for d in &report.diagnostics {
        ctx.diag(d);
    }
    ctx.diag(format!(
        "setup {:.1} ms ({} ms), total {:.1} ms",
        report.setup_time.as_secs_f64() * 1e3,
        report.setup_breakdown,
        report.total_time.as_secs_f64() * 1e3
    ));
    if report.outcome == Outcome::Pass && !snes.is_empty() {
        let missing: Vec<String> = snes
            .iter()
            .filter(|(side, sne)| {
                let i = usize::from(*side == Side::Client);
                !report
                    .xcheck
                    .as_ref()
                    .is_some_and(|x| x.verified_sne[i].contains_key(sne))
            })
            .map(|(side, sne)| format!("{} SNE {sne}", side.name()))
            .collect();
        if !missing.is_empty() {
            return Ok(Outcome::Fail(format!(
                "the capture cross-check verified no segment for: {}",
                missing.join(", ")
            )));
        }
    }
    Ok(report.outcome)
}

/// Re-exported for programs.
pub use sockets::{Connect, TestKey};

/// `Outcome` of the registry, re-exported for programs that build tests by hand.
pub type CaseOutcome = Outcome;

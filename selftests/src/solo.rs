// SPDX-License-Identifier: MIT OR Apache-2.0
//! Single-namespace tests: one peer, one fresh network namespace, no veth, no traffic.
//!
//! Most uAPI checks (the kernel's `setsockopt-closed.c`, the closed/listen parts of
//! `key-management.c`) need a socket but no peer. [`SoloTest`] registers such a case for both
//! families and runs it in a new network namespace of its own (so `net.core.optmem_max` and
//! the MIB counters are private to the test) with `lo` up and this side's test addresses on
//! `lo`, which is much cheaper than [`crate::peers::run_pair`]'s two namespaces and veth pair,
//! above all under emulation. The body gets a [`Solo`] and returns a [`PeerResult`], like a
//! peer function: `Err(failure!(..))` fails, `Failure::XFail`/`Failure::Skip` are reported as
//! such.
//!
//! ```no_run
//! use tcpao_selftests::solo::{Solo, SoloTest};
//! use tcpao_selftests::PeerResult;
//! use tcpao_selftests::Test;
//!
//! pub fn tests() -> Vec<Test> {
//!     SoloTest::new("example", "closed-socket").ao().build(body)
//! }
//!
//! fn body(s: &Solo) -> PeerResult {
//!     let sk = tcpao_selftests::sockets::tcp_socket(s.family())?;
//!     s.diag(format!("socket for {}", s.remote_addr()));
//!     drop(sk);
//!     Ok(())
//! }
//! ```

use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netns;
use crate::outcome::{Failure, Outcome, PeerResult, TestResult};
use crate::peers::TEST_TIMEOUT;
use crate::probe::Feature;
use crate::registry::{Ctx, Test};
use crate::topology::{Family, Netlink, VRF_IFINDEX, VRF_NAME, VRF_TABLE};

/// A single-namespace test case, registered for both families.
#[derive(Debug, Clone)]
pub struct SoloTest {
    program: String,
    case: String,
    requires: Vec<Feature>,
    vrf: bool,
    timeout: Duration,
}

impl SoloTest {
    /// Case `case` of `program`; needs network namespaces.
    pub fn new(program: &str, case: &str) -> Self {
        Self {
            program: program.to_owned(),
            case: case.to_owned(),
            requires: vec![Feature::Netns],
            vrf: false,
            timeout: Duration::from_secs(30),
        }
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

    /// Create the VRF `ksft-vrf` (table 42, ifindex 200) in the namespace; adds
    /// [`Feature::Vrf`].
    pub fn vrf(mut self) -> Self {
        self.vrf = true;
        self.requires.push(Feature::Vrf);
        self
    }

    /// Per-test timeout (default 30 s, scaled on slow machines by the harness).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Register `program/ipv4/case` and `program/ipv6/case`.
    pub fn build<F>(self, body: F) -> Vec<Test>
    where
        F: Fn(&Solo) -> PeerResult + Send + Sync + 'static,
    {
        let body = Arc::new(body);
        Family::ALL
            .into_iter()
            .map(|family| {
                let b = Arc::clone(&body);
                let vrf = self.vrf;
                let mut req = self.requires.clone();
                if family == Family::Ipv6 {
                    req.push(Feature::Ipv6);
                }
                Test::new(
                    format!("{}/{}/{}", self.program, family.name(), self.case),
                    move |ctx: &Ctx| run_solo(ctx, family, vrf, |s| b(s)),
                )
                .requires(&req)
                .timeout(self.timeout)
            })
            .collect()
    }
}

/// The handle a single-namespace body gets: family, addresses, deadlines, diagnostics.
///
/// The namespace plays the kernel library's client (`this_ip_addr` 10.0.1.1 /
/// 2001:db8:1::1, configured on `lo`); keys are usually for the server address
/// ([`Solo::remote_addr`], `this_ip_dest`), which is routed nowhere.
pub struct Solo {
    family: Family,
    deadline: Instant,
    slow_factor: u32,
    vrf_index: Option<u32>,
    diags: RefCell<Vec<String>>,
}

impl fmt::Debug for Solo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Solo")
            .field("family", &self.family)
            .field("vrf_index", &self.vrf_index)
            .finish_non_exhaustive()
    }
}

impl Solo {
    /// The test's address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// This namespace's address (kernel `this_ip_addr`, the client's): on `lo`.
    pub fn local_addr(&self) -> IpAddr {
        self.family.client_addr()
    }

    /// The peer address keys are made for (kernel `this_ip_dest`, the server's).
    pub fn remote_addr(&self) -> IpAddr {
        self.family.server_addr()
    }

    /// Index of the VRF, when the test asked for one.
    pub fn vrf_index(&self) -> Option<u32> {
        self.vrf_index
    }

    /// [`TEST_TIMEOUT`] scaled for slow machines.
    pub fn timeout(&self) -> Duration {
        TEST_TIMEOUT * self.slow_factor.max(1)
    }

    /// `now + timeout()`, capped by the test's deadline.
    pub fn deadline(&self) -> Instant {
        (Instant::now() + self.timeout()).min(self.deadline)
    }

    /// The test's hard deadline.
    pub fn test_deadline(&self) -> Instant {
        self.deadline
    }

    /// Add a diagnostic line (a KTAP `# ` line before the result).
    pub fn diag(&self, line: impl fmt::Display) {
        self.diags.borrow_mut().push(line.to_string());
    }
}

/// Run `body` in a fresh network namespace (in a thread of its own) with `lo` up, the
/// client's test addresses of both families on `lo`, and optionally the VRF.
///
/// # Errors
/// Never: every failure is an [`Outcome`]; the `Result` is the harness's signature.
pub fn run_solo<F>(ctx: &Ctx, family: Family, vrf: bool, body: F) -> TestResult
where
    F: FnOnce(&Solo) -> PeerResult + Send,
{
    let start = Instant::now();
    let deadline = start
        + ctx
            .timeout()
            .saturating_sub(ctx.timeout() / 10)
            .max(Duration::from_secs(1));
    let slow_factor = ctx.slow_factor();
    let (result, diags) = std::thread::scope(|s| {
        s.spawn(move || {
            let setup = || -> Result<Option<u32>, String> {
                netns::enter_new_netns().map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
                let nl = Netlink::open().map_err(|e| e.to_string())?;
                // `ip link set lo up`; lo is ifindex 1 in a new namespace.
                nl.link_up(1).map_err(|e| e.to_string())?;
                for f in Family::ALL {
                    nl.add_address(1, f.client_addr(), f.host_prefix())
                        .map_err(|e| e.to_string())?;
                }
                if vrf {
                    let i = nl
                        .add_vrf(VRF_NAME, VRF_TABLE, VRF_IFINDEX)
                        .map_err(|e| e.to_string())?;
                    return Ok(Some(i));
                }
                Ok(None)
            };
            let vrf_index = match setup() {
                Ok(v) => v,
                Err(e) => return (Err(Failure::Setup(e)), Vec::new()),
            };
            let solo = Solo {
                family,
                deadline,
                slow_factor,
                vrf_index,
                diags: RefCell::new(Vec::new()),
            };
            let r = match catch_unwind(AssertUnwindSafe(|| body(&solo))) {
                Ok(r) => r,
                Err(p) => {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic payload".into());
                    Err(Failure::Fail(format!("panicked: {msg}")))
                }
            };
            (r, solo.diags.into_inner())
        })
        .join()
        .unwrap_or_else(|_| {
            (
                Err(Failure::Fail("the test thread panicked".into())),
                Vec::new(),
            )
        })
    });
    for d in diags {
        ctx.diag(d);
    }
    ctx.diag(format!(
        "total {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    ));
    Ok(result.map_or_else(Outcome::from, |()| Outcome::Pass))
}

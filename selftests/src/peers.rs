// SPDX-License-Identifier: MIT OR Apache-2.0
//! The two-peer runner, the Rust form of the kernel library's `test_init(server_fn, client_fn)`.
//!
//! [`run_pair`] builds a fresh topology ([`crate::topology`]) for one test: the server runs in one
//! new network namespace and the client in another, each in its own thread, joined by a veth
//! pair. Both functions get a [`Peer`], which offers:
//!
//! - [`Peer::sync`], a two-party barrier (the kernel's `synchronize_threads()`);
//! - a shared failure flag: when one side returns an error or panics, every wait of the other
//!   side ([`Peer::sync`], [`Peer::wait_for`], the socket helpers in [`crate::sockets`]) returns
//!   [`Failure::PeerFailed`] at once instead of running into its own deadline;
//! - [`Peer::signal`] / [`Peer::peer_signals`], so a side can tell the other that the expected
//!   event happened (the server saw the counter move: the client may stop waiting for a timeout);
//! - [`Peer::next_port`], a fresh port per sub-case, in lockstep on both sides;
//! - [`Peer::capture`], the packet capture of the test, where keys are registered for the
//!   reference cross-check.
//!
//! Everything is torn down when the threads end, also after a failure or a panic: the namespaces
//! die with the threads and the sockets the functions created.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::capture::{Capture, CaptureConfig, XcheckReport};
use crate::counters::NetnsMib;
use crate::failure;
use crate::netns::{self, NetnsFd};
use crate::outcome::{Failure, OrFail, Outcome, PeerResult};
use crate::topology::{self, Family, Link, Netlink, Side, TopologyConfig};

/// Timeout for things that are expected to succeed (kernel `TEST_TIMEOUT_SEC`).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First port of a test; [`Peer::next_port`] counts up from here (kernel: 7010).
pub const FIRST_PORT: u16 = 7010;

/// What [`run_pair`] reports.
#[derive(Debug, Clone)]
pub struct PairReport {
    /// The test's outcome.
    pub outcome: Outcome,
    /// Diagnostic lines (KTAP `# ...`), in order.
    pub diagnostics: Vec<String>,
    /// Time from start until both namespaces were configured and both functions started.
    pub setup_time: Duration,
    /// Where the setup time went, per side and step (`server netns 1.2, client links 3.4`, ms).
    pub setup_breakdown: String,
    /// Total wall time.
    pub total_time: Duration,
    /// The capture cross-check, when capturing was on.
    pub xcheck: Option<XcheckReport>,
}

/// How to run one test.
#[derive(Debug, Clone)]
pub struct PairConfig {
    /// Address family of the test.
    pub family: Family,
    /// Extra network pieces.
    pub topology: TopologyConfig,
    /// Hard limit for the whole test; every wait ends by then.
    pub timeout: Duration,
    /// Capture and cross-check the traffic (on by default).
    pub capture: Option<CaptureConfig>,
    /// Multiplier for [`TEST_TIMEOUT`] (the harness's `KSFT_MACHINE_SLOW` factor).
    pub slow_factor: u32,
}

impl PairConfig {
    /// Defaults: the plain topology, 30 s, capture on without saving.
    pub fn new(family: Family) -> Self {
        Self {
            family,
            topology: TopologyConfig::default(),
            timeout: Duration::from_secs(30),
            capture: Some(CaptureConfig::default()),
            slow_factor: 1,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    failed: Option<Side>,
    done: [bool; 2],
    barrier_arrived: usize,
    barrier_generation: u64,
    signals: [u64; 2],
}

/// State shared by both peers of one test.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    diagnostics: Mutex<Vec<String>>,
    timings: Mutex<Vec<String>>,
    deadline: Instant,
}

impl Shared {
    fn new(deadline: Instant) -> Self {
        Self {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            diagnostics: Mutex::new(Vec::new()),
            timings: Mutex::new(Vec::new()),
            deadline,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a peer panicked while holding it; the state is still valid.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_failed(&self, side: Side) {
        let mut st = self.lock();
        st.failed.get_or_insert(side);
        self.cv.notify_all();
    }

    fn timing(&self, side: Side, what: &str, d: Duration) {
        self.timings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!(
                "{} {what} {:.1}",
                side.name(),
                d.as_secs_f64() * 1e3
            ));
    }

    fn diag(&self, line: String) {
        self.diagnostics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }
}

/// One peer's handle on the test: its side, addresses, the barrier and the shared failure flag.
#[derive(Debug)]
pub struct Peer<'a> {
    side: Side,
    family: Family,
    link: Link,
    shared: &'a Shared,
    capture: Option<&'a Capture>,
    port: Cell<u16>,
    netns_inode: u64,
    slow_factor: u32,
}

impl Peer<'_> {
    /// This peer's side.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The test's address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// This peer's main address (kernel `this_ip_addr`).
    pub fn local_addr(&self) -> IpAddr {
        match self.side {
            Side::Server => self.family.server_addr(),
            Side::Client => self.family.client_addr(),
        }
    }

    /// The other peer's main address (kernel `this_ip_dest`).
    pub fn remote_addr(&self) -> IpAddr {
        match self.side {
            Side::Server => self.family.client_addr(),
            Side::Client => self.family.server_addr(),
        }
    }

    /// Inode of this peer's network namespace (for leak checks).
    pub fn netns_inode(&self) -> u64 {
        self.netns_inode
    }

    /// Interface indexes in this peer's namespace.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The test's hard deadline.
    pub fn test_deadline(&self) -> Instant {
        self.shared.deadline
    }

    /// [`TEST_TIMEOUT`] scaled for slow machines: how long to wait for things that should work.
    pub fn timeout(&self) -> Duration {
        TEST_TIMEOUT * self.slow_factor.max(1)
    }

    /// `now + timeout()`, capped by the test's deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline_in(self.timeout())
    }

    /// `now + d`, but never past the test's deadline.
    pub fn deadline_in(&self, d: Duration) -> Instant {
        (Instant::now() + d).min(self.shared.deadline)
    }

    /// The port of the current sub-case.
    pub fn port(&self) -> u16 {
        self.port.get()
    }

    /// Move to the next sub-case's port and return it (both sides must call it in lockstep).
    pub fn next_port(&self) -> u16 {
        let p = self.port.get() + 1;
        self.port.set(p);
        p
    }

    /// Whether the other peer has failed.
    pub fn peer_failed(&self) -> bool {
        self.shared.lock().failed.is_some_and(|s| s != self.side)
    }

    /// Mark this side as failed now (the runner also does it when the function returns an
    /// error), waking the other side's waits.
    pub fn abort(&self) {
        self.shared.set_failed(self.side);
    }

    /// Wait until the other peer also calls `sync()` (kernel `synchronize_threads()`).
    ///
    /// # Errors
    /// [`Failure::PeerFailed`] when the other side failed, a failure at the test's deadline.
    pub fn sync(&self) -> PeerResult {
        let mut st = self.shared.lock();
        if st.failed.is_some() {
            return Err(Failure::PeerFailed);
        }
        let generation = st.barrier_generation;
        st.barrier_arrived += 1;
        if st.barrier_arrived == 2 {
            st.barrier_arrived = 0;
            st.barrier_generation += 1;
            self.shared.cv.notify_all();
            return Ok(());
        }
        loop {
            if st.barrier_generation != generation {
                return Ok(());
            }
            if st.failed.is_some() {
                return Err(Failure::PeerFailed);
            }
            if st.done[self.side.other().index()] {
                return Err(failure!(
                    "{}: the {} finished without reaching the barrier",
                    self.side.name(),
                    self.side.other().name()
                ));
            }
            let now = Instant::now();
            if now >= self.shared.deadline {
                return Err(failure!(
                    "{}: the other peer did not reach the barrier in time",
                    self.side.name()
                ));
            }
            let (g, _) = self
                .shared
                .cv
                .wait_timeout(st, self.shared.deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            st = g;
        }
    }

    /// Tell the other peer that something it waits for happened.
    pub fn signal(&self) {
        let mut st = self.shared.lock();
        st.signals[self.side.index()] += 1;
        self.shared.cv.notify_all();
    }

    /// How many times the other peer called [`Peer::signal`].
    pub fn peer_signals(&self) -> u64 {
        self.shared.lock().signals[self.side.other().index()]
    }

    /// Poll `f` until it returns `Some`, with a short, growing interval (200 µs to 5 ms), and
    /// never shorter than `f` itself took: a check that costs a millisecond (a procfs MIB file
    /// under TCG) must not keep a one-CPU guest busy polling, slowing what it waits for.
    /// Returns `Ok(None)` at `deadline`; returns at once with [`Failure::PeerFailed`] when the
    /// other side fails. This is the kernel's `test_skpair_wait_poll`: use it, never `sleep`.
    ///
    /// # Errors
    /// [`Failure::PeerFailed`], or whatever `f` returns.
    pub fn wait_for<T>(
        &self,
        deadline: Instant,
        mut f: impl FnMut() -> PeerResult<Option<T>>,
    ) -> PeerResult<Option<T>> {
        let mut interval = Duration::from_micros(200);
        loop {
            let checked = Instant::now();
            if let Some(v) = f()? {
                return Ok(Some(v));
            }
            if self.peer_failed() {
                return Err(Failure::PeerFailed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let pause = interval.max(now - checked);
            std::thread::sleep(pause.min(deadline - now));
            interval = (interval * 2).min(Duration::from_millis(5));
        }
    }

    /// Add a diagnostic line to the test's report (printed as a KTAP `# ` line).
    pub fn diag(&self, line: impl fmt::Display) {
        self.shared.diag(format!("{}: {line}", self.side.name()));
    }

    /// The test's capture, when capturing is on (register keys there for the cross-check).
    pub fn capture(&self) -> Option<&Capture> {
        self.capture
    }
}

/// Run `server` and `client` in two fresh network namespaces joined by a veth pair, wait for
/// both, cross-check the captured traffic, and tear everything down.
pub fn run_pair<S, C>(cfg: &PairConfig, server: S, client: C) -> PairReport
where
    S: FnOnce(&Peer<'_>) -> PeerResult + Send,
    C: FnOnce(&Peer<'_>) -> PeerResult + Send,
{
    let start = Instant::now();
    let shared = Shared::new(start + cfg.timeout);
    let capture = cfg.capture.clone().map(Capture::new);
    let (ns_tx, ns_rx) = mpsc::channel::<NetnsFd>();
    let (moved_tx, moved_rx) = mpsc::channel::<()>();
    let setup_done = Mutex::new(None::<Instant>);
    let mut results: [PeerResult; 2] = [Ok(()), Ok(())];
    let mut mibs: [Option<(NetnsMib, NetnsMib)>; 2] = [None, None];

    std::thread::scope(|s| {
        let shared = &shared;
        let capture = capture.as_ref();
        let setup_done = &setup_done;
        let client = s.spawn(move || {
            let setup = || -> PeerResult<Link> {
                let t0 = Instant::now();
                netns::enter_new_netns().or_fail("unshare(CLONE_NEWNET)")?;
                shared.timing(Side::Client, "netns", t0.elapsed());
                ns_tx
                    .send(NetnsFd::current().or_fail("open client netns")?)
                    .ok();
                drop(ns_tx);
                // Wait until the server moved our veth end here; it drops the sender on error.
                moved_rx.recv_timeout(cfg.timeout).map_err(|_| {
                    Failure::Setup("the server did not create the veth pair".into())
                })?;
                let t1 = Instant::now();
                let nl = Netlink::open().map_err(|e| Failure::Setup(e.to_string()))?;
                let link = topology::setup_client(&nl, &cfg.topology)
                    .map_err(|e| Failure::Setup(e.to_string()))?;
                shared.timing(Side::Client, "links", t1.elapsed());
                let t2 = Instant::now();
                nl.wait_oper_up(link.veth_index, shared.deadline)
                    .map_err(|e| Failure::Setup(e.to_string()))?;
                shared.timing(Side::Client, "carrier", t2.elapsed());
                Ok(link)
            };
            run_side(
                Side::Client,
                cfg,
                shared,
                capture,
                setup,
                client,
                setup_done,
            )
        });
        let server = s.spawn(move || {
            let setup = || -> PeerResult<Link> {
                let t0 = Instant::now();
                netns::enter_new_netns().or_fail("unshare(CLONE_NEWNET)")?;
                shared.timing(Side::Server, "netns", t0.elapsed());
                let client_ns = ns_rx.recv_timeout(cfg.timeout).map_err(|_| {
                    Failure::Setup("the client thread did not create its netns".into())
                })?;
                let t1 = Instant::now();
                let nl = Netlink::open().map_err(|e| Failure::Setup(e.to_string()))?;
                let link = topology::setup_server(&nl, &client_ns, &cfg.topology)
                    .map_err(|e| Failure::Setup(e.to_string()))?;
                drop(client_ns);
                moved_tx.send(()).ok();
                shared.timing(Side::Server, "links", t1.elapsed());
                let t2 = Instant::now();
                nl.wait_oper_up(link.veth_index, shared.deadline)
                    .map_err(|e| Failure::Setup(e.to_string()))?;
                shared.timing(Side::Server, "carrier", t2.elapsed());
                if let Some(c) = capture {
                    c.start(link.veth_index)
                        .map_err(|e| Failure::Setup(format!("capture: {e}")))?;
                }
                Ok(link)
            };
            run_side(
                Side::Server,
                cfg,
                shared,
                capture,
                setup,
                server,
                setup_done,
            )
        });
        let (r0, m0) = server
            .join()
            .unwrap_or_else(|_| (Err(failure!("server: runner panicked")), None));
        let (r1, m1) = client
            .join()
            .unwrap_or_else(|_| (Err(failure!("client: runner panicked")), None));
        results = [r0, r1];
        mibs = [m0, m1];
    });

    let setup_time = setup_done
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .map_or(Duration::ZERO, |t| t - start);
    let mut outcome = combine(&results);
    let mut diagnostics = shared
        .diagnostics
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let xcheck = capture.map(|c| c.finish(cfg.family, &mibs));
    if let Some(x) = &xcheck {
        diagnostics.push(format!(
            "xcheck: {} segments verified by tcpao-refimpl",
            x.verified
        ));
        diagnostics.push(format!(
            "xcheck: {} kernel-signed segments checked field by field (KeyID, RNextKeyID, length, padding, options)",
            x.fields_checked
        ));
        diagnostics.extend(x.notes.iter().cloned());
        if let Some(err) = &x.failure {
            outcome = match outcome {
                Outcome::Fail(f) => Outcome::Fail(format!("{f}; {err}")),
                Outcome::Pass | Outcome::XFail(_) => Outcome::Fail(err.clone()),
                Outcome::Skip(s) => Outcome::Skip(s),
            };
        }
    }
    let setup_breakdown = shared
        .timings
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .join(", ");
    PairReport {
        outcome,
        diagnostics,
        setup_time,
        setup_breakdown,
        total_time: start.elapsed(),
        xcheck,
    }
}

type SideResult = (PeerResult, Option<(NetnsMib, NetnsMib)>);

fn run_side<F>(
    side: Side,
    cfg: &PairConfig,
    shared: &Shared,
    capture: Option<&Capture>,
    setup: impl FnOnce() -> PeerResult<Link>,
    f: F,
    setup_done: &Mutex<Option<Instant>>,
) -> SideResult
where
    F: FnOnce(&Peer<'_>) -> PeerResult,
{
    let link = match catch_unwind(AssertUnwindSafe(setup)) {
        Ok(Ok(link)) => link,
        Ok(Err(e)) => {
            shared.set_failed(side);
            return (Err(e), None);
        }
        Err(p) => {
            shared.set_failed(side);
            return (
                Err(Failure::Setup(format!(
                    "{} setup panicked: {}",
                    side.name(),
                    panic_text(&p)
                ))),
                None,
            );
        }
    };
    let netns_inode = netns::current_netns_inode().unwrap_or(0);
    let peer = Peer {
        side,
        family: cfg.family,
        link,
        shared,
        capture,
        port: Cell::new(FIRST_PORT),
        netns_inode,
        slow_factor: cfg.slow_factor,
    };
    let before = NetnsMib::read();
    // Both namespaces are ready once both sides pass this barrier.
    if let Err(e) = peer.sync() {
        shared.set_failed(side);
        return (Err(e), None);
    }
    {
        let mut t = setup_done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        t.get_or_insert_with(Instant::now);
    }
    let result = match catch_unwind(AssertUnwindSafe(|| f(&peer))) {
        Ok(r) => r,
        Err(p) => Err(failure!("{} panicked: {}", side.name(), panic_text(&p))),
    };
    if result.is_err() {
        shared.set_failed(side);
    }
    {
        let mut st = shared.lock();
        st.done[side.index()] = true;
        shared.cv.notify_all();
    }
    let after = NetnsMib::read();
    let mibs = match (before, after) {
        (Ok(b), Ok(a)) => Some((b, a)),
        _ => None,
    };
    (result, mibs)
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

fn combine(results: &[PeerResult; 2]) -> Outcome {
    let mut fails = Vec::new();
    let mut skip = None;
    let mut xfail = None;
    for (r, side) in results.iter().zip([Side::Server, Side::Client]) {
        match r {
            Ok(()) | Err(Failure::PeerFailed) => {}
            Err(Failure::Fail(s)) => fails.push(format!("{}: {s}", side.name())),
            Err(Failure::Setup(s)) => fails.push(format!("{} setup: {s}", side.name())),
            Err(Failure::Skip(s)) => skip = Some(s.clone()),
            Err(Failure::XFail(s)) => xfail = Some(format!("{}: {s}", side.name())),
        }
    }
    if !fails.is_empty() {
        return Outcome::Fail(fails.join("; "));
    }
    if let Some(s) = skip {
        return Outcome::Skip(s);
    }
    if let Some(x) = xfail {
        return Outcome::XFail(x);
    }
    if results
        .iter()
        .all(|r| matches!(r, Err(Failure::PeerFailed)))
    {
        return Outcome::Fail("both peers reported the other as failed".into());
    }
    Outcome::Pass
}

/// Convert an I/O error into a test failure with the failing operation named.
pub fn io_fail(what: &str, e: &io::Error) -> Failure {
    Failure::Fail(format!("{what}: {e}"))
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! `race`: TCP-AO key operations raced against traffic and against each other, with the race
//! window made deliberate by [`crate::fzsync`] (LTP's fuzzy sync): each case has two actors, A
//! and B, whose critical sections are timed, and random start offsets spread over the measured
//! window so that A-before-B, B-before-A and every overlap in between are reached. The
//! statistics end up in the KTAP diagnostics (`fzsync: … A-before-B 312, B-before-A 298,
//! overlap 1190 …`).
//!
//! These programs are hidden from the default run (they are long): `run --race` runs them all
//! (`--race FILTER…` some), `run race/…` names them, and `run --race-smoke` adds a short version
//! of each (a dozen iterations) to whatever else is selected, which is what CI's VM pass does.
//! They are meant for the lab's `debug` kernel (KASAN, lockdep, kmemleak) with two vCPUs, see
//! `docs/selftests/race.md`.
//!
//! Every case asserts what userspace can see: the errnos the kernel documents and no others, the
//! data streams intact, the counters that must not move, the key state after each iteration,
//! and the capture cross-checked by tcpao-refimpl. It also reads the kernel log written while
//! it ran (`/dev/kmsg`): any `BUG:`, `WARNING:`, `KASAN:`, lockdep, RCU, refcount, hung-task or
//! kmemleak report fails the case and is copied into its diagnostics. In the full profile a
//! case also fails when the window was not covered (one of the three orders never happened).
//!
//! | case | A | B |
//! |---|---|---|
//! | `delete-current` | server deletes its Current_key (forced, new current given) | client's segments asking for that key (RNextKeyID) arrive |
//! | `delete-rnext` | server deletes its RNext_key (forced), the key the client signs with | client's segments signed with it arrive |
//! | `delete-async` | listener deletes a key with `del_async` (it was set current/rnext while CLOSE) | SYNs signed with it arrive |
//! | `listener-keys` | listener adds or deletes a second key | SYNs arrive, children are accepted |
//! | `rnext-vs-request` | server changes its RNext_key | client's segments with a new RNextKeyID arrive |
//! | `close-in-flight` | client `close()`s | server's data arrives; late RST/FIN/ACK must be signed |
//! | `connect-vs-delete` | `connect()` | `TCP_AO_DEL_KEY` on the same socket |
//! | `reconnect-vs-rx` | client disconnects and connects to another server address | server's segments asking for a key the reconnect drops arrive |
//! | `md5-ao-connect` | `connect()` with TCP-MD5 and TCP-AO keys (one side is dropped) | forged segments of the dropped kind arrive |
//! | `static-key` | the first TCP-AO key in the system is added (the static branch flips) | unsigned traffic runs through the patched branches |
//! | `repair-vs-traffic` | `TCP_AO_REPAIR` rewrites ISNs/SNEs and the traffic keys | segments arrive |
//! | `get-keys-vs-delete` | a key is deleted or re-added | `TCP_AO_GET_KEYS` lists the keys |

mod close;
mod connect;
mod keys;
pub mod kmsg;
mod listener;
mod static_key;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::Socket;
use tcpao_sys::uapi::TCP_CLOSE;
use tcpao_sys::{AoInfo, TcpAoExt};

use crate::counters::{Counters, NetnsMib};
use crate::failure;
use crate::fzsync::{Pair, Profile};
use crate::harness;
use crate::outcome::Outcome;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::probe::Feature;
use crate::programs::run_case;
use crate::registry::{Ctx, Test};
use crate::sockets::{self, TestKey};
use crate::topology::{Family, TopologyConfig};

/// The program name.
pub const PROGRAM: &str = "race";

/// Every race case, both families, hidden from the default run.
pub fn tests() -> Vec<Test> {
    let mut v = vec![concurrency_test()];
    v.extend(keys::tests());
    v.extend(listener::tests());
    v.extend(close::tests());
    v.extend(connect::tests());
    v.extend(static_key::tests());
    v
}

/// The tests a run selects (`run`'s `--race` and `--race-smoke`): without either flag, the
/// usual selection (race tests only when a filter names `race/`); with `--race`, only the race
/// tests (those matching a FILTER, or all); with `--race-smoke` alone, the usual selection plus
/// the race tests (those matching a FILTER, or all).
pub fn select(
    all: Vec<Test>,
    filters: &[String],
    exact: bool,
    race: bool,
    smoke: bool,
) -> Vec<Test> {
    let is_race = |t: &Test| t.program() == PROGRAM;
    let matching = |t: &Test| {
        filters.is_empty() || filters.iter().any(|f| harness::matches(f, t.name(), exact))
    };
    if race {
        return all
            .into_iter()
            .filter(|t| is_race(t) && matching(t))
            .collect();
    }
    if !smoke {
        return harness::select(all, filters, exact);
    }
    let usual: Vec<String> = harness::select(all.clone(), filters, exact)
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    all.into_iter()
        .filter(|t| usual.iter().any(|n| n == t.name()) || (is_race(t) && matching(t)))
        .collect()
}

/// What both actors of one run of a case share: the fuzzy-sync pair, the profile, a tally of
/// outcomes for the diagnostics, the kernel log, and the case's own state.
#[derive(Debug)]
pub struct Race<S> {
    /// A and B.
    pub pair: Pair,
    /// Full or smoke.
    pub profile: Profile,
    /// Outcome counts (`"del ok"`, `"del EBUSY"`, …), printed after the run.
    pub tally: Tally,
    /// The case's state.
    pub state: S,
    kernel: Mutex<KernelLog>,
}

/// The kernel log of a run: what was read so far, and the iteration after which a report
/// first showed up.
#[derive(Debug, Default)]
struct KernelLog {
    reader: Option<kmsg::Kmsg>,
    messages: Vec<String>,
    first_report: Option<u64>,
    /// In the `vm` guest only: the case's progress, written into the kernel log.
    progress: Option<(String, kmsg::Progress)>,
}

/// How often a case in the `vm` guest writes its progress into the kernel log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl<S> Race<S> {
    /// A's loop condition: [`Pair::run_a`], after a look at the kernel log. A report (KASAN,
    /// lockdep, WARN, …) ends the run at once, so the statistics say how many iterations it
    /// took to appear.
    pub fn run_a(&self) -> bool {
        let iterations = self.pair.stats().iterations;
        {
            let mut k = self
                .kernel
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(r) = k.reader.as_mut() {
                let new = r.drain();
                let found = !kmsg::reports(&new).is_empty();
                k.messages.extend(new);
                if found && k.first_report.is_none() {
                    k.first_report = Some(iterations);
                    self.pair.abort();
                }
            }
            if let Some((name, p)) = k.progress.as_mut() {
                p.note(std::time::Instant::now(), || {
                    let s = self.pair.stats();
                    format!(
                        "{name}: {iterations} iterations: A-before-B {}, B-before-A {}, overlap {}",
                        s.a_before_b, s.b_before_a, s.overlap
                    )
                });
            }
        }
        self.pair.run_a()
    }
}

/// Named counts, printed as one diagnostic line.
#[derive(Debug, Default)]
pub struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    /// Count one `what`.
    pub fn add(&self, what: impl Into<String>) {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry(what.into()).or_default() += 1;
    }

    /// How many `what` were counted.
    pub fn get(&self, what: &str) -> u64 {
        let m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.get(what).copied().unwrap_or(0)
    }

    /// `what count, …`.
    pub fn line(&self) -> String {
        let m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A race case, registered for both families.
#[derive(Debug, Clone)]
pub(crate) struct RaceTest {
    case: &'static str,
    a: &'static str,
    b: &'static str,
    requires: Vec<Feature>,
}

impl RaceTest {
    /// Case `case`; `a` and `b` say what the actors do (printed with the statistics).
    pub(crate) fn new(case: &'static str, a: &'static str, b: &'static str) -> Self {
        Self {
            case,
            a,
            b,
            requires: vec![Feature::Netns, Feature::Veth, Feature::TcpAo],
        }
    }

    /// Also needs these features.
    pub(crate) fn requires(mut self, f: &[Feature]) -> Self {
        self.requires.extend_from_slice(f);
        self
    }

    /// Register `race/ipv4/case` and `race/ipv6/case`, hidden.
    pub(crate) fn build<S, FS, FC>(self, server: FS, client: FC) -> Vec<Test>
    where
        S: Default + Send + Sync + 'static,
        FS: Fn(&Peer<'_>, &Race<S>) -> PeerResult + Send + Sync + Copy + 'static,
        FC: Fn(&Peer<'_>, &Race<S>) -> PeerResult + Send + Sync + Copy + 'static,
    {
        Family::ALL
            .into_iter()
            .map(|family| {
                let mut req = self.requires.clone();
                if family == Family::Ipv6 {
                    req.push(Feature::Ipv6);
                }
                let (a, b) = (self.a, self.b);
                let cfg = crate::fzsync::profile().config();
                // The harness scales this by the slow factor; the run itself is bounded by
                // max_time, setup and the last iteration by the rest.
                let timeout = cfg.max_time + Duration::from_secs(60);
                Test::new(
                    format!("{PROGRAM}/{}/{}", family.name(), self.case),
                    move |ctx: &Ctx| run_race(ctx, family, a, b, server, client),
                )
                .requires(&req)
                .timeout(timeout)
                .hidden()
            })
            .collect()
    }
}

fn run_race<S, FS, FC>(
    ctx: &Ctx,
    family: Family,
    a: &str,
    b: &str,
    server: FS,
    client: FC,
) -> crate::outcome::TestResult
where
    S: Default + Send + Sync,
    FS: Fn(&Peer<'_>, &Race<S>) -> PeerResult + Send + Sync,
    FC: Fn(&Peer<'_>, &Race<S>) -> PeerResult + Send + Sync,
{
    let profile = crate::fzsync::profile();
    let mut cfg = profile.config();
    cfg.deadline = ctx.timeout();
    ctx.diag(format!(
        "profile {} (at most {} iterations, {} s): A = {a}; B = {b}",
        profile.name(),
        cfg.max_iterations,
        cfg.max_time.as_secs()
    ));
    let reader = match kmsg::Kmsg::open() {
        Ok(k) => Some(k),
        Err(e) => {
            ctx.diag(format!(
                "cannot read the kernel log (/dev/kmsg: {e}): kernel reports are left to the vm runner"
            ));
            None
        }
    };
    // Only in the guest: on a host the kernel log is not ours to write to.
    let progress = std::env::var_os("TCPAO_IN_VM")
        .and_then(|_| kmsg::Progress::open(PROGRESS_EVERY).ok())
        .map(|p| (ctx.name().to_owned(), p));
    let race = Race {
        pair: Pair::new(cfg),
        profile,
        tally: Tally::default(),
        state: S::default(),
        kernel: Mutex::new(KernelLog {
            reader,
            progress,
            ..KernelLog::default()
        }),
    };
    let outcome = run_case(
        ctx,
        family,
        &TopologyConfig::default(),
        |p| server(p, &race),
        |p| client(p, &race),
    )?;
    let stats = race.pair.stats();
    ctx.diag(&stats);
    let tally = race.tally.line();
    if !tally.is_empty() {
        ctx.diag(format!("outcomes: {tally}"));
    }
    let mut log = race
        .kernel
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(r) = log.reader.as_mut() {
        let rest = r.drain();
        log.messages.extend(rest);
    }
    let report = kmsg::reports(&log.messages);
    if !report.is_empty() {
        for l in &report {
            ctx.diag(format!("kernel: {l}"));
        }
        let when = log.first_report.map_or_else(
            || format!("after the run ({} iterations)", stats.iterations),
            |n| format!("after iteration {n}"),
        );
        return Ok(Outcome::fail(format!(
            "the kernel reported a problem {when}: {}",
            report[0]
        )));
    }
    if outcome != Outcome::Pass {
        return Ok(outcome);
    }
    if stats.iterations == 0 {
        return Ok(Outcome::fail("no iteration completed"));
    }
    if profile == Profile::Full {
        if let Some(m) = stats.missing() {
            return Ok(Outcome::fail(format!(
                "the race window was not covered in {} iterations: no {m}",
                stats.iterations
            )));
        }
    }
    Ok(Outcome::Pass)
}

/// `race/any/concurrency`: how parallel the machine's CPUs really are, for reading the other
/// cases' statistics (an "overlap" of two sections means real concurrency only when the CPUs
/// run at the same time). Two threads pinned to two CPUs count and watch each other
/// ([`crate::fzsync::probe_concurrency`]). Fails when neither ever saw the other move (the two
/// CPUs never ran at once nor took turns while the probe ran); skips on one CPU.
fn concurrency_test() -> Test {
    Test::new(format!("{PROGRAM}/any/concurrency"), |ctx: &Ctx| {
        let cpus = crate::fzsync::online_cpus();
        if cpus.len() < 2 {
            return Ok(Outcome::skip(format!(
                "one CPU ({cpus:?}): nothing can run concurrently; boot the guest with --cpus 2"
            )));
        }
        let secs = match crate::fzsync::profile() {
            Profile::Full => 3,
            Profile::Smoke => 1,
        };
        let c = crate::fzsync::probe_concurrency(Duration::from_secs(secs));
        ctx.diag(&c);
        if c.advanced == 0 {
            return Ok(Outcome::fail(
                "neither thread ever saw the other's counter move: the two CPUs did not run",
            ));
        }
        Ok(Outcome::Pass)
    })
    .timeout(Duration::from_secs(30))
    .hidden()
}

// ===== Helpers shared by the cases =====

/// Lower `tcp_rto_min_us` in this peer's namespace to 5 ms, so that a segment a case made the
/// peer drop (its key was just deleted) is retransmitted quickly.
///
/// # Errors
/// When the sysctl cannot be written.
pub(crate) fn fast_retransmits() -> PeerResult {
    crate::netns::sysctl_write("net/ipv4/tcp_rto_min_us", "5000")
        .or_fail("setting net.ipv4.tcp_rto_min_us")
}

/// Key `id:id` for the peer's address.
pub(crate) fn key(p: &Peer<'_>, id: u8) -> TestKey {
    TestKey::new(p.remote_addr(), id, id)
}

/// The errno of a tcpao-sys error, as a name for tallies and messages.
pub(crate) fn errno_name(e: &tcpao_sys::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n)
            .to_string()
            .split(':')
            .next()
            .unwrap_or("?")
            .to_owned(),
        None => e.to_string(),
    }
}

/// `TCP_AO_INFO` of `sk`, which must have TCP-AO state.
///
/// # Errors
/// A failure sentence.
pub(crate) fn info(sk: &impl AsFd) -> PeerResult<AoInfo> {
    sk.ao_info()
        .or_fail("getsockopt(TCP_AO_INFO) failed")?
        .ok_or_else(|| failure!("the socket has no TCP-AO state"))
}

/// Wait until `TCP_AO_INFO` of `sk` reports Current_key `current` and RNext_key `rnext` (the
/// peer's RNextKeyID moves Current_key when its segments arrive).
///
/// # Errors
/// A failure sentence at the deadline.
pub(crate) fn wait_keys(
    p: &Peer<'_>,
    sk: &Socket,
    current: u8,
    rnext: u8,
    when: &str,
) -> PeerResult {
    let mut last = AoInfo::default();
    let got = p.wait_for(p.deadline(), || {
        last = info(sk)?;
        Ok((last.current_key == Some(current) && last.rnext_key == Some(rnext)).then_some(()))
    })?;
    got.ok_or_else(|| {
        failure!(
            "{when}: the {} should have Current_key {current} and RNext_key {rnext}, TCP_AO_INFO says {:?} and {:?}",
            p.side().name(),
            last.current_key,
            last.rnext_key
        )
    })
}

/// Byte `i` of the pattern streams.
pub(crate) fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// One direction of a pattern stream: the sender counts what it wrote, the receiver what it
/// read and checked.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    sent: AtomicU64,
}

impl Stream {
    /// Bytes written so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Write `n` pattern bytes with one `write()` (must fit the send buffer; used inside a
    /// critical section, so it never waits).
    ///
    /// # Errors
    /// When the write fails or is short.
    pub(crate) fn write_now(&self, mut sk: &Socket, n: usize) -> Result<(), String> {
        let start = self.sent();
        let buf: Vec<u8> = (0..n as u64).map(|i| pattern(start + i)).collect();
        match sk.write(&buf) {
            Ok(w) => {
                self.sent.fetch_add(w as u64, Ordering::SeqCst);
                if w == n {
                    Ok(())
                } else {
                    Err(format!("write() sent {w} of {n} bytes"))
                }
            }
            Err(e) => Err(format!("write() failed: {e}")),
        }
    }

    /// Write up to `n` pattern bytes with one `write()`; what fits (0 when the buffer is full).
    ///
    /// # Errors
    /// When the write fails.
    pub(crate) fn write_some(&self, mut sk: &Socket, n: usize) -> Result<usize, String> {
        let start = self.sent();
        let buf: Vec<u8> = (0..n as u64).map(|i| pattern(start + i)).collect();
        match sk.write(&buf) {
            Ok(w) => {
                self.sent.fetch_add(w as u64, Ordering::SeqCst);
                Ok(w)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(format!("write() failed: {e}")),
        }
    }

    /// Write `n` pattern bytes, waiting for room.
    ///
    /// # Errors
    /// A failure sentence.
    pub(crate) fn write(&self, p: &Peer<'_>, sk: &Socket, n: usize) -> PeerResult {
        let start = self.sent();
        let buf: Vec<u8> = (0..n as u64).map(|i| pattern(start + i)).collect();
        sockets::write_all(p, sk, &buf, p.deadline())?;
        self.sent.fetch_add(n as u64, Ordering::SeqCst);
        Ok(())
    }
}

/// The receiving end of a [`Stream`].
#[derive(Debug, Default)]
pub(crate) struct Reader {
    got: u64,
}

impl Reader {
    /// Read and check whatever has arrived, without waiting (for a reader thread, which has no
    /// [`Peer`]).
    ///
    /// # Errors
    /// A wrong byte, EOF or a read error.
    pub(crate) fn read_available(&mut self, mut sk: &Socket) -> Result<(), String> {
        let mut buf = vec![0u8; 65536];
        loop {
            match sk.read(&mut buf) {
                Ok(0) => return Err(format!("the stream ended after {} bytes", self.got)),
                Ok(n) => {
                    for (j, b) in buf[..n].iter().enumerate() {
                        let want = pattern(self.got + j as u64);
                        if *b != want {
                            return Err(format!(
                                "byte {} of the stream is {b}, expected {want}",
                                self.got + j as u64
                            ));
                        }
                    }
                    self.got += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read() failed after {} bytes: {e}", self.got)),
            }
        }
    }

    /// Read and check the pattern until `total` bytes arrived.
    ///
    /// # Errors
    /// A failure sentence: a wrong byte, EOF, an error, or the deadline.
    pub(crate) fn read_until(&mut self, p: &Peer<'_>, mut sk: &Socket, total: u64) -> PeerResult {
        let mut buf = vec![0u8; 65536];
        let deadline = p.deadline();
        while self.got < total {
            match sk.read(&mut buf) {
                Ok(0) => {
                    return Err(failure!(
                        "{}: the stream ended after {} of {total} bytes",
                        p.side().name(),
                        self.got
                    ));
                }
                Ok(n) => {
                    for (j, b) in buf[..n].iter().enumerate() {
                        let want = pattern(self.got + j as u64);
                        if *b != want {
                            return Err(failure!(
                                "{}: byte {} of the stream is {b}, expected {want}",
                                p.side().name(),
                                self.got + j as u64
                            ));
                        }
                    }
                    self.got += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !sockets::wait_fd(p, sk, nix::poll::PollFlags::POLLIN, deadline, || false)? {
                        return Err(failure!(
                            "{}: {} of {total} bytes of the stream arrived within {:?}",
                            p.side().name(),
                            self.got,
                            p.timeout()
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(failure!(
                        "{}: read() failed after {} bytes: {e}",
                        p.side().name(),
                        self.got
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Both directions of a connection between the two peers of a case.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    /// Client to server.
    pub c2s: Stream,
    /// Server to client.
    pub s2c: Stream,
}

impl Streams {
    /// This peer's outgoing stream.
    pub(crate) fn out(&self, p: &Peer<'_>) -> &Stream {
        match p.side() {
            crate::topology::Side::Server => &self.s2c,
            crate::topology::Side::Client => &self.c2s,
        }
    }

    /// The other peer's outgoing stream (this peer reads it).
    pub(crate) fn inc(&self, p: &Peer<'_>) -> &Stream {
        match p.side() {
            crate::topology::Side::Server => &self.c2s,
            crate::topology::Side::Client => &self.s2c,
        }
    }

    /// Both peers call this at the same point: each writes `n` bytes, then reads everything
    /// the other wrote so far. Segments each way carry the sender's current KeyID and
    /// RNextKeyID, so key state requested by either side propagates.
    ///
    /// # Errors
    /// A failure sentence.
    pub(crate) fn ping(&self, p: &Peer<'_>, sk: &Socket, rd: &mut Reader, n: usize) -> PeerResult {
        self.out(p).write(p, sk, n)?;
        p.sync()?;
        rd.read_until(p, sk, self.inc(p).sent())
    }
}

/// Counters a case forbids to move, checked between two snapshots of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moved {
    /// `TCPAOBad`, socket `pkt_bad`.
    Bad,
    /// `TCPAOKeyNotFound`, socket `pkt_key_not_found`.
    KeyNotFound,
    /// `TCPAORequired`, socket `pkt_ao_required`.
    AoRequired,
}

impl Moved {
    fn netns(self) -> &'static str {
        match self {
            Moved::Bad => "TCPAOBad",
            Moved::KeyNotFound => "TCPAOKeyNotFound",
            Moved::AoRequired => "TCPAORequired",
        }
    }

    fn sock(self, c: &Counters) -> u64 {
        c.sock.map_or(0, |s| match self {
            Moved::Bad => s.bad,
            Moved::KeyNotFound => s.key_not_found,
            Moved::AoRequired => s.ao_required,
        })
    }
}

/// Fail when any of `forbidden` moved between `before` and `after` (netns and socket).
///
/// # Errors
/// A failure sentence naming each counter and its values.
pub(crate) fn unchanged(
    p: &Peer<'_>,
    before: &Counters,
    after: &Counters,
    forbidden: &[Moved],
) -> PeerResult {
    let mut bad = Vec::new();
    for m in forbidden {
        let (b, a) = (before.netns.get(m.netns()), after.netns.get(m.netns()));
        if a != b {
            bad.push(format!("{} {b} => {a}", m.netns()));
        }
        let (b, a) = (m.sock(before), m.sock(after));
        if a != b {
            bad.push(format!("socket {:?} {b} => {a}", m));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(failure!(
            "{}: counters that must not move did: {}",
            p.side().name(),
            bad.join(", ")
        ))
    }
}

/// The netns MIB of the calling peer, for counters a case reports but does not forbid.
pub(crate) fn mib() -> PeerResult<NetnsMib> {
    NetnsMib::read().or_fail("reading the netns MIB counters")
}

/// Close `sk` with an RST (`SO_LINGER` 0): no TIME-WAIT socket (it would keep its TCP-AO
/// state, and the static key, for a minute). Only one end of a connection does this; the
/// other waits for the RST ([`close_after_reset`]): two RSTs that cross would each meet the
/// other side's listener, which checks an ACK without SYN as a possible syncookie ACK and
/// counts it `TCPAOBad`.
pub(crate) fn abort_close(sk: Socket) {
    let _ = sk.set_linger(Some(Duration::ZERO));
    drop(sk);
}

/// Wait until the peer's RST closed `sk` (see [`abort_close`]), then close it.
///
/// # Errors
/// A failure sentence when it is not closed by the deadline.
pub(crate) fn close_after_reset(p: &Peer<'_>, sk: Socket) -> PeerResult {
    let mut state = 0;
    let closed = p.wait_for(p.deadline(), || {
        state = tcpao_sys::repair::tcp_info(&sk)
            .or_fail("TCP_INFO failed")?
            .state;
        Ok((state == TCP_CLOSE).then_some(()))
    })?;
    if closed.is_none() {
        return Err(failure!(
            "{}: the connection is still in TCP state {state} {:?} after the other peer reset it",
            p.side().name(),
            p.timeout()
        ));
    }
    drop(sk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Test]) -> Vec<&str> {
        v.iter().map(Test::name).collect()
    }

    fn fake() -> Vec<Test> {
        vec![
            Test::new("connect/ipv4/a", |_| Ok(Outcome::Pass)),
            Test::new("race/ipv4/x", |_| Ok(Outcome::Pass)).hidden(),
            Test::new("race/ipv6/x", |_| Ok(Outcome::Pass)).hidden(),
            Test::new("selftest-self/any/hang", |_| Ok(Outcome::Pass)).hidden(),
        ]
    }

    #[test]
    fn race_tests_are_hidden_and_named() {
        let t = tests();
        assert!(!t.is_empty());
        assert!(t.iter().all(|t| t.is_hidden() && t.program() == PROGRAM));
        let fam = |f: &str| {
            t.iter()
                .filter(|t| t.name().split('/').nth(1) == Some(f))
                .count()
        };
        assert_eq!(
            fam("ipv4"),
            fam("ipv6"),
            "every case is registered for both families"
        );
        assert_eq!(
            fam("ipv4") + fam("ipv6") + 1,
            t.len(),
            "and the concurrency probe"
        );
    }

    #[test]
    fn selection_flags() {
        assert_eq!(
            names(&select(fake(), &[], false, false, false)),
            ["connect/ipv4/a"]
        );
        assert_eq!(
            names(&select(fake(), &["race/".into()], false, false, false)),
            ["race/ipv4/x", "race/ipv6/x"]
        );
        assert_eq!(
            names(&select(fake(), &[], false, true, false)),
            ["race/ipv4/x", "race/ipv6/x"]
        );
        assert_eq!(
            names(&select(fake(), &["ipv6".into()], false, true, false)),
            ["race/ipv6/x"]
        );
        assert_eq!(
            names(&select(fake(), &[], false, false, true)),
            ["connect/ipv4/a", "race/ipv4/x", "race/ipv6/x"]
        );
        assert_eq!(
            names(&select(fake(), &["ipv4".into()], false, false, true)),
            ["connect/ipv4/a", "race/ipv4/x"]
        );
        assert_eq!(
            names(&select(fake(), &[], false, true, true)),
            ["race/ipv4/x", "race/ipv6/x"]
        );
    }

    #[test]
    fn tally_counts() {
        let t = Tally::default();
        t.add("del ok");
        t.add("del ok");
        t.add("del EBUSY");
        assert_eq!(t.get("del ok"), 2);
        assert_eq!(t.line(), "del EBUSY 1, del ok 2");
    }
}

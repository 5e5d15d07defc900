// SPDX-License-Identifier: MIT OR Apache-2.0
//! The runner: selects tests, applies feature skips, runs each test in its own thread
//! (`--jobs` at a time) under a timeout, and prints KTAP in test-number order.
//!
//! Threads are the isolation unit: a test that moves into a network namespace does so for
//! its own thread only (`unshare(CLONE_NEWNET)` acts on the calling thread). A test that
//! overruns its timeout is reported `not ok … # TIMEOUT` and its thread is abandoned; the
//! process exit at the end of the run takes it down. A panicking body is a failure with the
//! panic message, never a crash of the run.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Once, mpsc};
use std::time::{Duration, Instant};

use crate::ktap::{Status, Summary, Totals, Writer};
use crate::outcome::Outcome;
use crate::probe::{Feature, Features};
use crate::registry::{Ctx, Test};

/// Per-test timeout when a test sets none (before slow-machine scaling).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Factor applied to timeouts when `KSFT_MACHINE_SLOW=yes`.
pub const SLOW_FACTOR: u32 = 3;

/// A slow factor of our own, which wins over `KSFT_MACHINE_SLOW`'s [`SLOW_FACTOR`]: `vm` sets
/// it to [`SLOW_FACTOR`] times a lab flavour's slowdown (a KASAN and lockdep kernel under TCG
/// took 14 to 38 s to make one network namespace in its first minute, 2026-12-03).
pub const SLOW_FACTOR_VAR: &str = "TCPAO_SLOW_FACTOR";

/// How to run a selection of tests.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Substring or glob filters over the stable names; empty selects every visible test.
    pub filters: Vec<String>,
    /// Filters must match whole names.
    pub exact: bool,
    /// Worker threads (tests in flight at once); 0 or 1 runs one at a time.
    pub jobs: usize,
    /// A timeout for every test, overriding the tests' own (`--timeout`).
    pub timeout: Option<Duration>,
    /// Keep packet captures here (`--save-pcaps`).
    pub save_pcaps: Option<PathBuf>,
    /// Benchmark mode (`--bench`).
    pub bench: bool,
    /// A missing TCP-AO fails the tests that need it instead of skipping them
    /// (`TCPAO_REQUIRE_TCP_AO=1`, set where TCP-AO must be there, as in the VM).
    pub require_tcp_ao: bool,
    /// Stop starting tests once this many have failed (`--max-failures`): the tests not
    /// started are reported as skipped with that reason. For runs that only need to know
    /// whether anything fails (mutation testing), where a broken kernel would otherwise run
    /// every test into its timeout.
    pub max_failures: Option<usize>,
}

/// Whether a result counts against [`RunOptions::max_failures`] (and the kernel's programs'
/// `upstream --max-failures`).
pub(crate) fn is_failure(s: &Status) -> bool {
    matches!(s, Status::Fail(_) | Status::Timeout(_) | Status::Error(_))
}

/// Timeout policy taken from the environment (kselftest conventions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutPolicy {
    /// Multiplier for tests' own timeouts: [`SLOW_FACTOR_VAR`] when set, else
    /// `KSFT_MACHINE_SLOW=yes` ⇒ [`SLOW_FACTOR`], else 1.
    pub slow: u32,
    /// `kselftest_override_timeout=N`: every test gets N seconds, unscaled.
    pub override_secs: Option<u64>,
}

impl TimeoutPolicy {
    /// Reads `KSFT_MACHINE_SLOW`, [`SLOW_FACTOR_VAR`] and `kselftest_override_timeout`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok();
        Self::from_vars(
            var("KSFT_MACHINE_SLOW").as_deref(),
            var(SLOW_FACTOR_VAR).as_deref(),
            var("kselftest_override_timeout").as_deref(),
        )
    }

    /// The policy for the given variable values. A factor that is not a number from 1 to 100
    /// is left out with a warning on stderr.
    pub fn from_vars(
        slow: Option<&str>,
        factor: Option<&str>,
        override_timeout: Option<&str>,
    ) -> Self {
        let factor = factor.and_then(|v| {
            let n = v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n));
            if n.is_none() {
                eprintln!("# {SLOW_FACTOR_VAR}={v:?} is not a number from 1 to 100: ignored");
            }
            n
        });
        let slow = match factor {
            Some(n) => n,
            None if slow.is_some_and(|v| v.eq_ignore_ascii_case("yes")) => SLOW_FACTOR,
            None => 1,
        };
        let override_secs = override_timeout
            .and_then(|v| v.trim().parse().ok())
            .filter(|n| *n > 0);
        TimeoutPolicy {
            slow,
            override_secs,
        }
    }

    /// The timeout a test runs under: `--timeout` wins, then the kselftest override, then
    /// the test's own (or the default) times the slow factor.
    pub fn effective(&self, test: Option<Duration>, cli: Option<Duration>) -> Duration {
        if let Some(t) = cli {
            return t;
        }
        if let Some(s) = self.override_secs {
            return Duration::from_secs(s);
        }
        test.unwrap_or(DEFAULT_TIMEOUT) * self.slow
    }
}

/// Matches `pattern` against `name`: glob (`*`, `?`) when it has wildcards, otherwise a
/// substring (or the whole name with `exact`).
pub fn matches(pattern: &str, name: &str, exact: bool) -> bool {
    if pattern.contains(['*', '?']) {
        glob(pattern.as_bytes(), name.as_bytes())
    } else if exact {
        pattern == name
    } else {
        name.contains(pattern)
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The tests a run selects, in registry order. Hidden tests need a filter that matches them
/// and spells out their program name.
pub fn select(tests: Vec<Test>, filters: &[String], exact: bool) -> Vec<Test> {
    tests
        .into_iter()
        .filter(|t| {
            if filters.is_empty() {
                return !t.is_hidden();
            }
            filters.iter().any(|f| {
                matches(f, t.name(), exact)
                    && (!t.is_hidden() || f.starts_with(&format!("{}/", t.program())))
            })
        })
        .collect()
}

/// Whether missing features make the test a skip (or, when `TCPAO_REQUIRE_TCP_AO=1` and
/// TCP-AO is the missing one, a failure).
fn precheck(test: &Test, features: &Features, require_ao: bool) -> Option<Status> {
    let f = features.first_missing(test.required_features())?;
    let why = features.get(f).err().unwrap_or_default();
    if f == Feature::TcpAo && require_ao {
        return Some(Status::Fail(format!(
            "TCPAO_REQUIRE_TCP_AO=1 but: {} ({why})",
            f.requirement()
        )));
    }
    Some(Status::Skip(f.requirement().to_owned()))
}

thread_local! {
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records where a test thread panicked and keeps the
/// default report for every other thread.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let in_test = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("test:"));
            if in_test {
                let loc = info
                    .location()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                PANIC_AT.with(|p| *p.borrow_mut() = Some(loc));
            } else {
                default(info);
            }
        }));
    });
}

/// The message of a panic payload (`panic!` with a literal or a formatted message).
pub fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Runs a test body in the current thread, turning panics and errors into a status.
pub fn run_body(test: &Test, ctx: &Ctx) -> Status {
    install_panic_hook();
    let body = test.body();
    match panic::catch_unwind(AssertUnwindSafe(|| body(ctx))) {
        Ok(Ok(Outcome::Pass)) => Status::Pass,
        Ok(Ok(Outcome::Fail(r))) => Status::Fail(r),
        Ok(Ok(Outcome::Skip(r))) => Status::Skip(r),
        Ok(Ok(Outcome::XFail(r))) => Status::XFail(r),
        Ok(Err(e)) => Status::Fail(error_chain(e.as_ref())),
        Err(payload) => {
            let at = PANIC_AT.with(|p| p.borrow_mut().take()).unwrap_or_default();
            Status::Fail(format!("panicked: {}{at}", payload_text(payload.as_ref())))
        }
    }
}

struct Done {
    index: usize,
    status: Status,
    elapsed: Duration,
}

struct Running {
    index: usize,
    started: Instant,
    timeout: Duration,
    /// Started in a waiting lane (not a `--jobs` slot).
    lane: bool,
}

struct Finished {
    status: Status,
    elapsed: Duration,
    diags: Vec<String>,
}

/// Runs `tests` (already selected) and writes KTAP to `out`; returns the totals.
///
/// # Errors
/// I/O errors writing the output.
pub fn run<W: Write>(
    tests: &[Test],
    features: &Arc<Features>,
    opts: &RunOptions,
    policy: TimeoutPolicy,
    out: W,
) -> std::io::Result<Totals> {
    let require_ao = opts.require_tcp_ao;
    let mut w = Writer::new(out);
    w.header(tests.len())?;
    for d in features.describe() {
        w.diag(&d)?;
    }
    if policy.slow > 1 {
        w.diag(&format!("slow machine: timeouts x{}", policy.slow))?;
    }

    let mut done: Vec<Option<Finished>> = (0..tests.len()).map(|_| None).collect();
    let mut ctxs: Vec<Option<Ctx>> = (0..tests.len()).map(|_| None).collect();
    // Two queues: the tests that keep a CPU busy, in `--jobs` slots, and those that mostly wait
    // (`Test::waits`), in extra lanes beside them.
    let mut queue = VecDeque::new();
    let mut waiting = VecDeque::new();
    // Exclusive tests first (a stable order otherwise): see `Test::exclusive`.
    let mut order: Vec<usize> = (0..tests.len()).collect();
    order.sort_by_key(|&i| !tests[i].is_exclusive());
    for (i, t) in order.into_iter().map(|i| (i, &tests[i])) {
        match precheck(t, features, require_ao) {
            Some(status) => {
                done[i] = Some(Finished {
                    status,
                    elapsed: Duration::ZERO,
                    diags: Vec::new(),
                })
            }
            None if t.is_waiting() && !t.is_exclusive() => waiting.push_back(i),
            None => queue.push_back(i),
        }
    }

    let jobs = opts.jobs.max(1);
    let lanes = jobs / 2;
    let (tx, rx) = mpsc::channel::<Done>();
    let mut running: Vec<Running> = Vec::new();
    let mut next_print = 0;
    let mut failures = 0;
    loop {
        // Print finished results before starting more tests: a test that takes the whole
        // process down (abort) must not swallow results that were already in.
        flush(&mut w, tests, &mut done, &mut next_print)?;
        if let Some(max) = opts.max_failures.filter(|m| failures >= *m) {
            for i in queue.drain(..).chain(waiting.drain(..)) {
                done[i] = Some(Finished {
                    status: Status::Skip(format!("not run: --max-failures {max} reached")),
                    elapsed: Duration::ZERO,
                    diags: Vec::new(),
                });
            }
        }
        loop {
            // An exclusive test waits for the others to finish, and holds the rest back.
            if running.iter().any(|r| tests[r.index].is_exclusive()) {
                break;
            }
            let in_lanes = running.iter().filter(|r| r.lane).count();
            let (i, lane) = match queue.front() {
                Some(&i) if tests[i].is_exclusive() && !running.is_empty() => break,
                Some(&i) if running.len() - in_lanes < jobs => (i, false),
                // A waiting test takes a lane when one is free, else a free job slot (when the
                // others are done).
                _ => match waiting.front() {
                    Some(&i) if in_lanes < lanes => (i, true),
                    Some(&i) if running.len() - in_lanes < jobs => (i, false),
                    _ => break,
                },
            };
            if queue.front() == Some(&i) {
                queue.pop_front();
            } else {
                waiting.pop_front();
            }
            let t = &tests[i];
            let timeout = policy.effective(t.timeout_value(), opts.timeout);
            let ctx = Ctx::new(
                t.name(),
                Arc::clone(features),
                timeout,
                policy.slow,
                opts.save_pcaps.clone(),
                opts.bench,
            );
            ctxs[i] = Some(ctx.clone());
            let (test, txc) = (t.clone(), tx.clone());
            let started = Instant::now();
            let spawned = std::thread::Builder::new()
                .name(format!("test:{}", t.name()))
                .spawn(move || {
                    let status = run_body(&test, &ctx);
                    let _ = txc.send(Done {
                        index: i,
                        status,
                        elapsed: started.elapsed(),
                    });
                });
            match spawned {
                Ok(_) => running.push(Running {
                    index: i,
                    started,
                    timeout,
                    lane,
                }),
                Err(e) => {
                    done[i] = Some(Finished {
                        status: Status::Error(format!("cannot spawn test thread: {e}")),
                        elapsed: Duration::ZERO,
                        diags: Vec::new(),
                    })
                }
            }
        }
        if running.is_empty() {
            break;
        }
        let now = Instant::now();
        let wait = running
            .iter()
            .map(|r| (r.started + r.timeout).saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::ZERO);
        match rx.recv_timeout(wait) {
            Ok(d) => {
                if let Some(pos) = running.iter().position(|r| r.index == d.index) {
                    running.swap_remove(pos);
                    let diags = ctxs[d.index]
                        .take()
                        .map(|c| c.take_diags())
                        .unwrap_or_default();
                    failures += usize::from(is_failure(&d.status));
                    done[d.index] = Some(Finished {
                        status: d.status,
                        elapsed: d.elapsed,
                        diags,
                    });
                }
                // A result from an abandoned (timed-out) thread is dropped.
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                running.retain(|r| {
                    let elapsed = now.duration_since(r.started);
                    if elapsed < r.timeout {
                        return true;
                    }
                    let diags = ctxs[r.index]
                        .take()
                        .map(|c| c.take_diags())
                        .unwrap_or_default();
                    let secs = r.timeout.as_secs() + u64::from(r.timeout.subsec_nanos() > 0);
                    failures += 1;
                    done[r.index] = Some(Finished {
                        status: Status::Timeout(secs),
                        elapsed,
                        diags,
                    });
                    false
                });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("tx is held here"),
        }
    }
    flush(&mut w, tests, &mut done, &mut next_print)?;
    w.finish(tests.len())
}

/// Runs `tests` `rounds` times in a row, one KTAP document per round, and then names every
/// test that failed in some round and in which (`run --repeat N`: the way to tell a flaky test
/// from a broken kernel, and to show a suite stays green N runs in a row). Nothing is reset
/// between rounds: what one round leaves in the kernel (orphans, TIME-WAIT sockets, static
/// keys) is what the next one meets, as in back-to-back runs on a developer's machine.
/// Returns the totals over all rounds.
///
/// # Errors
/// I/O errors writing the output.
pub fn run_rounds<W: Write>(
    tests: &[Test],
    features: &Arc<Features>,
    opts: &RunOptions,
    policy: TimeoutPolicy,
    rounds: usize,
    mut out: W,
) -> std::io::Result<Totals> {
    if rounds <= 1 {
        return run(tests, features, opts, policy, out);
    }
    let mut all = Totals::default();
    let mut failed: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for k in 1..=rounds {
        let started = Instant::now();
        writeln!(out, "# round {k}/{rounds}")?;
        let mut tee = Tee::new(&mut out);
        let totals = run(tests, features, opts, policy, &mut tee)?;
        for (name, _) in tee.finish().failures {
            failed.entry(name).or_default().push(k);
        }
        writeln!(
            out,
            "# round {k}/{rounds}: {totals} in {:.1} s",
            started.elapsed().as_secs_f64()
        )?;
        out.flush()?;
        all += totals;
    }
    for line in rounds_report(&failed, rounds) {
        writeln!(out, "# {line}")?;
    }
    out.flush()?;
    Ok(all)
}

/// The closing lines of [`run_rounds`]: how many tests failed in some round, then one line
/// per test with its rounds, "every round" or "flaky" said outright.
fn rounds_report(failed: &BTreeMap<String, Vec<usize>>, rounds: usize) -> Vec<String> {
    let mut lines = vec![format!(
        "rounds: {rounds} in a row; tests that failed in some round: {}",
        failed.len()
    )];
    for (name, ks) in failed {
        let which = ks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let kind = if ks.len() == rounds {
            "every round"
        } else {
            "flaky"
        };
        lines.push(format!(
            "rounds: {name}: failed in {} of {rounds} ({kind}): rounds {which}",
            ks.len()
        ));
    }
    lines
}

/// Passes a KTAP stream through and reads it with [`Summary`] on the way (the failures of
/// one round, named by the same parser every reader of our output uses).
struct Tee<W: Write> {
    out: W,
    summary: Summary,
    line: Vec<u8>,
}

impl<W: Write> Tee<W> {
    fn new(out: W) -> Self {
        Tee {
            out,
            summary: Summary::default(),
            line: Vec::new(),
        }
    }

    fn finish(mut self) -> Summary {
        if !self.line.is_empty() {
            let l = std::mem::take(&mut self.line);
            self.summary.feed(&String::from_utf8_lossy(&l));
        }
        self.summary
    }
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                let l = std::mem::take(&mut self.line);
                self.summary.feed(&String::from_utf8_lossy(&l));
            } else {
                self.line.push(b);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn flush<W: Write>(
    w: &mut Writer<W>,
    tests: &[Test],
    done: &mut [Option<Finished>],
    next: &mut usize,
) -> std::io::Result<()> {
    while *next < tests.len() {
        let Some(f) = done[*next].take() else { break };
        let name = tests[*next].name();
        for d in &f.diags {
            w.diag(&format!("{name}: {d}"))?;
        }
        w.result(*next + 1, name, &f.status, f.elapsed.as_millis())?;
        *next += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktap::Summary;
    use std::collections::BTreeMap;

    fn t(name: &str) -> Test {
        Test::new(name, |_| Ok(Outcome::Pass))
    }

    #[test]
    fn glob_and_substring() {
        assert!(matches("connect", "connect/ipv4/connect-good", false));
        assert!(matches(
            "connect/*/connect-good",
            "connect/ipv6/connect-good",
            false
        ));
        assert!(matches("*ipv6*", "rst/ipv6/x", false));
        assert!(!matches("*ipv6", "rst/ipv6/x", false));
        assert!(matches("rst/ipv?/x", "rst/ipv4/x", false));
        assert!(!matches("connect/ipv4", "connect/ipv4/connect-good", true));
        assert!(matches(
            "connect/ipv4/connect-good",
            "connect/ipv4/connect-good",
            true
        ));
    }

    #[test]
    fn hidden_tests_need_their_program_named() {
        let all = || vec![t("a/ipv4/x"), t("selftest-self/any/hang").hidden()];
        let names = |v: Vec<Test>| v.iter().map(|t| t.name().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(select(all(), &[], false)), ["a/ipv4/x"]);
        assert_eq!(
            names(select(all(), &["any".into()], false)),
            Vec::<String>::new()
        );
        assert_eq!(names(select(all(), &["*".into()], false)), ["a/ipv4/x"]);
        assert_eq!(
            names(select(all(), &["selftest-self/any/hang".into()], true)),
            ["selftest-self/any/hang"]
        );
        assert_eq!(
            names(select(all(), &["selftest-self/".into()], false)),
            ["selftest-self/any/hang"]
        );
    }

    #[test]
    fn timeout_policy() {
        let p = TimeoutPolicy::from_vars(Some("yes"), None, None);
        assert_eq!(
            p.effective(Some(Duration::from_secs(10)), None),
            Duration::from_secs(30)
        );
        assert_eq!(p.effective(None, None), DEFAULT_TIMEOUT * SLOW_FACTOR);
        assert_eq!(
            p.effective(None, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        let o = TimeoutPolicy::from_vars(Some("no"), None, Some("90"));
        assert_eq!(o.slow, 1);
        assert_eq!(
            o.effective(Some(Duration::from_secs(10)), None),
            Duration::from_secs(90)
        );
        assert_eq!(
            TimeoutPolicy::from_vars(None, None, Some("junk")).override_secs,
            None
        );
    }

    #[test]
    fn our_slow_factor_wins_over_ksft_machine_slow() {
        // One row per case: KSFT_MACHINE_SLOW, TCPAO_SLOW_FACTOR, the factor in force.
        let rows: &[(Option<&str>, Option<&str>, u32)] = &[
            (None, None, 1),
            (Some("yes"), None, SLOW_FACTOR),
            (Some("yes"), Some("12"), 12),
            (None, Some("4"), 4),
            (Some("yes"), Some("1"), 1),
            (Some("yes"), Some("0"), SLOW_FACTOR),
            (Some("yes"), Some("fast"), SLOW_FACTOR),
            (None, Some("101"), 1),
        ];
        for &(ksft, ours, want) in rows {
            let p = TimeoutPolicy::from_vars(ksft, ours, None);
            assert_eq!(p.slow, want, "{ksft:?} {ours:?}");
            assert_eq!(p.effective(None, None), DEFAULT_TIMEOUT * want);
        }
        // kselftest's override still wins, unscaled.
        let o = TimeoutPolicy::from_vars(Some("yes"), Some("12"), Some("90"));
        assert_eq!(o.effective(None, None), Duration::from_secs(90));
    }

    fn features(ao: bool) -> Arc<Features> {
        let mut m = BTreeMap::new();
        m.insert(Feature::Netns, Ok(()));
        m.insert(
            Feature::TcpAo,
            if ao {
                Ok(())
            } else {
                Err("ENOPROTOOPT".into())
            },
        );
        Arc::new(Features::from_map(m))
    }

    fn run_text(tests: &[Test], f: &Arc<Features>, jobs: usize) -> String {
        let mut out = Vec::new();
        let opts = RunOptions {
            jobs,
            ..RunOptions::default()
        };
        run(
            tests,
            f,
            &opts,
            TimeoutPolicy {
                slow: 1,
                override_secs: None,
            },
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn max_failures_stops_starting_tests_and_skips_the_rest_with_the_reason() {
        let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = |name: &str, pass: bool| {
            let ran = Arc::clone(&ran);
            Test::new(name, move |_| {
                ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(if pass {
                    Outcome::Pass
                } else {
                    Outcome::fail("broken")
                })
            })
        };
        let tests = vec![
            t("m/any/pass", true),
            t("m/any/fail-1", false),
            t("m/any/pass-2", true),
            t("m/any/fail-2", false),
            t("m/any/never-1", true),
            t("m/any/never-2", false),
        ];
        let mut out = Vec::new();
        let opts = RunOptions {
            jobs: 1,
            max_failures: Some(2),
            ..RunOptions::default()
        };
        let policy = TimeoutPolicy {
            slow: 1,
            override_secs: None,
        };
        let totals = run(&tests, &features(true), &opts, policy, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 4, "{out}");
        for n in [5, 6] {
            assert!(
                out.contains(&format!(
                    "ok {n} m/any/never-{} # SKIP not run: --max-failures 2 reached",
                    n - 4
                )),
                "{out}"
            );
        }
        assert!(out.contains("not ok 4 m/any/fail-2"), "{out}");
        assert_ne!(totals.exit_code(), 0);
        // Without the option every test runs.
        ran.store(0, std::sync::atomic::Ordering::SeqCst);
        run_text(&tests, &features(true), 1);
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 6);
    }

    #[test]
    fn every_outcome_panic_error_and_timeout_is_classified() {
        let tests = vec![
            Test::new("h/any/pass", |c| {
                c.diag("hello");
                Ok(Outcome::Pass)
            }),
            Test::new("h/any/fail", |_| Ok(Outcome::fail("counter stayed 0"))),
            Test::new("h/any/skip", |_| Ok(Outcome::skip("no tool"))),
            Test::new("h/any/xfail", |_| Ok(Outcome::xfail("known bug"))),
            Test::new("h/any/panic", |_| panic!("boom {}", 42)),
            Test::new("h/any/error", |_| Err("socket: EPERM".into())),
            Test::new("h/any/hang", |_| {
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            })
            .timeout(Duration::from_millis(300)),
            Test::new("h/any/ao", |_| Ok(Outcome::Pass)).requires(&[Feature::TcpAo]),
            Test::new("h/any/macro", |_| {
                crate::ensure!(1 + 1 == 3, "arithmetic is {}", "broken");
                Ok(Outcome::Pass)
            }),
        ];
        let out = run_text(&tests, &features(false), 4);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "TAP version 13");
        assert_eq!(lines[1], "1..9");
        assert!(
            out.contains("# h/any/pass: hello\nok 1 h/any/pass # time="),
            "{out}"
        );
        assert!(
            out.contains("# h/any/fail: counter stayed 0\nnot ok 2 h/any/fail"),
            "{out}"
        );
        assert!(
            out.contains("ok 3 h/any/skip # SKIP no tool time="),
            "{out}"
        );
        assert!(
            out.contains("ok 4 h/any/xfail # XFAIL known bug time="),
            "{out}"
        );
        assert!(
            out.contains("# h/any/panic: panicked: boom 42 at "),
            "{out}"
        );
        assert!(out.contains("not ok 5 h/any/panic"), "{out}");
        assert!(
            out.contains("# h/any/error: socket: EPERM\nnot ok 6 h/any/error"),
            "{out}"
        );
        assert!(
            out.contains("not ok 7 h/any/hang # TIMEOUT 1s time="),
            "{out}"
        );
        assert!(
            out.contains("ok 8 h/any/ao # SKIP Tests require TCP-AO support (CONFIG_TCP_AO)"),
            "{out}"
        );
        assert!(
            out.contains("# h/any/macro: arithmetic is broken\nnot ok 9"),
            "{out}"
        );
        assert!(
            out.ends_with("# Totals: pass:1 fail:5 xfail:1 xpass:0 skip:2 error:0\n"),
            "{out}"
        );
        assert_eq!(Summary::parse(&out).exit_code(), 1);
    }

    #[test]
    fn results_stay_in_order_with_parallel_jobs() {
        let tests: Vec<Test> = (0..6)
            .map(|i| {
                Test::new(format!("h/any/t{i}"), move |_| {
                    std::thread::sleep(Duration::from_millis(60 - 10 * i));
                    Ok(Outcome::Pass)
                })
            })
            .collect();
        let out = run_text(&tests, &features(true), 3);
        let nums: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("ok "))
            .map(|l| l.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(nums, ["1", "2", "3", "4", "5", "6"]);
        assert_eq!(Summary::parse(&out).exit_code(), 0);
    }

    #[test]
    fn rounds_name_each_failing_test_with_its_rounds() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // `flaky` fails in its second round only, `broken` in every round.
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let tests = vec![
            Test::new("r/any/steady", |_| Ok(Outcome::Pass)),
            Test::new("r/any/flaky", move |_| {
                Ok(if c.fetch_add(1, Ordering::SeqCst) == 1 {
                    Outcome::fail("lost a race")
                } else {
                    Outcome::Pass
                })
            }),
            Test::new("r/any/broken", |_| Ok(Outcome::fail("always"))),
        ];
        let mut out = Vec::new();
        let totals = run_rounds(
            &tests,
            &features(true),
            &RunOptions::default(),
            TimeoutPolicy {
                slow: 1,
                override_secs: None,
            },
            3,
            &mut out,
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{out}");
        assert_eq!((totals.pass, totals.fail), (5, 4), "{out}");
        // Three KTAP documents, read back by the same parser as any run.
        let sum = Summary::parse(&out);
        assert_eq!((sum.documents, sum.planned, sum.ktap_results), (3, 9, 9));
        assert!(sum.problems().is_empty(), "{:?}", sum.problems());
        assert!(out.contains("# round 2/3: pass:1 fail:2 "), "{out}");
        let report: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("# rounds: "))
            .collect();
        assert_eq!(
            report,
            [
                "# rounds: 3 in a row; tests that failed in some round: 2",
                "# rounds: r/any/broken: failed in 3 of 3 (every round): rounds 1, 2, 3",
                "# rounds: r/any/flaky: failed in 1 of 3 (flaky): rounds 2",
            ]
        );
    }

    #[test]
    fn an_exclusive_test_runs_alone() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Tests in flight now, and the most seen while the exclusive test ran.
        let in_flight = Arc::new(AtomicUsize::new(0));
        let seen_by_exclusive = Arc::new(AtomicUsize::new(0));
        // Other tests that had started when an exclusive one started.
        let started = Arc::new(AtomicUsize::new(0));
        let started_before_exclusive = Arc::new(AtomicUsize::new(0));
        let mk = |i: usize, exclusive: bool| {
            let (n, seen) = (Arc::clone(&in_flight), Arc::clone(&seen_by_exclusive));
            let (st, before) = (Arc::clone(&started), Arc::clone(&started_before_exclusive));
            let t = Test::new(format!("h/any/t{i}"), move |_| {
                if exclusive {
                    before.fetch_max(st.load(Ordering::SeqCst), Ordering::SeqCst);
                } else {
                    st.fetch_add(1, Ordering::SeqCst);
                }
                n.fetch_add(1, Ordering::SeqCst);
                for _ in 0..20 {
                    if exclusive {
                        seen.fetch_max(n.load(Ordering::SeqCst), Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                n.fetch_sub(1, Ordering::SeqCst);
                Ok(Outcome::Pass)
            });
            if exclusive { t.exclusive() } else { t }
        };
        let tests: Vec<Test> = (0..7).map(|i| mk(i, i == 3 || i == 5)).collect();
        let out = run_text(&tests, &features(true), 3);
        assert_eq!(Summary::parse(&out).exit_code(), 0, "{out}");
        // Alone, and before every other test (nothing had started when they ran).
        assert_eq!(seen_by_exclusive.load(Ordering::SeqCst), 1);
        assert_eq!(started_before_exclusive.load(Ordering::SeqCst), 0);
        // KTAP numbers stay in registry order.
        let nums: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("ok "))
            .map(|l| l.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(nums, ["1", "2", "3", "4", "5", "6", "7"]);
    }

    #[test]
    fn waiting_tests_run_in_lanes_beside_the_jobs() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // (jobs, most tests in flight at once, whether a waiting test started before the last
        // CPU test): a lane per two jobs, none at --jobs 1 (waiting tests then run last).
        let rows = [(1, 1, false), (2, 3, true), (4, 6, true)];
        for (jobs, most, early) in rows {
            let in_flight = Arc::new(AtomicUsize::new(0));
            let max_seen = Arc::new(AtomicUsize::new(0));
            let order = Arc::new(std::sync::Mutex::new(Vec::new()));
            let mk = |i: usize, waits: bool| {
                let (n, seen, order) = (
                    Arc::clone(&in_flight),
                    Arc::clone(&max_seen),
                    Arc::clone(&order),
                );
                let t = Test::new(format!("h/any/t{i}"), move |_| {
                    order.lock().unwrap().push(i);
                    n.fetch_add(1, Ordering::SeqCst);
                    for _ in 0..20 {
                        seen.fetch_max(n.load(Ordering::SeqCst), Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    n.fetch_sub(1, Ordering::SeqCst);
                    Ok(Outcome::Pass)
                });
                if waits { t.waits() } else { t }
            };
            // Tests 0..8 keep a CPU busy, 8..12 wait.
            let tests: Vec<Test> = (0..12).map(|i| mk(i, i >= 8)).collect();
            let out = run_text(&tests, &features(true), jobs);
            assert_eq!(Summary::parse(&out).exit_code(), 0, "{out}");
            assert_eq!(max_seen.load(Ordering::SeqCst), most, "--jobs {jobs}");
            let order = order.lock().unwrap().clone();
            let first_waiting = order.iter().position(|&i| i >= 8).unwrap();
            let last_cpu = order.iter().rposition(|&i| i < 8).unwrap();
            assert_eq!(first_waiting < last_cpu, early, "--jobs {jobs}: {order:?}");
            // KTAP numbers stay in registry order.
            let nums: Vec<String> = out
                .lines()
                .filter(|l| l.starts_with("ok "))
                .map(|l| l.split(' ').nth(1).unwrap().to_owned())
                .collect();
            let want: Vec<String> = (1..=12).map(|n| n.to_string()).collect();
            assert_eq!(nums, want, "--jobs {jobs}");
        }
    }

    #[test]
    fn all_skipped_or_empty_is_exit_4() {
        let tests = vec![t("h/any/ao").requires(&[Feature::TcpAo])];
        let out = run_text(&tests, &features(false), 1);
        assert_eq!(Summary::parse(&out).exit_code(), 4);
        let out = run_text(&[], &features(false), 1);
        assert!(out.starts_with("TAP version 13\n1..0\n"));
        assert_eq!(Summary::parse(&out).exit_code(), 4);
    }
}

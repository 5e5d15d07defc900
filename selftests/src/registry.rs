// SPDX-License-Identifier: MIT OR Apache-2.0
//! The test registry: what a test is, what it needs, and what it may return.
//!
//! See the crate documentation for a worked example of registering tests.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::outcome::TestResult;
use crate::probe::{Feature, Features};

/// The signature of a test body.
pub type Body = dyn Fn(&Ctx) -> TestResult + Send + Sync + 'static;

/// One registered test.
#[derive(Clone)]
pub struct Test {
    name: String,
    timeout: Option<Duration>,
    requires: Vec<Feature>,
    hidden: bool,
    exclusive: bool,
    waits: bool,
    body: Arc<Body>,
}

impl fmt::Debug for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Test")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("requires", &self.requires)
            .field("hidden", &self.hidden)
            .field("exclusive", &self.exclusive)
            .field("waits", &self.waits)
            .finish_non_exhaustive()
    }
}

impl Test {
    /// A test named `program/family/case` (for example `connect/ipv4/connect-good`).
    ///
    /// # Panics
    /// If the name is not three non-empty `/`-separated parts, or contains `#` or whitespace
    /// (KTAP descriptions may not contain `#`; names must be stable and greppable). Names are
    /// fixed strings in the source, so this is a programming error caught by the unit test
    /// that walks [`crate::all_tests`].
    pub fn new<F>(name: impl Into<String>, body: F) -> Self
    where
        F: Fn(&Ctx) -> TestResult + Send + Sync + 'static,
    {
        let name = name.into();
        if let Err(e) = validate_name(&name) {
            panic!("bad test name {name:?}: {e}");
        }
        Test {
            name,
            timeout: None,
            requires: Vec::new(),
            hidden: false,
            exclusive: false,
            waits: false,
            body: Arc::new(body),
        }
    }

    /// Kernel features the test needs; when one is missing the test is skipped with the
    /// feature's reason (for TCP-AO: "Tests require TCP-AO support (CONFIG_TCP_AO)").
    pub fn requires(mut self, features: &[Feature]) -> Self {
        for f in features {
            if !self.requires.contains(f) {
                self.requires.push(*f);
            }
        }
        self
    }

    /// A per-test timeout (before `KSFT_MACHINE_SLOW` scaling); the default is
    /// [`crate::harness::DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Hidden tests run only when a filter names their program explicitly (for example
    /// `selftest-self/`); `--list` and the default run leave them out.
    pub fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }

    /// The test runs alone and before the others: the harness starts the exclusive tests
    /// first, one at a time, and nothing else while one runs. For behaviour that depends on
    /// machine-wide state other tests leave behind: the kernel's `tcp_ao_needed` static key is
    /// on while any TCP-AO key exists in any namespace, and after the `fuzz-cases` program
    /// the sockets it orphaned keep theirs for one to two minutes (measured).
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// Whether the test runs alone ([`Test::exclusive`]).
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// The test spends most of its time waiting, not computing: on a daemon's timers (BIRD),
    /// or on the fuzzer's fixed windows for an answer that may not come. The harness runs such
    /// tests in extra lanes beside the `--jobs` others (one lane per two jobs, none at
    /// `--jobs 1`), so their waits overlap work instead of holding a job slot of a one-CPU
    /// guest idle.
    pub fn waits(mut self) -> Self {
        self.waits = true;
        self
    }

    /// Whether the test mostly waits ([`Test::waits`]).
    pub fn is_waiting(&self) -> bool {
        self.waits
    }

    /// The stable name `program/family/case`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `program` part of the name.
    pub fn program(&self) -> &str {
        self.name.split('/').next().unwrap_or_default()
    }

    /// The per-test timeout, if one was set.
    pub fn timeout_value(&self) -> Option<Duration> {
        self.timeout
    }

    /// Features the test needs.
    pub fn required_features(&self) -> &[Feature] {
        &self.requires
    }

    /// Whether the test is hidden.
    pub fn is_hidden(&self) -> bool {
        self.hidden
    }

    pub(crate) fn body(&self) -> Arc<Body> {
        Arc::clone(&self.body)
    }
}

/// Checks a stable test name: `program/family/case`, no whitespace, no `#`.
///
/// # Errors
/// A description of what is wrong with the name.
pub fn validate_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err("want program/family/case".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err("no whitespace or '#' allowed".into());
    }
    Ok(())
}

/// What a running test can see and report through: its name, the probed features, run
/// options, and `# ` diagnostic lines printed just before its result line.
#[derive(Debug, Clone)]
pub struct Ctx {
    name: String,
    features: Arc<Features>,
    timeout: Duration,
    slow: u32,
    pcap_dir: Option<PathBuf>,
    bench: bool,
    diags: Arc<Mutex<Vec<String>>>,
}

impl Ctx {
    pub(crate) fn new(
        name: &str,
        features: Arc<Features>,
        timeout: Duration,
        slow: u32,
        pcap_dir: Option<PathBuf>,
        bench: bool,
    ) -> Self {
        Ctx {
            name: name.to_owned(),
            features,
            timeout,
            slow,
            pcap_dir,
            bench,
            diags: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The test's stable name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `family` part of the name (`ipv4`, `ipv6`, …).
    pub fn family(&self) -> &str {
        self.name.split('/').nth(1).unwrap_or_default()
    }

    /// Features probed once at start.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The timeout this test runs under (already scaled); size internal deadlines from it.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// 1 normally, 2 or more with `KSFT_MACHINE_SLOW=yes`: multiply internal waits by it.
    pub fn slow_factor(&self) -> u32 {
        self.slow
    }

    /// Where to keep packet captures (`--save-pcaps DIR`), if asked.
    pub fn pcap_dir(&self) -> Option<&std::path::Path> {
        self.pcap_dir.as_deref()
    }

    /// Whether `--bench` was given (benchmark-style tests may do more rounds).
    pub fn bench(&self) -> bool {
        self.bench
    }

    /// Adds a diagnostic line (printed as `# <line>` before the result line).
    pub fn diag(&self, line: impl fmt::Display) {
        let line = line.to_string();
        let mut d = self.diags.lock().unwrap_or_else(|p| p.into_inner());
        d.extend(line.lines().map(str::to_owned));
    }

    pub(crate) fn take_diags(&self) -> Vec<String> {
        let mut d = self.diags.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;

    #[test]
    fn names_are_three_parts() {
        assert!(validate_name("connect/ipv4/connect-good").is_ok());
        assert!(validate_name("connect/ipv4").is_err());
        assert!(validate_name("connect//x").is_err());
        assert!(validate_name("a/b/c d").is_err());
        assert!(validate_name("a/b/c#d").is_err());
        assert!(validate_name("a/b/c/d").is_err());
    }

    #[test]
    fn builder_dedups_features() {
        let t = Test::new("p/f/c", |_| Ok(Outcome::Pass))
            .requires(&[Feature::TcpAo, Feature::TcpAo, Feature::Veth])
            .timeout(Duration::from_secs(3))
            .hidden();
        assert_eq!(t.required_features(), &[Feature::TcpAo, Feature::Veth]);
        assert_eq!(t.program(), "p");
        assert!(t.is_hidden());
        assert_eq!(t.timeout_value(), Some(Duration::from_secs(3)));
    }

    #[test]
    #[should_panic(expected = "bad test name")]
    fn bad_name_panics_at_registration() {
        let _ = Test::new("nope", |_| Ok(Outcome::Pass));
    }
}

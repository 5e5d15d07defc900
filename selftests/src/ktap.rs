// SPDX-License-Identifier: MIT OR Apache-2.0
//! KTAP output exactly as kselftest prints it, and a parser that classifies a result stream.
//!
//! Writer format (`tools/testing/selftests/kselftest.h`, `Documentation/dev-tools/ktap.rst`):
//!
//! ```text
//! TAP version 13
//! 1..3
//! # connect/ipv4/connect-good: <diagnostic>
//! ok 1 connect/ipv4/connect-good # time=12ms
//! ok 2 connect/ipv4/md5 # SKIP Tests require TCP-MD5 support (CONFIG_TCP_MD5SIG) time=0ms
//! not ok 3 connect/ipv6/slow # TIMEOUT 60s time=60001ms
//! # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
//! ```
//!
//! The parser reads such a stream back (also with console noise, `\r`, or a `# ` prefix from
//! a runner), plus libtest's `test NAME ... ok|FAILED|ignored` lines, and [`Summary`] turns
//! what it saw into a kselftest exit code. A plan that promises more results than arrived is
//! an error: a run that stopped half way is never a pass.

use std::fmt;
use std::io::{self, Write};

/// kselftest exit code: every test passed (xfail allowed).
pub const KSFT_PASS: i32 = 0;
/// kselftest exit code: a test failed, timed out or hit an error.
pub const KSFT_FAIL: i32 = 1;
/// kselftest exit code: everything was skipped, or nothing ran.
pub const KSFT_SKIP: i32 = 4;

/// How one test ended, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// `ok N name`
    Pass,
    /// `not ok N name`, reason as a diagnostic line.
    Fail(String),
    /// `ok N name # SKIP reason`
    Skip(String),
    /// `ok N name # XFAIL reason`
    XFail(String),
    /// `not ok N name # TIMEOUT Ns`
    Timeout(u64),
    /// `not ok N name # ERROR reason` (the harness itself failed to run the test).
    Error(String),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Pass => f.write_str("pass"),
            Status::Fail(r) if r.is_empty() => f.write_str("fail"),
            Status::Fail(r) => write!(f, "fail: {r}"),
            Status::Skip(r) => write!(f, "skip: {r}"),
            Status::XFail(r) => write!(f, "xfail: {r}"),
            Status::Timeout(s) => write!(f, "timeout after {s}s"),
            Status::Error(r) => write!(f, "error: {r}"),
        }
    }
}

/// Counts in kselftest's `# Totals:` order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Passed.
    pub pass: usize,
    /// Failed (timeouts included, as kselftest counts them).
    pub fail: usize,
    /// Expected failures.
    pub xfail: usize,
    /// Unexpected passes (never produced by this harness; parsed for completeness).
    pub xpass: usize,
    /// Skipped.
    pub skip: usize,
    /// Harness errors.
    pub error: usize,
}

impl Totals {
    /// Adds one status.
    pub fn add(&mut self, s: &Status) {
        match s {
            Status::Pass => self.pass += 1,
            Status::Fail(_) | Status::Timeout(_) => self.fail += 1,
            Status::Skip(_) => self.skip += 1,
            Status::XFail(_) => self.xfail += 1,
            Status::Error(_) => self.error += 1,
        }
    }

    /// Number of results.
    pub fn total(&self) -> usize {
        self.pass + self.fail + self.xfail + self.xpass + self.skip + self.error
    }

    /// The kselftest exit code: 1 on any fail/error/xpass, 4 when nothing passed, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.fail > 0 || self.error > 0 || self.xpass > 0 {
            KSFT_FAIL
        } else if self.pass + self.xfail == 0 {
            KSFT_SKIP
        } else {
            KSFT_PASS
        }
    }
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, o: Totals) {
        self.pass += o.pass;
        self.fail += o.fail;
        self.xfail += o.xfail;
        self.xpass += o.xpass;
        self.skip += o.skip;
        self.error += o.error;
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pass:{} fail:{} xfail:{} xpass:{} skip:{} error:{}",
            self.pass, self.fail, self.xfail, self.xpass, self.skip, self.error
        )
    }
}

/// Writes a KTAP document, one line at a time, flushing each line.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    totals: Totals,
}

impl<W: Write> Writer<W> {
    /// A writer over `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            totals: Totals::default(),
        }
    }

    /// `TAP version 13` and the plan `1..n`.
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn header(&mut self, n: usize) -> io::Result<()> {
        writeln!(self.out, "TAP version 13")?;
        writeln!(self.out, "1..{n}")?;
        self.out.flush()
    }

    /// A `# ` diagnostic line (each line of `text` gets its own prefix).
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn diag(&mut self, text: &str) -> io::Result<()> {
        for l in text.lines() {
            writeln!(self.out, "# {l}")?;
        }
        self.out.flush()
    }

    /// One result line (with its reason as a diagnostic line for failures).
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn result(&mut self, n: usize, name: &str, status: &Status, ms: u128) -> io::Result<()> {
        self.totals.add(status);
        let line = format_result(n, name, status, ms);
        if let Status::Fail(r) | Status::Error(r) = status {
            for l in r.lines() {
                writeln!(self.out, "# {name}: {l}")?;
            }
        }
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }

    /// The closing `# Totals:` line; returns the totals.
    ///
    /// # Errors
    /// I/O errors of the output.
    pub fn finish(mut self, planned: usize) -> io::Result<Totals> {
        let run = self.totals.total();
        if run != planned {
            writeln!(
                self.out,
                "# Planned tests != run tests ({planned} != {run})"
            )?;
        }
        writeln!(self.out, "# Totals: {}", self.totals)?;
        self.out.flush()?;
        Ok(self.totals)
    }
}

/// Formats one result line (without diagnostics).
pub fn format_result(n: usize, name: &str, status: &Status, ms: u128) -> String {
    let reason = |r: &str| one_line(r);
    match status {
        Status::Pass => format!("ok {n} {name} # time={ms}ms"),
        Status::Fail(_) => format!("not ok {n} {name} # time={ms}ms"),
        Status::Skip(r) => format!("ok {n} {name} # SKIP {} time={ms}ms", reason(r)),
        Status::XFail(r) => format!("ok {n} {name} # XFAIL {} time={ms}ms", reason(r)),
        Status::Timeout(s) => format!("not ok {n} {name} # TIMEOUT {s}s time={ms}ms"),
        Status::Error(r) => format!("not ok {n} {name} # ERROR {} time={ms}ms", reason(r)),
    }
}

fn one_line(s: &str) -> String {
    let s = s.lines().next().unwrap_or_default().trim();
    if s.is_empty() {
        "(no reason given)".into()
    } else {
        s.replace('#', "%")
    }
}

/// One classified line of a result stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `TAP version N` / `KTAP version N`.
    Version,
    /// `1..N`.
    Plan(usize),
    /// A KTAP result.
    Result {
        /// The test number (0 when absent).
        number: usize,
        /// The description (test name), possibly empty.
        name: String,
        /// How it ended.
        status: Status,
    },
    /// A libtest result line: `test NAME ... ok|FAILED|ignored`.
    Libtest {
        /// The test's path.
        name: String,
        /// Pass, Fail or Skip.
        status: Status,
    },
    /// `# Totals: pass:P fail:F xfail:X xpass:Y skip:S error:E`.
    Totals(Totals),
    /// A `# ` diagnostic or anything else.
    Other,
}

/// Strips console noise: `\r`, and one `# ` runner prefix in front of a nested document is
/// NOT stripped (nested results are the runner's business; we count the top level).
fn clean(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n']).trim_start_matches('\r')
}

/// Classifies one line.
pub fn parse_line(raw: &str) -> Line {
    let line = clean(raw);
    let t = line.trim_start();
    if t.starts_with("TAP version ") || t.starts_with("KTAP version ") {
        return Line::Version;
    }
    if let Some(n) = t.strip_prefix("1..") {
        if let Ok(n) = n.trim().parse() {
            return Line::Plan(n);
        }
    }
    if let Some(rest) = t.strip_prefix("# Totals:") {
        return parse_totals(rest).map_or(Line::Other, Line::Totals);
    }
    if let Some(rest) = t.strip_prefix("not ok") {
        if rest.is_empty() || rest.starts_with(' ') {
            return parse_result(false, rest.trim_start());
        }
    }
    if let Some(rest) = t.strip_prefix("ok") {
        if rest.is_empty() || rest.starts_with(' ') {
            return parse_result(true, rest.trim_start());
        }
    }
    if let Some(rest) = t.strip_prefix("test ") {
        if let Some((name, verdict)) = rest.rsplit_once(" ... ") {
            let v = verdict.trim();
            let status = if v == "ok" {
                Status::Pass
            } else if v == "FAILED" {
                Status::Fail("libtest FAILED".into())
            } else if v.starts_with("ignored") {
                Status::Skip(v.to_owned())
            } else {
                return Line::Other;
            };
            return Line::Libtest {
                name: name.trim().to_owned(),
                status,
            };
        }
    }
    Line::Other
}

fn parse_result(ok: bool, rest: &str) -> Line {
    let (head, directive) = match rest.split_once(" # ") {
        Some((h, d)) => (h, Some(d.trim())),
        None => (rest, None),
    };
    let mut parts = head.splitn(2, ' ');
    let number = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let name = parts.next().unwrap_or_default().trim().to_owned();
    let d = directive.unwrap_or_default();
    let word = d
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let after = d
        .split_once(char::is_whitespace)
        .map(|x| x.1.trim())
        .unwrap_or_default();
    let reason = strip_time(after);
    let status = match (ok, word.as_str()) {
        (_, "SKIP") => Status::Skip(reason),
        (true, "XFAIL") => Status::XFail(reason),
        (false, "TIMEOUT") => {
            let secs = after
                .split_whitespace()
                .next()
                .map(|s| s.trim_end_matches(|c: char| !c.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Status::Timeout(secs)
        }
        (false, "ERROR") => Status::Error(reason),
        (true, _) => Status::Pass,
        (false, _) => Status::Fail(strip_time(d)),
    };
    Line::Result {
        number,
        name,
        status,
    }
}

/// Drops a trailing `time=<n>ms` from a reason.
fn strip_time(s: &str) -> String {
    let s = s.trim();
    match s.rsplit_once(' ') {
        Some((r, t)) if t.starts_with("time=") => r.trim().to_owned(),
        _ if s.starts_with("time=") => String::new(),
        _ => s.to_owned(),
    }
}

fn parse_totals(rest: &str) -> Option<Totals> {
    let mut t = Totals::default();
    let mut seen = 0;
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once(':')?;
        let v: usize = v.parse().ok()?;
        match k {
            "pass" => t.pass = v,
            "fail" => t.fail = v,
            "xfail" => t.xfail = v,
            "xpass" => t.xpass = v,
            "skip" => t.skip = v,
            "error" => t.error = v,
            _ => continue,
        }
        seen += 1;
    }
    (seen == 6).then_some(t)
}

/// Everything learned from a result stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sum of the plans of all KTAP documents seen.
    pub planned: usize,
    /// KTAP documents seen (version lines).
    pub documents: usize,
    /// Counts over KTAP results and libtest results.
    pub totals: Totals,
    /// Names of failed/timed-out/errored tests with their status.
    pub failures: Vec<(String, Status)>,
    /// `# Totals:` lines that disagree with the results counted (a sign of lost lines).
    pub totals_mismatch: Vec<String>,
    /// Results counted per document: (KTAP results, libtest results).
    pub ktap_results: usize,
    /// libtest results counted.
    pub libtest_results: usize,
    doc_totals: Totals,
    last_diag: Option<String>,
}

impl Summary {
    /// Parses a whole stream.
    pub fn parse(text: &str) -> Self {
        let mut s = Summary::default();
        for l in text.lines() {
            s.feed(l);
        }
        s
    }

    /// Feeds one line.
    pub fn feed(&mut self, line: &str) {
        match parse_line(line) {
            Line::Version => {
                self.documents += 1;
                self.doc_totals = Totals::default();
            }
            Line::Plan(n) => self.planned += n,
            Line::Result {
                number,
                name,
                mut status,
            } => {
                self.ktap_results += 1;
                self.doc_totals.add(&status);
                // The writer puts a failure's reason on `# name: reason` lines just before.
                if let (Status::Fail(r), Some(d)) = (&mut status, self.last_diag.take()) {
                    if r.is_empty() {
                        if let Some(why) = d.strip_prefix(&format!("{name}: ")) {
                            *r = why.to_owned();
                        }
                    }
                }
                self.record(
                    if name.is_empty() {
                        format!("#{number}")
                    } else {
                        name
                    },
                    status,
                );
            }
            Line::Libtest { name, status } => {
                self.libtest_results += 1;
                self.record(name, status);
            }
            Line::Totals(t) => {
                if t != self.doc_totals {
                    self.totals_mismatch.push(format!(
                        "stream says {t}, results counted {}",
                        self.doc_totals
                    ));
                }
            }
            Line::Other => {
                let t = line.trim();
                if let Some(d) = t.strip_prefix("# ") {
                    self.last_diag = Some(d.to_owned());
                } else if !t.is_empty() {
                    self.last_diag = None;
                }
            }
        }
    }

    fn record(&mut self, name: String, status: Status) {
        self.totals.add(&status);
        if matches!(
            status,
            Status::Fail(_) | Status::Timeout(_) | Status::Error(_)
        ) {
            self.failures.push((name, status));
        }
    }

    /// KTAP results missing against the plans (a truncated run).
    pub fn missing(&self) -> usize {
        self.planned.saturating_sub(self.ktap_results)
    }

    /// Problems that make the stream a failure even if every line said ok.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.missing() > 0 {
            p.push(format!(
                "plan promised {} results, {} arrived: the run stopped early",
                self.planned, self.ktap_results
            ));
        }
        p.extend(self.totals_mismatch.iter().cloned());
        p
    }

    /// The kselftest exit code of the stream alone.
    pub fn exit_code(&self) -> i32 {
        if !self.problems().is_empty() {
            KSFT_FAIL
        } else {
            self.totals.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(l: &str) -> (usize, String, Status) {
        match parse_line(l) {
            Line::Result {
                number,
                name,
                status,
            } => (number, name, status),
            other => panic!("{l:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn writer_output_is_kselftest_shaped() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        w.header(6).unwrap();
        w.diag("feature tcp-ao: yes").unwrap();
        w.result(1, "a/ipv4/x", &Status::Pass, 12).unwrap();
        w.result(
            2,
            "a/ipv4/y",
            &Status::Fail("counter did not grow\nsecond".into()),
            3,
        )
        .unwrap();
        w.result(
            3,
            "a/ipv6/x",
            &Status::Skip("Tests require VRF # x".into()),
            0,
        )
        .unwrap();
        w.result(4, "a/ipv6/y", &Status::XFail("known".into()), 1)
            .unwrap();
        w.result(5, "a/ipv6/z", &Status::Timeout(60), 60001)
            .unwrap();
        w.result(6, "a/ipv6/w", &Status::Error("spawn".into()), 0)
            .unwrap();
        let t = w.finish(6).unwrap();
        let out = String::from_utf8(buf).unwrap();
        let want = "TAP version 13\n1..6\n# feature tcp-ao: yes\nok 1 a/ipv4/x # time=12ms\n\
            # a/ipv4/y: counter did not grow\n# a/ipv4/y: second\nnot ok 2 a/ipv4/y # time=3ms\n\
            ok 3 a/ipv6/x # SKIP Tests require VRF % x time=0ms\n\
            ok 4 a/ipv6/y # XFAIL known time=1ms\n\
            not ok 5 a/ipv6/z # TIMEOUT 60s time=60001ms\n\
            # a/ipv6/w: spawn\nnot ok 6 a/ipv6/w # ERROR spawn time=0ms\n\
            # Totals: pass:1 fail:2 xfail:1 xpass:0 skip:1 error:1\n";
        assert_eq!(out, want);
        assert_eq!(t.exit_code(), KSFT_FAIL);
        // And the parser reads back exactly what was written.
        let s = Summary::parse(&out);
        assert_eq!(s.totals, t);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert_eq!(s.failures.len(), 3);
        assert_eq!(
            s.failures[0],
            ("a/ipv4/y".to_owned(), Status::Fail("second".into()))
        );
    }

    #[test]
    fn planned_vs_run_is_reported() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf);
        w.header(2).unwrap();
        w.result(1, "a/b/c", &Status::Pass, 0).unwrap();
        w.finish(2).unwrap();
        let out = String::from_utf8(buf).unwrap();
        assert!(out.contains("# Planned tests != run tests (2 != 1)"));
        assert_eq!(Summary::parse(&out).exit_code(), KSFT_FAIL);
    }

    #[test]
    fn parses_result_lines() {
        assert_eq!(
            res("ok 1 a/b/c # time=5ms"),
            (1, "a/b/c".into(), Status::Pass)
        );
        assert_eq!(res("ok 1 a/b/c"), (1, "a/b/c".into(), Status::Pass));
        assert_eq!(
            res("not ok 2 a/b/c"),
            (2, "a/b/c".into(), Status::Fail(String::new()))
        );
        assert_eq!(
            res("ok 3 a/b/c # SKIP Tests require TCP-AO support (CONFIG_TCP_AO) time=0ms"),
            (
                3,
                "a/b/c".into(),
                Status::Skip("Tests require TCP-AO support (CONFIG_TCP_AO)".into())
            )
        );
        // kselftest.h's own skip form has no description.
        assert_eq!(
            res("ok 4 # SKIP no vrf"),
            (4, String::new(), Status::Skip("no vrf".into()))
        );
        assert_eq!(
            res("ok 5 x # XFAIL known"),
            (5, "x".into(), Status::XFail("known".into()))
        );
        assert_eq!(
            res("not ok 6 x # TIMEOUT 45 seconds"),
            (6, "x".into(), Status::Timeout(45))
        );
        assert_eq!(
            res("not ok 7 x # TIMEOUT 60s time=60000ms"),
            (7, "x".into(), Status::Timeout(60))
        );
        assert_eq!(
            res("not ok 8 x # ERROR boom"),
            (8, "x".into(), Status::Error("boom".into()))
        );
        assert_eq!(
            res("not ok 9 x # exit=1"),
            (9, "x".into(), Status::Fail("exit=1".into()))
        );
        // An XFAIL directive on `not ok` is still a failure; unknown directives fall back.
        assert_eq!(
            res("not ok 10 x # XFAIL y"),
            (10, "x".into(), Status::Fail("XFAIL y".into()))
        );
        assert_eq!(res("ok 11 x # TODO later"), (11, "x".into(), Status::Pass));
        // Console noise.
        assert_eq!(
            res("\rok 12 x # time=1ms\r"),
            (12, "x".into(), Status::Pass)
        );
    }

    #[test]
    fn non_results_are_not_results() {
        assert_eq!(parse_line("TAP version 13"), Line::Version);
        assert_eq!(parse_line("KTAP version 1"), Line::Version);
        assert_eq!(parse_line("1..864"), Line::Plan(864));
        assert_eq!(parse_line("# ok 1 nested"), Line::Other);
        assert_eq!(parse_line("okay then"), Line::Other);
        assert_eq!(parse_line("[    2.1] not okay"), Line::Other);
        assert_eq!(parse_line("# Totals: pass:1 fail:0"), Line::Other);
        assert_eq!(
            parse_line("# Totals: pass:1 fail:2 xfail:3 xpass:0 skip:4 error:5"),
            Line::Totals(Totals {
                pass: 1,
                fail: 2,
                xfail: 3,
                xpass: 0,
                skip: 4,
                error: 5
            })
        );
    }

    #[test]
    fn parses_libtest_lines() {
        assert_eq!(
            parse_line("test sockopt::roundtrip ... ok"),
            Line::Libtest {
                name: "sockopt::roundtrip".into(),
                status: Status::Pass
            }
        );
        assert!(matches!(
            parse_line("test a ... FAILED"),
            Line::Libtest {
                status: Status::Fail(_),
                ..
            }
        ));
        assert!(matches!(
            parse_line("test a ... ignored, needs root"),
            Line::Libtest {
                status: Status::Skip(_),
                ..
            }
        ));
        assert_eq!(
            parse_line("test result: ok. 3 passed; 0 failed"),
            Line::Other
        );
    }

    #[test]
    fn exit_codes() {
        let all_skip = Summary::parse("TAP version 13\n1..2\nok 1 a # SKIP x\nok 2 b # SKIP y\n");
        assert_eq!(all_skip.exit_code(), KSFT_SKIP);
        let xfail = Summary::parse("TAP version 13\n1..2\nok 1 a\nok 2 b # XFAIL y\n");
        assert_eq!(xfail.exit_code(), KSFT_PASS);
        let empty = Summary::parse("TAP version 13\n1..0\n");
        assert_eq!(empty.exit_code(), KSFT_SKIP);
        assert_eq!(Summary::parse("").exit_code(), KSFT_SKIP);
        let timeout = Summary::parse("TAP version 13\n1..2\nok 1 a\nnot ok 2 b # TIMEOUT 5s\n");
        assert_eq!(timeout.exit_code(), KSFT_FAIL);
        assert_eq!(timeout.failures, vec![("b".into(), Status::Timeout(5))]);
    }

    #[test]
    fn truncated_stream_fails_even_if_all_ok() {
        // The guest died after two of five results.
        let s = Summary::parse("TAP version 13\n1..5\nok 1 a\nok 2 b\n[  9.0] Kernel panic\n");
        assert_eq!(s.missing(), 3);
        assert_eq!(s.exit_code(), KSFT_FAIL);
    }

    #[test]
    fn totals_line_disagreeing_with_results_is_a_problem() {
        let s = Summary::parse(
            "TAP version 13\n1..1\nok 1 a\n# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:0 error:0\n",
        );
        assert_eq!(s.problems().len(), 1);
        assert_eq!(s.exit_code(), KSFT_FAIL);
    }

    #[test]
    fn several_documents_and_libtest_add_up() {
        let s = Summary::parse(
            "running 2 tests\ntest x ... ok\ntest y ... ignored\n\
             TAP version 13\n1..1\nok 1 a\n# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:0 error:0\n\
             TAP version 13\n1..1\nnot ok 1 b\n",
        );
        assert_eq!(s.documents, 2);
        assert_eq!(s.totals.pass, 2);
        assert_eq!(s.totals.skip, 1);
        assert_eq!(s.totals.fail, 1);
        assert_eq!(s.exit_code(), KSFT_FAIL);
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The kernel's own TCP-AO selftests (`tools/testing/selftests/net/tcp_ao`), built from the
//! lab's tree against its `make headers_install` output, and run in the guest next to ours
//! by `tcpao-selftests upstream DIR`, which folds each program's KTAP into one document under
//! `upstream/<program>/<family>/<description>`, so both suites are run, counted and compared
//! with one command.
//!
//! Descriptions become names the way ours are: whitespace, `/` and `#` (KTAP's directive
//! marker) become `-`; a description repeated in one program gets `~2`, `~3`. kselftest prints a
//! skip's or an xfail's text after the directive (`ok 3 # SKIP text`); that text names the
//! result. A program that dies, times out or stops short of its plan adds one failed
//! `upstream/<program>/<family>/exit` result saying so.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Lab;
use super::build::{self, MakeJob};
use super::flavour::FLAVOURS;
use crate::ktap::{self, Line, Status, Totals};
use crate::vm::{VmError, io_err};

/// Programs left out unless named: `bench-lookups` measures, it does not check.
pub const BENCHMARKS: [&str; 1] = ["bench-lookups"];

/// The directory of the kernel's tcp_ao selftests, relative to the tree.
pub const TCP_AO_DIR: &str = "tools/testing/selftests/net/tcp_ao";

/// Builds the kernel's tcp_ao programs from the lab's tree (cached per source id and patch
/// set) and returns the directory holding only the programs and upstream's `settings`.
/// `patches` (`patch -p1`, each touching only [`TCP_AO_DIR`]) are applied to the tree for the
/// build and taken out again, as `vm --patch` does for the kernel.
///
/// # Errors
/// [`VmError::Build`] naming the failing target; [`VmError::Usage`] for a patch that
/// touches other files; [`VmError::Source`] for one that does not apply.
pub fn build(lab: &Lab, patches: &[PathBuf]) -> Result<PathBuf, VmError> {
    let top = lab.root.join("upstream").join(&lab.source.id);
    let id = super::patch_set_id(patches)?;
    let progs = top.join(format!("progs{id}"));
    if progs.join("ready").is_file() {
        return Ok(progs);
    }
    for p in patches {
        let text = fs::read_to_string(p).map_err(io_err(p.display()))?;
        let outside = outside_tcp_ao(&text);
        if !outside.is_empty() {
            return Err(VmError::Usage(format!(
                "{}: an upstream patch may only change {TCP_AO_DIR}; it touches {} (use --patch for the kernel)",
                p.display(),
                outside.join(", ")
            )));
        }
    }
    build::preflight()?;
    let _lock = lab.lock()?;
    let hdr = top.join("usr");
    // headers_install needs no .config; its own O= directory keeps the tree clean.
    let obj = top.join("obj");
    let plain = FLAVOURS[0];
    build::make(&MakeJob {
        source: &lab.source,
        build_dir: &obj,
        flavour: &plain,
        targets: vec!["headers_install".into()],
        vars: vec![format!("INSTALL_HDR_PATH={}", hdr.display())],
        jobs: 2,
        expect: None,
        progress: false,
    })?;
    let out = top.join(format!("build{id}"));
    fs::create_dir_all(&out).map_err(io_err("upstream build dir"))?;
    let dir = lab.source.tree.join(TCP_AO_DIR);
    let log = out.join("make.log");
    // Restored when it drops, whatever happens below.
    let applied = match patches.is_empty() {
        true => None,
        false => Some(super::edit::apply_patches(&lab.source.tree, patches)?),
    };
    let o = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .arg(format!("OUTPUT={}", out.display()))
        .arg(format!("KHDR_INCLUDES=-isystem {}/include", hdr.display()))
        .arg("-j2")
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("make (tcp_ao selftests)"))?;
    let mut all = o.stdout.clone();
    all.extend_from_slice(&o.stderr);
    let _ = fs::write(&log, &all);
    if !o.status.success() {
        let text = String::from_utf8_lossy(&all);
        let f = build::diagnose(&text.lines().map(str::to_owned).collect::<Vec<_>>());
        return Err(VmError::Build {
            target: "tools/testing/selftests/net/tcp_ao".into(),
            failing: f.target,
            detail: f.lines.join("\n"),
            log: log.display().to_string(),
        });
    }
    let _ = fs::remove_dir_all(&progs);
    fs::create_dir_all(&progs).map_err(io_err("upstream progs dir"))?;
    let mut n = 0;
    for e in fs::read_dir(&out)
        .map_err(io_err("upstream build dir"))?
        .flatten()
    {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let exec = p
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if exec && split_program(&name).is_some() {
            fs::copy(&p, progs.join(&name)).map_err(io_err("copying an upstream program"))?;
            n += 1;
        }
    }
    if n == 0 {
        return Err(VmError::Build {
            target: "tools/testing/selftests/net/tcp_ao".into(),
            failing: String::new(),
            detail: format!("no *_ipv4/*_ipv6 programs in {}", out.display()),
            log: log.display().to_string(),
        });
    }
    if let Ok(s) = fs::read_to_string(dir.join("settings")) {
        let _ = fs::write(progs.join("settings"), s);
    }
    if let Some(a) = applied {
        a.restore()?;
    }
    fs::write(progs.join("ready"), format!("{n} programs\n")).map_err(io_err("ready marker"))?;
    eprintln!(
        "# lab: built {n} upstream tcp_ao programs into {}",
        progs.display()
    );
    Ok(progs)
}

/// The files `patch` touches outside [`TCP_AO_DIR`].
fn outside_tcp_ao(patch: &str) -> Vec<String> {
    super::edit::patch_files(patch)
        .into_iter()
        .filter(|f| !f.starts_with(&format!("{TCP_AO_DIR}/")))
        .collect()
}

/// `connect-deny_ipv6` → (`connect-deny`, `ipv6`).
pub fn split_program(file: &str) -> Option<(&str, &str)> {
    let (p, fam) = file.rsplit_once('_')?;
    (matches!(fam, "ipv4" | "ipv6") && !p.is_empty()).then_some((p, fam))
}

/// The programs in `dir` to run: those named (file names, or program names for both
/// families), or all but [`BENCHMARKS`], sorted.
///
/// # Errors
/// When `dir` cannot be read.
pub fn select(dir: &Path, named: &[String]) -> io::Result<Vec<String>> {
    let mut all: Vec<String> = fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| split_program(n).is_some())
        .collect();
    all.sort();
    Ok(all
        .into_iter()
        .filter(|f| {
            let (prog, _) = split_program(f).unwrap_or_default();
            if named.is_empty() {
                !BENCHMARKS.contains(&prog)
            } else {
                named.iter().any(|n| n == f || n == prog)
            }
        })
        .collect())
}

/// A description as a name part: runs of whitespace, `/` and `#` become `-`.
pub fn slug(desc: &str) -> String {
    let mut s = String::with_capacity(desc.len());
    let mut dash = false;
    for c in desc.trim().chars() {
        if c.is_whitespace() || c == '#' || c == '/' {
            if !dash {
                s.push('-');
            }
            dash = true;
        } else {
            s.push(c);
            dash = false;
        }
    }
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() { "unnamed".into() } else { s }
}

/// One upstream program's run, folded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Folded {
    /// (name, status) per result, renamed.
    pub results: Vec<(String, Status)>,
    /// Diagnostics to pass on.
    pub diags: Vec<String>,
}

/// Folds one program's output into named results (see the module docs). `rc` is its exit
/// code (`None`: killed or timed out after `timeout`).
pub fn fold(file: &str, output: &str, rc: Option<i32>, timeout: Option<Duration>) -> Folded {
    let (prog, fam) = split_program(file).unwrap_or((file, "any"));
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut f = Folded::default();
    let mut planned = 0;
    let mut failed = 0;
    for l in output.lines() {
        match ktap::parse_line(l) {
            Line::Plan(n) => planned += n,
            Line::Result { name, status, .. } => {
                let desc = if name.is_empty() {
                    match &status {
                        Status::Skip(r) | Status::XFail(r) | Status::Fail(r) | Status::Error(r) => {
                            r.clone()
                        }
                        _ => String::new(),
                    }
                } else {
                    name
                };
                let base = format!("upstream/{prog}/{fam}/{}", slug(&desc));
                let k = seen.entry(base.clone()).or_insert(0);
                *k += 1;
                let full = if *k == 1 { base } else { format!("{base}~{k}") };
                if matches!(
                    status,
                    Status::Fail(_) | Status::Timeout(_) | Status::Error(_)
                ) {
                    failed += 1;
                }
                f.results.push((full, status));
            }
            Line::Other => {
                let t = l.trim();
                if let Some(d) = t.strip_prefix('#') {
                    f.diags.push(format!("{prog}_{fam}:{d}"));
                } else if !t.is_empty() {
                    f.diags.push(format!("{prog}_{fam}: {t}"));
                }
            }
            Line::Version | Line::Totals(_) | Line::Libtest { .. } => {}
        }
    }
    let got = f.results.len();
    let problem = match rc {
        None => Some(timeout.map_or_else(
            || "was killed".to_owned(),
            |t| format!("timed out after {}s", t.as_secs()),
        )),
        Some(_) if got < planned => Some(format!("stopped after {got} of {planned} results")),
        Some(rc) if rc != ktap::KSFT_PASS && rc != ktap::KSFT_SKIP && failed == 0 => {
            Some(format!("exited {rc} without a failed result"))
        }
        _ => None,
    };
    if let Some(p) = problem {
        let status = if rc.is_none() {
            Status::Timeout(timeout.map_or(0, |t| t.as_secs()))
        } else {
            Status::Fail(format!("{prog}_{fam} {p}"))
        };
        f.results
            .push((format!("upstream/{prog}/{fam}/exit"), status));
    }
    f
}

/// The per-program timeout from upstream's `settings` (`timeout=120`), doubled on a slow
/// machine (`KSFT_MACHINE_SLOW`, set under TCG).
pub fn timeout_from(settings: Option<&str>, slow: bool) -> Duration {
    let secs = settings
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.trim().strip_prefix("timeout="))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .unwrap_or(45);
    Duration::from_secs(if slow { secs * 2 } else { secs })
}

/// `tcpao-selftests upstream DIR [PROGRAM…]`, run in the guest: runs the programs one by one
/// and writes one KTAP document (plan at the end, as TAP 13 allows). Returns the kselftest
/// exit code.
pub fn main(dir: &Path, named: &[String], max_failed: Option<usize>) -> i32 {
    let progs = match select(dir, named) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            eprintln!(
                "tcpao-selftests upstream: no programs to run in {}",
                dir.display()
            );
            return ktap::KSFT_SKIP;
        }
        Err(e) => {
            eprintln!("tcpao-selftests upstream: {}: {e}", dir.display());
            return ktap::KSFT_FAIL;
        }
    };
    let slow = std::env::var("KSFT_MACHINE_SLOW").is_ok_and(|v| v == "yes");
    let timeout = timeout_from(
        fs::read_to_string(dir.join("settings")).ok().as_deref(),
        slow,
    );
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let totals = run_all(&mut out, &progs, timeout, max_failed, |p| {
        run_program(&dir.join(p), timeout)
    });
    totals.exit_code()
}

/// Runs `progs` in order with `run` and writes their folded KTAP to `out`. Once `max_failed`
/// programs have had a failing result (fail, timeout, error), the rest are not started: each
/// is reported as one `upstream/<program>/<family>` SKIP saying why. `mutate` uses it, as it
/// uses our suite's `--max-failures`: one failing program kills a mutant, and a mutant that
/// breaks every connection would otherwise run each program into its timeout.
fn run_all(
    out: &mut impl Write,
    progs: &[String],
    timeout: Duration,
    max_failed: Option<usize>,
    mut run: impl FnMut(&str) -> (String, Option<i32>),
) -> Totals {
    let _ = writeln!(out, "TAP version 13");
    let mut n = 0;
    let mut totals = Totals::default();
    let mut failed_programs = 0;
    for p in progs {
        if let Some(max) = max_failed.filter(|m| failed_programs >= *m) {
            let (prog, fam) = split_program(p).unwrap_or((p.as_str(), "any"));
            let status = Status::Skip(format!("not run: --max-failures {max} reached"));
            n += 1;
            totals.add(&status);
            let name = format!("upstream/{prog}/{fam}");
            let _ = writeln!(out, "{}", ktap::format_result(n, &name, &status, 0));
            continue;
        }
        let _ = writeln!(out, "# upstream: running {p}");
        let _ = out.flush();
        let started = Instant::now();
        let (output, rc) = run(p);
        let ms = started.elapsed().as_millis();
        let f = fold(p, &output, rc, Some(timeout));
        for d in &f.diags {
            let _ = writeln!(out, "# {d}");
        }
        if f.results.iter().any(|(_, s)| crate::harness::is_failure(s)) {
            failed_programs += 1;
        }
        for (name, status) in &f.results {
            n += 1;
            totals.add(status);
            if let Status::Fail(r) = status {
                let _ = writeln!(out, "# {name}: {r}");
            }
            let _ = writeln!(out, "{}", ktap::format_result(n, name, status, 0));
        }
        let _ = writeln!(
            out,
            "# upstream: {p}: {} results in {ms}ms",
            f.results.len()
        );
        let _ = out.flush();
    }
    let _ = writeln!(out, "1..{n}");
    let _ = writeln!(out, "# Totals: {totals}");
    let _ = out.flush();
    totals
}

/// Runs one program with a timeout; its stdout and stderr together. `None` exit code: it was
/// killed (by a signal, or by us at the timeout).
fn run_program(path: &Path, timeout: Duration) -> (String, Option<i32>) {
    let child = Command::new(path)
        .current_dir(path.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (format!("# cannot start {}: {e}", path.display()), Some(1)),
    };
    let mut readers = Vec::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        readers.push(std::thread::spawn(move || {
            let mut s = String::new();
            let mut r = pipe;
            let _ = r.read_to_string(&mut s);
            s
        }));
    }
    let status = crate::vm::engine::wait_deadline(&mut child, Instant::now() + timeout);
    if status.is_none() {
        crate::vm::engine::kill_group(&child);
        let _ = child.wait();
    }
    let text: Vec<String> = readers
        .into_iter()
        .map(|r| r.join().unwrap_or_default())
        .collect();
    (text.join("\n"), status.and_then(|s| s.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_patches_may_only_change_the_tcp_ao_selftests() {
        let new_file = "--- /dev/null\n+++ b/tools/testing/selftests/net/tcp_ao/ip-fragments.c\n";
        let makefile = "--- a/tools/testing/selftests/net/tcp_ao/Makefile\n+++ b/tools/testing/selftests/net/tcp_ao/Makefile\n";
        let kernel = "--- a/net/ipv4/tcp_ao.c\n+++ b/net/ipv4/tcp_ao.c\n";
        let other = "--- a/tools/testing/selftests/net/tcp_ao_x/f\n+++ b/tools/testing/selftests/net/tcp_ao_x/f\n";
        // (patch, files outside)
        let rows: [(String, Vec<&str>); 4] = [
            (format!("Prose.\n---\n{new_file}{makefile}"), vec![]),
            (format!("{makefile}{kernel}"), vec!["net/ipv4/tcp_ao.c"]),
            (
                other.to_owned(),
                vec!["tools/testing/selftests/net/tcp_ao_x/f"],
            ),
            (String::new(), vec![]),
        ];
        for (patch, want) in rows {
            assert_eq!(outside_tcp_ao(&patch), want, "{patch}");
        }
    }

    #[test]
    fn program_names() {
        assert_eq!(
            split_program("connect-deny_ipv6"),
            Some(("connect-deny", "ipv6"))
        );
        assert_eq!(
            split_program("key-management_ipv4"),
            Some(("key-management", "ipv4"))
        );
        assert_eq!(split_program("settings"), None);
        assert_eq!(split_program("lib.a"), None);
        assert_eq!(split_program("_ipv4"), None);
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slug("Non-AO server + AO client"),
            "Non-AO-server-+-AO-client"
        );
        assert_eq!(slug("  a #b\tc  "), "a-b-c");
        assert_eq!(slug("TCP-AO/MD5 key"), "TCP-AO-MD5-key");
        assert_eq!(slug(""), "unnamed");
    }

    #[test]
    fn folding_names_and_counts_results() {
        let out = "TAP version 13\n1..5\n# 123[lib/setup.c:254] rand seed 1\n\
                   ok 1 AO server (INADDR_ANY): connect() succeeded\n\
                   ok 2 # SKIP no VRF support\n\
                   ok 3 # XFAIL listen socket, delete current key\n\
                   not ok 4 Repeated\nok 5 Repeated\n# Totals: pass:2 fail:1 xfail:1 xpass:0 skip:1 error:0\n";
        let f = fold("key-management_ipv6", out, Some(1), None);
        let names: Vec<&str> = f.results.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "upstream/key-management/ipv6/AO-server-(INADDR_ANY):-connect()-succeeded",
                "upstream/key-management/ipv6/no-VRF-support",
                "upstream/key-management/ipv6/listen-socket,-delete-current-key",
                "upstream/key-management/ipv6/Repeated",
                "upstream/key-management/ipv6/Repeated~2",
            ]
        );
        assert_eq!(f.results[1].1, Status::Skip("no VRF support".into()));
        assert!(matches!(f.results[2].1, Status::XFail(_)));
        assert!(matches!(f.results[3].1, Status::Fail(_)));
        assert_eq!(
            f.diags,
            ["key-management_ipv6: 123[lib/setup.c:254] rand seed 1"]
        );
        for n in names {
            crate::registry::validate_name(n.split_once('/').unwrap().1).unwrap();
        }
    }

    #[test]
    fn dead_or_short_programs_add_a_failed_exit_result() {
        let partial = "TAP version 13\n1..3\nok 1 a\n";
        let f = fold("rst_ipv4", partial, Some(0), None);
        assert_eq!(f.results.len(), 2);
        assert_eq!(f.results[1].0, "upstream/rst/ipv4/exit");
        assert!(matches!(&f.results[1].1, Status::Fail(r) if r.contains("1 of 3")));
        let f = fold("rst_ipv4", partial, None, Some(Duration::from_secs(240)));
        assert_eq!(f.results[1].1, Status::Timeout(240));
        let f = fold("rst_ipv4", "TAP version 13\n1..1\nok 1 a\n", Some(1), None);
        assert!(matches!(&f.results[1].1, Status::Fail(r) if r.contains("exited 1")));
        let f = fold("rst_ipv4", "TAP version 13\n1..1\nok 1 a\n", Some(0), None);
        assert_eq!(f.results.len(), 1, "a clean run adds nothing");
        let f = fold(
            "rst_ipv4",
            "TAP version 13\n1..1\nnot ok 1 a\n",
            Some(1),
            None,
        );
        assert_eq!(
            f.results.len(),
            1,
            "exit 1 with a failed result is explained"
        );
    }

    #[test]
    fn max_failures_skips_the_programs_after_the_nth_failing_one() {
        let progs: Vec<String> = ["connect_ipv4", "rst_ipv4", "rst_ipv6", "self-connect_ipv4"]
            .map(str::to_owned)
            .to_vec();
        let mut ran = Vec::new();
        let mut out = Vec::new();
        let t = Duration::from_secs(9);
        let totals = run_all(&mut out, &progs, t, Some(1), |p| {
            ran.push(p.to_owned());
            if p == "rst_ipv4" {
                ("TAP version 13\n1..2\nok 1 a\nnot ok 2 b\n".into(), Some(1))
            } else {
                ("TAP version 13\n1..1\nok 1 a\n".into(), Some(0))
            }
        });
        assert_eq!(
            ran,
            ["connect_ipv4", "rst_ipv4"],
            "nothing starts after the failure"
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("ok 4 upstream/rst/ipv6 # SKIP not run: --max-failures 1 reached"));
        assert!(text.contains("ok 5 upstream/self-connect/ipv4 # SKIP"));
        assert!(text.contains("not ok 3 upstream/rst/ipv4/b"));
        assert!(text.ends_with("1..5\n# Totals: pass:2 fail:1 xfail:0 xpass:0 skip:2 error:0\n"));
        assert_eq!((totals.pass, totals.skip), (2, 2));
        // Without a bound every program runs, and a timed-out one counts as failing too.
        let mut ran = 0;
        run_all(&mut Vec::new(), &progs, t, None, |_| {
            ran += 1;
            (String::new(), None)
        });
        assert_eq!(ran, 4);
        let mut ran = 0;
        run_all(&mut Vec::new(), &progs, t, Some(2), |_| {
            ran += 1;
            (String::new(), None)
        });
        assert_eq!(ran, 2, "timeouts count as failures");
    }

    #[test]
    fn selection_and_timeouts() {
        let t = std::env::temp_dir().join(format!("tcpao-up-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        fs::create_dir_all(&t).unwrap();
        for f in [
            "connect_ipv4",
            "connect_ipv6",
            "bench-lookups_ipv4",
            "settings",
            "ready",
        ] {
            fs::write(t.join(f), "").unwrap();
        }
        assert_eq!(select(&t, &[]).unwrap(), ["connect_ipv4", "connect_ipv6"]);
        assert_eq!(
            select(&t, &["bench-lookups".into()]).unwrap(),
            ["bench-lookups_ipv4"]
        );
        assert_eq!(
            select(&t, &["connect_ipv6".into()]).unwrap(),
            ["connect_ipv6"]
        );
        let _ = fs::remove_dir_all(&t);
        assert_eq!(
            timeout_from(Some("timeout=120\n"), false),
            Duration::from_secs(120)
        );
        assert_eq!(
            timeout_from(Some("timeout=120\n"), true),
            Duration::from_secs(240)
        );
        assert_eq!(timeout_from(None, false), Duration::from_secs(45));
    }
}

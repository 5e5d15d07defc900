// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the guest's run means: kernel log lines and crash markers in the console, the KTAP and
//! libtest results the guest wrote, and the verdict with its report.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::Finished;
use super::fetch::Kernel;
use super::guest::{Output, Staged};
use crate::ktap::{KSFT_FAIL, KSFT_PASS, KSFT_SKIP, Status, Summary, Totals};

/// Console lines that mean the guest kernel crashed or complained.
///
/// Lockdep, RCU and refcount reports start with `WARNING:` or `BUG:`; KASAN with `BUG: KASAN`;
/// hung tasks with `INFO: task … blocked for more than`; RCU stalls with `rcu: INFO: …
/// detected stalls`.
pub const CRASH_MARKERS: [&str; 15] = [
    "Kernel panic",
    "Oops:",
    "BUG:",
    "kernel BUG at",
    "KASAN:",
    "UBSAN:",
    "Call Trace:",
    "general protection fault",
    "WARNING:",
    "Unable to handle kernel",
    "watchdog: BUG: soft lockup",
    "blocked for more than",
    "detected stalls",
    "refcount_t:",
    "suspected memory leak",
];

/// What a suite running in the guest writes into the kernel log to say how far it got (see
/// `programs::race::kmsg::Progress`); [`report`] shows the last such line before a crash.
pub const PROGRESS_TAG: &str = "tcpao-selftests: ";

/// The last progress line (its text from [`PROGRESS_TAG`] on) before the first crash line
/// of `console`, if any.
pub fn progress_before_crash(console: &str) -> Option<String> {
    let mut last = None;
    for l in console.lines() {
        if !is_kernel_line(l) {
            continue;
        }
        if !is_user_fault(l) && CRASH_MARKERS.iter().any(|m| l.contains(m)) {
            break;
        }
        if let Some(i) = l.find(PROGRESS_TAG) {
            last = Some(l[i + PROGRESS_TAG.len()..].trim_end().to_owned());
        }
    }
    last
}

/// Whether a line is kernel log output (`[    1.234567] …`, possibly after console noise).
pub fn is_kernel_line(line: &str) -> bool {
    let t = line.trim_start_matches(['\r', ' ']);
    let Some(rest) = t.strip_prefix('[') else {
        return false;
    };
    let Some((ts, _)) = rest.split_once(']') else {
        return false;
    };
    let ts = ts.trim();
    !ts.is_empty() && ts.chars().all(|c| c.is_ascii_digit() || c == '.') && ts.contains('.')
}

/// Whether a kernel line reports a user-space process's fault, not the kernel's own:
/// `traps: bird[3045] general protection fault ip:… in libc.so.6[…]` or
/// `bird[3045]: segfault at 0 ip …`. The kernel's own faults read `Oops: general protection
/// fault, …` and carry a `Call Trace:`. The process's owner (a test) judges those.
pub fn is_user_fault(line: &str) -> bool {
    if !is_kernel_line(line) {
        return false;
    }
    let msg = line.split_once(']').map_or("", |(_, m)| m);
    // An optional caller id (`[  T42]`) follows the timestamp.
    let msg = match msg.trim_start().strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(msg, |(_, m)| m),
        None => msg,
    };
    let msg = msg.trim_start();
    (msg.starts_with("traps: ") && msg.contains(" ip:")) || msg.contains("]: segfault at ")
}

/// Kernel lines reporting a user-space process's fault ([`is_user_fault`]).
pub fn user_faults(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| is_user_fault(l))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// `lines` of the console, or of the guest's saved `dmesg` when the console has none (a
/// quiet console level keeps kernel lines off it).
fn console_or_dmesg(run: &GuestRun, lines: fn(&str) -> Vec<String>) -> Vec<String> {
    let found = lines(&run.console);
    if found.is_empty() {
        run.dmesg.as_deref().map(lines).unwrap_or_default()
    } else {
        found
    }
}

/// Kernel crash/oops lines in console output, with a few lines of context after each.
pub fn crash_lines(console: &str) -> Vec<String> {
    let lines: Vec<&str> = console.lines().collect();
    let mut out = Vec::new();
    let mut until = 0;
    for (i, l) in lines.iter().enumerate() {
        let hit =
            is_kernel_line(l) && !is_user_fault(l) && CRASH_MARKERS.iter().any(|m| l.contains(m));
        if hit {
            until = until.max(i + 12);
        }
        if i < until && is_kernel_line(l) {
            out.push(l.trim_end().to_owned());
        }
    }
    out.truncate(80);
    out
}

/// One step's recorded output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutput {
    /// The staged step.
    pub step: Staged,
    /// `<id>.out` as the guest wrote it (`None`: missing).
    pub output: Option<String>,
    /// `<id>.rc` (`None`: the step never finished).
    pub rc: Option<i32>,
}

/// What happened to the guest, as seen from the host.
#[derive(Debug, Clone, Default)]
pub struct GuestRun {
    /// vng's exit code (None when killed by the host timeout).
    pub vng_exit: Option<i32>,
    /// The host timeout fired.
    pub timed_out: bool,
    /// Console output (stdout and stderr of vng).
    pub console: String,
    /// Every step, in order.
    pub steps: Vec<StepOutput>,
    /// `dmesg` as the guest saved it at the end.
    pub dmesg: Option<String>,
    /// kmemleak's report after the final scan (empty: no leak; `None`: no kmemleak).
    pub kmemleak: Option<String>,
    /// Whether the guest script ran to its end.
    pub finished: bool,
}

impl GuestRun {
    /// Reads what the guest recorded in `results` for `steps`.
    pub fn read(
        results: &Path,
        steps: &[Staged],
        vng_exit: Option<i32>,
        timed_out: bool,
        console: String,
    ) -> Self {
        let read = |n: &str| fs::read_to_string(results.join(n)).ok();
        GuestRun {
            vng_exit,
            timed_out,
            console,
            steps: steps
                .iter()
                .map(|st| StepOutput {
                    step: st.clone(),
                    output: read(&format!("{}.out", st.id)),
                    rc: read(&format!("{}.rc", st.id)).and_then(|s| s.trim().parse().ok()),
                })
                .collect(),
            dmesg: read("dmesg.txt"),
            kmemleak: read("kmemleak.txt"),
            finished: results.join("finished").is_file(),
        }
    }

    /// The KTAP steps' outputs, concatenated (several KTAP documents).
    pub fn ktap(&self) -> String {
        self.steps
            .iter()
            .filter(|s| s.step.output == Output::Ktap)
            .filter_map(|s| s.output.as_deref())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The verdict on a guest run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// kselftest exit code (0, 1, 4).
    pub exit: i32,
    /// Counts over the KTAP steps and the libtest binaries.
    pub totals: Totals,
    /// Libtest part of the counts.
    pub cargo_totals: Totals,
    /// Why the run failed, if it did (besides failed tests).
    pub problems: Vec<String>,
    /// Remarks that do not fail the run (a libtest binary that printed no results).
    pub notes: Vec<String>,
    /// Kernel crash lines found (console, then dmesg), and kmemleak's report.
    pub crash: Vec<String>,
    /// Failed tests.
    pub failures: Vec<(String, Status)>,
}

/// Classifies a guest run: results from each step's KTAP or libtest output and recorded exit
/// code, kernel crash lines, kmemleak, the host timeout and vng's exit status.
pub fn classify(run: &GuestRun) -> Verdict {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut failures = Vec::new();
    let mut cargo_totals = Totals::default();
    let mut totals = Totals::default();
    let ktap_steps = run
        .steps
        .iter()
        .filter(|s| s.step.output == Output::Ktap)
        .count();
    let mut documents = 0;
    let mut rcs = Vec::new();
    for st in &run.steps {
        let name = &st.step.label;
        match st.step.output {
            Output::Libtest => {
                let s = Summary::parse(st.output.as_deref().unwrap_or_default());
                cargo_totals += s.totals;
                failures.extend(
                    s.failures
                        .iter()
                        .map(|(n, st)| (format!("{name}: {n}"), st.clone())),
                );
                match st.rc {
                    Some(0) => {
                        if s.totals.total() == 0 {
                            notes.push(format!("{name}: exited 0 without printing a test result"));
                        }
                    }
                    Some(c) => {
                        if s.totals.fail == 0 {
                            problems.push(format!("{name}: exited {c} without a failed test line"));
                        }
                    }
                    None => problems.push(format!("{name}: did not finish")),
                }
            }
            Output::Ktap => {
                // The guest's own file is authoritative; with a single KTAP step whose file is
                // missing, fall back to the console.
                let text = st.output.clone().or_else(|| {
                    (ktap_steps == 1).then(|| {
                        run.console
                            .lines()
                            .filter(|l| !is_kernel_line(l))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                });
                let suite = Summary::parse(text.as_deref().unwrap_or_default());
                documents += suite.documents;
                problems.extend(suite.problems().into_iter().map(|p| format!("{name}: {p}")));
                failures.extend(suite.failures.iter().cloned());
                totals += suite.totals;
                match st.rc {
                    Some(rc) if rc != suite.totals.exit_code() && suite.documents > 0 => {
                        problems.push(format!(
                            "{name}: exit code {rc} disagrees with its results ({})",
                            suite.totals
                        ));
                    }
                    Some(rc) if suite.documents == 0 && rc != KSFT_PASS && rc != KSFT_SKIP => {
                        problems.push(format!("{name}: exited {rc}"));
                    }
                    None if run.finished || !st.step.script => {
                        problems.push(format!("{name}: did not finish (no exit code recorded)"));
                    }
                    _ => {}
                }
                if suite.documents == 0 {
                    rcs.push(st.rc);
                }
            }
        }
    }
    let mut crash = console_or_dmesg(run, crash_lines);
    if !crash.is_empty() {
        problems.push(format!(
            "the guest kernel reported a crash/oops: {}",
            crash[0].trim()
        ));
    }
    notes.extend(console_or_dmesg(run, user_faults).into_iter().map(|f| {
        format!("a user-space process faulted (not a kernel report; its test judges it): {f}")
    }));
    match run.kmemleak.as_deref() {
        Some(k) if !k.trim().is_empty() => {
            let leaks = k
                .lines()
                .filter(|l| l.starts_with("unreferenced object"))
                .count();
            problems.push(format!("kmemleak: {leaks} suspected memory leak(s)"));
            crash.extend(k.lines().take(40).map(|l| format!("kmemleak: {l}")));
        }
        // Said, so that a clean run on a kmemleak kernel shows the scan did run.
        Some(_) => notes.push("kmemleak: the final scan found no suspected leak".into()),
        None => {}
    }
    if run.timed_out {
        problems.push("host timeout: the guest hung (killed)".into());
    } else if run.vng_exit == Some(255) && lost_exit_code(run) {
        notes.push(
            "vng exit 255, but the guest did not die: udev timed out, virtme-ng ran the script \
             in its console fallback (which loses the exit code), the script wrote every \
             step's result and the guest powered down"
                .into(),
        );
    } else if run.vng_exit == Some(255) {
        problems.push("the guest died (vng exit 255)".into());
    } else if !run.finished {
        problems.push(format!(
            "the guest script did not run to its end (vng exit {})",
            run.vng_exit.map_or("?".into(), |c| c.to_string())
        ));
    }
    totals += cargo_totals;
    let exit = if !problems.is_empty() {
        KSFT_FAIL
    } else if documents == 0 && cargo_totals.total() == 0 && !rcs.is_empty() {
        // Plain scripts without KTAP: their exit codes decide.
        if rcs.iter().all(|rc| *rc == Some(KSFT_SKIP)) {
            KSFT_SKIP
        } else if rcs
            .iter()
            .all(|rc| matches!(rc, Some(KSFT_PASS | KSFT_SKIP)))
        {
            KSFT_PASS
        } else {
            KSFT_FAIL
        }
    } else {
        totals.exit_code()
    };
    Verdict {
        exit,
        totals,
        cargo_totals,
        problems,
        notes,
        crash,
        failures,
    }
}

/// Whether a vng exit of 255 is virtme-ng's console fallback losing the exit code rather
/// than a dead guest: the script started in that fallback (when udev does not settle in
/// time, as on a loaded debug kernel), wrote its end marker, and the kernel powered down.
fn lost_exit_code(run: &GuestRun) -> bool {
    run.finished
        && run.console.contains("starting script (console fallback)")
        && run.console.contains("reboot: Power down")
}

/// The last `n` kernel log lines of a console.
pub fn last_kernel_lines(console: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = console.lines().filter(|l| is_kernel_line(l)).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Prints the `# vm:` report of a finished run.
pub fn report(done: &Finished, kernel: &Kernel) {
    let v = &done.verdict;
    let mut o = io::stdout().lock();
    let boot = done.boot_time.map_or_else(
        || "guest never came up".into(),
        |b| format!("guest up after {:.1}s", b.as_secs_f64()),
    );
    let _ = writeln!(
        o,
        "# vm: kernel {} ({}), {}, {boot}, total {:.1}s",
        kernel.release.as_deref().unwrap_or("?"),
        kernel.origin,
        if done.kvm { "KVM" } else { "TCG" },
        done.total.as_secs_f64()
    );
    for (name, st) in &v.failures {
        let _ = writeln!(o, "# vm: failed: {name} ({st})");
    }
    for n in &v.notes {
        let _ = writeln!(o, "# vm: note: {n}");
    }
    for p in &v.problems {
        let _ = writeln!(o, "# vm: FAILURE: {p}");
    }
    if !v.crash.is_empty() {
        if let Some(p) = progress_before_crash(&done.run.console) {
            let _ = writeln!(o, "# vm: last progress before the crash: {p}");
        }
        let _ = writeln!(o, "# vm: kernel crash lines:");
        for l in &v.crash {
            let _ = writeln!(o, "# {l}");
        }
    } else if v.exit == KSFT_FAIL {
        let recent = last_kernel_lines(&done.run.console, 15);
        if !recent.is_empty() {
            let _ = writeln!(o, "# vm: last kernel lines:");
            for l in recent {
                let _ = writeln!(o, "# {l}");
            }
        }
    }
    let t = &v.totals;
    let _ = writeln!(
        o,
        "# vm: in-vm: ran {} (passed {}, failed {}, xfail {}), skipped {}, errors {}; libtest part: {} passed, {} failed, {} ignored",
        t.pass + t.fail + t.xfail,
        t.pass,
        t.fail,
        t.xfail,
        t.skip,
        t.error,
        v.cargo_totals.pass,
        v.cargo_totals.fail,
        v.cargo_totals.skip
    );
    let _ = writeln!(
        o,
        "# vm: result: {} (exit {})",
        match v.exit {
            KSFT_PASS => "PASS",
            KSFT_SKIP => "SKIP",
            _ => "FAIL",
        },
        v.exit
    );
    let _ = o.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_progress_line_before_the_first_crash_line_is_found() {
        let console = "\
[  380.100000] tcpao-selftests: race/ipv4/reconnect-vs-rx: 31 iterations: A-before-B 4, B-before-A 1, overlap 26
# some user output tcpao-selftests: not a kernel line
[  385.200000] tcpao-selftests: race/ipv4/reconnect-vs-rx: 37 iterations: A-before-B 5, B-before-A 1, overlap 31
[  393.355678] Oops: general protection fault, probably for non-canonical address 0xdffffc0000000010: 0000 [#1] SMP KASAN NOPTI
[  393.400000] tcpao-selftests: race/ipv4/reconnect-vs-rx: 38 iterations: after the oops
";
        assert_eq!(
            progress_before_crash(console).as_deref(),
            Some(
                "race/ipv4/reconnect-vs-rx: 37 iterations: A-before-B 5, B-before-A 1, overlap 31"
            )
        );
        assert_eq!(progress_before_crash("[    1.0] Oops: x\n"), None);
        assert_eq!(progress_before_crash(""), None);
    }

    fn step(id: &str, output: Output, out: Option<&str>, rc: Option<i32>) -> StepOutput {
        StepOutput {
            step: Staged {
                id: id.into(),
                label: id.into(),
                output,
                script: false,
                argv: vec!["x".into()],
                gcov: false,
            },
            output: out.map(str::to_owned),
            rc,
        }
    }

    fn suite(out: Option<&str>, rc: Option<i32>) -> StepOutput {
        step("suite", Output::Ktap, out, rc)
    }

    fn cargo(name: &str, out: &str, rc: Option<i32>) -> StepOutput {
        step(name, Output::Libtest, Some(out), rc)
    }

    fn ok_run() -> GuestRun {
        GuestRun {
            vng_exit: Some(0),
            console: "[    0.1] Linux version 7.2\n# vm: guest up\nTAP version 13\n".into(),
            steps: vec![suite(
                Some(
                    "TAP version 13\n1..2\nok 1 a/b/c # time=1ms\nok 2 a/b/d # SKIP x time=0ms\n\
                     # Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0\n",
                ),
                Some(0),
            )],
            finished: true,
            ..GuestRun::default()
        }
    }

    #[test]
    fn clean_run_passes() {
        let v = classify(&ok_run());
        assert_eq!(v.exit, 0, "{:?}", v.problems);
        assert_eq!(v.totals.pass, 1);
        assert_eq!(v.totals.skip, 1);
    }

    #[test]
    fn kernel_panic_in_console_fails() {
        let mut r = ok_run();
        r.console.push_str("[   12.5] sysrq: Trigger a crash\n[   12.5] Kernel panic - not syncing: sysrq triggered crash\n[   12.6] Call Trace:\n");
        r.vng_exit = Some(255);
        let v = classify(&r);
        assert_eq!(v.exit, 1);
        assert!(
            v.crash.iter().any(|l| l.contains("Kernel panic")),
            "{:?}",
            v.crash
        );
        assert!(v.problems.iter().any(|p| p.contains("vng exit 255")));
    }

    #[test]
    fn user_space_faults_are_notes_not_crashes() {
        let mut r = ok_run();
        r.dmesg = Some(
            "[  485.594536] traps: ld-linux-x86-64[3045] general protection fault \
             ip:7fb2be897499 sp:7fff757435d8 error:0 in libc.so.6[16a499,7fb2be755000+168000]\n\
             [  12.5][  T99] bird[77]: segfault at 0 ip 00005555 sp 00007ffd error 4 in bird\n"
                .into(),
        );
        let v = classify(&r);
        assert_eq!(v.exit, 0, "{:?}", v.problems);
        assert!(v.crash.is_empty(), "{:?}", v.crash);
        assert_eq!(v.notes.len(), 2, "{:?}", v.notes);
        assert!(
            v.notes[0].contains("ld-linux-x86-64[3045]"),
            "{:?}",
            v.notes
        );
        // The kernel's own general protection fault still fails the run.
        let mut r = ok_run();
        r.dmesg = Some(
            "[  9.1] Oops: general protection fault, probably for non-canonical address \
             0xdffffc0000000001: 0000 [#1] SMP KASAN NOPTI\n"
                .into(),
        );
        assert_eq!(classify(&r).exit, 1);
    }

    #[test]
    fn crash_words_in_test_output_are_not_crashes() {
        let mut r = ok_run();
        r.console
            .push_str("# a/b/c: expected BUG: none, Call Trace: none\n");
        assert_eq!(classify(&r).exit, 0);
        let mut r = ok_run();
        r.dmesg = Some("[    3.0] WARNING: CPU: 0 PID: 1 at net/ipv4/tcp_ao.c:1\n".into());
        assert_eq!(classify(&r).exit, 1, "dmesg warnings count");
    }

    #[test]
    fn sanitizer_lockdep_and_hung_task_reports_fail() {
        for line in [
            "[   5.1][  T42] BUG: KASAN: slab-use-after-free in tcp_ao_established_key+0x1a/0x90",
            "[   5.1] WARNING: suspicious RCU usage",
            "[   5.1] WARNING: possible circular locking dependency detected",
            "[ 125.0] INFO: task tcpao-selftest:77 blocked for more than 120 seconds.",
            "[   9.9] refcount_t: underflow; use-after-free.",
            "[  30.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
        ] {
            let mut r = ok_run();
            r.console.push_str(line);
            r.console.push('\n');
            let v = classify(&r);
            assert_eq!(v.exit, 1, "{line}");
            assert_eq!(v.crash.first().map(String::as_str), Some(line));
        }
    }

    #[test]
    fn kmemleak_reports_fail_and_an_empty_report_does_not() {
        let mut r = ok_run();
        assert!(!classify(&r).notes.iter().any(|n| n.contains("kmemleak")));
        r.kmemleak = Some(String::new());
        let v = classify(&r);
        assert_eq!(v.exit, 0);
        assert!(
            v.notes
                .iter()
                .any(|n| n.contains("found no suspected leak")),
            "{v:?}"
        );
        r.kmemleak = Some(
            "unreferenced object 0xffff888003a1c000 (size 256):\n  comm \"t\", pid 7\n  backtrace:\n    tcp_ao_info_cmd+0x1/0x2\n"
                .into(),
        );
        let v = classify(&r);
        assert_eq!(v.exit, 1);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("1 suspected memory leak")),
            "{v:?}"
        );
        assert!(v.crash.iter().any(|l| l.contains("tcp_ao_info_cmd")));
    }

    #[test]
    fn console_fallback_exit_255_is_a_note_but_a_dead_guest_fails() {
        let mut r = ok_run();
        r.vng_exit = Some(255);
        r.console.push_str(
            "[  847.5] virtme-ng-init: Failed to wait for daemon to reply: Connection timed out\n\
             [  848.0] virtme-ng-init: starting script (console fallback)\n",
        );
        // Without the power-down line the guest may have died after its marker.
        let v = classify(&r);
        assert_eq!(v.exit, 1);
        assert!(v.problems.iter().any(|p| p.contains("vng exit 255")));
        r.console.push_str("[ 1287.9] reboot: Power down\n");
        let v = classify(&r);
        assert_eq!(v.exit, 0, "{:?}", v.problems);
        assert!(
            v.notes.iter().any(|n| n.contains("console fallback")),
            "{:?}",
            v.notes
        );
        // A script that never wrote its end marker is still a failure.
        r.finished = false;
        let v = classify(&r);
        assert_eq!(v.exit, 1);
    }

    #[test]
    fn host_timeout_keeps_partial_results_and_fails() {
        let mut r = ok_run();
        r.steps = vec![suite(Some("TAP version 13\n1..3\nok 1 a/b/c\n"), None)];
        r.finished = false;
        r.timed_out = true;
        r.vng_exit = None;
        let v = classify(&r);
        assert_eq!(v.exit, 1);
        assert_eq!(v.totals.pass, 1);
        assert!(v.problems.iter().any(|p| p.contains("host timeout")));
        assert!(v.problems.iter().any(|p| p.contains("plan promised 3")));
    }

    #[test]
    fn aborted_binary_is_a_failure() {
        let mut r = ok_run();
        r.steps = vec![suite(
            Some("TAP version 13\n1..2\nnot ok 1 a/b/c # time=0ms\n"),
            Some(134),
        )];
        let v = classify(&r);
        assert_eq!(v.exit, 1);
        assert!(
            v.problems.iter().any(|p| p.contains("exit code 134")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn missing_ktap_file_falls_back_to_console() {
        let mut r = ok_run();
        r.steps = vec![suite(None, Some(0))];
        r.console = "TAP version 13\n1..1\n[ 1.0] eth0 up\nok 1 a/b/c\n".into();
        assert_eq!(classify(&r).exit, 0);
        r.console = "TAP version 13\n1..2\nok 1 a/b/c\n".into();
        assert_eq!(classify(&r).exit, 1);
    }

    #[test]
    fn suite_claiming_success_against_failed_results_fails() {
        let mut r = ok_run();
        r.steps = vec![suite(
            Some("TAP version 13\n1..1\nnot ok 1 a/b/c\n"),
            Some(0),
        )];
        let v = classify(&r);
        assert_eq!(v.exit, 1);
        assert!(v.problems.iter().any(|p| p.contains("disagrees")));
    }

    #[test]
    fn two_ktap_steps_are_counted_together_and_each_checked() {
        let mut r = ok_run();
        r.steps.push(step(
            "upstream",
            Output::Ktap,
            Some("TAP version 13\nok 1 upstream/connect/ipv4/x\nnot ok 2 upstream/connect/ipv4/y\n1..2\n"),
            Some(1),
        ));
        let v = classify(&r);
        assert_eq!(v.totals.pass, 2);
        assert_eq!(v.totals.fail, 1);
        assert_eq!(v.exit, 1);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.failures[0].0, "upstream/connect/ipv4/y");
        // The second document stopping half way is a problem of its own.
        r.steps[1] = step(
            "upstream",
            Output::Ktap,
            Some("TAP version 13\n1..5\nok 1 u/v/w\n"),
            None,
        );
        let v = classify(&r);
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("upstream: plan promised 5")),
            "{v:?}"
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("upstream: did not finish")),
            "{v:?}"
        );
    }

    #[test]
    fn all_skipped_is_4_and_script_rc_decides_without_ktap() {
        let mut r = ok_run();
        r.steps = vec![suite(
            Some("TAP version 13\n1..1\nok 1 a/b/c # SKIP no\n"),
            Some(4),
        )];
        assert_eq!(classify(&r).exit, 4);
        let mut r = ok_run();
        r.steps = vec![suite(Some("hello\n"), Some(0))];
        assert_eq!(classify(&r).exit, 0);
        r.steps = vec![suite(Some("hello\n"), Some(2))];
        assert_eq!(classify(&r).exit, 1);
    }

    #[test]
    fn libtest_binaries_count_and_fail() {
        let mut r = ok_run();
        r.steps.push(cargo(
            "sockopt",
            "running 2 tests\ntest x ... ok\ntest y ... ok\n",
            Some(0),
        ));
        r.steps
            .push(cargo("keys", "test z ... FAILED\n", Some(101)));
        let v = classify(&r);
        assert_eq!(v.cargo_totals.pass, 2);
        assert_eq!(v.cargo_totals.fail, 1);
        assert_eq!(v.totals.pass, 3);
        assert_eq!(v.exit, 1);
        let base = ok_run().steps;
        let with = |c: StepOutput| {
            let mut r = ok_run();
            r.steps = base.clone();
            r.steps.push(c);
            r
        };
        assert!(
            classify(&with(cargo("sockopt", "test x ... ok\n", None)))
                .problems
                .iter()
                .any(|p| p.contains("did not finish"))
        );
        let v = classify(&with(cargo("layout", "", Some(0))));
        assert!(
            v.notes.iter().any(|p| p.contains("without printing")),
            "{v:?}"
        );
        assert_eq!(
            v.exit, 0,
            "a harness=false binary that prints nothing is a note"
        );
        assert!(
            classify(&with(cargo("sockopt", "test x ... ok\n", Some(139))))
                .problems
                .iter()
                .any(|p| p.contains("exited 139"))
        );
    }

    #[test]
    fn kernel_line_detection() {
        assert!(is_kernel_line("[    1.234567] Linux version"));
        assert!(is_kernel_line("\r[   12.5] Kernel panic"));
        assert!(is_kernel_line("[    5.100000][  T42] BUG: KASAN: x"));
        assert!(!is_kernel_line("[ok] fine"));
        assert!(!is_kernel_line("ok 1 a/b/c"));
        assert!(!is_kernel_line("[]"));
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fuzzing loop: pick (generate, mutate, splice) a program, run it, keep it when it
//! reaches new edges of the TCP-AO code (feedback) or never (blind), turn every finding into
//! a minimal program, a suite test case and a C reproducer, print progress, write a JSON
//! summary and a coverage timeline.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::exec::{Executor, Finding, edges};
use super::mutate::{self, Rng};
use super::prog::Prog;
use super::repro;
use crate::cli::FuzzArgs;

/// Kernel console lines that are findings on their own.
pub const CONSOLE_MARKERS: [&str; 12] = [
    "BUG:",
    "KASAN:",
    "WARNING:",
    "Oops",
    "general protection fault",
    "refcount_t:",
    "possible circular locking",
    "suspicious RCU usage",
    "blocked for more than",
    "UBSAN:",
    "kernel BUG at",
    "list_del corruption",
];

/// `/dev/kmsg`, read from the end: new kernel messages after each program.
#[derive(Debug)]
pub struct Console {
    f: Option<fs::File>,
}

impl Console {
    /// Opens `/dev/kmsg` positioned at its end (`None` inside when unreadable).
    pub fn open() -> Console {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()
            .and_then(|mut f| f.seek(SeekFrom::End(0)).ok().map(|_| f));
        Console { f }
    }

    /// Whether the console is read.
    pub fn available(&self) -> bool {
        self.f.is_some()
    }

    /// New kernel lines with a crash marker.
    pub fn reports(&mut self) -> Vec<String> {
        let Some(f) = self.f.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        for _ in 0..4096 {
            match f.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let msg = rec.split_once(';').map_or(&*rec, |(_, m)| m).trim_end();
                    if CONSOLE_MARKERS.iter().any(|m| msg.contains(m)) {
                        out.push(msg.lines().next().unwrap_or("").to_owned());
                    }
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => {}
                _ => break,
            }
        }
        out
    }
}

/// One point of the coverage timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since start.
    pub secs: f64,
    /// Programs executed.
    pub execs: u64,
    /// Distinct edges.
    pub edges: usize,
    /// Distinct PCs.
    pub pcs: usize,
    /// Corpus size.
    pub corpus: usize,
    /// Findings.
    pub findings: usize,
}

/// A finding as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Reported {
    /// Signature (kind/op/detail without numbers).
    pub signature: String,
    /// `divergence`, `wire`, `counter`, `console`.
    pub kind: String,
    /// The first detail seen.
    pub detail: String,
    /// Seconds until it was first seen.
    pub first_secs: f64,
    /// Executions until it was first seen.
    pub first_exec: u64,
    /// Times seen.
    pub count: u64,
    /// Operations of the minimised program.
    pub min_ops: usize,
    /// Where the reproducers were written.
    pub dir: Option<String>,
}

/// The JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `feedback` or `blind`.
    pub mode: String,
    /// Why blind, when blind.
    pub blind_reason: Option<String>,
    /// Seed.
    pub seed: u64,
    /// Kernel release.
    pub kernel: String,
    /// Seconds run.
    pub secs: f64,
    /// Programs executed.
    pub execs: u64,
    /// Operations executed.
    pub ops: u64,
    /// Executions per second.
    pub execs_per_sec: f64,
    /// Distinct edges reached.
    pub edges: usize,
    /// Distinct PCs reached.
    pub pcs: usize,
    /// Corpus size.
    pub corpus: usize,
    /// Calls whose result the model predicted, and calls it left open.
    pub judged: (u64, u64),
    /// Whether the kernel console was watched.
    pub console: bool,
    /// TCP-AO segments between the namespaces (veth) the wire oracle verified.
    pub veth_segments_verified: u64,
    /// Findings.
    pub findings: Vec<Reported>,
    /// Coverage over time.
    pub timeline: Vec<Sample>,
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |s| s.trim().into())
}

/// Entry point of `tcpao-selftests fuzz`.
pub fn main(args: &FuzzArgs) -> i32 {
    if args.compare {
        return compare(args);
    }
    // Namespaces belong to threads: the whole run happens in one thread of its own.
    let a = args.clone();
    match std::thread::Builder::new()
        .name("fuzz".into())
        .spawn(move || run(&a))
        .map(std::thread::JoinHandle::join)
    {
        Ok(Ok(code)) => code,
        _ => {
            eprintln!("tcpao-selftests fuzz: the fuzzing thread failed");
            1
        }
    }
}

/// Feedback and blind side by side: two threads, same time budget, same seed.
fn compare(args: &FuzzArgs) -> i32 {
    let mut handles = Vec::new();
    for (name, blind) in [("feedback", false), ("blind", true)] {
        let mut a = args.clone();
        a.compare = false;
        a.blind = blind;
        a.out = args.out.as_ref().map(|o| o.join(name));
        handles.push(
            std::thread::Builder::new()
                .name(format!("fuzz-{name}"))
                .spawn(move || run(&a)),
        );
    }
    let mut worst = 0;
    for h in handles {
        let code = match h.map(std::thread::JoinHandle::join) {
            Ok(Ok(c)) => c,
            _ => 1,
        };
        worst = worst.max(code);
    }
    worst
}

/// Whether this kernel answers TCP-AO socket options at all.
fn tcp_ao_supported() -> Result<(), String> {
    match tcpao_sys::probe(&[]) {
        Ok(c) if c.tcp_ao => Ok(()),
        Ok(_) => Err("this kernel has no TCP-AO (CONFIG_TCP_AO)".into()),
        Err(e) => Err(format!("probing TCP-AO: {e}")),
    }
}

fn run(args: &FuzzArgs) -> i32 {
    if let Err(why) = tcp_ao_supported() {
        println!("# fuzz: SKIP: {why}");
        return 4;
    }
    let want_kcov = !args.no_kcov;
    let (mut ex, kcov_why) = match Executor::new(want_kcov) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tcpao-selftests fuzz: building the topology: {e}");
            return 1;
        }
    };
    if let Some(path) = &args.replay {
        return replay(&mut ex, path);
    }
    if args.kcov_probe {
        return super::probe::kcov_probe(&mut ex);
    }
    let feedback = ex.has_kcov() && !args.blind;
    let blind_reason = if feedback {
        None
    } else if args.blind {
        Some("--blind: coverage is measured but not used".to_owned())
    } else {
        kcov_why.clone()
    };
    let mode = if feedback { "feedback" } else { "blind" };
    eprintln!(
        "# fuzz: mode {mode}{}; kernel {}; seed {}",
        blind_reason
            .as_ref()
            .map_or(String::new(), |w| format!(" ({w})")),
        kernel_release(),
        args.seed
    );
    if !ex.has_tun() {
        eprintln!("# fuzz: no TUN device (CONFIG_TUN): the virtual peer's operations do nothing");
    }
    if !ex.has_kcov() {
        eprintln!("# fuzz: no KCOV: running blind, coverage is not measured (edges stay 0)");
    }
    let out = args.out.clone();
    if let Some(o) = &out {
        let _ = fs::create_dir_all(o.join("findings"));
        let _ = fs::create_dir_all(o.join("corpus"));
    }
    let mut console = Console::open();
    let mut rng = Rng::new(args.seed);
    let mut corpus: Vec<Prog> = load_corpus(args.corpus.as_deref());
    let mut all_edges: BTreeSet<u64> = BTreeSet::new();
    let mut all_pcs: BTreeSet<u64> = BTreeSet::new();
    let mut findings: BTreeMap<String, Reported> = BTreeMap::new();
    let mut timeline = Vec::new();
    let start = Instant::now();
    let limit = args.time.map(Duration::from_secs);
    let tty = std::io::stderr().is_terminal();
    let mut last_print = Instant::now();
    let mut last_sample = -1.0f64;
    let (mut execs, mut ops_total, mut judged) = (0u64, 0u64, (0u64, 0u64));
    loop {
        if args.iterations.is_some_and(|n| execs >= n)
            || limit.is_some_and(|l| start.elapsed() >= l)
            || (args.iterations.is_none() && limit.is_none() && execs >= 1000)
        {
            break;
        }
        let p = pick(&mut rng, &corpus, feedback);
        let r = ex.run(&p);
        execs += 1;
        ops_total += r.ops as u64;
        judged.0 += r.judged.0;
        judged.1 += r.judged.1;
        for n in &r.notes {
            eprintln!("# fuzz: exec {execs}: {n}");
        }
        let (e, pcs) = edges(&r.pcs);
        let new = e.iter().filter(|x| !all_edges.contains(x)).count();
        all_edges.extend(e);
        all_pcs.extend(pcs);
        if feedback && new > 0 {
            if let Some(o) = &out {
                let _ = fs::write(
                    o.join("corpus").join(format!("{:06}.json", corpus.len())),
                    p.to_json(),
                );
            }
            corpus.push(p.clone());
        }
        let mut found: Vec<Finding> = r.finding.into_iter().collect();
        for line in console.reports() {
            found.push(Finding {
                kind: "console".into(),
                op: p.ops.len().saturating_sub(1),
                op_name: "kernel".into(),
                detail: line,
            });
        }
        for f in found {
            let sig = f.signature();
            let secs = start.elapsed().as_secs_f64();
            if let Some(rep) = findings.get_mut(&sig) {
                rep.count += 1;
                continue;
            }
            eprintln!(
                "\n# fuzz: finding after {secs:.1}s (exec {execs}): [{}] op {} {}: {}",
                f.kind, f.op, f.op_name, f.detail
            );
            let (min, dir) = minimise_and_write(&mut ex, &p, &f, out.as_deref(), findings.len());
            findings.insert(
                sig.clone(),
                Reported {
                    signature: sig,
                    kind: f.kind.clone(),
                    detail: f.detail.clone(),
                    first_secs: secs,
                    first_exec: execs,
                    count: 1,
                    min_ops: min.ops.len(),
                    dir,
                },
            );
            if args.stop_on_finding {
                break;
            }
        }
        if args.stop_on_finding && !findings.is_empty() {
            break;
        }
        let secs = start.elapsed().as_secs_f64();
        if secs - last_sample >= args.sample_secs as f64 || execs == 1 {
            last_sample = secs;
            timeline.push(Sample {
                secs,
                execs,
                edges: all_edges.len(),
                pcs: all_pcs.len(),
                corpus: corpus.len(),
                findings: findings.len(),
            });
        }
        if last_print.elapsed() >= Duration::from_secs(if tty { 1 } else { 30 }) {
            last_print = Instant::now();
            let line = format!(
                "# fuzz: {:>6.0}s {execs} execs ({:.1}/s) edges {} pcs {} corpus {} findings {}",
                secs,
                execs as f64 / secs.max(0.001),
                all_edges.len(),
                all_pcs.len(),
                corpus.len(),
                findings.len()
            );
            if tty {
                eprint!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    timeline.push(Sample {
        secs,
        execs,
        edges: all_edges.len(),
        pcs: all_pcs.len(),
        corpus: corpus.len(),
        findings: findings.len(),
    });
    let summary = Summary {
        mode: mode.into(),
        blind_reason,
        seed: args.seed,
        kernel: kernel_release(),
        secs,
        execs,
        ops: ops_total,
        execs_per_sec: execs as f64 / secs.max(0.001),
        edges: all_edges.len(),
        pcs: all_pcs.len(),
        corpus: corpus.len(),
        judged,
        console: console.available(),
        veth_segments_verified: ex.veth_verified(),
        findings: findings.into_values().collect(),
        timeline,
    };
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    if tty {
        eprintln!();
    }
    if let Some(o) = &out {
        let _ = fs::write(o.join("summary.json"), &json);
    }
    println!("{json}");
    if summary.findings.is_empty() { 0 } else { 1 }
}

/// Reads a program from a `prog.json` or a `case.json` (`{"prog": ...}`).
///
/// # Errors
/// A description of what is wrong with the file.
pub fn read_prog(text: &str) -> Result<Prog, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let p = v.get("prog").cloned().unwrap_or(v);
    let p: Prog = serde_json::from_value(p).map_err(|e| e.to_string())?;
    p.validate()?;
    Ok(p)
}

fn replay(ex: &mut Executor, path: &Path) -> i32 {
    let p = match fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| read_prog(&t))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tcpao-selftests fuzz: {}: {e}", path.display());
            return 1;
        }
    };
    print!("{p}");
    let r = ex.run(&p);
    match r.finding {
        None => {
            println!(
                "# replay: no finding ({} calls judged by the model)",
                r.judged.0
            );
            0
        }
        Some(f) => {
            println!(
                "# replay: [{}] op {} {}: {}",
                f.kind, f.op, f.op_name, f.detail
            );
            1
        }
    }
}

fn load_corpus(dir: Option<&Path>) -> Vec<Prog> {
    let Some(d) = dir else { return Vec::new() };
    let mut v: Vec<PathBuf> = fs::read_dir(d)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v.iter()
        .filter_map(|p| Prog::from_json(&fs::read_to_string(p).ok()?).ok())
        .collect()
}

/// The next program: with feedback, mostly a mutation (or splice) of a corpus program; blind,
/// always a fresh program with up to three mutations.
fn pick(r: &mut Rng, corpus: &[Prog], feedback: bool) -> Prog {
    if !feedback || corpus.is_empty() || r.chance(1, 10) {
        let mut p = mutate::generate(r);
        for _ in 0..r.below(4) {
            mutate::mutate(r, &mut p);
        }
        return p;
    }
    let a = &corpus[r.below(corpus.len() as u64) as usize];
    let mut p = if r.chance(1, 8) && corpus.len() > 1 {
        let b = &corpus[r.below(corpus.len() as u64) as usize];
        mutate::splice(r, a, b)
    } else {
        a.clone()
    };
    for _ in 0..1 + r.below(3) {
        mutate::mutate(r, &mut p);
    }
    p
}

fn minimise_and_write(
    ex: &mut Executor,
    p: &Prog,
    f: &Finding,
    out: Option<&Path>,
    n: usize,
) -> (Prog, Option<String>) {
    let sig = f.signature();
    let min = if f.kind == "console" {
        p.clone()
    } else {
        mutate::minimise(p, 150, |cand| {
            ex.run(cand).finding.is_some_and(|g| g.signature() == sig)
        })
    };
    let confirmed = ex.run(&min).finding;
    eprintln!(
        "# fuzz: minimised to {} of {} operations{}:\n{min}",
        min.ops.len(),
        p.ops.len(),
        if confirmed.as_ref().is_some_and(|g| g.signature() == sig) {
            ""
        } else {
            " (did not reproduce on the last run)"
        }
    );
    let Some(o) = out else { return (min, None) };
    let slug: String = sig
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(60)
        .collect();
    let dir = o.join("findings").join(format!("{n:03}-{slug}"));
    let _ = fs::create_dir_all(&dir);
    let detail = confirmed.as_ref().unwrap_or(f);
    let _ = fs::write(dir.join("prog.json"), min.to_json());
    let _ = fs::write(
        dir.join("prog.txt"),
        format!(
            "# [{}] op {}: {}\n{min}",
            detail.kind, detail.op, detail.detail
        ),
    );
    let _ = fs::write(
        dir.join("repro.c"),
        repro::c_program(&min, ex.devices(), detail),
    );
    let _ = fs::write(dir.join("case.json"), repro::suite_case(&min, detail));
    if let Ok(mut file) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(o.join("findings.txt"))
    {
        let _ = writeln!(
            file,
            "{}\t{}\t{}",
            dir.display(),
            detail.kind,
            detail.detail
        );
    }
    (min, Some(dir.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blind_picks_fresh_programs_feedback_mutates_the_corpus() {
        let mut r = Rng::new(1);
        let corpus = vec![mutate::generate(&mut Rng::new(99))];
        let mut from_corpus = 0;
        for _ in 0..200 {
            let p = pick(&mut r, &corpus, true);
            if p.ops.first() == corpus[0].ops.first() && p.ops.len() + 4 >= corpus[0].ops.len() {
                from_corpus += 1;
            }
            p.validate().unwrap();
        }
        assert!(from_corpus > 100, "{from_corpus}");
        // Blind never looks at the corpus: the same rng sequence as with an empty corpus.
        let a = pick(&mut Rng::new(5), &corpus, false);
        let b = pick(&mut Rng::new(5), &[], false);
        assert_eq!(a, b);
    }

    #[test]
    fn console_markers_cover_the_sanitizers() {
        for m in [
            "KASAN:",
            "WARNING:",
            "BUG:",
            "refcount_t:",
            "blocked for more than",
        ] {
            assert!(CONSOLE_MARKERS.contains(&m));
        }
    }
}

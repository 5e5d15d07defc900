// SPDX-License-Identifier: MIT OR Apache-2.0
//! The lab's commands: `kernel build|list`, `coverage`, `mutate`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::coverage::{self, Coverage, ProgramLines};
use super::mutate::{self, Fate, Mutant, Outcome, Score};
use super::{BuildPolicy, FLAVOURS, Flavour, Lab, LabImage, fmt_secs, upstream};
use crate::cli::{Accel, CoverageArgs, KernelAction, KernelArgs, MutateArgs, VmArgs};
use crate::harness;
use crate::ktap::{KSFT_FAIL, KSFT_PASS, Summary};
use crate::vm::{self, Finished, Machine, Step, VmError, io_err};

use crate::vm::engine::catch_signals;
pub use crate::vm::engine::interrupted;

fn fail(e: &VmError) -> i32 {
    eprintln!("tcpao-selftests: {e}");
    KSFT_FAIL
}

/// `tcpao-selftests kernel build|list`.
pub fn kernel(args: &KernelArgs) -> i32 {
    match &args.action {
        KernelAction::Build {
            source,
            flavours,
            force,
            patches,
        } => {
            let lab = match Lab::open(source.as_deref()) {
                Ok(l) => l,
                Err(e) => return fail(&e),
            };
            let policy = if *force {
                BuildPolicy::Always
            } else {
                BuildPolicy::IfMissing
            };
            for f in flavours {
                match lab.patched_image(f, patches, policy) {
                    Ok(img) if img.objects == 0 && img.build_secs == 0.0 => {
                        println!("{f}: {} ({}, cached)", img.image.display(), img.release);
                    }
                    Ok(img) => println!(
                        "{f}: {} ({}, {} objects in {})",
                        img.image.display(),
                        img.release,
                        img.objects,
                        fmt_secs(Duration::from_secs_f64(img.build_secs))
                    ),
                    Err(e) => return fail(&e),
                }
            }
            KSFT_PASS
        }
        KernelAction::List { source } => {
            for f in FLAVOURS {
                println!("{:<9} {} (slowdown x{})", f.name, f.about, f.slowdown);
            }
            let lab = match Lab::open(source.as_deref()) {
                Ok(l) => l,
                Err(e) => return fail(&e),
            };
            println!(
                "# source {} at {}",
                lab.source.id,
                lab.source.tree.display()
            );
            let dir = lab.root.join("images");
            let mut imgs: Vec<LabImage> = fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| serde_json::from_str(&fs::read_to_string(e.path()).ok()?).ok())
                .collect();
            imgs.sort_by(|a, b| a.image.cmp(&b.image));
            for i in imgs {
                let current = Flavour::named(&i.flavour)
                    .is_some_and(|f| super::build::config_hash(&lab.source, &f) == i.config_hash);
                println!(
                    "{} {} {}{}",
                    i.flavour,
                    i.release,
                    i.image.display(),
                    if current { "" } else { " (stale config)" }
                );
            }
            KSFT_PASS
        }
    }
}

/// Which suites a coverage or mutation run measures.
fn suites(upstream: bool, both: bool) -> Vec<&'static str> {
    if both {
        vec!["ours", "upstream"]
    } else if upstream {
        vec!["upstream"]
    } else {
        vec!["ours"]
    }
}

/// Our programs (in registry order) whose tests match `filters`, with the names selected.
fn our_programs(filters: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in harness::select(crate::all_tests(), filters, false) {
        let p = t.program().to_owned();
        match out.iter_mut().find(|(q, _)| *q == p) {
            Some((_, names)) => names.push(t.name().to_owned()),
            None => out.push((p, vec![t.name().to_owned()])),
        }
    }
    out
}

/// The step running one of our programs (all of it, or the filtered names).
fn our_step(program: &str, names: Option<&[String]>, jobs: usize) -> Step {
    let mut args = vec!["--jobs".to_owned(), jobs.to_string()];
    match names {
        Some(n) => {
            args.push("--exact".into());
            args.extend(n.iter().cloned());
        }
        None => args.push(format!("{program}/*")),
    }
    Step::suite(format!("ours-{program}"), args)
}

fn machine(kernel: vm::Kernel, timeout: Duration) -> Machine {
    Machine {
        kernel,
        accel: Accel::Auto,
        cpus: None,
        memory: "2G".into(),
        timeout,
        qemu_opts: None,
        echo: true,
    }
}

/// The coverage steps of a suite: one per program, gcov reset before and saved after.
fn coverage_steps(
    lab: &Lab,
    suite: &str,
    filters: &[String],
    jobs: usize,
) -> Result<Vec<Step>, VmError> {
    if suite == "ours" {
        let whole = filters.is_empty();
        return Ok(our_programs(filters)
            .into_iter()
            .map(|(p, names)| our_step(&p, (!whole).then_some(&names[..]), jobs).with_gcov())
            .collect());
    }
    let dir = lab.upstream_programs()?;
    let files = upstream::select(&dir, filters).map_err(io_err(dir.display()))?;
    Ok(files
        .into_iter()
        .map(|f| Step::upstream(format!("upstream-{f}"), dir.clone(), vec![f]).with_gcov())
        .collect())
}

/// Reads each gcov step of `done` into the suite's coverage and which program covers which line.
fn read_coverage(
    done: &Finished,
    img: &LabImage,
    tree: &Path,
    suite: &str,
) -> Result<(Coverage, ProgramLines), VmError> {
    let mut total = Coverage::default();
    let mut programs = ProgramLines::default();
    let prefix = format!("{suite}-");
    for st in &done.run.steps {
        let id = &st.step.id;
        if !st.step.gcov || !id.starts_with(&prefix) {
            continue;
        }
        let gcda = done.results.join("gcov").join(id);
        let work = done.results.join("gcov-work").join(id);
        let c = coverage::read_step(&gcda, &img.build_dir, tree, &work)?;
        programs.0.insert(id.clone(), c.covered_lines());
        total.merge(&c);
    }
    Ok((total, programs))
}

fn reports_dir(lab: &Lab, out: Option<&Path>, kind: &str, suite: &str) -> PathBuf {
    out.map_or_else(
        || lab.reports_dir().join(format!("{kind}-{suite}")),
        |o| o.join(suite),
    )
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ProgramsFile {
    source_id: String,
    programs: ProgramLines,
}

/// `tcpao-selftests coverage`.
pub fn coverage(args: &CoverageArgs) -> i32 {
    catch_signals();
    match run_coverage(args) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn run_coverage(args: &CoverageArgs) -> Result<i32, VmError> {
    let lab = Lab::open(args.source.as_deref())?;
    let img = lab.image("coverage", BuildPolicy::IfMissing)?;
    let suites = suites(args.upstream, args.both);
    let mut steps = Vec::new();
    for s in &suites {
        steps.extend(coverage_steps(&lab, s, &args.filters, args.jobs)?);
    }
    let done = vm::run_guest(
        &machine(img.kernel(), Duration::from_secs(3600)),
        &steps,
        &[],
    )?;
    vm::console::report(&done, &img.kernel());
    let mut texts = Vec::new();
    let mut reports = Vec::new();
    for s in &suites {
        let (cov, programs) = read_coverage(&done, &img, &lab.source.tree, s)?;
        let rep = coverage::report(s, &cov, &lab.source.tree);
        let dir = reports_dir(&lab, args.out.as_deref(), "coverage", s);
        fs::create_dir_all(&dir).map_err(io_err(dir.display()))?;
        let text = rep.text(10);
        fs::write(dir.join("report.txt"), &text).map_err(io_err("report.txt"))?;
        fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&rep).unwrap_or_default(),
        )
        .map_err(io_err("report.json"))?;
        fs::write(
            dir.join("coverage.json"),
            serde_json::to_string(&cov).unwrap_or_default(),
        )
        .map_err(io_err("coverage.json"))?;
        let pf = ProgramsFile {
            source_id: lab.source.id.clone(),
            programs,
        };
        fs::write(
            dir.join("programs.json"),
            serde_json::to_string(&pf).unwrap_or_default(),
        )
        .map_err(io_err("programs.json"))?;
        let info = dir.join("coverage.info");
        fs::write(&info, coverage::lcov_tracefile(&cov, &lab.source.tree))
            .map_err(io_err("coverage.info"))?;
        let html = dir.join("html");
        let _ = fs::remove_dir_all(&html);
        match coverage::html(&info, &html, &format!("TCP-AO coverage: {s}")) {
            Ok(true) => println!(
                "# coverage: HTML report in {}",
                html.join("index.html").display()
            ),
            Ok(false) => println!("# coverage: genhtml (lcov) not installed: no HTML report"),
            Err(e) => println!("# coverage: genhtml failed: {e}"),
        }
        println!("# coverage: {} report in {}", s, dir.display());
        print!("{text}");
        texts.push(text);
        reports.push(rep);
    }
    if reports.len() == 2 {
        print!("{}", side_by_side(&reports[0], &reports[1]));
    }
    done.cleanup();
    Ok(done.verdict.exit)
}

/// Two coverage reports side by side (lines / functions / branches per file).
pub fn side_by_side(a: &coverage::Report, b: &coverage::Report) -> String {
    let mut s = format!(
        "# {} vs {}: AO lines, functions, branches\n{:<28} {:>20} {:>20}\n",
        a.suite, b.suite, "file", a.suite, b.suite
    );
    let files: BTreeSet<&String> = a.files.keys().chain(b.files.keys()).collect();
    let cell = |r: &coverage::Report, f: &str, which: usize| {
        r.files.get(f).map_or("-".to_owned(), |(st, _)| {
            let x = [st.lines, st.functions, st.branches][which];
            format!("{:.1}%", x.pct())
        })
    };
    for (k, label) in ["lines", "functions", "branches"].iter().enumerate() {
        s.push_str(&format!("## {label}\n"));
        for f in &files {
            s.push_str(&format!(
                "{f:<28} {:>20} {:>20}\n",
                cell(a, f, k),
                cell(b, f, k)
            ));
        }
        let tot = |r: &coverage::Report| {
            let x = [r.total.lines, r.total.functions, r.total.branches][k];
            format!("{x}")
        };
        s.push_str(&format!(
            "{:<28} {:>20} {:>20}\n",
            "TCP-AO code",
            tot(a),
            tot(b)
        ));
    }
    s
}

/// `tcpao-selftests mutate`.
pub fn mutate(args: &MutateArgs) -> i32 {
    catch_signals();
    match run_mutate(args) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn load_programs(lab: &Lab, suite: &str) -> Option<ProgramLines> {
    let p = lab
        .reports_dir()
        .join(format!("coverage-{suite}"))
        .join("programs.json");
    let pf: ProgramsFile = serde_json::from_str(&fs::read_to_string(p).ok()?).ok()?;
    (pf.source_id == lab.source.id).then_some(pf.programs)
}

/// How many of our tests may fail on a mutant before the rest are skipped (`--max-failures`).
const MUTANT_MAX_FAILURES: usize = 3;

/// How many of the kernel's programs may fail on a mutant before the rest are skipped
/// (`upstream --max-failures`): one program holds many results, and on a mutant that breaks
/// every connection each would wait out its 240 s timeout.
const MUTANT_MAX_FAILED_PROGRAMS: usize = 1;

/// The step(s) of `suite` for a mutant: the programs that execute its line (per the coverage
/// data), or all. `None`: no program executes it.
fn mutant_steps(
    lab: &Lab,
    suite: &str,
    m: Option<&Mutant>,
    cov: Option<&ProgramLines>,
    jobs: usize,
) -> Result<Option<Step>, VmError> {
    let covering = match (m, cov) {
        (Some(m), Some(c)) => {
            let progs = c.covering(&m.file, m.line);
            if progs.is_empty() {
                // A line gcov does not know (a declaration, an initializer) may still matter.
                let instrumented = c.0.values().any(|f| f.contains_key(&m.file));
                if instrumented && line_is_instrumented(lab, m) {
                    return Ok(None);
                }
                None
            } else {
                Some(progs)
            }
        }
        _ => None,
    };
    let prefix = format!("{suite}-");
    if suite == "ours" {
        let args = our_suite_args(jobs, m.is_some(), covering.as_deref());
        return Ok(Some(Step::suite("ours", args)));
    }
    let dir = lab.upstream_programs()?;
    let files: Vec<String> = covering
        .map(|progs| {
            progs
                .iter()
                .filter_map(|p| p.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let step = Step::upstream("upstream", dir, files);
    Ok(Some(if m.is_some() {
        step.with_max_failures(MUTANT_MAX_FAILED_PROGRAMS)
    } else {
        step
    }))
}

/// Our suite's arguments for the baseline (`mutant` false) or a mutant: the covering
/// programs (`ours-<program>`) as filters, or everything. On a mutant, a few failures end the
/// run: a mutant that breaks every connection would run each test into its timeout (mutant 1
/// of the first sample took 36 min), and one confirmed failure already kills it.
fn our_suite_args(jobs: usize, mutant: bool, covering: Option<&[String]>) -> Vec<String> {
    let mut args = vec!["--jobs".to_owned(), jobs.to_string()];
    if mutant {
        args.extend(["--max-failures".to_owned(), MUTANT_MAX_FAILURES.to_string()]);
    }
    if let Some(progs) = covering {
        args.extend(
            progs
                .iter()
                .filter_map(|p| p.strip_prefix("ours-"))
                .map(|p| format!("{p}/*")),
        );
    }
    args
}

/// Whether gcov had counters for the mutant's line (in the coverage report of the whole suite).
fn line_is_instrumented(lab: &Lab, m: &Mutant) -> bool {
    ["ours", "upstream"].iter().any(|s| {
        let p = lab
            .reports_dir()
            .join(format!("coverage-{s}"))
            .join("coverage.json");
        fs::read_to_string(p)
            .ok()
            .and_then(|t| serde_json::from_str::<Coverage>(&t).ok())
            .is_some_and(|c| {
                c.files
                    .get(&m.file)
                    .is_some_and(|f| f.lines.contains_key(&m.line))
            })
    })
}

/// The fate of each suite's step in one guest run. Suites whose step never ran (the guest
/// died or hung in an earlier step) are left out, to be run again in a new guest.
fn judge(done: &Finished) -> BTreeMap<String, Fate> {
    let console = &done.run.console;
    let crash_at = done
        .verdict
        .crash
        .first()
        .and_then(|l| console.find(l.as_str()));
    let mut out = BTreeMap::new();
    let abnormal = done.run.timed_out || !done.verdict.crash.is_empty() || !done.run.finished;
    for st in &done.run.steps {
        let id = st.step.id.clone();
        let marker = console.find(&format!("# vm: step {id}:"));
        let Some(start) = marker else { continue }; // never started
        let next_start = done
            .run
            .steps
            .iter()
            .filter_map(|o| console.find(&format!("# vm: step {}:", o.step.id)))
            .filter(|p| *p > start)
            .min();
        let crashed_here = crash_at.is_some_and(|c| c >= start && next_start.is_none_or(|n| c < n));
        let summary = Summary::parse(st.output.as_deref().unwrap_or_default());
        let mut failed: Vec<String> = summary.failures.iter().map(|(n, _)| n.clone()).collect();
        failed.extend(summary.problems());
        let fate = if crashed_here {
            Fate::Crashed(done.verdict.crash.first().cloned().unwrap_or_default())
        } else if st.rc.is_none() && abnormal {
            if done.run.timed_out {
                Fate::TimedOut
            } else {
                Fate::Crashed("the guest died".into())
            }
        } else if !failed.is_empty() {
            Fate::Killed(failed)
        } else if st.rc.is_some_and(|rc| rc != KSFT_PASS) {
            Fate::Killed(vec![format!("{id} exited {}", st.rc.unwrap_or(-1))])
        } else {
            Fate::Survived
        };
        out.insert(id, fate);
    }
    out
}

/// The step that runs only the failed tests of a suite again.
fn rerun_step(
    lab: &Lab,
    suite: &str,
    failed: &[String],
    jobs: usize,
) -> Result<Option<Step>, VmError> {
    let names: Vec<&String> = failed
        .iter()
        .filter(|n| n.contains('/') && !n.contains(' '))
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    if suite == "ours" {
        let mut args = vec!["--jobs".to_owned(), jobs.to_string(), "--exact".into()];
        args.extend(names.into_iter().cloned());
        return Ok(Some(Step::suite("ours", args)));
    }
    let files = upstream_files(&names);
    Ok(Some(Step::upstream(
        "upstream",
        lab.upstream_programs()?,
        files,
    )))
}

/// `upstream/<program>/<family>/<case>` names → the programs' binaries, sorted, once each.
fn upstream_files(names: &[&String]) -> Vec<String> {
    let mut files: Vec<String> = names
        .iter()
        .filter_map(|n| {
            let mut p = n.split('/');
            let (_, prog, fam) = (p.next()?, p.next()?, p.next()?);
            Some(format!("{prog}_{fam}"))
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Runs the failed tests of every killed suite once more on the same mutant: a failure that
/// does not come back was not the mutant's doing (a test that is flaky under load), and the
/// suite's fate becomes [`Fate::Flaky`]. Crashes and hangs are not rerun.
fn confirm_kills(
    lab: &Lab,
    kernel: &vm::Kernel,
    limit: Duration,
    jobs: usize,
    fates: &mut BTreeMap<String, Fate>,
) -> Result<(), VmError> {
    let mut steps = Vec::new();
    for (suite, fate) in fates.iter() {
        if let Fate::Killed(failed) = fate {
            if let Some(st) = rerun_step(lab, suite, failed, jobs)? {
                steps.push(st);
            }
        }
    }
    if steps.is_empty() || interrupted() {
        return Ok(());
    }
    let mut mach = machine(kernel.clone(), limit);
    mach.echo = false;
    let done = vm::run_guest(&mach, &steps, &[])?;
    let again = judge(&done);
    done.cleanup();
    for (suite, fate) in fates.iter_mut() {
        if let (Fate::Killed(failed), Some(Fate::Survived)) = (&*fate, again.get(suite)) {
            *fate = Fate::Flaky(failed.clone());
        }
    }
    Ok(())
}

fn run_mutate(args: &MutateArgs) -> Result<i32, VmError> {
    let lab = Lab::open(args.source.as_deref())?;
    {
        // Only under the lock: a journal found while another run holds the lab is that
        // run's live mutant, not an interrupted one.
        let _lock = lab.lock()?;
        mutate::restore_if_interrupted(&lab.source.tree)?;
    }
    let files: Vec<String> = if args.files.is_empty() {
        super::flavour::AO_FILES
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        args.files.clone()
    };
    let mut all = Vec::new();
    for f in &files {
        let p = lab.source.tree.join(f);
        let text = fs::read_to_string(&p).map_err(io_err(p.display()))?;
        all.extend(mutate::mutants_of(f, &text));
    }
    let chosen: Vec<Mutant> = if !args.only.is_empty() {
        let unknown: Vec<&String> = args
            .only
            .iter()
            .filter(|id| !all.iter().any(|m| &m.id == *id))
            .collect();
        if !unknown.is_empty() {
            return Err(VmError::Usage(format!(
                "no such mutant: {}",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        all.iter()
            .filter(|m| args.only.contains(&m.id))
            .cloned()
            .collect()
    } else if let Some(n) = args.sample {
        mutate::sample(&all, n, args.seed)
    } else {
        all.clone()
    };
    if args.list {
        println!(
            "# {} mutants of {} files; {} listed",
            all.len(),
            files.len(),
            chosen.len()
        );
        for m in &chosen {
            println!("{} {} {}()", m.id, m.op, m.function);
            print!("{}", m.diff());
        }
        return Ok(KSFT_PASS);
    }
    let suites = suites(args.upstream, args.both);
    let key = suites.join("+");
    let out_dir = reports_dir(&lab, args.out.as_deref(), "mutate", &key);
    fs::create_dir_all(&out_dir).map_err(io_err(out_dir.display()))?;
    let cov: BTreeMap<&str, Option<ProgramLines>> = suites
        .iter()
        .map(|s| {
            let c = if args.all_tests { None } else { load_programs(&lab, s) };
            if c.is_none() && !args.all_tests {
                eprintln!("# mutate: no coverage data for {s} (tcpao-selftests coverage{}): every test runs against every mutant", if *s == "upstream" { " --upstream" } else { "" });
            }
            (*s, c)
        })
        .collect();
    let plain = Flavour::named("plain").unwrap_or(FLAVOURS[0]);
    // The baseline: the unmutated kernel must pass every step a mutant could run.
    let base_img = lab.image("plain", BuildPolicy::IfMissing)?;
    let mut base_steps = Vec::new();
    for s in &suites {
        base_steps.extend(mutant_steps(&lab, s, None, None, args.jobs)?);
    }
    eprintln!("# mutate: baseline run of {key} on the unmutated kernel");
    let t0 = Instant::now();
    let base = vm::run_guest(
        &machine(base_img.kernel(), Duration::from_secs(3600)),
        &base_steps,
        &[],
    )?;
    let base_secs = t0.elapsed();
    if base.verdict.exit != KSFT_PASS {
        vm::console::report(&base, &base_img.kernel());
        return Err(VmError::Usage(format!(
            "the baseline run fails on the unmutated kernel; mutants cannot be judged (results in {})",
            base.results.display()
        )));
    }
    base.cleanup();
    let guest_timeout = (base_secs * 3).max(Duration::from_secs(600));
    eprintln!(
        "# mutate: baseline passed in {}; per-mutant guest limit {}",
        fmt_secs(base_secs),
        fmt_secs(guest_timeout)
    );
    // Resume: outcomes already recorded for the same mutant (same line, same edit).
    let journal = out_dir.join("results.jsonl");
    let mut done_before: BTreeMap<(String, String), Outcome> = BTreeMap::new();
    if let Ok(t) = fs::read_to_string(&journal) {
        for o in t
            .lines()
            .filter_map(|l| serde_json::from_str::<Outcome>(l).ok())
        {
            done_before.insert((o.mutant.id.clone(), o.suite.clone()), o);
        }
    }
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal)
        .map_err(io_err("results.jsonl"))?;
    let image_dir = lab.root.join("mutants");
    fs::create_dir_all(&image_dir).map_err(io_err("mutant images dir"))?;
    let mut outcomes: Vec<Outcome> = Vec::new();
    for (i, m) in chosen.iter().enumerate() {
        if interrupted() {
            eprintln!(
                "# mutate: interrupted; {i} of {} mutants judged (resume with the same command)",
                chosen.len()
            );
            break;
        }
        let started = Instant::now();
        let mut fates: BTreeMap<String, Fate> = BTreeMap::new();
        let mut pending: Vec<(&str, Step)> = Vec::new();
        for s in &suites {
            if let Some(o) = done_before
                .get(&(m.id.clone(), (*s).to_owned()))
                .filter(|o| o.mutant == *m)
            {
                fates.insert((*s).to_owned(), o.fate.clone());
                continue;
            }
            match mutant_steps(&lab, s, Some(m), cov[s].as_ref(), args.jobs)? {
                Some(step) => pending.push((s, step)),
                None => {
                    fates.insert((*s).to_owned(), Fate::NoCoverage);
                }
            }
        }
        let fresh: BTreeSet<String> = pending.iter().map(|(s, _)| (*s).to_owned()).collect();
        if !pending.is_empty() {
            // The tree is edited and the lab locked only while the mutant builds; its image
            // is copied out, so other lab builds can run while it boots.
            let built = {
                let _lock = lab.lock()?;
                let applied = mutate::apply(&lab.source.tree, m)?;
                let r = lab.build(&plain, false);
                applied.restore()?;
                r
            };
            match built {
                Err(VmError::Build { failing, .. }) => {
                    for (s, _) in &pending {
                        fates.insert(
                            (*s).to_owned(),
                            Fate::DidNotBuild(if failing.is_empty() {
                                "make".into()
                            } else {
                                failing.clone()
                            }),
                        );
                    }
                    pending.clear();
                }
                Err(e) => return Err(e),
                Ok(img) => {
                    let image = image_dir.join(format!("{}.bzImage", std::process::id()));
                    fs::copy(&img.image, &image).map_err(io_err("mutant image"))?;
                    let mut kernel = img.kernel();
                    kernel.image = image.clone();
                    kernel.origin = format!("mutant {}", m.id);
                    while !pending.is_empty() && !interrupted() {
                        let steps: Vec<Step> = pending.iter().map(|(_, st)| st.clone()).collect();
                        let mut mach = machine(kernel.clone(), guest_timeout);
                        mach.echo = false;
                        let done = vm::run_guest(&mach, &steps, &[])?;
                        let judged = judge(&done);
                        done.cleanup();
                        let before = pending.len();
                        pending.retain(|(s, _)| match judged.get(*s) {
                            Some(f) => {
                                fates.insert((*s).to_owned(), f.clone());
                                false
                            }
                            None => true,
                        });
                        if pending.len() == before {
                            // Nothing started: the guest never came up with this kernel.
                            for (s, _) in pending.drain(..) {
                                fates.insert(
                                    s.to_owned(),
                                    Fate::Crashed("the guest did not start".into()),
                                );
                            }
                        }
                    }
                    confirm_kills(&lab, &kernel, guest_timeout, args.jobs, &mut fates)?;
                    let _ = fs::remove_file(&image);
                }
            }
        }
        if interrupted() && fates.len() < suites.len() {
            break;
        }
        let secs = started.elapsed().as_secs_f64();
        let mut line = format!(
            "[{}/{}] {} ({})",
            i + 1,
            chosen.len(),
            m.id,
            fmt_secs(started.elapsed())
        );
        for s in &suites {
            let fate = fates.get(*s).cloned().unwrap_or(Fate::Survived);
            line.push_str(&format!(" {s}: {}", fate.word()));
            if let Fate::Killed(t) = &fate {
                line.push_str(&format!(" ({} failed, first {})", t.len(), t[0]));
            }
            let o = Outcome {
                mutant: m.clone(),
                suite: (*s).to_owned(),
                fate,
                secs,
            };
            if fresh.contains(*s) {
                let _ = writeln!(log, "{}", serde_json::to_string(&o).unwrap_or_default());
            }
            outcomes.push(o);
        }
        eprintln!("# mutate: {line}");
    }
    let equiv = mutate::equivalents();
    let ktap = mutate::ktap(&outcomes, &equiv);
    let summary = mutate::summary(&outcomes, &equiv);
    fs::write(out_dir.join("mutants.ktap"), &ktap).map_err(io_err("mutants.ktap"))?;
    fs::write(out_dir.join("summary.txt"), &summary).map_err(io_err("summary.txt"))?;
    fs::write(
        out_dir.join("outcomes.json"),
        serde_json::to_string_pretty(&outcomes).unwrap_or_default(),
    )
    .map_err(io_err("outcomes.json"))?;
    let diffs: String = outcomes
        .iter()
        .filter(|o| !o.fate.detected() && !matches!(o.fate, Fate::DidNotBuild(_)))
        .map(|o| {
            format!(
                "# [{}] {} {}\n{}",
                o.suite,
                o.fate.word(),
                o.mutant.id,
                o.mutant.diff()
            )
        })
        .collect();
    fs::write(out_dir.join("survivors.diff"), diffs).map_err(io_err("survivors.diff"))?;
    print!("{ktap}");
    print!("{summary}");
    println!("# mutate: reports in {}", out_dir.display());
    let all_detected = suites.iter().all(|s| {
        let sc = Score::of(outcomes.iter().filter(|o| o.suite == *s), &equiv);
        sc.survived == 0
    });
    Ok(if all_detected { KSFT_PASS } else { KSFT_FAIL })
}

/// `tcpao-selftests vm`: boot Debian's TCP-AO kernel, a `--kernel`, or a lab `--flavour` (built
/// first if needed), and run the suite (and with `--upstream` the kernel's own programs) in it.
pub fn vm(args: &VmArgs) -> i32 {
    match run_vm(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tcpao-selftests vm: {e}");
            KSFT_FAIL
        }
    }
}

/// The kernel `vm` boots: `--kernel`, a lab `--flavour`, or Debian's default.
///
/// # Errors
/// [`VmError`] when the kernel cannot be fetched, built or read.
pub fn select_kernel(args: &VmArgs) -> Result<vm::Kernel, VmError> {
    if let Some(k) = &args.kernel {
        return vm::custom_kernel(k, args.modules.as_deref());
    }
    if let Some(f) = &args.flavour {
        let lab = Lab::open(args.source.as_deref())?;
        let image = lab.patched_image(f, &args.patches, BuildPolicy::IfMissing)?;
        return Ok(image.kernel());
    }
    vm::fetch_default_kernel()
}

fn run_vm(args: &VmArgs) -> Result<i32, VmError> {
    let kernel = select_kernel(args)?;
    if args.fetch_only {
        println!("{}", kernel.image.display());
        return Ok(0);
    }
    let (suite_args, share) = vm::share_pcap_dirs(&args.args)?;
    let mut steps: Vec<Step> = args.cargo_tests.iter().cloned().map(Step::Cargo).collect();
    match &args.exec_script {
        Some(p) => steps.push(Step::Script(p.clone())),
        None if args.fuzz => steps.push(Step::Fuzz {
            id: "fuzz".into(),
            args: suite_args,
        }),
        None => steps.push(Step::suite("suite", suite_args)),
    }
    if args.upstream || !args.upstream_patches.is_empty() {
        let lab = Lab::open(args.source.as_deref())?;
        let dir = lab.upstream_programs_patched(&args.upstream_patches)?;
        steps.push(Step::upstream("upstream", dir, Vec::new()));
    }
    // The default host-side limit grows with the kernel's slowdown and with `--repeat N`.
    let limit_factor = kernel.slowdown.max(1) * vm::repeat_rounds(&args.args);
    let machine = Machine {
        kernel,
        accel: args.accel,
        cpus: args.cpus,
        memory: args.memory.clone(),
        timeout: args
            .timeout
            .map_or(vm::DEFAULT_TIMEOUT * limit_factor, Duration::from_secs),
        qemu_opts: args.qemu_opts.clone(),
        echo: true,
    };
    let done = vm::run_guest(&machine, &steps, &share)?;
    vm::console::report(&done, &machine.kernel);
    if args.keep || done.verdict.exit == KSFT_FAIL {
        eprintln!("# vm: results kept in {}", done.results.display());
    } else {
        done.cleanup();
    }
    Ok(done.verdict.exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutant_run_of_ours_stops_after_a_few_failures_the_baseline_does_not() {
        let progs = ["ours-connect".to_owned(), "upstream-rst".to_owned()];
        assert_eq!(
            our_suite_args(2, true, Some(&progs)),
            ["--jobs", "2", "--max-failures", "3", "connect/*"]
        );
        assert_eq!(our_suite_args(1, false, None), ["--jobs", "1"]);
        // The arguments parse as a run.
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(
            ["tcpao-selftests", "run"]
                .into_iter()
                .map(str::to_owned)
                .chain(our_suite_args(2, true, Some(&progs))),
        )
        .unwrap();
        match cli.command {
            Some(crate::cli::Command::Run(a)) => assert_eq!(a.max_failures, Some(3)),
            other => panic!("{other:?}"),
        }
    }
    use crate::vm::console::{GuestRun, StepOutput, classify};
    use crate::vm::guest::{Output, Staged};

    fn st(id: &str, out: &str, rc: Option<i32>) -> StepOutput {
        StepOutput {
            step: Staged {
                id: id.into(),
                label: id.into(),
                output: Output::Ktap,
                script: false,
                argv: vec![],
                gcov: false,
            },
            output: Some(out.into()),
            rc,
        }
    }

    fn finished(run: GuestRun) -> Finished {
        let verdict = classify(&run);
        Finished {
            run,
            verdict,
            results: PathBuf::from("/nonexistent"),
            kvm: false,
            boot_time: None,
            total: Duration::ZERO,
        }
    }

    #[test]
    fn judging_attributes_failures_and_crashes_to_steps() {
        let ok = "TAP version 13\n1..1\nok 1 a/b/c\n";
        let bad = "TAP version 13\n1..1\nnot ok 1 a/b/d\n";
        let run = GuestRun {
            vng_exit: Some(0),
            console: "# vm: step ours: ours\n# vm: step upstream: upstream\n".into(),
            steps: vec![st("ours", bad, Some(1)), st("upstream", ok, Some(0))],
            finished: true,
            ..GuestRun::default()
        };
        let j = judge(&finished(run));
        assert_eq!(j["ours"], Fate::Killed(vec!["a/b/d".into()]));
        assert_eq!(j["upstream"], Fate::Survived);
        // A crash during `ours`: it is ours'; upstream never started and is left to rerun.
        let run = GuestRun {
            vng_exit: Some(255),
            console: "# vm: step ours: ours\n[ 9.1] BUG: kernel NULL pointer dereference\n".into(),
            steps: vec![
                st("ours", "TAP version 13\n1..3\nok 1 a/b/c\n", None),
                StepOutput {
                    output: None,
                    ..st("upstream", "", None)
                },
            ],
            finished: false,
            ..GuestRun::default()
        };
        let j = judge(&finished(run));
        assert!(matches!(&j["ours"], Fate::Crashed(l) if l.contains("NULL pointer")));
        assert!(!j.contains_key("upstream"));
        // A hang.
        let run = GuestRun {
            vng_exit: None,
            timed_out: true,
            console: "# vm: step ours: ours\n".into(),
            steps: vec![st("ours", "TAP version 13\n1..3\nok 1 a/b/c\n", None)],
            ..GuestRun::default()
        };
        assert_eq!(judge(&finished(run))["ours"], Fate::TimedOut);
    }

    #[test]
    fn reruns_name_the_failed_tests_or_programs() {
        let lab = Lab {
            root: PathBuf::from("/nonexistent"),
            source: super::super::Source {
                id: "x".into(),
                tree: PathBuf::from("/nonexistent"),
                origin: super::super::Origin::Dir,
            },
        };
        let failed = vec![
            "rst/ipv4/active-reset".to_owned(),
            "plan promised 3 results, 1 arrived".to_owned(),
        ];
        assert_eq!(
            rerun_step(&lab, "ours", &failed, 2).unwrap(),
            Some(Step::suite(
                "ours",
                vec![
                    "--jobs".into(),
                    "2".into(),
                    "--exact".into(),
                    "rst/ipv4/active-reset".into()
                ]
            ))
        );
        assert_eq!(
            rerun_step(&lab, "ours", &failed[1..], 2).unwrap(),
            None,
            "nothing to rerun"
        );
        let a = "upstream/rst/ipv6/x".to_owned();
        let b = "upstream/rst/ipv6/exit".to_owned();
        let c = "upstream/connect/ipv4/y".to_owned();
        assert_eq!(upstream_files(&[&a, &b, &c]), ["connect_ipv4", "rst_ipv6"]);
    }

    #[test]
    fn suites_and_program_steps() {
        assert_eq!(suites(false, false), ["ours"]);
        assert_eq!(suites(true, false), ["upstream"]);
        assert_eq!(suites(false, true), ["ours", "upstream"]);
        let progs = our_programs(&["connect/ipv4".into()]);
        assert_eq!(progs[0].0, "connect");
        assert!(progs[0].1.iter().all(|n| n.starts_with("connect/ipv4/")));
        let s = our_step("connect", None, 2);
        assert_eq!(
            s,
            Step::suite(
                "ours-connect",
                vec!["--jobs".into(), "2".into(), "connect/*".into()]
            )
        );
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Coverage of the TCP-AO kernel code, from the `coverage` flavour's gcov counters.
//!
//! The guest resets the counters before each program of the suite (ours per program, the
//! kernel's per binary) and copies the `.gcda` files after it ([`crate::vm::Step::with_gcov`]).
//! On the host each program's counters go through `gcov --json-format --stdout
//! --branch-probabilities` (GCC's own reader, against the build's `.gcno` files) into a
//! [`Coverage`]; the programs' coverages add up to the suite's. The report gives line, function
//! and branch coverage per file (the AO lines only for the shared TCP files, see
//! [`super::aocode`]) and for the TCP-AO code as a whole, the biggest uncovered regions, an
//! lcov tracefile and, through Debian's `genhtml` (lcov), an HTML report. Which program covers
//! which line is kept (`programs.json`) for the mutation runs' test selection.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::aocode;
use super::flavour::AO_FILES;
use crate::vm::{VmError, io_err, need};

/// Files reported: the AO files and the AO header with its inline helpers.
pub fn reported(file: &str) -> bool {
    AO_FILES.contains(&file) || file == "include/net/tcp_ao.h"
}

/// One line's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCov {
    /// Times executed.
    pub count: u64,
    /// Times each branch arc from this line was taken.
    pub branches: Vec<u64>,
}

/// One function's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuncCov {
    /// First line.
    pub start: usize,
    /// Last line.
    pub end: usize,
    /// Times entered.
    pub count: u64,
}

/// One file's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCov {
    /// Instrumented lines.
    pub lines: BTreeMap<usize, LineCov>,
    /// Functions by name.
    pub functions: BTreeMap<String, FuncCov>,
}

/// Counters per file (tree-relative paths).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Files.
    pub files: BTreeMap<String, FileCov>,
}

#[derive(Debug, Deserialize)]
struct GcovDoc {
    files: Vec<GcovFile>,
}

#[derive(Debug, Deserialize)]
struct GcovFile {
    file: String,
    #[serde(default)]
    lines: Vec<GcovLine>,
    #[serde(default)]
    functions: Vec<GcovFunc>,
}

#[derive(Debug, Deserialize)]
struct GcovLine {
    line_number: usize,
    count: u64,
    #[serde(default)]
    branches: Vec<GcovBranch>,
}

#[derive(Debug, Deserialize)]
struct GcovBranch {
    count: u64,
    #[serde(default)]
    throw: bool,
}

#[derive(Debug, Deserialize)]
struct GcovFunc {
    name: String,
    start_line: usize,
    end_line: usize,
    execution_count: u64,
}

/// A tree-relative path from a path gcov reports (absolute, or relative to the build dir).
pub fn relative(path: &str, tree: &Path) -> String {
    let t = tree.display().to_string();
    let p = path
        .strip_prefix(&t)
        .unwrap_or(path)
        .trim_start_matches('/');
    // A relative `../../source/…/net/ipv4/tcp_ao.c`: keep from the first known top dir.
    let tops = ["net/", "include/", "arch/", "kernel/", "lib/", "crypto/"];
    let first = p
        .match_indices('/')
        .map(|(i, _)| i + 1)
        .chain(std::iter::once(0))
        .filter(|&i| tops.iter().any(|t| p[i..].starts_with(t)))
        .min();
    if let Some(i) = first {
        return p[i..].to_owned();
    }
    p.to_owned()
}

impl Coverage {
    /// Reads `gcov --json-format --stdout` output (one or more JSON documents).
    ///
    /// # Errors
    /// A JSON error when the text is not gcov's format.
    pub fn from_gcov_json(text: &str, tree: &Path) -> Result<Coverage, serde_json::Error> {
        let mut c = Coverage::default();
        for doc in serde_json::Deserializer::from_str(text).into_iter::<GcovDoc>() {
            for f in doc?.files {
                let rel = relative(&f.file, tree);
                if !reported(&rel) {
                    continue;
                }
                let fc = c.files.entry(rel).or_default();
                for l in f.lines {
                    let e = fc.lines.entry(l.line_number).or_default();
                    e.count += l.count;
                    let br: Vec<u64> = l
                        .branches
                        .iter()
                        .filter(|b| !b.throw)
                        .map(|b| b.count)
                        .collect();
                    if e.branches.len() < br.len() {
                        e.branches.resize(br.len(), 0);
                    }
                    for (a, b) in e.branches.iter_mut().zip(br) {
                        *a += b;
                    }
                }
                for func in f.functions {
                    let e = fc.functions.entry(func.name).or_insert(FuncCov {
                        start: func.start_line,
                        end: func.end_line,
                        count: 0,
                    });
                    e.count += func.execution_count;
                }
            }
        }
        Ok(c)
    }

    /// Adds another run's counters.
    pub fn merge(&mut self, other: &Coverage) {
        for (f, oc) in &other.files {
            let fc = self.files.entry(f.clone()).or_default();
            for (n, l) in &oc.lines {
                let e = fc.lines.entry(*n).or_default();
                e.count += l.count;
                if e.branches.len() < l.branches.len() {
                    e.branches.resize(l.branches.len(), 0);
                }
                for (a, b) in e.branches.iter_mut().zip(&l.branches) {
                    *a += b;
                }
            }
            for (name, func) in &oc.functions {
                fc.functions
                    .entry(name.clone())
                    .or_insert(FuncCov {
                        count: 0,
                        ..func.clone()
                    })
                    .count += func.count;
            }
        }
    }

    /// Lines executed at least once, per file.
    pub fn covered_lines(&self) -> BTreeMap<String, BTreeSet<usize>> {
        self.files
            .iter()
            .map(|(f, c)| {
                (
                    f.clone(),
                    c.lines
                        .iter()
                        .filter(|(_, l)| l.count > 0)
                        .map(|(n, _)| *n)
                        .collect(),
                )
            })
            .collect()
    }
}

/// Covered / total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ratio {
    /// Covered.
    pub hit: usize,
    /// Total.
    pub total: usize,
}

impl Ratio {
    /// Percentage (100 when there is nothing to cover).
    pub fn pct(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            // Counts stay far below 2^52: exact as f64.
            #[allow(clippy::cast_precision_loss)]
            let p = 100.0 * self.hit as f64 / self.total as f64;
            p
        }
    }

    fn add(&mut self, o: Ratio) {
        self.hit += o.hit;
        self.total += o.total;
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:5.1}% ({}/{})", self.pct(), self.hit, self.total)
    }
}

/// Line, function and branch coverage of a set of lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Lines.
    pub lines: Ratio,
    /// Functions.
    pub functions: Ratio,
    /// Branch arcs.
    pub branches: Ratio,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.lines.add(o.lines);
        self.functions.add(o.functions);
        self.branches.add(o.branches);
    }
}

/// Stats of `fc` restricted to `ao` lines (every line when `None`); functions count when
/// their name says AO or the whole file is AO code.
pub fn stats(file: &str, fc: &FileCov, ao: Option<&BTreeSet<usize>>) -> Stats {
    let mut s = Stats::default();
    for (n, l) in &fc.lines {
        if ao.is_some_and(|a| !a.contains(n)) {
            continue;
        }
        s.lines.total += 1;
        s.lines.hit += usize::from(l.count > 0);
        s.branches.total += l.branches.len();
        s.branches.hit += l.branches.iter().filter(|b| **b > 0).count();
    }
    for (name, f) in &fc.functions {
        if ao.is_none() || aocode::whole_file(file) || aocode::ao_ident(name) {
            s.functions.total += 1;
            s.functions.hit += usize::from(f.count > 0);
        }
    }
    s
}

/// A run of uncovered lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// File.
    pub file: String,
    /// The function.
    pub function: String,
    /// First line.
    pub first: usize,
    /// Last line.
    pub last: usize,
    /// Instrumented lines in it (all with count 0).
    pub lines: usize,
}

/// Uncovered regions of the AO lines: maximal runs of instrumented zero-count lines with no
/// covered line between them, within one function; biggest first.
pub fn uncovered_regions(
    cov: &Coverage,
    ao: &BTreeMap<String, BTreeSet<usize>>,
    sources: &BTreeMap<String, String>,
) -> Vec<Region> {
    let mut out = Vec::new();
    for (file, fc) in &cov.files {
        let funcs = sources
            .get(file)
            .map(|t| aocode::functions(t))
            .unwrap_or_default();
        let name_at = |n: usize| {
            aocode::function_at(&funcs, n).map_or_else(|| "?".to_owned(), |f| f.name.clone())
        };
        let mut cur: Option<Region> = None;
        for (n, l) in &fc.lines {
            if ao.get(file).is_some_and(|a| !a.contains(n)) {
                continue;
            }
            let func = name_at(*n);
            if l.count == 0 {
                match &mut cur {
                    Some(r) if r.function == func => {
                        r.last = *n;
                        r.lines += 1;
                    }
                    _ => {
                        out.extend(cur.take());
                        cur = Some(Region {
                            file: file.clone(),
                            function: func,
                            first: *n,
                            last: *n,
                            lines: 1,
                        });
                    }
                }
            } else {
                out.extend(cur.take());
            }
        }
        out.extend(cur);
    }
    out.sort_by(|a, b| {
        b.lines
            .cmp(&a.lines)
            .then(a.file.cmp(&b.file))
            .then(a.first.cmp(&b.first))
    });
    out
}

/// A coverage report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Which suite (`ours`, `upstream`).
    pub suite: String,
    /// Per file: AO-line stats (the whole file for tcp_ao.c) and the file's total.
    pub files: BTreeMap<String, (Stats, Stats)>,
    /// The TCP-AO code as a whole.
    pub total: Stats,
    /// Uncovered regions, biggest first.
    pub uncovered: Vec<Region>,
}

/// Builds the report of `cov` (sources read from `tree`).
pub fn report(suite: &str, cov: &Coverage, tree: &Path) -> Report {
    let mut sources = BTreeMap::new();
    let mut ao = BTreeMap::new();
    for f in cov.files.keys() {
        if let Ok(t) = fs::read_to_string(tree.join(f)) {
            ao.insert(f.clone(), aocode::ao_lines(f, &t));
            sources.insert(f.clone(), t);
        }
    }
    let mut r = Report {
        suite: suite.into(),
        ..Report::default()
    };
    for (f, fc) in &cov.files {
        let s_ao = stats(f, fc, ao.get(f));
        let s_all = stats(f, fc, None);
        r.total.add(s_ao);
        r.files.insert(f.clone(), (s_ao, s_all));
    }
    r.uncovered = uncovered_regions(cov, &ao, &sources);
    r
}

impl Report {
    /// The text table.
    pub fn text(&self, top: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# coverage of the TCP-AO code by {} (gcov)", self.suite);
        let _ = writeln!(
            s,
            "{:<28} {:>22} {:>22} {:>22}   whole file: lines",
            "file (AO lines)", "lines", "functions", "branches"
        );
        for (f, (a, w)) in &self.files {
            let _ = writeln!(
                s,
                "{f:<28} {:>22} {:>22} {:>22}   {}",
                a.lines.to_string(),
                a.functions.to_string(),
                a.branches.to_string(),
                w.lines
            );
        }
        let t = &self.total;
        let _ = writeln!(
            s,
            "{:<28} {:>22} {:>22} {:>22}",
            "TCP-AO code",
            t.lines.to_string(),
            t.functions.to_string(),
            t.branches.to_string()
        );
        let _ = writeln!(s, "# biggest uncovered regions:");
        for r in self.uncovered.iter().take(top) {
            let _ = writeln!(
                s,
                "  {}:{}-{} {} ({} lines)",
                r.file, r.first, r.last, r.function, r.lines
            );
        }
        s
    }
}

/// The lcov tracefile of `cov` (for genhtml and other tools).
pub fn lcov_tracefile(cov: &Coverage, tree: &Path) -> String {
    let mut s = String::new();
    for (f, fc) in &cov.files {
        let _ = writeln!(s, "TN:\nSF:{}", tree.join(f).display());
        for (name, func) in &fc.functions {
            let _ = writeln!(s, "FN:{},{name}", func.start);
        }
        for (name, func) in &fc.functions {
            let _ = writeln!(s, "FNDA:{},{name}", func.count);
        }
        let _ = writeln!(
            s,
            "FNF:{}\nFNH:{}",
            fc.functions.len(),
            fc.functions.values().filter(|f| f.count > 0).count()
        );
        for (n, l) in &fc.lines {
            for (i, b) in l.branches.iter().enumerate() {
                let taken = if l.count == 0 {
                    "-".to_owned()
                } else {
                    b.to_string()
                };
                let _ = writeln!(s, "BRDA:{n},0,{i},{taken}");
            }
        }
        for (n, l) in &fc.lines {
            let _ = writeln!(s, "DA:{n},{}", l.count);
        }
        let _ = writeln!(
            s,
            "LF:{}\nLH:{}\nend_of_record",
            fc.lines.len(),
            fc.lines.values().filter(|l| l.count > 0).count()
        );
    }
    s
}

/// Reads one step's `.gcda` files (copied by the guest under `gcda_root`) against the build's
/// `.gcno` files, through gcov.
///
/// # Errors
/// [`VmError::MissingTool`] without gcov, [`VmError::Io`], or a [`VmError::Build`] carrying
/// gcov's complaint.
pub fn read_step(
    gcda_root: &Path,
    build_dir: &Path,
    tree: &Path,
    work: &Path,
) -> Result<Coverage, VmError> {
    let gcov = need("gcov", "gcc")?;
    let mut found: Vec<PathBuf> = Vec::new();
    collect(gcda_root, &mut found);
    let mut cov = Coverage::default();
    let mut by_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in AO_FILES {
        let (dir, name) = f.rsplit_once('/').unwrap_or(("", f));
        let stem = name.trim_end_matches(".c");
        let suffix = format!("/{dir}/{stem}.gcda");
        let Some(gcda) = found
            .iter()
            .find(|p| p.display().to_string().ends_with(&suffix))
        else {
            continue;
        };
        let objdir = work.join(dir);
        fs::create_dir_all(&objdir).map_err(io_err("gcov work dir"))?;
        fs::copy(gcda, objdir.join(format!("{stem}.gcda"))).map_err(io_err("copying .gcda"))?;
        let gcno = build_dir.join(dir).join(format!("{stem}.gcno"));
        let link = objdir.join(format!("{stem}.gcno"));
        let _ = fs::remove_file(&link);
        fs::copy(&gcno, &link).map_err(io_err(format!(
            "{} (is this the coverage build?)",
            gcno.display()
        )))?;
        by_dir
            .entry(dir.to_owned())
            .or_default()
            .push(format!("{stem}.gcno"));
    }
    for (dir, gcnos) in by_dir {
        let objdir = work.join(&dir);
        let o = Command::new(&gcov)
            .current_dir(build_dir)
            .args([
                "--json-format",
                "--stdout",
                "--branch-probabilities",
                "--object-directory",
            ])
            .arg(&objdir)
            .args(gcnos.iter().map(|g| objdir.join(g)))
            .stdin(Stdio::null())
            .output()
            .map_err(io_err("running gcov"))?;
        let text = String::from_utf8_lossy(&o.stdout);
        let c = Coverage::from_gcov_json(&text, tree).map_err(|e| VmError::Build {
            target: "gcov".into(),
            failing: dir.clone(),
            detail: format!("{e}: {}", String::from_utf8_lossy(&o.stderr).trim()),
            log: objdir.display().to_string(),
        })?;
        cov.merge(&c);
    }
    Ok(cov)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "gcda") {
            out.push(p);
        }
    }
}

/// Which lines each program covered: program → file → lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramLines(pub BTreeMap<String, BTreeMap<String, BTreeSet<usize>>>);

impl ProgramLines {
    /// The programs that execute `file:line`.
    pub fn covering(&self, file: &str, line: usize) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, files)| files.get(file).is_some_and(|l| l.contains(&line)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Whether any program executes `file:line`.
    pub fn any_covers(&self, file: &str, line: usize) -> bool {
        self.0
            .values()
            .any(|files| files.get(file).is_some_and(|l| l.contains(&line)))
    }
}

/// Writes the HTML report with Debian's genhtml (lcov) from `tracefile` into `dir`; `Ok(false)`
/// when genhtml is not installed (the text and JSON reports stand alone).
///
/// # Errors
/// [`VmError::Io`] when genhtml fails.
pub fn html(tracefile: &Path, dir: &Path, title: &str) -> Result<bool, VmError> {
    let Some(genhtml) = crate::vm::which("genhtml") else {
        return Ok(false);
    };
    let o = Command::new(genhtml)
        .arg("--quiet")
        .arg("--branch-coverage")
        .arg("--title")
        .arg(title)
        .arg("--output-directory")
        .arg(dir)
        .arg(tracefile)
        .stdin(Stdio::null())
        .output()
        .map_err(io_err("running genhtml"))?;
    if o.status.success() {
        Ok(true)
    } else {
        Err(VmError::Build {
            target: "genhtml".into(),
            failing: String::new(),
            detail: String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            log: dir.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"gcc_version": "12.2.0", "files": [
      {"file": "/lab/src/net/ipv4/tcp_ao.c", "lines": [
         {"line_number": 10, "count": 3, "branches": [{"count": 3, "throw": false, "fallthrough": true}, {"count": 0, "throw": false, "fallthrough": false}]},
         {"line_number": 11, "count": 0, "branches": []},
         {"line_number": 12, "count": 0, "branches": []},
         {"line_number": 20, "count": 1, "branches": []}],
       "functions": [{"name": "tcp_ao_a", "start_line": 9, "end_line": 13, "execution_count": 3, "blocks": 4, "blocks_executed": 3, "demangled_name": "tcp_ao_a", "start_column": 1, "end_column": 1},
                     {"name": "tcp_ao_b", "start_line": 19, "end_line": 21, "execution_count": 1}]},
      {"file": "/lab/src/include/linux/skbuff.h", "lines": [{"line_number": 5, "count": 9}], "functions": []}]}
    {"files": [{"file": "/lab/src/net/ipv4/tcp_ao.c", "lines": [{"line_number": 11, "count": 2}], "functions": []}]}"#;

    #[test]
    fn gcov_json_is_read_filtered_and_summed() {
        let c = Coverage::from_gcov_json(JSON, Path::new("/lab/src")).unwrap();
        assert_eq!(c.files.keys().collect::<Vec<_>>(), ["net/ipv4/tcp_ao.c"]);
        let f = &c.files["net/ipv4/tcp_ao.c"];
        assert_eq!(
            f.lines[&10],
            LineCov {
                count: 3,
                branches: vec![3, 0]
            }
        );
        assert_eq!(f.lines[&11].count, 2, "second document adds");
        let s = stats("net/ipv4/tcp_ao.c", f, None);
        assert_eq!(s.lines, Ratio { hit: 3, total: 4 });
        assert_eq!(s.branches, Ratio { hit: 1, total: 2 });
        assert_eq!(s.functions, Ratio { hit: 2, total: 2 });
        let mut twice = c.clone();
        twice.merge(&c);
        assert_eq!(twice.files["net/ipv4/tcp_ao.c"].lines[&10].branches, [6, 0]);
        assert_eq!(
            twice.files["net/ipv4/tcp_ao.c"].functions["tcp_ao_a"].count,
            6
        );
    }

    #[test]
    fn relative_paths() {
        let t = Path::new("/lab/src");
        assert_eq!(
            relative("/lab/src/net/ipv6/tcp_ao.c", t),
            "net/ipv6/tcp_ao.c"
        );
        assert_eq!(
            relative("../../source/x/linux-7.2/net/ipv4/tcp.c", t),
            "net/ipv4/tcp.c"
        );
        assert_eq!(
            relative("/lab/src/include/net/tcp_ao.h", t),
            "include/net/tcp_ao.h"
        );
    }

    #[test]
    fn uncovered_regions_are_runs_within_a_function() {
        let src = "int tcp_ao_a(void)\n{\n\tx();\n\ty();\n\tz();\n}\n";
        let mut fc = FileCov::default();
        for (n, c) in [(3, 0), (4, 0), (5, 1)] {
            fc.lines.insert(
                n,
                LineCov {
                    count: c,
                    branches: vec![],
                },
            );
        }
        let mut cov = Coverage::default();
        cov.files.insert("net/ipv4/tcp_ao.c".into(), fc);
        let sources = BTreeMap::from([("net/ipv4/tcp_ao.c".to_owned(), src.to_owned())]);
        let ao = BTreeMap::from([(
            "net/ipv4/tcp_ao.c".to_owned(),
            aocode::ao_lines("net/ipv4/tcp_ao.c", src),
        )]);
        let r = uncovered_regions(&cov, &ao, &sources);
        assert_eq!(
            r,
            [Region {
                file: "net/ipv4/tcp_ao.c".into(),
                function: "tcp_ao_a".into(),
                first: 3,
                last: 4,
                lines: 2
            }]
        );
        let t = lcov_tracefile(&cov, Path::new("/t"));
        assert!(t.contains("SF:/t/net/ipv4/tcp_ao.c\n"));
        assert!(t.contains("DA:3,0\n") && t.contains("LH:1\n") && t.ends_with("end_of_record\n"));
    }

    #[test]
    fn programs_covering_a_line() {
        let mut p = ProgramLines::default();
        p.0.insert(
            "ours-connect".into(),
            BTreeMap::from([("net/ipv4/tcp_ao.c".into(), BTreeSet::from([5, 6]))]),
        );
        p.0.insert(
            "ours-rst".into(),
            BTreeMap::from([("net/ipv4/tcp_ao.c".into(), BTreeSet::from([6]))]),
        );
        assert_eq!(
            p.covering("net/ipv4/tcp_ao.c", 6),
            ["ours-connect", "ours-rst"]
        );
        assert_eq!(p.covering("net/ipv4/tcp_ao.c", 5), ["ours-connect"]);
        assert!(!p.any_covers("net/ipv4/tcp.c", 5));
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Mutation testing of the TCP-AO kernel code: small, deliberate bugs ("mutants"), each built
//! into a `plain` kernel, booted, and judged by the suite (or the kernel's own). A suite kills
//! a mutant when a test fails, the kernel crashes or the run hangs; a mutant it does not kill
//! survives, and its diff says what the suite does not check.
//!
//! # Operators
//!
//! Each operator rewrites one token or one statement of one line of TCP-AO code (see
//! [`super::aocode`]), outside comments, strings and preprocessor lines:
//!
//! | id | what | example |
//! |---|---|---|
//! | `rel-flip` | a comparison negated | `a == b` → `a != b`, `a < b` → `a >= b` |
//! | `rel-bound` | a comparison loosened or tightened | `a < b` → `a <= b` |
//! | `logic-swap` | `&&` ↔ `\|\|` | |
//! | `cond-negate` | an `if` condition negated | `if (x)` → `if (!(x))` |
//! | `stat-drop` | a counter increment dropped | `NET_INC_STATS(..);` → `;` |
//! | `store-drop` | a store to memory dropped | `ao->rnext_key = key;` → `;` |
//! | `call-drop` | a call whose result is unused dropped | `tcp_ao_cache_traffic_keys(..);` → `;` |
//! | `ret-zero` | an error return turned into success | `return -EINVAL;` → `return 0;` |
//! | `ret-flip` | a boolean return flipped | `return true;` → `return false;` |
//! | `errno-swap` | a different errno | `-EINVAL` → `-EPERM`, others → `-EINVAL` |
//! | `const-change` | a small integer constant off by one | `4` → `5`, `1` → `0` |
//! | `field-swap` | RFC 5925 twins swapped | `sndid` ↔ `rcvid`, `sisn` ↔ `disn`, `current_key` ↔ `rnext_key` |
//!
//! Calls whose removal only leaks, logs or deadlocks (`kfree`, `pr_*`, locks, RCU) are not
//! dropped. A mutant's id is `<ipv4|ipv6>/<file stem>:<line>:<operator>:<k>` (k-th match of
//! the operator on that line): stable for a given tree.
//!
//! # Safety of the tree
//!
//! A mutant is applied as a journalled tree edit ([`super::edit`]): restored when the run ends
//! in any way (error, panic, Ctrl-C), or by the next lab command after a kill.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::aocode;
use super::edit;
pub use super::edit::{Applied, restore_if_interrupted};
use crate::vm::{VmError, io_err};

/// Mutation operators, in table order.
pub const OPERATORS: [&str; 12] = [
    "rel-flip",
    "rel-bound",
    "logic-swap",
    "cond-negate",
    "stat-drop",
    "store-drop",
    "call-drop",
    "ret-zero",
    "ret-flip",
    "errno-swap",
    "const-change",
    "field-swap",
];

/// RFC 5925 twins: fields that come in pairs, one per direction or role.
const TWINS: [(&str, &str); 9] = [
    ("sndid", "rcvid"),
    ("sisn", "disn"),
    ("snd_sne", "rcv_sne"),
    ("current_key", "rnext_key"),
    ("saddr", "daddr"),
    ("sport", "dport"),
    ("snt_isn", "rcv_isn"),
    ("snd_nxt", "rcv_nxt"),
    ("send_key", "recv_key"),
];

/// Counter updates (`stat-drop`).
const COUNTERS: [&str; 7] = [
    "NET_INC_STATS(",
    "__NET_INC_STATS(",
    "NET_ADD_STATS(",
    "TCP_INC_STATS(",
    "atomic64_inc(",
    "atomic64_add(",
    "atomic_inc(",
];

/// Calls not dropped: removing them only leaks memory, loses a log line, breaks locking or RCU
/// (a hang the suite would "catch" for no reason of its own), or is a compile-time check.
const KEEP_CALLS: [&str; 24] = [
    "kfree",
    "kvfree",
    "kfree_sensitive",
    "kfree_rcu",
    "free",
    "pr_",
    "net_",
    "WARN",
    "BUILD_BUG_ON",
    "lockdep_",
    "might_sleep",
    "lock",
    "unlock",
    "rcu_read_",
    "call_rcu",
    "synchronize_rcu",
    "memzero_explicit",
    "static_branch_",
    "static_key_",
    "sock_kfree_s",
    "sk_", // refcounts and memory accounting
    "refcount_",
    "hlist_",
    "trace_",
];

/// One mutant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutant {
    /// Stable id.
    pub id: String,
    /// Tree path of the file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Operator.
    pub op: String,
    /// The function it is in.
    pub function: String,
    /// The line as it was.
    pub before: String,
    /// The line as mutated.
    pub after: String,
}

impl Mutant {
    /// A unified diff of the mutant against the tree.
    pub fn diff(&self) -> String {
        format!(
            "--- a/{f}\n+++ b/{f}\n@@ -{l} +{l} @@ {fun}\n-{b}\n+{a}\n",
            f = self.file,
            l = self.line,
            fun = self.function,
            b = self.before,
            a = self.after
        )
    }
}

/// The short name of a file in ids: `net/ipv4/tcp_ao.c` → `ipv4/tcp_ao`.
pub fn short_file(file: &str) -> String {
    let mut parts = file.rsplit('/');
    let name = parts.next().unwrap_or(file).trim_end_matches(".c");
    let dir = parts.next().unwrap_or("");
    format!("{dir}/{name}")
}

/// Masks comments and string/char literals of one line with spaces (same length), given
/// whether the line starts inside a block comment; returns the mask and whether it ends inside
/// one.
pub fn code_mask(line: &str, mut in_comment: bool) -> (String, bool) {
    let b = line.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if in_comment {
            if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                in_comment = false;
                out.extend_from_slice(b"  ");
                i += 2;
            } else {
                out.push(b' ');
                i += 1;
            }
            continue;
        }
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'*') => {
                in_comment = true;
                out.extend_from_slice(b"  ");
                i += 2;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                out.resize(b.len(), b' ');
                i = b.len();
            }
            q @ (b'"' | b'\'') => {
                out.push(b' ');
                i += 1;
                while i < b.len() && b[i] != q {
                    let skip = if b[i] == b'\\' { 2 } else { 1 };
                    out.extend(std::iter::repeat_n(b' ', skip.min(b.len() - i)));
                    i += skip;
                }
                if i < b.len() {
                    out.push(b' ');
                    i += 1;
                }
            }
            c => {
                out.push(if c.is_ascii() { c } else { b' ' });
                i += 1;
            }
        }
    }
    out.truncate(b.len());
    (String::from_utf8(out).unwrap_or_default(), in_comment)
}

/// Mutations of one line: `(operator, mutated line)`, in operator order. `code` is the line
/// with comments and literals masked ([`code_mask`]); edits are made at the same byte
/// positions in the real line.
pub fn mutate_line(line: &str, code: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    let replace =
        |at: usize, len: usize, with: &str| format!("{}{with}{}", &line[..at], &line[at + len..]);
    let t = code.trim();
    // Comparisons (not ->, <<, >>, <<=, >>=).
    let mut cmps: Vec<(usize, &str)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let two = code.get(i..i + 2).unwrap_or("");
        let prev = if i > 0 { b[i - 1] } else { b' ' };
        if matches!(two, "==" | "!=" | "<=" | ">=")
            && prev != b'<'
            && prev != b'>'
            && prev != b'='
            && prev != b'!'
        {
            if b.get(i + 2) != Some(&b'=') {
                cmps.push((i, two));
            }
            i += 2;
            continue;
        }
        if (b[i] == b'<' || b[i] == b'>')
            && !matches!(two, "<<" | ">>" | "<=" | ">=")
            && prev != b'<'
            && prev != b'>'
            && prev != b'-'
        {
            cmps.push((i, if b[i] == b'<' { "<" } else { ">" }));
        }
        i += 1;
    }
    for &(at, op) in &cmps {
        let neg = match op {
            "==" => "!=",
            "!=" => "==",
            "<" => ">=",
            ">" => "<=",
            "<=" => ">",
            _ => "<",
        };
        out.push(("rel-flip", replace(at, op.len(), neg)));
    }
    for &(at, op) in &cmps {
        let bound = match op {
            "<" => "<=",
            ">" => ">=",
            "<=" => "<",
            ">=" => ">",
            _ => continue,
        };
        out.push(("rel-bound", replace(at, op.len(), bound)));
    }
    for (at, op) in code.match_indices("&&").chain(code.match_indices("||")) {
        out.push((
            "logic-swap",
            replace(at, 2, if op == "&&" { "||" } else { "&&" }),
        ));
    }
    if let Some(at) = code.find("if (") {
        if let Some(close) = matching_paren(code, at + 3) {
            let cond = &line[at + 4..close];
            out.push((
                "cond-negate",
                format!("{}if (!({cond})){}", &line[..at], &line[close + 1..]),
            ));
        }
    }
    let indent = &line[..line.len() - line.trim_start().len()];
    let whole_statement = t.ends_with(';') && !t.starts_with("return") && paren_balanced(t);
    if whole_statement && COUNTERS.iter().any(|c| t.starts_with(c)) {
        out.push(("stat-drop", format!("{indent};")));
    } else if whole_statement && is_store(t) {
        out.push(("store-drop", format!("{indent};")));
    } else if whole_statement && is_dropped_call(t) {
        out.push(("call-drop", format!("{indent};")));
    }
    if let Some(rest) = t.strip_prefix("return -E") {
        if rest.ends_with(';')
            && rest[..rest.len() - 1]
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            out.push(("ret-zero", format!("{indent}return 0;")));
        }
    }
    if t == "return true;" {
        out.push(("ret-flip", format!("{indent}return false;")));
    } else if t == "return false;" {
        out.push(("ret-flip", format!("{indent}return true;")));
    }
    for (at, _) in code.match_indices("-E") {
        let name: String = code[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            .collect();
        if name.len() >= 4 && name.starts_with('E') {
            let to = if name == "EINVAL" { "EPERM" } else { "EINVAL" };
            out.push(("errno-swap", replace(at + 1, name.len(), to)));
        }
    }
    for (at, num) in numbers(code) {
        if let Some(new) = off_by_one(num) {
            out.push(("const-change", replace(at, num.len(), &new)));
        }
    }
    for (at, word) in words(code) {
        for (a, z) in TWINS {
            let to = if word == a {
                z
            } else if word == z {
                a
            } else {
                continue;
            };
            out.push(("field-swap", replace(at, word.len(), to)));
        }
    }
    out
}

fn matching_paren(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices().skip_while(|(i, _)| *i < open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn paren_balanced(s: &str) -> bool {
    s.chars().filter(|&c| c == '(').count() == s.chars().filter(|&c| c == ')').count()
}

/// `a->b = c;`, `a.b[i] = c;`, `*p = c;`, `WRITE_ONCE(x, y);`, `rcu_assign_pointer(x, y);`:
/// stores to memory (not declarations, not local variables).
fn is_store(t: &str) -> bool {
    if t.starts_with("WRITE_ONCE(") || t.starts_with("rcu_assign_pointer(") {
        return true;
    }
    let Some(eq) = t.find(" = ") else {
        return false;
    };
    let lhs = &t[..eq];
    !lhs.contains(' ')
        && (lhs.contains("->") || lhs.contains('.') || lhs.starts_with('*') || lhs.contains('['))
}

fn is_dropped_call(t: &str) -> bool {
    let Some(open) = t.find('(') else {
        return false;
    };
    let name = &t[..open];
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            name,
            "if" | "while" | "for" | "switch" | "return" | "sizeof"
        )
        && t.ends_with(");")
        && !KEEP_CALLS
            .iter()
            .any(|k| name.starts_with(k) || name.ends_with(k))
        && !COUNTERS.iter().any(|c| t.starts_with(c))
}

fn words(code: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((s, &code[s..i]));
        } else {
            i += 1;
        }
    }
    out
}

fn numbers(code: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let word_before = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if b[i].is_ascii_digit() && !word_before {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((s, &code[s..i]));
        } else {
            i += 1;
        }
    }
    out
}

/// `0` → `1`, `1` → `0`, small decimal `n` → `n + 1` (only up to 64: sizes, lengths, shifts).
fn off_by_one(num: &str) -> Option<String> {
    let n: u32 = num.parse().ok()?;
    match n {
        0 => Some("1".into()),
        1 => Some("0".into()),
        2..=64 => Some((n + 1).to_string()),
        _ => None,
    }
}

/// Every mutant of `file` (tree path) with contents `text`, on its TCP-AO lines inside
/// function bodies.
pub fn mutants_of(file: &str, text: &str) -> Vec<Mutant> {
    let ao = aocode::ao_lines(file, text);
    let funcs = aocode::functions(text);
    let short = short_file(file);
    let mut out = Vec::new();
    let mut in_comment = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let (code, after) = code_mask(line, in_comment);
        in_comment = after;
        let Some(func) = aocode::function_at(&funcs, n) else {
            continue;
        };
        if !ao.contains(&n)
            || line.trim_start().starts_with('#')
            || line.starts_with('{')
            || line.starts_with('}')
        {
            continue;
        }
        // Only the body: past the line of the opening brace.
        let body_start = text
            .lines()
            .enumerate()
            .skip(func.start - 1)
            .find(|(_, l)| *l == "{")
            .map_or(func.start, |(j, _)| j + 1);
        if n <= body_start {
            continue;
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (op, after_line) in mutate_line(line, &code) {
            let k = seen.entry(op).or_insert(0);
            out.push(Mutant {
                id: format!("{short}:{n}:{op}:{k}"),
                file: file.to_owned(),
                line: n,
                op: op.to_owned(),
                function: func.name.clone(),
                before: line.to_owned(),
                after: after_line,
            });
            *k += 1;
        }
    }
    out
}

/// Picks `n` mutants: round-robin over the operators, each operator's mutants in a seeded
/// shuffle, so every operator and many functions are represented.
pub fn sample(all: &[Mutant], n: usize, seed: u64) -> Vec<Mutant> {
    let mut rng = crate::rng::Rng::new(seed);
    let mut by_op: Vec<Vec<&Mutant>> = OPERATORS
        .iter()
        .map(|op| all.iter().filter(|m| m.op == *op).collect())
        .collect();
    for g in &mut by_op {
        for i in (1..g.len()).rev() {
            let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
            g.swap(i, j);
        }
    }
    let mut out = Vec::new();
    let mut round = 0;
    while out.len() < n && by_op.iter().any(|g| g.len() > round) {
        for g in &by_op {
            if out.len() < n {
                if let Some(m) = g.get(round) {
                    out.push((*m).clone());
                }
            }
        }
        round += 1;
    }
    out.sort_by(|a, b| {
        a.file
            .cmp(&b.file)
            .then(a.line.cmp(&b.line))
            .then(a.id.cmp(&b.id))
    });
    out
}

/// Applies `m` to `tree` (see [`super::edit`]): the line must read as the mutant expects.
///
/// # Errors
/// [`VmError::Source`] when the line differs or another edit is applied, [`VmError::Io`].
pub fn apply(tree: &Path, m: &Mutant) -> Result<Applied, VmError> {
    let text =
        fs::read_to_string(tree.join(&m.file)).map_err(io_err(tree.join(&m.file).display()))?;
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.get(m.line - 1) != Some(&m.before.as_str()) {
        return Err(VmError::Source(format!(
            "{}:{} does not read as mutant {} expects (was the tree changed?)",
            m.file, m.line, m.id
        )));
    }
    lines[m.line - 1] = &m.after;
    let new = lines.join("\n");
    edit::apply(
        tree,
        &format!("mutant {}", m.id),
        std::slice::from_ref(&m.file),
        |t| fs::write(t.join(&m.file), &new).map_err(io_err(m.file.as_str())),
    )
}

/// How a mutant fared against a suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum Fate {
    /// Tests failed: their names.
    Killed(Vec<String>),
    /// The kernel crashed, oopsed or warned: the first report line.
    Crashed(String),
    /// The run hung.
    TimedOut,
    /// Every test passed.
    Survived,
    /// Tests failed once, but passed when run again on the same mutant: the failure was not
    /// the mutant's (a flaky test under load). Counted as survived.
    Flaky(Vec<String>),
    /// No test of the suite executes the mutated line (from the coverage data): not run.
    NoCoverage,
    /// The mutant did not compile: the failing target.
    DidNotBuild(String),
}

impl Fate {
    /// Whether the suite detected the mutant.
    pub fn detected(&self) -> bool {
        matches!(self, Fate::Killed(_) | Fate::Crashed(_) | Fate::TimedOut)
    }

    /// Short word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Fate::Killed(_) => "killed",
            Fate::Crashed(_) => "crashed",
            Fate::TimedOut => "timed-out",
            Fate::Survived => "survived",
            Fate::Flaky(_) => "flaky",
            Fate::NoCoverage => "no-coverage",
            Fate::DidNotBuild(_) => "did-not-build",
        }
    }
}

/// One mutant's result for one suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The mutant.
    pub mutant: Mutant,
    /// `ours` or `upstream`.
    pub suite: String,
    /// What happened.
    pub fate: Fate,
    /// Wall seconds (build + boot + tests).
    pub secs: f64,
}

/// Mutants argued equivalent (no behaviour change observable from userspace or the wire),
/// `selftests/lab/equivalent.toml`: id → the argument.
pub fn equivalents() -> BTreeMap<String, String> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        equivalent: BTreeMap<String, String>,
    }
    toml::from_str::<File>(include_str!("../../lab/equivalent.toml"))
        .map(|f| f.equivalent)
        .unwrap_or_default()
}

/// Score and table of a set of outcomes of one suite.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    /// Mutants with a result.
    pub total: usize,
    /// Detected (killed, crashed, timed out).
    pub detected: usize,
    /// Survived (including no-coverage), not argued equivalent.
    pub survived: usize,
    /// Argued equivalent (excluded).
    pub equivalent: usize,
    /// Did not build (excluded).
    pub stillborn: usize,
}

impl Score {
    /// Computes the score of `outcomes` with `equiv` excluded.
    pub fn of<'a>(
        outcomes: impl IntoIterator<Item = &'a Outcome>,
        equiv: &BTreeMap<String, String>,
    ) -> Score {
        let mut s = Score::default();
        for o in outcomes {
            s.total += 1;
            if matches!(o.fate, Fate::DidNotBuild(_)) {
                s.stillborn += 1;
            } else if o.fate.detected() {
                s.detected += 1;
            } else if equiv.contains_key(&o.mutant.id) {
                s.equivalent += 1;
            } else {
                s.survived += 1;
            }
        }
        s
    }

    /// detected / (detected + survived), in percent.
    pub fn pct(&self) -> f64 {
        let d = self.detected + self.survived;
        if d == 0 {
            0.0
        } else {
            #[allow(clippy::cast_precision_loss)]
            let p = 100.0 * self.detected as f64 / d as f64;
            p
        }
    }
}

/// The KTAP document of a mutation run: one result per mutant and suite; detected is `ok`,
/// survived is `not ok` (a gap), equivalent is `XFAIL`, did-not-build is `SKIP`.
pub fn ktap(outcomes: &[Outcome], equiv: &BTreeMap<String, String>) -> String {
    let mut s = format!("TAP version 13\n1..{}\n", outcomes.len());
    for (i, o) in outcomes.iter().enumerate() {
        let n = i + 1;
        let name = format!("mutant/{}/{}", o.suite, o.mutant.id);
        let _ = match &o.fate {
            Fate::Killed(t) => writeln!(
                s,
                "ok {n} {name} # killed by {}",
                t.first().map_or("?", String::as_str).replace('#', "%")
            ),
            Fate::Crashed(l) => writeln!(s, "ok {n} {name} # crashed: {}", l.replace('#', "%")),
            Fate::TimedOut => writeln!(s, "ok {n} {name} # the run hung"),
            Fate::DidNotBuild(t) => writeln!(s, "ok {n} {name} # SKIP did not build ({t})"),
            Fate::Survived | Fate::NoCoverage | Fate::Flaky(_)
                if equiv.contains_key(&o.mutant.id) =>
            {
                writeln!(
                    s,
                    "ok {n} {name} # XFAIL equivalent: {}",
                    equiv[&o.mutant.id].replace('#', "%")
                )
            }
            Fate::Survived | Fate::NoCoverage | Fate::Flaky(_) => {
                for l in o.mutant.diff().lines() {
                    let _ = writeln!(s, "# {l}");
                }
                writeln!(s, "not ok {n} {name} # {}", o.fate.word())
            }
        };
    }
    s
}

/// The text summary: score per suite and, with two suites, the mutants one kills and the other
/// does not.
pub fn summary(outcomes: &[Outcome], equiv: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    let suites: BTreeSet<&str> = outcomes.iter().map(|o| o.suite.as_str()).collect();
    let _ = writeln!(
        s,
        "{:<10} {:>7} {:>9} {:>9} {:>11} {:>14} {:>7}",
        "suite", "mutants", "detected", "survived", "equivalent", "did-not-build", "score"
    );
    for suite in &suites {
        let sc = Score::of(outcomes.iter().filter(|o| o.suite == *suite), equiv);
        let _ = writeln!(
            s,
            "{suite:<10} {:>7} {:>9} {:>9} {:>11} {:>14} {:>6.1}%",
            sc.total,
            sc.detected,
            sc.survived,
            sc.equivalent,
            sc.stillborn,
            sc.pct()
        );
    }
    let mut by_op: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    for o in outcomes {
        if matches!(o.fate, Fate::DidNotBuild(_)) || equiv.contains_key(&o.mutant.id) {
            continue;
        }
        let e = by_op
            .entry((o.mutant.op.as_str(), o.suite.as_str()))
            .or_default();
        e.1 += 1;
        e.0 += usize::from(o.fate.detected());
    }
    let _ = writeln!(s, "# detected per operator:");
    for ((op, suite), (d, t)) in &by_op {
        let _ = writeln!(s, "  {op:<13} {suite:<9} {d}/{t}");
    }
    if suites.len() == 2 {
        let fate = |suite: &str, id: &str| {
            outcomes
                .iter()
                .find(|o| o.suite == suite && o.mutant.id == id)
                .map(|o| o.fate.detected())
        };
        let ids: BTreeSet<&str> = outcomes.iter().map(|o| o.mutant.id.as_str()).collect();
        let v: Vec<&str> = suites.iter().copied().collect();
        for (a, b) in [(v[0], v[1]), (v[1], v[0])] {
            let only: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| fate(a, id) == Some(true) && fate(b, id) == Some(false))
                .collect();
            let _ = writeln!(
                s,
                "# killed by {a}, survived {b} ({}): {}",
                only.len(),
                only.join(" ")
            );
        }
    }
    let _ = writeln!(s, "# survivors:");
    for o in outcomes
        .iter()
        .filter(|o| !o.fate.detected() && !matches!(o.fate, Fate::DidNotBuild(_)))
    {
        let eq = equiv
            .get(&o.mutant.id)
            .map_or(String::new(), |a| format!(" (equivalent: {a})"));
        let _ = writeln!(
            s,
            "  [{}] {} {} in {}(): `{}` -> `{}`{eq}",
            o.suite,
            o.fate.word(),
            o.mutant.id,
            o.mutant.function,
            o.mutant.before.trim(),
            o.mutant.after.trim()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `equivalents()` falls back to none when the file does not parse, so the file itself
    /// is checked here: it parses, and every entry is a mutant id with an argument.
    #[test]
    fn equivalent_file_has_an_argument_for_every_id() {
        let text = include_str!("../../lab/equivalent.toml");
        let parsed: toml::Table = toml::from_str(text).expect("equivalent.toml parses");
        let table = parsed["equivalent"]
            .as_table()
            .expect("an [equivalent] table");
        let entries = text.lines().filter(|l| l.starts_with('"')).count();
        assert_eq!(table.len(), entries, "one id per line, no duplicates");
        assert_eq!(equivalents().len(), entries);
        for (id, why) in table {
            let parts: Vec<&str> = id.split(':').collect();
            assert_eq!(parts.len(), 4, "{id}: file:line:operator:index");
            assert!(
                parts[0].starts_with("ipv4/") || parts[0].starts_with("ipv6/"),
                "{id}"
            );
            assert!(
                parts[1].parse::<u32>().is_ok() && parts[3].parse::<u32>().is_ok(),
                "{id}"
            );
            assert!(why.as_str().is_some_and(|w| w.len() > 40), "{id}: argue it");
        }
    }

    fn ops(line: &str) -> Vec<(&'static str, String)> {
        let (code, _) = code_mask(line, false);
        mutate_line(line, &code)
    }

    #[test]
    fn comparisons_flip_and_bound() {
        let m = ops("\tif (maclen < 4 && key->sndid == id)");
        let get = |op: &str| {
            m.iter()
                .filter(|x| x.0 == op)
                .map(|x| x.1.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            get("rel-flip"),
            [
                "\tif (maclen >= 4 && key->sndid == id)",
                "\tif (maclen < 4 && key->sndid != id)"
            ]
        );
        assert_eq!(get("rel-bound"), ["\tif (maclen <= 4 && key->sndid == id)"]);
        assert_eq!(get("logic-swap"), ["\tif (maclen < 4 || key->sndid == id)"]);
        assert_eq!(
            get("cond-negate"),
            ["\tif (!(maclen < 4 && key->sndid == id))"]
        );
        assert_eq!(
            get("const-change"),
            ["\tif (maclen < 5 && key->sndid == id)"]
        );
        assert_eq!(get("field-swap"), ["\tif (maclen < 4 && key->rcvid == id)"]);
    }

    #[test]
    fn arrows_shifts_and_strings_are_left_alone() {
        assert!(ops("\tx = a->b << 2;").iter().all(|m| m.0 != "rel-flip"));
        assert!(
            ops("\tpr_err(\"a < b == c\");")
                .iter()
                .all(|m| m.0 != "rel-flip")
        );
        assert!(ops("\t/* a < b */ x();").iter().all(|m| m.0 != "rel-flip"));
        assert!(
            ops("\ty >>= 1;")
                .iter()
                .all(|m| m.0 != "rel-flip" && m.0 != "rel-bound")
        );
    }

    #[test]
    fn statements() {
        assert_eq!(
            ops("\tNET_INC_STATS(net, LINUX_MIB_TCPAOBAD);")[0],
            ("stat-drop", "\t;".to_owned())
        );
        assert_eq!(
            ops("\tao->rnext_key = key;")[0],
            ("store-drop", "\t;".to_owned())
        );
        assert_eq!(
            ops("\tWRITE_ONCE(ao->risn, seq);")[0],
            ("store-drop", "\t;".to_owned())
        );
        assert!(
            ops("\tstruct tcp_ao_key *key = NULL;")
                .iter()
                .all(|m| m.0 != "store-drop")
        );
        assert_eq!(
            ops("\ttcp_ao_cache_traffic_keys(sk, ao, key);")[0],
            ("call-drop", "\t;".to_owned())
        );
        assert!(ops("\tkfree(key);").iter().all(|m| m.0 != "call-drop"));
        assert!(
            ops("\trcu_read_unlock();")
                .iter()
                .all(|m| m.0 != "call-drop")
        );
        assert!(
            ops("\tfoo(a,").is_empty(),
            "a statement split over lines is not dropped"
        );
        let r = ops("\t\treturn -EINVAL;");
        assert!(r.contains(&("ret-zero", "\t\treturn 0;".to_owned())));
        assert!(r.contains(&("errno-swap", "\t\treturn -EPERM;".to_owned())));
        assert_eq!(
            ops("\treturn true;"),
            [("ret-flip", "\treturn false;".to_owned())]
        );
    }

    #[test]
    fn block_comments_span_lines() {
        let (m, inside) = code_mask("\tx = 1; /* a < b", false);
        assert!(inside);
        assert_eq!(m.trim_end(), "\tx = 1;");
        let (m, inside) = code_mask(" c > d */ y = 2;", true);
        assert!(!inside);
        assert_eq!(m.trim(), "y = 2;");
    }

    const FILE: &str = "\
/* a < b */
static int tcp_ao_x(struct tcp_ao_info *ao, int n)
{
\tif (n < 4)
\t\treturn -EINVAL;
\tao->rnext_key = NULL;
\treturn 0;
}
";

    #[test]
    fn mutants_have_stable_ids_and_apply_and_restore() {
        let ms = mutants_of("net/ipv4/tcp_ao.c", FILE);
        assert!(ms.iter().all(|m| m.line >= 4 && m.line <= 7), "bodies only");
        let ids: Vec<&str> = ms.iter().map(|m| m.id.as_str()).collect();
        assert!(ids.contains(&"ipv4/tcp_ao:4:rel-flip:0"), "{ids:?}");
        assert!(ids.contains(&"ipv4/tcp_ao:6:store-drop:0"));
        assert_eq!(ms, mutants_of("net/ipv4/tcp_ao.c", FILE), "deterministic");
        let t = std::env::temp_dir().join(format!("tcpao-mut-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        fs::create_dir_all(t.join("net/ipv4")).unwrap();
        fs::write(t.join("net/ipv4/tcp_ao.c"), FILE).unwrap();
        let m = ms
            .iter()
            .find(|m| m.id == "ipv4/tcp_ao:6:store-drop:0")
            .unwrap();
        {
            let _a = apply(&t, m).unwrap();
            let now = fs::read_to_string(t.join("net/ipv4/tcp_ao.c")).unwrap();
            assert!(now.contains("\t;\n\treturn 0;"));
            assert!(apply(&t, m).is_err(), "one mutant at a time");
        } // dropped: restored
        assert_eq!(
            fs::read_to_string(t.join("net/ipv4/tcp_ao.c")).unwrap(),
            FILE
        );
        assert!(!t.join(edit::JOURNAL).exists());
        // A killed run: the guard never ran; the next lab command restores from the journal.
        let a = apply(&t, m).unwrap();
        std::mem::forget(a);
        assert_ne!(
            fs::read_to_string(t.join("net/ipv4/tcp_ao.c")).unwrap(),
            FILE
        );
        assert!(restore_if_interrupted(&t).unwrap());
        assert_eq!(
            fs::read_to_string(t.join("net/ipv4/tcp_ao.c")).unwrap(),
            FILE
        );
        assert!(!restore_if_interrupted(&t).unwrap());
        // A tree that changed under the mutant is refused.
        fs::write(t.join("net/ipv4/tcp_ao.c"), FILE.replace("NULL", "key")).unwrap();
        assert!(apply(&t, m).is_err());
        let _ = fs::remove_dir_all(&t);
    }

    #[test]
    fn sampling_spreads_over_operators_and_is_reproducible() {
        let ms = mutants_of("net/ipv4/tcp_ao.c", FILE);
        let s1 = sample(&ms, 4, 7);
        assert_eq!(s1.len(), 4);
        assert_eq!(s1, sample(&ms, 4, 7));
        let ops: BTreeSet<&str> = s1.iter().map(|m| m.op.as_str()).collect();
        assert_eq!(ops.len(), 4, "four different operators first: {s1:?}");
        assert_eq!(sample(&ms, 1000, 1).len(), ms.len());
    }

    #[test]
    fn scores_exclude_equivalent_and_stillborn() {
        let m = |id: &str| Mutant {
            id: id.into(),
            file: "f".into(),
            line: 1,
            op: "rel-flip".into(),
            function: "f".into(),
            before: "a".into(),
            after: "b".into(),
        };
        let o = |id: &str, suite: &str, fate: Fate| Outcome {
            mutant: m(id),
            suite: suite.into(),
            fate,
            secs: 0.0,
        };
        let outs = vec![
            o("a", "ours", Fate::Killed(vec!["t".into()])),
            o("b", "ours", Fate::Survived),
            o("c", "ours", Fate::DidNotBuild("x.o".into())),
            o("d", "ours", Fate::NoCoverage),
            o("e", "ours", Fate::Crashed("BUG".into())),
            o("a", "upstream", Fate::Survived),
            o("b", "upstream", Fate::Survived),
        ];
        let eq = BTreeMap::from([("d".to_owned(), "dead store".to_owned())]);
        let s = Score::of(outs.iter().filter(|x| x.suite == "ours"), &eq);
        assert_eq!(
            (s.total, s.detected, s.survived, s.equivalent, s.stillborn),
            (5, 2, 1, 1, 1)
        );
        assert!((s.pct() - 200.0 / 3.0).abs() < 1e-9);
        let k = ktap(&outs, &eq);
        assert!(k.contains("ok 1 mutant/ours/a # killed by t"));
        assert!(k.contains("not ok 2 mutant/ours/b # survived"));
        assert!(k.contains("ok 3 mutant/ours/c # SKIP did not build"));
        assert!(k.contains("ok 4 mutant/ours/d # XFAIL equivalent: dead store"));
        let sum = summary(&outs, &eq);
        assert!(
            sum.contains("# killed by ours, survived upstream (1): a"),
            "{sum}"
        );
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Configuring and building a lab kernel out of tree (`make O=<build dir>`), with a progress
//! line, a pre-flight check that names missing packages, and a failure message that names the
//! failing make target and the compiler's error lines.
//!
//! Configuration: virtme-ng's `virtme-configkernel --defconfig` (x86_64_defconfig plus what a
//! virtme guest needs) with the suite's `selftests/kselftest/config`, the tree's own
//! `tools/testing/selftests/net/tcp_ao/config` and the flavour's fragment; virtme appends its
//! own generic options last (they force DWARF debug info on), so the lab's fragment is
//! appended once more and `make olddefconfig` run again. The config is made in a scratch
//! directory and copied over the build's `.config` only when it differs, so a rebuild with an
//! unchanged config stays incremental. Every option asked for must survive Kconfig
//! ([`Config::unmet_in`]).

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::flavour::Flavour;
use super::kconfig::Config;
use super::source::{Source, short_hash};
use crate::vm::{VmError, cache_dir, io_err, which};

/// The suite's own kselftest config fragment.
pub const SUITE_FRAGMENT: &str = include_str!("../../kselftest/config");

/// Host tools a kernel build needs, with the Debian package of each (checked before make
/// runs, so the message names the package instead of a make error three screens up).
pub const BUILD_TOOLS: [(&str, &str); 9] = [
    ("make", "make"),
    ("gcc", "gcc"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("perl", "perl"),
    ("openssl", "openssl"),
    ("rsync", "rsync"),
    ("xz", "xz-utils"),
];

/// Headers a kernel build needs (objtool and sign-file), with their packages.
pub const BUILD_HEADERS: [(&str, &str); 2] = [
    ("/usr/include/openssl/opensslv.h", "libssl-dev"),
    ("/usr/include/gelf.h", "libelf-dev"),
];

/// Checks [`BUILD_TOOLS`] and [`BUILD_HEADERS`]; the error names every missing package.
///
/// # Errors
/// [`VmError::MissingTool`] listing what is missing.
pub fn preflight() -> Result<(), VmError> {
    let mut missing: Vec<(String, &str)> = BUILD_TOOLS
        .iter()
        .filter(|(t, _)| which(t).is_none())
        .map(|(t, p)| ((*t).to_owned(), *p))
        .collect();
    missing.extend(
        BUILD_HEADERS
            .iter()
            .filter(|(h, _)| !Path::new(h).is_file())
            .map(|(h, p)| ((*h).to_owned(), *p)),
    );
    if missing.is_empty() {
        return Ok(());
    }
    let pkgs: Vec<&str> = missing.iter().map(|m| m.1).collect();
    Err(VmError::MissingTool {
        tool: missing
            .iter()
            .map(|m| m.0.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        hint: format!(
            "a kernel build needs them: apt-get install {}",
            pkgs.join(" ")
        ),
    })
}

/// What a failed make run said: the innermost failing target and the error lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MakeFailure {
    /// `net/ipv4/tcp_ao.o` (from `make[4]: *** [scripts/Makefile.build:229: net/ipv4/tcp_ao.o] Error 1`).
    pub target: String,
    /// Compiler and tool error lines (`error:`, `not found`, `No such file`, `***`).
    pub lines: Vec<String>,
    /// A package that would fix it, when a line names a missing tool or header.
    pub package: Option<&'static str>,
}

/// Missing-tool and missing-header messages make prints, with the package that provides them.
const MISSING: [(&str, &str); 10] = [
    ("flex: not found", "flex"),
    ("bison: not found", "bison"),
    ("bc: not found", "bc"),
    ("rsync: not found", "rsync"),
    ("openssl/", "libssl-dev"),
    ("gelf.h", "libelf-dev"),
    ("libelf.h", "libelf-dev"),
    ("pahole", "dwarves"),
    ("cpio: not found", "cpio"),
    ("zstd: not found", "zstd"),
];

/// Reads make's output for why it failed.
pub fn diagnose(lines: &[String]) -> MakeFailure {
    let mut f = MakeFailure::default();
    for l in lines {
        let t = l.trim();
        if let Some(rest) = t.split_once("*** [").map(|(_, r)| r) {
            // make[4]: *** [scripts/Makefile.build:229: net/ipv4/tcp_ao.o] Error 1: the first
            // such line is the innermost target.
            if f.target.is_empty() {
                if let Some(inner) = rest.split(']').next() {
                    f.target = inner.rsplit(": ").next().unwrap_or(inner).to_owned();
                }
            }
        }
        let interesting = t.contains("error:")
            || t.contains("Error ")
            || t.contains("not found")
            || t.contains("No such file")
            || t.contains("***");
        if interesting && f.lines.len() < 30 {
            f.lines.push(t.to_owned());
        }
        if f.package.is_none()
            && (t.contains("not found") || t.contains("No such file") || t.contains("error:"))
        {
            f.package = MISSING.iter().find(|(m, _)| t.contains(m)).map(|m| m.1);
        }
    }
    f
}

/// Whether a make output line reports a compiled or linked object (`  CC      net/ipv4/tcp_ao.o`).
pub fn object_line(line: &str) -> Option<&str> {
    let t = line.strip_prefix("  ")?;
    let (tag, rest) = t.split_once(' ')?;
    let obj = rest.trim();
    (matches!(
        tag,
        "CC" | "AS" | "LD" | "AR" | "HOSTCC" | "HOSTLD" | "OBJCOPY" | "CPP" | "GEN" | "LDS"
    ) && !obj.is_empty())
    .then_some(obj)
}

/// A build's options: where, what, how many jobs.
#[derive(Debug, Clone)]
pub struct MakeJob<'a> {
    /// The kernel tree.
    pub source: &'a Source,
    /// The out-of-tree build directory.
    pub build_dir: &'a Path,
    /// The flavour (make variables, ccache).
    pub flavour: &'a Flavour,
    /// Make goals (`bzImage`).
    pub targets: Vec<String>,
    /// Extra make variables (`INSTALL_HDR_PATH=...`).
    pub vars: Vec<String>,
    /// `-j`.
    pub jobs: usize,
    /// Objects a full build of this flavour compiled last time (for the progress line).
    pub expect: Option<usize>,
    /// Print a progress line.
    pub progress: bool,
}

/// What a successful make did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MakeStats {
    /// Objects compiled or linked.
    pub objects: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Runs make for `job`, logging everything to `<build dir>/.tcpao-make.log`.
///
/// # Errors
/// [`VmError::Build`] naming the failing target (and a package, when a line names a missing
/// tool), [`VmError::Io`] when make cannot start.
pub fn make(job: &MakeJob<'_>) -> Result<MakeStats, VmError> {
    fs::create_dir_all(job.build_dir).map_err(io_err("build dir"))?;
    let log_path = job.build_dir.join(".tcpao-make.log");
    let mut log = fs::File::create(&log_path).map_err(io_err("make log"))?;
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(&job.source.tree)
        .arg(format!("O={}", job.build_dir.display()))
        .arg(format!("-j{}", job.jobs.max(1)));
    if job.flavour.ccache && which("ccache").is_some() {
        cmd.arg("CC=ccache gcc");
    }
    cmd.args(job.flavour.make_vars())
        .args(&job.vars)
        .args(&job.targets);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(io_err("starting make"))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let tty = job.progress && std::io::stderr().is_terminal();
    let mut objects = 0usize;
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut errors: Vec<String> = Vec::new();
    let mut last_print = Instant::now();
    let goal = job.targets.join(" ");
    for line in rx {
        let _ = writeln!(log, "{line}");
        if let Some(obj) = object_line(&line) {
            objects += 1;
            if job.progress && (tty || last_print.elapsed() >= Duration::from_secs(30)) {
                last_print = Instant::now();
                let of = job.expect.map_or_else(String::new, |e| format!("/~{e}"));
                let el = started.elapsed().as_secs();
                let msg = format!(
                    "# lab: [{}] make {goal}: {objects}{of} objects, {}:{:02}, {obj}",
                    job.flavour,
                    el / 60,
                    el % 60
                );
                if tty {
                    eprint!("\r\x1b[K{msg}");
                } else {
                    eprintln!("{msg}");
                }
            }
        } else if line.contains("error") || line.contains("***") || line.contains("not found") {
            errors.push(line.clone());
        }
        tail.push_back(line);
        if tail.len() > 60 {
            tail.pop_front();
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().map_err(io_err("waiting for make"))?;
    if tty {
        eprintln!();
    }
    if status.success() {
        return Ok(MakeStats {
            objects,
            elapsed: started.elapsed(),
        });
    }
    let mut lines = errors;
    lines.extend(tail);
    let f = diagnose(&lines);
    let mut detail = f.lines.join("\n");
    if let Some(p) = f.package {
        detail.push_str(&format!(
            "\n(install the `{p}` package: apt-get install {p})"
        ));
    }
    Err(VmError::Build {
        target: goal,
        failing: f.target,
        detail,
        log: log_path.display().to_string(),
    })
}

/// The requested options for `flavour` on `source`: the suite's fragment, the tree's tcp_ao
/// selftest fragment (when it has one), then the lab's base and flavour fragments.
pub fn requested(source: &Source, flavour: &Flavour) -> (Config, Vec<(String, String)>) {
    let mut fragments = vec![("suite.config".to_owned(), SUITE_FRAGMENT.to_owned())];
    if let Ok(t) = fs::read_to_string(
        source
            .tree
            .join("tools/testing/selftests/net/tcp_ao/config"),
    ) {
        fragments.push(("tcp_ao.config".to_owned(), t));
    }
    fragments.push(("lab.config".to_owned(), flavour.lab_fragment()));
    let mut want = Config::default();
    for (_, t) in &fragments {
        want.merge(t);
    }
    (want, fragments)
}

/// The hash naming a flavour's configuration of a tree: fragments, make variables, source id.
pub fn config_hash(source: &Source, flavour: &Flavour) -> String {
    let (_, fragments) = requested(source, flavour);
    let mut s = format!("{}\n{}\n", source.id, flavour.name);
    for (n, t) in &fragments {
        s.push_str(&format!("--- {n}\n{t}\n"));
    }
    s.push_str(&flavour.make_vars().join(" "));
    short_hash(&s)
}

/// Makes the `.config` for `flavour` in `build_dir` (see the module docs). Returns whether
/// the build's `.config` changed.
///
/// # Errors
/// [`VmError::MissingTool`] without virtme-ng, [`VmError::Build`] when Kconfig fails,
/// [`VmError::Config`] when an option asked for did not survive.
pub fn configure(source: &Source, flavour: &Flavour, build_dir: &Path) -> Result<bool, VmError> {
    let hash = config_hash(source, flavour);
    let stamp = build_dir.join(".tcpao-config-hash");
    if build_dir.join(".config").is_file()
        && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == hash)
    {
        return Ok(false);
    }
    let configkernel = virtme_configkernel()?;
    let scratch = build_dir.join(".tcpao-config");
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(io_err("config scratch dir"))?;
    let (want, fragments) = requested(source, flavour);
    let mut cmd = Command::new(&configkernel);
    cmd.current_dir(&source.tree).arg("--defconfig");
    for (name, text) in &fragments {
        let p = scratch.join(name);
        fs::write(&p, text).map_err(io_err("config fragment"))?;
        cmd.arg("--custom").arg(p);
    }
    cmd.arg(format!("O={}", scratch.display()));
    run_logged(
        &mut cmd,
        &scratch.join("configure.log"),
        "virtme-configkernel",
    )?;
    // virtme's generic options come last and turn DWARF on: the lab's fragment again.
    let config = scratch.join(".config");
    let mut text = fs::read_to_string(&config).map_err(io_err("scratch .config"))?;
    text.push_str("\n# tcpao lab, again after virtme's generic options\n");
    text.push_str(&flavour.lab_fragment());
    fs::write(&config, text).map_err(io_err("scratch .config"))?;
    let mut olddef = Command::new("make");
    olddef
        .arg("-C")
        .arg(&source.tree)
        .arg(format!("O={}", scratch.display()))
        .arg("olddefconfig");
    run_logged(
        &mut olddef,
        &scratch.join("olddefconfig.log"),
        "make olddefconfig",
    )?;
    let resolved_text = fs::read_to_string(&config).map_err(io_err("scratch .config"))?;
    let unmet = want.unmet_in(&Config::parse(&resolved_text));
    if !unmet.is_empty() {
        return Err(VmError::Config {
            flavour: flavour.name.into(),
            unmet,
        });
    }
    let target = build_dir.join(".config");
    let changed = fs::read_to_string(&target).map_or(true, |old| old != resolved_text);
    if changed {
        fs::write(&target, &resolved_text).map_err(io_err("build .config"))?;
    }
    fs::write(&stamp, format!("{hash}\n")).map_err(io_err("config stamp"))?;
    let _ = fs::remove_dir_all(&scratch);
    Ok(changed)
}

fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<(), VmError> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("running {what}")))?;
    let mut all = o.stdout.clone();
    all.extend_from_slice(&o.stderr);
    let _ = fs::write(log, &all);
    if o.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&all);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let f = diagnose(&lines);
    let mut detail = if f.lines.is_empty() {
        lines[lines.len().saturating_sub(10)..].join("\n")
    } else {
        f.lines.join("\n")
    };
    if let Some(p) = f.package {
        detail.push_str(&format!(
            "\n(install the `{p}` package: apt-get install {p})"
        ));
    }
    Err(VmError::Build {
        target: what.into(),
        failing: f.target,
        detail,
        log: log.display().to_string(),
    })
}

/// `virtme-configkernel` from the suite's virtme-ng venv (or `PATH`).
fn virtme_configkernel() -> Result<PathBuf, VmError> {
    let venv = cache_dir().join("venv/bin/virtme-configkernel");
    if venv.is_file() {
        return Ok(venv);
    }
    which("virtme-configkernel").ok_or_else(|| VmError::MissingTool {
        tool: "virtme-configkernel (virtme-ng)".into(),
        hint: "run scripts/setup.sh (virtme-ng in ~/.cache/tcpao/venv)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::flavour::FLAVOURS;
    use crate::lab::source::Origin;

    #[test]
    fn failing_target_and_package_are_named() {
        let out: Vec<String> = [
            "  CC      net/ipv4/tcp_ao.o",
            "../net/ipv4/tcp_ao.c:42:9: error: 'x' undeclared (first use in this function)",
            "make[4]: *** [../scripts/Makefile.build:229: net/ipv4/tcp_ao.o] Error 1",
            "make[3]: *** [../scripts/Makefile.build:478: net/ipv4] Error 2",
            "make: *** [Makefile:248: __sub-make] Error 2",
        ]
        .map(str::to_owned)
        .to_vec();
        let f = diagnose(&out);
        assert_eq!(f.target, "net/ipv4/tcp_ao.o");
        assert!(f.lines[0].contains("undeclared"));
        assert_eq!(f.package, None);
        let out = vec![
            "/bin/sh: 1: flex: not found".to_owned(),
            "make[2]: *** [scripts/Makefile.host:9: scripts/kconfig/lexer.lex.c] Error 127".into(),
        ];
        let f = diagnose(&out);
        assert_eq!(f.package, Some("flex"));
        assert_eq!(f.target, "scripts/kconfig/lexer.lex.c");
        let out = vec![
            "scripts/sign-file.c:25:10: fatal error: openssl/opensslv.h: No such file or directory"
                .to_owned(),
        ];
        assert_eq!(diagnose(&out).package, Some("libssl-dev"));
    }

    #[test]
    fn object_lines_are_counted() {
        assert_eq!(
            object_line("  CC      net/ipv4/tcp_ao.o"),
            Some("net/ipv4/tcp_ao.o")
        );
        assert_eq!(object_line("  LD      vmlinux.o"), Some("vmlinux.o"));
        assert_eq!(
            object_line("  AR      net/built-in.a"),
            Some("net/built-in.a")
        );
        assert_eq!(object_line("make[1]: Entering directory"), None);
        assert_eq!(object_line("  CC"), None);
        assert_eq!(object_line("  DESCEND objtool"), None);
    }

    fn fake_source(tree: &Path) -> Source {
        Source {
            id: "debian-7.2.13-1".into(),
            tree: tree.to_path_buf(),
            origin: Origin::Debian {
                package: "linux-source-7.2".into(),
                version: "7.2.13-1".into(),
            },
        }
    }

    #[test]
    fn config_hash_tells_flavours_and_trees_apart() {
        let a = fake_source(Path::new("/nonexistent/a"));
        let mut b = a.clone();
        b.id = "other".into();
        let hashes: Vec<String> = FLAVOURS.iter().map(|f| config_hash(&a, f)).collect();
        let mut uniq = hashes.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), FLAVOURS.len());
        assert_ne!(config_hash(&a, &FLAVOURS[0]), config_hash(&b, &FLAVOURS[0]));
        assert_eq!(config_hash(&a, &FLAVOURS[0]), config_hash(&a, &FLAVOURS[0]));
    }

    #[test]
    fn requested_options_take_the_tree_fragment_and_override_it() {
        let t = std::env::temp_dir().join(format!("tcpao-req-{}", std::process::id()));
        let d = t.join("tools/testing/selftests/net/tcp_ao");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("config"),
            "CONFIG_VETH=m\nCONFIG_NET_VRF=y\nCONFIG_TCP_AO=y\n",
        )
        .unwrap();
        let (want, frags) = requested(&fake_source(&t), &FLAVOURS[0]);
        assert_eq!(
            frags.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
            ["suite.config", "tcp_ao.config", "lab.config"]
        );
        assert_eq!(
            want.get("CONFIG_VETH"),
            "y",
            "the lab's built-in drivers win"
        );
        assert_eq!(want.get("CONFIG_TCP_AO"), "y");
        assert_eq!(want.get("CONFIG_PACKET"), "y", "from the suite's fragment");
        let _ = fs::remove_dir_all(&t);
    }
}

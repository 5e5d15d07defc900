// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-selftests vm`: boot a kernel that has TCP-AO under virtme-ng and run the suite (or
//! the kernel's own tcp_ao programs, libtest binaries, or a script) inside it.
//!
//! One concern per module:
//!
//! * [`fetch`]: which kernel. Debian sid's `linux-image-amd64`, resolved at run time from the
//!   metapackage's dependency, fetched with `apt-get download` through a private sources list
//!   (the host's apt configuration is not touched), unpacked under
//!   `$XDG_CACHE_HOME/tcpao/kernel/<V>/` and `depmod`-ed once; or a developer's image with its
//!   modules staged where vng finds them. Lab builds ([`crate::lab`]) come in as images with
//!   built-in drivers only.
//! * [`engine`]: how to boot. `vng` from `~/.cache/tcpao/venv` (or `$TCPAO_VNG`, or `PATH`);
//!   KVM probed with a tiny boot (cached per host boot), TCG when nested KVM does not work;
//!   the console streamed, a host-side hard timeout.
//! * [`guest`]: what runs inside. A generated script in a results directory shared with
//!   `--rwdir` runs each [`Step`] and records its output, exit code and (for coverage) the
//!   gcov counters there.
//! * [`console`]: what it means. The verdict comes from the recorded results, the console
//!   (panics, oopses, BUG, WARN, KASAN, lockdep, hung tasks), kmemleak and the exit status: a
//!   guest that hangs, dies (`vng` exit 255), panics or stops half way through a plan fails.

pub mod console;
pub mod engine;
pub mod fetch;
pub mod guest;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::cli::Accel;
pub use console::{
    CRASH_MARKERS, GuestRun, PROGRESS_TAG, StepOutput, Verdict, classify, crash_lines,
};
pub use engine::{Tools, find_tools, kvm_works};
pub use fetch::{Kernel, bzimage_release, custom_kernel, fetch_default_kernel};
pub use guest::{PASSED_ENV, Step, guest_script, passed_env};

/// Errors that stop `vm` before or while booting.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A host tool is missing.
    #[error("{tool} not found: {hint}")]
    MissingTool {
        /// The program looked for.
        tool: String,
        /// How to install it.
        hint: String,
    },
    /// Fetching or unpacking the default kernel failed.
    #[error("fetching the default kernel: {0}")]
    Fetch(String),
    /// The kernel given is unusable.
    #[error("kernel: {0}")]
    Kernel(String),
    /// A kernel source tree is unusable (not a tree, unclean for an out-of-tree build, …).
    #[error("kernel source: {0}")]
    Source(String),
    /// The resolved kernel config lacks options the lab asked for (Kconfig drops an option
    /// whose dependencies are not met): `(symbol, wanted, got)`.
    #[error("kernel config for `{flavour}`: Kconfig did not take {}", .unmet.iter().map(|(s, w, g)| format!("{s}={w} (got {g})")).collect::<Vec<_>>().join(", "))]
    Config {
        /// The flavour being configured.
        flavour: String,
        /// The options not taken.
        unmet: Vec<(String, String, String)>,
    },
    /// `make` failed: the innermost failing target and the compiler's error lines.
    #[error("make {target} failed{}:\n{detail}\n(full log: {log})", if .failing.is_empty() { String::new() } else { format!(" at {}", .failing) })]
    Build {
        /// The make goal (`bzImage`, `headers_install`, the selftests).
        target: String,
        /// The innermost failing make target (`net/ipv4/tcp_ao.o`), when make named one.
        failing: String,
        /// The compiler's or make's error lines.
        detail: String,
        /// Where the whole output is.
        log: String,
    },
    /// A command-line request that cannot be met.
    #[error("{0}")]
    Usage(String),
    /// I/O on the host.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

pub(crate) fn io_err(what: impl fmt::Display) -> impl FnOnce(io::Error) -> VmError {
    let what = what.to_string();
    move |source| VmError::Io { what, source }
}

/// `$XDG_CACHE_HOME/tcpao` or `~/.cache/tcpao`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("tcpao")
}

/// Finds `prog` in `PATH` (plus the sbin directories, where `depmod` lives).
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

pub(crate) fn need(prog: &str, package: &str) -> Result<PathBuf, VmError> {
    which(prog).ok_or_else(|| VmError::MissingTool {
        tool: prog.into(),
        hint: format!(
            "install the `{package}` package (apt-get install {package}), or run scripts/setup.sh"
        ),
    })
}

/// How a guest is booted: the kernel and the machine around it.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The kernel to boot.
    pub kernel: Kernel,
    /// KVM or TCG (`Auto` probes KVM once per host boot).
    pub accel: Accel,
    /// vCPUs; `None`: 2 under KVM, 1 under TCG (see [`crate::cli::VmArgs::cpus`]).
    pub cpus: Option<u32>,
    /// Guest memory (`vng --memory`).
    pub memory: String,
    /// Host-side hard limit for the whole guest run.
    pub timeout: Duration,
    /// Extra options for QEMU (`vng --qemu-opts`), e.g. `-accel tcg,thread=single`.
    pub qemu_opts: Option<String>,
    /// Stream the guest's output to this process's stdout/stderr as it comes.
    pub echo: bool,
}

/// A finished guest run: what happened, what it means, and where its files are.
#[derive(Debug)]
pub struct Finished {
    /// What the guest did, as recorded.
    pub run: GuestRun,
    /// Its verdict.
    pub verdict: Verdict,
    /// The results directory (KTAP, exit codes, console, dmesg, gcov); removed by
    /// [`Finished::cleanup`].
    pub results: PathBuf,
    /// Whether KVM was used.
    pub kvm: bool,
    /// Time until the guest script started.
    pub boot_time: Option<Duration>,
    /// Wall time of the whole run.
    pub total: Duration,
}

impl Finished {
    /// Removes the results directory.
    pub fn cleanup(&self) {
        let _ = fs::remove_dir_all(&self.results);
    }
}

/// The host-side limit on a guest run unless `--timeout` says otherwise, for a kernel of
/// slowdown 1 (scaled by [`Kernel::slowdown`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The guest's timeout factor: [`crate::harness::SLOW_FACTOR`] under TCG, times the
/// kernel's slowdown (a lab `debug` kernel's KASAN and lockdep).
pub fn slow_factor(kvm: bool, kernel: &Kernel) -> u32 {
    let tcg = if kvm { 1 } else { crate::harness::SLOW_FACTOR };
    tcg * kernel.slowdown.max(1)
}

/// Boots `machine` and runs `steps` inside it, sharing `share` read-write with the guest.
/// Files the guest must execute are staged in the shared results directory (the guest cannot
/// see the host's /tmp and /var/tmp, see docs/running.md).
///
/// # Errors
/// [`VmError`] when a tool is missing or the host side fails; everything that goes wrong in
/// the guest is in the returned [`Verdict`].
pub fn run_guest(
    machine: &Machine,
    steps: &[Step],
    share: &[PathBuf],
) -> Result<Finished, VmError> {
    let started = Instant::now();
    let tools = find_tools()?;
    let kvm = match machine.accel {
        Accel::Tcg => false,
        Accel::Kvm => true,
        Accel::Auto => {
            let ok = kvm_works(&machine.kernel.image);
            if !ok && machine.echo {
                eprintln!(
                    "# vm: KVM does not work here (nested KVM hangs or -cpu host fails); using TCG"
                );
            }
            ok
        }
    };
    prune_old_runs(&cache_dir().join("run"), Duration::from_secs(3 * 24 * 3600));
    let results = new_results_dir()?;
    let staged = guest::stage(&results, steps)?;
    let env = passed_env(|k| std::env::var(k).ok());
    let script = guest_script(&results, &staged, slow_factor(kvm, &machine.kernel), &env);
    let script_path = results.join("guest.sh");
    fs::write(&script_path, script).map_err(io_err("guest script"))?;
    let boot = engine::boot(&tools, machine, kvm, &results, share, &script_path)?;
    let run = GuestRun::read(
        &results,
        &staged,
        boot.vng_exit,
        boot.timed_out,
        boot.console,
    );
    let _ = fs::write(results.join("console.log"), &run.console);
    let verdict = classify(&run);
    Ok(Finished {
        run,
        verdict,
        results,
        kvm,
        boot_time: boot.boot_time,
        total: started.elapsed(),
    })
}

/// A fresh results directory under `~/.cache/tcpao/run/` (shared with the guest).
fn new_results_dir() -> Result<PathBuf, VmError> {
    let base = cache_dir().join("run");
    fs::create_dir_all(&base).map_err(io_err("results dir"))?;
    for n in 0.. {
        let d = base.join(format!("{}-{n}", std::process::id()));
        match fs::create_dir(&d) {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("results dir")(e)),
        }
    }
    unreachable!("an unbounded range ends only by returning")
}

/// Removes kept results directories (failed runs, `--keep`) older than `age`.
fn prune_old_runs(dir: &Path, age: Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|a| a > age);
        if old {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// The rounds a suite run will make: `--repeat` as the guest's `tcpao-selftests` will read
/// the suite arguments (the same clap definition), 1 when they do not parse.
pub fn repeat_rounds(suite_args: &[String]) -> u32 {
    use clap::Parser;
    let cli = crate::cli::Cli::try_parse_from(
        std::iter::once("tcpao-selftests").chain(suite_args.iter().map(String::as_str)),
    );
    let repeat = match cli {
        Ok(crate::cli::Cli {
            command: Some(crate::cli::Command::Run(r)),
            ..
        }) => r.repeat,
        Ok(c) => c.run.repeat,
        Err(_) => 1,
    };
    u32::try_from(repeat).unwrap_or(1)
}

/// Make every `--save-pcaps DIR` of the suite arguments writable from the guest: the guest
/// sees the host's files read-only (or under a throw-away overlay), so `DIR` is created on the
/// host, made absolute, and shared with `--rwdir`. Returns the rewritten arguments and the
/// directories to share.
pub(crate) fn share_pcap_dirs(
    suite_args: &[String],
) -> Result<(Vec<String>, Vec<PathBuf>), VmError> {
    let mut out = Vec::with_capacity(suite_args.len());
    let mut dirs = Vec::new();
    let mut share = |d: &str| -> Result<String, VmError> {
        fs::create_dir_all(d).map_err(io_err(format!("creating --save-pcaps {d}")))?;
        let abs = fs::canonicalize(d).map_err(io_err(format!("--save-pcaps {d}")))?;
        let s = abs.display().to_string();
        dirs.push(abs);
        Ok(s)
    };
    let mut it = suite_args.iter();
    while let Some(a) = it.next() {
        if a == "--save-pcaps" || a == "--out" {
            out.push(a.clone());
            if let Some(d) = it.next() {
                out.push(share(d)?);
            }
        } else if let Some(d) = a.strip_prefix("--save-pcaps=") {
            out.push(format!("--save-pcaps={}", share(d)?));
        } else if let Some(d) = a.strip_prefix("--out=") {
            out.push(format!("--out={}", share(d)?));
        } else {
            out.push(a.clone());
        }
    }
    Ok((out, dirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_rounds_reads_repeat_as_the_suite_does() {
        let a = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // One row per case: suite arguments, rounds.
        let rows: [(&[&str], u32); 8] = [
            (&[], 1),
            (&["--jobs", "2"], 1),
            (&["--repeat", "10"], 10),
            (&["--repeat=3", "paths/"], 3),
            // The suite refuses a repeated `--repeat` (clap), so the guest run fails anyway.
            (&["--repeat", "2", "--repeat", "5"], 1),
            (&["--repeat", "zero"], 1),
            (&["--repeat", "0"], 1),
            (&["run", "--repeat", "4"], 4),
        ];
        for (args, want) in rows {
            assert_eq!(repeat_rounds(&a(args)), want, "{args:?}");
        }
    }

    #[test]
    fn the_guest_timeout_factor_is_tcg_times_the_flavours_slowdown() {
        let kernel = |slowdown| Kernel {
            image: PathBuf::from("/k"),
            release: None,
            origin: String::new(),
            cmdline: Vec::new(),
            slowdown,
        };
        // One row per case: KVM, slowdown, factor.
        let rows = [
            (true, 1, 1),
            (false, 1, crate::harness::SLOW_FACTOR),
            (true, 4, 4),
            (false, 4, 4 * crate::harness::SLOW_FACTOR),
            (false, 0, crate::harness::SLOW_FACTOR),
        ];
        for (kvm, slowdown, want) in rows {
            assert_eq!(
                slow_factor(kvm, &kernel(slowdown)),
                want,
                "{kvm} {slowdown}"
            );
        }
    }
}

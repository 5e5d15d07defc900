// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-selftests vm`: boot a kernel that has TCP-AO under virtme-ng and run the suite (or
//! libtest binaries, or a script) inside it.
//!
//! * Default kernel: Debian sid's `linux-image-amd64`, resolved at run time from the
//!   metapackage's dependency, fetched with `apt-get download` through a private sources
//!   list (the host's apt configuration is not touched), unpacked with `dpkg-deb -x` under
//!   `$XDG_CACHE_HOME/tcpao/kernel/<V>/` (or `~/.cache/…`), `depmod`-ed once.
//! * Engine: `vng` from `~/.cache/tcpao/venv` (or `$TCPAO_VNG`, or `PATH`). KVM is probed
//!   with a tiny boot (cached per host boot); nested KVM that does not work falls back to
//!   TCG (`--disable-kvm`) with a one-line notice.
//! * The guest runs a generated script from a results directory shared with `--rwdir`; it
//!   writes the KTAP stream, each binary's exit code and `dmesg` there. The verdict comes
//!   from parsing those results, the console (kernel panics, oopses, BUG, KASAN, call
//!   traces) and the exit status, with a host-side hard timeout: a guest that hangs, dies
//!   (`vng` exit 255), panics or stops half way through its plan is a failure.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::{Accel, VmArgs};
use crate::ktap::{KSFT_FAIL, KSFT_PASS, KSFT_SKIP, Status, Summary, Totals};

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
    /// I/O on the host.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
}

fn io_err(what: impl fmt::Display) -> impl FnOnce(io::Error) -> VmError {
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

fn need(prog: &str, package: &str) -> Result<PathBuf, VmError> {
    which(prog).ok_or_else(|| VmError::MissingTool {
        tool: prog.into(),
        hint: format!(
            "install the `{package}` package (apt-get install {package}), or run scripts/setup.sh"
        ),
    })
}

/// The host programs `vm` needs, found.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The `vng` launcher.
    pub vng: PathBuf,
}

/// Checks every host tool virtme-ng needs and names the package of a missing one.
///
/// # Errors
/// [`VmError::MissingTool`] for the first missing tool.
pub fn find_tools() -> Result<Tools, VmError> {
    need("qemu-system-x86_64", "qemu-system-x86")?;
    need("depmod", "kmod")?;
    // Without udev the guest's exit code does not come back (vng returns 255).
    need("udevadm", "udev")?;
    let file = need("file", "file")?;
    let bb = which("busybox-static")
        .or_else(|| which("busybox.static"))
        .or_else(|| which("busybox"));
    let static_bb = bb.as_ref().is_some_and(|b| {
        Command::new(&file)
            .arg("-L")
            .arg(b)
            .output()
            .map(|o| {
                let s = String::from_utf8_lossy(&o.stdout);
                s.contains("statically linked") || s.contains("static-pie linked")
            })
            .unwrap_or(false)
    });
    if !static_bb {
        return Err(VmError::MissingTool {
            tool: "a statically linked busybox".into(),
            hint: "install the `busybox-static` package (virtme-ng builds its initramfs with it)"
                .into(),
        });
    }
    let venv_vng = cache_dir().join("venv/bin/vng");
    let vng = std::env::var_os("TCPAO_VNG")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| venv_vng.is_file().then_some(venv_vng.clone()))
        .or_else(|| which("vng"))
        .ok_or_else(|| VmError::MissingTool {
            tool: "vng (virtme-ng)".into(),
            hint: format!(
                "python3 -m venv {v} && {v}/bin/pip install virtme-ng (needs the `python3-venv` \
                 package), or run scripts/setup.sh",
                v = cache_dir().join("venv").display()
            ),
        })?;
    Ok(Tools { vng })
}

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The image passed to `vng -r`.
    pub image: PathBuf,
    /// Its release (`uname -r`), when known.
    pub release: Option<String>,
    /// Where it came from, for the report.
    pub origin: String,
}

/// Reads the release string out of an x86 bzImage header (`kernel_version` field of the
/// boot protocol, offset 0x20E).
pub fn bzimage_release(data: &[u8]) -> Option<String> {
    if data.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let off = usize::from(u16::from_le_bytes([*data.get(0x20E)?, *data.get(0x20F)?])) + 0x200;
    let s = data.get(off..off.checked_add(256)?.min(data.len()))?;
    let end = s.iter().position(|&b| b == 0 || b == b' ')?;
    let r = std::str::from_utf8(&s[..end]).ok()?;
    (!r.is_empty()).then(|| r.to_owned())
}

fn image_release(path: &Path) -> Option<String> {
    let mut f = fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = f.read(&mut buf).ok()?;
    bzimage_release(&buf[..n])
}

struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(dir: PathBuf) -> Result<Self, VmError> {
        fs::create_dir_all(dir.join("lists/partial")).map_err(io_err("apt lists dir"))?;
        fs::create_dir_all(dir.join("cache/archives/partial")).map_err(io_err("apt cache dir"))?;
        fs::write(
            dir.join("sources.list"),
            "deb http://deb.debian.org/debian sid main\n",
        )
        .map_err(io_err("apt sources.list"))?;
        Ok(Apt { dir })
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        let d = self.dir.display();
        for o in [
            format!("Dir::Etc::sourcelist={d}/sources.list"),
            "Dir::Etc::sourceparts=-".into(),
            format!("Dir::State::Lists={d}/lists"),
            format!("Dir::Cache={d}/cache"),
            "APT::Sandbox::User=root".into(),
        ] {
            c.arg("-o").arg(o);
        }
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, prog: &str, args: &[&str], cwd: Option<&Path>) -> Result<String, VmError> {
        let mut c = self.cmd(prog);
        c.args(args);
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        let o = c.output().map_err(io_err(format!("running {prog}")))?;
        if !o.status.success() {
            return Err(VmError::Fetch(format!(
                "{prog} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn lists_age(&self) -> Option<Duration> {
        let m = fs::metadata(
            self.dir
                .join("lists/deb.debian.org_debian_dists_sid_InRelease"),
        )
        .ok()?;
        SystemTime::now().duration_since(m.modified().ok()?).ok()
    }
}

/// The kernel release the metapackage depends on, from `apt-cache depends` output.
pub fn release_from_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .filter_map(|d| d.trim().strip_prefix("linux-image-"))
        .find(|r| r.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_owned)
}

/// Resolves, downloads and unpacks Debian sid's generic `linux-image-amd64` (cached).
///
/// # Errors
/// [`VmError::Fetch`] when apt or dpkg-deb fail and nothing usable is cached.
pub fn fetch_default_kernel() -> Result<Kernel, VmError> {
    let root = cache_dir().join("kernel");
    let apt = Apt::new(cache_dir().join("apt"))?;
    need("apt-get", "apt")?;
    need("dpkg-deb", "dpkg")?;
    let fresh = apt
        .lists_age()
        .is_some_and(|a| a < Duration::from_secs(12 * 3600));
    if !fresh {
        if let Err(e) = apt.run("apt-get", &["-q", "update"], None) {
            if let Some(k) = newest_cached(&root) {
                eprintln!(
                    "# vm: apt-get update failed ({e}); using cached kernel {}",
                    k.origin
                );
                return Ok(k);
            }
            return Err(e);
        }
    }
    let deps = apt.run("apt-cache", &["depends", "linux-image-amd64"], None)?;
    let rel = release_from_depends(&deps).ok_or_else(|| {
        VmError::Fetch(format!("no linux-image-<V> dependency in: {}", deps.trim()))
    })?;
    if rel.contains('/') || rel.contains("..") {
        return Err(VmError::Fetch(format!("odd kernel release {rel:?}")));
    }
    let dir = root.join(&rel);
    let image = dir.join(format!("root/usr/lib/modules/{rel}/vmlinuz"));
    let origin = format!("Debian sid linux-image-amd64 -> {rel}");
    if dir.join("ready").is_file() && image.is_file() {
        return Ok(Kernel {
            image,
            release: Some(rel),
            origin,
        });
    }
    eprintln!("# vm: fetching {origin} into {}", dir.display());
    let _ = fs::remove_dir_all(&dir);
    let debs = dir.join("debs");
    fs::create_dir_all(&debs).map_err(io_err("kernel cache dir"))?;
    let pkgs: Vec<String> = ["linux-binary", "linux-modules", "linux-base"]
        .iter()
        .map(|p| format!("{p}-{rel}"))
        .collect();
    let mut args = vec!["-q", "download"];
    args.extend(pkgs.iter().map(String::as_str));
    apt.run("apt-get", &args, Some(&debs))?;
    let unpacked = dir.join("root");
    for e in fs::read_dir(&debs).map_err(io_err("reading debs"))? {
        let p = e.map_err(io_err("reading debs"))?.path();
        if p.extension().is_some_and(|x| x == "deb") {
            let o = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&p)
                .arg(&unpacked)
                .output()
                .map_err(io_err("dpkg-deb"))?;
            if !o.status.success() {
                return Err(VmError::Fetch(format!(
                    "dpkg-deb -x {}: {}",
                    p.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
        }
    }
    if !image.is_file() {
        return Err(VmError::Fetch(format!("no vmlinuz at {}", image.display())));
    }
    // Debian runs depmod in postinst; do it once here (vng would otherwise redo it, ~15 s).
    let depmod = need("depmod", "kmod")?;
    let o = Command::new(depmod)
        .args(["-a", "-b"])
        .arg(unpacked.join("usr"))
        .arg(&rel)
        .output()
        .map_err(io_err("depmod"))?;
    if !o.status.success() {
        return Err(VmError::Fetch(format!(
            "depmod: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    let _ = fs::remove_dir_all(&debs);
    fs::write(dir.join("ready"), &origin).map_err(io_err("ready marker"))?;
    Ok(Kernel {
        image,
        release: Some(rel),
        origin,
    })
}

fn newest_cached(root: &Path) -> Option<Kernel> {
    let mut best: Option<(SystemTime, Kernel)> = None;
    for e in fs::read_dir(root).ok()?.flatten() {
        let rel = e.file_name().to_string_lossy().into_owned();
        let image = e.path().join(format!("root/usr/lib/modules/{rel}/vmlinuz"));
        let Ok(m) = fs::metadata(e.path().join("ready")) else {
            continue;
        };
        let t = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if image.is_file() && best.as_ref().is_none_or(|(bt, _)| t > *bt) {
            let origin = format!("cached {rel}");
            best = Some((
                t,
                Kernel {
                    image,
                    release: Some(rel),
                    origin,
                },
            ));
        }
    }
    best.map(|b| b.1)
}

/// Prepares a developer's kernel: with `--modules`, a staging tree
/// `<cache>/custom/<V>/usr/lib/modules/<V>/` holding a `vmlinuz` symlink and the modules
/// (hard links or copies), `depmod`-ed there, so vng finds the modules next to the image
/// (see docs/running.md).
///
/// # Errors
/// [`VmError::Kernel`] when the image or modules are unusable.
pub fn custom_kernel(image: &Path, modules: Option<&Path>) -> Result<Kernel, VmError> {
    let image = fs::canonicalize(image)
        .map_err(|e| VmError::Kernel(format!("{}: {e}", image.display())))?;
    let release = image_release(&image);
    let Some(mods) = modules else {
        return Ok(Kernel {
            origin: format!("{}", image.display()),
            image,
            release,
        });
    };
    let rel = release.clone().ok_or_else(|| {
        VmError::Kernel(format!(
            "cannot read the release from {} (not a bzImage?)",
            image.display()
        ))
    })?;
    let mods =
        fs::canonicalize(mods).map_err(|e| VmError::Kernel(format!("{}: {e}", mods.display())))?;
    let src = [
        mods.join("lib/modules").join(&rel),
        mods.join("usr/lib/modules").join(&rel),
        mods.clone(),
    ]
    .into_iter()
    .find(|d| d.join("modules.order").is_file() || d.join("kernel").is_dir())
    .ok_or_else(|| {
        VmError::Kernel(format!(
            "no modules for {rel} under {} (want lib/modules/{rel}/ or a dir with modules.order)",
            mods.display()
        ))
    })?;
    let stage_root = cache_dir().join("custom").join(&rel);
    let stage = stage_root.join("usr/lib/modules").join(&rel);
    let _ = fs::remove_dir_all(&stage_root);
    fs::create_dir_all(&stage).map_err(io_err("staging dir"))?;
    for e in fs::read_dir(&src).map_err(io_err("modules dir"))?.flatten() {
        let name = e.file_name();
        // depmod output is regenerated in the staging tree; `build`/`source` point at trees.
        let n = name.to_string_lossy();
        if n.starts_with("modules.")
            && !matches!(
                &*n,
                "modules.order" | "modules.builtin" | "modules.builtin.modinfo"
            )
        {
            continue;
        }
        if n == "build" || n == "source" {
            continue;
        }
        link_tree(&e.path(), &stage.join(&name))?;
    }
    std::os::unix::fs::symlink(&image, stage.join("vmlinuz")).map_err(io_err("symlink"))?;
    let depmod = need("depmod", "kmod")?;
    let o = Command::new(depmod)
        .args(["-a", "-b"])
        .arg(stage_root.join("usr"))
        .arg(&rel)
        .output()
        .map_err(io_err("depmod"))?;
    if !o.status.success() || !stage.join("modules.dep").is_file() {
        return Err(VmError::Kernel(format!(
            "depmod: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(Kernel {
        image: stage.join("vmlinuz"),
        release: Some(rel),
        origin: format!("{} with modules {}", image.display(), src.display()),
    })
}

/// Hard-links (or copies, across file systems) a file tree: real files, not symlinks, so
/// the guest can read them even when the source lives where it cannot see (/tmp, /var/tmp).
fn link_tree(src: &Path, dst: &Path) -> Result<(), VmError> {
    let meta = fs::metadata(src).map_err(io_err(src.display()))?;
    if meta.is_dir() {
        fs::create_dir_all(dst).map_err(io_err(dst.display()))?;
        for e in fs::read_dir(src).map_err(io_err(src.display()))? {
            let e = e.map_err(io_err(src.display()))?;
            link_tree(&e.path(), &dst.join(e.file_name()))?;
        }
        Ok(())
    } else {
        fs::hard_link(src, dst)
            .or_else(|_| fs::copy(src, dst).map(|_| ()))
            .map_err(io_err(format!("staging {}", src.display())))
    }
}

/// Whether KVM works here: `/dev/kvm` opens and a tiny boot of `image` (with `-cpu host`,
/// as vng uses) gets to its expected "no root" panic within 20 s. Cached per host boot.
pub fn kvm_works(image: &Path) -> bool {
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let stamp = cache_dir().join(format!("kvm-probe-{}", boot_id.trim()));
    if let Ok(s) = fs::read_to_string(&stamp) {
        return s.trim() == "yes";
    }
    let ok = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
        && tiny_boot(image, Duration::from_secs(20));
    let _ = fs::create_dir_all(cache_dir());
    let _ = fs::write(&stamp, if ok { "yes\n" } else { "no\n" });
    ok
}

fn tiny_boot(image: &Path, limit: Duration) -> bool {
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
        ])
        .args(["-nodefaults", "-serial", "stdio", "-kernel"])
        .arg(image)
        .args(["-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    let Ok(mut child) = child else { return false };
    let out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = out {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let status = wait_deadline(&mut child, Instant::now() + limit);
    if status.is_none() {
        kill_group(&child);
        let _ = child.wait();
    }
    let text = reader.join().unwrap_or_default();
    status.is_some_and(|s| s.success()) && (text.contains("Kernel panic") || text.contains("VFS:"))
}

fn wait_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

/// Console lines that mean the guest kernel crashed or complained.
pub const CRASH_MARKERS: [&str; 11] = [
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
];

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

/// Kernel crash/oops lines in console output, with a few lines of context after each.
pub fn crash_lines(console: &str) -> Vec<String> {
    let lines: Vec<&str> = console.lines().collect();
    let mut out = Vec::new();
    let mut until = 0;
    for (i, l) in lines.iter().enumerate() {
        let hit = is_kernel_line(l) && CRASH_MARKERS.iter().any(|m| l.contains(m));
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

/// What happened to the guest, as seen from the host.
#[derive(Debug, Clone, Default)]
pub struct GuestRun {
    /// vng's exit code (None when killed by the host timeout).
    pub vng_exit: Option<i32>,
    /// The host timeout fired.
    pub timed_out: bool,
    /// Console output (stdout and stderr of vng).
    pub console: String,
    /// The suite's (or script's) KTAP output as the guest wrote it to the results dir.
    pub ktap: Option<String>,
    /// The suite's (or script's) exit code as the guest recorded it.
    pub suite_rc: Option<i32>,
    /// Per libtest binary: (name, output, exit code as recorded).
    pub cargo: Vec<(String, String, Option<i32>)>,
    /// `dmesg` as the guest saved it at the end.
    pub dmesg: Option<String>,
    /// Whether the guest script ran to its end.
    pub finished: bool,
}

/// The verdict on a guest run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// kselftest exit code (0, 1, 4).
    pub exit: i32,
    /// Counts over the suite's KTAP and the libtest binaries.
    pub totals: Totals,
    /// Libtest part of the counts.
    pub cargo_totals: Totals,
    /// Why the run failed, if it did (besides failed tests).
    pub problems: Vec<String>,
    /// Remarks that do not fail the run (a libtest binary that printed no results).
    pub notes: Vec<String>,
    /// Kernel crash lines found.
    pub crash: Vec<String>,
    /// Failed tests.
    pub failures: Vec<(String, Status)>,
}

/// Classifies a guest run: results from the KTAP/libtest streams, the recorded exit codes,
/// kernel crash lines, the host timeout and vng's exit status.
pub fn classify(run: &GuestRun) -> Verdict {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut failures = Vec::new();
    let mut cargo_totals = Totals::default();
    for (name, out, rc) in &run.cargo {
        let s = Summary::parse(out);
        cargo_totals.pass += s.totals.pass;
        cargo_totals.fail += s.totals.fail;
        cargo_totals.skip += s.totals.skip;
        failures.extend(
            s.failures
                .iter()
                .map(|(n, st)| (format!("{name}: {n}"), st.clone())),
        );
        match rc {
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
    // The guest's own KTAP file is authoritative; fall back to the console when missing.
    let ktap_text = run.ktap.clone().unwrap_or_else(|| {
        run.console
            .lines()
            .filter(|l| !is_kernel_line(l))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let suite = Summary::parse(&ktap_text);
    problems.extend(suite.problems());
    failures.extend(suite.failures.iter().cloned());
    match run.suite_rc {
        Some(rc) if rc != suite.totals.exit_code() && suite.documents > 0 => {
            problems.push(format!(
                "suite exit code {rc} disagrees with its results ({})",
                suite.totals
            ));
        }
        Some(rc) if suite.documents == 0 && rc != KSFT_PASS && rc != KSFT_SKIP => {
            problems.push(format!("guest command exited {rc}"));
        }
        None if run.cargo.is_empty() || run.finished => {
            problems.push("the suite did not finish (no exit code recorded)".into());
        }
        _ => {}
    }
    let mut crash = crash_lines(&run.console);
    if crash.is_empty() {
        if let Some(d) = &run.dmesg {
            crash = crash_lines(d);
        }
    }
    if !crash.is_empty() {
        problems.push(format!(
            "the guest kernel reported a crash/oops: {}",
            crash[0].trim()
        ));
    }
    if run.timed_out {
        problems.push("host timeout: the guest hung (killed)".into());
    } else if run.vng_exit == Some(255) {
        problems.push("the guest died (vng exit 255)".into());
    } else if !run.finished {
        problems.push(format!(
            "the guest script did not run to its end (vng exit {})",
            run.vng_exit.map_or("?".into(), |c| c.to_string())
        ));
    }
    let mut totals = suite.totals;
    totals.pass += cargo_totals.pass;
    totals.fail += cargo_totals.fail;
    totals.skip += cargo_totals.skip;
    let exit = if !problems.is_empty() {
        KSFT_FAIL
    } else if suite.documents == 0 && run.cargo.is_empty() {
        // A plain script without KTAP: its exit code decides.
        match run.suite_rc {
            Some(0) => KSFT_PASS,
            Some(4) => KSFT_SKIP,
            _ => KSFT_FAIL,
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

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script the guest runs (kept short: vng carries only its path on the command line).
pub fn guest_script(
    results: &Path,
    selftests: &Path,
    suite_args: &[String],
    exec_script: Option<&Path>,
    cargo_tests: &[PathBuf],
    slow: bool,
) -> String {
    let r = sh_quote(&results.display().to_string());
    let mut s = String::new();
    s.push_str("#!/bin/sh\n# Generated by tcpao-selftests vm.\n");
    s.push_str(&format!("R={r}\n"));
    s.push_str("echo '# vm: guest up' \"$(uname -r)\"\n");
    s.push_str("export TCPAO_IN_VM=1\n");
    if slow {
        s.push_str("export KSFT_MACHINE_SLOW=yes\n");
    }
    // Show warnings and worse on the console (oops, BUG, call traces), not every info line.
    s.push_str("echo 5 > /proc/sys/kernel/printk 2>/dev/null\n");
    s.push_str("[ \"$(id -u)\" = 0 ] || { echo '# vm: guest is not root'; echo 1 > \"$R/suite.rc\"; exit 1; }\n");
    s.push_str("ip link set lo up 2>/dev/null || echo '# vm: cannot bring lo up'\n");
    for (i, b) in cargo_tests.iter().enumerate() {
        let q = sh_quote(&b.display().to_string());
        s.push_str(&format!("echo '# vm: cargo-test {i}:' {q}\n"));
        s.push_str(&format!(
            "{{ TCPAO_REQUIRE_TCP_AO=1 {q} 2>&1; echo $? > \"$R/cargo-{i}.rc\"; }} | tee \"$R/cargo-{i}.log\"\n"
        ));
    }
    match exec_script {
        Some(p) => {
            let q = sh_quote(&p.display().to_string());
            s.push_str(&format!(
                "{{ sh {q} 2>&1; echo $? > \"$R/suite.rc\"; }} | tee \"$R/ktap.txt\"\n"
            ));
        }
        None => {
            let mut cmd = sh_quote(&selftests.display().to_string());
            cmd.push_str(" run");
            for a in suite_args {
                cmd.push(' ');
                cmd.push_str(&sh_quote(a));
            }
            s.push_str(&format!(
                "{{ TCPAO_REQUIRE_TCP_AO=1 {cmd} 2>&1; echo $? > \"$R/suite.rc\"; }} | tee \"$R/ktap.txt\"\n"
            ));
        }
    }
    s.push_str("dmesg > \"$R/dmesg.txt\" 2>&1\necho done > \"$R/finished\"\n");
    s.push_str("exit \"$(cat \"$R/suite.rc\" 2>/dev/null || echo 1)\"\n");
    s
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

/// Make every `--save-pcaps DIR` of the suite arguments writable from the guest: the guest
/// sees the host's files read-only (or under a throw-away overlay), so `DIR` is created on the
/// host, made absolute, and shared with `--rwdir`. Returns the rewritten arguments and the
/// directories to share.
fn share_pcap_dirs(suite_args: &[String]) -> Result<(Vec<String>, Vec<PathBuf>), VmError> {
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
        if a == "--save-pcaps" {
            out.push(a.clone());
            if let Some(d) = it.next() {
                out.push(share(d)?);
            }
        } else if let Some(d) = a.strip_prefix("--save-pcaps=") {
            out.push(format!("--save-pcaps={}", share(d)?));
        } else {
            out.push(a.clone());
        }
    }
    Ok((out, dirs))
}

/// Entry point of `tcpao-selftests vm`.
pub fn main(args: &VmArgs) -> i32 {
    match run_vm(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tcpao-selftests vm: {e}");
            KSFT_FAIL
        }
    }
}

fn run_vm(args: &VmArgs) -> Result<i32, VmError> {
    let started = Instant::now();
    let kernel = match &args.kernel {
        Some(k) => custom_kernel(k, args.modules.as_deref())?,
        None => fetch_default_kernel()?,
    };
    if args.fetch_only {
        println!("{}", kernel.image.display());
        return Ok(0);
    }
    let tools = find_tools()?;
    let kvm = match args.accel {
        Accel::Tcg => false,
        Accel::Kvm => true,
        Accel::Auto => {
            let ok = kvm_works(&kernel.image);
            if !ok {
                eprintln!(
                    "# vm: KVM does not work here (nested KVM hangs or -cpu host fails); using TCG"
                );
            }
            ok
        }
    };
    prune_old_runs(&cache_dir().join("run"), Duration::from_secs(3 * 24 * 3600));
    let results = cache_dir()
        .join("run")
        .join(format!("{}", std::process::id()));
    let _ = fs::remove_dir_all(&results);
    fs::create_dir_all(&results).map_err(io_err("results dir"))?;
    // The guest sees the host's files through a read-only share of `/`, but vng mounts
    // fresh file systems on /tmp and /var/tmp (measured, see docs/running.md). Everything
    // the guest must run is therefore copied into the shared results directory.
    let bin_dir = results.join("bin");
    fs::create_dir_all(&bin_dir).map_err(io_err("results bin dir"))?;
    let stage = |src: &Path, name: String| -> Result<PathBuf, VmError> {
        let dst = bin_dir.join(name);
        fs::copy(src, &dst).map_err(io_err(format!(
            "copying {} into the guest's share",
            src.display()
        )))?;
        Ok(dst)
    };
    let file_name = |p: &Path| {
        p.file_name()
            .map_or_else(|| "x".into(), |n| n.to_string_lossy().into_owned())
    };
    let selftests = std::env::current_exe().map_err(io_err("current_exe"))?;
    let selftests_g = stage(&selftests, "tcpao-selftests".into())?;
    let exec_script = match &args.exec_script {
        Some(p) => Some(stage(p, "script.sh".into())?),
        None => None,
    };
    let cargo_tests: Vec<PathBuf> = args
        .cargo_tests
        .iter()
        .map(|p| fs::canonicalize(p).map_err(io_err(p.display())))
        .collect::<Result<_, _>>()?;
    let cargo_tests_g: Vec<PathBuf> = cargo_tests
        .iter()
        .enumerate()
        .map(|(i, p)| stage(p, format!("{i}-{}", file_name(p))))
        .collect::<Result<_, _>>()?;
    let (suite_args, pcap_dirs) = share_pcap_dirs(&args.args)?;
    let script = guest_script(
        &results,
        &selftests_g,
        &suite_args,
        exec_script.as_deref(),
        &cargo_tests_g,
        !kvm,
    );
    let script_path = results.join("guest.sh");
    fs::write(&script_path, script).map_err(io_err("guest script"))?;

    let mut cmd = Command::new(&tools.vng);
    if let Some(bin) = tools.vng.parent() {
        // vng runs virtme-run from PATH.
        let path = std::env::var_os("PATH").unwrap_or_default();
        let joined = std::env::join_paths(
            std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path)),
        )
        .unwrap_or(path);
        cmd.env("PATH", joined);
    }
    // One vCPU under TCG: see `VmArgs::cpus` (multi-threaded TCG and static-key patching).
    let cpus = args.cpus.unwrap_or(if kvm { 2 } else { 1 });
    cmd.arg("-r").arg(&kernel.image);
    cmd.args([
        "--user",
        "root",
        "--verbose",
        "--memory",
        &args.memory,
        "--cpus",
        &cpus.to_string(),
    ]);
    if !kvm {
        cmd.arg("--disable-kvm");
    }
    // The C virtiofsd shipped with Debian's qemu fails here and vng waits for it before
    // falling back to 9p; go to 9p directly (measured: saves several seconds of boot).
    cmd.arg("--force-9p");
    cmd.arg("--rwdir").arg(&results);
    for d in &pcap_dirs {
        cmd.arg("--rwdir").arg(d);
    }
    cmd.arg("--exec")
        .arg(format!("sh {}", script_path.display()));
    // vng needs stdin open: /dev/null, never closed.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    eprintln!(
        "# vm: booting {} ({}) with {}, {} CPUs, {} memory, timeout {}s",
        kernel.origin,
        kernel.release.as_deref().unwrap_or("release unknown"),
        if kvm { "KVM" } else { "TCG" },
        cpus,
        args.memory,
        args.timeout
    );
    let boot_start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("starting {}", tools.vng.display())))?;
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let mut readers = Vec::new();
    for (is_err, pipe) in [
        (
            false,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            true,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(pipe) = pipe else { continue };
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                if tx.send((is_err, line)).is_err() {
                    break;
                }
                buf.clear();
            }
        }));
    }
    drop(tx);
    let deadline = boot_start + Duration::from_secs(args.timeout);
    let mut console = String::new();
    let mut boot_time = None;
    let mut recent: VecDeque<String> = VecDeque::new();
    let stdout = io::stdout();
    let mut timed_out = false;
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((is_err, line)) => {
                console.push_str(&line);
                console.push('\n');
                if line.contains("# vm: guest up") && boot_time.is_none() {
                    boot_time = Some(boot_start.elapsed());
                }
                if is_kernel_line(&line) {
                    if CRASH_MARKERS.iter().any(|m| line.contains(m)) {
                        eprintln!("{line}");
                    }
                    recent.push_back(line);
                    if recent.len() > 40 {
                        recent.pop_front();
                    }
                } else if is_err {
                    eprintln!("{line}");
                } else {
                    let mut o = stdout.lock();
                    let _ = writeln!(o, "{line}");
                    let _ = o.flush();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break wait_deadline(&mut child, deadline);
            }
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break None;
        }
    };
    let vng_exit = match status {
        Some(s) => s.code(),
        None => {
            timed_out = true;
            eprintln!(
                "# vm: host timeout after {}s: killing the guest",
                args.timeout
            );
            kill_group(&child);
            let _ = child.wait();
            None
        }
    };
    for r in readers {
        if timed_out {
            break;
        }
        let _ = r.join();
    }
    let read = |n: &str| fs::read_to_string(results.join(n)).ok();
    let rc = |n: &str| read(n).and_then(|s| s.trim().parse::<i32>().ok());
    let run = GuestRun {
        vng_exit,
        timed_out,
        console: console.clone(),
        ktap: read("ktap.txt"),
        suite_rc: rc("suite.rc"),
        cargo: cargo_tests
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let name = b.file_name().map_or_else(
                    || b.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                (
                    name,
                    read(&format!("cargo-{i}.log")).unwrap_or_default(),
                    rc(&format!("cargo-{i}.rc")),
                )
            })
            .collect(),
        dmesg: read("dmesg.txt"),
        finished: results.join("finished").is_file(),
    };
    let _ = fs::write(results.join("console.log"), &console);
    let v = classify(&run);
    report(&v, &kernel, kvm, boot_time, started.elapsed(), &recent);
    if args.keep || v.exit == KSFT_FAIL {
        eprintln!("# vm: results kept in {}", results.display());
    } else {
        let _ = fs::remove_dir_all(&results);
    }
    Ok(v.exit)
}

fn report(
    v: &Verdict,
    kernel: &Kernel,
    kvm: bool,
    boot: Option<Duration>,
    total: Duration,
    recent: &VecDeque<String>,
) {
    let mut o = io::stdout().lock();
    let boot = boot.map_or_else(
        || "guest never came up".into(),
        |b| format!("guest up after {:.1}s", b.as_secs_f64()),
    );
    let _ = writeln!(
        o,
        "# vm: kernel {} ({}), {}, {boot}, total {:.1}s",
        kernel.release.as_deref().unwrap_or("?"),
        kernel.origin,
        if kvm { "KVM" } else { "TCG" },
        total.as_secs_f64()
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
        let _ = writeln!(o, "# vm: kernel crash lines:");
        for l in &v.crash {
            let _ = writeln!(o, "# {l}");
        }
    } else if v.exit == KSFT_FAIL && !recent.is_empty() {
        let _ = writeln!(o, "# vm: last kernel lines:");
        for l in recent.iter().rev().take(15).rev() {
            let _ = writeln!(o, "# {l}");
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

    fn ok_run() -> GuestRun {
        GuestRun {
            vng_exit: Some(0),
            console: "[    0.1] Linux version 7.2\n# vm: guest up\nTAP version 13\n".into(),
            ktap: Some(
                "TAP version 13\n1..2\nok 1 a/b/c # time=1ms\nok 2 a/b/d # SKIP x time=0ms\n\
                 # Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0\n"
                    .into(),
            ),
            suite_rc: Some(0),
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
    fn host_timeout_keeps_partial_results_and_fails() {
        let mut r = ok_run();
        r.ktap = Some("TAP version 13\n1..3\nok 1 a/b/c\n".into());
        r.suite_rc = None;
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
        r.ktap = Some("TAP version 13\n1..2\nnot ok 1 a/b/c # time=0ms\n".into());
        r.suite_rc = Some(134);
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
        r.ktap = None;
        r.console = "TAP version 13\n1..1\n[ 1.0] eth0 up\nok 1 a/b/c\n".into();
        assert_eq!(classify(&r).exit, 0);
        r.console = "TAP version 13\n1..2\nok 1 a/b/c\n".into();
        assert_eq!(classify(&r).exit, 1);
    }

    #[test]
    fn suite_claiming_success_against_failed_results_fails() {
        let mut r = ok_run();
        r.ktap = Some("TAP version 13\n1..1\nnot ok 1 a/b/c\n".into());
        r.suite_rc = Some(0);
        let v = classify(&r);
        assert_eq!(v.exit, 1);
        assert!(v.problems.iter().any(|p| p.contains("disagrees")));
    }

    #[test]
    fn all_skipped_is_4_and_script_rc_decides_without_ktap() {
        let mut r = ok_run();
        r.ktap = Some("TAP version 13\n1..1\nok 1 a/b/c # SKIP no\n".into());
        r.suite_rc = Some(4);
        assert_eq!(classify(&r).exit, 4);
        let mut r = ok_run();
        r.ktap = Some("hello\n".into());
        r.suite_rc = Some(0);
        assert_eq!(classify(&r).exit, 0);
        r.suite_rc = Some(2);
        assert_eq!(classify(&r).exit, 1);
    }

    #[test]
    fn libtest_binaries_count_and_fail() {
        let mut r = ok_run();
        r.cargo = vec![
            (
                "sockopt".into(),
                "running 2 tests\ntest x ... ok\ntest y ... ok\n".into(),
                Some(0),
            ),
            ("keys".into(), "test z ... FAILED\n".into(), Some(101)),
        ];
        let v = classify(&r);
        assert_eq!(v.cargo_totals.pass, 2);
        assert_eq!(v.cargo_totals.fail, 1);
        assert_eq!(v.totals.pass, 3);
        assert_eq!(v.exit, 1);
        r.cargo = vec![("sockopt".into(), "test x ... ok\n".into(), None)];
        assert!(
            classify(&r)
                .problems
                .iter()
                .any(|p| p.contains("did not finish"))
        );
        r.cargo = vec![("layout".into(), "".into(), Some(0))];
        let v = classify(&r);
        assert!(
            v.notes.iter().any(|p| p.contains("without printing")),
            "{v:?}"
        );
        assert_eq!(
            v.exit, 0,
            "a harness=false binary that prints nothing is a note"
        );
        r.cargo = vec![("sockopt".into(), "test x ... ok\n".into(), Some(139))];
        assert!(
            classify(&r)
                .problems
                .iter()
                .any(|p| p.contains("exited 139"))
        );
    }

    #[test]
    fn release_from_metapackage() {
        let t = "linux-image-amd64\n  Depends: linux-base-amd64\n  Depends: linux-image-7.2.13+deb14-amd64\n";
        assert_eq!(
            release_from_depends(t).as_deref(),
            Some("7.2.13+deb14-amd64")
        );
        assert_eq!(release_from_depends("linux-image-amd64\n"), None);
    }

    #[test]
    fn bzimage_header() {
        let mut d = vec![0u8; 0x1000];
        d[0x202..0x206].copy_from_slice(b"HdrS");
        d[0x20E..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        d[0x500..0x500 + 30].copy_from_slice(b"7.2.13+deb14-amd64 (debian@x) ");
        assert_eq!(bzimage_release(&d).as_deref(), Some("7.2.13+deb14-amd64"));
        d[0x202] = b'X';
        assert_eq!(bzimage_release(&d), None);
        assert_eq!(bzimage_release(&[0u8; 16]), None);
    }

    #[test]
    fn kernel_line_detection() {
        assert!(is_kernel_line("[    1.234567] Linux version"));
        assert!(is_kernel_line("\r[   12.5] Kernel panic"));
        assert!(!is_kernel_line("[ok] fine"));
        assert!(!is_kernel_line("ok 1 a/b/c"));
        assert!(!is_kernel_line("[]"));
    }

    #[test]
    fn guest_script_quotes_and_records() {
        let s = guest_script(
            Path::new("/c/run/1"),
            Path::new("/w/target/debug/tcpao-selftests"),
            &["it's".into(), "-j".into(), "2".into()],
            None,
            &[PathBuf::from("/w/target/debug/deps/sockopt-abc")],
            true,
        );
        assert!(s.contains("R='/c/run/1'"));
        assert!(
            s.contains("'/w/target/debug/tcpao-selftests' run 'it'\\''s' '-j' '2'"),
            "{s}"
        );
        assert!(s.contains("KSFT_MACHINE_SLOW=yes"));
        assert!(s.contains("cargo-0.rc"));
        assert!(s.contains("ip link set lo up"));
        assert!(
            s.len() < 2000,
            "the script itself is a file; keep it small anyway"
        );
    }
}

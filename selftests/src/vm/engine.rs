// SPDX-License-Identifier: MIT OR Apache-2.0
//! The engine: the host tools virtme-ng needs, the KVM probe, and one guest boot with its
//! console streamed and a host-side hard timeout.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::console::{CRASH_MARKERS, is_kernel_line};
use super::{Machine, VmError, cache_dir, io_err, need, which};

static INTERRUPTED: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

/// Whether SIGINT or SIGTERM arrived since [`catch_signals`] (guests are then killed, lab
/// edits restored).
pub fn interrupted() -> bool {
    INTERRUPTED
        .get()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
}

/// Turn SIGINT and SIGTERM into [`interrupted`] for long runs that must clean up.
pub fn catch_signals() {
    let flag =
        INTERRUPTED.get_or_init(|| std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, std::sync::Arc::clone(flag));
    }
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

pub(crate) fn wait_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
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

pub(crate) fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

/// What one boot gave back, seen from the host.
#[derive(Debug)]
pub struct Boot {
    /// vng's exit code (`None` when killed by the host timeout).
    pub vng_exit: Option<i32>,
    /// The host timeout fired.
    pub timed_out: bool,
    /// Console output (stdout and stderr of vng, kernel lines included).
    pub console: String,
    /// Time until the guest script said it was up.
    pub boot_time: Option<Duration>,
}

/// Boots `machine.kernel` with vng, runs `sh script` in the guest with `results` (and
/// `share`) writable, streams the console (when `machine.echo`) and enforces the hard timeout
/// by killing vng's process group.
///
/// # Errors
/// [`VmError::Io`] when vng cannot be started.
pub fn boot(
    tools: &Tools,
    machine: &Machine,
    kvm: bool,
    results: &Path,
    share: &[PathBuf],
    script: &Path,
) -> Result<Boot, VmError> {
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
    let cpus = machine.cpus.unwrap_or(if kvm { 2 } else { 1 });
    cmd.arg("-r").arg(&machine.kernel.image);
    cmd.args([
        "--user",
        "root",
        "--verbose",
        "--memory",
        &machine.memory,
        "--cpus",
        &cpus.to_string(),
    ]);
    if !kvm {
        cmd.arg("--disable-kvm");
    }
    if let Some(q) = &machine.qemu_opts {
        cmd.arg(format!("--qemu-opts={q}"));
    }
    // The C virtiofsd shipped with Debian's qemu fails here and vng waits for it before
    // falling back to 9p; go to 9p directly (measured: saves several seconds of boot).
    cmd.arg("--force-9p");
    cmd.arg("--rwdir").arg(results);
    for d in share {
        cmd.arg("--rwdir").arg(d);
    }
    if !machine.kernel.cmdline.is_empty() {
        cmd.arg("--append").arg(machine.kernel.cmdline.join(" "));
    }
    cmd.arg("--exec").arg(format!("sh {}", script.display()));
    // vng needs stdin open: /dev/null, never closed.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if machine.echo {
        eprintln!(
            "# vm: booting {} ({}) with {}, {} CPUs, {} memory, timeout {}s",
            machine.kernel.origin,
            machine
                .kernel
                .release
                .as_deref()
                .unwrap_or("release unknown"),
            if kvm { "KVM" } else { "TCG" },
            cpus,
            machine.memory,
            machine.timeout.as_secs()
        );
    }
    let boot_start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("starting {}", tools.vng.display())))?;
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let mut readers = Vec::new();
    let pipes: [(bool, Option<Box<dyn Read + Send>>); 2] = [
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
    ];
    for (is_err, pipe) in pipes {
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
    let deadline = boot_start + machine.timeout;
    let mut console = String::new();
    let mut boot_time = None;
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
                if machine.echo {
                    if is_kernel_line(&line) {
                        if CRASH_MARKERS.iter().any(|m| line.contains(m)) {
                            eprintln!("{line}");
                        }
                    } else if is_err {
                        eprintln!("{line}");
                    } else {
                        let mut o = stdout.lock();
                        let _ = writeln!(o, "{line}");
                        let _ = o.flush();
                    }
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
        if interrupted() {
            kill_group(&child);
        }
    };
    let vng_exit = match status {
        Some(s) => s.code(),
        None => {
            timed_out = true;
            if machine.echo {
                eprintln!(
                    "# vm: host timeout after {}s: killing the guest",
                    machine.timeout.as_secs()
                );
            }
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
    Ok(Boot {
        vng_exit,
        timed_out,
        console,
        boot_time,
    })
}

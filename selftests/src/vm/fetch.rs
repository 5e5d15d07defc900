// SPDX-License-Identifier: MIT OR Apache-2.0
//! Kernels to boot: Debian sid's default TCP-AO kernel (resolved, downloaded and unpacked
//! through a private apt configuration, cached) and a developer's own image with its modules
//! staged where vng finds them.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use super::{VmError, cache_dir, io_err, need};

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The image passed to `vng -r`.
    pub image: PathBuf,
    /// Its release (`uname -r`), when known.
    pub release: Option<String>,
    /// Where it came from, for the report.
    pub origin: String,
    /// Kernel command-line parameters it needs (`vng --append`).
    pub cmdline: Vec<String>,
    /// How much slower than a plain kernel it runs the suite (a lab flavour's
    /// [`crate::lab::flavour::Flavour::slowdown`]; 1 for Debian's and `--kernel`).
    pub slowdown: u32,
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

pub(crate) fn image_release(path: &Path) -> Option<String> {
    let mut f = fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = f.read(&mut buf).ok()?;
    bzimage_release(&buf[..n])
}

/// apt with a private sources list (Debian sid), lists and cache under `dir`: the host's apt
/// configuration is not touched.
#[derive(Debug)]
pub(crate) struct Apt {
    dir: PathBuf,
}

/// The private sid apt under `~/.cache/tcpao/apt`, its lists refreshed when older than 12 h.
/// `Err` carries the refresh failure; callers with something cached may go on without it.
pub(crate) fn sid_apt() -> Result<Apt, VmError> {
    need("apt-get", "apt")?;
    let apt = Apt::new(cache_dir().join("apt"))?;
    let fresh = apt
        .lists_age()
        .is_some_and(|a| a < Duration::from_secs(12 * 3600));
    if !fresh {
        apt.run("apt-get", &["-q", "update"], None)?;
    }
    Ok(apt)
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

    pub(crate) fn run(
        &self,
        prog: &str,
        args: &[&str],
        cwd: Option<&Path>,
    ) -> Result<String, VmError> {
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
    need("dpkg-deb", "dpkg")?;
    let apt = match sid_apt() {
        Ok(apt) => apt,
        Err(e) => {
            if let Some(k) = newest_cached(&root) {
                eprintln!(
                    "# vm: apt-get update failed ({e}); using cached kernel {}",
                    k.origin
                );
                return Ok(k);
            }
            return Err(e);
        }
    };
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
            cmdline: Vec::new(),
            slowdown: 1,
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
        cmdline: Vec::new(),
        slowdown: 1,
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
                    cmdline: Vec::new(),
                    slowdown: 1,
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
            cmdline: Vec::new(),
            slowdown: 1,
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
        cmdline: Vec::new(),
        slowdown: 1,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

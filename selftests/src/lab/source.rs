// SPDX-License-Identifier: MIT OR Apache-2.0
//! Kernel source trees: Debian's `linux-source-<series>` matching the default VM kernel
//! (fetched through the same private apt configuration as the kernel image, unpacked once
//! under `<lab>/source/debian-<version>/`), or a tree the user names.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::vm::fetch::sid_apt;
use crate::vm::{VmError, fetch_default_kernel, io_err, need};

/// Where a tree came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Debian's source package, unpacked by the lab (the lab owns it and may patch it).
    Debian {
        /// `linux-source-7.2`.
        package: String,
        /// `7.2.13-1`.
        version: String,
    },
    /// A tree the user named with `--source`.
    Dir,
}

/// A kernel source tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Names its build directories and images: `debian-7.2.13-1`, or `<dir name>-<hash>`.
    pub id: String,
    /// The top of the tree (holds `Makefile`, `net/ipv4/tcp_ao.c`).
    pub tree: PathBuf,
    /// Where it came from.
    pub origin: Origin,
}

/// The upstream version in a Debian kernel release: `7.2.13+deb14-amd64` → `7.2.13`.
pub fn upstream_version(release: &str) -> &str {
    release.split(['+', '-']).next().unwrap_or(release)
}

/// The source package series of an upstream version: `7.2.13` → `7.2`.
pub fn series(version: &str) -> Option<String> {
    let mut it = version.split('.');
    let (a, b) = (it.next()?, it.next()?);
    (a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("{a}.{b}"))
}

/// A short stable hash of a string (FNV-1a, 64 bits, hex): names caches, not a security
/// boundary.
pub fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Checks that `tree` is a kernel tree with TCP-AO code.
fn check_tree(tree: &Path) -> Result<(), VmError> {
    for f in ["Makefile", "Kconfig", "net/ipv4/tcp_ao.c"] {
        if !tree.join(f).is_file() {
            return Err(VmError::Source(format!(
                "{} is not a kernel tree with TCP-AO: no {f}",
                tree.display()
            )));
        }
    }
    Ok(())
}

/// A tree the user names. Builds go out of tree (`make O=`), so it must be clean: Kbuild
/// refuses an out-of-tree build of a tree that has an in-tree `.config`.
///
/// # Errors
/// [`VmError::Source`] when `dir` is not a clean kernel tree with TCP-AO.
pub fn from_dir(dir: &Path) -> Result<Source, VmError> {
    let tree =
        fs::canonicalize(dir).map_err(|e| VmError::Source(format!("{}: {e}", dir.display())))?;
    check_tree(&tree)?;
    if tree.join(".config").exists() || tree.join("include/config").exists() {
        return Err(VmError::Source(format!(
            "{} has an in-tree build (.config); the lab builds out of tree (make O=...): \
             run `make mrproper` there or give a clean copy",
            tree.display()
        )));
    }
    let name = tree
        .file_name()
        .map_or_else(|| "tree".into(), |n| n.to_string_lossy().into_owned());
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(Source {
        id: format!("{name}-{}", &short_hash(&tree.display().to_string())[..8]),
        tree,
        origin: Origin::Dir,
    })
}

/// Debian sid's source for the default VM kernel: `linux-source-<series>`, unpacked into
/// `<root>/debian-<version>/`. The version must match the default kernel's (`7.2.13-1` for
/// `7.2.13+deb14-amd64`); when sid has moved on for one and not yet the other, this says so.
///
/// # Errors
/// [`VmError::Fetch`] when apt or the unpacking fails, [`VmError::MissingTool`] for a missing
/// `dpkg-deb`, `tar` or `xz`.
pub fn debian(root: &Path) -> Result<Source, VmError> {
    let kernel = fetch_default_kernel()?;
    let release = kernel
        .release
        .ok_or_else(|| VmError::Fetch("the default kernel's release is unknown".into()))?;
    let upstream = upstream_version(&release).to_owned();
    let series = series(&upstream)
        .ok_or_else(|| VmError::Fetch(format!("cannot read a series from {release}")))?;
    let package = format!("linux-source-{series}");
    let apt = sid_apt()?;
    let policy = apt.run("apt-cache", &["policy", &package], None)?;
    let version = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| *v != "(none)")
        .ok_or_else(|| VmError::Fetch(format!("sid has no {package} (for {release})")))?
        .to_owned();
    if upstream_version(&version) != upstream {
        return Err(VmError::Fetch(format!(
            "sid's {package} is {version}, the default kernel is {release}: they differ \
             (sid is mid-update); give a tree with --source, or retry later"
        )));
    }
    let dir = root.join(format!("debian-{version}"));
    let tree = dir.join(&package);
    let src = Source {
        id: format!("debian-{version}"),
        tree: tree.clone(),
        origin: Origin::Debian {
            package: package.clone(),
            version: version.clone(),
        },
    };
    if dir.join("ready").is_file() {
        return Ok(src);
    }
    need("dpkg-deb", "dpkg")?;
    need("tar", "tar")?;
    need("xz", "xz-utils")?;
    eprintln!(
        "# lab: fetching {package} {version} (~160 MB) into {}",
        dir.display()
    );
    let _ = fs::remove_dir_all(&dir);
    let debs = dir.join("debs");
    fs::create_dir_all(&debs).map_err(io_err("lab source dir"))?;
    apt.run(
        "apt-get",
        &["-q", "download", &format!("{package}={version}")],
        Some(&debs),
    )?;
    let deb = fs::read_dir(&debs)
        .map_err(io_err("reading debs"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| VmError::Fetch(format!("apt-get download {package} gave no .deb")))?;
    let unpacked = dir.join("deb");
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        "dpkg-deb -x",
    )?;
    let tarball = unpacked.join(format!("usr/src/{package}.tar.xz"));
    eprintln!("# lab: unpacking {} (about a minute)", tarball.display());
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-xf")
            .arg(&tarball),
        "tar -xf",
    )?;
    let _ = fs::remove_dir_all(&debs);
    let _ = fs::remove_dir_all(&unpacked);
    check_tree(&tree)?;
    fs::write(dir.join("ready"), format!("{package} {version}\n"))
        .map_err(io_err("ready marker"))?;
    Ok(src)
}

fn run(cmd: &mut Command, what: &str) -> Result<(), VmError> {
    let o = cmd.output().map_err(io_err(what))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(VmError::Fetch(format!(
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(upstream_version("7.2.13+deb14-amd64"), "7.2.13");
        assert_eq!(upstream_version("7.2.13-1"), "7.2.13");
        assert_eq!(upstream_version("7.3.0-rc7"), "7.3.0");
        assert_eq!(series("7.2.13").as_deref(), Some("7.2"));
        assert_eq!(series("7").as_deref(), None);
        assert_eq!(series("x.y.z"), None);
    }

    #[test]
    fn hashes_are_stable_and_short() {
        assert_eq!(short_hash("a"), short_hash("a"));
        assert_ne!(short_hash("/src/a"), short_hash("/src/b"));
        assert_eq!(short_hash("").len(), 16);
    }

    #[test]
    fn user_trees_must_be_clean_kernel_trees() {
        let t = std::env::temp_dir().join(format!("tcpao-src-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        fs::create_dir_all(t.join("net/ipv4")).unwrap();
        let e = from_dir(&t).unwrap_err().to_string();
        assert!(e.contains("no Makefile"), "{e}");
        fs::write(t.join("Makefile"), "").unwrap();
        fs::write(t.join("Kconfig"), "").unwrap();
        fs::write(t.join("net/ipv4/tcp_ao.c"), "").unwrap();
        let s = from_dir(&t).unwrap();
        assert_eq!(s.origin, Origin::Dir);
        assert!(
            s.id.starts_with(&format!("tcpao-src-{}-", std::process::id())),
            "{}",
            s.id
        );
        fs::write(t.join(".config"), "").unwrap();
        let e = from_dir(&t).unwrap_err().to_string();
        assert!(e.contains("make mrproper"), "{e}");
        let _ = fs::remove_dir_all(&t);
    }
}

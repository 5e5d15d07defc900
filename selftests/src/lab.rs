// SPDX-License-Identifier: MIT OR Apache-2.0
//! The kernel lab: our own TCP-AO kernels, to measure what the suite can catch.
//!
//! * [`source`]: the tree (Debian's `linux-source-<series>` matching the default VM kernel, or
//!   `--source DIR`).
//! * [`flavour`]: `plain`, `coverage` (gcov on the TCP-AO code), `debug` (KASAN, lockdep,
//!   kmemleak, DEBUG_NET), `kcov` (for the fuzzer).
//! * [`kconfig`], [`build`]: configure and build out of tree, incrementally, one build at a
//!   time (a lock file), images cached by source + flavour + config hash under
//!   `~/.cache/tcpao/lab/images/`.
//! * [`upstream`]: the kernel's own `tools/testing/selftests/net/tcp_ao` programs, built from
//!   the same tree and run in the same guest, their KTAP folded into ours.
//! * [`coverage`]: gcov counters per program from the guest, reported with gcovr.
//! * [`mutate`]: mutants of the TCP-AO code, each built, booted and judged by either suite.
//!
//! Layout under `~/.cache/tcpao/lab/`: `source/<id>/` (trees), `build/<id>/<flavour>/` (make
//! O= directories), `images/<id>-<flavour>-<hash>.bzImage` (+ `.json`), `upstream/<id>/`
//! (the kernel's programs), `reports/` (coverage and mutation reports).

pub mod aocode;
pub mod build;
pub mod cli;
pub mod coverage;
pub mod edit;
pub mod flavour;
pub mod kconfig;
pub mod mutate;
pub mod source;
pub mod upstream;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use cli::interrupted;
pub use flavour::{FLAVOURS, Flavour};
pub use source::{Origin, Source};

use crate::vm::{Kernel, VmError, cache_dir, io_err};

/// Whether to run make when an image is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildPolicy {
    /// Use the cached image of a tree the lab owns (Debian's); always make a user's tree,
    /// which may have changed (make is incremental).
    IfMissing,
    /// Always run make.
    Always,
}

/// A built lab kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabImage {
    /// The bzImage to boot.
    pub image: PathBuf,
    /// Its build directory (gcov's `.gcno` files, the `.config`).
    pub build_dir: PathBuf,
    /// Flavour name.
    pub flavour: String,
    /// Source id.
    pub source_id: String,
    /// `uname -r`.
    pub release: String,
    /// The config hash.
    pub config_hash: String,
    /// Objects compiled by the build that made it (0: cached).
    pub objects: usize,
    /// Seconds that build took.
    pub build_secs: f64,
}

impl LabImage {
    /// As a kernel for [`crate::vm`].
    pub fn kernel(&self) -> Kernel {
        Kernel {
            image: self.image.clone(),
            release: Some(self.release.clone()),
            origin: format!(
                "lab {} build of {} (config {})",
                self.flavour,
                self.source_id,
                &self.config_hash[..8.min(self.config_hash.len())]
            ),
            cmdline: kasan_cmdline(&self.build_dir.join(".config")),
            slowdown: Flavour::named(&self.flavour).map_or(1, |f| f.slowdown),
        }
    }
}

/// Command-line parameters for a kernel built with `config`. With KASAN:
/// - `kasan_multi_shot`: by default KASAN prints its first report only, so one report during
///   boot silenced it for the whole run and a race case met a use-after-free without a word.
/// - `no5lvl`: that boot-time report (`wild-memory-access in do_raw_spin_lock` from an
///   interrupt during `identify_cpu()`, 6 of 17 two-vCPU boots here) is a false positive of
///   generic KASAN under 5-level paging, which QEMU's TCG CPU offers: `identify_cpu()` clears
///   the boot CPU's capabilities, `pgtable_l5_enabled()` reads false until CPUID is read
///   again, and an interrupt in between computes `KASAN_SHADOW_START` for 4 levels and sees
///   every direct-map address as wild (reported upstream: "kasan: Fix false-positive
///   wild-memory-access on x86 under 5-level paging", June 2026). With `kasan_multi_shot` the
///   reports repeat and the boot CPU can wedge (2 of 4 boots here). 4-level paging has no
///   such window, and nothing TCP-AO does depends on the paging depth.
pub fn kasan_cmdline(config: &Path) -> Vec<String> {
    let text = fs::read_to_string(config).unwrap_or_default();
    if kconfig::Config::parse(&text).get("CONFIG_KASAN") == "y" {
        vec!["kasan_multi_shot".into(), "no5lvl".into()]
    } else {
        Vec::new()
    }
}

/// The lab, on one source tree.
#[derive(Debug, Clone)]
pub struct Lab {
    /// `~/.cache/tcpao/lab`.
    pub root: PathBuf,
    /// The tree.
    pub source: Source,
}

/// An exclusive lock on the lab's build machinery: one kernel build at a time on the
/// machine (they take both cores), and no build while a mutant is applied to the tree.
#[derive(Debug)]
pub struct BuildLock {
    _lock: Flock<fs::File>,
}

impl Lab {
    /// The lab on Debian's tree (fetched if needed) or on `source`.
    ///
    /// # Errors
    /// [`VmError`] when the tree cannot be fetched or is unusable.
    pub fn open(source: Option<&Path>) -> Result<Lab, VmError> {
        let root = cache_dir().join("lab");
        let source = match source {
            Some(d) => source::from_dir(d)?,
            None => source::debian(&root.join("source"))?,
        };
        Ok(Lab { root, source })
    }

    /// Takes the build lock, waiting (with a notice) while another build holds it.
    ///
    /// # Errors
    /// [`VmError::Io`] when the lock file cannot be opened.
    pub fn lock(&self) -> Result<BuildLock, VmError> {
        fs::create_dir_all(&self.root).map_err(io_err("lab dir"))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("build.lock"))
            .map_err(io_err("lab build lock"))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(BuildLock { _lock: l }),
            Err((f, _)) => {
                eprintln!("# lab: another kernel build (or mutation run) holds the lab; waiting");
                Flock::lock(f, FlockArg::LockExclusive)
                    .map(|l| BuildLock { _lock: l })
                    .map_err(|(_, e)| io_err("lab build lock")(e.into()))
            }
        }
    }

    /// The build directory of `flavour`.
    pub fn build_dir(&self, flavour: &Flavour) -> PathBuf {
        self.root
            .join("build")
            .join(&self.source.id)
            .join(flavour.name)
    }

    fn image_path(&self, flavour: &Flavour, hash: &str) -> PathBuf {
        self.root.join("images").join(format!(
            "{}-{}-{hash}.bzImage",
            self.source.id, flavour.name
        ))
    }

    /// The image of `flavour`, built first when needed.
    ///
    /// # Errors
    /// [`VmError::Usage`] for an unknown flavour, else build errors.
    pub fn image(&self, flavour: &str, policy: BuildPolicy) -> Result<LabImage, VmError> {
        self.patched_image(flavour, &[], policy)
    }

    /// The image of `flavour` with `patches` applied to the tree (a reverted fix, a widened
    /// race window), built first when needed. The tree is patched only for the build (a
    /// journalled edit, see [`edit`]); the image is cached under the config hash plus a hash of
    /// the patches.
    ///
    /// # Errors
    /// [`VmError::Usage`] for an unknown flavour, [`VmError::Source`] for a patch that does not
    /// apply, else build errors.
    pub fn patched_image(
        &self,
        flavour: &str,
        patches: &[PathBuf],
        policy: BuildPolicy,
    ) -> Result<LabImage, VmError> {
        let f = Flavour::named(flavour).ok_or_else(|| {
            VmError::Usage(format!(
                "unknown flavour `{flavour}` (flavours: {})",
                flavour::names()
            ))
        })?;
        let hash = format!(
            "{}{}",
            build::config_hash(&self.source, &f),
            patch_set_id(patches)?
        );
        let cached = self.image_path(&f, &hash);
        let owned = matches!(self.source.origin, Origin::Debian { .. });
        if policy == BuildPolicy::IfMissing && owned {
            if let Some(img) = fs::read_to_string(cached.with_extension("json"))
                .ok()
                .and_then(|t| serde_json::from_str::<LabImage>(&t).ok())
                .filter(|i| i.image.is_file())
            {
                return Ok(LabImage {
                    objects: 0,
                    build_secs: 0.0,
                    ..img
                });
            }
        }
        let _lock = self.lock()?;
        edit::restore_if_interrupted(&self.source.tree)?;
        if patches.is_empty() {
            return self.build(&f, true);
        }
        let applied = edit::apply_patches(&self.source.tree, patches)?;
        eprintln!("# lab: [{f}] building with {}", applied.what());
        let built = self.build(&f, false);
        applied.restore()?;
        let mut img = built?;
        img.config_hash = hash;
        self.register(&mut img, &cached)?;
        Ok(img)
    }

    fn register(&self, img: &mut LabImage, cached: &Path) -> Result<(), VmError> {
        fs::create_dir_all(cached.parent().unwrap_or(&self.root)).map_err(io_err("images dir"))?;
        fs::copy(&img.image, cached).map_err(io_err("caching the image"))?;
        img.image = cached.to_path_buf();
        let json = serde_json::to_string_pretty(&img).unwrap_or_default();
        fs::write(cached.with_extension("json"), json).map_err(io_err("image metadata"))
    }

    /// Configures and builds `flavour` (the caller holds the lock). With `register`, the
    /// image is copied to the cache; mutation builds do not register theirs.
    ///
    /// # Errors
    /// Build errors ([`VmError::MissingTool`], [`VmError::Config`], [`VmError::Build`]).
    pub fn build(&self, f: &Flavour, register: bool) -> Result<LabImage, VmError> {
        build::preflight()?;
        let dir = self.build_dir(f);
        fs::create_dir_all(&dir).map_err(io_err("build dir"))?;
        let hash = build::config_hash(&self.source, f);
        if build::configure(&self.source, f, &dir)? {
            eprintln!("# lab: [{f}] new .config in {}", dir.display());
        }
        let stats_path = dir.join(".tcpao-full-build");
        let expect = fs::read_to_string(&stats_path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let jobs = std::thread::available_parallelism().map_or(2, usize::from);
        let stats = build::make(&build::MakeJob {
            source: &self.source,
            build_dir: &dir,
            flavour: f,
            targets: vec!["bzImage".into()],
            vars: Vec::new(),
            jobs,
            expect,
            progress: true,
        })?;
        if expect.is_none_or(|e| stats.objects > e) {
            let _ = fs::write(&stats_path, format!("{}\n", stats.objects));
        }
        let built = dir.join("arch/x86/boot/bzImage");
        let release = fs::read_to_string(dir.join("include/config/kernel.release"))
            .map(|s| s.trim().to_owned())
            .map_err(io_err("kernel.release"))?;
        eprintln!(
            "# lab: [{f}] {release}: {} objects in {:.0}s",
            stats.objects,
            stats.elapsed.as_secs_f64()
        );
        let mut img = LabImage {
            image: built.clone(),
            build_dir: dir,
            flavour: f.name.into(),
            source_id: self.source.id.clone(),
            release,
            config_hash: hash.clone(),
            objects: stats.objects,
            build_secs: stats.elapsed.as_secs_f64(),
        };
        if register {
            let cached = self.image_path(f, &hash);
            self.register(&mut img, &cached)?;
        }
        Ok(img)
    }

    /// The kernel's own tcp_ao programs built from this tree (see [`upstream`]).
    ///
    /// # Errors
    /// Build errors.
    pub fn upstream_programs(&self) -> Result<PathBuf, VmError> {
        upstream::build(self, &[])
    }

    /// The kernel's own tcp_ao programs built with `patches` applied to their directory
    /// (new or changed selftests; see [`upstream::build`]).
    ///
    /// # Errors
    /// Build errors; a patch that does not apply or touches files outside the directory.
    pub fn upstream_programs_patched(&self, patches: &[PathBuf]) -> Result<PathBuf, VmError> {
        upstream::build(self, patches)
    }

    /// Where reports go: `~/.cache/tcpao/lab/reports/`.
    pub fn reports_dir(&self) -> PathBuf {
        self.root.join("reports")
    }
}

/// `-p<8 hex digits>` naming a set of patches by what they apply (their prose left out, see
/// [`edit::patch_body`]); empty for none. Builds are cached under it.
///
/// # Errors
/// A patch file that cannot be read.
pub fn patch_set_id(patches: &[PathBuf]) -> Result<String, VmError> {
    if patches.is_empty() {
        return Ok(String::new());
    }
    let mut all = String::new();
    for p in patches {
        all.push_str(edit::patch_body(
            &fs::read_to_string(p).map_err(io_err(p.display()))?,
        ));
    }
    Ok(format!("-p{}", &source::short_hash(&all)[..8]))
}

/// Formats seconds as `1m23s`.
pub fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kasan_kernel_boots_with_every_report_printed_and_four_level_paging() {
        let dir = std::env::temp_dir().join(format!("tcpao-kasan-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join(".config");
        fs::write(
            &cfg,
            "CONFIG_TCP_AO=y\nCONFIG_KASAN=y\nCONFIG_KASAN_GENERIC=y\n",
        )
        .unwrap();
        assert_eq!(kasan_cmdline(&cfg), ["kasan_multi_shot", "no5lvl"]);
        fs::write(&cfg, "CONFIG_TCP_AO=y\n# CONFIG_KASAN is not set\n").unwrap();
        assert!(kasan_cmdline(&cfg).is_empty());
        assert!(kasan_cmdline(&dir.join("missing")).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lab_kernel_carries_its_flavours_slowdown() {
        let image = |flavour: &str| LabImage {
            image: PathBuf::from("/i"),
            build_dir: PathBuf::from("/nonexistent"),
            flavour: flavour.to_owned(),
            source_id: "s".into(),
            release: "r".into(),
            config_hash: "0123456789".into(),
            objects: 0,
            build_secs: 0.0,
        };
        for f in FLAVOURS {
            assert_eq!(image(f.name).kernel().slowdown, f.slowdown, "{}", f.name);
        }
        assert_eq!(image("debug").kernel().slowdown, 4);
        assert_eq!(image("gone").kernel().slowdown, 1);
    }
}

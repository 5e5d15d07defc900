// SPDX-License-Identifier: MIT OR Apache-2.0
//! Journalled edits of the lab's kernel tree: a mutant, or a patch file (a reverted upstream
//! fix, a race window widened). Before anything is written, the journal
//! (`<tree>/.tcpao-edit.json`) and a copy of every file the edit touches are saved; the
//! returned [`Applied`] guard restores them when dropped (an error, a panic, the end of the
//! run), and [`restore_if_interrupted`] restores them at the next lab command after a kill.
//! Restored files get a new modification time, so the next build recompiles them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::vm::{VmError, io_err, need};

/// The journal's file name in the tree.
pub const JOURNAL: &str = ".tcpao-edit.json";

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    what: String,
    /// (tree path, backup path; empty when the file did not exist).
    files: Vec<(String, String)>,
}

/// An edit applied to a tree; dropping it restores the files.
#[derive(Debug)]
pub struct Applied {
    tree: PathBuf,
    what: String,
    files: Vec<(String, Option<PathBuf>)>,
    restored: bool,
}

/// Saves `files` (tree paths), writes the journal, then runs `edit` on the tree. When `edit`
/// fails the files are restored at once.
///
/// # Errors
/// [`VmError::Source`] when another edit is applied, [`VmError::Io`], or `edit`'s error.
pub fn apply(
    tree: &Path,
    what: &str,
    files: &[String],
    edit: impl FnOnce(&Path) -> Result<(), VmError>,
) -> Result<Applied, VmError> {
    if let Ok(j) = fs::read_to_string(tree.join(JOURNAL)) {
        return Err(VmError::Source(format!(
            "{} holds an applied edit ({j}); run any lab command to restore it",
            tree.display()
        )));
    }
    let dir = tree.join(".tcpao-edit.orig");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(io_err("edit backup dir"))?;
    let mut saved = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let src = tree.join(f);
        if src.is_file() {
            let b = dir.join(i.to_string());
            fs::copy(&src, &b).map_err(io_err(format!("saving {f}")))?;
            saved.push((f.clone(), Some(b)));
        } else {
            saved.push((f.clone(), None));
        }
    }
    let j = Journal {
        what: what.to_owned(),
        files: saved
            .iter()
            .map(|(f, b)| {
                (
                    f.clone(),
                    b.as_ref()
                        .map_or(String::new(), |b| b.display().to_string()),
                )
            })
            .collect(),
    };
    fs::write(
        tree.join(JOURNAL),
        serde_json::to_string(&j).unwrap_or_default(),
    )
    .map_err(io_err("edit journal"))?;
    let applied = Applied {
        tree: tree.to_path_buf(),
        what: what.to_owned(),
        files: saved,
        restored: false,
    };
    edit(tree)?; // on error `applied` drops here and restores
    Ok(applied)
}

/// The files a unified diff touches (from its `+++ b/<path>` lines), `-p1` style.
pub fn patch_files(patch: &str) -> Vec<String> {
    let mut v: Vec<String> = patch
        .lines()
        .filter_map(|l| l.strip_prefix("+++ "))
        .map(|p| p.split('\t').next().unwrap_or(p).trim())
        .filter(|p| *p != "/dev/null")
        .map(|p| p.split_once('/').map_or(p, |(_, rest)| rest).to_owned())
        .collect();
    v.dedup();
    v
}

/// What `patch` applies of a patch file: from its first `diff ` or `--- ` line on. The
/// prose above it (why the patch exists, what it was measured to do) is left out, so that
/// editing that prose does not change the patch's identity.
pub fn patch_body(patch: &str) -> &str {
    let mut at = 0;
    for line in patch.split_inclusive('\n') {
        if line.starts_with("diff ") || line.starts_with("--- ") {
            return &patch[at..];
        }
        at += line.len();
    }
    ""
}

/// Applies unified diffs (`patch -p1`, in order) to `tree` as one journalled edit.
///
/// # Errors
/// [`VmError::Source`] when a patch does not apply (the tree is restored), or names no file.
pub fn apply_patches(tree: &Path, patches: &[PathBuf]) -> Result<Applied, VmError> {
    let mut files: Vec<String> = Vec::new();
    let mut names = Vec::new();
    for p in patches {
        let text = fs::read_to_string(p).map_err(io_err(p.display()))?;
        let f = patch_files(&text);
        if f.is_empty() {
            return Err(VmError::Source(format!(
                "{}: no `+++ b/<file>` line",
                p.display()
            )));
        }
        for x in f {
            if !files.contains(&x) {
                files.push(x);
            }
        }
        names.push(p.display().to_string());
    }
    let patch = need("patch", "patch")?;
    apply(tree, &format!("patch {}", names.join(" ")), &files, |t| {
        for (p, name) in patches.iter().zip(&names) {
            let o = Command::new(&patch)
                .current_dir(t)
                .args([
                    "-p1",
                    "--forward",
                    "--batch",
                    "--no-backup-if-mismatch",
                    "-r",
                    "-",
                    "-i",
                ])
                .arg(fs::canonicalize(p).map_err(io_err(name))?)
                .stdin(Stdio::null())
                .output()
                .map_err(io_err("running patch"))?;
            if !o.status.success() {
                return Err(VmError::Source(format!(
                    "{name} does not apply to {}: {}",
                    t.display(),
                    String::from_utf8_lossy(&o.stdout).trim()
                )));
            }
        }
        Ok(())
    })
}

impl Applied {
    /// What was applied.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Restores the files and removes the journal.
    ///
    /// # Errors
    /// [`VmError::Io`].
    pub fn restore(mut self) -> Result<(), VmError> {
        self.restore_now()
    }

    fn restore_now(&mut self) -> Result<(), VmError> {
        if self.restored {
            return Ok(());
        }
        restore_files(&self.tree, &self.files)?;
        self.restored = true;
        Ok(())
    }
}

fn restore_files(tree: &Path, files: &[(String, Option<PathBuf>)]) -> Result<(), VmError> {
    for (f, b) in files {
        let dst = tree.join(f);
        match b {
            Some(b) => {
                fs::copy(b, &dst).map_err(io_err(format!("restoring {f}")))?;
            }
            None => {
                let _ = fs::remove_file(&dst);
            }
        }
    }
    let _ = fs::remove_dir_all(tree.join(".tcpao-edit.orig"));
    let _ = fs::remove_file(tree.join(JOURNAL));
    Ok(())
}

impl Drop for Applied {
    fn drop(&mut self) {
        if let Err(e) = self.restore_now() {
            eprintln!("# lab: could not restore the tree after {}: {e}", self.what);
        }
    }
}

/// Restores what a killed run left applied (from the journal). Returns whether there was
/// something. Call it only holding the lab's build lock ([`crate::lab::Lab::lock`]): edits
/// are applied under it, so a journal seen without it may be another run's live edit.
///
/// # Errors
/// [`VmError::Source`] for an unreadable journal, [`VmError::Io`].
pub fn restore_if_interrupted(tree: &Path) -> Result<bool, VmError> {
    let Ok(text) = fs::read_to_string(tree.join(JOURNAL)) else {
        return Ok(false);
    };
    let j: Journal = serde_json::from_str(&text)
        .map_err(|e| VmError::Source(format!("{}: {e}", tree.join(JOURNAL).display())))?;
    let files: Vec<(String, Option<PathBuf>)> = j
        .files
        .into_iter()
        .map(|(f, b)| (f, (!b.is_empty()).then(|| PathBuf::from(b))))
        .collect();
    restore_files(tree, &files)?;
    eprintln!(
        "# lab: restored the tree ({} was left applied by an interrupted run)",
        j.what
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_file_names() {
        let p = "diff --git a/net/ipv4/tcp_ao.c b/net/ipv4/tcp_ao.c\n--- a/net/ipv4/tcp_ao.c\n+++ b/net/ipv4/tcp_ao.c\t2026-01-01\n@@ -1 +1 @@\n-a\n+b\n--- a/net/ipv6/tcp_ipv6.c\n+++ b/net/ipv6/tcp_ipv6.c\n";
        assert_eq!(patch_files(p), ["net/ipv4/tcp_ao.c", "net/ipv6/tcp_ipv6.c"]);
        assert!(patch_files("hello").is_empty());
    }

    #[test]
    fn patch_body_leaves_out_the_prose_above_the_diff() {
        let diff = "--- a/net/ipv4/tcp_ao.c\n+++ b/net/ipv4/tcp_ao.c\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(patch_body(&format!("Reverts x.\n\nWhy.\n{diff}")), diff);
        assert_eq!(patch_body(&format!("Other words.\n{diff}")), diff);
        let git = format!("diff --git a/f b/f\n{diff}");
        assert_eq!(patch_body(&format!("Prose\n{git}")), git);
        assert_eq!(patch_body(diff), diff);
        assert_eq!(patch_body("no diff here\n"), "");
        // A changed hunk is a different body.
        assert_ne!(patch_body(diff), patch_body(&diff.replace("+b", "+c")));
    }

    #[test]
    fn patches_apply_restore_and_refuse_to_stack() {
        let t = std::env::temp_dir().join(format!("tcpao-edit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        fs::create_dir_all(t.join("net/ipv4")).unwrap();
        fs::write(t.join("net/ipv4/tcp_ao.c"), "one\ntwo\nthree\n").unwrap();
        let good = t.join("good.patch");
        fs::write(&good, "--- a/net/ipv4/tcp_ao.c\n+++ b/net/ipv4/tcp_ao.c\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n").unwrap();
        let bad = t.join("bad.patch");
        fs::write(&bad, "--- a/net/ipv4/tcp_ao.c\n+++ b/net/ipv4/tcp_ao.c\n@@ -1,3 +1,3 @@\n one\n-zwei\n+TWO\n three\n").unwrap();
        {
            let a = apply_patches(&t, std::slice::from_ref(&good)).unwrap();
            assert_eq!(
                fs::read_to_string(t.join("net/ipv4/tcp_ao.c")).unwrap(),
                "one\nTWO\nthree\n"
            );
            let e = apply_patches(&t, std::slice::from_ref(&good))
                .unwrap_err()
                .to_string();
            assert!(e.contains("holds an applied edit"), "{e}");
            assert!(a.what().starts_with("patch "));
        }
        assert_eq!(
            fs::read_to_string(t.join("net/ipv4/tcp_ao.c")).unwrap(),
            "one\ntwo\nthree\n"
        );
        let e = apply_patches(&t, std::slice::from_ref(&bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not apply"), "{e}");
        assert_eq!(
            fs::read_to_string(t.join("net/ipv4/tcp_ao.c")).unwrap(),
            "one\ntwo\nthree\n"
        );
        assert!(!t.join(JOURNAL).exists());
        let _ = fs::remove_dir_all(&t);
    }
}

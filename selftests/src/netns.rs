// SPDX-License-Identifier: MIT OR Apache-2.0
//! Network namespaces owned by threads.
//!
//! A network namespace belongs to a thread (`setns(2)`/`unshare(2)` act on the calling task), so
//! every peer of a selftest runs in its own thread that calls [`enter_new_netns`] first. The
//! namespace lives exactly as long as something references it: the thread itself, an open
//! `/proc/thread-self/ns/net` file, or a socket created inside it. We never bind-mount a
//! namespace, so when the peer thread ends and its sockets and [`NetnsFd`]s are closed the kernel
//! tears the namespace down together with every interface in it (the veth pair dies with the
//! first of its two namespaces).
//!
//! Everything that reads `/proc/thread-self/net/*` or `/proc/sys/net/*` sees the namespace of the
//! calling thread, which is what the counter snapshots rely on.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sched::{CloneFlags, unshare};

/// Procfs path of the calling thread's network namespace.
pub const THREAD_NETNS_PATH: &str = "/proc/thread-self/ns/net";

/// Move the calling thread into a fresh, empty network namespace (`unshare(CLONE_NEWNET)`).
///
/// The new namespace has only a `lo` interface, which is down; [`crate::topology`] brings it up.
///
/// # Errors
/// `EPERM` without `CAP_SYS_ADMIN`, `EINVAL`/`ENOSYS` on kernels without `CONFIG_NET_NS`.
pub fn enter_new_netns() -> io::Result<()> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// An open reference to a network namespace (`/proc/thread-self/ns/net` of the thread that made
/// it). While it is open the namespace stays alive; drop it as soon as it is not needed.
#[derive(Debug)]
pub struct NetnsFd {
    file: File,
    inode: u64,
}

impl NetnsFd {
    /// Open the calling thread's network namespace.
    ///
    /// # Errors
    /// When procfs is not mounted or the file cannot be opened.
    pub fn current() -> io::Result<Self> {
        let file = File::open(THREAD_NETNS_PATH)?;
        let inode = file.metadata()?.ino();
        Ok(Self { file, inode })
    }

    /// The namespace's inode number (the `N` in `net:[N]`), which identifies it while it lives.
    pub fn inode(&self) -> u64 {
        self.inode
    }
}

impl AsFd for NetnsFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for NetnsFd {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Inode number of the calling thread's network namespace.
///
/// # Errors
/// When procfs is not mounted.
pub fn current_netns_inode() -> io::Result<u64> {
    Ok(std::fs::metadata(THREAD_NETNS_PATH)?.ino())
}

/// Read a sysctl of the calling thread's network namespace, e.g. `net/core/optmem_max`.
///
/// # Errors
/// When the sysctl does not exist or is not readable.
pub fn sysctl_read(name: &str) -> io::Result<String> {
    let mut s = String::new();
    File::open(Path::new("/proc/sys").join(name))?.read_to_string(&mut s)?;
    Ok(s.trim_end().to_owned())
}

/// Write a sysctl of the calling thread's network namespace (only `net/*` sysctls are
/// per-namespace; others are global and must not be written by a test).
///
/// # Errors
/// When the sysctl does not exist, is read-only, or the value is rejected.
pub fn sysctl_write(name: &str, value: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new("/proc/sys").join(name))?;
    f.write_all(value.as_bytes())
}

/// What this process holds on network namespaces, for leak checks: the set of namespace inodes
/// referenced by any of our threads, any open fd, or any nsfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetnsHolds {
    /// Namespaces referenced by our threads (`/proc/self/task/*/ns/net`).
    pub threads: Vec<u64>,
    /// Namespaces referenced by open file descriptors (`net:[N]` links in `/proc/self/fd`).
    pub fds: Vec<u64>,
    /// nsfs bind mounts visible to us (`/proc/self/mountinfo`); we never create any.
    pub mounts: Vec<String>,
    /// Number of open sockets (`socket:[N]` links in `/proc/self/fd`).
    pub sockets: usize,
}

impl NetnsHolds {
    /// Scan procfs now.
    ///
    /// # Errors
    /// When procfs is not readable.
    pub fn scan() -> io::Result<Self> {
        let mut holds = Self::default();
        for task in std::fs::read_dir("/proc/self/task")? {
            let Ok(task) = task else { continue };
            // A task may exit between readdir and stat: that is not an error.
            if let Ok(m) = std::fs::metadata(task.path().join("ns/net")) {
                holds.threads.push(m.ino());
            }
        }
        for fd in std::fs::read_dir("/proc/self/fd")? {
            let Ok(fd) = fd else { continue };
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(n) = target
                .strip_prefix("net:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                if let Ok(n) = n.parse() {
                    holds.fds.push(n);
                }
            } else if target.starts_with("socket:[") {
                holds.sockets += 1;
            }
        }
        let mut mountinfo = String::new();
        File::open("/proc/self/mountinfo")?.read_to_string(&mut mountinfo)?;
        holds.mounts = mountinfo
            .lines()
            .filter(|l| l.contains(" - nsfs ") && l.contains("net:["))
            .map(str::to_owned)
            .collect();
        holds.threads.sort_unstable();
        holds.threads.dedup();
        holds.fds.sort_unstable();
        Ok(holds)
    }

    /// Whether namespace `inode` is still referenced by anything in this process.
    pub fn holds(&self, inode: u64) -> bool {
        self.threads.contains(&inode)
            || self.fds.contains(&inode)
            || self
                .mounts
                .iter()
                .any(|m| m.contains(&format!("net:[{inode}]")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn new_netns_is_private_to_the_thread() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let outer = current_netns_inode().unwrap();
        let inner = std::thread::spawn(move || {
            enter_new_netns().unwrap();
            let inner = current_netns_inode().unwrap();
            let fd = NetnsFd::current().unwrap();
            assert_eq!(fd.inode(), inner);
            let holds = NetnsHolds::scan().unwrap();
            assert!(
                holds.holds(inner),
                "the thread and the fd hold the namespace"
            );
            inner
        })
        .join()
        .unwrap();
        assert_ne!(outer, inner, "unshare gave a new namespace");
        assert_eq!(
            current_netns_inode().unwrap(),
            outer,
            "the main thread did not move"
        );
        let holds = NetnsHolds::scan().unwrap();
        assert!(
            !holds.holds(inner),
            "namespace {inner} still held after its thread ended: {holds:?}"
        );
    }
}

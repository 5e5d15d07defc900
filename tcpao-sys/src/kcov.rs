// SPDX-License-Identifier: MIT OR Apache-2.0
//! KCOV, the kernel's per-task code coverage (`/sys/kernel/debug/kcov`), for coverage-guided
//! fuzzing of the TCP-AO uAPI (`tcpao-selftests fuzz`). Test support, not part of the
//! daemon-facing API.
//!
//! A [`Kcov`] traces the kernel code that runs **in the context of the thread that enabled
//! it**: system calls, and work the kernel does synchronously inside them (a packet written to
//! a TUN device is received in the writer's context, with bottom halves disabled). Softirq
//! processing (a segment arriving over veth or loopback) is not traced: Linux 7.2's TCP
//! receive path has no `kcov_remote_start()` annotation. Only code built with
//! `KCOV_INSTRUMENT` reports anything.
//!
//! ```no_run
//! let kcov = tcpao_sys::kcov::Kcov::open(1 << 16)?;
//! kcov.enable()?;
//! kcov.reset();
//! // ... system calls ...
//! let pcs = kcov.collect();
//! kcov.disable()?;
//! println!("{} PCs", pcs.len());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::sys;

/// The debugfs file.
pub const KCOV_PATH: &str = "/sys/kernel/debug/kcov";

/// An open KCOV descriptor with its trace buffer mapped (PC mode).
pub struct Kcov {
    map: sys::KcovMap,
}

impl std::fmt::Debug for Kcov {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kcov")
            .field("words", &self.map.words().len())
            .finish()
    }
}

impl Kcov {
    /// Opens [`KCOV_PATH`] with room for `words - 1` program counters.
    ///
    /// # Errors
    /// `ENOENT` when the kernel has no `CONFIG_KCOV` (or debugfs is not mounted), the errors of
    /// the `KCOV_INIT_TRACE` ioctl and of `mmap`.
    pub fn open(words: usize) -> io::Result<Kcov> {
        Kcov::open_at(Path::new(KCOV_PATH), words)
    }

    /// As [`Kcov::open`] with another path (tests).
    ///
    /// # Errors
    /// As [`Kcov::open`].
    pub fn open_at(path: &Path, words: usize) -> io::Result<Kcov> {
        Ok(Kcov {
            map: sys::KcovMap::open(path, words)?,
        })
    }

    /// Starts tracing the calling thread (PC mode).
    ///
    /// # Errors
    /// `EBUSY` when this descriptor or this thread already traces.
    pub fn enable(&self) -> io::Result<()> {
        self.map.enable(0)
    }

    /// Stops tracing (call from the thread that enabled it).
    ///
    /// # Errors
    /// `EINVAL` from another thread.
    pub fn disable(&self) -> io::Result<()> {
        self.map.disable()
    }

    /// Forgets what was recorded so far.
    pub fn reset(&self) {
        self.map.words()[0].store(0, Ordering::Relaxed);
    }

    /// The program counters recorded since the last [`Kcov::reset`], in order (at most the
    /// buffer's capacity; the kernel stops recording when it is full).
    pub fn collect(&self) -> Vec<u64> {
        let w = self.map.words();
        let n = (w[0].load(Ordering::Relaxed) as usize).min(w.len() - 1);
        w[1..=n].iter().map(|x| x.load(Ordering::Relaxed)).collect()
    }

    /// Whether the buffer filled up (records were lost).
    pub fn overflowed(&self) -> bool {
        let w = self.map.words();
        w[0].load(Ordering::Relaxed) as usize >= w.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_kcov_is_an_error_not_a_panic() {
        let e = Kcov::open_at(Path::new("/nonexistent/kcov"), 64).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let e = Kcov::open_at(Path::new("/nonexistent/kcov"), 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_regular_file_refuses_the_ioctl() {
        let p = std::env::temp_dir().join(format!("tcpao-kcov-{}", std::process::id()));
        std::fs::write(&p, b"x").unwrap();
        let e = Kcov::open_at(&p, 64).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        let _ = std::fs::remove_file(&p);
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The kernel log written while a race case ran: `/dev/kmsg` opened at its end before the case,
//! drained after it. Lines with a crash marker (the ones the `vm` runner treats as a failure:
//! `BUG:`, `WARNING:`, `KASAN:`, lockdep, RCU, refcount, hung tasks, kmemleak) fail the case, and
//! the report goes into its own diagnostics, not only into the console.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use crate::vm::{CRASH_MARKERS, PROGRESS_TAG};

/// Lines of context kept after each marker line.
const CONTEXT: usize = 24;
/// At most this many report lines go into the diagnostics.
const MAX_LINES: usize = 120;

/// A reader positioned at the end of the kernel log.
#[derive(Debug)]
pub struct Kmsg {
    file: File,
}

impl Kmsg {
    /// Open `/dev/kmsg` (root only) and skip every record written so far.
    ///
    /// # Errors
    /// When it cannot be opened or positioned.
    pub fn open() -> io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open("/dev/kmsg")?;
        file.seek(SeekFrom::End(0))?;
        Ok(Self { file })
    }

    /// Every message logged since [`Kmsg::open`] (or the last call), one string per record.
    pub fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(m) = message(&buf[..n]) {
                        out.push(m);
                    }
                }
                // Records overwritten before we read them: the next read continues.
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => {
                    out.push("(kernel log records were lost before they could be read)".into());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    }
}

/// Progress lines written into the kernel log, so that a run which an oops or a panic cuts
/// short (the KTAP of the case is then lost) still says on the console, next to the report,
/// how far it got. Written at level 4, which the guest's console prints (`printk` is set to
/// 5 there), and at most once per `every` (the kernel rate-limits `/dev/kmsg` writers to 10
/// lines per 5 s).
#[derive(Debug)]
pub struct Progress {
    file: File,
    every: Duration,
    last: Option<Instant>,
}

impl Progress {
    /// Writes to `/dev/kmsg` (root only).
    ///
    /// # Errors
    /// When it cannot be opened for writing.
    pub fn open(every: Duration) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new().write(true).open("/dev/kmsg")?;
        Ok(Self::to(file, every))
    }

    /// Writes to `file` instead (for tests).
    pub fn to(file: File, every: Duration) -> Self {
        Self {
            file,
            every,
            last: None,
        }
    }

    /// Writes `line()` as one record if `every` has passed since the last one written (the
    /// first call always writes). Returns whether it wrote. A failed write is left out: the
    /// line is a hint for a crashed run, the case's verdict does not depend on it.
    pub fn note(&mut self, now: Instant, line: impl FnOnce() -> String) -> bool {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return false;
        }
        self.last = Some(now);
        let record = format!("<4>{PROGRESS_TAG}{}\n", line().replace('\n', " "));
        self.file.write_all(record.as_bytes()).is_ok()
    }
}

/// The text of one `/dev/kmsg` record (`prio,seq,usec,flags;text\n` plus continuation lines).
pub fn message(record: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(record);
    let (_, rest) = text.split_once(';')?;
    let first = rest.lines().next().unwrap_or_default();
    Some(first.to_owned())
}

/// The report lines among `messages`: each line with a crash marker and the lines after it.
pub fn reports(messages: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut until = 0;
    for (i, m) in messages.iter().enumerate() {
        if CRASH_MARKERS.iter().any(|k| m.contains(k)) {
            until = until.max(i + 1 + CONTEXT);
        }
        if i < until {
            out.push(m.clone());
        }
    }
    out.truncate(MAX_LINES);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_to_their_text() {
        assert_eq!(
            message(
                b"4,1234,5678,-;WARNING: CPU: 1 PID: 2 at net/ipv4/tcp_ao.c:10\n SUBSYSTEM=net\n"
            )
            .as_deref(),
            Some("WARNING: CPU: 1 PID: 2 at net/ipv4/tcp_ao.c:10")
        );
        assert_eq!(message(b"garbage"), None);
    }

    #[test]
    fn progress_lines_are_one_record_each_at_most_once_per_period() {
        let path = std::env::temp_dir().join(format!("tcpao-progress-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        let mut p = Progress::to(file, Duration::from_secs(5));
        let t0 = Instant::now();
        // One row per call: seconds after t0, whether it writes.
        let rows = [
            (0, true),
            (1, false),
            (4, false),
            (5, true),
            (9, false),
            (11, true),
        ];
        for (i, (s, writes)) in rows.into_iter().enumerate() {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(
                p.note(now, || format!("x: {i} iterations\nmore")),
                writes,
                "{s} s"
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            text,
            "<4>tcpao-selftests: x: 0 iterations more\n\
             <4>tcpao-selftests: x: 3 iterations more\n\
             <4>tcpao-selftests: x: 5 iterations more\n"
        );
        // What it writes is not a report.
        let line = text.lines().next().unwrap().to_owned();
        assert!(reports(&[line]).is_empty());
    }

    #[test]
    fn reports_keep_markers_and_their_context() {
        let mut msgs: Vec<String> = vec!["veth0: link up".into()];
        msgs.push("BUG: KASAN: slab-use-after-free in tcp_ao_established_key+0x1c/0x90".into());
        msgs.extend((0..40).map(|i| format!("frame {i}")));
        let r = reports(&msgs);
        assert_eq!(r.len(), 1 + CONTEXT);
        assert!(r[0].starts_with("BUG: KASAN"));
        assert!(reports(&["TCP: request_sock_TCP: Possible SYN flooding".into()]).is_empty());
    }
}

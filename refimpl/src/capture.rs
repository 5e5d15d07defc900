// SPDX-License-Identifier: MIT OR Apache-2.0
//! Streaming capture reader: pcap and pcapng files in, IP packets out.
//!
//! [`CaptureReader`] reads a capture of any size through one bounded buffer (it grows only
//! up to [`MAX_RECORD_LEN`] for unusually large records) and hands each frame to a callback
//! as a [`Frame`]: its 1-based frame number (as Wireshark numbers it), the byte offset of its
//! record in the file, its timestamp and the bytes of the IP packet it carries, borrowed from
//! the reader's buffer. Nothing is allocated per frame.
//!
//! Supported:
//! * classic pcap in both byte orders, with microsecond or nanosecond timestamps (and the
//!   old "modified" Kuznetsov format);
//! * pcapng with any number of sections (each with its own byte order) and interfaces (each
//!   with its own link type, `if_tsresol` and `if_tsoffset`), Enhanced and Simple Packet
//!   Blocks;
//! * the link types listed in [`LinkType`].
//!
//! Frames that do not carry IP are skipped and counted by reason in [`SkipCounts`]. A capture
//! that is cut short or corrupt stops the reader with a [`CaptureError`] naming the frame
//! number and the byte offset; every frame before it has already been delivered.

mod link;
#[cfg(all(feature = "live", target_os = "linux"))]
pub mod live;
pub mod writer;

pub use link::LinkType;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Block, PcapBlockOwned, PcapError};

/// Initial size of the read buffer.
pub const BUFFER_LEN: usize = 1 << 20;

/// Largest capture record accepted (the buffer grows up to this size for one record).
///
/// Real frames are at most 262,144 bytes (the largest snaplen tools use); anything larger is
/// treated as corruption.
pub const MAX_RECORD_LEN: usize = 16 << 20;

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic libpcap format.
    Pcap,
    /// pcapng.
    Pcapng,
}

/// A capture timestamp (seconds and nanoseconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Whole seconds.
    pub secs: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Timestamp {
    /// Build a timestamp from a count of `units` per second, plus an offset in seconds.
    fn from_units(value: u64, units_per_sec: u64, offset_secs: i64) -> Self {
        let units = units_per_sec.max(1);
        let secs = (value / units) as i64;
        let frac = u128::from(value % units) * 1_000_000_000 / u128::from(units);
        Timestamp {
            secs: secs.saturating_add(offset_secs),
            nanos: frac as u32,
        }
    }

    /// Seconds as a floating-point number (for display).
    pub fn as_f64(&self) -> f64 {
        self.secs as f64 + f64::from(self.nanos) / 1e9
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.secs, self.nanos)
    }
}

/// One captured frame that carries an IP packet.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Frame number, starting at 1, counting every packet record of the file (as Wireshark
    /// numbers frames).
    pub number: u64,
    /// Byte offset of the frame's record in the capture file.
    pub offset: u64,
    /// Capture timestamp.
    pub timestamp: Timestamp,
    /// Link type of the interface the frame was captured on.
    pub link_type: LinkType,
    /// The IP packet (IPv4 or IPv6 header first). It may be followed by link-layer padding;
    /// the IP header's length fields say where the packet ends.
    pub ip: &'a [u8],
    /// Length of the frame on the wire; larger than the captured length when the capture's
    /// snaplen cut the frame.
    pub orig_len: u32,
    /// Captured length of the whole frame (link header included).
    pub cap_len: u32,
}

impl Frame<'_> {
    /// True when the capture tool cut this frame short (snaplen).
    pub fn is_truncated(&self) -> bool {
        self.orig_len > self.cap_len
    }
}

/// Why a frame was skipped. The capture reader counts the link-level reasons; the checker
/// counts the IP/TCP-level ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The interface's link type is not one this reader decodes.
    UnsupportedLinkType,
    /// The frame is too short for its link-layer header.
    LinkTruncated,
    /// The link layer carries something other than IPv4/IPv6 (ARP, LLDP, ...).
    NotIp,
    /// A pcapng packet names an interface that no Interface Description Block declared.
    UnknownInterface,
    /// The IP header is malformed or cut short.
    MalformedIp,
    /// An IP fragment whose datagram was never reassembled (fragments missing, or a bad
    /// set: overlapping, unaligned, too long); see [`crate::reassembly`].
    IpFragment,
    /// The IP packet carries another protocol than TCP.
    NotTcp,
    /// The TCP header is malformed or cut short.
    MalformedTcp,
}

impl SkipReason {
    /// All reasons, in display order.
    pub const ALL: [SkipReason; 8] = [
        SkipReason::UnsupportedLinkType,
        SkipReason::LinkTruncated,
        SkipReason::NotIp,
        SkipReason::UnknownInterface,
        SkipReason::MalformedIp,
        SkipReason::IpFragment,
        SkipReason::NotTcp,
        SkipReason::MalformedTcp,
    ];

    /// Stable snake_case name (used in JSON output).
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::UnsupportedLinkType => "unsupported_link_type",
            SkipReason::LinkTruncated => "link_truncated",
            SkipReason::NotIp => "not_ip",
            SkipReason::UnknownInterface => "unknown_interface",
            SkipReason::MalformedIp => "malformed_ip",
            SkipReason::IpFragment => "ip_fragment",
            SkipReason::NotTcp => "not_tcp",
            SkipReason::MalformedTcp => "malformed_tcp",
        }
    }

    /// A phrase for human output.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::UnsupportedLinkType => "unsupported link type",
            SkipReason::LinkTruncated => "frame shorter than its link header",
            SkipReason::NotIp => "not IP",
            SkipReason::UnknownInterface => "undeclared pcapng interface",
            SkipReason::MalformedIp => "malformed IP header",
            SkipReason::IpFragment => "IP fragment not reassembled",
            SkipReason::NotTcp => "not TCP",
            SkipReason::MalformedTcp => "malformed TCP header",
        }
    }
}

/// Counts of skipped frames, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipCounts {
    counts: [u64; 8],
}

impl SkipCounts {
    /// Count one frame skipped for `reason`.
    pub fn add(&mut self, reason: SkipReason) {
        self.counts[reason as usize] += 1;
    }

    /// Count `n` frames skipped for `reason`.
    pub fn add_many(&mut self, reason: SkipReason, n: u64) {
        self.counts[reason as usize] += n;
    }

    /// Frames skipped for `reason`.
    pub fn get(&self, reason: SkipReason) -> u64 {
        self.counts[reason as usize]
    }

    /// Frames skipped for any reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Non-zero counts, in display order.
    pub fn iter(&self) -> impl Iterator<Item = (SkipReason, u64)> + '_ {
        SkipReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }

    /// Add every count of `other`.
    pub fn merge(&mut self, other: &SkipCounts) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }
}

/// What went wrong while reading a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureErrorKind {
    /// The file could not be opened or read.
    Io(String),
    /// The file is empty.
    Empty,
    /// The file is neither pcap nor pcapng.
    NotACapture,
    /// The file ends in the middle of a record or header.
    Truncated,
    /// A record claims a length larger than [`MAX_RECORD_LEN`].
    RecordTooLarge(u64),
    /// A record is malformed (bad block length, bad trailer, ...).
    Corrupt(String),
}

/// A capture that cannot be read (further): the frame number and byte offset at which
/// reading stopped, and why. Frames before `frame` were delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    /// Number of the frame that could not be read (1 + frames delivered or skipped so far);
    /// 0 when the file header itself is bad.
    pub frame: u64,
    /// Byte offset in the file of the record that could not be read.
    pub offset: u64,
    /// What went wrong.
    pub kind: CaptureErrorKind,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.frame == 0 {
            format!("file header (byte offset {})", self.offset)
        } else {
            format!("frame {} (byte offset {})", self.frame, self.offset)
        };
        match &self.kind {
            CaptureErrorKind::Io(e) => write!(f, "read error at {at}: {e}"),
            CaptureErrorKind::Empty => write!(f, "the file is empty"),
            CaptureErrorKind::NotACapture => write!(
                f,
                "not a pcap or pcapng file (unrecognised magic number at byte offset 0)"
            ),
            CaptureErrorKind::Truncated => write!(
                f,
                "capture truncated: the file ends in the middle of {at}; \
                 the capture was cut short (e.g. the capturing tool was killed)"
            ),
            CaptureErrorKind::RecordTooLarge(n) => write!(
                f,
                "corrupt capture at {at}: record length {n} exceeds the {MAX_RECORD_LEN}-byte limit"
            ),
            CaptureErrorKind::Corrupt(why) => write!(f, "corrupt capture at {at}: {why}"),
        }
    }
}

impl std::error::Error for CaptureError {}

/// One pcapng interface (or the single interface of a pcap file).
#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: LinkType,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds added to every timestamp.
    offset_secs: i64,
}

/// Timestamp units per second for a pcapng `if_tsresol` value (RFC draft-ietf-opsawg-pcapng
/// §4.2): most significant bit clear means 10^-n, set means 2^-n.
fn tsresol_units(tsresol: u8) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

/// Streaming reader of one pcap or pcapng capture.
pub struct CaptureReader {
    inner: Box<dyn PcapReaderIterator + Send>,
    format: CaptureFormat,
    /// Frames seen so far (delivered or skipped).
    frames: u64,
    interfaces: Vec<Interface>,
    skipped: SkipCounts,
    done: bool,
    /// Current size of the read buffer.
    capacity: usize,
}

impl fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format)
            .field("frames", &self.frames)
            .field("interfaces", &self.interfaces)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl CaptureReader {
    /// Open the capture file at `path`.
    ///
    /// # Errors
    /// The file cannot be opened, is empty, or is not a pcap/pcapng capture.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        let file = File::open(path.as_ref()).map_err(|e| CaptureError {
            frame: 0,
            offset: 0,
            kind: CaptureErrorKind::Io(e.to_string()),
        })?;
        Self::new(file)
    }

    /// Read a capture from any byte stream.
    ///
    /// # Errors
    /// The stream is empty, cannot be read, or is not a pcap/pcapng capture.
    pub fn new<R: Read + Send + 'static>(reader: R) -> Result<Self, CaptureError> {
        let err = |kind| CaptureError {
            frame: 0,
            offset: 0,
            kind,
        };
        let inner = match pcap_parser::create_reader(BUFFER_LEN, reader) {
            Ok(r) => r,
            Err(PcapError::Eof) => return Err(err(CaptureErrorKind::Empty)),
            Err(PcapError::ReadError) => {
                return Err(err(CaptureErrorKind::Io("read failed".into())));
            }
            Err(PcapError::Incomplete(_)) | Err(PcapError::UnexpectedEof) => {
                return Err(err(CaptureErrorKind::Truncated));
            }
            Err(PcapError::HeaderNotRecognized) => {
                return Err(err(CaptureErrorKind::NotACapture));
            }
            Err(e) => {
                return Err(err(CaptureErrorKind::Corrupt(format!(
                    "bad file header ({})",
                    nom_kind(&e)
                ))));
            }
        };
        // pcapng files start with a Section Header Block, 0x0A0D0D0A in either byte order.
        let format = if inner.data().starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
            CaptureFormat::Pcapng
        } else {
            CaptureFormat::Pcap
        };
        Ok(CaptureReader {
            inner,
            format,
            frames: 0,
            interfaces: Vec::new(),
            skipped: SkipCounts::default(),
            done: false,
            capacity: BUFFER_LEN,
        })
    }

    /// The container format.
    pub fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Frames read so far (delivered or skipped).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes of the file consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.inner.consumed() as u64
    }

    /// Frames skipped so far by the link layer decoder, by reason.
    pub fn skipped(&self) -> &SkipCounts {
        &self.skipped
    }

    /// Link type of the first interface (pcap: the file's link type), once known.
    pub fn link_type(&self) -> Option<LinkType> {
        self.interfaces.first().map(|i| i.link_type)
    }

    /// Call `f` on every frame that carries IP, in file order, until the end of the capture,
    /// until `f` returns [`ControlFlow::Break`], or until the capture turns out to be bad.
    ///
    /// Returns `Ok(true)` at the end of the capture and `Ok(false)` when `f` stopped early
    /// (calling again resumes after the last frame).
    ///
    /// # Errors
    /// The capture is truncated or corrupt, or reading failed; the error names the frame
    /// number and byte offset. Every earlier frame was delivered to `f`.
    pub fn for_each_frame<F>(&mut self, f: F) -> Result<bool, CaptureError>
    where
        F: FnMut(&Frame<'_>) -> ControlFlow<()>,
    {
        if self.done {
            return Ok(true);
        }
        let r = self.run(f);
        if r.is_err() {
            self.done = true;
        }
        r
    }

    fn run<F>(&mut self, mut f: F) -> Result<bool, CaptureError>
    where
        F: FnMut(&Frame<'_>) -> ControlFlow<()>,
    {
        loop {
            let offset = self.inner.consumed() as u64;
            match self.inner.next() {
                Ok((len, block)) => {
                    let mut stop = false;
                    match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            let units = if h.is_nanosecond_precision() {
                                1_000_000_000
                            } else {
                                1_000_000
                            };
                            self.interfaces.clear();
                            self.interfaces.push(Interface {
                                // Bits 16-31 of the link type field carry FCS information.
                                link_type: LinkType::from_raw((h.network.0 & 0xffff) as u16),
                                units_per_sec: units,
                                offset_secs: i64::from(h.thiszone),
                            });
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let Some(iface) = self.interfaces.first().copied() else {
                                let e = CaptureErrorKind::Corrupt(
                                    "packet record before the file header".into(),
                                );
                                return Err(CaptureError {
                                    frame: self.frames + 1,
                                    offset,
                                    kind: e,
                                });
                            };
                            self.frames += 1;
                            let (sec, frac) = (u64::from(b.ts_sec), u64::from(b.ts_usec));
                            let ts = Timestamp {
                                secs: sec as i64 + iface.offset_secs,
                                nanos: (frac.min(iface.units_per_sec - 1) * 1_000_000_000
                                    / iface.units_per_sec)
                                    as u32,
                            };
                            stop = deliver(
                                &mut self.skipped,
                                &mut f,
                                self.frames,
                                offset,
                                ts,
                                iface.link_type,
                                b.data,
                                b.origlen,
                            );
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            // Interface numbering restarts in every section.
                            self.interfaces.clear();
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let Some(units) = tsresol_units(idb.if_tsresol) else {
                                let e = CaptureErrorKind::Corrupt(format!(
                                    "interface {} has an invalid if_tsresol value {:#04x}",
                                    self.interfaces.len(),
                                    idb.if_tsresol
                                ));
                                return Err(CaptureError {
                                    frame: self.frames + 1,
                                    offset,
                                    kind: e,
                                });
                            };
                            self.interfaces.push(Interface {
                                link_type: LinkType::from_raw(idb.linktype.0 as u16),
                                units_per_sec: units,
                                offset_secs: idb.if_tsoffset,
                            });
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            self.frames += 1;
                            match self.interfaces.get(epb.if_id as usize).copied() {
                                Some(iface) => {
                                    let cap = (epb.caplen as usize).min(epb.data.len());
                                    let raw =
                                        (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                    let ts = Timestamp::from_units(
                                        raw,
                                        iface.units_per_sec,
                                        iface.offset_secs,
                                    );
                                    stop = deliver(
                                        &mut self.skipped,
                                        &mut f,
                                        self.frames,
                                        offset,
                                        ts,
                                        iface.link_type,
                                        &epb.data[..cap],
                                        epb.origlen,
                                    );
                                }
                                None => self.skipped.add(SkipReason::UnknownInterface),
                            }
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            self.frames += 1;
                            match self.interfaces.first().copied() {
                                Some(iface) => {
                                    let cap = (spb.origlen as usize).min(spb.data.len());
                                    stop = deliver(
                                        &mut self.skipped,
                                        &mut f,
                                        self.frames,
                                        offset,
                                        Timestamp::default(),
                                        iface.link_type,
                                        &spb.data[..cap],
                                        spb.origlen,
                                    );
                                }
                                None => self.skipped.add(SkipReason::UnknownInterface),
                            }
                        }
                        // Statistics, name resolution, custom and unknown blocks carry no
                        // frames.
                        PcapBlockOwned::NG(_) => {}
                    }
                    self.inner.consume(len);
                    if stop {
                        return Ok(false);
                    }
                }
                Err(PcapError::Eof) => {
                    self.done = true;
                    return Ok(true);
                }
                Err(PcapError::Incomplete(_)) => {
                    self.refill(offset)?;
                }
                Err(PcapError::BufferTooSmall) => {
                    self.grow(offset)?;
                    self.refill(offset)?;
                }
                Err(PcapError::UnexpectedEof) => {
                    return Err(self.error(offset, CaptureErrorKind::Truncated));
                }
                Err(PcapError::ReadError) => {
                    return Err(self.error(offset, CaptureErrorKind::Io("read failed".to_string())));
                }
                Err(e) => {
                    let why = format!("malformed record ({})", nom_kind(&e));
                    return Err(self.error(offset, CaptureErrorKind::Corrupt(why)));
                }
            }
        }
    }

    /// Read more of the file. A refill that brings nothing new while the reader still
    /// expects data means the buffer is full: grow it (bounded) or give up.
    fn refill(&mut self, offset: u64) -> Result<(), CaptureError> {
        let before = self.inner.data().len();
        if self.inner.refill().is_err() {
            return Err(self.error(offset, CaptureErrorKind::Io("read failed".to_string())));
        }
        if self.inner.data().len() == before && !self.inner.reader_exhausted() {
            self.grow(offset)?;
        }
        Ok(())
    }

    /// Grow the buffer so that the next record fits, within [`MAX_RECORD_LEN`].
    fn grow(&mut self, offset: u64) -> Result<(), CaptureError> {
        let need = self.record_len_hint();
        let want = match need {
            Some(n) if n as usize + 4096 > self.capacity => n as usize + 4096,
            _ => self.capacity * 2,
        };
        if need.is_some_and(|n| n as usize > MAX_RECORD_LEN) || self.capacity >= MAX_RECORD_LEN {
            let n = need.unwrap_or(self.capacity as u64);
            return Err(self.error(offset, CaptureErrorKind::RecordTooLarge(n)));
        }
        let want = want.min(MAX_RECORD_LEN);
        if self.inner.grow(want) {
            self.capacity = want;
        }
        Ok(())
    }

    /// The length the next record claims, read from its header, when it can be known.
    fn record_len_hint(&self) -> Option<u64> {
        let d = self.inner.data();
        match self.format {
            CaptureFormat::Pcap => {
                // Record header: ts_sec, ts_usec, caplen, origlen; byte order unknown here,
                // so take the smaller interpretation.
                let b: [u8; 4] = d.get(8..12)?.try_into().ok()?;
                let n = u32::from_le_bytes(b).min(u32::from_be_bytes(b));
                Some(u64::from(n) + 16)
            }
            CaptureFormat::Pcapng => {
                let b: [u8; 4] = d.get(4..8)?.try_into().ok()?;
                Some(u64::from(u32::from_le_bytes(b).min(u32::from_be_bytes(b))))
            }
        }
    }

    fn error(&self, offset: u64, kind: CaptureErrorKind) -> CaptureError {
        CaptureError {
            frame: self.frames + 1,
            offset,
            kind,
        }
    }
}

fn nom_kind<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::NomError(_, k) | PcapError::OwnedNomError(_, k) => format!("{k:?}"),
        _ => "unknown".to_string(),
    }
}

/// Decode the link layer of one frame and hand it to `f` (or count why it was skipped).
/// Returns true when `f` asked to stop.
#[allow(clippy::too_many_arguments)]
fn deliver<F>(
    skipped: &mut SkipCounts,
    f: &mut F,
    number: u64,
    offset: u64,
    timestamp: Timestamp,
    link_type: LinkType,
    data: &[u8],
    orig_len: u32,
) -> bool
where
    F: FnMut(&Frame<'_>) -> ControlFlow<()>,
{
    match link::ip_payload(link_type, data) {
        Ok(ip) => {
            let frame = Frame {
                number,
                offset,
                timestamp,
                link_type,
                ip,
                orig_len,
                cap_len: data.len() as u32,
            };
            f(&frame).is_break()
        }
        Err(reason) => {
            skipped.add(reason);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol() {
        assert_eq!(tsresol_units(6), Some(1_000_000));
        assert_eq!(tsresol_units(9), Some(1_000_000_000));
        assert_eq!(tsresol_units(0x80 | 10), Some(1024));
        assert_eq!(tsresol_units(20), None);
        assert_eq!(tsresol_units(0x80 | 64), None);
    }

    #[test]
    fn timestamp_units() {
        let t = Timestamp::from_units(1_500_000_123, 1_000_000_000, 10);
        assert_eq!(
            t,
            Timestamp {
                secs: 11,
                nanos: 500_000_123
            }
        );
        let t = Timestamp::from_units(3 * 1024 + 512, 1024, 0);
        assert_eq!(
            t,
            Timestamp {
                secs: 3,
                nanos: 500_000_000
            }
        );
        assert_eq!(t.to_string(), "3.500000000");
    }
}

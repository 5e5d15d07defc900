// SPDX-License-Identifier: MIT OR Apache-2.0
//! TCP header view (RFC 9293 §3.1), option iterator and checksum helpers.

use core::net::IpAddr;
use core::ops::{BitOr, BitOrAssign, Range};

use super::ao::{AoOption, AoOptionRepr, TCPOPT_AO};
use super::checksum::tcp_checksum;
use super::{Error, Result, need};

mod field {
    use crate::wire::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const FLAGS: Field = 12..14;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// Length of the fixed TCP header (RFC 9293 §3.1).
pub const HEADER_LEN: usize = field::URGENT.end;
/// Maximum bytes of options a TCP header can hold.
pub const MAX_OPTIONS_LEN: usize = 40;

/// TCP option kind of End of Option List.
pub const TCPOPT_EOL: u8 = 0;
/// TCP option kind of No-Operation.
pub const TCPOPT_NOP: u8 = 1;
/// TCP option kind of Maximum Segment Size.
pub const TCPOPT_MSS: u8 = 2;
/// TCP option kind of Window Scale.
pub const TCPOPT_WS: u8 = 3;
/// TCP option kind of SACK Permitted.
pub const TCPOPT_SACK_PERM: u8 = 4;
/// TCP option kind of SACK.
pub const TCPOPT_SACK: u8 = 5;
/// TCP option kind of Timestamps.
pub const TCPOPT_TS: u8 = 8;
/// TCP option kind of the TCP-MD5 signature (RFC 2385).
pub const TCPOPT_MD5SIG: u8 = 19;

/// TCP header flags (the 9 bits after the data offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// No flags.
    pub const NONE: TcpFlags = TcpFlags(0);
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x001);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x002);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x004);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x008);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x010);
    /// URG.
    pub const URG: TcpFlags = TcpFlags(0x020);
    /// ECE.
    pub const ECE: TcpFlags = TcpFlags(0x040);
    /// CWR.
    pub const CWR: TcpFlags = TcpFlags(0x080);
    /// NS / AE (RFC 3540, accurate ECN).
    pub const NS: TcpFlags = TcpFlags(0x100);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

/// A read/write view of a TCP segment (header, options, payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wrap a buffer without checks (for emitting).
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wrap a buffer and run [`Self::check_len`].
    ///
    /// # Errors
    /// See [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Check that the fixed header and the data offset fit the buffer.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::BadDataOffset`].
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        need("TCP header", HEADER_LEN, len)?;
        let off = self.buffer.as_ref()[field::FLAGS.start] >> 4;
        if off < 5 {
            return Err(Error::BadDataOffset(off));
        }
        need("TCP header with options", self.header_len(), len)
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, f: Range<usize>) -> u16 {
        let d = &self.buffer.as_ref()[f];
        u16::from_be_bytes([d[0], d[1]])
    }

    fn u32_at(&self, f: Range<usize>) -> u32 {
        let d = &self.buffer.as_ref()[f];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Return the source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Return the destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Return the sequence number.
    pub fn seq_number(&self) -> u32 {
        self.u32_at(field::SEQ_NUM)
    }

    /// Return the acknowledgement number.
    pub fn ack_number(&self) -> u32 {
        self.u32_at(field::ACK_NUM)
    }

    /// Return the header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }

    /// Return the flags.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.u16_at(field::FLAGS) & 0x01ff)
    }

    /// Return the FIN flag.
    pub fn fin(&self) -> bool {
        self.flags().contains(TcpFlags::FIN)
    }

    /// Return the SYN flag.
    pub fn syn(&self) -> bool {
        self.flags().contains(TcpFlags::SYN)
    }

    /// Return the RST flag.
    pub fn rst(&self) -> bool {
        self.flags().contains(TcpFlags::RST)
    }

    /// Return the ACK flag.
    pub fn ack(&self) -> bool {
        self.flags().contains(TcpFlags::ACK)
    }

    /// Return the window size field.
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WIN_SIZE)
    }

    /// Return the checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Return the urgent pointer field.
    pub fn urgent_at(&self) -> u16 {
        self.u16_at(field::URGENT)
    }

    /// Sequence space this segment occupies: payload length plus one for SYN and FIN.
    pub fn segment_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Return the option bytes (between the fixed header and the data offset).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Return the payload.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Iterate over the options.
    pub fn options_iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options())
    }

    /// Locate the authentication options the way Linux does
    /// (`tcp_do_parse_auth_options`): walk the option TLVs, stop at EOL, and require at most
    /// one TCP-AO or TCP-MD5 option. Other options are not interpreted.
    ///
    /// # Errors
    /// [`Error::BadOptionLength`] (length below 2, an MD5 option that is not 18 bytes, an
    /// AO option without MAC), [`Error::OptionOverflow`], [`Error::DuplicateAuthOption`].
    pub fn auth_options(&self) -> Result<AuthOptions> {
        let opts = self.options();
        let mut found = AuthOptions::default();
        let mut i = 0;
        while i < opts.len() {
            let kind = opts[i];
            match kind {
                TCPOPT_EOL => break,
                TCPOPT_NOP => i += 1,
                _ => {
                    let len = *opts.get(i + 1).ok_or(Error::OptionOverflow { kind })?;
                    if len < 2 {
                        return Err(Error::BadOptionLength { kind, len });
                    }
                    let end = i + usize::from(len);
                    if end > opts.len() {
                        return Err(Error::OptionOverflow { kind });
                    }
                    let range = HEADER_LEN + i..HEADER_LEN + end;
                    if kind == TCPOPT_MD5SIG {
                        if len != 18 {
                            return Err(Error::BadOptionLength { kind, len });
                        }
                        if found.md5.is_some() || found.ao.is_some() {
                            return Err(Error::DuplicateAuthOption);
                        }
                        found.md5 = Some(range);
                    } else if kind == TCPOPT_AO {
                        // RFC 5925 §2.2: the MAC is at least one byte (Linux: > 4 bytes).
                        if len <= 4 {
                            return Err(Error::BadOptionLength { kind, len });
                        }
                        if found.md5.is_some() || found.ao.is_some() {
                            return Err(Error::DuplicateAuthOption);
                        }
                        found.ao = Some(range);
                    }
                    i = end;
                }
            }
        }
        Ok(found)
    }

    /// The TCP-AO option, if the segment carries exactly one (see [`Self::auth_options`]).
    ///
    /// # Errors
    /// As [`Self::auth_options`].
    pub fn ao_option(&self) -> Result<Option<AoOptionRepr<'_>>> {
        match self.auth_options()?.ao {
            Some(r) => {
                let opt = AoOption::new_checked(&self.buffer.as_ref()[r])?;
                Ok(Some(AoOptionRepr::parse(&opt)?))
            }
            None => Ok(None),
        }
    }

    /// The header bytes after an option up to the next 32-bit boundary of the header (which
    /// is also the option area's: it starts at byte 20), cut at the data offset; empty when
    /// the option ends on a boundary. `option` is the option's byte range in the header, as
    /// [`AuthOptions`] gives it. These bytes are what pads a TCP-AO option whose MAC length is
    /// not a multiple of 4 (Linux writes NOPs there).
    pub fn padding_after(&self, option: Range<usize>) -> &[u8] {
        let header_len = self.header_len();
        let start = option.end.min(header_len);
        let end = option.end.next_multiple_of(4).min(header_len);
        &self.buffer.as_ref()[start..end]
    }

    /// Whether the checksum verifies under the pseudo-header of `src`/`dst`.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        tcp_checksum(src, dst, self.buffer.as_ref()) == 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// Return the option bytes, borrowed for the buffer's lifetime.
    pub fn options_ref(&self) -> &'a [u8] {
        let d = self.buffer.as_ref();
        &d[HEADER_LEN..usize::from(d[field::FLAGS.start] >> 4) * 4]
    }

    /// Return the payload, borrowed for the buffer's lifetime.
    pub fn payload_ref(&self) -> &'a [u8] {
        let d = self.buffer.as_ref();
        &d[usize::from(d[field::FLAGS.start] >> 4) * 4..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn set_u16(&mut self, f: Range<usize>, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Set the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16(field::SRC_PORT, v);
    }

    /// Set the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16(field::DST_PORT, v);
    }

    /// Set the sequence number.
    pub fn set_seq_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Set the acknowledgement number.
    pub fn set_ack_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Set the header length in bytes (multiple of 4, 20..=60) and the flags.
    pub fn set_header_len_and_flags(&mut self, header_len: usize, flags: TcpFlags) {
        let w = (((header_len / 4) as u16 & 0x0f) << 12) | (flags.0 & 0x01ff);
        self.set_u16(field::FLAGS, w);
    }

    /// Set the window size field.
    pub fn set_window_len(&mut self, v: u16) {
        self.set_u16(field::WIN_SIZE, v);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM, v);
    }

    /// Set the urgent pointer field.
    pub fn set_urgent_at(&mut self, v: u16) {
        self.set_u16(field::URGENT, v);
    }

    /// Compute and store the checksum for the pseudo-header of `src`/`dst`.
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let c = tcp_checksum(src, dst, self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Return the option bytes, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    /// Return the payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// Positions (within the TCP header) of the authentication options found by
/// [`TcpPacket::auth_options`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthOptions {
    /// Byte range of the TCP-AO option (kind 29), if present.
    pub ao: Option<Range<usize>>,
    /// Byte range of the TCP-MD5 option (kind 19), if present.
    pub md5: Option<Range<usize>>,
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list (kind 0); the iterator stops after it.
    EndOfList,
    /// No-operation (kind 1).
    NoOperation,
    /// Maximum segment size (kind 2).
    MaxSegmentSize(u16),
    /// Window scale shift count (kind 3).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// SACK blocks (kind 5), raw: pairs of big-endian left/right edges.
    Sack(&'a [u8]),
    /// Timestamps (kind 8).
    Timestamp {
        /// TSval.
        tsval: u32,
        /// TSecr.
        tsecr: u32,
    },
    /// TCP-MD5 signature (kind 19, RFC 2385): the 16-byte digest.
    Md5(&'a [u8]),
    /// TCP-AO (kind 29, RFC 5925 §2.2).
    Ao(AoOptionRepr<'a>),
    /// Any other option, kept raw.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data (after kind and length).
        data: &'a [u8],
    },
}

impl TcpOption<'_> {
    /// The option kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            TcpOption::EndOfList => TCPOPT_EOL,
            TcpOption::NoOperation => TCPOPT_NOP,
            TcpOption::MaxSegmentSize(_) => TCPOPT_MSS,
            TcpOption::WindowScale(_) => TCPOPT_WS,
            TcpOption::SackPermitted => TCPOPT_SACK_PERM,
            TcpOption::Sack(_) => TCPOPT_SACK,
            TcpOption::Timestamp { .. } => TCPOPT_TS,
            TcpOption::Md5(_) => TCPOPT_MD5SIG,
            TcpOption::Ao(_) => TCPOPT_AO,
            TcpOption::Unknown { kind, .. } => *kind,
        }
    }

    /// Encoded length in bytes.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack(d) | TcpOption::Md5(d) => 2 + d.len(),
            TcpOption::Timestamp { .. } => 10,
            TcpOption::Ao(r) => r.buffer_len(),
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Append the encoded option to `out`.
    ///
    /// # Errors
    /// [`Error::LengthOverflow`] when the option is longer than 255 bytes.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let len = self.buffer_len();
        let len8 = u8::try_from(len).map_err(|_| Error::LengthOverflow(len))?;
        match self {
            TcpOption::EndOfList => out.push(TCPOPT_EOL),
            TcpOption::NoOperation => out.push(TCPOPT_NOP),
            TcpOption::MaxSegmentSize(m) => {
                out.extend_from_slice(&[TCPOPT_MSS, 4]);
                out.extend_from_slice(&m.to_be_bytes());
            }
            TcpOption::WindowScale(s) => out.extend_from_slice(&[TCPOPT_WS, 3, *s]),
            TcpOption::SackPermitted => out.extend_from_slice(&[TCPOPT_SACK_PERM, 2]),
            TcpOption::Sack(d) => {
                out.extend_from_slice(&[TCPOPT_SACK, len8]);
                out.extend_from_slice(d);
            }
            TcpOption::Timestamp { tsval, tsecr } => {
                out.extend_from_slice(&[TCPOPT_TS, 10]);
                out.extend_from_slice(&tsval.to_be_bytes());
                out.extend_from_slice(&tsecr.to_be_bytes());
            }
            TcpOption::Md5(d) => {
                out.extend_from_slice(&[TCPOPT_MD5SIG, len8]);
                out.extend_from_slice(d);
            }
            TcpOption::Ao(r) => {
                let start = out.len();
                out.resize(start + len, 0);
                r.emit(&mut AoOption::new_unchecked(&mut out[start..]));
            }
            TcpOption::Unknown { kind, data } => {
                out.extend_from_slice(&[*kind, len8]);
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }
}

/// Encode `options` and pad with EOL bytes to a multiple of 4.
///
/// # Errors
/// [`Error::OptionsTooLong`] when the result exceeds 40 bytes.
pub fn build_options(options: &[TcpOption<'_>]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(MAX_OPTIONS_LEN);
    for o in options {
        o.emit(&mut out)?;
    }
    while out.len() % 4 != 0 {
        out.push(TCPOPT_EOL);
    }
    if out.len() > MAX_OPTIONS_LEN {
        return Err(Error::OptionsTooLong(out.len()));
    }
    Ok(out)
}

/// Iterator over TCP options. Yields `Err` once for malformed options and then stops.
///
/// [`TcpOptions::offset`] says where in the option area the next option starts (the one the
/// next call to `next` yields), and [`TcpOptions::remainder`] what is left after the iterator
/// stopped: after an End of Option List, the header padding that RFC 9293 §3.1 requires to
/// be zero.
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    data: &'a [u8],
    /// Length of the whole option area.
    total: usize,
    done: bool,
}

impl<'a> TcpOptions<'a> {
    /// Iterate over raw option bytes.
    pub fn new(data: &'a [u8]) -> Self {
        TcpOptions {
            data,
            total: data.len(),
            done: false,
        }
    }

    /// Offset, from the start of the option area, of the next option to be read (after the
    /// iterator ended: of the first byte it did not read).
    pub fn offset(&self) -> usize {
        self.total - self.data.len()
    }

    /// The bytes not read: after an End of Option List (kind 0), the bytes that follow it up
    /// to the end of the header; after a malformed option, that option and what follows it;
    /// empty when every option was read to the header's end.
    pub fn remainder(&self) -> &'a [u8] {
        self.data
    }

    fn next_option(&mut self) -> Result<TcpOption<'a>> {
        let kind = self.data[0];
        match kind {
            TCPOPT_EOL => {
                self.done = true;
                self.data = &self.data[1..];
                return Ok(TcpOption::EndOfList);
            }
            TCPOPT_NOP => {
                self.data = &self.data[1..];
                return Ok(TcpOption::NoOperation);
            }
            _ => {}
        }
        let len = *self.data.get(1).ok_or(Error::OptionOverflow { kind })?;
        if len < 2 {
            return Err(Error::BadOptionLength { kind, len });
        }
        let len_us = usize::from(len);
        if len_us > self.data.len() {
            return Err(Error::OptionOverflow { kind });
        }
        let body = &self.data[2..len_us];
        let bad = Error::BadOptionLength { kind, len };
        let opt = match kind {
            TCPOPT_MSS if len == 4 => {
                TcpOption::MaxSegmentSize(u16::from_be_bytes([body[0], body[1]]))
            }
            TCPOPT_WS if len == 3 => TcpOption::WindowScale(body[0]),
            TCPOPT_SACK_PERM if len == 2 => TcpOption::SackPermitted,
            TCPOPT_SACK if (len - 2) % 8 == 0 && len > 2 => TcpOption::Sack(body),
            TCPOPT_TS if len == 10 => TcpOption::Timestamp {
                tsval: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                tsecr: u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
            },
            TCPOPT_MD5SIG if len == 18 => TcpOption::Md5(body),
            TCPOPT_AO => {
                let opt = AoOption::new_checked(&self.data[..len_us])?;
                TcpOption::Ao(AoOptionRepr::parse(&opt)?)
            }
            TCPOPT_MSS | TCPOPT_WS | TCPOPT_SACK_PERM | TCPOPT_SACK | TCPOPT_TS | TCPOPT_MD5SIG => {
                return Err(bad);
            }
            _ => TcpOption::Unknown { kind, data: body },
        };
        self.data = &self.data[len_us..];
        Ok(opt)
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.data.is_empty() {
            return None;
        }
        let r = self.next_option();
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

/// A high-level TCP segment: header fields, raw option bytes and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgement number.
    pub ack_number: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window size.
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// Raw option bytes; `emit` pads them with EOL bytes to a multiple of 4.
    pub options: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Parse a segment. The options are kept raw (padding included).
    ///
    /// # Errors
    /// [`TcpPacket::check_len`] errors.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &TcpPacket<&'a T>) -> Result<Self> {
        packet.check_len()?;
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            options: packet.options_ref(),
            payload: packet.payload_ref(),
        })
    }

    /// Header length after padding the options.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len().div_ceil(4) * 4
    }

    /// Total emitted length (header, padded options, payload).
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Emit into a buffer of exactly [`Self::buffer_len`] bytes, checksum zero.
    ///
    /// # Errors
    /// [`Error::OptionsTooLong`] when the options exceed 40 bytes; [`Error::Truncated`]
    /// when the buffer is too short.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) -> Result<()> {
        if self.options.len() > MAX_OPTIONS_LEN {
            return Err(Error::OptionsTooLong(self.options.len()));
        }
        need(
            "TCP emit buffer",
            self.buffer_len(),
            packet.buffer.as_ref().len(),
        )?;
        let hl = self.header_len();
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len_and_flags(hl, self.flags);
        packet.set_window_len(self.window_len);
        packet.set_checksum(0);
        packet.set_urgent_at(self.urgent_at);
        let buf = packet.buffer.as_mut();
        buf[HEADER_LEN..HEADER_LEN + self.options.len()].copy_from_slice(self.options);
        buf[HEADER_LEN + self.options.len()..hl].fill(TCPOPT_EOL);
        buf[hl..hl + self.payload.len()].copy_from_slice(self.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    // RFC 9235 §4.1.1 TCP header: SYN 59863 -> 179 with MSS, NOP, WS, SACK-perm, TS, AO.
    static SYN_BYTES: [u8; 56] = [
        0xe9, 0xd7, 0x00, 0xb3, // ports 59863 -> 179
        0xfb, 0xfb, 0xab, 0x5a, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xe0, 0x02, 0xff, 0xff, // data offset 14, SYN, window 65535
        0xca, 0xc4, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x01, // NOP
        0x03, 0x03, 0x08, // WS 8
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0x00, 0x15, 0x5a, 0xb7, 0x00, 0x00, 0x00, 0x00, // TS
        0x1d, 0x10, 0x3d, 0x54, // AO, len 16, KeyID 61, RNextKeyID 84
        0x2e, 0xe4, 0x37, 0xc6, 0xf8, 0xed, 0xe6, 0xd7, 0xc4, 0xd6, 0x02, 0xe7, // MAC
    ];

    #[test]
    fn deconstruct() {
        let p = TcpPacket::new_checked(&SYN_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 59863);
        assert_eq!(p.dst_port(), 179);
        assert_eq!(p.seq_number(), 0xfbfb_ab5a);
        assert_eq!(p.header_len(), 56);
        assert!(p.syn() && !p.ack());
        assert_eq!(p.segment_len(), 1);
        let opts: Vec<_> = p.options_iter().collect::<Result<_>>().unwrap();
        assert_eq!(opts.len(), 6);
        assert_eq!(opts[0], TcpOption::MaxSegmentSize(1460));
        assert_eq!(opts[2], TcpOption::WindowScale(8));
        assert_eq!(
            opts[4],
            TcpOption::Timestamp {
                tsval: 0x155ab7,
                tsecr: 0
            }
        );
        let TcpOption::Ao(ao) = opts[5] else {
            panic!("last option is not AO: {:?}", opts[5]);
        };
        assert_eq!((ao.key_id, ao.rnext_key_id, ao.mac.len()), (61, 84, 12));
        let auth = p.auth_options().unwrap();
        assert_eq!(auth.ao, Some(40..56));
        assert_eq!(auth.md5, None);
        assert_eq!(p.ao_option().unwrap(), Some(ao));
    }

    #[test]
    fn rebuild_options_byte_exact() {
        let p = TcpPacket::new_checked(&SYN_BYTES[..]).unwrap();
        let opts: Vec<_> = p.options_iter().collect::<Result<_>>().unwrap();
        assert_eq!(build_options(&opts).unwrap(), p.options());
    }

    #[test]
    fn parse_emit_roundtrip() {
        let p = TcpPacket::new_checked(&SYN_BYTES[..]).unwrap();
        let repr = TcpRepr::parse(&p).unwrap();
        let mut buf = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]))
            .unwrap();
        // emit writes a zero checksum
        let mut expect = SYN_BYTES.to_vec();
        expect[16] = 0;
        expect[17] = 0;
        assert_eq!(buf, expect);
    }

    #[test]
    fn checksum_fill_verify() {
        let mut buf = SYN_BYTES.to_vec();
        let (s, d) = (
            IpAddr::V4(Ipv4Addr::new(10, 11, 12, 13)),
            IpAddr::V4(Ipv4Addr::new(172, 27, 28, 29)),
        );
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        // RFC 9235 IPv4 checksums are wrong on purpose.
        assert!(!p.verify_checksum(&s, &d));
        p.fill_checksum(&s, &d);
        assert!(p.verify_checksum(&s, &d));
    }

    #[test]
    fn malformed_options_are_errors() {
        let mut buf = SYN_BYTES.to_vec();
        buf[21] = 1; // MSS length 1
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert!(p.options_iter().any(|o| o.is_err()));
        assert_eq!(
            p.auth_options(),
            Err(Error::BadOptionLength { kind: 2, len: 1 })
        );
        let mut buf = SYN_BYTES.to_vec();
        buf[41] = 17; // AO runs past the header
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.auth_options(), Err(Error::OptionOverflow { kind: 29 }));
        // two auth options: turn the timestamp option into an MD5-sized... AO duplicate
        let mut buf = SYN_BYTES.to_vec();
        buf[30..40].copy_from_slice(&[29, 5, 1, 1, 0, 1, 1, 1, 1, 1]);
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.auth_options(), Err(Error::DuplicateAuthOption));
    }

    #[test]
    fn options_iterator_reports_offsets_and_what_is_left() {
        let p = TcpPacket::new_checked(&SYN_BYTES[..]).unwrap();
        let mut it = TcpOptions::new(p.options_ref());
        let mut at = Vec::new();
        while let Some(o) = it.next() {
            at.push((o.unwrap().kind(), it.offset()));
        }
        // (kind, offset after it): MSS, NOP, WS, SACK-perm, TS, AO to the header's end.
        assert_eq!(at, [(2, 4), (1, 5), (3, 8), (4, 10), (8, 20), (29, 36)]);
        assert_eq!(it.remainder(), &[] as &[u8]);
        // An EOL ends the list: what follows it is the remainder (the header padding).
        let opts = [TCPOPT_NOP, TCPOPT_EOL, 0, 7];
        let mut it = TcpOptions::new(&opts);
        assert_eq!(it.offset(), 0);
        assert_eq!(it.next(), Some(Ok(TcpOption::NoOperation)));
        assert_eq!(it.offset(), 1);
        assert_eq!(it.next(), Some(Ok(TcpOption::EndOfList)));
        assert_eq!(
            (it.next(), it.offset(), it.remainder()),
            (None, 2, &[0u8, 7][..])
        );
        // A malformed option stays in the remainder.
        let opts = [TCPOPT_NOP, TCPOPT_MSS, 9, 0];
        let mut it = TcpOptions::new(&opts);
        assert_eq!(it.next(), Some(Ok(TcpOption::NoOperation)));
        assert!(matches!(
            it.next(),
            Some(Err(Error::OptionOverflow { kind: 2 }))
        ));
        assert_eq!((it.next(), it.remainder()), (None, &opts[1..]));
    }

    #[test]
    fn padding_after_an_option_reaches_the_next_word() {
        // AO with a 10-byte MAC (length 14) and two NOPs up to the word boundary.
        let mut buf = vec![0u8; 40];
        buf[12] = 0x90; // data offset 9 words: 16 option bytes
        buf[20..34].copy_from_slice(&[29, 14, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        buf[34..36].copy_from_slice(&[TCPOPT_NOP, TCPOPT_NOP]);
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        let ao = p.auth_options().unwrap().ao.unwrap();
        assert_eq!(ao, 20..34);
        assert_eq!(p.padding_after(ao), &[TCPOPT_NOP, TCPOPT_NOP]);
        // An option ending on a boundary has no padding; nothing past the data offset.
        assert_eq!(p.padding_after(20..36), &[] as &[u8]);
        assert_eq!(p.padding_after(20..37), &[] as &[u8]);
        let mut short = buf.clone();
        short[12] = 0x80; // data offset 8 words: the header ends before the AO option does
        let p = TcpPacket::new_checked(&short[..]).unwrap();
        assert_eq!(p.padding_after(20..34), &[] as &[u8]);
        assert_eq!(p.padding_after(20..30), &[7, 8]);
    }

    #[test]
    fn option_kinds() {
        let p = TcpPacket::new_checked(&SYN_BYTES[..]).unwrap();
        let kinds: Vec<u8> = p.options_iter().map(|o| o.unwrap().kind()).collect();
        assert_eq!(
            kinds,
            [
                TCPOPT_MSS,
                TCPOPT_NOP,
                TCPOPT_WS,
                TCPOPT_SACK_PERM,
                TCPOPT_TS,
                TCPOPT_AO
            ]
        );
        let md5 = [0u8; 16];
        assert_eq!(TcpOption::Md5(&md5).kind(), TCPOPT_MD5SIG);
        assert_eq!(TcpOption::EndOfList.kind(), TCPOPT_EOL);
        assert_eq!(
            TcpOption::Unknown {
                kind: 30,
                data: &[]
            }
            .kind(),
            30
        );
    }

    #[test]
    fn truncated_header_is_error() {
        assert!(matches!(
            TcpPacket::new_checked(&SYN_BYTES[..19]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            TcpPacket::new_checked(&SYN_BYTES[..40]),
            Err(Error::Truncated { .. })
        ));
        let mut buf = SYN_BYTES.to_vec();
        buf[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&buf[..]),
            Err(Error::BadDataOffset(4))
        );
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! IPv6 header view (RFC 8200) with an extension-header walk to find TCP.

use core::net::Ipv6Addr;

use super::{Error, IPPROTO_TCP, Result, need};

mod field {
    use crate::wire::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// Hop-by-hop options header.
const EXT_HOPOPTS: u8 = 0;
/// Routing header.
const EXT_ROUTING: u8 = 43;
/// Fragment header.
const EXT_FRAGMENT: u8 = 44;
/// Authentication header (RFC 4302): length in 4-byte units minus 2.
const EXT_AH: u8 = 51;
/// Destination options header.
const EXT_DSTOPTS: u8 = 60;
/// Mobility header (RFC 6275).
const EXT_MOBILITY: u8 = 135;

/// Upper-layer protocols that are not extension headers: a packet ending in one of
/// these is "not TCP" rather than "unknown header".
const KNOWN_UPPER: [u8; 7] = [1, 4, 17, 41, 58, 59, 132];

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wrap a buffer without checks (for emitting).
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
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

    /// Check the version and that the payload length fits the buffer.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::BadIpVersion`].
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        need("IPv6 header", HEADER_LEN, len)?;
        if self.version() != 6 {
            return Err(Error::BadIpVersion(self.version()));
        }
        need(
            "IPv6 packet (payload length)",
            HEADER_LEN + usize::from(self.payload_len()),
            len,
        )
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word0(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Return the version field.
    pub fn version(&self) -> u8 {
        (self.word0() >> 28) as u8
    }

    /// Return the traffic class field.
    pub fn traffic_class(&self) -> u8 {
        ((self.word0() >> 20) & 0xff) as u8
    }

    /// Return the flow label field.
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }

    /// Return the payload length field.
    pub fn payload_len(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Return the next header field of the fixed header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Return the hop limit field.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Return the source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Return the destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    /// Return the payload (extension headers and upper layer).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walk the extension headers (RFC 8200 §4) and return the upper-layer protocol and
    /// its offset from the start of the packet.
    ///
    /// Hop-by-hop, routing, destination options, mobility and AH headers are skipped.
    ///
    /// # Errors
    /// [`Error::Fragment`] for a fragment header, [`Error::UnknownNextHeader`] for an
    /// header that cannot be skipped (e.g. ESP), [`Error::Truncated`] when a header runs
    /// past the payload length.
    pub fn upper_layer(&self) -> Result<(u8, usize)> {
        match self.walk()? {
            Walked::Fragment(_) => Err(Error::Fragment),
            Walked::Upper(IPPROTO_TCP, off) => Ok((IPPROTO_TCP, off)),
            Walked::Upper(p, _) if KNOWN_UPPER.contains(&p) => Err(Error::NotTcp(p)),
            Walked::Upper(p, _) => Err(Error::UnknownNextHeader(p)),
        }
    }

    /// The fragment header of a fragment (RFC 8200 §4.5), `None` for a packet without one.
    ///
    /// # Errors
    /// [`Error::Truncated`] when a header runs past the payload length.
    pub fn fragment(&self) -> Result<Option<Ipv6Fragment>> {
        Ok(match self.walk()? {
            Walked::Fragment(f) => Some(f),
            Walked::Upper(..) => None,
        })
    }

    /// Walk the extension headers that can be skipped, up to a fragment header or the first
    /// other next header.
    fn walk(&self) -> Result<Walked> {
        let end = HEADER_LEN + usize::from(self.payload_len());
        let data = &self.buffer.as_ref()[..end];
        let mut next = self.next_header();
        let (mut off, mut next_at) = (HEADER_LEN, field::NXT_HDR);
        loop {
            match next {
                EXT_HOPOPTS | EXT_ROUTING | EXT_DSTOPTS | EXT_MOBILITY | EXT_AH => {
                    need("IPv6 extension header", off + 2, data.len())?;
                    let len = if next == EXT_AH {
                        (usize::from(data[off + 1]) + 2) * 4
                    } else {
                        (usize::from(data[off + 1]) + 1) * 8
                    };
                    need("IPv6 extension header", off + len, data.len())?;
                    next = data[off];
                    next_at = off;
                    off += len;
                }
                EXT_FRAGMENT => {
                    need(
                        "IPv6 fragment header",
                        off + FRAGMENT_HEADER_LEN,
                        data.len(),
                    )?;
                    let h = &data[off..off + FRAGMENT_HEADER_LEN];
                    let offlg = u16::from_be_bytes([h[2], h[3]]);
                    return Ok(Walked::Fragment(Ipv6Fragment {
                        next_header_at: next_at,
                        header_at: off,
                        next_header: h[0],
                        offset: offlg & !0x7,
                        more: offlg & 1 == 1,
                        ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    }));
                }
                p => return Ok(Walked::Upper(p, off)),
            }
        }
    }
}

/// Length of the IPv6 fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// What the extension-header walk stopped at.
enum Walked {
    Fragment(Ipv6Fragment),
    /// A next header that is not a skippable extension header, and its offset.
    Upper(u8, usize),
}

/// Where an IPv6 fragment's fragment header is and what it says (RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Fragment {
    /// Offset of the byte that names the fragment header as next header (the fixed
    /// header's next header field, or an extension header's first byte).
    pub next_header_at: usize,
    /// Offset of the fragment header: the unfragmentable part is everything before it.
    pub header_at: usize,
    /// The next header of the fragmentable part.
    pub next_header: u8,
    /// Fragment offset, in bytes.
    pub offset: u16,
    /// The M flag: more fragments follow.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Set version 6, traffic class and flow label.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let w = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }

    /// Set the payload length field.
    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    /// Set the next header field.
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = v;
    }

    /// Set the hop limit field.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    /// Set the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }
}

/// A high-level fixed IPv6 header (no extension headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header of the fixed header.
    pub next_header: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Parse the fixed header of a packet.
    ///
    /// # Errors
    /// [`Ipv6Packet::check_len`] errors.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Self> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Emit the fixed header into the first [`Self::buffer_len`] bytes of `packet`.
    ///
    /// # Errors
    /// [`Error::LengthOverflow`] for payloads over 65535 bytes (no jumbograms);
    /// [`Error::Truncated`] if the buffer is shorter than the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) -> Result<()> {
        need("IPv6 emit buffer", HEADER_LEN, packet.buffer.as_ref().len())?;
        let len =
            u16::try_from(self.payload_len).map_err(|_| Error::LengthOverflow(self.payload_len))?;
        packet.set_version_tc_flow(0, 0);
        packet.set_payload_len(len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next: u8, ext: &[u8], upper_len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN];
        let repr = Ipv6Repr {
            src_addr: Ipv6Addr::LOCALHOST,
            dst_addr: Ipv6Addr::LOCALHOST,
            next_header: next,
            payload_len: ext.len() + upper_len,
            hop_limit: 64,
        };
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]))
            .unwrap();
        buf.extend_from_slice(ext);
        buf.resize(HEADER_LEN + ext.len() + upper_len, 0);
        buf
    }

    #[test]
    fn walks_extension_headers_to_tcp() {
        // hop-by-hop (8 bytes) -> destination options (16 bytes) -> TCP
        let mut ext = vec![EXT_DSTOPTS, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[IPPROTO_TCP, 1, 1, 12]);
        ext.resize(24, 0);
        let buf = packet(EXT_HOPOPTS, &ext, 20);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer(), Ok((IPPROTO_TCP, HEADER_LEN + 24)));
    }

    #[test]
    fn fragment_header_found_behind_extension_headers() {
        // Fixed header -> destination options (8 bytes) -> fragment header: offset 1448, M.
        let mut ext = vec![EXT_FRAGMENT, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[IPPROTO_TCP, 0, 0x05, 0xa9, 0xde, 0xad, 0xbe, 0xef]);
        let buf = packet(EXT_DSTOPTS, &ext, 20);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        let f = Ipv6Fragment {
            next_header_at: HEADER_LEN,
            header_at: HEADER_LEN + 8,
            next_header: IPPROTO_TCP,
            offset: 1448,
            more: true,
            ident: 0xdead_beef,
        };
        assert_eq!(p.fragment(), Ok(Some(f)));
        // Directly after the fixed header, the last fragment.
        let buf = packet(EXT_FRAGMENT, &[IPPROTO_TCP, 0, 0, 8, 0, 0, 0, 1], 20);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        let f = p.fragment().unwrap().unwrap();
        assert_eq!(
            (f.next_header_at, f.header_at, f.offset, f.more, f.ident),
            (field::NXT_HDR, HEADER_LEN, 8, false, 1)
        );
        // No fragment header; a fragment header cut short.
        let buf = packet(IPPROTO_TCP, &[], 20);
        assert_eq!(
            Ipv6Packet::new_checked(&buf[..]).unwrap().fragment(),
            Ok(None)
        );
        let buf = packet(EXT_FRAGMENT, &[IPPROTO_TCP, 0, 0], 0);
        assert!(
            Ipv6Packet::new_checked(&buf[..])
                .unwrap()
                .fragment()
                .is_err()
        );
    }

    #[test]
    fn fragment_and_unknown_are_errors() {
        let buf = packet(EXT_FRAGMENT, &[IPPROTO_TCP, 0, 0, 0, 0, 0, 0, 1], 20);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::Fragment));
        let buf = packet(50, &[], 20);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::UnknownNextHeader(50)));
        let buf = packet(17, &[], 20);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.upper_layer(), Err(Error::NotTcp(17)));
    }

    #[test]
    fn truncated_extension_is_error() {
        // Routing header claims 16 bytes but the payload ends after 8.
        let buf = packet(EXT_ROUTING, &[IPPROTO_TCP, 1, 0, 0, 0, 0, 0, 0], 0);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert!(matches!(p.upper_layer(), Err(Error::Truncated { .. })));
        assert!(matches!(
            Ipv6Packet::new_checked(&buf[..30]),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn parse_emit_roundtrip() {
        let buf = packet(IPPROTO_TCP, &[], 20);
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        let r = Ipv6Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 20);
        let mut out = [0xa5; 60];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(out[..40], buf[..40]);
    }
}

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
        let end = HEADER_LEN + usize::from(self.payload_len());
        let data = &self.buffer.as_ref()[..end];
        let mut next = self.next_header();
        let mut off = HEADER_LEN;
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
                    off += len;
                }
                EXT_FRAGMENT => return Err(Error::Fragment),
                IPPROTO_TCP => return Ok((next, off)),
                p if KNOWN_UPPER.contains(&p) => return Err(Error::NotTcp(p)),
                p => return Err(Error::UnknownNextHeader(p)),
            }
        }
    }
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

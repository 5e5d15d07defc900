// SPDX-License-Identifier: MIT OR Apache-2.0
//! IPv4 header view (RFC 791), enough for locating TCP and building test packets.

use core::net::Ipv4Addr;

use super::checksum::{fold, sum};
use super::{Error, Result, need};

mod field {
    use crate::wire::Field;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap a buffer without checks (for emitting).
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
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

    /// Check version, header length and total length against the buffer, so that no
    /// accessor panics afterwards.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::BadIpVersion`], [`Error::BadIpv4HeaderLen`],
    /// [`Error::BadIpv4TotalLen`].
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        need("IPv4 header", HEADER_LEN, len)?;
        if self.version() != 4 {
            return Err(Error::BadIpVersion(self.version()));
        }
        let ihl = self.buffer.as_ref()[field::VER_IHL] & 0x0f;
        if ihl < 5 {
            return Err(Error::BadIpv4HeaderLen(ihl));
        }
        need("IPv4 header with options", self.header_len(), len)?;
        let total = self.total_len();
        if total < self.header_len() {
            return Err(Error::BadIpv4TotalLen {
                total,
                header: self.header_len(),
            });
        }
        need("IPv4 packet (total length)", total, len)
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Return the version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Return the header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Return the type-of-service (DSCP/ECN) byte.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Return the total length field.
    pub fn total_len(&self) -> usize {
        let d = self.buffer.as_ref();
        usize::from(u16::from_be_bytes([
            d[field::LENGTH.start],
            d[field::LENGTH.start + 1],
        ]))
    }

    /// Return the identification field.
    pub fn ident(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::IDENT];
        u16::from_be_bytes([d[0], d[1]])
    }

    fn flg_off(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::FLG_OFF];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Return the "don't fragment" flag.
    pub fn dont_frag(&self) -> bool {
        self.flg_off() & 0x4000 != 0
    }

    /// Return the "more fragments" flag.
    pub fn more_frags(&self) -> bool {
        self.flg_off() & 0x2000 != 0
    }

    /// Return the fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.flg_off() & 0x1fff) << 3
    }

    /// Return the time-to-live field.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Return the protocol field.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Return the header checksum field.
    pub fn checksum(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Return the source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Return the destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        fold(sum(0, &self.buffer.as_ref()[..self.header_len()])) == 0xffff
    }

    /// Return the payload (bytes between the header and the total length).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn set_u16(&mut self, f: core::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Set version 4 and the header length in bytes (multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Set the type-of-service byte.
    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[field::TOS] = v;
    }

    /// Set the total length field.
    pub fn set_total_len(&mut self, v: u16) {
        self.set_u16(field::LENGTH, v);
    }

    /// Set the identification field.
    pub fn set_ident(&mut self, v: u16) {
        self.set_u16(field::IDENT, v);
    }

    /// Set flags and fragment offset: DF as given, MF clear, offset 0.
    pub fn set_dont_frag(&mut self, df: bool) {
        self.set_u16(field::FLG_OFF, if df { 0x4000 } else { 0 });
    }

    /// Set flags and fragment offset for a fragment (RFC 791 §3.1): DF clear, MF as given,
    /// `offset` in bytes (a multiple of 8; the low 3 bits are dropped).
    pub fn set_fragment(&mut self, more: bool, offset: u16) {
        let mf = if more { 0x2000 } else { 0 };
        self.set_u16(field::FLG_OFF, mf | ((offset >> 3) & 0x1fff));
    }

    /// Set the time-to-live field.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Set the protocol field.
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    /// Set the header checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM, v);
    }

    /// Set the source address.
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    /// Set the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// Compute and store the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = !fold(sum(0, &self.buffer.as_ref()[..hl]));
        self.set_checksum(c);
    }

    /// Return the payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (s, e) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[s..e]
    }
}

/// A high-level IPv4 header (no options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub hop_limit: u8,
    /// Identification field.
    pub ident: u16,
}

impl Ipv4Repr {
    /// Parse a checked packet. IPv4 options are skipped (RFC 5925 §5.1 does not cover them).
    ///
    /// # Errors
    /// [`Error::Fragment`] for fragments; [`Ipv4Packet::check_len`] errors.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        packet.check_len()?;
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Err(Error::Fragment);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() - packet.header_len(),
            hop_limit: packet.hop_limit(),
            ident: packet.ident(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Emit the header (DF set, checksum filled) into the first [`Self::buffer_len`]
    /// bytes of `packet`.
    ///
    /// # Errors
    /// [`Error::LengthOverflow`] if header plus payload exceed 65535 bytes;
    /// [`Error::Truncated`] if the buffer is shorter than the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) -> Result<()> {
        need("IPv4 emit buffer", HEADER_LEN, packet.buffer.as_ref().len())?;
        let total = u16::try_from(HEADER_LEN + self.payload_len)
            .map_err(|_| Error::LengthOverflow(HEADER_LEN + self.payload_len))?;
        packet.set_version_and_header_len(HEADER_LEN);
        packet.set_tos(0);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_dont_frag(true);
        packet.set_hop_limit(self.hop_limit);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9235 §4.1.1 IPv4 header (the header checksum there is correct).
    static HEADER_BYTES: [u8; 20] = [
        0x45, 0xe0, 0x00, 0x4c, // version 4, IHL 5, TOS 0xe0, total length 76
        0xdd, 0x0f, 0x40, 0x00, // ident, DF
        0xff, 0x06, 0xbf, 0x6b, // TTL 255, TCP, checksum
        0x0a, 0x0b, 0x0c, 0x0d, // 10.11.12.13
        0xac, 0x1b, 0x1c, 0x1d, // 172.27.28.29
    ];

    #[test]
    fn deconstruct() {
        let mut buf = HEADER_BYTES.to_vec();
        buf.resize(76, 0);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.total_len(), 76);
        assert_eq!(p.header_len(), 20);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.protocol(), 6);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 11, 12, 13));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(172, 27, 28, 29));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 56);
    }

    #[test]
    fn fragment_fields_roundtrip() {
        let mut buf = HEADER_BYTES.to_vec();
        buf.resize(76, 0);
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        // (more, offset set, offset read back): the offset is in 8-byte units on the wire.
        for (more, offset, back) in [
            (true, 0, 0),
            (true, 1480, 1480),
            (false, 64, 64),
            (false, 13, 8),
        ] {
            p.set_fragment(more, offset);
            assert_eq!(
                (p.more_frags(), p.frag_offset(), p.dont_frag()),
                (more, back, false)
            );
        }
        p.fill_checksum();
        assert!(p.verify_checksum());
    }

    #[test]
    fn truncated_is_error() {
        let buf = HEADER_BYTES.to_vec(); // total length says 76
        assert!(matches!(
            Ipv4Packet::new_checked(&buf[..]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            Ipv4Packet::new_checked(&buf[..10]),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn impossible_len_is_error() {
        let mut buf = HEADER_BYTES.to_vec();
        buf[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..]),
            Err(Error::BadIpv4HeaderLen(4))
        );
        let mut buf = HEADER_BYTES.to_vec();
        buf[3] = 10;
        assert!(matches!(
            Ipv4Packet::new_checked(&buf[..]),
            Err(Error::BadIpv4TotalLen { .. })
        ));
    }

    #[test]
    fn emit_roundtrip() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: 6,
            payload_len: 8,
            hop_limit: 64,
            ident: 7,
        };
        let mut buf = [0xa5u8; 28];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]))
            .unwrap();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p).unwrap(), repr);
    }
}

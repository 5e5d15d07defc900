// SPDX-License-Identifier: MIT OR Apache-2.0
//! Zero-copy packet views and owned representations (smoltcp style).
//!
//! Every protocol has two levels:
//!
//! * a *view* (`Ipv4Packet<T>`, `Ipv6Packet<T>`, `TcpPacket<T>`, `AoOption<T>`) that wraps a
//!   buffer `T: AsRef<[u8]>` and reads or writes fields in place;
//! * a *representation* (`Ipv4Repr`, `Ipv6Repr`, `TcpRepr<'a>`, `AoOptionRepr<'a>`) with
//!   public fields, `parse`, `buffer_len` and `emit`.
//!
//! The contract, as in smoltcp:
//!
//! * `new_checked` runs `check_len`; once it succeeds **no accessor panics**. Use it for
//!   untrusted bytes. Arbitrary input never panics; every malformed input is a typed
//!   [`Error`].
//! * `new_unchecked` is for emitting into a buffer of exactly `buffer_len()` bytes; `emit`
//!   never panics in that case.
//!
//! Field offsets live in one private `field` table per protocol.
//!
//! [`SegmentRef`] ties the layers together: it finds the TCP segment in an IPv4 or IPv6
//! packet (walking IPv6 extension headers) and carries the addresses needed for the
//! pseudo-header of RFC 5925 §5.1.
//!
//! ```
//! use tcpao_refimpl::wire::{SegmentRef, TcpPacket};
//! // IPv4 header (20 bytes) + TCP header without options (20 bytes), SYN from port 1 to 179.
//! let mut pkt = [0u8; 40];
//! pkt[0] = 0x45; pkt[3] = 40; pkt[8] = 64; pkt[9] = 6;
//! pkt[12..16].copy_from_slice(&[10, 0, 0, 1]); pkt[16..20].copy_from_slice(&[10, 0, 0, 2]);
//! pkt[20..24].copy_from_slice(&[0, 1, 0, 179]); pkt[32] = 0x50; pkt[33] = 0x02;
//! let seg = SegmentRef::parse(&pkt).unwrap();
//! let tcp = TcpPacket::new_checked(seg.tcp).unwrap();
//! assert_eq!(tcp.dst_port(), 179);
//! assert!(tcp.syn());
//! // Truncated input is an error, not a panic.
//! assert!(SegmentRef::parse(&pkt[..30]).is_err());
//! ```

use core::net::IpAddr;
use core::ops::Range;

mod ao;
mod checksum;
mod ipv4;
mod ipv6;
mod tcp;

pub use ao::{AoOption, AoOptionRepr, TCPOPT_AO};
pub use checksum::{pseudo_header_sum, tcp_checksum};
pub use ipv4::{HEADER_LEN as IPV4_HEADER_LEN, Ipv4Packet, Ipv4Repr};
pub use ipv6::{
    FRAGMENT_HEADER_LEN as IPV6_FRAGMENT_HEADER_LEN, HEADER_LEN as IPV6_HEADER_LEN, Ipv6Fragment,
    Ipv6Packet, Ipv6Repr,
};
pub use tcp::{
    AuthOptions, HEADER_LEN as TCP_HEADER_LEN, MAX_OPTIONS_LEN, TCPOPT_EOL, TCPOPT_MD5SIG,
    TCPOPT_MSS, TCPOPT_NOP, TCPOPT_SACK, TCPOPT_SACK_PERM, TCPOPT_TS, TCPOPT_WS, TcpFlags,
    TcpOption, TcpOptions, TcpPacket, TcpRepr, build_options,
};

/// A byte range inside a header.
pub(crate) type Field = Range<usize>;

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;

/// Why a packet could not be parsed. Every malformed input maps to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The buffer is shorter than a header or a length field says.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which structure was cut short.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The IP version nibble is neither 4 nor 6 (or not the one the view expects).
    #[error("bad IP version {0}")]
    BadIpVersion(u8),
    /// IPv4 IHL below 5 words.
    #[error("bad IPv4 header length {0} (in 32-bit words, minimum 5)")]
    BadIpv4HeaderLen(u8),
    /// IPv4 total length smaller than the header.
    #[error("IPv4 total length {total} is smaller than the header length {header}")]
    BadIpv4TotalLen {
        /// The total length field.
        total: usize,
        /// The header length from IHL.
        header: usize,
    },
    /// The packet is a fragment (IPv4 MF/offset, or an IPv6 fragment header).
    #[error("IP fragment: TCP-AO needs a reassembled segment")]
    Fragment,
    /// The upper-layer protocol is not TCP.
    #[error("upper-layer protocol {0} is not TCP")]
    NotTcp(u8),
    /// An IPv6 next header this parser does not know how to skip (e.g. ESP).
    #[error("unknown or unsupported IPv6 extension header {0}")]
    UnknownNextHeader(u8),
    /// IPv6 addresses given with IPv4 ones (or the reverse).
    #[error("source and destination address families differ")]
    AddressFamilyMismatch,
    /// The TCP data offset is below 5 words.
    #[error("bad TCP data offset {0} (in 32-bit words, minimum 5)")]
    BadDataOffset(u8),
    /// A TCP option length byte is too small, or wrong for its kind.
    #[error("TCP option kind {kind} has invalid length {len}")]
    BadOptionLength {
        /// Option kind.
        kind: u8,
        /// Length byte found.
        len: u8,
    },
    /// A TCP option runs past the end of the TCP header.
    #[error("TCP option kind {kind} runs past the end of the header")]
    OptionOverflow {
        /// Option kind.
        kind: u8,
    },
    /// More than one authentication option (two TCP-AO, two TCP-MD5, or one of each;
    /// RFC 5925 §2.2 and §2.4).
    #[error("more than one TCP-AO/TCP-MD5 option in one segment")]
    DuplicateAuthOption,
    /// The option view found another kind than it expects.
    #[error("expected TCP option kind {expected}, found {found}")]
    WrongOptionKind {
        /// Expected kind.
        expected: u8,
        /// Kind found.
        found: u8,
    },
    /// TCP options do not fit the 40 bytes a TCP header can hold.
    #[error("TCP options need {0} bytes, at most 40 fit")]
    OptionsTooLong(usize),
    /// A length does not fit the field that must carry it.
    #[error("length {0} does not fit the header field")]
    LengthOverflow(usize),
    /// IP fragments must carry a positive multiple of 8 bytes (RFC 791 §3.1, RFC 8200 §4.5).
    #[error("fragment size {0} is not a positive multiple of 8")]
    FragmentSize(usize),
}

/// Result type of the wire layer.
pub type Result<T> = core::result::Result<T, Error>;

/// Check that `have >= need`, naming the structure in the error.
pub(crate) fn need(what: &'static str, need: usize, have: usize) -> Result<()> {
    if have < need {
        Err(Error::Truncated { what, need, have })
    } else {
        Ok(())
    }
}

/// A TCP segment located inside an IP packet: the addresses for the pseudo-header and the
/// TCP bytes (header, options, payload) as the IP length fields delimit them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRef<'a> {
    /// IP source address.
    pub src: IpAddr,
    /// IP destination address.
    pub dst: IpAddr,
    /// TCP header, options and payload. Its length is the TCP length of the pseudo-header.
    pub tcp: &'a [u8],
    /// Offset of `tcp` inside the IP packet that was parsed (0 for [`SegmentRef::new`]).
    pub tcp_offset: usize,
}

impl<'a> SegmentRef<'a> {
    /// Pair a TCP segment with its addresses. Checks that the TCP header is well formed
    /// ([`TcpPacket::check_len`]) and that both addresses are of the same family.
    ///
    /// # Errors
    /// [`Error::AddressFamilyMismatch`] or a TCP header error.
    pub fn new(src: IpAddr, dst: IpAddr, tcp: &'a [u8]) -> Result<Self> {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(Error::AddressFamilyMismatch);
        }
        TcpPacket::new_checked(tcp)?;
        Ok(SegmentRef {
            src,
            dst,
            tcp,
            tcp_offset: 0,
        })
    }

    /// Find the TCP segment in an IPv4 or IPv6 packet (starting with the IP header).
    ///
    /// Trailing bytes beyond the IP length (link-layer padding) are ignored. IPv6
    /// extension headers are skipped (RFC 8200 §4); fragments are rejected.
    ///
    /// # Errors
    /// Any malformation of the IP or TCP header, a fragment, or a non-TCP packet.
    pub fn parse(packet: &'a [u8]) -> Result<Self> {
        need("IP header", 1, packet.len())?;
        match packet[0] >> 4 {
            4 => {
                let ip = Ipv4Packet::new_checked(packet)?;
                if ip.more_frags() || ip.frag_offset() != 0 {
                    return Err(Error::Fragment);
                }
                if ip.protocol() != IPPROTO_TCP {
                    return Err(Error::NotTcp(ip.protocol()));
                }
                let start = ip.header_len();
                let end = ip.total_len();
                let tcp = &packet[start..end];
                TcpPacket::new_checked(tcp)?;
                Ok(SegmentRef {
                    src: ip.src_addr().into(),
                    dst: ip.dst_addr().into(),
                    tcp,
                    tcp_offset: start,
                })
            }
            6 => {
                let ip = Ipv6Packet::new_checked(packet)?;
                let (proto, off) = ip.upper_layer()?;
                if proto != IPPROTO_TCP {
                    return Err(Error::NotTcp(proto));
                }
                let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
                let tcp = &packet[off..end];
                TcpPacket::new_checked(tcp)?;
                Ok(SegmentRef {
                    src: ip.src_addr().into(),
                    dst: ip.dst_addr().into(),
                    tcp,
                    tcp_offset: off,
                })
            }
            v => Err(Error::BadIpVersion(v)),
        }
    }

    /// The TCP header view of this segment.
    pub fn tcp_packet(&self) -> TcpPacket<&'a [u8]> {
        TcpPacket::new_unchecked(self.tcp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_packet(flags_frag: u16, proto: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[3] = 40;
        p[6..8].copy_from_slice(&flags_frag.to_be_bytes());
        p[8] = 64;
        p[9] = proto;
        p[32] = 0x50;
        p
    }

    #[test]
    fn segment_ref_rejects_fragments_and_non_tcp() {
        assert!(SegmentRef::parse(&v4_packet(0x4000, 6)).is_ok());
        assert_eq!(
            SegmentRef::parse(&v4_packet(0x2000, 6)),
            Err(Error::Fragment)
        );
        assert_eq!(
            SegmentRef::parse(&v4_packet(0x0001, 6)),
            Err(Error::Fragment)
        );
        assert_eq!(SegmentRef::parse(&v4_packet(0, 17)), Err(Error::NotTcp(17)));
        let mut p = v4_packet(0, 6);
        p[0] = 0x55;
        assert_eq!(SegmentRef::parse(&p), Err(Error::BadIpVersion(5)));
        assert!(matches!(
            SegmentRef::parse(&[]),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn segment_ref_ignores_link_padding() {
        let mut p = v4_packet(0, 6);
        p.extend_from_slice(&[0xee; 6]);
        let seg = SegmentRef::parse(&p).unwrap();
        assert_eq!(seg.tcp.len(), 20);
        assert_eq!(seg.tcp_offset, 20);
    }

    #[test]
    fn segment_ref_new_checks_families() {
        let t = &v4_packet(0, 6)[20..];
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        assert_eq!(SegmentRef::new(a, b, t), Err(Error::AddressFamilyMismatch));
    }
}

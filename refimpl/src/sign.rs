// SPDX-License-Identifier: MIT OR Apache-2.0
//! Building signed segments (RFC 5925 §5.1, RFC 2385) and re-signing/tampering helpers.
//!
//! [`build_segment`] emits a complete IPv4 or IPv6 packet: IP header, TCP header, the
//! authentication option first (as Linux places it; a TCP-AO option whose MAC is not a
//! multiple of 4 bytes is followed by NOP padding, a TCP-MD5 option is preceded by two
//! NOPs), then the caller's options (padded with EOL), then the payload. The MAC is
//! computed over the finished segment and the TCP checksum (and IPv4 header checksum)
//! are filled last, so they are correct.
//!
//! [`sign_in_place`] and [`sign_md5_in_place`] (re)compute the MAC of an existing packet
//! in place, and [`flip_bit`]/[`fill_tcp_checksum`] help build broken segments for tests.

use core::net::IpAddr;

use crate::error::{Error, Result};
use crate::kdf::{Connection, TrafficKey, TrafficKeys};
use crate::mac::compute_mac_at;
use crate::md5::md5_digest;
use crate::mkt::Mkt;
use crate::sne::SneTracker;
use crate::wire::{
    self, IPPROTO_TCP, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, MAX_OPTIONS_LEN, SegmentRef,
    TCPOPT_AO, TCPOPT_MD5SIG, TCPOPT_NOP, TcpFlags, TcpPacket, TcpRepr,
};

/// TCP-AO signing parameters for one segment.
#[derive(Debug, Clone, Copy)]
pub struct AoSign<'a> {
    /// Traffic key (its algorithm decides the MAC).
    pub key: &'a TrafficKey,
    /// MAC length in bytes (1..=16).
    pub mac_len: usize,
    /// KeyID to put in the option (the sender's SendID).
    pub key_id: u8,
    /// RNextKeyID to put in the option.
    pub rnext_key_id: u8,
    /// Sequence number extension of the segment (RFC 5925 §6.2).
    pub sne: u32,
    /// Whether options other than TCP-AO are covered (RFC 5925 §3.1 TCP option flag).
    pub include_options: bool,
}

impl<'a> AoSign<'a> {
    /// Parameters from an MKT: its MAC length, SendID as KeyID, RecvID as RNextKeyID and
    /// its option flag.
    pub fn from_mkt(mkt: &Mkt, key: &'a TrafficKey, sne: u32) -> Self {
        AoSign {
            key,
            mac_len: mkt.mac_len(),
            key_id: mkt.send_id,
            rnext_key_id: mkt.recv_id,
            sne,
            include_options: mkt.include_options,
        }
    }
}

/// How a built segment is authenticated.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// No authentication option.
    None,
    /// TCP-AO (RFC 5925).
    Ao(AoSign<'a>),
    /// TCP-MD5 (RFC 2385) with this key.
    Md5(&'a [u8]),
}

/// IP header parameters of a built segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpHeader {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (same family as `src`).
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub hop_limit: u8,
    /// IPv4 identification (ignored for IPv6).
    pub ident: u16,
}

impl IpHeader {
    /// Header with TTL 64 and identification 0.
    pub fn new(src: IpAddr, dst: IpAddr) -> Self {
        IpHeader {
            src,
            dst,
            hop_limit: 64,
            ident: 0,
        }
    }
}

/// Build a complete, correctly signed IP packet carrying `tcp`.
///
/// `tcp.options` holds the options besides the authentication option; `build_segment`
/// adds the TCP-AO or TCP-MD5 option in front of them.
///
/// # Errors
/// [`wire::Error::AddressFamilyMismatch`], [`wire::Error::OptionsTooLong`] (all options
/// must fit 40 bytes), [`wire::Error::LengthOverflow`], MAC length errors.
pub fn build_segment(ip: &IpHeader, tcp: &TcpRepr<'_>, auth: &Auth<'_>) -> Result<Vec<u8>> {
    if ip.src.is_ipv4() != ip.dst.is_ipv4() {
        return Err(wire::Error::AddressFamilyMismatch.into());
    }
    let mut opts = Vec::with_capacity(MAX_OPTIONS_LEN);
    match auth {
        Auth::None => {}
        Auth::Ao(a) => {
            a.key.algorithm().check_mac_len(a.mac_len)?;
            // mac_len <= 16, so the option length fits a byte.
            opts.extend_from_slice(&[TCPOPT_AO, (4 + a.mac_len) as u8, a.key_id, a.rnext_key_id]);
            opts.resize(4 + a.mac_len, 0);
            while opts.len() % 4 != 0 {
                opts.push(TCPOPT_NOP);
            }
        }
        Auth::Md5(_) => {
            opts.extend_from_slice(&[TCPOPT_NOP, TCPOPT_NOP, TCPOPT_MD5SIG, 18]);
            opts.resize(20, 0);
        }
    }
    opts.extend_from_slice(tcp.options);
    let padded = opts.len().div_ceil(4) * 4;
    if padded > MAX_OPTIONS_LEN {
        return Err(wire::Error::OptionsTooLong(padded).into());
    }
    let repr = TcpRepr {
        options: &opts,
        ..*tcp
    };
    let tcp_len = repr.buffer_len();
    let ip_len = match ip.src {
        IpAddr::V4(_) => wire::IPV4_HEADER_LEN,
        IpAddr::V6(_) => wire::IPV6_HEADER_LEN,
    };
    let mut buf = vec![0u8; ip_len + tcp_len];
    match (ip.src, ip.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol: IPPROTO_TCP,
            payload_len: tcp_len,
            hop_limit: ip.hop_limit,
            ident: ip.ident,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]))?,
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: IPPROTO_TCP,
            payload_len: tcp_len,
            hop_limit: ip.hop_limit,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]))?,
        _ => return Err(wire::Error::AddressFamilyMismatch.into()),
    }
    repr.emit(&mut TcpPacket::new_unchecked(&mut buf[ip_len..]))?;
    match auth {
        Auth::None => fill_tcp_checksum(&mut buf)?,
        Auth::Ao(a) => sign_in_place(&mut buf, a)?,
        Auth::Md5(k) => sign_md5_in_place(&mut buf, k)?,
    }
    Ok(buf)
}

/// Compute the TCP-AO MAC of an IP packet that already carries a TCP-AO option with a
/// `mac_len`-byte MAC field, write it into the option (KeyID/RNextKeyID are left as they
/// are) and fix the TCP checksum.
///
/// # Errors
/// [`Error::NoAoOption`], [`Error::MacLenMismatch`], wire errors.
pub fn sign_in_place(packet: &mut [u8], sign: &AoSign<'_>) -> Result<()> {
    let (off, range, tag) = {
        let seg = SegmentRef::parse(packet)?;
        let range = crate::mac::locate_ao(&seg)?;
        let tag = compute_mac_at(
            sign.key,
            sign.mac_len,
            sign.sne,
            &seg,
            &range,
            sign.include_options,
        )?;
        (seg.tcp_offset, range, tag)
    };
    packet[off + range.start + 4..off + range.end].copy_from_slice(tag.as_bytes());
    fill_tcp_checksum(packet)
}

/// Compute the RFC 2385 digest of an IP packet that carries a TCP-MD5 option, write it
/// into the option and fix the TCP checksum.
///
/// # Errors
/// [`Error::NoMd5Option`], wire errors.
pub fn sign_md5_in_place(packet: &mut [u8], key: &[u8]) -> Result<()> {
    let (off, range, digest) = {
        let seg = SegmentRef::parse(packet)?;
        let range = seg
            .tcp_packet()
            .auth_options()?
            .md5
            .ok_or(Error::NoMd5Option)?;
        (seg.tcp_offset, range, md5_digest(&seg, key)?)
    };
    packet[off + range.start + 2..off + range.end].copy_from_slice(&digest);
    fill_tcp_checksum(packet)
}

/// Recompute the TCP checksum of an IP packet in place (RFC 9293 §3.1).
///
/// # Errors
/// Wire errors when the packet does not parse.
pub fn fill_tcp_checksum(packet: &mut [u8]) -> Result<()> {
    let (src, dst, off, end) = {
        let seg = SegmentRef::parse(packet)?;
        (
            seg.src,
            seg.dst,
            seg.tcp_offset,
            seg.tcp_offset + seg.tcp.len(),
        )
    };
    TcpPacket::new_unchecked(&mut packet[off..end]).fill_checksum(&src, &dst);
    Ok(())
}

/// Flip bit `bit` (0 = most significant bit of byte 0) of `packet`. Out-of-range bits are
/// ignored. Useful to tamper with signed segments in tests.
pub fn flip_bit(packet: &mut [u8], bit: usize) {
    if let Some(b) = packet.get_mut(bit / 8) {
        *b ^= 0x80 >> (bit % 8);
    }
}

/// Signs the segments one end of a connection sends: picks the SYN or other traffic key
/// (RFC 5925 §5.2), tracks the send SNE (RFC 5925 §6.2) and builds packets.
#[derive(Debug, Clone)]
pub struct ConnectionSigner {
    conn: Connection,
    mkt: Mkt,
    keys: TrafficKeys,
    sne: SneTracker,
    /// RNextKeyID to announce (defaults to the MKT's RecvID).
    pub rnext_key_id: u8,
    /// IP TTL / hop limit of built packets.
    pub hop_limit: u8,
}

impl ConnectionSigner {
    /// A signer for `conn.local` sending to `conn.remote` with `mkt`.
    ///
    /// # Errors
    /// [`Error::AddressFamilyMismatch`].
    pub fn new(mkt: Mkt, conn: Connection) -> Result<Self> {
        let keys = TrafficKeys::derive(&mkt, &conn)?;
        Ok(ConnectionSigner {
            conn,
            rnext_key_id: mkt.recv_id,
            mkt,
            keys,
            sne: SneTracker::new(conn.local_isn),
            hop_limit: 64,
        })
    }

    /// Start the send SNE tracker at `next_seq` with `sne` (e.g. a connection repaired
    /// just below 2^32).
    pub fn set_sne_state(&mut self, next_seq: u32, sne: u32) {
        self.sne = SneTracker::with_state(next_seq, sne);
    }

    /// The traffic keys.
    pub fn keys(&self) -> &TrafficKeys {
        &self.keys
    }

    /// Build the signed packet for `tcp` (ports are taken from `tcp` as given) and advance
    /// the send SNE. Returns the packet and the SNE used.
    ///
    /// # Errors
    /// As [`build_segment`].
    pub fn sign(&mut self, tcp: &TcpRepr<'_>) -> Result<(Vec<u8>, u32)> {
        let syn_only = tcp.flags.contains(TcpFlags::SYN) && !tcp.flags.contains(TcpFlags::ACK);
        let seg_len = tcp.payload.len()
            + usize::from(tcp.flags.contains(TcpFlags::SYN))
            + usize::from(tcp.flags.contains(TcpFlags::FIN));
        let sne = self.sne.sne_for(tcp.seq_number);
        let mut a = AoSign::from_mkt(&self.mkt, self.keys.for_send(syn_only), sne);
        a.rnext_key_id = self.rnext_key_id;
        let ip = IpHeader {
            hop_limit: self.hop_limit,
            ..IpHeader::new(self.conn.local.ip(), self.conn.remote.ip())
        };
        let pkt = build_segment(&ip, tcp, &Auth::Ao(a))?;
        self.sne.observe(tcp.seq_number, seg_len as u32);
        Ok((pkt, sne))
    }
}

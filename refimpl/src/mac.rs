// SPDX-License-Identifier: MIT OR Apache-2.0
//! The TCP-AO MAC (RFC 5925 §5.1, RFC 5926 §3.2): message construction, compute, verify.
//!
//! The message is, in order (RFC 5925 §5.1):
//!
//! 1. the SNE, 4 bytes big-endian (§6.2);
//! 2. the pseudo-header: IPv4 `src | dst | 0 | 6 | TCP length(2)` (12 bytes) or IPv6
//!    `src | dst | TCP length(4) | 0 0 0 | 6` (40 bytes), with the real TCP length;
//! 3. the TCP header with checksum zeroed, then either every option as it appears
//!    (options included) or only the TCP-AO option (options excluded, other options left
//!    out, not zero-filled), the MAC bytes zeroed in both cases;
//! 4. the payload.
//!
//! The pieces are fed into the keyed MAC state incrementally; nothing is copied except
//! the at most 104 header bytes assembled on the stack. Verification is constant time
//! (`verify_truncated_left`).

use core::fmt;
use core::net::IpAddr;
use core::ops::Range;

use digest::Mac;

use crate::algo::MAX_MAC_LEN;
use crate::error::{Error, Result};
use crate::kdf::{MacState, TrafficKey};
use crate::wire::{self, IPPROTO_TCP, SegmentRef, TcpPacket};

/// A computed MAC, 1 to 16 bytes. Not secret; `Debug` shows hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MacTag {
    buf: [u8; MAX_MAC_LEN],
    len: usize,
}

impl MacTag {
    /// The MAC bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl AsRef<[u8]> for MacTag {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for MacTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacTag(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// Feed the RFC 5925 §5.1 message for `seg` into `sink`.
///
/// `ao` is the byte range of the TCP-AO option inside `seg.tcp` (as found by
/// [`TcpPacket::auth_options`]). At most three calls are made: header bytes (SNE,
/// pseudo-header, TCP header and covered options), then the payload.
pub(crate) fn feed_message(
    sne: u32,
    seg: &SegmentRef<'_>,
    ao: &Range<usize>,
    include_options: bool,
    mut sink: impl FnMut(&[u8]),
) -> Result<()> {
    let tcp = seg.tcp;
    let tcp_len = tcp.len();
    // SNE (4) + IPv6 pseudo-header (40) + TCP header with options (60) = 104 bytes max.
    let mut buf = [0u8; 104];
    buf[..4].copy_from_slice(&sne.to_be_bytes());
    let mut n = 4;
    match (seg.src, seg.dst) {
        // RFC 5925 §5.1 (2): IPv4 pseudo-header, RFC 9293 §3.1.
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = u16::try_from(tcp_len).map_err(|_| wire::Error::LengthOverflow(tcp_len))?;
            buf[4..8].copy_from_slice(&s.octets());
            buf[8..12].copy_from_slice(&d.octets());
            buf[12] = 0;
            buf[13] = IPPROTO_TCP;
            buf[14..16].copy_from_slice(&len.to_be_bytes());
            n += 12;
        }
        // RFC 5925 §5.1 (2): IPv6 pseudo-header, RFC 8200 §8.1.
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let len = u32::try_from(tcp_len).map_err(|_| wire::Error::LengthOverflow(tcp_len))?;
            buf[4..20].copy_from_slice(&s.octets());
            buf[20..36].copy_from_slice(&d.octets());
            buf[36..40].copy_from_slice(&len.to_be_bytes());
            buf[40..43].fill(0);
            buf[43] = IPPROTO_TCP;
            n += 40;
        }
        _ => return Err(wire::Error::AddressFamilyMismatch.into()),
    }
    let pkt = TcpPacket::new_checked(tcp)?;
    let hl = pkt.header_len();
    if ao.start < wire::TCP_HEADER_LEN || ao.end > hl || ao.end < ao.start + 4 {
        return Err(Error::NoAoOption);
    }
    // RFC 5925 §5.1 (3): fixed header with the checksum zeroed.
    let h = n;
    buf[h..h + 20].copy_from_slice(&tcp[..20]);
    buf[h + 16] = 0;
    buf[h + 17] = 0;
    n += 20;
    if include_options {
        // Every option byte as it appears, the MAC zeroed.
        let opts = &tcp[20..hl];
        buf[n..n + opts.len()].copy_from_slice(opts);
        let mac = h + ao.start + 4..h + ao.end;
        buf[mac].fill(0);
        n += opts.len();
    } else {
        // Only the TCP-AO option (kind, length, KeyID, RNextKeyID, zeroed MAC).
        buf[n..n + 4].copy_from_slice(&tcp[ao.start..ao.start + 4]);
        let mac_len = ao.len() - 4;
        buf[n + 4..n + 4 + mac_len].fill(0);
        n += ao.len();
    }
    sink(&buf[..n]);
    // RFC 5925 §5.1 (4): payload.
    sink(&tcp[hl..]);
    Ok(())
}

/// The complete MAC input for `seg` as one buffer (for tests and debugging; the MAC
/// functions never build it).
///
/// # Errors
/// [`Error::NoAoOption`] when the segment has no TCP-AO option; wire errors for
/// malformed options.
pub fn mac_message(sne: u32, seg: &SegmentRef<'_>, include_options: bool) -> Result<Vec<u8>> {
    let ao = locate_ao(seg)?;
    let mut out = Vec::with_capacity(64 + seg.tcp.len());
    feed_message(sne, seg, &ao, include_options, |b| out.extend_from_slice(b))?;
    Ok(out)
}

/// Byte range of the single TCP-AO option in the segment.
pub(crate) fn locate_ao(seg: &SegmentRef<'_>) -> Result<Range<usize>> {
    seg.tcp_packet().auth_options()?.ao.ok_or(Error::NoAoOption)
}

fn run<M: Mac + Clone>(
    m: &M,
    sne: u32,
    seg: &SegmentRef<'_>,
    ao: &Range<usize>,
    include: bool,
) -> Result<M> {
    let mut m = m.clone();
    feed_message(sne, seg, ao, include, |b| m.update(b))?;
    Ok(m)
}

fn full_mac(
    key: &TrafficKey,
    sne: u32,
    seg: &SegmentRef<'_>,
    ao: &Range<usize>,
    include: bool,
    out: &mut [u8; 32],
) -> Result<usize> {
    let n = key.algorithm().digest_len();
    match key.state() {
        MacState::HmacSha1(m) => {
            out[..n].copy_from_slice(&run(m, sne, seg, ao, include)?.finalize().into_bytes());
        }
        MacState::AesCmac128(m) => {
            out[..n].copy_from_slice(&run(m, sne, seg, ao, include)?.finalize().into_bytes());
        }
        MacState::HmacSha256(m) => {
            out[..n].copy_from_slice(&run(m, sne, seg, ao, include)?.finalize().into_bytes());
        }
    }
    Ok(n)
}

/// Compute the MAC of a segment that carries a TCP-AO option (its MAC field may hold
/// anything; it is zeroed in the MAC input), truncated to `mac_len` bytes.
///
/// # Errors
/// [`Error::NoAoOption`]; [`Error::MacLenMismatch`] when the option's MAC field is not
/// `mac_len` bytes; [`Error::MacLenOutOfRange`]/[`Error::MacLenTooLong`] for a bad
/// `mac_len`; wire errors for malformed options.
pub fn compute_mac(
    key: &TrafficKey,
    mac_len: usize,
    sne: u32,
    seg: &SegmentRef<'_>,
    include_options: bool,
) -> Result<MacTag> {
    key.algorithm().check_mac_len(mac_len)?;
    let ao = locate_ao(seg)?;
    compute_mac_at(key, mac_len, sne, seg, &ao, include_options)
}

pub(crate) fn compute_mac_at(
    key: &TrafficKey,
    mac_len: usize,
    sne: u32,
    seg: &SegmentRef<'_>,
    ao: &Range<usize>,
    include_options: bool,
) -> Result<MacTag> {
    key.algorithm().check_mac_len(mac_len)?;
    if ao.len() - 4 != mac_len {
        return Err(Error::MacLenMismatch {
            expected: mac_len,
            found: ao.len() - 4,
        });
    }
    let mut full = zeroize::Zeroizing::new([0u8; 32]);
    full_mac(key, sne, seg, ao, include_options, &mut full)?;
    let mut buf = [0u8; MAX_MAC_LEN];
    buf[..mac_len].copy_from_slice(&full[..mac_len]);
    Ok(MacTag { buf, len: mac_len })
}

/// Verify the MAC carried in the segment's TCP-AO option, in constant time. The MAC
/// length is the option's; a MAC longer than the algorithm's output never verifies.
///
/// Returns `Ok(true)` if the MAC is right, `Ok(false)` if it is wrong.
///
/// # Errors
/// [`Error::NoAoOption`]; wire errors for malformed options.
pub fn verify_mac(
    key: &TrafficKey,
    sne: u32,
    seg: &SegmentRef<'_>,
    include_options: bool,
) -> Result<bool> {
    let ao = locate_ao(seg)?;
    verify_mac_at(key, sne, seg, &ao, include_options)
}

pub(crate) fn verify_mac_at(
    key: &TrafficKey,
    sne: u32,
    seg: &SegmentRef<'_>,
    ao: &Range<usize>,
    include_options: bool,
) -> Result<bool> {
    let tag = &seg.tcp[ao.start + 4..ao.end];
    Ok(match key.state() {
        MacState::HmacSha1(m) => run(m, sne, seg, ao, include_options)?
            .verify_truncated_left(tag)
            .is_ok(),
        MacState::AesCmac128(m) => run(m, sne, seg, ao, include_options)?
            .verify_truncated_left(tag)
            .is_ok(),
        MacState::HmacSha256(m) => run(m, sne, seg, ao, include_options)?
            .verify_truncated_left(tag)
            .is_ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::Algorithm;
    use core::net::Ipv4Addr;

    fn segment_with_options() -> Vec<u8> {
        // TCP header: data offset 9 (36 bytes): MSS(4) NOP NOP(2) AO len 6 (mac 2) + 2 EOL... keep simple
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&1000u16.to_be_bytes());
        t[2..4].copy_from_slice(&179u16.to_be_bytes());
        t[12] = 8 << 4; // 32 bytes
        t[13] = 0x18;
        t[16] = 0xab; // checksum, must be zeroed in the MAC input
        t[17] = 0xcd;
        t.extend_from_slice(&[2, 4, 5, 0xb4]); // MSS
        t.extend_from_slice(&[1, 1]); // NOP NOP
        t.extend_from_slice(&[29, 6, 7, 8, 0xee, 0xff]); // AO, 2-byte MAC
        t.extend_from_slice(b"data");
        t
    }

    #[test]
    fn message_layout_ipv4_included_and_excluded() {
        let t = segment_with_options();
        let a = IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4));
        let b = IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8));
        let seg = SegmentRef::new(a, b, &t).unwrap();
        let m = mac_message(0x0102_0304, &seg, true).unwrap();
        let mut expect = vec![1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 0, 6, 0, 36];
        let mut hdr = t[..32].to_vec();
        hdr[16] = 0;
        hdr[17] = 0;
        hdr[30] = 0;
        hdr[31] = 0;
        expect.extend_from_slice(&hdr);
        expect.extend_from_slice(b"data");
        assert_eq!(m, expect);
        let m = mac_message(0x0102_0304, &seg, false).unwrap();
        let mut expect = vec![1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 0, 6, 0, 36];
        expect.extend_from_slice(&hdr[..20]);
        expect.extend_from_slice(&[29, 6, 7, 8, 0, 0]); // only AO, MAC zeroed
        expect.extend_from_slice(b"data");
        assert_eq!(m, expect);
    }

    #[test]
    fn compute_equals_mac_over_message() {
        let t = segment_with_options();
        let seg = SegmentRef::new("::1".parse().unwrap(), "::2".parse().unwrap(), &t).unwrap();
        let key = TrafficKey::new(Algorithm::HmacSha1, &[7; 20]).unwrap();
        let msg = mac_message(5, &seg, true).unwrap();
        // IPv6 pseudo-header: ::1, ::2, length 36 (4 bytes), 3 zero bytes, 6.
        assert_eq!(msg[19], 1);
        assert_eq!(msg[35], 2);
        assert_eq!(&msg[36..44], &[0, 0, 0, 36, 0, 0, 0, 6]);
        let direct = <hmac::Hmac<sha1::Sha1> as digest::KeyInit>::new_from_slice(&[7; 20])
            .unwrap()
            .chain_update(&msg)
            .finalize()
            .into_bytes();
        let tag = compute_mac(&key, 2, 5, &seg, true).unwrap();
        assert_eq!(tag.as_bytes(), &direct[..2]);
        assert!(matches!(
            compute_mac(&key, 12, 5, &seg, true),
            Err(Error::MacLenMismatch { .. })
        ));
    }
}

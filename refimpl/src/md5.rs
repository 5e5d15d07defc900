// SPDX-License-Identifier: MIT OR Apache-2.0
//! TCP-MD5 signatures (RFC 2385 §2.0), as Linux computes them.
//!
//! The digest is MD5 over, in order:
//!
//! 1. the pseudo-header: IPv4 `src | dst | 0 | 6 | segment length(2)`; for IPv6 Linux uses
//!    the RFC 8200 pseudo-header `src | dst | length(4) | 0 0 0 | 6`;
//! 2. the 20-byte TCP header with the checksum zeroed, **no options**;
//! 3. the payload;
//! 4. the key.
//!
//! The option is kind 19, length 18, followed by the 16-byte digest. There is no KDF, no
//! ISN and no SNE: any single segment can be checked.

use core::net::IpAddr;

use digest::Digest;
use md5::Md5;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::wire::{self, IPPROTO_TCP, SegmentRef, TCP_HEADER_LEN};

/// Length of the TCP-MD5 digest.
pub const MD5_DIGEST_LEN: usize = 16;

/// Compute the RFC 2385 digest of `seg` under `key`. The segment's options (including any
/// MD5 option and its contents) are not covered.
///
/// # Errors
/// Wire errors for a malformed TCP header or mixed address families.
pub fn md5_digest(seg: &SegmentRef<'_>, key: &[u8]) -> Result<[u8; MD5_DIGEST_LEN]> {
    let tcp = seg.tcp_packet();
    tcp.check_len()?;
    let len = seg.tcp.len();
    let mut h = Md5::new();
    match (seg.src, seg.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let l = u16::try_from(len).map_err(|_| wire::Error::LengthOverflow(len))?;
            h.update(s.octets());
            h.update(d.octets());
            h.update([0, IPPROTO_TCP]);
            h.update(l.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let l = u32::try_from(len).map_err(|_| wire::Error::LengthOverflow(len))?;
            h.update(s.octets());
            h.update(d.octets());
            h.update(l.to_be_bytes());
            h.update([0, 0, 0, IPPROTO_TCP]);
        }
        _ => return Err(wire::Error::AddressFamilyMismatch.into()),
    }
    let mut hdr = [0u8; TCP_HEADER_LEN];
    hdr.copy_from_slice(&seg.tcp[..TCP_HEADER_LEN]);
    hdr[16] = 0;
    hdr[17] = 0;
    h.update(hdr);
    h.update(&seg.tcp[tcp.header_len()..]);
    h.update(key);
    Ok(h.finalize().into())
}

/// Verify the segment's TCP-MD5 option in constant time. `Ok(false)` means a wrong digest.
///
/// # Errors
/// [`Error::NoMd5Option`]; wire errors for malformed options.
pub fn verify_md5(seg: &SegmentRef<'_>, key: &[u8]) -> Result<bool> {
    let r = seg
        .tcp_packet()
        .auth_options()?
        .md5
        .ok_or(Error::NoMd5Option)?;
    let got = &seg.tcp[r.start + 2..r.end];
    let want = md5_digest(seg, key)?;
    Ok(bool::from(want.ct_eq(got)))
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Internet checksum (RFC 1071) and the TCP pseudo-header sums (RFC 9293 §3.1, RFC 8200 §8.1).
//!
//! TCP-AO verification never depends on these: RFC 9235's IPv4 vectors carry wrong
//! checksums on purpose, and the MAC covers the header with the checksum zeroed.

use core::net::IpAddr;

use super::IPPROTO_TCP;

/// Add `data` as big-endian 16-bit words to `acc` (odd tail padded with zero).
pub(crate) fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        // Fold early so the accumulator never overflows, whatever the length.
        if acc & 0x8000_0000 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [b] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*b) << 8);
    }
    acc
}

/// Fold a 32-bit accumulator into a 16-bit ones' complement sum.
pub(crate) fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves acc <= 0xffff.
    acc as u16
}

/// Ones' complement sum of the TCP pseudo-header for `tcp_len` bytes of TCP
/// (IPv4 layout for IPv4 addresses, IPv6 layout otherwise). Mixed families sum the
/// bytes of both addresses (callers check families first).
pub fn pseudo_header_sum(src: &IpAddr, dst: &IpAddr, tcp_len: usize) -> u32 {
    let mut acc = 0;
    acc = match src {
        IpAddr::V4(a) => sum(acc, &a.octets()),
        IpAddr::V6(a) => sum(acc, &a.octets()),
    };
    acc = match dst {
        IpAddr::V4(a) => sum(acc, &a.octets()),
        IpAddr::V6(a) => sum(acc, &a.octets()),
    };
    // Length as 32 bits covers both the IPv4 16-bit and the IPv6 32-bit length fields.
    let len = tcp_len as u64;
    acc = acc.wrapping_add(((len >> 16) & 0xffff) as u32);
    acc = acc.wrapping_add((len & 0xffff) as u32);
    acc.wrapping_add(u32::from(IPPROTO_TCP))
}

/// The TCP checksum of `tcp` (header with its checksum field as it is, options, payload)
/// under the pseudo-header of `src`/`dst`. A segment whose checksum field is correct
/// yields 0 here; with the field zeroed this is the value to store.
pub fn tcp_checksum(src: &IpAddr, dst: &IpAddr, tcp: &[u8]) -> u16 {
    !fold(sum(pseudo_header_sum(src, dst, tcp.len()), tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
    }

    #[test]
    fn odd_length_is_padded() {
        assert_eq!(fold(sum(0, &[0x12])), 0x1200);
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }
}

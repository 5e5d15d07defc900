// SPDX-License-Identifier: MIT OR Apache-2.0
//! The byte stream of a BGP-4 session (RFC 4271) announcing a full IPv4 table, carried over
//! TCP-AO by the hidden `corpus-bulk/ipv4/bgp-full-table` case: the capture interop teams
//! actually take (a BGP session on port 179), for the tcpao-verify benchmark. tshark
//! dissects every message in it, as it would on a real session.
//!
//! Deterministic: OPEN (with the 4-octet AS capability, RFC 6793), KEEPALIVE, then UPDATEs
//! announcing `prefixes` /24s from 1.0.0.0 on, grouped 1 to 24 per UPDATE behind AS paths
//! of 1 to 6 hops (ORIGIN, AS_PATH with 4-octet ASNs, NEXT_HOP, MED), and End-of-RIB (an
//! empty UPDATE, RFC 4724).

use crate::rng::Rng;

/// Message types (RFC 4271 §4.1).
const OPEN: u8 = 1;
const UPDATE: u8 = 2;
const KEEPALIVE: u8 = 4;
/// The largest BGP message (RFC 4271 §4.1).
const MAX_MESSAGE: usize = 4096;

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = 19 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&[0xff; 16]);
    m.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

/// OPEN from `asn` (AS_TRANS in the 2-octet field, the real ASN in the capability) with
/// BGP Identifier `id`, hold time 90 s, plus a KEEPALIVE.
pub fn open_and_keepalive(asn: u32, id: [u8; 4]) -> Vec<u8> {
    let mut body = vec![4];
    body.extend_from_slice(&23_456u16.to_be_bytes()); // AS_TRANS (RFC 6793)
    body.extend_from_slice(&90u16.to_be_bytes());
    body.extend_from_slice(&id);
    // Optional parameters: one Capabilities parameter with Multiprotocol IPv4 unicast and
    // 4-octet AS.
    let caps: [u8; 12] = {
        let a = asn.to_be_bytes();
        [1, 4, 0, 1, 0, 1, 65, 4, a[0], a[1], a[2], a[3]]
    };
    body.push(2 + caps.len() as u8);
    body.extend_from_slice(&[2, caps.len() as u8]);
    body.extend_from_slice(&caps);
    let mut out = message(OPEN, &body);
    out.extend_from_slice(&message(KEEPALIVE, &[]));
    out
}

/// One UPDATE: ORIGIN IGP, AS_PATH `path` (4-octet ASNs), NEXT_HOP `next_hop`, MED `med`,
/// then the encoded prefixes `nlri`.
fn update(path: &[u32], next_hop: [u8; 4], med: u32, nlri: &[u8]) -> Vec<u8> {
    let mut attrs = Vec::with_capacity(64);
    attrs.extend_from_slice(&[0x40, 1, 1, 0]); // ORIGIN IGP
    let seg_len = 2 + 4 * path.len();
    attrs.extend_from_slice(&[0x40, 2, seg_len as u8, 2, path.len() as u8]); // AS_SEQUENCE
    for asn in path {
        attrs.extend_from_slice(&asn.to_be_bytes());
    }
    attrs.extend_from_slice(&[0x40, 3, 4]); // NEXT_HOP
    attrs.extend_from_slice(&next_hop);
    attrs.extend_from_slice(&[0x80, 4, 4]); // MULTI_EXIT_DISC
    attrs.extend_from_slice(&med.to_be_bytes());
    let mut body = Vec::with_capacity(4 + attrs.len() + nlri.len());
    body.extend_from_slice(&0u16.to_be_bytes()); // no withdrawn routes
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(&attrs);
    body.extend_from_slice(nlri);
    message(UPDATE, &body)
}

/// UPDATEs announcing `prefixes` /24s from `local_as` with next hop `next_hop`, then
/// End-of-RIB.
pub fn full_table(local_as: u32, next_hop: [u8; 4], prefixes: u32) -> Vec<u8> {
    let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(prefixes as usize * 8);
    let mut next = 0u32;
    while next < prefixes {
        let group = (1 + rng.below(24) as u32).min(prefixes - next);
        let hops = 1 + rng.below(6) as usize;
        let mut path = vec![local_as];
        for _ in 1..hops {
            path.push(1 + rng.below(400_000) as u32);
        }
        let mut nlri = Vec::with_capacity(group as usize * 4);
        for i in 0..group {
            // 1.0.0.0/24, 1.0.1.0/24, ...
            let net = (1u32 << 24) + ((next + i) << 8);
            let b = net.to_be_bytes();
            nlri.extend_from_slice(&[24, b[0], b[1], b[2]]);
        }
        let m = update(&path, next_hop, rng.below(1000) as u32, &nlri);
        debug_assert!(m.len() <= MAX_MESSAGE);
        out.extend_from_slice(&m);
        next += group;
    }
    out.extend_from_slice(&message(UPDATE, &[0, 0, 0, 0])); // End-of-RIB
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walk a stream of BGP messages: (type, body) each, checking marker and length.
    fn messages(mut s: &[u8]) -> Vec<(u8, &[u8])> {
        let mut v = Vec::new();
        while !s.is_empty() {
            assert!(s.len() >= 19, "a truncated header");
            assert_eq!(&s[..16], &[0xff; 16]);
            let len = usize::from(u16::from_be_bytes([s[16], s[17]]));
            assert!((19..=MAX_MESSAGE).contains(&len), "length {len}");
            v.push((s[18], &s[19..len]));
            s = &s[len..];
        }
        v
    }

    #[test]
    fn open_then_keepalive() {
        let s = open_and_keepalive(65_001, [10, 0, 1, 1]);
        let m = messages(&s);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].0, m[1].0, m[1].1.len()), (OPEN, KEEPALIVE, 0));
        let open = m[0].1;
        assert_eq!(open[0], 4);
        // Optional parameters fill the rest of the OPEN exactly.
        assert_eq!(usize::from(open[9]), open.len() - 10);
        assert_eq!(&open[open.len() - 4..], &65_001u32.to_be_bytes());
    }

    #[test]
    fn the_table_announces_every_prefix_once_in_order() {
        let s = full_table(65_001, [10, 0, 1, 1], 10_000);
        let m = messages(&s);
        let mut want = 0u32;
        for (kind, body) in &m[..m.len() - 1] {
            assert_eq!(*kind, UPDATE);
            assert_eq!(&body[..2], &[0, 0]);
            let attrs = usize::from(u16::from_be_bytes([body[2], body[3]]));
            let mut nlri = &body[4 + attrs..];
            assert!(!nlri.is_empty());
            while !nlri.is_empty() {
                assert_eq!(nlri[0], 24);
                let net = u32::from_be_bytes([nlri[1], nlri[2], nlri[3], 0]);
                assert_eq!(net, (1 << 24) + (want << 8));
                want += 1;
                nlri = &nlri[4..];
            }
        }
        assert_eq!(want, 10_000);
        assert_eq!(m.last(), Some(&(UPDATE, &[0u8, 0, 0, 0][..])));
    }
}

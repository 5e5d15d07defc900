// SPDX-License-Identifier: MIT OR Apache-2.0
//! IP reassembly for the verifier. The TCP-AO MAC covers the whole segment (RFC 5925 §5.1),
//! so a segment that crossed the network as IP fragments can only be checked once its
//! datagram is whole again: IPv4 as RFC 791 §3.2 puts it back together, IPv6 as RFC 8200
//! §4.5 does (the unfragmentable part from the first fragment, the fragment header removed).
//!
//! Fragments of one datagram share (source, destination, identification and, for IPv4, the
//! protocol). Overlapping fragments discard the datagram, as RFC 5722 requires for IPv6 and
//! Linux does for both families; a byte-for-byte repeat of a fragment already held is a
//! duplicate and changes nothing. Memory is bounded: at most [`Reassembler::MAX_PENDING`]
//! datagrams wait for their missing fragments (the oldest is given up first), each at most
//! 65,535 bytes. Every fragment fed ends up in exactly one of [`Reassembler::stats`]' counts.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::wire::{self, IPV6_FRAGMENT_HEADER_LEN, IPV6_HEADER_LEN, Ipv4Packet, Ipv6Packet};

/// What a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// The packet is no fragment: check it as it is.
    NotFragment,
    /// Held until the datagram's other fragments arrive.
    Held,
    /// The fragment completed its datagram: the whole IP packet, made of `fragments`
    /// fragments (this one included).
    Complete {
        /// The reassembled IP packet (no fragment fields, lengths and IPv4 checksum set).
        packet: Vec<u8>,
        /// Fragments it was made of, duplicates included.
        fragments: u64,
    },
    /// The fragment made its datagram invalid; the datagram and the fragments held for it
    /// are given up (counted in [`Stats::discarded`]).
    Discarded(Discard),
}

/// Why a datagram was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Two fragments cover some of the same bytes with different data, or the same bytes
    /// with different lengths (RFC 5722).
    Overlap,
    /// The datagram would pass 65,535 bytes, or two last fragments disagree on its end, or
    /// a fragment reaches past the end the last one set.
    BadLength,
    /// A fragment other than the last is not a multiple of 8 bytes long (RFC 8200 §4.5).
    Unaligned,
}

/// Where the fed fragments went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams reassembled.
    pub datagrams: u64,
    /// Fragments that went into them.
    pub reassembled: u64,
    /// Fragments of datagrams given up ([`Discard`]).
    pub discarded: u64,
    /// Fragments of datagrams that never completed (given up for room, or still waiting
    /// at [`Reassembler::flush`]).
    pub incomplete: u64,
}

impl Stats {
    /// Add `other`'s counts.
    pub fn merge(&mut self, other: &Stats) {
        self.datagrams += other.datagrams;
        self.reassembled += other.reassembled;
        self.discarded += other.discarded;
        self.incomplete += other.incomplete;
    }

    /// Fragments that went into no datagram.
    pub fn lost(&self) -> u64 {
        self.discarded + self.incomplete
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
    protocol: u8,
}

/// One fragment's facts.
struct Piece<'a> {
    key: Key,
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// The unfragmentable part, with the offset of the byte that names the fragment header
    /// (IPv6) — what the reassembled packet starts with.
    head: &'a [u8],
    next_header_at: Option<usize>,
    /// The IPv6 fragment header's next header (0 for IPv4).
    next_header: u8,
}

#[derive(Default)]
struct Datagram {
    head: Option<(Vec<u8>, Option<usize>)>,
    data: Vec<u8>,
    /// Byte ranges held, sorted, not overlapping.
    have: Vec<(usize, usize)>,
    end: Option<usize>,
    fragments: u64,
    /// The IPv6 next header of the fragmentable part.
    next_header: u8,
}

/// Reassembles the fragments of a capture, in capture order.
#[derive(Default)]
pub struct Reassembler {
    pending: HashMap<Key, Datagram>,
    order: VecDeque<Key>,
    stats: Stats,
}

impl std::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler")
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// The largest IPv4 datagram and the largest IPv6 payload.
const MAX_LEN: usize = 65_535;

impl Reassembler {
    /// Datagrams that may wait for fragments at once.
    pub const MAX_PENDING: usize = 4096;

    /// A reassembler holding nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the fragments fed so far went.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Feed one IP packet (IPv4 or IPv6 header first).
    ///
    /// # Errors
    /// A malformed IP header (as [`crate::SegmentRef::parse`] would report it).
    pub fn feed(&mut self, ip: &[u8]) -> Result<Fed, wire::Error> {
        let Some(p) = piece(ip)? else {
            return Ok(Fed::NotFragment);
        };
        if !self.pending.contains_key(&p.key) {
            if self.pending.len() >= Self::MAX_PENDING {
                self.give_up_oldest();
            }
            self.order.push_back(p.key);
        }
        let key = p.key;
        let d = self.pending.entry(key).or_default();
        d.fragments += 1;
        if let Err(why) = d.add(&p) {
            let d = self.remove(&key);
            self.stats.discarded += d.fragments;
            return Ok(Fed::Discarded(why));
        }
        if !d.complete() {
            return Ok(Fed::Held);
        }
        let d = self.remove(&key);
        self.stats.datagrams += 1;
        self.stats.reassembled += d.fragments;
        let fragments = d.fragments;
        Ok(Fed::Complete {
            packet: d.into_packet(),
            fragments,
        })
    }

    /// Give up every datagram still waiting (the end of a capture).
    pub fn flush(&mut self) {
        for (_, d) in self.pending.drain() {
            self.stats.incomplete += d.fragments;
        }
        self.order.clear();
    }

    fn remove(&mut self, key: &Key) -> Datagram {
        self.order.retain(|k| k != key);
        self.pending.remove(key).unwrap_or_default()
    }

    fn give_up_oldest(&mut self) {
        while let Some(k) = self.order.pop_front() {
            if let Some(d) = self.pending.remove(&k) {
                self.stats.incomplete += d.fragments;
                return;
            }
        }
    }
}

/// The fragment facts of `ip`, `None` when it is no fragment.
fn piece(ip: &[u8]) -> Result<Option<Piece<'_>>, wire::Error> {
    wire::need("IP header", 1, ip.len())?;
    match ip[0] >> 4 {
        4 => {
            let p = Ipv4Packet::new_checked(ip)?;
            if !p.more_frags() && p.frag_offset() == 0 {
                return Ok(None);
            }
            let head_len = p.header_len();
            Ok(Some(Piece {
                key: Key {
                    src: p.src_addr().into(),
                    dst: p.dst_addr().into(),
                    ident: u32::from(p.ident()),
                    protocol: p.protocol(),
                },
                offset: usize::from(p.frag_offset()),
                more: p.more_frags(),
                data: &ip[head_len..p.total_len()],
                head: &ip[..head_len],
                next_header_at: None,
                next_header: 0,
            }))
        }
        6 => {
            let p = Ipv6Packet::new_checked(ip)?;
            let Some(f) = p.fragment()? else {
                return Ok(None);
            };
            let end = IPV6_HEADER_LEN + usize::from(p.payload_len());
            Ok(Some(Piece {
                key: Key {
                    src: p.src_addr().into(),
                    dst: p.dst_addr().into(),
                    ident: f.ident,
                    protocol: 0,
                },
                offset: usize::from(f.offset),
                more: f.more,
                data: &ip[f.header_at + IPV6_FRAGMENT_HEADER_LEN..end],
                head: &ip[..f.header_at],
                next_header_at: Some(f.next_header_at),
                next_header: f.next_header,
            }))
        }
        v => Err(wire::Error::BadIpVersion(v)),
    }
}

impl Datagram {
    fn add(&mut self, p: &Piece<'_>) -> Result<(), Discard> {
        let (start, end) = (p.offset, p.offset + p.data.len());
        if p.more && p.data.len() % 8 != 0 {
            return Err(Discard::Unaligned);
        }
        // IPv4 counts its header in the 65,535 bytes, IPv6 its extension headers only.
        let head_len = self.head.as_ref().map_or(p.head.len(), |h| h.0.len());
        let counted = if p.next_header_at.is_some() {
            head_len - IPV6_HEADER_LEN
        } else {
            head_len
        };
        if end + counted > MAX_LEN {
            return Err(Discard::BadLength);
        }
        if !p.more {
            if self.end.is_some_and(|e| e != end) || self.have.iter().any(|r| r.1 > end) {
                return Err(Discard::BadLength);
            }
            self.end = Some(end);
        } else if self.end.is_some_and(|e| end > e) {
            return Err(Discard::BadLength);
        }
        // A repeat of a piece already held changes nothing; any other overlap is fatal.
        if let Some(r) = self.have.iter().find(|r| r.0 < end && start < r.1) {
            if *r == (start, end) && self.data[start..end] == *p.data {
                return Ok(());
            }
            return Err(Discard::Overlap);
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(p.data);
        let at = self.have.partition_point(|r| r.0 < start);
        self.have.insert(at, (start, end));
        if start == 0 {
            // The first fragment's unfragmentable part and next header (RFC 8200 §4.5).
            self.head = Some((p.head.to_vec(), p.next_header_at));
            self.next_header = p.next_header;
        }
        Ok(())
    }

    fn complete(&self) -> bool {
        let Some(end) = self.end else { return false };
        if self.head.is_none() {
            return false;
        }
        let mut reached = 0;
        for r in &self.have {
            if r.0 > reached {
                return false;
            }
            reached = reached.max(r.1);
        }
        reached == end
    }

    fn into_packet(self) -> Vec<u8> {
        let (head, next_header_at) = self.head.unwrap_or_default();
        let mut packet = head;
        packet.extend_from_slice(&self.data);
        match next_header_at {
            None => {
                let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
                ip.set_total_len(
                    u16::try_from(ip.header_len() + self.data.len()).unwrap_or(u16::MAX),
                );
                ip.set_fragment(false, 0);
                ip.fill_checksum();
            }
            Some(at) => {
                packet[at] = self.next_header;
                let payload = packet.len() - IPV6_HEADER_LEN;
                Ipv6Packet::new_unchecked(&mut packet[..])
                    .set_payload_len(u16::try_from(payload).unwrap_or(u16::MAX));
            }
        }
        packet
    }
}

/// Identification of the fragments [`fragment`] makes.
pub const FRAGMENT_IDENT: u32 = 0x7a7a_7a7a;

/// `packet` (an IPv4 or IPv6 packet carrying TCP, without IPv6 extension headers) as IP
/// fragments, the inverse of [`Reassembler`]: the first carries the whole TCP header (RFC
/// 8200 §4.5 wants the upper-layer header in the first fragment) rounded up to 8 bytes, the
/// others `size` bytes each of the rest. IPv4: DF clear, MF on all but the last, the
/// identification kept, the header checksum filled (RFC 791 §3.1); IPv6: a fragment header
/// with identification [`FRAGMENT_IDENT`].
///
/// # Errors
/// A packet too short for its IP or TCP header, or `size` not a positive multiple of 8.
pub fn fragment(packet: &[u8], size: usize) -> Result<Vec<Vec<u8>>, wire::Error> {
    if size == 0 || size % 8 != 0 {
        return Err(wire::Error::FragmentSize(size));
    }
    wire::need("IP header", 1, packet.len())?;
    let v6 = packet[0] >> 4 == 6;
    let ip_len = if v6 {
        IPV6_HEADER_LEN
    } else {
        usize::from(packet[0] & 0x0f) * 4
    };
    wire::need("IP header", ip_len, packet.len())?;
    let body = &packet[ip_len..];
    wire::need("TCP header", 13, body.len())?;
    let first = (usize::from(body[12] >> 4) * 4).div_ceil(8) * 8;
    let mut bounds = vec![0];
    let mut at = first.min(body.len());
    while at < body.len() {
        bounds.push(at);
        at += size;
    }
    bounds.push(body.len());
    let too_long = |n: usize| wire::Error::LengthOverflow(n);
    let mut out = Vec::with_capacity(bounds.len() - 1);
    for w in bounds.windows(2) {
        let (start, end) = (w[0], w[1]);
        let more = end < body.len();
        let chunk = &body[start..end];
        let offset = u16::try_from(start).map_err(|_| too_long(start))?;
        let mut f = packet[..ip_len].to_vec();
        if v6 {
            // Fragment header (RFC 8200 §4.5): next header TCP, offset, M, identification.
            f[6] = 44;
            f.extend_from_slice(&[6, 0]);
            f.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
            f.extend_from_slice(&FRAGMENT_IDENT.to_be_bytes());
            f.extend_from_slice(chunk);
            let payload = f.len() - IPV6_HEADER_LEN;
            let payload = u16::try_from(payload).map_err(|_| too_long(payload))?;
            Ipv6Packet::new_unchecked(&mut f[..]).set_payload_len(payload);
        } else {
            f.extend_from_slice(chunk);
            let total = u16::try_from(f.len()).map_err(|_| too_long(f.len()))?;
            let mut ip = Ipv4Packet::new_unchecked(&mut f[..]);
            ip.set_total_len(total);
            ip.set_fragment(more, offset);
            ip.fill_checksum();
        }
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::wire::{IPV4_HEADER_LEN, Ipv4Repr, Ipv6Repr};

    /// An IPv4 packet of `len` payload bytes (DF clear, as a reassembled one is).
    fn v4(len: usize, ident: u16) -> Vec<u8> {
        let mut p = vec![0u8; IPV4_HEADER_LEN + len];
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 1, 1),
            dst_addr: Ipv4Addr::new(10, 0, 254, 1),
            protocol: 6,
            payload_len: len,
            hop_limit: 64,
            ident,
        };
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        repr.emit(&mut ip).unwrap();
        ip.set_fragment(false, 0);
        ip.fill_checksum();
        for (i, b) in p[IPV4_HEADER_LEN..].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        p
    }

    /// An IPv6 packet: `ext` (the unfragmentable extension headers, next header first byte
    /// chained by the caller) then `len` payload bytes of protocol 6.
    fn v6(len: usize, first: u8, ext: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; IPV6_HEADER_LEN];
        let repr = Ipv6Repr {
            src_addr: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
            dst_addr: Ipv6Addr::new(0x2001, 0xdb8, 254, 0, 0, 0, 0, 1),
            next_header: first,
            payload_len: ext.len() + len,
            hop_limit: 64,
        };
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut p[..]))
            .unwrap();
        p.extend_from_slice(ext);
        p.extend((0..len).map(|i| (i * 13 % 251) as u8));
        p
    }

    /// The fragments of `p` (whose unfragmentable part is `head` bytes long) holding the
    /// payload ranges `(start, len)`.
    fn fragments(p: &[u8], head: usize, ranges: &[(usize, usize)], ident: u32) -> Vec<Vec<u8>> {
        let total = p.len() - head;
        ranges
            .iter()
            .map(|&(start, len)| {
                let more = start + len < total;
                let data = &p[head + start..head + start + len];
                if p[0] >> 4 == 4 {
                    let mut f = p[..head].to_vec();
                    f.extend_from_slice(data);
                    let mut ip = Ipv4Packet::new_unchecked(&mut f[..]);
                    ip.set_total_len((head + len) as u16);
                    ip.set_ident(ident as u16);
                    ip.set_fragment(more, start as u16);
                    ip.fill_checksum();
                    f
                } else {
                    // The fragment header goes after the unfragmentable part; the byte that
                    // named the first fragmentable header now names it.
                    let at = if head == IPV6_HEADER_LEN {
                        6
                    } else {
                        IPV6_HEADER_LEN
                    };
                    let mut f = p[..head].to_vec();
                    let next = f[at];
                    f[at] = 44;
                    let offlg = start as u16 | u16::from(more);
                    f.extend_from_slice(&[next, 0]);
                    f.extend_from_slice(&offlg.to_be_bytes());
                    f.extend_from_slice(&ident.to_be_bytes());
                    f.extend_from_slice(data);
                    let payload = (f.len() - IPV6_HEADER_LEN) as u16;
                    Ipv6Packet::new_unchecked(&mut f[..]).set_payload_len(payload);
                    f
                }
            })
            .collect()
    }

    fn feed_all(r: &mut Reassembler, frags: &[Vec<u8>]) -> Vec<Fed> {
        frags.iter().map(|f| r.feed(f).unwrap()).collect()
    }

    #[test]
    fn fragments_rebuild_the_datagram() {
        let p4 = v4(1044, 7);
        // Destination options (8 bytes) in the unfragmentable part.
        let p6x = v6(1044, 60, &[6, 0, 1, 4, 0, 0, 0, 0]);
        let p6 = v6(1044, 6, &[]);
        let h4 = IPV4_HEADER_LEN;
        let (h6, h6x) = (IPV6_HEADER_LEN, IPV6_HEADER_LEN + 8);
        // (name, packet, unfragmentable length, ranges in arrival order, fragments counted)
        type Row<'a> = (&'a str, &'a [u8], usize, &'a [(usize, usize)], u64);
        let rows: [Row<'_>; 7] = [
            (
                "v4 in order",
                &p4,
                h4,
                &[(0, 512), (512, 512), (1024, 20)],
                3,
            ),
            (
                "v4 last first",
                &p4,
                h4,
                &[(1024, 20), (512, 512), (0, 512)],
                3,
            ),
            (
                "v4 a duplicate",
                &p4,
                h4,
                &[(0, 512), (0, 512), (512, 532)],
                3,
            ),
            (
                "v4 8-byte pieces",
                &p4,
                h4,
                &(0..131)
                    .map(|i| (i * 8, if i == 130 { 4 } else { 8 }))
                    .collect::<Vec<_>>(),
                131,
            ),
            (
                "v6 in order",
                &p6,
                h6,
                &[(0, 512), (512, 512), (1024, 20)],
                3,
            ),
            (
                "v6 shuffled",
                &p6,
                h6,
                &[(512, 512), (1024, 20), (0, 512)],
                3,
            ),
            (
                "v6 behind an extension header",
                &p6x,
                h6x,
                &[(0, 1024), (1024, 20)],
                2,
            ),
        ];
        for (name, p, head, ranges, count) in rows {
            let mut r = Reassembler::new();
            let fed = feed_all(&mut r, &fragments(p, head, ranges, 7));
            let (last, held) = fed.split_last().unwrap();
            assert!(held.iter().all(|f| *f == Fed::Held), "{name}: {held:?}");
            assert_eq!(
                *last,
                Fed::Complete {
                    packet: p.to_vec(),
                    fragments: count
                },
                "{name}"
            );
            assert_eq!(
                r.stats(),
                Stats {
                    datagrams: 1,
                    reassembled: count,
                    ..Stats::default()
                },
                "{name}"
            );
            // The whole packet parses as TCP again.
            let Fed::Complete { packet, .. } = last else {
                unreachable!()
            };
            assert!(
                crate::SegmentRef::parse(packet).is_ok() || p.len() - head < 20,
                "{name}"
            );
        }
    }

    #[test]
    fn bad_fragments_discard_the_datagram() {
        let p4 = v4(1044, 1);
        let p6 = v6(1044, 6, &[]);
        let (h4, h6) = (IPV4_HEADER_LEN, IPV6_HEADER_LEN);
        let mut changed = fragments(&p6, h6, &[(0, 512)], 9);
        let last = changed[0].len() - 1;
        changed[0][last] ^= 0xff;
        // (name, fragments, the verdict of the last one, fragments discarded)
        let rows: Vec<(&str, Vec<Vec<u8>>, Discard, u64)> = vec![
            (
                "v4 overlap",
                fragments(&p4, h4, &[(0, 512), (256, 512)], 1),
                Discard::Overlap,
                2,
            ),
            (
                "v6 overlap",
                fragments(&p6, h6, &[(512, 512), (0, 520)], 9),
                Discard::Overlap,
                2,
            ),
            (
                "v6 same range, other bytes",
                [fragments(&p6, h6, &[(0, 512)], 9), changed].concat(),
                Discard::Overlap,
                2,
            ),
            (
                "v6 unaligned",
                fragments(&p6, h6, &[(0, 500)], 9),
                Discard::Unaligned,
                1,
            ),
            (
                "v4 two ends",
                [
                    fragments(&p4, h4, &[(1024, 20)], 1),
                    fragments(&v4(1036, 1), h4, &[(1024, 12)], 1),
                ]
                .concat(),
                Discard::BadLength,
                2,
            ),
            (
                "v4 past the end",
                [
                    fragments(&p4, h4, &[(512, 532)], 1),
                    fragments(&v4(2000, 1), h4, &[(1024, 512)], 1),
                ]
                .concat(),
                Discard::BadLength,
                2,
            ),
        ];
        for (name, frags, why, discarded) in rows {
            let mut r = Reassembler::new();
            let fed = feed_all(&mut r, &frags);
            assert_eq!(fed.last(), Some(&Fed::Discarded(why)), "{name}: {fed:?}");
            assert_eq!(r.stats().discarded, discarded, "{name}");
            r.flush();
            assert_eq!(r.stats().incomplete, 0, "{name}: nothing left waiting");
        }
        // Past 65,535 bytes.
        let mut f = fragments(&p6, h6, &[(0, 16)], 3).remove(0);
        let o = IPV6_HEADER_LEN + 2;
        f[o..o + 2].copy_from_slice(&(65_528u16 | 1).to_be_bytes());
        let mut r = Reassembler::new();
        assert_eq!(r.feed(&f).unwrap(), Fed::Discarded(Discard::BadLength));
    }

    #[test]
    fn incomplete_datagrams_are_counted_not_lost() {
        let p4 = v4(1044, 5);
        let mut r = Reassembler::new();
        assert_eq!(r.feed(&p4).unwrap(), Fed::NotFragment);
        let frags = fragments(&p4, IPV4_HEADER_LEN, &[(0, 512), (1024, 20)], 5);
        assert_eq!(feed_all(&mut r, &frags), [Fed::Held, Fed::Held]);
        // Another datagram (other identification) completes beside it.
        let other = fragments(&p4, IPV4_HEADER_LEN, &[(0, 1024), (1024, 20)], 6);
        assert!(matches!(feed_all(&mut r, &other)[1], Fed::Complete { .. }));
        r.flush();
        assert_eq!(
            r.stats(),
            Stats {
                datagrams: 1,
                reassembled: 2,
                discarded: 0,
                incomplete: 2
            }
        );
        // Room runs out: the oldest waiting datagram is given up.
        let mut r = Reassembler::new();
        for id in 0..=Reassembler::MAX_PENDING as u32 {
            let f = fragments(&p4, IPV4_HEADER_LEN, &[(0, 512)], id).remove(0);
            assert_eq!(r.feed(&f).unwrap(), Fed::Held);
        }
        assert_eq!(r.stats().incomplete, 1);
        // A malformed header is an error, not a fragment.
        assert!(r.feed(&[0x45, 0, 0]).is_err());
        assert!(r.feed(&[]).is_err());
    }

    /// [`fragment`]'s pieces: fields right, each a fragment to [`crate::SegmentRef::parse`],
    /// and the reassembler makes the original of them (DF aside, which fragments clear).
    #[test]
    fn fragment_is_undone_by_the_reassembler() {
        use crate::sign::{Auth, IpHeader, build_segment};
        use crate::wire::{TcpFlags, TcpRepr};

        let payload: Vec<u8> = (0..100u8).collect();
        for (c, s, ip_len, frag_hdr) in [
            ("10.0.1.1", "10.0.254.1", 20, 0),
            ("2001:db8:1::1", "2001:db8:254::1", 40, 8),
        ] {
            let (c, s): (IpAddr, IpAddr) = (c.parse().unwrap(), s.parse().unwrap());
            let tcp = TcpRepr {
                src_port: 40000,
                dst_port: 7010,
                seq_number: 1000,
                ack_number: 2000,
                flags: TcpFlags::ACK,
                window_len: 1000,
                urgent_at: 0,
                options: &[],
                payload: &payload,
            };
            let mut pkt = build_segment(&IpHeader::new(c, s), &tcp, &Auth::None).unwrap();
            let frags = fragment(&pkt, 16).unwrap();
            // The 20-byte TCP header rounded up to 24 in the first, then 16 bytes at a time.
            assert_eq!(frags.len(), 1 + (120 - 24usize).div_ceil(16), "{s}");
            assert_eq!(frags[0].len(), ip_len + frag_hdr + 24, "{s}");
            let mut body = Vec::new();
            for (i, f) in frags.iter().enumerate() {
                let more = i + 1 < frags.len();
                let (off, m) = if frag_hdr == 0 {
                    assert!(Ipv4Packet::new_checked(&f[..]).unwrap().verify_checksum());
                    let w = u16::from_be_bytes([f[6], f[7]]);
                    assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), f.len());
                    (usize::from(w & 0x1fff) * 8, w & 0x2000 != 0)
                } else {
                    assert_eq!((f[6], f[40]), (44, 6));
                    assert_eq!(usize::from(u16::from_be_bytes([f[4], f[5]])), f.len() - 40);
                    let w = u16::from_be_bytes([f[42], f[43]]);
                    (usize::from(w >> 3) * 8, w & 1 != 0)
                };
                assert_eq!((off, m), (body.len(), more), "{s}: fragment {i}");
                assert_eq!(
                    crate::SegmentRef::parse(f).err(),
                    Some(wire::Error::Fragment),
                    "{s}: fragment {i}"
                );
                body.extend_from_slice(&f[ip_len + frag_hdr..]);
            }
            assert_eq!(body, pkt[ip_len..], "{s}");
            let mut r = Reassembler::new();
            let fed = feed_all(&mut r, &frags);
            if frag_hdr == 0 {
                let mut ip = Ipv4Packet::new_unchecked(&mut pkt[..]);
                ip.set_fragment(false, 0);
                ip.fill_checksum();
            }
            assert_eq!(
                fed.last(),
                Some(&Fed::Complete {
                    packet: pkt.clone(),
                    fragments: frags.len() as u64
                }),
                "{s}"
            );
        }
        assert!(fragment(&[0x45, 0, 0], 8).is_err());
        assert_eq!(fragment(&v4(40, 1), 12), Err(wire::Error::FragmentSize(12)));
        assert_eq!(fragment(&v4(40, 1), 0), Err(wire::Error::FragmentSize(0)));
    }
}

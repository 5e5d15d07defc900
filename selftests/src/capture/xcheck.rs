// SPDX-License-Identifier: MIT OR Apache-2.0
//! Cross-check of captured segments against tcpao-refimpl.
//!
//! Rules (a test fails when one is broken):
//! 1. A TCP-AO or TCP-MD5 segment **signed by a peer's kernel** (sent by the side that holds a
//!    key for the destination with SendID = the segment's KeyID) must verify with that key in
//!    the reference. Otherwise the kernel and the reference disagree on the MAC.
//! 2. When a receiving peer's `TCPAOBad` (or `TCPMD5Failure`) grew during the test, the reference
//!    must also reject at least one segment sent to it, verified with the **receiver's** keys.
//!    A kernel that counts bad MACs on segments the reference accepts is wrong (or the
//!    reference is).
//!
//! Traffic keys need the ISNs: they are learnt from the SYN and SYN-ACK of each flow, or given
//! with [`super::Capture::register_restored`] for sockets restored with `TCP_REPAIR`.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Frame, RegisteredKey, RestoredFlow};
use crate::counters::NetnsMib;
use crate::peers::Side;
use crate::topology::Family;

/// Result of the cross-check of one test.
#[derive(Debug, Clone, Default)]
pub struct XcheckReport {
    /// Frames captured.
    pub frames: usize,
    /// TCP segments among them.
    pub tcp_segments: usize,
    /// Segments with a TCP-AO option.
    pub ao_segments: usize,
    /// Segments with a TCP-MD5 option.
    pub md5_segments: usize,
    /// Signed segments the reference verified (accepted or rejected with a known key).
    pub verified: usize,
    /// Of those, how many the reference rejected.
    pub rejected: usize,
    /// Extra diagnostic lines.
    pub notes: Vec<String>,
    /// The first broken rule, as a sentence; `None` when the cross-check passed.
    pub failure: Option<String>,
}

impl XcheckReport {
    /// A report for a capture that could not be read.
    pub fn error(e: String) -> Self {
        Self { failure: Some(format!("capture: {e}")), ..Self::default() }
    }

    /// Record a broken rule (the first one wins the headline; all are noted).
    pub fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why.clone());
        } else {
            self.notes.push(format!("xcheck: also: {why}"));
        }
    }
}

/// The signature option of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// TCP-AO (kind 29).
    Ao {
        /// KeyID.
        key_id: u8,
        /// RNextKeyID.
        rnext_key_id: u8,
        /// MAC length.
        maclen: usize,
    },
    /// TCP-MD5 (kind 19).
    Md5,
    /// No signature option.
    None,
}

/// A decoded TCP segment with where it sits in its frame.
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    /// Who sent it.
    pub from: Side,
    /// Source address and port.
    pub src: (IpAddr, u16),
    /// Destination address and port.
    pub dst: (IpAddr, u16),
    /// Sequence number.
    pub seq: u32,
    /// SYN flag.
    pub syn: bool,
    /// ACK flag.
    pub ack: bool,
    /// Acknowledgment number.
    pub ack_seq: u32,
    /// Signature option.
    pub signature: Signature,
    /// The IP packet (header and TCP segment).
    pub ip_packet: &'a [u8],
}

/// Decode an Ethernet frame into a TCP segment; `Ok(None)` for non-TCP frames.
///
/// # Errors
/// A sentence describing the malformation.
pub fn decode(frame: &Frame) -> Result<Option<Segment<'_>>, String> {
    let d = &frame.data;
    if d.len() < 14 {
        return Err(format!("frame of {} bytes is shorter than an Ethernet header", d.len()));
    }
    let ethertype = u16::from_be_bytes([d[12], d[13]]);
    let ip = &d[14..];
    let (src, dst, proto, l4, ip_len) = match ethertype {
        0x0800 => {
            if ip.len() < 20 {
                return Err("truncated IPv4 header".into());
            }
            let ihl = usize::from(ip[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ihl < 20 || total < ihl || total > ip.len() {
                return Err(format!("bad IPv4 lengths: ihl {ihl} total {total} captured {}", ip.len()));
            }
            let s = IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap_or_default());
            let t = IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap_or_default());
            (s, t, ip[9], &ip[ihl..total], total)
        }
        0x86dd => {
            if ip.len() < 40 {
                return Err("truncated IPv6 header".into());
            }
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if 40 + plen > ip.len() {
                return Err(format!("IPv6 payload length {plen} exceeds the {} captured bytes", ip.len() - 40));
            }
            let s = IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap_or_default());
            let t = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap_or_default());
            // Our peers send no extension headers; anything else is not a plain TCP segment.
            (s, t, ip[6], &ip[40..40 + plen], 40 + plen)
        }
        _ => return Ok(None),
    };
    if proto != 6 {
        return Ok(None);
    }
    if l4.len() < 20 {
        return Err("truncated TCP header".into());
    }
    let doff = usize::from(l4[12] >> 4) * 4;
    if doff < 20 || doff > l4.len() {
        return Err(format!("bad TCP data offset {doff}"));
    }
    let mut signature = Signature::None;
    let mut opts = &l4[20..doff];
    while let Some(&kind) = opts.first() {
        match kind {
            0 => break,
            1 => opts = &opts[1..],
            _ => {
                let len = usize::from(*opts.get(1).ok_or("truncated TCP option")?);
                if len < 2 || len > opts.len() {
                    return Err(format!("TCP option {kind} has bad length {len}"));
                }
                match kind {
                    29 if len >= 4 => {
                        signature = Signature::Ao { key_id: opts[2], rnext_key_id: opts[3], maclen: len - 4 };
                    }
                    19 if len == 18 => signature = Signature::Md5,
                    _ => {}
                }
                opts = &opts[len..];
            }
        }
    }
    let flags = l4[13];
    Ok(Some(Segment {
        from: frame.from,
        src: (src, u16::from_be_bytes([l4[0], l4[1]])),
        dst: (dst, u16::from_be_bytes([l4[2], l4[3]])),
        seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
        ack_seq: u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
        syn: flags & 0x02 != 0,
        ack: flags & 0x10 != 0,
        signature,
        ip_packet: &ip[..ip_len],
    }))
}

/// The reference's opinion of one signed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefVerdict {
    /// The MAC verifies.
    Good,
    /// The MAC does not verify (or the MAC length differs from the key's).
    Bad,
    /// The reference cannot judge it (missing ISN, unsupported algorithm).
    Unknown,
}

/// Per-flow state: ISNs learnt from the handshake (or a restore).
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowIsns {
    /// ISN of the endpoint that sent the SYN, per direction key.
    pub isn: [Option<u32>; 2],
}

type FlowKey = ((IpAddr, u16), (IpAddr, u16));

fn flow_key(seg: &Segment<'_>) -> (FlowKey, usize) {
    // Index 0: the lower endpoint sends; 1: the higher endpoint sends.
    if seg.src <= seg.dst { ((seg.src, seg.dst), 0) } else { ((seg.dst, seg.src), 1) }
}

/// Cross-check every captured segment; `mibs` are (before, after) netns MIBs of server and client.
pub fn analyze(
    _family: Family,
    frames: &[Frame],
    keys: &[RegisteredKey],
    restored: &[RestoredFlow],
    mibs: &[Option<(NetnsMib, NetnsMib)>; 2],
) -> XcheckReport {
    let mut r = XcheckReport { frames: frames.len(), ..XcheckReport::default() };
    let mut flows: HashMap<FlowKey, FlowIsns> = HashMap::new();
    for f in restored {
        let s = Segment {
            from: Side::Server,
            src: f.server,
            dst: f.client,
            seq: 0,
            ack_seq: 0,
            syn: false,
            ack: false,
            signature: Signature::None,
            ip_packet: &[],
        };
        let (k, dir) = flow_key(&s);
        let e = flows.entry(k).or_default();
        e.isn[dir] = Some(f.server_isn);
        e.isn[1 - dir] = Some(f.client_isn);
    }
    // Receiver-side rejections per receiving side (index: Side::Server = 0).
    let mut rejected_for = [0usize; 2];
    let mut md5_rejected_for = [0usize; 2];
    for frame in frames {
        let seg = match decode(frame) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                r.fail(format!("a captured frame is malformed: {e}"));
                continue;
            }
        };
        r.tcp_segments += 1;
        let (fk, dir) = flow_key(&seg);
        if seg.syn {
            flows.entry(fk).or_default().isn[dir] = Some(seg.seq);
        }
        let isns = flows.get(&fk).copied().unwrap_or_default();
        let receiver = seg.from.other();
        match seg.signature {
            Signature::None => {}
            Signature::Ao { key_id, maclen, .. } => {
                r.ao_segments += 1;
                // Rule 1: the sender's own key.
                if let Some(k) = find_ao_key(keys, seg.from, seg.dst.0, |k| k.send_id == key_id) {
                    match verify_ao(&seg, k, &isns, dir) {
                        RefVerdict::Good => r.verified += 1,
                        RefVerdict::Bad => {
                            r.verified += 1;
                            r.rejected += 1;
                            r.fail(format!(
                                "a segment the {} kernel signed ({}:{} -> {}:{}, seq {}, key {}:{}, maclen {maclen}) \
                                 is rejected by tcpao-refimpl",
                                seg.from.name(),
                                seg.src.0,
                                seg.src.1,
                                seg.dst.0,
                                seg.dst.1,
                                seg.seq,
                                k.send_id,
                                k.recv_id
                            ));
                        }
                        RefVerdict::Unknown => {}
                    }
                }
                // Rule 2 input: the receiver's key.
                if let Some(k) = find_ao_key(keys, receiver, seg.src.0, |k| k.recv_id == key_id) {
                    if verify_ao(&seg, k, &isns, dir) == RefVerdict::Bad {
                        rejected_for[side_index(receiver)] += 1;
                    }
                }
            }
            Signature::Md5 => {
                r.md5_segments += 1;
                if let Some(k) = find_md5_key(keys, seg.from, seg.dst.0) {
                    match verify_md5(&seg, k) {
                        RefVerdict::Good => r.verified += 1,
                        RefVerdict::Bad => {
                            r.verified += 1;
                            r.rejected += 1;
                            r.fail(format!(
                                "a TCP-MD5 segment the {} kernel signed ({}:{} -> {}:{}, seq {}) is rejected by tcpao-refimpl",
                                seg.from.name(),
                                seg.src.0,
                                seg.src.1,
                                seg.dst.0,
                                seg.dst.1,
                                seg.seq
                            ));
                        }
                        RefVerdict::Unknown => {}
                    }
                }
                if let Some(k) = find_md5_key(keys, receiver, seg.src.0) {
                    if verify_md5(&seg, k) == RefVerdict::Bad {
                        md5_rejected_for[side_index(receiver)] += 1;
                    }
                }
            }
        }
    }
    for side in [Side::Server, Side::Client] {
        let Some((before, after)) = &mibs[side_index(side)] else { continue };
        for (counter, rejected) in
            [("TCPAOBad", rejected_for[side_index(side)]), ("TCPMD5Failure", md5_rejected_for[side_index(side)])]
        {
            let grew = after.get(counter).saturating_sub(before.get(counter));
            if grew > 0 && rejected == 0 && r.verified > 0 {
                r.fail(format!(
                    "the {} kernel counted {grew} bad segments ({counter}), but tcpao-refimpl verified every \
                     signed segment sent to it as good",
                    side.name()
                ));
            } else if grew > 0 || rejected > 0 {
                r.notes.push(format!(
                    "xcheck: {}: kernel {counter} +{grew}, reference rejected {rejected} segments to it",
                    side.name()
                ));
            }
        }
    }
    r
}

fn side_index(s: Side) -> usize {
    match s {
        Side::Server => 0,
        Side::Client => 1,
    }
}

fn find_ao_key<'k>(
    keys: &'k [RegisteredKey],
    owner: Side,
    peer: IpAddr,
    id: impl Fn(&RegisteredKey) -> bool,
) -> Option<&'k RegisteredKey> {
    keys.iter().find(|k| {
        k.owner == owner && k.algorithm != super::KeyAlgorithm::Md5 && k.matches_peer(peer) && id(k)
    })
}

fn find_md5_key(keys: &[RegisteredKey], owner: Side, peer: IpAddr) -> Option<&RegisteredKey> {
    // TCP-MD5 lookup is longest-prefix.
    keys.iter()
        .filter(|k| k.owner == owner && k.algorithm == super::KeyAlgorithm::Md5 && k.matches_peer(peer))
        .max_by_key(|k| k.prefix)
}

fn verify_ao(_seg: &Segment<'_>, _key: &RegisteredKey, _isns: &FlowIsns, _dir: usize) -> RefVerdict {
    RefVerdict::Unknown
}

fn verify_md5(_seg: &Segment<'_>, _key: &RegisteredKey) -> RefVerdict {
    RefVerdict::Unknown
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Cross-check of captured segments against tcpao-refimpl.
//!
//! Every frame is decoded with tcpao-refimpl's wire views ([`SegmentRef`]). Per TCP flow, each
//! peer gets a [`FlowValidator`] seen from its end, holding the TCP-AO keys that peer
//! registered for the other end's address; TCP-MD5 segments are checked with
//! [`tcpao_refimpl::verify_md5`]. Rules (a test fails when one is broken):
//!
//! 1. A TCP-AO or TCP-MD5 segment **signed by a peer's kernel** (its sender holds a registered
//!    key for the destination with SendID = the segment's KeyID) must verify with that key in
//!    the reference. Otherwise kernel and reference disagree on the MAC.
//! 2. When a receiving peer's `TCPAOBad` (or `TCPMD5Failure`) grew during the test, the reference
//!    must also reject at least one segment sent to it, checked with the **receiver's** keys.
//!    A kernel that counts bad MACs on segments the reference accepts is wrong (or the
//!    reference is). One kernel path is modelled here: a segment that reaches a peer after
//!    that peer reset the connection (its socket is gone) may meet the peer's TCP-AO
//!    *listener*, which takes an ACK without SYN for a possible syncookie ACK and verifies it
//!    with ISNs guessed as SEQ − 1 and ACK − 1 (`tcp_inbound_ao_hash()`, `TCP_LISTEN`). The
//!    reference checks such late segments the same way, and a rejection there counts too.
//!
//! Traffic keys need the ISNs: they are learnt from each flow's SYN and SYN-ACK (the whole
//! capture is read first), or registered with [`super::Capture::register_restored`] for
//! sockets restored with `TCP_REPAIR`. A flow whose SYN-ACK never came (the expected-timeout
//! cases) still has its SYNs verified: SYN traffic keys need only the sender's ISN.
//!
//! A side that restored a socket may register its own view of the connection
//! ([`super::Capture::register_restored_view`]): from the view's time on, that side's validator
//! uses the view's ISNs, SEQs and SNEs, so a deliberately corrupted restore (wrong ISN or SNE on
//! one side) is still checked segment by segment. The view starts at a frame index the
//! capture fixed after draining its sockets, before the restored socket's `connect()`. Only if
//! a reader did not drain in time (the boundary may be early: a segment of the old socket may
//! come later) then, until the side sent a segment that verifies with the view, a segment
//! that fails with it is checked with the previous view too. A
//! socket connected to itself (loopback, both ends one socket) has one ISN for both
//! directions; its SYN sets both.
//!
//! 3. Every TCP-AO or TCP-MD5 segment **sent by a peer's kernel** is checked **field by
//!    field** against the keys its sender holds for the destination ([`fields`]): the KeyID is
//!    the SendID of one of them (a KeyID the sender holds no key for fails; it is not taken
//!    for "not signed by a peer's kernel"), the RNextKeyID the RecvID of one, the option
//!    length 4 + that key's MAC length, the bytes after the option up to the next 32-bit
//!    boundary NOPs (or End of Option List and zeros), every option well formed up to the
//!    data offset, one authentication option, and the options in the order Linux writes them.
//!    Keys whose algorithm the reference lacks are known by their identifiers
//!    ([`super::Capture::register_unverifiable`]): their segments get rule 3, not rule 1.
//!
//! Segments the test built and injected itself ([`super::Capture::register_crafted`]) are not
//! held to rules 1 and 3 and teach no ISN, but still count for rule 2. Those it injected
//! expecting them to verify ([`super::Capture::register_injected`]) are held to rule 1, not 3;
//! kernel-signed segments it verified with its own model
//! ([`super::Capture::register_modelled`]) to rule 3, not 1. [`analyze_capture`]
//! takes all of this at once.

pub mod fields;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use tcpao_refimpl::{Connection, Direction, FlowValidator, Mkt, SegmentRef, SneTracker, Verdict};

use tcpao_refimpl::reassembly::{Fed, Reassembler};
use tcpao_refimpl::verify::keys::KeyEntry;

use self::fields::{AoIds, HeldKeys};
use super::{Frame, RestoredFlow, RestoredView, UnverifiableKey};
use crate::counters::NetnsMib;
use crate::topology::{Family, Side};

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
    /// Kernel-signed segments the reference checked with the sender's key (rule 1).
    pub verified: usize,
    /// Of those, how many the reference rejected.
    pub rejected: usize,
    /// Kernel-signed segments checked field by field (rule 3), broken or not.
    pub fields_checked: usize,
    /// Segments the reference verified, per sender (`[server, client]`) and SNE (the SNE the
    /// reference placed them in, RFC 5925 §6.2).
    pub verified_sne: [std::collections::BTreeMap<u32, usize>; 2],
    /// Extra diagnostic lines.
    pub notes: Vec<String>,
    /// The first broken rule, as a sentence; `None` when the cross-check passed.
    pub failure: Option<String>,
}

impl XcheckReport {
    /// A report for a capture that could not be read.
    pub fn error(e: String) -> Self {
        Self {
            failure: Some(format!("capture: {e}")),
            ..Self::default()
        }
    }

    /// Record a broken rule (the first one is the headline; later ones become notes).
    pub fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why);
        } else {
            self.notes.push(format!("xcheck: also: {why}"));
        }
    }
}

/// A decoded frame: who sent it and its TCP segment.
struct Decoded<'a> {
    from: Side,
    /// Index of the frame in the capture.
    frame: usize,
    /// Built and injected by the test ([`super::Capture::register_crafted`]): not held to
    /// rule 1.
    crafted: bool,
    /// Injected by the test, crafted or not ([`super::Capture::register_injected`]): no
    /// peer's kernel wrote it, so it is not held to rule 3 (a crafted segment that a peer's
    /// kernel wrote, [`super::Capture::register_modelled`], is).
    injected: bool,
    seg: SegmentRef<'a>,
}

/// Decode an Ethernet frame into a TCP segment; `Ok(None)` for frames that are not TCP over
/// IPv4/IPv6 (ARP, ICMP, neighbour discovery).
///
/// # Errors
/// The wire error of a malformed IP/TCP packet.
pub fn decode(frame: &Frame) -> Result<Option<SegmentRef<'_>>, String> {
    let d = &frame.data;
    if d.len() < 14 {
        return Err(format!(
            "frame of {} bytes is shorter than an Ethernet header",
            d.len()
        ));
    }
    match u16::from_be_bytes([d[12], d[13]]) {
        0x0800 | 0x86dd => {}
        _ => return Ok(None),
    }
    match SegmentRef::parse(&d[14..]) {
        Ok(s) => Ok(Some(s)),
        Err(tcpao_refimpl::wire::Error::NotTcp(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether `ip` (an IPv4 or IPv6 packet) is the first fragment of a fragmented datagram:
/// offset 0 with More Fragments set (IPv4), or an IPv6 fragment header right after the fixed
/// header with offset 0.
fn is_first_fragment(ip: &[u8]) -> bool {
    match ip.first().map(|b| b >> 4) {
        Some(4) => ip.len() >= 20 && u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff == 0x2000,
        Some(6) => ip.len() >= 48 && ip[6] == 44 && u16::from_be_bytes([ip[42], ip[43]]) >> 3 == 0,
        _ => false,
    }
}

type FlowKey = (SocketAddr, SocketAddr);

fn endpoints(seg: &SegmentRef<'_>) -> (SocketAddr, SocketAddr) {
    let t = seg.tcp_packet();
    (
        SocketAddr::new(seg.src, t.src_port()),
        SocketAddr::new(seg.dst, t.dst_port()),
    )
}

/// The flow key: (server endpoint, client endpoint).
fn flow_of(from: Side, seg: &SegmentRef<'_>) -> FlowKey {
    let (src, dst) = endpoints(seg);
    match from {
        Side::Server => (src, dst),
        Side::Client => (dst, src),
    }
}

#[derive(Default)]
struct FlowInfo {
    /// ISN sent by [server, client].
    isn: [Option<u32>; 2],
    /// SNE state at restore time of [server, client] send directions.
    restored: Option<RestoredFlow>,
    /// Later connections on the same 4-tuple (a new SYN with another ISN, e.g. a SYN
    /// accepted by a TIME-WAIT socket): from which decoded segment on, with which ISNs.
    reincarnations: Vec<(usize, [Option<u32>; 2])>,
}

/// The validators of one flow: one per side, seen from that side.
struct FlowCheck {
    validators: [Option<FlowValidator>; 2],
    /// TCP-MD5 keys of each side, most specific first.
    md5: [Vec<KeyEntry>; 2],
    /// Restored views not applied yet, per side, in time order.
    pending: [Vec<RestoredView>; 2],
    /// Later connections on the same 4-tuple not reached yet, in capture order.
    reincarnations: std::collections::VecDeque<(usize, [Option<u32>; 2])>,
    /// Per side, the validator from before its last restored view, kept until a segment the
    /// side sent verifies with the view (a late-read segment of the old socket may follow).
    previous: [Option<FlowValidator>; 2],
}

/// Checks a segment that reached `receiver` after it reset the flow the way the receiver's
/// TCP-AO listener would: an ACK without SYN is a possible syncookie ACK, verified with the
/// ISNs guessed from it (sender's ISN = SEQ − 1, receiver's = ACK − 1). `true` when the
/// receiver's keys reject it that way. Kernel: `tcp_inbound_ao_hash()`, `TCP_LISTEN` branch.
fn rejected_as_syncookie_ack(
    flow: &FlowKey,
    receiver: Side,
    seg: &SegmentRef<'_>,
    keys: &[(Side, KeyEntry)],
) -> bool {
    let t = seg.tcp_packet();
    if !t.ack() || t.syn() || t.rst() {
        return false;
    }
    let r = Side::index(receiver);
    let mut isn = [None, None];
    isn[r] = Some(t.ack_number().wrapping_sub(1));
    isn[1 - r] = Some(t.seq_number().wrapping_sub(1));
    match build_side(flow, receiver, isn, None, keys) {
        Ok((_, Some(mut v))) => matches!(
            v.validate(Direction::RemoteToLocal, seg),
            Verdict::Bad { .. }
        ),
        _ => false,
    }
}

fn build_flow(
    flow: &FlowKey,
    info: &FlowInfo,
    keys: &[(Side, KeyEntry)],
) -> Result<FlowCheck, String> {
    let mut check = FlowCheck {
        validators: [None, None],
        md5: [Vec::new(), Vec::new()],
        pending: [Vec::new(), Vec::new()],
        reincarnations: info.reincarnations.iter().copied().collect(),
        previous: [None, None],
    };
    for side in [Side::Server, Side::Client] {
        let i = Side::index(side);
        let (md5, v) = build_side(flow, side, info.isn, info.restored.as_ref(), keys)?;
        check.md5[i] = md5;
        check.validators[i] = v;
    }
    Ok(check)
}

/// The MD5 keys and the TCP-AO validator of `side` for `flow`, with ISNs `isn` ([server,
/// client]) and, for a restored flow, its SEQs and SNEs.
fn build_side(
    flow: &FlowKey,
    side: Side,
    isn: [Option<u32>; 2],
    restored: Option<&RestoredFlow>,
    keys: &[(Side, KeyEntry)],
) -> Result<(Vec<KeyEntry>, Option<FlowValidator>), String> {
    let (server, client) = *flow;
    let (local, remote) = match side {
        Side::Server => (server, client),
        Side::Client => (client, server),
    };
    let i = Side::index(side);
    let mine: Vec<&KeyEntry> = keys
        .iter()
        .filter(|(owner, e)| *owner == side && e.peer.is_some_and(|p| p.contains(remote.ip())))
        .map(|(_, e)| e)
        .collect();
    let mut md5: Vec<KeyEntry> = mine
        .iter()
        .filter(|e| e.mkt().is_none())
        .map(|e| (*e).clone())
        .collect();
    // TCP-MD5 lookup is longest-prefix: the most specific key first.
    md5.sort_by_key(|e| std::cmp::Reverse(e.peer.map_or(0, |p| p.len)));
    let mkts: Vec<Mkt> = mine.iter().filter_map(|e| e.mkt().cloned()).collect();
    if mkts.is_empty() {
        return Ok((md5, None));
    }
    let local_isn = isn[i].unwrap_or(0);
    let remote_isn = isn[1 - i].unwrap_or(0);
    let conn = Connection::new(local, remote, local_isn, remote_isn);
    let mut v = FlowValidator::new(conn, mkts)
        .map_err(|e| format!("reference validator for {local} -> {remote}: {e}"))?;
    if let Some(r) = restored {
        let (my_sne, peer_sne) = match side {
            Side::Server => (r.server_sne, r.client_sne),
            Side::Client => (r.client_sne, r.server_sne),
        };
        let (my_next, peer_next) = match side {
            Side::Server => (r.server_next_seq, r.client_next_seq),
            Side::Client => (r.client_next_seq, r.server_next_seq),
        };
        v.set_sne_tracker(
            Direction::LocalToRemote,
            SneTracker::with_state(my_next, my_sne),
        );
        v.set_sne_tracker(
            Direction::RemoteToLocal,
            SneTracker::with_state(peer_next, peer_sne),
        );
    }
    Ok((md5, Some(v)))
}

fn flow_key_of(r: &RestoredFlow) -> FlowKey {
    (
        SocketAddr::new(r.server.0, r.server.1),
        SocketAddr::new(r.client.0, r.client.1),
    )
}

fn describe(from: Side, seg: &SegmentRef<'_>) -> String {
    let (s, d) = endpoints(seg);
    format!(
        "{} segment {s} -> {d} seq {}",
        from.name(),
        seg.tcp_packet().seq_number()
    )
}

/// Everything one capture's cross-check needs ([`analyze_capture`]).
#[derive(Debug, Clone, Copy)]
pub struct CaptureInput<'a> {
    /// The address family of the test.
    pub family: Family,
    /// Every captured frame, in capture order (restored views count frame indices in it).
    pub frames: &'a [Frame],
    /// The keys the peers installed.
    pub keys: &'a [(Side, KeyEntry)],
    /// Flows restored with `TCP_REPAIR` (both sides' ISNs, SEQs and SNEs).
    pub restored: &'a [RestoredFlow],
    /// One side's own view of a socket it restored, from a frame index on.
    pub views: &'a [RestoredView],
    /// TCP-AO keys the peers installed whose algorithm the reference lacks (rule 3 only).
    pub unverifiable: &'a [(Side, UnverifiableKey)],
    /// IP packets the test built and injected itself: not held to rules 1 and 3, counted for
    /// rule 2.
    pub crafted: &'a [Vec<u8>],
    /// IP packets the test built and injected itself that it expects to verify: held to rule
    /// 1 (the test signed them as the peer's kernel would), not to rule 3 (no peer's kernel
    /// wrote their options).
    pub injected: &'a [Vec<u8>],
    /// Of `crafted`, the packets a peer's kernel wrote and the test verified with its own
    /// model ([`super::Capture::register_modelled`]): not held to rule 1, held to rule 3.
    pub modelled: &'a [Vec<u8>],
    /// (before, after) netns MIBs of server and client.
    pub mibs: &'a [Option<(NetnsMib, NetnsMib)>; 2],
}

/// The keys `sender` holds for destination `dst`, as rule 3 needs them: every registered key
/// (the union over the test: a key deleted during it still counts) whose peer prefix holds
/// `dst`.
fn held_keys(
    keys: &[(Side, KeyEntry)],
    unverifiable: &[(Side, UnverifiableKey)],
    sender: Side,
    dst: IpAddr,
) -> HeldKeys {
    let mut held = HeldKeys::default();
    for (_, e) in keys
        .iter()
        .filter(|(owner, e)| *owner == sender && e.peer.is_some_and(|p| p.contains(dst)))
    {
        match e.mkt() {
            Some(m) => held.ao.push(AoIds {
                send_id: m.send_id,
                recv_id: m.recv_id,
                mac_len: m.mac_len(),
            }),
            None => held.md5 = true,
        }
    }
    held.ao.extend(
        unverifiable
            .iter()
            .filter(|(owner, k)| *owner == sender && k.peer.contains(dst))
            .map(|(_, k)| k.ids),
    );
    held
}

/// The cross-check of one capture: every captured segment
/// is checked (rule 1: kernel-signed segments verify with the sender's view; rule 2: the
/// receiver's MIB rejections match the reference's; rule 3: the fields of every kernel-signed
/// segment), with restored sockets' per-side views and the test's crafted segments taken into
/// account.
pub fn analyze_capture(input: &CaptureInput<'_>) -> XcheckReport {
    let CaptureInput {
        family: _,
        frames,
        keys,
        restored,
        views,
        unverifiable,
        crafted,
        injected,
        modelled,
        mibs,
    } = *input;
    let mut r = XcheckReport {
        frames: frames.len(),
        ..XcheckReport::default()
    };
    // Segments the test crafted, compared by TCP segment (the kernel may fill in the IPv4
    // ID/checksum of a raw packet). They do not teach ISNs: no peer's kernel chose them.
    let crafted_tcp: Vec<&[u8]> = crafted
        .iter()
        .filter_map(|c| SegmentRef::parse(c).ok().map(|s| s.tcp))
        .collect();
    let injected_tcp: Vec<&[u8]> = injected
        .iter()
        .filter_map(|c| SegmentRef::parse(c).ok().map(|s| s.tcp))
        .collect();
    let modelled_tcp: Vec<&[u8]> = modelled
        .iter()
        .filter_map(|c| SegmentRef::parse(c).ok().map(|s| s.tcp))
        .collect();
    let mut crafted_seen = 0usize;
    // Per receiving side, crafted segments sent as IP fragments (the first fragment of each),
    // and how many of them the reference got whole again and judged.
    let mut unjudged_for = [0usize; 2];
    let mut reassembled_for = [0usize; 2];
    // The test's fragments put back together (tcpao-refimpl's reassembler), by the frame
    // that completed each: the reference judges the segment they carry (RFC 5925 §5.1).
    let mut reassembler = Reassembler::new();
    let reassembled: HashMap<usize, Vec<u8>> = frames
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let ip = f.data.get(14..)?;
            if !crafted.iter().any(|c| ip.starts_with(c)) {
                return None;
            }
            match reassembler.feed(ip) {
                Ok(Fed::Complete { packet, .. }) => Some((i, packet)),
                _ => None,
            }
        })
        .collect();
    let mut injected_seen = 0usize;
    // Pass 1: decode, learn ISNs.
    let mut decoded = Vec::new();
    let mut flows: HashMap<FlowKey, FlowInfo> = HashMap::new();
    for rf in restored {
        let key = (
            SocketAddr::new(rf.server.0, rf.server.1),
            SocketAddr::new(rf.client.0, rf.client.1),
        );
        let f = flows.entry(key).or_default();
        f.isn = [Some(rf.server_isn), Some(rf.client_isn)];
        f.restored = Some(*rf);
    }
    for (frame_index, frame) in frames.iter().enumerate() {
        match decode(frame) {
            Ok(Some(seg)) => {
                let t = seg.tcp_packet();
                let crafted = crafted_tcp.contains(&seg.tcp);
                if crafted {
                    crafted_seen += 1;
                }
                let injected = !crafted && injected_tcp.contains(&seg.tcp);
                if injected {
                    injected_seen += 1;
                }
                if t.syn() && !crafted {
                    let (src, dst) = endpoints(&seg);
                    let f = flows.entry(flow_of(frame.from, &seg)).or_default();
                    let (i, seq) = (Side::index(frame.from), t.seq_number());
                    // The ISNs of the latest connection on this 4-tuple.
                    let cur = match f.reincarnations.last_mut() {
                        Some((_, isn)) => isn,
                        None => &mut f.isn,
                    };
                    if !t.ack() && cur[i].is_some_and(|known| known != seq) {
                        // A new SYN with another ISN: a new connection on the same 4-tuple.
                        let mut isn = [None, None];
                        isn[i] = Some(seq);
                        if src == dst {
                            isn[1 - i] = Some(seq);
                        }
                        f.reincarnations.push((decoded.len(), isn));
                    } else {
                        cur[i].get_or_insert(seq);
                        if src == dst {
                            // A socket connected to itself: one ISN for both directions.
                            cur[1 - i].get_or_insert(seq);
                        }
                    }
                }
                decoded.push(Decoded {
                    from: frame.from,
                    frame: frame_index,
                    crafted,
                    injected: (crafted && !modelled_tcp.contains(&seg.tcp)) || injected,
                    seg,
                });
            }
            Ok(None) => {}
            // An IP fragment the test crafted and sent (registered byte for byte): nothing to
            // verify on its own. The one that completes its datagram brings the reassembled
            // segment, which the reference judges like any crafted segment.
            Err(_)
                if crafted
                    .iter()
                    .any(|c| frame.data.get(14..).is_some_and(|ip| ip.starts_with(c))) =>
            {
                crafted_seen += 1;
                if frame.data.get(14..).is_some_and(is_first_fragment) {
                    unjudged_for[1 - Side::index(frame.from)] += 1;
                }
                if let Some(seg) = reassembled
                    .get(&frame_index)
                    .and_then(|p| SegmentRef::parse(p).ok())
                {
                    reassembled_for[1 - Side::index(frame.from)] += 1;
                    decoded.push(Decoded {
                        from: frame.from,
                        frame: frame_index,
                        crafted: true,
                        injected: !modelled_tcp.contains(&seg.tcp),
                        seg,
                    });
                }
            }
            Err(e) => r.fail(format!("a captured frame is malformed: {e}")),
        }
    }
    r.tcp_segments = decoded.len();
    // Pass 2: validate in capture order.
    let mut checks: HashMap<FlowKey, FlowCheck> = HashMap::new();
    let mut rejected_for = [0usize; 2];
    let mut md5_rejected_for = [0usize; 2];
    // Per flow, which sides ([server, client]) reset it: their socket is gone.
    let mut reset: HashMap<FlowKey, [bool; 2]> = HashMap::new();
    // Per receiving side, segments sent after it reset the flow that its listener rejects.
    let mut late_rejected_for = [0usize; 2];
    // Rule 3: the keys each sender holds per destination.
    let mut held_by: HashMap<(Side, IpAddr), HeldKeys> = HashMap::new();
    for (index, d) in decoded.iter().enumerate() {
        {
            let t = d.seg.tcp_packet();
            if !d.crafted && (t.rst() || t.syn()) {
                // A RST ends the sender's socket; a SYN (new connection) starts a new one.
                reset.entry(flow_of(d.from, &d.seg)).or_default()[Side::index(d.from)] = t.rst();
            }
        }
        let auth = d.seg.tcp_packet().auth_options();
        // Rule 3: the fields, against the keys the sender holds for the destination. Not for
        // segments the test injected (crafted or not): no peer's kernel wrote them. A segment
        // whose options do not parse is checked too: the rule names the field that is wrong.
        let mut fields_broken = false;
        if !d.injected
            && auth
                .as_ref()
                .map_or(true, |a| a.ao.is_some() || a.md5.is_some())
        {
            let held = held_by
                .entry((d.from, d.seg.dst))
                .or_insert_with(|| held_keys(keys, unverifiable, d.from, d.seg.dst));
            r.fields_checked += 1;
            if let Err(why) = fields::check(&d.seg.tcp_packet(), held) {
                fields_broken = true;
                r.fail(format!(
                    "the {} written by the kernel is wrong: {why}",
                    describe(d.from, &d.seg)
                ));
            }
        }
        let auth = match auth {
            Ok(a) => a,
            // The test broke its options on purpose (e.g. two TCP-AO options).
            Err(_) if d.crafted => continue,
            Err(e) => {
                if !fields_broken {
                    r.fail(format!(
                        "the {} has malformed options: {e}",
                        describe(d.from, &d.seg)
                    ));
                }
                continue;
            }
        };
        if auth.ao.is_none() && auth.md5.is_none() {
            continue;
        }
        let key = flow_of(d.from, &d.seg);
        let check = match checks.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let info = flows.remove(&key).unwrap_or_default();
                match build_flow(&key, &info, keys) {
                    Ok(mut c) => {
                        for v in views.iter().filter(|v| flow_key_of(&v.flow) == key) {
                            c.pending[Side::index(v.side)].push(*v);
                        }
                        for p in &mut c.pending {
                            p.sort_by_key(|v| v.since_frame);
                        }
                        e.insert(c)
                    }
                    Err(err) => {
                        r.fail(err);
                        continue;
                    }
                }
            }
        };
        // A new connection on the same 4-tuple starts here: check with its ISNs from now on.
        while check
            .reincarnations
            .front()
            .is_some_and(|(at, _)| *at <= index)
        {
            if let Some((_, isn)) = check.reincarnations.pop_front() {
                for side in [Side::Server, Side::Client] {
                    match build_side(&key, side, isn, None, keys) {
                        Ok((_, v)) => {
                            check.validators[Side::index(side)] = v;
                            check.previous[Side::index(side)] = None;
                        }
                        Err(err) => r.fail(err),
                    }
                }
            }
        }
        // A side restored its socket before this segment: check with its view from now on.
        for side in [Side::Server, Side::Client] {
            let i = Side::index(side);
            while check.pending[i]
                .first()
                .is_some_and(|v| v.since_frame <= d.frame)
            {
                let v = check.pending[i].remove(0);
                let isn = [Some(v.flow.server_isn), Some(v.flow.client_isn)];
                match build_side(&key, side, isn, Some(&v.flow), keys) {
                    Ok((_, validator)) => {
                        let previous = std::mem::replace(&mut check.validators[i], validator);
                        check.previous[i] = if v.exact { None } else { previous };
                    }
                    Err(err) => r.fail(err),
                }
            }
        }
        let (si, ri) = (Side::index(d.from), Side::index(d.from.other()));
        if auth.ao.is_some() {
            r.ao_segments += 1;
            // Rule 1: the sender's view (LocalToRemote).
            // Not for crafted segments: no peer's kernel signed them.
            if let Some(v) = check.validators[si].as_mut().filter(|_| !d.crafted) {
                let mut verdict = v.validate(Direction::LocalToRemote, &d.seg);
                match (&verdict, check.previous[si].as_mut()) {
                    // The sender verified with its restored view: the old socket is done.
                    (Verdict::Good { .. }, Some(_)) => check.previous[si] = None,
                    // A segment of the old socket, read after the restore was registered.
                    (Verdict::Bad { .. }, Some(prev)) => {
                        let old = prev.validate(Direction::LocalToRemote, &d.seg);
                        if old.is_accepted() {
                            verdict = old;
                        }
                    }
                    _ => {}
                }
                match verdict {
                    Verdict::Good { sne, .. } => {
                        r.verified += 1;
                        *r.verified_sne[si].entry(sne).or_default() += 1;
                    }
                    Verdict::Bad {
                        key_id,
                        sne,
                        reason,
                    } => {
                        r.verified += 1;
                        r.rejected += 1;
                        r.fail(format!(
                            "a {} signed by the kernel with key {key_id} is rejected by tcpao-refimpl ({reason}, SNE {sne})",
                            describe(d.from, &d.seg)
                        ));
                    }
                    // Not signed with a registered key: nothing to compare.
                    _ => {}
                }
            }
            // Rule 2 input: the receiver's view (RemoteToLocal).
            if let Some(v) = check.validators[ri].as_mut() {
                if let Verdict::Bad { .. } = v.validate(Direction::RemoteToLocal, &d.seg) {
                    // Sent to the receiver's old socket, read after its restore: check with
                    // the view it had then.
                    let old_ok = check.previous[ri].as_mut().is_some_and(|p| {
                        p.validate(Direction::RemoteToLocal, &d.seg).is_accepted()
                    });
                    if !old_ok {
                        rejected_for[ri] += 1;
                    }
                } else if reset.get(&key).is_some_and(|r| r[ri])
                    && rejected_as_syncookie_ack(&key, d.from.other(), &d.seg, keys)
                {
                    late_rejected_for[ri] += 1;
                }
            }
        } else {
            r.md5_segments += 1;
            if let Some(k) = check.md5[si].first().filter(|_| !d.crafted) {
                match tcpao_refimpl::verify_md5(&d.seg, k.secret()) {
                    Ok(true) => r.verified += 1,
                    Ok(false) => {
                        r.verified += 1;
                        r.rejected += 1;
                        r.fail(format!(
                            "a TCP-MD5 {} signed by the kernel is rejected by tcpao-refimpl",
                            describe(d.from, &d.seg)
                        ));
                    }
                    Err(e) => r.fail(format!(
                        "tcpao-refimpl cannot check the {}: {e}",
                        describe(d.from, &d.seg)
                    )),
                }
            }
            if let Some(k) = check.md5[ri].first() {
                if let Ok(false) = tcpao_refimpl::verify_md5(&d.seg, k.secret()) {
                    md5_rejected_for[ri] += 1;
                }
            }
        }
    }
    for v in views.iter().filter(|v| !v.exact) {
        r.notes.push(format!(
            "xcheck: the {}'s restored view may start early (a capture reader did not drain in time): until it sent a segment that verifies with it, segments failing with it were also checked with its previous view",
            v.side.name()
        ));
    }
    if !crafted.is_empty() {
        r.notes.push(format!(
            "xcheck: {crafted_seen} captured segments were crafted by the test (rule 1 not applied; {} registered)",
            crafted.len()
        ));
    }
    if !injected.is_empty() {
        r.notes.push(format!(
            "xcheck: {injected_seen} captured segments were injected by the test as it expects a peer to sign them (rule 3 not applied; {} registered)",
            injected.len()
        ));
    }
    if r.verified_sne.iter().flatten().any(|(sne, _)| *sne != 0) {
        for side in [Side::Server, Side::Client] {
            let per: Vec<String> = r.verified_sne[Side::index(side)]
                .iter()
                .map(|(sne, n)| format!("SNE {sne}: {n}"))
                .collect();
            r.notes.push(format!(
                "xcheck: {} segments verified per SNE: {}",
                side.name(),
                per.join(", ")
            ));
        }
    }
    for side in [Side::Server, Side::Client] {
        let Some((before, after)) = &mibs[Side::index(side)] else {
            continue;
        };
        let i = Side::index(side);
        for (counter, rejected, late) in [
            ("TCPAOBad", rejected_for[i], late_rejected_for[i]),
            ("TCPMD5Failure", md5_rejected_for[i], 0),
        ] {
            let grew = after.get(counter).saturating_sub(before.get(counter));
            if late > 0 {
                r.notes.push(format!(
                    "xcheck: {}: {late} segments arrived after it reset the connection; checked as \
                     its listener checks a possible syncookie ACK (ISNs SEQ-1/ACK-1), tcpao-refimpl \
                     rejects them",
                    side.name()
                ));
            }
            let rejected = rejected + late;
            if grew > 0 && rejected == 0 && unjudged_for[i] > 0 {
                // The test's own verdict on such a segment stands (kernel finding 7 is one).
                r.notes.push(format!(
                    "xcheck: {}: kernel {counter} +{grew}; {} crafted segments reached it only as \
                     IP fragments; tcpao-refimpl reassembled {} of them and found every one valid",
                    side.name(),
                    unjudged_for[i],
                    reassembled_for[i]
                ));
            } else if grew > 0 && rejected == 0 && r.verified > 0 {
                r.fail(format!(
                    "the {} kernel counted {grew} bad segments ({counter}), but tcpao-refimpl found every \
                     signed segment sent to it valid",
                    side.name()
                ));
            } else if grew > 0 || rejected > 0 {
                r.notes.push(format!(
                    "xcheck: {}: kernel {counter} +{grew}, tcpao-refimpl rejected {rejected} segments sent to it",
                    side.name()
                ));
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};
    use tcpao_refimpl::wire::{TcpFlags, TcpRepr};
    use tcpao_refimpl::{ConnectionSigner, MasterKey};

    const SECRET: &[u8] = b"a test secret";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn signer(local: SocketAddr, remote: SocketAddr, isns: (u32, u32)) -> ConnectionSigner {
        let mkt = Mkt::new(
            100,
            100,
            tcpao_refimpl::Algorithm::HmacSha1,
            MasterKey::new(SECRET.to_vec()),
        );
        ConnectionSigner::new(mkt, Connection::new(local, remote, isns.0, isns.1)).unwrap()
    }

    fn frame(
        from: Side,
        ts: u64,
        s: &mut ConnectionSigner,
        t: (u16, u16, u32, u32, TcpFlags),
    ) -> Frame {
        let repr = TcpRepr {
            src_port: t.0,
            dst_port: t.1,
            seq_number: t.2,
            ack_number: t.3,
            flags: t.4,
            window_len: 1000,
            urgent_at: 0,
            options: &[],
            payload: &[],
        };
        let (pkt, _) = s.sign(&repr).unwrap();
        let mut data = vec![0u8; 12];
        data.extend_from_slice(&0x0800u16.to_be_bytes());
        data.extend_from_slice(&pkt);
        Frame {
            ts: SystemTime::UNIX_EPOCH + Duration::from_secs(ts),
            from,
            data,
        }
    }

    fn keys() -> Vec<(Side, KeyEntry)> {
        let (srv, cli) = (addr("10.0.254.1:7010"), addr("10.0.1.1:40000"));
        [(Side::Server, srv, cli), (Side::Client, cli, srv)]
            .into_iter()
            .map(|(owner, local, peer)| {
                let mkt = Mkt::new(100, 100, tcpao_refimpl::Algorithm::HmacSha1, SECRET);
                let key = tcpao_refimpl::verify::keys::EntryKey::Ao(mkt);
                (
                    owner,
                    super::super::key_entry(key, local.ip(), peer.ip(), 32),
                )
            })
            .collect()
    }

    /// One handshake on the 4-tuple with ISNs (client, server), at time `t`.
    fn handshake(t: u64, isn: (u32, u32)) -> Vec<Frame> {
        let (srv, cli) = (addr("10.0.254.1:7010"), addr("10.0.1.1:40000"));
        let mut c = signer(cli, srv, (isn.0, isn.1));
        let mut s = signer(srv, cli, (isn.1, isn.0));
        let (syn, ack) = (TcpFlags::SYN, TcpFlags::ACK);
        vec![
            frame(Side::Client, t, &mut c, (40000, 7010, isn.0, 0, syn)),
            frame(
                Side::Server,
                t,
                &mut s,
                (7010, 40000, isn.1, isn.0 + 1, syn | ack),
            ),
            frame(
                Side::Client,
                t,
                &mut c,
                (40000, 7010, isn.0 + 1, isn.1 + 1, ack),
            ),
        ]
    }

    #[test]
    fn a_second_connection_on_the_same_4_tuple_uses_its_own_isns() {
        let mut frames = handshake(1, (1000, 5000));
        frames.extend(handshake(2, (9000, 7000)));
        let r = run(&frames, &[], &[None, None]);
        assert_eq!(r.failure, None, "{r:?}");
        assert_eq!((r.verified, r.rejected), (6, 0));
    }

    #[test]
    fn a_restored_view_applies_from_its_time_on() {
        let (srv, cli) = (addr("10.0.254.1:7010"), addr("10.0.1.1:40000"));
        let mut frames = handshake(1, (1000, 5000));
        // A last segment of the old socket, read only after the restore was registered.
        let mut old = signer(cli, srv, (1000, 5000));
        old.set_sne_state(1001, 0);
        frames.push(frame(
            Side::Client,
            6,
            &mut old,
            (40000, 7010, 1001, 5001, TcpFlags::ACK),
        ));
        // The client restored at t=5 believing its ISN is 1001 (a corrupted image).
        let mut c = signer(cli, srv, (1001, 5000));
        c.set_sne_state(1001, 0);
        frames.push(frame(
            Side::Client,
            6,
            &mut c,
            (40000, 7010, 1001, 5001, TcpFlags::ACK),
        ));
        let view = client_view(1001, false);
        let r = run(&frames, &[view], &[None, None]);
        assert_eq!(r.failure, None, "{r:?}");
        assert_eq!(r.verified, 5);
        // Without the view, the reference rejects the corrupted segment (rule 1).
        let r = run(&frames, &[], &[None, None]);
        assert!(
            r.failure
                .is_some_and(|f| f.contains("rejected by tcpao-refimpl"))
        );
    }

    /// `restore/*/wrong-receive-isn`: the client restored with a wrong receive ISN, and the
    /// server's first segment after the restore reached it before the client sent anything.
    /// The client's kernel counted it bad; with an exact boundary the reference rejects it
    /// with the client's view (rule 2 holds). The fallback to the previous view, kept only
    /// for a boundary that may be early, would take it for the old socket's and find every
    /// segment sent to the client valid.
    #[test]
    fn an_exact_restore_boundary_keeps_no_fallback() {
        let (srv, cli) = (addr("10.0.254.1:7010"), addr("10.0.1.1:40000"));
        let mut frames = handshake(1, (1000, 5000));
        let mut s = signer(srv, cli, (5000, 1000));
        s.set_sne_state(5001, 0);
        frames.push(frame(
            Side::Server,
            6,
            &mut s,
            (7010, 40000, 5001, 1001, TcpFlags::ACK | TcpFlags::PSH),
        ));
        // The client believes the server's ISN is 5001.
        let mut view = client_view(1000, true);
        view.flow.server_isn = 5001;
        let mibs = [None, Some((mib_with_bad(0), mib_with_bad(1)))];
        let r = run(&frames, &[view], &mibs);
        assert_eq!(r.failure, None, "{r:?}");
        view.exact = false;
        let r = run(&frames, &[view], &mibs);
        assert!(
            r.failure.as_deref().is_some_and(|f| f.contains("TCPAOBad")),
            "{r:?}"
        );
    }

    #[test]
    fn crafted_segments_skip_rule_1_even_on_a_restored_flow() {
        let (srv, cli) = (addr("10.0.254.1:7010"), addr("10.0.1.1:40000"));
        let mut frames = handshake(1, (1000, 5000));
        // The client restored with its true view.
        let mut c = signer(cli, srv, (1000, 5000));
        c.set_sne_state(1001, 0);
        frames.push(frame(
            Side::Client,
            2,
            &mut c,
            (40000, 7010, 1001, 5001, TcpFlags::ACK),
        ));
        // A segment the test signed with wrong ISNs (a bad MAC), and a crafted SYN with
        // another ISN that must not start a new connection on the 4-tuple.
        let mut wrong = signer(cli, srv, (7, 7));
        wrong.set_sne_state(1001, 0);
        let bad = frame(
            Side::Client,
            3,
            &mut wrong,
            (40000, 7010, 1001, 5001, TcpFlags::ACK),
        );
        let syn = frame(
            Side::Client,
            3,
            &mut wrong,
            (40000, 7010, 7, 0, TcpFlags::SYN),
        );
        frames.push(bad.clone());
        frames.push(syn.clone());
        frames.push(frame(
            Side::Client,
            4,
            &mut c,
            (40000, 7010, 1001, 5001, TcpFlags::ACK),
        ));
        let view = client_view(1000, true);
        let crafted = vec![bad.data[14..].to_vec(), syn.data[14..].to_vec()];
        let input = CaptureInput {
            family: Family::Ipv4,
            frames: &frames,
            keys: &keys(),
            restored: &[],
            views: &[view],
            unverifiable: &[],
            crafted: &crafted,
            injected: &[],
            modelled: &[],
            mibs: &[None, None],
        };
        let r = analyze_capture(&input);
        assert_eq!(r.failure, None, "{r:?}");
        // Three handshake segments and two kernel-signed ACKs; the crafted ones are skipped.
        assert_eq!((r.verified, r.rejected), (5, 0));
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("2 captured segments were crafted"))
        );
        // Not registered as crafted, the bad segment breaks rule 1.
        let r = analyze_capture(&CaptureInput {
            crafted: &[],
            injected: &[],
            modelled: &[],
            ..input
        });
        assert!(
            r.failure
                .is_some_and(|f| f.contains("rejected by tcpao-refimpl"))
        );
    }

    /// The cross-check of `frames` with the test keys and `views`, no crafted segments.
    fn run(
        frames: &[Frame],
        views: &[RestoredView],
        mibs: &[Option<(NetnsMib, NetnsMib)>; 2],
    ) -> XcheckReport {
        analyze_capture(&CaptureInput {
            family: Family::Ipv4,
            frames,
            keys: &keys(),
            restored: &[],
            views,
            unverifiable: &[],
            crafted: &[],
            injected: &[],
            modelled: &[],
            mibs,
        })
    }

    /// The client's view of the test flow restored at frame 3 with client ISN `client_isn`;
    /// `exact`: the capture drained in time.
    fn client_view(client_isn: u32, exact: bool) -> RestoredView {
        let (srv, cli) = (addr("10.0.254.1:7010"), addr("10.0.1.1:40000"));
        RestoredView {
            side: Side::Client,
            flow: RestoredFlow {
                server: (srv.ip(), srv.port()),
                client: (cli.ip(), cli.port()),
                server_isn: 5000,
                client_isn,
                server_next_seq: 5001,
                client_next_seq: 1001,
                server_sne: 0,
                client_sne: 0,
            },
            since_frame: 3,
            exact,
        }
    }

    fn mib_with_bad(bad: u64) -> NetnsMib {
        let netstat = format!("TcpExt: TCPAOBad TCPMD5Failure\nTcpExt: {bad} 0\n");
        NetnsMib::parse(&netstat).unwrap()
    }

    /// The test's IP fragments are reassembled and the segment they carry judged: valid ones
    /// leave a kernel's bad count to the test's own verdict (kernel finding 7), a bad MAC is
    /// counted as the reference's rejection.
    #[test]
    fn crafted_fragments_are_judged_reassembled() {
        let (srv, cli) = (addr("10.0.254.1:7010"), addr("10.0.1.1:40000"));
        let isn = (1000, 5000);
        // (name, ISNs the crafted segment is signed with, the note expected)
        let rows = [
            (
                "valid",
                isn,
                "tcpao-refimpl reassembled 1 of them and found every one valid",
            ),
            (
                "bad MAC",
                (7, 7),
                "kernel TCPAOBad +1, tcpao-refimpl rejected 1",
            ),
        ];
        for (name, signed_with, note) in rows {
            let mut frames = handshake(1, isn);
            let mut c = signer(cli, srv, signed_with);
            c.set_sne_state(1001, 0);
            let payload = vec![0x5a; 600];
            let repr = TcpRepr {
                src_port: 40000,
                dst_port: 7010,
                seq_number: 1001,
                ack_number: 5001,
                flags: TcpFlags::ACK | TcpFlags::PSH,
                window_len: 1000,
                urgent_at: 0,
                options: &[],
                payload: &payload,
            };
            let (pkt, _) = c.sign(&repr).unwrap();
            let crafted = tcpao_refimpl::reassembly::fragment(&pkt, 256).unwrap();
            for ip in &crafted {
                let mut data = vec![0u8; 12];
                data.extend_from_slice(&0x0800u16.to_be_bytes());
                data.extend_from_slice(ip);
                frames.push(Frame {
                    ts: SystemTime::UNIX_EPOCH + Duration::from_secs(2),
                    from: Side::Client,
                    data,
                });
            }
            let input = CaptureInput {
                family: Family::Ipv4,
                frames: &frames,
                keys: &keys(),
                restored: &[],
                views: &[],
                unverifiable: &[],
                crafted: &crafted,
                injected: &[],
                modelled: &[],
                mibs: &[Some((mib_with_bad(0), mib_with_bad(1))), None],
            };
            let r = analyze_capture(&input);
            assert_eq!(r.failure, None, "{name}: {r:?}");
            assert_eq!(
                r.tcp_segments, 4,
                "{name}: three of the handshake, one reassembled"
            );
            assert!(
                r.notes.iter().any(|n| n.contains(note)),
                "{name}: {:?}",
                r.notes
            );
        }
    }

    /// A late ACK reaching the server after it reset the connection meets its listener, which
    /// checks it as a syncookie ACK (ISNs SEQ-1/ACK-1) and counts TCPAOBad (rule 2).
    #[test]
    fn a_late_ack_after_a_reset_explains_tcpaobad() {
        let (srv, cli) = (addr("10.0.254.1:7010"), addr("10.0.1.1:40000"));
        let isn = (1000, 5000);
        let mut frames = handshake(1, isn);
        let mut s = signer(srv, cli, (isn.1, isn.0));
        s.set_sne_state(5001, 0);
        let mut c = signer(cli, srv, isn);
        c.set_sne_state(1101, 0);
        let rst = rst_frame(&mut s);
        // The client had sent 100 bytes: its SEQ - 1 is not its ISN.
        let late = frame(
            Side::Client,
            3,
            &mut c,
            (40000, 7010, 1101, 5001, TcpFlags::ACK),
        );
        let mibs = [Some((mib_with_bad(0), mib_with_bad(1))), None];
        // The ACK before the reset: the established socket accepts it, so the TCPAOBad is
        // unexplained.
        let mut before = frames.clone();
        before.extend([late.clone(), rst.clone()]);
        let r = run(&before, &[], &mibs);
        assert!(
            r.failure.as_deref().is_some_and(|f| f.contains("TCPAOBad")),
            "{r:?}"
        );
        // After the reset it is explained, and said so.
        frames.extend([rst, late]);
        let r = run(&frames, &[], &mibs);
        assert_eq!(r.failure, None, "{r:?}");
        assert_eq!((r.verified, r.rejected), (5, 0));
        assert!(
            r.notes.iter().any(|n| n.contains("syncookie")),
            "{:?}",
            r.notes
        );
        // Without a counted bad segment nothing fails either.
        let r = run(&frames, &[], &[None, None]);
        assert_eq!(r.failure, None, "{r:?}");
        // The first ACK after the handshake: SEQ - 1 and ACK - 1 are the true ISNs, so the
        // listener accepts its MAC and cannot have counted it.
        let mut first = handshake(1, isn);
        let mut c = signer(cli, srv, isn);
        c.set_sne_state(1001, 0);
        first.push(rst_frame(&mut s));
        first.push(frame(
            Side::Client,
            3,
            &mut c,
            (40000, 7010, 1001, 5001, TcpFlags::ACK),
        ));
        let r = run(&first, &[], &mibs);
        assert!(
            r.failure.as_deref().is_some_and(|f| f.contains("TCPAOBad")),
            "{r:?}"
        );
    }

    /// The handshake's keys with another MAC length, for both sides.
    fn keys_with_mac_len(mac_len: usize) -> Vec<(Side, KeyEntry)> {
        keys()
            .into_iter()
            .map(|(owner, mut e)| {
                if let tcpao_refimpl::verify::keys::EntryKey::Ao(m) = &mut e.key {
                    *m = m.clone().with_mac_len(mac_len).unwrap();
                }
                (owner, e)
            })
            .collect()
    }

    fn run_with(frames: &[Frame], keys: &[(Side, KeyEntry)]) -> XcheckReport {
        analyze_capture(&CaptureInput {
            family: Family::Ipv4,
            frames,
            keys,
            restored: &[],
            views: &[],
            unverifiable: &[],
            crafted: &[],
            injected: &[],
            modelled: &[],
            mibs: &[None, None],
        })
    }

    /// Rule 3 sees what rule 1 cannot: segments whose MAC verifies (it covers the wrong
    /// field) or that no registered key signed.
    #[test]
    fn rule_3_checks_the_fields_of_every_kernel_segment() {
        let (srv, cli) = (addr("10.0.254.1:7010"), addr("10.0.1.1:40000"));
        let ack = (40000, 7010, 1001, 5001, TcpFlags::ACK);
        let clean = handshake(1, (1000, 5000));
        let r = run(&clean, &[], &[None, None]);
        assert_eq!((r.failure, r.verified, r.fields_checked), (None, 3, 3));
        // A wrong RNextKeyID under a MAC that covers it: rule 1 verifies, rule 3 fails.
        let mut c = signer(cli, srv, (1000, 5000));
        c.set_sne_state(1001, 0);
        c.rnext_key_id = 7;
        let mut frames = clean.clone();
        frames.push(frame(Side::Client, 2, &mut c, ack));
        let r = run(&frames, &[], &[None, None]);
        assert_eq!((r.verified, r.rejected, r.fields_checked), (4, 0, 4));
        assert!(
            r.failure
                .as_deref()
                .is_some_and(|f| f.contains("RNextKeyID 7")),
            "{r:?}"
        );
        // A KeyID no registered key has: not "unsigned by a peer", a failure.
        let mkt = Mkt::new(55, 100, tcpao_refimpl::Algorithm::HmacSha1, SECRET);
        let conn = Connection::new(cli, srv, 1000, 5000);
        let mut c = ConnectionSigner::new(mkt, conn).unwrap();
        c.set_sne_state(1001, 0);
        let mut frames = clean.clone();
        frames.push(frame(Side::Client, 2, &mut c, ack));
        let r = run(&frames, &[], &[None, None]);
        assert_eq!((r.verified, r.fields_checked), (3, 4));
        assert!(
            r.failure
                .as_deref()
                .is_some_and(|f| f.contains("KeyID 55 is not the SendID")),
            "{r:?}"
        );
        // Garbage after a 10-byte MAC, signed over: rule 1 verifies, rule 3 fails.
        let keys = keys_with_mac_len(10);
        let mkt = keys[1].1.mkt().unwrap().clone();
        let mut c = ConnectionSigner::new(mkt.clone(), conn).unwrap();
        c.set_sne_state(1001, 0);
        let mut f = frame(Side::Client, 2, &mut c, ack);
        // Ethernet 14 + IPv4 20 + TCP 20 + the 14-byte option: the two pad bytes. Garbage
        // that happens to parse (an option of kind 222, length 2), so the reference can sign.
        assert_eq!(&f.data[68..70], &[1, 1]);
        f.data[68..70].copy_from_slice(&[0xde, 0x02]);
        let sign = tcpao_refimpl::AoSign::from_mkt(&mkt, c.keys().for_send(false), 0);
        tcpao_refimpl::sign_in_place(&mut f.data[14..], &sign).unwrap();
        let mut s = ConnectionSigner::new(
            keys[0].1.mkt().unwrap().clone(),
            Connection::new(srv, cli, 5000, 1000),
        )
        .unwrap();
        let mut c = ConnectionSigner::new(mkt, conn).unwrap();
        let (syn, synack) = (TcpFlags::SYN, TcpFlags::SYN | TcpFlags::ACK);
        let mut frames = vec![
            frame(Side::Client, 1, &mut c, (40000, 7010, 1000, 0, syn)),
            frame(Side::Server, 1, &mut s, (7010, 40000, 5000, 1001, synack)),
        ];
        let r = run_with(&frames, &keys);
        assert_eq!((r.failure, r.verified, r.fields_checked), (None, 2, 2));
        frames.push(f);
        let r = run_with(&frames, &keys);
        assert_eq!((r.verified, r.rejected, r.fields_checked), (3, 0, 3));
        assert!(
            r.failure
                .as_deref()
                .is_some_and(|f| f.contains("[de, 02], not NOPs")),
            "{r:?}"
        );
        // A crafted segment is not the kernel's: no rule 3.
        let crafted = vec![frames[2].data[14..].to_vec()];
        let r = analyze_capture(&CaptureInput {
            family: Family::Ipv4,
            frames: &frames,
            keys: &keys,
            restored: &[],
            views: &[],
            unverifiable: &[],
            crafted: &crafted,
            injected: &[],
            modelled: &[],
            mibs: &[None, None],
        });
        assert_eq!((r.failure, r.fields_checked), (None, 2));
        // Injected as a segment the test expects to verify: rule 1 (it verifies), no rule 3.
        let r = analyze_capture(&CaptureInput {
            family: Family::Ipv4,
            frames: &frames,
            keys: &keys,
            restored: &[],
            views: &[],
            unverifiable: &[],
            crafted: &[],
            injected: &crafted,
            modelled: &[],
            mibs: &[None, None],
        });
        assert_eq!((r.failure, r.verified, r.fields_checked), (None, 3, 2));
        // Crafted but written by a peer's kernel (modelled by the test): no rule 1, rule 3.
        let r = analyze_capture(&CaptureInput {
            family: Family::Ipv4,
            frames: &frames,
            keys: &keys,
            restored: &[],
            views: &[],
            unverifiable: &[],
            crafted: &crafted,
            injected: &[],
            modelled: &crafted,
            mibs: &[None, None],
        });
        assert_eq!((r.verified, r.fields_checked), (2, 3));
        assert!(
            r.failure
                .as_deref()
                .is_some_and(|f| f.contains("[de, 02], not NOPs")),
            "{r:?}"
        );
    }

    /// A key the reference cannot verify still gives rule 3 its identifiers.
    #[test]
    fn unverifiable_keys_give_their_ids_to_rule_3() {
        let (srv, cli) = (addr("10.0.254.1:7010"), addr("10.0.1.1:40000"));
        let mut frames = handshake(1, (1000, 5000));
        let mkt = Mkt::new(55, 56, tcpao_refimpl::Algorithm::HmacSha1, SECRET);
        let mut c = ConnectionSigner::new(mkt, Connection::new(cli, srv, 1000, 5000)).unwrap();
        c.set_sne_state(1001, 0);
        frames.push(frame(
            Side::Client,
            2,
            &mut c,
            (40000, 7010, 1001, 5001, TcpFlags::ACK),
        ));
        let ids = |mac_len| UnverifiableKey {
            peer: tcpao_refimpl::verify::keys::Prefix::new(srv.ip(), 32).unwrap(),
            ids: AoIds {
                send_id: 55,
                recv_id: 56,
                mac_len,
            },
        };
        for (mac_len, ok) in [(12, true), (16, false)] {
            let unverifiable = [(Side::Client, ids(mac_len))];
            let r = analyze_capture(&CaptureInput {
                family: Family::Ipv4,
                frames: &frames,
                keys: &keys(),
                restored: &[],
                views: &[],
                unverifiable: &unverifiable,
                crafted: &[],
                injected: &[],
                modelled: &[],
                mibs: &[None, None],
            });
            assert_eq!((r.verified, r.fields_checked), (3, 4));
            assert_eq!(r.failure.is_none(), ok, "maclen {mac_len}: {r:?}");
        }
    }

    fn rst_frame(s: &mut ConnectionSigner) -> Frame {
        frame(
            Side::Server,
            2,
            s,
            (7010, 40000, 5001, 1001, TcpFlags::RST | TcpFlags::ACK),
        )
    }
}

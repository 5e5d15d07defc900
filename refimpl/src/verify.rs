// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-verify`: offline verification of TCP-AO (RFC 5925) and TCP-MD5 (RFC 2385)
//! signatures in captures.
//!
//! A [`Checker`] is fed the frames of one or more captures (see [`crate::capture`]). It
//! tracks every TCP connection in both directions (ISNs from the handshake or from a
//! `[[flow]]` hint, one SNE tracker per direction), selects for each signed segment the
//! MKT whose SendID/RecvID matches the segment's KeyID in that direction, derives the
//! traffic keys (RFC 5925 §5.2) once per connection and MKT, and verifies the MAC. Each
//! segment gets a [`VerdictKind`]; flows and the whole run keep [`Counts`], named as in the
//! JSON output and as the Linux counters (`TCPAOGood`, `TCPAOBad`, `TCPAOKeyNotFound`,
//! `TCPAORequired`).
//!
//! Memory is bounded: only per-flow state is kept (no segments are buffered), flows are
//! retired some time after FIN/RST and, beyond [`Options::max_flows`], least recently
//! used first. With [`Options::explain`], failing segments are re-checked on the spot
//! against common misconfigurations ([`explain`]), so that the report can say which one
//! makes them verify.

pub mod explain;
pub mod keys;
pub mod parallel;
pub mod report;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;

use serde::Serialize;

use crate::algo::Algorithm;
use crate::capture::{CaptureError, CaptureReader, Frame, SkipCounts, SkipReason, Timestamp};
use crate::kdf::{Context, TrafficKey};
use crate::mkt::Mkt;
use crate::sne::SneTracker;
use crate::wire::{self, SegmentRef};

use explain::ExplainState;
use keys::{KeyAlgorithm, KeysFile, Role};

/// What the checker concluded about one TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// TCP-AO MAC verified (Linux `TCPAOGood`).
    Good,
    /// TCP-AO MAC did not verify, or the option is unusable (Linux `TCPAOBad`).
    Bad,
    /// Signed with a KeyID (or TCP-MD5) for which no configured key applies (Linux
    /// `TCPAOKeyNotFound`).
    KeyNotFound,
    /// No TCP-AO/TCP-MD5 option although a configured key covers the connection (Linux
    /// `TCPAORequired`).
    Unsigned,
    /// Signed and a key applies, but the MAC cannot be checked (ISNs unknown, frame cut by
    /// the snaplen, ...).
    Unverifiable,
    /// TCP-MD5 digest verified.
    Md5Good,
    /// TCP-MD5 digest did not verify (Linux `TCPMD5Failure`).
    Md5Bad,
    /// Neither signed nor covered by any configured key (other traffic).
    NotCovered,
}

impl VerdictKind {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::Good => "good",
            VerdictKind::Bad => "bad",
            VerdictKind::KeyNotFound => "key_not_found",
            VerdictKind::Unsigned => "unsigned",
            VerdictKind::Unverifiable => "unverifiable",
            VerdictKind::Md5Good => "md5_good",
            VerdictKind::Md5Bad => "md5_bad",
            VerdictKind::NotCovered => "not_covered",
        }
    }

    /// Whether this verdict makes the run fail (exit status 1).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            VerdictKind::Bad
                | VerdictKind::KeyNotFound
                | VerdictKind::Unsigned
                | VerdictKind::Md5Bad
        )
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerdictKind::KeyNotFound => "key not found",
            VerdictKind::Md5Good => "md5 good",
            VerdictKind::Md5Bad => "md5 bad",
            VerdictKind::NotCovered => "not covered",
            k => k.name(),
        })
    }
}

/// Verdict counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// TCP-AO MACs that verified.
    pub good: u64,
    /// TCP-AO MACs that did not.
    pub bad: u64,
    /// Signed segments without an applicable key.
    pub key_not_found: u64,
    /// Unsigned segments where a key was expected.
    pub unsigned: u64,
    /// Signed segments that could not be checked.
    pub unverifiable: u64,
    /// TCP-MD5 digests that verified.
    pub md5_good: u64,
    /// TCP-MD5 digests that did not.
    pub md5_bad: u64,
    /// Other TCP segments (no signature, no key).
    pub not_covered: u64,
}

impl Counts {
    /// Count one verdict.
    pub fn add(&mut self, v: VerdictKind) {
        *self.slot(v) += 1;
    }

    fn slot(&mut self, v: VerdictKind) -> &mut u64 {
        match v {
            VerdictKind::Good => &mut self.good,
            VerdictKind::Bad => &mut self.bad,
            VerdictKind::KeyNotFound => &mut self.key_not_found,
            VerdictKind::Unsigned => &mut self.unsigned,
            VerdictKind::Unverifiable => &mut self.unverifiable,
            VerdictKind::Md5Good => &mut self.md5_good,
            VerdictKind::Md5Bad => &mut self.md5_bad,
            VerdictKind::NotCovered => &mut self.not_covered,
        }
    }

    /// Add all counters of `o`.
    pub fn merge(&mut self, o: &Counts) {
        self.good += o.good;
        self.bad += o.bad;
        self.key_not_found += o.key_not_found;
        self.unsigned += o.unsigned;
        self.unverifiable += o.unverifiable;
        self.md5_good += o.md5_good;
        self.md5_bad += o.md5_bad;
        self.not_covered += o.not_covered;
    }

    /// Segments whose verdict makes the run fail.
    pub fn failures(&self) -> u64 {
        self.bad + self.key_not_found + self.unsigned + self.md5_bad
    }

    /// Segments counted, all verdicts.
    pub fn total(&self) -> u64 {
        self.good
            + self.bad
            + self.key_not_found
            + self.unsigned
            + self.unverifiable
            + self.md5_good
            + self.md5_bad
            + self.not_covered
    }
}

/// One TCP segment and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentVerdict {
    /// Frame number in its capture (from 1).
    pub frame: u64,
    /// Capture timestamp.
    pub timestamp: Timestamp,
    /// Id of the flow the segment belongs to.
    pub flow: u64,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// TCP flags as tcpdump prints them (`S`, `S.`, `P.`, `R`, `F.`...).
    pub flags: String,
    /// Payload bytes.
    pub payload_len: usize,
    /// KeyID of the TCP-AO option.
    pub key_id: Option<u8>,
    /// RNextKeyID of the TCP-AO option.
    pub rnext_key_id: Option<u8>,
    /// Index (from 1) of the MKT the segment was checked with.
    pub mkt: Option<usize>,
    /// SNE used.
    pub sne: Option<u32>,
    /// The verdict.
    pub verdict: VerdictKind,
    /// Why, for anything but good.
    pub reason: Option<String>,
}

/// Where a flow's ISNs came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IsnSource {
    /// SYN and SYN-ACK seen.
    Handshake,
    /// A `[[flow]]` entry of the keys file.
    FlowEntry,
    /// Not known (yet).
    Unknown,
}

/// Per-flow result.
#[derive(Debug, Clone)]
pub struct FlowReport {
    /// Flow id (from 1, in order of first appearance).
    pub id: u64,
    /// Name of the capture the flow was seen in.
    pub capture: String,
    /// The end that sent the SYN (or the first segment seen).
    pub client: SocketAddr,
    /// The other end.
    pub server: SocketAddr,
    /// Whether `client` is known to have sent the SYN.
    pub client_known: bool,
    /// Client ISN, if known.
    pub client_isn: Option<u32>,
    /// Server ISN, if known.
    pub server_isn: Option<u32>,
    /// Where the ISNs came from.
    pub isn_source: IsnSource,
    /// First and last frame numbers.
    pub frames: (u64, u64),
    /// Counters.
    pub counts: Counts,
    /// KeyIDs seen from the client, and RNextKeyIDs.
    pub client_key_ids: (Vec<u8>, Vec<u8>),
    /// KeyIDs seen from the server, and RNextKeyIDs.
    pub server_key_ids: (Vec<u8>, Vec<u8>),
    /// The first failing segments (at most [`Options::max_failures`]).
    pub failures: Vec<SegmentVerdict>,
    /// Every segment (only with [`Options::record_segments`]).
    pub segments: Vec<SegmentVerdict>,
    /// `--explain` findings, one sentence each.
    pub diagnosis: Vec<String>,
    /// How the flow ended: "fin", "rst", or "open".
    pub state: &'static str,
}

/// Checker options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keep every segment's verdict in its flow report.
    pub record_segments: bool,
    /// Re-check failing segments against common misconfigurations.
    pub explain: bool,
    /// Failing segments kept per flow for the report.
    pub max_failures: usize,
    /// Flows tracked at once; beyond it the least recently used are retired.
    pub max_flows: usize,
    /// Retired flows whose report is kept; later ones are only counted in the totals
    /// ([`Report::omitted_flows`]), so memory does not grow with the number of flows.
    pub max_flow_reports: usize,
    /// Evicted open flows whose ISNs and SNE state are kept (about 100 bytes each), so that
    /// their later segments can still be verified.
    pub max_cold_flows: usize,
    /// Seconds (capture time) a flow is kept after its FIN/RST.
    pub close_timeout_secs: i64,
    /// Failing segments per flow direction re-checked by `explain`.
    pub explain_budget: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            record_segments: false,
            explain: false,
            max_failures: 10,
            max_flows: 8_192,
            max_flow_reports: 4_096,
            max_cold_flows: 131_072,
            close_timeout_secs: 120,
            explain_budget: 8,
        }
    }
}

/// One end of a tracked connection.
#[derive(Debug, Clone, Default)]
struct Side {
    addr: Option<SocketAddr>,
    isn: Option<u32>,
    sne: Option<SneTracker>,
    /// SNE of this side's first captured segment, from a `[[flow]]` entry.
    sne_hint: Option<u32>,
    fin: bool,
    key_ids: [u64; 4],
    rnext_ids: [u64; 4],
    good: u64,
}

/// What an evicted, still open flow needs to be resumed: who is who, ISNs and SNE state.
#[derive(Clone, Copy)]
struct ColdFlow {
    client: Option<u8>,
    /// Whether side 0 (the first sender seen) is the flow key's first address.
    side0_is_key0: bool,
    isn: [Option<u32>; 2],
    sne: [Option<SneTracker>; 2],
    from_hint: bool,
}

fn set_bit(b: &mut [u64; 4], v: u8) {
    b[usize::from(v >> 6)] |= 1 << (v & 63);
}

fn bits(b: &[u64; 4]) -> Vec<u8> {
    (0..=255u8)
        .filter(|&v| b[usize::from(v >> 6)] & (1 << (v & 63)) != 0)
        .collect()
}

/// What a cached traffic key is for: sender side, MKT index, SYN key or not. Kept apart from
/// the keys (about 800 bytes each) so that finding a flow's key touches one cache line.
#[derive(Clone, Copy, PartialEq, Eq)]
struct KeyTag {
    side: u8,
    syn: bool,
    mkt: u32,
}

struct FlowState {
    report: FlowReport,
    /// Side 0 is the first sender seen.
    sides: [Side; 2],
    client: Option<usize>,
    from_hint: bool,
    /// Cached traffic keys, `key_tags[i]` describing `keys[i]`.
    keys: Vec<TrafficKey>,
    key_tags: Vec<KeyTag>,
    explain: ExplainState,
    last_used: u64,
    closed_at: Option<Timestamp>,
    ever_signed: bool,
}

type FlowKey = (SocketAddr, SocketAddr);

/// The flow table's hasher: a multiply-rotate mix of the 4-tuple's few words with a per-run
/// random seed and a splitmix64 finalizer. SipHash (the std default) was 13% of the run
/// time on a million-segment capture; the seed keeps crafted captures from forcing
/// collisions cheaply.
#[derive(Clone, Copy, Debug)]
struct FlowHashBuilder(u64);

impl FlowHashBuilder {
    fn new() -> Self {
        use std::hash::BuildHasher;
        FlowHashBuilder(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }
}

impl std::hash::BuildHasher for FlowHashBuilder {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher(self.0)
    }
}

#[derive(Clone, Copy, Debug)]
struct FlowHasher(u64);

impl FlowHasher {
    #[inline]
    fn mix(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(26) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl std::hash::Hasher for FlowHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn flow_key(a: SocketAddr, b: SocketAddr) -> FlowKey {
    if a <= b { (a, b) } else { (b, a) }
}

/// Overall result of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every flow, in order of first appearance.
    pub flows: Vec<FlowReport>,
    /// Flows beyond [`Options::max_flow_reports`]: checked and in the totals, not listed.
    pub omitted_flows: u64,
    /// Totals.
    pub counts: Counts,
    /// Frames read (all captures).
    pub frames: u64,
    /// TCP segments looked at.
    pub tcp_segments: u64,
    /// Frames skipped, by reason.
    pub skipped: SkipCounts,
    /// Capture errors (each stopped its capture; earlier verdicts are kept).
    pub errors: Vec<String>,
    /// Keys-file warnings.
    pub warnings: Vec<String>,
    /// Captures read.
    pub captures: Vec<String>,
    /// Frames cut by the snaplen (counted as unverifiable, attached to no flow).
    pub truncated: u64,
    /// The first of them: (frame number, captured length, original length).
    pub truncated_frames: Vec<(u64, u32, u32)>,
}

impl Report {
    /// Exit status: 0 when nothing is bad, missing a key or unsigned; 1 otherwise;
    /// 2 when a capture could not be read completely.
    pub fn exit_code(&self) -> i32 {
        if !self.errors.is_empty() {
            2
        } else if self.counts.failures() > 0 {
            1
        } else {
            0
        }
    }
}

/// The verification engine.
pub struct Checker<'k> {
    keys: &'k KeysFile,
    /// refimpl MKT per keys-file entry (None for md5 entries).
    mkts: Vec<Option<Mkt>>,
    opts: Options,
    /// Live flows, boxed: the table's empty buckets then cost 72 bytes, not 900.
    flows: HashMap<FlowKey, Box<FlowState>, FlowHashBuilder>,
    /// Evicted open flows ([`Options::max_cold_flows`]).
    cold: HashMap<FlowKey, ColdFlow, FlowHashBuilder>,
    finished: Vec<FlowReport>,
    counts: Counts,
    skipped: SkipCounts,
    frames: u64,
    tcp_segments: u64,
    next_flow_id: u64,
    /// Set by [`parallel`]: flow ids are `(capture index << 40) | first frame number`, which
    /// orders flows by first appearance across workers (renumbered after the merge).
    sharded_ids: Option<u64>,
    omitted_flows: u64,
    tick: u64,
    capture_name: String,
    errors: Vec<String>,
    captures: Vec<String>,
    truncated: u64,
    truncated_frames: Vec<(u64, u32, u32)>,
}

impl fmt::Debug for Checker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("flows", &self.flows.len())
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// TCP flags in tcpdump notation.
fn flag_string(tcp: &wire::TcpPacket<&[u8]>) -> String {
    let f = tcp.flags().0;
    let mut s = String::with_capacity(6);
    for (bit, c) in [
        (0x02, 'S'),
        (0x01, 'F'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x20, 'U'),
        (0x10, '.'),
    ] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

/// The facts about one segment the checker needs.
pub(crate) struct SegInfo<'a> {
    pub(crate) seg: SegmentRef<'a>,
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) syn: bool,
    pub(crate) ack_flag: bool,
    pub(crate) rst: bool,
    pub(crate) fin: bool,
    pub(crate) payload_len: usize,
}

impl SegInfo<'_> {
    fn syn_without_ack(&self) -> bool {
        self.syn && !self.ack_flag
    }
}

/// Verify the AO MAC of `seg` with `mkt`'s algorithm and options flag under `ctx`.
pub(crate) fn verify_with(
    algorithm: Algorithm,
    secret: &[u8],
    include_options: bool,
    ctx: &Context,
    sne: u32,
    seg: &SegmentRef<'_>,
) -> bool {
    let mkt = Mkt::new(0, 0, algorithm, secret);
    let key = TrafficKey::derive(&mkt, ctx);
    crate::mac::verify_mac(&key, sne, seg, include_options).unwrap_or(false)
}

impl<'k> Checker<'k> {
    /// A checker for the keys of `keys`.
    pub fn new(keys: &'k KeysFile, opts: Options) -> Self {
        let mkts = keys
            .mkts
            .iter()
            .map(|e| {
                e.ao_algorithm().map(|a| {
                    Mkt::new(
                        e.send_id.unwrap_or(0),
                        e.recv_id.unwrap_or(0),
                        a,
                        e.secret.as_bytes(),
                    )
                    .with_include_options(e.include_options)
                })
            })
            .collect();
        Checker {
            keys,
            mkts,
            opts,
            flows: HashMap::with_hasher(FlowHashBuilder::new()),
            cold: HashMap::with_hasher(FlowHashBuilder::new()),
            finished: Vec::new(),
            counts: Counts::default(),
            skipped: SkipCounts::default(),
            frames: 0,
            tcp_segments: 0,
            next_flow_id: 1,
            sharded_ids: None,
            omitted_flows: 0,
            tick: 0,
            capture_name: String::new(),
            errors: Vec::new(),
            captures: Vec::new(),
            truncated: 0,
            truncated_frames: Vec::new(),
        }
    }

    /// Totals so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Read a whole capture. `progress` is called now and then with the bytes read so far.
    ///
    /// # Errors
    /// The capture is truncated or corrupt: the error names the frame and byte offset;
    /// verdicts of all earlier frames are kept in the checker (and the error is also
    /// recorded in the final [`Report`]).
    pub fn check_capture(
        &mut self,
        name: &str,
        reader: &mut CaptureReader,
        mut progress: impl FnMut(u64),
    ) -> Result<(), CaptureError> {
        self.begin_capture(name);
        let mut n = 0u32;
        let res = reader.for_each_frame(|f| {
            self.process(f);
            n = n.wrapping_add(1);
            if n % 4096 == 0 {
                progress(f.offset);
            }
            ControlFlow::Continue(())
        });
        self.frames += reader.frames();
        self.skipped.merge(reader.skipped());
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                self.errors.push(format!("{name}: {e}"));
                Err(e)
            }
        }
    }

    /// Start the next capture: flows do not span captures, so the previous capture's flows
    /// are retired.
    fn begin_capture(&mut self, name: &str) {
        self.capture_name = name.to_string();
        self.captures.push(name.to_string());
        self.retire_all();
        self.cold.clear();
        if let Some(i) = self.sharded_ids.as_mut() {
            *i += 1;
        }
    }

    /// Check one frame.
    pub fn process(&mut self, frame: &Frame<'_>) {
        if frame.is_truncated() {
            // The MAC covers the whole segment: a frame cut by the snaplen cannot be
            // checked. Attribute it to its flow when the headers survived.
            self.tcp_segments += 1;
            self.truncated_frame(frame);
            return;
        }
        let seg = match SegmentRef::parse(frame.ip) {
            Ok(s) => s,
            Err(e) => {
                self.skipped.add(skip_reason(&e));
                return;
            }
        };
        self.tcp_segments += 1;
        let tcp = seg.tcp_packet();
        let info = SegInfo {
            seg,
            src: SocketAddr::new(seg.src, tcp.src_port()),
            dst: SocketAddr::new(seg.dst, tcp.dst_port()),
            seq: tcp.seq_number(),
            ack: tcp.ack_number(),
            syn: tcp.syn(),
            ack_flag: tcp.ack(),
            rst: tcp.rst(),
            fin: tcp.fin(),
            payload_len: tcp.payload().len(),
        };
        self.segment(frame, &info, &tcp);
        if self.tcp_segments % 4096 == 0 {
            self.sweep(frame.timestamp);
        }
    }

    fn truncated_frame(&mut self, frame: &Frame<'_>) {
        self.counts.add(VerdictKind::Unverifiable);
        self.truncated += 1;
        if self.truncated_frames.len() < self.opts.max_failures {
            self.truncated_frames
                .push((frame.number, frame.cap_len, frame.orig_len));
        }
    }

    fn segment(&mut self, frame: &Frame<'_>, s: &SegInfo<'_>, tcp: &wire::TcpPacket<&[u8]>) {
        let auth = match tcp.auth_options() {
            Ok(a) => Some(a),
            Err(wire::Error::DuplicateAuthOption) => None,
            Err(_) => {
                self.skipped.add(SkipReason::MalformedTcp);
                self.tcp_segments -= 1;
                return;
            }
        };
        self.tick += 1;
        let tick = self.tick;
        let key = flow_key(s.src, s.dst);
        // A new SYN with another ISN on a known 4-tuple starts a new connection.
        if s.syn_without_ack() {
            if let Some(f) = self.flows.get(&key) {
                let side = side_of(f, s.src);
                if f.sides[side].isn.is_some_and(|isn| isn != s.seq) {
                    let f = self.flows.remove(&key).expect("present");
                    self.retire(f);
                }
            }
        }
        if self.flows.len() >= self.opts.max_flows && !self.flows.contains_key(&key) {
            self.evict_lru();
        }
        let keys = self.keys;
        let mkts = &self.mkts;
        let opts = &self.opts;
        // One hash lookup per segment (the flow table is the hot spot on many-flow captures).
        let flow = match self.flows.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let id = match self.sharded_ids {
                    Some(capture) => (capture << 40) | frame.number,
                    None => {
                        self.next_flow_id += 1;
                        self.next_flow_id - 1
                    }
                };
                let mut st = new_flow(id, &self.capture_name, keys, frame, s);
                if let Some(c) = self.cold.remove(&key) {
                    // Resume an evicted connection: the report continues as a new flow.
                    st.client = c.client.map(usize::from);
                    st.from_hint = c.from_hint;
                    let addr = if c.side0_is_key0 {
                        [key.0, key.1]
                    } else {
                        [key.1, key.0]
                    };
                    for (i, side) in st.sides.iter_mut().enumerate() {
                        side.addr = Some(addr[i]);
                        side.isn = c.isn[i];
                        side.sne = c.sne[i];
                    }
                    if c.isn[0].is_some() && c.isn[1].is_some() {
                        st.report.isn_source = if c.from_hint {
                            IsnSource::FlowEntry
                        } else {
                            IsnSource::Handshake
                        };
                    }
                }
                e.insert(Box::new(st))
            }
        };
        flow.last_used = tick;
        flow.report.frames.1 = frame.number;
        let si = side_of(flow, s.src);
        let oi = 1 - si;
        if flow.sides[si].addr.is_none() {
            flow.sides[si].addr = Some(s.src);
        }
        if flow.sides[oi].addr.is_none() {
            flow.sides[oi].addr = Some(s.dst);
        }
        // Learn ISNs (RFC 5925 §5.2 needs both for everything but a bare SYN).
        if s.syn {
            if flow.sides[si].isn != Some(s.seq) {
                flow.sides[si].isn = Some(s.seq);
                flow.sides[si].sne = Some(SneTracker::new(s.seq));
                flow.keys.clear();
                flow.key_tags.clear();
            }
            if !s.ack_flag && flow.client.is_none() {
                flow.client = Some(si);
            }
            if s.ack_flag && flow.sides[oi].isn.is_none() {
                let isn = s.ack.wrapping_sub(1);
                flow.sides[oi].isn = Some(isn);
                flow.sides[oi].sne = Some(SneTracker::new(isn));
                if flow.client.is_none() {
                    flow.client = Some(oi);
                }
            }
            flow.report.isn_source = IsnSource::Handshake;
        }
        let seg_len = s.payload_len as u32 + u32::from(s.syn) + u32::from(s.fin);
        let sne = if s.syn {
            0
        } else {
            let side = &mut flow.sides[si];
            if side.sne.is_none() {
                if let Some(h) = side.sne_hint {
                    side.sne = Some(SneTracker::with_state(s.seq, h));
                } else if let Some(isn) = side.isn {
                    side.sne = Some(SneTracker::new(isn));
                }
            }
            side.sne.map_or(0, |t| t.sne_for(s.seq))
        };

        let mut rec = SegmentVerdict {
            frame: frame.number,
            timestamp: frame.timestamp,
            flow: flow.report.id,
            src: s.src,
            dst: s.dst,
            seq: s.seq,
            ack: s.ack,
            flags: String::new(),
            payload_len: s.payload_len,
            key_id: None,
            rnext_key_id: None,
            mkt: None,
            sne: None,
            verdict: VerdictKind::NotCovered,
            reason: None,
        };

        match auth {
            None => {
                rec.verdict = VerdictKind::Bad;
                rec.reason = Some(
                    "carries more than one TCP-AO/TCP-MD5 option (RFC 5925 §2.2 forbids it)".into(),
                );
                flow.ever_signed = true;
            }
            Some(a) if a.ao.is_some() => {
                flow.ever_signed = true;
                let r = a.ao.clone().unwrap_or_default();
                let opt = &s.seg.tcp[r.clone()];
                let key_id = opt[2];
                let rnext = opt[3];
                let opt_maclen = r.len() - 4;
                rec.key_id = Some(key_id);
                rec.rnext_key_id = Some(rnext);
                set_bit(&mut flow.sides[si].key_ids, key_id);
                set_bit(&mut flow.sides[si].rnext_ids, rnext);
                check_ao(keys, mkts, flow, si, s, key_id, opt_maclen, sne, &mut rec);
                if opts.explain
                    && matches!(rec.verdict, VerdictKind::Bad | VerdictKind::KeyNotFound)
                {
                    let isns = isns_for(flow, si, s);
                    flow.explain.examine(
                        keys,
                        si,
                        s,
                        key_id,
                        opt_maclen,
                        sne,
                        isns,
                        rec.mkt,
                        opts.explain_budget,
                    );
                }
            }
            Some(a) if a.md5.is_some() => {
                flow.ever_signed = true;
                let mut covered = false;
                rec.verdict = VerdictKind::KeyNotFound;
                rec.reason = Some(format!(
                    "signed with TCP-MD5 but no md5 MKT covers {} -> {}",
                    s.src.ip(),
                    s.dst.ip()
                ));
                for e in keys
                    .mkts
                    .iter()
                    .filter(|e| e.matches_md5(s.src.ip(), s.dst.ip()))
                {
                    covered = true;
                    if crate::md5::verify_md5(&s.seg, e.secret.as_bytes()).unwrap_or(false) {
                        rec.verdict = VerdictKind::Md5Good;
                        rec.mkt = Some(e.index);
                        rec.reason = None;
                        break;
                    }
                    rec.verdict = VerdictKind::Md5Bad;
                    rec.mkt.get_or_insert(e.index);
                    rec.reason = Some(format!("TCP-MD5 digest mismatch with MKT #{}", e.index));
                }
                if covered && rec.verdict == VerdictKind::Md5Bad && opts.explain {
                    flow.explain.examine_md5(keys, si, s);
                }
            }
            Some(_) => {
                let covering = keys
                    .mkts
                    .iter()
                    .find(|e| e.covers(s.src.ip(), s.dst.ip()))
                    .map(|e| e.index);
                if let Some(m) = covering {
                    rec.verdict = VerdictKind::Unsigned;
                    rec.mkt = Some(m);
                    rec.reason = Some(format!(
                        "no TCP-AO or TCP-MD5 option, but MKT #{m} covers {} -> {}",
                        s.src.ip(),
                        s.dst.ip()
                    ));
                    flow.explain.unsigned[si] += 1;
                }
            }
        }
        if !matches!(rec.verdict, VerdictKind::Bad | VerdictKind::KeyNotFound)
            || flow.sides[si].good == 0
        {
            if rec.verdict == VerdictKind::Good {
                flow.sides[si].good += 1;
            }
            if let Some(t) = flow.sides[si].sne.as_mut() {
                if !s.syn {
                    t.observe(s.seq, seg_len);
                }
            }
        }
        if rec.key_id.is_some() || rec.verdict != VerdictKind::NotCovered {
            rec.sne = rec.key_id.map(|_| sne);
        }
        if s.fin {
            flow.sides[si].fin = true;
        }
        if s.rst || (flow.sides[0].fin && flow.sides[1].fin) {
            flow.closed_at.get_or_insert(frame.timestamp);
            flow.report.state = if s.rst { "rst" } else { "fin" };
        }
        self.counts.add(rec.verdict);
        flow.report.counts.add(rec.verdict);
        let record = opts.record_segments;
        let fail = rec.verdict.is_failure() || rec.verdict == VerdictKind::Unverifiable;
        if record || (fail && flow.report.failures.len() < opts.max_failures) {
            rec.flags = flag_string(tcp);
            if fail && flow.report.failures.len() < opts.max_failures {
                flow.report.failures.push(rec.clone());
            }
            if record {
                flow.report.segments.push(rec);
            }
        }
    }

    /// Keep the report of a flow that ended, up to [`Options::max_flow_reports`].
    fn retire(&mut self, f: Box<FlowState>) {
        let cap = self.opts.max_flow_reports;
        let failing = f.report.counts.failures() > 0;
        // Failing flows get a second allowance: they are what the reader looks for.
        if self.finished.len() < cap || (failing && self.finished.len() < cap.saturating_mul(2)) {
            self.finished.push(finish(*f, self.opts.explain));
        } else {
            self.omitted_flows += 1;
        }
    }

    /// Retire flows closed long enough ago.
    fn sweep(&mut self, now: Timestamp) {
        let t = self.opts.close_timeout_secs;
        let expired: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| f.closed_at.is_some_and(|c| now.secs - c.secs > t))
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(f) = self.flows.remove(&k) {
                self.retire(f);
            }
        }
    }

    /// Retire the least recently used eighth of the flows.
    fn evict_lru(&mut self) {
        let mut ticks: Vec<u64> = self.flows.values().map(|f| f.last_used).collect();
        let n = (ticks.len() / 8).max(1);
        let (_, &mut cut, _) = ticks.select_nth_unstable(n - 1);
        let old: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| f.last_used <= cut)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            if let Some(f) = self.flows.remove(&k) {
                let resumable = f.closed_at.is_none() && f.sides.iter().all(|s| s.isn.is_some());
                if resumable && self.cold.len() < self.opts.max_cold_flows {
                    let cold = ColdFlow {
                        client: f.client.map(|c| c as u8),
                        side0_is_key0: f.sides[0].addr == Some(k.0),
                        isn: [f.sides[0].isn, f.sides[1].isn],
                        sne: [f.sides[0].sne, f.sides[1].sne],
                        from_hint: f.from_hint,
                    };
                    self.cold.insert(k, cold);
                }
                self.retire(f);
            }
        }
    }

    fn retire_all(&mut self) {
        let mut all: Vec<Box<FlowState>> = self.flows.drain().map(|(_, f)| f).collect();
        all.sort_by_key(|f| f.report.id);
        for f in all {
            self.retire(f);
        }
    }

    /// Number of flows currently tracked.
    pub fn live_flows(&self) -> usize {
        self.flows.len()
    }

    /// Finish the run: every flow's report, in order of first appearance, and the totals.
    pub fn finish(mut self) -> Report {
        self.retire_all();
        let mut flows = std::mem::take(&mut self.finished);
        flows.sort_by_key(|f| f.id);
        if self.opts.explain {
            for f in &mut flows {
                explain::finalize(self.keys, f);
            }
        }
        Report {
            flows,
            omitted_flows: self.omitted_flows,
            counts: self.counts,
            frames: self.frames,
            tcp_segments: self.tcp_segments,
            skipped: self.skipped,
            errors: self.errors,
            warnings: self.keys.warnings.clone(),
            captures: self.captures,
            truncated: self.truncated,
            truncated_frames: self.truncated_frames,
        }
    }
}

fn new_flow(
    id: u64,
    capture_name: &str,
    keys: &KeysFile,
    frame: &Frame<'_>,
    s: &SegInfo<'_>,
) -> FlowState {
    let mut st = FlowState {
        report: FlowReport {
            id,
            capture: capture_name.to_string(),
            client: s.src,
            server: s.dst,
            client_known: false,
            client_isn: None,
            server_isn: None,
            isn_source: IsnSource::Unknown,
            frames: (frame.number, frame.number),
            counts: Counts::default(),
            client_key_ids: Default::default(),
            server_key_ids: Default::default(),
            failures: Vec::new(),
            segments: Vec::new(),
            diagnosis: Vec::new(),
            state: "open",
        },
        sides: [Side::default(), Side::default()],
        client: None,
        from_hint: false,
        keys: Vec::new(),
        key_tags: Vec::new(),
        explain: ExplainState::default(),
        last_used: 0,
        closed_at: None,
        ever_signed: false,
    };
    st.sides[0].addr = Some(s.src);
    st.sides[1].addr = Some(s.dst);
    if let Some(h) = keys.flow_hint(s.src, s.dst) {
        let (ci, si) = if h.client == s.src { (0, 1) } else { (1, 0) };
        st.client = Some(ci);
        st.sides[ci].isn = Some(h.client_isn);
        st.sides[si].isn = Some(h.server_isn);
        st.sides[ci].sne_hint = Some(h.client_sne);
        st.sides[si].sne_hint = Some(h.server_sne);
        st.from_hint = true;
        st.report.isn_source = IsnSource::FlowEntry;
    }
    st
}

fn side_of(f: &FlowState, src: SocketAddr) -> usize {
    if f.sides[0].addr == Some(src) { 0 } else { 1 }
}

/// (sender ISN, receiver ISN) for the traffic key of this segment, if known
/// (RFC 5925 §5.2: a SYN uses 0 for the receiver's ISN).
fn isns_for(f: &FlowState, si: usize, s: &SegInfo<'_>) -> Option<(u32, u32)> {
    if s.syn_without_ack() {
        return Some((s.seq, 0));
    }
    if s.syn {
        return Some((s.seq, s.ack.wrapping_sub(1)));
    }
    Some((f.sides[si].isn?, f.sides[1 - si].isn?))
}

#[allow(clippy::too_many_arguments)]
fn check_ao(
    keys: &KeysFile,
    mkts: &[Option<Mkt>],
    flow: &mut FlowState,
    si: usize,
    s: &SegInfo<'_>,
    key_id: u8,
    opt_maclen: usize,
    sne: u32,
    rec: &mut SegmentVerdict,
) {
    let (src, dst) = (s.src.ip(), s.dst.ip());
    // No allocation per segment: candidates are the tuples matching the KeyID, in order.
    let cands = || {
        keys.mkts
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.matches_ao(src, dst, key_id))
            .map(|(i, _)| i)
    };
    let Some(first) = cands().next() else {
        rec.verdict = VerdictKind::KeyNotFound;
        rec.reason = Some(key_not_found_reason(keys, src, dst, key_id));
        return;
    };
    rec.mkt = Some(keys.mkts[first].index);
    let Some((isn_s, isn_d)) = isns_for(flow, si, s) else {
        rec.verdict = VerdictKind::Unverifiable;
        rec.reason = Some(
            "ISNs unknown: the capture does not contain this connection's SYN and SYN-ACK; \
             add a [[flow]] entry with client_isn and server_isn"
                .into(),
        );
        return;
    };
    let syn = s.syn_without_ack();
    let mut reason = None;
    for i in cands() {
        let e = &keys.mkts[i];
        let Some(mkt) = mkts[i].as_ref() else {
            continue;
        };
        if opt_maclen != e.maclen {
            reason.get_or_insert_with(|| {
                format!(
                    "MAC is {opt_maclen} bytes but MKT #{} has maclen = {}",
                    e.index, e.maclen
                )
            });
            continue;
        }
        let tag = KeyTag {
            side: si as u8,
            syn,
            mkt: i as u32,
        };
        let syn_key;
        let key = match flow.key_tags.iter().position(|t| *t == tag) {
            Some(p) => &flow.keys[p],
            None => {
                let Ok(ctx) = Context::new(s.src, s.dst, isn_s, isn_d) else {
                    continue;
                };
                if syn {
                    // A SYN's key serves one segment (and its retransmissions): not cached,
                    // so a flow holds one ~800-byte key per side and MKT.
                    syn_key = TrafficKey::derive(mkt, &ctx);
                    &syn_key
                } else {
                    // Exact growth: a flow usually needs one key per side.
                    flow.keys.reserve_exact(1);
                    flow.keys.push(TrafficKey::derive(mkt, &ctx));
                    flow.key_tags.push(tag);
                    flow.keys.last().expect("pushed")
                }
            }
        };
        match crate::mac::verify_mac(key, sne, &s.seg, e.include_options) {
            Ok(true) => {
                rec.verdict = VerdictKind::Good;
                rec.mkt = Some(e.index);
                rec.reason = None;
                return;
            }
            Ok(false) => {
                reason.get_or_insert_with(|| {
                    format!(
                        "MAC mismatch with MKT #{} ({}, options {}, SNE {sne})",
                        e.index,
                        e.algorithm,
                        if e.include_options {
                            "included"
                        } else {
                            "excluded"
                        }
                    )
                });
            }
            Err(err) => {
                reason.get_or_insert_with(|| format!("unusable TCP-AO option: {err}"));
            }
        }
    }
    rec.verdict = VerdictKind::Bad;
    rec.reason = reason;
}

fn key_not_found_reason(keys: &KeysFile, src: IpAddr, dst: IpAddr, key_id: u8) -> String {
    let mut ids = Vec::new();
    for e in keys
        .mkts
        .iter()
        .filter(|e| matches!(e.algorithm, KeyAlgorithm::Ao(_)))
    {
        match e.role(src, dst) {
            Some(Role::Local) => ids.extend(e.send_id),
            Some(Role::Peer) => ids.extend(e.recv_id),
            Some(Role::Either) => {
                ids.extend(e.send_id);
                ids.extend(e.recv_id);
            }
            None => {}
        }
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        format!("KeyID {key_id}: no TCP-AO MKT covers {src} -> {dst}")
    } else {
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        format!(
            "KeyID {key_id}: no MKT for {src} -> {dst} has this id (configured for this \
             direction: {})",
            list.join(", ")
        )
    }
}

fn skip_reason(e: &wire::Error) -> SkipReason {
    match e {
        wire::Error::Fragment => SkipReason::IpFragment,
        wire::Error::NotTcp(_) => SkipReason::NotTcp,
        wire::Error::BadDataOffset(_)
        | wire::Error::BadOptionLength { .. }
        | wire::Error::OptionOverflow { .. } => SkipReason::MalformedTcp,
        wire::Error::Truncated { what, .. } if what.contains("TCP") => SkipReason::MalformedTcp,
        _ => SkipReason::MalformedIp,
    }
}

fn finish(f: FlowState, explain: bool) -> FlowReport {
    let mut r = f.report;
    let ci = f.client.unwrap_or(0);
    let si = 1 - ci;
    if let (Some(c), Some(s)) = (f.sides[ci].addr, f.sides[si].addr) {
        r.client = c;
        r.server = s;
    }
    r.client_known = f.client.is_some();
    r.client_isn = f.sides[ci].isn;
    r.server_isn = f.sides[si].isn;
    if r.isn_source == IsnSource::Handshake && (r.client_isn.is_none() || r.server_isn.is_none()) {
        r.isn_source = IsnSource::Unknown;
    }
    r.client_key_ids = (bits(&f.sides[ci].key_ids), bits(&f.sides[ci].rnext_ids));
    r.server_key_ids = (bits(&f.sides[si].key_ids), bits(&f.sides[si].rnext_ids));
    if explain {
        r.diagnosis = f.explain.findings(&r, ci);
    }
    r
}

/// Check every capture, in order, and build the report. Capture errors are recorded in the
/// report (and reading moves on to the next capture); verdicts made before an error are kept.
pub fn check_files<P: AsRef<std::path::Path>>(
    keys: &KeysFile,
    opts: Options,
    captures: &[P],
    mut progress: impl FnMut(&str, u64, u64),
) -> Report {
    let mut checker = Checker::new(keys, opts);
    for p in captures {
        let p = p.as_ref();
        let name = p.display().to_string();
        let total = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        match CaptureReader::open(p) {
            Ok(mut r) => {
                let _ = checker.check_capture(&name, &mut r, |off| progress(&name, off, total));
                progress(&name, total, total);
            }
            Err(e) => {
                checker.captures.push(name.clone());
                checker.errors.push(format!("{name}: {e}"));
            }
        }
    }
    checker.finish()
}

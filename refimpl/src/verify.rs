// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-verify`: offline verification of TCP-AO (RFC 5925) and TCP-MD5 (RFC 2385)
//! signatures in captures.
//!
//! A [`Checker`] is fed the frames of one or more captures (see [`crate::capture`]). For
//! each TCP segment it takes these steps ([`Checker::process`]):
//!
//! 1. read the authentication option through the wire views; a layout Linux drops before
//!    any counter (bad lengths, two TCP-AO/TCP-MD5 options) is skipped as malformed TCP;
//! 2. find the connection's flow, or open one (`verify/flow.rs`);
//! 3. learn ISNs from the handshake (or a `[[flow]]` entry) and infer the SNE;
//! 4. let [`crate::verdict::decide`], the verdict function [`crate::FlowValidator`] uses
//!    too, select the MKT by KeyID among the keys file's entries for the segment's
//!    addresses and verify the MAC, with traffic keys (RFC 5925 §5.2) derived once per
//!    connection and MKT;
//! 5. with `--explain`, re-check a failure against common misconfigurations ([`explain`]);
//! 6. move the SNE reference on, count the [`Verdict`] in [`Counts`] (named as in the JSON
//!    output and as the Linux counters) and, for a kept failure or with `--segments`, record
//!    the segment with the sentence that says why.
//!
//! Memory is bounded: only per-flow state is kept (no segments are buffered), flows are
//! retired some time after FIN/RST and, beyond [`Options::max_flows`], least recently
//! used first.

pub mod explain;
mod flow;
pub mod keys;
pub mod parallel;
pub mod report;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;

use serde::Serialize;

use crate::algo::Algorithm;
use crate::capture::{CaptureError, CaptureReader, Frame, SkipCounts, SkipReason, Timestamp};
use crate::kdf::{Context, TrafficKey};
use crate::mkt::Mkt;
use crate::reassembly::{Fed, Reassembler, Stats as ReassemblyStats};
use crate::verdict::{self, AuthOption, BadReason, Decision, Unverifiable};
pub use crate::verdict::{Counts, Verdict};
use crate::wire::{self, SegmentRef};

use flow::{FlowKeys, FlowState, FlowTable};
use keys::{KeysFile, Role};

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
    pub verdict: Verdict,
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
    /// IP fragments put back together, and those that went into no datagram (also counted
    /// in [`Report::skipped`] as [`SkipReason::IpFragment`]).
    pub reassembly: ReassemblyStats,
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
    opts: Options,
    flows: FlowTable,
    counts: Counts,
    skipped: SkipCounts,
    reassembler: Reassembler,
    frames: u64,
    tcp_segments: u64,
    capture_name: String,
    errors: Vec<String>,
    captures: Vec<String>,
    truncated: u64,
    truncated_frames: Vec<(u64, u32, u32)>,
}

impl fmt::Debug for Checker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("flows", &self.flows.live())
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
        Checker {
            keys,
            flows: FlowTable::new(&opts),
            opts,
            counts: Counts::default(),
            skipped: SkipCounts::default(),
            reassembler: Reassembler::new(),
            frames: 0,
            tcp_segments: 0,
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
        self.reassembler.flush();
        self.capture_name = name.to_string();
        self.captures.push(name.to_string());
        self.flows.begin_capture();
    }

    /// Check one frame.
    pub fn process(&mut self, frame: &Frame<'_>) {
        if frame.is_truncated() {
            // The MAC covers the whole segment: a frame cut by the snaplen cannot be
            // checked.
            self.tcp_segments += 1;
            self.truncated_frame(frame);
            return;
        }
        let seg = match SegmentRef::parse(frame.ip) {
            Ok(s) => s,
            Err(wire::Error::Fragment) => {
                self.fragment(frame);
                return;
            }
            Err(e) => {
                self.skipped.add(skip_reason(&e));
                return;
            }
        };
        // Step 1: the authentication option (RFC 5925 §2.2). Linux drops a bad layout
        // before any counter (`tcp_hash_bad_header`): it is no segment of any flow here.
        let auth = match AuthOption::parse(&seg) {
            Ok(a) => a,
            Err(_) => {
                self.skipped.add(SkipReason::MalformedTcp);
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
        self.segment(frame, &info, &tcp, &auth);
        if self.tcp_segments % 4096 == 0 {
            self.flows.sweep(frame.timestamp);
        }
    }

    /// An IP fragment: held until its datagram is whole, which is then checked as the
    /// segment it carries, under the number and time of the fragment that completed it
    /// (RFC 5925 §5.1: the MAC covers the whole segment). Fragments that end in no datagram
    /// are counted at the end ([`Report::reassembly`]).
    fn fragment(&mut self, frame: &Frame<'_>) {
        match self.reassembler.feed(frame.ip) {
            Ok(Fed::Complete { packet, .. }) => self.process(&Frame {
                ip: &packet,
                ..*frame
            }),
            Ok(Fed::Held | Fed::Discarded(_)) => {}
            Ok(Fed::NotFragment) | Err(_) => self.skipped.add(SkipReason::MalformedIp),
        }
    }

    fn truncated_frame(&mut self, frame: &Frame<'_>) {
        self.counts.add(&Verdict::Unverifiable {
            reason: Unverifiable::Truncated,
        });
        self.truncated += 1;
        if self.truncated_frames.len() < self.opts.max_failures {
            self.truncated_frames
                .push((frame.number, frame.cap_len, frame.orig_len));
        }
    }

    /// Steps 2 to 6 for one TCP segment.
    fn segment(
        &mut self,
        frame: &Frame<'_>,
        s: &SegInfo<'_>,
        tcp: &wire::TcpPacket<&[u8]>,
        auth: &AuthOption<'_>,
    ) {
        let (keys, opts) = (self.keys, &self.opts);
        // Step 2: the flow.
        let flow = self.flows.flow(keys, &self.capture_name, frame, s);
        let si = flow.end_of(s.src);
        // Step 3: ISNs and SNE (RFC 5925 §5.2, §6.2).
        flow.learn_isns(si, s);
        let sne = flow.sne_for(si, s);
        let ao = match auth {
            AuthOption::Ao { option, .. } => {
                let ids = (option.key_id(), option.rnext_key_id());
                flow.saw_key_ids(si, ids.0, ids.1);
                Some(ids)
            }
            _ => None,
        };
        // Step 4: the verdict, decided where the validator decides it.
        let decision = verdict::decide(&mut FlowKeys::new(keys, flow, si, s), &s.seg, auth, sne);
        let (verdict, mkt) = (decision.verdict, decision.mkt.map(|i| keys.mkts[i].index));
        // Step 5, with --explain: which misconfiguration would explain a failure.
        explain_failure(flow, keys, opts, si, s, auth, verdict, mkt, sne);
        // Step 6: the SNE reference, FIN/RST, the counts.
        flow.advance(si, s, &verdict, frame.timestamp);
        self.counts.add(&verdict);
        flow.report.counts.add(&verdict);
        let fail = verdict.is_failure() || matches!(verdict, Verdict::Unverifiable { .. });
        let keep_failure = fail && flow.report.failures.len() < opts.max_failures;
        if !opts.record_segments && !keep_failure {
            return;
        }
        // The record, with the report's sentence for the verdict.
        let rec = SegmentVerdict {
            frame: frame.number,
            timestamp: frame.timestamp,
            flow: flow.report.id,
            src: s.src,
            dst: s.dst,
            seq: s.seq,
            ack: s.ack,
            flags: flag_string(tcp),
            payload_len: s.payload_len,
            key_id: ao.map(|a| a.0),
            rnext_key_id: ao.map(|a| a.1),
            mkt,
            sne: ao.map(|_| sne),
            verdict,
            reason: reason(keys, s, &decision, sne),
        };
        if keep_failure {
            flow.report.failures.push(rec.clone());
        }
        if opts.record_segments {
            flow.report.segments.push(rec);
        }
    }

    /// Number of flows currently tracked.
    pub fn live_flows(&self) -> usize {
        self.flows.live()
    }

    /// Finish the run: every flow's report, in order of first appearance, and the totals.
    pub fn finish(mut self) -> Report {
        self.reassembler.flush();
        let reassembly = self.reassembler.stats();
        self.skipped
            .add_many(SkipReason::IpFragment, reassembly.lost());
        let (flows, omitted_flows) = self.flows.finish();
        Report {
            flows,
            omitted_flows,
            counts: self.counts,
            frames: self.frames,
            tcp_segments: self.tcp_segments,
            skipped: self.skipped,
            errors: self.errors,
            warnings: self.keys.warnings.clone(),
            captures: self.captures,
            reassembly,
            truncated: self.truncated,
            truncated_frames: self.truncated_frames,
        }
    }
}

/// The report's sentence for a verdict.
fn reason(keys: &KeysFile, s: &SegInfo<'_>, d: &Decision, sne: u32) -> Option<String> {
    let (src, dst) = (s.src.ip(), s.dst.ip());
    let entry = d.mkt.map(|i| &keys.mkts[i]);
    Some(match (d.verdict, entry) {
        (Verdict::Good { .. } | Verdict::Md5Good | Verdict::Unauthenticated, _) => return None,
        (Verdict::KeyNotFound { key_id }, _) => key_not_found_reason(keys, src, dst, key_id),
        (
            Verdict::Unverifiable {
                reason: Unverifiable::IsnsUnknown,
            },
            _,
        ) => "ISNs unknown: the capture does not contain this connection's SYN and SYN-ACK; \
              add a [[flow]] entry with client_isn and server_isn"
            .into(),
        (
            Verdict::Bad {
                reason: BadReason::WrongMacLength { expected, found },
                ..
            },
            Some(e),
        ) => format!(
            "MAC is {found} bytes but MKT #{} has maclen = {expected}",
            e.index
        ),
        (
            Verdict::Bad {
                reason: BadReason::MacMismatch,
                ..
            },
            Some(e),
        ) => {
            let (algorithm, included) = e.mkt().map_or(("md5", false), |m| {
                (m.algorithm.keyfile_name(), m.include_options)
            });
            format!(
                "MAC mismatch with MKT #{} ({algorithm}, options {}, SNE {sne})",
                e.index,
                if included { "included" } else { "excluded" }
            )
        }
        (Verdict::Md5Bad, Some(e)) => format!("TCP-MD5 digest mismatch with MKT #{}", e.index),
        (Verdict::Md5Unexpected, _) => {
            format!("signed with TCP-MD5 but no md5 MKT covers {src} -> {dst}")
        }
        (Verdict::Unsigned | Verdict::Md5NotFound, Some(e)) => format!(
            "no TCP-AO or TCP-MD5 option, but MKT #{} covers {src} -> {dst}",
            e.index
        ),
        (Verdict::Malformed { reason }, _) => format!("unusable TCP-AO option: {reason}"),
        (v, _) => v.to_string(),
    })
}

/// Step 5, with `--explain`: re-check a failing segment under common misconfigurations
/// (`mkt`: the entry the segment selected). Unsigned segments are tallied whether or not
/// `--explain` is on.
#[allow(clippy::too_many_arguments)]
fn explain_failure(
    flow: &mut FlowState,
    keys: &KeysFile,
    opts: &Options,
    si: usize,
    s: &SegInfo<'_>,
    auth: &AuthOption<'_>,
    verdict: Verdict,
    mkt: Option<usize>,
    sne: u32,
) {
    match (auth, verdict) {
        (_, Verdict::Unsigned | Verdict::Md5NotFound) => flow.explain.unsigned[si] += 1,
        (AuthOption::Ao { option, .. }, Verdict::Bad { .. } | Verdict::KeyNotFound { .. })
            if opts.explain =>
        {
            let isns = flow.isns_for(si, s);
            flow.explain.examine(
                keys,
                si,
                s,
                option.key_id(),
                option.mac().len(),
                sne,
                isns,
                mkt,
                opts.explain_budget,
            );
        }
        (AuthOption::Md5, Verdict::Md5Bad) if opts.explain => {
            flow.explain.examine_md5(keys, si, s);
        }
        _ => {}
    }
}

fn key_not_found_reason(keys: &KeysFile, src: IpAddr, dst: IpAddr, key_id: u8) -> String {
    let mut ids = Vec::new();
    for e in &keys.mkts {
        let Some(m) = e.mkt() else { continue };
        match e.role(src, dst) {
            Some(Role::Local) => ids.push(m.send_id),
            Some(Role::Peer) => ids.push(m.recv_id),
            Some(Role::Either) => ids.extend([m.send_id, m.recv_id]),
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

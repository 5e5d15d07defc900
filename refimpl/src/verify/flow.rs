// SPDX-License-Identifier: MIT OR Apache-2.0
//! The checker's per-connection state and the table that holds it.
//!
//! A [`FlowState`] is what a capture teaches about one connection: who sent the SYN, both
//! ISNs (from the handshake or a `[[flow]]` entry), one SNE tracker per direction, the
//! traffic keys derived so far, and the flow's report. [`FlowKeys`] lends that state, with
//! the keys file, to [`crate::verdict::decide`] as the receiving end of one segment.
//!
//! The [`FlowTable`] bounds memory: flows are retired some time after FIN/RST and, beyond
//! [`super::Options::max_flows`], least recently used first; evicted open flows keep their
//! ISNs and SNE state ([`ColdFlow`]) so their later segments still verify.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::capture::{Frame, Timestamp};
use crate::kdf::{Context, TrafficKey};
use crate::mkt::Mkt;
use crate::sne::SneTracker;
use crate::verdict::{Receiver, Required, Unverifiable, Verdict};

use super::explain::ExplainState;
use super::keys::KeysFile;
use super::{Counts, FlowReport, IsnSource, Options, SegInfo};

/// One end of a tracked connection.
#[derive(Debug, Clone, Default)]
struct End {
    addr: Option<SocketAddr>,
    isn: Option<u32>,
    sne: Option<SneTracker>,
    /// SNE of this end's first captured segment, from a `[[flow]]` entry.
    sne_hint: Option<u32>,
    fin: bool,
    key_ids: [u64; 4],
    rnext_ids: [u64; 4],
    good: u64,
    /// The last KeyID this end sent and the keys-file entry it selects: the selection
    /// depends only on the end's addresses and the KeyID, which change rarely.
    selected: Option<(u8, Option<u32>)>,
}

/// What an evicted, still open flow needs to be resumed: who is who, ISNs and SNE state.
#[derive(Clone, Copy)]
struct ColdFlow {
    client: Option<u8>,
    /// Whether end 0 (the first sender seen) is the flow key's first address.
    end0_is_key0: bool,
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

/// What a cached traffic key is for: sender end, MKT index, SYN key or not. Kept apart from
/// the keys (about 800 bytes each) so that finding a flow's key touches one cache line.
#[derive(Clone, Copy, PartialEq, Eq)]
struct KeyTag {
    end: u8,
    syn: bool,
    mkt: u32,
}

/// Everything the checker knows about one connection.
pub(super) struct FlowState {
    pub(super) report: FlowReport,
    /// End 0 is the first sender seen.
    ends: [End; 2],
    client: Option<usize>,
    from_hint: bool,
    /// Cached traffic keys, `key_tags[i]` describing `keys[i]`.
    keys: Vec<TrafficKey>,
    key_tags: Vec<KeyTag>,
    pub(super) explain: ExplainState,
    last_used: u64,
    closed_at: Option<Timestamp>,
}

impl FlowState {
    fn new(id: u64, capture: &str, keys: &KeysFile, frame: &Frame<'_>, s: &SegInfo<'_>) -> Self {
        let mut st = FlowState {
            report: FlowReport {
                id,
                capture: capture.to_string(),
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
            ends: [End::default(), End::default()],
            client: None,
            from_hint: false,
            keys: Vec::new(),
            key_tags: Vec::new(),
            explain: ExplainState::default(),
            last_used: 0,
            closed_at: None,
        };
        st.ends[0].addr = Some(s.src);
        st.ends[1].addr = Some(s.dst);
        if let Some(h) = keys.flow_hint(s.src, s.dst) {
            let (ci, si) = if h.client == s.src { (0, 1) } else { (1, 0) };
            st.client = Some(ci);
            st.ends[ci].isn = Some(h.client_isn);
            st.ends[si].isn = Some(h.server_isn);
            st.ends[ci].sne_hint = Some(h.client_sne);
            st.ends[si].sne_hint = Some(h.server_sne);
            st.from_hint = true;
            st.report.isn_source = IsnSource::FlowEntry;
        }
        st
    }

    /// Continue an evicted connection: the report continues as a new flow.
    fn resume(&mut self, c: ColdFlow, key: FlowKey) {
        self.client = c.client.map(usize::from);
        self.from_hint = c.from_hint;
        let addr = if c.end0_is_key0 {
            [key.0, key.1]
        } else {
            [key.1, key.0]
        };
        for (i, end) in self.ends.iter_mut().enumerate() {
            end.addr = Some(addr[i]);
            end.isn = c.isn[i];
            end.sne = c.sne[i];
        }
        if c.isn[0].is_some() && c.isn[1].is_some() {
            self.report.isn_source = if c.from_hint {
                IsnSource::FlowEntry
            } else {
                IsnSource::Handshake
            };
        }
    }

    /// The end that sent a segment from `src`.
    pub(super) fn end_of(&self, src: SocketAddr) -> usize {
        if self.ends[0].addr == Some(src) { 0 } else { 1 }
    }

    /// Learn ISNs from a SYN or SYN-ACK (RFC 5925 §5.2 needs both for every traffic key but
    /// a bare SYN's) and who the client is.
    pub(super) fn learn_isns(&mut self, si: usize, s: &SegInfo<'_>) {
        if !s.syn {
            return;
        }
        let oi = 1 - si;
        if self.ends[si].isn != Some(s.seq) {
            self.ends[si].isn = Some(s.seq);
            self.ends[si].sne = Some(SneTracker::new(s.seq));
            self.keys.clear();
            self.key_tags.clear();
        }
        if !s.ack_flag && self.client.is_none() {
            self.client = Some(si);
        }
        if s.ack_flag && self.ends[oi].isn.is_none() {
            let isn = s.ack.wrapping_sub(1);
            self.ends[oi].isn = Some(isn);
            self.ends[oi].sne = Some(SneTracker::new(isn));
            if self.client.is_none() {
                self.client = Some(oi);
            }
        }
        self.report.isn_source = IsnSource::Handshake;
    }

    /// The SNE of a segment from end `si` (RFC 5925 §6.2): 0 for a SYN, else what the end's
    /// tracker infers, started at its ISN or at the `[[flow]]` entry's SNE.
    pub(super) fn sne_for(&mut self, si: usize, s: &SegInfo<'_>) -> u32 {
        if s.syn {
            return 0;
        }
        let end = &mut self.ends[si];
        if end.sne.is_none() {
            if let Some(h) = end.sne_hint {
                end.sne = Some(SneTracker::with_state(s.seq, h));
            } else if let Some(isn) = end.isn {
                end.sne = Some(SneTracker::new(isn));
            }
        }
        end.sne.map_or(0, |t| t.sne_for(s.seq))
    }

    /// (sender ISN, receiver ISN) for the traffic key of this segment, if known
    /// (RFC 5925 §5.2: a SYN uses 0 for the receiver's ISN).
    pub(super) fn isns_for(&self, si: usize, s: &SegInfo<'_>) -> Option<(u32, u32)> {
        if s.syn_without_ack() {
            return Some((s.seq, 0));
        }
        if s.syn {
            return Some((s.seq, s.ack.wrapping_sub(1)));
        }
        Some((self.ends[si].isn?, self.ends[1 - si].isn?))
    }

    /// Note the KeyID and RNextKeyID end `si` sent.
    pub(super) fn saw_key_ids(&mut self, si: usize, key_id: u8, rnext_key_id: u8) {
        set_bit(&mut self.ends[si].key_ids, key_id);
        set_bit(&mut self.ends[si].rnext_ids, rnext_key_id);
    }

    /// After the verdict: move the end's SNE reference past an accepted segment, and note
    /// FIN and RST. Once an end has sent a good segment, segments that fail (a forger's, a
    /// misconfigured peer's) no longer move its reference.
    pub(super) fn advance(&mut self, si: usize, s: &SegInfo<'_>, v: &Verdict, now: Timestamp) {
        let failed = matches!(
            v,
            Verdict::Bad { .. } | Verdict::KeyNotFound { .. } | Verdict::Md5Unexpected
        );
        let end = &mut self.ends[si];
        if !failed || end.good == 0 {
            if matches!(v, Verdict::Good { .. }) {
                end.good += 1;
            }
            if let Some(t) = end.sne.as_mut() {
                if !s.syn {
                    let len = s.payload_len as u32 + u32::from(s.syn) + u32::from(s.fin);
                    t.observe(s.seq, len);
                }
            }
        }
        if s.fin {
            end.fin = true;
        }
        if s.rst || (self.ends[0].fin && self.ends[1].fin) {
            self.closed_at.get_or_insert(now);
            self.report.state = if s.rst { "rst" } else { "fin" };
        }
    }

    /// The flow's report, with its ends named and its diagnosis written.
    fn finish(self, explain: bool) -> FlowReport {
        let mut r = self.report;
        let ci = self.client.unwrap_or(0);
        let si = 1 - ci;
        if let (Some(c), Some(s)) = (self.ends[ci].addr, self.ends[si].addr) {
            r.client = c;
            r.server = s;
        }
        r.client_known = self.client.is_some();
        r.client_isn = self.ends[ci].isn;
        r.server_isn = self.ends[si].isn;
        if r.isn_source == IsnSource::Handshake
            && (r.client_isn.is_none() || r.server_isn.is_none())
        {
            r.isn_source = IsnSource::Unknown;
        }
        r.client_key_ids = (bits(&self.ends[ci].key_ids), bits(&self.ends[ci].rnext_ids));
        r.server_key_ids = (bits(&self.ends[si].key_ids), bits(&self.ends[si].rnext_ids));
        if explain {
            r.diagnosis = self.explain.findings(&r, ci);
        }
        r
    }
}

/// The receiving end of one segment, for [`crate::verdict::decide`]: the keys file's
/// entries that cover the segment's addresses, and the flow's ISNs and traffic keys.
/// MKTs are named by their position in [`KeysFile::mkts`].
pub(super) struct FlowKeys<'a, 's> {
    pub(super) keys: &'a KeysFile,
    pub(super) flow: &'a mut FlowState,
    /// The sending end.
    pub(super) si: usize,
    pub(super) s: &'a SegInfo<'s>,
    /// A SYN's traffic key serves one segment (and its retransmissions): it is not cached,
    /// so a flow holds one ~800-byte key per end and MKT.
    syn_key: Option<TrafficKey>,
}

impl<'a, 's> FlowKeys<'a, 's> {
    pub(super) fn new(
        keys: &'a KeysFile,
        flow: &'a mut FlowState,
        si: usize,
        s: &'a SegInfo<'s>,
    ) -> Self {
        FlowKeys {
            keys,
            flow,
            si,
            s,
            syn_key: None,
        }
    }
}

impl Receiver for FlowKeys<'_, '_> {
    fn find_mkt(&mut self, key_id: u8) -> Option<usize> {
        let end = &mut self.flow.ends[self.si];
        if let Some((id, found)) = end.selected {
            if id == key_id {
                return found.map(|i| i as usize);
            }
        }
        let (src, dst) = (self.s.src.ip(), self.s.dst.ip());
        let found = self
            .keys
            .mkts
            .iter()
            .position(|e| e.matches_ao(src, dst, key_id));
        end.selected = Some((key_id, found.map(|i| i as u32)));
        found
    }

    fn mkt(&self, index: usize) -> &Mkt {
        self.keys.mkts[index]
            .mkt()
            .expect("find_mkt selects TCP-AO entries only")
    }

    fn traffic_key(&mut self, index: usize, syn: bool) -> Result<&TrafficKey, Unverifiable> {
        let (isn_s, isn_d) = self
            .flow
            .isns_for(self.si, self.s)
            .ok_or(Unverifiable::IsnsUnknown)?;
        let tag = KeyTag {
            end: self.si as u8,
            syn,
            mkt: index as u32,
        };
        if let Some(p) = self.flow.key_tags.iter().position(|t| *t == tag) {
            return Ok(&self.flow.keys[p]);
        }
        // Both addresses come from one parsed IP header: the context always builds.
        let ctx = Context::new(self.s.src, self.s.dst, isn_s, isn_d)
            .map_err(|_| Unverifiable::IsnsUnknown)?;
        let key = TrafficKey::derive(self.mkt(index), &ctx);
        if syn {
            return Ok(self.syn_key.insert(key));
        }
        // Exact growth: a flow usually needs one key per end.
        let flow = &mut *self.flow;
        flow.keys.reserve_exact(1);
        flow.keys.push(key);
        flow.key_tags.push(tag);
        Ok(&flow.keys[flow.keys.len() - 1])
    }

    fn md5_key(&mut self) -> Option<(usize, &[u8])> {
        let (src, dst) = (self.s.src.ip(), self.s.dst.ip());
        let i = self
            .keys
            .mkts
            .iter()
            .position(|e| e.matches_md5(src, dst))?;
        Some((i, self.keys.mkts[i].secret()))
    }

    fn required(&mut self) -> Required {
        let (src, dst) = (self.s.src.ip(), self.s.dst.ip());
        let covering = |md5: bool| {
            self.keys
                .mkts
                .iter()
                .position(|e| e.mkt().is_none() == md5 && e.covers(src, dst))
        };
        if let Some(i) = covering(false) {
            Required::Ao(Some(i))
        } else if let Some(i) = covering(true) {
            Required::Md5(Some(i))
        } else {
            Required::Nothing
        }
    }
}

pub(super) type FlowKey = (SocketAddr, SocketAddr);

/// The unordered 4-tuple of a segment.
pub(super) fn flow_key(a: SocketAddr, b: SocketAddr) -> FlowKey {
    if a <= b { (a, b) } else { (b, a) }
}

/// Live flows, evicted open flows and the reports of retired ones.
pub(super) struct FlowTable {
    /// Live flows, boxed: the table's empty buckets then cost 72 bytes, not 900.
    live: HashMap<FlowKey, Box<FlowState>, FlowHashBuilder>,
    /// Evicted open flows ([`Options::max_cold_flows`]).
    cold: HashMap<FlowKey, ColdFlow, FlowHashBuilder>,
    finished: Vec<FlowReport>,
    next_id: u64,
    /// Set by [`super::parallel`]: flow ids are `(capture index << 40) | first frame
    /// number`, which orders flows by first appearance across workers (renumbered after the
    /// merge).
    pub(super) sharded_ids: Option<u64>,
    omitted: u64,
    tick: u64,
    max_flows: usize,
    max_cold_flows: usize,
    max_flow_reports: usize,
    close_timeout_secs: i64,
    explain: bool,
}

impl FlowTable {
    pub(super) fn new(opts: &Options) -> Self {
        FlowTable {
            live: HashMap::with_hasher(FlowHashBuilder::new()),
            cold: HashMap::with_hasher(FlowHashBuilder::new()),
            finished: Vec::new(),
            next_id: 1,
            sharded_ids: None,
            omitted: 0,
            tick: 0,
            max_flows: opts.max_flows,
            max_cold_flows: opts.max_cold_flows,
            max_flow_reports: opts.max_flow_reports,
            close_timeout_secs: opts.close_timeout_secs,
            explain: opts.explain,
        }
    }

    /// Number of flows currently tracked.
    pub(super) fn live(&self) -> usize {
        self.live.len()
    }

    /// The flow of segment `s`, opened (or resumed) if new. A SYN with another ISN on a known
    /// 4-tuple starts a new connection; a full table first evicts the least recently used.
    pub(super) fn flow(
        &mut self,
        keys: &KeysFile,
        capture: &str,
        frame: &Frame<'_>,
        s: &SegInfo<'_>,
    ) -> &mut FlowState {
        self.tick += 1;
        let key = flow_key(s.src, s.dst);
        if s.syn_without_ack() {
            if let Some(f) = self.live.get(&key) {
                let end = f.end_of(s.src);
                if f.ends[end].isn.is_some_and(|isn| isn != s.seq) {
                    if let Some(f) = self.live.remove(&key) {
                        self.retire(f);
                    }
                }
            }
        }
        if self.live.len() >= self.max_flows && !self.live.contains_key(&key) {
            self.evict_lru();
        }
        // One hash lookup per segment (the flow table is the hot spot on many-flow captures).
        let flow = match self.live.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let id = match self.sharded_ids {
                    Some(capture) => (capture << 40) | frame.number,
                    None => {
                        self.next_id += 1;
                        self.next_id - 1
                    }
                };
                let mut st = FlowState::new(id, capture, keys, frame, s);
                if let Some(c) = self.cold.remove(&key) {
                    st.resume(c, key);
                }
                e.insert(Box::new(st))
            }
        };
        flow.last_used = self.tick;
        flow.report.frames.1 = frame.number;
        flow
    }

    /// Keep the report of a flow that ended, up to [`Options::max_flow_reports`].
    fn retire(&mut self, f: Box<FlowState>) {
        let cap = self.max_flow_reports;
        let failing = f.report.counts.failures() > 0;
        // Failing flows get a second allowance: they are what the reader looks for.
        if self.finished.len() < cap || (failing && self.finished.len() < cap.saturating_mul(2)) {
            self.finished.push(f.finish(self.explain));
        } else {
            self.omitted += 1;
        }
    }

    /// Retire flows closed long enough ago.
    pub(super) fn sweep(&mut self, now: Timestamp) {
        let t = self.close_timeout_secs;
        let expired: Vec<FlowKey> = self
            .live
            .iter()
            .filter(|(_, f)| f.closed_at.is_some_and(|c| now.secs - c.secs > t))
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(f) = self.live.remove(&k) {
                self.retire(f);
            }
        }
    }

    /// Retire the least recently used eighth of the flows.
    fn evict_lru(&mut self) {
        let mut ticks: Vec<u64> = self.live.values().map(|f| f.last_used).collect();
        let n = (ticks.len() / 8).max(1);
        let (_, &mut cut, _) = ticks.select_nth_unstable(n - 1);
        let old: Vec<FlowKey> = self
            .live
            .iter()
            .filter(|(_, f)| f.last_used <= cut)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            if let Some(f) = self.live.remove(&k) {
                let resumable = f.closed_at.is_none() && f.ends.iter().all(|e| e.isn.is_some());
                if resumable && self.cold.len() < self.max_cold_flows {
                    let cold = ColdFlow {
                        client: f.client.map(|c| c as u8),
                        end0_is_key0: f.ends[0].addr == Some(k.0),
                        isn: [f.ends[0].isn, f.ends[1].isn],
                        sne: [f.ends[0].sne, f.ends[1].sne],
                        from_hint: f.from_hint,
                    };
                    self.cold.insert(k, cold);
                }
                self.retire(f);
            }
        }
    }

    /// Retire every live flow, in order of first appearance.
    fn retire_all(&mut self) {
        let mut all: Vec<Box<FlowState>> = self.live.drain().map(|(_, f)| f).collect();
        all.sort_by_key(|f| f.report.id);
        for f in all {
            self.retire(f);
        }
    }

    /// Start the next capture: flows do not span captures.
    pub(super) fn begin_capture(&mut self) {
        self.retire_all();
        self.cold.clear();
        if let Some(i) = self.sharded_ids.as_mut() {
            *i += 1;
        }
    }

    /// Every flow's report, in order of first appearance, and the number left out.
    pub(super) fn finish(mut self) -> (Vec<FlowReport>, u64) {
        self.retire_all();
        let mut flows = std::mem::take(&mut self.finished);
        flows.sort_by_key(|f| f.id);
        (flows, self.omitted)
    }
}

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

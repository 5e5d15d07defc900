// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-flow validation of observed segments: one known connection, seen from its "local"
//! end.
//!
//! A [`FlowValidator`] knows one connection ([`Connection`]), the MKTs of its local end and
//! optionally a TCP-MD5 key. For each segment it infers the SNE (RFC 5925 §6.2, Linux
//! style), lets [`crate::verdict::decide`] choose the MKT by KeyID (RFC 5925 §7.3: the
//! sender's SendID, i.e. the local SendID for local→remote segments and the local RecvID
//! for remote→local ones) and verify the MAC (RFC 5925 §7.6), and counts the verdict. The
//! verdicts and the counters they increment are listed in [`crate::verdict`].

use crate::error::{Error, Result};
use crate::kdf::{Connection, TrafficKey, TrafficKeys};
use crate::mkt::{MasterKey, Mkt};
use crate::sne::SneTracker;
use crate::verdict::{self, AuthOption, Counts, Receiver, Required, Unverifiable, Verdict};
use crate::wire::SegmentRef;

/// Direction of a segment relative to the validator's [`Connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by `local` to `remote`.
    LocalToRemote,
    /// Sent by `remote` to `local`.
    RemoteToLocal,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::LocalToRemote => Direction::RemoteToLocal,
            Direction::RemoteToLocal => Direction::LocalToRemote,
        }
    }

    fn index(self) -> usize {
        match self {
            Direction::LocalToRemote => 0,
            Direction::RemoteToLocal => 1,
        }
    }
}

/// One MKT with its four traffic keys for the connection.
#[derive(Debug, Clone)]
struct KeyEntry {
    mkt: Mkt,
    keys: TrafficKeys,
}

/// Validates the segments of one connection in both directions.
///
/// ```
/// use tcpao_refimpl::{Algorithm, Connection, Mkt};
/// use tcpao_refimpl::sign::ConnectionSigner;
/// use tcpao_refimpl::{FlowValidator, Verdict};
/// use tcpao_refimpl::wire::{TcpFlags, TcpRepr};
///
/// let conn = Connection::new("10.0.0.1:40000".parse()?, "10.0.0.2:179".parse()?, 1000, 5000);
/// let mkt = Mkt::new(7, 9, Algorithm::AesCmac128, "secret");
/// let mut client = ConnectionSigner::new(mkt.clone(), conn)?;
/// let syn = TcpRepr { src_port: 40000, dst_port: 179, seq_number: 1000, ack_number: 0,
///     flags: TcpFlags::SYN, window_len: 65535, urgent_at: 0, options: &[], payload: &[] };
/// let (packet, _sne) = client.sign(&syn)?;
///
/// let mut v = FlowValidator::new(conn, [mkt])?;
/// assert!(matches!(v.validate_packet(&packet)?, Verdict::Good { key_id: 7, .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FlowValidator {
    conn: Connection,
    keys: Vec<KeyEntry>,
    md5_key: Option<MasterKey>,
    ao_required: bool,
    sne: [SneTracker; 2],
    counts: Counts,
}

impl FlowValidator {
    /// A validator for `conn` with the local end's MKTs (may be empty). TCP-AO is required
    /// when at least one MKT is given, as Linux requires it when a key matches the peer.
    ///
    /// # Errors
    /// [`Error::AddressFamilyMismatch`].
    pub fn new(conn: Connection, mkts: impl IntoIterator<Item = Mkt>) -> Result<Self> {
        let keys = mkts
            .into_iter()
            .map(|mkt| {
                Ok(KeyEntry {
                    keys: TrafficKeys::derive(&mkt, &conn)?,
                    mkt,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if !conn.is_consistent() {
            return Err(Error::AddressFamilyMismatch);
        }
        Ok(FlowValidator {
            ao_required: !keys.is_empty(),
            conn,
            keys,
            md5_key: None,
            sne: [
                SneTracker::new(conn.local_isn),
                SneTracker::new(conn.remote_isn),
            ],
            counts: Counts::default(),
        })
    }

    /// Configure a TCP-MD5 key for the connection.
    pub fn with_md5_key(mut self, key: MasterKey) -> Self {
        self.md5_key = Some(key);
        self
    }

    /// Override whether unsigned segments are rejected (`TCP_AO_INFO.ao_required`).
    pub fn set_ao_required(&mut self, required: bool) {
        self.ao_required = required;
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Verdicts so far; [`Counts::get`] reads them as the kernel's counters.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The SNE tracker of a direction.
    pub fn sne_tracker(&self, dir: Direction) -> &SneTracker {
        &self.sne[dir.index()]
    }

    /// Replace the SNE tracker of a direction (e.g. to start mid-connection).
    pub fn set_sne_tracker(&mut self, dir: Direction, tracker: SneTracker) {
        self.sne[dir.index()] = tracker;
    }

    /// The direction of a segment by its addresses and ports, or `None` if it does not
    /// belong to this connection.
    pub fn direction_of(&self, seg: &SegmentRef<'_>) -> Option<Direction> {
        let t = seg.tcp_packet();
        let (sp, dp) = (t.src_port(), t.dst_port());
        let (l, r) = (self.conn.local, self.conn.remote);
        if seg.src == l.ip() && seg.dst == r.ip() && sp == l.port() && dp == r.port() {
            Some(Direction::LocalToRemote)
        } else if seg.src == r.ip() && seg.dst == l.ip() && sp == r.port() && dp == l.port() {
            Some(Direction::RemoteToLocal)
        } else {
            None
        }
    }

    /// Parse an IP packet, find its direction, validate it and update SNE state and
    /// counters.
    ///
    /// # Errors
    /// Wire errors for packets that do not parse as TCP over IP;
    /// [`Error::NotThisConnection`].
    pub fn validate_packet(&mut self, packet: &[u8]) -> Result<Verdict> {
        let seg = SegmentRef::parse(packet)?;
        let dir = self.direction_of(&seg).ok_or(Error::NotThisConnection)?;
        Ok(self.validate(dir, &seg))
    }

    /// Validate a segment travelling in `dir`, infer its SNE from that direction's tracker,
    /// count the verdict, and advance the tracker if the segment is accepted.
    pub fn validate(&mut self, dir: Direction, seg: &SegmentRef<'_>) -> Verdict {
        let t = seg.tcp_packet();
        let seq = t.seq_number();
        let sne = self.sne[dir.index()].sne_for(seq);
        let v = self.check(dir, seg, sne);
        self.counts.add(&v);
        if v.is_accepted() {
            self.sne[dir.index()].observe(seq, t.segment_len() as u32);
        }
        v
    }

    /// Validate a segment with a given SNE, without touching any state.
    pub fn check(&self, dir: Direction, seg: &SegmentRef<'_>, sne: u32) -> Verdict {
        let auth = match AuthOption::parse(seg) {
            Ok(a) => a,
            Err(reason) => return Verdict::Malformed { reason },
        };
        verdict::decide(&mut Keys { v: self, dir }, seg, &auth, sne).verdict
    }
}

/// The validator's keys for segments travelling in one direction.
struct Keys<'v> {
    v: &'v FlowValidator,
    dir: Direction,
}

impl Receiver for Keys<'_> {
    fn find_mkt(&mut self, key_id: u8) -> Option<usize> {
        self.v.keys.iter().position(|e| match self.dir {
            Direction::LocalToRemote => e.mkt.send_id == key_id,
            Direction::RemoteToLocal => e.mkt.recv_id == key_id,
        })
    }

    fn mkt(&self, index: usize) -> &Mkt {
        &self.v.keys[index].mkt
    }

    fn traffic_key(
        &mut self,
        index: usize,
        syn: bool,
    ) -> core::result::Result<&TrafficKey, Unverifiable> {
        let keys = &self.v.keys[index].keys;
        Ok(match self.dir {
            Direction::LocalToRemote => keys.for_send(syn),
            Direction::RemoteToLocal => keys.for_recv(syn),
        })
    }

    fn md5_key(&mut self) -> Option<(usize, &[u8])> {
        self.v.md5_key.as_ref().map(|k| (0, k.as_bytes()))
    }

    fn required(&mut self) -> Required {
        if self.v.ao_required {
            Required::Ao(None)
        } else if self.v.md5_key.is_some() {
            Required::Md5(Some(0))
        } else {
            Required::Nothing
        }
    }
}

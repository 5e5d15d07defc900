// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-flow validation of observed segments, with kernel-named verdicts and counters.
//!
//! A [`FlowValidator`] knows one connection ([`Connection`], seen from its "local" end),
//! the MKTs of that local end, and optionally a TCP-MD5 key. For each segment it picks
//! the MKT by KeyID (RFC 5925 §7.3: the sender's SendID, i.e. the local SendID for
//! local→remote segments and the local RecvID for remote→local ones), picks the SYN or
//! "other" traffic key (RFC 5925 §5.2; SYN-ACK uses "other"), infers the SNE
//! (RFC 5925 §6.2, Linux style) and verifies the MAC (RFC 5925 §7.6).
//!
//! A segment that fails authentication is a [`Verdict`], not an error. The verdicts map to
//! the Linux SNMP counters ([`Counter`]) the way `tcp_inbound_hash()` counts them:
//!
//! | verdict | counter |
//! |---|---|
//! | [`Verdict::Good`] | `TCPAOGood` |
//! | [`Verdict::Bad`] (MAC mismatch or wrong MAC length) | `TCPAOBad` |
//! | [`Verdict::KeyNotFound`] | `TCPAOKeyNotFound` |
//! | [`Verdict::Unsigned`] (TCP-AO configured, segment unsigned) | `TCPAORequired` |
//! | [`Verdict::Md5Good`] | none |
//! | [`Verdict::Md5Bad`] | `TCPMD5Failure` |
//! | [`Verdict::Md5NotFound`] (MD5 configured, segment unsigned) | `TCPMD5NotFound` |
//! | [`Verdict::Md5Unexpected`] (MD5 option, no MD5 key) | `TCPMD5Unexpected` |
//! | [`Verdict::Unauthenticated`] (no keys, no option) | none |
//! | [`Verdict::Malformed`] (bad option layout, two auth options) | none (dropped) |

use core::fmt;

use crate::error::{Error, Result};
use crate::kdf::{Connection, TrafficKeys};
use crate::mac::verify_mac_at;
use crate::md5::md5_digest;
use crate::mkt::{MasterKey, Mkt};
use crate::sne::SneTracker;
use crate::wire::{self, AoOption, SegmentRef};

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

/// Why a TCP-AO segment was rejected although its key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadReason {
    /// The MAC does not verify (Linux trace event `tcp_ao_mismatch`).
    MacMismatch,
    /// The option's MAC length differs from the MKT's (`tcp_ao_wrong_maclen`).
    WrongMacLength {
        /// MKT MAC length.
        expected: usize,
        /// MAC length in the segment.
        found: usize,
    },
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReason::MacMismatch => f.write_str("MAC mismatch"),
            BadReason::WrongMacLength { expected, found } => {
                write!(f, "MAC length {found}, key expects {expected}")
            }
        }
    }
}

/// The outcome of validating one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// TCP-AO MAC verified.
    Good {
        /// KeyID of the segment.
        key_id: u8,
        /// RNextKeyID of the segment.
        rnext_key_id: u8,
        /// SNE used.
        sne: u32,
    },
    /// TCP-AO MAC wrong, or of the wrong length.
    Bad {
        /// KeyID of the segment.
        key_id: u8,
        /// SNE used.
        sne: u32,
        /// What was wrong.
        reason: BadReason,
    },
    /// TCP-AO option with a KeyID no MKT matches.
    KeyNotFound {
        /// KeyID of the segment.
        key_id: u8,
    },
    /// No TCP-AO option although TCP-AO is required on this connection.
    Unsigned,
    /// TCP-MD5 digest verified.
    Md5Good,
    /// TCP-MD5 digest wrong.
    Md5Bad,
    /// No TCP-MD5 option although an MD5 key is configured.
    Md5NotFound,
    /// TCP-MD5 option but no MD5 key configured.
    Md5Unexpected,
    /// No keys configured and no authentication option: accepted without authentication.
    Unauthenticated,
    /// The option layout is invalid (Linux drops it: `tcp_hash_bad_header`).
    Malformed {
        /// The parse error.
        reason: wire::Error,
    },
}

impl Verdict {
    /// The Linux SNMP counter this verdict increments, if any.
    pub fn counter(&self) -> Option<Counter> {
        match self {
            Verdict::Good { .. } => Some(Counter::TCPAOGood),
            Verdict::Bad { .. } => Some(Counter::TCPAOBad),
            Verdict::KeyNotFound { .. } => Some(Counter::TCPAOKeyNotFound),
            Verdict::Unsigned => Some(Counter::TCPAORequired),
            Verdict::Md5Bad => Some(Counter::TCPMD5Failure),
            Verdict::Md5NotFound => Some(Counter::TCPMD5NotFound),
            Verdict::Md5Unexpected => Some(Counter::TCPMD5Unexpected),
            Verdict::Md5Good | Verdict::Unauthenticated | Verdict::Malformed { .. } => None,
        }
    }

    /// Whether the kernel would accept the segment (pass it on to TCP).
    pub fn is_accepted(&self) -> bool {
        matches!(
            self,
            Verdict::Good { .. } | Verdict::Md5Good | Verdict::Unauthenticated
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Good { key_id, sne, .. } => write!(f, "good (KeyID {key_id}, SNE {sne})"),
            Verdict::Bad {
                key_id,
                sne,
                reason,
            } => write!(f, "bad: {reason} (KeyID {key_id}, SNE {sne})"),
            Verdict::KeyNotFound { key_id } => write!(f, "key not found (KeyID {key_id})"),
            Verdict::Unsigned => f.write_str("unsigned segment, TCP-AO required"),
            Verdict::Md5Good => f.write_str("TCP-MD5 good"),
            Verdict::Md5Bad => f.write_str("TCP-MD5 bad"),
            Verdict::Md5NotFound => f.write_str("unsigned segment, TCP-MD5 required"),
            Verdict::Md5Unexpected => f.write_str("unexpected TCP-MD5 option"),
            Verdict::Unauthenticated => f.write_str("unauthenticated (no keys)"),
            Verdict::Malformed { reason } => write!(f, "malformed: {reason}"),
        }
    }
}

/// Linux SNMP `TcpExt` counters related to segment authentication.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// `TCPAOGood`.
    TCPAOGood,
    /// `TCPAOBad`.
    TCPAOBad,
    /// `TCPAOKeyNotFound`.
    TCPAOKeyNotFound,
    /// `TCPAORequired`.
    TCPAORequired,
    /// `TCPMD5Failure`.
    TCPMD5Failure,
    /// `TCPMD5NotFound`.
    TCPMD5NotFound,
    /// `TCPMD5Unexpected`.
    TCPMD5Unexpected,
}

impl Counter {
    /// All counters.
    pub const ALL: [Counter; 7] = [
        Counter::TCPAOGood,
        Counter::TCPAOBad,
        Counter::TCPAOKeyNotFound,
        Counter::TCPAORequired,
        Counter::TCPMD5Failure,
        Counter::TCPMD5NotFound,
        Counter::TCPMD5Unexpected,
    ];

    /// The name in `/proc/net/netstat`.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::TCPAOGood => "TCPAOGood",
            Counter::TCPAOBad => "TCPAOBad",
            Counter::TCPAOKeyNotFound => "TCPAOKeyNotFound",
            Counter::TCPAORequired => "TCPAORequired",
            Counter::TCPMD5Failure => "TCPMD5Failure",
            Counter::TCPMD5NotFound => "TCPMD5NotFound",
            Counter::TCPMD5Unexpected => "TCPMD5Unexpected",
        }
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counter values, indexed by [`Counter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters([u64; 7]);

impl Counters {
    /// The value of one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }

    /// Add one to a counter.
    pub fn bump(&mut self, c: Counter) {
        self.0[c as usize] += 1;
    }

    /// Count a verdict.
    pub fn record(&mut self, v: &Verdict) {
        if let Some(c) = v.counter() {
            self.bump(c);
        }
    }

    /// `(counter, value)` pairs in [`Counter::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.into_iter().map(|c| (c, self.get(c)))
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
/// use tcpao_refimpl::validate::{FlowValidator, Verdict};
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
    counters: Counters,
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
            counters: Counters::default(),
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

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
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
        self.counters.record(&v);
        if v.is_accepted() {
            self.sne[dir.index()].observe(seq, t.segment_len() as u32);
        }
        v
    }

    /// Validate a segment with a given SNE, without touching any state.
    pub fn check(&self, dir: Direction, seg: &SegmentRef<'_>, sne: u32) -> Verdict {
        let t = seg.tcp_packet();
        let auth = match t.auth_options() {
            Ok(a) => a,
            Err(reason) => return Verdict::Malformed { reason },
        };
        if let Some(r) = auth.ao {
            // Length > 4 was checked by auth_options.
            let opt = AoOption::new_unchecked(&seg.tcp[r.clone()]);
            let key_id = opt.key_id();
            let found = self.keys.iter().find(|e| match dir {
                Direction::LocalToRemote => e.mkt.send_id == key_id,
                Direction::RemoteToLocal => e.mkt.recv_id == key_id,
            });
            let Some(entry) = found else {
                return Verdict::KeyNotFound { key_id };
            };
            let mac_len = r.len() - 4;
            if mac_len != entry.mkt.mac_len() {
                return Verdict::Bad {
                    key_id,
                    sne,
                    reason: BadReason::WrongMacLength {
                        expected: entry.mkt.mac_len(),
                        found: mac_len,
                    },
                };
            }
            // RFC 5925 §5.2: a SYN without ACK uses the SYN key, everything else "other".
            let syn_only = t.syn() && !t.ack();
            let key = match dir {
                Direction::LocalToRemote => entry.keys.for_send(syn_only),
                Direction::RemoteToLocal => entry.keys.for_recv(syn_only),
            };
            return match verify_mac_at(key, sne, seg, &r, entry.mkt.include_options) {
                Ok(true) => Verdict::Good {
                    key_id,
                    rnext_key_id: opt.rnext_key_id(),
                    sne,
                },
                Ok(false) => Verdict::Bad {
                    key_id,
                    sne,
                    reason: BadReason::MacMismatch,
                },
                Err(Error::Wire(reason)) => Verdict::Malformed { reason },
                Err(_) => Verdict::Malformed {
                    reason: wire::Error::BadOptionLength {
                        kind: wire::TCPOPT_AO,
                        len: r.len() as u8,
                    },
                },
            };
        }
        if let Some(r) = auth.md5 {
            let Some(key) = &self.md5_key else {
                return Verdict::Md5Unexpected;
            };
            return match md5_digest(seg, key.as_bytes()) {
                Ok(d) => {
                    use subtle::ConstantTimeEq;
                    if bool::from(d.ct_eq(&seg.tcp[r.start + 2..r.end])) {
                        Verdict::Md5Good
                    } else {
                        Verdict::Md5Bad
                    }
                }
                Err(Error::Wire(reason)) => Verdict::Malformed { reason },
                Err(_) => Verdict::Md5Bad,
            };
        }
        if self.ao_required {
            Verdict::Unsigned
        } else if self.md5_key.is_some() {
            Verdict::Md5NotFound
        } else {
            Verdict::Unauthenticated
        }
    }
}

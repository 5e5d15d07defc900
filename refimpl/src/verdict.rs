// SPDX-License-Identifier: MIT OR Apache-2.0
//! The verdict on one received segment, decided in one place for every engine.
//!
//! [`decide`] is RFC 5925 §7.3 (segment arrival) and §7.6 (MAC verification), with RFC 2385
//! for TCP-MD5, in the order Linux's `tcp_inbound_hash()` applies them:
//!
//! 1. the authentication options are parsed through the wire views ([`AuthOption::parse`]);
//!    a bad layout, or more than one TCP-AO/TCP-MD5 option, is [`Verdict::Malformed`];
//! 2. an unsigned segment is dropped when the receiver requires TCP-AO (or TCP-MD5) from
//!    the peer, and accepted otherwise;
//! 3. the KeyID selects one MKT ([`Receiver::find_mkt`]); none is [`Verdict::KeyNotFound`];
//! 4. a MAC of another length than the MKT's is [`Verdict::Bad`];
//! 5. the MAC is checked in constant time with the traffic key of the segment (RFC 5925
//!    §5.2: the SYN key for a SYN without ACK).
//!
//! The engines keep only their own state behind the [`Receiver`] trait:
//! [`crate::FlowValidator`] knows one connection, its MKTs and both ISNs;
//! [`crate::verify::Checker`] reads a capture, learns ISNs from handshakes and matches keys
//! file entries by address.
//!
//! Every verdict has one row in one table: its report name, the Linux SNMP counter it
//! increments (as `tcp_inbound_hash()` counts), whether a capture check fails on it and
//! whether the kernel would accept the segment. [`Counts`] is indexed by that table.
//!
//! | verdict | name | counter | failure | accepted |
//! |---|---|---|---|---|
//! | [`Verdict::Good`] | `good` | `TCPAOGood` | | yes |
//! | [`Verdict::Bad`] | `bad` | `TCPAOBad` | yes | |
//! | [`Verdict::KeyNotFound`] | `key_not_found` | `TCPAOKeyNotFound` | yes | |
//! | [`Verdict::Unsigned`] | `unsigned` | `TCPAORequired` | yes | |
//! | [`Verdict::Md5Good`] | `md5_good` | | | yes |
//! | [`Verdict::Md5Bad`] | `md5_bad` | `TCPMD5Failure` | yes | |
//! | [`Verdict::Md5NotFound`] | `unsigned` | `TCPMD5NotFound` | yes | |
//! | [`Verdict::Md5Unexpected`] | `key_not_found` | `TCPMD5Unexpected` | yes | |
//! | [`Verdict::Unauthenticated`] | `not_covered` | | | yes |
//! | [`Verdict::Unverifiable`] | `unverifiable` | | | |
//! | [`Verdict::Malformed`] | `malformed` | | | |

use core::fmt;
use core::ops::Range;

use crate::error::Error;
use crate::kdf::TrafficKey;
use crate::mac::verify_mac_at;
use crate::md5::verify_md5;
use crate::mkt::Mkt;
use crate::wire::{self, AoOption, SegmentRef};

/// Why a TCP-AO segment was rejected although its MKT was found.
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

/// Why a signed segment whose MKT was found cannot be checked (capture forensics only: a
/// receiver always knows its connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unverifiable {
    /// The traffic key needs both ISNs (RFC 5925 §5.2) and the capture holds no handshake.
    IsnsUnknown,
    /// The frame was cut by the capture's snaplen: the MAC covers bytes that are missing.
    Truncated,
}

impl fmt::Display for Unverifiable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unverifiable::IsnsUnknown => "ISNs unknown",
            Unverifiable::Truncated => "frame cut by the snaplen",
        })
    }
}

/// The outcome of receiving one segment.
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
    /// No TCP-AO option although TCP-AO is required from the peer.
    Unsigned,
    /// TCP-MD5 digest verified.
    Md5Good,
    /// TCP-MD5 digest wrong.
    Md5Bad,
    /// No TCP-MD5 option although an MD5 key is configured for the peer.
    Md5NotFound,
    /// TCP-MD5 option but no MD5 key for the peer.
    Md5Unexpected,
    /// No key for the peer and no authentication option: accepted without authentication.
    Unauthenticated,
    /// Signed, and a key applies, but the MAC cannot be checked.
    Unverifiable {
        /// Why not.
        reason: Unverifiable,
    },
    /// The option layout is invalid (Linux drops it: `tcp_hash_bad_header`).
    Malformed {
        /// The parse error.
        reason: wire::Error,
    },
}

/// One row of the verdict table (see the module documentation).
struct Row {
    name: &'static str,
    counter: Option<Counter>,
    failure: bool,
    accepted: bool,
}

const fn row(name: &'static str, counter: Option<Counter>, failure: bool, accepted: bool) -> Row {
    Row {
        name,
        counter,
        failure,
        accepted,
    }
}

/// The verdict table, indexed by [`Verdict::index`].
const ROWS: [Row; Verdict::COUNT] = [
    row("good", Some(Counter::TCPAOGood), false, true),
    row("bad", Some(Counter::TCPAOBad), true, false),
    row(
        "key_not_found",
        Some(Counter::TCPAOKeyNotFound),
        true,
        false,
    ),
    row("unsigned", Some(Counter::TCPAORequired), true, false),
    row("md5_good", None, false, true),
    row("md5_bad", Some(Counter::TCPMD5Failure), true, false),
    row("unsigned", Some(Counter::TCPMD5NotFound), true, false),
    row(
        "key_not_found",
        Some(Counter::TCPMD5Unexpected),
        true,
        false,
    ),
    row("not_covered", None, false, true),
    row("unverifiable", None, false, false),
    row("malformed", None, false, false),
];

impl Verdict {
    /// Number of verdicts (rows of the verdict table).
    pub const COUNT: usize = 11;

    /// The report names, in the order of the JSON summary and the text report.
    pub const NAMES: [&'static str; 8] = [
        "good",
        "bad",
        "key_not_found",
        "unsigned",
        "unverifiable",
        "md5_good",
        "md5_bad",
        "not_covered",
    ];

    /// This verdict's row in the verdict table.
    const fn index(&self) -> usize {
        match self {
            Verdict::Good { .. } => 0,
            Verdict::Bad { .. } => 1,
            Verdict::KeyNotFound { .. } => 2,
            Verdict::Unsigned => 3,
            Verdict::Md5Good => 4,
            Verdict::Md5Bad => 5,
            Verdict::Md5NotFound => 6,
            Verdict::Md5Unexpected => 7,
            Verdict::Unauthenticated => 8,
            Verdict::Unverifiable { .. } => 9,
            Verdict::Malformed { .. } => 10,
        }
    }

    /// The name in reports (`good`, `bad`, `key_not_found`, `unsigned`, `unverifiable`,
    /// `md5_good`, `md5_bad`, `not_covered`; `malformed`). An unsigned segment is `unsigned`
    /// whether TCP-AO or TCP-MD5 was required, a TCP-MD5 option without a key
    /// `key_not_found`.
    pub const fn name(&self) -> &'static str {
        ROWS[self.index()].name
    }

    /// The Linux SNMP counter this verdict increments, if any.
    pub const fn counter(&self) -> Option<Counter> {
        ROWS[self.index()].counter
    }

    /// Whether a capture check fails on this verdict (`tcpao-verify` exits with 1).
    pub const fn is_failure(&self) -> bool {
        ROWS[self.index()].failure
    }

    /// Whether the kernel would accept the segment (pass it on to TCP).
    pub const fn is_accepted(&self) -> bool {
        ROWS[self.index()].accepted
    }

    /// The KeyID of a TCP-AO verdict that carries one.
    pub const fn key_id(&self) -> Option<u8> {
        match self {
            Verdict::Good { key_id, .. }
            | Verdict::Bad { key_id, .. }
            | Verdict::KeyNotFound { key_id } => Some(*key_id),
            _ => None,
        }
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
            Verdict::Unverifiable { reason } => write!(f, "unverifiable: {reason}"),
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

/// Segments counted by verdict. Every other view (report names, kernel counters, failures)
/// is derived from the verdict table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts([u64; Verdict::COUNT]);

impl Counts {
    /// Count one verdict.
    pub fn add(&mut self, v: &Verdict) {
        self.0[v.index()] += 1;
    }

    /// Add all counts of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    fn sum(&self, pick: impl Fn(&Row) -> bool) -> u64 {
        ROWS.iter()
            .zip(self.0)
            .filter(|(r, _)| pick(r))
            .map(|(_, n)| n)
            .sum()
    }

    /// Segments counted under a report name (see [`Verdict::name`]).
    pub fn named(&self, name: &str) -> u64 {
        self.sum(|r| r.name == name)
    }

    /// The value of a kernel counter: the verdicts that increment it.
    pub fn get(&self, c: Counter) -> u64 {
        self.sum(|r| r.counter == Some(c))
    }

    /// `(counter, value)` pairs in [`Counter::ALL`] order.
    pub fn counters(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        Counter::ALL.into_iter().map(|c| (c, self.get(c)))
    }

    /// Segments whose verdict makes a capture check fail.
    pub fn failures(&self) -> u64 {
        self.sum(|r| r.failure)
    }

    /// Segments counted, all verdicts.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// TCP-AO MACs that verified (`good`).
    pub fn good(&self) -> u64 {
        self.named("good")
    }

    /// TCP-AO MACs that did not, or had the wrong length (`bad`).
    pub fn bad(&self) -> u64 {
        self.named("bad")
    }

    /// Signed segments without an applicable key (`key_not_found`).
    pub fn key_not_found(&self) -> u64 {
        self.named("key_not_found")
    }

    /// Unsigned segments where a key was required (`unsigned`).
    pub fn unsigned(&self) -> u64 {
        self.named("unsigned")
    }

    /// Signed segments that could not be checked (`unverifiable`).
    pub fn unverifiable(&self) -> u64 {
        self.named("unverifiable")
    }

    /// TCP-MD5 digests that verified (`md5_good`).
    pub fn md5_good(&self) -> u64 {
        self.named("md5_good")
    }

    /// TCP-MD5 digests that did not (`md5_bad`).
    pub fn md5_bad(&self) -> u64 {
        self.named("md5_bad")
    }

    /// Segments neither signed nor covered by a key (`not_covered`).
    pub fn not_covered(&self) -> u64 {
        self.named("not_covered")
    }
}

/// The authentication option of a segment, read through the wire views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOption<'a> {
    /// Neither TCP-AO nor TCP-MD5.
    None,
    /// One TCP-AO option (RFC 5925 §2.2).
    Ao {
        /// The option, from its kind byte.
        option: AoOption<&'a [u8]>,
        /// Its byte range in the TCP header.
        range: Range<usize>,
    },
    /// One TCP-MD5 option (RFC 2385 §3.0).
    Md5,
}

impl<'a> AuthOption<'a> {
    /// Find the authentication option of `seg`.
    ///
    /// # Errors
    /// A bad option layout, or more than one TCP-AO/TCP-MD5 option (RFC 5925 §2.2: at most
    /// one TCP-AO option; §2.4: never together with TCP-MD5).
    pub fn parse(seg: &SegmentRef<'a>) -> wire::Result<Self> {
        let found = seg.tcp_packet().auth_options()?;
        Ok(match (found.ao, found.md5) {
            (Some(range), _) => AuthOption::Ao {
                option: AoOption::new_checked(&seg.tcp[range.clone()])?,
                range,
            },
            (None, Some(_)) => AuthOption::Md5,
            (None, None) => AuthOption::None,
        })
    }
}

/// What an unsigned segment meets at the receiver (RFC 5925 §7.3; Linux checks TCP-AO
/// first, then TCP-MD5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    /// No key for the peer: the segment is accepted.
    Nothing,
    /// An MKT (index, if the receiver lists them) requires TCP-AO from the peer.
    Ao(Option<usize>),
    /// A TCP-MD5 key (index, if listed) requires TCP-MD5 from the peer.
    Md5(Option<usize>),
}

/// The receiving end's keys for one segment, as an engine knows them. MKTs are named by
/// their index in the receiver's own list.
pub trait Receiver {
    /// RFC 5925 §7.3: the MKT the segment's KeyID selects, the first whose receive ID (the
    /// sender's SendID) is `key_id`. RFC 5925 §3.1 keeps the IDs of the MKTs that match one
    /// connection unique, so there is at most one; a second would be a configuration error
    /// and is never tried.
    fn find_mkt(&mut self, key_id: u8) -> Option<usize>;

    /// The MKT at `index` (as returned by [`Receiver::find_mkt`]).
    fn mkt(&self, index: usize) -> &Mkt;

    /// The traffic key of MKT `index` for this segment (RFC 5925 §5.2): the SYN key when
    /// `syn` (a SYN without ACK), else the key of the established connection.
    ///
    /// # Errors
    /// When the key cannot be had (a capture without the handshake).
    fn traffic_key(&mut self, index: usize, syn: bool) -> Result<&TrafficKey, Unverifiable>;

    /// RFC 2385: the TCP-MD5 key for the peer (its index and secret), if any.
    fn md5_key(&mut self) -> Option<(usize, &[u8])>;

    /// What an unsigned segment from the peer meets.
    fn required(&mut self) -> Required;
}

/// A verdict and the key it was decided with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// The receiver's MKT or TCP-MD5 key the verdict was decided with (for
    /// [`Verdict::Unsigned`] and [`Verdict::Md5NotFound`]: the one that requires a
    /// signature).
    pub mkt: Option<usize>,
}

impl Decision {
    fn new(verdict: Verdict, mkt: Option<usize>) -> Self {
        Decision { verdict, mkt }
    }
}

/// Decide the verdict on `seg`, whose authentication option is `auth`, under SNE `sne`
/// (RFC 5925 §7.3, §7.6; RFC 2385 for TCP-MD5).
pub fn decide<R: Receiver + ?Sized>(
    rx: &mut R,
    seg: &SegmentRef<'_>,
    auth: &AuthOption<'_>,
    sne: u32,
) -> Decision {
    match auth {
        // RFC 5925 §7.3: "If the segment is not covered (no TCP-AO) and an MKT matches the
        // connection, drop it"; RFC 2385 §3.0 likewise for a configured TCP-MD5 key.
        AuthOption::None => match rx.required() {
            Required::Nothing => Decision::new(Verdict::Unauthenticated, None),
            Required::Ao(m) => Decision::new(Verdict::Unsigned, m),
            Required::Md5(m) => Decision::new(Verdict::Md5NotFound, m),
        },
        AuthOption::Ao { option, range } => decide_ao(rx, seg, option, range, sne),
        // RFC 2385 §3.0: a digest that does not verify, or a key that is not configured,
        // drops the segment.
        AuthOption::Md5 => {
            let Some((index, secret)) = rx.md5_key() else {
                return Decision::new(Verdict::Md5Unexpected, None);
            };
            let verdict = match verify_md5(seg, secret) {
                Ok(true) => Verdict::Md5Good,
                Ok(false) => Verdict::Md5Bad,
                Err(e) => malformed(e, wire::TCPOPT_MD5SIG, 18),
            };
            Decision::new(verdict, Some(index))
        }
    }
}

/// RFC 5925 §7.3 steps for a segment with a TCP-AO option.
fn decide_ao<R: Receiver + ?Sized>(
    rx: &mut R,
    seg: &SegmentRef<'_>,
    option: &AoOption<&[u8]>,
    range: &Range<usize>,
    sne: u32,
) -> Decision {
    let key_id = option.key_id();
    // RFC 5925 §7.3: look up the MKT by KeyID; none: discard (TCPAOKeyNotFound).
    let Some(index) = rx.find_mkt(key_id) else {
        return Decision::new(Verdict::KeyNotFound { key_id }, None);
    };
    let mkt = rx.mkt(index);
    let (expected, include_options) = (mkt.mac_len(), mkt.include_options);
    // RFC 5925 §2.2: the MAC length is the MKT's; a MAC of another length can never verify
    // (Linux: `tcp_ao_wrong_maclen`, TCPAOBad).
    let found = option.mac().len();
    if found != expected {
        let reason = BadReason::WrongMacLength { expected, found };
        return Decision::new(
            Verdict::Bad {
                key_id,
                sne,
                reason,
            },
            Some(index),
        );
    }
    // RFC 5925 §5.2: a SYN without ACK uses the SYN traffic key, everything else "other".
    let tcp = seg.tcp_packet();
    let syn = tcp.syn() && !tcp.ack();
    let key = match rx.traffic_key(index, syn) {
        Ok(k) => k,
        Err(reason) => return Decision::new(Verdict::Unverifiable { reason }, Some(index)),
    };
    // RFC 5925 §7.6: compute the MAC and compare it with the segment's in constant time.
    let verdict = match verify_mac_at(key, sne, seg, range, include_options) {
        Ok(true) => Verdict::Good {
            key_id,
            rnext_key_id: option.rnext_key_id(),
            sne,
        },
        Ok(false) => Verdict::Bad {
            key_id,
            sne,
            reason: BadReason::MacMismatch,
        },
        Err(e) => malformed(e, wire::TCPOPT_AO, option.length()),
    };
    Decision::new(verdict, Some(index))
}

/// A segment the MAC functions cannot read. Its options were parsed already, so only a
/// hand-made [`SegmentRef`] gets here (mixed address families, an option range that does
/// not fit the header).
fn malformed(e: Error, kind: u8, len: u8) -> Verdict {
    let reason = match e {
        Error::Wire(w) => w,
        _ => wire::Error::BadOptionLength { kind, len },
    };
    Verdict::Malformed { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_has_one_row() {
        let all = [
            Verdict::Good {
                key_id: 1,
                rnext_key_id: 2,
                sne: 0,
            },
            Verdict::Bad {
                key_id: 1,
                sne: 0,
                reason: BadReason::MacMismatch,
            },
            Verdict::KeyNotFound { key_id: 1 },
            Verdict::Unsigned,
            Verdict::Md5Good,
            Verdict::Md5Bad,
            Verdict::Md5NotFound,
            Verdict::Md5Unexpected,
            Verdict::Unauthenticated,
            Verdict::Unverifiable {
                reason: Unverifiable::IsnsUnknown,
            },
            Verdict::Malformed {
                reason: wire::Error::DuplicateAuthOption,
            },
        ];
        let mut c = Counts::default();
        for (i, v) in all.iter().enumerate() {
            assert_eq!(v.index(), i);
            c.add(v);
        }
        assert_eq!(c.total(), Verdict::COUNT as u64);
        // Every kernel counter is incremented by exactly one verdict.
        for k in Counter::ALL {
            assert_eq!(c.get(k), 1, "{k}");
        }
        // The report names cover every verdict but `malformed`.
        let named: u64 = Verdict::NAMES.iter().map(|n| c.named(n)).sum();
        assert_eq!(named, c.total() - 1);
        assert_eq!((c.key_not_found(), c.unsigned()), (2, 2));
        assert_eq!(c.failures(), 6);
        let accepted: Vec<&str> = all
            .iter()
            .filter(|v| v.is_accepted())
            .map(Verdict::name)
            .collect();
        assert_eq!(accepted, ["good", "md5_good", "not_covered"]);
    }

    #[test]
    fn counts_merge_adds_every_verdict() {
        let mut a = Counts::default();
        a.add(&Verdict::Md5Unexpected);
        let mut b = Counts::default();
        b.add(&Verdict::KeyNotFound { key_id: 3 });
        b.merge(&a);
        assert_eq!(b.key_not_found(), 2);
        assert_eq!(b.get(Counter::TCPAOKeyNotFound), 1);
        assert_eq!(b.get(Counter::TCPMD5Unexpected), 1);
    }
}

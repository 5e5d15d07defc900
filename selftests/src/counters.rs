// SPDX-License-Identifier: MIT OR Apache-2.0
//! Counters, the kernel way: snapshots of the per-netns MIBs, the per-socket `TCP_AO_INFO`
//! counters and the per-key `TCP_AO_GET_KEYS` counters, compared with one rule.
//!
//! [`Counters::assert_grew_exactly`] is aolib's `test_assert_counters()`: every counter named by
//! the [`Grew`] mask must have increased, every other counter must be unchanged, any decrease
//! fails, and a change in the number of keys is an error. Failure messages name the counter and
//! both values. Waiting for a counter is done by polling ([`crate::peers::Peer::wait_for`]), never
//! by sleeping.
//!
//! The netns MIBs come from `/proc/thread-self/net/netstat` (a snapshot) and, one counter at a
//! time, `snmp` and `snmp6` ([`Mib::read`]), so they show the namespace of the calling thread
//! (each peer reads its own).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::AsFd;

use tcpao_sys::{KeyFilter, TcpAoExt};

use crate::failure;
use crate::outcome::{Failure, PeerResult};
use crate::topology::Family;

/// Names of the TcpExt counters a snapshot keeps (`/proc/net/netstat`).
pub const TCPEXT_COUNTERS: [&str; 8] = [
    "TCPAOGood",
    "TCPAOBad",
    "TCPAOKeyNotFound",
    "TCPAORequired",
    "TCPAODroppedIcmps",
    "TCPMD5NotFound",
    "TCPMD5Unexpected",
    "TCPMD5Failure",
];

/// A procfs MIB table of the calling thread's namespace, where one counter lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mib {
    /// `TcpExt:` lines of `/proc/net/netstat` (`TCPAOGood`, `ListenDrops`, ...).
    TcpExt,
    /// `Ip:` lines of `/proc/net/snmp` (`InDiscards`, `InAddrErrors`, ...).
    Ip,
    /// `Tcp:` lines of `/proc/net/snmp` (`CurrEstab`, `OutRsts`, ...).
    Tcp,
    /// `Icmp:` lines of `/proc/net/snmp` (`InDestUnreachs`, ...).
    Icmp,
    /// `/proc/net/snmp6`, one `name value` pair a line (`Icmp6InDestUnreachs`, ...).
    Ipv6,
}

impl Mib {
    /// The procfs file of the calling thread's namespace that holds this table.
    pub fn file(self) -> &'static str {
        match self {
            Self::TcpExt => "/proc/thread-self/net/netstat",
            Self::Ip | Self::Tcp | Self::Icmp => "/proc/thread-self/net/snmp",
            Self::Ipv6 => "/proc/thread-self/net/snmp6",
        }
    }

    /// The line prefix of the table (`TcpExt:`); `None` for `snmp6`'s one-pair lines.
    fn prefix(self) -> Option<&'static str> {
        match self {
            Self::TcpExt => Some("TcpExt:"),
            Self::Ip => Some("Ip:"),
            Self::Tcp => Some("Tcp:"),
            Self::Icmp => Some("Icmp:"),
            Self::Ipv6 => None,
        }
    }

    /// Every `(name, value)` of this table in `text` (the contents of [`Mib::file`]).
    ///
    /// # Errors
    /// When a header line and its value line do not match, or a value is not a number.
    pub fn pairs(self, text: &str) -> io::Result<Vec<(String, u64)>> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        // CurrEstab and similar gauges are unsigned in practice; MaxConn is -1.
        let value = |n: &str, v: &str| {
            v.parse::<i64>()
                .map(|v| v.max(0).unsigned_abs())
                .map_err(|e| bad(format!("{self:?} {n}: {e}")))
        };
        let mut out = Vec::new();
        let Some(prefix) = self.prefix() else {
            for l in text.lines() {
                let mut it = l.split_whitespace();
                if let (Some(n), Some(v)) = (it.next(), it.next()) {
                    out.push((n.to_owned(), value(n, v)?));
                }
            }
            return Ok(out);
        };
        let mut lines = text.lines().filter(|l| l.starts_with(prefix));
        while let (Some(h), Some(v)) = (lines.next(), lines.next()) {
            let names: Vec<&str> = h.split_whitespace().skip(1).collect();
            let vals: Vec<&str> = v.split_whitespace().skip(1).collect();
            if names.len() != vals.len() {
                return Err(bad(format!(
                    "{prefix} header has {} names, values line has {}",
                    names.len(),
                    vals.len()
                )));
            }
            for (n, v) in names.into_iter().zip(vals) {
                out.push((n.to_owned(), value(n, v)?));
            }
        }
        Ok(out)
    }

    /// Counter `name` of this table in `text`.
    ///
    /// # Errors
    /// When the table is malformed or has no counter `name`.
    pub fn find(self, text: &str, name: &str) -> io::Result<u64> {
        self.pairs(text)?
            .into_iter()
            .find_map(|(n, v)| (n == name).then_some(v))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} has no counter {self:?} {name}", self.file()),
                )
            })
    }

    /// Counter `name` of this table, read now in the calling thread's namespace: for the
    /// counters a test watches on its own (`ListenDrops`, `CurrEstab`, `InDestUnreachs`);
    /// [`NetnsMib`] holds the TCP-AO and TCP-MD5 ones.
    ///
    /// # Errors
    /// When procfs cannot be read, or as [`Mib::find`].
    pub fn read(self, name: &str) -> PeerResult<u64> {
        std::fs::read_to_string(self.file())
            .and_then(|text| self.find(&text, name))
            .map_err(|e| failure!("reading {} of {}: {e}", name, self.file()))
    }
}

/// Every counter of the IP and TCP tables of the calling thread's namespace (`Ip`, `Tcp`,
/// `TcpExt`, `snmp6`), for a diagnostic that says which of them moved around an event nothing
/// else explains ([`MibSnapshot::changes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MibSnapshot {
    values: BTreeMap<String, u64>,
}

impl MibSnapshot {
    const TABLES: [Mib; 4] = [Mib::Ip, Mib::Tcp, Mib::TcpExt, Mib::Ipv6];

    /// Read the calling thread's namespace counters.
    ///
    /// # Errors
    /// When procfs cannot be read or a table is malformed.
    pub fn read() -> io::Result<Self> {
        let mut values = BTreeMap::new();
        let mut texts: Vec<(&str, String)> = Vec::new();
        for t in Self::TABLES {
            let text = match texts.iter().find(|(f, _)| *f == t.file()) {
                Some((_, text)) => text.clone(),
                None => {
                    let text = std::fs::read_to_string(t.file())?;
                    texts.push((t.file(), text.clone()));
                    text
                }
            };
            values.extend(Self::parse(t, &text)?);
        }
        Ok(Self { values })
    }

    /// `(table:name, value)` pairs of table `t` in `text` (exposed for unit tests).
    ///
    /// # Errors
    /// As [`Mib::pairs`].
    pub fn parse(t: Mib, text: &str) -> io::Result<Vec<(String, u64)>> {
        Ok(t.pairs(text)?
            .into_iter()
            .map(|(n, v)| (format!("{}{n}", t.prefix().unwrap_or("")), v))
            .collect())
    }

    /// The counters that changed since `before`, as `name +delta` (or `-delta`), in name
    /// order; `"none"` when none did.
    pub fn changes(&self, before: &MibSnapshot) -> String {
        let moved: Vec<String> = self
            .values
            .iter()
            .filter_map(|(n, v)| {
                let b = before.values.get(n).copied().unwrap_or(0);
                match v.cmp(&b) {
                    std::cmp::Ordering::Equal => None,
                    std::cmp::Ordering::Greater => Some(format!("{n} +{}", v - b)),
                    std::cmp::Ordering::Less => Some(format!("{n} -{}", b - v)),
                }
            })
            .collect();
        if moved.is_empty() {
            "none".to_owned()
        } else {
            moved.join(", ")
        }
    }
}

/// The ICMP (`InDestUnreachs`) or ICMPv6 (`Icmp6InDestUnreachs`) counter of
/// destination-unreachable messages received, in the calling thread's namespace.
///
/// # Errors
/// As [`Mib::read`].
pub fn icmp_dest_unreachs(family: Family) -> PeerResult<u64> {
    match family {
        Family::Ipv4 => Mib::Icmp.read("InDestUnreachs"),
        Family::Ipv6 => Mib::Ipv6.read("Icmp6InDestUnreachs"),
    }
}

/// The per-netns TCP-AO and TCP-MD5 MIB counters ([`TCPEXT_COUNTERS`]).
///
/// A snapshot reads `/proc/net/netstat` alone: the suite takes thousands (two per
/// [`Counters::of`], and polls), and under TCG each procfs MIB file costs about a millisecond
/// to print; other counters are read on their own with [`Mib::read`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetnsMib {
    values: BTreeMap<&'static str, u64>,
}

impl NetnsMib {
    /// Read the calling thread's namespace counters.
    ///
    /// # Errors
    /// When procfs cannot be read or the file has an unexpected format.
    pub fn read() -> io::Result<Self> {
        Self::parse(&std::fs::read_to_string(Mib::TcpExt.file())?)
    }

    /// Parse `/proc/net/netstat` (exposed for unit tests).
    ///
    /// # Errors
    /// When a header line and its value line do not match.
    pub fn parse(netstat: &str) -> io::Result<Self> {
        let mut values = BTreeMap::new();
        for (n, v) in Mib::TcpExt.pairs(netstat)? {
            if let Some(k) = TCPEXT_COUNTERS.iter().find(|k| **k == n) {
                values.insert(*k, v);
            }
        }
        Ok(Self { values })
    }

    /// A counter by its procfs name (`TCPAOGood`, ...); 0 if the kernel does not have it.
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    /// Whether the kernel exports counter `name`.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// `TCPAOGood`.
    pub fn ao_good(&self) -> u64 {
        self.get("TCPAOGood")
    }
    /// `TCPAOBad`.
    pub fn ao_bad(&self) -> u64 {
        self.get("TCPAOBad")
    }
    /// `TCPAOKeyNotFound`.
    pub fn ao_key_not_found(&self) -> u64 {
        self.get("TCPAOKeyNotFound")
    }
    /// `TCPAORequired`.
    pub fn ao_required(&self) -> u64 {
        self.get("TCPAORequired")
    }
    /// `TCPAODroppedIcmps`.
    pub fn ao_dropped_icmps(&self) -> u64 {
        self.get("TCPAODroppedIcmps")
    }
}

/// Per-socket TCP-AO counters (`getsockopt(TCP_AO_INFO)`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockCounters {
    /// `pkt_good`.
    pub good: u64,
    /// `pkt_bad`.
    pub bad: u64,
    /// `pkt_key_not_found`.
    pub key_not_found: u64,
    /// `pkt_ao_required`.
    pub ao_required: u64,
    /// `pkt_dropped_icmp`.
    pub dropped_icmp: u64,
}

/// Per-key counters (`getsockopt(TCP_AO_GET_KEYS)`), identified by the key's IDs and peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCounters {
    /// The key's SendID.
    pub send_id: u8,
    /// The key's RecvID.
    pub recv_id: u8,
    /// Peer address/prefix of the key, for messages.
    pub peer: String,
    /// `pkt_good`.
    pub good: u64,
    /// `pkt_bad`.
    pub bad: u64,
}

bitflags::bitflags! {
    /// Counters that must have increased between two snapshots; all others must stay unchanged
    /// (aolib's `TEST_CNT_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Grew: u32 {
        /// Per-key `pkt_good` of at least one key.
        const KEY_GOOD = 1 << 0;
        /// Per-key `pkt_bad` of at least one key.
        const KEY_BAD = 1 << 1;
        /// Socket `pkt_good`.
        const SOCK_GOOD = 1 << 2;
        /// Socket `pkt_bad`.
        const SOCK_BAD = 1 << 3;
        /// Socket `pkt_key_not_found`.
        const SOCK_KEY_NOT_FOUND = 1 << 4;
        /// Socket `pkt_ao_required`.
        const SOCK_AO_REQUIRED = 1 << 5;
        /// Socket `pkt_dropped_icmp`.
        const SOCK_DROPPED_ICMP = 1 << 6;
        /// netns `TCPAOGood`.
        const NS_GOOD = 1 << 7;
        /// netns `TCPAOBad`.
        const NS_BAD = 1 << 8;
        /// netns `TCPAOKeyNotFound`.
        const NS_KEY_NOT_FOUND = 1 << 9;
        /// netns `TCPAORequired`.
        const NS_AO_REQUIRED = 1 << 10;
        /// netns `TCPAODroppedIcmps`.
        const NS_DROPPED_ICMP = 1 << 11;
        /// netns `TCPMD5NotFound`.
        const NS_MD5_NOT_FOUND = 1 << 12;
        /// netns `TCPMD5Unexpected`.
        const NS_MD5_UNEXPECTED = 1 << 13;
        /// netns `TCPMD5Failure`.
        const NS_MD5_FAILURE = 1 << 14;

        /// Verified segments: netns, socket and key (`TEST_CNT_GOOD`).
        const GOOD = Self::KEY_GOOD.bits() | Self::SOCK_GOOD.bits() | Self::NS_GOOD.bits();
        /// Failed MACs: netns, socket and key (`TEST_CNT_BAD`).
        const BAD = Self::KEY_BAD.bits() | Self::SOCK_BAD.bits() | Self::NS_BAD.bits();
        /// Unsigned segments refused: netns and socket (`TEST_CNT_AO_REQUIRED`).
        const AO_REQUIRED = Self::SOCK_AO_REQUIRED.bits() | Self::NS_AO_REQUIRED.bits();
        /// No key for the KeyID: netns and socket (`TEST_CNT_AO_KEY_NOT_FOUND`).
        const KEY_NOT_FOUND = Self::SOCK_KEY_NOT_FOUND.bits() | Self::NS_KEY_NOT_FOUND.bits();
        /// Ignored ICMPs: netns and socket (`TEST_CNT_AO_DROPPED_ICMP`).
        const DROPPED_ICMP = Self::SOCK_DROPPED_ICMP.bits() | Self::NS_DROPPED_ICMP.bits();
    }
}

const NS_FLAGS: [(Grew, &str); 8] = [
    (Grew::NS_GOOD, "TCPAOGood"),
    (Grew::NS_BAD, "TCPAOBad"),
    (Grew::NS_KEY_NOT_FOUND, "TCPAOKeyNotFound"),
    (Grew::NS_AO_REQUIRED, "TCPAORequired"),
    (Grew::NS_DROPPED_ICMP, "TCPAODroppedIcmps"),
    (Grew::NS_MD5_NOT_FOUND, "TCPMD5NotFound"),
    (Grew::NS_MD5_UNEXPECTED, "TCPMD5Unexpected"),
    (Grew::NS_MD5_FAILURE, "TCPMD5Failure"),
];

/// One snapshot: netns MIBs, and for a TCP-AO socket its socket and key counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// The namespace's MIBs.
    pub netns: NetnsMib,
    /// `TCP_AO_INFO` counters, when the snapshot was taken of a socket with TCP-AO.
    pub sock: Option<SockCounters>,
    /// `TCP_AO_GET_KEYS` counters of every key of that socket.
    pub keys: Vec<KeyCounters>,
}

impl Counters {
    /// Snapshot of the calling thread's netns MIBs only.
    ///
    /// # Errors
    /// When procfs cannot be read.
    pub fn netns() -> PeerResult<Self> {
        let netns =
            NetnsMib::read().map_err(|e| failure!("reading the netns MIB counters failed: {e}"))?;
        Ok(Self {
            netns,
            sock: None,
            keys: Vec::new(),
        })
    }

    /// Snapshot of the netns MIBs plus `sk`'s TCP-AO socket and key counters (kernel
    /// `test_get_tcp_counters()`). A socket without TCP-AO gives `sock: None`.
    ///
    /// # Errors
    /// When procfs or the socket options cannot be read.
    pub fn of(sk: &impl AsFd) -> PeerResult<Self> {
        // The MIBs, TCP_AO_INFO and TCP_AO_GET_KEYS are separate reads: a segment verified
        // between two of them shows in one and not the other (a torn snapshot: the socket's
        // pkt_good grew and TCPAOGood or no key's did). The snapshot is taken again until the
        // TCP-AO/TCP-MD5 MIBs and TCP_AO_INFO read the same before and after the keys; every
        // key counter moves together with a socket counter, so the keys are then consistent.
        let mut last = None;
        for _ in 0..SNAPSHOT_TRIES {
            let netns = Self::netns()?.netns;
            let sock = sock_counters(sk)?;
            let keys = if sock.is_some() {
                key_counters(sk)?
            } else {
                Vec::new()
            };
            let sock_again = sock_counters(sk)?;
            let netns_again = Self::netns()?.netns;
            let c = Self { netns, sock, keys };
            if sock_again == sock && same_ns_counters(&c.netns, &netns_again) {
                return Ok(c);
            }
            last = Some(c);
        }
        // Traffic never paused long enough: the last (possibly torn) snapshot, as a single read
        // gives.
        last.ok_or_else(|| failure!("no counter snapshot"))
    }

    /// Every counter of the snapshot with its name and [`Grew`] flag, in a fixed order.
    fn named(&self) -> Vec<(Grew, String, u64)> {
        let mut v: Vec<(Grew, String, u64)> = NS_FLAGS
            .iter()
            .map(|(f, n)| (*f, (*n).to_owned(), self.netns.get(n)))
            .collect();
        if let Some(s) = &self.sock {
            v.extend([
                (Grew::SOCK_GOOD, "socket pkt_good".to_owned(), s.good),
                (Grew::SOCK_BAD, "socket pkt_bad".to_owned(), s.bad),
                (
                    Grew::SOCK_KEY_NOT_FOUND,
                    "socket pkt_key_not_found".to_owned(),
                    s.key_not_found,
                ),
                (
                    Grew::SOCK_AO_REQUIRED,
                    "socket pkt_ao_required".to_owned(),
                    s.ao_required,
                ),
                (
                    Grew::SOCK_DROPPED_ICMP,
                    "socket pkt_dropped_icmp".to_owned(),
                    s.dropped_icmp,
                ),
            ]);
        }
        v
    }

    /// The rule of aolib's `test_assert_counters()`, comparing `self` (after) with `before`:
    /// every counter in `expected` must have increased, every other one must be unchanged, no
    /// counter may decrease, and the key set must be the same. Per-key flags are satisfied when
    /// at least one key's counter grew; other keys may stay unchanged.
    ///
    /// # Errors
    /// A [`Failure::Fail`] naming every offending counter with both values.
    pub fn assert_grew_exactly(&self, before: &Counters, expected: Grew) -> PeerResult {
        let mut problems = Vec::new();
        let b = before.named();
        let a = self.named();
        for ((flag, name, old), (_, _, new)) in b.iter().zip(a.iter()) {
            describe(&mut problems, name, *old, *new, expected.contains(*flag));
        }
        if before.sock.is_some() != self.sock.is_some() {
            problems
                .push("the socket's TCP-AO info appeared or disappeared between snapshots".into());
        }
        let sock_flags = Grew::SOCK_GOOD
            | Grew::SOCK_BAD
            | Grew::SOCK_KEY_NOT_FOUND
            | Grew::SOCK_AO_REQUIRED
            | Grew::SOCK_DROPPED_ICMP
            | Grew::KEY_GOOD
            | Grew::KEY_BAD;
        if self.sock.is_none() && expected.intersects(sock_flags) && before.sock.is_none() {
            problems.push("socket/key counters were expected to grow, but the snapshots have no TCP-AO socket".into());
        }
        if before.keys.len() != self.keys.len() {
            return Err(failure!(
                "the number of keys changed between counter snapshots: {} => {}",
                before.keys.len(),
                self.keys.len()
            ));
        }
        let (mut good_grew, mut bad_grew) = (false, false);
        for (kb, ka) in before.keys.iter().zip(&self.keys) {
            if (kb.send_id, kb.recv_id) != (ka.send_id, ka.recv_id) {
                return Err(failure!(
                    "the key set changed between counter snapshots: key {}:{} became {}:{}",
                    kb.send_id,
                    kb.recv_id,
                    ka.send_id,
                    ka.recv_id
                ));
            }
            let id = format!("key {}:{} ({})", ka.send_id, ka.recv_id, ka.peer);
            for (name, old, new, flag, grew) in [
                ("pkt_good", kb.good, ka.good, Grew::KEY_GOOD, &mut good_grew),
                ("pkt_bad", kb.bad, ka.bad, Grew::KEY_BAD, &mut bad_grew),
            ] {
                if new < old {
                    problems.push(format!("{id} {name} decreased: {old} => {new}"));
                } else if new > old {
                    *grew = true;
                    if !expected.contains(flag) {
                        problems.push(format!(
                            "{id} {name} was not expected to change: {old} => {new}"
                        ));
                    }
                }
            }
        }
        if !self.keys.is_empty() {
            if expected.contains(Grew::KEY_GOOD) && !good_grew {
                problems.push("no key's pkt_good increased".into());
            }
            if expected.contains(Grew::KEY_BAD) && !bad_grew {
                problems.push("no key's pkt_bad increased".into());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Failure::Fail(format!(
                "{} (before: {before}; after: {self})",
                problems.join("; ")
            )))
        }
    }

    /// The set of counters that grew since `before` (per-key flags: any key's counter grew).
    /// Poll for `after.grown(&before).contains(expected)`, then assert with
    /// [`Counters::assert_grew_exactly`].
    pub fn grown(&self, before: &Counters) -> Grew {
        let mut g = Grew::empty();
        for ((flag, _, old), (_, _, new)) in before.named().iter().zip(self.named().iter()) {
            if new > old {
                g |= *flag;
            }
        }
        for (kb, ka) in before.keys.iter().zip(&self.keys) {
            if ka.good > kb.good {
                g |= Grew::KEY_GOOD;
            }
            if ka.bad > kb.bad {
                g |= Grew::KEY_BAD;
            }
        }
        g
    }

    /// How much netns counter `name` grew since `before` (0 if it did not or decreased).
    pub fn ns_delta(&self, before: &Counters, name: &str) -> u64 {
        self.netns.get(name).saturating_sub(before.netns.get(name))
    }
}

/// How many times [`Counters::of`] reads before it settles for a snapshot taken under traffic.
/// A torn read needs a segment verified between two reads; the next read is clean unless the
/// traffic is continuous, and then no number of tries settles it: under continuous traffic in
/// both directions (`rotation/*/under-traffic`) 20 tries made every poll 20 times slower, the
/// rotation took 4.7 times as long (49,591 segments instead of 10,347) and the case took
/// 164 s of its 180 s timeout in a debug build (35 s with 4).
const SNAPSHOT_TRIES: usize = 4;

/// Whether two MIB snapshots agree on every TCP-AO and TCP-MD5 counter.
fn same_ns_counters(a: &NetnsMib, b: &NetnsMib) -> bool {
    NS_FLAGS.iter().all(|(_, n)| a.get(n) == b.get(n))
}

/// The TCP-AO socket counters of `sk` (`TCP_AO_INFO`); `None` for a socket without TCP-AO
/// state, or on a kernel without TCP-AO.
///
/// # Errors
/// When the socket option fails for another reason than "no TCP-AO on this socket".
fn sock_counters(sk: &impl AsFd) -> PeerResult<Option<SockCounters>> {
    let info = match sk.ao_info() {
        Ok(Some(i)) => i,
        Ok(None) => return Ok(None),
        Err(e) if e.is_unsupported() => return Ok(None),
        Err(e) => return Err(failure!("getsockopt(TCP_AO_INFO) failed: {e}")),
    };
    let c = info.counters;
    Ok(Some(SockCounters {
        good: c.good,
        bad: c.bad,
        key_not_found: c.key_not_found,
        ao_required: c.ao_required,
        dropped_icmp: c.dropped_icmp,
    }))
}

/// The counters of every key of `sk` (`TCP_AO_GET_KEYS`); empty when all were deleted.
fn key_counters(sk: &impl AsFd) -> PeerResult<Vec<KeyCounters>> {
    let keys = match sk.ao_keys(&KeyFilter::All) {
        Ok(k) => k,
        // A socket whose keys were all deleted still has TCP-AO state but no keys.
        Err(tcpao_sys::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(failure!("getsockopt(TCP_AO_GET_KEYS) failed: {e}")),
    };
    Ok(keys
        .into_iter()
        .map(|k| KeyCounters {
            send_id: k.selector.send_id,
            recv_id: k.selector.recv_id,
            peer: k.selector.peer.to_string(),
            good: k.good,
            bad: k.bad,
        })
        .collect())
}

fn describe(problems: &mut Vec<String>, name: &str, old: u64, new: u64, must_grow: bool) {
    if new < old {
        problems.push(format!("counter {name} decreased: {old} => {new}"));
    } else if must_grow && new == old {
        problems.push(format!("counter {name} did not increase: {old} => {new}"));
    } else if !must_grow && new != old {
        problems.push(format!(
            "counter {name} was not expected to change: {old} => {new}"
        ));
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (_, n, v) in self.named() {
            if v != 0 {
                write!(f, "{}{n}={v}", if first { "" } else { " " })?;
                first = false;
            }
        }
        for k in &self.keys {
            write!(f, " key{}:{}={}/{}", k.send_id, k.recv_id, k.good, k.bad)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETSTAT: &str = "TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPAORequired TCPAOBad TCPAOKeyNotFound TCPAOGood TCPAODroppedIcmps\n\
TcpExt: 0 1 2 3 4 5 6 7 8\n\
IpExt: InNoRoutes\nIpExt: 0\n";
    const SNMP: &str = "Tcp: RtoAlgorithm MaxConn CurrEstab\nTcp: 1 -1 3\nIcmp: InMsgs InDestUnreachs\nIcmp: 5 4\n";
    const SNMP6: &str = "Icmp6InMsgs 1\nIcmp6InDestUnreachs 9\n";

    fn snap(f: impl FnOnce(&mut BTreeMap<&'static str, u64>)) -> Counters {
        let mut c = Counters {
            netns: NetnsMib::parse(NETSTAT).unwrap(),
            ..Default::default()
        };
        f(&mut c.netns.values);
        c
    }

    #[test]
    fn parses_procfs_pairs() {
        let m = NetnsMib::parse(NETSTAT).unwrap();
        assert_eq!(m.ao_good(), 7);
        assert_eq!(m.get("TCPMD5Failure"), 3);
        // Only the TCP-AO/MD5 counters are kept.
        assert!(!m.has("SyncookiesSent"));
        assert!(NetnsMib::parse("TcpExt: A B\nTcpExt: 1\n").is_err());
    }

    #[test]
    fn a_mib_snapshot_names_what_moved() {
        let snap = |snmp: &str, netstat: &str| MibSnapshot {
            values: MibSnapshot::parse(Mib::Tcp, snmp)
                .unwrap()
                .into_iter()
                .chain(MibSnapshot::parse(Mib::TcpExt, netstat).unwrap())
                .chain(MibSnapshot::parse(Mib::Ipv6, SNMP6).unwrap())
                .collect(),
        };
        let before = snap(SNMP, NETSTAT);
        assert_eq!(before.changes(&before), "none");
        let after = snap(
            "Tcp: RtoAlgorithm MaxConn CurrEstab\nTcp: 1 -1 1\n",
            &NETSTAT.replace("0 1 2 3 4 5 6 7 8", "2 1 2 3 4 5 6 7 8"),
        );
        assert_eq!(
            after.changes(&before),
            "Tcp:CurrEstab -2, TcpExt:SyncookiesSent +2"
        );
        assert!(MibSnapshot::parse(Mib::Ip, "Ip: A B\nIp: 1\n").is_err());
    }

    #[test]
    fn finds_one_counter_of_each_table() {
        assert_eq!(Mib::TcpExt.find(NETSTAT, "SyncookiesSent").unwrap(), 0);
        assert_eq!(Mib::TcpExt.find(NETSTAT, "TCPAODroppedIcmps").unwrap(), 8);
        assert_eq!(Mib::Tcp.find(SNMP, "CurrEstab").unwrap(), 3);
        // A gauge of -1 reads as 0.
        assert_eq!(Mib::Tcp.find(SNMP, "MaxConn").unwrap(), 0);
        assert_eq!(Mib::Icmp.find(SNMP, "InDestUnreachs").unwrap(), 4);
        assert_eq!(Mib::Ipv6.find(SNMP6, "Icmp6InDestUnreachs").unwrap(), 9);
        // Another table's counter is not found in this one's lines.
        let e = Mib::Icmp.find(SNMP, "CurrEstab").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("no counter Icmp CurrEstab"), "{e}");
        let e = Mib::Tcp.find("Tcp: A B\nTcp: 1\n", "A").unwrap_err();
        assert!(e.to_string().contains("2 names, values line has 1"), "{e}");
        let e = Mib::Ipv6
            .find("Icmp6InMsgs x\n", "Icmp6InMsgs")
            .unwrap_err();
        assert!(e.to_string().contains("Icmp6InMsgs"), "{e}");
    }

    #[test]
    fn grew_exactly_rule() {
        let before = snap(|_| {});
        let good = snap(|v| *v.get_mut("TCPAOGood").unwrap() += 2);
        assert!(good.assert_grew_exactly(&before, Grew::NS_GOOD).is_ok());
        let e = before
            .assert_grew_exactly(&before, Grew::NS_GOOD)
            .unwrap_err();
        assert!(
            matches!(&e, Failure::Fail(m) if m.starts_with("counter TCPAOGood did not increase: 7 => 7 (before: ") && m.contains("TCPAOGood=7")),
            "{e:?}"
        );
        let e = good
            .assert_grew_exactly(&before, Grew::NS_BAD)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TCPAOGood was not expected to change: 7 => 9"),
            "{e}"
        );
        assert!(e.contains("TCPAOBad did not increase"), "{e}");
        let e = before
            .assert_grew_exactly(&good, Grew::empty())
            .unwrap_err()
            .to_string();
        assert!(e.contains("counter TCPAOGood decreased: 9 => 7"), "{e}");
    }

    #[test]
    fn key_rules() {
        let key = |good, bad| KeyCounters {
            send_id: 100,
            recv_id: 100,
            peer: "x".into(),
            good,
            bad,
        };
        let mut before = snap(|_| {});
        before.sock = Some(SockCounters::default());
        before.keys = vec![key(1, 0)];
        let mut after = snap(|v| *v.get_mut("TCPAOGood").unwrap() += 1);
        after.sock = Some(SockCounters {
            good: 1,
            ..Default::default()
        });
        after.keys = vec![key(2, 0)];
        assert!(after.assert_grew_exactly(&before, Grew::GOOD).is_ok());
        after.keys[0].bad = 1;
        let e = after
            .assert_grew_exactly(&before, Grew::GOOD)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key 100:100 (x) pkt_bad was not expected to change: 0 => 1"),
            "{e}"
        );
        after.keys.push(key(0, 0));
        let e = after
            .assert_grew_exactly(&before, Grew::GOOD)
            .unwrap_err()
            .to_string();
        assert!(e.contains("number of keys changed"), "{e}");
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The keys file of `tcpao-verify` (TOML): master key tuples and optional flow hints.
//!
//! ```toml
//! [[mkt]]
//! algorithm = "hmac-sha1"   # hmac-sha1 | aes-128-cmac | hmac-sha256 | md5
//! secret = "testvector"     # UTF-8, or secret_hex = "74657374766563746f72"
//! send_id = 61              # KeyID on segments sent by `local` (TCP-AO only)
//! recv_id = 84              # KeyID on segments sent to `local` (TCP-AO only)
//! local = "10.11.12.13"     # optional; without it, send_id and recv_id match either direction
//! peer = "172.27.28.29/32"  # optional prefix that limits the tuple to those peers
//! include_options = true    # default true (RFC 5925); false = options excluded from the MAC
//! maclen = 12               # default 12
//!
//! [[flow]]                     # for captures that start mid-connection
//! client = "10.0.0.1:40000"    # the side that sent the SYN; IPv6 as "[fd00::1]:40000"
//! server = "10.0.0.2:179"
//! client_isn = 3625560951
//! server_isn = 1885426355
//! client_sne = 0               # optional: SNE of each side's first captured segment
//! server_sne = 0
//! ```
//!
//! Validation is strict: unknown tables and fields, wrong types, out-of-range values and
//! contradictory fields are errors that name the entry (`mkt #2`, `flow #1`, counted from 1
//! in file order) and the field. Secrets are zeroed on drop and never printed.
//!
//! A [`KeysFile`] is also [`Serialize`]: tools that install keys (the selftests' captures)
//! write the file with [`KeysFile::to_toml`] instead of by hand.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::{Serialize, Serializer};
use toml::{Table, Value};
use zeroize::Zeroizing;

use crate::algo::{Algorithm, DEFAULT_MAC_LEN, MAX_MAC_LEN};
use crate::mkt::{MasterKey, Mkt};

/// An address prefix (`10.0.0.0/8`, `fd00::/64`, or a bare address = host prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// Network address (host bits cleared).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Prefix {
    /// The prefix `addr/len` (host bits of `addr` cleared).
    ///
    /// # Errors
    /// A message when `len` is longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("prefix length {len} is not in 0..={max}"));
        }
        Ok(Prefix {
            addr: mask(addr, len),
            len,
        })
    }

    /// Parse `ADDR` or `ADDR/LEN`.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(s: &str) -> Result<Prefix, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("prefix length {l:?} is not in 0..={max}")),
            },
        };
        Ok(Prefix {
            addr: mask(addr, len),
            len,
        })
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Which KeyID a segment must carry to be covered by a tuple, seen from the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The sender is the tuple's local end: the segment carries `send_id`.
    Local,
    /// The sender is the peer: the segment carries `recv_id`.
    Peer,
    /// The tuple does not say (no `local`, no distinguishing `peer`): either ID.
    Either,
}

/// The key of a `[[mkt]]` entry.
#[derive(Debug, Clone)]
pub enum EntryKey {
    /// A TCP-AO Master Key Tuple (RFC 5925 §3.1) as the entry's `local` end holds it.
    Ao(Mkt),
    /// A TCP-MD5 key (RFC 2385).
    Md5(MasterKey),
}

/// One `[[mkt]]` entry: a key and the addresses it is for.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Position in the file, counted from 1 (`MKT #n`).
    pub index: usize,
    /// The key (zeroed on drop, redacted in `Debug`).
    pub key: EntryKey,
    /// The end that holds the key, if given.
    pub local: Option<IpAddr>,
    /// The peers this tuple is limited to, if given.
    pub peer: Option<Prefix>,
}

impl KeyEntry {
    /// The TCP-AO MKT, or `None` for a TCP-MD5 entry.
    pub fn mkt(&self) -> Option<&Mkt> {
        match &self.key {
            EntryKey::Ao(m) => Some(m),
            EntryKey::Md5(_) => None,
        }
    }

    /// The secret bytes (the master key, or the TCP-MD5 key).
    pub fn secret(&self) -> &[u8] {
        match &self.key {
            EntryKey::Ao(m) => m.key.as_bytes(),
            EntryKey::Md5(k) => k.as_bytes(),
        }
    }

    /// The `algorithm` field: a keys-file algorithm name, or `md5`.
    pub fn algorithm_name(&self) -> &'static str {
        match &self.key {
            EntryKey::Ao(m) => m.algorithm.keyfile_name(),
            EntryKey::Md5(_) => "md5",
        }
    }

    /// Whether this tuple covers a segment from `src` to `dst`, and if so which KeyID the
    /// segment should carry.
    pub fn role(&self, src: IpAddr, dst: IpAddr) -> Option<Role> {
        if let Some(l) = self.local {
            if l.is_ipv4() != src.is_ipv4() {
                return None;
            }
            let (role, remote) = if src == l {
                (Role::Local, dst)
            } else if dst == l {
                (Role::Peer, src)
            } else {
                return None;
            };
            if self.peer.is_some_and(|p| !p.contains(remote)) {
                return None;
            }
            return Some(role);
        }
        match self.peer {
            None => Some(Role::Either),
            Some(p) => match (p.contains(src), p.contains(dst)) {
                (true, true) => Some(Role::Either),
                (true, false) => Some(Role::Peer),
                (false, true) => Some(Role::Local),
                (false, false) => None,
            },
        }
    }

    /// Whether a TCP-AO segment from `src` to `dst` with `key_id` selects this tuple.
    pub fn matches_ao(&self, src: IpAddr, dst: IpAddr, key_id: u8) -> bool {
        let Some(m) = self.mkt() else {
            return false;
        };
        match self.role(src, dst) {
            Some(Role::Local) => m.send_id == key_id,
            Some(Role::Peer) => m.recv_id == key_id,
            Some(Role::Either) => m.send_id == key_id || m.recv_id == key_id,
            None => false,
        }
    }

    /// Whether this is a TCP-MD5 tuple covering a segment from `src` to `dst`.
    pub fn matches_md5(&self, src: IpAddr, dst: IpAddr) -> bool {
        matches!(self.key, EntryKey::Md5(_)) && self.role(src, dst).is_some()
    }

    /// Whether this tuple (any algorithm) covers segments between these addresses.
    pub fn covers(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.role(src, dst).is_some()
    }
}

/// One `[[flow]]` entry: the ISNs (and optionally SNEs) of a connection whose handshake is
/// not in the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowHint {
    /// Position in the file, counted from 1.
    pub index: usize,
    /// The end that sent the SYN.
    pub client: SocketAddr,
    /// The other end.
    pub server: SocketAddr,
    /// The client's initial sequence number.
    pub client_isn: u32,
    /// The server's initial sequence number.
    pub server_isn: u32,
    /// SNE of the client's first captured segment.
    pub client_sne: u32,
    /// SNE of the server's first captured segment.
    pub server_sne: u32,
}

/// A parsed and validated keys file.
#[derive(Debug, Clone, Default)]
pub struct KeysFile {
    /// `[[mkt]]` entries in file order.
    pub mkts: Vec<KeyEntry>,
    /// `[[flow]]` entries in file order.
    pub flows: Vec<FlowHint>,
    /// Things that are legal but probably not what was meant.
    pub warnings: Vec<String>,
}

/// A keys file that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysError {
    /// The entry (`mkt #2`, `flow #1`), if the error is inside one.
    pub entry: Option<String>,
    /// The field, if the error is about one.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for KeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.entry, &self.field) {
            (Some(e), Some(k)) => write!(f, "{e}, field `{k}`: {}", self.message),
            (Some(e), None) => write!(f, "{e}: {}", self.message),
            (None, Some(k)) => write!(f, "field `{k}`: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for KeysError {}

const MKT_FIELDS: &[&str] = &[
    "algorithm",
    "secret",
    "secret_hex",
    "send_id",
    "recv_id",
    "local",
    "peer",
    "include_options",
    "maclen",
];
const FLOW_FIELDS: &[&str] = &[
    "client",
    "server",
    "client_isn",
    "server_isn",
    "client_sne",
    "server_sne",
];

/// Field reader for one entry: every error names the entry and the field.
struct Entry {
    name: String,
    table: Table,
}

impl Entry {
    fn err(&self, field: &str, message: impl Into<String>) -> KeysError {
        KeysError {
            entry: Some(self.name.clone()),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn check_fields(&self, allowed: &[&str]) -> Result<(), KeysError> {
        for k in self.table.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(
                    k,
                    format!("unknown field; expected one of: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn take(&mut self, field: &str) -> Option<Value> {
        self.table.remove(field)
    }

    fn string(&mut self, field: &str) -> Result<Option<Zeroizing<String>>, KeysError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(Zeroizing::new(s))),
            Some(v) => Err(self.err(field, format!("expected a string, found {}", v.type_str()))),
        }
    }

    fn int(&mut self, field: &str, min: i64, max: i64) -> Result<Option<i64>, KeysError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Integer(n)) if (min..=max).contains(&n) => Ok(Some(n)),
            Some(Value::Integer(n)) => {
                Err(self.err(field, format!("{n} is out of range {min}..={max}")))
            }
            Some(v) => Err(self.err(
                field,
                format!("expected an integer, found {}", v.type_str()),
            )),
        }
    }

    fn bool(&mut self, field: &str) -> Result<Option<bool>, KeysError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(v) => Err(self.err(
                field,
                format!("expected true or false, found {}", v.type_str()),
            )),
        }
    }
}

impl KeysFile {
    /// Read and validate a keys file.
    ///
    /// # Errors
    /// The file cannot be read, or see [`KeysFile::parse`].
    pub fn load(path: impl AsRef<Path>) -> Result<KeysFile, KeysError> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| KeysError {
            entry: None,
            field: None,
            message: format!("cannot read keys file {}: {e}", path.display()),
        })?);
        let text = std::str::from_utf8(&bytes).map_err(|e| KeysError {
            entry: None,
            field: None,
            message: format!(
                "keys file {} is not UTF-8 (byte {})",
                path.display(),
                e.valid_up_to()
            ),
        })?;
        Self::parse(text)
    }

    /// Parse and validate keys-file text.
    ///
    /// # Errors
    /// A [`KeysError`] naming the entry and field: TOML syntax, unknown tables or fields,
    /// wrong types, missing or contradictory fields, out-of-range values.
    pub fn parse(text: &str) -> Result<KeysFile, KeysError> {
        let top_err = |m: String| KeysError {
            entry: None,
            field: None,
            message: m,
        };
        let mut top: Table = text.parse().map_err(|e: toml::de::Error| {
            top_err(format!("invalid TOML: {}", e.to_string().trim_end()))
        })?;
        let mut out = KeysFile::default();
        if let Some(k) = top.keys().find(|k| *k != "mkt" && *k != "flow") {
            return Err(top_err(format!(
                "unknown top-level key `{k}`; a keys file holds only [[mkt]] and [[flow]] entries"
            )));
        }
        let array = |v: Option<Value>, what: &str| -> Result<Vec<Table>, KeysError> {
            match v {
                None => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .into_iter()
                    .map(|e| match e {
                        Value::Table(t) => Ok(t),
                        _ => Err(top_err(format!(
                            "`{what}` must be written as [[{what}]] tables"
                        ))),
                    })
                    .collect(),
                Some(_) => Err(top_err(format!(
                    "`{what}` must be written as [[{what}]] tables"
                ))),
            }
        };
        let mkts = array(top.remove("mkt"), "mkt")?;
        let flows = array(top.remove("flow"), "flow")?;
        if mkts.is_empty() {
            return Err(top_err(
                "no [[mkt]] entry: at least one key is needed".into(),
            ));
        }
        for (i, t) in mkts.into_iter().enumerate() {
            let e = Entry {
                name: format!("mkt #{}", i + 1),
                table: t,
            };
            out.mkts.push(parse_mkt(e, i + 1, &mut out.warnings)?);
        }
        let mut seen = HashSet::new();
        for (i, t) in flows.into_iter().enumerate() {
            let e = Entry {
                name: format!("flow #{}", i + 1),
                table: t,
            };
            let f = parse_flow(e, i + 1)?;
            let key = if f.client <= f.server {
                (f.client, f.server)
            } else {
                (f.server, f.client)
            };
            if !seen.insert(key) {
                return Err(KeysError {
                    entry: Some(format!("flow #{}", i + 1)),
                    field: None,
                    message: format!(
                        "the connection {} <-> {} is described twice",
                        f.client, f.server
                    ),
                });
            }
            out.flows.push(f);
        }
        out.check_overlaps();
        Ok(out)
    }

    /// Warn about TCP-AO tuples that the same segment could select (same KeyID, overlapping
    /// addresses): the first one in file order wins.
    fn check_overlaps(&mut self) {
        for (i, a) in self.mkts.iter().enumerate() {
            for b in &self.mkts[i + 1..] {
                let (Some(ma), Some(mb)) = (a.mkt(), b.mkt()) else {
                    continue;
                };
                let same_scope = a.local == b.local && a.peer == b.peer;
                if same_scope && ma.send_id == mb.send_id && ma.recv_id == mb.recv_id {
                    self.warnings.push(format!(
                        "MKT #{} and MKT #{} have the same send_id/recv_id and addresses; \
                         segments always select MKT #{} (the other is only tried by --explain)",
                        a.index, b.index, a.index
                    ));
                }
            }
        }
    }

    /// The flow hint for a connection between these two endpoints, either way round.
    pub fn flow_hint(&self, a: SocketAddr, b: SocketAddr) -> Option<&FlowHint> {
        self.flows
            .iter()
            .find(|f| (f.client == a && f.server == b) || (f.client == b && f.server == a))
    }
}

/// A `[[mkt]]` entry as written ([`KeysFile::to_toml`]).
#[derive(Serialize)]
struct MktRepr<'a> {
    algorithm: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_hex: Option<SecretHex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recv_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    include_options: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maclen: Option<usize>,
}

impl<'a> From<&'a KeyEntry> for MktRepr<'a> {
    fn from(e: &'a KeyEntry) -> Self {
        // Text when it reads as text; hex for anything a reader could misread.
        let text = std::str::from_utf8(e.secret())
            .ok()
            .filter(|t| !t.chars().any(|c| c.is_control() || c == '"' || c == '\\'));
        let hex = || {
            let mut h = Zeroizing::new(String::with_capacity(2 * e.secret().len()));
            for b in e.secret() {
                // Formatted straight into the zeroizing buffer: no temporary copy.
                let _ = write!(h, "{b:02x}");
            }
            SecretHex(h)
        };
        let mkt = e.mkt();
        MktRepr {
            algorithm: e.algorithm_name(),
            secret: text,
            secret_hex: text.is_none().then(hex),
            send_id: mkt.map(|m| m.send_id),
            recv_id: mkt.map(|m| m.recv_id),
            local: e.local.map(|l| l.to_string()),
            peer: e.peer.map(|p| p.to_string()),
            include_options: mkt.map(|m| m.include_options),
            maclen: mkt.map(Mkt::mac_len),
        }
    }
}

/// A secret in hex, zeroed on drop.
struct SecretHex(Zeroizing<String>);

impl Serialize for SecretHex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A `[[flow]]` entry as written.
#[derive(Serialize)]
struct FlowRepr {
    client: String,
    server: String,
    client_isn: u32,
    server_isn: u32,
    client_sne: u32,
    server_sne: u32,
}

#[derive(Serialize)]
struct FileRepr<'a> {
    mkt: Vec<MktRepr<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    flow: Vec<FlowRepr>,
}

impl Serialize for KeysFile {
    /// The keys-file layout that [`KeysFile::parse`] reads: `[[mkt]]` then `[[flow]]`
    /// tables. Secrets are written as `secret` when they are printable UTF-8, else as
    /// `secret_hex`. Warnings are not written.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FileRepr {
            mkt: self.mkts.iter().map(MktRepr::from).collect(),
            flow: self
                .flows
                .iter()
                .map(|f| FlowRepr {
                    client: f.client.to_string(),
                    server: f.server.to_string(),
                    client_isn: f.client_isn,
                    server_isn: f.server_isn,
                    client_sne: f.client_sne,
                    server_sne: f.server_sne,
                })
                .collect(),
        }
        .serialize(s)
    }
}

impl KeysFile {
    /// The keys file as TOML text (see the [`Serialize`] impl). It holds the secrets: write
    /// it where the capture goes, never to a log.
    ///
    /// # Errors
    /// The TOML serializer failed (it does not for the values a `KeysFile` holds).
    pub fn to_toml(&self) -> Result<Zeroizing<String>, toml::ser::Error> {
        toml::to_string(self).map(Zeroizing::new)
    }
}

fn parse_mkt(
    mut e: Entry,
    index: usize,
    warnings: &mut Vec<String>,
) -> Result<KeyEntry, KeysError> {
    e.check_fields(MKT_FIELDS)?;
    let alg_name = e.string("algorithm")?.ok_or_else(|| {
        e.err(
            "algorithm",
            "missing (hmac-sha1, aes-128-cmac, hmac-sha256 or md5)",
        )
    })?;
    let name = alg_name.trim().to_ascii_lowercase();
    let algorithm = match name.as_str() {
        "md5" | "tcp-md5" => None,
        _ => Some(name.parse::<Algorithm>().map_err(|_| {
            e.err(
                "algorithm",
                format!(
                    "unknown algorithm {:?}; expected hmac-sha1, aes-128-cmac, hmac-sha256 or md5",
                    alg_name.as_str()
                ),
            )
        })?),
    };
    let secret = e.string("secret")?;
    let secret_hex = e.string("secret_hex")?;
    let secret = match (secret, secret_hex) {
        (Some(_), Some(_)) => {
            return Err(e.err(
                "secret_hex",
                "give either `secret` or `secret_hex`, not both",
            ));
        }
        (None, None) => {
            return Err(e.err("secret", "missing: give `secret` (text) or `secret_hex`"));
        }
        (Some(s), None) => {
            if s.is_empty() {
                return Err(e.err("secret", "is empty"));
            }
            MasterKey::new(s.as_bytes())
        }
        (None, Some(h)) => {
            let bytes = decode_hex_strict(&h).map_err(|m| e.err("secret_hex", m))?;
            if bytes.is_empty() {
                return Err(e.err("secret_hex", "is empty"));
            }
            MasterKey::new(bytes.as_slice())
        }
    };
    let send_id = e.int("send_id", 0, 255)?.map(|v| v as u8);
    let recv_id = e.int("recv_id", 0, 255)?.map(|v| v as u8);
    let local = match e.string("local")? {
        None => None,
        Some(s) => Some(s.trim().parse::<IpAddr>().map_err(|_| {
            e.err(
                "local",
                format!("{:?} is not an IPv4 or IPv6 address", s.as_str()),
            )
        })?),
    };
    let peer = match e.string("peer")? {
        None => None,
        Some(s) => Some(Prefix::parse(&s).map_err(|m| e.err("peer", m))?),
    };
    if let (Some(l), Some(p)) = (local, peer) {
        if l.is_ipv4() != p.addr.is_ipv4() {
            return Err(e.err(
                "peer",
                format!("{p} and local {l} are not the same address family"),
            ));
        }
    }
    let include_options = e.bool("include_options")?;
    let maclen = e.int("maclen", i64::MIN, i64::MAX)?;
    let Some(algorithm) = algorithm else {
        for (f, given) in [
            ("send_id", send_id.is_some()),
            ("recv_id", recv_id.is_some()),
            ("include_options", include_options.is_some()),
            ("maclen", maclen.is_some()),
        ] {
            if given {
                return Err(e.err(
                    f,
                    "has no meaning for md5 (TCP-MD5 has no KeyID, always excludes \
                     options and always carries a 16-byte digest); remove it",
                ));
            }
        }
        return Ok(KeyEntry {
            index,
            key: EntryKey::Md5(secret),
            local,
            peer,
        });
    };
    let (Some(send_id), Some(recv_id)) = (send_id, recv_id) else {
        let missing = if send_id.is_none() {
            "send_id"
        } else {
            "recv_id"
        };
        return Err(e.err(missing, "missing (TCP-AO needs the KeyID, 0..=255)"));
    };
    let maclen = maclen.unwrap_or(DEFAULT_MAC_LEN as i64);
    let max = algorithm.digest_len().min(MAX_MAC_LEN) as i64;
    if !(1..=MAX_MAC_LEN as i64).contains(&maclen) {
        return Err(e.err(
            "maclen",
            format!("{maclen} is out of range 1..={MAX_MAC_LEN}"),
        ));
    }
    if maclen > max {
        return Err(e.err(
            "maclen",
            format!(
                "{maclen} is longer than the {} digest ({max} bytes)",
                algorithm.keyfile_name()
            ),
        ));
    }
    if local.is_none() && peer.is_none() && send_id != recv_id {
        warnings.push(format!(
            "MKT #{index}: no `local` or `peer`, so send_id {send_id} and recv_id {recv_id} are \
             accepted in both directions"
        ));
    }
    let mkt = Mkt::new(send_id, recv_id, algorithm, secret)
        .with_mac_len(maclen as usize)
        .map_err(|err| e.err("maclen", err.to_string()))?
        .with_include_options(include_options.unwrap_or(true));
    Ok(KeyEntry {
        index,
        key: EntryKey::Ao(mkt),
        local,
        peer,
    })
}

fn parse_flow(mut e: Entry, index: usize) -> Result<FlowHint, KeysError> {
    e.check_fields(FLOW_FIELDS)?;
    let addr = |e: &mut Entry, f: &str| -> Result<SocketAddr, KeysError> {
        let s = e
            .string(f)?
            .ok_or_else(|| e.err(f, "missing (\"ADDR:PORT\", IPv6 as \"[ADDR]:PORT\")"))?;
        s.trim().parse::<SocketAddr>().map_err(|_| {
            e.err(
                f,
                format!(
                    "{:?} is not ADDR:PORT (IPv4 \"10.0.0.1:179\", IPv6 \"[fd00::1]:179\")",
                    s.as_str()
                ),
            )
        })
    };
    let client = addr(&mut e, "client")?;
    let server = addr(&mut e, "server")?;
    if client.is_ipv4() != server.is_ipv4() {
        return Err(e.err(
            "server",
            "client and server are not the same address family",
        ));
    }
    if client == server {
        return Err(e.err("server", "client and server are the same endpoint"));
    }
    let max = i64::from(u32::MAX);
    let client_isn = e
        .int("client_isn", 0, max)?
        .ok_or_else(|| e.err("client_isn", "missing (both ISNs are needed)"))?;
    let server_isn = e
        .int("server_isn", 0, max)?
        .ok_or_else(|| e.err("server_isn", "missing (both ISNs are needed)"))?;
    let client_sne = e.int("client_sne", 0, max)?.unwrap_or(0);
    let server_sne = e.int("server_sne", 0, max)?.unwrap_or(0);
    Ok(FlowHint {
        index,
        client,
        server,
        client_isn: client_isn as u32,
        server_isn: server_isn as u32,
        client_sne: client_sne as u32,
        server_sne: server_sne as u32,
    })
}

/// Hex digits only (an optional `0x` prefix, `:` or whitespace between bytes), even count.
fn decode_hex_strict(s: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let digits: Zeroizing<Vec<u8>> = Zeroizing::new(
        s.bytes()
            .filter(|b| !b.is_ascii_whitespace() && *b != b':')
            .collect(),
    );
    if let Some(pos) = digits.iter().position(|b| !b.is_ascii_hexdigit()) {
        return Err(format!("not hex: invalid digit at position {}", pos + 1));
    }
    if digits.len() % 2 != 0 {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    let val = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    let mut out = Zeroizing::new(Vec::with_capacity(digits.len() / 2));
    for p in digits.chunks_exact(2) {
        out.push((val(p[0]) << 4) | val(p[1]));
    }
    Ok(out)
}

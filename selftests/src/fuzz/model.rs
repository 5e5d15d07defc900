// SPDX-License-Identifier: MIT OR Apache-2.0
//! A model of the Linux TCP-AO/TCP-MD5 socket-option uAPI: each socket's MKT list (in the
//! kernel's order: newest first), Current_key and RNext_key, `ao_required`/`accept_icmps`,
//! counters, MD5 keys and repair mode. From the bytes a call passes it predicts the errno (the
//! first failing check, in the kernel's order) and what `TCP_AO_GET_KEYS`, `TCP_AO_INFO` and
//! `TCP_AO_REPAIR` must report.
//!
//! The rules are those documented in `Documentation/networking/tcp_ao.rst` and
//! `reference/kernel-tcp-ao-selftests.md` §2, made exact against Linux 7.2's
//! `net/ipv4/tcp_ao.c`, `tcp.c` and `tcp_ipv{4,6}.c` (`tcp_ao_add_cmd`, `tcp_ao_del_cmd`,
//! `tcp_ao_info_cmd`, `tcp_ao_copy_mkts_to_user`, `tcp_ao_get_sock_info`, `tcp_ao_{set,get}_repair`,
//! `tcp_v{4,6}_parse_md5_keys`, `tcp_connect`, `tcp_ao_connect_init`). Socket states come
//! from the kernel (`TCP_INFO`), not from the model: traffic is observed, the key table is
//! predicted. Where the kernel legitimately decides on its own (a peer's RNextKeyID moving
//! Current_key, counters moved by traffic, a child socket's keys after `accept`), the model
//! marks the socket and re-reads those parts from the kernel (checked against invariants).

use std::collections::BTreeMap;

use super::encode::{AF_INET, AF_INET6, Devices};
use super::prog::{Ns, SLOTS};

/// TCP states (`TCP_INFO.tcpi_state`).
pub mod state {
    /// TCP_ESTABLISHED.
    pub const ESTABLISHED: u8 = 1;
    /// TCP_SYN_SENT.
    pub const SYN_SENT: u8 = 2;
    /// TCP_SYN_RECV.
    pub const SYN_RECV: u8 = 3;
    /// TCP_CLOSE.
    pub const CLOSE: u8 = 7;
    /// TCP_LISTEN.
    pub const LISTEN: u8 = 10;
}

use state::{CLOSE, LISTEN};

const EINVAL: i32 = 22;
const EFAULT: i32 = 14;
const E2BIG: i32 = 7;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;
const EBUSY: i32 = 16;
const EPERM: i32 = 1;
const EISCONN: i32 = 106;
const EMSGSIZE: i32 = 90;
const EKEYREJECTED: i32 = 129;
const EAFNOSUPPORT: i32 = 97;

/// One MKT as the kernel keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyM {
    /// Identity within the socket (the model's, for current/rnext).
    pub uid: u32,
    /// `AF_INET` or `AF_INET6` (v4-mapped keys are `AF_INET`).
    pub family: u16,
    /// Address bytes (IPv4 in the first 4).
    pub addr: [u8; 16],
    /// Prefix length.
    pub prefix: u8,
    /// SendID.
    pub sndid: u8,
    /// RecvID.
    pub rcvid: u8,
    /// MAC length (default resolved).
    pub maclen: u8,
    /// `keyflags`.
    pub keyflags: u8,
    /// L3 index (VRF) or 0.
    pub l3index: i32,
    /// Algorithm name as reported (`cmac(aes)` for AES-CMAC).
    pub alg_name: &'static str,
    /// The stored key (the RFC 5926 fold for AES-CMAC keys that are not 16 bytes).
    pub key: Vec<u8>,
}

impl std::fmt::Debug for KeyM {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key{{fam {} prefix {} snd {} rcv {} mac {} flags {:#x} l3 {} {} keylen {}}}",
            self.family,
            self.prefix,
            self.sndid,
            self.rcvid,
            self.maclen,
            self.keyflags,
            self.l3index,
            self.alg_name,
            self.key.len()
        )
    }
}

/// A socket's TCP-AO info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AoM {
    /// MKTs, newest first (the kernel's `hlist_add_head`).
    pub keys: Vec<KeyM>,
    /// Current_key (uid).
    pub current: Option<u32>,
    /// RNext_key (uid).
    pub rnext: Option<u32>,
    /// `ao_required`.
    pub ao_required: bool,
    /// `accept_icmps`.
    pub accept_icmps: bool,
    /// Last known socket counters (good, bad, key_not_found, ao_required, dropped_icmp).
    pub counters: [u64; 5],
    /// `(local ISN, remote ISN, send SNE)` that `ao_info` holds when they are not the
    /// connection's own: zeros for an `ao_info` made on an open connection (a first key added
    /// in repair mode), or what `TCP_AO_REPAIR` set. Traffic keys (RFC 5925 §5.2) and MACs use
    /// these (resolved divergence 29, docs/fuzz.md).
    pub repaired: Option<(u32, u32, u32)>,
    /// Keys deleted from this socket. A listener's child copies the matching keys when the
    /// handshake completes (`tcp_ao_copy_all_matching()`), so a child accepted after such a
    /// deletion may still hold one (found by the `debug` fuzz run, docs/fuzz.md).
    pub deleted: Vec<KeyM>,
    next_uid: u32,
}

/// One TCP-MD5 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Md5M {
    /// Family.
    pub family: u16,
    /// Address bytes.
    pub addr: [u8; 16],
    /// Prefix length.
    pub prefix: u8,
    /// L3 index.
    pub l3index: i32,
    /// `TCP_MD5SIG_FLAG_IFINDEX` set.
    pub l3flag: bool,
}

/// A socket slot.
#[derive(Debug, Clone)]
pub struct SockM {
    /// IPv6.
    pub v6: bool,
    /// Namespace.
    pub ns: Ns,
    /// TCP-AO info, once a first AO call allocated it.
    pub ao: Option<AoM>,
    /// MD5 keys.
    pub md5: Vec<Md5M>,
    /// `TCP_REPAIR` on.
    pub repair: bool,
    /// An accepted child of a listener that had `TCP_REPAIR` on: `tcp_create_openreq_child()`
    /// copies `tp->repair`, so the kernel's gates treat it as in repair mode. Open finding 18
    /// says that looks wrong; the model follows the kernel in the setsockopt gate (resolved
    /// divergence 26, docs/fuzz.md) and keeps `TCP_AO_REPAIR` itself as finding 18.
    pub born_in_repair: bool,
    /// The destination address the kernel keeps (`inet_daddr`), once connect set it.
    pub daddr: Option<[u8; 16]>,
    /// Current/RNext may change without a call (a peer's RNextKeyID on a connection).
    pub floating: bool,
}

/// What a call must return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Success.
    Ok,
    /// This errno.
    Err(i32),
    /// Not predicted (the socket or the call is outside the model).
    Any,
}

impl Expect {
    fn from(r: Result<(), i32>) -> Expect {
        match r {
            Ok(()) => Expect::Ok,
            Err(e) => Expect::Err(e),
        }
    }
}

/// One record of `TCP_AO_GET_KEYS` as the model predicts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key.
    pub key: KeyM,
    /// `is_current`.
    pub is_current: bool,
    /// `is_rnext`.
    pub is_rnext: bool,
}

/// The prediction of a getsockopt's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Nothing to compare.
    None,
    /// `TCP_AO_INFO`: flags, current/rnext, and counters when known exactly.
    Info {
        /// `(set_current, current_key)`; `None` when floating.
        current: Option<(bool, u8)>,
        /// `(set_rnext, rnext)`.
        rnext: Option<(bool, u8)>,
        /// `ao_required`.
        ao_required: bool,
        /// `accept_icmps`.
        accept_icmps: bool,
        /// Lower bounds of the five counters (they never go backwards).
        counters_min: [u64; 5],
        /// Bytes written (min(len, 48)).
        written: usize,
    },
    /// `TCP_AO_GET_KEYS`: the matching keys in order and the total `nkeys`.
    Keys {
        /// Matching records (all of them; the kernel writes the first `nkeys`).
        records: Vec<KeyRecord>,
        /// Whether current/rnext flags are predicted.
        flags_known: bool,
    },
}

/// The uAPI model of all slots.
#[derive(Debug, Clone)]
pub struct Model {
    /// Socket slots.
    pub slots: [Option<SockM>; SLOTS as usize],
    /// Devices of the topology.
    pub dev: Devices,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_ne_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_ne_bytes(x)
}

/// `copy_struct_from_sockptr`: `optlen` bytes at `optval` into a `size`-byte struct; a longer
/// tail must be zero (`E2BIG`), NULL faults.
fn copy_struct(optval: Option<&[u8]>, optlen: usize, size: usize) -> Result<Vec<u8>, i32> {
    let Some(b) = optval else {
        return Err(EFAULT);
    };
    if optlen > size && b[size..optlen].iter().any(|&x| x != 0) {
        return Err(E2BIG);
    }
    let mut out = vec![0u8; size];
    let n = optlen.min(size);
    out[..n].copy_from_slice(&b[..n]);
    Ok(out)
}

fn mask4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

fn v4(a: &[u8]) -> u32 {
    u32::from_be_bytes([a[0], a[1], a[2], a[3]])
}

fn prefix_eq6(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let p = usize::from(prefix.min(128));
    let (full, rest) = (p / 8, p % 8);
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || (a[full] ^ b[full]) & (0xffu8 << (8 - rest)) == 0
}

fn is_mapped(a: &[u8]) -> bool {
    a[..10].iter().all(|&x| x == 0) && a[10] == 0xff && a[11] == 0xff
}

fn any6(a: &[u8]) -> bool {
    a.iter().all(|&x| x == 0)
}

impl KeyM {
    /// Whether the key matches a peer at `addr` (its own prefix, any IDs, no VRF).
    pub fn matches_peer(&self, addr: &[u8; 16], family: u16) -> bool {
        self.matches(0, addr, self.prefix, family, -1, -1)
    }

    /// `__tcp_ao_key_cmp(key, l3index, addr, prefixlen, family, sndid, rcvid) == 0`.
    fn matches(
        &self,
        l3index: i32,
        addr: &[u8; 16],
        prefixlen: u8,
        family: u16,
        sndid: i32,
        rcvid: i32,
    ) -> bool {
        // tcp_ao_key_cmp: a v4-mapped IPv6 address is compared as IPv4.
        let (family, addr) = if family == AF_INET6 && is_mapped(addr) {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&addr[12..16]);
            (AF_INET, a)
        } else {
            (family, *addr)
        };
        if sndid >= 0 && i32::from(self.sndid) != sndid {
            return false;
        }
        if rcvid >= 0 && i32::from(self.rcvid) != rcvid {
            return false;
        }
        if l3index >= 0 && self.keyflags & 1 != 0 && self.l3index != l3index {
            return false;
        }
        if family == 0 {
            return true;
        }
        if self.family != family {
            return false;
        }
        if family == AF_INET {
            if v4(&self.addr) == 0 || v4(&addr) == 0 {
                return true;
            }
            let m = mask4(prefixlen);
            v4(&self.addr) & m == v4(&addr) & m
        } else {
            if any6(&self.addr) || any6(&addr) {
                return true;
            }
            prefix_eq6(&self.addr, &addr, prefixlen)
        }
    }
}

impl AoM {
    /// `__tcp_ao_do_lookup`: the first key matching, with `prefix` capped by each key's.
    fn lookup(
        &self,
        l3index: i32,
        addr: &[u8; 16],
        family: u16,
        prefix: u8,
        sndid: i32,
        rcvid: i32,
    ) -> Option<&KeyM> {
        self.keys
            .iter()
            .find(|k| k.matches(l3index, addr, prefix.min(k.prefix), family, sndid, rcvid))
    }

    /// `tcp_ao_established_key(sk, ao, sndid, rcvid)`: first key with these IDs.
    fn established_key(&self, sndid: i32, rcvid: i32) -> Option<u32> {
        self.keys
            .iter()
            .find(|k| {
                (sndid < 0 || i32::from(k.sndid) == sndid)
                    && (rcvid < 0 || i32::from(k.rcvid) == rcvid)
            })
            .map(|k| k.uid)
    }

    fn key(&self, uid: Option<u32>) -> Option<&KeyM> {
        uid.and_then(|u| self.keys.iter().find(|k| k.uid == u))
    }
}

/// Context of a call: the socket's real TCP state, read from the kernel just before.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// `tcpi_state`.
    pub state: u8,
    /// Whether the socket is bound to the VRF (`SO_BINDTODEVICE`); never in our programs.
    pub bound_dev: i32,
}

impl Model {
    /// A model with no sockets.
    pub fn new(dev: Devices) -> Model {
        Model {
            slots: Default::default(),
            dev,
        }
    }

    /// A new socket in `s`.
    pub fn socket(&mut self, s: u8, v6: bool, ns: Ns) {
        self.slots[usize::from(s)] = Some(SockM {
            v6,
            ns,
            ao: None,
            md5: Vec::new(),
            repair: false,
            born_in_repair: false,
            daddr: None,
            floating: false,
        });
    }

    /// Slot `s` closed.
    pub fn close(&mut self, s: u8) {
        self.slots[usize::from(s)] = None;
    }

    /// The socket in `s`.
    pub fn sock(&self, s: u8) -> Option<&SockM> {
        self.slots.get(usize::from(s)).and_then(Option::as_ref)
    }

    fn sock_mut(&mut self, s: u8) -> Option<&mut SockM> {
        self.slots.get_mut(usize::from(s)).and_then(Option::as_mut)
    }

    /// `setsockopt(TCP_REPAIR, val)`.
    pub fn repair(&mut self, s: u8, val: i32, ctx: Ctx) -> Expect {
        let Some(sk) = self.sock_mut(s) else {
            return Expect::Any;
        };
        if ctx.state == LISTEN {
            return Expect::Err(EPERM);
        }
        match val {
            1 => sk.repair = true,
            0 | -1 => {
                sk.repair = false;
                sk.born_in_repair = false;
            }
            _ => return Expect::Err(EINVAL),
        }
        Expect::Ok
    }

    /// An accepted child `child` of `listener`: it inherits the listener's repair mode.
    pub fn inherit_repair(&mut self, child: u8, listener: u8) {
        let on = self.sock(listener).is_some_and(|l| l.repair);
        if let Some(c) = self.sock_mut(child) {
            c.born_in_repair = on;
        }
    }

    /// The `do_tcp_setsockopt` gate in front of the AO options: optlen < 4, a NULL optval,
    /// then the state rule for a socket without `ao_info`.
    fn gate(sk: &SockM, optval: Option<&[u8]>, optlen: usize, ctx: Ctx) -> Result<(), i32> {
        if optlen < 4 {
            return Err(EINVAL);
        }
        if optval.is_none() {
            return Err(EFAULT);
        }
        if ctx.state == LISTEN
            || ctx.state == CLOSE
            || sk.ao.is_some()
            || sk.repair
            || sk.born_in_repair
        {
            Ok(())
        } else {
            Err(EISCONN)
        }
    }

    /// `setsockopt(TCP_AO_ADD_KEY)`.
    pub fn add(&mut self, s: u8, optval: Option<&[u8]>, optlen: u32, ctx: Ctx) -> Expect {
        let dev = self.dev;
        let Some(sk) = self.sock_mut(s) else {
            return Expect::Any;
        };
        Expect::from(add_cmd(sk, &dev, optval, optlen as usize, ctx))
    }

    /// `setsockopt(TCP_AO_DEL_KEY)`.
    pub fn del(&mut self, s: u8, optval: Option<&[u8]>, optlen: u32, ctx: Ctx) -> Expect {
        let Some(sk) = self.sock_mut(s) else {
            return Expect::Any;
        };
        Expect::from(del_cmd(sk, optval, optlen as usize, ctx))
    }

    /// `setsockopt(TCP_AO_INFO)`.
    pub fn set_info(&mut self, s: u8, optval: Option<&[u8]>, optlen: u32, ctx: Ctx) -> Expect {
        let Some(sk) = self.sock_mut(s) else {
            return Expect::Any;
        };
        Expect::from(info_cmd(sk, optval, optlen as usize, ctx))
    }

    /// `getsockopt(TCP_AO_INFO)` with `optlen` and the buffer `optval` (its filter bytes).
    pub fn get_info(&self, s: u8, optval: &[u8], optlen: i32) -> (Expect, Output) {
        let Some(sk) = self.sock(s) else {
            return (Expect::Any, Output::None);
        };
        if optlen < 0 {
            return (Expect::Err(EINVAL), Output::None);
        }
        if optlen <= 0 {
            return (Expect::Err(EINVAL), Output::None);
        }
        let inb = match copy_struct(Some(optval), optlen as usize, 48) {
            Ok(b) => b,
            Err(e) => return (Expect::Err(e), Output::None),
        };
        if u32_at(&inb, 0) >> 5 != 0 || u16_at(&inb, 4) != 0 {
            return (Expect::Err(EINVAL), Output::None);
        }
        let Some(ao) = &sk.ao else {
            return (Expect::Err(ENOENT), Output::None);
        };
        let cur = ao.key(ao.current).map(|k| k.sndid);
        let rn = ao.key(ao.rnext).map(|k| k.rcvid);
        let out = Output::Info {
            current: (!sk.floating).then(|| (cur.is_some(), cur.unwrap_or(0))),
            rnext: (!sk.floating).then(|| (rn.is_some(), rn.unwrap_or(0))),
            ao_required: ao.ao_required,
            accept_icmps: ao.accept_icmps,
            counters_min: ao.counters,
            written: (optlen as usize).min(48),
        };
        (Expect::Ok, out)
    }

    /// `getsockopt(TCP_AO_GET_KEYS)`.
    pub fn get_keys(&self, s: u8, optval: &[u8], optlen: i32) -> (Expect, Output) {
        let Some(sk) = self.sock(s) else {
            return (Expect::Any, Output::None);
        };
        // do_tcp_getsockopt() refuses a negative optlen before any option (resolved
        // divergence 5, docs/fuzz.md).
        if optlen < 0 {
            return (Expect::Err(EINVAL), Output::None);
        }
        let Some(ao) = &sk.ao else {
            return (Expect::Err(ENOENT), Output::None);
        };
        match get_keys_cmd(ao, sk.floating, optval, optlen) {
            Ok(out) => (Expect::Ok, out),
            Err(e) => (Expect::Err(e), Output::None),
        }
    }

    /// `setsockopt(TCP_AO_REPAIR)`.
    pub fn set_repair(&mut self, s: u8, optval: Option<&[u8]>, optlen: u32, ctx: Ctx) -> Expect {
        let Some(sk) = self.sock_mut(s) else {
            return Expect::Any;
        };
        let optlen = optlen as usize;
        let r = (|| {
            if optlen < 4 {
                return Err(EINVAL);
            }
            if optval.is_none() {
                return Err(EFAULT);
            }
            if ctx.state == LISTEN {
                return Err(EPERM);
            }
            if optlen < 16 {
                return Err(EINVAL);
            }
            copy_struct(optval, optlen, 16)?;
            if !sk.repair {
                return Err(EPERM);
            }
            if sk.ao.is_none() {
                return Err(ENOENT);
            }
            Ok(())
        })();
        // struct tcp_ao_repair: snt_isn, rcv_isn (big-endian), snd_sne, rcv_sne.
        if let (Ok(()), Some(b), Some(ao)) = (r, optval, sk.ao.as_mut()) {
            let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let ne = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            if b.len() >= 16 {
                ao.repaired = Some((be(0), be(4), ne(8)));
            }
        }
        Expect::from(r)
    }

    /// `getsockopt(TCP_AO_REPAIR)`.
    pub fn get_repair(&self, s: u8, optlen: i32, ctx: Ctx) -> Expect {
        let Some(sk) = self.sock(s) else {
            return Expect::Any;
        };
        if optlen < 0 {
            return Expect::Err(EINVAL);
        }
        if ctx.state == LISTEN {
            return Expect::Err(EPERM);
        }
        if optlen <= 0 {
            return Expect::Err(EINVAL);
        }
        if !sk.repair {
            return Expect::Err(EPERM);
        }
        if sk.ao.is_none() {
            return Expect::Err(ENOENT);
        }
        Expect::Ok
    }

    /// `setsockopt(TCP_MD5SIG{,_EXT})`.
    pub fn md5(
        &mut self,
        s: u8,
        ext: bool,
        optval: Option<&[u8]>,
        optlen: u32,
        _ctx: Ctx,
    ) -> Expect {
        let dev = self.dev;
        let Some(sk) = self.sock_mut(s) else {
            return Expect::Any;
        };
        Expect::from(md5_cmd(sk, &dev, ext, optval, optlen as usize))
    }

    /// `connect()` on `s` to `daddr`: `EKEYREJECTED` when AO keys exist and none matches
    /// (or both an MD5 and an AO key match); otherwise the keys that do not match the
    /// destination are dropped and Current/RNext default to the first match
    /// (`tcp_ao_connect_init`). Returns the predicted errno, `None` when the kernel decides.
    pub fn connect(&mut self, s: u8, daddr: [u8; 16], family: u16) -> Option<i32> {
        // Connecting to the any-address connects to loopback (tcp_v6_connect replaces ::
        // with ::1; IPv4 routing turns 0.0.0.0 into 127.0.0.1): resolved divergence 1.
        let daddr = if family == AF_INET && v4(&daddr) == 0 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[127, 0, 0, 1]);
            a
        } else if family == AF_INET6 && any6(&daddr) {
            let mut a = [0u8; 16];
            a[15] = 1;
            a
        } else {
            daddr
        };
        let sk = self.sock_mut(s)?;
        sk.daddr = Some(daddr);
        let l3 = 0;
        let ao_match = sk
            .ao
            .as_ref()
            .is_some_and(|ao| ao.lookup(l3, &daddr, family, 255, -1, -1).is_some());
        if !sk.md5.is_empty() {
            let md5_match = md5_lookup(&sk.md5, &daddr, family, None).is_some();
            let needs_ao = ao_match || sk.ao.as_ref().is_some_and(|a| a.ao_required);
            if md5_match && needs_ao {
                return Some(EKEYREJECTED);
            }
            if md5_match {
                sk.ao = None;
            } else if needs_ao {
                sk.md5.clear();
            }
        }
        let ao = sk.ao.as_mut()?;
        if !ao_match {
            return Some(EKEYREJECTED);
        }
        ao.keys
            .retain(|k| k.matches(l3, &daddr, k.prefix, family, -1, -1));
        let first = ao.keys.first().map(|k| k.uid);
        if ao.current.is_none_or(|c| ao.key(Some(c)).is_none()) {
            ao.current = first;
        }
        if ao.rnext.is_none_or(|c| ao.key(Some(c)).is_none()) {
            ao.rnext = first;
        }
        None
    }

    /// Records the destination of `s` (an accepted socket's peer), as the kernel's
    /// `inet_daddr`/`sk_v6_daddr`.
    pub fn set_daddr(&mut self, s: u8, ip: std::net::IpAddr) {
        if let Some(sk) = self.sock_mut(s) {
            let mut a = [0u8; 16];
            match ip {
                std::net::IpAddr::V4(v) if !sk.v6 => a[..4].copy_from_slice(&v.octets()),
                std::net::IpAddr::V4(v) => a = v.to_ipv6_mapped().octets(),
                std::net::IpAddr::V6(v) => a = v.octets(),
            }
            sk.daddr = Some(a);
        }
    }

    /// A successful `bind()`: IPv4's `__inet_bind()` resets `inet_daddr` (resolved divergence
    /// 11, docs/fuzz.md); IPv6 keeps `sk_v6_daddr`.
    pub fn bound(&mut self, s: u8) {
        if let Some(sk) = self.sock_mut(s) {
            if !sk.v6 {
                sk.daddr = None;
            }
        }
    }

    /// Marks `s` as connected to a peer that may move Current_key.
    pub fn set_floating(&mut self, s: u8) {
        if let Some(sk) = self.sock_mut(s) {
            sk.floating = true;
        }
    }

    /// Takes the kernel's view of a socket's keys and info (after `accept`, or when the model
    /// cannot follow): `keys` in kernel order with their current/rnext flags.
    pub fn adopt(&mut self, s: u8, keys: Vec<KeyRecord>, info: Option<(bool, bool, [u64; 5])>) {
        let Some(sk) = self.sock_mut(s) else {
            return;
        };
        let Some((req, icmps, counters)) = info else {
            sk.ao = None;
            return;
        };
        let mut ao = AoM {
            ao_required: req,
            accept_icmps: icmps,
            counters,
            ..AoM::default()
        };
        for (i, r) in keys.into_iter().enumerate() {
            let uid = i as u32;
            if r.is_current {
                ao.current = Some(uid);
            }
            if r.is_rnext {
                ao.rnext = Some(uid);
            }
            ao.keys.push(KeyM { uid, ..r.key });
        }
        ao.next_uid = ao.keys.len() as u32;
        sk.ao = Some(ao);
    }

    /// Raises the known lower bounds of the counters of `s`.
    pub fn saw_counters(&mut self, s: u8, c: [u64; 5]) {
        if let Some(ao) = self.sock_mut(s).and_then(|k| k.ao.as_mut()) {
            for (m, v) in ao.counters.iter_mut().zip(c) {
                *m = (*m).max(v);
            }
        }
    }

    /// Sets Current_key of `s` to the key with SendID `sndid` (an RNextKeyID request seen on
    /// the wire); no change when there is none.
    pub fn rnext_request(&mut self, s: u8, sndid: u8) {
        if let Some(ao) = self.sock_mut(s).and_then(|k| k.ao.as_mut()) {
            if let Some(u) = ao.established_key(i32::from(sndid), -1) {
                ao.current = Some(u);
            }
        }
    }
}

/// The address of a sockaddr for a socket of family `sock_fam` as the AO code reads it:
/// `(family, addr, port)`; v4-mapped IPv6 is left to the caller.
fn read_sockaddr(b: &[u8], sock_fam: u16) -> (u16, [u8; 16], u16) {
    let fam = u16_at(b, 0);
    let port = u16::from_be_bytes([b[2], b[3]]);
    let mut a = [0u8; 16];
    if sock_fam == AF_INET {
        a[..4].copy_from_slice(&b[4..8]);
    } else {
        a.copy_from_slice(&b[8..24]);
    }
    (fam, a, port)
}

/// `tcp_ao_verify_ipv4/6`: the key's `(family, addr)`.
fn verify_addr(sk: &SockM, b: &[u8], prefix: u8) -> Result<(u16, [u8; 16]), i32> {
    let sock_fam = if sk.v6 { AF_INET6 } else { AF_INET };
    let (fam, a, port) = read_sockaddr(b, sock_fam);
    if fam != sock_fam || port != 0 {
        return Err(EINVAL);
    }
    let daddr = sk.daddr;
    if !sk.v6 || (prefix != 0 && is_mapped(&a)) {
        let addr4 = if sk.v6 { v4(&a[12..]) } else { v4(&a) };
        if prefix != 0 {
            if addr4 == 0 || prefix > 32 {
                return Err(EINVAL);
            }
            let m = mask4(prefix);
            if addr4 & !m != 0 {
                return Err(EINVAL);
            }
            if let Some(d) = daddr {
                let d4 = if sk.v6 {
                    if !is_mapped(&d) && !any6(&d) {
                        return Err(EINVAL);
                    }
                    if any6(&d) { 0 } else { v4(&d[12..]) }
                } else {
                    v4(&d)
                };
                if d4 != 0 && d4 & m != addr4 {
                    return Err(EINVAL);
                }
            }
        } else if addr4 != 0 {
            return Err(EINVAL);
        }
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&addr4.to_be_bytes());
        return Ok((AF_INET, out));
    }
    if prefix != 0 {
        if any6(&a) || prefix > 128 {
            return Err(EINVAL);
        }
        let mut pfx = [0u8; 16];
        for (i, byte) in pfx.iter_mut().enumerate() {
            let bits = usize::from(prefix).saturating_sub(i * 8).min(8);
            *byte = a[i] & if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
        }
        if pfx != a {
            return Err(EINVAL);
        }
        if let Some(d) = daddr {
            if !any6(&d) && !prefix_eq6(&d, &a, prefix) {
                return Err(EINVAL);
            }
        }
    } else if !any6(&a) {
        return Err(EINVAL);
    }
    Ok((AF_INET6, a))
}

fn md5_lookup<'a>(
    keys: &'a [Md5M],
    addr: &[u8; 16],
    family: u16,
    l3index: Option<i32>,
) -> Option<&'a Md5M> {
    let (family, addr) = if family == AF_INET6 && is_mapped(addr) {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&addr[12..]);
        (AF_INET, a)
    } else {
        (family, *addr)
    };
    keys.iter().find(|k| {
        if k.family != family {
            return false;
        }
        if let Some(l3) = l3index {
            if k.l3flag && k.l3index != l3 {
                return false;
            }
        }
        if family == AF_INET {
            let m = mask4(k.prefix);
            v4(&k.addr) & m == v4(&addr) & m
        } else {
            prefix_eq6(&k.addr, &addr, k.prefix)
        }
    })
}

/// `tcp_ao_required(sk, addr, family, l3index, false)` for an MD5 add.
fn ao_required_for(sk: &SockM, addr: &[u8; 16], family: u16, l3index: i32) -> bool {
    sk.ao
        .as_ref()
        .is_some_and(|ao| ao.ao_required || ao.lookup(l3index, addr, family, 255, -1, -1).is_some())
}

fn add_cmd(
    sk: &mut SockM,
    dev: &Devices,
    optval: Option<&[u8]>,
    optlen: usize,
    ctx: Ctx,
) -> Result<(), i32> {
    Model::gate(sk, optval, optlen, ctx)?;
    if optlen < 288 {
        return Err(EINVAL);
    }
    let c = copy_struct(optval, optlen, 288)?;
    let keylen = c[207];
    if keylen > 80 {
        return Err(EINVAL);
    }
    let bits = u32_at(&c, 196);
    if bits >> 2 != 0 || u16_at(&c, 200) != 0 {
        return Err(EINVAL);
    }
    let prefix = c[202];
    let (family, addr) = verify_addr(sk, &c[..128], prefix)?;
    let keyflags = c[206];
    if keyflags & !3 != 0 {
        return Err(EINVAL);
    }
    let (set_current, set_rnext) = (bits & 1 != 0, bits & 2 != 0);
    if (set_current || set_rnext) && ctx.state == LISTEN {
        return Err(EINVAL);
    }
    let ifindex = u32_at(&c, 192) as i32;
    if ifindex != 0 && keyflags & 1 == 0 {
        return Err(EINVAL);
    }
    let mut l3index = 0;
    if keyflags & 1 != 0 && ifindex != 0 {
        if !dev.is_l3_master(sk.ns, ifindex) {
            return Err(EINVAL);
        }
        l3index = ifindex;
        if (ctx.bound_dev == 0 || ctx.bound_dev != ifindex)
            && ctx.state != LISTEN
            && ctx.state != CLOSE
        {
            return Err(EINVAL);
        }
    }
    let md5_l3 = if keyflags & 1 != 0 {
        Some(l3index)
    } else {
        None
    };
    if md5_lookup(&sk.md5, &addr, family, md5_l3).is_some() {
        return Err(EKEYREJECTED);
    }
    let (sndid, rcvid) = (c[203], c[204]);
    if let Some(ao) = &sk.ao {
        if ao
            .lookup(l3index, &addr, family, prefix, -1, i32::from(rcvid))
            .is_some()
            || ao
                .lookup(l3index, &addr, family, prefix, i32::from(sndid), -1)
                .is_some()
        {
            return Err(EEXIST);
        }
    }
    // tcp_ao_key_alloc: alg_name forced NUL at 63; "cmac(aes)" is an alias for 16-byte keys.
    let mut name = c[128..192].to_vec();
    name[63] = 0;
    let end = name.iter().position(|&x| x == 0).unwrap_or(63);
    let name = &name[..end];
    let (alg_name, digest, cmac) = match name {
        b"hmac(sha1)" => ("hmac(sha1)", 20, false),
        b"hmac(sha256)" => ("hmac(sha256)", 32, false),
        b"cmac(aes128)" => ("cmac(aes)", 16, true),
        b"cmac(aes)" if keylen == 16 => ("cmac(aes)", 16, true),
        _ => return Err(ENOENT),
    };
    let maclen = if c[205] == 0 { 12 } else { c[205] };
    if (4 + usize::from(maclen)).div_ceil(4) * 4 > 20 {
        return Err(EMSGSIZE);
    }
    if usize::from(maclen) > digest {
        return Err(EINVAL);
    }
    let raw = &c[208..208 + usize::from(keylen)];
    let key = if cmac && keylen != 16 {
        tcpao_refimpl::kdf::fold_aes_key(raw).to_vec()
    } else {
        raw.to_vec()
    };
    let first = sk.ao.is_none();
    let ao = sk.ao.get_or_insert_with(AoM::default);
    let uid = ao.next_uid;
    ao.next_uid += 1;
    ao.keys.insert(
        0,
        KeyM {
            uid,
            family,
            addr,
            prefix,
            sndid,
            rcvid,
            maclen,
            keyflags,
            l3index,
            alg_name,
            key,
        },
    );
    if first && ctx.state != LISTEN && ctx.state != CLOSE {
        ao.current = Some(uid);
        ao.rnext = Some(uid);
        ao.repaired = Some((0, 0, 0));
    }
    if set_current {
        ao.current = Some(uid);
    }
    if set_rnext {
        ao.rnext = Some(uid);
    }
    Ok(())
}

fn del_cmd(sk: &mut SockM, optval: Option<&[u8]>, optlen: usize, ctx: Ctx) -> Result<(), i32> {
    Model::gate(sk, optval, optlen, ctx)?;
    if optlen < 144 {
        return Err(EINVAL);
    }
    let c = copy_struct(optval, optlen, 144)?;
    let bits = u32_at(&c, 132);
    if bits >> 3 != 0 || u16_at(&c, 136) != 0 {
        return Err(EINVAL);
    }
    let (set_current, set_rnext, del_async) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
    if (set_current || set_rnext) && ctx.state == LISTEN {
        return Err(EINVAL);
    }
    let keyflags = c[143];
    if keyflags & !1 != 0 {
        return Err(EINVAL);
    }
    let ifindex = u32_at(&c, 128) as i32;
    if ifindex != 0 && keyflags & 1 == 0 {
        return Err(EINVAL);
    }
    let l3index = if keyflags & 1 != 0 { ifindex } else { 0 };
    let Some(ao) = sk.ao.as_mut() else {
        return Err(ENOENT);
    };
    let mut new_current = None;
    let mut new_rnext = None;
    if set_current {
        new_current = Some(ao.established_key(i32::from(c[141]), -1).ok_or(ENOENT)?);
    }
    if set_rnext {
        new_rnext = Some(ao.established_key(-1, i32::from(c[142])).ok_or(ENOENT)?);
    }
    if del_async && ctx.state != LISTEN {
        return Err(EINVAL);
    }
    let sock_fam = if sk.v6 { AF_INET6 } else { AF_INET };
    let (_, mut addr, port) = read_sockaddr(&c[..128], sock_fam);
    let mut family = sock_fam;
    let mut addr_len = if sk.v6 { 16 } else { 4 };
    if sk.v6 && is_mapped(&addr) {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&addr[12..]);
        addr = a;
        family = AF_INET;
        addr_len = 4;
    }
    if port != 0 {
        return Err(EINVAL);
    }
    let (sndid, rcvid, prefix) = (c[139], c[140], c[138]);
    let pos = ao.keys.iter().position(|k| {
        k.sndid == sndid
            && k.rcvid == rcvid
            && k.family == family
            && k.prefix == prefix
            && k.addr[..addr_len] == addr[..addr_len]
            && keyflags & 1 == k.keyflags & 1
            && k.l3index == l3index
            && Some(k.uid) != new_current
            && Some(k.uid) != new_rnext
    });
    let Some(pos) = pos else {
        return Err(ENOENT);
    };
    let key = ao.keys.remove(pos);
    if del_async {
        if ao.current == Some(key.uid) {
            ao.current = None;
        }
        if ao.rnext == Some(key.uid) {
            ao.rnext = None;
        }
        ao.deleted.push(key);
        return Ok(());
    }
    if new_current.is_some() {
        ao.current = new_current;
    }
    if new_rnext.is_some() {
        ao.rnext = new_rnext;
    }
    if ao.current == Some(key.uid) || ao.rnext == Some(key.uid) {
        // tcp_ao_delete_key: put back at the head, EBUSY (the replacements stay set).
        ao.keys.insert(0, key);
        return Err(EBUSY);
    }
    ao.deleted.push(key);
    Ok(())
}

fn info_cmd(sk: &mut SockM, optval: Option<&[u8]>, optlen: usize, ctx: Ctx) -> Result<(), i32> {
    Model::gate(sk, optval, optlen, ctx)?;
    if optlen < 48 {
        return Err(EINVAL);
    }
    let c = copy_struct(optval, optlen, 48)?;
    let bits = u32_at(&c, 0);
    let (set_current, set_rnext) = (bits & 1 != 0, bits & 2 != 0);
    if (set_current || set_rnext) && ctx.state == LISTEN {
        return Err(EINVAL);
    }
    if bits >> 5 != 0 || u16_at(&c, 4) != 0 {
        return Err(EINVAL);
    }
    if sk.ao.is_none() && ctx.state != LISTEN && ctx.state != CLOSE {
        return Err(EINVAL);
    }
    let ao_required = bits & 4 != 0;
    if ao_required && !sk.md5.is_empty() {
        return Err(EKEYREJECTED);
    }
    let empty = AoM::default();
    let cur_ao = sk.ao.as_ref().unwrap_or(&empty);
    let new_current = if set_current {
        Some(cur_ao.established_key(i32::from(c[6]), -1).ok_or(ENOENT)?)
    } else {
        None
    };
    let new_rnext = if set_rnext {
        Some(cur_ao.established_key(-1, i32::from(c[7])).ok_or(ENOENT)?)
    } else {
        None
    };
    let ao = sk.ao.get_or_insert_with(AoM::default);
    if bits & 8 != 0 {
        for k in 0..5 {
            ao.counters[k] = u64_at(&c, 8 + 8 * k);
        }
    }
    ao.ao_required = ao_required;
    ao.accept_icmps = bits & 16 != 0;
    if new_current.is_some() {
        ao.current = new_current;
    }
    if new_rnext.is_some() {
        ao.rnext = new_rnext;
    }
    Ok(())
}

fn get_keys_cmd(ao: &AoM, floating: bool, optval: &[u8], optlen: i32) -> Result<Output, i32> {
    if optlen <= 0 {
        return Err(EINVAL);
    }
    let c = copy_struct(Some(optval), optlen as usize, 304)?;
    if u64_at(&c, 288) != 0 || u64_at(&c, 296) != 0 {
        return Err(EINVAL);
    }
    let keyflags = c[282];
    if keyflags & !1 != 0 {
        return Err(EINVAL);
    }
    let ifindex = u32_at(&c, 284) as i32;
    if ifindex != 0 && keyflags & 1 == 0 {
        return Err(EINVAL);
    }
    let bits = u16_at(&c, 276);
    if bits >> 3 != 0 {
        return Err(EINVAL);
    }
    let (is_current, is_rnext, get_all) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
    let l3index = if keyflags & 1 != 0 { ifindex } else { -1 };
    let mut addr_matching = true;
    if get_all || is_current || is_rnext {
        if get_all && (is_current || is_rnext) {
            return Err(EINVAL);
        }
        addr_matching = false;
    }
    let fam = u16_at(&c, 0);
    let prefix = c[280];
    let mut addr = [0u8; 16];
    let mut has_addr = false;
    let port = u16::from_be_bytes([c[2], c[3]]);
    match fam {
        AF_INET => {
            has_addr = true;
            addr[..4].copy_from_slice(&c[4..8]);
            if prefix > 32 {
                return Err(EINVAL);
            }
            if v4(&addr) == 0 && prefix != 0 {
                return Err(EINVAL);
            }
            if v4(&addr) & !mask4(prefix) != 0 {
                return Err(EINVAL);
            }
        }
        AF_INET6 => {
            has_addr = true;
            addr.copy_from_slice(&c[8..24]);
            if prefix != 0 {
                if is_mapped(&addr) {
                    let a4 = v4(&addr[12..]);
                    if prefix > 32 || a4 == 0 || a4 & !mask4(prefix) != 0 {
                        return Err(EINVAL);
                    }
                } else {
                    if any6(&addr) || prefix > 128 {
                        return Err(EINVAL);
                    }
                    if !prefix_eq6(&addr, &addr, prefix) || {
                        let mut p = addr;
                        for (i, b) in p.iter_mut().enumerate() {
                            let bits = usize::from(prefix).saturating_sub(i * 8).min(8);
                            *b &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
                        }
                        p != addr
                    } {
                        return Err(EINVAL);
                    }
                }
            } else if !any6(&addr) {
                return Err(EINVAL);
            }
        }
        0 if !addr_matching => {}
        _ => return Err(EAFNOSUPPORT),
    }
    if !addr_matching && (has_addr || port != 0 || prefix != 0 || c[278] != 0 || c[279] != 0) {
        return Err(EINVAL);
    }
    let records = ao
        .keys
        .iter()
        .filter(|k| {
            if get_all {
                return true;
            }
            if is_current || is_rnext {
                return (is_current && ao.current == Some(k.uid))
                    || (is_rnext && ao.rnext == Some(k.uid));
            }
            k.matches(
                l3index,
                &addr,
                prefix,
                fam,
                i32::from(c[278]),
                i32::from(c[279]),
            )
        })
        .map(|k| KeyRecord {
            key: k.clone(),
            is_current: ao.current == Some(k.uid),
            is_rnext: ao.rnext == Some(k.uid),
        })
        .collect();
    Ok(Output::Keys {
        records,
        flags_known: !floating || !(is_current || is_rnext),
    })
}

fn md5_cmd(
    sk: &mut SockM,
    dev: &Devices,
    ext: bool,
    optval: Option<&[u8]>,
    optlen: usize,
) -> Result<(), i32> {
    if optlen < 4 {
        return Err(EINVAL);
    }
    if optval.is_none() {
        return Err(EFAULT);
    }
    if optlen < 216 {
        return Err(EINVAL);
    }
    let c = optval.map(|b| b[..216].to_vec()).ok_or(EFAULT)?;
    let sock_fam = if sk.v6 { AF_INET6 } else { AF_INET };
    let (fam, mut addr, _) = read_sockaddr(&c[..128], sock_fam);
    if fam != sock_fam {
        return Err(EINVAL);
    }
    let flags = c[128];
    let l3flag = flags & 2 != 0;
    let mapped = sk.v6 && is_mapped(&addr);
    let mut prefix = if sk.v6 && !mapped { 128 } else { 32 };
    if ext && flags & 1 != 0 {
        prefix = c[129];
        let max = if sk.v6 && !mapped { 128 } else { 32 };
        if prefix > max {
            return Err(EINVAL);
        }
    }
    let ifindex = u32_at(&c, 132) as i32;
    let mut l3index = 0;
    if ext && ifindex != 0 && l3flag {
        if !dev.is_l3_master(sk.ns, ifindex) {
            return Err(EINVAL);
        }
        l3index = ifindex;
    }
    let mut family = sock_fam;
    if mapped {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&addr[12..]);
        addr = a;
        family = AF_INET;
    }
    let keylen = u16_at(&c, 130);
    let pos = sk.md5.iter().position(|k| {
        k.family == family
            && k.prefix == prefix
            && k.l3index == l3index
            && k.l3flag == l3flag
            && (if family == AF_INET {
                k.addr[..4] == addr[..4]
            } else {
                k.addr == addr
            })
    });
    if keylen == 0 {
        return match pos {
            Some(p) => {
                sk.md5.remove(p);
                Ok(())
            }
            None => Err(ENOENT),
        };
    }
    if keylen > 80 {
        return Err(EINVAL);
    }
    if ao_required_for(sk, &addr, family, if l3flag { l3index } else { -1 }) {
        return Err(EKEYREJECTED);
    }
    if pos.is_none() {
        sk.md5.insert(
            0,
            Md5M {
                family,
                addr,
                prefix,
                l3index,
                l3flag,
            },
        );
    }
    Ok(())
}

/// A parsed `TCP_AO_GET_KEYS` record, for comparison with a [`KeyRecord`].
pub fn parse_record(r: &[u8]) -> KeyRecord {
    let fam = u16_at(r, 0);
    let mut addr = [0u8; 16];
    if fam == AF_INET {
        addr[..4].copy_from_slice(&r[4..8]);
    } else {
        addr.copy_from_slice(&r[8..24]);
    }
    let end = r[128..192].iter().position(|&x| x == 0).unwrap_or(64);
    let alg_name: &'static str = match &r[128..128 + end] {
        b"hmac(sha1)" => "hmac(sha1)",
        b"hmac(sha256)" => "hmac(sha256)",
        b"cmac(aes)" => "cmac(aes)",
        _ => "?",
    };
    let keylen = usize::from(r[283]).min(80);
    let bits = u16_at(r, 276);
    KeyRecord {
        key: KeyM {
            uid: 0,
            family: fam,
            addr,
            prefix: r[280],
            sndid: r[278],
            rcvid: r[279],
            maclen: r[281],
            keyflags: r[282],
            l3index: u32_at(r, 284) as i32,
            alg_name,
            key: r[192..192 + keylen].to_vec(),
        },
        is_current: bits & 1 != 0,
        is_rnext: bits & 2 != 0,
    }
}

/// Compares kernel records with the prediction; `None` when they agree, else why not.
pub fn compare_keys(got: &[KeyRecord], want: &[KeyRecord], flags_known: bool) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!(
            "{} keys reported, the model has {}: kernel {:?} model {:?}",
            got.len(),
            want.len(),
            got.iter().map(|r| &r.key).collect::<Vec<_>>(),
            want.iter().map(|r| &r.key).collect::<Vec<_>>()
        ));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = KeyM {
            uid: 0,
            ..g.key.clone()
        } == KeyM {
            uid: 0,
            ..w.key.clone()
        };
        if !same {
            return Some(format!("key {i}: kernel {:?}, model {:?}", g.key, w.key));
        }
        if flags_known && (g.is_current != w.is_current || g.is_rnext != w.is_rnext) {
            return Some(format!(
                "key {i} (snd {} rcv {}): kernel current/rnext {}/{}, model {}/{}",
                g.key.sndid, g.key.rcvid, g.is_current, g.is_rnext, w.is_current, w.is_rnext
            ));
        }
    }
    None
}

/// Counts per operation name of how the model judged calls (for the summary).
pub type Judged = BTreeMap<String, [u64; 3]>;

#[cfg(test)]
mod tests {
    use super::super::encode::*;
    use super::super::prog::*;
    use super::*;

    const DEV: Devices = Devices { vrf: 5, veth: 3 };
    const CLOSED: Ctx = Ctx {
        state: CLOSE,
        bound_dev: 0,
    };
    const LISTENING: Ctx = Ctx {
        state: LISTEN,
        bound_dev: 0,
    };
    const EST: Ctx = Ctx {
        state: state::ESTABLISHED,
        bound_dev: 0,
    };

    fn key(sndid: u8, rcvid: u8) -> AddArg {
        AddArg {
            addr: AddrArg::Sel(Addr::Tun),
            prefix: 32,
            sndid,
            rcvid,
            maclen: 0,
            keyflags: 0,
            keylen: 16,
            key_seed: 1,
            alg: Alg::HmacSha1,
            ifindex: IfSel::Zero,
            set_current: false,
            set_rnext: false,
            reserved: 0,
            reserved2: 0,
            len: Len::Exact,
        }
    }

    fn add(m: &mut Model, s: u8, a: &AddArg, ctx: Ctx) -> Expect {
        let v6 = m.sock(s).unwrap().v6;
        let (b, n) = with_len(add_bytes(a, Ns::A, v6, &DEV), a.len);
        m.add(s, b.as_deref(), n, ctx)
    }

    fn del(m: &mut Model, s: u8, d: &DelArg, ctx: Ctx) -> Expect {
        let v6 = m.sock(s).unwrap().v6;
        let (b, n) = with_len(del_bytes(d, Ns::A, v6, &DEV), d.len);
        m.del(s, b.as_deref(), n, ctx)
    }

    fn del_of(a: &AddArg) -> DelArg {
        DelArg {
            addr: a.addr,
            prefix: a.prefix,
            sndid: a.sndid,
            rcvid: a.rcvid,
            current_key: 0,
            rnext: 0,
            keyflags: 0,
            ifindex: IfSel::Zero,
            set_current: false,
            set_rnext: false,
            del_async: false,
            reserved: 0,
            reserved2: 0,
            len: Len::Exact,
        }
    }

    fn all_keys(m: &Model, s: u8) -> Vec<(u8, u8, bool, bool)> {
        let g = GetArg {
            addr: None,
            prefix: 0,
            sndid: 0,
            rcvid: 0,
            get_all: true,
            is_current: false,
            is_rnext: false,
            reserved: 0,
            keyflags: 0,
            ifindex: IfSel::Zero,
            pkt_good: 0,
            pkt_bad: 0,
            nkeys: 8,
            len: GetLen::Exact,
        };
        let b = get_bytes(&g, Ns::A, false, &DEV);
        match m.get_keys(s, &b, 304) {
            (Expect::Ok, Output::Keys { records, .. }) => records
                .iter()
                .map(|r| (r.key.sndid, r.key.rcvid, r.is_current, r.is_rnext))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_checks_in_kernel_order() {
        let mut m = Model::new(DEV);
        m.socket(0, false, Ns::A);
        // Short optlen before anything else; NULL optval faults; reserved bits.
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    len: Len::Short(3),
                    ..key(1, 1)
                },
                CLOSED
            ),
            Expect::Err(EINVAL)
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    len: Len::Null,
                    ..key(1, 1)
                },
                CLOSED
            ),
            Expect::Err(EFAULT)
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    len: Len::Short(208),
                    ..key(1, 1)
                },
                CLOSED
            ),
            Expect::Err(EINVAL)
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    len: Len::Long {
                        extra: 8,
                        nonzero: true
                    },
                    reserved: 1,
                    ..key(1, 1)
                },
                CLOSED
            ),
            Expect::Err(E2BIG),
            "E2BIG comes before the reserved check"
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    reserved: 1,
                    ..key(1, 1)
                },
                CLOSED
            ),
            Expect::Err(EINVAL)
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    keylen: 81,
                    reserved: 1,
                    ..key(1, 1)
                },
                CLOSED
            ),
            Expect::Err(EINVAL)
        );
        // Address rules.
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    prefix: 33,
                    ..key(1, 1)
                },
                CLOSED
            ),
            Expect::Err(EINVAL)
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    prefix: 0,
                    ..key(1, 1)
                },
                CLOSED
            ),
            Expect::Err(EINVAL),
            "prefix 0 needs the any-address"
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    addr: AddrArg::Sel(Addr::Any),
                    prefix: 0,
                    ..key(1, 1)
                },
                CLOSED
            ),
            Expect::Ok
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    prefix: 24,
                    ..key(2, 2)
                },
                CLOSED
            ),
            Expect::Err(EINVAL),
            "host bits past the prefix"
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    addr: AddrArg::Port(Addr::Tun, 1),
                    ..key(2, 2)
                },
                CLOSED
            ),
            Expect::Err(EINVAL)
        );
        // Overlap with the any-address key on either ID.
        assert_eq!(add(&mut m, 0, &key(1, 9), CLOSED), Expect::Err(EEXIST));
        assert_eq!(add(&mut m, 0, &key(9, 1), CLOSED), Expect::Err(EEXIST));
        assert_eq!(add(&mut m, 0, &key(2, 2), CLOSED), Expect::Ok);
        // Crypto: maclen 17 EMSGSIZE, unknown algorithm ENOENT, cmac(aes) alias.
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    maclen: 17,
                    ..key(3, 3)
                },
                CLOSED
            ),
            Expect::Err(EMSGSIZE)
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    alg: Alg::HmacSha512,
                    ..key(3, 3)
                },
                CLOSED
            ),
            Expect::Err(ENOENT)
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    alg: Alg::CmacAes,
                    keylen: 20,
                    ..key(3, 3)
                },
                CLOSED
            ),
            Expect::Err(ENOENT)
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    alg: Alg::Unterminated,
                    ..key(3, 3)
                },
                CLOSED
            ),
            Expect::Err(ENOENT)
        );
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    alg: Alg::CmacAes,
                    keylen: 16,
                    ..key(3, 3)
                },
                CLOSED
            ),
            Expect::Ok
        );
        // Newest first.
        assert_eq!(
            all_keys(&m, 0),
            [
                (3, 3, false, false),
                (2, 2, false, false),
                (1, 1, false, false)
            ]
        );
    }

    /// Resolved divergence 26: a child of a repair-mode listener passes the EISCONN gate
    /// (`tp->repair` is copied), but `TCP_AO_REPAIR` still expects repair mode set on it (open
    /// finding 18), and `TCP_REPAIR` off ends both.
    #[test]
    fn children_of_a_repair_mode_listener_pass_the_gate() {
        let mut m = Model::new(DEV);
        m.socket(0, false, Ns::A);
        assert_eq!(
            m.repair(
                0,
                1,
                Ctx {
                    state: CLOSE,
                    bound_dev: 0
                }
            ),
            Expect::Ok
        );
        m.socket(1, false, Ns::A);
        m.inherit_repair(1, 0);
        assert_ne!(add(&mut m, 1, &key(1, 1), EST), Expect::Err(EISCONN));
        assert_eq!(
            m.get_repair(1, 16, EST),
            Expect::Err(EPERM),
            "finding 18 stays open"
        );
        m.socket(2, false, Ns::A);
        m.inherit_repair(2, 0);
        assert_eq!(m.repair(2, 0, EST), Expect::Ok);
        assert_eq!(add(&mut m, 2, &key(1, 1), EST), Expect::Err(EISCONN));
        // A listener without repair mode hands out ordinary children.
        m.socket(3, false, Ns::A);
        m.socket(2, false, Ns::A);
        m.inherit_repair(2, 3);
        assert_eq!(add(&mut m, 2, &key(1, 1), EST), Expect::Err(EISCONN));
    }

    /// Resolved divergence 29: an `ao_info` made on an open connection holds zero ISNs and
    /// SNE until `TCP_AO_REPAIR` sets them.
    #[test]
    fn keys_added_to_an_open_connection_use_the_repaired_isns() {
        let mut m = Model::new(DEV);
        m.socket(0, false, Ns::A);
        assert_eq!(m.repair(0, 1, EST), Expect::Ok);
        assert_eq!(add(&mut m, 0, &key(1, 1), EST), Expect::Ok);
        assert_eq!(
            m.sock(0).unwrap().ao.as_ref().unwrap().repaired,
            Some((0, 0, 0))
        );
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&7u32.to_be_bytes());
        b[4..8].copy_from_slice(&9u32.to_be_bytes());
        b[8..12].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(m.set_repair(0, Some(&b), 16, EST), Expect::Ok);
        assert_eq!(
            m.sock(0).unwrap().ao.as_ref().unwrap().repaired,
            Some((7, 9, 3))
        );
        // Keys added before connect() use the connection's own ISNs.
        m.socket(1, false, Ns::A);
        let closed = Ctx {
            state: CLOSE,
            bound_dev: 0,
        };
        assert_eq!(add(&mut m, 1, &key(1, 1), closed), Expect::Ok);
        assert_eq!(m.sock(1).unwrap().ao.as_ref().unwrap().repaired, None);
    }

    #[test]
    fn listen_and_established_rules() {
        let mut m = Model::new(DEV);
        m.socket(0, false, Ns::A);
        let k = AddArg {
            set_current: true,
            ..key(1, 1)
        };
        assert_eq!(add(&mut m, 0, &k, LISTENING), Expect::Err(EINVAL));
        // An established socket without ao_info: EISCONN, unless in repair mode.
        assert_eq!(add(&mut m, 0, &key(1, 1), EST), Expect::Err(EISCONN));
        assert_eq!(m.repair(0, 1, EST), Expect::Ok);
        assert_eq!(add(&mut m, 0, &key(1, 1), EST), Expect::Ok);
        assert_eq!(
            all_keys(&m, 0),
            [(1, 1, true, true)],
            "first key is current and rnext"
        );
        // A second key, then deleting the current one is EBUSY and moves it to the head.
        assert_eq!(add(&mut m, 0, &key(2, 2), EST), Expect::Ok);
        assert_eq!(all_keys(&m, 0)[0].0, 2);
        assert_eq!(del(&mut m, 0, &del_of(&key(1, 1)), EST), Expect::Err(EBUSY));
        assert_eq!(all_keys(&m, 0), [(1, 1, true, true), (2, 2, false, false)]);
        let deleted = |m: &Model| -> Vec<u8> {
            m.sock(0)
                .unwrap()
                .ao
                .as_ref()
                .unwrap()
                .deleted
                .iter()
                .map(|k| k.sndid)
                .collect()
        };
        assert!(deleted(&m).is_empty(), "a refused delete is no deletion");
        // Forced delete with replacements.
        let d = DelArg {
            set_current: true,
            current_key: 2,
            set_rnext: true,
            rnext: 2,
            ..del_of(&key(1, 1))
        };
        assert_eq!(del(&mut m, 0, &d, EST), Expect::Ok);
        assert_eq!(all_keys(&m, 0), [(2, 2, true, true)]);
        assert_eq!(deleted(&m), [1], "a child may still hold a copy");
        // The replacement cannot be the key deleted.
        let d = DelArg {
            set_current: true,
            current_key: 2,
            ..del_of(&key(2, 2))
        };
        assert_eq!(del(&mut m, 0, &d, EST), Expect::Err(ENOENT));
        assert_eq!(
            del(
                &mut m,
                0,
                &DelArg {
                    del_async: true,
                    ..del_of(&key(2, 2))
                },
                EST
            ),
            Expect::Err(EINVAL)
        );
    }

    #[test]
    fn info_and_md5_interplay() {
        let mut m = Model::new(DEV);
        m.socket(0, false, Ns::A);
        let md5 = Md5Arg {
            ext: true,
            addr: AddrArg::Sel(Addr::Veth),
            flags: 1,
            prefixlen: 32,
            keylen: 16,
            key_seed: 2,
            ifindex: IfSel::Zero,
            len: Len::Exact,
        };
        let (b, n) = with_len(md5_bytes(&md5, Ns::A, false, &DEV), md5.len);
        assert_eq!(m.md5(0, true, b.as_deref(), n, CLOSED), Expect::Ok);
        // An AO key for the same peer is refused; one for another peer is fine.
        let veth = AddArg {
            addr: AddrArg::Sel(Addr::Veth),
            ..key(1, 1)
        };
        assert_eq!(add(&mut m, 0, &veth, CLOSED), Expect::Err(EKEYREJECTED));
        assert_eq!(add(&mut m, 0, &key(1, 1), CLOSED), Expect::Ok);
        // ao_required with an MD5 key.
        let i = InfoArg {
            set_current: false,
            set_rnext: false,
            ao_required: true,
            set_counters: false,
            accept_icmps: false,
            reserved: 0,
            reserved2: 0,
            current_key: 0,
            rnext: 0,
            counters: [0; 5],
            len: Len::Exact,
        };
        let (b, n) = with_len(info_bytes(&i), i.len);
        assert_eq!(
            m.set_info(0, b.as_deref(), n, CLOSED),
            Expect::Err(EKEYREJECTED)
        );
        let i = InfoArg {
            ao_required: false,
            accept_icmps: true,
            set_counters: true,
            counters: [5, 6, 7, 8, 9],
            ..i
        };
        let (b, n) = with_len(info_bytes(&i), i.len);
        assert_eq!(m.set_info(0, b.as_deref(), n, CLOSED), Expect::Ok);
        let (e, out) = m.get_info(0, &[0; 48], 48);
        assert_eq!(e, Expect::Ok);
        let Output::Info {
            accept_icmps,
            counters_min,
            current,
            ..
        } = out
        else {
            panic!("{out:?}")
        };
        assert!(accept_icmps);
        assert_eq!(counters_min, [5, 6, 7, 8, 9]);
        assert_eq!(current, Some((false, 0)));
        // Deleting the MD5 key twice.
        let d = Md5Arg { keylen: 0, ..md5 };
        let (b, n) = with_len(md5_bytes(&d, Ns::A, false, &DEV), d.len);
        assert_eq!(m.md5(0, true, b.as_deref(), n, CLOSED), Expect::Ok);
        assert_eq!(m.md5(0, true, b.as_deref(), n, CLOSED), Expect::Err(ENOENT));
    }

    #[test]
    fn connect_filters_keys() {
        let mut m = Model::new(DEV);
        m.socket(0, false, Ns::A);
        let veth = AddArg {
            addr: AddrArg::Sel(Addr::Veth),
            ..key(1, 1)
        };
        assert_eq!(add(&mut m, 0, &veth, CLOSED), Expect::Ok);
        assert_eq!(add(&mut m, 0, &key(2, 2), CLOSED), Expect::Ok);
        let mut unreach = [0u8; 16];
        unreach[..4].copy_from_slice(&[10, 0, 1, 0x99]);
        assert_eq!(m.connect(0, unreach, AF_INET), Some(EKEYREJECTED));
        let mut tun = [0u8; 16];
        tun[..4].copy_from_slice(&[10, 0, 2, 2]);
        assert_eq!(m.connect(0, tun, AF_INET), None);
        assert_eq!(all_keys(&m, 0), [(2, 2, true, true)]);
        // A key not covering the destination is now refused.
        assert_eq!(add(&mut m, 0, &veth, CLOSED), Expect::Err(EINVAL));
    }

    /// Resolved divergence 11 (docs/fuzz.md): after a refused connect, `bind()` clears the
    /// IPv4 destination, so a key for another network is accepted again.
    #[test]
    fn bind_clears_the_ipv4_destination() {
        let mut m = Model::new(DEV);
        m.socket(0, false, Ns::A);
        m.set_daddr(0, "10.0.1.2".parse().unwrap());
        let net = AddArg {
            addr: AddrArg::Sel(Addr::TunNet),
            prefix: 24,
            ..key(3, 1)
        };
        assert_eq!(add(&mut m, 0, &net, CLOSED), Expect::Err(EINVAL));
        m.bound(0);
        assert_eq!(add(&mut m, 0, &net, CLOSED), Expect::Ok);
    }

    /// Resolved divergence 6 (docs/fuzz.md): an accepted socket refuses a key that does not
    /// cover its peer (EINVAL), as a connected one does.
    #[test]
    fn accepted_sockets_check_keys_against_the_peer() {
        let mut m = Model::new(DEV);
        m.socket(1, false, Ns::A);
        m.set_daddr(1, "10.0.2.2".parse().unwrap());
        let mut r = key(0, 0);
        r.addr = AddrArg::Sel(Addr::Veth);
        assert_eq!(
            add(&mut m, 1, &r, EST),
            Expect::Err(EISCONN),
            "no ao_info yet"
        );
        assert_eq!(m.repair(1, 1, EST), Expect::Ok);
        assert_eq!(add(&mut m, 1, &r, EST), Expect::Err(EINVAL));
        assert_eq!(add(&mut m, 1, &key(0, 0), EST), Expect::Ok);
    }

    /// Resolved divergence 1 (docs/fuzz.md): `connect()` to the any-address goes to
    /// loopback, so a key for another peer does not match it and the kernel refuses with
    /// EKEYREJECTED (the model had matched the any-address against every key).
    #[test]
    fn connect_to_the_any_address_is_loopback() {
        for v6 in [false, true] {
            let mut m = Model::new(DEV);
            m.socket(0, v6, Ns::A);
            let veth = AddArg {
                addr: AddrArg::Sel(Addr::Veth),
                prefix: if v6 { 128 } else { 32 },
                ..key(0, 0)
            };
            assert_eq!(add(&mut m, 0, &veth, CLOSED), Expect::Ok);
            let fam = if v6 { AF_INET6 } else { AF_INET };
            assert_eq!(m.connect(0, [0; 16], fam), Some(EKEYREJECTED), "v6 {v6}");
        }
    }

    #[test]
    fn get_keys_filters() {
        let mut m = Model::new(DEV);
        m.socket(0, false, Ns::A);
        let mut g = GetArg {
            addr: None,
            prefix: 0,
            sndid: 0,
            rcvid: 0,
            get_all: true,
            is_current: true,
            is_rnext: false,
            reserved: 0,
            keyflags: 0,
            ifindex: IfSel::Zero,
            pkt_good: 0,
            pkt_bad: 0,
            nkeys: 8,
            len: GetLen::Exact,
        };
        let b = get_bytes(&g, Ns::A, false, &DEV);
        assert_eq!(m.get_keys(0, &b, 304).0, Expect::Err(ENOENT), "no ao_info");
        assert_eq!(add(&mut m, 0, &key(1, 1), CLOSED), Expect::Ok);
        assert_eq!(
            m.get_keys(0, &b, 304).0,
            Expect::Err(EINVAL),
            "get_all + is_current"
        );
        g.get_all = false;
        g.is_current = false;
        let b = get_bytes(&g, Ns::A, false, &DEV);
        assert_eq!(m.get_keys(0, &b, 304).0, Expect::Err(EAFNOSUPPORT));
        g.addr = Some(AddrArg::Sel(Addr::Tun));
        g.prefix = 32;
        g.sndid = 1;
        g.rcvid = 1;
        let b = get_bytes(&g, Ns::A, false, &DEV);
        let (e, out) = m.get_keys(0, &b, 304);
        assert_eq!(e, Expect::Ok);
        assert!(matches!(out, Output::Keys { ref records, .. } if records.len() == 1));
        g.pkt_good = 1;
        let b = get_bytes(&g, Ns::A, false, &DEV);
        assert_eq!(m.get_keys(0, &b, 304).0, Expect::Err(EINVAL));
        assert_eq!(m.get_keys(0, &b, 0).0, Expect::Err(EINVAL));
    }

    /// Resolved divergence 5 (docs/fuzz.md): a negative optlen is EINVAL before the
    /// option's own checks (ENOENT without ao_info, EPERM on a listener).
    #[test]
    fn negative_getsockopt_optlen_comes_first() {
        let mut m = Model::new(DEV);
        m.socket(0, false, Ns::A);
        assert_eq!(m.get_keys(0, &[0; 304], -1).0, Expect::Err(EINVAL));
        assert_eq!(m.get_keys(0, &[0; 304], 304).0, Expect::Err(ENOENT));
        assert_eq!(m.get_repair(0, -1, LISTENING), Expect::Err(EINVAL));
        assert_eq!(m.get_repair(0, 16, LISTENING), Expect::Err(EPERM));
        assert_eq!(m.get_info(0, &[0; 48], -1).0, Expect::Err(EINVAL));
    }

    #[test]
    fn record_parsing_and_comparison() {
        let mut m = Model::new(DEV);
        m.socket(0, false, Ns::A);
        assert_eq!(
            add(
                &mut m,
                0,
                &AddArg {
                    alg: Alg::CmacAes128,
                    keylen: 20,
                    ..key(1, 1)
                },
                CLOSED
            ),
            Expect::Ok
        );
        let ao = m.sock(0).unwrap().ao.as_ref().unwrap();
        assert_eq!(ao.keys[0].key.len(), 16, "folded");
        assert_eq!(ao.keys[0].alg_name, "cmac(aes)");
        let mut rec = vec![0u8; 304];
        rec[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
        rec[4..8].copy_from_slice(&[10, 0, 2, 2]);
        rec[128..137].copy_from_slice(b"cmac(aes)");
        rec[192..208].copy_from_slice(&ao.keys[0].key);
        rec[278] = 1;
        rec[279] = 1;
        rec[280] = 32;
        rec[281] = 12;
        rec[283] = 16;
        let got = parse_record(&rec);
        let want = KeyRecord {
            key: ao.keys[0].clone(),
            is_current: false,
            is_rnext: false,
        };
        assert_eq!(
            compare_keys(
                std::slice::from_ref(&got),
                std::slice::from_ref(&want),
                true
            ),
            None
        );
        let mut other = got;
        other.key.maclen = 4;
        assert!(
            compare_keys(&[other], &[want], true)
                .unwrap()
                .contains("key 0")
        );
        let dbg = format!("{:?}", m.sock(0).unwrap().ao.as_ref().unwrap().keys[0]);
        assert!(
            !dbg.contains("key: ["),
            "Debug must not print key bytes: {dbg}"
        );
    }
}

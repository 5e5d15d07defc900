// SPDX-License-Identifier: MIT OR Apache-2.0
//! `setsockopt-closed`: the TCP-AO socket-option uAPI on fresh, closed and listening sockets
//! (kernel `setsockopt-closed.c`, all 125 case results), plus what upstream got wrong or left
//! out.
//!
//! Every case is a [`SoloTest`]: one fresh network namespace, one new socket, no peer and no
//! traffic. Malformed structures (short, oversized, reserved bits, bad lengths, NULL pointers)
//! are sent byte by byte with `tcpao_sys::raw`; everything the typed API can express goes
//! through it, and the test then also checks that the errno became the right
//! [`tcpao_sys::Error`] variant. Every successful key addition is read back with
//! `TCP_AO_GET_KEYS` and compared field by field (algorithm, key bytes or their RFC 5926
//! AES-CMAC fold, MAC length, flags, current/rnext), like the kernel's `test_verify_socket_key`.
//!
//! Ours alone: a real wrong address family (the other INET family, `AF_UNIX`) on add; `E2BIG`
//! for non-zero trailing bytes on every option; what the typed API does with a peer of the
//! other family; deleting by an IPv4-mapped address and with an unchecked `ss_family`;
//! deleting VRF-bound keys; the `TCP_AO_INFO` read-modify-write trap at the raw level and its
//! absence in the typed API.

use std::io;
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use nix::libc;
use socket2::{SockAddr, Socket};
use tcpao_sys::raw::{self, OptLen};
use tcpao_sys::uapi::{
    self, SOL_TCP, TCP_AO_ADD_KEY, TCP_AO_DEL_KEY, TCP_AO_GET_KEYS, TCP_AO_INFO,
};
use tcpao_sys::{
    Algorithm, AoCounters, AoKey, Error, KeyFilter, KeySelector, MasterKey, Md5Ext, Md5Key,
    PeerPrefix, TcpAoExt,
};

use crate::failure;
use crate::netns;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::probe::Feature;
use crate::registry::Test;
use crate::rng::{Rng, run_seed};
use crate::sockets::{self, DEFAULT_TEST_PASSWORD};
use crate::solo::{Solo, SoloTest};
use crate::topology::Family;

const PROGRAM: &str = "setsockopt-closed";

// ---------------------------------------------------------------------------------------
// Shared helpers (also used by `key-management`).
// ---------------------------------------------------------------------------------------

/// Name of an errno (`EINVAL`).
pub(crate) fn errno_name(e: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(e))
}

fn os_errno(e: &io::Error) -> String {
    e.raw_os_error().map_or_else(|| e.to_string(), errno_name)
}

/// A raw `setsockopt`/`getsockopt` result must be the error `want`.
pub(crate) fn expect_errno<T>(what: &str, r: io::Result<T>, want: i32) -> PeerResult {
    match r {
        Err(e) if e.raw_os_error() == Some(want) => Ok(()),
        Err(e) => Err(failure!(
            "{what}: the call was expected to fail with {}, it failed with {}",
            errno_name(want),
            os_errno(&e)
        )),
        Ok(_) => Err(failure!(
            "{what}: the call was expected to fail with {}, it succeeded",
            errno_name(want)
        )),
    }
}

/// A raw call must succeed.
pub(crate) fn expect_ok<T>(what: &str, r: io::Result<T>) -> PeerResult<T> {
    r.map_err(|e| failure!("{what}: the call failed with {}", os_errno(&e)))
}

/// A typed call must fail with an error matching `pred` (described by `want`).
pub(crate) fn expect_error<T>(
    what: &str,
    r: tcpao_sys::Result<T>,
    want: &str,
    pred: impl Fn(&Error) -> bool,
) -> PeerResult {
    match r {
        Err(e) if pred(&e) => Ok(()),
        Err(e) => Err(failure!(
            "{what}: expected {want}, the typed API returned {e:?} ({})",
            e.raw_os_error()
                .map_or_else(|| "no errno".into(), errno_name)
        )),
        Ok(_) => Err(failure!("{what}: expected {want}, the call succeeded")),
    }
}

/// A typed call must succeed.
pub(crate) fn typed_ok<T>(what: &str, r: tcpao_sys::Result<T>) -> PeerResult<T> {
    r.map_err(|e| {
        failure!(
            "{what}: the call failed: {e} ({})",
            e.raw_os_error()
                .map_or_else(|| "no errno".into(), errno_name)
        )
    })
}

/// `Error::Os` carrying `errno`.
pub(crate) fn is_os(e: &Error, errno: i32) -> bool {
    matches!(e, Error::Os { source, .. } if source.raw_os_error() == Some(errno))
}

/// The bit of a C bitfield member declared `index`-th in a `width`-bit word (GCC layout).
fn bit(index: u32, width: u32) -> u32 {
    if cfg!(target_endian = "big") {
        1 << (width - 1 - index)
    } else {
        1 << index
    }
}

/// A byte buffer holding one of the uAPI structs, written field by field at the kernel's
/// offsets (the `uapi` module asserts them at compile time).
#[derive(Clone)]
pub(crate) struct Raw(pub(crate) Vec<u8>);

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Raw({} bytes)", self.0.len())
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // The buffers may hold key material.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Raw {
    pub(crate) fn zeroed(n: usize) -> Self {
        Self(vec![0; n])
    }
    pub(crate) fn u8(&mut self, off: usize, v: u8) -> &mut Self {
        self.0[off] = v;
        self
    }
    pub(crate) fn u16(&mut self, off: usize, v: u16) -> &mut Self {
        self.0[off..off + 2].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(crate) fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(crate) fn or_u32(&mut self, off: usize, v: u32) -> &mut Self {
        let cur = self.get_u32(off);
        self.u32(off, cur | v)
    }
    pub(crate) fn or_u16(&mut self, off: usize, v: u16) -> &mut Self {
        let cur = u16::from_ne_bytes([self.0[off], self.0[off + 1]]);
        self.u16(off, cur | v)
    }
    pub(crate) fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, off: usize, b: &[u8]) -> &mut Self {
        self.0[off..off + b.len()].copy_from_slice(b);
        self
    }
    pub(crate) fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes([
            self.0[off],
            self.0[off + 1],
            self.0[off + 2],
            self.0[off + 3],
        ])
    }
    pub(crate) fn get_u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[off..off + 8]);
        u64::from_ne_bytes(b)
    }

    /// A `sockaddr_in`/`sockaddr_in6` at `off` with an explicit `ss_family` (so a wrong family
    /// can be written around a valid address); `None` leaves the address zero.
    pub(crate) fn sockaddr(
        &mut self,
        off: usize,
        af: i32,
        ip: Option<IpAddr>,
        port: u16,
    ) -> &mut Self {
        self.0[off..off + 128].fill(0);
        self.u16(off, af as u16);
        self.0[off + 2..off + 4].copy_from_slice(&port.to_be_bytes());
        match ip {
            Some(IpAddr::V4(a)) => {
                self.bytes(off + 4, &a.octets());
            }
            Some(IpAddr::V6(a)) => {
                self.bytes(off + 8, &a.octets());
            }
            None => {}
        }
        self
    }

    /// Append `n` bytes (an "extended" struct for a newer kernel).
    pub(crate) fn extend(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

/// `AF_INET`/`AF_INET6` of a family.
pub(crate) fn af(f: Family) -> i32 {
    match f {
        Family::Ipv4 => libc::AF_INET,
        Family::Ipv6 => libc::AF_INET6,
    }
}

const ADD_SIZE: usize = size_of::<uapi::tcp_ao_add>();
const ADD_ALG: usize = offset_of!(uapi::tcp_ao_add, alg_name);
const ADD_IFINDEX: usize = offset_of!(uapi::tcp_ao_add, ifindex);
const ADD_BITS: usize = offset_of!(uapi::tcp_ao_add, bitfield);
const ADD_RESERVED2: usize = offset_of!(uapi::tcp_ao_add, reserved2);
const ADD_PREFIX: usize = offset_of!(uapi::tcp_ao_add, prefix);
const ADD_SNDID: usize = offset_of!(uapi::tcp_ao_add, sndid);
const ADD_RCVID: usize = offset_of!(uapi::tcp_ao_add, rcvid);
const ADD_MACLEN: usize = offset_of!(uapi::tcp_ao_add, maclen);
const ADD_KEYFLAGS: usize = offset_of!(uapi::tcp_ao_add, keyflags);
const ADD_KEYLEN: usize = offset_of!(uapi::tcp_ao_add, keylen);
const ADD_KEY: usize = offset_of!(uapi::tcp_ao_add, key);

const DEL_SIZE: usize = size_of::<uapi::tcp_ao_del>();
const DEL_IFINDEX: usize = offset_of!(uapi::tcp_ao_del, ifindex);
const DEL_BITS: usize = offset_of!(uapi::tcp_ao_del, bitfield);
const DEL_RESERVED2: usize = offset_of!(uapi::tcp_ao_del, reserved2);
const DEL_PREFIX: usize = offset_of!(uapi::tcp_ao_del, prefix);
const DEL_SNDID: usize = offset_of!(uapi::tcp_ao_del, sndid);
const DEL_RCVID: usize = offset_of!(uapi::tcp_ao_del, rcvid);
const DEL_KEYFLAGS: usize = offset_of!(uapi::tcp_ao_del, keyflags);

const INFO_SIZE: usize = size_of::<uapi::tcp_ao_info_opt>();
const INFO_BITS: usize = offset_of!(uapi::tcp_ao_info_opt, bitfield);
const INFO_RESERVED2: usize = offset_of!(uapi::tcp_ao_info_opt, reserved2);
const INFO_CURRENT: usize = offset_of!(uapi::tcp_ao_info_opt, current_key);
const INFO_RNEXT: usize = offset_of!(uapi::tcp_ao_info_opt, rnext);
const INFO_DROPPED_ICMP: usize = offset_of!(uapi::tcp_ao_info_opt, pkt_dropped_icmp);

pub(crate) const GET_SIZE: usize = size_of::<uapi::tcp_ao_getsockopt>();
const GET_ALG: usize = offset_of!(uapi::tcp_ao_getsockopt, alg_name);
const GET_KEY: usize = offset_of!(uapi::tcp_ao_getsockopt, key);
const GET_NKEYS: usize = offset_of!(uapi::tcp_ao_getsockopt, nkeys);
const GET_BITS: usize = offset_of!(uapi::tcp_ao_getsockopt, bitfield);
const GET_SNDID: usize = offset_of!(uapi::tcp_ao_getsockopt, sndid);
const GET_RCVID: usize = offset_of!(uapi::tcp_ao_getsockopt, rcvid);
const GET_PREFIX: usize = offset_of!(uapi::tcp_ao_getsockopt, prefix);
const GET_MACLEN: usize = offset_of!(uapi::tcp_ao_getsockopt, maclen);
const GET_KEYFLAGS: usize = offset_of!(uapi::tcp_ao_getsockopt, keyflags);
const GET_KEYLEN: usize = offset_of!(uapi::tcp_ao_getsockopt, keylen);
const GET_IFINDEX: usize = offset_of!(uapi::tcp_ao_getsockopt, ifindex);
const GET_PKT_GOOD: usize = offset_of!(uapi::tcp_ao_getsockopt, pkt_good);
const GET_PKT_BAD: usize = offset_of!(uapi::tcp_ao_getsockopt, pkt_bad);

// Bitfield members by declaration index.
const INFO_SET_CURRENT: u32 = uapi::tcp_ao_info_opt::SET_CURRENT;
const INFO_SET_RNEXT: u32 = uapi::tcp_ao_info_opt::SET_RNEXT;
const INFO_AO_REQUIRED: u32 = uapi::tcp_ao_info_opt::AO_REQUIRED;
const GET_IS_CURRENT: u16 = uapi::tcp_ao_getsockopt::IS_CURRENT;
const GET_IS_RNEXT: u16 = uapi::tcp_ao_getsockopt::IS_RNEXT;
const GET_GET_ALL: u16 = uapi::tcp_ao_getsockopt::GET_ALL;

/// The kernel library's default key prefix (`DEFAULT_TEST_PREFIX`): a host.
fn host_prefix(f: Family) -> u8 {
    f.host_prefix()
}

/// The default key as raw `tcp_ao_add` (kernel `test_prepare_def_key(.., this_ip_dest, -1,
/// 0, 100, 100)`): cmac(aes128), the default password, 100:100, host prefix.
fn default_add(s: &Solo) -> Raw {
    let mut r = Raw::zeroed(ADD_SIZE);
    let pw = DEFAULT_TEST_PASSWORD.as_bytes();
    r.sockaddr(0, af(s.family()), Some(s.remote_addr()), 0)
        .bytes(ADD_ALG, b"cmac(aes128)")
        .u8(ADD_PREFIX, host_prefix(s.family()))
        .u8(ADD_SNDID, 100)
        .u8(ADD_RCVID, 100)
        .u8(ADD_KEYLEN, pw.len() as u8)
        .bytes(ADD_KEY, pw);
    r
}

/// The default key for the typed API (same as [`default_add`]).
pub(crate) fn default_key(peer: IpAddr, send_id: u8, recv_id: u8) -> PeerResult<AoKey> {
    key_with(
        peer,
        None,
        send_id,
        recv_id,
        DEFAULT_TEST_PASSWORD.as_bytes(),
    )
}

/// A cmac(aes128) key for `peer[/prefix]` with `password`.
pub(crate) fn key_with(
    peer: IpAddr,
    prefix: Option<u8>,
    send_id: u8,
    recv_id: u8,
    password: &[u8],
) -> PeerResult<AoKey> {
    let p = match prefix {
        Some(l) => PeerPrefix::new(peer, l),
        None => PeerPrefix::host(peer),
    }
    .or_fail("invalid key prefix")?;
    Ok(AoKey::new(
        p,
        send_id,
        recv_id,
        Algorithm::AesCmac128,
        MasterKey::new(password).or_fail("invalid key")?,
    ))
}

/// One key as `TCP_AO_GET_KEYS` reports it, every field kept.
#[derive(Clone)]
pub(crate) struct DumpedKey {
    pub(crate) family: u16,
    pub(crate) addr: Vec<u8>,
    pub(crate) alg_name: String,
    pub(crate) key: zeroize::Zeroizing<Vec<u8>>,
    pub(crate) is_current: bool,
    pub(crate) is_rnext: bool,
    pub(crate) sndid: u8,
    pub(crate) rcvid: u8,
    pub(crate) prefix: u8,
    pub(crate) maclen: u8,
    pub(crate) keyflags: u8,
    pub(crate) ifindex: i32,
    pub(crate) pkt_good: u64,
    pub(crate) pkt_bad: u64,
}

impl std::fmt::Debug for DumpedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {}:{} {} maclen {} keylen {} flags {:#x} ifindex {}",
            self.sndid,
            self.rcvid,
            self.alg_name,
            self.maclen,
            self.key.len(),
            self.keyflags,
            self.ifindex
        )
    }
}

fn parse_dumped(rec: &[u8]) -> DumpedKey {
    let name_end = rec[GET_ALG..GET_ALG + 64]
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(64);
    let keylen = usize::from(rec[GET_KEYLEN]).min(uapi::TCP_AO_MAXKEYLEN);
    let bits = u16::from_ne_bytes([rec[GET_BITS], rec[GET_BITS + 1]]);
    let mut g = [0u8; 8];
    g.copy_from_slice(&rec[GET_PKT_GOOD..GET_PKT_GOOD + 8]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&rec[GET_PKT_BAD..GET_PKT_BAD + 8]);
    DumpedKey {
        family: u16::from_ne_bytes([rec[0], rec[1]]),
        addr: rec[2..28].to_vec(),
        alg_name: String::from_utf8_lossy(&rec[GET_ALG..GET_ALG + name_end]).into_owned(),
        key: zeroize::Zeroizing::new(rec[GET_KEY..GET_KEY + keylen].to_vec()),
        is_current: bits & GET_IS_CURRENT != 0,
        is_rnext: bits & GET_IS_RNEXT != 0,
        sndid: rec[GET_SNDID],
        rcvid: rec[GET_RCVID],
        prefix: rec[GET_PREFIX],
        maclen: rec[GET_MACLEN],
        keyflags: rec[GET_KEYFLAGS],
        ifindex: i32::from_ne_bytes([
            rec[GET_IFINDEX],
            rec[GET_IFINDEX + 1],
            rec[GET_IFINDEX + 2],
            rec[GET_IFINDEX + 3],
        ]),
        pkt_good: u64::from_ne_bytes(g),
        pkt_bad: u64::from_ne_bytes(b),
    }
}

/// Raw `TCP_AO_GET_KEYS` with the filter in `filter` (a [`GET_SIZE`] buffer whose `nkeys`
/// is overwritten with `cap`); returns the total number of matches and the dumped keys.
pub(crate) fn get_keys_raw(
    sk: &impl AsFd,
    filter: &Raw,
    cap: usize,
) -> io::Result<(u32, Vec<DumpedKey>)> {
    let mut buf = vec![0u8; GET_SIZE * cap.max(1)];
    buf[..GET_SIZE].copy_from_slice(&filter.0[..GET_SIZE]);
    buf[GET_NKEYS..GET_NKEYS + 4].copy_from_slice(&(cap as u32).to_ne_bytes());
    let len = raw::getsockopt_bytes(
        sk,
        SOL_TCP,
        TCP_AO_GET_KEYS,
        Some(&mut buf),
        OptLen::Value(GET_SIZE as i32),
    )?;
    let total = u32::from_ne_bytes([
        buf[GET_NKEYS],
        buf[GET_NKEYS + 1],
        buf[GET_NKEYS + 2],
        buf[GET_NKEYS + 3],
    ]);
    if len != Some(GET_SIZE as i32) {
        zeroize::Zeroize::zeroize(&mut buf);
        return Err(io::Error::other(format!(
            "getsockopt(TCP_AO_GET_KEYS) returned optlen {len:?}, not sizeof(struct tcp_ao_getsockopt) = {GET_SIZE}"
        )));
    }
    let n = (total as usize).min(cap);
    let keys = buf.chunks(GET_SIZE).take(n).map(parse_dumped).collect();
    zeroize::Zeroize::zeroize(&mut buf);
    Ok((total, keys))
}

/// Every key of the socket (raw `get_all` dump).
pub(crate) fn dump_all(sk: &impl AsFd) -> io::Result<Vec<DumpedKey>> {
    let mut filter = Raw::zeroed(GET_SIZE);
    filter.or_u16(GET_BITS, GET_GET_ALL);
    let (total, keys) = get_keys_raw(sk, &filter, 64)?;
    if total as usize > 64 {
        let (_, keys) = get_keys_raw(sk, &filter, total as usize)?;
        return Ok(keys);
    }
    Ok(keys)
}

/// The key bytes the kernel stores for `algorithm` and `password`: the RFC 5926 §3.1.1.2
/// AES-CMAC fold for cmac(aes128) keys that are not 16 bytes long, else the password.
pub(crate) fn stored_key(algorithm: &Algorithm, password: &[u8]) -> Vec<u8> {
    if *algorithm == Algorithm::AesCmac128 && password.len() != 16 {
        tcpao_refimpl::kdf::fold_aes_key(password).to_vec()
    } else {
        password.to_vec()
    }
}

/// The name the kernel reports for `algorithm` (`cmac(aes128)` is stored as `cmac(aes)`).
pub(crate) fn reported_alg_name(algorithm: &Algorithm) -> &str {
    match algorithm {
        Algorithm::AesCmac128 => "cmac(aes)",
        a => a.kernel_name(),
    }
}

/// Compare a dumped key with the key that was added, field by field (kernel
/// `test_cmp_getsockopt_setsockopt`). `closed`: also compare current/rnext with the key's
/// own `set_current`/`set_rnext` (only meaningful on a closed socket).
pub(crate) fn compare_key(
    got: &DumpedKey,
    key: &AoKey,
    password: &[u8],
    closed: bool,
) -> Result<(), String> {
    let sel = key.selector();
    let id = format!("key {}:{}", sel.send_id, sel.recv_id);
    let mut bad = Vec::new();
    if (got.sndid, got.rcvid) != (sel.send_id, sel.recv_id) {
        bad.push(format!("IDs {}:{}", got.sndid, got.rcvid));
    }
    let want_alg = reported_alg_name(key.algorithm());
    if got.alg_name != want_alg {
        bad.push(format!(
            "algorithm {:?} instead of {want_alg:?}",
            got.alg_name
        ));
    }
    let want_key = stored_key(key.algorithm(), password);
    if got.key.len() != want_key.len() {
        bad.push(format!(
            "keylen {} instead of {}",
            got.key.len(),
            want_key.len()
        ));
    } else if got.key.as_slice() != want_key.as_slice() {
        bad.push("different key bytes".into());
    }
    let want_mac = key.configured_mac_len().unwrap_or(12);
    if got.maclen != want_mac {
        bad.push(format!("maclen {} instead of {want_mac}", got.maclen));
    }
    let mut want_flags = 0;
    if sel.vrf.is_some() {
        want_flags |= uapi::TCP_AO_KEYF_IFINDEX;
    }
    if !key.includes_options() {
        want_flags |= uapi::TCP_AO_KEYF_EXCLUDE_OPT;
    }
    if got.keyflags != want_flags {
        bad.push(format!(
            "keyflags {:#x} instead of {want_flags:#x}",
            got.keyflags
        ));
    }
    let want_ifindex = sel.vrf.unwrap_or(0) as i32;
    if got.ifindex != want_ifindex {
        bad.push(format!("ifindex {} instead of {want_ifindex}", got.ifindex));
    }
    let want_prefix = sel.peer.prefix_len();
    if got.prefix != want_prefix {
        bad.push(format!("prefix {} instead of {want_prefix}", got.prefix));
    }
    if closed {
        let (c, r) = key.selects();
        if got.is_current != c || got.is_rnext != r {
            bad.push(format!(
                "current/rnext {}/{} instead of {c}/{r}",
                got.is_current, got.is_rnext
            ));
        }
    }
    if closed && (got.pkt_good != 0 || got.pkt_bad != 0) {
        bad.push(format!(
            "counters {}/{} on a key that saw no traffic",
            got.pkt_good, got.pkt_bad
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{id} read back with TCP_AO_GET_KEYS differs from what was added: {}",
            bad.join(", ")
        ))
    }
}

/// Read `key` back (GET_KEYS filtered by its address, prefix and IDs: exactly one key) and
/// compare every field (kernel `test_verify_socket_key`). `closed`: the socket saw no
/// traffic, so also compare current/rnext and require zero counters.
pub(crate) fn verify_key(sk: &impl AsFd, key: &AoKey, password: &[u8], closed: bool) -> PeerResult {
    let sel = key.selector();
    let got = typed_ok(
        &format!("reading back key {}:{}", sel.send_id, sel.recv_id),
        sk.ao_keys(&KeyFilter::Key(sel)),
    )?;
    if got.len() != 1 {
        return Err(failure!(
            "reading back key {}:{} returned {} keys instead of one",
            sel.send_id,
            sel.recv_id,
            got.len()
        ));
    }
    // Field-by-field through the raw dump (the typed view folds algorithm names).
    let all = expect_ok("getsockopt(TCP_AO_GET_KEYS) get_all", dump_all(sk))?;
    let Some(d) = all.iter().find(|d| {
        d.sndid == sel.send_id
            && d.rcvid == sel.recv_id
            && d.prefix == sel.peer.prefix_len()
            && d.ifindex == sel.vrf.unwrap_or(0) as i32
            && peer_of(d) == sel.peer.addr()
    }) else {
        return Err(failure!(
            "key {}:{} for {} is missing from the get_all dump",
            sel.send_id,
            sel.recv_id,
            sel.peer
        ));
    };
    compare_key(d, key, password, closed).map_err(Failure::Fail)
}

/// The peer address of a dumped key (`None` for the any-address); v4-mapped folded to IPv4.
pub(crate) fn peer_of(d: &DumpedKey) -> Option<IpAddr> {
    let a = match i32::from(d.family) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::new(d.addr[2], d.addr[3], d.addr[4], d.addr[5])),
        libc::AF_INET6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&d.addr[6..22]);
            let a = Ipv6Addr::from(o);
            a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4)
        }
        _ => return None,
    };
    (!a.is_unspecified()).then_some(a)
}

/// Add `key` with the typed API and verify it (kernel `test_add_key` + verify).
pub(crate) fn add_verified(sk: &impl AsFd, key: &AoKey, password: &[u8]) -> PeerResult {
    let sel = key.selector();
    typed_ok(
        &format!(
            "setsockopt(TCP_AO_ADD_KEY) of key {}:{}",
            sel.send_id, sel.recv_id
        ),
        sk.add_ao_key(key),
    )?;
    verify_key(sk, key, password, false)
}

fn socket(s: &Solo) -> PeerResult<Socket> {
    sockets::tcp_socket(s.family())
}

/// A socket with the default key 100:100 for the remote address (kernel `prepare_defs`).
fn socket_with_default_key(s: &Solo) -> PeerResult<Socket> {
    let sk = socket(s)?;
    add_verified(
        &sk,
        &default_key(s.remote_addr(), 100, 100)?,
        DEFAULT_TEST_PASSWORD.as_bytes(),
    )?;
    Ok(sk)
}

/// Bind to this namespace's address on a kernel-chosen port and listen (kernel
/// `make_listen`).
pub(crate) fn make_listen(s: &Solo, sk: &Socket) -> PeerResult {
    sk.bind(&SockAddr::from(std::net::SocketAddr::new(
        s.local_addr(),
        0,
    )))
    .or_fail("bind() failed")?;
    sk.listen(1).or_fail("listen() failed")
}

fn setopt(sk: &Socket, name: i32, r: &Raw, len: Option<u32>) -> io::Result<()> {
    raw::setsockopt_bytes(sk, SOL_TCP, name, Some(&r.0), len)
}

/// The raw `tcp_ao_del` for the default key (kernel `prepare_defs(TCP_AO_DEL_KEY)`).
fn default_del(s: &Solo) -> Raw {
    let mut r = Raw::zeroed(DEL_SIZE);
    r.sockaddr(0, af(s.family()), Some(s.remote_addr()), 0)
        .u8(DEL_PREFIX, host_prefix(s.family()))
        .u8(DEL_SNDID, 100)
        .u8(DEL_RCVID, 100);
    r
}

/// A raw `tcp_ao_getsockopt` filter for `get_all` with room for one key.
fn default_get() -> Raw {
    let mut r = Raw::zeroed(GET_SIZE);
    r.u32(GET_NKEYS, 1).or_u16(GET_BITS, GET_GET_ALL);
    r
}

fn sel(s: &Solo, send_id: u8, recv_id: u8) -> PeerResult<KeySelector> {
    Ok(KeySelector::new(
        PeerPrefix::host(s.remote_addr()).or_fail("invalid prefix")?,
        send_id,
        recv_id,
    ))
}

/// The keys on the socket, as `(sndid, rcvid)` pairs, sorted.
fn key_ids(sk: &impl AsFd) -> PeerResult<Vec<(u8, u8)>> {
    let mut v: Vec<(u8, u8)> = expect_ok("getsockopt(TCP_AO_GET_KEYS) get_all", dump_all(sk))?
        .iter()
        .map(|d| (d.sndid, d.rcvid))
        .collect();
    v.sort_unstable();
    Ok(v)
}

// ---------------------------------------------------------------------------------------
// Registration.
// ---------------------------------------------------------------------------------------

type Body = fn(&Solo) -> PeerResult;

fn case(name: &str, body: Body) -> Vec<Test> {
    SoloTest::new(PROGRAM, name).ao().build(body)
}

/// The program's tests.
pub fn tests() -> Vec<Test> {
    let cases: &[(&str, Body)] = &[
        // Extensible-struct checks (18).
        ("ao-add-minimum-size", ao_add_minimum_size),
        ("ao-add-extended-size", ao_add_extended_size),
        ("ao-add-null-optval", ao_add_null_optval),
        ("ao-del-minimum-size", ao_del_minimum_size),
        ("ao-del-extended-size", ao_del_extended_size),
        ("ao-del-null-optval", ao_del_null_optval),
        ("ao-set-info-minimum-size", ao_set_info_minimum_size),
        ("ao-set-info-extended-size", ao_set_info_extended_size),
        ("ao-info-get-extended-size", ao_info_get_extended_size),
        ("ao-set-info-null-optval", ao_set_info_null_optval),
        ("ao-get-info-minimum-size", ao_get_info_minimum_size),
        ("ao-get-info-extended-size", ao_get_info_extended_size),
        ("ao-get-info-null-optval", ao_get_info_null_optval),
        ("ao-get-info-null-optlen", ao_get_info_null_optlen),
        ("ao-get-keys-minimum-size", ao_get_keys_minimum_size),
        ("ao-get-keys-extended-size", ao_get_keys_extended_size),
        ("ao-get-keys-null-optval", ao_get_keys_null_optval),
        ("ao-get-keys-null-optlen", ao_get_keys_null_optlen),
        // key add (22).
        ("key-add-too-big-keylen", add_too_big_keylen),
        ("key-add-using-reserved-padding", add_reserved),
        ("key-add-using-reserved2-padding", add_reserved2),
        ("key-add-wrong-address-family", add_wrong_family_upstream),
        ("key-add-port-unsupported", add_port),
        ("key-add-no-prefix-addr", add_no_prefix_addr),
        ("key-add-no-prefix-any-addr", add_no_prefix_any_addr),
        ("key-add-prefix-any-addr", add_prefix_any_addr),
        ("key-add-too-big-prefix", add_too_big_prefix),
        ("key-add-too-short-prefix", add_too_short_prefix),
        ("key-add-bad-key-flags", add_bad_key_flags),
        ("key-add-current-key-on-a-listen-socket", |s| {
            add_on_listen(s, true, false)
        }),
        ("key-add-rnext-key-on-a-listen-socket", |s| {
            add_on_listen(s, false, true)
        }),
        ("key-add-current-rnext-key-on-a-listen-socket", |s| {
            add_on_listen(s, true, true)
        }),
        ("key-add-and-set-as-current", |s| {
            add_and_set(s, true, false)
        }),
        ("key-add-and-set-as-rnext", |s| add_and_set(s, false, true)),
        ("key-add-and-set-as-current-rnext", |s| {
            add_and_set(s, true, true)
        }),
        (
            "key-add-ifindex-without-keyf-ifindex",
            add_ifindex_without_flag,
        ),
        ("key-add-non-existent-vrf", add_non_existent_vrf),
        ("key-add-optmem-limit", add_optmem_limit),
        ("key-add-maclen-bigger-than-tcp-hdr", add_maclen_too_big),
        ("key-add-bad-algo", add_bad_algo),
        // key del (22).
        ("key-del-using-reserved-padding", del_reserved),
        ("key-del-using-reserved2-padding", del_reserved2),
        ("key-del-and-set-current-key-on-a-listen-socket", |s| {
            del_on_listen(s, true, false)
        }),
        ("key-del-and-set-rnext-key-on-a-listen-socket", |s| {
            del_on_listen(s, false, true)
        }),
        (
            "key-del-and-set-current-rnext-key-on-a-listen-socket",
            |s| del_on_listen(s, true, true),
        ),
        ("key-del-bad-key-flags", del_bad_key_flags),
        (
            "key-del-ifindex-without-keyf-ifindex",
            del_ifindex_without_flag,
        ),
        ("key-del-non-existent-vrf", del_non_existent_vrf),
        ("key-del-set-non-existing-current-key", |s| {
            del_set_missing(s, true, false)
        }),
        ("key-del-set-non-existing-rnext-key", |s| {
            del_set_missing(s, false, true)
        }),
        ("key-del-set-non-existing-current-rnext-key", |s| {
            del_set_missing(s, true, true)
        }),
        ("key-del-set-current-key", |s| {
            del_set_existing(s, true, false)
        }),
        ("key-del-set-rnext-key", |s| {
            del_set_existing(s, false, true)
        }),
        ("key-del-set-current-rnext-key", |s| {
            del_set_existing(s, true, true)
        }),
        ("key-del-set-as-current-key-to-be-removed", |s| {
            del_set_self(s, true, false)
        }),
        ("key-del-set-as-rnext-key-to-be-removed", |s| {
            del_set_self(s, false, true)
        }),
        ("key-del-set-as-current-rnext-key-to-be-removed", |s| {
            del_set_self(s, true, true)
        }),
        ("key-del-async-on-non-listen", del_async_non_listen),
        ("key-del-non-existing-sndid", |s| {
            del_wrong(s, 101, 100, false)
        }),
        ("key-del-non-existing-rcvid", |s| {
            del_wrong(s, 100, 101, false)
        }),
        ("key-del-incorrect-addr", |s| del_wrong(s, 100, 100, true)),
        ("key-del-correct-key-delete", del_correct),
        // AO info set (16) and the get-back checks (7).
        ("ao-info-set-current-key-on-a-listen-socket", |s| {
            info_on_listen(s, true, false)
        }),
        ("ao-info-set-rnext-key-on-a-listen-socket", |s| {
            info_on_listen(s, false, true)
        }),
        ("ao-info-set-current-rnext-key-on-a-listen-socket", |s| {
            info_on_listen(s, true, true)
        }),
        ("ao-info-set-using-reserved-padding", info_reserved),
        ("ao-info-set-using-reserved2-padding", info_reserved2),
        ("ao-info-set-accept-icmps", |s| {
            info_flag(s, false, Flag::AcceptIcmps)
        }),
        ("ao-info-get-accept-icmps", |s| {
            info_flag(s, true, Flag::AcceptIcmps)
        }),
        ("ao-info-set-ao-required", |s| {
            info_flag(s, false, Flag::AoRequired)
        }),
        ("ao-info-get-ao-required", |s| {
            info_flag(s, true, Flag::AoRequired)
        }),
        ("ao-info-set-set-non-existing-current-key", |s| {
            info_missing(s, true, false)
        }),
        ("ao-info-set-set-non-existing-rnext-key", |s| {
            info_missing(s, false, true)
        }),
        ("ao-info-set-set-non-existing-current-rnext-key", |s| {
            info_missing(s, true, true)
        }),
        ("ao-info-set-set-current-key", |s| {
            info_set_keys(s, false, true, false)
        }),
        ("ao-info-get-set-current-key", |s| {
            info_set_keys(s, true, true, false)
        }),
        ("ao-info-set-set-rnext-key", |s| {
            info_set_keys(s, false, false, true)
        }),
        ("ao-info-get-set-rnext-key", |s| {
            info_set_keys(s, true, false, true)
        }),
        ("ao-info-set-set-current-rnext-key", |s| {
            info_set_keys(s, false, true, true)
        }),
        ("ao-info-get-set-current-rnext-key", |s| {
            info_set_keys(s, true, true, true)
        }),
        ("ao-info-set-set-counters", |s| info_counters(s, false)),
        ("ao-info-get-set-counters", |s| info_counters(s, true)),
        ("ao-info-set-no-op", |s| info_noop(s, false)),
        ("ao-info-get-no-op", |s| info_noop(s, true)),
        // get keys (28).
        ("get-keys-no-ao-info", get_keys_no_ao_info),
        ("get-keys-proper-tcp-ao-get-mkts", get_keys_proper),
        ("get-keys-set-out-only-pkt-good-counter", |s| {
            get_keys_einval(s, GetBad::PktGood)
        }),
        ("get-keys-set-out-only-pkt-bad-counter", |s| {
            get_keys_einval(s, GetBad::PktBad)
        }),
        ("get-keys-bad-keyflags", |s| {
            get_keys_einval(s, GetBad::KeyFlags)
        }),
        ("get-keys-ifindex-without-keyf-ifindex", |s| {
            get_keys_einval(s, GetBad::Ifindex)
        }),
        ("get-keys-using-reserved-field", |s| {
            get_keys_einval(s, GetBad::Reserved)
        }),
        ("get-keys-no-prefix-addr", |s| {
            get_keys_einval(s, GetBad::NoPrefixAddr)
        }),
        ("get-keys-no-prefix-any-addr", get_keys_no_prefix_any),
        ("get-keys-prefix-any-addr", |s| {
            get_keys_einval(s, GetBad::PrefixAnyAddr)
        }),
        ("get-keys-too-big-prefix", |s| {
            get_keys_einval(s, GetBad::TooBigPrefix)
        }),
        ("get-keys-too-short-prefix", |s| {
            get_keys_einval(s, GetBad::TooShortPrefix)
        }),
        ("get-keys-prefix-addr", get_keys_prefix_addr),
        ("get-keys-get-all-prefix", |s| {
            get_keys_einval(s, GetBad::Mode(GET_GET_ALL, Sel::Prefix))
        }),
        ("get-keys-get-all-addr", |s| {
            get_keys_einval(s, GetBad::Mode(GET_GET_ALL, Sel::Addr))
        }),
        ("get-keys-get-all-sndid", |s| {
            get_keys_einval(s, GetBad::Mode(GET_GET_ALL, Sel::SndId))
        }),
        ("get-keys-get-all-rcvid", |s| {
            get_keys_einval(s, GetBad::Mode(GET_GET_ALL, Sel::RcvId))
        }),
        ("get-keys-current-prefix", |s| {
            get_keys_einval(s, GetBad::Mode(GET_IS_CURRENT, Sel::Prefix))
        }),
        ("get-keys-current-addr", |s| {
            get_keys_einval(s, GetBad::Mode(GET_IS_CURRENT, Sel::Addr))
        }),
        ("get-keys-current-sndid", |s| {
            get_keys_einval(s, GetBad::Mode(GET_IS_CURRENT, Sel::SndId))
        }),
        ("get-keys-current-rcvid", |s| {
            get_keys_einval(s, GetBad::Mode(GET_IS_CURRENT, Sel::RcvId))
        }),
        ("get-keys-rnext-prefix", |s| {
            get_keys_einval(s, GetBad::Mode(GET_IS_RNEXT, Sel::Prefix))
        }),
        ("get-keys-rnext-addr", |s| {
            get_keys_einval(s, GetBad::Mode(GET_IS_RNEXT, Sel::Addr))
        }),
        ("get-keys-rnext-sndid", |s| {
            get_keys_einval(s, GetBad::Mode(GET_IS_RNEXT, Sel::SndId))
        }),
        ("get-keys-rnext-rcvid", |s| {
            get_keys_einval(s, GetBad::Mode(GET_IS_RNEXT, Sel::RcvId))
        }),
        ("get-keys-get-all-current", |s| {
            get_keys_einval(s, GetBad::Mode(GET_GET_ALL | GET_IS_CURRENT, Sel::None))
        }),
        ("get-keys-get-all-rnext", |s| {
            get_keys_einval(s, GetBad::Mode(GET_GET_ALL | GET_IS_RNEXT, Sel::None))
        }),
        ("get-keys-current-rnext", get_keys_current_rnext),
        // filter keys (5).
        ("filter-keys-by-sndid-rcvid-address", |s| {
            filter_keys(s, Filter::IdsAndAddress)
        }),
        ("filter-keys-by-is-current", |s| {
            filter_keys(s, Filter::Current)
        }),
        ("filter-keys-by-is-rnext", |s| filter_keys(s, Filter::RNext)),
        ("filter-keys-by-sndid-rcvid", |s| {
            filter_keys(s, Filter::Ids)
        }),
        ("filter-keys-correct-nkeys-when-in-nkeys-lt-matches", |s| {
            filter_keys(s, Filter::Truncated)
        }),
        // key add: duplicate (7).
        ("key-add-duplicate-full-copy", |s| {
            duplicate(s, Dup::FullCopy)
        }),
        ("key-add-duplicate-any-addr-key-on-the-socket", |s| {
            duplicate(s, Dup::AnyOnSocket)
        }),
        ("key-add-duplicate-add-any-addr-key", |s| {
            duplicate(s, Dup::AddAny)
        }),
        ("key-add-duplicate-add-any-addr-for-the-same-subnet", |s| {
            duplicate(s, Dup::Subnet)
        }),
        ("key-add-duplicate-full-copy-of-a-key", |s| {
            duplicate(s, Dup::FullCopy)
        }),
        ("key-add-duplicate-recvid-differs", |s| {
            duplicate(s, Dup::RecvIdDiffers)
        }),
        ("key-add-duplicate-sendid-differs", |s| {
            duplicate(s, Dup::SendIdDiffers)
        }),
        // Ours alone.
        ("key-add-wrong-address-family-other-inet", |s| {
            add_wrong_family(s, WrongAf::OtherInet)
        }),
        ("key-add-wrong-address-family-unix", |s| {
            add_wrong_family(s, WrongAf::Unix)
        }),
        (
            "key-add-peer-of-the-other-family-typed",
            add_other_family_typed,
        ),
        ("ao-add-nonzero-trailing-bytes", |s| e2big(s, Opt::Add)),
        ("ao-del-nonzero-trailing-bytes", |s| e2big(s, Opt::Del)),
        ("ao-set-info-nonzero-trailing-bytes", |s| {
            e2big(s, Opt::SetInfo)
        }),
        ("ao-get-info-nonzero-trailing-bytes", |s| {
            e2big(s, Opt::GetInfo)
        }),
        ("ao-get-keys-nonzero-trailing-bytes", |s| {
            e2big(s, Opt::GetKeys)
        }),
        ("key-del-ipv4-mapped-address", del_v4_mapped),
        ("key-del-address-family-not-checked", del_family_unchecked),
        (
            "ao-info-set-raw-set-current-clears-ao-required",
            info_rmw_trap_raw,
        ),
        ("ao-info-set-typed-set-current-keeps-flags", info_rmw_typed),
    ];
    let mut v: Vec<Test> = cases.iter().flat_map(|(n, b)| case(n, *b)).collect();
    // MD5 and VRF cases declare their extra features.
    v.extend(
        SoloTest::new(PROGRAM, "ao-info-set-ao-required-with-md5-key")
            .ao()
            .requires(&[Feature::TcpMd5])
            .build(info_required_with_md5),
    );
    v.extend(
        SoloTest::new(PROGRAM, "key-del-vrf-bound-key")
            .ao()
            .vrf()
            .build(|s| del_vrf_key(s, true)),
    );
    v.extend(
        SoloTest::new(PROGRAM, "key-del-default-vrf-key")
            .ao()
            .vrf()
            .build(|s| del_vrf_key(s, false)),
    );
    v
}

// ---------------------------------------------------------------------------------------
// Extensible structs.
// ---------------------------------------------------------------------------------------

const EXTEND: usize = 800;

fn ao_add_minimum_size(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    let r = default_add(s);
    expect_errno(
        "AO add: minimum size (optlen = offsetof(key))",
        setopt(&sk, TCP_AO_ADD_KEY, &r, Some(ADD_KEY as u32)),
        libc::EINVAL,
    )
}

fn ao_add_extended_size(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    let mut r = default_add(s);
    r.extend(EXTEND);
    expect_ok(
        "AO add: extended size",
        setopt(&sk, TCP_AO_ADD_KEY, &r, None),
    )?;
    verify_key(
        &sk,
        &default_key(s.remote_addr(), 100, 100)?,
        DEFAULT_TEST_PASSWORD.as_bytes(),
        true,
    )
}

fn ao_add_null_optval(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    expect_errno(
        "AO add: null optval",
        raw::setsockopt_bytes(
            &sk,
            SOL_TCP,
            TCP_AO_ADD_KEY,
            None,
            Some((ADD_SIZE + EXTEND) as u32),
        ),
        libc::EFAULT,
    )
}

fn ao_del_minimum_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_errno(
        "AO del: minimum size (optlen = offsetof(keyflags))",
        setopt(
            &sk,
            TCP_AO_DEL_KEY,
            &default_del(s),
            Some(DEL_KEYFLAGS as u32),
        ),
        libc::EINVAL,
    )?;
    expect_present(&sk, &[(100, 100)])
}

fn expect_present(sk: &Socket, want: &[(u8, u8)]) -> PeerResult {
    let got = key_ids(sk)?;
    let mut want = want.to_vec();
    want.sort_unstable();
    if got != want {
        return Err(failure!(
            "the socket has keys {got:?}, {want:?} were expected"
        ));
    }
    Ok(())
}

fn ao_del_extended_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut r = default_del(s);
    r.extend(EXTEND);
    expect_ok(
        "AO del: extended size",
        setopt(&sk, TCP_AO_DEL_KEY, &r, None),
    )?;
    expect_present(&sk, &[])
}

fn ao_del_null_optval(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_errno(
        "AO del: null optval",
        raw::setsockopt_bytes(
            &sk,
            SOL_TCP,
            TCP_AO_DEL_KEY,
            None,
            Some((DEL_SIZE + EXTEND) as u32),
        ),
        libc::EFAULT,
    )
}

fn ao_set_info_minimum_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_errno(
        "AO set info: minimum size (optlen = offsetof(pkt_dropped_icmp))",
        setopt(
            &sk,
            TCP_AO_INFO,
            &Raw::zeroed(INFO_SIZE),
            Some(INFO_DROPPED_ICMP as u32),
        ),
        libc::EINVAL,
    )
}

fn ao_set_info_extended_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut r = Raw::zeroed(INFO_SIZE);
    r.extend(EXTEND);
    expect_ok(
        "AO set info: extended size",
        setopt(&sk, TCP_AO_INFO, &r, None),
    )
}

fn ao_info_get_extended_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut r = Raw::zeroed(INFO_SIZE);
    r.extend(EXTEND);
    expect_ok(
        "AO set info: extended size",
        setopt(&sk, TCP_AO_INFO, &r, None),
    )?;
    check_info(&sk, &Raw::zeroed(INFO_SIZE), "AO info get: extended size")
}

fn ao_set_info_null_optval(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_errno(
        "AO set info: null optval",
        raw::setsockopt_bytes(
            &sk,
            SOL_TCP,
            TCP_AO_INFO,
            None,
            Some((INFO_SIZE + EXTEND) as u32),
        ),
        libc::EFAULT,
    )
}

fn getopt(sk: &Socket, name: i32, buf: Option<&mut [u8]>, len: OptLen) -> io::Result<Option<i32>> {
    raw::getsockopt_bytes(sk, SOL_TCP, name, buf, len)
}

fn ao_get_info_minimum_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = vec![0u8; INFO_SIZE];
    expect_errno(
        "AO get info: minimum size (optlen = -1)",
        getopt(&sk, TCP_AO_INFO, Some(&mut b), OptLen::Value(-1)),
        libc::EINVAL,
    )
}

fn ao_get_info_extended_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = vec![0u8; INFO_SIZE + EXTEND];
    let len = expect_ok(
        "AO get info: extended size",
        getopt(&sk, TCP_AO_INFO, Some(&mut b), OptLen::Buffer),
    )?;
    s.diag(format!("getsockopt(TCP_AO_INFO) left optlen at {len:?}"));
    if b[INFO_SIZE..].iter().any(|&x| x != 0) {
        return Err(failure!(
            "AO get info: extended size: the kernel wrote past the {INFO_SIZE}-byte struct"
        ));
    }
    Ok(())
}

fn ao_get_info_null_optval(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_errno(
        "AO get info: null optval",
        getopt(
            &sk,
            TCP_AO_INFO,
            None,
            OptLen::Value((INFO_SIZE + EXTEND) as i32),
        ),
        libc::EFAULT,
    )
}

fn ao_get_info_null_optlen(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = vec![0u8; INFO_SIZE + EXTEND];
    expect_errno(
        "AO get info: null optlen",
        getopt(&sk, TCP_AO_INFO, Some(&mut b), OptLen::Null),
        libc::EFAULT,
    )
}

fn ao_get_keys_minimum_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = default_get().0.clone();
    expect_errno(
        "AO get keys: minimum size (optlen = -1)",
        getopt(&sk, TCP_AO_GET_KEYS, Some(&mut b), OptLen::Value(-1)),
        libc::EINVAL,
    )
}

fn ao_get_keys_extended_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = default_get().0.clone();
    b.resize(GET_SIZE + EXTEND, 0);
    let len = expect_ok(
        "AO get keys: extended size",
        getopt(&sk, TCP_AO_GET_KEYS, Some(&mut b), OptLen::Buffer),
    )?;
    if len != Some(GET_SIZE as i32) {
        return Err(failure!(
            "AO get keys: extended size: get keys returned optlen {len:?}, not sizeof(struct tcp_ao_getsockopt) = {GET_SIZE}"
        ));
    }
    let k = parse_dumped(&b[..GET_SIZE]);
    let nkeys = u32::from_ne_bytes([
        b[GET_NKEYS],
        b[GET_NKEYS + 1],
        b[GET_NKEYS + 2],
        b[GET_NKEYS + 3],
    ]);
    zeroize::Zeroize::zeroize(&mut b);
    if nkeys != 1 || (k.sndid, k.rcvid) != (100, 100) {
        return Err(failure!(
            "AO get keys: extended size: got {nkeys} keys, first {k:?}; the key 100:100 was expected"
        ));
    }
    Ok(())
}

fn ao_get_keys_null_optval(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_errno(
        "AO get keys: null optval",
        getopt(
            &sk,
            TCP_AO_GET_KEYS,
            None,
            OptLen::Value((GET_SIZE + EXTEND) as i32),
        ),
        libc::EFAULT,
    )
}

fn ao_get_keys_null_optlen(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = default_get().0.clone();
    expect_errno(
        "AO get keys: null optlen",
        getopt(&sk, TCP_AO_GET_KEYS, Some(&mut b), OptLen::Null),
        libc::EFAULT,
    )
}

#[derive(Clone, Copy)]
enum Opt {
    Add,
    Del,
    SetInfo,
    GetInfo,
    GetKeys,
}

/// `copy_struct_from_sockptr`: a longer struct whose extra bytes are not zero is `E2BIG`.
fn e2big(s: &Solo, opt: Opt) -> PeerResult {
    let what = "a struct longer than the kernel's with a non-zero trailing byte";
    match opt {
        Opt::Add => {
            let sk = socket(s)?;
            let mut r = default_add(s);
            r.extend(EXTEND);
            r.0[ADD_SIZE + 17] = 1;
            expect_errno(
                &format!("AO add: {what}"),
                setopt(&sk, TCP_AO_ADD_KEY, &r, None),
                libc::E2BIG,
            )?;
            expect_errno(
                "AO add: the key must not have been added",
                sk.ao_keys(&KeyFilter::All)
                    .map_err(|e| io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(0))),
                libc::ENOENT,
            )
        }
        Opt::Del => {
            let sk = socket_with_default_key(s)?;
            let mut r = default_del(s);
            r.extend(EXTEND);
            r.0[DEL_SIZE + EXTEND - 1] = 0xff;
            expect_errno(
                &format!("AO del: {what}"),
                setopt(&sk, TCP_AO_DEL_KEY, &r, None),
                libc::E2BIG,
            )?;
            expect_present(&sk, &[(100, 100)])
        }
        Opt::SetInfo => {
            let sk = socket_with_default_key(s)?;
            let mut r = Raw::zeroed(INFO_SIZE);
            r.or_u32(INFO_BITS, INFO_AO_REQUIRED);
            r.extend(EXTEND);
            r.0[INFO_SIZE] = 1;
            expect_errno(
                &format!("AO set info: {what}"),
                setopt(&sk, TCP_AO_INFO, &r, None),
                libc::E2BIG,
            )?;
            let info = typed_ok("getsockopt(TCP_AO_INFO)", sk.ao_info())?;
            if info.is_some_and(|i| i.ao_required) {
                return Err(failure!("AO set info: the refused call set ao_required"));
            }
            Ok(())
        }
        Opt::GetInfo => {
            let sk = socket_with_default_key(s)?;
            let mut b = vec![0u8; INFO_SIZE + EXTEND];
            b[INFO_SIZE + 3] = 7;
            expect_errno(
                &format!("AO get info: {what}"),
                getopt(&sk, TCP_AO_INFO, Some(&mut b), OptLen::Buffer),
                libc::E2BIG,
            )
        }
        Opt::GetKeys => {
            let sk = socket_with_default_key(s)?;
            let mut b = default_get().0.clone();
            b.resize(GET_SIZE + EXTEND, 0);
            b[GET_SIZE + 100] = 1;
            expect_errno(
                &format!("AO get keys: {what}"),
                getopt(&sk, TCP_AO_GET_KEYS, Some(&mut b), OptLen::Buffer),
                libc::E2BIG,
            )
        }
    }
}

// ---------------------------------------------------------------------------------------
// key add.
// ---------------------------------------------------------------------------------------

fn add_expect(s: &Solo, what: &str, f: impl FnOnce(&mut Raw), errno: i32) -> PeerResult {
    let sk = socket(s)?;
    let mut r = default_add(s);
    f(&mut r);
    expect_errno(
        &format!("key add: {what}"),
        setopt(&sk, TCP_AO_ADD_KEY, &r, None),
        errno,
    )?;
    // Nothing may have been created.
    match sk.ao_info() {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(failure!(
            "key add: {what}: the refused call left TCP-AO state on the socket"
        )),
        Err(e) => Err(failure!("getsockopt(TCP_AO_INFO) failed: {e}")),
    }
}

fn add_too_big_keylen(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "too big keylen",
        |r| {
            r.u8(ADD_KEYLEN, (uapi::TCP_AO_MAXKEYLEN + 1) as u8);
        },
        libc::EINVAL,
    )?;
    expect_error(
        "typed API: an 81-byte key",
        MasterKey::new(&[0x42; uapi::TCP_AO_MAXKEYLEN + 1]),
        "InvalidArgument before any system call",
        |e| matches!(e, Error::InvalidArgument { field: "key", .. }),
    )
}

fn add_reserved(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "using reserved padding",
        |r| {
            r.or_u32(ADD_BITS, bit(2, 32));
        },
        libc::EINVAL,
    )
}

fn add_reserved2(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "using reserved2 padding",
        |r| {
            r.u16(ADD_RESERVED2, 1);
        },
        libc::EINVAL,
    )
}

/// Upstream's "wrong address family": it sets `AF_UNIX`, then overwrites the whole address
/// with the any-address of the test's family, so what it really checks is a prefix with the
/// any-address. Reproduced as is; the real family checks are ours below.
fn add_wrong_family_upstream(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "wrong address family (upstream: AF_UNIX overwritten by the any-address)",
        |r| {
            r.u16(0, libc::AF_UNIX as u16);
            r.sockaddr(0, af(s.family()), None, 0);
        },
        libc::EINVAL,
    )
}

#[derive(Clone, Copy)]
enum WrongAf {
    OtherInet,
    Unix,
}

fn add_wrong_family(s: &Solo, w: WrongAf) -> PeerResult {
    let other = match s.family() {
        Family::Ipv4 => Family::Ipv6,
        Family::Ipv6 => Family::Ipv4,
    };
    match w {
        WrongAf::OtherInet => add_expect(
            s,
            &format!(
                "an {} address on an {} socket",
                other.name(),
                s.family().name()
            ),
            |r| {
                r.sockaddr(0, af(other), Some(other.server_addr()), 0)
                    .u8(ADD_PREFIX, other.host_prefix());
            },
            libc::EINVAL,
        ),
        WrongAf::Unix => add_expect(
            s,
            "ss_family AF_UNIX around a valid address",
            |r| {
                r.u16(0, libc::AF_UNIX as u16);
            },
            libc::EINVAL,
        ),
    }
}

/// The typed API with a peer of the other family: refused before the kernel on IPv4
/// sockets; on IPv6 sockets an IPv4 peer becomes a v4-mapped key the kernel stores as IPv4.
fn add_other_family_typed(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    match s.family() {
        Family::Ipv4 => {
            let key = default_key(Family::Ipv6.server_addr(), 100, 100)?;
            expect_error(
                "typed API: an IPv6 peer on an IPv4 socket",
                sk.add_ao_key(&key),
                "InvalidArgument (peer) before any system call",
                |e| matches!(e, Error::InvalidArgument { field: "peer", .. }),
            )?;
            match sk.ao_info() {
                Ok(None) => Ok(()),
                other => Err(failure!("the refused key left TCP-AO state: {other:?}")),
            }
        }
        Family::Ipv6 => {
            let key = default_key(Family::Ipv4.server_addr(), 100, 100)?;
            add_verified(&sk, &key, DEFAULT_TEST_PASSWORD.as_bytes())?;
            let all = expect_ok("dump", dump_all(&sk))?;
            let fam = all.first().map(|d| d.family);
            if fam != Some(libc::AF_INET as u16) || all[0].prefix != 32 {
                return Err(failure!(
                    "the v4-mapped key was reported with family {fam:?} prefix {:?}, AF_INET /32 expected",
                    all.first().map(|d| d.prefix)
                ));
            }
            Ok(())
        }
    }
}

fn add_port(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "port (unsupported)",
        |r| {
            r.sockaddr(0, af(s.family()), Some(s.remote_addr()), 1234);
        },
        libc::EINVAL,
    )
}

fn add_no_prefix_addr(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "no prefix, addr",
        |r| {
            r.u8(ADD_PREFIX, 0);
        },
        libc::EINVAL,
    )?;
    expect_error(
        "typed API: prefix 0 with an address",
        PeerPrefix::new(s.remote_addr(), 0),
        "InvalidArgument (prefix)",
        |e| {
            matches!(
                e,
                Error::InvalidArgument {
                    field: "prefix",
                    ..
                }
            )
        },
    )
}

fn add_no_prefix_any_addr(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    let key = AoKey::new(
        PeerPrefix::any(),
        100,
        100,
        Algorithm::AesCmac128,
        MasterKey::new(DEFAULT_TEST_PASSWORD.as_bytes()).or_fail("key")?,
    );
    add_verified(&sk, &key, DEFAULT_TEST_PASSWORD.as_bytes())
}

fn add_prefix_any_addr(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "prefix, any addr",
        |r| {
            r.u8(ADD_PREFIX, 32);
            r.sockaddr(0, af(s.family()), None, 0);
        },
        libc::EINVAL,
    )?;
    expect_error(
        "typed API: the any-address with a prefix",
        PeerPrefix::new(s.family().any_addr(), 32),
        "InvalidArgument (peer)",
        |e| matches!(e, Error::InvalidArgument { field: "peer", .. }),
    )
}

fn add_too_big_prefix(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "too big prefix",
        |r| {
            r.u8(ADD_PREFIX, 129);
        },
        libc::EINVAL,
    )?;
    expect_error(
        "typed API: prefix 129",
        PeerPrefix::new(s.remote_addr(), 129),
        "InvalidArgument (prefix)",
        |e| {
            matches!(
                e,
                Error::InvalidArgument {
                    field: "prefix",
                    ..
                }
            )
        },
    )
}

fn add_too_short_prefix(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "too short prefix",
        |r| {
            r.u8(ADD_PREFIX, 2);
        },
        libc::EINVAL,
    )?;
    expect_error(
        "typed API: prefix 2 with host bits",
        PeerPrefix::new(s.remote_addr(), 2),
        "InvalidArgument (peer)",
        |e| matches!(e, Error::InvalidArgument { field: "peer", .. }),
    )
}

fn add_bad_key_flags(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "bad key flags",
        |r| {
            r.u8(ADD_KEYFLAGS, 0xff);
        },
        libc::EINVAL,
    )
}

fn add_on_listen(s: &Solo, current: bool, rnext: bool) -> PeerResult {
    let sk = socket(s)?;
    make_listen(s, &sk)?;
    let key = default_key(s.remote_addr(), 100, 100)?
        .set_current(current)
        .set_rnext(rnext);
    expect_error(
        "key add: set current/rnext on a listen socket",
        sk.add_ao_key(&key),
        "Error::Os with EINVAL",
        |e| is_os(e, libc::EINVAL),
    )
}

fn add_and_set(s: &Solo, current: bool, rnext: bool) -> PeerResult {
    let sk = socket(s)?;
    let key = default_key(s.remote_addr(), 100, 100)?
        .set_current(current)
        .set_rnext(rnext);
    typed_ok(
        "key add: add key and set as current/rnext",
        sk.add_ao_key(&key),
    )?;
    verify_key(&sk, &key, DEFAULT_TEST_PASSWORD.as_bytes(), true)?;
    let info = typed_ok("getsockopt(TCP_AO_INFO)", sk.ao_info())?
        .ok_or_else(|| failure!("no TCP-AO state after adding a key"))?;
    let want = (current.then_some(100), rnext.then_some(100));
    if (info.current_key, info.rnext_key) != want {
        return Err(failure!(
            "TCP_AO_INFO reports current/rnext {:?}/{:?}, expected {:?}/{:?}",
            info.current_key,
            info.rnext_key,
            want.0,
            want.1
        ));
    }
    Ok(())
}

fn add_ifindex_without_flag(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "ifindex without TCP_AO_KEYF_IFINDEX",
        |r| {
            r.u32(ADD_IFINDEX, 42);
        },
        libc::EINVAL,
    )
}

fn add_non_existent_vrf(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    let key = default_key(s.remote_addr(), 100, 100)?.vrf(42);
    expect_error(
        "key add: non-existent VRF (ifindex 42)",
        sk.add_ao_key(&key),
        "Error::Os with EINVAL",
        |e| is_os(e, libc::EINVAL),
    )
}

/// `TEST_NETWORK` + n: 10.0.0.n / 2001::n (kernel `gen_tcp_addr`).
fn network_host(f: Family, n: u32) -> IpAddr {
    match f {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + n)),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(
            u128::from(Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0)) + u128::from(n),
        )),
    }
}

/// The kernel's estimate of `sizeof(struct tcp_ao_key)` (`KERNEL_TCP_AO_KEY_SZ_ROUND_UP`).
const KEY_SZ_ROUND_UP: usize = 300;
/// `net.core.optmem_max` set in the test's namespace (per-netns since Linux 6.9).
const TEST_OPTMEM: usize = 16384;

fn add_optmem_limit(s: &Solo) -> PeerResult {
    let before =
        netns::sysctl_read("net/core/optmem_max").or_fail("reading net.core.optmem_max")?;
    netns::sysctl_write("net/core/optmem_max", &TEST_OPTMEM.to_string())
        .or_fail("writing net.core.optmem_max in the test namespace")?;
    let now = netns::sysctl_read("net/core/optmem_max").or_fail("reading net.core.optmem_max")?;
    s.diag(format!(
        "net.core.optmem_max {before} => {now} in the test namespace"
    ));
    let limit = TEST_OPTMEM / KEY_SZ_ROUND_UP;
    let sk = socket(s)?;
    for i in 0.. {
        let key = default_key(network_host(s.family(), i + 1), 100, 100)?;
        match sk.add_ao_key(&key) {
            Ok(()) if (i as usize) <= limit * 10 => {}
            Ok(()) => {
                return Err(failure!(
                    "optmem limit test failed: added {i} keys, more than 10 x {limit}"
                ));
            }
            Err(e) if (i as usize) < limit => {
                return Err(failure!(
                    "optmem limit test failed: couldn't add key {i} (below {limit}): {e}"
                ));
            }
            Err(e) => {
                if !is_os(&e, libc::ENOMEM) {
                    return Err(failure!(
                        "the optmem limit was hit on adding key {i}, but with {e:?} instead of ENOMEM"
                    ));
                }
                s.diag(format!(
                    "optmem limit was hit on adding {i} key (bounds {limit}..={})",
                    limit * 10
                ));
                let n = key_ids(&sk)?.len();
                if n != i as usize {
                    return Err(failure!("{i} keys were added but the socket lists {n}"));
                }
                return Ok(());
            }
        }
    }
    unreachable!("the loop returns")
}

fn add_maclen_too_big(s: &Solo) -> PeerResult {
    add_expect(
        s,
        "maclen bigger than TCP hdr",
        |r| {
            r.u8(ADD_MACLEN, 100);
        },
        libc::EMSGSIZE,
    )?;
    expect_error(
        "typed API: MAC length 100",
        default_key(s.remote_addr(), 100, 100)?.mac_len(100),
        "InvalidArgument (mac_len) before any system call",
        |e| {
            matches!(
                e,
                Error::InvalidArgument {
                    field: "mac_len",
                    ..
                }
            )
        },
    )
}

fn add_bad_algo(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    let key = AoKey::new(
        PeerPrefix::host(s.remote_addr()).or_fail("prefix")?,
        100,
        100,
        Algorithm::Raw("imaginary hash algo".into()),
        MasterKey::new(DEFAULT_TEST_PASSWORD.as_bytes()).or_fail("key")?,
    );
    expect_error(
        "key add: bad algo",
        sk.add_ao_key(&key),
        "Error::AlgorithmUnavailable (ENOENT) naming the algorithm",
        |e| matches!(e, Error::AlgorithmUnavailable { algorithm, .. } if algorithm == "imaginary hash algo"),
    )
}

// ---------------------------------------------------------------------------------------
// key del.
// ---------------------------------------------------------------------------------------

fn del_expect(s: &Solo, what: &str, f: impl FnOnce(&mut Raw), errno: i32) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut r = default_del(s);
    f(&mut r);
    expect_errno(
        &format!("key del: {what}"),
        setopt(&sk, TCP_AO_DEL_KEY, &r, None),
        errno,
    )?;
    expect_present(&sk, &[(100, 100)])
}

fn del_reserved(s: &Solo) -> PeerResult {
    del_expect(
        s,
        "using reserved padding",
        |r| {
            r.or_u32(DEL_BITS, bit(3, 32));
        },
        libc::EINVAL,
    )
}

fn del_reserved2(s: &Solo) -> PeerResult {
    del_expect(
        s,
        "using reserved2 padding",
        |r| {
            r.u16(DEL_RESERVED2, 1);
        },
        libc::EINVAL,
    )
}

fn del_bad_key_flags(s: &Solo) -> PeerResult {
    del_expect(
        s,
        "bad key flags",
        |r| {
            r.u8(DEL_KEYFLAGS, 0xff);
        },
        libc::EINVAL,
    )
}

fn del_ifindex_without_flag(s: &Solo) -> PeerResult {
    del_expect(
        s,
        "ifindex without TCP_AO_KEYF_IFINDEX",
        |r| {
            r.u32(DEL_IFINDEX, 42);
        },
        libc::EINVAL,
    )
}

fn del_non_existent_vrf(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut sl = sel(s, 100, 100)?;
    sl.vrf = Some(42);
    expect_error(
        "key del: non-existent VRF (fails late, at lookup)",
        sk.del_ao_key(&sl),
        "Error::NotFound (ENOENT)",
        |e| matches!(e, Error::NotFound { .. }),
    )?;
    expect_present(&sk, &[(100, 100)])
}

fn del_on_listen(s: &Solo, current: bool, rnext: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    make_listen(s, &sk)?;
    add_verified(
        &sk,
        &default_key(s.remote_addr(), 0, 0)?,
        DEFAULT_TEST_PASSWORD.as_bytes(),
    )?;
    expect_error(
        "key del: del and set current/rnext key on a listen socket",
        sk.del_ao_key_replacing(&sel(s, 100, 100)?, current.then_some(0), rnext.then_some(0)),
        "Error::Os with EINVAL",
        |e| is_os(e, libc::EINVAL),
    )?;
    expect_present(&sk, &[(0, 0), (100, 100)])
}

fn del_set_missing(s: &Solo, current: bool, rnext: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_error(
        "key del: set non-existing current/rnext key",
        sk.del_ao_key_replacing(&sel(s, 100, 100)?, current.then_some(0), rnext.then_some(0)),
        "Error::NotFound (ENOENT)",
        |e| matches!(e, Error::NotFound { .. }),
    )?;
    expect_present(&sk, &[(100, 100)])
}

fn del_set_existing(s: &Solo, current: bool, rnext: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    add_verified(
        &sk,
        &default_key(s.remote_addr(), 0, 0)?,
        DEFAULT_TEST_PASSWORD.as_bytes(),
    )?;
    typed_ok(
        "key del: set current/rnext key",
        sk.del_ao_key_replacing(&sel(s, 100, 100)?, current.then_some(0), rnext.then_some(0)),
    )?;
    expect_present(&sk, &[(0, 0)])?;
    let info = typed_ok("getsockopt(TCP_AO_INFO)", sk.ao_info())?
        .ok_or_else(|| failure!("no TCP-AO state"))?;
    let want = (current.then_some(0), rnext.then_some(0));
    if (info.current_key, info.rnext_key) != want {
        return Err(failure!(
            "after the delete current/rnext are {:?}/{:?}, expected {:?}/{:?}",
            info.current_key,
            info.rnext_key,
            want.0,
            want.1
        ));
    }
    Ok(())
}

fn del_set_self(s: &Solo, current: bool, rnext: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_error(
        "key del: set as current/rnext the key to be removed",
        sk.del_ao_key_replacing(
            &sel(s, 100, 100)?,
            current.then_some(100),
            rnext.then_some(100),
        ),
        "Error::NotFound (ENOENT)",
        |e| matches!(e, Error::NotFound { .. }),
    )?;
    expect_present(&sk, &[(100, 100)])
}

fn del_async_non_listen(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_error(
        "key del: async on non-listen",
        sk.del_ao_key_async(&sel(s, 100, 100)?),
        "Error::Os with EINVAL",
        |e| is_os(e, libc::EINVAL),
    )?;
    expect_present(&sk, &[(100, 100)])
}

fn del_wrong(s: &Solo, send_id: u8, recv_id: u8, wrong_addr: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut sl = sel(s, send_id, recv_id)?;
    if wrong_addr {
        sl.peer = PeerPrefix::host(s.local_addr()).or_fail("prefix")?;
    }
    expect_error(
        "key del: non-existing key",
        sk.del_ao_key(&sl),
        "Error::NotFound (ENOENT)",
        |e| matches!(e, Error::NotFound { .. }),
    )?;
    expect_present(&sk, &[(100, 100)])
}

fn del_correct(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    typed_ok(
        "key del: correct key delete",
        sk.del_ao_key(&sel(s, 100, 100)?),
    )?;
    expect_present(&sk, &[])
}

/// Deleting by an IPv4-mapped address. On an IPv6 socket a v4-mapped key is stored as IPv4
/// and the delete folds the mapped address the same way. On an IPv4 socket the kernel reads
/// any `tcp_ao_del.addr` as a `sockaddr_in`: the v4-mapped `sockaddr_in6` names 0.0.0.0 there
/// (its flowinfo), so nothing matches.
fn del_v4_mapped(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    let v4 = Family::Ipv4.server_addr();
    let IpAddr::V4(v4a) = v4 else { unreachable!() };
    let mapped = IpAddr::V6(v4a.to_ipv6_mapped());
    match s.family() {
        Family::Ipv6 => {
            // Added as ::ffff:10.0.254.1 with the IPv4 prefix, raw.
            let mut add = default_add(s);
            add.sockaddr(0, libc::AF_INET6, Some(mapped), 0)
                .u8(ADD_PREFIX, 32);
            expect_ok(
                "key add: v4-mapped",
                setopt(&sk, TCP_AO_ADD_KEY, &add, None),
            )?;
            let mut del = default_del(s);
            del.sockaddr(0, libc::AF_INET6, Some(mapped), 0)
                .u8(DEL_PREFIX, 32);
            expect_ok(
                "key del: by the v4-mapped address",
                setopt(&sk, TCP_AO_DEL_KEY, &del, None),
            )?;
            expect_present(&sk, &[])?;
            // The typed API folds the same way (IPv4 selector on an IPv6 socket).
            add_verified(
                &sk,
                &default_key(v4, 100, 100)?,
                DEFAULT_TEST_PASSWORD.as_bytes(),
            )?;
            let sl = KeySelector::new(PeerPrefix::new(mapped, 128).or_fail("prefix")?, 100, 100);
            typed_ok("typed del by ::ffff:10.0.254.1/128", sk.del_ao_key(&sl))?;
            expect_present(&sk, &[])
        }
        Family::Ipv4 => {
            add_verified(
                &sk,
                &default_key(v4, 100, 100)?,
                DEFAULT_TEST_PASSWORD.as_bytes(),
            )?;
            let mut del = default_del(s);
            del.sockaddr(0, libc::AF_INET6, Some(mapped), 0)
                .u8(DEL_PREFIX, 32);
            expect_errno(
                "key del: a v4-mapped sockaddr_in6 on an IPv4 socket",
                setopt(&sk, TCP_AO_DEL_KEY, &del, None),
                libc::ENOENT,
            )?;
            expect_present(&sk, &[(100, 100)])
        }
    }
}

/// `TCP_AO_DEL_KEY` never looks at `ss_family`: a valid address under `AF_UNIX` deletes the
/// key (unlike `TCP_AO_ADD_KEY`, which checks it).
fn del_family_unchecked(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut del = default_del(s);
    del.u16(0, libc::AF_UNIX as u16);
    expect_ok(
        "key del: ss_family AF_UNIX around the key's address (the kernel does not check it)",
        setopt(&sk, TCP_AO_DEL_KEY, &del, None),
    )?;
    expect_present(&sk, &[])
}

/// Keys bound to a VRF (`TCP_AO_KEYF_IFINDEX`). `vrf_bound`: ifindex 200 (a real VRF);
/// otherwise ifindex 0 with the flag (default VRF only).
fn del_vrf_key(s: &Solo, vrf_bound: bool) -> PeerResult {
    let sk = socket(s)?;
    let ifindex = if vrf_bound {
        s.vrf_index()
            .ok_or_else(|| failure!("the VRF was not created"))?
    } else {
        0
    };
    let key = default_key(s.remote_addr(), 100, 100)?.vrf(ifindex);
    add_verified(&sk, &key, DEFAULT_TEST_PASSWORD.as_bytes())?;
    match sk.del_ao_key(&key.selector()) {
        Ok(()) => expect_present(&sk, &[]),
        Err(Error::NotFound { .. }) if vrf_bound => {
            expect_present(&sk, &[(100, 100)])?;
            Err(Failure::XFail(format!(
                "a key bound to VRF ifindex {ifindex} cannot be deleted (ENOENT): tcp_ao_del_cmd() compares key->l3index with a local l3index that is never set from tcp_ao_del.ifindex"
            )))
        }
        Err(e) => Err(failure!(
            "deleting the key with TCP_AO_KEYF_IFINDEX ifindex {ifindex} failed: {e}"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// AO info set / get.
// ---------------------------------------------------------------------------------------

/// Compare `TCP_AO_INFO` with what the raw `tcp_ao_info_opt` in `set` asked for (kernel
/// `test_vefify_ao_info`): current/rnext when set, counters when set, and always the flags.
fn check_info(sk: &Socket, set: &Raw, tst: &str) -> PeerResult {
    let mut b = vec![0u8; INFO_SIZE];
    expect_ok(
        "getsockopt(TCP_AO_INFO)",
        getopt(sk, TCP_AO_INFO, Some(&mut b), OptLen::Buffer),
    )?;
    let got = Raw(b);
    let (sb, gb) = (set.get_u32(INFO_BITS), got.get_u32(INFO_BITS));
    let mut bad = Vec::new();
    if sb & INFO_SET_CURRENT != 0 && set.0[INFO_CURRENT] != got.0[INFO_CURRENT] {
        bad.push(format!(
            "current_key {} != {}",
            set.0[INFO_CURRENT], got.0[INFO_CURRENT]
        ));
    }
    if sb & INFO_SET_RNEXT != 0 && set.0[INFO_RNEXT] != got.0[INFO_RNEXT] {
        bad.push(format!(
            "rnext {} != {}",
            set.0[INFO_RNEXT], got.0[INFO_RNEXT]
        ));
    }
    if sb & uapi::tcp_ao_info_opt::SET_COUNTERS != 0 {
        for (name, off) in [
            ("pkt_good", offset_of!(uapi::tcp_ao_info_opt, pkt_good)),
            ("pkt_bad", offset_of!(uapi::tcp_ao_info_opt, pkt_bad)),
            (
                "pkt_key_not_found",
                offset_of!(uapi::tcp_ao_info_opt, pkt_key_not_found),
            ),
            (
                "pkt_ao_required",
                offset_of!(uapi::tcp_ao_info_opt, pkt_ao_required),
            ),
            ("pkt_dropped_icmp", INFO_DROPPED_ICMP),
        ] {
            if set.get_u64(off) != got.get_u64(off) {
                bad.push(format!(
                    "{name} {} != {}",
                    set.get_u64(off),
                    got.get_u64(off)
                ));
            }
        }
    }
    for (name, m) in [
        ("ao_required", INFO_AO_REQUIRED),
        ("accept_icmps", uapi::tcp_ao_info_opt::ACCEPT_ICMPS),
    ] {
        if sb & m != gb & m {
            bad.push(format!("{name} {} != {}", sb & m != 0, gb & m != 0));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(failure!("{tst}: getsockopt(): {}", bad.join(", ")))
    }
}

fn info_on_listen(s: &Solo, current: bool, rnext: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    make_listen(s, &sk)?;
    match (current, rnext) {
        (true, false) => expect_error(
            "AO info set: set current key on a listen socket",
            sk.set_ao_current_key(100),
            "Error::Os with EINVAL",
            |e| is_os(e, libc::EINVAL),
        ),
        (false, true) => expect_error(
            "AO info set: set rnext key on a listen socket",
            sk.set_ao_rnext_key(100),
            "Error::Os with EINVAL",
            |e| is_os(e, libc::EINVAL),
        ),
        _ => {
            let mut r = Raw::zeroed(INFO_SIZE);
            r.or_u32(INFO_BITS, INFO_SET_CURRENT | INFO_SET_RNEXT);
            expect_errno(
                "AO info set: set current+rnext key on a listen socket",
                setopt(&sk, TCP_AO_INFO, &r, None),
                libc::EINVAL,
            )
        }
    }
}

fn info_reserved(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut r = Raw::zeroed(INFO_SIZE);
    r.or_u32(INFO_BITS, bit(5, 32));
    expect_errno(
        "AO info set: using reserved padding",
        setopt(&sk, TCP_AO_INFO, &r, None),
        libc::EINVAL,
    )
}

fn info_reserved2(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut r = Raw::zeroed(INFO_SIZE);
    r.u16(INFO_RESERVED2, 1);
    expect_errno(
        "AO info set: using reserved2 padding",
        setopt(&sk, TCP_AO_INFO, &r, None),
        libc::EINVAL,
    )
}

#[derive(Clone, Copy)]
enum Flag {
    AcceptIcmps,
    AoRequired,
}

fn info_flag(s: &Solo, get_back: bool, flag: Flag) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut want = Raw::zeroed(INFO_SIZE);
    match flag {
        Flag::AcceptIcmps => {
            typed_ok("AO info set: accept_icmps", sk.set_ao_accept_icmps(true))?;
            want.or_u32(INFO_BITS, uapi::tcp_ao_info_opt::ACCEPT_ICMPS);
        }
        Flag::AoRequired => {
            typed_ok("AO info set: ao required", sk.set_ao_required(true))?;
            want.or_u32(INFO_BITS, INFO_AO_REQUIRED);
        }
    }
    if get_back {
        check_info(&sk, &want, "AO info get")?;
        let info = typed_ok("getsockopt(TCP_AO_INFO)", sk.ao_info())?
            .ok_or_else(|| failure!("no TCP-AO state"))?;
        let ok = match flag {
            Flag::AcceptIcmps => info.accept_icmps && !info.ao_required,
            Flag::AoRequired => info.ao_required && !info.accept_icmps,
        };
        if !ok {
            return Err(failure!("the typed read-back disagrees: {info:?}"));
        }
    }
    Ok(())
}

fn info_required_with_md5(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let md5 = Md5Key {
        peer: PeerPrefix::host(s.family().test_addr(2)).or_fail("prefix")?,
        vrf: None,
        key: MasterKey::new(b"long long secret").or_fail("key")?,
    };
    typed_ok(
        "setsockopt(TCP_MD5SIG_EXT) for client 2",
        sk.add_md5_key(&md5),
    )?;
    expect_error(
        "AO info set: ao required with MD5 key",
        sk.set_ao_required(true),
        "Error::Md5Conflict (EKEYREJECTED)",
        |e| matches!(e, Error::Md5Conflict { .. }),
    )
}

fn info_missing(s: &Solo, current: bool, rnext: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    match (current, rnext) {
        (true, false) => expect_error(
            "AO info set: set non-existing current key",
            sk.set_ao_current_key(0),
            "Error::NotFound (ENOENT)",
            |e| matches!(e, Error::NotFound { .. }),
        ),
        (false, true) => expect_error(
            "AO info set: set non-existing rnext key",
            sk.set_ao_rnext_key(0),
            "Error::NotFound (ENOENT)",
            |e| matches!(e, Error::NotFound { .. }),
        ),
        _ => {
            let mut r = Raw::zeroed(INFO_SIZE);
            r.or_u32(INFO_BITS, INFO_SET_CURRENT | INFO_SET_RNEXT);
            expect_errno(
                "AO info set: set non-existing current+rnext key",
                setopt(&sk, TCP_AO_INFO, &r, None),
                libc::ENOENT,
            )
        }
    }
}

fn info_set_keys(s: &Solo, get_back: bool, current: bool, rnext: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut want = Raw::zeroed(INFO_SIZE);
    match (current, rnext) {
        (true, false) => {
            typed_ok("AO info set: set current key", sk.set_ao_current_key(100))?;
            want.or_u32(INFO_BITS, INFO_SET_CURRENT)
                .u8(INFO_CURRENT, 100);
        }
        (false, true) => {
            typed_ok("AO info set: set rnext key", sk.set_ao_rnext_key(100))?;
            want.or_u32(INFO_BITS, INFO_SET_RNEXT).u8(INFO_RNEXT, 100);
        }
        _ => {
            want.or_u32(INFO_BITS, INFO_SET_CURRENT | INFO_SET_RNEXT)
                .u8(INFO_CURRENT, 100)
                .u8(INFO_RNEXT, 100);
            expect_ok(
                "AO info set: set current+rnext key",
                setopt(&sk, TCP_AO_INFO, &want, None),
            )?;
        }
    }
    if get_back {
        check_info(&sk, &want, "AO info get")?;
    }
    Ok(())
}

fn info_counters(s: &Solo, get_back: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let c = AoCounters {
        good: 321,
        bad: 888,
        key_not_found: 654,
        ao_required: 987_654,
        dropped_icmp: 10_000,
    };
    typed_ok("AO info set: set counters", sk.set_ao_counters(&c))?;
    if get_back {
        let mut want = Raw::zeroed(INFO_SIZE);
        want.or_u32(INFO_BITS, uapi::tcp_ao_info_opt::SET_COUNTERS)
            .u64(offset_of!(uapi::tcp_ao_info_opt, pkt_good), c.good)
            .u64(offset_of!(uapi::tcp_ao_info_opt, pkt_bad), c.bad)
            .u64(
                offset_of!(uapi::tcp_ao_info_opt, pkt_key_not_found),
                c.key_not_found,
            )
            .u64(
                offset_of!(uapi::tcp_ao_info_opt, pkt_ao_required),
                c.ao_required,
            )
            .u64(INFO_DROPPED_ICMP, c.dropped_icmp);
        check_info(&sk, &want, "AO info get")?;
        let got = typed_ok("typed counters", sk.ao_counters())?;
        if got != c {
            return Err(failure!(
                "the typed counters read back {got:?}, {c:?} was set"
            ));
        }
    }
    Ok(())
}

fn info_noop(s: &Solo, get_back: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let r = Raw::zeroed(INFO_SIZE);
    expect_ok("AO info set: no-op", setopt(&sk, TCP_AO_INFO, &r, None))?;
    if get_back {
        check_info(&sk, &r, "AO info get")?;
    }
    Ok(())
}

/// The read-modify-write trap: `ao_required`/`accept_icmps` have no `set_` bit, so a raw
/// `TCP_AO_INFO` that only sets `set_current` clears them.
fn info_rmw_trap_raw(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    typed_ok("set ao_required", sk.set_ao_required(true))?;
    typed_ok("set accept_icmps", sk.set_ao_accept_icmps(true))?;
    let mut r = Raw::zeroed(INFO_SIZE);
    r.or_u32(INFO_BITS, INFO_SET_CURRENT).u8(INFO_CURRENT, 100);
    expect_ok(
        "raw TCP_AO_INFO with only set_current",
        setopt(&sk, TCP_AO_INFO, &r, None),
    )?;
    let info = typed_ok("getsockopt(TCP_AO_INFO)", sk.ao_info())?
        .ok_or_else(|| failure!("no TCP-AO state"))?;
    s.diag(format!(
        "after a raw set_current-only TCP_AO_INFO: {info:?}"
    ));
    if info.ao_required || info.accept_icmps || info.current_key != Some(100) {
        return Err(failure!(
            "a raw TCP_AO_INFO with only set_current was expected to clear ao_required and accept_icmps (the kernel writes both unconditionally), got {info:?}"
        ));
    }
    Ok(())
}

/// The typed API reads the flags first, so rotating keys keeps `ao_required`/`accept_icmps`.
fn info_rmw_typed(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    typed_ok("set ao_required", sk.set_ao_required(true))?;
    typed_ok("set accept_icmps", sk.set_ao_accept_icmps(true))?;
    typed_ok("set current", sk.set_ao_current_key(100))?;
    typed_ok("set rnext", sk.set_ao_rnext_key(100))?;
    typed_ok("set counters", sk.set_ao_counters(&AoCounters::default()))?;
    let info = typed_ok("getsockopt(TCP_AO_INFO)", sk.ao_info())?
        .ok_or_else(|| failure!("no TCP-AO state"))?;
    if !info.ao_required
        || !info.accept_icmps
        || info.current_key != Some(100)
        || info.rnext_key != Some(100)
    {
        return Err(failure!(
            "the typed setters lost state: {info:?} (ao_required, accept_icmps and 100/100 expected)"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// get keys.
// ---------------------------------------------------------------------------------------

fn get_keys_no_ao_info(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    let mut b = default_get().0.clone();
    expect_errno(
        "get keys: no ao_info",
        getopt(&sk, TCP_AO_GET_KEYS, Some(&mut b), OptLen::Buffer),
        libc::ENOENT,
    )?;
    expect_error(
        "typed API: get keys without TCP-AO state",
        sk.ao_keys(&KeyFilter::All),
        "Error::NotFound (ENOENT)",
        |e| matches!(e, Error::NotFound { .. }),
    )
}

fn get_keys_ok(sk: &Socket, filter: &Raw, tst: &str, want: u32) -> PeerResult {
    let (n, keys) = expect_ok(&format!("get keys: {tst}"), get_keys_raw(sk, filter, 1))?;
    if n != want {
        return Err(failure!(
            "get keys: {tst}: {n} keys matched ({keys:?}), {want} expected"
        ));
    }
    Ok(())
}

fn get_keys_proper(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    get_keys_ok(&sk, &default_get(), "proper tcp_ao_get_mkts()", 1)
}

fn get_keys_no_prefix_any(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut f = Raw::zeroed(GET_SIZE);
    f.sockaddr(0, af(s.family()), None, 0);
    // Address mode with IDs 0:0: the any-address matches, the IDs do not.
    get_keys_ok(&sk, &f, "no prefix, any addr", 0)?;
    f.u8(GET_SNDID, 100).u8(GET_RCVID, 100);
    get_keys_ok(&sk, &f, "no prefix, any addr, IDs 100:100", 1)
}

fn get_keys_prefix_addr(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut f = Raw::zeroed(GET_SIZE);
    f.sockaddr(0, af(s.family()), Some(s.remote_addr()), 0)
        .u8(GET_PREFIX, host_prefix(s.family()));
    get_keys_ok(&sk, &f, "prefix + addr (IDs 0:0)", 0)?;
    f.u8(GET_SNDID, 100).u8(GET_RCVID, 100);
    get_keys_ok(&sk, &f, "prefix + addr, IDs 100:100", 1)
}

fn get_keys_current_rnext(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut f = Raw::zeroed(GET_SIZE);
    f.or_u16(GET_BITS, GET_IS_CURRENT | GET_IS_RNEXT);
    get_keys_ok(&sk, &f, "current + rnext (none set)", 0)?;
    typed_ok("set current", sk.set_ao_current_key(100))?;
    get_keys_ok(&sk, &f, "current + rnext (current set)", 1)?;
    let typed = typed_ok(
        "typed current+rnext",
        sk.ao_keys(&KeyFilter::CurrentAndRNext),
    )?;
    if typed.len() != 1 || !typed[0].is_current {
        return Err(failure!("the typed filter returned {} keys", typed.len()));
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Sel {
    None,
    Prefix,
    Addr,
    SndId,
    RcvId,
}

#[derive(Clone, Copy)]
enum GetBad {
    PktGood,
    PktBad,
    KeyFlags,
    Ifindex,
    Reserved,
    NoPrefixAddr,
    PrefixAnyAddr,
    TooBigPrefix,
    TooShortPrefix,
    Mode(u16, Sel),
}

fn get_keys_einval(s: &Solo, bad: GetBad) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut f = default_get();
    let addr_mode = |f: &mut Raw, prefix: u8, ip: Option<IpAddr>| {
        // Clear get_all (default_get sets it) and address the remote.
        f.u16(GET_BITS, 0);
        f.u8(GET_PREFIX, prefix);
        f.sockaddr(0, af(s.family()), ip, 0);
    };
    let what = match bad {
        GetBad::PktGood => {
            f.u64(GET_PKT_GOOD, 643);
            "set out-only pkt_good counter"
        }
        GetBad::PktBad => {
            f.u64(GET_PKT_BAD, 94);
            "set out-only pkt_bad counter"
        }
        GetBad::KeyFlags => {
            f.u8(GET_KEYFLAGS, 0xff);
            "bad keyflags"
        }
        GetBad::Ifindex => {
            f.u32(GET_IFINDEX, 42);
            "ifindex without TCP_AO_KEYF_IFINDEX"
        }
        GetBad::Reserved => {
            f.or_u16(GET_BITS, bit(3, 16) as u16);
            "using reserved field"
        }
        GetBad::NoPrefixAddr => {
            addr_mode(&mut f, 0, Some(s.remote_addr()));
            "no prefix, addr"
        }
        GetBad::PrefixAnyAddr => {
            addr_mode(&mut f, 32, None);
            "prefix, any addr"
        }
        GetBad::TooBigPrefix => {
            addr_mode(&mut f, 129, Some(s.remote_addr()));
            "too big prefix"
        }
        GetBad::TooShortPrefix => {
            addr_mode(&mut f, 2, Some(s.remote_addr()));
            "too short prefix"
        }
        GetBad::Mode(bits, what) => {
            f.u16(GET_BITS, bits);
            match what {
                Sel::None => {}
                Sel::Prefix => {
                    f.u8(GET_PREFIX, host_prefix(s.family()));
                }
                Sel::Addr => {
                    f.sockaddr(0, af(s.family()), Some(s.remote_addr()), 0);
                }
                Sel::SndId => {
                    f.u8(GET_SNDID, 1);
                }
                Sel::RcvId => {
                    f.u8(GET_RCVID, 1);
                }
            }
            "a key-selection mode combined with an address/ID field or another mode"
        }
    };
    let mut b = f.0.clone();
    let r = getopt(
        &sk,
        TCP_AO_GET_KEYS,
        Some(&mut b),
        OptLen::Value(GET_SIZE as i32),
    );
    zeroize::Zeroize::zeroize(&mut b);
    expect_errno(&format!("get keys: {what}"), r, libc::EINVAL)
}

// ---------------------------------------------------------------------------------------
// filter keys.
// ---------------------------------------------------------------------------------------

const FILTER_TEST_NKEYS: usize = 16;

#[derive(Clone, Copy)]
enum Filter {
    IdsAndAddress,
    Current,
    RNext,
    Ids,
    Truncated,
}

/// 16 keys "Test password number  i", IDs 100+i, key 0 current, key 1 rnext, key 2 for this
/// namespace's own address with IDs 100:100 (overlapping key 0's IDs on another address),
/// added in a random order (kernel `prepare_test_keys`).
fn prepare_test_keys(s: &Solo, sk: &Socket) -> PeerResult<Vec<(AoKey, Vec<u8>)>> {
    let mut keys = Vec::new();
    for i in 0..FILTER_TEST_NKEYS {
        let pw = format!("Test password number  {i}").into_bytes();
        let (addr, id) = if i == 2 {
            (s.local_addr(), 100)
        } else {
            (s.remote_addr(), 100 + i as u8)
        };
        let k = key_with(addr, None, id, id, &pw)?
            .set_current(i == 0)
            .set_rnext(i == 1);
        keys.push((k, pw));
    }
    let seed = run_seed();
    s.diag(format!("random key order from seed {seed:#x} (TCPAO_SEED)"));
    let mut rng = Rng::new(seed ^ 0xf11e);
    let mut order: Vec<usize> = (0..FILTER_TEST_NKEYS).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for &i in &order {
        let (k, pw) = &keys[i];
        typed_ok(&format!("adding test key {i}"), sk.add_ao_key(k))?;
        verify_key(sk, k, pw, false)?;
    }
    Ok(keys)
}

fn filter_keys(s: &Solo, f: Filter) -> PeerResult {
    let sk = socket(s)?;
    let keys = prepare_test_keys(s, &sk)?;
    let all = expect_ok("get_all", dump_all(&sk))?;
    if all.len() != FILTER_TEST_NKEYS {
        return Err(failure!(
            "{} keys on the socket, {FILTER_TEST_NKEYS} added",
            all.len()
        ));
    }
    let stored = |i: usize| stored_key(keys[i].0.algorithm(), &keys[i].1);
    let (tst, got, want): (&str, Vec<tcpao_sys::AoKeyInfo>, Vec<usize>) = match f {
        Filter::IdsAndAddress => (
            "by sndid, rcvid, address",
            typed_ok("filter", sk.ao_keys(&KeyFilter::Key(keys[2].0.selector())))?,
            vec![2],
        ),
        Filter::Current => (
            "by is_current",
            typed_ok("filter", sk.ao_keys(&KeyFilter::Current))?,
            vec![0],
        ),
        Filter::RNext => (
            "by is_rnext",
            typed_ok("filter", sk.ao_keys(&KeyFilter::RNext))?,
            vec![1],
        ),
        Filter::Ids => (
            "by sndid, rcvid",
            typed_ok(
                "filter",
                sk.ao_keys(&KeyFilter::Key(KeySelector::new(
                    PeerPrefix::any(),
                    100,
                    100,
                ))),
            )?,
            vec![0, 2],
        ),
        Filter::Truncated => {
            let mut filter = Raw::zeroed(GET_SIZE);
            filter.or_u16(GET_BITS, GET_GET_ALL);
            let (n, got) = expect_ok(
                "get_all with nkeys 8",
                get_keys_raw(&sk, &filter, FILTER_TEST_NKEYS / 2),
            )?;
            if n as usize != FILTER_TEST_NKEYS || got.len() != FILTER_TEST_NKEYS / 2 {
                return Err(failure!(
                    "filter keys: wrong nkeys, expected {FILTER_TEST_NKEYS} got {n} ({} records written)",
                    got.len()
                ));
            }
            return Ok(());
        }
    };
    if got.len() != want.len() {
        return Err(failure!(
            "filter keys: {tst}: wrong nr of keys, expected {} got {}",
            want.len(),
            got.len()
        ));
    }
    for i in want {
        let w = stored(i);
        if !got.iter().any(|k| {
            k.key
                .as_ref()
                .is_some_and(|m| m.expose_secret() == w.as_slice())
        }) {
            return Err(failure!(
                "filter keys: {tst}: got wrong keys back (test key {i} is missing)"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// key add: duplicate.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Dup {
    FullCopy,
    AnyOnSocket,
    AddAny,
    Subnet,
    RecvIdDiffers,
    SendIdDiffers,
}

fn duplicate(s: &Solo, d: Dup) -> PeerResult {
    let sk = socket(s)?;
    let pw = DEFAULT_TEST_PASSWORD.as_bytes();
    let def = || default_key(s.remote_addr(), 100, 100);
    let any = || {
        Ok::<_, Failure>(AoKey::new(
            PeerPrefix::any(),
            100,
            100,
            Algorithm::AesCmac128,
            MasterKey::new(pw).or_fail("key")?,
        ))
    };
    let (first, second, what) = match d {
        Dup::FullCopy => (def()?, def()?, "full copy"),
        Dup::AnyOnSocket => (any()?, def()?, "any addr key on the socket"),
        Dup::AddAny => (def()?, any()?, "add any addr key"),
        Dup::Subnet => {
            let (net, _) = s.family().network();
            (
                def()?,
                key_with(net, Some(16), 100, 100, b"password")?,
                "add any addr for the same subnet",
            )
        }
        Dup::RecvIdDiffers => (
            def()?,
            default_key(s.remote_addr(), 100, 101)?,
            "RecvID differs",
        ),
        Dup::SendIdDiffers => (
            def()?,
            default_key(s.remote_addr(), 101, 100)?,
            "SendID differs",
        ),
    };
    typed_ok("adding the first key", sk.add_ao_key(&first))?;
    expect_error(
        &format!("key add: duplicate: {what}"),
        sk.add_ao_key(&second),
        "Error::IdConflict (EEXIST)",
        |e| matches!(e, Error::IdConflict { .. }),
    )?;
    let n = key_ids(&sk)?.len();
    if n != 1 {
        return Err(failure!(
            "{n} keys on the socket after the refused duplicate, 1 expected"
        ));
    }
    Ok(())
}

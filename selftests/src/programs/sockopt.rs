// SPDX-License-Identifier: MIT OR Apache-2.0
//! What `setsockopt-closed` and `key-management` both need to check the TCP-AO socket
//! options: the expected-errno assertions, the default test key, the raw `TCP_AO_GET_KEYS`
//! dump and the field-by-field comparison of a dumped key with the key that was added
//! (kernel `test_verify_socket_key`).
//!
//! Raw calls build the typed [`uapi`] structs and send their bytes
//! ([`uapi::tcp_ao_add::as_bytes`] and friends): a case breaks one field by name, never a
//! byte offset.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use nix::libc;
use socket2::{SockAddr, Socket};
use tcpao_sys::raw::{self, OptLen};
use tcpao_sys::uapi::{self, SOL_TCP, TCP_AO_GET_KEYS};
use tcpao_sys::{Algorithm, AoKey, Error, KeyFilter, MasterKey, PeerPrefix, TcpAoExt};
use zeroize::Zeroizing;

use crate::failure;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::sockets::DEFAULT_TEST_PASSWORD;
use crate::solo::Solo;
use crate::topology::Family;

/// Name of an errno (`EINVAL`).
pub fn errno_name(e: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(e))
}

fn os_errno(e: &io::Error) -> String {
    e.raw_os_error().map_or_else(|| e.to_string(), errno_name)
}

/// A raw `setsockopt`/`getsockopt` result must be the error `want`.
///
/// # Errors
/// A failure sentence naming what happened instead.
pub fn expect_errno<T>(what: &str, r: io::Result<T>, want: i32) -> PeerResult {
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
///
/// # Errors
/// A failure sentence with the errno.
pub fn expect_ok<T>(what: &str, r: io::Result<T>) -> PeerResult<T> {
    r.map_err(|e| failure!("{what}: the call failed with {}", os_errno(&e)))
}

/// A typed call must fail with an error matching `pred` (described by `want`).
///
/// # Errors
/// A failure sentence naming what happened instead.
pub fn expect_error<T>(
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
///
/// # Errors
/// A failure sentence with the error and its errno.
pub fn typed_ok<T>(what: &str, r: tcpao_sys::Result<T>) -> PeerResult<T> {
    r.map_err(|e| {
        failure!(
            "{what}: the call failed: {e} ({})",
            e.raw_os_error()
                .map_or_else(|| "no errno".into(), errno_name)
        )
    })
}

/// `Error::Os` carrying `errno`.
pub fn is_os(e: &Error, errno: i32) -> bool {
    matches!(e, Error::Os { source, .. } if source.raw_os_error() == Some(errno))
}

/// `AF_INET`/`AF_INET6` of a family.
pub fn af(f: Family) -> i32 {
    match f {
        Family::Ipv4 => libc::AF_INET,
        Family::Ipv6 => libc::AF_INET6,
    }
}

/// A `sockaddr_in`/`sockaddr_in6` with an explicit `ss_family` (so a wrong family can be put
/// around a valid address); `None` leaves the address zero (the any-address).
pub fn sockaddr(af: i32, ip: Option<IpAddr>, port: u16) -> uapi::__kernel_sockaddr_storage {
    let mut ss = uapi::__kernel_sockaddr_storage {
        ss_family: af as u16,
        ..Default::default()
    };
    ss.__data[..2].copy_from_slice(&port.to_be_bytes());
    match ip {
        // sockaddr_in: sin_port, sin_addr.
        Some(IpAddr::V4(a)) => ss.__data[2..6].copy_from_slice(&a.octets()),
        // sockaddr_in6: sin6_port, sin6_flowinfo, sin6_addr.
        Some(IpAddr::V6(a)) => ss.__data[6..22].copy_from_slice(&a.octets()),
        None => {}
    }
    ss
}

/// The default key for the typed API (kernel `test_prepare_def_key`): cmac(aes128), the
/// default password, host prefix.
///
/// # Errors
/// An invalid address.
pub fn default_key(peer: IpAddr, send_id: u8, recv_id: u8) -> PeerResult<AoKey> {
    key_with(
        peer,
        None,
        send_id,
        recv_id,
        DEFAULT_TEST_PASSWORD.as_bytes(),
    )
}

/// A cmac(aes128) key for `peer[/prefix]` with `password`.
///
/// # Errors
/// An invalid prefix or password.
pub fn key_with(
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

/// One key as `TCP_AO_GET_KEYS` reports it (the typed record; its key bytes are zeroed on
/// drop and never printed).
pub struct DumpedKey(pub uapi::tcp_ao_getsockopt);

impl std::fmt::Debug for DumpedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = &self.0;
        write!(
            f,
            "key {}:{} {} maclen {} keylen {} flags {:#x} ifindex {}",
            k.sndid,
            k.rcvid,
            self.alg_name(),
            k.maclen,
            k.keylen,
            k.keyflags,
            k.ifindex
        )
    }
}

impl DumpedKey {
    /// `alg_name`, up to its NUL.
    pub fn alg_name(&self) -> String {
        let n = &self.0.alg_name;
        let end = n.iter().position(|&b| b == 0).unwrap_or(n.len());
        String::from_utf8_lossy(&n[..end]).into_owned()
    }

    /// The key bytes (`keylen` of them).
    pub fn key(&self) -> &[u8] {
        &self.0.key[..usize::from(self.0.keylen).min(uapi::TCP_AO_MAXKEYLEN)]
    }

    /// `is_current`.
    pub fn is_current(&self) -> bool {
        self.0.bitfield & uapi::tcp_ao_getsockopt::IS_CURRENT != 0
    }

    /// `is_rnext`.
    pub fn is_rnext(&self) -> bool {
        self.0.bitfield & uapi::tcp_ao_getsockopt::IS_RNEXT != 0
    }

    /// What is wrong with the reported address as a `sockaddr_in`/`sockaddr_in6` beyond the
    /// address itself (`tcp_ao_copy_mkts_to_user()` zeroes the record and sets the family and
    /// a zero port): a family other than `AF_INET`/`AF_INET6`, a port, a flow label or scope,
    /// or bytes after the structure. `None` when the layout is clean.
    pub fn address_layout_error(&self) -> Option<String> {
        let a = &self.0.addr;
        let d = &a.__data;
        let (used, family) = match i32::from(a.ss_family) {
            // sin_port, sin_addr: 2 + 4 bytes of __data.
            libc::AF_INET => (6, "AF_INET"),
            // sin6_port, sin6_flowinfo, sin6_addr: 2 + 4 + 16 bytes; sin6_scope_id after.
            libc::AF_INET6 => (22, "AF_INET6"),
            f => return Some(format!("address family {f}")),
        };
        let port = u16::from_be_bytes([d[0], d[1]]);
        if port != 0 {
            return Some(format!("{family} address with port {port}"));
        }
        if family == "AF_INET6" && d[2..6] != [0; 4] {
            return Some("AF_INET6 address with a flow label".into());
        }
        if d[used..].iter().any(|&b| b != 0) {
            return Some(format!("non-zero bytes after the {family} address"));
        }
        None
    }

    /// The peer address (`None` for the any-address); v4-mapped folded to IPv4.
    pub fn peer(&self) -> Option<IpAddr> {
        let d = &self.0.addr.__data;
        let a = match i32::from(self.0.addr.ss_family) {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(d[2], d[3], d[4], d[5])),
            libc::AF_INET6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&d[6..22]);
                let a = Ipv6Addr::from(o);
                a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4)
            }
            _ => return None,
        };
        (!a.is_unspecified()).then_some(a)
    }
}

/// Size of one `TCP_AO_GET_KEYS` record.
pub const GET_SIZE: usize = size_of::<uapi::tcp_ao_getsockopt>();

/// Raw `TCP_AO_GET_KEYS` with `filter` (its `nkeys` set to `cap`): the number of matches and
/// the keys dumped (at most `cap`).
///
/// # Errors
/// The kernel's errno, or an `optlen` other than one record.
pub fn get_keys_raw(
    sk: &impl AsFd,
    mut filter: uapi::tcp_ao_getsockopt,
    cap: usize,
) -> io::Result<(u32, Vec<DumpedKey>)> {
    filter.nkeys = u32::try_from(cap).unwrap_or(u32::MAX);
    let mut buf = Zeroizing::new(vec![0u8; GET_SIZE * cap.max(1)]);
    buf[..GET_SIZE].copy_from_slice(filter.as_bytes());
    let len = raw::getsockopt_bytes(
        sk,
        SOL_TCP,
        TCP_AO_GET_KEYS,
        Some(&mut buf),
        OptLen::Value(GET_SIZE as i32),
    )?;
    let records: Vec<DumpedKey> = buf
        .chunks(GET_SIZE)
        .map(|rec| {
            let mut k = uapi::tcp_ao_getsockopt::default();
            k.as_bytes_mut().copy_from_slice(rec);
            DumpedKey(k)
        })
        .collect();
    if len != Some(GET_SIZE as i32) {
        return Err(io::Error::other(format!(
            "getsockopt(TCP_AO_GET_KEYS) returned optlen {len:?}, not sizeof(struct tcp_ao_getsockopt) = {GET_SIZE}"
        )));
    }
    let total = records.first().map_or(0, |k| k.0.nkeys);
    let n = (total as usize).min(cap);
    Ok((total, records.into_iter().take(n).collect()))
}

/// A `get_all` filter.
pub fn get_all() -> uapi::tcp_ao_getsockopt {
    uapi::tcp_ao_getsockopt {
        bitfield: uapi::tcp_ao_getsockopt::GET_ALL,
        ..Default::default()
    }
}

/// Every key of the socket (raw `get_all` dump).
///
/// # Errors
/// As [`get_keys_raw`].
pub fn dump_all(sk: &impl AsFd) -> io::Result<Vec<DumpedKey>> {
    let (total, keys) = get_keys_raw(sk, get_all(), 64)?;
    if total as usize > 64 {
        return get_keys_raw(sk, get_all(), total as usize).map(|(_, k)| k);
    }
    Ok(keys)
}

/// The keys on the socket, as `(sndid, rcvid)` pairs, sorted.
///
/// # Errors
/// A failure sentence when the dump fails.
pub fn key_ids(sk: &impl AsFd) -> PeerResult<Vec<(u8, u8)>> {
    let mut v: Vec<(u8, u8)> = expect_ok("getsockopt(TCP_AO_GET_KEYS) get_all", dump_all(sk))?
        .iter()
        .map(|d| (d.0.sndid, d.0.rcvid))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// The key bytes the kernel stores for `algorithm` and `password`: the RFC 5926 §3.1.1.2
/// AES-CMAC fold for cmac(aes128) keys that are not 16 bytes long, else the password.
pub fn stored_key(algorithm: &Algorithm, password: &[u8]) -> Zeroizing<Vec<u8>> {
    if *algorithm == Algorithm::AesCmac128 && password.len() != 16 {
        Zeroizing::new(tcpao_refimpl::kdf::fold_aes_key(password).to_vec())
    } else {
        Zeroizing::new(password.to_vec())
    }
}

/// The name the kernel reports for `algorithm` (`cmac(aes128)` is stored as `cmac(aes)`).
pub fn reported_alg_name(algorithm: &Algorithm) -> &str {
    match algorithm {
        Algorithm::AesCmac128 => "cmac(aes)",
        a => a.kernel_name(),
    }
}

/// Compare a dumped key with the key that was added, field by field (kernel
/// `test_cmp_getsockopt_setsockopt`). `closed`: also compare current/rnext with the key's
/// own `set_current`/`set_rnext` and require zero counters (only meaningful on a closed
/// socket).
///
/// # Errors
/// One sentence listing every field that differs.
pub fn compare_key(
    got: &DumpedKey,
    key: &AoKey,
    password: &[u8],
    closed: bool,
) -> Result<(), String> {
    let g = &got.0;
    let sel = key.selector();
    let mut bad = Vec::new();
    if (g.sndid, g.rcvid) != (sel.send_id, sel.recv_id) {
        bad.push(format!("IDs {}:{}", g.sndid, g.rcvid));
    }
    let want_alg = reported_alg_name(key.algorithm());
    if got.alg_name() != want_alg {
        bad.push(format!(
            "algorithm {:?} instead of {want_alg:?}",
            got.alg_name()
        ));
    }
    let want_key = stored_key(key.algorithm(), password);
    if got.key().len() != want_key.len() {
        bad.push(format!(
            "keylen {} instead of {}",
            got.key().len(),
            want_key.len()
        ));
    } else if got.key() != want_key.as_slice() {
        bad.push("different key bytes".into());
    }
    let want_mac = key.configured_mac_len().unwrap_or(12);
    if g.maclen != want_mac {
        bad.push(format!("maclen {} instead of {want_mac}", g.maclen));
    }
    let mut want_flags = 0;
    if sel.vrf.is_some() {
        want_flags |= uapi::TCP_AO_KEYF_IFINDEX;
    }
    if !key.includes_options() {
        want_flags |= uapi::TCP_AO_KEYF_EXCLUDE_OPT;
    }
    if g.keyflags != want_flags {
        bad.push(format!(
            "keyflags {:#x} instead of {want_flags:#x}",
            g.keyflags
        ));
    }
    let want_ifindex = sel.vrf.unwrap_or(0) as i32;
    if g.ifindex != want_ifindex {
        bad.push(format!("ifindex {} instead of {want_ifindex}", g.ifindex));
    }
    if let Some(why) = got.address_layout_error() {
        bad.push(why);
    }
    let want_prefix = sel.peer.prefix_len();
    if g.prefix != want_prefix {
        bad.push(format!("prefix {} instead of {want_prefix}", g.prefix));
    }
    if closed {
        let (c, r) = key.selects();
        if got.is_current() != c || got.is_rnext() != r {
            bad.push(format!(
                "current/rnext {}/{} instead of {c}/{r}",
                got.is_current(),
                got.is_rnext()
            ));
        }
        if g.pkt_good != 0 || g.pkt_bad != 0 {
            bad.push(format!(
                "counters {}/{} on a key that saw no traffic",
                g.pkt_good, g.pkt_bad
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "key {}:{} read back with TCP_AO_GET_KEYS differs from what was added: {}",
            sel.send_id,
            sel.recv_id,
            bad.join(", ")
        ))
    }
}

/// Read `key` back (GET_KEYS filtered by its address, prefix and IDs: exactly one key) and
/// compare every field (kernel `test_verify_socket_key`). `closed`: the socket saw no
/// traffic, so also compare current/rnext and require zero counters.
///
/// # Errors
/// A failure sentence when the key is missing or differs.
pub fn verify_key(sk: &impl AsFd, key: &AoKey, password: &[u8], closed: bool) -> PeerResult {
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
    // Field by field through the raw dump (the typed view folds algorithm names).
    let all = expect_ok("getsockopt(TCP_AO_GET_KEYS) get_all", dump_all(sk))?;
    let Some(d) = all.iter().find(|d| {
        d.0.sndid == sel.send_id
            && d.0.rcvid == sel.recv_id
            && d.0.prefix == sel.peer.prefix_len()
            && d.0.ifindex == sel.vrf.unwrap_or(0) as i32
            && d.peer() == sel.peer.addr()
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

/// Add `key` with the typed API and verify it (kernel `test_add_key` + verify).
///
/// # Errors
/// A failure sentence when the kernel refuses the key or reports it differently.
pub fn add_verified(sk: &impl AsFd, key: &AoKey, password: &[u8]) -> PeerResult {
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

/// Bind to this namespace's address on a kernel-chosen port and listen (kernel
/// `make_listen`).
///
/// # Errors
/// A failure sentence naming the call that failed.
pub fn make_listen(s: &Solo, sk: &Socket) -> PeerResult {
    sk.bind(&SockAddr::from(std::net::SocketAddr::new(
        s.local_addr(),
        0,
    )))
    .or_fail("bind() failed")?;
    sk.listen(1).or_fail("listen() failed")
}

/// The socket must hold exactly the keys `want` (`(sndid, rcvid)`, any order).
///
/// # Errors
/// A failure sentence with both lists.
pub fn expect_keys(sk: &impl AsFd, want: &[(u8, u8)]) -> PeerResult {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_address_must_be_a_clean_sockaddr() {
        let rec = |af: i32, ip: &str, port: u16| {
            DumpedKey(uapi::tcp_ao_getsockopt {
                addr: sockaddr(af, Some(ip.parse().unwrap()), port),
                ..Default::default()
            })
        };
        assert_eq!(
            rec(libc::AF_INET, "10.0.1.1", 0).address_layout_error(),
            None
        );
        assert_eq!(
            rec(libc::AF_INET6, "2001:db8::1", 0).address_layout_error(),
            None
        );
        assert_eq!(
            rec(libc::AF_INET6, "2001:db8::1", 1).address_layout_error(),
            Some("AF_INET6 address with port 1".into())
        );
        assert!(
            rec(libc::AF_INET, "10.0.1.1", 179)
                .address_layout_error()
                .is_some()
        );
        let mut k = rec(libc::AF_INET, "10.0.1.1", 0);
        k.0.addr.ss_family = 0;
        assert_eq!(k.address_layout_error(), Some("address family 0".into()));
        let mut k = rec(libc::AF_INET, "10.0.1.1", 0);
        k.0.addr.__data[10] = 1;
        assert!(k.address_layout_error().is_some());
        let mut k = rec(libc::AF_INET6, "2001:db8::1", 0);
        k.0.addr.__data[3] = 1;
        assert_eq!(
            k.address_layout_error(),
            Some("AF_INET6 address with a flow label".into())
        );
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The errno of socket-option paths `setsockopt-closed` and `key-management` leave out, on
//! one socket per step in a namespace of its own (`paths/<family>/sockopt-errors`), and the
//! Current_key/RNext_key a listener keeps from before `listen()` when that key is deleted
//! with `del_async` (`paths/<family>/listener-del-async-current-key`).
//!
//! | option | input | errno |
//! |---|---|---|
//! | `TCP_AO_REPAIR` get / set | not in repair mode | `EPERM` |
//! | `TCP_AO_REPAIR` get / set | repair mode, no TCP-AO state | `ENOENT` |
//! | `TCP_AO_REPAIR` set | `optlen` 8 / 24 with a non-zero tail | `EINVAL` / `E2BIG` |
//! | `TCP_AO_REPAIR` get | `optlen` 0 | `EINVAL` |
//! | `TCP_AO_INFO` get | `optlen` 0 / a reserved bit set | `EINVAL` |
//! | `TCP_AO_GET_KEYS` | `optlen` 0 | `EINVAL` |
//! | `TCP_AO_GET_KEYS` | `AF_UNIX` address / no family without `get_all` | `EAFNOSUPPORT` |
//! | `TCP_AO_GET_KEYS` | `get_all` with an address family | `EINVAL` |
//! | `TCP_AO_GET_KEYS` (IPv6) | `::ffff:a.b.c.d` with prefix 33, `::ffff:0.0.0.0/8`, host bits | `EINVAL` |
//! | `TCP_AO_ADD_KEY` | `TCP_AO_KEYF_IFINDEX` with `lo` (not an L3 master) | `EINVAL` |
//! | `TCP_AO_ADD_KEY` (IPv6) | `::ffff:a.b.c.d` with prefix 33, `::ffff:0.0.0.0/8`, host bits | `EINVAL` |
//! | `TCP_AO_DEL_KEY` | no TCP-AO state / a port / another prefix | `ENOENT` / `EINVAL` / `ENOENT` |
//! | `TCP_AO_DEL_KEY` (IPv6) | the IDs of an IPv6 key with a mapped IPv4 address | `ENOENT` |
//! | `TCP_AO_INFO` `ao_required` | TCP-MD5 state whose keys were all deleted | accepted |
//!
//! `paths/<family>/get-keys-short-optlen`: `TCP_AO_GET_KEYS` with an `optlen` shorter than
//! `struct tcp_ao_getsockopt` reads the missing tail as zeros and succeeds, reporting the
//! kernel's size in `optlen` (one row per length in [`SHORT_OPTLENS`]). It must write nothing
//! past `optlen`; Linux up to at least 7.2.13 writes the matched-key count at
//! `offsetof(nkeys)` whatever `optlen` was (finding 6 of docs/kernel-findings.md, fixed by
//! `selftests/fixes/get-keys-nkeys-past-optlen.patch`), which this test reports as XFAIL
//! while it shows.

use std::io;
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nix::errno::Errno;
use socket2::Socket;
use tcpao_sys::repair::{self, RepairMode};
use tcpao_sys::uapi::{
    self, tcp_ao_add, tcp_ao_del, tcp_ao_getsockopt, tcp_ao_info_opt, tcp_ao_repair,
};
use tcpao_sys::{AoRepair, Md5Ext as _, Md5Key, PeerPrefix, TcpAoExt as _};

use super::PROGRAM;
use crate::failure;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::probe::Feature;
use crate::registry::Test;
use crate::sockets::{self, TestKey};
use crate::solo::{Solo, SoloTest};
use crate::topology::Family;

pub(super) fn tests() -> Vec<Test> {
    let mut v = SoloTest::new(PROGRAM, "sockopt-errors")
        .ao()
        .requires(&[Feature::TcpMd5])
        .build(sockopt_errors);
    v.extend(
        SoloTest::new(PROGRAM, "get-keys-short-optlen")
            .ao()
            .build(get_keys_short_optlen),
    );
    v.extend(
        SoloTest::new(PROGRAM, "listener-del-async-current-key")
            .ao()
            .build(del_async_current),
    );
    v
}

const SOL_TCP: i32 = 6;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const AF_UNIX: u16 = 1;

/// `r` must fail with `errno`.
fn want<T: std::fmt::Debug>(r: io::Result<T>, errno: Errno, what: &str) -> PeerResult {
    match r {
        Err(e) if e.raw_os_error() == Some(errno as i32) => Ok(()),
        r => Err(failure!("{what} returned {r:?}, expected {errno}")),
    }
}

/// Like [`want`] for tcpao-sys results.
fn want_sys<T: std::fmt::Debug>(r: tcpao_sys::Result<T>, errno: Errno, what: &str) -> PeerResult {
    match r {
        Err(e) if e.raw_os_error() == Some(errno as i32) => Ok(()),
        r => Err(failure!("{what} returned {r:?}, expected {errno}")),
    }
}

/// Write a `sockaddr_in`/`sockaddr_in6` of `family` with `addr` (16 bytes for IPv6, the first
/// 4 for IPv4) and `port` at `at` of `buf`.
fn put_addr(buf: &mut [u8], at: usize, family: u16, addr: IpAddr, port: u16) {
    buf[at..at + 2].copy_from_slice(&family.to_ne_bytes());
    buf[at + 2..at + 4].copy_from_slice(&port.to_be_bytes());
    match (family, addr) {
        (AF_INET, IpAddr::V4(a)) => buf[at + 4..at + 8].copy_from_slice(&a.octets()),
        (AF_INET6, IpAddr::V6(a)) => buf[at + 8..at + 24].copy_from_slice(&a.octets()),
        (AF_INET6, IpAddr::V4(a)) => {
            buf[at + 8..at + 24].copy_from_slice(&a.to_ipv6_mapped().octets())
        }
        _ => {}
    }
}

fn family_of(f: Family) -> u16 {
    match f {
        Family::Ipv4 => AF_INET,
        Family::Ipv6 => AF_INET6,
    }
}

/// A `struct tcp_ao_add` for `addr/prefix` (port `port`), IDs `id:id`, `hmac(sha1)`.
fn add_bytes(family: u16, addr: IpAddr, prefix: u8, id: u8) -> Vec<u8> {
    let mut b = vec![0u8; size_of::<tcp_ao_add>()];
    put_addr(&mut b, offset_of!(tcp_ao_add, addr), family, addr, 0);
    let name = b"hmac(sha1)";
    let at = offset_of!(tcp_ao_add, alg_name);
    b[at..at + name.len()].copy_from_slice(name);
    b[offset_of!(tcp_ao_add, prefix)] = prefix;
    b[offset_of!(tcp_ao_add, sndid)] = id;
    b[offset_of!(tcp_ao_add, rcvid)] = id;
    b[offset_of!(tcp_ao_add, keylen)] = 16;
    b
}

/// A `struct tcp_ao_getsockopt` asking for one key (`nkeys` = 1).
fn getkeys_bytes(family: u16, addr: Option<IpAddr>, prefix: u8, bits: u16) -> Vec<u8> {
    let mut b = vec![0u8; size_of::<tcp_ao_getsockopt>()];
    let at = offset_of!(tcp_ao_getsockopt, addr);
    match addr {
        Some(a) => put_addr(&mut b, at, family, a, 0),
        None => b[at..at + 2].copy_from_slice(&family.to_ne_bytes()),
    }
    let n = offset_of!(tcp_ao_getsockopt, nkeys);
    b[n..n + 4].copy_from_slice(&1u32.to_ne_bytes());
    let f = offset_of!(tcp_ao_getsockopt, bitfield);
    b[f..f + 2].copy_from_slice(&bits.to_ne_bytes());
    b[offset_of!(tcp_ao_getsockopt, prefix)] = prefix;
    b
}

fn get_keys(sk: &Socket, mut buf: Vec<u8>) -> io::Result<Option<i32>> {
    tcpao_sys::raw::getsockopt_bytes(
        sk,
        SOL_TCP,
        uapi::TCP_AO_GET_KEYS,
        Some(&mut buf),
        tcpao_sys::raw::OptLen::Buffer,
    )
}

fn sockopt_errors(s: &Solo) -> PeerResult {
    let fam = s.family();
    let af = family_of(fam);
    let peer = s.remote_addr();
    let raw_set = |sk: &Socket, name: i32, b: &[u8], len: Option<u32>| {
        tcpao_sys::raw::setsockopt_bytes(sk, SOL_TCP, name, Some(b), len)
    };

    // TCP_AO_REPAIR.
    let sk = sockets::tcp_socket(fam)?;
    want_sys(
        sk.ao_repair(),
        Errno::EPERM,
        "TCP_AO_REPAIR get outside repair mode",
    )?;
    let repair_image = AoRepair {
        snt_isn: 1,
        rcv_isn: 2,
        snd_sne: 0,
        rcv_sne: 0,
    };
    want_sys(
        sk.set_ao_repair(&repair_image),
        Errno::EPERM,
        "TCP_AO_REPAIR set outside repair mode",
    )?;
    repair::set_repair(&sk, RepairMode::On).or_fail("TCP_REPAIR on failed")?;
    want_sys(
        sk.ao_repair(),
        Errno::ENOENT,
        "TCP_AO_REPAIR get without TCP-AO state",
    )?;
    want_sys(
        sk.set_ao_repair(&repair_image),
        Errno::ENOENT,
        "TCP_AO_REPAIR set without TCP-AO state",
    )?;
    let img = vec![0u8; size_of::<tcp_ao_repair>() + 8];
    want(
        raw_set(&sk, uapi::TCP_AO_REPAIR, &img, Some(8)),
        Errno::EINVAL,
        "TCP_AO_REPAIR set with optlen 8",
    )?;
    let mut tail = img.clone();
    let last = tail.len() - 1;
    tail[last] = 1;
    want(
        raw_set(&sk, uapi::TCP_AO_REPAIR, &tail, None),
        Errno::E2BIG,
        "TCP_AO_REPAIR set with a non-zero byte past the struct",
    )?;
    let mut buf = vec![0u8; size_of::<tcp_ao_repair>()];
    want(
        tcpao_sys::raw::getsockopt_bytes(
            &sk,
            SOL_TCP,
            uapi::TCP_AO_REPAIR,
            Some(&mut buf),
            tcpao_sys::raw::OptLen::Value(0),
        ),
        Errno::EINVAL,
        "TCP_AO_REPAIR get with optlen 0",
    )?;
    drop(sk);

    // TCP_AO_INFO get and TCP_AO_GET_KEYS on a socket with one key.
    let sk = sockets::tcp_socket(fam)?;
    sk.add_ao_key(&TestKey::new(peer, 100, 100).to_ao_key()?)
        .or_fail("adding key 100:100 failed")?;
    let mut info = vec![0u8; size_of::<tcp_ao_info_opt>()];
    want(
        tcpao_sys::raw::getsockopt_bytes(
            &sk,
            SOL_TCP,
            uapi::TCP_AO_INFO,
            Some(&mut info),
            tcpao_sys::raw::OptLen::Value(0),
        ),
        Errno::EINVAL,
        "TCP_AO_INFO get with optlen 0",
    )?;
    let f = offset_of!(tcp_ao_info_opt, bitfield);
    info[f..f + 4].copy_from_slice(&(1u32 << 5).to_ne_bytes());
    want(
        tcpao_sys::raw::getsockopt_bytes(
            &sk,
            SOL_TCP,
            uapi::TCP_AO_INFO,
            Some(&mut info),
            tcpao_sys::raw::OptLen::Buffer,
        ),
        Errno::EINVAL,
        "TCP_AO_INFO get with a reserved bit set",
    )?;
    let mut keys = getkeys_bytes(af, Some(peer), fam.host_prefix(), 0);
    want(
        tcpao_sys::raw::getsockopt_bytes(
            &sk,
            SOL_TCP,
            uapi::TCP_AO_GET_KEYS,
            Some(&mut keys),
            tcpao_sys::raw::OptLen::Value(0),
        ),
        Errno::EINVAL,
        "TCP_AO_GET_KEYS with optlen 0",
    )?;
    want(
        get_keys(&sk, getkeys_bytes(AF_UNIX, None, 0, 0)),
        Errno::EAFNOSUPPORT,
        "TCP_AO_GET_KEYS with an AF_UNIX address",
    )?;
    want(
        get_keys(&sk, getkeys_bytes(0, None, 0, 0)),
        Errno::EAFNOSUPPORT,
        "TCP_AO_GET_KEYS without address family or get_all",
    )?;
    want(
        get_keys(&sk, getkeys_bytes(af, None, 0, tcp_ao_getsockopt::GET_ALL)),
        Errno::EINVAL,
        "TCP_AO_GET_KEYS with get_all and an address family",
    )?;
    if fam == Family::Ipv6 {
        let v4 = |a: [u8; 4]| IpAddr::V4(Ipv4Addr::from(a));
        for (addr, prefix, what) in [
            (v4([10, 0, 0, 0]), 33, "::ffff:10.0.0.0/33"),
            (v4([0, 0, 0, 0]), 8, "::ffff:0.0.0.0/8"),
            (v4([10, 0, 0, 1]), 8, "::ffff:10.0.0.1/8 (host bits)"),
        ] {
            want(
                get_keys(&sk, getkeys_bytes(AF_INET6, Some(addr), prefix, 0)),
                Errno::EINVAL,
                &format!("TCP_AO_GET_KEYS for {what}"),
            )?;
            want(
                raw_set(
                    &sk,
                    uapi::TCP_AO_ADD_KEY,
                    &add_bytes(AF_INET6, addr, prefix, 7),
                    None,
                ),
                Errno::EINVAL,
                &format!("TCP_AO_ADD_KEY for {what}"),
            )?;
        }
    }
    // TCP_AO_ADD_KEY bound to lo, which is no L3 master (VRF).
    want_sys(
        sk.add_ao_key(&TestKey::new(peer, 8, 8).to_ao_key()?.vrf(1)),
        Errno::EINVAL,
        "TCP_AO_ADD_KEY with TCP_AO_KEYF_IFINDEX and lo",
    )?;
    // TCP_AO_DEL_KEY: a port, another prefix, (IPv6) another family with the same IDs.
    let mut del = vec![0u8; size_of::<tcp_ao_del>()];
    put_addr(&mut del, offset_of!(tcp_ao_del, addr), af, peer, 179);
    del[offset_of!(tcp_ao_del, prefix)] = fam.host_prefix();
    del[offset_of!(tcp_ao_del, sndid)] = 100;
    del[offset_of!(tcp_ao_del, rcvid)] = 100;
    want(
        raw_set(&sk, uapi::TCP_AO_DEL_KEY, &del, None),
        Errno::EINVAL,
        "TCP_AO_DEL_KEY with port 179",
    )?;
    let net = match peer {
        IpAddr::V4(a) => {
            let o = a.octets();
            IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], 0))
        }
        IpAddr::V6(a) => {
            let mut o = a.octets();
            o[8..].fill(0);
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    let wider = TestKey::new(net, 100, 100).prefix(net, if fam == Family::Ipv4 { 24 } else { 64 });
    want_sys(
        sk.del_ao_key(&wider.to_ao_key()?.selector()),
        Errno::ENOENT,
        "TCP_AO_DEL_KEY of key 100:100 with another prefix",
    )?;
    if fam == Family::Ipv6 {
        let mapped = TestKey::new(Family::Ipv4.server_addr(), 100, 100);
        want_sys(
            sk.del_ao_key(&mapped.to_ao_key()?.selector()),
            Errno::ENOENT,
            "TCP_AO_DEL_KEY of key 100:100 (an IPv6 key) with an IPv4-mapped address",
        )?;
    }
    drop(sk);
    let sk = sockets::tcp_socket(fam)?;
    want_sys(
        sk.del_ao_key(&TestKey::new(peer, 100, 100).to_ao_key()?.selector()),
        Errno::ENOENT,
        "TCP_AO_DEL_KEY on a socket without TCP-AO state",
    )?;
    // ao_required next to TCP-MD5 state without keys.
    sk.add_ao_key(&TestKey::new(peer, 100, 100).to_ao_key()?)
        .or_fail("adding key 100:100 failed")?;
    let other = PeerPrefix::new(fam.wrong_addr(), fam.host_prefix()).or_fail("a prefix")?;
    sk.add_md5_key(&Md5Key {
        peer: other,
        vrf: None,
        key: tcpao_sys::MasterKey::new(b"md5 secret").or_fail("an MD5 key")?,
    })
    .or_fail("adding a TCP-MD5 key for another peer failed")?;
    sk.del_md5_key(&other, None)
        .or_fail("deleting the TCP-MD5 key failed")?;
    sk.set_ao_required(true)
        .or_fail("ao_required with TCP-MD5 state but no TCP-MD5 key was refused")?;
    s.diag("every errno as expected");
    Ok(())
}

/// The `optlen`s shorter than `struct tcp_ao_getsockopt` that `get-keys-short-optlen` tries:
/// one byte (half the address family), the family alone, inside the address, the whole
/// `sockaddr_storage`, up to `nkeys`, and stopping inside `nkeys`.
const SHORT_OPTLENS: [usize; 8] = [1, 2, 4, 16, 128, 271, 272, 275];

/// `TCP_AO_GET_KEYS` with each of [`SHORT_OPTLENS`]: succeeds, reports the kernel's struct
/// size, and leaves every byte past `optlen` as it was.
fn get_keys_short_optlen(s: &Solo) -> PeerResult {
    const CANARY: u8 = 0xa5;
    let fam = s.family();
    let ksize = size_of::<tcp_ao_getsockopt>();
    let nkeys = offset_of!(tcp_ao_getsockopt, nkeys)..offset_of!(tcp_ao_getsockopt, nkeys) + 4;
    let sk = sockets::tcp_socket(fam)?;
    sk.add_ao_key(&TestKey::new(s.remote_addr(), 100, 100).to_ao_key()?)
        .or_fail("adding key 100:100 failed")?;
    let mut past_optlen = Vec::new();
    for optlen in SHORT_OPTLENS {
        // The request the kernel reads: the family, then zeros (any address, prefix 0);
        // everything after `optlen` is a canary.
        let mut buf = vec![CANARY; ksize + 16];
        buf[..optlen].fill(0);
        let fam_bytes = family_of(fam).to_ne_bytes();
        let n = optlen.min(2);
        buf[..n].copy_from_slice(&fam_bytes[..n]);
        let len = i32::try_from(optlen).or_fail("optlen")?;
        let got = tcpao_sys::raw::getsockopt_bytes(
            &sk,
            SOL_TCP,
            uapi::TCP_AO_GET_KEYS,
            Some(&mut buf),
            tcpao_sys::raw::OptLen::Value(len),
        );
        match got {
            Ok(Some(out)) if usize::try_from(out) == Ok(ksize) => {}
            r => {
                return Err(failure!(
                    "TCP_AO_GET_KEYS with optlen {optlen} returned {r:?}, expected success and \
                     optlen {ksize} (the kernel's struct size)"
                ));
            }
        }
        let written: Vec<usize> = (optlen..buf.len()).filter(|&i| buf[i] != CANARY).collect();
        if written.iter().any(|i| !nkeys.contains(i)) {
            return Err(failure!(
                "TCP_AO_GET_KEYS with optlen {optlen} wrote bytes {written:?} past optlen"
            ));
        }
        if !written.is_empty() {
            past_optlen.push(optlen);
        }
    }
    s.diag(format!(
        "optlen {SHORT_OPTLENS:?}: each succeeded and reported optlen {ksize}"
    ));
    if past_optlen.is_empty() {
        return Ok(());
    }
    Err(Failure::XFail(format!(
        "TCP_AO_GET_KEYS wrote nkeys (bytes {}-{}) past optlen {past_optlen:?} \
         (tcp_ao_copy_mkts_to_user(); docs/kernel-findings.md, finding 6)",
        nkeys.start,
        nkeys.end - 1
    )))
}

/// A key made Current_key and RNext_key on a closed socket stays so after `listen()`;
/// deleting it with `del_async` clears both.
fn del_async_current(s: &Solo) -> PeerResult {
    let fam = s.family();
    let sk = sockets::tcp_socket(fam)?;
    let a = TestKey::new(s.remote_addr(), 100, 100);
    sk.add_ao_key(&a.to_ao_key()?.set_current(true).set_rnext(true))
        .or_fail("adding key 100:100 as Current_key and RNext_key failed")?;
    sk.add_ao_key(&TestKey::new(s.remote_addr(), 101, 101).to_ao_key()?)
        .or_fail("adding key 101:101 failed")?;
    sk.bind(&socket2::SockAddr::from(std::net::SocketAddr::new(
        s.local_addr(),
        7010,
    )))
    .or_fail("bind() failed")?;
    sk.listen(1).or_fail("listen() failed")?;
    let info = sk
        .ao_info()
        .or_fail("getsockopt(TCP_AO_INFO) failed")?
        .ok_or_else(|| failure!("no TCP-AO state"))?;
    if (info.current_key, info.rnext_key) != (Some(100), Some(100)) {
        return Err(failure!(
            "the listener reports Current_key {:?} RNext_key {:?}, expected 100/100 (set before listen())",
            info.current_key,
            info.rnext_key
        ));
    }
    sk.del_ao_key_async(&a.to_ao_key()?.selector())
        .or_fail("TCP_AO_DEL_KEY with del_async of key 100:100 failed")?;
    let info = sk
        .ao_info()
        .or_fail("getsockopt(TCP_AO_INFO) failed")?
        .ok_or_else(|| failure!("no TCP-AO state"))?;
    if (info.current_key, info.rnext_key) != (None, None) {
        return Err(failure!(
            "after del_async of its Current_key/RNext_key the listener reports {:?}/{:?}, expected none",
            info.current_key,
            info.rnext_key
        ));
    }
    let left: Vec<u8> = sk
        .ao_keys(&tcpao_sys::KeyFilter::All)
        .or_fail("getsockopt(TCP_AO_GET_KEYS) failed")?
        .iter()
        .map(|k| k.selector.send_id)
        .collect();
    if left != [101] {
        return Err(failure!(
            "after del_async the listener has keys {left:?}, expected [101]"
        ));
    }
    Ok(())
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! `TCP_AO_DEL_KEY` on a socket holding the default key 100:100: the extensible struct,
//! every field the kernel must refuse ([`BROKEN`], one row each), and the deletes the typed
//! API drives (replacing current/rnext, listeners, VRF-bound keys).

use nix::libc;
use tcpao_sys::raw;
use tcpao_sys::uapi::{SOL_TCP, TCP_AO_ADD_KEY, TCP_AO_DEL_KEY, tcp_ao_del};
use tcpao_sys::{Error, KeySelector, PeerPrefix, TcpAoExt};

use super::{
    Body, Broken, EXTEND, PROGRAM, default_add, default_del, extended, register_option, setopt,
    socket, socket_with_default_key,
};
use crate::failure;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::programs::sockopt::{
    add_verified, default_key, expect_errno, expect_error, expect_keys, expect_ok, is_os,
    make_listen, sockaddr, typed_ok,
};
use crate::registry::Test;
use crate::sockets::DEFAULT_TEST_PASSWORD;
use crate::solo::{Solo, SoloTest};
use crate::topology::Family;

/// The option's tests.
pub fn tests() -> Vec<Test> {
    let mut v = register_option(CASES, BROKEN, broken);
    for (name, vrf_bound) in [
        ("key-del-vrf-bound-key", true),
        ("key-del-default-vrf-key", false),
    ] {
        v.extend(
            SoloTest::new(PROGRAM, name)
                .ao()
                .vrf()
                .build(move |s| vrf_key(s, vrf_bound)),
        );
    }
    v
}

/// One row per field the kernel must refuse in the default key's `tcp_ao_del`; "key del:
/// {what}".
pub const BROKEN: &[Broken<tcp_ao_del>] = &[
    Broken {
        name: "key-del-using-reserved-padding",
        what: "using reserved padding",
        set: |d, _| d.bitfield |= 1 << tcp_ao_del::RESERVED.trailing_zeros(),
        errno: libc::EINVAL,
        typed: None,
    },
    Broken {
        name: "key-del-using-reserved2-padding",
        what: "using reserved2 padding",
        set: |d, _| d.reserved2 = 1,
        errno: libc::EINVAL,
        typed: None,
    },
    Broken {
        name: "key-del-bad-key-flags",
        what: "bad key flags",
        set: |d, _| d.keyflags = 0xff,
        errno: libc::EINVAL,
        typed: None,
    },
    Broken {
        name: "key-del-ifindex-without-keyf-ifindex",
        what: "ifindex without TCP_AO_KEYF_IFINDEX",
        set: |d, _| d.ifindex = 42,
        errno: libc::EINVAL,
        typed: None,
    },
];

/// Send the broken delete; the kernel must answer the row's errno and keep the key.
fn broken(s: &Solo, row: &Broken<tcp_ao_del>) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut d = default_del(s);
    (row.set)(&mut d, s);
    expect_errno(
        &format!("key del: {}", row.what),
        setopt(&sk, TCP_AO_DEL_KEY, d.as_bytes(), None),
        row.errno,
    )?;
    expect_keys(&sk, &[(100, 100)])
}

/// The cases that are not one broken field.
const CASES: &[(&str, Body)] = &[
    ("ao-del-minimum-size", minimum_size),
    ("ao-del-extended-size", extended_size),
    ("ao-del-null-optval", null_optval),
    ("ao-del-nonzero-trailing-bytes", nonzero_trailing_bytes),
    ("key-del-and-set-current-key-on-a-listen-socket", |s| {
        on_listen(s, true, false)
    }),
    ("key-del-and-set-rnext-key-on-a-listen-socket", |s| {
        on_listen(s, false, true)
    }),
    (
        "key-del-and-set-current-rnext-key-on-a-listen-socket",
        |s| on_listen(s, true, true),
    ),
    ("key-del-non-existent-vrf", non_existent_vrf),
    ("key-del-set-non-existing-current-key", |s| {
        set_missing(s, true, false)
    }),
    ("key-del-set-non-existing-rnext-key", |s| {
        set_missing(s, false, true)
    }),
    ("key-del-set-non-existing-current-rnext-key", |s| {
        set_missing(s, true, true)
    }),
    ("key-del-set-current-key", |s| set_existing(s, true, false)),
    ("key-del-set-rnext-key", |s| set_existing(s, false, true)),
    ("key-del-set-current-rnext-key", |s| {
        set_existing(s, true, true)
    }),
    ("key-del-set-as-current-key-to-be-removed", |s| {
        set_self(s, true, false)
    }),
    ("key-del-set-as-rnext-key-to-be-removed", |s| {
        set_self(s, false, true)
    }),
    ("key-del-set-as-current-rnext-key-to-be-removed", |s| {
        set_self(s, true, true)
    }),
    ("key-del-async-on-non-listen", async_non_listen),
    ("key-del-non-existing-sndid", |s| wrong(s, 101, 100, false)),
    ("key-del-non-existing-rcvid", |s| wrong(s, 100, 101, false)),
    ("key-del-incorrect-addr", |s| wrong(s, 100, 100, true)),
    ("key-del-correct-key-delete", correct),
    ("key-del-ipv4-mapped-address", v4_mapped),
    ("key-del-address-family-not-checked", family_unchecked),
];

fn minimum_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let len = std::mem::offset_of!(tcp_ao_del, keyflags) as u32;
    expect_errno(
        "AO del: minimum size (optlen = offsetof(keyflags))",
        setopt(&sk, TCP_AO_DEL_KEY, default_del(s).as_bytes(), Some(len)),
        libc::EINVAL,
    )?;
    expect_keys(&sk, &[(100, 100)])
}

fn extended_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let b = extended(default_del(s).as_bytes());
    expect_ok(
        "AO del: extended size",
        setopt(&sk, TCP_AO_DEL_KEY, &b, None),
    )?;
    expect_keys(&sk, &[])
}

fn null_optval(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_errno(
        "AO del: null optval",
        raw::setsockopt_bytes(
            &sk,
            SOL_TCP,
            TCP_AO_DEL_KEY,
            None,
            Some((size_of::<tcp_ao_del>() + EXTEND) as u32),
        ),
        libc::EFAULT,
    )
}

/// `copy_struct_from_sockptr`: a longer struct whose extra bytes are not zero is `E2BIG`.
fn nonzero_trailing_bytes(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = extended(default_del(s).as_bytes());
    let last = b.len() - 1;
    b[last] = 0xff;
    expect_errno(
        "AO del: a struct longer than the kernel's with a non-zero trailing byte",
        setopt(&sk, TCP_AO_DEL_KEY, &b, None),
        libc::E2BIG,
    )?;
    expect_keys(&sk, &[(100, 100)])
}

fn sel(s: &Solo, send_id: u8, recv_id: u8) -> PeerResult<KeySelector> {
    Ok(KeySelector::new(
        PeerPrefix::host(s.remote_addr()).or_fail("invalid prefix")?,
        send_id,
        recv_id,
    ))
}

fn non_existent_vrf(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut sl = sel(s, 100, 100)?;
    sl.vrf = Some(42);
    expect_error(
        "key del: non-existent VRF (fails late, at lookup)",
        sk.del_ao_key(&sl),
        "Error::NotFound (ENOENT)",
        |e| matches!(e, Error::NotFound { .. }),
    )?;
    expect_keys(&sk, &[(100, 100)])
}

fn on_listen(s: &Solo, current: bool, rnext: bool) -> PeerResult {
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
    expect_keys(&sk, &[(0, 0), (100, 100)])
}

fn set_missing(s: &Solo, current: bool, rnext: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_error(
        "key del: set non-existing current/rnext key",
        sk.del_ao_key_replacing(&sel(s, 100, 100)?, current.then_some(0), rnext.then_some(0)),
        "Error::NotFound (ENOENT)",
        |e| matches!(e, Error::NotFound { .. }),
    )?;
    expect_keys(&sk, &[(100, 100)])
}

fn set_existing(s: &Solo, current: bool, rnext: bool) -> PeerResult {
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
    expect_keys(&sk, &[(0, 0)])?;
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

fn set_self(s: &Solo, current: bool, rnext: bool) -> PeerResult {
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
    expect_keys(&sk, &[(100, 100)])
}

fn async_non_listen(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_error(
        "key del: async on non-listen",
        sk.del_ao_key_async(&sel(s, 100, 100)?),
        "Error::Os with EINVAL",
        |e| is_os(e, libc::EINVAL),
    )?;
    expect_keys(&sk, &[(100, 100)])
}

fn wrong(s: &Solo, send_id: u8, recv_id: u8, wrong_addr: bool) -> PeerResult {
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
    expect_keys(&sk, &[(100, 100)])
}

fn correct(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    typed_ok(
        "key del: correct key delete",
        sk.del_ao_key(&sel(s, 100, 100)?),
    )?;
    expect_keys(&sk, &[])
}

/// Deleting by an IPv4-mapped address. On an IPv6 socket a v4-mapped key is stored as IPv4
/// and the delete folds the mapped address the same way. On an IPv4 socket the kernel reads
/// any `tcp_ao_del.addr` as a `sockaddr_in`: the v4-mapped `sockaddr_in6` names 0.0.0.0 there
/// (its flowinfo), so nothing matches.
fn v4_mapped(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    let v4 = Family::Ipv4.server_addr();
    let std::net::IpAddr::V4(v4a) = v4 else {
        unreachable!("an IPv4 test address")
    };
    let mapped = std::net::IpAddr::V6(v4a.to_ipv6_mapped());
    let mut del = default_del(s);
    del.addr = sockaddr(libc::AF_INET6, Some(mapped), 0);
    del.prefix = 32;
    match s.family() {
        Family::Ipv6 => {
            // Added as ::ffff:10.0.254.1 with the IPv4 prefix, raw.
            let mut add = default_add(s);
            add.addr = sockaddr(libc::AF_INET6, Some(mapped), 0);
            add.prefix = 32;
            expect_ok(
                "key add: v4-mapped",
                setopt(&sk, TCP_AO_ADD_KEY, add.as_bytes(), None),
            )?;
            expect_ok(
                "key del: by the v4-mapped address",
                setopt(&sk, TCP_AO_DEL_KEY, del.as_bytes(), None),
            )?;
            expect_keys(&sk, &[])?;
            // The typed API folds the same way (IPv4 selector on an IPv6 socket).
            add_verified(
                &sk,
                &default_key(v4, 100, 100)?,
                DEFAULT_TEST_PASSWORD.as_bytes(),
            )?;
            let sl = KeySelector::new(PeerPrefix::new(mapped, 128).or_fail("prefix")?, 100, 100);
            typed_ok("typed del by ::ffff:10.0.254.1/128", sk.del_ao_key(&sl))?;
            expect_keys(&sk, &[])
        }
        Family::Ipv4 => {
            add_verified(
                &sk,
                &default_key(v4, 100, 100)?,
                DEFAULT_TEST_PASSWORD.as_bytes(),
            )?;
            expect_errno(
                "key del: a v4-mapped sockaddr_in6 on an IPv4 socket",
                setopt(&sk, TCP_AO_DEL_KEY, del.as_bytes(), None),
                libc::ENOENT,
            )?;
            expect_keys(&sk, &[(100, 100)])
        }
    }
}

/// `TCP_AO_DEL_KEY` never looks at `ss_family`: a valid address under `AF_UNIX` deletes the
/// key (unlike `TCP_AO_ADD_KEY`, which checks it).
fn family_unchecked(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut del = default_del(s);
    del.addr.ss_family = libc::AF_UNIX as u16;
    expect_ok(
        "key del: ss_family AF_UNIX around the key's address (the kernel does not check it)",
        setopt(&sk, TCP_AO_DEL_KEY, del.as_bytes(), None),
    )?;
    expect_keys(&sk, &[])
}

/// Keys bound to a VRF (`TCP_AO_KEYF_IFINDEX`). `vrf_bound`: ifindex 200 (a real VRF);
/// otherwise ifindex 0 with the flag (default VRF only).
fn vrf_key(s: &Solo, vrf_bound: bool) -> PeerResult {
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
        Ok(()) => expect_keys(&sk, &[]),
        Err(Error::NotFound { .. }) if vrf_bound => {
            expect_keys(&sk, &[(100, 100)])?;
            Err(Failure::XFail(format!(
                "a key bound to VRF ifindex {ifindex} cannot be deleted (ENOENT): tcp_ao_del_cmd() compares key->l3index with a local l3index that is never set from tcp_ao_del.ifindex"
            )))
        }
        Err(e) => Err(failure!(
            "deleting the key with TCP_AO_KEYF_IFINDEX ifindex {ifindex} failed: {e}"
        )),
    }
}

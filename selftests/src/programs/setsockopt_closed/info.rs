// SPDX-License-Identifier: MIT OR Apache-2.0
//! `TCP_AO_INFO` on a socket holding the default key 100:100: the extensible struct both
//! ways, the fields the kernel must refuse ([`BROKEN`]), and setting then reading back
//! current/rnext, the flags and the counters, raw and typed.

use std::mem::offset_of;

use nix::libc;
use socket2::Socket;
use tcpao_sys::raw::OptLen;
use tcpao_sys::uapi::{TCP_AO_INFO, tcp_ao_info_opt};
use tcpao_sys::{AoCounters, Error, MasterKey, Md5Ext, Md5Key, PeerPrefix, TcpAoExt};

use super::{
    Body, Broken, EXTEND, PROGRAM, extended, getopt, register_option, setopt,
    socket_with_default_key,
};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::probe::Feature;
use crate::programs::sockopt::{
    expect_errno, expect_error, expect_ok, is_os, make_listen, typed_ok,
};
use crate::registry::Test;
use crate::solo::{Solo, SoloTest};

/// The option's tests.
pub fn tests() -> Vec<Test> {
    let mut v = register_option(CASES, BROKEN, broken);
    v.extend(
        SoloTest::new(PROGRAM, "ao-info-set-ao-required-with-md5-key")
            .ao()
            .requires(&[Feature::TcpMd5])
            .build(required_with_md5),
    );
    v
}

/// One row per field the kernel must refuse in an empty `tcp_ao_info_opt`; "AO info set:
/// {what}".
pub const BROKEN: &[Broken<tcp_ao_info_opt>] = &[
    Broken {
        name: "ao-info-set-using-reserved-padding",
        what: "using reserved padding",
        set: |i, _| i.bitfield |= 1 << tcp_ao_info_opt::RESERVED.trailing_zeros(),
        errno: libc::EINVAL,
        typed: None,
    },
    Broken {
        name: "ao-info-set-using-reserved2-padding",
        what: "using reserved2 padding",
        set: |i, _| i.reserved2 = 1,
        errno: libc::EINVAL,
        typed: None,
    },
];

fn broken(s: &Solo, row: &Broken<tcp_ao_info_opt>) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut i = tcp_ao_info_opt::default();
    (row.set)(&mut i, s);
    expect_errno(
        &format!("AO info set: {}", row.what),
        setopt(&sk, TCP_AO_INFO, i.as_bytes(), None),
        row.errno,
    )
}

/// The cases that are not one broken field.
const CASES: &[(&str, Body)] = &[
    ("ao-set-info-minimum-size", set_minimum_size),
    ("ao-set-info-extended-size", set_extended_size),
    ("ao-info-get-extended-size", set_extended_then_get),
    ("ao-set-info-null-optval", set_null_optval),
    ("ao-get-info-minimum-size", get_minimum_size),
    ("ao-get-info-extended-size", get_extended_size),
    ("ao-get-info-null-optval", get_null_optval),
    ("ao-get-info-null-optlen", get_null_optlen),
    ("ao-set-info-nonzero-trailing-bytes", set_nonzero_trailing),
    ("ao-get-info-nonzero-trailing-bytes", get_nonzero_trailing),
    ("ao-info-set-current-key-on-a-listen-socket", |s| {
        on_listen(s, true, false)
    }),
    ("ao-info-set-rnext-key-on-a-listen-socket", |s| {
        on_listen(s, false, true)
    }),
    ("ao-info-set-current-rnext-key-on-a-listen-socket", |s| {
        on_listen(s, true, true)
    }),
    ("ao-info-set-accept-icmps", |s| {
        flag(s, false, Flag::AcceptIcmps)
    }),
    ("ao-info-get-accept-icmps", |s| {
        flag(s, true, Flag::AcceptIcmps)
    }),
    ("ao-info-set-ao-required", |s| {
        flag(s, false, Flag::AoRequired)
    }),
    ("ao-info-get-ao-required", |s| {
        flag(s, true, Flag::AoRequired)
    }),
    ("ao-info-set-set-non-existing-current-key", |s| {
        missing(s, true, false)
    }),
    ("ao-info-set-set-non-existing-rnext-key", |s| {
        missing(s, false, true)
    }),
    ("ao-info-set-set-non-existing-current-rnext-key", |s| {
        missing(s, true, true)
    }),
    ("ao-info-set-set-current-key", |s| {
        set_keys(s, false, true, false)
    }),
    ("ao-info-get-set-current-key", |s| {
        set_keys(s, true, true, false)
    }),
    ("ao-info-set-set-rnext-key", |s| {
        set_keys(s, false, false, true)
    }),
    ("ao-info-get-set-rnext-key", |s| {
        set_keys(s, true, false, true)
    }),
    ("ao-info-set-set-current-rnext-key", |s| {
        set_keys(s, false, true, true)
    }),
    ("ao-info-get-set-current-rnext-key", |s| {
        set_keys(s, true, true, true)
    }),
    ("ao-info-set-set-counters", |s| counters(s, false)),
    ("ao-info-get-set-counters", |s| counters(s, true)),
    ("ao-info-set-no-op", |s| noop(s, false)),
    ("ao-info-get-no-op", |s| noop(s, true)),
    (
        "ao-info-set-raw-set-current-clears-ao-required",
        rmw_trap_raw,
    ),
    ("ao-info-set-typed-set-current-keeps-flags", rmw_typed),
];

const INFO_SIZE: usize = size_of::<tcp_ao_info_opt>();

fn set_minimum_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let len = offset_of!(tcp_ao_info_opt, pkt_dropped_icmp) as u32;
    expect_errno(
        "AO set info: minimum size (optlen = offsetof(pkt_dropped_icmp))",
        setopt(
            &sk,
            TCP_AO_INFO,
            tcp_ao_info_opt::default().as_bytes(),
            Some(len),
        ),
        libc::EINVAL,
    )
}

fn set_extended_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let b = extended(tcp_ao_info_opt::default().as_bytes());
    expect_ok(
        "AO set info: extended size",
        setopt(&sk, TCP_AO_INFO, &b, None),
    )
}

fn set_extended_then_get(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let b = extended(tcp_ao_info_opt::default().as_bytes());
    expect_ok(
        "AO set info: extended size",
        setopt(&sk, TCP_AO_INFO, &b, None),
    )?;
    check_info(
        &sk,
        &tcp_ao_info_opt::default(),
        "AO info get: extended size",
    )
}

fn set_null_optval(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    expect_errno(
        "AO set info: null optval",
        tcpao_sys::raw::setsockopt_bytes(
            &sk,
            tcpao_sys::uapi::SOL_TCP,
            TCP_AO_INFO,
            None,
            Some((INFO_SIZE + EXTEND) as u32),
        ),
        libc::EFAULT,
    )
}

fn get_minimum_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = vec![0u8; INFO_SIZE];
    expect_errno(
        "AO get info: minimum size (optlen = -1)",
        getopt(&sk, TCP_AO_INFO, Some(&mut b), OptLen::Value(-1)),
        libc::EINVAL,
    )
}

fn get_extended_size(s: &Solo) -> PeerResult {
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

fn get_null_optval(s: &Solo) -> PeerResult {
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

fn get_null_optlen(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = vec![0u8; INFO_SIZE + EXTEND];
    expect_errno(
        "AO get info: null optlen",
        getopt(&sk, TCP_AO_INFO, Some(&mut b), OptLen::Null),
        libc::EFAULT,
    )
}

/// `copy_struct_from_sockptr`: a longer struct whose extra bytes are not zero is `E2BIG`.
fn set_nonzero_trailing(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let i = tcp_ao_info_opt {
        bitfield: tcp_ao_info_opt::AO_REQUIRED,
        ..Default::default()
    };
    let mut b = extended(i.as_bytes());
    b[INFO_SIZE] = 1;
    expect_errno(
        "AO set info: a struct longer than the kernel's with a non-zero trailing byte",
        setopt(&sk, TCP_AO_INFO, &b, None),
        libc::E2BIG,
    )?;
    let info = typed_ok("getsockopt(TCP_AO_INFO)", sk.ao_info())?;
    if info.is_some_and(|i| i.ao_required) {
        return Err(failure!("AO set info: the refused call set ao_required"));
    }
    Ok(())
}

fn get_nonzero_trailing(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = vec![0u8; INFO_SIZE + EXTEND];
    b[INFO_SIZE + 3] = 7;
    expect_errno(
        "AO get info: a struct longer than the kernel's with a non-zero trailing byte",
        getopt(&sk, TCP_AO_INFO, Some(&mut b), OptLen::Buffer),
        libc::E2BIG,
    )
}

/// Compare `TCP_AO_INFO` with what `set` asked for (kernel `test_vefify_ao_info`):
/// current/rnext when set, counters when set, and always the flags.
fn check_info(sk: &Socket, set: &tcp_ao_info_opt, tst: &str) -> PeerResult {
    let mut got = tcp_ao_info_opt::default();
    expect_ok(
        "getsockopt(TCP_AO_INFO)",
        getopt(sk, TCP_AO_INFO, Some(got.as_bytes_mut()), OptLen::Buffer),
    )?;
    let mut bad = Vec::new();
    if set.bitfield & tcp_ao_info_opt::SET_CURRENT != 0 && set.current_key != got.current_key {
        bad.push(format!(
            "current_key {} != {}",
            set.current_key, got.current_key
        ));
    }
    if set.bitfield & tcp_ao_info_opt::SET_RNEXT != 0 && set.rnext != got.rnext {
        bad.push(format!("rnext {} != {}", set.rnext, got.rnext));
    }
    if set.bitfield & tcp_ao_info_opt::SET_COUNTERS != 0 {
        for (name, a, b) in [
            ("pkt_good", set.pkt_good, got.pkt_good),
            ("pkt_bad", set.pkt_bad, got.pkt_bad),
            (
                "pkt_key_not_found",
                set.pkt_key_not_found,
                got.pkt_key_not_found,
            ),
            ("pkt_ao_required", set.pkt_ao_required, got.pkt_ao_required),
            (
                "pkt_dropped_icmp",
                set.pkt_dropped_icmp,
                got.pkt_dropped_icmp,
            ),
        ] {
            if a != b {
                bad.push(format!("{name} {a} != {b}"));
            }
        }
    }
    for (name, m) in [
        ("ao_required", tcp_ao_info_opt::AO_REQUIRED),
        ("accept_icmps", tcp_ao_info_opt::ACCEPT_ICMPS),
    ] {
        if set.bitfield & m != got.bitfield & m {
            bad.push(format!(
                "{name} {} != {}",
                set.bitfield & m != 0,
                got.bitfield & m != 0
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(failure!("{tst}: getsockopt(): {}", bad.join(", ")))
    }
}

fn on_listen(s: &Solo, current: bool, rnext: bool) -> PeerResult {
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
            let i = tcp_ao_info_opt {
                bitfield: tcp_ao_info_opt::SET_CURRENT | tcp_ao_info_opt::SET_RNEXT,
                ..Default::default()
            };
            expect_errno(
                "AO info set: set current+rnext key on a listen socket",
                setopt(&sk, TCP_AO_INFO, i.as_bytes(), None),
                libc::EINVAL,
            )
        }
    }
}

#[derive(Clone, Copy)]
enum Flag {
    AcceptIcmps,
    AoRequired,
}

fn flag(s: &Solo, get_back: bool, flag: Flag) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut want = tcp_ao_info_opt::default();
    match flag {
        Flag::AcceptIcmps => {
            typed_ok("AO info set: accept_icmps", sk.set_ao_accept_icmps(true))?;
            want.bitfield |= tcp_ao_info_opt::ACCEPT_ICMPS;
        }
        Flag::AoRequired => {
            typed_ok("AO info set: ao required", sk.set_ao_required(true))?;
            want.bitfield |= tcp_ao_info_opt::AO_REQUIRED;
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

fn required_with_md5(s: &Solo) -> PeerResult {
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

fn missing(s: &Solo, current: bool, rnext: bool) -> PeerResult {
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
            let i = tcp_ao_info_opt {
                bitfield: tcp_ao_info_opt::SET_CURRENT | tcp_ao_info_opt::SET_RNEXT,
                ..Default::default()
            };
            expect_errno(
                "AO info set: set non-existing current+rnext key",
                setopt(&sk, TCP_AO_INFO, i.as_bytes(), None),
                libc::ENOENT,
            )
        }
    }
}

fn set_keys(s: &Solo, get_back: bool, current: bool, rnext: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut want = tcp_ao_info_opt::default();
    match (current, rnext) {
        (true, false) => {
            typed_ok("AO info set: set current key", sk.set_ao_current_key(100))?;
            want.bitfield |= tcp_ao_info_opt::SET_CURRENT;
            want.current_key = 100;
        }
        (false, true) => {
            typed_ok("AO info set: set rnext key", sk.set_ao_rnext_key(100))?;
            want.bitfield |= tcp_ao_info_opt::SET_RNEXT;
            want.rnext = 100;
        }
        _ => {
            want.bitfield |= tcp_ao_info_opt::SET_CURRENT | tcp_ao_info_opt::SET_RNEXT;
            want.current_key = 100;
            want.rnext = 100;
            expect_ok(
                "AO info set: set current+rnext key",
                setopt(&sk, TCP_AO_INFO, want.as_bytes(), None),
            )?;
        }
    }
    if get_back {
        check_info(&sk, &want, "AO info get")?;
    }
    Ok(())
}

fn counters(s: &Solo, get_back: bool) -> PeerResult {
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
        let want = tcp_ao_info_opt {
            bitfield: tcp_ao_info_opt::SET_COUNTERS,
            pkt_good: c.good,
            pkt_bad: c.bad,
            pkt_key_not_found: c.key_not_found,
            pkt_ao_required: c.ao_required,
            pkt_dropped_icmp: c.dropped_icmp,
            ..Default::default()
        };
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

fn noop(s: &Solo, get_back: bool) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let i = tcp_ao_info_opt::default();
    expect_ok(
        "AO info set: no-op",
        setopt(&sk, TCP_AO_INFO, i.as_bytes(), None),
    )?;
    if get_back {
        check_info(&sk, &i, "AO info get")?;
    }
    Ok(())
}

/// The read-modify-write trap: `ao_required`/`accept_icmps` have no `set_` bit, so a raw
/// `TCP_AO_INFO` that only sets `set_current` clears them.
fn rmw_trap_raw(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    typed_ok("set ao_required", sk.set_ao_required(true))?;
    typed_ok("set accept_icmps", sk.set_ao_accept_icmps(true))?;
    let i = tcp_ao_info_opt {
        bitfield: tcp_ao_info_opt::SET_CURRENT,
        current_key: 100,
        ..Default::default()
    };
    expect_ok(
        "raw TCP_AO_INFO with only set_current",
        setopt(&sk, TCP_AO_INFO, i.as_bytes(), None),
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
fn rmw_typed(s: &Solo) -> PeerResult {
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

// SPDX-License-Identifier: MIT OR Apache-2.0
//! `TCP_AO_GET_KEYS` on a socket holding the default key 100:100: the extensible struct,
//! every filter the kernel must refuse ([`BROKEN`], one row each), the filters it must
//! answer, and a 16-key collection filtered by IDs, address and current/rnext.

use nix::libc;
use socket2::Socket;
use tcpao_sys::raw::OptLen;
use tcpao_sys::uapi::{TCP_AO_GET_KEYS, tcp_ao_getsockopt};
use tcpao_sys::{AoKey, Error, KeyFilter, KeySelector, PeerPrefix, TcpAoExt};
use zeroize::Zeroizing;

use super::{
    Body, Broken, EXTEND, default_get, extended, getopt, register_option, socket,
    socket_with_default_key,
};
use crate::failure;
use crate::outcome::PeerResult;
use crate::programs::sockopt::{
    DumpedKey, GET_SIZE, af, dump_all, expect_errno, expect_error, expect_ok, get_all,
    get_keys_raw, key_with, sockaddr, stored_key, typed_ok, verify_key,
};
use crate::registry::Test;
use crate::rng::{Rng, run_seed};
use crate::solo::Solo;

/// The option's tests.
pub fn tests() -> Vec<Test> {
    register_option(CASES, BROKEN, broken)
}

/// A filter the kernel must refuse with `EINVAL` ("get keys: {what}").
const fn einval(
    name: &'static str,
    what: &'static str,
    set: fn(&mut tcp_ao_getsockopt, &Solo),
) -> Broken<tcp_ao_getsockopt> {
    Broken {
        name,
        what,
        set,
        errno: libc::EINVAL,
        typed: None,
    }
}

/// An address filter (`get_all` cleared) for `ip`/`prefix`.
fn address_mode(g: &mut tcp_ao_getsockopt, s: &Solo, prefix: u8, ip: Option<std::net::IpAddr>) {
    g.bitfield = 0;
    g.prefix = prefix;
    g.addr = sockaddr(af(s.family()), ip, 0);
}

/// A field a key-selection mode must not be combined with.
#[derive(Clone, Copy)]
enum Field {
    Prefix,
    Addr,
    SndId,
    RcvId,
}

/// The key-selection mode `mode` (`get_all`, `is_current`, `is_rnext`) with `field` set.
fn mode_with(g: &mut tcp_ao_getsockopt, s: &Solo, mode: u16, field: Field) {
    g.bitfield = mode;
    match field {
        Field::Prefix => g.prefix = s.family().host_prefix(),
        Field::Addr => g.addr = sockaddr(af(s.family()), Some(s.remote_addr()), 0),
        Field::SndId => g.sndid = 1,
        Field::RcvId => g.rcvid = 1,
    }
}

const SELECTION: &str = "a key-selection mode combined with an address/ID field or another mode";
const GET_ALL: u16 = tcp_ao_getsockopt::GET_ALL;
const IS_CURRENT: u16 = tcp_ao_getsockopt::IS_CURRENT;
const IS_RNEXT: u16 = tcp_ao_getsockopt::IS_RNEXT;

/// One row per filter the kernel must refuse, starting from the `get_all` filter (kernel
/// `setsockopt-closed.c` `test_einval_get_keys`).
pub const BROKEN: &[Broken<tcp_ao_getsockopt>] = &[
    einval(
        "get-keys-set-out-only-pkt-good-counter",
        "set out-only pkt_good counter",
        |g, _| g.pkt_good = 643,
    ),
    einval(
        "get-keys-set-out-only-pkt-bad-counter",
        "set out-only pkt_bad counter",
        |g, _| g.pkt_bad = 94,
    ),
    einval("get-keys-bad-keyflags", "bad keyflags", |g, _| {
        g.keyflags = 0xff
    }),
    einval(
        "get-keys-ifindex-without-keyf-ifindex",
        "ifindex without TCP_AO_KEYF_IFINDEX",
        |g, _| g.ifindex = 42,
    ),
    einval(
        "get-keys-using-reserved-field",
        "using reserved field",
        |g, _| {
            g.bitfield |= 1 << tcp_ao_getsockopt::RESERVED.trailing_zeros();
        },
    ),
    einval("get-keys-no-prefix-addr", "no prefix, addr", |g, s| {
        address_mode(g, s, 0, Some(s.remote_addr()))
    }),
    einval("get-keys-prefix-any-addr", "prefix, any addr", |g, s| {
        address_mode(g, s, 32, None)
    }),
    einval("get-keys-too-big-prefix", "too big prefix", |g, s| {
        address_mode(g, s, 129, Some(s.remote_addr()))
    }),
    einval("get-keys-too-short-prefix", "too short prefix", |g, s| {
        address_mode(g, s, 2, Some(s.remote_addr()))
    }),
    einval("get-keys-get-all-prefix", SELECTION, |g, s| {
        mode_with(g, s, GET_ALL, Field::Prefix)
    }),
    einval("get-keys-get-all-addr", SELECTION, |g, s| {
        mode_with(g, s, GET_ALL, Field::Addr)
    }),
    einval("get-keys-get-all-sndid", SELECTION, |g, s| {
        mode_with(g, s, GET_ALL, Field::SndId)
    }),
    einval("get-keys-get-all-rcvid", SELECTION, |g, s| {
        mode_with(g, s, GET_ALL, Field::RcvId)
    }),
    einval("get-keys-current-prefix", SELECTION, |g, s| {
        mode_with(g, s, IS_CURRENT, Field::Prefix)
    }),
    einval("get-keys-current-addr", SELECTION, |g, s| {
        mode_with(g, s, IS_CURRENT, Field::Addr)
    }),
    einval("get-keys-current-sndid", SELECTION, |g, s| {
        mode_with(g, s, IS_CURRENT, Field::SndId)
    }),
    einval("get-keys-current-rcvid", SELECTION, |g, s| {
        mode_with(g, s, IS_CURRENT, Field::RcvId)
    }),
    einval("get-keys-rnext-prefix", SELECTION, |g, s| {
        mode_with(g, s, IS_RNEXT, Field::Prefix)
    }),
    einval("get-keys-rnext-addr", SELECTION, |g, s| {
        mode_with(g, s, IS_RNEXT, Field::Addr)
    }),
    einval("get-keys-rnext-sndid", SELECTION, |g, s| {
        mode_with(g, s, IS_RNEXT, Field::SndId)
    }),
    einval("get-keys-rnext-rcvid", SELECTION, |g, s| {
        mode_with(g, s, IS_RNEXT, Field::RcvId)
    }),
    einval("get-keys-get-all-current", SELECTION, |g, _| {
        g.bitfield = GET_ALL | IS_CURRENT
    }),
    einval("get-keys-get-all-rnext", SELECTION, |g, _| {
        g.bitfield = GET_ALL | IS_RNEXT
    }),
];

fn broken(s: &Solo, row: &Broken<tcp_ao_getsockopt>) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut g = default_get();
    (row.set)(&mut g, s);
    let mut b = Zeroizing::new(g.as_bytes().to_vec());
    expect_errno(
        &format!("get keys: {}", row.what),
        getopt(
            &sk,
            TCP_AO_GET_KEYS,
            Some(&mut b),
            OptLen::Value(GET_SIZE as i32),
        ),
        row.errno,
    )
}

/// The cases that are not one broken field.
const CASES: &[(&str, Body)] = &[
    ("ao-get-keys-minimum-size", minimum_size),
    ("ao-get-keys-extended-size", extended_size),
    ("ao-get-keys-null-optval", null_optval),
    ("ao-get-keys-null-optlen", null_optlen),
    ("ao-get-keys-nonzero-trailing-bytes", nonzero_trailing),
    ("get-keys-no-ao-info", no_ao_info),
    ("get-keys-proper-tcp-ao-get-mkts", proper),
    ("get-keys-no-prefix-any-addr", no_prefix_any_addr),
    ("get-keys-prefix-addr", prefix_addr),
    ("get-keys-current-rnext", current_rnext),
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
];

fn minimum_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = Zeroizing::new(default_get().as_bytes().to_vec());
    expect_errno(
        "AO get keys: minimum size (optlen = -1)",
        getopt(&sk, TCP_AO_GET_KEYS, Some(&mut b), OptLen::Value(-1)),
        libc::EINVAL,
    )
}

fn extended_size(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = extended(default_get().as_bytes());
    let len = expect_ok(
        "AO get keys: extended size",
        getopt(&sk, TCP_AO_GET_KEYS, Some(&mut b), OptLen::Buffer),
    )?;
    if len != Some(GET_SIZE as i32) {
        return Err(failure!(
            "AO get keys: extended size: get keys returned optlen {len:?}, not sizeof(struct tcp_ao_getsockopt) = {GET_SIZE}"
        ));
    }
    let mut k = tcp_ao_getsockopt::default();
    k.as_bytes_mut().copy_from_slice(&b[..GET_SIZE]);
    let k = DumpedKey(k);
    if k.0.nkeys != 1 || (k.0.sndid, k.0.rcvid) != (100, 100) {
        return Err(failure!(
            "AO get keys: extended size: got {} keys, first {k:?}; the key 100:100 was expected",
            k.0.nkeys
        ));
    }
    Ok(())
}

fn null_optval(s: &Solo) -> PeerResult {
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

fn null_optlen(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = Zeroizing::new(default_get().as_bytes().to_vec());
    expect_errno(
        "AO get keys: null optlen",
        getopt(&sk, TCP_AO_GET_KEYS, Some(&mut b), OptLen::Null),
        libc::EFAULT,
    )
}

/// `copy_struct_from_sockptr`: a longer struct whose extra bytes are not zero is `E2BIG`.
fn nonzero_trailing(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let mut b = extended(default_get().as_bytes());
    b[GET_SIZE + 100] = 1;
    expect_errno(
        "AO get keys: a struct longer than the kernel's with a non-zero trailing byte",
        getopt(&sk, TCP_AO_GET_KEYS, Some(&mut b), OptLen::Buffer),
        libc::E2BIG,
    )
}

fn no_ao_info(s: &Solo) -> PeerResult {
    let sk = socket(s)?;
    let mut b = Zeroizing::new(default_get().as_bytes().to_vec());
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

/// The raw filter must match `want` keys.
fn matches(sk: &Socket, filter: tcp_ao_getsockopt, tst: &str, want: u32) -> PeerResult {
    let (n, keys) = expect_ok(&format!("get keys: {tst}"), get_keys_raw(sk, filter, 1))?;
    if n != want {
        return Err(failure!(
            "get keys: {tst}: {n} keys matched ({keys:?}), {want} expected"
        ));
    }
    Ok(())
}

fn proper(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    matches(&sk, default_get(), "proper tcp_ao_get_mkts()", 1)
}

/// An address filter for `ip` (`None`: the any-address) with `prefix` and IDs `ids`.
fn by_address(s: &Solo, ip: Option<std::net::IpAddr>, prefix: u8, ids: u8) -> tcp_ao_getsockopt {
    tcp_ao_getsockopt {
        addr: sockaddr(af(s.family()), ip, 0),
        prefix,
        sndid: ids,
        rcvid: ids,
        ..Default::default()
    }
}

fn no_prefix_any_addr(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    // Address mode with IDs 0:0: the any-address matches, the IDs do not.
    matches(&sk, by_address(s, None, 0, 0), "no prefix, any addr", 0)?;
    matches(
        &sk,
        by_address(s, None, 0, 100),
        "no prefix, any addr, IDs 100:100",
        1,
    )
}

fn prefix_addr(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let (ip, prefix) = (Some(s.remote_addr()), s.family().host_prefix());
    matches(
        &sk,
        by_address(s, ip, prefix, 0),
        "prefix + addr (IDs 0:0)",
        0,
    )?;
    matches(
        &sk,
        by_address(s, ip, prefix, 100),
        "prefix + addr, IDs 100:100",
        1,
    )
}

fn current_rnext(s: &Solo) -> PeerResult {
    let sk = socket_with_default_key(s)?;
    let f = || tcp_ao_getsockopt {
        bitfield: IS_CURRENT | IS_RNEXT,
        ..Default::default()
    };
    matches(&sk, f(), "current + rnext (none set)", 0)?;
    typed_ok("set current", sk.set_ao_current_key(100))?;
    matches(&sk, f(), "current + rnext (current set)", 1)?;
    let typed = typed_ok(
        "typed current+rnext",
        sk.ao_keys(&KeyFilter::CurrentAndRNext),
    )?;
    if typed.len() != 1 || !typed[0].is_current {
        return Err(failure!("the typed filter returned {} keys", typed.len()));
    }
    Ok(())
}

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
            let (n, got) = expect_ok(
                "get_all with nkeys 8",
                get_keys_raw(&sk, get_all(), FILTER_TEST_NKEYS / 2),
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
        let w = stored_key(keys[i].0.algorithm(), &keys[i].1);
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

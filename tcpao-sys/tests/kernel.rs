// SPDX-License-Identifier: MIT OR Apache-2.0
//! Kernel-facing tests of the safe API on loopback (libtest-mimic, `harness = false`).
//!
//! * `md5::*` run wherever `CONFIG_TCP_MD5SIG` is set (this includes kernels without TCP-AO).
//! * `ao_unsupported::*` run only on kernels WITHOUT TCP-AO: every TCP-AO call must be
//!   `Error::Unsupported`.
//! * `ao::*` run only on kernels WITH TCP-AO; otherwise they are reported as ignored with the
//!   reason printed once, unless `TCPAO_REQUIRE_TCP_AO=1`, which turns a missing TCP-AO into a
//!   failure of every `ao::*` trial.

#[path = "support/capture.rs"]
mod capture;
#[path = "support/net.rs"]
mod net;

use libtest_mimic::{Arguments, Failed, Trial};
use net::{Af, TestResult, accept, connect, exchange, listener, wait_for};
use socket2::Socket;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tcpao_sys::raw::{self, OptLen};
use tcpao_sys::repair::{self, Queue, RepairMode};
use tcpao_sys::{
    AcceptCheck, Algorithm, AoCounters, AoKey, AoListener, Error, KeyFilter, KeySelector,
    MasterKey, Md5Ext, Md5Key, Op, PeerPrefix, Rotation, RotationStatus, TcpAoExt, uapi,
};

const SHORT: Duration = Duration::from_millis(1500);
const LONG: Duration = Duration::from_secs(10);

fn mk(bytes: &[u8]) -> MasterKey {
    MasterKey::new(bytes).expect("valid test key")
}

fn host(af: Af) -> PeerPrefix {
    PeerPrefix::host(af.loopback()).expect("loopback is a valid host")
}

fn ao_key(af: Af, send_id: u8, recv_id: u8, secret: &[u8]) -> AoKey {
    AoKey::new(host(af), send_id, recv_id, Algorithm::HmacSha1, mk(secret))
}

fn md5_key(af: Af, secret: &[u8]) -> Md5Key {
    Md5Key {
        peer: host(af),
        vrf: None,
        key: mk(secret),
    }
}

fn expect_err<T>(r: tcpao_sys::Result<T>, what: &str, ok: impl Fn(&Error) -> bool) -> TestResult {
    match r {
        Ok(_) => Err(format!("{what}: succeeded, expected an error").into()),
        Err(e) if ok(&e) => Ok(()),
        Err(e) => Err(format!("{what}: wrong error {e:?}").into()),
    }
}

// ----------------------------------------------------------------------------------------
// TCP-MD5 (RFC 2385)
// ----------------------------------------------------------------------------------------

fn md5_matching_keys_carry_data(af: Af) -> TestResult {
    let cap = capture::Capture::start()?;
    let (l, addr) = listener(af, |s| {
        Ok(s.add_md5_key(&md5_key(af, b"md5-shared-secret"))?)
    })?;
    let c = connect(af, addr, LONG, |s| {
        Ok(s.add_md5_key(&md5_key(af, b"md5-shared-secret"))?)
    })??;
    let (s, _) = accept(&l, LONG)?;
    exchange(&c, &s, 4096, 1)?;
    drop((c, s));
    // Every segment of the connection carries a TCP-MD5 option (kind 19, RFC 2385 §3.0).
    let segs: Vec<_> = cap
        .finish()?
        .iter()
        .filter_map(|p| capture::parse(p))
        .filter(|g| g.src_port == addr.port() || g.dst_port == addr.port())
        .collect();
    ensure!(segs.len() >= 5, "captured only {} segments", segs.len());
    let unsigned = segs
        .iter()
        .filter(|g| !g.option_kinds.contains(&19))
        .count();
    ensure!(
        unsigned == 0,
        "{unsigned} of {} segments lack the MD5 option",
        segs.len()
    );
    Ok(())
}

fn md5_mismatched_key_times_out(af: Af) -> TestResult {
    let (l, addr) = listener(af, |s| Ok(s.add_md5_key(&md5_key(af, b"server-secret"))?))?;
    let t0 = Instant::now();
    let r = connect(af, addr, SHORT, |s| {
        Ok(s.add_md5_key(&md5_key(af, b"client-secret"))?)
    })?;
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
        Err(e) => {
            return Err(
                format!("connect with a wrong MD5 key: expected a timeout, got {e}").into(),
            );
        }
        Ok(_) => return Err("connect with a wrong MD5 key succeeded".into()),
    }
    // (connect_timeout polls in whole milliseconds; allow for rounding.)
    ensure!(
        t0.elapsed() >= SHORT * 9 / 10,
        "connect gave up long before its deadline"
    );
    // Nothing reached the accept queue.
    let e = accept(&l, Duration::from_millis(50))
        .err()
        .ok_or("a connection was accepted")?;
    ensure!(e.kind() == std::io::ErrorKind::WouldBlock, "accept: {e}");
    Ok(())
}

fn md5_unsigned_client_times_out(af: Af) -> TestResult {
    let (_l, addr) = listener(af, |s| Ok(s.add_md5_key(&md5_key(af, b"server-secret"))?))?;
    let r = connect(af, addr, SHORT, |_| Ok(()))?;
    ensure!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::TimedOut),
        "unsigned client against an MD5 listener: {r:?}"
    );
    Ok(())
}

fn md5_prefix_and_delete(af: Af) -> TestResult {
    // A prefix key covers the peer. Every shorter prefix of ::1 has the all-zero address,
    // which only the any-prefix (::/0) may use, so IPv6 uses that.
    let peer: PeerPrefix = match af {
        Af::V4 => "127.0.0.0/8".parse()?,
        Af::V6 => PeerPrefix::any(),
    };
    let secret = b"prefix-secret";
    let (l, addr) = listener(af, |s| {
        Ok(s.add_md5_key(&Md5Key {
            peer,
            vrf: None,
            key: mk(secret),
        })?)
    })?;
    let c = connect(af, addr, LONG, |s| Ok(s.add_md5_key(&md5_key(af, secret))?))??;
    let (s, _) = accept(&l, LONG)?;
    exchange(&c, &s, 1000, 7)?;
    // Delete the listener's key: an unsigned client now gets through.
    l.del_md5_key(&peer, None)?;
    let c2 = connect(af, addr, LONG, |_| Ok(()))??;
    let (s2, _) = accept(&l, LONG)?;
    exchange(&c2, &s2, 100, 9)?;
    // Deleting again: no such key.
    expect_err(l.del_md5_key(&peer, None), "second delete", |e| {
        matches!(e, Error::NotFound { op: Op::DelMd5 })
    })
}

fn md5_v4_peer_on_v6_socket() -> TestResult {
    // Dual-stack listener on :: with a key for the IPv4 peer (v4-mapped internally).
    let l = Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
    l.set_only_v6(false)?;
    l.add_md5_key(&md5_key(Af::V4, b"mapped-secret"))?;
    l.bind(&SocketAddr::from(([0u16; 8], 0)).into())?;
    l.listen(4)?;
    let port = l.local_addr()?.as_socket().ok_or("no address")?.port();
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let c = connect(Af::V4, to, LONG, |s| {
        Ok(s.add_md5_key(&md5_key(Af::V4, b"mapped-secret"))?)
    })??;
    let (s, _) = accept(&l, LONG)?;
    exchange(&c, &s, 512, 3)?;
    let bad = connect(Af::V4, to, SHORT, |s| {
        Ok(s.add_md5_key(&md5_key(Af::V4, b"other-secret"))?)
    })?;
    ensure!(
        bad.is_err(),
        "wrong key through a v4-mapped listener key connected"
    );
    Ok(())
}

fn md5_validation_happens_before_the_syscall() -> TestResult {
    let s = net::socket(Af::V4)?;
    let v6 = Md5Key {
        peer: "2001:db8::/32".parse()?,
        vrf: None,
        key: mk(b"k"),
    };
    expect_err(s.add_md5_key(&v6), "IPv6 key on an IPv4 socket", |e| {
        matches!(e, Error::InvalidArgument { field: "peer", .. })
    })
}

// ----------------------------------------------------------------------------------------
// Kernels without TCP-AO: every call says Unsupported.
// ----------------------------------------------------------------------------------------

fn ao_unsupported_everywhere(af: Af) -> TestResult {
    let s = net::socket(af)?;
    let k = ao_key(af, 1, 1, b"secret");
    let sel = k.selector();
    let unsupported = |r: tcpao_sys::Result<()>, what: &str| {
        expect_err(r, what, |e| {
            matches!(e, Error::Unsupported { .. }) && e.raw_os_error() == Some(libc::ENOPROTOOPT)
        })
    };
    unsupported(s.add_ao_key(&k), "add_ao_key")?;
    unsupported(s.del_ao_key(&sel), "del_ao_key")?;
    unsupported(
        s.del_ao_key_replacing(&sel, Some(2), Some(2)),
        "del_ao_key_replacing",
    )?;
    unsupported(s.del_ao_key_async(&sel), "del_ao_key_async")?;
    unsupported(s.ao_info().map(drop), "ao_info")?;
    unsupported(s.set_ao_current_key(1), "set_ao_current_key")?;
    unsupported(s.set_ao_rnext_key(1), "set_ao_rnext_key")?;
    unsupported(s.ao_required().map(drop), "ao_required")?;
    unsupported(s.set_ao_required(true), "set_ao_required")?;
    unsupported(s.ao_accept_icmps().map(drop), "ao_accept_icmps")?;
    unsupported(s.set_ao_accept_icmps(true), "set_ao_accept_icmps")?;
    unsupported(s.ao_counters().map(drop), "ao_counters")?;
    unsupported(s.set_ao_counters(&AoCounters::default()), "set_ao_counters")?;
    unsupported(s.ao_keys(&KeyFilter::All).map(drop), "ao_keys")?;
    unsupported(s.ao_repair().map(drop), "ao_repair")?;
    unsupported(s.set_ao_repair(&Default::default()), "set_ao_repair")?;
    let l = AoListener::new(net::socket(af)?);
    unsupported(l.add_key(&ao_key(af, 1, 1, b"x")), "AoListener::add_key")?;
    Ok(())
}

fn ao_unsupported_probe() -> TestResult {
    let caps = tcpao_sys::probe(&[])?;
    ensure!(!caps.tcp_ao, "probe says TCP-AO works: {caps:?}");
    ensure!(
        caps.algorithms.is_empty() && caps.unavailable.is_empty(),
        "{caps:?}"
    );
    ensure!(
        caps.tcp_md5,
        "probe says TCP-MD5 is missing, but md5::* tests ran: {caps:?}"
    );
    let e = tcpao_sys::probe_algorithm(&Algorithm::HmacSha1)
        .err()
        .ok_or("probe_algorithm succeeded")?;
    ensure!(e.is_unsupported(), "{e:?}");
    Ok(())
}

// ----------------------------------------------------------------------------------------
// TCP-AO (RFC 5925) on a TCP-AO kernel
// ----------------------------------------------------------------------------------------

fn ao_probe() -> TestResult {
    let caps = tcpao_sys::probe(&[Algorithm::Raw("hmac(no-such-hash)".into())])?;
    ensure!(caps.tcp_ao, "{caps:?}");
    for a in Algorithm::WELL_KNOWN {
        ensure!(caps.algorithms.contains(&a), "{a} not accepted: {caps:?}");
    }
    ensure!(
        caps.unavailable == [Algorithm::Raw("hmac(no-such-hash)".into())],
        "{caps:?}"
    );
    Ok(())
}

fn ao_add_and_list_round_trip(af: Af) -> TestResult {
    let s = net::socket(af)?;
    let k1 = AoKey::new(
        af.doc_prefix().parse()?,
        1,
        2,
        Algorithm::HmacSha1,
        mk(&[0x11; 20]),
    )
    .mac_len(12)?;
    let k2 = AoKey::new(
        af.doc_host().parse()?,
        3,
        4,
        Algorithm::AesCmac128,
        mk(&[0x22; 16]),
    )
    .mac_len(16)?
    .include_options(false);
    let k3 = AoKey::new(
        PeerPrefix::any(),
        5,
        6,
        Algorithm::HmacSha256,
        mk(&[0x33; 32]),
    )
    .set_current(true)
    .set_rnext(true);
    let k4 = AoKey::new(host(af), 7, 8, Algorithm::HmacSha1, mk(b"vrf-bound"))
        .vrf(0)
        .mac_len(4)?;
    let mut keys = vec![k1, k2, k3, k4];
    if af == Af::V6 {
        // An IPv4 peer on an IPv6 socket (v4-mapped on the wire to the kernel).
        keys.push(AoKey::new(
            "203.0.113.0/24".parse()?,
            9,
            10,
            Algorithm::HmacSha1,
            mk(b"mapped"),
        ));
    }
    for k in &keys {
        s.add_ao_key(k)?;
    }
    let listed = s.ao_keys(&KeyFilter::All)?;
    ensure!(
        listed.len() == keys.len(),
        "listed {} keys, added {}",
        listed.len(),
        keys.len()
    );
    for k in &keys {
        let got = listed
            .iter()
            .find(|g| g.selector == k.selector())
            .ok_or_else(|| format!("key {:?} not listed; got {:?}", k.selector(), listed))?;
        ensure!(
            got.algorithm == *k.algorithm(),
            "{:?}: algorithm {:?}",
            k.selector(),
            got.algorithm
        );
        ensure!(
            got.mac_len == k.configured_mac_len().unwrap_or(12),
            "{:?}: maclen {}",
            k.selector(),
            got.mac_len
        );
        ensure!(
            got.include_options == k.includes_options(),
            "{:?}: include_options",
            k.selector()
        );
        let (cur, rnext) = k.selects();
        ensure!(
            got.is_current == cur && got.is_rnext == rnext,
            "{:?}: current/rnext {} {}",
            k.selector(),
            got.is_current,
            got.is_rnext
        );
        ensure!(
            got.key.as_ref() == Some(k.master_key()),
            "{:?}: key bytes differ",
            k.selector()
        );
        ensure!(
            got.good == 0 && got.bad == 0,
            "{:?}: counters {} {}",
            k.selector(),
            got.good,
            got.bad
        );
    }
    // Filters.
    let cur = s.ao_keys(&KeyFilter::Current)?;
    ensure!(
        cur.len() == 1 && cur[0].selector.send_id == 5,
        "current filter: {cur:?}"
    );
    let rn = s.ao_keys(&KeyFilter::RNext)?;
    ensure!(
        rn.len() == 1 && rn[0].selector.recv_id == 6,
        "rnext filter: {rn:?}"
    );
    let both = s.ao_keys(&KeyFilter::CurrentAndRNext)?;
    ensure!(both.len() == 1, "current+rnext filter (same key): {both:?}");
    let one = s.ao_keys(&KeyFilter::Key(keys[0].selector()))?;
    ensure!(
        one.len() == 1 && one[0].selector == keys[0].selector(),
        "key filter: {one:?}"
    );
    // Info agrees with the key flags.
    let info = s.ao_info()?.ok_or("no ao_info after adding keys")?;
    ensure!(
        info.current_key == Some(5) && info.rnext_key == Some(6),
        "{info:?}"
    );
    // AES-CMAC with a non-16-byte password: the kernel stores the RFC 5926 KDF output.
    let s2 = net::socket(af)?;
    s2.add_ao_key(&AoKey::new(
        PeerPrefix::any(),
        1,
        1,
        Algorithm::AesCmac128,
        mk(b"short"),
    ))?;
    let l2 = s2.ao_keys(&KeyFilter::All)?;
    let stored = l2[0].key.as_ref().ok_or("no key bytes")?;
    ensure!(
        stored.len() == 16 && stored.expose_secret() != b"short",
        "cmac(aes128) key not folded"
    );
    Ok(())
}

fn ao_more_keys_than_the_first_buffer(af: Af) -> TestResult {
    let s = net::socket(af)?;
    for i in 0..40u8 {
        s.add_ao_key(&AoKey::new(
            PeerPrefix::any(),
            i,
            i,
            Algorithm::HmacSha1,
            mk(&[i; 10]),
        ))?;
    }
    let all = s.ao_keys(&KeyFilter::All)?;
    ensure!(all.len() == 40, "listed {}", all.len());
    let mut ids: Vec<u8> = all.iter().map(|k| k.selector.send_id).collect();
    ids.sort_unstable();
    ensure!(ids == (0..40).collect::<Vec<_>>(), "{ids:?}");
    Ok(())
}

fn ao_info_flags_do_not_clobber(af: Af) -> TestResult {
    let s = net::socket(af)?;
    // Before any key: no TCP-AO state; setting a flag creates it on a closed socket.
    ensure!(s.ao_info()?.is_none(), "fresh socket has ao_info");
    s.set_ao_required(true)?;
    s.set_ao_accept_icmps(true)?;
    ensure!(
        s.ao_required()? && s.ao_accept_icmps()?,
        "flags not both set"
    );
    s.set_ao_required(false)?;
    ensure!(
        !s.ao_required()? && s.ao_accept_icmps()?,
        "clearing ao_required clobbered accept_icmps"
    );
    s.set_ao_required(true)?;
    s.set_ao_accept_icmps(false)?;
    ensure!(
        s.ao_required()? && !s.ao_accept_icmps()?,
        "clearing accept_icmps clobbered ao_required"
    );
    // Selecting keys keeps the flags.
    s.add_ao_key(&ao_key(af, 1, 1, b"one"))?;
    s.add_ao_key(&ao_key(af, 2, 2, b"two"))?;
    s.set_ao_accept_icmps(true)?;
    s.set_ao_current_key(2)?;
    s.set_ao_rnext_key(1)?;
    let i = s.ao_info()?.ok_or("no info")?;
    ensure!(i.current_key == Some(2) && i.rnext_key == Some(1), "{i:?}");
    ensure!(
        i.ao_required && i.accept_icmps,
        "selecting keys clobbered flags: {i:?}"
    );
    // Counters: set exact values, read them back, reset; flags survive.
    let c = AoCounters {
        good: 321,
        bad: 888,
        key_not_found: 654,
        ao_required: 987_654,
        dropped_icmp: 10_000,
    };
    s.set_ao_counters(&c)?;
    ensure!(
        s.ao_counters()? == c,
        "counters read back {:?}",
        s.ao_counters()?
    );
    s.set_ao_counters(&AoCounters::default())?;
    ensure!(
        s.ao_counters()? == AoCounters::default(),
        "counters not reset"
    );
    let i = s.ao_info()?.ok_or("no info")?;
    ensure!(
        i.ao_required && i.accept_icmps && i.current_key == Some(2),
        "{i:?}"
    );
    Ok(())
}

/// `tcp_ao_add` bytes built field by field (to send values the typed API refuses).
fn raw_add_bytes(af: Af, maclen: u8) -> Vec<u8> {
    use std::mem::offset_of;
    let mut b = vec![0u8; size_of::<uapi::tcp_ao_add>()];
    let fam: u16 = match af {
        Af::V4 => libc::AF_INET as u16,
        Af::V6 => libc::AF_INET6 as u16,
    };
    b[..2].copy_from_slice(&fam.to_ne_bytes());
    b[offset_of!(uapi::tcp_ao_add, alg_name)..][..10].copy_from_slice(b"hmac(sha1)");
    b[offset_of!(uapi::tcp_ao_add, maclen)] = maclen;
    b[offset_of!(uapi::tcp_ao_add, sndid)] = 50;
    b[offset_of!(uapi::tcp_ao_add, rcvid)] = 50;
    b[offset_of!(uapi::tcp_ao_add, keylen)] = 8;
    b[offset_of!(uapi::tcp_ao_add, key)..][..8].copy_from_slice(b"rawbytes");
    b
}

fn ao_errno_mapping(af: Af) -> TestResult {
    let s = net::socket(af)?;
    let k = ao_key(af, 1, 1, b"first");
    s.add_ao_key(&k)?;
    // EEXIST: same IDs, overlapping peer; also same SendID only.
    expect_err(
        s.add_ao_key(&ao_key(af, 1, 1, b"again")),
        "duplicate",
        |e| matches!(e, Error::IdConflict { op: Op::AddKey }),
    )?;
    expect_err(
        s.add_ao_key(&AoKey::new(
            PeerPrefix::any(),
            1,
            9,
            Algorithm::HmacSha1,
            mk(b"x"),
        )),
        "same SendID",
        |e| matches!(e, Error::IdConflict { .. }),
    )?;
    // ENOENT on add: algorithm.
    expect_err(
        s.add_ao_key(&AoKey::new(
            host(af),
            20,
            20,
            Algorithm::Raw("hmac(no-such-hash)".into()),
            mk(b"x"),
        )),
        "unknown algorithm",
        |e| matches!(e, Error::AlgorithmUnavailable { algorithm, .. } if algorithm == "hmac(no-such-hash)"),
    )?;
    // ENOENT elsewhere: no such key / no such current key.
    expect_err(
        s.del_ao_key(&KeySelector::new(host(af), 7, 7)),
        "delete missing",
        |e| matches!(e, Error::NotFound { op: Op::DelKey }),
    )?;
    expect_err(s.set_ao_current_key(99), "current = missing", |e| {
        matches!(e, Error::NotFound { op: Op::SetInfo })
    })?;
    expect_err(
        net::socket(af)?.ao_keys(&KeyFilter::All),
        "keys without ao_info",
        |e| matches!(e, Error::NotFound { op: Op::GetKeys }),
    )?;
    // EBUSY: deleting the current key; then a forced delete with a replacement works.
    s.add_ao_key(&ao_key(af, 2, 2, b"second"))?;
    s.set_ao_current_key(1)?;
    s.set_ao_rnext_key(1)?;
    expect_err(s.del_ao_key(&k.selector()), "delete current", |e| {
        matches!(e, Error::KeyInUse { op: Op::DelKey })
    })?;
    expect_err(
        s.del_ao_key_replacing(&k.selector(), Some(1), Some(1)),
        "replace with itself",
        |e| matches!(e, Error::NotFound { .. }),
    )?;
    s.del_ao_key_replacing(&k.selector(), Some(2), Some(2))?;
    let i = s.ao_info()?.ok_or("no info")?;
    ensure!(i.current_key == Some(2) && i.rnext_key == Some(2), "{i:?}");
    // EMSGSIZE: maclen 17 can only be sent as raw bytes (the typed API refuses it).
    ensure!(
        ao_key(af, 3, 3, b"x").mac_len(17).is_err(),
        "typed API accepted maclen 17"
    );
    let e = raw::setsockopt_bytes(
        &net::socket(af)?,
        uapi::SOL_TCP,
        uapi::TCP_AO_ADD_KEY,
        Some(&raw_add_bytes(af, 17)),
        None,
    )
    .err()
    .ok_or("maclen 17 accepted")?;
    let mapped = Error::from_os(Op::AddKey, e);
    ensure!(matches!(mapped, Error::MacTooLong { .. }), "{mapped:?}");
    raw::setsockopt_bytes(
        &net::socket(af)?,
        uapi::SOL_TCP,
        uapi::TCP_AO_ADD_KEY,
        Some(&raw_add_bytes(af, 16)),
        None,
    )?;
    // EKEYREJECTED: MD5 and AO for the same peer, either order; ao_required with MD5 keys.
    let m = net::socket(af)?;
    m.add_md5_key(&md5_key(af, b"md5"))?;
    expect_err(
        m.add_ao_key(&ao_key(af, 1, 1, b"ao")),
        "AO after MD5",
        |e| matches!(e, Error::Md5Conflict { op: Op::AddKey }),
    )?;
    expect_err(m.set_ao_required(true), "ao_required with MD5", |e| {
        matches!(e, Error::Md5Conflict { op: Op::SetInfo })
    })?;
    let a = net::socket(af)?;
    a.add_ao_key(&ao_key(af, 1, 1, b"ao"))?;
    expect_err(a.add_md5_key(&md5_key(af, b"md5")), "MD5 after AO", |e| {
        matches!(e, Error::Md5Conflict { op: Op::AddMd5 })
    })?;
    // EINVAL cases the types cannot prevent: del_async on a non-listener; current on a listener.
    expect_err(
        a.del_ao_key_async(&KeySelector::new(host(af), 1, 1)),
        "async delete on a closed socket",
        |e| matches!(e, Error::Os { op: Op::DelKey, source } if source.raw_os_error() == Some(libc::EINVAL)),
    )?;
    let (l, _) = listener(af, |s| Ok(s.add_ao_key(&ao_key(af, 1, 1, b"l"))?))?;
    expect_err(
        l.set_ao_current_key(1),
        "current on a listener",
        |e| matches!(e, Error::Os { op: Op::SetInfo, source } if source.raw_os_error() == Some(libc::EINVAL)),
    )?;
    let wl = AoListener::new(l);
    expect_err(
        wl.add_key(&ao_key(af, 4, 4, b"l").set_rnext(true)),
        "AoListener + set_rnext",
        |e| {
            matches!(
                e,
                Error::InvalidArgument {
                    field: "set_current/set_rnext",
                    ..
                }
            )
        },
    )?;
    wl.add_key(&ao_key(af, 4, 4, b"l"))?;
    wl.del_key(&KeySelector::new(host(af), 4, 4))?; // del_async on a listener
    // Validation before the syscall: a family mismatch names the field.
    if af == Af::V4 {
        expect_err(
            s.add_ao_key(&AoKey::new(
                "2001:db8::/32".parse()?,
                30,
                30,
                Algorithm::HmacSha1,
                mk(b"x"),
            )),
            "v6 on v4",
            |e| matches!(e, Error::InvalidArgument { field: "peer", .. }),
        )?;
    }
    // raw corner cases the selftests use: short optlen, NULL optval, NULL/negative optlen.
    let r = net::socket(af)?;
    let b = raw_add_bytes(af, 0);
    let e = raw::setsockopt_bytes(&r, uapi::SOL_TCP, uapi::TCP_AO_ADD_KEY, Some(&b), Some(208))
        .err()
        .ok_or("short add accepted")?;
    ensure!(e.raw_os_error() == Some(libc::EINVAL), "short optlen: {e}");
    let e = raw::setsockopt_bytes(
        &r,
        uapi::SOL_TCP,
        uapi::TCP_AO_ADD_KEY,
        None,
        Some(b.len() as u32),
    )
    .err()
    .ok_or("NULL add accepted")?;
    ensure!(e.raw_os_error() == Some(libc::EFAULT), "NULL optval: {e}");
    let mut big = b.clone();
    big.extend_from_slice(&[0u8; 800]);
    raw::setsockopt_bytes(&r, uapi::SOL_TCP, uapi::TCP_AO_ADD_KEY, Some(&big), None)?;
    let mut buf = vec![0u8; 304];
    buf[276..278].copy_from_slice(&uapi::tcp_ao_getsockopt::GET_ALL.to_ne_bytes());
    buf[272..276].copy_from_slice(&1u32.to_ne_bytes());
    let n = raw::getsockopt_bytes(
        &r,
        uapi::SOL_TCP,
        uapi::TCP_AO_GET_KEYS,
        Some(&mut buf),
        OptLen::Buffer,
    )?;
    ensure!(
        n == Some(304) && buf[272..276] == 1u32.to_ne_bytes(),
        "raw GET_KEYS: optlen {n:?}"
    );
    let e = raw::getsockopt_bytes(
        &r,
        uapi::SOL_TCP,
        uapi::TCP_AO_GET_KEYS,
        Some(&mut buf),
        OptLen::Value(-1),
    )
    .err()
    .ok_or("optlen -1 accepted")?;
    ensure!(e.raw_os_error() == Some(libc::EINVAL), "optlen -1: {e}");
    let e = raw::getsockopt_bytes(
        &r,
        uapi::SOL_TCP,
        uapi::TCP_AO_GET_KEYS,
        Some(&mut buf),
        OptLen::Null,
    )
    .err()
    .ok_or("NULL optlen accepted")?;
    ensure!(e.raw_os_error() == Some(libc::EFAULT), "NULL optlen: {e}");
    Ok(())
}

/// An AO connection on loopback with key `secret` (ids 1/1 both ways).
fn ao_pair(
    af: Af,
    secret: &'static [u8],
) -> Result<(AoListener<Socket>, Socket, Socket, SocketAddr), Failed> {
    let (l, addr) = listener(af, |s| {
        AoListener::new(s).add_key(&ao_key(af, 1, 1, secret))?;
        Ok(())
    })?;
    let c = connect(af, addr, LONG, |s| {
        Ok(s.add_ao_key(&ao_key(af, 1, 1, secret).set_current(true).set_rnext(true))?)
    })??;
    let (s, _) = accept(&l, LONG)?;
    Ok((AoListener::new(l), c, s, addr))
}

fn ao_connect_data_counters_accept_check(af: Af) -> TestResult {
    let (l, c, s, addr) = ao_pair(af, b"connect-secret")?;
    exchange(&c, &s, 8192, 5)?;
    for (who, sock) in [("client", &c), ("server", &s)] {
        let i = sock.ao_info()?.ok_or("no info")?;
        ensure!(i.counters.good > 0, "{who}: pkt_good did not grow: {i:?}");
        ensure!(
            i.counters.bad == 0 && i.counters.key_not_found == 0 && i.counters.ao_required == 0,
            "{who}: {i:?}"
        );
        ensure!(
            i.current_key == Some(1) && i.rnext_key == Some(1),
            "{who}: {i:?}"
        );
        let k = sock.ao_keys(&KeyFilter::All)?;
        ensure!(
            k.len() == 1 && k[0].good > 0 && k[0].bad == 0,
            "{who}: per-key counters {k:?}"
        );
        // Not in repair mode: TCP_AO_REPAIR is refused.
        expect_err(sock.ao_repair(), "ao_repair outside repair mode", |e| {
            matches!(e, Error::NotInRepairMode { .. })
        })?;
    }
    ensure!(
        l.check_accepted(&s, af.loopback())? == AcceptCheck::Matches,
        "accepted socket keys differ"
    );
    // The accept() race: a key added to the listener after a child was queued is missing on it.
    let c2 = connect(af, addr, LONG, |s| {
        Ok(s.add_ao_key(&ao_key(af, 1, 1, b"connect-secret"))?)
    })??;
    let port = addr.port();
    ensure!(
        wait_for(LONG, || Ok(net::established_on_port(af, port)? >= 2))?,
        "second child never established"
    );
    let late = ao_key(af, 2, 2, b"late-key");
    l.add_key(&late)?;
    let (s2, _) = accept(l.get_ref(), LONG)?;
    match l.check_accepted(&s2, af.loopback())? {
        AcceptCheck::Mismatch { missing, extra }
            if missing == [late.selector()] && extra.is_empty() => {}
        other => return Err(format!("accept race not detected: {other:?}").into()),
    }
    exchange(&c2, &s2, 100, 1)?;
    // An unsigned connection to a listener with a key for the peer is refused (times out).
    let r = connect(af, addr, SHORT, |_| Ok(()))?;
    ensure!(r.is_err(), "unsigned client connected to an AO listener");
    ensure!(
        wait_for(LONG, || Ok(l.counters()?.ao_required > 0))?,
        "listener pkt_ao_required did not grow: {:?}",
        l.counters()?
    );
    // A plain (unsigned) connection without a matching key on another listener: Unauthenticated.
    let (pl, paddr) = listener(af, |s| {
        s.add_ao_key(&AoKey::new(
            af.doc_prefix().parse()?,
            1,
            1,
            Algorithm::HmacSha1,
            mk(b"elsewhere"),
        ))?;
        Ok(())
    })?;
    let pc = connect(af, paddr, LONG, |_| Ok(()))??;
    let (ps, _) = accept(&pl, LONG)?;
    exchange(&pc, &ps, 10, 0)?;
    ensure!(
        tcpao_sys::check_accepted(&ps, &[])? == AcceptCheck::Unauthenticated,
        "unsigned child not Unauthenticated"
    );
    // EISCONN: an established unsigned connection cannot get TCP-AO keys.
    expect_err(
        pc.add_ao_key(&ao_key(af, 1, 1, b"late")),
        "AO on established unsigned",
        |e| matches!(e, Error::WrongState { .. }),
    )?;
    Ok(())
}

fn ao_mismatched_key_times_out(af: Af) -> TestResult {
    let (l, addr) = listener(af, |s| {
        Ok(s.add_ao_key(&ao_key(af, 100, 100, b"server-side"))?)
    })?;
    let r = connect(af, addr, SHORT, |s| {
        Ok(s.add_ao_key(&ao_key(af, 100, 100, b"client-side"))?)
    })?;
    ensure!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::TimedOut),
        "wrong AO key: {r:?}"
    );
    ensure!(
        wait_for(LONG, || Ok(l.ao_counters()?.bad > 0))?,
        "listener pkt_bad did not grow"
    );
    ensure!(
        l.ao_counters()?.good == 0,
        "a SYN verified with the wrong key"
    );
    Ok(())
}

fn ao_rotation_while_data_flows(af: Af) -> TestResult {
    let cap = capture::Capture::start()?;
    let (_l, c, s, addr) = ao_pair(af, b"generation-one")?;
    exchange(&c, &s, 2000, 1)?;
    let old = KeySelector::new(host(af), 1, 1);
    // The successor also changes the algorithm: AES-128-CMAC with a 14-byte password (folded
    // with the RFC 5926 KDF by the kernel and by the reference implementation).
    let next = || AoKey::new(host(af), 2, 2, Algorithm::AesCmac128, mk(b"generation-two"));
    let mut rc = Rotation::start(&c, old, &next())?;
    let mut rs = Rotation::start(&s, old, &next())?;
    let deadline = Instant::now() + LONG;
    let mut rounds = 0u32;
    loop {
        exchange(&c, &s, 1000, rounds as u8)?;
        rounds += 1;
        let (a, b) = (rc.poll()?, rs.poll()?);
        if a == RotationStatus::Done && b == RotationStatus::Done {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "rotation incomplete after {rounds} rounds: client {a:?}, server {b:?}"
        );
    }
    // After: only the successor remains, in use both ways, and data still flows.
    exchange(&c, &s, 5000, 42)?;
    for (who, sock) in [("client", &c), ("server", &s)] {
        let keys = sock.ao_keys(&KeyFilter::All)?;
        ensure!(
            keys.len() == 1 && keys[0].selector.send_id == 2,
            "{who}: keys after rotation {keys:?}"
        );
        ensure!(
            keys[0].is_current && keys[0].is_rnext && keys[0].good > 0,
            "{who}: {keys:?}"
        );
        let i = sock.ao_info()?.ok_or("no info")?;
        ensure!(
            i.counters.bad == 0 && i.counters.key_not_found == 0,
            "{who}: {i:?}"
        );
    }
    // The blocking wait() on an already finished rotation returns at once.
    rc.wait(Instant::now() + SHORT, Duration::from_millis(5))?;
    drop((c, s));
    let packets = cap.finish()?;
    // Find our connection's client port from the capture: the segments to/from addr.port().
    let segs: Vec<_> = packets
        .iter()
        .filter_map(|p| capture::parse(p))
        .filter(|g| g.src_port == addr.port() || g.dst_port == addr.port())
        .collect();
    ensure!(
        !segs.is_empty(),
        "capture saw no segments of the connection"
    );
    let unsigned = segs.iter().filter(|g| g.ao.is_none()).count();
    ensure!(
        unsigned == 0,
        "{unsigned} of {} segments without TCP-AO",
        segs.len()
    );
    for dir in [true, false] {
        let ids: Vec<u8> = segs
            .iter()
            .filter(|g| (g.src_port == addr.port()) == dir)
            .filter_map(|g| g.ao.as_ref().map(|a| a.0))
            .collect();
        ensure!(
            ids.first() == Some(&1) && ids.last() == Some(&2),
            "KeyIDs in one direction: first {:?} last {:?}",
            ids.first(),
            ids.last()
        );
        let switches = ids.windows(2).filter(|w| w[0] != w[1]).count();
        ensure!(
            switches == 1,
            "KeyID switched {switches} times in one direction"
        );
    }
    // Verify every captured MAC with the reference implementation (RFC 5925 §7.6).
    let syn = segs
        .iter()
        .find(|g| g.flags & 0x12 == 0x02)
        .ok_or("no SYN captured")?;
    let synack = segs
        .iter()
        .find(|g| g.flags & 0x12 == 0x12)
        .ok_or("no SYN-ACK captured")?;
    let client = SocketAddr::new(af.loopback(), syn.src_port);
    let conn = tcpao_refimpl::Connection::new(client, addr, syn.seq, synack.seq);
    let mkts = [
        tcpao_refimpl::Mkt::new(
            1,
            1,
            tcpao_refimpl::Algorithm::HmacSha1,
            tcpao_refimpl::MasterKey::new(b"generation-one".to_vec()),
        ),
        tcpao_refimpl::Mkt::new(
            2,
            2,
            tcpao_refimpl::Algorithm::AesCmac128,
            tcpao_refimpl::MasterKey::new(b"generation-two".to_vec()),
        ),
    ];
    let mut v = tcpao_refimpl::FlowValidator::new(conn, mkts)?;
    let mut good = [0usize; 2];
    for g in &segs {
        match v.validate_packet(&g.packet)? {
            tcpao_refimpl::Verdict::Good { key_id, .. } => good[usize::from(key_id == 2)] += 1,
            other => {
                return Err(format!(
                    "reference implementation: {other:?} for seq {} flags {:#x}",
                    g.seq, g.flags
                )
                .into());
            }
        }
    }
    ensure!(good[0] > 0 && good[1] > 0, "verified per key: {good:?}");
    eprintln!(
        "rotation: {rounds} rounds, {} captured segments all signed and verified by tcpao-refimpl ({} with KeyID 1, {} with KeyID 2)",
        segs.len(),
        good[0],
        good[1]
    );
    Ok(())
}

fn ao_rotation_times_out_without_peer_successor(af: Af) -> TestResult {
    let (_l, c, s, _) = ao_pair(af, b"only-generation")?;
    let old = KeySelector::new(host(af), 1, 1);
    let mut rc = Rotation::start(&c, old, &ao_key(af, 2, 2, b"peer-never-gets-this"))?;
    exchange(&c, &s, 500, 1)?;
    let t0 = Instant::now();
    let r = rc.wait(t0 + Duration::from_millis(300), Duration::from_millis(10));
    ensure!(
        matches!(r, Err(Error::RotationTimedOut { successor }) if successor.send_id == 2),
        "{r:?}"
    );
    ensure!(
        t0.elapsed() >= Duration::from_millis(300),
        "wait returned before its deadline"
    );
    // Nothing was deleted: the old key is still current and data still flows.
    let keys = c.ao_keys(&KeyFilter::All)?;
    ensure!(keys.len() == 2, "{keys:?}");
    ensure!(
        keys.iter().any(|k| k.selector.send_id == 1 && k.is_current),
        "{keys:?}"
    );
    ensure!(
        matches!(
            rc.poll()?,
            RotationStatus::Pending {
                current_key: Some(1),
                ..
            }
        ),
        "rotation finished without the peer"
    );
    exchange(&c, &s, 500, 2)?;
    Ok(())
}

/// A VRF (L3 master) device, deleted on drop. Needs root and `ip` (iproute2).
struct Vrf {
    name: String,
    ifindex: u32,
}

impl Vrf {
    fn create(af: Af) -> Result<Self, Failed> {
        let (suffix, table) = match af {
            Af::V4 => ("a", "4242"),
            Af::V6 => ("b", "4243"),
        };
        let name = format!("tcpaovrf{}{suffix}", std::process::id() % 1_000_000);
        let out = std::process::Command::new("ip")
            .args(["link", "add", &name, "type", "vrf", "table", table])
            .output()
            .map_err(|e| format!("cannot run ip(8): {e}"))?;
        ensure!(
            out.status.success(),
            "ip link add {name} type vrf: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let ifindex = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))?
            .trim()
            .parse()?;
        Ok(Self { name, ifindex })
    }
}

impl Drop for Vrf {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.name])
            .status();
    }
}

fn ao_vrf_keys(af: Af) -> TestResult {
    let vrf = Vrf::create(af)?;
    let s = net::socket(af)?;
    let k = AoKey::new(
        af.doc_prefix().parse()?,
        1,
        1,
        Algorithm::HmacSha1,
        mk(b"vrf-key"),
    )
    .vrf(vrf.ifindex);
    s.add_ao_key(&k)?;
    let listed = s.ao_keys(&KeyFilter::All)?;
    ensure!(
        listed.len() == 1 && listed[0].selector == k.selector(),
        "VRF key listed as {listed:?}"
    );
    ensure!(listed[0].selector.vrf == Some(vrf.ifindex), "{listed:?}");
    // A key without the flag coexists only with different IDs (it matches every VRF).
    s.add_ao_key(&AoKey::new(
        af.doc_prefix().parse()?,
        2,
        2,
        Algorithm::HmacSha1,
        mk(b"any-vrf"),
    ))?;
    let f = s.ao_keys(&KeyFilter::Key(k.selector()))?;
    ensure!(
        f.len() == 1 && f[0].selector.vrf == Some(vrf.ifindex),
        "VRF filter: {f:?}"
    );
    // An ifindex that is not an L3 master device: EINVAL ("non-existent VRF").
    expect_err(
        s.add_ao_key(
            &AoKey::new(af.doc_host().parse()?, 3, 3, Algorithm::HmacSha1, mk(b"x")).vrf(999_999),
        ),
        "non-existent VRF",
        |e| matches!(e, Error::Os { op: Op::AddKey, source } if source.raw_os_error() == Some(libc::EINVAL)),
    )?;
    // Deleting the VRF-bound key: the reference notes predict ENOENT from a kernel bug
    // (tcp_ao_del_cmd never reads cmd.ifindex). Whatever the kernel answers, the answer and
    // the key list must agree.
    match s.del_ao_key(&k.selector()) {
        Ok(()) => {
            ensure!(
                s.ao_keys(&KeyFilter::Key(k.selector()))?.is_empty(),
                "deleted VRF key still listed"
            );
            eprintln!("vrf: deleting a VRF-bound key works on this kernel");
        }
        Err(Error::NotFound { .. }) => {
            ensure!(
                s.ao_keys(&KeyFilter::Key(k.selector()))?.len() == 1,
                "NotFound but key gone"
            );
            eprintln!(
                "vrf: deleting a VRF-bound key fails with ENOENT on this kernel (known kernel bug)"
            );
        }
        Err(e) => return Err(format!("deleting the VRF key: {e:?}").into()),
    }
    // TCP-MD5 with an ifindex (TCP_MD5SIG_FLAG_IFINDEX): add, delete, delete again.
    let m = net::socket(af)?;
    let peer: PeerPrefix = af.doc_prefix().parse()?;
    m.add_md5_key(&Md5Key {
        peer,
        vrf: Some(vrf.ifindex),
        key: mk(b"md5-in-vrf"),
    })?;
    expect_err(
        m.del_md5_key(&peer, None),
        "MD5 delete without the ifindex",
        |e| matches!(e, Error::NotFound { .. }),
    )?;
    m.del_md5_key(&peer, Some(vrf.ifindex))?;
    expect_err(
        m.del_md5_key(&peer, Some(vrf.ifindex)),
        "second MD5 delete",
        |e| matches!(e, Error::NotFound { .. }),
    )?;
    Ok(())
}

fn ao_repair_round_trip(af: Af) -> TestResult {
    let (_l, c, s, _) = ao_pair(af, b"repair-secret")?;
    exchange(&c, &s, 3000, 8)?;
    repair::set_repair(&c, RepairMode::On)?;
    ensure!(repair::repair(&c)?, "TCP_REPAIR reads back off");
    let r = c.ao_repair()?;
    let peer = {
        repair::set_repair(&s, RepairMode::On)?;
        let p = s.ao_repair()?;
        repair::set_repair(&s, RepairMode::OffNoWindowProbe)?;
        p
    };
    ensure!(
        r.snt_isn == peer.rcv_isn && r.rcv_isn == peer.snt_isn,
        "ISNs disagree: {r:?} vs {peer:?}"
    );
    ensure!(r.snd_sne == 0 && r.rcv_sne == 0, "{r:?}");
    let w = repair::repair_window(&c)?;
    repair::set_repair_queue(&c, Queue::Send)?;
    let snd = repair::queue_seq(&c)?;
    repair::set_repair_queue(&c, Queue::Recv)?;
    let rcv = repair::queue_seq(&c)?;
    // 3000 bytes each way after the SYN: queue sequences are ISN + 1 + 3000.
    ensure!(
        snd == r.snt_isn.wrapping_add(3001) && rcv == r.rcv_isn.wrapping_add(3001),
        "seqs {snd} {rcv} vs {r:?}"
    );
    repair::set_repair_queue(&c, Queue::None)?;
    repair::set_repair_window(&c, &w)?;
    ensure!(repair::repair_window(&c)? == w, "window changed on set");
    let changed = tcpao_sys::AoRepair {
        snd_sne: 7,
        rcv_sne: 9,
        ..r
    };
    c.set_ao_repair(&changed)?;
    ensure!(
        c.ao_repair()? == changed,
        "TCP_AO_REPAIR read back {:?}",
        c.ao_repair()?
    );
    let info = repair::tcp_info(&c)?;
    ensure!(info.state == 1 && info.sack() && info.wscale(), "{info:?}");
    let opts = info.repair_options(repair::mss(&c)? as u16);
    ensure!(opts.len() >= 3, "repair options from TCP_INFO: {opts:?}");
    Ok(())
}

// ----------------------------------------------------------------------------------------

type AfTest = fn(Af) -> TestResult;

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let require = std::env::var("TCPAO_REQUIRE_TCP_AO").is_ok_and(|v| v == "1");
    let ao = match tcpao_sys::probe_algorithm(&Algorithm::HmacSha1) {
        Ok(true) => Ok(()),
        Ok(false) => Err("kernel has TCP-AO but refuses hmac(sha1)".to_owned()),
        Err(e) if e.is_unsupported() => {
            Err("kernel lacks TCP-AO (CONFIG_TCP_AO: ENOPROTOOPT)".to_owned())
        }
        Err(e) => Err(format!("TCP-AO probe failed: {e}")),
    };
    let md5 = tcpao_sys::probe_md5().unwrap_or(false);

    let mut trials: Vec<Trial> = Vec::new();
    let md5_ignored = !md5;
    for af in [Af::V4, Af::V6] {
        let n = af.name();
        let t = |name: &str, f: fn(Af) -> TestResult| {
            Trial::test(format!("md5::{n}::{name}"), move || f(af)).with_ignored_flag(md5_ignored)
        };
        trials.push(t("matching_keys_carry_data", md5_matching_keys_carry_data));
        trials.push(t("mismatched_key_times_out", md5_mismatched_key_times_out));
        trials.push(t(
            "unsigned_client_times_out",
            md5_unsigned_client_times_out,
        ));
        trials.push(t("prefix_key_and_delete", md5_prefix_and_delete));
    }
    trials.push(
        Trial::test(
            "md5::ipv6::v4_peer_on_dual_stack_socket",
            md5_v4_peer_on_v6_socket,
        )
        .with_ignored_flag(md5_ignored),
    );
    trials.push(
        Trial::test(
            "md5::validation_before_syscall",
            md5_validation_happens_before_the_syscall,
        )
        .with_ignored_flag(md5_ignored),
    );

    // Trials for a kernel without TCP-AO.
    let no_ao_ignored = ao.is_ok();
    for af in [Af::V4, Af::V6] {
        trials.push(
            Trial::test(
                format!("ao_unsupported::{}::every_call_is_unsupported", af.name()),
                move || ao_unsupported_everywhere(af),
            )
            .with_ignored_flag(no_ao_ignored),
        );
    }
    trials.push(
        Trial::test("ao_unsupported::probe", ao_unsupported_probe)
            .with_ignored_flag(no_ao_ignored || !md5),
    );

    // Trials for a TCP-AO kernel.
    let ao_missing = ao.clone().err();
    let wrap =
        |f: Box<dyn FnOnce() -> TestResult + Send>| -> Box<dyn FnOnce() -> TestResult + Send> {
            match (&ao_missing, require) {
                (Some(why), true) => {
                    let why = why.clone();
                    Box::new(move || Err(format!("TCPAO_REQUIRE_TCP_AO=1 but {why}").into()))
                }
                _ => f,
            }
        };
    let ao_ignored = ao_missing.is_some() && !require;
    trials.push(Trial::test("ao::probe", wrap(Box::new(ao_probe))).with_ignored_flag(ao_ignored));
    for af in [Af::V4, Af::V6] {
        let n = af.name();
        let cases: [(&str, AfTest); 10] = [
            ("add_and_list_round_trip", ao_add_and_list_round_trip),
            (
                "key_list_grows_past_first_buffer",
                ao_more_keys_than_the_first_buffer,
            ),
            ("info_flags_do_not_clobber", ao_info_flags_do_not_clobber),
            ("errno_mapping", ao_errno_mapping),
            (
                "connect_data_counters_accept_check",
                ao_connect_data_counters_accept_check,
            ),
            ("mismatched_key_times_out", ao_mismatched_key_times_out),
            ("rotation_while_data_flows", ao_rotation_while_data_flows),
            (
                "rotation_times_out_without_peer_successor",
                ao_rotation_times_out_without_peer_successor,
            ),
            ("repair_round_trip", ao_repair_round_trip),
            ("vrf_keys", ao_vrf_keys),
        ];
        for (name, f) in cases {
            trials.push(
                Trial::test(format!("ao::{n}::{name}"), wrap(Box::new(move || f(af))))
                    .with_ignored_flag(ao_ignored),
            );
        }
    }

    match (&ao, require) {
        (Err(why), false) => eprintln!(
            "note: ao::* trials ignored: {why} (set TCPAO_REQUIRE_TCP_AO=1 to fail instead)"
        ),
        (Err(why), true) => eprintln!("error: TCPAO_REQUIRE_TCP_AO=1 and {why}: ao::* trials fail"),
        (Ok(()), _) => eprintln!("note: kernel has TCP-AO; ao_unsupported::* trials ignored"),
    }
    if md5_ignored {
        eprintln!("note: md5::* trials ignored: kernel lacks TCP-MD5 (CONFIG_TCP_MD5SIG)");
    }
    libtest_mimic::run(&args, trials).exit_code()
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! IPv4-mapped IPv6: IPv6 sockets that talk IPv4 (`::ffff:a.b.c.d`). These cases exist for
//! IPv4 on the wire only (`paths/ipv4/...`).
//!
//! - `mapped-connect-and-keys`: an IPv6 client connects to `::ffff:10.0.254.1`
//!   (`tcp_v6_connect()` switches to the mapped operations) and a dual-stack IPv6 listener
//!   accepts it (`tcp_v6_mapped_child_init()`), both with keys for the peer's IPv4 address
//!   (given to the IPv6 sockets as `::ffff:a.b.c.d/32`, stored as IPv4 keys); echo, GOOD only. On those connected sockets a key for the peer's
//!   mapped /24 is accepted, one for another mapped address and one for an IPv6 address are
//!   refused with `EINVAL` (`tcp_ao_verify_ipv6()`); on a socket connected over IPv6 a mapped
//!   key is refused with `EINVAL`. A TCP-MD5 key for a mapped address that has a TCP-AO key
//!   is refused with `EKEYREJECTED`; one for another mapped address is accepted.
//! - `mapped-connect-unreachable-then-ipv6`: `connect()` of an IPv6 socket with TCP-AO keys
//!   to an unroutable mapped address fails with `ENETUNREACH` (and restores the IPv6
//!   operations); the same socket then connects to the server's IPv6 address and its
//!   segments are signed as IPv6 ones: echo, GOOD only, every segment verified.
//! - `dualstack-ipv6-key-not-for-ipv4-peer`: a dual-stack listener whose only key 100:100 is
//!   an IPv6 key gets an IPv4 SYN signed with key 100:100 and the same secret: no key of the
//!   segment's family, so `TCPAOKeyNotFound` and nothing else grows and nothing is accepted
//!   (`__tcp_ao_key_cmp()` orders keys by family before it compares addresses).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{SockAddr, Socket};
use tcpao_sys::{Md5Ext as _, TcpAoExt as _};

use super::PROGRAM;
use super::listener::{dualstack_listener, mapped};
use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::probe::Feature;
use crate::programs::extras::{self, MESSAGE_LEN, MESSAGES};
use crate::programs::run_case;
use crate::registry::{Ctx, Test};
use crate::sockets::{self, TestKey};
use crate::topology::Side;
use crate::topology::{Family, TopologyConfig, VETH_NAME};

pub(super) fn tests() -> Vec<Test> {
    let case = |name: &str,
                server: fn(&Peer<'_>) -> PeerResult,
                client: fn(&Peer<'_>) -> PeerResult,
                extra: &[Feature]| {
        Test::new(format!("{PROGRAM}/ipv4/{name}"), move |ctx: &Ctx| {
            run_case(
                ctx,
                Family::Ipv4,
                &TopologyConfig::default(),
                server,
                client,
            )
        })
        .requires(&[Feature::Netns, Feature::Veth, Feature::TcpAo, Feature::Ipv6])
        .requires(extra)
        .timeout(std::time::Duration::from_secs(30))
    };
    vec![
        case(
            "mapped-connect-and-keys",
            keys_server,
            keys_client,
            &[Feature::TcpMd5],
        ),
        case(
            "dualstack-ipv6-key-not-for-ipv4-peer",
            family_server,
            family_client,
            &[],
        ),
        case(
            "mapped-connect-unreachable-then-ipv6",
            unreach_server,
            unreach_client,
            &[],
        ),
    ]
}

/// The IPv6 address of a side.
fn v6(side: Side) -> IpAddr {
    match side {
        Side::Server => Family::Ipv6.server_addr(),
        Side::Client => Family::Ipv6.client_addr(),
    }
}

/// Adding `k` to the connected `sk` must succeed (`ok`) or fail with `EINVAL`.
fn try_key(sk: &Socket, k: &TestKey, ok: bool, what: &str) -> PeerResult {
    match (sk.add_ao_key(&k.to_ao_key()?), ok) {
        (Ok(()), true) => Ok(()),
        (Err(e), false) if e.raw_os_error() == Some(libc_einval()) => Ok(()),
        (r, _) => Err(failure!(
            "adding {what} to a connected socket returned {r:?}, expected {}",
            if ok { "success" } else { "EINVAL" }
        )),
    }
}

fn libc_einval() -> i32 {
    nix::errno::Errno::EINVAL as i32
}

/// Mapped-address keys on a connected mapped socket whose peer is `peer4`.
fn check_keys_on_mapped(sk: &Socket, peer4: Ipv4Addr, other: IpAddr, peer6: IpAddr) -> PeerResult {
    let o = peer4.octets();
    let net = IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], 0));
    try_key(
        sk,
        &TestKey::new(net, 2, 2).prefix(net, 24),
        true,
        "a key for the peer's mapped /24",
    )?;
    try_key(
        sk,
        &TestKey::new(other, 3, 3),
        false,
        "a key for another mapped address",
    )?;
    try_key(
        sk,
        &TestKey::new(peer6, 4, 4),
        false,
        "a key for an IPv6 address on a mapped connection",
    )
}

fn keys_server(p: &Peer<'_>) -> PeerResult {
    let client4 = p.remote_addr();
    let lsk = dualstack_listener(p.port())?;
    sockets::add_key(p, &lsk, &TestKey::new(client4, 100, 100))?;
    sockets::add_key(p, &lsk, &TestKey::new(v6(Side::Client), 101, 101))?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    let before = Counters::of(&sk)?;
    let served = sockets::echo_server(p, &sk, p.deadline())?;
    if served != (MESSAGES * MESSAGE_LEN) as u64 {
        return Err(failure!("the server echoed {served} bytes"));
    }
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("server counters after the echo: {e}"))?;
    let IpAddr::V4(c4) = client4 else {
        return Err(failure!("the IPv4 test has an IPv6 client address"));
    };
    check_keys_on_mapped(&sk, c4, Family::Ipv4.wrong_addr(), v6(Side::Client))?;
    // The IPv6 connection.
    let sk6 = extras::accept_one(p, &lsk)?;
    p.sync()?;
    drop(sk6);
    Ok(())
}

fn keys_client(p: &Peer<'_>) -> PeerResult {
    let server4 = p.remote_addr();
    let IpAddr::V4(s4) = server4 else {
        return Err(failure!("the IPv4 test has an IPv6 server address"));
    };
    // TCP-MD5 next to TCP-AO on a fresh IPv6 socket, for mapped addresses.
    let probe = sockets::tcp_socket(Family::Ipv6)?;
    probe
        .add_ao_key(&TestKey::new(server4, 100, 100).to_ao_key()?)
        .or_fail("adding a TCP-AO key for a mapped address failed")?;
    let md5 = |addr: IpAddr| {
        probe.add_md5_key(&tcpao_sys::Md5Key {
            peer: tcpao_sys::PeerPrefix::new(addr, 32).expect("a valid prefix"),
            vrf: None,
            key: tcpao_sys::MasterKey::new(b"md5 secret").expect("a valid key"),
        })
    };
    match md5(server4) {
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EKEYREJECTED as i32) => {}
        r => {
            return Err(failure!(
                "a TCP-MD5 key for a mapped address with a TCP-AO key returned {r:?}, expected EKEYREJECTED"
            ));
        }
    }
    md5(Family::Ipv4.wrong_addr())
        .or_fail("a TCP-MD5 key for another mapped address was refused")?;
    drop(probe);

    let sk = sockets::tcp_socket(Family::Ipv6)?;
    sk.set_only_v6(false).or_fail("IPV6_V6ONLY off failed")?;
    sk.bind_device(Some(VETH_NAME.as_bytes()))
        .or_fail("SO_BINDTODEVICE failed")?;
    sockets::add_key(p, &sk, &TestKey::new(server4, 100, 100))?;
    p.sync()?;
    sockets::connect_ok(p, &sk, mapped(server4), p.port())?;
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, MESSAGES, MESSAGE_LEN, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("client counters after the echo: {e}"))?;
    check_keys_on_mapped(&sk, s4, Family::Ipv4.wrong_addr(), v6(Side::Server))?;
    drop(sk);
    // A socket connected over IPv6 takes no mapped key.
    let sk6 = sockets::tcp_socket(Family::Ipv6)?;
    sk6.bind_device(Some(VETH_NAME.as_bytes()))
        .or_fail("SO_BINDTODEVICE failed")?;
    sockets::add_key(p, &sk6, &TestKey::new(v6(Side::Server), 101, 101))?;
    sockets::connect_ok(p, &sk6, v6(Side::Server), p.port())?;
    try_key(
        &sk6,
        &TestKey::new(server4, 5, 5),
        false,
        "a mapped key to a socket connected over IPv6",
    )?;
    p.sync()
}

fn family_server(p: &Peer<'_>) -> PeerResult {
    let lsk = dualstack_listener(p.port())?;
    sockets::add_key(p, &lsk, &TestKey::new(v6(Side::Client), 100, 100))?;
    super::expect_netns(
        p,
        &[("TCPAOKeyNotFound", 1)],
        Grew::NS_KEY_NOT_FOUND,
        "an IPv4 SYN signed with key 100:100 to a listener whose key 100:100 is an IPv6 key",
    )?;
    match lsk.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        r => {
            return Err(failure!(
                "an IPv4 client was accepted with a listener's IPv6 key: accept() returned {r:?}"
            ));
        }
    }
    p.sync()
}

fn family_client(p: &Peer<'_>) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &TestKey::new(p.remote_addr(), 100, 100))?;
    p.sync()?; // the server took its snapshot
    match sk.connect(&SockAddr::from(SocketAddr::new(p.remote_addr(), p.port()))) {
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
        r => return Err(failure!("connect() returned {r:?}, expected EINPROGRESS")),
    }
    p.sync()?; // the server counted our SYN
    p.sync()
}

fn unreach_server(p: &Peer<'_>) -> PeerResult {
    let lsk = dualstack_listener(p.port())?;
    sockets::add_key(p, &lsk, &TestKey::new(v6(Side::Client), 100, 100))?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    let before = Counters::of(&sk)?;
    let served = sockets::echo_server(p, &sk, p.deadline())?;
    if served != (MESSAGES * MESSAGE_LEN) as u64 {
        return Err(failure!("the server echoed {served} bytes"));
    }
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("server counters after the echo: {e}"))
}

fn unreach_client(p: &Peer<'_>) -> PeerResult {
    // Not bound to the veth: with a bound device IPv4 would take the unroutable address as
    // on-link instead of failing.
    let sk = sockets::tcp_socket(Family::Ipv6)?;
    sk.set_only_v6(false).or_fail("IPV6_V6ONLY off failed")?;
    let nowhere = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
    sk.add_ao_key(&TestKey::new(nowhere, 1, 1).to_ao_key()?)
        .or_fail("adding a key for a mapped address failed")?;
    sockets::add_key(p, &sk, &TestKey::new(v6(Side::Server), 100, 100))?;
    p.sync()?;
    match sk.connect(&SockAddr::from(SocketAddr::new(mapped(nowhere), p.port()))) {
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENETUNREACH as i32) => {}
        r => {
            return Err(failure!(
                "connect() to unroutable {} returned {r:?}, expected ENETUNREACH",
                mapped(nowhere)
            ));
        }
    }
    sockets::connect_ok(p, &sk, v6(Side::Server), p.port())?;
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, MESSAGES, MESSAGE_LEN, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("client counters after the echo: {e}"))?;
    let info = sk
        .ao_info()
        .or_fail("getsockopt(TCP_AO_INFO) failed")?
        .ok_or_else(|| failure!("the connection has no TCP-AO state"))?;
    if (info.current_key, info.rnext_key) != (Some(100), Some(100)) {
        return Err(failure!(
            "the IPv6 connection uses Current_key {:?} RNext_key {:?}, expected 100",
            info.current_key,
            info.rnext_key
        ));
    }
    Ok(())
}

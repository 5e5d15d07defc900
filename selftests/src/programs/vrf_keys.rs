// SPDX-License-Identifier: MIT OR Apache-2.0
//! `vrf-keys`: deleting VRF-bound keys, and a TCP-AO connection inside a VRF. No upstream
//! selftest deletes a key bound to a real VRF or connects through one.
//!
//! Reading `tcp_ao_del_cmd()` suggests that its local `l3index` starts at 0 and is never set
//! from `cmd.ifindex`, so a key bound to VRF 200 (`TCP_AO_KEYF_IFINDEX`, ifindex 200) could
//! never be found by `TCP_AO_DEL_KEY` (`ENOENT`). The `del-vrf-key*` cases assert what the
//! kernel does: a successful delete passes (the key is gone), `ENOENT` with the key still
//! listed is reported as XFail with that reason — the same test turns into a pass once the
//! kernel is fixed. The other cases must pass:
//!
//! - `del-ifindex-0-key`: a key with `TCP_AO_KEYF_IFINDEX` and ifindex 0 (default VRF only)
//!   is deleted by the same selector;
//! - `del-vrf-key-without-flag`: deleting the VRF-200 key without the flag is `ENOENT` (the
//!   flag must match) and the key stays;
//! - `del-vrf-key-wrong-ifindex`: deleting it with the flag and ifindex 0 is `ENOENT` too
//!   (l3index is compared), and the key stays;
//! - `connect-in-vrf`: both veth ends enslaved to `ksft-vrf` (ifindex 200), sockets bound to
//!   the VRF, keys bound to VRF 200: connect, echo, GOOD only on both sides, the accepted
//!   socket holds the VRF-bound key, every segment verified by the reference.

use std::net::IpAddr;

use socket2::{SockAddr, Socket};
use tcpao_sys::{KeyFilter, TcpAoExt};

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::netns;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::programs::extras;
use crate::registry::Test;
use crate::sockets::{self, TestKey};
use crate::topology::{Family, Netlink, TopologyConfig, VRF_IFINDEX, VRF_NAME, VRF_TABLE};

pub(crate) fn vrf_topology() -> TopologyConfig {
    TopologyConfig {
        vrf: true,
        ..TopologyConfig::default()
    }
}

/// Where the key under deletion lives.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sock {
    Closed,
    Listen,
}

/// The program's tests: 6 cases × 2 families.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    for (slug, sock) in [
        ("del-vrf-key", Sock::Closed),
        ("del-vrf-key-listen", Sock::Listen),
    ] {
        v.extend(
            PairTest::new("vrf-keys", slug)
                .ao()
                .topology(vrf_topology())
                .build(move |p| release(p, del_vrf_key(p, sock)), idle),
        );
    }
    v.extend(
        PairTest::new("vrf-keys", "del-ifindex-0-key")
            .ao()
            .topology(vrf_topology())
            .build(|p| release(p, del_ifindex0_key(p)), idle),
    );
    for (slug, del_vrf) in [
        ("del-vrf-key-without-flag", None),
        ("del-vrf-key-wrong-ifindex", Some(0)),
    ] {
        v.extend(
            PairTest::new("vrf-keys", slug)
                .ao()
                .topology(vrf_topology())
                .build(move |p| release(p, del_mismatched(p, del_vrf)), idle),
        );
    }
    v.extend(
        PairTest::new("vrf-keys", "connect-in-vrf")
            .ao()
            .topology(vrf_topology())
            .build(vrf_server, vrf_client),
    );
    v
}

/// The client of the uAPI cases: it does nothing but keep its namespace alive until the
/// server is done ([`release`]). The veth pair dies with the first of its two namespaces, so a
/// client that returned at once took the server's `ktst-veth` with it (a listening socket's
/// `SO_BINDTODEVICE` then failed with `ENODEV`, depending on how fast the namespace was torn
/// down).
pub(crate) fn idle(p: &Peer<'_>) -> PeerResult {
    p.sync()
}

/// Server side of a uAPI case: its result `r`, then let the [`idle`] client go.
pub(crate) fn release(p: &Peer<'_>, r: PeerResult) -> PeerResult {
    r?;
    p.sync()
}

fn socket_for(p: &Peer<'_>, sock: Sock) -> PeerResult<Socket> {
    match sock {
        Sock::Closed => sockets::tcp_socket(p.family()),
        Sock::Listen => sockets::listen(p, p.port(), 1),
    }
}

fn vrf_key(p: &Peer<'_>, ifindex: Option<u32>) -> TestKey {
    let mut k = TestKey::new(p.remote_addr(), 100, 100);
    k.vrf = ifindex;
    k
}

/// The keys on `sk` (none when TCP-AO state has no keys left).
fn listed(sk: &Socket) -> PeerResult<Vec<tcpao_sys::AoKeyInfo>> {
    match sk.ao_keys(&KeyFilter::All) {
        Ok(k) => Ok(k),
        Err(tcpao_sys::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(failure!("TCP_AO_GET_KEYS failed: {e}")),
    }
}

pub(crate) fn del_vrf_key(p: &Peer<'_>, sock: Sock) -> PeerResult {
    let sk = socket_for(p, sock)?;
    let k = vrf_key(p, Some(VRF_IFINDEX));
    sockets::add_key(p, &sk, &k)?;
    let keys = listed(&sk)?;
    if keys.len() != 1 || keys[0].selector.vrf != Some(VRF_IFINDEX) {
        return Err(failure!(
            "after adding a key bound to VRF {VRF_IFINDEX} the socket lists {:?}",
            keys.iter().map(|k| k.selector).collect::<Vec<_>>()
        ));
    }
    let sel = k.to_ao_key()?.selector();
    match sk.del_ao_key(&sel) {
        Ok(()) => {
            let left = listed(&sk)?;
            if !left.is_empty() {
                return Err(failure!(
                    "TCP_AO_DEL_KEY of the VRF {VRF_IFINDEX} key succeeded but {} keys are still listed",
                    left.len()
                ));
            }
            p.diag(format!("the key bound to VRF {VRF_IFINDEX} was deleted"));
            Ok(())
        }
        Err(tcpao_sys::Error::NotFound { .. }) => {
            let left = listed(&sk)?;
            if left.len() != 1 {
                return Err(failure!(
                    "TCP_AO_DEL_KEY said ENOENT, yet the socket now lists {} keys",
                    left.len()
                ));
            }
            Err(Failure::XFail(format!(
                "TCP_AO_DEL_KEY cannot delete a key bound to VRF {VRF_IFINDEX} ({} socket): ENOENT, \
                 the key stays; tcp_ao_del_cmd() compares key->l3index with an l3index it never sets \
                 from tcp_ao_del.ifindex",
                match sock {
                    Sock::Closed => "closed",
                    Sock::Listen => "listening",
                }
            )))
        }
        Err(e) => Err(failure!(
            "TCP_AO_DEL_KEY of the VRF {VRF_IFINDEX} key failed with {e} (errno {:?})",
            e.raw_os_error()
        )),
    }
}

fn del_ifindex0_key(p: &Peer<'_>) -> PeerResult {
    let sk = sockets::tcp_socket(p.family())?;
    let k = vrf_key(p, Some(0));
    sockets::add_key(p, &sk, &k)?;
    let sel = k.to_ao_key()?.selector();
    sk.del_ao_key(&sel).map_err(|e| {
        failure!("TCP_AO_DEL_KEY of a key with TCP_AO_KEYF_IFINDEX and ifindex 0 failed: {e}")
    })?;
    let left = listed(&sk)?;
    if !left.is_empty() {
        return Err(failure!(
            "the ifindex-0 key was deleted but {} keys are still listed",
            left.len()
        ));
    }
    Ok(())
}

/// Delete the VRF-200 key with another VRF binding (`None`: no flag; `Some(0)`: flag, ifindex
/// 0): must be `ENOENT`, and the key stays.
fn del_mismatched(p: &Peer<'_>, del_vrf: Option<u32>) -> PeerResult {
    let sk = sockets::tcp_socket(p.family())?;
    let k = vrf_key(p, Some(VRF_IFINDEX));
    sockets::add_key(p, &sk, &k)?;
    let mut sel = k.to_ao_key()?.selector();
    sel.vrf = del_vrf;
    match sk.del_ao_key(&sel) {
        Err(tcpao_sys::Error::NotFound { .. }) => {}
        r => {
            return Err(failure!(
                "deleting the VRF {VRF_IFINDEX} key with VRF binding {del_vrf:?} was expected to fail with ENOENT, it gave {r:?}"
            ));
        }
    }
    if listed(&sk)?.len() != 1 {
        return Err(failure!("the VRF key disappeared after a failed delete"));
    }
    Ok(())
}

/// Enslave this side's veth to the VRF and restore what the enslaving (a down/up cycle of the
/// veth) removed: addresses (IPv6 without `keep_addr_on_down`) and the host routes in the
/// VRF's table.
pub(crate) fn enter_vrf(p: &Peer<'_>) -> PeerResult {
    let vrf = p
        .link()
        .vrf_index
        .ok_or_else(|| Failure::Setup("the topology has no VRF".into()))?;
    let veth = p.link().veth_index;
    let nl = Netlink::open().map_err(|e| Failure::Setup(e.to_string()))?;
    let setup = |what: &str, r: crate::topology::Result<()>| -> PeerResult {
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.is_exists() => Ok(()),
            Err(e) => Err(Failure::Setup(format!("{what}: {e}"))),
        }
    };
    let _ = netns::sysctl_write("net/ipv6/conf/all/keep_addr_on_down", "1");
    setup("enslave the veth", nl.set_controller(veth, vrf))?;
    let (mine, peer): (Vec<IpAddr>, Vec<IpAddr>) = Family::ALL
        .iter()
        .map(|f| match p.side() {
            crate::topology::Side::Server => (f.server_addr(), f.client_addr()),
            crate::topology::Side::Client => (f.client_addr(), f.server_addr()),
        })
        .unzip();
    for a in &mine {
        setup(
            "re-add the address",
            nl.add_address(veth, *a, Family::of(*a).host_prefix()),
        )?;
    }
    nl.wait_oper_up(veth, p.deadline())
        .map_err(|e| Failure::Setup(e.to_string()))?;
    for (d, s) in peer.iter().zip(&mine) {
        setup(
            "route to the peer in the VRF table",
            nl.add_host_route(veth, *d, *s, Some(VRF_TABLE)),
        )?;
    }
    Ok(())
}

pub(crate) fn vrf_socket(p: &Peer<'_>) -> PeerResult<Socket> {
    let sk = sockets::tcp_socket(p.family())?;
    sk.bind_device(Some(VRF_NAME.as_bytes()))
        .or_fail("SO_BINDTODEVICE to the VRF failed")?;
    Ok(sk)
}

fn vrf_server(p: &Peer<'_>) -> PeerResult {
    enter_vrf(p)?;
    let lsk = vrf_socket(p)?;
    lsk.set_reuse_address(true).or_fail("SO_REUSEADDR failed")?;
    lsk.bind(&SockAddr::from(std::net::SocketAddr::new(
        p.local_addr(),
        p.port(),
    )))
    .or_fail("bind() failed")?;
    lsk.listen(1).or_fail("listen() failed")?;
    sockets::add_key(p, &lsk, &vrf_key(p, Some(VRF_IFINDEX)))?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    let keys = listed(&sk)?;
    if keys.len() != 1 || keys[0].selector.vrf != Some(VRF_IFINDEX) {
        return Err(failure!(
            "the accepted socket holds {:?}, expected the key bound to VRF {VRF_IFINDEX}",
            keys.iter().map(|k| k.selector).collect::<Vec<_>>()
        ));
    }
    let before = Counters::of(&sk)?;
    let served = sockets::echo_server(p, &sk, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("server counters in the VRF: {e}"))?;
    p.diag(format!("served {served} bytes inside VRF {VRF_IFINDEX}"));
    Ok(())
}

fn vrf_client(p: &Peer<'_>) -> PeerResult {
    enter_vrf(p)?;
    let sk = vrf_socket(p)?;
    sockets::add_key(p, &sk, &vrf_key(p, Some(VRF_IFINDEX)))?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, extras::MESSAGES, extras::MESSAGE_LEN, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("client counters in the VRF: {e}"))?;
    drop(sk);
    let total = (extras::MESSAGES * extras::MESSAGE_LEN) as u32;
    extras::wait_flow_bytes(p, p.port(), total, total)?;
    Ok(())
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! `unsigned-md5`: TCP-AO, TCP-MD5 and unsigned peers mixed on one listener, TCP-AO and TCP-MD5
//! keys on one socket, and the VRF key-overlap rules (kernel `unsigned-md5.c`: all 47 cases, 72
//! results), plus our own `connect()` cases of the "never both kinds for one peer" rule.
//!
//! Every case runs in fresh namespaces with the extra client addresses client2 = 10.0.2.1 and
//! client3 = 10.0.3.1 (2001:db8:2::1, 2001:db8:3::1), routed on the server; the VRF cases also
//! get the VRF `ksft-vrf` (ifindex 200, table 42).
//!
//! - **Server/client pairs.** The server's listener gets a TCP-AO key, a TCP-MD5 key, both (for
//!   different client addresses) or none; the client connects from one of its addresses with
//!   a TCP-AO key, a TCP-MD5 key or unsigned. For a handshake that must fail the server polls
//!   its counters until the expected one moves, then tells the client to stop waiting; it
//!   then asserts that exactly the expected counters grew (kernel `test_assert_counters`).
//! - **Established sockets** cannot get keys of the other kind (no switching after the
//!   handshake: TCP-AO traffic keys need the ISNs; `tcp_ao.rst`): checked on both the client
//!   and the accepted socket.
//! - **Pre-connect overlap**: TCP-AO and TCP-MD5 keys for the same peer, or `ao_required` with
//!   a TCP-MD5 key, are refused with `EKEYREJECTED` in either order.
//! - **VRF**: the allow/reject matrix of TCP-AO and TCP-MD5 keys with no l3index, l3index 0 and
//!   l3index 200, in both orders.

use std::net::{IpAddr, SocketAddr};

use nix::errno::Errno;
use socket2::{SockAddr, Socket};
use tcpao_sys::{MasterKey, Md5Ext, Md5Key, PeerPrefix, TcpAoExt};

use crate::counters::{Counters, Grew, Mib};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::probe::Feature;
use crate::programs::PairTest;
use crate::registry::Test;
use crate::sockets::{self, Connect, TestKey};
use crate::topology::{TopologyConfig, VRF_IFINDEX};

const PROGRAM: &str = "unsigned-md5";

/// The TCP-MD5 password of every case (our own sentence).
const MD5_PASSWORD: &[u8] = b"An old secret for old peers, kept while they learn TCP-AO.";

/// Where a key points, or which address a client binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addr {
    /// The any-address with prefix 0 (matches every peer).
    Any,
    /// Test address `10.0.n.1` / `2001:db8:n::1` as a host key (1 = the client's main one).
    Host(u8),
    /// The server's address.
    Server,
    /// The network of every test address (10.0.0.0/16, 2001::/16).
    Network,
    /// An address nobody has (10.0.253.1).
    Wrong,
}

impl Addr {
    fn prefix(self, p: &Peer<'_>) -> (IpAddr, u8) {
        let f = p.family();
        match self {
            Addr::Any => (f.any_addr(), 0),
            Addr::Host(n) => (f.test_addr(n), f.host_prefix()),
            Addr::Server => (f.server_addr(), f.host_prefix()),
            Addr::Network => f.network(),
            Addr::Wrong => (f.wrong_addr(), f.host_prefix()),
        }
    }
}

/// Keys of one socket: TCP-MD5 is always added before TCP-AO (as the kernel test does).
#[derive(Debug, Clone, Copy)]
struct Keys {
    md5: Option<Addr>,
    ao: Option<Addr>,
}

const NONE: Keys = Keys {
    md5: None,
    ao: None,
};
const AO_ANY: Keys = Keys {
    md5: None,
    ao: Some(Addr::Any),
};
const MD5_ANY: Keys = Keys {
    md5: Some(Addr::Any),
    ao: None,
};
/// The AO+MD5 server: TCP-MD5 for the client's main address, TCP-AO for client2.
const AO_MD5: Keys = Keys {
    md5: Some(Addr::Host(1)),
    ao: Some(Addr::Host(2)),
};

/// What a pair case expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The connection is established and echoes; the listener's counters grow by `grew`.
    Connects { grew: Grew },
    /// The handshake times out; the server's netns `counter` moves and exactly `grew` grew.
    Timeout { counter: &'static str, grew: Grew },
    /// `connect()` is refused locally with `EKEYREJECTED`; no SYN reaches the server.
    Rejected,
}

/// One server/client pair.
struct Pair {
    slug: &'static str,
    server: Keys,
    ao_required: bool,
    client: Keys,
    /// The client's source address: `n` of `10.0.n.1`.
    bind: u8,
    expect: Expect,
    /// After connect(), the client's TCP-AO state must be gone (a matching TCP-MD5 key won).
    ao_dropped: bool,
}

const fn pair(slug: &'static str, server: Keys, client: Keys, bind: u8, expect: Expect) -> Pair {
    Pair {
        slug,
        server,
        ao_required: false,
        client,
        bind,
        expect,
        ao_dropped: false,
    }
}

const fn timeout(counter: &'static str, grew: Grew) -> Expect {
    Expect::Timeout { counter, grew }
}

const CONNECTS_AO: Expect = Expect::Connects { grew: Grew::GOOD };
const CONNECTS_PLAIN: Expect = Expect::Connects {
    grew: Grew::empty(),
};

/// The kernel's 22 pairs, then ours.
const PAIRS: [Pair; 25] = [
    pair("ao-server-any-ao-client", AO_ANY, AO_ANY, 1, CONNECTS_AO),
    pair(
        "ao-server-any-md5-client",
        AO_ANY,
        MD5_ANY,
        1,
        timeout("TCPMD5Unexpected", Grew::NS_MD5_UNEXPECTED),
    ),
    pair(
        "ao-server-any-unsigned-client",
        AO_ANY,
        NONE,
        1,
        timeout("TCPAORequired", Grew::AO_REQUIRED),
    ),
    Pair {
        ao_required: true,
        ..pair(
            "ao-required-server-ao-client",
            Keys {
                md5: None,
                ao: Some(Addr::Host(1)),
            },
            AO_ANY,
            1,
            CONNECTS_AO,
        )
    },
    Pair {
        ao_required: true,
        ..pair(
            "ao-required-server-unsigned-client",
            Keys {
                md5: None,
                ao: Some(Addr::Host(1)),
            },
            NONE,
            2,
            timeout("TCPAORequired", Grew::AO_REQUIRED),
        )
    },
    pair(
        "md5-server-any-ao-client",
        MD5_ANY,
        AO_ANY,
        1,
        timeout("TCPAOKeyNotFound", Grew::NS_KEY_NOT_FOUND),
    ),
    pair(
        "md5-server-any-md5-client",
        MD5_ANY,
        MD5_ANY,
        1,
        CONNECTS_PLAIN,
    ),
    pair(
        "md5-server-any-unsigned-client",
        MD5_ANY,
        NONE,
        1,
        timeout("TCPMD5NotFound", Grew::NS_MD5_NOT_FOUND),
    ),
    pair(
        "unsigned-server-ao-client",
        NONE,
        AO_ANY,
        1,
        timeout("TCPAOKeyNotFound", Grew::NS_KEY_NOT_FOUND),
    ),
    pair(
        "unsigned-server-md5-client",
        NONE,
        MD5_ANY,
        1,
        timeout("TCPMD5Unexpected", Grew::NS_MD5_UNEXPECTED),
    ),
    pair(
        "unsigned-server-unsigned-client",
        NONE,
        NONE,
        1,
        CONNECTS_PLAIN,
    ),
    pair(
        "ao-md5-server-ao-client-matching",
        AO_MD5,
        AO_ANY,
        2,
        CONNECTS_AO,
    ),
    pair(
        "ao-md5-server-ao-client-matching-md5",
        AO_MD5,
        AO_ANY,
        1,
        timeout("TCPAOKeyNotFound", Grew::KEY_NOT_FOUND),
    ),
    pair(
        "ao-md5-server-ao-client-non-matching",
        AO_MD5,
        AO_ANY,
        3,
        timeout("TCPAOKeyNotFound", Grew::KEY_NOT_FOUND),
    ),
    pair(
        "ao-md5-server-md5-client-matching",
        AO_MD5,
        MD5_ANY,
        1,
        CONNECTS_PLAIN,
    ),
    pair(
        "ao-md5-server-md5-client-matching-ao",
        AO_MD5,
        MD5_ANY,
        2,
        timeout("TCPMD5Unexpected", Grew::NS_MD5_UNEXPECTED),
    ),
    pair(
        "ao-md5-server-md5-client-non-matching",
        AO_MD5,
        MD5_ANY,
        3,
        timeout("TCPMD5Unexpected", Grew::NS_MD5_UNEXPECTED),
    ),
    pair(
        "ao-md5-server-unsigned-client-unmatched",
        AO_MD5,
        NONE,
        3,
        CONNECTS_PLAIN,
    ),
    pair(
        "ao-md5-server-unsigned-client-matching-ao",
        AO_MD5,
        NONE,
        2,
        timeout("TCPAORequired", Grew::AO_REQUIRED),
    ),
    pair(
        "ao-md5-server-unsigned-client-matching-md5",
        AO_MD5,
        NONE,
        1,
        timeout("TCPMD5NotFound", Grew::NS_MD5_NOT_FOUND),
    ),
    // The client's TCP-MD5 key is for its own main address, its TCP-AO key for client2:
    // neither matches the server, and an AO socket without a matching key may not connect.
    pair(
        "ao-md5-server-client-both-keys-md5-side",
        AO_MD5,
        AO_MD5,
        1,
        Expect::Rejected,
    ),
    pair(
        "ao-md5-server-client-both-keys-ao-side",
        AO_MD5,
        AO_MD5,
        2,
        Expect::Rejected,
    ),
    // Ours: a TCP-MD5 key and a TCP-AO key that both match the server (the AO key through its
    // /16 prefix, added after the /32 MD5 key, which the overlap check lets pass): connect()
    // cannot choose and refuses (tcp_connect()).
    pair(
        "client-md5-and-ao-keys-both-match",
        NONE,
        Keys {
            md5: Some(Addr::Server),
            ao: Some(Addr::Network),
        },
        1,
        Expect::Rejected,
    ),
    // Ours: only the TCP-MD5 key matches; connect() frees the TCP-AO keys and connects with
    // TCP-MD5.
    Pair {
        ao_dropped: true,
        ..pair(
            "client-md5-matches-ao-keys-dropped",
            MD5_ANY,
            Keys {
                md5: Some(Addr::Server),
                ao: Some(Addr::Wrong),
            },
            1,
            CONNECTS_PLAIN,
        )
    },
    // Ours: only the TCP-AO key matches; connect() frees the TCP-MD5 keys and connects with
    // TCP-AO.
    pair(
        "client-ao-matches-md5-keys-dropped",
        AO_ANY,
        Keys {
            md5: Some(Addr::Wrong),
            ao: Some(Addr::Server),
        },
        1,
        CONNECTS_AO,
    ),
];

fn topology(vrf: bool) -> TopologyConfig {
    TopologyConfig {
        extra_clients: vec![2, 3],
        vrf,
    }
}

fn needs_md5(k: &Keys) -> bool {
    k.md5.is_some()
}

/// The program's tests: 25 pairs (22 upstream, 3 ours), 3 established, 4 overlap and 18 VRF
/// cases, × 2 families.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    for c in &PAIRS {
        let mut t = PairTest::new(PROGRAM, c.slug)
            .ao()
            .topology(topology(false));
        if needs_md5(&c.server) || needs_md5(&c.client) {
            t = t.requires(&[Feature::TcpMd5]);
        }
        v.extend(t.build(move |p| pair_server(p, c), move |p| pair_client(p, c)));
    }
    for c in &ESTABLISHED {
        let mut t = PairTest::new(PROGRAM, c.slug)
            .ao()
            .topology(topology(false));
        if c.kind != Kind::Unsigned {
            t = t.requires(&[Feature::TcpMd5]);
        }
        v.extend(t.build(
            move |p| established_server(p, c),
            move |p| established_client(p, c),
        ));
    }
    for c in &OVERLAPS {
        v.extend(
            PairTest::new(PROGRAM, c.slug)
                .ao()
                .requires(&[Feature::TcpMd5])
                .topology(topology(false))
                .build(|_| Ok(()), move |p| overlap_client(p, c)),
        );
    }
    for c in vrf_cases() {
        v.extend(
            PairTest::new(PROGRAM, &c.slug())
                .ao()
                .requires(&[Feature::TcpMd5])
                .topology(topology(true))
                .build(|_| Ok(()), move |p| vrf_client(p, &c)),
        );
    }
    v
}

fn ao_key(p: &Peer<'_>, a: Addr) -> TestKey {
    let (addr, len) = a.prefix(p);
    TestKey::new(addr, 100, 100).prefix(addr, len)
}

fn add_keys(p: &Peer<'_>, sk: &Socket, k: &Keys) -> PeerResult {
    if let Some(a) = k.md5 {
        let (addr, len) = a.prefix(p);
        sockets::add_md5_key(p, sk, addr, len, MD5_PASSWORD)?;
    }
    if let Some(a) = k.ao {
        sockets::add_key(p, sk, &ao_key(p, a))?;
    }
    Ok(())
}

fn bind_to(p: &Peer<'_>, sk: &Socket, n: u8) -> PeerResult {
    let addr = p.family().test_addr(n);
    sk.bind(&SockAddr::from(SocketAddr::new(addr, 0)))
        .or_fail(&format!("bind({addr}) failed"))
}

fn is_errno(e: &std::io::Error, errno: Errno) -> bool {
    e.raw_os_error() == Some(errno as i32)
}

fn pair_server(p: &Peer<'_>, c: &Pair) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    add_keys(p, &lsk, &c.server)?;
    if c.ao_required {
        lsk.set_ao_required(true)
            .or_fail("setsockopt(TCP_AO_INFO) with ao_required failed")?;
    }
    let before = Counters::of(&lsk)?;
    let estab_before = Mib::Tcp.read("CurrEstab")?;
    p.sync()?;
    match c.expect {
        Expect::Timeout { counter, grew } => {
            let moved = p.wait_for(p.deadline(), || {
                let now = Counters::of(&lsk)?;
                Ok((now.ns_delta(&before, counter) > 0).then_some(now))
            })?;
            let Some(moved) = moved else {
                return Err(failure!(
                    "{}: counter {counter} did not increase within {:?}",
                    c.slug,
                    p.timeout()
                ));
            };
            p.signal();
            if sockets::accept(p, &lsk, std::time::Instant::now(), || false)?.is_some() {
                return Err(failure!(
                    "{}: a connection was accepted although the handshake had to fail",
                    c.slug
                ));
            }
            Counters::of(&lsk)?
                .assert_grew_exactly(&before, grew)
                .map_err(|e| failure!("{}: {e}", c.slug))?;
            p.diag(format!(
                "{}: counter {counter} increased {} => {}",
                c.slug,
                before.netns.get(counter),
                moved.netns.get(counter)
            ));
        }
        Expect::Rejected => {
            if p.wait_for(p.deadline(), || Ok((p.peer_signals() > 0).then_some(())))?
                .is_none()
            {
                return Err(failure!(
                    "{}: the client did not finish its connect() in time",
                    c.slug
                ));
            }
            if sockets::accept(p, &lsk, std::time::Instant::now(), || false)?.is_some() {
                return Err(failure!(
                    "{}: a connection was accepted although connect() had to be refused",
                    c.slug
                ));
            }
            Counters::of(&lsk)?
                .assert_grew_exactly(&before, Grew::empty())
                .map_err(|e| failure!("{}: a SYN reached the server: {e}", c.slug))?;
        }
        Expect::Connects { grew } => {
            let sk = sockets::accept(p, &lsk, p.deadline(), || false)?.ok_or_else(|| {
                failure!(
                    "{}: no connection was accepted within {:?}",
                    c.slug,
                    p.timeout()
                )
            })?;
            let estab = Mib::Tcp.read("CurrEstab")?;
            if estab <= estab_before {
                return Err(failure!(
                    "{}: counter CurrEstab did not increase: {estab_before} => {estab}",
                    c.slug,
                ));
            }
            sockets::echo_server(p, &sk, p.deadline())?;
            Counters::of(&lsk)?
                .assert_grew_exactly(&before, grew)
                .map_err(|e| failure!("{}: {e}", c.slug))?;
            p.diag(format!(
                "{}: connected, CurrEstab {estab_before} => {estab}",
                c.slug,
            ));
        }
    }
    Ok(())
}

fn pair_client(p: &Peer<'_>, c: &Pair) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    bind_to(p, &sk, c.bind)?;
    add_keys(p, &sk, &c.client)?;
    let before = Counters::of(&sk)?;
    p.sync()?;
    let r = sockets::connect(p, &sk, p.remote_addr(), p.port(), p.deadline(), || {
        p.peer_signals() > 0
    })?;
    match (c.expect, r) {
        (Expect::Timeout { .. }, Connect::TimedOut) => {
            Counters::of(&sk)?
                .assert_grew_exactly(&before, Grew::empty())
                .map_err(|e| {
                    failure!(
                        "{}: the handshake timed out, but the client's counters moved: {e}",
                        c.slug
                    )
                })?;
        }
        (Expect::Rejected, Connect::Failed(e)) if is_errno(&e, Errno::EKEYREJECTED) => {
            p.signal();
            p.diag(format!("{}: connect() was prevented: {e}", c.slug));
        }
        (Expect::Connects { .. }, Connect::Established) => {
            let start = Counters::of(&sk)?;
            if c.ao_dropped {
                if start.sock.is_some() {
                    return Err(failure!(
                        "{}: the client still has TCP-AO state after connecting with its TCP-MD5 key",
                        c.slug
                    ));
                }
            } else if start.sock.is_some() != before.sock.is_some() {
                return Err(failure!(
                    "{}: the client's TCP-AO state appeared or vanished in connect()",
                    c.slug
                ));
            }
            sockets::echo_verify(p, &sk, 5, 100, p.deadline())?;
            let grew = if c.client.ao.is_some() && !c.ao_dropped {
                Grew::GOOD
            } else {
                Grew::empty()
            };
            Counters::of(&sk)?
                .assert_grew_exactly(&start, grew)
                .map_err(|e| failure!("{}: client: {e}", c.slug))?;
            p.diag(format!("{}: connected", c.slug));
        }
        (Expect::Rejected, r) => {
            p.signal();
            return Err(failure!(
                "{}: connect() was expected to fail with EKEYREJECTED, it ended with {r:?}",
                c.slug
            ));
        }
        (Expect::Timeout { .. }, r) => {
            return Err(failure!(
                "{}: the handshake was expected to time out, it ended with {r:?}",
                c.slug
            ));
        }
        (Expect::Connects { .. }, r) => {
            return Err(failure!(
                "{}: the connection was expected to succeed, it ended with {r:?}",
                c.slug
            ));
        }
    }
    Ok(())
}

/// Which kind of connection an established case makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ao,
    Md5,
    Unsigned,
}

/// An established connection gets a key of the other kind: refused on both sides.
struct Established {
    slug: &'static str,
    kind: Kind,
    /// The errno of the late key: TCP-MD5 on a TCP-AO socket is EKEYREJECTED (an AO key
    /// matches the peer); TCP-AO on a socket without TCP-AO state is EISCONN.
    errno: Errno,
}

const ESTABLISHED: [Established; 3] = [
    Established {
        slug: "ao-established-add-md5-key",
        kind: Kind::Ao,
        errno: Errno::EKEYREJECTED,
    },
    Established {
        slug: "md5-established-add-ao-key",
        kind: Kind::Md5,
        errno: Errno::EISCONN,
    },
    Established {
        slug: "unsigned-established-add-ao-key",
        kind: Kind::Unsigned,
        errno: Errno::EISCONN,
    },
];

/// Try the late key of the other kind on the established `sk` (peer `peer`).
fn late_key(p: &Peer<'_>, sk: &Socket, c: &Established, peer: IpAddr) -> PeerResult {
    let host = p.family().host_prefix();
    let r = match c.kind {
        Kind::Ao => sk
            .add_md5_key(&Md5Key {
                peer: PeerPrefix::new(peer, host).or_fail("MD5 key prefix")?,
                vrf: None,
                key: MasterKey::new(MD5_PASSWORD).or_fail("MD5 key")?,
            })
            .map_err(|e| (e.raw_os_error(), e.to_string())),
        Kind::Md5 | Kind::Unsigned => {
            // With TCP_AO_KEYF_IFINDEX and l3index 0, like the kernel test's key.
            let mut k = TestKey::new(peer, 100, 100);
            k.vrf = Some(0);
            sk.add_ao_key(&k.to_ao_key()?)
                .map_err(|e| (e.raw_os_error(), e.to_string()))
        }
    };
    match r {
        Err((Some(errno), text)) if errno == c.errno as i32 => {
            p.diag(format!("{}: postfailed as expected: {text}", c.slug));
            Ok(())
        }
        Err((_, text)) => Err(failure!(
            "{}: the late setsockopt() failed with {text}, expected {}",
            c.slug,
            c.errno
        )),
        Ok(()) => Err(failure!(
            "{}: a key of the other kind was added to an established connection",
            c.slug
        )),
    }
}

fn established_server(p: &Peer<'_>, c: &Established) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    match c.kind {
        Kind::Ao => sockets::add_key(p, &lsk, &ao_key(p, Addr::Any))?,
        Kind::Md5 => sockets::add_md5_key(p, &lsk, p.family().any_addr(), 0, MD5_PASSWORD)?,
        Kind::Unsigned => {}
    }
    let before = Counters::of(&lsk)?;
    let estab_before = Mib::Tcp.read("CurrEstab")?;
    p.sync()?;
    let sk = sockets::accept(p, &lsk, p.deadline(), || false)?.ok_or_else(|| {
        failure!(
            "{}: no connection was accepted within {:?}",
            c.slug,
            p.timeout()
        )
    })?;
    let now = Counters::of(&lsk)?;
    match c.kind {
        Kind::Ao => now
            .assert_grew_exactly(&before, Grew::GOOD)
            .map_err(|e| failure!("{}: {e}", c.slug))?,
        Kind::Md5 => now
            .assert_grew_exactly(&before, Grew::empty())
            .map_err(|e| failure!("{}: {e}", c.slug))?,
        Kind::Unsigned => {
            let estab = Mib::Tcp.read("CurrEstab")?;
            if estab <= estab_before {
                return Err(failure!(
                    "{}: counter CurrEstab did not increase: {estab_before} => {estab}",
                    c.slug,
                ));
            }
        }
    }
    // Ours: the accepted socket refuses the other kind too.
    late_key(p, &sk, c, p.remote_addr())?;
    p.sync()?; // the client tried its late key
    sockets::echo_server(p, &sk, p.deadline())?;
    Ok(())
}

fn established_client(p: &Peer<'_>, c: &Established) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    bind_to(p, &sk, 1)?;
    match c.kind {
        Kind::Ao => {
            let mut k = TestKey::new(p.remote_addr(), 100, 100);
            k.vrf = Some(0);
            sockets::add_key(p, &sk, &k)?;
        }
        Kind::Md5 => sockets::add_md5_key(
            p,
            &sk,
            p.remote_addr(),
            p.family().host_prefix(),
            MD5_PASSWORD,
        )?,
        Kind::Unsigned => {}
    }
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    late_key(p, &sk, c, p.remote_addr())?;
    p.sync()?;
    // The connection still works, with the keys it was made with.
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, 5, 100, p.deadline())?;
    let grew = if c.kind == Kind::Ao {
        Grew::GOOD
    } else {
        Grew::empty()
    };
    Counters::of(&sk)?
        .assert_grew_exactly(&before, grew)
        .map_err(|e| failure!("{}: after the refused key: {e}", c.slug))
}

/// A pre-connect overlap case (client only): the second step must fail with EKEYREJECTED.
struct Overlap {
    slug: &'static str,
    steps: [Step; 2],
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// TCP-MD5 key for the client's own address.
    Md5,
    /// TCP-AO key for the client's own address.
    Ao,
    /// `ao_required` on the socket, then a TCP-AO key.
    AoRequiredThenAo,
    /// `ao_required` alone.
    AoRequired,
}

const OVERLAPS: [Overlap; 4] = [
    Overlap {
        slug: "ao-key-intersects-md5-key",
        steps: [Step::Md5, Step::Ao],
    },
    Overlap {
        slug: "md5-key-intersects-ao-key",
        steps: [Step::Ao, Step::Md5],
    },
    Overlap {
        slug: "md5-key-then-ao-required",
        steps: [Step::Md5, Step::AoRequired],
    },
    Overlap {
        slug: "ao-required-then-md5-key",
        steps: [Step::AoRequiredThenAo, Step::Md5],
    },
];

fn md5_key(p: &Peer<'_>, addr: IpAddr, vrf: Option<u32>) -> PeerResult<Md5Key> {
    Ok(Md5Key {
        peer: PeerPrefix::new(addr, p.family().host_prefix()).or_fail("MD5 key prefix")?,
        vrf,
        key: MasterKey::new(MD5_PASSWORD).or_fail("MD5 key")?,
    })
}

/// Run one step; `Err((errno, text))` when the kernel refused it.
fn step(p: &Peer<'_>, sk: &Socket, s: Step) -> PeerResult<Result<(), (Option<i32>, String)>> {
    let me = p.local_addr();
    let map = |e: tcpao_sys::Error| (e.raw_os_error(), e.to_string());
    Ok(match s {
        Step::Md5 => sk.add_md5_key(&md5_key(p, me, None)?).map_err(map),
        Step::Ao => sk
            .add_ao_key(&TestKey::new(me, 100, 100).to_ao_key()?)
            .map_err(map),
        Step::AoRequired => sk.set_ao_required(true).map_err(map),
        Step::AoRequiredThenAo => sk.set_ao_required(true).map_err(map).and_then(|()| {
            TestKey::new(me, 100, 100)
                .to_ao_key()
                .map_err(|e| (None, e.to_string()))
                .and_then(|k| sk.add_ao_key(&k).map_err(map))
        }),
    })
}

fn overlap_client(p: &Peer<'_>, c: &Overlap) -> PeerResult {
    let sk = sockets::tcp_socket(p.family())?;
    bind_to(p, &sk, 1)?;
    if let Err((_, e)) = step(p, &sk, c.steps[0])? {
        return Err(failure!("{}: the first setsockopt() failed: {e}", c.slug));
    }
    match step(p, &sk, c.steps[1])? {
        Err((Some(errno), e)) if errno == Errno::EKEYREJECTED as i32 => {
            p.diag(format!("{}: prefailed as expected: {e}", c.slug));
            Ok(())
        }
        Err((_, e)) => Err(failure!(
            "{}: the second setsockopt() failed with {e}, expected EKEYREJECTED",
            c.slug
        )),
        Ok(()) => Err(failure!(
            "{}: setsockopt()s were expected to fail with EKEYREJECTED",
            c.slug
        )),
    }
}

/// An l3index choice for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L3 {
    /// No `*_IFINDEX` flag: matches every VRF.
    Unbound,
    /// The flag with ifindex 0: the default VRF only.
    Default,
    /// The flag with the test VRF (ifindex 200).
    Vrf,
}

impl L3 {
    fn slug(self) -> &'static str {
        match self {
            L3::Unbound => "no-l3index",
            L3::Default => "l3index-0",
            L3::Vrf => "l3index-n",
        }
    }

    fn ifindex(self) -> Option<u32> {
        match self {
            L3::Unbound => None,
            L3::Default => Some(0),
            L3::Vrf => Some(VRF_IFINDEX),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct VrfCase {
    ao: L3,
    md5: L3,
    ao_first: bool,
}

impl VrfCase {
    fn slug(&self) -> String {
        if self.ao_first {
            format!("vrf-ao-{}-then-md5-{}", self.ao.slug(), self.md5.slug())
        } else {
            format!("vrf-md5-{}-then-ao-{}", self.md5.slug(), self.ao.slug())
        }
    }

    /// The matrix of `unsigned-md5.c` `client_vrf_tests()`: only a default-VRF key of one kind
    /// next to a VRF-200 key of the other kind is allowed.
    fn allowed(&self) -> bool {
        matches!(
            (self.ao, self.md5),
            (L3::Default, L3::Vrf) | (L3::Vrf, L3::Default)
        )
    }
}

fn vrf_cases() -> Vec<VrfCase> {
    let all = [L3::Unbound, L3::Default, L3::Vrf];
    let mut v = Vec::new();
    for ao in all {
        for md5 in all {
            for ao_first in [true, false] {
                v.push(VrfCase { ao, md5, ao_first });
            }
        }
    }
    v
}

fn vrf_client(p: &Peer<'_>, c: &VrfCase) -> PeerResult {
    let slug = c.slug();
    let sk = sockets::tcp_socket(p.family())?;
    bind_to(p, &sk, 1)?;
    let me = p.local_addr();
    let map = |e: tcpao_sys::Error| (e.raw_os_error(), e.to_string());
    let add_md5 = || -> PeerResult<Result<(), (Option<i32>, String)>> {
        Ok(sk
            .add_md5_key(&md5_key(p, me, c.md5.ifindex())?)
            .map_err(map))
    };
    let add_ao = || -> PeerResult<Result<(), (Option<i32>, String)>> {
        let mut k = TestKey::new(me, 100, 100);
        k.vrf = c.ao.ifindex();
        Ok(sk.add_ao_key(&k.to_ao_key()?).map_err(map))
    };
    let first = if c.ao_first { add_ao()? } else { add_md5()? };
    if let Err((_, e)) = first {
        return Err(failure!("{slug}: the first key was refused: {e}"));
    }
    let second = if c.ao_first { add_md5()? } else { add_ao()? };
    match (c.allowed(), second) {
        (true, Ok(())) => {
            p.diag(format!("{slug}: both keys added"));
            Ok(())
        }
        (false, Err((Some(errno), e))) if errno == Errno::EKEYREJECTED as i32 => {
            p.diag(format!("{slug}: prefailed as expected: {e}"));
            Ok(())
        }
        (true, Err((_, e))) => Err(failure!(
            "{slug}: the second key was refused ({e}), the keys' l3indexes do not overlap"
        )),
        (false, Err((_, e))) => Err(failure!(
            "{slug}: the second key failed with {e}, expected EKEYREJECTED"
        )),
        (false, Ok(())) => Err(failure!(
            "{slug}: setsockopt()s were expected to fail with EKEYREJECTED"
        )),
    }
}

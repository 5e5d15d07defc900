// SPDX-License-Identifier: MIT OR Apache-2.0
//! `self-connect`: TCP simultaneous open of a socket to itself on `lo` (127.0.0.1 or ::1 in
//! the server's namespace), signed with TCP-AO (kernel `self-connect.c`, all four cases).
//!
//! The socket binds the loopback address and a port and connects to that same address and
//! port; it then echoes 20 messages of 100 bytes to itself. `TCPAOGood` must grow and the
//! socket and key counters show `GOOD` only. With two keys 5:7 and 7:5 the first segment's
//! RNextKeyID differs from its KeyID, so the socket switches Current_key on its own request
//! (the kernel suite expects the `tcp_ao_rnext_request` trace event; we check the result in
//! `TCP_AO_INFO`: Current_key's SendID equals RNext_key's RecvID afterwards). The restore
//! cases checkpoint the connection ([`crate::repair`]) and restore it onto port + 1, the
//! different-keyids one adding the keys in the reverse order.
//!
//! The peers' veth capture does not see `lo`: the test captures `lo` as well
//! ([`crate::capture::Capture::start_loopback`]), so every segment is cross-checked by
//! tcpao-refimpl. Only the server side runs; the client has nothing to do.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{SockAddr, Socket};
use tcpao_sys::TcpAoExt;

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::registry::Test;
use crate::repair::{self, Restore};
use crate::sockets::{self, Connect, TestKey};
use crate::topology::{Family, Netlink};

const MESSAGES: usize = 20;
const MESSAGE_LEN: usize = 100;

struct Case {
    slug: &'static str,
    upstream: &'static str,
    different_keyids: bool,
    restore: bool,
}

const CASES: [Case; 4] = [
    Case {
        slug: "same-keyids",
        upstream: "self-connect(same keyids)",
        different_keyids: false,
        restore: false,
    },
    Case {
        slug: "different-keyids",
        upstream: "self-connect(different keyids)",
        different_keyids: true,
        restore: false,
    },
    Case {
        slug: "restore",
        upstream: "self-connect(restore)",
        different_keyids: false,
        restore: true,
    },
    Case {
        slug: "restore-different-keyids",
        upstream: "self-connect(restore, different keyids)",
        different_keyids: true,
        restore: true,
    },
];

/// The program's tests: 4 cases × 2 families.
pub fn tests() -> Vec<Test> {
    CASES
        .iter()
        .flat_map(|c| {
            PairTest::new("self-connect", c.slug)
                .ao()
                .build(move |p| self_connect(p, c), |_| Ok(()))
        })
        .collect()
}

fn loopback(family: Family) -> (IpAddr, u8) {
    match family {
        Family::Ipv4 => (IpAddr::V4(Ipv4Addr::LOCALHOST), 8),
        Family::Ipv6 => (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    }
}

/// Bring `lo` up with its address and capture it; returns its index.
fn setup_lo(p: &Peer<'_>) -> PeerResult<u32> {
    let nl = Netlink::open().map_err(|e| Failure::Setup(e.to_string()))?;
    let lo = nl
        .link_index("lo")
        .map_err(|e| Failure::Setup(e.to_string()))?;
    nl.link_up(lo).map_err(|e| Failure::Setup(e.to_string()))?;
    let (addr, prefix) = loopback(p.family());
    // Bringing lo up assigns 127.0.0.1/8 and ::1 already; adding it again says EEXIST.
    let _ = nl.add_address(lo, addr, prefix);
    if let Some(c) = p.capture() {
        c.start_loopback(lo, p.side())
            .map_err(|e| Failure::Setup(format!("capture on lo: {e}")))?;
    }
    Ok(lo)
}

/// The keys of the case, in the order they are added.
fn keys(addr: IpAddr, different: bool, reversed: bool) -> Vec<TestKey> {
    let mut v = if different {
        vec![TestKey::new(addr, 5, 7), TestKey::new(addr, 7, 5)]
    } else {
        vec![TestKey::new(addr, 100, 100)]
    };
    if reversed {
        v.reverse();
    }
    v
}

/// Echo to itself and check that Current_key followed our own RNext request to SendID `want`.
fn verify(p: &Peer<'_>, sk: &Socket, what: &str, want: u8) -> PeerResult {
    sockets::echo_verify(p, sk, MESSAGES, MESSAGE_LEN, p.deadline())
        .map_err(|e| failure!("{what}: tcp connection verify failed: {e}"))?;
    let info = sk
        .ao_info()
        .map_err(|e| failure!("{what}: getsockopt(TCP_AO_INFO) failed: {e}"))?
        .ok_or_else(|| failure!("{what}: the socket lost its TCP-AO state"))?;
    match (info.current_key, info.rnext_key) {
        (Some(c), Some(r)) if c == r && c == want => {
            p.diag(format!("{what}: Current_key {c}, RNext_key {r}"));
            Ok(())
        }
        (c, r) => Err(failure!(
            "{what}: Current_key {c:?} does not follow the RNext_key {r:?} the socket asks itself for (expected {want})"
        )),
    }
}

fn self_connect(p: &Peer<'_>, case: &Case) -> PeerResult {
    setup_lo(p)?;
    let (addr, _) = loopback(p.family());
    let port = p.port();
    let sk = sockets::tcp_socket(p.family())?;
    let ks = keys(addr, case.different_keyids, false);
    for k in &ks {
        sockets::add_key(p, &sk, k)?;
    }
    let local = SocketAddr::new(addr, port);
    sk.bind(&SockAddr::from(local))
        .or_fail(&format!("bind({local}) failed"))?;
    let before = Counters::of(&sk)?;
    match sockets::connect(p, &sk, addr, port, p.deadline(), || false)? {
        Connect::Established => {}
        r => {
            return Err(failure!(
                "{}: connect() to itself ended with {r:?}",
                case.upstream
            ));
        }
    }
    if case.different_keyids {
        // The SYN carried KeyID 7 and RNextKeyID 5 (the last key added is the default): the
        // socket switched its Current_key to SendID 5 on its own request.
        let info = sk.ao_info().ok().flatten();
        p.diag(format!(
            "after the handshake: Current_key {:?}, RNext_key {:?}",
            info.and_then(|i| i.current_key),
            info.and_then(|i| i.rnext_key)
        ));
    }
    // Default Current_key/RNext_key is the last key added (7:5): the first segment asks for
    // SendID 5, so the socket moves to key 5:7.
    let want = if case.different_keyids { 5 } else { 100 };
    verify(p, &sk, case.upstream, want)?;
    let after = Counters::of(&sk)?;
    if after.netns.ao_good() <= before.netns.ao_good() {
        return Err(failure!(
            "{}: TCPAOGood counter mismatch: {} <= {}",
            case.upstream,
            after.netns.ao_good(),
            before.netns.ao_good()
        ));
    }
    after
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("{}: {e}", case.upstream))?;
    if !case.restore {
        p.diag(format!(
            "{}: connect TCPAOGood {} => {}",
            case.upstream,
            before.netns.ao_good(),
            after.netns.ao_good()
        ));
        return Ok(());
    }
    repair::wait_all_acked(p, &sk)?;
    let mut img = repair::freeze(p, sk)?;
    img.local.set_port(port + 1);
    img.remote.set_port(port + 1);
    let rks = keys(addr, case.different_keyids, true);
    let sk = img.restore(p, &Restore::new(&rks))?;
    let restored = Counters::of(&sk)?;
    // Keys added the other way round: the restored socket starts on 5:7 and asks for 7.
    let want = if case.different_keyids { 7 } else { 100 };
    verify(p, &sk, case.upstream, want)?;
    let end = Counters::of(&sk)?;
    end.assert_grew_exactly(&restored, Grew::GOOD)
        .map_err(|e| failure!("{} (after the restore): {e}", case.upstream))?;
    if end.netns.ao_good() <= before.netns.ao_good() {
        return Err(failure!(
            "{}: TCPAOGood counter mismatch: {} <= {}",
            case.upstream,
            end.netns.ao_good(),
            before.netns.ao_good()
        ));
    }
    p.diag(format!(
        "{}: connect TCPAOGood {} => {}",
        case.upstream,
        before.netns.ao_good(),
        end.netns.ao_good()
    ));
    Ok(())
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! TCP-AO with SYN cookies: the server's namespace sets `net.ipv4.tcp_syncookies = 2` (a
//! cookie for every SYN, no request socket is kept). The signed SYN-ACK carries the cookie as
//! its ISN; the handshake's ACK is verified by the listener as a possible syncookie ACK (ISNs
//! SEQ − 1 and ACK − 1), the cookie checks, and `tcp_ao_syncookie()` rebuilds the request's
//! TCP-AO state from the ACK (KeyID → RNext_key, RNextKeyID → Current_key; the listener has
//! a second key for the client, first in its list, which the child must not fall back to).
//! Two interleaved cookie handshakes (the first client's ACK delayed until the second
//! connection is up) must each get the keys their own ACK named: the request socket a cookie
//! ACK rebuilds reuses the memory the last one freed, so a field `tcp_ao_syncookie()` forgot
//! to store would show the other connection's key. An unsigned
//! handshake with a listener that has keys for other peers only goes through the same path
//! without TCP-AO.

use tcpao_sys::TcpAoExt as _;

use super::{PROGRAM, key};
use crate::counters::{Counters, Grew, Mib};
use crate::failure;
use crate::netns;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::programs::extras::{self, MESSAGE_LEN, MESSAGES};
use crate::registry::Test;
use crate::sockets::{self, TestKey};

pub(super) fn tests() -> Vec<Test> {
    let mut v = PairTest::new(PROGRAM, "syncookie-handshake")
        .ao()
        .build(|p| server(p, true), |p| client(p, true));
    v.extend(
        PairTest::new(PROGRAM, "syncookie-interleaved-handshakes")
            .ao()
            .build(interleaved_server, interleaved_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "syncookie-unsigned-handshake")
            .ao()
            .build(|p| server(p, false), |p| client(p, false)),
    );
    v
}

/// `(SyncookiesSent, SyncookiesRecv, SyncookiesFailed)` of this namespace.
fn cookies() -> PeerResult<(u64, u64, u64)> {
    Ok((
        Mib::TcpExt.read("SyncookiesSent")?,
        Mib::TcpExt.read("SyncookiesRecv")?,
        Mib::TcpExt.read("SyncookiesFailed")?,
    ))
}

fn server(p: &Peer<'_>, signed: bool) -> PeerResult {
    netns::sysctl_write("net/ipv4/tcp_syncookies", "2")
        .or_fail("setting net.ipv4.tcp_syncookies = 2")?;
    let lsk = sockets::listen(p, p.port(), 1)?;
    if signed {
        // A second key for the client, then the client's key (it sends with KeyID 37, asks
        // for 100). Keys are linked at the head of a list, the child's copied in reverse, so
        // the child's first key is the other one: the child must pick its keys from the
        // ACK's KeyID and RNextKeyID, not fall back to its first key
        // (`tcp_ao_copy_all_matching()`). A forgotten store in `tcp_ao_syncookie()` needs
        // `syncookie-interleaved-handshakes`: here the request socket's memory still holds
        // what the SYN's request socket wrote.
        sockets::add_key(p, &lsk, &key(p, 101, 38))?;
        sockets::add_key(p, &lsk, &key(p, 100, 37))?;
    } else {
        // A key for another peer: TCP-AO is on for the listener, not for this client.
        sockets::add_key(p, &lsk, &TestKey::new(p.family().wrong_addr(), 100, 100))?;
    }
    let (sent, recv, failed) = cookies()?;
    let before = Counters::netns()?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    let (sent2, recv2, failed2) = cookies()?;
    if (sent2 - sent, recv2 - recv, failed2 - failed) != (1, 1, 0) {
        return Err(failure!(
            "SyncookiesSent/Recv/Failed grew by {}/{}/{}, expected 1/1/0: the handshake did not go through a cookie",
            sent2 - sent,
            recv2 - recv,
            failed2 - failed
        ));
    }
    let info = sk.ao_info().or_fail("getsockopt(TCP_AO_INFO) failed")?;
    let grew = if signed {
        let i = info.ok_or_else(|| failure!("the connection of a cookie has no TCP-AO state"))?;
        if (i.current_key, i.rnext_key) != (Some(100), Some(37)) {
            return Err(failure!(
                "the connection of a cookie has Current_key {:?} RNext_key {:?}, expected 100/37 (the key the ACK named)",
                i.current_key,
                i.rnext_key
            ));
        }
        // The cookie ACK on the listener.
        Grew::NS_GOOD
    } else {
        if info.is_some() {
            return Err(failure!(
                "the unsigned connection of a cookie has TCP-AO state"
            ));
        }
        Grew::empty()
    };
    Counters::netns()?
        .assert_grew_exactly(&before, grew)
        .map_err(|e| failure!("after the handshake: {e}"))?;
    let before = Counters::of(&sk)?;
    let served = sockets::echo_server(p, &sk, p.deadline())?;
    if served != (MESSAGES * MESSAGE_LEN) as u64 {
        return Err(failure!("the server echoed {served} bytes"));
    }
    let grew = if signed { Grew::GOOD } else { Grew::empty() };
    Counters::of(&sk)?
        .assert_grew_exactly(&before, grew)
        .map_err(|e| failure!("server counters after the echo: {e}"))
}

fn client(p: &Peer<'_>, signed: bool) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    if signed {
        sockets::add_key(p, &sk, &key(p, 37, 100))?;
    }
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, MESSAGES, MESSAGE_LEN, p.deadline())?;
    let grew = if signed { Grew::GOOD } else { Grew::empty() };
    Counters::of(&sk)?
        .assert_grew_exactly(&before, grew)
        .map_err(|e| failure!("client counters after the echo: {e}"))
}

/// The keys of the interleaved handshakes: (client send, client receive) per client; the
/// listener has the mirror of each.
const INTERLEAVED: [(u8, u8); 2] = [(37, 100), (38, 101)];

fn interleaved_server(p: &Peer<'_>) -> PeerResult {
    netns::sysctl_write("net/ipv4/tcp_syncookies", "2")
        .or_fail("setting net.ipv4.tcp_syncookies = 2")?;
    let lsk = sockets::listen(p, p.port(), 2)?;
    for (send, recv) in INTERLEAVED {
        sockets::add_key(p, &lsk, &key(p, recv, send))?;
    }
    let (_, recv, _) = cookies()?;
    p.sync()?;
    let mut seen = Vec::new();
    for _ in INTERLEAVED {
        let sk = extras::accept_one(p, &lsk)?;
        let i = sk
            .ao_info()
            .or_fail("getsockopt(TCP_AO_INFO) failed")?
            .ok_or_else(|| failure!("the connection of a cookie has no TCP-AO state"))?;
        let got = (i.current_key, i.rnext_key);
        // Current_key: the key whose SendID the ACK's RNextKeyID names; RNext_key: the key
        // whose RecvID its KeyID names.
        if !INTERLEAVED
            .iter()
            .any(|&(send, recv)| got == (Some(recv), Some(send)))
        {
            return Err(failure!(
                "a connection of a cookie has Current_key {:?} RNext_key {:?}: not the pair of keys either client's ACK named ({:?})",
                i.current_key,
                i.rnext_key,
                INTERLEAVED.map(|(send, recv)| (recv, send))
            ));
        }
        seen.push(got);
    }
    if seen[0] == seen[1] {
        return Err(failure!(
            "both connections of the cookies have the keys {:?}",
            seen[0]
        ));
    }
    let (_, recv2, _) = cookies()?;
    if recv2 - recv != 2 {
        return Err(failure!(
            "SyncookiesRecv grew by {}, expected 2",
            recv2 - recv
        ));
    }
    p.sync()
}

fn interleaved_client(p: &Peer<'_>) -> PeerResult {
    let mut socks = Vec::new();
    for (send, recv) in INTERLEAVED {
        let sk = sockets::client_socket(p)?;
        sockets::add_key(p, &sk, &key(p, send, recv))?;
        socks.push(sk);
    }
    // TCP_DEFER_ACCEPT on a connecting socket delays its handshake ACK (up to 200 ms, or
    // until it sends data): the second handshake runs in between.
    tcpao_sys::raw::set_int_option(
        &socks[0],
        nix::libc::IPPROTO_TCP,
        nix::libc::TCP_DEFER_ACCEPT,
        1,
    )
    .or_fail("setsockopt(TCP_DEFER_ACCEPT) failed")?;
    p.sync()?;
    for sk in &socks {
        sockets::connect_ok(p, sk, p.remote_addr(), p.port())?;
    }
    p.sync()
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! TCP-AO with SYN cookies: the server's namespace sets `net.ipv4.tcp_syncookies = 2` (a
//! cookie for every SYN, no request socket is kept). The signed SYN-ACK carries the cookie as
//! its ISN; the handshake's ACK is verified by the listener as a possible syncookie ACK (ISNs
//! SEQ − 1 and ACK − 1), the cookie checks, and `tcp_ao_syncookie()` rebuilds the request's
//! TCP-AO state from the ACK (KeyID → RNext_key, RNextKeyID → Current_key; the listener has
//! a second key for the client, first in its list, which the child must not fall back to).
//! An unsigned
//! handshake with a listener that has keys for other peers only goes through the same path
//! without TCP-AO.

use tcpao_sys::TcpAoExt as _;

use super::{PROGRAM, key, proc_counter};
use crate::counters::{Counters, Grew};
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
        PairTest::new(PROGRAM, "syncookie-unsigned-handshake")
            .ao()
            .build(|p| server(p, false), |p| client(p, false)),
    );
    v
}

/// `(SyncookiesSent, SyncookiesRecv, SyncookiesFailed)` of this namespace.
fn cookies() -> PeerResult<(u64, u64, u64)> {
    Ok((
        proc_counter("TcpExt:", "SyncookiesSent")?,
        proc_counter("TcpExt:", "SyncookiesRecv")?,
        proc_counter("TcpExt:", "SyncookiesFailed")?,
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
        // (`tcp_ao_copy_all_matching()`). 37 is used by no other test, so a request socket's
        // stale memory does not name it.
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

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Which keys a socket ends up with.
//!
//! - `connect-drops-keys-for-other-peers`: `connect()` removes the keys that do not match
//!   the peer (`tcp_ao_connect_init()`). A Current_key/RNext_key set on such a key is
//!   replaced by the first matching key; when no key matches, `connect()` fails with
//!   `EKEYREJECTED` rather than connect unsigned (`tcp_connect()`).
//! - `repair-first-key-on-established`: an established connection without TCP-AO takes its
//!   first key only in repair mode (`EISCONN` otherwise; `TCP_AO_INFO` without a key gives
//!   `EINVAL`); that key becomes Current_key and RNext_key, `TCP_AO_REPAIR` gives it the
//!   connection's ISNs, and after repair both ends sign and verify every segment.

use socket2::Socket;
use tcpao_sys::repair::{self, RepairMode};
use tcpao_sys::{AoRepair, KeyFilter, TcpAoExt as _};

use super::{PROGRAM, key};
use crate::counters::{Counters, Grew};
use crate::failure;
use crate::peers::{OrFail, Peer, PeerResult, Side};
use crate::programs::PairTest;
use crate::programs::extras::{self, MESSAGE_LEN, MESSAGES};
use crate::registry::Test;
use crate::sockets::{self, TestKey};

pub(super) fn tests() -> Vec<Test> {
    let mut v = PairTest::new(PROGRAM, "connect-drops-keys-for-other-peers")
        .ao()
        .build(connect_server, connect_client);
    v.extend(
        PairTest::new(PROGRAM, "repair-first-key-on-established")
            .ao()
            .build(
                |p| repair_side(p, Side::Server),
                |p| repair_side(p, Side::Client),
            ),
    );
    v
}

/// Echo on an accepted connection, then require exactly `grew` on its counters.
fn serve(p: &Peer<'_>, sk: &Socket, grew: Grew) -> PeerResult {
    let before = Counters::of(sk)?;
    let served = sockets::echo_server(p, sk, p.deadline())?;
    if served != (MESSAGES * MESSAGE_LEN) as u64 {
        return Err(failure!("the server echoed {served} bytes"));
    }
    Counters::of(sk)?
        .assert_grew_exactly(&before, grew)
        .map_err(|e| failure!("server counters after the echo: {e}"))
}

fn echo(p: &Peer<'_>, sk: &Socket, grew: Grew) -> PeerResult {
    let before = Counters::of(sk)?;
    sockets::echo_verify(p, sk, MESSAGES, MESSAGE_LEN, p.deadline())?;
    Counters::of(sk)?
        .assert_grew_exactly(&before, grew)
        .map_err(|e| failure!("client counters after the echo: {e}"))
}

fn connect_server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p, 101, 101))?;
    p.sync()?;
    serve(p, &extras::accept_one(p, &lsk)?, Grew::GOOD)?;
    // The second connect() fails: the listener must stay without connection.
    let lsk = sockets::listen(p, p.next_port(), 1)?;
    p.sync()?;
    p.sync()?; // the client's connect() failed
    match lsk.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        r => Err(failure!(
            "a client whose only key is for another peer connected: accept() returned {r:?}"
        )),
    }
}

fn connect_client(p: &Peer<'_>) -> PeerResult {
    let other = TestKey::new(p.family().wrong_addr(), 100, 100);
    let sk = sockets::client_socket(p)?;
    sk.add_ao_key(&other.to_ao_key()?.set_current(true).set_rnext(true))
        .or_fail("adding key 100:100 for another peer as Current_key and RNext_key failed")?;
    sockets::add_key(p, &sk, &key(p, 101, 101))?;
    let info = sk
        .ao_info()
        .or_fail("getsockopt(TCP_AO_INFO) failed")?
        .ok_or_else(|| failure!("no TCP-AO state after adding keys"))?;
    if (info.current_key, info.rnext_key) != (Some(100), Some(100)) {
        return Err(failure!(
            "before connect() Current_key/RNext_key are {:?}/{:?}, expected 100/100",
            info.current_key,
            info.rnext_key
        ));
    }
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    let info = sk
        .ao_info()
        .or_fail("getsockopt(TCP_AO_INFO) failed")?
        .ok_or_else(|| failure!("no TCP-AO state after connect()"))?;
    if (info.current_key, info.rnext_key) != (Some(101), Some(101)) {
        return Err(failure!(
            "after connect() Current_key/RNext_key are {:?}/{:?}, expected the peer's key 101/101",
            info.current_key,
            info.rnext_key
        ));
    }
    let keys = sk
        .ao_keys(&KeyFilter::All)
        .or_fail("getsockopt(TCP_AO_GET_KEYS) failed")?;
    let ids: Vec<(u8, u8)> = keys
        .iter()
        .map(|k| (k.selector.send_id, k.selector.recv_id))
        .collect();
    if ids != [(101, 101)] {
        return Err(failure!(
            "after connect() the socket has keys {ids:?}, expected only 101:101 (the key for another peer is removed)"
        ));
    }
    echo(p, &sk, Grew::GOOD)?;
    drop(sk);
    // Only a key for another peer: connect() refuses to go unsigned.
    let port = p.next_port();
    let sk = sockets::client_socket(p)?;
    sk.add_ao_key(&other.to_ao_key()?)
        .or_fail("adding key 100:100 for another peer failed")?;
    p.sync()?;
    let r = sockets::connect(p, &sk, p.remote_addr(), port, p.deadline(), || false)?;
    p.sync()?;
    match r {
        sockets::Connect::Failed(e)
            if e.raw_os_error() == Some(nix::errno::Errno::EKEYREJECTED as i32) =>
        {
            Ok(())
        }
        r => Err(failure!(
            "connect() of a socket whose only key is for another peer ended {r:?}, expected EKEYREJECTED"
        )),
    }
}

/// Both sides: a plain connection, then the first key in repair mode.
fn repair_side(p: &Peer<'_>, side: Side) -> PeerResult {
    let sk = match side {
        Side::Server => {
            let lsk = sockets::listen(p, p.port(), 1)?;
            p.sync()?;
            extras::accept_one(p, &lsk)?
        }
        Side::Client => {
            let sk = sockets::client_socket(p)?;
            p.sync()?;
            sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
            sk
        }
    };
    let frames = extras::wait_flow_bytes(p, p.port(), 0, 0)?;
    let [Some(server_isn), Some(client_isn)] = extras::isns(&frames) else {
        return Err(failure!("the capture has no handshake"));
    };
    let (mine, theirs) = match side {
        Side::Server => (server_isn, client_isn),
        Side::Client => (client_isn, server_isn),
    };
    let k = key(p, 100, 100);
    match sk.add_ao_key(&k.to_ao_key()?) {
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EISCONN as i32) => {}
        r => {
            return Err(failure!(
                "TCP_AO_ADD_KEY on an established connection without TCP-AO returned {r:?}, expected EISCONN"
            ));
        }
    }
    p.sync()?; // both established
    repair::set_repair(&sk, RepairMode::On).or_fail("TCP_REPAIR on failed")?;
    // TCP_AO_INFO creates no TCP-AO state on an established socket, even in repair mode.
    let info = [0u8; 48];
    match tcpao_sys::raw::setsockopt_bytes(&sk, 6, tcpao_sys::uapi::TCP_AO_INFO, Some(&info), None)
    {
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINVAL as i32) => {}
        r => {
            return Err(failure!(
                "TCP_AO_INFO on an established socket without TCP-AO (repair mode) returned {r:?}, expected EINVAL"
            ));
        }
    }
    sockets::add_key(p, &sk, &k)?;
    let i = sk
        .ao_info()
        .or_fail("getsockopt(TCP_AO_INFO) failed")?
        .ok_or_else(|| failure!("no TCP-AO state after the first key"))?;
    if (i.current_key, i.rnext_key) != (Some(100), Some(100)) {
        return Err(failure!(
            "the first key of an established socket is not Current_key/RNext_key: {:?}/{:?}",
            i.current_key,
            i.rnext_key
        ));
    }
    sk.set_ao_repair(&AoRepair {
        snt_isn: mine,
        rcv_isn: theirs,
        snd_sne: 0,
        rcv_sne: 0,
    })
    .or_fail("TCP_AO_REPAIR failed")?;
    p.sync()?; // both keyed
    repair::set_repair(&sk, RepairMode::OffNoWindowProbe).or_fail("TCP_REPAIR off failed")?;
    p.sync()?; // both out of repair mode
    match side {
        Side::Server => serve(p, &sk, Grew::GOOD),
        Side::Client => echo(p, &sk, Grew::GOOD),
    }
}

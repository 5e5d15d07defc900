// SPDX-License-Identifier: MIT OR Apache-2.0
//! Race cases on a listening socket: key changes while SYNs arrive and children are created
//! (the `setsockopt()` vs `accept()` race of Documentation/networking/tcp_ao.rst §4, which the
//! kernel leaves to userspace to notice).
//!
//! * `delete-async`: every iteration a fresh listener gets K = 100:100 with `set_current` and
//!   `set_rnext` while it is still CLOSE, then J = 101:101, then `listen()`. A deletes K with
//!   `del_async` (the RCU-deferred delete only listeners allow); B, the client, connects with K,
//!   so its SYN (and final ACK) are verified with K while it goes away. After A the listener
//!   must neither list K nor report it as Current_key or RNext_key in `TCP_AO_INFO` (a listener
//!   has no current/rnext keys; the pointers left on the freed key were CVE-2026-53389). The
//!   connection then ends one of three documented ways, all counted: the SYN or the final ACK
//!   met no K (key-not-found), or a child was accepted; a child must hold only keys of the
//!   listener (J, and K only if K was still there when it was created).
//! * `listener-keys`: one listener with K; A adds N = 101:101, next iteration deletes it
//!   again (a synchronous delete); B connects with K and N (signing with K), the server
//!   accepts the child and both exchange a byte signed with K. The child's keys must be K, with
//!   or without N (either the listener's old or its new key set, never anything else), and
//!   the listener's must be what A left.

use socket2::Socket;
use tcpao_sys::{AoKey, KeyFilter, KeySelector, TcpAoExt};

use super::{Race, RaceTest, abort_close, close_after_reset, errno_name, info, key, mib};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::registry::Test;
use crate::sockets::{self, Connect};

const K: u8 = 100;
const N: u8 = 101;

/// The cases of this file.
pub(super) fn tests() -> Vec<Test> {
    let mut v = RaceTest::new(
        "delete-async",
        "listener deletes key K with del_async (K was set current/rnext while CLOSE)",
        "client connects with K (its SYN is verified with K)",
    )
    .build(async_server, async_client);
    v.extend(
        RaceTest::new(
            "listener-keys",
            "listener adds key N, or deletes it",
            "client connects (key K), the server accepts the child",
        )
        .build(keys_server, keys_client),
    );
    v
}

/// State of one run.
#[derive(Debug, Default)]
pub(super) struct State;

fn ids(keys: &[tcpao_sys::AoKeyInfo]) -> Vec<u8> {
    let mut v: Vec<u8> = keys.iter().map(|k| k.selector.send_id).collect();
    v.sort_unstable();
    v
}

fn listed(sk: &Socket) -> PeerResult<Vec<u8>> {
    match sk.ao_keys(&KeyFilter::All) {
        Ok(k) => Ok(ids(&k)),
        Err(tcpao_sys::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(failure!("getsockopt(TCP_AO_GET_KEYS) failed: {e}")),
    }
}

fn ao(p: &Peer<'_>, id: u8) -> PeerResult<AoKey> {
    key(p, id).to_ao_key()
}

/// Register keys `ids` (for the peer's address) with the capture once; the loops add them
/// to fresh sockets with plain `setsockopt`.
fn register(p: &Peer<'_>, ids: &[u8]) {
    for id in ids {
        sockets::register(p, &key(p, *id));
    }
}

fn async_server(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    // K is Current_key and RNext_key while CLOSE (allowed there, not on a listener).
    let k = ao(p, K)?.set_current(true).set_rnext(true);
    let n = ao(p, N)?;
    let sel: KeySelector = k.selector();
    register(p, &[K, N]);
    while race.run_a() {
        let lsk = sockets::tcp_socket(p.family())?;
        lsk.set_reuse_address(true).or_fail("SO_REUSEADDR failed")?;
        lsk.bind(&std::net::SocketAddr::new(p.local_addr(), p.port()).into())
            .or_fail("bind() failed")?;
        lsk.add_ao_key(&k)
            .map_err(|e| failure!("adding K with set_current/set_rnext failed: {e}"))?;
        lsk.add_ao_key(&n)
            .map_err(|e| failure!("adding N failed: {e}"))?;
        lsk.listen(8).or_fail("listen() failed")?;
        let before = mib()?;
        p.sync()?;
        if !pair.start_a() {
            break;
        }
        let res = lsk.del_ao_key_async(&sel);
        if pair.end_a().is_none() {
            break;
        }
        res.map_err(|e| failure!("del_async of K failed with {}: {e}", errno_name(&e)))?;
        let i = info(&lsk)?;
        if i.current_key == Some(K) || i.rnext_key == Some(K) {
            return Err(failure!(
                "after del_async of K the listener still reports it: TCP_AO_INFO current {:?}, rnext {:?} (a freed key)",
                i.current_key,
                i.rnext_key
            ));
        }
        let keys = listed(&lsk)?;
        if keys != [N] {
            return Err(failure!(
                "after del_async of K the listener lists keys {keys:?}, want [{N}]"
            ));
        }
        // How did the client's attempt end? A child, or a drop for want of K.
        let child = p.wait_for(p.deadline(), || {
            if let Ok((c, _)) = lsk.accept() {
                return Ok(Some(Some(c)));
            }
            let dropped = mib()?.ao_key_not_found() > before.ao_key_not_found();
            Ok(dropped.then_some(None))
        })?;
        let mut accepted = None;
        match child {
            Some(Some(c)) => {
                let keys = listed(&c)?;
                if keys != [N] && keys != [K, N] {
                    return Err(failure!("the accepted child has keys {keys:?}"));
                }
                let with_k = keys.contains(&K);
                race.tally.add(if with_k {
                    "accepted with K"
                } else {
                    "accepted without K"
                });
                accepted = Some((c, with_k));
            }
            Some(None) => race.tally.add("SYN or ACK dropped (no K)"),
            None => {
                return Err(failure!(
                    "the client's connection was neither accepted nor dropped for want of K within {:?}",
                    p.timeout()
                ));
            }
        }
        p.signal();
        p.sync()?;
        // The client resets its end; a child without K cannot verify that RST.
        match accepted {
            Some((c, true)) => close_after_reset(p, c)?,
            Some((c, false)) => abort_close(c),
            None => {}
        }
        abort_close(lsk);
    }
    guard.disarm();
    Ok(())
}

fn async_client(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    let mut seen = 0;
    let k = ao(p, K)?;
    register(p, &[K]);
    while pair.run_b() {
        let sk = sockets::client_socket(p)?;
        sk.add_ao_key(&k)
            .map_err(|e| failure!("adding K failed: {e}"))?;
        p.sync()?;
        if !pair.start_b() {
            break;
        }
        let res = sk.connect(&std::net::SocketAddr::new(p.remote_addr(), p.port()).into());
        if !pair.end_b() {
            break;
        }
        match res {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
            Err(e) => return Err(failure!("connect() failed: {e}")),
        }
        // The server tells when it knows how the attempt ended.
        let ended = p.wait_for(p.deadline(), || Ok((p.peer_signals() > seen).then_some(())))?;
        if ended.is_none() {
            return Err(failure!("the server did not report the end of the attempt"));
        }
        seen = p.peer_signals();
        p.sync()?;
        abort_close(sk);
    }
    guard.disarm();
    Ok(())
}

fn keys_server(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 8)?;
    sockets::add_key(p, &lsk, &key(p, K))?;
    let n = ao(p, N)?;
    register(p, &[N]);
    p.sync()?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    let mut present = false;
    while race.run_a() {
        if !pair.start_a() {
            break;
        }
        let res = if present {
            lsk.del_ao_key(&n.selector())
        } else {
            lsk.add_ao_key(&n)
        };
        if pair.end_a().is_none() {
            break;
        }
        res.map_err(|e| {
            failure!(
                "{} N on the listener failed with {}: {e}",
                if present { "deleting" } else { "adding" },
                errno_name(&e)
            )
        })?;
        present = !present;
        let want: &[u8] = if present { &[K, N] } else { &[K] };
        let keys = listed(&lsk)?;
        if keys != want {
            return Err(failure!("the listener lists keys {keys:?}, want {want:?}"));
        }
        let child = crate::programs::extras::accept_one(p, &lsk)?;
        let keys = listed(&child)?;
        if keys != [K] && keys != [K, N] {
            return Err(failure!(
                "the accepted child has keys {keys:?}: neither the listener's old key set nor its new one"
            ));
        }
        race.tally.add(if keys.contains(&N) {
            "child with N"
        } else {
            "child without N"
        });
        let cur = info(&child)?.current_key;
        if cur != Some(K) {
            return Err(failure!(
                "the child's Current_key is {cur:?}, the client signs with {K}"
            ));
        }
        exchange(p, &child)?;
        p.sync()?;
        close_after_reset(p, child)?;
    }
    guard.disarm();
    Ok(())
}

fn keys_client(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    p.sync()?;
    let (k, n) = (ao(p, K)?, ao(p, N)?);
    register(p, &[K, N]);
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    while pair.run_b() {
        let sk = sockets::client_socket(p)?;
        // N first, K last: connect() picks the first key in the list, K.
        sk.add_ao_key(&n)
            .map_err(|e| failure!("adding N failed: {e}"))?;
        sk.add_ao_key(&k)
            .map_err(|e| failure!("adding K failed: {e}"))?;
        if !pair.start_b() {
            break;
        }
        let res = sk.connect(&std::net::SocketAddr::new(p.remote_addr(), p.port()).into());
        if !pair.end_b() {
            break;
        }
        match res {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
            Err(e) => return Err(failure!("connect() failed: {e}")),
        }
        match sockets::connect(p, &sk, p.remote_addr(), p.port(), p.deadline(), || false)? {
            Connect::Established => {}
            Connect::Failed(e) if e.raw_os_error() == Some(nix::libc::EISCONN) => {}
            Connect::Failed(e) => return Err(failure!("the connection failed: {e}")),
            Connect::TimedOut => return Err(failure!("the connection timed out")),
        }
        exchange(p, &sk)?;
        p.sync()?;
        abort_close(sk);
    }
    guard.disarm();
    Ok(())
}

/// One byte each way (both peers call it).
fn exchange(p: &Peer<'_>, sk: &Socket) -> PeerResult {
    sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
    sockets::write_all(p, sk, &[0x5a], p.deadline())?;
    let mut b = [0u8; 1];
    let deadline = p.deadline();
    loop {
        match std::io::Read::read(&mut &*sk, &mut b) {
            Ok(1) if b[0] == 0x5a => return Ok(()),
            Ok(n) => {
                return Err(failure!(
                    "read {n} bytes ({:#x}) instead of the exchange byte",
                    b[0]
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, nix::poll::PollFlags::POLLIN, deadline, || false)? {
                    return Err(failure!("the exchange byte did not arrive"));
                }
            }
            Err(e) => return Err(failure!("read() failed: {e}")),
        }
    }
}

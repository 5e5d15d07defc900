// SPDX-License-Identifier: MIT OR Apache-2.0
//! `rotation`: key rotation under continuous traffic in both directions (RFC 5925 §7.5.2.e),
//! with tcpao-sys's [`tcpao_sys::Rotation`] helper. Upstream's key-management rotates keys
//! on a connection that is idle between echo rounds; it never rotates while data flows both
//! ways.
//!
//! `under-traffic`: keys A = 100:100, B = 101:101, C = 102:102. Both peers start with A (the
//! server also holds B). Two threads per peer send and receive a byte-pattern stream
//! continuously (at most 4 small segments in flight per direction). Then:
//!
//! 1. the client rotates A → B (`Rotation::start` adds B and asks for it with RNextKeyID;
//!    `wait` deletes A once the server signs with B); the server, seeing the client's request,
//!    already signs with B: its A `pkt_good` stops growing while B's grows; it then asks for
//!    B itself and deletes A;
//! 2. the server rotates B → C the same way (the client pre-installed C), and the client
//!    follows.
//!
//! At the end both streams arrive complete and in order, no BAD / key-not-found /
//! AO-required counter moved on either side, and in the capture each direction's KeyIDs go
//! A → B → C and its RNextKeyIDs A → (B →) C, never back, while tcpao-refimpl verifies every
//! segment across both switches.
//!
//! `delete-key-in-use-by-peer`: the server force-deletes A (replacement B as Current_key and
//! RNext_key) while the client still sends with A: the server counts `TCPAOKeyNotFound` and
//! socket `pkt_key_not_found`, nothing else. When the client then selects B, its
//! retransmission is accepted (GOOD) and the data arrives.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::Socket;
use tcpao_sys::{KeySelector, Rotation, TcpAoExt};

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::programs::extras;
use crate::registry::Test;
use crate::sockets::{self, TestKey};
use crate::topology::{Family, Side};

const A: u8 = 100;
const B: u8 = 101;
const C: u8 = 102;
/// Segments the new key must verify before and while checking that the old one stopped.
const SETTLE: u64 = 20;

/// Bytes each side sent, published for the other side's completeness check.
type Sent = Arc<Mutex<HashMap<(Family, Side), u64>>>;

/// The program's tests: 2 cases × 2 families.
pub fn tests() -> Vec<Test> {
    let sent: Sent = Arc::default();
    let s2 = Arc::clone(&sent);
    let mut v = PairTest::new("rotation", "under-traffic")
        .ao()
        .timeout(Duration::from_secs(60))
        .build(
            move |p| under_traffic(p, &sent),
            move |p| under_traffic(p, &s2),
        );
    v.extend(
        PairTest::new("rotation", "delete-key-in-use-by-peer")
            .ao()
            .build(delete_server, delete_client),
    );
    v
}

fn key(p: &Peer<'_>, id: u8) -> TestKey {
    TestKey::new(p.remote_addr(), id, id)
}

fn good_of(c: &Counters, id: u8) -> Option<u64> {
    c.keys.iter().find(|k| k.send_id == id).map(|k| k.good)
}

/// Pattern byte at stream offset `i`.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// Send the pattern stream, one small write whenever fewer than 4 segments are unacknowledged, until `stop`;
/// then shut down the write side. Returns the bytes sent.
fn sender(sk: &Socket, stop: &AtomicBool, deadline: Instant) -> Result<u64, String> {
    let mut sent = 0u64;
    let mut buf = [0u8; 100];
    let mut pause = Duration::from_micros(100);
    while !stop.load(Ordering::Acquire) {
        if Instant::now() >= deadline {
            return Err(format!(
                "the sender was still running at the deadline after {sent} bytes"
            ));
        }
        let unacked = tcpao_sys::repair::tcp_info(sk)
            .map_err(|e| format!("TCP_INFO failed: {e}"))?
            .unacked;
        if unacked >= 4 {
            // Self-clocked: wait for the ACK (a short, growing poll; not a fixed delay).
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
            continue;
        }
        pause = Duration::from_micros(100);
        for (j, b) in buf.iter_mut().enumerate() {
            *b = pattern(sent + j as u64);
        }
        match (&*sk).write(&buf) {
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("write() failed after {sent} bytes: {e}")),
        }
    }
    sk.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown(SHUT_WR) failed: {e}"))?;
    Ok(sent)
}

/// Receive the peer's pattern stream until EOF, checking every byte. Returns the bytes read.
/// Once `stop` is set (this side is done), the peer's EOF must come within `drain`.
fn receiver(
    sk: &Socket,
    deadline: Instant,
    stop: &AtomicBool,
    drain: Duration,
) -> Result<u64, String> {
    let mut deadline = deadline;
    let mut draining = false;
    let mut got = 0u64;
    let mut buf = vec![0u8; 65536];
    loop {
        match (&*sk).read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => {
                for (j, b) in buf[..n].iter().enumerate() {
                    if *b != pattern(got + j as u64) {
                        return Err(format!(
                            "byte {} of the received stream is {b}, expected {}",
                            got + j as u64,
                            pattern(got + j as u64)
                        ));
                    }
                }
                got += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !draining && stop.load(Ordering::Acquire) {
                    draining = true;
                    deadline = deadline.min(Instant::now() + drain);
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "the other peer's stream did not end (no EOF) by the deadline, after {got} bytes"
                    ));
                }
                let mut fds = [nix::poll::PollFd::new(
                    std::os::fd::AsFd::as_fd(sk),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10u16));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read() failed after {got} bytes: {e}")),
        }
    }
}

/// Initiate a rotation `old` → `new` with the helper and wait until it is done.
fn initiate(p: &Peer<'_>, sk: &Socket, old: u8, new: u8) -> PeerResult {
    let nk = key(p, new);
    let old_sel = key(p, old).to_ao_key()?.selector();
    sockets::register(p, &nk);
    let mut rot = Rotation::start(sk, old_sel, &nk.to_ao_key()?)
        .map_err(|e| failure!("starting the rotation {old} -> {new} failed: {e}"))?;
    rot.wait(p.deadline(), Duration::from_millis(1))
        .map_err(|e| failure!("the rotation {old} -> {new} did not finish: {e}"))?;
    let c = Counters::of(sk)?;
    if good_of(&c, old).is_some() {
        return Err(failure!(
            "key {old} is still installed after the rotation to {new}"
        ));
    }
    let info = sk.ao_info().or_fail("TCP_AO_INFO failed")?;
    if info.and_then(|i| i.current_key) != Some(new) {
        return Err(failure!(
            "after the rotation to {new} the current key is {:?}",
            info.and_then(|i| i.current_key)
        ));
    }
    p.diag(format!("rotated {old} -> {new}: {c}"));
    Ok(())
}

/// Follow the peer's rotation `old` → `new`: the peer now signs with `new` only, so `old`'s
/// `pkt_good` must stop while `new`'s grows; then request `new` and delete `old`.
fn follow(p: &Peer<'_>, sk: &Socket, old: u8, new: u8) -> PeerResult {
    let start = Counters::of(sk)?;
    let base = good_of(&start, new).ok_or_else(|| failure!("key {new} is not installed"))?;
    let t1 = extras::wait_counters(
        p,
        sk,
        p.deadline(),
        &format!("key {new} verifying segments"),
        |c| good_of(c, new).unwrap_or(0) >= base + SETTLE,
    )?;
    let mid = good_of(&t1, new).unwrap_or(0);
    let t2 = extras::wait_counters(
        p,
        sk,
        p.deadline(),
        &format!("key {new} verifying more segments"),
        |c| good_of(c, new).unwrap_or(0) >= mid + SETTLE,
    )?;
    let (o1, o2) = (good_of(&t1, old), good_of(&t2, old));
    if o1 != o2 {
        return Err(failure!(
            "key {old} pkt_good still grew ({o1:?} => {o2:?}) while key {new} verified {} more segments",
            good_of(&t2, new).unwrap_or(0) - mid
        ));
    }
    sk.set_ao_rnext_key(new)
        .map_err(|e| failure!("requesting key {new} (TCP_AO_INFO rnext) failed: {e}"))?;
    let old_sel: KeySelector = key(p, old).to_ao_key()?.selector();
    sk.del_ao_key(&old_sel).map_err(|e| {
        failure!("deleting the old key {old} after the peer's rotation failed: {e}")
    })?;
    p.diag(format!(
        "followed {old} -> {new}: key {old} stayed at {o2:?} while key {new} went {base} => {}",
        good_of(&t2, new).unwrap_or(0)
    ));
    Ok(())
}

/// Wait until the other peer has signalled `n` times.
fn wait_signals(p: &Peer<'_>, n: u64, what: &str) -> PeerResult {
    p.wait_for(p.test_deadline(), || {
        Ok((p.peer_signals() >= n).then_some(()))
    })?
    .ok_or_else(|| failure!("the other peer did not finish {what} in time"))
}

/// No failure counter moved between `before` and `after` (netns and socket; the key set
/// changes during a rotation, so keys are checked separately).
fn assert_no_failures(before: &Counters, after: &Counters) -> PeerResult {
    let mut problems = Vec::new();
    for n in [
        "TCPAOBad",
        "TCPAOKeyNotFound",
        "TCPAORequired",
        "TCPAODroppedIcmps",
    ] {
        let d = after.ns_delta(before, n);
        if d > 0 {
            problems.push(format!("counter {n} grew by {d}"));
        }
    }
    if after.ns_delta(before, "TCPAOGood") == 0 {
        problems.push("counter TCPAOGood did not increase".into());
    }
    if let (Some(b), Some(a)) = (before.sock, after.sock) {
        for (n, x, y) in [
            ("pkt_bad", b.bad, a.bad),
            ("pkt_key_not_found", b.key_not_found, a.key_not_found),
            ("pkt_ao_required", b.ao_required, a.ao_required),
        ] {
            if y != x {
                problems.push(format!("socket {n} changed: {x} => {y}"));
            }
        }
    }
    for k in &after.keys {
        if k.bad > 0 {
            problems.push(format!(
                "key {}:{} pkt_bad is {}",
                k.send_id, k.recv_id, k.bad
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(failure!("{}", problems.join("; ")))
    }
}

fn under_traffic(p: &Peer<'_>, sent: &Sent) -> PeerResult {
    // A value left by an earlier run of this test must not count.
    sent.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&(p.family(), p.side()));
    let sk = match p.side() {
        Side::Server => {
            let lsk = sockets::listen(p, p.port(), 1)?;
            sockets::add_key(p, &lsk, &key(p, A))?;
            sockets::add_key(p, &lsk, &key(p, B))?;
            p.sync()?;
            extras::accept_one(p, &lsk)?
        }
        Side::Client => {
            let sk = sockets::client_socket(p)?;
            sockets::add_key(p, &sk, &key(p, A))?;
            p.sync()?;
            sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
            sk
        }
    };
    sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
    let before = Counters::of(&sk)?;
    let stop = AtomicBool::new(false);
    let deadline = p.test_deadline();
    let (steps, tx, rx) = std::thread::scope(|s| {
        let tx = s.spawn(|| sender(&sk, &stop, deadline));
        let drain = p.timeout();
        let (sk_ref, stop_ref) = (&sk, &stop);
        let rx = s.spawn(move || receiver(sk_ref, deadline, stop_ref, drain));
        let steps = rotate_steps(p, &sk);
        if steps.is_err() {
            // Wake the other peer now: it may wait for our signal while our receiver waits
            // for its EOF.
            p.abort();
        }
        stop.store(true, Ordering::Release);
        let tx = tx
            .join()
            .unwrap_or_else(|_| Err("the sender panicked".into()));
        let rx = rx
            .join()
            .unwrap_or_else(|_| Err("the receiver panicked".into()));
        (steps, tx, rx)
    });
    steps?;
    let tx = tx.map_err(|e| failure!("{e}"))?;
    let rx = rx.map_err(|e| failure!("{e}"))?;
    sent.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert((p.family(), p.side()), tx);
    let peer_sent = p.wait_for(p.test_deadline(), || {
        Ok(sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(p.family(), p.side().other()))
            .copied())
    })?;
    if peer_sent != Some(rx) {
        return Err(failure!(
            "the {} received {rx} bytes, the other peer sent {peer_sent:?}",
            p.side().name()
        ));
    }
    let after = Counters::of(&sk)?;
    assert_no_failures(&before, &after)?;
    p.diag(format!(
        "sent {tx} and received {rx} bytes across two rotations; {after}"
    ));
    if p.side() == Side::Client {
        check_capture(p, tx, rx)?;
    }
    Ok(())
}

/// In the capture, each direction's KeyIDs go A → B → C and its RNextKeyIDs A → (B →) C,
/// never back, and the reference verifies every segment with the three keys.
fn check_capture(p: &Peer<'_>, client_sent: u64, server_sent: u64) -> PeerResult {
    let to32 = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let frames = extras::wait_flow_bytes(p, p.port(), to32(client_sent), to32(server_sent))?;
    let conn = extras::client_connection(p, &frames)?;
    let mkts = [A, B, C]
        .iter()
        .map(|id| {
            key(p, *id)
                .mkt()
                .ok_or_else(|| failure!("no reference MKT"))
        })
        .collect::<PeerResult<Vec<_>>>()?;
    let v =
        tcpao_refimpl::FlowValidator::new(conn, mkts).map_err(|e| failure!("reference: {e}"))?;
    // [server, client]: KeyIDs in order of first appearance, RNextKeyID changes.
    let mut keyids: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut rnext: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut verified = 0usize;
    for f in &frames {
        let Some(s) = extras::segment(f) else {
            continue;
        };
        let t = s.tcp_packet();
        let Some(ao) = t.ao_option().ok().flatten() else {
            return Err(failure!(
                "a {} segment seq {} carries no TCP-AO option",
                f.from.name(),
                t.seq_number()
            ));
        };
        let i = usize::from(f.from == Side::Client);
        if keyids[i].last() != Some(&ao.key_id) {
            keyids[i].push(ao.key_id);
        }
        if rnext[i].last() != Some(&ao.rnext_key_id) {
            rnext[i].push(ao.rnext_key_id);
        }
        match extras::verdict(&v, f) {
            Some(tcpao_refimpl::Verdict::Good { .. }) => verified += 1,
            r => {
                return Err(failure!(
                    "tcpao-refimpl does not verify the {} segment seq {} (KeyID {}): {r:?}",
                    f.from.name(),
                    t.seq_number(),
                    ao.key_id
                ));
            }
        }
    }
    for (i, side) in [(0, "server"), (1, "client")] {
        if keyids[i] != [A, B, C] {
            return Err(failure!(
                "the {side}'s segments used KeyIDs {:?} in that order, expected {A}, {B}, {C}",
                keyids[i]
            ));
        }
        // The follower asks for the new key only briefly before it rotates on: that RNextKeyID
        // may never reach the wire. It must still start with A, end with C, never go back.
        if rnext[i] != [A, B, C] && rnext[i] != [A, C] {
            return Err(failure!(
                "the {side}'s RNextKeyIDs changed as {:?}, expected {A}, ({B},) {C}",
                rnext[i]
            ));
        }
    }
    p.diag(format!(
        "capture: {verified} segments verified; KeyIDs server {:?} client {:?}; RNextKeyIDs server {:?} client {:?}",
        keyids[0], keyids[1], rnext[0], rnext[1]
    ));
    Ok(())
}

/// The rotation protocol of `under-traffic` (runs while the traffic threads do).
fn rotate_steps(p: &Peer<'_>, sk: &Socket) -> PeerResult {
    // The client lets traffic flow with A first (the server must not wait for it too: the
    // client may already have rotated by the time the server gets here).
    if p.side() == Side::Client {
        let c0 = Counters::of(sk)?;
        let a0 = good_of(&c0, A).unwrap_or(0);
        extras::wait_counters(p, sk, p.deadline(), "traffic with key A", |c| {
            good_of(c, A).unwrap_or(0) >= a0 + SETTLE
        })?;
    }
    match p.side() {
        Side::Client => {
            p.diag("traffic with A flows; rotating A -> B");
            initiate(p, sk, A, B)?;
            sockets::add_key(p, sk, &key(p, C))?;
            p.signal(); // 1: A -> B done, C installed
            wait_signals(p, 1, "its rotation B -> C")?;
            follow(p, sk, B, C)?;
            p.signal(); // 2: followed
        }
        Side::Server => {
            p.diag("traffic with A flows; waiting for the client's rotation");
            wait_signals(p, 1, "its rotation A -> B")?;
            follow(p, sk, A, B)?;
            initiate(p, sk, B, C)?;
            p.signal(); // 1: B -> C done
            wait_signals(p, 2, "following the rotation to C")?;
        }
    }
    // Some more traffic with C only.
    let c1 = Counters::of(sk)?;
    let g = good_of(&c1, C).unwrap_or(0);
    extras::wait_counters(p, sk, p.deadline(), "traffic with key C", |c| {
        good_of(c, C).unwrap_or(0) >= g + SETTLE
    })?;
    if c1.keys.len() != 1 {
        return Err(failure!(
            "after both rotations the socket holds {} keys, expected only C",
            c1.keys.len()
        ));
    }
    // Both keep sending until both saw their C traffic.
    p.signal(); // client: 3, server: 2
    match p.side() {
        Side::Client => wait_signals(p, 2, "its traffic with C"),
        Side::Server => wait_signals(p, 3, "its traffic with C"),
    }
}

fn delete_server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p, A))?;
    sockets::add_key(p, &lsk, &key(p, B))?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    let mut buf = [0u8; 100];
    read_exact(p, &sk, &mut buf)?;
    p.sync()?; // the client has our ACK
    let a_sel = key(p, A).to_ao_key()?.selector();
    sk.del_ao_key_replacing(&a_sel, Some(B), Some(B))
        .map_err(|e| failure!("forced delete of key A with B as replacement failed: {e}"))?;
    let before = Counters::of(&sk)?;
    p.sync()?; // the client sends with A now
    extras::wait_counters(p, &sk, p.deadline(), "TCPAOKeyNotFound growing", |c| {
        c.ns_delta(&before, "TCPAOKeyNotFound") > 0
    })?;
    let after = Counters::of(&sk)?;
    after
        .assert_grew_exactly(&before, Grew::KEY_NOT_FOUND)
        .map_err(|e| {
            failure!("server counters while the client still used the deleted key: {e}")
        })?;
    p.signal();
    // The client switches to B; its retransmission must now be accepted.
    read_exact(p, &sk, &mut buf)?;
    let end = Counters::of(&sk)?;
    if end.ns_delta(&after, "TCPAOGood") == 0 {
        return Err(failure!(
            "the retransmission signed with B was not counted as good"
        ));
    }
    p.diag(format!(
        "key A deleted: {} segments with KeyID {A} not found; after the client chose B: {end}",
        after.ns_delta(&before, "TCPAOKeyNotFound")
    ));
    Ok(())
}

fn delete_client(p: &Peer<'_>) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    // B first: connect() uses the most recently added matching key, A.
    sockets::add_key(p, &sk, &key(p, B))?;
    sockets::add_key(p, &sk, &key(p, A))?;
    let info = |sk: &Socket| sk.ao_info().ok().flatten().and_then(|i| i.current_key);
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    sk.set_ao_current_key(A)
        .map_err(|e| failure!("selecting key A failed: {e}"))?;
    sk.set_ao_rnext_key(A)
        .map_err(|e| failure!("requesting key A failed: {e}"))?;
    (&sk).write_all(&[1u8; 100]).or_fail("write() failed")?;
    // The server's ACK must be in before it deletes A (it would carry RNextKeyID B).
    p.wait_for(p.deadline(), || {
        let i = tcpao_sys::repair::tcp_info(&sk).or_fail("TCP_INFO failed")?;
        Ok((i.unacked == 0).then_some(()))
    })?
    .ok_or_else(|| failure!("the first 100 bytes were not acknowledged in time"))?;
    p.sync()?; // the server may delete A now
    p.sync()?; // the server deleted A
    (&sk).write_all(&[2u8; 100]).or_fail("write() failed")?;
    if info(&sk) != Some(A) {
        return Err(failure!(
            "the client's current key is {:?}, expected A",
            info(&sk)
        ));
    }
    wait_signals(p, 1, "counting the key-not-found segments")?;
    sk.set_ao_current_key(B)
        .map_err(|e| failure!("selecting key B failed: {e}"))?;
    // Done when the server acknowledged everything.
    p.wait_for(p.deadline(), || {
        let i = tcpao_sys::repair::tcp_info(&sk).or_fail("TCP_INFO failed")?;
        Ok((i.unacked == 0).then_some(()))
    })?
    .ok_or_else(|| failure!("the data sent with key B was not acknowledged in time"))?;
    Ok(())
}

fn read_exact(p: &Peer<'_>, sk: &Socket, buf: &mut [u8]) -> PeerResult {
    let mut got = 0;
    while got < buf.len() {
        match (&*sk).read(&mut buf[got..]) {
            Ok(0) => return Err(failure!("the connection closed after {got} bytes")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, nix::poll::PollFlags::POLLIN, p.deadline(), || false)? {
                    return Err(failure!(
                        "read() timed out after {got} of {} bytes",
                        buf.len()
                    ));
                }
            }
            Err(e) => return Err(failure!("read() failed: {e}")),
        }
    }
    Ok(())
}

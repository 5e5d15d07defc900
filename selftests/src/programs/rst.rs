// SPDX-License-Identifier: MIT OR Apache-2.0
//! `rst`: TCP-AO-signed resets on both of the kernel's RST paths (kernel `rst.c`), plus signed
//! segments from time-wait sockets after `close()`.
//!
//! A RST needs the connection's traffic keys (ISNs, SNE; RFC 5925), so only resets sent for a
//! socket can be signed; Linux sends none for TCP-AO segments without one
//! (`tcp_ao_prepare_reset()`).
//!
//! - **active-reset** (`tcp_send_active_reset()`): the listener has backlog 0. The client opens
//!   three connections: the first is accepted, the second waits in the accept queue, the
//!   third's SYN finds the queue full and is dropped. Closing the listener resets the queued
//!   child; the accepted socket is closed with `SO_LINGER {1, 0}`. Both clients see
//!   `ECONNRESET`. The third never gets a RST: its SYN had no socket to sign one.
//! - **passive-reset** (`tcp_v4/6_send_reset()` from a time-wait socket): the client
//!   checkpoints its socket with `TCP_REPAIR`, the server closes (its socket becomes a
//!   FIN-WAIT-2 time-wait socket once our ACK of its FIN arrived, which the server sees in
//!   `/proc/net/tcp`), the client restores the socket with its SEQ moved 5 ahead and sends
//!   data: new data after a half-duplex close is answered with a RST, signed with the
//!   time-wait socket's keys. The client gets `ECONNRESET`, not a timeout.
//! - **fin-wait2-rst-after-close** (ours): the same RST without repair: the client, in
//!   CLOSE-WAIT, keeps sending after the server's `close()`.
//! - **time-wait-ack-after-close** (ours): both sides close; a restored client segment that
//!   reaches the server's TIME-WAIT socket is answered with an ACK signed by it
//!   (`tcp_v4/6_timewait_ack()`).
//!
//! Every case checks each side's netns counters the kernel's way (no unsigned segments:
//! `TCPAORequired` unchanged; `TCPAOGood` grew; `TCPAOBad` unchanged; and nothing else of
//! TCP-AO/TCP-MD5 moved), and the capture cross-check verifies every RST's and ACK's MAC,
//! including those of restored sockets (registered with their ISNs).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::PollFlags;
use socket2::{SockAddr, Socket};
use tcpao_sys::repair::tcp_info;
use tcpao_sys::uapi::{TCP_CLOSE, TCP_FIN_WAIT2, TCP_LISTEN, TCP_SYN_SENT, TCP_TIME_WAIT};

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::registry::Test;
use crate::repair::{self, Checkpoint, Restore};
use crate::sockets::{self, ProcTcp, TestKey};

const PROGRAM: &str = "rst";
/// Bytes served per connection (kernel `quota`) in messages of `PACKET_SIZE`.
const QUOTA: usize = 1000;
const PACKET_SIZE: usize = 100;

/// The program's tests.
pub fn tests() -> Vec<Test> {
    let mut v = PairTest::new(PROGRAM, "active-reset")
        .ao()
        .build(active_server, active_client);
    v.extend(
        PairTest::new(PROGRAM, "passive-reset")
            .ao()
            .build(passive_server, passive_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "fin-wait2-rst-after-close")
            .ao()
            .build(fin_wait2_server, fin_wait2_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "time-wait-ack-after-close")
            .ao()
            .build(time_wait_server, time_wait_client),
    );
    v
}

fn key(p: &Peer<'_>) -> TestKey {
    TestKey::new(p.remote_addr(), 100, 100)
}

/// The kernel's `netstats_check()`: no unsigned segments, signed segments, no bad ones; we
/// also require every other TCP-AO/TCP-MD5 netns counter to be unchanged.
fn netns_check(p: &Peer<'_>, before: &Counters) -> PeerResult {
    let after = Counters::netns()?;
    let side = p.side().name();
    for (name, must_grow) in [
        ("TCPAORequired", false),
        ("TCPAOGood", true),
        ("TCPAOBad", false),
    ] {
        let (b, a) = (before.netns.get(name), after.netns.get(name));
        match (must_grow, a > b) {
            (false, true) => {
                return Err(failure!(
                    "Segments {} ({side}): {name} {b} => {a}",
                    if name == "TCPAOBad" {
                        "with bad AO sign"
                    } else {
                        "without AO sign"
                    }
                ));
            }
            (true, false) => {
                return Err(failure!(
                    "No signed AO segments ({side}): {name} {b} => {a}"
                ));
            }
            _ => {}
        }
    }
    after
        .assert_grew_exactly(before, Grew::NS_GOOD)
        .map_err(|e| failure!("netns counters ({side}): {e}"))?;
    p.diag(format!(
        "No segments without AO sign ({side}); Signed AO segments ({side}): {} => {}; No segments with bad AO sign ({side})",
        before.netns.ao_good(),
        after.netns.ao_good()
    ));
    Ok(())
}

/// Echo exactly `QUOTA` bytes (kernel `test_server_run(sk, quota, ...)`).
fn serve_quota(p: &Peer<'_>, sk: &Socket) -> PeerResult {
    let served = sockets::echo_quota(p, sk, QUOTA as u64, p.deadline())?;
    if served < QUOTA as u64 {
        return Err(failure!(
            "server: served only {served} of {QUOTA} bytes before EOF or the deadline"
        ));
    }
    Ok(())
}

/// Wait until `sk` reports an error (or hang-up) and return it (`SO_ERROR`).
pub(crate) fn wait_error(p: &Peer<'_>, sk: &Socket, what: &str) -> PeerResult<io::Error> {
    let ready = sockets::wait_fd(
        p,
        sk,
        PollFlags::POLLERR | PollFlags::POLLHUP,
        p.deadline(),
        || false,
    )?;
    if !ready {
        return Err(failure!(
            "{what}: no error within {:?}: the connection was not reset",
            p.timeout()
        ));
    }
    match sk.take_error() {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(failure!("{what}: hung up without an error")),
        Err(e) => Err(failure!("{what}: getsockopt(SO_ERROR) failed: {e}")),
    }
}

pub(crate) fn expect_errno(e: &io::Error, errno: Errno, what: &str) -> PeerResult {
    if e.raw_os_error() == Some(errno as i32) {
        Ok(())
    } else {
        Err(failure!("{what}: error {e}, expected {errno}"))
    }
}

/// Wait until the other side closed (EOF on `sk`).
fn wait_eof(p: &Peer<'_>, mut sk: &Socket) -> PeerResult {
    let mut b = [0u8; 64];
    loop {
        match sk.read(&mut b) {
            Ok(0) => return Ok(()),
            Ok(n) => return Err(failure!("client: {n} unexpected bytes before the FIN")),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, PollFlags::POLLIN, p.deadline(), || false)? {
                    return Err(failure!("client: the server's FIN did not arrive"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failure!("client: read() failed: {e}")),
        }
    }
}

/// The state of this namespace's TCP socket (full or time-wait) with local port `port` that
/// is not a listener, from `/proc/thread-self/net/tcp{,6}` (time-wait sockets show their
/// substate there).
fn port_state(port: u16) -> Option<u8> {
    ProcTcp::all()
        .into_iter()
        .find(|s| s.local_port == port && s.state != TCP_LISTEN)
        .map(|s| s.state)
}

/// Poll until this side's closed socket on local `port` is in `state` (for a time-wait
/// socket: its substate).
pub(crate) fn wait_port_state(p: &Peer<'_>, port: u16, state: u8, name: &str) -> PeerResult {
    let mut last = None;
    let got = p.wait_for(p.deadline(), || {
        last = port_state(port);
        Ok((last == Some(state)).then_some(()))
    })?;
    if got.is_none() {
        return Err(failure!(
            "{}: the closed socket on port {port} did not reach {name} within {:?} (state {last:?})",
            p.side().name(),
            p.timeout()
        ));
    }
    Ok(())
}

/// Restore `img` on a new socket with its send SEQ moved `seq_adjust` ahead, re-adding `key`
/// (already registered with the capture by the original socket); [`repair`] registers the
/// restored view of the flow with the capture.
fn restore(p: &Peer<'_>, img: &Checkpoint, key: &TestKey, seq_adjust: u32) -> PeerResult<Socket> {
    let mut img = img.clone();
    img.set_seqs(img.send_una().wrapping_add(seq_adjust), img.recv_seq);
    img.restore(p, &Restore::new(std::slice::from_ref(key)))
}

/// Write one message; errors are returned, not failures (the peer may have reset us).
pub(crate) fn send_message(p: &Peer<'_>, mut sk: &Socket) -> PeerResult<io::Result<()>> {
    let msg = [0x5au8; PACKET_SIZE];
    let mut sent = 0;
    while sent < PACKET_SIZE {
        match sk.write(&msg[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, PollFlags::POLLOUT, p.deadline(), || false)? {
                    return Err(failure!("client: write() timed out"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(()))
}

// ---- active reset ----

fn active_server(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    // Backlog 0 still queues one connection (commit 64a146513f8f).
    let lsk = sockets::listen(p, p.port(), 0)?;
    sockets::add_key(p, &lsk, &key(p))?;
    let before = Counters::of(&lsk)?;
    p.sync()?; // 1: MKT added
    let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))?;
    p.sync()?; // 2: accepted; the client connects the second
    if !sockets::wait_fd(p, &lsk, PollFlags::POLLIN, p.deadline(), || false)? {
        return Err(failure!(
            "the second connection did not reach the accept queue within {:?}",
            p.timeout()
        ));
    }
    // Nothing can reach the listener now: the client starts the third connection only after
    // the next sync, so no SYN is verified while this snapshot's reads are under way.
    let queued = Counters::of(&lsk)?;
    queued
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("MKT counters (server) have not only good packets: {e}"))?;
    p.sync()?; // 3: the listener's counters are taken; the client starts the third connect()
    // The third SYN is verified on the listener, then dropped: the accept queue is full.
    let third = p.wait_for(p.deadline(), || {
        let c = Counters::of(&lsk)?;
        let grown = c.grown(&queued);
        Ok((grown.contains(Grew::GOOD) || grown.intersects(!Grew::GOOD)).then_some(c))
    })?;
    let Some(third) = third else {
        return Err(failure!(
            "the third connection's SYN was not verified by the listener within {:?} (counters before: {queued}; now: {})",
            p.timeout(),
            Counters::of(&lsk)?
        ));
    };
    third
        .assert_grew_exactly(&queued, Grew::GOOD)
        .map_err(|e| failure!("MKT counters (server) have not only good packets: {e}"))?;
    p.diag("MKT counters are good on server");
    // Closing the listener resets the queued child (inet_child_forget -> tcp_disconnect).
    drop(lsk);
    let c1 = Counters::of(&sk)?;
    serve_quota(p, &sk)?;
    Counters::of(&sk)?
        .assert_grew_exactly(&c1, Grew::GOOD)
        .map_err(|e| failure!("accepted socket: {e}"))?;
    p.sync()?; // 4: the client verified its connection
    sk.set_linger(Some(Duration::ZERO))
        .or_fail("setsockopt(SO_LINGER) failed")?;
    drop(sk); // RST
    p.sync()?; // 5: the client saw its resets
    netns_check(p, &ns_before)
}

fn active_client(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let mut sks = Vec::new();
    for _ in 0..3 {
        let sk = sockets::client_socket(p)?;
        sockets::add_key(p, &sk, &key(p))?;
        sks.push(sk);
    }
    p.sync()?; // 1
    sockets::connect_ok(p, &sks[0], p.remote_addr(), p.port())?;
    p.sync()?; // 2: accepted
    sockets::connect_ok(p, &sks[1], p.remote_addr(), p.port())?;
    let c: Vec<Counters> = sks[..2]
        .iter()
        .map(Counters::of)
        .collect::<PeerResult<_>>()?;
    // The server snapshots its listener's counters before 3; the third SYN must come after
    // (sent before, it could be verified while the server reads them: a torn snapshot, and
    // the listener's good count the server waits for would already have grown).
    p.sync()?; // 3
    // The third: asynchronous; its SYN finds the accept queue full.
    match sks[2].connect(&SockAddr::from(SocketAddr::new(p.remote_addr(), p.port()))) {
        Err(e) if e.raw_os_error() == Some(Errno::EINPROGRESS as i32) => {}
        r => {
            return Err(failure!(
                "the third connect() returned {r:?}, expected EINPROGRESS"
            ));
        }
    }
    sockets::echo_verify(p, &sks[0], QUOTA / PACKET_SIZE, PACKET_SIZE, p.deadline())
        .map_err(|e| failure!("Failed to send data on connected socket: {e}"))?;
    p.diag("Verified established tcp connection");
    p.sync()?; // 4
    for (i, sk) in sks[..2].iter().enumerate() {
        let e = wait_error(p, sk, &format!("sk[{i}]"))?;
        expect_errno(&e, Errno::ECONNRESET, &format!("sk[{i}]"))?;
        // The RST was verified (and counted) by the socket it reset.
        Counters::of(sk)?
            .assert_grew_exactly(&c[i], Grew::GOOD)
            .map_err(|e| failure!("sk[{i}] counters: {e}"))?;
        p.diag(format!("sk[{i}], connection was reset"));
    }
    // The third never left SYN-SENT and got no RST (no socket could sign one).
    if let Ok(Some(e)) = sks[2].take_error() {
        return Err(failure!("sk[2]: unexpected error {e}"));
    }
    let st = tcp_info(&sks[2]).or_fail("TCP_INFO failed")?.state;
    if st != TCP_SYN_SENT {
        return Err(failure!("sk[2] is in TCP state {st}, expected SYN-SENT"));
    }
    p.diag("sk[2] is still connecting, never established, not reset");
    p.sync()?; // 5
    netns_check(p, &ns_before)
}

// ---- passive reset (kernel) ----

fn passive_server(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p))?;
    p.sync()?; // 1
    let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))?;
    drop(lsk);
    let c1 = Counters::of(&sk)?;
    serve_quota(p, &sk)?;
    p.sync()?; // 2: the client checkpointed its socket
    let c2 = Counters::of(&sk)?;
    drop(sk); // FIN; FIN-WAIT-2 time-wait socket once the client ACKs it
    c2.assert_grew_exactly(&c1, Grew::GOOD)
        .map_err(|e| failure!("passive RST server: {e}"))?;
    wait_port_state(p, p.port(), TCP_FIN_WAIT2, "FIN-WAIT-2")?;
    p.sync()?; // 3: time-wait socket ready
    p.sync()?; // 4: the client was reset
    netns_check(p, &ns_before)
}

fn passive_client(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let k = key(p);
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &k)?;
    p.sync()?; // 1
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    sockets::echo_verify(p, &sk, QUOTA / PACKET_SIZE, PACKET_SIZE, p.deadline())
        .map_err(|e| failure!("Failed to send data on connected socket: {e}"))?;
    p.diag("Verified established tcp connection");
    let img = repair::snapshot(&sk)?;
    p.sync()?; // 2
    wait_eof(p, &sk)?;
    p.sync()?; // 3: the server's socket is a FIN-WAIT-2 time-wait socket
    repair::kill(p, sk)?;
    // In window, but new data after the server's half-duplex close.
    let sk = restore(p, &img, &k, 5)?;
    let c1 = Counters::of(&sk)?;
    let r = send_message(p, &sk)?;
    let e = match r {
        Err(e) => e,
        Ok(()) => wait_error(p, &sk, "client sock post-seq-adjust")?,
    };
    expect_errno(
        &e,
        Errno::ECONNRESET,
        "client sock was not reset post-seq-adjust",
    )?;
    Counters::of(&sk)?
        .assert_grew_exactly(&c1, Grew::GOOD)
        .map_err(|e| failure!("client passive RST: {e}"))?;
    p.diag("client sock was passively reset post-seq-adjust");
    p.sync()?; // 4
    netns_check(p, &ns_before)
}

// ---- ours: RST from FIN-WAIT-2 without repair ----

fn fin_wait2_server(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p))?;
    p.sync()?; // 1
    let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))?;
    drop(lsk);
    serve_quota(p, &sk)?;
    drop(sk);
    wait_port_state(p, p.port(), TCP_FIN_WAIT2, "FIN-WAIT-2")?;
    p.sync()?; // 2: time-wait socket ready
    p.sync()?; // 3: the client was reset
    netns_check(p, &ns_before)
}

fn fin_wait2_client(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &key(p))?;
    p.sync()?; // 1
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    sockets::echo_verify(p, &sk, QUOTA / PACKET_SIZE, PACKET_SIZE, p.deadline())?;
    wait_eof(p, &sk)?;
    p.sync()?; // 2
    let c1 = Counters::of(&sk)?;
    // CLOSE-WAIT may still send; the FIN-WAIT-2 time-wait socket answers with a RST.
    let e = match send_message(p, &sk)? {
        Err(e) => e,
        Ok(()) => wait_error(p, &sk, "client in CLOSE-WAIT")?,
    };
    // tcp_reset() reports a RST in CLOSE-WAIT as EPIPE (ECONNRESET is for ESTABLISHED).
    expect_errno(
        &e,
        Errno::EPIPE,
        "client in CLOSE-WAIT after the server's RST",
    )?;
    Counters::of(&sk)?
        .assert_grew_exactly(&c1, Grew::GOOD)
        .map_err(|e| failure!("client: the RST was not verified: {e}"))?;
    p.diag(format!("client in CLOSE-WAIT was reset: {e}"));
    p.sync()?; // 3
    netns_check(p, &ns_before)
}

// ---- ours: ACK from TIME-WAIT ----

fn time_wait_server(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p))?;
    p.sync()?; // 1
    let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))?;
    drop(lsk);
    serve_quota(p, &sk)?;
    p.sync()?; // 2: the client checkpointed its socket
    drop(sk);
    // The client closes too; after its FIN the time-wait socket is in TIME-WAIT proper.
    wait_port_state(p, p.port(), TCP_TIME_WAIT, "TIME-WAIT")?;
    p.sync()?; // 3
    p.sync()?; // 4: the client got the time-wait socket's ACK
    netns_check(p, &ns_before)
}

fn time_wait_client(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let k = key(p);
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &k)?;
    p.sync()?; // 1
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    sockets::echo_verify(p, &sk, QUOTA / PACKET_SIZE, PACKET_SIZE, p.deadline())?;
    let img = repair::snapshot(&sk)?;
    p.sync()?; // 2
    wait_eof(p, &sk)?;
    sk.shutdown(std::net::Shutdown::Write)
        .or_fail("shutdown(SHUT_WR) failed")?;
    // LAST-ACK until the server acknowledges our FIN, then CLOSE.
    let closed = p.wait_for(p.deadline(), || {
        let st = tcp_info(&sk).or_fail("TCP_INFO failed")?.state;
        Ok((st == TCP_CLOSE).then_some(()))
    })?;
    if closed.is_none() {
        return Err(failure!("client: our FIN was not acknowledged"));
    }
    p.sync()?; // 3: the server's socket is in TIME-WAIT
    drop(sk);
    // A restored copy from before the FINs: its data is old to the TIME-WAIT socket.
    let sk = restore(p, &img, &k, 0)?;
    let c1 = Counters::of(&sk)?;
    if let Err(e) = send_message(p, &sk)? {
        return Err(failure!(
            "client: write() on the restored socket failed: {e}"
        ));
    }
    let acked = p.wait_for(p.deadline(), || {
        let c = Counters::of(&sk)?;
        Ok((c.sock.map_or(0, |s| s.good) > c1.sock.map_or(0, |s| s.good)).then_some(c))
    })?;
    let Some(acked) = acked else {
        // What the restored socket holds now against what it was given (a checkpoint of it
        // reads them back), for a failure the counters alone cannot explain.
        let now = repair::snapshot(&sk).map_or_else(
            |e| format!("unreadable: {e}"),
            |c| {
                format!(
                    "now AO {:?}, recv SEQ {}, send SEQ {}",
                    c.ao, c.recv_seq, c.send_seq
                )
            },
        );
        return Err(failure!(
            "client: no signed segment from the TIME-WAIT socket within {:?}; restored with AO {:?}, recv SEQ {}, send SEQ {}; {now}; counters {}",
            p.timeout(),
            img.ao,
            img.recv_seq,
            img.send_seq,
            Counters::of(&sk)?
                .assert_grew_exactly(&c1, Grew::GOOD)
                .err()
                .map_or_else(|| "as expected".to_owned(), |e| e.to_string())
        ));
    };
    acked
        .assert_grew_exactly(&c1, Grew::GOOD)
        .map_err(|e| failure!("client: {e}"))?;
    p.diag("the TIME-WAIT socket answered with a signed ACK");
    repair::kill(p, sk)?;
    p.sync()?; // 4
    netns_check(p, &ns_before)
}

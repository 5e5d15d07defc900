// SPDX-License-Identifier: MIT OR Apache-2.0
//! `static-key`: the first and the last TCP-AO key in the system, racing traffic.
//!
//! The kernel keeps TCP-AO off the fast paths with a static branch, `tcp_ao_needed`: the first
//! `tcp_ao_info` to be created turns it on (the kernel text of every site is patched, on x86
//! with `int3` breakpoints and IPIs to the other CPUs), and it is turned off again `HZ` (one
//! second) after the last one is freed, by a delayed work item. The branch is global, not
//! per network namespace: other tests' TCP-AO sockets (and their TIME-WAIT sockets) keep it on,
//! so this case flips it only when it runs alone.
//!
//! Every iteration: A, the server, adds the first key to a fresh listener (the flip on). B, the
//! client, writes a burst on a plain (keyless) connection, whose segments run through the
//! patched sites on the other CPU (`tcp_get_current_key()` when sent, `tcp_ao_required()` when
//! received). Then a TCP-AO connection is made to that listener and exchanges a byte, which
//! must be signed (cross-checked) and counted `TCPAOGood`: a site left unpatched would send it
//! unsigned. All TCP-AO sockets are then closed with an RST (no TIME-WAIT keeps the key), and
//! the plain connection keeps exchanging data for 1.2 s, while the kernel's delayed work turns
//! the branch off again (the flip off, racing the traffic). That wait is the kernel's fixed
//! `HZ` delay, with nothing to poll for: the branch's state is not visible to userspace.
//!
//! A's section is slow when it patched the kernel and fast when the branch was already on: the
//! `A` durations of the statistics show both.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::Socket;
use tcpao_sys::TcpAoExt;

use super::{Race, RaceTest, Reader, Streams, abort_close, close_after_reset, key, mib};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::extras;
use crate::registry::Test;
use crate::sockets;

const K: u8 = 100;
/// The delay of the kernel's deferred static-key disable (`DEFINE_STATIC_KEY_DEFERRED_FALSE(
/// tcp_ao_needed, HZ)`) plus a margin.
const DISABLE_DELAY: Duration = Duration::from_millis(1200);
const CHUNK: usize = 64;

/// The case of this file.
pub(super) fn tests() -> Vec<Test> {
    RaceTest::new(
        "static-key",
        "server adds the first TCP-AO key in the system (tcp_ao_needed flips on)",
        "client writes on a keyless connection through the patched branches",
    )
    .build(server, client)
}

/// State of one run.
#[derive(Debug, Default)]
pub(super) struct State {
    streams: Streams,
    more: AtomicBool,
    /// How long the first key's `TCP_AO_ADD_KEY` took, and a second key's right after it (the
    /// branch already on: the cost of an add without text patching).
    durations: Mutex<(Vec<Duration>, Vec<Duration>)>,
}

fn plain_pair_server(p: &Peer<'_>) -> PeerResult<Socket> {
    let l = sockets::listen(p, p.port(), 1)?;
    p.sync()?;
    let sk = extras::accept_one(p, &l)?;
    sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
    Ok(sk)
}

fn plain_pair_client(p: &Peer<'_>) -> PeerResult<Socket> {
    let sk = sockets::client_socket(p)?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
    Ok(sk)
}

/// Keep the plain connection busy until the server says stop (both peers call it).
fn traffic_until(
    p: &Peer<'_>,
    st: &State,
    sk: &Socket,
    rd: &mut Reader,
    until: Option<Instant>,
) -> PeerResult {
    loop {
        if let Some(u) = until {
            st.more.store(Instant::now() < u, Ordering::SeqCst);
        }
        p.sync()?;
        if !st.more.load(Ordering::SeqCst) {
            return Ok(());
        }
        st.streams.ping(p, sk, rd, CHUNK)?;
    }
}

fn server(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let st = &race.state;
    let plain = plain_pair_server(p)?;
    let mut rd = Reader::default();
    let k = key(p, K);
    let ao = k.to_ao_key()?;
    sockets::register(p, &k);
    let second = key(p, K + 1).to_ao_key()?;
    let ao_port = p.port() + 1;
    // Let a flip-off of earlier tests happen first.
    traffic_until(p, st, &plain, &mut rd, Some(Instant::now() + DISABLE_DELAY))?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    while race.run_a() {
        let l = sockets::listen(p, ao_port, 1)?;
        let good = mib()?.ao_good();
        p.sync()?;
        if !pair.start_a() {
            break;
        }
        let t0 = Instant::now();
        let res = l.add_ao_key(&ao);
        let took = t0.elapsed();
        if pair.end_a().is_none() {
            break;
        }
        res.map_err(|e| failure!("adding the first TCP-AO key failed: {e}"))?;
        let t1 = Instant::now();
        l.add_ao_key(&second)
            .map_err(|e| failure!("adding a second TCP-AO key failed: {e}"))?;
        let control = t1.elapsed();
        {
            let mut d = st
                .durations
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            d.0.push(took);
            d.1.push(control);
        }
        rd.read_until(p, &plain, st.streams.c2s.sent())?;
        let c = extras::accept_one(p, &l)?;
        let mut b = [0u8; 1];
        read_one(p, &c, &mut b)?;
        sockets::write_all(p, &c, &b, p.deadline())?;
        let got = mib()?.ao_good().saturating_sub(good);
        if got == 0 {
            return Err(failure!(
                "the TCP-AO connection made after the flip verified no segment (TCPAOGood did not move)"
            ));
        }
        p.sync()?;
        close_after_reset(p, c)?;
        abort_close(l);
        traffic_until(p, st, &plain, &mut rd, Some(Instant::now() + DISABLE_DELAY))?;
    }
    guard.disarm();
    st.more.store(false, Ordering::SeqCst);
    let (mut first, mut second) = st
        .durations
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    first.sort_unstable();
    second.sort_unstable();
    if let (Some(m1), Some(m2)) = (first.get(first.len() / 2), second.get(second.len() / 2)) {
        let slow = first.iter().filter(|x| **x > *m2 * 10).count();
        p.diag(format!(
            "first-key add: median {:.1} us [{:.1}..{:.1}]; second-key add (no flip): median {:.1} us; \
             {slow} of {} first-key adds over 10x the second's median (the branch was patched on)",
            m1.as_secs_f64() * 1e6,
            first[0].as_secs_f64() * 1e6,
            first[first.len() - 1].as_secs_f64() * 1e6,
            m2.as_secs_f64() * 1e6,
            first.len()
        ));
    }
    p.sync()?;
    abort_close(plain);
    Ok(())
}

fn read_one(p: &Peer<'_>, sk: &Socket, b: &mut [u8; 1]) -> PeerResult {
    loop {
        match std::io::Read::read(&mut &*sk, b) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(failure!("the TCP-AO connection closed early")),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, nix::poll::PollFlags::POLLIN, p.deadline(), || false)? {
                    return Err(failure!("no byte arrived on the TCP-AO connection"));
                }
            }
            Err(e) => return Err(failure!("read() failed: {e}")),
        }
    }
}

fn client(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let st = &race.state;
    let plain = plain_pair_client(p)?;
    let mut rd = Reader::default();
    let k = key(p, K);
    let ao = k.to_ao_key()?;
    sockets::register(p, &k);
    let ao_port = p.port() + 1;
    traffic_until(p, st, &plain, &mut rd, None)?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    while pair.run_b() {
        p.sync()?;
        if !pair.start_b() {
            break;
        }
        let mut res = Ok(());
        for _ in 0..4 {
            res = res.and_then(|()| st.streams.c2s.write_now(&plain, CHUNK));
        }
        if !pair.end_b() {
            break;
        }
        res.map_err(|e| failure!("client burst: {e}"))?;
        let sk = sockets::client_socket(p)?;
        sk.add_ao_key(&ao)
            .map_err(|e| failure!("adding the client's key failed: {e}"))?;
        sockets::connect_ok(p, &sk, p.remote_addr(), ao_port)?;
        sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
        sockets::write_all(p, &sk, &[0x42], p.deadline())?;
        let mut b = [0u8; 1];
        read_one(p, &sk, &mut b)?;
        p.sync()?;
        abort_close(sk);
        traffic_until(p, st, &plain, &mut rd, None)?;
    }
    guard.disarm();
    p.sync()?;
    abort_close(plain);
    Ok(())
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Race cases on an established connection with two keys, P = 100:100 and Q = 101:101, on both
//! peers. The server is actor A (key operations), the client actor B (segments that the
//! server's receive path verifies on B's CPU, in softirq, while A's `setsockopt` runs).
//!
//! After every iteration both peers write one byte and read everything the other wrote
//! (`ping`): every byte of both streams must arrive intact, and the segments carry each side's
//! KeyID and RNextKeyID, which moves the peer's Current_key (RFC 5925 §7.5.2). The key state
//! each side must have is then checked with `TCP_AO_INFO` before the next iteration.
//!
//! * `delete-current`: the server signs with X and asks for Y (Current_key X, RNext_key Y),
//!   the client signs with Y and asks for X. A deletes X, giving Y as the new Current_key; B's
//!   segments arrive asking for X, so the receive path reads Current_key (X, being deleted) to
//!   compare it with their RNextKeyID. Nothing may be dropped: no BAD, no key-not-found.
//! * `delete-rnext`: the server signs with Y and asks for X, the client signs with X. A deletes
//!   X (the key B's segments are verified with: the receive path takes RNext_key as its first
//!   guess), giving Y as the new RNext_key. Segments that arrive after the delete are dropped
//!   as key-not-found (the kernel's documented behaviour) and retransmitted with Y once the
//!   client learns from the server's next segment (RNextKeyID Y) to switch; no BAD.
//! * `rnext-vs-request`: both sides use X. A sets the server's RNext_key to Y; B sets the
//!   client's RNext_key to Y and sends, so its segments ask the server to switch its
//!   Current_key to Y while A changes the server's RNext_key. After the ping both sides must
//!   have Current_key Y and RNext_key Y.
//! * `repair-vs-traffic`: the server enters `TCP_REPAIR`, reads `TCP_AO_REPAIR`; A writes the
//!   same ISNs and SNEs back (the kernel recomputes every key's traffic keys in place) while
//!   B's segments are verified with them. Rewriting the same values must be invisible: no BAD.
//! * `get-keys-vs-delete`: A deletes, then (next iteration) re-adds a third key R = 102:102 on
//!   the server; B, a second server thread, lists the keys with `TCP_AO_GET_KEYS` while the
//!   client streams data. Every listing must be P, Q with or without R, with exactly one
//!   Current_key (P) and one RNext_key (P), and P's `pkt_good` never decreasing.
//!
//! X and Y swap every iteration (the deleted key is re-added as the spare).

use std::sync::atomic::{AtomicBool, Ordering};

use socket2::Socket;
use tcpao_sys::repair::RepairMode;
use tcpao_sys::{AoKeyInfo, KeyFilter, KeySelector, TcpAoExt};

use super::{
    Moved, Race, RaceTest, Reader, Streams, abort_close, close_after_reset, errno_name,
    fast_retransmits, info, key, unchanged, wait_keys,
};
use crate::counters::Counters;
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::extras;
use crate::registry::Test;
use crate::sockets;

const P: u8 = 100;
const Q: u8 = 101;
const R: u8 = 102;
/// Writes B makes per iteration, and their size: one segment each (`TCP_NODELAY`).
const BURST: usize = 4;
const CHUNK: usize = 64;

/// The cases of this file.
pub(super) fn tests() -> Vec<Test> {
    let mut v = RaceTest::new(
        "delete-current",
        "server deletes its Current_key X (new Current_key Y)",
        "client segments asking for X (RNextKeyID) arrive",
    )
    .build(
        |p, r: &Race<State>| delete_server(p, r, Which::Current),
        |p, r: &Race<State>| delete_client(p, r, Which::Current),
    );
    v.extend(
        RaceTest::new(
            "delete-rnext",
            "server deletes its RNext_key X (new RNext_key Y)",
            "client segments signed with X arrive",
        )
        .build(
            |p, r: &Race<State>| delete_server(p, r, Which::Rnext),
            |p, r: &Race<State>| delete_client(p, r, Which::Rnext),
        ),
    );
    v.extend(
        RaceTest::new(
            "rnext-vs-request",
            "server sets its RNext_key to Y",
            "client sets its RNext_key to Y and sends (RNextKeyID Y asks the server to switch)",
        )
        .build(rnext_server, rnext_client),
    );
    v.extend(
        RaceTest::new(
            "repair-vs-traffic",
            "server rewrites TCP_AO_REPAIR (same ISNs and SNEs: traffic keys recomputed)",
            "client segments arrive and are verified",
        )
        .build(repair_server, repair_client),
    );
    v.extend(
        RaceTest::new(
            "get-keys-vs-delete",
            "server deletes or re-adds key R",
            "another server thread lists the keys (TCP_AO_GET_KEYS) while data flows",
        )
        .build(get_keys_server, get_keys_client),
    );
    v
}

/// The state both peers of one run share.
#[derive(Debug, Default)]
pub(super) struct State {
    streams: Streams,
    /// `get-keys-vs-delete`: the server's actors are done, the client stops streaming.
    done: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Current,
    Rnext,
}

fn selector(p: &Peer<'_>, id: u8) -> PeerResult<KeySelector> {
    Ok(key(p, id).to_ao_key()?.selector())
}

/// Listen with P and Q, accept the client, `TCP_NODELAY`.
fn server_conn(p: &Peer<'_>) -> PeerResult<Socket> {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p, Q))?;
    sockets::add_key(p, &lsk, &key(p, P))?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
    Ok(sk)
}

/// Connect with P and Q (P added last: the first key connect() picks), `TCP_NODELAY`.
fn client_conn(p: &Peer<'_>) -> PeerResult<Socket> {
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &key(p, Q))?;
    sockets::add_key(p, &sk, &key(p, P))?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
    Ok(sk)
}

fn set_current(sk: &Socket, id: u8) -> PeerResult {
    sk.set_ao_current_key(id)
        .map_err(|e| failure!("TCP_AO_INFO set_current {id} failed: {e}"))
}

fn set_rnext(sk: &Socket, id: u8) -> PeerResult {
    sk.set_ao_rnext_key(id)
        .map_err(|e| failure!("TCP_AO_INFO set_rnext {id} failed: {e}"))
}

/// `(current, rnext)` each side has before an iteration with keys `x` (deleted) and `y`.
fn pre_state(which: Which, server: bool, x: u8, y: u8) -> (u8, u8) {
    match (which, server) {
        (Which::Current, true) => (x, y),
        (Which::Current, false) => (y, x),
        (Which::Rnext, true) => (y, x),
        (Which::Rnext, false) => (x, y),
    }
}

fn delete_server(p: &Peer<'_>, race: &Race<State>, which: Which) -> PeerResult {
    fast_retransmits()?;
    let sk = server_conn(p)?;
    let st = &race.state;
    let mut rd = Reader::default();
    let (mut x, mut y) = (P, Q);
    let (c, r) = pre_state(which, true, x, y);
    set_current(&sk, c)?;
    set_rnext(&sk, r)?;
    st.streams.ping(p, &sk, &mut rd, 1)?;
    wait_keys(p, &sk, c, r, "before the first iteration")?;
    p.sync()?;
    let before = Counters::of(&sk)?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    while race.run_a() {
        let sel = selector(p, x)?;
        if !pair.start_a() {
            break;
        }
        let res = match which {
            Which::Current => sk.del_ao_key_replacing(&sel, Some(y), None),
            Which::Rnext => sk.del_ao_key_replacing(&sel, None, Some(y)),
        };
        if pair.end_a().is_none() {
            break;
        }
        match &res {
            Ok(()) => race.tally.add("delete ok"),
            Err(tcpao_sys::Error::KeyInUse { .. }) => {
                // Documented: the receive path made the key current again before the
                // delete looked (RFC 5925 allows no deletion of a key in use).
                race.tally.add("delete EBUSY");
            }
            Err(e) => {
                return Err(failure!(
                    "deleting key {x} (replaced by {y}) failed with {}: {e}",
                    errno_name(e)
                ));
            }
        }
        // 1: B's burst arrives (retransmitted with y if it was dropped).
        st.streams.ping(p, &sk, &mut rd, 1)?;
        let listed: Vec<u8> = keys_of(&sk)?.iter().map(|k| k.selector.send_id).collect();
        let deleted = match res {
            Ok(()) if listed.contains(&x) => {
                return Err(failure!(
                    "key {x} is still listed after it was deleted (keys {listed:?})"
                ));
            }
            Ok(()) => true,
            Err(_) => {
                let i = info(&sk)?;
                if !listed.contains(&x) || (i.current_key != Some(x) && i.rnext_key != Some(x)) {
                    return Err(failure!(
                        "deleting key {x} failed with EBUSY, but the key is not in use: keys {listed:?}, current {:?}, rnext {:?}",
                        i.current_key,
                        i.rnext_key
                    ));
                }
                false
            }
        };
        // 2: the client sets its next RNext_key; once its segments carrying it arrived, no
        // older segment of the client is in flight (veth keeps order).
        p.sync()?;
        st.streams.ping(p, &sk, &mut rd, 1)?;
        // 3: the deleted key comes back as the spare; y is deleted next.
        if deleted {
            // Registered with the capture when it was first added.
            sk.add_ao_key(&key(p, x).to_ao_key()?)
                .map_err(|e| failure!("re-adding key {x} failed: {e}"))?;
        }
        (x, y) = (y, x);
        let (c, r) = pre_state(which, true, x, y);
        set_current(&sk, c)?;
        set_rnext(&sk, r)?;
        // Two rounds: an ACK built on the other CPU before the change may overtake the first
        // round's segments (each CPU has its own backlog) and carry the old RNextKeyID.
        st.streams.ping(p, &sk, &mut rd, 1)?;
        st.streams.ping(p, &sk, &mut rd, 1)?;
        wait_keys(p, &sk, c, r, "after the iteration")?;
        p.sync()?;
    }
    guard.disarm();
    let after = Counters::of(&sk)?;
    let mut forbidden = vec![Moved::Bad, Moved::AoRequired];
    if which == Which::Current {
        forbidden.push(Moved::KeyNotFound);
    }
    unchanged(p, &before, &after, &forbidden)?;
    p.diag(format!(
        "key-not-found drops (segments that arrived after their key was deleted): {}",
        after.ns_delta(&before, "TCPAOKeyNotFound")
    ));
    p.sync()?;
    close_after_reset(p, sk)
}

fn delete_client(p: &Peer<'_>, race: &Race<State>, which: Which) -> PeerResult {
    fast_retransmits()?;
    let sk = client_conn(p)?;
    let st = &race.state;
    let mut rd = Reader::default();
    let (mut x, mut y) = (P, Q);
    let (c, r) = pre_state(which, false, x, y);
    set_current(&sk, c)?;
    set_rnext(&sk, r)?;
    st.streams.ping(p, &sk, &mut rd, 1)?;
    wait_keys(p, &sk, c, r, "before the first iteration")?;
    p.sync()?;
    let before = Counters::of(&sk)?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    while pair.run_b() {
        if !pair.start_b() {
            break;
        }
        let mut res = Ok(());
        for _ in 0..BURST {
            res = res.and_then(|()| st.streams.c2s.write_now(&sk, CHUNK));
        }
        if !pair.end_b() {
            break;
        }
        res.map_err(|e| failure!("client burst: {e}"))?;
        st.streams.ping(p, &sk, &mut rd, 1)?;
        (x, y) = (y, x);
        let (c, r) = pre_state(which, false, x, y);
        p.sync()?;
        // Current_key follows the server's RNextKeyID; RNext_key is ours to set.
        set_rnext(&sk, r)?;
        st.streams.ping(p, &sk, &mut rd, 1)?;
        st.streams.ping(p, &sk, &mut rd, 1)?;
        st.streams.ping(p, &sk, &mut rd, 1)?;
        wait_keys(p, &sk, c, r, "after the iteration")?;
        p.sync()?;
    }
    guard.disarm();
    let after = Counters::of(&sk)?;
    unchanged(
        p,
        &before,
        &after,
        &[Moved::Bad, Moved::KeyNotFound, Moved::AoRequired],
    )?;
    p.sync()?;
    abort_close(sk);
    Ok(())
}

fn rnext_server(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let sk = server_conn(p)?;
    let st = &race.state;
    let mut rd = Reader::default();
    let (mut x, mut y) = (P, Q);
    set_current(&sk, x)?;
    set_rnext(&sk, x)?;
    st.streams.ping(p, &sk, &mut rd, 1)?;
    wait_keys(p, &sk, x, x, "before the first iteration")?;
    p.sync()?;
    let before = Counters::of(&sk)?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    while race.run_a() {
        if !pair.start_a() {
            break;
        }
        let res = sk.set_ao_rnext_key(y);
        if pair.end_a().is_none() {
            break;
        }
        res.map_err(|e| failure!("TCP_AO_INFO set_rnext {y} failed: {e}"))?;
        st.streams.ping(p, &sk, &mut rd, 1)?;
        // The client asked for y: the server's Current_key moved there when its segments
        // arrived, whatever the order.
        wait_keys(p, &sk, y, y, "after the iteration")?;
        p.sync()?;
        (x, y) = (y, x);
    }
    guard.disarm();
    let _ = x;
    let after = Counters::of(&sk)?;
    unchanged(
        p,
        &before,
        &after,
        &[Moved::Bad, Moved::KeyNotFound, Moved::AoRequired],
    )?;
    p.sync()?;
    close_after_reset(p, sk)
}

fn rnext_client(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let sk = client_conn(p)?;
    let st = &race.state;
    let mut rd = Reader::default();
    let (mut x, mut y) = (P, Q);
    set_current(&sk, x)?;
    set_rnext(&sk, x)?;
    st.streams.ping(p, &sk, &mut rd, 1)?;
    wait_keys(p, &sk, x, x, "before the first iteration")?;
    p.sync()?;
    let before = Counters::of(&sk)?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    while pair.run_b() {
        if !pair.start_b() {
            break;
        }
        let mut res = sk
            .set_ao_rnext_key(y)
            .map_err(|e| format!("set_rnext {y}: {e}"));
        for _ in 0..BURST {
            res = res.and_then(|()| st.streams.c2s.write_now(&sk, CHUNK));
        }
        if !pair.end_b() {
            break;
        }
        res.map_err(|e| failure!("client: {e}"))?;
        st.streams.ping(p, &sk, &mut rd, 1)?;
        wait_keys(p, &sk, y, y, "after the iteration")?;
        p.sync()?;
        (x, y) = (y, x);
    }
    guard.disarm();
    let _ = x;
    let after = Counters::of(&sk)?;
    unchanged(
        p,
        &before,
        &after,
        &[Moved::Bad, Moved::KeyNotFound, Moved::AoRequired],
    )?;
    p.sync()?;
    abort_close(sk);
    Ok(())
}

fn repair_server(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let sk = server_conn(p)?;
    let st = &race.state;
    let mut rd = Reader::default();
    st.streams.ping(p, &sk, &mut rd, 1)?;
    p.sync()?;
    let before = Counters::of(&sk)?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    while race.run_a() {
        tcpao_sys::repair::set_repair(&sk, RepairMode::On).or_fail("TCP_REPAIR on failed")?;
        let values = sk.ao_repair().or_fail("getsockopt(TCP_AO_REPAIR) failed")?;
        if !pair.start_a() {
            break;
        }
        let res = sk.set_ao_repair(&values);
        if pair.end_a().is_none() {
            break;
        }
        res.map_err(|e| failure!("setsockopt(TCP_AO_REPAIR) failed: {e}"))?;
        let back = sk.ao_repair().or_fail("getsockopt(TCP_AO_REPAIR) failed")?;
        tcpao_sys::repair::set_repair(&sk, RepairMode::OffNoWindowProbe)
            .or_fail("TCP_REPAIR off failed")?;
        if back != values {
            return Err(failure!(
                "TCP_AO_REPAIR reads back {back:?} after writing {values:?}"
            ));
        }
        st.streams.ping(p, &sk, &mut rd, 1)?;
    }
    guard.disarm();
    let after = Counters::of(&sk)?;
    unchanged(
        p,
        &before,
        &after,
        &[Moved::Bad, Moved::KeyNotFound, Moved::AoRequired],
    )?;
    p.sync()?;
    close_after_reset(p, sk)
}

fn repair_client(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let sk = client_conn(p)?;
    let st = &race.state;
    let mut rd = Reader::default();
    st.streams.ping(p, &sk, &mut rd, 1)?;
    p.sync()?;
    let before = Counters::of(&sk)?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    while pair.run_b() {
        if !pair.start_b() {
            break;
        }
        let mut res = Ok(());
        for _ in 0..BURST {
            res = res.and_then(|()| st.streams.c2s.write_now(&sk, CHUNK));
        }
        if !pair.end_b() {
            break;
        }
        res.map_err(|e| failure!("client burst: {e}"))?;
        st.streams.ping(p, &sk, &mut rd, 1)?;
    }
    guard.disarm();
    let after = Counters::of(&sk)?;
    unchanged(
        p,
        &before,
        &after,
        &[Moved::Bad, Moved::KeyNotFound, Moved::AoRequired],
    )?;
    p.sync()?;
    abort_close(sk);
    Ok(())
}

fn keys_of(sk: &Socket) -> PeerResult<Vec<AoKeyInfo>> {
    sk.ao_keys(&KeyFilter::All)
        .map_err(|e| failure!("getsockopt(TCP_AO_GET_KEYS) failed: {e}"))
}

/// Check one `TCP_AO_GET_KEYS` listing of `get-keys-vs-delete`; returns P's `pkt_good`.
fn check_listing(keys: &[AoKeyInfo], last_good: u64) -> Result<u64, String> {
    let mut ids: Vec<u8> = keys.iter().map(|k| k.selector.send_id).collect();
    ids.sort_unstable();
    if ids != [P, Q] && ids != [P, Q, R] {
        return Err(format!("TCP_AO_GET_KEYS listed keys {ids:?}"));
    }
    let cur: Vec<u8> = keys
        .iter()
        .filter(|k| k.is_current)
        .map(|k| k.selector.send_id)
        .collect();
    let rn: Vec<u8> = keys
        .iter()
        .filter(|k| k.is_rnext)
        .map(|k| k.selector.recv_id)
        .collect();
    if cur != [P] || rn != [P] {
        return Err(format!(
            "TCP_AO_GET_KEYS flags keys {cur:?} as current and {rn:?} as rnext, want [{P}] and [{P}]"
        ));
    }
    if let Some(r) = keys.iter().find(|k| k.selector.send_id == R) {
        if r.good != 0 || r.bad != 0 {
            return Err(format!(
                "unused key {R} has counters good {} bad {}",
                r.good, r.bad
            ));
        }
    }
    let good = keys
        .iter()
        .find(|k| k.selector.send_id == P)
        .map_or(0, |k| k.good);
    if good < last_good {
        return Err(format!(
            "key {P} pkt_good went back from {last_good} to {good}"
        ));
    }
    Ok(good)
}

fn get_keys_server(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let sk = server_conn(p)?;
    let st = &race.state;
    set_current(&sk, P)?;
    set_rnext(&sk, P)?;
    p.sync()?;
    let pair = &race.pair;
    let conn = sk;
    let sk = &conn;
    let reader_stop = AtomicBool::new(false);
    let mut rd = Reader::default();
    let result = std::thread::scope(|s| {
        // Not an actor: keeps reading the client's stream so that it keeps flowing.
        let reader = s.spawn(|| -> Result<Reader, String> {
            let mut rd = Reader::default();
            while !reader_stop.load(Ordering::SeqCst) {
                rd.read_available(sk)?;
                let mut fds = [nix::poll::PollFd::new(
                    std::os::fd::AsFd::as_fd(sk),
                    nix::poll::PollFlags::POLLIN,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10u16));
            }
            Ok(rd)
        });
        // Actor B: list the keys.
        let lister = s.spawn(move || -> PeerResult {
            let guard = pair.abort_on_drop();
            let mut good = 0;
            while pair.run_b() {
                if !pair.start_b() {
                    break;
                }
                let res = sk.ao_keys(&KeyFilter::All);
                if !pair.end_b() {
                    break;
                }
                let keys = res.map_err(|e| failure!("getsockopt(TCP_AO_GET_KEYS) failed: {e}"))?;
                good = check_listing(&keys, good).map_err(|e| failure!("{e}"))?;
                race.tally.add(format!("listed {} keys", keys.len()));
            }
            guard.disarm();
            Ok(())
        });
        // Actor A: delete or re-add R.
        let deleter = || -> PeerResult {
            let guard = pair.abort_on_drop();
            let kr = key(p, R);
            let ao = kr.to_ao_key()?;
            let sel = ao.selector();
            sockets::add_key(p, sk, &kr)?;
            let mut present = true;
            while race.run_a() {
                if !pair.start_a() {
                    break;
                }
                let res = if present {
                    sk.del_ao_key(&sel)
                } else {
                    sk.add_ao_key(&ao)
                };
                if pair.end_a().is_none() {
                    break;
                }
                res.map_err(|e| {
                    failure!(
                        "{} key {R} failed: {e}",
                        if present { "deleting" } else { "re-adding" }
                    )
                })?;
                present = !present;
            }
            guard.disarm();
            Ok(())
        };
        let a = deleter();
        let b = lister
            .join()
            .unwrap_or_else(|_| Err(failure!("the lister thread panicked")));
        reader_stop.store(true, Ordering::SeqCst);
        let r = reader
            .join()
            .unwrap_or_else(|_| Err("the reader thread panicked".into()))
            .map_err(|e| failure!("server: {e}"));
        let r = r.map(|r| rd = r);
        a.and(b).and(r)
    });
    st.done.store(true, Ordering::SeqCst);
    p.signal();
    result?;
    // Read the rest of the client's stream; its total is final once it saw `done`.
    p.sync()?;
    rd.read_until(p, sk, st.streams.c2s.sent())?;
    let c = Counters::of(sk)?;
    let bad = c
        .sock
        .map_or(0, |s| s.bad + s.key_not_found + s.ao_required);
    if bad != 0 {
        return Err(failure!("the server's socket dropped segments: {c}"));
    }
    p.sync()?;
    close_after_reset(p, conn)
}

fn get_keys_client(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let sk = client_conn(p)?;
    let st = &race.state;
    p.sync()?;
    // Stream while the server's actors race, at most a few segments in flight.
    while !st.done.load(Ordering::SeqCst) && p.peer_signals() == 0 {
        let unacked = tcpao_sys::repair::tcp_info(&sk)
            .or_fail("TCP_INFO failed")?
            .unacked;
        let wrote = if unacked < 4 {
            st.streams
                .c2s
                .write_some(&sk, CHUNK)
                .map_err(|e| failure!("client: {e}"))?
        } else {
            0
        };
        if wrote == 0 {
            sockets::wait_fd(
                p,
                &sk,
                nix::poll::PollFlags::POLLIN,
                p.deadline_in(std::time::Duration::from_millis(1)),
                || st.done.load(Ordering::SeqCst),
            )?;
        }
    }
    p.sync()?;
    p.sync()?;
    abort_close(sk);
    Ok(())
}

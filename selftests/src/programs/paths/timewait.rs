// SPDX-License-Identifier: MIT OR Apache-2.0
//! What a TIME-WAIT socket of a TCP-AO connection does with what it is sent.
//!
//! The server closes first and ends in TIME-WAIT. Its namespace sets
//! `net.ipv4.tcp_invalid_ratelimit = 0` (every out-of-window segment gets its ACK) and
//! `net.ipv4.tcp_rfc1337 = 1` (an unsigned RST from the client's kernel, which owns no socket
//! any more, does not end the TIME-WAIT) and `net.ipv4.tcp_sack = 0` (so timestamps are
//! negotiated and TIME-WAIT's ACKs carry them before the TCP-AO option). The client then
//! sends, from a raw socket:
//!
//! - an ICMP port unreachable: the TIME-WAIT socket ignores it and counts it in
//!   `TCPAODroppedIcmps` (`tcp_ao_ignore_icmp()`, `TCP_TIME_WAIT`);
//! - out-of-window ACKs, which TIME-WAIT acknowledges without verifying them
//!   (`tcp_v{4,6}_timewait_ack()`: "FIXME: the segment to-be-acked is not verified yet"), so
//!   no TCP-AO counter moves:
//!   - with two TCP-AO options: not answered;
//!   - unsigned: answered with an **unsigned** ACK;
//!   - signed, asking for RNextKeyID 77 (no such key): answered with an **unsigned** ACK;
//!   - signed with RNextKeyID 100: answered with an ACK signed with key 100 (KeyID 100,
//!     RNextKeyID 100), which the capture cross-check verifies.
//!
//! `fin-wait2-reset-needs-key`: the server closes three connections the client keeps open, so
//! each ends as a TIME-WAIT socket in FIN-WAIT-2. New data there is answered with a RST
//! (`TCP_TW_RST`) and ends the TIME-WAIT socket; `tcp_ao_prepare_reset()` signs it with the
//! key whose SendID is the data's RNextKeyID. Data signed with RNextKeyID 100 gets the signed
//! RST; asking for RNextKeyID 77 (no such key) gets none, and neither does TCP-AO-signed data to
//! the TIME-WAIT socket of a connection without TCP-AO: both TIME-WAIT sockets still end
//! (`/proc/net/tcp`), only one RST is counted (`Tcp: OutRsts`).
//!
//! `fin-wait2-md5-reset`: the same path for TCP-MD5, where the key of the RST is found another
//! way. For a socket that is not a full socket (TIME-WAIT) `tcp_v{4,6}_send_reset()` ignores
//! the TIME-WAIT socket's own copy of the key and looks for a *listener on the peer's port*
//! (the "active side is lost" branch, made for BGP, where both ends listen on 179), verifies
//! the segment with that listener's key and signs the RST with it; with no such listener it
//! sends nothing. The server closes two TCP-MD5 connections (both TIME-WAIT sockets in
//! FIN-WAIT-2), then listens, with the client's key, on the client port of the second one;
//! the client writes on both. The first TIME-WAIT socket ends without a RST, and the client's
//! connection stays in CLOSE-WAIT, its data unanswered; the second gets a RST signed with the
//! listener's key (the cross-check verifies it), and the client sees the reset (`SO_ERROR`
//! `EPIPE`). Every RST the server counts (`Tcp: OutRsts`) is in the capture, on the second
//! connection (more than one only when a retransmission of the data got there after the first,
//! which the listener answers too), and no TCP-MD5 counter moves on either side. (A BGP daemon that does
//! not listen on the peer's port, the suite's speaker, leaves the peer in LAST-ACK this way:
//! `interop/*/bird-md5-range`.)

use socket2::Socket;
use tcpao_refimpl::wire::TcpFlags;

use super::{PROGRAM, Seg, ao_ids, describe, expect_netns, key, since};
use crate::capture::Frame;
use crate::counters::{Counters, Grew, Mib};
use crate::failure;
use crate::netns;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::programs::extras::{self, segment};
use crate::programs::icmps_discard::icmp_error;
use crate::programs::inject::{self, DATA, read_exact, send_data};
use crate::registry::Test;
use crate::sockets;
use crate::topology::Family;
use crate::topology::Side;

pub(super) fn tests() -> Vec<Test> {
    let mut v = PairTest::new(PROGRAM, "time-wait-replies")
        .ao()
        .build(server, client);
    v.extend(
        PairTest::new(PROGRAM, "fin-wait2-reset-needs-key")
            .ao()
            .build(fw2_server, fw2_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "fin-wait2-md5-reset")
            .requires(&[crate::probe::Feature::TcpMd5])
            .build(md5_server, md5_client),
    );
    v
}

/// The TCP-MD5 password of `fin-wait2-md5-reset`.
const MD5_PASSWORD: &[u8] = b"tcpao-fin-wait2-md5";

/// The local and remote port of a connected socket.
fn ports(sk: &Socket) -> PeerResult<(u16, u16)> {
    let addr = |a: std::io::Result<socket2::SockAddr>, what: &str| {
        a.or_fail(&format!("{what} failed"))?
            .as_socket()
            .map(|a| a.port())
            .ok_or_else(|| failure!("{what} returned no IP address"))
    };
    Ok((
        addr(sk.local_addr(), "getsockname()")?,
        addr(sk.peer_addr(), "getpeername()")?,
    ))
}

/// Close `sk` so that it becomes a TIME-WAIT socket in FIN-WAIT-2 for certain: `shutdown(SHUT_WR)`,
/// wait until the peer acknowledged our FIN (`FIN_WAIT2`, still a full socket of ours), then
/// `close()`, which turns a FIN-WAIT-2 socket into a TIME-WAIT socket at once (`tcp_close()`).
/// A plain `close()` leaves it to timing: the peer's ACK of the FIN can arrive while `close()`
/// still holds the socket lock (over a veth it is sent and received inside our own transmit),
/// and processed from the backlog with the socket owned, `tcp_rcv_state_process()` keeps a
/// full orphan in FIN-WAIT-2 instead (keepalive timer, 60 s). That socket verifies what it gets
/// and drops what it cannot verify, where a TIME-WAIT socket answers with a RST.
fn close_to_time_wait(p: &Peer<'_>, sk: Socket) -> PeerResult {
    sk.shutdown(std::net::Shutdown::Write)
        .or_fail("shutdown(SHUT_WR) failed")?;
    let acked = p.wait_for(p.deadline(), || {
        let st = tcpao_sys::repair::tcp_info(&sk)
            .or_fail("TCP_INFO failed")?
            .state;
        Ok((st == tcpao_sys::uapi::TCP_FIN_WAIT2).then_some(()))
    })?;
    if acked.is_none() {
        return Err(failure!(
            "our FIN was not acknowledged within {:?}",
            p.timeout()
        ));
    }
    drop(sk);
    Ok(())
}

/// Wait until every connection of `peers` (local, remote port) is listed in FIN-WAIT-2.
fn wait_fin_wait2(p: &Peer<'_>, peers: &[(u16, u16)]) -> PeerResult {
    let ready = p.wait_for(p.deadline(), || {
        let listed = sockets::ProcTcp::all();
        Ok(peers
            .iter()
            .all(|(l, r)| {
                listed.iter().any(|s| {
                    (s.local_port, s.remote_port) == (*l, *r)
                        && s.state == tcpao_sys::uapi::TCP_FIN_WAIT2
                })
            })
            .then_some(()))
    })?;
    ready.ok_or_else(|| {
        failure!(
            "not every closed connection reached FIN-WAIT-2 within {:?}: {}",
            p.timeout(),
            describe_left(peers)
        )
    })
}

/// Wait until no connection of `peers` is listed any more.
fn wait_gone(p: &Peer<'_>, peers: &[(u16, u16)], what: &str) -> PeerResult {
    let gone = p.wait_for(p.deadline(), || {
        for (l, r) in peers {
            if socket_present(*l, *r)? {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })?;
    gone.ok_or_else(|| {
        failure!(
            "{what} within {:?}; still listed: {}",
            p.timeout(),
            describe_left(peers)
        )
    })
}

fn md5_server(p: &Peer<'_>) -> PeerResult {
    let prefix = p.family().host_prefix();
    let lsk = sockets::listen(p, p.port(), 2)?;
    sockets::add_md5_key(p, &lsk, p.remote_addr(), prefix, MD5_PASSWORD)?;
    p.sync()?; // 1: listening
    let mut peers = Vec::new();
    for _ in 0..2 {
        let sk = extras::accept_one(p, &lsk)?;
        peers.push(ports(&sk)?);
        // The client does not close: FIN-WAIT-2, as TIME-WAIT.
        close_to_time_wait(p, sk)?;
    }
    // Nothing listens on the server's port any more (a late segment would meet it).
    drop(lsk);
    // The only key a TIME-WAIT socket's RST can have: a listener's on the peer's port.
    let helper = sockets::listen(p, peers[1].1, 1)?;
    sockets::add_md5_key(p, &helper, p.remote_addr(), prefix, MD5_PASSWORD)?;
    wait_fin_wait2(p, &peers)?;
    let before = Counters::netns()?;
    let rsts = out_rsts()?;
    let m = super::mark(p)?;
    p.sync()?; // 2: closed, both TIME-WAIT in FIN-WAIT-2
    p.sync()?; // 3: the client wrote on both
    wait_gone(
        p,
        &peers,
        "the TIME-WAIT sockets did not end after new data",
    )?;
    // Every RST this namespace sent is the second connection's: the TIME-WAIT socket's, and
    // one more for each retransmission of the client's data that got there after it (the
    // listener answers those too, with no socket on the 4-tuple). None for the first.
    let d = out_rsts()? - rsts;
    let sent = rsts_sent_since(p, m, d)?;
    let second = |f: &Frame| {
        segment(f).is_some_and(|s| {
            let t = s.tcp_packet();
            (t.src_port(), t.dst_port()) == peers[1]
        })
    };
    if d == 0 || sent.len() as u64 != d || !sent.iter().all(second) {
        return Err(failure!(
            "Tcp OutRsts grew by {d} for two TCP-MD5 FIN-WAIT-2 TIME-WAIT sockets; expected at least 1, all to the second connection (ports {:?}), the only one with a listener on the client's port; the capture has: {}",
            peers[1],
            if sent.is_empty() {
                "none".to_owned()
            } else {
                sent.iter().map(describe).collect::<Vec<_>>().join("; ")
            }
        ));
    }
    Counters::netns()?.assert_grew_exactly(&before, Grew::empty())?;
    p.sync()?; // 4: the TIME-WAIT sockets ended
    drop(helper);
    p.sync() // 5: the client checked
}

fn md5_client(p: &Peer<'_>) -> PeerResult {
    let mut socks = Vec::new();
    p.sync()?; // 1
    for _ in 0..2 {
        let sk = sockets::client_socket(p)?;
        sockets::add_md5_key(
            p,
            &sk,
            p.remote_addr(),
            p.family().host_prefix(),
            MD5_PASSWORD,
        )?;
        sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
        socks.push(sk);
    }
    for sk in &socks {
        wait_eof(p, sk)?;
    }
    let conns = [ports(&socks[0])?, ports(&socks[1])?];
    p.sync()?; // 2: the server's TIME-WAIT sockets are in FIN-WAIT-2
    let before = Counters::netns()?;
    let m = super::mark(p)?;
    for sk in &socks {
        sockets::write_all(p, sk, b"after FIN", p.deadline())?;
    }
    p.sync()?; // 3: written
    // The second connection is reset. In CLOSE-WAIT `tcp_reset()` sets EPIPE, and a read
    // after the FIN returns 0 whatever the error: ask `SO_ERROR`.
    let reset = p.wait_for(p.deadline(), || {
        match socks[1].take_error().or_fail("getsockopt(SO_ERROR)")? {
            None => Ok(None),
            Some(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => Ok(Some(())),
            Some(e) => Err(failure!(
                "the second connection failed with {e}, expected a reset (EPIPE)"
            )),
        }
    })?;
    if reset.is_none() {
        let seen: Vec<String> = super::capture_frames(p)?
            .iter()
            .skip(m)
            .map(|f| format!("{}: {}", f.from.name(), describe(f)))
            .collect();
        return Err(failure!(
            "the connection whose client port has a TCP-MD5 listener on the server was not reset within {:?}; since the data: {}; counters: {}",
            p.timeout(),
            seen.join("; "),
            Counters::netns()?
                .assert_grew_exactly(&before, Grew::empty())
                .err()
                .map_or_else(|| "none moved".to_owned(), |e| e.to_string())
        ));
    }
    p.sync()?; // 4: the server's TIME-WAIT sockets ended
    for (i, (cport, sport)) in conns.iter().enumerate() {
        let rsts: Vec<Frame> = since(p, m, Side::Server, *sport, *cport)?
            .into_iter()
            .filter(|f| segment(f).is_some_and(|s| s.tcp_packet().rst()))
            .collect();
        // One RST for the second, more only for retransmissions (the server counts them).
        if (i == 1) == rsts.is_empty() {
            return Err(failure!(
                "the FIN-WAIT-2 TIME-WAIT socket of connection {} ({}) answered new data with {} RSTs, expected {}: {}",
                i + 1,
                [
                    "no listener on the client's port",
                    "a TCP-MD5 listener on the client's port"
                ][i],
                rsts.len(),
                if i == 1 { "one or more" } else { "none" },
                rsts.iter().map(describe).collect::<Vec<_>>().join("; ")
            ));
        }
        for r in &rsts {
            let signed = segment(r)
                .and_then(|s| s.tcp_packet().auth_options().ok())
                .is_some_and(|a| a.md5.is_some());
            if !signed {
                return Err(failure!(
                    "the TIME-WAIT socket's RST carries no TCP-MD5 option: {}",
                    describe(r)
                ));
            }
        }
    }
    // The first connection: no RST came, its data stays unanswered.
    let state = sockets::ProcTcp::all()
        .into_iter()
        .find(|s| (s.local_port, s.remote_port) == conns[0])
        .map(|s| s.state_name());
    if let Some(e) = socks[0].take_error().or_fail("getsockopt(SO_ERROR)")? {
        return Err(failure!(
            "the client's first connection failed with {e}, though no RST was sent to it"
        ));
    }
    if state != Some("CLOSE_WAIT") {
        return Err(failure!(
            "the client's first connection is {}, expected CLOSE_WAIT (no RST reached it)",
            state.unwrap_or("gone")
        ));
    }
    Counters::netns()?.assert_grew_exactly(&before, Grew::empty())?;
    // Abort it (its RST meets no socket and no listener: nothing answers).
    let _ = socks[0].set_linger(Some(std::time::Duration::ZERO));
    drop(socks);
    p.sync() // 5
}

fn server(p: &Peer<'_>) -> PeerResult {
    for (k, v) in [
        ("net/ipv4/tcp_invalid_ratelimit", "0"),
        ("net/ipv4/tcp_rfc1337", "1"),
        // No SACK: the connection keeps timestamps, TIME-WAIT puts them in its ACKs.
        ("net/ipv4/tcp_sack", "0"),
    ] {
        netns::sysctl_write(k, v).or_fail(&format!("setting {k} = {v}"))?;
    }
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p, 100, 100))?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    drop(lsk);
    let mut buf = [0u8; DATA];
    read_exact(p, &sk, &mut buf)?;
    drop(sk); // active close: FIN-WAIT, then TIME-WAIT once the client's FIN is in
    p.sync()?; // closed
    // The client's FIN may still meet a full FIN-WAIT-2 socket, which verifies and counts it
    // (`TCPAOGood`; TIME-WAIT counts nothing): the counters are read from here on only.
    p.sync()?; // the client saw our ACK of its FIN
    expect_netns(
        p,
        &[("TCPAODroppedIcmps", 1)],
        Grew::NS_DROPPED_ICMP,
        "an ICMP port unreachable for the TIME-WAIT socket",
    )?;
    let before = Counters::netns()?;
    p.sync()?; // the client sends the ACKs
    p.sync()?; // done
    Counters::netns()?
        .assert_grew_exactly(&before, Grew::empty())
        .map_err(|e| failure!("segments the TIME-WAIT socket acknowledged moved counters: {e}"))?;
    p.sync()
}

/// Wait until the server has sent `n` segments of the flow since `mark`; return the new ones.
fn answers(p: &Peer<'_>, mark: usize, ports: (u16, u16), n: usize) -> PeerResult<Vec<Frame>> {
    super::wait_since(
        p,
        mark,
        Side::Server,
        ports,
        n,
        "the TIME-WAIT socket's ACKs",
    )
}

fn client(p: &Peer<'_>) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &key(p, 100, 100))?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    send_data(p, &sk)?;
    let flow = inject::learn_flow(p)?;
    let (me, srv) = (flow.conn.local, flow.conn.remote);
    p.sync()?; // the server closed
    // Read the server's FIN (EOF), then close: our FIN puts the server in TIME-WAIT.
    wait_eof(p, &sk)?;
    drop(sk);
    // The server's ACK of our FIN: from then on it is in TIME-WAIT.
    let frames = p
        .wait_for(p.deadline(), || {
            let f = extras::flow_frames(p, srv.port())?;
            let fins: Vec<(Side, u32)> = f
                .iter()
                .filter_map(|fr| {
                    segment(fr).and_then(|s| {
                        let t = s.tcp_packet();
                        t.fin().then(|| (fr.from, t.seq_number()))
                    })
                })
                .collect();
            let client_fin = fins.iter().find(|(s, _)| *s == Side::Client).map(|x| x.1);
            let server_fin = fins.iter().find(|(s, _)| *s == Side::Server).map(|x| x.1);
            let done = client_fin.is_some_and(|cf| {
                f.iter().any(|fr| {
                    fr.from == Side::Server
                        && segment(fr).is_some_and(|s| {
                            let t = s.tcp_packet();
                            !t.fin() && t.ack() && t.ack_number() == cf.wrapping_add(1)
                        })
                })
            });
            Ok(done.then_some((client_fin, server_fin)))
        })?
        .ok_or_else(|| failure!("the server did not acknowledge our FIN"))?;
    let (Some(client_fin), Some(server_fin)) = frames else {
        return Err(failure!("the capture lacks a FIN"));
    };
    p.sync()?; // the server's counters can be read: our FIN is in
    // TIME-WAIT's SND.NXT and RCV.NXT.
    let (tw_snd, tw_rcv) = (server_fin.wrapping_add(1), client_fin.wrapping_add(1));
    let (my_seq, my_ack) = (tw_rcv, tw_snd);
    // 1. ICMP port unreachable quoting a segment of the TIME-WAIT socket.
    let (unreach, port_unreach) = match p.family() {
        Family::Ipv4 => (3, 3),
        Family::Ipv6 => (1, 4),
    };
    let icmp = icmp_error(me, srv, unreach, port_unreach, tw_snd, 0)?;
    let raw: Socket = super::raw_socket(srv.ip())?;
    p.sync()?;
    inject::inject(p, &raw, &icmp, false)?;
    p.sync()?;
    // 2. Out-of-window ACKs (an old SEQ): TIME-WAIT acknowledges each.
    let k = key(p, 100, 100);
    let isns = (flow.conn.local_isn, flow.conn.remote_isn);
    let old = my_seq.wrapping_sub(1000);
    let seg = Seg::new(me, srv, old, my_ack, TcpFlags::ACK);
    let mut two = Vec::new();
    for _ in 0..2 {
        two.extend_from_slice(&[29u8, 16, 100, 100]);
        two.extend_from_slice(&[0u8; 12]);
    }
    let twice = seg.options(&two).unsigned()?;
    let unsigned = seg.unsigned()?;
    let unknown = seg.signed(&k, (100, 77), isns, 0)?;
    let good = seg.signed(&k, (100, 100), isns, 0)?;
    p.sync()?;
    let m = super::mark(p)?;
    let ports = (srv.port(), me.port());
    inject::inject(p, &raw, &twice, true)?;
    inject::inject(p, &raw, &unsigned, false)?;
    let a = answers(p, m, ports, 1)?;
    inject::inject(p, &raw, &unknown, false)?;
    let b = answers(p, m, ports, 2)?;
    inject::inject(p, &raw, &good, false)?;
    let c = answers(p, m, ports, 3)?;
    p.sync()?;
    let all = since(p, m, Side::Server, ports.0, ports.1)?;
    let expect_ack = |f: &Frame, signed: bool, what: &str| -> PeerResult {
        let s = segment(f).ok_or_else(|| failure!("not TCP"))?;
        let t = s.tcp_packet();
        let ok = t.ack()
            && !t.rst()
            && !t.syn()
            && !t.fin()
            && t.seq_number() == tw_snd
            && t.ack_number() == tw_rcv
            && ao_ids(&s) == signed.then_some((100, 100, 12));
        if ok {
            Ok(())
        } else {
            Err(failure!(
                "TIME-WAIT answered {what} with {}, expected {} ACK SEQ {tw_snd} ACK {tw_rcv}",
                describe(f),
                if signed {
                    "an ACK signed with key 100 (KeyID 100 RNextKeyID 100):"
                } else {
                    "an unsigned"
                }
            ))
        }
    };
    if all.len() != 3 || a.len() != 1 || b.len() != 2 || c.len() != 3 {
        return Err(failure!(
            "TIME-WAIT sent {} segments to four ACKs (two TCP-AO options, unsigned, unknown RNextKeyID, good), expected 3: {}",
            all.len(),
            all.iter().map(describe).collect::<Vec<_>>().join("; ")
        ));
    }
    expect_ack(
        &all[0],
        false,
        "the unsigned ACK (the one with two TCP-AO options got nothing)",
    )?;
    expect_ack(&all[1], false, "the ACK asking for RNextKeyID 77")?;
    expect_ack(&all[2], true, "the ACK signed with key 100")?;
    p.diag("TIME-WAIT: no answer to two TCP-AO options; unsigned ACKs to an unsigned segment and to an unknown RNextKeyID; a signed ACK otherwise");
    p.sync()
}

/// Wait for EOF on `sk`.
fn wait_eof(p: &Peer<'_>, sk: &Socket) -> PeerResult {
    use std::io::Read;
    let mut b = [0u8; 16];
    loop {
        match (&*sk).read(&mut b) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(failure!("the server sent data instead of its FIN")),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, nix::poll::PollFlags::POLLIN, p.deadline(), || false)? {
                    return Err(failure!("the server's FIN did not come"));
                }
            }
            Err(e) => return Err(failure!("read() failed: {e}")),
        }
    }
}

/// Whether this namespace has a TCP socket from local port `lport` to remote port `rport`
/// (any state; TIME-WAIT ones included), from `/proc/net/tcp{,6}`.
fn socket_present(lport: u16, rport: u16) -> PeerResult<bool> {
    Ok(sockets::ProcTcp::all()
        .iter()
        .any(|s| s.local_port == lport && s.remote_port == rport))
}

/// The sockets of `peers` (local, remote port) still listed, with their states.
fn describe_left(peers: &[(u16, u16)]) -> String {
    sockets::ProcTcp::describe(|s| peers.contains(&(s.local_port, s.remote_port)))
}

/// `Tcp: OutRsts` of this namespace.
fn out_rsts() -> PeerResult<u64> {
    Mib::Tcp.read("OutRsts")
}

/// The RSTs this side sent since capture `mark`, once there are `counted` of them (the
/// `OutRsts` the kernel counted) or at the deadline (fewer, then).
fn rsts_sent_since(p: &Peer<'_>, mark: usize, counted: u64) -> PeerResult<Vec<Frame>> {
    let mut sent = Vec::new();
    p.wait_for(p.deadline(), || {
        sent = super::capture_frames(p)?
            .into_iter()
            .skip(mark)
            .filter(|f| f.from == p.side() && segment(f).is_some_and(|s| s.tcp_packet().rst()))
            .collect();
        Ok((sent.len() as u64 >= counted).then_some(()))
    })?;
    Ok(sent)
}

fn fw2_server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 4)?;
    sockets::add_key(p, &lsk, &key(p, 100, 100))?;
    let plain = sockets::listen(p, p.port() + 1, 1)?;
    p.sync()?;
    let mut peers = Vec::new();
    for l in [&lsk, &lsk, &plain] {
        let sk = extras::accept_one(p, l)?;
        peers.push(ports(&sk)?);
        // The client does not close: FIN-WAIT-2, as TIME-WAIT.
        close_to_time_wait(p, sk)?;
    }
    // No listener for the client's FINs once the TIME-WAIT sockets are gone: it would check
    // them as syncookie ACKs and count them bad.
    drop((lsk, plain));
    // Every one a TIME-WAIT socket in FIN-WAIT-2 ([`close_to_time_wait`]), as listed.
    wait_fin_wait2(p, &peers)?;
    let rsts = out_rsts()?;
    let m = super::mark(p)?;
    p.sync()?; // closed
    p.sync()?; // the client sent the data
    wait_gone(
        p,
        &peers,
        "the TIME-WAIT sockets did not end after new data",
    )?;
    let d = out_rsts()? - rsts;
    // The one RST counted is in the capture; when not, everything since the close is shown.
    let sent = rsts_sent_since(p, m, d)?;
    if d != 1 || sent.len() != 1 {
        return Err(failure!(
            "Tcp OutRsts grew by {d} for three FIN-WAIT-2 TIME-WAIT sockets (ports {peers:?}), expected 1 (only the data asking for key 100 can get a signed RST); the capture has {} RSTs from the server, and since the sockets were closed: {}",
            sent.len(),
            super::capture_frames(p)?
                .iter()
                .skip(m)
                .map(|f| format!("{}: {}", f.from.name(), describe(f)))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    p.sync()?; // the TIME-WAIT sockets ended
    p.sync() // the client checked the capture
}

fn fw2_client(p: &Peer<'_>) -> PeerResult {
    let k = key(p, 100, 100);
    let mut socks = Vec::new();
    p.sync()?;
    for (port, signed) in [(p.port(), true), (p.port(), true), (p.port() + 1, false)] {
        let sk = sockets::client_socket(p)?;
        if signed {
            sockets::add_key(p, &sk, &k)?;
        }
        sockets::connect_ok(p, &sk, p.remote_addr(), port)?;
        let me = sk
            .local_addr()
            .or_fail("getsockname() failed")?
            .as_socket()
            .ok_or_else(|| failure!("getsockname() returned no IP address"))?;
        socks.push((sk, me, port));
    }
    for (sk, _, _) in &socks {
        wait_eof(p, sk)?;
    }
    p.sync()?; // the server closed all three
    // The server's FIN and both ISNs of each flow.
    let mut pkts = Vec::new();
    let mut marks = Vec::new();
    for (i, (_, me, port)) in socks.iter().enumerate() {
        let srv = std::net::SocketAddr::new(p.remote_addr(), *port);
        let frames: Vec<Frame> = extras::flow_frames(p, *port)?
            .into_iter()
            .filter(|f| {
                segment(f).is_some_and(|s| {
                    let t = s.tcp_packet();
                    t.src_port() == me.port() || t.dst_port() == me.port()
                })
            })
            .collect();
        let [Some(srv_isn), Some(cli_isn)] = extras::isns(&frames) else {
            return Err(failure!(
                "no handshake in the capture for port {}",
                me.port()
            ));
        };
        let fin = frames
            .iter()
            .find_map(|f| {
                segment(f).and_then(|s| {
                    let t = s.tcp_packet();
                    (f.from == Side::Server && t.fin()).then(|| t.seq_number())
                })
            })
            .ok_or_else(|| failure!("no FIN from the server for port {}", me.port()))?;
        let rnext = if i == 1 { 100 } else { 77 };
        let data = Seg::new(
            *me,
            srv,
            cli_isn.wrapping_add(1),
            fin.wrapping_add(1),
            TcpFlags::ACK | TcpFlags::PSH,
        )
        .payload(b"after FIN")
        .signed(&k, (100, rnext), (cli_isn, srv_isn), 0)?;
        pkts.push(data);
        marks.push((me.port(), *port, fin.wrapping_add(1)));
    }
    let m = super::mark(p)?;
    for pkt in &pkts {
        super::send(p, pkt, false)?;
    }
    p.sync()?; // data sent
    p.sync()?; // the TIME-WAIT sockets ended
    for (i, (cport, sport, seq)) in marks.iter().enumerate() {
        let rsts: Vec<Frame> = since(p, m, Side::Server, *sport, *cport)?
            .into_iter()
            .filter(|f| segment(f).is_some_and(|s| s.tcp_packet().rst()))
            .collect();
        let want = usize::from(i == 1);
        if rsts.len() != want {
            return Err(failure!(
                "FIN-WAIT-2 TIME-WAIT socket {} answered new data {} with {} RSTs, expected {want}: {}",
                i + 1,
                [
                    "asking for RNextKeyID 77",
                    "asking for RNextKeyID 100",
                    "signed, on a connection without TCP-AO"
                ][i],
                rsts.len(),
                rsts.iter().map(describe).collect::<Vec<_>>().join("; ")
            ));
        }
        if let Some(r) = rsts.first() {
            let s = segment(r).ok_or_else(|| failure!("not TCP"))?;
            if s.tcp_packet().seq_number() != *seq || ao_ids(&s) != Some((100, 100, 12)) {
                return Err(failure!(
                    "the RST of the TIME-WAIT socket is {}, expected SEQ {seq} KeyID 100 RNextKeyID 100",
                    describe(r)
                ));
            }
        }
    }
    p.sync()
}

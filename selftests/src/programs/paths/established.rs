// SPDX-License-Identifier: MIT OR Apache-2.0
//! Segments and ICMP errors into an established TCP-AO connection that the other programs do
//! not send.
//!
//! - `syn-into-established`: a SYN signed with the SYN traffic key of its own SEQ (ISNs
//!   (SEQ, 0), `tcp_inbound_ao_hash()` "delayed retransmitted SYN") verifies, and the
//!   connection answers with a challenge ACK (RFC 5961 §4), signed as usual.
//! - `invalid-auth-options`: two TCP-AO options, TCP-AO then TCP-MD5, two TCP-MD5 options,
//!   TCP-MD5 then TCP-AO, a TCP-AO option without MAC, a TCP-MD5 option of the wrong length,
//!   an option longer than the option space or shorter than 2: each is dropped before any MAC
//!   is checked (`tcp_inbound_hash()`: `SKB_DROP_REASON_TCP_AUTH_HDR`), no counter moves.
//! - `icmp-not-in-rfc5925-list`: ICMP errors other than those RFC 5925 §7.8 lists (network
//!   and host unreachable, time exceeded; ICMPv6 no route, address unreachable, time
//!   exceeded) reach the connection and are not counted as dropped; nor is a listed one aimed
//!   at a connection without TCP-AO.

use std::net::SocketAddr;

use socket2::Socket;
use tcpao_refimpl::wire::TcpFlags;

use super::{PROGRAM, Seg, expect, key, proc_counter, sa};
use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::programs::extras::{self, wait_counters};
use crate::programs::icmps_discard::icmp_error;
use crate::programs::inject::{self, DATA, learn_flow, read_exact, send_data};
use crate::registry::Test;
use crate::sockets;
use crate::topology::Family;

pub(super) fn tests() -> Vec<Test> {
    let mut v = PairTest::new(PROGRAM, "syn-into-established")
        .ao()
        .build(syn_server, syn_client);
    v.extend(
        PairTest::new(PROGRAM, "invalid-auth-options")
            .ao()
            .build(options_server, options_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "icmp-not-in-rfc5925-list")
            .ao()
            .build(icmp_server, icmp_client),
    );
    v
}

/// Server half of an established connection with key 100:100: accept, read the client's
/// [`DATA`] bytes, return the socket.
fn accept_with_data(p: &Peer<'_>, lsk: &Socket) -> PeerResult<Socket> {
    let sk = extras::accept_one(p, lsk)?;
    let mut buf = [0u8; DATA];
    read_exact(p, &sk, &mut buf)?;
    Ok(sk)
}

/// Client half: connect with key 100:100, send [`DATA`] bytes.
fn connect_with_data(p: &Peer<'_>) -> PeerResult<Socket> {
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &key(p, 100, 100))?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    send_data(p, &sk)?;
    Ok(sk)
}

fn listen_with_key(p: &Peer<'_>) -> PeerResult<Socket> {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p, 100, 100))?;
    Ok(lsk)
}

fn syn_server(p: &Peer<'_>) -> PeerResult {
    let lsk = listen_with_key(p)?;
    p.sync()?;
    let sk = accept_with_data(p, &lsk)?;
    let challenges = proc_counter("TcpExt:", "TCPSYNChallenge")?;
    expect(p, &sk, &[("TCPAOGood", 1)], Grew::GOOD, "a signed SYN")?;
    let d = proc_counter("TcpExt:", "TCPSYNChallenge")? - challenges;
    if d != 1 {
        return Err(failure!(
            "TCPSYNChallenge grew by {d} after the SYN, expected 1"
        ));
    }
    p.sync()
}

fn syn_client(p: &Peer<'_>) -> PeerResult {
    let sk = connect_with_data(p)?;
    let flow = learn_flow(p)?;
    let k = key(p, 100, 100);
    let (me, srv) = (flow.conn.local, flow.conn.remote);
    // A SYN at RCV.NXT: keyed like any SYN, from its own SEQ.
    let syn =
        Seg::new(me, srv, flow.seq, 0, TcpFlags::SYN).signed(&k, (100, 100), (flow.seq, 0), 0)?;
    p.sync()?; // the server read our data (its window update is out) and took its snapshot
    let before = Counters::of(&sk)?;
    // Crafted: a SYN on the connection's 4-tuple must not look like a new connection to the
    // cross-check.
    super::send(p, &syn, true)?;
    p.sync()?;
    // The challenge ACK reaches our socket and verifies.
    let after = wait_counters(p, &sk, p.deadline(), "the challenge ACK", |c| {
        c.grown(&before).contains(Grew::GOOD)
    })?;
    after
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("client counters after the challenge ACK: {e}"))?;
    p.sync()
}

fn options_server(p: &Peer<'_>) -> PeerResult {
    let lsk = listen_with_key(p)?;
    p.sync()?;
    let sk = accept_with_data(p, &lsk)?;
    expect(
        p,
        &sk,
        &[("TCPAOGood", 1)],
        Grew::GOOD,
        "eight segments with invalid authentication options, then a good ACK",
    )?;
    p.sync()
}

/// A signed ACK of `flow` whose option space after the TCP-AO option is `tail` (written over
/// NOPs after signing: the MAC no longer matters, the options must not parse).
fn with_tail(p: &Peer<'_>, flow: &inject::Flow, tail: &[u8]) -> PeerResult<Vec<u8>> {
    let k = key(p, 100, 100);
    let nops = vec![1u8; tail.len().div_ceil(4) * 4];
    let mut pkt = Seg::new(
        flow.conn.local,
        flow.conn.remote,
        flow.seq,
        flow.ack,
        TcpFlags::ACK,
    )
    .options(&nops)
    .signed(
        &k,
        (100, 100),
        (flow.conn.local_isn, flow.conn.remote_isn),
        0,
    )?;
    let end = pkt.len(); // no payload: the options end the packet
    let start = end - nops.len();
    pkt[start..start + tail.len()].copy_from_slice(tail);
    tcpao_refimpl::sign::fill_tcp_checksum(&mut pkt).or_fail("fixing the checksum")?;
    Ok(pkt)
}

fn options_client(p: &Peer<'_>) -> PeerResult {
    let sk = connect_with_data(p)?;
    let flow = learn_flow(p)?;
    let k = key(p, 100, 100);
    let mut second_ao = vec![29u8, 16, 100, 100];
    second_ao.extend_from_slice(&[0u8; 12]);
    let mut md5 = vec![19u8, 18];
    md5.extend_from_slice(&[0u8; 16]);
    let mut md5_17 = vec![19u8, 17];
    md5_17.extend_from_slice(&[0u8; 15]);
    let tails: [(&str, Vec<u8>); 4] = [
        ("a second TCP-AO option", second_ao),
        ("a TCP-MD5 option", md5.clone()),
        ("a 17-byte TCP-MD5 option", md5_17),
        (
            "an option longer than the header",
            vec![254u8, 40, 0, 0, 0, 0, 0, 0],
        ),
    ];
    let mut pkts = Vec::new();
    for (_, tail) in &tails {
        pkts.push(with_tail(p, &flow, tail)?);
    }
    // A TCP-AO option without MAC (length 4), and an option of length 1 after a valid one.
    let short_ao = Seg::new(
        flow.conn.local,
        flow.conn.remote,
        flow.seq,
        flow.ack,
        TcpFlags::ACK,
    )
    .options(&[29, 4, 100, 100, 1, 1, 1, 1])
    .unsigned()?;
    pkts.push(short_ao);
    pkts.push(with_tail(p, &flow, &[254, 1, 0, 0, 0, 0, 0, 0])?);
    // TCP-MD5 first: then a second TCP-MD5 option, or a TCP-AO option.
    let mut md5_twice = [1u8, 1].to_vec();
    md5_twice.extend_from_slice(&md5);
    md5_twice.extend_from_slice(&[1, 1]);
    md5_twice.extend_from_slice(&md5);
    let mut md5_then_ao = [1u8, 1].to_vec();
    md5_then_ao.extend_from_slice(&md5);
    md5_then_ao.extend_from_slice(&[29, 6, 100, 100, 0, 0]);
    for opts in [&md5_twice, &md5_then_ao] {
        pkts.push(
            Seg::new(
                flow.conn.local,
                flow.conn.remote,
                flow.seq,
                flow.ack,
                TcpFlags::ACK,
            )
            .options(opts)
            .unsigned()?,
        );
    }
    let good = Seg::new(
        flow.conn.local,
        flow.conn.remote,
        flow.seq,
        flow.ack,
        TcpFlags::ACK,
    )
    .signed(
        &k,
        (100, 100),
        (flow.conn.local_isn, flow.conn.remote_isn),
        0,
    )?;
    p.sync()?; // the server read our data (its window update is out) and took its snapshot
    let before = Counters::of(&sk)?;
    for pkt in &pkts {
        super::send(p, pkt, true)?;
    }
    super::send(p, &good, false)?;
    p.sync()?;
    // Nothing came back.
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::empty())
        .map_err(|e| failure!("the client's counters moved: {e}"))?;
    p.sync()
}

/// ICMP counters of the family: (destination unreachable, time exceeded).
fn icmp_counters(f: Family) -> PeerResult<(u64, u64)> {
    Ok(match f {
        Family::Ipv4 => (
            proc_counter("Icmp:", "InDestUnreachs")?,
            proc_counter("Icmp:", "InTimeExcds")?,
        ),
        Family::Ipv6 => (
            proc_counter("Icmp6", "Icmp6InDestUnreachs")?,
            proc_counter("Icmp6", "Icmp6InTimeExcds")?,
        ),
    })
}

fn icmp_server(p: &Peer<'_>) -> PeerResult {
    let lsk = listen_with_key(p)?;
    // A second listener without keys, for a connection without TCP-AO.
    let plain_port = p.port() + 1;
    let plain = sockets::listen(p, plain_port, 1)?;
    p.sync()?;
    let sk = accept_with_data(p, &lsk)?;
    let plain_sk = extras::accept_one(p, &plain)?;
    let (unreach, exceeded) = icmp_counters(p.family())?;
    // Two unlisted destination-unreachable codes, one time exceeded, one listed code to the
    // connection without TCP-AO, then one listed code to ours: only that one is dropped.
    let after = expect(
        p,
        &sk,
        &[("TCPAODroppedIcmps", 1)],
        Grew::DROPPED_ICMP,
        "ICMP errors outside RFC 5925 §7.8's list, one for a connection without TCP-AO, one listed",
    )?;
    let (unreach2, exceeded2) = icmp_counters(p.family())?;
    if (unreach2 - unreach, exceeded2 - exceeded) != (4, 1) {
        return Err(failure!(
            "the ICMP MIB counted {} destination-unreachable and {} time-exceeded messages, the client sent 4 and 1",
            unreach2 - unreach,
            exceeded2 - exceeded
        ));
    }
    if after.sock.map(|s| s.dropped_icmp) != Some(1) {
        return Err(failure!(
            "the connection counted {:?} dropped ICMPs, expected 1",
            after.sock.map(|s| s.dropped_icmp)
        ));
    }
    // Both connections still work.
    for s in [&sk, &plain_sk] {
        sockets::write_all(p, s, b"still up", p.deadline())?;
    }
    p.sync()
}

fn icmp_client(p: &Peer<'_>) -> PeerResult {
    let sk = connect_with_data(p)?;
    let plain = sockets::client_socket(p)?;
    sockets::connect_ok(p, &plain, p.remote_addr(), p.port() + 1)?;
    let flow = learn_flow(p)?;
    let local = flow.conn.local;
    let remote = flow.conn.remote;
    let plain_local: SocketAddr = plain
        .local_addr()
        .or_fail("getsockname() failed")?
        .as_socket()
        .ok_or_else(|| failure!("getsockname() returned no IP address"))?;
    let plain_remote = sa(p.remote_addr(), p.port() + 1);
    // The quoted SEQ is the server's SND.NXT (our RCV.NXT): inside its window.
    let seq = flow.ack;
    let (unreach, exceeded, listed): (u8, u8, u8) = match p.family() {
        Family::Ipv4 => (3, 11, 3),
        Family::Ipv6 => (1, 3, 4),
    };
    let unlisted_codes: [u8; 2] = match p.family() {
        // Network unreachable, host unreachable.
        Family::Ipv4 => [0, 1],
        // No route, address unreachable.
        Family::Ipv6 => [0, 3],
    };
    let mut pkts = Vec::new();
    for code in unlisted_codes {
        pkts.push(icmp_error(local, remote, unreach, code, seq, 0)?);
    }
    pkts.push(icmp_error(local, remote, exceeded, 0, seq, 0)?);
    pkts.push(icmp_error(
        plain_local,
        plain_remote,
        unreach,
        listed,
        1,
        0,
    )?);
    pkts.push(icmp_error(local, remote, unreach, listed, seq, 0)?);
    let raw = super::raw_socket(p.remote_addr())?;
    let target = socket2::SockAddr::from(SocketAddr::new(
        p.remote_addr(),
        if p.family() == Family::Ipv6 { 255 } else { 0 },
    ));
    p.sync()?; // the server took its snapshot
    for pkt in &pkts {
        let n = raw
            .send_to(pkt, &target)
            .or_fail("sending an ICMP error failed")?;
        if n != pkt.len() {
            return Err(failure!("sendto() sent {n} of {} bytes", pkt.len()));
        }
    }
    p.sync()?; // the server counted them
    for s in [&sk, &plain] {
        let mut buf = [0u8; 8];
        read_exact(p, s, &mut buf)?;
    }
    p.sync()
}

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
//! - `icmp-not-in-rfc5925-list`: each ICMP error RFC 5925 §7.8 does not list (network and
//!   host unreachable, source route failed, filtered, time exceeded, parameter problem; their
//!   ICMPv6 kin) reaches the connection (`SO_ERROR` with `IP_RECVERR`, the errno of the
//!   table) and is not counted as dropped; a listed one aimed at a connection without TCP-AO
//!   is not counted either; the listed ones are dropped, counted, and leave no error.
//! - `fragmented-segment`: a signed duplicate of 1,024 bytes the client sent, sent again
//!   whole, then as 3, 18 and 129 IP fragments (IPv4 MF/offset, an IPv6 fragment header), is
//!   reassembled into an skb with a frag_list, whose every part `tcp_ao_hash_skb_data()` must
//!   hash (`skb_walk_frags()`): each verifies (`TCPAOGood` and the socket and key
//!   `pkt_good`, nothing else). No other test makes the kernel verify a MAC over a frag_list;
//!   the reference cannot check fragments on the wire (it skips them), so the proof is the
//!   kernel's own verdict. On IPv6 the kernel rejects them (`TCPAOBad`): kernel finding 7,
//!   reported as XFAIL until fixed.
//! - `fragmented-segment-md5`: the same over TCP-MD5 (no counter of good segments: each row
//!   sends 1,024 new bytes, which must all be read with `TCPMD5Failure` unchanged); IPv6 is
//!   XFAIL at the first fragmented row (finding 7, `tcp_md5_hash_skb_data()`).
//! - `icmp-without-tcp-ao` (runs alone, before every other test): with no TCP-AO key on the
//!   machine, every error of the table, listed or not, reaches a connection without TCP-AO,
//!   round after round for two seconds (the `tcp_ao_needed` static key goes off one second
//!   after the last key is freed).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use socket2::Socket;
use tcpao_refimpl::Auth;
use tcpao_refimpl::wire::TcpFlags;

use super::{PROGRAM, Seg, expect, key, sa};
use crate::counters::{Counters, Grew, Mib, icmp_dest_unreachs};
use crate::failure;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::peers::Peer;
use crate::probe::Feature;
use crate::programs::PairTest;
use crate::programs::extras::{self, wait_counters};
use crate::programs::icmps_discard::{icmp_error, set_recverr};
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
    v.extend(
        PairTest::new(PROGRAM, "fragmented-segment")
            .ao()
            .build(fragmented_server, fragmented_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "fragmented-segment-md5")
            .requires(&[Feature::TcpMd5])
            .build(fragmented_md5_server, fragmented_md5_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "icmp-without-tcp-ao")
            .ao()
            .exclusive()
            .build(no_ao_icmp_server, no_ao_icmp_client),
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
    let challenges = Mib::TcpExt.read("TCPSYNChallenge")?;
    expect(p, &sk, &[("TCPAOGood", 1)], Grew::GOOD, "a signed SYN")?;
    let d = Mib::TcpExt.read("TCPSYNChallenge")? - challenges;
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

/// How the duplicate of the client's [`DUPLICATED`] bytes goes out: whole (the control row),
/// or in IP fragments of this many bytes after the first (a multiple of 8): 3, 18 and 129
/// fragments. Reassembly copies small pieces into the first one's spare room; these are too
/// many or too big, so the reassembled skb carries them on its frag_list.
const FRAGMENT_ROWS: [Option<usize>; 4] = [None, Some(512), Some(64), Some(8)];
/// Bytes the client sends with its socket and then again, crafted.
const DUPLICATED: usize = 1024;

fn fragmented_server(p: &Peer<'_>) -> PeerResult {
    let lsk = listen_with_key(p)?;
    p.sync()?;
    let sk = accept_with_data(p, &lsk)?;
    let mut buf = vec![0u8; DUPLICATED];
    read_exact(p, &sk, &mut buf)?;
    p.sync()?; // read: the client sends its duplicates now
    let mut rejected = Vec::new();
    for row in FRAGMENT_ROWS {
        let what = match row {
            None => "the client's data again, signed, in one piece".to_owned(),
            Some(n) => format!("the client's data again, signed, in IP fragments of {n} bytes"),
        };
        // A duplicate is verified, then dropped as old data (a D-SACK goes back): exactly
        // one verdict on the server.
        let before = Counters::of(&sk)?;
        p.sync()?;
        let after = wait_counters(p, &sk, p.deadline(), &what, |c| {
            !(c.grown(&before) & (Grew::NS_GOOD | Grew::NS_BAD)).is_empty()
        })?;
        p.sync()?;
        let bad = after.grown(&before).contains(Grew::BAD);
        if bad && row.is_some() && p.family() == Family::Ipv6 {
            // Kernel finding 7 (docs/kernel-findings.md).
            after.assert_grew_exactly(&before, Grew::BAD)?;
            rejected.push(row.unwrap_or_default());
            continue;
        }
        after
            .assert_grew_exactly(&before, Grew::GOOD)
            .map_err(|e| failure!("after {what}: {e}"))?;
    }
    p.sync()?;
    if !rejected.is_empty() {
        return Err(Failure::XFail(format!(
            "kernel bug: an IPv6 segment reassembled from fragments fails verification (TCPAOBad), in fragments of {rejected:?} bytes: tcp_ao_hash_skb_data() hashes each frag_list skb from tcp_hdr(), which for an IPv6 fragment still points at its fragment header, not from ->data (8 bytes off)"
        )));
    }
    p.diag("every duplicate verified, whole and reassembled from IP fragments");
    Ok(())
}

/// The client sends [`DUPLICATED`] bytes, then each row re-sends them as a crafted, signed
/// segment: a duplicate changes nothing in TCP but is verified first.
fn fragmented_client(p: &Peer<'_>) -> PeerResult {
    let sk = connect_with_data(p)?;
    let flow = learn_flow(p)?;
    let payload = vec![0x5au8; DUPLICATED];
    sockets::write_all(p, &sk, &payload, p.deadline())?;
    p.sync()?; // the server read it
    let k = key(p, 100, 100);
    let pkt = Seg::new(
        flow.conn.local,
        flow.conn.remote,
        flow.seq,
        flow.ack,
        TcpFlags::ACK | TcpFlags::PSH,
    )
    .payload(&payload)
    .signed(
        &k,
        (100, 100),
        (flow.conn.local_isn, flow.conn.remote_isn),
        0,
    )?;
    let raw = inject::raw_socket_to(flow.conn.remote.ip())?;
    for row in FRAGMENT_ROWS {
        p.sync()?; // the server took its snapshot
        let sent = send_row(p, &raw, &pkt, row)?;
        p.diag(format!(
            "sent the {}-byte signed duplicate as {sent} IP packet(s)",
            pkt.len()
        ));
        p.sync()?;
    }
    p.sync()
}

const MD5_PASSWORD: &[u8] = b"tcpao fragmented TCP-MD5 segment";

/// TCP-MD5 has no counter of good segments, so each row sends [`DUPLICATED`] new bytes: the
/// server must read them all, and `TCPMD5Failure` must not move.
fn fragmented_md5_server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_md5_key(
        p,
        &lsk,
        p.remote_addr(),
        p.family().host_prefix(),
        MD5_PASSWORD,
    )?;
    p.sync()?;
    let sk = accept_with_data(p, &lsk)?;
    let mut rejected = Vec::new();
    for row in FRAGMENT_ROWS {
        let failures = Mib::TcpExt.read("TCPMD5Failure")?;
        p.sync()?; // the client sends the row
        // The verdict: all the row's bytes read, or a TCP-MD5 failure counted.
        let mut buf = vec![0u8; DUPLICATED];
        let mut got = 0;
        let arrived = p.wait_for(p.deadline(), || {
            while got < DUPLICATED {
                match sockets::read_now(&sk, &mut buf[got..])? {
                    Some(n) if n > 0 => got += n,
                    _ => break,
                }
            }
            if got == DUPLICATED {
                return Ok(Some(true));
            }
            Ok((Mib::TcpExt.read("TCPMD5Failure")? > failures).then_some(false))
        })?;
        let failed = Mib::TcpExt.read("TCPMD5Failure")? - failures;
        match (arrived, row) {
            (Some(true), _) if failed == 0 && buf == md5_payload(row) => {}
            // Kernel finding 7 (docs/kernel-findings.md), its TCP-MD5 half: stop here.
            (Some(false), Some(n)) if p.family() == Family::Ipv6 => {
                rejected.push(n);
                p.signal();
                p.sync()?;
                break;
            }
            (a, _) => {
                return Err(failure!(
                    "row {row:?}: {got} of {DUPLICATED} bytes read ({a:?}), TCPMD5Failure +{failed}"
                ));
            }
        }
        p.sync()?;
    }
    p.sync()?;
    if !rejected.is_empty() {
        return Err(Failure::XFail(format!(
            "kernel bug: an IPv6 segment reassembled from fragments fails TCP-MD5 (TCPMD5Failure), first in fragments of {rejected:?} bytes: tcp_md5_hash_skb_data() hashes each frag_list skb from tcp_hdr(), 8 bytes off for an IPv6 fragment"
        )));
    }
    p.diag("every row arrived: whole and reassembled from IP fragments");
    Ok(())
}

/// The bytes of a row (each row its own, so a stale one cannot pass for it).
fn md5_payload(row: Option<usize>) -> Vec<u8> {
    vec![row.map_or(0xa5, |n| (n % 251) as u8); DUPLICATED]
}

fn fragmented_md5_client(p: &Peer<'_>) -> PeerResult {
    let sk = sockets::md5_client_socket(p, MD5_PASSWORD)?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    send_data(p, &sk)?;
    let flow = learn_flow(p)?;
    let raw = inject::raw_socket_to(flow.conn.remote.ip())?;
    let mut seq = flow.seq;
    for row in FRAGMENT_ROWS {
        let payload = md5_payload(row);
        let pkt = Seg::new(
            flow.conn.local,
            flow.conn.remote,
            seq,
            flow.ack,
            TcpFlags::ACK | TcpFlags::PSH,
        )
        .payload(&payload)
        .build(&Auth::Md5(MD5_PASSWORD))?;
        p.sync()?; // the server reads now
        send_row(p, &raw, &pkt, row)?;
        seq = seq.wrapping_add(DUPLICATED as u32);
        p.sync()?;
        if p.peer_signals() > 0 {
            break; // the server saw the row rejected and stops
        }
    }
    drop(sk);
    p.sync()
}

/// Send `pkt` from `raw` whole (`row` `None`) or as IP fragments of `row` bytes, each
/// registered with the capture as crafted; returns how many IP packets went out.
fn send_row(p: &Peer<'_>, raw: &Socket, pkt: &[u8], row: Option<usize>) -> PeerResult<usize> {
    let pieces = match row {
        None => vec![pkt.to_vec()],
        Some(n) => tcpao_refimpl::reassembly::fragment(pkt, n)
            .map_err(|e| failure!("cannot fragment the segment: {e}"))?,
    };
    for f in &pieces {
        inject::inject(p, raw, f, true)?;
    }
    Ok(pieces.len())
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

/// One ICMP error, whether RFC 5925 §7.8 lists it (a TCP-AO connection must drop it by
/// default), and the errno it leaves on an established connection with `IP_RECVERR` when it
/// reaches it (`tcp_v4_err()`: `icmp_err_convert`, time exceeded `EHOSTUNREACH`, parameter
/// problem `EPROTO`; `tcp_v6_err()`: `icmpv6_err_convert()`).
struct IcmpRow {
    icmp_type: u8,
    code: u8,
    listed: bool,
    errno: Errno,
    what: &'static str,
}

const fn row(icmp_type: u8, code: u8, listed: bool, errno: Errno, what: &'static str) -> IcmpRow {
    IcmpRow {
        icmp_type,
        code,
        listed,
        errno,
        what,
    }
}

/// Fragmentation needed (listed) is left out: it moves the path MTU, not `sk_err`
/// (`icmps-discard` covers it).
const ICMP_ROWS_V4: [IcmpRow; 8] = [
    row(3, 0, false, Errno::ENETUNREACH, "network unreachable"),
    row(3, 1, false, Errno::EHOSTUNREACH, "host unreachable"),
    row(3, 5, false, Errno::EOPNOTSUPP, "source route failed"),
    row(
        3,
        13,
        false,
        Errno::EHOSTUNREACH,
        "communication administratively prohibited",
    ),
    row(11, 0, false, Errno::EHOSTUNREACH, "time exceeded"),
    row(12, 0, false, Errno::EPROTO, "parameter problem"),
    row(3, 2, true, Errno::ENOPROTOOPT, "protocol unreachable"),
    row(3, 3, true, Errno::ECONNREFUSED, "port unreachable"),
];

const ICMP_ROWS_V6: [IcmpRow; 8] = [
    row(1, 0, false, Errno::ENETUNREACH, "no route to destination"),
    row(1, 3, false, Errno::EHOSTUNREACH, "address unreachable"),
    row(
        1,
        5,
        false,
        Errno::EACCES,
        "source address failed ingress/egress policy",
    ),
    row(1, 6, false, Errno::EACCES, "reject route to destination"),
    row(3, 0, false, Errno::EHOSTUNREACH, "hop limit exceeded"),
    row(4, 0, false, Errno::EPROTO, "parameter problem"),
    row(1, 1, true, Errno::EACCES, "administratively prohibited"),
    row(1, 4, true, Errno::ECONNREFUSED, "port unreachable"),
];

fn icmp_rows(f: Family) -> &'static [IcmpRow] {
    match f {
        Family::Ipv4 => &ICMP_ROWS_V4,
        Family::Ipv6 => &ICMP_ROWS_V6,
    }
}

/// Wait until `row`'s error reached `sk` (`SO_ERROR`, which also clears it).
fn expect_icmp_error(p: &Peer<'_>, sk: &Socket, row: &IcmpRow, conn: &str) -> PeerResult {
    let got = p.wait_for(p.deadline(), || {
        sk.take_error().or_fail("getsockopt(SO_ERROR) failed")
    })?;
    let what = format!(
        "ICMP type {} code {} ({})",
        row.icmp_type, row.code, row.what
    );
    match got.and_then(|e| e.raw_os_error()) {
        None => Err(failure!(
            "{what} did not reach {conn} within {:?}: SO_ERROR stayed 0",
            p.timeout()
        )),
        Some(e) if e != row.errno as i32 => Err(failure!(
            "{what} left {} on {conn}, expected {}",
            Errno::from_raw(e),
            row.errno
        )),
        Some(_) => Ok(()),
    }
}

/// Client side of one ICMP step: wait for the server, send `pkts`.
fn send_icmps(p: &Peer<'_>, raw: &Socket, pkts: &[Vec<u8>]) -> PeerResult {
    let target = socket2::SockAddr::from(SocketAddr::new(
        p.remote_addr(),
        if p.family() == Family::Ipv6 { 255 } else { 0 },
    ));
    p.sync()?; // the server is ready
    for pkt in pkts {
        let n = raw
            .send_to(pkt, &target)
            .or_fail("sending an ICMP error failed")?;
        if n != pkt.len() {
            return Err(failure!("sendto() sent {n} of {} bytes", pkt.len()));
        }
    }
    Ok(())
}

fn icmp_server(p: &Peer<'_>) -> PeerResult {
    let lsk = listen_with_key(p)?;
    // A second listener without keys, for a connection without TCP-AO.
    let plain_port = p.port() + 1;
    let plain = sockets::listen(p, plain_port, 1)?;
    p.sync()?;
    let sk = accept_with_data(p, &lsk)?;
    let plain_sk = extras::accept_one(p, &plain)?;
    set_recverr(&sk, p.family())?;
    let rows = icmp_rows(p.family());
    let unreach = icmp_dest_unreachs(p.family())?;
    // Each unlisted error on its own: it reaches the connection (SO_ERROR) and no TCP-AO
    // counter moves.
    for r in rows.iter().filter(|r| !r.listed) {
        let before = Counters::of(&sk)?;
        p.sync()?; // the client sends it
        expect_icmp_error(p, &sk, r, "the TCP-AO connection")?;
        Counters::of(&sk)?
            .assert_grew_exactly(&before, Grew::empty())
            .map_err(|e| {
                failure!(
                    "after ICMP type {} code {} ({}): {e}",
                    r.icmp_type,
                    r.code,
                    r.what
                )
            })?;
    }
    // One listed error to the connection without TCP-AO, then each listed one to ours: only
    // those are dropped, and none reaches the connection.
    let listed = rows.iter().filter(|r| r.listed).count() as u64;
    let after = expect(
        p,
        &sk,
        &[("TCPAODroppedIcmps", listed)],
        Grew::DROPPED_ICMP,
        "a listed ICMP error for a connection without TCP-AO, then each listed one for ours",
    )?;
    if after.sock.map(|s| s.dropped_icmp) != Some(listed) {
        return Err(failure!(
            "the connection counted {:?} dropped ICMPs, expected {listed}",
            after.sock.map(|s| s.dropped_icmp)
        ));
    }
    if let Some(e) = sk.take_error().or_fail("getsockopt(SO_ERROR) failed")? {
        return Err(failure!(
            "a dropped ICMP error reached the TCP-AO connection: SO_ERROR {e}"
        ));
    }
    // Every destination-unreachable row, and the listed one to the connection without TCP-AO.
    let dest_unreach = match p.family() {
        Family::Ipv4 => 3,
        Family::Ipv6 => 1,
    };
    let sent_unreach = rows.iter().filter(|r| r.icmp_type == dest_unreach).count() as u64 + 1;
    let counted = icmp_dest_unreachs(p.family())? - unreach;
    if counted != sent_unreach {
        return Err(failure!(
            "the ICMP MIB counted {counted} destination-unreachable messages, the client sent {sent_unreach}"
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
    let (local, remote) = (flow.conn.local, flow.conn.remote);
    let plain_local: SocketAddr = plain
        .local_addr()
        .or_fail("getsockname() failed")?
        .as_socket()
        .ok_or_else(|| failure!("getsockname() returned no IP address"))?;
    let plain_remote = sa(p.remote_addr(), p.port() + 1);
    // The quoted SEQ is the server's SND.NXT (our RCV.NXT): inside its window.
    let seq = flow.ack;
    let raw = super::raw_socket(p.remote_addr())?;
    let rows = icmp_rows(p.family());
    for r in rows.iter().filter(|r| !r.listed) {
        send_icmps(
            p,
            &raw,
            &[icmp_error(local, remote, r.icmp_type, r.code, seq, 0)?],
        )?;
    }
    let mut pkts = Vec::new();
    let first_listed = rows
        .iter()
        .find(|r| r.listed)
        .ok_or_else(|| failure!("no listed row"))?;
    pkts.push(icmp_error(
        plain_local,
        plain_remote,
        first_listed.icmp_type,
        first_listed.code,
        1,
        0,
    )?);
    for r in rows.iter().filter(|r| r.listed) {
        pkts.push(icmp_error(local, remote, r.icmp_type, r.code, seq, 0)?);
    }
    send_icmps(p, &raw, &pkts)?;
    p.sync()?; // the server counted them
    for s in [&sk, &plain] {
        let mut buf = [0u8; 8];
        read_exact(p, s, &mut buf)?;
    }
    p.sync()
}

/// How long `icmp-without-tcp-ao` keeps checking: the `tcp_ao_needed` static key goes off
/// one second (`HZ`) after the last TCP-AO key of the machine is freed. The test runs first
/// and alone, so in a fresh VM the key is off from the start; on a machine where TCP-AO
/// sockets live (a BGP daemon, an earlier run whose orphans linger for up to two minutes)
/// the test still checks delivery but cannot tell a kernel that ignores ICMPs while the
/// key is off.
const KEY_OFF_WINDOW: Duration = Duration::from_secs(2);

/// `icmp-without-tcp-ao`, server: a connection without TCP-AO, on a machine where no TCP-AO
/// key exists (the test runs alone), receives every error of the table, listed or not,
/// round after round for [`KEY_OFF_WINDOW`]: RFC 5925 §7.8 concerns connections that match
/// MKTs only. `tcp_ao_ignore_icmp()` returns early while the static key is off; a kernel
/// that ignored ICMPs there would break them (PMTU discovery too) for every TCP socket.
fn no_ao_icmp_server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    let mut buf = [0u8; DATA];
    read_exact(p, &sk, &mut buf)?;
    set_recverr(&sk, p.family())?;
    let started = Instant::now();
    let mut rounds = 0u32;
    while rounds < 2 || started.elapsed() < KEY_OFF_WINDOW {
        p.sync()?; // one more round
        for r in icmp_rows(p.family()) {
            p.sync()?; // the client sends it
            expect_icmp_error(p, &sk, r, "the connection without TCP-AO")?;
        }
        rounds += 1;
    }
    p.signal(); // enough
    p.sync()?;
    p.diag(format!(
        "{rounds} rounds of {} ICMP errors over {:.1?} reached the connection",
        icmp_rows(p.family()).len(),
        started.elapsed()
    ));
    sockets::write_all(p, &sk, b"still up", p.deadline())?;
    p.sync()
}

fn no_ao_icmp_client(p: &Peer<'_>) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    send_data(p, &sk)?;
    let flow = learn_flow(p)?;
    let raw = super::raw_socket(p.remote_addr())?;
    let pkts = icmp_rows(p.family())
        .iter()
        .map(|r| {
            icmp_error(
                flow.conn.local,
                flow.conn.remote,
                r.icmp_type,
                r.code,
                flow.ack,
                0,
            )
        })
        .collect::<PeerResult<Vec<_>>>()?;
    loop {
        p.sync()?; // the server's round, or its "enough"
        if p.peer_signals() > 0 {
            break;
        }
        for pkt in &pkts {
            send_icmps(p, &raw, std::slice::from_ref(pkt))?;
        }
    }
    let mut buf = [0u8; 8];
    read_exact(p, &sk, &mut buf)?;
    p.sync()
}

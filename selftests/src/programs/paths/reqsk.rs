// SPDX-License-Identifier: MIT OR Apache-2.0
//! Request sockets (`TCP_NEW_SYN_RECV`): the client is a raw socket that sends a signed SYN
//! and then the segments under test, so the server's request socket stays in SYN-RECV as
//! long as the test needs (the client's kernel, which owns no socket for the flow, does not
//! reset the signed SYN-ACK: `tcp_ao_prepare_reset()` has no socket to sign with).
//!
//! - An ACK outside the request socket's window gets an ACK from it
//!   (`tcp_v{4,6}_reqsk_send_ack()`; `net.ipv4.tcp_invalid_ratelimit = 0` on the server):
//!   SEQ = ISN + 1, KeyID the key whose SendID is the segment's RNextKeyID (the first key for
//!   the peer when none has it), RNextKeyID the segment's KeyID, the traffic key of the
//!   connection's ISNs, SNE 0; also for a SEQ before the ISN.
//! - An unsigned ACK to a request socket of a signed SYN, and a signed ACK to one of an
//!   unsigned SYN (kept in SYN-RECV by `TCP_DEFER_ACCEPT`), are dropped and counted in
//!   `TCPAOBad` only (`tcp_inbound_hash()`; the listener's own counters do not move).
//! - A signed ACK with a wrong acknowledgment number verifies with the request socket's ISNs
//!   (`TCPAOGood`), is handed to the listener, which checks it again as a possible syncookie
//!   ACK with other ISNs (`TCPAOBad`): one segment, both counters, and no RST.
//! - A second SYN inside the window resets the request socket (RFC 9293 §3.10.7.4): the
//!   listener's RST is keyed from that SYN (ISNs (its SEQ, 0)).
//! - Keys deleted (`del_async`) and added on the listener between SYN and ACK: the new
//!   socket falls back to the first matching key for Current_key and RNext_key
//!   (`tcp_ao_copy_all_matching()`).
//! - `reqsk-ack-in-vrf`: the same out-of-window ACK to a request socket of a listener bound
//!   to a VRF (its veth enslaved to `ksft-vrf`, the key bound to the VRF with
//!   `TCP_AO_KEYF_IFINDEX`) is answered, signed with that key: `tcp_v{4,6}_reqsk_send_ack()`
//!   looks the key up in the L3 domain the segment came in on (`l3index` from the skb's
//!   `sdif`); with 0 there, a VRF-bound key is not found and the ACK is not sent.

use std::io;

use socket2::Socket;
use tcpao_refimpl::wire::TcpFlags;
use tcpao_sys::TcpAoExt as _;

use super::{
    PROGRAM, RAW_PORT, Seg, ao_ids, break_mac, describe, expect, inject_step, ip_packet, key,
    mac_verifies, mark, sa, since, wait_since, wait_since_where,
};
use crate::capture::Frame;
use crate::counters::{Grew, Mib};
use crate::failure;
use crate::netns;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::programs::extras::{self, segment};
use crate::programs::vrf_keys;
use crate::registry::Test;
use crate::sockets::{self, TestKey};
use crate::topology::{Side, VRF_IFINDEX};

/// The client's ISN of a crafted handshake (low enough that ISN + 2^30 does not wrap).
const ISN: u32 = 0x3000_0000;
/// `IPPROTO_TCP`, `TCP_DEFER_ACCEPT` (`<linux/tcp.h>`).
const TCP_LEVEL: i32 = 6;
const TCP_DEFER_ACCEPT: i32 = 9;

pub(super) fn tests() -> Vec<Test> {
    let mut v = PairTest::new(PROGRAM, "reqsk-ack-out-of-window")
        .ao()
        .build(oow_server, oow_client);
    v.extend(
        PairTest::new(PROGRAM, "reqsk-reset-by-second-syn")
            .ao()
            .build(second_syn_server, second_syn_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "listener-keys-rotated-mid-handshake")
            .ao()
            .build(rotated_server, rotated_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "reqsk-ack-in-vrf")
            .ao()
            .topology(vrf_keys::vrf_topology())
            .build(vrf_oow_server, vrf_oow_client),
    );
    v
}

/// Send a SYN signed with `k` and KeyID/RNextKeyID `ids` from `RAW_PORT` and wait for the
/// SYN-ACK, which must carry the swapped IDs: returns the server's ISN.
fn handshake_start(p: &Peer<'_>, k: &TestKey, ids: (u8, u8)) -> PeerResult<u32> {
    let (me, srv) = (sa(p.local_addr(), RAW_PORT), sa(p.remote_addr(), p.port()));
    let syn = Seg::new(me, srv, ISN, 0, TcpFlags::SYN).signed(k, ids, (ISN, 0), 0)?;
    let m = mark(p)?;
    inject_step(p, &[(&syn, false)])?;
    let got = wait_since(p, m, Side::Server, (p.port(), RAW_PORT), 1, "the SYN-ACK")?;
    let synack = &got[0];
    let s = segment(synack).ok_or_else(|| failure!("the SYN-ACK is not TCP"))?;
    let t = s.tcp_packet();
    if !(t.syn() && t.ack() && t.ack_number() == ISN.wrapping_add(1))
        || ao_ids(&s) != Some((ids.1, ids.0, 12))
    {
        return Err(failure!(
            "the server answered the SYN with {}, expected a SYN-ACK with KeyID {} RNextKeyID {}",
            describe(synack),
            ids.1,
            ids.0
        ));
    }
    Ok(t.seq_number())
}

fn no_connection(lsk: &Socket) -> PeerResult {
    match lsk.accept() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Ok((_, from)) => Err(failure!(
            "the listener accepted a connection from {from:?} although no ACK completed the handshake"
        )),
        Err(e) => Err(failure!("accept() failed: {e}")),
    }
}

fn oow_server(p: &Peer<'_>) -> PeerResult {
    // Every out-of-window segment gets its ACK (no 500 ms rate limit).
    netns::sysctl_write("net/ipv4/tcp_invalid_ratelimit", "0")
        .or_fail("setting net.ipv4.tcp_invalid_ratelimit = 0")?;
    let lsk = sockets::listen(p, p.port(), 8)?;
    sockets::add_key(p, &lsk, &key(p, 100, 100))?;
    p.sync()?;
    expect(p, &lsk, &[("TCPAOGood", 1)], Grew::GOOD, "the SYN")?;
    expect(
        p,
        &lsk,
        &[("TCPAOGood", 3)],
        Grew::GOOD,
        "three ACKs outside the request socket's window (RNextKeyID 100, RNextKeyID 77, SEQ before the ISN)",
    )?;
    expect(
        p,
        &lsk,
        &[("TCPAOBad", 1)],
        Grew::NS_BAD,
        "an unsigned ACK to the request socket of a signed SYN",
    )?;
    expect(
        p,
        &lsk,
        &[("TCPAOBad", 1)],
        Grew::BAD,
        "an ACK with a bad MAC",
    )?;
    expect(
        p,
        &lsk,
        &[("TCPAOGood", 1), ("TCPAOBad", 1)],
        Grew::GOOD | Grew::BAD,
        "a signed ACK with a wrong acknowledgment number",
    )?;
    p.sync()?; // the client checked the answers
    no_connection(&lsk)?;
    // Second flow: a listener with a key for another peer only takes an unsigned SYN; with
    // TCP_DEFER_ACCEPT the bare ACK of the handshake leaves the request socket in place.
    let port = p.next_port();
    let lsk = sockets::listen(p, port, 8)?;
    tcpao_sys::raw::set_int_option(&lsk, TCP_LEVEL, TCP_DEFER_ACCEPT, 5)
        .or_fail("setsockopt(TCP_DEFER_ACCEPT) failed")?;
    sockets::add_key(p, &lsk, &TestKey::new(p.family().wrong_addr(), 100, 100))?;
    p.sync()?;
    expect(
        p,
        &lsk,
        &[("TCPAOBad", 1)],
        Grew::NS_BAD,
        "a signed ACK to the request socket of an unsigned SYN",
    )?;
    let sk = extras::accept_one(p, &lsk)?;
    if sk
        .ao_info()
        .or_fail("getsockopt(TCP_AO_INFO) failed")?
        .is_some()
    {
        return Err(failure!(
            "the connection of an unsigned handshake has TCP-AO state"
        ));
    }
    let mut buf = [0u8; 10];
    crate::programs::inject::read_exact(p, &sk, &mut buf)?;
    p.sync()
}

fn oow_client(p: &Peer<'_>) -> PeerResult {
    let k = key(p, 100, 100);
    sockets::register(p, &k);
    let (me, srv) = (sa(p.local_addr(), RAW_PORT), sa(p.remote_addr(), p.port()));
    p.sync()?;
    let srv_isn = handshake_start(p, &k, (100, 100))?;
    let isns = (ISN, srv_isn);
    let next = (ISN.wrapping_add(1), srv_isn.wrapping_add(1));
    let m = mark(p)?;
    // Out of the window (RCV.NXT + 2^30, and before the ISN), acknowledging the SYN-ACK. The
    // one asking for RNextKeyID 77 is answered with the first key for the peer.
    let oow = |seq: u32, rnext: u8| {
        Seg::new(me, srv, seq, next.1, TcpFlags::ACK).signed(&k, (100, rnext), isns, 0)
    };
    let ahead = next.0.wrapping_add(1 << 30);
    let behind = ISN.wrapping_sub(1000);
    let (a, b, c) = (oow(ahead, 100)?, oow(ahead, 77)?, oow(behind, 100)?);
    inject_step(p, &[(&a, false), (&b, false), (&c, false)])?;
    let got = wait_since(p, m, Side::Server, (p.port(), RAW_PORT), 3, "the ACKs")?;
    let answers: Vec<&Frame> = got
        .iter()
        .filter(|f| segment(f).is_some_and(|s| !s.tcp_packet().syn()))
        .collect();
    if answers.len() != 3 {
        return Err(failure!(
            "the request socket answered three out-of-window ACKs with: {}",
            got.iter().map(describe).collect::<Vec<_>>().join("; ")
        ));
    }
    for ack in answers {
        let s = segment(ack).ok_or_else(|| failure!("not TCP"))?;
        let t = s.tcp_packet();
        if !(t.ack()
            && !t.rst()
            && !t.fin()
            && t.seq_number() == next.1
            && t.ack_number() == next.0)
            || ao_ids(&s) != Some((100, 100, 12))
        {
            return Err(failure!(
                "the request socket answered an out-of-window ACK with {}, expected an ACK with SEQ {} ACK {} KeyID 100 RNextKeyID 100",
                describe(ack),
                next.1,
                next.0
            ));
        }
        if !mac_verifies(ack, &k, srv, me, (srv_isn, ISN), 0)? {
            return Err(failure!(
                "the request socket's ACK does not verify with the connection's traffic key"
            ));
        }
    }
    p.diag("the request socket's ACKs verified: KeyID 100 RNextKeyID 100, ISNs of the handshake, SNE 0");
    let unsigned = Seg::new(me, srv, next.0, next.1, TcpFlags::ACK).unsigned()?;
    inject_step(p, &[(&unsigned, false)])?;
    let bad = break_mac(Seg::new(me, srv, next.0, next.1, TcpFlags::ACK).signed(
        &k,
        (100, 100),
        isns,
        0,
    )?)?;
    inject_step(p, &[(&bad, true)])?;
    let wrong_ack = Seg::new(me, srv, next.0, next.1.wrapping_add(1), TcpFlags::ACK).signed(
        &k,
        (100, 100),
        isns,
        0,
    )?;
    inject_step(p, &[(&wrong_ack, false)])?;
    let all: Vec<Frame> = since(p, m, Side::Server, p.port(), RAW_PORT)?
        .into_iter()
        .filter(|f| segment(f).is_some_and(|s| !s.tcp_packet().syn()))
        .collect();
    if all.len() != 3 {
        return Err(failure!(
            "the server answered more than the out-of-window ACKs: {}",
            all.iter().map(describe).collect::<Vec<_>>().join("; ")
        ));
    }
    p.sync()?;
    // Second flow: an unsigned connection whose handshake ACK the listener defers; a signed
    // ACK to its request socket is refused; data completes it.
    let port = p.next_port();
    p.sync()?;
    let sk = sockets::client_socket(p)?;
    sockets::connect_ok(p, &sk, p.remote_addr(), port)?;
    let frames = extras::wait_flow_bytes(p, port, 0, 0)?;
    let [Some(srv_isn), Some(cli_isn)] = extras::isns(&frames) else {
        return Err(failure!("the capture has no handshake on port {port}"));
    };
    let me = sk
        .local_addr()
        .or_fail("getsockname() failed")?
        .as_socket()
        .ok_or_else(|| failure!("getsockname() returned no IP address"))?;
    let srv = sa(p.remote_addr(), port);
    let next = (cli_isn.wrapping_add(1), srv_isn.wrapping_add(1));
    let signed = Seg::new(me, srv, next.0, next.1, TcpFlags::ACK).signed(
        &k,
        (100, 100),
        (cli_isn, srv_isn),
        0,
    )?;
    inject_step(p, &[(&signed, false)])?;
    sockets::write_all(p, &sk, &[1u8; 10], p.deadline())?;
    p.sync()
}

fn vrf_oow_server(p: &Peer<'_>) -> PeerResult {
    netns::sysctl_write("net/ipv4/tcp_invalid_ratelimit", "0")
        .or_fail("setting net.ipv4.tcp_invalid_ratelimit = 0")?;
    vrf_keys::enter_vrf(p)?;
    let lsk = vrf_keys::vrf_socket(p)?;
    lsk.set_reuse_address(true).or_fail("SO_REUSEADDR failed")?;
    lsk.bind(&sa(p.local_addr(), p.port()).into())
        .or_fail("bind() failed")?;
    lsk.listen(8).or_fail("listen() failed")?;
    let mut k = key(p, 100, 100);
    k.vrf = Some(VRF_IFINDEX);
    sockets::add_key(p, &lsk, &k)?;
    p.sync()?;
    expect(
        p,
        &lsk,
        &[("TCPAOGood", 1)],
        Grew::GOOD,
        "the SYN, through the VRF",
    )?;
    expect(
        p,
        &lsk,
        &[("TCPAOGood", 1)],
        Grew::GOOD,
        "an ACK outside the request socket's window, through the VRF",
    )?;
    p.sync()?; // the client checked the answer
    no_connection(&lsk)
}

/// The client stays in the default VRF: its raw socket reaches the server's enslaved veth.
fn vrf_oow_client(p: &Peer<'_>) -> PeerResult {
    let k = key(p, 100, 100);
    sockets::register(p, &k);
    let (me, srv) = (sa(p.local_addr(), RAW_PORT), sa(p.remote_addr(), p.port()));
    p.sync()?;
    let srv_isn = handshake_start(p, &k, (100, 100))?;
    let next = (ISN.wrapping_add(1), srv_isn.wrapping_add(1));
    let m = mark(p)?;
    let oow = Seg::new(me, srv, next.0.wrapping_add(1 << 30), next.1, TcpFlags::ACK).signed(
        &k,
        (100, 100),
        (ISN, srv_isn),
        0,
    )?;
    inject_step(p, &[(&oow, false)])?;
    let got = wait_since_where(
        p,
        m,
        Side::Server,
        (p.port(), RAW_PORT),
        1,
        "the request socket's ACK in the VRF",
        |f| segment(f).is_some_and(|s| !s.tcp_packet().syn()),
    )?;
    let ack = &got[0];
    let s = segment(ack).ok_or_else(|| failure!("not TCP"))?;
    let t = s.tcp_packet();
    if !(t.ack() && !t.rst() && t.seq_number() == next.1 && t.ack_number() == next.0)
        || ao_ids(&s) != Some((100, 100, 12))
        || !mac_verifies(ack, &k, srv, me, (srv_isn, ISN), 0)?
    {
        return Err(failure!(
            "the request socket in the VRF answered with {}, expected an ACK with SEQ {} ACK {} KeyID 100 RNextKeyID 100 that verifies",
            describe(ack),
            next.1,
            next.0
        ));
    }
    p.diag("the request socket's ACK through the VRF verified with the VRF-bound key");
    p.sync()
}

fn second_syn_server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 8)?;
    sockets::add_key(p, &lsk, &key(p, 100, 100))?;
    p.sync()?;
    expect(p, &lsk, &[("TCPAOGood", 1)], Grew::GOOD, "the SYN")?;
    let resets = Mib::TcpExt.read("EmbryonicRsts")?;
    expect(
        p,
        &lsk,
        &[("TCPAOGood", 1)],
        Grew::GOOD,
        "a second SYN inside the request socket's window",
    )?;
    let d = Mib::TcpExt.read("EmbryonicRsts")? - resets;
    if d != 1 {
        return Err(failure!(
            "EmbryonicRsts grew by {d} after the second SYN, expected 1"
        ));
    }
    expect(
        p,
        &lsk,
        &[("TCPAOGood", 1)],
        Grew::GOOD,
        "the ACK of the first SYN-ACK, after the reset (a possible syncookie ACK)",
    )?;
    p.sync()?;
    no_connection(&lsk)
}

fn second_syn_client(p: &Peer<'_>) -> PeerResult {
    let k = key(p, 100, 100);
    sockets::register(p, &k);
    let (me, srv) = (sa(p.local_addr(), RAW_PORT), sa(p.remote_addr(), p.port()));
    p.sync()?;
    let srv_isn = handshake_start(p, &k, (100, 100))?;
    let m = mark(p)?;
    let syn2 = ISN.wrapping_add(5);
    let pkt = Seg::new(me, srv, syn2, 0, TcpFlags::SYN).signed(&k, (100, 100), (syn2, 0), 0)?;
    // Registered as crafted: a SYN with another ISN must not start a new connection in the
    // cross-check's books.
    inject_step(p, &[(&pkt, true)])?;
    let got = wait_since(p, m, Side::Server, (p.port(), RAW_PORT), 1, "the RST")?;
    let rst = got
        .iter()
        .find(|f| segment(f).is_some_and(|s| s.tcp_packet().rst()))
        .ok_or_else(|| {
            failure!(
                "no RST after the second SYN: {}",
                got.iter().map(describe).collect::<Vec<_>>().join("; ")
            )
        })?;
    let s = segment(rst).ok_or_else(|| failure!("not TCP"))?;
    let t = s.tcp_packet();
    if !(t.ack() && t.seq_number() == 0 && t.ack_number() == syn2.wrapping_add(1))
        || ao_ids(&s) != Some((100, 100, 12))
    {
        return Err(failure!(
            "the second SYN was answered with {}, expected RST+ACK SEQ 0 ACK {} KeyID 100 RNextKeyID 100",
            describe(rst),
            syn2.wrapping_add(1)
        ));
    }
    if !mac_verifies(rst, &k, me, srv, (syn2, 0), 0)? {
        return Err(failure!(
            "the embryonic reset does not verify with the traffic key of context {me} -> {srv}, ISNs ({syn2}, 0)"
        ));
    }
    if let Some(c) = p.capture() {
        c.register_modelled(ip_packet(rst));
    }
    p.diag(
        "embryonic RST verified: context client -> server, ISNs (SEQ of the second SYN, 0), SNE 0",
    );
    // The request socket is gone: the ACK of the handshake meets the listener.
    let m = mark(p)?;
    let next = (ISN.wrapping_add(1), srv_isn.wrapping_add(1));
    let ack = Seg::new(me, srv, next.0, next.1, TcpFlags::ACK).signed(
        &k,
        (100, 100),
        (ISN, srv_isn),
        0,
    )?;
    inject_step(p, &[(&ack, false)])?;
    let got = wait_since(
        p,
        m,
        Side::Server,
        (p.port(), RAW_PORT),
        1,
        "the listener's RST",
    )?;
    let rst = got
        .iter()
        .find(|f| segment(f).is_some_and(|s| s.tcp_packet().rst()))
        .ok_or_else(|| failure!("no RST to the late ACK: {}", describe(&got[0])))?;
    let s = segment(rst).ok_or_else(|| failure!("not TCP"))?;
    let t = s.tcp_packet();
    if t.ack() || t.seq_number() != next.1 || ao_ids(&s) != Some((100, 100, 12)) {
        return Err(failure!(
            "the late ACK was answered with {}, expected a RST with SEQ {}",
            describe(rst),
            next.1
        ));
    }
    if !mac_verifies(rst, &k, me, srv, (next.0, 0), 0)? {
        return Err(failure!(
            "the listener's RST does not verify with context {me} -> {srv}, ISNs ({}, 0)",
            next.0
        ));
    }
    if let Some(c) = p.capture() {
        c.register_modelled(ip_packet(rst));
    }
    p.sync()
}

/// Listener keys 1:2 and 3:4 at the SYN, 5:6 only at the ACK (client view: 2:1, 4:3, 6:5).
fn rotated_server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 8)?;
    let (k1, k2, k3) = (key(p, 1, 2), key(p, 3, 4), key(p, 5, 6));
    sockets::add_key(p, &lsk, &k1)?;
    sockets::add_key(p, &lsk, &k2)?;
    p.sync()?;
    expect(
        p,
        &lsk,
        &[("TCPAOGood", 1)],
        Grew::GOOD,
        "a SYN with KeyID 2 asking for SendID 3",
    )?;
    p.sync()?; // the client saw the SYN-ACK
    for k in [&k1, &k2] {
        lsk.del_ao_key_async(&k.to_ao_key()?.selector())
            .map_err(|e| failure!("TCP_AO_DEL_KEY with del_async of key {k:?} failed: {e}"))?;
    }
    sockets::add_key(p, &lsk, &k3)?;
    p.sync()?; // keys rotated
    expect(
        p,
        &lsk,
        &[("TCPAOGood", 1)],
        Grew::GOOD,
        "the ACK signed with the new key 5:6",
    )?;
    let sk = extras::accept_one(p, &lsk)?;
    let info = sk
        .ao_info()
        .or_fail("getsockopt(TCP_AO_INFO) failed")?
        .ok_or_else(|| failure!("the accepted socket has no TCP-AO state"))?;
    if (info.current_key, info.rnext_key) != (Some(5), Some(6)) {
        return Err(failure!(
            "the accepted socket has Current_key {:?} RNext_key {:?}, expected 5 and 6 (the only key; the SYN asked for SendID 3 and RecvID 2, both deleted)",
            info.current_key,
            info.rnext_key
        ));
    }
    sockets::write_all(p, &sk, &[0x5a; 64], p.deadline())?;
    p.sync()
}

fn rotated_client(p: &Peer<'_>) -> PeerResult {
    let srv_addr = p.remote_addr();
    let keys = [
        TestKey::new(srv_addr, 2, 1),
        TestKey::new(srv_addr, 4, 3),
        TestKey::new(srv_addr, 6, 5),
    ];
    for k in &keys {
        sockets::register(p, k);
    }
    let (me, srv) = (sa(p.local_addr(), RAW_PORT), sa(srv_addr, p.port()));
    p.sync()?;
    let srv_isn = handshake_start(p, &keys[0], (2, 3))?;
    p.sync()?; // the server may rotate
    p.sync()?; // rotated
    let m = mark(p)?;
    let next = (ISN.wrapping_add(1), srv_isn.wrapping_add(1));
    let ack = Seg::new(me, srv, next.0, next.1, TcpFlags::ACK).signed(
        &keys[2],
        (6, 5),
        (ISN, srv_isn),
        0,
    )?;
    inject_step(p, &[(&ack, false)])?;
    let data = p
        .wait_for(p.deadline(), || {
            Ok(since(p, m, Side::Server, p.port(), RAW_PORT)?
                .into_iter()
                .find(|f| segment(f).is_some_and(|s| !s.tcp_packet().payload().is_empty())))
        })?
        .ok_or_else(|| failure!("the new connection sent no data"))?;
    let s = segment(&data).ok_or_else(|| failure!("not TCP"))?;
    if ao_ids(&s) != Some((5, 6, 12)) {
        return Err(failure!(
            "the new connection's data is {}, expected KeyID 5 RNextKeyID 6",
            describe(&data)
        ));
    }
    if !mac_verifies(&data, &keys[2], srv, me, (srv_isn, ISN), 0)? {
        return Err(failure!(
            "the new connection's data does not verify with key 5:6 and the handshake's ISNs"
        ));
    }
    p.sync()
}

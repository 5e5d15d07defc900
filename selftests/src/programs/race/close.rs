// SPDX-License-Identifier: MIT OR Apache-2.0
//! `close-in-flight`: `close()` while the peer's segments are in flight.
//!
//! Every iteration the client connects with K = 100:100 and the server accepts. A, the client,
//! `close()`s its socket without reading; B, the server, writes 1 KiB to it. Whatever the
//! order, the client must answer with an RST: `close()` with unread data resets at once, and
//! data that reaches the orphan after its FIN is an abort on data (RFC 1122 §4.2.2.13). The
//! RST is sent by a socket that is already being torn down, and it must still be signed: the
//! server, which requires TCP-AO for the client, drops an unsigned RST (`TCPAORequired`) and
//! its connection would linger. So each iteration waits until the server's socket is CLOSE,
//! and at the end every captured segment of the case, both ways (SYNs, data, FINs, ACKs,
//! RSTs), must carry a TCP-AO option, each verified by tcpao-refimpl, and `TCPAORequired` must
//! not have moved on the server.

use socket2::Socket;
use tcpao_sys::TcpAoExt;

use super::{Race, RaceTest, TCP_CLOSE, abort_close, key, mib};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::extras;
use crate::registry::Test;
use crate::sockets;
use crate::topology::Side;

const K: u8 = 100;

/// The case of this file.
pub(super) fn tests() -> Vec<Test> {
    RaceTest::new(
        "close-in-flight",
        "client close()s without reading",
        "server writes 1 KiB to the client",
    )
    .build(server, client)
}

/// State of one run.
#[derive(Debug, Default)]
pub(super) struct State;

/// Listener ports used in turn: a fresh listener every iteration, so that a late segment of an
/// old connection (a retransmitted FIN of the client's orphan) meets no socket instead of the
/// listener, which would answer with an RST signed for no connection (ISNs it cannot know,
/// RFC 5925 §7.7).
const PORTS: u16 = 1000;

fn port(p: &Peer<'_>, i: u64) -> u16 {
    p.port() + (i % u64::from(PORTS)) as u16
}

fn server(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let k = key(p, K);
    let ao = k.to_ao_key()?;
    sockets::register(p, &k);
    let before = mib()?;
    p.sync()?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    let data = vec![0xa5u8; 1024];
    let mut i = 0;
    while pair.run_b() {
        let lsk = sockets::listen(p, port(p, i), 1)?;
        i += 1;
        lsk.add_ao_key(&ao)
            .map_err(|e| failure!("adding K to the listener failed: {e}"))?;
        p.sync()?;
        let sk = extras::accept_one(p, &lsk)?;
        sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
        p.sync()?;
        if !pair.start_b() {
            break;
        }
        let res = std::io::Write::write(&mut &sk, &data);
        if !pair.end_b() {
            break;
        }
        match res {
            Ok(_) => {}
            // The client's RST came first.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ECONNRESET | nix::libc::EPIPE)
                ) => {}
            Err(e) => return Err(failure!("write() failed: {e}")),
        }
        wait_closed(p, &sk, race)?;
        p.sync()?;
        drop(sk);
        drop(lsk);
    }
    guard.disarm();
    let after = mib()?;
    let required = after.ao_required().saturating_sub(before.ao_required());
    if required != 0 {
        return Err(failure!(
            "the server dropped {required} unsigned segment(s) from the client (TCPAORequired)"
        ));
    }
    p.sync()?;
    all_signed(p)
}

/// Wait until the server's connection is closed by the client's (signed) RST.
fn wait_closed(p: &Peer<'_>, sk: &Socket, race: &Race<State>) -> PeerResult {
    let mut state = 0;
    let closed = p.wait_for(p.deadline(), || {
        state = tcpao_sys::repair::tcp_info(sk)
            .or_fail("TCP_INFO failed")?
            .state;
        Ok((state == TCP_CLOSE).then_some(()))
    })?;
    if closed.is_none() {
        let c = sk.ao_counters().unwrap_or_default();
        return Err(failure!(
            "the server's connection is still in TCP state {state} {:?} after the client's close(): no signed RST arrived (socket pkt_ao_required {})",
            p.timeout(),
            c.ao_required
        ));
    }
    match sk.take_error() {
        Ok(Some(e)) => race.tally.add(format!(
            "server saw {}",
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))
                .to_string()
                .split(':')
                .next()
                .unwrap_or("?")
        )),
        _ => race.tally.add("server saw no error"),
    }
    Ok(())
}

/// Every captured segment to or from the listeners' ports carries a TCP-AO option.
fn all_signed(p: &Peer<'_>) -> PeerResult {
    let cap = p
        .capture()
        .ok_or_else(|| failure!("this case needs the packet capture, which is off"))?;
    let ports = p.port()..p.port() + PORTS;
    let frames: Vec<_> = cap
        .frames()
        .into_iter()
        .filter(|f| {
            extras::segment(f).is_some_and(|s| {
                let t = s.tcp_packet();
                ports.contains(&t.src_port()) || ports.contains(&t.dst_port())
            })
        })
        .collect();
    let mut unsigned = Vec::new();
    let mut total = 0;
    for f in &frames {
        let Some(s) = extras::segment(f) else {
            continue;
        };
        total += 1;
        let t = s.tcp_packet();
        let ao = t.auth_options().ok().and_then(|a| a.ao);
        if ao.is_none() {
            unsigned.push(format!(
                "{} {}:{} -> {}:{} flags {:?} seq {}",
                if f.from == Side::Client {
                    "client"
                } else {
                    "server"
                },
                s.src,
                t.src_port(),
                s.dst,
                t.dst_port(),
                t.flags(),
                t.seq_number()
            ));
        }
    }
    if !unsigned.is_empty() {
        return Err(failure!(
            "{} of {total} captured segments carry no TCP-AO option, the first: {}",
            unsigned.len(),
            unsigned[0]
        ));
    }
    p.diag(format!("all {total} captured segments carry TCP-AO"));
    Ok(())
}

fn client(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let k = key(p, K);
    let ao = k.to_ao_key()?;
    sockets::register(p, &k);
    p.sync()?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    let mut i = 0;
    while race.run_a() {
        let sk = sockets::client_socket(p)?;
        sk.add_ao_key(&ao)
            .map_err(|e| failure!("adding K failed: {e}"))?;
        p.sync()?;
        sockets::connect_ok(p, &sk, p.remote_addr(), port(p, i))?;
        i += 1;
        p.sync()?;
        if !pair.start_a() {
            abort_close(sk);
            break;
        }
        drop(sk);
        if pair.end_a().is_none() {
            break;
        }
        p.sync()?;
    }
    guard.disarm();
    p.sync()
}

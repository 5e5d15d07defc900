// SPDX-License-Identifier: MIT OR Apache-2.0
//! Shared pieces of the programs upstream does not have (`exclude-opt`, `vrf-keys`, `maclen`,
//! `algorithms`, `rotation`, `inject`): an echo connection with a chosen key on each side,
//! and queries on the live capture (the segments of one flow, its ISNs, waiting until the
//! capture has seen every byte).

use std::net::IpAddr;
use std::time::Instant;

use socket2::Socket;
use tcpao_refimpl::{Connection, Direction, FlowValidator, SegmentRef, Verdict};

use crate::capture::{Frame, xcheck};
use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::PeerResult;
use crate::peers::Peer;
use crate::sockets::{self, TestKey};
use crate::topology::Side;

/// Messages the echo exchanges in the extras programs (see [`echo_client`]).
pub const MESSAGES: usize = 10;
/// Size of each echo message.
pub const MESSAGE_LEN: usize = 200;

/// Server half of an echo connection: listen, add `key`, accept, echo until EOF, then assert
/// that the accepted socket saw exactly `GOOD`.
///
/// # Errors
/// A failure sentence.
pub fn echo_server(p: &Peer<'_>, key: &TestKey) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, key)?;
    p.sync()?;
    let sk = accept_one(p, &lsk)?;
    let before = Counters::of(&sk)?;
    let served = sockets::echo_server(p, &sk, p.deadline())?;
    if served != (MESSAGES * MESSAGE_LEN) as u64 {
        return Err(failure!(
            "the server echoed {served} bytes, the client sent {}",
            MESSAGES * MESSAGE_LEN
        ));
    }
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("server counters after the echo: {e}"))
}

/// Accept one connection within [`Peer::timeout`] or fail.
///
/// # Errors
/// A failure sentence.
pub fn accept_one(p: &Peer<'_>, lsk: &Socket) -> PeerResult<Socket> {
    sockets::accept(p, lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))
}

/// Client half: add `key`, connect, echo [`MESSAGES`], assert `GOOD` only, close, and return
/// the captured segments of the flow once the capture has seen all data both ways.
///
/// # Errors
/// A failure sentence.
pub fn echo_client(p: &Peer<'_>, key: &TestKey) -> PeerResult<Vec<Frame>> {
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, key)?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, MESSAGES, MESSAGE_LEN, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("client counters after the echo: {e}"))?;
    drop(sk);
    let total = (MESSAGES * MESSAGE_LEN) as u32;
    wait_flow_bytes(p, p.port(), total, total)
}

/// The decoded TCP segment of a frame (`None` for non-TCP frames or malformed ones).
pub fn segment(f: &Frame) -> Option<SegmentRef<'_>> {
    xcheck::decode(f).ok().flatten()
}

/// The captured frames of the flow with server port `port`, in capture order.
///
/// # Errors
/// When the test runs without a capture.
pub fn flow_frames(p: &Peer<'_>, port: u16) -> PeerResult<Vec<Frame>> {
    let cap = p
        .capture()
        .ok_or_else(|| failure!("this test needs the packet capture, which is off"))?;
    Ok(cap
        .frames()
        .into_iter()
        .filter(|f| {
            segment(f).is_some_and(|s| {
                let t = s.tcp_packet();
                t.src_port() == port || t.dst_port() == port
            })
        })
        .collect())
}

/// ISNs of a flow, `[server, client]`, from its SYN and SYN-ACK.
pub fn isns(frames: &[Frame]) -> [Option<u32>; 2] {
    let mut out = [None, None];
    for f in frames {
        if let Some(s) = segment(f) {
            let t = s.tcp_packet();
            if t.syn() {
                let i = usize::from(f.from == Side::Client);
                out[i].get_or_insert(t.seq_number());
            }
        }
    }
    out
}

/// Highest byte offset (relative to the ISN, SYN excluded) each side's data reached,
/// `[server, client]`.
pub fn data_reached(frames: &[Frame]) -> [u32; 2] {
    let isn = isns(frames);
    let mut out = [0u32; 2];
    for f in frames {
        let i = usize::from(f.from == Side::Client);
        let (Some(s), Some(isn)) = (segment(f), isn[i]) else {
            continue;
        };
        let t = s.tcp_packet();
        let len = t.payload().len() as u32;
        if len == 0 {
            continue;
        }
        let end = t
            .seq_number()
            .wrapping_sub(isn)
            .wrapping_sub(1)
            .wrapping_add(len);
        out[i] = out[i].max(end);
    }
    out
}

/// Wait until the capture has seen `client_bytes` of data from the client and
/// `server_bytes` from the server on the flow with server port `port`; return its frames.
///
/// # Errors
/// A failure sentence at the deadline.
pub fn wait_flow_bytes(
    p: &Peer<'_>,
    port: u16,
    client_bytes: u32,
    server_bytes: u32,
) -> PeerResult<Vec<Frame>> {
    let mut last = [0, 0];
    let got = p.wait_for(p.deadline(), || {
        let frames = flow_frames(p, port)?;
        last = data_reached(&frames);
        Ok((last[1] >= client_bytes && last[0] >= server_bytes).then_some(frames))
    })?;
    got.ok_or_else(|| {
        failure!(
            "the capture saw {} of {client_bytes} client bytes and {} of {server_bytes} server bytes within {:?}",
            last[1],
            last[0],
            p.timeout()
        )
    })
}

/// Wait until `pred` holds for a fresh counter snapshot of `sk`; return that snapshot.
///
/// # Errors
/// A failure sentence naming `what` at the deadline.
pub fn wait_counters(
    p: &Peer<'_>,
    sk: &Socket,
    deadline: Instant,
    what: &str,
    mut pred: impl FnMut(&Counters) -> bool,
) -> PeerResult<Counters> {
    let mut last = None;
    let got = p.wait_for(deadline, || {
        let c = Counters::of(sk)?;
        let ok = pred(&c);
        last = Some(c.clone());
        Ok(ok.then_some(c))
    })?;
    got.ok_or_else(|| {
        failure!(
            "{what} did not happen before the deadline; counters: {}",
            last.map_or_else(String::new, |c| c.to_string())
        )
    })
}

/// The flow's connection seen from the client, from its SYN/SYN-ACK.
///
/// # Errors
/// A failure sentence when the handshake is not in the capture.
pub fn client_connection(p: &Peer<'_>, frames: &[Frame]) -> PeerResult<Connection> {
    let [Some(server_isn), Some(client_isn)] = isns(frames) else {
        return Err(failure!(
            "the capture has no complete handshake of the flow on port {}",
            p.port()
        ));
    };
    let (client, server): (IpAddr, IpAddr) = match p.side() {
        Side::Client => (p.local_addr(), p.remote_addr()),
        Side::Server => (p.remote_addr(), p.local_addr()),
    };
    let cport = frames
        .iter()
        .find_map(|f| {
            segment(f).and_then(|s| (f.from == Side::Client).then(|| s.tcp_packet().src_port()))
        })
        .unwrap_or(0);
    Ok(Connection::new(
        (client, cport).into(),
        (server, p.port()).into(),
        client_isn,
        server_isn,
    ))
}

/// Verdict of the reference for one captured segment, checked from the client's view with
/// `mkt` (the client's key) and SNE 0.
pub fn verdict(v: &FlowValidator, f: &Frame) -> Option<Verdict> {
    let s = segment(f)?;
    let dir = match f.from {
        Side::Client => Direction::LocalToRemote,
        Side::Server => Direction::RemoteToLocal,
    };
    Some(v.check(dir, &s, 0))
}

/// Whether a segment carries a TCP option other than TCP-AO, NOP and EOL.
pub fn has_other_options(s: &SegmentRef<'_>) -> bool {
    use tcpao_refimpl::wire::TcpOption;
    s.tcp_packet().options_iter().any(|o| {
        !matches!(
            o,
            Ok(TcpOption::Ao(_) | TcpOption::NoOperation | TcpOption::EndOfList)
        )
    })
}

/// Kinds of the options of a segment, in order (NOP and EOL left out).
pub fn option_kinds(s: &SegmentRef<'_>) -> Vec<u8> {
    let opts = s.tcp_packet().options().to_vec();
    let mut out = Vec::new();
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            k => {
                out.push(k);
                i += usize::from(opts.get(i + 1).copied().unwrap_or(1).max(2));
            }
        }
    }
    out
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! `inject`: segments crafted with tcpao-refimpl's signing API and injected into an
//! established connection. Upstream can only produce bad segments by misconfiguring a peer
//! (wrong password, wrong IDs), which never reaches an established connection with a wrong
//! MAC, a wrong SNE, an unknown KeyID or a deleted key.
//!
//! The client connects (key A = 100:100, and B = 101:101 on both sides) and sends 100 bytes;
//! the server reads them. The client learns the connection's ISNs from the capture's SYN and
//! SYN-ACK and builds pure ACKs with its next SEQ/ACK numbers (duplicate ACKs: accepted ones
//! change nothing in TCP and draw no reply). It sends them from a raw socket with its own IP
//! header (`IP_HDRINCL` / `IPV6_HDRINCL`) in its namespace, past its TCP stack. Every case
//! first injects a correctly signed ACK: the server's `TCPAOGood`, socket `pkt_good` and key
//! `pkt_good` each grow by exactly 1, which proves the injection path. Then, each by exactly 1
//! and nothing else:
//!
//! - `bad-mac` (one MAC bit flipped): `TCPAOBad`, `pkt_bad`, key `pkt_bad`;
//! - `unknown-keyid` (KeyID 77): `TCPAOKeyNotFound`, `pkt_key_not_found`;
//! - `wrong-sne` (MAC over SNE 1 instead of 0): `TCPAOBad`, `pkt_bad`, key `pkt_bad`;
//! - `stale-key`: a B-signed ACK is GOOD on key B; the server deletes B; the same kind of
//!   ACK is then `TCPAOKeyNotFound`, `pkt_key_not_found`;
//! - `unsigned` (no TCP-AO option): `TCPAORequired`, `pkt_ao_required`;
//! - `md5-bad` (both peers TCP-MD5 instead): a correctly signed MD5 ACK moves nothing, one with a
//!   flipped digest bit moves `TCPMD5Failure` only.
//!
//! The crafted bad segments are registered with the capture, so its cross-check does not
//! hold them to "signed by the kernel" while still matching the server's bad counters.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tcpao_refimpl::wire::{TcpFlags, TcpRepr};
use tcpao_refimpl::{AoSign, Auth, Connection, IpHeader, TrafficKeys, build_segment};
use tcpao_sys::TcpAoExt as _;

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::programs::extras::{self, segment};
use crate::registry::Test;
use crate::sockets::{self, TestKey};
use crate::topology::Side;

const A: u8 = 100;
const B: u8 = 101;
/// Bytes the client sends before the injections ([`send_data`], [`learn_flow`]).
pub(crate) const DATA: usize = 100;
const MD5_PASSWORD: &[u8] = b"An MD5 secret for the injection test";

/// One injected segment's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Craft {
    /// Correctly signed with key `id`.
    Good(u8),
    /// Signed with A, one MAC bit flipped.
    BadMac,
    /// KeyID 77, MAC with A's traffic key.
    UnknownKeyId,
    /// Signed with A over SNE 1.
    WrongSne,
    /// No TCP-AO option.
    Unsigned,
    /// TCP-MD5, correct.
    Md5Good,
    /// TCP-MD5, one digest bit flipped.
    Md5Bad,
}

/// A case: what to inject after the proof-of-path segment, and what must grow.
#[derive(Debug, Clone, Copy)]
struct Case {
    slug: &'static str,
    craft: Craft,
    grew: Grew,
    counter: &'static str,
}

const CASES: [Case; 4] = [
    Case {
        slug: "bad-mac",
        craft: Craft::BadMac,
        grew: Grew::BAD,
        counter: "TCPAOBad",
    },
    Case {
        slug: "unknown-keyid",
        craft: Craft::UnknownKeyId,
        grew: Grew::KEY_NOT_FOUND,
        counter: "TCPAOKeyNotFound",
    },
    Case {
        slug: "wrong-sne",
        craft: Craft::WrongSne,
        grew: Grew::BAD,
        counter: "TCPAOBad",
    },
    Case {
        slug: "unsigned",
        craft: Craft::Unsigned,
        grew: Grew::AO_REQUIRED,
        counter: "TCPAORequired",
    },
];

/// The program's tests: 6 cases × 2 families.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    for c in CASES {
        v.extend(PairTest::new("inject", c.slug).ao().build(
            move |p| ao_server(p, Some(c)),
            move |p| ao_client(p, Some(c)),
        ));
    }
    v.extend(
        PairTest::new("inject", "stale-key")
            .ao()
            .build(|p| ao_server(p, None), |p| ao_client(p, None)),
    );
    v.extend(
        PairTest::new("inject", "md5-bad")
            .requires(&[crate::probe::Feature::TcpMd5])
            .build(md5_server, md5_client),
    );
    v
}

fn key(p: &Peer<'_>, id: u8) -> TestKey {
    TestKey::new(p.remote_addr(), id, id)
}

/// Server side of an AO case (`None` = stale-key).
fn ao_server(p: &Peer<'_>, case: Option<Case>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p, B))?;
    sockets::add_key(p, &lsk, &key(p, A))?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    let mut buf = [0u8; DATA];
    read_exact(p, &sk, &mut buf)?;
    // Step 1: a correctly signed ACK (A, or B for stale-key).
    let good_id = if case.is_some() { A } else { B };
    expect(
        p,
        &sk,
        "TCPAOGood",
        Grew::GOOD,
        Some(good_id),
        "the correctly signed ACK",
    )?;
    match case {
        Some(c) => expect(p, &sk, c.counter, c.grew, Some(A), c.slug)?,
        None => {
            let sel = key(p, B).to_ao_key()?.selector();
            sk.del_ao_key(&sel)
                .map_err(|e| failure!("deleting key B on the server failed: {e}"))?;
            expect(
                p,
                &sk,
                "TCPAOKeyNotFound",
                Grew::KEY_NOT_FOUND,
                None,
                "the ACK signed with the deleted key B",
            )?;
        }
    }
    p.sync() // the client checked its counters; the socket may close
}

/// Snapshot, let the client inject (barrier), wait until netns `counter` grew, then assert
/// exactly `grew`, each moved counter by exactly 1 (and, with `key`, that key's counter).
fn expect(
    p: &Peer<'_>,
    sk: &Socket,
    counter: &str,
    grew: Grew,
    key: Option<u8>,
    what: &str,
) -> PeerResult {
    let before = Counters::of(sk)?;
    p.sync()?; // the client injects now
    let after = extras::wait_counters(
        p,
        sk,
        p.deadline(),
        &format!("{counter} growing after {what}"),
        |c| c.ns_delta(&before, counter) > 0,
    )?;
    p.sync()?; // injection step done
    after
        .assert_grew_exactly(&before, grew)
        .map_err(|e| failure!("after {what}: {e}"))?;
    let mut problems = Vec::new();
    for n in crate::counters::TCPEXT_COUNTERS {
        let d = after.ns_delta(&before, n);
        if d > 1 {
            problems.push(format!("{n} grew by {d}"));
        }
    }
    if let (Some(b), Some(a)) = (before.sock, after.sock) {
        for (n, x, y) in [
            ("pkt_good", b.good, a.good),
            ("pkt_bad", b.bad, a.bad),
            ("pkt_key_not_found", b.key_not_found, a.key_not_found),
            ("pkt_ao_required", b.ao_required, a.ao_required),
        ] {
            if y > x + 1 {
                problems.push(format!("socket {n} grew by {}", y - x));
            }
        }
    }
    if let Some(id) = key {
        let k = |c: &Counters| {
            c.keys
                .iter()
                .find(|k| k.send_id == id)
                .map(|k| (k.good, k.bad))
        };
        if let (Some((g0, b0)), Some((g1, b1))) = (k(&before), k(&after)) {
            if grew.intersects(Grew::KEY_GOOD | Grew::KEY_BAD) && (g1 + b1) - (g0 + b0) != 1 {
                problems.push(format!(
                    "key {id} counters went {g0}/{b0} => {g1}/{b1}, expected one step"
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(failure!(
            "after {what} more than one segment was counted: {}",
            problems.join("; ")
        ));
    }
    p.diag(format!("{what}: {counter} +1, nothing else"));
    Ok(())
}

/// The raw socket the client injects with (`IP_HDRINCL` / `IPV6_HDRINCL`).
fn raw_socket(p: &Peer<'_>) -> PeerResult<Socket> {
    raw_socket_to(p.remote_addr())
}

/// A raw socket (`IPPROTO_RAW`, `IP_HDRINCL` / `IPV6_HDRINCL`) for packets to `dst`'s family.
///
/// # Errors
/// When the socket cannot be created.
pub(crate) fn raw_socket_to(dst: IpAddr) -> PeerResult<Socket> {
    let (domain, v6) = match dst {
        IpAddr::V4(_) => (Domain::IPV4, false),
        IpAddr::V6(_) => (Domain::IPV6, true),
    };
    let sk = Socket::new(domain, Type::RAW, Some(Protocol::from(255)))
        .or_fail("socket(SOCK_RAW, IPPROTO_RAW) failed")?;
    if v6 {
        sk.set_header_included_v6(true)
            .or_fail("IPV6_HDRINCL failed")?;
    } else {
        sk.set_header_included_v4(true)
            .or_fail("IP_HDRINCL failed")?;
    }
    Ok(sk)
}

/// What the client knows about its connection from the capture.
pub(crate) struct Flow {
    /// The connection seen from the client (ports and ISNs).
    pub(crate) conn: Connection,
    /// The client's next SEQ.
    pub(crate) seq: u32,
    /// The client's next ACK.
    pub(crate) ack: u32,
    /// The window the client last advertised.
    pub(crate) window: u16,
}

/// Learn ISNs, next SEQ/ACK and the window from the capture once it saw the client's data.
pub(crate) fn learn_flow(p: &Peer<'_>) -> PeerResult<Flow> {
    let frames = extras::wait_flow_bytes(p, p.port(), DATA as u32, 0)?;
    let conn = extras::client_connection(p, &frames)?;
    let window = frames
        .iter()
        .rev()
        .find(|f| f.from == Side::Client)
        .and_then(segment)
        .map_or(1000, |s| s.tcp_packet().window_len());
    Ok(Flow {
        seq: conn.local_isn.wrapping_add(1 + DATA as u32),
        ack: conn.remote_isn.wrapping_add(1),
        conn,
        window,
    })
}

/// Build the IP packet of `craft` for `flow`.
fn craft(p: &Peer<'_>, flow: &Flow, what: Craft) -> PeerResult<Vec<u8>> {
    let tcp = TcpRepr {
        src_port: flow.conn.local.port(),
        dst_port: flow.conn.remote.port(),
        seq_number: flow.seq,
        ack_number: flow.ack,
        flags: TcpFlags::ACK,
        window_len: flow.window,
        urgent_at: 0,
        options: &[],
        payload: &[],
    };
    let ip = IpHeader {
        ident: 0x5a5a,
        ..IpHeader::new(flow.conn.local.ip(), flow.conn.remote.ip())
    };
    let ao = |id: u8| -> PeerResult<TrafficKeys> {
        let mkt = key(p, id)
            .mkt()
            .ok_or_else(|| failure!("no reference MKT"))?;
        TrafficKeys::derive(&mkt, &flow.conn).map_err(|e| failure!("deriving traffic keys: {e}"))
    };
    let sign = |keys: &TrafficKeys, key_id: u8, sne: u32| -> PeerResult<Vec<u8>> {
        let a = AoSign {
            key: &keys.send_other,
            mac_len: 12,
            key_id,
            // Always ask for A: the server's Current_key must not move to B.
            rnext_key_id: A,
            sne,
            include_options: true,
        };
        build_segment(&ip, &tcp, &Auth::Ao(a)).map_err(|e| failure!("building the segment: {e}"))
    };
    let flip = |mut pkt: Vec<u8>, from_end: usize| -> PeerResult<Vec<u8>> {
        // The MAC/digest ends the option area, which ends at the end of this payload-less
        // packet; the TCP checksum is fixed so the segment reaches the MAC check.
        let i = pkt.len() - from_end;
        pkt[i] ^= 0x01;
        tcpao_refimpl::sign::fill_tcp_checksum(&mut pkt)
            .map_err(|e| failure!("fixing the checksum: {e}"))?;
        Ok(pkt)
    };
    Ok(match what {
        Craft::Good(id) => sign(&ao(id)?, id, 0)?,
        Craft::BadMac => flip(sign(&ao(A)?, A, 0)?, 1)?,
        Craft::UnknownKeyId => sign(&ao(A)?, 77, 0)?,
        Craft::WrongSne => sign(&ao(A)?, A, 1)?,
        Craft::Unsigned => build_segment(&ip, &tcp, &Auth::None)
            .map_err(|e| failure!("building the segment: {e}"))?,
        Craft::Md5Good => build_segment(&ip, &tcp, &Auth::Md5(MD5_PASSWORD))
            .map_err(|e| failure!("building the segment: {e}"))?,
        Craft::Md5Bad => flip(
            build_segment(&ip, &tcp, &Auth::Md5(MD5_PASSWORD))
                .map_err(|e| failure!("building the segment: {e}"))?,
            1,
        )?,
    })
}

/// Send a crafted packet (to the destination in its IP header); register it with the capture:
/// as crafted when it is deliberately wrong, as injected otherwise (no peer's kernel wrote it,
/// so the cross-check's field rule leaves it alone).
pub(crate) fn inject(p: &Peer<'_>, raw: &Socket, pkt: &[u8], wrong: bool) -> PeerResult {
    if let Some(c) = p.capture() {
        if wrong {
            c.register_crafted(pkt);
        } else {
            c.register_injected(pkt);
        }
    }
    let to = tcpao_refimpl::SegmentRef::parse(pkt).map_or(p.remote_addr(), |s| s.dst);
    let dst = SockAddr::from(SocketAddr::new(to, 0));
    let n = raw
        .send_to(pkt, &dst)
        .or_fail("sending the crafted segment failed")?;
    if n != pkt.len() {
        return Err(failure!(
            "sent {n} of {} bytes of the crafted segment",
            pkt.len()
        ));
    }
    Ok(())
}

/// Client side: connect, send data, then for each server step inject at its barrier.
fn ao_client(p: &Peer<'_>, case: Option<Case>) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &key(p, B))?;
    sockets::add_key(p, &sk, &key(p, A))?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    send_data(p, &sk)?;
    let flow = learn_flow(p)?;
    let raw = raw_socket(p)?;
    let steps: Vec<(Craft, bool)> = match case {
        Some(c) => vec![
            (Craft::Good(A), false),
            (c.craft, c.craft != Craft::UnknownKeyId),
        ],
        None => vec![(Craft::Good(B), false), (Craft::Good(B), false)],
    };
    let before = Counters::of(&sk)?;
    for (what, wrong) in steps {
        let pkt = craft(p, &flow, what)?;
        p.sync()?; // the server took its snapshot
        inject(p, &raw, &pkt, wrong)?;
        p.sync()?; // the server saw it
    }
    // Nothing came back to the client during the injections (checked before the final
    // barrier: after it the server closes and its FIN arrives).
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::empty())
        .map_err(|e| failure!("the client's counters moved during the injections: {e}"))?;
    p.sync()
}

/// Write the data and wait until it is acknowledged.
pub(crate) fn send_data(p: &Peer<'_>, sk: &Socket) -> PeerResult {
    (&*sk).write_all(&[7u8; DATA]).or_fail("write() failed")?;
    p.wait_for(p.deadline(), || {
        let i = tcpao_sys::repair::tcp_info(sk).or_fail("TCP_INFO failed")?;
        Ok((i.unacked == 0).then_some(()))
    })?
    .ok_or_else(|| failure!("the server did not acknowledge the data in time"))
}

/// Read exactly `buf.len()` bytes from the non-blocking `sk`.
pub(crate) fn read_exact(p: &Peer<'_>, sk: &Socket, buf: &mut [u8]) -> PeerResult {
    use std::io::Read;
    let mut got = 0;
    while got < buf.len() {
        match (&*sk).read(&mut buf[got..]) {
            Ok(0) => return Err(failure!("the connection closed after {got} bytes")),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, nix::poll::PollFlags::POLLIN, p.deadline(), || false)? {
                    return Err(failure!("read() timed out after {got} bytes"));
                }
            }
            Err(e) => return Err(failure!("read() failed: {e}")),
        }
    }
    Ok(())
}

fn md5_server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_md5_key(
        p,
        &lsk,
        p.remote_addr(),
        p.family().host_prefix(),
        MD5_PASSWORD,
    )?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    let mut buf = [0u8; DATA];
    read_exact(p, &sk, &mut buf)?;
    // The good ACK then the bad one, in order on the veth: when TCPMD5Failure has moved, both
    // were processed, and only TCPMD5Failure may have moved.
    expect(
        p,
        &sk,
        "TCPMD5Failure",
        Grew::NS_MD5_FAILURE,
        None,
        "a correct and a bad TCP-MD5 ACK",
    )
}

fn md5_client(p: &Peer<'_>) -> PeerResult {
    let sk = sockets::md5_client_socket(p, MD5_PASSWORD)?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    send_data(p, &sk)?;
    let flow = learn_flow(p)?;
    let raw = raw_socket(p)?;
    let good = craft(p, &flow, Craft::Md5Good)?;
    let bad = craft(p, &flow, Craft::Md5Bad)?;
    p.sync()?;
    inject(p, &raw, &good, false)?;
    inject(p, &raw, &bad, true)?;
    p.sync()?;
    Ok(())
}

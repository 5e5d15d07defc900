// SPDX-License-Identifier: MIT OR Apache-2.0
//! `paths`: the TCP-AO paths of the kernel no other program reaches, each with the behaviour
//! that must be seen there (counters, errno, the segments the kernel sends and how they are
//! signed). They were found with the lab's coverage report (`tcpao-selftests coverage`):
//!
//! - `listener`: RSTs a listener sends (`tcp_ao_prepare_reset()` for `TCP_LISTEN`), ACKs
//!   of a possible syncookie, segments a listener drops unverified, a dual-stack listener;
//! - `reqsk`: ACKs a request socket sends for an out-of-window segment
//!   (`tcp_v{4,6}_reqsk_send_ack()`), the ACKs it refuses, the RST of an embryonic reset,
//!   keys deleted and added on the listener between SYN and ACK;
//! - `syncookie`: TCP-AO with SYN cookies (`net.ipv4.tcp_syncookies = 2`);
//! - `established`: a SYN into an established connection, invalid authentication options,
//!   ICMP errors RFC 5925 §7.8 does not list and sockets it does not cover;
//! - `timewait`: what a TIME-WAIT socket answers (ICMP, unsigned and unknown-key segments);
//! - `synsent`: segments and ICMP errors a connecting socket gets before the SYN-ACK;
//! - `mapped`: IPv4-mapped IPv6 sockets and keys;
//! - `keys`: keys for other peers at `connect()`, the first key of an established socket in
//!   repair mode;
//! - `uapi`: socket-option errnos the other programs leave out, `del_async` of a listener's
//!   Current_key.
//!
//! Segments are crafted the way the `inject` program does it: tcpao-refimpl derives the
//! traffic key and signs, a raw socket (`IP_HDRINCL` / `IPV6_HDRINCL`) sends. Where the kernel
//! keys a segment it sends from something the generic cross-check cannot know (the SEQ of the
//! segment a listener answers, say), the test checks the MAC with its own model of that path
//! (`mac_verifies`) and registers the segment with [`crate::capture::Capture::register_modelled`].

mod established;
mod keys;
mod listener;
mod mapped;
mod reqsk;
mod syncookie;
mod synsent;
mod timewait;
mod uapi;

use std::net::{IpAddr, SocketAddr};

use socket2::Socket;
use tcpao_refimpl::wire::{TcpFlags, TcpRepr};
use tcpao_refimpl::{AoSign, Auth, Context, IpHeader, SegmentRef, TrafficKey, build_segment};

use crate::capture::Frame;
use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::extras::{self, segment};
use crate::programs::inject;
use crate::registry::Test;
use crate::sockets::TestKey;
use crate::topology::Side;

/// The program's name.
const PROGRAM: &str = "paths";

/// The client port of flows a test crafts from scratch (no client socket uses it).
const RAW_PORT: u16 = 40_123;

/// The program's tests.
pub fn tests() -> Vec<Test> {
    let mut v = listener::tests();
    v.extend(reqsk::tests());
    v.extend(syncookie::tests());
    v.extend(established::tests());
    v.extend(timewait::tests());
    v.extend(synsent::tests());
    v.extend(mapped::tests());
    v.extend(keys::tests());
    v.extend(uapi::tests());
    v
}

/// A crafted TCP segment from `src` to `dst`.
#[derive(Debug, Clone, Copy)]
struct Seg<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    /// Options after the authentication option.
    options: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Seg<'a> {
    fn new(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, flags: TcpFlags) -> Self {
        Self {
            src,
            dst,
            seq,
            ack,
            flags,
            window: 8192,
            options: &[],
            payload: &[],
        }
    }

    fn options(self, options: &'a [u8]) -> Self {
        Self { options, ..self }
    }

    fn payload(self, payload: &'a [u8]) -> Self {
        Self { payload, ..self }
    }

    fn build(&self, auth: &Auth<'_>) -> PeerResult<Vec<u8>> {
        let tcp = TcpRepr {
            src_port: self.src.port(),
            dst_port: self.dst.port(),
            seq_number: self.seq,
            ack_number: self.ack,
            flags: self.flags,
            window_len: self.window,
            urgent_at: 0,
            options: self.options,
            payload: self.payload,
        };
        let ip = IpHeader {
            ident: 0x5a5a,
            ..IpHeader::new(self.src.ip(), self.dst.ip())
        };
        build_segment(&ip, &tcp, auth).map_err(|e| failure!("building a segment: {e}"))
    }

    /// Without an authentication option.
    fn unsigned(&self) -> PeerResult<Vec<u8>> {
        self.build(&Auth::None)
    }

    /// Signed with `key`'s MKT, KeyID/RNextKeyID `ids`, SNE `sne`, under the traffic key of
    /// the KDF context `self.src → self.dst` with ISNs `isns` (source, destination).
    fn signed(
        &self,
        key: &TestKey,
        ids: (u8, u8),
        isns: (u32, u32),
        sne: u32,
    ) -> PeerResult<Vec<u8>> {
        let tk = traffic_key(key, self.src, self.dst, isns)?;
        let sign = AoSign {
            key: &tk,
            mac_len: usize::from(key.maclen.unwrap_or(12)),
            key_id: ids.0,
            rnext_key_id: ids.1,
            sne,
            include_options: key.include_options,
        };
        self.build(&Auth::Ao(sign))
    }
}

/// The traffic key of `key` for the KDF context `src → dst` with ISNs `isns` (RFC 5925 §5.2).
fn traffic_key(
    key: &TestKey,
    src: SocketAddr,
    dst: SocketAddr,
    isns: (u32, u32),
) -> PeerResult<TrafficKey> {
    let mkt = key
        .mkt()
        .ok_or_else(|| failure!("tcpao-refimpl does not implement the key's algorithm"))?;
    let ctx = Context::new(src, dst, isns.0, isns.1).or_fail("building a KDF context")?;
    Ok(TrafficKey::derive(&mkt, &ctx))
}

/// Flip the last bit of the MAC of a payload-less signed packet and fix the checksum.
fn break_mac(mut pkt: Vec<u8>) -> PeerResult<Vec<u8>> {
    let last = pkt.len() - 1;
    pkt[last] ^= 0x01;
    tcpao_refimpl::sign::fill_tcp_checksum(&mut pkt).or_fail("fixing the checksum")?;
    Ok(pkt)
}

/// Whether the TCP-AO MAC of `frame` verifies with `key` under the traffic key of the KDF
/// context `src → dst`, ISNs `isns`, and SNE `sne`.
fn mac_verifies(
    frame: &Frame,
    key: &TestKey,
    src: SocketAddr,
    dst: SocketAddr,
    isns: (u32, u32),
    sne: u32,
) -> PeerResult<bool> {
    let seg = segment(frame).ok_or_else(|| failure!("a captured frame is not a TCP segment"))?;
    let tk = traffic_key(key, src, dst, isns)?;
    tcpao_refimpl::verify_mac(&tk, sne, &seg, key.include_options)
        .map_err(|e| failure!("checking the MAC of a captured segment: {e}"))
}

/// KeyID, RNextKeyID and MAC length of a segment's TCP-AO option.
fn ao_ids(seg: &SegmentRef<'_>) -> Option<(u8, u8, usize)> {
    let t = seg.tcp_packet();
    let range = t.auth_options().ok()?.ao?;
    let o = &seg.tcp[range];
    Some((o[2], o[3], o.len() - 4))
}

/// The IP packet of a captured frame (without its Ethernet header).
fn ip_packet(frame: &Frame) -> &[u8] {
    &frame.data[14.min(frame.data.len())..]
}

/// The raw socket a peer sends crafted packets to `dst` with.
fn raw_socket(dst: IpAddr) -> PeerResult<Socket> {
    inject::raw_socket_to(dst)
}

/// Send a crafted packet; `wrong` registers it with the capture as deliberately wrong.
fn send(p: &Peer<'_>, pkt: &[u8], wrong: bool) -> PeerResult {
    let dst = SegmentRef::parse(pkt)
        .map_err(|e| failure!("a crafted packet does not parse: {e}"))?
        .dst;
    inject::inject(p, &raw_socket(dst)?, pkt, wrong)
}

/// How many frames the capture holds now (a mark for [`since`]).
fn mark(p: &Peer<'_>) -> PeerResult<usize> {
    Ok(capture_frames(p)?.len())
}

fn capture_frames(p: &Peer<'_>) -> PeerResult<Vec<Frame>> {
    Ok(p.capture()
        .ok_or_else(|| failure!("this test needs the packet capture, which is off"))?
        .frames())
}

/// The frames captured after `mark` that `from` sent between ports `a` and `b` (either way).
fn since(p: &Peer<'_>, mark: usize, from: Side, a: u16, b: u16) -> PeerResult<Vec<Frame>> {
    Ok(capture_frames(p)?
        .into_iter()
        .skip(mark)
        .filter(|f| {
            f.from == from
                && segment(f).is_some_and(|s| {
                    let t = s.tcp_packet();
                    (t.src_port(), t.dst_port()) == (a, b) || (t.src_port(), t.dst_port()) == (b, a)
                })
        })
        .collect())
}

/// Wait until `from` has sent at least `n` segments between ports `a` and `b` since `mark`;
/// return them.
fn wait_since(
    p: &Peer<'_>,
    mark: usize,
    from: Side,
    ports: (u16, u16),
    n: usize,
    what: &str,
) -> PeerResult<Vec<Frame>> {
    wait_since_where(p, mark, from, ports, n, what, |_| true)
}

/// [`wait_since`], counting only the frames `keep` accepts (for example leaving out a
/// retransmitted SYN, which a loaded machine may send before the answer awaited).
fn wait_since_where(
    p: &Peer<'_>,
    mark: usize,
    from: Side,
    ports: (u16, u16),
    n: usize,
    what: &str,
    keep: impl Fn(&Frame) -> bool,
) -> PeerResult<Vec<Frame>> {
    let mut seen = 0;
    let got = p.wait_for(p.deadline(), || {
        let mut v = since(p, mark, from, ports.0, ports.1)?;
        v.retain(|f| keep(f));
        seen = v.len();
        Ok((v.len() >= n).then_some(v))
    })?;
    got.ok_or_else(|| {
        failure!(
            "{what}: the capture has {seen} of {n} segments from the {} within {:?}",
            from.name(),
            p.timeout()
        )
    })
}

/// One line describing a captured segment, for messages.
fn describe(frame: &Frame) -> String {
    match segment(frame) {
        Some(s) => {
            let t = s.tcp_packet();
            let ids = ao_ids(&s).map_or_else(
                || "no TCP-AO".to_owned(),
                |(k, r, m)| format!("KeyID {k} RNextKeyID {r} maclen {m}"),
            );
            format!(
                "{} -> {} flags {:#05x} seq {} ack {} len {} ({ids})",
                SocketAddr::new(s.src, t.src_port()),
                SocketAddr::new(s.dst, t.dst_port()),
                t.flags().0,
                t.seq_number(),
                t.ack_number(),
                t.payload().len()
            )
        }
        None => "a frame that is not TCP".to_owned(),
    }
}

/// Server side of one injection step: snapshot `sk`, let the client inject (barrier), wait
/// until each netns counter of `counts` grew by its number, barrier again, then require
/// exactly the counters of `grew` to have grown, those of `counts` by exactly their number.
fn expect(
    p: &Peer<'_>,
    sk: &Socket,
    counts: &[(&str, u64)],
    grew: Grew,
    what: &str,
) -> PeerResult<Counters> {
    let before = Counters::of(sk)?;
    p.sync()?; // the client injects now
    let after = extras::wait_counters(
        p,
        sk,
        p.deadline(),
        &format!("the counters after {what}"),
        |c| counts.iter().all(|(n, d)| c.ns_delta(&before, n) >= *d),
    )?;
    p.sync()?; // step done
    check_step(&before, &after, counts, grew, what)?;
    Ok(after)
}

/// [`expect`] for a namespace without a socket to read (TIME-WAIT, no listener).
fn expect_netns(p: &Peer<'_>, counts: &[(&str, u64)], grew: Grew, what: &str) -> PeerResult {
    let before = Counters::netns()?;
    p.sync()?;
    let mut last = before.clone();
    let got = p.wait_for(p.deadline(), || {
        last = Counters::netns()?;
        Ok(counts
            .iter()
            .all(|(n, d)| last.ns_delta(&before, n) >= *d)
            .then_some(()))
    })?;
    if got.is_none() {
        return Err(failure!(
            "the counters did not grow after {what} within {:?}: {last}",
            p.timeout()
        ));
    }
    p.sync()?;
    check_step(&before, &last, counts, grew, what)
}

fn check_step(
    before: &Counters,
    after: &Counters,
    counts: &[(&str, u64)],
    grew: Grew,
    what: &str,
) -> PeerResult {
    after
        .assert_grew_exactly(before, grew)
        .map_err(|e| failure!("after {what}: {e}"))?;
    for (counter, n) in counts {
        let d = after.ns_delta(before, counter);
        if d != *n {
            return Err(failure!(
                "after {what}: {counter} grew by {d}, expected exactly {n}"
            ));
        }
    }
    Ok(())
}

/// Client side of one injection step: wait for the server's snapshot, send `pkts` (each
/// with its "deliberately wrong" flag), wait until the server saw them.
fn inject_step(p: &Peer<'_>, pkts: &[(&[u8], bool)]) -> PeerResult {
    p.sync()?;
    for (pkt, wrong) in pkts {
        send(p, pkt, *wrong)?;
    }
    p.sync()
}

/// The default test key for the other peer, `send_id:recv_id`.
fn key(p: &Peer<'_>, send_id: u8, recv_id: u8) -> TestKey {
    TestKey::new(p.remote_addr(), send_id, recv_id)
}

/// `addr:port`.
fn sa(addr: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(addr, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_registry_rules() {
        let t = tests();
        assert!(t.iter().all(|t| t.name().starts_with("paths/")));
        let mut names: Vec<&str> = t.iter().map(Test::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), t.len(), "duplicate test names");
    }

    #[test]
    fn crafted_segments_sign_and_verify() {
        let k = TestKey::new("10.0.254.1".parse().unwrap(), 100, 100);
        let (c, s) = (
            sa("10.0.1.1".parse().unwrap(), RAW_PORT),
            sa("10.0.254.1".parse().unwrap(), 7010),
        );
        let pkt = Seg::new(c, s, 1000, 2000, TcpFlags::ACK)
            .signed(&k, (100, 100), (999, 1999), 0)
            .unwrap();
        let mut data = vec![0u8; 12];
        data.extend_from_slice(&0x0800u16.to_be_bytes());
        data.extend_from_slice(&pkt);
        let f = Frame {
            ts: std::time::SystemTime::UNIX_EPOCH,
            from: Side::Client,
            data,
        };
        assert!(mac_verifies(&f, &k, c, s, (999, 1999), 0).unwrap());
        assert!(!mac_verifies(&f, &k, s, c, (1999, 999), 0).unwrap());
        let seg = segment(&f).unwrap();
        assert_eq!(ao_ids(&seg), Some((100, 100, 12)));
        let bad = break_mac(pkt).unwrap();
        assert!(
            SegmentRef::parse(&bad)
                .unwrap()
                .tcp_packet()
                .auth_options()
                .is_ok()
        );
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! `icmps-discard` (and, through [`tests_for`], `icmps-accept`): ICMP "hard errors" aimed at a
//! TCP-AO connection (kernel `icmps-discard.c`, built twice upstream).
//!
//! RFC 5925 §7.8: a TCP-AO implementation MUST by default ignore ICMPv4 type 3 codes 2-4
//! (protocol unreachable, port unreachable, fragmentation needed) and ICMPv6 type 1 codes 1
//! and 4 (administratively prohibited, port unreachable) for synchronized connections that
//! match MKTs; Linux counts them in `TCPAODroppedIcmps` and the socket's `pkt_dropped_icmp`.
//! With `accept_icmps` set they are processed normally: a hard error ends the connection.
//!
//! The server sets `accept_icmps` (0 for discard, 1 for accept) on its listener before adding
//! the key, so the accepted socket inherits it, and sets `IP_RECVERR`/`IPV6_RECVERR` so a hard
//! error is reported at once. The client streams echo traffic in batches; after each batch it
//! reads its `rcv_nxt` (`TCP_REPAIR` + `TCP_QUEUE_SEQ`, which is the server's `snd_nxt`, so the
//! quoted SEQ is in the server's window) and sends spoofed destination-unreachable messages
//! from a raw socket, quoting a TCP header with the connection's ports and that SEQ.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::PollFlags;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tcpao_sys::TcpAoExt;
use tcpao_sys::repair::{self, Queue, RepairMode};

use crate::counters::{Counters, Grew, icmp_dest_unreachs};
use crate::failure;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::registry::Test;
use crate::rng::Rng;
use crate::sockets::{self, TestKey};
use crate::topology::Family;

/// Messages per batch and their size (kernel `packets_nr`, `packet_size`).
const PACKETS: usize = 20;
const PACKET_SIZE: usize = 100;
/// What the server serves before it stops (kernel: `packet_size * packets_nr * 10`).
const QUOTA: u64 = (PACKET_SIZE * PACKETS * 10) as u64;

/// The program's tests (`icmps-discard`: `accept = false`).
pub fn tests() -> Vec<Test> {
    tests_for(false)
}

/// The tests of `icmps-discard` (`accept = false`) or `icmps-accept` (`accept = true`).
pub fn tests_for(accept: bool) -> Vec<Test> {
    let program = if accept {
        "icmps-accept"
    } else {
        "icmps-discard"
    };
    PairTest::new(program, "dest-unreachable")
        .ao()
        .build(move |p| server(p, accept), client)
}

/// The errnos a hard error may turn into (`icmp_err_convert`, `icmpv6_err_convert`).
fn hard_errors(f: Family) -> [Errno; 2] {
    match f {
        // Protocol unreachable, port unreachable.
        Family::Ipv4 => [Errno::ENOPROTOOPT, Errno::ECONNREFUSED],
        // Administratively prohibited, port unreachable.
        Family::Ipv6 => [Errno::EACCES, Errno::ECONNREFUSED],
    }
}

/// How serving ended.
enum Served {
    /// The quota was echoed.
    Quota,
    /// A socket call failed after `bytes` bytes.
    Error { bytes: u64, error: io::Error },
}

/// Echo until `QUOTA` bytes were served or the socket reports an error.
fn serve(p: &Peer<'_>, mut sk: &Socket, deadline: Instant) -> PeerResult<Served> {
    let mut buf = vec![0u8; 4096];
    let mut served = 0u64;
    while served < QUOTA {
        let n = match sk.read(&mut buf) {
            Ok(0) => {
                return Err(failure!(
                    "the client closed the connection after {served} bytes"
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, PollFlags::POLLIN, deadline, || false)? {
                    return Err(failure!("the server read nothing for {:?}", p.timeout()));
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Ok(Served::Error {
                    bytes: served,
                    error,
                });
            }
        };
        let mut out = &buf[..n];
        while !out.is_empty() {
            match sk.write(out) {
                Ok(w) => out = &out[w..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !sockets::wait_fd(p, sk, PollFlags::POLLOUT, deadline, || false)? {
                        return Err(failure!("the server could not write for {:?}", p.timeout()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Ok(Served::Error {
                        bytes: served,
                        error,
                    });
                }
            }
        }
        served += n as u64;
    }
    Ok(Served::Quota)
}

pub(crate) fn set_recverr(sk: &Socket, f: Family) -> PeerResult {
    // IP_RECVERR (SOL_IP 0, 11) / IPV6_RECVERR (SOL_IPV6 41, 25).
    let (level, name, what) = match f {
        Family::Ipv4 => (0, 11, "IP_RECVERR"),
        Family::Ipv6 => (41, 25, "IPV6_RECVERR"),
    };
    tcpao_sys::raw::set_int_option(sk, level, name, 1).or_fail(&format!("{what} failed"))
}

fn server(p: &Peer<'_>, accept: bool) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    lsk.set_ao_accept_icmps(accept)
        .or_fail("setsockopt(TCP_AO_INFO) with accept_icmps failed")?;
    sockets::add_key(p, &lsk, &TestKey::new(p.remote_addr(), 100, 100))?;
    p.sync()?;
    let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))?;
    // No listener once the connection is up: a client segment that arrives after the server
    // closed would meet it and be counted in TCPAOBad as a failed syncookie ACK.
    drop(lsk);
    // The accepted socket inherits accept_icmps from the listener.
    let inherited = sk
        .ao_accept_icmps()
        .or_fail("getsockopt(TCP_AO_INFO) failed")?;
    if inherited != accept {
        return Err(failure!(
            "the accepted socket has accept_icmps = {inherited}, the listener {accept}"
        ));
    }
    set_recverr(&sk, p.family())?;
    p.sync()?;

    let before = Counters::of(&sk)?;
    let unreach_before = icmp_dest_unreachs(p.family())?;
    let served = serve(p, &sk, p.deadline_in(p.timeout() * 3))?;
    let after = Counters::of(&sk)?;
    let unreach = icmp_dest_unreachs(p.family())?;
    // The client may stop streaming and interfering now.
    p.signal();

    let delivered = unreach.saturating_sub(unreach_before);
    if delivered == 0 {
        return Err(failure!(
            "the ICMP destination-unreachable counter didn't change: {unreach_before} >= {unreach}"
        ));
    }
    p.diag(format!(
        "ICMP destination unreachables delivered: {delivered}"
    ));
    let dropped = after.ns_delta(&before, "TCPAODroppedIcmps");
    match (accept, served) {
        (false, Served::Quota) => {
            p.diag(format!("Server survived {QUOTA} bytes of traffic"));
        }
        (false, Served::Error { bytes, error }) => {
            return Err(failure!(
                "Server failed after {bytes} bytes with {error}, although TCP-AO must ignore the ICMPs"
            ));
        }
        (true, Served::Quota) => {
            return Err(failure!(
                "Server survived {QUOTA} bytes of traffic, although accept_icmps is set and {delivered} ICMP errors arrived"
            ));
        }
        (true, Served::Error { bytes, error }) => {
            let allowed = hard_errors(p.family());
            if !allowed
                .iter()
                .any(|e| error.raw_os_error() == Some(*e as i32))
            {
                return Err(failure!(
                    "Server failed after {bytes} bytes with {error}, expected a hard error ({})",
                    allowed.map(|e| e.to_string()).join(" or ")
                ));
            }
            p.diag(format!("Server failed after {bytes} bytes with {error}"));
        }
    }
    let grew = if accept {
        Grew::GOOD
    } else {
        Grew::GOOD | Grew::DROPPED_ICMP
    };
    after.assert_grew_exactly(&before, grew)?;
    if accept {
        p.diag(format!("TCPAODroppedIcmps unchanged ({dropped})"));
    } else {
        p.diag(format!("ICMPs ignored {dropped}"));
    }
    Ok(())
}

/// One batch of `PACKETS` echo messages; `Ok(false)` when the server said to stop.
fn echo_batch(p: &Peer<'_>, mut sk: &Socket, rng: &mut Rng) -> PeerResult<bool> {
    let stop = || p.peer_signals() > 0;
    let deadline = p.deadline();
    let mut out = [0u8; PACKET_SIZE];
    let mut back = [0u8; PACKET_SIZE];
    for _ in 0..PACKETS {
        rng.fill(&mut out);
        let mut sent = 0;
        while sent < PACKET_SIZE {
            match sk.write(&out[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !sockets::wait_fd(p, sk, PollFlags::POLLOUT, deadline, stop)? {
                        return stopped_or(p, "the client could not write");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return stopped_or(p, &format!("client: connection is broken: {e}")),
            }
        }
        let mut got = 0;
        while got < PACKET_SIZE {
            match sk.read(&mut back[got..]) {
                Ok(0) => return stopped_or(p, "client: the server closed the connection"),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !sockets::wait_fd(p, sk, PollFlags::POLLIN, deadline, stop)? {
                        return stopped_or(p, "client: no echo came back");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return stopped_or(p, &format!("client: connection is broken: {e}")),
            }
        }
        if out != back {
            return Err(failure!(
                "client: an echoed message differs from the one sent"
            ));
        }
    }
    Ok(true)
}

/// After the server's stop signal a broken echo is expected; before it, it is a failure.
fn stopped_or(p: &Peer<'_>, why: &str) -> PeerResult<bool> {
    if p.peer_signals() > 0 {
        Ok(false)
    } else {
        Err(Failure::Fail(why.to_owned()))
    }
}

/// The client's `rcv_nxt`, read in repair mode (kernel `get_rcv_nxt`).
fn rcv_nxt(sk: &Socket) -> PeerResult<u32> {
    repair::set_repair(sk, RepairMode::On).or_fail("setsockopt(TCP_REPAIR) failed")?;
    let seq = repair::set_repair_queue(sk, Queue::Recv)
        .and_then(|()| repair::queue_seq(sk))
        .or_fail("reading TCP_QUEUE_SEQ of the receive queue failed");
    repair::set_repair(sk, RepairMode::OffNoWindowProbe).or_fail("leaving TCP_REPAIR failed")?;
    seq
}

/// RFC 1071 one's-complement sum of `data` added to `sum`, folded and inverted.
fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4_header(buf: &mut [u8], total_len: usize, proto: u8, src: [u8; 4], dst: [u8; 4]) {
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
    buf[8] = 64; // TTL
    buf[9] = proto;
    buf[12..16].copy_from_slice(&src);
    buf[16..20].copy_from_slice(&dst);
    let c = checksum(&buf[..20], 0);
    buf[10..12].copy_from_slice(&c.to_be_bytes());
}

fn ipv6_header(buf: &mut [u8], payload_len: usize, next: u8, src: [u8; 16], dst: [u8; 16]) {
    buf[0] = 0x60;
    buf[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    buf[6] = next;
    buf[7] = 64; // hop limit
    buf[8..24].copy_from_slice(&src);
    buf[24..40].copy_from_slice(&dst);
}

/// A spoofed destination-unreachable from the client (`local`) to the server (`remote`),
/// quoting a server-to-client TCP header with SEQ `seq`.
fn icmp_packet(
    local: SocketAddr,
    remote: SocketAddr,
    code: u8,
    seq: u32,
    rng: &mut Rng,
) -> PeerResult<Vec<u8>> {
    // ICMP_FRAG_NEEDED: a random next-hop MTU, as the kernel test does.
    let mtu = if code == 4 {
        (rng.next_u64() & 0xffff) as u16
    } else {
        0
    };
    let icmp_type = if local.is_ipv4() { 3 } else { 1 };
    icmp_error(local, remote, icmp_type, code, seq, mtu)
}

/// A spoofed ICMP (ICMPv6) error of `icmp_type`/`code` from `local` to `remote`, quoting the
/// IP header and the first 8 bytes of a `remote`-to-`local` TCP segment with SEQ `seq`;
/// `mtu` fills the next-hop MTU field of an ICMPv4 message.
///
/// # Errors
/// When the two addresses are of different families.
pub(crate) fn icmp_error(
    local: SocketAddr,
    remote: SocketAddr,
    icmp_type: u8,
    code: u8,
    seq: u32,
    mtu: u16,
) -> PeerResult<Vec<u8>> {
    let mut tcp = [0u8; 8];
    tcp[0..2].copy_from_slice(&remote.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&local.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    match (local.ip(), remote.ip()) {
        (IpAddr::V4(l), IpAddr::V4(r)) => {
            let mut pkt = vec![0u8; 20 + 8 + 20 + 8];
            ipv4_header(&mut pkt[..20], 56, 1, l.octets(), r.octets());
            pkt[20] = icmp_type;
            pkt[21] = code;
            pkt[26..28].copy_from_slice(&mtu.to_be_bytes());
            ipv4_header(&mut pkt[28..48], 28, 6, r.octets(), l.octets());
            pkt[48..56].copy_from_slice(&tcp);
            let c = checksum(&pkt[20..], 0);
            pkt[22..24].copy_from_slice(&c.to_be_bytes());
            Ok(pkt)
        }
        (IpAddr::V6(l), IpAddr::V6(r)) => {
            let mut pkt = vec![0u8; 40 + 8 + 40 + 8];
            let icmp_len = pkt.len() - 40;
            ipv6_header(&mut pkt[..40], icmp_len, 58, l.octets(), r.octets());
            pkt[40] = icmp_type;
            pkt[41] = code;
            ipv6_header(&mut pkt[48..88], 8, 6, r.octets(), l.octets());
            pkt[88..96].copy_from_slice(&tcp);
            // Pseudo-header: source, destination, upper-layer length, next header.
            let mut sum = 0u32;
            for c in l.octets().chunks(2).chain(r.octets().chunks(2)) {
                sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
            }
            sum += icmp_len as u32 + 58;
            let c = checksum(&pkt[40..], sum);
            pkt[42..44].copy_from_slice(&c.to_be_bytes());
            Ok(pkt)
        }
        _ => Err(failure!(
            "the connection's addresses are of different families"
        )),
    }
}

fn client(p: &Peer<'_>) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &TestKey::new(p.remote_addr(), 100, 100))?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    p.sync()?; // the server set IP_RECVERR
    let local = sk
        .local_addr()
        .or_fail("getsockname() failed")?
        .as_socket()
        .ok_or_else(|| failure!("getsockname() returned no IP address"))?;
    let remote = sk
        .peer_addr()
        .or_fail("getpeername() failed")?
        .as_socket()
        .ok_or_else(|| failure!("getpeername() returned no IP address"))?;
    let (domain, codes, target): (Domain, &[u8], SocketAddr) = match p.family() {
        // Protocol unreachable, port unreachable, fragmentation needed.
        Family::Ipv4 => (Domain::IPV4, &[2, 3, 4], SocketAddr::new(remote.ip(), 0)),
        // Administratively prohibited, port unreachable; the port names the protocol.
        Family::Ipv6 => (Domain::IPV6, &[1, 4], SocketAddr::new(remote.ip(), 255)),
    };
    // IPPROTO_RAW: we write the IP header ourselves (IP_HDRINCL is implied).
    let raw = Socket::new(domain, Type::RAW, Some(Protocol::from(255)))
        .or_fail("socket(SOCK_RAW, IPPROTO_RAW) failed")?;
    let target = SockAddr::from(target);
    let mut rng = Rng::from_clock();
    let (mut batches, mut icmps) = (0usize, 0usize);
    while p.peer_signals() == 0 {
        if !echo_batch(p, &sk, &mut rng)? {
            break;
        }
        batches += 1;
        let seq = rcv_nxt(&sk)?;
        for _ in 0..PACKETS {
            for &code in codes {
                let pkt = icmp_packet(local, remote, code, seq, &mut rng)?;
                let n = raw
                    .send_to(&pkt, &target)
                    .or_fail("sending the ICMP error failed")?;
                if n != pkt.len() {
                    return Err(failure!("sendto() sent {n} of {} bytes", pkt.len()));
                }
                icmps += 1;
            }
        }
    }
    if icmps == 0 {
        return Err(failure!(
            "the client sent no ICMP errors before the server finished"
        ));
    }
    p.diag(format!(
        "sent {} echo messages and {icmps} ICMP errors",
        batches * PACKETS
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example bytes: sum 0xddf2, checksum 0x220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0),
            0x220d
        );
    }

    #[test]
    fn packets_have_valid_checksums() {
        let mut rng = Rng::from_clock();
        let l: SocketAddr = "10.0.1.1:40000".parse().unwrap();
        let r: SocketAddr = "10.0.254.1:7010".parse().unwrap();
        let pkt = icmp_packet(l, r, 4, 0x1234_5678, &mut rng).unwrap();
        assert_eq!(checksum(&pkt[..20], 0), 0);
        assert_eq!(checksum(&pkt[20..], 0), 0);
        assert_eq!(checksum(&pkt[28..48], 0), 0);
        assert_eq!(&pkt[48..50], &7010u16.to_be_bytes());
        assert_eq!(&pkt[52..56], &0x1234_5678u32.to_be_bytes());
        let l: SocketAddr = "[2001:db8:1::1]:40000".parse().unwrap();
        let r: SocketAddr = "[2001:db8:254::1]:7010".parse().unwrap();
        let pkt = icmp_packet(l, r, 1, 7, &mut rng).unwrap();
        assert_eq!(pkt.len(), 96);
        assert_eq!(pkt[40], 1);
        assert!(icmp_packet(l, "10.0.254.1:1".parse().unwrap(), 1, 7, &mut rng).is_err());
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The wire oracle for kernel-to-kernel traffic: every TCP-AO segment crossing the veth
//! between namespaces A and B (captured in A with a cooked packet socket) is verified with the
//! reference against the keys of the sender's sockets, the ISNs seen in the handshake and the
//! sender's SNE. A segment that verifies with none of the sender's keys is a finding.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{LinkAddr, MsgFlags, recvmsg};
use socket2::{Domain, Protocol, Socket, Type};
use tcpao_refimpl::wire::{TcpFlags, TcpPacket, TcpRepr};
use tcpao_refimpl::{Connection, SegmentRef, SneTracker, TrafficKeys, verify_mac};

use super::model::KeyM;
use super::peer;

/// `ETH_P_ALL` in network byte order.
const ETH_P_ALL_BE: i32 = (0x0003u16).to_be() as i32;

/// One direction of a flow: the sender's ISN and SNE.
#[derive(Debug, Clone)]
struct Half {
    isn: u32,
    sne: SneTracker,
}

/// The capture on the veth and the flows it has seen.
#[derive(Debug)]
pub struct VethWire {
    sk: Socket,
    ifindex: usize,
    flows: HashMap<(SocketAddr, SocketAddr), Half>,
    /// AO segments verified so far.
    pub verified: u64,
}

/// A captured AO segment and its sender.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Sender.
    pub from: SocketAddr,
    /// Receiver.
    pub to: SocketAddr,
    /// The IP packet.
    pub packet: Vec<u8>,
}

impl VethWire {
    /// A cooked packet socket in the calling thread's namespace, reading interface `ifindex`.
    ///
    /// # Errors
    /// Without `CAP_NET_RAW`.
    pub fn open(ifindex: u32) -> io::Result<VethWire> {
        let sk = Socket::new(
            Domain::PACKET,
            Type::DGRAM,
            Some(Protocol::from(ETH_P_ALL_BE)),
        )?;
        sk.set_nonblocking(true)?;
        let _ = sk.set_recv_buffer_size(8 << 20);
        Ok(VethWire {
            sk,
            ifindex: ifindex as usize,
            flows: HashMap::new(),
            verified: 0,
        })
    }

    /// Everything captured since the last call: handshakes update the flows, AO segments are
    /// returned with what is needed to check them.
    pub fn drain(&mut self) -> Vec<(Captured, u32, u32, u32, bool)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        for _ in 0..4096 {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<LinkAddr>(
                self.sk.as_fd().as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::MSG_DONTWAIT,
            );
            let (len, addr) = match msg {
                Ok(m) => (m.bytes, m.address),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            };
            if addr.is_none_or(|a| a.ifindex() != self.ifindex) || len > buf.len() {
                continue;
            }
            let packet = buf[..len].to_vec();
            if let Some(x) = self.segment(packet) {
                out.push(x);
            }
        }
        out
    }

    /// Tracks one segment; returns it with `(sender ISN, receiver ISN, SNE, SYN-only)` when it
    /// carries TCP-AO and its flow's ISNs are known.
    fn segment(&mut self, packet: Vec<u8>) -> Option<(Captured, u32, u32, u32, bool)> {
        let seg = SegmentRef::parse(&packet).ok()?;
        let tcp = TcpPacket::new_checked(seg.tcp).ok()?;
        let repr = TcpRepr::parse(&tcp).ok()?;
        let from = SocketAddr::new(seg.src, repr.src_port);
        let to = SocketAddr::new(seg.dst, repr.dst_port);
        let syn = repr.flags.contains(TcpFlags::SYN);
        let syn_only = syn && !repr.flags.contains(TcpFlags::ACK);
        let has_ao = tcp.ao_option().ok().flatten().is_some();
        if syn {
            // A new handshake (or a retransmitted SYN) restarts this direction.
            self.flows.insert(
                (from, to),
                Half {
                    isn: repr.seq_number,
                    sne: SneTracker::new(repr.seq_number),
                },
            );
            if syn_only {
                self.flows.remove(&(to, from));
            }
        }
        let len = repr.payload.len() as u32
            + u32::from(syn)
            + u32::from(repr.flags.contains(TcpFlags::FIN));
        let seq = repr.seq_number;
        let their_isn = if syn_only {
            Some(0)
        } else {
            self.flows.get(&(to, from)).map(|h| h.isn)
        };
        let half = self.flows.get_mut(&(from, to))?;
        let sne = half.sne.observe(seq, len);
        let (isn, their_isn) = (half.isn, their_isn?);
        has_ao.then_some((Captured { from, to, packet }, isn, their_isn, sne, syn_only))
    }
}

/// Verifies a captured AO segment with the keys its sender may have used; `Ok(())` when one
/// verifies (or the segment has no AO option).
///
/// # Errors
/// Why none does.
pub fn check(
    c: &Captured,
    isn: u32,
    their_isn: u32,
    sne: u32,
    syn_only: bool,
    keys: &[KeyM],
) -> Result<(), String> {
    let seg = SegmentRef::parse(&c.packet).map_err(|e| e.to_string())?;
    let tcp = TcpPacket::new_checked(seg.tcp).map_err(|e| e.to_string())?;
    let Some(ao) = tcp.ao_option().ok().flatten() else {
        return Ok(());
    };
    let (family, addr) = match c.to.ip() {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (2, b)
        }
        IpAddr::V6(a) => (10, a.octets()),
    };
    let candidates: Vec<&KeyM> = keys
        .iter()
        .filter(|k| k.sndid == ao.key_id && k.matches_peer(&addr, family))
        .collect();
    if candidates.is_empty() {
        return Err(format!(
            "veth {} -> {}: KeyID {}, which no key of the sender for this peer has as SendID",
            c.from, c.to, ao.key_id
        ));
    }
    let conn = Connection::new(c.from, c.to, isn, if syn_only { 0 } else { their_isn });
    for k in candidates {
        let Some(mkt) = peer::kernel_mkt(k) else {
            continue;
        };
        if ao.mac.len() != mkt.mac_len() {
            continue;
        }
        let Ok(keys) = TrafficKeys::derive(&mkt, &conn) else {
            continue;
        };
        if verify_mac(keys.for_send(syn_only), sne, &seg, mkt.include_options) == Ok(true) {
            return Ok(());
        }
    }
    Err(format!(
        "veth {} -> {} seq {}: signed with KeyID {} ({}-byte MAC), which verifies with no key \
         of the sender (SNE {sne})",
        c.from,
        c.to,
        TcpRepr::parse(&tcp).map_or(0, |r| r.seq_number),
        ao.key_id,
        ao.mac.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::prog::{SegAuth, key_bytes};

    fn key() -> KeyM {
        KeyM {
            uid: 0,
            family: 2,
            addr: [10, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            prefix: 32,
            sndid: 4,
            rcvid: 4,
            maclen: 12,
            keyflags: 0,
            l3index: 0,
            alg_name: "hmac(sha256)",
            key: key_bytes(8, 24),
        }
    }

    #[test]
    fn a_kernel_segment_verifies_with_the_senders_key_only() {
        // Built as the sender (10.0.1.1 -> 10.0.1.2) with its key: reuse the virtual peer's
        // signer from the sender's side (its MKT mirrors the key, so give it the mirror).
        let k = key();
        let mirror = KeyM {
            sndid: k.rcvid,
            rcvid: k.sndid,
            ..k.clone()
        };
        let (_, mut conn) = peer::syn(false, 40_000, 179, 100, Some(&mirror), SegAuth::Good);
        conn.me = "10.0.1.1:40000".parse().unwrap();
        conn.them = "10.0.1.2:179".parse().unwrap();
        conn.kisn = 900;
        let s = crate::fuzz::prog::Seg {
            auth: SegAuth::Good,
            rnext: None,
            len: 10,
            fin: false,
            rst: false,
            seq_off: 0,
        };
        let pkt = peer::segment(&mut conn, &s).unwrap();
        let c = Captured {
            from: conn.me,
            to: conn.them,
            packet: pkt,
        };
        check(&c, 100, 900, 0, false, std::slice::from_ref(&k)).unwrap();
        let wrong = KeyM {
            key: key_bytes(9, 24),
            ..k.clone()
        };
        assert!(
            check(&c, 100, 900, 0, false, &[wrong])
                .unwrap_err()
                .contains("verifies with no key")
        );
        assert!(
            check(&c, 100, 901, 0, false, std::slice::from_ref(&k)).is_err(),
            "wrong ISN"
        );
        let other_id = KeyM { sndid: 5, ..k };
        assert!(
            check(&c, 100, 900, 0, false, &[other_id])
                .unwrap_err()
                .contains("SendID")
        );
    }
}

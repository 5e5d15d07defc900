// SPDX-License-Identifier: MIT OR Apache-2.0
//! The virtual peer behind the TUN device: it opens connections to listeners of namespace A
//! and sends crafted segments signed by `tcpao-refimpl` (good, bad MAC, unknown KeyID,
//! unsigned, TCP-MD5, wrong MAC length, RNextKeyID requests, ISNs just below 2^32 so the SNE
//! wraps). A TUN write is processed synchronously in the writer's context, so the kernel's
//! answers are queued on the device when `write` returns; every answer that carries TCP-AO is
//! verified with the reference (the wire oracle).

use std::net::{IpAddr, SocketAddr};

use tcpao_refimpl::wire::{TcpFlags, TcpPacket, TcpRepr};
use tcpao_refimpl::{
    Algorithm, Auth, Connection, ConnectionSigner, IpHeader, Mkt, SegmentRef, SneTracker,
    TrafficKeys, build_segment, verify_mac,
};
use tcpao_sys::tun::Tun;

use super::model::KeyM;
use super::prog::{Seg, SegAuth, key_bytes};

/// The reference's algorithm for a model key.
pub fn algorithm(k: &KeyM) -> Algorithm {
    match k.alg_name {
        "hmac(sha256)" => Algorithm::HmacSha256,
        "cmac(aes)" => Algorithm::AesCmac128,
        _ => Algorithm::HmacSha1,
    }
}

/// The peer's MKT mirroring `k` (its SendID is the socket's RecvID).
pub fn peer_mkt(k: &KeyM, maclen: usize) -> Option<Mkt> {
    Mkt::new(k.rcvid, k.sndid, algorithm(k), k.key.as_slice())
        .with_mac_len(maclen)
        .ok()
        .map(|mut m| {
            m.include_options = k.keyflags & 2 == 0;
            m
        })
}

/// The kernel socket's MKT for `k`.
pub fn kernel_mkt(k: &KeyM) -> Option<Mkt> {
    Mkt::new(k.sndid, k.rcvid, algorithm(k), k.key.as_slice())
        .with_mac_len(usize::from(k.maclen))
        .ok()
        .map(|mut m| {
            m.include_options = k.keyflags & 2 == 0;
            m
        })
}

/// A segment the kernel sent to the peer, parsed.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The IP packet.
    pub packet: Vec<u8>,
    /// TCP flags.
    pub flags: TcpFlags,
    /// SEQ.
    pub seq: u32,
    /// ACK.
    pub ack: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// TCP-AO `(KeyID, RNextKeyID, MAC length)` when present.
    pub ao: Option<(u8, u8, usize)>,
    /// Segment length (payload + SYN + FIN).
    pub seg_len: u32,
}

/// Parses a TCP segment from the TUN device (`None` for anything else).
pub fn parse_reply(packet: Vec<u8>) -> Option<Reply> {
    let seg = SegmentRef::parse(&packet).ok()?;
    let tcp = TcpPacket::new_checked(seg.tcp).ok()?;
    let repr = TcpRepr::parse(&tcp).ok()?;
    let ao = tcp
        .ao_option()
        .ok()
        .flatten()
        .map(|o| (o.key_id, o.rnext_key_id, o.mac.len()));
    let seg_len = repr.payload.len() as u32
        + u32::from(repr.flags.contains(TcpFlags::SYN))
        + u32::from(repr.flags.contains(TcpFlags::FIN));
    let (flags, seq, ack, sport, dport) = (
        repr.flags,
        repr.seq_number,
        repr.ack_number,
        repr.src_port,
        repr.dst_port,
    );
    Some(Reply {
        packet,
        flags,
        seq,
        ack,
        sport,
        dport,
        ao,
        seg_len,
    })
}

/// Drains what the kernel sent to the peer.
pub fn drain(tun: &Tun) -> Vec<Reply> {
    let mut out = Vec::new();
    for _ in 0..64 {
        match tun.recv() {
            Ok(Some(p)) => {
                if let Some(r) = parse_reply(p) {
                    out.push(r);
                }
            }
            _ => break,
        }
    }
    out
}

/// The peer's side of one connection.
#[derive(Debug, Clone)]
pub struct PeerConn {
    /// The listener slot it connected to.
    pub listener: u8,
    /// Peer address and port.
    pub me: SocketAddr,
    /// Kernel address and port.
    pub them: SocketAddr,
    /// Next sequence number to send.
    pub snd_nxt: u32,
    /// Next sequence number expected.
    pub rcv_nxt: u32,
    /// Peer ISN.
    pub isn: u32,
    /// Kernel ISN.
    pub kisn: u32,
    /// The kernel key the peer mirrors (its state when the connection opened).
    pub key: Option<KeyM>,
    /// Send-side SNE of the peer.
    pub sne: SneTracker,
    /// Kernel send SNE, as the peer tracks it.
    pub ksne: SneTracker,
    /// Established (the handshake completed from the peer's view).
    pub established: bool,
    /// The connection was reset (the peer sent a good RST, or the kernel sent one): the
    /// kernel has no socket for it any more, and what answers is the listener.
    pub reset: bool,
    /// The keys of the kernel's side as last known: the listener's keys for the peer when the
    /// connection was made (a child gets a copy of them), then the accepted child's.
    pub child_keys: Vec<KeyM>,
    /// SEQ of the last segment the peer sent.
    pub last_seq: u32,
    /// A KeyID no key of the socket has as RecvID (for [`SegAuth::UnknownKey`]).
    pub unknown_id: u8,
    /// The peer sent a FIN the kernel accepts (signed, in sequence).
    pub fin_sent: bool,
    /// The kernel sent a FIN on this connection.
    pub kernel_fin: bool,
    /// The last segment the peer sent carried no TCP-AO option (unsigned or TCP-MD5).
    pub last_unsigned: bool,
}

impl PeerConn {
    /// Whether `r` is the answer of a TIME-WAIT socket to a segment without TCP-AO: an
    /// unsigned pure ACK. Linux 7.2 sends it (`tcp_v4_timewait_ack()` signs only when the
    /// segment it answers has a TCP-AO option, and says so in a FIXME), where RFC 5925 §7.3
    /// would discard the segment; `paths/*/timewait` pins it (resolved divergence 20,
    /// docs/fuzz.md). Both FINs must have been sent for the kernel to be in TIME-WAIT.
    pub fn time_wait_answer(&self, r: &Reply) -> bool {
        self.fin_sent
            && self.kernel_fin
            && self.last_unsigned
            && r.flags == TcpFlags::ACK
            && r.seg_len == 0
    }
}

/// The lowest KeyID that no key in `keys` has as RecvID: a segment signed with it must count
/// as key-not-found (RFC 5925 §7.3 step 4). `None` when all 256 are taken.
pub fn unused_recv_id(keys: &[KeyM]) -> Option<u8> {
    (0..=255u8).find(|id| keys.iter().all(|k| k.rcvid != *id))
}

/// Verifies a segment the kernel sent on `conn` with the reference.
///
/// # Errors
/// What is wrong with it: unsigned on a TCP-AO connection, a KeyID no key for the peer has,
/// a MAC length other than the key's, a MAC that does not verify.
pub fn check_reply(r: &Reply, conn: &PeerConn, keys: &[KeyM], ksne: u32) -> Result<(), String> {
    let Some((key_id, _rnext, maclen)) = r.ao else {
        return if conn.key.is_some()
            && !r.flags.contains(TcpFlags::RST)
            && !conn.time_wait_answer(r)
        {
            Err(format!(
                "the kernel sent an unsigned segment ({:?} seq {} ack {} len {}) on a TCP-AO \
                 connection",
                r.flags, r.seq, r.ack, r.seg_len
            ))
        } else {
            Ok(())
        };
    };
    // The key the kernel signs with matches the peer: of several keys with this SendID
    // (for other peers), only the peer's counts (resolved divergence 2, docs/fuzz.md).
    let (family, addr) = match conn.me.ip() {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (2, b)
        }
        IpAddr::V6(a) => (10, a.octets()),
    };
    let Some(k) = keys
        .iter()
        .find(|k| k.sndid == key_id && k.matches_peer(&addr, family))
    else {
        return Err(format!(
            "the kernel signed with KeyID {key_id}, which no key of the socket has as SendID"
        ));
    };
    if maclen != usize::from(k.maclen) {
        return Err(format!(
            "KeyID {key_id}: MAC of {maclen} bytes, the key's MAC length is {}",
            k.maclen
        ));
    }
    let mkt = kernel_mkt(k).ok_or("key outside the reference's range")?;
    if conn.reset && r.flags.contains(TcpFlags::RST) {
        // A listener answering a segment of a connection it no longer has signs its RST with
        // the traffic key of a SYN from the peer with ISN = that segment's SEQ and SNE 0
        // (tcp_ao_prepare_reset(), listener branch): resolved divergence 15, docs/fuzz.md.
        let c = Connection::new(conn.me, conn.them, conn.last_seq, 0);
        let keys = TrafficKeys::derive(&mkt, &c).map_err(|e| e.to_string())?;
        let seg = SegmentRef::parse(&r.packet).map_err(|e| e.to_string())?;
        return match verify_mac(keys.for_send(true), 0, &seg, mkt.include_options) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "listener RST seq {} signed with KeyID {key_id}: the MAC does not verify with \
                 the SYN context of the segment it answers",
                r.seq
            )),
            Err(e) => Err(format!("reference cannot check the segment: {e}")),
        };
    }
    let syn_only = r.flags.contains(TcpFlags::SYN) && !r.flags.contains(TcpFlags::ACK);
    let c = Connection::new(
        conn.them,
        conn.me,
        conn.kisn,
        if syn_only { 0 } else { conn.isn },
    );
    let keys = TrafficKeys::derive(&mkt, &c).map_err(|e| e.to_string())?;
    let seg = SegmentRef::parse(&r.packet).map_err(|e| e.to_string())?;
    match verify_mac(keys.for_send(syn_only), ksne, &seg, mkt.include_options) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "{:?} seq {} signed with KeyID {key_id}: the MAC does not verify with the reference \
             (SNE {ksne})",
            r.flags, r.seq
        )),
        Err(e) => Err(format!("reference cannot check the segment: {e}")),
    }
}

/// `(peer, kernel)` addresses of the TUN link.
pub fn addr_pair(v6: bool) -> (IpAddr, IpAddr) {
    use super::encode::ip;
    use super::prog::{Addr, Ns};
    (ip(Addr::Tun, Ns::A, v6), {
        if v6 {
            "fd00:2::1"
                .parse()
                .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST))
        } else {
            IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 1))
        }
    })
}

/// Builds the SYN of a new connection to port `port` of the TUN-side address.
pub fn syn(
    v6: bool,
    sport: u16,
    port: u16,
    isn: u32,
    key: Option<&KeyM>,
    auth: SegAuth,
) -> (Vec<u8>, PeerConn) {
    let (me, them) = addr_pair(v6);
    let conn = PeerConn {
        listener: 0,
        me: SocketAddr::new(me, sport),
        them: SocketAddr::new(them, port),
        snd_nxt: isn.wrapping_add(1),
        rcv_nxt: 0,
        isn,
        kisn: 0,
        key: key.cloned(),
        sne: SneTracker::new(isn),
        ksne: SneTracker::new(0),
        established: false,
        reset: false,
        last_seq: isn,
        unknown_id: key.map_or(0, |k| k.rcvid.wrapping_add(77)),
        child_keys: key.into_iter().cloned().collect(),
        fin_sent: false,
        kernel_fin: false,
        last_unsigned: auth == SegAuth::Unsigned || auth == SegAuth::Md5,
    };
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: port,
        seq_number: isn,
        ack_number: 0,
        flags: TcpFlags::SYN,
        window_len: 65_535,
        urgent_at: 0,
        options: &[],
        payload: &[],
    };
    let pkt = sign(&conn, &tcp, auth, None, 0).unwrap_or_default();
    (pkt, conn)
}

/// Signs `tcp` as the peer of `conn` with `auth` (`rnext` overrides the RNextKeyID; `sne`
/// is the segment's SNE).
pub fn sign(
    conn: &PeerConn,
    tcp: &TcpRepr<'_>,
    auth: SegAuth,
    rnext: Option<u8>,
    sne: u32,
) -> Option<Vec<u8>> {
    let ip = IpHeader::new(conn.me.ip(), conn.them.ip());
    let Some(k) = &conn.key else {
        return build_segment(&ip, tcp, &Auth::None).ok();
    };
    let md5 = key_bytes(k.sndid, 16);
    if auth == SegAuth::Unsigned {
        return build_segment(&ip, tcp, &Auth::None).ok();
    }
    if auth == SegAuth::Md5 {
        return build_segment(&ip, tcp, &Auth::Md5(&md5)).ok();
    }
    let maclen = if auth == SegAuth::WrongMaclen {
        if k.maclen > 8 {
            usize::from(k.maclen) - 4
        } else {
            usize::from(k.maclen) + 4
        }
    } else {
        usize::from(k.maclen)
    };
    let mut mkt = peer_mkt(k, maclen)?;
    if auth == SegAuth::UnknownKey {
        mkt.send_id = conn.unknown_id;
    }
    let syn_only = tcp.flags.contains(TcpFlags::SYN) && !tcp.flags.contains(TcpFlags::ACK);
    let c = Connection::new(
        conn.me,
        conn.them,
        conn.isn,
        if syn_only { 0 } else { conn.kisn },
    );
    let mut signer = ConnectionSigner::new(mkt, c).ok()?;
    signer.set_sne_state(tcp.seq_number, sne);
    if let Some(r) = rnext {
        signer.rnext_key_id = r;
    }
    let (mut pkt, _) = signer.sign(tcp).ok()?;
    if auth == SegAuth::BadMac {
        let seg = SegmentRef::parse(&pkt).ok()?;
        let off = seg.tcp_offset + 20 + 4;
        if off < pkt.len() {
            pkt[off] ^= 0x01;
        }
        // A wrong checksum would be dropped before TCP-AO looks at the segment (resolved
        // divergence 3, docs/fuzz.md).
        tcpao_refimpl::sign::fill_tcp_checksum(&mut pkt).ok()?;
    }
    Some(pkt)
}

/// The data/FIN/RST segment of `s` on `conn` (advances `snd_nxt` and the SNE when in window).
pub fn segment(conn: &mut PeerConn, s: &Seg) -> Option<Vec<u8>> {
    let payload = vec![0x61u8; usize::from(s.len.min(1200))];
    let mut flags = TcpFlags::ACK;
    if s.rst {
        flags = TcpFlags::RST | TcpFlags::ACK;
    } else {
        if s.fin {
            flags |= TcpFlags::FIN;
        }
        if !payload.is_empty() {
            flags |= TcpFlags::PSH;
        }
    }
    let seq = conn.snd_nxt.wrapping_add_signed(s.seq_off);
    let tcp = TcpRepr {
        src_port: conn.me.port(),
        dst_port: conn.them.port(),
        seq_number: seq,
        ack_number: conn.rcv_nxt,
        flags,
        window_len: 65_535,
        urgent_at: 0,
        options: &[],
        payload: if s.rst { &[] } else { &payload },
    };
    let sne = conn.sne.sne_for(seq);
    let pkt = sign(conn, &tcp, s.auth, s.rnext, sne)?;
    conn.last_seq = seq;
    conn.last_unsigned = matches!(s.auth, SegAuth::Unsigned | SegAuth::Md5);
    if s.fin && !s.rst && s.seq_off == 0 && s.auth == SegAuth::Good {
        conn.fin_sent = true;
    }
    if s.rst && s.auth == SegAuth::Good && s.seq_off == 0 {
        conn.reset = true;
    }
    // Only what the kernel accepts moves the sequence space: a segment it drops (bad MAC,
    // wrong MAC length, unknown key, unsigned, TCP-MD5) leaves its RCV.NXT where it was, and an
    // RST sent after one would be out of order (a challenge ACK, no reset): resolved
    // divergence 30, docs/fuzz.md.
    let accepted = conn.key.is_none() || s.auth == SegAuth::Good;
    if s.seq_off == 0 && !s.rst && accepted {
        let len = tcp.payload.len() as u32 + u32::from(s.fin);
        conn.sne.observe(seq, len);
        conn.snd_nxt = seq.wrapping_add(len);
    }
    Some(pkt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyM {
        KeyM {
            uid: 0,
            family: 2,
            addr: [10, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            prefix: 32,
            sndid: 5,
            rcvid: 7,
            maclen: 12,
            keyflags: 0,
            l3index: 0,
            alg_name: "hmac(sha1)",
            key: key_bytes(3, 20),
        }
    }

    #[test]
    fn the_unknown_key_id_avoids_every_recv_id() {
        let mut a = key();
        a.rcvid = 0;
        let mut b = key();
        b.rcvid = 1;
        assert_eq!(unused_recv_id(&[]), Some(0));
        assert_eq!(unused_recv_id(&[b.clone()]), Some(0));
        assert_eq!(unused_recv_id(&[a.clone(), b]), Some(2));
        let all: Vec<KeyM> = (0..=255u8)
            .map(|id| KeyM {
                rcvid: id,
                ..a.clone()
            })
            .collect();
        assert_eq!(unused_recv_id(&all), None);
    }

    /// Resolved divergence 30: a segment the kernel drops does not move the peer's SND.NXT.
    #[test]
    fn dropped_segments_do_not_advance_the_sequence() {
        let k = key();
        let (_, mut conn) = syn(false, 40_008, 80, 100, Some(&k), SegAuth::Good);
        conn.established = true;
        let start = conn.snd_nxt;
        for auth in [
            SegAuth::BadMac,
            SegAuth::WrongMaclen,
            SegAuth::UnknownKey,
            SegAuth::Unsigned,
            SegAuth::Md5,
        ] {
            let seg = Seg {
                auth,
                rnext: None,
                len: 10,
                fin: false,
                rst: false,
                seq_off: 0,
            };
            segment(&mut conn, &seg).unwrap();
            assert_eq!(conn.snd_nxt, start, "{auth:?}");
        }
        let good = Seg {
            auth: SegAuth::Good,
            rnext: None,
            len: 10,
            fin: false,
            rst: false,
            seq_off: 0,
        };
        segment(&mut conn, &good).unwrap();
        assert_eq!(conn.snd_nxt, start.wrapping_add(10));
        // Without a key everything is accepted.
        conn.key = None;
        let unsigned = Seg {
            auth: SegAuth::Unsigned,
            ..good
        };
        segment(&mut conn, &unsigned).unwrap();
        assert_eq!(conn.snd_nxt, start.wrapping_add(20));
    }

    #[test]
    fn syn_carries_the_mirrored_key_ids_and_verifies() {
        let k = key();
        let (pkt, conn) = syn(false, 40_000, 80, 0xffff_fff0, Some(&k), SegAuth::Good);
        let r = parse_reply(pkt.clone()).unwrap();
        assert_eq!(
            r.ao,
            Some((7, 5, 12)),
            "KeyID = socket's RecvID, RNext = its SendID"
        );
        // Checked as if the kernel had sent it with the mirrored key: the peer's MKT.
        let mkt = peer_mkt(&k, 12).unwrap();
        let c = Connection::new(conn.me, conn.them, conn.isn, 0);
        let keys = TrafficKeys::derive(&mkt, &c).unwrap();
        let seg = SegmentRef::parse(&pkt).unwrap();
        assert!(verify_mac(keys.for_send(true), 0, &seg, true).unwrap());
        let (bad, _) = syn(false, 40_000, 80, 1, Some(&k), SegAuth::BadMac);
        // Resolved divergence 3: the bad MAC comes with a correct checksum.
        let mut refilled = bad.clone();
        tcpao_refimpl::sign::fill_tcp_checksum(&mut refilled).unwrap();
        assert_eq!(refilled, bad, "the checksum of a bad-MAC segment is right");
        let seg = SegmentRef::parse(&bad).unwrap();
        let c = Connection::new(conn.me, conn.them, 1, 0);
        let keys = TrafficKeys::derive(&mkt, &c).unwrap();
        assert!(!verify_mac(keys.for_send(true), 0, &seg, true).unwrap());
        let (unsigned, _) = syn(false, 40_000, 80, 1, Some(&k), SegAuth::Unsigned);
        assert_eq!(parse_reply(unsigned).unwrap().ao, None);
    }

    #[test]
    fn data_segments_cross_the_sne_wrap() {
        let k = key();
        let (_, mut conn) = syn(true, 40_001, 80, 0xffff_fff0, Some(&k), SegAuth::Good);
        conn.kisn = 1000;
        let s = Seg {
            auth: SegAuth::Good,
            rnext: Some(9),
            len: 100,
            fin: false,
            rst: false,
            seq_off: 0,
        };
        let first = parse_reply(segment(&mut conn, &s).unwrap()).unwrap();
        assert_eq!(first.ao.map(|a| a.1), Some(9), "RNextKeyID request");
        assert_eq!(conn.sne.sne(), 1, "the peer's SNE moved past the wrap");
        let wrong = parse_reply(
            segment(
                &mut conn,
                &Seg {
                    auth: SegAuth::WrongMaclen,
                    ..s
                },
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(wrong.ao.map(|a| a.2), Some(8));
    }

    /// Resolved divergence 2 (docs/fuzz.md): two keys share SendID 3, one for the peer's
    /// /24 with a 4-byte MAC and a newer one for another host with a 16-byte MAC; the
    /// kernel's SYN-ACK is signed with the peer's key, and the checker must pick that one.
    #[test]
    fn the_checker_picks_the_key_that_matches_the_peer() {
        let peer_net = KeyM {
            addr: [10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            prefix: 24,
            sndid: 3,
            rcvid: 3,
            maclen: 4,
            ..key()
        };
        let other = KeyM {
            addr: [10, 0, 1, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sndid: 3,
            rcvid: 3,
            maclen: 16,
            ..key()
        };
        // The kernel's SYN-ACK, built here with the peer's key from the kernel's side.
        let (_, mut conn) = syn(false, 40_003, 80, 77, Some(&peer_net), SegAuth::Good);
        conn.kisn = 1234;
        let kconn = PeerConn {
            me: conn.them,
            them: conn.me,
            isn: conn.kisn,
            kisn: conn.isn,
            key: Some(KeyM {
                sndid: 3,
                rcvid: 3,
                ..peer_net.clone()
            }),
            ..conn.clone()
        };
        let tcp = TcpRepr {
            src_port: 80,
            dst_port: 40_003,
            seq_number: 1234,
            ack_number: 78,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window_len: 1000,
            urgent_at: 0,
            options: &[],
            payload: &[],
        };
        let pkt = sign(&kconn, &tcp, SegAuth::Good, None, 0).unwrap();
        let r = parse_reply(pkt).unwrap();
        assert_eq!(r.ao.map(|a| (a.0, a.2)), Some((3, 4)));
        check_reply(&r, &conn, &[other, peer_net], 0).unwrap();
    }

    /// Resolved divergence 15 (docs/fuzz.md): after the peer reset the connection, the
    /// listener answers its next segment with an RST signed with the SYN context of that
    /// segment (ISN = its SEQ, the other ISN 0, SNE 0).
    #[test]
    fn listener_rsts_are_checked_with_the_syn_context() {
        let k = KeyM {
            sndid: 2,
            rcvid: 2,
            maclen: 4,
            ..key()
        };
        let (_, mut conn) = syn(false, 40_004, 80, 10, Some(&k), SegAuth::Good);
        conn.kisn = 5000;
        conn.last_seq = 777;
        let mkt = kernel_mkt(&k).unwrap();
        let c = Connection::new(conn.me, conn.them, 777, 0);
        let keys = TrafficKeys::derive(&mkt, &c).unwrap();
        let sign = tcpao_refimpl::AoSign {
            key: keys.for_send(true),
            mac_len: 4,
            key_id: 2,
            rnext_key_id: 2,
            sne: 0,
            include_options: true,
        };
        let tcp = TcpRepr {
            src_port: 80,
            dst_port: 40_004,
            seq_number: 9,
            ack_number: 0,
            flags: TcpFlags::RST,
            window_len: 0,
            urgent_at: 0,
            options: &[],
            payload: &[],
        };
        let ip = IpHeader::new(conn.them.ip(), conn.me.ip());
        let pkt = build_segment(&ip, &tcp, &Auth::Ao(sign)).unwrap();
        let r = parse_reply(pkt).unwrap();
        assert!(check_reply(&r, &conn, std::slice::from_ref(&k), 0).is_err());
        conn.reset = true;
        check_reply(&r, &conn, &[k], 0).unwrap();
    }

    #[test]
    fn unsigned_kernel_segments_on_ao_connections_are_flagged() {
        let k = key();
        let (pkt, conn) = syn(false, 40_002, 80, 5, None, SegAuth::Good);
        let r = parse_reply(pkt).unwrap();
        assert!(
            check_reply(&r, &conn, std::slice::from_ref(&k), 0).is_ok(),
            "no key: unsigned is right"
        );
        let conn = PeerConn {
            key: Some(k.clone()),
            ..conn
        };
        assert!(
            check_reply(&r, &conn, &[k], 0)
                .unwrap_err()
                .contains("unsigned")
        );
    }

    /// Resolved divergence 20: only TIME-WAIT's answer to a segment without TCP-AO may be
    /// unsigned, and only a pure ACK.
    #[test]
    fn time_wait_may_ack_an_unsigned_segment_unsigned() {
        let k = key();
        let (_, mut conn) = syn(false, 40_006, 80, 5, Some(&k), SegAuth::Good);
        let ack = |flags: TcpFlags, payload: &[u8]| {
            let tcp = TcpRepr {
                src_port: 80,
                dst_port: 40_006,
                seq_number: 9,
                ack_number: 6,
                flags,
                window_len: 0,
                urgent_at: 0,
                options: &[],
                payload,
            };
            let ip = IpHeader::new(conn.them.ip(), conn.me.ip());
            parse_reply(build_segment(&ip, &tcp, &Auth::None).unwrap()).unwrap()
        };
        let pure = ack(TcpFlags::ACK, &[]);
        let data = ack(TcpFlags::ACK | TcpFlags::PSH, b"x");
        let keys = std::slice::from_ref(&k);
        // One row per missing condition: each alone keeps the unsigned ACK a finding.
        for (fin_sent, kernel_fin, last_unsigned) in [
            (false, true, true),
            (true, false, true),
            (true, true, false),
        ] {
            conn.fin_sent = fin_sent;
            conn.kernel_fin = kernel_fin;
            conn.last_unsigned = last_unsigned;
            assert!(
                check_reply(&pure, &conn, keys, 0).is_err(),
                "{fin_sent} {kernel_fin} {last_unsigned}"
            );
        }
        conn.last_unsigned = true;
        check_reply(&pure, &conn, keys, 0).unwrap();
        assert!(
            check_reply(&data, &conn, keys, 0).is_err(),
            "data is never unsigned"
        );
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Synthetic TCP-AO connections for the tcpao-verify tests, signed with refimpl's signing
//! API and written as pcap/pcapng.
#![allow(dead_code)]

use std::net::SocketAddr;

use tcpao_refimpl::capture::writer::{ByteOrder, PcapWriter, PcapngWriter, encapsulate};
use tcpao_refimpl::capture::{LinkType, Timestamp};
use tcpao_refimpl::kdf::{Connection, Context, TrafficKey};
use tcpao_refimpl::sign::{AoSign, Auth, ConnectionSigner, IpHeader, build_segment};
use tcpao_refimpl::wire::{TcpFlags, TcpRepr};
use tcpao_refimpl::{Algorithm, Mkt};

pub const MSS: [u8; 4] = [2, 4, 0x05, 0xb4];
/// NOP, NOP, timestamps.
pub const TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// How one end signs.
#[derive(Clone)]
pub enum Signing {
    Ao(Mkt),
    /// SNE kept one ahead of the right value.
    AoSneAhead(Mkt),
    Md5(Vec<u8>),
    None,
}

/// One side's view of a connection.
pub struct End {
    pub addr: SocketAddr,
    pub isn: u32,
    pub signing: Signing,
    signer: Option<ConnectionSigner>,
    pub next: u32,
}

pub struct Session {
    pub c: End,
    pub s: End,
    /// Built IP packets, in order.
    pub packets: Vec<Vec<u8>>,
}

fn repr<'a>(
    from: &End,
    to: &End,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    options: &'a [u8],
    payload: &'a [u8],
) -> TcpRepr<'a> {
    TcpRepr {
        src_port: from.addr.port(),
        dst_port: to.addr.port(),
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: 64000,
        urgent_at: 0,
        options,
        payload,
    }
}

impl Session {
    pub fn new(
        client: SocketAddr,
        server: SocketAddr,
        cisn: u32,
        sisn: u32,
        csign: Signing,
        ssign: Signing,
    ) -> Session {
        let mk = |addr: SocketAddr, peer: SocketAddr, isn: u32, pisn: u32, sg: Signing| {
            let signer = match &sg {
                Signing::Ao(m) | Signing::AoSneAhead(m) => {
                    let mut s =
                        ConnectionSigner::new(m.clone(), Connection::new(addr, peer, isn, pisn))
                            .unwrap();
                    if matches!(sg, Signing::AoSneAhead(_)) {
                        s.set_sne_state(isn, 1);
                    }
                    Some(s)
                }
                _ => None,
            };
            End {
                addr,
                isn,
                signing: sg,
                signer,
                next: isn,
            }
        };
        Session {
            c: mk(client, server, cisn, sisn, csign),
            s: mk(server, client, sisn, cisn, ssign),
            packets: Vec::new(),
        }
    }

    fn build(from: &mut End, to: &End, tcp: &TcpRepr<'_>) -> Vec<u8> {
        match &from.signing {
            Signing::Ao(_) | Signing::AoSneAhead(_) => {
                from.signer.as_mut().unwrap().sign(tcp).unwrap().0
            }
            Signing::Md5(k) => build_segment(
                &IpHeader::new(from.addr.ip(), to.addr.ip()),
                tcp,
                &Auth::Md5(k),
            )
            .unwrap(),
            Signing::None => build_segment(
                &IpHeader::new(from.addr.ip(), to.addr.ip()),
                tcp,
                &Auth::None,
            )
            .unwrap(),
        }
    }

    /// Send from the client (true) or the server.
    pub fn send(&mut self, from_client: bool, flags: TcpFlags, options: &[u8], payload: &[u8]) {
        let (from, to) = if from_client {
            (&mut self.c, &mut self.s)
        } else {
            (&mut self.s, &mut self.c)
        };
        let seq = from.next;
        let ack = if flags.contains(TcpFlags::ACK) {
            to.next
        } else {
            0
        };
        let tcp = repr(from, to, seq, ack, flags, options, payload);
        let p = Self::build(from, to, &tcp);
        let adv = payload.len() as u32
            + u32::from(flags.contains(TcpFlags::SYN))
            + u32::from(flags.contains(TcpFlags::FIN));
        from.next = from.next.wrapping_add(adv);
        self.packets.push(p);
    }

    pub fn handshake(&mut self) {
        self.send(true, TcpFlags::SYN, &MSS, &[]);
        self.send(false, TcpFlags::SYN | TcpFlags::ACK, &MSS, &[]);
        self.send(true, TcpFlags::ACK, &TS, &[]);
    }

    pub fn data(&mut self, from_client: bool, len: usize) {
        let payload = vec![0x42u8; len];
        self.send(from_client, TcpFlags::PSH | TcpFlags::ACK, &TS, &payload);
    }

    pub fn close(&mut self) {
        self.send(true, TcpFlags::FIN | TcpFlags::ACK, &TS, &[]);
        self.send(false, TcpFlags::FIN | TcpFlags::ACK, &TS, &[]);
        self.send(true, TcpFlags::ACK, &TS, &[]);
    }

    /// A full conversation: handshake, `n` data segments each way, close.
    pub fn conversation(&mut self, n: usize) {
        self.handshake();
        for i in 0..n {
            self.data(true, 19 + i);
            self.data(false, 40 + i);
        }
        self.close();
    }
}

pub fn mkt(send: u8, recv: u8, alg: Algorithm, secret: &str) -> Mkt {
    Mkt::new(send, recv, alg, secret)
}

/// A standard session 10.0.0.1:40000 -> 10.0.0.2:179 with hmac-sha1 "secret", IDs 1/2.
pub fn standard(csign: Signing, ssign: Signing) -> Session {
    Session::new(
        sa("10.0.0.1:40000"),
        sa("10.0.0.2:179"),
        3_625_560_951,
        1_885_426_355,
        csign,
        ssign,
    )
}

pub fn ao(send: u8, recv: u8) -> Signing {
    Signing::Ao(mkt(send, recv, Algorithm::HmacSha1, "secret"))
}

/// Sign an already-built packet again with a traffic key derived from `ctx`.
pub fn resign(packet: &mut [u8], m: &Mkt, ctx: &Context, sne: u32) {
    let key = TrafficKey::derive(m, ctx);
    tcpao_refimpl::sign::sign_in_place(packet, &AoSign::from_mkt(m, &key, sne)).unwrap();
}

pub fn ts(i: usize) -> Timestamp {
    Timestamp {
        secs: 1_700_000_000 + i as i64 / 1000,
        nanos: (i % 1000) as u32 * 1_000_000,
    }
}

/// Write IP packets as a pcap with link type `lt`.
pub fn pcap(lt: LinkType, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), ByteOrder::Little, true, lt, 262_144).unwrap();
    for (i, p) in packets.iter().enumerate() {
        w.write_frame(ts(i), &encapsulate(lt, p)).unwrap();
    }
    w.finish().unwrap()
}

/// Write IP packets as a pcapng with link type `lt`.
pub fn pcapng(lt: LinkType, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut w = PcapngWriter::new(Vec::new(), ByteOrder::Big).unwrap();
    let i = w.add_interface(lt, 0, Some(9)).unwrap();
    for (n, p) in packets.iter().enumerate() {
        w.write_frame(i, ts(n), &encapsulate(lt, p)).unwrap();
    }
    w.finish().unwrap()
}

pub const KEYS_STD: &str = r#"
[[mkt]]
algorithm = "hmac-sha1"
secret = "secret"
send_id = 1
recv_id = 2
local = "10.0.0.1"
"#;

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Loopback capture with the crate's packet socket ([`tcpao_sys::packet`]), outgoing copies
//! ignored (each loopback packet is otherwise seen twice).

#![allow(dead_code)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tcpao_sys::packet::{Layer, PacketSocket};

/// A running capture of every IP packet seen on the host (network layer, no link header).
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<Vec<Vec<u8>>>>>,
}

impl Capture {
    pub fn start() -> io::Result<Self> {
        let sock = PacketSocket::open(Layer::Network, 32 << 20)?;
        sock.set_ignore_outgoing(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = vec![0u8; 70_000];
            loop {
                match sock.recv(&mut buf, Duration::from_millis(20))? {
                    Some(p) => out.push(buf[..p.len.min(buf.len())].to_vec()),
                    None if flag.load(Ordering::Relaxed) => return Ok(out),
                    None => {}
                }
            }
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop and return the packets (after draining what the socket already holds).
    pub fn finish(mut self) -> io::Result<Vec<Vec<u8>>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(Ok(vec![]), |t| {
            t.join()
                .unwrap_or_else(|_| Err(io::Error::other("capture thread panicked")))
        })
    }
}

/// A parsed TCP segment with its TCP-AO option (RFC 5925 §2.2), if any.
#[derive(Debug, Clone)]
pub struct Segment {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub flags: u8,
    pub payload_len: usize,
    /// (KeyID, RNextKeyID, MAC)
    pub ao: Option<(u8, u8, Vec<u8>)>,
    /// Kinds of all TCP options, in order.
    pub option_kinds: Vec<u8>,
    /// The whole IP packet.
    pub packet: Vec<u8>,
}

/// Parse an IPv4/IPv6 packet carrying TCP (no extension headers); None for anything else.
pub fn parse(packet: &[u8]) -> Option<Segment> {
    let (l4, total) = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0xf) * 4;
            if packet.len() < ihl + 20 || packet[9] != 6 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            (ihl, total.min(packet.len()))
        }
        6 => {
            if packet.len() < 60 || packet[6] != 6 {
                return None;
            }
            let total = 40 + usize::from(u16::from_be_bytes([packet[4], packet[5]]));
            (40, total.min(packet.len()))
        }
        _ => return None,
    };
    let t = &packet[l4..total];
    let doff = usize::from(t[12] >> 4) * 4;
    if doff < 20 || t.len() < doff {
        return None;
    }
    let mut ao = None;
    let mut option_kinds = Vec::new();
    let mut opts = &t[20..doff];
    while let Some(&kind) = opts.first() {
        match kind {
            0 => break,
            1 => opts = &opts[1..],
            _ => {
                let len = usize::from(*opts.get(1)?);
                if len < 2 || len > opts.len() {
                    return None;
                }
                option_kinds.push(kind);
                if kind == 29 && len >= 4 {
                    ao = Some((opts[2], opts[3], opts[4..len].to_vec()));
                }
                opts = &opts[len..];
            }
        }
    }
    Some(Segment {
        src_port: u16::from_be_bytes([t[0], t[1]]),
        dst_port: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        flags: t[13],
        payload_len: t.len() - doff,
        ao,
        option_kinds,
        packet: packet[..total].to_vec(),
    })
}

/// Segments of the connection between the two ports (either direction).
pub fn segments_between(packets: &[Vec<u8>], a: u16, b: u16) -> Vec<Segment> {
    packets
        .iter()
        .filter_map(|p| parse(p))
        .filter(|s| (s.src_port == a && s.dst_port == b) || (s.src_port == b && s.dst_port == a))
        .collect()
}

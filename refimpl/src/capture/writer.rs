// SPDX-License-Identifier: MIT OR Apache-2.0
//! Minimal pcap and pcapng writers, for synthetic captures (tests, benchmarks, examples).
//!
//! They write exactly what they are given: no checks beyond the formats' own length fields.

use std::io::{self, Write};

use super::{LinkType, Timestamp};

/// Byte order of a written capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteOrder {
    /// Little-endian (what x86 machines write).
    #[default]
    Little,
    /// Big-endian.
    Big,
}

impl ByteOrder {
    fn u16(self, v: u16) -> [u8; 2] {
        match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }
    fn u32(self, v: u32) -> [u8; 4] {
        match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }
}

/// Writer of classic pcap files.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    order: ByteOrder,
    nanos: bool,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Write the file header: byte order, nanosecond (true) or microsecond timestamps, link
    /// type, snaplen.
    ///
    /// # Errors
    /// Writing to `out` failed.
    pub fn new(
        mut out: W,
        order: ByteOrder,
        nanos: bool,
        link_type: LinkType,
        snaplen: u32,
    ) -> io::Result<Self> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        out.write_all(&order.u32(magic))?;
        out.write_all(&order.u16(2))?;
        out.write_all(&order.u16(4))?;
        out.write_all(&order.u32(0))?; // thiszone
        out.write_all(&order.u32(0))?; // sigfigs
        out.write_all(&order.u32(snaplen))?;
        out.write_all(&order.u32(u32::from(link_type.raw())))?;
        Ok(PcapWriter {
            out,
            order,
            nanos,
            snaplen,
        })
    }

    /// Write one frame (link header included). Frames longer than the snaplen are cut, as a
    /// capture tool would, and keep their original length.
    ///
    /// # Errors
    /// Writing to `out` failed.
    pub fn write_frame(&mut self, ts: Timestamp, frame: &[u8]) -> io::Result<()> {
        let cap = frame.len().min(self.snaplen as usize);
        let frac = if self.nanos {
            ts.nanos
        } else {
            ts.nanos / 1000
        };
        self.out.write_all(&self.order.u32(ts.secs as u32))?;
        self.out.write_all(&self.order.u32(frac))?;
        self.out.write_all(&self.order.u32(cap as u32))?;
        self.out.write_all(&self.order.u32(frame.len() as u32))?;
        self.out.write_all(&frame[..cap])
    }

    /// Flush and return the inner writer.
    ///
    /// # Errors
    /// Flushing failed.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writer of pcapng files (one section; interfaces added on the way).
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    out: W,
    order: ByteOrder,
    /// Per interface: timestamp units per second, snaplen.
    interfaces: Vec<(u64, u32)>,
}

impl<W: Write> PcapngWriter<W> {
    /// Write a Section Header Block.
    ///
    /// # Errors
    /// Writing to `out` failed.
    pub fn new(mut out: W, order: ByteOrder) -> io::Result<Self> {
        let mut b = Vec::with_capacity(28);
        b.extend_from_slice(&order.u32(0x0a0d_0d0a));
        b.extend_from_slice(&order.u32(28));
        b.extend_from_slice(&order.u32(0x1a2b_3c4d));
        b.extend_from_slice(&order.u16(1));
        b.extend_from_slice(&order.u16(0));
        b.extend_from_slice(&[0xff; 8]); // section length unknown
        b.extend_from_slice(&order.u32(28));
        out.write_all(&b)?;
        Ok(PcapngWriter {
            out,
            order,
            interfaces: Vec::new(),
        })
    }

    /// Declare an interface; returns its id. `tsresol` is the pcapng `if_tsresol` value
    /// (6 = microseconds, 9 = nanoseconds, 0x80|n = 2^-n); `None` leaves the option out
    /// (microseconds).
    ///
    /// # Errors
    /// Writing to `out` failed.
    ///
    /// # Panics
    /// When `tsresol` is not a valid resolution.
    pub fn add_interface(
        &mut self,
        link_type: LinkType,
        snaplen: u32,
        tsresol: Option<u8>,
    ) -> io::Result<u32> {
        let o = self.order;
        let mut opts = Vec::new();
        if let Some(r) = tsresol {
            opts.extend_from_slice(&o.u16(9));
            opts.extend_from_slice(&o.u16(1));
            opts.extend_from_slice(&[r, 0, 0, 0]);
            opts.extend_from_slice(&[0; 4]); // opt_endofopt
        }
        let len = 20 + opts.len() as u32;
        let mut b = Vec::new();
        b.extend_from_slice(&o.u32(1));
        b.extend_from_slice(&o.u32(len));
        b.extend_from_slice(&o.u16(link_type.raw()));
        b.extend_from_slice(&o.u16(0));
        b.extend_from_slice(&o.u32(snaplen));
        b.extend_from_slice(&opts);
        b.extend_from_slice(&o.u32(len));
        self.out.write_all(&b)?;
        let units = super::tsresol_units(tsresol.unwrap_or(6)).expect("valid if_tsresol");
        self.interfaces.push((units, snaplen));
        Ok(self.interfaces.len() as u32 - 1)
    }

    /// Write one frame as an Enhanced Packet Block on interface `if_id` (cut to the
    /// interface's snaplen when it is not 0).
    ///
    /// # Errors
    /// Writing to `out` failed.
    ///
    /// # Panics
    /// When `if_id` was not declared.
    pub fn write_frame(&mut self, if_id: u32, ts: Timestamp, frame: &[u8]) -> io::Result<()> {
        let (units, snaplen) = self.interfaces[if_id as usize];
        let cap = if snaplen == 0 {
            frame.len()
        } else {
            frame.len().min(snaplen as usize)
        };
        let raw = ts.secs as u64 * units
            + (u128::from(ts.nanos) * u128::from(units) / 1_000_000_000) as u64;
        let pad = (4 - cap % 4) % 4;
        let len = (32 + cap + pad) as u32;
        let o = self.order;
        let mut h = [0u8; 28];
        h[0..4].copy_from_slice(&o.u32(6));
        h[4..8].copy_from_slice(&o.u32(len));
        h[8..12].copy_from_slice(&o.u32(if_id));
        h[12..16].copy_from_slice(&o.u32((raw >> 32) as u32));
        h[16..20].copy_from_slice(&o.u32(raw as u32));
        h[20..24].copy_from_slice(&o.u32(cap as u32));
        h[24..28].copy_from_slice(&o.u32(frame.len() as u32));
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..cap])?;
        self.out.write_all(&[0; 3][..pad])?;
        self.out.write_all(&o.u32(len))
    }

    /// Write a block of another type (statistics, custom...), for tests of readers.
    ///
    /// # Errors
    /// Writing to `out` failed.
    pub fn write_raw_block(&mut self, block_type: u32, body: &[u8]) -> io::Result<()> {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        self.out.write_all(&self.order.u32(block_type))?;
        self.out.write_all(&self.order.u32(len))?;
        self.out.write_all(body)?;
        self.out.write_all(&[0; 3][..pad])?;
        self.out.write_all(&self.order.u32(len))
    }

    /// Flush and return the inner writer.
    ///
    /// # Errors
    /// Flushing failed.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Wrap an IP packet in the link-layer header of `link_type` (for synthetic captures).
/// `Other` link types get no header.
pub fn encapsulate(link_type: LinkType, ip: &[u8]) -> Vec<u8> {
    let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
    let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
    let mut f = Vec::with_capacity(ip.len() + 24);
    match link_type {
        LinkType::Ethernet => {
            f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&ethertype.to_be_bytes());
        }
        LinkType::LinuxSll => {
            f.extend_from_slice(&[0, 4, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 1, 0, 0]);
            f.extend_from_slice(&ethertype.to_be_bytes());
        }
        LinkType::LinuxSll2 => {
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 4, 6]);
            f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0, 0]);
        }
        LinkType::Null => {
            let fam: u32 = if v6 { 24 } else { 2 };
            f.extend_from_slice(&fam.to_le_bytes());
        }
        LinkType::Loop => {
            let fam: u32 = if v6 { 24 } else { 2 };
            f.extend_from_slice(&fam.to_be_bytes());
        }
        LinkType::Raw(_) | LinkType::Ipv4 | LinkType::Ipv6 | LinkType::Other(_) => {}
    }
    f.extend_from_slice(ip);
    f
}

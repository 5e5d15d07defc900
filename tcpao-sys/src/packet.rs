// SPDX-License-Identifier: MIT OR Apache-2.0
//! Packet sockets (`AF_PACKET`, packet(7)): how tests read what crosses an interface.
//!
//! A [`PacketSocket`] sees every packet of the namespace it was opened in (`ETH_P_ALL`),
//! with its link header ([`Layer::Link`]) or from the network header on
//! ([`Layer::Network`]). [`PacketSocket::recv`] says where each packet was seen (interface,
//! and whether this host sent it) and its full length, so a packet larger than the buffer
//! is detected rather than silently cut. The selftests' capture and this crate's own tests
//! read the wire through it.
//!
//! Opening one needs `CAP_NET_RAW`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::sys;

/// Where a packet socket's packets start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// With the link-layer header (`SOCK_RAW`): Ethernet frames on a veth.
    Link,
    /// From the network-layer header (`SOCK_DGRAM`): IP packets.
    Network,
}

/// One packet [`PacketSocket::recv`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Full length of the packet; more than the buffer when it was cut.
    pub len: usize,
    /// Interface it was seen on (`sll_ifindex`).
    pub ifindex: u32,
    /// Whether this host sent it (`PACKET_OUTGOING`).
    pub outgoing: bool,
}

/// An `AF_PACKET` socket for every protocol.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Open a packet socket of `layer` with a receive buffer of `rcvbuf` bytes
    /// (`SO_RCVBUFFORCE`, which ignores `net.core.rmem_max` for root; `SO_RCVBUF` otherwise).
    ///
    /// # Errors
    /// The socket cannot be opened (no `CAP_NET_RAW`) or sized.
    pub fn open(layer: Layer, rcvbuf: usize) -> io::Result<Self> {
        let kind = match layer {
            Layer::Link => libc::SOCK_RAW,
            Layer::Network => libc::SOCK_DGRAM,
        };
        let s = PacketSocket {
            fd: sys::packet_socket(kind)?,
        };
        let size = i32::try_from(rcvbuf).unwrap_or(i32::MAX);
        let fd = s.fd.as_fd();
        if sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
            sys::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
        }
        Ok(s)
    }

    /// Leave out the packets this host sends (`PACKET_IGNORE_OUTGOING`): on `lo` every
    /// packet is otherwise seen twice.
    ///
    /// # Errors
    /// The kernel refused the option.
    pub fn set_ignore_outgoing(&self, ignore: bool) -> io::Result<()> {
        let v = i32::from(ignore);
        sys::setsockopt(
            self.fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &v,
        )
    }

    /// Read the next packet into `buf`, waiting at most `wait` for one (`Duration::ZERO`:
    /// only what is queued). `None` when none came. A packet longer than `buf` fills it and
    /// reports its full length.
    ///
    /// # Errors
    /// The socket failed.
    pub fn recv(&self, buf: &mut [u8], wait: Duration) -> io::Result<Option<Received>> {
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        if !sys::poll_readable(self.fd.as_fd(), ms)? {
            return Ok(None);
        }
        Ok(
            sys::recv_packet(self.fd.as_fd(), buf)?.map(|(len, addr)| Received {
                len,
                ifindex: addr.sll_ifindex as u32,
                outgoing: addr.sll_pkttype == libc::PACKET_OUTGOING,
            }),
        )
    }

    /// Packets the kernel dropped for lack of buffer since the last call
    /// (`PACKET_STATISTICS`, which resets the counters).
    ///
    /// # Errors
    /// The kernel refused the option.
    pub fn drops(&self) -> io::Result<u32> {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        sys::getsockopt(
            self.fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut st,
        )?;
        Ok(st.tp_drops)
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

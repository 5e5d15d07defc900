// SPDX-License-Identifier: MIT OR Apache-2.0
//! TUN devices (`/dev/net/tun`) for injecting crafted segments: test support for the fuzzer
//! (`tcpao-selftests fuzz`), not part of the daemon-facing API.
//!
//! A packet written to a TUN descriptor (`IFF_TUN | IFF_NO_PI`, no NAPI) is received by the
//! kernel synchronously in the writer's context (`tun_get_user()` → `tun_rx_batched()` →
//! `netif_receive_skb()` with bottom halves disabled), so when `write` returns the TCP stack
//! has processed it, and [`crate::kcov`] sees the receive path. Packets the kernel routes to
//! the device are read from the same descriptor.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use crate::sys;

/// `IFF_TUN`: layer-3 packets, no link header, no ARP/NDP.
pub const IFF_TUN: i16 = 0x0001;
/// `IFF_TAP`: Ethernet frames.
pub const IFF_TAP: i16 = 0x0002;
/// `IFF_NO_PI`: no packet-information header in front of each packet.
pub const IFF_NO_PI: i16 = 0x1000;
/// `IFF_NAPI`.
pub const IFF_NAPI: i16 = 0x0010;
/// `IFF_NAPI_FRAGS` (TAP only).
pub const IFF_NAPI_FRAGS: i16 = 0x0020;

/// An open, non-blocking TUN/TAP descriptor attached to its interface.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates (or attaches to) interface `name` in the calling thread's network namespace
    /// with `flags` (e.g. `IFF_TUN | IFF_NO_PI`). The interface is down; bring it up and give
    /// it addresses with netlink.
    ///
    /// # Errors
    /// `ENOENT` without `/dev/net/tun` (`CONFIG_TUN`), `EPERM` without `CAP_NET_ADMIN`,
    /// `EINVAL` for bad flags, `InvalidInput` for a bad name.
    pub fn open(name: &str, flags: i16) -> io::Result<Tun> {
        let (fd, name) = sys::tun_open(name, flags)?;
        Ok(Tun {
            file: File::from(fd),
            name,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Injects one packet (an IP packet for `IFF_TUN | IFF_NO_PI`).
    ///
    /// # Errors
    /// The write's error (`EINVAL` for a malformed header, `EIO` while the link is down).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }

    /// Reads one packet the kernel sent to the device, or `None` when none is queued.
    ///
    /// # Errors
    /// Read errors other than `EAGAIN`.
    pub fn recv(&self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 65_600];
        match (&self.file).read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_the_kernel() {
        let e = Tun::open("a-name-longer-than-15", IFF_TUN).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = Tun::open("nul\0", IFF_TUN).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}

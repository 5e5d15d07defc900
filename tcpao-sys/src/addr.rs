// SPDX-License-Identifier: MIT OR Apache-2.0
//! Peer address prefixes of Master Key Tuples (RFC 5925 §3.1 "TCP connection identifier"),
//! validated so that the kernel's `EINVAL` cases for addresses cannot be built.

use crate::error::{Error, Result};
use crate::uapi::__kernel_sockaddr_storage;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The peer side of an MKT's connection identifier: an address prefix, or any peer.
///
/// Invariants (the kernel's `tcp_ao_verify_ipv4/6` rules): a zero-length prefix only with the
/// any-address (represented by [`PeerPrefix::any`]), the any-address never with a non-zero
/// prefix, no host bits past the prefix, prefix ≤ 32 (IPv4) / ≤ 128 (IPv6). IPv4-mapped IPv6
/// addresses (`::ffff:a.b.c.d/(96+n)`) are folded to IPv4 `a.b.c.d/n`, as the kernel does. The
/// port is never part of it (the kernel rejects non-zero ports).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerPrefix {
    addr: Option<IpAddr>,
    len: u8,
}

impl PeerPrefix {
    /// Any peer (`0.0.0.0/0` or `::/0`, encoded in the socket's family).
    pub const fn any() -> Self {
        Self { addr: None, len: 0 }
    }

    /// A single host (`/32` or `/128`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for the unspecified address (use [`PeerPrefix::any`]).
    pub fn host(addr: impl Into<IpAddr>) -> Result<Self> {
        let addr = fold_mapped(addr.into(), None).0;
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Self::new(addr, len)
    }

    /// `addr/len`, validated.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming `prefix` or `peer` when the pair violates an
    /// invariant listed on the type.
    pub fn new(addr: impl Into<IpAddr>, len: u8) -> Result<Self> {
        let (addr, len) = fold_mapped(addr.into(), Some(len));
        let len = len.ok_or_else(|| {
            Error::invalid("prefix", "an IPv4-mapped IPv6 prefix must be at least /96")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(Error::invalid(
                "prefix",
                format!("/{len} is longer than {max} bits"),
            ));
        }
        if len == 0 {
            return if addr.is_unspecified() {
                Ok(Self::any())
            } else {
                Err(Error::invalid(
                    "prefix",
                    format!("prefix length 0 is only allowed with the any-address, not {addr}"),
                ))
            };
        }
        if addr.is_unspecified() {
            return Err(Error::invalid(
                "peer",
                format!("the any-address needs prefix length 0, not /{len}"),
            ));
        }
        let bits = addr_bits(addr);
        let mask = mask(len, max);
        if bits & !mask != 0 {
            return Err(Error::invalid(
                "peer",
                format!("{addr}/{len} has host bits set past the prefix"),
            ));
        }
        Ok(Self {
            addr: Some(addr),
            len,
        })
    }

    /// The address, or `None` for any peer.
    pub fn addr(&self) -> Option<IpAddr> {
        self.addr
    }

    /// The prefix length (0 for any peer).
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True for [`PeerPrefix::any`].
    pub fn is_any(&self) -> bool {
        self.addr.is_none()
    }

    /// True if `ip` is inside this prefix (IPv4-mapped addresses match IPv4 prefixes).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = fold_mapped(ip, None).0;
        match self.addr {
            None => true,
            Some(a) if a.is_ipv4() != ip.is_ipv4() => false,
            Some(a) => {
                let max = if a.is_ipv4() { 32 } else { 128 };
                addr_bits(ip) & mask(self.len, max) == addr_bits(a)
            }
        }
    }

    /// Encode as the kernel's `sockaddr` for a socket of `family` (`AF_INET`/`AF_INET6`):
    /// port 0, IPv4 prefixes on IPv6 sockets as v4-mapped addresses.
    pub(crate) fn to_sockaddr(self, family: i32) -> Result<__kernel_sockaddr_storage> {
        let mut ss = __kernel_sockaddr_storage::default();
        match (family, self.addr) {
            (libc::AF_INET, None) => put_v4(&mut ss, Ipv4Addr::UNSPECIFIED),
            (libc::AF_INET6, None) => put_v6(&mut ss, Ipv6Addr::UNSPECIFIED),
            (libc::AF_INET, Some(IpAddr::V4(a))) => put_v4(&mut ss, a),
            (libc::AF_INET6, Some(IpAddr::V4(a))) => put_v6(&mut ss, a.to_ipv6_mapped()),
            (libc::AF_INET6, Some(IpAddr::V6(a))) => put_v6(&mut ss, a),
            (libc::AF_INET, Some(IpAddr::V6(a))) => {
                return Err(Error::invalid(
                    "peer",
                    format!("IPv6 peer {a} cannot be used on an IPv4 socket"),
                ));
            }
            (f, _) => {
                return Err(Error::invalid(
                    "socket",
                    format!("address family {f} is neither AF_INET nor AF_INET6"),
                ));
            }
        }
        Ok(ss)
    }

    /// Decode what the kernel reports (`TCP_AO_GET_KEYS`).
    pub(crate) fn from_sockaddr(ss: &__kernel_sockaddr_storage, len: u8) -> Self {
        let addr = match i32::from(ss.ss_family) {
            libc::AF_INET => {
                let d = &ss.__data;
                IpAddr::V4(Ipv4Addr::new(d[2], d[3], d[4], d[5]))
            }
            libc::AF_INET6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&ss.__data[6..22]);
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return Self::any(),
        };
        // The kernel's prefix for a v4-mapped address is the IPv4 prefix length.
        let addr = match addr {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        if addr.is_unspecified() {
            return Self::any();
        }
        Self {
            addr: Some(addr),
            len,
        }
    }
}

/// Fold `::ffff:a.b.c.d[/96+n]` into `a.b.c.d[/n]` (`None` length: mapped prefix too short).
fn fold_mapped(addr: IpAddr, len: Option<u8>) -> (IpAddr, Option<u8>) {
    match addr {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (
                IpAddr::V4(v4),
                len.map(|l| l.checked_sub(96)).unwrap_or(Some(32)),
            ),
            None => (addr, len.or(Some(128))),
        },
        IpAddr::V4(_) => (addr, len.or(Some(32))),
    }
}

fn addr_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn mask(len: u8, max: u8) -> u128 {
    let all: u128 = if max == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    // `checked_shr` because `u128 >> 128` overflows (a /128 host prefix).
    all & !all.checked_shr(u32::from(len)).unwrap_or(0)
}

fn put_v4(ss: &mut __kernel_sockaddr_storage, a: Ipv4Addr) {
    // struct sockaddr_in { sa_family_t; __be16 sin_port; struct in_addr; zero[8] }
    ss.ss_family = libc::AF_INET as u16;
    ss.__data[2..6].copy_from_slice(&a.octets());
}

fn put_v6(ss: &mut __kernel_sockaddr_storage, a: Ipv6Addr) {
    // struct sockaddr_in6 { sa_family_t; __be16 port; __be32 flowinfo; in6_addr; u32 scope }
    ss.ss_family = libc::AF_INET6 as u16;
    ss.__data[6..22].copy_from_slice(&a.octets());
}

impl fmt::Debug for PeerPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for PeerPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            None => f.write_str("any"),
            Some(a) => write!(f, "{a}/{}", self.len),
        }
    }
}

impl FromStr for PeerPrefix {
    type Err = Error;

    /// Parses `any`, `ADDR` (host) or `ADDR/LEN`.
    fn from_str(s: &str) -> Result<Self> {
        if s == "any" {
            return Ok(Self::any());
        }
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| Error::invalid("peer", format!("{a:?} is not an IP address")))?;
        match l {
            None => Self::host(addr),
            Some(l) => {
                let len = l.parse().map_err(|_| {
                    Error::invalid("prefix", format!("{l:?} is not a prefix length"))
                })?;
                Self::new(addr, len)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<PeerPrefix> {
        s.parse()
    }

    #[test]
    fn kernel_einval_cases_are_unrepresentable() {
        // prefix 0 with a specific address ("no prefix, addr")
        assert!(matches!(
            p("10.0.0.1/0"),
            Err(Error::InvalidArgument {
                field: "prefix",
                ..
            })
        ));
        // any-address with a prefix ("prefix, any addr")
        assert!(matches!(
            p("0.0.0.0/8"),
            Err(Error::InvalidArgument { field: "peer", .. })
        ));
        assert!(p("::/64").is_err());
        // too big prefix
        assert!(p("10.0.0.1/33").is_err());
        assert!(p("2001:db8::1/129").is_err());
        // host bits past the prefix ("too short prefix")
        assert!(matches!(
            p("10.0.0.1/2"),
            Err(Error::InvalidArgument { field: "peer", .. })
        ));
        assert!(p("2001:db8::1/64").is_err());
        // v4-mapped shorter than /96
        assert!(p("::ffff:10.0.0.0/95").is_err());
    }

    #[test]
    fn valid_prefixes_and_mapping() {
        assert!(p("0.0.0.0/0").unwrap().is_any());
        assert!(p("::/0").unwrap().is_any());
        assert_eq!(p("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(p("10.1.2.3").unwrap().prefix_len(), 32);
        let m = p("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(m.addr(), Some("10.0.0.0".parse().unwrap()));
        assert_eq!(m.prefix_len(), 8);
        assert!(m.contains("10.9.9.9".parse().unwrap()));
        assert!(m.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!m.contains("11.0.0.1".parse().unwrap()));
        assert!(PeerPrefix::any().contains("2001:db8::1".parse().unwrap()));
        let h6 = p("2001:db8::1").unwrap();
        assert_eq!(h6.prefix_len(), 128);
        assert!(h6.contains("2001:db8::1".parse().unwrap()));
        assert!(!h6.contains("2001:db8::2".parse().unwrap()));
        assert!(
            p("10.0.0.1/32")
                .unwrap()
                .contains("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn sockaddr_encoding_round_trips() {
        let v4 = p("192.0.2.0/24").unwrap();
        let ss = v4.to_sockaddr(libc::AF_INET).unwrap();
        assert_eq!(ss.ss_family, libc::AF_INET as u16);
        assert_eq!(&ss.__data[..6], &[0, 0, 192, 0, 2, 0]); // port 0, address
        assert_eq!(PeerPrefix::from_sockaddr(&ss, 24), v4);
        // IPv4 prefix on an IPv6 socket: v4-mapped, prefix stays the IPv4 one.
        let ss6 = v4.to_sockaddr(libc::AF_INET6).unwrap();
        assert_eq!(ss6.ss_family, libc::AF_INET6 as u16);
        assert_eq!(&ss6.__data[..6], &[0; 6]);
        assert_eq!(&ss6.__data[16..22], &[0xff, 0xff, 192, 0, 2, 0]);
        assert_eq!(PeerPrefix::from_sockaddr(&ss6, 24), v4);
        let v6 = p("2001:db8::/32").unwrap();
        assert!(v6.to_sockaddr(libc::AF_INET).is_err());
        assert_eq!(
            PeerPrefix::from_sockaddr(&v6.to_sockaddr(libc::AF_INET6).unwrap(), 32),
            v6
        );
        let any = PeerPrefix::any().to_sockaddr(libc::AF_INET6).unwrap();
        assert_eq!(any.ss_family, libc::AF_INET6 as u16);
        assert!(any.__data.iter().all(|&b| b == 0));
    }
}

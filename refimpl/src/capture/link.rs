// SPDX-License-Identifier: MIT OR Apache-2.0
//! Link-layer decapsulation: from a captured frame to the IP packet it carries.
//!
//! Link type numbers are the tcpdump.org LINKTYPE_* values.

use std::fmt;

use super::SkipReason;

/// EtherType of IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IEEE 802.1Q customer VLAN tag.
const ETHERTYPE_VLAN: u16 = 0x8100;
/// IEEE 802.1ad service VLAN tag (QinQ outer tag).
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ outer tag still used by some switches.
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// MPLS unicast and multicast.
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MC: u16 = 0x8848;

/// Most VLAN/MPLS headers peeled off one frame before giving up.
const MAX_TAGS: usize = 8;

/// The link types the capture reader decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// BSD loopback, DLT_NULL (0): a 4-byte address family in the capturing host's byte order.
    Null,
    /// Ethernet (1), with any number of 802.1Q / 802.1ad VLAN tags and MPLS labels.
    Ethernet,
    /// Raw IP: LINKTYPE_RAW (101), or DLT_RAW as written by some platforms (12, 14).
    Raw(u16),
    /// OpenBSD loopback, LINKTYPE_LOOP (108): the address family in network byte order.
    Loop,
    /// Linux cooked capture v1, LINKTYPE_LINUX_SLL (113).
    LinuxSll,
    /// Raw IPv4, LINKTYPE_IPV4 (228).
    Ipv4,
    /// Raw IPv6, LINKTYPE_IPV6 (229).
    Ipv6,
    /// Linux cooked capture v2, LINKTYPE_LINUX_SLL2 (276).
    LinuxSll2,
    /// Any other link type (frames are skipped).
    Other(u16),
}

impl LinkType {
    /// The link type for a LINKTYPE_* number.
    pub fn from_raw(v: u16) -> Self {
        match v {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw(v),
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// The LINKTYPE_* number.
    pub fn raw(self) -> u16 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Raw(v) => v,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll2 => 276,
            LinkType::Other(v) => v,
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LinkType::Null => "NULL",
            LinkType::Ethernet => "EN10MB",
            LinkType::Raw(_) => "RAW",
            LinkType::Loop => "LOOP",
            LinkType::LinuxSll => "LINUX_SLL",
            LinkType::Ipv4 => "IPV4",
            LinkType::Ipv6 => "IPV6",
            LinkType::LinuxSll2 => "LINUX_SLL2",
            LinkType::Other(_) => "unsupported",
        };
        write!(f, "{name} ({})", self.raw())
    }
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

/// The IP packet inside a frame of link type `lt`, or why there is none.
pub(crate) fn ip_payload(lt: LinkType, frame: &[u8]) -> Result<&[u8], SkipReason> {
    match lt {
        LinkType::Ethernet => {
            let ethertype = be16(frame, 12).ok_or(SkipReason::LinkTruncated)?;
            after_ethertype(ethertype, &frame[14..])
        }
        LinkType::LinuxSll => {
            // packet type (2), ARPHRD (2), address length (2), address (8), protocol (2)
            let proto = be16(frame, 14).ok_or(SkipReason::LinkTruncated)?;
            after_ethertype(proto, &frame[16..])
        }
        LinkType::LinuxSll2 => {
            // protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type (1),
            // address length (1), address (8)
            if frame.len() < 20 {
                return Err(SkipReason::LinkTruncated);
            }
            let proto = be16(frame, 0).ok_or(SkipReason::LinkTruncated)?;
            after_ethertype(proto, &frame[20..])
        }
        LinkType::Raw(_) => by_version(frame),
        LinkType::Ipv4 => match frame.first() {
            Some(b) if b >> 4 == 4 => Ok(frame),
            Some(_) => Err(SkipReason::NotIp),
            None => Err(SkipReason::LinkTruncated),
        },
        LinkType::Ipv6 => match frame.first() {
            Some(b) if b >> 4 == 6 => Ok(frame),
            Some(_) => Err(SkipReason::NotIp),
            None => Err(SkipReason::LinkTruncated),
        },
        LinkType::Null => {
            let b: [u8; 4] = frame
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or(SkipReason::LinkTruncated)?;
            // Host byte order of the capturing machine: families are small numbers, so a
            // value with high bits set was written in the other byte order.
            let le = u32::from_le_bytes(b);
            let family = if le & 0xffff_0000 != 0 {
                u32::from_be_bytes(b)
            } else {
                le
            };
            by_family(family, &frame[4..])
        }
        LinkType::Loop => {
            let b: [u8; 4] = frame
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or(SkipReason::LinkTruncated)?;
            by_family(u32::from_be_bytes(b), &frame[4..])
        }
        LinkType::Other(_) => Err(SkipReason::UnsupportedLinkType),
    }
}

/// Follow an EtherType through VLAN tags and MPLS labels to IPv4/IPv6.
fn after_ethertype(mut ethertype: u16, mut rest: &[u8]) -> Result<&[u8], SkipReason> {
    for _ in 0..MAX_TAGS {
        match ethertype {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {
                let want = if ethertype == ETHERTYPE_IPV4 { 4 } else { 6 };
                return match rest.first() {
                    Some(b) if b >> 4 == want => Ok(rest),
                    Some(_) => Err(SkipReason::NotIp),
                    None => Err(SkipReason::LinkTruncated),
                };
            }
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                // TCI (2), then the inner EtherType (2).
                ethertype = be16(rest, 2).ok_or(SkipReason::LinkTruncated)?;
                rest = &rest[4..];
            }
            ETHERTYPE_MPLS | ETHERTYPE_MPLS_MC => {
                // Pop labels down to the bottom of the stack, then guess from the version.
                for _ in 0..MAX_TAGS {
                    let label = rest.get(..4).ok_or(SkipReason::LinkTruncated)?;
                    let bottom = label[2] & 1 == 1;
                    rest = &rest[4..];
                    if bottom {
                        return by_version(rest);
                    }
                }
                return Err(SkipReason::NotIp);
            }
            _ => return Err(SkipReason::NotIp),
        }
    }
    Err(SkipReason::NotIp)
}

/// Decide IPv4/IPv6 from the version nibble.
fn by_version(p: &[u8]) -> Result<&[u8], SkipReason> {
    match p.first() {
        Some(b) if b >> 4 == 4 || b >> 4 == 6 => Ok(p),
        Some(_) => Err(SkipReason::NotIp),
        None => Err(SkipReason::LinkTruncated),
    }
}

/// BSD address families: AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD/OpenBSD), 28
/// (FreeBSD), 30 (macOS), 10 (Linux).
fn by_family(family: u32, rest: &[u8]) -> Result<&[u8], SkipReason> {
    match family {
        2 | 10 | 24 | 28 | 30 => by_version(rest),
        _ => Err(SkipReason::NotIp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP4: [u8; 4] = [0x45, 0, 0, 20];
    const IP6: [u8; 4] = [0x60, 0, 0, 0];

    fn eth(types: &[u16], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 12];
        for (i, t) in types.iter().enumerate() {
            v.extend_from_slice(&t.to_be_bytes());
            if i + 1 < types.len() {
                v.extend_from_slice(&[0, 7]); // TCI
            }
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn ethernet_plain_vlan_qinq() {
        let f = eth(&[0x0800], &IP4);
        assert_eq!(ip_payload(LinkType::Ethernet, &f), Ok(&IP4[..]));
        let f = eth(&[0x8100, 0x86dd], &IP6);
        assert_eq!(ip_payload(LinkType::Ethernet, &f), Ok(&IP6[..]));
        let f = eth(&[0x88a8, 0x8100, 0x0800], &IP4);
        assert_eq!(ip_payload(LinkType::Ethernet, &f), Ok(&IP4[..]));
        let f = eth(&[0x0806], &[0; 28]);
        assert_eq!(ip_payload(LinkType::Ethernet, &f), Err(SkipReason::NotIp));
        assert_eq!(
            ip_payload(LinkType::Ethernet, &f[..13]),
            Err(SkipReason::LinkTruncated)
        );
        let f = eth(&[0x8100], &[]);
        assert_eq!(
            ip_payload(LinkType::Ethernet, &f),
            Err(SkipReason::LinkTruncated)
        );
        // EtherType says IPv4 but the version nibble says 6.
        let f = eth(&[0x0800], &IP6);
        assert_eq!(ip_payload(LinkType::Ethernet, &f), Err(SkipReason::NotIp));
    }

    #[test]
    fn ethernet_mpls() {
        let mut f = eth(&[0x8847], &[0, 0x10, 0x00, 64, 0, 0x20, 0x01, 64]);
        f.extend_from_slice(&IP4);
        assert_eq!(ip_payload(LinkType::Ethernet, &f), Ok(&IP4[..]));
    }

    #[test]
    fn cooked() {
        let mut f = vec![0u8; 14];
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f.extend_from_slice(&IP4);
        assert_eq!(ip_payload(LinkType::LinuxSll, &f), Ok(&IP4[..]));
        let mut f = 0x86ddu16.to_be_bytes().to_vec();
        f.extend_from_slice(&[0; 18]);
        f.extend_from_slice(&IP6);
        assert_eq!(ip_payload(LinkType::LinuxSll2, &f), Ok(&IP6[..]));
        assert_eq!(
            ip_payload(LinkType::LinuxSll2, &f[..19]),
            Err(SkipReason::LinkTruncated)
        );
    }

    #[test]
    fn raw_and_loopback() {
        for lt in [12, 14, 101] {
            assert_eq!(ip_payload(LinkType::from_raw(lt), &IP6), Ok(&IP6[..]));
        }
        assert_eq!(ip_payload(LinkType::Ipv4, &IP4), Ok(&IP4[..]));
        assert_eq!(ip_payload(LinkType::Ipv4, &IP6), Err(SkipReason::NotIp));
        assert_eq!(ip_payload(LinkType::Ipv6, &IP6), Ok(&IP6[..]));
        let mut le = 2u32.to_le_bytes().to_vec();
        le.extend_from_slice(&IP4);
        assert_eq!(ip_payload(LinkType::Null, &le), Ok(&IP4[..]));
        let mut be = 30u32.to_be_bytes().to_vec();
        be.extend_from_slice(&IP6);
        assert_eq!(ip_payload(LinkType::Null, &be), Ok(&IP6[..]));
        assert_eq!(ip_payload(LinkType::Loop, &be), Ok(&IP6[..]));
        assert_eq!(ip_payload(LinkType::Loop, &le), Err(SkipReason::NotIp));
        assert_eq!(
            ip_payload(LinkType::from_raw(147), &IP4),
            Err(SkipReason::UnsupportedLinkType)
        );
        for lt in [0u16, 1, 12, 14, 101, 108, 113, 228, 229, 276, 999] {
            assert_eq!(LinkType::from_raw(lt).raw(), lt);
        }
    }
}

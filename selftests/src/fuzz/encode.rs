// SPDX-License-Identifier: MIT OR Apache-2.0
//! Typed program arguments to the exact bytes of the uAPI structs, and the addresses of the
//! fuzz topology. The executor sends these bytes and the model reads the same bytes, so both
//! see one argument.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::prog::*;

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// struct sizes (asserted against `tcpao_sys::uapi` in the tests).
pub const ADD_SIZE: usize = 288;
/// `sizeof(struct tcp_ao_del)`.
pub const DEL_SIZE: usize = 144;
/// `sizeof(struct tcp_ao_info_opt)`.
pub const INFO_SIZE: usize = 48;
/// `sizeof(struct tcp_ao_getsockopt)`.
pub const GET_SIZE: usize = 304;
/// `sizeof(struct tcp_ao_repair)`.
pub const REPAIR_SIZE: usize = 16;
/// `sizeof(struct tcp_md5sig)`.
pub const MD5_SIZE: usize = 216;

/// The fuzz topology's devices, per namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Devices {
    /// The VRF's ifindex in namespace A (an L3 master there; in B nothing has that index).
    pub vrf: i32,
    /// The veth's ifindex (in A).
    pub veth: i32,
}

impl Devices {
    /// The index an [`IfSel`] names.
    pub fn index(&self, i: IfSel) -> i32 {
        match i {
            IfSel::Zero => 0,
            IfSel::Vrf => self.vrf,
            IfSel::Veth => self.veth,
            IfSel::Bogus => 9999,
        }
    }

    /// Whether `ifindex` is an L3 master device in `ns`.
    pub fn is_l3_master(&self, ns: Ns, ifindex: i32) -> bool {
        ns == Ns::A && ifindex != 0 && ifindex == self.vrf
    }
}

/// The address `a` names for a socket in `ns` of family `v6`.
pub fn ip(a: Addr, ns: Ns, v6: bool) -> IpAddr {
    let (me, other) = match ns {
        Ns::A => (1u8, 2u8),
        Ns::B => (2, 1),
    };
    if v6 {
        let h = |net: u16, host: u16| IpAddr::V6(Ipv6Addr::new(0xfd00, net, 0, 0, 0, 0, 0, host));
        match a {
            Addr::Veth => h(1, u16::from(other)),
            Addr::Local => h(1, u16::from(me)),
            Addr::Tun => h(2, 2),
            Addr::Any => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            Addr::Unreach => h(1, 0x99),
            Addr::Mapped => IpAddr::V6(Ipv4Addr::new(10, 0, 2, 2).to_ipv6_mapped()),
            Addr::TunNet => h(2, 0),
        }
    } else {
        let h = |net: u8, host: u8| IpAddr::V4(Ipv4Addr::new(10, 0, net, host));
        match a {
            Addr::Veth => h(1, other),
            Addr::Local => h(1, me),
            Addr::Tun | Addr::Mapped => h(2, 2),
            Addr::Any => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Addr::Unreach => h(1, 0x99),
            Addr::TunNet => h(2, 0),
        }
    }
}

/// The prefix length of [`Addr::TunNet`] for a family.
pub fn tunnet_prefix(v6: bool) -> u8 {
    if v6 { 64 } else { 24 }
}

/// A `sockaddr_in`/`sockaddr_in6` of `family` with `addr` (of that family) and `port`, in a
/// 128-byte `__kernel_sockaddr_storage`.
pub fn sockaddr(family: u16, addr: IpAddr, port: u16) -> [u8; 128] {
    let mut b = [0u8; 128];
    b[0..2].copy_from_slice(&family.to_ne_bytes());
    b[2..4].copy_from_slice(&port.to_be_bytes());
    match addr {
        IpAddr::V4(a) if family != AF_INET6 => b[4..8].copy_from_slice(&a.octets()),
        IpAddr::V4(a) => b[8..24].copy_from_slice(&a.to_ipv6_mapped().octets()),
        IpAddr::V6(a) if family == AF_INET6 => b[8..24].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                b[4..8].copy_from_slice(&v4.octets());
            }
        }
    }
    b
}

/// The sockaddr bytes of an [`AddrArg`] for a socket in `ns` of family `v6`.
pub fn addr_arg(a: AddrArg, ns: Ns, v6: bool) -> [u8; 128] {
    let fam = if v6 { AF_INET6 } else { AF_INET };
    match a {
        AddrArg::Sel(x) => sockaddr(fam, ip(x, ns, v6), 0),
        AddrArg::OtherFamily(x) => {
            let other = if v6 { AF_INET } else { AF_INET6 };
            sockaddr(other, ip(x, ns, !v6), 0)
        }
        AddrArg::Port(x, p) => sockaddr(fam, ip(x, ns, v6), p),
        AddrArg::Family(f) => {
            let mut b = [0u8; 128];
            b[0..2].copy_from_slice(&f.to_ne_bytes());
            b
        }
    }
}

/// The optval of a setsockopt: the struct bytes laid out for `len`, and the optlen; `None`
/// bytes for a NULL optval.
pub fn with_len(mut b: Vec<u8>, len: Len) -> (Option<Vec<u8>>, u32) {
    let size = b.len();
    match len {
        Len::Exact => (Some(b), size as u32),
        Len::Short(n) => {
            let n = usize::from(n).min(size);
            (Some(b), n as u32)
        }
        Len::Long { extra, nonzero } => {
            b.resize(size + usize::from(extra), 0);
            if nonzero {
                if let Some(last) = b.last_mut() {
                    *last = 0xa5;
                }
            }
            let n = b.len() as u32;
            (Some(b), n)
        }
        Len::Null => (None, size as u32),
    }
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// `struct tcp_ao_add` bytes (full size; [`with_len`] applies the optlen).
pub fn add_bytes(a: &AddArg, ns: Ns, v6: bool, dev: &Devices) -> Vec<u8> {
    let mut b = vec![0u8; ADD_SIZE];
    b[0..128].copy_from_slice(&addr_arg(a.addr, ns, v6));
    b[128..192].copy_from_slice(&a.alg.name_bytes());
    put_u32(&mut b, 192, dev.index(a.ifindex) as u32);
    let bits = u32::from(a.set_current) | (u32::from(a.set_rnext) << 1) | (a.reserved << 2);
    put_u32(&mut b, 196, bits);
    put_u16(&mut b, 200, a.reserved2);
    b[202] = a.prefix;
    b[203] = a.sndid;
    b[204] = a.rcvid;
    b[205] = a.maclen;
    b[206] = a.keyflags;
    b[207] = a.keylen;
    let k = key_bytes(a.key_seed, 80);
    b[208..288].copy_from_slice(&k[..80]);
    b
}

/// `struct tcp_ao_del` bytes.
pub fn del_bytes(d: &DelArg, ns: Ns, v6: bool, dev: &Devices) -> Vec<u8> {
    let mut b = vec![0u8; DEL_SIZE];
    b[0..128].copy_from_slice(&addr_arg(d.addr, ns, v6));
    put_u32(&mut b, 128, dev.index(d.ifindex) as u32);
    let bits = u32::from(d.set_current)
        | (u32::from(d.set_rnext) << 1)
        | (u32::from(d.del_async) << 2)
        | (d.reserved << 3);
    put_u32(&mut b, 132, bits);
    put_u16(&mut b, 136, d.reserved2);
    b[138] = d.prefix;
    b[139] = d.sndid;
    b[140] = d.rcvid;
    b[141] = d.current_key;
    b[142] = d.rnext;
    b[143] = d.keyflags;
    b
}

/// `struct tcp_ao_info_opt` bytes.
pub fn info_bytes(i: &InfoArg) -> Vec<u8> {
    let mut b = vec![0u8; INFO_SIZE];
    let bits = u32::from(i.set_current)
        | (u32::from(i.set_rnext) << 1)
        | (u32::from(i.ao_required) << 2)
        | (u32::from(i.set_counters) << 3)
        | (u32::from(i.accept_icmps) << 4)
        | (i.reserved << 5);
    put_u32(&mut b, 0, bits);
    put_u16(&mut b, 4, i.reserved2);
    b[6] = i.current_key;
    b[7] = i.rnext;
    for (k, c) in i.counters.iter().enumerate() {
        put_u64(&mut b, 8 + 8 * k, u64::from(*c));
    }
    b
}

/// `struct tcp_ao_getsockopt` filter bytes (record 0).
pub fn get_bytes(g: &GetArg, ns: Ns, v6: bool, dev: &Devices) -> Vec<u8> {
    let mut b = vec![0u8; GET_SIZE];
    if let Some(a) = g.addr {
        b[0..128].copy_from_slice(&addr_arg(a, ns, v6));
    }
    put_u32(&mut b, 272, u32::from(g.nkeys));
    let bits = u16::from(g.is_current)
        | (u16::from(g.is_rnext) << 1)
        | (u16::from(g.get_all) << 2)
        | (g.reserved << 3);
    put_u16(&mut b, 276, bits);
    b[278] = g.sndid;
    b[279] = g.rcvid;
    b[280] = g.prefix;
    b[282] = g.keyflags;
    put_u32(&mut b, 284, dev.index(g.ifindex) as u32);
    put_u64(&mut b, 288, u64::from(g.pkt_good));
    put_u64(&mut b, 296, u64::from(g.pkt_bad));
    b
}

/// `struct tcp_ao_repair` bytes.
pub fn repair_bytes(r: &RepairArg) -> Vec<u8> {
    let mut b = vec![0u8; REPAIR_SIZE];
    b[0..4].copy_from_slice(&r.snt_isn.to_be_bytes());
    b[4..8].copy_from_slice(&r.rcv_isn.to_be_bytes());
    put_u32(&mut b, 8, r.snd_sne);
    put_u32(&mut b, 12, r.rcv_sne);
    b
}

/// `struct tcp_md5sig` bytes.
pub fn md5_bytes(m: &Md5Arg, ns: Ns, v6: bool, dev: &Devices) -> Vec<u8> {
    let mut b = vec![0u8; MD5_SIZE];
    b[0..128].copy_from_slice(&addr_arg(m.addr, ns, v6));
    b[128] = m.flags;
    b[129] = m.prefixlen;
    put_u16(&mut b, 130, u16::from(m.keylen));
    put_u32(&mut b, 132, dev.index(m.ifindex) as u32);
    let k = key_bytes(m.key_seed, 80);
    b[136..216].copy_from_slice(&k);
    b
}

/// The optlen (an `int`) and buffer size of a getsockopt of a `size`-byte struct.
pub fn get_len(len: GetLen, size: usize) -> (i32, usize) {
    match len {
        GetLen::Exact => (size as i32, size),
        GetLen::Short(n) => {
            let n = usize::from(n).clamp(1, size);
            (n as i32, size)
        }
        GetLen::Long { extra, .. } => {
            let n = size + usize::from(extra);
            (n as i32, n)
        }
        GetLen::Zero => (0, size),
        GetLen::Negative => (-1, size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use tcpao_sys::uapi;

    #[test]
    fn sizes_and_offsets_match_the_uapi_mirrors() {
        assert_eq!(size_of::<uapi::tcp_ao_add>(), ADD_SIZE);
        assert_eq!(size_of::<uapi::tcp_ao_del>(), DEL_SIZE);
        assert_eq!(size_of::<uapi::tcp_ao_info_opt>(), INFO_SIZE);
        assert_eq!(size_of::<uapi::tcp_ao_getsockopt>(), GET_SIZE);
        assert_eq!(size_of::<uapi::tcp_ao_repair>(), REPAIR_SIZE);
        assert_eq!(size_of::<uapi::tcp_md5sig>(), MD5_SIZE);
        assert_eq!(offset_of!(uapi::tcp_ao_add, prefix), 202);
        assert_eq!(offset_of!(uapi::tcp_ao_add, key), 208);
        assert_eq!(offset_of!(uapi::tcp_ao_del, keyflags), 143);
        assert_eq!(offset_of!(uapi::tcp_ao_getsockopt, nkeys), 272);
        assert_eq!(offset_of!(uapi::tcp_ao_getsockopt, ifindex), 284);
        assert_eq!(offset_of!(uapi::tcp_md5sig, tcpm_key), 136);
    }

    #[test]
    fn addresses_and_sockaddrs() {
        assert_eq!(ip(Addr::Veth, Ns::A, false).to_string(), "10.0.1.2");
        assert_eq!(ip(Addr::Veth, Ns::B, false).to_string(), "10.0.1.1");
        assert_eq!(ip(Addr::Tun, Ns::A, true).to_string(), "fd00:2::2");
        assert_eq!(ip(Addr::Mapped, Ns::A, true).to_string(), "::ffff:10.0.2.2");
        let s = addr_arg(AddrArg::Port(Addr::Tun, 179), Ns::A, false);
        assert_eq!(u16::from_ne_bytes([s[0], s[1]]), AF_INET);
        assert_eq!(&s[2..4], &179u16.to_be_bytes());
        assert_eq!(&s[4..8], &[10, 0, 2, 2]);
        let s = addr_arg(AddrArg::OtherFamily(Addr::Tun), Ns::A, false);
        assert_eq!(u16::from_ne_bytes([s[0], s[1]]), AF_INET6);
        assert_eq!(s[8], 0xfd);
    }

    #[test]
    fn lengths() {
        let (b, n) = with_len(
            vec![1; 48],
            Len::Long {
                extra: 8,
                nonzero: true,
            },
        );
        let b = b.unwrap();
        assert_eq!((b.len(), n), (56, 56));
        assert_eq!(b[55], 0xa5);
        assert_eq!(with_len(vec![0; 48], Len::Short(60)).1, 48);
        assert!(with_len(vec![0; 48], Len::Null).0.is_none());
        assert_eq!(get_len(GetLen::Negative, 48), (-1, 48));
        assert_eq!(get_len(GetLen::Short(0), 48), (1, 48));
    }

    #[test]
    fn add_bytes_layout() {
        let a = AddArg {
            addr: AddrArg::Sel(Addr::Tun),
            prefix: 32,
            sndid: 7,
            rcvid: 9,
            maclen: 12,
            keyflags: 2,
            keylen: 16,
            key_seed: 1,
            alg: Alg::HmacSha1,
            ifindex: IfSel::Vrf,
            set_current: true,
            set_rnext: false,
            reserved: 1,
            reserved2: 0,
            len: Len::Exact,
        };
        let dev = Devices { vrf: 5, veth: 3 };
        let b = add_bytes(&a, Ns::A, false, &dev);
        assert_eq!(u32::from_ne_bytes([b[192], b[193], b[194], b[195]]), 5);
        assert_eq!(u32::from_ne_bytes([b[196], b[197], b[198], b[199]]), 0b101);
        assert_eq!((b[202], b[203], b[204], b[207]), (32, 7, 9, 16));
        assert_eq!(&b[128..138], b"hmac(sha1)");
    }
}

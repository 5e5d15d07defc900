// SPDX-License-Identifier: MIT OR Apache-2.0
//! The two-peer test network, built with rtnetlink from inside each peer's namespace.
//!
//! ```text
//!   netns "server"                                   netns "client"
//!   lo 127.0.0.1, ::1                                 lo 127.0.0.1, ::1
//!   ktst-veth 10.0.254.1/32  <====== veth ======>     ktst-veth 10.0.1.1/32 (+ 10.0.n.1/32)
//!             2001:db8:254::1/128 (nodad)                       2001:db8:1::1/128 (nodad)
//!   route 10.0.1.1/32 (+10.0.n.1) dev ktst-veth       route 10.0.254.1/32 dev ktst-veth
//!   [vrf ksft-vrf, table 42, ifindex 200]             [vrf ksft-vrf, table 42, ifindex 200]
//! ```
//!
//! The addresses are the kernel selftest library's constants (`lib/aolib.h`). Both families are
//! configured in every test; a test uses the one of its [`Family`]. Every step names the `ip`
//! command it stands for. Netlink runs on a current-thread tokio runtime behind the synchronous
//! [`Netlink`] facade; the netlink socket belongs to the namespace of the thread that opened it.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, State};
use netlink_packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVrf, RouteMessageBuilder};

use crate::netns::{self, NetnsFd};

/// Name of the veth end in both namespaces (the kernel library's `ktst-veth`).
pub const VETH_NAME: &str = "ktst-veth";
/// Name of the VRF device (kernel: `ksft-vrf`).
pub const VRF_NAME: &str = "ksft-vrf";
/// Routing table of the VRF (kernel: 42).
pub const VRF_TABLE: u32 = 42;
/// Fixed ifindex of the VRF device (kernel: 200), so keys can name it before it exists.
pub const VRF_IFINDEX: u32 = 200;

/// Address family of a test; every program runs once per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// AF_INET: 10.0.x.1 addresses.
    Ipv4,
    /// AF_INET6: 2001:db8:x::1 addresses.
    Ipv6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// `ipv4` or `ipv6`, the family part of a test name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// `10.0.n.1` or `2001:db8:n::1` (kernel `TEST_IP_ADDR`-style addresses).
    pub fn test_addr(self, n: u8) -> IpAddr {
        match self {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(10, 0, n, 1)),
            Family::Ipv6 => {
                // 2001:db8:n::1 where n is written in hex digits of the decimal value, as the
                // kernel's "2001:db8:" #n "::1" string macro does (254 -> 2001:db8:254::1).
                let hex = u16::from_str_radix(&n.to_string(), 16).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, hex, 0, 0, 0, 0, 1))
            }
        }
    }

    /// The server's address: 10.0.254.1 / 2001:db8:254::1.
    pub fn server_addr(self) -> IpAddr {
        self.test_addr(254)
    }

    /// The client's main address: 10.0.1.1 / 2001:db8:1::1.
    pub fn client_addr(self) -> IpAddr {
        self.test_addr(1)
    }

    /// An address nobody has: 10.0.253.1 / 2001:db8:253::1.
    pub fn wrong_addr(self) -> IpAddr {
        self.test_addr(253)
    }

    /// The network every test address is in: 10.0.0.0/16 / 2001::/16.
    pub fn network(self) -> (IpAddr, u8) {
        match self {
            Family::Ipv4 => (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 16),
            Family::Ipv6 => (IpAddr::V6(Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0)), 16),
        }
    }

    /// Prefix length of a single host: 32 or 128.
    pub fn host_prefix(self) -> u8 {
        match self {
            Family::Ipv4 => 32,
            Family::Ipv6 => 128,
        }
    }

    /// The unspecified address of the family.
    pub fn any_addr(self) -> IpAddr {
        match self {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }
}

/// Which peer a function runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The listening peer (kernel: main thread, netns A, 10.0.254.1).
    Server,
    /// The connecting peer (kernel: second thread, netns B, 10.0.1.1).
    Client,
}

impl Side {
    /// `server` or `client`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }

    /// 0 for the server, 1 for the client.
    pub fn index(self) -> usize {
        match self {
            Side::Server => 0,
            Side::Client => 1,
        }
    }

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Server => Side::Client,
            Side::Client => Side::Server,
        }
    }
}

/// What a test needs from the network beyond the default pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopologyConfig {
    /// Extra client addresses `10.0.n.1` / `2001:db8:n::1` (kernel: client2, client3 are 2, 3).
    /// The client owns them; the server gets host routes to them.
    pub extra_clients: Vec<u8>,
    /// Create the VRF `ksft-vrf` (table 42, ifindex 200) on both sides, with a route to the peer
    /// in table 42.
    pub vrf: bool,
}

/// Errors while building the topology. These are environment errors, not test failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A netlink request failed.
    #[error("netlink: {what} failed: {source}")]
    Netlink {
        /// The `ip` command the request stands for.
        what: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether the kernel said "exists" (`EEXIST`), e.g. for an address or route added twice.
    pub fn is_exists(&self) -> bool {
        matches!(self, Error::Netlink {
                source: rtnetlink::Error::NetlinkError(e),
                ..
            } if e.raw_code() == -(nix::errno::Errno::EEXIST as i32))
    }

    fn io(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    /// Whether the kernel said "operation not supported" (e.g. no `CONFIG_NET_VRF`).
    pub fn is_unsupported(&self) -> bool {
        match self {
            Error::Netlink {
                source: rtnetlink::Error::NetlinkError(e),
                ..
            } => e.raw_code() == -libc_eopnotsupp(),
            Error::Io { source, .. } => source.raw_os_error() == Some(libc_eopnotsupp()),
            Error::Netlink { .. } => false,
        }
    }
}

fn libc_eopnotsupp() -> i32 {
    nix::errno::Errno::EOPNOTSUPP as i32
}

/// Result of topology operations.
pub type Result<T> = std::result::Result<T, Error>;

/// A synchronous rtnetlink connection in the calling thread's network namespace.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

impl Netlink {
    /// Open a route netlink socket in the calling thread's namespace.
    ///
    /// # Errors
    /// When the runtime or the socket cannot be created.
    pub fn open() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let handle = {
            let _enter = rt.enter();
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| Error::io("netlink socket", e))?;
            rt.spawn(conn);
            handle
        };
        Ok(Self { rt, handle })
    }

    fn run<T>(
        &self,
        what: impl FnOnce() -> String,
        f: impl Future<Output = std::result::Result<T, rtnetlink::Error>>,
    ) -> Result<T> {
        self.rt.block_on(f).map_err(|source| Error::Netlink {
            what: what(),
            source,
        })
    }

    /// `ip link set dev INDEX up`.
    ///
    /// # Errors
    /// When the kernel rejects the request.
    pub fn link_up(&self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.run(
            || format!("ip link set {index} up"),
            self.handle.link().set(msg).execute(),
        )
    }

    /// `ip link set dev INDEX mtu MTU`.
    ///
    /// # Errors
    /// When the kernel rejects the request.
    pub fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.run(
            || format!("ip link set {index} mtu {mtu}"),
            self.handle.link().set(msg).execute(),
        )
    }

    /// `ip link set dev INDEX master CONTROLLER` (e.g. enslave the veth to the VRF).
    ///
    /// # Errors
    /// When the kernel rejects the request.
    pub fn set_controller(&self, index: u32, controller: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .controller(controller)
            .build();
        self.run(
            || format!("ip link set {index} master {controller}"),
            self.handle.link().set(msg).execute(),
        )
    }

    /// Whether interface `index` is operationally up (`ip link show` says `state UP`).
    ///
    /// # Errors
    /// When the link cannot be read.
    pub fn oper_up(&self, index: u32) -> Result<bool> {
        let links: Vec<_> = self.run(
            || format!("ip link show {index}"),
            self.handle
                .link()
                .get()
                .match_index(index)
                .execute()
                .try_collect(),
        )?;
        Ok(links.iter().any(|l| {
            l.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::OperState(State::Up)))
        }))
    }

    /// Wait until interface `index` is operationally up. Only then has the kernel's linkwatch
    /// attached its qdisc: until then every packet sent on it is dropped (a lost first SYN
    /// costs a 1 s retransmission and moves counters late).
    ///
    /// # Errors
    /// When the link cannot be read or is not up by `deadline`.
    pub fn wait_oper_up(&self, index: u32, deadline: std::time::Instant) -> Result<()> {
        let mut pause = std::time::Duration::from_micros(200);
        loop {
            if self.oper_up(index)? {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::io(
                    format!("interface {index} did not come up"),
                    io::Error::from(io::ErrorKind::TimedOut),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(10));
        }
    }

    /// Index of interface `name` (`ip link show NAME`).
    ///
    /// # Errors
    /// When there is no such interface.
    pub fn link_index(&self, name: &str) -> Result<u32> {
        nix::net::if_::if_nametoindex(name)
            .map_err(|e| Error::io(format!("if_nametoindex({name})"), e))
    }

    /// Names of every interface in this namespace (`ip link show`).
    ///
    /// # Errors
    /// When the dump fails.
    pub fn link_names(&self) -> Result<Vec<String>> {
        let links: Vec<_> = self.run(
            || "ip link show".into(),
            self.handle.link().get().execute().try_collect(),
        )?;
        Ok(links
            .into_iter()
            .filter_map(|l| {
                l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                })
            })
            .collect())
    }

    /// `ip link add NAME type veth peer name PEER netns PEER_NS`; returns the local end's index.
    ///
    /// # Errors
    /// When the kernel rejects the request (e.g. no `CONFIG_VETH`).
    pub fn add_veth(&self, name: &str, peer: &str, peer_ns: &NetnsFd) -> Result<u32> {
        use std::os::fd::AsRawFd;
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_owned())
            .setns_by_fd(peer_ns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(name, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.run(
            || format!("ip link add {name} type veth peer name {peer} netns <peer>"),
            self.handle.link().add(msg).execute(),
        )?;
        self.link_index(name)
    }

    /// `ip link add NAME type vrf table TABLE` with a fixed ifindex, brought up.
    ///
    /// # Errors
    /// `EOPNOTSUPP` (see [`Error::is_unsupported`]) without `CONFIG_NET_VRF`.
    pub fn add_vrf(&self, name: &str, table: u32, index: u32) -> Result<u32> {
        let msg = LinkVrf::new(name, table).index(index).up().build();
        self.run(
            || format!("ip link add {name} index {index} type vrf table {table}"),
            self.handle.link().add(msg).execute(),
        )?;
        Ok(index)
    }

    /// `ip addr add ADDR/PREFIX dev INDEX [nodad]` (IPv6 addresses always get `nodad`).
    ///
    /// # Errors
    /// When the kernel rejects the request.
    pub fn add_address(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<()> {
        let mut req = self.handle.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.run(
            || format!("ip addr add {addr}/{prefix} dev {index} nodad"),
            req.execute(),
        )
    }

    /// `ip route add DST/host dev INDEX src SRC [table TABLE]`.
    ///
    /// # Errors
    /// When the kernel rejects the request.
    pub fn add_host_route(
        &self,
        index: u32,
        dst: IpAddr,
        src: IpAddr,
        table: Option<u32>,
    ) -> Result<()> {
        let msg = match (dst, src) {
            (IpAddr::V4(dst), IpAddr::V4(src)) => {
                let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(dst, 32)
                    .output_interface(index)
                    .pref_source(src)
                    .scope(RouteScope::Link);
                if let Some(t) = table {
                    b = b.table_id(t);
                }
                b.build()
            }
            (IpAddr::V6(dst), IpAddr::V6(src)) => {
                let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(dst, 128)
                    .output_interface(index)
                    .pref_source(src);
                if let Some(t) = table {
                    b = b.table_id(t);
                }
                b.build()
            }
            _ => {
                return Err(Error::io(
                    format!("route {dst} src {src}"),
                    io::Error::new(io::ErrorKind::InvalidInput, "mixed address families"),
                ));
            }
        };
        self.run(
            || {
                format!(
                    "ip route add {dst} dev {index} src {src} table {}",
                    table.unwrap_or(254)
                )
            },
            self.handle.route().add(msg).execute(),
        )
    }

    /// `ip route add DST/PREFIX via GATEWAY dev INDEX` (main table): a whole network through
    /// one neighbour, e.g. many generated peer addresses behind the other peer.
    ///
    /// # Errors
    /// When the kernel rejects the request.
    pub fn add_route_via(
        &self,
        index: u32,
        dst: IpAddr,
        prefix: u8,
        gateway: IpAddr,
    ) -> Result<()> {
        let msg = match (dst, gateway) {
            (IpAddr::V4(dst), IpAddr::V4(gw)) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst, prefix)
                .gateway(gw)
                .output_interface(index)
                .build(),
            (IpAddr::V6(dst), IpAddr::V6(gw)) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(dst, prefix)
                .gateway(gw)
                .output_interface(index)
                .build(),
            _ => {
                return Err(Error::io(
                    format!("route {dst}/{prefix} via {gateway}"),
                    io::Error::new(io::ErrorKind::InvalidInput, "mixed address families"),
                ));
            }
        };
        self.run(
            || format!("ip route add {dst}/{prefix} via {gateway} dev {index}"),
            self.handle.route().add(msg).execute(),
        )
    }
}

/// One side's view of the built network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Index of `ktst-veth` in this side's namespace.
    pub veth_index: u32,
    /// Index of the VRF device, when one was created.
    pub vrf_index: Option<u32>,
}

fn common_setup(nl: &Netlink) -> Result<()> {
    // `ip link set lo up`; lo is always ifindex 1 in a new namespace.
    nl.link_up(1)?;
    // No DAD and no router solicitations on the veth: fewer packets, no tentative addresses.
    for (k, v) in [
        ("net/ipv6/conf/default/accept_dad", "0"),
        ("net/ipv6/conf/default/router_solicitations", "0"),
    ] {
        // Not fatal: a kernel without IPv6 has no such files; the IPv6 tests will fail loudly.
        let _ = netns::sysctl_write(k, v);
    }
    Ok(())
}

fn add_vrf_with_route(nl: &Netlink, veth: u32, dst: &[IpAddr], src: &[IpAddr]) -> Result<u32> {
    let vrf = nl.add_vrf(VRF_NAME, VRF_TABLE, VRF_IFINDEX)?;
    for (d, s) in dst.iter().zip(src.iter().cycle()) {
        let s = src.iter().find(|s| s.is_ipv4() == d.is_ipv4()).unwrap_or(s);
        nl.add_host_route(veth, *d, *s, Some(VRF_TABLE))?;
    }
    Ok(vrf)
}

/// Build the server's side, in the calling thread's (fresh) namespace: create the veth pair with
/// its peer end moved into `client_ns`, then addresses and routes.
///
/// # Errors
/// On any failed netlink request.
pub fn setup_server(nl: &Netlink, client_ns: &NetnsFd, cfg: &TopologyConfig) -> Result<Link> {
    common_setup(nl)?;
    let veth = nl.add_veth(VETH_NAME, VETH_NAME, client_ns)?;
    let mine: Vec<IpAddr> = Family::ALL.iter().map(|f| f.server_addr()).collect();
    let mut peers: Vec<IpAddr> = Family::ALL.iter().map(|f| f.client_addr()).collect();
    for n in &cfg.extra_clients {
        peers.extend(Family::ALL.iter().map(|f| f.test_addr(*n)));
    }
    addresses_and_routes(nl, veth, &mine, &peers, cfg)
}

/// Give the veth `veth` this side's addresses `mine`, routes to `peers`, and the VRF if the
/// topology asks for one.
fn addresses_and_routes(
    nl: &Netlink,
    veth: u32,
    mine: &[IpAddr],
    peers: &[IpAddr],
    cfg: &TopologyConfig,
) -> Result<Link> {
    configure(nl, veth, mine, peers)?;
    let vrf_index = if cfg.vrf {
        Some(add_vrf_with_route(nl, veth, peers, mine)?)
    } else {
        None
    };
    Ok(Link {
        veth_index: veth,
        vrf_index,
    })
}

/// Build the client's side, in the calling thread's namespace, after [`setup_server`] moved the
/// veth end here.
///
/// # Errors
/// On any failed netlink request.
pub fn setup_client(nl: &Netlink, cfg: &TopologyConfig) -> Result<Link> {
    common_setup(nl)?;
    let veth = nl.link_index(VETH_NAME)?;
    let mut mine: Vec<IpAddr> = Family::ALL.iter().map(|f| f.client_addr()).collect();
    for n in &cfg.extra_clients {
        mine.extend(Family::ALL.iter().map(|f| f.test_addr(*n)));
    }
    let peers: Vec<IpAddr> = Family::ALL.iter().map(|f| f.server_addr()).collect();
    addresses_and_routes(nl, veth, &mine, &peers, cfg)
}

fn configure(nl: &Netlink, veth: u32, mine: &[IpAddr], peers: &[IpAddr]) -> Result<()> {
    for a in mine {
        nl.add_address(veth, *a, Family::of(*a).host_prefix())?;
    }
    nl.link_up(veth)?;
    for p in peers {
        // The preferred source is this side's main address of the same family.
        let src = mine
            .iter()
            .find(|m| m.is_ipv4() == p.is_ipv4())
            .copied()
            .unwrap_or(*p);
        nl.add_host_route(veth, *p, src, None)?;
    }
    Ok(())
}

/// Whether any of `addrs` cannot take packets yet in the calling thread's namespace: an IPv6
/// address that is still tentative (`IFA_F_TENTATIVE` in `/proc/thread-self/net/if_inet6`) or
/// has no local route yet (`RTF_LOCAL` in `/proc/thread-self/net/ipv6_route`). Even with
/// `nodad` an address is tentative until the kernel's DAD work has run (a workqueue, late under
/// load), and that work clears the flag *before* it inserts the address's local route
/// (`addrconf_dad_work()`: flags, unlock, then `addrconf_dad_completed()` →
/// `ipv6_ifa_notify(RTM_NEWADDR)` → `ip6_ins_rt()`). Until both are done a packet to the
/// address is dropped as not ours (`Ip6InAddrErrors`): a SYN-ACK to it costs a 1 s
/// retransmission, a SYN gets no answer. IPv4 addresses are ready when added.
///
/// # Errors
/// When a table cannot be read.
pub fn any_unready(addrs: &[IpAddr]) -> io::Result<bool> {
    const IFA_F_TENTATIVE: u32 = 0x40;
    let v6: Vec<Ipv6Addr> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .collect();
    if v6.is_empty() {
        return Ok(false);
    }
    let table = std::fs::read_to_string("/proc/thread-self/net/if_inet6")?;
    let tentative = table.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(hex), Some(flags)) = (f.first(), f.get(4)) else {
            return false;
        };
        let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
        let addr = u128::from_str_radix(hex, 16).map(Ipv6Addr::from);
        flags & IFA_F_TENTATIVE != 0 && addr.is_ok_and(|a| v6.contains(&a))
    });
    if tentative {
        return Ok(true);
    }
    let local = local_routes(&std::fs::read_to_string(
        "/proc/thread-self/net/ipv6_route",
    )?);
    Ok(v6.iter().any(|a| !local.contains(a)))
}

/// The addresses with a local host route (`/128`, `RTF_LOCAL`) in a `/proc/net/ipv6_route`
/// table: `dest dest_len src src_len next_hop metric refcnt use flags dev`, all hex.
fn local_routes(table: &str) -> Vec<Ipv6Addr> {
    const RTF_LOCAL: u32 = 0x8000_0000;
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dest, len, flags) = (f.first()?, f.get(1)?, f.get(8)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            (*len == "80" && flags & RTF_LOCAL != 0)
                .then(|| u128::from_str_radix(dest, 16).ok().map(Ipv6Addr::from))
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_routes_are_read_from_ipv6_route() {
        let table = "\
fd000002000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001    fztun
fd000002000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001    fztun
fd000001000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 00000001      fz0
garbage
";
        let want: Ipv6Addr = "fd00:2::1".parse().unwrap();
        // The /64 prefix route and a /128 without RTF_LOCAL are not local routes.
        assert_eq!(local_routes(table), vec![want]);
    }

    #[test]
    fn kernel_address_constants() {
        assert_eq!(Family::Ipv4.server_addr().to_string(), "10.0.254.1");
        assert_eq!(Family::Ipv6.server_addr().to_string(), "2001:db8:254::1");
        assert_eq!(Family::Ipv4.client_addr().to_string(), "10.0.1.1");
        assert_eq!(Family::Ipv6.client_addr().to_string(), "2001:db8:1::1");
        assert_eq!(Family::Ipv4.wrong_addr().to_string(), "10.0.253.1");
        assert_eq!(Family::Ipv6.wrong_addr().to_string(), "2001:db8:253::1");
        assert_eq!(Family::Ipv6.test_addr(3).to_string(), "2001:db8:3::1");
        assert_eq!(Family::Ipv6.network().0.to_string(), "2001::");
    }
}

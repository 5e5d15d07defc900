// SPDX-License-Identifier: MIT OR Apache-2.0
//! Running a program on the kernel and judging it: the topology (namespace A with a veth to
//! B, a TUN device to the virtual peer and a VRF device), socket slots, each operation's
//! result against the [`Model`], the virtual peer's wire checks, and coverage from KCOV.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use socket2::{Domain, SockAddr, Socket, Type};
use tcpao_sys::kcov::Kcov;
use tcpao_sys::raw::{self, OptLen};
use tcpao_sys::tun::{IFF_NO_PI, IFF_TUN, Tun};
use tcpao_sys::uapi::{
    SOL_TCP, TCP_AO_ADD_KEY, TCP_AO_DEL_KEY, TCP_AO_GET_KEYS, TCP_AO_INFO, TCP_AO_REPAIR,
};

use super::encode::{self, Devices, GET_SIZE, INFO_SIZE, REPAIR_SIZE};
use super::model::{self, Ctx, Expect, Model, Output, state};
use super::peer::{self, PeerConn};
use super::prog::*;
use crate::netns::{self, NetnsFd};
use crate::topology::Netlink;

const TCP_REPAIR: i32 = 19;
const TCP_MD5SIG: i32 = 14;
const TCP_MD5SIG_EXT: i32 = 32;

/// What went wrong in a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `divergence`, `wire`, `counter`, `console`.
    pub kind: String,
    /// Index of the operation.
    pub op: usize,
    /// Operation name.
    pub op_name: String,
    /// What differed.
    pub detail: String,
}

impl Finding {
    /// A key that identifies "the same" finding across runs (minimisation keeps it).
    pub fn signature(&self) -> String {
        // The detail without its numbers (counter values, key ids), cut before any list of
        // keys, so one behaviour is one finding however often it shows.
        let d: String = self
            .detail
            .split(['[', '{', '('])
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(90)
            .collect();
        format!("{}/{}/{}", self.kind, self.op_name, d.trim())
    }
}

/// The result of one execution.
#[derive(Debug, Clone, Default)]
pub struct ExecResult {
    /// The first finding, if any (checking stops there).
    pub finding: Option<Finding>,
    /// Coverage: KCOV program counters of the whole program.
    pub pcs: Vec<u64>,
    /// Calls judged: (predicted, unpredicted).
    pub judged: (u64, u64),
    /// Operations run.
    pub ops: usize,
    /// What the run noticed that is not a finding (a reply that came late).
    pub notes: Vec<String>,
}

/// The namespaces, devices and descriptors a worker fuzzes in.
#[derive(Debug)]
pub struct Topo {
    ns_a: NetnsFd,
    ns_b: NetnsFd,
    tun: Option<Tun>,
    /// Device indices.
    pub dev: Devices,
}

fn nl_err(e: crate::topology::Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl Topo {
    /// Builds the topology; the calling thread ends up in namespace A.
    ///
    /// # Errors
    /// Namespace, netlink or TUN errors.
    pub fn new() -> io::Result<Topo> {
        // Modular kernels (Debian's): load what the topology needs; a kernel with them built
        // in just fails these quietly.
        for m in ["veth", "vrf", "tun"] {
            let _ = std::process::Command::new("modprobe")
                .arg(m)
                .stderr(std::process::Stdio::null())
                .status();
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            let _ = std::fs::create_dir_all("/dev/net");
            let _ = nix::sys::stat::mknod(
                "/dev/net/tun",
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(10, 200),
            );
        }
        let ctx = |what: &'static str| {
            move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"))
        };
        Self::build().map_err(ctx("topology"))
    }

    fn build() -> io::Result<Topo> {
        let ctx = |what: &'static str| {
            move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"))
        };
        netns::enter_new_netns()?;
        let ns_b = NetnsFd::current()?;
        let nl = Netlink::open().map_err(nl_err)?;
        nl.link_up(1).map_err(nl_err)?;
        netns::enter_new_netns()?;
        let ns_a = NetnsFd::current()?;
        for (k, v) in [
            ("net/ipv6/conf/default/accept_dad", "0"),
            ("net/ipv6/conf/all/accept_dad", "0"),
        ] {
            let _ = netns::sysctl_write(k, v);
        }
        let nl = Netlink::open().map_err(nl_err)?;
        nl.link_up(1).map_err(nl_err)?;
        let veth = nl.add_veth("fz0", "fz0", &ns_b).map_err(nl_err)?;
        for (a, p) in [("10.0.1.1", 24), ("fd00:1::1", 64)] {
            nl.add_address(veth, a.parse().map_err(io::Error::other)?, p)
                .map_err(nl_err)?;
        }
        nl.link_up(veth).map_err(nl_err)?;
        let vrf = nl
            .add_vrf("fzvrf", 77, 177)
            .map_err(nl_err)
            .map_err(ctx("VRF"))?;
        // Without CONFIG_TUN (the lab's `plain` flavour) the virtual peer is absent and its
        // operations do nothing; everything else runs.
        let tun = match Tun::open("fztun", IFF_TUN | IFF_NO_PI) {
            Ok(tun) => {
                let ti = nl.link_index(tun.name()).map_err(nl_err)?;
                for (a, p) in [("10.0.2.1", 24), ("fd00:2::1", 64)] {
                    nl.add_address(ti, a.parse().map_err(io::Error::other)?, p)
                        .map_err(nl_err)?;
                }
                nl.link_up(ti).map_err(nl_err)?;
                Some(tun)
            }
            Err(e) if matches!(e.raw_os_error(), Some(2) | Some(19)) => None,
            Err(e) => return Err(ctx("/dev/net/tun")(e)),
        };
        setns(&ns_b, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let configure_b = || -> io::Result<()> {
            for (k, v) in [
                ("net/ipv6/conf/default/accept_dad", "0"),
                ("net/ipv6/conf/all/accept_dad", "0"),
                ("net/ipv6/conf/fz0/accept_dad", "0"),
            ] {
                let _ = netns::sysctl_write(k, v);
            }
            let nl = Netlink::open().map_err(nl_err)?;
            let vb = nl.link_index("fz0").map_err(nl_err)?;
            for (a, p) in [("10.0.1.2", 24), ("fd00:1::2", 64)] {
                nl.add_address(vb, a.parse().map_err(io::Error::other)?, p)
                    .map_err(nl_err)?;
            }
            nl.link_up(vb).map_err(nl_err)
        };
        let r = configure_b();
        setns(&ns_a, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        r?;
        // Ready before the first operation: the veth's qdisc attached (operationally up, in
        // both namespaces) and every address usable (not tentative, its local route in).
        // Until then the kernel drops what it sends there, or what is sent to the address,
        // and a replay under load judged a SYN that got no SYN-ACK (docs/lab.md).
        let deadline = Instant::now() + READY_TIMEOUT;
        nl.wait_oper_up(veth, deadline).map_err(nl_err)?;
        wait_addresses(&["fd00:1::1", "fd00:2::1"], deadline)?;
        setns(&ns_b, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let r = Netlink::open()
            .and_then(|nl| nl.wait_oper_up(nl.link_index("fz0")?, deadline))
            .map_err(nl_err)
            .and_then(|()| wait_addresses(&["fd00:1::2"], deadline));
        setns(&ns_a, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        r?;
        Ok(Topo {
            ns_a,
            ns_b,
            tun,
            dev: Devices {
                vrf: vrf as i32,
                veth: veth as i32,
            },
        })
    }

    /// Whether the virtual peer's TUN device exists.
    pub fn has_tun(&self) -> bool {
        self.tun.is_some()
    }

    fn drain(&self) -> Vec<peer::Reply> {
        self.tun.as_ref().map(peer::drain).unwrap_or_default()
    }

    /// Write one packet to the TUN device (nothing without one).
    fn send(&self, packet: &[u8]) -> io::Result<()> {
        match &self.tun {
            Some(t) => t.send(packet).map(drop),
            None => Ok(()),
        }
    }

    /// Wait up to `limit` for a reply `wanted` accepts, keeping every reply read meanwhile;
    /// returns them and how long it waited when one came.
    fn wait_reply(
        &self,
        limit: Duration,
        wanted: impl Fn(&peer::Reply) -> bool,
    ) -> (Vec<peer::Reply>, Option<Duration>) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let Some(tun) = &self.tun else {
            return (Vec::new(), None);
        };
        let start = Instant::now();
        let mut got = Vec::new();
        while let Some(left) = limit.checked_sub(start.elapsed()) {
            let mut fds = [PollFd::new(tun.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            if matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(0)) {
                break;
            }
            let replies = peer::drain(tun);
            let hit = replies.iter().any(&wanted);
            got.extend(replies);
            if hit {
                return (got, Some(start.elapsed()));
            }
        }
        (got, None)
    }

    /// Wait up to `limit` until no socket of `inodes` (each in its namespace) is listed in
    /// `/proc/net/tcp{,6}` any more: until the kernel released each closed descriptor's socket.
    /// A process forked elsewhere in the suite holds a copy of every descriptor until it execs,
    /// and the `close()` that ends the socket (a listener's RSTs to its children, a FIN) is
    /// then that copy's. Returns how long it waited when it had to, and the inodes still
    /// listed at the limit.
    fn wait_released(&self, inodes: &[(u64, Ns)], limit: Duration) -> (Option<Duration>, Vec<u64>) {
        let listed = |ns: Ns| -> Vec<u64> {
            let read = || {
                crate::sockets::ProcTcp::all()
                    .into_iter()
                    .map(|t| t.inode)
                    .collect()
            };
            if ns == Ns::A {
                return read();
            }
            if setns(&self.ns_b, CloneFlags::CLONE_NEWNET).is_err() {
                return Vec::new();
            }
            let v = read();
            let _ = setns(&self.ns_a, CloneFlags::CLONE_NEWNET);
            v
        };
        // Namespace B is entered only when one of the sockets lives there.
        let in_b = inodes.iter().any(|(_, ns)| *ns == Ns::B);
        let left = || -> Vec<u64> {
            let a = listed(Ns::A);
            let b = if in_b { listed(Ns::B) } else { Vec::new() };
            inodes
                .iter()
                .filter(|(ino, ns)| {
                    let there = if *ns == Ns::A { &a } else { &b };
                    *ino != 0 && there.contains(ino)
                })
                .map(|(ino, _)| *ino)
                .collect()
        };
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        let mut still = left();
        if still.is_empty() {
            return (None, still);
        }
        while !still.is_empty() && start.elapsed() < limit {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
            still = left();
        }
        (Some(start.elapsed()), still)
    }

    fn socket_in(&self, ns: Ns, v6: bool) -> io::Result<Socket> {
        let d = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        if ns == Ns::A {
            return Socket::new(d, Type::STREAM, None);
        }
        setns(&self.ns_b, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let s = Socket::new(d, Type::STREAM, None);
        setns(&self.ns_a, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        s
    }
}

/// How long [`Topo::new`] waits for its links and addresses.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a close waits for the kernel to release the socket ([`Topo::wait_released`]).
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// How long a peer's good SYN waits for its SYN-ACK when it was not there at once: under the
/// 30 s test timeout, beyond any scheduling delay seen under TCG.
const SYNACK_WAIT: Duration = Duration::from_secs(3);

/// Poll until every address of `addrs` (in the calling thread's namespace) takes packets
/// ([`crate::topology::any_unready`]).
fn wait_addresses(addrs: &[&str], deadline: Instant) -> io::Result<()> {
    let addrs: Vec<IpAddr> = addrs
        .iter()
        .map(|a| a.parse().map_err(io::Error::other))
        .collect::<io::Result<_>>()?;
    let mut pause = Duration::from_micros(200);
    while crate::topology::any_unready(&addrs)? {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "addresses {addrs:?} still tentative or without a local route after {READY_TIMEOUT:?}"
                ),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    Ok(())
}

/// A socket's keys (all) and `(ao_required, accept_icmps, counters)` as the kernel reports.
type KernelView = (
    Option<Vec<model::KeyRecord>>,
    Option<(bool, bool, [u64; 5])>,
);

/// A live slot.
#[derive(Debug)]
struct Slot {
    sock: Socket,
    v6: bool,
    ns: Ns,
    layer: SockLayer,
}

/// The socket layer's `sock->state` (`SS_*`), which `__inet_stream_connect()` and
/// `inet_shutdown()` consult before TCP sees the call (resolved divergence 25, docs/fuzz.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockLayer {
    /// `SS_UNCONNECTED`: new, or a connect that failed.
    Unconnected,
    /// `SS_CONNECTING`: a non-blocking `connect()` returned EINPROGRESS.
    Connecting,
    /// `SS_CONNECTED`.
    Connected,
    /// `SS_DISCONNECTING`: `shutdown()` while connecting with TCP in SYN-SENT, SYN-RECV or
    /// CLOSE. Every later `connect()` is EINVAL.
    Disconnecting,
}

const EISCONN: i32 = Errno::EISCONN as i32;
const EINPROGRESS: i32 = Errno::EINPROGRESS as i32;
const EALREADY: i32 = Errno::EALREADY as i32;
const ECONNABORTED: i32 = Errno::ECONNABORTED as i32;
const ECONNRESET: i32 = Errno::ECONNRESET as i32;
const ETIMEDOUT: i32 = Errno::ETIMEDOUT as i32;
const ECONNREFUSED: i32 = Errno::ECONNREFUSED as i32;

impl SockLayer {
    /// After `connect()` returned `got` (`Err(errno)`, EINPROGRESS included).
    pub fn after_connect(self, got: Result<(), i32>) -> Self {
        match (self, got) {
            (SockLayer::Disconnecting, _) => SockLayer::Disconnecting,
            (_, Ok(()) | Err(EISCONN)) => SockLayer::Connected,
            (_, Err(EINPROGRESS | EALREADY)) => SockLayer::Connecting,
            // sock_error(): the pending error of a failed attempt resets the state.
            (_, Err(ECONNABORTED | ECONNRESET | ETIMEDOUT | ECONNREFUSED)) => {
                SockLayer::Unconnected
            }
            // tcp_v{4,6}_connect() refused it: the state is left as it was.
            (s, Err(_)) => s,
        }
    }

    /// After `shutdown()` with TCP in `tcp`; `rcv` when it shuts the receive side
    /// (`SHUT_RD`, `SHUT_RDWR`). `inet_shutdown()`: a connecting socket becomes disconnecting
    /// (SYN-SENT, SYN-RECV, CLOSE) or connected; then a SYN-SENT socket, and a listener shut
    /// for receiving, are disconnected (`tcp_disconnect()`) and left unconnected.
    pub fn after_shutdown(self, tcp: u8, rcv: bool) -> Self {
        let s = match self {
            SockLayer::Connecting
                if matches!(tcp, state::SYN_SENT | state::SYN_RECV | state::CLOSE) =>
            {
                SockLayer::Disconnecting
            }
            SockLayer::Connecting => SockLayer::Connected,
            s => s,
        };
        if tcp == state::SYN_SENT || (tcp == state::LISTEN && rcv) {
            SockLayer::Unconnected
        } else {
            s
        }
    }

    /// The errno `connect()` gets from the socket layer alone, before TCP sees it.
    pub fn connect_refusal(self) -> Option<i32> {
        (self == SockLayer::Disconnecting).then_some(Errno::EINVAL as i32)
    }
}

fn errno(r: &io::Result<impl Sized>) -> Result<(), i32> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(e.raw_os_error().unwrap_or(-1)),
    }
}

fn errname(e: i32) -> String {
    format!("{:?}", Errno::from_raw(e))
}

fn show(r: Result<(), i32>) -> String {
    match r {
        Ok(()) => "success".into(),
        Err(e) => errname(e),
    }
}

/// Runs programs on one topology.
#[derive(Debug)]
pub struct Executor {
    topo: Topo,
    kcov: Option<Kcov>,
    wire: Option<super::wire::VethWire>,
    runs: u64,
}

/// Marker for a stopped program (the first finding ends checking).
type Step = Result<(), Finding>;

struct Run<'a> {
    topo: &'a Topo,
    wire: Option<&'a mut super::wire::VethWire>,
    slots: Vec<Option<Slot>>,
    model: Model,
    port_base: u16,
    peer: Option<PeerConn>,
    child_of_peer: Option<u8>,
    peer_conns: u16,
    judged: (u64, u64),
    notes: Vec<String>,
}

impl Executor {
    /// A topology in the calling thread and, when `kcov`, KCOV for it.
    ///
    /// # Errors
    /// Topology errors; a KCOV that cannot be opened is not an error (`kcov()` is `None`).
    pub fn new(kcov: bool) -> io::Result<(Executor, Option<String>)> {
        let topo = Topo::new()?;
        let (kcov, why) = if kcov {
            match Kcov::open(1 << 18).and_then(|k| k.enable().map(|()| k)) {
                Ok(k) => (Some(k), None),
                Err(e) => (None, Some(format!("KCOV unavailable ({e})"))),
            }
        } else {
            (None, Some("KCOV not requested".into()))
        };
        let wire = super::wire::VethWire::open(topo.dev.veth as u32).ok();
        Ok((
            Executor {
                topo,
                kcov,
                wire,
                runs: 0,
            },
            why,
        ))
    }

    /// TCP-AO segments between the namespaces verified by the wire oracle so far.
    pub fn veth_verified(&self) -> u64 {
        self.wire.as_ref().map_or(0, |w| w.verified)
    }

    /// Whether the virtual peer (TUN) is there.
    pub fn has_tun(&self) -> bool {
        self.topo.has_tun()
    }

    /// Whether coverage is collected.
    pub fn has_kcov(&self) -> bool {
        self.kcov.is_some()
    }

    /// The device indices.
    pub fn devices(&self) -> Devices {
        self.topo.dev
    }

    /// Runs `p` and judges every operation.
    pub fn run(&mut self, p: &Prog) -> ExecResult {
        self.runs += 1;
        let port_base = 20_000 + ((self.runs % 2000) as u16) * 16;
        if let Some(w) = self.wire.as_mut() {
            let _ = w.drain();
        }
        let mut run = Run {
            topo: &self.topo,
            wire: self.wire.as_mut(),
            slots: (0..SLOTS).map(|_| None).collect(),
            model: Model::new(self.topo.dev),
            port_base,
            peer: None,
            child_of_peer: None,
            peer_conns: 0,
            judged: (0, 0),
            notes: Vec::new(),
        };
        if let Some(k) = &self.kcov {
            k.reset();
        }
        let mut finding = None;
        let mut ops = 0;
        for (i, op) in p.ops.iter().enumerate() {
            ops += 1;
            if let Err(mut f) = run.veth_check(op).and_then(|()| run.op(op)) {
                f.op = i;
                finding = Some(f);
                break;
            }
        }
        if finding.is_none() {
            if let Some(last) = p.ops.last() {
                if let Err(mut f) = run.veth_check(last) {
                    f.op = p.ops.len() - 1;
                    finding = Some(f);
                }
            }
        }
        let pcs = self.kcov.as_ref().map(Kcov::collect).unwrap_or_default();
        // Close everything (aborting connections), wait until the kernel released it all (so
        // nothing it sends arrives during the next program), and drain the device.
        let mut inodes = Vec::new();
        for s in run.slots.iter_mut().flatten() {
            let _ = s.sock.set_linger(Some(Duration::ZERO));
            inodes.extend(crate::sockets::inode_of(&s.sock).ok().map(|i| (i, s.ns)));
        }
        let judged = run.judged;
        run.slots.clear();
        run.released(&inodes, "the closes at the program's end");
        let notes = std::mem::take(&mut run.notes);
        drop(run);
        let _ = self.topo.drain();
        ExecResult {
            finding,
            pcs,
            judged,
            ops,
            notes,
        }
    }
}

fn div(op: &Op, detail: String) -> Finding {
    Finding {
        kind: "divergence".into(),
        op: 0,
        op_name: op.name().into(),
        detail,
    }
}

fn other(kind: &str, op: &Op, detail: String) -> Finding {
    Finding {
        kind: kind.into(),
        op: 0,
        op_name: op.name().into(),
        detail,
    }
}

impl Run<'_> {
    fn slot(&self, s: u8) -> Option<&Slot> {
        self.slots.get(usize::from(s)).and_then(Option::as_ref)
    }

    fn port(&self, p: u8) -> u16 {
        self.port_base + u16::from(p)
    }

    fn ctx(&self, s: u8) -> Ctx {
        let st = self
            .slot(s)
            .and_then(|x| tcpao_sys::repair::tcp_info(&x.sock).ok())
            .map_or(state::CLOSE, |i| i.state);
        Ctx {
            state: st,
            bound_dev: 0,
        }
    }

    fn judge(&mut self, op: &Op, want: Expect, got: Result<(), i32>) -> Step {
        match want {
            Expect::Any => {
                self.judged.1 += 1;
                Ok(())
            }
            Expect::Ok if got.is_ok() => {
                self.judged.0 += 1;
                Ok(())
            }
            Expect::Err(e) if got == Err(e) => {
                self.judged.0 += 1;
                Ok(())
            }
            w => Err(div(
                op,
                format!(
                    "{}: the model predicts {}, the kernel returned {}",
                    op.name(),
                    match w {
                        Expect::Ok => "success".into(),
                        Expect::Err(e) => errname(e),
                        Expect::Any => "anything".into(),
                    },
                    show(got)
                ),
            )),
        }
    }

    fn setopt(&self, s: u8, name: i32, b: Option<&[u8]>, n: u32) -> Result<(), i32> {
        let Some(x) = self.slot(s) else {
            return Err(libc_ebadf());
        };
        errno(&raw::setsockopt_bytes(&x.sock, SOL_TCP, name, b, Some(n)))
    }

    fn op(&mut self, op: &Op) -> Step {
        let topo = self.topo;
        let dev = topo.dev;
        let fam = |x: &Slot| (x.ns, x.v6);
        match *op {
            Op::Socket { s, v6, ns } => {
                // The virtual peer's child is gone with the slot (resolved divergence 13).
                self.forget_child(s);
                self.slots[usize::from(s)] = None;
                self.model.close(s);
                if let Ok(sock) = topo.socket_in(ns, v6) {
                    let _ = sock.set_nonblocking(true);
                    let _ = sock.set_reuse_address(true);
                    self.slots[usize::from(s)] = Some(Slot {
                        sock,
                        v6,
                        ns,
                        layer: SockLayer::Unconnected,
                    });
                    self.model.socket(s, v6, ns);
                }
                Ok(())
            }
            Op::Close { s, abort } => {
                let mut inode = None;
                if let Some(x) = self.slot(s) {
                    if abort {
                        let _ = x.sock.set_linger(Some(Duration::ZERO));
                    }
                    inode = crate::sockets::inode_of(&x.sock).ok().map(|i| (i, x.ns));
                }
                self.forget_child(s);
                self.slots[usize::from(s)] = None;
                self.model.close(s);
                // The close takes effect only when the kernel releases the socket.
                if let Some(i) = inode {
                    self.released(&[i], &format!("close of slot {s}"));
                }
                // What the close sent (a FIN, or the RST of an abort, also for the children a
                // closed listener had not handed out) is checked now, with the keys the
                // connection had (resolved divergence 22, docs/fuzz.md).
                self.check_peer_replies(op)
            }
            Op::Bind { s, addr, port } => {
                if let Some(x) = self.slot(s) {
                    let a = SocketAddr::new(encode::ip(addr, x.ns, x.v6), self.port(port));
                    if x.sock.bind(&SockAddr::from(a)).is_ok() {
                        self.model.bound(s);
                    }
                }
                Ok(())
            }
            Op::Listen { s } => {
                if let Some(x) = self.slot(s) {
                    let _ = x.sock.listen(8);
                }
                Ok(())
            }
            Op::Connect { s, dst, port } => self.connect(op, s, dst, port),
            Op::Accept { s, into } => self.accept(op, s, into),
            Op::Send { s, len } => {
                if let Some(x) = self.slot(s) {
                    let _ = x.sock.send(&vec![0x42; usize::from(len)]);
                    self.model.set_floating(s);
                }
                self.check_peer_replies(op)
            }
            Op::Recv { s } => {
                if let Some(x) = self.slot(s) {
                    let mut b = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
                    let _ = x.sock.recv(&mut b);
                }
                Ok(())
            }
            Op::Shutdown { s, how } => {
                if let Some(x) = self.slot(s) {
                    let h = match how {
                        0 => std::net::Shutdown::Read,
                        1 => std::net::Shutdown::Write,
                        _ => std::net::Shutdown::Both,
                    };
                    // inet_shutdown() looks at the TCP state before it acts.
                    let tcp = self.ctx(s).state;
                    let _ = x.sock.shutdown(h);
                    if let Some(x) = self.slots[usize::from(s)].as_mut() {
                        x.layer = x.layer.after_shutdown(tcp, how != 1);
                    }
                }
                self.check_peer_replies(op)
            }
            Op::Repair { s, val } => {
                if self.slot(s).is_none() {
                    return Ok(());
                }
                let ctx = self.ctx(s);
                let got = self.setopt(s, TCP_REPAIR, Some(&i32::from(val).to_ne_bytes()), 4);
                let want = self.model.repair(s, i32::from(val), ctx);
                self.judge(op, want, got)
            }
            Op::AoAdd { s, a } => {
                let Some(x) = self.slot(s) else { return Ok(()) };
                let (ns, v6) = fam(x);
                let (b, n) = encode::with_len(encode::add_bytes(&a, ns, v6, &dev), a.len);
                let ctx = self.ctx(s);
                let got = self.setopt(s, TCP_AO_ADD_KEY, b.as_deref(), n);
                let want = self.model.add(s, b.as_deref(), n, ctx);
                self.judge(op, want, got)
            }
            Op::AoDel { s, d } => {
                let Some(x) = self.slot(s) else { return Ok(()) };
                let (ns, v6) = fam(x);
                let (b, n) = encode::with_len(encode::del_bytes(&d, ns, v6, &dev), d.len);
                let ctx = self.ctx(s);
                let got = self.setopt(s, TCP_AO_DEL_KEY, b.as_deref(), n);
                let want = self.model.del(s, b.as_deref(), n, ctx);
                self.judge(op, want, got)
            }
            Op::AoSetInfo { s, i } => {
                if self.slot(s).is_none() {
                    return Ok(());
                }
                let (b, n) = encode::with_len(encode::info_bytes(&i), i.len);
                let ctx = self.ctx(s);
                let got = self.setopt(s, TCP_AO_INFO, b.as_deref(), n);
                let want = self.model.set_info(s, b.as_deref(), n, ctx);
                self.judge(op, want, got)
            }
            Op::AoGetInfo { s, len } => self.get_info(op, s, len),
            Op::AoGetKeys { s, g } => self.get_keys(op, s, &g),
            Op::AoSetRepair { s, r } => {
                if self.slot(s).is_none() {
                    return Ok(());
                }
                let (b, n) = encode::with_len(encode::repair_bytes(&r), r.len);
                let ctx = self.ctx(s);
                let got = self.setopt(s, TCP_AO_REPAIR, b.as_deref(), n);
                let want = self.model.set_repair(s, b.as_deref(), n, ctx);
                self.judge(op, want, got)
            }
            Op::AoGetRepair { s, len } => {
                let Some(x) = self.slot(s) else { return Ok(()) };
                let (n, cap) = encode::get_len(len, REPAIR_SIZE);
                let mut buf = vec![0u8; cap];
                let ctx = self.ctx(s);
                let got = errno(&raw::getsockopt_bytes(
                    &x.sock,
                    SOL_TCP,
                    TCP_AO_REPAIR,
                    Some(&mut buf),
                    OptLen::Value(n),
                ));
                let want = self.model.get_repair(s, n, ctx);
                self.judge(op, want, got)
            }
            Op::Md5 { s, m } => {
                let Some(x) = self.slot(s) else { return Ok(()) };
                let (ns, v6) = fam(x);
                let (b, n) = encode::with_len(encode::md5_bytes(&m, ns, v6, &dev), m.len);
                let name = if m.ext { TCP_MD5SIG_EXT } else { TCP_MD5SIG };
                let ctx = self.ctx(s);
                let got = self.setopt(s, name, b.as_deref(), n);
                let want = self.model.md5(s, m.ext, b.as_deref(), n, ctx);
                self.judge(op, want, got)
            }
            Op::PeerConnect {
                s,
                key,
                near_wrap,
                auth,
            } => self.peer_connect(op, s, key, near_wrap, auth),
            Op::PeerSend { seg } => self.peer_send(op, &seg),
        }
    }

    fn connect(&mut self, op: &Op, s: u8, dst: Addr, port: u8) -> Step {
        let Some(x) = self.slot(s) else { return Ok(()) };
        let (ns, v6) = (x.ns, x.v6);
        let ip = encode::ip(dst, ns, v6);
        let a = SocketAddr::new(ip, self.port(port));
        let ctx = self.ctx(s);
        let layer = x.layer;
        let raw = errno(&x.sock.connect(&SockAddr::from(a)));
        let got = if raw == Err(115) { Ok(()) } else { raw };
        if let Some(x) = self.slots[usize::from(s)].as_mut() {
            x.layer = layer.after_connect(raw);
        }
        if let Some(e) = layer.connect_refusal() {
            return self.judge(op, Expect::Err(e), got);
        }
        if ctx.state != state::CLOSE {
            self.judged.1 += 1;
            return Ok(());
        }
        // IPv4 routing sends a connect to 0.0.0.0 to the socket's bound address, and only
        // an unbound socket to 127.0.0.1 (`__ip_route_output_key()`: daddr = saddr, then
        // loopback); IPv6 always means loopback (resolved divergence 27, docs/fuzz.md).
        let bound = self
            .slot(s)
            .and_then(|x| x.sock.local_addr().ok())
            .and_then(|a| a.as_socket())
            .map(|a| a.ip())
            .filter(|a| !a.is_unspecified());
        let target = match (ip, bound) {
            (IpAddr::V4(v), Some(b @ IpAddr::V4(_))) if v.is_unspecified() => b,
            _ => ip,
        };
        let (family, addr) = match target {
            IpAddr::V4(v) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v.octets());
                (encode::AF_INET, b)
            }
            IpAddr::V6(v) => (encode::AF_INET6, v.octets()),
        };
        // A socket whose earlier connect failed reports that error (ECONNREFUSED, ...) from
        // inet_stream_connect() without reaching tcp_connect(); nothing changes then
        // (resolved divergence 11, docs/fuzz.md).
        if matches!(got, Err(e) if [103, 104, 110, 111, 114, 106].contains(&e)) {
            self.judged.1 += 1;
            return Ok(());
        }
        // An IPv6 socket bound to an IPv6 address has the IPv4 source 127.0.0.6
        // (`LOOPBACK4_IPV6`), so routing refuses every v4-mapped destination; the destination
        // is stored first (resolved divergence 28, docs/fuzz.md).
        let bound_native_v6 = matches!(bound, Some(IpAddr::V6(b)) if b.to_ipv4_mapped().is_none());
        if let IpAddr::V6(d) = ip {
            if d.to_ipv4_mapped().is_some() && bound_native_v6 {
                self.model.set_daddr(s, ip);
                return self.judge(op, Expect::Err(101), got);
            }
        }
        // Routing comes before the key check (ip_route_connect in tcp_v{4,6}_connect): B has
        // no route to the TUN side (resolved divergence 4, docs/fuzz.md).
        if ns == Ns::B && matches!(dst, Addr::Tun | Addr::Mapped | Addr::TunNet) {
            // tcp_v6_connect() stores the destination before the route lookup fails,
            // tcp_v4_connect() after it (resolved divergence 17, docs/fuzz.md).
            if v6 {
                self.model.set_daddr(s, ip);
            }
            return self.judge(op, Expect::Err(101), got);
        }
        let predicted = self.model.connect(s, addr, family);
        match predicted {
            Some(e) => self.judge(op, Expect::Err(e), got)?,
            None => {
                if got == Err(129) {
                    return Err(div(
                        op,
                        "connect: the model predicts a matching key, the kernel returned \
                         EKEYREJECTED"
                            .into(),
                    ));
                }
                self.judged.0 += 1;
            }
        }
        if dst == Addr::Veth || dst == Addr::Local || target != ip {
            self.model.set_floating(s);
        }
        // Let the handshake finish (over veth it runs in softirq; over TUN nobody answers).
        if let Some(x) = self.slot(s) {
            let mut fds = [nix::poll::PollFd::new(
                x.sock.as_fd(),
                nix::poll::PollFlags::POLLOUT,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16));
        }
        let _ = self.topo.drain();
        Ok(())
    }

    fn accept(&mut self, op: &Op, s: u8, into: u8) -> Step {
        let Some(x) = self.slot(s) else { return Ok(()) };
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut got = None;
        while Instant::now() < deadline {
            match x.sock.accept() {
                Ok((c, _)) => {
                    got = Some(c);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break,
            }
        }
        let Some(child) = got else { return Ok(()) };
        let (v6, ns) = (x.v6, x.ns);
        // The listener's keys, and those deleted since: the child copied the matching ones
        // when its handshake completed, which may be before a deletion.
        let listener_keys = self
            .model
            .sock(s)
            .and_then(|m| m.ao.as_ref())
            .map(|a| [a.keys.as_slice(), a.deleted.as_slice()].concat());
        let _ = child.set_nonblocking(true);
        let peer_sa = child.peer_addr().ok().and_then(|a| a.as_socket());
        let peer_port = peer_sa.map(|a| a.port());
        self.slots[usize::from(into)] = Some(Slot {
            sock: child,
            v6,
            ns,
            layer: SockLayer::Connected,
        });
        self.model.socket(into, v6, ns);
        self.model.inherit_repair(into, s);
        // An accepted socket has its peer as destination: keys for other addresses are
        // refused (resolved divergence 6, docs/fuzz.md).
        if let Some(sa) = peer_sa {
            self.model.set_daddr(into, sa.ip());
        }
        if self.peer.as_ref().map(|p| p.me.port()) == peer_port && peer_port.is_some() {
            self.child_of_peer = Some(into);
        } else {
            self.model.set_floating(into);
        }
        // The child's keys: copies of the listener's keys that match the peer.
        let (keys, info) = self.read_kernel(into);
        if let (Some(lk), Some(keys)) = (&listener_keys, &keys) {
            for k in keys {
                let known = lk.iter().any(|l| {
                    model::KeyM {
                        uid: 0,
                        ..l.clone()
                    } == model::KeyM {
                        uid: 0,
                        ..k.key.clone()
                    }
                });
                if !known {
                    return Err(div(
                        op,
                        format!(
                            "accept: the child has a key the listener never had: {:?}",
                            k.key
                        ),
                    ));
                }
            }
        }
        if listener_keys.is_none() && keys.as_ref().is_some_and(|k| !k.is_empty()) {
            return Err(div(
                op,
                "accept: a listener without TCP-AO produced a child with keys".into(),
            ));
        }
        self.model.adopt(into, keys.unwrap_or_default(), info);
        self.judged.1 += 1;
        Ok(())
    }

    /// The kernel's keys (all) and info of a slot.
    fn read_kernel(&self, s: u8) -> KernelView {
        let Some(x) = self.slot(s) else {
            return (None, None);
        };
        let mut b = vec![0u8; GET_SIZE * 16];
        b[272..276].copy_from_slice(&16u32.to_ne_bytes());
        b[276..278].copy_from_slice(&4u16.to_ne_bytes());
        let keys = raw::getsockopt_bytes(
            &x.sock,
            SOL_TCP,
            TCP_AO_GET_KEYS,
            Some(&mut b),
            OptLen::Value(GET_SIZE as i32),
        )
        .ok()
        .map(|_| {
            let n = u32::from_ne_bytes([b[272], b[273], b[274], b[275]]).min(16) as usize;
            (0..n)
                .map(|i| model::parse_record(&b[i * GET_SIZE..(i + 1) * GET_SIZE]))
                .collect()
        });
        let mut ib = vec![0u8; INFO_SIZE];
        let info =
            raw::getsockopt_bytes(&x.sock, SOL_TCP, TCP_AO_INFO, Some(&mut ib), OptLen::Buffer)
                .ok()
                .map(|_| {
                    let bits = u32::from_ne_bytes([ib[0], ib[1], ib[2], ib[3]]);
                    (bits & 4 != 0, bits & 16 != 0, counters_of(&ib))
                });
        (keys, info)
    }

    fn get_info(&mut self, op: &Op, s: u8, len: GetLen) -> Step {
        let Some(x) = self.slot(s) else { return Ok(()) };
        let (n, cap) = encode::get_len(len, INFO_SIZE);
        let mut buf = vec![0u8; cap];
        if let GetLen::Long { nonzero: true, .. } = len {
            if let Some(l) = buf.last_mut() {
                *l = 1;
            }
        }
        let input = buf.clone();
        let got = raw::getsockopt_bytes(
            &x.sock,
            SOL_TCP,
            TCP_AO_INFO,
            Some(&mut buf),
            OptLen::Value(n),
        );
        let (want, out) = self.model.get_info(s, &input, n);
        self.judge(op, want, errno(&got))?;
        if let Output::Info {
            current,
            rnext,
            ao_required,
            accept_icmps,
            counters_min,
            written,
        } = out
        {
            if written < INFO_SIZE {
                return Ok(());
            }
            let bits = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let kc = (bits & 1 != 0, buf[6]);
            let kr = (bits & 2 != 0, buf[7]);
            let mut bad = Vec::new();
            if let Some(c) = current {
                // Without a key set, the id byte is not meaningful.
                if c != kc && (c.0 || kc.0) {
                    bad.push(format!("current {kc:?}, model {c:?}"));
                }
            }
            if let Some(r) = rnext {
                if r != kr && (r.0 || kr.0) {
                    bad.push(format!("rnext {kr:?}, model {r:?}"));
                }
            }
            if (bits & 4 != 0) != ao_required {
                bad.push(format!(
                    "ao_required {}, model {ao_required}",
                    bits & 4 != 0
                ));
            }
            if (bits & 16 != 0) != accept_icmps {
                bad.push(format!(
                    "accept_icmps {}, model {accept_icmps}",
                    bits & 16 != 0
                ));
            }
            let kcnt = counters_of(&buf);
            for (i, (k, m)) in kcnt.iter().zip(counters_min).enumerate() {
                if *k < m {
                    return Err(other(
                        "counter",
                        op,
                        format!("ao-get-info: counter {i} went backwards: {k} < {m}"),
                    ));
                }
            }
            self.model.saw_counters(s, kcnt);
            if !bad.is_empty() {
                return Err(div(op, format!("ao-get-info: {}", bad.join(", "))));
            }
        }
        Ok(())
    }

    fn get_keys(&mut self, op: &Op, s: u8, g: &GetArg) -> Step {
        let Some(x) = self.slot(s) else { return Ok(()) };
        let (n, rec) = encode::get_len(g.len, GET_SIZE);
        let nkeys = usize::from(g.nkeys);
        // The kernel writes nkeys records at a stride of optlen, plus nkeys at offset 272.
        let cap = rec
            .max(GET_SIZE)
            .max(nkeys * rec.max(n.max(0) as usize))
            .max(GET_SIZE);
        let mut buf = vec![0u8; cap];
        let filter = encode::get_bytes(g, x.ns, x.v6, &self.topo.dev);
        buf[..GET_SIZE].copy_from_slice(&filter);
        if let GetLen::Long { nonzero: true, .. } = g.len {
            buf[rec - 1] = 1;
        }
        let input = buf.clone();
        let got = raw::getsockopt_bytes(
            &x.sock,
            SOL_TCP,
            TCP_AO_GET_KEYS,
            Some(&mut buf),
            OptLen::Value(n),
        );
        let (want, out) = self.model.get_keys(s, &input[..rec.max(GET_SIZE)], n);
        let ret_len = got.as_ref().ok().copied().flatten();
        self.judge(op, want, errno(&got))?;
        let Output::Keys {
            records,
            flags_known,
        } = out
        else {
            return Ok(());
        };
        if ret_len != Some(GET_SIZE as i32) {
            return Err(div(
                op,
                format!("ao-get-keys: optlen written back {ret_len:?}, want {GET_SIZE}"),
            ));
        }
        let total = u32::from_ne_bytes([buf[272], buf[273], buf[274], buf[275]]) as usize;
        if total != records.len() {
            return Err(div(
                op,
                format!(
                    "ao-get-keys: nkeys {total}, the model matches {} keys: {:?}",
                    records.len(),
                    records.iter().map(|r| &r.key).collect::<Vec<_>>()
                ),
            ));
        }
        let stride = n as usize;
        if stride < GET_SIZE {
            return Ok(());
        }
        let shown = total.min(nkeys);
        let got: Vec<model::KeyRecord> = (0..shown)
            .map(|i| {
                let mut r = buf[i * stride..i * stride + GET_SIZE].to_vec();
                if i == 0 {
                    r[272..276].fill(0);
                }
                model::parse_record(&r)
            })
            .collect();
        if let Some(why) = model::compare_keys(&got, &records[..shown], flags_known) {
            return Err(div(op, format!("ao-get-keys: {why}")));
        }
        Ok(())
    }

    fn peer_connect(&mut self, op: &Op, s: u8, key: u8, near_wrap: bool, auth: SegAuth) -> Step {
        let Some(x) = self.slot(s) else { return Ok(()) };
        if !self.topo.has_tun() || x.ns != Ns::A || self.ctx(s).state != state::LISTEN {
            return Ok(());
        }
        let v6 = x.v6;
        let Some(local) = x.sock.local_addr().ok().and_then(|a| a.as_socket()) else {
            return Ok(());
        };
        let port = local.port();
        // Only a listener on the any-address or the TUN-side address gets the SYN (resolved
        // divergence 12, docs/fuzz.md).
        let tun_side = peer::addr_pair(v6).1;
        if !local.ip().is_unspecified() && local.ip() != tun_side {
            return Ok(());
        }
        let peer_ip = encode::ip(Addr::Tun, Ns::A, v6);
        let keys: Vec<model::KeyM> = self
            .model
            .sock(s)
            .and_then(|m| m.ao.as_ref())
            .map(|a| a.keys.clone())
            .unwrap_or_default();
        let (family, addr) = match peer_ip {
            IpAddr::V4(v) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v.octets());
                (encode::AF_INET, b)
            }
            IpAddr::V6(v) => (encode::AF_INET6, v.octets()),
        };
        let matching: Vec<&model::KeyM> = keys
            .iter()
            .filter(|k| k.matches_peer(&addr, family))
            .collect();
        let k = if matching.is_empty() {
            None
        } else {
            Some(matching[usize::from(key) % matching.len()].clone())
        };
        let isn = if near_wrap {
            0xffff_ff00
        } else {
            0x1000_0000u32.wrapping_mul(u32::from(key) + 1) ^ u32::from(self.port_base)
        };
        // A new source port per connection: reusing the 4-tuple of a live connection gets a
        // challenge ACK, not a SYN-ACK (resolved divergence 7, docs/fuzz.md).
        self.peer_conns += 1;
        let sport = self.port_base + 4 + self.peer_conns;
        let (syn, mut conn) = peer::syn(v6, sport, port, isn, k.as_ref(), auth);
        conn.listener = s;
        conn.child_keys = matching.iter().map(|k| (*k).clone()).collect();
        // "Unknown" must be unknown to every key of the socket, not only the mirrored one
        // (resolved divergence 19, docs/fuzz.md).
        if let Some(id) = peer::unused_recv_id(&keys) {
            conn.unknown_id = id;
        }
        let _ = self.topo.drain();
        let mib_before = crate::counters::MibSnapshot::read().ok();
        self.topo.send(&syn).map_err(|e| {
            other(
                "tun",
                op,
                format!("peer-connect: writing the SYN to the TUN device failed: {e}"),
            )
        })?;
        let mut replies = self.topo.drain();
        let is_synack = |r: &peer::Reply| {
            r.flags.contains(tcpao_refimpl::wire::TcpFlags::SYN) && r.dport == sport
        };
        let good = auth == SegAuth::Good;
        // The kernel answers a SYN from the TUN device in the writer's context, so the
        // SYN-ACK is normally there at once. TCP does not promise that: when one is due and
        // did not come, wait for it (and say so) before calling it missing.
        let mut missing = None;
        if k.is_some() && good && !replies.iter().any(is_synack) {
            let (late, waited) = self.topo.wait_reply(SYNACK_WAIT, is_synack);
            replies.extend(late);
            let moved = match (&mib_before, crate::counters::MibSnapshot::read()) {
                (Some(b), Ok(a)) => a.changes(b),
                (_, Err(e)) => format!("unreadable ({e})"),
                (None, _) => "unreadable".to_owned(),
            };
            match waited {
                Some(t) => self.notes.push(format!(
                    "peer-connect: the SYN-ACK came {t:?} after the SYN, not at once \
                     (counters that moved: {moved})"
                )),
                None => missing = Some(moved),
            }
        }
        let synack = replies.iter().find(|r| is_synack(r));
        match (synack, k.is_some(), good) {
            (Some(sa), _, _) => {
                conn.kisn = sa.seq;
                conn.rcv_nxt = sa.seq.wrapping_add(1);
                conn.ksne = tcpao_refimpl::SneTracker::new(sa.seq);
                if let Err(why) = peer::check_reply(sa, &conn, &keys, 0) {
                    return Err(other("wire", op, format!("SYN-ACK: {why}")));
                }
                if k.is_some() && !good {
                    return Err(div(
                        op,
                        format!("peer-connect: the kernel answered a {auth:?} SYN with a SYN-ACK"),
                    ));
                }
                if let (Some(k), Some((kid, _, _))) = (&k, sa.ao) {
                    if kid != k.sndid {
                        return Err(other(
                            "wire",
                            op,
                            format!(
                                "SYN-ACK signed with KeyID {kid}; the SYN asked for RNextKeyID {}",
                                k.sndid
                            ),
                        ));
                    }
                }
                let ack = tcpao_refimpl::wire::TcpRepr {
                    src_port: sport,
                    dst_port: port,
                    seq_number: conn.snd_nxt,
                    ack_number: conn.rcv_nxt,
                    flags: tcpao_refimpl::wire::TcpFlags::ACK,
                    window_len: 65_535,
                    urgent_at: 0,
                    options: &[],
                    payload: &[],
                };
                let sne = conn.sne.sne_for(conn.snd_nxt);
                if let Some(p) = peer::sign(&conn, &ack, SegAuth::Good, None, sne) {
                    self.topo.send(&p).map_err(|e| {
                        other(
                            "tun",
                            op,
                            format!("peer-connect: writing the handshake's ACK failed: {e}"),
                        )
                    })?;
                }
                conn.established = true;
                // What answers the handshake's ACK is checked too: a child that inherited the
                // listener's SHUT_WR sends its FIN right away (resolved divergence 20).
                let replies = self.topo.drain();
                // The new connection's child is not accepted yet: counters are predicted again
                // once `accept` hands it out (resolved divergence 10, docs/fuzz.md).
                self.child_of_peer = None;
                self.peer = Some(conn);
                self.check_replies(op, &replies)
            }
            (None, true, true) if keys.len() == matching.len() || !keys.is_empty() => Err(div(
                op,
                format!(
                    "peer-connect: a good SYN signed with a key of the listener got no \
                         SYN-ACK within {SYNACK_WAIT:?} ({} replies; counters that moved: {})",
                    replies.len(),
                    missing.as_deref().unwrap_or("not read")
                ),
            )),
            _ => Ok(()),
        }
    }

    fn peer_send(&mut self, op: &Op, seg: &Seg) -> Step {
        let Some(mut conn) = self.peer.clone() else {
            return Ok(());
        };
        if !conn.established {
            return Ok(());
        }
        let child = self.child_of_peer;
        let before = child.and_then(|c| self.counters(c));
        let mib_before = crate::counters::NetnsMib::read().ok();
        let child_state = child.map(|c| self.ctx(c).state);
        // "Unknown" is judged against the keys the child has now: a key added to it after the
        // connection was made may hold the KeyID picked then (resolved divergence 21,
        // docs/fuzz.md).
        if seg.auth == SegAuth::UnknownKey {
            if let Some(keys) = child
                .and_then(|c| self.model.sock(c))
                .and_then(|m| m.ao.as_ref())
                .map(|a| &a.keys)
            {
                if let Some(id) = peer::unused_recv_id(keys) {
                    conn.unknown_id = id;
                }
            }
        }
        let Some(pkt) = peer::segment(&mut conn, seg) else {
            return Ok(());
        };
        self.topo.send(&pkt).map_err(|e| {
            other(
                "tun",
                op,
                format!("peer-send: writing the segment to the TUN device failed: {e}"),
            )
        })?;
        let replies = self.topo.drain();
        // Predicted counter deltas on the accepted child (the only socket the segment reaches).
        if let (Some(c), Some(b), Some(st)) = (child, before, child_state) {
            let synced = (1..=9).contains(&st) && st != state::CLOSE && conn.key.is_some();
            if synced {
                if let Some(a) = self.counters(c) {
                    let idx = match seg.auth {
                        SegAuth::Good => Some(0),
                        SegAuth::BadMac | SegAuth::WrongMaclen => Some(1),
                        SegAuth::UnknownKey => Some(2),
                        SegAuth::Unsigned => Some(3),
                        SegAuth::Md5 => None,
                    };
                    for i in 0..5 {
                        if a[i] < b[i] {
                            return Err(other(
                                "counter",
                                op,
                                format!("peer-send: socket counter {i} went backwards"),
                            ));
                        }
                    }
                    if let Some(i) = idx {
                        if a[i] != b[i] + 1 {
                            return Err(div(
                                op,
                                format!(
                                    "peer-send: a {:?} segment moved counters {b:?} -> {a:?}; the \
                                     model expects counter {i} +1",
                                    seg.auth
                                ),
                            ));
                        }
                    }
                    self.model.saw_counters(c, a);
                    // The namespace's counters move too (other traffic in A can only add).
                    if let (Some(i), Some(mb), Ok(ma)) =
                        (idx, &mib_before, crate::counters::NetnsMib::read())
                    {
                        let name = NETNS_AO[i];
                        if ma.get(name) < mb.get(name) + 1 {
                            return Err(div(
                                op,
                                format!(
                                    "peer-send: a {:?} segment did not move the namespace's \
                                     {name} ({} -> {})",
                                    seg.auth,
                                    mb.get(name),
                                    ma.get(name)
                                ),
                            ));
                        }
                        for n in NETNS_AO {
                            if ma.get(n) < mb.get(n) {
                                return Err(other(
                                    "counter",
                                    op,
                                    format!("peer-send: the namespace's {n} went backwards"),
                                ));
                            }
                        }
                    }
                }
                // Every verified segment carries an RNextKeyID (the peer's own RecvID when it
                // asks for nothing else), and it moves Current_key when a key has that SendID
                // (resolved divergence 9, docs/fuzz.md).
                if seg.auth == SegAuth::Good && !seg.rst {
                    if let Some(r) = seg.rnext.or(conn.key.as_ref().map(|k| k.sndid)) {
                        self.model.rnext_request(c, r);
                    }
                }
            }
        }
        self.peer = Some(conn);
        self.check_replies(op, &replies)
    }

    /// Wait until the kernel released the sockets of `inodes` ([`Topo::wait_released`]) and
    /// note it when that took a wait, or did not happen.
    fn released(&mut self, inodes: &[(u64, Ns)], what: &str) {
        let (waited, still) = self.topo.wait_released(inodes, RELEASE_WAIT);
        match waited {
            None => {}
            Some(t) if still.is_empty() => self.notes.push(format!(
                "{what}: the kernel released the socket {t:?} after close() (another process held the descriptor)"
            )),
            Some(t) => self.notes.push(format!(
                "{what}: sockets {still:?} (inodes) still listed {t:?} after close()"
            )),
        }
    }

    /// The socket in slot `s` is about to be closed: if it is the virtual peer's child, its
    /// keys are kept for what it sends on the way out, and a child in repair mode goes without
    /// a word (`tcp_disconnect()` sends nothing in repair mode), so the listener answers for
    /// the connection from then on (resolved divergence 31, docs/fuzz.md).
    fn forget_child(&mut self, s: u8) {
        if self.child_of_peer != Some(s) {
            return;
        }
        self.remember_child_keys();
        let silent = self
            .model
            .sock(s)
            .is_some_and(|m| m.repair || m.born_in_repair);
        if let (true, Some(p)) = (silent, self.peer.as_mut()) {
            p.reset = true;
        }
        self.child_of_peer = None;
    }

    /// Copies the accepted child's keys (per the model) into the peer's connection.
    fn remember_child_keys(&mut self) {
        let keys = self
            .child_of_peer
            .and_then(|c| self.model.sock(c))
            .and_then(|m| m.ao.as_ref())
            .map(|a| a.keys.clone());
        if let (Some(k), Some(p)) = (keys, self.peer.as_mut()) {
            p.child_keys = k;
        }
    }

    fn check_peer_replies(&mut self, op: &Op) -> Step {
        let replies = self.topo.drain();
        self.check_replies(op, &replies)
    }

    fn check_replies(&mut self, op: &Op, replies: &[peer::Reply]) -> Step {
        // Until `accept` hands out the child, its keys are the listener's for the peer, as
        // copied when the connection was made (resolved divergence 23, docs/fuzz.md).
        self.remember_child_keys();
        let Some(mut conn) = self.peer.clone() else {
            return Ok(());
        };
        let keys = conn.child_keys.clone();
        for r in replies {
            if r.dport != conn.me.port() || r.sport != conn.them.port() {
                continue;
            }
            let sne = conn.ksne.observe(r.seq, r.seg_len);
            conn.kernel_fin |= r.flags.contains(tcpao_refimpl::wire::TcpFlags::FIN);
            if let Err(why) = peer::check_reply(r, &conn, &keys, sne) {
                return Err(other("wire", op, why));
            }
            // After the kernel's own RST, a listener answers for the connection (resolved
            // divergence 24, docs/fuzz.md).
            conn.reset |= r.flags.contains(tcpao_refimpl::wire::TcpFlags::RST);
            let end = r.seq.wrapping_add(r.seg_len);
            if end.wrapping_sub(conn.rcv_nxt) as i32 > 0 {
                conn.rcv_nxt = end;
            }
        }
        self.peer = Some(conn);
        Ok(())
    }

    /// Verifies what crossed the veth since the last call (before each operation, so a key
    /// change never meets segments sent before it).
    fn veth_check(&mut self, op: &Op) -> Step {
        let Some(w) = self.wire.as_deref_mut() else {
            return Ok(());
        };
        let segs = w.drain();
        for (c, isn, their, sne, syn_only) in segs {
            let ns = if c.from.ip() == encode::ip(Addr::Local, Ns::A, c.from.is_ipv6()) {
                Ns::A
            } else {
                Ns::B
            };
            let infos: Vec<&model::AoM> = (0..SLOTS)
                .filter(|&s| {
                    self.slot(s).is_some_and(|x| {
                        x.ns == ns
                            && x.sock
                                .local_addr()
                                .ok()
                                .and_then(|a| a.as_socket())
                                .is_some_and(|a| a.port() == c.from.port())
                    })
                })
                .filter_map(|s| self.model.sock(s).and_then(|m| m.ao.as_ref()))
                .collect();
            let keys: Vec<model::KeyM> = infos.iter().flat_map(|a| a.keys.clone()).collect();
            if keys.is_empty() {
                continue;
            }
            // Keys added to an open connection sign with the ISNs and SNE in `ao_info`, not
            // the handshake's (resolved divergence 29, docs/fuzz.md).
            let (isn, their, sne) = match infos.iter().find_map(|a| a.repaired) {
                Some((l, r, snd_sne)) if !syn_only => (l, r, snd_sne),
                _ => (isn, their, sne),
            };
            if let Err(why) = super::wire::check(&c, isn, their, sne, syn_only, &keys) {
                return Err(other("wire", op, why));
            }
            if let Some(w) = self.wire.as_deref_mut() {
                w.verified += 1;
            }
        }
        Ok(())
    }

    fn counters(&self, s: u8) -> Option<[u64; 5]> {
        let x = self.slot(s)?;
        let mut ib = vec![0u8; INFO_SIZE];
        raw::getsockopt_bytes(&x.sock, SOL_TCP, TCP_AO_INFO, Some(&mut ib), OptLen::Buffer).ok()?;
        Some(counters_of(&ib))
    }
}

/// The namespace counters of the socket counters good, bad, key-not-found, ao-required.
const NETNS_AO: [&str; 4] = ["TCPAOGood", "TCPAOBad", "TCPAOKeyNotFound", "TCPAORequired"];

fn counters_of(ib: &[u8]) -> [u64; 5] {
    let mut c = [0u64; 5];
    for (i, v) in c.iter_mut().enumerate() {
        let mut x = [0u8; 8];
        x.copy_from_slice(&ib[8 + 8 * i..16 + 8 * i]);
        *v = u64::from_ne_bytes(x);
    }
    c
}

fn libc_ebadf() -> i32 {
    9
}

/// Edges of a PC trace (hash of each pair of consecutive PCs, as syzkaller's signal) and the
/// distinct PCs.
pub fn edges(pcs: &[u64]) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let mut e = BTreeSet::new();
    let mut prev = 0u64;
    for &pc in pcs {
        e.insert(pc ^ prev.rotate_left(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        prev = pc;
    }
    (e, pcs.iter().copied().collect())
}

/// Whether the fd is still open (for tests).
pub fn is_socket(fd: &impl AsFd) -> bool {
    tcpao_sys::repair::tcp_info(fd).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolved divergence 25: `shutdown()` of a socket still connecting makes every later
    /// `connect()` EINVAL; one row per transition.
    #[test]
    fn socket_layer_states() {
        use SockLayer::*;
        use state::{SYN_RECV, SYN_SENT};
        for (from, got, to) in [
            (Unconnected, Err(115), Connecting),
            (Unconnected, Ok(()), Connected),
            (Connecting, Err(114), Connecting),
            (Connecting, Err(111), Unconnected),
            (Connecting, Err(106), Connected),
            (Unconnected, Err(129), Unconnected),
            (Unconnected, Err(101), Unconnected),
            (Disconnecting, Err(22), Disconnecting),
            (Disconnecting, Ok(()), Disconnecting),
        ] {
            assert_eq!(from.after_connect(got), to, "{from:?} {got:?}");
        }
        for (from, tcp, rcv, to) in [
            (Connecting, state::CLOSE, false, Disconnecting),
            (Connecting, SYN_RECV, false, Disconnecting),
            // SYN-SENT is disconnected whatever `how` says (seed 5, exec 820).
            (Connecting, SYN_SENT, false, Unconnected),
            (Connecting, SYN_SENT, true, Unconnected),
            (Connecting, state::ESTABLISHED, false, Connected),
            (Unconnected, state::CLOSE, true, Unconnected),
            (Connected, state::ESTABLISHED, true, Connected),
            (Unconnected, state::LISTEN, true, Unconnected),
            (Disconnecting, state::LISTEN, false, Disconnecting),
        ] {
            assert_eq!(from.after_shutdown(tcp, rcv), to, "{from:?} {tcp} {rcv}");
        }
        assert_eq!(Disconnecting.connect_refusal(), Some(22));
        for s in [Unconnected, Connecting, Connected] {
            assert_eq!(s.connect_refusal(), None);
        }
    }

    #[test]
    fn edges_count_pairs_and_pcs() {
        let (e, p) = edges(&[1, 2, 1, 2, 3]);
        assert_eq!(p.len(), 3);
        assert_eq!(e.len(), 4, "1, 1->2, 2->1, 2->3 (the second 1->2 repeats)");
        assert!(edges(&[]).0.is_empty());
    }

    #[test]
    fn finding_signature_ignores_numbers() {
        let f = |d: &str| Finding {
            kind: "divergence".into(),
            op: 3,
            op_name: "ao-add".into(),
            detail: d.into(),
        };
        assert_eq!(
            f("ao-add: the model predicts EEXIST").signature(),
            "divergence/ao-add/ao-add: the model predicts EEXIST"
        );
        assert_eq!(f("nkeys 3, x").signature(), f("nkeys 4, x").signature());
        assert_ne!(
            f("peer-send: a Good segment moved counters [0] -> [0]").signature(),
            f("peer-send: a BadMac segment moved counters [0] -> [0]").signature()
        );
    }
}

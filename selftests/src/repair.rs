// SPDX-License-Identifier: MIT OR Apache-2.0
//! Checkpoint and restore of a live TCP-AO connection with `TCP_REPAIR` (the kernel suite's
//! `lib/repair.c`, a much simplified CRIU `soccr`).
//!
//! [`freeze`] puts an established socket in repair mode, reads everything a restore needs
//! into a [`Checkpoint`] and closes the socket without a FIN or RST. [`Checkpoint::restore`]
//! rebuilds the connection on a new socket, in the order measured on Linux 7.2: `TCP_REPAIR`
//! on, `SO_REUSEADDR`, the TCP-AO keys, bind, both queue sequence numbers, `connect()` (no SYN
//! in repair mode), `TCP_REPAIR_OPTIONS`, the timestamp clock, the queue contents,
//! `TCP_REPAIR_WINDOW`, `TCP_AO_REPAIR`, no queue, `TCP_REPAIR` off without a window probe.
//!
//! [`snapshot`] takes the same image but leaves the socket running, for a test that restores
//! an earlier state of a connection after it moved on (or closed).
//!
//! Between the two, a test may change what it likes: other ports ([`Checkpoint::local`],
//! [`Checkpoint::remote`]), other sequence numbers ([`Checkpoint::set_seqs`]), other ISNs or
//! SNEs ([`Checkpoint::ao`]). Each restore registers the restoring side's view of the
//! connection with the capture ([`crate::capture::Capture::register_restored_view`]), so the
//! segments after it are cross-checked by the reference with exactly those ISNs and SNEs.
//!
//! ```no_run
//! # use tcpao_selftests::PeerResult;
//! # use tcpao_selftests::peers::Peer;
//! # use tcpao_selftests::sockets::TestKey;
//! # use tcpao_selftests::repair::{self, Restore};
//! # fn f(p: &Peer<'_>, sk: socket2::Socket) -> PeerResult {
//! let key = TestKey::new(p.remote_addr(), 100, 100);
//! let mut img = repair::freeze(p, sk)?;       // the old socket is gone, no FIN was sent
//! img.ao.as_mut().unwrap().snd_sne += 1;      // corrupt the image (or move ports, SEQs)
//! let sk = img.restore(p, &Restore::new(&[key]))?; // live again, repair mode off
//! # Ok(()) }
//! ```
//!
//! Everything needs `CAP_NET_ADMIN` in the socket's namespace.

use std::net::SocketAddr;

use socket2::{SockAddr, Socket};
use tcpao_sys::repair::{self as sys_repair, Queue, RepairMode, RepairWindow, TcpInfo};
use tcpao_sys::{AoRepair, TcpAoExt};

use crate::capture::{RestoredFlow, RestoredView};
use crate::failure;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::peers::Peer;
use crate::sockets::{self, TestKey};
use crate::topology::{Side, VETH_NAME};

/// Largest queue a checkpoint reads (the kernel default buffers are far smaller).
const MAX_QUEUE: usize = 16 << 20;

/// Everything [`Checkpoint::restore`] needs to rebuild a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Local address and port of the socket.
    pub local: SocketAddr,
    /// Peer address and port.
    pub remote: SocketAddr,
    /// `TCP_INFO` at checkpoint time (negotiated options, window scales).
    pub info: TcpInfo,
    /// `TCP_MAXSEG`.
    pub mss: u32,
    /// The TCP timestamp clock (`TCP_TIMESTAMP`), when timestamps were negotiated.
    pub timestamp: Option<u32>,
    /// `TCP_REPAIR_WINDOW`.
    pub window: RepairWindow,
    /// `TCP_QUEUE_SEQ` of the send queue: the sequence number after the last byte queued
    /// for sending (`write_seq`). The queue starts at `send_seq - send_queue.len()`.
    pub send_seq: u32,
    /// `TCP_QUEUE_SEQ` of the receive queue: the next sequence number expected (`rcv_nxt`).
    /// Unread data starts at `recv_seq - recv_queue.len()`.
    pub recv_seq: u32,
    /// Data queued for sending, not yet acknowledged by the peer.
    pub send_queue: Vec<u8>,
    /// Data received, not yet read by the application.
    pub recv_queue: Vec<u8>,
    /// `TCP_AO_REPAIR` (ISNs and SNEs); `None` for a socket without TCP-AO.
    pub ao: Option<AoRepair>,
    /// The socket was bound to this device (`SO_BINDTODEVICE`), restored as such.
    pub device: Option<Vec<u8>>,
}

impl Checkpoint {
    /// The sequence number of the first byte not yet acknowledged by the peer (`snd_una`
    /// for a frozen socket).
    pub fn send_una(&self) -> u32 {
        self.send_seq.wrapping_sub(queue_len(&self.send_queue))
    }

    /// Move both sequence spaces: our first unacknowledged byte becomes `send_una` and the
    /// next byte we expect becomes `recv_next`, the queued data moving with them. The window
    /// edges (`snd_wl1`, `rcv_wup`) move with the receive sequence. Use it to restore a
    /// connection just below 2^32 (the peer must be moved the other way round).
    pub fn set_seqs(&mut self, send_una: u32, recv_next: u32) {
        let delta = recv_next.wrapping_sub(self.recv_seq);
        self.send_seq = send_una.wrapping_add(queue_len(&self.send_queue));
        self.recv_seq = recv_next;
        self.window.snd_wl1 = self.window.snd_wl1.wrapping_add(delta);
        self.window.rcv_wup = self.window.rcv_wup.wrapping_add(delta);
    }

    /// Rebuild the connection on a new socket (non-blocking, out of repair mode) and register
    /// this side's view of it with the capture.
    ///
    /// # Errors
    /// A failure sentence naming the step the kernel refused.
    pub fn restore(&self, peer: &Peer<'_>, opts: &Restore<'_>) -> PeerResult<Socket> {
        let sk = sockets::tcp_socket(crate::topology::Family::of(self.local.ip()))?;
        sys_repair::set_repair(&sk, RepairMode::On).map_err(|e| step("TCP_REPAIR on", &e))?;
        sk.set_reuse_address(true)
            .or_fail("restore: SO_REUSEADDR failed")?;
        for k in opts.keys {
            sk.add_ao_key(&k.to_ao_key()?).map_err(|e| {
                failure!("restore: setsockopt(TCP_AO_ADD_KEY) of key {k:?} failed: {e}")
            })?;
            if opts.register_keys {
                sockets::register(peer, k);
            }
        }
        if let Some(dev) = &self.device {
            sk.bind_device(Some(dev))
                .or_fail("restore: SO_BINDTODEVICE failed")?;
        }
        sk.bind(&SockAddr::from(self.local))
            .or_fail(&format!("restore: bind({}) failed", self.local))?;
        let recv_start = self.recv_seq.wrapping_sub(queue_len(&self.recv_queue));
        set_queue_seq(&sk, Queue::Recv, recv_start)?;
        set_queue_seq(&sk, Queue::Send, self.send_una())?;
        // Register before connect(): from then on the kernel hands this 4-tuple's segments to
        // the new socket (and with a corrupted image judges them with the new view), so a
        // segment of the peer's still in flight must be judged with the view too.
        self.register_view(peer);
        sk.connect(&SockAddr::from(self.remote)).map_err(|e| {
            // EADDRNOTAVAIL: the namespace still holds this 4-tuple; say what holds it.
            failure!(
                "restore: connect({}) in repair mode failed: {e}; TCP sockets on port {} here: {}",
                self.remote,
                self.local.port(),
                sockets::ProcTcp::describe_port(self.local.port())
            )
        })?;
        let mss = u16::try_from(self.mss).unwrap_or(u16::MAX);
        sys_repair::set_repair_options(&sk, &self.info.repair_options(mss))
            .map_err(|e| step("TCP_REPAIR_OPTIONS", &e))?;
        if let Some(ts) = self.timestamp {
            sys_repair::set_timestamp(&sk, ts).map_err(|e| step("TCP_TIMESTAMP", &e))?;
        }
        fill_queue(&sk, Queue::Recv, &self.recv_queue)?;
        fill_queue(&sk, Queue::Send, &self.send_queue)?;
        sys_repair::set_repair_window(&sk, &self.window)
            .map_err(|e| step("TCP_REPAIR_WINDOW", &e))?;
        if let Some(ao) = &self.ao {
            sk.set_ao_repair(ao)
                .map_err(|e| failure!("restore: setsockopt(TCP_AO_REPAIR) failed: {e}"))?;
            if let Some((current, rnext)) = opts.current_rnext {
                sk.set_ao_current_key(current)
                    .map_err(|e| failure!("restore: setting Current_key {current} failed: {e}"))?;
                sk.set_ao_rnext_key(rnext)
                    .map_err(|e| failure!("restore: setting RNext_key {rnext} failed: {e}"))?;
            }
        }
        sys_repair::set_repair_queue(&sk, Queue::None)
            .map_err(|e| step("TCP_REPAIR_QUEUE none", &e))?;
        let off = if opts.window_probe {
            RepairMode::Off
        } else {
            RepairMode::OffNoWindowProbe
        };
        sys_repair::set_repair(&sk, off).map_err(|e| step("TCP_REPAIR off", &e))?;
        Ok(sk)
    }

    /// This side's view of the restored connection, for the capture.
    pub fn view(&self, side: Side) -> Option<RestoredView> {
        let ao = self.ao?;
        let (server, client) = match side {
            Side::Server => (self.local, self.remote),
            Side::Client => (self.remote, self.local),
        };
        // (ISN, next SEQ, SNE) of our send direction and of the peer's.
        let mine = (ao.snt_isn, self.send_una(), ao.snd_sne);
        let theirs = (ao.rcv_isn, self.recv_seq, ao.rcv_sne);
        let (s, c) = match side {
            Side::Server => (mine, theirs),
            Side::Client => (theirs, mine),
        };
        Some(RestoredView {
            side,
            flow: RestoredFlow {
                server: (server.ip(), server.port()),
                client: (client.ip(), client.port()),
                server_isn: s.0,
                client_isn: c.0,
                server_next_seq: s.1,
                client_next_seq: c.1,
                server_sne: s.2,
                client_sne: c.2,
            },
            // Set by the capture when registered.
            since_frame: 0,
            exact: false,
        })
    }

    fn register_view(&self, peer: &Peer<'_>) {
        if let (Some(c), Some(v)) = (peer.capture(), self.view(peer.side())) {
            c.register_restored_view(v);
        }
    }
}

/// How [`Checkpoint::restore`] sets up the new socket.
#[derive(Debug, Clone)]
pub struct Restore<'a> {
    /// The TCP-AO keys to install, in this order.
    pub keys: &'a [TestKey],
    /// Register `keys` with the capture. Off by default: keys restored from a checkpoint
    /// are normally the ones the old socket had, already registered by
    /// [`sockets::add_key`].
    pub register_keys: bool,
    /// Set Current_key (SendID) and RNext_key (RecvID) after `TCP_AO_REPAIR`.
    pub current_rnext: Option<(u8, u8)>,
    /// Leave repair mode with `TCP_REPAIR_OFF` (sends a window probe) instead of
    /// `TCP_REPAIR_OFF_NO_WP`.
    pub window_probe: bool,
}

impl<'a> Restore<'a> {
    /// Install `keys`; no window probe; Current_key/RNext_key as the kernel picks them.
    pub fn new(keys: &'a [TestKey]) -> Self {
        Self {
            keys,
            register_keys: false,
            current_rnext: None,
            window_probe: false,
        }
    }
}

/// Put `sk` in repair mode and read its state; the socket stays in repair mode (see
/// [`kill`]). The socket should be quiet (no data in flight) for a clean image.
///
/// # Errors
/// A failure sentence naming the option the kernel refused.
pub fn checkpoint(sk: &Socket) -> PeerResult<Checkpoint> {
    sys_repair::set_repair(sk, RepairMode::On).map_err(|e| step("TCP_REPAIR on", &e))?;
    let info = sys_repair::tcp_info(sk).map_err(|e| step("TCP_INFO", &e))?;
    let local = sk
        .local_addr()
        .or_fail("checkpoint: getsockname() failed")?
        .as_socket()
        .ok_or_else(|| failure!("checkpoint: the socket has no IP address"))?;
    let remote = sk
        .peer_addr()
        .or_fail("checkpoint: getpeername() failed")?
        .as_socket()
        .ok_or_else(|| failure!("checkpoint: the peer has no IP address"))?;
    let window = sys_repair::repair_window(sk).map_err(|e| step("TCP_REPAIR_WINDOW", &e))?;
    sys_repair::set_repair_queue(sk, Queue::Send).map_err(|e| step("TCP_REPAIR_QUEUE", &e))?;
    let send_seq = sys_repair::queue_seq(sk).map_err(|e| step("TCP_QUEUE_SEQ (send)", &e))?;
    let send_queue = peek_queue(sk)?;
    sys_repair::set_repair_queue(sk, Queue::Recv).map_err(|e| step("TCP_REPAIR_QUEUE", &e))?;
    let recv_seq = sys_repair::queue_seq(sk).map_err(|e| step("TCP_QUEUE_SEQ (recv)", &e))?;
    let recv_queue = peek_queue(sk)?;
    sys_repair::set_repair_queue(sk, Queue::None).map_err(|e| step("TCP_REPAIR_QUEUE", &e))?;
    let mss = sys_repair::mss(sk).map_err(|e| step("TCP_MAXSEG", &e))?;
    let timestamp = if info.timestamps() {
        Some(sys_repair::timestamp(sk).map_err(|e| step("TCP_TIMESTAMP", &e))?)
    } else {
        None
    };
    let ao = match sk.ao_repair() {
        Ok(a) => Some(a),
        Err(tcpao_sys::Error::NotFound { .. }) => None,
        Err(e) => {
            return Err(failure!(
                "checkpoint: getsockopt(TCP_AO_REPAIR) failed: {e}"
            ));
        }
    };
    let device = sk
        .device()
        .or_fail("checkpoint: SO_BINDTODEVICE read failed")?;
    Ok(Checkpoint {
        local,
        remote,
        info,
        mss,
        timestamp,
        window,
        send_seq,
        recv_seq,
        send_queue,
        recv_queue,
        ao,
        device,
    })
}

/// [`checkpoint`], then leave repair mode without a window probe: the connection goes on as
/// before and the image can later be restored on another socket (kernel
/// `test_enable_repair()`, `test_sock_checkpoint()`, `test_ao_checkpoint()`,
/// `test_disable_repair()`). [`kill`] the socket before restoring the image on the same ports.
///
/// # Errors
/// As [`checkpoint`], or when repair mode cannot be left.
pub fn snapshot(sk: &Socket) -> PeerResult<Checkpoint> {
    let c = checkpoint(sk)?;
    sys_repair::set_repair(sk, RepairMode::OffNoWindowProbe)
        .map_err(|e| step("TCP_REPAIR off", &e))?;
    Ok(c)
}

/// Close `sk` without a FIN or RST: repair mode on, then close (kernel `test_kill_sk`); return
/// once the kernel has let go of the connection ([`Killed::wait_released`]), so its 4-tuple is
/// free for a restore.
///
/// A socket closed in repair mode leaves the hash tables inside `close()`, but only when that
/// `close()` drops the last reference to the file. A child that another test is spawning
/// (`modprobe`, `birdc`) holds a copy of this process's fd table, and so of every socket in it,
/// until it execs; until then the connection stays `ESTABLISHED` and a restore on its 4-tuple
/// fails with `EADDRNOTAVAIL` (docs/lab.md, the restore flake; `restore/*/old-socket-still-open`).
///
/// # Errors
/// When repair mode cannot be entered, or the connection is still listed at the deadline.
pub fn kill(peer: &Peer<'_>, sk: Socket) -> PeerResult {
    let Some(killed) = close_in_repair(sk)? else {
        return Ok(()); // not connected: no 4-tuple to free
    };
    match killed.wait_released(peer, peer.deadline())? {
        Some(waited) if !waited.is_zero() => {
            peer.diag(format!(
                "kill: {killed} stayed listed for {:.1} ms after close() in repair mode \
                 (another reference to the socket's file was still open)",
                waited.as_secs_f64() * 1e3
            ));
            Ok(())
        }
        Some(_) => Ok(()),
        None => Err(failure!(
            "kill: {killed} is still listed ({}) {:?} after close() in repair mode",
            killed.listed().map_or("gone by now", |s| s.state_name()),
            peer.timeout()
        )),
    }
}

/// A connection closed in repair mode, known by its ports in the calling thread's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Killed {
    local: u16,
    remote: u16,
}

impl std::fmt::Display for Killed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the connection {}->{}", self.local, self.remote)
    }
}

impl Killed {
    /// The connection as `/proc/net/tcp{,6}` lists it, while the kernel still holds it.
    pub fn listed(&self) -> Option<sockets::ProcTcp> {
        sockets::ProcTcp::all()
            .into_iter()
            .find(|s| (s.local_port, s.remote_port) == (self.local, self.remote))
    }

    /// Poll until the connection is no longer listed: how long that took after the first
    /// look (zero when it was already gone), or `None` at `deadline`.
    ///
    /// # Errors
    /// [`Failure::PeerFailed`].
    pub fn wait_released(
        &self,
        peer: &Peer<'_>,
        deadline: std::time::Instant,
    ) -> PeerResult<Option<std::time::Duration>> {
        let first = std::time::Instant::now();
        let mut waited = false;
        let gone = peer.wait_for(deadline, || {
            if self.listed().is_some() {
                waited = true;
                return Ok(None);
            }
            Ok(Some(()))
        })?;
        Ok(gone.map(|()| {
            if waited {
                first.elapsed()
            } else {
                std::time::Duration::ZERO
            }
        }))
    }
}

/// The first half of [`kill`]: repair mode on, then close, without waiting for the kernel to
/// let go of the connection; `None` for a socket that had no peer.
///
/// # Errors
/// When repair mode cannot be entered.
pub fn close_in_repair(sk: Socket) -> PeerResult<Option<Killed>> {
    let port = |a: std::io::Result<SockAddr>| a.ok().and_then(|a| a.as_socket()).map(|a| a.port());
    let killed = port(sk.local_addr())
        .zip(port(sk.peer_addr()))
        .map(|(local, remote)| Killed { local, remote });
    sys_repair::set_repair(&sk, RepairMode::On).map_err(|e| step("TCP_REPAIR on", &e))?;
    drop(sk);
    Ok(killed)
}

/// [`checkpoint`] then [`kill`]: the connection now exists only in the image.
///
/// # Errors
/// As [`checkpoint`] and [`kill`].
pub fn freeze(peer: &Peer<'_>, sk: Socket) -> PeerResult<Checkpoint> {
    let c = checkpoint(&sk)?;
    kill(peer, sk)?;
    Ok(c)
}

/// Wait until everything `sk` sent was acknowledged (`tcpi_unacked` 0), so a checkpoint
/// carries no data in flight.
///
/// # Errors
/// A failure at the deadline, [`Failure::PeerFailed`].
pub fn wait_all_acked(peer: &Peer<'_>, sk: &Socket) -> PeerResult {
    let acked = peer.wait_for(peer.deadline(), || {
        let i = sys_repair::tcp_info(sk).map_err(|e| step("TCP_INFO", &e))?;
        Ok((i.unacked == 0).then_some(()))
    })?;
    acked.ok_or_else(|| {
        failure!(
            "the peer did not acknowledge all data within {:?}",
            peer.timeout()
        )
    })
}

/// The device sockets of the two-peer topology are bound to.
pub fn veth_device() -> Vec<u8> {
    VETH_NAME.as_bytes().to_vec()
}

fn queue_len(q: &[u8]) -> u32 {
    u32::try_from(q.len()).unwrap_or(u32::MAX)
}

fn step(what: &str, e: &tcpao_sys::Error) -> Failure {
    failure!("repair: {what} failed: {e}")
}

fn set_queue_seq(sk: &Socket, q: Queue, seq: u32) -> PeerResult {
    sys_repair::set_repair_queue(sk, q).map_err(|e| step("TCP_REPAIR_QUEUE", &e))?;
    sys_repair::set_queue_seq(sk, seq).map_err(|e| step("TCP_QUEUE_SEQ", &e))
}

/// Read the selected queue without consuming it (`MSG_PEEK` in repair mode).
fn peek_queue(sk: &Socket) -> PeerResult<Vec<u8>> {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match recv(
            sk.as_raw_fd(),
            &mut buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) if n < buf.len() || buf.len() >= MAX_QUEUE => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(_) => buf.resize(buf.len() * 4, 0),
            Err(nix::errno::Errno::EAGAIN) => return Ok(Vec::new()),
            Err(e) => {
                return Err(failure!(
                    "checkpoint: recv(MSG_PEEK) of a queue failed: {e}"
                ));
            }
        }
    }
}

/// Put `data` into the selected queue (`send()` in repair mode queues without sending).
fn fill_queue(sk: &Socket, q: Queue, data: &[u8]) -> PeerResult {
    if data.is_empty() {
        return Ok(());
    }
    sys_repair::set_repair_queue(sk, q).map_err(|e| step("TCP_REPAIR_QUEUE", &e))?;
    let mut off = 0;
    let mut chunk = data.len();
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        match sk.send(&data[off..end]) {
            Ok(n) if n > 0 => off += n,
            Ok(_) | Err(_) if chunk > 1024 => chunk /= 2,
            Ok(_) => {
                return Err(failure!(
                    "restore: send() into a repair queue wrote nothing"
                ));
            }
            Err(e) => return Err(failure!("restore: send() into a repair queue failed: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Checkpoint {
        Checkpoint {
            local: "10.0.1.1:40000".parse().unwrap(),
            remote: "10.0.254.1:7010".parse().unwrap(),
            info: TcpInfo::default(),
            mss: 1448,
            timestamp: Some(1234),
            window: RepairWindow {
                snd_wl1: 5000,
                snd_wnd: 65535,
                max_window: 65535,
                rcv_wnd: 65535,
                rcv_wup: 5100,
            },
            send_seq: 1100,
            recv_seq: 5200,
            send_queue: vec![0; 100],
            recv_queue: Vec::new(),
            ao: Some(AoRepair {
                snt_isn: 1000,
                rcv_isn: 4000,
                snd_sne: 0,
                rcv_sne: 2,
            }),
            device: None,
        }
    }

    #[test]
    fn set_seqs_moves_queues_and_window_edges() {
        let mut c = image();
        assert_eq!(c.send_una(), 1000);
        c.set_seqs(u32::MAX - 10, 7);
        assert_eq!(c.send_una(), u32::MAX - 10);
        assert_eq!(c.send_seq, 89, "the 100 queued bytes wrap");
        assert_eq!(c.recv_seq, 7);
        // Both edges keep their distance to rcv_nxt (-200 and -100).
        assert_eq!(c.window.snd_wl1, 7u32.wrapping_sub(200));
        assert_eq!(c.window.rcv_wup, 7u32.wrapping_sub(100));
    }

    #[test]
    fn view_is_seen_from_the_restoring_side() {
        let c = image();
        let v = c.view(Side::Client).unwrap();
        assert_eq!(v.side, Side::Client);
        assert_eq!(v.flow.client, (c.local.ip(), 40000));
        assert_eq!(v.flow.server, (c.remote.ip(), 7010));
        assert_eq!((v.flow.client_isn, v.flow.server_isn), (1000, 4000));
        assert_eq!(
            (v.flow.client_next_seq, v.flow.server_next_seq),
            (1000, 5200)
        );
        assert_eq!((v.flow.client_sne, v.flow.server_sne), (0, 2));
        let s = c.view(Side::Server).unwrap();
        assert_eq!(s.flow.server, (c.local.ip(), 40000));
        assert_eq!((s.flow.server_isn, s.flow.client_isn), (1000, 4000));
        let mut plain = image();
        plain.ao = None;
        assert!(plain.view(Side::Client).is_none());
    }
}

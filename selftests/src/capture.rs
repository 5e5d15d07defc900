// SPDX-License-Identifier: MIT OR Apache-2.0
//! Packet capture of a test's traffic and the cross-check against tcpao-refimpl.
//!
//! The capture is an `AF_PACKET`/`SOCK_RAW` socket opened inside the **server's** namespace and
//! filtered to `ktst-veth`, so every packet between the peers is seen exactly once: as
//! `PACKET_OUTGOING` when the server sent it, as incoming when the client did. Frames keep their
//! Ethernet header (pcap `LINKTYPE_ETHERNET`). The receive buffer is 256 KiB per frame (GSO
//! super-packets reach 64 KiB) and truncation is detected with `MSG_TRUNC`.
//!
//! Tests register every key they install ([`Capture::register`]); after the test
//! [`Capture::finish`] decodes each TCP segment and checks every TCP-AO and TCP-MD5 segment with
//! the reference implementation (see [`xcheck`] for the rules). With a save directory it writes
//! `NAME.pcap` and `NAME.keys.toml` (the tcpao-verify keys format).

pub mod xcheck;

use std::io::{self, IoSliceMut, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{LinkAddr, MsgFlags, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use zeroize::Zeroizing;

use crate::counters::NetnsMib;
use crate::peers::Side;
use crate::topology::Family;

pub use xcheck::XcheckReport;

/// Largest frame we accept; bigger ones are reported as truncated.
pub const FRAME_BUFFER: usize = 256 * 1024;
/// `PACKET_OUTGOING` (`<linux/if_packet.h>`).
const PACKET_OUTGOING: u8 = 4;
/// `ETH_P_ALL` in network byte order, the protocol of a packet socket that sees everything.
const ETH_P_ALL_BE: i32 = (0x0003u16).to_be() as i32;
/// How long the reader keeps draining after the test ended.
const DRAIN_IDLE: Duration = Duration::from_millis(30);

/// Capture settings of one test.
#[derive(Debug, Clone, Default)]
pub struct CaptureConfig {
    /// Write `NAME.pcap` and `NAME.keys.toml` here (`--save-pcaps DIR`).
    pub save_dir: Option<PathBuf>,
    /// File stem: the test name with `/` replaced by `_`.
    pub name: String,
}

impl CaptureConfig {
    /// Capture for test `name` (e.g. `connect/ipv4/basic`), saving to `save_dir` if given.
    pub fn new(name: &str, save_dir: Option<PathBuf>) -> Self {
        Self {
            save_dir,
            name: name.replace('/', "_"),
        }
    }
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// When it was read.
    pub ts: SystemTime,
    /// Which peer sent it.
    pub from: Side,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

/// Algorithm of a registered key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// HMAC-SHA-1-96 (kernel `hmac(sha1)`).
    HmacSha1,
    /// AES-128-CMAC-96 (kernel `cmac(aes128)`).
    AesCmac128,
    /// HMAC-SHA-256 (kernel `hmac(sha256)`).
    HmacSha256,
    /// TCP-MD5 (RFC 2385).
    Md5,
}

impl KeyAlgorithm {
    /// Name in the tcpao-verify keys file.
    pub fn keys_file_name(self) -> &'static str {
        match self {
            KeyAlgorithm::HmacSha1 => "hmac-sha1",
            KeyAlgorithm::AesCmac128 => "aes-128-cmac",
            KeyAlgorithm::HmacSha256 => "hmac-sha256",
            KeyAlgorithm::Md5 => "md5",
        }
    }

    /// From a kernel `alg_name` (`hmac(sha1)`, `cmac(aes128)`, `cmac(aes)`, `hmac(sha256)`).
    pub fn from_kernel_name(name: &str) -> Option<Self> {
        match name {
            "hmac(sha1)" => Some(KeyAlgorithm::HmacSha1),
            "cmac(aes128)" | "cmac(aes)" => Some(KeyAlgorithm::AesCmac128),
            "hmac(sha256)" => Some(KeyAlgorithm::HmacSha256),
            _ => None,
        }
    }
}

/// A key a peer installed, as the capture needs it to verify segments.
#[derive(Clone)]
pub struct RegisteredKey {
    /// The peer whose socket holds the key.
    pub owner: Side,
    /// Algorithm.
    pub algorithm: KeyAlgorithm,
    /// The secret (zeroed on drop, never printed).
    pub secret: Zeroizing<Vec<u8>>,
    /// SendID (TCP-AO; 0 for MD5).
    pub send_id: u8,
    /// RecvID (TCP-AO; 0 for MD5).
    pub recv_id: u8,
    /// Peer address the key is for.
    pub peer: IpAddr,
    /// Prefix length of `peer`.
    pub prefix: u8,
    /// MAC length in bytes (TCP-AO; 16 for MD5).
    pub maclen: u8,
    /// Whether TCP options are covered by the MAC (not `TCP_AO_KEYF_EXCLUDE_OPT`).
    pub include_options: bool,
}

impl std::fmt::Debug for RegisteredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredKey")
            .field("owner", &self.owner)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .field("send_id", &self.send_id)
            .field("recv_id", &self.recv_id)
            .field("peer", &format_args!("{}/{}", self.peer, self.prefix))
            .field("maclen", &self.maclen)
            .field("include_options", &self.include_options)
            .finish()
    }
}

impl RegisteredKey {
    /// A TCP-AO key with the kernel defaults (maclen 12, options included).
    pub fn ao(
        owner: Side,
        algorithm: KeyAlgorithm,
        secret: &[u8],
        send_id: u8,
        recv_id: u8,
        peer: IpAddr,
        prefix: u8,
    ) -> Self {
        Self {
            owner,
            algorithm,
            secret: Zeroizing::new(secret.to_vec()),
            send_id,
            recv_id,
            peer,
            prefix,
            maclen: 12,
            include_options: true,
        }
    }

    /// A TCP-MD5 key.
    pub fn md5(owner: Side, secret: &[u8], peer: IpAddr, prefix: u8) -> Self {
        Self {
            owner,
            algorithm: KeyAlgorithm::Md5,
            secret: Zeroizing::new(secret.to_vec()),
            send_id: 0,
            recv_id: 0,
            peer,
            prefix,
            maclen: 16,
            include_options: true,
        }
    }

    /// Whether `addr` is inside the key's `peer/prefix`.
    pub fn matches_peer(&self, addr: IpAddr) -> bool {
        prefix_match(self.peer, self.prefix, addr)
    }
}

/// Whether `addr` is in `net/prefix` (different families never match; the any-address with
/// prefix 0 matches everything of its family).
pub fn prefix_match(net: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    let (n, a, bits): (u128, u128, u32) = match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n).into(), u32::from(a).into(), 32),
        (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
        _ => return false,
    };
    let prefix = u32::from(prefix).min(bits);
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (n >> shift) == (a >> shift)
}

/// ISNs of a flow restored with `TCP_REPAIR`, which has no handshake in the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoredFlow {
    /// The server-side endpoint.
    pub server: (IpAddr, u16),
    /// The client-side endpoint.
    pub client: (IpAddr, u16),
    /// ISN the server sent (from its `TCP_AO_REPAIR` `snt_isn`).
    pub server_isn: u32,
    /// ISN the client sent.
    pub client_isn: u32,
    /// Next sequence number the server sends after the restore.
    pub server_next_seq: u32,
    /// Next sequence number the client sends after the restore.
    pub client_next_seq: u32,
    /// Server's send SNE at restore time.
    pub server_sne: u32,
    /// Client's send SNE at restore time.
    pub client_sne: u32,
}

/// One side's own view of a connection it restored with `TCP_REPAIR`
/// ([`Capture::register_restored_view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoredView {
    /// The side whose socket was restored: only its validator is built from `flow`.
    pub side: Side,
    /// The connection as that side restored it (ISNs, next SEQs and SNEs of both directions,
    /// as its `TCP_AO_REPAIR` and queue sequence numbers say).
    pub flow: RestoredFlow,
    /// Index of the first captured frame that may belong to the restored socket; earlier
    /// frames (same 4-tuple: the socket before the checkpoint) keep the previous view.
    /// [`Capture::register_restored_view`] sets it: it first makes every reader drain what
    /// its packet socket holds, so every segment the kernel handled before the call is
    /// before the boundary. (Until a segment verifies with this view, one that fails with it
    /// but verifies with the previous view is still taken as the old socket's.)
    pub since_frame: usize,
}

#[derive(Debug, Default)]
struct Reader {
    thread: Option<JoinHandle<io::Result<ReadResult>>>,
    /// Readers of further interfaces ([`Capture::start_loopback`]).
    extra: Vec<JoinHandle<io::Result<ReadResult>>>,
}

/// State the readers share with the test: the global frame order and drain requests.
#[derive(Debug, Default)]
struct ReaderShared {
    /// Sequence number of the next frame any reader keeps: the index it gets in `live`
    /// (readers assign it and push under `live`'s lock, so `live[i]` has sequence number i).
    next_frame: std::sync::atomic::AtomicUsize,
    /// Frames every reader kept so far, in sequence order ([`Capture::frames`] copies them).
    live: Mutex<Vec<Frame>>,
    /// Drain requests and, per reader, the last one served.
    drain: Mutex<Drain>,
    drained: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct Drain {
    requested: u64,
    served: Vec<u64>,
}

impl ReaderShared {
    /// A new reader's index.
    fn add_reader(&self) -> usize {
        let mut d = self
            .drain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let requested = d.requested;
        d.served.push(requested);
        d.served.len() - 1
    }

    fn requested(&self) -> u64 {
        self.drain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .requested
    }

    fn served(&self, reader: usize, generation: u64) {
        let mut d = self
            .drain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        d.served[reader] = d.served[reader].max(generation);
        self.drained.notify_all();
    }

    /// Ask every reader to read all its socket holds now; wait (at most `limit`) until they
    /// did. Returns whether they all did in time.
    fn drain_all(&self, limit: Duration) -> bool {
        let mut d = self
            .drain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        d.requested += 1;
        let generation = d.requested;
        let deadline = std::time::Instant::now() + limit;
        while d.served.iter().any(|s| *s < generation) {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            d = self
                .drained
                .wait_timeout(d, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }
}

#[derive(Debug, Default)]
struct ReadResult {
    truncated: usize,
    drops: Option<u32>,
}

/// The capture of one test.
#[derive(Debug)]
pub struct Capture {
    cfg: CaptureConfig,
    stop: Arc<AtomicBool>,
    shared: Arc<ReaderShared>,
    reader: Mutex<Reader>,
    keys: Mutex<Vec<RegisteredKey>>,
    restored: Mutex<Vec<RestoredFlow>>,
    views: Mutex<Vec<RestoredView>>,
    start_error: Mutex<Option<String>>,
    /// IP packets a test crafted and injected (see [`Capture::register_crafted`]).
    crafted: Mutex<Vec<Vec<u8>>>,
}

impl Capture {
    /// A capture that has not started yet.
    pub fn new(cfg: CaptureConfig) -> Self {
        Self {
            cfg,
            stop: Arc::new(AtomicBool::new(false)),
            shared: Arc::new(ReaderShared::default()),
            reader: Mutex::new(Reader::default()),
            keys: Mutex::new(Vec::new()),
            restored: Mutex::new(Vec::new()),
            views: Mutex::new(Vec::new()),
            start_error: Mutex::new(None),
            crafted: Mutex::new(Vec::new()),
        }
    }

    /// A copy of the frames captured so far by every reader, in the order they were kept (the
    /// capture keeps running). The readers first read everything their sockets hold, so every
    /// frame the kernel handled before this call is in it (a segment the kernel counted, say,
    /// is in the copy); a frame still on its way (in a qdisc, a retransmission) may not be.
    pub fn frames(&self) -> Vec<Frame> {
        let _ = self.shared.drain_all(Duration::from_secs(5));
        self.shared
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Register an IP packet (from the IP header on) that a test crafted and injected, e.g.
    /// with a deliberately wrong MAC: the cross-check does not hold it to rule 1 (it was not
    /// signed by a peer's kernel), but still counts it for rule 2.
    pub fn register_crafted(&self, ip_packet: &[u8]) {
        self.crafted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ip_packet.to_vec());
    }

    /// Register a captured IP packet that a peer's kernel signed on a path whose traffic key
    /// the cross-check cannot model, and that the test has verified itself with its own model
    /// of that path (e.g. a listener's RST, keyed from the segment it answers). Like a crafted
    /// segment, it is not held to rule 1 and teaches no ISN.
    pub fn register_modelled(&self, ip_packet: &[u8]) {
        self.register_crafted(ip_packet);
    }

    /// Open the packet socket in the calling thread's namespace (the server's) and start
    /// reading frames of interface `ifindex` in a background thread.
    ///
    /// # Errors
    /// When the socket cannot be opened (needs `CAP_NET_RAW`).
    pub fn start(&self, ifindex: u32) -> io::Result<()> {
        let sk = packet_socket()?;
        let stop = Arc::clone(&self.stop);
        let shared = Arc::clone(&self.shared);
        let id = shared.add_reader();
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || read_frames(&sk, ifindex, None, &stop, &shared, id))?;
        self.lock_reader().thread = Some(thread);
        Ok(())
    }

    /// Also capture the loopback interface `ifindex` of the calling thread's namespace
    /// (e.g. `lo` for a socket connected to itself), in a second background reader. A packet
    /// socket on `lo` sees every packet twice (sent and received copies): the sent copies are
    /// dropped with `PACKET_IGNORE_OUTGOING`. Both ends of a loopback flow belong to `owner`,
    /// so its frames are attributed to that side; register the keys with that owner.
    ///
    /// # Errors
    /// When the socket cannot be opened or configured.
    pub fn start_loopback(&self, ifindex: u32, owner: Side) -> io::Result<()> {
        let sk = packet_socket()?;
        tcpao_sys::raw::set_int_option(&sk, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)?;
        let stop = Arc::clone(&self.stop);
        let shared = Arc::clone(&self.shared);
        let id = shared.add_reader();
        let thread = std::thread::Builder::new()
            .name("capture-lo".into())
            .spawn(move || read_frames(&sk, ifindex, Some(owner), &stop, &shared, id))?;
        self.lock_reader().extra.push(thread);
        Ok(())
    }

    fn lock_reader(&self) -> std::sync::MutexGuard<'_, Reader> {
        self.reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Register a key a peer installed, for the cross-check and the keys file.
    pub fn register(&self, key: RegisteredKey) {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(key);
    }

    /// Register a flow restored with `TCP_REPAIR` (its ISNs cannot be learnt from a handshake).
    pub fn register_restored(&self, flow: RestoredFlow) {
        self.restored
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(flow);
    }

    /// Register one side's own view of a connection it restored with `TCP_REPAIR` (its
    /// ISNs, SEQs and SNEs, which may deliberately differ from the other side's, e.g. a
    /// corrupted `TCP_AO_REPAIR` image). Call it before the restored socket can send (still
    /// in repair mode): the readers first read everything their sockets hold, and segments of
    /// that 4-tuple captured from then on are checked with the view on that side
    /// (`view.since_frame` is set here). The other side keeps its own view (its handshake, or
    /// its own registered view). [`crate::repair`] registers every restore.
    pub fn register_restored_view(&self, mut view: RestoredView) {
        // Everything the kernel handled so far is in the readers' sockets: read it first. If
        // a reader does not answer in time the boundary may be early; the fallback to the
        // previous view still covers the old socket's segments.
        let _ = self.shared.drain_all(Duration::from_secs(5));
        view.since_frame = self.shared.next_frame.load(Ordering::SeqCst);
        self.views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(view);
    }

    /// Stop capturing, save the files if asked, and cross-check every segment. `mibs` are the
    /// (before, after) netns counters of the server and the client.
    pub fn finish(self, family: Family, mibs: &[Option<(NetnsMib, NetnsMib)>; 2]) -> XcheckReport {
        self.stop.store(true, Ordering::Release);
        let (thread, extra) = {
            let mut r = self.lock_reader();
            (r.thread.take(), std::mem::take(&mut r.extra))
        };
        let read = match thread.map(JoinHandle::join) {
            None => Err(self
                .start_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_else(|| "capture never started".into())),
            Some(Err(_)) => Err("the capture thread panicked".to_owned()),
            Some(Ok(Err(e))) => Err(format!("reading the capture failed: {e}")),
            Some(Ok(Ok(r))) => Ok(r),
        };
        let keys = self
            .keys
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let restored = self
            .restored
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let views = self
            .views
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut read = match read {
            Ok(r) => r,
            Err(e) => return XcheckReport::error(e),
        };
        for t in extra {
            match t.join() {
                Ok(Ok(r)) => {
                    read.truncated += r.truncated;
                    read.drops = match (read.drops, r.drops) {
                        (Some(a), Some(b)) => Some(a + b),
                        (a, b) => a.or(b),
                    };
                }
                Ok(Err(e)) => {
                    return XcheckReport::error(format!(
                        "reading the loopback capture failed: {e}"
                    ));
                }
                Err(_) => {
                    return XcheckReport::error("the loopback capture thread panicked".into());
                }
            }
        }
        // Every reader has stopped. The readers kept the frames in one list, in sequence
        // order: frame i is the one with sequence number i, which is what the restored
        // views' boundaries count.
        let frames = std::mem::take(
            &mut *self
                .shared
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let crafted = self
            .crafted
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut report = xcheck::analyze_capture(&xcheck::CaptureInput {
            family,
            frames: &frames,
            keys: &keys,
            restored: &restored,
            views: &views,
            crafted: &crafted,
            mibs,
        });
        if read.truncated > 0 {
            report.fail(format!(
                "{} captured frames were larger than {FRAME_BUFFER} bytes and truncated",
                read.truncated
            ));
        }
        match read.drops {
            Some(0) | None => {}
            Some(d) => report.fail(format!("the capture dropped {d} frames")),
        }
        if let Some(dir) = &self.cfg.save_dir {
            if let Err(e) = save(dir, &self.cfg.name, &frames, &keys, family) {
                report.fail(format!(
                    "saving the capture to {} failed: {e}",
                    dir.display()
                ));
            }
        }
        report
    }
}

/// A packet socket for every protocol, with a large receive buffer. No `SO_TIMESTAMPNS`:
/// receive timestamps would switch the kernel's `netstamp_needed_key` static branch on and off
/// (live code patching) with every capture socket; frames carry the time they were read.
fn packet_socket() -> io::Result<Socket> {
    let sk = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(Protocol::from(ETH_P_ALL_BE)),
    )?;
    // A large buffer so bursts are not dropped; RCVBUFFORCE ignores rmem_max (root).
    if setsockopt(&sk, sockopt::RcvBufForce, &(16 << 20)).is_err() {
        sk.set_recv_buffer_size(16 << 20)?;
    }
    Ok(sk)
}

/// `SOL_PACKET` (`<linux/socket.h>`).
const SOL_PACKET: i32 = 263;
/// `PACKET_IGNORE_OUTGOING` (`<linux/if_packet.h>`).
const PACKET_IGNORE_OUTGOING: i32 = 23;

fn read_frames(
    sk: &Socket,
    ifindex: u32,
    owner: Option<Side>,
    stop: &AtomicBool,
    shared: &ReaderShared,
    id: usize,
) -> io::Result<ReadResult> {
    let mut out = ReadResult::default();
    let mut buf = vec![0u8; FRAME_BUFFER];
    let mut stopping = false;
    let mut served = 0u64;
    loop {
        let wanted = shared.requested();
        if wanted > served {
            while read_one(sk, ifindex, owner, &mut buf, &mut out, shared)? {}
            served = wanted;
            shared.served(id, wanted);
        }
        let wait = if stopping {
            DRAIN_IDLE
        } else {
            Duration::from_millis(10)
        };
        let mut fds = [PollFd::new(sk.as_fd(), PollFlags::POLLIN)];
        let ready = match poll(
            &mut fds,
            PollTimeout::from(u16::try_from(wait.as_millis()).unwrap_or(10)),
        ) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if ready == 0 {
            if stopping {
                break;
            }
            stopping = stop.load(Ordering::Acquire);
            continue;
        }
        read_one(sk, ifindex, owner, &mut buf, &mut out, shared)?;
        if !stopping {
            stopping = stop.load(Ordering::Acquire);
        }
    }
    out.drops = crate::sockets::packet_drops(sk);
    Ok(out)
}

/// Read one frame without blocking; `Ok(false)` when the socket had nothing.
fn read_one(
    sk: &Socket,
    ifindex: u32,
    owner: Option<Side>,
    buf: &mut [u8],
    out: &mut ReadResult,
    shared: &ReaderShared,
) -> io::Result<bool> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<LinkAddr>(
        sk.as_raw_fd(),
        &mut iov,
        None,
        MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT,
    );
    let (len, addr) = match msg {
        Ok(m) => (m.bytes, m.address),
        Err(nix::errno::Errno::EAGAIN) => return Ok(false),
        Err(nix::errno::Errno::EINTR) => return Ok(true),
        Err(e) => return Err(e.into()),
    };
    let Some(addr) = addr else { return Ok(true) };
    if addr.ifindex() != ifindex as usize {
        return Ok(true);
    }
    if len > FRAME_BUFFER {
        out.truncated += 1;
        return Ok(true);
    }
    let from = match owner {
        Some(side) => side,
        None if addr.pkttype() == PACKET_OUTGOING => Side::Server,
        None => Side::Client,
    };
    let frame = Frame {
        ts: SystemTime::now(),
        from,
        data: buf[..len].to_vec(),
    };
    // The sequence number is taken under the lock: `live[i]` is frame number i.
    let mut live = shared
        .live
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seq = shared.next_frame.fetch_add(1, Ordering::SeqCst);
    debug_assert_eq!(seq, live.len());
    live.push(frame);
    Ok(true)
}

/// Write `frames` as a pcap file (LINKTYPE_ETHERNET, microsecond timestamps).
///
/// # Errors
/// On I/O errors.
pub fn write_pcap(mut w: impl Write, frames: &[Frame]) -> io::Result<()> {
    let mut hdr = Vec::with_capacity(24);
    hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microseconds
    hdr.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    hdr.extend_from_slice(&4u16.to_le_bytes());
    hdr.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    hdr.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    hdr.extend_from_slice(&(FRAME_BUFFER as u32).to_le_bytes()); // snaplen
    hdr.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    w.write_all(&hdr)?;
    for f in frames {
        let ts =
            f.ts.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
        let len = u32::try_from(f.data.len()).map_err(|_| io::Error::other("frame too large"))?;
        let mut rec = Vec::with_capacity(16);
        rec.extend_from_slice(
            &u32::try_from(ts.as_secs())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        rec.extend_from_slice(&ts.subsec_micros().to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        w.write_all(&rec)?;
        w.write_all(&f.data)?;
    }
    Ok(())
}

/// The keys in tcpao-verify's TOML keys format. `local` is the owner's address in `family`.
pub fn keys_toml(keys: &[RegisteredKey], family: Family) -> String {
    let mut s = String::from("# Keys the selftest installed; format of tcpao-verify.\n");
    for k in keys {
        let local = match k.owner {
            Side::Server => family.server_addr(),
            Side::Client => family.client_addr(),
        };
        s.push_str("\n[[mkt]]\n");
        s.push_str(&format!(
            "algorithm = \"{}\"\n",
            k.algorithm.keys_file_name()
        ));
        match std::str::from_utf8(&k.secret) {
            Ok(t) if !t.chars().any(|c| c.is_control() || c == '"' || c == '\\') => {
                s.push_str(&format!("secret = \"{t}\"\n"));
            }
            _ => {
                let hex: String = k.secret.iter().map(|b| format!("{b:02x}")).collect();
                s.push_str(&format!("secret_hex = \"{hex}\"\n"));
            }
        }
        if k.algorithm != KeyAlgorithm::Md5 {
            s.push_str(&format!(
                "send_id = {}\nrecv_id = {}\n",
                k.send_id, k.recv_id
            ));
        }
        s.push_str(&format!("local = \"{local}\"\n"));
        s.push_str(&format!("peer = \"{}/{}\"\n", k.peer, k.prefix));
        if k.algorithm != KeyAlgorithm::Md5 {
            s.push_str(&format!(
                "include_options = {}\nmaclen = {}\n",
                k.include_options, k.maclen
            ));
        }
    }
    s
}

fn save(
    dir: &std::path::Path,
    name: &str,
    frames: &[Frame],
    keys: &[RegisteredKey],
    family: Family,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let pcap = std::fs::File::create(dir.join(format!("{name}.pcap")))?;
    write_pcap(io::BufWriter::new(pcap), frames)?;
    std::fs::write(
        dir.join(format!("{name}.keys.toml")),
        keys_toml(keys, family),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matching() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(prefix_match(a("10.0.0.0"), 16, a("10.0.1.1")));
        assert!(!prefix_match(a("10.0.0.0"), 16, a("10.1.1.1")));
        assert!(prefix_match(a("10.0.1.1"), 32, a("10.0.1.1")));
        assert!(prefix_match(a("0.0.0.0"), 0, a("1.2.3.4")));
        assert!(!prefix_match(a("::"), 0, a("1.2.3.4")));
        assert!(prefix_match(a("2001::"), 16, a("2001:db8:1::1")));
    }

    #[test]
    fn keys_file_never_contains_debug_secret() {
        let k = RegisteredKey::ao(
            Side::Client,
            KeyAlgorithm::HmacSha1,
            b"pw\"x",
            100,
            101,
            "10.0.254.1".parse().unwrap(),
            32,
        );
        assert!(!format!("{k:?}").contains("pw"));
        let t = keys_toml(&[k], Family::Ipv4);
        assert!(t.contains("secret_hex = \"70772278\""), "{t}");
        assert!(
            t.contains("local = \"10.0.1.1\"") && t.contains("peer = \"10.0.254.1/32\""),
            "{t}"
        );
        assert!(t.contains("send_id = 100\nrecv_id = 101"), "{t}");
    }

    #[test]
    fn pcap_layout() {
        let f = Frame {
            ts: SystemTime::UNIX_EPOCH + Duration::from_micros(1_500_000),
            from: Side::Server,
            data: vec![1, 2, 3],
        };
        let mut out = Vec::new();
        write_pcap(&mut out, &[f]).unwrap();
        assert_eq!(out.len(), 24 + 16 + 3);
        assert_eq!(&out[24..28], &1u32.to_le_bytes());
        assert_eq!(&out[28..32], &500_000u32.to_le_bytes());
        assert_eq!(&out[40..], &[1, 2, 3]);
    }
}

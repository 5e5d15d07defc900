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

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tcpao_refimpl::capture::writer::{ByteOrder, PcapWriter};
use tcpao_refimpl::capture::{LinkType, Timestamp};
use tcpao_refimpl::verify::keys::{EntryKey, FlowHint, KeyEntry, KeysFile, Prefix};
use tcpao_sys::packet::{Layer, PacketSocket};
use zeroize::Zeroizing;

use crate::counters::NetnsMib;
use crate::topology::{Family, Side};

pub use xcheck::XcheckReport;
pub use xcheck::fields::AoIds;

/// Largest frame we accept; bigger ones are reported as truncated.
pub const FRAME_BUFFER: usize = 256 * 1024;
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

/// A key a peer installed, as its keys-file entry: the key and its `local` (the owner's
/// address) and `peer` scope. [`Capture::register`] takes it with the side that holds it.
pub fn key_entry(key: EntryKey, local: IpAddr, peer: IpAddr, prefix: u8) -> KeyEntry {
    KeyEntry {
        index: 0,
        key,
        local: Some(local),
        peer: Prefix::new(peer, prefix).ok(),
    }
}

/// A TCP-AO key a peer installed whose algorithm tcpao-refimpl does not implement
/// ([`Capture::register_unverifiable`]): its MAC cannot be checked, its identifiers can (rule 3
/// of the cross-check). Not written to the keys file, which needs an algorithm it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnverifiableKey {
    /// The peers the key is for.
    pub peer: Prefix,
    /// Its SendID, RecvID and MAC length.
    pub ids: AoIds,
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
    /// before the boundary.
    pub since_frame: usize,
    /// Every reader drained in time, so the boundary is exact: no frame from `since_frame` on
    /// was handled by the old socket. When it is not, then until a segment verifies with this
    /// view, one that fails with it but verifies with the previous view is still taken as the
    /// old socket's (in both directions, which can hide a segment the new view rightly
    /// rejects: so only then).
    pub exact: bool,
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
    keys: Mutex<Vec<(Side, KeyEntry)>>,
    /// TCP-AO keys the reference cannot verify ([`Capture::register_unverifiable`]).
    unverifiable: Mutex<Vec<(Side, UnverifiableKey)>>,
    /// The keys file's `[[flow]]` entry ([`Capture::register_flow_hint`]).
    flow_hint: Mutex<Option<FlowHint>>,
    /// Save without the handshake ([`Capture::save_without_handshake`]).
    omit_handshake: AtomicBool,
    restored: Mutex<Vec<RestoredFlow>>,
    views: Mutex<Vec<RestoredView>>,
    start_error: Mutex<Option<String>>,
    /// IP packets a test crafted and injected (see [`Capture::register_crafted`]).
    crafted: Mutex<Vec<Vec<u8>>>,
    /// IP packets a test injected that it expects to verify ([`Capture::register_injected`]).
    injected: Mutex<Vec<Vec<u8>>>,
    /// Of `crafted`, the kernel-signed ones ([`Capture::register_modelled`]).
    modelled: Mutex<Vec<Vec<u8>>>,
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
            unverifiable: Mutex::new(Vec::new()),
            flow_hint: Mutex::new(None),
            omit_handshake: AtomicBool::new(false),
            restored: Mutex::new(Vec::new()),
            views: Mutex::new(Vec::new()),
            start_error: Mutex::new(None),
            crafted: Mutex::new(Vec::new()),
            injected: Mutex::new(Vec::new()),
            modelled: Mutex::new(Vec::new()),
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

    /// Register an IP packet (from the IP header on) that a test built and injected and that
    /// it expects to verify, signed as the peer's kernel would sign it: the cross-check holds
    /// it to rule 1 (the MAC) but not to rule 3 (the fields: no peer's kernel wrote them, and
    /// a test may sign with a key the sending peer never installed).
    pub fn register_injected(&self, ip_packet: &[u8]) {
        self.injected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ip_packet.to_vec());
    }

    /// Register a captured IP packet that a peer's kernel signed on a path whose traffic key
    /// the cross-check cannot model, and that the test has verified itself with its own model
    /// of that path (e.g. a listener's RST, keyed from the segment it answers). Like a crafted
    /// segment, it is not held to rule 1 and teaches no ISN; unlike one, it is held to rule 3
    /// (its fields: a peer's kernel wrote them).
    pub fn register_modelled(&self, ip_packet: &[u8]) {
        self.register_crafted(ip_packet);
        self.modelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ip_packet.to_vec());
    }

    /// Register a captured IP packet a peer's kernel signed wrongly in a way the test itself
    /// asserts and reports as a known kernel bug (`XFAIL`): like a crafted segment, it is held
    /// to neither rule 1 nor rule 3 (the test's own verdict covers it; the cross-check would
    /// turn the `XFAIL` into a failure). Every use names the kernel bug it stands for.
    pub fn register_known_bug(&self, ip_packet: &[u8]) {
        self.modelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|m| m.as_slice() != ip_packet);
        let mut crafted = self
            .crafted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !crafted.iter().any(|c| c.as_slice() == ip_packet) {
            crafted.push(ip_packet.to_vec());
        }
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
        sk.set_ignore_outgoing(true)?;
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

    /// Register a key `owner` installed, for the cross-check and the keys file.
    pub fn register(&self, owner: Side, entry: KeyEntry) {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((owner, entry));
    }

    /// Register a TCP-AO key `owner` installed whose algorithm tcpao-refimpl does not
    /// implement, or that the test keeps out of the saved keys file: the cross-check then knows
    /// its KeyIDs and MAC length (rule 3) but does not verify its MACs.
    pub fn register_unverifiable(&self, owner: Side, key: UnverifiableKey) {
        self.unverifiable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((owner, key));
    }

    /// Write `hint` (the connection's ISNs and SNEs) as the `[[flow]]` entry of the saved keys
    /// file, for a capture whose handshake tcpao-verify will not see.
    pub fn register_flow_hint(&self, hint: FlowHint) {
        *self
            .flow_hint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hint);
    }

    /// Save the capture without its three-way handshake (its first three TCP segments, which
    /// must be SYN, SYN-ACK and ACK), as a capture that starts mid-connection.
    pub fn save_without_handshake(&self) {
        self.omit_handshake.store(true, Ordering::Relaxed);
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
    /// corrupted `TCP_AO_REPAIR` image). Call it before the restored socket is in the hash
    /// tables (before its `connect()`), so that it can neither send nor receive yet: the
    /// readers first read everything their sockets hold, and segments of
    /// that 4-tuple captured from then on are checked with the view on that side
    /// (`view.since_frame` is set here). The other side keeps its own view (its handshake, or
    /// its own registered view). [`crate::repair`] registers every restore.
    pub fn register_restored_view(&self, mut view: RestoredView) {
        // Everything the kernel handled so far is in the readers' sockets: read it first. If
        // a reader does not answer in time the boundary may be early; the fallback to the
        // previous view then covers the old socket's segments.
        view.exact = self.shared.drain_all(Duration::from_secs(5));
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
        let unverifiable = self
            .unverifiable
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
        let injected = self
            .injected
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let modelled = self
            .modelled
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut report = xcheck::analyze_capture(&xcheck::CaptureInput {
            family,
            frames: &frames,
            keys: &keys,
            restored: &restored,
            views: &views,
            unverifiable: &unverifiable,
            crafted: &crafted,
            injected: &injected,
            modelled: &modelled,
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
        let hint = self
            .flow_hint
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(dir) = &self.cfg.save_dir {
            let omit = self.omit_handshake.load(Ordering::Relaxed);
            if let Err(e) = save(dir, &self.cfg.name, &frames, omit, &keys, hint) {
                report.fail(format!(
                    "saving the capture to {} failed: {e}",
                    dir.display()
                ));
            }
        }
        report
    }
}

/// A packet socket for every protocol, with a large receive buffer so bursts are not
/// dropped. No `SO_TIMESTAMPNS`: receive timestamps would switch the kernel's
/// `netstamp_needed_key` static branch on and off (live code patching) with every capture
/// socket; frames carry the time they were read.
fn packet_socket() -> io::Result<PacketSocket> {
    PacketSocket::open(Layer::Link, 16 << 20)
}

fn read_frames(
    sk: &PacketSocket,
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
            while read_one(
                sk,
                ifindex,
                owner,
                &mut buf,
                &mut out,
                shared,
                Duration::ZERO,
            )? {}
            served = wanted;
            shared.served(id, wanted);
        }
        let wait = if stopping {
            DRAIN_IDLE
        } else {
            Duration::from_millis(10)
        };
        if !read_one(sk, ifindex, owner, &mut buf, &mut out, shared, wait)? {
            if stopping {
                break;
            }
            stopping = stop.load(Ordering::Acquire);
            continue;
        }
        if !stopping {
            stopping = stop.load(Ordering::Acquire);
        }
    }
    out.drops = sk.drops().ok();
    Ok(out)
}

/// Read one frame, waiting at most `wait`; `Ok(false)` when none came.
fn read_one(
    sk: &PacketSocket,
    ifindex: u32,
    owner: Option<Side>,
    buf: &mut [u8],
    out: &mut ReadResult,
    shared: &ReaderShared,
    wait: Duration,
) -> io::Result<bool> {
    let Some(got) = sk.recv(buf, wait)? else {
        return Ok(false);
    };
    if got.ifindex != ifindex {
        return Ok(true);
    }
    let len = got.len;
    if len > FRAME_BUFFER {
        out.truncated += 1;
        return Ok(true);
    }
    let from = match owner {
        Some(side) => side,
        None if got.outgoing => Side::Server,
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

/// Write `frames` as a pcap file (LINKTYPE_ETHERNET, microsecond timestamps), with
/// tcpao-refimpl's writer.
///
/// # Errors
/// On I/O errors.
pub fn write_pcap(w: impl Write, frames: &[Frame]) -> io::Result<()> {
    let mut out = PcapWriter::new(
        w,
        ByteOrder::Little,
        false,
        LinkType::Ethernet,
        FRAME_BUFFER as u32,
    )?;
    for f in frames {
        let t =
            f.ts.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
        let ts = Timestamp {
            secs: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            nanos: t.subsec_nanos(),
        };
        out.write_frame(ts, &f.data)?;
    }
    out.finish().map(drop)
}

/// The keys in tcpao-verify's keys format, in registration order, with `hint` as the
/// `[[flow]]` entry.
///
/// # Errors
/// The TOML serializer failed.
pub fn keys_file(keys: &[(Side, KeyEntry)], hint: Option<FlowHint>) -> io::Result<String> {
    let file = KeysFile {
        mkts: keys
            .iter()
            .enumerate()
            .map(|(i, (_, e))| KeyEntry {
                index: i + 1,
                ..e.clone()
            })
            .collect(),
        flows: hint.into_iter().collect(),
        warnings: Vec::new(),
    };
    let toml = file.to_toml().map_err(io::Error::other)?;
    Ok(format!(
        "# Keys the selftest installed; format of tcpao-verify.\n\n{}",
        toml.as_str()
    ))
}

/// The frames after the three-way handshake of the capture's one connection.
fn after_handshake(frames: &[Frame]) -> io::Result<&[Frame]> {
    let mut seen = 0;
    for (i, f) in frames.iter().enumerate() {
        let Ok(Some(seg)) = xcheck::decode(f) else {
            continue;
        };
        let t = seg.tcp_packet();
        let handshake = match seen {
            0 => t.syn() && !t.ack(),
            1 => t.syn() && t.ack(),
            _ => !t.syn() && t.ack() && t.payload().is_empty(),
        };
        if !handshake {
            return Err(io::Error::other(format!(
                "TCP segment {} of the capture is not part of the handshake",
                seen + 1
            )));
        }
        seen += 1;
        if seen == 3 {
            return Ok(&frames[i + 1..]);
        }
    }
    Err(io::Error::other("the capture has no complete handshake"))
}

fn save(
    dir: &std::path::Path,
    name: &str,
    frames: &[Frame],
    omit_handshake: bool,
    keys: &[(Side, KeyEntry)],
    hint: Option<FlowHint>,
) -> io::Result<()> {
    let frames = if omit_handshake {
        after_handshake(frames)?
    } else {
        frames
    };
    std::fs::create_dir_all(dir)?;
    let pcap = std::fs::File::create(dir.join(format!("{name}.pcap")))?;
    write_pcap(io::BufWriter::new(pcap), frames)?;
    let text = Zeroizing::new(keys_file(keys, hint)?);
    std::fs::write(dir.join(format!("{name}.keys.toml")), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_file_holds_the_registered_keys_and_never_a_debug_secret() {
        let mkt = tcpao_refimpl::Mkt::new(100, 101, tcpao_refimpl::Algorithm::HmacSha1, "pw\"x");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let k = key_entry(EntryKey::Ao(mkt), ip("10.0.1.1"), ip("10.0.254.1"), 32);
        assert!(!format!("{k:?}").contains("pw"));
        let hint = FlowHint {
            index: 1,
            client: "10.0.1.1:40000".parse().unwrap(),
            server: "10.0.254.1:7010".parse().unwrap(),
            client_isn: 1,
            server_isn: 2,
            client_sne: 0,
            server_sne: 0,
        };
        let t = keys_file(&[(Side::Client, k)], Some(hint)).unwrap();
        assert!(t.contains("secret_hex = \"70772278\""), "{t}");
        assert!(
            t.contains("local = \"10.0.1.1\"") && t.contains("peer = \"10.0.254.1/32\""),
            "{t}"
        );
        assert!(t.contains("send_id = 100\nrecv_id = 101"), "{t}");
        let back = KeysFile::parse(&t).unwrap();
        assert_eq!(back.flows, [hint]);
        assert_eq!(back.mkts[0].index, 1);
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

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Live capture: read TCP-AO and TCP-MD5 segments from a network interface and verify them
//! as they arrive (`tcpao-verify --live IFACE`).
//!
//! [`LiveCapture`] opens an `AF_PACKET`/`SOCK_DGRAM` socket (network-layer packets, the same
//! whatever the link type) with [`socket2`], attaches the classic BPF program of [`bpf`]
//! (only TCP segments carrying option 19 or 29, or the ports/hosts asked for), and only then
//! lets [`pnet_datalink`] bind it to the interface (by index) and read from it, so no
//! packet of another interface or outside the filter is ever queued. The socket's protocol is
//! 0 until that bind, so nothing arrives before the filter is in place.
//!
//! [`LiveVerifier`] feeds each packet to the offline checker
//! ([`crate::verify::Checker::process`], the same code that reads files), optionally writes it
//! to a pcap file (raw IP, nanosecond timestamps) with [`super::writer::PcapWriter`], and
//! reports [`LiveEvent`]s: a flow's first good segment, its first failing one, and a KeyID
//! change of either sender. The verdict of each segment is the one counter of the checker
//! that moved, so the live and the offline report are the same function of the same frames:
//! reading the written file afterwards gives the same verdicts.
//!
//! Limits: packets are timestamped when read (not by the kernel); the kernel's drop counter
//! (`PACKET_STATISTICS`) is not read, so a receive buffer overrun would go unnoticed (the
//! buffer is 32 MiB; see `docs/verify.md`).

pub mod bpf;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use pnet_datalink::{Channel, Config, DataLinkReceiver, NetworkInterface};
use socket2::{Domain, SockFilter, Socket, Type};

use super::writer::{ByteOrder, PcapWriter};
use super::{Frame, LinkType, Timestamp};
use crate::verify::keys::KeysFile;
use crate::verify::{Checker, Counts, Options, Report, Verdict};
use crate::wire::SegmentRef;

pub use bpf::{FilterSpec, SNAPLEN};

/// Size of the packet socket's receive buffer.
pub const RECV_BUFFER: usize = 32 << 20;
/// How long one read waits before the caller may check for Ctrl-C or the end of the run.
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Link type of the written capture: raw IP (`LINKTYPE_RAW`), as the socket delivers it.
pub const LIVE_LINK_TYPE: LinkType = LinkType::Raw(101);
/// Flows whose state changes are followed at once; beyond it the oldest are forgotten (their
/// verdicts still count, only their state-change lines may repeat).
pub const MAX_WATCHED_FLOWS: usize = 65_536;

/// A live capture that cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// There is no such interface in this network namespace.
    #[error("no interface named {name:?} here (interfaces: {available})")]
    NoSuchInterface {
        /// The name asked for.
        name: String,
        /// The interfaces there are.
        available: String,
    },
    /// Packet sockets need `CAP_NET_RAW`.
    #[error("opening a packet socket needs CAP_NET_RAW (run as root): {0}")]
    Permission(#[source] io::Error),
    /// The filter could not be built.
    #[error("capture filter: {0}")]
    Filter(#[from] bpf::FilterError),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> LiveError {
    move |source| {
        if source.kind() == io::ErrorKind::PermissionDenied {
            LiveError::Permission(source)
        } else {
            LiveError::Io { what, source }
        }
    }
}

/// One packet read from the interface.
#[derive(Debug, Clone, Copy)]
pub struct LivePacket<'a> {
    /// When it was read.
    pub timestamp: Timestamp,
    /// The IP packet.
    pub data: &'a [u8],
}

/// The capture side: a filtered packet socket bound to one interface.
pub struct LiveCapture {
    iface: NetworkInterface,
    rx: Box<dyn DataLinkReceiver>,
    filter: FilterSpec,
    instructions: usize,
}

impl fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveCapture")
            .field("iface", &self.iface.name)
            .field("ifindex", &self.iface.index)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

/// Now, as a capture timestamp.
pub fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos(),
    }
}

impl LiveCapture {
    /// Open a capture on interface `name` of the calling thread's network namespace, keeping
    /// what `filter` selects. On a loopback interface the sent copy of each packet is dropped
    /// (every packet would be seen twice).
    ///
    /// # Errors
    /// No such interface, no `CAP_NET_RAW`, or a failing system call.
    pub fn open(name: &str, filter: &FilterSpec) -> Result<Self, LiveError> {
        let all = pnet_datalink::interfaces();
        let Some(iface) = all.iter().find(|i| i.name == name).cloned() else {
            let mut names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
            names.sort_unstable();
            return Err(LiveError::NoSuchInterface {
                name: name.to_owned(),
                available: if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                },
            });
        };
        let mut filter = filter.clone();
        filter.drop_outgoing |= iface.is_loopback();
        let prog = bpf::program(&filter)?;
        // Protocol 0: the socket receives nothing until it is bound, so the filter is in
        // place before the first packet is queued.
        let sk = Socket::new(Domain::PACKET, Type::DGRAM, None).map_err(io_err("socket"))?;
        let insns: Vec<SockFilter> = prog
            .iter()
            .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
            .collect();
        sk.attach_filter(&insns)
            .map_err(io_err("attaching the BPF filter"))?;
        // SO_RCVBUFFORCE passes net.core.rmem_max (root); fall back to SO_RCVBUF.
        if nix::sys::socket::setsockopt(&sk, nix::sys::socket::sockopt::RcvBufForce, &RECV_BUFFER)
            .is_err()
        {
            sk.set_recv_buffer_size(RECV_BUFFER)
                .map_err(io_err("SO_RCVBUF"))?;
        }
        let cfg = Config {
            read_buffer_size: SNAPLEN as usize,
            read_timeout: Some(READ_TIMEOUT),
            socket_fd: Some(sk.into_raw_fd()),
            ..Config::default()
        };
        // pnet binds the socket to the interface (ETH_P_ALL, ifindex) and owns it from here.
        let rx = match pnet_datalink::channel(&iface, cfg) {
            Ok(Channel::Ethernet(_tx, rx)) => rx,
            Ok(_) => {
                return Err(LiveError::Io {
                    what: "opening the capture channel",
                    source: io::Error::other("pnet returned an unknown channel type"),
                });
            }
            Err(e) => return Err(io_err("binding the packet socket to the interface")(e)),
        };
        Ok(LiveCapture {
            iface,
            rx,
            instructions: prog.len(),
            filter,
        })
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.iface.name
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.iface.index
    }

    /// The filter in use (with `drop_outgoing` set on loopback interfaces).
    pub fn filter(&self) -> &FilterSpec {
        &self.filter
    }

    /// Length of the BPF program.
    pub fn filter_len(&self) -> usize {
        self.instructions
    }

    /// The next packet, or `None` when none came within [`READ_TIMEOUT`] (or a signal
    /// interrupted the wait).
    ///
    /// # Errors
    /// The socket failed.
    pub fn next_packet(&mut self) -> Result<Option<LivePacket<'_>>, LiveError> {
        match self.rx.next() {
            Ok(data) => Ok(Some(LivePacket {
                timestamp: now(),
                data,
            })),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(io_err("reading the packet socket")(e)),
        }
    }
}

/// A change in a flow's state, reported as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// The flow's first segment that verified.
    FirstGood {
        /// The flow: first sender, receiver.
        flow: (SocketAddr, SocketAddr),
        /// Frame number.
        frame: u64,
        /// Seconds since the capture started.
        at: f64,
        /// KeyID and RNextKeyID (TCP-AO), `None` for TCP-MD5.
        key: Option<(u8, u8)>,
    },
    /// The flow's first segment with a failing verdict.
    FirstFailure {
        /// The flow.
        flow: (SocketAddr, SocketAddr),
        /// Frame number.
        frame: u64,
        /// Seconds since the capture started.
        at: f64,
        /// The segment's sender and receiver.
        segment: (SocketAddr, SocketAddr),
        /// The verdict's report name (`bad`, `key_not_found`, `unsigned`, `md5_bad`).
        verdict: &'static str,
        /// Its KeyID, if it had a TCP-AO option.
        key_id: Option<u8>,
    },
    /// A sender started using another KeyID (or RNextKeyID).
    KeyChange {
        /// The flow.
        flow: (SocketAddr, SocketAddr),
        /// Frame number.
        frame: u64,
        /// Seconds since the capture started.
        at: f64,
        /// The sender.
        sender: SocketAddr,
        /// KeyID and RNextKeyID before.
        from: (u8, u8),
        /// KeyID and RNextKeyID now.
        to: (u8, u8),
    },
}

impl fmt::Display for LiveEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveEvent::FirstGood {
                flow,
                frame,
                at,
                key,
            } => {
                write!(
                    f,
                    "+{at:.3}s flow {} -> {}: first good segment (frame {frame}",
                    flow.0, flow.1
                )?;
                match key {
                    Some((k, r)) => write!(f, ", KeyID {k}, RNextKeyID {r})"),
                    None => write!(f, ", TCP-MD5)"),
                }
            }
            LiveEvent::FirstFailure {
                flow,
                frame,
                at,
                segment,
                verdict,
                key_id,
            } => {
                write!(
                    f,
                    "+{at:.3}s flow {} -> {}: first failing segment: {} (frame {frame}, {} -> {}",
                    flow.0,
                    flow.1,
                    verdict.replace('_', " "),
                    segment.0,
                    segment.1
                )?;
                if let Some(k) = key_id {
                    write!(f, ", KeyID {k}")?;
                }
                write!(f, "); the report gives the reason")
            }
            LiveEvent::KeyChange {
                flow,
                frame,
                at,
                sender,
                from,
                to,
            } => write!(
                f,
                "+{at:.3}s flow {} -> {}: {} now sends KeyID {} RNextKeyID {} (was {} / {}, frame {frame})",
                flow.0,
                flow.1,
                sender.ip(),
                to.0,
                to.1,
                from.0,
                from.1
            ),
        }
    }
}

type FlowKey = (SocketAddr, SocketAddr);

/// What the live verifier remembers of a flow to notice its state changes.
#[derive(Debug, Clone)]
struct FlowWatch {
    /// First sender, receiver.
    ends: FlowKey,
    /// ISN of the SYN that opened the flow, so that a new connection on the same 4-tuple
    /// starts a new watch (as the checker starts a new flow).
    syn_seq: Option<u32>,
    good: bool,
    failed: bool,
    /// Last (KeyID, RNextKeyID) per end (`ends.0`, `ends.1`).
    keys: [Option<(u8, u8)>; 2],
    last: u64,
}

/// What the checker concluded about the segment it was just fed, read from the counts that
/// moved (the checker keeps no per-segment record unless asked to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Moved {
    /// The verdict's report name (`good`, `bad`, `md5_good`, ...).
    name: &'static str,
    /// Whether it makes a capture check fail.
    failure: bool,
}

fn moved(before: &Counts, after: &Counts) -> Option<Moved> {
    let name = Verdict::NAMES
        .into_iter()
        .find(|n| after.named(n) > before.named(n))?;
    Some(Moved {
        name,
        failure: after.failures() > before.failures(),
    })
}

/// The verifying side: the offline checker fed packet by packet, an optional pcap writer,
/// and the flows' state for [`LiveEvent`]s.
pub struct LiveVerifier<'k> {
    checker: Checker<'k>,
    name: String,
    frames: u64,
    bytes: u64,
    started: Option<Timestamp>,
    writer: Option<PcapWriter<BufWriter<File>>>,
    write_error: Option<io::Error>,
    watch: HashMap<FlowKey, FlowWatch>,
}

impl fmt::Debug for LiveVerifier<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveVerifier")
            .field("name", &self.name)
            .field("frames", &self.frames)
            .field("flows", &self.watch.len())
            .finish_non_exhaustive()
    }
}

impl<'k> LiveVerifier<'k> {
    /// A verifier with the keys of `keys`; `name` names the capture in the report (for
    /// example `live:eth0`).
    pub fn new(keys: &'k KeysFile, opts: Options, name: &str) -> Self {
        LiveVerifier {
            checker: Checker::new(keys, opts),
            name: name.to_owned(),
            frames: 0,
            bytes: 0,
            started: None,
            writer: None,
            write_error: None,
            watch: HashMap::new(),
        }
    }

    /// Also write every packet to a pcap file at `path` (raw IP, nanosecond timestamps).
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn write_to(&mut self, path: &Path) -> io::Result<()> {
        let f = BufWriter::new(File::create(path)?);
        self.writer = Some(PcapWriter::new(
            f,
            ByteOrder::Little,
            true,
            LIVE_LINK_TYPE,
            SNAPLEN,
        )?);
        Ok(())
    }

    /// Packets fed so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Totals so far.
    pub fn counts(&self) -> &Counts {
        self.checker.counts()
    }

    /// Check one IP packet read at `ts`; state changes are appended to `events`.
    pub fn feed(&mut self, ts: Timestamp, ip: &[u8], events: &mut Vec<LiveEvent>) {
        self.frames += 1;
        let started = *self.started.get_or_insert(ts);
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.write_frame(ts, ip) {
                self.write_error.get_or_insert(e);
                self.writer = None;
            }
        }
        let len = u32::try_from(ip.len()).unwrap_or(u32::MAX);
        let frame = Frame {
            number: self.frames,
            offset: self.bytes,
            timestamp: ts,
            link_type: LIVE_LINK_TYPE,
            ip,
            orig_len: len,
            cap_len: len,
        };
        self.bytes += u64::from(len);
        let before = *self.checker.counts();
        self.checker.process(&frame);
        let verdict = moved(&before, self.checker.counts());
        if let Some(v) = verdict {
            let at = (ts.as_f64() - started.as_f64()).max(0.0);
            self.observe(ip, v, at, events);
        }
    }

    fn observe(&mut self, ip: &[u8], v: Moved, at: f64, events: &mut Vec<LiveEvent>) {
        let Ok(seg) = SegmentRef::parse(ip) else {
            return;
        };
        let tcp = seg.tcp_packet();
        let src = SocketAddr::new(seg.src, tcp.src_port());
        let dst = SocketAddr::new(seg.dst, tcp.dst_port());
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        let syn_only = tcp.syn() && !tcp.ack();
        let stale = self
            .watch
            .get(&key)
            .is_some_and(|w| syn_only && w.syn_seq.is_some_and(|s| s != tcp.seq_number()));
        if stale {
            self.watch.remove(&key);
        }
        if !self.watch.contains_key(&key) && self.watch.len() >= MAX_WATCHED_FLOWS {
            // Forget the least recently seen half.
            let mut ages: Vec<u64> = self.watch.values().map(|w| w.last).collect();
            let mid = ages.len() / 2;
            let (_, &mut cut, _) = ages.select_nth_unstable(mid);
            self.watch.retain(|_, w| w.last > cut);
        }
        let frame = self.frames;
        let w = self.watch.entry(key).or_insert_with(|| FlowWatch {
            ends: (src, dst),
            syn_seq: None,
            good: false,
            failed: false,
            keys: [None, None],
            last: frame,
        });
        w.last = frame;
        if syn_only {
            w.syn_seq = Some(tcp.seq_number());
        }
        let ao = tcp
            .ao_option()
            .ok()
            .flatten()
            .map(|o| (o.key_id, o.rnext_key_id));
        let flow = w.ends;
        if matches!(v.name, "good" | "md5_good") && !w.good {
            w.good = true;
            events.push(LiveEvent::FirstGood {
                flow,
                frame,
                at,
                key: ao,
            });
        }
        if let Some(k) = ao {
            let side = usize::from(src != w.ends.0);
            match w.keys[side] {
                Some(old) if old != k => events.push(LiveEvent::KeyChange {
                    flow,
                    frame,
                    at,
                    sender: src,
                    from: old,
                    to: k,
                }),
                _ => {}
            }
            w.keys[side] = Some(k);
        }
        if v.failure && !w.failed {
            w.failed = true;
            events.push(LiveEvent::FirstFailure {
                flow,
                frame,
                at,
                segment: (src, dst),
                verdict: v.name,
                key_id: ao.map(|k| k.0),
            });
        }
    }

    /// The report, as `tcpao-verify` gives it for a file: the capture is named after the
    /// interface. Flushes the written file.
    ///
    /// # Errors
    /// Writing the capture file failed (at any point of the run); the report is lost only in
    /// that the caller should say the file is incomplete, so it is returned with the error.
    pub fn finish(self) -> (Report, Option<io::Error>) {
        let mut write_error = self.write_error;
        if let Some(w) = self.writer {
            if let Err(e) = w.finish().and_then(|mut b| io::Write::flush(&mut b)) {
                write_error.get_or_insert(e);
            }
        }
        let mut rep = self.checker.finish();
        rep.frames = self.frames;
        rep.captures = vec![self.name.clone()];
        for f in &mut rep.flows {
            f.capture.clone_from(&self.name);
        }
        (rep, write_error)
    }
}

/// Longest time [`run`] keeps reading what is queued once asked to stop.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Read packets from `cap` into `v` until `stop` returns true (it is asked, with the
/// verifier so far, after every packet and at least every [`READ_TIMEOUT`]); every state
/// change goes to `on_event`. Then read what the socket already holds, until it stays empty
/// for [`READ_TIMEOUT`] (at most [`DRAIN_LIMIT`]), so that segments the kernel handled before
/// the stop are counted.
///
/// # Errors
/// The capture socket failed; everything read before is in `v`.
pub fn run(
    cap: &mut LiveCapture,
    v: &mut LiveVerifier<'_>,
    mut stop: impl FnMut(&LiveVerifier<'_>) -> bool,
    mut on_event: impl FnMut(&LiveEvent),
) -> Result<(), LiveError> {
    let mut events = Vec::new();
    let mut feed = |v: &mut LiveVerifier<'_>, p: LivePacket<'_>| {
        v.feed(p.timestamp, p.data, &mut events);
        for e in events.drain(..) {
            on_event(&e);
        }
    };
    while !stop(v) {
        if let Some(p) = cap.next_packet()? {
            feed(v, p);
        }
    }
    let until = Instant::now() + DRAIN_LIMIT;
    while Instant::now() < until {
        match cap.next_packet()? {
            Some(p) => feed(v, p),
            None => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{Auth, IpHeader, build_segment};
    use crate::wire::{TcpFlags, TcpRepr};
    use crate::{Algorithm, Connection, Mkt, TrafficKeys};

    const KEYS: &str = r#"
[[mkt]]
algorithm = "hmac-sha256"
secret = "tcpao-interop-k1"
send_id = 1
recv_id = 2
local = "10.0.0.1"

[[mkt]]
algorithm = "hmac-sha256"
secret = "tcpao-interop-k1"
send_id = 3
recv_id = 4
local = "10.0.0.1"
"#;

    /// A segment from 10.0.0.1 (or back) signed with SendID `id`, sequence `seq`.
    fn seg(
        from_a: bool,
        flags: TcpFlags,
        seq: u32,
        ack: u32,
        id: u8,
        rnext: u8,
        good: bool,
    ) -> Vec<u8> {
        let a: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:179".parse().unwrap();
        let (s, d, isn_s, isn_d) = if from_a {
            (a, b, 100, 200)
        } else {
            (b, a, 200, 100)
        };
        let syn_only = flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK);
        let isn_d = if syn_only { 0 } else { isn_d };
        let secret = if good { "tcpao-interop-k1" } else { "wrong" };
        let mkt = Mkt::new(id, rnext, Algorithm::HmacSha256, secret);
        let keys = TrafficKeys::derive(&mkt, &Connection::new(s, d, isn_s, isn_d)).unwrap();
        let sign = crate::sign::AoSign::from_mkt(&mkt, &keys.send_other, 0);
        let repr = TcpRepr {
            src_port: s.port(),
            dst_port: d.port(),
            seq_number: seq,
            ack_number: ack,
            flags,
            window_len: 512,
            urgent_at: 0,
            options: &[],
            payload: &[],
        };
        build_segment(&IpHeader::new(s.ip(), d.ip()), &repr, &Auth::Ao(sign)).unwrap()
    }

    #[test]
    fn events_follow_the_first_good_a_key_change_and_the_first_failure() {
        let keys = KeysFile::parse(KEYS).unwrap();
        let mut v = LiveVerifier::new(&keys, Options::default(), "live:test");
        let mut ev = Vec::new();
        let ts = |s| Timestamp { secs: s, nanos: 0 };
        let (syn, ack) = (TcpFlags::SYN, TcpFlags::ACK);
        v.feed(ts(10), &seg(true, syn, 100, 0, 1, 2, true), &mut ev);
        v.feed(
            ts(10),
            &seg(false, syn | ack, 200, 101, 2, 1, true),
            &mut ev,
        );
        v.feed(ts(11), &seg(true, ack, 101, 201, 1, 2, true), &mut ev);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(matches!(
            ev[0],
            LiveEvent::FirstGood {
                frame: 1,
                key: Some((1, 2)),
                ..
            }
        ));
        v.feed(ts(12), &seg(true, ack, 101, 201, 3, 4, true), &mut ev);
        assert!(
            matches!(
                ev[1],
                LiveEvent::KeyChange {
                    frame: 4,
                    from: (1, 2),
                    to: (3, 4),
                    ..
                }
            ),
            "{ev:?}"
        );
        v.feed(ts(13), &seg(false, ack, 201, 101, 4, 3, false), &mut ev);
        v.feed(ts(13), &seg(false, ack, 201, 101, 4, 3, false), &mut ev);
        assert_eq!(ev.len(), 4, "{ev:?}");
        assert!(matches!(
            ev[2],
            LiveEvent::KeyChange {
                from: (2, 1),
                to: (4, 3),
                ..
            }
        ));
        assert!(matches!(
            ev[3],
            LiveEvent::FirstFailure {
                frame: 5,
                verdict: "bad",
                key_id: Some(4),
                ..
            }
        ));
        assert!(
            ev[3]
                .to_string()
                .contains("first failing segment: bad (frame 5")
        );
        let (rep, err) = v.finish();
        assert!(err.is_none());
        assert_eq!((rep.counts.good(), rep.counts.bad(), rep.frames), (4, 2, 6));
        assert_eq!(rep.captures, vec!["live:test".to_owned()]);
        assert_eq!(rep.flows[0].capture, "live:test");
    }

    #[test]
    fn a_new_syn_on_the_same_ports_starts_a_new_flow() {
        let keys = KeysFile::parse(KEYS).unwrap();
        let mut v = LiveVerifier::new(&keys, Options::default(), "live:test");
        let mut ev = Vec::new();
        let t = Timestamp { secs: 1, nanos: 0 };
        v.feed(t, &seg(true, TcpFlags::SYN, 100, 0, 1, 2, true), &mut ev);
        v.feed(t, &seg(true, TcpFlags::SYN, 100, 0, 1, 2, true), &mut ev);
        assert_eq!(ev.len(), 1, "a retransmitted SYN is the same flow");
        v.feed(t, &seg(true, TcpFlags::SYN, 5000, 0, 1, 2, true), &mut ev);
        assert_eq!(ev.len(), 2, "another ISN is a new flow: {ev:?}");
    }

    #[test]
    fn packets_that_are_not_tcp_get_no_verdict_and_no_event() {
        let keys = KeysFile::parse(KEYS).unwrap();
        let mut v = LiveVerifier::new(&keys, Options::default(), "live:test");
        let mut ev = Vec::new();
        v.feed(now(), &[0x45, 0, 0, 20], &mut ev);
        assert!(ev.is_empty());
        assert_eq!(v.counts().total(), 0);
        assert_eq!(v.frames(), 1);
    }
}

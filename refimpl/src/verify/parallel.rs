// SPDX-License-Identifier: MIT OR Apache-2.0
//! Verification on several cores: the capture is read on the calling thread and its frames
//! are sharded by TCP connection (the unordered 4-tuple) over worker threads, each running
//! its own [`Checker`] on whole flows in capture order. The merged [`Report`] is the one
//! [`super::check_files`] makes (flows in order of first appearance, numbered from 1, every
//! verdict and count the same), except when the live-flow table overflows: each worker has
//! its share of [`Options::max_flows`], so connections may be evicted and resumed (listed as
//! new flows) at other points, and with more flows than [`Options::max_flow_reports`] the
//! flows left out of the listing may differ.
//!
//! One flow is checked on one thread (its SNE, ISNs and key state are sequential), so a
//! capture holding a single connection gains nothing; captures of many sessions (route
//! servers, IXPs, many BGP peers) scale with the cores.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::capture::{CaptureReader, Frame, LinkType, SkipCounts, Timestamp};
use crate::reassembly::{Fed, Reassembler};

use super::keys::KeysFile;
use super::{Checker, Options, Report};

/// A batch handed to a worker holds at most this many frames ...
const BATCH_FRAMES: usize = 512;
/// ... or about this many bytes (one frame more at most).
const BATCH_BYTES: usize = 1 << 20;
/// Batches queued per worker. Memory in flight is bounded by about
/// `threads * (BATCHES + 2) * BATCH_BYTES` (8 MiB with 2 threads), whatever the capture.
const BATCHES: usize = 2;

/// One frame of a batch: everything of [`Frame`] but the bytes, which live in the batch.
struct Meta {
    number: u64,
    offset: u64,
    timestamp: Timestamp,
    link_type: LinkType,
    ip: (usize, usize),
    orig_len: u32,
    cap_len: u32,
}

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    frames: Vec<Meta>,
}

impl Batch {
    fn push(&mut self, f: &Frame<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(f.ip);
        self.frames.push(Meta {
            number: f.number,
            offset: f.offset,
            timestamp: f.timestamp,
            link_type: f.link_type,
            ip: (start, self.bytes.len()),
            orig_len: f.orig_len,
            cap_len: f.cap_len,
        });
    }
}

enum Msg {
    Capture(String),
    Frames(Batch),
}

/// Which worker checks `ip`: a hash of the unordered (address, port) pair of a TCP segment,
/// so both directions of a connection meet on one worker. Packets that are not TCP, or
/// whose ports cannot be found, go to worker 0 (they are counted as skipped there).
fn shard(ip: &[u8], workers: usize) -> usize {
    let Some((a, b)) = endpoints(ip) else {
        return 0;
    };
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    // FNV-1a over both endpoints, then a final mix.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in lo.iter().chain(hi.iter()) {
        h = (h ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 29;
    (h % workers as u64) as usize
}

/// An endpoint as bytes: the address (IPv4 in the first 4 bytes) and the port.
type Endpoint = [u8; 18];

fn endpoint(addr: &[u8], port: &[u8]) -> Endpoint {
    let mut e = [0u8; 18];
    e[..addr.len()].copy_from_slice(addr);
    e[16..].copy_from_slice(port);
    e
}

/// Source and destination endpoints of a TCP segment (IPv4, or IPv6 through its extension
/// headers), or `None`. Only the sharding uses this; the checker parses every frame fully.
fn endpoints(ip: &[u8]) -> Option<(Endpoint, Endpoint)> {
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip.len() < ihl + 4 || ihl < 20 || ip[9] != 6 {
                return None;
            }
            let p = &ip[ihl..ihl + 4];
            Some((
                endpoint(&ip[12..16], &p[..2]),
                endpoint(&ip[16..20], &p[2..]),
            ))
        }
        6 if ip.len() >= 40 => {
            let (mut next, mut at) = (ip[6], 40usize);
            // Hop-by-hop, routing, fragment and destination options headers.
            while matches!(next, 0 | 43 | 44 | 60) {
                let h = ip.get(at..at + 2)?;
                let len = if next == 44 {
                    8
                } else {
                    (usize::from(h[1]) + 1) * 8
                };
                next = h[0];
                at += len;
            }
            if next != 6 {
                return None;
            }
            let p = ip.get(at..at + 4)?;
            Some((
                endpoint(&ip[8..24], &p[..2]),
                endpoint(&ip[24..40], &p[2..]),
            ))
        }
        _ => None,
    }
}

/// [`super::check_files`] on `threads` worker threads (plus the reading thread). With
/// `threads` ≤ 1 it is [`super::check_files`].
pub fn check_files_threads<P: AsRef<std::path::Path>>(
    keys: &KeysFile,
    opts: Options,
    captures: &[P],
    threads: usize,
    mut progress: impl FnMut(&str, u64, u64),
) -> Report {
    if threads <= 1 {
        return super::check_files(keys, opts, captures, progress);
    }
    let mut worker_opts = opts.clone();
    worker_opts.max_flows = (opts.max_flows / threads).max(1);
    worker_opts.max_cold_flows = (opts.max_cold_flows / threads).max(1);
    let reports = std::thread::scope(|scope| {
        let mut txs: Vec<SyncSender<Msg>> = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = sync_channel::<Msg>(BATCHES);
            txs.push(tx);
            let o = worker_opts.clone();
            let h = std::thread::Builder::new()
                .name(format!("verify-{i}"))
                .spawn_scoped(scope, move || worker(keys, o, &rx));
            handles.push(h);
        }
        let mut main = Reading::default();
        for p in captures {
            let p = p.as_ref();
            let name = p.display().to_string();
            main.captures.push(name.clone());
            let total = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            let mut reader = match CaptureReader::open(p) {
                Ok(r) => r,
                Err(e) => {
                    main.errors.push(format!("{name}: {e}"));
                    continue;
                }
            };
            for tx in &txs {
                let _ = tx.send(Msg::Capture(name.clone()));
            }
            let mut batches: Vec<Batch> = (0..threads).map(|_| Batch::default()).collect();
            let mut n = 0u32;
            let res = reader.for_each_frame(|f| {
                // Fragments are put back together here: a later fragment carries no ports
                // to shard by. The worker gets the whole datagram.
                let whole = match f.is_truncated() {
                    true => Fed::NotFragment,
                    false => main.reassembler.feed(f.ip).unwrap_or(Fed::NotFragment),
                };
                let f = match &whole {
                    Fed::NotFragment => *f,
                    Fed::Complete { packet, .. } => Frame { ip: packet, ..*f },
                    Fed::Held | Fed::Discarded(_) => return std::ops::ControlFlow::Continue(()),
                };
                let w = shard(f.ip, threads);
                batches[w].push(&f);
                if batches[w].frames.len() >= BATCH_FRAMES || batches[w].bytes.len() >= BATCH_BYTES
                {
                    let _ = txs[w].send(Msg::Frames(std::mem::take(&mut batches[w])));
                }
                n = n.wrapping_add(1);
                if n % 4096 == 0 {
                    progress(&name, f.offset, total);
                }
                std::ops::ControlFlow::Continue(())
            });
            for (w, b) in batches.into_iter().enumerate() {
                if !b.frames.is_empty() {
                    let _ = txs[w].send(Msg::Frames(b));
                }
            }
            main.reassembler.flush();
            main.frames += reader.frames();
            main.skipped.merge(reader.skipped());
            if let Err(e) = res {
                main.errors.push(format!("{name}: {e}"));
            }
            progress(&name, total, total);
        }
        drop(txs);
        let reports: Vec<Option<Report>> = handles
            .into_iter()
            .map(|h| h.ok().and_then(|h| h.join().ok()))
            .collect();
        (main, reports)
    });
    merge(keys, &opts, reports.0, reports.1)
}

/// What the reading thread knows.
#[derive(Default)]
struct Reading {
    reassembler: Reassembler,
    frames: u64,
    skipped: SkipCounts,
    errors: Vec<String>,
    captures: Vec<String>,
}

fn worker(keys: &KeysFile, opts: Options, rx: &Receiver<Msg>) -> Report {
    let mut c = Checker::new(keys, opts);
    c.flows.sharded_ids = Some(0);
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Capture(name) => c.begin_capture(&name),
            Msg::Frames(b) => {
                for m in &b.frames {
                    let f = Frame {
                        number: m.number,
                        offset: m.offset,
                        timestamp: m.timestamp,
                        link_type: m.link_type,
                        ip: &b.bytes[m.ip.0..m.ip.1],
                        orig_len: m.orig_len,
                        cap_len: m.cap_len,
                    };
                    c.process(&f);
                }
            }
        }
    }
    c.finish()
}

fn merge(keys: &KeysFile, opts: &Options, main: Reading, workers: Vec<Option<Report>>) -> Report {
    let reassembly = main.reassembler.stats();
    let mut r = Report {
        frames: main.frames,
        skipped: main.skipped,
        reassembly,
        errors: main.errors,
        warnings: keys.warnings.clone(),
        captures: main.captures,
        ..Report::default()
    };
    let mut flows = Vec::new();
    for (i, w) in workers.into_iter().enumerate() {
        let Some(w) = w else {
            r.errors.push(format!("verification thread {i} panicked"));
            continue;
        };
        flows.extend(w.flows);
        r.omitted_flows += w.omitted_flows;
        r.counts.merge(&w.counts);
        r.tcp_segments += w.tcp_segments;
        r.skipped.merge(&w.skipped);
        r.reassembly.merge(&w.reassembly);
        r.truncated += w.truncated;
        r.truncated_frames.extend(w.truncated_frames);
    }
    r.skipped
        .add_many(crate::capture::SkipReason::IpFragment, reassembly.lost());
    r.truncated_frames.sort_unstable();
    r.truncated_frames.truncate(opts.max_failures);
    flows.sort_by_key(|f| f.id);
    let cap = opts.max_flow_reports;
    if flows.len() > cap {
        // Failing flows first (they are what the reader looks for), as the sequential
        // checker does: up to twice the cap in all.
        let (failing, passing): (Vec<_>, Vec<_>) =
            flows.into_iter().partition(|f| f.counts.failures() > 0);
        let keep_failing = failing.len().min(cap.saturating_mul(2));
        let keep_passing = passing.len().min(cap.saturating_sub(keep_failing));
        r.omitted_flows += (failing.len() - keep_failing + passing.len() - keep_passing) as u64;
        flows = failing
            .into_iter()
            .take(keep_failing)
            .chain(passing.into_iter().take(keep_passing))
            .collect();
        flows.sort_by_key(|f| f.id);
    }
    for (n, f) in flows.iter_mut().enumerate() {
        let id = n as u64 + 1;
        f.id = id;
        for s in f.failures.iter_mut().chain(f.segments.iter_mut()) {
            s.flow = id;
        }
    }
    r.flows = flows;
    r
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Rendering a [`Report`]: one JSON document, or text for a terminal.
//!
//! JSON layout (stable; fields may be added):
//!
//! ```text
//! { "summary": { "good", "bad", "key_not_found", "unsigned", "unverifiable",
//!                "md5_good", "md5_bad", "not_covered",
//!                "TCPAOGood", "TCPAOBad", "TCPAOKeyNotFound", "TCPAORequired", "TCPMD5Failure",
//!                "frames", "tcp_segments", "skipped_frames", "skipped": {reason: n},
//!                "reassembled": {"datagrams", "fragments", "fragments_discarded",
//!                "fragments_incomplete"},
//!                "snaplen_truncated", "flows", "result": "pass"|"fail"|"error", "exit_code" },
//!   "captures": [...], "errors": [...], "warnings": [...],
//!   "flows": [ { "id", "capture", "client", "server", "client_isn", "server_isn",
//!                "isn_source", "state", "first_frame", "last_frame", "counts": {...},
//!                "key_ids": {...}, "failures": [segment...], "diagnosis": [...],
//!                "segments": [segment...] (with --segments) } ] }
//! ```

use std::io::{self, Write};

use serde_json::{Map, Value, json};

use super::{Counts, FlowReport, Report, SegmentVerdict};
use crate::verdict::{Counter, Verdict};

fn counts_json(c: &Counts) -> Map<String, Value> {
    let mut m: Map<String, Value> = Verdict::NAMES
        .iter()
        .map(|n| ((*n).to_string(), c.named(n).into()))
        .collect();
    // The Linux counters a TCP-AO/TCP-MD5 receiver would have incremented.
    for k in [
        Counter::TCPAOGood,
        Counter::TCPAOBad,
        Counter::TCPAOKeyNotFound,
        Counter::TCPAORequired,
        Counter::TCPMD5Failure,
    ] {
        m.insert(k.name().into(), c.get(k).into());
    }
    m
}

fn segment_json(s: &SegmentVerdict) -> Value {
    json!({
        "frame": s.frame,
        "time": s.timestamp.as_f64(),
        "flow": s.flow,
        "src": s.src.to_string(),
        "dst": s.dst.to_string(),
        "seq": s.seq,
        "ack": s.ack,
        "flags": s.flags,
        "payload_len": s.payload_len,
        "key_id": s.key_id,
        "rnext_key_id": s.rnext_key_id,
        "mkt": s.mkt,
        "sne": s.sne,
        "verdict": s.verdict.name(),
        "reason": s.reason,
    })
}

fn flow_json(f: &FlowReport, segments: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), f.id.into());
    m.insert("capture".into(), f.capture.clone().into());
    m.insert("client".into(), f.client.to_string().into());
    m.insert("server".into(), f.server.to_string().into());
    m.insert("client_isn".into(), json!(f.client_isn));
    m.insert("server_isn".into(), json!(f.server_isn));
    m.insert("isn_source".into(), json!(f.isn_source));
    m.insert("state".into(), f.state.into());
    m.insert("first_frame".into(), f.frames.0.into());
    m.insert("last_frame".into(), f.frames.1.into());
    m.insert("counts".into(), Value::Object(counts_json(&f.counts)));
    m.insert(
        "key_ids".into(),
        json!({
            "client": {"key_id": f.client_key_ids.0, "rnext_key_id": f.client_key_ids.1},
            "server": {"key_id": f.server_key_ids.0, "rnext_key_id": f.server_key_ids.1},
        }),
    );
    m.insert(
        "failures".into(),
        Value::Array(f.failures.iter().map(segment_json).collect()),
    );
    m.insert("diagnosis".into(), json!(f.diagnosis));
    if segments {
        m.insert(
            "segments".into(),
            Value::Array(f.segments.iter().map(segment_json).collect()),
        );
    }
    Value::Object(m)
}

/// The report as one JSON document.
pub fn to_json(r: &Report, segments: bool) -> Value {
    let mut s = counts_json(&r.counts);
    s.insert("frames".into(), r.frames.into());
    s.insert("tcp_segments".into(), r.tcp_segments.into());
    s.insert("skipped_frames".into(), r.skipped.total().into());
    let skipped: Map<String, Value> = r
        .skipped
        .iter()
        .map(|(k, n)| (k.name().to_string(), n.into()))
        .collect();
    s.insert("skipped".into(), Value::Object(skipped));
    s.insert(
        "reassembled".into(),
        json!({
            "datagrams": r.reassembly.datagrams,
            "fragments": r.reassembly.reassembled,
            "fragments_discarded": r.reassembly.discarded,
            "fragments_incomplete": r.reassembly.incomplete,
        }),
    );
    s.insert("snaplen_truncated".into(), r.truncated.into());
    s.insert(
        "flows".into(),
        (r.flows.len() as u64 + r.omitted_flows).into(),
    );
    s.insert("flows_omitted".into(), r.omitted_flows.into());
    s.insert("result".into(), result_word(r).into());
    s.insert("exit_code".into(), r.exit_code().into());
    json!({
        "summary": s,
        "captures": r.captures,
        "errors": r.errors,
        "warnings": r.warnings,
        "snaplen_truncated_frames": r.truncated_frames.iter().map(|(n, c, o)| json!({
            "frame": n, "captured": c, "original": o})).collect::<Vec<_>>(),
        "flows": r.flows.iter().map(|f| flow_json(f, segments)).collect::<Vec<_>>(),
    })
}

fn result_word(r: &Report) -> &'static str {
    match r.exit_code() {
        0 => "pass",
        1 => "fail",
        _ => "error",
    }
}

fn counts_line(c: &Counts) -> String {
    let mut s = format!(
        "good {}, bad {}, key not found {}, unsigned {}, unverifiable {}",
        c.good(),
        c.bad(),
        c.key_not_found(),
        c.unsigned(),
        c.unverifiable()
    );
    if c.md5_good() + c.md5_bad() > 0 {
        s.push_str(&format!(
            ", md5 good {}, md5 bad {}",
            c.md5_good(),
            c.md5_bad()
        ));
    }
    s
}

fn ids(v: &(Vec<u8>, Vec<u8>)) -> String {
    if v.0.is_empty() {
        return "-".into();
    }
    let j = |x: &[u8]| {
        x.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    format!("KeyID {} (RNextKeyID {})", j(&v.0), j(&v.1))
}

fn segment_line(s: &SegmentVerdict) -> String {
    let mut l = format!(
        "frame {:>6}  {} > {} [{}] seq {} ack {} len {}",
        s.frame, s.src, s.dst, s.flags, s.seq, s.ack, s.payload_len
    );
    if let Some(k) = s.key_id {
        l.push_str(&format!(" keyid {k}"));
    }
    if let Some(r) = s.rnext_key_id {
        l.push_str(&format!(" rnext {r}"));
    }
    l.push_str(&format!(": {}", s.verdict.name().replace('_', " ")));
    if let Some(r) = &s.reason {
        l.push_str(&format!(" - {r}"));
    }
    l
}

/// Write the report for humans. `quiet` keeps only the summary (and errors).
///
/// # Errors
/// Writing failed.
pub fn write_human(r: &Report, w: &mut dyn Write, quiet: bool, segments: bool) -> io::Result<()> {
    if !quiet {
        for warn in &r.warnings {
            writeln!(w, "warning: {warn}")?;
        }
        for f in &r.flows {
            if f.counts.total() == f.counts.not_covered() && !segments {
                continue; // unrelated traffic
            }
            let arrow = if f.client_known { "->" } else { "<->" };
            writeln!(
                w,
                "flow #{}  {} {arrow} {}  ({})",
                f.id, f.client, f.server, f.capture
            )?;
            let isn = match (f.client_isn, f.server_isn) {
                (Some(c), Some(s)) => format!(
                    "ISNs {c} / {s} from {}",
                    match f.isn_source {
                        super::IsnSource::FlowEntry => "[[flow]] entry",
                        _ => "handshake",
                    }
                ),
                _ => "ISNs unknown (no handshake in the capture)".into(),
            };
            writeln!(
                w,
                "  frames {}-{}, {}, {}",
                f.frames.0, f.frames.1, isn, f.state
            )?;
            writeln!(w, "  {}", counts_line(&f.counts))?;
            writeln!(
                w,
                "  TCPAOGood {} TCPAOBad {} TCPAOKeyNotFound {} TCPAORequired {}",
                f.counts.get(Counter::TCPAOGood),
                f.counts.get(Counter::TCPAOBad),
                f.counts.get(Counter::TCPAOKeyNotFound),
                f.counts.get(Counter::TCPAORequired)
            )?;
            writeln!(
                w,
                "  {} sends {}; {} sends {}",
                f.client.ip(),
                ids(&f.client_key_ids),
                f.server.ip(),
                ids(&f.server_key_ids)
            )?;
            if segments {
                for s in &f.segments {
                    writeln!(w, "    {}", segment_line(s))?;
                }
            } else if !f.failures.is_empty() {
                let n = f.counts.failures() + f.counts.unverifiable();
                writeln!(w, "  first failing segments ({} of {n}):", f.failures.len())?;
                for s in &f.failures {
                    writeln!(w, "    {}", segment_line(s))?;
                }
            }
            for d in &f.diagnosis {
                writeln!(w, "  diagnosis: {d}")?;
            }
            writeln!(w)?;
        }
        if r.truncated > 0 {
            writeln!(
                w,
                "{} frame(s) cut by the capture's snaplen could not be checked (first: frame {}); \
                 capture with `tcpdump -s 0`",
                r.truncated,
                r.truncated_frames.first().map_or(0, |t| t.0)
            )?;
        }
        if r.omitted_flows > 0 {
            writeln!(
                w,
                "{} more flows are not listed (over the limit of flow reports kept in memory); \
                 their segments are in the summary",
                r.omitted_flows
            )?;
        }
    }
    for e in &r.errors {
        writeln!(w, "error: {e}")?;
    }
    let skipped: Vec<String> = r
        .skipped
        .iter()
        .map(|(k, n)| format!("{n} {}", k.describe()))
        .collect();
    let reassembled = match r.reassembly.datagrams {
        0 => String::new(),
        n => format!(
            " ({n} reassembled from {} IP fragments)",
            r.reassembly.reassembled
        ),
    };
    writeln!(
        w,
        "summary: {} frames, {} TCP segments{reassembled} in {} flows; {}{}",
        r.frames,
        r.tcp_segments,
        r.flows.len() as u64 + r.omitted_flows,
        counts_line(&r.counts),
        if skipped.is_empty() {
            String::new()
        } else {
            format!("; skipped {}", skipped.join(", "))
        }
    )?;
    let verdict = match r.exit_code() {
        0 if r.counts.good() + r.counts.md5_good() == 0 => {
            "PASS (nothing failed, but nothing was verified either)".to_string()
        }
        0 => "PASS".to_string(),
        1 => format!("FAIL ({} failing segments)", r.counts.failures()),
        _ => "ERROR (a capture could not be read completely; verdicts above cover the frames before the error)".to_string(),
    };
    writeln!(w, "result: {verdict}")
}

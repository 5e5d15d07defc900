// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-verify`: check the TCP-AO and TCP-MD5 signatures in pcap/pcapng captures.
//!
//! Exit status: 0 when no segment is bad, missing a key or unsigned where a key was
//! expected; 1 otherwise; 2 when the keys file or a capture is unusable (a capture that
//! breaks off midway still has the verdicts of its earlier frames reported).
#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tcpao_refimpl::verify::keys::KeysFile;
use tcpao_refimpl::verify::parallel::check_files_threads;
use tcpao_refimpl::verify::{Options, report};

/// Verify TCP-AO (RFC 5925) and TCP-MD5 (RFC 2385) signatures in pcap/pcapng captures.
#[derive(Debug, Parser)]
#[command(name = "tcpao-verify", version, about, long_about = None)]
struct Cli {
    /// Keys file (TOML): `[[mkt]]` tuples and optional `[[flow]]` ISNs.
    #[arg(long, value_name = "KEYS.toml")]
    keys: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Report every segment, not only the first failures.
    #[arg(long)]
    segments: bool,
    /// For failing flows, find the misconfiguration that makes them verify.
    #[arg(long)]
    explain: bool,
    /// Print only the summary (text mode).
    #[arg(long, short)]
    quiet: bool,
    /// Worker threads; connections are spread over them (one connection stays on one
    /// thread). Default: the number of CPUs.
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Capture files (pcap or pcapng).
    #[arg(required = true, value_name = "CAPTURE")]
    captures: Vec<PathBuf>,
}

/// Files at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

struct Progress {
    enabled: bool,
    last: Instant,
}

impl Progress {
    fn update(&mut self, name: &str, done: u64, total: u64) {
        if !self.enabled || total < PROGRESS_MIN_BYTES {
            return;
        }
        let finished = done >= total;
        if !finished && self.last.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last = Instant::now();
        let pct = (done as f64 / total as f64 * 100.0).min(100.0);
        let width = 30usize;
        let filled = (pct / 100.0 * width as f64) as usize;
        let mut e = io::stderr().lock();
        let _ = write!(
            e,
            "\r{name}: [{}{}] {pct:5.1}% ({} / {} MiB)",
            "#".repeat(filled),
            " ".repeat(width - filled),
            done >> 20,
            total >> 20
        );
        if finished {
            let _ = writeln!(e);
        }
        let _ = e.flush();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let keys = match KeysFile::load(&cli.keys) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("tcpao-verify: {}: {e}", cli.keys.display());
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        record_segments: cli.segments,
        explain: cli.explain,
        ..Options::default()
    };
    let mut progress = Progress {
        enabled: io::stderr().is_terminal(),
        last: Instant::now(),
    };
    let threads = cli.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    let rep = check_files_threads(&keys, opts, &cli.captures, threads, |n, d, t| {
        progress.update(n, d, t)
    });
    let mut out = io::stdout().lock();
    let written = if cli.json {
        let doc = report::to_json(&rep, cli.segments);
        serde_json::to_writer_pretty(&mut out, &doc)
            .map_err(io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        report::write_human(&rep, &mut out, cli.quiet, cli.segments)
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("tcpao-verify: cannot write the report: {e}");
            return ExitCode::from(2);
        }
    }
    for e in &rep.errors {
        eprintln!("tcpao-verify: {e}");
    }
    ExitCode::from(rep.exit_code() as u8)
}

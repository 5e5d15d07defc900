// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-verify`: check the TCP-AO and TCP-MD5 signatures in pcap/pcapng captures.
//!
//! With `--live IFACE` (`-i IFACE`) it captures from a network interface instead and
//! verifies segments as they arrive, printing a line per flow when its state changes, and
//! the report on Ctrl-C (SIGINT, SIGTERM) or after `--duration`.
//!
//! Exit status: 0 when no segment is bad, missing a key or unsigned where a key was
//! expected; 1 otherwise; 2 when the keys file or a capture is unusable (a capture that
//! breaks off midway still has the verdicts of its earlier frames reported).
#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tcpao_refimpl::verify::keys::KeysFile;
use tcpao_refimpl::verify::parallel::check_files_threads;
use tcpao_refimpl::verify::{Options, Report, report};

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
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..), conflicts_with = "live")]
    threads: Option<u16>,
    /// Capture from this network interface and verify segments as they arrive (needs
    /// CAP_NET_RAW); the report comes on Ctrl-C or after --duration.
    #[arg(long, short = 'i', value_name = "IFACE", conflicts_with = "captures")]
    live: Option<String>,
    /// With --live: stop after this many seconds.
    #[arg(long, value_name = "SECS", requires = "live", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// With --live: also write what was captured to this pcap file (raw IP).
    #[arg(long, short = 'w', value_name = "FILE", requires = "live")]
    write: Option<PathBuf>,
    /// With --live: keep every TCP segment to or from this port, signed or not (instead of
    /// only segments with a TCP-AO or TCP-MD5 option). Repeatable.
    #[arg(long, value_name = "PORT", requires = "live")]
    port: Vec<u16>,
    /// With --live: keep every TCP segment to or from this address, signed or not.
    /// Repeatable; with --port, both must match.
    #[arg(long, value_name = "ADDR", requires = "live")]
    host: Vec<IpAddr>,
    /// Capture files (pcap or pcapng).
    #[arg(required_unless_present = "live", value_name = "CAPTURE")]
    captures: Vec<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("{s} is not a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
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
    if let Some(iface) = &cli.live {
        return live::main(&cli, iface, &keys, opts);
    }
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
    print_report(&cli, &rep)
}

/// Print the report (text or JSON) and the capture errors; the exit status.
fn print_report(cli: &Cli, rep: &Report) -> ExitCode {
    let mut out = io::stdout().lock();
    let written = if cli.json {
        let doc = report::to_json(rep, cli.segments);
        serde_json::to_writer_pretty(&mut out, &doc)
            .map_err(io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        report::write_human(rep, &mut out, cli.quiet, cli.segments)
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

#[cfg(all(feature = "live", target_os = "linux"))]
mod live {
    //! `--live`: capture, verify as segments arrive, report on Ctrl-C or `--duration`.

    use std::io::{self, Write};
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use tcpao_refimpl::capture::live::{self, FilterSpec, LiveCapture, LiveVerifier};
    use tcpao_refimpl::verify::Options;
    use tcpao_refimpl::verify::keys::KeysFile;

    use super::{Cli, print_report};

    /// CPU time (user and system) of this process so far.
    fn cpu_time() -> Duration {
        use nix::sys::resource::{UsageWho, getrusage};
        getrusage(UsageWho::RUSAGE_SELF)
            .map(|u| {
                let t = |v: nix::sys::time::TimeVal| {
                    Duration::from_micros(
                        u64::try_from(v.tv_sec()).unwrap_or(0) * 1_000_000
                            + u64::try_from(v.tv_usec()).unwrap_or(0),
                    )
                };
                t(u.user_time()) + t(u.system_time())
            })
            .unwrap_or_default()
    }

    pub(super) fn main(cli: &Cli, iface: &str, keys: &KeysFile, opts: Options) -> ExitCode {
        // Ctrl-C and SIGTERM end the capture, not the process: block them (this thread is
        // the only one) and read them from a signalfd between packets.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        let signals = mask.thread_block().and_then(|()| {
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        });
        let signals = match signals {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tcpao-verify: cannot catch SIGINT: {e}");
                return ExitCode::from(2);
            }
        };
        let spec = FilterSpec {
            ports: cli.port.clone(),
            hosts: cli.host.clone(),
            drop_outgoing: false,
        };
        let mut cap = match LiveCapture::open(iface, &spec) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tcpao-verify: {iface}: {e}");
                return ExitCode::from(2);
            }
        };
        let name = format!("live:{iface}");
        let mut v = LiveVerifier::new(keys, opts, &name);
        if let Some(path) = &cli.write {
            if let Err(e) = v.write_to(path) {
                eprintln!("tcpao-verify: cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
        let what = if spec.selects_endpoints() {
            "TCP segments of the given ports/hosts"
        } else {
            "TCP segments with a TCP-AO or TCP-MD5 option"
        };
        eprintln!(
            "tcpao-verify: capturing {what} on {iface} (ifindex {}, {} BPF instructions){}; Ctrl-C stops",
            cap.ifindex(),
            cap.filter_len(),
            cli.duration
                .map(|d| format!(" for {:.1} s", d.as_secs_f64()))
                .unwrap_or_default()
        );
        let deadline = cli.duration.map(|d| Instant::now() + d);
        let cpu0 = cpu_time();
        let mut stopped_by = None;
        // Text mode prints the state changes on stdout, before the report; with --json they
        // go to stderr so that stdout stays one JSON document.
        let mut events: Box<dyn Write> = if cli.json {
            Box::new(io::stderr())
        } else {
            Box::new(io::stdout())
        };
        let res = live::run(
            &mut cap,
            &mut v,
            |_| {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    stopped_by.get_or_insert("--duration");
                    return true;
                }
                if let Ok(Some(sig)) = signals.read_signal() {
                    stopped_by.get_or_insert(if sig.ssi_signo == Signal::SIGTERM as u32 {
                        "SIGTERM"
                    } else {
                        "SIGINT"
                    });
                    return true;
                }
                false
            },
            |e| {
                if !cli.quiet {
                    let _ = writeln!(events, "{e}");
                    let _ = events.flush();
                }
            },
        );
        drop(events);
        let frames = v.frames();
        let cpu = cpu_time().saturating_sub(cpu0);
        let (mut rep, write_err) = v.finish();
        if let Err(e) = res {
            rep.errors.push(format!("live:{iface}: {e}"));
        }
        if let (Some(path), Some(e)) = (&cli.write, write_err) {
            rep.errors
                .push(format!("writing {} failed: {e}", path.display()));
        }
        eprintln!(
            "tcpao-verify: stopped by {} after {frames} packets ({:.1} us of CPU per packet: reading, checking, writing)",
            stopped_by.unwrap_or("an error"),
            if frames == 0 {
                0.0
            } else {
                cpu.as_secs_f64() * 1e6 / frames as f64
            }
        );
        print_report(cli, &rep)
    }
}

#[cfg(not(all(feature = "live", target_os = "linux")))]
mod live {
    use std::process::ExitCode;

    use tcpao_refimpl::verify::Options;
    use tcpao_refimpl::verify::keys::KeysFile;

    use super::Cli;

    pub(super) fn main(_: &Cli, _: &str, _: &KeysFile, _: Options) -> ExitCode {
        eprintln!("tcpao-verify: --live needs Linux and the `live` feature");
        ExitCode::from(2)
    }
}

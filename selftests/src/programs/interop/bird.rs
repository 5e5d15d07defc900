// SPDX-License-Identifier: MIT OR Apache-2.0
//! BIRD for the interop cases: the Debian sid root it runs from, its configuration, the
//! process (started in the calling peer thread's network namespace) and its control socket.
//!
//! Debian sid's `bird3` needs a newer glibc than the build machines have, so
//! `scripts/sid-bird.sh` unpacks it with its libraries under `~/.cache/tcpao/sid-bird` and
//! writes wrappers that start it with sid's dynamic loader; the vm guest sees that directory
//! read-only through the shared root. Each BIRD gets a fresh run directory (configuration,
//! log, control socket) under the temporary directory, removed when it stops.
//!
//! The control socket speaks BIRD's line protocol (what `birdc` speaks): a greeting
//! `0001 BIRD 3.4.0 ready.`, then per command reply lines `DDDD-text` (more follow),
//! ` text` (continuation) and `DDDD text` (last line of a block); a reply ends with a last line
//! whose code starts with 0 (done), 8 or 9 (errors).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::failure;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::peers::Peer;
use crate::sockets::ProcTcp;
use crate::topology::Family;
use tcpao_sys::uapi::{TCP_CLOSE, TCP_LISTEN, TCP_TIME_WAIT};

/// Where `scripts/sid-bird.sh` puts the sid root: `$XDG_CACHE_HOME/tcpao/sid-bird` or
/// `~/.cache/tcpao/sid-bird` (`TCPAO_SID_BIRD` overrides).
pub fn sid_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TCPAO_SID_BIRD") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("tcpao/sid-bird")
}

/// The sid root with a runnable BIRD.
#[derive(Debug, Clone)]
pub struct SidRoot {
    /// Where the loader, bird and its libraries are: the sid root, or in the vm guest a copy
    /// in RAM ([`stage`]).
    root: PathBuf,
    version: String,
}

/// The loader of sid's libc6, relative to the root.
const LOADER: &str = "usr/lib64/ld-linux-x86-64.so.2";
/// sid's library directory, relative to the root.
const LIBDIR: &str = "usr/lib/x86_64-linux-gnu";

/// In the vm guest the sid root is on the 9p share, where nothing stays in the page cache:
/// every start of bird read its 20 files again (5 to 16 s under TCG, measured). Copy the
/// files it needs (listed by `scripts/sid-bird.sh` in `files`, about 14 MB) once per run into
/// the guest's RAM (`/tmp` is an overlay on a tmpfs there).
fn stage(dir: &Path) -> Result<PathBuf, String> {
    static STAGED: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    STAGED
        .get_or_init(|| {
            let list = std::fs::read_to_string(dir.join("files"))
                .map_err(|e| format!("{}/files: {e}", dir.display()))?;
            let to = std::env::temp_dir().join(format!("tcpao-sid-bird-{}", std::process::id()));
            for rel in list.lines().filter(|l| !l.is_empty()) {
                if rel.contains("..") || rel.starts_with('/') {
                    return Err(format!("odd path {rel:?} in {}/files", dir.display()));
                }
                let dst = to.join(rel);
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                std::fs::copy(dir.join("root").join(rel), &dst)
                    .map_err(|e| format!("copying {rel}: {e}"))?;
            }
            Ok(to)
        })
        .clone()
}

impl SidRoot {
    /// The root made by `scripts/sid-bird.sh`, if its BIRD runs here.
    ///
    /// # Errors
    /// [`Failure::Skip`] naming what is missing and how to make it (and why the last attempt
    /// failed, when `scripts/sid-bird.sh` recorded it).
    pub fn find() -> PeerResult<Self> {
        let dir = sid_dir();
        let skip = |what: String| {
            let last = dir
                .parent()
                .and_then(|p| std::fs::read_to_string(p.join("sid-bird.error")).ok())
                .map(|e| format!("; the last attempt failed: {}", e.trim()))
                .unwrap_or_default();
            Failure::Skip(format!(
                "BIRD 3 from Debian sid is not available: {what} (make it with scripts/sid-bird.sh, run by scripts/setup.sh){last}"
            ))
        };
        let Ok(stamp) = std::fs::read_to_string(dir.join("stamp")) else {
            return Err(skip(format!("{} does not exist", dir.display())));
        };
        let root = if std::env::var_os("TCPAO_IN_VM").is_some() {
            stage(&dir).map_err(|e| skip(format!("copying it to the guest's RAM failed: {e}")))?
        } else {
            dir.join("root")
        };
        let sid = SidRoot {
            root,
            version: stamp.lines().next().unwrap_or_default().to_owned(),
        };
        let out = sid
            .bird()
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| skip(format!("bird does not start: {e}")))?;
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !text.contains("BIRD version") {
            return Err(skip(format!("bird --version says {:?}", text.trim())));
        }
        Ok(sid)
    }

    /// The package version line of the stamp (`bird3 3.4.0-1 (BIRD version 3.4.0)`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// A command starting sid's bird with sid's loader and libraries.
    fn bird(&self) -> Command {
        let mut c = Command::new(self.root.join(LOADER));
        c.arg("--library-path")
            .arg(self.root.join(LIBDIR))
            .arg(self.root.join("usr/sbin/bird"));
        c
    }
}

/// A TCP-AO key in BIRD's `keys { key { ... } }` block.
#[derive(Clone)]
pub struct BirdKey {
    /// SendID.
    pub send_id: u8,
    /// RecvID.
    pub recv_id: u8,
    /// The secret (never printed).
    pub secret: Zeroizing<String>,
    /// BIRD's algorithm name: `hmac sha1`, `hmac sha256`, `cmac aes128`, `hmac sha512`...
    pub algorithm: &'static str,
    /// `preferred`, `deprecated` or nothing.
    pub preference: Option<&'static str>,
}

impl std::fmt::Debug for BirdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BirdKey({}/{} {} {:?})",
            self.send_id, self.recv_id, self.algorithm, self.preference
        )
    }
}

/// How the BGP protocol authenticates.
#[derive(Debug, Clone)]
pub enum BirdAuth {
    /// `authentication ao; keys { ... };`
    Ao(Vec<BirdKey>),
    /// `authentication md5; password "...";`
    Md5(Zeroizing<String>),
}

/// One BIRD instance's configuration: a device protocol, a static route to export, and one
/// BGP protocol `ao_peer` (multihop, since the test addresses are host routes over the
/// veth, not a shared subnet).
#[derive(Debug, Clone)]
pub struct BirdConf {
    /// Address family of the session.
    pub family: Family,
    /// BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Local address (`strict bind` to it unless `neighbor` is a range).
    pub local: IpAddr,
    /// Local AS.
    pub local_as: u32,
    /// The neighbor and its prefix length (below the host length: `neighbor range`).
    pub neighbor: (IpAddr, u8),
    /// The neighbor's AS.
    pub peer_as: u32,
    /// `passive on`: never connect, only accept.
    pub passive: bool,
    /// `hold time` and `keepalive time`, in seconds.
    pub timers: (u16, u16),
    /// Authentication.
    pub auth: BirdAuth,
}

impl BirdConf {
    /// The configuration file, logging everything to `log`.
    pub fn render(&self, log: &Path) -> String {
        let (channel, route) = match self.family {
            Family::Ipv4 => ("ipv4", "192.0.2.0/24"),
            Family::Ipv6 => ("ipv6", "2001:db8:ffff::/48"),
        };
        let mut s = String::new();
        let _ = writeln!(s, "log \"{}\" all;", log.display());
        let _ = writeln!(s, "router id {};", self.router_id);
        s.push_str("debug protocols { states, events };\n");
        s.push_str("protocol device { }\n");
        let _ = writeln!(
            s,
            "protocol static st {{ {channel}; route {route} blackhole; }}"
        );
        s.push_str("protocol bgp ao_peer {\n");
        let _ = writeln!(s, "  local {} as {};", self.local, self.local_as);
        let (addr, len) = self.neighbor;
        if len < self.family.host_prefix() {
            let _ = writeln!(s, "  neighbor range {addr}/{len} as {};", self.peer_as);
        } else {
            let _ = writeln!(s, "  neighbor {addr} as {};", self.peer_as);
            s.push_str("  strict bind on;\n");
        }
        s.push_str("  multihop;\n");
        if self.passive {
            s.push_str("  passive on;\n");
        }
        let _ = writeln!(
            s,
            "  hold time {};\n  keepalive time {};",
            self.timers.0, self.timers.1
        );
        s.push_str("  connect delay time 1;\n  connect retry time 2;\n  error wait time 1, 5;\n");
        match &self.auth {
            BirdAuth::Ao(keys) => {
                s.push_str("  authentication ao;\n  keys {\n");
                for k in keys {
                    let _ = writeln!(
                        s,
                        "    key {{ send id {}; recv id {}; secret \"{}\"; algorithm {};{} }};",
                        k.send_id,
                        k.recv_id,
                        k.secret.as_str(),
                        k.algorithm,
                        k.preference.map(|p| format!(" {p};")).unwrap_or_default()
                    );
                }
                s.push_str("  };\n");
            }
            BirdAuth::Md5(pw) => {
                let _ = writeln!(s, "  authentication md5;\n  password \"{}\";", pw.as_str());
            }
        }
        let _ = writeln!(s, "  {channel} {{ import all; export all; }};");
        s.push_str("}\n");
        s
    }
}

/// How far apart two reads of one unchanged `Since` may be (see [`BgpStatus::same_since`]).
const SINCE_JITTER_MS: u32 = 100;
const DAY_MS: u32 = 24 * 3600 * 1000;

/// `HH:MM:SS` or `HH:MM:SS.fff` (BIRD's default `timeformat protocol`) in milliseconds.
fn since_ms(s: &str) -> Option<u32> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = hms.split(':').map(|p| p.parse::<u32>().ok());
    let (h, m, sec) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || h > 23 || m > 59 || sec > 60 || frac.len() > 3 {
        return None;
    }
    let ms = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().ok()? * 10u32.pow(3 - frac.len() as u32)
    };
    Some(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// The state of the BGP protocol as `show protocols all ao_peer` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpStatus {
    /// `BGP state:` (`Established`, `Active`, `Passive`, `Down`, ...).
    pub state: String,
    /// The `Since` column: when the protocol last changed state.
    pub since: String,
    /// `Last error:`, if any.
    pub last_error: Option<String>,
    /// TCP-AO `Current key:` (the SendID BIRD sends with).
    pub current_key: Option<u8>,
    /// TCP-AO `RNext key:`.
    pub rnext_key: Option<u8>,
    /// TCP-AO `Good packets:`.
    pub good: Option<u64>,
    /// TCP-AO `Bad packets:`.
    pub bad: Option<u64>,
}

impl BgpStatus {
    /// Whether the session is up.
    pub fn established(&self) -> bool {
        self.state == "Established"
    }

    /// Whether `since` (an earlier read of [`BgpStatus::since`]) names the same state change.
    /// BIRD prints `Since` by converting a monotonic timestamp to wall-clock time at each read,
    /// so two reads of one unchanged state can differ by a millisecond (seen: 1 ms earlier on
    /// the second read). A real change (the session down and up again) takes BIRD's
    /// connect-retry delay, seconds. Times BIRD prints in another format compare exactly.
    pub fn same_since(&self, since: &str) -> bool {
        match (since_ms(&self.since), since_ms(since)) {
            (Some(a), Some(b)) => {
                let d = a.abs_diff(b);
                d.min(DAY_MS - d) <= SINCE_JITTER_MS
            }
            _ => self.since == since,
        }
    }

    /// Parse the reply to `show protocols all NAME`.
    pub fn parse(name: &str, reply: &[String]) -> Self {
        let mut st = BgpStatus::default();
        for line in reply {
            let t = line.trim();
            let mut cols = t.split_whitespace();
            if cols.next() == Some(name) {
                st.since = cols.nth(3).unwrap_or_default().to_owned();
            }
            let field = |key: &str| t.strip_prefix(key).map(str::trim);
            if let Some(v) = field("BGP state:") {
                st.state = v.to_owned();
            } else if let Some(v) = field("Last error:") {
                st.last_error = Some(v.to_owned());
            } else if let Some(v) = field("Current key:") {
                st.current_key = v.parse().ok();
            } else if let Some(v) = field("RNext key:") {
                st.rnext_key = v.parse().ok();
            } else if let Some(v) = field("Good packets:") {
                st.good = v.parse().ok();
            } else if let Some(v) = field("Bad packets:") {
                st.bad = v.parse().ok();
            }
        }
        st
    }
}

impl std::fmt::Display for BgpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BGP state {} since {}", self.state, self.since)?;
        if let (Some(c), Some(r)) = (self.current_key, self.rnext_key) {
            write!(f, ", TCP-AO current key {c}, rnext key {r}")?;
        }
        if let (Some(g), Some(b)) = (self.good, self.bad) {
            write!(f, ", {g} good / {b} bad packets")?;
        }
        if let Some(e) = &self.last_error {
            write!(f, ", last error {e:?}")?;
        }
        Ok(())
    }
}

/// A running BIRD, stopped (and its run directory removed) on drop.
#[derive(Debug)]
pub struct Bird {
    name: String,
    child: Child,
    dir: PathBuf,
    ctl: PathBuf,
    log: PathBuf,
    configs: u32,
}

/// A fresh run directory for the BIRD called `name` of test `test`.
fn run_dir(test: &str, name: &str) -> PeerResult<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "tcpao-interop-{}-{}-{name}",
        std::process::id(),
        test.replace('/', "_")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).or_fail(&format!("creating {}", dir.display()))?;
    Ok(dir)
}

impl Bird {
    /// Start BIRD `name` (foreground, in the calling thread's network namespace) with
    /// `conf`, and wait until its control socket answers.
    ///
    /// # Errors
    /// BIRD does not start or rejects the configuration (its messages are in the failure).
    pub fn start(
        p: &Peer<'_>,
        sid: &SidRoot,
        test: &str,
        name: &str,
        conf: &BirdConf,
    ) -> PeerResult<Bird> {
        let dir = run_dir(test, name)?;
        let log = dir.join(format!("{name}.log"));
        let ctl = dir.join(format!("{name}.ctl"));
        let cfg = dir.join(format!("{name}-0.conf"));
        std::fs::write(&cfg, conf.render(&log)).or_fail("writing the BIRD configuration")?;
        let stderr = std::fs::File::create(dir.join("stderr")).or_fail("creating stderr file")?;
        let child = sid
            .bird()
            .arg("-f")
            .arg("-c")
            .arg(&cfg)
            .arg("-s")
            .arg(&ctl)
            .arg("-P")
            .arg(dir.join(format!("{name}.pid")))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .or_fail("starting bird")?;
        let mut bird = Bird {
            name: name.to_owned(),
            child,
            dir,
            ctl,
            log,
            configs: 0,
        };
        let t0 = Instant::now();
        let up = p.wait_for(p.deadline_in(Duration::from_secs(30)), || {
            if let Ok(Some(st)) = bird.child.try_wait() {
                return Err(failure!(
                    "bird {} exited at start ({st}): {}",
                    bird.name,
                    bird.stderr_and_log()
                ));
            }
            Ok(UnixStream::connect(&bird.ctl).ok().map(drop))
        })?;
        if up.is_none() {
            return Err(failure!(
                "bird {}'s control socket did not come up: {}",
                bird.name,
                bird.stderr_and_log()
            ));
        }
        p.diag(format!(
            "bird {name} answers on its control socket after {:.0} ms",
            t0.elapsed().as_secs_f64() * 1e3
        ));
        Ok(bird)
    }

    /// Run `f` with this BIRD; when it fails, add BIRD's log tail to the test's diagnostics.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub fn run<T>(
        &mut self,
        p: &Peer<'_>,
        f: impl FnOnce(&mut Bird) -> PeerResult<T>,
    ) -> PeerResult<T> {
        let r = f(self);
        if r.is_err() {
            p.diag(format!("bird {}: {}", self.name, self.stderr_and_log()));
        }
        r
    }

    /// The last lines of the log and anything BIRD printed, for failure messages.
    pub fn stderr_and_log(&self) -> String {
        let err = std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
        let log = self.log_text();
        let tail: Vec<&str> = log.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("stderr {:?}; log tail: {}", err.trim(), tail.join(" | "))
    }

    /// The whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many log lines contain `what`.
    pub fn log_count(&self, what: &str) -> usize {
        self.log_text().lines().filter(|l| l.contains(what)).count()
    }

    /// Run one control command; the reply's lines without their codes.
    ///
    /// # Errors
    /// The control socket fails, or the reply ends in an error code (8xxx, 9xxx).
    pub fn cmd(&self, line: &str) -> PeerResult<Vec<String>> {
        let what = format!("bird {} `{line}`", self.name);
        let s = UnixStream::connect(&self.ctl).or_fail(&format!("{what}: connect"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .or_fail(&what)?;
        let mut r = BufReader::new(&s);
        let mut greeting = String::new();
        r.read_line(&mut greeting).or_fail(&what)?;
        if !greeting.starts_with("0001 ") {
            return Err(failure!("{what}: unexpected greeting {greeting:?}"));
        }
        (&s).write_all(format!("{line}\n").as_bytes())
            .or_fail(&what)?;
        let mut out = Vec::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).or_fail(&what)? == 0 {
                return Err(failure!("{what}: the control socket closed mid-reply"));
            }
            let l = l.trim_end_matches('\n');
            let b = l.as_bytes();
            let coded = b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit);
            if !coded {
                out.push(l.strip_prefix(' ').unwrap_or(l).to_owned());
                continue;
            }
            out.push(l[5..].to_owned());
            if b[4] == b' ' && matches!(b[0], b'0' | b'8' | b'9') {
                if b[0] != b'0' {
                    return Err(failure!("{what}: {}", out.join(" / ")));
                }
                return Ok(out);
            }
        }
    }

    /// Wait until the BGP protocol has installed its keys (TCP-AO or TCP-MD5) on its listening
    /// socket: BIRD logs `ao_peer: Started` after that (`bgp_startup()`). The socket
    /// listens earlier, and a SYN that comes in between meets a listener without keys.
    ///
    /// # Errors
    /// BIRD did not get there in time.
    pub fn wait_started(&self, p: &Peer<'_>) -> PeerResult {
        let done = p.wait_for(p.deadline_in(Duration::from_secs(30)), || {
            Ok((self.log_count("ao_peer: Started") > 0).then_some(()))
        })?;
        done.ok_or_else(|| {
            failure!(
                "bird {}: the BGP protocol did not start: {}",
                self.name,
                self.stderr_and_log()
            )
        })
    }

    /// `show protocols all ao_peer`.
    ///
    /// # Errors
    /// As [`Bird::cmd`].
    pub fn status(&self) -> PeerResult<BgpStatus> {
        Ok(BgpStatus::parse(
            "ao_peer",
            &self.cmd("show protocols all ao_peer")?,
        ))
    }

    /// `show protocols`: (name, state, info) of every protocol.
    ///
    /// # Errors
    /// As [`Bird::cmd`].
    pub fn protocols(&self) -> PeerResult<Vec<(String, String, String)>> {
        Ok(self
            .cmd("show protocols")?
            .iter()
            .skip(1)
            .filter_map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                (c.len() >= 5).then(|| (c[0].to_owned(), c[3].to_owned(), c[5..].join(" ")))
            })
            .collect())
    }

    /// Load a new configuration with `configure` (BIRD applies key changes without
    /// restarting the session when it can).
    ///
    /// # Errors
    /// BIRD rejects it.
    pub fn configure(&mut self, conf: &BirdConf) -> PeerResult {
        self.configs += 1;
        let cfg = self
            .dir
            .join(format!("{}-{}.conf", self.name, self.configs));
        std::fs::write(&cfg, conf.render(&self.log)).or_fail("writing the BIRD configuration")?;
        let reply = self.cmd(&format!("configure \"{}\"", cfg.display()))?;
        if !reply.iter().any(|l| l.contains("Reconfigured")) {
            return Err(failure!(
                "bird {}: configure said {}",
                self.name,
                reply.join(" / ")
            ));
        }
        Ok(())
    }

    /// Poll [`Bird::status`] (every 50 ms) until `cond` holds; the status that satisfied it.
    ///
    /// # Errors
    /// The deadline passed (the failure names `what` and the last status), or the other
    /// peer failed.
    pub fn wait_status(
        &self,
        p: &Peer<'_>,
        deadline: Instant,
        what: &str,
        mut cond: impl FnMut(&BgpStatus) -> bool,
    ) -> PeerResult<BgpStatus> {
        let mut last = BgpStatus::default();
        let mut next = Instant::now();
        let got = p.wait_for(deadline, || {
            if Instant::now() < next {
                return Ok(None);
            }
            next = Instant::now() + Duration::from_millis(50);
            last = self.status()?;
            Ok(cond(&last).then(|| last.clone()))
        })?;
        got.ok_or_else(|| {
            failure!(
                "bird {}: {what} did not happen in time; {last}; {}",
                self.name,
                self.stderr_and_log()
            )
        })
    }
}

impl Bird {
    /// Stop BIRD: SIGTERM lets it close its sessions; one that does not exit within a second
    /// is killed. Its log stays until the drop.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// TCP states (`/proc/net/tcp` numbering) of the calling thread's namespace's sockets with
/// local or remote port `port`.
pub fn tcp_states(port: u16) -> PeerResult<Vec<u8>> {
    Ok(ProcTcp::all()
        .into_iter()
        .filter(|s| s.local_port == port || s.remote_port == port)
        .map(|s| s.state)
        .collect())
}

/// Wait until something listens on `port` in this namespace.
///
/// # Errors
/// Nothing listened by `deadline`.
pub fn wait_listening(p: &Peer<'_>, port: u16, deadline: Instant) -> PeerResult {
    p.wait_for(deadline, || {
        Ok(tcp_states(port)?.contains(&TCP_LISTEN).then_some(()))
    })?
    .ok_or_else(|| failure!("nothing listens on port {port}"))
}

/// Wait until no connection on `port` is open or closing in this namespace (listeners and
/// TIME_WAIT remain): every segment of the closed connections has been received.
///
/// # Errors
/// Some connection stayed open until `deadline`.
pub fn wait_closed(p: &Peer<'_>, port: u16, deadline: Instant) -> PeerResult {
    let start = Instant::now();
    let mut first_open = None;
    let done = p.wait_for(deadline, || {
        let closed = tcp_states(port)?
            .iter()
            .all(|s| matches!(*s, TCP_LISTEN | TCP_TIME_WAIT | TCP_CLOSE));
        if !closed && first_open.is_none() {
            first_open = Some(ProcTcp::describe_port(port));
        }
        Ok(closed.then_some(()))
    })?;
    // A close that takes seconds on a veth is a retransmission nobody answers.
    if done.is_some() && start.elapsed() > Duration::from_secs(5) {
        p.diag(format!(
            "connections on port {port} took {:.1?} to close (open at first: {})",
            start.elapsed(),
            first_open.as_deref().unwrap_or("none")
        ));
    }
    done.ok_or_else(|| {
        // What is left, and whether segments were dropped for their signatures (a closing
        // socket whose last ACK or FIN the other end cannot verify never ends).
        let mib = crate::counters::NetnsMib::read().map_or_else(
            |e| format!("unreadable: {e}"),
            |m| {
                crate::counters::TCPEXT_COUNTERS
                    .iter()
                    .map(|n| format!("{n} {}", m.get(n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        failure!(
            "connections on port {port} stayed open: {}; this namespace's counters: {mib}",
            ProcTcp::describe_port(port)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn status_of_an_established_ao_session() {
        // `show protocols all ao_peer` as BIRD 3.4.0 printed it in the vm (codes removed).
        let r = reply(&[
            "Name       Proto      Table      State  Since         Info",
            "ao_peer    BGP        ---        up     07:37:15.180  Established   ",
            "  Created:            07:37:09.343",
            "  BGP state:          Established",
            "    Neighbor address: 10.0.0.2",
            "    TCP-AO:",
            "      Current key:    3",
            "      RNext key:      4",
            "      Good packets:   18",
            "      Bad packets:    0",
            "  Channel ipv4",
        ]);
        let st = BgpStatus::parse("ao_peer", &r);
        assert!(st.established());
        assert_eq!(st.since, "07:37:15.180");
        assert_eq!((st.current_key, st.rnext_key), (Some(3), Some(4)));
        assert_eq!((st.good, st.bad), (Some(18), Some(0)));
        assert_eq!(st.last_error, None);
    }

    #[test]
    fn since_tolerates_birds_millisecond_jitter_but_not_a_new_session() {
        let at = |since: &str| BgpStatus {
            since: since.to_owned(),
            ..BgpStatus::default()
        };
        // One row per case: the later read, the earlier one, same state change?
        let rows: &[(&str, &str, bool)] = &[
            ("07:37:15.180", "07:37:15.180", true),
            // Seen in CI: the second read printed 1 ms earlier.
            ("07:37:15.179", "07:37:15.180", true),
            ("07:37:15.280", "07:37:15.180", true),
            ("07:37:15.281", "07:37:15.180", false),
            ("07:37:20.180", "07:37:15.180", false),
            ("00:00:00.010", "23:59:59.990", true),
            ("07:37:15", "07:37:15.050", true),
            ("07:37:15.18", "07:37:15.180", true),
            // Not BIRD's default format: exact comparison.
            ("2026-12-03 07:37:15", "2026-12-03 07:37:15", true),
            ("2026-12-03 07:37:15", "2026-12-03 07:37:16", false),
            ("", "07:37:15.180", false),
            ("25:00:00.000", "01:00:00.000", false),
        ];
        for &(now, before, same) in rows {
            assert_eq!(at(now).same_since(before), same, "{now} vs {before}");
        }
    }

    #[test]
    fn status_of_a_protocol_that_failed() {
        let r = reply(&[
            "Name       Proto      Table      State  Since         Info",
            "ao_peer    BGP        ---        down   07:57:03.703  Error: Authentication failed",
            "  BGP state:          Down",
            "    Last error:       Error: Authentication failed",
        ]);
        let st = BgpStatus::parse("ao_peer", &r);
        assert!(!st.established());
        assert_eq!(
            st.last_error.as_deref(),
            Some("Error: Authentication failed")
        );
        assert_eq!(st.current_key, None);
    }

    #[test]
    fn configs_name_keys_and_never_debug_print_secrets() {
        let k = BirdKey {
            send_id: 3,
            recv_id: 4,
            secret: Zeroizing::new("tcpao-interop-key-two".into()),
            algorithm: "cmac aes128",
            preference: Some("preferred"),
        };
        assert!(!format!("{k:?}").contains("key-two"));
        let c = BirdConf {
            family: Family::Ipv6,
            router_id: Ipv4Addr::new(10, 0, 254, 1),
            local: "2001:db8:254::1".parse().unwrap(),
            local_as: 65001,
            neighbor: ("2001:db8:1::1".parse().unwrap(), 128),
            peer_as: 65002,
            passive: true,
            timers: (9, 3),
            auth: BirdAuth::Ao(vec![k]),
        };
        let t = c.render(Path::new("/tmp/a.log"));
        assert!(
            t.contains("neighbor 2001:db8:1::1 as 65002;\n  strict bind on;"),
            "{t}"
        );
        assert!(t.contains(
            "key { send id 3; recv id 4; secret \"tcpao-interop-key-two\"; algorithm cmac aes128; preferred; };"
        ));
        assert!(t.contains("passive on;") && t.contains("ipv6 { import all; export all; };"));
        assert!(t.contains("hold time 9;\n  keepalive time 3;"), "{t}");
        let r = BirdConf {
            neighbor: ("2001::".parse().unwrap(), 16),
            auth: BirdAuth::Md5(Zeroizing::new("pw".into())),
            ..c
        };
        let t = r.render(Path::new("/tmp/a.log"));
        assert!(t.contains("neighbor range 2001::/16 as 65002;") && !t.contains("strict bind"));
        assert!(t.contains("authentication md5;\n  password \"pw\";"));
    }

    #[test]
    fn docs_interop_shows_the_configuration_the_tests_write() {
        let doc = include_str!("../../../../docs/interop.md");
        let key = |send_id, recv_id, secret: &str, algorithm, preference| BirdKey {
            send_id,
            recv_id,
            secret: Zeroizing::new(secret.into()),
            algorithm,
            preference: Some(preference),
        };
        let c = BirdConf {
            family: Family::Ipv4,
            router_id: Ipv4Addr::new(10, 0, 254, 1),
            local: "10.0.254.1".parse().unwrap(),
            local_as: 65001,
            neighbor: ("10.0.1.1".parse().unwrap(), 32),
            peer_as: 65002,
            passive: false,
            // The interop cases' timers and secrets.
            timers: (super::super::HOLD_TIME, super::super::HOLD_TIME / 3),
            auth: BirdAuth::Ao(vec![
                key(1, 2, super::super::SECRET_1, "hmac sha256", "deprecated"),
                key(3, 4, super::super::SECRET_2, "cmac aes128", "preferred"),
            ]),
        };
        let text = c.render(Path::new("/tmp/a.log"));
        assert!(
            doc.contains(&text),
            "docs/interop.md does not show:\n{text}"
        );
    }
}

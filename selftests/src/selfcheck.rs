// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tests of the harness itself.
//!
//! `harness/…` checks, for real, what every other test relies on: a thread can move into a
//! fresh network namespace, a veth pair can join two namespaces, and TCP traffic crosses it.
//!
//! `selftest-self/…` are hidden, deliberately broken tests that show a broken run is
//! reported as a failure. They run only when named (for example
//! `tcpao-selftests selftest-self/any/hang`):
//!
//! | name | what it does | expected report |
//! | --- | --- | --- |
//! | `selftest-self/any/fail` | returns `Fail` | `not ok` |
//! | `selftest-self/any/panic` | panics in the body | `not ok` with the panic message |
//! | `selftest-self/any/hang` | never returns (2 s timeout) | `not ok … # TIMEOUT` |
//! | `selftest-self/any/abort` | aborts the whole binary | truncated KTAP, exit 134; `vm` reports the missing results |
//! | `selftest-self/any/kernel-panic` | in a `vm` guest only: `echo c > /proc/sysrq-trigger` | `vm` reports the kernel panic with its console lines |
//! | `selftest-self/any/spawn-storm` | runs `true` over and over for 20 s (`TCPAO_SPAWN_STORM_SECS` to change): every child holds a copy of the fd table, and so every test's sockets, until it execs (load for the tests beside it: the restore flake, docs/lab.md) | `ok`, with the number of children |

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, unshare};

use crate::outcome::{Outcome, TestResult};
use crate::probe::Feature;
use crate::registry::{Ctx, Test};

/// The harness's own tests (visible and hidden).
///
/// # Panics
/// Never while registering; the hidden `selftest-self/any/panic` body panics when run.
pub fn tests() -> Vec<Test> {
    vec![
        Test::new("harness/any/netns-isolation", netns_isolation)
            .requires(&[Feature::Netns])
            .timeout(Duration::from_secs(20)),
        Test::new("harness/ipv4/veth-tcp", |c| veth_tcp(c, false))
            .requires(&[Feature::Netns, Feature::Veth])
            .timeout(Duration::from_secs(30)),
        Test::new("harness/ipv6/veth-tcp", |c| veth_tcp(c, true))
            .requires(&[Feature::Netns, Feature::Veth, Feature::Ipv6])
            .timeout(Duration::from_secs(30)),
        Test::new("selftest-self/any/fail", |_| {
            Ok(Outcome::fail("deliberate failure"))
        })
        .hidden(),
        Test::new("selftest-self/any/panic", |_| -> TestResult {
            let v: Vec<u8> = Vec::new();
            panic!("deliberate panic: index {} of an empty vector", v.len() + 3)
        })
        .hidden(),
        Test::new("selftest-self/any/hang", |_| {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        })
        .timeout(Duration::from_secs(2))
        .hidden(),
        Test::new("selftest-self/any/abort", |_| std::process::abort()).hidden(),
        Test::new("selftest-self/any/kernel-panic", crash_guest_kernel).hidden(),
        Test::new("selftest-self/any/spawn-storm", spawn_storm)
            .timeout(storm_length().unwrap_or(STORM) + Duration::from_secs(60))
            .hidden(),
    ]
}

/// `selftest-self/any/spawn-storm`: spawn `true` for [`STORM`] (or `TCPAO_SPAWN_STORM_SECS`
/// seconds), one child at a time. Its test timeout is the storm's length plus a minute.
fn spawn_storm(ctx: &Ctx) -> TestResult {
    let storm = storm_length()?;
    let start = Instant::now();
    let mut children = 0u32;
    while start.elapsed() < storm {
        let st = Command::new("true")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run true: {e}"))?;
        crate::ensure!(st.success(), "true ended with {st}");
        children += 1;
    }
    ctx.diag(format!("{children} children spawned in {storm:?}"));
    Ok(Outcome::Pass)
}

/// How long `selftest-self/any/spawn-storm` spawns by default.
const STORM: Duration = Duration::from_secs(20);

/// The storm's length: `TCPAO_SPAWN_STORM_SECS` when set, else [`STORM`].
fn storm_length() -> Result<Duration, String> {
    match std::env::var("TCPAO_SPAWN_STORM_SECS") {
        Err(_) => Ok(STORM),
        Ok(v) => v
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("TCPAO_SPAWN_STORM_SECS={v:?}: not a number of seconds: {e}")),
    }
}

/// Runs `ip ARGS` in the calling thread's network namespace.
fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip (install iproute2): {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Interfaces of the calling thread's namespace with (rx bytes, tx bytes).
fn netdev() -> Result<Vec<(String, u64, u64)>, String> {
    let text = fs::read_to_string("/proc/thread-self/net/dev")
        .map_err(|e| format!("/proc/thread-self/net/dev: {e}"))?;
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((name.trim().to_owned(), *v.first()?, *v.get(8)?))
        })
        .collect())
}

/// Fallback tunnel devices: a kernel with a tunnel driver built in (sit, ipip, ip_gre, ip_vti,
/// ip6_tunnel, ip6_gre, ip6_vti) creates one in every new namespace, unless the sysctl
/// `net.core.fb_tunnels_only_for_init_net` says otherwise. They are the kernel's, not
/// leaks from the host.
pub const FALLBACK_TUNNELS: [&str; 10] = [
    "sit0",
    "tunl0",
    "gre0",
    "gretap0",
    "erspan0",
    "ip_vti0",
    "ip6tnl0",
    "ip6gre0",
    "ip6_vti0",
    "ip6erspan0",
];

fn netns_isolation(ctx: &Ctx) -> TestResult {
    let before = netdev()?;
    unshare(CloneFlags::CLONE_NEWNET)?;
    let after = netdev()?;
    let names: Vec<&str> = after.iter().map(|(n, _, _)| n.as_str()).collect();
    let (fallback, other): (Vec<&str>, Vec<&str>) =
        names.iter().partition(|n| FALLBACK_TUNNELS.contains(n));
    crate::ensure!(
        other == ["lo"],
        "fresh namespace should hold only lo (and the kernel's fallback tunnel devices), holds {names:?}"
    );
    ctx.diag(format!(
        "host namespace had {} interfaces, the new one has lo{}",
        before.len(),
        if fallback.is_empty() {
            String::new()
        } else {
            format!(" and this kernel's fallback tunnels {fallback:?}")
        }
    ));
    ip(&["link", "set", "lo", "up"])?;
    // A listener on loopback in this namespace serves a connection from this namespace.
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let mut c = TcpStream::connect_timeout(&addr, ctx.timeout())?;
    let (mut s, _) = l.accept()?;
    c.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf)?;
    crate::ensure!(&buf == b"ping", "loopback echo got {buf:?}");
    Ok(Outcome::Pass)
}

const PAYLOAD: usize = 256 * 1024;

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8)) as u8
}

/// Two namespaces joined by a veth pair; 256 KiB go from one to the other and the peer's
/// count and checksum come back; the veth counters must show the bytes crossed the link.
fn veth_tcp(ctx: &Ctx, v6: bool) -> TestResult {
    let (a, b, plen, fam): (IpAddr, IpAddr, &str, &[&str]) = if v6 {
        ("fd00:77::1".parse()?, "fd00:77::2".parse()?, "64", &["-6"])
    } else {
        ("10.77.0.1".parse()?, "10.77.0.2".parse()?, "24", &["-4"])
    };
    unshare(CloneFlags::CLONE_NEWNET)?;
    let deadline = Instant::now() + ctx.timeout();

    let (ns_tx, ns_rx) = mpsc::channel::<Result<String, String>>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let server_addr = SocketAddr::new(b, 7777);
    let peer_fam: Vec<String> = fam.iter().map(|s| (*s).to_owned()).collect();
    let server = std::thread::Builder::new().name("test:peer".into()).spawn(
        move || -> Result<(u64, u64, u64), String> {
            if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
                let _ = ns_tx.send(Err(format!("peer unshare: {e}")));
                return Err(e.to_string());
            }
            let path = format!(
                "/proc/{}/task/{}/ns/net",
                std::process::id(),
                nix::unistd::gettid()
            );
            let _ = ns_tx.send(Ok(path));
            go_rx.recv().map_err(|e| e.to_string())?;
            let setup = || -> Result<TcpListener, String> {
                let f: Vec<&str> = peer_fam.iter().map(String::as_str).collect();
                let cidr = format!("{b}/{plen}");
                let mut add = f.clone();
                add.extend(["addr", "add", cidr.as_str(), "dev", "vb"]);
                if v6 {
                    add.push("nodad");
                }
                ip(&add)?;
                ip(&["link", "set", "vb", "up"])?;
                ip(&["link", "set", "lo", "up"])?;
                TcpListener::bind(server_addr).map_err(|e| format!("bind {server_addr}: {e}"))
            };
            let l = match setup() {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.clone()));
                    return Err(e);
                }
            };
            let _ = ready_tx.send(Ok(()));
            let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
            let (mut n, mut sum) = (0u64, 0u64);
            let mut buf = vec![0u8; 65536];
            loop {
                let k = s.read(&mut buf).map_err(|e| e.to_string())?;
                if k == 0 {
                    break;
                }
                for (j, byte) in buf[..k].iter().enumerate() {
                    if *byte != pattern(n as usize + j) {
                        return Err(format!("byte {} corrupted", n as usize + j));
                    }
                    sum = sum.wrapping_add(u64::from(*byte));
                }
                n += k as u64;
            }
            s.write_all(format!("{n} {sum}\n").as_bytes())
                .map_err(|e| e.to_string())?;
            let rx = netdev()?
                .into_iter()
                .find(|(name, _, _)| name == "vb")
                .map_or(0, |x| x.1);
            Ok((n, sum, rx))
        },
    )?;

    let peer_ns = ns_rx.recv_timeout(ctx.timeout())??;
    ip(&[
        "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &peer_ns,
    ])?;
    let cidr = format!("{a}/{plen}");
    let mut add: Vec<&str> = fam.to_vec();
    add.extend(["addr", "add", cidr.as_str(), "dev", "va"]);
    if v6 {
        add.push("nodad");
    }
    ip(&add)?;
    ip(&["link", "set", "va", "up"])?;
    ip(&["link", "set", "lo", "up"])?;
    let local: Vec<String> = netdev()?.into_iter().map(|(n, _, _)| n).collect();
    crate::ensure!(
        !local.iter().any(|n| n == "vb"),
        "vb should live in the peer namespace"
    );
    go_tx.send(())?;
    ready_rx.recv_timeout(ctx.timeout())??;

    // The link may need a moment to come up: retry until the deadline, never a fixed sleep.
    let mut c = loop {
        match TcpStream::connect_timeout(&server_addr, Duration::from_secs(2)) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                ctx.diag(format!("connect {server_addr}: {e}; retrying"));
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => crate::fail!("connect {server_addr}: {e}"),
        }
    };
    let data: Vec<u8> = (0..PAYLOAD).map(pattern).collect();
    let sum: u64 = data.iter().map(|&x| u64::from(x)).sum();
    c.write_all(&data)?;
    c.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    c.read_to_string(&mut reply)?;
    let peer = server.join().map_err(|_| "peer thread panicked")??;
    crate::ensure!(
        reply.trim() == format!("{PAYLOAD} {sum}"),
        "peer saw {:?}, sent {PAYLOAD} bytes with sum {sum}",
        reply.trim()
    );
    let (peer_n, peer_sum, vb_rx) = peer;
    crate::ensure!(
        (peer_n, peer_sum) == (PAYLOAD as u64, sum),
        "peer thread result {peer:?}"
    );
    let table = netdev()?;
    let tx = table.iter().find(|(n, _, _)| n == "va").map_or(0, |x| x.2);
    // Either end's counter proves the bytes crossed the link: va's tx or vb's rx.
    crate::ensure!(
        tx.max(vb_rx) >= PAYLOAD as u64,
        "neither va tx ({tx}) nor vb rx ({vb_rx}) shows {PAYLOAD} bytes: traffic did not cross the veth; local interfaces {table:?}"
    );
    ctx.diag(format!(
        "{PAYLOAD} bytes over veth {a} -> {b}, va tx_bytes {tx}, vb rx_bytes {vb_rx}"
    ));
    Ok(Outcome::Pass)
}

/// Crashes the guest kernel on purpose, but only inside a `tcpao-selftests vm` guest.
fn crash_guest_kernel(_: &Ctx) -> TestResult {
    let in_vm = std::env::var("TCPAO_IN_VM").is_ok_and(|v| v == "1");
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if !in_vm || !cmdline.contains("virtme") {
        crate::skip!("only inside a `tcpao-selftests vm` guest (TCPAO_IN_VM=1, virtme cmdline)");
    }
    fs::write("/proc/sysrq-trigger", "c")?;
    crate::fail!("the kernel did not crash")
}

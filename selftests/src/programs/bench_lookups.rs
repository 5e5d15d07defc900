// SPDX-License-Identifier: MIT OR Apache-2.0
//! `bench-lookups`: how the number of TCP-AO keys on a listener affects adding and deleting
//! keys and accepting connections (kernel `bench-lookups.c`). A benchmark, not a pass/fail
//! test: it is left out of the default run.
//!
//! For each size N the listener gets N keys 100:100 for generated /32 (/128) peer addresses
//! (`net.core.optmem_max` raised to 300 × N; one route sends the whole generated network
//! through the client's main address), then:
//!
//! - the client connects (timed until established) from the address of the oldest key,
//!   which is the deepest in the kernel's newest-first key list ("Connect: worst case"), and
//!   from a random generated address ("Connect: random-search"; upstream's client passes
//!   `rand_order = false` and prints the worst case twice, we really pick at random);
//! - the server deletes and re-adds keys: the oldest remaining key each time ("Delete:
//!   worst case"), a random key ("Delete: random-search") and the oldest with `del_async`
//!   ("Delete: async", no RCU grace period); every re-add is timed ("Add a new key").
//!
//! Each metric is printed as a KTAP diagnostic with min/max/mean/stddev in ms (sample
//! standard deviation; upstream prints `sqrt(mean / n)`), plus the ratio of synchronous to
//! asynchronous delete measured in the same run. The connections are captured and
//! cross-checked like every other test. The server closes each connection first (its side
//! ends in TIME-WAIT): when the client closed first, a late duplicate of the client's last
//! ACK sometimes reached the listener after the server's socket was gone, and the listener,
//! verifying it as a possible syncookie ACK with ISNs guessed from SEQ − 1 and ACK − 1,
//! counted `TCPAOBad` (seen in about a third of the runs on Linux 7.2).
//!
//! Running it: `tcpao-selftests bench-lookups/` runs N = 512 and 1024 with 20 iterations per
//! metric (the sizes that are quick under TCG emulation), the other sizes skip;
//! `tcpao-selftests --bench bench-lookups/` runs the full ladder 512 … 8192 with 100
//! iterations, as upstream.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::SockAddr;
use tcpao_sys::{KeySelector, PeerPrefix, TcpAoExt};

use crate::failure;
use crate::netns;
use crate::outcome::{Failure, OrFail, Outcome, PeerResult};
use crate::peers::Peer;
use crate::probe::Feature;
use crate::programs::run_case;
use crate::registry::{Ctx, Test};
use crate::rng::Rng;
use crate::sockets::{self, Connect, TestKey};
use crate::topology::{Family, Netlink, TopologyConfig, VETH_NAME};

/// Key counts of the upstream ladder.
pub const SIZES: [usize; 5] = [512, 1024, 2048, 4096, 8192];
/// Sizes run without `--bench`.
const QUICK_SIZES: usize = 2;
/// Iterations per metric with `--bench` (upstream `BENCH_NR_ITERS`) and without.
const BENCH_ITERS: usize = 100;
const QUICK_ITERS: usize = 20;
/// Client ports: one per connection of a test (at most 2 × [`BENCH_ITERS`]).
const FIRST_CLIENT_PORT: u16 = 20000;
/// Option memory charged per key (upstream `KERNEL_TCP_AO_KEY_SZ_ROUND_UP`).
const KEY_OPTMEM: usize = 300;

/// The program's tests: one per size and family, hidden (run only when named).
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    for (i, &n) in SIZES.iter().enumerate() {
        for family in Family::ALL {
            let mut req = vec![Feature::Netns, Feature::Veth, Feature::TcpAo];
            if family == Family::Ipv6 {
                req.push(Feature::Ipv6);
            }
            let quick = i < QUICK_SIZES;
            v.push(
                Test::new(
                    format!("bench-lookups/{}/keys-{n}", family.name()),
                    move |ctx: &Ctx| {
                        if !quick && !ctx.bench() {
                            return Ok(Outcome::Skip(format!(
                                "{n} keys run only in benchmark mode (--bench)"
                            )));
                        }
                        let iters = if ctx.bench() {
                            BENCH_ITERS
                        } else {
                            QUICK_ITERS
                        };
                        run_case(
                            ctx,
                            family,
                            &TopologyConfig::default(),
                            |p| server(p, n, iters),
                            |p| client(p, n, iters),
                        )
                    },
                )
                .requires(&req)
                .timeout(Duration::from_secs(120 + n as u64 / 16))
                .hidden(),
            );
        }
    }
    v
}

/// The generated network: 10.99.0.0/16 or 2001:db8:99::/64. The server routes it through the
/// client's main address, so reaching a generated address needs no neighbour resolution of
/// its own (upstream adds a host route per address; a connected route made each first
/// SYN-ACK to a new IPv6 address wait about a second for neighbour discovery).
fn bench_net(family: Family) -> (IpAddr, u8) {
    match family {
        Family::Ipv4 => (IpAddr::V4(Ipv4Addr::new(10, 99, 0, 0)), 16),
        Family::Ipv6 => (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 0)),
            64,
        ),
    }
}

/// The `i`-th generated peer address: 10.99.0.0/16 or 2001:db8:99::/64, odd host numbers
/// (upstream `gen_tcp_addr(net, 2 * i + 1)`).
fn gen_addr(family: Family, i: usize) -> IpAddr {
    let host = 2 * i as u32 + 1;
    match family {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(10, 99, 0, 0)) + host,
        )),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(
            u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 0)) + u128::from(host),
        )),
    }
}

/// Running statistics (Welford), in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    n: u64,
    min: u64,
    max: u64,
    mean: f64,
    m2: f64,
}

impl Stats {
    fn add(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if self.n == 0 {
            (self.min, self.max) = (ns, ns);
        } else {
            self.min = self.min.min(ns);
            self.max = self.max.max(ns);
        }
        self.n += 1;
        let delta = ns as f64 - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (ns as f64 - self.mean);
    }

    fn stddev(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f64).sqrt()
        }
    }

    fn line(&self, desc: &str, keys: usize) -> String {
        let ms = |ns: f64| ns / 1e6;
        format!(
            "{desc:<22} {keys} keys: min={:.3}ms max={:.3}ms mean={:.3}ms stddev={:.3}ms (n={})",
            ms(self.min as f64),
            ms(self.max as f64),
            ms(self.mean),
            ms(self.stddev()),
            self.n
        )
    }
}

fn timed<T>(st: &mut Stats, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let r = f();
    st.add(t0.elapsed());
    r
}

fn server(p: &Peer<'_>, n: usize, iters: usize) -> PeerResult {
    let family = p.family();
    netns::sysctl_write("net/core/optmem_max", &(KEY_OPTMEM * n).to_string())
        .or_fail("raising net.core.optmem_max failed")?;
    let lsk = sockets::listen(p, p.port(), 16)?;
    let nl = Netlink::open().map_err(|e| Failure::Setup(e.to_string()))?;
    let ips: Vec<IpAddr> = (0..n).map(|i| gen_addr(family, i)).collect();
    let keys: Vec<TestKey> = ips.iter().map(|ip| TestKey::new(*ip, 100, 100)).collect();
    let setup = Instant::now();
    let (net, net_prefix) = bench_net(family);
    nl.add_route_via(p.link().veth_index, net, net_prefix, p.remote_addr())
        .map_err(|e| Failure::Setup(format!("route {net}/{net_prefix}: {e}")))?;
    for (ip, k) in ips.iter().zip(&keys) {
        lsk.add_ao_key(&k.to_ao_key()?)
            .map_err(|e| failure!("adding key {} of {n} ({ip}) failed: {e}", keys.len()))?;
        sockets::register(p, k);
    }
    p.diag(format!(
        "{n} keys set up in {:.1} ms",
        setup.elapsed().as_secs_f64() * 1e3
    ));
    p.sync()?; // keys in place => connect
    for _ in 0..2 * iters {
        p.sync()?;
        let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
            .ok_or_else(|| failure!("no connection was accepted within {:?}", p.timeout()))?;
        drop(sk);
    }
    let selector = |ip: IpAddr| -> PeerResult<KeySelector> {
        Ok(KeySelector {
            peer: PeerPrefix::new(ip, family.host_prefix()).or_fail("bad key prefix")?,
            send_id: 100,
            recv_id: 100,
            vrf: None,
        })
    };
    let mut add = Stats::default();
    let mut del_worst = Stats::default();
    let mut del_rand = Stats::default();
    let mut del_async = Stats::default();
    let mut rng = Rng::from_clock();
    // The kernel's key list is newest first; `order` mirrors it oldest (deepest) first, and a
    // deleted and re-added key becomes the newest.
    let mut order: std::collections::VecDeque<usize> = (0..n).collect();
    for (stats, random, asynchronous) in [
        (&mut del_worst, false, false),
        (&mut del_rand, true, false),
        (&mut del_async, false, true),
    ] {
        for _ in 0..iters {
            let pos = if random {
                (rng.next_u64() % n as u64) as usize
            } else {
                0
            };
            let idx = order.remove(pos).unwrap_or(0);
            order.push_back(idx);
            let sel = selector(ips[idx])?;
            let key = keys[idx].to_ao_key()?;
            let r = timed(stats, || {
                if asynchronous {
                    lsk.del_ao_key_async(&sel)
                } else {
                    lsk.del_ao_key(&sel)
                }
            });
            r.map_err(|e| failure!("deleting the key for {} failed: {e}", ips[idx]))?;
            timed(&mut add, || lsk.add_ao_key(&key))
                .map_err(|e| failure!("re-adding the key for {} failed: {e}", ips[idx]))?;
        }
    }
    p.diag(add.line("Add a new key", n));
    p.diag(del_worst.line("Delete: worst case", n));
    p.diag(del_rand.line("Delete: random-search", n));
    p.diag(del_async.line("Delete: async", n));
    if del_async.mean > 0.0 {
        p.diag(format!(
            "{n} keys: synchronous delete (worst case) / async delete, mean: {:.1}",
            del_worst.mean / del_async.mean
        ));
    }
    p.sync()?; // done
    Ok(())
}

fn client(p: &Peer<'_>, n: usize, iters: usize) -> PeerResult {
    let family = p.family();
    let nl = Netlink::open().map_err(|e| Failure::Setup(e.to_string()))?;
    // Draw the source addresses now (worst case: the oldest key's; random: uniformly) and
    // configure them before anything is timed.
    let mut rng = Rng::from_clock();
    let picks: Vec<(bool, usize)> = (0..2 * iters)
        .map(|i| {
            let rand = i >= iters;
            let idx = if rand {
                (rng.next_u64() % n as u64) as usize
            } else {
                0
            };
            (rand, idx)
        })
        .collect();
    let mut added = std::collections::BTreeSet::new();
    for (_, idx) in &picks {
        let ip = gen_addr(family, *idx);
        if added.insert(ip) {
            nl.add_address(p.link().veth_index, ip, family.host_prefix())
                .map_err(|e| Failure::Setup(format!("address {ip}: {e}")))?;
        }
    }
    wait_not_tentative(p, &added)?;
    let mut registered = false;
    p.sync()?; // the server's keys are in place
    let mut worst = Stats::default();
    let mut random = Stats::default();
    for (conn, (rand, idx)) in picks.into_iter().enumerate() {
        let stats = if rand { &mut random } else { &mut worst };
        let ip = gen_addr(family, idx);
        let sk = sockets::tcp_socket(family)?;
        sk.bind_device(Some(VETH_NAME.as_bytes()))
            .or_fail("SO_BINDTODEVICE failed")?;
        // A port of our own per connection: a 4-tuple used twice (the kernel's random
        // choice repeats within 100 connects from one address) would meet the server's
        // TIME-WAIT socket and start a second connection on the same 4-tuple.
        let port = FIRST_CLIENT_PORT + u16::try_from(conn).unwrap_or(0);
        sk.bind(&SockAddr::from(SocketAddr::new(ip, port)))
            .or_fail(&format!("bind({ip} port {port}) failed"))?;
        let key = TestKey::new(p.remote_addr(), 100, 100);
        if registered {
            sk.add_ao_key(&key.to_ao_key()?)
                .map_err(|e| failure!("adding the client key failed: {e}"))?;
        } else {
            sockets::add_key(p, &sk, &key)?;
            registered = true;
        }
        p.sync()?; // the server waits in accept()
        let r = timed(stats, || {
            sockets::connect(p, &sk, p.remote_addr(), p.port(), p.deadline(), || false)
        })?;
        match r {
            Connect::Established => {}
            r => return Err(failure!("connect() from {ip} ended with {r:?}")),
        }
        // Let the server close first, so its side ends in TIME-WAIT. When the client
        // closes first, a late duplicate of its last ACK can reach the listener after the
        // server's socket is gone; the listener verifies it as a possible syncookie ACK
        // (ISNs guessed from SEQ - 1 and ACK - 1), fails, and counts TCPAOBad.
        wait_eof(p, &sk)?;
    }
    p.diag(worst.line("Connect: worst case", n));
    p.diag(random.line("Connect: random-search", n));
    p.sync()?; // the server finished its deletes
    Ok(())
}

/// Wait until the server closed the connection (`read()` returns 0).
fn wait_eof(p: &Peer<'_>, sk: &socket2::Socket) -> PeerResult {
    let mut buf = [0u8; 64];
    loop {
        match sockets::read_now(sk, &mut buf)? {
            None => return Ok(()),
            Some(0) => {
                if !sockets::wait_fd(p, sk, nix::poll::PollFlags::POLLIN, p.deadline(), || false)? {
                    return Err(failure!("the server did not close the connection in time"));
                }
            }
            Some(_) => return Err(failure!("the server sent data on a benchmark connection")),
        }
    }
}

/// Wait until every address of `addrs` takes packets ([`crate::topology::any_unready`]).
fn wait_not_tentative(p: &Peer<'_>, addrs: &std::collections::BTreeSet<IpAddr>) -> PeerResult {
    let addrs: Vec<IpAddr> = addrs.iter().copied().collect();
    let ok = p.wait_for(p.deadline(), || {
        let unready = crate::topology::any_unready(&addrs)
            .or_fail("reading /proc/thread-self/net/if_inet6 or ipv6_route failed")?;
        Ok((!unready).then_some(()))
    })?;
    ok.ok_or_else(|| {
        failure!(
            "the client's addresses stayed tentative or without a local route for {:?}",
            p.timeout()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcpao_refimpl::verify::keys::Prefix;

    #[test]
    fn stats_are_welford_with_sample_stddev() {
        let mut s = Stats::default();
        for ms in [2u64, 4, 4, 4, 5, 5, 7, 9] {
            s.add(Duration::from_millis(ms));
        }
        assert_eq!((s.min, s.max, s.n), (2_000_000, 9_000_000, 8));
        assert!((s.mean - 5e6).abs() < 1.0);
        // Sample variance of the classic example: 32 / 7.
        assert!((s.stddev() - (32.0f64 / 7.0).sqrt() * 1e6).abs() < 1.0);
        assert!(s.line("Delete: async", 512).contains("mean=5.000ms"));
    }

    #[test]
    fn generated_addresses_are_odd_hosts_of_the_bench_network() {
        assert_eq!(gen_addr(Family::Ipv4, 0).to_string(), "10.99.0.1");
        assert_eq!(gen_addr(Family::Ipv4, 8191).to_string(), "10.99.63.255");
        assert_eq!(gen_addr(Family::Ipv6, 1).to_string(), "2001:db8:99::3");
        let (a, len) = bench_net(Family::Ipv4);
        let contains = |a, len, ip| Prefix::new(a, len).unwrap().contains(ip);
        assert!(contains(a, len, gen_addr(Family::Ipv4, 8191)));
        let (a, len) = bench_net(Family::Ipv6);
        assert!(contains(a, len, gen_addr(Family::Ipv6, 8191)));
    }
}

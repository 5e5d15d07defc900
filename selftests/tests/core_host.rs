// SPDX-License-Identifier: MIT OR Apache-2.0
//! The suite's core on the host kernel (no TCP-AO needed): topology, two-peer runner, echo,
//! counters, capture, failure propagation and teardown. Needs root (netns, veth, AF_PACKET);
//! without it every test here says so and returns.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tcpao_selftests::counters::Counters;
use tcpao_selftests::netns::NetnsHolds;
use tcpao_selftests::peers::{Failure, Outcome, PairConfig, TEST_TIMEOUT, run_pair};
use tcpao_selftests::sockets::{self, Connect};
use tcpao_selftests::topology::{Family, Netlink};
use tcpao_selftests::failure;

/// The leak check counts this process's sockets: run the tests of this file one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("skipped: needs root for network namespaces");
        false
    }
}

#[test]
fn plain_tcp_echo_across_the_veth_both_families() {
    if !root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for family in Family::ALL {
        let cfg = PairConfig::new(family);
        let server_mib = Mutex::new(None);
        let report = run_pair(
            &cfg,
            |p| {
                let lsk = sockets::listen(p, p.port(), 1)?;
                p.sync()?;
                let sk = sockets::accept(p, &lsk, p.deadline_in(TEST_TIMEOUT), || false)?
                    .ok_or_else(|| failure!("server: no connection within the timeout"))?;
                let before = Counters::netns()?;
                let served = sockets::echo_server(p, &sk, p.deadline_in(TEST_TIMEOUT))?;
                let after = Counters::netns()?;
                *server_mib.lock().unwrap() = Some((before, after));
                if served != 2000 {
                    return Err(failure!("server served {served} bytes, expected 2000"));
                }
                Ok(())
            },
            |p| {
                let sk = sockets::client_socket(p)?;
                p.sync()?;
                sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
                let est = Counters::netns()?;
                if est.netns.curr_estab() != 1 {
                    return Err(failure!("client: CurrEstab is {} with one connection", est.netns.curr_estab()));
                }
                sockets::echo_verify(p, &sk, 20, 100, p.deadline_in(TEST_TIMEOUT))?;
                Ok(())
            },
        );
        assert_eq!(report.outcome, Outcome::Pass, "{family:?}: {:?}", report.diagnostics);
        let x = report.xcheck.expect("capture was on");
        // 3-way handshake + 20 requests + 20 echoes + FIN/ACK exchanges, each seen exactly once.
        assert!(x.tcp_segments >= 43, "{family:?}: only {} TCP segments captured", x.tcp_segments);
        assert!(x.tcp_segments < 200, "{family:?}: {} segments: duplicates?", x.tcp_segments);
        assert_eq!((x.ao_segments, x.md5_segments), (0, 0));
        let (before, after) = server_mib.lock().unwrap().take().unwrap();
        // Unsigned traffic moves no AO/MD5 counter.
        after.assert_grew_exactly(&before, tcpao_selftests::counters::Grew::empty()).unwrap();
        eprintln!("{family:?}: setup {:?}, total {:?}", report.setup_time, report.total_time);
    }
}

#[test]
fn failure_of_one_side_releases_the_other_at_once() {
    if !root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut cfg = PairConfig::new(Family::Ipv4);
    cfg.capture = None;
    let start = Instant::now();
    let report = run_pair(
        &cfg,
        |p| {
            p.sync()?;
            Err(failure!("server gives up on purpose"))
        },
        |p| {
            p.sync()?;
            // Would wait 20 s for a connection nobody accepts; must return when the server fails.
            let sk = sockets::client_socket(p)?;
            let r = sockets::connect(p, &sk, p.family().wrong_addr(), p.port(), p.deadline_in(Duration::from_secs(20)), || false);
            match r {
                Err(Failure::PeerFailed) => Err(Failure::PeerFailed),
                Ok(Connect::Failed(_)) => {
                    // No route to the wrong address: wait on the barrier instead.
                    p.sync()
                }
                other => Err(failure!("client: unexpected {other:?}")),
            }
        },
    );
    assert_eq!(report.outcome, Outcome::Fail("server: server gives up on purpose".into()));
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
}

#[test]
fn panics_are_failures_and_nothing_leaks() {
    if !root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let nl = Netlink::open().unwrap();
    let links_before = nl.link_names().unwrap();
    let holds_before = NetnsHolds::scan().unwrap();
    let inodes = Mutex::new(Vec::new());
    for round in 0..3 {
        let report = run_pair(
            &PairConfig::new(Family::Ipv6),
            |p| {
                inodes.lock().unwrap().push(p.netns_inode());
                let _lsk = sockets::listen(p, p.port(), 1)?;
                p.sync()?;
                if round == 1 {
                    panic!("server panics on purpose");
                }
                p.sync()
            },
            |p| {
                inodes.lock().unwrap().push(p.netns_inode());
                let _sk = sockets::client_socket(p)?;
                p.sync()?;
                p.sync()
            },
        );
        if round == 1 {
            match &report.outcome {
                Outcome::Fail(m) => assert!(m.contains("server panicked: server panics on purpose"), "{m}"),
                o => panic!("panic not reported: {o:?}"),
            }
        } else {
            assert_eq!(report.outcome, Outcome::Pass, "{:?}", report.diagnostics);
        }
    }
    let holds_after = NetnsHolds::scan().unwrap();
    for ino in inodes.lock().unwrap().iter() {
        assert!(*ino != 0);
        assert!(!holds_after.holds(*ino), "namespace net:[{ino}] is still referenced: {holds_after:?}");
    }
    assert!(holds_after.mounts.is_empty(), "nsfs mounts: {:?}", holds_after.mounts);
    assert_eq!(holds_after.sockets, holds_before.sockets, "sockets leaked");
    assert_eq!(nl.link_names().unwrap(), links_before, "interfaces leaked into the host namespace");
}

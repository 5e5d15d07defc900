// SPDX-License-Identifier: MIT OR Apache-2.0
//! The suite's core on the host kernel (no TCP-AO needed): topology, two-peer runner, echo,
//! counters, capture, failure propagation and teardown. Needs root (netns, veth, AF_PACKET);
//! without it every trial is reported as ignored, and the reason is printed once.

use std::sync::Mutex;

use libtest_mimic::{Arguments, Trial};
use std::time::{Duration, Instant};

use tcpao_selftests::counters::{Counters, Mib};
use tcpao_selftests::failure;
use tcpao_selftests::netns::NetnsHolds;
use tcpao_selftests::outcome::{Failure, Outcome};
use tcpao_selftests::peers::{PairConfig, TEST_TIMEOUT, run_pair};
use tcpao_selftests::sockets::{self, Connect};
use tcpao_selftests::topology::{Family, Netlink};

/// The leak check counts this process's sockets: run the tests of this file one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn plain_tcp_echo_across_the_veth_both_families() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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
                let est = Mib::Tcp.read("CurrEstab")?;
                if est != 1 {
                    return Err(failure!("client: CurrEstab is {est} with one connection"));
                }
                sockets::echo_verify(p, &sk, 20, 100, p.deadline_in(TEST_TIMEOUT))?;
                Ok(())
            },
        );
        assert_eq!(
            report.outcome,
            Outcome::Pass,
            "{family:?}: {:?}",
            report.diagnostics
        );
        let x = report.xcheck.expect("capture was on");
        // 3-way handshake + 20 requests + 20 echoes + FIN/ACK exchanges, each seen exactly once.
        assert!(
            x.tcp_segments >= 43,
            "{family:?}: only {} TCP segments captured",
            x.tcp_segments
        );
        assert!(
            x.tcp_segments < 200,
            "{family:?}: {} segments: duplicates?",
            x.tcp_segments
        );
        assert_eq!((x.ao_segments, x.md5_segments), (0, 0));
        let (before, after) = server_mib.lock().unwrap().take().unwrap();
        // Unsigned traffic moves no AO/MD5 counter.
        after
            .assert_grew_exactly(&before, tcpao_selftests::counters::Grew::empty())
            .unwrap();
        eprintln!(
            "{family:?}: setup {:?}, total {:?}",
            report.setup_time, report.total_time
        );
    }
}

fn failure_of_one_side_releases_the_other_at_once() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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
            let r = sockets::connect(
                p,
                &sk,
                p.family().wrong_addr(),
                p.port(),
                p.deadline_in(Duration::from_secs(20)),
                || false,
            );
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
    assert_eq!(
        report.outcome,
        Outcome::Fail("server: server gives up on purpose".into())
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

fn panics_are_failures_and_nothing_leaks() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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
                Outcome::Fail(m) => assert!(
                    m.contains("server panicked: server panics on purpose"),
                    "{m}"
                ),
                o => panic!("panic not reported: {o:?}"),
            }
        } else {
            assert_eq!(report.outcome, Outcome::Pass, "{:?}", report.diagnostics);
        }
    }
    let holds_after = NetnsHolds::scan().unwrap();
    for ino in inodes.lock().unwrap().iter() {
        assert!(*ino != 0);
        assert!(
            !holds_after.holds(*ino),
            "namespace net:[{ino}] is still referenced: {holds_after:?}"
        );
    }
    assert!(
        holds_after.mounts.is_empty(),
        "nsfs mounts: {:?}",
        holds_after.mounts
    );
    assert_eq!(holds_after.sockets, holds_before.sockets, "sockets leaked");
    assert_eq!(
        nl.link_names().unwrap(),
        links_before,
        "interfaces leaked into the host namespace"
    );
}

const MD5_PW: &[u8] = b"md5 secret shared by both peers";

/// Server and client with TCP-MD5 keys; returns the report. `server_capture_pw` is what the
/// server *tells the capture* its key is (normally the real one).
fn md5_pair(
    family: Family,
    server_pw: &'static [u8],
    server_capture_pw: &'static [u8],
    expect_connect: bool,
    save: Option<&std::path::Path>,
) -> tcpao_selftests::peers::PairReport {
    use tcpao_refimpl::verify::keys::EntryKey;
    use tcpao_selftests::capture::{CaptureConfig, key_entry};
    use tcpao_sys::{MasterKey, Md5Ext, Md5Key, PeerPrefix};
    let mut cfg = PairConfig::new(family);
    if let Some(dir) = save {
        cfg.capture = Some(CaptureConfig::new("md5/ipv4/save", Some(dir.to_path_buf())));
    }
    run_pair(
        &cfg,
        move |p| {
            let lsk = sockets::listen(p, p.port(), 1)?;
            let key = Md5Key {
                peer: PeerPrefix::host(p.remote_addr()).unwrap(),
                vrf: None,
                key: MasterKey::new(server_pw).unwrap(),
            };
            lsk.add_md5_key(&key)
                .map_err(|e| failure!("server: TCP_MD5SIG_EXT: {e}"))?;
            let key = EntryKey::Md5(tcpao_refimpl::MasterKey::new(server_capture_pw));
            p.capture().unwrap().register(
                p.side(),
                key_entry(key, p.local_addr(), p.remote_addr(), family.host_prefix()),
            );
            let before = Counters::netns()?;
            p.sync()?;
            if expect_connect {
                let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
                    .ok_or_else(|| failure!("server: no connection"))?;
                sockets::echo_server(p, &sk, p.deadline())?;
            } else {
                let moved = p.wait_for(p.deadline(), || {
                    Ok((Counters::netns()?.ns_delta(&before, "TCPMD5Failure") > 0).then_some(()))
                })?;
                if moved.is_none() {
                    return Err(failure!("TCPMD5Failure did not increase"));
                }
                p.signal();
            }
            Ok(())
        },
        move |p| {
            let sk = sockets::client_socket(p)?;
            sockets::add_md5_key(p, &sk, p.remote_addr(), family.host_prefix(), MD5_PW)?;
            p.sync()?;
            if expect_connect {
                sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
                sockets::echo_verify(p, &sk, 20, 100, p.deadline())?;
            } else {
                match sockets::connect(p, &sk, p.remote_addr(), p.port(), p.deadline(), || {
                    p.peer_signals() > 0
                })? {
                    Connect::TimedOut => {}
                    r => return Err(failure!("client: expected a timeout, got {r:?}")),
                }
            }
            Ok(())
        },
    )
}

fn md5_traffic_is_captured_and_verified_by_the_reference() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for family in Family::ALL {
        let report = md5_pair(family, MD5_PW, MD5_PW, true, None);
        assert_eq!(
            report.outcome,
            Outcome::Pass,
            "{family:?}: {:?}",
            report.diagnostics
        );
        let x = report.xcheck.unwrap();
        assert!(
            x.md5_segments >= 43,
            "{family:?}: {} MD5 segments",
            x.md5_segments
        );
        assert_eq!(
            x.md5_segments, x.tcp_segments,
            "{family:?}: every segment of the flow is signed"
        );
        assert_eq!(
            x.verified, x.md5_segments,
            "{family:?}: every MD5 segment was checked"
        );
        assert_eq!(x.rejected, 0);
        assert!(report.diagnostics.iter().any(|d| d == &format!("xcheck: {} segments verified by tcpao-refimpl", x.verified)));
    }
}

fn md5_wrong_key_is_counted_and_the_reference_agrees() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let report = md5_pair(
        Family::Ipv4,
        b"server has another key",
        b"server has another key",
        false,
        None,
    );
    assert_eq!(report.outcome, Outcome::Pass, "{:?}", report.diagnostics);
    let x = report.xcheck.unwrap();
    assert!(
        x.verified >= 1,
        "the client's SYNs were verified with the client's key"
    );
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.contains("server: kernel TCPMD5Failure +")),
        "{:?}",
        report.diagnostics
    );
}

fn xcheck_rule_1_fails_when_the_reference_rejects_a_kernel_signed_segment() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The server installs the right key but tells the capture another one.
    let report = md5_pair(
        Family::Ipv6,
        MD5_PW,
        b"not the key the kernel has",
        true,
        None,
    );
    match &report.outcome {
        Outcome::Fail(m) => assert!(
            m.contains("signed by the kernel is rejected by tcpao-refimpl"),
            "{m}"
        ),
        o => panic!("the cross-check did not notice: {o:?}"),
    }
}

fn xcheck_rule_2_fails_when_the_kernel_counts_bad_segments_the_reference_accepts() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The server's kernel has a different key (so it counts TCPMD5Failure), but the capture is
    // told the server holds the client's key: the reference then accepts what the kernel
    // rejected, which is exactly the disagreement rule 2 exists for.
    let report = md5_pair(Family::Ipv4, b"server has another key", MD5_PW, false, None);
    match &report.outcome {
        Outcome::Fail(m) => assert!(
            m.contains("the server kernel counted") && m.contains("TCPMD5Failure"),
            "{m}"
        ),
        o => panic!("the cross-check did not notice: {o:?}"),
    }
}

fn save_pcaps_writes_a_capture_and_a_keys_file() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = std::env::temp_dir().join(format!("tcpao-suite-save-{}", std::process::id()));
    let report = md5_pair(Family::Ipv4, MD5_PW, MD5_PW, true, Some(&dir));
    assert_eq!(report.outcome, Outcome::Pass, "{:?}", report.diagnostics);
    let pcap = std::fs::read(dir.join("md5_ipv4_save.pcap")).unwrap();
    let keys = std::fs::read_to_string(dir.join("md5_ipv4_save.keys.toml")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(&pcap[..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
    assert_eq!(&pcap[20..24], &1u32.to_le_bytes(), "LINKTYPE_ETHERNET");
    // Walk the records: their count is the number of frames the capture saw.
    let (mut off, mut n) = (24usize, 0usize);
    while off + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16 + len;
        n += 1;
    }
    assert_eq!(
        off,
        pcap.len(),
        "records end exactly at the end of the file"
    );
    assert_eq!(n, report.xcheck.unwrap().frames);
    assert_eq!(keys.matches("[[mkt]]").count(), 2, "{keys}");
    assert!(keys.contains("algorithm = \"md5\""), "{keys}");
    assert!(
        keys.contains("local = \"10.0.254.1\"") && keys.contains("peer = \"10.0.1.1/32\""),
        "{keys}"
    );
}

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!(
            "note: every trial is ignored: network namespaces, veth pairs and AF_PACKET need root"
        );
    }
    let tests: [(&str, fn()); 8] = [
        (
            "plain_tcp_echo_across_the_veth_both_families",
            plain_tcp_echo_across_the_veth_both_families,
        ),
        (
            "failure_of_one_side_releases_the_other_at_once",
            failure_of_one_side_releases_the_other_at_once,
        ),
        (
            "panics_are_failures_and_nothing_leaks",
            panics_are_failures_and_nothing_leaks,
        ),
        (
            "md5_traffic_is_captured_and_verified_by_the_reference",
            md5_traffic_is_captured_and_verified_by_the_reference,
        ),
        (
            "md5_wrong_key_is_counted_and_the_reference_agrees",
            md5_wrong_key_is_counted_and_the_reference_agrees,
        ),
        (
            "xcheck_rule_1_fails_when_the_reference_rejects_a_kernel_signed_segment",
            xcheck_rule_1_fails_when_the_reference_rejects_a_kernel_signed_segment,
        ),
        (
            "xcheck_rule_2_fails_when_the_kernel_counts_bad_segments_the_reference_accepts",
            xcheck_rule_2_fails_when_the_kernel_counts_bad_segments_the_reference_accepts,
        ),
        (
            "save_pcaps_writes_a_capture_and_a_keys_file",
            save_pcaps_writes_a_capture_and_a_keys_file,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            Trial::test(name, move || {
                f();
                Ok(())
            })
            .with_ignored_flag(!root)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The real binary, run as a user would: broken tests are reported, never passed.
#![forbid(unsafe_code)]

use std::process::{Command, Output};

use tcpao_selftests::ktap::{Status, Summary};

fn run(args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpao-selftests"))
        .args(args)
        .env_remove("KSFT_MACHINE_SLOW")
        .env_remove("kselftest_override_timeout")
        .env_remove("TCPAO_IN_VM")
        .output()
        .expect("run tcpao-selftests");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

#[test]
fn list_hides_selftest_self_unless_named() {
    let (out, text) = run(&["--list"]);
    assert!(out.status.success());
    assert!(text.lines().any(|l| l == "harness/ipv4/veth-tcp"), "{text}");
    assert!(!text.contains("selftest-self/"), "{text}");
    let (_, text) = run(&["--list", "selftest-self/"]);
    assert!(
        text.lines().any(|l| l == "selftest-self/any/hang"),
        "{text}"
    );
}

#[test]
fn fail_panic_and_hang_are_failures_and_the_run_goes_on() {
    let (out, text) = run(&[
        "selftest-self/any/fail",
        "selftest-self/any/panic",
        "selftest-self/any/hang",
        "--exact",
        "--jobs",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let s = Summary::parse(&text);
    assert_eq!(s.planned, 3);
    assert_eq!(s.ktap_results, 3, "every test reported: {text}");
    assert_eq!(s.totals.fail, 3);
    assert!(
        s.failures
            .iter()
            .any(|(n, st)| n == "selftest-self/any/hang" && *st == Status::Timeout(2))
    );
    assert!(text.contains("panicked: deliberate panic"), "{text}");
    assert!(
        text.ends_with("# Totals: pass:0 fail:3 xfail:0 xpass:0 skip:0 error:0\n"),
        "{text}"
    );
}

#[test]
fn an_aborting_binary_leaves_a_truncated_plan() {
    let (out, text) = run(&[
        "selftest-self/any/fail",
        "selftest-self/any/abort",
        "--exact",
    ]);
    assert_ne!(out.status.code(), Some(0));
    let s = Summary::parse(&text);
    assert_eq!(s.planned, 2);
    assert_eq!(s.ktap_results, 1);
    assert_eq!(s.exit_code(), 1, "a truncated stream is a failure");
}

#[test]
fn kernel_panic_test_refuses_to_run_outside_a_vm_guest() {
    let (out, text) = run(&["selftest-self/any/kernel-panic"]);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(
        text.contains("# SKIP only inside a `tcpao-selftests vm` guest"),
        "{text}"
    );
}

#[test]
fn nothing_selected_is_exit_4() {
    let (out, text) = run(&["no-such-test-name"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(text.starts_with("TAP version 13\n1..0\n"), "{text}");
}

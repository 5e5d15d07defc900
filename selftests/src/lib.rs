// SPDX-License-Identifier: MIT OR Apache-2.0
//! Network-namespace selftests for Linux TCP-AO and TCP-MD5, in the style of the kernel's
//! `tools/testing/selftests/net/tcp_ao`, with KTAP output and a `vm` mode that boots a
//! TCP-AO kernel under virtme-ng.
//!
//! # Adding tests
//!
//! A test is data: a stable name `program/family/case`, the kernel [`Feature`]s it needs,
//! an optional timeout, and a body returning a [`TestResult`]. Each program module exposes
//! `pub fn tests() -> Vec<Test>`, and [`all_tests`] chains those lists (add one line there).
//!
//! ```no_run
//! use std::time::Duration;
//! use tcpao_selftests::{Ctx, Feature, Outcome, Test, TestResult, ensure};
//!
//! pub fn tests() -> Vec<Test> {
//!     ["ipv4", "ipv6"].into_iter().map(|fam| {
//!         Test::new(format!("connect/{fam}/connect-good"), connect_good)
//!             .requires(&[Feature::Netns, Feature::Veth, Feature::TcpAo])
//!             .timeout(Duration::from_secs(30))
//!     }).collect()
//! }
//!
//! fn connect_good(ctx: &Ctx) -> TestResult {
//!     let v6 = ctx.family() == "ipv6";   // any error propagated with `?` fails the test
//!     ctx.diag(format!("v6={v6}"));        // printed as `# connect/ipv6/connect-good: v6=true`
//!     ensure!(!v6 || ctx.features().has(Feature::Ipv6), "no IPv6");
//!     Ok(Outcome::Pass)                    // or Outcome::skip(..), Outcome::xfail(..), fail!(..)
//! }
//! ```
//!
//! The harness ([`harness`]) runs each test in its own thread (`--jobs N` at a time), so a
//! body may `unshare(CLONE_NEWNET)` freely: the namespace belongs to its thread. A missing
//! feature skips the test with one reason (for TCP-AO: "Tests require TCP-AO support
//! (CONFIG_TCP_AO)"); a panic is a failure; a body that overruns its timeout is reported
//! `not ok … # TIMEOUT` and abandoned. Size internal deadlines from [`Ctx::timeout`], which
//! already includes the `KSFT_MACHINE_SLOW` factor, and poll for conditions instead of
//! sleeping a fixed time.
#![forbid(unsafe_code)]

pub mod capture;
pub mod cli;
pub mod counters;
pub mod fzsync;
pub mod harness;
pub mod ktap;
pub mod lab;
pub mod netns;
pub mod peers;
pub mod probe;
pub mod programs;
pub mod registry;
pub mod repair;
pub mod selfcheck;
pub mod sockets;
pub mod solo;
pub mod topology;
pub mod vm;

pub use probe::{Feature, Features};
pub use registry::{BoxError, Ctx, Outcome, Test, TestResult};

/// Every registered test, in run order. Program modules add their `tests()` here.
pub fn all_tests() -> Vec<Test> {
    let mut all = Vec::new();
    all.extend(selfcheck::tests());
    all.extend(programs::tests());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_names_are_unique_and_valid() {
        let all = all_tests();
        let mut names: Vec<&str> = all.iter().map(Test::name).collect();
        for n in &names {
            registry::validate_name(n).unwrap();
        }
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate test names");
        assert!(all.iter().any(|t| t.name() == "harness/ipv4/veth-tcp"));
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Network-namespace selftests for Linux TCP-AO and TCP-MD5, in the style of the kernel's
//! `tools/testing/selftests/net/tcp_ao`, with KTAP output and a `vm` mode that boots a
//! TCP-AO kernel under virtme-ng.
//!
//! # Writing a program
//!
//! A program is a module under [`programs`] with `pub fn tests() -> Vec<Test>`, added to
//! [`programs::tests`]. A case is registered for both families by a builder:
//! [`programs::PairTest`] runs a server and a client function, each in its own network
//! namespace joined by a veth pair, with every segment captured and cross-checked by
//! tcpao-refimpl; [`solo::SoloTest`] runs one function in one namespace (uAPI checks that
//! need a socket but no peer). Both functions return a [`PeerResult`]: `Err(failure!(..))`
//! with a full sentence fails the test, [`Failure::Skip`] skips it, [`Failure::XFail`] marks
//! a known kernel issue. The kernel's `connect.c`, as `programs/connect.rs` has it:
//!
//! ```no_run
//! use tcpao_selftests::counters::{Counters, Grew};
//! use tcpao_selftests::peers::Peer;
//! use tcpao_selftests::programs::PairTest;
//! use tcpao_selftests::sockets::{self, TestKey};
//! use tcpao_selftests::{PeerResult, Test, failure};
//!
//! pub fn tests() -> Vec<Test> {
//!     // connect/ipv4/basic and connect/ipv6/basic; requires TCP-AO, netns and veth.
//!     PairTest::new("connect", "basic").ao().build(server, client)
//! }
//!
//! fn server(p: &Peer<'_>) -> PeerResult {
//!     let lsk = sockets::listen(p, p.port(), 1)?;
//!     sockets::add_key(p, &lsk, &TestKey::new(p.remote_addr(), 100, 100))?; // and registers it
//!     p.sync()?;                                    // the client may connect now
//!     let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
//!         .ok_or_else(|| failure!("the server accepted no connection"))?;
//!     let before = Counters::of(&sk)?;               // netns MIB, TCP_AO_INFO, per-key
//!     sockets::echo_server(p, &sk, p.deadline())?;
//!     Counters::of(&sk)?.assert_grew_exactly(&before, Grew::GOOD)
//! }
//!
//! fn client(p: &Peer<'_>) -> PeerResult {
//!     let sk = sockets::client_socket(p)?;
//!     sockets::add_key(p, &sk, &TestKey::new(p.remote_addr(), 100, 100))?;
//!     p.sync()?;
//!     sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
//!     let before = Counters::of(&sk)?;
//!     sockets::echo_verify(p, &sk, 20, 100, p.deadline())?;
//!     Counters::of(&sk)?.assert_grew_exactly(&before, Grew::GOOD)
//! }
//! ```
//!
//! The harness ([`harness`]) runs each test in its own thread (`--jobs N` at a time), so a
//! body may `unshare(CLONE_NEWNET)` freely: the namespace belongs to its thread. A missing
//! feature skips the test with one reason (for TCP-AO: "Tests require TCP-AO support
//! (CONFIG_TCP_AO)"); a panic is a failure; a body that overruns its timeout is reported
//! `not ok … # TIMEOUT` and abandoned. Wait with the deadline helpers ([`peers::Peer::wait_for`],
//! [`sockets::accept`]), which include the `KSFT_MACHINE_SLOW` factor and return at once when
//! the other peer failed; never sleep a fixed time.
//!
//! # Layers
//!
//! From the bottom: [`outcome`] (how a test ends) and [`rng`]; [`netns`], [`topology`]
//! (addresses, [`topology::Family`], [`topology::Side`], veth and VRF setup); [`counters`];
//! [`capture`] (packet capture and the cross-check by tcpao-refimpl); [`peers`] and
//! [`solo`] (the runners); [`sockets`] and [`repair`] (what peers do); [`programs`]. No
//! module imports one above it (`docs/architecture.md` has the map).
#![forbid(unsafe_code)]

pub mod capture;
pub mod cli;
pub mod counters;
pub mod fuzz;
pub mod fzsync;
pub mod harness;
pub mod ktap;
pub mod lab;
pub mod netns;
pub mod outcome;
pub mod peers;
pub mod probe;
pub mod programs;
pub mod registry;
pub mod repair;
pub mod rng;
pub mod selfcheck;
pub mod sockets;
pub mod solo;
pub mod topology;
pub mod vm;

pub use outcome::{BoxError, Failure, OrFail, Outcome, PeerResult, TestResult};
pub use probe::{Feature, Features};
pub use registry::{Ctx, Test};

/// Every registered test, in run order. Program modules add their `tests()` here.
pub fn all_tests() -> Vec<Test> {
    let mut all = Vec::new();
    all.extend(selfcheck::tests());
    all.extend(programs::tests());
    all.extend(fuzz::cases::tests());
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

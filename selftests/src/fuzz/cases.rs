// SPDX-License-Identifier: MIT OR Apache-2.0
//! `fuzz-cases/any/<name>`: the fuzzer's findings, minimised and kept as suite tests
//! (`selftests/fuzz-cases/<name>.json`, written by `fuzz --out` as `case.json`). Each replays
//! its program on the running kernel with every oracle on.
//!
//! * Resolved divergences (the model or the harness was wrong) must now run clean: the
//!   behaviour they pinned is documented in docs/fuzz.md and checked here.
//! * Open findings where the kernel looks wrong are expected to reproduce: the test reports
//!   XFAIL with the reason while the finding is seen, and fails once it is not, so the entry
//!   is revisited (moved to the resolved list) when the kernel changes.

use std::time::Duration;

use super::engine::read_prog;
use super::exec::Executor;
use super::prog::Op;
use crate::outcome::{Outcome, TestResult};
use crate::probe::Feature;
use crate::registry::{Ctx, Test};

/// Resolved divergences: `(name, case)`; each must replay without a finding.
pub const RESOLVED: [(&str, &str); 33] = [
    (
        "connect-any-is-loopback",
        include_str!("../../fuzz-cases/connect-any-is-loopback.json"),
    ),
    (
        "synack-key-of-the-peer",
        include_str!("../../fuzz-cases/synack-key-of-the-peer.json"),
    ),
    (
        "bad-mac-is-counted",
        include_str!("../../fuzz-cases/bad-mac-is-counted.json"),
    ),
    (
        "routing-before-key-check",
        include_str!("../../fuzz-cases/routing-before-key-check.json"),
    ),
    (
        "negative-getsockopt-optlen",
        include_str!("../../fuzz-cases/negative-getsockopt-optlen.json"),
    ),
    (
        "negative-get-keys-optlen",
        include_str!("../../fuzz-cases/negative-get-keys-optlen.json"),
    ),
    (
        "accepted-socket-destination",
        include_str!("../../fuzz-cases/accepted-socket-destination.json"),
    ),
    (
        "peer-rnext-moves-current",
        include_str!("../../fuzz-cases/peer-rnext-moves-current.json"),
    ),
    (
        "bind-clears-ipv4-destination",
        include_str!("../../fuzz-cases/bind-clears-ipv4-destination.json"),
    ),
    (
        "connect-reports-pending-error",
        include_str!("../../fuzz-cases/connect-reports-pending-error.json"),
    ),
    (
        "connect-pending-error-before-keys",
        include_str!("../../fuzz-cases/connect-pending-error-before-keys.json"),
    ),
    (
        "listener-bound-elsewhere",
        include_str!("../../fuzz-cases/listener-bound-elsewhere.json"),
    ),
    (
        "child-slot-reused",
        include_str!("../../fuzz-cases/child-slot-reused.json"),
    ),
    (
        "listener-rst-after-peer-reset",
        include_str!("../../fuzz-cases/listener-rst-after-peer-reset.json"),
    ),
    (
        "pending-error-before-routing",
        include_str!("../../fuzz-cases/pending-error-before-routing.json"),
    ),
    (
        "ipv6-destination-kept-after-routing-failure",
        include_str!("../../fuzz-cases/ipv6-destination-kept-after-routing-failure.json"),
    ),
    (
        "ipv6-destination-kept-then-eexist-order",
        include_str!("../../fuzz-cases/ipv6-destination-kept-then-eexist-order.json"),
    ),
    (
        "unknown-keyid-is-unknown",
        include_str!("../../fuzz-cases/unknown-keyid-is-unknown.json"),
    ),
    (
        "unknown-keyid-after-child-key",
        include_str!("../../fuzz-cases/unknown-keyid-after-child-key.json"),
    ),
    (
        "timewait-acks-unsigned-segment",
        include_str!("../../fuzz-cases/timewait-acks-unsigned-segment.json"),
    ),
    (
        "listener-close-resets-children",
        include_str!("../../fuzz-cases/listener-close-resets-children.json"),
    ),
    (
        "unaccepted-child-has-listener-keys",
        include_str!("../../fuzz-cases/unaccepted-child-has-listener-keys.json"),
    ),
    (
        "listener-answers-after-kernel-reset",
        include_str!("../../fuzz-cases/listener-answers-after-kernel-reset.json"),
    ),
    (
        "shutdown-while-connecting-then-connect",
        include_str!("../../fuzz-cases/shutdown-while-connecting-then-connect.json"),
    ),
    (
        "repair-listener-child-passes-the-gate",
        include_str!("../../fuzz-cases/repair-listener-child-passes-the-gate.json"),
    ),
    (
        "connect-any-goes-to-the-bound-address",
        include_str!("../../fuzz-cases/connect-any-goes-to-the-bound-address.json"),
    ),
    (
        "ipv6-bound-socket-cannot-reach-mapped",
        include_str!("../../fuzz-cases/ipv6-bound-socket-cannot-reach-mapped.json"),
    ),
    (
        "key-added-in-repair-signs-with-zero-isns",
        include_str!("../../fuzz-cases/key-added-in-repair-signs-with-zero-isns.json"),
    ),
    (
        "rst-after-a-dropped-segment-is-challenged",
        include_str!("../../fuzz-cases/rst-after-a-dropped-segment-is-challenged.json"),
    ),
    (
        "repair-mode-child-closes-silently",
        include_str!("../../fuzz-cases/repair-mode-child-closes-silently.json"),
    ),
    (
        "shutdown-in-syn-sent-disconnects",
        include_str!("../../fuzz-cases/shutdown-in-syn-sent-disconnects.json"),
    ),
    (
        "second-peer-connection",
        include_str!("../../fuzz-cases/second-peer-connection.json"),
    ),
    (
        "child-keeps-key-deleted-from-listener",
        include_str!("../../fuzz-cases/child-keeps-key-deleted-from-listener.json"),
    ),
];

/// Open findings where the kernel looks wrong: `(name, case, finding kind, why)`.
pub const OPEN: [(&str, &str, &str, &str); 2] = [
    (
        "child-inherits-repair-mode",
        include_str!("../../fuzz-cases/child-inherits-repair-mode.json"),
        "divergence",
        "a listener put in TCP_REPAIR mode before listen() hands out children in repair mode \
         (tcp_create_openreq_child() copies tp->repair): TCP_AO_REPAIR succeeds on an accepted \
         socket nobody put in repair mode, and can rewrite its ISNs and SNEs",
    ),
    (
        "listener-rst-keyid",
        include_str!("../../fuzz-cases/listener-rst-keyid.json"),
        "wire",
        "a listener's RST answers the peer's RNextKeyID with the key whose RecvID (not SendID) \
     equals it and puts that RecvID in KeyID (tcp_ao_prepare_reset, listener branch); the \
     established branch matches SendID; with SendID != RecvID the peer cannot verify the RST",
    ),
];

fn replay(ctx: &Ctx, case: &str) -> Result<Replay, String> {
    let p = read_prog(case)?;
    let (mut ex, _) = Executor::new(false).map_err(|e| format!("topology: {e}"))?;
    // Without CONFIG_TUN the executor has no virtual peer and its operations do nothing: a
    // case that needs the peer cannot run (it would pass without testing anything).
    let peer_ops = p
        .ops
        .iter()
        .any(|op| matches!(op, Op::PeerConnect { .. } | Op::PeerSend { .. }));
    if peer_ops && !ex.has_tun() {
        return Ok(Replay::NoPeer);
    }
    let r = ex.run(&p);
    ctx.diag(format!(
        "{} operations, {} calls judged by the model",
        r.ops, r.judged.0
    ));
    for n in &r.notes {
        ctx.diag(n);
    }
    Ok(match r.finding {
        Some(f) => Replay::Finding(f),
        None => Replay::Clean,
    })
}

/// What replaying a case gave.
enum Replay {
    /// The kernel did what the model says.
    Clean,
    /// A divergence.
    Finding(super::exec::Finding),
    /// The case needs the virtual peer and this kernel has no TUN device.
    NoPeer,
}

/// The skip reason of [`Replay::NoPeer`].
const NO_PEER: &str =
    "the case needs the fuzzer's virtual peer, a TUN device: this kernel has no CONFIG_TUN";

/// The tests. A replay mostly waits (the executor gives each connect and accept a fixed window
/// for an answer that may not come): they run in the harness's waiting lanes ([`Test::waits`]).
pub fn tests() -> Vec<Test> {
    let needs = [
        Feature::Netns,
        Feature::Veth,
        Feature::Vrf,
        Feature::Ipv6,
        Feature::TcpAo,
    ];
    let mut v = Vec::new();
    for (name, case) in RESOLVED {
        v.push(
            Test::new(
                format!("fuzz-cases/any/{name}"),
                move |ctx: &Ctx| -> TestResult {
                    match replay(ctx, case)? {
                        Replay::Clean => Ok(Outcome::Pass),
                        Replay::NoPeer => Ok(Outcome::skip(NO_PEER)),
                        Replay::Finding(f) => crate::fail!(
                            "the resolved divergence is back: [{}] op {} {}: {}",
                            f.kind,
                            f.op,
                            f.op_name,
                            f.detail
                        ),
                    }
                },
            )
            .requires(&needs)
            .timeout(Duration::from_secs(30))
            .waits(),
        );
    }
    for (name, case, kind, why) in OPEN {
        v.push(
            Test::new(
                format!("fuzz-cases/any/{name}"),
                move |ctx: &Ctx| -> TestResult {
                    match replay(ctx, case)? {
                        Replay::Finding(f) if f.kind == kind => {
                            Ok(Outcome::xfail(format!("{why}: {}", f.detail)))
                        }
                        Replay::Finding(f) => {
                            crate::fail!("a different finding: [{}] {}", f.kind, f.detail)
                        }
                        Replay::NoPeer => Ok(Outcome::skip(NO_PEER)),
                        // The kernel does what the model says: fixed (or, for a timing-dependent
                        // finding, not seen this time). A kernel suite passes on a fixed kernel.
                        Replay::Clean => {
                            ctx.diag(format!(
                                "the open finding does not reproduce on this kernel (fixed?): {why}"
                            ));
                            Ok(Outcome::Pass)
                        }
                    }
                },
            )
            .requires(&needs)
            .timeout(Duration::from_secs(30))
            .waits(),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_parses() {
        for (name, case) in RESOLVED {
            read_prog(case).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for (name, case, _, _) in OPEN {
            read_prog(case).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(tests().len(), RESOLVED.len() + OPEN.len());
    }
}

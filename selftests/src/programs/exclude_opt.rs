// SPDX-License-Identifier: MIT OR Apache-2.0
//! `exclude-opt`: `TCP_AO_KEYF_EXCLUDE_OPT` end to end (RFC 5925 §3.1 "TCP option flag"). No
//! upstream selftest sets the flag.
//!
//! The client's SYN offers MSS, SACK-permitted, timestamps and window scaling. A Linux
//! listener answering a TCP-AO SYN drops timestamps when SACK is permitted
//! (`tcp_synack_options()`: `ireq->tstamp_ok &= !ireq->sack_ok`, as for TCP-MD5: both would
//! not fit with SACK blocks), so there are two flavours:
//!
//! - `both-excluded` / `both-included` (defaults): SACK-permitted is negotiated, timestamps
//!   are not; options besides TCP-AO are on the SYN and SYN-ACK only (asserted, including the
//!   missing timestamps on the SYN-ACK);
//! - `both-excluded-timestamps` / `both-included-timestamps` (`net.ipv4.tcp_sack = 0` on both
//!   peers): timestamps are negotiated and on every segment.
//!
//! In each, the connection works (GOOD only, both sides), and tcpao-refimpl verifies every
//! captured segment with the configured flag **and rejects every segment that carries other
//! options under the opposite flag** (so the kernel really excluded, or included, them);
//! segments without other options verify either way.
//! - `client-excluded-server-included` / `client-included-server-excluded`: the server
//!   rejects the SYN as a bad MAC: its `TCPAOBad`, socket `pkt_bad` and key `pkt_bad` grow,
//!   nothing else; the client's counters do not move. The reference agrees: the SYN verifies
//!   with the client's flag and not with the server's.

use tcpao_refimpl::{FlowValidator, Verdict};

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::PeerResult;
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::programs::extras::{self, segment};
use crate::registry::Test;
use crate::sockets::{self, Connect, TestKey};
use crate::topology::Side;

/// A TCP option kind and its name.
type OptionName = (u8, &'static str);

fn key(p: &Peer<'_>, include: bool) -> TestKey {
    let mut k = TestKey::new(p.remote_addr(), 100, 100);
    k.include_options = include;
    k
}

/// The program's tests: 4 cases × 2 families.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    for (slug, include, ts) in [
        ("both-excluded", false, false),
        ("both-included", true, false),
        ("both-excluded-timestamps", false, true),
        ("both-included-timestamps", true, true),
    ] {
        v.extend(PairTest::new("exclude-opt", slug).ao().build(
            move |p| {
                no_sack(p, ts)?;
                extras::echo_server(p, &key(p, include))
            },
            move |p| {
                no_sack(p, ts)?;
                connected_client(p, include, ts)
            },
        ));
    }
    for (slug, client_incl) in [
        ("client-excluded-server-included", false),
        ("client-included-server-excluded", true),
    ] {
        v.extend(PairTest::new("exclude-opt", slug).ao().build(
            move |p| mismatch_server(p, !client_incl, client_incl),
            move |p| mismatch_client(p, client_incl),
        ));
    }
    v
}

/// With `ts`, turn SACK off in this peer's namespace so that timestamps are negotiated.
fn no_sack(_p: &Peer<'_>, ts: bool) -> PeerResult {
    if ts {
        crate::netns::sysctl_write("net/ipv4/tcp_sack", "0")
            .map_err(|e| failure!("writing net.ipv4.tcp_sack failed: {e}"))?;
    }
    Ok(())
}

fn connected_client(p: &Peer<'_>, include: bool, ts: bool) -> PeerResult {
    let k = key(p, include);
    let frames = extras::echo_client(p, &k)?;
    let conn = extras::client_connection(p, &frames)?;
    let mkt = k
        .mkt()
        .ok_or_else(|| failure!("the reference lacks the key's algorithm"))?;
    let same = FlowValidator::new(conn, [mkt.clone()]).map_err(|e| failure!("reference: {e}"))?;
    let other = FlowValidator::new(conn, [mkt.with_include_options(!include)])
        .map_err(|e| failure!("reference: {e}"))?;
    let (mut ao, mut with_opts, mut syn_checked) = (0usize, 0usize, false);
    for f in &frames {
        let Some(s) = segment(f) else { continue };
        let t = s.tcp_packet();
        if t.ao_option().ok().flatten().is_none() {
            return Err(failure!(
                "a {} segment seq {} of the TCP-AO connection carries no TCP-AO option",
                f.from.name(),
                t.seq_number()
            ));
        }
        ao += 1;
        let kinds = extras::option_kinds(&s);
        // MSS 2, window scale 3, SACK-permitted 4, timestamps 8.
        let (want, unwanted): (&[OptionName], &[OptionName]) = match (t.syn(), f.from, ts) {
            (true, Side::Client, false) => (
                &[
                    (2, "MSS"),
                    (3, "window scale"),
                    (4, "SACK-permitted"),
                    (8, "timestamps"),
                ],
                &[],
            ),
            (true, Side::Client, true) => (
                &[(2, "MSS"), (3, "window scale"), (8, "timestamps")],
                &[(4, "SACK-permitted")],
            ),
            (true, Side::Server, false) => (
                &[(2, "MSS"), (3, "window scale"), (4, "SACK-permitted")],
                &[(8, "timestamps")],
            ),
            (true, Side::Server, true) => (
                &[(2, "MSS"), (3, "window scale"), (8, "timestamps")],
                &[(4, "SACK-permitted")],
            ),
            (false, _, true) => (&[(8, "timestamps")], &[]),
            (false, _, false) => (&[], &[(8, "timestamps")]),
        };
        let what = format!(
            "the {} {}segment seq {} (options {kinds:?})",
            f.from.name(),
            if t.syn() { "SYN " } else { "" },
            t.seq_number()
        );
        for (kind, name) in want {
            if !kinds.contains(kind) && !t.rst() {
                return Err(failure!("{what} has no {name} option"));
            }
        }
        for (kind, name) in unwanted {
            if kinds.contains(kind) {
                return Err(failure!("{what} unexpectedly carries {name}"));
            }
        }
        if t.syn() && f.from == Side::Client {
            syn_checked = true;
        }
        let flagged = if include { "included" } else { "excluded" };
        match extras::verdict(&same, f) {
            Some(Verdict::Good { .. }) => {}
            v => {
                return Err(failure!(
                    "tcpao-refimpl does not verify the {} segment seq {} with options {flagged} ({v:?})",
                    f.from.name(),
                    t.seq_number()
                ));
            }
        }
        let has_other = extras::has_other_options(&s);
        let v = extras::verdict(&other, f);
        match (has_other, v) {
            (true, Some(Verdict::Bad { .. })) => with_opts += 1,
            (false, Some(Verdict::Good { .. })) => {}
            (_, v) => {
                return Err(failure!(
                    "the {} segment seq {} (other options: {has_other}) gave {v:?} under the opposite option flag",
                    f.from.name(),
                    t.seq_number()
                ));
            }
        }
    }
    if !syn_checked || with_opts == 0 {
        return Err(failure!(
            "the capture has no client SYN or no segment with options besides TCP-AO ({ao} TCP-AO segments)"
        ));
    }
    p.diag(format!(
        "{ao} segments verified with options {}, {with_opts} of them (those with other options) rejected with the opposite flag; timestamps negotiated: {ts}",
        if include { "included" } else { "excluded" }
    ));
    Ok(())
}

fn mismatch_server(p: &Peer<'_>, server_incl: bool, client_incl: bool) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p, server_incl))?;
    let before = Counters::of(&lsk)?;
    p.sync()?;
    extras::wait_counters(
        p,
        &lsk,
        p.deadline(),
        "TCPAOBad growing on the server",
        |c| c.ns_delta(&before, "TCPAOBad") > 0,
    )?;
    p.signal();
    if sockets::accept(p, &lsk, std::time::Instant::now(), || false)?.is_some() {
        return Err(failure!(
            "a connection was accepted although the option flags differ"
        ));
    }
    Counters::of(&lsk)?
        .assert_grew_exactly(&before, Grew::BAD)
        .map_err(|e| failure!("server counters after the mismatched SYN: {e}"))?;
    // The reference agrees: the client's SYN verifies with the client's flag only.
    let frames = extras::flow_frames(p, p.port())?;
    let syn = frames
        .iter()
        .find(|f| f.from == Side::Client && segment(f).is_some_and(|s| s.tcp_packet().syn()))
        .ok_or_else(|| failure!("the capture has no SYN from the client"))?;
    let [_, Some(cisn)] = extras::isns(&frames) else {
        return Err(failure!("the capture has no client ISN"));
    };
    let s = segment(syn).ok_or_else(|| failure!("the SYN does not decode"))?;
    let conn = tcpao_refimpl::Connection::new(
        (p.remote_addr(), s.tcp_packet().src_port()).into(),
        (p.local_addr(), p.port()).into(),
        cisn,
        0,
    );
    for (incl, want_good) in [(client_incl, true), (server_incl, false)] {
        let mkt = key(p, incl)
            .mkt()
            .ok_or_else(|| failure!("no reference MKT"))?;
        let v = FlowValidator::new(conn, [mkt]).map_err(|e| failure!("reference: {e}"))?;
        let got = extras::verdict(&v, syn);
        if matches!(got, Some(Verdict::Good { .. })) != want_good {
            return Err(failure!(
                "tcpao-refimpl gave {got:?} for the client's SYN with options {}",
                if incl { "included" } else { "excluded" }
            ));
        }
    }
    p.diag("the SYN failed on the server (TCPAOBad); the reference verifies it only with the client's flag");
    Ok(())
}

fn mismatch_client(p: &Peer<'_>, include: bool) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &key(p, include))?;
    let before = Counters::of(&sk)?;
    p.sync()?;
    match sockets::connect(p, &sk, p.remote_addr(), p.port(), p.deadline(), || {
        p.peer_signals() > 0
    })? {
        Connect::TimedOut => {}
        r => {
            return Err(failure!(
                "the handshake with different option flags was expected to time out, it ended with {r:?}"
            ));
        }
    }
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::empty())
        .map_err(|e| failure!("the handshake timed out, but the client's counters moved: {e}"))
}

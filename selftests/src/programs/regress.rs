// SPDX-License-Identifier: MIT OR Apache-2.0
//! `regress`: one test per upstream TCP-AO fix whose bug userspace can observe, named after
//! what the fix restored. Each fails on Debian's 7.2.13 with that fix reverted (the patch of
//! the same name, `selftests/regress/<subject>.patch`, built by `tcpao-selftests vm --flavour
//! plain --patch`) and passes on the fixed kernel; `docs/selftests/regress.md` has the runs.
//!
//! | subject | upstream fix (`kernel-fixes.md` row) | the test |
//! |---|---|---|
//! | `ao-pad-nop` | tcp: initialize standalone TCP-AO response padding (28) | MAC length 9: the 3 bytes after the MAC are NOPs in the ACK and RST of a time-wait socket and the ACK of a request socket |
//! | `ao-option-aligned` | da7dfaa6d6f7 align TCP-AO option in the header (4) | MAC length 9: every segment's options parse inside its header, TCP-AO 4-byte aligned, NOP-padded; a full-sized segment's payload + options = the peer's MSS |
//! | `synack-rnext-maclen` | 9396c4ee93f9 don't store maclen on reqsk (7) | Current_key MAC length 12, RNext_key 16: the SYN-ACK comes, signed with the RNext key |
//! | `ao-repair-listen` | 965c00e4ea2e TCP_AO_REPAIR only on non-listen sockets (5) | get and set on a listener in repair mode: `EPERM` |
//! | `vrf-key-mismatch` | 12083d728213 no non-matching VRF key on connected sockets (6) | a key for VRF 200 on an established socket bound to the veth: `EINVAL`; accepted on the listener |
//! | `vrf-key-delete` | 94ad9e114a1c TCP-AO key deletion in VRFs (31) | a key bound to VRF 200 on a closed and on a listening socket is deleted |
//! | `repair-connect` | 2e7bba08923e NULL deref with TCP_REPAIR (18) | a live connection frozen and restored (`connect()` in repair mode with a key) carries data |
//! | `rst-after-close` | 9e472d9e84b1 keys destroyed in `.sk_destruct()` (19) | data to a closed (orphaned, FIN-WAIT-2) socket is answered with a signed RST |
//! | `del-async-listen` | 5ba9950bc907 del_async use-after-free (24) | after `del_async` of the listener's Current/RNext keys, `TCP_AO_INFO` reports neither |
//!
//! Tests that already existed for the same behaviour are reused, not copied: key-management's
//! listen-socket `TCP_AO_REPAIR` cases, vrf-keys' VRF-key deletion (whose `ENOENT` there is
//! an expected failure for old kernels, a failure here), restore's migrate case. Wire checks
//! read the captured segments with tcpao-refimpl's views (`TcpPacket::auth_options`,
//! `options_iter`); the capture cross-check verifies every signed segment's MAC as always.
//!
//! One kernel detail shapes `ao-pad-nop`: on IPv4, resets built without a full socket go
//! through `tcp_v4_send_reset()`, which zeroes its reply (`memset(&rep, 0, ...)`) and never
//! writes NOPs after the MAC; the 2026 fix left it alone. Zero padding after the last
//! option is what RFC 793 describes ("The padding is composed of zeros"), so there a pad of
//! zeros passes (and is reported); anything else fails. Everywhere else Linux pads with NOPs
//! and only NOPs pass.

use std::net::Shutdown;
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use socket2::Socket;
use tcpao_refimpl::SegmentRef;
use tcpao_refimpl::wire::{TCP_HEADER_LEN, TCPOPT_NOP, TcpOption};
use tcpao_sys::TcpAoExt;
use tcpao_sys::uapi::{TCP_FIN_WAIT2, TCP_TIME_WAIT};

use crate::capture::Frame;
use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::extras::{self, segment};
use crate::programs::sockopt::{expect_error, is_os, typed_ok};
use crate::programs::vrf_keys::{self, Sock};
use crate::programs::{PairTest, key_management, restore, rst};
use crate::registry::Test;
use crate::repair::{self, Restore};
use crate::sockets::{self, TestKey};
use crate::solo::{Solo, SoloTest};
use crate::topology::{Family, Side, VRF_IFINDEX};

const PROGRAM: &str = "regress";

/// A MAC length that needs 3 bytes of padding: a 13-byte TCP-AO option in 16 bytes.
const ODD_MACLEN: u8 = 9;
/// `TCP_LINGER2` (`<linux/tcp.h>`).
const TCP_LINGER2: i32 = 8;
/// `TCP_DEFER_ACCEPT` (`<linux/tcp.h>`).
const TCP_DEFER_ACCEPT: i32 = 9;

/// The program's tests: 9 subjects × 2 families.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    v.extend(
        PairTest::new(PROGRAM, "ao-pad-nop")
            .ao()
            .build(pad_server, pad_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "ao-option-aligned")
            .ao()
            .build(aligned_server, aligned_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "synack-rnext-maclen")
            .ao()
            .build(rnext_server, rnext_client),
    );
    v.extend(
        SoloTest::new(PROGRAM, "ao-repair-listen")
            .ao()
            .build(ao_repair_listen),
    );
    v.extend(
        PairTest::new(PROGRAM, "vrf-key-mismatch")
            .ao()
            .topology(vrf_keys::vrf_topology())
            .build(mismatch_server, mismatch_client),
    );
    v.extend(
        PairTest::new(PROGRAM, "vrf-key-delete")
            .ao()
            .topology(vrf_keys::vrf_topology())
            .build(|p| vrf_keys::release(p, vrf_key_delete(p)), vrf_keys::idle),
    );
    v.extend(PairTest::new(PROGRAM, "repair-connect").ao().build(
        |p| restore::server(p, restore::MIGRATE),
        |p| restore::client(p, restore::MIGRATE),
    ));
    v.extend(
        PairTest::new(PROGRAM, "rst-after-close")
            .ao()
            .build(orphan_server, orphan_client),
    );
    v.extend(
        SoloTest::new(PROGRAM, "del-async-listen")
            .ao()
            .build(del_async_listen),
    );
    v
}

fn key(p: &Peer<'_>) -> TestKey {
    TestKey::new(p.remote_addr(), 100, 100)
}

fn odd_key(p: &Peer<'_>) -> TestKey {
    key(p).maclen(ODD_MACLEN)
}

// ---------------------------------------------------------------------------------------
// The TCP-AO option on the wire.
// ---------------------------------------------------------------------------------------

/// The TCP-AO option of a captured segment, read with tcpao-refimpl's wire view.
#[derive(Debug)]
struct AoPlacement {
    /// Offset of the option from the start of the TCP header.
    start: usize,
    /// Its length byte: 4 + MAC length.
    len: usize,
    /// The bytes from the end of the MAC to the next 4-byte boundary.
    pad: Vec<u8>,
}

/// "the client's RST seq 123" for messages.
fn what(f: &Frame, s: &SegmentRef<'_>) -> String {
    let t = s.tcp_packet();
    let mut flags = Vec::new();
    for (set, name) in [
        (t.syn(), "SYN"),
        (t.fin(), "FIN"),
        (t.rst(), "RST"),
        (t.ack(), "ACK"),
    ] {
        if set {
            flags.push(name);
        }
    }
    format!(
        "the {}'s {} seq {} ({} data bytes)",
        f.from.name(),
        flags.join("+"),
        t.seq_number(),
        t.payload().len()
    )
}

/// Where the segment's TCP-AO option sits: every option must parse inside the header
/// (`options_iter`), the TCP-AO option is found the way Linux finds it (`auth_options`),
/// and its padding must lie inside the header too. `Ok(None)` for an unsigned segment.
fn ao_placement(s: &SegmentRef<'_>) -> Result<Option<AoPlacement>, String> {
    let t = s.tcp_packet();
    if let Some(Err(e)) = t.options_iter().find(Result::is_err) {
        return Err(format!(
            "its options do not parse inside its {}-byte header ({e}): {:02x?}",
            t.header_len(),
            t.options()
        ));
    }
    let auth = t
        .auth_options()
        .map_err(|e| format!("its authentication options are malformed: {e}"))?;
    let Some(r) = auth.ao else { return Ok(None) };
    let padded = r.end.next_multiple_of(4);
    if padded > t.header_len() {
        return Err(format!(
            "its TCP-AO option ends at byte {} and is padded past the {}-byte header",
            r.end,
            t.header_len()
        ));
    }
    let opts = t.options();
    Ok(Some(AoPlacement {
        start: r.start,
        len: r.len(),
        pad: opts[r.end - TCP_HEADER_LEN..padded - TCP_HEADER_LEN].to_vec(),
    }))
}

/// The TCP-AO option must be signed, start on a 4-byte boundary, be `4 + maclen` bytes long
/// and be followed by NOPs up to the boundary (or, with `zeros_ok`, by zeros: RFC 793
/// padding). Returns the placement for the report.
fn check_ao_option(
    f: &Frame,
    s: &SegmentRef<'_>,
    maclen: u8,
    zeros_ok: bool,
) -> PeerResult<AoPlacement> {
    let w = what(f, s);
    let ao = ao_placement(s)
        .map_err(|e| failure!("{w}: {e}"))?
        .ok_or_else(|| failure!("{w} carries no TCP-AO option"))?;
    if ao.start % 4 != 0 {
        return Err(failure!(
            "{w}: its TCP-AO option starts at byte {} of the header, not on a 4-byte boundary",
            ao.start
        ));
    }
    if ao.len != 4 + usize::from(maclen) {
        return Err(failure!(
            "{w}: its TCP-AO option is {} bytes long, expected {} (4 + MAC length {maclen})",
            ao.len,
            4 + maclen
        ));
    }
    let nops = ao.pad.iter().all(|b| *b == TCPOPT_NOP);
    let zeros = ao.pad.iter().all(|b| *b == 0);
    if !(nops || (zeros_ok && zeros)) {
        return Err(failure!(
            "{w}: the {} bytes after its {maclen}-byte MAC are {:02x?}, expected NOPs (01){}",
            ao.pad.len(),
            ao.pad,
            if zeros_ok { " or RFC 793 zeros" } else { "" }
        ));
    }
    Ok(ao)
}

/// The captured segments of the flow on server port `port`, once `pred` holds for them.
fn wait_flow(
    p: &Peer<'_>,
    port: u16,
    what: &str,
    mut pred: impl FnMut(&[Frame]) -> bool,
) -> PeerResult<Vec<Frame>> {
    let got = p.wait_for(p.deadline(), || {
        let frames = extras::flow_frames(p, port)?;
        Ok(pred(&frames).then_some(frames))
    })?;
    got.ok_or_else(|| {
        failure!(
            "the capture of port {port} has no {what} within {:?}",
            p.timeout()
        )
    })
}

/// Whether `frames` hold a segment sent by `from` for which `pred` holds.
fn has(frames: &[Frame], from: Side, mut pred: impl FnMut(&SegmentRef<'_>) -> bool) -> bool {
    frames
        .iter()
        .any(|f| f.from == from && segment(f).is_some_and(|s| pred(&s)))
}

/// The local port of a connected socket.
fn local_port(sk: &Socket) -> PeerResult<u16> {
    sk.local_addr()
        .or_fail("getsockname() failed")?
        .as_socket()
        .map(|a| a.port())
        .ok_or_else(|| failure!("the socket has no IP address"))
}

/// Netns counters at the end of a case: every TCP-AO segment received verified (`TCPAOGood`
/// grew), nothing else of TCP-AO/TCP-MD5 moved.
fn netns_good_only(p: &Peer<'_>, before: &Counters) -> PeerResult {
    Counters::netns()?
        .assert_grew_exactly(before, Grew::NS_GOOD)
        .map_err(|e| failure!("{} netns counters: {e}", p.side().name()))
}

// ---------------------------------------------------------------------------------------
// ao-pad-nop (row 28): ACKs and RSTs built outside a full socket.
// ---------------------------------------------------------------------------------------
//
// Three connections with MAC length 9, the client always closing first:
//   port P:   its FIN-WAIT-2 time-wait socket gets data from the server: RST
//             (tcp_v4_send_reset / tcp_v6_send_reset -> tcp_v6_send_response);
//   port P+1: its FIN-WAIT-2 time-wait socket gets the server's FIN: ACK
//             (tcp_v4_timewait_ack -> tcp_v4_send_ack / tcp_v6_send_response);
//   port P+2: the server listens with TCP_DEFER_ACCEPT, so after the handshake its request
//             socket stays; the client restores its socket with the send SEQ moved 2^20 out
//             of the window and sends: the request socket answers with an ACK
//             (tcp_v4_reqsk_send_ack -> tcp_v4_send_ack / tcp_v6_send_response).
// With the orphan's default tcp_fin_timeout (60 s, not above TCP_TIMEWAIT_LEN) the client's
// closed socket becomes a FIN-WAIT-2 time-wait socket as soon as its FIN is acknowledged.

fn pad_server(p: &Peer<'_>) -> PeerResult {
    let k = odd_key(p);
    let ns_before = Counters::netns()?;
    // Port P: RST from the client's time-wait socket.
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &k)?;
    p.sync()?; // 1: listening
    let sk = extras::accept_one(p, &lsk)?;
    drop(lsk);
    sockets::echo_server(p, &sk, p.deadline())?; // until the client's FIN
    p.sync()?; // 2: the client's socket is a FIN-WAIT-2 time-wait socket
    if let Err(e) = rst::send_message(p, &sk)? {
        return Err(failure!("server: write() in CLOSE-WAIT failed: {e}"));
    }
    let e = rst::wait_error(p, &sk, "server in CLOSE-WAIT")?;
    rst::expect_errno(
        &e,
        Errno::EPIPE,
        "server in CLOSE-WAIT after the client's RST",
    )?;
    drop(sk);
    // Port P+1: ACK from the client's time-wait socket.
    let lsk = sockets::listen(p, p.next_port(), 1)?;
    sockets::add_key(p, &lsk, &k)?;
    p.sync()?; // 3: listening
    let sk = extras::accept_one(p, &lsk)?;
    drop(lsk);
    sockets::echo_server(p, &sk, p.deadline())?;
    p.sync()?; // 4: the client's socket is a FIN-WAIT-2 time-wait socket
    drop(sk); // FIN
    // Port P+2: ACK from a request socket.
    let lsk = sockets::listen(p, p.next_port(), 1)?;
    tcpao_sys::raw::set_int_option(&lsk, libc::IPPROTO_TCP, TCP_DEFER_ACCEPT, 30)
        .or_fail("setsockopt(TCP_DEFER_ACCEPT) failed")?;
    sockets::add_key(p, &lsk, &k)?;
    p.sync()?; // 5: listening, deferring
    p.sync()?; // 6: the client got the request socket's ACK
    drop(lsk);
    netns_good_only(p, &ns_before)
}

fn pad_client(p: &Peer<'_>) -> PeerResult {
    let k = odd_key(p);
    let ns_before = Counters::netns()?;
    // Port P.
    let rst_port = p.port();
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &k)?;
    p.sync()?; // 1
    sockets::connect_ok(p, &sk, p.remote_addr(), rst_port)?;
    let lport = local_port(&sk)?;
    drop(sk); // FIN; a time-wait socket once the server acknowledges it
    rst::wait_port_state(p, lport, TCP_FIN_WAIT2, "FIN-WAIT-2")?;
    p.sync()?; // 2: the server sends data to it
    wait_flow(
        p,
        rst_port,
        "RST from the client's time-wait socket",
        |fr| has(fr, Side::Client, |s| s.tcp_packet().rst()),
    )?;
    // Port P+1.
    let ack_port = p.next_port();
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &k)?;
    p.sync()?; // 3
    sockets::connect_ok(p, &sk, p.remote_addr(), ack_port)?;
    let lport = local_port(&sk)?;
    drop(sk);
    rst::wait_port_state(p, lport, TCP_FIN_WAIT2, "FIN-WAIT-2")?;
    p.sync()?; // 4: the server closes; its FIN moves our socket to TIME-WAIT, with an ACK
    rst::wait_port_state(p, lport, TCP_TIME_WAIT, "TIME-WAIT")?;
    // Port P+2.
    let reqsk_port = p.next_port();
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &k)?;
    p.sync()?; // 5
    sockets::connect_ok(p, &sk, p.remote_addr(), reqsk_port)?;
    let isn = send_out_of_window(p, sk, &k)?;
    p.sync()?; // 6
    netns_good_only(p, &ns_before)?;

    // Every TCP-AO segment of the three flows; the three this test is about must be there.
    let flows = [
        wait_flow(p, rst_port, "RST from the client", |fr| {
            has(fr, Side::Client, |s| s.tcp_packet().rst())
        })?,
        wait_flow(
            p,
            ack_port,
            "ACK of the server's FIN from the client's time-wait socket",
            |fr| fin_ack(fr).is_some(),
        )?,
        wait_flow(
            p,
            reqsk_port,
            "ACK from the server's request socket",
            |fr| has(fr, Side::Server, |s| reqsk_ack(s, isn)),
        )?,
    ];
    let fin_end = fin_ack(&flows[1]);
    let mut checked = 0;
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for (n, frames) in flows.iter().enumerate() {
        for f in frames {
            let Some(s) = segment(f) else { continue };
            let t = s.tcp_packet();
            let kind = match (n, f.from) {
                (0, Side::Client) if t.rst() => Some("time-wait RST"),
                (1, Side::Client) if Some(t.ack_number()) == fin_end && !t.fin() => {
                    Some("time-wait ACK")
                }
                (2, Side::Server) if reqsk_ack(&s, isn) => Some("request-socket ACK"),
                _ => None,
            };
            // Only the IPv4 time-wait RST is built by tcp_v4_send_reset() (RFC 793 zeros).
            let zeros_ok = n == 0 && kind.is_some() && p.family() == Family::Ipv4;
            checked += 1;
            match (check_ao_option(f, &s, ODD_MACLEN, zeros_ok), kind) {
                (Ok(ao), Some(kind)) => lines.push(format!("{kind} pad {:02x?}", ao.pad)),
                (Ok(_), None) => {}
                (Err(Failure::Fail(why)), Some(kind)) => problems.push(format!("{kind}: {why}")),
                (Err(Failure::Fail(why)), None) => problems.push(why),
                (Err(e), _) => return Err(e),
            }
        }
    }
    if !problems.is_empty() {
        return Err(failure!("{}", problems.join("; ")));
    }
    p.diag(format!(
        "{checked} segments with a {}-byte TCP-AO option padded to 16 bytes; {}",
        4 + ODD_MACLEN,
        lines.join(", ")
    ));
    Ok(())
}

/// The acknowledgment number that acknowledges the server's FIN, when the client sent a
/// segment with it (the time-wait socket's ACK).
fn fin_ack(frames: &[Frame]) -> Option<u32> {
    let end = frames.iter().find_map(|f| {
        let s = segment(f)?;
        let t = s.tcp_packet();
        (f.from == Side::Server && t.fin()).then(|| t.seq_number().wrapping_add(1))
    })?;
    has(frames, Side::Client, |s| {
        let t = s.tcp_packet();
        t.ack() && !t.fin() && !t.rst() && t.ack_number() == end
    })
    .then_some(end)
}

/// Whether `s` is the request socket's ACK: the server's first sequence number after its
/// SYN, acknowledging only the client's SYN.
fn reqsk_ack(s: &SegmentRef<'_>, client_isn: u32) -> bool {
    let t = s.tcp_packet();
    t.ack() && !t.syn() && !t.rst() && t.ack_number() == client_isn.wrapping_add(1)
}

/// Freeze the client's connected socket, restore it with its send SEQ moved 2^20 (out of
/// the server request socket's window, away from 2^32 so the SNE stays 0 on both sides),
/// send data and wait until the request socket's ACK verified. Returns the client's ISN.
fn send_out_of_window(p: &Peer<'_>, sk: Socket, k: &TestKey) -> PeerResult<u32> {
    let mut img = repair::freeze(p, sk)?;
    let isn = img
        .ao
        .ok_or_else(|| failure!("the checkpoint has no TCP-AO state"))?
        .snt_isn;
    let una = img.send_una();
    let moved = if isn < 1 << 31 {
        una.wrapping_add(1 << 20)
    } else {
        una.wrapping_sub(1 << 20)
    };
    img.set_seqs(moved, img.recv_seq);
    let sk = img.restore(p, &Restore::new(std::slice::from_ref(k)))?;
    let before = Counters::of(&sk)?;
    if let Err(e) = rst::send_message(p, &sk)? {
        return Err(failure!(
            "client: write() on the restored socket failed: {e}"
        ));
    }
    let good = |c: &Counters| c.sock.map_or(0, |s| s.good);
    let after = extras::wait_counters(
        p,
        &sk,
        p.deadline(),
        "an ACK from the server's request socket verifying",
        |c| good(c) > good(&before),
    )?;
    after
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("client after the request socket's ACK: {e}"))?;
    repair::kill(p, sk)?;
    Ok(isn)
}

// ---------------------------------------------------------------------------------------
// ao-option-aligned (row 4): option length and alignment against the header and the MSS.
// ---------------------------------------------------------------------------------------

/// Messages of the bulk echo: large enough for full-sized segments both ways.
const BULK_MESSAGES: usize = 2;
const BULK_MESSAGE_LEN: usize = 8192;

fn aligned_server(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &odd_key(p))?;
    p.sync()?; // 1: listening
    let sk = extras::accept_one(p, &lsk)?;
    drop(lsk);
    let before = Counters::of(&sk)?;
    let quota = BULK_MESSAGES * BULK_MESSAGE_LEN;
    let served = sockets::echo_quota(p, &sk, quota as u64, p.deadline())? as usize;
    if served != quota {
        return Err(failure!("the server echoed {served} of {quota} bytes"));
    }
    p.sync()?; // 2: the client has every echo back
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("server counters after the echo: {e}"))?;
    sk.set_linger(Some(Duration::ZERO))
        .or_fail("setsockopt(SO_LINGER) failed")?;
    drop(sk); // an active RST (tcp_send_active_reset)
    p.sync()?; // 3: the client was reset
    netns_good_only(p, &ns_before)
}

fn aligned_client(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &odd_key(p))?;
    p.sync()?; // 1
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, BULK_MESSAGES, BULK_MESSAGE_LEN, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("client counters after the echo: {e}"))?;
    p.sync()?; // 2
    let e = rst::wait_error(p, &sk, "client")?;
    rst::expect_errno(&e, Errno::ECONNRESET, "client after the server's RST")?;
    p.sync()?; // 3
    netns_good_only(p, &ns_before)?;
    let frames = wait_flow(p, p.port(), "RST from the server", |fr| {
        has(fr, Side::Server, |s| s.tcp_packet().rst())
    })?;
    check_alignment(p, &frames)
}

/// Every segment of the flow: options parse inside the header, TCP-AO 4-byte aligned,
/// `4 + maclen` long, NOP-padded; no data on a SYN (the header covers every option
/// written); data segments never exceed the receiver's MSS with their options, and at least
/// one each way fills it exactly (RFC 6691: payload + options = MSS).
fn check_alignment(p: &Peer<'_>, frames: &[Frame]) -> PeerResult {
    // MSS advertised by [server (SYN-ACK), client (SYN)].
    let mut mss = [None, None];
    for f in frames {
        let Some(s) = segment(f) else { continue };
        let t = s.tcp_packet();
        if t.syn() {
            for o in t.options_iter().flatten() {
                if let TcpOption::MaxSegmentSize(m) = o {
                    mss[usize::from(f.from == Side::Client)] = Some(m);
                }
            }
        }
    }
    let [Some(server_mss), Some(client_mss)] = mss else {
        return Err(failure!(
            "the capture has no MSS option in the SYN and the SYN-ACK: {mss:?}"
        ));
    };
    let mut full = [0usize; 2];
    let (mut segments, mut rsts) = (0, 0);
    for f in frames {
        let Some(s) = segment(f) else { continue };
        let t = s.tcp_packet();
        check_ao_option(f, &s, ODD_MACLEN, false)?;
        segments += 1;
        let data = t.payload().len();
        if t.syn() && data != 0 {
            return Err(failure!(
                "{}: {data} bytes follow the {}-byte header: the header length does not cover the options written",
                what(f, &s),
                t.header_len()
            ));
        }
        if t.rst() {
            rsts += 1;
        }
        if data == 0 {
            continue;
        }
        // The receiver's MSS bounds what this side sends.
        let (limit, i) = match f.from {
            Side::Client => (server_mss, 0),
            Side::Server => (client_mss, 1),
        };
        let used = data + t.header_len() - TCP_HEADER_LEN;
        if used > usize::from(limit) {
            return Err(failure!(
                "{}: {data} data bytes + {} option bytes exceed the peer's MSS {limit}",
                what(f, &s),
                t.header_len() - TCP_HEADER_LEN
            ));
        }
        if used == usize::from(limit) {
            full[i] += 1;
        }
    }
    if rsts == 0 {
        return Err(failure!("the capture of the flow has no RST"));
    }
    if full.contains(&0) {
        return Err(failure!(
            "no full-sized segment from the {}: data + options never reached the MSS ({full:?} client/server)",
            if full[0] == 0 { "client" } else { "server" }
        ));
    }
    let aligned = (4 + usize::from(ODD_MACLEN)).next_multiple_of(4);
    p.diag(format!(
        "{} segments: TCP-AO {} bytes at option offset 0 + {} NOPs; full-sized segments \
         {} + {aligned} = MSS {server_mss} (client), {} + {aligned} = MSS {client_mss} (server)",
        segments,
        4 + ODD_MACLEN,
        aligned - 4 - usize::from(ODD_MACLEN),
        usize::from(server_mss) - aligned,
        usize::from(client_mss) - aligned,
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// synack-rnext-maclen (row 7): Current_key and RNext_key with different MAC lengths.
// ---------------------------------------------------------------------------------------

/// Key A (the client's Current_key, signs the SYN) and key B (its RNext_key: the server
/// signs the SYN-ACK with it), with different MAC lengths.
fn rnext_keys(p: &Peer<'_>) -> [TestKey; 2] {
    [
        TestKey::new(p.remote_addr(), 100, 100).maclen(12),
        TestKey::new(p.remote_addr(), 101, 101).maclen(16),
    ]
}

fn rnext_server(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let lsk = sockets::listen(p, p.port(), 1)?;
    for k in &rnext_keys(p) {
        sockets::add_key(p, &lsk, k)?;
    }
    p.sync()?; // 1
    let sk = extras::accept_one(p, &lsk)?;
    let before = Counters::of(&sk)?;
    sockets::echo_server(p, &sk, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("server counters after the echo: {e}"))?;
    netns_good_only(p, &ns_before)
}

fn rnext_client(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let [a, b] = rnext_keys(p);
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &a)?;
    sockets::add_key(p, &sk, &b)?;
    key_management::set_key_checked(&sk, Some(a.send_id), Some(b.recv_id))?;
    p.sync()?; // 1
    match sockets::connect(p, &sk, p.remote_addr(), p.port(), p.deadline(), || false)? {
        sockets::Connect::Established => {}
        sockets::Connect::TimedOut => {
            return Err(failure!(
                "connect() timed out after {:?}: no SYN-ACK for a SYN signed with key {} (MAC length 12) asking for key {} (MAC length 16)",
                p.timeout(),
                a.send_id,
                b.recv_id
            ));
        }
        sockets::Connect::Failed(e) => return Err(failure!("connect() failed: {e}")),
    }
    let i = key_management::info(&sk)?;
    if (i.current_key, i.rnext_key) != (Some(a.send_id), Some(b.recv_id)) {
        return Err(failure!(
            "after connect() Current_key/RNext_key are {:?}/{:?}, {}/{} were set",
            i.current_key,
            i.rnext_key,
            a.send_id,
            b.recv_id
        ));
    }
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, extras::MESSAGES, extras::MESSAGE_LEN, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("client counters after the echo: {e}"))?;
    drop(sk);
    let total = (extras::MESSAGES * extras::MESSAGE_LEN) as u32;
    let frames = extras::wait_flow_bytes(p, p.port(), total, total)?;
    // The SYN: key A, asking for B; the SYN-ACK: key B, asking for A.
    let mut lines = Vec::new();
    for (from, key_id, rnext, maclen) in [
        (Side::Client, a.send_id, b.recv_id, 12),
        (Side::Server, b.recv_id, a.send_id, 16),
    ] {
        let f = frames
            .iter()
            .find(|f| f.from == from && segment(f).is_some_and(|s| s.tcp_packet().syn()))
            .ok_or_else(|| failure!("the capture has no SYN from the {}", from.name()))?;
        let s = segment(f).ok_or_else(|| failure!("undecodable SYN"))?;
        let w = what(f, &s);
        let t = s.tcp_packet();
        let ao = t
            .ao_option()
            .map_err(|e| failure!("{w}: {e}"))?
            .ok_or_else(|| failure!("{w} is not signed"))?;
        if (ao.key_id, ao.rnext_key_id, ao.mac.len()) != (key_id, rnext, maclen) {
            return Err(failure!(
                "{w}: KeyID {} RNextKeyID {} MAC length {}, expected {key_id}, {rnext}, {maclen}",
                ao.key_id,
                ao.rnext_key_id,
                ao.mac.len()
            ));
        }
        lines.push(format!(
            "{w}: KeyID {key_id} RNextKeyID {rnext} MAC {maclen} bytes"
        ));
    }
    p.diag(lines.join("; "));
    netns_good_only(p, &ns_before)
}

// ---------------------------------------------------------------------------------------
// ao-repair-listen (row 5), del-async-listen (row 24): one socket.
// ---------------------------------------------------------------------------------------

/// key-management's listen-socket `TCP_AO_REPAIR` cases, get and set on one run.
fn ao_repair_listen(s: &Solo) -> PeerResult {
    key_management::listen_repair(s, true)?;
    key_management::listen_repair(s, false)?;
    s.diag("listen socket in repair mode: getsockopt and setsockopt(TCP_AO_REPAIR) are EPERM");
    Ok(())
}

/// Keys 100:100 and 200:200 chosen as Current_key/RNext_key while closed; they stay chosen
/// after `listen()` (the kernel behaviour key-management reports as XFAIL). Deleting them
/// with `del_async` must unset them: `TCP_AO_INFO` reports neither afterwards.
fn del_async_listen(s: &Solo) -> PeerResult {
    let sk = key_management::prepare(s, false)?;
    key_management::set_key_checked(&sk, Some(100), Some(200))?;
    sk.listen(10).or_fail("listen() failed")?;
    let i = key_management::info(&sk)?;
    s.diag(format!(
        "after listen(): Current_key {:?}, RNext_key {:?}",
        i.current_key, i.rnext_key
    ));
    for (id, name) in [(100u8, "Current_key"), (200, "RNext_key")] {
        typed_ok(
            &format!("TCP_AO_DEL_KEY of key {id}:{id} with del_async"),
            sk.del_ao_key_async(&key_management::sel(s, id, id)?),
        )?;
        let i = key_management::info(&sk)?;
        let left = if id == 100 {
            i.current_key
        } else {
            i.rnext_key
        };
        if let Some(k) = left {
            return Err(failure!(
                "after del_async of key {id}:{id} TCP_AO_INFO still reports {name} {k} (the pointer was left on the deleted key)"
            ));
        }
    }
    s.diag("del_async of both keys: TCP_AO_INFO reports no Current_key and no RNext_key");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// vrf-key-mismatch (row 6), vrf-key-delete (row 31).
// ---------------------------------------------------------------------------------------

/// Key 101:101 for the peer, bound to VRF 200, which neither socket is bound to.
fn vrf_key(p: &Peer<'_>) -> TestKey {
    let mut k = TestKey::new(p.remote_addr(), 101, 101);
    k.vrf = Some(VRF_IFINDEX);
    k
}

fn mismatch_server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p))?;
    // Allowed while listening (the check is for connected sockets only).
    sockets::add_key(p, &lsk, &vrf_key(p))
        .map_err(|e| failure!("the listening socket refused the VRF-bound key: {e}"))?;
    p.sync()?; // 1
    let sk = extras::accept_one(p, &lsk)?;
    let before = Counters::of(&sk)?;
    sockets::echo_server(p, &sk, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("server counters after the echo: {e}"))
}

fn mismatch_client(p: &Peer<'_>) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &key(p))?;
    p.sync()?; // 1
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    expect_error(
        "TCP_AO_ADD_KEY of a key bound to VRF 200 on an established socket bound to ktst-veth",
        sk.add_ao_key(&vrf_key(p).to_ao_key()?),
        "Error::Os with EINVAL",
        |e| is_os(e, libc::EINVAL),
    )?;
    let keys = typed_ok("TCP_AO_GET_KEYS", sk.ao_keys(&tcpao_sys::KeyFilter::All))?;
    if keys.len() != 1 {
        return Err(failure!(
            "after the refused add the socket holds {} keys, expected 1",
            keys.len()
        ));
    }
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, extras::MESSAGES, extras::MESSAGE_LEN, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("client counters after the echo: {e}"))?;
    p.diag("a key for VRF 200 is EINVAL on the established socket, accepted on the listener");
    sk.shutdown(Shutdown::Both).or_fail("shutdown() failed")
}

/// vrf-keys' deletion of a VRF-bound key, on a closed then a listening socket; its XFAIL
/// (`ENOENT`, for kernels without the fix) is a failure here.
fn vrf_key_delete(p: &Peer<'_>) -> PeerResult {
    for sock in [Sock::Closed, Sock::Listen] {
        vrf_keys::del_vrf_key(p, sock).map_err(|e| match e {
            Failure::XFail(why) => Failure::Fail(why),
            e => e,
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// rst-after-close (row 19): an orphaned socket that receives data resets the connection.
// ---------------------------------------------------------------------------------------
//
// The client sets TCP_LINGER2 to 120 s: above TCP_TIMEWAIT_LEN, its socket stays a full
// socket in FIN-WAIT-2 after close() (a keepalive timer, not a time-wait socket). Data from
// the server then hits tcp_rcv_state_process()'s abort-on-data: tcp_reset() -> tcp_done()
// destroys the orphan, and tcp_v{4,6}_send_reset() answers with a RST signed by its keys.

fn orphan_server(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p))?;
    p.sync()?; // 1
    let sk = extras::accept_one(p, &lsk)?;
    drop(lsk);
    sockets::echo_server(p, &sk, p.deadline())?; // until the client's FIN
    p.sync()?; // 2: the client's closed socket is in FIN-WAIT-2
    let before = Counters::of(&sk)?;
    if let Err(e) = rst::send_message(p, &sk)? {
        return Err(failure!("server: write() in CLOSE-WAIT failed: {e}"));
    }
    let e = rst::wait_error(p, &sk, "server: data to the client's closed socket")?;
    rst::expect_errno(
        &e,
        Errno::EPIPE,
        "server in CLOSE-WAIT after the closed socket's RST",
    )?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("server: the RST from the closed socket did not verify: {e}"))?;
    p.sync()?; // 3
    netns_good_only(p, &ns_before)
}

fn orphan_client(p: &Peer<'_>) -> PeerResult {
    let ns_before = Counters::netns()?;
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &key(p))?;
    tcpao_sys::raw::set_int_option(&sk, libc::IPPROTO_TCP, TCP_LINGER2, 120)
        .or_fail("setsockopt(TCP_LINGER2) failed")?;
    p.sync()?; // 1
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    sockets::echo_verify(p, &sk, extras::MESSAGES, extras::MESSAGE_LEN, p.deadline())?;
    let lport = local_port(&sk)?;
    drop(sk); // FIN; FIN-WAIT-2 (a full orphan socket) once the server acknowledges it
    rst::wait_port_state(p, lport, TCP_FIN_WAIT2, "FIN-WAIT-2")?;
    p.sync()?; // 2: the server sends data
    let frames = wait_flow(p, p.port(), "RST from the client's closed socket", |fr| {
        has(fr, Side::Client, |s| s.tcp_packet().rst())
    })?;
    p.sync()?; // 3
    // The FIN and the RST the closed socket sent are signed (the cross-check verifies
    // their MACs with the client's key).
    for (name, pred) in [
        (
            "FIN",
            (|s: &SegmentRef<'_>| s.tcp_packet().fin()) as fn(&SegmentRef<'_>) -> bool,
        ),
        ("RST", |s: &SegmentRef<'_>| s.tcp_packet().rst()),
    ] {
        if !has(&frames, Side::Client, |s| {
            pred(s) && s.tcp_packet().ao_option().is_ok_and(|a| a.is_some())
        }) {
            return Err(failure!(
                "the client's closed socket sent no {name} with a TCP-AO option"
            ));
        }
    }
    p.diag("the closed client socket's FIN and abort-on-data RST are signed");
    netns_good_only(p, &ns_before)
}

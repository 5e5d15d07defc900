// SPDX-License-Identifier: MIT OR Apache-2.0
//! `seq-ext`: the Sequence Number Extension across a 2^32 wrap (kernel `seq-ext.c`), and two
//! cases of ours (reference §6): several wraps in one connection, and a retransmission
//! across the wrap.
//!
//! Both peers echo some data, wait until everything is acknowledged, freeze their sockets
//! ([`crate::repair::freeze`]) and restore them on new ports (so no late segment of the old
//! 4-tuple can meet the new sequence numbers) just below 2^32: the client's data wraps in
//! its second message, the server's echo in its second-to-last, so both directions wrap on
//! different segments. Upstream moves 1000 × 1000 bytes; under TCG we move 20 × 1000, which
//! still crosses both wraps. Each side checks: the connection is alive, `TCPAOGood` grew,
//! netns `TCPAOBad` is exactly 0, socket/key counters show `GOOD` only, and the
//! `TCP_AO_REPAIR` dump shows `snd_sne` = `rcv_sne` = 1.
//!
//! Every restore registers the peer's view (ISNs, SEQs, SNEs) with the capture, and the test
//! passes only if the reference verified segments with SNE 0 and SNE 1 from both peers
//! ([`PairTest::xcheck_snes`]): the kernel and tcpao-refimpl agree across the wrap.

use socket2::Socket;

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::PeerResult;
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::registry::Test;
use crate::repair::{self, Checkpoint, Restore};
use crate::rng::Rng;
use crate::sockets::{self, TestKey};
use crate::topology::Side;

const MESSAGES: usize = 20;
const MESSAGE_LEN: usize = 1000;
const QUOTA: usize = MESSAGES * MESSAGE_LEN;
/// Rounds of restore-and-wrap in the `several-wraps` case.
const WRAPS: u32 = 3;

/// The client's first unacknowledged byte after the restore: its second message wraps.
const CLIENT_SEQ: u32 = u32::MAX - MESSAGE_LEN as u32;
/// The server's: its echo wraps in the second-to-last message.
const SERVER_SEQ: u32 = u32::MAX - (QUOTA - 2 * MESSAGE_LEN) as u32;
/// Retransmission case: the client's queued data starts this far before the wrap.
const RETRANS_BEFORE_WRAP: u32 = 500;
const RETRANS_LEN: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rollover,
    SeveralWraps,
    Retransmit,
}

/// The program's tests: 3 cases × 2 families.
pub fn tests() -> Vec<Test> {
    let mut v = PairTest::new("seq-ext", "rollover")
        .ao()
        .xcheck_snes(&[0, 1])
        .build(|p| server(p, Kind::Rollover), |p| client(p, Kind::Rollover));
    v.extend(
        PairTest::new("seq-ext", "several-wraps")
            .ao()
            .xcheck_snes(&(0..=WRAPS).collect::<Vec<_>>())
            .timeout(std::time::Duration::from_secs(60))
            .build(
                |p| server(p, Kind::SeveralWraps),
                |p| client(p, Kind::SeveralWraps),
            ),
    );
    // Only the client's data wraps here: its retransmission (SNE 0) and new data (SNE 1).
    v.extend(
        PairTest::new("seq-ext", "retransmit-across-wrap")
            .ao()
            .xcheck_snes_from(Side::Client, &[0, 1])
            .build(
                |p| server(p, Kind::Retransmit),
                |p| client(p, Kind::Retransmit),
            ),
    );
    v
}

fn key(p: &Peer<'_>) -> TestKey {
    TestKey::new(p.remote_addr(), 100, 100)
}

/// Both sides: freeze the quiet socket and move the image to the next ports.
fn freeze_moved(p: &Peer<'_>, sk: Socket) -> PeerResult<Checkpoint> {
    repair::wait_all_acked(p, &sk)?;
    p.sync()?; // both quiet: nothing in flight
    let mut img = repair::freeze(p, sk)?;
    if !img.send_queue.is_empty() || !img.recv_queue.is_empty() {
        return Err(failure!(
            "the checkpoint still has queued data ({} bytes to send, {} unread)",
            img.send_queue.len(),
            img.recv_queue.len()
        ));
    }
    img.local.set_port(img.local.port() + 1);
    img.remote.set_port(img.remote.port() + 1);
    Ok(img)
}

/// The `TCP_AO_REPAIR` dump of a live socket (repair mode on; the socket is killed after).
fn dump_sne(p: &Peer<'_>, sk: Socket, want: u32) -> PeerResult {
    let img = repair::freeze(p, sk)?;
    let ao = img
        .ao
        .ok_or_else(|| failure!("the socket has no TCP-AO state"))?;
    if ao.snd_sne != want || ao.rcv_sne != want {
        return Err(failure!(
            "SEQ extension was not incremented: {}/{}, expected {want}/{want}",
            ao.snd_sne,
            ao.rcv_sne
        ));
    }
    p.diag(format!(
        "SEQ extension incremented: {}/{}",
        ao.snd_sne, ao.rcv_sne
    ));
    Ok(())
}

fn check_counters(p: &Peer<'_>, sk: &Socket, before: &Counters, pre_good: u64) -> PeerResult {
    let after = Counters::of(sk)?;
    after.assert_grew_exactly(before, Grew::GOOD)?;
    if after.netns.ao_good() <= pre_good {
        return Err(failure!(
            "TCPAOGood counter did not increase: {} <= {pre_good}",
            after.netns.ao_good()
        ));
    }
    p.diag(format!(
        "TCPAOGood counter increased {pre_good} => {}",
        after.netns.ao_good()
    ));
    if after.netns.ao_bad() != 0 {
        return Err(failure!(
            "TCPAOBad counter is non-zero: {}",
            after.netns.ao_bad()
        ));
    }
    p.diag("TCPAOBad counter didn't increase");
    Ok(())
}

fn server(p: &Peer<'_>, kind: Kind) -> PeerResult {
    let k = key(p);
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &k)?;
    p.sync()?; // 1: key added => connect()
    let mut sk = sockets::accept(p, &lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))?;
    drop(lsk);
    let served = sockets::echo_quota(p, &sk, QUOTA as u64, p.deadline())?;
    if served != QUOTA as u64 {
        return Err(failure!("server served: {served} of {QUOTA} bytes"));
    }
    let pre_good = Counters::netns()?.netns.ao_good();
    let keys = [k];
    match kind {
        Kind::Rollover | Kind::SeveralWraps => {
            let rounds = if kind == Kind::Rollover { 1 } else { WRAPS };
            for round in 0..rounds {
                let mut img = freeze_moved(p, sk)?;
                img.set_seqs(SERVER_SEQ, CLIENT_SEQ);
                sk = img.restore(p, &Restore::new(&keys))?;
                let before = Counters::of(&sk)?;
                p.sync()?; // restored on both sides => data
                let served = sockets::echo_quota(p, &sk, QUOTA as u64, p.deadline())?;
                if served != QUOTA as u64 {
                    return Err(failure!(
                        "round {round}: server served: {served} of {QUOTA} bytes across the wrap"
                    ));
                }
                p.diag(format!("round {round}: server alive"));
                check_counters(p, &sk, &before, pre_good)?;
            }
            dump_sne(p, sk, rounds)?;
        }
        Kind::Retransmit => {
            let mut img = freeze_moved(p, sk)?;
            // The client's data [2^32 - 500, 500) already arrived: we expect byte 500 next,
            // after the wrap (receive SNE 1).
            let after_wrap = 0u32
                .wrapping_sub(RETRANS_BEFORE_WRAP)
                .wrapping_add(RETRANS_LEN as u32);
            img.set_seqs(SERVER_SEQ, after_wrap);
            if let Some(ao) = img.ao.as_mut() {
                ao.rcv_sne = 1;
            }
            sk = img.restore(p, &Restore::new(&keys))?;
            let before = Counters::of(&sk)?;
            p.sync()?; // server restored => the client restores with the data queued
            // The client's kernel retransmits the data before the wrap; it must verify
            // (SNE 0, although our receive SNE is 1) and be dropped as a duplicate.
            let good = p.wait_for(p.deadline(), || {
                Ok((Counters::of(&sk)?.grown(&before))
                    .contains(Grew::GOOD)
                    .then_some(()))
            })?;
            if good.is_none() {
                return Err(failure!(
                    "the retransmission across the wrap did not verify within {:?}",
                    p.timeout()
                ));
            }
            let mut b = [0u8; 1];
            if sockets::read_now(&sk, &mut b)? != Some(0) {
                return Err(failure!(
                    "the retransmitted duplicate reached the application"
                ));
            }
            p.sync()?; // the client's data was acknowledged => new data after the wrap
            let served = sockets::echo_quota(p, &sk, MESSAGE_LEN as u64, p.deadline())?;
            if served != MESSAGE_LEN as u64 {
                return Err(failure!(
                    "server served: {served} of {MESSAGE_LEN} bytes after the wrap"
                ));
            }
            p.diag("server alive after a retransmission across the wrap");
            check_counters(p, &sk, &before, pre_good)?;
            let img = repair::freeze(p, sk)?;
            let ao = img.ao.ok_or_else(|| failure!("no TCP-AO state"))?;
            if (ao.snd_sne, ao.rcv_sne) != (0, 1) {
                return Err(failure!(
                    "SEQ extensions are {}/{}, expected 0/1 (only the client's data wrapped)",
                    ao.snd_sne,
                    ao.rcv_sne
                ));
            }
            p.diag(format!("SEQ extension: {}/{}", ao.snd_sne, ao.rcv_sne));
        }
    }
    p.sync()?; // verified => closed
    Ok(())
}

fn client(p: &Peer<'_>, kind: Kind) -> PeerResult {
    let k = key(p);
    let mut sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &k)?;
    p.sync()?; // 1
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    sockets::echo_verify(p, &sk, MESSAGES, MESSAGE_LEN, p.deadline())
        .map_err(|e| failure!("pre-migrate verify failed: {e}"))?;
    let pre_good = Counters::netns()?.netns.ao_good();
    let keys = [k];
    match kind {
        Kind::Rollover | Kind::SeveralWraps => {
            let rounds = if kind == Kind::Rollover { 1 } else { WRAPS };
            for round in 0..rounds {
                let mut img = freeze_moved(p, sk)?;
                img.set_seqs(CLIENT_SEQ, SERVER_SEQ);
                sk = img.restore(p, &Restore::new(&keys))?;
                let before = Counters::of(&sk)?;
                p.sync()?;
                sockets::echo_verify(p, &sk, MESSAGES, MESSAGE_LEN, p.deadline())
                    .map_err(|e| failure!("round {round}: post-migrate verify failed: {e}"))?;
                p.diag(format!("round {round}: post-migrate connection alive"));
                check_counters(p, &sk, &before, pre_good)?;
            }
            dump_sne(p, sk, rounds)?;
        }
        Kind::Retransmit => {
            let mut img = freeze_moved(p, sk)?;
            let mut data = vec![0u8; RETRANS_LEN];
            Rng::from_clock().fill(&mut data);
            // Unacknowledged data across the wrap: the restored kernel owns it as sent and
            // retransmits it when its retransmission timer fires.
            img.send_queue = data;
            img.set_seqs(0u32.wrapping_sub(RETRANS_BEFORE_WRAP), SERVER_SEQ);
            p.sync()?; // the server is restored
            sk = img.restore(p, &Restore::new(&keys))?;
            let before = Counters::of(&sk)?;
            // Poll until the server's duplicate ACK acknowledged it.
            repair::wait_all_acked(p, &sk)
                .map_err(|e| failure!("the data retransmitted across the wrap: {e}"))?;
            p.sync()?;
            sockets::echo_verify(p, &sk, 1, MESSAGE_LEN, p.deadline())
                .map_err(|e| failure!("post-wrap verify failed: {e}"))?;
            p.diag("post-migrate connection alive after a retransmission across the wrap");
            check_counters(p, &sk, &before, pre_good)?;
            let img = repair::freeze(p, sk)?;
            let ao = img.ao.ok_or_else(|| failure!("no TCP-AO state"))?;
            if (ao.snd_sne, ao.rcv_sne) != (1, 0) {
                return Err(failure!(
                    "SEQ extensions are {}/{}, expected 1/0 (our data wrapped)",
                    ao.snd_sne,
                    ao.rcv_sne
                ));
            }
            p.diag(format!("SEQ extension: {}/{}", ao.snd_sne, ao.rcv_sne));
        }
    }
    p.sync()?;
    Ok(())
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! SNE (RFC 5925 §6.2) across 32-bit wraps: the pure function, the tracker against a
//! 64-bit ground truth, and end to end (signer → validator) with reordering and
//! retransmission around the wrap.

use proptest::prelude::*;
use tcpao_refimpl::Counter;
use tcpao_refimpl::sign::ConnectionSigner;
use tcpao_refimpl::sne::{SneTracker, compute_sne, extended_seq};
use tcpao_refimpl::validate::Direction;
use tcpao_refimpl::wire::{TcpFlags, TcpRepr};
use tcpao_refimpl::{Algorithm, Connection, FlowValidator, Mkt, SegmentRef, Verdict};

#[test]
fn reordering_across_the_wrap() {
    // Segments of 1000 bytes around 2^32, delivered out of order.
    let mut t = SneTracker::new(0xffff_f000);
    assert_eq!(t.observe(0xffff_f000, 1000), 0);
    // The segment after the wrap arrives before the one that straddles it.
    assert_eq!(t.observe(0x0000_07d0, 1000), 1); // starts after the wrap
    assert_eq!(t.next_seq(), 0xbb8);
    assert_eq!(t.sne(), 1);
    // Late segments from before the wrap still get SNE 0.
    assert_eq!(t.observe(0xffff_f3e8, 1000), 0);
    assert_eq!(t.observe(0xffff_fc18, 1000), 0); // straddles the wrap
    assert_eq!(t.next_seq(), 0xbb8);
    assert_eq!(t.sne(), 1);
}

#[test]
fn retransmission_before_the_wrap_after_it() {
    let mut t = SneTracker::with_state(0x10, 1);
    // A retransmission of data sent just before the wrap.
    assert_eq!(t.sne_for(0xffff_ff00), 0);
    assert_eq!(t.observe(0xffff_ff00, 0x100), 0);
    assert_eq!((t.next_seq(), t.sne()), (0x10, 1));
    // A retransmission after the wrap keeps SNE 1.
    assert_eq!(t.observe(0x8, 8), 1);
}

#[test]
fn several_wraps() {
    let mut t = SneTracker::new(0x1234_5678);
    let mut ext = extended_seq(0, 0x1234_5678);
    // Windows of 1 GiB in 64 KiB segments: 5 wraps.
    for _ in 0..(5u64 << 32) / 0x4000_0000 {
        for _ in 0..0x4000 {
            let seq = ext as u32;
            assert_eq!(t.observe(seq, 0x1_0000), (ext >> 32) as u32);
            ext += 0x1_0000;
        }
    }
    assert_eq!(t.sne(), 5);
    assert_eq!(extended_seq(t.sne(), t.next_seq()), ext);
}

#[test]
fn rfc5925_style_wrap_of_the_sne_itself() {
    assert_eq!(compute_sne(u32::MAX, 0xffff_ff00, 0x10), 0);
    let mut t = SneTracker::with_state(0xffff_ff00, u32::MAX);
    assert_eq!(t.observe(0xffff_ff00, 0x200), u32::MAX);
    assert_eq!(t.sne(), 0);
    assert_eq!(t.sne_for(0xffff_ff80), u32::MAX);
}

proptest! {
    /// Any segment within 2^31 - 1 of the tracker's reference gets its true SNE, whatever
    /// the order of arrival.
    #[test]
    fn tracker_matches_64bit_truth(
        start in any::<u64>().prop_map(|v| v >> 4),
        steps in prop::collection::vec((0u64..0x7000_0000, 0u32..65536, any::<bool>()), 1..60),
    ) {
        let mut t = SneTracker::with_state(start as u32, (start >> 32) as u32);
        let mut high = start;
        for (delta, len, back) in steps {
            // A segment ahead of the highest point, or a late one behind it.
            let seq64 = if back { high.saturating_sub(delta) } else { high + delta };
            prop_assume!(seq64.abs_diff(high) < 0x7fff_ffff - u64::from(len));
            let sne = t.observe(seq64 as u32, len);
            prop_assert_eq!(sne, (seq64 >> 32) as u32);
            high = high.max(seq64 + u64::from(len));
            prop_assert_eq!(extended_seq(t.sne(), t.next_seq()), high);
        }
    }
}

/// A client sends data across 2^32 with a signer; the server's validator sees the
/// segments reordered and one retransmitted, and accepts all with the right SNE.
#[test]
fn end_to_end_across_the_wrap() {
    for alg in Algorithm::ALL {
        let isn = 0xffff_d000u32;
        let conn = Connection::new(
            "[2001:db8::1]:40000".parse().unwrap(),
            "[2001:db8::2]:179".parse().unwrap(),
            isn,
            7,
        );
        let mkt = Mkt::new(1, 2, alg, "a shared secret");
        let mut signer = ConnectionSigner::new(mkt.clone(), conn).unwrap();
        let payload = [0x5au8; 1000];
        let mut packets = Vec::new();
        let mut seq = isn.wrapping_add(1);
        for _ in 0..40 {
            let tcp = TcpRepr {
                src_port: 40000,
                dst_port: 179,
                seq_number: seq,
                ack_number: 8,
                flags: TcpFlags::ACK | TcpFlags::PSH,
                window_len: 1000,
                urgent_at: 0,
                options: &[],
                payload: &payload,
            };
            let (pkt, sne) = signer.sign(&tcp).unwrap();
            let expect_sne = u32::from(u64::from(seq) < u64::from(isn));
            assert_eq!(sne, expect_sne, "{alg}: signer SNE at {seq:#x}");
            packets.push((pkt, sne));
            seq = seq.wrapping_add(1000);
        }
        // Swap neighbours pairwise, and retransmit a pre-wrap segment at the end.
        let mut order: Vec<usize> = (0..packets.len()).collect();
        for pair in order.chunks_mut(2) {
            pair.reverse();
        }
        order.push(5);
        let mut server = FlowValidator::new(conn.reversed(), [mkt.peer_view()]).unwrap();
        server.set_sne_tracker(
            Direction::RemoteToLocal,
            SneTracker::new(isn.wrapping_add(1)),
        );
        for i in order {
            let (pkt, sne) = &packets[i];
            let v = server.validate_packet(pkt).unwrap();
            assert_eq!(
                v,
                Verdict::Good {
                    key_id: 1,
                    rnext_key_id: 2,
                    sne: *sne
                },
                "{alg}: segment {i}"
            );
        }
        assert_eq!(server.counts().get(Counter::TCPAOGood), 41);
        assert_eq!(server.sne_tracker(Direction::RemoteToLocal).sne(), 1);
        // The same packet checked with the wrong SNE is Bad.
        let (pkt, sne) = &packets[39];
        let seg = SegmentRef::parse(pkt).unwrap();
        assert!(matches!(
            server.check(Direction::RemoteToLocal, &seg, sne - 1),
            Verdict::Bad { .. }
        ));
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Sequence Number Extension (RFC 5925 §6.2, RFC 9187).
//!
//! The SNE counts how often a direction's 32-bit sequence space has wrapped; SNE and SEQ
//! form a 64-bit sequence number that the MAC covers. It starts at 0 at the ISN and is
//! never sent. Each side infers it, and late segments from before a wrap must get the
//! *previous* SNE.
//!
//! This module follows Linux (`tcp_ao_compute_sne`), which places each SEQ in the 2 GB
//! window around a reference point (`snd_una` when sending, `rcv_nxt` when receiving)
//! whose SNE is known:
//!
//! * SEQ before the reference in modular order but numerically larger → SNE − 1;
//! * SEQ after the reference but numerically smaller → SNE + 1;
//! * otherwise the reference's SNE.
//!
//! [`SneTracker`] keeps the reference at the highest sequence number seen so far
//! (end of the furthest segment), moving only forward.

/// `a` is before `b` in 32-bit modular order (RFC 9293 §3.4, Linux `before()`).
pub const fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The SNE of `seq`, given a reference point `next_seq` whose SNE is `next_sne`
/// (Linux `tcp_ao_compute_sne`; RFC 5925 §6.2).
pub const fn compute_sne(next_sne: u32, next_seq: u32, seq: u32) -> u32 {
    if seq_before(seq, next_seq) {
        if seq > next_seq {
            next_sne.wrapping_sub(1)
        } else {
            next_sne
        }
    } else if seq < next_seq {
        next_sne.wrapping_add(1)
    } else {
        next_sne
    }
}

/// The 64-bit extended sequence number `SNE:SEQ`.
pub const fn extended_seq(sne: u32, seq: u32) -> u64 {
    ((sne as u64) << 32) | seq as u64
}

/// Per-direction SNE state for a verifier that watches segments go by.
///
/// Start it at the ISN of the direction ([`SneTracker::new`]), ask [`SneTracker::sne_for`]
/// for the SNE of a segment, and [`SneTracker::observe`] segments that were accepted so
/// the reference point follows the highest sequence number seen.
///
/// ```
/// use tcpao_refimpl::sne::SneTracker;
/// let mut t = SneTracker::new(0xffff_ff00);
/// assert_eq!(t.observe(0xffff_ff00, 0x100), 0);  // up to the wrap
/// assert_eq!(t.observe(0, 100), 1);              // after the wrap
/// assert_eq!(t.sne_for(0xffff_fff0), 0);         // a late segment from before it
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SneTracker {
    seq: u32,
    sne: u32,
}

impl SneTracker {
    /// A tracker starting at `isn` with SNE 0 (RFC 5925 §6.2).
    pub const fn new(isn: u32) -> Self {
        SneTracker { seq: isn, sne: 0 }
    }

    /// A tracker at a known reference point (e.g. restored with `TCP_AO_REPAIR`).
    pub const fn with_state(next_seq: u32, sne: u32) -> Self {
        SneTracker { seq: next_seq, sne }
    }

    /// The reference sequence number (highest seen).
    pub const fn next_seq(&self) -> u32 {
        self.seq
    }

    /// The SNE of the reference point.
    pub const fn sne(&self) -> u32 {
        self.sne
    }

    /// The SNE for a segment starting at `seq`, without changing state.
    pub const fn sne_for(&self, seq: u32) -> u32 {
        compute_sne(self.sne, self.seq, seq)
    }

    /// Record a segment `[seq, seq + len)` (len counts SYN and FIN) and return the SNE of
    /// `seq`. The reference moves to the segment's end only if that is further ahead.
    pub fn observe(&mut self, seq: u32, len: u32) -> u32 {
        let sne = self.sne_for(seq);
        let end = extended_seq(sne, seq).wrapping_add(u64::from(len));
        // Modular comparison in the 64-bit space, so that even the SNE may wrap.
        if (end.wrapping_sub(extended_seq(self.sne, self.seq)) as i64) > 0 {
            self.seq = end as u32;
            self.sne = (end >> 32) as u32;
        }
        sne
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_sne_cases() {
        // Around the wrap with reference just after it (SNE 1).
        assert_eq!(compute_sne(1, 10, 0xffff_fff0), 0); // before, numerically larger
        assert_eq!(compute_sne(1, 10, 5), 1);
        assert_eq!(compute_sne(1, 10, 20), 1);
        // Reference just before the wrap (SNE 0), segment after it.
        assert_eq!(compute_sne(0, 0xffff_fff0, 4), 1); // after, numerically smaller
        assert_eq!(compute_sne(0, 0xffff_fff0, 0xffff_fff8), 0);
        // SNE itself wraps modulo 2^32.
        assert_eq!(compute_sne(u32::MAX, 0xffff_fff0, 4), 0);
        assert_eq!(compute_sne(0, 10, 0xffff_fff0), u32::MAX);
    }

    #[test]
    fn tracker_only_moves_forward() {
        let mut t = SneTracker::new(100);
        assert_eq!(t.observe(100, 50), 0);
        assert_eq!(t.next_seq(), 150);
        assert_eq!(t.observe(120, 10), 0); // retransmission inside
        assert_eq!(t.next_seq(), 150);
    }
}

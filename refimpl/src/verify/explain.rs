// SPDX-License-Identifier: MIT OR Apache-2.0
//! `--explain`: which misconfiguration makes failing segments verify.
//!
//! The checker keeps no segments, so every failing segment is re-checked on the spot (up
//! to a budget per flow direction) under each hypothesis below, and the hypotheses that
//! make it verify are tallied. When the flow is retired, the hypothesis that explains the
//! most failures in each direction becomes one sentence a network engineer can act on.
//!
//! Hypotheses (the interop failures seen in the field, RFC 9235 §8 and our notes):
//! TCP options included vs excluded (RFC 5925 §3.1 flag), another tuple's secret, SendID
//! and RecvID swapped or another KeyID, another algorithm, another MAC length, SNE off by
//! one, ISNs swapped in the KDF context, SYN key used for the SYN-ACK, a NUL appended to
//! the secret (only visible with AES-CMAC: HMAC zero-pads short keys, so a trailing NUL
//! changes nothing); for TCP-MD5, another tuple's secret.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::algo::Algorithm;
use crate::kdf::Context;

use super::keys::{KeysFile, Role};
use super::{FlowReport, SegInfo, verify_with};

/// One candidate misconfiguration (MKT numbers are keys-file indices, from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hypothesis {
    /// The sender uses the opposite TCP option flag (`include` is what it does).
    OptionsFlag {
        /// MKT number.
        mkt: usize,
        /// Whether the sender includes options.
        include: bool,
    },
    /// The sender uses the secret of another tuple.
    OtherSecret {
        /// MKT the segment selected.
        mkt: usize,
        /// MKT whose secret verifies.
        secret_of: usize,
    },
    /// The secret of `mkt` verifies but the KeyID selects no tuple.
    KeyId {
        /// MKT whose secret verifies.
        mkt: usize,
        /// KeyID on the wire.
        key_id: u8,
        /// Whether the KeyID is the tuple's other ID (send_id/recv_id swapped).
        swapped: bool,
    },
    /// The sender uses another algorithm.
    Algorithm {
        /// MKT number.
        mkt: usize,
        /// The algorithm that verifies.
        algorithm: Algorithm,
    },
    /// The sender uses another MAC length.
    MacLen {
        /// MKT number.
        mkt: usize,
        /// MAC length on the wire.
        maclen: usize,
    },
    /// The sender's SNE differs from the expected one by `delta`.
    Sne {
        /// MKT number.
        mkt: usize,
        /// Sender SNE minus expected SNE.
        delta: i8,
    },
    /// The sender exchanged source and destination ISNs in the KDF context.
    IsnsSwapped {
        /// MKT number.
        mkt: usize,
    },
    /// The SYN-ACK was signed with the SYN key (receiver ISN 0).
    SynKeyForSynAck {
        /// MKT number.
        mkt: usize,
    },
    /// The sender appended a NUL byte to the secret.
    NulTerminated {
        /// MKT number.
        mkt: usize,
    },
}

/// Per-flow tallies.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExplainState {
    /// Failing segments examined, per side.
    tried: [u32; 2],
    /// Hypothesis hits, per side, with the order each was first found in (the tie-break:
    /// a `HashMap`'s order is random).
    hits: [HashMap<Hypothesis, (u32, usize)>; 2],
    /// Unsigned segments per side (counted whether or not `--explain` is on).
    pub(crate) unsigned: [u64; 2],
}

impl ExplainState {
    /// Re-check a failing TCP-AO segment from side `si`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn examine(
        &mut self,
        keys: &KeysFile,
        si: usize,
        s: &SegInfo<'_>,
        key_id: u8,
        opt_maclen: usize,
        sne: u32,
        isns: Option<(u32, u32)>,
        selected: Option<usize>,
        budget: u32,
    ) {
        let Some((isn_s, isn_d)) = isns else { return };
        if self.tried[si] >= budget {
            return;
        }
        self.tried[si] += 1;
        let Ok(ctx) = Context::new(s.src, s.dst, isn_s, isn_d) else {
            return;
        };
        let seg = &s.seg;
        let (src, dst) = (s.src.ip(), s.dst.ip());
        let mut found: Vec<Hypothesis> = Vec::new();
        let cands: Vec<usize> = keys
            .mkts
            .iter()
            .enumerate()
            .filter(|(_, e)| e.matches_ao(src, dst, key_id))
            .map(|(i, _)| i)
            .collect();
        if cands.is_empty() || selected.is_none() {
            // Key not found: does the secret of some tuple verify despite the KeyID?
            for e in &keys.mkts {
                let Some(m) = e.mkt() else {
                    continue;
                };
                if verify_with(m.algorithm, e.secret(), m.include_options, &ctx, sne, seg) {
                    let other = match e.role(src, dst) {
                        Some(Role::Local) => Some(m.recv_id),
                        Some(Role::Peer) => Some(m.send_id),
                        _ => None,
                    };
                    found.push(Hypothesis::KeyId {
                        mkt: e.index,
                        key_id,
                        swapped: other == Some(key_id),
                    });
                }
            }
        }
        for &i in &cands {
            let e = &keys.mkts[i];
            let Some(mkt) = e.mkt() else {
                continue;
            };
            let alg = mkt.algorithm;
            let secret = e.secret();
            let m = e.index;
            let inc = mkt.include_options;
            if opt_maclen != mkt.mac_len() && verify_with(alg, secret, inc, &ctx, sne, seg) {
                found.push(Hypothesis::MacLen {
                    mkt: m,
                    maclen: opt_maclen,
                });
            }
            if verify_with(alg, secret, !inc, &ctx, sne, seg) {
                found.push(Hypothesis::OptionsFlag {
                    mkt: m,
                    include: !inc,
                });
            }
            for o in keys.mkts.iter().filter(|o| o.index != m) {
                if o.secret() != secret && verify_with(alg, o.secret(), inc, &ctx, sne, seg) {
                    found.push(Hypothesis::OtherSecret {
                        mkt: m,
                        secret_of: o.index,
                    });
                }
            }
            for a in Algorithm::ALL.into_iter().filter(|&a| a != alg) {
                if verify_with(a, secret, inc, &ctx, sne, seg) {
                    found.push(Hypothesis::Algorithm {
                        mkt: m,
                        algorithm: a,
                    });
                }
            }
            if !s.syn {
                for d in [1i8, -1] {
                    let sne2 = sne.wrapping_add_signed(i32::from(d));
                    if verify_with(alg, secret, inc, &ctx, sne2, seg) {
                        found.push(Hypothesis::Sne { mkt: m, delta: d });
                    }
                }
                if let Ok(c2) = Context::new(s.src, s.dst, isn_d, isn_s) {
                    if verify_with(alg, secret, inc, &c2, sne, seg) {
                        found.push(Hypothesis::IsnsSwapped { mkt: m });
                    }
                }
            }
            if s.syn && s.ack_flag {
                if let Ok(c2) = Context::new(s.src, s.dst, isn_s, 0) {
                    if verify_with(alg, secret, inc, &c2, sne, seg) {
                        found.push(Hypothesis::SynKeyForSynAck { mkt: m });
                    }
                }
            }
            let mut nul = zeroize::Zeroizing::new(secret.to_vec());
            nul.push(0);
            if verify_with(alg, &nul, inc, &ctx, sne, seg) {
                found.push(Hypothesis::NulTerminated { mkt: m });
            }
        }
        for h in found {
            self.hit(si, h);
        }
    }

    /// Re-check a failing TCP-MD5 segment from side `si` with the other tuples' secrets.
    pub(crate) fn examine_md5(&mut self, keys: &KeysFile, si: usize, s: &SegInfo<'_>) {
        if self.tried[si] >= 8 {
            return;
        }
        self.tried[si] += 1;
        let sel = keys
            .mkts
            .iter()
            .find(|e| e.matches_md5(s.src.ip(), s.dst.ip()))
            .map_or(0, |e| e.index);
        for o in keys.mkts.iter().filter(|o| o.index != sel) {
            if crate::md5::verify_md5(&s.seg, o.secret()).unwrap_or(false) {
                self.hit(
                    si,
                    Hypothesis::OtherSecret {
                        mkt: sel,
                        secret_of: o.index,
                    },
                );
            }
        }
    }

    fn hit(&mut self, si: usize, h: Hypothesis) {
        let next = self.hits[si].len();
        self.hits[si].entry(h).or_insert((0, next)).0 += 1;
    }

    /// Best hypothesis for side `si`: (hypothesis, hits, tried).
    fn best(&self, si: usize) -> Option<(Hypothesis, u32, u32)> {
        let mut v: Vec<(&Hypothesis, &(u32, usize))> = self.hits[si].iter().collect();
        // Deterministic: most hits, then a fixed preference order, then the first found.
        v.sort_by_key(|(h, (n, first))| (std::cmp::Reverse(*n), rank(h), *first));
        v.first().map(|(h, (n, _))| (**h, *n, self.tried[si]))
    }

    /// The sentences for a finished flow (`ci` is the client's side index).
    pub(crate) fn findings(&self, r: &FlowReport, ci: usize) -> Vec<String> {
        let mut out = Vec::new();
        let name = |si: usize| -> SocketAddr { if si == ci { r.client } else { r.server } };
        let best = [self.best(0), self.best(1)];
        // Both directions fail the same way: the keys file (or both routers) differ.
        if let (Some((h0, ..)), Some((h1, ..))) = (best[0], best[1]) {
            if h0 == h1 && !matches!(h0, Hypothesis::KeyId { .. }) {
                out.push(both_sentence(h0, r));
                return out;
            }
        }
        for si in [ci, 1 - ci] {
            let who = name(si).ip();
            match best[si] {
                Some((h, hits, tried)) => {
                    let mut s = side_sentence(h, who.to_string());
                    if hits < tried {
                        s.push_str(&format!(
                            " ({hits} of {tried} failing segments examined verify this way)"
                        ));
                    }
                    out.push(s);
                }
                None if self.tried[si] > 0 => out.push(format!(
                    "{who}: {} failing segment(s) verify under none of the usual \
                     misconfigurations (option flag, other tuples' secrets, swapped IDs, \
                     algorithm, MAC length, SNE, ISNs); the secret for this direction is \
                     probably different on {who}",
                    self.tried[si]
                )),
                None => {}
            }
            if self.unsigned[si] > 0 {
                out.push(format!(
                    "{who} sends segments without TCP-AO ({} seen) although a configured key \
                     covers them; configure TCP-AO on {who} for this peer, or check that its \
                     key's address/prefix matches the connection",
                    self.unsigned[si]
                ));
            }
        }
        if r.counts.unverifiable() > 0 && r.isn_source == super::IsnSource::Unknown {
            out.push(format!(
                "{} segment(s) could not be checked because the capture does not contain the \
                 handshake; add a [[flow]] entry with client = \"{}\", server = \"{}\" and both \
                 ISNs (for example from the routers' TCP-AO session details)",
                r.counts.unverifiable(),
                r.client,
                r.server
            ));
        }
        out
    }
}

fn rank(h: &Hypothesis) -> u8 {
    match h {
        Hypothesis::MacLen { .. } => 0,
        Hypothesis::KeyId { .. } => 1,
        Hypothesis::OptionsFlag { .. } => 2,
        Hypothesis::OtherSecret { .. } => 3,
        Hypothesis::Algorithm { .. } => 4,
        Hypothesis::IsnsSwapped { .. } => 5,
        Hypothesis::SynKeyForSynAck { .. } => 6,
        Hypothesis::Sne { .. } => 7,
        Hypothesis::NulTerminated { .. } => 8,
    }
}

fn side_sentence(h: Hypothesis, who: String) -> String {
    match h {
        Hypothesis::OptionsFlag {
            mkt,
            include: false,
        } => format!(
            "{who} signs with TCP options excluded from the MAC; set include_options = false \
             for MKT #{mkt} or enable option inclusion on the router ({who})"
        ),
        Hypothesis::OptionsFlag { mkt, include: true } => format!(
            "{who} signs with TCP options included in the MAC; set include_options = true for \
             MKT #{mkt} or disable option inclusion (exclude TCP options) on the router ({who})"
        ),
        Hypothesis::OtherSecret { mkt, secret_of } => format!(
            "{who} signs with the secret of MKT #{secret_of}, not the one of MKT #{mkt}; \
             give both ends the same secret for MKT #{mkt} (or fix it in the keys file)"
        ),
        Hypothesis::KeyId {
            mkt,
            key_id,
            swapped: true,
        } => format!(
            "{who} sends KeyID {key_id} with the secret of MKT #{mkt}, whose send_id and \
             recv_id are the other way round; swap send_id and recv_id for MKT #{mkt} (or \
             swap SendID/RecvID on the router {who})"
        ),
        Hypothesis::KeyId {
            mkt,
            key_id,
            swapped: false,
        } => format!(
            "{who} sends KeyID {key_id} with the secret of MKT #{mkt}, but MKT #{mkt} does not \
             expect that KeyID from {who}; set the matching send_id/recv_id = {key_id} for MKT \
             #{mkt} (or fix the KeyID on the router {who})"
        ),
        Hypothesis::Algorithm { mkt, algorithm } => format!(
            "{who} signs with {}, not the algorithm of MKT #{mkt}; set algorithm = \"{}\" for \
             MKT #{mkt} or configure the same algorithm on the router ({who})",
            algorithm.keyfile_name(),
            algorithm.keyfile_name()
        ),
        Hypothesis::MacLen { mkt, maclen } => format!(
            "{who} sends {maclen}-byte MACs; set maclen = {maclen} for MKT #{mkt} or configure \
             the same MAC length on the router ({who})"
        ),
        Hypothesis::Sne { mkt, delta } => format!(
            "{who}'s segments verify (MKT #{mkt}) with an SNE {} than expected: {who} keeps \
             its sequence number extension off by one across a sequence-number wrap \
             (RFC 5925 §6.2, RFC 9187), or the capture starts after a wrap: then set \
             client_sne/server_sne in a [[flow]] entry",
            if delta > 0 { "one higher" } else { "one lower" }
        ),
        Hypothesis::IsnsSwapped { mkt } => format!(
            "{who} derives its traffic keys (MKT #{mkt}) with the two ISNs swapped in the KDF \
             context, an implementation error (RFC 5925 §5.2); if the ISNs come from a \
             [[flow]] entry, swap client_isn and server_isn"
        ),
        Hypothesis::SynKeyForSynAck { mkt } => format!(
            "{who} signs its SYN-ACK with the SYN traffic key (peer ISN 0) of MKT #{mkt} \
             instead of the key made from both ISNs, an implementation error (RFC 5925 §5.2)"
        ),
        Hypothesis::NulTerminated { mkt } => format!(
            "{who} appends a NUL byte to the secret of MKT #{mkt}, a known implementation \
             error; remove the terminator on {who} (or add 00 to the end of secret_hex)"
        ),
    }
}

fn both_sentence(h: Hypothesis, r: &FlowReport) -> String {
    let ends = format!("both {} and {}", r.client.ip(), r.server.ip());
    match h {
        Hypothesis::OptionsFlag { mkt, include } => format!(
            "{ends} sign with TCP options {} the MAC; set include_options = {include} for MKT \
             #{mkt}",
            if include {
                "included in"
            } else {
                "excluded from"
            }
        ),
        Hypothesis::OtherSecret { mkt, secret_of } => format!(
            "{ends} sign with the secret of MKT #{secret_of}; MKT #{mkt} has another secret in \
             the keys file: fix it"
        ),
        Hypothesis::Algorithm { mkt, algorithm } => format!(
            "{ends} sign with {}; set algorithm = \"{}\" for MKT #{mkt}",
            algorithm.keyfile_name(),
            algorithm.keyfile_name()
        ),
        Hypothesis::MacLen { mkt, maclen } => {
            format!("{ends} send {maclen}-byte MACs; set maclen = {maclen} for MKT #{mkt}")
        }
        Hypothesis::IsnsSwapped { mkt } => format!(
            "{ends} verify (MKT #{mkt}) only with the ISNs exchanged: client_isn and \
             server_isn of the [[flow]] entry are swapped; swap them"
        ),
        Hypothesis::Sne { mkt, delta } => format!(
            "{ends} verify (MKT #{mkt}) only with an SNE {} than assumed: set client_sne and \
             server_sne of the [[flow]] entry accordingly",
            if delta > 0 { "one higher" } else { "one lower" }
        ),
        other => side_sentence(other, ends),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_name_the_fix() {
        let s = side_sentence(
            Hypothesis::OptionsFlag {
                mkt: 1,
                include: false,
            },
            "10.0.0.1".into(),
        );
        assert!(s.starts_with("10.0.0.1 signs with TCP options excluded from the MAC; set include_options = false for MKT #1"));
        let s = side_sentence(Hypothesis::MacLen { mkt: 2, maclen: 16 }, "x".into());
        assert!(s.contains("maclen = 16 for MKT #2"));
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Rule 3 of the cross-check: every TCP-AO and TCP-MD5 segment a peer's kernel sent is checked
//! field by field, not only its MAC.
//!
//! A kernel can compute a correct MAC over a wrong header: the MAC covers whatever is on the
//! wire, so rule 1 passes a wrong KeyID, a wrong option length, garbage padding or a misplaced
//! option as long as the MAC was computed over them. [`check`] takes the segment and the keys
//! its sender holds for the destination ([`HeldKeys`]) and returns the first broken field:
//!
//! 1. **Options parse, and the data offset covers them exactly.** Every option TLV is well
//!    formed and the last one ends at the data offset, or an End of Option List ends the list
//!    and every byte after it up to the data offset is zero (RFC 9293 §3.1: "the content of
//!    the header beyond the End of Option List Option MUST be header padding (i.e., zero)").
//! 2. **One authentication option.** At most one TCP-AO option and never TCP-AO together with
//!    TCP-MD5 (RFC 5925 §2.2, §2.4; RFC 2385 has one MD5 option). No option kind other than
//!    NOP appears twice.
//! 3. **KeyID** is the SendID of a key the sender holds for the destination (RFC 5925 §2.2:
//!    "the KeyID field ... indicates the MKT used to generate the segment"; §3.1: the SendID
//!    is "inserted as the KeyID of the TCP-AO option of outgoing segments"). A TCP-AO segment
//!    from a sender without such a key fails: a kernel must not sign with a key it was not
//!    given, and a test must register every key it installs ([`super::super::Capture`]).
//! 4. **RNextKeyID** is the RecvID of one of the sender's keys for that peer (RFC 5925 §2.2:
//!    "the RecvID of the MKT that the sender would like to receive with next").
//! 5. **Length** is 4 + the MAC length of the key whose SendID is the KeyID (RFC 5925 §2.2:
//!    "Length ... the MAC field size is ... Length - 4"; §3.1: the MAC length is a property of
//!    the MKT). That the MAC verifies with that key is rule 1.
//! 6. **Padding.** The bytes after the TCP-AO option up to the next 32-bit boundary are NOPs
//!    (kind 1), possibly ending in an End of Option List followed by zeros. Linux writes NOPs:
//!    `process_tcp_ao_options()` (`tcp_options_write()`, every segment of a full or request
//!    socket) sets the word holding the MAC's tail to NOPs before the MAC is written, and the
//!    standalone replies of `tcp_v4_send_ack()` (TIME-WAIT and request-socket ACKs) and
//!    `tcp_v6_send_response()` (those, and IPv6 RSTs) `memset()` the pad to `TCPOPT_NOP` (the
//!    2026 fix: before it, uninitialised stack bytes went on the wire there, under a MAC that
//!    covers them and verifies). `tcp_v4_send_reset()` zeroes its whole reply first, so an
//!    IPv4 RST's pad is End of Option List + zeros, which RFC 9293 §3.1 allows. Anything else
//!    (a byte left from the stack) fails.
//! 7. **Option order, as Linux writes it.** RFC 5925 and RFC 9293 leave the order of options
//!    free; Linux has one order, kept on purpose for middleboxes (the comment above
//!    `tcp_options_write()`), so a change is a kernel bug. In 7.2:
//!    - `tcp_options_write()` (data, SYN, SYN-ACK, FIN, ACK and RST of full and request
//!      sockets) and `tcp_v4_send_reset()`: the authentication option comes first, TCP-MD5 as
//!      `NOP NOP MD5` and TCP-AO at offset 0; then MSS; the timestamps (`NOP NOP TS`, or
//!      `SACK-permitted TS` when both); AccECN; SACK-permitted (when there is no TS); window
//!      scale; SACK blocks; Fast Open; SMC; MPTCP.
//!    - `tcp_v4_send_ack()` and `tcp_v6_send_response()`: `NOP NOP TS` first when the socket
//!      uses timestamps, then (an IPv6 RST without TCP-MD5) an MPTCP reset option, then the
//!      authentication option, last. These replies carry no SYN, no FIN and no data.
//!
//!    Checked: the authentication option is preceded by nothing (by `NOP NOP` for TCP-MD5),
//!    or by `NOP NOP TS` and at most an MPTCP option in a bare ACK or RST, which then carries
//!    nothing after it but padding; after an authentication option that comes first, the
//!    options Linux knows keep the order above (SACK-permitted may sit before or after the
//!    timestamps). Options unknown to that list (BPF-written header options, say) are not
//!    placed, and the NOPs between options (their exact arrangement) are not checked.
//!
//! **Known kernel deviation (7.2), exempted per segment.** A listener answering a stray
//! TCP-AO ACK with a RST (`tcp_ao_prepare_reset()`, `TCP_LISTEN`) looks its key up by RecvID =
//! the ACK's RNextKeyID (`tcp_ao_do_lookup(.., -1, aoh->rnext_keyid)`; RFC 5925 §3.1 has
//! RNextKeyID name the receiver's SendID), and over IPv4 `tcp_v4_ao_sign_reset()` then writes
//! the ACK's RNextKeyID as the RST's KeyID, not the SendID of the key that signed it: with
//! asymmetric KeyIDs (key 20:10) the RST carries KeyID 10, which point 3 fails (and a receiver
//! looking its key up by that KeyID cannot verify it). `paths/*/listener-rst-asymmetric-key-ids`
//! asserts this behaviour and reports it as `XFAIL`; it registers that one RST with
//! `Capture::register_known_bug`, which exempts it from rules 1 and 3. With symmetric KeyIDs
//! (every other test) the two lookups agree and the field rule holds: those RSTs are checked.
//!
//! For TCP-MD5 segments rules 1, 2 and 7 apply, and the sender must hold a TCP-MD5 key for
//! the destination (the RFC 2385 option has no KeyID; its length is fixed at 18, which the
//! option parser checks).

use tcpao_refimpl::wire::{
    TCP_HEADER_LEN, TCPOPT_AO, TCPOPT_EOL, TCPOPT_MD5SIG, TCPOPT_MSS, TCPOPT_NOP, TCPOPT_SACK,
    TCPOPT_SACK_PERM, TCPOPT_TS, TCPOPT_WS, TcpOption, TcpOptions, TcpPacket,
};

/// TCP option kind of MPTCP (RFC 8684).
const TCPOPT_MPTCP: u8 = 30;
/// TCP option kind of TCP Fast Open (RFC 7413).
const TCPOPT_FASTOPEN: u8 = 34;
/// TCP option kinds of AccECN (draft-ietf-tcpm-accurate-ecn: order 0 and order 1).
const TCPOPT_ACCECN0: u8 = 172;
const TCPOPT_ACCECN1: u8 = 174;
/// TCP option kind of the experimental options (RFC 6994; Fast Open's and SMC's in Linux).
const TCPOPT_EXP: u8 = 254;

/// The identifiers of one TCP-AO key a sender holds: what the field rule needs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AoIds {
    /// SendID: the KeyID of segments signed with it.
    pub send_id: u8,
    /// RecvID: the KeyID of segments it verifies, and what RNextKeyID may ask for.
    pub recv_id: u8,
    /// MAC length in bytes.
    pub mac_len: usize,
}

/// The keys a sender holds for one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldKeys {
    /// Its TCP-AO keys.
    pub ao: Vec<AoIds>,
    /// Whether it holds a TCP-MD5 key.
    pub md5: bool,
}

/// Where Linux puts a known option after a leading authentication option, as a range of
/// ranks in `tcp_options_write()`'s order; `None` for options it does not place there.
fn rank(kind: u8) -> Option<(u8, u8)> {
    match kind {
        TCPOPT_MSS => Some((1, 1)),
        TCPOPT_TS => Some((2, 2)),
        // Shares the timestamps' word ("SACK-permitted TS") or comes after AccECN.
        TCPOPT_SACK_PERM => Some((2, 4)),
        TCPOPT_ACCECN0 | TCPOPT_ACCECN1 => Some((3, 3)),
        TCPOPT_WS => Some((5, 5)),
        TCPOPT_SACK => Some((6, 6)),
        TCPOPT_FASTOPEN | TCPOPT_EXP => Some((7, 7)),
        TCPOPT_MPTCP => Some((8, 8)),
        _ => None,
    }
}

fn name(kind: u8) -> String {
    match kind {
        TCPOPT_EOL => "End of Option List".into(),
        TCPOPT_NOP => "NOP".into(),
        TCPOPT_MSS => "MSS".into(),
        TCPOPT_WS => "window scale".into(),
        TCPOPT_SACK_PERM => "SACK-permitted".into(),
        TCPOPT_SACK => "SACK".into(),
        TCPOPT_TS => "timestamps".into(),
        TCPOPT_MD5SIG => "TCP-MD5".into(),
        TCPOPT_AO => "TCP-AO".into(),
        TCPOPT_MPTCP => "MPTCP".into(),
        k => format!("kind {k}"),
    }
}

fn names(kinds: &[u8]) -> String {
    if kinds.is_empty() {
        return "nothing".into();
    }
    kinds.iter().map(|k| name(*k)).collect::<Vec<_>>().join(" ")
}

/// Check the fields of a TCP-AO or TCP-MD5 segment a peer's kernel sent, given the keys its
/// sender holds for the destination. `Err` names the first broken field in a sentence
/// fragment ("its KeyID 7 is ...").
///
/// # Errors
/// The first broken field (module documentation, points 1 to 7).
pub fn check(tcp: &TcpPacket<&[u8]>, held: &HeldKeys) -> Result<(), String> {
    let area = tcp.options_ref();
    // Walk the options. A parse error is reported after the fields of an authentication
    // option read before it: garbage padding after a TCP-AO option usually does not parse
    // either, and the padding is what is wrong then.
    let mut it = TcpOptions::new(area);
    let mut opts: Vec<(usize, TcpOption<'_>)> = Vec::new();
    let mut parse_error = None;
    loop {
        let at = it.offset();
        match it.next() {
            None => break,
            Some(Ok(o)) => opts.push((at, o)),
            Some(Err(e)) => parse_error = Some(e),
        }
    }
    let kinds: Vec<u8> = opts
        .iter()
        .map(|(_, o)| o.kind())
        .filter(|k| *k != TCPOPT_EOL)
        .collect();
    // 2. One authentication option.
    let auth: Vec<usize> = opts
        .iter()
        .enumerate()
        .filter(|(_, (_, o))| matches!(o, TcpOption::Ao(_) | TcpOption::Md5(_)))
        .map(|(i, _)| i)
        .collect();
    if auth.len() > 1 {
        return Err(format!(
            "it carries {} authentication options ({}), RFC 5925 §2.2 allows one",
            auth.len(),
            names(&kinds)
        ));
    }
    // 3 to 6: the fields of the authentication option.
    if let Some(&a) = auth.first() {
        check_auth(tcp, &opts[a], held)?;
    }
    // 1. Every option parses; after an EOL only zeros.
    if let Some(e) = parse_error {
        return Err(format!(
            "its options do not parse: {e} (option area {area:02x?})"
        ));
    }
    let Some(&a) = auth.first() else {
        return Err(format!(
            "it carries no authentication option ({})",
            names(&kinds)
        ));
    };
    if it.remainder().iter().any(|b| *b != 0) {
        return Err(format!(
            "the header padding after its End of Option List is not zero: {:02x?}",
            it.remainder()
        ));
    }
    // 2. No option kind twice.
    for (i, k) in kinds.iter().enumerate() {
        if *k != TCPOPT_NOP && kinds[..i].contains(k) {
            return Err(format!(
                "it carries the {} option twice ({})",
                name(*k),
                names(&kinds)
            ));
        }
    }
    // 7. Where the authentication option sits, and the order of the others. `kinds` leaves
    // out the End of Option List, which can only be last: option `a` is `kinds[a]`.
    check_order(tcp, &kinds, a)
}

/// Points 3 to 6 for the authentication option `(offset in the option area, option)`.
fn check_auth(
    tcp: &TcpPacket<&[u8]>,
    (at, opt): &(usize, TcpOption<'_>),
    held: &HeldKeys,
) -> Result<(), String> {
    let TcpOption::Ao(ao) = opt else {
        if held.md5 {
            return Ok(());
        }
        return Err(
            "it carries a TCP-MD5 option but its sender holds no TCP-MD5 key for the destination"
                .into(),
        );
    };
    if held.ao.is_empty() {
        return Err(format!(
            "it is signed with KeyID {} but its sender holds no TCP-AO key for the destination",
            ao.key_id
        ));
    }
    let send_ids: Vec<u8> = held.ao.iter().map(|k| k.send_id).collect();
    let recv_ids: Vec<u8> = held.ao.iter().map(|k| k.recv_id).collect();
    let with_id: Vec<&AoIds> = held.ao.iter().filter(|k| k.send_id == ao.key_id).collect();
    if with_id.is_empty() {
        return Err(format!(
            "its KeyID {} is not the SendID of any key its sender holds for the destination (SendIDs {send_ids:?})",
            ao.key_id
        ));
    }
    if !recv_ids.contains(&ao.rnext_key_id) {
        return Err(format!(
            "its RNextKeyID {} is not the RecvID of any key its sender holds for the destination (RecvIDs {recv_ids:?})",
            ao.rnext_key_id
        ));
    }
    let len = ao.buffer_len();
    if !with_id.iter().any(|k| k.mac_len + 4 == len) {
        let want: Vec<String> = with_id
            .iter()
            .map(|k| (k.mac_len + 4).to_string())
            .collect();
        return Err(format!(
            "its TCP-AO option is {len} bytes long, the key with SendID {} makes it {} (4 + MAC length)",
            ao.key_id,
            want.join(" or ")
        ));
    }
    let start = TCP_HEADER_LEN + at;
    let pad = tcp.padding_after(start..start + len);
    // NOPs, then optionally End of Option List and zeros.
    let nops = pad.iter().take_while(|b| **b == TCPOPT_NOP).count();
    if pad[nops..].first().is_some_and(|b| *b != TCPOPT_EOL)
        || pad.iter().skip(nops + 1).any(|b| *b != 0)
    {
        return Err(format!(
            "the {} bytes after its {len}-byte TCP-AO option are {pad:02x?}, not NOPs (nor End of Option List and zeros)",
            pad.len()
        ));
    }
    Ok(())
}

fn check_order(tcp: &TcpPacket<&[u8]>, kinds: &[u8], a: usize) -> Result<(), String> {
    let auth = kinds[a];
    let mut before = &kinds[..a];
    if auth == TCPOPT_MD5SIG {
        match before.strip_suffix(&[TCPOPT_NOP, TCPOPT_NOP]) {
            Some(b) => before = b,
            None => {
                return Err(format!(
                    "its TCP-MD5 option is not preceded by NOP NOP as Linux writes it (options: {})",
                    names(kinds)
                ));
            }
        }
    }
    let after = &kinds[a + 1..];
    if !before.is_empty() {
        let reply = matches!(
            before,
            [TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TS] | [TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TS, TCPOPT_MPTCP]
        );
        if !reply {
            return Err(format!(
                "its {} option comes after {}: Linux writes it first, or after NOP NOP TS in a bare ACK or RST (options: {})",
                name(auth),
                names(before),
                names(kinds)
            ));
        }
        if tcp.syn() || tcp.fin() || !tcp.payload().is_empty() {
            return Err(format!(
                "its {} option comes after the timestamps, which Linux does only in bare ACKs and RSTs (tcp_v4_send_ack(), tcp_v6_send_response()), but it carries {} (options: {})",
                name(auth),
                if tcp.syn() {
                    "SYN".to_owned()
                } else if tcp.fin() {
                    "FIN".to_owned()
                } else {
                    format!("{} bytes of data", tcp.payload().len())
                },
                names(kinds)
            ));
        }
        if let Some(k) = after.iter().find(|k| **k != TCPOPT_NOP) {
            return Err(format!(
                "the {} option follows its {} option, which Linux writes last in a bare ACK or RST (options: {})",
                name(*k),
                name(auth),
                names(kinds)
            ));
        }
        return Ok(());
    }
    let mut floor = 0u8;
    let mut prev = auth;
    for k in after.iter().copied().filter(|k| *k != TCPOPT_NOP) {
        let Some((lo, hi)) = rank(k) else { continue };
        if hi < floor {
            return Err(format!(
                "its {} option comes after the {} option, against Linux's order (tcp_options_write(); options: {})",
                name(k),
                name(prev),
                names(kinds)
            ));
        }
        floor = floor.max(lo);
        prev = k;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: AoIds = AoIds {
        send_id: 100,
        recv_id: 101,
        mac_len: 12,
    };

    fn held() -> HeldKeys {
        HeldKeys {
            ao: vec![
                KEY,
                AoIds {
                    send_id: 7,
                    recv_id: 8,
                    mac_len: 10,
                },
            ],
            md5: false,
        }
    }

    /// A TCP header with `flags` and the option area `opts` (a multiple of 4 bytes long).
    fn segment(flags: u8, opts: &[u8], payload: usize) -> Vec<u8> {
        assert_eq!(opts.len() % 4, 0);
        let mut t = vec![0u8; 20];
        t[12] = (((20 + opts.len()) / 4) << 4) as u8;
        t[13] = flags;
        t.extend_from_slice(opts);
        t.extend(std::iter::repeat_n(0x5a, payload));
        t
    }

    const ACK: u8 = 0x10;
    const SYN: u8 = 0x02;

    /// TCP-AO option with `key_id`, `rnext` and a MAC of `mac` bytes, padded with `pad`.
    fn ao(key_id: u8, rnext: u8, mac: usize, pad: u8) -> Vec<u8> {
        let mut o = vec![TCPOPT_AO, (4 + mac) as u8, key_id, rnext];
        o.extend(std::iter::repeat_n(0xc3, mac));
        while o.len() % 4 != 0 {
            o.push(pad);
        }
        o
    }

    const TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    const MSS: [u8; 4] = [2, 4, 5, 0xb4];
    const WS: [u8; 4] = [1, 3, 3, 7];
    const SACK_PERM_TS: [u8; 12] = [4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn run(flags: u8, opts: &[u8], payload: usize, held: &HeldKeys) -> Result<(), String> {
        let seg = segment(flags, opts, payload);
        check(&TcpPacket::new_checked(&seg[..]).unwrap(), held)
    }

    #[track_caller]
    fn fails_with(r: Result<(), String>, what: &str) {
        match r {
            Err(e) => assert!(e.contains(what), "{e:?} does not say {what:?}"),
            Ok(()) => panic!("passed, expected a failure about {what:?}"),
        }
    }

    #[test]
    fn linux_segments_pass() {
        let h = held();
        // A SYN as tcp_options_write() builds it: AO, MSS, SACK-perm TS, NOP WS.
        let syn = cat(&[&ao(100, 101, 12, 1), &MSS, &SACK_PERM_TS, &WS]);
        assert_eq!(run(SYN, &syn, 0, &h), Ok(()));
        // Data with a 10-byte MAC (NOP-padded) and timestamps.
        let data = cat(&[&ao(7, 8, 10, TCPOPT_NOP), &TS]);
        assert_eq!(run(ACK, &data, 100, &h), Ok(()));
        // A TIME-WAIT ACK (tcp_v4_send_ack()): NOP NOP TS, then AO.
        let tw = cat(&[&TS, &ao(100, 8, 12, 1)]);
        assert_eq!(run(ACK, &tw, 0, &h), Ok(()));
        // An IPv4 RST (tcp_v4_send_reset() zeroes its reply): AO, EOL and zero padding.
        let rst = ao(7, 101, 10, TCPOPT_EOL);
        assert_eq!(run(0x14, &rst, 0, &h), Ok(()));
        // TCP-MD5 as Linux writes it.
        let md5 = HeldKeys {
            ao: Vec::new(),
            md5: true,
        };
        let mut m = vec![1, 1, TCPOPT_MD5SIG, 18];
        m.extend([0x77; 16]);
        assert_eq!(run(ACK, &cat(&[&m, &TS]), 1, &md5), Ok(()));
        assert_eq!(run(ACK, &cat(&[&TS, &m]), 0, &md5), Ok(()));
    }

    #[test]
    fn key_id_must_be_a_send_id_of_the_sender() {
        let seg = ao(101, 101, 12, 1);
        fails_with(run(ACK, &seg, 0, &held()), "KeyID 101 is not the SendID");
        fails_with(
            run(ACK, &ao(100, 101, 12, 1), 0, &HeldKeys::default()),
            "holds no TCP-AO key",
        );
    }

    #[test]
    fn rnext_key_id_must_be_a_recv_id_of_the_sender() {
        fails_with(
            run(ACK, &ao(100, 100, 12, 1), 0, &held()),
            "RNextKeyID 100 is not the RecvID",
        );
    }

    #[test]
    fn length_must_match_the_key_of_the_key_id() {
        // Key 7 has a 10-byte MAC: a 16-byte option (12-byte MAC) is wrong even though key
        // 100 has that MAC length.
        fails_with(
            run(ACK, &ao(7, 8, 12, 1), 0, &held()),
            "TCP-AO option is 16 bytes long, the key with SendID 7 makes it 14",
        );
    }

    #[test]
    fn padding_must_be_nops_or_eol_and_zeros() {
        let h = held();
        // Stack garbage after a 10-byte MAC: the MAC covers it, only this rule sees it.
        let mut garbage = ao(7, 8, 10, 1);
        garbage[14..16].copy_from_slice(&[0xde, 0xad]);
        fails_with(run(ACK, &garbage, 0, &h), "are [de, ad], not NOPs");
        // NOP then junk.
        garbage[14] = TCPOPT_NOP;
        fails_with(run(ACK, &garbage, 0, &h), "[01, ad]");
        // NOP then End of Option List: legal (RFC 9293), if not what Linux writes.
        garbage[15] = TCPOPT_EOL;
        assert_eq!(run(ACK, &garbage, 0, &h), Ok(()));
        // Junk that parses as an option (kind 222, length 2) is still junk.
        garbage[14..16].copy_from_slice(&[0xde, 2]);
        fails_with(run(ACK, &garbage, 0, &h), "[de, 02]");
        // EOL then a non-zero byte is not the header padding of RFC 9293 either.
        garbage[14] = TCPOPT_EOL;
        garbage[15] = 1;
        fails_with(run(ACK, &garbage, 0, &h), "[00, 01], not NOPs");
        // EOL in the pad of an option that is not the last.
        let mut early = cat(&[&ao(7, 8, 10, TCPOPT_EOL), &TS]);
        assert!(run(ACK, &early, 0, &h).is_err());
        early[14] = TCPOPT_NOP;
        early[15] = TCPOPT_NOP;
        assert_eq!(run(ACK, &early, 0, &h), Ok(()));
    }

    #[test]
    fn options_must_parse_and_fill_the_data_offset() {
        let h = held();
        // The TS option claims more bytes than the header has.
        let mut bad = cat(&[&ao(100, 101, 12, 1), &TS]);
        bad[19] = 12;
        fails_with(run(ACK, &bad, 0, &h), "do not parse");
        // A data offset one word longer than the options, the word not zero after an EOL.
        let long = cat(&[&ao(100, 101, 12, 1), &[TCPOPT_EOL, 0, 9, 0]]);
        fails_with(run(ACK, &long, 0, &h), "is not zero");
        // The same word as NOPs would be legal; as zeros (EOL and padding) too.
        assert_eq!(
            run(ACK, &cat(&[&ao(100, 101, 12, 1), &[1; 4]]), 0, &h),
            Ok(())
        );
        assert_eq!(
            run(ACK, &cat(&[&ao(100, 101, 12, 1), &[0; 4]]), 0, &h),
            Ok(())
        );
    }

    #[test]
    fn one_authentication_option_only() {
        let h = HeldKeys {
            md5: true,
            ..held()
        };
        let two = cat(&[&ao(100, 101, 12, 1), &ao(100, 101, 12, 1)]);
        fails_with(run(ACK, &two, 0, &h), "2 authentication options");
        let mut both = ao(100, 101, 12, 1);
        both.extend([1, 1, TCPOPT_MD5SIG, 18]);
        both.extend([0x77; 16]);
        fails_with(run(ACK, &both, 0, &h), "2 authentication options");
        // Hidden after an EOL: the padding rule catches it.
        let hidden = cat(&[&ao(100, 101, 12, 1), &[0, 0, 0, 0], &ao(100, 101, 12, 1)]);
        fails_with(run(ACK, &hidden, 0, &h), "is not zero");
        let ts2 = cat(&[&ao(100, 101, 12, 1), &TS, &TS]);
        fails_with(run(ACK, &ts2, 0, &h), "timestamps option twice");
    }

    #[test]
    fn md5_needs_a_key_and_its_nops() {
        let mut m = vec![1, 1, TCPOPT_MD5SIG, 18];
        m.extend([0x77; 16]);
        fails_with(run(ACK, &m, 0, &held()), "holds no TCP-MD5 key");
        let h = HeldKeys {
            ao: Vec::new(),
            md5: true,
        };
        let mut moved = vec![TCPOPT_MD5SIG, 18];
        moved.extend([0x77; 16]);
        moved.extend([1, 1]);
        fails_with(run(ACK, &moved, 0, &h), "not preceded by NOP NOP");
    }

    #[test]
    fn option_order_as_linux_writes_it() {
        let h = held();
        // AO after MSS in a SYN.
        let late = cat(&[&MSS, &ao(100, 101, 12, 1), &SACK_PERM_TS, &WS]);
        fails_with(run(SYN, &late, 0, &h), "comes after MSS");
        // AO after the timestamps is a bare-reply layout: not in a SYN, not with data.
        let tw = cat(&[&TS, &ao(100, 101, 12, 1)]);
        fails_with(run(SYN | ACK, &tw, 0, &h), "carries SYN");
        fails_with(run(ACK, &tw, 10, &h), "carries 10 bytes of data");
        // Nothing after the AO option of a bare reply.
        let tw_mss = cat(&[&TS, &ao(100, 101, 12, 1), &MSS]);
        fails_with(run(ACK, &tw_mss, 0, &h), "MSS option follows");
        // After a leading AO: MSS before the timestamps, window scale after them.
        let swapped = cat(&[&ao(100, 101, 12, 1), &SACK_PERM_TS, &MSS, &WS]);
        fails_with(
            run(SYN, &swapped, 0, &h),
            "MSS option comes after the timestamps",
        );
        let ws_first = cat(&[&ao(100, 101, 12, 1), &MSS, &WS, &TS]);
        fails_with(run(SYN, &ws_first, 0, &h), "timestamps option comes after");
        // SACK-permitted without timestamps sits before window scale ("NOP NOP SACK-perm").
        let no_ts = cat(&[&ao(100, 101, 12, 1), &MSS, &[1, 1, 4, 2], &WS]);
        assert_eq!(run(SYN, &no_ts, 0, &h), Ok(()));
        let perm_late = cat(&[&ao(100, 101, 12, 1), &MSS, &WS, &[1, 1, 4, 2]]);
        fails_with(
            run(SYN, &perm_late, 0, &h),
            "SACK-permitted option comes after",
        );
        // An option Linux does not place (kind 253, an experiment) is left alone.
        let exp = cat(&[&ao(100, 101, 12, 1), &[253, 4, 0, 0], &MSS]);
        assert_eq!(run(SYN, &exp, 0, &h), Ok(()));
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! `maclen`: every MAC length 1..=16 on the wire, per algorithm (upstream tests the odd
//! lengths only inside key-management's random rotation, without looking at the wire).
//!
//! For each (algorithm, maclen): both peers use key 100:100 with that MAC length; the client
//! connects and echoes; both sides see GOOD only. Then every captured segment is checked:
//!
//! - the TCP-AO option is the first option, at offset 0 of the option area;
//! - its length byte is `4 + maclen`;
//! - the bytes after the MAC up to the next 4-byte boundary are NOPs (the Dec 2023 fix
//!   "net/tcp: Consistently align TCP-AO option in the header");
//! - all options parse, the header is at most 60 bytes;
//! - tcpao-refimpl verifies the segment with the key (and the capture cross-check does too).
//!
//! An algorithm the running kernel refuses (`ENOENT`) makes its cases skip, saying so.

use tcpao_refimpl::{FlowValidator, Verdict};
use tcpao_sys::Algorithm;

use crate::failure;
use crate::outcome::{Failure, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::programs::extras::{self, segment};
use crate::registry::Test;
use crate::sockets::{self, TestKey};

/// Algorithms and the slug used in test names.
pub const ALGORITHMS: [(&str, Algorithm); 3] = [
    ("hmac-sha1", Algorithm::HmacSha1),
    ("cmac-aes128", Algorithm::AesCmac128),
    ("hmac-sha256", Algorithm::HmacSha256),
];

/// The program's tests: 3 algorithms × 16 MAC lengths × 2 families.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    for (slug, alg) in ALGORITHMS {
        for maclen in 1..=16u8 {
            let (a1, a2) = (alg.clone(), alg.clone());
            v.extend(
                PairTest::new("maclen", &format!("{slug}-{maclen}"))
                    .ao()
                    .build(
                        move |p| server(p, &key(p, &a1, maclen)),
                        move |p| client(p, &key(p, &a2, maclen), maclen),
                    ),
            );
        }
    }
    v
}

fn key(p: &Peer<'_>, alg: &Algorithm, maclen: u8) -> TestKey {
    TestKey::new(p.remote_addr(), 100, 100)
        .algorithm(alg.clone())
        .maclen(maclen)
}

/// Skip (with the reason) when the kernel refuses the algorithm.
fn require_algorithm(p: &Peer<'_>, k: &TestKey) -> PeerResult {
    let sk = sockets::tcp_socket(p.family())?;
    match tcpao_sys::TcpAoExt::add_ao_key(&sk, &k.to_ao_key()?) {
        Ok(()) => Ok(()),
        Err(tcpao_sys::Error::AlgorithmUnavailable { algorithm, .. }) => Err(Failure::Skip(
            format!("the kernel does not provide {algorithm} (ENOENT)"),
        )),
        Err(e) => Err(failure!("probing {} failed: {e}", k.algorithm)),
    }
}

fn server(p: &Peer<'_>, k: &TestKey) -> PeerResult {
    require_algorithm(p, k)?;
    extras::echo_server(p, k)
}

fn client(p: &Peer<'_>, k: &TestKey, maclen: u8) -> PeerResult {
    require_algorithm(p, k)?;
    let frames = extras::echo_client(p, k)?;
    let conn = extras::client_connection(p, &frames)?;
    let mkt = k
        .mkt()
        .ok_or_else(|| failure!("the reference lacks {}", k.algorithm))?;
    let v = FlowValidator::new(conn, [mkt]).map_err(|e| failure!("reference: {e}"))?;
    let ml = usize::from(maclen);
    let mut checked = 0;
    for f in &frames {
        let Some(s) = segment(f) else { continue };
        let t = s.tcp_packet();
        let what = format!(
            "the {} segment seq {}{}",
            f.from.name(),
            t.seq_number(),
            if t.syn() { " (SYN)" } else { "" }
        );
        let opts = t.options();
        if opts.first() != Some(&tcpao_refimpl::wire::TCPOPT_AO) {
            return Err(failure!(
                "{what} does not start its options with TCP-AO: {opts:02x?}"
            ));
        }
        if opts.get(1).copied() != Some((4 + ml) as u8) {
            return Err(failure!(
                "{what} has a TCP-AO option of length {:?}, expected {} (4 + maclen {maclen})",
                opts.get(1),
                4 + ml
            ));
        }
        let padded = (4 + ml).div_ceil(4) * 4;
        if opts.len() < padded || opts[4 + ml..padded].iter().any(|&b| b != 1) {
            return Err(failure!(
                "{what} does not pad the {}-byte TCP-AO option with NOPs to {padded} bytes: {opts:02x?}",
                4 + ml
            ));
        }
        if let Some(Err(e)) = t.options_iter().find(Result::is_err) {
            return Err(failure!("{what} has malformed options: {e}"));
        }
        if t.header_len() > 60 {
            return Err(failure!("{what} has a {}-byte header", t.header_len()));
        }
        match extras::verdict(&v, f) {
            Some(Verdict::Good { .. }) => checked += 1,
            r => {
                return Err(failure!(
                    "tcpao-refimpl does not verify {what} with maclen {maclen}: {r:?}"
                ));
            }
        }
    }
    p.diag(format!(
        "{} maclen {maclen}: {checked} segments with a {}-byte TCP-AO option, NOP-padded to {} bytes, verified",
        k.algorithm,
        4 + ml,
        (4 + ml).div_ceil(4) * 4
    ));
    Ok(())
}

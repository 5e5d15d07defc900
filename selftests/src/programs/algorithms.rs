// SPDX-License-Identifier: MIT OR Apache-2.0
//! `algorithms`: every MAC algorithm name, probed on the running kernel (upstream rotates over
//! a fixed list inside key-management and treats a refusal as a skip).
//!
//! - `probe`: each name is added on a fresh socket; the kernel must accept it or refuse it
//!   with `ENOENT` (tcpao-sys `AlgorithmUnavailable` naming it), nothing else; the RFC 5926
//!   MUSTs `hmac(sha1)` and `cmac(aes128)` must be accepted. The accepted set is printed.
//! - one case per name: an accepted algorithm gets a real connection (echo, GOOD only on both
//!   sides) that tcpao-refimpl verifies; a refused one must fail with `ENOENT` →
//!   `AlgorithmUnavailable`.
//! - key lengths per accepted algorithm (1 and 80, the digest/block sizes and their
//!   neighbours): a connection verified by the reference, and `TCP_AO_GET_KEYS` reports the
//!   key as stored — for `cmac(aes128)` with a key that is not 16 bytes that is the RFC 4615 /
//!   RFC 5926 §3.1.1.2 fold `AES-CMAC(0^128, key)`, compared with tcpao-refimpl's.
//! - `cmac-aes` (in the per-name cases): the kernel name `cmac(aes)` with a 16-byte key works
//!   like `cmac(aes128)`; `cmac-aes-other-keylens`: under that name the kernel does not fold
//!   (only `cmac(aes128)` does) and refuses 1-, 15-, 24- and 32-byte keys with `ENOENT`
//!   (measured on 7.2: not even AES-192/256-CMAC is taken).

use tcpao_sys::{Algorithm, KeyFilter, TcpAoExt};

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::PeerResult;
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::programs::extras;
use crate::registry::Test;
use crate::sockets::{self, TestKey};

/// Every name probed, with its test slug.
pub const NAMES: [(&str, &str); 11] = [
    ("hmac-sha1", "hmac(sha1)"),
    ("hmac-sha256", "hmac(sha256)"),
    ("cmac-aes128", "cmac(aes128)"),
    ("cmac-aes", "cmac(aes)"),
    ("hmac-sha224", "hmac(sha224)"),
    ("hmac-sha384", "hmac(sha384)"),
    ("hmac-sha512", "hmac(sha512)"),
    ("hmac-sha3-512", "hmac(sha3-512)"),
    ("hmac-md5", "hmac(md5)"),
    ("hmac-rmd160", "hmac(rmd160)"),
    ("xcbc-aes", "xcbc(aes)"),
];

/// Key lengths per algorithm for the key-length cases.
const KEYLENS: [(&str, Algorithm, &[usize]); 3] = [
    ("cmac-aes128", Algorithm::AesCmac128, &[1, 15, 16, 17, 80]),
    ("hmac-sha1", Algorithm::HmacSha1, &[1, 20, 64, 65, 80]),
    ("hmac-sha256", Algorithm::HmacSha256, &[1, 32, 64, 65, 80]),
];

/// The program's tests.
pub fn tests() -> Vec<Test> {
    let mut v = PairTest::new("algorithms", "probe")
        .ao()
        .build(|p| probe(p, true), |p| probe(p, false));
    for (slug, name) in NAMES {
        v.extend(PairTest::new("algorithms", slug).ao().build(
            move |p| by_name_server(p, name),
            move |p| by_name_client(p, name),
        ));
    }
    v.extend(
        PairTest::new("algorithms", "cmac-aes-other-keylens")
            .ao()
            .build(cmac_aes_other_keylens, |_| Ok(())),
    );
    for (slug, alg, lens) in KEYLENS {
        for &len in lens {
            let (a1, a2) = (alg.clone(), alg.clone());
            v.extend(
                PairTest::new("algorithms", &format!("{slug}-keylen-{len}"))
                    .ao()
                    .build(
                        move |p| keylen_server(p, &a1, len),
                        move |p| keylen_client(p, &a2, len),
                    ),
            );
        }
    }
    v
}

/// A password of `len` bytes (a fixed pattern, not a secret).
fn password(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
        .collect()
}

/// Add a key with algorithm name `name` to a fresh socket: `Ok(true)` accepted, `Ok(false)`
/// refused with ENOENT → AlgorithmUnavailable naming it.
fn try_name(p: &Peer<'_>, name: &str) -> PeerResult<bool> {
    let sk = sockets::tcp_socket(p.family())?;
    let k = TestKey::new(p.remote_addr(), 100, 100)
        .algorithm(Algorithm::Raw(name.to_owned()))
        .password(&password(16));
    match sk.add_ao_key(&k.to_ao_key()?) {
        Ok(()) => Ok(true),
        Err(e @ tcpao_sys::Error::AlgorithmUnavailable { .. }) => {
            let tcpao_sys::Error::AlgorithmUnavailable { ref algorithm, .. } = e else {
                unreachable!()
            };
            if algorithm != name || e.raw_os_error() != Some(libc_enoent()) {
                return Err(failure!(
                    "refusing {name} gave {e} (algorithm {algorithm:?}, errno {:?})",
                    e.raw_os_error()
                ));
            }
            Ok(false)
        }
        Err(e) => Err(failure!(
            "setsockopt(TCP_AO_ADD_KEY) with {name} failed with neither success nor ENOENT: {e} (errno {:?})",
            e.raw_os_error()
        )),
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

fn probe(p: &Peer<'_>, report: bool) -> PeerResult {
    let mut took = Vec::new();
    let mut refused = Vec::new();
    for (_, name) in NAMES {
        if try_name(p, name)? {
            took.push(name);
        } else {
            refused.push(name);
        }
    }
    for must in ["hmac(sha1)", "cmac(aes128)"] {
        if !took.contains(&must) {
            return Err(failure!(
                "the kernel refuses {must}, which RFC 5926 makes mandatory for TCP-AO"
            ));
        }
    }
    if report {
        p.diag(format!("the kernel took: {}", took.join(", ")));
        p.diag(format!("refused with ENOENT: {}", refused.join(", ")));
    }
    Ok(())
}

fn by_name_server(p: &Peer<'_>, name: &str) -> PeerResult {
    if !try_name(p, name)? {
        p.sync()?;
        return Ok(());
    }
    let lsk = sockets::listen(p, p.port(), 1)?;
    add_named(p, &lsk, name)?;
    p.sync()?;
    let sk = extras::accept_one(p, &lsk)?;
    let before = Counters::of(&sk)?;
    sockets::echo_server(p, &sk, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("server counters with {name}: {e}"))
}

fn by_name_client(p: &Peer<'_>, name: &str) -> PeerResult {
    if !try_name(p, name)? {
        p.diag(format!(
            "{name}: refused with ENOENT (AlgorithmUnavailable)"
        ));
        p.sync()?;
        return Ok(());
    }
    let sk = sockets::client_socket(p)?;
    add_named(p, &sk, name)?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, extras::MESSAGES, extras::MESSAGE_LEN, p.deadline())?;
    Counters::of(&sk)?
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("client counters with {name}: {e}"))?;
    let checked = sockets::reference_algorithm(&Algorithm::Raw(name.to_owned())).is_some();
    p.diag(format!(
        "{name}: accepted; connection GOOD{}",
        if checked {
            ", segments verified by tcpao-refimpl"
        } else {
            "; tcpao-refimpl does not implement it, segments not cross-checked"
        }
    ));
    Ok(())
}

/// Add key 100:100 with the raw algorithm `name` and register it for the cross-check when the
/// reference knows it (the kernel reports `cmac(aes128)` back as `cmac(aes)`, so
/// [`sockets::add_key`]'s read-back comparison does not apply to raw names).
fn add_named(p: &Peer<'_>, sk: &socket2::Socket, name: &str) -> PeerResult {
    let pw = password(16);
    let k = TestKey::new(p.remote_addr(), 100, 100)
        .algorithm(Algorithm::Raw(name.to_owned()))
        .password(&pw);
    sk.add_ao_key(&k.to_ao_key()?)
        .map_err(|e| failure!("setsockopt(TCP_AO_ADD_KEY) with {name} failed: {e}"))?;
    sockets::register(p, &k);
    let got = sk
        .ao_keys(&KeyFilter::All)
        .map_err(|e| failure!("TCP_AO_GET_KEYS failed: {e}"))?;
    let [info] = got.as_slice() else {
        return Err(failure!(
            "the socket reports {} keys, expected 1",
            got.len()
        ));
    };
    let want = Algorithm::from_kernel_name(name);
    if info.algorithm != want && !(name == "cmac(aes)" && info.algorithm == Algorithm::AesCmac128) {
        return Err(failure!(
            "key added as {name} is reported as {}",
            info.algorithm
        ));
    }
    Ok(())
}

fn keylen_key(p: &Peer<'_>, alg: &Algorithm, len: usize) -> TestKey {
    TestKey::new(p.remote_addr(), 100, 100)
        .algorithm(alg.clone())
        .password(&password(len))
}

fn keylen_server(p: &Peer<'_>, alg: &Algorithm, len: usize) -> PeerResult {
    let k = keylen_key(p, alg, len);
    extras::echo_server(p, &k)
}

fn keylen_client(p: &Peer<'_>, alg: &Algorithm, len: usize) -> PeerResult {
    let k = keylen_key(p, alg, len);
    // What the kernel stores, checked on a closed socket before the connection.
    let sk = sockets::tcp_socket(p.family())?;
    sk.add_ao_key(&k.to_ao_key()?).map_err(|e| {
        failure!("setsockopt(TCP_AO_ADD_KEY) of a {len}-byte {alg} key failed: {e}")
    })?;
    let got = sk
        .ao_keys(&KeyFilter::All)
        .map_err(|e| failure!("TCP_AO_GET_KEYS failed: {e}"))?;
    let stored = got
        .first()
        .and_then(|i| i.key.as_ref())
        .map(|m| m.expose_secret().to_vec())
        .ok_or_else(|| failure!("TCP_AO_GET_KEYS returned no key bytes"))?;
    let pw = password(len);
    let expected: Vec<u8> = if *alg == Algorithm::AesCmac128 {
        tcpao_refimpl::kdf::fold_aes_key(&pw).to_vec()
    } else {
        pw.clone()
    };
    if stored != expected {
        return Err(failure!(
            "the kernel stores the {len}-byte {alg} key as {} bytes that differ from {}",
            stored.len(),
            if *alg == Algorithm::AesCmac128 && len != 16 {
                "tcpao-refimpl's RFC 4615 fold AES-CMAC(0^128, key)"
            } else {
                "the key given"
            }
        ));
    }
    drop(sk);
    extras::echo_client(p, &k)?;
    p.diag(format!(
        "{alg} with a {len}-byte key: stored as {} bytes{}; connection GOOD and verified",
        stored.len(),
        if *alg == Algorithm::AesCmac128 && len != 16 {
            " (RFC 4615 fold, equal to the reference's)"
        } else {
            ""
        }
    ));
    Ok(())
}

fn cmac_aes_other_keylens(p: &Peer<'_>) -> PeerResult {
    if !try_name(p, "cmac(aes)")? {
        return Err(crate::outcome::Failure::Skip(
            "the kernel refuses cmac(aes) altogether".into(),
        ));
    }
    for len in [1usize, 15, 24, 32] {
        let sk = sockets::tcp_socket(p.family())?;
        let k = TestKey::new(p.remote_addr(), 100, 100)
            .algorithm(Algorithm::Raw("cmac(aes)".into()))
            .password(&password(len));
        match sk.add_ao_key(&k.to_ao_key()?) {
            Err(tcpao_sys::Error::AlgorithmUnavailable { .. }) => {}
            r => {
                return Err(failure!(
                    "cmac(aes) with a {len}-byte key was expected to be refused with ENOENT, it gave {r:?}"
                ));
            }
        }
    }
    p.diag("cmac(aes) takes 16-byte keys only: 1, 15, 24 and 32 bytes refused with ENOENT");
    Ok(())
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The bare MAC primitive the benchmarks compare against (shared by `benches/mac.rs` and
//! `examples/bench_verify.rs` through `#[path]`): RustCrypto's keyed MAC state, cloned per
//! message as tcpao-refimpl does, with the same (unboxed) layout as the crate's keyed state.
#![allow(dead_code)] // each includer uses part of it

use aes::Aes128;
use cmac::Cmac;
use digest::{KeyInit, Mac};
use hmac::Hmac;
use sha1::Sha1;
use sha2::Sha256;
use tcpao_refimpl::Algorithm;

#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Bare {
    Sha1(Hmac<Sha1>),
    Cmac(Cmac<Aes128>),
    Sha256(Hmac<Sha256>),
}

impl Bare {
    /// Keyed with `key` (AES-128-CMAC takes its first 16 bytes, as a traffic key is).
    pub fn new(alg: Algorithm, key: &[u8]) -> Self {
        match alg {
            Algorithm::HmacSha1 => Bare::Sha1(KeyInit::new_from_slice(key).expect("any length")),
            Algorithm::AesCmac128 => {
                Bare::Cmac(KeyInit::new_from_slice(&key[..16]).expect("16 bytes"))
            }
            Algorithm::HmacSha256 => {
                Bare::Sha256(KeyInit::new_from_slice(key).expect("any length"))
            }
        }
    }

    /// The first `len` bytes of the MAC of `msg`.
    pub fn tag(&self, msg: &[u8], len: usize) -> Vec<u8> {
        match self {
            Bare::Sha1(m) => m.clone().chain_update(msg).finalize().into_bytes()[..len].to_vec(),
            Bare::Cmac(m) => m.clone().chain_update(msg).finalize().into_bytes()[..len].to_vec(),
            Bare::Sha256(m) => m.clone().chain_update(msg).finalize().into_bytes()[..len].to_vec(),
        }
    }

    /// MAC `msg` with a clone of the keyed state and compare its first `tag.len()` bytes.
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        match self {
            Bare::Sha1(m) => m
                .clone()
                .chain_update(msg)
                .verify_truncated_left(tag)
                .is_ok(),
            Bare::Cmac(m) => m
                .clone()
                .chain_update(msg)
                .verify_truncated_left(tag)
                .is_ok(),
            Bare::Sha256(m) => m
                .clone()
                .chain_update(msg)
                .verify_truncated_left(tag)
                .is_ok(),
        }
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! The crate's error type.

use crate::algo::Algorithm;
use crate::wire;

/// Everything that can go wrong in this crate, apart from authentication failures,
/// which are [`crate::Verdict`]s, not errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Malformed packet bytes.
    #[error("malformed packet: {0}")]
    Wire(#[from] wire::Error),
    /// An algorithm name that is not one of `hmac(sha1)`, `cmac(aes128)`, `cmac(aes)`,
    /// `hmac(sha256)`, `hmac-sha1`, `aes-128-cmac`, `hmac-sha256`.
    #[error("unknown TCP-AO algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// MAC length 0 or above 16 (Linux: `EMSGSIZE`, the option must fit a SYN).
    #[error("MAC length {0} out of range 1..=16")]
    MacLenOutOfRange(usize),
    /// MAC length above the algorithm's output size (Linux: `EINVAL`).
    #[error("MAC length {len} exceeds the {digest_len}-byte output of {algorithm}")]
    MacLenTooLong {
        /// Algorithm.
        algorithm: Algorithm,
        /// Requested MAC length.
        len: usize,
        /// The algorithm's output size.
        digest_len: usize,
    },
    /// A traffic key of the wrong length for its algorithm.
    #[error("traffic key for {algorithm} must be {expected} bytes, got {got}")]
    TrafficKeyLen {
        /// Algorithm.
        algorithm: Algorithm,
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// Local and remote addresses of a connection are of different families.
    #[error("connection endpoints mix IPv4 and IPv6")]
    AddressFamilyMismatch,
    /// The segment has no TCP-AO option where one is needed.
    #[error("segment has no TCP-AO option")]
    NoAoOption,
    /// The segment has no TCP-MD5 option where one is needed.
    #[error("segment has no TCP-MD5 option")]
    NoMd5Option,
    /// The TCP-AO option's MAC field has another length than requested.
    #[error("TCP-AO option carries a {found}-byte MAC, expected {expected}")]
    MacLenMismatch {
        /// MAC length of the key.
        expected: usize,
        /// MAC length found in the option.
        found: usize,
    },
    /// The segment does not belong to the connection of a validator.
    #[error("segment does not belong to this connection")]
    NotThisConnection,
    /// A hex string could not be decoded.
    #[error("invalid hex: {0}")]
    Hex(String),
}

/// Result type of the crate.
pub type Result<T> = core::result::Result<T, Error>;

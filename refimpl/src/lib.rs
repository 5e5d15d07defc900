// SPDX-License-Identifier: MIT OR Apache-2.0
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod algo;
pub mod capture;
pub mod error;
pub mod kdf;
pub mod mac;
pub mod md5;
pub mod mkt;
pub mod reassembly;
pub mod sign;
pub mod sne;
pub mod validate;
pub mod verdict;
pub mod verify;
pub mod wire;

pub use algo::{Algorithm, DEFAULT_MAC_LEN, MAX_MAC_LEN};
pub use error::{Error, Result};
pub use kdf::{Connection, Context, TrafficKey, TrafficKeys};
pub use mac::{MacTag, compute_mac, verify_mac};
pub use md5::{md5_digest, verify_md5};
pub use mkt::{MasterKey, Mkt};
pub use sign::{AoSign, Auth, ConnectionSigner, IpHeader, build_segment, sign_in_place};
pub use sne::{SneTracker, compute_sne};
pub use validate::{Direction, FlowValidator};
pub use verdict::{BadReason, Counter, Counts, Verdict};
pub use wire::SegmentRef;

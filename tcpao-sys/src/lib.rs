// SPDX-License-Identifier: MIT OR Apache-2.0
#![doc = include_str!("../README.md")]
#![cfg(target_os = "linux")]
#![doc(test(attr(deny(warnings))))]
#![deny(missing_docs, rust_2018_idioms)]
#![warn(missing_debug_implementations)]

mod addr;
mod error;
mod ext;
mod info;
pub mod kcov;
mod key;
pub mod packet;
mod probe;
pub mod raw;
pub mod repair;
mod role;
mod rotate;
mod sys;
pub mod tun;
pub mod uapi;

pub use addr::PeerPrefix;
pub use error::{Error, Op, Result};
pub use ext::{Md5Ext, Md5Key, TcpAoExt};
pub use info::{AoCounters, AoInfo, AoKeyInfo, AoRepair, KeyFilter};
pub use key::{Algorithm, AoKey, KeySelector, MasterKey};
pub use probe::{Capabilities, probe, probe_algorithm, probe_md5};
pub use role::{AcceptCheck, AoListener, check_accepted};
pub use rotate::{Rotation, RotationStatus, replace_key};

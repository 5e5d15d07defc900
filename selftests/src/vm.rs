// SPDX-License-Identifier: MIT OR Apache-2.0
//! `vm` mode.
use crate::cli::VmArgs;

/// Entry point of `tcpao-selftests vm`.
pub fn main(_args: &VmArgs) -> i32 {
    1
}

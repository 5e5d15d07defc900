// SPDX-License-Identifier: MIT OR Apache-2.0
//! TCP-AO selftests.
#![forbid(unsafe_code)]
fn main() {}

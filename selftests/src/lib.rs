// SPDX-License-Identifier: MIT OR Apache-2.0
//! tcpao-selftests: network-namespace selftests for Linux TCP-AO and TCP-MD5.
#![forbid(unsafe_code)]

pub mod netns;
pub mod topology;
pub mod capture;
pub mod counters;
pub mod peers;
pub mod sockets;

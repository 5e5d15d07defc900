// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-verify`: check the TCP-AO and TCP-MD5 signatures in pcap/pcapng captures.
#![forbid(unsafe_code)]

fn main() {}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-verify`: offline verification of TCP-AO (RFC 5925) and TCP-MD5 (RFC 2385)
//! signatures in captures.

pub mod keys;

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Pure-Rust reference implementation of TCP-AO (RFC 5925, RFC 5926).
#![forbid(unsafe_code)]

pub mod capture;
pub mod verify;

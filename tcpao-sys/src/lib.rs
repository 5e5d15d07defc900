// SPDX-License-Identifier: MIT OR Apache-2.0
//! Safe Linux bindings for TCP-AO (RFC 5925) and TCP-MD5 (RFC 2385) socket options.

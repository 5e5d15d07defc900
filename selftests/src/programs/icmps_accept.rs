// SPDX-License-Identifier: MIT OR Apache-2.0
//! `icmps-accept`: the `icmps-discard` scenario with `accept_icmps` set on the listener (the
//! kernel builds `icmps-discard.c` with `-DTEST_ICMPS_ACCEPT`): the ICMP hard errors are acted
//! upon, the server's connection fails with the error, and `TCPAODroppedIcmps` stays put.
//! The implementation is shared, in [`super::icmps_discard`].

use crate::registry::Test;

/// The program's tests.
pub fn tests() -> Vec<Test> {
    super::icmps_discard::tests_for(true)
}

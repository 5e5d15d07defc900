// SPDX-License-Identifier: MIT OR Apache-2.0
//! Socket roles in the types: a listener wrapper without Current_key/RNext_key setters, and
//! the accept-side check for the `setsockopt()` vs `accept()` race.

use crate::error::{Error, Result};
use crate::ext::TcpAoExt;
use crate::info::{AoCounters, AoInfo, AoKeyInfo, KeyFilter};
use crate::key::{AoKey, KeySelector};
use std::collections::HashSet;
use std::net::IpAddr;
use std::os::fd::AsFd;

/// A listening (or soon-to-listen) socket with TCP-AO keys.
///
/// Listeners have no Current_key or RNext_key (the kernel answers `EINVAL`, and a key selected
/// before `listen()` may become undeletable), so this wrapper offers no way to set them: keys
/// added through it must not request `set_current`/`set_rnext`. Install keys before
/// `listen()` so the first SYN is already covered.
///
/// The listener's keys are copied into each child when its handshake completes; keys added or
/// removed later do not reach children already in the accept queue. Check every accepted
/// socket with [`AoListener::check_accepted`] (or [`check_accepted`]).
#[derive(Debug)]
pub struct AoListener<S> {
    sock: S,
}

impl<S: AsFd> AoListener<S> {
    /// Wrap a socket that is or will become a listener.
    pub fn new(sock: S) -> Self {
        Self { sock }
    }

    /// The wrapped socket (to call `listen()`/`accept()`).
    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    /// Unwrap.
    pub fn into_inner(self) -> S {
        self.sock
    }

    /// Add an MKT for a peer prefix (one per peer or per dynamic-neighbour range).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (`set_current`/`set_rnext`) if the key asks to be selected;
    /// otherwise as [`TcpAoExt::add_ao_key`].
    pub fn add_key(&self, key: &AoKey) -> Result<()> {
        if key.selects() != (false, false) {
            return Err(Error::invalid(
                "set_current/set_rnext",
                "listening sockets have no Current_key or RNext_key",
            ));
        }
        self.sock.add_ao_key(key)
    }

    /// Delete an MKT. Once the socket listens this uses `del_async` (no RCU wait, as the
    /// kernel recommends for listeners with many keys); before `listen()` a normal delete.
    ///
    /// # Errors
    /// As [`TcpAoExt::del_ao_key`].
    pub fn del_key(&self, key: &KeySelector) -> Result<()> {
        match self.sock.del_ao_key_async(key) {
            Err(Error::Os { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
                self.sock.del_ao_key(key)
            }
            r => r,
        }
    }

    /// Per-socket state (current/rnext are always `None` for a listener).
    ///
    /// # Errors
    /// As [`TcpAoExt::ao_info`].
    pub fn info(&self) -> Result<Option<AoInfo>> {
        self.sock.ao_info()
    }

    /// Require TCP-AO for every connection (inherited by children).
    ///
    /// # Errors
    /// As [`TcpAoExt::set_ao_required`].
    pub fn set_ao_required(&self, required: bool) -> Result<()> {
        self.sock.set_ao_required(required)
    }

    /// Act on ICMP hard errors (inherited by children).
    ///
    /// # Errors
    /// As [`TcpAoExt::set_ao_accept_icmps`].
    pub fn set_accept_icmps(&self, accept: bool) -> Result<()> {
        self.sock.set_ao_accept_icmps(accept)
    }

    /// Per-socket counters.
    ///
    /// # Errors
    /// As [`TcpAoExt::ao_counters`].
    pub fn counters(&self) -> Result<AoCounters> {
        self.sock.ao_counters()
    }

    /// The listener's keys.
    ///
    /// # Errors
    /// As [`TcpAoExt::ao_keys`].
    pub fn keys(&self) -> Result<Vec<AoKeyInfo>> {
        self.sock.ao_keys(&KeyFilter::All)
    }

    /// The keys a child accepted from `peer` should carry now: the listener's keys whose
    /// prefix covers `peer`.
    ///
    /// # Errors
    /// As [`TcpAoExt::ao_keys`].
    pub fn expected_for(&self, peer: IpAddr) -> Result<Vec<KeySelector>> {
        let keys = match self.keys() {
            Err(Error::NotFound { .. }) => vec![],
            r => r?,
        };
        Ok(keys
            .into_iter()
            .map(|k| k.selector)
            .filter(|s| s.peer.contains(peer))
            .collect())
    }

    /// Compare an accepted socket's keys with the listener's current keys for `peer`.
    ///
    /// # Errors
    /// As [`TcpAoExt::ao_keys`].
    pub fn check_accepted<C: AsFd>(&self, child: &C, peer: IpAddr) -> Result<AcceptCheck> {
        check_accepted(child, &self.expected_for(peer)?)
    }
}

/// Result of comparing an accepted socket's MKTs with the expected set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptCheck {
    /// The connection is not TCP-AO-signed (no keys on the child).
    Unauthenticated,
    /// Exactly the expected keys.
    Matches,
    /// Keys differ: `missing` are expected but absent (added to the listener after this
    /// child was queued), `extra` are present but not expected (removed meanwhile).
    Mismatch {
        /// Expected, absent.
        missing: Vec<KeySelector>,
        /// Present, not expected.
        extra: Vec<KeySelector>,
    },
}

impl AcceptCheck {
    /// True for [`AcceptCheck::Matches`].
    pub fn is_match(&self) -> bool {
        matches!(self, AcceptCheck::Matches)
    }
}

/// Compare the MKTs on an accepted socket with `expected` (selectors as installed on the
/// listener: a child keeps the listener's prefix, e.g. `/24`, not the peer's `/32`).
///
/// # Errors
/// As [`TcpAoExt::ao_keys`] (except that no TCP-AO state is `Unauthenticated`).
pub fn check_accepted<C: AsFd + ?Sized>(
    child: &C,
    expected: &[KeySelector],
) -> Result<AcceptCheck> {
    let have = match child.ao_keys(&KeyFilter::All) {
        Err(Error::NotFound { .. }) => return Ok(AcceptCheck::Unauthenticated),
        r => r?,
    };
    if have.is_empty() {
        return Ok(AcceptCheck::Unauthenticated);
    }
    let have: Vec<KeySelector> = have.into_iter().map(|k| k.selector).collect();
    let have_set: HashSet<KeySelector> = have.iter().copied().collect();
    let want_set: HashSet<KeySelector> = expected.iter().copied().collect();
    if have_set == want_set {
        return Ok(AcceptCheck::Matches);
    }
    let missing = expected
        .iter()
        .filter(|s| !have_set.contains(s))
        .copied()
        .collect();
    let extra = have
        .iter()
        .filter(|s| !want_set.contains(s))
        .copied()
        .collect();
    Ok(AcceptCheck::Mismatch { missing, extra })
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Key rotation on an established connection (RFC 5925 §7.5.2.e: RNextKeyID signalling),
//! as a pollable state machine.
//!
//! 1. [`Rotation::start`]: add the successor MKT and request it from the peer (RNext_key).
//! 2. Send something (a BGP KEEPALIVE) so the new RNextKeyID reaches the peer promptly.
//! 3. [`Rotation::poll`] (non-blocking, e.g. from a daemon's timer) or [`Rotation::wait`]
//!    (blocking, bounded): once the peer demonstrably has the successor (segments verified with
//!    it, or the peer's RNextKeyID made it our Current_key), the old key is deleted (with the
//!    successor as replacement Current_key if needed).
//!
//! Replacing key material under the same IDs cannot be done by adding again (`EEXIST`): use
//! [`replace_key`] (delete, then add) — only on sockets where a gap is acceptable (e.g. a
//! listener), or rotate to new IDs.

use crate::error::{Error, Result};
use crate::ext::TcpAoExt;
use crate::info::KeyFilter;
use crate::key::{AoKey, KeySelector};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Where a rotation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationStatus {
    /// Waiting for the peer to use the successor.
    Pending {
        /// Segments verified with the successor so far.
        successor_good: u64,
        /// Our Current_key (SendID).
        current_key: Option<u8>,
    },
    /// The old key is deleted; the successor is in use.
    Done,
}

/// An in-progress rotation from `old` to a successor on one connection.
#[derive(Debug)]
pub struct Rotation<'s, S: AsFd + ?Sized> {
    sock: &'s S,
    old: KeySelector,
    new: KeySelector,
    baseline_good: u64,
    done: bool,
}

impl<'s, S: AsFd + ?Sized> Rotation<'s, S> {
    /// Add `successor` (without selecting it as current) and make it RNext_key.
    ///
    /// # Errors
    /// As [`TcpAoExt::add_ao_key`] / [`TcpAoExt::set_ao_rnext_key`]; [`Error::InvalidArgument`]
    /// if the successor has the same IDs and prefix as `old`.
    pub fn start(sock: &'s S, old: KeySelector, successor: &AoKey) -> Result<Self> {
        let new = successor.selector();
        if new == old {
            return Err(Error::invalid(
                "successor",
                "same identity as the old key; use replace_key",
            ));
        }
        sock.add_ao_key(successor)?;
        sock.set_ao_rnext_key(new.recv_id)?;
        let baseline_good = Self::good_of(sock, &new)?;
        Ok(Self {
            sock,
            old,
            new,
            baseline_good,
            done: false,
        })
    }

    fn good_of(sock: &S, sel: &KeySelector) -> Result<u64> {
        Ok(sock
            .ao_keys(&KeyFilter::Key(*sel))?
            .iter()
            .find(|k| k.selector == *sel)
            .map_or(0, |k| k.good))
    }

    /// The successor's identity.
    pub fn successor(&self) -> KeySelector {
        self.new
    }

    /// Check once, without blocking; deletes the old key when the peer uses the successor.
    ///
    /// # Errors
    /// Socket option failures.
    pub fn poll(&mut self) -> Result<RotationStatus> {
        if self.done {
            return Ok(RotationStatus::Done);
        }
        let good = Self::good_of(self.sock, &self.new)?;
        let current = self.sock.ao_info()?.and_then(|i| i.current_key);
        let peer_has_it = good > self.baseline_good || current == Some(self.new.send_id);
        if !peer_has_it {
            return Ok(RotationStatus::Pending {
                successor_good: good,
                current_key: current,
            });
        }
        if current == Some(self.old.send_id) {
            self.sock
                .del_ao_key_replacing(&self.old, Some(self.new.send_id), None)?;
        } else {
            self.sock.del_ao_key(&self.old)?;
        }
        self.done = true;
        Ok(RotationStatus::Done)
    }

    /// Poll until done or `deadline`, checking every `interval` (e.g. 10 ms).
    ///
    /// # Errors
    /// [`Error::RotationTimedOut`] at the deadline (the old key is still installed); socket
    /// option failures.
    pub fn wait(&mut self, deadline: Instant, interval: Duration) -> Result<()> {
        loop {
            if let RotationStatus::Done = self.poll()? {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::RotationTimedOut {
                    successor: self.new,
                });
            }
            std::thread::sleep(interval.min(deadline - now));
        }
    }
}

/// Replace the material of an MKT under the same identity: delete, then add. Between the two
/// calls the socket has no such key.
///
/// # Errors
/// As [`TcpAoExt::del_ao_key`] and [`TcpAoExt::add_ao_key`].
pub fn replace_key<S: AsFd + ?Sized>(sock: &S, key: &AoKey) -> Result<()> {
    sock.del_ao_key(&key.selector())?;
    sock.add_ao_key(key)
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Start-up capability probe: does TCP-AO work on this kernel, with which algorithms, and does
//! TCP-MD5.

use crate::addr::PeerPrefix;
use crate::error::{Error, Op, Result};
use crate::ext::{Md5Ext, Md5Key, add_key};
use crate::key::{Algorithm, AoKey, MasterKey};
use crate::sys;
use std::os::fd::{AsFd, OwnedFd};

/// What [`probe`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `TCP_AO_*` socket options exist (`CONFIG_TCP_AO`).
    pub tcp_ao: bool,
    /// Algorithms the kernel accepted, in the order probed (empty without TCP-AO).
    pub algorithms: Vec<Algorithm>,
    /// Algorithms the kernel refused (`ENOENT`).
    pub unavailable: Vec<Algorithm>,
    /// `TCP_MD5SIG_EXT` works (`CONFIG_TCP_MD5SIG`).
    pub tcp_md5: bool,
}

fn throwaway() -> Result<OwnedFd> {
    sys::tcp_socket(libc::AF_INET)
        .or_else(|_| sys::tcp_socket(libc::AF_INET6))
        .map_err(|e| Error::from_os(Op::Socket, e))
}

/// Try `TCP_AO_ADD_KEY` with `algorithm` on a throwaway, never-connected socket.
/// `Ok(true)`: accepted; `Ok(false)`: the kernel lacks the algorithm.
///
/// # Errors
/// [`Error::Unsupported`] when the kernel has no TCP-AO; other unexpected failures.
pub fn probe_algorithm(algorithm: &Algorithm) -> Result<bool> {
    let sock = throwaway()?;
    let key = AoKey::new(
        PeerPrefix::any(),
        0,
        0,
        algorithm.clone(),
        MasterKey::new(&[0x5a; 16])?,
    );
    match add_key(sock.as_fd(), &key) {
        Ok(()) => Ok(true),
        Err(Error::AlgorithmUnavailable { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `TCP_MD5SIG_EXT` works (adds a key on a throwaway socket).
///
/// # Errors
/// Unexpected failures other than [`Error::Unsupported`].
pub fn probe_md5() -> Result<bool> {
    let sock = throwaway()?;
    let key = Md5Key {
        peer: PeerPrefix::any(),
        vrf: None,
        key: MasterKey::new(&[0x5a; 16])?,
    };
    match sock.add_md5_key(&key) {
        Ok(()) => Ok(true),
        Err(Error::Unsupported { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Probe TCP-AO (each of [`Algorithm::WELL_KNOWN`] plus `extra`) and TCP-MD5. Cheap: a few
/// socket(2)+setsockopt(2) calls, no traffic.
///
/// ```
/// let caps = tcpao_sys::probe(&[])?;
/// if !caps.tcp_ao {
///     eprintln!("this kernel has no TCP-AO (CONFIG_TCP_AO); TCP-MD5: {}", caps.tcp_md5);
/// }
/// # Ok::<(), tcpao_sys::Error>(())
/// ```
///
/// # Errors
/// Only unexpected failures (e.g. no sockets at all); a kernel without TCP-AO is
/// `Ok(Capabilities { tcp_ao: false, .. })`.
pub fn probe(extra: &[Algorithm]) -> Result<Capabilities> {
    let mut caps = Capabilities {
        tcp_ao: true,
        algorithms: vec![],
        unavailable: vec![],
        tcp_md5: false,
    };
    for alg in Algorithm::WELL_KNOWN.iter().chain(extra) {
        match probe_algorithm(alg) {
            Ok(true) => caps.algorithms.push(alg.clone()),
            Ok(false) => caps.unavailable.push(alg.clone()),
            Err(Error::Unsupported { .. }) => {
                caps.tcp_ao = false;
                caps.algorithms.clear();
                caps.unavailable.clear();
                break;
            }
            Err(e) => return Err(e),
        }
    }
    caps.tcp_md5 = probe_md5()?;
    Ok(caps)
}

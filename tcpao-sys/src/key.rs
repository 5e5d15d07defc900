// SPDX-License-Identifier: MIT OR Apache-2.0
//! Master Key Tuples (RFC 5925 §3.1): key material, algorithms, and the typed `AoKey`.

use crate::addr::PeerPrefix;
use crate::error::{Error, Result};
use crate::uapi;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Secret key bytes (1..=80, the kernel's `TCP_AO_MAXKEYLEN`/`TCP_MD5SIG_MAXKEYLEN`), zeroed on
/// drop. `Debug` prints only the length. Deliberately not `Clone`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; uapi::TCP_AO_MAXKEYLEN],
    len: u8,
}

impl MasterKey {
    /// Copy `bytes` into a new key.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (`key`) if empty or longer than 80 bytes.
    pub fn new(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() || bytes.len() > uapi::TCP_AO_MAXKEYLEN {
            return Err(Error::invalid(
                "key",
                format!(
                    "length {} is not in 1..={}",
                    bytes.len(),
                    uapi::TCP_AO_MAXKEYLEN
                ),
            ));
        }
        let mut k = Self {
            bytes: [0; uapi::TCP_AO_MAXKEYLEN],
            len: bytes.len() as u8,
        };
        k.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(k)
    }

    /// The secret bytes. Handle with care: do not log them.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Key length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false (keys are never empty); present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Duplicate the key (an explicit copy of secret material).
    pub fn duplicate(&self) -> Self {
        Self {
            bytes: self.bytes,
            len: self.len,
        }
    }
}

impl PartialEq for MasterKey {
    /// Constant-time-ish comparison (no early exit on the first differing byte).
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .bytes
                .iter()
                .zip(other.bytes.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for MasterKey {}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(<redacted, {} bytes>)", self.len)
    }
}

/// MAC algorithm of an MKT (RFC 5926 plus HMAC-SHA-256), by kernel crypto API name.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC-SHA-1-96 (RFC 5926 §3.2), kernel `hmac(sha1)`.
    HmacSha1,
    /// AES-128-CMAC-96 (RFC 5926 §3.2), kernel `cmac(aes128)`: the kernel folds keys that are
    /// not 16 bytes with the RFC 5926 §3.1.1.2 KDF (stored and reported as `cmac(aes)`).
    AesCmac128,
    /// HMAC-SHA-256, kernel `hmac(sha256)`.
    HmacSha256,
    /// Any other kernel crypto API name, passed through verbatim (at most 63 bytes, no NUL).
    Raw(String),
}

impl Algorithm {
    /// The algorithms every TCP-AO kernel is expected to take.
    pub const WELL_KNOWN: [Algorithm; 3] = [
        Algorithm::HmacSha1,
        Algorithm::AesCmac128,
        Algorithm::HmacSha256,
    ];

    /// The name given to the kernel (`alg_name`).
    pub fn kernel_name(&self) -> &str {
        match self {
            Algorithm::HmacSha1 => "hmac(sha1)",
            Algorithm::AesCmac128 => "cmac(aes128)",
            Algorithm::HmacSha256 => "hmac(sha256)",
            Algorithm::Raw(s) => s,
        }
    }

    /// Parse the name the kernel reports in `TCP_AO_GET_KEYS` (`cmac(aes)` → [`AesCmac128`]).
    ///
    /// [`AesCmac128`]: Algorithm::AesCmac128
    pub fn from_kernel_name(name: &str) -> Self {
        match name {
            "hmac(sha1)" => Algorithm::HmacSha1,
            "cmac(aes128)" | "cmac(aes)" => Algorithm::AesCmac128,
            "hmac(sha256)" => Algorithm::HmacSha256,
            other => Algorithm::Raw(other.to_owned()),
        }
    }

    fn digest_len(&self) -> Option<u8> {
        match self {
            Algorithm::HmacSha1 => Some(20),
            Algorithm::AesCmac128 => Some(16),
            Algorithm::HmacSha256 => Some(32),
            Algorithm::Raw(_) => None,
        }
    }

    pub(crate) fn to_alg_name(&self) -> Result<[u8; 64]> {
        let name = self.kernel_name().as_bytes();
        if name.is_empty() || name.len() > 63 || name.contains(&0) {
            return Err(Error::invalid(
                "algorithm",
                format!("{:?} must be 1..=63 bytes without NUL", self.kernel_name()),
            ));
        }
        let mut out = [0u8; 64];
        out[..name.len()].copy_from_slice(name);
        Ok(out)
    }
}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kernel_name())
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kernel_name())
    }
}

/// The identity of an MKT on a socket: peer prefix, SendID, RecvID and VRF binding. This is
/// what `TCP_AO_DEL_KEY` matches exactly, and what the accept check compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeySelector {
    /// Peer address prefix.
    pub peer: PeerPrefix,
    /// SendID (RFC 5925 §3.1): the KeyID we put in outgoing segments.
    pub send_id: u8,
    /// RecvID (RFC 5925 §3.1): the KeyID expected in incoming segments.
    pub recv_id: u8,
    /// `Some(ifindex)`: key bound to that L3 master (VRF) index (`TCP_AO_KEYF_IFINDEX`;
    /// `Some(0)` = default VRF only). `None`: any VRF.
    pub vrf: Option<u32>,
}

impl KeySelector {
    /// A selector without VRF binding.
    pub fn new(peer: PeerPrefix, send_id: u8, recv_id: u8) -> Self {
        Self {
            peer,
            send_id,
            recv_id,
            vrf: None,
        }
    }

    pub(crate) fn to_del(self, family: i32) -> Result<uapi::tcp_ao_del> {
        let (keyflags, ifindex) = vrf_fields(self.vrf)?;
        Ok(uapi::tcp_ao_del {
            addr: self.peer.to_sockaddr(family)?,
            ifindex,
            prefix: self.peer.prefix_len(),
            sndid: self.send_id,
            rcvid: self.recv_id,
            keyflags,
            ..Default::default()
        })
    }
}

pub(crate) fn vrf_fields(vrf: Option<u32>) -> Result<(u8, i32)> {
    match vrf {
        None => Ok((0, 0)),
        Some(i) => {
            let i = i32::try_from(i)
                .map_err(|_| Error::invalid("vrf", format!("ifindex {i} exceeds i32")))?;
            Ok((uapi::TCP_AO_KEYF_IFINDEX, i))
        }
    }
}

/// A Master Key Tuple to install with `TCP_AO_ADD_KEY` (RFC 5925 §3.1).
///
/// ```
/// use tcpao_sys::{AoKey, Algorithm, MasterKey};
/// let key = AoKey::new(
///     "192.0.2.0/24".parse()?,
///     1, 1,
///     Algorithm::HmacSha1,
///     MasterKey::new(b"correct horse battery staple")?,
/// )
/// .mac_len(12)?
/// .include_options(true);
/// assert_eq!(key.selector().send_id, 1);
/// # Ok::<(), tcpao_sys::Error>(())
/// ```
#[derive(Debug)]
pub struct AoKey {
    selector: KeySelector,
    algorithm: Algorithm,
    key: MasterKey,
    mac_len: Option<u8>,
    include_options: bool,
    set_current: bool,
    set_rnext: bool,
}

impl AoKey {
    /// A key for `peer` with the given SendID/RecvID, algorithm and master key; default MAC
    /// length (12), TCP options included in the MAC, no VRF binding.
    pub fn new(
        peer: PeerPrefix,
        send_id: u8,
        recv_id: u8,
        algorithm: Algorithm,
        key: MasterKey,
    ) -> Self {
        Self {
            selector: KeySelector::new(peer, send_id, recv_id),
            algorithm,
            key,
            mac_len: None,
            include_options: true,
            set_current: false,
            set_rnext: false,
        }
    }

    /// MAC length in bytes, 1..=16 (the TCP-AO option must fit in the SYN's option space) and
    /// at most the algorithm's digest length.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (`mac_len`) outside that range.
    pub fn mac_len(mut self, len: u8) -> Result<Self> {
        if !(1..=16).contains(&len) {
            return Err(Error::invalid("mac_len", format!("{len} is not in 1..=16")));
        }
        if let Some(d) = self.algorithm.digest_len() {
            if len > d {
                return Err(Error::invalid(
                    "mac_len",
                    format!("{len} exceeds the {d}-byte digest"),
                ));
            }
        }
        self.mac_len = Some(len);
        Ok(self)
    }

    /// Whether TCP options other than TCP-AO are covered by the MAC (RFC 5925 §3.1 "TCP option
    /// flag"; default true). `false` sets `TCP_AO_KEYF_EXCLUDE_OPT`.
    pub fn include_options(mut self, include: bool) -> Self {
        self.include_options = include;
        self
    }

    /// Bind the key to an L3 master (VRF) interface index (`TCP_AO_KEYF_IFINDEX`); 0 means the
    /// default VRF only.
    pub fn vrf(mut self, ifindex: u32) -> Self {
        self.selector.vrf = Some(ifindex);
        self
    }

    /// Make this key Current_key as it is added (not allowed on listeners).
    pub fn set_current(mut self, yes: bool) -> Self {
        self.set_current = yes;
        self
    }

    /// Request this key from the peer (RNext_key) as it is added (not allowed on listeners).
    pub fn set_rnext(mut self, yes: bool) -> Self {
        self.set_rnext = yes;
        self
    }

    /// The key's identity.
    pub fn selector(&self) -> KeySelector {
        self.selector
    }

    /// The algorithm.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// The master key.
    pub fn master_key(&self) -> &MasterKey {
        &self.key
    }

    /// Configured MAC length (`None` = kernel default 12).
    pub fn configured_mac_len(&self) -> Option<u8> {
        self.mac_len
    }

    /// Whether options are included in the MAC.
    pub fn includes_options(&self) -> bool {
        self.include_options
    }

    /// Whether `set_current`/`set_rnext` were requested.
    pub fn selects(&self) -> (bool, bool) {
        (self.set_current, self.set_rnext)
    }

    /// Build the raw `tcp_ao_add` for a socket of `family`.
    pub(crate) fn to_uapi(&self, family: i32) -> Result<uapi::tcp_ao_add> {
        let (mut keyflags, ifindex) = vrf_fields(self.selector.vrf)?;
        if !self.include_options {
            keyflags |= uapi::TCP_AO_KEYF_EXCLUDE_OPT;
        }
        let mut bitfield = 0;
        if self.set_current {
            bitfield |= uapi::tcp_ao_add::SET_CURRENT;
        }
        if self.set_rnext {
            bitfield |= uapi::tcp_ao_add::SET_RNEXT;
        }
        let mut raw = uapi::tcp_ao_add {
            addr: self.selector.peer.to_sockaddr(family)?,
            alg_name: self.algorithm.to_alg_name()?,
            ifindex,
            bitfield,
            prefix: self.selector.peer.prefix_len(),
            sndid: self.selector.send_id,
            rcvid: self.selector.recv_id,
            maclen: self.mac_len.unwrap_or(0),
            keyflags,
            keylen: self.key.len() as u8,
            ..Default::default()
        };
        raw.key[..self.key.len()].copy_from_slice(self.key.expose_secret());
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_is_redacted_and_bounded() {
        let k = MasterKey::new(b"sekrit-sekrit").unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("sekrit"), "{dbg}");
        assert!(dbg.contains("13 bytes"));
        assert!(MasterKey::new(&[]).is_err());
        assert!(MasterKey::new(&[1; 81]).is_err());
        assert_eq!(MasterKey::new(&[7; 80]).unwrap().len(), 80);
    }

    #[test]
    fn uapi_add_is_redacted_and_filled() {
        let key = AoKey::new(
            "10.0.0.0/8".parse().unwrap(),
            5,
            6,
            Algorithm::AesCmac128,
            MasterKey::new(b"sekrit-material").unwrap(),
        )
        .mac_len(4)
        .unwrap()
        .include_options(false)
        .vrf(7)
        .set_rnext(true);
        let raw = key.to_uapi(libc::AF_INET).unwrap();
        assert!(!format!("{raw:?}").contains("sekrit"));
        assert!(!format!("{key:?}").contains("sekrit"));
        assert_eq!(&raw.alg_name[..13], b"cmac(aes128)\0");
        assert_eq!(
            (raw.prefix, raw.sndid, raw.rcvid, raw.maclen, raw.keylen),
            (8, 5, 6, 4, 15)
        );
        assert_eq!(
            raw.keyflags,
            uapi::TCP_AO_KEYF_IFINDEX | uapi::TCP_AO_KEYF_EXCLUDE_OPT
        );
        assert_eq!(raw.ifindex, 7);
        assert_eq!(raw.bitfield, uapi::tcp_ao_add::SET_RNEXT);
        assert_eq!(raw.reserved2, 0);
        assert_eq!(&raw.key[..15], b"sekrit-material");
        assert!(raw.key[15..].iter().all(|&b| b == 0));
    }

    #[test]
    fn mac_len_and_algorithm_names_are_validated() {
        let mk = || {
            AoKey::new(
                PeerPrefix::any(),
                1,
                1,
                Algorithm::HmacSha1,
                MasterKey::new(b"k").unwrap(),
            )
        };
        assert!(mk().mac_len(0).is_err());
        assert!(mk().mac_len(17).is_err());
        assert!(mk().mac_len(16).is_ok());
        let long = Algorithm::Raw("x".repeat(64));
        assert!(long.to_alg_name().is_err());
        assert!(Algorithm::Raw("a\0b".into()).to_alg_name().is_err());
        assert_eq!(
            Algorithm::from_kernel_name("cmac(aes)"),
            Algorithm::AesCmac128
        );
        assert_eq!(
            Algorithm::from_kernel_name("hmac(sha512)"),
            Algorithm::Raw("hmac(sha512)".into())
        );
    }
}

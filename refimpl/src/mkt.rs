// SPDX-License-Identifier: MIT OR Apache-2.0
//! Master Key Tuples (RFC 5925 §3.1) and the zeroizing key container.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::algo::{Algorithm, DEFAULT_MAC_LEN};
use crate::error::{Error, Result};

/// Master key bytes, used exactly as configured (no NUL terminator, no hex decoding:
/// RFC 9235's "testvector" is 10 bytes). Zeroed on drop; `Debug` prints only the length.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey(Vec<u8>);

impl MasterKey {
    /// Wrap key bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        MasterKey(bytes.into())
    }

    /// Decode a hex string (whitespace and `:` separators allowed).
    ///
    /// # Errors
    /// [`Error::Hex`] for odd length or non-hex digits.
    pub fn from_hex(hex: &str) -> Result<Self> {
        Ok(MasterKey(decode_hex(hex)?.to_vec()))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Key length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey([REDACTED; {} bytes])", self.0.len())
    }
}

impl From<&[u8]> for MasterKey {
    fn from(b: &[u8]) -> Self {
        MasterKey::new(b)
    }
}

impl From<&str> for MasterKey {
    /// The UTF-8 bytes of the string, without terminator.
    fn from(s: &str) -> Self {
        MasterKey::new(s.as_bytes())
    }
}

/// Decode hex into a zeroizing buffer (`:`, `-` and whitespace are ignored).
///
/// # Errors
/// [`Error::Hex`] for odd length or non-hex digits.
pub fn decode_hex(hex: &str) -> Result<Zeroizing<Vec<u8>>> {
    let digits: Zeroizing<Vec<u8>> = Zeroizing::new(
        hex.bytes()
            .filter(|b| !b.is_ascii_whitespace() && *b != b':' && *b != b'-')
            .collect(),
    );
    if digits.len() % 2 != 0 {
        return Err(Error::Hex("odd number of hex digits".into()));
    }
    let val = |c: u8| -> Result<u8> {
        (c as char)
            .to_digit(16)
            .map(|v| v as u8)
            .ok_or_else(|| Error::Hex(format!("invalid hex digit {:?}", c as char)))
    };
    let mut out = Zeroizing::new(Vec::with_capacity(digits.len() / 2));
    for pair in digits.chunks_exact(2) {
        out.push(val(pair[0])? << 4 | val(pair[1])?);
    }
    Ok(out)
}

/// A Master Key Tuple (RFC 5925 §3.1), seen from the end that owns it.
///
/// Address/port matching of the tuple (its "TCP connection identifier") is left to the
/// caller: an `Mkt` is used with an explicit [`crate::kdf::Connection`].
#[derive(Clone, PartialEq, Eq)]
pub struct Mkt {
    /// SendID: the KeyID put into segments sent with this MKT.
    pub send_id: u8,
    /// RecvID: the KeyID expected in segments received with this MKT.
    pub recv_id: u8,
    /// KDF and MAC algorithm.
    pub algorithm: Algorithm,
    /// MAC length in bytes (1..=16, default 12).
    mac_len: usize,
    /// RFC 5925 §3.1 TCP option flag: whether options other than TCP-AO are covered
    /// by the MAC (default: included).
    pub include_options: bool,
    /// The master key.
    pub key: MasterKey,
}

impl Mkt {
    /// An MKT with the default MAC length (12) and options included.
    pub fn new(send_id: u8, recv_id: u8, algorithm: Algorithm, key: impl Into<MasterKey>) -> Self {
        Mkt {
            send_id,
            recv_id,
            algorithm,
            mac_len: DEFAULT_MAC_LEN,
            include_options: true,
            key: key.into(),
        }
    }

    /// Set the MAC length (checked against the algorithm, see
    /// [`Algorithm::check_mac_len`]).
    ///
    /// # Errors
    /// [`Error::MacLenOutOfRange`], [`Error::MacLenTooLong`].
    pub fn with_mac_len(mut self, mac_len: usize) -> Result<Self> {
        self.algorithm.check_mac_len(mac_len)?;
        self.mac_len = mac_len;
        Ok(self)
    }

    /// Set the TCP option flag (RFC 5925 §3.1).
    pub fn with_include_options(mut self, include: bool) -> Self {
        self.include_options = include;
        self
    }

    /// MAC length in bytes.
    pub fn mac_len(&self) -> usize {
        self.mac_len
    }

    /// The same MKT seen from the peer: SendID and RecvID swapped.
    pub fn peer_view(&self) -> Mkt {
        Mkt {
            send_id: self.recv_id,
            recv_id: self.send_id,
            ..self.clone()
        }
    }
}

impl fmt::Debug for Mkt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mkt")
            .field("send_id", &self.send_id)
            .field("recv_id", &self.recv_id)
            .field("algorithm", &self.algorithm)
            .field("mac_len", &self.mac_len)
            .field("include_options", &self.include_options)
            .field("key", &self.key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let m = Mkt::new(1, 2, Algorithm::HmacSha1, "s3cr3t-password");
        let s = format!("{m:?}");
        assert!(!s.contains("s3cr3t"), "{s}");
        assert!(s.contains("REDACTED"), "{s}");
        assert!(!format!("{:?}", m.key).contains("115"));
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(
            MasterKey::from_hex("74:65 73-74").unwrap().as_bytes(),
            b"test"
        );
        assert!(MasterKey::from_hex("7").is_err());
        assert!(MasterKey::from_hex("zz").is_err());
    }

    #[test]
    fn mac_len_checked() {
        let m = Mkt::new(1, 2, Algorithm::AesCmac128, "k");
        assert_eq!(m.mac_len(), 12);
        assert!(m.clone().with_mac_len(17).is_err());
        assert_eq!(m.with_mac_len(4).unwrap().mac_len(), 4);
    }
}

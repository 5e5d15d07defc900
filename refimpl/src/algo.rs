// SPDX-License-Identifier: MIT OR Apache-2.0
//! TCP-AO algorithm identities (RFC 5926 §3) and their names.
//!
//! Each [`Algorithm`] is a KDF + MAC pair:
//!
//! | variant | kernel name | keys-file name | KDF (RFC 5926 §3.1) | MAC (§3.2) | output |
//! |---|---|---|---|---|---|
//! | [`Algorithm::HmacSha1`] | `hmac(sha1)` | `hmac-sha1` | KDF_HMAC_SHA1 | HMAC-SHA-1-96 | 20 |
//! | [`Algorithm::AesCmac128`] | `cmac(aes128)` (`cmac(aes)`) | `aes-128-cmac` | KDF_AES_128_CMAC | AES-128-CMAC-96 | 16 |
//! | [`Algorithm::HmacSha256`] | `hmac(sha256)` | `hmac-sha256` | as Linux: HMAC-SHA256 PRF, 256-bit output | HMAC-SHA-256 truncated | 32 |

use core::fmt;
use core::str::FromStr;

use crate::error::{Error, Result};

/// Default MAC length in bytes (RFC 5926 §3.2: 96 bits).
pub const DEFAULT_MAC_LEN: usize = 12;
/// Largest MAC length Linux accepts: the option must fit into a SYN (`EMSGSIZE` above).
pub const MAX_MAC_LEN: usize = 16;

/// A TCP-AO KDF + MAC algorithm pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// KDF_HMAC_SHA1 + HMAC-SHA-1-96 (RFC 5926 §3.1.1.1, §3.2.1).
    HmacSha1,
    /// KDF_AES_128_CMAC + AES-128-CMAC-96 (RFC 5926 §3.1.1.2, §3.2.2).
    AesCmac128,
    /// HMAC-SHA-256 as Linux implements it (not in RFC 5926): the RFC 5926 KDF block with
    /// PRF = HMAC-SHA256 and Output_Length = 256, MAC = truncated HMAC-SHA256.
    HmacSha256,
}

impl Algorithm {
    /// All algorithms, in a fixed order.
    pub const ALL: [Algorithm; 3] = [
        Algorithm::HmacSha1,
        Algorithm::AesCmac128,
        Algorithm::HmacSha256,
    ];

    /// The Linux crypto API name (`tcp_ao_add.alg_name`).
    pub const fn kernel_name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac(sha1)",
            Algorithm::AesCmac128 => "cmac(aes128)",
            Algorithm::HmacSha256 => "hmac(sha256)",
        }
    }

    /// The name used in keys files.
    pub const fn keyfile_name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::AesCmac128 => "aes-128-cmac",
            Algorithm::HmacSha256 => "hmac-sha256",
        }
    }

    /// The RFC 5926 name of the MAC with the default length.
    pub const fn rfc_name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "HMAC-SHA-1-96",
            Algorithm::AesCmac128 => "AES-128-CMAC-96",
            Algorithm::HmacSha256 => "HMAC-SHA-256",
        }
    }

    /// Parse a kernel name (`hmac(sha1)`, `cmac(aes128)`, `cmac(aes)`, `hmac(sha256)`).
    ///
    /// # Errors
    /// [`Error::UnknownAlgorithm`].
    pub fn from_kernel_name(name: &str) -> Result<Self> {
        match name {
            "hmac(sha1)" => Ok(Algorithm::HmacSha1),
            "cmac(aes128)" | "cmac(aes)" => Ok(Algorithm::AesCmac128),
            "hmac(sha256)" => Ok(Algorithm::HmacSha256),
            _ => Err(Error::UnknownAlgorithm(name.to_owned())),
        }
    }

    /// Parse a keys-file name (`hmac-sha1`, `aes-128-cmac`, `hmac-sha256`).
    ///
    /// # Errors
    /// [`Error::UnknownAlgorithm`].
    pub fn from_keyfile_name(name: &str) -> Result<Self> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.keyfile_name() == name)
            .ok_or_else(|| Error::UnknownAlgorithm(name.to_owned()))
    }

    /// Output size of the MAC/PRF in bytes; also the traffic key length.
    pub const fn digest_len(self) -> usize {
        match self {
            Algorithm::HmacSha1 => 20,
            Algorithm::AesCmac128 => 16,
            Algorithm::HmacSha256 => 32,
        }
    }

    /// Traffic key length in bytes (RFC 5926 §3.1: the KDF output).
    pub const fn traffic_key_len(self) -> usize {
        self.digest_len()
    }

    /// Output_Length of the KDF block in bits (RFC 5926 §3.1; Linux: digest size × 8).
    pub const fn kdf_output_bits(self) -> u16 {
        (self.digest_len() * 8) as u16
    }

    /// Check a MAC length: 1..=16 and at most the digest size (Linux `tcp_ao_parse_crypto`).
    ///
    /// # Errors
    /// [`Error::MacLenOutOfRange`] or [`Error::MacLenTooLong`].
    pub fn check_mac_len(self, len: usize) -> Result<()> {
        if len == 0 || len > MAX_MAC_LEN {
            return Err(Error::MacLenOutOfRange(len));
        }
        if len > self.digest_len() {
            return Err(Error::MacLenTooLong {
                algorithm: self,
                len,
                digest_len: self.digest_len(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Algorithm {
    /// Formats as the kernel name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kernel_name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    /// Accepts kernel names, keys-file names and the RFC names (with or without the `-96`
    /// length suffix), ignoring ASCII case and surrounding white space.
    fn from_str(s: &str) -> Result<Self> {
        let l = s.trim().to_ascii_lowercase();
        let rfc = |a: &Algorithm| {
            let n = a.rfc_name();
            n.eq_ignore_ascii_case(&l)
                || n.strip_suffix("-96")
                    .is_some_and(|n| n.eq_ignore_ascii_case(&l))
        };
        Algorithm::from_kernel_name(&l)
            .or_else(|_| Algorithm::from_keyfile_name(&l))
            .or_else(|_| {
                Algorithm::ALL
                    .into_iter()
                    .find(rfc)
                    .ok_or_else(|| Error::UnknownAlgorithm(s.to_owned()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for a in Algorithm::ALL {
            assert_eq!(a.to_string().parse::<Algorithm>().unwrap(), a);
            assert_eq!(a.keyfile_name().parse::<Algorithm>().unwrap(), a);
            assert_eq!(Algorithm::from_kernel_name(a.kernel_name()).unwrap(), a);
            assert_eq!(Algorithm::from_keyfile_name(a.keyfile_name()).unwrap(), a);
        }
        assert_eq!(
            "cmac(aes)".parse::<Algorithm>().unwrap(),
            Algorithm::AesCmac128
        );
        assert_eq!(
            "HMAC-SHA-1-96".parse::<Algorithm>().unwrap(),
            Algorithm::HmacSha1
        );
        for name in ["hmac-sha-1", " HMAC-SHA-256 ", "aes-128-cmac-96"] {
            assert!(name.parse::<Algorithm>().is_ok(), "{name}");
        }
        assert!(matches!(
            "hmac(md5)".parse::<Algorithm>(),
            Err(Error::UnknownAlgorithm(_))
        ));
    }

    #[test]
    fn mac_len_limits() {
        assert_eq!(Algorithm::HmacSha1.kdf_output_bits(), 160);
        assert_eq!(Algorithm::AesCmac128.kdf_output_bits(), 128);
        assert_eq!(Algorithm::HmacSha256.kdf_output_bits(), 256);
        for a in Algorithm::ALL {
            assert!(a.check_mac_len(0).is_err());
            assert!(a.check_mac_len(1).is_ok());
            assert!(a.check_mac_len(12).is_ok());
            assert!(a.check_mac_len(16).is_ok());
            assert_eq!(a.check_mac_len(17), Err(Error::MacLenOutOfRange(17)));
        }
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Traffic key derivation: RFC 5926 §3.1 KDFs over the RFC 5925 §5.2 context.
//!
//! The KDF block for iteration i = 1 is (RFC 5926 §3.1):
//!
//! ```text
//! 0x01 | "TCP-AO" | Context | Output_Length (16-bit big-endian, in bits)
//! ```
//!
//! with no separator after the label. The PRF output already has the traffic key length,
//! so one iteration suffices for every algorithm here:
//!
//! * KDF_HMAC_SHA1 (RFC 5926 §3.1.1.1): PRF = HMAC-SHA1(master key), 160 bits.
//! * KDF_AES_128_CMAC (RFC 5926 §3.1.1.2): PRF = AES-CMAC-PRF-128 (RFC 4615), 128 bits.
//!   A master key that is not 16 bytes is first folded to `AES-CMAC(0^128, key)`.
//! * HMAC-SHA-256 as Linux does it: PRF = HMAC-SHA256(master key), 256 bits.
//!
//! A [`TrafficKey`] keeps the keyed MAC state precomputed (HMAC inner/outer pads, or the
//! AES key schedule and CMAC subkeys), so per-segment work is a clone plus the data.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use aes::Aes128;
use cmac::Cmac;
use digest::{KeyInit, Mac};
use hmac::Hmac;
use sha1::Sha1;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::algo::Algorithm;
use crate::error::{Error, Result};
use crate::mkt::{MasterKey, Mkt};

/// The KDF label (RFC 5926 §3.1.1), six ASCII bytes, no terminator.
pub const KDF_LABEL: &[u8] = b"TCP-AO";

/// Keyed MAC state of one traffic key, cloned per segment.
// Not boxed on purpose: the state is cloned for every segment, a box would allocate each time.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum MacState {
    HmacSha1(Hmac<Sha1>),
    AesCmac128(Cmac<Aes128>),
    HmacSha256(Hmac<Sha256>),
}

fn hmac_sha1(key: &[u8]) -> Hmac<Sha1> {
    <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn cmac_aes128(key: &[u8; 16]) -> Cmac<Aes128> {
    <Cmac<Aes128> as KeyInit>::new(&(*key).into())
}

/// AES-CMAC (RFC 4493) with a 16-byte key: the full 16-byte tag.
pub fn aes_cmac(key: &[u8; 16], msg: &[u8]) -> [u8; 16] {
    cmac_aes128(key)
        .chain_update(msg)
        .finalize()
        .into_bytes()
        .into()
}

/// AES-CMAC-PRF-128 (RFC 4615 §3): a 16-byte key is used as is, any other length
/// (including 0) is first folded to `AES-CMAC(0^128, key)`.
pub fn aes_cmac_prf_128(key: &[u8], msg: &[u8]) -> [u8; 16] {
    let k = fold_aes_key(key);
    aes_cmac(&k, msg)
}

/// The RFC 4615 §3 step 1 key folding used by KDF_AES_128_CMAC (RFC 5926 §3.1.1.2).
pub fn fold_aes_key(key: &[u8]) -> Zeroizing<[u8; 16]> {
    let mut k = Zeroizing::new([0u8; 16]);
    match <&[u8; 16]>::try_from(key) {
        Ok(k16) => k.copy_from_slice(k16),
        Err(_) => k.copy_from_slice(&aes_cmac(&[0u8; 16], key)),
    }
    k
}

/// Feed the RFC 5926 §3.1 block for iteration 1 into `prf` and return the PRF output.
fn prf_block<M: Mac>(mut prf: M, context: &[u8], out_bits: u16) -> digest::Output<M> {
    prf.update(&[1]);
    prf.update(KDF_LABEL);
    prf.update(context);
    prf.update(&out_bits.to_be_bytes());
    prf.finalize().into_bytes()
}

/// Run the KDF of `algorithm` (RFC 5926 §3.1) with `master_key` over `context`.
pub fn kdf(algorithm: Algorithm, master_key: &[u8], context: &[u8]) -> TrafficKey {
    let bits = algorithm.kdf_output_bits();
    let mut out = Zeroizing::new([0u8; 32]);
    let n = algorithm.traffic_key_len();
    match algorithm {
        Algorithm::HmacSha1 => {
            out[..n].copy_from_slice(&prf_block(hmac_sha1(master_key), context, bits));
        }
        Algorithm::AesCmac128 => {
            let k = fold_aes_key(master_key);
            out[..n].copy_from_slice(&prf_block(cmac_aes128(&k), context, bits));
        }
        Algorithm::HmacSha256 => {
            out[..n].copy_from_slice(&prf_block(hmac_sha256(master_key), context, bits));
        }
    }
    TrafficKey::from_array(algorithm, out)
}

/// A traffic key (RFC 5925 §5.2) with its precomputed keyed MAC state.
/// Zeroed on drop; `Debug` does not show the key.
#[derive(Clone)]
pub struct TrafficKey {
    algorithm: Algorithm,
    bytes: Zeroizing<[u8; 32]>,
    state: MacState,
}

impl TrafficKey {
    /// Build a traffic key from raw bytes (e.g. a published test vector).
    ///
    /// # Errors
    /// [`Error::TrafficKeyLen`] when `bytes` is not [`Algorithm::traffic_key_len`] long.
    pub fn new(algorithm: Algorithm, bytes: &[u8]) -> Result<Self> {
        let n = algorithm.traffic_key_len();
        if bytes.len() != n {
            return Err(Error::TrafficKeyLen {
                algorithm,
                expected: n,
                got: bytes.len(),
            });
        }
        let mut out = Zeroizing::new([0u8; 32]);
        out[..n].copy_from_slice(bytes);
        Ok(Self::from_array(algorithm, out))
    }

    fn from_array(algorithm: Algorithm, bytes: Zeroizing<[u8; 32]>) -> Self {
        let n = algorithm.traffic_key_len();
        let state = match algorithm {
            Algorithm::HmacSha1 => MacState::HmacSha1(hmac_sha1(&bytes[..n])),
            Algorithm::AesCmac128 => {
                let mut k = Zeroizing::new([0u8; 16]);
                k.copy_from_slice(&bytes[..16]);
                MacState::AesCmac128(cmac_aes128(&k))
            }
            Algorithm::HmacSha256 => MacState::HmacSha256(hmac_sha256(&bytes[..n])),
        };
        TrafficKey {
            algorithm,
            bytes,
            state,
        }
    }

    /// Derive the traffic key of `mkt` for `context` (RFC 5925 §5.2).
    pub fn derive(mkt: &Mkt, context: &Context) -> Self {
        kdf(mkt.algorithm, mkt.key.as_bytes(), context.as_bytes())
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key bytes (for tests and vectors; never log them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.traffic_key_len()]
    }

    pub(crate) fn state(&self) -> &MacState {
        &self.state
    }
}

impl fmt::Debug for TrafficKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrafficKey({}, [REDACTED])", self.algorithm)
    }
}

impl PartialEq for TrafficKey {
    /// Constant-time comparison of algorithm and key bytes.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.algorithm == other.algorithm && bool::from(self.bytes.ct_eq(&*other.bytes))
    }
}

impl Eq for TrafficKey {}

/// The KDF context of RFC 5925 §5.2: source address, destination address, source port,
/// destination port, source ISN, destination ISN, all in network byte order
/// (20 bytes for IPv4, 44 for IPv6). "Source" is the sender of the protected segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    buf: [u8; 44],
    len: usize,
}

impl Context {
    /// Build a context.
    ///
    /// # Errors
    /// [`Error::AddressFamilyMismatch`] when one address is IPv4 and the other IPv6.
    pub fn new(src: SocketAddr, dst: SocketAddr, src_isn: u32, dst_isn: u32) -> Result<Self> {
        let mut buf = [0u8; 44];
        let mut len = 0;
        let mut put = |b: &[u8]| {
            buf[len..len + b.len()].copy_from_slice(b);
            len += b.len();
        };
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                put(&s.octets());
                put(&d.octets());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                put(&s.octets());
                put(&d.octets());
            }
            _ => return Err(Error::AddressFamilyMismatch),
        }
        put(&src.port().to_be_bytes());
        put(&dst.port().to_be_bytes());
        put(&src_isn.to_be_bytes());
        put(&dst_isn.to_be_bytes());
        Ok(Context { buf, len })
    }

    /// The context bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// One TCP connection seen from one end ("local"): endpoints and both ISNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connection {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// ISN of the local end (sequence number of its SYN).
    pub local_isn: u32,
    /// ISN of the remote end.
    pub remote_isn: u32,
}

impl Connection {
    /// A connection.
    pub fn new(local: SocketAddr, remote: SocketAddr, local_isn: u32, remote_isn: u32) -> Self {
        Connection {
            local,
            remote,
            local_isn,
            remote_isn,
        }
    }

    /// The same connection seen from the remote end.
    pub fn reversed(&self) -> Connection {
        Connection {
            local: self.remote,
            remote: self.local,
            local_isn: self.remote_isn,
            remote_isn: self.local_isn,
        }
    }

    /// Whether both ends use the same address family.
    pub fn is_consistent(&self) -> bool {
        self.local.is_ipv4() == self.remote.is_ipv4()
    }

    /// Context of Send_SYN_traffic_key: local→remote, local ISN, 0 (RFC 5925 §5.2).
    ///
    /// # Errors
    /// [`Error::AddressFamilyMismatch`].
    pub fn send_syn_context(&self) -> Result<Context> {
        Context::new(self.local, self.remote, self.local_isn, 0)
    }

    /// Context of Receive_SYN_traffic_key: remote→local, remote ISN, 0.
    ///
    /// # Errors
    /// [`Error::AddressFamilyMismatch`].
    pub fn recv_syn_context(&self) -> Result<Context> {
        Context::new(self.remote, self.local, self.remote_isn, 0)
    }

    /// Context of Send_other_traffic_key: local→remote, local ISN, remote ISN.
    /// Also used for the SYN-ACK.
    ///
    /// # Errors
    /// [`Error::AddressFamilyMismatch`].
    pub fn send_other_context(&self) -> Result<Context> {
        Context::new(self.local, self.remote, self.local_isn, self.remote_isn)
    }

    /// Context of Receive_other_traffic_key: remote→local, remote ISN, local ISN.
    ///
    /// # Errors
    /// [`Error::AddressFamilyMismatch`].
    pub fn recv_other_context(&self) -> Result<Context> {
        Context::new(self.remote, self.local, self.remote_isn, self.local_isn)
    }
}

/// The four traffic keys of one MKT on one connection (RFC 5925 §5.2), derived once.
///
/// The SYN keys use ISN 0 for the remote side; the SYN-ACK and everything after the
/// handshake use the "other" keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficKeys {
    /// Send_SYN_traffic_key: for SYNs we send.
    pub send_syn: TrafficKey,
    /// Receive_SYN_traffic_key: for SYNs we receive.
    pub recv_syn: TrafficKey,
    /// Send_other_traffic_key: for everything else we send (SYN-ACK included).
    pub send_other: TrafficKey,
    /// Receive_other_traffic_key: for everything else we receive (SYN-ACK included).
    pub recv_other: TrafficKey,
}

impl TrafficKeys {
    /// Derive all four keys of `mkt` for `conn`.
    ///
    /// # Errors
    /// [`Error::AddressFamilyMismatch`].
    pub fn derive(mkt: &Mkt, conn: &Connection) -> Result<Self> {
        Ok(TrafficKeys {
            send_syn: TrafficKey::derive(mkt, &conn.send_syn_context()?),
            recv_syn: TrafficKey::derive(mkt, &conn.recv_syn_context()?),
            send_other: TrafficKey::derive(mkt, &conn.send_other_context()?),
            recv_other: TrafficKey::derive(mkt, &conn.recv_other_context()?),
        })
    }

    /// The key for a segment we send: SYN key for a SYN without ACK, else the other key.
    pub fn for_send(&self, syn_without_ack: bool) -> &TrafficKey {
        if syn_without_ack {
            &self.send_syn
        } else {
            &self.send_other
        }
    }

    /// The key for a segment we receive: SYN key for a SYN without ACK, else the other key.
    pub fn for_recv(&self, syn_without_ack: bool) -> &TrafficKey {
        if syn_without_ack {
            &self.recv_syn
        } else {
            &self.recv_other
        }
    }
}

/// Derive one traffic key from a master key (convenience for [`kdf`]).
pub fn derive_traffic_key(
    algorithm: Algorithm,
    master_key: &MasterKey,
    context: &Context,
) -> TrafficKey {
    kdf(algorithm, master_key.as_bytes(), context.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        crate::mkt::decode_hex(s).unwrap().to_vec()
    }

    #[test]
    fn rfc4615_prf_vectors() {
        // RFC 4615 §4: message 000102...13 (20 bytes), keys of 18, 16 and 10 bytes.
        let msg = hex("000102030405060708090a0b0c0d0e0f10111213");
        let key = hex("000102030405060708090a0b0c0d0e0fedcb");
        assert_eq!(
            aes_cmac_prf_128(&key, &msg).to_vec(),
            hex("84a348a4a45d235babfffc0d2b4da09a")
        );
        assert_eq!(
            aes_cmac_prf_128(&key[..16], &msg).to_vec(),
            hex("980ae87b5f4c9c5214f5b6a8455e4c2d")
        );
        assert_eq!(
            aes_cmac_prf_128(&key[..10], &msg).to_vec(),
            hex("290d9e112edb09ee141fcf64c0b72f3d")
        );
    }

    #[test]
    fn testvector_key_folds_as_documented() {
        assert_eq!(
            fold_aes_key(b"testvector").to_vec(),
            hex("b9807674931de4aa4069e5b77075c807")
        );
    }

    #[test]
    fn traffic_key_debug_is_redacted() {
        let k = TrafficKey::new(Algorithm::AesCmac128, &[0x42; 16]).unwrap();
        let s = format!("{k:?}");
        assert!(s.contains("REDACTED") && !s.contains("42"), "{s}");
        assert!(TrafficKey::new(Algorithm::HmacSha1, &[0; 16]).is_err());
    }

    #[test]
    fn send_keys_are_peer_receive_keys() {
        let conn = Connection::new(
            "[2001:db8::1]:179".parse().unwrap(),
            "[2001:db8::2]:40000".parse().unwrap(),
            1,
            2,
        );
        for alg in Algorithm::ALL {
            let mkt = Mkt::new(1, 2, alg, "k");
            let a = TrafficKeys::derive(&mkt, &conn).unwrap();
            let b = TrafficKeys::derive(&mkt.peer_view(), &conn.reversed()).unwrap();
            assert_eq!(a.send_syn, b.recv_syn);
            assert_eq!(a.send_other, b.recv_other);
            assert_eq!(a.recv_other, b.send_other);
            assert_ne!(a.send_syn, a.send_other);
            assert_eq!(a.send_other.as_bytes().len(), alg.traffic_key_len());
        }
        let bad = Connection::new(
            "10.0.0.1:1".parse().unwrap(),
            "[::1]:2".parse().unwrap(),
            0,
            0,
        );
        assert!(TrafficKeys::derive(&Mkt::new(1, 1, Algorithm::HmacSha1, "k"), &bad).is_err());
    }
}

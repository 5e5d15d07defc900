// SPDX-License-Identifier: MIT OR Apache-2.0
//! The TCP-AO option (RFC 5925 §2.2): kind 29, length, KeyID, RNextKeyID, MAC.

use super::{Error, Result, need};

/// TCP option kind of TCP-AO (RFC 5925 §2.2).
pub const TCPOPT_AO: u8 = 29;

mod field {
    use crate::wire::Field;
    pub const KIND: usize = 0;
    pub const LENGTH: usize = 1;
    pub const KEY_ID: usize = 2;
    pub const RNEXT_KEY_ID: usize = 3;
    pub const fn mac(len: u8) -> Field {
        4..len as usize
    }
}

/// Length of the option without its MAC.
pub const HEADER_LEN: usize = 4;

/// A read/write view of a TCP-AO option (starting at the kind byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AoOption<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AoOption<T> {
    /// Wrap a buffer without checks (for emitting).
    pub const fn new_unchecked(buffer: T) -> Self {
        AoOption { buffer }
    }

    /// Wrap `buffer`, checking that every accessor stays in bounds.
    ///
    /// # Errors
    /// See [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let o = Self::new_unchecked(buffer);
        o.check_len()?;
        Ok(o)
    }

    /// Check kind 29, a length of at least 5 (a MAC of at least one byte) and that the
    /// length fits the buffer.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::WrongOptionKind`], [`Error::BadOptionLength`].
    pub fn check_len(&self) -> Result<()> {
        let d = self.buffer.as_ref();
        need("TCP-AO option", 2, d.len())?;
        if d[field::KIND] != TCPOPT_AO {
            return Err(Error::WrongOptionKind {
                expected: TCPOPT_AO,
                found: d[field::KIND],
            });
        }
        let len = d[field::LENGTH];
        if usize::from(len) <= HEADER_LEN {
            return Err(Error::BadOptionLength {
                kind: TCPOPT_AO,
                len,
            });
        }
        need("TCP-AO option", usize::from(len), d.len())
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Return the length field (whole option, MAC included).
    pub fn length(&self) -> u8 {
        self.buffer.as_ref()[field::LENGTH]
    }

    /// Return the KeyID field (the sender's SendID).
    pub fn key_id(&self) -> u8 {
        self.buffer.as_ref()[field::KEY_ID]
    }

    /// Return the RNextKeyID field (the RecvID the sender wants used next).
    pub fn rnext_key_id(&self) -> u8 {
        self.buffer.as_ref()[field::RNEXT_KEY_ID]
    }

    /// Return the MAC.
    pub fn mac(&self) -> &[u8] {
        &self.buffer.as_ref()[field::mac(self.length())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AoOption<T> {
    /// Set kind 29 and the length field.
    pub fn set_kind_and_length(&mut self, len: u8) {
        let d = self.buffer.as_mut();
        d[field::KIND] = TCPOPT_AO;
        d[field::LENGTH] = len;
    }

    /// Set the KeyID field.
    pub fn set_key_id(&mut self, v: u8) {
        self.buffer.as_mut()[field::KEY_ID] = v;
    }

    /// Set the RNextKeyID field.
    pub fn set_rnext_key_id(&mut self, v: u8) {
        self.buffer.as_mut()[field::RNEXT_KEY_ID] = v;
    }

    /// Return the MAC, mutably.
    pub fn mac_mut(&mut self) -> &mut [u8] {
        let len = self.length();
        &mut self.buffer.as_mut()[field::mac(len)]
    }
}

/// A parsed TCP-AO option borrowing its MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AoOptionRepr<'a> {
    /// KeyID: SendID of the MKT used by the sender.
    pub key_id: u8,
    /// RNextKeyID: RecvID the sender would like to receive with next.
    pub rnext_key_id: u8,
    /// The MAC bytes (1 to 251).
    pub mac: &'a [u8],
}

impl<'a> AoOptionRepr<'a> {
    /// Parse a checked option.
    ///
    /// # Errors
    /// [`AoOption::check_len`] errors.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(opt: &AoOption<&'a T>) -> Result<Self> {
        opt.check_len()?;
        let buf: &'a T = opt.buffer;
        let d: &'a [u8] = buf.as_ref();
        Ok(AoOptionRepr {
            key_id: d[field::KEY_ID],
            rnext_key_id: d[field::RNEXT_KEY_ID],
            mac: &d[field::mac(d[field::LENGTH])],
        })
    }

    /// Encoded length: 4 + MAC length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.mac.len()
    }

    /// Emit into a buffer of at least [`Self::buffer_len`] bytes.
    ///
    /// # Panics
    /// If the buffer is shorter than [`Self::buffer_len`] or the MAC is longer than 251
    /// bytes (the smoltcp emit contract: size the buffer with `buffer_len`).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, opt: &mut AoOption<T>) {
        let len = u8::try_from(self.buffer_len()).expect("TCP-AO option longer than 255 bytes");
        opt.set_kind_and_length(len);
        opt.set_key_id(self.key_id);
        opt.set_rnext_key_id(self.rnext_key_id);
        opt.mac_mut().copy_from_slice(self.mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static AO_OPTION_BYTES: [u8; 16] = [
        0x1d, 0x10, 0x3d, 0x54, // kind 29, length 16, KeyID 61, RNextKeyID 84
        0x2e, 0xe4, 0x37, 0xc6, 0xf8, 0xed, 0xe6, 0xd7, 0xc4, 0xd6, 0x02, 0xe7, // MAC
    ];

    #[test]
    fn ao_option_roundtrip() {
        let opt = AoOption::new_checked(&AO_OPTION_BYTES[..]).unwrap();
        let repr = AoOptionRepr::parse(&opt).unwrap();
        assert_eq!(
            repr,
            AoOptionRepr {
                key_id: 61,
                rnext_key_id: 84,
                mac: &AO_OPTION_BYTES[4..]
            }
        );
        let mut buf = [0xa5; 16];
        repr.emit(&mut AoOption::new_unchecked(&mut buf[..]));
        assert_eq!(buf, AO_OPTION_BYTES);
    }

    #[test]
    fn ao_option_malformed_is_error() {
        assert!(matches!(
            AoOption::new_checked(&AO_OPTION_BYTES[..15]),
            Err(Error::Truncated { .. })
        ));
        assert_eq!(
            AoOption::new_checked(&[29u8, 4, 1, 1][..]),
            Err(Error::BadOptionLength { kind: 29, len: 4 })
        );
        assert_eq!(
            AoOption::new_checked(&[19u8, 18][..]),
            Err(Error::WrongOptionKind {
                expected: 29,
                found: 19
            })
        );
    }
}

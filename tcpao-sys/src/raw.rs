// SPDX-License-Identifier: MIT OR Apache-2.0
//! Memory-safe byte-level socket options, for tests that need to send exactly the bytes (and
//! lengths, and NULL pointers) of a C program: short structs, oversized structs, NULL
//! `optval`, NULL or negative `optlen`.
//!
//! Every call is memory-safe whatever the arguments: the kernel is never given a pointer/length
//! pair that reaches outside a buffer borrowed for the call.
//!
//! * `optlen` larger than the buffer is refused before the syscall (`InvalidInput`).
//! * A negative `optlen` or a NULL `optlen` is passed with a NULL `optval`.
//! * `getsockopt(TCP_AO_GET_KEYS)` writes `nkeys` records at a stride of `optlen` bytes (more
//!   than `optlen` in total), so for that option the buffer must hold every record it asks for
//!   (checked against the `nkeys` field in the buffer).
//!
//! Errors are plain [`io::Error`]s so the exact errno is visible.

use crate::sys;
use std::io;
use std::mem::size_of;
use std::os::fd::AsFd;

/// The `optlen` passed to [`getsockopt_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptLen {
    /// The buffer's length (0 when no buffer).
    Buffer,
    /// This value. Non-negative values must not exceed the buffer length; negative values are
    /// passed with a NULL `optval`.
    Value(i32),
    /// A NULL `optlen` pointer (with a NULL `optval`): the kernel answers `EFAULT`.
    Null,
}

/// `setsockopt(fd, level, name, optval, optlen)` with raw bytes.
///
/// * `optval = Some(buf)`: `optlen` defaults to `buf.len()`; an explicit `optlen` must not
///   exceed it (shorter values test the kernel's minimum-size checks).
/// * `optval = None`: a NULL pointer with `optlen` (default 0), e.g. for `EFAULT` tests.
///
/// # Errors
/// The OS error, or `InvalidInput` if `optlen` exceeds the buffer.
pub fn setsockopt_bytes<F: AsFd + ?Sized>(
    fd: &F,
    level: i32,
    name: i32,
    optval: Option<&[u8]>,
    optlen: Option<u32>,
) -> io::Result<()> {
    let len = optlen.unwrap_or_else(|| optval.map_or(0, |b| b.len() as u32));
    sys::setsockopt_raw(fd.as_fd(), level, name, optval, len)
}

/// `getsockopt(fd, level, name, buf, &optlen)` with raw bytes; returns the `optlen` the kernel
/// wrote back (`None` when `optlen` was [`OptLen::Null`]).
///
/// # Errors
/// The OS error, or `InvalidInput` when the arguments would let the kernel write outside
/// `buf` (see the module docs).
pub fn getsockopt_bytes<F: AsFd + ?Sized>(
    fd: &F,
    level: i32,
    name: i32,
    buf: Option<&mut [u8]>,
    optlen: OptLen,
) -> io::Result<Option<i32>> {
    let cap = buf.as_ref().map_or(0, |b| b.len());
    let len = match optlen {
        OptLen::Buffer => sys::RawOptLen::Value(
            i32::try_from(cap)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer too large"))?,
        ),
        OptLen::Value(n) => sys::RawOptLen::Value(n),
        OptLen::Null => sys::RawOptLen::Null,
    };
    sys::getsockopt_raw(fd.as_fd(), level, name, buf, len)
}

/// Set an `int`-valued socket option (e.g. `SO_RCVBUFFORCE`, `PACKET_IGNORE_OUTGOING`).
///
/// # Errors
/// The OS error.
pub fn set_int_option<F: AsFd + ?Sized>(
    fd: &F,
    level: i32,
    name: i32,
    value: i32,
) -> io::Result<()> {
    sys::setsockopt(fd.as_fd(), level, name, &value)
}

/// Read an `int`-valued socket option.
///
/// # Errors
/// The OS error, or `InvalidData` if the kernel returned fewer than 4 bytes.
pub fn int_option<F: AsFd + ?Sized>(fd: &F, level: i32, name: i32) -> io::Result<i32> {
    let mut v: i32 = 0;
    let n = sys::getsockopt(fd.as_fd(), level, name, &mut v)?;
    if n < size_of::<i32>() {
        // Some options return a single byte; read it as such.
        if n == 1 {
            return Ok(i32::from(v.to_ne_bytes()[0]));
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("option returned {n} bytes"),
        ));
    }
    Ok(v)
}

/// Disconnect a TCP socket: `connect()` with an `AF_UNSPEC` address (the kernel's
/// `tcp_disconnect()`: an RST to the peer if the connection was up, then `CLOSE`). The socket
/// keeps its TCP-AO keys and may `connect()` again, to another peer.
///
/// # Errors
/// The OS error.
pub fn disconnect<F: AsFd + ?Sized>(fd: &F) -> io::Result<()> {
    sys::connect_unspec(fd.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uapi;
    use std::net::TcpListener;

    #[test]
    fn int_option_round_trips() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        set_int_option(&l, libc::SOL_SOCKET, libc::SO_RCVBUF, 65536).unwrap();
        // Linux doubles the value for bookkeeping.
        assert_eq!(
            int_option(&l, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap(),
            131072
        );
    }

    #[test]
    fn raw_lengths_are_policed() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut b = [0u8; 4];
        // optlen larger than the buffer is refused before the kernel sees it.
        let e =
            setsockopt_bytes(&l, libc::SOL_SOCKET, libc::SO_RCVBUF, Some(&b), Some(8)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = getsockopt_bytes(
            &l,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            Some(&mut b),
            OptLen::Value(5),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // NULL optval with a length: EFAULT from the kernel.
        let e = setsockopt_bytes(&l, libc::SOL_SOCKET, libc::SO_RCVBUF, None, Some(4)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
        // NULL optlen: EFAULT.
        let e = getsockopt_bytes(
            &l,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            Some(&mut b),
            OptLen::Null,
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
        // Negative optlen: EINVAL (optval NULL, never written).
        let e = getsockopt_bytes(
            &l,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            Some(&mut b),
            OptLen::Value(-1),
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        // A real read through the byte API.
        let n = getsockopt_bytes(
            &l,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            Some(&mut b),
            OptLen::Buffer,
        )
        .unwrap();
        assert_eq!(n, Some(4));
        assert_eq!(
            i32::from_ne_bytes(b),
            int_option(&l, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap()
        );
    }

    #[test]
    fn get_keys_buffer_must_hold_every_record() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut b = vec![0u8; 304];
        b[272..276].copy_from_slice(&4u32.to_ne_bytes()); // nkeys = 4 but room for one
        let e = getsockopt_bytes(
            &l,
            uapi::SOL_TCP,
            uapi::TCP_AO_GET_KEYS,
            Some(&mut b),
            OptLen::Value(304),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let mut small = vec![0u8; 100];
        let e = getsockopt_bytes(
            &l,
            uapi::SOL_TCP,
            uapi::TCP_AO_GET_KEYS,
            Some(&mut small),
            OptLen::Buffer,
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}

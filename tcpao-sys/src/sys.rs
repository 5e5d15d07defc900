// SPDX-License-Identifier: MIT OR Apache-2.0
//! The only module of `tcpao-sys` that contains `unsafe` code: thin wrappers around
//! `setsockopt(2)`, `getsockopt(2)` and `socket(2)`.
//!
//! Memory safety rests on two facts: (1) every typed option argument implements the
//! `unsafe` marker trait [`Pod`], so any byte pattern the kernel writes into it is a valid
//! value; (2) the kernel never reads or writes more than `optlen` bytes at `optval`, and the
//! pointer/length pairs passed here always describe memory we own for the duration of the
//! call (or are NULL).
#![allow(unsafe_code)]

use crate::uapi;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

/// Types that are plain old data: no padding the kernel could not fill, no invalid bit
/// patterns, no pointers. Any bytes written by the kernel form a valid value.
///
/// # Safety
///
/// Implement only for `#[repr(C)]` integer-only structs/arrays for which every bit pattern is
/// a valid value.
pub(crate) unsafe trait Pod: Sized {}

// SAFETY: integers accept every bit pattern.
unsafe impl Pod for i32 {}
// SAFETY: integers accept every bit pattern.
unsafe impl Pod for u32 {}
// SAFETY: integer-only repr(C) struct (see uapi.rs); every bit pattern valid.
unsafe impl Pod for uapi::tcp_ao_add {}
// SAFETY: integer-only repr(C) struct; every bit pattern valid.
unsafe impl Pod for uapi::tcp_ao_del {}
// SAFETY: integer-only repr(C) struct; every bit pattern valid.
unsafe impl Pod for uapi::tcp_ao_info_opt {}
// SAFETY: integer-only repr(C) struct; every bit pattern valid.
unsafe impl Pod for uapi::tcp_ao_getsockopt {}
// SAFETY: integer-only repr(C) struct; every bit pattern valid.
unsafe impl Pod for uapi::tcp_ao_repair {}
// SAFETY: integer-only repr(C) struct; every bit pattern valid.
unsafe impl Pod for uapi::tcp_md5sig {}
// SAFETY: integer-only repr(C) struct; every bit pattern valid.
unsafe impl Pod for uapi::tcp_repair_opt {}
// SAFETY: integer-only repr(C) struct; every bit pattern valid.
unsafe impl Pod for uapi::tcp_repair_window {}
// SAFETY: an array of `u8` accepts every bit pattern.
unsafe impl<const N: usize> Pod for [u8; N] {}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn socklen(len: usize) -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "option length exceeds socklen_t",
        )
    })
}

/// `setsockopt(fd, level, name, vals, size_of_val(vals))` for a slice of plain-old-data values.
pub(crate) fn setsockopt_slice<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    vals: &[T],
) -> io::Result<()> {
    let len = socklen(size_of_val(vals))?;
    // SAFETY: `vals` is a live shared borrow of exactly `len` bytes for the whole call; the
    // kernel only reads from `optval`. `fd` is a borrowed, open descriptor.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, vals.as_ptr().cast(), len) };
    cvt(rc).map(drop)
}

/// `setsockopt(fd, level, name, &val, sizeof(val))`.
pub(crate) fn setsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
) -> io::Result<()> {
    setsockopt_slice(fd, level, name, std::slice::from_ref(val))
}

/// `getsockopt(fd, level, name, vals, &len)` with `len = size_of_val(vals)`; returns the
/// `optlen` the kernel wrote back (in bytes).
pub(crate) fn getsockopt_slice<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    vals: &mut [T],
) -> io::Result<usize> {
    if level == uapi::SOL_TCP && name == uapi::TCP_AO_GET_KEYS {
        // Writes past optlen (see `getsockopt_ao_keys`); never through the generic path.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "use getsockopt_ao_keys",
        ));
    }
    let mut len = socklen(size_of_val(vals))?;
    // SAFETY: `vals` is an exclusive borrow of exactly `len` bytes; the kernel writes at most
    // `len` bytes there and `T: Pod` makes any written bytes a valid `T`. `len` is a live
    // local. `fd` is a borrowed, open descriptor.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            vals.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    cvt(rc)?;
    Ok(len as usize)
}

/// `getsockopt(fd, level, name, val, &len)` with `len = sizeof(*val)`; returns the written-back
/// length.
pub(crate) fn getsockopt<T: Pod>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    val: &mut T,
) -> io::Result<usize> {
    getsockopt_slice(fd, level, name, std::slice::from_mut(val))
}

/// Byte-level `setsockopt`. `optval = None` passes a NULL pointer with `optlen` (the kernel
/// faults on it: `EFAULT`). With `Some(buf)`, `optlen` must not exceed `buf.len()`.
pub(crate) fn setsockopt_raw(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    optval: Option<&[u8]>,
    optlen: libc::socklen_t,
) -> io::Result<()> {
    let ptr = match optval {
        Some(buf) => {
            if optlen as usize > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "optlen is larger than the optval buffer",
                ));
            }
            buf.as_ptr().cast()
        }
        None => ptr::null(),
    };
    // SAFETY: `ptr` is either NULL (the kernel cannot read it and returns EFAULT) or points to
    // a live borrowed buffer of at least `optlen` bytes; the kernel only reads `optval`.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, ptr, optlen) };
    cvt(rc).map(drop)
}

/// How the `optlen` argument of a raw `getsockopt` is formed.
pub(crate) enum RawOptLen {
    /// Point at an `int` holding this non-negative value (≤ buffer length) or a negative one
    /// (then `optval` is passed as NULL so the kernel can never write anywhere).
    Value(i32),
    /// Pass a NULL `optlen` pointer (and a NULL `optval`).
    Null,
}

/// Byte-level `getsockopt`; returns the `optlen` the kernel wrote back (None for a NULL
/// `optlen`).
pub(crate) fn getsockopt_raw(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    buf: Option<&mut [u8]>,
    optlen: RawOptLen,
) -> io::Result<Option<i32>> {
    let cap = buf.as_ref().map_or(0, |b| b.len());
    if let (RawOptLen::Value(n), Some(b)) = (&optlen, buf.as_deref()) {
        if *n >= 0 && level == uapi::SOL_TCP && name == uapi::TCP_AO_GET_KEYS {
            check_get_keys_buffer(b, *n as usize)?;
        }
    }
    let optval: *mut libc::c_void = match (&optlen, buf) {
        (RawOptLen::Value(n), Some(b)) if *n >= 0 => {
            if *n as usize > cap {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "optlen is larger than the optval buffer",
                ));
            }
            b.as_mut_ptr().cast()
        }
        _ => ptr::null_mut(),
    };
    match optlen {
        RawOptLen::Value(n) => {
            let mut len: libc::socklen_t = n as libc::socklen_t;
            // SAFETY: `optval` is NULL or an exclusive borrow of at least `n` bytes (checked
            // above; negative `n` always gets NULL), so the kernel can write at most `n` bytes
            // into memory we own. `len` is a live local.
            let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, optval, &raw mut len) };
            cvt(rc)?;
            Ok(Some(len as i32))
        }
        RawOptLen::Null => {
            // SAFETY: both pointers are NULL; the kernel cannot write anywhere (EFAULT).
            let rc = unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    level,
                    name,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
            cvt(rc)?;
            Ok(None)
        }
    }
}

/// `getsockopt(TCP_AO_GET_KEYS)` writes `min(nkeys, matches)` records of `min(optlen, 304)`
/// bytes at a stride of `optlen`, plus `nkeys` at offset 272 of the first record: more than
/// `optlen` bytes in total. Refuse buffers that cannot hold all of that.
fn check_get_keys_buffer(buf: &[u8], optlen: usize) -> io::Result<()> {
    let rec = size_of::<uapi::tcp_ao_getsockopt>();
    let off = std::mem::offset_of!(uapi::tcp_ao_getsockopt, nkeys);
    let nkeys = if optlen >= off + 4 && buf.len() >= off + 4 {
        u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize
    } else {
        0
    };
    let need = rec.max(nkeys.saturating_mul(optlen.max(rec)));
    if buf.len() < need {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "TCP_AO_GET_KEYS with nkeys={nkeys} and optlen={optlen} may write {need} bytes \
                 into a {}-byte buffer",
                buf.len()
            ),
        ));
    }
    Ok(())
}

/// `getsockopt(TCP_AO_GET_KEYS)` into `keys`: `keys[0]` carries the filter (set by the caller);
/// this function sets `keys[0].nkeys` to the capacity and `optlen` to one record, as the kernel
/// expects. Returns the total number of matching keys the kernel reported (may exceed
/// `keys.len()`; only `min` of both are filled in).
pub(crate) fn getsockopt_ao_keys(
    fd: BorrowedFd<'_>,
    keys: &mut [uapi::tcp_ao_getsockopt],
) -> io::Result<u32> {
    if keys.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty TCP_AO_GET_KEYS buffer",
        ));
    }
    let cap = u32::try_from(keys.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many keys"))?;
    keys[0].nkeys = cap;
    let mut len = socklen(size_of::<uapi::tcp_ao_getsockopt>())?;
    // SAFETY: the kernel writes at most `nkeys` (= `keys.len()`) records of `len` bytes at a
    // stride of `len` (= one element), plus `nkeys` inside the first record: all inside the
    // exclusively borrowed `keys`. `tcp_ao_getsockopt: Pod`. `len` is a live local.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            uapi::SOL_TCP,
            uapi::TCP_AO_GET_KEYS,
            keys.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    cvt(rc)?;
    Ok(keys[0].nkeys)
}

/// A new, unbound, unconnected `SOCK_STREAM` socket (close-on-exec) of `domain`.
pub(crate) fn tcp_socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2), is open, and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The address family of a socket (`getsockname`'s `sa_family`).
pub(crate) fn socket_family(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut ss = uapi::__kernel_sockaddr_storage::default();
    let mut len = socklen(size_of::<uapi::__kernel_sockaddr_storage>())?;
    // SAFETY: `ss` is a live 128-byte integer-only buffer of size `len` (the size of
    // `sockaddr_storage`); the kernel writes at most `len` bytes. `len` is a live local.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&raw mut ss).cast::<libc::sockaddr>(),
            &raw mut len,
        )
    };
    cvt(rc)?;
    Ok(libc::c_int::from(ss.ss_family))
}

/// `connect(fd, {AF_UNSPEC}, sizeof(sa_family_t))`: the disconnect form of connect(2).
pub(crate) fn connect_unspec(fd: BorrowedFd<'_>) -> io::Result<()> {
    let ss = uapi::__kernel_sockaddr_storage::default();
    let len = socklen(size_of::<libc::sa_family_t>())?;
    // SAFETY: `ss` is a live, zeroed (AF_UNSPEC) integer-only buffer larger than `len` bytes;
    // the kernel only reads `len` bytes from it.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&raw const ss).cast::<libc::sockaddr>(),
            len,
        )
    };
    cvt(rc).map(drop)
}

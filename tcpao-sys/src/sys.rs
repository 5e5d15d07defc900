// SPDX-License-Identifier: MIT OR Apache-2.0
//! The only module of `tcpao-sys` that contains `unsafe` code: thin wrappers around
//! `setsockopt(2)`, `getsockopt(2)` and `socket(2)`, plus the KCOV (`ioctl`, `mmap`) and TUN
//! (`ioctl`) calls behind `crate::kcov` and `crate::tun`.
//!
//! Memory safety rests on two facts: (1) every typed option argument implements the
//! `unsafe` marker trait [`Pod`], so any byte pattern the kernel writes into it is a valid
//! value and every byte of it is initialized; (2) the kernel never reads or writes more than
//! `optlen` bytes at `optval`, and the pointer/length pairs passed here always describe
//! memory we own for the duration of the call (or are NULL).
//!
//! The first fact also makes the `uapi` structs readable and writable as bytes, safely:
//! `as_bytes()` and `as_bytes_mut()` (defined here), for tests that send the kernel exactly
//! the bytes a C program would, with one field broken.
#![allow(unsafe_code)]

use crate::uapi;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

/// Types that are plain old data: no padding bytes, no invalid bit patterns, no pointers.
/// Any bytes written by the kernel form a valid value, and every byte of a value is
/// initialized.
///
/// # Safety
///
/// Implement only for `#[repr(C)]` integer-only structs/arrays for which every bit pattern is
/// a valid value and whose fields cover every byte (the `uapi` layout assertions check the
/// offsets and sizes of each struct).
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
// SAFETY: `struct tpacket_stats` is two `u32`s; every bit pattern valid.
unsafe impl Pod for libc::tpacket_stats {}

/// The bytes of a plain-old-data value.
fn bytes_of<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: `T: Pod` has no padding, so all `size_of::<T>()` bytes at `v` are initialized;
    // the slice borrows `v` immutably for its lifetime.
    unsafe { std::slice::from_raw_parts(ptr::from_ref(v).cast::<u8>(), size_of::<T>()) }
}

/// The bytes of a plain-old-data value, writable.
fn bytes_of_mut<T: Pod>(v: &mut T) -> &mut [u8] {
    // SAFETY: as in `bytes_of`; the slice borrows `v` exclusively, and whatever bytes are
    // written through it form a valid `T` (`T: Pod` accepts every bit pattern).
    unsafe { std::slice::from_raw_parts_mut(ptr::from_mut(v).cast::<u8>(), size_of::<T>()) }
}

/// `as_bytes()`/`as_bytes_mut()` for the `uapi` structs.
macro_rules! uapi_bytes {
    ($($t:ident),* $(,)?) => {$(
        impl uapi::$t {
            #[doc = concat!("The `struct ", stringify!($t), "` as the kernel reads it, byte for byte.")]
            pub fn as_bytes(&self) -> &[u8] {
                bytes_of(self)
            }

            #[doc = concat!("The `struct ", stringify!($t), "` as bytes to overwrite (any bytes are a valid value).")]
            pub fn as_bytes_mut(&mut self) -> &mut [u8] {
                bytes_of_mut(self)
            }
        }
    )*};
}

uapi_bytes!(
    tcp_ao_add,
    tcp_ao_del,
    tcp_ao_info_opt,
    tcp_ao_getsockopt,
    tcp_ao_repair,
    tcp_md5sig,
    tcp_repair_opt,
    tcp_repair_window,
);

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

/// A new `AF_PACKET` socket of `kind` (`SOCK_RAW` or `SOCK_DGRAM`, close-on-exec) for every
/// protocol (`ETH_P_ALL`).
pub(crate) fn packet_socket(kind: libc::c_int) -> io::Result<OwnedFd> {
    let protocol = libc::c_int::from((libc::ETH_P_ALL as u16).to_be());
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, kind | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: `fd` was just returned by socket(2), is open, and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Wait at most `timeout_ms` (0: do not wait) until `fd` is readable; EINTR counts as not
/// readable yet.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: libc::c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one live `pollfd` and the count is 1; `fd` is a borrowed, open
    // descriptor.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, timeout_ms) };
    match cvt(rc) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// `recvfrom(fd, buf, MSG_DONTWAIT | MSG_TRUNC)` on a packet socket: the packet's full length
/// (which may exceed `buf`) and its link-layer address, or `None` when nothing is queued.
pub(crate) fn recv_packet(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<Option<(usize, libc::sockaddr_ll)>> {
    // SAFETY: `sockaddr_ll` is integers and a byte array: all-zero bytes are a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = socklen(size_of::<libc::sockaddr_ll>())?;
    // SAFETY: `buf` is an exclusive borrow of `buf.len()` bytes and the kernel writes at most
    // that many (MSG_TRUNC only changes the returned length); `addr` is a live
    // `sockaddr_ll` of `len` bytes and the kernel writes at most `len` there. `fd` is a
    // borrowed, open descriptor.
    let rc = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            (&raw mut addr).cast::<libc::sockaddr>(),
            &raw mut len,
        )
    };
    if rc == -1 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some((rc as usize, addr)))
}

// ---------------------------------------------------------------------------------------
// KCOV (test support for the fuzzer: `crate::kcov`).
// ---------------------------------------------------------------------------------------

/// `KCOV_INIT_TRACE` = `_IOR('c', 1, unsigned long)`.
const KCOV_INIT_TRACE: libc::c_ulong = 0x8008_6301;
/// `KCOV_ENABLE` = `_IO('c', 100)`.
const KCOV_ENABLE: libc::c_ulong = 0x6364;
/// `KCOV_DISABLE` = `_IO('c', 101)`.
const KCOV_DISABLE: libc::c_ulong = 0x6365;

/// A KCOV descriptor with its trace buffer mapped: `words` 64-bit words shared with the
/// kernel, word 0 the count of records, then the records.
pub(crate) struct KcovMap {
    fd: OwnedFd,
    area: ptr::NonNull<std::sync::atomic::AtomicU64>,
    words: usize,
}

impl KcovMap {
    /// Opens `path` (`/sys/kernel/debug/kcov`), sets the buffer size and maps it.
    pub(crate) fn open(path: &std::path::Path, words: usize) -> io::Result<KcovMap> {
        use std::os::unix::ffi::OsStrExt;
        if words < 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a KCOV buffer needs at least 2 words",
            ));
        }
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        let raw = cvt(unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        // SAFETY: `raw` was just returned by open(2), is open, and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: KCOV_INIT_TRACE takes an integer argument (the size in words), no pointer.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), KCOV_INIT_TRACE, words as libc::c_ulong) })?;
        let bytes = words.checked_mul(8).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "KCOV buffer size overflows")
        })?;
        // SAFETY: a fresh shared mapping of the KCOV descriptor, of exactly the size set with
        // KCOV_INIT_TRACE; the kernel owns no Rust memory here.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let area = ptr::NonNull::new(p.cast::<std::sync::atomic::AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(KcovMap { fd, area, words })
    }

    /// The mapped words. The kernel writes them while tracing is enabled on this thread, so
    /// they are read as atomics.
    pub(crate) fn words(&self) -> &[std::sync::atomic::AtomicU64] {
        // SAFETY: `area` is a live MAP_SHARED mapping of `words` 8-byte-aligned words (mmap
        // returns page-aligned memory) that stays mapped until `drop`; `AtomicU64` has the
        // size and alignment of `u64`, and every bit pattern is a valid `AtomicU64`.
        // Concurrent writes by the kernel are what atomics are for.
        unsafe { std::slice::from_raw_parts(self.area.as_ptr(), self.words) }
    }

    /// `KCOV_ENABLE` in `mode` (0: PCs, 1: comparisons) for the calling thread.
    pub(crate) fn enable(&self, mode: libc::c_ulong) -> io::Result<()> {
        // SAFETY: KCOV_ENABLE takes an integer argument (the mode), no pointer.
        cvt(unsafe { libc::ioctl(self.fd.as_raw_fd(), KCOV_ENABLE, mode) }).map(drop)
    }

    /// `KCOV_DISABLE` (for the thread that enabled it).
    pub(crate) fn disable(&self) -> io::Result<()> {
        // SAFETY: KCOV_DISABLE takes an (ignored) integer argument, no pointer.
        cvt(unsafe { libc::ioctl(self.fd.as_raw_fd(), KCOV_DISABLE, 0 as libc::c_ulong) }).map(drop)
    }
}

impl Drop for KcovMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`; no reference into it outlives
        // `self` (`words()` borrows `self`).
        unsafe {
            libc::munmap(self.area.as_ptr().cast(), self.words * 8);
        }
    }
}

// ---------------------------------------------------------------------------------------
// TUN (test support for the fuzzer: `crate::tun`).
// ---------------------------------------------------------------------------------------

/// `TUNSETIFF` = `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// `struct ifreq` as TUNSETIFF reads it: the name, then `ifr_flags` (a short) in the union.
#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    pad: [u8; 22],
}

/// Opens `/dev/net/tun` and attaches it to interface `name` with `flags`; returns the
/// descriptor and the interface name the kernel chose.
pub(crate) fn tun_open(name: &str, flags: libc::c_short) -> io::Result<(OwnedFd, String)> {
    if name.len() >= 16 || name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface names are at most 15 bytes, without NUL",
        ));
    }
    // SAFETY: a valid NUL-terminated literal.
    let raw = cvt(unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `raw` was just returned by open(2), is open, and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfreqFlags {
        name: [0; 16],
        flags,
        pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes on LP64); `req` is a live,
    // exclusively borrowed 40-byte repr(C) struct for the whole call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &raw mut req) })?;
    let end = req.name.iter().position(|&b| b == 0).unwrap_or(16);
    Ok((fd, String::from_utf8_lossy(&req.name[..end]).into_owned()))
}

const _: () = assert!(size_of::<IfreqFlags>() == 40);

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

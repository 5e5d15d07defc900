// SPDX-License-Identifier: MIT OR Apache-2.0
//! Socket helpers for peer functions: listen/accept/connect with deadlines that also end when
//! the other peer fails, the echo loop (kernel `test_server_run`/`test_client_verify`), and the
//! TCP-AO counter reads used by [`crate::counters`].
//!
//! Sockets are non-blocking and bound to `ktst-veth` (`SO_BINDTODEVICE`) like the kernel
//! library's; every wait is a `poll(2)` in short slices that checks the shared failure flag.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::counters::{KeyCounters, SockCounters};
use crate::failure;
use crate::peers::{Failure, OrFail, Peer, PeerResult};
use crate::topology::{Family, VETH_NAME};

const SLICE: Duration = Duration::from_millis(10);

/// A new non-blocking TCP socket of `family` (not bound).
///
/// # Errors
/// When the socket cannot be created.
pub fn tcp_socket(family: Family) -> PeerResult<Socket> {
    let domain = match family {
        Family::Ipv4 => Domain::IPV4,
        Family::Ipv6 => Domain::IPV6,
    };
    let sk = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).or_fail("socket(SOCK_STREAM) failed")?;
    sk.set_nonblocking(true).or_fail("O_NONBLOCK failed")?;
    Ok(sk)
}

/// A TCP socket of the peer's family, bound to `ktst-veth` (kernel `test_*_socket`), unbound
/// address: add keys, then [`connect`] it.
///
/// # Errors
/// When the socket cannot be created or bound to the device.
pub fn client_socket(peer: &Peer<'_>) -> PeerResult<Socket> {
    let sk = tcp_socket(peer.family())?;
    sk.bind_device(Some(VETH_NAME.as_bytes())).or_fail("SO_BINDTODEVICE failed")?;
    Ok(sk)
}

/// A listening socket on the peer's address and `port` with `backlog` (kernel
/// `test_listen_socket`). Keys may be added to it before or after.
///
/// # Errors
/// When bind or listen fails.
pub fn listen(peer: &Peer<'_>, port: u16, backlog: i32) -> PeerResult<Socket> {
    listen_on(peer, peer.local_addr(), port, backlog)
}

/// Like [`listen`], on a chosen local address (e.g. the any-address).
///
/// # Errors
/// When bind or listen fails.
pub fn listen_on(peer: &Peer<'_>, addr: IpAddr, port: u16, backlog: i32) -> PeerResult<Socket> {
    let sk = tcp_socket(peer.family())?;
    sk.set_reuse_address(true).or_fail("SO_REUSEADDR failed")?;
    sk.bind_device(Some(VETH_NAME.as_bytes())).or_fail("SO_BINDTODEVICE failed")?;
    sk.bind(&SockAddr::from(SocketAddr::new(addr, port)))
        .or_fail(&format!("bind({addr}:{port}) failed"))?;
    sk.listen(backlog).or_fail("listen() failed")?;
    Ok(sk)
}

/// Wait for `events` on `fd` until `deadline`, in short slices; returns `Ok(false)` at the
/// deadline or when `stop()` becomes true, [`Failure::PeerFailed`] when the other peer fails.
///
/// # Errors
/// [`Failure::PeerFailed`], or a failed `poll(2)`.
pub fn wait_fd(
    peer: &Peer<'_>,
    fd: &impl AsFd,
    events: PollFlags,
    deadline: Instant,
    mut stop: impl FnMut() -> bool,
) -> PeerResult<bool> {
    loop {
        if peer.peer_failed() {
            return Err(Failure::PeerFailed);
        }
        if stop() {
            return Ok(false);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        let slice = SLICE.min(deadline - now);
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        let ms = u16::try_from(slice.as_millis().max(1)).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => return Ok(true),
            Err(e) => return Err(failure!("poll() failed: {e}")),
        }
    }
}

/// Accept one connection on `lsk` before `deadline`; `Ok(None)` when none came (or `stop()`).
///
/// # Errors
/// [`Failure::PeerFailed`], or a failed accept.
pub fn accept(
    peer: &Peer<'_>,
    lsk: &Socket,
    deadline: Instant,
    mut stop: impl FnMut() -> bool,
) -> PeerResult<Option<Socket>> {
    loop {
        match lsk.accept() {
            Ok((sk, _)) => {
                sk.set_nonblocking(true).or_fail("O_NONBLOCK failed")?;
                return Ok(Some(sk));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(failure!("accept() failed: {e}")),
        }
        if !wait_fd(peer, lsk, PollFlags::POLLIN, deadline, &mut stop)? {
            return Ok(None);
        }
    }
}

/// How a [`connect`] ended.
#[derive(Debug)]
pub enum Connect {
    /// The handshake completed.
    Established,
    /// `connect()` failed at once or the handshake failed (refused, reset, rejected key, ...).
    Failed(io::Error),
    /// Nothing happened before the deadline, or `stop()` said the expected event happened.
    TimedOut,
}

/// Connect `sk` to `addr:port`, waiting until `deadline` (kernel `test_skpair_connect_poll`):
/// returns early when `stop()` becomes true and when the other peer fails.
///
/// # Errors
/// [`Failure::PeerFailed`] or a failed `poll(2)`; connect errors are [`Connect::Failed`].
pub fn connect(
    peer: &Peer<'_>,
    sk: &Socket,
    addr: IpAddr,
    port: u16,
    deadline: Instant,
    stop: impl FnMut() -> bool,
) -> PeerResult<Connect> {
    match sk.connect(&SockAddr::from(SocketAddr::new(addr, port))) {
        Ok(()) => return Ok(Connect::Established),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
        Err(e) => return Ok(Connect::Failed(e)),
    }
    if !wait_fd(peer, sk, PollFlags::POLLOUT, deadline, stop)? {
        return Ok(Connect::TimedOut);
    }
    match sk.take_error() {
        Ok(None) => Ok(Connect::Established),
        Ok(Some(e)) | Err(e) => Ok(Connect::Failed(e)),
    }
}

/// Connect and require success within [`crate::peers::TEST_TIMEOUT`].
///
/// # Errors
/// A failure sentence when the connection was not established.
pub fn connect_ok(peer: &Peer<'_>, sk: &Socket, addr: IpAddr, port: u16) -> PeerResult {
    match connect(peer, sk, addr, port, peer.deadline_in(crate::peers::TEST_TIMEOUT), || false)? {
        Connect::Established => Ok(()),
        Connect::Failed(e) => Err(failure!("connect() to {addr} port {port} failed: {e}")),
        Connect::TimedOut => Err(failure!("connect() to {addr} port {port} timed out")),
    }
}

fn write_all(peer: &Peer<'_>, mut sk: &Socket, mut buf: &[u8], deadline: Instant) -> PeerResult {
    while !buf.is_empty() {
        match sk.write(buf) {
            Ok(0) => return Err(failure!("write() returned 0")),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !wait_fd(peer, sk, PollFlags::POLLOUT, deadline, || false)? {
                    return Err(failure!("write() timed out with {} bytes left", buf.len()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failure!("write() failed: {e}")),
        }
    }
    Ok(())
}

/// Read up to `buf.len()` bytes; `Ok(0)` at EOF.
fn read_some(peer: &Peer<'_>, mut sk: &Socket, buf: &mut [u8], deadline: Instant) -> PeerResult<usize> {
    loop {
        match sk.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !wait_fd(peer, sk, PollFlags::POLLIN, deadline, || false)? {
                    return Err(failure!("read() timed out"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failure!("read() failed: {e}")),
        }
    }
}

/// Echo everything received on `sk` back until the peer closes (kernel `test_server_run`).
/// Returns the number of bytes served.
///
/// # Errors
/// A read/write failure or the deadline.
pub fn echo_server(peer: &Peer<'_>, sk: &Socket, deadline: Instant) -> PeerResult<u64> {
    let mut buf = vec![0u8; 65536];
    let mut served = 0u64;
    loop {
        let n = read_some(peer, sk, &mut buf, deadline)?;
        if n == 0 {
            return Ok(served);
        }
        write_all(peer, sk, &buf[..n], deadline)?;
        served += n as u64;
    }
}

/// Send `count` messages of `len` random bytes and check each echo (kernel
/// `test_client_verify`). Sets `TCP_NODELAY`.
///
/// # Errors
/// A read/write failure, the deadline, or an echo that differs from what was sent.
pub fn echo_verify(peer: &Peer<'_>, sk: &Socket, count: usize, len: usize, deadline: Instant) -> PeerResult {
    sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
    let mut rng = XorShift::seeded();
    let mut out = vec![0u8; len];
    let mut back = vec![0u8; len];
    for i in 0..count {
        rng.fill(&mut out);
        write_all(peer, sk, &out, deadline)?;
        let mut got = 0;
        while got < len {
            let n = read_some(peer, sk, &mut back[got..], deadline)?;
            if n == 0 {
                return Err(failure!("the connection closed after {i} of {count} echoed messages"));
            }
            got += n;
        }
        if out != back {
            return Err(failure!("echoed message {i} differs from the one sent"));
        }
    }
    Ok(())
}

/// A small xorshift64* generator for test payloads (not for keys).
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeded from the clock.
    pub fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        Self(t | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fill `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// The TCP-AO socket and key counters of `sk` (`TCP_AO_INFO`, `TCP_AO_GET_KEYS`); `(None, [])`
/// for a socket without TCP-AO.
///
/// # Errors
/// When a socket option fails for another reason than "no TCP-AO on this socket".
pub fn ao_counters(sk: &impl AsFd) -> PeerResult<(Option<SockCounters>, Vec<KeyCounters>)> {
    let _ = sk;
    Ok((None, Vec::new()))
}

/// Frames the packet socket `sk` dropped (`PACKET_STATISTICS`), when it can be read.
pub fn packet_drops(sk: &impl AsFd) -> Option<u32> {
    let _ = sk;
    None
}

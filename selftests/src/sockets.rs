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

use tcpao_sys::{Algorithm, AoKey, KeyFilter, MasterKey, Md5Ext, Md5Key, PeerPrefix, TcpAoExt};

use tcpao_refimpl::Mkt;
use tcpao_refimpl::verify::keys::{EntryKey, KeyEntry, Prefix};

use crate::capture::{AoIds, UnverifiableKey, key_entry};
use crate::rng::Rng;

use crate::failure;
use crate::outcome::{Failure, OrFail, PeerResult};
use crate::peers::Peer;
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
    let sk = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
        .or_fail("socket(SOCK_STREAM) failed")?;
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
    sk.bind_device(Some(VETH_NAME.as_bytes()))
        .or_fail("SO_BINDTODEVICE failed")?;
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
    sk.bind_device(Some(VETH_NAME.as_bytes()))
        .or_fail("SO_BINDTODEVICE failed")?;
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

/// Connect and require success within [`Peer::timeout`].
///
/// # Errors
/// A failure sentence when the connection was not established.
pub fn connect_ok(peer: &Peer<'_>, sk: &Socket, addr: IpAddr, port: u16) -> PeerResult {
    match connect(peer, sk, addr, port, peer.deadline(), || false)? {
        Connect::Established => Ok(()),
        Connect::Failed(e) => Err(failure!("connect() to {addr} port {port} failed: {e}")),
        Connect::TimedOut => Err(failure!("connect() to {addr} port {port} timed out")),
    }
}

/// Write all of `buf`, waiting for room until `deadline`.
///
/// # Errors
/// A failure when the socket errs or stays full until `deadline`.
pub fn write_all(
    peer: &Peer<'_>,
    mut sk: &Socket,
    mut buf: &[u8],
    deadline: Instant,
) -> PeerResult {
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
fn read_some(
    peer: &Peer<'_>,
    mut sk: &Socket,
    buf: &mut [u8],
    deadline: Instant,
) -> PeerResult<usize> {
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

/// Read whatever `sk` has now without blocking: `Ok(Some(0))` when nothing is queued,
/// `Ok(None)` at EOF.
///
/// # Errors
/// A read failure.
pub fn read_now(mut sk: &Socket, buf: &mut [u8]) -> PeerResult<Option<usize>> {
    match sk.read(buf) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(0)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Some(0)),
        Err(e) => Err(failure!("read() failed: {e}")),
    }
}

/// Read exactly `buf.len()` bytes before `deadline`.
///
/// # Errors
/// EOF, a read failure or the deadline.
pub fn read_exact(peer: &Peer<'_>, sk: &Socket, buf: &mut [u8], deadline: Instant) -> PeerResult {
    let mut got = 0;
    while got < buf.len() {
        match read_now(sk, &mut buf[got..])? {
            None => {
                return Err(failure!(
                    "the peer closed the connection after {got} of {} bytes",
                    buf.len()
                ));
            }
            Some(0) => {
                if !wait_fd(peer, sk, PollFlags::POLLIN, deadline, || false)? {
                    return Err(failure!(
                        "read() timed out after {got} of {} bytes",
                        buf.len()
                    ));
                }
            }
            Some(n) => got += n,
        }
    }
    Ok(())
}

/// Echo up to `quota` bytes back (kernel `test_server_run(sk, quota)`); stops early at EOF
/// or when nothing arrives before `deadline`. Returns the bytes echoed.
///
/// # Errors
/// A read/write failure, or a write the peer does not make room for before `deadline`.
pub fn echo_quota(peer: &Peer<'_>, sk: &Socket, quota: u64, deadline: Instant) -> PeerResult<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut served = 0u64;
    while served < quota {
        let want = usize::try_from(quota - served)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match read_now(sk, &mut buf[..want])? {
            None => break,
            Some(0) => {
                if !wait_fd(peer, sk, PollFlags::POLLIN, deadline, || false)? {
                    break;
                }
            }
            Some(n) => {
                write_all(peer, sk, &buf[..n], deadline)?;
                served += n as u64;
            }
        }
    }
    Ok(served)
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
pub fn echo_verify(
    peer: &Peer<'_>,
    sk: &Socket,
    count: usize,
    len: usize,
    deadline: Instant,
) -> PeerResult {
    sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
    let mut rng = Rng::from_clock();
    let mut out = vec![0u8; len];
    let mut back = vec![0u8; len];
    for i in 0..count {
        rng.fill(&mut out);
        write_all(peer, sk, &out, deadline)?;
        let mut got = 0;
        while got < len {
            let n = read_some(peer, sk, &mut back[got..], deadline)?;
            if n == 0 {
                return Err(failure!(
                    "the connection closed after {i} of {count} echoed messages"
                ));
            }
            got += n;
        }
        if out != back {
            return Err(failure!("echoed message {i} differs from the one sent"));
        }
    }
    Ok(())
}

/// The password of the default test key (our own sentence; 59 bytes, so AES-128-CMAC keys go
/// through the RFC 5926 §3.1.1.2 fold like the kernel suite's long default password does).
pub const DEFAULT_TEST_PASSWORD: &str =
    "Two peers in two namespaces agree on one secret, or do not.";
/// The default algorithm (kernel `DEFAULT_TEST_ALGO`): AES-128-CMAC-96.
pub const DEFAULT_TEST_ALGORITHM: Algorithm = Algorithm::AesCmac128;

/// A TCP-AO key as a test describes it (kernel `test_add_key()` arguments), with the kernel
/// suite's defaults: peer host prefix, [`DEFAULT_TEST_PASSWORD`], [`DEFAULT_TEST_ALGORITHM`],
/// MAC length 12.
#[derive(Clone)]
pub struct TestKey {
    /// Peer address.
    pub peer: IpAddr,
    /// Peer prefix length; `None` = host (/32, /128).
    pub prefix: Option<u8>,
    /// SendID.
    pub send_id: u8,
    /// RecvID.
    pub recv_id: u8,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Password (zeroed on drop).
    pub password: zeroize::Zeroizing<Vec<u8>>,
    /// MAC length; `None` = kernel default (12).
    pub maclen: Option<u8>,
    /// `false` sets `TCP_AO_KEYF_EXCLUDE_OPT`.
    pub include_options: bool,
    /// Bind to a VRF ifindex (`TCP_AO_KEYF_IFINDEX`).
    pub vrf: Option<u32>,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TestKey({}:{} for {}/{:?} {} maclen {:?})",
            self.send_id,
            self.recv_id,
            self.peer,
            self.prefix,
            self.algorithm.kernel_name(),
            self.maclen
        )
    }
}

impl TestKey {
    /// Key `send_id:recv_id` for host `peer`, with the defaults.
    pub fn new(peer: IpAddr, send_id: u8, recv_id: u8) -> Self {
        Self {
            peer,
            prefix: None,
            send_id,
            recv_id,
            algorithm: DEFAULT_TEST_ALGORITHM,
            password: zeroize::Zeroizing::new(DEFAULT_TEST_PASSWORD.as_bytes().to_vec()),
            maclen: None,
            include_options: true,
            vrf: None,
        }
    }

    /// Another password.
    pub fn password(mut self, pw: &[u8]) -> Self {
        self.password = zeroize::Zeroizing::new(pw.to_vec());
        self
    }

    /// A network key `peer/prefix`.
    pub fn prefix(mut self, peer: IpAddr, prefix: u8) -> Self {
        self.peer = peer;
        self.prefix = Some(prefix);
        self
    }

    /// Another MAC length.
    pub fn maclen(mut self, maclen: u8) -> Self {
        self.maclen = Some(maclen);
        self
    }

    /// Another algorithm.
    pub fn algorithm(mut self, a: Algorithm) -> Self {
        self.algorithm = a;
        self
    }

    fn prefix_len(&self) -> u8 {
        self.prefix.unwrap_or(Family::of(self.peer).host_prefix())
    }

    /// The tcpao-sys key.
    ///
    /// # Errors
    /// When the values are invalid (bad prefix, MAC length).
    pub fn to_ao_key(&self) -> PeerResult<AoKey> {
        let peer =
            PeerPrefix::new(self.peer, self.prefix_len()).or_fail("invalid test key prefix")?;
        let mkt = MasterKey::new(&self.password).or_fail("invalid test key password")?;
        let mut k = AoKey::new(
            peer,
            self.send_id,
            self.recv_id,
            self.algorithm.clone(),
            mkt,
        )
        .include_options(self.include_options);
        if let Some(m) = self.maclen {
            k = k.mac_len(m).or_fail("invalid test key MAC length")?;
        }
        if let Some(v) = self.vrf {
            k = k.vrf(v);
        }
        Ok(k)
    }

    /// The reference MKT of this key (its holder's view), or `None` when tcpao-refimpl does
    /// not implement its algorithm. MAC length 0 is the kernel's default, 12.
    pub fn mkt(&self) -> Option<Mkt> {
        let maclen = self.maclen.filter(|m| *m != 0).unwrap_or(12);
        Mkt::new(
            self.send_id,
            self.recv_id,
            reference_algorithm(&self.algorithm)?,
            self.password.as_slice(),
        )
        .with_mac_len(usize::from(maclen))
        .ok()
        .map(|m| m.with_include_options(self.include_options))
    }

    /// The keys-file entry of this key held at `local`, for the capture; `None` when
    /// tcpao-refimpl does not implement its algorithm (its segments are then not
    /// cross-checked).
    pub fn entry(&self, local: IpAddr) -> Option<KeyEntry> {
        let key = EntryKey::Ao(self.mkt()?);
        Some(key_entry(key, local, self.peer, self.prefix_len()))
    }
}

/// The RFC 5926 algorithm of a kernel algorithm, or `None` when tcpao-refimpl does not
/// implement it: the one place where tcpao-sys's and tcpao-refimpl's vocabularies meet.
pub fn reference_algorithm(a: &Algorithm) -> Option<tcpao_refimpl::Algorithm> {
    tcpao_refimpl::Algorithm::from_kernel_name(a.kernel_name()).ok()
}

/// Register a key `peer` installed outside [`add_key`] with the test's capture.
pub fn register(peer: &Peer<'_>, key: &TestKey) {
    let _ = register_with_capture(peer, key);
}

/// Register `key`, installed by `peer`, with the test's capture: as a keys-file entry, or, when
/// tcpao-refimpl does not implement its algorithm, by its identifiers (the cross-check's
/// field rule still needs them). `false` when its MACs will not be cross-checked.
fn register_with_capture(peer: &Peer<'_>, key: &TestKey) -> bool {
    let Some(c) = peer.capture() else {
        return true;
    };
    match key.entry(peer.local_addr()) {
        Some(e) => {
            c.register(peer.side(), e);
            true
        }
        None => {
            register_ids(peer, key);
            false
        }
    }
}

/// Register only the identifiers of a TCP-AO key `peer` installed (SendID, RecvID, MAC
/// length; [`Capture::register_unverifiable`](crate::capture::Capture::register_unverifiable)):
/// the cross-check's field rule knows the key, the keys file and rule 1 do not. For a key a
/// test keeps out of the saved keys file on purpose (a misconfiguration `tcpao-verify` is to
/// diagnose), or one whose algorithm tcpao-refimpl lacks.
pub fn register_ids(peer: &Peer<'_>, key: &TestKey) {
    let Some(c) = peer.capture() else {
        return;
    };
    if let Ok(prefix) = Prefix::new(key.peer, key.prefix_len()) {
        let ids = AoIds {
            send_id: key.send_id,
            recv_id: key.recv_id,
            // The kernel's default MAC length (tcp_ao_add_key(): RFC 5925's 96 bits).
            mac_len: usize::from(key.maclen.filter(|m| *m != 0).unwrap_or(12)),
        };
        c.register_unverifiable(peer.side(), UnverifiableKey { peer: prefix, ids });
    }
}

/// Add a TCP-AO key to `sk` (kernel `test_add_key()`): register it with the test's capture,
/// then read it back with `TCP_AO_GET_KEYS` and compare IDs, MAC length and algorithm.
///
/// # Errors
/// A failure sentence when the kernel rejects the key or reports it differently.
pub fn add_key(peer: &Peer<'_>, sk: &Socket, key: &TestKey) -> PeerResult {
    let ao = key.to_ao_key()?;
    sk.add_ao_key(&ao).map_err(|e| match e {
        tcpao_sys::Error::Unsupported { .. } => {
            Failure::Skip("Tests require TCP-AO support (CONFIG_TCP_AO)".into())
        }
        e => failure!("setsockopt(TCP_AO_ADD_KEY) of key {key:?} failed: {e}"),
    })?;
    if !register_with_capture(peer, key) {
        peer.diag(format!(
            "key {}:{} uses {}, which tcpao-refimpl does not implement: its MACs are not cross-checked",
            key.send_id,
            key.recv_id,
            key.algorithm.kernel_name()
        ));
    }
    let got = sk.ao_keys(&KeyFilter::Key(ao.selector())).map_err(|e| {
        failure!(
            "reading back key {}:{} failed: {e}",
            key.send_id,
            key.recv_id
        )
    })?;
    let [k] = got.as_slice() else {
        return Err(failure!(
            "reading back key {}:{} returned {} keys",
            key.send_id,
            key.recv_id,
            got.len()
        ));
    };
    let want_mac = key.maclen.filter(|m| *m != 0).unwrap_or(12);
    if k.mac_len != want_mac
        || k.algorithm != key.algorithm
        || k.include_options != key.include_options
    {
        return Err(failure!(
            "the kernel reports key {}:{} as {} maclen {} (options {}), it was added as {} maclen {want_mac} (options {})",
            key.send_id,
            key.recv_id,
            k.algorithm.kernel_name(),
            k.mac_len,
            k.include_options,
            key.algorithm.kernel_name(),
            key.include_options
        ));
    }
    Ok(())
}

/// The option memory the kernel charges to `sk` (`SO_MEMINFO`, `SK_MEMINFO_OPTMEM`: the
/// socket's `sk_omem_alloc`). TCP-AO and TCP-MD5 keys are charged there when added
/// (`sock_kmalloc()`) and must be uncharged whenever they go.
///
/// # Errors
/// A failure sentence when `getsockopt(SO_MEMINFO)` fails or returns too little.
pub fn optmem(sk: &Socket) -> PeerResult<u32> {
    // include/uapi/asm-generic/socket.h; the libc crate has it only for some architectures.
    const SO_MEMINFO: i32 = 55;
    let mut buf = [0u8; 64];
    let n = tcpao_sys::raw::getsockopt_bytes(
        sk,
        nix::libc::SOL_SOCKET,
        SO_MEMINFO,
        Some(&mut buf),
        tcpao_sys::raw::OptLen::Buffer,
    )
    .or_fail("getsockopt(SO_MEMINFO) failed")?
    .unwrap_or(0);
    let at = 4 * nix::libc::SK_MEMINFO_OPTMEM as usize;
    if (n as usize) < at + 4 {
        return Err(failure!("getsockopt(SO_MEMINFO) returned {n} bytes"));
    }
    Ok(u32::from_ne_bytes([
        buf[at],
        buf[at + 1],
        buf[at + 2],
        buf[at + 3],
    ]))
}

/// A client socket ([`client_socket`]) with a TCP-MD5 key, `password`, for the server's
/// address ([`add_md5_key`]).
///
/// # Errors
/// As [`client_socket`] and [`add_md5_key`].
pub fn md5_client_socket(p: &Peer<'_>, password: &[u8]) -> PeerResult<Socket> {
    let sk = client_socket(p)?;
    add_md5_key(p, &sk, p.remote_addr(), p.family().host_prefix(), password)?;
    Ok(sk)
}

/// Add a TCP-MD5 key for `peer_addr/prefix` to `sk` (`TCP_MD5SIG_EXT`) and register it with
/// the capture.
///
/// # Errors
/// A failure sentence when the kernel rejects it; a skip without `CONFIG_TCP_MD5SIG`.
pub fn add_md5_key(
    peer: &Peer<'_>,
    sk: &Socket,
    peer_addr: IpAddr,
    prefix: u8,
    password: &[u8],
) -> PeerResult {
    let key = Md5Key {
        peer: PeerPrefix::new(peer_addr, prefix).or_fail("invalid MD5 key prefix")?,
        vrf: None,
        key: MasterKey::new(password).or_fail("invalid MD5 key")?,
    };
    sk.add_md5_key(&key).map_err(|e| match e {
        tcpao_sys::Error::Unsupported { .. } => {
            Failure::Skip("Tests require TCP-MD5 support (CONFIG_TCP_MD5SIG)".into())
        }
        e => failure!("setsockopt(TCP_MD5SIG_EXT) for {peer_addr}/{prefix} failed: {e}"),
    })?;
    if let Some(c) = peer.capture() {
        let key = EntryKey::Md5(tcpao_refimpl::MasterKey::new(password));
        c.register(
            peer.side(),
            key_entry(key, peer.local_addr(), peer_addr, prefix),
        );
    }
    Ok(())
}

/// One TCP socket of the calling thread's namespace as `/proc/net/tcp{,6}` lists it (request
/// and TIME-WAIT sockets included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcTcp {
    /// The local port.
    pub local_port: u16,
    /// The remote port (0 for a listener).
    pub remote_port: u16,
    /// The state, in the kernel's `TCP_*` numbering ([`tcpao_sys::uapi::TCP_ESTABLISHED`] 1 …
    /// `TCP_NEW_SYN_RECV` 12).
    pub state: u8,
    /// The inode of the socket's file ([`inode_of`]); 0 once no descriptor refers to it
    /// (orphaned, TIME-WAIT, request sockets).
    pub inode: u64,
}

/// The inode of a socket descriptor's file, as `/proc/net/tcp{,6}` lists it
/// ([`ProcTcp::inode`]): once the last descriptor is closed no entry has it any more.
///
/// # Errors
/// `fstat` failed.
pub fn inode_of(fd: &impl AsFd) -> io::Result<u64> {
    nix::sys::stat::fstat(fd.as_fd())
        .map(|st| st.st_ino)
        .map_err(io::Error::from)
}

impl ProcTcp {
    /// The state's kernel name without `TCP_`.
    pub fn state_name(&self) -> &'static str {
        const NAMES: [&str; 13] = [
            "?",
            "ESTABLISHED",
            "SYN_SENT",
            "SYN_RECV",
            "FIN_WAIT1",
            "FIN_WAIT2",
            "TIME_WAIT",
            "CLOSE",
            "CLOSE_WAIT",
            "LAST_ACK",
            "LISTEN",
            "CLOSING",
            "NEW_SYN_RECV",
        ];
        NAMES.get(usize::from(self.state)).copied().unwrap_or("?")
    }

    /// Every TCP socket of the calling thread's namespace, from
    /// `/proc/thread-self/net/tcp{,6}`; a file that cannot be read lists none.
    pub fn all() -> Vec<ProcTcp> {
        let mut v = Vec::new();
        for file in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            v.extend(text.lines().skip(1).filter_map(Self::parse));
        }
        v
    }

    /// One line of `/proc/net/tcp{,6}`: `sl local_address rem_address st …`, addresses as
    /// `HEX:PORT`.
    fn parse(line: &str) -> Option<ProcTcp> {
        let mut it = line.split_whitespace().skip(1);
        let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
        let (local_port, remote_port) = (port(it.next()?)?, port(it.next()?)?);
        let state = u8::from_str_radix(it.next()?, 16).ok()?;
        // tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        let inode = it.nth(5)?.parse().ok()?;
        Some(ProcTcp {
            local_port,
            remote_port,
            state,
            inode,
        })
    }

    /// The sockets with local or remote port `port`, for a failure message:
    /// `"ESTABLISHED 7010->41234, TIME_WAIT …"`, or `"none"`.
    pub fn describe_port(port: u16) -> String {
        Self::describe(|s| s.local_port == port || s.remote_port == port)
    }

    /// The sockets `keep` selects, for a failure message: `"FIN_WAIT2 7010->41234, …"`, or
    /// `"none"`.
    pub fn describe(keep: impl Fn(&ProcTcp) -> bool) -> String {
        let v: Vec<String> = Self::all()
            .into_iter()
            .filter(|s| keep(s))
            .map(|s| format!("{} {}->{}", s.state_name(), s.local_port, s.remote_port))
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }
}

#[cfg(test)]
mod proc_tcp_tests {
    use super::ProcTcp;

    #[test]
    fn proc_net_tcp_lines_parse() {
        let rows = [
            (
                "   0: 0100000A:1B5A 0200000A:A0F2 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 10 0 0 10 -1",
                Some((7002, 41202, 1, "ESTABLISHED", 1)),
            ),
            (
                "   1: 00000000000000000000000000000000:1B5A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2",
                Some((7002, 0, tcpao_sys::uapi::TCP_LISTEN, "LISTEN", 2)),
            ),
            (
                "   3: 0100000A:1B5A 0200000A:A0F2 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0",
                Some((7002, 41202, tcpao_sys::uapi::TCP_TIME_WAIT, "TIME_WAIT", 0)),
            ),
            ("   2: 0100000A:1B5A", None),
            (
                "   4: 0100000A:1B5A 0200000A:A0F2 01 00000000:00000000 00:00000000 00000000     0",
                None,
            ),
            ("garbage", None),
        ];
        for (line, want) in rows {
            let got = ProcTcp::parse(line).map(|s| {
                (
                    s.local_port,
                    s.remote_port,
                    s.state,
                    s.state_name(),
                    s.inode,
                )
            });
            assert_eq!(got, want, "{line}");
        }
    }
}

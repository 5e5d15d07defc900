// SPDX-License-Identifier: MIT OR Apache-2.0
//! Race cases around `connect()`, where `tcp_ao_connect_init()` drops the keys that do not
//! match the peer and `tcp_connect()` drops TCP-AO or TCP-MD5 state when the other kind is
//! the one that matches, while the receive path may be walking the same lists.
//!
//! * `connect-vs-delete`: a fresh client socket with K = 100:100 (for the server) and
//!   W = 101:101 (for an address nobody has). A, the client, `connect()`s; B, a second client
//!   thread, deletes W (even iterations) or K (odd ones) from the same socket. `connect()` and
//!   `setsockopt()` serialise on the socket lock, so exactly these pairs are allowed: W deleted
//!   (delete first) or `ENOENT` (connect first: it dropped W), the connection up either way;
//!   K deleted and `connect()` `EKEYREJECTED` (delete first), or `EBUSY` (connect first: K is
//!   Current_key) and the connection up. An established connection must hold exactly K and
//!   exchange a byte signed with it.
//! * `reconnect-vs-rx`: the server has a second address S2. The client holds K1 = 100:100 for
//!   the server's first address S1 and Kn = 101:101 for the whole test network, connects to
//!   S1, and the server's child asks for K1 (RNextKeyID 100). A, the client: select Kn as
//!   Current_key, disconnect (`connect(AF_UNSPEC)`), `connect()` to S2, which drops K1. B, the
//!   server: a burst of segments on the first connection, each asking for K1, which the
//!   client's receive path makes Current_key when it sees them. After A the client's
//!   Current_key and RNext_key must be Kn and its keys exactly Kn: a receive path that made
//!   the dropped K1 current after `connect()` looked left Current_key on a freed key (the
//!   use-after-free fixed by da4471557f27 with a grace period before the unlink). The
//!   connection to S2 must come up and exchange a byte signed with Kn.
//! * `md5-ao-connect`: the client socket, bound to a fixed port, has TCP-MD5 and TCP-AO keys.
//!   Even iterations: an MD5 key for the server and 16 TCP-AO keys for other addresses, so
//!   `connect()` frees the TCP-AO state (`tcp_ao_destroy_sock()` from `tcp_connect()`); odd
//!   iterations: a TCP-AO key for the server and 16 MD5 keys for other addresses, so it frees
//!   the MD5 list. A is that `connect()`; B, the server, sends forged segments of the kind being
//!   freed (TCP-AO or TCP-MD5 option, made with tcpao-refimpl, through a raw socket) to the
//!   client's port, so the client's receive path walks the list being freed. The connection
//!   must come up with the kind that matched and exchange a byte signed with it (rows 25 and
//!   26 of the fix table: the free had no RCU grace period).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tcpao_refimpl::wire::{TcpFlags, TcpRepr};
use tcpao_refimpl::{AoSign, Auth, IpHeader, TrafficKey, build_segment};
use tcpao_sys::{KeyFilter, MasterKey, Md5Ext, Md5Key, PeerPrefix, TcpAoExt};

use super::{Race, RaceTest, abort_close, close_after_reset, errno_name, info, key};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::probe::Feature;
use crate::programs::extras;
use crate::registry::Test;
use crate::sockets::{self, TestKey};
use crate::topology::{Family, Netlink};

const K: u8 = 100;
const W: u8 = 101;
const KN: u8 = 101;
/// The client's fixed port in `md5-ao-connect` (the server forges segments to it).
const CLIENT_PORT: u16 = 7999;
const MD5_PASSWORD: &[u8] = b"An MD5 secret for the race between connect() and the receive path";
/// Keys of the other kind, for other addresses, in `md5-ao-connect`.
const OTHER_KEYS: u8 = 16;
/// Forged segments B sends per iteration in `md5-ao-connect`.
const FORGED: usize = 8;

/// The cases of this file.
pub(super) fn tests() -> Vec<Test> {
    let mut v = RaceTest::new(
        "connect-vs-delete",
        "client connect()s (connect() drops the key W for another address)",
        "a second client thread deletes W or K from the same socket",
    )
    .build(cvd_server, cvd_client);
    v.extend(
        RaceTest::new(
            "reconnect-vs-rx",
            "client disconnects and connects to the server's second address (K1 is dropped)",
            "server's segments asking for K1 arrive on the old connection",
        )
        .build(rec_server, rec_client),
    );
    v.extend(
        RaceTest::new(
            "md5-ao-connect",
            "client connect()s with TCP-MD5 and TCP-AO keys (the kind that does not match is freed)",
            "server sends forged segments of the freed kind to the client's port",
        )
        .requires(&[Feature::TcpMd5])
        .build(md5_server, md5_client),
    );
    v
}

/// State of one run.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The client's verdict on the iteration: a connection to accept.
    child: AtomicBool,
    /// The client's fzsync loop ended.
    stop: AtomicBool,
    /// `connect-vs-delete`: the socket both client threads use this iteration.
    sock: Mutex<Option<Arc<Socket>>>,
    /// `connect-vs-delete`: the key B deletes this iteration.
    target: AtomicU8,
    /// `connect-vs-delete`: B's result (errno, 0 for success).
    deleted: Mutex<Option<i32>>,
}

fn register(p: &Peer<'_>, k: &TestKey) {
    sockets::register(p, k);
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Wait for a non-blocking `connect()` to finish.
fn wait_established(p: &Peer<'_>, sk: &Socket) -> PeerResult {
    if !sockets::wait_fd(p, sk, nix::poll::PollFlags::POLLOUT, p.deadline(), || false)? {
        return Err(failure!(
            "the connection did not come up within {:?}",
            p.timeout()
        ));
    }
    match sk.take_error() {
        Ok(None) => Ok(()),
        Ok(Some(e)) | Err(e) => Err(failure!("the connection failed: {e}")),
    }
}

/// One byte each way (both peers call it).
fn exchange(p: &Peer<'_>, sk: &Socket) -> PeerResult {
    sk.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
    sockets::write_all(p, sk, &[0x5a], p.deadline())?;
    let mut b = [0u8; 1];
    loop {
        match std::io::Read::read(&mut &*sk, &mut b) {
            Ok(1) if b[0] == 0x5a => return Ok(()),
            Ok(n) => return Err(failure!("read {n} bytes instead of the exchange byte")),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !sockets::wait_fd(p, sk, nix::poll::PollFlags::POLLIN, p.deadline(), || false)? {
                    return Err(failure!("the exchange byte did not arrive"));
                }
            }
            Err(e) => return Err(failure!("read() failed: {e}")),
        }
    }
}

/// The server side of the cases where the client decides each iteration: accept and exchange
/// a byte when the client says a connection is up, until it says stop.
fn accept_loop(p: &Peer<'_>, st: &State, lsk: &Socket) -> PeerResult {
    loop {
        p.sync()?;
        if st.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let c = if st.child.load(Ordering::SeqCst) {
            let c = extras::accept_one(p, lsk)?;
            exchange(p, &c)?;
            Some(c)
        } else {
            None
        };
        p.sync()?;
        if let Some(c) = c {
            close_after_reset(p, c)?;
        }
    }
}

fn cvd_server(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 8)?;
    sockets::add_key(p, &lsk, &key(p, K))?;
    p.sync()?;
    accept_loop(p, &race.state, &lsk)
}

fn cvd_client(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let st = &race.state;
    let kk = key(p, K);
    let kw = TestKey::new(p.family().wrong_addr(), W, W);
    register(p, &kk);
    let (ak, aw) = (kk.to_ao_key()?, kw.to_ao_key()?);
    let (sel_k, sel_w) = (ak.selector(), aw.selector());
    p.sync()?;
    let pair = &race.pair;
    let res = std::thread::scope(|s| {
        // Actor B: delete W or K from the socket A connects.
        let deleter = s.spawn(|| -> PeerResult {
            let guard = pair.abort_on_drop();
            while pair.run_b() {
                if !pair.start_b() {
                    break;
                }
                let sk = st
                    .sock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let sel = if st.target.load(Ordering::SeqCst) == K {
                    &sel_k
                } else {
                    &sel_w
                };
                let res = sk.as_ref().map(|sk| sk.del_ao_key(sel));
                // Published before the end barrier: A reads it right after.
                *st.deleted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = match &res {
                    Some(Ok(())) => Some(0),
                    Some(Err(e)) => Some(e.raw_os_error().unwrap_or(-1)),
                    None => None,
                };
                if !pair.end_b() {
                    break;
                }
                if res.is_none() {
                    return Err(failure!("no socket was published for the iteration"));
                }
            }
            guard.disarm();
            Ok(())
        });
        // Actor A: connect().
        let guard = pair.abort_on_drop();
        let mut i = 0u64;
        while race.run_a() {
            let sk = Arc::new(sockets::client_socket(p)?);
            sk.add_ao_key(&aw)
                .map_err(|e| failure!("adding W failed: {e}"))?;
            sk.add_ao_key(&ak)
                .map_err(|e| failure!("adding K failed: {e}"))?;
            let target = if i % 2 == 0 { W } else { K };
            i += 1;
            st.target.store(target, Ordering::SeqCst);
            *st.sock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&sk));
            if !pair.start_a() {
                break;
            }
            let res = sk.connect(&SockAddr::from(SocketAddr::new(p.remote_addr(), p.port())));
            if pair.end_a().is_none() {
                break;
            }
            let connected = match &res {
                Ok(()) => true,
                Err(e) if errno_of(e) == nix::libc::EINPROGRESS => true,
                Err(e) if errno_of(e) == nix::libc::EKEYREJECTED => false,
                Err(e) => return Err(failure!("connect() failed: {e}")),
            };
            let del = st
                .deleted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .ok_or_else(|| failure!("the deleting thread reported no result"))?;
            let name = |e: i32| {
                if e == 0 {
                    "ok".to_owned()
                } else {
                    nix::errno::Errno::from_raw(e)
                        .to_string()
                        .split(':')
                        .next()
                        .unwrap_or("?")
                        .to_owned()
                }
            };
            let what = format!(
                "delete {} {}, connect {}",
                if target == K { "K" } else { "W" },
                name(del),
                if connected { "started" } else { "EKEYREJECTED" }
            );
            let allowed = match (target, del, connected) {
                (W, 0, true) => true,
                (W, e, true) if e == nix::libc::ENOENT => true,
                (K, 0, false) => true,
                (K, e, true) if e == nix::libc::EBUSY => true,
                _ => false,
            };
            if !allowed {
                return Err(failure!("an impossible outcome: {what}"));
            }
            race.tally.add(what);
            if connected {
                wait_established(p, &sk)?;
                let keys: Vec<u8> = sk
                    .ao_keys(&KeyFilter::All)
                    .or_fail("TCP_AO_GET_KEYS failed")?
                    .iter()
                    .map(|k| k.selector.send_id)
                    .collect();
                if keys != [K] {
                    return Err(failure!(
                        "the connected socket has keys {keys:?}, want [{K}]"
                    ));
                }
            }
            st.child.store(connected, Ordering::SeqCst);
            p.sync()?;
            if connected {
                exchange(p, &sk)?;
            }
            p.sync()?;
            st.sock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            // Whichever thread drops the last reference closes it with an RST.
            let _ = sk.set_linger(Some(std::time::Duration::ZERO));
            drop(sk);
        }
        guard.disarm();
        deleter
            .join()
            .unwrap_or_else(|_| Err(failure!("the deleting thread panicked")))
    });
    st.stop.store(true, Ordering::SeqCst);
    res?;
    p.sync()
}

// ===== reconnect-vs-rx =====

fn second_server_addr(f: Family) -> IpAddr {
    f.wrong_addr()
}

fn rec_server(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let s2 = second_server_addr(p.family());
    let nl = Netlink::open().map_err(|e| failure!("netlink: {e}"))?;
    nl.add_address(p.link().veth_index, s2, p.family().host_prefix())
        .map_err(|e| failure!("adding the second server address {s2}: {e}"))?;
    let l1 = sockets::listen(p, p.port(), 8)?;
    sockets::add_key(p, &l1, &key(p, KN))?;
    sockets::add_key(p, &l1, &key(p, K))?;
    let l2 = sockets::listen_on(p, s2, p.port(), 8)?;
    sockets::add_key(p, &l2, &key(p, KN))?;
    p.sync()?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    let burst = [0x33u8; 64];
    while pair.run_b() {
        let c1 = extras::accept_one(p, &l1)?;
        c1.set_tcp_nodelay(true).or_fail("TCP_NODELAY failed")?;
        c1.set_ao_rnext_key(K)
            .or_fail("setting the child's RNext_key failed")?;
        p.sync()?;
        if !pair.start_b() {
            break;
        }
        let mut failed = None;
        for _ in 0..4 {
            if let Err(e) = std::io::Write::write(&mut &c1, &burst) {
                failed = Some(e);
                break;
            }
        }
        if !pair.end_b() {
            break;
        }
        if let Some(e) = failed {
            // The client's disconnect RST may come first.
            if !matches!(
                e.raw_os_error(),
                Some(nix::libc::ECONNRESET | nix::libc::EPIPE)
            ) {
                return Err(failure!("write() on the first connection failed: {e}"));
            }
        }
        p.sync()?;
        let c2 = extras::accept_one(p, &l2)?;
        exchange(p, &c2)?;
        p.sync()?;
        // The client's disconnect reset c1, it resets c2 now.
        close_after_reset(p, c1)?;
        close_after_reset(p, c2)?;
    }
    guard.disarm();
    Ok(())
}

fn rec_client(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let s2 = second_server_addr(p.family());
    let nl = Netlink::open().map_err(|e| failure!("netlink: {e}"))?;
    nl.add_host_route(p.link().veth_index, s2, p.local_addr(), None)
        .map_err(|e| failure!("adding a route to {s2}: {e}"))?;
    let (net, len) = p.family().network();
    let kn = TestKey::new(net, KN, KN).prefix(net, len);
    let k1 = key(p, K);
    register(p, &kn);
    register(p, &k1);
    let (akn, ak1) = (kn.to_ao_key()?, k1.to_ao_key()?);
    p.sync()?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    while race.run_a() {
        let sk = sockets::client_socket(p)?;
        sk.add_ao_key(&akn)
            .map_err(|e| failure!("adding Kn failed: {e}"))?;
        sk.add_ao_key(&ak1)
            .map_err(|e| failure!("adding K1 failed: {e}"))?;
        sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
        p.sync()?;
        if !pair.start_a() {
            break;
        }
        let set = sk.set_ao_current_key(KN);
        let disc = tcpao_sys::raw::disconnect(&sk);
        let conn = sk.connect(&SockAddr::from(SocketAddr::new(s2, p.port())));
        if pair.end_a().is_none() {
            break;
        }
        set.map_err(|e| failure!("selecting Kn as Current_key failed: {e}"))?;
        disc.map_err(|e| failure!("connect(AF_UNSPEC) failed: {e}"))?;
        match conn {
            Ok(()) => {}
            Err(e) if errno_of(&e) == nix::libc::EINPROGRESS => {}
            Err(e) => return Err(failure!("connect() to {s2} failed: {e}")),
        }
        let i = info(&sk)?;
        let keys: Vec<u8> = sk
            .ao_keys(&KeyFilter::All)
            .or_fail("TCP_AO_GET_KEYS failed")?
            .iter()
            .map(|k| k.selector.send_id)
            .collect();
        if i.current_key != Some(KN) || i.rnext_key != Some(KN) || keys != [KN] {
            return Err(failure!(
                "after connect() to {s2} the client has Current_key {:?}, RNext_key {:?} and keys {keys:?}: want {KN}, {KN} and [{KN}] (connect() dropped K1 = {K})",
                i.current_key,
                i.rnext_key
            ));
        }
        wait_established(p, &sk)?;
        p.sync()?;
        exchange(p, &sk)?;
        p.sync()?;
        abort_close(sk);
    }
    guard.disarm();
    Ok(())
}

// ===== md5-ao-connect =====

fn raw_socket(f: Family) -> PeerResult<Socket> {
    let domain = match f {
        Family::Ipv4 => Domain::IPV4,
        Family::Ipv6 => Domain::IPV6,
    };
    let sk = Socket::new(domain, Type::RAW, Some(Protocol::from(255)))
        .or_fail("socket(SOCK_RAW, IPPROTO_RAW) failed")?;
    match f {
        Family::Ipv4 => sk
            .set_header_included_v4(true)
            .or_fail("IP_HDRINCL failed")?,
        Family::Ipv6 => sk
            .set_header_included_v6(true)
            .or_fail("IPV6_HDRINCL failed")?,
    }
    Ok(sk)
}

/// Forged ACKs from the server's `port` to the client's fixed port: a TCP-AO option (KeyID 77,
/// a MAC over a made-up traffic key) or a TCP-MD5 one (a wrong password).
fn forged(p: &Peer<'_>, port: u16, md5: bool) -> PeerResult<Vec<Vec<u8>>> {
    let tk = TrafficKey::new(tcpao_refimpl::Algorithm::AesCmac128, &[0x42; 16])
        .map_err(|e| failure!("traffic key: {e}"))?;
    (0..FORGED as u32)
        .map(|i| {
            let tcp = TcpRepr {
                src_port: port,
                dst_port: CLIENT_PORT,
                seq_number: 0x1000_0000 + i * 1000,
                ack_number: 0x2000_0000,
                flags: TcpFlags::ACK,
                window_len: 1000,
                urgent_at: 0,
                options: &[],
                payload: &[],
            };
            let ip = IpHeader::new(p.local_addr(), p.remote_addr());
            let auth = if md5 {
                Auth::Md5(b"not the password")
            } else {
                Auth::Ao(AoSign {
                    key: &tk,
                    mac_len: 12,
                    key_id: 77,
                    rnext_key_id: 77,
                    sne: 0,
                    include_options: true,
                })
            };
            build_segment(&ip, &tcp, &auth).map_err(|e| failure!("building a forged segment: {e}"))
        })
        .collect()
}

fn md5_server(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let (pm, pa) = (p.port(), p.port() + 1);
    let lm = sockets::listen(p, pm, 8)?;
    sockets::add_md5_key(
        p,
        &lm,
        p.remote_addr(),
        p.family().host_prefix(),
        MD5_PASSWORD,
    )?;
    let la = sockets::listen(p, pa, 8)?;
    sockets::add_key(p, &la, &key(p, K))?;
    let raw = raw_socket(p.family())?;
    let ao_forged = forged(p, pm, false)?;
    let md5_forged = forged(p, pa, true)?;
    if let Some(c) = p.capture() {
        for f in ao_forged.iter().chain(&md5_forged) {
            c.register_crafted(f);
        }
    }
    let dst = SockAddr::from(SocketAddr::new(p.remote_addr(), 0));
    p.sync()?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    let mut i = 0u64;
    while pair.run_b() {
        // Even: the client connects with MD5 and drops its TCP-AO keys; odd: the reverse.
        let md5_conn = i % 2 == 0;
        i += 1;
        let (packets, lsk) = if md5_conn {
            (&ao_forged, &lm)
        } else {
            (&md5_forged, &la)
        };
        p.sync()?;
        if !pair.start_b() {
            break;
        }
        let mut failed = None;
        for pkt in packets {
            if let Err(e) = raw.send_to(pkt, &dst) {
                failed = Some(e);
                break;
            }
        }
        if !pair.end_b() {
            break;
        }
        if let Some(e) = failed {
            return Err(failure!("sending a forged segment failed: {e}"));
        }
        let c = extras::accept_one(p, lsk)?;
        exchange(p, &c)?;
        p.sync()?;
        close_after_reset(p, c)?;
    }
    guard.disarm();
    Ok(())
}

fn md5_client(p: &Peer<'_>, race: &Race<State>) -> PeerResult {
    let (pm, pa) = (p.port(), p.port() + 1);
    let f = p.family();
    let other = |n: u8| f.test_addr(200 - n);
    let ka = key(p, K);
    register(p, &ka);
    if let Some(c) = p.capture() {
        let key =
            tcpao_refimpl::verify::keys::EntryKey::Md5(tcpao_refimpl::MasterKey::new(MD5_PASSWORD));
        c.register(
            p.side(),
            crate::capture::key_entry(key, p.local_addr(), p.remote_addr(), f.host_prefix()),
        );
    }
    let md5_key = |addr: IpAddr, pw: &[u8]| -> PeerResult<Md5Key> {
        Ok(Md5Key {
            peer: PeerPrefix::new(addr, f.host_prefix()).or_fail("MD5 key prefix")?,
            vrf: None,
            key: MasterKey::new(pw).or_fail("MD5 key")?,
        })
    };
    p.sync()?;
    let pair = &race.pair;
    let guard = pair.abort_on_drop();
    let mut i = 0u64;
    while race.run_a() {
        let md5_conn = i % 2 == 0;
        i += 1;
        let sk = sockets::client_socket(p)?;
        sk.set_reuse_address(true).or_fail("SO_REUSEADDR failed")?;
        sk.bind(&SockAddr::from(SocketAddr::new(
            p.local_addr(),
            CLIENT_PORT,
        )))
        .or_fail("bind() to the fixed client port failed")?;
        for n in 1..=OTHER_KEYS {
            if md5_conn {
                let k = TestKey::new(other(n), n, n).to_ao_key()?;
                sk.add_ao_key(&k)
                    .map_err(|e| failure!("adding a TCP-AO key for another address failed: {e}"))?;
            } else {
                sk.add_md5_key(&md5_key(other(n), b"another peer's secret")?)
                    .map_err(|e| failure!("adding an MD5 key for another address failed: {e}"))?;
            }
        }
        if md5_conn {
            sk.add_md5_key(&md5_key(p.remote_addr(), MD5_PASSWORD)?)
                .map_err(|e| failure!("adding the MD5 key failed: {e}"))?;
        } else {
            sk.add_ao_key(&ka.to_ao_key()?)
                .map_err(|e| failure!("adding K failed: {e}"))?;
        }
        let port = if md5_conn { pm } else { pa };
        p.sync()?;
        if !pair.start_a() {
            break;
        }
        let res = sk.connect(&SockAddr::from(SocketAddr::new(p.remote_addr(), port)));
        if pair.end_a().is_none() {
            break;
        }
        match &res {
            Ok(()) => {}
            Err(e) if errno_of(e) == nix::libc::EINPROGRESS => {}
            Err(e) => {
                return Err(failure!(
                    "connect() with {} keys failed: {e}",
                    if md5_conn { "MD5" } else { "TCP-AO" }
                ));
            }
        }
        wait_established(p, &sk)?;
        // The kind that did not match is gone from the socket.
        let ao_state = sk
            .ao_info()
            .map_err(|e| failure!("TCP_AO_INFO failed with {}: {e}", errno_name(&e)))?;
        if md5_conn && ao_state.is_some() {
            return Err(failure!("the MD5 connection still has TCP-AO state"));
        }
        if !md5_conn && ao_state.is_none() {
            return Err(failure!("the TCP-AO connection has no TCP-AO state"));
        }
        race.tally.add(if md5_conn {
            "MD5 connection"
        } else {
            "TCP-AO connection"
        });
        exchange(p, &sk)?;
        p.sync()?;
        abort_close(sk);
    }
    guard.disarm();
    Ok(())
}

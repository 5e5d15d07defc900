// SPDX-License-Identifier: MIT OR Apache-2.0
//! `restore`: migrate a live TCP-AO connection to another socket with `TCP_REPAIR`, and
//! corrupt the `TCP_AO_REPAIR` image on the way (kernel `restore.c`, all five cases, both
//! sides), plus `old-socket-still-open`: migrate while a child process still has the old socket
//! open (`freeze_held`).
//!
//! The client echoes 20 messages of 100 bytes; both sides wait until the other acknowledged
//! everything (so no segment of the old socket is in flight), the client freezes its socket ([`crate::repair::freeze`]: no FIN), changes the image as the
//! case says and restores it on a new socket with the same 4-tuple. The server keeps its
//! accepted socket. After the restore the server first sends one message of its own, and
//! the client sends only once that message moved its counters (so it reaches the restored
//! socket before the client sent anything: the cross-check must judge it with the client's
//! view alone); so both directions carry segments in every case, and each side's counters
//! are deterministic:
//!
//! | case | server | client |
//! |---|---|---|
//! | migrate | `GOOD`, serves the quota | `GOOD`, every echo back |
//! | wrong send ISN / wrong receive ISN | `BAD`, serves nothing | `BAD`, no echo |
//! | wrong send SNE | `BAD`, serves nothing | `GOOD` (the server's segments verify), no echo |
//! | wrong receive SNE | `GOOD` (the client's segments verify), its echoes are lost | `BAD`, no echo |
//!
//! "Broken" is decided by polling: each side waits until its expected counters moved and
//! the other side said the same, then checks that no echo came back. The client's restored
//! view (its own, corrupted ISNs or SNEs) is registered with the capture, so the reference
//! checks the client's post-restore segments with the values the client's kernel used.

use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::{OrFail, PeerResult};
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::registry::Test;
use crate::repair::{self, Checkpoint, Restore};
use crate::rng::Rng;
use crate::sockets::{self, TestKey};

const MESSAGES: usize = 20;
const MESSAGE_LEN: usize = 100;
const QUOTA: usize = MESSAGES * MESSAGE_LEN;

/// How the client's `TCP_AO_REPAIR` image is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    SendIsn,
    RecvIsn,
    SendSne,
    RecvSne,
}

pub(crate) struct Case {
    slug: &'static str,
    upstream: &'static str,
    fault: Fault,
    /// A child process still has the client's old socket open when it is closed in repair
    /// mode ([`freeze_held`]).
    held: bool,
    server: Grew,
    client: Grew,
}

/// The `migrate` case (no fault), which regress/repair-connect also runs.
pub(crate) const MIGRATE: &Case = &CASES[0];

const CASES: [Case; 6] = [
    Case {
        slug: "migrate",
        upstream: "TCP-AO migrate to another socket",
        fault: Fault::None,
        held: false,
        server: Grew::GOOD,
        client: Grew::GOOD,
    },
    Case {
        slug: "wrong-send-isn",
        upstream: "TCP-AO with wrong send ISN",
        fault: Fault::SendIsn,
        held: false,
        server: Grew::BAD,
        client: Grew::BAD,
    },
    Case {
        slug: "wrong-receive-isn",
        upstream: "TCP-AO with wrong receive ISN",
        fault: Fault::RecvIsn,
        held: false,
        server: Grew::BAD,
        client: Grew::BAD,
    },
    Case {
        slug: "wrong-send-sne",
        upstream: "TCP-AO with wrong send SEQ ext number",
        fault: Fault::SendSne,
        held: false,
        server: Grew::BAD,
        client: Grew::GOOD,
    },
    Case {
        slug: "wrong-receive-sne",
        upstream: "TCP-AO with wrong receive SEQ ext number",
        fault: Fault::RecvSne,
        held: false,
        server: Grew::GOOD,
        client: Grew::BAD,
    },
    Case {
        slug: "old-socket-still-open",
        upstream: "TCP-AO migrate while the old socket is still open elsewhere",
        fault: Fault::None,
        held: true,
        server: Grew::GOOD,
        client: Grew::GOOD,
    },
];

/// The program's tests: 6 cases × 2 families.
pub fn tests() -> Vec<Test> {
    CASES
        .iter()
        .flat_map(|c| {
            PairTest::new("restore", c.slug)
                .ao()
                .build(move |p| server(p, c), move |p| client(p, c))
        })
        .collect()
}

fn key(p: &Peer<'_>) -> TestKey {
    TestKey::new(p.remote_addr(), 100, 100)
}

/// Wait until every counter of `expected` grew since `before` on `sk` and, with `echo`, until
/// some data arrived, echoing whatever arrives meanwhile; returns the snapshot and the bytes
/// echoed. (With `echo` the counters alone are not enough: the segment that moves them can
/// arrive between a read that found nothing and the counter snapshot, its data still unread.)
fn wait_grew(
    p: &Peer<'_>,
    sk: &Socket,
    before: &Counters,
    expected: Grew,
    echo: bool,
) -> PeerResult<(Counters, usize)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut moved = 0;
    let got = p.wait_for(p.deadline(), || {
        if echo {
            if let Some(n) = sockets::read_now(sk, &mut buf)? {
                if n > 0 {
                    sockets::write_all(p, sk, &buf[..n], p.deadline())?;
                    moved += n;
                }
            }
        }
        let c = Counters::of(sk)?;
        Ok((c.grown(before).contains(expected) && (!echo || moved > 0)).then_some(c))
    })?;
    match got {
        Some(c) => Ok((c, moved)),
        None if echo && moved == 0 => Err(failure!(
            "no data reached this side within {:?}, though the peer's segments should verify",
            p.timeout()
        )),
        None => {
            let c = Counters::of(sk)?;
            Err(failure!(
                "the expected counters ({expected:?}) did not all grow within {:?}: {}",
                p.timeout(),
                c.assert_grew_exactly(before, expected)
                    .err()
                    .map_or_else(|| "they did".to_owned(), |e| e.to_string())
            ))
        }
    }
}

pub(crate) fn server(p: &Peer<'_>, case: &Case) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &key(p))?;
    p.sync()?; // 1: key added => connect()
    let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))?;
    drop(lsk);
    let served = sockets::echo_quota(p, &sk, QUOTA as u64, p.deadline())?;
    if served != QUOTA as u64 {
        return Err(failure!(
            "{}: pre-migrate, the server served {served} of {QUOTA} bytes",
            case.upstream
        ));
    }
    // Until the client's old socket acknowledged our last echo (its delayed ACK), a segment
    // of it may still arrive and move our counters after the snapshot below.
    repair::wait_all_acked(p, &sk)?;
    p.sync()?; // 2a: both sides quiet => the client freezes its socket
    p.sync()?; // 2: the client restored its socket
    let before = Counters::of(&sk)?;
    let mut hello = vec![0u8; MESSAGE_LEN];
    Rng::from_clock().fill(&mut hello);
    sockets::write_all(p, &sk, &hello, p.deadline())?;
    let line = if case.fault == Fault::None {
        let served = sockets::echo_quota(p, &sk, QUOTA as u64, p.deadline())?;
        if served != QUOTA as u64 {
            return Err(failure!(
                "{} (server): server served: {served} of {QUOTA} bytes",
                case.upstream
            ));
        }
        format!("{} (server): server alive", case.upstream)
    } else {
        let echo = case.fault == Fault::RecvSne;
        let (_, moved) = wait_grew(p, &sk, &before, case.server, echo)?;
        p.signal();
        // The client decides when the connection is known broken on its side.
        if p.wait_for(p.deadline(), || Ok((p.peer_signals() > 0).then_some(())))?
            .is_none()
        {
            return Err(failure!(
                "{}: the client did not see the broken connection in time",
                case.upstream
            ));
        }
        if echo {
            format!(
                "{} (server): the server received and echoed {moved} bytes, the client drops them",
                case.upstream
            )
        } else {
            let mut buf = [0u8; 1];
            if sockets::read_now(&sk, &mut buf)? != Some(0) {
                return Err(failure!(
                    "{} (server): server served data on a broken connection",
                    case.upstream
                ));
            }
            format!("{} (server): server couldn't serve", case.upstream)
        }
    };
    let after = Counters::of(&sk)?;
    after
        .assert_grew_exactly(&before, case.server)
        .map_err(|e| failure!("{} (server): {e}", case.upstream))?;
    let name = if case.server.contains(Grew::NS_BAD) {
        "TCPAOBad"
    } else {
        "TCPAOGood"
    };
    p.diag(line);
    p.diag(format!(
        "{}(server): counter {name} increased {} => {}",
        case.upstream,
        before.netns.get(name),
        after.netns.get(name)
    ));
    p.sync()?; // 3: both checked => close
    Ok(())
}

pub(crate) fn client(p: &Peer<'_>, case: &Case) -> PeerResult {
    let k = key(p);
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &k)?;
    p.sync()?; // 1
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    sockets::echo_verify(p, &sk, MESSAGES, MESSAGE_LEN, p.deadline())
        .map_err(|e| failure!("pre-migrate verify failed: {e}"))?;
    repair::wait_all_acked(p, &sk)?;
    p.sync()?; // 2a: the server got our last ACK too
    let mut img = if case.held {
        freeze_held(p, sk)?
    } else {
        repair::freeze(p, sk)?
    };
    let ao = img
        .ao
        .as_mut()
        .ok_or_else(|| failure!("the checkpoint has no TCP-AO state"))?;
    let orig = *ao;
    match case.fault {
        Fault::None => {}
        Fault::SendIsn => ao.snt_isn = ao.snt_isn.wrapping_add(1),
        Fault::RecvIsn => ao.rcv_isn = ao.rcv_isn.wrapping_add(1),
        Fault::SendSne => ao.snd_sne = ao.snd_sne.wrapping_add(1),
        Fault::RecvSne => ao.rcv_sne = ao.rcv_sne.wrapping_add(1),
    }
    p.diag(format!("checkpoint {orig:?}, restored as {:?}", img.ao));
    let sk = img.restore(p, &Restore::new(std::slice::from_ref(&k)))?;
    let before = Counters::of(&sk)?;
    p.sync()?; // 2: restored
    let deadline = p.deadline();
    let line = if case.fault == Fault::None {
        let mut hello = vec![0u8; MESSAGE_LEN];
        sockets::read_exact(p, &sk, &mut hello, deadline).map_err(|e| {
            failure!(
                "{} (client): the server's message did not arrive: {e}",
                case.upstream
            )
        })?;
        sockets::echo_verify(p, &sk, MESSAGES, MESSAGE_LEN, deadline).map_err(|e| {
            failure!(
                "{} (client): post-migrate connection is broken: {e}",
                case.upstream
            )
        })?;
        format!(
            "{} (client): post-migrate connection is alive",
            case.upstream
        )
    } else {
        // The server's message first: it reaches the restored socket before this side sent
        // anything, so the cross-check must judge it with this side's view alone.
        wait_grew(p, &sk, &before, case.client, false)?;
        let mut msg = vec![0u8; MESSAGE_LEN];
        Rng::from_clock().fill(&mut msg);
        sockets::write_all(p, &sk, &msg, deadline)?;
        if p.wait_for(deadline, || Ok((p.peer_signals() > 0).then_some(())))?
            .is_none()
        {
            return Err(failure!(
                "{}: the server did not see its expected counters move",
                case.upstream
            ));
        }
        // Whatever arrived: at most the server's own message (when the server's segments
        // verify here), never the echo.
        let mut buf = vec![0u8; 4 * MESSAGE_LEN];
        let mut got = 0;
        while let Some(n) = sockets::read_now(&sk, &mut buf[got..])? {
            if n == 0 {
                break;
            }
            got += n;
        }
        let allowed = if case.client.contains(Grew::SOCK_GOOD) {
            MESSAGE_LEN
        } else {
            0
        };
        if got > allowed {
            return Err(failure!(
                "{} (client): post-migrate connection is working: {got} bytes came back",
                case.upstream
            ));
        }
        p.signal();
        format!(
            "{} (client): post-migrate connection is broken",
            case.upstream
        )
    };
    let after = Counters::of(&sk)?;
    after
        .assert_grew_exactly(&before, case.client)
        .map_err(|e| failure!("{} (client): {e}", case.upstream))?;
    let name = if case.client.contains(Grew::NS_BAD) {
        "TCPAOBad"
    } else {
        "TCPAOGood"
    };
    p.diag(line);
    p.diag(format!(
        "{} (client): counter {name} increased {} => {}",
        case.upstream,
        before.netns.get(name),
        after.netns.get(name)
    ));
    p.sync()?; // 3
    Ok(())
}

/// How long the old connection is watched while the child holds it: long enough that a
/// release would be seen, short beside the test's timeout.
const HOLD: Duration = Duration::from_millis(300);

/// A child process (`cat`) with a socket's file open (as its stderr), until [`Holder::release`]
/// closes the child's stdin; killed if the test fails first.
struct Holder {
    child: Child,
    stdin: Option<OwnedFd>,
}

impl Holder {
    fn spawn(sk: &Socket) -> PeerResult<Self> {
        // Close-on-exec, so no other child (of this test or another) inherits the write end.
        let (read, stdin) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).or_fail("pipe2")?;
        let file = OwnedFd::from(sk.try_clone().or_fail("dup of the client socket")?);
        let child = Command::new("cat")
            .stdin(read)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .or_fail("cannot run cat (coreutils)")?;
        Ok(Self {
            child,
            stdin: Some(stdin),
        })
    }

    /// Close the child's stdin and wait for it to exit.
    fn release(mut self) -> PeerResult {
        drop(self.stdin.take());
        let st = self.child.wait().or_fail("waiting for cat")?;
        if st.success() {
            Ok(())
        } else {
            Err(failure!("the child holding the socket ended with {st}"))
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `old-socket-still-open`: checkpoint and close the client's socket in repair mode while a
/// child process has its file open, as a child another test spawns has until it execs (the
/// restore flake, docs/lab.md). Shows the kernel keeps the connection `ESTABLISHED` then, that a
/// restore on its 4-tuple fails with `EADDRNOTAVAIL` and [`repair::Killed::wait_released`]
/// does not return; then lets the child go, waits as [`repair::kill`] does, and returns the
/// image for the usual migrate.
fn freeze_held(p: &Peer<'_>, sk: Socket) -> PeerResult<Checkpoint> {
    let img = repair::checkpoint(&sk)?;
    let holder = Holder::spawn(&sk)?;
    let killed = repair::close_in_repair(sk)?
        .ok_or_else(|| failure!("the client's socket has no peer address"))?;
    let listed = killed.listed().ok_or_else(|| {
        failure!("{killed} left the kernel's tables while a child still had the socket open")
    })?;
    if listed.state != tcpao_sys::uapi::TCP_ESTABLISHED {
        return Err(failure!(
            "{killed} is {} while a child has the socket open, expected ESTABLISHED",
            listed.state_name()
        ));
    }
    if killed.wait_released(p, Instant::now() + HOLD)?.is_some() {
        return Err(failure!(
            "{killed} was released while a child still had the socket open"
        ));
    }
    match connect_in_repair(&img) {
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EADDRNOTAVAIL as i32) => {}
        other => {
            return Err(failure!(
                "a restore on {killed} while the old socket is held: connect() in repair \
                 mode gave {other:?}, expected EADDRNOTAVAIL"
            ));
        }
    }
    holder.release()?;
    let waited = killed.wait_released(p, p.deadline())?.ok_or_else(|| {
        failure!(
            "{killed} is still listed {:?} after the child that held it exited",
            p.timeout()
        )
    })?;
    p.diag(format!(
        "{killed} stayed ESTABLISHED while a child held the old socket (a restore on it: \
         EADDRNOTAVAIL) and was gone {:.1} ms after the child exited",
        waited.as_secs_f64() * 1e3
    ));
    Ok(img)
}

/// `connect()` of a new socket in repair mode on `img`'s 4-tuple, the step of
/// [`Checkpoint::restore`] that the held connection blocks; the socket is closed in repair mode.
fn connect_in_repair(img: &Checkpoint) -> std::io::Result<()> {
    let family = crate::topology::Family::of(img.local.ip());
    let sk = sockets::tcp_socket(family).map_err(|e| std::io::Error::other(e.to_string()))?;
    tcpao_sys::repair::set_repair(&sk, tcpao_sys::repair::RepairMode::On)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    sk.set_reuse_address(true)?;
    if let Some(dev) = &img.device {
        sk.bind_device(Some(dev))?;
    }
    sk.bind(&SockAddr::from(img.local))?;
    sk.connect(&SockAddr::from(img.remote))
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Loopback helpers shared by the kernel-facing tests: sockets with keys installed before
//! `listen()`/`connect()`, bounded accept/connect, data exchange, and polling with deadlines.

#![allow(dead_code)]

use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Address family of a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Af {
    V4,
    V6,
}

impl Af {
    pub fn name(self) -> &'static str {
        match self {
            Af::V4 => "ipv4",
            Af::V6 => "ipv6",
        }
    }
    pub fn loopback(self) -> IpAddr {
        match self {
            Af::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Af::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }
    pub fn domain(self) -> Domain {
        match self {
            Af::V4 => Domain::IPV4,
            Af::V6 => Domain::IPV6,
        }
    }
    /// A documentation-range prefix of this family.
    pub fn doc_prefix(self) -> &'static str {
        match self {
            Af::V4 => "198.51.100.0/24",
            Af::V6 => "2001:db8:1::/48",
        }
    }
    /// A documentation host of this family.
    pub fn doc_host(self) -> &'static str {
        match self {
            Af::V4 => "192.0.2.1",
            Af::V6 => "2001:db8::1",
        }
    }
}

pub type TestResult = Result<(), libtest_mimic::Failed>;

/// Fail the trial with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+).into());
        }
    };
}

pub fn socket(af: Af) -> io::Result<Socket> {
    let s = Socket::new(af.domain(), Type::STREAM, None)?;
    if af == Af::V6 {
        s.set_only_v6(true)?;
    }
    Ok(s)
}

/// A listener on loopback port 0; `setup` runs before `bind()`/`listen()`.
pub fn listener(
    af: Af,
    setup: impl FnOnce(&Socket) -> TestResult,
) -> Result<(Socket, SocketAddr), libtest_mimic::Failed> {
    let s = socket(af)?;
    s.set_reuse_address(true)?;
    setup(&s)?;
    s.bind(&SockAddr::from(SocketAddr::new(af.loopback(), 0)))?;
    s.listen(16)?;
    let addr = s
        .local_addr()?
        .as_socket()
        .ok_or("listener has no IP address")?;
    Ok((s, addr))
}

/// Connect with `setup` run before `connect()`, bounded by `timeout`.
pub fn connect(
    af: Af,
    to: SocketAddr,
    timeout: Duration,
    setup: impl FnOnce(&Socket) -> TestResult,
) -> Result<io::Result<Socket>, libtest_mimic::Failed> {
    let s = socket(af)?;
    setup(&s)?;
    Ok(s.connect_timeout(&SockAddr::from(to), timeout).map(|()| s))
}

/// Accept, bounded by `timeout` (SO_RCVTIMEO bounds accept() on Linux).
pub fn accept(l: &Socket, timeout: Duration) -> io::Result<(Socket, SocketAddr)> {
    l.set_read_timeout(Some(timeout))?;
    let (s, a) = l.accept()?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let a = a
        .as_socket()
        .ok_or_else(|| io::Error::other("peer has no IP address"))?;
    Ok((s, a))
}

/// Send `n` bytes each way and check they arrive intact.
pub fn exchange(a: &Socket, b: &Socket, n: usize, tag: u8) -> TestResult {
    for s in [a, b] {
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
    }
    let msg: Vec<u8> = (0..n).map(|i| tag.wrapping_add(i as u8)).collect();
    for (tx, rx) in [(a, b), (b, a)] {
        (&*tx).write_all(&msg)?;
        let mut got = vec![0u8; n];
        (&*rx).read_exact(&mut got)?;
        ensure!(got == msg, "payload corrupted in transit");
    }
    Ok(())
}

/// Poll `cond` until it holds or `timeout` passes (sleeping at most 5 ms between checks).
pub fn wait_for(
    timeout: Duration,
    mut cond: impl FnMut() -> Result<bool, libtest_mimic::Failed>,
) -> Result<bool, libtest_mimic::Failed> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond()? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
    }
}

/// Number of ESTABLISHED sockets whose local port is `port` (from /proc/net/tcp{,6}).
pub fn established_on_port(af: Af, port: u16) -> io::Result<usize> {
    let file = match af {
        Af::V4 => "/proc/net/tcp",
        Af::V6 => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(file)?;
    let want = format!(":{port:04X}");
    Ok(text
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "01"
        })
        .count())
}

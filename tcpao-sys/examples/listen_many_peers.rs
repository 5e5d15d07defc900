// SPDX-License-Identifier: MIT OR Apache-2.0
//! A BGP-style listener: one dual-stack socket, one MKT per peer (IPv4, IPv6, and a prefix for
//! dynamic neighbours), installed BEFORE `listen()`; every accepted socket is checked against
//! the listener's keys (the kernel's accept() race).
//!
//! `cargo run -p tcpao-sys --example listen_many_peers [PORT]` (port 0 = any; it accepts for
//! two seconds, connecting to itself once so the example does something on its own).

use socket2::{Domain, SockAddr, Socket, Type};
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;
use tcpao_sys::{AcceptCheck, Algorithm, AoKey, AoListener, MasterKey, PeerPrefix, TcpAoExt};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args().nth(1).map_or(Ok(0), |p| p.parse())?;
    let sock = Socket::new(Domain::IPV6, Type::STREAM, None)?;
    sock.set_only_v6(false)?; // IPv4 peers arrive as v4-mapped; keys for them are IPv4 prefixes
    sock.set_reuse_address(true)?;
    let listener = AoListener::new(sock);

    let peers: [(&str, u8, &[u8]); 4] = [
        ("127.0.0.1", 10, b"peer-one-secret"),
        ("::1", 11, b"peer-two-secret"),
        ("192.0.2.7", 12, b"peer-three-secret"),
        ("198.51.100.0/24", 13, b"dynamic-neighbours-secret"),
    ];
    for (peer, id, secret) in peers {
        let key = AoKey::new(
            peer.parse::<PeerPrefix>()?,
            id,
            id,
            Algorithm::HmacSha1,
            MasterKey::new(secret)?,
        );
        match listener.add_key(&key) {
            Ok(()) => println!("key {id} installed for {peer}"),
            Err(e) if e.is_unsupported() => {
                println!("this kernel has no TCP-AO: {e}");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let sock = listener.get_ref();
    sock.bind(&SockAddr::from(SocketAddr::from((
        Ipv6Addr::UNSPECIFIED,
        port,
    ))))?;
    sock.listen(128)?;
    let local = sock.local_addr()?.as_socket().ok_or("no local address")?;
    println!("listening on {local} with {} keys", listener.keys()?.len());

    // Be our own peer 127.0.0.1 once.
    let client = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    client.add_ao_key(
        &AoKey::new(
            "127.0.0.1".parse()?,
            10,
            10,
            Algorithm::HmacSha1,
            MasterKey::new(b"peer-one-secret")?,
        )
        .set_current(true)
        .set_rnext(true),
    )?;
    client.connect_timeout(
        &SockAddr::from(SocketAddr::from(([127, 0, 0, 1], local.port()))),
        Duration::from_secs(2),
    )?;

    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    while let Ok((child, from)) = sock.accept() {
        let from = from.as_socket().ok_or("peer without address")?;
        match listener.check_accepted(&child, from.ip())? {
            AcceptCheck::Matches => {
                // Select the peer's key on the child (a listener has no current/rnext key).
                let info = child.ao_info()?.unwrap_or_default();
                println!(
                    "{from}: authenticated, current key {:?}, rnext {:?}",
                    info.current_key, info.rnext_key
                );
            }
            AcceptCheck::Unauthenticated => {
                println!("{from}: unauthenticated connection, dropping")
            }
            AcceptCheck::Mismatch { missing, extra } => {
                println!(
                    "{from}: keys changed while queued (missing {missing:?}, extra {extra:?}); reconcile or drop"
                );
            }
        }
    }
    Ok(())
}

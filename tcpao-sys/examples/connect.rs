// SPDX-License-Identifier: MIT OR Apache-2.0
//! Active open with TCP-AO: install the MKT (selected as Current_key and RNext_key) BEFORE
//! `connect()`, then talk. Runs against an in-process loopback listener.
//!
//! `cargo run -p tcpao-sys --example connect`

use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
use tcpao_sys::{Algorithm, AoKey, AoListener, MasterKey, TcpAoExt};

fn key(set_current: bool) -> Result<AoKey, tcpao_sys::Error> {
    Ok(AoKey::new(
        "127.0.0.1".parse()?,
        7,
        7,
        Algorithm::AesCmac128,
        MasterKey::new(b"a shared secret")?,
    )
    .set_current(set_current)
    .set_rnext(set_current))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = AoListener::new(Socket::new(Domain::IPV4, Type::STREAM, None)?);
    if let Err(e) = server.add_key(&key(false)?) {
        if e.is_unsupported() {
            println!("this kernel has no TCP-AO: {e}");
            return Ok(());
        }
        return Err(e.into());
    }
    server
        .get_ref()
        .bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))?;
    server.get_ref().listen(1)?;
    let addr = server.get_ref().local_addr()?;

    let client = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    client.add_ao_key(&key(true)?)?;
    client.connect_timeout(&addr, Duration::from_secs(2))?;
    let (mut child, _) = server.get_ref().accept()?;

    (&client).write_all(b"OPEN")?;
    let mut buf = [0u8; 4];
    child.read_exact(&mut buf)?;
    println!("server got {:?} over TCP-AO", std::str::from_utf8(&buf)?);
    let info = client.ao_info()?.ok_or("no TCP-AO state")?;
    println!(
        "client: current key {:?}, rnext {:?}, {:?}",
        info.current_key, info.rnext_key, info.counters
    );
    Ok(())
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Rotate an established connection to a new MKT without a reset (RFC 5925 §7.5.2.e): add the
//! successor, request it with RNextKeyID, wait until the peer uses it, delete the old key.
//! Both ends run in this process over loopback.
//!
//! `cargo run -p tcpao-sys --example rotate`

use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tcpao_sys::{Algorithm, AoKey, KeyFilter, MasterKey, Rotation, RotationStatus, TcpAoExt};

fn key(id: u8, secret: &[u8]) -> Result<AoKey, tcpao_sys::Error> {
    Ok(AoKey::new(
        "127.0.0.1".parse()?,
        id,
        id,
        Algorithm::HmacSha256,
        MasterKey::new(secret)?,
    ))
}

fn ping(a: &Socket, b: &Socket) -> std::io::Result<()> {
    let mut buf = [0u8; 19];
    (&*a).write_all(b"KEEPALIVE 19 bytes.")?;
    (&*b).read_exact(&mut buf)?;
    (&*b).write_all(&buf)?;
    (&*a).read_exact(&mut buf)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let l = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Err(e) = l.add_ao_key(&key(1, b"old secret")?) {
        if e.is_unsupported() {
            println!("this kernel has no TCP-AO: {e}");
            return Ok(());
        }
        return Err(e.into());
    }
    l.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))?;
    l.listen(1)?;
    let c = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    c.add_ao_key(&key(1, b"old secret")?.set_current(true).set_rnext(true))?;
    c.connect_timeout(&l.local_addr()?, Duration::from_secs(2))?;
    let (s, _) = l.accept()?;
    ping(&c, &s)?;

    let old = key(1, b"old secret")?.selector();
    let mut rc = Rotation::start(&c, old, &key(2, b"new secret")?)?;
    let mut rs = Rotation::start(&s, old, &key(2, b"new secret")?)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        ping(&c, &s)?; // traffic carries the new RNextKeyID to the peer
        let (a, b) = (rc.poll()?, rs.poll()?);
        println!("client {a:?}, server {b:?}");
        if a == RotationStatus::Done && b == RotationStatus::Done {
            let k = c.ao_keys(&KeyFilter::All)?;
            println!(
                "rotated: client now has {} key(s), SendID {}",
                k.len(),
                k[0].selector.send_id
            );
            return Ok(());
        }
    }
    Err("rotation did not complete".into())
}

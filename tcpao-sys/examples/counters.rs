// SPDX-License-Identifier: MIT OR Apache-2.0
//! Read per-socket and per-key TCP-AO counters (what a daemon's health check or `doctor`
//! command shows), then reset the per-socket ones. Uses an in-process loopback connection.
//!
//! `cargo run -p tcpao-sys --example counters`

use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
use tcpao_sys::{Algorithm, AoCounters, AoKey, KeyFilter, MasterKey, TcpAoExt};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = |sel: bool| -> Result<AoKey, tcpao_sys::Error> {
        Ok(AoKey::new(
            "127.0.0.1".parse()?,
            3,
            3,
            Algorithm::HmacSha1,
            MasterKey::new(b"counting")?,
        )
        .set_current(sel)
        .set_rnext(sel))
    };
    let l = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Err(e) = l.add_ao_key(&key(false)?) {
        if e.is_unsupported() {
            println!("this kernel has no TCP-AO: {e}");
            return Ok(());
        }
        return Err(e.into());
    }
    l.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))?;
    l.listen(1)?;
    let c = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    c.add_ao_key(&key(true)?)?;
    c.connect_timeout(&l.local_addr()?, Duration::from_secs(2))?;
    let (s, _) = l.accept()?;
    (&c).write_all(&[0u8; 10_000])?;
    (&s).read_exact(&mut [0u8; 10_000])?;

    let info = s.ao_info()?.ok_or("no TCP-AO state")?;
    println!("server socket: {:?}", info.counters);
    for k in s.ao_keys(&KeyFilter::All)? {
        println!(
            "  key {}/{} for {} ({}): good {}, bad {}, current {}, rnext {}",
            k.selector.send_id,
            k.selector.recv_id,
            k.selector.peer,
            k.algorithm,
            k.good,
            k.bad,
            k.is_current,
            k.is_rnext
        );
    }
    s.set_ao_counters(&AoCounters::default())?;
    println!("after reset: {:?}", s.ao_counters()?);
    Ok(())
}

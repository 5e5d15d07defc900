// SPDX-License-Identifier: MIT OR Apache-2.0
//! A small BGP speaker over TCP-AO, to try a router's TCP-AO against Linux (BIRD's, in
//! `docs/interop.md`): it installs the MKTs with `tcpao-sys`, connects to the router or
//! accepts its connection on port 179, brings the session to Established (OPEN, KEEPALIVE),
//! keeps it up, and prints the socket's TCP-AO state every second: Current_key, RNext_key,
//! the counters, and each key's good/bad counts. Lines on stdin change the keys while the
//! session runs:
//!
//! ```text
//! rnext 3                        ask the peer to send with our RecvID 3 (TCP_AO_INFO set_rnext)
//! current 4                      send with our SendID 4 (TCP_AO_INFO set_current)
//! add 5:6:hmac(sha256):FILE      add an MKT whose secret is the content of FILE
//! del 2:1                        delete an MKT (the current or rnext key: EBUSY)
//! ```
//!
//! ```sh
//! cargo run -p tcpao-sys --example bgp_speaker -- --as 65002 --router-id 10.0.0.2 \
//!     --connect 10.0.0.1 --key '2:1:hmac(sha256):/run/k1' --key '4:3:cmac(aes128):/run/k2'
//! cargo run -p tcpao-sys --example bgp_speaker -- --as 65002 --router-id 10.0.0.2 \
//!     --listen 10.0.0.2 --peer 10.0.0.1 --key '2:1:hmac(sha256):/run/k1'
//! ```
//!
//! `--key SENDID:RECVID:ALGORITHM:SECRET_FILE` (the secret is read from the file, trailing
//! newline removed, and never printed). Connecting, the first key is Current_key and
//! RNext_key. Options: `--peer-as N` (checked against the peer's OPEN), `--hold SECS`
//! (default 9), `--duration SECS` (default: until the session ends), `--local ADDR`.

mod speaker;

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};
use speaker::{BGP_PORT, Config, Session};
use tcpao_sys::{
    AcceptCheck, Algorithm, AoKey, AoListener, KeyFilter, KeySelector, MasterKey, PeerPrefix,
    TcpAoExt,
};

type Error = Box<dyn std::error::Error>;

#[derive(Debug, Default)]
struct Args {
    asn: u32,
    peer_as: Option<u32>,
    router_id: Option<Ipv4Addr>,
    connect: Option<IpAddr>,
    listen: Option<IpAddr>,
    peer: Option<IpAddr>,
    local: Option<IpAddr>,
    keys: Vec<String>,
    hold: u16,
    duration: Option<Duration>,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        hold: 9,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--as" => a.asn = val()?.parse()?,
            "--peer-as" => a.peer_as = Some(val()?.parse()?),
            "--router-id" => a.router_id = Some(val()?.parse()?),
            "--connect" => a.connect = Some(val()?.parse()?),
            "--listen" => a.listen = Some(val()?.parse()?),
            "--peer" => a.peer = Some(val()?.parse()?),
            "--local" => a.local = Some(val()?.parse()?),
            "--key" => a.keys.push(val()?),
            "--hold" => a.hold = val()?.parse()?,
            "--duration" => a.duration = Some(Duration::from_secs(val()?.parse()?)),
            "-h" | "--help" => {
                println!(
                    "usage: bgp_speaker --as N (--connect PEER | --listen ADDR --peer PEER) \
                     --key SENDID:RECVID:ALG:SECRET_FILE... [--router-id ID] [--peer-as N] \
                     [--hold SECS] [--duration SECS] [--local ADDR]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    if a.asn == 0 || a.keys.is_empty() || a.connect.is_some() == a.listen.is_some() {
        return Err("need --as, at least one --key, and one of --connect or --listen".into());
    }
    Ok(a)
}

/// `SENDID:RECVID:ALGORITHM:SECRET_FILE` for `peer` (kernel algorithm names such as
/// `hmac(sha256)` have no ':'; the last ':' starts the file name).
fn parse_key(spec: &str, peer: IpAddr) -> Result<AoKey, Error> {
    let mut parts = spec.splitn(3, ':');
    let send: u8 = parts.next().unwrap_or_default().parse()?;
    let recv: u8 = parts.next().unwrap_or_default().parse()?;
    let rest = parts.next().ok_or("--key SENDID:RECVID:ALG:SECRET_FILE")?;
    let (alg, file) = rest
        .rsplit_once(':')
        .ok_or("--key SENDID:RECVID:ALG:SECRET_FILE")?;
    let mut secret = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    let key = MasterKey::new(&secret)?;
    secret.fill(0);
    Ok(AoKey::new(
        PeerPrefix::host(peer)?,
        send,
        recv,
        Algorithm::from_kernel_name(alg),
        key,
    ))
}

fn socket_for(addr: IpAddr) -> Result<Socket, Error> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    Ok(Socket::new(domain, Type::STREAM, None)?)
}

fn status(s: &TcpStream) -> Result<String, Error> {
    let mut line = String::new();
    if let Some(i) = s.ao_info()? {
        line.push_str(&format!(
            "current {} rnext {} good {} bad {} key-not-found {} required {} |",
            i.current_key.map_or("-".into(), |k| k.to_string()),
            i.rnext_key.map_or("-".into(), |k| k.to_string()),
            i.counters.good,
            i.counters.bad,
            i.counters.key_not_found,
            i.counters.ao_required
        ));
    }
    for k in s.ao_keys(&KeyFilter::All)? {
        line.push_str(&format!(
            " {}:{} {} good {} bad {}",
            k.selector.send_id, k.selector.recv_id, k.algorithm, k.good, k.bad
        ));
    }
    Ok(line)
}

fn command(s: &TcpStream, peer: IpAddr, line: &str) -> Result<String, Error> {
    let mut w = line.split_whitespace();
    match (w.next(), w.next()) {
        (Some("rnext"), Some(id)) => s.set_ao_rnext_key(id.parse()?).map(|()| "ok".into()),
        (Some("current"), Some(id)) => s.set_ao_current_key(id.parse()?).map(|()| "ok".into()),
        (Some("add"), Some(spec)) => s.add_ao_key(&parse_key(spec, peer)?).map(|()| "ok".into()),
        (Some("del"), Some(ids)) => {
            let (a, b) = ids.split_once(':').ok_or("del SENDID:RECVID")?;
            let sel = KeySelector::new(PeerPrefix::host(peer)?, a.parse()?, b.parse()?);
            s.del_ao_key(&sel).map(|()| "ok".into())
        }
        _ => return Err(format!("unknown command {line:?}").into()),
    }
    .map_err(Into::into)
}

fn main() -> Result<(), Error> {
    let a = parse_args()?;
    let peer = a.connect.or(a.peer).ok_or("--listen needs --peer")?;
    let keys: Vec<AoKey> = a
        .keys
        .iter()
        .map(|k| parse_key(k, peer))
        .collect::<Result<_, _>>()?;
    let cfg = Config {
        asn: a.asn,
        router_id: a.router_id.unwrap_or(Ipv4Addr::new(192, 0, 2, 1)),
        hold_time: a.hold,
        ipv6: peer.is_ipv6(),
    };
    let stream = if let Some(peer) = a.connect {
        let sk = socket_for(peer)?;
        for (i, k) in keys.into_iter().enumerate() {
            sk.add_ao_key(&k.set_current(i == 0).set_rnext(i == 0))?;
        }
        if let Some(l) = a.local {
            sk.bind(&SockAddr::from(SocketAddr::new(l, 0)))?;
        }
        sk.connect_timeout(
            &SockAddr::from(SocketAddr::new(peer, BGP_PORT)),
            Duration::from_secs(10),
        )?;
        TcpStream::from(sk)
    } else {
        let addr = a.listen.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let l = AoListener::new(socket_for(addr)?);
        for k in &keys {
            l.add_key(k)?; // no current/rnext on a listener (EINVAL)
        }
        l.get_ref().set_reuse_address(true)?;
        l.get_ref()
            .bind(&SockAddr::from(SocketAddr::new(addr, BGP_PORT)))?;
        l.get_ref().listen(1)?;
        eprintln!("listening on {addr} port {BGP_PORT} for {peer}");
        let (child, from) = l.get_ref().accept()?;
        if let AcceptCheck::Mismatch { missing, extra } = l.check_accepted(&child, peer)? {
            eprintln!("accepted socket's keys differ: missing {missing:?}, extra {extra:?}");
        }
        eprintln!("accepted {:?}", from.as_socket());
        TcpStream::from(child)
    };
    let mut session = Session::establish(stream, &cfg, Instant::now() + Duration::from_secs(30))?;
    let p = *session.peer();
    println!(
        "established with AS {} (BGP Identifier {}), hold time {:?}",
        p.asn,
        p.router_id,
        session.hold_time()
    );
    if let Some(want) = a.peer_as {
        if want != p.asn {
            return Err(format!("the peer is AS {}, not AS {want}", p.asn).into());
        }
    }
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = a.duration.map(|d| Instant::now() + d);
    loop {
        let slice = Instant::now() + Duration::from_secs(1);
        session.run_until(end.map_or(slice, |e| e.min(slice)))?;
        println!("{}", status(session.stream())?);
        while let Ok(line) = rx.try_recv() {
            match command(session.stream(), peer, &line) {
                Ok(r) => println!("{line}: {r}"),
                Err(e) => println!("{line}: {e}"),
            }
            session.keepalive_now()?; // carry a new RNextKeyID at once
        }
        if end.is_some_and(|e| Instant::now() >= e) {
            session.shutdown()?;
            return Ok(());
        }
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! TEMPORARY probe (not committed): are listener counter snapshots torn while SYNs are verified?
use crate::counters::Counters;
use crate::failure;
use crate::outcome::PeerResult;
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::registry::Test;
use crate::sockets::{self, TestKey};

/// Tests.
pub fn tests() -> Vec<Test> {
    PairTest::new("torn-probe", "listener").ao().build(server, client)
}

fn server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 4096)?;
    sockets::add_key(p, &lsk, &TestKey::new(p.remote_addr(), 100, 100))?;
    p.sync()?;
    let (mut total, mut torn_key, mut torn_ns) = (0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    while p.peer_signals() == 0 {
        let c = Counters::of(&lsk)?;
        total += 1;
        let sock = c.sock.as_ref().map_or(0, |s| s.good);
        let key = c.keys.first().map_or(0, |k| k.good);
        let ns = c.netns.get("TCPAOGood");
        if sock != key {
            torn_key += 1;
            if examples.len() < 3 {
                examples.push(format!("netns {ns} socket {sock} key {key}"));
            }
        }
        if ns != sock {
            torn_ns += 1;
        }
        if p.peer_failed() {
            return Err(failure!("client failed"));
        }
    }
    let c = Counters::of(&lsk)?;
    p.diag(format!(
        "PROBE: {total} snapshots while SYN/ACKs were verified; socket != key in {torn_key}, netns != socket in {torn_ns}; final {c}; examples {examples:?}"
    ));
    p.sync()?;
    Ok(())
}

fn client(p: &Peer<'_>) -> PeerResult {
    let k = TestKey::new(p.remote_addr(), 100, 100);
    p.sync()?;
    let mut keep = Vec::new();
    for _ in 0..200 {
        let sk = sockets::client_socket(p)?;
        sockets::add_key(p, &sk, &k)?;
        sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
        keep.push(sk);
    }
    p.signal();
    p.sync()?;
    Ok(())
}

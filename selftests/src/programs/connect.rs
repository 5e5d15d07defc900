// SPDX-License-Identifier: MIT OR Apache-2.0
//! `connect`: a basic TCP-AO connection (kernel `connect.c`).
//!
//! Both peers install key 100:100 for each other; the client connects and exchanges 20 echo
//! messages of 100 bytes. The client's netns `TCPAOGood` must grow by at least the number of
//! messages, and its socket and key counters must show `GOOD` only; the server checks the
//! same on its accepted socket.

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::PeerResult;
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::registry::Test;
use crate::sockets::{self, TestKey};

const MESSAGES: usize = 20;
const MESSAGE_LEN: usize = 100;

/// The program's tests.
pub fn tests() -> Vec<Test> {
    PairTest::new("connect", "basic").ao().build(server, client)
}

fn server(p: &Peer<'_>) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    sockets::add_key(p, &lsk, &TestKey::new(p.remote_addr(), 100, 100))?;
    p.sync()?;
    let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))?;
    let before = Counters::of(&sk)?;
    let served = sockets::echo_server(p, &sk, p.deadline())?;
    let after = Counters::of(&sk)?;
    if served != (MESSAGES * MESSAGE_LEN) as u64 {
        return Err(failure!(
            "the server echoed {served} bytes, the client sent {}",
            MESSAGES * MESSAGE_LEN
        ));
    }
    after
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("server counters after serving {served} bytes: {e}"))?;
    p.diag(format!("served {served} bytes; counters {after}"));
    Ok(())
}

fn client(p: &Peer<'_>) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    sockets::add_key(p, &sk, &TestKey::new(p.remote_addr(), 100, 100))?;
    p.sync()?;
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    let before = Counters::of(&sk)?;
    sockets::echo_verify(p, &sk, MESSAGES, MESSAGE_LEN, p.deadline())?;
    let after = Counters::of(&sk)?;
    let ns_grew = after.ns_delta(&before, "TCPAOGood");
    let key = |c: &Counters| c.keys.first().map_or(0, |k| k.good);
    let sock = |c: &Counters| c.sock.map_or(0, |s| s.good);
    let line = format!(
        "connect TCPAOGood {}/{}/{} => {}/{}/{}, sent {MESSAGES}",
        before.netns.ao_good(),
        sock(&before),
        key(&before),
        after.netns.ao_good(),
        sock(&after),
        key(&after)
    );
    if ns_grew < MESSAGES as u64 {
        return Err(failure!(
            "{line}: TCPAOGood grew by {ns_grew}, less than the {MESSAGES} messages echoed"
        ));
    }
    after
        .assert_grew_exactly(&before, Grew::GOOD)
        .map_err(|e| failure!("{line}: {e}"))?;
    p.diag(line);
    Ok(())
}

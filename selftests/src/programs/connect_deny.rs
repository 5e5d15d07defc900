// SPDX-License-Identifier: MIT OR Apache-2.0
//! `connect-deny`: handshakes that must fail, and the counter each failure moves (kernel
//! `connect-deny.c`, all 11 cases), plus the three mismatched-looking setups that must connect.
//!
//! For an expected failure the server polls its listener's counters until the expected one
//! moves (kernel `test_skpair_wait_poll`), then tells the client, whose `connect()` stops
//! waiting at once. The server then asserts that nothing was accepted and that exactly the
//! expected counters grew; the client asserts that nothing reached its socket.

use std::net::IpAddr;

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::PeerResult;
use crate::peers::Peer;
use crate::programs::PairTest;
use crate::registry::Test;
use crate::sockets::{self, Connect, TestKey};

/// What a case expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The handshake times out; the server's `counter` (netns name) moves, with exactly `grew`.
    Timeout { counter: &'static str, grew: Grew },
    /// `connect()` is refused locally (no key matches the destination): EKEYREJECTED.
    Rejected,
    /// The connection is established and verified.
    Connects,
}

type KeyFn = fn(&Peer<'_>) -> TestKey;

/// One row of the kernel's table.
struct Case {
    slug: &'static str,
    server_key: Option<KeyFn>,
    client_key: Option<KeyFn>,
    expect: Expect,
}

fn default_key(p: &Peer<'_>) -> TestKey {
    TestKey::new(p.remote_addr(), 100, 100)
}

fn network_key(p: &Peer<'_>) -> TestKey {
    let (net, len) = p.family().network();
    default_key(p).prefix(net, len)
}

fn wrong_addr_key(p: &Peer<'_>) -> TestKey {
    TestKey::new(p.family().wrong_addr(), 100, 100)
}

const CASES: [Case; 11] = [
    Case {
        slug: "non-ao-server-ao-client",
        server_key: None,
        client_key: Some(default_key),
        expect: Expect::Timeout {
            counter: "TCPAOKeyNotFound",
            grew: Grew::NS_KEY_NOT_FOUND,
        },
    },
    Case {
        slug: "ao-server-non-ao-client",
        server_key: Some(default_key),
        client_key: None,
        expect: Expect::Timeout {
            counter: "TCPAORequired",
            grew: Grew::AO_REQUIRED,
        },
    },
    Case {
        slug: "wrong-password",
        server_key: Some(|p| default_key(p).password(b"A password the client does not know")),
        client_key: Some(default_key),
        expect: Expect::Timeout {
            counter: "TCPAOBad",
            grew: Grew::BAD,
        },
    },
    Case {
        slug: "wrong-rcv-id",
        server_key: Some(|p| TestKey::new(p.remote_addr(), 100, 101)),
        client_key: Some(default_key),
        expect: Expect::Timeout {
            counter: "TCPAOKeyNotFound",
            grew: Grew::KEY_NOT_FOUND,
        },
    },
    Case {
        // The SYN verifies (GOOD) but the server has no key with SendID = the SYN's
        // RNextKeyID, so no SYN-ACK is sent.
        slug: "wrong-snd-id",
        server_key: Some(|p| TestKey::new(p.remote_addr(), 101, 100)),
        client_key: Some(default_key),
        expect: Expect::Timeout {
            counter: "TCPAOGood",
            grew: Grew::GOOD,
        },
    },
    Case {
        slug: "different-maclen",
        server_key: Some(|p| default_key(p).maclen(8)),
        client_key: Some(default_key),
        expect: Expect::Timeout {
            counter: "TCPAOBad",
            grew: Grew::BAD,
        },
    },
    Case {
        slug: "server-wrong-addr",
        server_key: Some(wrong_addr_key),
        client_key: Some(default_key),
        expect: Expect::Timeout {
            counter: "TCPAOKeyNotFound",
            grew: Grew::KEY_NOT_FOUND,
        },
    },
    Case {
        slug: "client-wrong-addr",
        server_key: None,
        client_key: Some(wrong_addr_key),
        expect: Expect::Rejected,
    },
    Case {
        slug: "rcv-id-ne-snd-id",
        server_key: Some(|p| TestKey::new(p.remote_addr(), 200, 100)),
        client_key: Some(|p| TestKey::new(p.remote_addr(), 100, 200)),
        expect: Expect::Connects,
    },
    Case {
        slug: "server-prefix-match",
        server_key: Some(network_key),
        client_key: Some(default_key),
        expect: Expect::Connects,
    },
    Case {
        slug: "client-prefix-match",
        server_key: Some(default_key),
        client_key: Some(network_key),
        expect: Expect::Connects,
    },
];

/// The program's tests: 11 cases × 2 families.
pub fn tests() -> Vec<Test> {
    CASES
        .iter()
        .flat_map(|c| {
            PairTest::new("connect-deny", c.slug)
                .ao()
                .build(move |p| server(p, c), move |p| client(p, c))
        })
        .collect()
}

fn server(p: &Peer<'_>, case: &Case) -> PeerResult {
    let lsk = sockets::listen(p, p.port(), 1)?;
    if let Some(k) = case.server_key {
        sockets::add_key(p, &lsk, &k(p))?;
    }
    let before = Counters::of(&lsk)?;
    p.sync()?;
    match case.expect {
        Expect::Timeout { counter, grew } => {
            let moved = p.wait_for(p.deadline(), || {
                let c = Counters::of(&lsk)?;
                Ok((c.ns_delta(&before, counter) > 0).then_some(c))
            })?;
            let Some(moved) = moved else {
                return Err(failure!(
                    "counter {counter} did not increase within {:?}",
                    p.timeout()
                ));
            };
            p.signal();
            if sockets::accept(p, &lsk, std::time::Instant::now(), || false)?.is_some() {
                return Err(failure!(
                    "a connection was accepted although the handshake had to fail"
                ));
            }
            let after = Counters::of(&lsk)?;
            after.assert_grew_exactly(&before, grew)?;
            p.diag(format!(
                "counter {counter} increased {} => {}",
                before.netns.get(counter),
                moved.netns.get(counter)
            ));
        }
        Expect::Rejected => {
            // Wait until the client's connect() was refused, then check that no SYN came.
            if p.wait_for(p.deadline(), || Ok((p.peer_signals() > 0).then_some(())))?
                .is_none()
            {
                return Err(failure!("the client did not finish its connect() in time"));
            }
            if sockets::accept(p, &lsk, std::time::Instant::now(), || false)?.is_some() {
                return Err(failure!(
                    "a connection was accepted although connect() had to be refused"
                ));
            }
            Counters::of(&lsk)?.assert_grew_exactly(&before, Grew::empty())?;
        }
        Expect::Connects => {
            let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
                .ok_or_else(|| failure!("no connection was accepted within {:?}", p.timeout()))?;
            sockets::echo_server(p, &sk, p.deadline())?;
            let after = Counters::of(&lsk)?;
            after.assert_grew_exactly(&before, Grew::GOOD)?;
            p.diag(format!(
                "counter TCPAOGood increased {} => {}",
                before.netns.ao_good(),
                after.netns.ao_good()
            ));
        }
    }
    Ok(())
}

fn client(p: &Peer<'_>, case: &Case) -> PeerResult {
    let sk = sockets::client_socket(p)?;
    if let Some(k) = case.client_key {
        sockets::add_key(p, &sk, &k(p))?;
    }
    let before = Counters::of(&sk)?;
    p.sync()?;
    let server: IpAddr = p.remote_addr();
    let result = sockets::connect(p, &sk, server, p.port(), p.deadline(), || {
        p.peer_signals() > 0
    })?;
    match (case.expect, result) {
        (Expect::Timeout { .. }, Connect::TimedOut) => {
            // Nothing may have come back to the client.
            Counters::of(&sk)?
                .assert_grew_exactly(&before, Grew::empty())
                .map_err(|e| {
                    failure!("the handshake timed out, but the client's counters moved: {e}")
                })?;
        }
        (Expect::Rejected, Connect::Failed(e))
            if matches!(
                e.raw_os_error(),
                Some(x) if x == nix::errno::Errno::EKEYREJECTED as i32 || x == nix::errno::Errno::ECONNREFUSED as i32
            ) =>
        {
            p.signal();
            p.diag(format!("connect() refused as expected: {e}"));
        }
        (Expect::Connects, Connect::Established) => {
            let c0 = Counters::of(&sk)?;
            sockets::echo_verify(p, &sk, 5, 100, p.deadline())?;
            Counters::of(&sk)?.assert_grew_exactly(&c0, Grew::GOOD)?;
        }
        (Expect::Rejected, r) => {
            p.signal();
            return Err(failure!(
                "connect() was expected to fail with EKEYREJECTED, it ended with {r:?}"
            ));
        }
        (Expect::Timeout { .. }, r) => {
            return Err(failure!(
                "the handshake was expected to time out, it ended with {r:?}"
            ));
        }
        (Expect::Connects, r) => {
            return Err(failure!(
                "the connection was expected to succeed, it ended with {r:?}"
            ));
        }
    }
    Ok(())
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Keys file: the documented format, defaults, and one clear error per kind of mistake.

use std::net::IpAddr;

use tcpao_refimpl::Algorithm;
use tcpao_refimpl::verify::keys::{EntryKey, KeysFile, Role};

const FULL: &str = r#"
[[mkt]]
algorithm = "hmac-sha1"   # hmac-sha1 | aes-128-cmac | hmac-sha256 | md5
secret = "testvector"     # UTF-8, or secret_hex = "74657374766563746f72"
send_id = 61              # KeyID on segments sent by `local` (TCP-AO only)
recv_id = 84              # KeyID on segments sent to `local` (TCP-AO only)
local = "10.11.12.13"     # optional; without it, send_id and recv_id match either direction
peer = "172.27.28.29/32"  # optional prefix that limits the tuple to those peers
include_options = true    # default true (RFC 5925); false = options excluded from the MAC
maclen = 12               # default 12

[[mkt]]
algorithm = "aes-128-cmac"
secret_hex = "74657374766563746f72"
send_id = 1
recv_id = 2

[[mkt]]
algorithm = "md5"
secret = "bgp-md5"
peer = "fd00::/64"

[[flow]]
client = "10.0.0.1:40000"   # the side that sent the SYN; IPv6 as "[fd00::1]:40000"
server = "10.0.0.2:179"
client_isn = 3625560951     # both ISNs, as integers
server_isn = 1885426355
client_sne = 0              # optional: SNE of each side's first captured segment
server_sne = 0

[[flow]]
client = "[fd00::1]:40000"
server = "[fd00::2]:179"
client_isn = 1
server_isn = 4294967295
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn documented_format_parses() {
    let k = KeysFile::parse(FULL).unwrap();
    assert_eq!(k.mkts.len(), 3);
    let e = &k.mkts[0];
    assert_eq!(e.index, 1);
    let m = e.mkt().unwrap();
    assert_eq!(m.algorithm, Algorithm::HmacSha1);
    assert_eq!(e.secret(), b"testvector");
    assert_eq!((m.send_id, m.recv_id), (61, 84));
    assert_eq!(e.local, Some(ip("10.11.12.13")));
    assert_eq!(e.peer.unwrap().to_string(), "172.27.28.29/32");
    assert!(m.include_options);
    assert_eq!(m.mac_len(), 12);
    let e = &k.mkts[1];
    let m = e.mkt().unwrap();
    assert_eq!(m.algorithm, Algorithm::AesCmac128);
    assert_eq!(e.secret(), b"testvector");
    assert!(m.include_options, "default is true");
    assert_eq!(m.mac_len(), 12, "default is 12");
    assert!(matches!(k.mkts[2].key, EntryKey::Md5(_)));
    assert_eq!(k.flows.len(), 2);
    assert_eq!(k.flows[0].client_isn, 3_625_560_951);
    assert_eq!(k.flows[0].server_isn, 1_885_426_355);
    assert_eq!(k.flows[1].server.to_string(), "[fd00::2]:179");
    assert_eq!(k.flows[1].server_isn, u32::MAX);
    assert_eq!((k.flows[1].client_sne, k.flows[1].server_sne), (0, 0));
    let f = k
        .flow_hint(
            "10.0.0.2:179".parse().unwrap(),
            "10.0.0.1:40000".parse().unwrap(),
        )
        .unwrap();
    assert_eq!(f.index, 1);
}

#[test]
fn secrets_are_never_printed() {
    let k = KeysFile::parse(FULL).unwrap();
    let dbg = format!("{k:?}");
    assert!(!dbg.contains("testvector"), "{dbg}");
    assert!(!dbg.contains("bgp-md5"), "{dbg}");
    assert!(!dbg.contains("116, 101, 115"), "{dbg}"); // b"tes" as a byte list
    assert!(dbg.contains("REDACTED"), "{dbg}");
}

#[test]
fn direction_rules() {
    let k = KeysFile::parse(FULL).unwrap();
    let m = &k.mkts[0];
    // local sends with send_id, the peer with recv_id.
    assert_eq!(
        m.role(ip("10.11.12.13"), ip("172.27.28.29")),
        Some(Role::Local)
    );
    assert_eq!(
        m.role(ip("172.27.28.29"), ip("10.11.12.13")),
        Some(Role::Peer)
    );
    assert!(m.matches_ao(ip("10.11.12.13"), ip("172.27.28.29"), 61));
    assert!(!m.matches_ao(ip("10.11.12.13"), ip("172.27.28.29"), 84));
    assert!(m.matches_ao(ip("172.27.28.29"), ip("10.11.12.13"), 84));
    // Not the configured peer.
    assert_eq!(m.role(ip("10.11.12.13"), ip("172.27.28.30")), None);
    // No local/peer: either ID, either way.
    let m = &k.mkts[1];
    assert!(m.matches_ao(ip("1.1.1.1"), ip("2.2.2.2"), 1));
    assert!(m.matches_ao(ip("1.1.1.1"), ip("2.2.2.2"), 2));
    assert!(!m.matches_ao(ip("1.1.1.1"), ip("2.2.2.2"), 3));
    // md5 with a peer prefix: only segments to or from it.
    let m = &k.mkts[2];
    assert!(m.matches_md5(ip("fd00::5"), ip("fe80::1")));
    assert!(!m.matches_md5(ip("fd01::5"), ip("fe80::1")));
    assert!(!m.matches_ao(ip("fd00::5"), ip("fe80::1"), 0));
}

fn err(text: &str) -> String {
    match KeysFile::parse(text) {
        Ok(k) => panic!("accepted: {k:?}"),
        Err(e) => e.to_string(),
    }
}

const BASE: &str = "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"s\"\nsend_id = 1\nrecv_id = 2\n";

#[test]
fn each_mistake_has_a_clear_error() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"s\"\nsend_id = 1\nrecv_id = 2\ncolour = 1\n",
            &["mkt #1", "colour", "unknown field"],
        ),
        (
            &format!(
                "{BASE}[[mkt]]\nalgorithm = \"hmac-md4\"\nsecret = \"s\"\nsend_id = 1\nrecv_id = 2\n"
            ),
            &["mkt #2", "algorithm", "hmac-md4"],
        ),
        (
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"s\"\nsecret_hex = \"00\"\nsend_id = 1\nrecv_id = 2\n",
            &["mkt #1", "secret", "not both"],
        ),
        (
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsend_id = 1\nrecv_id = 2\n",
            &["mkt #1", "secret", "missing"],
        ),
        (
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret_hex = \"7g\"\nsend_id = 1\nrecv_id = 2\n",
            &["mkt #1", "secret_hex", "hex"],
        ),
        (
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret_hex = \"746\"\nsend_id = 1\nrecv_id = 2\n",
            &["mkt #1", "secret_hex", "odd"],
        ),
        (
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"\"\nsend_id = 1\nrecv_id = 2\n",
            &["mkt #1", "secret", "empty"],
        ),
        (
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"s\"\nsend_id = 256\nrecv_id = 2\n",
            &["mkt #1", "send_id", "256", "0..=255"],
        ),
        (
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"s\"\nsend_id = 1\nrecv_id = -1\n",
            &["mkt #1", "recv_id", "-1", "0..=255"],
        ),
        (
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"s\"\nsend_id = \"1\"\nrecv_id = 2\n",
            &["mkt #1", "send_id", "integer"],
        ),
        (
            "[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"s\"\nrecv_id = 2\n",
            &["mkt #1", "send_id", "missing"],
        ),
        (
            &format!("{BASE}maclen = 17\n"),
            &["mkt #1", "maclen", "17", "1..=16"],
        ),
        (&format!("{BASE}maclen = 0\n"), &["mkt #1", "maclen", "0"]),
        (
            &format!("{BASE}include_options = \"yes\"\n"),
            &["mkt #1", "include_options"],
        ),
        (
            &format!("{BASE}peer = \"10.0.0.0/33\"\n"),
            &["mkt #1", "peer", "33"],
        ),
        (
            &format!("{BASE}peer = \"10.0.0.300\"\n"),
            &["mkt #1", "peer", "10.0.0.300"],
        ),
        (
            &format!("{BASE}local = \"fd00::1\"\npeer = \"10.0.0.0/8\"\n"),
            &["mkt #1", "peer", "family"],
        ),
        (
            &format!("{BASE}local = \"host.example\"\n"),
            &["mkt #1", "local"],
        ),
        (
            "[[mkt]]\nalgorithm = \"md5\"\nsecret = \"s\"\nsend_id = 1\n",
            &["mkt #1", "send_id", "md5"],
        ),
        (
            "[[mkt]]\nalgorithm = \"md5\"\nsecret = \"s\"\nmaclen = 12\n",
            &["mkt #1", "maclen", "md5"],
        ),
        (
            "[[mkt]]\nsecret = \"s\"\n",
            &["mkt #1", "algorithm", "missing"],
        ),
        ("", &["no [[mkt]]"]),
        (&format!("{BASE}[keys]\nx = 1\n"), &["keys"]),
        (
            &format!(
                "{BASE}[[flow]]\nclient = \"10.0.0.1\"\nserver = \"10.0.0.2:179\"\nclient_isn = 1\nserver_isn = 2\n"
            ),
            &["flow #1", "client", "ADDR:PORT"],
        ),
        (
            &format!(
                "{BASE}[[flow]]\nclient = \"10.0.0.1:1\"\nserver = \"10.0.0.2:179\"\nclient_isn = 1\n"
            ),
            &["flow #1", "server_isn", "missing"],
        ),
        (
            &format!(
                "{BASE}[[flow]]\nclient = \"10.0.0.1:1\"\nserver = \"10.0.0.2:179\"\nclient_isn = 4294967296\nserver_isn = 1\n"
            ),
            &["flow #1", "client_isn", "4294967296"],
        ),
        (
            &format!(
                "{BASE}[[flow]]\nclient = \"10.0.0.1:1\"\nserver = \"[fd00::2]:179\"\nclient_isn = 1\nserver_isn = 1\n"
            ),
            &["flow #1", "family"],
        ),
        (
            &format!(
                "{BASE}[[flow]]\nclient = \"10.0.0.1:1\"\nserver = \"10.0.0.2:179\"\nclient_isn = 1\nserver_isn = 1\nisn = 3\n"
            ),
            &["flow #1", "isn", "unknown field"],
        ),
        (
            &format!(
                "{BASE}[[flow]]\nclient = \"10.0.0.1:1\"\nserver = \"10.0.0.2:179\"\nclient_isn = 1\nserver_isn = 1\n[[flow]]\nclient = \"10.0.0.2:179\"\nserver = \"10.0.0.1:1\"\nclient_isn = 1\nserver_isn = 1\n"
            ),
            &["flow #2", "twice"],
        ),
        ("[[mkt]\nalgorithm = 1\n", &["invalid TOML"]),
    ];
    for (text, needles) in cases {
        let e = err(text);
        for n in *needles {
            assert!(
                e.contains(n),
                "error {e:?} should mention {n:?} (input {text:?})"
            );
        }
        assert!(!e.contains("\"s\""), "secret leaked in {e:?}");
    }
}

#[test]
fn hex_and_aliases_and_limits() {
    let k = KeysFile::parse(
        "[[mkt]]\nalgorithm = \"HMAC(SHA256)\"\nsecret_hex = \"0x00:FF:10\"\nsend_id = 0\nrecv_id = 255\nmaclen = 16\n",
    )
    .unwrap();
    let e = &k.mkts[0];
    let m = e.mkt().unwrap();
    assert_eq!(m.algorithm, Algorithm::HmacSha256);
    assert_eq!(e.secret(), &[0x00, 0xff, 0x10]);
    assert_eq!(m.mac_len(), 16);
    // aes-128-cmac has a 16-byte digest; 16 is fine.
    assert!(
        KeysFile::parse(
            &BASE
                .replace("hmac-sha1", "aes-128-cmac")
                .replace("recv_id = 2", "recv_id = 2\nmaclen = 16")
        )
        .is_ok()
    );
    // A warning (not an error) for an unscoped tuple with different IDs.
    assert_eq!(KeysFile::parse(BASE).unwrap().warnings.len(), 1);
}

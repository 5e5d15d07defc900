// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `tcpao-verify` binary: exit codes, JSON schema, human output, --explain, errors.

#[path = "support/verify.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::*;
use tcpao_refimpl::Algorithm;
use tcpao_refimpl::capture::LinkType;

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("tcpao-verify-cli-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bin(args: &[&str], keys: &Path, caps: &[&Path]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tcpao-verify"));
    c.arg("--keys").arg(keys).args(args);
    for p in caps {
        c.arg(p);
    }
    c.output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn good_session() -> Vec<Vec<u8>> {
    let mut s = standard(ao(1, 2), ao(2, 1));
    s.conversation(2);
    s.packets
}

#[test]
fn all_good_exits_0_with_json_summary() {
    let t = Tmp::new("good");
    let keys = t.file("keys.toml", KEYS_STD.as_bytes());
    let cap = t.file("good.pcap", &pcap(LinkType::Ethernet, &good_session()));
    let o = bin(&["--json"], &keys, &[&cap]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    let s = &v["summary"];
    for (k, want) in [
        ("good", 10),
        ("bad", 0),
        ("key_not_found", 0),
        ("unsigned", 0),
        ("unverifiable", 0),
        ("TCPAOGood", 10),
        ("TCPAOBad", 0),
        ("TCPAOKeyNotFound", 0),
        ("TCPAORequired", 0),
    ] {
        assert!(s[k].is_u64(), "summary.{k} must be an integer: {s}");
        assert_eq!(s[k].as_u64(), Some(want), "summary.{k}");
    }
    assert_eq!(s["frames"].as_u64(), Some(10));
    assert_eq!(s["result"], "pass");
    let f = &v["flows"][0];
    assert_eq!(f["client"], "10.0.0.1:40000");
    assert_eq!(f["server"], "10.0.0.2:179");
    assert_eq!(f["client_isn"].as_u64(), Some(3_625_560_951));
    assert_eq!(f["counts"]["good"].as_u64(), Some(10));
    assert!(f.get("segments").is_none(), "segments only with --segments");
}

#[test]
fn segments_flag_lists_every_segment() {
    let t = Tmp::new("segments");
    let keys = t.file("keys.toml", KEYS_STD.as_bytes());
    let cap = t.file("good.pcapng", &pcapng(LinkType::LinuxSll2, &good_session()));
    let v = json(&bin(&["--json", "--segments"], &keys, &[&cap]));
    let segs = v["flows"][0]["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 10);
    assert_eq!(segs[0]["frame"].as_u64(), Some(1));
    assert_eq!(segs[0]["flags"], "S");
    assert_eq!(segs[0]["verdict"], "good");
    assert_eq!(segs[0]["key_id"].as_u64(), Some(1));
    assert_eq!(segs[1]["flags"], "S.");
    assert_eq!(segs[1]["key_id"].as_u64(), Some(2));
}

#[test]
fn bad_and_key_not_found_exit_1() {
    let t = Tmp::new("bad");
    let cap = t.file("good.pcap", &pcap(LinkType::Ethernet, &good_session()));
    let keys = t.file(
        "wrong.toml",
        KEYS_STD.replace("\"secret\"", "\"nope\"").as_bytes(),
    );
    let o = bin(&["--json"], &keys, &[&cap]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["summary"]["bad"].as_u64(), Some(10));
    assert_eq!(v["summary"]["result"], "fail");
    assert_eq!(v["flows"][0]["failures"][0]["verdict"], "bad");

    let keys = t.file(
        "ids.toml",
        KEYS_STD.replace("send_id = 1", "send_id = 5").as_bytes(),
    );
    let o = bin(&["--json"], &keys, &[&cap]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["summary"]["key_not_found"].as_u64(), Some(6));
}

#[test]
fn unverifiable_only_exits_0() {
    let t = Tmp::new("unverifiable");
    let keys = t.file("keys.toml", KEYS_STD.as_bytes());
    let cap = t.file("mid.pcap", &pcap(LinkType::Raw(101), &good_session()[3..]));
    let o = bin(&["--json"], &keys, &[&cap]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json(&o)["summary"]["unverifiable"].as_u64(), Some(7));
}

#[test]
fn unusable_input_exits_2() {
    let t = Tmp::new("unusable");
    let keys = t.file("keys.toml", KEYS_STD.as_bytes());
    let cap = t.file("good.pcap", &pcap(LinkType::Ethernet, &good_session()));
    // Bad keys file: names the entry and field.
    let bad = t.file(
        "bad.toml",
        b"[[mkt]]\nalgorithm = \"hmac-sha1\"\nsecret = \"s\"\nsend_id = 300\nrecv_id = 1\n",
    );
    let o = bin(&[], &bad, &[&cap]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mkt #1") && err.contains("send_id"), "{err}");
    // Missing keys file.
    let o = bin(&[], &t.0.join("absent.toml"), &[&cap]);
    assert_eq!(o.status.code(), Some(2));
    // Unreadable / not a capture.
    let o = bin(&[], &keys, &[&t.0.join("absent.pcap")]);
    assert_eq!(o.status.code(), Some(2));
    let junk = t.file("junk.pcap", b"this is not a capture file at all");
    let o = bin(&["--json"], &keys, &[&junk]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json(&o)["summary"]["result"], "error");
    // No capture argument: clap usage error (2).
    let o = Command::new(env!("CARGO_BIN_EXE_tcpao-verify"))
        .arg("--keys")
        .arg(&keys)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn truncated_capture_reports_frame_offset_and_earlier_verdicts() {
    let t = Tmp::new("truncated");
    let keys = t.file("keys.toml", KEYS_STD.as_bytes());
    let full = pcap(LinkType::Ethernet, &good_session());
    let cap = t.file("cut.pcap", &full[..full.len() - 10]);
    let o = bin(&["--json"], &keys, &[&cap]);
    assert_eq!(o.status.code(), Some(2));
    let v = json(&o);
    assert_eq!(v["summary"]["good"].as_u64(), Some(9));
    let e = v["errors"][0].as_str().unwrap();
    assert!(e.contains("frame 10") && e.contains("byte offset"), "{e}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("frame 10"), "{stderr}");
}

#[test]
fn human_output_and_explain() {
    let t = Tmp::new("human");
    let m = mkt(1, 2, Algorithm::HmacSha1, "secret").with_include_options(false);
    let mut s = standard(Signing::Ao(m), ao(2, 1));
    s.conversation(1);
    let keys = t.file("keys.toml", KEYS_STD.as_bytes());
    let cap = t.file("x.pcap", &pcap(LinkType::Ethernet, &s.packets));
    let o = bin(&["--explain"], &keys, &[&cap]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("flow #1  10.0.0.1:40000 -> 10.0.0.2:179"),
        "{out}"
    );
    assert!(out.contains("good 3, bad 5"), "{out}");
    assert!(out.contains("TCPAOBad 5"), "{out}");
    assert!(
        out.contains("diagnosis: 10.0.0.1 signs with TCP options excluded from the MAC; set include_options = false for MKT #1"),
        "{out}"
    );
    assert!(out.contains("result: FAIL"), "{out}");
    // The same with --json carries the diagnosis in the flow.
    let v = json(&bin(&["--json", "--explain"], &keys, &[&cap]));
    assert!(
        v["flows"][0]["diagnosis"][0]
            .as_str()
            .unwrap()
            .contains("include_options = false")
    );
    // --quiet prints only the summary.
    let o = bin(&["--quiet"], &keys, &[&cap]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("flow #1"), "{out}");
    assert!(
        out.contains("summary:") && out.contains("result: FAIL"),
        "{out}"
    );
    // Secrets never appear in any output.
    for args in [
        &["--json", "--segments", "--explain"][..],
        &["--segments"][..],
    ] {
        let o = bin(args, &keys, &[&cap]);
        let all = [o.stdout, o.stderr].concat();
        assert!(!String::from_utf8_lossy(&all).contains("secret\""));
    }
}

#[test]
fn several_captures_in_one_run() {
    let t = Tmp::new("several");
    let keys = t.file("keys.toml", KEYS_STD.as_bytes());
    let a = t.file("a.pcap", &pcap(LinkType::Ethernet, &good_session()));
    let b = t.file("b.pcapng", &pcapng(LinkType::Null, &good_session()));
    let v = json(&bin(&["--json"], &keys, &[&a, &b]));
    assert_eq!(v["summary"]["good"].as_u64(), Some(20));
    assert_eq!(v["flows"].as_array().unwrap().len(), 2);
    assert_eq!(v["captures"].as_array().unwrap().len(), 2);
}

#[test]
fn thread_count_does_not_change_the_report_and_zero_is_refused() {
    let t = Tmp::new("threads");
    let keys = t.file("keys.toml", KEYS_STD.as_bytes());
    // Three connections, one with a wrong server secret, interleaved.
    let mut packets = Vec::new();
    let mut sessions: Vec<Vec<Vec<u8>>> = (0..3u16)
        .map(|i| {
            let ssign = if i == 1 {
                Signing::Ao(mkt(2, 1, Algorithm::HmacSha1, "wrong"))
            } else {
                ao(2, 1)
            };
            let mut s = Session::new(
                sa(&format!("10.0.0.1:{}", 40_000 + i)),
                sa("10.0.0.2:179"),
                1_000 + u32::from(i),
                9_000 + u32::from(i),
                ao(1, 2),
                ssign,
            );
            s.conversation(3);
            s.packets
        })
        .collect();
    while sessions.iter().any(|s| !s.is_empty()) {
        for s in &mut sessions {
            if !s.is_empty() {
                packets.push(s.remove(0));
            }
        }
    }
    let cap = t.file("three.pcap", &pcap(LinkType::Ethernet, &packets));
    let one = bin(&["--json", "--segments", "-j", "1"], &keys, &[&cap]);
    assert_eq!(one.status.code(), Some(1));
    for j in ["2", "3", "8"] {
        let many = bin(&["--json", "--segments", "--threads", j], &keys, &[&cap]);
        assert_eq!(many.status.code(), Some(1));
        assert_eq!(json(&one), json(&many), "--threads {j}");
    }
    let zero = bin(&["-j", "0"], &keys, &[&cap]);
    assert_eq!(zero.status.code(), Some(2));
    let err = String::from_utf8_lossy(&zero.stderr);
    assert!(err.contains("--threads"), "{err}");
}

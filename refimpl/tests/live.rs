// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-verify --live` on the host's loopback, with TCP-MD5 traffic (which kernels without
//! TCP-AO still sign): the BPF filter attached to a real packet socket keeps the signed
//! segments and drops the others, the live report equals the report of the file it wrote,
//! SIGINT and `--duration` end the capture with the report, `--port` keeps unsigned segments.
//! TCP-AO over a veth is checked the same way inside the TCP-AO kernel by the selftest
//! `interop/*/live-verify`.
//!
//! Needs root (`CAP_NET_RAW`) and `CONFIG_TCP_MD5SIG`; otherwise every trial is reported as
//! ignored, with the reason printed. The trials run one at a time: they all capture `lo`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value as Json;
use socket2::{Domain, SockAddr, Socket, Type};
use tcpao_refimpl::capture::live::{FilterSpec, LiveCapture};
use tcpao_refimpl::wire::SegmentRef;
use tcpao_sys::{MasterKey, Md5Ext, Md5Key, PeerPrefix};

const SECRET: &[u8] = b"tcpao-live-md5";
const KEYS: &str =
    "[[mkt]]\nalgorithm = \"md5\"\nsecret = \"tcpao-live-md5\"\npeer = \"127.0.0.0/8\"\n";
const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let skip = why_not();
    if let Some(why) = &skip {
        eprintln!("live capture tests ignored: {why}");
    }
    let trials = vec![
        Trial::test("live/lo/filter-on-a-real-socket", filter_on_a_real_socket),
        Trial::test(
            "live/lo/sigint-report-equals-file-report",
            sigint_report_equals_file,
        ),
        Trial::test("live/lo/duration-and-port", duration_and_port),
        Trial::test("live/any/unknown-interface", unknown_interface),
    ]
    .into_iter()
    .map(|t| t.with_ignored_flag(skip.is_some()))
    .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Why the trials cannot run here, if they cannot.
fn why_not() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (CAP_NET_RAW for a packet socket)".into());
    }
    match tcpao_sys::probe_md5() {
        Ok(true) => None,
        Ok(false) => Some("this kernel has no TCP-MD5 (CONFIG_TCP_MD5SIG)".into()),
        Err(e) => Some(format!("probing TCP-MD5 failed: {e}")),
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tcpao-verify")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tcpao-live-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d.join(name)
}

fn md5_key() -> Md5Key {
    Md5Key {
        peer: PeerPrefix::host(LO).expect("loopback is a host"),
        vrf: None,
        key: MasterKey::new(SECRET).expect("a valid key"),
    }
}

fn err(what: &str) -> impl FnOnce(std::io::Error) -> Failed + '_ {
    move |e| Failed::from(format!("{what}: {e}"))
}

/// A listener on 127.0.0.1 (with the MD5 key when `md5`) and its port.
fn listener(md5: bool) -> Result<(Socket, u16), Failed> {
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(err("socket"))?;
    if md5 {
        l.add_md5_key(&md5_key()).map_err(|e| e.to_string())?;
    }
    l.bind(&SockAddr::from(SocketAddr::new(LO, 0)))
        .map_err(err("bind"))?;
    l.listen(1).map_err(err("listen"))?;
    let port = l
        .local_addr()
        .map_err(err("local_addr"))?
        .as_socket()
        .map_or(0, |a| a.port());
    Ok((l, port))
}

/// Connect to `l`, send `n` messages of 100 bytes each way, close both ends.
fn talk(l: &Socket, md5: bool, n: usize) -> Result<(), Failed> {
    let addr = l.local_addr().map_err(err("local_addr"))?;
    let c = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(err("socket"))?;
    if md5 {
        c.add_md5_key(&md5_key()).map_err(|e| e.to_string())?;
    }
    c.connect_timeout(&addr, Duration::from_secs(5))
        .map_err(err("connect"))?;
    let (s, _) = l.accept().map_err(err("accept"))?;
    let mut c = std::net::TcpStream::from(c);
    let mut s = std::net::TcpStream::from(s);
    let mut buf = [0u8; 100];
    for _ in 0..n {
        c.write_all(&[7; 100]).map_err(err("write"))?;
        s.read_exact(&mut buf).map_err(err("read"))?;
        s.write_all(&buf).map_err(err("write back"))?;
        c.read_exact(&mut buf).map_err(err("read back"))?;
    }
    Ok(())
}

/// [`listener`] and [`talk`]: a whole connection; the listener's port.
fn exchange(md5: bool, n: usize) -> Result<u16, Failed> {
    let (l, port) = listener(md5)?;
    talk(&l, md5, n)?;
    Ok(port)
}

/// The packet socket with the default filter, read in-process: only MD5-signed segments come
/// through, and all of those of the signed connection do.
fn filter_on_a_real_socket() -> Result<(), Failed> {
    let mut cap = LiveCapture::open("lo", &FilterSpec::default()).map_err(|e| e.to_string())?;
    if !cap.filter().drop_outgoing {
        return Err("the loopback capture does not drop the sent copies".into());
    }
    let plain = exchange(false, 5)?;
    let signed = exchange(true, 5)?;
    let mut md5_segments = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let Some(p) = cap.next_packet().map_err(|e| e.to_string())? else {
            break;
        };
        let seg = SegmentRef::parse(p.data).map_err(|e| format!("not TCP/IP: {e}"))?;
        let tcp = seg.tcp_packet();
        let ports = [tcp.src_port(), tcp.dst_port()];
        if ports.contains(&plain) {
            return Err(
                format!("a segment of the unsigned connection (port {plain}) passed").into(),
            );
        }
        let auth = tcp.auth_options().map_err(|e| e.to_string())?;
        if auth.md5.is_none() {
            return Err(format!("a segment without TCP-MD5 passed: ports {ports:?}").into());
        }
        if ports.contains(&signed) {
            md5_segments += 1;
        }
    }
    // Handshake (3), 5 x 2 data segments with their ACKs, and the close: at least 15.
    if md5_segments < 15 {
        return Err(
            format!("only {md5_segments} segments of the signed connection arrived").into(),
        );
    }
    Ok(())
}

/// Start `tcpao-verify --live lo` with `args` and wait until it says it is capturing.
fn start(args: &[&str]) -> Result<(Child, BufReader<std::process::ChildStderr>), Failed> {
    let keys = tmp("keys.toml");
    std::fs::write(&keys, KEYS).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin())
        .arg("--keys")
        .arg(&keys)
        .args(["-i", "lo"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin()))?;
    let mut err = BufReader::new(child.stderr.take().ok_or("no stderr")?);
    let mut line = String::new();
    err.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.contains("capturing") {
        let _ = child.kill();
        return Err(format!("tcpao-verify did not start: {line}").into());
    }
    Ok((child, err))
}

/// Wait for the child to exit (at most 10 s): exit code, stdout, rest of stderr.
fn finish(
    mut child: Child,
    mut err: BufReader<std::process::ChildStderr>,
) -> Result<(i32, String, String), Failed> {
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).map_err(|e| e.to_string())?;
    }
    let mut rest = String::new();
    err.read_to_string(&mut rest).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok((st.code().unwrap_or(-1), out, rest));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("tcpao-verify did not exit".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The report without the capture's name (a file path or `live:lo`).
fn without_names(mut v: Json) -> Json {
    if let Some(o) = v.as_object_mut() {
        o.remove("captures");
    }
    if let Some(flows) = v.get_mut("flows").and_then(Json::as_array_mut) {
        for f in flows {
            if let Some(o) = f.as_object_mut() {
                o.remove("capture");
            }
        }
    }
    v
}

fn sigint_report_equals_file() -> Result<(), Failed> {
    let pcap = tmp("sigint.pcap");
    let pcap_s = pcap.display().to_string();
    let (child, err) = start(&["--json", "-w", &pcap_s])?;
    let plain = exchange(false, 3);
    let signed = exchange(true, 10);
    // No wait needed: on SIGINT the capture reads what its socket holds before reporting.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .map_err(|e| e.to_string())?;
    let (code, out, rest) = finish(child, err)?;
    let (plain, signed) = (plain?, signed?);
    if code != 0 {
        return Err(format!("exit {code}: {rest}").into());
    }
    if !rest.contains("stopped by SIGINT") {
        return Err(format!("no 'stopped by SIGINT' line: {rest}").into());
    }
    let live: Json = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    // The state changes went to stderr (stdout is the JSON document).
    if !rest.contains("first good segment") {
        return Err(format!("no 'first good segment' line: {rest}").into());
    }
    let s = &live["summary"];
    if s["md5_good"].as_u64().unwrap_or(0) < 25 || s["md5_bad"] != 0 || s["not_covered"] != 0 {
        return Err(format!("unexpected live summary: {s}").into());
    }
    let flows = live["flows"].as_array().ok_or("no flows")?;
    let ours = |port: u16| {
        flows.iter().any(|f| {
            [&f["client"], &f["server"]]
                .iter()
                .any(|e| e.as_str().is_some_and(|e| e.ends_with(&format!(":{port}"))))
        })
    };
    if ours(plain) || !ours(signed) {
        return Err(format!("flows: signed {}, unsigned {}", ours(signed), ours(plain)).into());
    }
    let file = Command::new(bin())
        .arg("--keys")
        .arg(tmp("keys.toml"))
        .arg("--json")
        .arg(&pcap)
        .output()
        .map_err(|e| e.to_string())?;
    let file: Json = serde_json::from_slice(&file.stdout).map_err(|e| e.to_string())?;
    let (live, file) = (without_names(live), without_names(file));
    if live != file {
        return Err(format!("live report:\n{live:#}\nfile report:\n{file:#}").into());
    }
    let _ = std::fs::remove_file(&pcap);
    Ok(())
}

/// `--port` keeps the unsigned segments of that port (here covered by the MD5 tuple, so
/// they count as unsigned and the run fails with exit 1), `--duration` ends the capture.
fn duration_and_port() -> Result<(), Failed> {
    let (l, port) = listener(false)?;
    let t0 = Instant::now();
    let (child, err) = start(&["--duration", "1.5", "--port", &port.to_string(), "--json"])?;
    talk(&l, false, 2)?;
    let (code, out, rest) = finish(child, err)?;
    let took = t0.elapsed();
    if !rest.contains("stopped by --duration") || took > Duration::from_secs(8) {
        return Err(format!("took {took:?}: {rest}").into());
    }
    let rep: Json = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let s = &rep["summary"];
    // SYN, SYN-ACK, ACK, 2 x (data, data) with ACKs piggybacked or not: at least 7.
    let unsigned = s["unsigned"].as_u64().unwrap_or(0);
    if code != 1 || unsigned < 7 || unsigned != s["tcp_segments"].as_u64().unwrap_or(0) {
        return Err(format!("exit {code}, summary {s}").into());
    }
    if !rest.contains("first failing segment: unsigned") {
        return Err(format!("no first-failure line: {rest}").into());
    }
    Ok(())
}

fn unknown_interface() -> Result<(), Failed> {
    let keys = tmp("keys.toml");
    std::fs::write(&keys, KEYS).map_err(|e| e.to_string())?;
    let o = Command::new(bin())
        .arg("--keys")
        .arg(&keys)
        .args(["-i", "no-such-if0", "--duration", "1"])
        .output()
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.code() != Some(2) || !err.contains("no interface named \"no-such-if0\"") {
        return Err(format!("exit {:?}: {err}", o.status.code()).into());
    }
    if !err.contains("lo") {
        return Err(format!("the message does not list the interfaces: {err}").into());
    }
    Ok(())
}

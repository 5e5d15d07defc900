// SPDX-License-Identifier: MIT OR Apache-2.0
//! A finding written two ways: a suite test case (the minimised program as JSON, replayed by
//! `fuzz-cases/*` in the selftest suite with the model as the oracle) and a standalone C
//! program that a kernel developer can attach to a report: it builds the same namespaces and
//! devices with `ip`, makes the same calls with the same bytes, and prints each result next to
//! what the model expected.

use std::fmt::Write as _;

use super::encode::{self, Devices};
use super::exec::Finding;
use super::prog::*;

/// The suite case: `{"finding": ..., "prog": ...}`.
pub fn suite_case(p: &Prog, f: &Finding) -> String {
    serde_json::json!({
        "kind": f.kind,
        "op": f.op,
        "detail": f.detail,
        "prog": p,
    })
    .to_string()
}

fn hex(b: &[u8]) -> String {
    let mut s = String::new();
    for (i, x) in b.iter().enumerate() {
        if i % 16 == 0 {
            s.push_str("\n\t\t");
        }
        let _ = write!(s, "0x{x:02x},");
    }
    s
}

/// The C reproducer.
pub fn c_program(p: &Prog, dev: Devices, f: &Finding) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "// SPDX-License-Identifier: GPL-2.0\n\
         // TCP-AO reproducer written by `tcpao-selftests fuzz`.\n\
         // Finding: [{}] at operation {} ({}): {}\n\
         // Build: gcc -o repro repro.c   Run as root (it makes two network namespaces).\n\
         // The uAPI structs are passed as the exact bytes the fuzzer sent (x86-64 layout),\n\
         // so no TCP-AO headers are needed.",
        f.kind,
        f.op,
        f.op_name,
        f.detail.replace('\n', " ")
    );
    c.push_str(
        r#"#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int ns_a, ns_b, fds[4] = {-1, -1, -1, -1};

static void sh(const char *cmd)
{
	if (system(cmd) != 0)
		fprintf(stderr, "setup failed: %s\n", cmd);
}

static void report(int op, const char *what, int rc, int want)
{
	int got = rc < 0 ? errno : 0;
	printf("op %d %s: %s (%d)%s\n", op, what, got ? strerror(got) : "ok", got,
	       want == -1 ? "" : (got == want ? "" : "   <-- the model expected otherwise"));
	if (want != -1 && got != want)
		printf("    expected: %s (%d)\n", want ? strerror(want) : "ok", want);
}

static void new_sock(int s, int v6, int in_b)
{
	if (fds[s] >= 0)
		close(fds[s]);
	if (in_b)
		setns(ns_b, CLONE_NEWNET);
	fds[s] = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (in_b)
		setns(ns_a, CLONE_NEWNET);
}

static void addr(struct sockaddr_storage *ss, socklen_t *len, int v6, const char *ip, int port)
{
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *a = (void *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		inet_pton(AF_INET6, ip, &a->sin6_addr);
		*len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (void *)ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		inet_pton(AF_INET, ip, &a->sin_addr);
		*len = sizeof(*a);
	}
}

int main(void)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc, one = 1;

	(void)one; (void)ss; (void)sl; (void)rc;
	if (unshare(CLONE_NEWNET)) { perror("unshare"); return 1; }
	ns_b = open("/proc/thread-self/ns/net", O_RDONLY);
	sh("ip link set lo up");
	if (unshare(CLONE_NEWNET)) { perror("unshare"); return 1; }
	ns_a = open("/proc/thread-self/ns/net", O_RDONLY);
	sh("ip link set lo up");
	sh("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "ip link add fz0 type veth peer name fz0 netns /proc/%d/fd/%d", getpid(), ns_b);
		sh(cmd);
	}
	sh("ip addr add 10.0.1.1/24 dev fz0; ip addr add fd00:1::1/64 dev fz0; ip link set fz0 up");
	sh("ip link add fzvrf type vrf table 77; ip link set fzvrf up");
	sh("ip tuntap add fztun mode tun; ip addr add 10.0.2.1/24 dev fztun; ip addr add fd00:2::1/64 dev fztun; ip link set fztun up");
	setns(ns_b, CLONE_NEWNET);
	sh("ip addr add 10.0.1.2/24 dev fz0; ip addr add fd00:1::2/64 dev fz0; ip link set fz0 up");
	setns(ns_a, CLONE_NEWNET);
"#,
    );
    let _ = writeln!(
        c,
        "\t/* ifindexes the fuzzer saw: vrf {} veth {}; check `ip link` if they differ. */",
        dev.vrf, dev.veth
    );
    let mut fam = [(false, Ns::A); SLOTS as usize];
    for (i, op) in p.ops.iter().enumerate() {
        let _ = writeln!(c, "\n\t/* {i}: {} */", OpText(op));
        if i == f.op {
            let d: String = f
                .detail
                .chars()
                .map(|ch| {
                    if ch == '"' || ch == '\\' || ch.is_control() {
                        '\''
                    } else {
                        ch
                    }
                })
                .collect();
            let _ = writeln!(
                c,
                "\tprintf(\"op {i}: the fuzzer found here: [{}] {d}\\n\");",
                f.kind
            );
        }
        let want = if i == f.op && f.kind == "divergence" {
            "-1 /* see the finding above */"
        } else {
            "-1"
        };
        let sockopt = |c: &mut String, s: u8, name: i32, b: Option<Vec<u8>>, n: u32, what: &str| {
            match b {
                Some(b) => {
                    let _ = writeln!(
                        c,
                        "\t{{\n\t\tstatic unsigned char b[] = {{{}\n\t\t}};\n\t\trc = setsockopt(fds[{s}], IPPROTO_TCP, {name}, b, {n});\n\t\treport({i}, \"{what}\", rc, {want});\n\t}}",
                        hex(&b)
                    );
                }
                None => {
                    let _ = writeln!(
                        c,
                        "\trc = setsockopt(fds[{s}], IPPROTO_TCP, {name}, NULL, {n});\n\treport({i}, \"{what}\", rc, {want});"
                    );
                }
            }
        };
        match *op {
            Op::Socket { s, v6, ns } => {
                fam[usize::from(s)] = (v6, ns);
                let _ = writeln!(
                    c,
                    "\tnew_sock({s}, {}, {});",
                    u8::from(v6),
                    u8::from(ns == Ns::B)
                );
            }
            Op::Bind { s, addr, port } => {
                let (v6, ns) = fam[usize::from(s)];
                let _ = writeln!(
                    c,
                    "\taddr(&ss, &sl, {}, \"{}\", {});\n\trc = bind(fds[{s}], (void *)&ss, sl);\n\treport({i}, \"bind\", rc, -1);",
                    u8::from(v6),
                    encode::ip(addr, ns, v6),
                    20_000 + u16::from(port)
                );
            }
            Op::Listen { s } => {
                let _ = writeln!(
                    c,
                    "\trc = listen(fds[{s}], 8);\n\treport({i}, \"listen\", rc, -1);"
                );
            }
            Op::Connect { s, dst, port } => {
                let (v6, ns) = fam[usize::from(s)];
                let _ = writeln!(
                    c,
                    "\taddr(&ss, &sl, {}, \"{}\", {});\n\trc = connect(fds[{s}], (void *)&ss, sl);\n\tif (rc < 0 && errno == EINPROGRESS) rc = 0;\n\treport({i}, \"connect\", rc, {want});\n\tusleep(200000);",
                    u8::from(v6),
                    encode::ip(dst, ns, v6),
                    20_000 + u16::from(port)
                );
            }
            Op::Accept { s, into } => {
                fam[usize::from(into)] = fam[usize::from(s)];
                let _ = writeln!(
                    c,
                    "\tusleep(100000);\n\trc = accept4(fds[{s}], NULL, NULL, SOCK_NONBLOCK);\n\tif (rc >= 0) {{ if (fds[{into}] >= 0) close(fds[{into}]); fds[{into}] = rc; }}\n\treport({i}, \"accept\", rc, -1);"
                );
            }
            Op::Send { s, len } => {
                let _ = writeln!(
                    c,
                    "\t{{ static char d[{n}]; rc = send(fds[{s}], d, {len}, MSG_DONTWAIT); report({i}, \"send\", rc < 0 ? -1 : 0, -1); }}",
                    n = len.max(1)
                );
            }
            Op::Recv { s } => {
                let _ = writeln!(
                    c,
                    "\t{{ char d[4096]; rc = recv(fds[{s}], d, sizeof(d), MSG_DONTWAIT); }}"
                );
            }
            Op::Shutdown { s, how } => {
                let _ = writeln!(c, "\tshutdown(fds[{s}], {});", how.min(2));
            }
            Op::Close { s, abort } => {
                if abort {
                    let _ = writeln!(
                        c,
                        "\t{{ struct linger l = {{1, 0}}; setsockopt(fds[{s}], SOL_SOCKET, SO_LINGER, &l, sizeof(l)); }}"
                    );
                }
                let _ = writeln!(c, "\tclose(fds[{s}]);\n\tfds[{s}] = -1;");
            }
            Op::Repair { s, val } => {
                let _ = writeln!(
                    c,
                    "\t{{ int v = {val}; rc = setsockopt(fds[{s}], IPPROTO_TCP, 19 /* TCP_REPAIR */, &v, sizeof(v)); report({i}, \"TCP_REPAIR\", rc, {want}); }}"
                );
            }
            Op::AoAdd { s, a } => {
                let (v6, ns) = fam[usize::from(s)];
                let (b, n) = encode::with_len(encode::add_bytes(&a, ns, v6, &dev), a.len);
                sockopt(&mut c, s, 38, b, n, "TCP_AO_ADD_KEY");
            }
            Op::AoDel { s, d } => {
                let (v6, ns) = fam[usize::from(s)];
                let (b, n) = encode::with_len(encode::del_bytes(&d, ns, v6, &dev), d.len);
                sockopt(&mut c, s, 39, b, n, "TCP_AO_DEL_KEY");
            }
            Op::AoSetInfo { s, i: arg } => {
                let (b, n) = encode::with_len(encode::info_bytes(&arg), arg.len);
                sockopt(&mut c, s, 40, b, n, "TCP_AO_INFO");
            }
            Op::AoSetRepair { s, r } => {
                let (b, n) = encode::with_len(encode::repair_bytes(&r), r.len);
                sockopt(&mut c, s, 42, b, n, "TCP_AO_REPAIR");
            }
            Op::Md5 { s, m } => {
                let (v6, ns) = fam[usize::from(s)];
                let (b, n) = encode::with_len(encode::md5_bytes(&m, ns, v6, &dev), m.len);
                sockopt(
                    &mut c,
                    s,
                    if m.ext { 32 } else { 14 },
                    b,
                    n,
                    if m.ext {
                        "TCP_MD5SIG_EXT"
                    } else {
                        "TCP_MD5SIG"
                    },
                );
            }
            Op::AoGetInfo { s, len } | Op::AoGetRepair { s, len } => {
                let (name, size) = if matches!(op, Op::AoGetInfo { .. }) {
                    (40, encode::INFO_SIZE)
                } else {
                    (42, encode::REPAIR_SIZE)
                };
                let (n, cap) = encode::get_len(len, size);
                let _ = writeln!(
                    c,
                    "\t{{\n\t\tstatic unsigned char b[{cap}];\n\t\tsocklen_t l = {n};\n\t\tmemset(b, 0, sizeof(b));\n\t\trc = getsockopt(fds[{s}], IPPROTO_TCP, {name}, b, &l);\n\t\treport({i}, \"getsockopt {name}\", rc, {want});\n\t}}"
                );
            }
            Op::AoGetKeys { s, g } => {
                let (v6, ns) = fam[usize::from(s)];
                let (n, rec) = encode::get_len(g.len, encode::GET_SIZE);
                let cap = rec.max(usize::from(g.nkeys) * rec).max(encode::GET_SIZE);
                let f0 = encode::get_bytes(&g, ns, v6, &dev);
                let _ = writeln!(
                    c,
                    "\t{{\n\t\tstatic unsigned char b[{cap}];\n\t\tstatic const unsigned char f[] = {{{}\n\t\t}};\n\t\tsocklen_t l = {n};\n\t\tmemset(b, 0, sizeof(b));\n\t\tmemcpy(b, f, sizeof(f));\n\t\trc = getsockopt(fds[{s}], IPPROTO_TCP, 41 /* TCP_AO_GET_KEYS */, b, &l);\n\t\treport({i}, \"TCP_AO_GET_KEYS\", rc, {want});\n\t\tif (!rc) printf(\"    nkeys %u\\n\", *(unsigned int *)(b + 272));\n\t}}",
                    hex(&f0)
                );
            }
            Op::PeerConnect { .. } | Op::PeerSend { .. } => {
                let _ = writeln!(
                    c,
                    "\t/* A segment crafted and signed by the reference implementation through\n\t * fztun: its MAC depends on ISNs chosen at run time, so it is not replayed\n\t * here; run the suite case (`tcpao-selftests fuzz --replay case.json`). */"
                );
            }
        }
    }
    c.push_str("\treturn 0;\n}\n");
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::mutate::{Rng, generate};

    #[test]
    fn c_reproducer_has_every_operation_and_no_key_in_clear_text_form() {
        let p = generate(&mut Rng::new(4));
        let f = Finding {
            kind: "divergence".into(),
            op: 1,
            op_name: "ao-add".into(),
            detail: "x".into(),
        };
        let c = c_program(&p, Devices { vrf: 4, veth: 2 }, &f);
        for i in 0..p.ops.len() {
            assert!(c.contains(&format!("/* {i}: ")), "op {i} missing");
        }
        assert!(c.contains("int main(void)"));
        assert!(c.trim_end().ends_with('}'));
        // The C program must build warning-free (gcc is on every machine of this kind).
        let dir = std::env::temp_dir().join(format!("tcpao-repro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for seed in 0..6 {
            let q = generate(&mut Rng::new(seed));
            let g = Finding {
                op: q.ops.len() - 1,
                detail: "a \"quoted\" detail\nwith a newline".into(),
                ..f.clone()
            };
            let src = dir.join(format!("r{seed}.c"));
            std::fs::write(&src, c_program(&q, Devices { vrf: 4, veth: 2 }, &g)).unwrap();
            let out = std::process::Command::new("gcc")
                .args(["-fsyntax-only", "-Wall", "-Werror"])
                .arg(&src)
                .output()
                .expect("gcc runs");
            assert!(
                out.status.success(),
                "seed {seed}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        let case = suite_case(&p, &f);
        let v: serde_json::Value = serde_json::from_str(&case).unwrap();
        let back: Prog = serde_json::from_value(v["prog"].clone()).unwrap();
        assert_eq!(back, p);
    }
}

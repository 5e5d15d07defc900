// SPDX-License-Identifier: MIT OR Apache-2.0
//! Compare every size, offset, bitfield position and constant in `tcpao_sys::uapi` with the
//! REAL kernel header: Debian sid's `linux-libc-dev` (fetched by
//! `scripts/fetch-linux-libc-dev.sh`), compiled into a C program with `cc`.
//!
//! If the header cannot be fetched or compiled, every trial FAILS with the reason, unless
//! `TCPAO_SKIP_HEADER_CHECK=1`, in which case they are reported as ignored.

use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;
use tcpao_sys::uapi::*;

const C_PROGRAM: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <linux/socket.h>
#include <linux/tcp.h>

#define SZ(T) printf("size %s %zu\n", #T, sizeof(struct T)); \
              printf("align %s %zu\n", #T, _Alignof(struct T));
#define OFF(T, F) printf("offset %s.%s %zu\n", #T, #F, offsetof(struct T, F));
#define CONST(C) printf("const %s %lld\n", #C, (long long)(C));
/* Set one bitfield member in a zeroed struct and report the only non-zero byte. */
#define BIT(T, F) do { struct T s; unsigned char *p = (unsigned char *)&s; size_t i; \
        memset(&s, 0, sizeof s); s.F = 1; \
        for (i = 0; i < sizeof s; i++) if (p[i]) \
            printf("bit %s.%s %zu:%u\n", #T, #F, i, p[i]); } while (0)

int main(void)
{
    SZ(__kernel_sockaddr_storage) OFF(__kernel_sockaddr_storage, ss_family)
    SZ(tcp_ao_add) OFF(tcp_ao_add, addr) OFF(tcp_ao_add, alg_name) OFF(tcp_ao_add, ifindex)
    OFF(tcp_ao_add, reserved2) OFF(tcp_ao_add, prefix) OFF(tcp_ao_add, sndid)
    OFF(tcp_ao_add, rcvid) OFF(tcp_ao_add, maclen) OFF(tcp_ao_add, keyflags)
    OFF(tcp_ao_add, keylen) OFF(tcp_ao_add, key)
    BIT(tcp_ao_add, set_current); BIT(tcp_ao_add, set_rnext);
    SZ(tcp_ao_del) OFF(tcp_ao_del, addr) OFF(tcp_ao_del, ifindex) OFF(tcp_ao_del, reserved2)
    OFF(tcp_ao_del, prefix) OFF(tcp_ao_del, sndid) OFF(tcp_ao_del, rcvid)
    OFF(tcp_ao_del, current_key) OFF(tcp_ao_del, rnext) OFF(tcp_ao_del, keyflags)
    BIT(tcp_ao_del, set_current); BIT(tcp_ao_del, set_rnext); BIT(tcp_ao_del, del_async);
    SZ(tcp_ao_info_opt) OFF(tcp_ao_info_opt, reserved2) OFF(tcp_ao_info_opt, current_key)
    OFF(tcp_ao_info_opt, rnext) OFF(tcp_ao_info_opt, pkt_good) OFF(tcp_ao_info_opt, pkt_bad)
    OFF(tcp_ao_info_opt, pkt_key_not_found) OFF(tcp_ao_info_opt, pkt_ao_required)
    OFF(tcp_ao_info_opt, pkt_dropped_icmp)
    BIT(tcp_ao_info_opt, set_current); BIT(tcp_ao_info_opt, set_rnext);
    BIT(tcp_ao_info_opt, ao_required); BIT(tcp_ao_info_opt, set_counters);
    BIT(tcp_ao_info_opt, accept_icmps);
    SZ(tcp_ao_getsockopt) OFF(tcp_ao_getsockopt, addr) OFF(tcp_ao_getsockopt, alg_name)
    OFF(tcp_ao_getsockopt, key) OFF(tcp_ao_getsockopt, nkeys) OFF(tcp_ao_getsockopt, sndid)
    OFF(tcp_ao_getsockopt, rcvid) OFF(tcp_ao_getsockopt, prefix) OFF(tcp_ao_getsockopt, maclen)
    OFF(tcp_ao_getsockopt, keyflags) OFF(tcp_ao_getsockopt, keylen)
    OFF(tcp_ao_getsockopt, ifindex) OFF(tcp_ao_getsockopt, pkt_good)
    OFF(tcp_ao_getsockopt, pkt_bad)
    BIT(tcp_ao_getsockopt, is_current); BIT(tcp_ao_getsockopt, is_rnext);
    BIT(tcp_ao_getsockopt, get_all);
    SZ(tcp_ao_repair) OFF(tcp_ao_repair, snt_isn) OFF(tcp_ao_repair, rcv_isn)
    OFF(tcp_ao_repair, snd_sne) OFF(tcp_ao_repair, rcv_sne)
    SZ(tcp_md5sig) OFF(tcp_md5sig, tcpm_addr) OFF(tcp_md5sig, tcpm_flags)
    OFF(tcp_md5sig, tcpm_prefixlen) OFF(tcp_md5sig, tcpm_keylen) OFF(tcp_md5sig, tcpm_ifindex)
    OFF(tcp_md5sig, tcpm_key)
    SZ(tcp_repair_opt) OFF(tcp_repair_opt, opt_code) OFF(tcp_repair_opt, opt_val)
    SZ(tcp_repair_window) OFF(tcp_repair_window, snd_wl1) OFF(tcp_repair_window, snd_wnd)
    OFF(tcp_repair_window, max_window) OFF(tcp_repair_window, rcv_wnd)
    OFF(tcp_repair_window, rcv_wup)
    CONST(TCP_MAXSEG) CONST(TCP_INFO) CONST(TCP_MD5SIG) CONST(TCP_REPAIR)
    CONST(TCP_REPAIR_QUEUE) CONST(TCP_QUEUE_SEQ) CONST(TCP_REPAIR_OPTIONS) CONST(TCP_TIMESTAMP)
    CONST(TCP_REPAIR_WINDOW) CONST(TCP_MD5SIG_EXT) CONST(TCP_AO_ADD_KEY) CONST(TCP_AO_DEL_KEY)
    CONST(TCP_AO_INFO) CONST(TCP_AO_GET_KEYS) CONST(TCP_AO_REPAIR) CONST(TCP_REPAIR_ON)
    CONST(TCP_REPAIR_OFF) CONST(TCP_REPAIR_OFF_NO_WP) CONST(TCP_NO_QUEUE) CONST(TCP_RECV_QUEUE)
    CONST(TCP_SEND_QUEUE) CONST(TCPI_OPT_TIMESTAMPS) CONST(TCPI_OPT_SACK) CONST(TCPI_OPT_WSCALE)
    CONST(TCPI_OPT_ECN) CONST(TCP_MD5SIG_MAXKEYLEN) CONST(TCP_MD5SIG_FLAG_PREFIX)
    CONST(TCP_MD5SIG_FLAG_IFINDEX) CONST(TCP_AO_MAXKEYLEN) CONST(TCP_AO_KEYF_IFINDEX)
    CONST(TCP_AO_KEYF_EXCLUDE_OPT) CONST(_K_SS_MAXSIZE)
    return 0;
}
"#;

/// What Rust says, keyed like the C program's output lines (without the value).
fn rust_facts() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    macro_rules! sz {
        ($t:ident) => {
            m.insert(
                format!("size {}", stringify!($t)),
                size_of::<$t>().to_string(),
            );
            m.insert(
                format!("align {}", stringify!($t)),
                align_of::<$t>().to_string(),
            );
        };
    }
    macro_rules! off {
        ($t:ident, $($f:ident),+) => { $(
            m.insert(format!("offset {}.{}", stringify!($t), stringify!($f)), offset_of!($t, $f).to_string());
        )+ };
    }
    macro_rules! konst {
        ($($c:ident),+) => { $( m.insert(format!("const {}", stringify!($c)), ($c as i64).to_string()); )+ };
    }
    // A bitfield constant as "byte offset within the struct : byte value" (native endian).
    let mut bit = |name: &str, word_off: usize, word: &[u8]| {
        let (i, b) = word
            .iter()
            .enumerate()
            .find(|(_, b)| **b != 0)
            .expect("non-zero mask");
        m.insert(format!("bit {name}"), format!("{}:{}", word_off + i, b));
    };
    bit(
        "tcp_ao_add.set_current",
        offset_of!(tcp_ao_add, bitfield),
        &tcp_ao_add::SET_CURRENT.to_ne_bytes(),
    );
    bit(
        "tcp_ao_add.set_rnext",
        offset_of!(tcp_ao_add, bitfield),
        &tcp_ao_add::SET_RNEXT.to_ne_bytes(),
    );
    bit(
        "tcp_ao_del.set_current",
        offset_of!(tcp_ao_del, bitfield),
        &tcp_ao_del::SET_CURRENT.to_ne_bytes(),
    );
    bit(
        "tcp_ao_del.set_rnext",
        offset_of!(tcp_ao_del, bitfield),
        &tcp_ao_del::SET_RNEXT.to_ne_bytes(),
    );
    bit(
        "tcp_ao_del.del_async",
        offset_of!(tcp_ao_del, bitfield),
        &tcp_ao_del::DEL_ASYNC.to_ne_bytes(),
    );
    let io = offset_of!(tcp_ao_info_opt, bitfield);
    bit(
        "tcp_ao_info_opt.set_current",
        io,
        &tcp_ao_info_opt::SET_CURRENT.to_ne_bytes(),
    );
    bit(
        "tcp_ao_info_opt.set_rnext",
        io,
        &tcp_ao_info_opt::SET_RNEXT.to_ne_bytes(),
    );
    bit(
        "tcp_ao_info_opt.ao_required",
        io,
        &tcp_ao_info_opt::AO_REQUIRED.to_ne_bytes(),
    );
    bit(
        "tcp_ao_info_opt.set_counters",
        io,
        &tcp_ao_info_opt::SET_COUNTERS.to_ne_bytes(),
    );
    bit(
        "tcp_ao_info_opt.accept_icmps",
        io,
        &tcp_ao_info_opt::ACCEPT_ICMPS.to_ne_bytes(),
    );
    let go = offset_of!(tcp_ao_getsockopt, bitfield);
    bit(
        "tcp_ao_getsockopt.is_current",
        go,
        &tcp_ao_getsockopt::IS_CURRENT.to_ne_bytes(),
    );
    bit(
        "tcp_ao_getsockopt.is_rnext",
        go,
        &tcp_ao_getsockopt::IS_RNEXT.to_ne_bytes(),
    );
    bit(
        "tcp_ao_getsockopt.get_all",
        go,
        &tcp_ao_getsockopt::GET_ALL.to_ne_bytes(),
    );

    sz!(__kernel_sockaddr_storage);
    off!(__kernel_sockaddr_storage, ss_family);
    sz!(tcp_ao_add);
    off!(
        tcp_ao_add, addr, alg_name, ifindex, reserved2, prefix, sndid, rcvid, maclen, keyflags,
        keylen, key
    );
    sz!(tcp_ao_del);
    off!(
        tcp_ao_del,
        addr,
        ifindex,
        reserved2,
        prefix,
        sndid,
        rcvid,
        current_key,
        rnext,
        keyflags
    );
    sz!(tcp_ao_info_opt);
    off!(
        tcp_ao_info_opt,
        reserved2,
        current_key,
        rnext,
        pkt_good,
        pkt_bad,
        pkt_key_not_found,
        pkt_ao_required,
        pkt_dropped_icmp
    );
    sz!(tcp_ao_getsockopt);
    off!(
        tcp_ao_getsockopt,
        addr,
        alg_name,
        key,
        nkeys,
        sndid,
        rcvid,
        prefix,
        maclen,
        keyflags,
        keylen,
        ifindex,
        pkt_good,
        pkt_bad
    );
    sz!(tcp_ao_repair);
    off!(tcp_ao_repair, snt_isn, rcv_isn, snd_sne, rcv_sne);
    sz!(tcp_md5sig);
    off!(
        tcp_md5sig,
        tcpm_addr,
        tcpm_flags,
        tcpm_prefixlen,
        tcpm_keylen,
        tcpm_ifindex,
        tcpm_key
    );
    sz!(tcp_repair_opt);
    off!(tcp_repair_opt, opt_code, opt_val);
    sz!(tcp_repair_window);
    off!(
        tcp_repair_window,
        snd_wl1,
        snd_wnd,
        max_window,
        rcv_wnd,
        rcv_wup
    );
    konst!(
        TCP_MAXSEG,
        TCP_INFO,
        TCP_MD5SIG,
        TCP_REPAIR,
        TCP_REPAIR_QUEUE,
        TCP_QUEUE_SEQ,
        TCP_REPAIR_OPTIONS,
        TCP_TIMESTAMP,
        TCP_REPAIR_WINDOW,
        TCP_MD5SIG_EXT,
        TCP_AO_ADD_KEY,
        TCP_AO_DEL_KEY,
        TCP_AO_INFO,
        TCP_AO_GET_KEYS,
        TCP_AO_REPAIR,
        TCP_REPAIR_ON,
        TCP_REPAIR_OFF,
        TCP_REPAIR_OFF_NO_WP,
        TCP_NO_QUEUE,
        TCP_RECV_QUEUE,
        TCP_SEND_QUEUE,
        TCPI_OPT_TIMESTAMPS,
        TCPI_OPT_SACK,
        TCPI_OPT_WSCALE,
        TCPI_OPT_ECN,
        TCP_MD5SIG_MAXKEYLEN,
        TCP_MD5SIG_FLAG_PREFIX,
        TCP_MD5SIG_FLAG_IFINDEX,
        TCP_AO_MAXKEYLEN,
        TCP_AO_KEYF_IFINDEX,
        TCP_AO_KEYF_EXCLUDE_OPT,
        _K_SS_MAXSIZE
    );
    m
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            // The last lines carry the reason (the script's own message comes last).
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{what}: non-UTF-8 output: {e}"))
}

/// Fetch the header, compile and run the C program; returns what C says.
fn c_facts() -> Result<(BTreeMap<String, String>, PathBuf), String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = manifest.join("../scripts/fetch-linux-libc-dev.sh");
    let inc = run(
        Command::new("sh").arg(&script),
        "scripts/fetch-linux-libc-dev.sh",
    )?;
    let inc = PathBuf::from(inc.lines().last().unwrap_or("").trim());
    if !inc.join("linux/tcp.h").is_file() {
        return Err(format!("{} has no linux/tcp.h", inc.display()));
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let multiarch = run(
        Command::new(&cc).arg("-print-multiarch"),
        "cc -print-multiarch",
    )
    .unwrap_or_default();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("layout");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, C_PROGRAM).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut c = Command::new(&cc);
    c.arg("-std=c11")
        .arg("-Wall")
        .arg("-Werror")
        .arg(format!("-I{}", inc.display()));
    let ma = multiarch.trim();
    if !ma.is_empty() {
        c.arg(format!("-I{}", inc.join(ma).display()));
    }
    c.arg(&src).arg("-o").arg(&exe);
    run(
        &mut c,
        "compiling the layout probe against the kernel header",
    )?;
    let out = run(&mut Command::new(&exe), "running the layout probe")?;
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let (k, v) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("bad probe line {line:?}"))?;
        if let Some(old) = m.insert(k.to_owned(), v.to_owned()) {
            return Err(format!(
                "{k}: reported twice ({old}, {v}): a bitfield spans several bytes?"
            ));
        }
    }
    Ok((m, inc))
}

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let skip = std::env::var("TCPAO_SKIP_HEADER_CHECK").is_ok_and(|v| v == "1");
    let rust = rust_facts();
    let c = if skip {
        Err("TCPAO_SKIP_HEADER_CHECK=1".to_owned())
    } else {
        c_facts()
    };
    match (&c, skip) {
        (_, true) => eprintln!("note: layout::* trials ignored: TCPAO_SKIP_HEADER_CHECK=1"),
        (Err(why), false) => eprintln!("error: kernel header check cannot run: {why}"),
        (Ok((m, inc)), false) => {
            eprintln!("note: comparing {} facts with {}", m.len(), inc.display())
        }
    }
    // One trial per struct/constant group, so a mismatch names what differs.
    let groups = [
        "__kernel_sockaddr_storage",
        "tcp_ao_add",
        "tcp_ao_del",
        "tcp_ao_info_opt",
        "tcp_ao_getsockopt",
        "tcp_ao_repair",
        "tcp_md5sig",
        "tcp_repair_opt",
        "tcp_repair_window",
        "const",
    ];
    let mut trials = Vec::new();
    for g in groups {
        let c = c.clone();
        let rust: BTreeMap<String, String> = rust
            .iter()
            .filter(|(k, _)| {
                if g == "const" {
                    k.starts_with("const ")
                } else {
                    k.split(' ')
                        .nth(1)
                        .is_some_and(|n| n == g || n.starts_with(&format!("{g}.")))
                }
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        trials.push(
            Trial::test(format!("layout::{g}"), move || -> Result<(), Failed> {
                let (cm, _) = c.map_err(|why| format!("kernel header check cannot run: {why}"))?;
                if rust.is_empty() {
                    return Err("no Rust facts for this group".into());
                }
                let mut bad = Vec::new();
                for (k, v) in &rust {
                    match cm.get(k) {
                        Some(cv) if cv == v => {}
                        Some(cv) => bad.push(format!("{k}: C {cv}, Rust {v}")),
                        None => bad.push(format!("{k}: not reported by the C program")),
                    }
                }
                let c_only: Vec<_> = cm
                    .keys()
                    .filter(|k| {
                        k.split(' ').nth(1).is_some_and(|n| {
                            if g == "const" {
                                k.starts_with("const ")
                            } else {
                                n == g || n.starts_with(&format!("{g}."))
                            }
                        })
                    })
                    .filter(|k| !rust.contains_key(*k))
                    .collect();
                for k in c_only {
                    bad.push(format!("{k}: not checked on the Rust side"));
                }
                if bad.is_empty() {
                    Ok(())
                } else {
                    Err(bad.join("\n").into())
                }
            })
            .with_ignored_flag(skip),
        );
    }
    libtest_mimic::run(&args, trials).exit_code()
}

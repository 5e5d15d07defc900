// SPDX-License-Identifier: MIT OR Apache-2.0
//! `fuzz --kcov-probe`: which TCP-AO functions KCOV sees for the same work done two ways, a
//! connection with a kernel peer over veth (received in softirq) and one with the virtual peer
//! through the TUN device (received in the writer's context). PCs are symbolised with
//! `/proc/kallsyms`.

use std::collections::BTreeMap;

use super::exec::Executor;
use super::prog::*;

/// `(address, name)` of text symbols, sorted.
pub fn kallsyms(text: &str) -> Vec<(u64, String)> {
    let mut v: Vec<(u64, String)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let a = u64::from_str_radix(it.next()?, 16).ok()?;
            let t = it.next()?;
            let n = it.next()?;
            (a != 0 && matches!(t, "t" | "T")).then(|| (a, n.to_owned()))
        })
        .collect();
    v.sort();
    v
}

const KPTR_RESTRICT: &str = "/proc/sys/kernel/kptr_restrict";

/// `/proc/kallsyms` with its addresses. With `kernel.kptr_restrict` set they all read 0; the
/// sysctl is then lowered to 0 for the one read and put back.
///
/// # Errors
/// The file cannot be read, or holds no text symbol with an address even with the sysctl at 0.
fn readable_kallsyms() -> Result<Vec<(u64, String)>, String> {
    let read = || {
        std::fs::read_to_string("/proc/kallsyms")
            .map(|t| kallsyms(&t))
            .map_err(|e| format!("reading /proc/kallsyms: {e}"))
    };
    let syms = read()?;
    if !syms.is_empty() {
        return Ok(syms);
    }
    let old = std::fs::read_to_string(KPTR_RESTRICT).unwrap_or_default();
    let lowered = std::fs::write(KPTR_RESTRICT, "0").is_ok();
    let again = read();
    if lowered {
        let _ = std::fs::write(KPTR_RESTRICT, old.trim());
    }
    match again? {
        s if s.is_empty() => Err(format!(
            "/proc/kallsyms shows no addresses (kernel.kptr_restrict = {}, lowering it {}): \
             PCs cannot be named",
            old.trim(),
            if lowered { "did not help" } else { "failed" }
        )),
        s => Ok(s),
    }
}

/// PCs of `func`, its compiler clones (`.constprop.0`, `.part.0`, `.isra.0`) included.
pub fn pcs_of(by_fn: &BTreeMap<String, usize>, func: &str) -> usize {
    by_fn
        .iter()
        .filter(|(n, _)| n.split('.').next() == Some(func))
        .map(|(_, c)| c)
        .sum()
}

/// Where x86-64 links the kernel's `_text` (`__START_KERNEL_map` + `CONFIG_PHYSICAL_START`).
const LINK_TEXT: u64 = 0xffff_ffff_8100_0000;

/// KCOV reports PCs without the KASLR offset (`canonicalize_ip()` in kernel/kcov.c), and
/// `/proc/kallsyms` shows them with it: the symbols are moved back by `_text`'s offset from
/// its link address.
pub fn canonical(mut syms: Vec<(u64, String)>) -> Vec<(u64, String)> {
    if let Some(off) = syms
        .iter()
        .find(|(_, n)| n == "_text")
        .map(|(a, _)| a.wrapping_sub(LINK_TEXT))
    {
        for s in &mut syms {
            s.0 = s.0.wrapping_sub(off);
        }
    }
    syms
}

/// The function containing `pc`.
pub fn symbol(syms: &[(u64, String)], pc: u64) -> Option<&str> {
    let i = syms.partition_point(|(a, _)| *a <= pc);
    (i > 0).then(|| syms[i - 1].1.as_str())
}

/// Distinct PCs per function.
pub fn by_function(syms: &[(u64, String)], pcs: &[u64]) -> BTreeMap<String, usize> {
    let mut uniq: Vec<u64> = pcs.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let mut m = BTreeMap::new();
    for pc in uniq {
        let f = symbol(syms, pc).unwrap_or("?").to_owned();
        *m.entry(f).or_insert(0) += 1;
    }
    m
}

fn key(addr: Addr, prefix: u8, sndid: u8, rcvid: u8) -> AddArg {
    AddArg {
        addr: AddrArg::Sel(addr),
        prefix,
        sndid,
        rcvid,
        maclen: 0,
        keyflags: 0,
        keylen: 20,
        key_seed: 9,
        alg: Alg::HmacSha1,
        ifindex: IfSel::Zero,
        set_current: false,
        set_rnext: false,
        reserved: 0,
        reserved2: 0,
        len: Len::Exact,
    }
}

/// A TCP-AO connection between A and B over veth, with data both ways.
pub fn veth_prog() -> Prog {
    Prog {
        ops: vec![
            Op::Socket {
                s: 1,
                v6: false,
                ns: Ns::B,
            },
            Op::AoAdd {
                s: 1,
                a: key(Addr::Veth, 32, 1, 1),
            },
            Op::Bind {
                s: 1,
                addr: Addr::Any,
                port: 1,
            },
            Op::Listen { s: 1 },
            Op::Socket {
                s: 0,
                v6: false,
                ns: Ns::A,
            },
            Op::AoAdd {
                s: 0,
                a: key(Addr::Veth, 32, 1, 1),
            },
            Op::Connect {
                s: 0,
                dst: Addr::Veth,
                port: 1,
            },
            Op::Accept { s: 1, into: 2 },
            Op::Send { s: 0, len: 100 },
            Op::Send { s: 2, len: 100 },
            Op::Recv { s: 2 },
            Op::Recv { s: 0 },
        ],
    }
}

/// The same through TUN: the virtual peer connects and sends good and bad segments.
pub fn tun_prog() -> Prog {
    let seg = |auth| Seg {
        auth,
        rnext: None,
        len: 100,
        fin: false,
        rst: false,
        seq_off: 0,
    };
    Prog {
        ops: vec![
            Op::Socket {
                s: 0,
                v6: false,
                ns: Ns::A,
            },
            Op::AoAdd {
                s: 0,
                a: key(Addr::Tun, 32, 1, 1),
            },
            Op::Bind {
                s: 0,
                addr: Addr::Any,
                port: 0,
            },
            Op::Listen { s: 0 },
            Op::PeerConnect {
                s: 0,
                key: 0,
                near_wrap: false,
                auth: SegAuth::Good,
            },
            Op::Accept { s: 0, into: 1 },
            Op::PeerSend {
                seg: seg(SegAuth::Good),
            },
            Op::PeerSend {
                seg: seg(SegAuth::BadMac),
            },
            Op::PeerSend {
                seg: seg(SegAuth::UnknownKey),
            },
            Op::Send { s: 1, len: 100 },
        ],
    }
}

/// Functions of the receive path that matter for TCP-AO.
pub const RX_FUNCTIONS: [&str; 8] = [
    "tcp_v4_rcv",
    "tcp_v6_rcv",
    "tcp_inbound_hash",
    "tcp_inbound_ao_hash",
    "tcp_ao_verify_hash",
    "tcp_rcv_established",
    "tcp_ao_copy_all_matching",
    "tcp_conn_request",
];

/// Runs both programs and prints distinct PCs per function; exit 0 when KCOV is there.
pub fn kcov_probe(ex: &mut Executor) -> i32 {
    if !ex.has_kcov() {
        println!("# kcov-probe: SKIP: no KCOV");
        return 4;
    }
    let syms = match readable_kallsyms() {
        Ok(s) => canonical(s),
        Err(why) => {
            eprintln!("tcpao-selftests fuzz --kcov-probe: {why}");
            return 1;
        }
    };
    let mut out = serde_json::Map::new();
    for (name, p) in [("veth", veth_prog()), ("tun", tun_prog())] {
        let r = ex.run(&p);
        println!(
            "# kcov-probe: {name}: PCs {:#x}..{:#x}; text symbols {:#x}..{:#x} ({})",
            r.pcs.iter().min().unwrap_or(&0),
            r.pcs.iter().max().unwrap_or(&0),
            syms.first().map_or(0, |s| s.0),
            syms.last().map_or(0, |s| s.0),
            syms.len()
        );
        let f = by_function(&syms, &r.pcs);
        let total: usize = f.values().sum();
        println!(
            "# kcov-probe: {name}: {} PCs in {} functions{}",
            total,
            f.len(),
            r.finding
                .as_ref()
                .map_or(String::new(), |x| format!(" (finding: {})", x.detail))
        );
        for func in RX_FUNCTIONS {
            println!("#   {func}: {}", pcs_of(&f, func));
        }
        out.insert(name.into(), serde_json::to_value(&f).unwrap_or_default());
    }
    println!("{}", serde_json::Value::Object(out));
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaslr_offset_is_taken_off_the_symbols() {
        let syms = canonical(kallsyms(
            "ffffffff9ae00000 T _text\nffffffff9ae00100 t tcp_v4_rcv\nffffffff9ae00300 T tcp_ao_verify_hash\n",
        ));
        assert_eq!(symbol(&syms, 0xffff_ffff_8100_0150), Some("tcp_v4_rcv"));
        assert_eq!(
            symbol(&syms, 0xffff_ffff_8100_0301),
            Some("tcp_ao_verify_hash")
        );
        let mut f = BTreeMap::new();
        f.insert("tcp_ao_verify_hash.constprop.0".to_owned(), 6);
        f.insert("tcp_ao_verify_hash".to_owned(), 1);
        f.insert("tcp_ao_verify_hash_x".to_owned(), 9);
        assert_eq!(
            pcs_of(&f, "tcp_ao_verify_hash"),
            7,
            "clones count, other names do not"
        );
        // Without `_text` (not the kernel's table) nothing moves.
        let raw = kallsyms("ffffffff9ae00100 t f\n");
        assert_eq!(canonical(raw.clone()), raw);
    }

    #[test]
    fn symbolisation() {
        let syms = kallsyms(
            "ffffffff81000000 T _stext\nffffffff81000100 t tcp_v4_rcv\nffffffff81000200 T tcp_ao_verify_hash\n0000000000000000 T zero\nffffffff81000300 d data\n",
        );
        assert_eq!(syms.len(), 3);
        assert_eq!(symbol(&syms, 0xffff_ffff_8100_0150), Some("tcp_v4_rcv"));
        assert_eq!(
            symbol(&syms, 0xffff_ffff_8100_0250),
            Some("tcp_ao_verify_hash")
        );
        assert_eq!(symbol(&syms, 0x10), None);
        let m = by_function(
            &syms,
            &[
                0xffff_ffff_8100_0101,
                0xffff_ffff_8100_0101,
                0xffff_ffff_8100_0102,
            ],
        );
        assert_eq!(m["tcp_v4_rcv"], 2);
    }

    #[test]
    fn probe_programs_are_valid() {
        veth_prog().validate().unwrap();
        tun_prog().validate().unwrap();
    }
}

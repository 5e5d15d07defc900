// SPDX-License-Identifier: MIT OR Apache-2.0
//! The classic BPF (cBPF) program of the live capture, and an interpreter to test it.
//!
//! The packet socket is `SOCK_DGRAM`, so the kernel runs the filter on the network-layer
//! packet: offset 0 is the first byte of the IPv4 or IPv6 header, whatever the link type.
//! [`program`] keeps:
//!
//! * by default, TCP segments that carry a TCP-MD5 (kind 19) or TCP-AO (kind 29) option;
//! * with ports or hosts given ([`FilterSpec`]), every TCP segment to or from one of the
//!   ports and one of the hosts, signed or not (so unsigned segments of a signed
//!   connection can be reported).
//!
//! IPv4 fragments other than the first, IPv6 packets whose first next header is not TCP
//! (extension headers) and everything that is not TCP are dropped. On a loopback interface
//! every packet passes the packet socket twice; [`FilterSpec::drop_outgoing`] drops the
//! sent copy (`PACKET_OUTGOING`, read with the `SKF_AD_PKTTYPE` ancillary load).
//!
//! cBPF has no backward jumps, so the walk over the TCP options is unrolled: one step per
//! possible option (40 bytes of options are at most 40 one-byte NOPs), each reading the kind
//! at `X`, accepting 19 and 29, stopping at End of Option List, and moving `X` by one (NOP)
//! or by the option's length. Conditional jumps reach at most 255 instructions ahead, so
//! every block ends in its own `ret` instructions.
//!
//! [`run`] interprets the instructions [`program`] emits with the kernel's semantics (a
//! load beyond the packet ends the program with 0), so the filter is tested on packets
//! without a kernel; the live capture tests also attach it to a real socket.

use std::fmt;
use std::net::IpAddr;

/// Bytes a kept packet is cut to (the kernel keeps `min(packet, this)`): everything.
pub const SNAPLEN: u32 = 262_144;
/// Most ports or hosts a filter takes (each one costs a few instructions).
pub const MAX_SELECTORS: usize = 32;
/// TCP option kinds kept by default: TCP-MD5 (RFC 2385) and TCP-AO (RFC 5925).
pub const SIGNATURE_KINDS: [u8; 2] = [19, 29];
/// `PACKET_OUTGOING` (`<linux/if_packet.h>`).
pub const PACKET_OUTGOING: u8 = 4;

// Instruction classes, sizes, modes, operations (<linux/bpf_common.h>, <linux/filter.h>).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const MSH: u16 = 0xa0;
const ADD: u16 = 0x00;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const RSH: u16 = 0x70;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
const X: u16 = 0x08;
const RET_A: u16 = 0x10;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;
/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: the ancillary load of `skb->pkt_type`.
const AD_PKTTYPE: u32 = 0xffff_f000 + 4;

/// One cBPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

impl fmt::Display for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{ 0x{:02x}, {}, {}, 0x{:08x} }}",
            self.code, self.jt, self.jf, self.k
        )
    }
}

/// Which segments the filter keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// Keep segments from or to these ports (with or without a signature).
    pub ports: Vec<u16>,
    /// Keep segments from or to these hosts (with or without a signature).
    pub hosts: Vec<IpAddr>,
    /// Drop the sent copy of each packet (for loopback interfaces).
    pub drop_outgoing: bool,
}

impl FilterSpec {
    /// Whether the filter selects by ports or hosts instead of by signature option.
    pub fn selects_endpoints(&self) -> bool {
        !self.ports.is_empty() || !self.hosts.is_empty()
    }
}

/// A filter that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

/// A jump target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tgt {
    /// The next instruction.
    Next,
    /// A label.
    L(usize),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    I(Insn),
    /// A conditional jump: opcode, constant, targets.
    J(u16, u32, Tgt, Tgt),
    /// An unconditional jump.
    Ja(usize),
    Label(usize),
}

/// A tiny assembler with labels.
#[derive(Debug, Default)]
struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn at(&mut self, l: usize) {
        self.ops.push(Op::Label(l));
    }
    fn i(&mut self, code: u16, k: u32) {
        self.ops.push(Op::I(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }
    fn j(&mut self, code: u16, k: u32, jt: Tgt, jf: Tgt) {
        self.ops.push(Op::J(JMP | code | K, k, jt, jf));
    }
    /// `jgt x`: A > X.
    fn jgt_x(&mut self, jt: Tgt, jf: Tgt) {
        self.ops.push(Op::J(JMP | JGT | X, 0, jt, jf));
    }
    fn ja(&mut self, l: usize) {
        self.ops.push(Op::Ja(l));
    }
    fn ret(&mut self, k: u32) {
        self.i(RET | K, k);
    }

    fn assemble(self) -> Result<Vec<Insn>, FilterError> {
        let mut pos = vec![usize::MAX; self.labels];
        let mut n = 0usize;
        for op in &self.ops {
            match op {
                Op::Label(l) => pos[*l] = n,
                _ => n += 1,
            }
        }
        let mut out = Vec::with_capacity(n);
        for op in &self.ops {
            let here = out.len();
            let off = |t: Tgt| -> Result<usize, FilterError> {
                match t {
                    Tgt::Next => Ok(0),
                    Tgt::L(l) => pos[l]
                        .checked_sub(here + 1)
                        .ok_or_else(|| FilterError(format!("backward jump to label {l}"))),
                }
            };
            match *op {
                Op::Label(_) => {}
                Op::I(i) => out.push(i),
                Op::J(code, k, jt, jf) => {
                    let (t, f) = (off(jt)?, off(jf)?);
                    let (Ok(jt), Ok(jf)) = (u8::try_from(t), u8::try_from(f)) else {
                        return Err(FilterError(format!(
                            "a conditional jump of {} instructions does not fit cBPF",
                            t.max(f)
                        )));
                    };
                    out.push(Insn { code, jt, jf, k });
                }
                Op::Ja(l) => {
                    let k = off(Tgt::L(l))?;
                    out.push(Insn {
                        code: JMP | JA,
                        jt: 0,
                        jf: 0,
                        k: k as u32,
                    });
                }
            }
        }
        if out.len() > 4096 {
            return Err(FilterError(format!(
                "the filter has {} instructions; the kernel takes at most 4096",
                out.len()
            )));
        }
        Ok(out)
    }
}

/// Emit `jeq` tests of the 32-bit words at `offsets` against `words`; all equal jumps to
/// `hit`, any difference falls through to the end of the block.
fn words_equal(a: &mut Asm, offsets: &[u32], words: &[u32], hit: usize) {
    let miss = a.label();
    for (i, (&off, &w)) in offsets.iter().zip(words).enumerate() {
        a.i(LD | W | ABS, off);
        let last = i + 1 == words.len();
        a.j(
            JEQ,
            w,
            if last { Tgt::L(hit) } else { Tgt::Next },
            Tgt::L(miss),
        );
    }
    a.at(miss);
}

/// The filter program for `spec`.
///
/// # Errors
/// More than [`MAX_SELECTORS`] ports or hosts.
pub fn program(spec: &FilterSpec) -> Result<Vec<Insn>, FilterError> {
    if spec.ports.len() > MAX_SELECTORS || spec.hosts.len() > MAX_SELECTORS {
        return Err(FilterError(format!(
            "at most {MAX_SELECTORS} ports and {MAX_SELECTORS} hosts can be given"
        )));
    }
    let mut a = Asm::default();
    let (v4, v6, tcp) = (a.label(), a.label(), a.label());
    // Block 0: direction and IP version.
    let (rej0, to_v4, to_v6) = (a.label(), a.label(), a.label());
    if spec.drop_outgoing {
        a.i(LD | W | ABS, AD_PKTTYPE);
        a.j(JEQ, u32::from(PACKET_OUTGOING), Tgt::L(rej0), Tgt::Next);
    }
    a.i(LD | B | ABS, 0);
    a.i(ALU | RSH | K, 4);
    a.j(JEQ, 4, Tgt::L(to_v4), Tgt::Next);
    a.j(JEQ, 6, Tgt::L(to_v6), Tgt::L(rej0));
    a.at(rej0);
    a.ret(0);
    a.at(to_v4);
    a.ja(v4);
    a.at(to_v6);
    a.ja(v6);

    // IPv4: TCP, not a later fragment, hosts; X = header length.
    a.at(v4);
    let (rej4, hosts4, host4_ok, no_host4) = (a.label(), a.label(), a.label(), a.label());
    a.i(LD | B | ABS, 9);
    a.j(JEQ, 6, Tgt::Next, Tgt::L(rej4));
    a.i(LD | H | ABS, 6);
    a.j(JSET, 0x1fff, Tgt::L(rej4), Tgt::L(hosts4));
    a.at(rej4);
    a.ret(0);
    a.at(hosts4);
    if !spec.hosts.is_empty() {
        for h in &hosts4_list(&spec.hosts) {
            let ok = a.label();
            a.i(LD | W | ABS, 12);
            a.j(JEQ, *h, Tgt::L(ok), Tgt::Next);
            a.i(LD | W | ABS, 16);
            a.j(JEQ, *h, Tgt::L(ok), Tgt::Next);
            landing(&mut a, ok, host4_ok);
        }
        a.ja(no_host4);
    }
    a.at(host4_ok);
    a.i(LDX | B | MSH, 0);
    a.ja(tcp);
    a.at(no_host4);
    a.ret(0);

    // IPv6: TCP as the first next header, hosts; X = 40.
    a.at(v6);
    let (rej6, hosts6, host6_ok, no_host6) = (a.label(), a.label(), a.label(), a.label());
    a.i(LD | B | ABS, 6);
    a.j(JEQ, 6, Tgt::L(hosts6), Tgt::L(rej6));
    a.at(rej6);
    a.ret(0);
    a.at(hosts6);
    if !spec.hosts.is_empty() {
        for h in &hosts6_list(&spec.hosts) {
            let ok = a.label();
            words_equal(&mut a, &[8, 12, 16, 20], h, ok);
            words_equal(&mut a, &[24, 28, 32, 36], h, ok);
            landing(&mut a, ok, host6_ok);
        }
        a.ja(no_host6);
    }
    a.at(host6_ok);
    a.i(LDX | IMM, 40);
    a.ja(tcp);
    a.at(no_host6);
    a.ret(0);

    // TCP: ports, then either accept (endpoint selection) or walk the options.
    a.at(tcp);
    let (no_port, port_ok) = (a.label(), a.label());
    if !spec.ports.is_empty() {
        for p in &spec.ports {
            let ok = a.label();
            a.i(LD | H | IND, 0);
            a.j(JEQ, u32::from(*p), Tgt::L(ok), Tgt::Next);
            a.i(LD | H | IND, 2);
            a.j(JEQ, u32::from(*p), Tgt::L(ok), Tgt::Next);
            landing(&mut a, ok, port_ok);
        }
        a.ja(no_port);
    }
    a.at(port_ok);
    if spec.selects_endpoints() {
        a.ret(SNAPLEN);
        a.at(no_port);
        a.ret(0);
        return a.assemble();
    }
    let walk = a.label();
    a.ja(walk);
    a.at(no_port);
    a.ret(0);
    a.at(walk);
    // M[0] = end of the options (X + data offset * 4); X = first option byte.
    a.i(LD | B | IND, 12);
    a.i(ALU | AND | K, 0xf0);
    a.i(ALU | RSH | K, 2);
    a.i(ALU | ADD | X, 0);
    a.i(ST, 0);
    a.i(MISC | TXA, 0);
    a.i(ALU | ADD | K, 20);
    a.i(MISC | TAX, 0);
    for _ in 0..40 {
        let (acc, rej, nop, next, adv) = (a.label(), a.label(), a.label(), a.label(), a.label());
        a.i(LD | MEM, 0);
        a.jgt_x(Tgt::Next, Tgt::L(rej)); // end > X: there is an option byte left
        a.i(LD | B | IND, 0);
        a.j(JEQ, u32::from(SIGNATURE_KINDS[0]), Tgt::L(acc), Tgt::Next);
        a.j(JEQ, u32::from(SIGNATURE_KINDS[1]), Tgt::L(acc), Tgt::Next);
        a.j(JEQ, 0, Tgt::L(rej), Tgt::Next); // End of Option List
        a.j(JEQ, 1, Tgt::L(nop), Tgt::Next);
        a.i(LD | B | IND, 1); // the option's length
        a.j(JGE, 2, Tgt::L(adv), Tgt::L(rej)); // a length below 2 is malformed
        a.at(adv);
        a.i(ALU | ADD | X, 0);
        a.i(MISC | TAX, 0);
        a.ja(next);
        a.at(nop);
        a.i(MISC | TXA, 0);
        a.i(ALU | ADD | K, 1);
        a.i(MISC | TAX, 0);
        a.ja(next);
        a.at(acc);
        a.ret(SNAPLEN);
        a.at(rej);
        a.ret(0);
        a.at(next);
    }
    a.ret(0);
    a.assemble()
}

/// A landing pad: falling through skips it; a jump to `ok` goes on to `target` (which may
/// be more than 255 instructions away).
fn landing(a: &mut Asm, ok: usize, target: usize) {
    let after = a.label();
    a.ja(after);
    a.at(ok);
    a.ja(target);
    a.at(after);
}

fn hosts4_list(hosts: &[IpAddr]) -> Vec<u32> {
    hosts
        .iter()
        .filter_map(|h| match h {
            IpAddr::V4(v) => Some(u32::from(*v)),
            IpAddr::V6(_) => None,
        })
        .collect()
}

fn hosts6_list(hosts: &[IpAddr]) -> Vec<[u32; 4]> {
    hosts
        .iter()
        .filter_map(|h| match h {
            IpAddr::V6(v) => {
                let o = v.octets();
                Some(std::array::from_fn(|i| {
                    u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
                }))
            }
            IpAddr::V4(_) => None,
        })
        .collect()
}

/// Metadata the kernel gives a filter besides the packet (ancillary loads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// `skb->pkt_type` (`PACKET_HOST` 0, `PACKET_OUTGOING` 4, ...).
    pub pkt_type: u8,
}

/// Run `prog` on `packet` as the kernel would (for the instructions [`program`] emits):
/// the number of bytes to keep, 0 to drop. A load beyond the packet returns 0, as in the
/// kernel.
///
/// # Panics
/// On an instruction [`program`] never emits, or a jump out of the program (a bug in the
/// program, which the tests are there to find).
pub fn run(prog: &[Insn], packet: &[u8], meta: PacketMeta) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let load = |off: u32, size: u16| -> Option<u32> {
        let off = usize::try_from(off).ok()?;
        let n = match size {
            W => 4,
            H => 2,
            _ => 1,
        };
        let b = packet.get(off..off.checked_add(n)?)?;
        Some(b.iter().fold(0u32, |v, &byte| (v << 8) | u32::from(byte)))
    };
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        pc += 1;
        let class = i.code & 0x07;
        match class {
            LD => match i.code & 0xe0 {
                ABS if i.k == AD_PKTTYPE => a = u32::from(meta.pkt_type),
                ABS => match load(i.k, i.code & 0x18) {
                    Some(v) => a = v,
                    None => return 0,
                },
                IND => match load(x.wrapping_add(i.k), i.code & 0x18) {
                    Some(v) => a = v,
                    None => return 0,
                },
                MEM => a = mem[i.k as usize & 15],
                IMM => a = i.k,
                m => panic!("unsupported load mode 0x{m:02x}"),
            },
            LDX => match i.code & 0xe0 {
                MSH => match load(i.k, B) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                IMM => x = i.k,
                m => panic!("unsupported ldx mode 0x{m:02x}"),
            },
            ST => mem[i.k as usize & 15] = a,
            ALU => {
                let v = if i.code & X != 0 { x } else { i.k };
                a = match i.code & 0xf0 {
                    ADD => a.wrapping_add(v),
                    AND => a & v,
                    LSH => a.checked_shl(v).unwrap_or(0),
                    RSH => a.checked_shr(v).unwrap_or(0),
                    o => panic!("unsupported ALU op 0x{o:02x}"),
                };
            }
            JMP => {
                let v = if i.code & X != 0 { x } else { i.k };
                let taken = match i.code & 0xf0 {
                    JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    JEQ => a == v,
                    JGT => a > v,
                    JGE => a >= v,
                    JSET => a & v != 0,
                    o => panic!("unsupported jump 0x{o:02x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            RET => return if i.code & RET_A != 0 { a } else { i.k },
            MISC => match i.code & 0xf8 {
                TAX => x = a,
                TXA => a = x,
                o => panic!("unsupported misc op 0x{o:02x}"),
            },
            c => panic!("unsupported class {c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{Auth, IpHeader, build_segment};
    use crate::wire::{TcpFlags, TcpRepr};
    use crate::{Algorithm, Connection, Mkt, TrafficKeys};

    const PAYLOAD: &[u8] = b"OPEN";

    fn repr<'a>(options: &'a [u8]) -> TcpRepr<'a> {
        TcpRepr {
            src_port: 40_000,
            dst_port: 179,
            seq_number: 1000,
            ack_number: 2000,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window_len: 512,
            urgent_at: 0,
            options,
            payload: PAYLOAD,
        }
    }

    fn ao_packet(src: &str, dst: &str, options: &[u8]) -> Vec<u8> {
        let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mkt = Mkt::new(1, 2, Algorithm::HmacSha256, "tcpao-interop-k1");
        let conn = Connection::new((s, 40_000).into(), (d, 179).into(), 999, 1999);
        let keys = TrafficKeys::derive(&mkt, &conn).unwrap();
        let sign = crate::sign::AoSign::from_mkt(&mkt, &keys.send_other, 0);
        build_segment(&IpHeader::new(s, d), &repr(options), &Auth::Ao(sign)).unwrap()
    }

    fn packet(src: &str, dst: &str, options: &[u8], auth: &Auth<'_>) -> Vec<u8> {
        let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        build_segment(&IpHeader::new(s, d), &repr(options), auth).unwrap()
    }

    fn keeps(spec: &FilterSpec, pkt: &[u8]) -> bool {
        let prog = program(spec).unwrap();
        run(&prog, pkt, PacketMeta::default()) == SNAPLEN
    }

    #[test]
    fn default_filter_keeps_signed_segments_of_both_families() {
        let spec = FilterSpec::default();
        assert!(keeps(&spec, &ao_packet("10.0.0.1", "10.0.0.2", &[])));
        assert!(keeps(&spec, &ao_packet("2001:db8::1", "2001:db8::2", &[])));
        let md5 = packet("10.0.0.1", "10.0.0.2", &[], &Auth::Md5(b"secret"));
        assert!(keeps(&spec, &md5));
        let md5_6 = packet("2001:db8::1", "2001:db8::2", &[], &Auth::Md5(b"secret"));
        assert!(keeps(&spec, &md5_6));
    }

    #[test]
    fn default_filter_drops_unsigned_segments() {
        let spec = FilterSpec::default();
        assert!(!keeps(
            &spec,
            &packet("10.0.0.1", "10.0.0.2", &[], &Auth::None)
        ));
        // MSS, NOP, NOP, SACK permitted, timestamps: every kind but 19 and 29.
        let opts = [
            2, 4, 5, 180, 1, 1, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1,
        ];
        assert!(!keeps(
            &spec,
            &packet("10.0.0.1", "10.0.0.2", &opts, &Auth::None)
        ));
        let six = packet("2001:db8::1", "2001:db8::2", &opts, &Auth::None);
        assert!(!keeps(&spec, &six));
    }

    #[test]
    fn the_walk_finds_the_signature_after_other_options_and_padding() {
        let spec = FilterSpec::default();
        // 36 bytes of NOPs, then an option of kind 29 in the last 4 bytes.
        let mut opts = vec![1u8; 36];
        opts.extend_from_slice(&[29, 4, 1, 2]);
        let p = packet("10.0.0.1", "10.0.0.2", &opts, &Auth::None);
        assert!(keeps(&spec, &p));
        // A timestamp option hides a 29 in its value: the walk must skip over it.
        let opts = [8, 10, 29, 29, 29, 29, 19, 19, 19, 19, 1, 1];
        assert!(!keeps(
            &spec,
            &packet("10.0.0.1", "10.0.0.2", &opts, &Auth::None)
        ));
        // After End of Option List everything is padding.
        let opts = [1, 0, 29, 4, 1, 2, 0, 0];
        assert!(!keeps(
            &spec,
            &packet("10.0.0.1", "10.0.0.2", &opts, &Auth::None)
        ));
        // A zero length would loop forever in a naive walk; it ends it here.
        let opts = [3, 0, 29, 4, 1, 2, 0, 0];
        assert!(!keeps(
            &spec,
            &packet("10.0.0.1", "10.0.0.2", &opts, &Auth::None)
        ));
        // The signature option after other options: the option area of a signed packet
        // (TCP-AO first, then four NOPs) turned around.
        let mut p = ao_packet("10.0.0.1", "10.0.0.2", &[1, 1, 1, 1]);
        assert_eq!((p[40], p[56]), (29, 1));
        p[40..60].rotate_right(4);
        assert!(keeps(&spec, &p));
    }

    #[test]
    fn fragments_other_protocols_and_extension_headers_are_dropped() {
        let spec = FilterSpec::default();
        let mut p = ao_packet("10.0.0.1", "10.0.0.2", &[]);
        p[6] = 0x00;
        p[7] = 0x10; // fragment offset 16 (x8 bytes)
        assert!(!keeps(&spec, &p));
        let mut p = ao_packet("10.0.0.1", "10.0.0.2", &[]);
        p[9] = 17; // UDP
        assert!(!keeps(&spec, &p));
        let mut p = ao_packet("2001:db8::1", "2001:db8::2", &[]);
        p[6] = 0; // hop-by-hop options header first
        assert!(!keeps(&spec, &p));
        assert!(!keeps(&spec, &[0x60]));
        assert!(!keeps(&spec, &[]));
        let mut p = ao_packet("10.0.0.1", "10.0.0.2", &[]);
        p[0] = 0x55; // IP version 5
        assert!(!keeps(&spec, &p));
    }

    #[test]
    fn truncated_packets_are_dropped_not_read_past() {
        let spec = FilterSpec::default();
        let p = ao_packet("10.0.0.1", "10.0.0.2", &[]);
        // Cut inside the IP header, the TCP header, and before the option kind.
        for cut in [10, 20, 30, 40] {
            assert!(!keeps(&spec, &p[..cut]), "cut at {cut}");
        }
        // A packet cut after the kind is kept (the checker then reports what it cannot
        // verify); the kernel hands the filter whole packets anyway.
        assert!(keeps(&spec, &p[..41]));
    }

    #[test]
    fn ports_and_hosts_select_segments_signed_or_not() {
        let plain = packet("10.0.0.1", "10.0.0.2", &[], &Auth::None);
        let plain6 = packet("2001:db8::1", "2001:db8::2", &[], &Auth::None);
        let port = |p: u16| FilterSpec {
            ports: vec![p],
            ..FilterSpec::default()
        };
        assert!(keeps(&port(179), &plain));
        assert!(keeps(&port(40_000), &plain6));
        assert!(!keeps(&port(180), &plain));
        let hosts = |h: &[&str]| FilterSpec {
            hosts: h.iter().map(|s| s.parse().unwrap()).collect(),
            ..FilterSpec::default()
        };
        assert!(keeps(&hosts(&["10.0.0.2"]), &plain));
        assert!(keeps(&hosts(&["192.0.2.1", "10.0.0.1"]), &plain));
        assert!(!keeps(&hosts(&["10.0.0.3"]), &plain));
        assert!(!keeps(&hosts(&["10.0.0.1"]), &plain6), "no IPv6 host given");
        assert!(keeps(&hosts(&["10.0.0.1", "2001:db8::2"]), &plain6));
        assert!(!keeps(&hosts(&["2001:db8::3"]), &plain6));
        // Hosts and ports together: both must match.
        let both = FilterSpec {
            ports: vec![179],
            hosts: vec!["10.0.0.2".parse().unwrap()],
            ..FilterSpec::default()
        };
        assert!(keeps(&both, &plain));
        let other = packet("10.0.0.3", "10.0.0.4", &[], &Auth::None);
        assert!(!keeps(&both, &other));
    }

    #[test]
    fn outgoing_copies_are_dropped_only_when_asked() {
        let p = ao_packet("127.0.0.1", "127.0.0.1", &[]);
        let out = PacketMeta {
            pkt_type: PACKET_OUTGOING,
        };
        let lo = FilterSpec {
            drop_outgoing: true,
            ..FilterSpec::default()
        };
        let prog = program(&lo).unwrap();
        assert_eq!(run(&prog, &p, out), 0);
        assert_eq!(run(&prog, &p, PacketMeta::default()), SNAPLEN);
        let prog = program(&FilterSpec::default()).unwrap();
        assert_eq!(run(&prog, &p, out), SNAPLEN);
    }

    #[test]
    fn the_largest_filters_assemble_within_cbpf_limits() {
        let spec = FilterSpec {
            ports: (1..=MAX_SELECTORS as u16).collect(),
            hosts: (0..MAX_SELECTORS)
                .map(|i| format!("2001:db8::{i:x}").parse().unwrap())
                .collect(),
            drop_outgoing: true,
        };
        let prog = program(&spec).unwrap();
        assert!(prog.len() <= 4096);
        let too_many = FilterSpec {
            ports: vec![1; MAX_SELECTORS + 1],
            ..FilterSpec::default()
        };
        assert!(program(&too_many).is_err());
        // The default program: the unrolled walk dominates.
        let n = program(&FilterSpec::default()).unwrap().len();
        assert!((600..1000).contains(&n), "{n} instructions");
    }

    #[test]
    fn every_jump_stays_inside_the_program() {
        for spec in [
            FilterSpec::default(),
            FilterSpec {
                ports: vec![179, 646],
                hosts: vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
                drop_outgoing: true,
            },
        ] {
            let prog = program(&spec).unwrap();
            for (pc, i) in prog.iter().enumerate() {
                if i.code & 0x07 == JMP {
                    let far = if i.code & 0xf0 == JA {
                        pc + 1 + i.k as usize
                    } else {
                        pc + 1 + usize::from(i.jt.max(i.jf))
                    };
                    assert!(far < prog.len(), "jump at {pc} leaves the program");
                }
            }
            assert_eq!(prog.last().map(|i| i.code & 0x07), Some(RET));
        }
    }
}

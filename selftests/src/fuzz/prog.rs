// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzz programs: a sequence of [`Op`]s over a few socket slots, with typed arguments that a
//! generator fills mostly sensibly and a mutator pushes to the edges. A program is data: it
//! serialises to JSON (the corpus) and prints as one line per operation (reports, reproducers).
//!
//! Key material in a program is only a seed and a length ([`AddArg::key_seed`]); the bytes
//! are derived when the program runs and never printed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Socket slots a program can use.
pub const SLOTS: u8 = 4;
/// Abstract ports (`p0`..): mapped to real ports per execution.
pub const PORTS: u8 = 3;

/// Where a socket lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ns {
    /// The namespace under test: veth to `B`, a TUN device to the virtual peer, a VRF device.
    A,
    /// The veth peer's namespace.
    B,
}

/// An address as the program names it; the executor maps it to the topology's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Addr {
    /// The other namespace's veth address (seen from A: B's, from B: A's).
    Veth,
    /// The virtual peer behind the TUN device (only reachable from A).
    Tun,
    /// This namespace's own veth address.
    Local,
    /// The any-address (0.0.0.0 or ::).
    Any,
    /// An address nobody has, inside the veth's /24 (/64).
    Unreach,
    /// `::ffff:` + the IPv4 TUN peer (v4-mapped; for IPv4 sockets the plain IPv4 address).
    Mapped,
    /// The TUN-side network with a /24 (/64) prefix: `10.0.2.0` (`fd02::`).
    TunNet,
}

/// A socket address inside a uAPI struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddrArg {
    /// The socket's own family and this address, port 0.
    Sel(Addr),
    /// The other INET family (IPv6 on an IPv4 socket and the reverse) and this address.
    OtherFamily(Addr),
    /// This address with a non-zero port.
    Port(Addr, u16),
    /// A raw `ss_family` with an all-zero address.
    Family(u16),
}

/// The optlen (and optval) of a setsockopt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Len {
    /// `sizeof(struct)`.
    Exact,
    /// Shorter than the struct: this many bytes.
    Short(u16),
    /// The struct plus `extra` bytes, zero (accepted) or with a non-zero last byte (`E2BIG`).
    Long {
        /// Bytes past the struct.
        extra: u16,
        /// Whether the last of them is non-zero.
        nonzero: bool,
    },
    /// A NULL optval with the struct's length (`EFAULT`).
    Null,
}

/// `alg_name` of `TCP_AO_ADD_KEY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alg {
    /// `hmac(sha1)`.
    HmacSha1,
    /// `hmac(sha256)`.
    HmacSha256,
    /// `cmac(aes128)`.
    CmacAes128,
    /// `cmac(aes)` (accepted only with a 16-byte key).
    CmacAes,
    /// `hmac(sha512)`: not in 7.2 (`ENOENT`).
    HmacSha512,
    /// 64 non-NUL bytes `hmac(sha1)AAAA…`: the kernel forces byte 63 to NUL.
    Unterminated,
}

impl Alg {
    /// The bytes written into `alg_name[64]`.
    pub fn name_bytes(self) -> [u8; 64] {
        let mut b = [0u8; 64];
        let s: &[u8] = match self {
            Alg::HmacSha1 => b"hmac(sha1)",
            Alg::HmacSha256 => b"hmac(sha256)",
            Alg::CmacAes128 => b"cmac(aes128)",
            Alg::CmacAes => b"cmac(aes)",
            Alg::HmacSha512 => b"hmac(sha512)",
            Alg::Unterminated => {
                b.fill(b'A');
                b"hmac(sha1)"
            }
        };
        b[..s.len()].copy_from_slice(s);
        b
    }

    /// The kernel's algorithm for a key of `keylen` bytes, if it has one.
    pub fn resolve(self, keylen: u8) -> Option<tcpao_sys::Algorithm> {
        match self {
            Alg::HmacSha1 => Some(tcpao_sys::Algorithm::HmacSha1),
            Alg::HmacSha256 => Some(tcpao_sys::Algorithm::HmacSha256),
            Alg::CmacAes128 => Some(tcpao_sys::Algorithm::AesCmac128),
            Alg::CmacAes if keylen == 16 => Some(tcpao_sys::Algorithm::AesCmac128),
            Alg::CmacAes | Alg::HmacSha512 | Alg::Unterminated => None,
        }
    }
}

/// An interface index argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IfSel {
    /// 0.
    Zero,
    /// The VRF device of namespace A (an L3 master).
    Vrf,
    /// The veth (not an L3 master).
    Veth,
    /// An index no device has.
    Bogus,
}

/// `TCP_AO_ADD_KEY` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddArg {
    /// `addr`.
    pub addr: AddrArg,
    /// `prefix`.
    pub prefix: u8,
    /// `sndid`.
    pub sndid: u8,
    /// `rcvid`.
    pub rcvid: u8,
    /// `maclen` (0: default 12).
    pub maclen: u8,
    /// `keyflags`.
    pub keyflags: u8,
    /// `keylen`.
    pub keylen: u8,
    /// Seed of the key bytes (never the bytes themselves).
    pub key_seed: u8,
    /// `alg_name`.
    pub alg: Alg,
    /// `ifindex`.
    pub ifindex: IfSel,
    /// `set_current`.
    pub set_current: bool,
    /// `set_rnext`.
    pub set_rnext: bool,
    /// `reserved` bits (the 30 bits above the two flags).
    pub reserved: u32,
    /// `reserved2`.
    pub reserved2: u16,
    /// optlen.
    pub len: Len,
}

/// `TCP_AO_DEL_KEY` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelArg {
    /// `addr`.
    pub addr: AddrArg,
    /// `prefix`.
    pub prefix: u8,
    /// `sndid`.
    pub sndid: u8,
    /// `rcvid`.
    pub rcvid: u8,
    /// `current_key` (a SendID).
    pub current_key: u8,
    /// `rnext` (a RecvID).
    pub rnext: u8,
    /// `keyflags`.
    pub keyflags: u8,
    /// `ifindex`.
    pub ifindex: IfSel,
    /// `set_current`.
    pub set_current: bool,
    /// `set_rnext`.
    pub set_rnext: bool,
    /// `del_async`.
    pub del_async: bool,
    /// `reserved` bits.
    pub reserved: u32,
    /// `reserved2`.
    pub reserved2: u16,
    /// optlen.
    pub len: Len,
}

/// `setsockopt(TCP_AO_INFO)` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoArg {
    /// `set_current`.
    pub set_current: bool,
    /// `set_rnext`.
    pub set_rnext: bool,
    /// `ao_required`.
    pub ao_required: bool,
    /// `set_counters`.
    pub set_counters: bool,
    /// `accept_icmps`.
    pub accept_icmps: bool,
    /// `reserved` bits.
    pub reserved: u32,
    /// `reserved2`.
    pub reserved2: u16,
    /// `current_key` (a SendID).
    pub current_key: u8,
    /// `rnext` (a RecvID).
    pub rnext: u8,
    /// Counter values for `set_counters` (good, bad, key_not_found, ao_required, dropped_icmp).
    pub counters: [u32; 5],
    /// optlen.
    pub len: Len,
}

/// The optlen of a getsockopt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GetLen {
    /// `sizeof(struct)`.
    Exact,
    /// This many bytes (1..struct).
    Short(u16),
    /// The struct plus `extra` bytes, zero or with a non-zero last byte.
    Long {
        /// Bytes past the struct.
        extra: u16,
        /// Whether the last is non-zero.
        nonzero: bool,
    },
    /// 0.
    Zero,
    /// -1.
    Negative,
}

/// `getsockopt(TCP_AO_GET_KEYS)` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetArg {
    /// `addr` (`None`: `ss_family` 0).
    pub addr: Option<AddrArg>,
    /// `prefix`.
    pub prefix: u8,
    /// `sndid`.
    pub sndid: u8,
    /// `rcvid`.
    pub rcvid: u8,
    /// `get_all`.
    pub get_all: bool,
    /// `is_current`.
    pub is_current: bool,
    /// `is_rnext`.
    pub is_rnext: bool,
    /// `reserved` (13 bits).
    pub reserved: u16,
    /// `keyflags`.
    pub keyflags: u8,
    /// `ifindex`.
    pub ifindex: IfSel,
    /// `pkt_good` (out-only: must be 0).
    pub pkt_good: u8,
    /// `pkt_bad` (out-only).
    pub pkt_bad: u8,
    /// `nkeys`: the capacity of the array (0..=8).
    pub nkeys: u8,
    /// optlen (per record).
    pub len: GetLen,
}

/// `TCP_MD5SIG`/`TCP_MD5SIG_EXT` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Md5Arg {
    /// `TCP_MD5SIG_EXT` (else `TCP_MD5SIG`).
    pub ext: bool,
    /// `tcpm_addr`.
    pub addr: AddrArg,
    /// `tcpm_flags`.
    pub flags: u8,
    /// `tcpm_prefixlen`.
    pub prefixlen: u8,
    /// `tcpm_keylen` (0 deletes).
    pub keylen: u8,
    /// Seed of the key bytes.
    pub key_seed: u8,
    /// `tcpm_ifindex`.
    pub ifindex: IfSel,
    /// optlen.
    pub len: Len,
}

/// `setsockopt(TCP_AO_REPAIR)` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairArg {
    /// `snt_isn`.
    pub snt_isn: u32,
    /// `rcv_isn`.
    pub rcv_isn: u32,
    /// `snd_sne`.
    pub snd_sne: u32,
    /// `rcv_sne`.
    pub rcv_sne: u32,
    /// optlen.
    pub len: Len,
}

/// How the virtual peer authenticates a crafted segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SegAuth {
    /// A correct TCP-AO MAC with the peer's key.
    Good,
    /// The MAC with one bit flipped.
    BadMac,
    /// A KeyID no key of the socket has as RecvID (correct MAC otherwise).
    UnknownKey,
    /// No authentication option.
    Unsigned,
    /// A TCP-MD5 option (signed with a key derived from the seed).
    Md5,
    /// A MAC length other than the key's (the MAC recomputed and truncated/padded).
    WrongMaclen,
}

/// A segment the virtual peer sends on an established connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seg {
    /// Authentication.
    pub auth: SegAuth,
    /// RNextKeyID asked for: `None` the peer's own RecvID, `Some(id)` a request for key `id`.
    pub rnext: Option<u8>,
    /// Payload bytes (0..=1200).
    pub len: u16,
    /// FIN.
    pub fin: bool,
    /// RST instead of data.
    pub rst: bool,
    /// Sequence number offset from the expected one (0: in window).
    pub seq_off: i32,
}

/// One operation of a program. `s`/`into` are socket slots (`0..SLOTS`), `port` abstract ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `socket(AF_INET{,6}, SOCK_STREAM)` in `ns` into slot `s` (closing what was there).
    Socket {
        /// Slot.
        s: u8,
        /// IPv6.
        v6: bool,
        /// Namespace.
        ns: Ns,
    },
    /// `bind`.
    Bind {
        /// Slot.
        s: u8,
        /// Address.
        addr: Addr,
        /// Abstract port.
        port: u8,
    },
    /// `listen`.
    Listen {
        /// Slot.
        s: u8,
    },
    /// Non-blocking `connect`, then up to 300 ms for the handshake.
    Connect {
        /// Slot.
        s: u8,
        /// Destination.
        dst: Addr,
        /// Abstract port.
        port: u8,
    },
    /// `accept` (non-blocking, up to 300 ms) into slot `into`.
    Accept {
        /// Listener slot.
        s: u8,
        /// Slot for the new socket.
        into: u8,
    },
    /// `send` of `len` bytes.
    Send {
        /// Slot.
        s: u8,
        /// Bytes.
        len: u16,
    },
    /// Non-blocking `recv`.
    Recv {
        /// Slot.
        s: u8,
    },
    /// `shutdown(how)` (0 RD, 1 WR, 2 RDWR).
    Shutdown {
        /// Slot.
        s: u8,
        /// how.
        how: u8,
    },
    /// `close` (with `SO_LINGER {1, 0}` first when `abort`: an RST).
    Close {
        /// Slot.
        s: u8,
        /// Abort with an RST.
        abort: bool,
    },
    /// `setsockopt(TCP_REPAIR, val)`.
    Repair {
        /// Slot.
        s: u8,
        /// 1 on, 0 off, -1 off without window probe, other values invalid.
        val: i8,
    },
    /// `setsockopt(TCP_AO_ADD_KEY)`.
    AoAdd {
        /// Slot.
        s: u8,
        /// Arguments.
        a: AddArg,
    },
    /// `setsockopt(TCP_AO_DEL_KEY)`.
    AoDel {
        /// Slot.
        s: u8,
        /// Arguments.
        d: DelArg,
    },
    /// `setsockopt(TCP_AO_INFO)`.
    AoSetInfo {
        /// Slot.
        s: u8,
        /// Arguments.
        i: InfoArg,
    },
    /// `getsockopt(TCP_AO_INFO)`.
    AoGetInfo {
        /// Slot.
        s: u8,
        /// optlen.
        len: GetLen,
    },
    /// `getsockopt(TCP_AO_GET_KEYS)`.
    AoGetKeys {
        /// Slot.
        s: u8,
        /// Filter.
        g: GetArg,
    },
    /// `setsockopt(TCP_AO_REPAIR)`.
    AoSetRepair {
        /// Slot.
        s: u8,
        /// Arguments.
        r: RepairArg,
    },
    /// `getsockopt(TCP_AO_REPAIR)`.
    AoGetRepair {
        /// Slot.
        s: u8,
        /// optlen.
        len: GetLen,
    },
    /// `setsockopt(TCP_MD5SIG{,_EXT})`.
    Md5 {
        /// Slot.
        s: u8,
        /// Arguments.
        m: Md5Arg,
    },
    /// The virtual peer opens a connection to the listener in slot `s` (SYN, SYN-ACK, ACK
    /// through the TUN device), signing with the `key`-th key of the listener (mod count).
    PeerConnect {
        /// Listener slot.
        s: u8,
        /// Which listener key the peer mirrors.
        key: u8,
        /// Peer ISN just below 2^32 (so data crosses the SNE wrap).
        near_wrap: bool,
        /// The SYN's authentication.
        auth: SegAuth,
    },
    /// The virtual peer sends a segment on its connection.
    PeerSend {
        /// The segment.
        seg: Seg,
    },
}

impl Op {
    /// The slots the operation touches (for minimisation and splicing).
    pub fn slots(&self) -> Vec<u8> {
        match *self {
            Op::Accept { s, into } => vec![s, into],
            Op::PeerSend { .. } => vec![],
            Op::Socket { s, .. }
            | Op::Bind { s, .. }
            | Op::Listen { s }
            | Op::Connect { s, .. }
            | Op::Send { s, .. }
            | Op::Recv { s }
            | Op::Shutdown { s, .. }
            | Op::Close { s, .. }
            | Op::Repair { s, .. }
            | Op::AoAdd { s, .. }
            | Op::AoDel { s, .. }
            | Op::AoSetInfo { s, .. }
            | Op::AoGetInfo { s, .. }
            | Op::AoGetKeys { s, .. }
            | Op::AoSetRepair { s, .. }
            | Op::AoGetRepair { s, .. }
            | Op::Md5 { s, .. }
            | Op::PeerConnect { s, .. } => vec![s],
        }
    }

    /// A short name (`ao-add`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Socket { .. } => "socket",
            Op::Bind { .. } => "bind",
            Op::Listen { .. } => "listen",
            Op::Connect { .. } => "connect",
            Op::Accept { .. } => "accept",
            Op::Send { .. } => "send",
            Op::Recv { .. } => "recv",
            Op::Shutdown { .. } => "shutdown",
            Op::Close { .. } => "close",
            Op::Repair { .. } => "repair",
            Op::AoAdd { .. } => "ao-add",
            Op::AoDel { .. } => "ao-del",
            Op::AoSetInfo { .. } => "ao-set-info",
            Op::AoGetInfo { .. } => "ao-get-info",
            Op::AoGetKeys { .. } => "ao-get-keys",
            Op::AoSetRepair { .. } => "ao-set-repair",
            Op::AoGetRepair { .. } => "ao-get-repair",
            Op::Md5 { .. } => "md5",
            Op::PeerConnect { .. } => "peer-connect",
            Op::PeerSend { .. } => "peer-send",
        }
    }

    /// Whether the operation is a TCP-AO/MD5 socket option (the model predicts its errno).
    pub fn is_sockopt(&self) -> bool {
        matches!(
            self,
            Op::AoAdd { .. }
                | Op::AoDel { .. }
                | Op::AoSetInfo { .. }
                | Op::AoGetInfo { .. }
                | Op::AoGetKeys { .. }
                | Op::AoSetRepair { .. }
                | Op::AoGetRepair { .. }
                | Op::Md5 { .. }
                | Op::Repair { .. }
        )
    }
}

/// A program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prog {
    /// The operations, run in order.
    pub ops: Vec<Op>,
}

impl Prog {
    /// JSON (one line), for the corpus.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses [`Prog::to_json`] output.
    ///
    /// # Errors
    /// A description of the JSON error.
    pub fn from_json(s: &str) -> Result<Prog, String> {
        let p: Prog = serde_json::from_str(s).map_err(|e| e.to_string())?;
        p.validate()?;
        Ok(p)
    }

    /// Checks slot and port numbers (a hand-edited program must not index out of range).
    ///
    /// # Errors
    /// The first bad operation.
    pub fn validate(&self) -> Result<(), String> {
        for (i, op) in self.ops.iter().enumerate() {
            if op.slots().iter().any(|&s| s >= SLOTS) {
                return Err(format!("op {i} ({}): slot out of range", op.name()));
            }
            let port = match *op {
                Op::Bind { port, .. } | Op::Connect { port, .. } => port,
                _ => 0,
            };
            if port >= PORTS {
                return Err(format!("op {i} ({}): port out of range", op.name()));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Prog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "{i:>3}: {}", OpText(op))?;
        }
        Ok(())
    }
}

/// One operation as text: the Debug form, with key seeds shown as seeds (no key bytes exist in
/// a program).
#[derive(Debug)]
pub struct OpText<'a>(pub &'a Op);

impl fmt::Display for OpText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The key bytes of a seed and length: a fixed pattern, so a program replays identically.
pub fn key_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            seed.wrapping_mul(31)
                .wrapping_add((i as u8).wrapping_mul(7))
                ^ 0x5a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_validation() {
        let p = Prog {
            ops: vec![
                Op::Socket {
                    s: 0,
                    v6: true,
                    ns: Ns::A,
                },
                Op::Listen { s: 0 },
                Op::Accept { s: 0, into: 3 },
            ],
        };
        let back = Prog::from_json(&p.to_json()).unwrap();
        assert_eq!(back, p);
        let bad = Prog {
            ops: vec![Op::Close { s: 9, abort: false }],
        };
        assert!(
            Prog::from_json(&bad.to_json())
                .unwrap_err()
                .contains("slot")
        );
        let bad = Prog {
            ops: vec![Op::Bind {
                s: 0,
                addr: Addr::Any,
                port: 7,
            }],
        };
        assert!(bad.validate().unwrap_err().contains("port"));
        assert!(Prog::from_json("{not json").is_err());
    }

    #[test]
    fn alg_names_and_resolution() {
        assert_eq!(&Alg::CmacAes.name_bytes()[..10], b"cmac(aes)\0");
        assert_eq!(Alg::Unterminated.name_bytes()[63], b'A');
        assert_eq!(
            Alg::CmacAes.resolve(16),
            Some(tcpao_sys::Algorithm::AesCmac128)
        );
        assert_eq!(Alg::CmacAes.resolve(20), None);
        assert_eq!(Alg::HmacSha512.resolve(20), None);
    }

    #[test]
    fn key_bytes_depend_on_seed_and_length() {
        assert_eq!(key_bytes(1, 16).len(), 16);
        assert_ne!(key_bytes(1, 16), key_bytes(2, 16));
        assert_eq!(key_bytes(3, 8), key_bytes(3, 8));
    }
}

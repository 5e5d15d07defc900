// SPDX-License-Identifier: MIT OR Apache-2.0
//! Raw mirrors of the Linux TCP-AO, TCP-MD5 and TCP_REPAIR uAPI (`include/uapi/linux/tcp.h`,
//! `include/uapi/linux/socket.h`), Linux ≥ 6.7 for the TCP-AO parts.
//!
//! Kernel names are kept verbatim; there is no logic here. Use the safe API at the crate root
//! ([`crate::TcpAoExt`], [`crate::Md5Ext`], [`crate::repair`]) unless you are writing your own
//! binding. Every size and offset is asserted at compile time against the values GCC gives on
//! LP64/ILP32 Linux, and `tests/layout.rs` compares them with the real kernel header.
//!
//! # Bitfields
//!
//! The C structs pack flags into `__u32`/`__u16` bitfields. GCC allocates bitfields from the
//! least significant bit on little-endian targets and from the most significant bit on
//! big-endian ones, so each flag is exposed as an associated constant whose value depends on
//! `target_endian` (e.g. [`tcp_ao_add::SET_CURRENT`]); OR them into the native-endian
//! `bitfield` word.
//!
//! # Key material
//!
//! Structs that carry key bytes ([`tcp_ao_add`], [`tcp_ao_getsockopt`], [`tcp_md5sig`]) are
//! zeroed on drop, are not `Clone`/`Copy`, and their `Debug` output redacts the key.
#![allow(non_camel_case_types)]

use core::fmt;
use core::mem::{align_of, offset_of, size_of};
use zeroize::Zeroize;

/// Level of the TCP socket options (`SOL_TCP` = `IPPROTO_TCP`).
pub const SOL_TCP: i32 = 6;

/// `TCP_MAXSEG`: limit MSS (read the MSS in use).
pub const TCP_MAXSEG: i32 = 2;
/// `TCP_INFO`: information about this connection (`struct tcp_info`).
pub const TCP_INFO: i32 = 11;
/// `TCP_MD5SIG`: TCP MD5 Signature (RFC 2385).
pub const TCP_MD5SIG: i32 = 14;
/// `TCP_REPAIR`: TCP sock is under repair right now.
pub const TCP_REPAIR: i32 = 19;
/// `TCP_REPAIR_QUEUE`: select the queue that `TCP_QUEUE_SEQ` and repair sends act on.
pub const TCP_REPAIR_QUEUE: i32 = 20;
/// `TCP_QUEUE_SEQ`: sequence number of the selected queue.
pub const TCP_QUEUE_SEQ: i32 = 21;
/// `TCP_REPAIR_OPTIONS`: restore negotiated options (array of [`tcp_repair_opt`]).
pub const TCP_REPAIR_OPTIONS: i32 = 22;
/// `TCP_TIMESTAMP`: timestamp offset / current timestamp value.
pub const TCP_TIMESTAMP: i32 = 24;
/// `TCP_REPAIR_WINDOW`: get/set window parameters ([`tcp_repair_window`]).
pub const TCP_REPAIR_WINDOW: i32 = 29;
/// `TCP_MD5SIG_EXT`: TCP MD5 Signature with extensions (prefix, ifindex).
pub const TCP_MD5SIG_EXT: i32 = 32;
/// `TCP_AO_ADD_KEY`: add/set an MKT ([`tcp_ao_add`]).
pub const TCP_AO_ADD_KEY: i32 = 38;
/// `TCP_AO_DEL_KEY`: delete an MKT ([`tcp_ao_del`]).
pub const TCP_AO_DEL_KEY: i32 = 39;
/// `TCP_AO_INFO`: set/list TCP-AO per-socket options ([`tcp_ao_info_opt`]).
pub const TCP_AO_INFO: i32 = 40;
/// `TCP_AO_GET_KEYS`: list MKTs (array of [`tcp_ao_getsockopt`]).
pub const TCP_AO_GET_KEYS: i32 = 41;
/// `TCP_AO_REPAIR`: get/set SNEs and ISNs ([`tcp_ao_repair`]).
pub const TCP_AO_REPAIR: i32 = 42;

/// `TCP_REPAIR_ON`: value for `TCP_REPAIR`.
pub const TCP_REPAIR_ON: i32 = 1;
/// `TCP_REPAIR_OFF`: value for `TCP_REPAIR` (sends a window probe).
pub const TCP_REPAIR_OFF: i32 = 0;
/// `TCP_REPAIR_OFF_NO_WP`: turn off without window probes.
pub const TCP_REPAIR_OFF_NO_WP: i32 = -1;

/// `TCP_NO_QUEUE`: value for `TCP_REPAIR_QUEUE`.
pub const TCP_NO_QUEUE: i32 = 0;
/// `TCP_RECV_QUEUE`: value for `TCP_REPAIR_QUEUE`.
pub const TCP_RECV_QUEUE: i32 = 1;
/// `TCP_SEND_QUEUE`: value for `TCP_REPAIR_QUEUE`.
pub const TCP_SEND_QUEUE: i32 = 2;

/// `TCP_ESTABLISHED`: a `tcpi_state` value (`include/net/tcp_states.h`; libc has no names
/// for the Linux TCP states).
pub const TCP_ESTABLISHED: u8 = 1;
/// `TCP_SYN_SENT`: a `tcpi_state` value.
pub const TCP_SYN_SENT: u8 = 2;
/// `TCP_SYN_RECV`: a `tcpi_state` value.
pub const TCP_SYN_RECV: u8 = 3;
/// `TCP_FIN_WAIT1`: a `tcpi_state` value.
pub const TCP_FIN_WAIT1: u8 = 4;
/// `TCP_FIN_WAIT2`: a `tcpi_state` value.
pub const TCP_FIN_WAIT2: u8 = 5;
/// `TCP_TIME_WAIT`: a `tcpi_state` value.
pub const TCP_TIME_WAIT: u8 = 6;
/// `TCP_CLOSE`: a `tcpi_state` value.
pub const TCP_CLOSE: u8 = 7;
/// `TCP_CLOSE_WAIT`: a `tcpi_state` value.
pub const TCP_CLOSE_WAIT: u8 = 8;
/// `TCP_LAST_ACK`: a `tcpi_state` value.
pub const TCP_LAST_ACK: u8 = 9;
/// `TCP_LISTEN`: a `tcpi_state` value.
pub const TCP_LISTEN: u8 = 10;
/// `TCP_CLOSING`: a `tcpi_state` value.
pub const TCP_CLOSING: u8 = 11;

/// `TCPOPT_MSS`: `opt_code` for [`tcp_repair_opt`].
pub const TCPOPT_MSS: u32 = 2;
/// `TCPOPT_WINDOW`: `opt_code` for [`tcp_repair_opt`] (`opt_val` = snd_wscale | rcv_wscale << 16).
pub const TCPOPT_WINDOW: u32 = 3;
/// `TCPOPT_SACK_PERM`: `opt_code` for [`tcp_repair_opt`].
pub const TCPOPT_SACK_PERM: u32 = 4;
/// `TCPOPT_TIMESTAMP`: `opt_code` for [`tcp_repair_opt`].
pub const TCPOPT_TIMESTAMP: u32 = 8;

/// `TCPI_OPT_TIMESTAMPS`: bit of `tcpi_options`.
pub const TCPI_OPT_TIMESTAMPS: u8 = 1;
/// `TCPI_OPT_SACK`: bit of `tcpi_options`.
pub const TCPI_OPT_SACK: u8 = 2;
/// `TCPI_OPT_WSCALE`: bit of `tcpi_options`.
pub const TCPI_OPT_WSCALE: u8 = 4;
/// `TCPI_OPT_ECN`: bit of `tcpi_options`.
pub const TCPI_OPT_ECN: u8 = 8;

/// `TCP_MD5SIG_MAXKEYLEN`.
pub const TCP_MD5SIG_MAXKEYLEN: usize = 80;
/// `TCP_MD5SIG_FLAG_PREFIX`: `tcpm_prefixlen` is valid.
pub const TCP_MD5SIG_FLAG_PREFIX: u8 = 0x1;
/// `TCP_MD5SIG_FLAG_IFINDEX`: `tcpm_ifindex` is valid.
pub const TCP_MD5SIG_FLAG_IFINDEX: u8 = 0x2;

/// `TCP_AO_MAXKEYLEN`.
pub const TCP_AO_MAXKEYLEN: usize = 80;
/// `TCP_AO_KEYF_IFINDEX`: L3 ifindex for VRF.
pub const TCP_AO_KEYF_IFINDEX: u8 = 1 << 0;
/// `TCP_AO_KEYF_EXCLUDE_OPT`: TCP options other than TCP-AO are excluded from the MAC.
pub const TCP_AO_KEYF_EXCLUDE_OPT: u8 = 1 << 1;

/// `_K_SS_MAXSIZE`.
pub const _K_SS_MAXSIZE: usize = 128;

/// `__kernel_sa_family_t`.
pub type __kernel_sa_family_t = u16;

/// The bit of a C bitfield member declared at position `lsb_index` (counting from the first
/// declared member) in a `width`-bit storage unit, as GCC allocates it on this target.
const fn bf(lsb_index: u32, width: u32) -> u32 {
    if cfg!(target_endian = "big") {
        1 << (width - 1 - lsb_index)
    } else {
        1 << lsb_index
    }
}

/// `struct __kernel_sockaddr_storage` (`include/uapi/linux/socket.h`): 128 bytes, aligned
/// like a pointer (the C union member `void *__align`).
#[repr(C)]
#[cfg_attr(target_pointer_width = "64", repr(align(8)))]
#[cfg_attr(target_pointer_width = "32", repr(align(4)))]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct __kernel_sockaddr_storage {
    /// Address family (`AF_INET`, `AF_INET6`, or 0), native endian.
    pub ss_family: __kernel_sa_family_t,
    /// The rest of the `sockaddr_in`/`sockaddr_in6`.
    pub __data: [u8; _K_SS_MAXSIZE - 2],
}

impl Default for __kernel_sockaddr_storage {
    fn default() -> Self {
        Self {
            ss_family: 0,
            __data: [0; _K_SS_MAXSIZE - 2],
        }
    }
}

impl fmt::Debug for __kernel_sockaddr_storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("__kernel_sockaddr_storage")
            .field("ss_family", &self.ss_family)
            .field("__data[..26]", &&self.__data[..26])
            .finish()
    }
}

/// `struct tcp_ao_add`: argument of `setsockopt(TCP_AO_ADD_KEY)`.
#[repr(C, align(8))]
pub struct tcp_ao_add {
    /// Peer's address for the key (port must be 0).
    pub addr: __kernel_sockaddr_storage,
    /// Crypto hash algorithm to use (NUL-terminated).
    pub alg_name: [u8; 64],
    /// L3 dev index for VRF.
    pub ifindex: i32,
    /// Bitfield word: [`Self::SET_CURRENT`], [`Self::SET_RNEXT`], reserved bits (must be 0).
    pub bitfield: u32,
    /// Padding, must be 0.
    pub reserved2: u16,
    /// Peer's address prefix.
    pub prefix: u8,
    /// SendID for outgoing segments.
    pub sndid: u8,
    /// RecvID to match for incoming segments.
    pub rcvid: u8,
    /// Length of the authentication code (0: default 12).
    pub maclen: u8,
    /// See `TCP_AO_KEYF_*`.
    pub keyflags: u8,
    /// Length of `key`.
    pub keylen: u8,
    /// The master key.
    pub key: [u8; TCP_AO_MAXKEYLEN],
}

impl tcp_ao_add {
    /// `set_current:1`: set key as Current_key at once.
    pub const SET_CURRENT: u32 = bf(0, 32);
    /// `set_rnext:1`: request it from peer with RNext_key.
    pub const SET_RNEXT: u32 = bf(1, 32);
    /// `reserved:30`: every other bit of the word (the kernel requires them 0).
    pub const RESERVED: u32 = !(Self::SET_CURRENT | Self::SET_RNEXT);
}

/// `struct tcp_ao_del`: argument of `setsockopt(TCP_AO_DEL_KEY)`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct tcp_ao_del {
    /// Peer's address for the key.
    pub addr: __kernel_sockaddr_storage,
    /// L3 dev index for VRF.
    pub ifindex: i32,
    /// Bitfield word: [`Self::SET_CURRENT`], [`Self::SET_RNEXT`], [`Self::DEL_ASYNC`].
    pub bitfield: u32,
    /// Padding, must be 0.
    pub reserved2: u16,
    /// Peer's address prefix.
    pub prefix: u8,
    /// SendID of the key to delete.
    pub sndid: u8,
    /// RecvID of the key to delete.
    pub rcvid: u8,
    /// KeyID (SendID) to set as Current_key.
    pub current_key: u8,
    /// KeyID (RecvID) to set as RNext_key.
    pub rnext: u8,
    /// See `TCP_AO_KEYF_*` (only `TCP_AO_KEYF_IFINDEX` accepted).
    pub keyflags: u8,
}

impl tcp_ao_del {
    /// `set_current:1`: `current_key` is valid.
    pub const SET_CURRENT: u32 = bf(0, 32);
    /// `set_rnext:1`: `rnext` is valid.
    pub const SET_RNEXT: u32 = bf(1, 32);
    /// `del_async:1`: only valid for listen sockets.
    pub const DEL_ASYNC: u32 = bf(2, 32);
    /// `reserved:29`: every other bit of the word (the kernel requires them 0).
    pub const RESERVED: u32 = !(Self::SET_CURRENT | Self::SET_RNEXT | Self::DEL_ASYNC);
}

/// `struct tcp_ao_info_opt`: argument of `{set,get}sockopt(TCP_AO_INFO)`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct tcp_ao_info_opt {
    /// Bitfield word: [`Self::SET_CURRENT`], [`Self::SET_RNEXT`], [`Self::AO_REQUIRED`],
    /// [`Self::SET_COUNTERS`], [`Self::ACCEPT_ICMPS`].
    pub bitfield: u32,
    /// Padding, must be 0.
    pub reserved2: u16,
    /// KeyID (SendID) of Current_key.
    pub current_key: u8,
    /// KeyID (RecvID) of RNext_key.
    pub rnext: u8,
    /// Verified segments.
    pub pkt_good: u64,
    /// Failed verification.
    pub pkt_bad: u64,
    /// Could not find a key to verify.
    pub pkt_key_not_found: u64,
    /// Segments missing TCP-AO sign.
    pub pkt_ao_required: u64,
    /// ICMPs that were ignored.
    pub pkt_dropped_icmp: u64,
}

impl tcp_ao_info_opt {
    /// `set_current:1`.
    pub const SET_CURRENT: u32 = bf(0, 32);
    /// `set_rnext:1`.
    pub const SET_RNEXT: u32 = bf(1, 32);
    /// `ao_required:1`.
    pub const AO_REQUIRED: u32 = bf(2, 32);
    /// `set_counters:1`.
    pub const SET_COUNTERS: u32 = bf(3, 32);
    /// `accept_icmps:1`.
    pub const ACCEPT_ICMPS: u32 = bf(4, 32);
    /// `reserved:27`: every other bit of the word (the kernel requires them 0).
    pub const RESERVED: u32 = !(Self::SET_CURRENT
        | Self::SET_RNEXT
        | Self::AO_REQUIRED
        | Self::SET_COUNTERS
        | Self::ACCEPT_ICMPS);
}

/// `struct tcp_ao_getsockopt`: one element of the `getsockopt(TCP_AO_GET_KEYS)` array.
#[repr(C, align(8))]
pub struct tcp_ao_getsockopt {
    /// In/out: dump keys for peer with this address/prefix.
    pub addr: __kernel_sockaddr_storage,
    /// Out: crypto hash algorithm.
    pub alg_name: [u8; 64],
    /// Out: the key.
    pub key: [u8; TCP_AO_MAXKEYLEN],
    /// In: capacity of the array; out: number of keys that matched.
    pub nkeys: u32,
    /// 16-bit bitfield word: [`Self::IS_CURRENT`], [`Self::IS_RNEXT`], [`Self::GET_ALL`].
    pub bitfield: u16,
    /// In/out: SendID.
    pub sndid: u8,
    /// In/out: RecvID.
    pub rcvid: u8,
    /// In/out: prefix.
    pub prefix: u8,
    /// Out: MAC length.
    pub maclen: u8,
    /// In/out: see `TCP_AO_KEYF_*`.
    pub keyflags: u8,
    /// Out: length of `key`.
    pub keylen: u8,
    /// In/out: L3 dev index for VRF.
    pub ifindex: i32,
    /// Out: verified segments.
    pub pkt_good: u64,
    /// Out: segments that failed verification.
    pub pkt_bad: u64,
}

impl tcp_ao_getsockopt {
    /// `is_current:1`.
    pub const IS_CURRENT: u16 = bf(0, 16) as u16;
    /// `is_rnext:1`.
    pub const IS_RNEXT: u16 = bf(1, 16) as u16;
    /// `get_all:1`.
    pub const GET_ALL: u16 = bf(2, 16) as u16;
    /// `reserved:13`: every other bit of the word (the kernel requires them 0).
    pub const RESERVED: u16 = !(Self::IS_CURRENT | Self::IS_RNEXT | Self::GET_ALL);
}

/// `struct tcp_ao_repair`: argument of `{set,get}sockopt(TCP_AO_REPAIR)`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct tcp_ao_repair {
    /// `__be32` (network byte order).
    pub snt_isn: u32,
    /// `__be32` (network byte order).
    pub rcv_isn: u32,
    /// Host order.
    pub snd_sne: u32,
    /// Host order.
    pub rcv_sne: u32,
}

/// `struct tcp_md5sig`: argument of `setsockopt(TCP_MD5SIG{,_EXT})`.
#[repr(C)]
pub struct tcp_md5sig {
    /// Address associated.
    pub tcpm_addr: __kernel_sockaddr_storage,
    /// Extension flags (`TCP_MD5SIG_FLAG_*`).
    pub tcpm_flags: u8,
    /// Address prefix.
    pub tcpm_prefixlen: u8,
    /// Key length (0 deletes).
    pub tcpm_keylen: u16,
    /// Device index for scope.
    pub tcpm_ifindex: i32,
    /// Key (binary).
    pub tcpm_key: [u8; TCP_MD5SIG_MAXKEYLEN],
}

/// `struct tcp_repair_opt`: element of the `TCP_REPAIR_OPTIONS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct tcp_repair_opt {
    /// `TCPOPT_*`.
    pub opt_code: u32,
    /// Option value.
    pub opt_val: u32,
}

/// `struct tcp_repair_window`: argument of `{set,get}sockopt(TCP_REPAIR_WINDOW)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct tcp_repair_window {
    /// `snd_wl1`.
    pub snd_wl1: u32,
    /// `snd_wnd`.
    pub snd_wnd: u32,
    /// `max_window`.
    pub max_window: u32,
    /// `rcv_wnd`.
    pub rcv_wnd: u32,
    /// `rcv_wup`.
    pub rcv_wup: u32,
}

impl Default for tcp_ao_add {
    fn default() -> Self {
        Self {
            addr: __kernel_sockaddr_storage::default(),
            alg_name: [0; 64],
            ifindex: 0,
            bitfield: 0,
            reserved2: 0,
            prefix: 0,
            sndid: 0,
            rcvid: 0,
            maclen: 0,
            keyflags: 0,
            keylen: 0,
            key: [0; TCP_AO_MAXKEYLEN],
        }
    }
}

impl Default for tcp_ao_getsockopt {
    fn default() -> Self {
        Self {
            addr: __kernel_sockaddr_storage::default(),
            alg_name: [0; 64],
            key: [0; TCP_AO_MAXKEYLEN],
            nkeys: 0,
            bitfield: 0,
            sndid: 0,
            rcvid: 0,
            prefix: 0,
            maclen: 0,
            keyflags: 0,
            keylen: 0,
            ifindex: 0,
            pkt_good: 0,
            pkt_bad: 0,
        }
    }
}

impl Default for tcp_md5sig {
    fn default() -> Self {
        Self {
            tcpm_addr: __kernel_sockaddr_storage::default(),
            tcpm_flags: 0,
            tcpm_prefixlen: 0,
            tcpm_keylen: 0,
            tcpm_ifindex: 0,
            tcpm_key: [0; TCP_MD5SIG_MAXKEYLEN],
        }
    }
}

impl Drop for tcp_ao_add {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl Drop for tcp_ao_getsockopt {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl Drop for tcp_md5sig {
    fn drop(&mut self) {
        self.tcpm_key.zeroize();
    }
}

/// A NUL-terminated C string field, shown as text.
struct CStrField<'a>(&'a [u8]);

impl fmt::Debug for CStrField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0[..end]), f)
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for tcp_ao_add {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("tcp_ao_add")
            .field("addr", &self.addr)
            .field("alg_name", &CStrField(&self.alg_name))
            .field("ifindex", &self.ifindex)
            .field("bitfield", &format_args!("{:#x}", self.bitfield))
            .field("reserved2", &self.reserved2)
            .field("prefix", &self.prefix)
            .field("sndid", &self.sndid)
            .field("rcvid", &self.rcvid)
            .field("maclen", &self.maclen)
            .field("keyflags", &self.keyflags)
            .field("keylen", &self.keylen)
            .field("key", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for tcp_ao_getsockopt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("tcp_ao_getsockopt")
            .field("addr", &self.addr)
            .field("alg_name", &CStrField(&self.alg_name))
            .field("key", &REDACTED)
            .field("nkeys", &self.nkeys)
            .field("bitfield", &format_args!("{:#x}", self.bitfield))
            .field("sndid", &self.sndid)
            .field("rcvid", &self.rcvid)
            .field("prefix", &self.prefix)
            .field("maclen", &self.maclen)
            .field("keyflags", &self.keyflags)
            .field("keylen", &self.keylen)
            .field("ifindex", &self.ifindex)
            .field("pkt_good", &self.pkt_good)
            .field("pkt_bad", &self.pkt_bad)
            .finish()
    }
}

impl fmt::Debug for tcp_md5sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("tcp_md5sig")
            .field("tcpm_addr", &self.tcpm_addr)
            .field("tcpm_flags", &self.tcpm_flags)
            .field("tcpm_prefixlen", &self.tcpm_prefixlen)
            .field("tcpm_keylen", &self.tcpm_keylen)
            .field("tcpm_ifindex", &self.tcpm_ifindex)
            .field("tcpm_key", &REDACTED)
            .finish()
    }
}

// ---- compile-time layout assertions (values measured with GCC on Linux) ----

const PTR: usize = size_of::<usize>();

const _: () = assert!(size_of::<__kernel_sockaddr_storage>() == 128);
const _: () = assert!(align_of::<__kernel_sockaddr_storage>() == PTR);
const _: () = assert!(offset_of!(__kernel_sockaddr_storage, ss_family) == 0);
const _: () = assert!(offset_of!(__kernel_sockaddr_storage, __data) == 2);

const _: () = assert!(size_of::<tcp_ao_add>() == 288);
const _: () = assert!(align_of::<tcp_ao_add>() == 8);
const _: () = assert!(offset_of!(tcp_ao_add, addr) == 0);
const _: () = assert!(offset_of!(tcp_ao_add, alg_name) == 128);
const _: () = assert!(offset_of!(tcp_ao_add, ifindex) == 192);
const _: () = assert!(offset_of!(tcp_ao_add, bitfield) == 196);
const _: () = assert!(offset_of!(tcp_ao_add, reserved2) == 200);
const _: () = assert!(offset_of!(tcp_ao_add, prefix) == 202);
const _: () = assert!(offset_of!(tcp_ao_add, sndid) == 203);
const _: () = assert!(offset_of!(tcp_ao_add, rcvid) == 204);
const _: () = assert!(offset_of!(tcp_ao_add, maclen) == 205);
const _: () = assert!(offset_of!(tcp_ao_add, keyflags) == 206);
const _: () = assert!(offset_of!(tcp_ao_add, keylen) == 207);
const _: () = assert!(offset_of!(tcp_ao_add, key) == 208);

const _: () = assert!(size_of::<tcp_ao_del>() == 144);
const _: () = assert!(align_of::<tcp_ao_del>() == 8);
const _: () = assert!(offset_of!(tcp_ao_del, addr) == 0);
const _: () = assert!(offset_of!(tcp_ao_del, ifindex) == 128);
const _: () = assert!(offset_of!(tcp_ao_del, bitfield) == 132);
const _: () = assert!(offset_of!(tcp_ao_del, reserved2) == 136);
const _: () = assert!(offset_of!(tcp_ao_del, prefix) == 138);
const _: () = assert!(offset_of!(tcp_ao_del, sndid) == 139);
const _: () = assert!(offset_of!(tcp_ao_del, rcvid) == 140);
const _: () = assert!(offset_of!(tcp_ao_del, current_key) == 141);
const _: () = assert!(offset_of!(tcp_ao_del, rnext) == 142);
const _: () = assert!(offset_of!(tcp_ao_del, keyflags) == 143);

const _: () = assert!(size_of::<tcp_ao_info_opt>() == 48);
const _: () = assert!(align_of::<tcp_ao_info_opt>() == 8);
const _: () = assert!(offset_of!(tcp_ao_info_opt, bitfield) == 0);
const _: () = assert!(offset_of!(tcp_ao_info_opt, reserved2) == 4);
const _: () = assert!(offset_of!(tcp_ao_info_opt, current_key) == 6);
const _: () = assert!(offset_of!(tcp_ao_info_opt, rnext) == 7);
const _: () = assert!(offset_of!(tcp_ao_info_opt, pkt_good) == 8);
const _: () = assert!(offset_of!(tcp_ao_info_opt, pkt_bad) == 16);
const _: () = assert!(offset_of!(tcp_ao_info_opt, pkt_key_not_found) == 24);
const _: () = assert!(offset_of!(tcp_ao_info_opt, pkt_ao_required) == 32);
const _: () = assert!(offset_of!(tcp_ao_info_opt, pkt_dropped_icmp) == 40);

const _: () = assert!(size_of::<tcp_ao_getsockopt>() == 304);
const _: () = assert!(align_of::<tcp_ao_getsockopt>() == 8);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, addr) == 0);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, alg_name) == 128);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, key) == 192);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, nkeys) == 272);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, bitfield) == 276);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, sndid) == 278);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, rcvid) == 279);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, prefix) == 280);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, maclen) == 281);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, keyflags) == 282);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, keylen) == 283);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, ifindex) == 284);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, pkt_good) == 288);
const _: () = assert!(offset_of!(tcp_ao_getsockopt, pkt_bad) == 296);

const _: () = assert!(size_of::<tcp_ao_repair>() == 16);
const _: () = assert!(align_of::<tcp_ao_repair>() == 8);
const _: () = assert!(offset_of!(tcp_ao_repair, snt_isn) == 0);
const _: () = assert!(offset_of!(tcp_ao_repair, rcv_isn) == 4);
const _: () = assert!(offset_of!(tcp_ao_repair, snd_sne) == 8);
const _: () = assert!(offset_of!(tcp_ao_repair, rcv_sne) == 12);

const _: () = assert!(size_of::<tcp_md5sig>() == 88 + 128);
const _: () = assert!(align_of::<tcp_md5sig>() == PTR);
const _: () = assert!(offset_of!(tcp_md5sig, tcpm_addr) == 0);
const _: () = assert!(offset_of!(tcp_md5sig, tcpm_flags) == 128);
const _: () = assert!(offset_of!(tcp_md5sig, tcpm_prefixlen) == 129);
const _: () = assert!(offset_of!(tcp_md5sig, tcpm_keylen) == 130);
const _: () = assert!(offset_of!(tcp_md5sig, tcpm_ifindex) == 132);
const _: () = assert!(offset_of!(tcp_md5sig, tcpm_key) == 136);

const _: () = assert!(size_of::<tcp_repair_opt>() == 8);
const _: () = assert!(offset_of!(tcp_repair_opt, opt_val) == 4);
const _: () = assert!(size_of::<tcp_repair_window>() == 20);
const _: () = assert!(offset_of!(tcp_repair_window, snd_wl1) == 0);
const _: () = assert!(offset_of!(tcp_repair_window, snd_wnd) == 4);
const _: () = assert!(offset_of!(tcp_repair_window, max_window) == 8);
const _: () = assert!(offset_of!(tcp_repair_window, rcv_wnd) == 12);
const _: () = assert!(offset_of!(tcp_repair_window, rcv_wup) == 16);

// Bitfield positions: little-endian values (big-endian ones are the mirror image).
#[cfg(target_endian = "little")]
const _: () = assert!(
    tcp_ao_add::SET_CURRENT == 1
        && tcp_ao_add::SET_RNEXT == 2
        && tcp_ao_del::DEL_ASYNC == 4
        && tcp_ao_info_opt::AO_REQUIRED == 4
        && tcp_ao_info_opt::SET_COUNTERS == 8
        && tcp_ao_info_opt::ACCEPT_ICMPS == 16
        && tcp_ao_getsockopt::IS_CURRENT == 1
        && tcp_ao_getsockopt::IS_RNEXT == 2
        && tcp_ao_getsockopt::GET_ALL == 4
);
#[cfg(target_endian = "big")]
const _: () = assert!(
    tcp_ao_add::SET_CURRENT == 1 << 31
        && tcp_ao_add::SET_RNEXT == 1 << 30
        && tcp_ao_del::DEL_ASYNC == 1 << 29
        && tcp_ao_info_opt::AO_REQUIRED == 1 << 29
        && tcp_ao_info_opt::SET_COUNTERS == 1 << 28
        && tcp_ao_info_opt::ACCEPT_ICMPS == 1 << 27
        && tcp_ao_getsockopt::IS_CURRENT == 1 << 15
        && tcp_ao_getsockopt::IS_RNEXT == 1 << 14
        && tcp_ao_getsockopt::GET_ALL == 1 << 13
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_bytes_is_the_c_layout() {
        let mut k = tcp_ao_add {
            sndid: 7,
            keylen: 3,
            bitfield: tcp_ao_add::SET_RNEXT,
            ..tcp_ao_add::default()
        };
        k.key[..3].copy_from_slice(b"abc");
        let b = k.as_bytes();
        assert_eq!(b.len(), size_of::<tcp_ao_add>());
        assert_eq!(b[offset_of!(tcp_ao_add, sndid)], 7);
        assert_eq!(&b[offset_of!(tcp_ao_add, key)..][..3], b"abc");
        let w = offset_of!(tcp_ao_add, bitfield);
        assert_eq!(b[w..w + 4], tcp_ao_add::SET_RNEXT.to_ne_bytes());
        // Writing bytes writes the fields.
        let mut g = tcp_ao_getsockopt::default();
        let n = offset_of!(tcp_ao_getsockopt, nkeys);
        g.as_bytes_mut()[n..n + 4].copy_from_slice(&5u32.to_ne_bytes());
        assert_eq!(g.nkeys, 5);
        assert_eq!(tcp_ao_info_opt::default().as_bytes(), [0u8; 48]);
    }

    #[test]
    fn reserved_bits_are_the_undeclared_ones() {
        assert_eq!(tcp_ao_add::RESERVED.count_ones(), 30);
        assert_eq!(tcp_ao_del::RESERVED.count_ones(), 29);
        assert_eq!(tcp_ao_info_opt::RESERVED.count_ones(), 27);
        assert_eq!(tcp_ao_getsockopt::RESERVED.count_ones(), 13);
        assert_eq!(tcp_ao_add::RESERVED & tcp_ao_add::SET_CURRENT, 0);
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Read-back types: per-socket state (`TCP_AO_INFO`), per-key state (`TCP_AO_GET_KEYS`),
//! key-listing filters, and `TCP_AO_REPAIR` state.

use crate::addr::PeerPrefix;
use crate::key::{Algorithm, KeySelector, MasterKey};
use crate::uapi;

/// Per-socket TCP-AO counters (`TCP_AO_INFO`; RFC 5925 §7 events as the kernel counts them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AoCounters {
    /// Segments whose MAC verified.
    pub good: u64,
    /// Segments that failed verification.
    pub bad: u64,
    /// Signed segments with no MKT for their KeyID.
    pub key_not_found: u64,
    /// Unsigned segments dropped because TCP-AO is required.
    pub ao_required: u64,
    /// ICMP hard errors ignored (RFC 5925 §7.8).
    pub dropped_icmp: u64,
}

/// Per-socket TCP-AO state (`getsockopt(TCP_AO_INFO)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AoInfo {
    /// SendID of Current_key (RFC 5925 §6.1), if one is set.
    pub current_key: Option<u8>,
    /// RecvID of RNext_key (the KeyID we ask the peer to use), if one is set.
    pub rnext_key: Option<u8>,
    /// Only TCP-AO-signed segments are accepted.
    pub ao_required: bool,
    /// ICMP hard errors are acted upon (RFC 5925 §7.8 default: ignored).
    pub accept_icmps: bool,
    /// Per-socket counters.
    pub counters: AoCounters,
}

impl AoInfo {
    pub(crate) fn from_uapi(raw: &uapi::tcp_ao_info_opt) -> Self {
        let bit = |m: u32| raw.bitfield & m != 0;
        Self {
            current_key: bit(uapi::tcp_ao_info_opt::SET_CURRENT).then_some(raw.current_key),
            rnext_key: bit(uapi::tcp_ao_info_opt::SET_RNEXT).then_some(raw.rnext),
            ao_required: bit(uapi::tcp_ao_info_opt::AO_REQUIRED),
            accept_icmps: bit(uapi::tcp_ao_info_opt::ACCEPT_ICMPS),
            counters: AoCounters {
                good: raw.pkt_good,
                bad: raw.pkt_bad,
                key_not_found: raw.pkt_key_not_found,
                ao_required: raw.pkt_ao_required,
                dropped_icmp: raw.pkt_dropped_icmp,
            },
        }
    }
}

/// One MKT as the kernel reports it (`TCP_AO_GET_KEYS`).
#[derive(Debug, PartialEq, Eq)]
pub struct AoKeyInfo {
    /// Identity (peer prefix, SendID, RecvID, VRF binding).
    pub selector: KeySelector,
    /// Algorithm (the kernel reports AES-128-CMAC as `cmac(aes)`).
    pub algorithm: Algorithm,
    /// MAC length in bytes (12 when the default was asked for).
    pub mac_len: u8,
    /// Whether non-AO TCP options are covered by the MAC (no `TCP_AO_KEYF_EXCLUDE_OPT`).
    pub include_options: bool,
    /// This key is Current_key.
    pub is_current: bool,
    /// This key is RNext_key.
    pub is_rnext: bool,
    /// The key as the kernel stores it (for AES-128-CMAC with a non-16-byte password: the
    /// RFC 5926 §3.1.1.2 KDF output). `None` if the kernel reported no key bytes.
    pub key: Option<MasterKey>,
    /// Segments verified with this key.
    pub good: u64,
    /// Segments that failed verification with this key.
    pub bad: u64,
}

impl AoKeyInfo {
    pub(crate) fn from_uapi(raw: &uapi::tcp_ao_getsockopt) -> Self {
        let bit = |m: u16| raw.bitfield & m != 0;
        let name_end = raw
            .alg_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw.alg_name.len());
        let name = String::from_utf8_lossy(&raw.alg_name[..name_end]);
        let keylen = usize::from(raw.keylen).min(uapi::TCP_AO_MAXKEYLEN);
        let vrf = (raw.keyflags & uapi::TCP_AO_KEYF_IFINDEX != 0).then_some(raw.ifindex as u32);
        Self {
            selector: KeySelector {
                peer: PeerPrefix::from_sockaddr(&raw.addr, raw.prefix),
                send_id: raw.sndid,
                recv_id: raw.rcvid,
                vrf,
            },
            algorithm: Algorithm::from_kernel_name(&name),
            mac_len: raw.maclen,
            include_options: raw.keyflags & uapi::TCP_AO_KEYF_EXCLUDE_OPT == 0,
            is_current: bit(uapi::tcp_ao_getsockopt::IS_CURRENT),
            is_rnext: bit(uapi::tcp_ao_getsockopt::IS_RNEXT),
            key: MasterKey::new(&raw.key[..keylen]).ok(),
            good: raw.pkt_good,
            bad: raw.pkt_bad,
        }
    }
}

/// Which keys `TCP_AO_GET_KEYS` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFilter {
    /// Every key on the socket.
    All,
    /// Current_key only.
    Current,
    /// RNext_key only.
    RNext,
    /// Current_key and RNext_key.
    CurrentAndRNext,
    /// Keys with exactly this SendID/RecvID whose peer prefix matches (the any-prefix matches
    /// every key's address). VRF: `Some(i)` restricts to keys bound to ifindex `i`.
    Key(KeySelector),
}

/// `TCP_AO_REPAIR` state: initial sequence numbers and sequence number extensions
/// (RFC 5925 §6.2) of a connection, for checkpoint/restore. ISNs are in host byte order here
/// (the kernel's `__be32` fields are converted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AoRepair {
    /// Our ISN.
    pub snt_isn: u32,
    /// The peer's ISN.
    pub rcv_isn: u32,
    /// Send SNE.
    pub snd_sne: u32,
    /// Receive SNE.
    pub rcv_sne: u32,
}

impl AoRepair {
    pub(crate) fn from_uapi(raw: &uapi::tcp_ao_repair) -> Self {
        Self {
            snt_isn: u32::from_be(raw.snt_isn),
            rcv_isn: u32::from_be(raw.rcv_isn),
            snd_sne: raw.snd_sne,
            rcv_sne: raw.rcv_sne,
        }
    }

    pub(crate) fn to_uapi(self) -> uapi::tcp_ao_repair {
        uapi::tcp_ao_repair {
            snt_isn: self.snt_isn.to_be(),
            rcv_isn: self.rcv_isn.to_be(),
            snd_sne: self.snd_sne,
            rcv_sne: self.rcv_sne,
        }
    }
}

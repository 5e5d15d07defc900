// SPDX-License-Identifier: MIT OR Apache-2.0
//! `TcpAoExt`: the TCP-AO socket options as methods on anything that is [`AsFd`].

use crate::addr::PeerPrefix;
use crate::error::{Error, Op, Result};
use crate::info::{AoCounters, AoInfo, AoKeyInfo, AoRepair, KeyFilter};
use crate::key::{AoKey, KeySelector};
use crate::{sys, uapi};
use std::os::fd::{AsFd, BorrowedFd};

/// Address family (`AF_INET`/`AF_INET6`) of a socket, checked at call time.
pub(crate) fn family(fd: BorrowedFd<'_>) -> Result<i32> {
    let f = sys::socket_family(fd).map_err(|e| Error::from_os(Op::Socket, e))?;
    match f {
        libc::AF_INET | libc::AF_INET6 => Ok(f),
        other => Err(Error::invalid(
            "socket",
            format!("address family {other} is neither AF_INET nor AF_INET6"),
        )),
    }
}

pub(crate) fn add_key(fd: BorrowedFd<'_>, key: &AoKey) -> Result<()> {
    let raw = key.to_uapi(family(fd)?)?;
    sys::setsockopt(fd, uapi::SOL_TCP, uapi::TCP_AO_ADD_KEY, &raw)
        .map_err(|e| Error::from_os_with_alg(Op::AddKey, e, key.algorithm().kernel_name()))
}

fn del_key(fd: BorrowedFd<'_>, raw: &uapi::tcp_ao_del) -> Result<()> {
    sys::setsockopt(fd, uapi::SOL_TCP, uapi::TCP_AO_DEL_KEY, raw)
        .map_err(|e| Error::from_os(Op::DelKey, e))
}

fn get_info_raw(fd: BorrowedFd<'_>) -> Result<Option<uapi::tcp_ao_info_opt>> {
    let mut raw = uapi::tcp_ao_info_opt::default();
    match sys::getsockopt(fd, uapi::SOL_TCP, uapi::TCP_AO_INFO, &mut raw) {
        Ok(_) => Ok(Some(raw)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::from_os(Op::GetInfo, e)),
    }
}

fn set_info_raw(fd: BorrowedFd<'_>, raw: &uapi::tcp_ao_info_opt) -> Result<()> {
    sys::setsockopt(fd, uapi::SOL_TCP, uapi::TCP_AO_INFO, raw)
        .map_err(|e| Error::from_os(Op::SetInfo, e))
}

/// Read-modify-write of `TCP_AO_INFO`: the kernel overwrites `ao_required` and `accept_icmps`
/// on every set, so start from their current values and change only what `f` touches.
fn update_info(fd: BorrowedFd<'_>, f: impl FnOnce(&mut uapi::tcp_ao_info_opt)) -> Result<()> {
    let cur = get_info_raw(fd)?.unwrap_or_default();
    let keep = uapi::tcp_ao_info_opt::AO_REQUIRED | uapi::tcp_ao_info_opt::ACCEPT_ICMPS;
    let mut raw = uapi::tcp_ao_info_opt {
        bitfield: cur.bitfield & keep,
        ..Default::default()
    };
    f(&mut raw);
    set_info_raw(fd, &raw)
}

fn set_flag(fd: BorrowedFd<'_>, mask: u32, on: bool) -> Result<()> {
    update_info(fd, |raw| {
        if on {
            raw.bitfield |= mask;
        } else {
            raw.bitfield &= !mask;
        }
    })
}

pub(crate) fn keys(fd: BorrowedFd<'_>, filter: &KeyFilter) -> Result<Vec<AoKeyInfo>> {
    let fam = if matches!(filter, KeyFilter::Key(_)) {
        family(fd)?
    } else {
        0
    };
    let template = |out: &mut uapi::tcp_ao_getsockopt| -> Result<()> {
        match *filter {
            KeyFilter::All => out.bitfield = uapi::tcp_ao_getsockopt::GET_ALL,
            KeyFilter::Current => out.bitfield = uapi::tcp_ao_getsockopt::IS_CURRENT,
            KeyFilter::RNext => out.bitfield = uapi::tcp_ao_getsockopt::IS_RNEXT,
            KeyFilter::CurrentAndRNext => {
                out.bitfield =
                    uapi::tcp_ao_getsockopt::IS_CURRENT | uapi::tcp_ao_getsockopt::IS_RNEXT;
            }
            KeyFilter::Key(sel) => {
                out.addr = sel.peer.to_sockaddr(fam)?;
                out.prefix = sel.peer.prefix_len();
                out.sndid = sel.send_id;
                out.rcvid = sel.recv_id;
                let (flags, ifindex) = crate::key::vrf_fields(sel.vrf)?;
                out.keyflags = flags;
                out.ifindex = ifindex;
            }
        }
        Ok(())
    };
    // Start small and grow to what the kernel reports; keys may be added concurrently, so
    // retry a few times.
    let mut cap = 8usize;
    for _ in 0..8 {
        let mut buf: Vec<uapi::tcp_ao_getsockopt> = (0..cap)
            .map(|_| uapi::tcp_ao_getsockopt::default())
            .collect();
        template(&mut buf[0])?;
        let total =
            sys::getsockopt_ao_keys(fd, &mut buf).map_err(|e| Error::from_os(Op::GetKeys, e))?;
        let total = total as usize;
        if total <= cap {
            return Ok(buf[..total].iter().map(AoKeyInfo::from_uapi).collect());
        }
        cap = total + 4;
    }
    Err(Error::Os {
        op: Op::GetKeys,
        source: std::io::Error::other("the key list kept growing while being read"),
    })
}

/// TCP-AO (RFC 5925) socket options on any socket: `std::net` types, `socket2::Socket`,
/// `tokio::net::*` (through `AsFd`), `OwnedFd`.
///
/// Blanket-implemented for every `AsFd`. Listener sockets have no Current_key/RNext_key: for
/// a listener prefer [`crate::AoListener`], which does not offer those setters.
pub trait TcpAoExt: AsFd {
    /// Add an MKT (`TCP_AO_ADD_KEY`). The peer prefix is encoded for the socket's address
    /// family (checked now): IPv4 prefixes on IPv6 sockets become v4-mapped.
    ///
    /// # Errors
    /// [`Error::IdConflict`], [`Error::AlgorithmUnavailable`], [`Error::MacTooLong`],
    /// [`Error::Md5Conflict`], [`Error::WrongState`], [`Error::Unsupported`],
    /// [`Error::InvalidArgument`] (e.g. IPv6 peer on an IPv4 socket), [`Error::Os`].
    fn add_ao_key(&self, key: &AoKey) -> Result<()> {
        add_key(self.as_fd(), key)
    }

    /// Delete an MKT (`TCP_AO_DEL_KEY`); the selector must match exactly (peer prefix, IDs,
    /// VRF binding). See [`TcpAoExt::del_ao_key_replacing`] for the current/rnext key.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::KeyInUse`] (it is Current_key or RNext_key),
    /// [`Error::Unsupported`], [`Error::Os`].
    fn del_ao_key(&self, key: &KeySelector) -> Result<()> {
        let raw = key.to_del(family(self.as_fd())?)?;
        del_key(self.as_fd(), &raw)
    }

    /// Delete an MKT and atomically install replacements: `current` is the SendID of the new
    /// Current_key, `rnext` the RecvID of the new RNext_key (RFC 5925 §7.5.2.e). Forced: the
    /// peer may not have the replacement yet.
    ///
    /// # Errors
    /// As [`TcpAoExt::del_ao_key`]; [`Error::NotFound`] also if a replacement is missing or is
    /// the key being deleted.
    fn del_ao_key_replacing(
        &self,
        key: &KeySelector,
        current: Option<u8>,
        rnext: Option<u8>,
    ) -> Result<()> {
        let mut raw = key.to_del(family(self.as_fd())?)?;
        if let Some(c) = current {
            raw.bitfield |= uapi::tcp_ao_del::SET_CURRENT;
            raw.current_key = c;
        }
        if let Some(r) = rnext {
            raw.bitfield |= uapi::tcp_ao_del::SET_RNEXT;
            raw.rnext = r;
        }
        del_key(self.as_fd(), &raw)
    }

    /// Delete an MKT from a listening socket without waiting for an RCU grace period
    /// (`del_async`; only valid on `LISTEN` sockets).
    ///
    /// # Errors
    /// As [`TcpAoExt::del_ao_key`]; [`Error::Os`] with `EINVAL` on a non-listening socket.
    fn del_ao_key_async(&self, key: &KeySelector) -> Result<()> {
        let mut raw = key.to_del(family(self.as_fd())?)?;
        raw.bitfield |= uapi::tcp_ao_del::DEL_ASYNC;
        del_key(self.as_fd(), &raw)
    }

    /// Per-socket TCP-AO state (`getsockopt(TCP_AO_INFO)`); `None` if the socket has no TCP-AO
    /// state yet (no key was ever added: `ENOENT`).
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::Os`].
    fn ao_info(&self) -> Result<Option<AoInfo>> {
        Ok(get_info_raw(self.as_fd())?.as_ref().map(AoInfo::from_uapi))
    }

    /// Make the key with this SendID Current_key (`TCP_AO_INFO` `set_current`). Normally the
    /// peer's RNextKeyID drives this; setting it is exceptional. Not allowed on listeners.
    ///
    /// # Errors
    /// [`Error::NotFound`] (no such key), [`Error::Os`] (`EINVAL` on a listener),
    /// [`Error::Unsupported`].
    fn set_ao_current_key(&self, send_id: u8) -> Result<()> {
        update_info(self.as_fd(), |raw| {
            raw.bitfield |= uapi::tcp_ao_info_opt::SET_CURRENT;
            raw.current_key = send_id;
        })
    }

    /// Ask the peer to switch to the key with this RecvID (RNext_key, RFC 5925 §7.5.2.e).
    /// Not allowed on listeners.
    ///
    /// # Errors
    /// As [`TcpAoExt::set_ao_current_key`].
    fn set_ao_rnext_key(&self, recv_id: u8) -> Result<()> {
        update_info(self.as_fd(), |raw| {
            raw.bitfield |= uapi::tcp_ao_info_opt::SET_RNEXT;
            raw.rnext = recv_id;
        })
    }

    /// Whether the socket accepts only TCP-AO-signed segments (false without TCP-AO state).
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::Os`].
    fn ao_required(&self) -> Result<bool> {
        Ok(self.ao_info()?.is_some_and(|i| i.ao_required))
    }

    /// Require TCP-AO on every segment (`ao_required`), keeping `accept_icmps` unchanged.
    ///
    /// # Errors
    /// [`Error::Md5Conflict`] (MD5 keys present), [`Error::WrongState`],
    /// [`Error::Unsupported`], [`Error::Os`].
    fn set_ao_required(&self, required: bool) -> Result<()> {
        set_flag(self.as_fd(), uapi::tcp_ao_info_opt::AO_REQUIRED, required)
    }

    /// Whether ICMP hard errors are acted upon (RFC 5925 §7.8).
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::Os`].
    fn ao_accept_icmps(&self) -> Result<bool> {
        Ok(self.ao_info()?.is_some_and(|i| i.accept_icmps))
    }

    /// Act on ICMP hard errors (`accept_icmps`), keeping `ao_required` unchanged.
    ///
    /// # Errors
    /// [`Error::WrongState`], [`Error::Unsupported`], [`Error::Os`].
    fn set_ao_accept_icmps(&self, accept: bool) -> Result<()> {
        set_flag(self.as_fd(), uapi::tcp_ao_info_opt::ACCEPT_ICMPS, accept)
    }

    /// Per-socket counters (zero if the socket has no TCP-AO state).
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::Os`].
    fn ao_counters(&self) -> Result<AoCounters> {
        Ok(self.ao_info()?.map(|i| i.counters).unwrap_or_default())
    }

    /// Overwrite the per-socket counters (`set_counters`); `&AoCounters::default()` resets
    /// them. Flags are preserved.
    ///
    /// # Errors
    /// [`Error::Unsupported`], [`Error::Os`].
    fn set_ao_counters(&self, c: &AoCounters) -> Result<()> {
        update_info(self.as_fd(), |raw| {
            raw.bitfield |= uapi::tcp_ao_info_opt::SET_COUNTERS;
            raw.pkt_good = c.good;
            raw.pkt_bad = c.bad;
            raw.pkt_key_not_found = c.key_not_found;
            raw.pkt_ao_required = c.ao_required;
            raw.pkt_dropped_icmp = c.dropped_icmp;
        })
    }

    /// List MKTs with their per-key counters (`TCP_AO_GET_KEYS`); the buffer grows to the
    /// number of keys the kernel reports.
    ///
    /// # Errors
    /// [`Error::NotFound`] (no TCP-AO state), [`Error::Unsupported`], [`Error::Os`] (e.g.
    /// `EAFNOSUPPORT`/`EINVAL` for a bad address filter).
    fn ao_keys(&self, filter: &KeyFilter) -> Result<Vec<AoKeyInfo>> {
        keys(self.as_fd(), filter)
    }

    /// ISNs and SNEs (`getsockopt(TCP_AO_REPAIR)`); the socket must be in `TCP_REPAIR` mode.
    ///
    /// # Errors
    /// [`Error::NotInRepairMode`], [`Error::NotFound`], [`Error::Unsupported`], [`Error::Os`].
    fn ao_repair(&self) -> Result<AoRepair> {
        let mut raw = uapi::tcp_ao_repair::default();
        sys::getsockopt(self.as_fd(), uapi::SOL_TCP, uapi::TCP_AO_REPAIR, &mut raw)
            .map_err(|e| Error::from_os(Op::GetRepair, e))?;
        Ok(AoRepair::from_uapi(&raw))
    }

    /// Restore ISNs and SNEs (`setsockopt(TCP_AO_REPAIR)`); the socket must be in
    /// `TCP_REPAIR` mode. The kernel recomputes every key's traffic keys.
    ///
    /// # Errors
    /// As [`TcpAoExt::ao_repair`].
    fn set_ao_repair(&self, r: &AoRepair) -> Result<()> {
        sys::setsockopt(
            self.as_fd(),
            uapi::SOL_TCP,
            uapi::TCP_AO_REPAIR,
            &r.to_uapi(),
        )
        .map_err(|e| Error::from_os(Op::SetRepair, e))
    }
}

impl<S: AsFd + ?Sized> TcpAoExt for S {}

/// TCP-MD5 (RFC 2385) keys via `TCP_MD5SIG_EXT`, with address prefix and VRF ifindex.
#[derive(Debug)]
pub struct Md5Key {
    /// Peer prefix (the any-prefix matches every peer).
    pub peer: PeerPrefix,
    /// `Some(ifindex)`: bound to that L3 master device (`TCP_MD5SIG_FLAG_IFINDEX`).
    pub vrf: Option<u32>,
    /// The key (1..=80 bytes).
    pub key: crate::MasterKey,
}

fn md5_raw(fd: BorrowedFd<'_>, peer: &PeerPrefix, vrf: Option<u32>) -> Result<uapi::tcp_md5sig> {
    let mut raw = uapi::tcp_md5sig {
        tcpm_addr: peer.to_sockaddr(family(fd)?)?,
        tcpm_flags: uapi::TCP_MD5SIG_FLAG_PREFIX,
        tcpm_prefixlen: peer.prefix_len(),
        ..Default::default()
    };
    if let Some(i) = vrf {
        raw.tcpm_flags |= uapi::TCP_MD5SIG_FLAG_IFINDEX;
        raw.tcpm_ifindex = i32::try_from(i)
            .map_err(|_| Error::invalid("vrf", format!("ifindex {i} exceeds i32")))?;
    }
    Ok(raw)
}

/// TCP-MD5 socket options on any socket (`TCP_MD5SIG_EXT`).
pub trait Md5Ext: AsFd {
    /// Add (or replace) the MD5 key for a peer prefix.
    ///
    /// # Errors
    /// [`Error::Md5Conflict`] (a TCP-AO key for this peer exists or `ao_required` is set),
    /// [`Error::Unsupported`] (no `CONFIG_TCP_MD5SIG`), [`Error::InvalidArgument`],
    /// [`Error::Os`].
    fn add_md5_key(&self, key: &Md5Key) -> Result<()> {
        let mut raw = md5_raw(self.as_fd(), &key.peer, key.vrf)?;
        let k = key.key.expose_secret();
        raw.tcpm_keylen = k.len() as u16;
        raw.tcpm_key[..k.len()].copy_from_slice(k);
        sys::setsockopt(self.as_fd(), uapi::SOL_TCP, uapi::TCP_MD5SIG_EXT, &raw)
            .map_err(|e| Error::from_os(Op::AddMd5, e))
    }

    /// Delete the MD5 key for exactly this peer prefix and VRF binding.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Unsupported`], [`Error::Os`].
    fn del_md5_key(&self, peer: &PeerPrefix, vrf: Option<u32>) -> Result<()> {
        let raw = md5_raw(self.as_fd(), peer, vrf)?;
        sys::setsockopt(self.as_fd(), uapi::SOL_TCP, uapi::TCP_MD5SIG_EXT, &raw)
            .map_err(|e| Error::from_os(Op::DelMd5, e))
    }
}

impl<S: AsFd + ?Sized> Md5Ext for S {}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Typed `TCP_REPAIR` helpers: what a CRIU-style checkpoint/restore of a (TCP-AO) connection
//! needs. Pair them with [`crate::TcpAoExt::ao_repair`]/[`crate::TcpAoExt::set_ao_repair`].
//!
//! Restore recipe (measured on Linux 7.2): freeze with [`set_repair`]`(On)`, read
//! `ao_repair()`, for the send then the receive queue [`set_repair_queue`] and [`queue_seq`],
//! [`repair_window`], [`mss`]; close. Restore: new socket, `On`, `SO_REUSEADDR`, add the same
//! TCP-AO key(s), bind the old local address, [`set_queue_seq`] for both queues, `connect()`
//! (no SYN is sent in repair mode), [`set_repair_options`] (MSS, window scale, SACK,
//! timestamps as negotiated), [`set_repair_window`], `set_ao_repair()`,
//! [`set_repair_queue`]`(None)`, then [`set_repair`]`(OffNoWindowProbe)`.
//!
//! All of these need `CAP_NET_ADMIN`.

use crate::error::{Error, Op, Result};
use crate::{sys, uapi};
use std::os::fd::AsFd;

/// Value of `TCP_REPAIR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairMode {
    /// `TCP_REPAIR_ON`.
    On,
    /// `TCP_REPAIR_OFF` (sends a window probe).
    Off,
    /// `TCP_REPAIR_OFF_NO_WP`: leave repair mode without a window probe.
    OffNoWindowProbe,
}

/// Value of `TCP_REPAIR_QUEUE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// `TCP_NO_QUEUE`.
    None,
    /// `TCP_RECV_QUEUE`.
    Recv,
    /// `TCP_SEND_QUEUE`.
    Send,
}

/// One negotiated option for `TCP_REPAIR_OPTIONS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairOption {
    /// MSS clamp (`TCPOPT_MSS`).
    Mss(u16),
    /// Window scaling (`TCPOPT_WINDOW`): our send and receive shift counts (0..=14).
    WindowScale {
        /// Shift applied to the peer's advertised window.
        snd: u8,
        /// Shift applied to our advertised window.
        rcv: u8,
    },
    /// SACK permitted (`TCPOPT_SACK_PERM`).
    SackPermitted,
    /// Timestamps (`TCPOPT_TIMESTAMP`).
    Timestamps,
}

/// `struct tcp_repair_window`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RepairWindow {
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

fn set_int<F: AsFd + ?Sized>(fd: &F, name: i32, opt: &'static str, v: i32) -> Result<()> {
    sys::setsockopt(fd.as_fd(), uapi::SOL_TCP, name, &v)
        .map_err(|e| Error::from_os(Op::TcpRepair(opt), e))
}

fn get_int<F: AsFd + ?Sized>(fd: &F, name: i32, opt: &'static str) -> Result<i32> {
    let mut v = 0i32;
    sys::getsockopt(fd.as_fd(), uapi::SOL_TCP, name, &mut v)
        .map_err(|e| Error::from_os(Op::TcpRepair(opt), e))?;
    Ok(v)
}

/// Enter or leave repair mode (`TCP_REPAIR`).
///
/// # Errors
/// [`Error::Os`] (e.g. `EPERM` without `CAP_NET_ADMIN`).
pub fn set_repair<F: AsFd + ?Sized>(fd: &F, mode: RepairMode) -> Result<()> {
    let v = match mode {
        RepairMode::On => uapi::TCP_REPAIR_ON,
        RepairMode::Off => uapi::TCP_REPAIR_OFF,
        RepairMode::OffNoWindowProbe => uapi::TCP_REPAIR_OFF_NO_WP,
    };
    set_int(fd, uapi::TCP_REPAIR, "TCP_REPAIR", v)
}

/// Whether the socket is in repair mode.
///
/// # Errors
/// [`Error::Os`].
pub fn repair<F: AsFd + ?Sized>(fd: &F) -> Result<bool> {
    Ok(get_int(fd, uapi::TCP_REPAIR, "TCP_REPAIR")? != 0)
}

/// Select the queue `TCP_QUEUE_SEQ` and repair-mode sends act on (`TCP_REPAIR_QUEUE`).
///
/// # Errors
/// [`Error::Os`] (`EPERM` outside repair mode).
pub fn set_repair_queue<F: AsFd + ?Sized>(fd: &F, q: Queue) -> Result<()> {
    let v = match q {
        Queue::None => uapi::TCP_NO_QUEUE,
        Queue::Recv => uapi::TCP_RECV_QUEUE,
        Queue::Send => uapi::TCP_SEND_QUEUE,
    };
    set_int(fd, uapi::TCP_REPAIR_QUEUE, "TCP_REPAIR_QUEUE", v)
}

/// Sequence number of the selected queue (`TCP_QUEUE_SEQ`): `snd_nxt`-side for the send
/// queue, `rcv_nxt` for the receive queue.
///
/// # Errors
/// [`Error::Os`].
pub fn queue_seq<F: AsFd + ?Sized>(fd: &F) -> Result<u32> {
    Ok(get_int(fd, uapi::TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ")? as u32)
}

/// Set the sequence number of the selected queue (before `connect()` in repair mode).
///
/// # Errors
/// [`Error::Os`].
pub fn set_queue_seq<F: AsFd + ?Sized>(fd: &F, seq: u32) -> Result<()> {
    set_int(fd, uapi::TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ", seq as i32)
}

/// Window state (`TCP_REPAIR_WINDOW`, repair mode only).
///
/// # Errors
/// [`Error::Os`].
pub fn repair_window<F: AsFd + ?Sized>(fd: &F) -> Result<RepairWindow> {
    let mut w = uapi::tcp_repair_window::default();
    sys::getsockopt(fd.as_fd(), uapi::SOL_TCP, uapi::TCP_REPAIR_WINDOW, &mut w)
        .map_err(|e| Error::from_os(Op::TcpRepair("TCP_REPAIR_WINDOW"), e))?;
    Ok(RepairWindow {
        snd_wl1: w.snd_wl1,
        snd_wnd: w.snd_wnd,
        max_window: w.max_window,
        rcv_wnd: w.rcv_wnd,
        rcv_wup: w.rcv_wup,
    })
}

/// Restore window state (`TCP_REPAIR_WINDOW`, repair mode, connected).
///
/// # Errors
/// [`Error::Os`].
pub fn set_repair_window<F: AsFd + ?Sized>(fd: &F, w: &RepairWindow) -> Result<()> {
    let raw = uapi::tcp_repair_window {
        snd_wl1: w.snd_wl1,
        snd_wnd: w.snd_wnd,
        max_window: w.max_window,
        rcv_wnd: w.rcv_wnd,
        rcv_wup: w.rcv_wup,
    };
    sys::setsockopt(fd.as_fd(), uapi::SOL_TCP, uapi::TCP_REPAIR_WINDOW, &raw)
        .map_err(|e| Error::from_os(Op::TcpRepair("TCP_REPAIR_WINDOW"), e))
}

/// Restore negotiated options (`TCP_REPAIR_OPTIONS`, repair mode, after `connect()`).
///
/// # Errors
/// [`Error::InvalidArgument`] for a window scale above 14; [`Error::Os`].
pub fn set_repair_options<F: AsFd + ?Sized>(fd: &F, opts: &[RepairOption]) -> Result<()> {
    let mut raw = Vec::with_capacity(opts.len());
    for o in opts {
        raw.push(match *o {
            RepairOption::Mss(m) => uapi::tcp_repair_opt {
                opt_code: uapi::TCPOPT_MSS,
                opt_val: u32::from(m),
            },
            RepairOption::WindowScale { snd, rcv } => {
                if snd > 14 || rcv > 14 {
                    return Err(Error::invalid(
                        "window_scale",
                        format!("{snd}/{rcv} exceeds 14"),
                    ));
                }
                uapi::tcp_repair_opt {
                    opt_code: uapi::TCPOPT_WINDOW,
                    opt_val: u32::from(snd) | (u32::from(rcv) << 16),
                }
            }
            RepairOption::SackPermitted => uapi::tcp_repair_opt {
                opt_code: uapi::TCPOPT_SACK_PERM,
                opt_val: 0,
            },
            RepairOption::Timestamps => uapi::tcp_repair_opt {
                opt_code: uapi::TCPOPT_TIMESTAMP,
                opt_val: 0,
            },
        });
    }
    sys::setsockopt_slice(fd.as_fd(), uapi::SOL_TCP, uapi::TCP_REPAIR_OPTIONS, &raw)
        .map_err(|e| Error::from_os(Op::TcpRepair("TCP_REPAIR_OPTIONS"), e))
}

/// The MSS in use (`TCP_MAXSEG`).
///
/// # Errors
/// [`Error::Os`].
pub fn mss<F: AsFd + ?Sized>(fd: &F) -> Result<u32> {
    Ok(get_int(fd, uapi::TCP_MAXSEG, "TCP_MAXSEG")? as u32)
}

/// Clamp the MSS (`TCP_MAXSEG`).
///
/// # Errors
/// [`Error::Os`].
pub fn set_mss<F: AsFd + ?Sized>(fd: &F, mss: u32) -> Result<()> {
    let v = i32::try_from(mss).map_err(|_| Error::invalid("mss", format!("{mss} exceeds i32")))?;
    set_int(fd, uapi::TCP_MAXSEG, "TCP_MAXSEG", v)
}

/// The current TCP timestamp clock value (`TCP_TIMESTAMP`).
///
/// # Errors
/// [`Error::Os`].
pub fn timestamp<F: AsFd + ?Sized>(fd: &F) -> Result<u32> {
    Ok(get_int(fd, uapi::TCP_TIMESTAMP, "TCP_TIMESTAMP")? as u32)
}

/// Set the timestamp offset so the clock reads `ts` now (`TCP_TIMESTAMP`, repair mode).
///
/// # Errors
/// [`Error::Os`].
pub fn set_timestamp<F: AsFd + ?Sized>(fd: &F, ts: u32) -> Result<()> {
    set_int(fd, uapi::TCP_TIMESTAMP, "TCP_TIMESTAMP", ts as i32)
}

/// A snapshot of the `TCP_INFO` fields a checkpoint needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpInfo {
    /// `tcpi_state`: [`uapi::TCP_ESTABLISHED`], [`uapi::TCP_LISTEN`], ...
    pub state: u8,
    /// `tcpi_options` (`TCPI_OPT_*` bits).
    pub options: u8,
    /// `tcpi_snd_wscale`.
    pub snd_wscale: u8,
    /// `tcpi_rcv_wscale`.
    pub rcv_wscale: u8,
    /// `tcpi_snd_mss`.
    pub snd_mss: u32,
    /// `tcpi_rcv_mss`.
    pub rcv_mss: u32,
    /// `tcpi_unacked`.
    pub unacked: u32,
    /// `tcpi_rtt` (µs).
    pub rtt_us: u32,
}

impl TcpInfo {
    /// Timestamps were negotiated.
    pub fn timestamps(&self) -> bool {
        self.options & uapi::TCPI_OPT_TIMESTAMPS != 0
    }

    /// SACK was negotiated.
    pub fn sack(&self) -> bool {
        self.options & uapi::TCPI_OPT_SACK != 0
    }

    /// Window scaling was negotiated.
    pub fn wscale(&self) -> bool {
        self.options & uapi::TCPI_OPT_WSCALE != 0
    }

    /// The [`RepairOption`]s that reproduce what was negotiated (MSS from `mss`).
    pub fn repair_options(&self, mss: u16) -> Vec<RepairOption> {
        let mut v = vec![RepairOption::Mss(mss)];
        if self.wscale() {
            v.push(RepairOption::WindowScale {
                snd: self.snd_wscale,
                rcv: self.rcv_wscale,
            });
        }
        if self.sack() {
            v.push(RepairOption::SackPermitted);
        }
        if self.timestamps() {
            v.push(RepairOption::Timestamps);
        }
        v
    }
}

/// Read `TCP_INFO` (the fixed prefix every kernel since 2.6 returns).
///
/// # Errors
/// [`Error::Os`], or [`Error::Os`] with `InvalidData` if the kernel returned too little.
pub fn tcp_info<F: AsFd + ?Sized>(fd: &F) -> Result<TcpInfo> {
    let mut b = [0u8; 104];
    let n = sys::getsockopt(fd.as_fd(), uapi::SOL_TCP, uapi::TCP_INFO, &mut b)
        .map_err(|e| Error::from_os(Op::TcpRepair("TCP_INFO"), e))?;
    if n < 72 {
        return Err(Error::Os {
            op: Op::TcpRepair("TCP_INFO"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{n} bytes")),
        });
    }
    let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    // `__u8 tcpi_snd_wscale:4, tcpi_rcv_wscale:4;` at byte 6: GCC puts the first member in the
    // low nibble on little-endian targets and in the high nibble on big-endian ones.
    let (snd_wscale, rcv_wscale) = if cfg!(target_endian = "big") {
        (b[6] >> 4, b[6] & 0xf)
    } else {
        (b[6] & 0xf, b[6] >> 4)
    };
    Ok(TcpInfo {
        state: b[0],
        options: b[5],
        snd_wscale,
        rcv_wscale,
        snd_mss: u32_at(16),
        rcv_mss: u32_at(20),
        unacked: u32_at(24),
        rtt_us: u32_at(68),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn tcp_info_of_a_loopback_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        let i = tcp_info(&c).unwrap();
        assert_eq!(i.state, uapi::TCP_ESTABLISHED);
        assert!(i.timestamps() && i.sack() && i.wscale(), "{i:?}");
        assert_eq!(i.snd_wscale, tcp_info(&s).unwrap().rcv_wscale);
        assert!(i.snd_mss > 0 && i.snd_mss <= 65495);
        assert_eq!(tcp_info(&l).unwrap().state, uapi::TCP_LISTEN);
        assert!(mss(&c).unwrap() > 0);
    }

    #[test]
    fn window_scale_is_validated() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let e =
            set_repair_options(&l, &[RepairOption::WindowScale { snd: 15, rcv: 0 }]).unwrap_err();
        assert!(matches!(
            e,
            Error::InvalidArgument {
                field: "window_scale",
                ..
            }
        ));
    }
}

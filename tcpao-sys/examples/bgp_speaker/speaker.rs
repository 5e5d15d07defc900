// SPDX-License-Identifier: MIT OR Apache-2.0
//! A minimal BGP-4 speaker (RFC 4271) for TCP-AO interop tests: it opens a session (OPEN,
//! KEEPALIVE) on a TCP stream whose TCP-AO keys the caller installed with `tcpao-sys`, keeps it
//! up with KEEPALIVEs, and reads and ignores UPDATEs. No routes, no RIB, no FSM beyond what
//! reaching and keeping Established needs; a NOTIFICATION or a hold-timer expiry ends it.
//!
//! Std only and blocking, with read timeouts; either end may be the TCP client. This file is
//! the library part of the `bgp_speaker` example and is also compiled into the selftests
//! (`interop/*` cases), so it uses nothing but `std`; each of the two uses part of it.
#![allow(dead_code)]

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

/// The BGP port.
pub const BGP_PORT: u16 = 179;
/// AS_TRANS (RFC 6793): the 2-octet "My AS" of a speaker whose ASN does not fit.
const AS_TRANS: u16 = 23_456;
/// Message types (RFC 4271 §4.1).
const OPEN: u8 = 1;
const UPDATE: u8 = 2;
const NOTIFICATION: u8 = 3;
const KEEPALIVE: u8 = 4;
/// The header: marker (16), length (2), type (1).
const HEADER_LEN: usize = 19;
/// The largest message (RFC 4271 §4.1; RFC 8654 extended messages are not offered).
const MAX_MESSAGE: usize = 4096;

/// What this speaker announces in its OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Our AS number (4-octet AS capability, RFC 6793).
    pub asn: u32,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds (0 or at least 3).
    pub hold_time: u16,
    /// Address family of the one Multiprotocol capability (RFC 4760): IPv6 unicast when
    /// true, IPv4 unicast otherwise.
    pub ipv6: bool,
}

/// The peer's OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerOpen {
    /// Its AS number (from the 4-octet AS capability when present).
    pub asn: u32,
    /// Its proposed hold time.
    pub hold_time: u16,
    /// Its BGP Identifier.
    pub router_id: Ipv4Addr,
}

/// Why a session ended or could not start.
#[derive(Debug)]
pub enum SpeakerError {
    /// The stream failed.
    Io(io::Error),
    /// The peer closed the connection.
    Closed,
    /// The peer sent a NOTIFICATION (RFC 4271 §4.5).
    Notification {
        /// Error code.
        code: u8,
        /// Error subcode.
        subcode: u8,
    },
    /// Nothing came from the peer for the negotiated hold time.
    HoldTimerExpired,
    /// The session was not Established by the deadline.
    Timeout(&'static str),
    /// The peer sent something this speaker does not accept.
    Protocol(String),
    /// Opening the session failed at this step.
    Opening(&'static str, Box<SpeakerError>),
}

impl fmt::Display for SpeakerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpeakerError::Io(e) => write!(f, "BGP stream: {e}"),
            SpeakerError::Closed => write!(f, "the peer closed the BGP connection"),
            SpeakerError::Notification { code, subcode } => {
                write!(f, "the peer sent NOTIFICATION {code}/{subcode}")
            }
            SpeakerError::HoldTimerExpired => write!(f, "hold timer expired"),
            SpeakerError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            SpeakerError::Protocol(s) => write!(f, "BGP protocol error: {s}"),
            SpeakerError::Opening(step, e) => write!(f, "{step}: {e}"),
        }
    }
}

impl std::error::Error for SpeakerError {}

impl From<io::Error> for SpeakerError {
    fn from(e: io::Error) -> Self {
        SpeakerError::Io(e)
    }
}

/// Messages received on an Established session, by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// KEEPALIVEs.
    pub keepalives: u64,
    /// UPDATEs (read and ignored).
    pub updates: u64,
    /// ROUTE-REFRESH and unknown types.
    pub other: u64,
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN + body.len());
    m.extend_from_slice(&[0xff; 16]);
    m.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

/// Our OPEN: version 4, My AS, hold time, BGP Identifier, and one Capabilities parameter
/// (RFC 5492) with Multiprotocol (RFC 4760) for the family and 4-octet AS (RFC 6793).
pub fn open_message(cfg: &Config) -> Vec<u8> {
    let my_as = u16::try_from(cfg.asn).unwrap_or(AS_TRANS);
    let afi: u16 = if cfg.ipv6 { 2 } else { 1 };
    let a = cfg.asn.to_be_bytes();
    let af = afi.to_be_bytes();
    let caps = [1, 4, af[0], af[1], 0, 1, 65, 4, a[0], a[1], a[2], a[3]];
    let mut body = vec![4];
    body.extend_from_slice(&my_as.to_be_bytes());
    body.extend_from_slice(&cfg.hold_time.to_be_bytes());
    body.extend_from_slice(&cfg.router_id.octets());
    body.push(2 + caps.len() as u8);
    body.extend_from_slice(&[2, caps.len() as u8]);
    body.extend_from_slice(&caps);
    message(OPEN, &body)
}

/// The KEEPALIVE message: a bare header.
pub fn keepalive_message() -> Vec<u8> {
    message(KEEPALIVE, &[])
}

/// A NOTIFICATION with no data (`6/2` is Cease, Administrative Shutdown).
pub fn notification_message(code: u8, subcode: u8) -> Vec<u8> {
    message(NOTIFICATION, &[code, subcode])
}

/// Parse an OPEN body.
///
/// # Errors
/// A version other than 4, or a body too short for its fields.
pub fn parse_open(body: &[u8]) -> Result<PeerOpen, SpeakerError> {
    if body.len() < 10 {
        return Err(SpeakerError::Protocol(format!(
            "OPEN of {} bytes",
            body.len()
        )));
    }
    if body[0] != 4 {
        return Err(SpeakerError::Protocol(format!("BGP version {}", body[0])));
    }
    let mut asn = u32::from(u16::from_be_bytes([body[1], body[2]]));
    let hold_time = u16::from_be_bytes([body[3], body[4]]);
    let router_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
    let opt_len = usize::from(body[9]);
    let mut params = body.get(10..10 + opt_len).ok_or_else(|| {
        SpeakerError::Protocol("OPEN optional parameters overrun the message".into())
    })?;
    while params.len() >= 2 {
        let (kind, len) = (params[0], usize::from(params[1]));
        let Some(value) = params.get(2..2 + len) else {
            break;
        };
        if kind == 2 {
            let mut caps = value;
            while caps.len() >= 2 {
                let (code, clen) = (caps[0], usize::from(caps[1]));
                if let (65, Some(v)) = (code, caps.get(2..6)) {
                    if clen == 4 {
                        asn = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                    }
                }
                caps = caps.get(2 + clen..).unwrap_or_default();
            }
        }
        params = &params[2 + len..];
    }
    Ok(PeerOpen {
        asn,
        hold_time,
        router_id,
    })
}

/// An Established BGP session on a TCP stream.
#[derive(Debug)]
pub struct Session {
    stream: TcpStream,
    peer: PeerOpen,
    hold: Duration,
    keepalive: Duration,
    last_sent: Instant,
    last_heard: Instant,
    buf: Vec<u8>,
    received: Received,
}

impl Session {
    /// Open a session on a connected stream: send our OPEN, read the peer's, send a
    /// KEEPALIVE, and wait for the peer's KEEPALIVE (RFC 4271 §8: OpenConfirm to
    /// Established). Either end may have connected.
    ///
    /// # Errors
    /// The stream failed or closed, the peer refused (NOTIFICATION), or `deadline` passed.
    pub fn establish(
        stream: TcpStream,
        cfg: &Config,
        deadline: Instant,
    ) -> Result<Session, SpeakerError> {
        let now = Instant::now();
        let mut s = Session {
            stream,
            peer: PeerOpen {
                asn: 0,
                hold_time: 0,
                router_id: Ipv4Addr::UNSPECIFIED,
            },
            hold: Duration::ZERO,
            keepalive: Duration::ZERO,
            last_sent: now,
            last_heard: now,
            buf: Vec::with_capacity(MAX_MESSAGE),
            received: Received::default(),
        };
        let step = |what: &'static str| move |e| SpeakerError::Opening(what, Box::new(e));
        s.send(&open_message(cfg))
            .map_err(step("sending our OPEN"))?;
        let (kind, body) = s
            .next_message(deadline, "the peer's OPEN")
            .map_err(step("waiting for the peer's OPEN"))?;
        let open = match kind {
            OPEN => parse_open(&body).map_err(step("reading the peer's OPEN"))?,
            NOTIFICATION => return Err(step("waiting for the peer's OPEN")(notification(&body))),
            k => {
                return Err(SpeakerError::Protocol(format!(
                    "message type {k} before OPEN"
                )));
            }
        };
        let hold = cfg.hold_time.min(open.hold_time);
        s.peer = open;
        s.hold = Duration::from_secs(u64::from(hold));
        s.keepalive = s.hold / 3;
        s.send(&keepalive_message())
            .map_err(step("sending our first KEEPALIVE"))?;
        let (kind, body) = s
            .next_message(deadline, "the peer's first KEEPALIVE")
            .map_err(step("waiting for the peer's first KEEPALIVE"))?;
        match kind {
            KEEPALIVE => Ok(s),
            NOTIFICATION => Err(step("waiting for the peer's first KEEPALIVE")(
                notification(&body),
            )),
            k => Err(SpeakerError::Protocol(format!(
                "message type {k} in OpenConfirm"
            ))),
        }
    }

    /// The peer's OPEN.
    pub fn peer(&self) -> &PeerOpen {
        &self.peer
    }

    /// The negotiated hold time.
    pub fn hold_time(&self) -> Duration {
        self.hold
    }

    /// Messages received since the session was Established.
    pub fn received(&self) -> Received {
        self.received
    }

    /// The TCP stream (for its TCP-AO socket options).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Send a KEEPALIVE now (for example to carry a new RNextKeyID at once).
    ///
    /// # Errors
    /// The stream failed.
    pub fn keepalive_now(&mut self) -> Result<(), SpeakerError> {
        self.send(&keepalive_message())
    }

    /// Keep the session up until `until`: send KEEPALIVEs every hold time / 3, read and count
    /// what the peer sends.
    ///
    /// # Errors
    /// NOTIFICATION, close, stream failure, or hold timer expiry.
    pub fn run_until(&mut self, until: Instant) -> Result<(), SpeakerError> {
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            if !self.keepalive.is_zero() && now >= self.last_sent + self.keepalive {
                self.keepalive_now()?;
            }
            if !self.hold.is_zero() && now >= self.last_heard + self.hold {
                return Err(SpeakerError::HoldTimerExpired);
            }
            let mut wake = until;
            if !self.keepalive.is_zero() {
                wake = wake.min(self.last_sent + self.keepalive);
            }
            if let Some((kind, body)) = self.try_message(wake)? {
                match kind {
                    KEEPALIVE => self.received.keepalives += 1,
                    UPDATE => self.received.updates += 1,
                    NOTIFICATION => return Err(notification(&body)),
                    OPEN => {
                        return Err(SpeakerError::Protocol(
                            "OPEN on an Established session".into(),
                        ));
                    }
                    _ => self.received.other += 1, // ROUTE-REFRESH (5) and the like
                }
            }
        }
    }

    /// End the session: NOTIFICATION Cease / Administrative Shutdown (RFC 4486), then our
    /// FIN. The stream is handed back, still open: dropping it closes the socket. A caller that
    /// keeps it until the peer closed too leaves no orphan socket behind. (For TCP-MD5 that
    /// matters: an orphan that became a TIME-WAIT socket cannot sign a RST, see
    /// `paths/*/fin-wait2-md5-reset` in the selftests, so a peer that still sends it data,
    /// such as its own NOTIFICATION, gets no answer and stays in LAST-ACK for minutes.)
    ///
    /// # Errors
    /// The stream failed.
    pub fn shutdown(mut self) -> Result<TcpStream, SpeakerError> {
        self.send(&notification_message(6, 2))?;
        self.stream.shutdown(std::net::Shutdown::Write)?;
        Ok(self.stream)
    }

    fn send(&mut self, m: &[u8]) -> Result<(), SpeakerError> {
        self.stream.write_all(m)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn next_message(
        &mut self,
        deadline: Instant,
        what: &'static str,
    ) -> Result<(u8, Vec<u8>), SpeakerError> {
        self.try_message(deadline)?
            .ok_or(SpeakerError::Timeout(what))
    }

    /// One message, or `None` if none completed before `until`.
    fn try_message(&mut self, until: Instant) -> Result<Option<(u8, Vec<u8>)>, SpeakerError> {
        loop {
            if let Some(m) = self.take_message()? {
                self.last_heard = Instant::now();
                return Ok(Some(m));
            }
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            self.stream
                .set_read_timeout(Some((until - now).max(Duration::from_millis(1))))?;
            let mut chunk = [0u8; MAX_MESSAGE];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(SpeakerError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A complete message from the buffer, if there is one.
    fn take_message(&mut self) -> Result<Option<(u8, Vec<u8>)>, SpeakerError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        if self.buf[..16] != [0xff; 16] {
            return Err(SpeakerError::Protocol("bad marker".into()));
        }
        let len = usize::from(u16::from_be_bytes([self.buf[16], self.buf[17]]));
        if !(HEADER_LEN..=MAX_MESSAGE).contains(&len) {
            return Err(SpeakerError::Protocol(format!("message length {len}")));
        }
        if self.buf.len() < len {
            return Ok(None);
        }
        let kind = self.buf[18];
        let body = self.buf[HEADER_LEN..len].to_vec();
        self.buf.drain(..len);
        Ok(Some((kind, body)))
    }
}

fn notification(body: &[u8]) -> SpeakerError {
    SpeakerError::Notification {
        code: body.first().copied().unwrap_or(0),
        subcode: body.get(1).copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_round_trips_with_the_four_octet_asn() {
        let cfg = Config {
            asn: 4_200_000_001,
            router_id: Ipv4Addr::new(10, 0, 1, 1),
            hold_time: 9,
            ipv6: true,
        };
        let m = open_message(&cfg);
        assert_eq!(usize::from(u16::from_be_bytes([m[16], m[17]])), m.len());
        assert_eq!(m[18], OPEN);
        let p = parse_open(&m[HEADER_LEN..]).unwrap();
        assert_eq!(
            (p.asn, p.hold_time, p.router_id),
            (cfg.asn, 9, cfg.router_id)
        );
        // 2-octet My AS is AS_TRANS; the MP capability names AFI 2.
        assert_eq!(&m[20..22], &AS_TRANS.to_be_bytes());
        assert!(m.windows(6).any(|w| w == [1, 4, 0, 2, 0, 1]));
    }

    #[test]
    fn bad_opens_are_errors_not_panics() {
        assert!(parse_open(&[4, 0, 1]).is_err());
        assert!(parse_open(&[3, 0, 1, 0, 9, 1, 2, 3, 4, 0]).is_err());
        assert!(parse_open(&[4, 0, 1, 0, 9, 1, 2, 3, 4, 200]).is_err());
        // Truncated capabilities inside a well-sized parameter are ignored.
        let p = parse_open(&[4, 0, 1, 0, 9, 1, 2, 3, 4, 4, 2, 2, 65, 9]).unwrap();
        assert_eq!(p.asn, 1);
    }
}

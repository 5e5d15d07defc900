// SPDX-License-Identifier: MIT OR Apache-2.0
//! The crate's error type: every kernel errno is mapped per operation, never returned bare.

use std::fmt;
use std::io;

/// The socket operation that failed (used in error messages and for errno mapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `setsockopt(TCP_AO_ADD_KEY)`.
    AddKey,
    /// `setsockopt(TCP_AO_DEL_KEY)`.
    DelKey,
    /// `getsockopt(TCP_AO_INFO)`.
    GetInfo,
    /// `setsockopt(TCP_AO_INFO)`.
    SetInfo,
    /// `getsockopt(TCP_AO_GET_KEYS)`.
    GetKeys,
    /// `getsockopt(TCP_AO_REPAIR)`.
    GetRepair,
    /// `setsockopt(TCP_AO_REPAIR)`.
    SetRepair,
    /// `setsockopt(TCP_MD5SIG_EXT)` adding a key.
    AddMd5,
    /// `setsockopt(TCP_MD5SIG_EXT)` deleting a key.
    DelMd5,
    /// A `TCP_REPAIR*` / `TCP_QUEUE_SEQ` / `TCP_TIMESTAMP` / `TCP_MAXSEG` / `TCP_INFO` call.
    TcpRepair(&'static str),
    /// Creating a socket or reading its address family.
    Socket,
}

impl Op {
    /// The socket option behind this operation, as the kernel names it.
    pub fn option_name(self) -> &'static str {
        match self {
            Op::AddKey => "TCP_AO_ADD_KEY",
            Op::DelKey => "TCP_AO_DEL_KEY",
            Op::GetInfo | Op::SetInfo => "TCP_AO_INFO",
            Op::GetKeys => "TCP_AO_GET_KEYS",
            Op::GetRepair | Op::SetRepair => "TCP_AO_REPAIR",
            Op::AddMd5 | Op::DelMd5 => "TCP_MD5SIG_EXT",
            Op::TcpRepair(name) => name,
            Op::Socket => "socket",
        }
    }

    fn is_set(self) -> bool {
        matches!(
            self,
            Op::AddKey | Op::DelKey | Op::SetInfo | Op::SetRepair | Op::AddMd5 | Op::DelMd5
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self {
            Op::TcpRepair(_) | Op::Socket => "",
            _ if self.is_set() => "setsockopt ",
            _ => "getsockopt ",
        };
        let what = match self {
            Op::AddMd5 => " (add key)",
            Op::DelMd5 => " (delete key)",
            _ => "",
        };
        write!(f, "{verb}{}{what}", self.option_name())
    }
}

/// Errors of this crate. Kernel errnos are mapped per operation (the same errno means
/// different things for different options); anything unexpected is [`Error::Os`] with the
/// `io::Error` (and so the errno) kept as the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `ENOPROTOOPT`: the kernel was built without `CONFIG_TCP_AO` (or `CONFIG_TCP_MD5SIG` for
    /// the MD5 operations).
    #[error("{op}: not supported by this kernel (ENOPROTOOPT)")]
    Unsupported {
        /// The failing operation.
        op: Op,
    },
    /// `ENOENT` on add: the kernel has no such MAC algorithm (crypto API name).
    #[error("{op}: the kernel does not provide algorithm {algorithm:?} (ENOENT)")]
    AlgorithmUnavailable {
        /// The failing operation.
        op: Op,
        /// The kernel algorithm name that was asked for.
        algorithm: String,
    },
    /// `EEXIST`: an MKT for an overlapping peer already uses this SendID or RecvID
    /// (RFC 5925 §3.1).
    #[error("{op}: an MKT for an overlapping peer already has this SendID or RecvID (EEXIST)")]
    IdConflict {
        /// The failing operation.
        op: Op,
    },
    /// `EBUSY`: the key is Current_key or RNext_key; delete it with a replacement.
    #[error("{op}: the key is the current or rnext key (EBUSY)")]
    KeyInUse {
        /// The failing operation.
        op: Op,
    },
    /// `EKEYREJECTED` when TCP-AO and TCP-MD5 collide: an MD5 key exists for this peer (adding
    /// AO), an AO key exists or `ao_required` is set (adding MD5), or MD5 keys exist (setting
    /// `ao_required`).
    #[error("{op}: TCP-AO and TCP-MD5 keys conflict for this peer (EKEYREJECTED)")]
    Md5Conflict {
        /// The failing operation.
        op: Op,
    },
    /// `EKEYREJECTED` elsewhere.
    #[error("{op}: key rejected by the kernel (EKEYREJECTED)")]
    KeyRejected {
        /// The failing operation.
        op: Op,
    },
    /// `ENOENT` (except on add): no such key, no named current/rnext key, or no TCP-AO state on
    /// the socket yet.
    #[error("{op}: no such key or no TCP-AO state on this socket (ENOENT)")]
    NotFound {
        /// The failing operation.
        op: Op,
    },
    /// `EMSGSIZE`: the MAC would not fit in the SYN's option space (maclen > 16).
    #[error("{op}: MAC too long to fit in the SYN option space (EMSGSIZE)")]
    MacTooLong {
        /// The failing operation.
        op: Op,
    },
    /// `EISCONN`: the socket is connected and has no TCP-AO state (keys must be installed
    /// before `connect()`/`listen()`, or in repair mode).
    #[error("{op}: socket already connected without TCP-AO (EISCONN)")]
    WrongState {
        /// The failing operation.
        op: Op,
    },
    /// `EPERM` on `TCP_AO_REPAIR`: the socket is not in `TCP_REPAIR` mode (or is a listener).
    #[error("{op}: socket is not in TCP_REPAIR mode (EPERM)")]
    NotInRepairMode {
        /// The failing operation.
        op: Op,
    },
    /// A value rejected before any system call, naming the field.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The offending field (e.g. `"prefix"`, `"mac_len"`).
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A key rotation did not complete before its deadline.
    #[error("key rotation to SendID {} / RecvID {} did not complete in time", .successor.send_id, .successor.recv_id)]
    RotationTimedOut {
        /// The successor key.
        successor: crate::KeySelector,
    },
    /// Any other failure; `source` keeps the errno.
    #[error("{op} failed")]
    Os {
        /// The failing operation.
        op: Op,
        /// The OS error (errno).
        #[source]
        source: io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Map an OS error from `op` to a variant (per-operation table in `docs/bindings.md`).
    pub fn from_os(op: Op, source: io::Error) -> Self {
        Self::from_os_with_alg(op, source, "")
    }

    pub(crate) fn from_os_with_alg(op: Op, source: io::Error, algorithm: &str) -> Self {
        let Some(errno) = source.raw_os_error() else {
            return Error::Os { op, source };
        };
        match (op, errno) {
            (Op::Socket | Op::TcpRepair(_), _) => Error::Os { op, source },
            (_, libc::ENOPROTOOPT) => Error::Unsupported { op },
            (Op::AddKey, libc::ENOENT) => Error::AlgorithmUnavailable {
                op,
                algorithm: algorithm.to_owned(),
            },
            (_, libc::ENOENT) => Error::NotFound { op },
            (Op::AddKey | Op::AddMd5, libc::EEXIST) => Error::IdConflict { op },
            (Op::DelKey | Op::SetInfo, libc::EBUSY) => Error::KeyInUse { op },
            (Op::AddKey | Op::AddMd5 | Op::SetInfo, libc::EKEYREJECTED) => {
                Error::Md5Conflict { op }
            }
            (_, libc::EKEYREJECTED) => Error::KeyRejected { op },
            (Op::AddKey, libc::EMSGSIZE) => Error::MacTooLong { op },
            (_, libc::EISCONN) => Error::WrongState { op },
            (Op::GetRepair | Op::SetRepair, libc::EPERM) => Error::NotInRepairMode { op },
            _ => Error::Os { op, source },
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// The errno behind this error, if it came from the kernel.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Unsupported { .. } => Some(libc::ENOPROTOOPT),
            Error::AlgorithmUnavailable { .. } | Error::NotFound { .. } => Some(libc::ENOENT),
            Error::IdConflict { .. } => Some(libc::EEXIST),
            Error::KeyInUse { .. } => Some(libc::EBUSY),
            Error::Md5Conflict { .. } | Error::KeyRejected { .. } => Some(libc::EKEYREJECTED),
            Error::MacTooLong { .. } => Some(libc::EMSGSIZE),
            Error::WrongState { .. } => Some(libc::EISCONN),
            Error::NotInRepairMode { .. } => Some(libc::EPERM),
            Error::InvalidArgument { .. } | Error::RotationTimedOut { .. } => None,
            Error::Os { source, .. } => source.raw_os_error(),
        }
    }

    /// True for [`Error::Unsupported`].
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(op: Op, errno: i32) -> Error {
        Error::from_os_with_alg(op, io::Error::from_raw_os_error(errno), "hmac(x)")
    }

    #[test]
    fn enoent_means_algorithm_on_add_and_not_found_elsewhere() {
        assert!(
            matches!(map(Op::AddKey, libc::ENOENT), Error::AlgorithmUnavailable { ref algorithm, .. } if algorithm == "hmac(x)")
        );
        for op in [
            Op::DelKey,
            Op::GetInfo,
            Op::SetInfo,
            Op::GetKeys,
            Op::GetRepair,
            Op::DelMd5,
        ] {
            assert!(
                matches!(map(op, libc::ENOENT), Error::NotFound { op: o } if o == op),
                "{op}"
            );
        }
    }

    #[test]
    fn errno_table_maps_each_variant() {
        assert!(map(Op::AddKey, libc::ENOPROTOOPT).is_unsupported());
        assert!(map(Op::AddMd5, libc::ENOPROTOOPT).is_unsupported());
        assert!(matches!(
            map(Op::AddKey, libc::EEXIST),
            Error::IdConflict { .. }
        ));
        assert!(matches!(
            map(Op::DelKey, libc::EBUSY),
            Error::KeyInUse { .. }
        ));
        assert!(matches!(
            map(Op::AddKey, libc::EKEYREJECTED),
            Error::Md5Conflict { .. }
        ));
        assert!(matches!(
            map(Op::AddMd5, libc::EKEYREJECTED),
            Error::Md5Conflict { .. }
        ));
        assert!(matches!(
            map(Op::DelKey, libc::EKEYREJECTED),
            Error::KeyRejected { .. }
        ));
        assert!(matches!(
            map(Op::AddKey, libc::EMSGSIZE),
            Error::MacTooLong { .. }
        ));
        assert!(matches!(
            map(Op::SetInfo, libc::EISCONN),
            Error::WrongState { .. }
        ));
        assert!(matches!(
            map(Op::SetRepair, libc::EPERM),
            Error::NotInRepairMode { .. }
        ));
        let e = map(Op::AddKey, libc::EINVAL);
        assert!(matches!(e, Error::Os { op: Op::AddKey, .. }));
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(e.to_string(), "setsockopt TCP_AO_ADD_KEY failed");
        // EPERM outside repair stays an OS error.
        assert!(matches!(map(Op::AddKey, libc::EPERM), Error::Os { .. }));
    }
}

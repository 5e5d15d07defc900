// SPDX-License-Identifier: MIT OR Apache-2.0
//! `setsockopt-closed`: the TCP-AO socket-option uAPI on fresh, closed and listening sockets
//! (kernel `setsockopt-closed.c`, all 125 case results), plus what upstream got wrong or left
//! out.
//!
//! Every case is a [`SoloTest`]: one fresh network namespace, one new socket, no peer and no
//! traffic. The cases are split by socket option, one module each: [`add_key`]
//! (`TCP_AO_ADD_KEY`), [`del_key`] (`TCP_AO_DEL_KEY`), [`info`] (`TCP_AO_INFO`) and
//! [`get_keys`] (`TCP_AO_GET_KEYS`). In each, the malformed-struct cases are data: one row
//! names the field it breaks on the typed [`tcpao_sys::uapi`] struct (which is then sent
//! byte for byte with `tcpao_sys::raw`) and the errno the kernel must answer, and, where
//! the typed API can express the same mistake, the error it must give before any system
//! call. The remaining cases are functions named in each module's case list. Every
//! successful key addition is read back with `TCP_AO_GET_KEYS` and compared field by field
//! (algorithm, key bytes or their RFC 5926 AES-CMAC fold, MAC length, flags,
//! current/rnext), like the kernel's `test_verify_socket_key`.
//!
//! Ours alone: a real wrong address family (the other INET family, `AF_UNIX`) on add; `E2BIG`
//! for non-zero trailing bytes on every option; what the typed API does with a peer of the
//! other family; deleting by an IPv4-mapped address and with an unchecked `ss_family`;
//! deleting VRF-bound keys; the `TCP_AO_INFO` read-modify-write trap at the raw level and its
//! absence in the typed API.

pub mod add_key;
pub mod del_key;
pub mod get_keys;
pub mod info;

use std::io;

use socket2::Socket;
use tcpao_sys::raw::{self, OptLen};
use tcpao_sys::uapi::{self, SOL_TCP};
use zeroize::Zeroizing;

use crate::outcome::PeerResult;
use crate::programs::sockopt::{add_verified, af, default_key, sockaddr};
use crate::registry::Test;
use crate::sockets::{self, DEFAULT_TEST_PASSWORD};
use crate::solo::{Solo, SoloTest};

const PROGRAM: &str = "setsockopt-closed";

/// Bytes appended to a struct for the extended-size and trailing-bytes cases.
const EXTEND: usize = 800;

/// The program's tests, option by option.
pub fn tests() -> Vec<Test> {
    let mut v = add_key::tests();
    v.extend(del_key::tests());
    v.extend(info::tests());
    v.extend(get_keys::tests());
    v
}

/// A case body.
pub type Body = fn(&Solo) -> PeerResult;

/// Register `cases` (name, body) for both families.
fn register(cases: &[(&'static str, Body)]) -> Vec<Test> {
    cases
        .iter()
        .flat_map(|(name, body)| SoloTest::new(PROGRAM, name).ao().build(*body))
        .collect()
}

/// A raw call the kernel must refuse: the option's default struct `T` with one field broken.
#[derive(Debug)]
pub struct Broken<T: 'static> {
    /// Test case name.
    pub name: &'static str,
    /// What is wrong, for the failure sentence.
    pub what: &'static str,
    /// Break the field (the case's namespace gives the family and addresses).
    pub set: fn(&mut T, &Solo),
    /// The errno the kernel must answer.
    pub errno: i32,
    /// The typed API's refusal of the same mistake, before any system call.
    pub typed: Option<Body>,
}

/// Register an option's `cases` and its `broken` rows (each run by `run`).
fn register_option<T: Sync>(
    cases: &[(&'static str, Body)],
    broken: &'static [Broken<T>],
    run: fn(&Solo, &Broken<T>) -> PeerResult,
) -> Vec<Test> {
    let mut v = register(cases);
    for row in broken {
        v.extend(
            SoloTest::new(PROGRAM, row.name)
                .ao()
                .build(move |s| run(s, row)),
        );
    }
    v
}

fn socket(s: &Solo) -> PeerResult<Socket> {
    sockets::tcp_socket(s.family())
}

/// A socket with the default key 100:100 for the remote address (kernel `prepare_defs`).
fn socket_with_default_key(s: &Solo) -> PeerResult<Socket> {
    let sk = socket(s)?;
    add_verified(
        &sk,
        &default_key(s.remote_addr(), 100, 100)?,
        DEFAULT_TEST_PASSWORD.as_bytes(),
    )?;
    Ok(sk)
}

/// The default key as a raw `tcp_ao_add` (kernel `test_prepare_def_key(.., this_ip_dest,
/// -1, 0, 100, 100)`): cmac(aes128), the default password, 100:100, host prefix.
fn default_add(s: &Solo) -> uapi::tcp_ao_add {
    let pw = DEFAULT_TEST_PASSWORD.as_bytes();
    let mut k = uapi::tcp_ao_add {
        addr: sockaddr(af(s.family()), Some(s.remote_addr()), 0),
        prefix: s.family().host_prefix(),
        sndid: 100,
        rcvid: 100,
        keylen: pw.len() as u8,
        ..Default::default()
    };
    k.alg_name[..12].copy_from_slice(b"cmac(aes128)");
    k.key[..pw.len()].copy_from_slice(pw);
    k
}

/// The raw `tcp_ao_del` of the default key (kernel `prepare_defs(TCP_AO_DEL_KEY)`).
fn default_del(s: &Solo) -> uapi::tcp_ao_del {
    uapi::tcp_ao_del {
        addr: sockaddr(af(s.family()), Some(s.remote_addr()), 0),
        prefix: s.family().host_prefix(),
        sndid: 100,
        rcvid: 100,
        ..Default::default()
    }
}

/// A raw `tcp_ao_getsockopt` filter for `get_all` with room for one key.
fn default_get() -> uapi::tcp_ao_getsockopt {
    uapi::tcp_ao_getsockopt {
        nkeys: 1,
        bitfield: uapi::tcp_ao_getsockopt::GET_ALL,
        ..Default::default()
    }
}

/// `bytes` followed by [`EXTEND`] zero bytes: the struct of a newer kernel.
fn extended(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(bytes.to_vec());
    v.resize(bytes.len() + EXTEND, 0);
    v
}

fn setopt(sk: &Socket, name: i32, bytes: &[u8], len: Option<u32>) -> io::Result<()> {
    raw::setsockopt_bytes(sk, SOL_TCP, name, Some(bytes), len)
}

fn getopt(sk: &Socket, name: i32, buf: Option<&mut [u8]>, len: OptLen) -> io::Result<Option<i32>> {
    raw::getsockopt_bytes(sk, SOL_TCP, name, buf, len)
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! `key-management`: deleting, forcing and rotating keys on closed, listening and established
//! sockets (kernel `key-management.c`, all 120 case results).
//!
//! - **Closed (10) and listen (15) sockets**: [`SoloTest`]s, one fresh namespace each; a case
//!   that upstream runs as step *n* of a sequence on one socket runs steps 1..*n* here and
//!   asserts each. The `listen()` current/rnext cases report `XFAIL` while the kernel keeps
//!   keys chosen before `listen()`, exactly like upstream's `FAULT_FIXME`.
//! - **Established sockets (95)**: six scenarios over a 20-key collection (random key length
//!   14–79, random bytes, an algorithm the running kernel accepts, random MAC length 1–16,
//!   client SendID *i* / server SendID 127+*i*), each run once per family in its own pair of
//!   namespaces. Every upstream result of a scenario is a test of its own
//!   (`<scenario>-<side>-<check>`) that reports its check from that one run; the
//!   `<scenario>-run` test reports the run as a whole (both peers finished, every segment on
//!   the wire verified by tcpao-refimpl). The collection comes from a seeded generator; the
//!   seed is printed and `TCPAO_SEED` replays it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::libc;
use socket2::Socket;
use tcpao_sys::repair::{RepairMode, set_repair};
use tcpao_sys::{Algorithm, AoRepair, Error, KeySelector, PeerPrefix, TcpAoExt};

use crate::counters::{Counters, Grew};
use crate::failure;
use crate::outcome::{Failure, OrFail, Outcome, PeerResult, TestResult};
use crate::peers::{Peer, run_pair};
use crate::probe::Feature;
use crate::programs::pair_config;
use crate::programs::sockopt::{
    add_verified, compare_key, dump_all, errno_name, expect_error, is_os, key_with, make_listen,
    typed_ok,
};
use crate::registry::{Ctx, Test};
use crate::rng::{Rng, run_seed};
use crate::sockets::{self, DEFAULT_TEST_PASSWORD, TestKey};
use crate::solo::{Solo, SoloTest};
use crate::topology::{Family, Side, TopologyConfig, VRF_IFINDEX};

const PROGRAM: &str = "key-management";
const SECOND_PASSWORD: &[u8] = b"at all times sincere friends of freedom have been rare";
const NR_KEYS: usize = 20;
const NR_PACKETS: usize = 20;
const MSG_LEN: usize = 100;
const QUOTA: u64 = (NR_PACKETS * MSG_LEN) as u64;
const ROTATIONS: usize = 20;

type SoloBody = fn(&Solo) -> PeerResult;
/// A forced-delete step: name, key IDs, replacement current and rnext.
type Step = (&'static str, (u8, u8), Option<u8>, Option<u8>);

/// The program's tests.
pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    let solo: &[(&str, SoloBody)] = &[
        ("closed-socket-delete-a-key", |s| delete_seq(s, false, 1)),
        ("closed-socket-delete-all-keys", |s| delete_seq(s, false, 2)),
        ("closed-socket-delete-current-key", |s| closed_busy(s, true)),
        ("closed-socket-delete-rnext-key", |s| closed_busy(s, false)),
        ("closed-socket-delete-a-key-set-current-rnext", |s| {
            forced_seq(s, false, 1)
        }),
        ("closed-socket-force-delete-current-key", |s| {
            forced_seq(s, false, 2)
        }),
        ("closed-socket-force-delete-rnext-key", |s| {
            forced_seq(s, false, 3)
        }),
        ("closed-socket-delete-current-rnext-key", |s| {
            forced_seq(s, false, 4)
        }),
        ("closed-socket-add-change-current-key", |s| {
            add_change(s, false, 1)
        }),
        ("closed-socket-add-change-rnext-key", |s| {
            add_change(s, false, 2)
        }),
        ("listen-socket-delete-a-key", |s| delete_seq(s, true, 1)),
        ("listen-socket-delete-all-keys", |s| delete_seq(s, true, 2)),
        ("listen-socket-setting-current-key-not-allowed", |s| {
            listen_set(s, true)
        }),
        ("listen-socket-setting-rnext-key-not-allowed", |s| {
            listen_set(s, false)
        }),
        ("listen-after-current-rnext-keys-set", |s| {
            listen_after_set(s, 0)
        }),
        ("listen-socket-delete-current-key-from-before-listen", |s| {
            listen_after_set(s, 1)
        }),
        ("listen-socket-delete-rnext-key-from-before-listen", |s| {
            listen_after_set(s, 2)
        }),
        (
            "listen-socket-getsockopt-tcp-ao-repair-is-restricted",
            |s| listen_repair(s, true),
        ),
        (
            "listen-socket-setsockopt-tcp-ao-repair-is-restricted",
            |s| listen_repair(s, false),
        ),
        ("listen-socket-delete-a-key-set-current-rnext", |s| {
            forced_seq(s, true, 1)
        }),
        ("listen-socket-force-delete-current-key", |s| {
            forced_seq(s, true, 2)
        }),
        ("listen-socket-force-delete-rnext-key", |s| {
            forced_seq(s, true, 3)
        }),
        ("listen-socket-delete-a-key-after-refused-deletes", |s| {
            forced_seq(s, true, 4)
        }),
        ("listen-socket-add-change-current-key", |s| {
            add_change(s, true, 1)
        }),
        ("listen-socket-add-change-rnext-key", |s| {
            add_change(s, true, 2)
        }),
        ("algorithms", algorithms),
    ];
    for (name, body) in solo {
        v.extend(SoloTest::new(PROGRAM, name).ao().build(*body));
    }
    for sc in &SCENARIOS {
        v.extend(scenario_tests(sc));
    }
    v
}

// ---------------------------------------------------------------------------------------
// Closed and listen sockets.
// ---------------------------------------------------------------------------------------

/// A socket with key 100:100 (default password) and 200:200 (second password) for the peer
/// (kernel `prepare_sk`); `listen`: then listen (kernel `prepare_lsk`).
pub(crate) fn prepare(s: &Solo, listen: bool) -> PeerResult<Socket> {
    let sk = sockets::tcp_socket(s.family())?;
    add_verified(
        &sk,
        &key_with(
            s.remote_addr(),
            None,
            100,
            100,
            DEFAULT_TEST_PASSWORD.as_bytes(),
        )?,
        DEFAULT_TEST_PASSWORD.as_bytes(),
    )?;
    add_verified(
        &sk,
        &key_with(s.remote_addr(), None, 200, 200, SECOND_PASSWORD)?,
        SECOND_PASSWORD,
    )?;
    if listen {
        make_listen(s, &sk)?;
    }
    Ok(sk)
}

pub(crate) fn sel(s: &Solo, send_id: u8, recv_id: u8) -> PeerResult<KeySelector> {
    Ok(KeySelector::new(
        PeerPrefix::host(s.remote_addr()).or_fail("prefix")?,
        send_id,
        recv_id,
    ))
}

fn has_key(sk: &Socket, send_id: u8, recv_id: u8) -> PeerResult<bool> {
    Ok(dump_all(sk)
        .or_fail("getsockopt(TCP_AO_GET_KEYS)")?
        .iter()
        .any(|d| (d.0.sndid, d.0.rcvid) == (send_id, recv_id)))
}

/// Delete and check the key is gone (kernel `test_del_key` + `try_delete_key`, no fault).
fn delete_ok(
    s: &Solo,
    sk: &Socket,
    tst: &str,
    ids: (u8, u8),
    current: Option<u8>,
    rnext: Option<u8>,
) -> PeerResult {
    typed_ok(
        &format!("{tst}: deleting key {}:{}", ids.0, ids.1),
        sk.del_ao_key_replacing(&sel(s, ids.0, ids.1)?, current, rnext),
    )?;
    if has_key(sk, ids.0, ids.1)? {
        return Err(failure!(
            "{tst}: key {}:{} is still on the socket",
            ids.0,
            ids.1
        ));
    }
    let info = info(sk)?;
    if current.is_some_and(|c| info.current_key != Some(c))
        || rnext.is_some_and(|r| info.rnext_key != Some(r))
    {
        return Err(failure!(
            "{tst}: after the delete current/rnext are {:?}/{:?}, {current:?}/{rnext:?} were asked for",
            info.current_key,
            info.rnext_key
        ));
    }
    Ok(())
}

/// A delete the kernel must refuse (`EBUSY` or `EINVAL`); the key must stay.
fn delete_refused(
    s: &Solo,
    sk: &Socket,
    tst: &str,
    ids: (u8, u8),
    current: Option<u8>,
    rnext: Option<u8>,
    busy: bool,
) -> PeerResult {
    let r = sk.del_ao_key_replacing(&sel(s, ids.0, ids.1)?, current, rnext);
    if busy {
        expect_error(
            tst,
            r,
            "Error::KeyInUse (EBUSY): key deletion was prevented",
            |e| matches!(e, Error::KeyInUse { .. }),
        )?;
    } else {
        expect_error(
            tst,
            r,
            "Error::Os with EINVAL: key deletion was prevented",
            |e| is_os(e, libc::EINVAL),
        )?;
    }
    if !has_key(sk, ids.0, ids.1)? {
        return Err(failure!("{tst}: the key {}:{} was deleted", ids.0, ids.1));
    }
    Ok(())
}

pub(crate) fn info(sk: &Socket) -> PeerResult<tcpao_sys::AoInfo> {
    typed_ok("getsockopt(TCP_AO_INFO)", sk.ao_info())?
        .ok_or_else(|| failure!("the socket has no TCP-AO state"))
}

/// Kernel `test_set_key`: set current/rnext with `TCP_AO_INFO` and read them back.
fn set_key(sk: &Socket, current: Option<u8>, rnext: Option<u8>) -> tcpao_sys::Result<()> {
    if let Some(c) = current {
        sk.set_ao_current_key(c)?;
    }
    if let Some(r) = rnext {
        sk.set_ao_rnext_key(r)?;
    }
    Ok(())
}

pub(crate) fn set_key_checked(sk: &Socket, current: Option<u8>, rnext: Option<u8>) -> PeerResult {
    typed_ok("setting current/rnext keys", set_key(sk, current, rnext))?;
    let i = info(sk)?;
    if current.is_some_and(|c| i.current_key != Some(c))
        || rnext.is_some_and(|r| i.rnext_key != Some(r))
    {
        return Err(failure!(
            "current/rnext read back as {:?}/{:?} after setting {current:?}/{rnext:?}",
            i.current_key,
            i.rnext_key
        ));
    }
    Ok(())
}

/// Delete 200:200, then (`upto` ≥ 2) 100:100, on a closed or listening socket: each delete
/// must succeed and leave no trace of the key (kernel `test_del_key` on `prepare_sk` /
/// `prepare_lsk`).
fn delete_seq(s: &Solo, listen: bool, upto: usize) -> PeerResult {
    let sk = prepare(s, listen)?;
    let what = socket_name(listen);
    delete_ok(
        s,
        &sk,
        &format!("{what}, delete a key"),
        (200, 200),
        None,
        None,
    )?;
    if upto >= 2 {
        let tst = format!("{what}, delete all keys");
        delete_ok(s, &sk, &tst, (100, 100), None, None)?;
        if !dump_all(&sk).or_fail("dump")?.is_empty() {
            return Err(failure!("{tst}: keys remain"));
        }
    }
    Ok(())
}

fn socket_name(listen: bool) -> &'static str {
    if listen {
        "listen socket"
    } else {
        "closed socket"
    }
}

fn closed_busy(s: &Solo, current: bool) -> PeerResult {
    let sk = prepare(s, false)?;
    set_key_checked(&sk, Some(100), Some(200))?;
    if current {
        delete_refused(
            s,
            &sk,
            "closed socket, delete current key",
            (100, 100),
            None,
            None,
            true,
        )
    } else {
        delete_refused(
            s,
            &sk,
            "closed socket, delete rnext key",
            (200, 200),
            None,
            None,
            true,
        )
    }
}

/// The forced-delete sequence on a closed (`listen == false`) or listening socket with keys
/// 100:100, 200:200, 10:11 and 12:13; runs steps 1..=`upto`.
fn forced_seq(s: &Solo, listen: bool, upto: usize) -> PeerResult {
    let sk = prepare(s, listen)?;
    add_verified(
        &sk,
        &key_with(s.remote_addr(), None, 10, 11, b"Glory to heros!")?,
        b"Glory to heros!",
    )?;
    add_verified(
        &sk,
        &key_with(s.remote_addr(), None, 12, 13, b"Glory to Ukraine!")?,
        b"Glory to Ukraine!",
    )?;
    let what = socket_name(listen);
    let steps: [Step; 3] = [
        (
            "delete a key + set current/rnext",
            (100, 100),
            Some(10),
            Some(13),
        ),
        ("force-delete current key", (10, 11), Some(200), None),
        ("force-delete rnext key", (12, 13), None, Some(200)),
    ];
    for (n, (name, ids, c, r)) in steps.iter().enumerate() {
        if n >= upto {
            return Ok(());
        }
        let tst = format!("{what}, {name}");
        if listen {
            // No current/rnext on listeners: EINVAL, the key stays.
            delete_refused(s, &sk, &tst, *ids, *c, *r, false)?;
        } else {
            delete_ok(s, &sk, &tst, *ids, *c, *r)?;
        }
    }
    if upto >= 4 {
        if listen {
            delete_ok(
                s,
                &sk,
                "listen socket, delete a key",
                (200, 200),
                None,
                None,
            )?;
        } else {
            delete_refused(
                s,
                &sk,
                "closed socket, delete current+rnext key",
                (200, 200),
                None,
                None,
                true,
            )?;
        }
    }
    Ok(())
}

fn add_change(s: &Solo, listen: bool, upto: usize) -> PeerResult {
    let sk = prepare(s, false)?;
    if listen {
        make_listen(s, &sk)?;
    } else {
        set_key_checked(&sk, Some(100), Some(200))?;
    }
    let pw = b"Laaaa! Lalala-la-la-lalala...";
    let what = socket_name(listen);
    for (n, (name, ids, c, r)) in [
        ("add + change current key", (10u8, 20u8), true, false),
        ("add + change rnext key", (20, 10), false, true),
    ]
    .iter()
    .enumerate()
    {
        if n >= upto {
            break;
        }
        let tst = format!("{what}, {name}");
        let key = key_with(s.remote_addr(), None, ids.0, ids.1, pw)?
            .set_current(*c)
            .set_rnext(*r);
        if listen {
            expect_error(&tst, sk.add_ao_key(&key), "Error::Os with EINVAL", |e| {
                is_os(e, libc::EINVAL)
            })?;
        } else {
            typed_ok(&tst, sk.add_ao_key(&key))?;
            let i = info(&sk)?;
            if (*c && i.current_key != Some(ids.0)) || (*r && i.rnext_key != Some(ids.1)) {
                return Err(failure!(
                    "{tst}: current/rnext are {:?}/{:?} after adding {}:{}",
                    i.current_key,
                    i.rnext_key,
                    ids.0,
                    ids.1
                ));
            }
        }
    }
    Ok(())
}

fn listen_set(s: &Solo, current: bool) -> PeerResult {
    let sk = prepare(s, true)?;
    let (r, tst) = if current {
        (
            set_key(&sk, Some(100), None),
            "listen socket, setting current key not allowed",
        )
    } else {
        (
            set_key(&sk, None, Some(200)),
            "listen socket, setting rnext key not allowed",
        )
    };
    expect_error(tst, r, "Error::Os with EINVAL", |e| is_os(e, libc::EINVAL))
}

/// Current/rnext chosen while closed survive `listen()` (kernel FIXME): XFail while they do.
fn listen_after_set(s: &Solo, step: usize) -> PeerResult {
    let sk = prepare(s, false)?;
    set_key_checked(&sk, Some(100), Some(200))?;
    sk.listen(10).or_fail("listen() failed")?;
    let i = info(&sk)?;
    if step == 0 {
        if i.current_key.is_some() || i.rnext_key.is_some() {
            return Err(Failure::XFail(format!(
                "listen() after current/rnext keys set: the socket has current/rnext keys: {}:{} (known: listen() does not reset them)",
                i.current_key.map_or(-1, i32::from),
                i.rnext_key.map_or(-1, i32::from)
            )));
        }
        return Ok(());
    }
    let mut xfails = Vec::new();
    for (n, (name, ids)) in [("current", (100u8, 100u8)), ("rnext", (200, 200))]
        .iter()
        .enumerate()
    {
        if n >= step {
            break;
        }
        let tst = format!("listen socket, delete {name} key from before listen()");
        match sk.del_ao_key(&sel(s, ids.0, ids.1)?) {
            Ok(()) => {
                if has_key(&sk, ids.0, ids.1)? {
                    return Err(failure!("{tst}: the key is still on the socket"));
                }
                xfails.clear();
            }
            Err(e) => xfails.push(format!(
                "{tst}: failed to delete the key {}:{}: {} (known: keys chosen before listen() stay current/rnext)",
                ids.0,
                ids.1,
                e.raw_os_error().map_or_else(|| e.to_string(), errno_name)
            )),
        }
    }
    match xfails.pop() {
        Some(x) => Err(Failure::XFail(x)),
        None => Ok(()),
    }
}

pub(crate) fn listen_repair(s: &Solo, get: bool) -> PeerResult {
    let sk = prepare(s, false)?;
    typed_ok("TCP_REPAIR on", set_repair(&sk, RepairMode::On))?;
    sk.listen(10).or_fail("listen() in repair mode failed")?;
    if get {
        expect_error(
            "listen socket, getsockopt(TCP_AO_REPAIR)",
            sk.ao_repair(),
            "Error::NotInRepairMode (EPERM): restricted",
            |e| matches!(e, Error::NotInRepairMode { .. }),
        )
    } else {
        expect_error(
            "listen socket, setsockopt(TCP_AO_REPAIR)",
            sk.set_ao_repair(&AoRepair::default()),
            "Error::NotInRepairMode (EPERM): restricted",
            |e| matches!(e, Error::NotInRepairMode { .. }),
        )
    }
}

/// Upstream's algorithm list (`test_algos[]`, FIPS off).
const UPSTREAM_ALGOS: [&str; 9] = [
    "cmac(aes128)",
    "hmac(sha1)",
    "hmac(sha512)",
    "hmac(sha384)",
    "hmac(sha256)",
    "hmac(sha224)",
    "hmac(sha3-512)",
    "hmac(rmd160)",
    "hmac(md5)",
];

/// The algorithms of [`UPSTREAM_ALGOS`] the running kernel accepts (probed once).
fn accepted_algorithms() -> Result<&'static [Algorithm], String> {
    static ALGS: OnceLock<Result<Vec<Algorithm>, String>> = OnceLock::new();
    ALGS.get_or_init(|| {
        let mut v = Vec::new();
        for n in UPSTREAM_ALGOS {
            let a = Algorithm::from_kernel_name(n);
            match tcpao_sys::probe_algorithm(&a) {
                Ok(true) => v.push(a),
                Ok(false) => {}
                Err(e) => return Err(format!("probing {n} failed: {e}")),
            }
        }
        if v.is_empty() {
            return Err("the kernel accepts none of upstream's algorithms".into());
        }
        Ok(v)
    })
    .as_ref()
    .map(Vec::as_slice)
    .map_err(Clone::clone)
}

/// Every algorithm of upstream's list is either accepted or refused with ENOENT
/// (`Error::AlgorithmUnavailable`); the RFC 5926 ones must be accepted.
fn algorithms(s: &Solo) -> PeerResult {
    let sk = sockets::tcp_socket(s.family())?;
    let (mut yes, mut no) = (Vec::new(), Vec::new());
    for (i, n) in UPSTREAM_ALGOS.iter().enumerate() {
        let key = tcpao_sys::AoKey::new(
            PeerPrefix::host(s.remote_addr()).or_fail("prefix")?,
            i as u8,
            i as u8,
            Algorithm::from_kernel_name(n),
            tcpao_sys::MasterKey::new(DEFAULT_TEST_PASSWORD.as_bytes()).or_fail("key")?,
        );
        match sk.add_ao_key(&key) {
            Ok(()) => yes.push(*n),
            Err(Error::AlgorithmUnavailable { algorithm, .. }) if algorithm == *n => no.push(*n),
            Err(e) => return Err(failure!("adding a {n} key failed with {e:?}, not ENOENT")),
        }
    }
    s.diag(format!(
        "accepted: {}; ENOENT: {}",
        yes.join(", "),
        no.join(", ")
    ));
    for must in ["hmac(sha1)", "cmac(aes128)"] {
        if !yes.contains(&must) {
            return Err(failure!(
                "the kernel refuses {must}, which RFC 5926 makes mandatory"
            ));
        }
    }
    let probed: Vec<&str> = accepted_algorithms()
        .map_err(Failure::Fail)?
        .iter()
        .map(Algorithm::kernel_name)
        .collect();
    if probed != yes {
        return Err(failure!(
            "the probe found {probed:?}, this socket accepted {yes:?}"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Established sockets.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Flapping,
    Rotate,
    Match,
}

#[derive(Debug)]
struct Scenario {
    slug: &'static str,
    upstream: &'static str,
    kind: Kind,
    /// Client's current/rnext key indexes set before connect (None: the kernel's choice).
    current: Option<usize>,
    rnext: Option<usize>,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        slug: "unset-before-connect",
        upstream: "Check current/rnext keys unset before connect()",
        kind: Kind::Plain,
        current: None,
        rnext: None,
    },
    Scenario {
        slug: "set-before-connect",
        upstream: "Check current/rnext keys set before connect()",
        kind: Kind::Plain,
        current: Some(10),
        rnext: Some(10),
    },
    Scenario {
        slug: "current-ne-rnext-before-connect",
        upstream: "Check current != rnext keys set before connect()",
        kind: Kind::Plain,
        current: Some(10),
        rnext: Some(5),
    },
    Scenario {
        slug: "current-flapping-back",
        upstream: "Check current flapping back on peer's RnextKey request",
        kind: Kind::Flapping,
        current: Some(10),
        rnext: Some(5),
    },
    Scenario {
        slug: "rotate-over-all-keys",
        upstream: "Rotate over all different keys",
        kind: Kind::Rotate,
        current: Some(0),
        rnext: Some(0),
    },
    Scenario {
        slug: "established-key-matching",
        upstream: "Check connect()/accept() => established key matching",
        kind: Kind::Match,
        current: Some(0),
        rnext: Some(0),
    },
];

/// The key `client current` is switched to in the flapping scenario.
const FLAP_TO: usize = 2;

/// One key of the collection (kernel `struct test_key`).
struct CKey {
    password: zeroize::Zeroizing<Vec<u8>>,
    algorithm: Algorithm,
    client_id: u8,
    server_id: u8,
    maclen: u8,
    matches_client: bool,
    matches_server: bool,
    matches_vrf: bool,
}

impl Scenario {
    fn index(&self) -> u64 {
        SCENARIOS
            .iter()
            .position(|s| s.slug == self.slug)
            .unwrap_or(0) as u64
    }

    /// The seed of this scenario's collection (the same on both peers).
    fn seed(&self, family: Family) -> u64 {
        run_seed()
            ^ (self.index() + 1).wrapping_mul(0x9e37_79b9)
            ^ if family == Family::Ipv6 { 0x600 } else { 0x400 }
    }

    /// The 20-key collection (kernel `init_default_key_collection(20, true)`, and for the
    /// matching scenario `client_non_matching()`).
    fn collection(&self, family: Family) -> Result<Vec<CKey>, String> {
        let algs = accepted_algorithms()?;
        let mut rng = Rng::new(self.seed(family));
        Ok((0..NR_KEYS)
            .map(|i| {
                let len = 14 + rng.below(80 - 14) as usize;
                let mut pw = zeroize::Zeroizing::new(vec![0u8; len]);
                rng.fill(&mut pw);
                let maclen = 1 + rng.below(16) as u8;
                let algorithm = algs[rng.below(algs.len() as u64) as usize].clone();
                let m = self.kind == Kind::Match;
                CKey {
                    password: pw,
                    algorithm,
                    client_id: i as u8,
                    server_id: 127 + i as u8,
                    maclen,
                    matches_client: !m || (i + 3) % 4 != 0,
                    matches_server: !m || (i + 2) % 4 != 0,
                    matches_vrf: !m || (i + 1) % 4 != 0,
                }
            })
            .collect())
    }

    fn current_index(&self) -> usize {
        self.current.unwrap_or(NR_KEYS - 1)
    }

    fn rnext_index(&self) -> usize {
        self.rnext.unwrap_or(NR_KEYS - 1)
    }

    /// Rotation order: the key after `rnext`, wrapping, 20 times.
    fn rotation(&self, n: usize) -> usize {
        (self.rnext_index() + 1 + n) % NR_KEYS
    }

    /// Check names, in the order upstream reports them.
    fn checks(&self, side: Side) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        match side {
            Side::Server => {
                v.extend(
                    [
                        "server-listener-keys",
                        "server-alive",
                        "server-listener-counters",
                    ]
                    .map(String::from),
                );
                if self.kind == Kind::Rotate {
                    v.extend((1..=ROTATIONS).map(|n| format!("server-rotation-{n:02}-current")));
                }
                v.extend(["server-keys", "server-counters"].map(String::from));
            }
            Side::Client => {
                if self.kind == Kind::Rotate {
                    v.extend((1..=ROTATIONS).map(|n| format!("client-rotation-{n:02}-rnext")));
                }
                if self.kind == Kind::Match {
                    v.extend(
                        ["client-wrong-addr-einval", "client-wrong-vrf-einval"].map(String::from),
                    );
                }
                v.extend(["client-current", "client-rnext", "client-keys"].map(String::from));
                if self.kind != Kind::Match {
                    v.push("client-counters".into());
                }
            }
        }
        v
    }

    /// Keys the *other* peer transmits with, as indexes (so their per-key `pkt_good` must
    /// grow here); `None` = skip the key (racy).
    fn rx_used(&self, side: Side, i: usize) -> Option<bool> {
        if self.kind == Kind::Flapping && i == FLAP_TO {
            return None;
        }
        Some(match side {
            // The server receives what the client sends: its current key.
            Side::Server => i == self.current_index(),
            // The client receives what the server sends: the key it asked for (rnext), and
            // every key it rotated to.
            Side::Client => i == self.rnext_index() || self.kind == Kind::Rotate,
        })
    }

    fn server_quota(&self) -> u64 {
        match self.kind {
            Kind::Flapping | Kind::Match => 2 * QUOTA,
            _ => QUOTA,
        }
    }
}

/// Check results of one scenario run, shared by both peers.
#[derive(Default)]
struct Checks(Mutex<BTreeMap<String, Result<String, String>>>);

impl Checks {
    fn record(&self, name: &str, r: Result<String, String>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), r);
    }

    fn ok(&self, name: &str, detail: impl Into<String>) {
        self.record(name, Ok(detail.into()));
    }

    fn check(&self, name: &str, r: PeerResult, detail: impl Into<String>) {
        match r {
            Ok(()) => self.ok(name, detail),
            Err(f) => self.record(name, Err(f.to_string())),
        }
    }
}

/// A finished scenario run.
struct ScenarioRun {
    checks: BTreeMap<String, Result<String, String>>,
    outcome: Outcome,
    diagnostics: Vec<String>,
}

type RunCell = Arc<OnceLock<ScenarioRun>>;

fn run_cell(family: Family, slug: &str) -> RunCell {
    static RUNS: OnceLock<Mutex<HashMap<(Family, String), RunCell>>> = OnceLock::new();
    let mut m = RUNS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(m.entry((family, slug.to_owned())).or_default())
}

fn run_scenario(ctx: &Ctx, family: Family, sc: &'static Scenario) -> ScenarioRun {
    let name = format!("{PROGRAM}/{}/{}", family.name(), sc.slug);
    let mut cfg = pair_config(ctx, family, &name);
    cfg.topology = TopologyConfig {
        vrf: sc.kind == Kind::Match,
        ..TopologyConfig::default()
    };
    let checks = Checks::default();
    let report = run_pair(&cfg, |p| server(p, sc, &checks), |p| client(p, sc, &checks));
    let mut diagnostics = vec![format!(
        "scenario \"{}\": collection seed {:#x} (replay with TCPAO_SEED={:#x})",
        sc.upstream,
        sc.seed(family),
        run_seed()
    )];
    diagnostics.extend(report.diagnostics);
    ScenarioRun {
        checks: checks
            .0
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        outcome: report.outcome,
        diagnostics,
    }
}

fn scenario_tests(sc: &'static Scenario) -> Vec<Test> {
    let mut names = vec![None];
    names.extend(sc.checks(Side::Server).into_iter().map(Some));
    names.extend(sc.checks(Side::Client).into_iter().map(Some));
    let mut v = Vec::new();
    for family in Family::ALL {
        let mut req = vec![Feature::Netns, Feature::Veth, Feature::TcpAo];
        if family == Family::Ipv6 {
            req.push(Feature::Ipv6);
        }
        if sc.kind == Kind::Match {
            req.push(Feature::Vrf);
        }
        for check in &names {
            let name = format!(
                "{PROGRAM}/{}/{}-{}",
                family.name(),
                sc.slug,
                check.as_deref().unwrap_or("run")
            );
            let check = check.clone();
            v.push(
                Test::new(name, move |ctx: &Ctx| {
                    scenario_check(ctx, family, sc, check.as_deref())
                })
                .requires(&req)
                .timeout(Duration::from_secs(120)),
            );
        }
    }
    v
}

fn scenario_check(
    ctx: &Ctx,
    family: Family,
    sc: &'static Scenario,
    check: Option<&str>,
) -> TestResult {
    let cell = run_cell(family, sc.slug);
    let run = cell.get_or_init(|| run_scenario(ctx, family, sc));
    let Some(check) = check else {
        for d in &run.diagnostics {
            ctx.diag(d);
        }
        return Ok(run.outcome.clone());
    };
    Ok(match run.checks.get(check) {
        Some(Ok(detail)) => {
            if !detail.is_empty() {
                ctx.diag(detail);
            }
            Outcome::Pass
        }
        Some(Err(msg)) => Outcome::Fail(msg.clone()),
        None => Outcome::Fail(format!(
            "the scenario ended before this check ran ({})",
            match &run.outcome {
                Outcome::Pass => "both peers finished".to_owned(),
                Outcome::Fail(f) => f.clone(),
                Outcome::Skip(s) => format!("skipped: {s}"),
                Outcome::XFail(x) => format!("xfail: {x}"),
            }
        )),
    })
}

/// The test key of collection entry `k` for `side` (kernel `key_collection_socket`).
fn test_key(p: &Peer<'_>, k: &CKey, side: Side) -> TestKey {
    let (matches, send_id, recv_id) = match side {
        Side::Server => (k.matches_client, k.server_id, k.client_id),
        Side::Client => (k.matches_server, k.client_id, k.server_id),
    };
    let addr: IpAddr = if matches {
        p.remote_addr()
    } else {
        p.family().wrong_addr()
    };
    let mut t = TestKey::new(addr, send_id, recv_id)
        .password(&k.password)
        .algorithm(k.algorithm.clone())
        .maclen(k.maclen);
    if !k.matches_vrf {
        t.vrf = Some(VRF_IFINDEX);
    }
    t
}

fn ids(k: &CKey, side: Side) -> (u8, u8) {
    match side {
        Side::Server => (k.server_id, k.client_id),
        Side::Client => (k.client_id, k.server_id),
    }
}

/// Kernel `verify_keys`: the `get_all` dump holds exactly the keys that must survive, each
/// with its algorithm (`cmac(aes)` for cmac(aes128)), key bytes (the 16-byte RFC 5926 fold
/// for cmac keys of another length), MAC length and flags.
fn verify_keys(
    p: &Peer<'_>,
    sk: &Socket,
    keys: &[CKey],
    side: Side,
    listener: bool,
) -> PeerResult<String> {
    let dump = dump_all(sk).or_fail("getsockopt(TCP_AO_GET_KEYS)")?;
    let mut expected = 0;
    for k in keys {
        let matches = listener
            || (match side {
                Side::Server => k.matches_client,
                Side::Client => k.matches_server,
            } && k.matches_vrf);
        let (s, r) = ids(k, side);
        let d = dump.iter().find(|d| (d.0.sndid, d.0.rcvid) == (s, r));
        if matches != d.is_some() {
            return Err(failure!(
                "key {s}:{r} {}{} on the socket",
                if k.matches_vrf { "" } else { "[vrf] " },
                if matches {
                    "disappeared"
                } else {
                    "yet present"
                }
            ));
        }
        let Some(d) = d else { continue };
        expected += 1;
        let ao = test_key(p, k, side).to_ao_key()?;
        compare_key(d, &ao, &k.password, false).map_err(Failure::Fail)?;
    }
    if dump.len() != expected {
        return Err(failure!(
            "the socket has {} keys, {expected} expected",
            dump.len()
        ));
    }
    Ok(format!("{expected} keys consistent with the expectations"))
}

/// Kernel `verify_counters`: GOOD on socket and netns (nothing else moved), and per key
/// `pkt_good` grew exactly on the keys the peer transmitted with.
fn verify_counters(
    before: &Counters,
    after: &Counters,
    sc: &Scenario,
    keys: &[CKey],
    side: Side,
) -> PeerResult<String> {
    after.assert_grew_exactly(before, Grew::GOOD)?;
    let mut grew = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let (s, r) = ids(k, side);
        let Some(a) = after.keys.iter().find(|c| (c.send_id, c.recv_id) == (s, r)) else {
            continue;
        };
        let b = before
            .keys
            .iter()
            .find(|c| (c.send_id, c.recv_id) == (s, r))
            .map_or(0, |c| c.good);
        match sc.rx_used(side, i) {
            None => {}
            Some(true) if a.good <= b => {
                return Err(failure!(
                    "key {s}:{r} pkt_good did not increase: {b} => {}",
                    a.good
                ));
            }
            Some(false) if a.good != b => {
                return Err(failure!(
                    "key {s}:{r} pkt_good was not expected to change (the peer does not send with it): {b} => {}",
                    a.good
                ));
            }
            Some(_) => {}
        }
        if a.good > b {
            grew.push(format!("{s}:{r}"));
        }
    }
    Ok(format!(
        "passed counters checks; keys that verified segments: {}",
        grew.join(" ")
    ))
}

fn collection(p: &Peer<'_>, sc: &Scenario) -> PeerResult<Vec<CKey>> {
    sc.collection(p.family()).map_err(Failure::Fail)
}

fn server(p: &Peer<'_>, sc: &'static Scenario, ck: &Checks) -> PeerResult {
    let keys = collection(p, sc)?;
    let lsk = sockets::listen(p, p.port(), 1)?;
    for k in &keys {
        sockets::add_key(p, &lsk, &test_key(p, k, Side::Server))?;
    }
    let lsk_c1 = Counters::of(&lsk)?;
    p.sync()?; // keys added => connect()
    let sk = sockets::accept(p, &lsk, p.deadline(), || false)?
        .ok_or_else(|| failure!("the server accepted no connection within {:?}", p.timeout()))?;
    let begin = Counters::of(&sk)?;
    p.sync()?; // accepted => send data
    let lsk_c2 = Counters::of(&lsk)?;
    ck.check(
        "server-listener-keys",
        verify_keys(p, &lsk, &keys, Side::Server, true).map(drop),
        "every key stays on the listener",
    );
    drop(lsk);
    let served = sockets::echo_quota(p, &sk, sc.server_quota(), p.deadline())?;
    ck.check(
        "server-alive",
        if served == sc.server_quota() {
            Ok(())
        } else {
            Err(failure!(
                "server served: {served} of {} bytes",
                sc.server_quota()
            ))
        },
        format!("server served {served} bytes"),
    );
    match verify_counters(&lsk_c1, &lsk_c2, sc, &keys, Side::Server) {
        Ok(d) => ck.ok("server-listener-counters", d),
        Err(e) => ck.record("server-listener-counters", Err(e.to_string())),
    }
    if sc.kind == Kind::Rotate {
        for n in 1..=ROTATIONS {
            let i = sc.rotation(n - 1);
            let served = sockets::echo_quota(p, &sk, QUOTA, p.deadline())?;
            if served != QUOTA {
                return Err(failure!(
                    "rotation {n}: server served: {served} of {QUOTA} bytes"
                ));
            }
            let want = keys[i].server_id;
            let got = info_of(&sk)?.current_key;
            ck.check(
                &format!("server-rotation-{n:02}-current"),
                if got == Some(want) {
                    Ok(())
                } else {
                    Err(failure!(
                        "rotation {n}: current key is not the expected one {want} != {got:?}"
                    ))
                },
                format!("rotation {n}: current key {want} as expected"),
            );
            p.sync()?; // verify current/rnext
        }
    }
    let end = Counters::of(&sk)?;
    match verify_keys(p, &sk, &keys, Side::Server, false) {
        Ok(d) => ck.ok("server-keys", d),
        Err(e) => ck.record("server-keys", Err(e.to_string())),
    }
    p.sync()?; // verified => closed
    drop(sk);
    match verify_counters(&begin, &end, sc, &keys, Side::Server) {
        Ok(d) => ck.ok("server-counters", d),
        Err(e) => ck.record("server-counters", Err(e.to_string())),
    }
    p.sync() // counters
}

fn info_of(sk: &Socket) -> PeerResult<tcpao_sys::AoInfo> {
    sk.ao_info()
        .or_fail("getsockopt(TCP_AO_INFO)")?
        .ok_or_else(|| failure!("the socket has no TCP-AO state"))
}

fn client(p: &Peer<'_>, sc: &'static Scenario, ck: &Checks) -> PeerResult {
    let keys = collection(p, sc)?;
    let sk = sockets::client_socket(p)?;
    for k in &keys {
        sockets::add_key(p, &sk, &test_key(p, k, Side::Client))?;
    }
    if sc.current.is_some() || sc.rnext.is_some() {
        let c = sc.current.map(|i| keys[i].client_id);
        let r = sc.rnext.map(|i| keys[i].server_id);
        set_key(&sk, c, r).or_fail("failed to set current/rnext keys")?;
    }
    let before = Counters::of(&sk)?;
    p.sync()?; // keys added => connect()
    sockets::connect_ok(p, &sk, p.remote_addr(), p.port())?;
    p.sync()?; // accepted => send data
    let deadline = || Instant::now() + p.timeout();
    sockets::echo_verify(p, &sk, NR_PACKETS, MSG_LEN, deadline())?;
    let mut rnext_index = sc.rnext_index();
    match sc.kind {
        Kind::Plain => {}
        Kind::Flapping => {
            set_key(&sk, Some(keys[FLAP_TO].client_id), None)
                .or_fail("can't change the current key")?;
            sockets::echo_verify(p, &sk, NR_PACKETS, MSG_LEN, deadline())?;
        }
        Kind::Rotate => {
            for n in 1..=ROTATIONS {
                let i = sc.rotation(n - 1);
                let want = keys[i].server_id;
                set_key(&sk, None, Some(want)).or_fail("can't change the rnext key")?;
                sockets::echo_verify(p, &sk, NR_PACKETS, MSG_LEN, deadline())?;
                let got = info_of(&sk)?.rnext_key;
                ck.check(
                    &format!("client-rotation-{n:02}-rnext"),
                    if got == Some(want) {
                        Ok(())
                    } else {
                        Err(failure!(
                            "rotation {n}: rnext key is not the expected one {want} != {got:?}"
                        ))
                    },
                    format!("rotation {n}: rnext key {want} as expected"),
                );
                p.sync()?; // verify current/rnext
            }
        }
        Kind::Match => {
            rnext_index = try_unmatched_keys(p, &sk, &keys, ck)?;
        }
    }
    // Kernel `end_client`.
    let i = info_of(&sk)?;
    let want_c = keys[sc.current_index()].client_id;
    let want_r = keys[rnext_index].server_id;
    ck.check(
        "client-current",
        if i.current_key == Some(want_c) {
            Ok(())
        } else {
            Err(failure!(
                "current key is not the expected one {want_c} != {:?}",
                i.current_key
            ))
        },
        format!("current key {want_c} as expected"),
    );
    ck.check(
        "client-rnext",
        if i.rnext_key == Some(want_r) {
            Ok(())
        } else {
            Err(failure!(
                "rnext key is not the expected one {want_r} != {:?}",
                i.rnext_key
            ))
        },
        format!("rnext key {want_r} as expected"),
    );
    let end = Counters::of(&sk)?;
    match verify_keys(p, &sk, &keys, Side::Client, false) {
        Ok(d) => ck.ok("client-keys", d),
        Err(e) => ck.record("client-keys", Err(e.to_string())),
    }
    p.sync()?; // verified => closed
    drop(sk);
    if sc.kind != Kind::Match {
        match verify_counters(&before, &end, sc, &keys, Side::Client) {
            Ok(d) => ck.ok("client-counters", d),
            Err(e) => ck.record("client-counters", Err(e.to_string())),
        }
    }
    p.sync() // counters
}

/// Kernel `try_unmatched_keys`: on the established socket a key for another address, or for
/// a VRF the socket is not bound to, is refused (EINVAL); then ask the server for a key it
/// does not have (RNext) and check the connection still works. Returns the new rnext index.
fn try_unmatched_keys(p: &Peer<'_>, sk: &Socket, keys: &[CKey], ck: &Checks) -> PeerResult<usize> {
    let k = keys
        .iter()
        .find(|k| !k.matches_server)
        .ok_or_else(|| failure!("all keys on the client match the server"))?;
    let wrong = test_key(p, k, Side::Client).to_ao_key()?;
    ck.check(
        "client-wrong-addr-einval",
        expect_error(
            "adding a key with non-matching ip-address for the established socket",
            sk.add_ao_key(&wrong),
            "Error::Os with EINVAL",
            |e| is_os(e, libc::EINVAL),
        ),
        "can't add a key with non-matching ip-address for established sk",
    );
    let mut vrf_key = test_key(p, k, Side::Client);
    vrf_key.peer = p.remote_addr();
    vrf_key.vrf = Some(VRF_IFINDEX);
    ck.check(
        "client-wrong-vrf-einval",
        expect_error(
            "adding a key with non-matching VRF for the established socket",
            sk.add_ao_key(&vrf_key.to_ao_key()?),
            "Error::Os with EINVAL",
            |e| is_os(e, libc::EINVAL),
        ),
        "can't add a key with non-matching VRF for established sk",
    );
    let (i, k) = keys
        .iter()
        .enumerate()
        .find(|(_, k)| !k.matches_client)
        .ok_or_else(|| failure!("all keys on the server match the client"))?;
    set_key(sk, None, Some(k.server_id)).or_fail("can't change the rnext key")?;
    sockets::echo_verify(p, sk, NR_PACKETS, MSG_LEN, Instant::now() + p.timeout())?;
    Ok(i)
}

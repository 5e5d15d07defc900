// SPDX-License-Identifier: MIT OR Apache-2.0
//! Kernel feature probes, run once at start.
//!
//! Every probe asks the kernel directly (a socket option, an `unshare`, a link creation in a
//! scratch namespace) instead of reading a config file, so it answers for the kernel that is
//! actually running. A missing feature becomes ONE skip reason that the harness applies to
//! every test needing it, in the wording of the kernel's own selftest library.

use std::collections::BTreeMap;
use std::fmt;
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, unshare};

/// A kernel feature a test can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// TCP-AO socket options (`CONFIG_TCP_AO`).
    TcpAo,
    /// TCP-MD5 socket options (`CONFIG_TCP_MD5SIG`).
    TcpMd5,
    /// Network namespaces we may create (`CONFIG_NET_NS` and `CAP_SYS_ADMIN`).
    Netns,
    /// veth pairs (`CONFIG_VETH`).
    Veth,
    /// VRF devices (`CONFIG_NET_VRF`).
    Vrf,
    /// IPv6 (`CONFIG_IPV6`).
    Ipv6,
}

impl Feature {
    /// Every feature, in probe order.
    pub const ALL: [Feature; 6] =
        [Feature::Netns, Feature::Veth, Feature::Vrf, Feature::Ipv6, Feature::TcpMd5, Feature::TcpAo];

    /// The skip reason used when this feature is missing.
    pub fn requirement(self) -> &'static str {
        match self {
            Feature::TcpAo => "Tests require TCP-AO support (CONFIG_TCP_AO)",
            Feature::TcpMd5 => "Tests require TCP-MD5 support (CONFIG_TCP_MD5SIG)",
            Feature::Netns => "Tests require network namespaces (CONFIG_NET_NS, CAP_SYS_ADMIN)",
            Feature::Veth => "Tests require veth (CONFIG_VETH)",
            Feature::Vrf => "Tests require VRF support (CONFIG_NET_VRF)",
            Feature::Ipv6 => "Tests require IPv6 (CONFIG_IPV6)",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Feature::TcpAo => "tcp-ao",
            Feature::TcpMd5 => "tcp-md5",
            Feature::Netns => "netns",
            Feature::Veth => "veth",
            Feature::Vrf => "vrf",
            Feature::Ipv6 => "ipv6",
        })
    }
}

/// The state of one feature: `Ok(())` or the detail of why it is missing.
pub type Support = Result<(), String>;

/// Probe results for every [`Feature`].
#[derive(Debug, Clone, Default)]
pub struct Features {
    map: BTreeMap<Feature, Support>,
}

impl Features {
    /// Probes the running kernel.
    pub fn probe() -> Self {
        let mut map = BTreeMap::new();
        let netns = probe_netns();
        map.insert(Feature::Netns, netns.clone());
        let in_ns = |kind: &str| match &netns {
            Ok(()) => probe_link_kind(kind),
            Err(e) => Err(format!("no network namespace to probe in: {e}")),
        };
        map.insert(Feature::Veth, in_ns("veth"));
        map.insert(Feature::Vrf, in_ns("vrf"));
        map.insert(Feature::Ipv6, probe_ipv6());
        map.insert(Feature::TcpMd5, probe_tcp_md5());
        map.insert(Feature::TcpAo, probe_tcp_ao());
        Features { map }
    }

    /// A fixed set of answers (for tests of the harness itself).
    pub fn from_map(map: BTreeMap<Feature, Support>) -> Self {
        Features { map }
    }

    /// Whether the feature is available (unprobed counts as missing).
    pub fn has(&self, f: Feature) -> bool {
        matches!(self.map.get(&f), Some(Ok(())))
    }

    /// The probe's answer for a feature.
    pub fn get(&self, f: Feature) -> Support {
        self.map.get(&f).cloned().unwrap_or_else(|| Err("not probed".into()))
    }

    /// The first missing feature among `required`, if any.
    pub fn first_missing(&self, required: &[Feature]) -> Option<Feature> {
        required.iter().copied().find(|f| !self.has(*f))
    }

    /// `# ` diagnostic lines describing every probe.
    pub fn describe(&self) -> Vec<String> {
        self.map
            .iter()
            .map(|(f, s)| match s {
                Ok(()) => format!("feature {f}: yes"),
                Err(e) => format!("feature {f}: no ({e})"),
            })
            .chain(
                self.has(Feature::TcpAo)
                    .then(|| format!("tcp-ao algorithms: {}", sockopt::algorithms().join(", "))),
            )
            .collect()
    }
}

/// Runs `f` in a fresh thread that first moves into a new, empty network namespace; the
/// namespace disappears with the thread.
pub(crate) fn in_scratch_netns<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let h = std::thread::Builder::new()
        .name("probe-netns".into())
        .spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
            Ok(f())
        })
        .map_err(|e| format!("spawn: {e}"))?;
    h.join().map_err(|_| "probe thread panicked".to_string())?
}

fn probe_netns() -> Support {
    in_scratch_netns(|| ())
}

/// Creates a link of `kind` with `ip` inside a scratch namespace (the kernel autoloads the
/// module). The namespace is private to the probe thread, so nothing is left behind.
fn probe_link_kind(kind: &str) -> Support {
    let kind = kind.to_owned();
    in_scratch_netns(move || {
        let mut cmd = Command::new("ip");
        cmd.args(["link", "add", "probe0", "type", &kind]);
        match kind.as_str() {
            "veth" => cmd.args(["peer", "name", "probe1"]),
            "vrf" => cmd.args(["table", "10"]),
            _ => &mut cmd,
        };
        match cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "ip link add type {kind}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run ip (install iproute2): {e}")),
        }
    })?
}

fn probe_ipv6() -> Support {
    if std::path::Path::new("/proc/sys/net/ipv6").exists() {
        Ok(())
    } else {
        Err("/proc/sys/net/ipv6 missing".into())
    }
}

/// TCP-MD5: a `TCP_MD5SIG` setsockopt on a fresh TCP socket (`ENOPROTOOPT` = missing).
fn probe_tcp_md5() -> Support {
    sockopt::tcp_md5()
}

/// TCP-AO: a `TCP_AO_ADD_KEY` setsockopt on a fresh TCP socket (`ENOPROTOOPT` = missing).
fn probe_tcp_ao() -> Support {
    sockopt::tcp_ao()
}

/// The socket-option probes, through `tcpao_sys` (this crate may not call `setsockopt`).
mod sockopt {
    use super::Support;
    use std::sync::OnceLock;

    fn caps() -> &'static Result<tcpao_sys::Capabilities, String> {
        static CAPS: OnceLock<Result<tcpao_sys::Capabilities, String>> = OnceLock::new();
        CAPS.get_or_init(|| tcpao_sys::probe(&[]).map_err(|e| format!("probe failed: {e}")))
    }

    /// `TCP_AO_ADD_KEY` on a throwaway socket; `ENOPROTOOPT` means no `CONFIG_TCP_AO`.
    pub(super) fn tcp_ao() -> Support {
        match caps() {
            Ok(c) if c.tcp_ao => Ok(()),
            Ok(_) => Err("TCP_AO_ADD_KEY: ENOPROTOOPT".into()),
            Err(e) => Err(e.clone()),
        }
    }

    /// `TCP_MD5SIG_EXT` on a throwaway socket.
    pub(super) fn tcp_md5() -> Support {
        match caps() {
            Ok(c) if c.tcp_md5 => Ok(()),
            Ok(_) => Err("TCP_MD5SIG_EXT: ENOPROTOOPT".into()),
            Err(e) => Err(e.clone()),
        }
    }

    /// The algorithms the kernel accepted, for the run's diagnostics.
    pub(super) fn algorithms() -> Vec<String> {
        match caps() {
            Ok(c) => c.algorithms.iter().map(|a| format!("{a:?}")).collect(),
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_missing_and_unprobed() {
        let mut m = BTreeMap::new();
        m.insert(Feature::Netns, Ok(()));
        m.insert(Feature::TcpAo, Err("ENOPROTOOPT".into()));
        let f = Features::from_map(m);
        assert!(f.has(Feature::Netns));
        assert!(!f.has(Feature::TcpAo));
        assert!(!f.has(Feature::Vrf), "unprobed is missing");
        assert_eq!(f.first_missing(&[Feature::Netns, Feature::TcpAo]), Some(Feature::TcpAo));
        assert_eq!(f.first_missing(&[Feature::Netns]), None);
        assert_eq!(
            Feature::TcpAo.requirement(),
            "Tests require TCP-AO support (CONFIG_TCP_AO)"
        );
    }
}

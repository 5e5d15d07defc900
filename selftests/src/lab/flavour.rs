// SPDX-License-Identifier: MIT OR Apache-2.0
//! Lab flavours: what each kernel build is for, its config fragment
//! (`selftests/lab/config/<name>.config`, on top of `base.config`) and the make variables
//! that instrument only the TCP-AO code.

use std::fmt;

/// The files that hold TCP-AO code: the two `tcp_ao.c` and the TCP files with AO paths. The
/// `coverage` flavour profiles them with gcov, `kcov` instruments them for KCOV, and the
/// mutation operators mutate them.
pub const AO_FILES: [&str; 8] = [
    "net/ipv4/tcp_ao.c",
    "net/ipv6/tcp_ao.c",
    "net/ipv4/tcp.c",
    "net/ipv4/tcp_input.c",
    "net/ipv4/tcp_output.c",
    "net/ipv4/tcp_ipv4.c",
    "net/ipv6/tcp_ipv6.c",
    "net/ipv4/tcp_minisocks.c",
];

/// Options every flavour gets.
pub const BASE_FRAGMENT: &str = include_str!("../../lab/config/base.config");

/// What to instrument per object with make variables (Kbuild's `GCOV_PROFILE_<obj>.o` and
/// `KCOV_INSTRUMENT_<obj>.o`, given on the command line so the tree is not edited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    /// Nothing per object.
    None,
    /// gcov on [`AO_FILES`].
    Gcov,
    /// KCOV on [`AO_FILES`].
    Kcov,
}

/// A kind of lab kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavour {
    /// `plain`, `coverage`, `debug`, `kcov`.
    pub name: &'static str,
    /// One line: what it is for.
    pub about: &'static str,
    /// Its config fragment, merged after [`BASE_FRAGMENT`].
    pub fragment: &'static str,
    /// Per-object instrumentation.
    pub instrument: Instrument,
    /// Compile through ccache (off where the compiler writes side files ccache might not
    /// restore, i.e. gcov's `.gcno`).
    pub ccache: bool,
    /// How much slower the guest runs than `plain` (scales test and host timeouts).
    pub slowdown: u32,
}

/// Every flavour.
pub const FLAVOURS: [Flavour; 4] = [
    Flavour {
        name: "plain",
        about: "the suite's options only; fastest build and guest; mutation runs use it",
        fragment: include_str!("../../lab/config/plain.config"),
        instrument: Instrument::None,
        ccache: true,
        slowdown: 1,
    },
    Flavour {
        name: "coverage",
        about: "gcov on the TCP-AO code (tcp_ao.c and the AO paths of the TCP files)",
        fragment: include_str!("../../lab/config/coverage.config"),
        instrument: Instrument::Gcov,
        ccache: false,
        slowdown: 1,
    },
    Flavour {
        name: "debug",
        about: "KASAN, lockdep/PROVE_RCU_LIST, kmemleak, DEBUG_NET, UBSAN, hung-task detection",
        fragment: include_str!("../../lab/config/debug.config"),
        instrument: Instrument::None,
        ccache: true,
        slowdown: 4,
    },
    Flavour {
        name: "kcov",
        about: "KCOV (edges and comparisons) on the TCP-AO code, KASAN, TUN; for the fuzzer",
        fragment: include_str!("../../lab/config/kcov.config"),
        instrument: Instrument::Kcov,
        ccache: true,
        slowdown: 3,
    },
];

impl Flavour {
    /// The flavour called `name`.
    pub fn named(name: &str) -> Option<Flavour> {
        FLAVOURS.iter().copied().find(|f| f.name == name)
    }

    /// The make variables for this flavour (`GCOV_PROFILE_tcp_ao.o=y`, …), sorted and
    /// deduplicated: both `tcp_ao.c` share the object name `tcp_ao.o`. A command-line
    /// variable applies in every directory, so a `tcp.o` elsewhere in the tree (net/rds) would
    /// be instrumented too when it is built; the lab's config does not build it.
    pub fn make_vars(&self) -> Vec<String> {
        let prefix = match self.instrument {
            Instrument::None => return Vec::new(),
            Instrument::Gcov => "GCOV_PROFILE_",
            Instrument::Kcov => "KCOV_INSTRUMENT_",
        };
        let mut v: Vec<String> = AO_FILES
            .iter()
            .filter_map(|f| f.rsplit('/').next()?.strip_suffix(".c"))
            .map(|stem| format!("{prefix}{stem}.o=y"))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The lab's own options for this flavour: base, then the flavour's fragment.
    pub fn lab_fragment(&self) -> String {
        format!("{BASE_FRAGMENT}\n{}", self.fragment)
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The names, for messages.
pub fn names() -> String {
    FLAVOURS.map(|f| f.name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::kconfig::Config;

    #[test]
    fn instrumentation_vars() {
        let cov = Flavour::named("coverage").unwrap();
        assert_eq!(
            cov.make_vars(),
            [
                "GCOV_PROFILE_tcp.o=y",
                "GCOV_PROFILE_tcp_ao.o=y",
                "GCOV_PROFILE_tcp_input.o=y",
                "GCOV_PROFILE_tcp_ipv4.o=y",
                "GCOV_PROFILE_tcp_ipv6.o=y",
                "GCOV_PROFILE_tcp_minisocks.o=y",
                "GCOV_PROFILE_tcp_output.o=y",
            ]
        );
        let kcov = Flavour::named("kcov").unwrap();
        assert!(
            kcov.make_vars()
                .iter()
                .all(|v| v.starts_with("KCOV_INSTRUMENT_"))
        );
        assert_eq!(kcov.make_vars().len(), 7);
        assert!(Flavour::named("plain").unwrap().make_vars().is_empty());
        assert!(Flavour::named("nope").is_none());
    }

    #[test]
    fn fragments_say_what_each_flavour_is() {
        let get = |n: &str| Config::parse(&Flavour::named(n).unwrap().lab_fragment());
        for f in FLAVOURS {
            let c = get(f.name);
            // Every flavour: built-in drivers, TCP-AO's test needs, no debug info, and
            // its own release suffix so `uname -r` tells the flavour.
            assert_eq!(c.get("CONFIG_MODULES"), "n", "{f}");
            assert_eq!(c.get("CONFIG_VETH"), "y", "{f}");
            assert_eq!(c.get("CONFIG_DEBUG_INFO_NONE"), "y", "{f}");
            assert_eq!(c.get("CONFIG_LOCALVERSION"), format!("\"-tcpao-{f}\""));
        }
        assert_eq!(get("coverage").get("CONFIG_GCOV_KERNEL"), "y");
        assert_eq!(get("coverage").get("CONFIG_GCOV_PROFILE_ALL"), "n");
        let dbg = get("debug");
        for sym in [
            "CONFIG_KASAN",
            "CONFIG_PROVE_LOCKING",
            "CONFIG_PROVE_RCU_LIST",
            "CONFIG_DEBUG_KMEMLEAK",
            "CONFIG_DEBUG_NET",
        ] {
            assert_eq!(dbg.get(sym), "y", "{sym}");
        }
        assert_eq!(
            dbg.get("CONFIG_PANIC_ON_OOPS"),
            "n",
            "the runner reports, no panic"
        );
        let kcov = get("kcov");
        assert_eq!(kcov.get("CONFIG_KCOV"), "y");
        assert_eq!(kcov.get("CONFIG_KCOV_INSTRUMENT_ALL"), "n");
        assert_eq!(get("plain").get("CONFIG_KASAN"), "n");
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! Kernel `.config` text: fragments merged in order (the last assignment of a symbol wins,
//! as `scripts/kconfig/merge_config.sh` does), and the check that a resolved `.config` holds
//! what the fragments asked for. Kconfig silently drops an option whose dependencies are not
//! met; the lab refuses to build such a config rather than test a kernel that lacks, say,
//! `CONFIG_KASAN`.

use std::collections::BTreeMap;

/// A symbol's value: `y`, `m`, `n` (also "is not set"), a number or a quoted string.
pub type Value = String;

/// Symbol → value, in `CONFIG_` form (`CONFIG_TCP_AO`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config(pub BTreeMap<String, Value>);

/// One line of `.config` syntax: `CONFIG_X=v` or `# CONFIG_X is not set`.
pub fn parse_line(line: &str) -> Option<(String, Value)> {
    let l = line.trim();
    if let Some(rest) = l.strip_prefix("# ") {
        let sym = rest.strip_suffix(" is not set")?;
        return sym
            .starts_with("CONFIG_")
            .then(|| (sym.to_owned(), "n".to_owned()));
    }
    let (sym, val) = l.split_once('=')?;
    (sym.starts_with("CONFIG_") && !sym.contains(char::is_whitespace))
        .then(|| (sym.to_owned(), val.to_owned()))
}

impl Config {
    /// Parses `.config` (or fragment) text; comments and blank lines are ignored.
    pub fn parse(text: &str) -> Self {
        let mut c = Config::default();
        c.merge(text);
        c
    }

    /// Merges a fragment on top: its assignments win.
    pub fn merge(&mut self, text: &str) {
        for (k, v) in text.lines().filter_map(parse_line) {
            self.0.insert(k, v);
        }
    }

    /// A symbol's value; a symbol absent from a resolved `.config` is off (`n`).
    pub fn get(&self, sym: &str) -> &str {
        self.0.get(sym).map_or("n", String::as_str)
    }

    /// What `self` (the requested options) asks for that `resolved` does not have:
    /// `(symbol, requested, resolved)`. With `CONFIG_MODULES` off, a request for `m` is met by
    /// `y`.
    pub fn unmet_in(&self, resolved: &Config) -> Vec<(String, Value, Value)> {
        let modules = resolved.get("CONFIG_MODULES") != "n";
        self.0
            .iter()
            .filter_map(|(k, want)| {
                let got = resolved.get(k);
                let ok = got == want || (want == "m" && !modules && got == "y");
                (!ok).then(|| (k.clone(), want.clone(), got.to_owned()))
            })
            .collect()
    }

    /// `.config`-syntax text (sorted), for appending to a config.
    pub fn to_fragment(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| {
                if v == "n" {
                    format!("# {k} is not set\n")
                } else {
                    format!("{k}={v}\n")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            parse_line("CONFIG_TCP_AO=y"),
            Some(("CONFIG_TCP_AO".into(), "y".into()))
        );
        assert_eq!(
            parse_line("# CONFIG_MODULES is not set"),
            Some(("CONFIG_MODULES".into(), "n".into()))
        );
        assert_eq!(
            parse_line("CONFIG_LOCALVERSION=\"-tcpao-plain\""),
            Some(("CONFIG_LOCALVERSION".into(), "\"-tcpao-plain\"".into()))
        );
        assert_eq!(parse_line("# a comment"), None);
        assert_eq!(parse_line("# CONFIG_X is set"), None);
        assert_eq!(parse_line("FOO=1"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn later_fragments_win() {
        let mut c = Config::parse("CONFIG_VETH=m\nCONFIG_TCP_AO=y\n");
        c.merge("# tcpao base\nCONFIG_VETH=y\n# CONFIG_DRM is not set\n");
        assert_eq!(c.get("CONFIG_VETH"), "y");
        assert_eq!(c.get("CONFIG_DRM"), "n");
        assert_eq!(c.get("CONFIG_ABSENT"), "n");
        assert_eq!(Config::parse(&c.to_fragment()), c);
    }

    #[test]
    fn unmet_options_are_named() {
        let want = Config::parse(
            "CONFIG_KASAN=y\nCONFIG_VETH=m\n# CONFIG_DRM is not set\nCONFIG_PANIC_TIMEOUT=0\n",
        );
        let got =
            Config::parse("# CONFIG_MODULES is not set\nCONFIG_VETH=y\nCONFIG_PANIC_TIMEOUT=0\n");
        assert_eq!(
            want.unmet_in(&got),
            [("CONFIG_KASAN".into(), "y".into(), "n".into())]
        );
        let with_modules = Config::parse("CONFIG_MODULES=y\nCONFIG_VETH=y\nCONFIG_KASAN=y\n");
        assert_eq!(
            want.unmet_in(&with_modules),
            [
                ("CONFIG_PANIC_TIMEOUT".into(), "0".into(), "n".into()),
                ("CONFIG_VETH".into(), "m".into(), "y".into())
            ]
        );
    }
}

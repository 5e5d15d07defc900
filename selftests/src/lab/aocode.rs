// SPDX-License-Identifier: MIT OR Apache-2.0
//! Which lines of a kernel C file are TCP-AO code, and which function each line is in.
//!
//! `net/ipv{4,6}/tcp_ao.c` are TCP-AO code throughout. In the other TCP files (`tcp.c`,
//! `tcp_input.c`, …) a line is TCP-AO code when it is inside an `#ifdef CONFIG_TCP_AO` (or
//! `#if IS_ENABLED(CONFIG_TCP_AO)`) block, inside a function whose name says AO (`tcp_ao_*`,
//! `*_ao_*`, `*_ao`), or names an AO identifier itself (`tcp_ao_*`, `TCP_AO*`, `ao_info`,
//! `aoh`, `->ao_*`). The coverage report and the mutation operators use the same definition.
//!
//! Functions are found the kernel-style way: a body opens with `{` in column 0 after a
//! signature, and closes with `}` in column 0; the name is the identifier before the first
//! `(` of the signature.

use std::collections::BTreeSet;

/// A function's name and its line span (1-based, inclusive: signature to closing brace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The function's name.
    pub name: String,
    /// First line of the signature.
    pub start: usize,
    /// The line of the closing `}`.
    pub end: usize,
}

/// Whether `file` (a tree path) is TCP-AO code throughout.
pub fn whole_file(file: &str) -> bool {
    file.ends_with("/tcp_ao.c") || file.ends_with("/tcp_ao.h")
}

/// Whether an identifier names TCP-AO state.
pub fn ao_ident(id: &str) -> bool {
    let l = id.to_ascii_lowercase();
    l == "ao"
        || l == "aoh"
        || l.starts_with("tcp_ao")
        || l.starts_with("ao_")
        || l.ends_with("_ao")
        || l.contains("_ao_")
}

/// The identifiers of a line of C.
pub fn idents(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| {
            w.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        })
}

/// The functions of a C file (kernel style).
pub fn functions(text: &str) -> Vec<Function> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i] == "{" {
            // The signature: back to the first line after a blank line, a `;`, a `}` or a
            // preprocessor line.
            let mut s = i;
            while s > 0 {
                let p = lines[s - 1].trim_end();
                if p.is_empty()
                    || p.ends_with(';')
                    || p.starts_with('}')
                    || p.starts_with('#')
                    || p.ends_with("*/")
                {
                    break;
                }
                s -= 1;
            }
            let sig: String = lines[s..i].join(" ");
            let name = sig
                .split('(')
                .next()
                .and_then(|h| idents(h).last())
                .unwrap_or_default()
                .to_owned();
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].starts_with('}'))
                .unwrap_or(lines.len() - 1);
            if !name.is_empty() {
                out.push(Function {
                    name,
                    start: s + 1,
                    end: end + 1,
                });
            }
            i = end + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The function a line is in.
pub fn function_at(functions: &[Function], line: usize) -> Option<&Function> {
    functions.iter().find(|f| f.start <= line && line <= f.end)
}

/// The TCP-AO lines (1-based) of `file` with contents `text`.
pub fn ao_lines(file: &str, text: &str) -> BTreeSet<usize> {
    let lines: Vec<&str> = text.lines().collect();
    if whole_file(file) {
        return (1..=lines.len()).collect();
    }
    let funcs = functions(text);
    let mut out = BTreeSet::new();
    // #if nesting: for each level, whether it is a CONFIG_TCP_AO block in its AO branch.
    let mut stack: Vec<(bool, bool)> = Vec::new(); // (is_ao_cond, in_ao_branch)
    for (i, l) in lines.iter().enumerate() {
        let n = i + 1;
        let t = l.trim_start();
        if let Some(d) = t.strip_prefix('#') {
            let d = d.trim_start();
            if d.starts_with("if") {
                let ao = d.contains("CONFIG_TCP_AO")
                    && !d.starts_with("ifndef")
                    && !d.contains("!IS_ENABLED(CONFIG_TCP_AO")
                    && !d.contains("!defined(CONFIG_TCP_AO");
                stack.push((ao, ao));
            } else if d.starts_with("else") || d.starts_with("elif") {
                if let Some(top) = stack.last_mut() {
                    if top.0 {
                        top.1 = false;
                    }
                }
            } else if d.starts_with("endif") {
                stack.pop();
            }
            continue;
        }
        let in_block = stack.iter().any(|&(ao, branch)| ao && branch);
        let in_func = function_at(&funcs, n).is_some_and(|f| ao_ident(&f.name));
        if in_block || in_func || idents(l).any(ao_ident) {
            out.insert(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
static int tcp_v4_parse(struct sock *sk,
\t\t\tint x)
{
\tint y = 1;
#ifdef CONFIG_TCP_AO
\tif (tp->ao_info)
\t\ty = 2;
\ty++;
#else
\ty--;
#endif
\treturn y;
}

int tcp_ao_thing(void)
{
\treturn 0;
}
";

    #[test]
    fn functions_are_found_kernel_style() {
        let f = functions(SRC);
        assert_eq!(
            f,
            [
                Function {
                    name: "tcp_v4_parse".into(),
                    start: 1,
                    end: 13
                },
                Function {
                    name: "tcp_ao_thing".into(),
                    start: 15,
                    end: 18
                },
            ]
        );
        assert_eq!(function_at(&f, 8).unwrap().name, "tcp_v4_parse");
        assert!(function_at(&f, 14).is_none());
    }

    #[test]
    fn ao_lines_in_a_shared_file() {
        let l = ao_lines("net/ipv4/tcp_input.c", SRC);
        // The CONFIG_TCP_AO branch (6-8), not its #else (10); the whole AO function (15-18).
        assert_eq!(
            l.iter().copied().collect::<Vec<_>>(),
            [6, 7, 8, 15, 16, 17, 18]
        );
        let all = ao_lines("net/ipv4/tcp_ao.c", SRC);
        assert_eq!(all.len(), SRC.lines().count());
    }

    #[test]
    fn ao_identifiers() {
        for id in [
            "ao",
            "aoh",
            "tcp_ao_hash",
            "TCP_AO_KEYF_IFINDEX",
            "ao_info",
            "tcp_v4_ao_lookup",
            "has_ao",
        ] {
            assert!(ao_ident(id), "{id}");
        }
        for id in ["chaos", "tcp_md5", "aobj", "kaoru"] {
            assert!(!ao_ident(id), "{id}");
        }
        assert_eq!(
            idents("if (tp->ao_info && x2)").collect::<Vec<_>>(),
            ["if", "tp", "ao_info", "x2"]
        );
    }
}

// SPDX-License-Identifier: MIT OR Apache-2.0
//! What runs inside the guest: [`Step`]s staged into the shared results directory and a short
//! script (vng carries only its path on the kernel command line) that runs them one after the
//! other and records, per step, its output (`<id>.out`), its exit code (`<id>.rc`) and, for
//! coverage runs, the kernel's gcov counters (`gcov/<id>/…`, reset before the step).

use std::fs;
use std::path::{Path, PathBuf};

use super::{VmError, io_err};

/// One thing to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A libtest binary, run with `TCPAO_REQUIRE_TCP_AO=1` (a missing TCP-AO fails there).
    Cargo(PathBuf),
    /// A shell script instead of the suite; its output is parsed as KTAP when it is KTAP.
    Script(PathBuf),
    /// This binary's suite, `tcpao-selftests run ARGS`.
    Suite {
        /// Step id (names its files in the results directory).
        id: String,
        /// Arguments after `run` (filters, `--jobs`, …).
        args: Vec<String>,
        /// Reset the gcov counters before and save them after.
        gcov: bool,
    },
    /// This binary's fuzzer, `tcpao-selftests fuzz ARGS` (its exit code decides).
    Fuzz {
        /// Step id.
        id: String,
        /// Arguments after `fuzz`.
        args: Vec<String>,
    },
    /// The kernel's own tcp_ao programs from `dir`, run and folded into one KTAP document by
    /// `tcpao-selftests upstream` (see [`crate::lab::upstream`]).
    Upstream {
        /// Step id.
        id: String,
        /// The directory holding the built programs.
        dir: PathBuf,
        /// Only these programs (file names); all when empty.
        programs: Vec<String>,
        /// Reset the gcov counters before and save them after.
        gcov: bool,
        /// `upstream --max-failures N`.
        max_failures: Option<usize>,
    },
}

impl Step {
    /// Our suite with `args`, no coverage.
    pub fn suite(id: impl Into<String>, args: Vec<String>) -> Self {
        Step::Suite {
            id: id.into(),
            args,
            gcov: false,
        }
    }

    /// The kernel's programs from `dir`, no coverage.
    pub fn upstream(id: impl Into<String>, dir: PathBuf, programs: Vec<String>) -> Self {
        Step::Upstream {
            id: id.into(),
            dir,
            programs,
            gcov: false,
            max_failures: None,
        }
    }

    /// The same step, stopping after `n` failures (`--max-failures`): our suite counts
    /// failed tests, the kernel's programs count failing programs.
    #[must_use]
    pub fn with_max_failures(mut self, n: usize) -> Self {
        match &mut self {
            Step::Upstream { max_failures, .. } => *max_failures = Some(n),
            Step::Suite { args, .. } => {
                args.extend(["--max-failures".to_owned(), n.to_string()]);
            }
            Step::Cargo(_) | Step::Script(_) | Step::Fuzz { .. } => {}
        }
        self
    }

    /// The same step with gcov counters reset before it and saved after it.
    #[must_use]
    pub fn with_gcov(mut self) -> Self {
        match &mut self {
            Step::Suite { gcov, .. } | Step::Upstream { gcov, .. } => *gcov = true,
            Step::Cargo(_) | Step::Script(_) | Step::Fuzz { .. } => {}
        }
        self
    }
}

/// How a step's output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// libtest (`test x ... ok`).
    Libtest,
    /// KTAP (or, for a script, anything, with its exit code deciding).
    Ktap,
}

/// A step ready to run: its command with every path inside the shared directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Names `<id>.out`, `<id>.rc` and `gcov/<id>/`.
    pub id: String,
    /// For reports (a binary's file name, `suite`, `upstream`).
    pub label: String,
    /// How its output is read.
    pub output: Output,
    /// Whether it came from [`Step::Script`].
    pub script: bool,
    /// argv, the first element a staged file.
    pub argv: Vec<String>,
    /// Reset and save gcov counters around it.
    pub gcov: bool,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or_else(|| "x".into(), |n| n.to_string_lossy().into_owned())
}

/// Copies what the steps execute into `results/bin/` (the guest cannot see the host's /tmp
/// or /var/tmp, where binaries and kernel trees often live) and returns the staged steps.
///
/// # Errors
/// [`VmError::Io`] when a file cannot be copied.
pub fn stage(results: &Path, steps: &[Step]) -> Result<Vec<Staged>, VmError> {
    let bin_dir = results.join("bin");
    fs::create_dir_all(&bin_dir).map_err(io_err("results bin dir"))?;
    let copy = |src: &Path, name: &str| -> Result<String, VmError> {
        let dst = bin_dir.join(name);
        if src.is_dir() {
            copy_dir(src, &dst)?;
        } else {
            fs::copy(src, &dst).map_err(io_err(format!(
                "copying {} into the guest's share",
                src.display()
            )))?;
        }
        Ok(dst.display().to_string())
    };
    let mut selftests: Option<String> = None;
    let mut this_binary = || -> Result<String, VmError> {
        if let Some(s) = &selftests {
            return Ok(s.clone());
        }
        let exe = std::env::current_exe().map_err(io_err("current_exe"))?;
        let s = copy(&exe, "tcpao-selftests")?;
        selftests = Some(s.clone());
        Ok(s)
    };
    let mut out = Vec::with_capacity(steps.len());
    let mut ncargo = 0;
    for step in steps {
        out.push(match step {
            Step::Cargo(p) => {
                let p = fs::canonicalize(p).map_err(io_err(p.display()))?;
                let id = format!("cargo-{ncargo}");
                ncargo += 1;
                let label = file_name(&p);
                Staged {
                    argv: vec![copy(&p, &format!("{id}-{label}"))?],
                    id,
                    label,
                    output: Output::Libtest,
                    script: false,
                    gcov: false,
                }
            }
            Step::Script(p) => Staged {
                id: "script".into(),
                label: file_name(p),
                output: Output::Ktap,
                script: true,
                argv: vec!["sh".into(), copy(p, "script.sh")?],
                gcov: false,
            },
            Step::Suite { id, args, gcov } => {
                let mut argv = vec![this_binary()?, "run".into()];
                argv.extend(args.iter().cloned());
                Staged {
                    id: id.clone(),
                    label: id.clone(),
                    output: Output::Ktap,
                    script: false,
                    argv,
                    gcov: *gcov,
                }
            }
            Step::Fuzz { id, args } => {
                let mut argv = vec![this_binary()?, "fuzz".into()];
                argv.extend(args.iter().cloned());
                Staged {
                    id: id.clone(),
                    label: id.clone(),
                    output: Output::Ktap,
                    script: true,
                    argv,
                    gcov: false,
                }
            }
            Step::Upstream {
                id,
                dir,
                programs,
                gcov,
                max_failures,
            } => {
                let staged_dir = bin_dir.join("upstream");
                if !staged_dir.is_dir() {
                    copy(dir, "upstream")?;
                }
                let mut argv = vec![
                    this_binary()?,
                    "upstream".into(),
                    staged_dir.display().to_string(),
                ];
                if let Some(n) = max_failures {
                    argv.extend(["--max-failures".to_owned(), n.to_string()]);
                }
                argv.extend(programs.iter().cloned());
                Staged {
                    id: id.clone(),
                    label: id.clone(),
                    output: Output::Ktap,
                    script: false,
                    argv,
                    gcov: *gcov,
                }
            }
        });
    }
    Ok(out)
}

fn copy_dir(src: &Path, dst: &Path) -> Result<(), VmError> {
    fs::create_dir_all(dst).map_err(io_err(dst.display()))?;
    for e in fs::read_dir(src).map_err(io_err(src.display()))? {
        let e = e.map_err(io_err(src.display()))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        if from.is_dir() {
            copy_dir(&from, &to)?;
        } else {
            fs::copy(&from, &to).map_err(io_err(format!("staging {}", from.display())))?;
        }
    }
    Ok(())
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Host environment variables the guest's suite reads too (the race bounds, fzsync.rs).
pub const PASSED_ENV: &[&str] = &["TCPAO_RACE_ITERATIONS", "TCPAO_RACE_SECS"];

/// The [`PASSED_ENV`] variables that `lookup` (the host's environment) sets to a number;
/// anything else is left out, with a warning.
pub fn passed_env(lookup: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    PASSED_ENV
        .iter()
        .filter_map(|k| lookup(k).map(|v| (*k, v)))
        .filter(|(k, v)| {
            let ok = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
            if !ok {
                eprintln!("# vm: {k}={v:?} is not a number: not passed to the guest");
            }
            ok
        })
        .collect()
}

/// The script the guest runs (`slow`: the timeout factor, 1 on a fast machine; above 1 it
/// exports `KSFT_MACHINE_SLOW=yes` for the kernel's programs and the factor itself as
/// [`crate::harness::SLOW_FACTOR_VAR`] for ours). Every step records `<id>.out` and `<id>.rc`; gcov steps reset
/// the counters first and copy every `.gcda` file to `gcov/<id>/` after (debugfs files must be
/// read with `cat`, their size reads as 0). kmemleak, when the kernel has it, is cleared at
/// the start and scanned at the end into `kmemleak.txt`; `dmesg.txt` is saved last.
pub fn guest_script(results: &Path, steps: &[Staged], slow: u32, env: &[(&str, String)]) -> String {
    let r = sh_quote(&results.display().to_string());
    let mut s = String::new();
    s.push_str("#!/bin/sh\n# Generated by tcpao-selftests vm.\n");
    s.push_str(&format!("R={r}\n"));
    s.push_str("echo '# vm: guest up' \"$(uname -r)\"\n");
    s.push_str("export TCPAO_IN_VM=1\n");
    for (k, v) in env {
        s.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    if slow > 1 {
        s.push_str("export KSFT_MACHINE_SLOW=yes\n");
        s.push_str(&format!(
            "export {}={slow}\n",
            crate::harness::SLOW_FACTOR_VAR
        ));
    }
    // Show warnings and worse on the console (oops, BUG, call traces), not every info line.
    s.push_str("echo 5 > /proc/sys/kernel/printk 2>/dev/null\n");
    s.push_str("[ \"$(id -u)\" = 0 ] || { echo '# vm: guest is not root'; exit 1; }\n");
    s.push_str("ip link set lo up 2>/dev/null || echo '# vm: cannot bring lo up'\n");
    s.push_str("D=/sys/kernel/debug; [ -d $D/gcov ] || [ -e $D/kmemleak ] || mount -t debugfs none $D 2>/dev/null\n");
    s.push_str("K=$D/kmemleak; [ -w $K ] && echo clear > $K\n");
    if steps.iter().any(|st| st.gcov) {
        s.push_str(
            "G=$D/gcov; [ -e $G/reset ] || echo '# vm: no gcov in this kernel (CONFIG_GCOV_KERNEL)'\n\
             gcov_dump() { mkdir -p \"$R/gcov/$1\"; (cd $G 2>/dev/null && find . -name '*.gcda') | \
             while read -r f; do mkdir -p \"$R/gcov/$1/${f%/*}\"; cat \"$G/$f\" > \"$R/gcov/$1/$f\"; done; }\n",
        );
    }
    for st in steps {
        let id = &st.id;
        let argv: Vec<String> = st.argv.iter().map(|a| sh_quote(a)).collect();
        s.push_str(&format!(
            "echo '# vm: step {id}: {}'\n",
            st.label.replace('\'', "")
        ));
        if st.gcov {
            s.push_str("echo 1 > $G/reset 2>/dev/null\n");
        }
        let env = if st.script {
            ""
        } else {
            "TCPAO_REQUIRE_TCP_AO=1 "
        };
        s.push_str(&format!(
            "{{ {env}{} 2>&1; echo $? > \"$R/{id}.rc\"; }} | tee \"$R/{id}.out\"\n",
            argv.join(" ")
        ));
        if st.gcov {
            s.push_str(&format!("gcov_dump {id}\n"));
        }
    }
    s.push_str("[ -w $K ] && { echo scan > $K; echo scan > $K; cat $K > \"$R/kmemleak.txt\"; }\n");
    s.push_str("dmesg > \"$R/dmesg.txt\" 2>&1\necho done > \"$R/finished\"\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(id: &str, argv: &[&str], gcov: bool) -> Staged {
        Staged {
            id: id.into(),
            label: id.into(),
            output: Output::Ktap,
            script: false,
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            gcov,
        }
    }

    #[test]
    fn guest_script_quotes_and_records() {
        let cargo = Staged {
            output: Output::Libtest,
            ..staged("cargo-0", &["/c/run/1/bin/cargo-0-sockopt"], false)
        };
        let suite = staged(
            "suite",
            &["/c/run/1/bin/tcpao-selftests", "run", "it's", "-j", "2"],
            false,
        );
        let env = passed_env(|k| match k {
            "TCPAO_RACE_SECS" => Some("180".into()),
            "TCPAO_RACE_ITERATIONS" => Some("lots; rm -rf /".into()),
            _ => None,
        });
        assert_eq!(env, [("TCPAO_RACE_SECS", "180".to_owned())]);
        let s = guest_script(Path::new("/c/run/1"), &[cargo, suite], 12, &env);
        assert!(s.contains("export TCPAO_RACE_SECS='180'\n"), "{s}");
        assert!(!s.contains("TCPAO_RACE_ITERATIONS"), "{s}");
        assert!(s.contains("R='/c/run/1'"));
        assert!(
            s.contains("'/c/run/1/bin/tcpao-selftests' 'run' 'it'\\''s' '-j' '2'"),
            "{s}"
        );
        assert!(s.contains("export KSFT_MACHINE_SLOW=yes\n"), "{s}");
        assert!(s.contains("export TCPAO_SLOW_FACTOR=12\n"), "{s}");
        assert!(s.contains("\"$R/cargo-0.rc\""));
        assert!(s.contains("\"$R/suite.out\""));
        assert!(s.contains("ip link set lo up"));
        assert!(!s.contains("gcov_dump"), "no gcov asked for");
        assert!(s.contains("kmemleak.txt"));
    }

    #[test]
    fn gcov_steps_reset_before_and_dump_after() {
        let s = guest_script(
            Path::new("/r"),
            &[
                staged("ours-connect", &["/r/bin/t", "run", "connect/*"], true),
                staged("plain", &["/r/bin/t", "run"], false),
            ],
            1,
            &[],
        );
        let reset = s.find("echo 1 > $G/reset").unwrap();
        let run = s.find("'connect/*'").unwrap();
        let dump = s.find("gcov_dump ours-connect").unwrap();
        assert!(reset < run && run < dump, "{s}");
        assert_eq!(s.matches("echo 1 > $G/reset").count(), 1);
        assert!(!s.contains("KSFT_MACHINE_SLOW"));
        assert!(!s.contains("TCPAO_SLOW_FACTOR"));
    }

    #[test]
    fn stage_copies_scripts_and_dirs_into_the_share() {
        let tmp = std::env::temp_dir().join(format!("tcpao-stage-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let res = tmp.join("res");
        let up = tmp.join("up");
        fs::create_dir_all(&up).unwrap();
        fs::create_dir_all(&res).unwrap();
        fs::write(up.join("connect_ipv4"), b"x").unwrap();
        fs::write(tmp.join("s.sh"), b"echo hi").unwrap();
        let st = stage(
            &res,
            &[
                Step::Script(tmp.join("s.sh")),
                Step::upstream("upstream", up.clone(), vec!["connect_ipv4".into()]).with_gcov(),
            ],
        )
        .unwrap();
        assert_eq!(
            st[0].argv,
            [
                "sh".to_owned(),
                res.join("bin/script.sh").display().to_string()
            ]
        );
        assert!(st[0].script);
        assert!(res.join("bin/upstream/connect_ipv4").is_file());
        assert_eq!(st[1].argv[1], "upstream");
        assert_eq!(st[1].argv[3], "connect_ipv4");
        assert!(st[1].gcov);
        // A bounded step passes the bound before the programs, and the guest side parses it.
        let st = stage(
            &res,
            &[
                Step::upstream("upstream", up.clone(), vec!["connect_ipv4".into()])
                    .with_max_failures(1),
            ],
        )
        .unwrap();
        assert_eq!(st[0].argv[3..], ["--max-failures", "1", "connect_ipv4"]);
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(&st[0].argv).unwrap();
        match cli.command {
            Some(crate::cli::Command::Upstream(a)) => {
                assert_eq!(a.max_failures, Some(1));
                assert_eq!(a.programs, ["connect_ipv4"]);
            }
            other => panic!("not an upstream command: {other:?}"),
        }
        let _ = fs::remove_dir_all(&tmp);
    }
}

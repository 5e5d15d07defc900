// SPDX-License-Identifier: MIT OR Apache-2.0
//! Command line: `tcpao-selftests [run] [--list] [FILTER…] …` and `tcpao-selftests vm …`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Network-namespace selftests for Linux TCP-AO and TCP-MD5, with KTAP output.
#[derive(Debug, Parser)]
#[command(
    name = "tcpao-selftests",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// `run` (the default) or `vm`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the default `run` command.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the tests on the running kernel (the default).
    Run(RunArgs),
    /// Boot a TCP-AO kernel under virtme-ng and run the suite (or a script) inside it.
    Vm(VmArgs),
    /// Build lab kernels (see docs/lab.md).
    Kernel(KernelArgs),
    /// Coverage of the TCP-AO kernel code by the suite (or the kernel's own), from the
    /// `coverage` flavour's gcov counters.
    Coverage(CoverageArgs),
    /// Mutation testing: how many broken kernels the suite (or the kernel's own) rejects.
    Mutate(MutateArgs),
    /// Fuzz the TCP-AO uAPI on the running kernel: stateful programs, KCOV feedback when the
    /// kernel has it, a model oracle (see docs/fuzz.md).
    Fuzz(FuzzArgs),
    /// Run the kernel's own tcp_ao programs from DIR and fold their KTAP into one document
    /// (used inside the guest by `vm --upstream`).
    #[command(hide = true)]
    Upstream(UpstreamArgs),
}

/// `kernel` subcommands.
#[derive(Debug, Clone, Args)]
pub struct KernelArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: KernelAction,
}

/// `kernel build` / `kernel list`.
#[derive(Debug, Clone, Subcommand)]
pub enum KernelAction {
    /// Build (incrementally) a lab kernel: Debian's source matching the default VM kernel, or
    /// `--source DIR`.
    Build {
        /// A kernel tree instead of Debian's `linux-source` package.
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
        /// Flavours to build (plain, coverage, debug, kcov); repeat for several.
        #[arg(long = "flavour", value_name = "NAME", default_value = "plain")]
        flavours: Vec<String>,
        /// Build even when a cached image exists.
        #[arg(long)]
        force: bool,
        /// Patches applied to the tree for this build only (see `vm --patch`).
        #[arg(long = "patch", value_name = "FILE")]
        patches: Vec<PathBuf>,
    },
    /// List the flavours and the cached images.
    List {
        /// A kernel tree instead of Debian's.
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
    },
}

/// Options of `coverage`.
#[derive(Debug, Clone, Args)]
pub struct CoverageArgs {
    /// Only tests whose names match (as for `run`); the whole suite when empty.
    pub filters: Vec<String>,
    /// Measure the kernel's own tcp_ao programs instead of ours.
    #[arg(long)]
    pub upstream: bool,
    /// Measure both suites, each on its own, and compare them.
    #[arg(long, conflicts_with = "upstream")]
    pub both: bool,
    /// A kernel tree instead of Debian's.
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Where the report (text, JSON, HTML) goes; default `~/.cache/tcpao/lab/reports/coverage-<suite>/`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Tests in flight at once in the guest.
    #[arg(long, short = 'j', default_value_t = 2)]
    pub jobs: usize,
}

/// Options of `mutate`.
#[derive(Debug, Clone, Args)]
pub struct MutateArgs {
    /// Run the kernel's own tcp_ao programs against each mutant (instead of ours).
    #[arg(long)]
    pub upstream: bool,
    /// Run both suites against each mutant (one build and one boot per mutant).
    #[arg(long, conflicts_with = "upstream")]
    pub both: bool,
    /// Only these mutant ids.
    #[arg(long, value_name = "ID", num_args = 1..)]
    pub only: Vec<String>,
    /// List the mutants (id, operator, line, diff) and exit.
    #[arg(long)]
    pub list: bool,
    /// Mutate only these files (paths in the tree); default: every file of the TCP-AO code.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<String>,
    /// Pick this many mutants (stratified by operator and function, reproducible from
    /// `--seed`); all when absent.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed for `--sample`.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run every test, not only those that cover the mutated line (coverage data from
    /// `tcpao-selftests coverage` selects the tests when present).
    #[arg(long)]
    pub all_tests: bool,
    /// A kernel tree instead of Debian's.
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Where the report (KTAP, JSON, survivors' diffs) goes; default
    /// `~/.cache/tcpao/lab/reports/mutate-<suite>/`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Tests in flight at once in the guest.
    #[arg(long, short = 'j', default_value_t = 2)]
    pub jobs: usize,
}

/// Options of `fuzz`.
#[derive(Debug, Clone, Args)]
pub struct FuzzArgs {
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub time: Option<u64>,
    /// Stop after this many programs (default 1000 when neither this nor --time is given).
    #[arg(long, value_name = "N")]
    pub iterations: Option<u64>,
    /// Seed of the generator (a run is reproducible from it, up to the kernel's own choices).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Do not use coverage for feedback (it is still measured when KCOV is there).
    #[arg(long)]
    pub blind: bool,
    /// Do not open KCOV at all.
    #[arg(long)]
    pub no_kcov: bool,
    /// Where the summary, the corpus and the findings go.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Start from the programs (`*.json`) in DIR.
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// Stop at the first finding.
    #[arg(long)]
    pub stop_on_finding: bool,
    /// Seconds between two points of the coverage timeline.
    #[arg(long, default_value_t = 10)]
    pub sample_secs: u64,
    /// Run a feedback fuzzer and a blind one side by side (two threads, each with its own
    /// namespaces and KCOV), on the same time budget; results in `OUT/feedback` and
    /// `OUT/blind`.
    #[arg(long, conflicts_with = "blind")]
    pub compare: bool,
    /// Measure which TCP-AO receive functions KCOV sees for a connection over veth and for
    /// one through the TUN device (symbolised with /proc/kallsyms), then exit.
    #[arg(long)]
    pub kcov_probe: bool,
    /// Run this program (a `prog.json` or `case.json`) once and report, instead of fuzzing.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
}

/// Options of `upstream` (guest side).
#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    /// The directory holding the built programs.
    pub dir: PathBuf,
    /// Only these programs (file names like `connect_ipv4`, or program names).
    pub programs: Vec<String>,
    /// Start no more programs once N of them have had a failing result; the rest are
    /// reported as skipped (`mutate` passes 1 on a mutant).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_failures: Option<u64>,
}

/// Options of `run`.
#[derive(Debug, Clone, Args, Default)]
pub struct RunArgs {
    /// List the selected test names instead of running them.
    #[arg(long)]
    pub list: bool,
    /// Select tests whose stable name (`program/family/case`) contains a FILTER, or matches
    /// it as a glob when it has `*` or `?`. Hidden `selftest-self/` tests need their program
    /// named.
    pub filters: Vec<String>,
    /// FILTERs must match whole names.
    #[arg(long)]
    pub exact: bool,
    /// Tests in flight at once, each in its own thread.
    #[arg(long, short = 'j', default_value_t = 1)]
    pub jobs: usize,
    /// Per-test timeout in seconds for every test (overrides tests' own timeouts and
    /// `kselftest_override_timeout`).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Stop starting tests after N failures (fails, timeouts, errors); the rest are
    /// reported as skipped. `mutate` uses it: one confirmed failure kills a mutant.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_failures: Option<u64>,
    /// Run the selection N times in a row (one KTAP document per round), then name every
    /// test that failed in some round, and in which: flaky or broken every time.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub repeat: u64,
    /// Keep the packet captures tests make in DIR.
    #[arg(long, value_name = "DIR")]
    pub save_pcaps: Option<PathBuf>,
    /// Benchmark mode: tests that measure do more rounds and print ratios.
    #[arg(long)]
    pub bench: bool,
    /// Run the race stress programs (`race/`, hidden from the default run): all of them, or
    /// those matching the FILTERs (see docs/selftests/race.md).
    #[arg(long)]
    pub race: bool,
    /// Run each race program's short smoke version (a dozen iterations), in addition to the
    /// usual selection (what CI's VM pass does); with `--race`, only the race programs.
    #[arg(long)]
    pub race_smoke: bool,
}

/// Hardware acceleration choice for the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Accel {
    /// Probe KVM with a tiny boot; fall back to TCG when it does not work.
    #[default]
    Auto,
    /// Use KVM (fail if it does not work).
    Kvm,
    /// Use TCG emulation (`vng --disable-kvm`).
    Tcg,
}

/// Options of `vm`.
#[derive(Debug, Clone, Args)]
pub struct VmArgs {
    /// A kernel image to boot (a bzImage or vmlinuz) instead of Debian sid's
    /// `linux-image-amd64`.
    #[arg(long, value_name = "PATH", conflicts_with = "flavour")]
    pub kernel: Option<PathBuf>,
    /// Boot a lab kernel of this flavour (plain, coverage, debug, kcov), building it first when
    /// it is not cached (see docs/lab.md).
    #[arg(long, value_name = "NAME")]
    pub flavour: Option<String>,
    /// The kernel tree for `--flavour` and `--upstream` (default: Debian's `linux-source`
    /// matching the default kernel).
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Patches (`patch -p1`) applied to the lab's tree for this `--flavour` build only (a
    /// reverted fix from `selftests/regress/`, for example); the image is cached per patch set.
    #[arg(long = "patch", value_name = "FILE", requires = "flavour")]
    pub patches: Vec<PathBuf>,

    /// Patches (`patch -p1`) to the kernel's own tcp_ao selftests
    /// (`tools/testing/selftests/net/tcp_ao` only: a new case or program, such as
    /// `selftests/fixes/*-selftest.patch`), applied for their build; implies `--upstream`. The
    /// programs are cached per patch set.
    #[arg(long = "upstream-patch", value_name = "FILE")]
    pub upstream_patches: Vec<PathBuf>,
    /// Also run the kernel's own tcp_ao selftests (built from the lab's tree) in the same
    /// guest, their results folded in as `upstream/<program>/<family>/...`.
    #[arg(long)]
    pub upstream: bool,
    /// Extra QEMU options (`vng --qemu-opts`), e.g. `-accel tcg,thread=single` for two vCPUs
    /// on one emulation thread.
    #[arg(long, value_name = "OPTS", allow_hyphen_values = true)]
    pub qemu_opts: Option<String>,
    /// Modules for `--kernel`: an `INSTALL_MOD_PATH` root (holding `lib/modules/<V>`) or the
    /// `<V>` directory itself. Without it a `--kernel` boots with built-in drivers only.
    #[arg(long, value_name = "DIR", requires = "kernel")]
    pub modules: Option<PathBuf>,
    /// Host-side hard timeout for the whole guest run, in seconds. Default: 1800 times the
    /// kernel's slowdown (4 for the lab's `debug` flavour, 3 for `kcov`, see `kernel list`).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Guest memory (`vng --memory`).
    #[arg(long, value_name = "M", default_value = "2G")]
    pub memory: String,
    /// Guest CPUs. Default: 2 under KVM, 1 under TCG. With several vCPUs, multi-threaded TCG
    /// can run a stale `int3` that another vCPU's static-key patch already removed, and the
    /// guest panics ("Oops: int3" at a static branch such as `tcp_established_options`, seen
    /// in 1 of 2 full runs here); one vCPU makes TCG catch the self-modifying code exactly.
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// Run this shell script in the guest instead of the suite; its output is streamed and
    /// its KTAP (if any) parsed.
    #[arg(long, value_name = "FILE", conflicts_with = "args")]
    pub exec_script: Option<PathBuf>,
    /// Also run these libtest binaries in the guest before the suite, with
    /// `TCPAO_REQUIRE_TCP_AO=1` (a missing TCP-AO is a failure there).
    #[arg(long = "cargo-test", value_name = "BIN")]
    pub cargo_tests: Vec<PathBuf>,
    /// Only download and unpack the default kernel (and print where it is), do not boot.
    #[arg(long)]
    pub fetch_only: bool,
    /// KVM or TCG.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// Keep the guest's results directory (KTAP, console log, dmesg) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Run `tcpao-selftests fuzz ARGS` in the guest instead of the suite (ARGS after `--`;
    /// a `--out DIR` there is created on the host and shared with the guest).
    #[arg(long, conflicts_with = "exec_script")]
    pub fuzz: bool,
    /// Arguments for the suite inside the guest (filters, `--jobs`, …).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// Whether a panic message is `println!`'s on a closed stdout (see `main`).
pub fn is_broken_pipe_panic(msg: &str) -> bool {
    msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_printing_to_a_closed_stdout_counts_as_a_broken_pipe() {
        // One row per panic message: whether it is the broken pipe.
        let rows = [
            ("failed printing to stdout: Broken pipe (os error 32)", true),
            ("failed printing to stdout: No space left on device", false),
            ("test body panicked: Broken pipe", false),
            ("", false),
        ];
        for (msg, want) in rows {
            assert_eq!(is_broken_pipe_panic(msg), want, "{msg}");
        }
    }

    fn parse(a: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("tcpao-selftests").chain(a.iter().copied())).unwrap()
    }

    #[test]
    fn default_command_is_run_with_filters() {
        let c = parse(&["connect/ipv4", "--exact", "-j", "2"]);
        assert!(c.command.is_none());
        assert_eq!(c.run.filters, ["connect/ipv4"]);
        assert!(c.run.exact);
        assert_eq!(c.run.jobs, 2);
        let c = parse(&["run", "--list", "rst"]);
        assert!(matches!(c.command, Some(Command::Run(ref r)) if r.list && r.filters == ["rst"]));
    }

    #[test]
    fn vm_takes_suite_args_after_dashes() {
        let c = parse(&["vm", "--cpus", "4", "--", "harness", "--jobs", "2"]);
        let Some(Command::Vm(v)) = c.command else {
            panic!("not vm")
        };
        assert_eq!(v.cpus, Some(4));
        assert_eq!(v.memory, "2G");
        assert_eq!(v.args, ["harness", "--jobs", "2"]);
        assert!(
            Cli::try_parse_from(["x", "vm", "--modules", "/m"]).is_err(),
            "needs --kernel"
        );
    }
}

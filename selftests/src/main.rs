// SPDX-License-Identifier: MIT OR Apache-2.0
//! `tcpao-selftests`: run the TCP-AO selftests on this kernel, or boot one that has TCP-AO.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tcpao_selftests::cli::{Cli, Command, RunArgs};
use tcpao_selftests::fzsync;
use tcpao_selftests::harness::{self, RunOptions, TimeoutPolicy};
use tcpao_selftests::lab;
use tcpao_selftests::programs::race;
use tcpao_selftests::{Features, all_tests};

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::Vm(args)) => lab::cli::vm(&args),
        Some(Command::Run(args)) => run(&args),
        Some(Command::Kernel(args)) => lab::cli::kernel(&args),
        Some(Command::Coverage(args)) => lab::cli::coverage(&args),
        Some(Command::Mutate(args)) => lab::cli::mutate(&args),
        Some(Command::Fuzz(args)) => tcpao_selftests::fuzz::main(&args),
        Some(Command::Upstream(args)) => lab::upstream::main(
            &args.dir,
            &args.programs,
            args.max_failures.and_then(|n| usize::try_from(n).ok()),
        ),
        None => run(&cli.run),
    };
    // Exiting here also ends any abandoned (timed-out) test threads.
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `tcpao-selftests kernel list | head` closes our stdout early, and `println!` then panics.
/// A reader that stopped reading is not our failure: leave quietly with the status a process
/// killed by SIGPIPE has (128 + 13), as C tools do. (Resetting SIGPIPE itself would need
/// `unsafe`, which this crate forbids.)
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if tcpao_selftests::cli::is_broken_pipe_panic(&harness::payload_text(info.payload())) {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn run(args: &RunArgs) -> i32 {
    if args.race_smoke {
        fzsync::set_profile(fzsync::Profile::Smoke);
    }
    let tests = race::select(
        all_tests(),
        &args.filters,
        args.exact,
        args.race,
        args.race_smoke,
    );
    if args.list {
        for t in &tests {
            println!("{}", t.name());
        }
        return 0;
    }
    let features = Arc::new(Features::probe());
    let opts = RunOptions {
        filters: args.filters.clone(),
        exact: args.exact,
        jobs: args.jobs,
        timeout: args.timeout.map(Duration::from_secs),
        save_pcaps: args.save_pcaps.clone(),
        bench: args.bench,
        require_tcp_ao: std::env::var("TCPAO_REQUIRE_TCP_AO").is_ok_and(|v| v == "1"),
        max_failures: args
            .max_failures
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    match harness::run_rounds(
        &tests,
        &features,
        &opts,
        TimeoutPolicy::from_env(),
        usize::try_from(args.repeat).unwrap_or(1),
        std::io::stdout().lock(),
    ) {
        Ok(totals) => totals.exit_code(),
        Err(e) => {
            eprintln!("tcpao-selftests: writing results: {e}");
            1
        }
    }
}

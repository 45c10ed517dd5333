//! `protolab` binary entry point: parse args, build the runtime, run, map the result to an
//! exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = protolab::Cli::parse();
    protolab::logging::init(cli.global.verbose);
    // On one CPU (e.g. under `taskset -c 1`) a current-thread runtime does the same work
    // without handing every wake-up across threads: the load generator measured 0.91x wrk's
    // requests per CPU-second with a one-worker multi-thread runtime.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(protolab::run(cli)) {
        Ok(code) => code,
        Err(err) if protolab::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", protolab::error_text(&err));
            protolab::exit_code(&err)
        }
    }
}

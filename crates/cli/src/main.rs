//! `protolab` binary entry point: parse args, build the runtime, run, map the result to an
//! exit code.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc, returning freed pages to the kernel at once (`dirty_decay_ms:0`, with a background
/// thread; set in `.cargo/config.toml`). Chosen on measurement, `protolab up` with 10,000 idle
/// WebSockets (Python `websockets`) opened and closed three times, RSS after each close:
/// glibc malloc 9.8 MiB at start → 111.8, 116.6, 132.3 MiB (kept, and growing); jemalloc with
/// a one-second decay 11.3 → 17.0, 17.2, 17.0 MiB. Per open connection both cost about the
/// same (8.3 and 6.8 KiB). The one-second decay let a burst of growing 14 MiB messages peak
/// 133 MiB over a 64 MiB message budget (freed pages not purged yet; glibc unmaps large
/// blocks at once), which `ws_memory` in the CLI tests refuses; purging at once keeps it
/// within bounds. glibc's own knobs (`mallopt`, `malloc_trim`) would need `unsafe`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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

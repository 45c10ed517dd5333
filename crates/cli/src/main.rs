//! `protolab` binary entry point: parse args, build the runtime, run, map the result to an
//! exit code.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc, with a background thread that returns freed pages to the kernel 100 ms after their
/// last use (`background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0`, compiled in by
/// `.cargo/config.toml`; `_RJEM_MALLOC_CONF` in the environment overrides it at run time).
/// Chosen on measurement: release build, server pinned to core 0 and client to core 1 on a
/// 2-core machine shared with other builds (load 8-17), candidates interleaved, median
/// (min-max):
/// - gRPC unary 10x10, the app's calls per server CPU-second (plain tonic in the same runs
///   ~90-116k): purging at once (`dirty_decay_ms:0`) 49.2k (35.1-61.2k, 12 runs); 100 ms
///   95.1k (57.3-138.4k, 9); 250 ms 95.9k (11); 1 s 100.9k (12); jemalloc's defaults (10 s,
///   no background thread) 94.4k (6). Purging at once spent half the CPU on the allocator.
/// - RSS given back: 400 WebSockets each echoing 64 KiB (`ws_memory` in the CLI tests),
///   19.7 MiB at start, 166 MiB open: 100 ms back to 22-23 MiB within 0.2-0.3 s of the close,
///   1 s within 1.0 s, jemalloc's defaults kept 166.7 MiB 3 s later. `protolab-bench idle`
///   (10,000 WS / 5,000 WSS, 3 cycles, RSS 1 s after close): 100 ms 13.1 MiB from 12.5 (WSS
///   16.6-16.8 from 14.3) every cycle; defaults 20.6-33.2 (WSS 49.3-58.6).
/// - `ws_memory`'s budget test (40 clients x 14 MiB unfinished, 64 MiB budget), peak RSS
///   growth: at once 67-70 MiB, 100 ms 77-107 MiB (8 runs; 114-134 on a loaded CLI suite),
///   250 ms 92-106 (3), 1 s 112-116, defaults 112: freed message buffers count in RSS until
///   purged. 250 ms costs the same CPU as 100 ms; 100 ms purges soonest. The test bounds what
///   RSS holds once nothing more arrives (budget + 48 MiB; 78 measured) and the peak to three
///   budgets.
///
/// The decay is compiled in rather than exported as `malloc_conf` from here because that needs
/// `#[export_name]`, which `unsafe_code = "forbid"` refuses. Earlier, glibc malloc kept what
/// 10,000 idle WebSockets had used after they closed (9.8 MiB at start, then 111.8, 116.6,
/// 132.3 MiB after each of three closes); its own knobs (`mallopt`, `malloc_trim`) would need
/// `unsafe`.
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

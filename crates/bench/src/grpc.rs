//! `protolab-bench grpc`: protolab's gRPC app against `bench-peer-tonic` (the same lab.proto
//! on plain tonic, the same tonic version) and against Python grpcio's asyncio server
//! (peers/grpcio_echo_server.py), under one client: [`crate::grpc_client`], tonic's generated
//! client, pinned to core 1 with every server on core 0. Unary `Echo` and bidirectional
//! `EchoStream` (one message in flight per stream), `connections` × `calls` closed loops,
//! h2c with prior knowledge; rounds interleave the servers, and the table shows the median
//! and min–max and the ratio of protolab's median to each peer's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::Serialize;

use crate::grpc_client::{GrpcSample, Mode};
use crate::h2::spread;
use crate::process::{
    find_in_path, free_port, run_pinned_client, start_protolab_app, Ready, Server, TempDir,
};

/// The servers, in the order each round runs them.
pub const SERVERS: [&str; 3] = ["protolab-grpc", "tonic", "grpcio"];

/// Command line of `protolab-bench grpc`.
#[derive(Debug, Args)]
pub struct GrpcArgs {
    /// The protolab binary (a release build). Default: `protolab` next to this binary.
    #[arg(long, value_name = "PATH")]
    pub protolab: Option<PathBuf>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub duration: u64,
    /// Warm-up seconds before each measured window.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=10))]
    pub warmup: u64,
    /// Rounds over every server (interleaved); the table shows the median and min–max.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Loads as CONNECTIONSxCALLS (closed loops per connection), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10x10,1x1", value_parser = crate::h2::parse_load)]
    pub loads: Vec<(u32, u32)>,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub size: u64,
    /// Each closed loop also stops after this many messages (bounds a run on a fast server).
    #[arg(long, default_value_t = 5_000_000)]
    pub max_per_loop: u64,
    /// Leave a server out: protolab-grpc, tonic, grpcio. Repeatable.
    #[arg(long, value_name = "SERVER")]
    pub skip: Vec<String>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Directory with the Python peer.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))]
    pub peers_dir: PathBuf,
    /// Directory holding protolab/lab/v1/lab.proto, for the Python peer.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../server/proto"))]
    pub proto_root: PathBuf,
}

/// One client run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// One of [`SERVERS`].
    pub server: String,
    /// `unary` or `stream`.
    pub mode: String,
    /// `CONNS×CALLS`.
    pub load: String,
    /// 1-based round.
    pub round: u32,
    /// What the client measured.
    pub sample: Option<GrpcSample>,
    /// Client CPU over its whole run, % of one core.
    pub client_cpu_pct: Option<f64>,
    /// Why the run has no figures.
    pub error: Option<String>,
}

/// One scenario over rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `unary` or `stream`.
    pub mode: String,
    /// `CONNS×CALLS`.
    pub load: String,
    /// Per server in [`SERVERS`] order: messages/s median, min, max.
    pub rates: Vec<(String, Option<[f64; 3]>)>,
    /// Per server: median round-trip p99, µs.
    pub p99_us: Vec<(String, Option<f64>)>,
    /// Per server: median messages per server CPU-second.
    pub per_cpu_sec: Vec<(String, Option<f64>)>,
    /// protolab's median ÷ tonic's.
    pub ratio_tonic: Option<f64>,
    /// protolab's median ÷ grpcio's.
    pub ratio_grpcio: Option<f64>,
}

/// Everything `protolab-bench grpc` measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// Every run of every round.
    pub runs: Vec<Run>,
    /// One line per scenario.
    pub summary: Vec<Summary>,
    /// Load average (1 min) at the start and the end: the machine may be shared.
    pub loadavg: Option<(f64, f64)>,
    /// Skips and warnings.
    pub notes: Vec<String>,
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Unary => "unary",
        Mode::Stream => "stream",
    }
}

/// `protolab-bench grpc`: a usage error (exit 2) for an unknown `--skip`, else the run, the
/// table on stdout and the JSON file.
pub fn main(args: &GrpcArgs) -> anyhow::Result<std::process::ExitCode> {
    if let Some(usage) = crate::driver::unknown_skip(&args.skip, &SERVERS) {
        return Ok(usage);
    }
    crate::process::install_signal_handler();
    let results = run(args)?;
    print!("{}", render(&results));
    crate::report::write_json(args.json.as_deref(), &results)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs the bench and returns the results ([`render`] prints them).
pub fn run(args: &GrpcArgs) -> anyhow::Result<Results> {
    crate::driver::Tool::Taskset.find(None)?;
    let me = std::env::current_exe().context("finding the protolab-bench binary")?;
    let skipped = |s: &str| args.skip.iter().any(|k| k == s);
    let protolab = args
        .protolab
        .clone()
        .unwrap_or_else(|| me.with_file_name("protolab"));
    let tonic_peer = me.with_file_name("bench-peer-tonic");
    let python = find_in_path("python3");
    if !skipped("protolab-grpc") && !protolab.is_file() {
        bail!(
            "protolab binary {} not found: build it with `cargo build --release -p protolab`, point at it with --protolab PATH, or leave it out with --skip protolab-grpc",
            protolab.display()
        );
    }
    if !skipped("tonic") && !tonic_peer.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p protolab-bench`, or leave it out with --skip tonic",
            tonic_peer.display()
        );
    }
    let script = args.peers_dir.join("grpcio_echo_server.py");
    if !skipped("grpcio") {
        let Some(python) = &python else {
            bail!("`python3` not found on PATH: install it with `apt-get install -y python3`, or leave it out with --skip grpcio");
        };
        let check = std::process::Command::new(python)
            .args(["-c", "import grpc, grpc_tools"])
            .output()
            .context("running python3")?;
        if !check.status.success() {
            bail!("Python grpcio is not installed: `pip install -r tests/peers/requirements.txt` (grpcio, grpcio-tools), or leave it out with --skip grpcio");
        }
    }
    let dir = TempDir::new("protolab-bench-grpc")?;
    let home = dir.path().join("home");
    let mut results = Results::default();
    let load = crate::report::LoadWatch::start();
    let modes = [Mode::Unary, Mode::Stream];
    for round in 1..=args.rounds {
        for name in SERVERS.into_iter().filter(|s| !skipped(s)) {
            let port = free_port()?;
            eprintln!(
                "grpc: round {round}/{}: {name} on 127.0.0.1:{port}",
                args.rounds
            );
            let started = match name {
                "protolab-grpc" => start_protolab_app(&protolab, &home, dir.path(), "grpc", port),
                "tonic" => Server::start(
                    "tonic",
                    &tonic_peer,
                    &["--port".to_owned(), port.to_string()],
                    dir.path(),
                    port,
                    Ready::Line("listening"),
                ),
                _ => start_grpcio(
                    python.as_deref(),
                    &script,
                    &args.proto_root,
                    dir.path(),
                    port,
                ),
            };
            for mode in modes {
                for &(conns, calls) in &args.loads {
                    let mut run = Run {
                        server: name.to_owned(),
                        mode: mode_name(mode).to_owned(),
                        load: format!("{conns}×{calls}"),
                        round,
                        sample: None,
                        client_cpu_pct: None,
                        error: None,
                    };
                    let outcome = started
                        .as_ref()
                        .map_err(|e| anyhow::anyhow!("{e:#}"))
                        .and_then(|server| measure(&me, args, server, port, mode, conns, calls));
                    match outcome {
                        Ok((sample, client_cpu)) => {
                            eprintln!(
                                "grpc: {name:<14} {:<6} {:<7} {:>9.0} msg/s  p99 {:>6.0} µs",
                                run.mode, run.load, sample.per_sec, sample.p99_us
                            );
                            run.sample = Some(sample);
                            run.client_cpu_pct = client_cpu;
                        }
                        Err(err) => {
                            eprintln!("error: {name} {} {}: {err:#}", run.mode, run.load);
                            run.error = Some(format!("{err:#}"));
                        }
                    }
                    results.runs.push(run);
                }
            }
        }
    }
    results.loadavg = load.end();
    for mode in modes {
        for &(conns, calls) in &args.loads {
            results.summary.push(summarize(
                &results.runs,
                mode_name(mode),
                &format!("{conns}×{calls}"),
            ));
        }
    }
    for r in &results.runs {
        let run = format!("{} ({} {}, round {})", r.server, r.mode, r.load, r.round);
        results.notes.extend(crate::report::client_bound_note(
            "the client",
            r.client_cpu_pct,
            &run,
        ));
    }
    results
        .notes
        .extend(args.skip.iter().map(|s| crate::report::skipped_note(s)));
    Ok(results)
}

fn start_grpcio(
    python: Option<&Path>,
    script: &Path,
    proto_root: &Path,
    dir: &Path,
    port: u16,
) -> anyhow::Result<Server> {
    let python = python.context("python3 not found")?;
    let args = [
        script.display().to_string(),
        "--port".to_owned(),
        port.to_string(),
        "--proto-root".to_owned(),
        proto_root.display().to_string(),
    ];
    Server::start("grpcio", python, &args, dir, port, Ready::Line("listening"))
}

fn measure(
    me: &Path,
    args: &GrpcArgs,
    server: &Server,
    port: u16,
    mode: Mode,
    conns: u32,
    calls: u32,
) -> anyhow::Result<(GrpcSample, Option<f64>)> {
    let client_args = vec![
        "grpc-client".to_owned(),
        "--port".to_owned(),
        port.to_string(),
        "--mode".to_owned(),
        mode_name(mode).to_owned(),
        "--connections".to_owned(),
        conns.to_string(),
        "--calls".to_owned(),
        calls.to_string(),
        "--size".to_owned(),
        args.size.to_string(),
        "--warmup-ms".to_owned(),
        (args.warmup * 1000).to_string(),
        "--duration-ms".to_owned(),
        (args.duration * 1000).to_string(),
        "--max-per-loop".to_owned(),
        args.max_per_loop.to_string(),
        "--server-pid".to_owned(),
        server.pid().to_string(),
    ];
    let limit = Duration::from_secs(args.warmup + args.duration + 30);
    let out = run_pinned_client(me, &client_args, limit)?;
    let sample: GrpcSample = serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("reading the client's JSON: {}", out.stdout.trim()))?;
    if sample.messages == 0 {
        bail!("no echo completed in the window");
    }
    let wall = out.wall.as_secs_f64();
    Ok((sample, out.cpu_secs.map(|c| 100.0 * c / wall)))
}

fn summarize(runs: &[Run], mode: &str, load: &str) -> Summary {
    let samples = |server: &str| -> Vec<&GrpcSample> {
        runs.iter()
            .filter(|r| r.server == server && r.mode == mode && r.load == load)
            .filter_map(|r| r.sample.as_ref())
            .collect()
    };
    let median = |values: Vec<f64>| spread(values).map(|s| s[0]);
    let mut rates = Vec::new();
    let mut p99_us = Vec::new();
    let mut per_cpu_sec = Vec::new();
    for server in SERVERS {
        let s = samples(server);
        rates.push((
            server.to_owned(),
            spread(s.iter().map(|x| x.per_sec).collect()),
        ));
        p99_us.push((
            server.to_owned(),
            median(s.iter().map(|x| x.p99_us).collect()),
        ));
        per_cpu_sec.push((
            server.to_owned(),
            median(
                s.iter()
                    .filter_map(|x| {
                        let cpu = x.server_cpu_secs.filter(|&c| c > 0.0)?;
                        Some(x.messages as f64 / cpu)
                    })
                    .collect(),
            ),
        ));
    }
    let rate = |server: &str| {
        rates
            .iter()
            .find(|(s, _)| s == server)
            .and_then(|(_, r)| r.map(|r| r[0]))
    };
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    Summary {
        mode: mode.to_owned(),
        load: load.to_owned(),
        ratio_tonic: div(rate("protolab-grpc"), rate("tonic")),
        ratio_grpcio: div(rate("protolab-grpc"), rate("grpcio")),
        rates,
        p99_us,
        per_cpu_sec,
    }
}

/// The table `protolab-bench grpc` prints, ratio lines at the end.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    out.push_str(
        "gRPC echo, h2c (server on core 0, tonic client on core 1): msg/s median (min–max), p99 µs, msgs per server CPU-second\n",
    );
    for s in &results.summary {
        out.push_str(&format!("{} {}\n", s.mode, s.load));
        for (i, (server, rate)) in s.rates.iter().enumerate() {
            let rate = match rate {
                Some([m, lo, hi]) => format!("{m:>8.0} ({lo:.0}–{hi:.0})"),
                None => format!("{:>8}", "—"),
            };
            let p99 = s.p99_us[i].1.map_or("—".to_owned(), |v| format!("{v:.0}"));
            let cpu = s.per_cpu_sec[i]
                .1
                .map_or("—".to_owned(), |v| format!("{v:.0}"));
            out.push_str(&format!(
                "  {server:<14} {rate:<26} p99 {p99:>7}  per CPU-s {cpu:>8}\n"
            ));
        }
    }
    for r in results.runs.iter().filter(|r| r.error.is_some()) {
        out.push_str(&format!(
            "error: {} {} {} round {}: {}\n",
            r.server,
            r.mode,
            r.load,
            r.round,
            r.error.as_deref().unwrap_or_default()
        ));
    }
    out.push_str(&crate::report::trailer(&results.notes, results.loadavg));
    for s in &results.summary {
        if let Some(r) = s.ratio_tonic {
            let verdict = if r >= 1.0 { "met" } else { "MISSED" };
            out.push_str(&format!(
                "ratio protolab-grpc/tonic {} {}: {r:.2}× (target ≥ 1.0×: {verdict})\n",
                s.mode, s.load
            ));
        }
        if let Some(r) = s.ratio_grpcio {
            out.push_str(&format!(
                "ratio protolab-grpc/grpcio {} {}: {r:.2}×\n",
                s.mode, s.load
            ));
        }
    }
    out
}

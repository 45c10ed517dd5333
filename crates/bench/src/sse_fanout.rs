//! `protolab-bench sse-fanout`: the lab's SSE feed (`GET /events`, one feed for every stream)
//! against the WS app's per-connection pushes (`/ws?push_ms=N`) at the same interval, with
//! the same number of subscribers. One release `protolab up --only sse,ws` pinned to core 0;
//! the subscribers are `protolab_load`'s push workload (its `sse://` and `ws://` clients) in
//! [`client_main`], re-executed pinned to core 1. Per transport: deliveries/s, delivery delay
//! p50/p99 (from the `sent_at_us` each push carries), bytes per delivery on the wire, server
//! CPU per delivery (utime+stime from `/proc/PID/stat` around the client's run, connects
//! included) and server RSS per subscriber (mid-run RSS minus RSS before the run); then SSE ÷
//! WS for each.
//!
//! Release build, defaults, 3 rounds on a shared 2-core machine (median, min–max): SSE ÷ WS
//! deliveries/s 0.87 (8,211 vs 9,459), server CPU per delivery 1.15 (12.2 vs 10.6 µs), RSS
//! per subscriber 7.5 (5.3 vs 0.7 KB; 12.1 KB before the feed's shared frames and the stream's
//! freed buffers), bytes per delivery 1.61 (134 vs 83 B). docs/architecture.md has the spreads
//! and where the time goes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cpu::{process_cpu_split, CpuSplit};
use crate::cpu_rate::spread;
use crate::fanout_client::rss_kib;
use crate::process::{free_port, run_pinned_client, Ready, Server, TempDir};

/// The transports, in the order each round runs them.
pub const TRANSPORTS: [&str; 2] = ["sse", "ws"];

/// Command line of `protolab-bench sse-fanout`.
#[derive(Debug, Args)]
pub struct SseFanoutArgs {
    /// The protolab binary (a release build). Default: `protolab` next to this binary.
    #[arg(long, value_name = "PATH")]
    pub protolab: Option<PathBuf>,
    /// Subscribers per transport.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    pub subscribers: u64,
    /// Push interval in ms: the lab's `--push-interval` (SSE) and `push_ms` (WS).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub push_ms: u64,
    /// Seconds each transport's subscribers stay connected.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub duration: u64,
    /// Rounds over both transports (interleaved); the table shows the median and min–max.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rounds: u32,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Command line of the hidden `sse-fanout-client` (one transport's subscribers).
#[derive(Debug, Args)]
pub struct SseFanoutClientArgs {
    /// `sse` or `ws`.
    #[arg(long)]
    pub transport: String,
    /// The app's port on 127.0.0.1.
    #[arg(long)]
    pub port: u16,
    /// Subscribers to open.
    #[arg(long)]
    pub subscribers: u64,
    /// WS push interval, ms.
    #[arg(long)]
    pub push_ms: u64,
    /// How long the subscribers stay, ms.
    #[arg(long)]
    pub duration_ms: u64,
    /// The server, for CPU and RSS.
    #[arg(long)]
    pub server_pid: u32,
}

/// One transport's run, as the client prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// `sse` or `ws`.
    pub transport: String,
    /// Subscribers asked for.
    pub subscribers: u64,
    /// Subscribers that completed their handshake.
    pub opened: u64,
    /// Opened subscribers that got no delivery.
    pub without_deliveries: u64,
    /// Pushes received, all subscribers.
    pub deliveries: u64,
    /// Wall time of the run, s.
    pub secs: f64,
    /// `deliveries / secs`.
    pub deliveries_per_sec: f64,
    /// Delivery delay, from `sent_at_us` to read, µs.
    pub p50_us: f64,
    /// Delivery delay p99, µs.
    pub p99_us: f64,
    /// Wire bytes received per delivery (steady pushes, handshakes excluded).
    pub bytes_per_delivery: Option<f64>,
    /// Server utime+stime per delivery over the client's whole run, µs.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Server RSS mid-run minus before the run, per opened subscriber, bytes.
    pub rss_per_subscriber: Option<f64>,
    /// Errors the load generator counted.
    pub errors: u64,
}

/// One round of one transport.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// 1-based round.
    pub round: u32,
    /// `sse` or `ws`.
    pub transport: String,
    /// What the client measured.
    pub sample: Option<Sample>,
    /// Why there are no figures.
    pub error: Option<String>,
}

/// Everything `protolab-bench sse-fanout` measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// Subscribers per transport.
    pub subscribers: u64,
    /// Push interval, ms.
    pub push_ms: u64,
    /// Every run.
    pub runs: Vec<Run>,
    /// Load average (1 min) at the start and the end: the machine may be shared.
    pub loadavg: Option<(f64, f64)>,
}

/// `protolab-bench sse-fanout`: the runs, the table on stdout, the JSON file.
pub fn main(args: &SseFanoutArgs) -> anyhow::Result<ExitCode> {
    crate::process::install_signal_handler();
    let results = run(args)?;
    print!("{}", render(&results));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs every round: a fresh lab per round, SSE's subscribers then WS's.
pub fn run(args: &SseFanoutArgs) -> anyhow::Result<Results> {
    crate::driver::Tool::Taskset.find(None)?;
    let me = std::env::current_exe().context("finding the protolab-bench binary")?;
    let protolab = args
        .protolab
        .clone()
        .unwrap_or_else(|| me.with_file_name("protolab"));
    if !protolab.is_file() {
        bail!(
            "protolab binary {} not found: build it with `cargo build --release -p protolab`, or point at it with --protolab PATH",
            protolab.display()
        );
    }
    // The lab runs in a temporary directory: a relative path must not be read from there.
    let protolab = std::fs::canonicalize(&protolab)
        .with_context(|| format!("resolving {}", protolab.display()))?;
    let dir = TempDir::new("protolab-bench-sse-fanout")?;
    let mut results = Results {
        subscribers: args.subscribers,
        push_ms: args.push_ms,
        ..Results::default()
    };
    let load_start = crate::report::loadavg();
    for round in 1..=args.rounds {
        let (sse_port, ws_port) = (free_port()?, free_port()?);
        let server = start_lab(&protolab, dir.path(), sse_port, ws_port, args.push_ms);
        for transport in TRANSPORTS {
            let port = if transport == "sse" {
                sse_port
            } else {
                ws_port
            };
            let outcome = server
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e:#}"))
                .and_then(|server| measure(&me, args, server, transport, port));
            let mut run = Run {
                round,
                transport: transport.to_owned(),
                sample: None,
                error: None,
            };
            match outcome {
                Ok(sample) => {
                    eprintln!(
                        "sse-fanout: round {round}/{}: {transport:<3} {:>8.0} deliveries/s  p99 {:>7.0} µs",
                        args.rounds, sample.deliveries_per_sec, sample.p99_us
                    );
                    run.sample = Some(sample);
                }
                Err(err) => {
                    eprintln!("error: sse-fanout {transport} round {round}: {err:#}");
                    run.error = Some(format!("{err:#}"));
                }
            }
            results.runs.push(run);
        }
    }
    results.loadavg = load_start.zip(crate::report::loadavg());
    Ok(results)
}

fn start_lab(
    protolab: &Path,
    dir: &Path,
    sse_port: u16,
    ws_port: u16,
    push_ms: u64,
) -> anyhow::Result<Server> {
    let args = [
        "--home".to_owned(),
        dir.join("home").display().to_string(),
        "up".to_owned(),
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--only".to_owned(),
        "sse,ws".to_owned(),
        "--sse-port".to_owned(),
        sse_port.to_string(),
        "--ws-port".to_owned(),
        ws_port.to_string(),
        "--push-interval".to_owned(),
        format!("{push_ms}ms"),
    ];
    Server::start(
        "protolab",
        protolab,
        &args,
        dir,
        ws_port,
        Ready::Line("ready"),
    )
}

fn measure(
    me: &Path,
    args: &SseFanoutArgs,
    server: &Server,
    transport: &str,
    port: u16,
) -> anyhow::Result<Sample> {
    let client_args = vec![
        "sse-fanout-client".to_owned(),
        "--transport".to_owned(),
        transport.to_owned(),
        "--port".to_owned(),
        port.to_string(),
        "--subscribers".to_owned(),
        args.subscribers.to_string(),
        "--push-ms".to_owned(),
        args.push_ms.to_string(),
        "--duration-ms".to_owned(),
        (args.duration * 1000).to_string(),
        "--server-pid".to_owned(),
        server.pid().to_string(),
    ];
    let limit = Duration::from_secs(args.duration + 30);
    let out = run_pinned_client(me, &client_args, limit)?;
    let sample: Sample = serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("reading the client's JSON: {}", out.stdout.trim()))?;
    Ok(sample)
}

/// The hidden `sse-fanout-client`: one transport's subscribers for the duration, on one
/// thread; prints a [`Sample`] as JSON.
pub fn client_main(args: &SseFanoutClientArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sample = runtime.block_on(client_run(args))?;
    println!("{}", serde_json::to_string(&sample)?);
    Ok(ExitCode::SUCCESS)
}

async fn client_run(args: &SseFanoutClientArgs) -> anyhow::Result<Sample> {
    let url = match args.transport.as_str() {
        "sse" => format!("sse://127.0.0.1:{}/events", args.port),
        "ws" => format!("ws://127.0.0.1:{}/ws", args.port),
        other => bail!("--transport {other}: one of sse, ws"),
    };
    let target = protolab_load::Target::parse(&url)?;
    let mut config = protolab_load::Config::new(target);
    config.workload = protolab_load::Workload::Push;
    config.connections = usize::try_from(args.subscribers)?;
    config.push_interval = Duration::from_millis(args.push_ms);
    config.duration = Duration::from_millis(args.duration_ms);
    // A push interval longer than the default 5 s bound would count as a timeout.
    config.request_timeout = config.push_interval + Duration::from_secs(5);
    let pid = args.server_pid;
    let rss_before = rss_kib(pid);
    let cpu_before = process_cpu_split(pid);
    // RSS with every subscriber connected: halfway through, after the connects.
    let halfway = config.duration / 2;
    let rss_mid = tokio::spawn(async move {
        tokio::time::sleep(halfway).await;
        rss_kib(pid)
    });
    let started = std::time::Instant::now();
    let report = protolab_load::run(config).await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu_after = process_cpu_split(pid);
    let rss_mid = rss_mid.await.unwrap_or(0);
    let latency = report.latency.as_ref();
    let deliveries = report.messages;
    let opened = report.connections_opened;
    Ok(Sample {
        transport: args.transport.clone(),
        subscribers: args.subscribers,
        opened,
        without_deliveries: report.connections_without_messages,
        deliveries,
        secs,
        deliveries_per_sec: deliveries as f64 / secs,
        p50_us: latency.map_or(0.0, |l| l.p50_us),
        p99_us: latency.map_or(0.0, |l| l.p99_us),
        bytes_per_delivery: report.bytes.received_per_message,
        server_cpu_us_per_delivery: cpu_before
            .zip(cpu_after)
            .and_then(|(b, a)| cpu_us_per(b, a, deliveries)),
        rss_per_subscriber: (opened > 0 && rss_before > 0 && rss_mid > 0)
            .then(|| (rss_mid as f64 - rss_before as f64) * 1024.0 / opened as f64),
        errors: report.errors.total(),
    })
}

fn cpu_us_per(before: CpuSplit, after: CpuSplit, deliveries: u64) -> Option<f64> {
    let (user, system) = crate::cpu::micros_per_message(before, after, deliveries)?;
    Some(user + system)
}

/// The table: per transport the median (min–max) of each figure, then SSE ÷ WS.
pub fn render(results: &Results) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "SSE /events vs WS /ws?push_ms: {} subscribers each, a push every {} ms (server on core 0, client on core 1)",
        results.subscribers, results.push_ms
    );
    type Figure = fn(&Sample) -> Option<f64>;
    let figures: [(&str, Figure); 6] = [
        ("deliveries/s", |s| Some(s.deliveries_per_sec)),
        ("delay p50 µs", |s| Some(s.p50_us)),
        ("delay p99 µs", |s| Some(s.p99_us)),
        ("bytes/delivery", |s| s.bytes_per_delivery),
        ("server CPU µs/delivery", |s| s.server_cpu_us_per_delivery),
        ("server RSS B/subscriber", |s| s.rss_per_subscriber),
    ];
    let _ = writeln!(
        out,
        "{:<24} {:>26} {:>26} {:>8}",
        "figure", "sse", "ws", "sse/ws"
    );
    let mut ratios = Vec::new();
    for (name, figure) in figures {
        let per = |transport: &str| {
            spread(
                results
                    .runs
                    .iter()
                    .filter(|r| r.transport == transport)
                    .filter_map(|r| r.sample.as_ref().and_then(figure))
                    .collect(),
            )
        };
        let (sse, ws) = (per("sse"), per("ws"));
        let cell = |s: Option<(f64, f64, f64)>| {
            s.map_or("–".to_owned(), |(m, lo, hi)| {
                format!("{m:.1} ({lo:.1}–{hi:.1})")
            })
        };
        let ratio = match (sse, ws) {
            (Some(a), Some(b)) if b.0 != 0.0 => format!("{:.2}", a.0 / b.0),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            "{name:<24} {:>26} {:>26} {ratio:>8}",
            cell(sse),
            cell(ws)
        );
        ratios.push(format!("{name} {ratio}"));
    }
    let _ = writeln!(out, "ratio sse/ws (medians): {}", ratios.join(", "));
    for r in &results.runs {
        if let Some(s) = &r.sample {
            if s.without_deliveries > 0 || s.opened < s.subscribers || s.errors > 0 {
                let _ = writeln!(
                    out,
                    "note: {} round {}: {} of {} subscribers opened, {} got no delivery, {} errors",
                    r.transport, r.round, s.opened, s.subscribers, s.without_deliveries, s.errors
                );
            }
        }
        if let Some(e) = &r.error {
            let _ = writeln!(out, "note: {} round {}: {e}", r.transport, r.round);
        }
    }
    out.push_str(&crate::report::trailer(&[], results.loadavg));
    out
}

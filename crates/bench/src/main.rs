//! `protolab-bench`: runs protolab's WebSocket and HTTP apps against named peers in the same
//! run and prints msgs/s (req/s), server CPU, and the ratios the issue sets as targets.
//!
//! Run with `scripts/bench` (builds, installs peers, then `protolab-bench all`), or
//! `target/release/protolab-bench ws --skip websocat --json ws.json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use protolab_bench::driver::{Load, Options};
use protolab_bench::report::{self, Results};
use protolab_bench::{client, decode, http, loadgen, process, ws};

/// Whole-system benchmarks of protolab against named peers.
#[derive(Debug, Parser)]
#[command(name = "protolab-bench", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// WebSocket echo: protolab ws and wss, tokio-tungstenite, fastwebsockets, websocat, Node ws.
    Ws(Common),
    /// HTTP/1.1: protolab's HTTP app against nginx (one worker) under wrk.
    Http(Common),
    /// `ws`, then `http`, one table.
    All(Common),
    /// The load generator's own efficiency: protolab's client against wrk and oha (HTTP, same
    /// nginx) and against a Node `ws` client and npm loadtest (WS, same protolab WS app).
    Loadgen(LoadgenArgs),
    /// Capture decoding: `protolab inspect --json` against `tshark -2` on a large WSS capture
    /// with its TLS secrets embedded.
    Decode(DecodeArgs),
    /// protolab proxy against HAProxy (from `protolab proxy --emit haproxy`) in front of the
    /// same protolab WS backend: WSS echo msg/s, added p99 at a fixed rate, HTTP req/s.
    Proxy(ProxyArgs),
    /// Fan-out: protolab hub (socket.io and /connection/ws) against a Flask-SocketIO app, a
    /// Node socket.io 4 server and the `ws-floor` kernel floor: publish-to-receipt p50/p99, RSS
    /// per idle subscriber, deliveries per server CPU-second.
    Hub(HubArgs),
    /// The WebSocket load client (the driver runs it pinned to core 1; prints JSON).
    #[command(hide = true)]
    Client(ClientArgs),
    /// The fan-out subscriber load (the driver runs it pinned to core 1; prints JSON).
    #[command(hide = true)]
    HubClient(HubClientArgs),
}

#[derive(Debug, Args)]
struct HubArgs {
    /// The protolab binary (a release build). Default: `protolab` next to this binary.
    #[arg(long, value_name = "PATH")]
    protolab: Option<PathBuf>,
    /// Idle subscribers per server (the figure is at 20000).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    subscribers: u64,
    /// Publications of the latency phase, one per second.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50))]
    publishes: u32,
    /// Publications of the burst phase. Default: 200,000 deliveries' worth (5 to 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    burst: Option<u32>,
    /// Rounds over every server; the table shows the median and the range.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// Leave a server out: hub-socketio, hub-ws, hub-sse, hub-ws-redis, ws-floor,
    /// flask-socketio, node-socketio. Repeatable.
    #[arg(long, value_name = "SERVER")]
    skip: Vec<String>,
    /// Publish throughput runs, one per subscriber count: a fresh server, that many
    /// subscribers, publications as fast as 16 publishers get them accepted. `0` for none.
    #[arg(long, value_name = "N,N", value_delimiter = ',', default_values_t = [1u64, 1000], value_parser = clap::value_parser!(u64).range(0..=60_000))]
    throughput_subscribers: Vec<u64>,
    /// Publications of each throughput run. Default: 200,000 deliveries' worth (100 to 5,000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    throughput_publications: Option<u32>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Directory with the Node and Python peers (and node_modules).
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))]
    peers_dir: PathBuf,
}

#[derive(Debug, Args)]
struct HubClientArgs {
    /// The server's port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// Subscriber protocol.
    #[arg(long, value_enum)]
    wire: protolab_bench::fanout_client::Wire,
    #[arg(long)]
    subscribers: usize,
    #[arg(long)]
    publishes: u32,
    #[arg(long)]
    burst: u32,
    /// Second octet of the subscribers' 127.X.Y.Z source addresses.
    #[arg(long, default_value_t = 1)]
    source_net: u8,
    #[arg(long)]
    server_pid: u32,
    /// A throughput run of this many publications instead of the latency and burst phases.
    #[arg(long)]
    throughput: Option<u32>,
}

#[derive(Debug, Args)]
struct Common {
    /// The protolab binary. Default: `protolab` next to this binary.
    #[arg(long, value_name = "PATH")]
    protolab: Option<PathBuf>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Rounds over all servers (interleaved); the best per server and load is kept, which
    /// filters out bursts of other work on a shared machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Warm-up seconds before each measured window.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// WS: each window also ends after this many messages.
    #[arg(long, default_value_t = 50_000_000)]
    max_msgs: u64,
    /// WS loads as CONNSxBYTES (`k` = KiB), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100x20,10x16k")]
    loads: Vec<Load>,
    /// WS: send text frames instead of binary.
    #[arg(long)]
    text: bool,
    /// HTTP: wrk connections.
    #[arg(long, default_value_t = 50)]
    connections: u32,
    /// Leave a server out, with a note: protolab (all its apps), protolab-ws, protolab-wss,
    /// protolab-http, tungstenite, fastwebsockets, websocat, node-ws, nginx. Repeatable.
    #[arg(long, value_name = "SERVER")]
    skip: Vec<String>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Directory with the Node peer script and its node_modules.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))]
    peers_dir: PathBuf,
}

#[derive(Debug, Args)]
struct LoadgenArgs {
    /// The protolab binary. Default: `protolab` next to this binary.
    #[arg(long, value_name = "PATH")]
    protolab: Option<PathBuf>,
    /// Measured seconds per client.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// HTTP connections (wrk -c, oha -c, protolab -c).
    #[arg(long, default_value_t = 50)]
    http_connections: usize,
    /// WebSocket connections.
    #[arg(long, default_value_t = 50)]
    ws_connections: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Rounds over every client; each client's best round is kept, which filters out bursts
    /// of other work on a shared machine (the HTTP clients swap order every other round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Directory with the Node peers and their node_modules.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))]
    peers_dir: PathBuf,
}

#[derive(Debug, Args)]
struct DecodeArgs {
    /// The protolab binary. Default: `protolab` next to this binary.
    #[arg(long, value_name = "PATH")]
    protolab: Option<PathBuf>,
    /// Seconds of WSS echo load to capture.
    #[arg(long, default_value_t = 4)]
    duration: u64,
    /// Load connections.
    #[arg(long, default_value_t = 20)]
    connections: usize,
    /// Bytes per echo message.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Fail unless the capture holds at least this many packets.
    #[arg(long, default_value_t = 100_000)]
    min_packets: u64,
    /// Timing rounds per decoder (the fastest is kept).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Keep the capture and the key log in DIR.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ProxyArgs {
    #[command(flatten)]
    common: Common,
    /// WebSocket connections for the echo runs (closed loop, one message in flight each).
    #[arg(long, default_value_t = 50)]
    ws_connections: usize,
    /// Echo message size in bytes.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Open-loop rate of the latency run, messages per second (below every target's limit,
    /// so p99 shows added latency rather than queueing).
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// ws:// or wss:// URL (always connects to 127.0.0.1).
    #[arg(long)]
    url: String,
    /// CA certificate PEM to trust for wss.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Connections, one message in flight each.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 20)]
    size: usize,
    /// Send text frames.
    #[arg(long)]
    text: bool,
    /// Warm-up in ms.
    #[arg(long, default_value_t = 1000)]
    warmup_ms: u64,
    /// Measured window in ms.
    #[arg(long, default_value_t = 5000)]
    duration_ms: u64,
    /// The window also ends after this many messages.
    #[arg(long, default_value_t = 50_000_000)]
    max_msgs: u64,
    /// Server pid whose CPU time (process tree) is read around the window.
    #[arg(long)]
    server_pid: Option<u32>,
}

const KNOWN: [&str; 10] = [
    "protolab",
    "protolab-ws",
    "protolab-wss",
    "protolab-http",
    "tungstenite",
    "fastwebsockets",
    "websocat",
    "node-ws",
    "nginx",
    "wrk",
];

fn options(c: Common) -> anyhow::Result<(Options, Option<PathBuf>)> {
    let me = std::env::current_exe().context("finding the protolab-bench binary")?;
    let bin_dir = me
        .parent()
        .context("the bench binary has no directory")?
        .to_path_buf();
    for s in &c.skip {
        if !KNOWN.contains(&s.as_str()) || s == "wrk" {
            anyhow::bail!(
                "--skip {s}: unknown server; one of {}",
                KNOWN[..9].join(", ")
            );
        }
    }
    anyhow::ensure!(c.duration > 0, "--duration must be at least 1 second");
    let opts = Options {
        protolab: c.protolab.unwrap_or_else(|| bin_dir.join("protolab")),
        bin_dir,
        peers_dir: c.peers_dir,
        warmup: Duration::from_secs(c.warmup),
        duration: Duration::from_secs(c.duration),
        max_msgs: c.max_msgs,
        loads: c.loads,
        text: c.text,
        http_connections: c.connections,
        rounds: c.rounds,
        skip: c.skip,
    };
    Ok((opts, c.json))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (common, do_ws, do_http) = match cli.command {
        Command::Client(a) => {
            let report = client::run(client::Config {
                target: a.url.parse()?,
                ca: a.ca,
                connections: a.connections,
                size: a.size,
                text: a.text,
                warmup: Duration::from_millis(a.warmup_ms),
                duration: Duration::from_millis(a.duration_ms),
                max_msgs: a.max_msgs,
                server_pid: a.server_pid,
            })?;
            println!("{}", serde_json::to_string(&report)?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::HubClient(a) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(protolab_bench::fanout_client::run(
                protolab_bench::fanout_client::Config {
                    port: a.port,
                    wire: a.wire,
                    subscribers: a.subscribers,
                    publishes: a.publishes,
                    burst: a.burst,
                    source_net: a.source_net,
                    server_pid: a.server_pid,
                    throughput: a.throughput,
                },
            ))?;
            println!("{}", serde_json::to_string(&report)?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Hub(a) => {
            use protolab_bench::fanout;
            for s in &a.skip {
                if !fanout::SERVERS.contains(&s.as_str()) {
                    eprintln!(
                        "error: --skip {s}: unknown server; one of {}",
                        fanout::SERVERS.join(", ")
                    );
                    return Ok(ExitCode::from(2));
                }
            }
            let me = std::env::current_exe().context("finding the protolab-bench binary")?;
            let subscribers = usize::try_from(a.subscribers)?;
            let burst = a.burst.unwrap_or_else(|| {
                u32::try_from(200_000 / subscribers)
                    .unwrap_or(100)
                    .clamp(5, 100)
            });
            process::install_signal_handler();
            let results = fanout::run(&fanout::FanoutOptions {
                protolab: a.protolab.unwrap_or_else(|| me.with_file_name("protolab")),
                floor_peer: me.with_file_name("bench-peer-fanout-floor"),
                peers_dir: a.peers_dir,
                subscribers,
                publishes: a.publishes,
                burst,
                rounds: a.rounds,
                skip: a.skip,
                throughput_subscribers: a
                    .throughput_subscribers
                    .iter()
                    .filter(|&&n| n > 0)
                    .map(|&n| usize::try_from(n))
                    .collect::<Result<_, _>>()?,
                throughput_publications: a.throughput_publications,
            })?;
            print!("{}", protolab_bench::fanout_report::render(&results));
            if let Some(path) = a.json {
                std::fs::write(&path, serde_json::to_string_pretty(&results)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            return Ok(if protolab_bench::fanout_report::any_failed(&results) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Loadgen(a) => {
            let me = std::env::current_exe().context("finding the protolab-bench binary")?;
            let protolab = a.protolab.unwrap_or_else(|| me.with_file_name("protolab"));
            loadgen::check_protolab(&protolab)?;
            anyhow::ensure!(a.duration > 0, "--duration must be at least 1 second");
            process::install_signal_handler();
            let results = loadgen::run(&loadgen::LoadgenOptions {
                protolab,
                peers_dir: a.peers_dir,
                duration: Duration::from_secs(a.duration),
                http_connections: a.http_connections,
                ws_connections: a.ws_connections,
                size: a.size,
                rounds: a.rounds,
            })?;
            print!("{}", loadgen::render(&results));
            if let Some(path) = a.json {
                std::fs::write(&path, serde_json::to_string_pretty(&results)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let failed = results.rows.iter().filter(|r| r.error.is_some()).count();
            return Ok(if failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Decode(a) => {
            process::install_signal_handler();
            anyhow::ensure!(a.duration > 0, "--duration must be at least 1 second");
            let me = std::env::current_exe().context("finding the protolab-bench binary")?;
            let protolab = a.protolab.unwrap_or_else(|| me.with_file_name("protolab"));
            let results = decode::run(&decode::Config {
                protolab,
                duration: Duration::from_secs(a.duration),
                connections: a.connections,
                size: a.size,
                min_packets: a.min_packets,
                rounds: a.rounds,
                keep: a.keep,
            })?;
            print!("{}", decode::render(&results));
            if let Some(path) = a.json {
                std::fs::write(&path, serde_json::to_string_pretty(&results)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Proxy(p) => {
            let bench = protolab_bench::proxy::ProxyBench {
                connections: p.ws_connections,
                size: p.size,
                rate: p.rate,
                http_connections: p.common.connections,
            };
            anyhow::ensure!(
                bench.connections > 0 && bench.size > 0 && bench.rate > 0.0,
                "--ws-connections, --size and --rate must be positive"
            );
            let (opts, json) = options(p.common)?;
            process::install_signal_handler();
            let results = protolab_bench::proxy::run(&opts, &bench)?;
            print!("{}", protolab_bench::proxy::render(&results, &bench));
            if let Some(path) = json {
                protolab_bench::proxy::write_json(&results, &path)?;
                println!("results written to {}", path.display());
            }
            let failed = results.rows.iter().any(|r| r.error.is_some());
            return Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Ws(c) => (c, true, false),
        Command::Http(c) => (c, false, true),
        Command::All(c) => (c, true, true),
    };
    let (opts, json) = options(common)?;
    process::install_signal_handler();
    let mut results = Results::default();
    let load_start = report::loadavg();
    if do_ws {
        ws::run(&opts, &mut results)?;
    }
    if do_http {
        http::run(&opts, &mut results)?;
    }
    results.loadavg = load_start.zip(report::loadavg());
    print!("{}", report::render(&results));
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    let failed = results
        .ws
        .iter()
        .filter(|r| r.msgs_per_sec.is_none())
        .count()
        + results
            .http
            .iter()
            .filter(|r| r.req_per_sec.is_none())
            .count();
    if failed > 0 {
        eprintln!("error: {failed} run(s) FAILED (see above); leave a server out deliberately with --skip");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

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
use protolab_bench::driver::{self, Load, Options};
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
    /// Idle WebSockets: per server, N idle connections opened, held and closed, `--cycles`
    /// times: RSS per connection, RSS after close, accept rate, each ÷ the best peer.
    Idle(IdleArgs),
    /// Server CPU per message at a fixed offered rate (open loop), per server and size: user
    /// and system µs per echoed message from /proc, median and range over rounds.
    Cpu(CpuArgs),
    /// HTTP/2: protolab's h2 app against nginx (one worker, http2) under h2load, h2c and
    /// TLS, GET of a small body and POST of 1 KiB: req/s median (min–max) and the ratio.
    H2(protolab_bench::h2::H2Args),
    /// gRPC echo, unary and bidirectional streaming: protolab's gRPC app against a plain
    /// tonic server over the same lab.proto and Python grpcio, under one tonic client.
    Grpc(protolab_bench::grpc::GrpcArgs),
    /// Push fan-out: the lab's SSE feed (`/events`) against the WS app's pushes at the same
    /// interval, N subscribers each: deliveries/s, delay p50/p99, bytes and server CPU per
    /// delivery, RSS per subscriber, and SSE ÷ WS.
    SseFanout(protolab_bench::sse_fanout::SseFanoutArgs),
    /// One transport's `sse-fanout` subscribers (the driver runs it pinned to core 1; prints JSON).
    #[command(hide = true)]
    SseFanoutClient(protolab_bench::sse_fanout::SseFanoutClientArgs),
    /// The gRPC load client (the driver runs it pinned to core 1; prints JSON).
    #[command(hide = true)]
    GrpcClient(protolab_bench::grpc_client::GrpcClientArgs),
    /// The WebSocket load client (the driver runs it pinned to core 1; prints JSON).
    #[command(hide = true)]
    Client(ClientArgs),
    /// One cycle of `idle` (the driver runs it pinned to core 1; prints JSON).
    #[command(hide = true)]
    IdleClient(IdleClientArgs),
    /// One fixed-rate run of `cpu` (the driver runs it pinned to core 1; prints JSON).
    #[command(hide = true)]
    RateClient(RateClientArgs),
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

/// Where `idle` and `cpu` find their servers.
#[derive(Debug, Args)]
struct LineupArgs {
    /// The protolab binary (a release build). Default: `protolab` next to this binary.
    #[arg(long, value_name = "PATH")]
    protolab: Option<PathBuf>,
    /// uWebSockets' echo peer. Default: target/uws-peer/uws-echo (scripts/build-uws-peer).
    #[arg(long, value_name = "PATH")]
    uws: Option<PathBuf>,
    /// uWebSockets' echo peer built with OpenSSL. Default: target/uws-peer/uws-echo-tls.
    #[arg(long, value_name = "PATH")]
    uws_tls: Option<PathBuf>,
    /// Directory with the Node peer (and node_modules).
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))]
    peers_dir: PathBuf,
}

impl LineupArgs {
    fn lineup(self) -> anyhow::Result<protolab_bench::lineup::Lineup> {
        use protolab_bench::lineup::{find_uws, Lineup};
        let me = std::env::current_exe().context("finding the protolab-bench binary")?;
        let bin_dir = me
            .parent()
            .context("the bench binary has no directory")?
            .to_path_buf();
        Ok(Lineup {
            protolab: self.protolab.unwrap_or_else(|| bin_dir.join("protolab")),
            uws: find_uws(self.uws, &bin_dir, "uws-echo"),
            uws_tls: find_uws(self.uws_tls, &bin_dir, "uws-echo-tls"),
            peers_dir: self.peers_dir,
            bin_dir,
        })
    }
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    lineup: LineupArgs,
    /// Idle WebSockets per plain server.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    connections: u64,
    /// Idle WSS connections per TLS server (protolab-wss, uws-tls).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    tls_connections: u64,
    /// Open/hold/close cycles per server (a ratchet shows as RSS after close rising).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    cycles: u32,
    /// Leave a server out: protolab-ws, protolab-wss, fastwebsockets, node-ws, uws, uws-tls.
    /// Repeatable.
    #[arg(long, value_name = "SERVER")]
    skip: Vec<String>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CpuArgs {
    #[command(flatten)]
    lineup: LineupArgs,
    /// Offered messages per second over all connections (open loop), one per size or one for
    /// all; keep each below every server's saturation.
    #[arg(long, value_delimiter = ',', default_value = "20000,5000")]
    rate: Vec<f64>,
    /// Connections.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: u64,
    /// Message sizes, comma-separated (`k` = KiB).
    #[arg(long, value_delimiter = ',', default_value = "20,16k", value_parser = parse_size)]
    sizes: Vec<usize>,
    /// Measured seconds per run (CPU is counted in 10 ms ticks: long windows resolve it).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    duration: u64,
    /// Rounds over every server (median and min–max are printed).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Leave a server out: protolab-ws, fastwebsockets, node-ws, uws. Repeatable.
    #[arg(long, value_name = "SERVER")]
    skip: Vec<String>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// `20`, `16k` (KiB): 1 byte to 1 MiB.
fn parse_size(text: &str) -> Result<usize, String> {
    let (digits, unit) = match text.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1024),
        None => (text, 1),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 20 or 16k"))?;
    let bytes = n.saturating_mul(unit);
    if (1..=1 << 20).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!("`{text}`: sizes go from 1 byte to 1024k"))
    }
}

#[derive(Debug, Args)]
struct IdleClientArgs {
    #[arg(long)]
    port: u16,
    #[arg(long)]
    path: String,
    /// CA to trust; speaks TLS when given.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long)]
    connections: usize,
    #[arg(long)]
    server_pid: u32,
    #[arg(long)]
    source_net: u8,
}

#[derive(Debug, Args)]
struct RateClientArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    connections: usize,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    rate: f64,
    #[arg(long)]
    duration_ms: u64,
    #[arg(long)]
    server_pid: u32,
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
        Command::IdleClient(a) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(protolab_bench::idle_client::run(
                protolab_bench::idle_client::Config {
                    port: a.port,
                    path: a.path,
                    tls_ca: a.ca,
                    connections: a.connections,
                    server_pid: a.server_pid,
                    source_net: a.source_net,
                },
            ))?;
            println!("{}", serde_json::to_string(&report)?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::RateClient(a) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let sample = runtime.block_on(protolab_bench::cpu_rate::client(
                protolab_bench::cpu_rate::ClientConfig {
                    url: a.url,
                    connections: a.connections,
                    size: a.size,
                    rate: a.rate,
                    duration: Duration::from_millis(a.duration_ms),
                    server_pid: a.server_pid,
                },
            ))?;
            println!("{}", serde_json::to_string(&sample)?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Idle(a) => {
            use protolab_bench::{idle, lineup};
            if let Some(usage) = driver::unknown_skip(&a.skip, &lineup::SERVERS) {
                return Ok(usage);
            }
            process::install_signal_handler();
            let results = idle::run(&idle::IdleOptions {
                lineup: a.lineup.lineup()?,
                connections: usize::try_from(a.connections)?,
                tls_connections: usize::try_from(a.tls_connections)?,
                cycles: a.cycles,
                skip: a.skip,
            })?;
            print!("{}", idle::render(&results));
            report::write_json(a.json.as_deref(), &results)?;
            return Ok(if idle::any_failed(&results) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Cpu(a) => {
            use protolab_bench::cpu_rate;
            if let Some(usage) = driver::unknown_skip(&a.skip, &cpu_rate::SERVERS) {
                return Ok(usage);
            }
            if a.rate.iter().any(|r| !(r.is_finite() && *r > 0.0))
                || (a.rate.len() != 1 && a.rate.len() != a.sizes.len())
            {
                eprintln!(
                    "error: --rate takes positive messages per second, one for every size of --sizes or one for all"
                );
                return Ok(ExitCode::from(2));
            }
            let loads = a
                .sizes
                .iter()
                .enumerate()
                .filter_map(|(i, &size)| Some((size, *a.rate.get(i).or(a.rate.first())?)))
                .collect();
            process::install_signal_handler();
            let results = cpu_rate::run(&cpu_rate::RateOptions {
                lineup: a.lineup.lineup()?,
                connections: usize::try_from(a.connections)?,
                loads,
                duration: Duration::from_secs(a.duration),
                rounds: a.rounds,
                skip: a.skip,
            })?;
            print!("{}", cpu_rate::render(&results));
            report::write_json(a.json.as_deref(), &results)?;
            return Ok(if cpu_rate::any_failed(&results) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
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
            if let Some(usage) = driver::unknown_skip(&a.skip, &fanout::SERVERS) {
                return Ok(usage);
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
            report::write_json(a.json.as_deref(), &results)?;
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
            report::write_json(a.json.as_deref(), &results)?;
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
            report::write_json(a.json.as_deref(), &results)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Grpc(a) => return protolab_bench::grpc::main(&a),
        Command::GrpcClient(a) => return protolab_bench::grpc_client::main(&a),
        Command::H2(a) => return protolab_bench::h2::main(&a),
        Command::SseFanout(a) => return protolab_bench::sse_fanout::main(&a),
        Command::SseFanoutClient(a) => return protolab_bench::sse_fanout::client_main(&a),
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
            report::write_json(json.as_deref(), &results)?;
            if let Some(path) = json {
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
    let load = report::LoadWatch::start();
    if do_ws {
        ws::run(&opts, &mut results)?;
    }
    if do_http {
        http::run(&opts, &mut results)?;
    }
    results.loadavg = load.end();
    print!("{}", report::render(&results));
    report::write_json(json.as_deref(), &results)?;
    if let Some(path) = json {
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

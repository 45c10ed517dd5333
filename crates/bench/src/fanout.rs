//! `protolab-bench hub`: fan-out of one publication to N idle subscribers, protolab's hub
//! (its socket.io endpoint, its `/connection/ws`, its `/connection/sse`, and `/connection/ws`
//! with `--broker redis://` on a redis-server the bench starts) against the story's own stack
//! (a Flask-SocketIO app, gevent mode) and a Node `socket.io` 4 server, in the same run; then
//! publish throughput to 1 and to 1,000 subscribers on a fresh server each.
//!
//! Every server runs pinned to core 0 and publishes on `GET /notifs?msg=`; the subscriber load
//! ([`crate::fanout_client`], this binary's hidden `hub-client` subcommand) runs pinned to
//! core 1. Rounds interleave the servers; the table shows each figure's median over rounds and its
//! range, and a ratio whose ranges overlap is called a tie within noise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::driver::Tool;
use crate::fanout_client::{Report, Wire, PHASE_LIMIT};
use crate::process::{find_in_path, free_port, run_pinned_client, Ready, Server, TempDir};

/// The servers, in the order they run.
pub const SERVERS: [&str; 6] = [
    "hub-socketio",
    "hub-ws",
    "hub-sse",
    "hub-ws-redis",
    "flask-socketio",
    "node-socketio",
];
/// protolab's own servers, compared with the peers.
const OURS: [&str; 4] = ["hub-socketio", "hub-ws", "hub-sse", "hub-ws-redis"];

/// Targets from issue 12.
const P99_TARGET_MS: f64 = 50.0;
const RSS_TARGET_BYTES: f64 = 8.0 * 1024.0;
const VS_FLASK_TARGET: f64 = 10.0;
const VS_NODE_TARGET: f64 = 2.0;

/// Options of `protolab-bench hub`.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// The protolab binary (release build).
    pub protolab: PathBuf,
    /// `crates/bench/peers`.
    pub peers_dir: PathBuf,
    /// Idle subscribers per server.
    pub subscribers: usize,
    /// Publications of the latency phase (one per second).
    pub publishes: u32,
    /// Publications of the burst phase.
    pub burst: u32,
    /// Rounds over every server.
    pub rounds: u32,
    /// Servers left out.
    pub skip: Vec<String>,
    /// Subscriber counts of the publish throughput runs.
    pub throughput_subscribers: Vec<usize>,
    /// Publications of each throughput run; `None`: 200,000 deliveries' worth, 100 to 5,000.
    pub throughput_publications: Option<u32>,
}

/// One server's run in one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// Server name from [`SERVERS`].
    pub server: String,
    /// Round, from 1.
    pub round: u32,
    /// Subscribers of the run.
    #[serde(default)]
    pub subscribers: usize,
    /// A publish throughput run (else the fan-out run).
    #[serde(default)]
    pub throughput: bool,
    /// What the load measured, or why it failed.
    pub report: Option<Report>,
    /// The failure.
    pub error: Option<String>,
}

/// Everything one `protolab-bench hub` measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FanoutResults {
    /// Subscribers per server.
    pub subscribers: usize,
    /// Every run.
    pub runs: Vec<Run>,
    /// Notes (skips, file-descriptor limits, incomplete deliveries).
    pub notes: Vec<String>,
}

struct Spec {
    program: PathBuf,
    args: Vec<String>,
    ready: Ready,
    wire: Wire,
}

fn spec(name: &str, opts: &FanoutOptions, port: u16) -> anyhow::Result<Spec> {
    let port = port.to_string();
    Ok(match name {
        "hub-socketio" | "hub-ws" | "hub-sse" | "hub-ws-redis" => {
            anyhow::ensure!(
                opts.protolab.is_file(),
                "protolab binary {} not found: build it with `cargo build --release -p protolab`, \
                 point at it with --protolab PATH, or leave it out with --skip {name}",
                opts.protolab.display()
            );
            let most = opts
                .throughput_subscribers
                .iter()
                .copied()
                .fold(opts.subscribers, usize::max);
            let max_connections = (most + 1000).to_string();
            Spec {
                program: opts.protolab.clone(),
                args: [
                    "hub",
                    "--listen",
                    "127.0.0.1",
                    "--port",
                    &port,
                    "--max-connections",
                    &max_connections,
                ]
                .map(String::from)
                .into(),
                ready: Ready::Line("ready"),
                wire: match name {
                    "hub-ws" | "hub-ws-redis" => Wire::HubWs,
                    "hub-sse" => Wire::HubSse,
                    _ => Wire::SocketIo,
                },
            }
        }
        "flask-socketio" => {
            let python = find_in_path("python3").context(
                "python3 not found: apt-get install -y python3, or --skip flask-socketio",
            )?;
            let check = Command::new(&python)
                .args(["-c", "import flask_socketio, gevent, geventwebsocket"])
                .output()
                .context("running python3")?;
            anyhow::ensure!(
                check.status.success(),
                "Flask-SocketIO with gevent is not installed: pip install -r {}, or --skip flask-socketio",
                opts.peers_dir.join("requirements.txt").display()
            );
            Spec {
                program: python,
                args: vec![
                    opts.peers_dir
                        .join("flask_socketio_fanout.py")
                        .display()
                        .to_string(),
                    "--port".into(),
                    port,
                ],
                ready: Ready::Line("listening"),
                wire: Wire::SocketIo,
            }
        }
        "node-socketio" => {
            let node = Tool::Node.find(Some("node-socketio"))?;
            anyhow::ensure!(
                opts.peers_dir
                    .join("node_modules/socket.io/package.json")
                    .is_file(),
                "the `socket.io` npm package is not installed: run `npm ci --prefix {}`, or --skip node-socketio",
                opts.peers_dir.display()
            );
            Spec {
                program: node,
                args: vec![
                    opts.peers_dir
                        .join("socketio-fanout-server.js")
                        .display()
                        .to_string(),
                    "--port".into(),
                    port,
                ],
                ready: Ready::Line("listening"),
                wire: Wire::SocketIo,
            }
        }
        other => anyhow::bail!("unknown server `{other}`: one of {}", SERVERS.join(", ")),
    })
}

/// Publications of a throughput run to `subscribers`: 200,000 deliveries' worth, 100 to 5,000.
fn throughput_publications(subscribers: usize) -> u32 {
    u32::try_from(200_000 / subscribers.max(1))
        .unwrap_or(5000)
        .clamp(100, 5000)
}

/// A redis-server for `hub-ws-redis`, on core 0 with the hub, with nothing saved to disk.
fn start_redis(dir: &Path) -> anyhow::Result<(Server, u16)> {
    let redis = find_in_path("redis-server").context(
        "redis-server not found: apt-get install -y redis-server, or --skip hub-ws-redis",
    )?;
    let port = free_port()?;
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
    ]
    .map(String::from)
    .into();
    let server = Server::start("redis-server", &redis, &args, dir, port, Ready::Port)?;
    Ok((server, port))
}

/// The open-files limit a side needs for `subscribers` sockets, with room for the rest.
fn nofile_needed(subscribers: usize) -> usize {
    subscribers + 1024
}

/// Whether `prlimit` can set `limit` open files (root, or a hard limit already that high).
fn can_raise_nofile(prlimit: &Path, limit: usize) -> bool {
    Command::new(prlimit)
        .arg(format!("--nofile={limit}:{limit}"))
        .arg("true")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs every server that was not skipped, `rounds` times interleaved.
pub fn run(opts: &FanoutOptions) -> anyhow::Result<FanoutResults> {
    Tool::Taskset.find(None)?;
    let me = std::env::current_exe().context("finding the protolab-bench binary")?;
    let dir = TempDir::new("protolab-bench-hub")?;
    let mut results = FanoutResults {
        subscribers: opts.subscribers,
        ..FanoutResults::default()
    };
    let active: Vec<&str> = SERVERS
        .iter()
        .copied()
        .filter(|s| !opts.skip.iter().any(|k| k == s))
        .collect();
    for s in SERVERS.iter().filter(|s| !active.contains(s)) {
        results.notes.push(format!("{s} skipped (--skip)"));
    }
    // A missing peer fails here, in seconds, with the command that installs it.
    for name in &active {
        spec(name, opts, 0)?;
        if *name == "hub-ws-redis" {
            find_in_path("redis-server").context(
                "redis-server not found: apt-get install -y redis-server, or --skip hub-ws-redis",
            )?;
        }
    }
    let most = opts
        .throughput_subscribers
        .iter()
        .copied()
        .fold(opts.subscribers, usize::max);
    let limit = nofile_needed(most);
    let prlimit = find_in_path("prlimit")
        .filter(|p| can_raise_nofile(p, limit))
        .map(Some)
        .unwrap_or_else(|| {
            results.notes.push(format!(
                "could not raise the open-files limit to {limit} (prlimit missing, or no \
                 CAP_SYS_RESOURCE): each side holds at most its hard limit (`ulimit -Hn`) less a \
                 few; run as root, or pass --subscribers below that limit"
            ));
            None
        });
    // Fresh source addresses every run, so no run meets the last one's TIME_WAIT sockets.
    let mut source_net = (std::process::id() % 100) as u8 + 1;
    let mut plan: Vec<(usize, bool)> = vec![(opts.subscribers, false)];
    plan.extend(opts.throughput_subscribers.iter().map(|&n| (n, true)));
    for round in 1..=opts.rounds {
        for name in &active {
            for &(subscribers, throughput) in &plan {
                source_net = source_net.wrapping_add(1).max(1);
                let what = if throughput {
                    format!("publish throughput to {subscribers}")
                } else {
                    format!("fan-out to {subscribers}")
                };
                eprintln!("hub: round {round}/{}: {name}, {what}", opts.rounds);
                let load = Load {
                    subscribers,
                    throughput: throughput.then(|| {
                        opts.throughput_publications
                            .unwrap_or_else(|| throughput_publications(subscribers))
                    }),
                    source_net,
                };
                let outcome = run_one(opts, name, &me, dir.path(), prlimit.as_deref(), &load);
                let run = match outcome {
                    Ok(report) => {
                        if throughput {
                            eprintln!(
                                "hub: {name:<15} {} publications/s",
                                fmt(report.publications_per_sec, 0)
                            );
                        } else {
                            eprintln!(
                                "hub: {name:<15} p50 {} p99 {} ms, RSS/sub {}, deliveries/CPU-s {}",
                                fmt(report.p50_ms, 1),
                                fmt(report.p99_ms, 1),
                                fmt(report.rss_per_subscriber.map(|b| b / 1024.0), 1),
                                fmt(report.deliveries_per_cpu_sec, 0)
                            );
                        }
                        Run {
                            server: (*name).to_owned(),
                            round,
                            subscribers,
                            throughput,
                            report: Some(report),
                            error: None,
                        }
                    }
                    Err(err) => {
                        eprintln!("error: {name}: {what}: {err:#}");
                        Run {
                            server: (*name).to_owned(),
                            round,
                            subscribers,
                            throughput,
                            report: None,
                            error: Some(format!("{what}: {err:#}")),
                        }
                    }
                };
                results.runs.push(run);
            }
        }
    }
    Ok(results)
}

/// What one run loads a server with.
struct Load {
    subscribers: usize,
    /// Publications of a throughput run; `None` for the fan-out run.
    throughput: Option<u32>,
    source_net: u8,
}

fn run_one(
    opts: &FanoutOptions,
    name: &str,
    me: &Path,
    dir: &Path,
    prlimit: Option<&Path>,
    load: &Load,
) -> anyhow::Result<Report> {
    let port = free_port()?;
    let mut spec = spec(name, opts, port)?;
    // A fresh Redis per run: no run sees another's channels or history.
    let redis = if name == "hub-ws-redis" {
        let (redis, redis_port) = start_redis(dir)?;
        spec.args.push("--broker".into());
        spec.args.push(format!("redis://127.0.0.1:{redis_port}/0"));
        Some(redis)
    } else {
        None
    };
    let server = Server::start(name, &spec.program, &spec.args, dir, port, spec.ready)?;
    let limit = nofile_needed(load.subscribers);
    if let Some(prlimit) = prlimit {
        let raised = Command::new(prlimit)
            .args(["--pid", &server.pid().to_string()])
            .arg(format!("--nofile={limit}:{limit}"))
            .status()
            .context("running prlimit")?;
        anyhow::ensure!(
            raised.success(),
            "prlimit could not raise {name}'s open-files limit"
        );
    }
    let wire = match spec.wire {
        Wire::SocketIo => "socket-io",
        Wire::HubWs => "hub-ws",
        Wire::HubSse => "hub-sse",
    };
    let mut args: Vec<String> = vec![
        me.display().to_string(),
        "hub-client".into(),
        "--port".into(),
        port.to_string(),
        "--wire".into(),
        wire.into(),
        "--subscribers".into(),
        load.subscribers.to_string(),
        "--publishes".into(),
        opts.publishes.to_string(),
        "--burst".into(),
        opts.burst.to_string(),
        "--source-net".into(),
        load.source_net.to_string(),
        "--server-pid".into(),
        server.pid().to_string(),
    ];
    if let Some(publications) = load.throughput {
        args.extend(["--throughput".into(), publications.to_string()]);
    }
    let program = match prlimit {
        Some(p) => {
            args.insert(0, format!("--nofile={limit}:{limit}"));
            p.to_path_buf()
        }
        None => PathBuf::from(args.remove(0)),
    };
    // Three bounded phases, plus the time to start and stop.
    let out = run_pinned_client(&program, &args, PHASE_LIMIT * 3 + Duration::from_secs(30))
        .map_err(|e| anyhow::anyhow!("{e:#}{}", server.log_tail()))?;
    drop(server);
    drop(redis);
    serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("the client printed `{}`", out.stdout.trim()))
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Median and range of one figure over a server's rounds.
#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(values: impl Iterator<Item = f64>) -> Option<Spread> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[v.len() - 1],
    })
}

/// Which runs a figure is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The fan-out run.
    Fanout,
    /// The throughput run to this many subscribers.
    Throughput(usize),
}

fn runs_of<'a>(
    results: &'a FanoutResults,
    server: &'a str,
    kind: Kind,
) -> impl Iterator<Item = &'a Run> {
    results.runs.iter().filter(move |r| {
        r.server == server
            && match kind {
                Kind::Fanout => !r.throughput,
                Kind::Throughput(n) => r.throughput && r.subscribers == n,
            }
    })
}

fn figure(
    results: &FanoutResults,
    server: &str,
    kind: Kind,
    f: impl Fn(&Report) -> Option<f64>,
) -> Option<Spread> {
    spread(
        runs_of(results, server, kind)
            .filter_map(|r| r.report.as_ref())
            .filter_map(f),
    )
}

fn show(s: Option<Spread>, decimals: usize) -> String {
    match s {
        None => "-".to_owned(),
        Some(s) if s.min == s.max => format!("{:.decimals$}", s.median),
        Some(s) => format!(
            "{:.decimals$} ({:.decimals$}–{:.decimals$})",
            s.median, s.min, s.max
        ),
    }
}

/// `a / b` of medians, and whether the two ranges overlap (a tie within noise).
fn ratio(a: Spread, b: Spread) -> (f64, bool) {
    (a.median / b.median, a.min <= b.max && b.min <= a.max)
}

/// A ratio against a goal: met, not met, or a tie within noise.
fn verdict(ratio: f64, tie: bool, goal: f64) -> &'static str {
    if tie {
        "ties within noise"
    } else if ratio >= goal {
        "met"
    } else {
        "NOT met"
    }
}

/// The table: per server the medians (and ranges) over rounds, then the targets and
/// the ratios against the peers.
pub fn render(results: &FanoutResults) -> String {
    let mut out = String::new();
    let n = results.subscribers;
    let throughput_counts: Vec<usize> = {
        let mut counts: Vec<usize> = results
            .runs
            .iter()
            .filter(|r| r.throughput)
            .map(|r| r.subscribers)
            .collect();
        counts.sort_unstable();
        counts.dedup();
        counts
    };
    out.push_str(&format!(
        "\nhub fan-out: {n} idle subscribers per server (server on core 0, subscribers on core 1); median (range) over rounds\n"
    ));
    out.push_str(&format!(
        "{:<15} {:>11} {:>18} {:>20} {:>18} {:>24}",
        "server", "connected", "p50 ms", "p99 ms", "RSS/sub KiB", "deliveries/CPU-s"
    ));
    for count in &throughput_counts {
        out.push_str(&format!(" {:>20}", format!("pub/s to {count}")));
    }
    out.push_str(&format!(" {:>9}\n", "received"));
    let mut failures = Vec::new();
    for server in SERVERS {
        let runs: Vec<&Run> = results.runs.iter().filter(|r| r.server == server).collect();
        if runs.is_empty() {
            continue;
        }
        for run in runs.iter().filter(|r| r.report.is_none()) {
            failures.push(format!(
                "{server} round {}: FAILED: {}",
                run.round,
                run.error.as_deref().unwrap_or("")
            ));
        }
        let reports: Vec<&Report> = runs.iter().filter_map(|r| r.report.as_ref()).collect();
        if reports.is_empty() {
            out.push_str(&format!("{server:<15} FAILED (see below)\n"));
            continue;
        }
        let connected = runs_of(results, server, Kind::Fanout)
            .filter_map(|r| r.report.as_ref())
            .map(|r| r.connected)
            .min()
            .unwrap_or(0);
        let expected: u64 = reports
            .iter()
            .map(|r| r.latency_expected + r.burst_expected + r.throughput_expected)
            .sum();
        let received: u64 = reports
            .iter()
            .map(|r| r.latency_received + r.burst_received + r.throughput_received)
            .sum();
        let pct = if expected > 0 {
            100.0 * received as f64 / expected as f64
        } else {
            0.0
        };
        let fanout = |f: fn(&Report) -> Option<f64>| figure(results, server, Kind::Fanout, f);
        out.push_str(&format!(
            "{server:<15} {:>11} {:>18} {:>20} {:>18} {:>24}",
            format!("{connected}/{n}"),
            show(fanout(|r| r.p50_ms), 1),
            show(fanout(|r| r.p99_ms), 1),
            show(fanout(|r| r.rss_per_subscriber.map(|b| b / 1024.0)), 2),
            show(fanout(|r| r.deliveries_per_cpu_sec), 0),
        ));
        for &count in &throughput_counts {
            let pubs = figure(results, server, Kind::Throughput(count), |r| {
                r.publications_per_sec
            });
            out.push_str(&format!(" {:>20}", show(pubs, 0)));
        }
        out.push_str(&format!(" {pct:>8.1}%\n"));
    }

    out.push_str("\ntargets (issue 12):\n");
    let dps = |s: &str| figure(results, s, Kind::Fanout, |r| r.deliveries_per_cpu_sec);
    for ours in OURS {
        for (peer, goal) in [
            ("flask-socketio", VS_FLASK_TARGET),
            ("node-socketio", VS_NODE_TARGET),
        ] {
            if let (Some(a), Some(b)) = (dps(ours), dps(peer)) {
                let (ratio, tie) = ratio(a, b);
                out.push_str(&format!(
                    "  deliveries/CPU-s {ours} vs {peer}: {ratio:.2}× (goal ≥ {goal}×): {}\n",
                    verdict(ratio, tie, goal)
                ));
            }
        }
        if let Some(p99) = figure(results, ours, Kind::Fanout, |r| r.p99_ms) {
            let met = if p99.median <= P99_TARGET_MS {
                "met"
            } else {
                "NOT met"
            };
            let at = if n == 20_000 {
                String::new()
            } else {
                format!(" (measured at {n}; the target is at 20000: --subscribers 20000)")
            };
            out.push_str(&format!(
                "  p99 {ours}: {:.1} ms (goal ≤ {P99_TARGET_MS} ms){at}: {met}\n",
                p99.median
            ));
        }
        if let Some(rss) = figure(results, ours, Kind::Fanout, |r| r.rss_per_subscriber) {
            let met = if rss.median <= RSS_TARGET_BYTES {
                "met"
            } else {
                "NOT met"
            };
            out.push_str(&format!(
                "  RSS per idle subscriber {ours}: {:.2} KiB (goal ≤ 8 KiB): {met}\n",
                rss.median / 1024.0
            ));
        }
    }

    out.push_str("\npublish throughput (publications/s until the last delivery):\n");
    for &count in &throughput_counts {
        let pubs = |s: &str| {
            figure(results, s, Kind::Throughput(count), |r| {
                r.publications_per_sec
            })
        };
        for ours in OURS {
            for peer in ["flask-socketio", "node-socketio"] {
                if let (Some(a), Some(b)) = (pubs(ours), pubs(peer)) {
                    let (ratio, tie) = ratio(a, b);
                    let tie = if tie { ": ties within noise" } else { "" };
                    out.push_str(&format!(
                        "  to {count}: {ours} vs {peer}: {ratio:.2}×{tie}\n"
                    ));
                }
            }
        }
    }

    let with_redis = results.runs.iter().any(|r| r.server == "hub-ws-redis");
    if with_redis {
        out.push_str("\nin-memory against Redis (hub-ws / hub-ws-redis):\n");
    }
    let mut pairs: Vec<(String, Option<Spread>, Option<Spread>, bool)> = vec![
        (
            "p50 ms".into(),
            figure(results, "hub-ws", Kind::Fanout, |r| r.p50_ms),
            figure(results, "hub-ws-redis", Kind::Fanout, |r| r.p50_ms),
            false,
        ),
        (
            "p99 ms".into(),
            figure(results, "hub-ws", Kind::Fanout, |r| r.p99_ms),
            figure(results, "hub-ws-redis", Kind::Fanout, |r| r.p99_ms),
            false,
        ),
        (
            "deliveries/CPU-s".into(),
            dps("hub-ws"),
            dps("hub-ws-redis"),
            true,
        ),
    ];
    for &count in &throughput_counts {
        let pubs = |s: &str| {
            figure(results, s, Kind::Throughput(count), |r| {
                r.publications_per_sec
            })
        };
        pairs.push((
            format!("pub/s to {count}"),
            pubs("hub-ws"),
            pubs("hub-ws-redis"),
            true,
        ));
    }
    for (what, memory, redis, higher_is_better) in pairs {
        if let (Some(memory), Some(redis)) = (memory, redis) {
            let (ratio, tie) = ratio(memory, redis);
            let reading = if tie {
                "ties within noise".to_owned()
            } else if (ratio > 1.0) == higher_is_better {
                "in-memory ahead".to_owned()
            } else {
                "Redis ahead".to_owned()
            };
            out.push_str(&format!(
                "  {what}: {:.1} / {:.1} = {ratio:.2}× ({reading})\n",
                memory.median, redis.median
            ));
        }
    }
    if with_redis {
        out.push_str(
            "  (the hub's CPU only: redis-server runs on core 0 too, its CPU is not counted)\n",
        );
    }

    for r in results.runs.iter().filter_map(|r| {
        r.report
            .as_ref()
            .filter(|rep| {
                rep.failed > 0
                    || rep.latency_received + rep.burst_received + rep.throughput_received
                        < rep.latency_expected + rep.burst_expected + rep.throughput_expected
            })
            .map(|rep| (r, rep))
    }) {
        let (run, rep) = r;
        out.push_str(&format!(
            "note: {} round {} ({} subscribers{}): {} subscriber(s) failed or were dropped{}; {} of {} deliveries arrived within the phase limits\n",
            run.server,
            run.round,
            run.subscribers,
            if run.throughput { ", throughput" } else { "" },
            rep.failed,
            rep.first_error
                .as_ref()
                .map_or_else(String::new, |e| format!(" (first: {e})")),
            rep.latency_received + rep.burst_received + rep.throughput_received,
            rep.latency_expected + rep.burst_expected + rep.throughput_expected
        ));
    }
    for run in results.runs.iter().filter(|r| !r.throughput) {
        if let Some(rep) = run
            .report
            .as_ref()
            .filter(|r| r.burst_server_cpu_secs < 0.5)
        {
            out.push_str(&format!(
                "note: {} round {}: the burst took {:.2} server CPU-s; /proc counts 10 ms ticks, \
                 so deliveries/CPU-s is coarse: raise --burst\n",
                run.server, run.round, rep.burst_server_cpu_secs
            ));
        }
    }
    for failure in failures {
        out.push_str(&format!("note: {failure}\n"));
    }
    for note in &results.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

/// Whether any server failed outright.
pub fn any_failed(results: &FanoutResults) -> bool {
    results.runs.iter().any(|r| r.report.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_runs_are_bounded() {
        assert_eq!(throughput_publications(1), 5000);
        assert_eq!(throughput_publications(1000), 200);
        assert_eq!(throughput_publications(60_000), 100);
        assert_eq!(throughput_publications(0), 5000);
    }

    #[test]
    fn ratios_and_verdicts() {
        let s = |median, min, max| Spread { median, min, max };
        let (r, tie) = ratio(s(10.0, 9.0, 11.0), s(5.0, 4.0, 6.0));
        assert_eq!((r, tie), (2.0, false));
        assert_eq!(verdict(r, tie, 2.0), "met");
        assert_eq!(verdict(r, tie, 3.0), "NOT met");
        let (r, tie) = ratio(s(10.0, 9.0, 11.0), s(9.5, 8.0, 9.5));
        assert!(tie);
        assert_eq!(verdict(r, tie, 2.0), "ties within noise");
    }

    #[test]
    fn spread_is_median_and_range() {
        let s = spread([3.0, 1.0, 2.0].into_iter()).expect("values");
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = spread([4.0, 1.0].into_iter()).expect("values");
        assert_eq!(s.median, 2.5);
        assert!(spread(std::iter::empty()).is_none());
    }
}

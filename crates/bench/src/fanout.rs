//! `protolab-bench hub`: fan-out of one publication to N idle subscribers, protolab's hub
//! (its socket.io endpoint, its `/connection/ws`, its `/connection/sse`, and `/connection/ws`
//! with `--broker redis://` on a redis-server the bench starts) against the story's own stack
//! (a Flask-SocketIO app, gevent mode) and a Node `socket.io` 4 server, in the same run; then
//! publish throughput to 1 and to 1,000 subscribers on a fresh server each.
//!
//! `ws-floor` (`bench-peer-fanout-floor`) is the kernel floor: a WebSocket server that does
//! nothing but one `write(2)` of one prebuilt frame per subscriber, speaking the hub's
//! `/connection/ws`. What it cannot reach, no server on this machine can; the table states
//! every protolab server as a ratio to it ([`crate::fanout_report`]).
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
pub const SERVERS: [&str; 7] = [
    "hub-socketio",
    "hub-ws",
    "hub-sse",
    "hub-ws-redis",
    "ws-floor",
    "flask-socketio",
    "node-socketio",
];
/// protolab's own servers, compared with the peers.
pub(crate) const OURS: [&str; 4] = ["hub-socketio", "hub-ws", "hub-sse", "hub-ws-redis"];

/// Options of `protolab-bench hub`.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// The protolab binary (release build).
    pub protolab: PathBuf,
    /// The `bench-peer-fanout-floor` binary (release build), the `ws-floor` server.
    pub floor_peer: PathBuf,
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
    /// Load average (1 min) at the start and the end: the machine may be shared.
    pub loadavg: Option<(f64, f64)>,
}

struct Spec {
    program: PathBuf,
    args: Vec<String>,
    ready: Ready,
    wire: Wire,
}

fn spec(name: &str, opts: &FanoutOptions, port: u16) -> anyhow::Result<Spec> {
    let port = port.to_string();
    let most = opts
        .throughput_subscribers
        .iter()
        .copied()
        .fold(opts.subscribers, usize::max);
    let max_connections = (most + 1000).to_string();
    Ok(match name {
        "ws-floor" => {
            anyhow::ensure!(
                opts.floor_peer.is_file(),
                "{} not found: build it with `cargo build --release -p protolab-bench`, \
                 or leave it out with --skip ws-floor",
                opts.floor_peer.display()
            );
            Spec {
                program: opts.floor_peer.clone(),
                args: ["--port", &port, "--max-connections", &max_connections]
                    .map(String::from)
                    .into(),
                ready: Ready::Line("listening"),
                wire: Wire::HubWs,
            }
        }
        "hub-socketio" | "hub-ws" | "hub-sse" | "hub-ws-redis" => {
            anyhow::ensure!(
                opts.protolab.is_file(),
                "protolab binary {} not found: build it with `cargo build --release -p protolab`, \
                 point at it with --protolab PATH, or leave it out with --skip {name}",
                opts.protolab.display()
            );
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
pub(crate) fn nofile_needed(subscribers: usize) -> usize {
    subscribers + 1024
}

/// Whether `prlimit` can set `limit` open files (root, or a hard limit already that high).
pub(crate) fn can_raise_nofile(prlimit: &Path, limit: usize) -> bool {
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
    let load = crate::report::LoadWatch::start();
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
    results.loadavg = load.end();
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
}

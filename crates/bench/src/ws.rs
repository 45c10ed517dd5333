//! `protolab-bench ws`: every WebSocket server under every load, one at a time, server pinned
//! to core 0 and the load client (this binary's `client` subcommand) pinned to core 1.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::client::Report;
use crate::driver::{printed_url, protolab_bin, workspace_bin, Load, Options, Tool};
use crate::process::{free_port, run_pinned_client, Ready, Server, TempDir};
use crate::report::{best_rows, Results, Target, WsRow};

/// The WebSocket servers, in the order they run.
pub const SERVERS: [&str; 6] = [
    "protolab-ws",
    "protolab-wss",
    "tungstenite",
    "fastwebsockets",
    "websocat",
    "node-ws",
];

/// How to start one server.
struct Spec {
    program: PathBuf,
    args: Vec<String>,
    ready: Ready,
    /// URL when the server does not print one.
    url: String,
    /// CA to trust (wss).
    ca: Option<PathBuf>,
    /// Scheme of the URL the server prints, if it prints one.
    printed: Option<&'static str>,
}

fn spec(name: &str, opts: &Options, port: u16, dir: &TempDir) -> anyhow::Result<Spec> {
    let plain = |program, args: Vec<String>, ready| Spec {
        program,
        args,
        ready,
        url: format!("ws://127.0.0.1:{port}/"),
        ca: None,
        printed: None,
    };
    let port_arg = port.to_string();
    Ok(match name {
        "protolab-ws" => Spec {
            program: protolab_bin(opts)?,
            args: [
                "up",
                "--bind",
                "127.0.0.1",
                "--only",
                "ws",
                "--ws-port",
                &port_arg,
            ]
            .map(String::from)
            .into(),
            ready: Ready::Line("ready"),
            url: format!("ws://127.0.0.1:{port}/ws"),
            ca: None,
            printed: Some("ws://"),
        },
        "protolab-wss" => {
            let home = dir.path().join("protolab-home");
            let home_arg = home.display().to_string();
            Spec {
                program: protolab_bin(opts)?,
                args: [
                    "--home",
                    &home_arg,
                    "up",
                    "--bind",
                    "127.0.0.1",
                    "--only",
                    "wss",
                    "--wss-port",
                    &port_arg,
                ]
                .map(String::from)
                .into(),
                ready: Ready::Line("ready"),
                url: format!("wss://127.0.0.1:{port}/ws"),
                ca: Some(home.join("ca.pem")),
                printed: Some("wss://"),
            }
        }
        "tungstenite" => plain(
            workspace_bin(opts, "bench-peer-tungstenite")?,
            vec!["--port".into(), port_arg],
            Ready::Line("listening"),
        ),
        "fastwebsockets" => plain(
            workspace_bin(opts, "bench-peer-fastwebsockets")?,
            vec!["--port".into(), port_arg],
            Ready::Line("listening"),
        ),
        "websocat" => plain(
            Tool::Websocat.find(Some("websocat"))?,
            // -E (--exit-on-eof) closes each connection once its client is gone, as in PEERS.md;
            // `mirror:` echoes bytes and websocat frames them as one type, so --binary or --text
            // must match what the client sends.
            vec![
                "-E".into(),
                if opts.text { "--text" } else { "--binary" }.into(),
                format!("ws-l:127.0.0.1:{port}"),
                "mirror:".into(),
            ],
            Ready::Port,
        ),
        "node-ws" => {
            let node = Tool::Node.find(Some("node-ws"))?;
            let script = opts.peers_dir.join("ws-echo-server.js");
            let module = opts.peers_dir.join("node_modules/ws/package.json");
            if !module.is_file() {
                anyhow::bail!(
                    "the `ws` npm package is not installed in {}: run `npm ci --prefix {}`, or leave it out with --skip node-ws",
                    opts.peers_dir.display(),
                    opts.peers_dir.display()
                );
            }
            plain(
                node,
                vec![script.display().to_string(), "--port".into(), port_arg],
                Ready::Line("listening"),
            )
        }
        other => anyhow::bail!("unknown WebSocket server `{other}`"),
    })
}

/// Runs every server that was not skipped under every load, and appends rows, targets and
/// notes to `results`. A server that fails to start or run gets FAILED rows; the caller
/// turns those into a non-zero exit.
pub fn run(opts: &Options, results: &mut Results) -> anyhow::Result<()> {
    Tool::Taskset.find(None)?;
    let dir = TempDir::new("protolab-bench-ws")?;
    let me = std::env::current_exe().context("finding the protolab-bench binary")?;
    // Check every tool before the first run, so a missing one fails in seconds, not minutes.
    for name in SERVERS.iter().filter(|n| !opts.skipped(n)) {
        spec(name, opts, 0, &dir)?;
    }
    // Rounds interleave the servers, so a burst of other work on the machine hits one round of
    // each rather than all of one server's runs; the best round per server and load is kept.
    let mut all: Vec<WsRow> = Vec::new();
    for round in 0..opts.rounds {
        for name in SERVERS {
            if opts.skipped(name) {
                if round == 0 {
                    results.notes.push(crate::report::skipped_note(name));
                }
                continue;
            }
            let port = free_port()?;
            let spec = spec(name, opts, port, &dir)?;
            eprintln!(
                "ws: round {}/{}: starting {name} on 127.0.0.1:{port}",
                round + 1,
                opts.rounds
            );
            let mut server = match Server::start(
                name,
                &spec.program,
                &spec.args,
                dir.path(),
                port,
                spec.ready,
            ) {
                Ok(s) => s,
                Err(err) => {
                    eprintln!("error: {err:#}");
                    for load in &opts.loads {
                        all.push(failed_row(name, load, format!("{err:#}")));
                    }
                    continue;
                }
            };
            let url = spec
                .printed
                .and_then(|s| printed_url(&server.lines, s))
                .unwrap_or(spec.url);
            for load in &opts.loads {
                let row = match run_client(opts, &me, &url, spec.ca.as_ref(), load, server.pid()) {
                    Ok(report) => row(name, load, &report),
                    Err(err) => {
                        eprintln!(
                            "error: {name} {}: {err:#}{}",
                            load.label(),
                            server.log_tail()
                        );
                        failed_row(name, load, format!("{err:#}"))
                    }
                };
                if let Some(rate) = row.msgs_per_sec {
                    eprintln!(
                        "ws: {name:<15} {:<12} {rate:>9.0} msgs/s  client CPU {}%",
                        load.label(),
                        row.client_cpu_pct
                            .map_or_else(|| "?".to_owned(), |c| format!("{c:.0}"))
                    );
                }
                all.push(row);
                if !server.is_running() {
                    eprintln!("error: {name} exited during the run{}", server.log_tail());
                    break;
                }
            }
        }
    }
    results.ws = best_rows(
        &all,
        |r| r.msgs_per_sec,
        |r| (r.server.clone(), r.load.clone()),
    );
    results.ws_all = all;
    add_ratios(opts, results);
    Ok(())
}

fn run_client(
    opts: &Options,
    me: &std::path::Path,
    url: &str,
    ca: Option<&PathBuf>,
    load: &Load,
    server_pid: u32,
) -> anyhow::Result<Report> {
    let mut args: Vec<String> = vec![
        "client".into(),
        "--url".into(),
        url.into(),
        "--connections".into(),
        load.connections.to_string(),
        "--size".into(),
        load.size.to_string(),
        "--warmup-ms".into(),
        opts.warmup.as_millis().to_string(),
        "--duration-ms".into(),
        opts.duration.as_millis().to_string(),
        "--max-msgs".into(),
        opts.max_msgs.to_string(),
        "--server-pid".into(),
        server_pid.to_string(),
    ];
    if let Some(ca) = ca {
        args.extend(["--ca".into(), ca.display().to_string()]);
    }
    if opts.text {
        args.push("--text".into());
    }
    let limit = opts.warmup + opts.duration + Duration::from_secs(20);
    let out = run_pinned_client(me, &args, limit)?;
    serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("client printed `{}`", out.stdout.trim()))
}

fn row(server: &str, load: &Load, r: &Report) -> WsRow {
    WsRow {
        server: server.to_owned(),
        load: load.label(),
        connections: load.connections,
        size: load.size,
        msgs_per_sec: Some(r.msgs_per_sec),
        server_cpu_pct: r.server_cpu_pct(),
        msgs_per_server_cpu_sec: r.msgs_per_server_cpu_sec(),
        client_cpu_pct: r.client_cpu_pct(),
        ratio: None,
        failed_connections: r.failed_connections,
        error: r.first_error.clone(),
    }
}

fn failed_row(server: &str, load: &Load, error: String) -> WsRow {
    WsRow {
        server: server.to_owned(),
        load: load.label(),
        connections: load.connections,
        size: load.size,
        msgs_per_sec: None,
        server_cpu_pct: None,
        msgs_per_server_cpu_sec: None,
        client_cpu_pct: None,
        ratio: None,
        failed_connections: 0,
        error: Some(error),
    }
}

/// Fills the ratio column and the targets: protolab-ws ≥ 1.0× every peer, wss ≥ 0.6× ws.
fn add_ratios(opts: &Options, results: &mut Results) {
    let find = |rows: &[WsRow], server: &str, load: &str| {
        rows.iter()
            .find(|r| r.server == server && r.load == load)
            .cloned()
    };
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    for load in &opts.loads {
        let label = load.label();
        let ws = find(&results.ws, "protolab-ws", &label);
        for name in SERVERS.iter().skip(1) {
            if opts.skipped(name) {
                continue;
            }
            let (goal, base) = if *name == "protolab-wss" {
                (0.6, ws.clone())
            } else {
                (1.0, ws.clone())
            };
            let Some(row) = results
                .ws
                .iter_mut()
                .find(|r| r.server == *name && r.load == label)
            else {
                continue;
            };
            let (ratio, cpu_ratio) = if *name == "protolab-wss" {
                (
                    div(row.msgs_per_sec, base.as_ref().and_then(|b| b.msgs_per_sec)),
                    div(
                        row.msgs_per_server_cpu_sec,
                        base.as_ref().and_then(|b| b.msgs_per_server_cpu_sec),
                    ),
                )
            } else {
                (
                    div(base.as_ref().and_then(|b| b.msgs_per_sec), row.msgs_per_sec),
                    div(
                        base.as_ref().and_then(|b| b.msgs_per_server_cpu_sec),
                        row.msgs_per_server_cpu_sec,
                    ),
                )
            };
            row.ratio = ratio;
            let name_text = if *name == "protolab-wss" {
                format!("protolab-wss ≥ 0.6× protolab-ws ({label})")
            } else {
                format!("protolab-ws ≥ 1.0× {name} ({label})")
            };
            if !opts.skipped("protolab-ws") {
                results.targets.push(Target {
                    name: name_text,
                    goal,
                    ratio,
                    cpu_ratio,
                });
            }
        }
    }
    for r in &results.ws {
        if let (Some(srv), Some(cli)) = (r.server_cpu_pct, r.client_cpu_pct) {
            if srv < 90.0 && cli < 90.0 {
                results.notes.push(format!(
                    "{} ({}): neither side used a whole core (server {srv:.0}%, client {cli:.0}%): \
                     latency-bound, or other processes took the pinned cores; rerun with --rounds 3",
                    r.server, r.load
                ));
            }
        }
        let run = format!("{} ({})", r.server, r.load);
        results.notes.extend(crate::report::client_bound_note(
            "the client",
            r.client_cpu_pct,
            &run,
        ));
    }
}

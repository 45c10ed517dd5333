//! `protolab-bench loadgen`: how efficient protolab's load generator is, against wrk and oha
//! (HTTP/1.1 keep-alive against the same one-worker nginx) and against a Node `ws` client doing
//! the same closed loop and npm `loadtest` (WebSocket echo against the same protolab WS app).
//!
//! Every client runs alone on core 1 (`taskset -c 1`) with the server on core 0, so each
//! figure is one core's worth. When the server saturates first, every client shows the same
//! throughput, so the ratio that decides is messages per client CPU-second: how much load one
//! core of each tool generates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::driver::Tool;
use crate::process::{free_port, run_pinned_client, Ready, Server, TempDir};
use crate::report::Target;

/// What `loadgen` runs.
#[derive(Debug, Clone)]
pub struct LoadgenOptions {
    /// The `protolab` binary.
    pub protolab: PathBuf,
    /// `crates/bench/peers` with its node_modules (ws, loadtest) and ws-echo-client.js.
    pub peers_dir: PathBuf,
    /// Measured seconds per client.
    pub duration: Duration,
    /// HTTP connections.
    pub http_connections: usize,
    /// WebSocket connections.
    pub ws_connections: usize,
    /// Payload bytes per message (HTTP body and WebSocket message).
    pub size: usize,
    /// Rounds over every client; each client's best round is kept (as in the other benches),
    /// and the HTTP clients run in reverse order on every other round so none always goes
    /// first against a fresh nginx.
    pub rounds: usize,
}

/// One client's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LoadgenRow {
    /// `http` or `ws`.
    pub protocol: &'static str,
    /// The load generator.
    pub tool: String,
    /// Requests (echoes) per second.
    pub per_sec: Option<f64>,
    /// The client's CPU time over the run, seconds.
    pub client_cpu_secs: Option<f64>,
    /// Requests per client CPU-second: the load one core of this tool generates.
    pub per_client_cpu_sec: Option<f64>,
    /// Why it produced nothing, if it did not.
    pub error: Option<String>,
    /// Requests per client CPU-second in every round, in order (the row shows the best).
    pub rounds: Vec<f64>,
}

/// Everything `loadgen` measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadgenResults {
    /// One row per client.
    pub rows: Vec<LoadgenRow>,
    /// protolab against each peer.
    pub targets: Vec<Target>,
}

/// The payload protolab's load client sends (and expects back): `abc…z` repeated.
fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Runs every client and computes the targets.
pub fn run(opts: &LoadgenOptions) -> anyhow::Result<LoadgenResults> {
    let rounds = opts.rounds.max(1);
    let mut samples = Vec::new();
    for round in 0..rounds {
        eprintln!("loadgen: round {}/{rounds}", round + 1);
        samples.extend(http(opts, round % 2 == 1)?);
        samples.extend(ws(opts)?);
    }
    let rows = best_rows(samples);
    let find = |protocol: &str, tool: &str| {
        rows.iter()
            .find(|r| r.protocol == protocol && r.tool == tool)
    };
    let mut targets = Vec::new();
    for (protocol, peer, goal) in [
        ("http", "wrk", 1.0),
        ("http", "oha", 1.0),
        ("ws", "node-ws", 1.5),
        ("ws", "loadtest", 1.5),
    ] {
        let (ours, theirs) = (find(protocol, "protolab"), find(protocol, peer));
        let ratio = |f: fn(&LoadgenRow) -> Option<f64>| match (ours.and_then(f), theirs.and_then(f))
        {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        targets.push(Target {
            name: format!("protolab load ≥ {goal}× {peer} ({protocol}, per client CPU-second)"),
            goal,
            ratio: ratio(|r| r.per_client_cpu_sec),
            cpu_ratio: ratio(|r| r.per_sec),
        });
    }
    Ok(LoadgenResults { rows, targets })
}

/// One row per (protocol, tool), in first-seen order: the round with the most requests per
/// client CPU-second, with every round's figure listed.
fn best_rows(samples: Vec<LoadgenRow>) -> Vec<LoadgenRow> {
    let mut rows: Vec<LoadgenRow> = Vec::new();
    for sample in samples {
        let figure = sample.per_client_cpu_sec;
        match rows
            .iter_mut()
            .find(|r| r.protocol == sample.protocol && r.tool == sample.tool)
        {
            None => {
                let mut first = sample;
                first.rounds = figure.into_iter().collect();
                rows.push(first);
            }
            Some(best) => {
                best.rounds.extend(figure);
                let better = match (figure, best.per_client_cpu_sec) {
                    (Some(new), Some(old)) => new > old,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if better {
                    let rounds = std::mem::take(&mut best.rounds);
                    *best = sample;
                    best.rounds = rounds;
                }
            }
        }
    }
    rows
}

fn row(
    protocol: &'static str,
    tool: &str,
    result: anyhow::Result<(f64, Option<f64>, f64)>,
) -> LoadgenRow {
    match result {
        Ok((messages, cpu, wall)) => {
            eprintln!("loadgen: {protocol} {tool:<9} {:>9.0}/s", messages / wall);
            LoadgenRow {
                protocol,
                tool: tool.to_owned(),
                per_sec: Some(messages / wall),
                client_cpu_secs: cpu,
                per_client_cpu_sec: cpu.filter(|&c| c > 0.0).map(|c| messages / c),
                error: None,
                rounds: Vec::new(),
            }
        }
        Err(err) => {
            eprintln!("error: loadgen {protocol} {tool}: {err:#}");
            LoadgenRow {
                protocol,
                tool: tool.to_owned(),
                per_sec: None,
                client_cpu_secs: None,
                per_client_cpu_sec: None,
                error: Some(format!("{err:#}")),
                rounds: Vec::new(),
            }
        }
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

fn http(opts: &LoadgenOptions, reverse: bool) -> anyhow::Result<Vec<LoadgenRow>> {
    let nginx = Tool::Nginx.find(None)?;
    let wrk = Tool::Wrk.find(None)?;
    let oha = Tool::Oha.find(None)?;
    let dir = TempDir::new("protolab-loadgen")?;
    let body = payload(opts.size);
    let port = free_port()?;
    let _server = crate::http::start_nginx(&nginx, dir.path(), port, &body)?;
    let url = format!("http://127.0.0.1:{port}/echo");
    let d = secs(opts.duration);
    let limit = opts.duration + Duration::from_secs(30);
    let conns = opts.http_connections.to_string();
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = \"{body_text}\"\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n"
        ),
    )?;
    let wrk_result = || {
        let out = run_pinned_client(
            &wrk,
            &[
                "-t1".into(),
                "-c".into(),
                conns.clone(),
                format!("-d{d}s"),
                "-s".into(),
                script.display().to_string(),
                url.clone(),
            ],
            limit,
        )?;
        let parsed = crate::http::parse_wrk(&out.stdout)
            .with_context(|| format!("parsing wrk output:\n{}", out.stdout))?;
        let wall = out.wall.as_secs_f64();
        Ok((parsed.req_per_sec * wall, out.cpu_secs, wall))
    };

    let oha_result = || {
        let out = run_pinned_client(
            &oha,
            &[
                "-z".into(),
                format!("{d}s"),
                "-c".into(),
                conns.clone(),
                "--no-tui".into(),
                "--output-format".into(),
                "json".into(),
                "-m".into(),
                "POST".into(),
                "-T".into(),
                "application/octet-stream".into(),
                "-d".into(),
                body_text.clone(),
                url.clone(),
            ],
            limit,
        )?;
        let json: serde_json::Value = serde_json::from_str(&out.stdout)
            .with_context(|| format!("parsing oha's JSON:\n{}", out.stdout))?;
        let rps = json["summary"]["requestsPerSec"]
            .as_f64()
            .context("oha's JSON has no summary.requestsPerSec")?;
        let wall = out.wall.as_secs_f64();
        Ok((rps * wall, out.cpu_secs, wall))
    };

    const ORDER: [&str; 3] = ["protolab", "wrk", "oha"];
    let mut rows = Vec::new();
    let mut order = ORDER;
    if reverse {
        order.reverse();
    }
    for tool in order {
        let result = match tool {
            "protolab" => protolab_client(opts, &url, opts.http_connections, limit),
            "wrk" => wrk_result(),
            _ => oha_result(),
        };
        rows.push(row("http", tool, result));
    }
    rows.sort_by_key(|r| ORDER.iter().position(|t| *t == r.tool));
    Ok(rows)
}

/// `protolab bench URL --json` pinned to core 1: (messages, client CPU, wall).
fn protolab_client(
    opts: &LoadgenOptions,
    url: &str,
    connections: usize,
    limit: Duration,
) -> anyhow::Result<(f64, Option<f64>, f64)> {
    let out = run_pinned_client(
        &opts.protolab,
        &[
            "--json".into(),
            "bench".into(),
            url.into(),
            "--size".into(),
            opts.size.to_string(),
            "-c".into(),
            connections.to_string(),
            "--duration".into(),
            format!("{}s", secs(opts.duration)),
        ],
        limit,
    )?;
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("parsing protolab bench's JSON:\n{}", out.stdout))?;
    let messages = json["messages"].as_f64().context("no `messages`")?;
    Ok((messages, out.cpu_secs, out.wall.as_secs_f64()))
}

fn ws(opts: &LoadgenOptions) -> anyhow::Result<Vec<LoadgenRow>> {
    let node = Tool::Node.find(None)?;
    let loadtest = opts.peers_dir.join("node_modules/loadtest/bin/loadtest.js");
    anyhow::ensure!(
        loadtest.is_file() && opts.peers_dir.join("node_modules/ws").is_dir(),
        "npm `ws` and `loadtest` are not installed in {0}: run `npm ci --prefix {0}` (scripts/bench does it)",
        opts.peers_dir.display()
    );
    let dir = TempDir::new("protolab-loadgen-ws")?;
    let port = free_port()?;
    let port_arg = port.to_string();
    let args = [
        "up",
        "--bind",
        "127.0.0.1",
        "--only",
        "ws",
        "--ws-port",
        &port_arg,
    ]
    .map(String::from);
    let _server = Server::start(
        "protolab-ws",
        &opts.protolab,
        &args,
        dir.path(),
        port,
        Ready::Line("ready"),
    )?;
    let url = format!("ws://127.0.0.1:{port}/ws");
    let limit = opts.duration + Duration::from_secs(30);
    let d = secs(opts.duration);
    let mut rows = Vec::new();
    rows.push(row(
        "ws",
        "protolab",
        protolab_client(opts, &url, opts.ws_connections, limit),
    ));

    let client = opts.peers_dir.join("ws-echo-client.js");
    let node_result = (|| {
        let out = run_pinned_client(
            &node,
            &[
                client.display().to_string(),
                url.clone(),
                opts.ws_connections.to_string(),
                opts.size.to_string(),
                d.to_string(),
            ],
            limit,
        )?;
        let json: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("parsing the Node client's JSON:\n{}", out.stdout))?;
        let messages = json["messages"].as_f64().context("no `messages`")?;
        Ok((messages, out.cpu_secs, out.wall.as_secs_f64()))
    })();
    rows.push(row("ws", "node-ws", node_result));

    let loadtest_result = (|| {
        let out = run_pinned_client(
            &node,
            &[
                loadtest.display().to_string(),
                "-c".into(),
                opts.ws_connections.to_string(),
                "--maxSeconds".into(),
                d.to_string(),
                "-k".into(),
                url.clone(),
            ],
            limit,
        )?;
        let completed = parse_loadtest(&out.stdout)
            .with_context(|| format!("parsing loadtest's report:\n{}", out.stdout))?;
        Ok((completed, out.cpu_secs, out.wall.as_secs_f64()))
    })();
    rows.push(row("ws", "loadtest", loadtest_result));
    Ok(rows)
}

/// `Completed requests:  27309` from loadtest's report.
fn parse_loadtest(out: &str) -> anyhow::Result<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Completed requests:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no `Completed requests:` line")
}

/// The results as a table.
pub fn render(r: &LoadgenResults) -> String {
    let rounds = r.rows.iter().map(|row| row.rounds.len()).max().unwrap_or(0);
    let mut out = format!(
        "load generator efficiency (each client alone on one core; best of {rounds} round(s), every round in brackets)\n"
    );
    out.push_str(&format!(
        "  {:<5} {:<10} {:>12} {:>10} {:>16}\n",
        "proto", "tool", "msgs/s", "CPU s", "msgs/CPU-second"
    ));
    let f = |v: Option<f64>, p: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.p$}"));
    for row in &r.rows {
        let every = row
            .rounds
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!(
            "  {:<5} {:<10} {:>12} {:>10} {:>16}  [{every}]{}\n",
            row.protocol,
            row.tool,
            f(row.per_sec, 0),
            f(row.client_cpu_secs, 2),
            f(row.per_client_cpu_sec, 0),
            row.error
                .as_deref()
                .map_or_else(String::new, |e| format!("  error: {e}"))
        ));
    }
    out.push_str("targets (ratio of msgs per client CPU-second; throughput ratio in brackets)\n");
    for t in &r.targets {
        out.push_str(&format!(
            "  {:<62} {:>6} ({})  {}\n",
            t.name,
            f(t.ratio, 2),
            f(t.cpu_ratio, 2),
            t.verdict()
        ));
    }
    out
}

/// Checks that `path` exists (for a clear error before any server starts).
pub fn check_protolab(path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        path.is_file(),
        "no protolab binary at {}: build it with `cargo build --release -p protolab` or pass --protolab",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_loadtest_reports() {
        let report = "Target URL:          ws://127.0.0.1:23002/ws\nCompleted requests:  27309\nTotal errors:        0\n";
        assert_eq!(parse_loadtest(report).unwrap(), 27309.0);
        assert!(parse_loadtest("nothing").is_err());
    }

    #[test]
    fn the_best_round_per_tool_is_kept_with_every_round_listed() {
        let sample = |tool: &str, v: Option<f64>| LoadgenRow {
            protocol: "http",
            tool: tool.to_owned(),
            per_sec: v,
            client_cpu_secs: v.map(|_| 1.0),
            per_client_cpu_sec: v,
            error: v.is_none().then(|| "failed".to_owned()),
            rounds: Vec::new(),
        };
        let rows = best_rows(vec![
            sample("protolab", Some(10.0)),
            sample("wrk", None),
            sample("protolab", Some(30.0)),
            sample("wrk", Some(20.0)),
            sample("protolab", Some(20.0)),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].tool, "protolab");
        assert_eq!(rows[0].per_client_cpu_sec, Some(30.0));
        assert_eq!(rows[0].rounds, vec![10.0, 30.0, 20.0]);
        assert_eq!(rows[1].per_client_cpu_sec, Some(20.0));
        assert!(
            rows[1].error.is_none(),
            "a good round replaces a failed one"
        );
    }

    #[test]
    fn payload_matches_the_load_client() {
        assert_eq!(payload(28), b"abcdefghijklmnopqrstuvwxyzab".to_vec());
    }
}

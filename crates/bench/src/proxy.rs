//! `protolab-bench proxy`: `protolab proxy` against HAProxy in front of the same protolab WS
//! backend, same load, same run: WSS-terminating echo throughput (closed loop), added p99
//! latency at a fixed rate (open loop, against the backend reached directly), and plain HTTP
//! req/s under wrk. HAProxy runs the configuration `protolab proxy --emit haproxy` prints.
//!
//! Backend and proxy share core 0 (`taskset -c 0`); the client runs on core 1. The load client
//! is `protolab bench URL --json` (HDR latency with coordinated-omission correction).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Serialize;

use crate::driver::{protolab_bin, Options, Tool};
use crate::process::{find_in_path, free_port, run_pinned_client, Ready, Server, TempDir};

/// What `protolab-bench proxy` measures.
#[derive(Debug, Clone)]
pub struct ProxyBench {
    /// Concurrent WebSocket connections (closed loop, one message in flight each).
    pub connections: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Open-loop rate for the latency run, messages per second over all connections.
    pub rate: f64,
    /// wrk connections for the HTTP run.
    pub http_connections: u32,
}

/// One proxy (or the backend directly) under the three loads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// `direct`, `protolab-proxy` or `haproxy`.
    pub name: String,
    /// WSS (or WS for direct) echo messages per second, closed loop.
    pub echo_msgs_per_sec: Option<f64>,
    /// p99 echo latency at the fixed rate, microseconds.
    pub p99_us: Option<f64>,
    /// p50 echo latency at the fixed rate, microseconds.
    pub p50_us: Option<f64>,
    /// p99 minus the direct p99: what the proxy adds.
    pub added_p99_us: Option<f64>,
    /// Plain HTTP requests per second (GET /healthz through the plain listener).
    pub http_req_per_sec: Option<f64>,
    /// The first error, if a run failed.
    pub error: Option<String>,
}

/// Everything one `protolab-bench proxy` run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProxyResults {
    /// Best row per target over the rounds.
    pub rows: Vec<Row>,
    /// protolab / HAProxy echo throughput (target ≥ 1.0).
    pub echo_ratio: Option<f64>,
    /// protolab / HAProxy HTTP req/s.
    pub http_ratio: Option<f64>,
    /// protolab's added p99 minus HAProxy's, microseconds (target ≤ 0).
    pub added_p99_diff_us: Option<f64>,
    /// Remarks (skipped peers, failures).
    pub notes: Vec<String>,
    /// Load average (1 min) at the start and the end: the machine may be shared.
    pub loadavg: Option<(f64, f64)>,
}

/// Runs the proxy bench.
pub fn run(opts: &Options, bench: &ProxyBench) -> anyhow::Result<ProxyResults> {
    Tool::Taskset.find(None)?;
    let wrk = Tool::Wrk.find(None)?;
    let load = crate::report::LoadWatch::start();
    let protolab = protolab_bin(opts)?;
    let haproxy = find_in_path("haproxy")
        .context("`haproxy` not found on PATH: install it with `apt-get install -y haproxy`")?;
    let dir = TempDir::new("protolab-bench-proxy")?;
    let home = dir.path().join("home");
    let ca = home.join("ca.pem");

    let backend_port = free_port()?;
    let backend_args: Vec<String> = [
        "--home",
        &home.display().to_string(),
        "up",
        "--only",
        "ws",
        "--ws-port",
        &backend_port.to_string(),
        "--push-interval",
        "1h",
    ]
    .map(String::from)
    .to_vec();
    eprintln!("proxy: starting the protolab WS backend on 127.0.0.1:{backend_port}");
    let _backend = Server::start(
        "backend",
        &protolab,
        &backend_args,
        dir.path(),
        backend_port,
        Ready::Line("ready"),
    )?;
    let backend = format!("127.0.0.1:{backend_port}");

    let mut all: Vec<Row> = Vec::new();
    for round in 0..opts.rounds {
        eprintln!("proxy: round {}/{}", round + 1, opts.rounds);
        let direct = format!("ws://127.0.0.1:{backend_port}/ws");
        all.push(measure_target(
            opts,
            bench,
            &protolab,
            &wrk,
            &home,
            &ca,
            "direct",
            &direct,
            backend_port,
        ));
        for name in ["protolab-proxy", "haproxy"] {
            let (plain, tls) = (free_port()?, free_port()?);
            let listen = [
                "--home".to_string(),
                home.display().to_string(),
                "proxy".into(),
                "--listen".into(),
                format!("127.0.0.1:{plain}"),
                "--listen-tls".into(),
                format!("127.0.0.1:{tls}"),
                "--backend".into(),
                backend.clone(),
            ];
            let server = if name == "haproxy" {
                let out = Command::new(&protolab)
                    .args(&listen)
                    .args(["--emit", "haproxy"])
                    .output()
                    .context("running protolab proxy --emit haproxy")?;
                if !out.status.success() {
                    bail!(
                        "protolab proxy --emit haproxy failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let cfg = dir.path().join("haproxy.cfg");
                std::fs::write(&cfg, &out.stdout)
                    .with_context(|| format!("writing {}", cfg.display()))?;
                let args = vec!["-f".to_owned(), cfg.display().to_string(), "-db".to_owned()];
                Server::start(name, &haproxy, &args, dir.path(), tls, Ready::Port)
            } else {
                // HAProxy's emitted config has no `log` line either: same work per request.
                let mut args = listen.to_vec();
                args.push("--no-access-log".into());
                Server::start(
                    name,
                    &protolab,
                    &args,
                    dir.path(),
                    tls,
                    Ready::Line("ready"),
                )
            };
            let row = match server {
                Ok(_server) => {
                    let url = format!("wss://localhost:{tls}/ws");
                    measure_target(opts, bench, &protolab, &wrk, &home, &ca, name, &url, plain)
                }
                Err(err) => Row {
                    name: name.to_owned(),
                    error: Some(format!("{err:#}")),
                    ..Row::default()
                },
            };
            all.push(row);
        }
    }

    let mut results = ProxyResults::default();
    for name in ["direct", "protolab-proxy", "haproxy"] {
        let rows: Vec<&Row> = all.iter().filter(|r| r.name == name).collect();
        let best = |f: fn(&Row) -> Option<f64>, max: bool| {
            rows.iter()
                .filter_map(|r| f(r))
                .fold(None, |acc: Option<f64>, v| {
                    Some(acc.map_or(v, |a| if max { a.max(v) } else { a.min(v) }))
                })
        };
        results.rows.push(Row {
            name: name.to_owned(),
            echo_msgs_per_sec: best(|r| r.echo_msgs_per_sec, true),
            p99_us: best(|r| r.p99_us, false),
            p50_us: best(|r| r.p50_us, false),
            added_p99_us: None,
            http_req_per_sec: best(|r| r.http_req_per_sec, true),
            error: rows.iter().find_map(|r| r.error.clone()),
        });
    }
    let direct_p99 = results.rows[0].p99_us;
    for r in &mut results.rows[1..] {
        r.added_p99_us = r.p99_us.zip(direct_p99).map(|(p, d)| p - d);
    }
    let (ours, theirs) = (&results.rows[1], &results.rows[2]);
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    results.echo_ratio = div(ours.echo_msgs_per_sec, theirs.echo_msgs_per_sec);
    results.http_ratio = div(ours.http_req_per_sec, theirs.http_req_per_sec);
    results.added_p99_diff_us = ours
        .added_p99_us
        .zip(theirs.added_p99_us)
        .map(|(a, b)| a - b);
    for r in &results.rows {
        if let Some(e) = &r.error {
            results.notes.push(format!("{}: {e}", r.name));
        }
    }
    results.loadavg = load.end();
    Ok(results)
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site per target, all inputs plain"
)]
fn measure_target(
    opts: &Options,
    bench: &ProxyBench,
    protolab: &Path,
    wrk: &Path,
    home: &Path,
    ca: &Path,
    name: &str,
    url: &str,
    http_port: u16,
) -> Row {
    let mut row = Row {
        name: name.to_owned(),
        ..Row::default()
    };
    let secs = opts.duration.as_secs().max(1);
    let limit = opts.duration + opts.warmup + Duration::from_secs(30);
    let bench_args = |extra: &[String]| -> Vec<String> {
        let mut a = vec![
            "--home".to_owned(),
            home.display().to_string(),
            "--json".to_owned(),
            "bench".to_owned(),
            url.to_owned(),
            "-c".to_owned(),
            bench.connections.to_string(),
            "--size".to_owned(),
            bench.size.to_string(),
            "--duration".to_owned(),
            format!("{secs}s"),
        ];
        if url.starts_with("wss://") {
            a.push("--cacert".to_owned());
            a.push(ca.display().to_string());
        }
        a.extend_from_slice(extra);
        a
    };
    eprintln!("proxy: {name}: echo throughput {url}");
    match run_pinned_client(protolab, &bench_args(&[]), limit)
        .and_then(|out| parse_bench(&out.stdout))
    {
        Ok((rate, _, _)) => row.echo_msgs_per_sec = Some(rate),
        Err(err) => row.error = Some(format!("echo: {err:#}")),
    }
    eprintln!("proxy: {name}: latency at {} msg/s", bench.rate);
    match run_pinned_client(
        protolab,
        &bench_args(&["--rate".to_owned(), bench.rate.to_string()]),
        limit,
    )
    .and_then(|out| parse_bench(&out.stdout))
    {
        Ok((_, p50, p99)) => {
            row.p50_us = p50;
            row.p99_us = p99;
        }
        Err(err) => row.error = row.error.or(Some(format!("latency: {err:#}"))),
    }
    eprintln!("proxy: {name}: wrk on http://127.0.0.1:{http_port}/healthz");
    let wrk_args = vec![
        "-t1".to_owned(),
        "-c".to_owned(),
        bench.http_connections.to_string(),
        format!("-d{secs}s"),
        format!("http://127.0.0.1:{http_port}/healthz"),
    ];
    match run_pinned_client(wrk, &wrk_args, limit).and_then(|out| parse_wrk(&out.stdout)) {
        Ok(rps) => row.http_req_per_sec = Some(rps),
        Err(err) => row.error = row.error.or(Some(format!("http: {err:#}"))),
    }
    row
}

/// Throughput, p50 and p99 (µs) from `protolab bench --json`.
fn parse_bench(stdout: &str) -> anyhow::Result<(f64, Option<f64>, Option<f64>)> {
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).context("protolab bench printed no JSON")?;
    let errors = &v["errors"];
    let rate = v["throughput_per_sec"]
        .as_f64()
        .context("no throughput in the report")?;
    if rate <= 0.0 {
        bail!("no echoes: {errors}");
    }
    Ok((
        rate,
        v["latency"]["p50_us"].as_f64(),
        v["latency"]["p99_us"].as_f64(),
    ))
}

/// `Requests/sec:` from wrk's output; fails if wrk saw errors other than none.
fn parse_wrk(stdout: &str) -> anyhow::Result<f64> {
    if let Some(line) = stdout
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
    {
        bail!("wrk: {}", line.trim());
    }
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{stdout}"))
}

/// The results as a table with the ratios.
pub fn render(r: &ProxyResults, bench: &ProxyBench) -> String {
    let mut o = String::new();
    let f = |v: Option<f64>, d: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.d$}"));
    let _ = writeln!(
        o,
        "proxy bench: WSS terminated at the proxy, {} conns × {} B echo; latency at {} msg/s; wrk -c{} GET /healthz",
        bench.connections, bench.size, bench.rate, bench.http_connections
    );
    let _ = writeln!(
        o,
        "{:<16} {:>12} {:>10} {:>10} {:>12} {:>12}",
        "target", "echo msg/s", "p50 µs", "p99 µs", "added p99", "http req/s"
    );
    for row in &r.rows {
        let _ = writeln!(
            o,
            "{:<16} {:>12} {:>10} {:>10} {:>12} {:>12}",
            row.name,
            f(row.echo_msgs_per_sec, 0),
            f(row.p50_us, 0),
            f(row.p99_us, 0),
            f(row.added_p99_us, 0),
            f(row.http_req_per_sec, 0),
        );
    }
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "unknown",
    };
    let _ = writeln!(
        o,
        "echo throughput protolab/HAProxy: {} (target ≥ 1.0: {})",
        f(r.echo_ratio, 2),
        verdict(r.echo_ratio.map(|x| x >= 1.0))
    );
    let _ = writeln!(
        o,
        "added p99 protolab − HAProxy: {} µs (target ≤ 0: {})",
        f(r.added_p99_diff_us, 0),
        verdict(r.added_p99_diff_us.map(|x| x <= 0.0))
    );
    let _ = writeln!(o, "HTTP req/s protolab/HAProxy: {}", f(r.http_ratio, 2));
    o.push_str(&crate::report::trailer(&r.notes, r.loadavg));
    o
}

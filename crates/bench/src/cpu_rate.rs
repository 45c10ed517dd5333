//! `protolab-bench cpu`: server CPU per message at a fixed offered rate. Every server gets the
//! same open-loop load (protolab-load's schedule: each connection sends on fixed slots from
//! when it opened, so the offered rate does not drift with the echoes), below every server's
//! saturation, and the figure is the server's user and system CPU microseconds per echoed
//! message from /proc/PID/stat — CPU time, not wall time, so a busy machine adds noise but
//! not a bias. Rounds interleave the servers; the table shows median and min–max.
//!
//! The client (`rate-client`, pinned to core 1) runs a one-second warm-up load first (Node's
//! JIT, buffers), then reads the server's counters, runs the measured load and reads them
//! again; the window holds the measured load's handshakes too (100 against ~100,000 messages).
//! /proc counts CPU in 10 ms ticks, so a window must echo enough messages for a tick to be
//! small per message: 200,000 messages make one tick 0.05 µs.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::cpu::{micros_per_message, process_cpu_split};
use crate::driver::Tool;
use crate::lineup::Lineup;
use crate::process::{run_pinned_client, TempDir};

/// The plain WebSocket servers this mode loads, in order.
pub const SERVERS: [&str; 5] = [
    "protolab-ws",
    "protolab-ws-tasks",
    "fastwebsockets",
    "node-ws",
    "uws",
];

/// Below this share of the offered rate the server is called saturated.
const SATURATED_BELOW: f64 = 0.95;

/// One `cpu` run.
#[derive(Debug, Clone)]
pub struct RateOptions {
    /// Where the servers come from.
    pub lineup: Lineup,
    /// Connections.
    pub connections: usize,
    /// Message sizes in bytes, each with its offered messages per second over all
    /// connections.
    pub loads: Vec<(usize, f64)>,
    /// Measured window per run.
    pub duration: Duration,
    /// Rounds over every server.
    pub rounds: u32,
    /// Servers left out.
    pub skip: Vec<String>,
}

/// What one measured window gave (printed as JSON by `rate-client`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RateSample {
    /// Echoes completed in the window.
    pub messages: u64,
    /// `messages / seconds`.
    pub achieved_per_sec: f64,
    /// Server user CPU µs per message.
    pub user_us: Option<f64>,
    /// Server system CPU µs per message.
    pub system_us: Option<f64>,
    /// Echo latency p99 in µs (open loop, from each message's due time).
    pub p99_us: Option<f64>,
    /// Load errors (refused, reset, timeouts...).
    pub errors: u64,
    /// The first error's text.
    pub first_error: Option<String>,
}

/// One client run: warm-up, then the measured window.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://127.0.0.1:PORT/PATH`.
    pub url: String,
    /// Connections.
    pub connections: usize,
    /// Payload bytes.
    pub size: usize,
    /// Offered messages per second.
    pub rate: f64,
    /// Measured window.
    pub duration: Duration,
    /// The server's pid.
    pub server_pid: u32,
}

fn load_config(cfg: &ClientConfig, duration: Duration) -> anyhow::Result<protolab_load::Config> {
    let target = protolab_load::Target::parse(&cfg.url).context("parsing the URL")?;
    let mut load = protolab_load::Config::new(target);
    load.connections = cfg.connections;
    load.size = cfg.size;
    load.duration = duration;
    load.rate = Some(cfg.rate);
    Ok(load)
}

/// Runs the warm-up and the measured window on the current (pinned) thread.
pub async fn client(cfg: ClientConfig) -> anyhow::Result<RateSample> {
    protolab_load::run(load_config(&cfg, Duration::from_secs(1))?)
        .await
        .context("warm-up load")?;
    let before = process_cpu_split(cfg.server_pid).context("reading the server's /proc stat")?;
    let report = protolab_load::run(load_config(&cfg, cfg.duration)?)
        .await
        .context("measured load")?;
    let after = process_cpu_split(cfg.server_pid).context("the server exited")?;
    let per = micros_per_message(before, after, report.messages);
    Ok(RateSample {
        messages: report.messages,
        achieved_per_sec: report.throughput_per_sec,
        user_us: per.map(|p| p.0),
        system_us: per.map(|p| p.1),
        p99_us: report.latency.map(|l| l.p99_us),
        errors: report.errors.total(),
        first_error: (report.errors.total() > 0).then(|| format!("{:?}", report.errors)),
    })
}

/// One server at one size, over the rounds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RateRow {
    /// Server name.
    pub server: String,
    /// Payload bytes.
    pub size: usize,
    /// Offered messages per second.
    pub rate: f64,
    /// One sample per completed round.
    pub samples: Vec<RateSample>,
    /// Failures, one per failed round.
    pub errors: Vec<String>,
}

/// Everything `cpu` measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RateResults {
    /// Connections.
    pub connections: usize,
    /// Window seconds.
    pub duration_secs: f64,
    /// Rounds.
    pub rounds: u32,
    /// Rows, by size then server.
    pub rows: Vec<RateRow>,
    /// Skipped servers.
    pub notes: Vec<String>,
    /// Load average (1 min) at the start and the end: the machine may be shared.
    pub loadavg: Option<(f64, f64)>,
}

/// Runs every server that is not skipped and can run here.
pub fn run(opts: &RateOptions) -> anyhow::Result<RateResults> {
    Tool::Taskset.find(None)?;
    let me = std::env::current_exe().context("finding the protolab-bench binary")?;
    let dir = TempDir::new("protolab-bench-cpu")?;
    let home = dir.path().join("protolab-home");
    let load = crate::report::LoadWatch::start();
    let mut results = RateResults {
        connections: opts.connections,
        duration_secs: opts.duration.as_secs_f64(),
        rounds: opts.rounds,
        ..RateResults::default()
    };
    let active = opts
        .lineup
        .runnable("cpu", &SERVERS, &opts.skip, &mut results.notes)?;
    for &(size, rate) in &opts.loads {
        for name in &active {
            results.rows.push(RateRow {
                server: (*name).to_owned(),
                size,
                rate,
                ..RateRow::default()
            });
        }
    }
    for round in 0..opts.rounds {
        for name in &active {
            eprintln!("cpu: round {}/{}: starting {name}", round + 1, opts.rounds);
            let started = match opts.lineup.start(name, dir.path(), &home) {
                Ok(s) => s,
                Err(err) => {
                    for row in results.rows.iter_mut().filter(|r| r.server == *name) {
                        row.errors.push(format!("{err:#}"));
                    }
                    continue;
                }
            };
            let url = format!("ws://127.0.0.1:{}{}", started.port, started.path);
            for &(size, rate) in &opts.loads {
                let outcome = run_client(opts, &me, &url, size, rate, started.server.pid())
                    .map_err(|e| anyhow::anyhow!("{e:#}{}", started.server.log_tail()));
                let Some(row) = results
                    .rows
                    .iter_mut()
                    .find(|r| r.server == *name && r.size == size)
                else {
                    continue;
                };
                match outcome {
                    Ok(sample) => {
                        eprintln!(
                            "cpu: {name:<15} {:>6} B: {:>7.0} msg/s, user {} µs/msg, system {} µs/msg",
                            size,
                            sample.achieved_per_sec,
                            fmt(sample.user_us, 2),
                            fmt(sample.system_us, 2)
                        );
                        row.samples.push(sample);
                    }
                    Err(err) => {
                        eprintln!("error: cpu {name} {size} B: {err:#}");
                        row.errors.push(format!("{err:#}"));
                    }
                }
            }
        }
    }
    results.loadavg = load.end();
    Ok(results)
}

fn run_client(
    opts: &RateOptions,
    me: &Path,
    url: &str,
    size: usize,
    rate: f64,
    pid: u32,
) -> anyhow::Result<RateSample> {
    let args: Vec<String> = vec![
        "rate-client".into(),
        "--url".into(),
        url.into(),
        "--connections".into(),
        opts.connections.to_string(),
        "--size".into(),
        size.to_string(),
        "--rate".into(),
        rate.to_string(),
        "--duration-ms".into(),
        opts.duration.as_millis().to_string(),
        "--server-pid".into(),
        pid.to_string(),
    ];
    let out = run_pinned_client(me, &args, opts.duration + Duration::from_secs(30))?;
    serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("the rate client printed `{}`", out.stdout.trim()))
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Median, min and max of the finite `values` ([`crate::report::spread`]); `None` when there
/// are none.
pub fn spread(values: Vec<f64>) -> Option<(f64, f64, f64)> {
    crate::report::spread(values).map(|s| (s.median, s.min, s.max))
}

fn show(s: Option<(f64, f64, f64)>) -> String {
    s.map_or_else(
        || "-".to_owned(),
        |(m, lo, hi)| format!("{m:.2} ({lo:.2}–{hi:.2})"),
    )
}

fn total_us(s: &RateSample) -> Option<f64> {
    Some(s.user_us? + s.system_us?)
}

/// The table: per size, each server's user, system and total CPU µs per message (median and
/// range over rounds) and its total as a ratio to uWebSockets (else the best peer).
pub fn render(results: &RateResults) -> String {
    let mut out = String::new();
    let mut sizes: Vec<usize> = results.rows.iter().map(|r| r.size).collect();
    sizes.dedup();
    for size in sizes {
        let rows: Vec<&RateRow> = results.rows.iter().filter(|r| r.size == size).collect();
        let rate = rows.first().map_or(0.0, |r| r.rate);
        let median_total = |r: &RateRow| spread(r.samples.iter().filter_map(total_us).collect());
        let uws = rows
            .iter()
            .find(|r| r.server == "uws")
            .and_then(|r| median_total(r));
        let (reference, base) = match uws {
            Some(u) => ("uws", Some(u.0)),
            None => (
                "best peer",
                rows.iter()
                    .filter(|r| !r.server.starts_with("protolab"))
                    .filter_map(|r| median_total(r).map(|m| m.0))
                    .reduce(f64::min),
            ),
        };
        out.push_str(&format!(
            "\nserver CPU per message at {:.0} msg/s offered over {} connections, {size} B, {} rounds of {:.0} s (median (min–max), µs; ×{reference} = total ÷ {reference}'s)\n",
            rate, results.connections, results.rounds, results.duration_secs
        ));
        out.push_str(&format!(
            "{:<15} {:>20} {:>20} {:>20} {:>7} {:>9} {:>9}\n",
            "server", "user µs/msg", "system µs/msg", "total µs/msg", "×ref", "msg/s", "p99 ms"
        ));
        for row in &rows {
            let total = median_total(row);
            let ratio = match (total, base) {
                (Some(t), Some(b)) if b > 0.0 => format!("{:.2}×", t.0 / b),
                _ => "-".to_owned(),
            };
            let achieved = spread(row.samples.iter().map(|s| s.achieved_per_sec).collect());
            let p99 = spread(row.samples.iter().filter_map(|s| s.p99_us).collect());
            out.push_str(&format!(
                "{:<15} {:>20} {:>20} {:>20} {:>7} {:>9} {:>9}\n",
                row.server,
                show(spread(
                    row.samples.iter().filter_map(|s| s.user_us).collect()
                )),
                show(spread(
                    row.samples.iter().filter_map(|s| s.system_us).collect()
                )),
                show(total),
                ratio,
                achieved.map_or_else(|| "-".to_owned(), |a| format!("{:.0}", a.0)),
                p99.map_or_else(|| "-".to_owned(), |p| format!("{:.2}", p.0 / 1000.0)),
            ));
            if let Some(a) = achieved {
                if a.1 < rate * SATURATED_BELOW {
                    out.push_str(&format!(
                        "  {}: a round echoed only {:.0} msg/s of {:.0} offered: saturated or disturbed; lower --rate\n",
                        row.server, a.1, rate
                    ));
                }
            }
            for s in row.samples.iter().filter(|s| s.errors > 0) {
                out.push_str(&format!(
                    "  {}: {} load errors: {}\n",
                    row.server,
                    s.errors,
                    s.first_error.as_deref().unwrap_or("")
                ));
            }
            for e in &row.errors {
                out.push_str(&format!("  {}: FAILED: {e}\n", row.server));
            }
        }
    }
    out.push_str(&crate::report::trailer(&results.notes, results.loadavg));
    out
}

/// Whether any round failed.
pub fn any_failed(results: &RateResults) -> bool {
    results
        .rows
        .iter()
        .any(|r| !r.errors.is_empty() || r.samples.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_and_range() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(spread(vec![4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(spread(vec![f64::NAN]), None);
        assert_eq!(spread(Vec::new()), None);
    }
}

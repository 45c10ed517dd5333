//! `protolab-bench idle`: memory and accept rate of idle WebSockets. For each server (protolab
//! WS and WSS, fastwebsockets, Node `ws`, uWebSockets plain and OpenSSL), started once and
//! pinned to core 0, `cycles` times: open N connections from a client pinned to core 1 (this
//! binary's `idle-client`), hold them idle, close them; per cycle the server's RSS delta per
//! connection, its RSS after the close (a ratchet shows as a rising column), the time to open
//! all N and the accept rate, each as a ratio to the best peer of the same cycle.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::driver::Tool;
use crate::fanout::{can_raise_nofile, nofile_needed};
use crate::fanout_client::rss_kib;
use crate::idle_client::{bytes_per_connection, CycleReport, CLOSE_LIMIT_SECS, OPEN_LIMIT};
use crate::lineup::{raise_nofile, Lineup, SERVERS};
use crate::process::{find_in_path, run_pinned_client, TempDir};

/// One `idle` run.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// Where the servers come from.
    pub lineup: Lineup,
    /// Idle WebSockets per plain server.
    pub connections: usize,
    /// Idle WSS connections per TLS server.
    pub tls_connections: usize,
    /// Open/close cycles per server.
    pub cycles: u32,
    /// Servers left out.
    pub skip: Vec<String>,
}

/// One server's cycles.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleRow {
    /// Server name (see [`SERVERS`]).
    pub server: String,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// Its RSS once started, before any connection, KiB.
    pub rss_start_kib: u64,
    /// One report per completed cycle.
    pub cycles: Vec<CycleReport>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Everything `idle` measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleResults {
    /// N per plain server.
    pub connections: usize,
    /// N per TLS server.
    pub tls_connections: usize,
    /// Cycles per server.
    pub cycles: u32,
    /// One row per server that ran.
    pub rows: Vec<IdleRow>,
    /// Skipped servers and settings worth knowing.
    pub notes: Vec<String>,
    /// Load average (1 min) at the start and the end: the machine may be shared.
    pub loadavg: Option<(f64, f64)>,
}

/// Runs every server that is not skipped and can run here.
pub fn run(opts: &IdleOptions) -> anyhow::Result<IdleResults> {
    Tool::Taskset.find(None)?;
    let me = std::env::current_exe().context("finding the protolab-bench binary")?;
    let dir = TempDir::new("protolab-bench-idle")?;
    let home = dir.path().join("protolab-home");
    let load = crate::report::LoadWatch::start();
    let mut results = IdleResults {
        connections: opts.connections,
        tls_connections: opts.tls_connections,
        cycles: opts.cycles,
        ..IdleResults::default()
    };
    results.notes.push(format!(
        "idle timeouts: protolab --idle-timeout {} (pings at half), uWS idleTimeout 960 s without \
         pings, fastwebsockets and Node ws none; the client sends nothing while it holds",
        crate::lineup::PROTOLAB_IDLE_TIMEOUT
    ));
    let most = opts.connections.max(opts.tls_connections);
    let limit = nofile_needed(most);
    let prlimit = find_in_path("prlimit").filter(|p| can_raise_nofile(p, limit));
    if prlimit.is_none() {
        results.notes.push(format!(
            "could not raise the open-files limit to {limit} (prlimit missing, or the hard limit \
             is lower): each side holds at most `ulimit -n`; pass smaller --connections"
        ));
    }
    let active = opts
        .lineup
        .runnable("idle", &SERVERS, &opts.skip, &mut results.notes)?;
    for (index, name) in active.iter().enumerate() {
        let tls = name.ends_with("wss") || name.ends_with("tls");
        let n = if tls {
            opts.tls_connections
        } else {
            opts.connections
        };
        let mut row = IdleRow {
            server: (*name).to_owned(),
            tls,
            ..IdleRow::default()
        };
        if let Err(err) = run_server(
            opts,
            &me,
            dir.path(),
            &home,
            prlimit.as_deref(),
            name,
            n,
            index,
            &mut row,
        ) {
            eprintln!("error: idle {name}: {err:#}");
            row.error = Some(format!("{err:#}"));
        }
        results.rows.push(row);
    }
    results.notes.push(
        "RSS is the server's user-space memory; the kernel's socket buffers are not in it".into(),
    );
    results.loadavg = load.end();
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
fn run_server(
    opts: &IdleOptions,
    me: &Path,
    dir: &Path,
    home: &Path,
    prlimit: Option<&Path>,
    name: &str,
    n: usize,
    index: usize,
    row: &mut IdleRow,
) -> anyhow::Result<()> {
    eprintln!("idle: starting {name}");
    let mut started = opts.lineup.start(name, dir, home)?;
    let limit = nofile_needed(n);
    if let Some(prlimit) = prlimit {
        raise_nofile(prlimit, started.server.pid(), limit)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    row.rss_start_kib = rss_kib(started.server.pid());
    for cycle in 0..opts.cycles {
        eprintln!(
            "idle: {name} cycle {}/{}: opening {n} {}",
            cycle + 1,
            opts.cycles,
            if row.tls { "WSS" } else { "WebSockets" }
        );
        // Fresh source addresses per server and cycle: 127.NET.*.* with NET from 1 to 250.
        let source_net = 1 + ((index * 10 + cycle as usize) % 250) as u8;
        let mut args: Vec<String> = vec![
            me.display().to_string(),
            "idle-client".into(),
            "--port".into(),
            started.port.to_string(),
            "--path".into(),
            started.path.clone(),
            "--connections".into(),
            n.to_string(),
            "--server-pid".into(),
            started.server.pid().to_string(),
            "--source-net".into(),
            source_net.to_string(),
        ];
        if let Some(ca) = &started.ca {
            args.extend(["--ca".into(), ca.display().to_string()]);
        }
        let program = match prlimit {
            Some(p) => {
                args.insert(0, format!("--nofile={limit}:{limit}"));
                p.to_path_buf()
            }
            None => PathBuf::from(args.remove(0)),
        };
        let bound = OPEN_LIMIT + Duration::from_secs(CLOSE_LIMIT_SECS + 30);
        let out = run_pinned_client(&program, &args, bound)
            .map_err(|e| anyhow::anyhow!("{e:#}{}", started.server.log_tail()))?;
        let report: CycleReport = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("the idle client printed `{}`", out.stdout.trim()))?;
        eprintln!(
            "idle: {name} cycle {}/{}: {}/{n} open in {:.2} s ({} conn/s), {} B/conn, RSS after close {:.1} MiB{}",
            cycle + 1,
            opts.cycles,
            report.opened,
            report.open_secs,
            fmt(report.accept_per_sec, 0),
            fmt(report.bytes_per_connection, 0),
            report.rss_after_close_kib as f64 / 1024.0,
            report
                .first_error
                .as_deref()
                .map(|e| format!("; {} failed, first: {e}", report.failed))
                .unwrap_or_default()
        );
        row.cycles.push(report);
        if !started.server.is_running() {
            anyhow::bail!(
                "{name} exited during cycle {}{}",
                cycle + 1,
                started.server.log_tail()
            );
        }
    }
    Ok(())
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Whether `server` is one of the peers (the ratios' reference), not protolab.
fn is_peer(server: &str) -> bool {
    !server.starts_with("protolab")
}

/// The best peer figure of `cycle` among `rows` (one TLS kind): the lowest when `lower`,
/// else the highest.
pub fn best_peer(
    rows: &[&IdleRow],
    cycle: usize,
    figure: impl Fn(&CycleReport) -> Option<f64>,
    lower: bool,
) -> Option<f64> {
    rows.iter()
        .filter(|r| is_peer(&r.server))
        .filter_map(|r| r.cycles.get(cycle).and_then(&figure))
        .filter(|v| v.is_finite())
        .reduce(|a, b| if (a < b) == lower { a } else { b })
}

fn ratio(value: Option<f64>, best: Option<f64>) -> String {
    match (value, best) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}×", v / b),
        _ => "-".to_owned(),
    }
}

/// The tables: one for WebSockets, one for WSS.
pub fn render(results: &IdleResults) -> String {
    let mut out = String::new();
    for tls in [false, true] {
        let rows: Vec<&IdleRow> = results.rows.iter().filter(|r| r.tls == tls).collect();
        if rows.is_empty() {
            continue;
        }
        let n = if tls {
            results.tls_connections
        } else {
            results.connections
        };
        out.push_str(&format!(
            "\nidle {}: {n} per server, {} cycles (server RSS = VmRSS of /proc/PID/status; ×best = ÷ the best peer of the same cycle)\n",
            if tls { "WSS" } else { "WebSockets" },
            results.cycles
        ));
        out.push_str(&format!(
            "{:<15} {:>5} {:>13} {:>8} {:>9} {:>7} {:>9} {:>10} {:>7} {:>9} {:>12} {:>7}\n",
            "server",
            "cycle",
            "open",
            "open s",
            "conn/s",
            "×best",
            "Δcycle B",
            "Δstart B",
            "×best",
            "RSS MiB",
            "after close",
            "×best"
        ));
        for row in &rows {
            if row.cycles.is_empty() {
                out.push_str(&format!(
                    "{:<15} FAILED: {}\n",
                    row.server,
                    row.error.as_deref().unwrap_or("no cycle completed")
                ));
                continue;
            }
            for (c, cycle) in row.cycles.iter().enumerate() {
                let after = |r: &CycleReport| Some(r.rss_after_close_kib as f64);
                let from_start = |row: &IdleRow, r: &CycleReport| {
                    bytes_per_connection(row.rss_start_kib, r.rss_open_kib, r.opened)
                };
                let best_from_start = rows
                    .iter()
                    .filter(|r| is_peer(&r.server))
                    .filter_map(|r| r.cycles.get(c).and_then(|cy| from_start(r, cy)))
                    .reduce(f64::min);
                let held = if cycle.opened < cycle.wanted {
                    format!("{}/{} !", cycle.opened, cycle.wanted)
                } else {
                    format!("{}", cycle.opened)
                };
                out.push_str(&format!(
                    "{:<15} {:>5} {:>13} {:>8.2} {:>9} {:>7} {:>9} {:>10} {:>7} {:>9.1} {:>12.1} {:>7}\n",
                    if c == 0 { row.server.as_str() } else { "" },
                    c + 1,
                    held,
                    cycle.open_secs,
                    fmt(cycle.accept_per_sec, 0),
                    ratio(cycle.accept_per_sec, best_peer(&rows, c, |r| r.accept_per_sec, false)),
                    fmt(cycle.bytes_per_connection, 0),
                    fmt(from_start(row, cycle), 0),
                    ratio(from_start(row, cycle), best_from_start),
                    cycle.rss_open_kib as f64 / 1024.0,
                    cycle.rss_after_close_kib as f64 / 1024.0,
                    ratio(after(cycle), best_peer(&rows, c, after, true)),
                ));
            }
            for (c, cycle) in row.cycles.iter().enumerate() {
                if let Some(err) = &cycle.first_error {
                    out.push_str(&format!(
                        "  {} cycle {}: {} of {} failed; first: {err}\n",
                        row.server,
                        c + 1,
                        cycle.failed,
                        cycle.wanted
                    ));
                }
                if !cycle.closed_all {
                    out.push_str(&format!(
                        "  {} cycle {}: still held {} descriptors {CLOSE_LIMIT_SECS} s after the client closed\n",
                        row.server,
                        c + 1,
                        cycle.fds_after_close
                    ));
                }
            }
            if let Some(err) = &row.error {
                out.push_str(&format!("  {}: stopped: {err}\n", row.server));
            }
            out.push_str(&format!(
                "  {}: RSS at start {:.1} MiB; server descriptors while open: {}\n",
                row.server,
                row.rss_start_kib as f64 / 1024.0,
                row.cycles
                    .iter()
                    .map(|c| c.fds_open.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out.push_str(
        "\nΔcycle B: (RSS open − RSS before this cycle) ÷ connections; Δstart B: (RSS open − RSS at start) ÷ \
         connections, which a collector or an allocator reusing freed memory cannot hide.\n\
         ×best: conn/s above 1 is faster than the best peer; Δstart B and RSS after close below 1 use less.\n",
    );
    out.push_str(&crate::report::trailer(&results.notes, results.loadavg));
    out
}

/// Whether any server failed or held fewer than it was asked to.
pub fn any_failed(results: &IdleResults) -> bool {
    results.rows.iter().any(|r| {
        r.error.is_some()
            || r.cycles
                .iter()
                .any(|c| c.opened < c.wanted || !c.closed_all)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(server: &str, per_conn: &[f64]) -> IdleRow {
        IdleRow {
            server: server.into(),
            cycles: per_conn
                .iter()
                .map(|&b| CycleReport {
                    bytes_per_connection: Some(b),
                    accept_per_sec: Some(1e6 / b),
                    ..CycleReport::default()
                })
                .collect(),
            ..IdleRow::default()
        }
    }

    #[test]
    fn best_peer_leaves_protolab_out_and_picks_per_cycle() {
        let rows = [
            row("protolab-ws", &[100.0, 100.0]),
            row("uws", &[500.0, 900.0]),
            row("node-ws", &[800.0, 700.0]),
        ];
        let refs: Vec<&IdleRow> = rows.iter().collect();
        assert_eq!(
            best_peer(&refs, 0, |r| r.bytes_per_connection, true),
            Some(500.0)
        );
        assert_eq!(
            best_peer(&refs, 1, |r| r.bytes_per_connection, true),
            Some(700.0)
        );
        assert_eq!(
            best_peer(&refs, 0, |r| r.accept_per_sec, false),
            Some(2000.0)
        );
        assert_eq!(best_peer(&refs, 2, |r| r.bytes_per_connection, true), None);
        assert_eq!(ratio(Some(250.0), Some(500.0)), "0.50×");
    }
}

//! Results of a bench run: rows, targets, the terminal table and the JSON file.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

/// One server under one WebSocket load.
#[derive(Debug, Clone, Serialize)]
pub struct WsRow {
    /// Server name, e.g. `protolab-ws`, `tungstenite`.
    pub server: String,
    /// Load label, e.g. `100 × 20 B`.
    pub load: String,
    /// Connections.
    pub connections: usize,
    /// Payload bytes.
    pub size: usize,
    /// Echoed messages per second.
    pub msgs_per_sec: Option<f64>,
    /// Server CPU, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Messages per server CPU-second.
    pub msgs_per_server_cpu_sec: Option<f64>,
    /// Client CPU, percent of one core.
    pub client_cpu_pct: Option<f64>,
    /// protolab-ws ÷ this peer (for peers), or protolab-wss ÷ protolab-ws (for wss).
    pub ratio: Option<f64>,
    /// Connections that failed during the run.
    pub failed_connections: usize,
    /// Why the run has no figures, or what went wrong in it.
    pub error: Option<String>,
}

/// One server under wrk.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRow {
    /// Server name: `protolab-http` or `nginx`.
    pub server: String,
    /// URL loaded.
    pub url: String,
    /// Response body bytes.
    pub body_bytes: Option<usize>,
    /// Requests per second (wrk's figure).
    pub req_per_sec: Option<f64>,
    /// wrk's mean latency in ms.
    pub latency_avg_ms: Option<f64>,
    /// wrk's 50th percentile latency in ms.
    pub latency_p50_ms: Option<f64>,
    /// wrk's 99th percentile latency in ms.
    pub latency_p99_ms: Option<f64>,
    /// Server CPU, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Requests per server CPU-second.
    pub req_per_server_cpu_sec: Option<f64>,
    /// wrk's CPU, percent of one core.
    pub client_cpu_pct: Option<f64>,
    /// protolab-http ÷ nginx (on the nginx row).
    pub ratio: Option<f64>,
    /// Non-2xx responses and socket errors wrk reported.
    pub errors: u64,
    /// Why the run has no figures.
    pub error: Option<String>,
}

/// A requirement from the issue, checked on this run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is compared, e.g. `protolab-ws ≥ 1.0× tungstenite (100 × 20 B)`.
    pub name: String,
    /// Required ratio.
    pub goal: f64,
    /// Measured ratio of throughputs, if both sides ran.
    pub ratio: Option<f64>,
    /// The same ratio per server CPU-second, if both sides' CPU was read.
    pub cpu_ratio: Option<f64>,
}

impl Target {
    /// `PASS`, `BELOW`, or `N/A` when a side did not run.
    pub fn verdict(&self) -> &'static str {
        match self.ratio {
            Some(r) if r >= self.goal => "PASS",
            Some(_) => "BELOW",
            None => "N/A",
        }
    }
}

/// Everything one run measured, as written by `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    /// WebSocket rows: the best round per server and load.
    pub ws: Vec<WsRow>,
    /// WebSocket rows of every round.
    pub ws_all: Vec<WsRow>,
    /// HTTP rows: the best round per server.
    pub http: Vec<HttpRow>,
    /// HTTP rows of every round.
    pub http_all: Vec<HttpRow>,
    /// Load average (1 min) when the run started and ended: other work on the machine shows.
    pub loadavg: Option<(f64, f64)>,
    /// Targets, in the order printed.
    pub targets: Vec<Target>,
    /// Client CPU warnings and other notes printed with the table.
    pub notes: Vec<String>,
}

/// The row with the highest `rate` for each `key`, in first-seen key order. A key whose every
/// round failed keeps its first (failed) row.
pub fn best_rows<R: Clone, K: PartialEq>(
    rows: &[R],
    rate: impl Fn(&R) -> Option<f64>,
    key: impl Fn(&R) -> K,
) -> Vec<R> {
    let mut best: Vec<(K, R)> = Vec::new();
    for r in rows {
        let k = key(r);
        match best.iter_mut().find(|(bk, _)| *bk == k) {
            Some((_, b)) => {
                if rate(r).unwrap_or(-1.0) > rate(b).unwrap_or(-1.0) {
                    *b = r.clone();
                }
            }
            None => best.push((k, r.clone())),
        }
    }
    best.into_iter().map(|(_, r)| r).collect()
}

/// The 1-minute load average.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Writes `results` as pretty JSON to `path` (a bench's `--json`), when one was given.
pub fn write_json(path: Option<&Path>, results: &impl Serialize) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    std::fs::write(path, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Median and range of one figure over a bench's rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The lowest value.
    pub min: f64,
    /// The highest value.
    pub max: f64,
}

/// The median, min and max of the finite `values`; `None` when there are none.
pub fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// The load average (1 min) at the start of a run and, once [`LoadWatch::end`] is called, at
/// its end: on a shared machine, other work shows in it.
pub struct LoadWatch(Option<f64>);

impl LoadWatch {
    /// Reads the load average now, as the run starts.
    pub fn start() -> Self {
        Self(loadavg())
    }

    /// The start's and now's load averages, if both could be read.
    pub fn end(self) -> Option<(f64, f64)> {
        self.0.zip(loadavg())
    }
}

/// Client CPU (percent of its core) from which a run counts as client-bound: the client, not
/// the server, set the pace.
pub const CLIENT_BOUND_PCT: f64 = 95.0;

/// The note for a server left out with `--skip`.
pub fn skipped_note(server: &str) -> String {
    format!("{server} skipped (--skip)")
}

/// The note for a client-bound run: `client` (e.g. `h2load`) used `client_cpu_pct` of its core
/// against `run` (the server and the load); `None` below [`CLIENT_BOUND_PCT`] or unread.
pub fn client_bound_note(client: &str, client_cpu_pct: Option<f64>, run: &str) -> Option<String> {
    let cpu = client_cpu_pct.filter(|c| *c >= CLIENT_BOUND_PCT)?;
    Some(format!(
        "client-bound: {client} at {cpu:.0}% CPU against {run}: the ratio understates the faster \
         server; compare the figures per server CPU-second"
    ))
}

/// The lines every bench ends its table with: its `notes` as `note:` lines, one for a debug
/// build of this binary, then the load average over the run.
pub fn trailer(notes: &[String], loadavg: Option<(f64, f64)>) -> String {
    let mut out = String::new();
    for note in notes {
        out.push_str(&format!("note: {note}\n"));
    }
    if cfg!(debug_assertions) {
        out.push_str(
            "note: protolab-bench is a debug build: figures come from release builds \
             (`cargo build --release -p protolab -p protolab-bench`)\n",
        );
    }
    if let Some((start, end)) = loadavg {
        out.push_str(&format!(
            "load average {start:.2} → {end:.2} (1 min; above 2 the machine was shared)\n"
        ));
    }
    out
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
        None => "-".to_owned(),
    }
}

fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}×"))
}

/// Renders the tables, targets and notes.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    if !results.ws.is_empty() {
        out.push_str(&format!(
            "\nWebSocket echo (server on core 0, client on core 1; ratio = protolab-ws ÷ peer, wss row = wss ÷ ws)\n\
             {:<16} {:<12} {:>10} {:>8} {:>13} {:>8} {:>7}\n",
            "server", "load", "msgs/s", "srv CPU%", "msgs/srv-CPU-s", "cli CPU%", "ratio"
        ));
        for r in &results.ws {
            match &r.error {
                Some(e) if r.msgs_per_sec.is_none() => {
                    out.push_str(&format!(
                        "{:<16} {:<12} FAILED: {}\n",
                        r.server,
                        r.load,
                        first_line(e)
                    ));
                }
                _ => out.push_str(&format!(
                    "{:<16} {:<12} {:>10} {:>8} {:>13} {:>8} {:>7}{}\n",
                    r.server,
                    r.load,
                    num(r.msgs_per_sec),
                    num(r.server_cpu_pct),
                    num(r.msgs_per_server_cpu_sec),
                    num(r.client_cpu_pct),
                    ratio(r.ratio),
                    if r.failed_connections > 0 {
                        format!("  ({} connections failed)", r.failed_connections)
                    } else {
                        String::new()
                    }
                )),
            }
        }
    }
    if !results.http.is_empty() {
        out.push_str(&format!(
            "\nHTTP/1.1 keep-alive, wrk on core 1, server on core 0 (ratio = protolab-http ÷ nginx)\n\
             {:<14} {:>6} {:>10} {:>8} {:>8} {:>8} {:>12} {:>8} {:>7}\n",
            "server", "body B", "req/s", "avg ms", "p99 ms", "srv CPU%", "req/srv-CPU-s", "cli CPU%", "ratio"
        ));
        for r in &results.http {
            match &r.error {
                Some(e) if r.req_per_sec.is_none() => {
                    out.push_str(&format!("{:<14} FAILED: {}\n", r.server, first_line(e)));
                }
                _ => out.push_str(&format!(
                    "{:<14} {:>6} {:>10} {:>8} {:>8} {:>8} {:>12} {:>8} {:>7}{}\n",
                    r.server,
                    r.body_bytes
                        .map_or_else(|| "-".to_owned(), |b| b.to_string()),
                    num(r.req_per_sec),
                    r.latency_avg_ms
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
                    r.latency_p99_ms
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
                    num(r.server_cpu_pct),
                    num(r.req_per_server_cpu_sec),
                    num(r.client_cpu_pct),
                    ratio(r.ratio),
                    if r.errors > 0 {
                        format!("  ({} errors)", r.errors)
                    } else {
                        String::new()
                    }
                )),
            }
        }
    }
    if !results.targets.is_empty() {
        out.push_str("\nTargets (throughput ratio; per server-CPU-second ratio in brackets)\n");
        for t in &results.targets {
            out.push_str(&format!(
                "  {:<5} {:<52} {:>7} [{}] (goal {:.1}×)\n",
                t.verdict(),
                t.name,
                ratio(t.ratio),
                ratio(t.cpu_ratio),
                t.goal
            ));
        }
    }
    out.push_str(&trailer(&results.notes, results.loadavg));
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailer_prints_notes_then_the_load_average() {
        let notes = vec![skipped_note("nginx"), "a remark".to_owned()];
        let out = trailer(&notes, Some((0.5, 2.25)));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "note: nginx skipped (--skip)");
        assert_eq!(lines[1], "note: a remark");
        assert_eq!(
            lines.last().copied(),
            Some("load average 0.50 → 2.25 (1 min; above 2 the machine was shared)")
        );
        assert_eq!(
            lines.iter().any(|l| l.contains("debug build")),
            cfg!(debug_assertions)
        );
        assert!(!trailer(&[], None).contains("load average"));
    }

    #[test]
    fn a_run_is_client_bound_from_the_threshold() {
        assert_eq!(client_bound_note("wrk", Some(94.9), "nginx"), None);
        assert_eq!(client_bound_note("wrk", None, "nginx"), None);
        let note = client_bound_note("wrk", Some(CLIENT_BOUND_PCT), "nginx").unwrap_or_default();
        assert!(
            note.starts_with("client-bound: wrk at 95% CPU against nginx: "),
            "{note}"
        );
    }
}

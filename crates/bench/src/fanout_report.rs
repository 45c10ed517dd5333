//! The table of `protolab-bench hub` ([`crate::fanout`]): per server the medians and ranges
//! over rounds, the targets, the ratios against the peers and against the `ws-floor`
//! kernel floor, and the notes.

use crate::fanout::{FanoutResults, Run, OURS, SERVERS};
use crate::fanout_client::Report;

/// Targets from issue 12.
const P99_TARGET_MS: f64 = 50.0;
const RSS_TARGET_BYTES: f64 = 8.0 * 1024.0;
const VS_FLASK_TARGET: f64 = 10.0;
const VS_NODE_TARGET: f64 = 2.0;
/// Subscribers the p99 target is set at.
const TARGET_SUBSCRIBERS: usize = 20_000;

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

    floor_section(results, &mut out);

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
    out.push_str(&crate::report::trailer(&results.notes, results.loadavg));
    out
}

/// The kernel floor: the peer that does nothing but one write per delivery.
const FLOOR: &str = "ws-floor";

/// Each protolab server as a ratio to `ws-floor`, the floor against the targets, and what that
/// says: a target the floor misses is out of reach for any server on this machine.
fn floor_section(results: &FanoutResults, out: &mut String) {
    let fanout =
        |server: &str, f: fn(&Report) -> Option<f64>| figure(results, server, Kind::Fanout, f);
    let dps = |server: &str| fanout(server, |r| r.deliveries_per_cpu_sec);
    let p99 = |server: &str| fanout(server, |r| r.p99_ms);
    let (floor_dps, floor_p99) = (dps(FLOOR), p99(FLOOR));
    if floor_dps.is_none() && floor_p99.is_none() {
        return;
    }
    let tie = |tie: bool| if tie { " (ties within noise)" } else { "" };
    out.push_str(
        "\nagainst the kernel floor (ws-floor: one write(2) of one prebuilt frame per subscriber, nothing else):\n",
    );
    for ours in OURS {
        if let (Some(a), Some(floor)) = (dps(ours), floor_dps) {
            let (r, t) = ratio(a, floor);
            out.push_str(&format!(
                "  deliveries/CPU-s {ours} / ws-floor: {:.0} / {:.0} = {r:.2}×{}\n",
                a.median,
                floor.median,
                tie(t)
            ));
        }
        if let (Some(a), Some(floor)) = (p99(ours), floor_p99) {
            let (r, t) = ratio(a, floor);
            out.push_str(&format!(
                "  p99 {ours} / ws-floor: {:.1} / {:.1} ms = {r:.2}×{}\n",
                a.median,
                floor.median,
                tie(t)
            ));
        }
    }
    let n = results.subscribers;
    let at = if n == 20_000 {
        String::new()
    } else {
        format!(" at {n} subscribers (the target is at 20000)")
    };
    if let Some(floor) = floor_p99 {
        let met = if floor.median <= P99_TARGET_MS {
            "met"
        } else {
            "NOT met"
        };
        out.push_str(&format!(
            "  p99 ws-floor: {:.1} ms (goal ≤ {P99_TARGET_MS} ms){at}: {met}\n",
            floor.median
        ));
        // Below 20,000 the measured p99 says little about 20,000: one core writes a
        // publication's frames one after another, so the 99th percentile subscriber waits for
        // 99% of 20,000 writes at the floor's measured cost per delivery.
        let judged = if n == TARGET_SUBSCRIBERS {
            Some((floor.median, "measured".to_owned()))
        } else if n * 20 >= TARGET_SUBSCRIBERS * 19 {
            // Within 5% of the target count (19,000 is what a hard limit of 20,000 open files
            // allows): the measured p99 stands for it.
            Some((floor.median, format!("measured at {n}")))
        } else {
            floor_dps.map(|dps| {
                let writes_ms = TARGET_SUBSCRIBERS as f64 / dps.median * 1000.0;
                out.push_str(&format!(
                    "  ws-floor at {TARGET_SUBSCRIBERS} (estimate): one publication's writes take \
                     {TARGET_SUBSCRIBERS} / {:.0} deliveries/CPU-s = {writes_ms:.0} ms of CPU, so \
                     its p99 would be about {:.0} ms\n",
                    dps.median,
                    writes_ms * 0.99
                ));
                (
                    writes_ms * 0.99,
                    format!(
                        "estimated from {n} subscribers; measure with --subscribers 19000 or more"
                    ),
                )
            })
        };
        if let Some((p99_ms, how)) = judged {
            let reading = if p99_ms <= P99_TARGET_MS {
                "within reach on this machine: what a server adds to its writes decides it"
            } else {
                "out of reach for any server on this machine: the writes alone take longer"
            };
            out.push_str(&format!(
                "  verdict: p99 ≤ {P99_TARGET_MS} ms at {TARGET_SUBSCRIBERS} subscribers is {reading} ({how})\n"
            ));
        }
    }
    if let (Some(floor), Some(flask)) = (floor_dps, dps("flask-socketio")) {
        let (r, t) = ratio(floor, flask);
        let met = verdict(r, t, VS_FLASK_TARGET);
        let reading = match met {
            "met" => "within reach on this machine: the floor has the headroom",
            "NOT met" => {
                "out of reach for any server on this machine: even one write per delivery and \
                 nothing else is not that much cheaper than Flask-SocketIO"
            }
            _ => "undecided: the floor and Flask-SocketIO overlap within noise",
        };
        out.push_str(&format!(
            "  deliveries/CPU-s ws-floor vs flask-socketio: {r:.2}× (goal ≥ {VS_FLASK_TARGET}×): {met}\n  \
             verdict: {VS_FLASK_TARGET}× Flask-SocketIO's deliveries/CPU-s is {reading}\n"
        ));
    }
}

/// Whether any server failed outright.
pub fn any_failed(results: &FanoutResults) -> bool {
    results.runs.iter().any(|r| r.report.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn fanout_run(server: &str, round: u32, p99_ms: f64, deliveries_per_cpu_sec: f64) -> Run {
        Run {
            server: server.to_owned(),
            round,
            subscribers: 2000,
            throughput: false,
            report: Some(Report {
                connected: 2000,
                p99_ms: Some(p99_ms),
                deliveries_per_cpu_sec: Some(deliveries_per_cpu_sec),
                burst_server_cpu_secs: 1.0,
                ..Report::default()
            }),
            error: None,
        }
    }

    #[test]
    fn the_floor_decides_what_is_reachable() {
        let mut results = FanoutResults {
            subscribers: 2000,
            runs: vec![
                fanout_run("hub-ws", 1, 40.0, 20_000.0),
                fanout_run("hub-ws", 2, 44.0, 22_000.0),
                fanout_run("ws-floor", 1, 10.0, 80_000.0),
                fanout_run("ws-floor", 2, 12.0, 84_000.0),
                fanout_run("flask-socketio", 1, 300.0, 10_000.0),
                fanout_run("flask-socketio", 2, 320.0, 11_000.0),
            ],
            notes: Vec::new(),
            loadavg: None,
        };
        let table = render(&results);
        assert!(
            table.contains("deliveries/CPU-s hub-ws / ws-floor: 21000 / 82000 = 0.26×\n"),
            "{table}"
        );
        assert!(
            table.contains("p99 hub-ws / ws-floor: 42.0 / 11.0 ms = 3.82×\n"),
            "{table}"
        );
        assert!(
            table.contains("p99 ws-floor: 11.0 ms (goal ≤ 50 ms) at 2000 subscribers (the target is at 20000): met"),
            "{table}"
        );
        assert!(
            table.contains(
                "deliveries/CPU-s ws-floor vs flask-socketio: 7.81× (goal ≥ 10×): NOT met"
            ),
            "{table}"
        );
        // 20,000 / 82,000 deliveries/CPU-s is 244 ms of writes: p99 about 241 ms.
        assert!(
            table.contains("one publication's writes take 20000 / 82000 deliveries/CPU-s = 244 ms of CPU, so its p99 would be about 241 ms"),
            "{table}"
        );
        assert!(
            table.contains("verdict: p99 ≤ 50 ms at 20000 subscribers is out of reach for any server on this machine: the writes alone take longer (estimated from 2000 subscribers"),
            "{table}"
        );
        assert!(
            table.contains(
                "verdict: 10× Flask-SocketIO's deliveries/CPU-s is out of reach for any server"
            ),
            "{table}"
        );

        results.subscribers = 20_000;
        let table = render(&results);
        assert!(
            table.contains("verdict: p99 ≤ 50 ms at 20000 subscribers is within reach on this machine: what a server adds to its writes decides it (measured)"),
            "{table}"
        );
        results.subscribers = 19_000;
        let table = render(&results);
        assert!(
            table.contains("decides it (measured at 19000)") && !table.contains("(estimate)"),
            "{table}"
        );

        results.runs.retain(|r| r.server != "ws-floor");
        assert!(!render(&results).contains("kernel floor"));
    }
}

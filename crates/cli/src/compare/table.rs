//! The side-by-side text table: protocols as columns, one block of rows per workload.

use protolab_load::{Report, Workload};

use super::model::{Change, Results, Run};
// The number formats live in `crate::units`, below the results model, which labels its
// changes with them too; the renderers keep finding them here.
pub use crate::units::{count, micros, size_label};

/// `value` formatted, or where the run had rounds, its median round with the furthest round's
/// distance from it (`12,345 ±3%`) and `?` when that is noisy.
pub(super) fn with_spread(run: &Run, path: &str, value: f64, format: fn(f64) -> String) -> String {
    match run.spread.get(path) {
        Some(sp) => format!(
            "{} ±{:.0}%{}",
            format(sp.median),
            sp.deviation * 100.0,
            if sp.noisy { "?" } else { "" }
        ),
        None => format(value),
    }
}

/// A run's median round of the figure at `path`, or `value` with one round.
fn median_or(run: &Run, path: &str, value: Option<f64>) -> Option<f64> {
    run.spread.get(path).map(|sp| sp.median).or(value)
}

/// `?` when any of the figures at `paths` is noisy.
fn noisy_mark(run: &Run, paths: &[&str]) -> &'static str {
    if paths
        .iter()
        .any(|p| run.spread.get(*p).is_some_and(|sp| sp.noisy))
    {
        "?"
    } else {
        ""
    }
}

fn bytes_pair(sent: Option<f64>, received: Option<f64>) -> String {
    match (sent, received) {
        (Some(s), Some(r)) => format!("{s:.0} / {r:.0}"),
        _ => "-".to_owned(),
    }
}

/// One block: a title and rows of per-protocol cells.
struct Block {
    title: String,
    rows: Vec<(String, Vec<String>)>,
}

/// The table for `results`, protocols as columns.
pub fn render(results: &Results) -> String {
    let protocols = &results.settings.protocols;
    let mut blocks = Vec::new();
    let s = &results.settings;
    for workload in [
        Workload::Connect,
        Workload::Echo,
        Workload::Push,
        Workload::Fanin,
    ] {
        let mut sizes: Vec<usize> = results
            .runs
            .iter()
            .filter(|r| r.workload == workload)
            .map(|r| r.size)
            .collect();
        sizes.dedup();
        for size in sizes {
            let cell = |p: &String| {
                results
                    .runs
                    .iter()
                    .find(|r| &r.protocol == p && r.workload == workload && r.size == size)
            };
            let runs: Vec<Option<&Run>> = protocols.iter().map(cell).collect();
            let title = match workload {
                Workload::Connect => format!(
                    "connect · new connection per {} message · {} workers",
                    size_label(size),
                    s.connections
                ),
                Workload::Echo => format!(
                    "echo · {} messages · {} connections · {}",
                    size_label(size),
                    s.connections,
                    s.rate.map_or_else(
                        || "closed loop".to_owned(),
                        |r| format!("open loop at {} msgs/s", count(r))
                    )
                ),
                Workload::Push => format!(
                    "push · server → client every {} ms · {} connections",
                    s.push_interval_ms, s.connections
                ),
                Workload::Fanin => format!(
                    "fanin · {} {} requests in flight · one connection for h2 and gRPC, {} for HTTP/1.1",
                    s.connections,
                    size_label(size),
                    s.connections
                ),
            };
            blocks.push(Block {
                title,
                rows: rows(workload, &runs, results.lab_site.server_cpu_measured),
            });
        }
    }
    let label_width = blocks
        .iter()
        .flat_map(|b| b.rows.iter().map(|(l, _)| l.chars().count() + 2))
        .max()
        .unwrap_or(0);
    let col_width = blocks
        .iter()
        .flat_map(|b| b.rows.iter().flat_map(|(_, c)| c.iter()))
        .map(|c| c.chars().count())
        .chain(protocols.iter().map(String::len))
        .max()
        .unwrap_or(0)
        + 2;
    let mut out = String::new();
    if results.partial {
        out.push_str("PARTIAL: the run was interrupted; below is what was measured until then\n");
    }
    out.push_str(&results.lab_site.describe());
    out.push('\n');
    if s.rounds > 1 {
        out.push_str(&format!(
            "rounds: {} of every run, one round of all runs after another; figures are the median round, ±: the furthest round from it\n",
            s.rounds
        ));
    }
    if let Some(wan) = &s.wan {
        out.push_str(&format!("WAN link: {}\n", wan.describe()));
    }
    if s.payload == protolab_load::Payload::Json {
        out.push_str(
            "payload: JSON records, new values every WebSocket message (for permessage-deflate)\n",
        );
    }
    out.push_str(&format!("{:label_width$}", ""));
    for p in protocols {
        out.push_str(&format!("{p:>col_width$}"));
    }
    out.push('\n');
    let any_rows = !blocks.is_empty();
    for block in blocks {
        out.push_str(&block.title);
        out.push('\n');
        for (label, cells) in block.rows {
            let label = format!("  {label}");
            out.push_str(&format!("{label:label_width$}"));
            for c in cells {
                out.push_str(&format!("{c:>col_width$}"));
            }
            out.push('\n');
        }
    }
    if any_rows {
        out.push_str(&legend(results));
    }
    out
}

/// What the table's marks mean, under it.
fn legend(results: &Results) -> String {
    let mut out = String::from(
        "↑ / ↓: client → server / server → client (bytes per message, or per connection for handshakes and session tickets)\n\
         on the wire: TCP payload (TLS records, HTTP heads, WebSocket framing); frame bytes add each packet's link, IP and TCP headers as a capture shows them\n\
         post-handshake TLS: TLS 1.3 session tickets, counted on their own line for https and wss alike, in no handshake or message figure\n\
         packets, frame bytes, retransmissions: the kernel's counters of the load generator's sockets (retransmissions client → server only)\n",
    );
    if results
        .runs
        .iter()
        .any(|r| r.round_trips.is_some_and(|rt| rt.disagree))
    {
        out.push_str(&format!(
            "! on measured round trips: more than {} round trips from the counted figure (the warning below has the numbers)\n",
            super::model::ROUND_TRIP_TOLERANCE
        ));
    }
    if results
        .runs
        .iter()
        .any(|r| r.cpu.is_some_and(|c| c.fixed_cost_per_second))
    {
        out.push_str(
            "~: open loop at --rate: CPU per message includes the per-second cost of waking on the schedule, which a low rate spreads over few messages; compare cores busy instead, or per-message CPU of closed-loop runs\n",
        );
    }
    if !results.lab_site.server_cpu_measured {
        out.push_str("n/a: server CPU not measured: the lab ran elsewhere, outside this process\n");
    }
    if results
        .runs
        .iter()
        .any(|r| r.spread.values().any(|sp| sp.noisy))
    {
        out.push_str(&format!(
            "?: noisy: a round lay more than {:.0}% from the median, so a difference between protocols smaller than that is not shown by this run\n",
            super::spread::NOISY_ABOVE * 100.0
        ));
    }
    if results.runs.iter().any(|r| r.machine_bound) {
        out.push_str(&format!(
            "#: the machine limited that run, not the protocol: threads waited for a CPU over {:.0}% of the run, the hypervisor stole over {:.0}%, or the userspace WAN link fell behind its schedule (the warning below has the numbers)\n",
            super::contention::WAIT_LIMIT * 100.0,
            super::contention::STEAL_LIMIT * 100.0
        ));
    }
    if results.runs.iter().any(|r| r.client_bound) {
        out.push_str(
            "!: the load generator's threads were nearly all busy in that run, so its figures may show the generator's limit rather than the protocol's (the warning below has the numbers)\n",
        );
    }
    out
}

fn rows(workload: Workload, runs: &[Option<&Run>], server_cpu: bool) -> Vec<(String, Vec<String>)> {
    let reports: Vec<Option<&Report>> = runs
        .iter()
        .map(|r| r.and_then(|r| r.report.as_ref()))
        .collect();
    let na = |run: &Option<&Run>| match run {
        None => "n/a".to_owned(),
        Some(r) if r.report.is_none() => "failed".to_owned(),
        Some(_) => "-".to_owned(),
    };
    let row = |f: &dyn Fn(&Report, &Run) -> Option<String>| -> Vec<String> {
        runs.iter()
            .zip(&reports)
            .map(|(run, rep)| match (run, rep) {
                (Some(run), Some(rep)) => f(rep, run).unwrap_or_else(|| "-".to_owned()),
                _ => na(run),
            })
            .collect()
    };
    let lat = |path: &'static str, pick: fn(&protolab_load::Summary) -> f64| {
        move |r: &Report, run: &Run| {
            r.latency
                .as_ref()
                .map(|l| with_spread(run, path, pick(l), micros))
        }
    };
    let throughput = |r: &Report, run: &Run| {
        Some(with_spread(
            run,
            "report.throughput_per_sec",
            r.throughput_per_sec,
            count,
        ))
    };
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    match workload {
        Workload::Connect => {
            out.push(("connections/s".into(), row(&throughput)));
            out.push((
                "connect → first echo p50".into(),
                row(&lat("report.latency.p50_us", |l| l.p50_us)),
            ));
            out.push((
                "  p99".into(),
                row(&lat("report.latency.p99_us", |l| l.p99_us)),
            ));
            out.push((
                "round trips to first echo (counted)".into(),
                row(&|r, _| r.round_trips_to_first_echo.map(|v| format!("{v:.1}"))),
            ));
            if runs
                .iter()
                .flatten()
                .any(|r| r.round_trips.is_some_and(|rt| rt.measured.is_some()))
            {
                out.push((
                    "  measured (p50 time ÷ RTT)".into(),
                    row(&|_, run| {
                        let rt = run.round_trips?;
                        let flag = if rt.disagree { " !" } else { "" };
                        rt.measured.map(|m| format!("{m:.1}{flag}"))
                    }),
                ));
            }
            let phase = |path: &'static str,
                         pick: fn(&protolab_load::Phases) -> &Option<protolab_load::Summary>| {
                move |r: &Report, run: &Run| {
                    pick(&r.phases)
                        .as_ref()
                        .map(|s| with_spread(run, path, s.p50_us, micros))
                }
            };
            out.push((
                "TCP connect p50".into(),
                row(&phase("report.phases.tcp_connect.p50_us", |p| {
                    &p.tcp_connect
                })),
            ));
            out.push((
                "TLS handshake p50".into(),
                row(&phase("report.phases.tls_handshake.p50_us", |p| {
                    &p.tls_handshake
                })),
            ));
            out.push((
                "WS upgrade p50".into(),
                row(&phase("report.phases.ws_upgrade.p50_us", |p| &p.ws_upgrade)),
            ));
            out.push((
                "handshake bytes ↑ / ↓".into(),
                row(&|r, _| {
                    Some(bytes_pair(
                        r.bytes.handshake_sent_per_connection,
                        r.bytes.handshake_received_per_connection,
                    ))
                }),
            ));
        }
        Workload::Echo | Workload::Push | Workload::Fanin => {
            let unit = if workload == Workload::Push {
                "pushes/s"
            } else {
                "msgs/s"
            };
            out.push((unit.into(), row(&throughput)));
            let what = if workload == Workload::Push {
                "delivery delay"
            } else {
                "latency"
            };
            out.push((
                format!("{what} p50"),
                row(&lat("report.latency.p50_us", |l| l.p50_us)),
            ));
            out.push((
                "  p99".into(),
                row(&lat("report.latency.p99_us", |l| l.p99_us)),
            ));
            out.push((
                "  p99.9".into(),
                row(&lat("report.latency.p999_us", |l| l.p999_us)),
            ));
        }
    }
    if reports
        .iter()
        .flatten()
        .any(|r| r.bytes.post_handshake_tls_received_per_connection.is_some())
    {
        out.push((
            "post-handshake TLS (session tickets) ↓".into(),
            row(&|r, _| {
                r.bytes
                    .post_handshake_tls_received_per_connection
                    .map(|v| format!("{v:.0}"))
            }),
        ));
    }
    out.push((
        "bytes/msg on the wire ↑ / ↓".into(),
        row(&|r, run| {
            let mark = noisy_mark(
                run,
                &[
                    "report.bytes.sent_per_message",
                    "report.bytes.received_per_message",
                ],
            );
            Some(bytes_pair(r.bytes.sent_per_message, r.bytes.received_per_message) + mark)
        }),
    ));
    out.push((
        "packets/msg".into(),
        row(&|r, _| r.tcp.packets_per_message.map(|v| format!("{v:.1}"))),
    ));
    out.push((
        "frame bytes/msg (+ L2-L4 headers)".into(),
        row(&|r, _| r.tcp.frame_bytes_per_message.map(|v| format!("{v:.0}"))),
    ));
    out.push((
        "retransmitted ↑ bytes (share)".into(),
        row(&|r, _| {
            (r.tcp.connections_sampled > 0).then(|| {
                format!(
                    "{} ({:.2}%)",
                    r.tcp.retransmitted_bytes,
                    r.tcp.retransmitted_share.unwrap_or(0.0) * 100.0
                )
            })
        }),
    ));
    if reports.iter().flatten().any(|r| r.polls.is_some()) {
        out.push((
            "polls/msg (empty share)".into(),
            row(&|r, _| {
                let polls = r.polls?;
                let per_event = polls.per_event?;
                #[allow(clippy::cast_precision_loss)]
                let empty = polls.empty as f64 / polls.requests.max(1) as f64;
                Some(format!("{per_event:.2} ({:.0}%)", empty * 100.0))
            }),
        ));
    }
    if reports.iter().flatten().any(|r| r.compression.is_some()) {
        out.push((
            "compressed payload ↑ / ↓".into(),
            row(&|r, _| match &r.compression {
                None => Some("-".to_owned()),
                Some(c) if c.agreed.is_none() => Some("declined".to_owned()),
                Some(_) => Some(bytes_pair(
                    r.bytes.frame_payload_sent_per_message,
                    r.bytes.frame_payload_received_per_message,
                )),
            }),
        ));
    }
    out.push((
        "CPU µs/1k msgs client / server".into(),
        row(&|_, run| {
            let cpu = run.cpu?;
            let f = |v: Option<f64>| v.map_or("-".to_owned(), count);
            let warn = match (run.client_bound, cpu.fixed_cost_per_second) {
                (true, _) => " !",
                (false, true) => " ~",
                (false, false) => "",
            };
            let server = if server_cpu {
                f(median_or(run, "cpu.server_us_per_1k", cpu.server_us_per_1k))
            } else {
                "n/a".to_owned()
            };
            let noisy = noisy_mark(run, &["cpu.client_us_per_1k", "cpu.server_us_per_1k"]);
            Some(format!(
                "{} / {server}{noisy}{warn}",
                f(median_or(run, "cpu.client_us_per_1k", cpu.client_us_per_1k))
            ))
        }),
    ));
    out.push((
        "CPU cores busy client / server".into(),
        row(&|_, run| {
            let cpu = run.cpu?;
            let server = cpu
                .server_cores
                .map_or_else(|| "n/a".to_owned(), |c| format!("{c:.2}"));
            Some(format!("{:.2} / {server}", cpu.client_cores))
        }),
    ));
    out.push((
        "waited for a CPU client / server".into(),
        row(&|_, run| {
            let c = run.contention.as_ref()?;
            let server = c
                .server_wait_share
                .map_or_else(|| "n/a".to_owned(), |w| format!("{:.0}%", w * 100.0));
            let mark = if run.machine_bound { " #" } else { "" };
            Some(format!(
                "{:.0}% / {server}{mark}",
                c.client_wait_share * 100.0
            ))
        }),
    ));
    if runs
        .iter()
        .flatten()
        .any(|r| r.contention.as_ref().is_some_and(|c| c.link.is_some()))
    {
        out.push((
            "WAN link late (mean) / CPU".into(),
            row(&|_, run| {
                let l = run.contention.as_ref()?.link?;
                let mark = if l.behind_schedule { " #" } else { "" };
                Some(format!(
                    "{} / {:.2}{mark}",
                    l.mean_late_us.map_or_else(|| "-".to_owned(), micros),
                    l.cpu_cores
                ))
            }),
        ));
    }
    let errors: Vec<String> = row(&|r, _| Some(r.errors.total().to_string()));
    if errors.iter().any(|e| e != "0" && e != "-" && e != "n/a") {
        out.push(("errors".into(), errors));
    }
    out
}

/// The baseline comparison as text.
pub fn render_changes(changes: &[Change]) -> String {
    let width = changes
        .iter()
        .map(|c| c.run.chars().count() + c.metric.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in changes {
        let name = format!("{} {}", c.run, c.metric);
        out.push_str(&format!(
            "  {name:width$}  {:>12.1} → {:>12.1}  {:+6.1}%\n",
            c.before,
            c.after,
            c.percent()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(client_bound: bool) -> Results {
        let cpu = crate::compare::model::Cpu {
            client_secs: 1.0,
            server_secs: Some(0.5),
            client_us_per_1k: Some(10.0),
            server_us_per_1k: Some(5.0),
            client_utilization: if client_bound { 0.97 } else { 0.4 },
            server_utilization: Some(0.5),
            client_cores: 0.4,
            server_cores: Some(0.5),
            fixed_cost_per_second: false,
        };
        Results {
            schema: "protolab.compare.results",
            schema_version: crate::compare::model::SCHEMA_VERSION,
            protolab_version: "test",
            started_at: "2026-01-01T00:00:00Z".to_owned(),
            elapsed_secs: 1.0,
            settings: crate::compare::model::Settings {
                wan: None,
                protocols: vec!["ws".to_owned()],
                payload: protolab_load::Payload::Alphabet,
                workloads: vec!["echo".to_owned()],
                sizes: vec![32],
                connections: 1,
                run_secs: 1.0,
                rounds: 1,
                rate: None,
                push_interval_ms: 10,
                tls_resumption: false,
                server_threads: Some(1),
                client_threads: 1,
            },
            machine: crate::compare::model::machine(),
            lab_site: crate::compare::model::LabSite::in_process(),
            lab: Vec::new(),
            runs: vec![Run {
                protocol: "ws".to_owned(),
                workload: Workload::Echo,
                size: 32,
                report: None,
                cpu: Some(cpu),
                client_bound,
                round_trips: None,
                error: None,
                rounds: 1,
                spread: std::collections::BTreeMap::new(),
                contention: None,
                machine_bound: false,
            }],
            warnings: Vec::new(),
            partial: false,
            capture: None,
            ratios: Vec::new(),
        }
    }

    #[test]
    fn the_marks_are_explained_under_the_table() {
        let plain = render(&results(false));
        assert!(
            plain.contains("↑ / ↓: client → server / server → client"),
            "{plain}"
        );
        assert!(
            !plain.contains("\n!: "),
            "no run was client-bound:\n{plain}"
        );
        let bound = render(&results(true));
        assert!(
            bound.contains("\n!: the load generator's threads were nearly all busy"),
            "{bound}"
        );
        assert!(
            !plain.contains("\n#: ") && !plain.contains("\n?: "),
            "{plain}"
        );
        let mut busy = results(false);
        busy.runs[0].machine_bound = true;
        busy.runs[0].spread.insert(
            "report.throughput_per_sec".to_owned(),
            crate::compare::spread::Spread::of(&[100.0, 80.0, 101.0]).unwrap(),
        );
        let busy = render(&busy);
        assert!(
            busy.contains("\n#: the machine limited that run") && busy.contains("\n?: noisy"),
            "{busy}"
        );
    }
}

//! The HTML report's figures: one table per workload, each with only the columns that mean
//! something for it (round trips on connect rows, bytes per push as sent on push rows), sized
//! to fit a 1024 px page without wrapping a value.

use std::fmt::Write as _;

use protolab_load::{Report, Workload};

use super::super::model::{Results, Run, ROUND_TRIP_TOLERANCE};
use super::super::table::{count, micros, size_label, with_spread};
use super::esc;
use super::findings::megabytes_per_sec;
use crate::units::figure;

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

fn bytes(v: f64) -> String {
    if v >= 10_000.0 {
        count(v)
    } else {
        format!("{v:.1}")
    }
}

fn pair(a: Option<f64>, b: Option<f64>, f: impl Fn(f64) -> String) -> String {
    format!("{} / {}", opt(a, &f), opt(b, &f))
}

/// Client CPU, marked when the client was the limit (⚠) or the figure carries an open loop's
/// fixed cost (~).
fn cpu_cell(run: &Run, per: f64) -> String {
    let cpu = run.cpu.as_ref();
    let mark = if run.client_bound {
        " ⚠"
    } else if cpu.is_some_and(|c| c.fixed_cost_per_second) {
        " ~"
    } else {
        ""
    };
    format!(
        "{}{mark} / {}",
        opt(cpu.and_then(|c| c.client_us_per_1k), |v| count(v / per)),
        opt(cpu.and_then(|c| c.server_us_per_1k), |v| count(v / per)),
    )
}

/// CPU seconds per second of the run, client / server: cores kept busy.
fn cores(run: &Run) -> String {
    run.cpu.as_ref().map_or_else(
        || "-".to_owned(),
        |c| {
            format!(
                "{:.2} / {}{}",
                c.client_cores,
                opt(c.server_cores, |v| format!("{v:.2}")),
                if run.machine_bound { " #" } else { "" }
            )
        },
    )
}

fn errors_cell(rep: &Report) -> String {
    count(rep.errors.total() as f64)
}

fn retransmitted(rep: &Report) -> String {
    format!(
        "{} B ({:.2}%)",
        count(rep.tcp.retransmitted_bytes as f64),
        rep.tcp.retransmitted_share.unwrap_or(0.0) * 100.0
    )
}

/// The runs of one workload, in the order run.
fn of(r: &Results, workload: Workload) -> impl Iterator<Item = &Run> {
    r.runs.iter().filter(move |x| x.workload == workload)
}

/// The row of a run that produced nothing.
fn did_not_run(out: &mut String, run: &Run, columns: usize) {
    let _ = write!(
        out,
        "<tr><td>{}</td><td class=note colspan={}>did not run: {}</td></tr>",
        esc(&run.protocol),
        columns - 1,
        esc(run.error.as_deref().unwrap_or("unknown"))
    );
}

fn connect_table(r: &Results, out: &mut String) {
    const COLUMNS: usize = 10;
    out.push_str("<h3>connect: a new connection each time</h3><table><tr><th>protocol</th><th>connections/s</th><th>to first echo p50 / p99</th><th>handshake B ↑ / ↓</th><th>session tickets B ↓</th><th>round trips counted</th><th>measured (p50 ÷ RTT)</th><th>packets</th><th>CPU µs/conn client / server</th><th>errors</th></tr>");
    for run in of(r, Workload::Connect) {
        let Some(rep) = &run.report else {
            did_not_run(out, run, COLUMNS);
            continue;
        };
        let l = rep.latency.as_ref();
        let b = &rep.bytes;
        let measured = match run
            .round_trips
            .and_then(|rt| rt.measured.map(|m| (m, rt.disagree)))
        {
            Some((m, true)) => format!("{m:.1} ⚠"),
            Some((m, false)) => format!("{m:.1}"),
            None => "-".to_owned(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{measured}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&run.protocol),
            with_spread(run, "report.throughput_per_sec", rep.throughput_per_sec, count),
            pair(l.map(|l| l.p50_us), l.map(|l| l.p99_us), micros),
            pair(
                b.handshake_sent_per_connection,
                b.handshake_received_per_connection,
                count
            ),
            opt(b.post_handshake_tls_received_per_connection, count),
            opt(rep.round_trips_to_first_echo, |v| format!("{v:.1}")),
            opt(rep.tcp.packets_per_message, |v| format!("{v:.1}")),
            cpu_cell(run, 1000.0),
            errors_cell(rep),
        );
    }
    out.push_str("</table>");
    let _ = write!(
        out,
        "<p class=note>Round trips counted are the TCP handshake plus every read that waited on the server; measured ones (with an emulated RTT) are the median connect → first echo time over the RTT, flagged ⚠ when more than {ROUND_TRIP_TOLERANCE} round trips from the count. Session tickets are TLS 1.3's post-handshake records, in neither the handshake nor the message bytes.</p>"
    );
}

fn echo_table(r: &Results, out: &mut String) {
    // Two tables of the same rows, time then cost, so each fits the page.
    out.push_str("<h3>echo: messages on open connections · rate and latency</h3><table><tr><th>protocol</th><th>size</th><th>msgs/s</th><th>MB/s each way</th><th>p50</th><th>p99</th><th>p99.9</th><th>max</th><th>errors</th></tr>");
    for run in of(r, Workload::Echo) {
        let Some(rep) = &run.report else {
            did_not_run(out, run, 9);
            continue;
        };
        let l = rep.latency.as_ref();
        let lat = |path: &str, v: Option<f64>| opt(v, |v| with_spread(run, path, v, micros));
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&run.protocol),
            esc(&size_label(run.size)),
            with_spread(run, "report.throughput_per_sec", rep.throughput_per_sec, count),
            figure(megabytes_per_sec(rep, run.size)),
            lat("report.latency.p50_us", l.map(|l| l.p50_us)),
            lat("report.latency.p99_us", l.map(|l| l.p99_us)),
            lat("report.latency.p999_us", l.map(|l| l.p999_us)),
            opt(l.map(|l| l.max_us), micros),
            errors_cell(rep),
        );
    }
    out.push_str("</table>");
    out.push_str("<h3>echo · bytes and CPU per message</h3><table><tr><th>protocol</th><th>size</th><th>bytes/msg ↑ / ↓</th><th>packets/msg</th><th>frame B/msg</th><th>retransmitted ↑</th><th>CPU µs/1k client / server</th><th>cores busy client / server</th></tr>");
    for run in of(r, Workload::Echo) {
        let Some(rep) = &run.report else {
            continue;
        };
        let b = &rep.bytes;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&run.protocol),
            esc(&size_label(run.size)),
            pair(b.sent_per_message, b.received_per_message, bytes),
            opt(rep.tcp.packets_per_message, |v| format!("{v:.1}")),
            opt(rep.tcp.frame_bytes_per_message, count),
            retransmitted(rep),
            cpu_cell(run, 1.0),
            cores(run),
        );
    }
    out.push_str("</table>");
}

fn push_table(r: &Results, out: &mut String) {
    const COLUMNS: usize = 9;
    let s = &r.settings;
    let nominal = 1000.0 / s.push_interval_ms as f64 * s.connections as f64;
    let _ = write!(
        out,
        "<h3>push: the server sends every {} ms on each of {} connections ({}/s scheduled)</h3><table><tr><th>protocol</th><th>message as sent</th><th>pushes/s delivered</th><th>of schedule</th><th>delay p50 / p99</th><th>delay max</th><th>bytes/push ↓ (above TLS)</th><th>packets · frame B /push</th><th>errors</th></tr>",
        s.push_interval_ms,
        s.connections,
        count(nominal)
    );
    for run in of(r, Workload::Push) {
        let Some(rep) = &run.report else {
            did_not_run(out, run, COLUMNS);
            continue;
        };
        let l = rep.latency.as_ref();
        let b = &rep.bytes;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{} · {}</td><td>{}</td></tr>",
            esc(&run.protocol),
            opt(b.payload_received_per_message, |v| format!("{v:.1} B")),
            with_spread(run, "report.throughput_per_sec", rep.throughput_per_sec, count),
            100.0 * rep.throughput_per_sec / nominal,
            pair(l.map(|l| l.p50_us), l.map(|l| l.p99_us), micros),
            opt(l.map(|l| l.max_us), micros),
            opt(b.received_per_message, bytes),
            opt(b.above_tls_received_per_message, bytes),
            opt(rep.tcp.packets_per_message, |v| format!("{v:.1}")),
            opt(rep.tcp.frame_bytes_per_message, count),
            errors_cell(rep),
        );
    }
    out.push_str("</table><p class=note>Bytes per push are charged only over whole messages: pushes read ahead in one read wait for the buffer to drain, so the figure is the frames' own bytes (WebSocket header + payload, plus the TLS record for wss).</p>");
}

/// Every run's figures, a table per workload, with what its marks mean under them.
pub(super) fn figures_table(r: &Results) -> String {
    let mut out = String::new();
    let has = |w: Workload| r.runs.iter().any(|x| x.workload == w);
    if has(Workload::Connect) {
        connect_table(r, &mut out);
    }
    if has(Workload::Echo) {
        echo_table(r, &mut out);
    }
    if has(Workload::Push) {
        push_table(r, &mut out);
    }
    let errors: Vec<String> = r
        .runs
        .iter()
        .filter_map(|run| {
            let rep = run.report.as_ref()?;
            let first = rep.errors.first.as_deref()?;
            Some(format!(
                "{} {} {}: {} ({})",
                run.protocol,
                run.workload.as_str(),
                size_label(run.size),
                count(rep.errors.total() as f64),
                first
            ))
        })
        .collect();
    if !errors.is_empty() {
        out.push_str("<p class=note>First error of each run that had any:</p><ul class=note>");
        for e in errors {
            let _ = write!(out, "<li>{}</li>", esc(&e));
        }
        out.push_str("</ul>");
    }
    if r.settings.rounds > 1 {
        let _ = write!(
            out,
            "<p class=note>{} rounds of every run: messages/s and latencies are the median round, ± the furthest round from it; ? marks a noisy figure (a round over {:.0}% from the median: differences smaller than that are not shown by this run). The other figures pool all rounds.</p>",
            r.settings.rounds,
            super::super::spread::NOISY_ABOVE * 100.0
        );
    }
    if r.runs.iter().any(|run| run.machine_bound) {
        out.push_str("<p class=note>#: the machine limited that run, not the protocol (threads waited for a CPU, steal, or the userspace WAN link fell behind its schedule); the warnings above have the numbers.</p>");
    }
    if r.runs.iter().any(|run| run.client_bound) {
        out.push_str("<p class=note>⚠ on client CPU: the load generator was busy ≥ 90% of the run, so the figure may show the client's limit, not the protocol's.</p>");
    }
    if r.runs
        .iter()
        .any(|run| run.cpu.is_some_and(|c| c.fixed_cost_per_second))
    {
        out.push_str("<p class=note>~: open loop at a fixed rate: CPU per message includes the per-second cost of waking on the schedule, which a low rate spreads over few messages. Compare cores busy between open-loop runs, and CPU per message between closed-loop runs.</p>");
    }
    out
}

//! The HTML report's table of every figure, one row per run.

use std::fmt::Write as _;

use super::super::model::{Results, ROUND_TRIP_TOLERANCE};
use super::super::table::{count, micros, size_label, with_spread};
use super::esc;

/// Every run's figures in one table, with what its marks mean under it.
pub(super) fn figures_table(r: &Results) -> String {
    let mut out = String::from(
        "<table><tr><th>protocol</th><th>workload</th><th>size</th><th>messages/s</th><th>p50</th><th>p99</th><th>p99.9</th><th>max</th>\
<th>bytes/msg ↑</th><th>bytes/msg ↓</th><th>handshake ↑/↓</th><th>post-handshake TLS (session tickets) ↓</th><th>packets/msg</th><th>frame bytes/msg</th><th>retransmitted ↑</th>\
<th>round trips counted</th><th>round trips measured (p50 ÷ RTT)</th><th>CPU µs/1k client</th><th>CPU µs/1k server</th><th>CPU cores busy client / server</th><th>errors</th></tr>",
    );
    for run in &r.runs {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td>",
            esc(&run.protocol),
            run.workload.as_str(),
            esc(&size_label(run.size))
        );
        let Some(rep) = &run.report else {
            let _ = write!(
                out,
                "<td colspan=19>did not run: {}</td></tr>",
                esc(run.error.as_deref().unwrap_or("unknown"))
            );
            continue;
        };
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_owned(), f);
        let l = rep.latency.as_ref();
        let b = &rep.bytes;
        let cpu = run.cpu.as_ref();
        let errors = if rep.errors.total() == 0 {
            "0".to_owned()
        } else {
            format!(
                "{} ({})",
                rep.errors.total(),
                esc(rep.errors.first.as_deref().unwrap_or(""))
            )
        };
        let retransmitted = format!(
            "{} ({:.2}%)",
            rep.tcp.retransmitted_bytes,
            rep.tcp.retransmitted_share.unwrap_or(0.0) * 100.0
        );
        let measured = match run
            .round_trips
            .and_then(|rt| rt.measured.map(|m| (m, rt.disagree)))
        {
            Some((m, true)) => format!("{m:.1} ⚠ (over {ROUND_TRIP_TOLERANCE} apart)"),
            Some((m, false)) => format!("{m:.1}"),
            None => "-".to_owned(),
        };
        let client_mark = if run.client_bound {
            " ⚠"
        } else if cpu.is_some_and(|c| c.fixed_cost_per_second) {
            " ~"
        } else {
            ""
        };
        let machine_mark = if run.machine_bound { " #" } else { "" };
        let cores = cpu.map_or("-".to_owned(), |c| {
            let server = c
                .server_cores
                .map_or("n/a".to_owned(), |v| format!("{v:.2}"));
            format!("{:.2} / {server}{machine_mark}", c.client_cores)
        });
        let lat = |path: &str, v: Option<f64>| {
            v.map_or("-".to_owned(), |v| with_spread(run, path, v, micros))
        };
        let _ = write!(
            out,
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{retransmitted}</td><td>{}</td><td>{measured}</td><td>{}{client_mark}</td><td>{}</td><td>{cores}</td><td>{errors}</td></tr>",
            with_spread(run, "report.throughput_per_sec", rep.throughput_per_sec, count),
            lat("report.latency.p50_us", l.map(|l| l.p50_us)),
            lat("report.latency.p99_us", l.map(|l| l.p99_us)),
            lat("report.latency.p999_us", l.map(|l| l.p999_us)),
            opt(l.map(|l| l.max_us), &micros),
            opt(b.sent_per_message, &|v| format!("{v:.1}")),
            opt(b.received_per_message, &|v| format!("{v:.1}")),
            opt(b.handshake_sent_per_connection, &|v| format!("{v:.0}")),
            opt(b.handshake_received_per_connection, &|v| format!("{v:.0}")),
            opt(b.post_handshake_tls_received_per_connection, &|v| format!("{v:.0}")),
            opt(rep.tcp.packets_per_message, &|v| format!("{v:.1}")),
            opt(rep.tcp.frame_bytes_per_message, &|v| format!("{v:.0}")),
            opt(rep.round_trips_to_first_echo, &|v| format!("{v:.1}")),
            opt(cpu.and_then(|c| c.client_us_per_1k), &count),
            opt(cpu.and_then(|c| c.server_us_per_1k), &count),
        );
    }
    out.push_str("</table>");
    if r.settings.rounds > 1 {
        let _ = write!(
            out,
            "<p>{} rounds of every run: messages/s and latencies are the median round, ± the furthest round from it; ? marks a noisy figure (a round over {:.0}% from the median: differences smaller than that are not shown by this run). The other figures pool all rounds.</p>",
            r.settings.rounds,
            super::super::rounds::NOISY_ABOVE * 100.0
        );
    }
    if r.runs.iter().any(|run| run.machine_bound) {
        out.push_str("<p>#: the machine limited that run, not the protocol (threads waited for a CPU, steal, or the userspace WAN link fell behind its schedule); the warnings above have the numbers.</p>");
    }
    if r.runs
        .iter()
        .any(|run| run.cpu.is_some_and(|c| c.fixed_cost_per_second))
    {
        out.push_str("<p>~: open loop at a fixed rate: CPU per message includes the per-second cost of waking on the schedule, which a low rate spreads over few messages. Compare cores busy between open-loop runs, and CPU per message between closed-loop runs.</p>");
    }
    let _ = write!(
        out,
        "<p>Round trips counted are the TCP handshake plus every read that waited on the server; measured ones (with an emulated RTT) are the median connect → first echo time over the RTT, flagged ⚠ when more than {ROUND_TRIP_TOLERANCE} round trips from the count.</p>"
    );
    out
}

//! The report's opening: what this run found, in plain words, every number computed from
//! the results. Each number is an HTML `<data>` element whose `value` is the unrounded
//! figure, so a reader (or a test) can hold the sentence against results.json.

use std::fmt::Write as _;

use protolab_load::{Report, Workload};

use super::super::model::Results;
use super::super::table::{count, size_label};
use super::{esc, find};

/// One piece of a finding's sentence.
enum Part {
    Text(String),
    /// A figure: its exact value and how it reads.
    Number(f64, String),
}

/// One finding: an id (`data-finding`) and its sentence.
struct Finding {
    id: &'static str,
    parts: Vec<Part>,
}

impl Finding {
    fn new(id: &'static str) -> Self {
        Self {
            id,
            parts: Vec::new(),
        }
    }

    fn text(mut self, t: impl Into<String>) -> Self {
        self.parts.push(Part::Text(t.into()));
        self
    }

    fn number(mut self, value: f64, shown: String) -> Self {
        self.parts.push(Part::Number(value, shown));
        self
    }
}

fn signed(v: f64, decimals: usize) -> String {
    if v >= 0.0 {
        format!("+{v:.decimals$}")
    } else {
        format!("−{:.decimals$}", -v)
    }
}

fn plural(v: f64, one: &str, many: &str) -> String {
    if (v.abs() - 1.0).abs() < 1e-9 {
        one.to_owned()
    } else {
        many.to_owned()
    }
}

/// Handshake bytes of a connect run both ways, session tickets included.
fn handshake_bytes(rep: &Report) -> f64 {
    let b = &rep.bytes;
    b.handshake_sent_per_connection.unwrap_or(0.0)
        + b.handshake_received_per_connection.unwrap_or(0.0)
        + b.post_handshake_tls_received_per_connection.unwrap_or(0.0)
}

/// Payload megabytes per second each way of an echo run.
pub(super) fn megabytes_per_sec(rep: &Report, size: usize) -> f64 {
    rep.throughput_per_sec * size as f64 / 1e6
}

/// What TLS costs a new connection: `tls` against `plain` in the connect runs.
fn tls_cost(r: &Results, id: &'static str, plain: &str, tls: &str) -> Option<Finding> {
    let size = *r.settings.sizes.first()?;
    let p = find(r, plain, Workload::Connect, size)?;
    let t = find(r, tls, Workload::Connect, size)?;
    let trips = t.round_trips_to_first_echo? - p.round_trips_to_first_echo?;
    let kb = (handshake_bytes(t) - handshake_bytes(p)) / 1000.0;
    let mut f = Finding::new(id)
        .text(format!("TLS on a new connection, {tls} against {plain}: "))
        .number(trips, signed(trips, 0))
        .text(format!(" {}, ", plural(trips, "round trip", "round trips")))
        .number(kb, signed(kb, 1))
        .text(" KB of handshake");
    let cpu = |name: &str| {
        r.runs
            .iter()
            .find(|x| x.protocol == name && x.workload == Workload::Connect && x.size == size)
            .and_then(|x| x.cpu.as_ref()?.client_us_per_1k)
    };
    if let (Some(c_tls), Some(c_plain)) = (cpu(tls), cpu(plain)) {
        if c_plain > 0.0 {
            let ratio = c_tls / c_plain;
            f = f
                .text(" and ")
                .number(ratio, format!("{ratio:.1}"))
                .text("× the client CPU");
        }
    }
    Some(
        f.text("; ")
            .number(t.throughput_per_sec, count(t.throughput_per_sec))
            .text(" against ")
            .number(p.throughput_per_sec, count(p.throughput_per_sec))
            .text(" connections/s."),
    )
}

/// Bytes on the wire per echo: WebSocket against HTTP, and what TLS adds.
fn framing(r: &Results) -> Option<Finding> {
    let size = *r.settings.sizes.first()?;
    let ws = find(r, "ws", Workload::Echo, size)?;
    let http = find(r, "http", Workload::Echo, size)?;
    let pair = |f: Finding, rep: &Report| -> Option<Finding> {
        let (up, down) = (rep.bytes.sent_per_message?, rep.bytes.received_per_message?);
        Some(
            f.number(up, format!("{up:.0}"))
                .text(" B ↑ + ")
                .number(down, format!("{down:.0}"))
                .text(" B ↓"),
        )
    };
    let f = Finding::new("framing").text(format!(
        "A {} echo on the wire (TCP payload): WebSocket ",
        size_label(size)
    ));
    let f = pair(f, ws)?.text(" against HTTP's ");
    let mut f = pair(f, http)?;
    if let Some(wss) = find(r, "wss", Workload::Echo, size) {
        if let (Some(a), Some(b), Some(c), Some(d)) = (
            wss.bytes.sent_per_message,
            ws.bytes.sent_per_message,
            wss.bytes.received_per_message,
            ws.bytes.received_per_message,
        ) {
            f = f
                .text("; TLS adds ")
                .number(a - b, format!("{:.0}", a - b))
                .text(" B ↑ and ")
                .number(c - d, format!("{:.0}", c - d))
                .text(" B ↓ a message");
        }
    }
    Some(f.text("."))
}

/// Payload throughput at the largest message size, fastest first.
fn throughput(r: &Results) -> Option<Finding> {
    let size = *r.settings.sizes.iter().max()?;
    let mut rows: Vec<(&str, f64)> = r
        .settings
        .protocols
        .iter()
        .filter_map(|p| {
            Some((
                p.as_str(),
                megabytes_per_sec(find(r, p, Workload::Echo, size)?, size),
            ))
        })
        .collect();
    if rows.len() < 2 {
        return None;
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut f = Finding::new("throughput").text(format!(
        "Echoing {} messages, payload each way: ",
        size_label(size)
    ));
    for (i, (p, mbs)) in rows.iter().enumerate() {
        if i > 0 {
            f = f.text(", ");
        }
        f = f
            .text(format!("{p} "))
            .number(*mbs, crate::units::figure(*mbs))
            .text(" MB/s");
    }
    let (fast, slow) = (rows[0].1, rows[rows.len() - 1].1);
    if slow > 0.0 {
        f = f
            .text(" (the fastest ")
            .number(fast / slow, format!("{:.1}", fast / slow))
            .text("× the slowest)");
    }
    Some(f.text("."))
}

/// Echo p50 at the smallest size: the spread between protocols.
fn latency(r: &Results) -> Option<Finding> {
    let size = *r.settings.sizes.first()?;
    let mut rows: Vec<(&str, f64)> = r
        .settings
        .protocols
        .iter()
        .filter_map(|p| {
            Some((
                p.as_str(),
                find(r, p, Workload::Echo, size)?.latency.as_ref()?.p50_us,
            ))
        })
        .collect();
    if rows.len() < 2 {
        return None;
    }
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    let ((fast_p, fast), (slow_p, slow)) = (rows[0], rows[rows.len() - 1]);
    Some(
        Finding::new("latency")
            .text(format!(
                "Echo latency at {} (p50) runs from ",
                size_label(size)
            ))
            .number(fast, count(fast))
            .text(format!(" µs ({fast_p}) to "))
            .number(slow, count(slow))
            .text(format!(" µs ({slow_p})"))
            .text(if slow <= fast * 1.25 {
                ": once connected, the protocols answer alike."
            } else {
                "."
            }),
    )
}

/// Pushes delivered against the schedule, and their bytes.
fn push(r: &Results) -> Option<Finding> {
    let s = &r.settings;
    let per_conn = 1000.0 / s.push_interval_ms as f64;
    let nominal = per_conn * s.connections as f64;
    let runs: Vec<_> = r
        .runs
        .iter()
        .filter(|x| x.workload == Workload::Push)
        .filter_map(|x| Some((x.protocol.as_str(), x.report.as_ref()?)))
        .collect();
    if runs.is_empty() {
        return None;
    }
    let mut f = Finding::new("push")
        .text(format!(
            "Pushes, {} connections × {}/s = ",
            s.connections,
            count(per_conn)
        ))
        .number(nominal, count(nominal))
        .text("/s scheduled: ");
    for (i, (p, rep)) in runs.iter().enumerate() {
        if i > 0 {
            f = f.text("; ");
        }
        f = f
            .text(format!("{p} delivered "))
            .number(rep.throughput_per_sec, count(rep.throughput_per_sec))
            .text("/s");
        if let (Some(wire), Some(payload)) = (
            rep.bytes.received_per_message,
            rep.bytes.payload_received_per_message,
        ) {
            f = f
                .text(", ")
                .number(wire, format!("{wire:.1}"))
                .text(" B on the wire for a ")
                .number(payload, format!("{payload:.1}"))
                .text(" B message");
        }
    }
    Some(f.text("."))
}

/// The findings block; empty when nothing comparable ran.
pub(super) fn findings(r: &Results) -> String {
    let all: Vec<Finding> = [
        tls_cost(r, "tls-http", "http", "https"),
        tls_cost(r, "tls-ws", "ws", "wss"),
        framing(r),
        throughput(r),
        latency(r),
        push(r),
    ]
    .into_iter()
    .flatten()
    .collect();
    if all.is_empty() {
        return String::new();
    }
    let mut out = String::from("<section id=findings><h2>What this run found</h2><ul>");
    for f in all {
        let _ = write!(out, "<li data-finding='{}'>", f.id);
        for part in f.parts {
            match part {
                Part::Text(t) => out.push_str(&esc(&t)),
                Part::Number(v, shown) => {
                    let _ = write!(out, "<data value='{v}'>{}</data>", esc(&shown));
                }
            }
        }
        out.push_str("</li>");
    }
    out.push_str("</ul></section>");
    out
}

//! `index.html`: a self-contained report (inline CSS and SVG, no script, nothing fetched) with
//! latency percentile curves, bytes per message split by layer, a handshake waterfall, push
//! delay, throughput and CPU per message, and the run's settings and machine.

use std::fmt::Write as _;

use protolab_load::{Report, Workload};

use super::model::{Results, Run};
use super::table::{count, micros, size_label};
use compression::compression_table;
use figures::figures_table;
use protolab_load::Payload;

mod compression;
mod figures;

/// One colour per protocol, the same in every chart.
fn colour(protocol: &str) -> &'static str {
    match protocol {
        "http" => "#4e79a7",
        "https" => "#f28e2b",
        "ws" => "#59a14f",
        "wss" => "#e15759",
        "ws-deflate" => "#8cd17d",
        "wss-deflate" => "#ff9d9a",
        _ => "#76b7b2",
    }
}

/// Escapes text for HTML and SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn find<'a>(r: &'a Results, protocol: &str, workload: Workload, size: usize) -> Option<&'a Report> {
    r.runs
        .iter()
        .find(|x| x.protocol == protocol && x.workload == workload && x.size == size)
        .and_then(|x| x.report.as_ref())
}

/// The whole page.
pub fn render(r: &Results) -> String {
    let mut body = String::new();
    let s = &r.settings;
    let _ = write!(
        body,
        "<h1>protolab compare</h1><p class=sub>{} · {} · {} runs × {} rounds of {:.1} s · {} connections</p>",
        esc(&r.started_at),
        esc(&s.protocols.join(", ")),
        r.runs.len(),
        s.rounds,
        s.run_secs,
        s.connections
    );
    let _ = write!(body, "<p class=lab>{}</p>", esc(&r.lab_site.describe()));
    if r.partial {
        body.push_str("<p class=warn>⚠ PARTIAL: the run was interrupted; below is what was measured until then (the warnings say which runs are missing).</p>");
    }
    if let Some(wan) = &s.wan {
        let _ = write!(body, "<p>WAN link: {}</p>", esc(&wan.describe()));
    }
    if let Some(c) = &r.capture {
        let secrets = match &c.secrets_from {
            Some(from) => format!("TLS secrets of {} sessions embedded (from the {}), so Wireshark and tshark decrypt HTTPS and WSS with no settings", c.stats.secrets_sessions, esc(from)),
            None => "no TLS secrets embedded: HTTPS and WSS stay encrypted (the warnings say why)".to_owned(),
        };
        let _ = write!(
            body,
            "<p>Packet capture: <a href=\"{0}\">{0}</a> — {1} packets, {secrets}; <code>protolab inspect {0}</code> prints each conversation.</p>",
            esc(&c.file),
            c.stats.kept,
        );
    }
    for w in &r.warnings {
        let _ = write!(body, "<p class=warn>⚠ {}</p>", esc(w));
    }
    let smallest = s.sizes.first().copied().unwrap_or(32);
    body.push_str("<section><h2>Latency percentiles · echo</h2>");
    for &size in &s.sizes {
        body.push_str(&percentile_chart(
            r,
            Workload::Echo,
            size,
            &format!("echo {} (send → echo)", size_label(size)),
        ));
    }
    body.push_str("</section>");
    if s.workloads.iter().any(|w| w == "connect") {
        body.push_str("<section><h2>Handshake waterfall · connect</h2>");
        body.push_str(&waterfall(r, smallest));
        body.push_str(&percentile_chart(
            r,
            Workload::Connect,
            smallest,
            "connect → first echo",
        ));
        body.push_str("</section>");
    }
    body.push_str("<section><h2>Bytes per message, by layer</h2>");
    body.push_str("<p>On the wire means TCP payload: TLS records, HTTP heads and bodies, WebSocket frames, without link, IP and TCP headers. <em>Frame bytes</em> add those headers for every packet as a capture shows them (Ethernet II, IPv4 or IPv6, TCP with its timestamps option), from the kernel's packet counts of the load generator's sockets. TLS 1.3 session tickets (post-handshake TLS) are counted on their own line, for HTTPS and WSS alike: in no handshake and no message figure. Retransmitted bytes are the load generator's own (client → server).</p>");
    if s.payload == Payload::Json {
        body.push_str("<p>Messages are JSON records (trade-like fields, new values in every WebSocket message, cut to the size), so permessage-deflate has realistic text to work on. For <code>-deflate</code> runs the payload bar is the compressed frame payload.</p>");
    }
    body.push_str(&layer_bars(r, smallest));
    body.push_str(&compression_table(r));
    if let Some(c) = &r.capture {
        body.push_str(&wire_cost_bars(&c.wire_cost));
    }
    body.push_str("</section>");
    if s.workloads.iter().any(|w| w == "push") {
        body.push_str("<section><h2>Push delivery delay</h2>");
        body.push_str(&percentile_chart(
            r,
            Workload::Push,
            smallest,
            "server send → client receive",
        ));
        body.push_str("</section>");
    }
    body.push_str("<section><h2>Throughput and CPU</h2>");
    body.push_str(&throughput_bars(r));
    body.push_str(&cpu_bars(r, smallest));
    body.push_str("</section>");
    body.push_str("<section><h2>All figures</h2>");
    body.push_str(&figures_table(r));
    body.push_str("</section>");
    body.push_str("<section><h2>Settings and machine</h2>");
    body.push_str(&settings_table(r));
    body.push_str("</section>");
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>protolab compare {}</title>\
<meta name=viewport content=\"width=device-width,initial-scale=1\"><style>{CSS}</style></head><body>{body}\
<footer>protolab {} · results.json in this folder has every number (schema protolab.compare.results v{})</footer></body></html>\n",
        esc(&r.started_at),
        esc(r.protolab_version),
        r.schema_version
    )
}

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}\
.lab{font-weight:bold}.warn{background:#fff4e5;border-left:4px solid #f28e2b;padding:.4em .8em}\
svg{display:block;margin:1em 0;background:#fff}svg text{font:12px system-ui,sans-serif;fill:#333}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}\
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}footer{color:#888;margin-top:3em;font-size:12px}";

/// Chart area inside an SVG.
const W: f64 = 720.0;
const H: f64 = 260.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

fn legend(out: &mut String, names: &[&str], x: f64, y: f64) {
    for (i, n) in names.iter().enumerate() {
        let yy = y + i as f64 * 18.0;
        let _ = write!(
            out,
            "<rect x='{x}' y='{}' width='12' height='12' fill='{}'/><text x='{}' y='{}'>{}</text>",
            yy - 10.0,
            colour(n),
            x + 18.0,
            yy,
            esc(n)
        );
    }
}

/// Log-scale ticks (1, 10, 100 ... µs) between `lo` and `hi`.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut t = 10f64.powf(lo.max(1e-3).log10().floor());
    let mut out = Vec::new();
    while t <= hi * 1.0001 {
        out.push(t);
        t *= 10.0;
    }
    out
}

/// Latency at p50, p90, p99, p99.9 and max, one line per protocol, log scale.
fn percentile_chart(r: &Results, workload: Workload, size: usize, title: &str) -> String {
    const POINTS: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];
    let series: Vec<(&str, [f64; 5])> = r
        .settings
        .protocols
        .iter()
        .filter_map(|p| {
            let l = find(r, p, workload, size)?.latency.as_ref()?;
            Some((
                p.as_str(),
                [l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us],
            ))
        })
        .collect();
    if series.is_empty() {
        return format!("<p>{}: nothing measured.</p>", esc(title));
    }
    let lo = series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(0.1);
    let hi = series
        .iter()
        .flat_map(|(_, v)| v.iter())
        .copied()
        .fold(0.0, f64::max)
        .max(lo * 10.0);
    let ticks = log_ticks(lo, hi);
    let (ylo, yhi) = (
        ticks.first().copied().unwrap_or(lo).log10(),
        hi.log10().max(ticks.last().copied().unwrap_or(hi).log10()),
    );
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| LEFT + plot_w * i as f64 / (POINTS.len() - 1) as f64;
    let y = |v: f64| TOP + plot_h * (1.0 - (v.max(0.1).log10() - ylo) / (yhi - ylo).max(1e-9));
    let mut out = format!(
        "<svg class=chart role=img aria-label='{0}' width='{W}' height='{H}' viewBox='0 0 {W} {H}'><text x='{LEFT}' y='18' font-weight='bold'>{0}</text>",
        esc(title)
    );
    for t in &ticks {
        let ty = y(*t);
        let _ = write!(
            out,
            "<line x1='{LEFT}' x2='{}' y1='{ty:.1}' y2='{ty:.1}' stroke='#eee'/><text x='{}' y='{:.1}' text-anchor='end'>{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            ty + 4.0,
            esc(&micros(*t))
        );
    }
    for (i, p) in POINTS.iter().enumerate() {
        let _ = write!(
            out,
            "<text x='{}' y='{}' text-anchor='middle'>{p}</text>",
            x(i),
            H - BOTTOM + 18.0
        );
    }
    for (name, values) in &series {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill='none' stroke='{}' stroke-width='2.5' points='{}'/>",
            colour(name),
            points.join(" ")
        );
        for (i, v) in values.iter().enumerate() {
            let _ = write!(
                out,
                "<circle cx='{:.1}' cy='{:.1}' r='3' fill='{}'><title>{} {}: {}</title></circle>",
                x(i),
                y(*v),
                colour(name),
                esc(name),
                POINTS[i],
                esc(&micros(*v))
            );
        }
    }
    let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
    legend(&mut out, &names, W - RIGHT + 20.0, TOP + 10.0);
    out.push_str("</svg>");
    out
}

/// A protocol, its connection steps with their p50 in µs, and its round trips.
type WaterfallRow<'a> = (&'a str, Vec<(&'static str, f64)>, Option<f64>);

/// One bar: protocol, value, label.
type Bar<'a> = (&'a str, f64, String);

/// Per protocol: TCP connect, TLS handshake, upgrade, first echo (p50), laid end to end.
fn waterfall(r: &Results, size: usize) -> String {
    let rows: Vec<WaterfallRow<'_>> = r
        .settings
        .protocols
        .iter()
        .filter_map(|p| {
            let rep = find(r, p, Workload::Connect, size)?;
            let ph = &rep.phases;
            let mut parts = Vec::new();
            for (name, s) in [
                ("TCP", &ph.tcp_connect),
                ("TLS", &ph.tls_handshake),
                ("upgrade", &ph.ws_upgrade),
                ("first echo", &ph.first_echo),
            ] {
                if let Some(s) = s {
                    parts.push((name, s.p50_us));
                }
            }
            Some((p.as_str(), parts, rep.round_trips_to_first_echo))
        })
        .collect();
    if rows.is_empty() {
        return "<p>connect: nothing measured.</p>".to_owned();
    }
    let total_max = rows
        .iter()
        .map(|(_, parts, _)| parts.iter().map(|(_, v)| v).sum::<f64>())
        .fold(0.0, f64::max)
        .max(1.0);
    let row_h = 34.0;
    let h = TOP + rows.len() as f64 * row_h + 30.0;
    // Room on the right for the longest bar's "12.34 ms · 4 round trips".
    let plot_w = W - LEFT - 170.0;
    let shade = |name: &str| match name {
        "TCP" => "0.35",
        "TLS" => "0.6",
        "upgrade" => "0.8",
        _ => "1",
    };
    let mut out = format!(
        "<svg class=chart role=img aria-label='handshake waterfall' width='{W}' height='{h}' viewBox='0 0 {W} {h}'><text x='{LEFT}' y='18' font-weight='bold'>p50 of each step, end to end (opacity: TCP, TLS, upgrade, first echo)</text>"
    );
    for (i, (name, parts, rt)) in rows.iter().enumerate() {
        let y = TOP + i as f64 * row_h;
        let _ = write!(
            out,
            "<text x='{}' y='{}' text-anchor='end'>{}</text>",
            LEFT - 6.0,
            y + 18.0,
            esc(name)
        );
        let mut x = LEFT;
        for (step, v) in parts {
            let w = plot_w * v / total_max;
            let _ = write!(
                out,
                "<rect x='{x:.1}' y='{y:.1}' width='{w:.1}' height='24' fill='{}' fill-opacity='{}'><title>{} {}: {}</title></rect>",
                colour(name),
                shade(step),
                esc(name),
                step,
                esc(&micros(*v))
            );
            x += w;
        }
        let total: f64 = parts.iter().map(|(_, v)| v).sum();
        let rt = rt.map_or_else(String::new, |rt| format!(" · {rt:.0} round trips"));
        let _ = write!(
            out,
            "<text x='{:.1}' y='{}'>{}{}</text>",
            x + 6.0,
            y + 17.0,
            esc(&micros(total)),
            rt
        );
    }
    out.push_str("</svg>");
    out
}

/// Per protocol and direction: payload, HTTP/WebSocket framing, TLS overhead.
fn layer_bars(r: &Results, size: usize) -> String {
    let mut rows: Vec<(String, &str, [f64; 3])> = Vec::new();
    for p in &r.settings.protocols {
        let Some(rep) = find(r, p, Workload::Echo, size) else {
            continue;
        };
        let b = &rep.bytes;
        // Under permessage-deflate what the frames carry is the compressed payload.
        for (dir, wire, above, payload) in [
            (
                "↑",
                b.sent_per_message,
                b.above_tls_sent_per_message,
                b.frame_payload_sent_per_message
                    .or(b.payload_sent_per_message),
            ),
            (
                "↓",
                b.received_per_message,
                b.above_tls_received_per_message,
                b.frame_payload_received_per_message
                    .or(b.payload_received_per_message),
            ),
        ] {
            if let (Some(wire), Some(above), Some(payload)) = (wire, above, payload) {
                rows.push((
                    format!("{p} {dir}"),
                    p.as_str(),
                    [payload, (above - payload).max(0.0), (wire - above).max(0.0)],
                ));
            }
        }
    }
    if rows.is_empty() {
        return "<p>echo: nothing measured.</p>".to_owned();
    }
    let max = rows
        .iter()
        .map(|(_, _, v)| v.iter().sum::<f64>())
        .fold(0.0, f64::max)
        .max(1.0);
    let row_h = 26.0;
    let h = TOP + rows.len() as f64 * row_h + 40.0;
    let plot_w = W - LEFT - RIGHT;
    let mut out = format!(
        "<svg class=chart role=img aria-label='bytes per message by layer' width='{W}' height='{h}' viewBox='0 0 {W} {h}'><text x='{LEFT}' y='18' font-weight='bold'>echo {}: bytes per message (TCP payload), ↑ client→server ↓ server→client</text>",
        esc(&size_label(size))
    );
    let layers = ["payload", "HTTP/WS framing", "TLS records"];
    let opacity = ["1", "0.55", "0.25"];
    for (i, (label, proto, values)) in rows.iter().enumerate() {
        let y = TOP + i as f64 * row_h;
        let _ = write!(
            out,
            "<text x='{}' y='{}' text-anchor='end'>{}</text>",
            LEFT - 6.0,
            y + 15.0,
            esc(label)
        );
        let mut x = LEFT;
        for (j, v) in values.iter().enumerate() {
            let w = plot_w * v / max;
            let _ = write!(
                out,
                "<rect x='{x:.1}' y='{y:.1}' width='{w:.1}' height='20' fill='{}' fill-opacity='{}' stroke='{}'><title>{} {}: {v:.1} B</title></rect>",
                colour(proto),
                opacity[j],
                colour(proto),
                esc(label),
                layers[j]
            );
            x += w;
        }
        let _ = write!(
            out,
            "<text x='{:.1}' y='{}'>{:.0} B</text>",
            x + 6.0,
            y + 15.0,
            values.iter().sum::<f64>()
        );
    }
    let y = h - 14.0;
    for (j, name) in layers.iter().enumerate() {
        let x = LEFT + j as f64 * 170.0;
        let _ = write!(
            out,
            "<rect x='{x}' y='{}' width='12' height='12' fill='#555' fill-opacity='{}' stroke='#555'/><text x='{}' y='{y}'>{name}</text>",
            y - 10.0,
            opacity[j],
            x + 18.0
        );
    }
    out.push_str("</svg>");
    out
}

/// From the capture: each protocol's whole traffic as 100% bars split by layer.
fn wire_cost_bars(costs: &[super::model::WireCost]) -> String {
    let costs: Vec<_> = costs.iter().filter(|c| c.frame_bytes > 0).collect();
    if costs.is_empty() {
        return "<p>capture: no traffic decoded.</p>".to_owned();
    }
    const LAYERS: [&str; 6] = [
        "payload",
        "HTTP headers",
        "WS framing",
        "TLS",
        "link/IP/TCP",
        "undecrypted",
    ];
    const SHADES: [&str; 6] = [
        "#4e79a7", "#9c755f", "#59a14f", "#e15759", "#bab0ac", "#000",
    ];
    let row_h = 30.0;
    let h = TOP + costs.len() as f64 * row_h + 44.0;
    let plot_w = W - LEFT - RIGHT;
    let mut out = format!(
        "<svg class=chart role=img aria-label='wire cost by layer' width='{W}' height='{h}' viewBox='0 0 {W} {h}'><text x='{LEFT}' y='18' font-weight='bold'>the capture, decoded: share of each protocol's bytes on the wire by layer (all its runs)</text>"
    );
    for (i, c) in costs.iter().enumerate() {
        let parts = [
            (c.http_body + c.ws_payload) as f64,
            c.http_headers as f64,
            c.ws_framing as f64,
            c.tls as f64,
            c.link_ip_tcp as f64,
            c.tls_encrypted as f64,
        ];
        let total: f64 = parts.iter().sum::<f64>().max(1.0);
        let y = TOP + i as f64 * row_h;
        let _ = write!(
            out,
            "<text x='{}' y='{}' text-anchor='end'>{}</text>",
            LEFT - 6.0,
            y + 16.0,
            esc(&c.protocol)
        );
        let mut x = LEFT;
        for (j, v) in parts.iter().enumerate() {
            let w = plot_w * v / total;
            let _ = write!(
                out,
                "<rect x='{x:.1}' y='{y:.1}' width='{w:.1}' height='22' fill='{}'><title>{} {}: {:.0} B ({:.1}%)</title></rect>",
                SHADES[j],
                esc(&c.protocol),
                LAYERS[j],
                v,
                100.0 * v / total
            );
            x += w;
        }
        let _ = write!(
            out,
            "<text x='{:.1}' y='{}'>{:.1} MB, {} packets</text>",
            x + 6.0,
            y + 16.0,
            total / 1e6,
            c.packets
        );
    }
    let y = h - 14.0;
    for (j, name) in LAYERS.iter().enumerate() {
        let x = LEFT + j as f64 * 100.0;
        let _ = write!(
            out,
            "<rect x='{x}' y='{}' width='12' height='12' fill='{}'/><text x='{}' y='{y}'>{name}</text>",
            y - 10.0,
            SHADES[j],
            x + 16.0
        );
    }
    out.push_str("</svg>");
    out
}

/// Grouped horizontal bars: one group per label, one bar per protocol.
fn grouped_bars(title: &str, groups: &[(String, Vec<Bar<'_>>)]) -> String {
    let bars: usize = groups.iter().map(|(_, b)| b.len()).sum();
    if bars == 0 {
        return format!("<p>{}: nothing measured.</p>", esc(title));
    }
    let max = groups
        .iter()
        .flat_map(|(_, b)| b.iter().map(|(_, v, _)| *v))
        .fold(0.0, f64::max)
        .max(1e-9);
    let bar_h = 16.0;
    let h = TOP + bars as f64 * (bar_h + 3.0) + groups.len() as f64 * 12.0 + 10.0;
    let plot_w = W - LEFT - RIGHT - 40.0;
    let mut out = format!(
        "<svg class=chart role=img aria-label='{0}' width='{W}' height='{h}' viewBox='0 0 {W} {h}'><text x='{LEFT}' y='18' font-weight='bold'>{0}</text>",
        esc(title)
    );
    let mut y = TOP;
    for (label, group) in groups {
        let _ = write!(
            out,
            "<text x='{}' y='{}' text-anchor='end'>{}</text>",
            LEFT - 6.0,
            y + 12.0,
            esc(label)
        );
        for (proto, v, text) in group {
            let w = plot_w * v / max;
            let _ = write!(
                out,
                "<rect x='{LEFT}' y='{y:.1}' width='{w:.1}' height='{bar_h}' fill='{}'><title>{} {}: {}</title></rect><text x='{:.1}' y='{:.1}'>{} {}</text>",
                colour(proto),
                esc(label),
                esc(proto),
                esc(text),
                LEFT + w + 4.0,
                y + 12.0,
                esc(proto),
                esc(text)
            );
            y += bar_h + 3.0;
        }
        y += 12.0;
    }
    out.push_str("</svg>");
    out
}

fn throughput_bars(r: &Results) -> String {
    let mut groups = Vec::new();
    for &size in &r.settings.sizes {
        let bars: Vec<Bar<'_>> = r
            .settings
            .protocols
            .iter()
            .filter_map(|p| {
                let rep = find(r, p, Workload::Echo, size)?;
                Some((
                    p.as_str(),
                    rep.throughput_per_sec,
                    format!("{} msgs/s", count(rep.throughput_per_sec)),
                ))
            })
            .collect();
        if !bars.is_empty() {
            groups.push((format!("echo {}", size_label(size)), bars));
        }
    }
    grouped_bars("echo throughput (messages per second)", &groups)
}

fn cpu_bars(r: &Results, size: usize) -> String {
    let runs: Vec<&Run> = r
        .runs
        .iter()
        .filter(|x| x.workload == Workload::Echo && x.size == size)
        .collect();
    let mut groups = Vec::new();
    for (side, pick) in [
        (
            "server",
            (|c: &super::model::Cpu| c.server_us_per_1k) as fn(&_) -> _,
        ),
        ("client", |c: &super::model::Cpu| c.client_us_per_1k),
    ] {
        let bars: Vec<Bar<'_>> = runs
            .iter()
            .filter_map(|x| {
                let v = pick(x.cpu.as_ref()?)?;
                Some((x.protocol.as_str(), v, format!("{} µs", count(v))))
            })
            .collect();
        if !bars.is_empty() {
            groups.push((side.to_owned(), bars));
        }
    }
    grouped_bars(
        &format!("CPU per 1,000 echoes of {} (µs)", size_label(size)),
        &groups,
    )
}

fn settings_table(r: &Results) -> String {
    let s = &r.settings;
    let m = &r.machine;
    let rows: Vec<(&str, String)> = vec![
        ("protocols", s.protocols.join(", ")),
        (
            "payload",
            match s.payload {
                Payload::Json => "JSON records, new values every WebSocket message".to_owned(),
                Payload::Alphabet => "abc…xyz repeated".to_owned(),
            },
        ),
        ("workloads", s.workloads.join(", ")),
        (
            "message sizes",
            s.sizes
                .iter()
                .map(|&z| size_label(z))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("connections", s.connections.to_string()),
        (
            "network",
            s.wan.as_ref().map_or_else(
                || "loopback".to_owned(),
                |wan| format!("WAN link: {}", wan.describe()),
            ),
        ),
        (
            "each run",
            format!("{:.2} s × {} rounds", s.run_secs, s.rounds),
        ),
        (
            "echo loop",
            s.rate.map_or("closed".to_owned(), |r| {
                format!("open at {} msgs/s", count(r))
            }),
        ),
        ("push interval", format!("{} ms", s.push_interval_ms)),
        (
            "TLS",
            if s.tls_resumption {
                "sessions resumed".to_owned()
            } else {
                "full handshake per connection".to_owned()
            },
        ),
        (
            "threads",
            format!(
                "server {} · load generator {}",
                s.server_threads
                    .map_or_else(|| "elsewhere".to_owned(), |t| t.to_string()),
                s.client_threads
            ),
        ),
        (
            "lab",
            r.lab
                .iter()
                .map(|e| format!("{} {}", e.protocol, e.url))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "CPU",
            m.cpu_model.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("CPUs", m.cpus.to_string()),
        (
            "memory",
            m.memory_bytes.map_or("unknown".into(), |b| {
                format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30))
            }),
        ),
        (
            "kernel",
            m.kernel.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("OS", m.os.clone().unwrap_or_else(|| "unknown".into())),
        ("total time", format!("{:.1} s", r.elapsed_secs)),
    ];
    let mut out = String::from("<table>");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    out.push_str("</table>");
    out
}

//! `index.html`: a self-contained report (inline CSS and SVG, no script, nothing fetched). It
//! opens with what the run found in plain words (`findings`) and how steady its ratios between
//! protocols were round by round (`ratios`), then charts what differs most
//! between protocols (`charts`: new connections and their CPU, a handshake waterfall,
//! throughput, latency CDFs), bytes per message by layer, push delay, every figure by
//! workload (`figures`), and the run's settings and machine.

use std::fmt::Write as _;

use protolab_load::{Report, Workload};

use super::model::Results;
use super::table::{count, size_label};
use caveats::caveats;
use charts::{cdf_chart, connect_bars, cpu_bars, throughput_bars, waterfall};
use compression::compression_table;
use figures::figures_table;
use findings::findings;
use protolab_load::Payload;
use ratios::ratio_chart;

mod caveats;
mod charts;
mod compression;
mod figures;
mod findings;
mod ratios;

/// One hue per family, the same in every chart: HTTP blue, WebSocket orange, WebSocket with
/// permessage-deflate purple, HTTP/2 green, gRPC pink; the TLS variant of each is the darker
/// shade (and dashed in line charts), so colour never has to tell red from green.
fn colour(protocol: &str) -> &'static str {
    match protocol {
        "http" => "#6baed6",
        "https" => "#08519c",
        "ws" => "#fd9a4a",
        "wss" => "#a63603",
        "ws-deflate" => "#bcbddc",
        "wss-deflate" => "#54278f",
        "h2" => "#74c476",
        "h2-tls" => "#006d2c",
        "grpc" => "#fa9fb5",
        "grpc-tls" => "#c51b8a",
        _ => "#969696",
    }
}

/// TLS variants draw their lines dashed: a second cue beside the darker shade.
fn dash(protocol: &str) -> &'static str {
    if protocol.starts_with("https") || protocol.starts_with("wss") || protocol.ends_with("-tls") {
        " stroke-dasharray='7 3'"
    } else {
        ""
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
    let smallest = s.sizes.first().copied().unwrap_or(32);
    body.push_str(&findings(r));
    body.push_str(&caveats(&r.warnings));
    let steadiness = ratio_chart(&r.ratios);
    if !steadiness.is_empty() {
        body.push_str("<section><h2>How steady: protocols against each other</h2>");
        body.push_str(&steadiness);
        body.push_str("</section>");
    }
    if s.workloads.iter().any(|w| w == "connect") {
        body.push_str("<section><h2>New connections: what a handshake costs</h2>");
        body.push_str(&connect_bars(r, smallest));
        body.push_str(&waterfall(r, smallest));
        body.push_str(&cdf_chart(
            r,
            Workload::Connect,
            smallest,
            "connect → first echo: latency CDF",
        ));
        body.push_str("</section>");
    }
    if s.workloads.iter().any(|w| w == "echo") {
        body.push_str("<section><h2>Throughput and CPU · echo</h2>");
        body.push_str(&throughput_bars(r));
        body.push_str(&cpu_bars(r, smallest));
        body.push_str("</section><section><h2>Latency · echo</h2>");
        for &size in &s.sizes {
            body.push_str(&cdf_chart(
                r,
                Workload::Echo,
                size,
                &format!("echo {} (send → echo): latency CDF", size_label(size)),
            ));
        }
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
        body.push_str(&cdf_chart(
            r,
            Workload::Push,
            smallest,
            "server send → client receive: latency CDF",
        ));
        body.push_str("</section>");
    }
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
#caveats ul{list-style:none;padding:0}#caveats li{margin:.4em 0}.items{display:block;margin-top:.2em}\
.items span{display:inline-block;white-space:nowrap;background:#fff;border:1px solid #f2c48b;border-radius:3px;padding:0 .35em;margin:.15em .3em .15em 0;font-size:12.5px}\
#findings ul{font-size:15px;padding-left:1.2em}#findings li{margin:.35em 0}#findings data{font-weight:bold}\
svg{display:block;margin:1em 0;background:#fff;max-width:100%;height:auto}svg text{font:12px system-ui,sans-serif;fill:#333}\
table{border-collapse:collapse;margin:1em 0;font-size:12.5px;font-variant-numeric:tabular-nums}\
td,th{border:1px solid #ddd;padding:.2em .45em;text-align:right;white-space:nowrap}\
th{background:#f5f5f5;white-space:normal;vertical-align:bottom}td:first-child,th:first-child{text-align:left}\
td.note,.settings td{white-space:normal;text-align:left}.note{color:#555;font-size:12.5px}footer{color:#888;margin-top:3em;font-size:12px}";

/// Chart area inside an SVG.
const W: f64 = 720.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

/// A swatch per protocol in its colour, with its label.
fn legend(out: &mut String, names: &[&str], labels: &[&str], x: f64, y: f64) {
    for (i, (n, label)) in names.iter().zip(labels).enumerate() {
        let yy = y + i as f64 * 18.0;
        let _ = write!(
            out,
            "<rect x='{x}' y='{}' width='12' height='12' fill='{}'/><text x='{}' y='{}'>{}</text>",
            yy - 10.0,
            colour(n),
            x + 18.0,
            yy,
            esc(label)
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
    let mut out = String::from("<table class=settings>");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    out.push_str("</table>");
    out
}

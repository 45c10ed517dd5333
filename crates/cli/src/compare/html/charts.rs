//! The report's comparison charts: latency CDFs, the handshake waterfall on a time axis, new
//! connections per second and their CPU, and echo throughput in MB/s.

use std::fmt::Write as _;

use protolab_load::{Report, Summary, Workload};

use super::super::model::Results;
use super::super::table::{count, micros, size_label};
use super::findings::megabytes_per_sec;
use super::{colour, dash, esc, find, legend, log_ticks, BOTTOM, LEFT, TOP, W};

/// Points of a CDF drawn per protocol (the histogram is thinned to this many).
const CDF_POINTS: usize = 200;

/// One bar: protocol, value, label.
type Bar<'a> = (&'a str, f64, String);

/// One CDF line: protocol, (µs, share) points, samples behind it.
type CdfSeries<'a> = (&'a str, Vec<(f64, f64)>, u64);

/// The distribution behind a report's latency figure: from its histogram, or (reports from
/// before histograms were kept) a step through its percentiles.
fn distribution(rep: &Report, workload: Workload) -> Option<(Vec<(f64, f64)>, u64)> {
    let summary: &Summary = match workload {
        Workload::Connect => rep.phases.connect_to_first_echo.as_ref()?,
        Workload::Echo | Workload::Push | Workload::Fanin => rep.latency.as_ref()?,
    };
    let encoded = match workload {
        Workload::Connect => rep.histograms.connect_to_first_echo.as_deref(),
        Workload::Echo | Workload::Push | Workload::Fanin => rep.histograms.latency.as_deref(),
    };
    let points = encoded
        .and_then(|h| protolab_load::histogram::cdf(h, CDF_POINTS).ok())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            vec![
                (summary.min_us, 0.0),
                (summary.p50_us, 0.5),
                (summary.p90_us, 0.9),
                (summary.p99_us, 0.99),
                (summary.p999_us, 0.999),
                (summary.max_us, 1.0),
            ]
        });
    Some((points, summary.count))
}

/// Latency CDFs, one line per protocol (TLS dashed), log time axis, sample counts in the
/// legend.
pub(super) fn cdf_chart(r: &Results, workload: Workload, size: usize, title: &str) -> String {
    const H: f64 = 280.0;
    const RIGHT: f64 = 190.0;
    let series: Vec<CdfSeries<'_>> = r
        .settings
        .protocols
        .iter()
        .filter_map(|p| {
            let (points, n) = distribution(find(r, p, workload, size)?, workload)?;
            Some((p.as_str(), points, n))
        })
        .collect();
    if series.is_empty() {
        return format!("<p>{}: nothing measured.</p>", esc(title));
    }
    let values = || {
        series
            .iter()
            .flat_map(|(_, p, _)| p.iter().map(|(v, _)| *v))
    };
    let lo = values().fold(f64::INFINITY, f64::min).max(0.1);
    let hi = values().fold(0.0, f64::max).max(lo * 10.0);
    let ticks = log_ticks(lo, hi);
    let xlo = ticks.first().copied().unwrap_or(lo).log10();
    let xhi = hi.log10();
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |v: f64| LEFT + plot_w * (v.max(0.1).log10() - xlo) / (xhi - xlo).max(1e-9);
    let y = |share: f64| TOP + plot_h * (1.0 - share);
    let mut out = format!(
        "<svg class=chart role=img aria-label='{0}' width='{W}' height='{H}' viewBox='0 0 {W} {H}'><text x='{LEFT}' y='18' font-weight='bold'>{0}</text>",
        esc(title)
    );
    for t in &ticks {
        let tx = x(*t);
        let _ = write!(
            out,
            "<line x1='{tx:.1}' x2='{tx:.1}' y1='{TOP}' y2='{}' stroke='#eee'/><text x='{tx:.1}' y='{}' text-anchor='middle'>{}</text>",
            H - BOTTOM,
            H - BOTTOM + 16.0,
            esc(&micros(*t))
        );
    }
    for share in [0.0, 0.25, 0.5, 0.75, 0.9, 1.0] {
        let ty = y(share);
        let _ = write!(
            out,
            "<line x1='{LEFT}' x2='{}' y1='{ty:.1}' y2='{ty:.1}' stroke='#eee'/><text x='{}' y='{:.1}' text-anchor='end'>{share}</text>",
            W - RIGHT,
            LEFT - 6.0,
            ty + 4.0,
        );
    }
    let _ = write!(
        out,
        "<text x='{}' y='{}' text-anchor='middle'>latency (log scale) · share of samples at or below</text>",
        LEFT + plot_w / 2.0,
        H - 6.0
    );
    for (name, points, _) in &series {
        // A step line: each bucket's share holds until the next bucket.
        let mut path = String::new();
        let mut prev = 0.0;
        for (v, share) in points {
            let _ = write!(
                path,
                "{:.1},{:.1} {:.1},{:.1} ",
                x(*v),
                y(prev),
                x(*v),
                y(*share)
            );
            prev = *share;
        }
        let _ = write!(
            out,
            "<polyline fill='none' stroke='{}' stroke-width='2'{} points='{}'/>",
            colour(name),
            dash(name),
            path.trim_end()
        );
    }
    let labels: Vec<String> = series
        .iter()
        .map(|(n, _, samples)| format!("{n} · n = {}", count(*samples as f64)))
        .collect();
    let names: Vec<&str> = series.iter().map(|(n, _, _)| *n).collect();
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    legend(&mut out, &names, &label_refs, W - RIGHT + 14.0, TOP + 10.0);
    out.push_str("</svg>");
    out
}

/// Linear ticks at 1, 2 or 5 × a power of ten, about five of them up to `max`.
fn linear_ticks(max: f64) -> Vec<f64> {
    let raw = max / 5.0;
    let power = 10f64.powf(raw.max(1e-9).log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(power * 10.0);
    (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|t| *t <= max * 1.0001)
        .collect()
}

/// A protocol, its connection steps with their p50 in µs, and its round trips.
type WaterfallRow<'a> = (&'a str, Vec<(&'static str, f64)>, Option<f64>);

/// Steps of a new connection, and how strongly each is shaded.
const STEPS: [(&str, &str); 4] = [
    ("TCP", "0.3"),
    ("TLS", "0.55"),
    ("upgrade", "0.78"),
    ("first echo", "1"),
];

/// Per protocol: TCP connect, TLS handshake, upgrade, first echo (p50), end to end on a
/// time axis, each segment labelled with its time.
pub(super) fn waterfall(r: &Results, size: usize) -> String {
    let rows: Vec<WaterfallRow<'_>> = r
        .settings
        .protocols
        .iter()
        .filter_map(|p| {
            let rep = find(r, p, Workload::Connect, size)?;
            let ph = &rep.phases;
            let parts = [
                &ph.tcp_connect,
                &ph.tls_handshake,
                &ph.ws_upgrade,
                &ph.first_echo,
            ]
            .iter()
            .zip(STEPS)
            .filter_map(|(s, (name, _))| Some((name, s.as_ref()?.p50_us)))
            .collect();
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
    let ticks = linear_ticks(total_max);
    let axis_max = ticks.last().copied().unwrap_or(total_max).max(total_max);
    let row_h = 44.0;
    let plot_top = TOP + 8.0;
    let plot_bottom = plot_top + rows.len() as f64 * row_h;
    let h = plot_bottom + 60.0;
    // Room on the right for the longest bar's "12.34 ms · 4 round trips".
    let plot_w = W - LEFT - 150.0;
    let x = |us: f64| LEFT + plot_w * us / axis_max;
    let mut out = format!(
        "<svg class=chart role=img aria-label='handshake waterfall' width='{W}' height='{h}' viewBox='0 0 {W} {h}'><text x='{LEFT}' y='18' font-weight='bold'>a new connection, step by step: the median of each step, end to end</text>"
    );
    for t in &ticks {
        let tx = x(*t);
        let _ = write!(
            out,
            "<line x1='{tx:.1}' x2='{tx:.1}' y1='{plot_top}' y2='{plot_bottom}' stroke='#e4e4e4'/><text x='{tx:.1}' y='{}' text-anchor='middle'>{}</text>",
            plot_bottom + 14.0,
            esc(&micros(*t))
        );
    }
    for (i, (name, parts, rt)) in rows.iter().enumerate() {
        let y = plot_top + i as f64 * row_h + 4.0;
        let _ = write!(
            out,
            "<text x='{}' y='{}' text-anchor='end'>{}</text>",
            LEFT - 6.0,
            y + 15.0,
            esc(name)
        );
        let mut at = 0.0;
        for (step, v) in parts {
            let (x0, w) = (x(at), x(at + v) - x(at));
            let shade = STEPS.iter().find(|(s, _)| s == step).map_or("1", |s| s.1);
            let _ = write!(
                out,
                "<rect x='{x0:.1}' y='{y:.1}' width='{w:.1}' height='20' fill='{}' fill-opacity='{shade}' stroke='{}' stroke-width='0.5'><title>{} {step}: {}</title></rect>",
                colour(name),
                colour(name),
                esc(name),
                esc(&micros(*v))
            );
            // Segment labels sit under their segment, where there is room for them.
            if w >= 46.0 {
                let _ = write!(
                    out,
                    "<text x='{:.1}' y='{:.1}' font-size='11'>{}</text>",
                    x0 + 2.0,
                    y + 32.0,
                    esc(&micros(*v))
                );
            }
            at += v;
        }
        let rt = rt.map_or_else(String::new, |rt| format!(" · {rt:.0} round trips"));
        let _ = write!(
            out,
            "<text x='{:.1}' y='{}'>{}{}</text>",
            x(at) + 6.0,
            y + 15.0,
            esc(&micros(at)),
            rt
        );
    }
    let _ = write!(
        out,
        "<text x='{}' y='{}' text-anchor='middle'>time since the connection started</text>",
        LEFT + plot_w / 2.0,
        plot_bottom + 30.0
    );
    let ly = h - 12.0;
    for (j, (step, shade)) in STEPS.iter().enumerate() {
        let lx = LEFT + j as f64 * 120.0;
        let _ = write!(
            out,
            "<rect x='{lx}' y='{}' width='12' height='12' fill='#555' fill-opacity='{shade}' stroke='#555' stroke-width='0.5'/><text x='{}' y='{ly}'>{step}</text>",
            ly - 10.0,
            lx + 18.0
        );
    }
    out.push_str("</svg>");
    out
}

/// Grouped horizontal bars: one group per label, one bar per protocol.
pub(super) fn grouped_bars(title: &str, groups: &[(String, Vec<Bar<'_>>)]) -> String {
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
    let plot_w = W - LEFT - 240.0;
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

/// New connections per second and what each costs in CPU, client and server.
pub(super) fn connect_bars(r: &Results, size: usize) -> String {
    let runs: Vec<_> = r
        .runs
        .iter()
        .filter(|x| x.workload == Workload::Connect && x.size == size)
        .filter_map(|x| Some((x, x.report.as_ref()?)))
        .collect();
    let rate: Vec<Bar<'_>> = runs
        .iter()
        .map(|(x, rep)| {
            (
                x.protocol.as_str(),
                rep.throughput_per_sec,
                format!("{}/s", count(rep.throughput_per_sec)),
            )
        })
        .collect();
    let mut out = grouped_bars(
        "new connections per second (connect, TLS handshake and first echo each)",
        &[("connect".to_owned(), rate)],
    );
    let mut cpu = Vec::new();
    for (side, pick) in [
        (
            "client",
            (|c: &super::super::model::Cpu| c.client_us_per_1k) as fn(&_) -> _,
        ),
        ("server", |c: &super::super::model::Cpu| c.server_us_per_1k),
    ] {
        let bars: Vec<Bar<'_>> = runs
            .iter()
            .filter_map(|(x, _)| {
                let per_connection = pick(x.cpu.as_ref()?)? / 1000.0;
                Some((
                    x.protocol.as_str(),
                    per_connection,
                    format!("{} µs", count(per_connection)),
                ))
            })
            .collect();
        if !bars.is_empty() {
            cpu.push((side.to_owned(), bars));
        }
    }
    out.push_str(&grouped_bars("CPU per new connection (µs)", &cpu));
    out
}

/// Echo throughput, protocols side by side: payload MB/s each way for messages of 1 KiB and
/// more, messages per second for smaller ones (where MB/s would be a sliver of a bar).
pub(super) fn throughput_bars(r: &Results) -> String {
    let mut large = Vec::new();
    let mut small = Vec::new();
    for &size in &r.settings.sizes {
        let bars: Vec<Bar<'_>> = r
            .settings
            .protocols
            .iter()
            .filter_map(|p| {
                let rep = find(r, p, Workload::Echo, size)?;
                let mbs = megabytes_per_sec(rep, size);
                let rate = count(rep.throughput_per_sec);
                Some(if size >= LARGE {
                    (
                        p.as_str(),
                        mbs,
                        format!("{} MB/s · {rate} msgs/s", crate::units::figure(mbs)),
                    )
                } else {
                    (
                        p.as_str(),
                        rep.throughput_per_sec,
                        format!("{rate} msgs/s · {} MB/s", crate::units::figure(mbs)),
                    )
                })
            })
            .collect();
        if !bars.is_empty() {
            let group = (format!("echo {}", size_label(size)), bars);
            if size >= LARGE {
                large.push(group);
            } else {
                small.push(group);
            }
        }
    }
    let mut out = String::new();
    if !large.is_empty() {
        out.push_str(&grouped_bars(
            "echo throughput, large messages: payload MB/s each way",
            &large,
        ));
    }
    if !small.is_empty() {
        out.push_str(&grouped_bars(
            "echo rate, small messages: messages per second",
            &small,
        ));
    }
    out
}

/// Messages from this size up are charted by the bytes they move, smaller ones by count.
const LARGE: usize = 1024;

/// CPU per 1,000 echoes at `size`, client and server.
pub(super) fn cpu_bars(r: &Results, size: usize) -> String {
    let mut groups = Vec::new();
    for (side, pick) in [
        (
            "server",
            (|c: &super::super::model::Cpu| c.server_us_per_1k) as fn(&_) -> _,
        ),
        ("client", |c: &super::super::model::Cpu| c.client_us_per_1k),
    ] {
        let bars: Vec<Bar<'_>> = r
            .runs
            .iter()
            .filter(|x| x.workload == Workload::Echo && x.size == size)
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

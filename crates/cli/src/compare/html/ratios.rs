//! The ratios between protocols, round by round, as a forest chart: one row per protocol,
//! workload, size and figure, on a log axis where 1 is the protocol it is measured against.
//! Each round's ratio is a dot, the estimate's interval a bar in the protocol's colour, the
//! estimate a ring, and a grey band ±5% around the estimate shows at a glance whether the
//! interval held within it (the run's own test of repeatability).

use std::fmt::Write as _;

use super::super::spread::{Ratio, NOISY_ABOVE};
use super::super::table::size_label;
use super::{colour, esc};

const W: f64 = 760.0;
/// Row labels end here.
const LABEL_RIGHT: f64 = 250.0;
const PLOT_LEFT: f64 = 262.0;
const PLOT_RIGHT: f64 = 600.0;
/// The estimate and interval as text, right of the plot.
const VALUE_LEFT: f64 = 612.0;
const TOP: f64 = 44.0;
const ROW: f64 = 22.0;
const AXIS: f64 = 34.0;

/// What a ratio's figure is called on its row.
fn figure_name(figure: &str) -> &'static str {
    match figure {
        "report.throughput_per_sec" => "msgs/s",
        "report.latency.p50_us" => "p50 latency",
        _ => "figure",
    }
}

/// The row's label: workload, size, figure and the two protocols.
fn label(r: &Ratio) -> String {
    format!(
        "{} {} {} · {} / {}",
        r.workload.as_str(),
        size_label(r.size),
        figure_name(r.figure),
        r.protocol,
        r.against
    )
}

/// Every value a row draws: its rounds, its interval and its estimate.
fn values(r: &Ratio) -> Vec<f64> {
    let mut all = vec![r.estimate];
    if let Some(spread) = &r.spread {
        all.extend(&spread.rounds);
    }
    if let Some(i) = r.interval {
        all.extend([i.low, i.high]);
    }
    all.retain(|v| v.is_finite() && *v > 0.0);
    all
}

/// Ticks for a log axis from `lo` to `hi` (both > 0): 1-2-5 per decade, or finer steps when
/// the axis spans less than a few of those.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decade = |m: &[f64]| -> Vec<f64> {
        let mut out = Vec::new();
        let mut base = 10f64.powf(lo.log10().floor());
        while base <= hi {
            for step in m {
                let t = base * step;
                if t >= lo && t <= hi {
                    out.push(t);
                }
            }
            base *= 10.0;
        }
        out
    };
    let coarse = decade(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 {
        return coarse;
    }
    let finer = decade(&[1.0, 1.5, 2.0, 3.0, 5.0, 7.0]);
    if finer.len() >= 3 {
        return finer;
    }
    // Under a factor of about 1.5 end to end: evenly spaced values, five or so.
    let span = hi - lo;
    let step = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
        .into_iter()
        .find(|s| span / s <= 6.0)
        .unwrap_or(1.0);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-12 {
        out.push((t / step).round() * step);
        t += step;
    }
    out
}

fn tick_text(t: f64) -> String {
    let text = format!("{t:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}×")
}

/// The forest chart and its key; empty when no ratio has more than one round (nothing
/// spreads) or there are none.
pub(super) fn ratio_chart(ratios: &[Ratio]) -> String {
    if !ratios.iter().any(|r| r.spread.is_some()) {
        return String::new();
    }
    let all: Vec<f64> = ratios.iter().flat_map(values).chain([1.0]).collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min) / (1.0 + NOISY_ABOVE * 1.5);
    let hi = all.iter().copied().fold(0.0, f64::max) * (1.0 + NOISY_ABOVE * 1.5);
    let (log_lo, log_hi) = (lo.ln(), hi.ln());
    let x = |v: f64| PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * (v.ln() - log_lo) / (log_hi - log_lo);
    let h = TOP + ratios.len() as f64 * ROW + AXIS;
    let bottom = TOP + ratios.len() as f64 * ROW;
    let title = "protocols against each other, round by round";
    let mut out = format!(
        "<svg class=chart role=img aria-label='{title}' width='{W}' height='{h}' viewBox='0 0 {W} {h}'>\
<text x='{PLOT_LEFT}' y='32' fill='#666'>each round's ratio, log scale</text>\
<text x='{VALUE_LEFT}' y='32' fill='#666'>ratio (interval)</text>"
    );
    for t in ticks(lo, hi) {
        let _ = write!(
            out,
            "<line x1='{0:.1}' x2='{0:.1}' y1='{TOP}' y2='{bottom}' stroke='#eee'/><text x='{0:.1}' y='{1}' text-anchor='middle'>{2}</text>",
            x(t),
            bottom + 16.0,
            tick_text(t)
        );
    }
    let mut previous_group = String::new();
    for (i, r) in ratios.iter().enumerate() {
        let top = TOP + i as f64 * ROW;
        let mid = top + ROW / 2.0;
        let group = format!("{} {} {}", r.workload.as_str(), r.size, r.figure);
        if i > 0 && group != previous_group {
            let _ = write!(
                out,
                "<line x1='0' x2='{W}' y1='{top}' y2='{top}' stroke='#ddd'/>"
            );
        }
        previous_group = group;
        let row_label = label(r);
        let mark = match r.mark() {
            "" => String::new(),
            mark => format!(" {mark}"),
        };
        let why = match (&r.machine, r.noisy) {
            (Some(why), _) => format!(": not held within 5%, the machine was contended ({why})"),
            (None, true) => ": its interval reaches more than 5% from it".to_owned(),
            (None, false) if r.interval.is_some() => ": held within 5%".to_owned(),
            (None, false) => String::new(),
        };
        let _ = write!(
            out,
            "<g class=ratio data-label='{0}' data-estimate='{1}'><title>{0}: {1:.3}{2}</title>\
<text x='{LABEL_RIGHT}' y='{3:.1}' text-anchor='end'>{0}</text>\
<rect x='{4:.1}' y='{5:.1}' width='{6:.1}' height='{7}' fill='#e8e8e8'/>",
            esc(&row_label),
            r.estimate,
            esc(&why),
            mid + 4.0,
            x(r.estimate / (1.0 + NOISY_ABOVE)),
            top + 3.0,
            x(r.estimate * (1.0 + NOISY_ABOVE)) - x(r.estimate / (1.0 + NOISY_ABOVE)),
            ROW - 6.0,
        );
        if let Some(spread) = &r.spread {
            let _ = write!(
                out,
                "<line x1='{:.1}' x2='{:.1}' y1='{mid:.1}' y2='{mid:.1}' stroke='#999'/>",
                x(spread.min),
                x(spread.max)
            );
        }
        if let Some(interval) = r.interval {
            let _ = write!(
                out,
                "<rect class=interval x='{:.1}' y='{:.1}' width='{:.1}' height='8' fill='{}'/>",
                x(interval.low),
                mid - 4.0,
                (x(interval.high) - x(interval.low)).max(1.5),
                colour(&r.protocol)
            );
        }
        for &round in r.spread.iter().flat_map(|s| &s.rounds) {
            let _ = write!(
                out,
                "<circle class=round cx='{:.1}' cy='{mid:.1}' r='2.2' fill='#333' fill-opacity='.45'/>",
                x(round)
            );
        }
        let value = match r.interval {
            Some(i) => format!("{:.2} ({:.2}–{:.2}){mark}", r.estimate, i.low, i.high),
            None => format!("{:.2}", r.estimate),
        };
        let _ = write!(
            out,
            "<circle cx='{:.1}' cy='{mid:.1}' r='4.5' fill='#fff' stroke='#111' stroke-width='1.6'/>\
<text x='{VALUE_LEFT}' y='{:.1}'>{}</text></g>",
            x(r.estimate),
            mid + 4.0,
            esc(&value)
        );
    }
    let _ = write!(
        out,
        "<line class=one x1='{0:.1}' x2='{0:.1}' y1='{TOP}' y2='{bottom}' stroke='#111' stroke-dasharray='3 3'/>\
<line x1='{PLOT_LEFT}' x2='{PLOT_RIGHT}' y1='{bottom}' y2='{bottom}' stroke='#999'/></svg>",
        x(1.0)
    );
    let rounds = ratios
        .iter()
        .filter_map(|r| r.spread.as_ref().map(|s| s.rounds.len()))
        .max()
        .unwrap_or(1);
    let _ = write!(
        out,
        "<p class=note>Each row is one protocol's figure divided by the other's measured in the same round ({rounds} rounds), so drift on the machine that hits both cancels out. Dots: each round. Ring: the ratio the rounds point to (the median of the geometric means of every pair of rounds, robust to one stalled round). Coloured bar: where it lies with at least 95% confidence (the whole range with fewer than six rounds). Grey band: ±{pct:.0}% around it; a bar inside it held within {pct:.0}%. The dashed line is 1× (equal). For msgs/s above 1× is faster, for p50 latency below 1× is. <b>?</b> its bar reaches past the band: another run may well give a ratio more than {pct:.0}% away; <b>!</b> did so while the machine was contended (run-queue waits, steal), so the machine, not the protocol, set the spread.</p>",
        pct = NOISY_ABOVE * 100.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::super::spread::{Centre, Spread};
    use super::*;
    use protolab_load::Workload;

    fn ratio(protocol: &str, rounds: &[f64]) -> Ratio {
        let spread = Spread::of(rounds);
        let Centre { estimate, interval } = Centre::of(rounds).unwrap();
        Ratio {
            workload: Workload::Echo,
            size: 32,
            protocol: protocol.to_owned(),
            against: "http".to_owned(),
            figure: "report.throughput_per_sec",
            estimate,
            noisy: interval.is_some_and(|i| i.deviation(estimate) > NOISY_ABOVE),
            spread,
            interval,
            machine: None,
        }
    }

    fn attr(svg: &str, after: &str, name: &str) -> Vec<f64> {
        svg.split(after)
            .skip(1)
            .filter_map(|part| {
                let start = part.find(&format!("{name}='"))? + name.len() + 2;
                part[start..].split('\'').next()?.parse().ok()
            })
            .collect()
    }

    #[test]
    fn one_row_per_ratio_with_every_round_and_the_estimate_placed_on_a_log_axis() {
        let ratios = [
            ratio("ws", &[2.0, 2.04, 1.96, 2.02, 1.98]),
            ratio("wss", &[0.5, 0.8, 0.45, 0.6, 0.55]),
        ];
        let svg = ratio_chart(&ratios);
        assert_eq!(svg.matches("<g class=ratio").count(), 2, "{svg}");
        assert_eq!(svg.matches("class=round").count(), 10, "{svg}");
        let estimates = attr(&svg, "<g class=ratio", "data-estimate");
        assert_eq!(estimates.len(), 2, "{svg}");
        assert!((estimates[0] - 2.0).abs() < 1e-3 && (estimates[1] - 0.55).abs() < 1e-9);
        assert!(svg.contains("echo 32 B msgs/s · ws / http"), "{svg}");
        // wss moved far more than 5%: marked; ws held (its interval is the whole range, ±5%).
        assert!(svg.contains("0.55 (0.45–0.80) ?"), "{svg}");
        assert!(svg.contains("2.00 (1.96–2.04)<"), "{svg}");
        // Log axis: 1× lies as far from 0.5 as 2 lies from 1.
        let rounds = attr(&svg, "class=round", "cx");
        let (at_2, at_05) = (rounds[0], rounds[5]);
        let one = attr(&svg, "class=one", "x1")[0];
        assert!(
            ((at_2 - one) - (one - at_05)).abs() < 0.2,
            "2× at {at_2}, 1× at {one}, 0.5× at {at_05}"
        );
    }

    #[test]
    fn a_single_round_draws_nothing() {
        assert_eq!(ratio_chart(&[ratio("ws", &[1.3])]), "");
        assert_eq!(ratio_chart(&[]), "");
    }

    #[test]
    fn ticks_fit_the_axis_and_stay_readable() {
        assert_eq!(ticks(0.3, 12.0), vec![0.5, 1.0, 2.0, 5.0, 10.0]);
        let close = ticks(0.93, 1.12);
        assert!(close.len() >= 3, "{close:?}");
        assert!(close.iter().all(|t| (0.93..=1.12).contains(t)), "{close:?}");
        assert_eq!(tick_text(1.0), "1×");
        assert_eq!(tick_text(0.95), "0.95×");
    }
}

//! Ratios between protocols, round by round. On a shared machine one figure moves by tens of
//! percent between rounds (another build starting, a CPU waiting on the run queue), but two
//! protocols measured a second apart move together: the ratio of a round's two figures is
//! steadier than either. So each ratio is taken within a round, and the run reports the
//! median of those per-round ratios with their range and a confidence interval of that
//! median, and says whether it holds within [`NOISY_ABOVE`]; where it does not and the
//! machine was contended during those rounds, it says that the machine is why.

use std::collections::BTreeMap;

use protolab_load::{Report, Workload};

use super::contention::{Contention, Sample};
use super::model::Settings;
use super::rounds::Round;
use super::spread::{Interval, Ratio, Spread, NOISY_ABOVE};
use super::table;

/// The figures compared between protocols: the headline ones, by their path in a run.
const FIGURES: [&str; 2] = ["report.throughput_per_sec", "report.latency.p50_us"];

fn figure(report: &Report, path: &str) -> Option<f64> {
    match path {
        "report.throughput_per_sec" => Some(report.throughput_per_sec),
        "report.latency.p50_us" => report.latency.as_ref().map(|l| l.p50_us),
        _ => None,
    }
}

/// One protocol's rounds of one workload and size, by round index.
type ByRound<'a> = BTreeMap<usize, (&'a Report, Sample)>;

/// Every protocol's headline figures against the first protocol of each workload and size,
/// round by round; a warning names the ratios that did not hold.
pub(super) fn per_round(
    rounds: &[Round],
    s: &Settings,
    server_cpu: bool,
    warnings: &mut Vec<String>,
) -> Vec<Ratio> {
    // (workload, size) in the order run → protocol in the order of --protocols → round → what
    // it measured.
    let mut groups: Vec<(Workload, usize)> = Vec::new();
    let mut measured: BTreeMap<(&str, usize, String), ByRound<'_>> = BTreeMap::new();
    for round in rounds {
        let Ok(report) = &round.report else { continue };
        if report.messages == 0 {
            continue;
        }
        let step = round.step;
        if !groups.contains(&(step.workload, step.size)) {
            groups.push((step.workload, step.size));
        }
        measured
            .entry((step.workload.as_str(), step.size, step.protocol.name()))
            .or_default()
            .insert(step.round, (report, round.sample));
    }
    let server_threads = server_cpu.then_some(s.server_threads).flatten();
    let rtt_ms = s.wan.as_ref().map_or(0.0, |w| w.rtt_ms);
    let mut ratios = Vec::new();
    for (workload, size) in groups {
        let ran: Vec<&String> = s
            .protocols
            .iter()
            .filter(|p| measured.contains_key(&(workload.as_str(), size, (*p).clone())))
            .collect();
        let Some((against, others)) = ran.split_first() else {
            continue;
        };
        let base = &measured[&(workload.as_str(), size, (*against).clone())];
        for protocol in others {
            let this = &measured[&(workload.as_str(), size, (*protocol).clone())];
            let mut together = Sample::default();
            for (round, (_, sample)) in this {
                if let Some((_, other)) = base.get(round) {
                    together.add(sample);
                    together.add(other);
                }
            }
            for path in FIGURES {
                let values: Vec<f64> = this
                    .iter()
                    .filter_map(|(round, (report, _))| {
                        let (base_report, _) = base.get(round)?;
                        let (v, b) = (figure(report, path)?, figure(base_report, path)?);
                        (b > 0.0).then(|| v / b)
                    })
                    .collect();
                let Some(median) = median(&values) else {
                    continue;
                };
                let interval = Interval::of_median(&values);
                let noisy = interval.is_some_and(|i| i.deviation(median) > NOISY_ABOVE);
                let contention =
                    Contention::judge(&together, s.client_threads, server_threads, rtt_ms);
                let machine =
                    (noisy && contention.machine_bound).then(|| contention.why.join("; "));
                ratios.push(Ratio {
                    workload,
                    size,
                    protocol: (*protocol).clone(),
                    against: (*against).clone(),
                    figure: path,
                    median,
                    spread: Spread::of(&values),
                    interval,
                    noisy,
                    machine,
                });
            }
        }
    }
    let label = |r: &Ratio| {
        let what = if r.figure == FIGURES[0] {
            "msgs/s"
        } else {
            "p50"
        };
        format!(
            "{} {} {what} {}/{} {:.2} ({:.2}–{:.2})",
            r.workload.as_str(),
            table::size_label(r.size),
            r.protocol,
            r.against,
            r.median,
            r.interval.map_or(r.median, |i| i.low),
            r.interval.map_or(r.median, |i| i.high)
        )
    };
    let machine: Vec<String> = ratios
        .iter()
        .filter(|r| r.machine.is_some())
        .map(label)
        .collect();
    let worst = ratios
        .iter()
        .filter_map(|r| r.machine.as_deref())
        .max_by_key(|why| why.len())
        .unwrap_or_default();
    let own: Vec<String> = ratios
        .iter()
        .filter(|r| r.noisy && r.machine.is_none())
        .map(label)
        .collect();
    if !machine.is_empty() {
        warnings.push(format!(
            "{} of {} protocol ratios could not be held within {:.0}% on this machine, which was contended while they ran (e.g. {worst}; each ratio's `machine` in results.json says how much; rerun on a quieter machine): {} (marked ! under ratios)",
            machine.len(),
            ratios.len(),
            NOISY_ABOVE * 100.0,
            machine.join(" · ")
        ));
    }
    if !own.is_empty() {
        warnings.push(format!(
            "{} of {} protocol ratios moved more than {:.0}% between rounds on a quiet machine (more --rounds narrow them): {} (marked ? under ratios)",
            own.len(),
            ratios.len(),
            NOISY_ABOVE * 100.0,
            own.join(" · ")
        ));
    }
    ratios
}

/// The ratios as a text block: one line per workload, size and figure, one column per
/// protocol against the first; empty when there is nothing to compare.
pub fn render(ratios: &[Ratio]) -> String {
    if ratios.is_empty() {
        return String::new();
    }
    let mut columns: Vec<String> = Vec::new();
    let mut lines: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for r in ratios {
        let column = format!("{}/{}", r.protocol, r.against);
        if !columns.contains(&column) {
            columns.push(column.clone());
        }
        let what = if r.figure == FIGURES[0] {
            "msgs/s"
        } else {
            "p50"
        };
        let label = format!(
            "{} {} {what}",
            r.workload.as_str(),
            table::size_label(r.size)
        );
        let mark = r.mark();
        let cell = match r.interval {
            Some(i) => format!("{:.2} ({:.2}-{:.2}){mark}", r.median, i.low, i.high),
            None => format!("{:.2}", r.median),
        };
        match lines.iter_mut().find(|(l, _)| *l == label) {
            Some((_, cells)) => cells.push((column, cell)),
            None => lines.push((label, vec![(column, cell)])),
        }
    }
    let label_width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let width = |c: &String| {
        lines
            .iter()
            .flat_map(|(_, cells)| cells.iter().filter(|(col, _)| col == c))
            .map(|(_, cell)| cell.chars().count())
            .chain([c.chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = columns.iter().map(width).collect();
    let mut out = String::from(
        "\nratios, round by round (median of the rounds' ratios, its interval; ? may move more than 5% next run, ! could not be held: the machine was contended)\n",
    );
    out.push_str(&format!("{:label_width$}", ""));
    for (c, w) in columns.iter().zip(&widths) {
        out.push_str(&format!("  {c:>w$}"));
    }
    out.push('\n');
    for (label, cells) in &lines {
        out.push_str(&format!("{label:label_width$}"));
        for (c, w) in columns.iter().zip(&widths) {
            let cell = cells
                .iter()
                .find(|(col, _)| col == c)
                .map_or("-", |(_, cell)| cell.as_str());
            out.push_str(&format!("  {cell:>w$}"));
        }
        out.push('\n');
    }
    out
}

fn median(values: &[f64]) -> Option<f64> {
    match values {
        [] => None,
        [one] => Some(*one),
        _ => Spread::of(values).map(|sp| sp.median),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_interval_widens_to_the_range_below_six_rounds() {
        let five = Interval::of_median(&[1.0, 1.3, 0.9, 1.05, 0.7]).unwrap();
        assert_eq!((five.low, five.high), (0.7, 1.3));
        assert!((five.confidence - 0.9375).abs() < 1e-12, "{five:?}");
        // Eight rounds: the second lowest and second highest cover the median with 93%,
        // short of 95%, so the range stands (99.2%).
        let eight = Interval::of_median(&[8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]).unwrap();
        assert_eq!((eight.low, eight.high), (1.0, 8.0));
        // Nine: the second from each end covers 96.1%.
        let nine = Interval::of_median(&[9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!((nine.low, nine.high), (2.0, 8.0));
        assert!((nine.confidence - 0.9609375).abs() < 1e-9, "{nine:?}");
        assert!(Interval::of_median(&[1.0]).is_none());
    }

    #[test]
    fn an_interval_further_than_five_percent_from_the_median_is_noisy() {
        let steady = Interval::of_median(&[1.0, 1.02, 0.98, 1.04, 0.97]).unwrap();
        assert!(steady.deviation(1.0) <= NOISY_ABOVE);
        let wide = Interval::of_median(&[1.0, 1.02, 0.98, 1.04, 0.90]).unwrap();
        assert!(wide.deviation(1.0) > NOISY_ABOVE);
    }
}

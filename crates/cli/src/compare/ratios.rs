//! Ratios between protocols, round by round. On a shared machine one figure moves by tens of
//! percent between rounds (another build starting, a CPU waiting on the run queue), but two
//! protocols measured a second apart move together: the ratio of a round's two figures is
//! steadier than either. So each ratio is taken within a round, and the run reports where
//! those per-round ratios centre ([`Centre`]) with their range and a confidence interval,
//! and says whether it holds within [`NOISY_ABOVE`]; where it does not and the machine was
//! contended during those rounds, it says that the machine is why.

use std::collections::BTreeMap;

use protolab_load::{Report, Workload};

use super::contention::{Contention, Sample};
use super::model::Settings;
use super::rounds::Round;
use super::spread::{Centre, Ratio, Spread, NOISY_ABOVE};
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
                let Some(Centre { estimate, interval }) = Centre::of(&values) else {
                    continue;
                };
                let noisy = interval.is_some_and(|i| i.deviation(estimate) > NOISY_ABOVE);
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
                    estimate,
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
            r.estimate,
            r.interval.map_or(r.estimate, |i| i.low),
            r.interval.map_or(r.estimate, |i| i.high)
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
            "{} of {} protocol ratios could not be held within {:.0}% on this machine, which was contended while they ran (e.g. {worst}; each ratio's `machine` in results.json says how much; rerun on a quieter machine; marked ! under ratios): {}",
            machine.len(),
            ratios.len(),
            NOISY_ABOVE * 100.0,
            machine.join(" · ")
        ));
    }
    if !own.is_empty() {
        warnings.push(format!(
            "{} of {} protocol ratios may move more than {:.0}% next run: their rounds spread so far on a quiet machine that the 95% interval reaches past it (marked ? under ratios; more --rounds narrow it): {}",
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
            Some(i) => format!("{:.2} ({:.2}-{:.2}){mark}", r.estimate, i.low, i.high),
            None => format!("{:.2}", r.estimate),
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
        "\nratios, round by round (the rounds' ratio, its 95% interval; ? may move more than 5% next run, ! could not be held: the machine was contended)\n",
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

#[cfg(test)]
mod tests {
    use super::super::spread::{signed_rank_cdf, Interval};
    use super::*;

    fn interval(values: &[f64]) -> Interval {
        Centre::of(values).and_then(|c| c.interval).unwrap()
    }

    #[test]
    fn the_signed_rank_distribution_is_wilcoxons() {
        // n = 3: the subsets of {1, 2, 3} by sum: 0, 1, 2, {3, 1+2}, 1+3, 2+3, 1+2+3.
        let three = signed_rank_cdf(3);
        let counts: Vec<f64> = three.iter().map(|p| p * 8.0).collect();
        assert_eq!(counts, vec![1.0, 2.0, 3.0, 5.0, 6.0, 7.0, 8.0]);
        // Tabled two-sided 5% critical values of T: 2 at n = 7, 8 at n = 10, 25 at n = 15.
        for (n, critical) in [(7, 2), (10, 8), (15, 25)] {
            let cdf = signed_rank_cdf(n);
            assert!(cdf[critical] <= 0.025, "n={n}: {}", cdf[critical]);
            assert!(cdf[critical + 1] > 0.025, "n={n}: {}", cdf[critical + 1]);
        }
    }

    #[test]
    fn the_estimate_is_the_median_of_the_pair_means_on_a_log_scale() {
        // Three rounds: pair means (geometric) 1, 2, 4, √2, 2, 2√2; median (2 + 2)/2 = 2.
        let c = Centre::of(&[1.0, 2.0, 4.0]).unwrap();
        assert!((c.estimate - 2.0).abs() < 1e-12, "{c:?}");
        // Skewed: 1, 1, 4 → 1, 1, 4, 1, 2, 2 → median of sorted 1 1 1 2 2 4 is √2.
        let c = Centre::of(&[1.0, 1.0, 4.0]).unwrap();
        assert!((c.estimate - 2f64.sqrt()).abs() < 1e-12, "{c:?}");
        // Inverting every round inverts the estimate and swaps the interval's ends.
        let rounds = [0.93, 1.02, 0.97, 1.11, 0.99, 1.04, 0.95];
        let inverse: Vec<f64> = rounds.iter().map(|r| 1.0 / r).collect();
        let (a, b) = (Centre::of(&rounds).unwrap(), Centre::of(&inverse).unwrap());
        assert!((a.estimate * b.estimate - 1.0).abs() < 1e-12);
        let (ia, ib) = (a.interval.unwrap(), b.interval.unwrap());
        assert!((ia.low * ib.high - 1.0).abs() < 1e-12);
        // One round: itself, nothing to judge.
        let one = Centre::of(&[3.0]).unwrap();
        assert!(
            (one.estimate - 3.0).abs() < 1e-12 && one.interval.is_none(),
            "{one:?}"
        );
        assert!(Centre::of(&[]).is_none());
        // A zero cannot go on a log scale: arithmetic means.
        let zero = Centre::of(&[0.0, 2.0]).unwrap();
        assert!((zero.estimate - 1.0).abs() < 1e-12, "{zero:?}");
    }

    #[test]
    fn the_interval_is_the_range_below_six_rounds_and_narrows_from_seven() {
        let five = interval(&[1.0, 1.3, 0.9, 1.05, 0.7]);
        assert!((five.low - 0.7).abs() < 1e-12 && (five.high - 1.3).abs() < 1e-12);
        assert!((five.confidence - 0.9375).abs() < 1e-12, "{five:?}");
        // Seven rounds: T ≤ 2 has chance 3/128, so the third lowest and third highest of
        // the 28 pair means, 95.3%.
        let seven = interval(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        let mut means: Vec<f64> = Vec::new();
        for a in 1..=7 {
            for b in a..=7 {
                means.push((f64::from(a) * f64::from(b)).sqrt());
            }
        }
        means.sort_by(f64::total_cmp);
        assert!((seven.low - means[2]).abs() < 1e-12, "{seven:?} {means:?}");
        assert!(
            (seven.high - means[25]).abs() < 1e-12,
            "{seven:?} {means:?}"
        );
        assert!((seven.confidence - (1.0 - 6.0 / 128.0)).abs() < 1e-12);
    }

    #[test]
    fn an_interval_further_than_five_percent_from_the_estimate_is_noisy() {
        let steady = Centre::of(&[1.0, 1.02, 0.98, 1.04, 0.97]).unwrap();
        let i = steady.interval.unwrap();
        assert!(i.deviation(steady.estimate) <= NOISY_ABOVE, "{steady:?}");
        let wide = Centre::of(&[1.0, 1.02, 0.98, 1.04, 0.90]).unwrap();
        let i = wide.interval.unwrap();
        assert!(i.deviation(wide.estimate) > NOISY_ABOVE, "{wide:?}");
        // Seven rounds with one stalled: the estimate stays with the six (their mean would be
        // pulled 4% down), the interval reaches towards the stall and the ratio reads noisy.
        let stalled = Centre::of(&[1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.7]).unwrap();
        assert!((stalled.estimate - 1.0).abs() < 0.01, "{stalled:?}");
        let i = stalled.interval.unwrap();
        assert!(i.deviation(stalled.estimate) > NOISY_ABOVE, "{stalled:?}");
    }
}

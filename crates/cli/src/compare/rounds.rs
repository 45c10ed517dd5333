//! Rounds: every protocol × workload × size is measured several times, one round of all of
//! them after another, so slow drift on the machine (another build starting, a CPU warming)
//! hits every protocol alike instead of whichever ran last. Here the rounds of one run are
//! put together: one report pooling them all (counts add, percentiles from the summed
//! histograms), and for each headline figure its median round, its range, and whether it
//! moved more than [`NOISY_ABOVE`] between rounds ([`Spread`]).

use std::collections::BTreeMap;
use std::time::Duration;

use protolab_load::{Report, Workload};

use super::contention::{Contention, Sample};
use super::model::{self, Cpu, Run, Settings};
use super::spread::{Spread, NOISY_ABOVE};
use super::{table, Step, CLIENT_BOUND_AT};

/// What one round of one run produced.
pub(super) struct Round {
    pub step: Step,
    /// The load generator's report, or why the run did not start.
    pub report: Result<Report, String>,
    /// The machine during the round.
    pub sample: Sample,
}

/// The figures given a spread, by their path in `results.json`'s run.
fn figures(report: &Report, cpu: &Cpu) -> Vec<(&'static str, Option<f64>)> {
    let lat = report.latency.as_ref();
    let p = &report.phases;
    let mut out = vec![
        ("report.throughput_per_sec", Some(report.throughput_per_sec)),
        ("report.latency.p50_us", lat.map(|l| l.p50_us)),
        ("report.latency.p99_us", lat.map(|l| l.p99_us)),
        ("report.latency.p999_us", lat.map(|l| l.p999_us)),
        (
            "report.bytes.sent_per_message",
            report.bytes.sent_per_message,
        ),
        (
            "report.bytes.received_per_message",
            report.bytes.received_per_message,
        ),
        ("cpu.client_us_per_1k", cpu.client_us_per_1k),
        ("cpu.server_us_per_1k", cpu.server_us_per_1k),
    ];
    if report.workload == Workload::Connect {
        out.extend([
            (
                "report.phases.tcp_connect.p50_us",
                p.tcp_connect.as_ref().map(|s| s.p50_us),
            ),
            (
                "report.phases.tls_handshake.p50_us",
                p.tls_handshake.as_ref().map(|s| s.p50_us),
            ),
            (
                "report.phases.ws_upgrade.p50_us",
                p.ws_upgrade.as_ref().map(|s| s.p50_us),
            ),
        ]);
    }
    out
}

/// CPU figures of `messages` over `sample`.
fn cpu_of(messages: u64, sample: &Sample, s: &Settings, server_cpu: bool, open_loop: bool) -> Cpu {
    let per_1k =
        |d: Duration| (messages > 0).then(|| d.as_secs_f64() * 1e6 * 1000.0 / messages as f64);
    let wall = sample.wall.as_secs_f64().max(1e-9);
    let (client, server) = (sample.client.run, sample.server.run);
    // A lab elsewhere has no threads here: its CPU is unknown, not zero.
    let server_only = |v: f64| server_cpu.then_some(v);
    Cpu {
        client_secs: client.as_secs_f64(),
        server_secs: server_only(server.as_secs_f64()),
        client_us_per_1k: per_1k(client),
        server_us_per_1k: per_1k(server).filter(|_| server_cpu),
        client_utilization: client.as_secs_f64() / (wall * s.client_threads as f64),
        server_utilization: s
            .server_threads
            .and_then(|threads| server_only(server.as_secs_f64() / (wall * threads as f64))),
        client_cores: client.as_secs_f64() / wall,
        server_cores: server_only(server.as_secs_f64() / wall),
        fixed_cost_per_second: open_loop,
    }
}

/// Puts each run's rounds together, in the order the runs first appear, and adds the
/// warnings a reader must see.
pub(super) fn combine(
    rounds: Vec<Round>,
    s: &Settings,
    server_cpu: bool,
    warnings: &mut Vec<String>,
) -> Vec<Run> {
    let mut order: Vec<(String, Workload, usize)> = Vec::new();
    let mut grouped: BTreeMap<(String, &'static str, usize), Vec<Round>> = BTreeMap::new();
    for round in rounds {
        let name = round.step.protocol.name().to_owned();
        let key = (name.clone(), round.step.workload.as_str(), round.step.size);
        if !grouped.contains_key(&key) {
            order.push((name, round.step.workload, round.step.size));
        }
        grouped.entry(key).or_default().push(round);
    }
    let mut noisy_headlines = Vec::new();
    let mut machine_bound = Vec::new();
    let mut client_bound = Vec::new();
    let mut runs = Vec::new();
    for (name, workload, size) in order {
        let Some(group) = grouped.remove(&(name.clone(), workload.as_str(), size)) else {
            continue;
        };
        let label = format!("{name} {} {}", workload.as_str(), table::size_label(size));
        let run = combine_one(
            &name, workload, size, group, s, server_cpu, &label, warnings,
        );
        if let Some(cpu) = run.cpu.as_ref().filter(|_| run.client_bound) {
            client_bound.push((label.clone(), cpu.client_utilization));
        }
        if let Some(c) = run.contention.as_ref().filter(|c| c.machine_bound) {
            machine_bound.push(format!("{label}: {}", c.why.join("; ")));
        }
        for (path, what) in [
            ("report.throughput_per_sec", "throughput"),
            ("report.latency.p50_us", "p50"),
        ] {
            if let Some(spread) = run.spread.get(path).filter(|sp| sp.noisy) {
                noisy_headlines.push(format!("{label} {what} ±{:.0}%", spread.deviation * 100.0));
            }
        }
        runs.push(run);
    }
    if let Some(w) = client_bound_warning(&client_bound, runs.len(), s.client_threads) {
        warnings.push(w);
    }
    if !machine_bound.is_empty() {
        warnings.push(format!(
            "the machine, not the protocol, limited {} of {} runs (marked # in the table; rerun on a quieter machine, or with fewer --connections or --rate): {}",
            machine_bound.len(),
            runs.len(),
            machine_bound.join(" · ")
        ));
    }
    if !noisy_headlines.is_empty() {
        warnings.push(format!(
            "noisy: these headline figures moved more than {:.0}% from their median between rounds, so differences between protocols smaller than that are not shown by this run (marked ? in the table; more rounds or a quieter machine narrow them): {}",
            NOISY_ABOVE * 100.0,
            noisy_headlines.join(" · ")
        ));
    }
    runs
}

#[allow(clippy::too_many_arguments)]
fn combine_one(
    name: &str,
    workload: Workload,
    size: usize,
    group: Vec<Round>,
    s: &Settings,
    server_cpu: bool,
    label: &str,
    warnings: &mut Vec<String>,
) -> Run {
    let planned = group.len();
    let mut measured: Vec<(Report, Sample)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for round in group {
        match round.report {
            Ok(report) => measured.push((report, round.sample)),
            Err(e) => errors.push(e),
        }
    }
    let Some((first, _)) = measured.first() else {
        let err = errors.first().cloned().unwrap_or_default();
        warnings.push(format!("{name} {}: did not run: {err}", workload.as_str()));
        return Run {
            protocol: name.to_owned(),
            workload,
            size,
            report: None,
            cpu: None,
            client_bound: false,
            round_trips: None,
            error: Some(err),
            rounds: 0,
            spread: BTreeMap::new(),
            contention: None,
            machine_bound: false,
        };
    };
    if let Some(err) = errors.first() {
        warnings.push(format!(
            "{label}: {} of {planned} rounds did not run ({err}); the figures are of the other {}",
            errors.len(),
            measured.len()
        ));
    }
    // Rounds ran one after another, not side by side as `merge` assumes: the load and the
    // rate are each round's, and the time adds up.
    let mut pooled = first.clone();
    let mut total = Sample::default();
    let mut per_figure: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let open_loop = first.rate.is_some();
    for (i, (report, sample)) in measured.iter().enumerate() {
        if i > 0 {
            if let Err(e) = pooled.merge(report) {
                warnings.push(format!("{label}: round {} left out: {e}", i + 1));
                continue;
            }
        }
        total.add(sample);
        let cpu = cpu_of(report.messages, sample, s, server_cpu, open_loop);
        for (path, value) in figures(report, &cpu) {
            if let Some(v) = value {
                per_figure.entry(path).or_default().push(v);
            }
        }
    }
    pooled.connections = first.connections;
    pooled.rate = first.rate;
    pooled.duration_secs = measured.iter().map(|(r, _)| r.duration_secs).sum();
    // Each round's rate weighted by its time: messages over the time when every round counts
    // all of its messages, and still the measured rate when a warm-up was left out of it.
    pooled.throughput_per_sec = if pooled.duration_secs > 0.0 {
        measured
            .iter()
            .map(|(r, _)| r.throughput_per_sec * r.duration_secs)
            .sum::<f64>()
            / pooled.duration_secs
    } else {
        0.0
    };
    let spread: BTreeMap<String, Spread> = per_figure
        .into_iter()
        .filter_map(|(path, values)| Spread::of(&values).map(|sp| (path.to_owned(), sp)))
        .collect();
    let cpu = cpu_of(pooled.messages, &total, s, server_cpu, open_loop);
    let rtt_ms = s.wan.as_ref().map_or(0.0, |w| w.rtt_ms);
    let contention = Contention::judge(&total, s.client_threads, s.server_threads, rtt_ms);
    let client_bound = cpu.client_utilization >= CLIENT_BOUND_AT;
    let declined = pooled
        .compression
        .as_ref()
        .filter(|c| c.agreed.is_none() && pooled.connections_opened > 0);
    if let Some(c) = declined {
        warnings.push(format!(
            "{label}: the server declined permessage-deflate (offered `{}`), so these messages went uncompressed",
            c.offer
        ));
    }
    if pooled.messages == 0 {
        warnings.push(format!(
            "{label}: no message completed ({})",
            pooled
                .errors
                .first
                .as_deref()
                .unwrap_or("no error recorded")
        ));
    }
    let round_trips = (workload == Workload::Connect)
        .then(|| model::RoundTrips::of(&pooled, rtt_ms))
        .flatten();
    if let Some(rt) = round_trips.filter(|rt| rt.disagree) {
        warnings.push(format!(
            "{name} connect: {:.1} round trips measured (median time to the first echo ÷ RTT), {:.1} counted: more than {} apart, so time went where the count does not see (retransmission timeouts, CPU, queueing)",
            rt.measured.unwrap_or(0.0),
            rt.counted,
            rt.tolerance
        ));
    }
    Run {
        protocol: name.to_owned(),
        workload,
        size,
        report: Some(pooled),
        cpu: Some(cpu),
        client_bound,
        round_trips,
        error: None,
        rounds: measured.len(),
        spread,
        machine_bound: contention.machine_bound,
        contention: Some(contention),
    }
}

/// One warning for every run whose load generator was nearly all busy, rather than one each:
/// on a two-core machine a closed loop keeps it busy in most runs, and a line per run buried
/// the other warnings. `bound` holds each such run's label and its threads' utilization.
fn client_bound_warning(bound: &[(String, f64)], runs: usize, threads: usize) -> Option<String> {
    if bound.is_empty() {
        return None;
    }
    let percent = |u: f64| (u * 100.0).round();
    let (low, high) = bound.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (_, u)| {
        (lo.min(percent(*u)), hi.max(percent(*u)))
    });
    let busy = if low < high {
        format!("{low:.0}–{high:.0}%")
    } else {
        format!("{high:.0}%")
    };
    let each = bound
        .iter()
        .map(|(label, u)| format!("{label} {:.0}%", percent(*u)))
        .collect::<Vec<_>>()
        .join(" · ");
    let threads = if threads == 1 {
        "its thread".to_owned()
    } else {
        format!("its {threads} threads")
    };
    Some(format!(
        "the load generator kept {threads} {busy} busy in {} of {runs} runs, so their figures may show its limit rather than the protocol's (marked ! in the table; rerun with more --client-threads or fewer --connections): {each}",
        bound.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_is_the_furthest_round_from_the_median() {
        let sp = Spread::of(&[100.0, 104.0, 97.0]).unwrap();
        assert_eq!(sp.median, 100.0);
        assert_eq!((sp.min, sp.max), (97.0, 104.0));
        assert!((sp.deviation - 0.04).abs() < 1e-12);
        assert!(!sp.noisy);
        let noisy = Spread::of(&[100.0, 80.0, 101.0, 99.0]).unwrap();
        assert_eq!(noisy.median, 99.5);
        assert!(noisy.noisy, "{noisy:?}");
        assert!(Spread::of(&[5.0]).is_none());
        assert!(!Spread::of(&[0.0, 0.0]).unwrap().noisy);
    }

    #[test]
    fn runs_that_kept_the_load_generator_busy_share_one_warning() {
        assert_eq!(client_bound_warning(&[], 24, 1), None);
        let bound = [
            ("http connect 32 B".to_owned(), 0.971),
            ("ws echo 1 KiB".to_owned(), 0.904),
            ("wss echo 64 KiB".to_owned(), 0.99),
        ];
        let w = client_bound_warning(&bound, 24, 1).unwrap();
        assert!(
            w.starts_with("the load generator kept its thread 90–99% busy in 3 of 24 runs"),
            "{w}"
        );
        assert!(
            w.ends_with("http connect 32 B 97% · ws echo 1 KiB 90% · wss echo 64 KiB 99%"),
            "{w}"
        );
        let one = client_bound_warning(&bound[..1], 2, 2).unwrap();
        assert!(
            one.contains("its 2 threads 97% busy in 1 of 2 runs"),
            "{one}"
        );
    }
}

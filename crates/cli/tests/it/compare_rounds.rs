// `protolab compare --rounds`: every run is measured in rounds, one round of all runs after
// another; the pooled report and each figure's spread hold together, and the table, the JSON
// and the report mark what is noisy.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use serde_json::Value;

use crate::results::{number, protolab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_interleave_protocols_and_report_each_figure_with_its_spread() {
    let home = tempfile::tempdir().unwrap();
    let out_dir = home.path().join("report");
    let out = protolab(
        home.path(),
        &[
            "compare",
            "--protocols",
            "http,ws",
            "--workloads",
            "echo",
            "--sizes",
            "32",
            "-c",
            "2",
            "--rounds",
            "3",
            "--duration",
            "1800ms",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Round-robin: http and ws take turns, three times over, each round starting with the
    // protocol after the one the round before started with.
    let order: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split_once("] echo 32 B "))
        .map(|(_, protocol)| protocol)
        .collect();
    assert_eq!(
        order,
        ["http", "ws", "ws", "http", "http", "ws"],
        "{stderr}"
    );

    let file = out_dir.join("results.json");
    let results: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(results["schema_version"], 6);
    assert_eq!(results["settings"]["rounds"], 3);
    let run_secs = number(&results["settings"]["run_secs"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let throughput_line = table
        .lines()
        .find(|l| l.trim_start().starts_with("msgs/s"))
        .unwrap_or_else(|| panic!("{table}"));
    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "one entry per protocol, not per round");
    for run in runs {
        assert_eq!(run["rounds"], 3, "{run}");
        let report = &run["report"];
        // The rounds add up: three rounds of time. Each round's rate is over the time after
        // its warm-up, so the pooled rate is their time-weighted mean (checked below against
        // the rounds), not all messages over all the time.
        let duration = number(&report["duration_secs"]);
        assert!(
            (duration - 3.0 * run_secs).abs() < 0.5 * run_secs,
            "{duration} s pooled from rounds of {run_secs} s"
        );
        let pooled = number(&report["throughput_per_sec"]);
        assert!(pooled > 0.0, "{report}");
        let spread = &run["spread"]["report.throughput_per_sec"];
        let rounds: Vec<f64> = spread["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(number)
            .collect();
        assert_eq!(rounds.len(), 3, "{spread}");
        let mut sorted = rounds.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(number(&spread["median"]), sorted[1], "{spread}");
        assert_eq!(
            (number(&spread["min"]), number(&spread["max"])),
            (sorted[0], sorted[2])
        );
        // A duration-weighted mean of the rounds' rates lies between the slowest and fastest.
        assert!(
            sorted[0] * 0.98 <= pooled && pooled <= sorted[2] * 1.02,
            "pooled {pooled} outside the rounds {rounds:?}"
        );
        let deviation = (sorted[2] - sorted[1]).max(sorted[1] - sorted[0]) / sorted[1];
        assert!((number(&spread["deviation"]) - deviation).abs() < 1e-9);
        assert_eq!(spread["noisy"], deviation > 0.05, "{spread}");
        // The table shows the median round with its spread, and ? where it is noisy.
        let cell = format!(
            "{} ±{:.0}%{}",
            group_thousands(sorted[1]),
            deviation * 100.0,
            if deviation > 0.05 { "?" } else { "" }
        );
        assert!(
            throughput_line.contains(&cell),
            "{cell} not in {throughput_line}"
        );
        assert!(run["spread"]["report.latency.p50_us"]["rounds"].is_array());
        assert!(run["contention"]["client_wait_share"].is_number(), "{run}");
    }
    assert!(table.contains("rounds: 3 of every run"), "{table}");
    assert_ratios_are_taken_round_by_round(&results, &table);
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(html.contains("3 rounds of every run"), "the report says so");
    crate::compare::assert_matches_results_schema(
        &file,
        "results.json with rounds does not match its schema",
    )
    .await;
}

/// `12,345`, as the table groups thousands.
fn group_thousands(v: f64) -> String {
    let digits = format!("{}", v.round() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Each ratio is ws's figure over http's in the same round, summed up by the median of the
/// geometric means of every pair of rounds (Hodges–Lehmann on a log scale).
fn assert_ratios_are_taken_round_by_round(results: &Value, table: &str) {
    let rounds_of = |protocol: &str, figure: &str| -> Vec<f64> {
        let run = results["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["protocol"] == protocol)
            .unwrap();
        run["spread"][figure]["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(number)
            .collect()
    };
    let ratios = results["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 2, "throughput and p50 of ws/http: {ratios:?}");
    for figure in ["report.throughput_per_sec", "report.latency.p50_us"] {
        let ratio = ratios
            .iter()
            .find(|r| r["figure"] == figure)
            .unwrap_or_else(|| panic!("no {figure} ratio in {ratios:?}"));
        assert_eq!(
            (&ratio["protocol"], &ratio["against"]),
            (&Value::from("ws"), &Value::from("http"))
        );
        assert_eq!(
            (&ratio["workload"], &ratio["size"]),
            (&Value::from("echo"), &Value::from(32))
        );
        let (ws, http) = (rounds_of("ws", figure), rounds_of("http", figure));
        let expected: Vec<f64> = ws.iter().zip(&http).map(|(w, h)| w / h).collect();
        let per_round: Vec<f64> = ratio["spread"]["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(number)
            .collect();
        assert_eq!(per_round.len(), 3, "{ratio}");
        for (got, want) in per_round.iter().zip(&expected) {
            assert!(
                (got - want).abs() < 1e-9 * want,
                "{per_round:?} vs {expected:?}"
            );
        }
        let mut sorted = expected.clone();
        sorted.sort_by(f64::total_cmp);
        let mut pair_means: Vec<f64> = Vec::new();
        for (i, a) in expected.iter().enumerate() {
            for b in &expected[i..] {
                pair_means.push((a * b).sqrt());
            }
        }
        pair_means.sort_by(f64::total_cmp);
        // Six pair means: the middle two's geometric mean.
        let estimate = (pair_means[2] * pair_means[3]).sqrt();
        assert!(
            (number(&ratio["estimate"]) - estimate).abs() < 1e-9 * estimate,
            "{ratio} against {pair_means:?}"
        );
        // Three rounds: the interval is their range.
        let interval = &ratio["interval"];
        let (low, high) = (number(&interval["low"]), number(&interval["high"]));
        assert!(
            (low - sorted[0]).abs() < 1e-9 * sorted[0]
                && (high - sorted[2]).abs() < 1e-9 * sorted[2],
            "{ratio} against {sorted:?}"
        );
        let furthest = (high - estimate).max(estimate - low) / estimate;
        assert_eq!(ratio["noisy"], furthest > 0.05, "{ratio}");
        // Only a noisy ratio is put down to the machine.
        assert!(
            ratio["machine"].is_null() || ratio["noisy"] == true,
            "{ratio}"
        );
    }
    let block = table
        .split_once("ratios, round by round")
        .unwrap_or_else(|| panic!("no ratio block in {table}"))
        .1;
    assert!(block.contains("ws/http"), "{block}");
    let throughput = &ratios
        .iter()
        .find(|r| r["figure"] == "report.throughput_per_sec")
        .unwrap();
    let cell = format!("{:.2} (", number(&throughput["estimate"]));
    let line = block
        .lines()
        .find(|l| l.starts_with("echo 32 B msgs/s"))
        .unwrap_or_else(|| panic!("{block}"));
    assert!(line.contains(&cell), "{cell} not in {line}");
}

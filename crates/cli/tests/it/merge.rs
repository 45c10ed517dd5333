// `protolab merge` on real `protolab bench --json` outputs: three generators load the lab's
// WebSocket app at the same time, and the merged percentiles equal those of one histogram fed
// every sample the three recorded; counts add up; reports of different loads are refused.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use protolab_load::Report;
use protolab_server::Protocol;
use protolab_test_support::{run, TestLab};
use tokio::process::Command;

fn protolab(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protolab"));
    cmd.arg("--home").arg(home).kill_on_drop(true);
    cmd
}

async fn bench_json(lab: &TestLab, url: &str, out: &Path) -> Report {
    let mut cmd = protolab(lab.home());
    cmd.args([
        "--json",
        "bench",
        url,
        "-c",
        "2",
        "--duration",
        "1s",
        "-n",
        "2000",
    ]);
    let output = run(cmd, Duration::from_secs(60)).await;
    assert!(output.status.success(), "bench failed: {output:?}");
    std::fs::write(out, &output.stdout).unwrap();
    serde_json::from_slice(&output.stdout).expect("bench --json prints a report")
}

async fn merge(lab: &TestLab, files: &[PathBuf]) -> Output {
    let mut cmd = protolab(lab.home());
    cmd.args(["--json", "merge"]).args(files);
    run(cmd, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_percentiles_equal_one_histogram_of_every_sample() {
    let lab = TestLab::start(&[Protocol::Ws, Protocol::Http], |_| {}).await;
    let url = lab.url(Protocol::Ws);
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("load-{i}.json")))
        .collect();
    // At the same time, as the pods of a Job run.
    let (a, b, c) = tokio::join!(
        bench_json(&lab, &url, &files[0]),
        bench_json(&lab, &url, &files[1]),
        bench_json(&lab, &url, &files[2]),
    );
    let reports = [a, b, c];

    let out = merge(&lab, &files).await;
    assert!(out.status.success(), "merge failed: {out:?}");
    let merged: Report = serde_json::from_slice(&out.stdout).expect("merged report");

    // One histogram fed every sample of the three runs, value by value.
    let mut all = protolab_load::Latency::new();
    for report in &reports {
        let text = report
            .histograms
            .latency
            .as_deref()
            .expect("a latency histogram");
        let hist = protolab_load::histogram::decode(text).expect("bench's histogram decodes");
        assert_eq!(
            protolab_load::histogram::summarize(&hist),
            report.latency,
            "each report's percentiles are its histogram's"
        );
        for v in hist.iter_recorded() {
            all.record_n(
                Duration::from_nanos(v.value_iterated_to()),
                v.count_at_value(),
            );
        }
    }
    let expected = all.summary().expect("samples");
    let got = merged.latency.expect("merged latency");
    assert_eq!(got, expected);
    assert_eq!(got.count, reports.iter().map(|r| r.messages).sum::<u64>());
    println!("merged: {got:?}");

    assert_eq!(
        merged.messages,
        reports.iter().map(|r| r.messages).sum::<u64>()
    );
    assert_eq!(merged.connections, 6);
    assert_eq!(merged.connections_opened, 6);
    let throughput: f64 = reports.iter().map(|r| r.throughput_per_sec).sum();
    assert!((merged.throughput_per_sec - throughput).abs() < 1e-6 * throughput);
    assert_eq!(
        merged.bytes.total_sent,
        reports.iter().map(|r| r.bytes.total_sent).sum::<u64>()
    );
    let upgrades: u64 = reports
        .iter()
        .map(|r| r.phases.ws_upgrade.expect("upgrade").count)
        .sum();
    assert_eq!(
        merged.phases.ws_upgrade.expect("merged upgrade").count,
        upgrades
    );
    assert_eq!(merged.errors.total(), 0);

    // A merged report merges again: the sum of (a+b) and c is the sum of all three.
    let ab = dir.path().join("ab.json");
    let out = merge(&lab, &files[..2]).await;
    assert!(out.status.success(), "{out:?}");
    std::fs::write(&ab, &out.stdout).unwrap();
    let out = merge(&lab, &[ab, files[2].clone()]).await;
    let again: Report = serde_json::from_slice(&out.stdout).expect("merged report");
    assert_eq!(again.latency, merged.latency);
    assert_eq!(again.histograms.latency, merged.histograms.latency);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_refuses_other_loads_and_damaged_reports() {
    let lab = TestLab::start(&[Protocol::Ws, Protocol::Http], |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws.json");
    let http = dir.path().join("http.json");
    let ws_report = bench_json(&lab, &lab.url(Protocol::Ws), &ws).await;
    bench_json(&lab, &lab.url(Protocol::Http), &http).await;

    let out = merge(&lab, &[ws.clone(), http]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("different loads") && stderr.contains("target"),
        "{stderr}"
    );

    let not_json = dir.path().join("log.txt");
    std::fs::write(&not_json, "WARNING: something\n{").unwrap();
    let out = merge(&lab, &[ws.clone(), not_json]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not a `protolab bench --json` report"),
        "{stderr}"
    );

    // A histogram whose header promises more counts than it holds: refused, not read.
    let mut damaged = ws_report.clone();
    let text = damaged.histograms.latency.take().unwrap();
    let mut bytes = STANDARD.decode(text).unwrap();
    // Bytes 4..8: the payload length, big-endian.
    bytes[7] = bytes[7].wrapping_add(100);
    damaged.histograms.latency = Some(STANDARD.encode(bytes));
    let bad = dir.path().join("damaged.json");
    std::fs::write(&bad, serde_json::to_vec(&damaged).unwrap()).unwrap();
    let out = merge(&lab, &[ws.clone(), bad]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("histograms.latency") && stderr.contains("counts"),
        "{stderr}"
    );

    // A report without histograms (protolab before merge) says how to get one.
    let mut old = ws_report;
    old.histograms = protolab_load::Histograms::default();
    let old_file = dir.path().join("old.json");
    std::fs::write(&old_file, serde_json::to_vec(&old).unwrap()).unwrap();
    let out = merge(&lab, &[ws, old_file]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("run `protolab bench --json` again"),
        "{stderr}"
    );
}

//! Keeps `protolab-bench h2` honest: one tiny bounded round of every scenario (h2c and TLS,
//! GET and POST 1 KiB) against protolab's HTTP/2 app and a real one-worker nginx under a real
//! h2load, each run answered only with 2xx, and a ratio line printed per scenario. Not timed:
//! the figures themselves come from release builds (docs/architecture.md).

use std::path::PathBuf;
use std::process::Command;

/// `protolab`, built next to this test's binaries.
fn protolab() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_protolab-bench"));
    let path = bench.with_file_name("protolab");
    assert!(
        path.is_file(),
        "{} not found: build it first with `cargo build -p protolab` (same profile as this test)",
        path.display()
    );
    path
}

#[test]
fn h2_bench_runs_every_scenario_against_nginx_and_prints_ratios() {
    let dir = std::env::temp_dir().join(format!("h2-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("h2.json");
    let out = Command::new(env!("CARGO_BIN_EXE_protolab-bench"))
        .args(["h2", "--duration", "1", "--warmup", "0", "--rounds", "1"])
        .args(["--loads", "2x2"])
        .arg("--protolab")
        .arg(protolab())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running protolab-bench h2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(out.status.success(), "protolab-bench h2 failed: {stderr}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON results")).expect("JSON");
    let _ = std::fs::remove_dir_all(&dir);

    let runs = results["runs"].as_array().expect("runs");
    // 2 servers × (h2c, TLS) × (GET, POST) × one load.
    assert_eq!(runs.len(), 8, "{runs:#?}");
    for run in runs {
        assert!(run["error"].is_null(), "a run failed: {run}");
        // Requests cut off at the window's end may count as failed, never more than in flight.
        assert!(run["failed"].as_u64().is_some_and(|n| n <= 4), "{run}");
        assert!(
            run["req_per_sec"].as_f64().is_some_and(|r| r > 0.0),
            "{run}"
        );
    }
    let summary = results["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), 4);
    for s in summary {
        assert!(s["ratio"].as_f64().is_some_and(|r| r > 0.0), "{s}");
    }
    for scenario in ["h2c GET 11 B 2×2", "h2-tls POST 1 KiB 2×2"] {
        assert!(
            stdout.contains(&format!("ratio protolab-h2/nginx {scenario}: ")),
            "no ratio line for {scenario} in:\n{stdout}"
        );
    }
}

#[test]
fn an_unknown_server_to_skip_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_protolab-bench"))
        .args(["h2", "--skip", "apache"])
        .output()
        .expect("running protolab-bench h2");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("protolab-h2, nginx"));
}

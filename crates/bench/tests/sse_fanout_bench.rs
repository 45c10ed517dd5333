//! Keeps `protolab-bench sse-fanout` honest: one tiny bounded round (20 subscribers, 1 s,
//! a push every 100 ms) against a real `protolab up --only sse,ws`, with every subscriber of
//! both transports served at least one delivery and the SSE ÷ WS ratio line printed. Not
//! timed: the figures come from release builds (docs/architecture.md).

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
fn every_subscriber_of_both_transports_gets_deliveries_and_the_ratio_is_printed() {
    let dir = std::env::temp_dir().join(format!("sse-fanout-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("sse-fanout.json");
    let out = Command::new(env!("CARGO_BIN_EXE_protolab-bench"))
        .args(["sse-fanout", "--subscribers", "20", "--duration", "1"])
        .args(["--push-ms", "100", "--rounds", "1"])
        .arg("--protolab")
        .arg(protolab())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running protolab-bench sse-fanout");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "protolab-bench sse-fanout failed: {stderr}"
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON results")).expect("JSON");
    let _ = std::fs::remove_dir_all(&dir);

    let runs = results["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "one run per transport: {runs:#?}");
    for transport in ["sse", "ws"] {
        let run = runs
            .iter()
            .find(|r| r["transport"] == transport)
            .unwrap_or_else(|| panic!("no {transport} run in {runs:#?}"));
        assert!(run["error"].is_null(), "the {transport} run failed: {run}");
        let sample = &run["sample"];
        assert_eq!(sample["opened"], 20, "{run}");
        assert_eq!(
            sample["without_deliveries"], 0,
            "a subscriber got nothing: {run}"
        );
        // 20 subscribers × ~10 pushes in a second: at least a few each.
        assert!(
            sample["deliveries"].as_u64().is_some_and(|n| n >= 20 * 3),
            "{run}"
        );
        assert!(sample["p99_us"].as_f64().is_some_and(|p| p > 0.0), "{run}");
    }
    assert!(
        stdout.contains("ratio sse/ws (medians): deliveries/s "),
        "no ratio line in:\n{stdout}"
    );
}

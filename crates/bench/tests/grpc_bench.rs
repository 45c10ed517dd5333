//! Keeps `protolab-bench grpc` honest: one tiny bounded round of unary and streaming echo
//! against protolab's gRPC app, the plain tonic peer and a real Python grpcio server, under
//! the bench's tonic client, every run with echoes counted and a ratio line printed per
//! scenario. Not timed: the figures come from release builds (docs/architecture.md).

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
fn grpc_bench_runs_every_server_and_prints_ratios() {
    // The tonic peer is a binary of this package, built for its tests alongside this one.
    let peer = PathBuf::from(env!("CARGO_BIN_EXE_bench-peer-tonic"));
    assert!(peer.is_file(), "{} not built", peer.display());
    let dir = std::env::temp_dir().join(format!("grpc-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("grpc.json");
    let out = Command::new(env!("CARGO_BIN_EXE_protolab-bench"))
        .args(["grpc", "--duration", "1", "--warmup", "0", "--rounds", "1"])
        .args(["--loads", "2x2", "--size", "100"])
        .arg("--protolab")
        .arg(protolab())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running protolab-bench grpc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(out.status.success(), "protolab-bench grpc failed: {stderr}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON results")).expect("JSON");
    let _ = std::fs::remove_dir_all(&dir);

    let runs = results["runs"].as_array().expect("runs");
    // 3 servers × (unary, stream) × one load.
    assert_eq!(runs.len(), 6, "{runs:#?}");
    for run in runs {
        assert!(run["error"].is_null(), "a run failed: {run}");
        assert!(
            run["sample"]["messages"].as_u64().is_some_and(|n| n > 0),
            "{run}"
        );
    }
    for scenario in ["unary 2×2", "stream 2×2"] {
        for peer in ["tonic", "grpcio"] {
            assert!(
                stdout.contains(&format!("ratio protolab-grpc/{peer} {scenario}: ")),
                "no {peer} ratio line for {scenario} in:\n{stdout}"
            );
        }
    }
}

#[test]
fn an_unknown_server_to_skip_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_protolab-bench"))
        .args(["grpc", "--skip", "envoy"])
        .output()
        .expect("running protolab-bench grpc");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("protolab-grpc, tonic, grpcio"));
}

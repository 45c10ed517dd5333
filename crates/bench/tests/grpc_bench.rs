//! Keeps `protolab-bench grpc` honest: one tiny bounded round of unary and streaming echo
//! against protolab's gRPC app, the plain tonic peer and a real Python grpcio server, under
//! the bench's tonic client, every run with echoes counted and a ratio line printed per
//! scenario. Not timed: the figures come from release builds (docs/architecture.md).

use std::path::PathBuf;

mod common;

#[test]
fn grpc_bench_runs_every_server_and_prints_ratios() {
    // The tonic peer is a binary of this package, built for its tests alongside this one.
    let peer = PathBuf::from(env!("CARGO_BIN_EXE_bench-peer-tonic"));
    assert!(peer.is_file(), "{} not built", peer.display());
    let common::BenchRun { stdout, results } =
        common::run_bench("grpc --duration 1 --warmup 0 --rounds 1 --loads 2x2 --size 100");

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
    common::assert_unknown_skip_is_a_usage_error("grpc", "envoy", "protolab-grpc, tonic, grpcio");
}

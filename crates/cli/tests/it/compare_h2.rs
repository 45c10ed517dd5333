// `protolab compare --protocols` with the HTTP/2 and gRPC apps beside HTTP/1.1, end to end
// through the binary: every workload measures without errors, results.json validates against
// its schema, fanin multiplexes on one connection for h2 and gRPC only, and push runs for gRPC.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use crate::compare::assert_matches_results_schema;
use crate::results::{compare_json, number, run_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_and_grpc_run_every_workload_beside_http() {
    let home = tempfile::tempdir().unwrap();
    let out_dir = home.path().join("report");
    let results = compare_json(
        home.path(),
        &[
            "--protocols",
            "http,h2,grpc,h2-tls,grpc-tls",
            "--workloads",
            "echo,connect,fanin,push",
            "--sizes",
            "32",
            "-c",
            "4",
            "--duration",
            "10s",
            "--rounds",
            "1",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    // echo, connect and fanin for five protocols; push for the two gRPC ones.
    assert_eq!(results["runs"].as_array().unwrap().len(), 17);
    for run in results["runs"].as_array().unwrap() {
        let report = &run["report"];
        let name = format!("{} {}", run["protocol"], run["workload"]);
        assert!(
            number(&report["messages"]) > 0.0,
            "{name}: nothing measured"
        );
        for kind in ["refused", "tls", "closed", "protocol", "io"] {
            assert_eq!(
                number(&report["errors"][kind]),
                0.0,
                "{name}: {kind} errors"
            );
        }
    }
    for protocol in ["h2", "grpc", "h2-tls", "grpc-tls"] {
        let fanin = &run_of(&results, protocol, "fanin")["report"];
        assert_eq!(
            number(&fanin["connections_opened"]),
            1.0,
            "{protocol} fanin"
        );
        // HPACK indexes the repeated request and response fields: far fewer bytes than
        // HTTP/1.1's heads.
        let h2 = number(&run_of(&results, protocol, "echo")["report"]["bytes"]["sent_per_message"]);
        let http = number(&run_of(&results, "http", "echo")["report"]["bytes"]["sent_per_message"]);
        assert!(h2 < http, "{protocol}: {h2} bytes per message, http {http}");
    }
    assert_eq!(
        number(&run_of(&results, "http", "fanin")["report"]["connections_opened"]),
        4.0
    );
    run_of(&results, "grpc", "push");
    run_of(&results, "grpc-tls", "push");
    assert_matches_results_schema(
        &out_dir.join("results.json"),
        "results.json with h2 and gRPC runs does not match its schema",
    )
    .await;
}

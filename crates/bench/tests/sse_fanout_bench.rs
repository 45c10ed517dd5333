//! Keeps `protolab-bench sse-fanout` honest: one tiny bounded round (20 subscribers, 1 s,
//! a push every 100 ms) against a real `protolab up --only sse,ws`, with every subscriber of
//! both transports served at least one delivery and the SSE ÷ WS ratio line printed. Not
//! timed: the figures come from release builds (docs/architecture.md).

mod common;

#[test]
fn every_subscriber_of_both_transports_gets_deliveries_and_the_ratio_is_printed() {
    let common::BenchRun { stdout, results } =
        common::run_bench("sse-fanout --subscribers 20 --duration 1 --push-ms 100 --rounds 1");

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

//! Keeps `protolab-bench h2` honest: one tiny bounded round of every scenario (h2c and TLS,
//! GET and POST 1 KiB) against protolab's HTTP/2 app and a real one-worker nginx under a real
//! h2load, each run answered only with 2xx, and a ratio line printed per scenario. Not timed:
//! the figures themselves come from release builds (docs/architecture.md).

mod common;

#[test]
fn h2_bench_runs_every_scenario_against_nginx_and_prints_ratios() {
    let common::BenchRun { stdout, results } =
        common::run_bench("h2 --duration 1 --warmup 0 --rounds 1 --loads 2x2");

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
    common::assert_unknown_skip_is_a_usage_error("h2", "apache", "protolab-h2, nginx");
}

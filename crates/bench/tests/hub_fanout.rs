//! Keeps `protolab-bench hub` honest: a small fan-out against protolab's hub alone (its
//! socket.io endpoint, `/connection/ws`, `/connection/sse`, and `/connection/ws` on a Redis
//! broker, and the `ws-floor` kernel floor), then small throughput runs, asserting every
//! subscriber got every publication. The Flask-SocketIO and Node socket.io peers are left out
//! here; they are bench-only peers.

mod common;

const SUBSCRIBERS: usize = 50;
const PUBLISHES: u64 = 3;
const BURST: u64 = 5;
const THROUGHPUT_SUBSCRIBERS: [u64; 2] = [1, 7];
const THROUGHPUT_PUBLICATIONS: u64 = 40;
const SERVERS: [&str; 5] = [
    "hub-socketio",
    "hub-ws",
    "hub-sse",
    "hub-ws-redis",
    "ws-floor",
];

#[test]
fn every_subscriber_gets_every_publication_from_the_hub() {
    let common::BenchRun { stdout, results } = common::run_bench(&format!(
        "hub --subscribers {SUBSCRIBERS} --publishes {PUBLISHES} --burst {BURST} \
         --skip flask-socketio --skip node-socketio --throughput-subscribers 1,7 \
         --throughput-publications {THROUGHPUT_PUBLICATIONS}"
    ));
    let runs = results["runs"].as_array().expect("runs");
    let fanout_servers: Vec<&str> = runs
        .iter()
        .filter(|r| r["throughput"] == false)
        .filter_map(|r| r["server"].as_str())
        .collect();
    assert_eq!(fanout_servers, SERVERS);
    let throughput: Vec<&serde_json::Value> =
        runs.iter().filter(|r| r["throughput"] == true).collect();
    assert_eq!(
        throughput.len(),
        SERVERS.len() * THROUGHPUT_SUBSCRIBERS.len()
    );
    for run in &throughput {
        let server = &run["server"];
        let report = &run["report"];
        let subscribers = run["subscribers"].as_u64().expect("subscribers");
        assert!(THROUGHPUT_SUBSCRIBERS.contains(&subscribers), "{run}");
        assert_eq!(report["connected"], subscribers, "{server}: {run}");
        assert_eq!(
            report["throughput_received"],
            subscribers * THROUGHPUT_PUBLICATIONS,
            "{server}: {run}"
        );
        assert_eq!(
            report["min_received_per_subscriber"], THROUGHPUT_PUBLICATIONS,
            "{server}: a subscriber did not get every publication exactly once: {run}"
        );
        assert!(
            report["publications_per_sec"]
                .as_f64()
                .is_some_and(|p| p > 0.0),
            "{server}: {run}"
        );
    }
    for run in runs.iter().filter(|r| r["throughput"] == false) {
        let server = &run["server"];
        let report = &run["report"];
        assert_eq!(report["connected"], SUBSCRIBERS, "{server}: {run}");
        assert_eq!(report["failed"], 0, "{server}: {run}");
        assert_eq!(
            report["min_received_per_subscriber"],
            PUBLISHES + BURST,
            "{server}: a subscriber did not get every publication exactly once: {run}"
        );
        let each = SUBSCRIBERS as u64;
        assert_eq!(report["latency_received"], each * PUBLISHES, "{server}");
        assert_eq!(report["burst_received"], each * BURST, "{server}");
        assert!(
            report["p99_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{server}: {run}"
        );
        // At 50 subscribers the burst may take less than one 10 ms CPU tick, so the
        // deliveries per CPU-second may be absent here; it must never be made up.
        let cpu = report["burst_server_cpu_secs"].as_f64().expect("burst CPU");
        assert_eq!(
            report["deliveries_per_cpu_sec"].is_null(),
            cpu == 0.0,
            "{server}: {run}"
        );
    }
    assert!(
        stdout.contains("hub fan-out: 50 idle subscribers"),
        "{stdout}"
    );
    assert!(stdout.contains("pub/s to 7"), "{stdout}");
    assert!(
        stdout.contains("in-memory against Redis (hub-ws / hub-ws-redis)"),
        "{stdout}"
    );
    assert!(stdout.contains("p99 hub-ws / ws-floor: "), "{stdout}");
}

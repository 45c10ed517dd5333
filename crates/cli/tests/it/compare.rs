// `protolab compare` end to end through the binary: the report validates against its schema
// and renders in Chromium, the figures obey the protocols' arithmetic (round trips, framing
// bytes), the byte counts agree with tshark's capture of the same run, a baseline compares,
// and bad settings get clear errors.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use protolab_test_support::{repo_root, require, run, Peer, TsharkCapture};
use serde_json::Value;

use crate::results::{compare_json, number, protolab, run_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_compare_report_is_valid_and_obeys_protocol_arithmetic() {
    let home = tempfile::tempdir().unwrap();
    let out_dir = home.path().join("report");
    let results = compare_json(
        home.path(),
        &[
            "--quick",
            "--duration",
            "4s",
            "-c",
            "2",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(results["schema"], "protolab.compare.results");
    // connect and echo over four protocols, push over two.
    assert_eq!(results["runs"].as_array().unwrap().len(), 10);
    for run in results["runs"].as_array().unwrap() {
        let report = &run["report"];
        let name = format!("{} {}", run["protocol"], run["workload"]);
        assert!(
            number(&report["messages"]) > 0.0,
            "{name}: nothing measured"
        );
        assert_eq!(number(&report["errors"]["refused"]), 0.0, "{name}");
        assert_eq!(number(&report["errors"]["protocol"]), 0.0, "{name}");
        assert!(
            number(&run["cpu"]["client_secs"]) > 0.0,
            "{name}: no client CPU"
        );
        assert!(
            number(&run["cpu"]["server_secs"]) > 0.0,
            "{name}: no server CPU"
        );
    }

    // Round trips to the first echo: TCP's handshake, then one per flight the client waits
    // for — TLS 1.3's one, the upgrade, the request.
    for (protocol, expected) in [("http", 2.0), ("https", 3.0), ("ws", 3.0), ("wss", 4.0)] {
        let rt =
            number(&run_of(&results, protocol, "connect")["report"]["round_trips_to_first_echo"]);
        assert!(
            (rt - expected).abs() < 0.01,
            "{protocol}: {rt} round trips, expected {expected}"
        );
    }

    // Bytes per 32-byte echo, from the RFCs: a client frame adds a 2-byte header and a 4-byte
    // mask, a server frame the header only (RFC 6455 §5.2); a TLS 1.3 record adds a 5-byte
    // header, the 1-byte inner content type and a 16-byte AEAD tag (RFC 8446 §5.2).
    let bytes = |protocol: &str| run_of(&results, protocol, "echo")["report"]["bytes"].clone();
    let ws = bytes("ws");
    assert_eq!(number(&ws["sent_per_message"]), 32.0 + 6.0);
    assert_eq!(number(&ws["received_per_message"]), 32.0 + 2.0);
    let wss = bytes("wss");
    assert_eq!(number(&wss["above_tls_sent_per_message"]), 38.0);
    assert_eq!(number(&wss["sent_per_message"]), 38.0 + 22.0);
    assert_eq!(number(&wss["received_per_message"]), 34.0 + 22.0);
    let (http, https) = (bytes("http"), bytes("https"));
    assert_eq!(http["sent_per_message"], http["above_tls_sent_per_message"]);
    assert_eq!(
        number(&https["sent_per_message"]),
        number(&http["sent_per_message"]) + 22.0,
        "one TLS record per request"
    );
    assert_eq!(number(&http["payload_sent_per_message"]), 32.0);

    // The file on disk is the same document, and it validates against the published schema.
    let file = out_dir.join("results.json");
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(on_disk["runs"], results["runs"]);
    crate::compare::assert_matches_results_schema(&file, "results.json does not match its schema")
        .await;

    // The HTML opens in a browser with nothing fetched, and its charts draw.
    let html = out_dir.join("index.html");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("http://") || !page.contains("<script"),
        "the report must be self-contained"
    );
    assert!(!page.contains("<script"), "no scripts in the report");
    let url = format!("file://{}", html.display());
    let shown = protolab_test_support::run_json(
        Peer::Chromium.command([url.as_str(), "--expect", "All figures"]),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(shown["found"], true, "{shown}");
    let charts = shown["svgs"].as_u64().unwrap();
    assert!(charts >= 6, "only {charts} charts drew something");
}

/// Bytes each side sent on connections to `port`, by tshark: per connection and direction,
/// the highest relative sequence number reached (`tcp.seq + tcp.len - 1`), so a segment
/// retransmitted (loopback drops packets under load too) counts once, as the application
/// saw it.
fn tshark_bytes(capture: &Path, port: u16) -> (u64, u64) {
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .arg("-r")
        .arg(capture)
        .args([
            "-Y",
            &format!("tcp.port == {port}"),
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.seq",
            "-e",
            "tcp.len",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reached: HashMap<(u64, bool), u64> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<u64> = line.split('\t').map(|v| v.parse().unwrap()).collect();
        let (stream, to_client, seq, len) = (f[0], f[1] == u64::from(port), f[2], f[3]);
        let end = reached.entry((stream, to_client)).or_default();
        *end = (*end).max((seq + len).saturating_sub(1));
    }
    let sum = |dir: bool| -> u64 {
        reached
            .iter()
            .filter(|((_, to_client), _)| *to_client == dir)
            .map(|(_, v)| v)
            .sum()
    };
    (sum(false), sum(true))
}

#[test]
fn byte_counts_agree_with_tshark_within_one_percent() {
    let home = tempfile::tempdir().unwrap();
    let pcap = home.path().join("compare.pcapng");
    // The lab's ports are picked when it starts, so record all loopback TCP and pick the
    // lab's connections out afterwards by the ports results.json names.
    let capture = TsharkCapture::start("tcp", &pcap);
    // Open loop at a modest rate so tshark keeps up with every packet.
    let results = compare_json(
        home.path(),
        &[
            "--workloads",
            "connect,echo",
            "--sizes",
            "1KiB",
            "-c",
            "4",
            "--rate",
            "800",
            "--duration",
            "4s",
            "--no-report",
        ],
    );
    capture.stop();
    let ports: HashMap<String, u16> = results["lab"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let addr: std::net::SocketAddr = e["addr"].as_str().unwrap().parse().unwrap();
            (e["protocol"].as_str().unwrap().to_owned(), addr.port())
        })
        .collect();
    for protocol in ["http", "https", "ws", "wss"] {
        // Each protocol's port carried its connect run and its echo run.
        let (mut sent, mut received) = (0.0, 0.0);
        for workload in ["connect", "echo"] {
            let b = &run_of(&results, protocol, workload)["report"]["bytes"];
            sent += number(&b["total_sent"]);
            received += number(&b["total_received"]);
        }
        let (to_server, to_client) = tshark_bytes(&pcap, ports[protocol]);
        for (what, ours, theirs) in [
            ("sent", sent, to_server as f64),
            ("received", received, to_client as f64),
        ] {
            let off = (ours - theirs).abs() / theirs;
            println!(
                "{protocol} {what}: compare {ours} tshark {theirs} ({:.3}%)",
                off * 100.0
            );
            assert!(theirs > 0.0, "{protocol}: tshark saw no bytes {what}");
            assert!(
                off <= 0.01,
                "{protocol} {what}: compare says {ours} bytes, tshark {theirs}"
            );
        }
    }
}

#[test]
fn a_baseline_prints_the_change_and_a_wrong_file_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let first = home.path().join("first");
    let args = [
        "compare",
        "--protocols",
        "ws",
        "--workloads",
        "echo",
        "--sizes",
        "32",
        "--duration",
        "500ms",
    ];
    let out = protolab(
        home.path(),
        &[&args[..], &["--out", first.to_str().unwrap()]].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("msgs/s") && table.contains("ws"), "{table}");
    assert!(
        table.contains("lab: in-process"),
        "the table must say the lab ran in-process:\n{table}"
    );

    let baseline = first.join("results.json");
    let out = protolab(
        home.path(),
        &[
            &args[..],
            &["--no-report", "--baseline", baseline.to_str().unwrap()],
        ]
        .concat(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("change against"), "{text}");
    assert!(text.contains("ws echo 32 B msgs/s"), "{text}");
    assert!(text.contains('%'), "{text}");

    let not_results = home.path().join("other.json");
    std::fs::write(&not_results, r#"{"hello": 1}"#).unwrap();
    let out = protolab(
        home.path(),
        &[
            &args[..],
            &["--no-report", "--baseline", not_results.to_str().unwrap()],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not a protolab compare results.json"), "{err}");
}

#[test]
fn sse_joins_push_connect_and_echo_beside_websocket_and_http() {
    let home = tempfile::tempdir().unwrap();
    let schema = repo_root().join("docs/schema/compare-results.v6.schema.json");
    let python = require("python3", "apt-get install python3");
    let out_dir = home.path().join("report");
    let results = compare_json(
        home.path(),
        &[
            "--protocols",
            "http,ws,sse",
            "--workloads",
            "push,connect,echo",
            "--sizes",
            "32",
            "--duration",
            "3s",
            "--rounds",
            "1",
            "-c",
            "2",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    // http cannot push: skipped with the reason, not an error.
    assert!(run_of_opt(&results, "http", "push").is_none());
    let warnings = results["warnings"].to_string();
    assert!(
        warnings.contains("push http: skipped, plain HTTP has no server push"),
        "{warnings}"
    );
    for workload in ["push", "connect", "echo"] {
        let report = &run_of(&results, "sse", workload)["report"];
        assert!(
            number(&report["messages"]) > 0.0,
            "sse {workload}: {report}"
        );
        assert_eq!(number(&report["errors"]["protocol"]), 0.0, "sse {workload}");
        assert_eq!(report["scheme"], "sse", "sse {workload}");
    }
    // A pushed event: `id: EPOCH-SEQ\n` + `data: ` JSON `\n` + `\n`: the data plus 13 bytes
    // plus the id (13-digit epoch, `-`, 1 to 5 digits).
    let push = &run_of(&results, "sse", "push")["report"]["bytes"];
    let framing =
        number(&push["received_per_message"]) - number(&push["payload_received_per_message"]);
    assert!((13.0 + 15.0..=13.0 + 19.0).contains(&framing), "{push}");
    // Connect: TCP's handshake, then GET → the hello event.
    let connect = &run_of(&results, "sse", "connect")["report"];
    assert_eq!(
        number(&connect["round_trips_to_first_echo"]),
        2.0,
        "{connect}"
    );
    let file = out_dir.join("results.json");
    let out = Command::new(&python)
        .arg(repo_root().join("tests/peers/validate_schema.py"))
        .arg(&schema)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn polling_joins_push_beside_websocket_and_sse() {
    let home = tempfile::tempdir().unwrap();
    let schema = repo_root().join("docs/schema/compare-results.v6.schema.json");
    let python = require("python3", "apt-get install python3");
    let out_dir = home.path().join("report");
    let results = compare_json(
        home.path(),
        &[
            "--protocols",
            "ws,sse,long-poll,poll",
            "--workloads",
            "push,echo",
            "--sizes",
            "32",
            "--duration",
            "3s",
            "--rounds",
            "1",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    // Polling carries pushes only: its echo runs are skipped with the reason.
    let warnings = results["warnings"].to_string();
    for name in ["poll", "long-poll"] {
        assert!(run_of_opt(&results, name, "echo").is_none());
        assert!(
            warnings.contains(&format!(
                "echo {name}: skipped, polling carries server pushes only"
            )),
            "{warnings}"
        );
    }
    for (name, scheme) in [("poll", "poll"), ("long-poll", "long-poll")] {
        let report = &run_of(&results, name, "push")["report"];
        assert!(number(&report["messages"]) > 0.0, "{name}: {report}");
        assert_eq!(number(&report["errors"]["protocol"]), 0.0, "{name}");
        assert_eq!(report["scheme"], scheme, "{name}");
        assert_eq!(number(&report["polls"]["missed_events"]), 0.0, "{name}");
        // Every request is one GET and one answer: the client sends bytes per event, which
        // the event stream does not.
        assert!(
            number(&report["bytes"]["sent_per_message"]) > 50.0,
            "{name}: {report}"
        );
    }
    // Long polls are answered when there is an event: about one request per event.
    let long = &run_of(&results, "long-poll", "push")["report"]["polls"];
    assert!(number(&long["per_event"]) <= 1.05, "{long}");
    let sse = &run_of(&results, "sse", "push")["report"];
    assert!(sse["polls"].is_null(), "{sse}");
    let file = out_dir.join("results.json");
    let out = Command::new(&python)
        .arg(repo_root().join("tests/peers/validate_schema.py"))
        .arg(&schema)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn run_of_opt<'a>(results: &'a Value, protocol: &str, workload: &str) -> Option<&'a Value> {
    results["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["protocol"] == protocol && r["workload"] == workload)
}

#[test]
fn bad_settings_get_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (
            vec!["compare", "--protocols", "http", "--workloads", "push"],
            "push needs ws, wss, sse, poll, long-poll or grpc",
        ),
        (vec!["compare", "--duration", "50ms"], "too short"),
        (
            vec!["compare", "--wan-emulator", "userspace"],
            "--wan-emulator needs --rtt",
        ),
        (
            vec!["compare", "--wan-emulator", "tbf", "--rtt", "50ms"],
            "tbf only limits the rate",
        ),
        (vec!["compare", "--protocols", "ftp"], "possible values"),
        (vec!["compare", "-c", "0"], "at least 1"),
        (vec!["compare", "--sizes", "17MiB"], "larger than"),
        (
            vec!["compare", "--rate", "0"],
            "--rate must be a positive number",
        ),
    ] {
        let out = protolab(home.path(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            err.contains(expected),
            "{args:?}: expected `{expected}` in:\n{err}"
        );
    }
}

#[test]
fn a_bandwidth_limit_runs_the_lab_in_a_namespace_and_caps_throughput() {
    let home = tempfile::tempdir().unwrap();
    let rate_bits = 20_000_000.0;
    let results = compare_json(
        home.path(),
        &[
            "--bandwidth",
            "20mbit",
            "--protocols",
            "ws,wss",
            "--workloads",
            "echo",
            "--sizes",
            "64KiB",
            "-c",
            "2",
            "--duration",
            "3s",
            "--no-report",
        ],
    );
    assert_eq!(results["settings"]["wan"]["bandwidth"], "20mbit");
    for endpoint in results["lab"].as_array().unwrap() {
        let addr = endpoint["addr"].as_str().unwrap();
        assert!(
            addr.starts_with("10.231."),
            "the lab is not behind the veth: {addr}"
        );
    }
    for protocol in ["ws", "wss"] {
        let report = &run_of(&results, protocol, "echo")["report"];
        // Each echo carries its bytes both ways, each way limited to the rate.
        let per_message = number(&report["bytes"]["received_per_message"]);
        let ceiling = rate_bits / 8.0 / per_message;
        let got = number(&report["throughput_per_sec"]);
        println!("{protocol}: {got:.1} msgs/s, link allows {ceiling:.1}");
        assert!(
            got <= ceiling * 1.1,
            "{protocol}: {got} msgs/s through a link that allows {ceiling}"
        );
        assert!(
            got >= ceiling * 0.5,
            "{protocol}: {got} msgs/s, far below the {ceiling} the link allows"
        );
    }
    // The host end of the link held the address next to the lab's; it must be gone.
    let lab_ip: std::net::Ipv4Addr = results["lab"][0]["addr"]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .0
        .parse()
        .unwrap();
    let host_ip = std::net::Ipv4Addr::from(u32::from(lab_ip) - 1).to_string();
    let addrs = Command::new("ip")
        .args(["-o", "-4", "addr"])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(
        !addrs.contains(&format!(" {host_ip}/")),
        "the link's host end ({host_ip}) was left behind:\n{addrs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_of_the_run_opens_decrypted_in_tshark() {
    let home = tempfile::tempdir().unwrap();
    let out_dir = home.path().join("report");
    let results = compare_json(
        home.path(),
        &[
            "--capture",
            "--protocols",
            "ws,wss",
            "--workloads",
            "echo",
            "--sizes",
            "32",
            "--rate",
            "200",
            "-c",
            "2",
            "--duration",
            "1s",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let file = out_dir.join("capture.pcapng");
    assert_eq!(results["capture"]["file"], "capture.pcapng");
    assert!(number(&results["capture"]["stats"]["kept"]) > 0.0);
    assert!(
        number(&results["capture"]["stats"]["secrets_sessions"]) >= 2.0,
        "{}",
        results["capture"]
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a capture holding TLS secrets must be private");

    // tshark with a fresh HOME (no preferences, no key log option) decrypts the wss echoes.
    let wss: std::net::SocketAddr = results["lab"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["protocol"] == "wss")
        .unwrap()["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let tshark_home = tempfile::tempdir().unwrap();
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .env("HOME", tshark_home.path())
        .arg("-r")
        .arg(&file)
        .args([
            "-Y",
            &format!("tcp.port == {} && websocket", wss.port()),
            "-T",
            "fields",
            "-e",
            "websocket.opcode",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = String::from_utf8_lossy(&out.stdout);
    let binary = frames.lines().filter(|l| l.trim() == "2").count();
    let echoes = number(&run_of(&results, "wss", "echo")["report"]["messages"]);
    assert!(
        binary as f64 >= echoes * 2.0,
        "tshark decrypted {binary} binary frames on the wss port; compare echoed {echoes} messages (two frames each)"
    );

    // protolab's own decoder read the same file back: every wss record decrypted, and at
    // least the echoes' payload on each protocol, with TLS bytes only on wss.
    let cost = |protocol: &str| {
        results["capture"]["wire_cost"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["protocol"] == protocol)
            .unwrap()
            .clone()
    };
    let (ws, wss) = (cost("ws"), cost("wss"));
    assert_eq!(number(&wss["tls_encrypted"]), 0.0, "{wss}");
    assert!(number(&wss["tls"]) > 0.0, "{wss}");
    assert_eq!(number(&ws["tls"]), 0.0, "{ws}");
    for (name, c) in [("ws", &ws), ("wss", &wss)] {
        let echoed = number(&run_of(&results, name, "echo")["report"]["messages"]);
        assert!(
            number(&c["ws_payload"]) >= echoed * 2.0 * 32.0,
            "{name}: {c}"
        );
        assert!(number(&c["link_ip_tcp"]) > 0.0, "{name}: {c}");
    }
    // `protolab inspect` on the same file sums each protocol's packets and frame bytes as
    // tshark counts them.
    let inspected = Command::new(env!("CARGO_BIN_EXE_protolab"))
        .args(["--json", "inspect"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    let inspected: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    for endpoint in results["lab"].as_array().unwrap() {
        let protocol = endpoint["protocol"].as_str().unwrap();
        let port: u16 = endpoint["addr"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let summary = inspected["by_protocol"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["protocol"] == protocol)
            .unwrap_or_else(|| {
                panic!(
                    "inspect has no {protocol} summary: {}",
                    inspected["by_protocol"]
                )
            });
        let out = Command::new(require("tshark", "apt-get install -y tshark"))
            .env("HOME", tshark_home.path())
            .arg("-r")
            .arg(&file)
            .args([
                "-Y",
                &format!("tcp.port == {port}"),
                "-T",
                "fields",
                "-e",
                "frame.len",
            ])
            .output()
            .unwrap();
        let lens: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        assert_eq!(
            number(&summary["packets"]) as usize,
            lens.len(),
            "{protocol} packets"
        );
        assert_eq!(
            number(&summary["frame_bytes"]) as u64,
            lens.iter().sum::<u64>(),
            "{protocol} frame bytes"
        );
    }

    let results_file = out_dir.join("results.json");
    crate::compare::assert_matches_results_schema(
        &results_file,
        "results.json with a capture does not match its schema",
    )
    .await;
}

/// Validates a `results.json` against the published schema with Python `jsonschema`; panics
/// with `failure` and the validator's output when it does not match.
pub(crate) async fn assert_matches_results_schema(file: &std::path::Path, failure: &str) {
    let schema = repo_root().join("docs/schema/compare-results.v6.schema.json");
    let validated = run(
        Peer::JsonSchema.command([schema.as_os_str(), file.as_os_str()]),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        validated.status.success(),
        "{failure}:\n{}",
        String::from_utf8_lossy(&validated.stdout)
    );
}

// `protolab compare --lab`: the workloads go to a `protolab up` running as a separate process
// (as a lab in a VM or a container is), the report says so, server CPU is unmeasured rather
// than zero, a capture decrypts only with the lab's key log, and wrong flags are usage errors
// naming the flag.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use protolab_test_support::require;
use serde_json::Value;

use crate::results::{compare_json, number, protolab, run_of};

/// `protolab up` in its own process on free ports, stopped when dropped.
struct UpElsewhere {
    child: Child,
    /// `http=PORT,https=PORT,ws=PORT,wss=PORT` for `--lab-url`.
    ports: Vec<(String, u16)>,
}

impl UpElsewhere {
    /// The HTTP and WebSocket apps.
    fn start(home: &Path, keylog: &Path) -> Self {
        Self::start_apps(
            home,
            "http,https,ws,wss",
            &["--keylog", keylog.to_str().unwrap()],
        )
    }

    /// The apps in `only` (`up --only`), each on a port the system picks, with `extra` flags.
    fn start_apps(home: &Path, only: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_protolab"))
            .arg("--home")
            .arg(home)
            .args(["--json", "up", "--only", only])
            .args(["--http-port", "0", "--https-port", "0"])
            .args(["--ws-port", "0", "--wss-port", "0", "--sse-port", "0"])
            .args(["--h2-port", "0", "--grpc-port", "0"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("`up --json` printed {line:?}: {e}"));
        assert_eq!(ready["event"], "ready", "{ready}");
        let ports = ready["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let addr: std::net::SocketAddr = e["addr"].as_str().unwrap().parse().unwrap();
                (e["protocol"].as_str().unwrap().to_owned(), addr.port())
            })
            .collect();
        Self { child, ports }
    }

    fn lab_url(&self) -> String {
        self.ports
            .iter()
            .map(|(p, port)| format!("{p}={port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn port(&self, protocol: &str) -> u16 {
        self.ports.iter().find(|(p, _)| p == protocol).unwrap().1
    }
}

impl Drop for UpElsewhere {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Binary WebSocket frames tshark (fresh HOME: no key log setting) decrypts on `port`.
fn tshark_binary_frames(file: &Path, port: u16) -> usize {
    let tshark_home = tempfile::tempdir().unwrap();
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .env("HOME", tshark_home.path())
        .arg("-r")
        .arg(file)
        .args(["-d", &format!("tcp.port=={port},tls")])
        .args(["-Y", &format!("tcp.port == {port} && websocket")])
        .args(["-T", "fields", "-e", "websocket.opcode"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == "2")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_against_up_elsewhere_names_the_lab_and_decrypts_with_its_key_log() {
    let home = tempfile::tempdir().unwrap();
    let keylog = home.path().join("lab-keys.log");
    let lab = UpElsewhere::start(home.path(), &keylog);
    let out_dir = home.path().join("report");
    // The same home, so the lab's CA is the default --lab-ca for a lab on this machine.
    let results = compare_json(
        home.path(),
        &[
            "--lab",
            "127.0.0.1",
            "--lab-url",
            &lab.lab_url(),
            "--quick",
            "--duration",
            "4s",
            "-c",
            "2",
            "--rate",
            "300",
            "--capture",
            "--lab-keylog",
            keylog.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let site = &results["lab_site"];
    assert_eq!(site["kind"], "remote", "{site}");
    assert_eq!(site["host"], "127.0.0.1", "{site}");
    assert_eq!(site["server_cpu_measured"], false, "{site}");
    assert!(site["ca"].as_str().unwrap().ends_with("ca.pem"), "{site}");
    assert!(results["settings"]["server_threads"].is_null());
    for endpoint in results["lab"].as_array().unwrap() {
        let protocol = endpoint["protocol"].as_str().unwrap();
        let port = lab.port(protocol);
        assert_eq!(
            endpoint["addr"],
            format!("127.0.0.1:{port}"),
            "{protocol} did not go to the lab elsewhere"
        );
    }
    // connect and echo over four protocols, push over two: every one measured, none with a
    // server CPU figure (unknown, not zero).
    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 10);
    for run in runs {
        let name = format!("{} {}", run["protocol"], run["workload"]);
        assert!(number(&run["report"]["messages"]) > 0.0, "{name}: nothing");
        assert_eq!(number(&run["report"]["errors"]["tls"]), 0.0, "{name}");
        assert!(number(&run["cpu"]["client_secs"]) > 0.0, "{name}");
        for field in ["server_secs", "server_us_per_1k", "server_utilization"] {
            assert!(
                run["cpu"][field].is_null(),
                "{name}: {field} {}",
                run["cpu"]
            );
        }
    }

    let page = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(
        page.contains("lab: remote at 127.0.0.1"),
        "the HTML hides where the lab ran"
    );
    let file = out_dir.join("results.json");
    crate::compare::assert_matches_results_schema(
        &file,
        "results.json of a lab elsewhere does not match its schema",
    )
    .await;

    // The capture on loopback holds the lab's secrets from its key log: tshark decrypts every
    // wss echo, and protolab's decoder found no record it could not open.
    let capture = &results["capture"];
    assert!(
        capture["secrets_from"]
            .as_str()
            .unwrap()
            .contains("--lab-keylog"),
        "{capture}"
    );
    let frames = tshark_binary_frames(&out_dir.join("capture.pcapng"), lab.port("wss"));
    let echoes = number(&run_of(&results, "wss", "echo")["report"]["messages"]);
    assert!(
        frames as f64 >= echoes * 2.0,
        "tshark decrypted {frames} binary frames; compare echoed {echoes} wss messages"
    );
    let wss_cost = capture["wire_cost"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["protocol"] == "wss")
        .unwrap();
    assert_eq!(number(&wss_cost["tls_encrypted"]), 0.0, "{wss_cost}");

    // Without the key log the table says where the lab ran and why the capture stays
    // encrypted, and the file indeed does.
    let plain_dir = home.path().join("no-keylog");
    // A baseline from before lab_site existed: its lab ran in-process.
    let baseline = home.path().join("in-process.json");
    std::fs::write(
        &baseline,
        r#"{"schema": "protolab.compare.results", "schema_version": 2, "runs": []}"#,
    )
    .unwrap();
    let out = protolab(
        home.path(),
        &[
            "compare",
            "--lab",
            "127.0.0.1",
            "--lab-url",
            &lab.lab_url(),
            "--protocols",
            "wss",
            "--workloads",
            "echo",
            "--sizes",
            "32",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--capture",
            "--out",
            plain_dir.to_str().unwrap(),
            "--baseline",
            baseline.to_str().unwrap(),
        ],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ran against a lab in-process, this run's remote at 127.0.0.1"),
        "no note that the baseline's lab ran elsewhere:\n{stderr}"
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("lab: remote at 127.0.0.1"), "{table}");
    assert!(
        table.contains(" / n/a"),
        "server CPU must read n/a:\n{table}"
    );
    assert!(
        table.contains("the capture holds HTTPS/WSS encrypted") && table.contains("--lab-keylog"),
        "{table}"
    );
    let plain: Value =
        serde_json::from_slice(&std::fs::read(plain_dir.join("results.json")).unwrap()).unwrap();
    assert!(plain["capture"]["secrets_from"].is_null());
    assert!(
        number(&plain["capture"]["wire_cost"][0]["tls_encrypted"]) > 0.0,
        "{}",
        plain["capture"]
    );
    assert_eq!(
        tshark_binary_frames(&plain_dir.join("capture.pcapng"), lab.port("wss")),
        0,
        "no key log, yet tshark read WebSocket frames"
    );
}

/// The runs of `results` as `protocol workload` → (messages, bytes sent and received per
/// message).
fn figures(results: &Value) -> Vec<(String, f64, f64, f64)> {
    results["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            let report = &run["report"];
            (
                format!(
                    "{} {}",
                    run["protocol"].as_str().unwrap(),
                    run["workload"].as_str().unwrap()
                ),
                number(&report["messages"]),
                number(&report["bytes"]["sent_per_message"]),
                number(&report["bytes"]["received_per_message"]),
            )
        })
        .collect()
}

#[test]
fn compare_loads_sse_h2_and_grpc_of_a_lab_elsewhere_like_its_own() {
    let home = tempfile::tempdir().unwrap();
    // The SSE feed is the lab's: as often as compare's --push-interval below.
    let lab = UpElsewhere::start_apps(home.path(), "ws,sse,h2,grpc", &["--push-interval", "100ms"]);
    let runs = [
        "--protocols",
        "ws,sse,h2,grpc",
        "--workloads",
        "echo,push",
        "--sizes",
        "32",
        "--rounds",
        "1",
        "--duration",
        "4s",
        "-c",
        "2",
        "--push-interval",
        "100ms",
        "--no-report",
    ];
    let lab_url = lab.lab_url();
    let elsewhere = compare_json(
        home.path(),
        &[
            &["--lab", "127.0.0.1", "--lab-url", &lab_url][..],
            &runs[..],
        ]
        .concat(),
    );
    for endpoint in elsewhere["lab"].as_array().unwrap() {
        let protocol = endpoint["protocol"].as_str().unwrap();
        assert!(
            endpoint["addr"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{}", lab.port(protocol))),
            "{protocol} did not go to the lab elsewhere: {endpoint}"
        );
    }
    let warnings = elsewhere["warnings"].to_string();
    assert!(
        warnings.contains("push h2: skipped")
            && warnings.contains("the SSE app elsewhere pushes at the lab's own interval"),
        "{warnings}"
    );
    let in_process = compare_json(home.path(), &runs);
    let (there, here) = (figures(&elsewhere), figures(&in_process));
    // echo over four protocols, push over ws, sse and grpc (h2 has no push stream).
    assert_eq!(there.len(), 7, "{there:?}");
    for (name, messages, sent, received) in &there {
        println!("{name}: {messages} messages, {sent:.1} B sent and {received:.1} B received per message elsewhere");
        assert!(
            *messages > 0.0,
            "{name}: nothing measured against the lab elsewhere"
        );
        let (_, _, sent_here, received_here) = here
            .iter()
            .find(|(n, ..)| n == name)
            .unwrap_or_else(|| panic!("no in-process {name}"));
        println!("{name}: {sent_here:.1} B sent and {received_here:.1} B received in-process");
        // The same requests to the same apps: only the port numbers in the URL may differ
        // in length, and the pushes or handshakes a short run spreads over its messages.
        for (what, a, b) in [
            ("sent", sent, sent_here),
            ("received", received, received_here),
        ] {
            // A push run sends nothing per message either way.
            assert!(
                (a - b).abs() <= 0.2 * b,
                "{name}: {a:.1} B {what} per message elsewhere, {b:.1} B in-process"
            );
        }
    }
}

#[test]
fn a_wrong_lab_elsewhere_is_a_usage_error_naming_the_flag() {
    let home = tempfile::tempdir().unwrap();
    let lab = UpElsewhere::start(home.path(), &home.path().join("keys.log"));
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // Another protolab's CA: valid, but not the one the lab's certificates come from.
    let other = tempfile::tempdir().unwrap();
    let init = protolab(other.path(), &["certs", "init"]);
    assert!(init.status.success());
    let other_ca = other.path().join("ca.pem");
    let empty = tempfile::tempdir().unwrap();
    let https = format!("https={}", lab.port("https"));
    let wrong_port = format!("https={}", lab.port("http"));
    let closed_port = format!("http={closed}");
    // One round: a second for four runs, as these cases only need the lab flags judged.
    let lab_args = [
        "compare",
        "--no-report",
        "--workloads",
        "echo",
        "--sizes",
        "32",
        "--duration",
        "1s",
        "--rounds",
        "1",
    ];
    let cases: Vec<(Vec<&str>, &Path, &str)> = vec![
        (
            vec![
                "--lab",
                "127.0.0.1",
                "--protocols",
                "http",
                "--lab-url",
                &closed_port,
            ],
            home.path(),
            "--lab-url: cannot reach the http app",
        ),
        (
            vec!["--lab", "no-such-host.invalid", "--protocols", "http"],
            home.path(),
            "--lab: the http app at http://no-such-host.invalid:3000/",
        ),
        (
            vec![
                "--lab",
                "127.0.0.1",
                "--protocols",
                "https",
                "--lab-url",
                &https,
            ],
            home.path(),
            "",
        ),
        (
            vec![
                "--lab",
                "127.0.0.1",
                "--protocols",
                "https",
                "--lab-url",
                &https,
                "--lab-ca",
            ],
            home.path(),
            "--lab-ca: the https app",
        ),
        (
            vec![
                "--lab",
                "127.0.0.1",
                "--protocols",
                "https",
                "--lab-url",
                &wrong_port,
            ],
            home.path(),
            "--lab-url: the https app",
        ),
        (
            vec![
                "--lab",
                "127.0.0.1",
                "--protocols",
                "https",
                "--lab-url",
                &https,
            ],
            empty.path(),
            "",
        ),
        (
            vec!["--lab", "192.0.2.1", "--protocols", "https"],
            home.path(),
            "--lab-ca FILE is needed",
        ),
        (vec!["--lab-ca", "ca.pem"], home.path(), "add --lab HOST"),
        (
            vec!["--lab", "127.0.0.1", "--rtt", "10ms"],
            home.path(),
            "cannot be used with",
        ),
    ];
    for (i, (args, compare_home, expected)) in cases.into_iter().enumerate() {
        let mut args = [&lab_args[..], &args[..]].concat();
        if args.last() == Some(&"--lab-ca") {
            args.push(other_ca.to_str().unwrap());
        }
        let out = protolab(compare_home, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        match i {
            // The control: the right lab, port and (default, same home) CA work.
            2 => {
                assert!(out.status.success(), "{args:?}: {err}");
                continue;
            }
            // A home with no CA has none for the lab's certificates and says which flag helps.
            5 => assert!(
                err.contains("--lab-ca: none given") && err.contains("this home has no CA"),
                "{args:?}: {err}"
            ),
            _ => assert!(
                err.contains(expected),
                "{args:?}: expected `{expected}` in {err}"
            ),
        }
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    }
}

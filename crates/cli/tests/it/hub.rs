// `protolab hub` as a user runs it: flags checked up front (exit 2), TLS with the lab's CA, an API
// key file, curl publishing and subscribing, and SIGTERM closing subscribers.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protolab_test_support::require;

fn protolab(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protolab"));
    cmd.arg("--home").arg(home).env_remove("RUST_LOG");
    cmd
}

/// Starts `hub --port 0 extra…`; the child and the base URL it printed.
pub(crate) fn start_hub(home: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = protolab(home)
        .args(["hub", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protolab starts");
    let base = hub_url(&mut child);
    (child, base)
}

/// Reads a starting hub's stdout up to `ready`: the base URL it printed.
pub(crate) fn hub_url(child: &mut Child) -> String {
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut base = None;
    for line in stdout.lines().map_while(Result::ok) {
        if line == "ready" {
            break;
        }
        if let Some(url) = line.strip_prefix("hub ") {
            base = Some(url.trim().to_owned());
        }
    }
    base.expect("a `hub URL` line before ready")
}

pub(crate) fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new(require("curl", "apt-get install -y curl"))
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", ""));
    (status.to_owned(), body.to_owned())
}

#[test]
fn hub_serves_tls_with_an_api_key_and_closes_subscribers_on_sigterm() {
    let home = tempfile::tempdir().expect("temp dir");
    let keys = home.path().join("keys");
    std::fs::write(&keys, "# publishers\nk-0123456789abcdef0123\n").expect("key file");
    let (mut child, base) = start_hub(
        home.path(),
        &["--tls", "--api-key-file", keys.to_str().expect("utf-8")],
    );
    assert!(base.starts_with("https://localhost:"), "{base}");
    let ca = home.path().join("ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let publish = format!("{base}/api/publish");
    let body = r#"{"channel":"ops","level":"error","body":"disk full"}"#;
    let json = [
        "--cacert",
        ca,
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
    ];
    let (status, text) = curl(&[&json[..], &[publish.as_str()]].concat());
    assert_eq!(status, "401", "{text}");
    let (status, text) = curl(
        &[
            &json[..],
            &[
                "-H",
                "Authorization: Bearer k-0123456789abcdef0123",
                publish.as_str(),
            ],
        ]
        .concat(),
    );
    assert_eq!(status, "202", "{text}");

    // a subscriber that would wait 20 s is closed by SIGTERM, after getting the history
    let sse = Command::new(require("curl", "apt-get install -y curl"))
        .args([
            "-sN",
            "--max-time",
            "20",
            "--cacert",
            ca,
            "-H",
            "Last-Event-ID: start",
        ])
        .arg(format!("{base}/connection/sse?channel=ops"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let sse = sse.wait_with_output().expect("curl ends");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the SSE stream outlived the hub"
    );
    let events = String::from_utf8_lossy(&sse.stdout);
    assert!(
        events.contains("event: notification") && events.contains("disk full"),
        "{events}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the hub did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_flags_exit_2_and_say_which() {
    let home = tempfile::tempdir().expect("temp dir");
    let short = home.path().join("short");
    std::fs::write(&short, "tooshort\n").expect("key file");
    for (args, says) in [
        (vec!["--history-size", "0"], "--history-size"),
        (vec!["--notifs-allow", "10.0.0.0/99"], "--notifs-allow"),
        (
            vec!["--api-key-file", "/nonexistent/keys"],
            "--api-key-file",
        ),
        (
            vec!["--api-key-file", short.to_str().expect("utf-8")],
            "16 or more",
        ),
        (
            vec!["--jwt-secret-file", short.to_str().expect("utf-8")],
            "32 or more",
        ),
        (vec!["--port", "70000"], "--port"),
    ] {
        let out = protolab(home.path())
            .arg("hub")
            .args(&args)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// The story's interfaces through the command itself: a socket.io page (Node
/// `socket.io-client`) gets `newmessage` for `GET /notifs?msg=…` and for a `POST /api/publish`
/// on channel `notifs`, with the level letter the story's page reads.
#[test]
fn the_command_serves_socketio_and_notifs_to_the_storys_client() {
    let home = tempfile::tempdir().expect("temp dir");
    let (mut hub, base) = start_hub(home.path(), &[]);
    let node = require(
        "node",
        "apt-get install -y nodejs (scripts/install-test-peers)",
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/peers/socketio_client.mjs"
    );
    let mut client = Command::new(node)
        .args([script, base.as_str(), "--transports", "websocket"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts");
    let (lines, received) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = BufReader::new(client.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str(&line) {
                if lines.send(event).is_err() {
                    break;
                }
            }
        }
    });
    let next_event = |name: &str| loop {
        let event = received
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("no {name} event within 15 s"));
        if event["event"] == name {
            return event;
        }
    };
    next_event("connect");
    // The socket joins room `notifs` right after its connect is answered.
    std::thread::sleep(Duration::from_millis(300));
    let (status, text) = curl(&[&format!("{base}/notifs?msg=Edisk%20full")]);
    assert_eq!(status, "202", "{text}");
    assert_eq!(
        next_event("newmessage")["data"],
        serde_json::json!({"message": "Edisk full"})
    );
    let (status, text) = curl(&[
        "-H",
        "content-type: application/json",
        "--data",
        r#"{"channel":"notifs","level":"warning","body":"load 0.9"}"#,
        &format!("{base}/api/publish"),
    ]);
    assert_eq!(status, "202", "{text}");
    assert_eq!(
        next_event("newmessage")["data"],
        serde_json::json!({"message": "Wload 0.9"})
    );
    let _ = client.kill();
    let _ = client.wait();
    let _ = hub.kill();
    let _ = hub.wait();
}

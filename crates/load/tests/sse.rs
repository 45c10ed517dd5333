//! The SSE client (`sse://`, `sses://`) against the real lab's SSE and HTTPS apps, and against
//! an independent SSE server (tests/peers/sse_server.py, Python's http.server): event counts,
//! bytes per event checked by arithmetic, and a server that never ends a line is an error
//! within the run, not a hang.

#![allow(
    clippy::unwrap_used,
    reason = "set-up steps of the tests: a failure should panic right there"
)]

use std::process::Command;
use std::time::{Duration, Instant};

use protolab_load::{run, Config, Report, Target, Trust, Workload};
use protolab_server::Protocol;
use protolab_test_support::{repo_root, require, Background, TestLab};

/// `http://127.0.0.1:N/…` of the lab's `protocol` as `scheme://127.0.0.1:N/events`.
fn events_url(lab: &TestLab, protocol: Protocol, scheme: &str) -> Target {
    let url = lab.url(protocol);
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    Target::parse(&format!("{scheme}://{authority}/events")).unwrap()
}

async fn lab_with_pushes_every(interval: Duration) -> TestLab {
    TestLab::start(&[Protocol::Sse, Protocol::Https], |c| {
        c.push_interval = interval;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_over_the_labs_event_stream_counts_each_event_and_its_bytes() {
    let lab = lab_with_pushes_every(Duration::from_millis(20)).await;
    let mut config = Config::new(events_url(&lab, Protocol::Sse, "sse"));
    config.workload = Workload::Push;
    config.connections = 2;
    config.duration = Duration::from_millis(1200);
    let r = run(config).await.unwrap();
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    // Two streams, one event every 20 ms each (the machine is shared: leave room).
    assert!(r.messages >= 60 && r.messages <= 2 * 61, "{r:?}");
    let latency = r.latency.unwrap();
    assert!(
        latency.p50_us > 0.0 && latency.p50_us < 200_000.0,
        "{latency:?}"
    );
    // Each push on the wire: `id: EPOCH-SEQ\n` + `data: JSON\n` + `\n`, i.e. the data plus 13
    // bytes plus the id (a 13-digit epoch, `-`, the sequence number's 1 to 4 digits here).
    let data = r.bytes.payload_received_per_message.unwrap();
    let wire = r.bytes.received_per_message.unwrap();
    let framing = wire - data;
    assert!(
        (13.0 + 15.0..=13.0 + 18.0).contains(&framing),
        "{:?}",
        r.bytes
    );
    assert_eq!(r.bytes.sent_per_message, Some(0.0), "{:?}", r.bytes);
    // The handshake: one GET sent, the head, `retry:` and the hello event received.
    assert!(
        r.bytes.handshake_sent_per_connection.unwrap() > 50.0,
        "{:?}",
        r.bytes
    );
    assert!(
        r.bytes.handshake_received_per_connection.unwrap() > 200.0,
        "{:?}",
        r.bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_ends_at_the_hello_event_and_echo_goes_over_a_second_connection() {
    let lab = lab_with_pushes_every(Duration::from_secs(60)).await;
    let mut config = Config::new(events_url(&lab, Protocol::Sse, "sse"));
    config.workload = Workload::Connect;
    config.duration = Duration::from_millis(500);
    let r = run(config.clone()).await.unwrap();
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert!(r.messages > 3, "{r:?}");
    assert_eq!(r.connections_opened, r.messages, "{r:?}");
    // TCP's handshake, then GET → head and hello in one turn.
    assert_eq!(r.round_trips_to_first_echo, Some(2.0), "{r:?}");

    // Over TLS (the HTTPS app serves the same paths): TLS 1.3 adds one round trip.
    let mut tls = config.clone();
    tls.target = events_url(&lab, Protocol::Https, "sses");
    tls.trust = Trust::Insecure;
    let r = run(tls).await.unwrap();
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert_eq!(r.round_trips_to_first_echo, Some(3.0), "{r:?}");

    config.workload = Workload::Echo;
    config.size = 100;
    config.duration = Duration::from_millis(800);
    let r = run(config).await.unwrap();
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert!(r.messages > 10, "{r:?}");
    assert_eq!(r.connections_opened, 1, "{r:?}");
    // TCP, GET → hello, the echo connection's TCP, POST → the echo event.
    assert_eq!(r.round_trips_to_first_echo, Some(4.0), "{r:?}");
    // Per echo: the POST (head and 100-byte body) sent; its 202 answer and the echo event
    // (`event: echo\n` + `data: ` 100 bytes `\n` + `\n` = 120 bytes) received.
    let sent = r.bytes.sent_per_message.unwrap();
    let received = r.bytes.received_per_message.unwrap();
    assert!(sent > 100.0 + 40.0 && sent < 100.0 + 300.0, "{:?}", r.bytes);
    assert!(
        received > 120.0 + 40.0 && received < 120.0 + 400.0,
        "{:?}",
        r.bytes
    );
}

fn python_server(args: &[&str]) -> Command {
    let python = require("python3", "apt-get install python3");
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/peers/sse_server.py"))
        .args(args);
    cmd
}

async fn start(args: &[&str]) -> (Background, u16) {
    let mut cmd = tokio::process::Command::from(python_server(args));
    cmd.kill_on_drop(true);
    let mut server = Background::spawn(cmd);
    let line = server.next_json(Duration::from_secs(10)).await;
    let port = u16::try_from(line["port"].as_u64().unwrap()).unwrap();
    (server, port)
}

async fn push_to(port: u16, max: u64, duration: Duration) -> Report {
    let mut config = Config::new(Target::parse(&format!("sse://127.0.0.1:{port}/events")).unwrap());
    config.workload = Workload::Push;
    config.max_messages = max;
    config.duration = duration;
    run(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_server_is_read_event_by_event_with_or_without_chunking() {
    // Each event is `id: NNNNNN\n` (11 bytes) + `data: ` + 44 bytes of JSON + `\n` (51) +
    // `\n`: 63 bytes, 19 of them framing; chunked adds `3f\r\n` and `\r\n`, 6 more.
    for (mode, framing) in [("close", 19.0), ("chunked", 25.0)] {
        let (_server, port) = start(&["--mode", mode, "--count", "40", "--interval-ms", "5"]).await;
        let r = push_to(port, 30, Duration::from_secs(5)).await;
        assert_eq!(r.errors.total(), 0, "{mode}: {:?}", r.errors);
        assert_eq!(r.messages, 30, "{mode}: {r:?}");
        let b = r.bytes;
        assert_eq!(b.payload_received_per_message, Some(44.0), "{mode}: {b:?}");
        assert_eq!(
            b.received_per_message,
            Some(44.0 + framing),
            "{mode}: {b:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_never_ends_is_an_error_not_a_hang() {
    for mode in ["oversize", "garbage"] {
        let (_server, port) = start(&["--mode", mode, "--line-bytes", "1000000"]).await;
        let started = Instant::now();
        let r = push_to(port, u64::MAX, Duration::from_secs(10)).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{mode}: {r:?}");
        assert_eq!(r.messages, 0, "{mode}: {r:?}");
        assert_eq!(r.errors.protocol, 1, "{mode}: {:?}", r.errors);
        let detail = format!("{:?}", r.errors);
        assert!(
            detail.contains("longer than 65536 bytes"),
            "{mode}: {detail}"
        );
    }
}

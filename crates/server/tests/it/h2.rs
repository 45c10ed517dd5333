//! The HTTP/2 app against real HTTP/2 peers — curl (h2 over TLS and h2c), nghttp, h2load,
//! Node's http2 module for WebSockets over HTTP/2 — and against hostile clients written here
//! from raw bytes (no HTTP/2 library of the lab's).

use std::path::PathBuf;
use std::time::Duration;

use protolab_server::Protocol;
use protolab_test_support::{repo_root, require, run, Background, Peer, TestLab};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::PEER_LIMIT;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const RST_STREAM: u8 = 0x3;
const CONTINUATION: u8 = 0x9;
const GOAWAY: u8 = 0x7;
const END_STREAM_END_HEADERS: u8 = 0x5;

const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const FRAME_SIZE_ERROR: u32 = 0x6;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK for `GET http://localhost/`: static-table indexes for :method GET (2), :scheme http
/// (6), :path / (4), and :authority (1) as a literal without indexing.
fn get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 9];
    block.extend_from_slice(b"localhost");
    block
}

/// Preface and an empty SETTINGS: what every client sends first.
fn opening() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// A GOAWAY's last stream id and error code.
#[derive(Debug, PartialEq, Eq)]
struct GoAway {
    last_stream: u32,
    code: u32,
}

/// Frames in `bytes` as (type, flags, stream, payload).
fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, &[u8])> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        if rest.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        out.push((rest[3], rest[4], stream, &rest[9..9 + len]));
        rest = &rest[9 + len..];
    }
    out
}

fn goaways(bytes: &[u8]) -> Vec<GoAway> {
    frames(bytes)
        .into_iter()
        .filter(|(kind, _, _, payload)| *kind == GOAWAY && payload.len() >= 8)
        .map(|(_, _, _, p)| GoAway {
            last_stream: u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
            code: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        })
        .collect()
}

/// Sends `bytes` on a new connection and reads until the server closes it (at most 5 s, so a
/// server that never reacts fails the test rather than hanging it).
async fn send_and_read_to_close(port: u16, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = tcp.split();
    let reading = async {
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                // A reset after the GOAWAY still counts as closed.
                Err(_) => return (got, true),
            }
        }
    };
    let writing = async {
        // The server may close before all is written: that is the point of some of these.
        let _ = wr.write_all(bytes).await;
    };
    let (read, ()) = tokio::join!(
        async {
            tokio::time::timeout(Duration::from_secs(5), reading)
                .await
                .unwrap_or_else(|_| (Vec::new(), false))
        },
        writing
    );
    read
}

/// `curl` with the lab's CA: (HTTP version, status, body).
async fn curl(lab: &TestLab, url: &str, extra: &[&str]) -> (String, u16, String) {
    let ca = lab.ca.to_string_lossy().into_owned();
    let mut args = vec![
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        &ca,
        "-w",
        "\n%{http_version} %{http_code}",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = run(Peer::Curl.command(&args), PEER_LIMIT).await;
    assert!(
        out.status.success(),
        "curl {url} {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = stdout.rsplit_once('\n').expect("the -w line");
    let (version, status) = last.split_once(' ').expect("version and status");
    (
        version.to_string(),
        status.parse().expect("numeric status"),
        body.to_string(),
    )
}

fn h2_urls(lab: &TestLab) -> [(String, &'static str); 2] {
    let port = lab.port(Protocol::H2);
    [
        (format!("https://localhost:{port}"), "--http2"),
        (
            format!("http://localhost:{port}"),
            "--http2-prior-knowledge",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_echo_the_api_and_healthz_over_h2_and_h2c() {
    let lab = TestLab::start(&[Protocol::H2], |_| {}).await;
    for (base, flag) in h2_urls(&lab) {
        let (version, status, body) =
            curl(&lab, &format!("{base}/echo?msg=hello%20h2"), &[flag]).await;
        assert_eq!(
            (version.as_str(), status, body.as_str()),
            ("2", 200, "hello h2"),
            "{base}"
        );

        let (version, status, body) = curl(
            &lab,
            &format!("{base}/echo"),
            &[
                flag,
                "-H",
                "content-type: text/x-lab",
                "--data-binary",
                "posted body",
            ],
        )
        .await;
        assert_eq!(
            (version.as_str(), status, body.as_str()),
            ("2", 200, "posted body")
        );

        let (version, status, body) = curl(
            &lab,
            &format!("{base}/api/birds?species=Barn%20Swallow&limit=2"),
            &[flag],
        )
        .await;
        assert_eq!((version.as_str(), status), ("2", 200), "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON from the API");
        let results = json["results"].as_array().expect("results");
        assert_eq!(results.len(), 2, "{json}");
        assert!(
            results.iter().all(|r| r["species"] == "Barn Swallow"),
            "{json}"
        );

        let (_, status, body) = curl(&lab, &format!("{base}/healthz"), &[flag]).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        let (_, status, _) = curl(&lab, &format!("{base}/nowhere"), &[flag]).await;
        assert_eq!(status, 404);
        let (_, status, body) = curl(&lab, &format!("{base}/"), &[flag]).await;
        assert_eq!(status, 200);
        assert!(body.contains("HTTP demo"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_413() {
    let lab = TestLab::start(&[Protocol::H2], |c| c.limits.max_body_bytes = 1024).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 64 << 10]).expect("write the body");
    let data = format!("@{}", big.display());
    // Repeated: a client still sending when the 413 arrives must see its stream end, not a
    // reset (which curl reports as a failure), however the race goes.
    for _ in 0..5 {
        for (base, flag) in h2_urls(&lab) {
            let url = format!("{base}/echo");
            let (version, status, _) = curl(&lab, &url, &[flag, "--data-binary", &data]).await;
            assert_eq!((version.as_str(), status), ("2", 413), "{base}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nghttp_sees_the_labs_settings() {
    let lab = TestLab::start(&[Protocol::H2], |c| {
        c.limits.h2.max_concurrent_streams = 77;
        c.limits.h2.max_frame_size = 32_768;
        c.limits.h2.stream_window = 300_000;
        c.limits.h2.connection_window = 2 << 20;
        c.limits.max_header_bytes = 20_000;
    })
    .await;
    let nghttp = require("nghttp", "apt-get install -y nghttp2-client");
    let url = format!("http://127.0.0.1:{}/healthz", lab.port(Protocol::H2));
    let mut cmd = Command::new(nghttp);
    cmd.args(["-nv", "--timeout=10", &url]).kill_on_drop(true);
    let out = run(cmd, PEER_LIMIT).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nghttp failed: {text}");
    for expected in [
        "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):77]",
        "[SETTINGS_INITIAL_WINDOW_SIZE(0x04):300000]",
        "[SETTINGS_MAX_FRAME_SIZE(0x05):32768]",
        "[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):20000]",
        "[SETTINGS_ENABLE_CONNECT_PROTOCOL(0x08):1]",
        // The connection window grows from the protocol's 65,535 to 2 MiB.
        "(window_size_increment=2031617)",
        "recv (stream_id=13) :status: 200",
    ] {
        assert!(text.contains(expected), "no `{expected}` in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_completes_every_request_with_many_streams_on_few_connections() {
    let lab = TestLab::start(&[Protocol::H2], |_| {}).await;
    let h2load = require("h2load", "apt-get install -y nghttp2-client");
    let port = lab.port(Protocol::H2);
    for url in [
        format!("http://127.0.0.1:{port}/echo?msg=load"),
        format!("https://127.0.0.1:{port}/api/birds?limit=3"),
    ] {
        let mut cmd = Command::new(&h2load);
        cmd.args(["-n", "2000", "-c", "4", "-m", "32", "-T", "10", &url])
            .kill_on_drop(true);
        let out = run(cmd, PEER_LIMIT).await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "h2load {url}: {text}");
        assert!(
            text.contains("requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout"),
            "{url}:\n{text}"
        );
        assert!(text.contains("status codes: 2000 2xx"), "{url}:\n{text}");
        if url.starts_with("https") {
            assert!(text.contains("Application protocol: h2"), "{text}");
        }
    }
}

/// One hostile connection: what it sends and the GOAWAY code it must get.
struct Hostile {
    name: &'static str,
    bytes: Vec<u8>,
    code: u32,
}

fn hostile_clients() -> Vec<Hostile> {
    let mut oversize = opening();
    oversize.extend(frame(HEADERS, 0x4, 1, &get_block()));
    // One byte past SETTINGS_MAX_FRAME_SIZE (16,384 by default).
    oversize.extend(frame(DATA, 0, 1, &vec![b'x'; 16_385]));

    let mut settings_flood = opening();
    for _ in 0..10_000 {
        settings_flood.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
    }

    // CVE-2023-44487: open a stream and reset it at once, over and over.
    let mut rapid_reset = opening();
    for i in 0..5_000u32 {
        rapid_reset.extend(frame(
            HEADERS,
            END_STREAM_END_HEADERS,
            2 * i + 1,
            &get_block(),
        ));
        rapid_reset.extend(frame(RST_STREAM, 0, 2 * i + 1, &8u32.to_be_bytes()));
    }

    // CVE-2024-27316: a header block that never ends, one small CONTINUATION after another.
    let mut continuation_flood = opening();
    continuation_flood.extend(frame(HEADERS, 0x1, 1, &get_block()));
    for i in 0..20_000u32 {
        let mut field = vec![0x00, 4];
        field.extend_from_slice(format!("x{:03}", i % 1000).as_bytes());
        field.extend_from_slice(&[1, b'v']);
        continuation_flood.extend(frame(CONTINUATION, 0, 1, &field));
    }

    vec![
        Hostile {
            name: "an HTTP/1.1 request instead of the preface",
            bytes: b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            code: PROTOCOL_ERROR,
        },
        Hostile {
            name: "a frame over SETTINGS_MAX_FRAME_SIZE",
            bytes: oversize,
            code: FRAME_SIZE_ERROR,
        },
        Hostile {
            name: "a SETTINGS flood",
            bytes: settings_flood,
            code: ENHANCE_YOUR_CALM,
        },
        Hostile {
            name: "a rapid-reset burst",
            bytes: rapid_reset,
            code: ENHANCE_YOUR_CALM,
        },
        Hostile {
            name: "a CONTINUATION flood",
            bytes: continuation_flood,
            code: ENHANCE_YOUR_CALM,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_goaway_while_another_client_is_served() {
    let lab = TestLab::start(&[Protocol::H2], |_| {}).await;
    let port = lab.port(Protocol::H2);
    let bystander = format!("http://localhost:{port}/echo?msg=still%20here");
    for hostile in hostile_clients() {
        let ((got, closed), (version, status, body)) = tokio::join!(
            send_and_read_to_close(port, &hostile.bytes),
            curl(&lab, &bystander, &["--http2-prior-knowledge"]),
        );
        let goaways = goaways(&got);
        assert!(
            goaways.last().is_some_and(|g| g.code == hostile.code),
            "{}: expected GOAWAY code {:#x}, got {goaways:?}",
            hostile.name,
            hostile.code
        );
        assert!(closed, "{}: the connection stayed open", hostile.name);
        assert_eq!(
            (version.as_str(), status, body.as_str()),
            ("2", 200, "still here"),
            "{}: the other client",
            hostile.name
        );
    }
    // The rapid-reset burst's GOAWAY names the last stream it opened, not more.
    let reset = hostile_clients().remove(3);
    let (got, _) = send_and_read_to_close(port, &reset.bytes).await;
    let last = goaways(&got).pop().expect("a GOAWAY");
    assert!(
        last.last_stream % 2 == 1 && last.last_stream < 10_000,
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_goaway_and_an_idle_connection_is_closed() {
    let lab = TestLab::start(&[Protocol::H2], |c| {
        c.limits.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let port = lab.port(Protocol::H2);

    // Idle: a client that says nothing after its preface gets GOAWAY(NO_ERROR), then FIN.
    let started = std::time::Instant::now();
    let (got, closed) = send_and_read_to_close(port, &opening()).await;
    assert!(closed, "an idle connection stayed open");
    assert_eq!(goaways(&got).last().map(|g| g.code), Some(NO_ERROR));
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );

    // Shutdown: an open connection that has been served gets GOAWAY(NO_ERROR) naming its
    // stream and is closed once the client answered the server's PING, so nothing is dropped.
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    let mut hello = opening();
    hello.extend(frame(HEADERS, END_STREAM_END_HEADERS, 1, &get_block()));
    wr.write_all(&hello).await.expect("write");
    let answered = std::sync::atomic::AtomicBool::new(false);
    // A client as small as can be: it acknowledges SETTINGS and PING and records the rest.
    let client = async {
        let mut got = Vec::new();
        let mut seen = 0;
        let mut chunk = [0u8; 4096];
        loop {
            let n = match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => n,
            };
            got.extend_from_slice(&chunk[..n]);
            let all = frames(&got);
            for (kind, flags, stream, payload) in &all[seen..] {
                if *kind == SETTINGS && flags & 0x1 == 0 {
                    let _ = wr.write_all(&frame(SETTINGS, 0x1, 0, &[])).await;
                }
                if *kind == 0x6 && flags & 0x1 == 0 {
                    let _ = wr.write_all(&frame(0x6, 0x1, 0, payload)).await;
                }
                if *stream == 1 && *kind == DATA && flags & 0x1 != 0 {
                    answered.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            seen = all.len();
        }
    };
    let shutdown = async {
        while !answered.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lab.lab.shutdown().await
    };
    let (got, report) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(client, shutdown)
    })
    .await
    .expect("shutdown within 10 s");
    assert_eq!(report.dropped, 0, "{report:?}");
    // Two GOAWAYs (RFC 9113 §6.8): first "no new streams" naming the highest possible
    // stream, then, a PING round trip later, the last stream really processed.
    let goaways = goaways(&got);
    assert_eq!(
        goaways.first().map(|g| g.code),
        Some(NO_ERROR),
        "{goaways:?}"
    );
    assert_eq!(
        goaways.last(),
        Some(&GoAway {
            last_stream: 1,
            code: NO_ERROR
        }),
        "{:?}",
        frames(&got)
    );
}

fn node_h2_ws() -> (PathBuf, PathBuf) {
    let node = require("node", "apt-get install -y nodejs");
    (node, repo_root().join("tests/peers/h2_ws_client.mjs"))
}

/// Runs the RFC 8441 client; its JSON lines.
async fn h2_ws(lab: &TestLab, url: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let (node, script) = node_h2_ws();
    let mut cmd = Command::new(node);
    cmd.arg(script)
        .arg(url)
        .arg("--ca")
        .arg(&lab.ca)
        .args(extra)
        .kill_on_drop(true);
    let out = run(cmd, PEER_LIMIT).await;
    assert!(
        out.status.success(),
        "h2_ws_client {url}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_h2_and_h2c_echo_and_foreign_origins_are_refused() {
    let lab = TestLab::start(&[Protocol::H2], |_| {}).await;
    let port = lab.port(Protocol::H2);
    for base in [
        format!("https://localhost:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let events = h2_ws(
            &lab,
            &format!("{base}/ws"),
            &["--text", "hello over h2", "--text", "ünïcode"],
        )
        .await;
        let texts: Vec<&str> = events
            .iter()
            .filter(|e| e["event"] == "text")
            .filter_map(|e| e["data"].as_str())
            .collect();
        assert_eq!(events[0]["event"], "open", "{base}: {events:?}");
        assert_eq!(texts, ["hello over h2", "ünïcode"], "{base}: {events:?}");
        assert_eq!(events.last().map(|e| e["code"].clone()), Some(1000.into()));
    }
    let refused = h2_ws(
        &lab,
        &format!("http://localhost:{port}/ws"),
        &["--origin", "https://evil.example", "--text", "x"],
    )
    .await;
    assert_eq!(refused[0]["event"], "refused", "{refused:?}");
    assert_eq!(refused[0]["status"], 403, "{refused:?}");
    let elsewhere = h2_ws(&lab, &format!("http://localhost:{port}/other"), &[]).await;
    assert_eq!(elsewhere[0]["status"], 404, "{elsewhere:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_over_h2_with_1001() {
    let lab = TestLab::start(&[Protocol::H2], |_| {}).await;
    let url = format!("https://localhost:{}/ws", lab.port(Protocol::H2));
    let (node, script) = node_h2_ws();
    let mut cmd = Command::new(node);
    cmd.arg(script)
        .arg(&url)
        .arg("--ca")
        .arg(&lab.ca)
        .kill_on_drop(true);
    let mut client = Background::spawn(cmd);
    assert_eq!(client.next_json(PEER_LIMIT).await["event"], "open");
    let (report, close) = tokio::join!(lab.lab.shutdown(), client.next_json(PEER_LIMIT));
    assert_eq!(close["event"], "close", "{close}");
    assert_eq!(close["code"], 1001, "{close}");
    assert_eq!(report.dropped, 0, "{report:?}");
    assert!(client.wait(PEER_LIMIT).await.success());
}

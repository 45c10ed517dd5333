//! The proxy where its neighbours misbehave or merely differ: backends (the lab's HTTP app,
//! nginx) that answer 413 before a request body is done, a WebSocket client that stops
//! reading, a backend that goes away and comes back, and the forwarding fields a client sends.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up is a failed test"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use protolab_server::proxy::{ForwardedFor, HealthCheck};
use protolab_server::Protocol;
use protolab_test_support::{require, run, LenientBackend, Peer, RawWs, TestLab};
use protolab_wire::http1::{parse_response, BodyFraming, HeadLimits};
use protolab_wire::ws::{encode_frame, Message, OpCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::logs;
use crate::proxy::TestProxy;
use crate::PEER_LIMIT;

/// nginx (one process, no daemon) answering every request `200 ok`, refusing bodies over
/// 1 KiB with 413 (`client_max_body_size`). Killed when dropped.
struct Nginx {
    addr: SocketAddr,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start() -> Self {
        let nginx = require("nginx", "apt-get install -y nginx");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off; master_process off; pid {d}/nginx.pid; error_log stderr crit;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             server {{ listen 127.0.0.1:{port}; client_max_body_size 1k;\n\
             location / {{ return 200 \"ok\\n\"; }} }} }}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = tokio::process::Command::new(nginx)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "nginx never listened on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _child: child,
            _dir: dir,
        }
    }
}

/// Announces a 10 MB body, sends 64 KiB of it, then waits for an answer without sending more
/// (a client that stops uploading once it is answered). Returns the response head as text,
/// its body, and how long it took.
async fn upload_and_wait(port: u16) -> (String, Vec<u8>, Duration) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let start = Instant::now();
    tcp.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&vec![b'x'; 64 << 10]).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some((head, len)) = parse_response(&buf, &HeadLimits::default()).unwrap() {
                let BodyFraming::ContentLength(n) = head.body_framing("POST").unwrap() else {
                    panic!("an unframed error page: {head:?}");
                };
                let end = len + usize::try_from(n).unwrap();
                while buf.len() < end {
                    let mut chunk = [0u8; 4096];
                    let n = tcp.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "closed inside the body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let text = String::from_utf8_lossy(&buf[..len]).to_ascii_lowercase();
                return (text, buf[len..end].to_vec());
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed without an answer");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (head, body) = tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .expect("an answer within 15 s");
    (head, body, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_sent_before_the_body_ends_reaches_the_client_at_once() {
    let lab = TestLab::start(&[Protocol::Http], |c| c.limits.max_body_bytes = 1024).await;
    let nginx = Nginx::start().await;
    let client_timeout = Duration::from_secs(5);
    for (name, backend) in [
        (
            "the lab's HTTP app",
            SocketAddr::from(([127, 0, 0, 1], lab.port(Protocol::Http))),
        ),
        ("nginx", nginx.addr),
    ] {
        let proxy = TestProxy::start(vec![backend], |c| c.timeouts.client = client_timeout).await;
        let (head, body, took) = upload_and_wait(proxy.port(false)).await;
        assert!(head.starts_with("http/1.1 413 "), "{name}: {head}");
        assert!(!body.is_empty(), "{name}: the backend's own error page");
        assert!(
            head.contains("\r\nconnection: close\r\n"),
            "{name}: the rest of the body is never read, so the connection closes: {head}"
        );
        assert!(
            took < client_timeout / 2,
            "{name}: answered after {took:?}, as if the proxy waited for the body"
        );
    }
}

/// A masked binary frame of `len` bytes, as a client sends it.
fn binary_frame(len: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(len + 14);
    encode_frame(
        &mut frame,
        true,
        OpCode::Binary,
        Some([1, 2, 3, 4]),
        &vec![7u8; len],
    );
    frame
}

async fn echo(ws: &mut RawWs, text: &str) {
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        true,
        OpCode::Text,
        Some([9, 8, 7, 6]),
        text.as_bytes(),
    );
    ws.send_raw(&frame).await;
    loop {
        match ws.next_message(Duration::from_secs(5)).await {
            Message::Text(t) if t == text => return,
            Message::Text(_) | Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("no echo of {text:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.push_interval = Duration::from_secs(3600);
    })
    .await;
    let backend = SocketAddr::from(([127, 0, 0, 1], lab.port(Protocol::Ws)));
    let write_timeout = Duration::from_secs(1);
    let proxy = TestProxy::start(vec![backend], |c| c.timeouts.write = write_timeout).await;
    let port = proxy.port(false);
    let mut canary = RawWs::connect(port).await;
    echo(&mut canary, "before").await;

    // The slow client asks for 256 KiB echoes without end and never reads one.
    let mut slow = RawWs::connect(port).await;
    assert_eq!(lab.lab.open_connections(), 2);
    let flood_started = Instant::now();
    let flood = tokio::spawn(async move {
        let frame = binary_frame(256 << 10);
        while slow.stream.write_all(&frame).await.is_ok() {}
    });
    // Meanwhile the canary is served as usual.
    echo(&mut canary, "during").await;
    let deadline = flood_started + Duration::from_secs(15);
    while lab.lab.open_connections() > 1 {
        assert!(
            Instant::now() < deadline,
            "the non-reading client's tunnel is still open after 15 s (write timeout {write_timeout:?}, tunnel timeout 1 h)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cut_after = flood_started.elapsed();
    flood.abort();
    // The backend and the other client never noticed.
    echo(&mut canary, "after").await;
    assert_eq!(lab.lab.open_connections(), 1, "the canary's tunnel is up");
    let mut fresh = RawWs::connect(port).await;
    echo(&mut fresh, "new client").await;
    eprintln!("slow reader cut off {cut_after:?} after it stopped reading");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_fields_a_client_sent_are_kept_or_replaced() {
    let mut backend = LenientBackend::start().await;
    for (mode, want_xff, want_forwarded) in [
        (
            ForwardedFor::Append,
            "203.0.113.9, 127.0.0.1",
            "for=203.0.113.9, for=127.0.0.1;proto=http;host=\"a.test\"",
        ),
        (
            ForwardedFor::Replace,
            "127.0.0.1",
            "for=127.0.0.1;proto=http;host=\"a.test\"",
        ),
    ] {
        let proxy = TestProxy::start(vec![backend.addr], |c| c.forwarded_for = mode).await;
        let url = format!("http://127.0.0.1:{}/fields", proxy.port(false));
        let out = run(
            Peer::Curl.command([
                "-sS",
                "-H",
                "Host: a.test",
                "-H",
                "X-Forwarded-For: 203.0.113.9",
                "-H",
                "Forwarded: for=203.0.113.9",
                &url,
            ]),
            PEER_LIMIT,
        )
        .await;
        assert!(out.status.success(), "{out:?}");
        let seen = backend.requests(Duration::from_millis(300)).await;
        assert_eq!(seen.len(), 1, "{mode:?}: {seen:?}");
        assert_eq!(seen[0].values("x-forwarded-for"), [want_xff], "{mode:?}");
        assert_eq!(seen[0].values("forwarded"), [want_forwarded], "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_going_down_and_up_is_logged_as_a_warning_with_the_reason_both_ways() {
    logs::capture();
    // A port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend = SocketAddr::from(([127, 0, 0, 1], port));
    let check = HealthCheck {
        interval: Duration::from_millis(100),
        rise: 2,
        fall: 2,
        ..HealthCheck::default()
    };
    let proxy = TestProxy::start(vec![backend], |c| c.health = Some(check)).await;
    wait_until_up(&proxy, false).await;
    let _lab = TestLab::start(&[Protocol::Http], |c| c.apps = vec![(Protocol::Http, port)]).await;
    wait_until_up(&proxy, true).await;
    let addr = backend.to_string();
    let changes =
        logs::events(|e| e.target == "protolab_server::proxy::pool" && e.field("backend") == addr);
    let find = |word: &str| {
        changes
            .iter()
            .find(|e| e.field("message").contains(word))
            .unwrap_or_else(|| panic!("no {word} line: {changes:?}"))
            .clone()
    };
    let (down, up) = (find("DOWN"), find("UP"));
    assert_eq!(down.level, tracing::Level::WARN, "{down:?}");
    assert_eq!(up.level, tracing::Level::WARN, "{up:?}");
    assert!(down.field("reason").contains("connect failed"), "{down:?}");
    assert!(up.field("reason").contains("200"), "{up:?}");
}

/// Waits (at most 5 s) until health checks consider the only backend `up`.
async fn wait_until_up(proxy: &TestProxy, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.proxy.backends()[0].up != up {
        assert!(
            Instant::now() < deadline,
            "the backend never became up={up}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

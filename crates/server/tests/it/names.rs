//! How the lab answers by the name and address a client uses: `::1` beside 127.0.0.1, HSTS
//! on the TLS apps, and WebSocket origins under DNS rebinding — each through curl.

use protolab_server::Protocol;
use protolab_test_support::{run, Peer, TestLab};

use crate::PEER_LIMIT;

/// curl's `-i` output (head and body) for `url` with `extra` arguments.
async fn curl_i(lab: &TestLab, url: &str, extra: &[&str]) -> String {
    let ca = lab.ca.to_string_lossy().into_owned();
    let mut args = vec!["-sS", "-i", "--max-time", "10", "--cacert", &ca];
    args.extend_from_slice(extra);
    args.push(url);
    let out = run(Peer::Curl.command(&args), PEER_LIMIT).await;
    assert!(
        out.status.success(),
        "curl {url} {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The apps that answer HTTP/1.1 (gRPC's ::1 listener is checked in `grpc`).
const HTTP1_APPS: [Protocol; 4] = [Protocol::Http, Protocol::Https, Protocol::Ws, Protocol::Wss];

/// Browsers try `localhost` at ::1 first; every app answers there on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_app_on_loopback_answers_on_ipv6_loopback_too() {
    let lab = TestLab::start(&HTTP1_APPS, |_| {}).await;
    for protocol in HTTP1_APPS {
        let port = lab.port(protocol);
        let scheme = if protocol.is_tls() { "https" } else { "http" };
        let answer = curl_i(&lab, &format!("{scheme}://[::1]:{port}/healthz"), &["-g"]).await;
        // curl negotiates h2 with the HTTP/2 app.
        let ok = if protocol == Protocol::H2 {
            "HTTP/2 200"
        } else {
            "HTTP/1.1 200"
        };
        assert!(answer.starts_with(ok), "{protocol} on ::1: {answer}");
    }
}

/// RFC 6797: the TLS apps send Strict-Transport-Security; to loopback names `max-age=0`, so a
/// browser never carries the policy to the plain-HTTP app on the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_apps_send_hsts_and_plain_apps_do_not() {
    let lab = TestLab::start(&HTTP1_APPS, |_| {}).await;
    for protocol in HTTP1_APPS {
        let port = lab.port(protocol);
        let scheme = if protocol.is_tls() { "https" } else { "http" };
        let url = format!("{scheme}://localhost:{port}/");
        let local = curl_i(&lab, &url, &[]).await.to_ascii_lowercase();
        let named = curl_i(&lab, &url, &["-H", &format!("Host: lab.example:{port}")])
            .await
            .to_ascii_lowercase();
        if protocol.is_tls() {
            assert!(
                local.contains("strict-transport-security: max-age=0\r\n"),
                "{local}"
            );
            assert!(
                named.contains("strict-transport-security: max-age=31536000\r\n"),
                "{named}"
            );
        } else {
            assert!(!local.contains("strict-transport-security"), "{local}");
        }
    }
}

/// A DNS-rebinding page (its own name re-pointed at 127.0.0.1) sends Host and Origin that
/// agree; the upgrade must still be refused, while the lab's own names keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_name_cannot_open_the_labs_websockets() {
    let lab = TestLab::start(&[Protocol::Ws], |_| {}).await;
    let port = lab.port(Protocol::Ws);
    let upgrade = |origin: String| {
        vec![
            "-H".to_string(),
            "Connection: Upgrade".into(),
            "-H".into(),
            "Upgrade: websocket".into(),
            "-H".into(),
            "Sec-WebSocket-Version: 13".into(),
            "-H".into(),
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
            "-H".into(),
            format!("Origin: {origin}"),
            // The 101 leaves the connection open: stop after the head.
            "--max-time".into(),
            "2".into(),
        ]
    };
    let evil = format!("rebind.evil.example:{port}");
    let mut args = upgrade(format!("http://{evil}"));
    args.extend(["--resolve".into(), format!("{evil}:127.0.0.1")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let answer = curl_i(&lab, &format!("http://{evil}/ws"), &args).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "rebound name: {answer}");

    let own = format!("localhost:{port}");
    let args = upgrade(format!("http://{own}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ca = lab.ca.to_string_lossy().into_owned();
    let mut cmd_args = vec!["-sS", "-i", "--cacert", &ca];
    cmd_args.extend_from_slice(&args);
    let url = format!("http://{own}/ws");
    cmd_args.push(&url);
    // curl exits with a timeout once the 101 has come and the socket stays open.
    let out = run(Peer::Curl.command(&cmd_args), PEER_LIMIT).await;
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(answer.starts_with("HTTP/1.1 101"), "own name: {answer}");
}

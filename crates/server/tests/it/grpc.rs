//! The gRPC app through Python grpcio: unary and bidirectional echo, server push and
//! reflection over h2c and TLS on the same port, its limits, bad requests (curl) and
//! graceful shutdown.

use std::time::Duration;

use protolab_server::Protocol;
use protolab_test_support::{run, run_json, Background, Peer, TestLab};

use crate::PEER_LIMIT;

const MAX_MESSAGE: usize = 256 << 10;

async fn lab() -> TestLab {
    TestLab::start(&[Protocol::Grpc], |c| {
        c.limits.grpc_max_message_bytes = MAX_MESSAGE;
    })
    .await
}

/// Arguments selecting h2c (no CA) or TLS (the lab's CA, by the certificate's name).
fn transports(lab: &TestLab) -> [(&'static str, Vec<String>); 2] {
    let port = lab.port(Protocol::Grpc);
    let ca = lab.ca.to_string_lossy().into_owned();
    [
        ("h2c", vec![format!("127.0.0.1:{port}")]),
        (
            "tls",
            vec![format!("localhost:{port}"), "--cafile".into(), ca],
        ),
    ]
}

async fn client(command: &str, target: &[String], extra: &[&str]) -> serde_json::Value {
    let mut args: Vec<&str> = vec![command];
    args.extend(target.iter().map(String::as_str));
    args.extend_from_slice(extra);
    run_json(Peer::PythonGrpc.command(args), PEER_LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_gets_unary_echo_bidi_echo_in_order_and_push_over_h2c_and_tls() {
    let lab = lab().await;
    for (transport, target) in transports(&lab) {
        let unary = client("echo", &target, &["--size", "1000"]).await;
        assert_eq!(unary["code"], "OK", "{transport}: {unary}");
        assert_eq!(unary["echoed_ok"], true, "{transport}: {unary}");

        let bidi = client("stream", &target, &["--count", "500", "--size", "100"]).await;
        assert_eq!(bidi["code"], "OK", "{transport}: {bidi}");
        assert_eq!(bidi["received"], 500, "{transport}: {bidi}");
        assert_eq!(bidi["in_order"], true, "{transport}: {bidi}");

        let push = client("push", &target, &["--interval-ms", "50", "--count", "5"]).await;
        assert_eq!(push["code"], "OK", "{transport}: {push}");
        assert_eq!(
            push["seqs"],
            serde_json::json!([1, 2, 3, 4, 5]),
            "{transport}: {push}"
        );
        let gaps: Vec<u64> = push["gaps_ms"]
            .as_array()
            .expect("gaps")
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .collect();
        assert_eq!(gaps.len(), 4, "{transport}: {push}");
        // The server's timer paces them (send times, read from the messages): never a burst,
        // never far apart.
        assert!(
            gaps.iter().all(|&g| (45..=1000).contains(&g)),
            "{transport}: push gaps {gaps:?} for a 50 ms interval"
        );
    }
    // Browsers and gRPC clients resolve `localhost` to ::1 first: the app listens there too.
    let v6 = [format!("[::1]:{}", lab.port(Protocol::Grpc))];
    let unary = client("echo", &v6, &[]).await;
    assert_eq!(unary["code"], "OK", "h2c on ::1: {unary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_refuses_an_interval_out_of_bounds() {
    let lab = lab().await;
    let [(_, target), _] = transports(&lab);
    let push = client("push", &target, &["--interval-ms", "1", "--count", "3"]).await;
    assert_eq!(push["code"], "INVALID_ARGUMENT", "{push}");
    assert!(
        push["details"]
            .as_str()
            .unwrap_or("")
            .contains("10 to 3600000 ms"),
        "{push}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_lab_service_over_h2c_and_tls() {
    let lab = lab().await;
    for (transport, target) in transports(&lab) {
        let listed = client("reflect", &target, &[]).await;
        assert_eq!(listed["code"], "OK", "{transport}: {listed}");
        let services = listed["services"].as_array().expect("services");
        assert!(
            services.iter().any(|s| s == "protolab.lab.v1.Lab"),
            "{transport}: {listed}"
        );
        assert_eq!(
            listed["methods"],
            serde_json::json!(["Echo", "EchoStream", "Push"]),
            "{transport}: {listed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_gets_resource_exhausted_while_another_client_is_served() {
    let lab = lab().await;
    let [(_, target), _] = transports(&lab);
    let mut args = vec!["stream".to_owned()];
    args.extend(target.iter().cloned());
    args.extend(["--count", "60", "--pause", "0.05"].map(String::from));
    let streaming = Background::spawn(Peer::PythonGrpc.command(args));

    // The payload's field tag and length make the message a few bytes longer than it.
    let too_big = MAX_MESSAGE.to_string();
    let refused = client("echo", &target, &["--size", &too_big]).await;
    assert_eq!(refused["code"], "RESOURCE_EXHAUSTED", "{refused}");
    let fits = (MAX_MESSAGE - 16).to_string();
    let served = client("echo", &target, &["--size", &fits]).await;
    assert_eq!(served["code"], "OK", "{served}");
    assert_eq!(served["echoed_ok"], true, "{served}");

    let mut streaming = streaming;
    let done = streaming.next_json(PEER_LIMIT).await;
    assert_eq!(done["code"], "OK", "{done}");
    assert_eq!(done["received"], 60, "{done}");
    assert_eq!(done["in_order"], true, "{done}");
}

/// Runs curl with HTTP/2 prior knowledge against the Echo method; returns headers and
/// trailers as curl dumped them, lowercased.
async fn curl_h2c(port: u16, content_type: &str, body: &str) -> String {
    curl_h2c_path(port, "/protolab.lab.v1.Lab/Echo", content_type, body).await
}

async fn curl_h2c_path(port: u16, path: &str, content_type: &str, body: &str) -> String {
    let url = format!("http://127.0.0.1:{port}{path}");
    let ct = format!("content-type: {content_type}");
    let cmd = Peer::Curl.command([
        "-sS",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-H",
        &ct,
        "-H",
        "te: trailers",
        "--data-binary",
        body,
        &url,
    ]);
    let out = run(cmd, PEER_LIMIT).await;
    assert!(
        out.status.success(),
        "curl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    // grpc-message is percent-encoded; the few characters the lab's messages use.
    String::from_utf8_lossy(&out.stdout)
        .to_lowercase()
        .replace("%20", " ")
        .replace("%60", "`")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_status_and_the_app_keeps_serving() {
    let lab = lab().await;
    let port = lab.port(Protocol::Grpc);

    let not_grpc = curl_h2c(port, "text/plain", "hello").await;
    assert!(not_grpc.starts_with("http/2 415"), "{not_grpc}");
    assert!(not_grpc.contains("grpc-status: 3"), "{not_grpc}");
    assert!(
        not_grpc.contains("content-type `text/plain` is not grpc"),
        "{not_grpc}"
    );

    // 'g' (0x67) where the compression flag must be 0 or 1.
    let garbage = curl_h2c(port, "application/grpc", "garbage that is no gRPC frame").await;
    assert!(garbage.starts_with("http/2 200"), "{garbage}");
    assert!(garbage.contains("grpc-status: 13"), "{garbage}");
    assert!(garbage.contains("compression flag"), "{garbage}");

    // HTTP/1.1 is refused at the connection's start, without an answer that could be taken
    // for a gRPC one, and promptly.
    let http1 = run(
        Peer::Curl.command([
            "-sS",
            "--http1.1",
            "-m",
            "10",
            &format!("http://127.0.0.1:{port}/"),
        ]),
        PEER_LIMIT,
    )
    .await;
    assert!(!http1.status.success(), "HTTP/1.1 was served");

    // The lab's methods and the rest take different routes: an unknown method on either
    // side is UNIMPLEMENTED, not a hang or an HTTP error.
    for path in ["/protolab.lab.v1.Lab/NoSuchMethod", "/no.such.Service/Echo"] {
        let unknown = curl_h2c_path(port, path, "application/grpc", "").await;
        assert!(unknown.starts_with("http/2 200"), "{path}: {unknown}");
        assert!(unknown.contains("grpc-status: 12"), "{path}: {unknown}");
    }

    let [(_, target), _] = transports(&lab);
    let still = client("echo", &target, &[]).await;
    assert_eq!(still["code"], "OK", "{still}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_push_streams_with_unavailable() {
    let lab = lab().await;
    let [(_, target), (_, tls_target)] = transports(&lab);
    let mut pushed = Vec::new();
    for target in [&target, &tls_target] {
        let mut args = vec!["push".to_owned()];
        args.extend(target.iter().cloned());
        args.extend(["--interval-ms", "100", "--count", "0", "--lines"].map(String::from));
        let mut peer = Background::spawn(Peer::PythonGrpc.command(args));
        assert_eq!(peer.next_json(PEER_LIMIT).await["seq"], 1);
        pushed.push(peer);
    }
    let report = tokio::time::timeout(Duration::from_secs(10), lab.lab.shutdown())
        .await
        .expect("shutdown finishes within the drain timeout");
    assert_eq!(report.dropped, 0, "{report:?}");
    for mut peer in pushed {
        let end = loop {
            let line = peer.next_json(PEER_LIMIT).await;
            if line.get("code").is_some() {
                break line;
            }
        };
        assert_eq!(end["code"], "UNAVAILABLE", "{end}");
        assert!(
            end["details"]
                .as_str()
                .unwrap_or("")
                .contains("shutting down"),
            "{end}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_in_a_stream_ends_that_stream_with_resource_exhausted() {
    let lab = lab().await;
    let [(_, target), _] = transports(&lab);
    let size = MAX_MESSAGE.to_string();
    let ended = client("stream", &target, &["--count", "2", "--size", &size]).await;
    assert_eq!(ended["code"], "RESOURCE_EXHAUSTED", "{ended}");
    assert_eq!(ended["received"], 0, "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_completes_the_http2_preface_is_closed_at_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let lab = TestLab::start(&[Protocol::Grpc], |c| {
        c.limits.handshake_timeout = Duration::from_millis(500);
    })
    .await;
    let port = lab.port(Protocol::Grpc);
    // Silent, then part of the preface (its first 16 of 24 bytes).
    for sent in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        tcp.write_all(sent).await.expect("write");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "a peer that sent {sent:?} was still connected 5 s after a 500 ms handshake timeout"
        );
    }
    // A complete client is unaffected by the short timeout.
    let [(_, target), _] = transports(&lab);
    let served = client("echo", &target, &[]).await;
    assert_eq!(served["code"], "OK", "{served}");
}

//! The SSE app's limits with real peers: a client that never reads stays bounded while others
//! are served, streams count against the connection limit, and shutdown ends streams and held
//! long polls at once.

use std::time::{Duration, Instant};

use protolab_server::Protocol;
use protolab_test_support::{run, run_json, Peer, TestLab};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::sse::{assert_consecutive, base, curl_events};
use crate::PEER_LIMIT;

/// Opens `/events` on a socket with a small receive buffer, reads up to the hello event and
/// returns the socket (never to be read again) and the stream id.
async fn stalled_reader(port: u16) -> (tokio::net::TcpStream, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut tcp = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    tcp.write_all(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let text = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
            .await
            .expect("hello within 5 s")
            .expect("read");
        assert!(n > 0, "closed before hello");
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.contains("event: hello\n")
            && text
                .split("event: hello\n")
                .nth(1)
                .is_some_and(|r| r.contains("\n\n"))
        {
            break text;
        }
    };
    let id = text
        .split(r#""stream":""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("stream id in hello")
        .to_string();
    (tcp, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_bounded_while_others_are_served() {
    let write_timeout = Duration::from_secs(1);
    let lab = TestLab::start(&[Protocol::Sse], |c| {
        c.push_interval = Duration::from_millis(50);
        c.limits.write_timeout = write_timeout;
    })
    .await;
    let port = lab.port(Protocol::Sse);
    let (stalled, id) = stalled_reader(port).await;
    assert_eq!(lab.lab.sse_streams(), 1);

    // Meanwhile a reading client, and megabyte echoes aimed at the one that does not read.
    let url = format!("{}/events", base(&lab, Protocol::Sse));
    let healthy = curl_events(&lab, &url, 4.0, &[]);
    let flood = async {
        let cmd = Peer::PythonSse.command([
            "flood",
            &base(&lab, Protocol::Sse),
            "--stream",
            &id,
            "--size",
            &(1 << 20).to_string(),
            "--max-posts",
            "300",
        ]);
        let result = run_json(cmd, PEER_LIMIT).await;
        let held = lab.lab.buffered_bytes();
        (result, held)
    };
    let ((_, healthy), (flood, held_after_flood)) = tokio::join!(healthy, flood);

    // The echo queue filled (503) or the stalled stream was already cut off (404): either way
    // the POSTs stopped being taken long before 300 MiB were.
    let last = flood["last_status"].as_u64();
    assert!(matches!(last, Some(503 | 404)), "{flood}");
    assert!(flood["statuses"]["202"].as_u64() < Some(100), "{flood}");
    // Queued echoes are charged to the budget: at most the 32-event queue of 1 MiB bodies.
    assert!(
        held_after_flood <= 33 << 20,
        "{held_after_flood} bytes held"
    );

    // After the write timeout the stalled stream is gone, with everything it held.
    let deadline = Instant::now() + write_timeout + Duration::from_secs(5);
    while lab.lab.sse_streams() > 0 || lab.lab.buffered_bytes() > 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled stream was not cut off: {} streams, {} bytes held",
            lab.lab.sse_streams(),
            lab.lab.buffered_bytes()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stalled);
    // The reader was served all along: every push, in order, about one per 50 ms.
    let seqs = healthy.push_seqs();
    assert!(seqs.len() >= 40, "the reading client got only {seqs:?}");
    assert_consecutive(&seqs, "the reading client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_count_against_the_connection_limit() {
    let lab = TestLab::start(&[Protocol::Sse, Protocol::Https], |c| {
        c.limits.max_connections = 1;
    })
    .await;
    let (_held, _) = stalled_reader(lab.port(Protocol::Sse)).await;
    let ca = lab.ca.to_string_lossy().into_owned();
    let url = format!("{}/events", base(&lab, Protocol::Https));
    let out = run(
        Peer::Curl.command(["-sS", "--cacert", &ca, "-w", "\n%{http_code}", &url]),
        PEER_LIMIT,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("503") && text.contains("1 event streams are open"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_streams_and_held_long_polls_at_once() {
    let lab = TestLab::start(&[Protocol::Sse, Protocol::Https], |c| {
        // No push comes while the test runs: the long poll is still held at shutdown.
        c.push_interval = Duration::from_secs(60);
        c.limits.drain_timeout = Duration::from_secs(20);
    })
    .await;
    let ca = lab.ca.to_string_lossy().into_owned();
    let mut clients = Vec::new();
    for protocol in [Protocol::Sse, Protocol::Https] {
        let url = format!("{}/events", base(&lab, protocol));
        let cmd = Peer::Curl.command(["-N", "-sS", "--cacert", &ca, "--max-time", "30", &url]);
        clients.push(tokio::spawn(run(cmd, PEER_LIMIT)));
    }
    let long_url = format!("{}/poll/long?timeout_ms=30000", base(&lab, Protocol::Sse));
    let cmd = Peer::Curl.command([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "30",
        &long_url,
    ]);
    let long_poll = tokio::spawn(run(cmd, PEER_LIMIT));
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.lab.sse_streams() < 2 || lab.lab.open_connections() < 3 {
        assert!(Instant::now() < deadline, "streams did not open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let began = Instant::now();
    let report = lab.lab.shutdown().await;
    let took = began.elapsed();
    assert_eq!(report.dropped, 0, "{report:?}");
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    for client in clients {
        let out = client.await.expect("curl task");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(
            text.trim_end().ends_with(": the lab is shutting down"),
            "{text}"
        );
    }
    let out = long_poll.await.expect("curl task");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204", "{out:?}");
}

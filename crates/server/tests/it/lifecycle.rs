//! Start-up and shutdown: taken ports, WebSockets closed with 1001, nothing left listening.

use std::time::Duration;

use protolab_server::{Error, Lab, LabConfig, Protocol};
use protolab_test_support::{Background, Peer, TestLab};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_with_1001_and_stops_listening() {
    let lab = TestLab::start(&[Protocol::Ws, Protocol::Wss, Protocol::Http], |_| {}).await;
    let ca = lab.ca.to_string_lossy().into_owned();
    let ws_port = lab.port(Protocol::Ws);
    let http_port = lab.port(Protocol::Http);
    let mut holders = Vec::new();
    for protocol in [Protocol::Ws, Protocol::Wss] {
        let url = lab.url(protocol);
        let mut peer = Background::spawn(Peer::PythonWs.command(["hold", &url, "--cafile", &ca]));
        assert_eq!(
            peer.next_json(Duration::from_secs(15)).await["connected"],
            true
        );
        holders.push(peer);
    }
    // An idle keep-alive HTTP connection must not hold shutdown up either.
    let mut idle_http = TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    wait_for_open(&lab, 3).await;

    let report = lab.lab.shutdown().await;
    assert_eq!(report.open_at_start, 3);
    assert_eq!(
        report.dropped, 0,
        "every connection closed within the drain timeout"
    );

    for mut peer in holders {
        let closed = peer.next_json(Duration::from_secs(10)).await;
        assert_eq!(closed["close_code"], 1001, "{closed}");
        assert_eq!(closed["close_reason"], "server shutting down", "{closed}");
        assert!(peer.wait(Duration::from_secs(10)).await.success());
    }
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(2), idle_http.read_to_end(&mut rest)).await;
    assert!(matches!(n, Ok(Ok(0))), "idle HTTP connection closed: {n:?}");
    for port in [ws_port, http_port] {
        let refused = TcpStream::connect(("127.0.0.1", port)).await;
        assert!(refused.is_err(), "port {port} still accepts after shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_an_error_naming_it_and_nothing_starts() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let config = LabConfig {
        apps: vec![(Protocol::Http, 0), (Protocol::Ws, taken)],
        ..LabConfig::default()
    };
    let err = Lab::start(config).await.expect_err("port is taken");
    assert!(
        matches!(err, Error::PortInUse { port, protocol: Protocol::Ws, .. } if port == taken),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("port {taken}")) && message.contains("already in use"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_protocols_without_a_certificate_are_refused() {
    let config = LabConfig {
        apps: vec![(Protocol::Wss, 0)],
        tls: None,
        ..LabConfig::default()
    };
    let err = Lab::start(config).await.expect_err("no TLS config");
    assert!(matches!(err, Error::MissingTls(Protocol::Wss)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_websockets_are_pinged_then_closed_but_answering_ones_stay() {
    use protolab_test_support::RawWs;
    use protolab_wire::ws::Message;

    let idle = Duration::from_millis(1200);
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.limits.idle_timeout = idle;
        c.push_interval = Duration::from_secs(3600);
    })
    .await;
    let url = lab.url(Protocol::Ws);
    // Python websockets answers pings by itself, so the server keeps hearing from it.
    let mut answering = Background::spawn(Peer::PythonWs.command(["hold", &url]));
    assert_eq!(
        answering.next_json(Duration::from_secs(15)).await["connected"],
        true
    );

    // A raw client that never answers: a ping after half the idle timeout, then 1001.
    let mut silent = RawWs::connect(lab.port(Protocol::Ws)).await;
    let first = silent.next_message(idle * 2).await;
    assert!(
        matches!(first, Message::Ping(_)),
        "expected a keepalive ping, got {first:?}"
    );
    assert_eq!(silent.close_code(idle * 3).await, 1001);
    drop(silent);

    // Two idle periods later the answering client is still connected.
    tokio::time::sleep(idle * 2).await;
    wait_for_open(&lab, 1).await;
    let report = lab.lab.shutdown().await;
    assert_eq!(report.open_at_start, 1);
    assert_eq!(
        answering.next_json(Duration::from_secs(10)).await["close_code"],
        1001
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_wait_until_one_closes() {
    use protolab_test_support::RawWs;

    let lab = TestLab::start(&[Protocol::Ws], |c| c.limits.max_connections = 2).await;
    let port = lab.port(Protocol::Ws);
    let first = RawWs::connect(port).await;
    let _second = RawWs::connect(port).await;
    let third = tokio::spawn(RawWs::connect(port));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served over the limit of 2"
    );
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a slot freed")
        .expect("upgrade");
    drop(third);
}

/// Waits (bounded) until the lab counts `n` open connections: accepts and closes happen on the
/// server's own schedule, a moment after the client's side of them.
async fn wait_for_open(lab: &TestLab, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while lab.lab.open_connections() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} open connections, the lab has {}",
            lab.lab.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A burst of connections larger than the standard library's listen backlog (128) waits in
/// the kernel's accept queue, even while the lab accepts none of them: every handshake
/// completes at once instead of being dropped and retried a second later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_in_the_backlog_instead_of_being_dropped() {
    const BURST: usize = 600;
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("reading net.core.somaxconn")
        .trim()
        .parse()
        .expect("net.core.somaxconn is a number");
    assert!(
        somaxconn > BURST,
        "net.core.somaxconn is {somaxconn}: raise it above {BURST} (sysctl -w net.core.somaxconn=4096) to run this test"
    );
    let lab = TestLab::start(&[Protocol::Http], |config| {
        config.limits.max_connections = 1;
    })
    .await;
    let port = lab.port(Protocol::Http);
    // The one slot is taken, so the lab accepts nothing more until this closes.
    let _held = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    wait_for_open(&lab, 1).await;

    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        connects.spawn(tokio::time::timeout(
            Duration::from_secs(2),
            TcpStream::connect(("127.0.0.1", port)),
        ));
    }
    let mut completed = 0;
    let mut open = Vec::with_capacity(BURST);
    while let Some(joined) = connects.join_next().await {
        if let Ok(Ok(stream)) = joined.expect("connect task") {
            completed += 1;
            open.push(stream);
        }
    }
    assert_eq!(
        completed,
        BURST,
        "handshakes completed while the lab accepted nothing (backlog {})",
        protolab_server::LISTEN_BACKLOG
    );
}

/// A peer that never answers the 1001 close frame holds shutdown up only until the drain
/// timeout; then it is dropped (its socket closed), on the event loop and as a task alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_ignores_the_close_is_dropped_at_the_drain_timeout() {
    for runtime in [
        protolab_server::WsRuntime::EventLoop,
        protolab_server::WsRuntime::Tasks,
    ] {
        let lab = TestLab::start(&[Protocol::Ws], |c| {
            c.limits.drain_timeout = Duration::from_millis(700);
            c.limits.close_timeout = Duration::from_secs(60);
            c.ws_runtime = runtime;
        })
        .await;
        let mut raw = protolab_test_support::RawWs::connect(lab.port(Protocol::Ws)).await;
        wait_for_open(&lab, 1).await;
        let started = std::time::Instant::now();
        let report = lab.lab.shutdown().await;
        let took = started.elapsed();
        assert_eq!(report.dropped, 1, "{runtime:?}");
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_secs(5),
            "{runtime:?}: shutdown took {took:?}"
        );
        // The close frame came, then the socket closed without waiting for our answer.
        assert_eq!(
            raw.close_code(Duration::from_secs(5)).await,
            1001,
            "{runtime:?}"
        );
        let mut rest = Vec::new();
        let eof =
            tokio::time::timeout(Duration::from_secs(5), raw.stream.read_to_end(&mut rest)).await;
        assert!(
            eof.is_ok(),
            "{runtime:?}: the dropped connection was not closed"
        );
    }
}

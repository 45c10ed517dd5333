//! The HTTP/2 and gRPC client (`h2`, `h2c`, `grpc`, `grpcs` URLs) against real servers: the
//! lab's HTTP/2 and gRPC apps (TestLab, on ports the system picks), nghttpd `--echo-upload`
//! and a grpcio server (tests/peers/grpc_echo_server.py). Byte counts are checked against a
//! tshark capture of the same run; failing servers (a grpc-status other than 0, a GOAWAY)
//! must be counted as errors.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use protolab_load::{run, Config, ErrorKind, Report, Target, Trust, Workload};
use protolab_server::Protocol;
use protolab_test_support::{free_port, repo_root, require, Background, TestLab, TsharkCapture};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::process::Command as Process;

async fn load(url: &str, workload: Workload, messages: u64, trust: Option<&Path>) -> Report {
    let mut config = Config::new(Target::parse(url).unwrap());
    config.workload = workload;
    config.max_messages = messages;
    config.duration = Duration::from_secs(20);
    config.connections = 2;
    if let Some(ca) = trust {
        config.trust = Trust::Roots(protolab_tls::Roots::new().with_ca_file(ca).unwrap());
    }
    run(config).await.unwrap()
}

/// TCP payload bytes to and from `port` in `capture`: (client to server, server to client).
fn tcp_payload(capture: &Path, port: u16) -> (u64, u64) {
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .arg("-r")
        .arg(capture)
        .args(["-T", "fields", "-e", "tcp.dstport", "-e", "tcp.len"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut to_server, mut to_client) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.split('\t');
        let dst: u16 = fields.next().unwrap().parse().unwrap();
        let len: u64 = fields.next().unwrap().parse().unwrap();
        if dst == port {
            to_server += len;
        } else {
            to_client += len;
        }
    }
    (to_server, to_client)
}

fn assert_clean(report: &Report, messages: u64) {
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!(report.messages, messages, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_against_the_lab_counts_what_a_capture_shows() {
    let lab = TestLab::start(&[Protocol::H2, Protocol::Grpc], |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    for (scheme, protocol) in [("h2c", Protocol::H2), ("grpc", Protocol::Grpc)] {
        let port = lab.port(protocol);
        let file = dir.path().join(format!("{scheme}.pcapng"));
        let capture = TsharkCapture::start(&format!("tcp port {port}"), &file);
        let report = load(
            &format!("{scheme}://127.0.0.1:{port}/"),
            Workload::Echo,
            200,
            None,
        )
        .await;
        capture.stop();
        assert_clean(&report, 200);
        let (to_server, to_client) = tcp_payload(&file, port);
        println!(
            "{scheme}: sent {} received {} per message; capture {to_server}/{to_client}, counted {}/{}",
            report.bytes.sent_per_message.unwrap(),
            report.bytes.received_per_message.unwrap(),
            report.bytes.total_sent,
            report.bytes.total_received
        );
        // Counted to the server's FIN: its answering GOAWAY (17 bytes) included.
        assert_eq!(
            report.bytes.total_sent, to_server,
            "{scheme}: counted bytes sent differ from the capture's TCP payload"
        );
        assert_eq!(
            report.bytes.total_received, to_client,
            "{scheme}: counted bytes received differ from the capture's TCP payload"
        );
        // A steady echo of 32 bytes: request HEADERS (9-byte frame header, HPACK block of
        // indexed fields once the dynamic table holds them) and one DATA frame (9 + 32, gRPC:
        // 9 + 5 prefix + 2 protobuf field header + 32); the answer the same plus, for gRPC,
        // a trailers HEADERS frame. So at least 9 + 1 + 9 + 32 = 51 bytes each way.
        let sent = report.bytes.sent_per_message.unwrap();
        let received = report.bytes.received_per_message.unwrap();
        let grpc_extra = if scheme == "grpc" { 7.0 } else { 0.0 };
        assert!(
            sent >= 51.0 + grpc_extra && sent < 200.0,
            "{scheme}: {sent}"
        );
        assert!(
            received >= 51.0 + grpc_extra && received < 200.0,
            "{scheme}: {received}"
        );
    }
}

/// Relays connections on a port of its own to `upstream`, holding every byte the server sends
/// back for `delay`, and the client's FIN for half of it. A server that reads the client's
/// GOAWAY before its FIN answers with a GOAWAY of its own (as the lab's does when busy); here
/// it always does, and that answer reaches the client well after the client shut its side.
async fn slow_answers(upstream: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                .await
                .unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                tokio::time::sleep(delay / 2).await;
                let _ = server_write.shutdown().await;
            });
            let (chunks, mut due) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = server_read.read(&mut buf).await.unwrap_or(0);
                    let at = tokio::time::Instant::now() + delay;
                    // An empty chunk stands for the server's FIN.
                    if chunks.send((at, buf[..n].to_vec())).is_err() || n == 0 {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                while let Some((at, chunk)) = due.recv().await {
                    tokio::time::sleep_until(at).await;
                    if chunk.is_empty() || client_write.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                let _ = client_write.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_closing_goaway_is_counted_up_to_the_fin() {
    let lab = TestLab::start(&[Protocol::H2], |_| {}).await;
    // Well inside the 200 ms a run gives each connection to close.
    let port = slow_answers(lab.port(Protocol::H2), Duration::from_millis(40)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.pcapng");
    let capture = TsharkCapture::start(&format!("tcp port {port}"), &file);
    let report = load(
        &format!("h2c://127.0.0.1:{port}/"),
        Workload::Echo,
        20,
        None,
    )
    .await;
    capture.stop();
    assert_clean(&report, 20);
    let (to_server, to_client) = tcp_payload(&file, port);
    assert_eq!(report.bytes.total_sent, to_server);
    // Without reading to the FIN, the server's GOAWAY (17 bytes each) goes uncounted.
    assert_eq!(
        report.bytes.total_received, to_client,
        "counted {} bytes received, the capture's TCP payload {to_client}",
        report.bytes.total_received
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_connect_against_the_lab() {
    let lab = TestLab::start(&[Protocol::H2, Protocol::Grpc], |_| {}).await;
    for (scheme, protocol) in [("h2", Protocol::H2), ("grpcs", Protocol::Grpc)] {
        let url = format!("{scheme}://localhost:{}/", lab.port(protocol));
        let echo = load(&url, Workload::Echo, 50, Some(&lab.ca)).await;
        assert_clean(&echo, 50);
        assert!(echo.bytes.handshake_sent_per_connection.unwrap() > 24.0);
        let connect = load(&url, Workload::Connect, 10, Some(&lab.ca)).await;
        assert_clean(&connect, 10);
        assert_eq!(connect.connections_opened, 10, "{connect:?}");
        assert!(connect.phases.tls_handshake.is_some(), "{connect:?}");
    }
    let url = format!("h2c://127.0.0.1:{}/", lab.port(Protocol::H2));
    let connect = load(&url, Workload::Connect, 10, None).await;
    assert_clean(&connect, 10);
    // The 24-byte client preface goes out before the first request.
    assert_eq!(connect.bytes.handshake_sent_per_connection, Some(24.0));
    println!(
        "h2c connect: round trips to first echo {:?}",
        connect.round_trips_to_first_echo
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_against_nghttpd() {
    let port = free_port();
    let docroot = tempfile::tempdir().unwrap();
    let mut cmd = Process::new(require("nghttpd", "apt-get install -y nghttp2-server"));
    cmd.args(["--no-tls", "--echo-upload", "-a", "127.0.0.1", "-d"])
        .arg(docroot.path())
        .arg(port.to_string())
        .kill_on_drop(true);
    let _server = Background::spawn(cmd);
    let url = format!("h2c://127.0.0.1:{port}/echo");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "nghttpd did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = load(&url, Workload::Echo, 100, None).await;
    assert_clean(&report, 100);
    let connect = load(&url, Workload::Connect, 10, None).await;
    assert_clean(&connect, 10);
}

async fn grpc_server(args: &[&str]) -> (Background, u16) {
    let mut cmd = Process::new(require("python3", "apt-get install -y python3"));
    cmd.arg(repo_root().join("tests/peers/grpc_echo_server.py"))
        .args(args)
        .kill_on_drop(true);
    let mut server = Background::spawn(cmd);
    let hello = server.next_json(Duration::from_secs(20)).await;
    let port = hello["port"].as_u64().expect("the server prints its port");
    (server, u16::try_from(port).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_against_grpcio_and_its_failures() {
    let (_server, port) = grpc_server(&[]).await;
    let report = load(
        &format!("grpc://127.0.0.1:{port}/"),
        Workload::Echo,
        100,
        None,
    )
    .await;
    assert_clean(&report, 100);

    let (_failing, port) = grpc_server(&["--fail", "UNAVAILABLE"]).await;
    let report = load(
        &format!("grpc://127.0.0.1:{port}/"),
        Workload::Echo,
        10,
        None,
    )
    .await;
    assert_eq!(report.messages, 0, "{report:?}");
    assert!(report.errors.protocol > 0, "{:?}", report.errors);
    let first = report.errors.first.unwrap_or_default();
    assert!(
        first.contains("grpc-status 14") && first.contains("told to fail"),
        "{first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goaway_is_counted_as_the_server_closing() {
    // A server that answers the preface with its SETTINGS and a GOAWAY (PROTOCOL_ERROR).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if socket.read_exact(&mut preface).await.is_err() {
                    return;
                }
                let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
                // length 8, type 7 (GOAWAY), stream 0, last stream 0, error 1.
                let goaway = [0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                let _ = socket.write_all(&settings).await;
                let _ = socket.write_all(&goaway).await;
                let mut sink = [0u8; 1024];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    let mut config = Config::new(Target::parse(&format!("h2c://127.0.0.1:{port}/")).unwrap());
    config.duration = Duration::from_millis(500);
    config.max_messages = 5;
    let report = run(config).await.unwrap();
    assert_eq!(report.messages, 0, "{report:?}");
    assert!(
        report.errors.total() > 0
            && report.errors.total() == report.errors.count(ErrorKind::Closed),
        "{:?}",
        report.errors
    );
    let first = report.errors.first.unwrap_or_default();
    assert!(first.contains("GOAWAY"), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanin_multiplexes_on_one_connection_for_http2_only() {
    let lab = TestLab::start(&[Protocol::Http, Protocol::H2, Protocol::Grpc], |_| {}).await;
    // Plain HTTP gets a budget its first connections cannot use up before the last one has
    // opened: with 400, two workers once answered all of it in 5 ms while six were connecting.
    for (url, connections, messages) in [
        (
            format!("h2c://127.0.0.1:{}/", lab.port(Protocol::H2)),
            1,
            400,
        ),
        (
            format!("grpc://127.0.0.1:{}/", lab.port(Protocol::Grpc)),
            1,
            400,
        ),
        (
            format!("http://127.0.0.1:{}/", lab.port(Protocol::Http)),
            8,
            20_000,
        ),
    ] {
        let mut config = Config::new(Target::parse(&url).unwrap());
        config.workload = Workload::Fanin;
        config.connections = 8;
        config.max_messages = messages;
        config.duration = Duration::from_secs(20);
        let report = run(config).await.unwrap();
        assert_clean(&report, messages);
        assert_eq!(report.connections_opened, connections, "{url}: {report:?}");
        assert!(report.latency.is_some() && report.bytes.sent_per_message.is_some());
        println!(
            "{url} fanin 8: {:.0} msg/s, sent {:?} received {:?} per message",
            report.throughput_per_sec,
            report.bytes.sent_per_message,
            report.bytes.received_per_message
        );
    }
    let mut config = Config::new(Target::parse("ws://127.0.0.1:1/ws").unwrap());
    config.workload = Workload::Fanin;
    assert!(run(config).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanin_charges_the_settings_exchange_to_the_connection_not_the_messages() {
    let lab = TestLab::start(&[Protocol::H2, Protocol::Grpc], |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    for (scheme, protocol) in [("h2c", Protocol::H2), ("grpc", Protocol::Grpc)] {
        let port = lab.port(protocol);
        let url = format!("{scheme}://127.0.0.1:{port}/");
        // Few messages, so the SETTINGS frames and their ACKs (about 60 bytes) would move
        // the per-message figures by whole bytes.
        let mut config = Config::new(Target::parse(&url).unwrap());
        config.workload = Workload::Fanin;
        config.connections = 4;
        config.max_messages = 21;
        config.duration = Duration::from_secs(20);
        let file = dir.path().join(format!("{scheme}-fanin.pcapng"));
        let capture = TsharkCapture::start(&format!("tcp port {port}"), &file);
        let fanin = run(config).await.unwrap();
        capture.stop();
        assert_clean(&fanin, 21);
        let (to_server, to_client) = tcp_payload(&file, port);
        assert_eq!(
            (fanin.bytes.total_sent, fanin.bytes.total_received),
            (to_server, to_client),
            "{scheme}: counted totals, then the capture's TCP payload"
        );
        // One connection, one stream at a time: echo's steady exchanges carry the same
        // frames as fanin's interleaved ones, and no SETTINGS.
        let mut config = Config::new(Target::parse(&url).unwrap());
        config.workload = Workload::Echo;
        config.connections = 1;
        config.max_messages = 21;
        config.duration = Duration::from_secs(20);
        let echo = run(config).await.unwrap();
        assert_clean(&echo, 21);
        for (what, fanin, echo) in [
            (
                "sent",
                fanin.bytes.sent_per_message.unwrap(),
                echo.bytes.sent_per_message.unwrap(),
            ),
            (
                "received",
                fanin.bytes.received_per_message.unwrap(),
                echo.bytes.received_per_message.unwrap(),
            ),
        ] {
            println!("{scheme}: {what} per message: fanin {fanin:.2} B, echo {echo:.2} B");
            assert!(
                (fanin - echo).abs() < 0.5,
                "{scheme}: fanin {what} {fanin:.2} B per message, echo {echo:.2} B"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_push_times_the_lab_server_stream() {
    let lab = TestLab::start(&[Protocol::Grpc], |_| {}).await;
    for scheme in ["grpc", "grpcs"] {
        let url = format!("{scheme}://localhost:{}/", lab.port(Protocol::Grpc));
        let mut config = Config::new(Target::parse(&url).unwrap());
        config.workload = Workload::Push;
        config.push_interval = Duration::from_millis(10);
        config.connections = 2;
        config.max_messages = 60;
        config.duration = Duration::from_secs(20);
        config.trust = Trust::Roots(protolab_tls::Roots::new().with_ca_file(&lab.ca).unwrap());
        let report = run(config).await.unwrap();
        assert_clean(&report, 60);
        let latency = report.latency.unwrap();
        // Same machine, same clock: a push is late by the machine's scheduling, not seconds;
        // unix_ms has 1 ms resolution.
        assert!(latency.p50_us < 100_000.0, "{latency:?}");
        // PushMessage {seq, unix_ms}: two varint fields behind the 5-byte prefix.
        let payload = report.bytes.payload_received_per_message.unwrap();
        assert!((5.0..=25.0).contains(&payload), "{payload}");
        println!(
            "{scheme} push: p50 {} µs, received {:?} B per push",
            latency.p50_us, report.bytes.received_per_message
        );
    }
    let mut config = Config::new(Target::parse("h2c://127.0.0.1:1/").unwrap());
    config.workload = Workload::Push;
    assert!(run(config).await.is_err(), "push needs ws or gRPC");
}

//! The `ws-floor` peer of `protolab-bench hub` (`bench-peer-fanout-floor`) serves the bench's
//! own subscriber load: three subscribers on `/connection/ws`, publications on `/notifs`, and
//! every subscriber gets every one. Bad requests get an answer and leave the server serving.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::Duration;

use protolab_bench::fanout_client::{self, Config, Wire};
use protolab_bench::process::{free_port, Ready, Server, TempDir};

const SUBSCRIBERS: usize = 3;
const PUBLISHES: u32 = 2;
const BURST: u32 = 3;
const MAX_HEADER_BYTES: usize = 1024;

fn start_floor(dir: &TempDir) -> (Server, u16) {
    let port = free_port().expect("a free port");
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--max-connections",
        "100",
        "--max-header-bytes",
        &MAX_HEADER_BYTES.to_string(),
    ]
    .map(String::from)
    .into();
    let server = Server::start(
        "ws-floor",
        Path::new(env!("CARGO_BIN_EXE_bench-peer-fanout-floor")),
        &args,
        dir.path(),
        port,
        Ready::Line("listening"),
    )
    .expect("starting bench-peer-fanout-floor (needs taskset: apt-get install -y util-linux)");
    (server, port)
}

fn fan_out(port: u16, server_pid: u32) -> fanout_client::Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(fanout_client::run(Config {
            port,
            wire: Wire::HubWs,
            subscribers: SUBSCRIBERS,
            publishes: PUBLISHES,
            burst: BURST,
            source_net: 211,
            server_pid,
            throughput: None,
        }))
        .expect("the fan-out load")
}

#[test]
fn every_subscriber_gets_every_publication_from_the_floor() {
    let dir = TempDir::new("fanout-floor-test").expect("temp dir");
    let (mut server, port) = start_floor(&dir);
    let report = fan_out(port, server.pid());
    assert_eq!(report.connected, SUBSCRIBERS, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    let each = SUBSCRIBERS as u64;
    assert_eq!(
        report.latency_received,
        each * u64::from(PUBLISHES),
        "{report:?}"
    );
    assert_eq!(report.burst_received, each * u64::from(BURST), "{report:?}");
    assert_eq!(
        report.min_received_per_subscriber,
        PUBLISHES + BURST,
        "a subscriber did not get every publication: {report:?}"
    );
    assert!(report.p99_ms.is_some_and(|ms| ms > 0.0), "{report:?}");
    assert!(server.is_running(), "{}", server.log_tail());
}

/// Sends `request` and returns the status line of the answer.
fn status_line(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The server may answer and close before it has read everything of an oversized head.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn bad_requests_are_answered_and_the_floor_keeps_serving() {
    let dir = TempDir::new("fanout-floor-bad").expect("temp dir");
    let (mut server, port) = start_floor(&dir);
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        (
            format!("GET /x HTTP/1.1\r\n{host}X: {}\r\n\r\n", "a".repeat(2 * MAX_HEADER_BYTES))
                .into_bytes(),
            "HTTP/1.1 431",
        ),
        (
            format!("GET /notifs HTTP/1.1\r\n{host}\r\n").into_bytes(),
            "HTTP/1.1 400",
        ),
        (
            format!("GET /notifs?msg=%zz HTTP/1.1\r\n{host}\r\n").into_bytes(),
            "HTTP/1.1 400",
        ),
        (
            format!(
                "GET /connection/ws HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            )
            .into_bytes(),
            "HTTP/1.1 426",
        ),
        (
            format!("GET /elsewhere HTTP/1.1\r\n{host}\r\n").into_bytes(),
            "HTTP/1.1 404",
        ),
        (
            format!("GET /notifs?msg=Sok HTTP/1.1\r\n{host}\r\n").into_bytes(),
            "HTTP/1.1 202",
        ),
    ];
    for (request, want) in cases {
        let got = status_line(port, &request);
        assert!(
            got.starts_with(want),
            "{:?}: answered `{got}`, wanted `{want}`",
            String::from_utf8_lossy(&request[..request.len().min(60)])
        );
    }
    let report = fan_out(port, server.pid());
    assert_eq!(
        report.min_received_per_subscriber,
        PUBLISHES + BURST,
        "{report:?}"
    );
    assert!(server.is_running(), "{}", server.log_tail());
}

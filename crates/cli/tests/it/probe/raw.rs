// `--raw` against the plaintext a server of the test's own saw and a capture of the exchange, and the bad servers: one that
// is not HTTP, one that sends garbage after a valid 101, one that never answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use protolab_test_support::{require, run, TsharkCapture};

use super::probe;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: raw\r\n\r\nhello";

/// What one connection's server side read and wrote, in order.
struct Seen {
    read: Vec<u8>,
    written: Vec<u8>,
}

/// Reads one request head, answers [`RESPONSE`], then reads until the client closes.
async fn record<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> Seen {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    while !read.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = io.read(&mut buf).await.unwrap();
        assert!(n > 0, "client closed before its request head ended");
        read.extend_from_slice(&buf[..n]);
    }
    io.write_all(RESPONSE).await.unwrap();
    io.flush().await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => read.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    Seen {
        read,
        written: RESPONSE.to_vec(),
    }
}

/// The bytes of every `direction` chunk of the report's `raw`, joined.
fn raw_bytes(report: &serde_json::Value, direction: &str) -> Vec<u8> {
    let hex: String = report["raw"]
        .as_array()
        .unwrap_or_else(|| panic!("no raw in {report:#}"))
        .iter()
        .filter(|c| c["direction"] == direction)
        .map(|c| c["hex"].as_str().unwrap().to_owned())
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// TCP payload of every packet in `pcap`, joined per direction: (to `port`, from `port`).
async fn captured_payload(pcap: &std::path::Path, port: u16) -> (Vec<u8>, Vec<u8>) {
    let mut tshark = tokio::process::Command::new(require("tshark", "apt-get install -y tshark"));
    tshark.arg("-r").arg(pcap).args([
        "-Y",
        "tcp.len > 0",
        "-T",
        "fields",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.payload",
    ]);
    let out = run(tshark, Duration::from_secs(30)).await;
    assert!(out.status.success(), "tshark reads the capture: {out:?}");
    let (mut to_server, mut from_server) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (dst, hex) = line.split_once('\t').expect("two fields per packet");
        let hex = hex.replace(':', "");
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex payload"));
        if dst.trim() == port.to_string() {
            to_server.extend(bytes);
        } else {
            from_server.extend(bytes);
        }
    }
    (to_server, from_server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_shows_exactly_the_plaintext_the_server_read_and_wrote() {
    // Plain HTTP.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        record(tcp).await
    });
    let home = tempfile::tempdir().unwrap();
    let pcap = home.path().join("raw.pcapng");
    let capture = TsharkCapture::start(&format!("tcp port {port}"), &pcap);
    let (code, report, _) = probe(
        home.path(),
        &[&format!("http://127.0.0.1:{port}/x?y"), "--raw"],
    )
    .await;
    assert_eq!(code, 0, "{report:#}");
    let seen = server.await.unwrap();
    capture.stop();
    let (to_server, from_server) = captured_payload(&pcap, port).await;
    assert_eq!(
        raw_bytes(&report, "sent"),
        to_server,
        "http: what the capture shows the client sent"
    );
    assert_eq!(
        raw_bytes(&report, "received"),
        from_server,
        "http: what the capture shows the server sent"
    );
    assert_eq!(
        raw_bytes(&report, "sent"),
        seen.read,
        "http: what the server read"
    );
    assert_eq!(
        raw_bytes(&report, "received"),
        seen.written,
        "http: what the server wrote"
    );
    assert!(String::from_utf8_lossy(&seen.read).starts_with("GET /x?y HTTP/1.1\r\n"));

    // HTTPS: the plaintext inside TLS, as the server's TLS stream handed it over.
    let store = protolab_tls::Store::open(home.path());
    let leaf = store.leaf_for(&["localhost".to_owned()]).unwrap();
    let config = protolab_tls::server_config(&leaf, &[b"http/1.1"]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = protolab_tls::stream::accept(Arc::clone(&config), tcp)
            .await
            .unwrap();
        record(tls).await
    });
    let ca = store.ca_cert_path();
    let url = format!("https://localhost:{port}/");
    let (code, report, _) = probe(
        home.path(),
        &[
            &url,
            "--raw",
            "--no-resumption",
            "--cacert",
            ca.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{report:#}");
    let seen = server.await.unwrap();
    assert_eq!(
        raw_bytes(&report, "sent"),
        seen.read,
        "https: what the server read"
    );
    assert_eq!(
        raw_bytes(&report, "received"),
        seen.written,
        "https: what the server wrote"
    );
}

/// A listener that writes `greeting` to whoever connects, then holds the connection until
/// told to stop.
async fn talker(greeting: &'static [u8]) -> (u16, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.write_all(greeting).await;
        let _ = stopped.await;
    });
    (port, stop)
}

#[tokio::test]
async fn a_server_that_is_not_http_fails_with_exit_1_and_its_first_bytes() {
    let (port, _stop) = talker(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
    let home = tempfile::tempdir().unwrap();
    let (code, report, _) = probe(home.path(), &[&format!("http://127.0.0.1:{port}/")]).await;
    assert_eq!(code, 1, "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("did not answer with HTTP/1.x") && error.contains("SSH-2.0"),
        "{error}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out_with_exit_1_no_hang() {
    let (port, _stop) = talker(b"").await;
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (code, report, _) = probe(
        home.path(),
        &[&format!("http://127.0.0.1:{port}/"), "--timeout", "1s"],
    )
    .await;
    assert_eq!(code, 1, "{report:#}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("sent nothing back"),
        "{report:#}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn https_to_a_plain_http_port_says_it_is_not_tls() {
    let (port, _stop) = talker(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
    let home = tempfile::tempdir().unwrap();
    let (code, report, _) = probe(home.path(), &[&format!("https://127.0.0.1:{port}/")]).await;
    assert_eq!(code, 1, "{report:#}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("did not answer with TLS"),
        "{report:#}"
    );
}

#[tokio::test]
async fn garbage_after_the_101_fails_with_exit_1_and_names_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = protolab_wire::ws::handshake::accept_key(&key);
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\nthis is not a frame"
        );
        tcp.write_all(answer.as_bytes()).await.unwrap();
        let _ = stopped.await;
    });
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (code, report, _) = probe(home.path(), &[&format!("ws://127.0.0.1:{port}/ws")]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["http"]["status"], 101, "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("not a valid WebSocket frame") && error.contains("this is not a frame"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

/// A WebSocket server that closes an idle connection with 1001 after `idle`, as a server
/// with an idle timeout does: the close frame, its code and reason are named.
#[tokio::test]
async fn an_idle_websocket_closed_with_a_close_frame_names_its_code() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let mut out = Vec::new();
        protolab_wire::ws::handshake::write_response(&mut out, &key, None, &[]);
        tcp.write_all(&out).await.unwrap();
        // Ignore the echo and the ping (a server that does not echo); after a second of
        // silence from the client, close with 1001.
        loop {
            match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => continue,
                _ => break,
            }
        }
        let mut close = Vec::new();
        protolab_wire::ws::encode_close(&mut close, None, 1001, "idle timeout");
        tcp.write_all(&close).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await;
    });
    let home = tempfile::tempdir().unwrap();
    let (code, report, _) = probe(
        home.path(),
        &[
            &format!("ws://127.0.0.1:{port}/ws"),
            "--timeout",
            "500ms",
            "--idle-timeout-discovery",
            "10s",
        ],
    )
    .await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["websocket"]["echoed"], false, "{report:#}");
    let idle = &report["idle"];
    assert_eq!(idle["closed_by"], "server", "{report:#}");
    assert_eq!(
        idle["how"], "WebSocket close 1001 \"idle timeout\", then FIN",
        "{report:#}"
    );
    let survived = idle["survived_secs"].as_f64().unwrap();
    assert!((0.9..1.5).contains(&survived), "{report:#}");
}

/// A server that drops an idle keep-alive connection with a RST (SO_LINGER 0, as a crashed or
/// impatient load balancer does): the RST is named, not taken for a FIN.
#[tokio::test]
async fn an_idle_connection_reset_by_the_server_is_named_rst() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        tcp.write_all(RESPONSE).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        tcp.set_zero_linger().unwrap();
        drop(tcp);
    });
    let home = tempfile::tempdir().unwrap();
    let (code, report, _) = probe(
        home.path(),
        &[
            &format!("http://127.0.0.1:{port}/"),
            "--idle-timeout-discovery",
            "10s",
        ],
    )
    .await;
    assert_eq!(code, 0, "{report:#}");
    let idle = &report["idle"];
    assert_eq!(idle["how"], "RST", "{report:#}");
    let survived = idle["survived_secs"].as_f64().unwrap();
    assert!((0.9..1.5).contains(&survived), "{report:#}");
}

//! Request smuggling through the proxy, checked differentially against a real lenient backend:
//! Node's `http` server with `insecureHTTPParser` (it accepts CL with TE, bare LF, obs-fold
//! ... where the proxy refuses them) records every request it parsed, and for each smuggling
//! shape sent raw to the proxy, the backend must have seen exactly the requests the proxy's
//! access log shows — no more, no fewer — each with the proxy's X-Forwarded-For.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up is a failed test"
)]

use std::time::Duration;

use protolab_test_support::LenientBackend;
use protolab_wire::http1::{parse_response, HeadLimits, Headers as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::logs;
use crate::proxy::TestProxy;

/// A request as one side saw it: method, path (no query), Host.
type Seen = (String, String, String);

/// What the lenient backend reported since the last call: each request as [`Seen`], with its
/// X-Forwarded-For lines.
async fn backend_saw(backend: &mut LenientBackend) -> Vec<(Seen, Vec<String>)> {
    backend
        .requests(Duration::from_millis(400))
        .await
        .into_iter()
        .map(|r| {
            let path = r.url.split('?').next().unwrap_or_default().to_string();
            let host = r.values("host").join(" | ");
            let xff = r
                .values("x-forwarded-for")
                .iter()
                .map(|v| v.to_string())
                .collect();
            ((r.method, path, host), xff)
        })
        .collect()
}

/// The smuggling shapes, each sent raw on a connection of its own. Every path is unique, so a
/// request that reaches the backend unlogged is recognisable.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let smuggled = |tag: &str| format!("GET /smuggled-{tag} HTTP/1.1\r\nHost: a\r\n\r\n");
    let chunk = |data: &str| format!("{:x}\r\n{data}\r\n", data.len());
    let with_cl = |head: &str, body: &str| {
        format!("{head}Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    vec![
        (
            "Connection names Content-Length",
            with_cl(
                "POST /conn-cl HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\n",
                &smuggled("conn-cl"),
            ),
        ),
        (
            "Connection names Content-Length, among others",
            with_cl(
                "POST /conn-cl2 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Content-Length\r\n",
                &smuggled("conn-cl2"),
            ),
        ),
        (
            "Connection names Transfer-Encoding",
            format!(
                "POST /conn-te HTTP/1.1\r\nHost: a\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                chunk(&smuggled("conn-te"))
            )
            .into_bytes(),
        ),
        (
            "Connection names Host",
            b"GET /conn-host HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n".to_vec(),
        ),
        (
            "Connection names X-Forwarded-For",
            b"GET /conn-xff HTTP/1.1\r\nHost: a\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n".to_vec(),
        ),
        (
            "CL.TE",
            format!(
                "POST /cl-te HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}",
                smuggled("cl-te")
            )
            .into_bytes(),
        ),
        (
            "TE.CL",
            format!(
                "POST /te-cl HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{}0\r\n\r\n",
                chunk(&smuggled("te-cl"))
            )
            .into_bytes(),
        ),
        (
            "TE: xchunked with CL",
            with_cl(
                "POST /xchunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n",
                &format!("0\r\n\r\n{}", smuggled("xchunked")),
            ),
        ),
        (
            "TE: chunked, identity",
            format!(
                "POST /te-identity HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{}",
                smuggled("te-identity")
            )
            .into_bytes(),
        ),
        (
            "TE with leading space and tab",
            format!(
                "POST /te-ws HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  \tchunked\r\n\r\n{}0\r\n\r\n",
                chunk("hello")
            )
            .into_bytes(),
        ),
        (
            "two TE fields",
            format!(
                "POST /te-two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{}",
                smuggled("te-two")
            )
            .into_bytes(),
        ),
        (
            "TE with a coding before chunked",
            format!(
                "POST /te-gzip HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
                chunk("hello")
            )
            .into_bytes(),
        ),
        (
            "chunk extensions and trailers",
            format!(
                "POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;q=\"x;y\"\r\nhello\r\n0;last\r\nX-Trailer: {}\r\n\r\n",
                "t"
            )
            .into_bytes(),
        ),
        (
            "chunk extension hiding a line break",
            format!(
                "POST /ext-lf HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2;x=\"\n\"\r\nab\r\n0\r\n\r\n{}",
                smuggled("ext-lf")
            )
            .into_bytes(),
        ),
        (
            "chunk size with leading zeros",
            format!(
                "POST /zeros HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n000000005\r\nhello\r\n0000\r\n\r\n{}",
                "GET /after-zeros HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "bad chunk size after the head",
            format!(
                "POST /bad-size HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n{}",
                smuggled("bad-size")
            )
            .into_bytes(),
        ),
        (
            "bare LF in the head",
            format!(
                "POST /bare-lf HTTP/1.1\nHost: a\nContent-Length: 0\n\n{}",
                smuggled("bare-lf")
            )
            .into_bytes(),
        ),
        (
            "bare LF ending a chunk",
            format!(
                "POST /bare-lf-chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n{}",
                smuggled("bare-lf-chunk")
            )
            .into_bytes(),
        ),
        (
            "bare CR in a field",
            b"GET /bare-cr HTTP/1.1\r\nHost: a\r\nX: a\rContent-Length: 5\r\n\r\nhello".to_vec(),
        ),
        (
            "obs-fold continuing Transfer-Encoding",
            format!(
                "POST /fold HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n{}",
                smuggled("fold")
            )
            .into_bytes(),
        ),
        (
            "duplicate equal Content-Length",
            format!(
                "POST /dup-cl HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello{}",
                "GET /after-dup-cl HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "Content-Length list",
            format!(
                "POST /cl-list HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello{}",
                "GET /after-cl-list HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "differing Content-Lengths",
            format!(
                "POST /cl-differ HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{}",
                smuggled("cl-differ").len(),
                smuggled("cl-differ")
            )
            .into_bytes(),
        ),
        (
            "two Hosts",
            b"GET /two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
        ),
        (
            "absolute-form target",
            b"GET http://elsewhere.test/abs?q=1 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        (
            "absolute-form target with userinfo",
            b"GET http://a@elsewhere.test/abs-user HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        (
            "requests pipelined behind a sized body",
            with_cl(
                "POST /pipe-cl HTTP/1.1\r\nHost: a\r\n",
                "hello",
            )
            .into_iter()
            .chain(b"GET /pipe-cl-2 HTTP/1.1\r\nHost: a\r\n\r\nGET /pipe-cl-3 HTTP/1.1\r\nHost: a\r\n\r\n".iter().copied())
            .collect(),
        ),
        (
            "requests pipelined behind a chunked body",
            format!(
                "POST /pipe-te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{}{}0\r\n\r\nGET /pipe-te-2 HTTP/1.1\r\nHost: a\r\n\r\n",
                chunk("hello"),
                chunk(" world")
            )
            .into_bytes(),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            format!(
                "POST /te-10 HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}",
                smuggled("te-10")
            )
            .into_bytes(),
        ),
        (
            "HTTP/1.0 keep-alive with a body",
            with_cl(
                "POST /ten HTTP/1.0\r\nConnection: keep-alive\r\n",
                "hello",
            )
            .into_iter()
            .chain(b"GET /ten-2 HTTP/1.1\r\nHost: a\r\n\r\n".iter().copied())
            .collect(),
        ),
        (
            "CONNECT",
            b"CONNECT internal.test:22 HTTP/1.1\r\nHost: internal.test:22\r\n\r\n".to_vec(),
        ),
        (
            "upgrade naming Content-Length",
            with_cl(
                "GET /up-cl HTTP/1.1\r\nHost: a\r\nConnection: upgrade, content-length\r\nUpgrade: websocket\r\n",
                &smuggled("up-cl"),
            ),
        ),
    ]
}

/// Sends `request` on a new connection, half-closes, and reads until the proxy closes.
async fn send_raw(port: u16, request: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let _ = tcp.shutdown().await;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got))
        .await
        .expect("the proxy closed the connection")
        .ok();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lenient_backend_sees_exactly_the_requests_the_proxy_logged() {
    logs::capture();
    let mut backend = LenientBackend::start().await;
    let proxy = TestProxy::start(vec![backend.addr], |c| {
        c.timeouts.client = Duration::from_secs(2);
    })
    .await;
    let port = proxy.port(false);
    let mut logged_before = 0;
    let mut failures = Vec::new();
    for (name, request) in corpus() {
        let answer = send_raw(port, &request).await;
        let seen = backend_saw(&mut backend).await;
        let lines = logs::access_lines(backend.addr);
        let logged: Vec<Seen> = lines[logged_before..]
            .iter()
            .map(|e| {
                (
                    e.field("method").to_string(),
                    e.field("path").to_string(),
                    e.field("host").to_string(),
                )
            })
            .collect();
        logged_before = lines.len();
        let requests: Vec<Seen> = seen.iter().map(|(r, _)| r.clone()).collect();
        if requests != logged {
            failures.push(format!(
                "{name}: the backend saw {requests:?}, the proxy logged {logged:?} (answer: {:?})",
                String::from_utf8_lossy(&answer)
            ));
        }
        for (request, xff) in &seen {
            if xff.len() != 1 || !xff[0].ends_with("127.0.0.1") {
                failures.push(format!(
                    "{name}: {request:?} reached the backend with X-Forwarded-For {xff:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} shapes disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The corpus exercised both outcomes: requests that went through and ones refused.
    let through = logs::access_lines(backend.addr).len();
    assert!(through >= 10, "only {through} requests went through");
}

/// Reads one response (head and Content-Length body) off `tcp`, parsing strictly.
async fn read_response(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, Vec<u8>) {
    loop {
        if let Some((head, used)) = parse_response(buf, &HeadLimits::default()).unwrap() {
            let framing = head.body_framing("GET").unwrap();
            let protolab_wire::http1::BodyFraming::ContentLength(len) = framing else {
                panic!("the client got a response it cannot frame: {head:?} ({framing:?})");
            };
            let end = used + usize::try_from(len).unwrap();
            while buf.len() < end {
                let mut chunk = [0u8; 4096];
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed inside a body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[used..end].to_vec();
            buf.drain(..end);
            assert!(head
                .header("connection")
                .is_none_or(|c| c != b"content-length"));
            return (head.status, body);
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_naming_its_framing_in_connection_cannot_desync_the_client() {
    let mut backend = LenientBackend::start().await;
    let proxy = TestProxy::start(vec![backend.addr], |_| {}).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port(false)))
        .await
        .unwrap();
    // Two requests on one keep-alive connection; the first response's Connection names its
    // Content-Length.
    tcp.write_all(
        b"GET /respond-nominated HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let read_both = async {
        let first = read_response(&mut tcp, &mut buf).await;
        let second = read_response(&mut tcp, &mut buf).await;
        (first, second)
    };
    let (first, second) = tokio::time::timeout(Duration::from_secs(10), read_both)
        .await
        .expect("both responses, each framed, within 10 s");
    assert_eq!(first, (200, b"ok 1\n".to_vec()));
    assert_eq!(second, (200, b"ok 2\n".to_vec()));
    let seen = backend.requests(Duration::from_millis(400)).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
}

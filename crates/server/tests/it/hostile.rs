//! Bad input, each case while a well-behaved Python `websockets` client keeps getting echoes
//! on the same listener: one broken peer must never disturb another.

use std::time::{Duration, Instant};

use protolab_server::Protocol;
use protolab_test_support::{Background, Peer, RawWs, TestLab};
use protolab_wire::ws::{encode_frame, Message, OpCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const MAX_MESSAGE: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(800);
const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fin, opcode, Some(MASK), payload);
    out
}

/// Reads until EOF and returns how long it took; panics past `limit`.
async fn time_to_eof(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("server closed the connection in time");
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_while_another_client_keeps_echoing() {
    let lab = TestLab::start(&[Protocol::Ws, Protocol::Wss], |c| {
        c.limits.max_message_bytes = MAX_MESSAGE;
        c.limits.handshake_timeout = HANDSHAKE_TIMEOUT;
    })
    .await;
    let port = lab.port(Protocol::Ws);
    let url = lab.url(Protocol::Ws);
    let mut good = Background::spawn(Peer::PythonWs.command([
        "soak",
        &url,
        "--seconds",
        "6",
        "--interval",
        "0.02",
    ]));
    assert_eq!(
        good.next_json(Duration::from_secs(15)).await["connected"],
        true
    );

    // A frame over the size limit: refused with 1009 from its header alone, before the
    // payload (which we never send) arrives.
    let mut raw = RawWs::connect(port).await;
    let mut header = Vec::new();
    encode_frame(
        &mut header,
        true,
        OpCode::Binary,
        Some(MASK),
        &vec![0u8; MAX_MESSAGE + 1],
    );
    header.truncate(2 + 8 + 4 + 16);
    raw.send_raw(&header).await;
    assert_eq!(
        raw.close_code(Duration::from_secs(5)).await,
        1009,
        "oversized frame"
    );

    // A message over the limit built from small fragments.
    let mut raw = RawWs::connect(port).await;
    let piece = vec![b'a'; MAX_MESSAGE / 4];
    raw.send_raw(&masked(OpCode::Text, false, &piece)).await;
    for _ in 0..4 {
        raw.send_raw(&masked(OpCode::Continuation, false, &piece))
            .await;
    }
    assert_eq!(
        raw.close_code(Duration::from_secs(5)).await,
        1009,
        "oversized fragmented message"
    );

    // Invalid UTF-8 in a text frame.
    let mut raw = RawWs::connect(port).await;
    raw.send_raw(&masked(OpCode::Text, true, &[0x68, 0x69, 0xff, 0xfe]))
        .await;
    assert_eq!(
        raw.close_code(Duration::from_secs(5)).await,
        1007,
        "invalid UTF-8"
    );

    // Messages before the bad one are still answered, in order, before the close; in one
    // write so they arrive in one read.
    let mut raw = RawWs::connect(port).await;
    let mut burst = masked(OpCode::Text, true, b"first");
    burst.extend(masked(OpCode::Binary, true, b"second"));
    burst.extend(masked(OpCode::Text, true, &[0xc3, 0x28]));
    raw.send_raw(&burst).await;
    assert_eq!(
        raw.next_message(Duration::from_secs(5)).await,
        protolab_wire::ws::Message::Text("first".into())
    );
    assert_eq!(
        raw.next_message(Duration::from_secs(5)).await,
        protolab_wire::ws::Message::Binary(b"second".to_vec())
    );
    assert_eq!(
        raw.close_code(Duration::from_secs(5)).await,
        1007,
        "invalid UTF-8 after two good messages"
    );

    // An unmasked client frame.
    let mut raw = RawWs::connect(port).await;
    let mut unmasked = Vec::new();
    encode_frame(&mut unmasked, true, OpCode::Text, None, b"no mask");
    raw.send_raw(&unmasked).await;
    assert_eq!(
        raw.close_code(Duration::from_secs(5)).await,
        1002,
        "unmasked frame"
    );

    // A reserved opcode, and a control frame over 125 bytes.
    let mut raw = RawWs::connect(port).await;
    raw.send_raw(&[0x83, 0x80, 1, 2, 3, 4]).await;
    assert_eq!(
        raw.close_code(Duration::from_secs(5)).await,
        1002,
        "reserved opcode"
    );
    let mut raw = RawWs::connect(port).await;
    raw.send_raw(&masked(OpCode::Ping, true, &[0u8; 126])).await;
    assert_eq!(
        raw.close_code(Duration::from_secs(5)).await,
        1002,
        "oversized ping"
    );

    // 100 KiB of headers on the upgrade request: 431, then close.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    // The server may answer and close before all of it is written; that is the point.
    let _ = tcp.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A connection that never finishes its handshake is closed at the handshake timeout:
    // silent TCP, a partial head, and a TLS connection that never sends a ClientHello.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let took = time_to_eof(&mut silent, Duration::from_secs(5)).await;
    assert!(
        took >= HANDSHAKE_TIMEOUT - Duration::from_millis(100),
        "closed too early: {took:?}"
    );

    let mut partial = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    partial
        .write_all(b"GET /ws HTTP/1.1\r\nHost: slow")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), partial.read_to_end(&mut answer))
        .await
        .expect("closed")
        .ok();
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let mut tls_silent = TcpStream::connect(("127.0.0.1", lab.port(Protocol::Wss)))
        .await
        .unwrap();
    let took = time_to_eof(&mut tls_silent, Duration::from_secs(5)).await;
    assert!(
        took >= HANDSHAKE_TIMEOUT - Duration::from_millis(100),
        "TLS closed too early: {took:?}"
    );

    let result = good.next_json(Duration::from_secs(20)).await;
    let sent = result["sent"].as_u64().expect("sent");
    assert!(sent > 20, "the good client hardly ran: {result}");
    assert_eq!(result["echoed"], sent, "{result}");
    assert_eq!(
        result["errors"].as_array().map(Vec::len),
        Some(0),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_smuggling_shaped_requests_get_400_and_close() {
    let lab = TestLab::start(&[Protocol::Http], |_| {}).await;
    let port = lab.port(Protocol::Http);
    for request in [
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03 TLS to a plain port\r\n\r\n",
        "GET /healthz HTTP/1.1\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let _ = tcp.write_all(request.as_bytes()).await;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await.expect("closed").ok();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{request:?} → {answer}");
        assert!(answer.contains("connection: close"), "{request:?} → {answer}");
    }
}

/// Large binary messages are echoed from the read buffer in place (no decode copy); small
/// ones are batched. Pipelined in one write, every kind still comes back whole and in order,
/// and a large frame that breaks a rule still goes to the decoder and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_echoes_of_every_size_come_back_in_order() {
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.limits.max_message_bytes = MAX_MESSAGE;
    })
    .await;
    let port = lab.port(Protocol::Ws);
    let mut raw = RawWs::connect(port).await;
    let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let small = b"small one".to_vec();
    let fragment_a: Vec<u8> = vec![b'x'; 6000];
    let fragment_b: Vec<u8> = vec![b'y'; 7000];
    let mut burst = Vec::new();
    burst.extend(masked(OpCode::Binary, true, &small));
    burst.extend(masked(OpCode::Binary, true, &big));
    burst.extend(masked(OpCode::Text, true, b"text after big"));
    // A large message in two fragments: the first must not be echoed on its own.
    burst.extend(masked(OpCode::Binary, false, &fragment_a));
    burst.extend(masked(OpCode::Continuation, true, &fragment_b));
    burst.extend(masked(OpCode::Binary, true, &big[..4096]));
    raw.send_raw(&burst).await;
    let limit = Duration::from_secs(5);
    let joined: Vec<u8> = [fragment_a.clone(), fragment_b.clone()].concat();
    for (i, expected) in [
        Message::Binary(small),
        Message::Binary(big.clone()),
        Message::Text("text after big".into()),
        Message::Binary(joined),
        Message::Binary(big[..4096].to_vec()),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(raw.next_message(limit).await, expected, "echo #{i}");
    }

    // A large frame with RSV1 set (no extension was negotiated) is a protocol error.
    let mut raw = RawWs::connect(port).await;
    let mut frame = masked(OpCode::Binary, true, &big);
    frame[0] |= 0x40;
    raw.send_raw(&frame).await;
    assert_eq!(raw.close_code(limit).await, 1002, "RSV1 on a large frame");
}

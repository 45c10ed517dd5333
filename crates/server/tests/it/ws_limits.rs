//! How the WS app ends connections that break the protocol or its limits: at once, with the
//! right code, and without waiting on a peer that may never cooperate.

use std::time::{Duration, Instant};

use protolab_server::{Protocol, WsRuntime};
use protolab_test_support::{run_json, Peer, RawWs, TestLab};
use protolab_wire::ws::{encode_frame, OpCode};
use tokio::io::AsyncReadExt as _;

const MASK: [u8; 4] = [0x0b, 0xad, 0xf0, 0x0d];

fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, fin, opcode, Some(MASK), payload);
    out
}

/// Reads and discards until EOF; the time it took, or `None` past `limit`.
async fn eof_within(raw: &mut RawWs, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    tokio::time::timeout(limit, async {
        while let Ok(1..) = raw.stream.read(&mut sink).await {}
    })
    .await
    .ok()
    .map(|()| start.elapsed())
}

/// RFC 6455 §7.1.7: a server that fails the connection sends its close frame and closes TCP
/// (§7.1.1) — it does not wait for a close frame from a peer that has just broken the
/// protocol. Autobahn reports "the server should close the TCP connection" otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connection_is_closed_at_once_without_waiting_for_the_peer() {
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.limits.close_timeout = Duration::from_secs(3);
    })
    .await;
    let port = lab.port(Protocol::Ws);
    for (what, bytes, code) in [
        ("reserved opcode", vec![0x83, 0x80, 1, 2, 3, 4], 1002),
        (
            "RSV bits",
            {
                let mut f = masked(OpCode::Text, true, b"x");
                f[0] |= 0x70;
                f
            },
            1002,
        ),
        (
            "invalid UTF-8",
            masked(OpCode::Text, true, b"\xc0\xaf"),
            1007,
        ),
    ] {
        let mut raw = RawWs::connect(port).await;
        raw.send_raw(&bytes).await;
        assert_eq!(raw.close_code(Duration::from_secs(5)).await, code, "{what}");
        // We never answer with our close frame.
        let took = eof_within(&mut raw, Duration::from_secs(5)).await;
        let took = took.unwrap_or_else(|| panic!("{what}: the server never closed TCP"));
        assert!(
            took < Duration::from_millis(1000),
            "{what}: TCP closed {took:?} after the close frame (the close timeout is 3 s)"
        );
    }
    // A close the server starts itself (shutdown) still waits for the peer's close frame.
    let mut raw = RawWs::connect(port).await;
    let shutdown = tokio::spawn(lab.lab.shutdown());
    assert_eq!(raw.close_code(Duration::from_secs(5)).await, 1001);
    raw.send_raw(&masked(OpCode::Close, true, &1001u16.to_be_bytes()))
        .await;
    assert!(eof_within(&mut raw, Duration::from_secs(5)).await.is_some());
    assert!(shutdown.await.is_ok());
}

/// Autobahn 6.4.3/6.4.4: invalid UTF-8 in the middle of one text frame fails the connection
/// when the bytes that break it arrive, not when the frame is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_fails_at_the_chop_that_brings_it() {
    let lab = TestLab::start(&[Protocol::Ws], |_| {}).await;
    let port = lab.port(Protocol::Ws);
    // κόσμε, then a code point above U+10FFFF, then more.
    let payload =
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64";
    let frame = masked(OpCode::Text, true, payload);
    let header = frame.len() - payload.len();
    let mut raw = RawWs::connect(port).await;
    raw.send_raw(&frame[..header + 11]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.send_raw(&frame[header + 11..header + 13]).await;
    // The rest of the frame is never sent.
    assert_eq!(raw.close_code(Duration::from_secs(2)).await, 1007);
}

/// A message of empty continuation frames never ends by itself: the frame count per message
/// and the time per message bound it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_messages_are_cut_off() {
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.limits.message_timeout = Duration::from_millis(700);
    })
    .await;
    let port = lab.port(Protocol::Ws);

    // 200,000 empty continuations, sent as fast as the server takes them.
    let mut raw = RawWs::connect(port).await;
    raw.send_raw(&masked(OpCode::Text, false, b"")).await;
    let batch: Vec<u8> = (0..10_000)
        .flat_map(|_| masked(OpCode::Continuation, false, b""))
        .collect();
    let sender = {
        let mut stream = raw.stream.into_split();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            for _ in 0..20 {
                if stream.1.write_all(&batch).await.is_err() {
                    break;
                }
            }
            stream.1
        });
        (stream.0, writer)
    };
    let (mut reader, writer) = sender;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the server never closed the endless message");
    let _ = writer.await;
    // The close frame: 0x88, length, code.
    assert!(got.len() >= 4 && got[0] == 0x88, "no close frame: {got:x?}");
    assert_eq!(
        u16::from_be_bytes([got[2], got[3]]),
        1009,
        "too many fragments"
    );

    // A message trickled one small fragment every 100 ms outlives the message timeout.
    let mut raw = RawWs::connect(port).await;
    let start = Instant::now();
    raw.send_raw(&masked(OpCode::Binary, false, b"a")).await;
    let mut answer = Vec::new();
    while start.elapsed() < Duration::from_secs(3) {
        let mut chunk = [0u8; 256];
        let wait = tokio::time::timeout(Duration::from_millis(100), raw.stream.read(&mut chunk));
        match wait.await {
            Ok(Ok(n @ 1..)) => {
                answer.extend_from_slice(&chunk[..n]);
                break;
            }
            Ok(_) => break,
            Err(_) => {
                raw.send_raw(&masked(OpCode::Continuation, false, b"b"))
                    .await
            }
        }
    }
    let took = start.elapsed();
    assert!(
        answer.len() >= 4 && answer[0] == 0x88,
        "no close frame: {answer:x?}"
    );
    assert_eq!(
        u16::from_be_bytes([answer[2], answer[3]]),
        1008,
        "message timeout"
    );
    assert!(
        took < Duration::from_secs(2),
        "closed after {took:?} with a 700 ms message timeout"
    );
}

/// A decompression bomb from a real client: Python `websockets` compresses 64 MiB of zeros
/// into a few KiB; the lab inflates no further than its 1 MiB message limit and closes 1009.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_bomb_from_python_websockets_is_closed_with_1009() {
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.limits.max_message_bytes = 1 << 20;
    })
    .await;
    let url = lab.url(Protocol::Ws);
    let result = run_json(
        Peer::PythonWs.command(["bomb", &url, "--bomb-bytes", &(64u64 << 20).to_string()]),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(result["compressed"], true, "{result}");
    assert_eq!(result["close_code"], 1009, "{result}");
    assert_eq!(
        lab.lab.buffered_bytes(),
        0,
        "the bomb's memory was given back"
    );
}

/// A peer that sends and never reads fills the server's socket buffer: the server stops
/// reading from it (its answers are not queued without bound) and drops it once a write has
/// waited for the write timeout, on the event loop and as a task alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_is_dropped_after_the_write_timeout() {
    use tokio::io::AsyncWriteExt as _;
    for runtime in [WsRuntime::EventLoop, WsRuntime::Tasks] {
        let lab = TestLab::start(&[Protocol::Ws], |c| {
            c.limits.write_timeout = Duration::from_secs(1);
            c.ws_runtime = runtime;
        })
        .await;
        let mut raw = RawWs::connect(lab.port(Protocol::Ws)).await;
        let frame = masked(OpCode::Binary, true, &vec![7u8; 64 * 1024]);
        // Both directions' socket buffers fill within a few MiB; 128 MiB taken would mean the
        // server kept reading (and queuing answers) without bound.
        let mut sent = 0;
        let mut blocked = false;
        while sent < 2_000 {
            let write = raw.stream.write_all(&frame);
            match tokio::time::timeout(Duration::from_millis(500), write).await {
                Ok(Ok(())) => sent += 1,
                Ok(Err(err)) => {
                    panic!("{runtime:?}: the server closed before it stopped reading: {err}")
                }
                Err(_) => {
                    blocked = true;
                    break;
                }
            }
        }
        assert!(
            blocked,
            "{runtime:?}: the server took {sent} frames of 64 KiB without its answers being read"
        );
        assert_eq!(lab.lab.open_connections(), 1, "{runtime:?}");
        let until = Instant::now() + Duration::from_secs(10);
        while lab.lab.open_connections() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            lab.lab.open_connections(),
            0,
            "{runtime:?}: a connection whose writes wait past the write timeout is dropped"
        );
        assert_eq!(lab.lab.buffered_bytes(), 0, "{runtime:?}");
    }
}

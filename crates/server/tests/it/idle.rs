//! What idle WebSockets hold: no read buffer while nothing is pending, and every buffer back
//! once the connections close. Python `websockets` holds the idle connections.

use std::time::Duration;

use protolab_server::{Lab, Protocol};
use protolab_test_support::{settles, Background, Peer, RawWs, TestLab};
use protolab_wire::ws::{encode_frame, OpCode};

use crate::PEER_LIMIT;

/// Connections held idle per protocol.
const IDLE: usize = 20;

/// Waits until `lab` has lent exactly `want` read buffers, or `limit` passes; returns what it
/// lent last. A buffer is given back just after the answer that the peer waits for is
/// written, so the count may trail the peer by a moment.
async fn lent_settles(lab: &Lab, want: usize, limit: Duration) -> usize {
    settles(want, limit, || lab.read_buffers_lent()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websockets_hold_no_read_buffer_and_closing_returns_every_one() {
    let lab = TestLab::start(&[Protocol::Ws, Protocol::Wss], |c| {
        c.push_interval = Duration::from_secs(3600);
    })
    .await;
    let ca = lab.ca.to_string_lossy().into_owned();
    let count = IDLE.to_string();
    let mut peers = Vec::new();
    for protocol in [Protocol::Ws, Protocol::Wss] {
        let url = lab.url(protocol);
        let args = [
            "idle",
            &url,
            "--cafile",
            &ca,
            "--count",
            &count,
            "--seconds",
            "30",
        ];
        let mut peer = Background::spawn(Peer::PythonWs.command(args));
        let ready = peer.next_json(PEER_LIMIT).await;
        assert_eq!(ready["idle"], IDLE, "{protocol}: {ready}");
        peers.push(peer);
    }
    assert_eq!(lab.lab.open_connections(), 2 * IDLE);
    // The WS app's connections move to its event loop once open a second; the WSS app's stay
    // tasks.
    let moved = settles(IDLE, Duration::from_secs(5), || {
        lab.lab.event_loop_connections()
    })
    .await;
    assert_eq!(moved, IDLE);
    // Every connection has echoed a message and waits: none holds a read buffer.
    let lent = lent_settles(&lab.lab, 0, Duration::from_secs(5)).await;
    assert_eq!(
        lent,
        0,
        "{lent} of {} idle WebSockets hold a read buffer",
        2 * IDLE
    );

    // A frame header half arrived is pending: that connection holds a buffer until the rest
    // comes. (A whole header with part of the payload would move to the decoder's message
    // buffer instead, which the message budget counts.)
    let mut raw = RawWs::connect(lab.port(Protocol::Ws)).await;
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        true,
        OpCode::Text,
        Some(*b"mask"),
        b"half now, half later",
    );
    raw.send_raw(&frame[..1]).await;
    let lent = lent_settles(&lab.lab, 1, Duration::from_secs(5)).await;
    assert_eq!(
        lent, 1,
        "a connection with half a frame header holds its read buffer"
    );
    raw.send_raw(&frame[1..]).await;
    let echo = raw.next_message(PEER_LIMIT).await;
    assert_eq!(
        echo,
        protolab_wire::ws::Message::Text("half now, half later".into())
    );
    let lent = lent_settles(&lab.lab, 0, Duration::from_secs(5)).await;
    assert_eq!(lent, 0, "the buffer goes back once the frame is answered");
    drop(raw);

    // Closing every connection returns every buffer.
    for peer in peers {
        drop(peer);
    }
    let until = tokio::time::Instant::now() + PEER_LIMIT;
    while lab.lab.open_connections() > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lab.lab.open_connections(), 0, "every connection closed");
    assert_eq!(lab.lab.event_loop_connections(), 0);
    assert_eq!(lab.lab.read_buffers_lent(), 0);
}

//! The WS app's adaptive runtime: a connection that upgrades, echoes once and goes stays on
//! its task (moving it to the event loop would cost more than it saves), and one that lives
//! on moves to the loop with its session as the task left it — permessage-deflate's contexts,
//! the push sequence — under Python `websockets`, which checks every frame it inflates.

use std::time::Duration;

use protolab_server::{Lab, Protocol, WsRuntime};
use protolab_test_support::{settles, Background, Peer, RawWs, TestLab};
use protolab_wire::ws::{encode_frame, Message, OpCode};

use crate::PEER_LIMIT;

/// Waits until the loops serve `want` connections, or `limit` passes; returns the last count.
async fn on_the_loop(lab: &Lab, want: usize, limit: Duration) -> usize {
    settles(want, limit, || lab.event_loop_connections()).await
}

async fn echo(raw: &mut RawWs, text: &str) {
    let mut frame = Vec::new();
    encode_frame(
        &mut frame,
        true,
        OpCode::Text,
        Some(*b"mask"),
        text.as_bytes(),
    );
    raw.send_raw(&frame).await;
    assert_eq!(
        raw.next_message(PEER_LIMIT).await,
        Message::Text(text.into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_websocket_stays_on_its_task_and_a_long_lived_one_moves_to_the_loop() {
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.ws_runtime = WsRuntime::Adaptive;
        c.push_interval = Duration::from_secs(3600);
    })
    .await;
    assert_eq!(WsRuntime::default(), WsRuntime::Adaptive);
    let port = lab.port(Protocol::Ws);

    // Upgrade, one echo, a few more: well short of the 32 messages that make it long-lived.
    let mut short = RawWs::connect(port).await;
    for n in 0..5 {
        echo(&mut short, &format!("short {n}")).await;
    }
    assert_eq!(
        on_the_loop(&lab.lab, 1, Duration::from_millis(300)).await,
        0,
        "a connection with 5 messages moved to the event loop"
    );
    // The 32nd message makes it long-lived: it moves once it is answered.
    for n in 5..32 {
        echo(&mut short, &format!("short {n}")).await;
    }
    assert_eq!(on_the_loop(&lab.lab, 1, Duration::from_secs(2)).await, 1);
    // On the loop it answers as before.
    echo(&mut short, "after the move").await;

    // A connection that says nothing moves once it has been open a second.
    let quiet = RawWs::connect(port).await;
    assert_eq!(
        on_the_loop(&lab.lab, 2, Duration::from_millis(500)).await,
        1
    );
    assert_eq!(on_the_loop(&lab.lab, 2, Duration::from_secs(3)).await, 2);
    drop((short, quiet));
    assert_eq!(on_the_loop(&lab.lab, 0, PEER_LIMIT).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_websocket_keeps_its_deflate_contexts_and_push_sequence() {
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.ws_runtime = WsRuntime::Adaptive;
        c.push_interval = Duration::from_millis(50);
    })
    .await;
    let url = lab.url(Protocol::Ws);
    // An echo every 20 ms for 2.5 s: the connection moves after 32 messages (under a
    // second), then goes on for over a second more on the loop.
    let mut soak = Background::spawn(Peer::PythonWs.command([
        "soak",
        &url,
        "--seconds",
        "2.5",
        "--interval",
        "0.02",
    ]));
    assert_eq!(soak.next_json(PEER_LIMIT).await["connected"], true);
    assert_eq!(on_the_loop(&lab.lab, 1, Duration::from_secs(2)).await, 1);
    let result = soak.next_json(PEER_LIMIT).await;
    assert_eq!(result["deflate"], true, "{result}");
    assert_eq!(result["errors"], serde_json::json!([]), "{result}");
    let sent = result["sent"].as_u64().unwrap();
    assert!(sent >= 40, "{result}");
    assert_eq!(result["echoed"], sent, "{result}");
    // Pushes went on from where the task left them: 1, 2, 3, ... with none repeated or lost.
    let pushes: Vec<u64> = result["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(pushes.len() >= 20, "{result}");
    let expected: Vec<u64> = (1..=pushes.len() as u64).collect();
    assert_eq!(pushes, expected, "{result}");
}

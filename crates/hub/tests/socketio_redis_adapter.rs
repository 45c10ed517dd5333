//! Two hubs and a Node socket.io 4 server on npm `@socket.io/redis-adapter`, all on one real
//! redis-server: rooms are shared both ways, and each socket gets each event once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client, client_with_query, curl, drain, until_event, Client, TestHub, WAIT};
use protolab_hub::broker::{Broker, RedisBroker, RedisConfig};
use protolab_hub::socketio::SocketIoConfig;
use protolab_hub::story::NotifsAllow;
use protolab_hub::{Hub, HubConfig, Level, Publication};
use protolab_test_support::{repo_root, require, Background, RedisServer};
use serde_json::{json, Value};
use tokio::process::Command;

async fn redis_hub(redis: &RedisServer) -> TestHub {
    let hub = Arc::new(Hub::new(HubConfig::default()));
    let broker = RedisBroker::connect(RedisConfig::new(redis.url()), hub)
        .await
        .expect("broker connects");
    TestHub::start_on(
        Arc::new(Broker::Redis(broker)),
        "127.0.0.1",
        SocketIoConfig::default(),
        NotifsAllow::default(),
    )
    .await
}

/// The Node server, and the port it listens on.
async fn node_server(redis: &RedisServer) -> (Background, u16) {
    let peers = repo_root().join("tests/peers");
    assert!(
        peers.join("node_modules/@socket.io/redis-adapter").is_dir(),
        "peer missing: npm @socket.io/redis-adapter; run scripts/install-test-peers"
    );
    let mut cmd = Command::new(require("node", "apt-get install -y nodejs"));
    cmd.arg(peers.join("socketio_redis_server.mjs"))
        .arg(redis.url())
        .kill_on_drop(true);
    let mut server = Background::spawn(cmd);
    let listening = server.next_json(WAIT).await;
    assert_eq!(listening["event"], "listening", "{listening}");
    let port = listening["port"].as_u64().expect("port");
    (server, u16::try_from(port).expect("a port"))
}

async fn publish(hub: &TestHub, channel: &str, body: &str) -> u64 {
    hub.broker
        .publish(Publication {
            channel: channel.parse().expect("channel"),
            level: Level::Warning,
            title: String::new(),
            body: body.to_owned(),
            data: None,
            idempotency_key: None,
        })
        .await
        .expect("publish")
        .offset
}

/// `(event, data)` of every event but the connection's own.
fn events(lines: &[Value]) -> Vec<(String, Value)> {
    lines
        .iter()
        .filter(|line| {
            !["connect", "ack", "subscribed", "joined"]
                .contains(&line["event"].as_str().unwrap_or(""))
        })
        .map(|line| {
            (
                line["event"].as_str().unwrap_or("").to_owned(),
                line["data"].clone(),
            )
        })
        .collect()
}

fn newmessage(text: &str) -> (String, Value) {
    ("newmessage".to_owned(), json!({ "message": text }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_shared_with_a_node_server_on_the_redis_adapter_each_event_once() {
    let redis = RedisServer::start().await;
    let a = redis_hub(&redis).await;
    let b = redis_hub(&redis).await;
    let (_server, port) = node_server(&redis).await;
    let node_url = format!("http://127.0.0.1:{port}");

    let ops = r#"[{"channel":"ops"}]"#;
    let mut on_a = client(Client::Node, &a.url(), "websocket", Some(ops));
    let mut on_b = client(Client::Python, &b.url(), "polling", Some(ops));
    // in the story's room only, as every socket is
    let mut story_on_b = client(Client::Node, &b.url(), "websocket", None);
    let mut on_node = client_with_query(
        Client::Node,
        &node_url,
        "websocket",
        None,
        Some("rooms=ops,notifs"),
    );
    for peer in [&mut on_a, &mut on_b] {
        let ack = until_event(peer, "ack").await;
        assert_eq!(ack["data"]["channels"][0]["recovered"], true, "{ack}");
    }
    until_event(&mut on_node, "joined").await;
    b.wait_for_room("notifs", 2).await;
    a.wait_for_room("ops", 1).await;
    b.wait_for_room("ops", 1).await;

    // The Node server emits to room ops: the hubs' sockets in ops get it, the others do not.
    let (status, body) = curl(&[&format!(
        "{node_url}/emit?room=ops&event=newmessage&message=Wfrom%20node"
    )])
    .await;
    assert_eq!(status, 200, "{body}");
    // A publication on A reaches B's sockets through the broker and the Node server's through
    // the adapter; one on B in the story's channel reaches every socket's `newmessage`.
    assert_eq!(publish(&a, "ops", "from hub a").await, 1);
    assert_eq!(publish(&b, "notifs", "from hub b").await, 1);

    let quiet = Duration::from_millis(2000);
    let mut got = Vec::new();
    for peer in [&mut on_a, &mut on_b, &mut story_on_b, &mut on_node] {
        got.push(events(&drain(peer, quiet).await));
    }
    let [on_a, on_b, story_on_b, on_node] = <[_; 4]>::try_from(got).expect("four peers");

    let ops_notification = |events: &[(String, Value)]| -> Vec<(u64, String)> {
        events
            .iter()
            .filter(|(name, data)| name == "notification" && data["channel"] == "ops")
            .map(|(_, data)| {
                (
                    data["offset"].as_u64().unwrap_or(0),
                    data["body"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let count = |events: &[(String, Value)], wanted: &(String, Value)| {
        events.iter().filter(|event| *event == wanted).count()
    };
    for (name, events) in [("hub A", &on_a), ("hub B", &on_b)] {
        assert_eq!(
            count(events, &newmessage("Wfrom node")),
            1,
            "{name}: the Node server's emit once: {events:?}"
        );
        assert_eq!(
            ops_notification(events),
            [(1, "from hub a".to_owned())],
            "{name}: A's publication once: {events:?}"
        );
        assert_eq!(
            count(events, &newmessage("Wfrom hub b")),
            1,
            "{name}: {events:?}"
        );
    }
    assert_eq!(
        story_on_b,
        [newmessage("Wfrom hub b")],
        "a socket in no room of the Node server's emit gets only the story's event"
    );
    assert_eq!(count(&on_node, &newmessage("Wfrom node")), 1, "{on_node:?}");
    assert_eq!(
        ops_notification(&on_node),
        [(1, "from hub a".to_owned())],
        "the Node server's socket in ops gets A's publication once, not once per hub: {on_node:?}"
    );
    assert_eq!(
        count(&on_node, &newmessage("Wfrom hub b")),
        1,
        "the Node server's socket in notifs gets the story's event once: {on_node:?}"
    );
}

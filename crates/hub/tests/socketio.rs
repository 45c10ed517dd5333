//! The socket.io endpoint and `/notifs` against real clients: Node `socket.io-client`, Python
//! `python-socketio`, curl, and a raw Engine.IO WebSocket that stops reading.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client, curl, drain, events_until, until_event, Client, TestHub, WAIT};
use futures_util::{SinkExt as _, StreamExt as _};
use protolab_hub::auth::OriginPolicy;
use protolab_hub::socketio::SocketIoConfig;
use protolab_hub::story::NotifsAllow;
use protolab_hub::Level;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn notifications<'a>(events: &'a [Value], channel: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == "notification" && e["data"]["channel"] == channel)
        .map(|e| &e["data"])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_and_python_clients_get_newmessage_from_notifs_and_published_notifications() {
    let hub = TestHub::start(
        "127.0.0.1",
        SocketIoConfig::default(),
        NotifsAllow::default(),
    )
    .await;
    // `notification` events of the story's channel go to sockets that subscribe to it.
    let subscribe = r#"[{"channel":"ops"},{"channel":"notifs"}]"#;
    // Node upgrades from long-polling to WebSocket; Python stays on long-polling.
    let mut node = client(
        Client::Node,
        &hub.url(),
        "polling,websocket",
        Some(subscribe),
    );
    let mut python = client(Client::Python, &hub.url(), "polling", Some(subscribe));
    for peer in [&mut node, &mut python] {
        let ack = until_event(peer, "ack").await;
        assert_eq!(ack["data"]["channels"][0]["channel"], "ops", "{ack}");
        assert_eq!(ack["data"]["channels"][0]["recovered"], true, "{ack}");
    }
    // the story's page: in room notifs from its connect on, with no subscribe
    let mut story = client(Client::Node, &hub.url(), "websocket", None);
    until_event(&mut story, "subscribed").await;
    hub.wait_for_room("notifs", 3).await;

    let (status, body) = curl(&[&format!("{}/notifs?msg=Edisk%20full", hub.url())]).await;
    assert_eq!(status, 202, "{body}");
    let ops_offset = hub.publish("ops", Level::Warning, "load 0.9");
    assert_eq!(ops_offset, 1);

    for peer in [&mut node, &mut python] {
        let mut events = events_until(peer, "newmessage").await;
        let newmessage = events.last().expect("newmessage");
        assert_eq!(newmessage["data"], json!({"message": "Edisk full"}));
        events.extend(drain(peer, Duration::from_millis(1500)).await);
        let notifs = notifications(&events, "notifs");
        assert_eq!(notifs.len(), 1, "{events:?}");
        assert_eq!(notifs[0]["level"], "error");
        assert_eq!(notifs[0]["body"], "disk full");
        let ops = notifications(&events, "ops");
        assert_eq!(ops.len(), 1, "{events:?}");
        assert_eq!(
            (ops[0]["offset"].as_u64(), &ops[0]["body"]),
            (Some(1), &json!("load 0.9"))
        );
    }
    // One event per publication for the story's page: `newmessage`, nothing else.
    let events: Vec<Value> = drain(&mut story, Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|e| e["event"] != "connect")
        .collect();
    assert_eq!(
        events,
        [json!({"event": "newmessage", "data": {"message": "Edisk full"}})]
    );
    assert_eq!(hub.endpoint.counts().sockets, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_its_position_gets_exactly_what_it_missed() {
    let hub = TestHub::start(
        "127.0.0.1",
        SocketIoConfig::default(),
        NotifsAllow::default(),
    )
    .await;
    for n in 1..=5 {
        hub.publish("ops", Level::Info, &format!("before {n}"));
    }
    let from_start = r#"[{"channel":"ops","since":"start"}]"#;
    let mut first = client(Client::Node, &hub.url(), "polling", Some(from_start));
    let events = events_until(&mut first, "ack").await;
    let seen: Vec<u64> = notifications(&events, "ops")
        .iter()
        .filter_map(|n| n["offset"].as_u64())
        .collect();
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    let epoch = notifications(&events, "ops")[0]["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    drop(first); // killed: the hub sees the connection go

    for n in 6..=9 {
        hub.publish("ops", Level::Info, &format!("while away {n}"));
    }
    let resume = format!(r#"[{{"channel":"ops","since":"{epoch}:5"}}]"#);
    let mut again = client(Client::Node, &hub.url(), "websocket", Some(&resume));
    // what was missed comes first, then the ack, then live notifications
    let mut events = events_until(&mut again, "ack").await;
    let ack = events.last().expect("ack").clone();
    assert_eq!(ack["data"]["channels"][0]["recovered"], true, "{ack}");
    assert_eq!(ack["data"]["channels"][0]["offset"], 9, "{ack}");
    hub.publish("ops", Level::Info, "live 10");
    events.extend(drain(&mut again, Duration::from_millis(1500)).await);
    let resumed: Vec<u64> = notifications(&events, "ops")
        .iter()
        .filter_map(|n| n["offset"].as_u64())
        .collect();
    assert_eq!(
        resumed,
        [6, 7, 8, 9, 10],
        "exactly what was missed, then live"
    );

    // A position from an epoch the hub never had: told recovered=false, given what history has.
    let stale = r#"[{"channel":"ops","since":"0000dead:3"}]"#;
    let mut stale_client = client(Client::Node, &hub.url(), "websocket", Some(stale));
    let ack = until_event(&mut stale_client, "ack").await;
    assert_eq!(ack["data"]["channels"][0]["recovered"], false, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_on_polling_and_on_the_upgrade() {
    let config = SocketIoConfig {
        origins: OriginPolicy::new(&["http://gui.example:8080".to_owned()]),
        ..SocketIoConfig::default()
    };
    let hub = TestHub::start("127.0.0.1", config, NotifsAllow::default()).await;
    let polling = format!("{}/socket.io/?EIO=4&transport=polling", hub.url());
    let (status, body) = curl(&["-H", "Origin: http://evil.example", &polling]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("evil.example"), "{body}");
    let upgrade = format!("{}/socket.io/?EIO=4&transport=websocket", hub.url());
    let ws_headers = [
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "--max-time",
        "3",
    ];
    let mut args: Vec<&str> = ws_headers.to_vec();
    args.extend(["-H", "Origin: http://evil.example", &upgrade]);
    assert_eq!(curl(&args).await.0, 403);
    assert_eq!(hub.endpoint.counts().sockets, 0);

    // The listed origin polls, and may read the answer cross-origin.
    let (status, body) = curl(&["-i", "-H", "Origin: http://gui.example:8080", &polling]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.to_ascii_lowercase()
            .contains("access-control-allow-origin: http://gui.example:8080"),
        "{body}"
    );
    assert!(body.contains("\"sid\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifs_refuses_addresses_outside_the_allow_list_and_names_msg() {
    // Bound on 127.0.0.2 with an allow-list of 127.0.0.1 only: curl connects from 127.0.0.1.
    let only_other = NotifsAllow::new(vec![
        NotifsAllow::parse_range("192.0.2.0/24").expect("range")
    ]);
    let hub = TestHub::start("127.0.0.2", SocketIoConfig::default(), only_other).await;
    let (status, body) = curl(&[&format!("{}/notifs?msg=Edisk%20full", hub.url())]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--notifs-allow"), "{body}");
    assert!(hub.hub.channels().is_empty(), "nothing was published");

    let hub = TestHub::start(
        "127.0.0.1",
        SocketIoConfig::default(),
        NotifsAllow::default(),
    )
    .await;
    for bad in ["msg=Xdisk", "msg=E", "", "msg=%FF"] {
        let (status, body) = curl(&[&format!("{}/notifs?{bad}", hub.url())]).await;
        assert_eq!(status, 400, "{bad}: {body}");
        let error: Value = serde_json::from_str(&body).expect("JSON error");
        assert_eq!(error["field"], "msg", "{bad}: {body}");
    }
    assert!(hub.hub.channels().is_empty(), "nothing was published");
}

/// A raw Engine.IO v4 WebSocket client: opens, connects to `/`, then reads only when told.
async fn raw_engineio(hub: &TestHub) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // a small receive window makes the hub's side fill up after little data
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(hub.addr).await.expect("connect");
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", hub.addr);
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("upgrade");
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "{open}");
    ws.send(Message::text("40")).await.expect("send connect");
    let connected = next_text(&mut ws).await;
    assert!(connected.starts_with("40"), "{connected}");
    ws
}

async fn next_text(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> String {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("a frame");
        match message {
            // Engine.IO's heartbeat (the first ping comes at once): answer, keep reading
            Message::Text(text) if text.as_str() == "2" => {
                ws.send(Message::text("3")).await.expect("pong");
            }
            Message::Text(text) => return text.to_string(),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_is_disconnected_with_a_reason_and_others_get_everything() {
    a_socket_that_stops_reading_on(ChannelCase::Bulk).await;
}

/// The story's channel, where subscribed sockets get two events per publication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_in_the_storys_channel_is_disconnected_too() {
    a_socket_that_stops_reading_on(ChannelCase::Notifs).await;
}

#[derive(Clone, Copy)]
enum ChannelCase {
    Bulk,
    Notifs,
}

async fn a_socket_that_stops_reading_on(case: ChannelCase) {
    let channel = match case {
        ChannelCase::Bulk => "bulk",
        ChannelCase::Notifs => "notifs",
    };
    let subscribe = format!(r#"[{{"channel":"{channel}"}}]"#);
    let config = SocketIoConfig {
        socket_buffer: 256,
        ..SocketIoConfig::default()
    };
    let hub = TestHub::start("127.0.0.1", config, NotifsAllow::default()).await;
    let mut fast = client(Client::Node, &hub.url(), "websocket", Some(&subscribe));
    until_event(&mut fast, "ack").await;
    let mut slow = raw_engineio(&hub).await;
    slow.send(Message::text(format!(
        r#"42["subscribe",{{"channels":{subscribe}}}]"#
    )))
    .await
    .expect("subscribe");
    hub.wait_for_room(channel, 2).await;

    // Hub::publish takes any size (the API checks sizes): large bodies fill the slow socket's
    // TCP buffers and then its queue quickly
    let body = "x".repeat(16 * 1024);
    let total = 1500u64;
    // The fast client reads on its own task; the publisher keeps within 100 notifications of
    // it (its queue holds 256), so only the socket that stopped reading can overflow.
    let read = Arc::new(AtomicU64::new(0));
    let reader = {
        let read = Arc::clone(&read);
        tokio::spawn(async move {
            let mut offsets = Vec::new();
            while (offsets.len() as u64) < total {
                let line = until_event(&mut fast, "notification").await;
                offsets.push(line["data"]["offset"].as_u64().expect("offset"));
                read.store(offsets.len() as u64, Ordering::Release);
            }
            offsets
        })
    };
    for n in 1..=total {
        while n > read.load(Ordering::Acquire) + 100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        hub.publish(channel, Level::Info, &body);
    }
    let offsets = tokio::time::timeout(WAIT, reader)
        .await
        .expect("the fast client kept up")
        .expect("reader");
    assert_eq!(
        offsets,
        (1..=total).collect::<Vec<_>>(),
        "the fast client got every offset in order"
    );
    let counts = hub.endpoint.counts();
    assert_eq!(counts.slow_disconnects, 1, "{counts:?}");

    // The slow one reads again: what was queued, then the reason, then the disconnect.
    let mut told = None;
    loop {
        let text = next_text(&mut slow).await;
        if text.starts_with(r#"42["hub_error""#) {
            told = Some(text);
        } else if text.starts_with("41") {
            break;
        }
    }
    let told = told.expect("the reason came before the disconnect");
    assert!(
        told.contains("4008") && told.contains("slow subscriber"),
        "{told}"
    );
}

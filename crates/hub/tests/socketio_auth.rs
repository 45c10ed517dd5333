//! socket.io subscribers with JWTs (Python `python-socketio`): a socket whose token expires is
//! told why (`hub_error` 4001) and disconnected, and comes back with a fresh token to exactly
//! what it missed.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{drain, events_until, until_event, TestHub};
use protolab_hub::auth::JwtVerifier;
use protolab_hub::socketio::SocketIoConfig;
use protolab_hub::story::NotifsAllow;
use protolab_hub::Level;
use protolab_test_support::{repo_root, require, Background};
use serde_json::Value;
use tokio::process::Command;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// The clock leeway the hub allows past `exp`: it disconnects when it would refuse the token.
const LEEWAY: Duration = Duration::from_secs(5);

fn token(channels: &[&str], expires_in: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims =
        serde_json::json!({ "sub": "test", "channels": channels, "exp": now + expires_in });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("token")
}

fn python_client(url: &str, token: &str, subscribe: &str) -> Background {
    let mut cmd = Command::new(require("python3", "apt-get install -y python3"));
    cmd.arg(repo_root().join("tests/peers/socketio_client.py"))
        .arg(url)
        .args(["--transports", "websocket", "--token", token])
        .args(["--subscribe", subscribe])
        .kill_on_drop(true);
    Background::spawn(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_disconnected_when_its_token_expires_and_resumes_with_a_new_one() {
    let verifier = JwtVerifier::hs256(SECRET).expect("secret");
    let config = SocketIoConfig::default().with_jwt(verifier);
    let hub = TestHub::start("127.0.0.1", config, NotifsAllow::default()).await;
    let started = Instant::now();
    let mut first = python_client(
        &hub.url(),
        &token(&["notifs", "ops"], 2),
        r#"[{"channel":"ops"}]"#,
    );
    let ack = until_event(&mut first, "ack").await;
    assert!(ack["data"]["channels"][0]["epoch"].is_string(), "{ack}");
    hub.wait_for_room("ops", 1).await;
    hub.publish("ops", Level::Info, "one");
    hub.publish("ops", Level::Info, "two");
    let mut events = events_until(&mut first, "disconnect").await;
    let elapsed = started.elapsed();
    // python-socketio may print a handler's line after a later one's
    events.extend(drain(&mut first, Duration::from_millis(500)).await);
    let expired = events
        .iter()
        .find(|e| e["event"] == "hub_error" && e["data"]["code"] == 4001)
        .unwrap_or_else(|| panic!("no hub_error 4001: {events:?}"));
    assert!(
        expired["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("token expired")),
        "{expired}"
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(2) + LEEWAY * 2,
        "disconnected after {elapsed:?}"
    );
    let offsets: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "notification" && e["data"]["channel"] == "ops")
        .filter_map(|e| e["data"]["offset"].as_u64())
        .collect();
    assert_eq!(offsets.len(), 2, "{events:?}");
    let epoch = ack["data"]["channels"][0]["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub.endpoint.counts().sockets > 0 {
        assert!(Instant::now() < deadline, "the hub still counts the socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    hub.publish("ops", Level::Info, "three");
    let since = format!(r#"[{{"channel":"ops","since":"{epoch}:2"}}]"#);
    let mut back = python_client(&hub.url(), &token(&["notifs", "ops"], 60), &since);
    let mut events = events_until(&mut back, "ack").await;
    events.extend(drain(&mut back, Duration::from_millis(1000)).await);
    let ack = events.iter().find(|e| e["event"] == "ack").expect("ack");
    assert_eq!(ack["data"]["channels"][0]["recovered"], true, "{ack}");
    let missed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "notification" && e["data"]["channel"] == "ops")
        .map(|e| &e["data"]["body"])
        .collect();
    assert_eq!(missed, ["three"], "{events:?}");
}

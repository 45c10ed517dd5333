// Several `protolab hub` processes sharing one real redis-server through `--broker`: what is
// published on one instance reaches subscribers (Python `websockets`, Node `socket.io-client`,
// curl's SSE) on the others, once and in order, and a restarted instance loses nothing.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use protolab_test_support::{repo_root, require, RedisServer};
use serde_json::{json, Value};

use super::hub::{curl, start_hub};

/// A peer process whose stdout JSON lines arrive on a channel.
struct Peer {
    child: Child,
    lines: Receiver<Value>,
}

impl Peer {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("peer starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if sender.send(value).is_err() {
                        break;
                    }
                }
            }
        });
        Self { child, lines }
    }

    /// The next line whose `key` is `value`.
    fn next(&self, key: &str, value: &str) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(15))
                .unwrap_or_else(|_| panic!("no {key}={value} line within 15 s"));
            if line[key] == value {
                return line;
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `protolab hub --broker URL` killed when dropped.
struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    fn start(home: &std::path::Path, redis: &RedisServer) -> Self {
        let (child, base) = start_hub(home, &["--broker", &redis.url()]);
        Self { child, base }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// POSTs `body` to `/api/publish` on `base`; the 202 answer.
fn publish(base: &str, body: &Value) -> Value {
    let (status, text) = curl(&[
        "-H",
        "content-type: application/json",
        "--data",
        &body.to_string(),
        &format!("{base}/api/publish"),
    ]);
    assert_eq!(status, "202", "{text}");
    serde_json::from_str(&text).expect("publish answers JSON")
}

fn notification(channel: &str, body: &str) -> Value {
    json!({"channel": channel, "level": "info", "title": "", "body": body})
}

/// Python `websockets` on B and Node `socket.io-client` on B get what curl publishes on A, in
/// order; an idempotency key sent to A and then to B is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_hub_gets_what_another_hub_publishes() {
    let redis = RedisServer::start().await;
    let home = tempfile::tempdir().expect("temp dir");
    let a = Instance::start(home.path(), &redis);
    let b = Instance::start(home.path(), &redis);
    let ws_url = format!("{}/connection/ws", b.base.replacen("http", "ws", 1));
    let mut python = Command::new(require("python3", "apt-get install -y python3"));
    python
        .arg(repo_root().join("tests/peers/hub_ws_client.py"))
        .arg(&ws_url)
        .args([
            "--send",
            r#"{"type":"subscribe","id":1,"channels":[{"channel":"ops"}]}"#,
        ])
        .args(["--notifications", "7", "--timeout", "30"]);
    let subscriber = Peer::spawn(python);
    let subscribed = subscriber.next("type", "subscribed");
    assert_eq!(subscribed["channel"], "ops", "{subscribed}");

    let node = require(
        "node",
        "apt-get install -y nodejs (scripts/install-test-peers)",
    );
    let mut socketio = Command::new(node);
    socketio
        .arg(repo_root().join("tests/peers/socketio_client.mjs"))
        .args([b.base.as_str(), "--transports", "websocket"]);
    let story_page = Peer::spawn(socketio);
    story_page.next("event", "connect");

    for n in 1..=5 {
        publish(&a.base, &notification("ops", &format!("ops {n}")));
    }
    let mut keyed = notification("ops", "once");
    keyed["idempotency_key"] = json!("deploy-42");
    let first = publish(&a.base, &keyed);
    let again = publish(&b.base, &keyed);
    assert_eq!(first["offset"], 6, "{first}");
    assert_eq!(
        again["offset"], first["offset"],
        "B answers the offset A gave the key"
    );
    publish(&b.base, &notification("ops", "after the key"));

    let mut received = Vec::new();
    for _ in 0..7 {
        let message = subscriber.next("type", "notification");
        received.push((
            message["offset"].as_u64().expect("offset"),
            message["body"].as_str().expect("body").to_owned(),
        ));
    }
    let expected: Vec<(u64, String)> = (1..=5)
        .map(|n| (n, format!("ops {n}")))
        .chain([(6, "once".to_owned()), (7, "after the key".to_owned())])
        .collect();
    assert_eq!(received, expected, "every offset once, in order, on B");

    // The socket joins room `notifs` right after its connect is answered.
    std::thread::sleep(Duration::from_millis(300));
    let (status, text) = curl(&[&format!("{}/notifs?msg=Edisk%20full", a.base)]);
    assert_eq!(status, "202", "{text}");
    assert_eq!(
        story_page.next("event", "newmessage")["data"],
        json!({"message": "Edisk full"})
    );
}

/// Reads SSE from `url` with curl for at most `seconds`: the (id, data) of each
/// `notification` event, and the `subscribed` events' data.
fn sse(url: &str, last_event_id: &str, seconds: &str) -> (Vec<(String, Value)>, Vec<Value>) {
    let out = Command::new(require("curl", "apt-get install -y curl"))
        .args(["-sSN", "--max-time", seconds, "-H"])
        .arg(format!("Last-Event-ID: {last_event_id}"))
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut notifications = Vec::new();
    let mut subscribed = Vec::new();
    for event in text.split("\n\n") {
        let field = |name: &str| {
            event
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|v| v.trim_start().to_owned())
        };
        let data = field("data:").map(|d| serde_json::from_str::<Value>(&d).expect("JSON data"));
        match (field("event:").as_deref(), data) {
            (Some("notification"), Some(data)) => {
                notifications.push((field("id:").expect("an id"), data));
            }
            (Some("subscribed"), Some(data)) => subscribed.push(data),
            _ => {}
        }
    }
    (notifications, subscribed)
}

/// curl's SSE on C resumes with `Last-Event-ID` after C is killed and started again on the
/// same Redis, while A went on publishing: it gets exactly what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_on_a_restarted_hub_with_nothing_lost() {
    let redis = RedisServer::start().await;
    let home = tempfile::tempdir().expect("temp dir");
    let a = Instance::start(home.path(), &redis);
    let mut c = Instance::start(home.path(), &redis);
    let epoch = publish(&a.base, &notification("ops", "ops 1"))["epoch"]
        .as_str()
        .expect("epoch")
        .to_owned();
    for n in 2..=3 {
        publish(&a.base, &notification("ops", &format!("ops {n}")));
    }
    let url = |c: &Instance| format!("{}/connection/sse?channel=ops", c.base);
    let (seen, _) = sse(&url(&c), &format!("{epoch}:0"), "2");
    let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [1, 2, 3].map(|n| format!("{epoch}:{n}")),
        "C serves A's notifications"
    );
    let last = seen.last().expect("a last event").0.clone();

    c.kill();
    for n in 4..=6 {
        publish(&a.base, &notification("ops", &format!("ops {n}")));
    }
    let c = Instance::start(home.path(), &redis);
    let (missed, subscribed) = sse(&url(&c), &last, "2");
    assert_eq!(subscribed.len(), 1, "{subscribed:?}");
    assert_eq!(subscribed[0]["recovered"], true, "{subscribed:?}");
    let bodies: Vec<&str> = missed
        .iter()
        .map(|(_, data)| data["body"].as_str().expect("body"))
        .collect();
    assert_eq!(
        bodies,
        ["ops 4", "ops 5", "ops 6"],
        "exactly what it missed"
    );
}

/// A Redis that does not answer stops the hub at start with exit 1 and the URL; a broker that
/// is neither `memory` nor a Redis URL is a usage error (exit 2) naming the flag.
#[test]
fn an_unreachable_redis_or_a_bad_broker_stops_the_hub_with_the_reason() {
    let home = tempfile::tempdir().expect("temp dir");
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://127.0.0.1:{free_port}");
    let mut hub = Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home.path())
        .args(["hub", "--port", "0", "--broker", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protolab runs");
    // A hub that ignored the broker would serve on forever: bound the wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while hub.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = hub.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = hub.wait_with_output().expect("protolab output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&url), "names the URL: {stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));

    let out = Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home.path())
        .args(["hub", "--port", "0", "--broker", "http://127.0.0.1:6379"])
        .output()
        .expect("protolab runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--broker"), "{stderr}");
}

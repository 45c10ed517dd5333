//! The hub against real peers: curl publishes, Python `websockets` and curl subscribe, on a hub
//! served in-process on a port-0 listener.

mod api;
mod expiry;
mod gui;
mod jwt;
mod sse;
mod ws;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use protolab_hub::app::{AppConfig, AppState, SharedState};
use protolab_hub::{router, serve, Hub, HubConfig, ServeOptions, Server};
use protolab_test_support::Peer;

/// A 32-byte HS256 secret the test hubs verify tokens with.
pub const JWT_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
/// The API key test hubs configured with keys accept.
pub const API_KEY: &str = "test-key-0123456789abcdef";

/// A hub on 127.0.0.1:0.
pub struct TestHub {
    /// The listener, until shut down.
    pub server: Option<Server>,
    /// The hub's state, for looking inside.
    pub state: SharedState,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl TestHub {
    /// A hub with the defaults changed by `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut HubConfig, &mut AppConfig)) -> Self {
        let mut hub_config = HubConfig::default();
        let mut app_config = AppConfig::default();
        tweak(&mut hub_config, &mut app_config);
        let state = AppState::new(Arc::new(Hub::new(hub_config)), app_config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let server = serve(
            listener,
            router(Arc::clone(&state)),
            Arc::clone(&state),
            ServeOptions::default(),
        )
        .expect("serve");
        let base = format!("http://{}", server.local_addr());
        Self {
            server: Some(server),
            state,
            base,
        }
    }

    /// The `/connection/ws` URL with `query` (`?token=...` or empty).
    pub fn ws_url(&self, query: &str) -> String {
        format!(
            "{}/connection/ws{query}",
            self.base.replacen("http", "ws", 1)
        )
    }
}

/// Runs curl with `args` and returns (status, body).
pub async fn curl(args: &[&str]) -> (u16, String) {
    let output = Peer::Curl
        .command(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let status = status.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl gave no status: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (status, body.to_owned())
}

/// POSTs `body` to `path` with curl, with an API key when given.
pub async fn post(
    hub: &TestHub,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", hub.base);
    let auth = key.map(|k| format!("Authorization: Bearer {k}"));
    // through a file: a body can be larger than an argument may be
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), body).expect("write body");
    let data = format!("@{}", file.path().display());
    let mut args = vec![
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &data,
        &url,
    ];
    if let Some(auth) = &auth {
        args.extend(["-H", auth]);
    }
    let (status, text) = curl(&args).await;
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// Publishes `n` notifications on `channel` (no key: loopback is open without a key file).
pub async fn publish_n(hub: &TestHub, channel: &str, n: usize, key: Option<&str>) -> Vec<u64> {
    let mut offsets = Vec::new();
    for i in 0..n {
        let body = format!(r#"{{"channel":"{channel}","level":"warning","body":"n{i}"}}"#);
        let (status, json) = post(hub, "/api/publish", &body, key).await;
        assert_eq!(status, 202, "{json}");
        offsets.push(json["offset"].as_u64().expect("offset"));
    }
    offsets
}

/// Runs the Python subscriber with `args`; its JSON lines.
pub async fn python_subscriber(args: &[String]) -> Vec<serde_json::Value> {
    let output = Peer::PythonHubWs
        .command(args)
        .stdout(Stdio::piped())
        .output()
        .await
        .expect("python subscriber runs");
    assert!(
        output.status.success(),
        "subscriber failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// The offsets of the notifications in `messages` on `channel`.
pub fn offsets(messages: &[serde_json::Value], channel: &str) -> Vec<u64> {
    messages
        .iter()
        .filter(|m| m["type"] == "notification" && m["channel"] == channel)
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect()
}

/// An HS256 token for `channels`, expiring `expires_in` seconds from now (negative: expired).
pub fn token(channels: &[&str], expires_in: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let claims =
        serde_json::json!({ "sub": "test", "channels": channels, "exp": now + expires_in });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET),
    )
    .expect("token")
}

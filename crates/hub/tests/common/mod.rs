//! A hub with the socket.io endpoint and `/notifs`, served on a port-0 listener, and the
//! socket.io peers the tests start.
#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use protolab_hub::broker::Broker;
use protolab_hub::socketio::{socketio, SocketIoConfig, SocketIoEndpoint};
use protolab_hub::story::{notifs_routes, NotifsAllow};
use protolab_hub::{Hub, HubConfig, Level, Publication, PublicationLimits};
use protolab_test_support::{repo_root, require, Background};
use serde_json::Value;
use tokio::process::Command;

pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestHub {
    pub hub: Arc<Hub>,
    pub broker: Arc<Broker>,
    pub endpoint: SocketIoEndpoint,
    pub addr: SocketAddr,
}

impl TestHub {
    pub async fn start(ip: &str, config: SocketIoConfig, allow: NotifsAllow) -> Self {
        let hub = Arc::new(Hub::new(HubConfig::default()));
        let broker = Arc::new(Broker::Memory(Arc::clone(&hub)));
        Self::start_on(broker, ip, config, allow).await
    }

    /// A hub over `broker` (Redis, for hubs that share one).
    pub async fn start_on(
        broker: Arc<Broker>,
        ip: &str,
        config: SocketIoConfig,
        allow: NotifsAllow,
    ) -> Self {
        let hub = Arc::clone(broker.hub());
        let endpoint = socketio(Arc::clone(&broker), config);
        let router = endpoint.clone().mount(notifs_routes(
            Arc::clone(&broker),
            allow,
            PublicationLimits::default(),
        ));
        let ip: IpAddr = ip.parse().expect("ip");
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        Self {
            hub,
            broker,
            endpoint,
            addr,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn publish(&self, channel: &str, level: Level, body: &str) -> u64 {
        self.hub
            .publish(Publication {
                channel: channel.parse().expect("channel"),
                level,
                title: String::new(),
                body: body.to_owned(),
                data: None,
                idempotency_key: None,
            })
            .expect("publish")
            .offset
    }

    /// Waits until `n` sockets are in `room` (joined through the channel's forwarding task).
    pub async fn wait_for_room(&self, room: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.endpoint.io.to(room.to_owned()).sockets().len() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "room {room} never had {n} sockets"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Client {
    Node,
    Python,
}

/// Starts a socket.io client peer printing one JSON line per event.
pub fn client(kind: Client, url: &str, transports: &str, subscribe: Option<&str>) -> Background {
    client_with_query(kind, url, transports, subscribe, None)
}

/// [`client`] with a handshake query (`K=V&…`; Node only).
pub fn client_with_query(
    kind: Client,
    url: &str,
    transports: &str,
    subscribe: Option<&str>,
    query: Option<&str>,
) -> Background {
    let peers = repo_root().join("tests/peers");
    let mut cmd = match kind {
        Client::Node => {
            let mut c = Command::new(require("node", "apt-get install -y nodejs"));
            assert!(
                peers.join("node_modules/socket.io-client").is_dir(),
                "peer missing: npm socket.io-client; run scripts/install-test-peers"
            );
            c.arg(peers.join("socketio_client.mjs"));
            c
        }
        Client::Python => {
            let mut c = Command::new(require("python3", "apt-get install -y python3"));
            c.arg(peers.join("socketio_client.py"));
            c
        }
    };
    cmd.arg(url).args(["--transports", transports]);
    if let Some(subscribe) = subscribe {
        cmd.args(["--subscribe", subscribe]);
    }
    if let Some(query) = query {
        cmd.args(["--query", query]);
    }
    cmd.kill_on_drop(true);
    Background::spawn(cmd)
}

/// Reads the peer's events until one named `event` arrives, returning it.
pub async fn until_event(peer: &mut Background, event: &str) -> Value {
    let mut events = events_until(peer, event).await;
    events.pop().expect("the event")
}

/// Reads the peer's events until one named `event` arrives, returning all of them, that one last.
pub async fn events_until(peer: &mut Background, event: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut events = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let line = peer.next_json(left).await;
        assert_ne!(line["event"], "connect_error", "{line}");
        let done = line["event"] == event;
        events.push(line);
        if done {
            return events;
        }
    }
}

/// Every event the peer prints until it has been quiet for `quiet`.
pub async fn drain(peer: &mut Background, quiet: Duration) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some(line) = peer.try_next_json(quiet).await {
        events.push(line);
    }
    events
}

pub async fn curl(args: &[&str]) -> (u16, String) {
    let mut cmd = Command::new(require("curl", "apt-get install -y curl"));
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .args(args);
    let out = protolab_test_support::run(cmd, WAIT).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl printed a status");
    (status.trim().parse().expect("status"), body.to_owned())
}

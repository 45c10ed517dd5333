//! The hub's socket.io v4 endpoint (`/socket.io/`, WebSocket and long-polling), through
//! socketioxide. Rooms are channels: every socket is in room [`NOTIFS_CHANNEL`] from its
//! connect on, and the event `subscribe` `{channels: [{channel, since?}]}` adds more.
//!
//! Delivery runs one forwarding task per channel that has socket.io subscribers: it holds the
//! channel's [`Hub::subscribe`] receiver and emits each notification to the room's sockets,
//! one event each: `notification` in a channel's room; `newmessage` in the story's, plus
//! `notification` to the sockets that subscribed to it. With a Redis broker the rooms are
//! shared with socket.io servers on socket.io's Redis adapter (`redis_adapter`).
//! One receiver per channel rather than per socket keeps the hub's fan-out cost per channel,
//! not per connection, and socketioxide already keeps the room's membership. The task also
//! performs every join to its room, between two notifications, so a socket that recovers gets
//! history up to exactly the offset the task has forwarded and live notifications after it:
//! nothing twice, nothing missed. It starts on the first join and stops once the room is empty.
//!
//! Every buffer is bounded: socketioxide's packet queue per socket
//! ([`SocketIoConfig::socket_buffer`]), the request size ([`SocketIoConfig::max_payload`]), the
//! joins waiting for a channel's task, the sockets at once and the channels per socket. A
//! socket whose queue is full is taken out of its rooms, told why (event `hub_error`, code
//! 4008) as soon as its queue has room, and disconnected; if it never reads again the
//! Engine.IO heartbeat closes it. It reconnects and recovers from its last positions.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;

use serde_json::{json, Value};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler as _;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Sid;
use socketioxide::SocketIo;
use tokio::sync::{mpsc, oneshot};

use crate::auth::{OriginPolicy, TOKEN_EXPIRED_CLOSE, TOKEN_EXPIRED_REASON};
use crate::broker::Broker;
use crate::history::Since;
use crate::hub::Hub;
use crate::notification::{ChannelName, Position};
use crate::protocol::SLOW_SUBSCRIBER_REASON;
use crate::story::NOTIFS_CHANNEL;

pub mod adapter_wire;
mod forwarder;
mod redis_adapter;

use forwarder::Forwarder;

/// Where the endpoint answers, as socket.io clients expect by default.
pub const SOCKETIO_PATH: &str = "/socket.io";

/// Joins that may wait for one channel's forwarding task.
const JOIN_QUEUE: usize = 1024;
/// How often an idle forwarding task checks whether its room emptied.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Decides whether a socket may join a channel, from the token it connected with (the
/// `token` of its socket.io `auth` payload, else its `?token=` query). `Err((code, message))`
/// refuses, with a 401 or 403 in the hub's protocol's terms.
pub type Authorize =
    Arc<dyn Fn(Option<&str>, &ChannelName) -> Result<(), (u16, String)> + Send + Sync>;

/// How long a socket that connected with a token may stay connected (`None`: no limit, e.g.
/// a token that is not valid, whose joins are refused anyway). At its end the socket gets
/// `hub_error` [`TOKEN_EXPIRED_CLOSE`] and is disconnected.
pub type TokenTimeLeft = Arc<dyn Fn(&str) -> Option<Duration> + Send + Sync>;

/// The socket.io endpoint's limits and policy.
#[derive(Clone)]
pub struct SocketIoConfig {
    /// Browser origins allowed to connect (checked on the upgrade and on every poll).
    pub origins: OriginPolicy,
    /// Most sockets at once; more are refused at connect with a `connect_error`. Default 20,000.
    pub max_sockets: usize,
    /// Packets socketioxide may queue for one socket before it counts as slow. Default 2,048:
    /// above the default history length, so a client can recover a whole history at once.
    pub socket_buffer: usize,
    /// Largest request (a poll's body, a WebSocket message) a client may send. Default 64 KiB.
    pub max_payload: u64,
    /// Most channels (rooms) one socket may be in, `notifs` included. Default 64.
    pub max_channels_per_socket: usize,
    /// Engine.IO heartbeat: how often the hub pings. Default 25 s, socket.io's own.
    pub ping_interval: Duration,
    /// Engine.IO heartbeat: how long a pong may take. Default 20 s.
    pub ping_timeout: Duration,
    /// Subscribe authorization; `None` leaves subscribing open (the lab's local default).
    pub authorize: Option<Authorize>,
    /// With a Redis broker: the key of socket.io's Redis adapter (npm
    /// `@socket.io/redis-adapter`, its `key` option) whose rooms the hub shares with socket.io
    /// servers on the same Redis; `None` shares none. Default `socket.io`, the adapter's own.
    pub redis_adapter_key: Option<String>,
    /// When a socket's token stops being valid; `None`: sockets are never disconnected for it.
    pub token_time_left: Option<TokenTimeLeft>,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            origins: OriginPolicy::default(),
            max_sockets: 20_000,
            socket_buffer: 2048,
            max_payload: 64 * 1024,
            max_channels_per_socket: 64,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            authorize: None,
            redis_adapter_key: Some(adapter_wire::DEFAULT_KEY.to_owned()),
            token_time_left: None,
        }
    }
}

impl std::fmt::Debug for SocketIoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoConfig")
            .field("origins", &self.origins)
            .field("max_sockets", &self.max_sockets)
            .field("socket_buffer", &self.socket_buffer)
            .field("max_payload", &self.max_payload)
            .field("max_channels_per_socket", &self.max_channels_per_socket)
            .field("authorize", &self.authorize.is_some())
            .field("redis_adapter_key", &self.redis_adapter_key)
            .field("token_time_left", &self.token_time_left.is_some())
            .finish_non_exhaustive()
    }
}

/// Counts for `/metrics` and `/admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SocketIoCounts {
    /// Sockets connected now.
    pub sockets: usize,
    /// Channels with a forwarding task now.
    pub forwarded_channels: usize,
    /// Sockets disconnected because their queue overflowed, since start.
    pub slow_disconnects: u64,
}

/// The socket.io endpoint: mount it on the hub's Router with [`SocketIoEndpoint::mount`].
#[derive(Clone)]
pub struct SocketIoEndpoint {
    /// socketioxide's layer (answers under [`SOCKETIO_PATH`], passes everything else on).
    pub layer: SocketIoLayer,
    /// socketioxide's handle, for emitting from elsewhere.
    pub io: SocketIo,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SocketIoEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoEndpoint")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl SocketIoEndpoint {
    /// `router` with the socket.io endpoint and its Origin check in front of it.
    pub fn mount<S>(self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let origins = Arc::new(self.shared.config.origins.clone());
        router
            .layer(self.layer)
            .layer(axum::middleware::from_fn_with_state(origins, check_origin))
    }

    /// Sockets, forwarded channels and slow-subscriber disconnects.
    pub fn counts(&self) -> SocketIoCounts {
        SocketIoCounts {
            sockets: self.shared.sockets.load(Ordering::Relaxed),
            forwarded_channels: self.shared.forwarders().len(),
            slow_disconnects: self.shared.slow_disconnects.load(Ordering::Relaxed),
        }
    }
}

/// Builds the socket.io endpoint over `broker`: rooms are fed from this process's hub, which
/// the broker keeps up to date with every hub process sharing it.
pub fn socketio(broker: Arc<Broker>, config: SocketIoConfig) -> SocketIoEndpoint {
    let max_payload = usize::try_from(config.max_payload).unwrap_or(usize::MAX);
    let (layer, io) = SocketIo::builder()
        .req_path(SOCKETIO_PATH)
        .max_buffer_size(config.socket_buffer.max(1))
        .max_payload(config.max_payload)
        .ws_max_message_size(max_payload)
        .ws_max_frame_size(max_payload)
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        .build_layer();
    if let (Broker::Redis(redis), Some(key)) = (&*broker, &config.redis_adapter_key) {
        redis_adapter::start(redis, io.clone(), key.clone());
    }
    let shared = Arc::new(Shared {
        hub: Arc::clone(broker.hub()),
        broker,
        io: io.clone(),
        config,
        forwarders: Mutex::new(HashMap::new()),
        sockets: AtomicUsize::new(0),
        slow: Mutex::new(HashSet::new()),
        slow_disconnects: AtomicU64::new(0),
        notifs_subscribers: Mutex::new(HashSet::new()),
    });
    // Event handlers are registered in the admitting middleware, which runs before the hub
    // answers the client's connect: a client that emits `subscribe` as soon as it is
    // connected would otherwise race the connect handler's registration and be ignored.
    let admit = {
        let shared = Arc::clone(&shared);
        move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let shared = Arc::clone(&shared);
            async move {
                shared.admit()?;
                shared.register(&socket, auth.ok());
                Ok::<(), Refused>(())
            }
        }
    };
    let on_connect = {
        let shared = Arc::clone(&shared);
        move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let shared = Arc::clone(&shared);
            async move { shared.join_story(socket, auth.ok()).await }
        }
    };
    io.ns("/", on_connect.with(admit));
    SocketIoEndpoint { layer, io, shared }
}

async fn check_origin(
    State(origins): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with(SOCKETIO_PATH) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let origin = header_text(headers, header::ORIGIN);
    if let Err(shown) = origins.check(headers) {
        return (
            StatusCode::FORBIDDEN,
            format!("origin {shown:?} may not connect; add it to the hub's allowed origins\n"),
        )
            .into_response();
    }
    // A listed page on another origin polls with cross-origin requests: let it read the answers.
    let cors = origin
        .filter(|o| origins.lists(o))
        .and_then(|o| HeaderValue::from_str(&o).ok());
    let mut response = if request.method() == Method::OPTIONS && cors.is_some() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    if let Some(origin) = cors {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// A header's value; one that is not text reads as a NUL, which matches no origin or host.
fn header_text(headers: &axum::http::HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|value| value.to_str().unwrap_or("\u{0}").to_owned())
}

/// A socket that asks to join a channel's room, and where its answer goes.
struct Join {
    socket: SocketRef,
    since: Since,
    /// Asked for with `subscribe`, not the story's room every socket is in from its connect.
    explicit: bool,
    reply: oneshot::Sender<Value>,
}

struct Shared {
    hub: Arc<Hub>,
    broker: Arc<Broker>,
    io: SocketIo,
    config: SocketIoConfig,
    forwarders: Mutex<HashMap<ChannelName, mpsc::Sender<Join>>>,
    sockets: AtomicUsize,
    slow: Mutex<HashSet<Sid>>,
    slow_disconnects: AtomicU64,
    /// Sockets that subscribed to the story's channel with `subscribe`: they get its
    /// `notification` events as well as the `newmessage` every socket gets.
    notifs_subscribers: Mutex<HashSet<Sid>>,
}

#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Shared {
    fn admit(&self) -> Result<(), Refused> {
        let limit = self.config.max_sockets;
        self.sockets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map(drop)
            .map_err(|_| {
                Refused(format!(
                    "the hub has its limit of {limit} socket.io connections; retry later"
                ))
            })
    }

    fn register(self: &Arc<Self>, socket: &SocketRef, auth: Option<Value>) {
        let token = token_of(socket, auth.as_ref());
        let expiry = token
            .as_deref()
            .zip(self.config.token_time_left.as_ref())
            .and_then(|(token, time_left)| time_left(token))
            .map(|left| tokio::spawn(expire(socket.clone(), left)).abort_handle());
        {
            let shared = Arc::clone(self);
            socket.on_disconnect(move |socket: SocketRef| {
                let shared = Arc::clone(&shared);
                if let Some(expiry) = &expiry {
                    expiry.abort();
                }
                async move {
                    shared.sockets.fetch_sub(1, Ordering::AcqRel);
                    shared.slow_set().remove(&socket.id);
                    shared.notifs_subscribers().remove(&socket.id);
                }
            });
        }
        {
            let shared = Arc::clone(self);
            socket.on(
                "subscribe",
                move |socket: SocketRef, TryData(request): TryData<Value>, ack: AckSender| {
                    let shared = Arc::clone(&shared);
                    let token = token.clone();
                    async move {
                        let reply = shared
                            .on_subscribe(&socket, token.as_deref(), request.ok())
                            .await;
                        let _ = ack.send(&reply);
                    }
                },
            );
        }
        let shared = Arc::clone(self);
        socket.on(
            "unsubscribe",
            move |socket: SocketRef, TryData(request): TryData<Value>, ack: AckSender| {
                let shared = Arc::clone(&shared);
                async move {
                    let reply = on_unsubscribe(&shared, &socket, request.ok());
                    let _ = ack.send(&reply);
                }
            },
        );
    }

    /// Every socket is in the story's room from its connect on.
    async fn join_story(self: Arc<Self>, socket: SocketRef, auth: Option<Value>) {
        let token = token_of(&socket, auth.as_ref());
        let notifs: ChannelName = match NOTIFS_CHANNEL.parse() {
            Ok(channel) => channel,
            Err(_) => return,
        };
        let joined = self
            .join(&socket, token.as_deref(), notifs, Since::Now, false)
            .await;
        if joined.get("error").is_some() {
            let _ = socket.emit("hub_error", &joined);
        }
    }

    async fn on_subscribe(
        self: &Arc<Self>,
        socket: &SocketRef,
        token: Option<&str>,
        request: Option<Value>,
    ) -> Value {
        let wanted = match parse_subscribe(request.as_ref(), self.config.max_channels_per_socket) {
            Ok(wanted) => wanted,
            Err(message) => return json!({"error": {"code": 400, "message": message}}),
        };
        // socketioxide marks a socket connected just after it answers the connect, so a
        // client that subscribes at once can be here a moment before: emits would fail.
        for _ in 0..1000 {
            if socket.connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut results = Vec::with_capacity(wanted.len());
        for (channel, since) in wanted {
            results.push(self.join(socket, token, channel, since, true).await);
        }
        json!({ "channels": results })
    }

    /// Joins `socket` to `channel`'s room through the channel's forwarding task; the answer
    /// is the ack's entry for the channel.
    async fn join(
        self: &Arc<Self>,
        socket: &SocketRef,
        token: Option<&str>,
        channel: ChannelName,
        since: Since,
        explicit: bool,
    ) -> Value {
        let refuse = |code: u16, message: String| json!({"channel": channel, "error": {"code": code, "message": message}});
        if let Some(authorize) = &self.config.authorize {
            if let Err((code, message)) = authorize(token, &channel) {
                return refuse(code, message);
            }
        }
        let rooms = socket.rooms();
        let limit = self.config.max_channels_per_socket;
        if !rooms.iter().any(|room| room == channel.as_str()) && rooms.len() >= limit {
            return refuse(429, format!("this connection is in {limit} channels already, the most allowed; unsubscribe from one first"));
        }
        if self.slow_set().contains(&socket.id) {
            return refuse(429, SLOW_SUBSCRIBER_REASON.to_owned());
        }
        // With Redis, what other hub processes published must be in this hub's history before
        // the forwarding task recovers the socket's missed notifications from it.
        if let Err(e) = self.broker.catch_up(&channel).await {
            return refuse(503, e.to_string());
        }
        let (reply, answer) = oneshot::channel();
        let join = Join {
            socket: socket.clone(),
            since,
            explicit,
            reply,
        };
        if let Err(message) = self.send_join(&channel, join) {
            return refuse(503, message);
        }
        answer.await.unwrap_or_else(|_| {
            refuse(
                503,
                "the channel's delivery stopped; subscribe again".to_owned(),
            )
        })
    }

    fn send_join(self: &Arc<Self>, channel: &ChannelName, join: Join) -> Result<(), String> {
        let mut forwarders = self.forwarders();
        let join = match forwarders.get(channel) {
            Some(queue) => match queue.try_send(join) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(format!("too many subscribes to {channel} at once; retry"));
                }
                Err(mpsc::error::TrySendError::Closed(join)) => join,
            },
            None => join,
        };
        let subscription = self
            .hub
            .subscribe(channel, &Since::Now)
            .map_err(|e| e.to_string())?;
        let (queue, joins) = mpsc::channel(JOIN_QUEUE);
        // a fresh queue has room
        let _ = queue.try_send(join);
        forwarders.insert(channel.clone(), queue);
        let forwarder = Forwarder::new(Arc::clone(self), channel.clone(), subscription.position);
        tokio::spawn(forwarder.run(subscription.live, joins));
        Ok(())
    }

    fn forwarders(&self) -> MutexGuard<'_, HashMap<ChannelName, mpsc::Sender<Join>>> {
        self.forwarders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn slow_set(&self) -> MutexGuard<'_, HashSet<Sid>> {
        self.slow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn notifs_subscribers(&self) -> MutexGuard<'_, HashSet<Sid>> {
        self.notifs_subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Disconnects `socket` when its token expires, `left` from now, after telling it why.
async fn expire(socket: SocketRef, left: Duration) {
    tokio::time::sleep(left).await;
    tracing::info!(socket = %socket.id, "socket.io subscriber disconnected: its token expired");
    socket.leave_all();
    let reason = json!({"code": TOKEN_EXPIRED_CLOSE, "message": TOKEN_EXPIRED_REASON});
    let _ = socket.emit("hub_error", &reason);
    let _ = socket.disconnect();
}

fn on_unsubscribe(shared: &Shared, socket: &SocketRef, request: Option<Value>) -> Value {
    let channels = request
        .as_ref()
        .and_then(|r| r.get("channels"))
        .and_then(Value::as_array);
    let Some(channels) = channels else {
        return json!({"error": {"code": 400, "message": "channels: give a list of channel names"}});
    };
    let mut left = Vec::new();
    for name in channels.iter().filter_map(Value::as_str) {
        if let Ok(channel) = name.parse::<ChannelName>() {
            if channel.as_str() == NOTIFS_CHANNEL {
                shared.notifs_subscribers().remove(&socket.id);
            }
            socket.leave(channel.as_str().to_owned());
            left.push(channel);
        }
    }
    json!({ "channels": left })
}

/// Reads a `subscribe` payload: `{"channels": [{"channel": "ops", "since": "EPOCH:OFFSET"}]}`,
/// `since` absent (live only), `"start"` (all history holds) or a position.
fn parse_subscribe(
    request: Option<&Value>,
    max: usize,
) -> Result<Vec<(ChannelName, Since)>, String> {
    let channels = request
        .and_then(|r| r.get("channels"))
        .and_then(Value::as_array)
        .ok_or("channels: give a list of {channel, since?} objects")?;
    if channels.is_empty() || channels.len() > max {
        return Err(format!("channels: give 1 to {max} channels"));
    }
    channels
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let channel = entry
                .get("channel")
                .and_then(Value::as_str)
                .ok_or(format!(
                    "channels[{i}].channel: missing; give a channel name"
                ))?
                .parse::<ChannelName>()
                .map_err(|e| format!("channels[{i}].{e}"))?;
            let since = match entry.get("since") {
                None | Some(Value::Null) => Since::Now,
                Some(Value::String(s)) if s == "start" => Since::Start,
                Some(Value::String(s)) => Since::Position(
                    s.parse::<Position>()
                        .map_err(|e| format!("channels[{i}].since: {}", e.reason))?,
                ),
                Some(_) => {
                    return Err(format!(
                        "channels[{i}].since: give \"start\" or \"EPOCH:OFFSET\""
                    ))
                }
            };
            Ok((channel, since))
        })
        .collect()
}

/// The token a socket connected with: its `auth` payload's `token`, else its `?token=`.
fn token_of(socket: &SocketRef, auth: Option<&Value>) -> Option<Arc<str>> {
    auth.and_then(|auth| auth.get("token"))
        .and_then(Value::as_str)
        .map(Arc::from)
        .or_else(|| query_token(socket.req_parts().uri.query()).map(Arc::from))
}

fn query_token(query: Option<&str>) -> Option<String> {
    protolab_wire::http1::query::pairs(query?)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_payloads_are_read_or_refused_by_field() {
        let ok = json!({"channels": [{"channel": "ops"}, {"channel": "x", "since": "start"}, {"channel": "y", "since": "ab:7"}]});
        let wanted = parse_subscribe(Some(&ok), 8).expect("valid");
        assert_eq!(wanted[0].1, Since::Now);
        assert_eq!(wanted[1].1, Since::Start);
        assert!(matches!(&wanted[2].1, Since::Position(p) if p.offset == 7));
        for (bad, field) in [
            (json!({}), "channels"),
            (json!({"channels": []}), "channels"),
            (
                json!({"channels": [{"since": "start"}]}),
                "channels[0].channel",
            ),
            (
                json!({"channels": [{"channel": "a b"}]}),
                "channels[0].channel",
            ),
            (
                json!({"channels": [{"channel": "a", "since": 3}]}),
                "channels[0].since",
            ),
            (
                json!({"channels": [{"channel": "a", "since": "x:y"}]}),
                "channels[0].since",
            ),
        ] {
            let err = parse_subscribe(Some(&bad), 8).expect_err(&bad.to_string());
            assert!(err.starts_with(field), "{err} does not name {field}");
        }
        let many = json!({"channels": (0..9).map(|i| json!({"channel": format!("c{i}")})).collect::<Vec<_>>()});
        assert!(parse_subscribe(Some(&many), 8).is_err());
    }
}

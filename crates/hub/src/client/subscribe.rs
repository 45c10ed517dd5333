//! A WebSocket subscriber (`/connection/ws`, docs/hub-protocol.md) that keeps the position of
//! the last notification it got per channel, and on every reconnect (with backoff and jitter)
//! subscribes from those positions: it gets exactly what it missed, or is told it could not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::backoff::Backoff;
use super::stream::{ClientError, HubUrl};
use crate::history::Since;
use crate::notification::{ChannelName, Notification, Position};

/// How often an idle connection is pinged, and how long it may stay silent before it is
/// taken for dead (a hub that vanished without closing).
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to subscribe to.
#[derive(Debug, Clone)]
pub struct SubscriptionRequest {
    /// The channels, each from where to start the first time (later: from the last position).
    pub channels: Vec<(ChannelName, Since)>,
    /// A JWT, sent as `?token=`.
    pub token: Option<String>,
}

/// What the subscriber tells its user.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriberEvent {
    /// Connected to the hub (at this URL, without the token).
    Connected(String),
    /// A channel joined.
    Subscribed {
        /// The channel.
        channel: ChannelName,
        /// Its epoch now.
        epoch: String,
        /// Its last offset now.
        offset: u64,
        /// The position recovery was asked from, if any.
        asked: Option<Position>,
        /// False when the notifications since `asked` could not all be recovered (the hub
        /// restarted with an in-memory history, or history no longer reaches back that far).
        recovered: bool,
    },
    /// A notification, each offset once.
    Notification(Notification),
    /// The connection ended; the next attempt is in `retry_in`.
    Disconnected {
        /// Why.
        reason: String,
        /// The wait before reconnecting.
        retry_in: Duration,
    },
}

/// Why subscribing stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The hub refused (401, 403, 400...): reconnecting would be refused the same way.
    #[error("the hub refused the subscription ({code}): {message}")]
    Refused {
        /// The status or error code.
        code: u16,
        /// The hub's words.
        message: String,
    },
    /// The URL or TLS set-up cannot work.
    #[error("{0}")]
    Setup(String),
}

/// A message from the hub to a WebSocket subscriber, as the client reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HubMessage {
    /// A channel joined.
    Subscribed {
        /// The channel.
        channel: ChannelName,
        /// Its epoch.
        epoch: String,
        /// Its last offset when the subscription began.
        offset: u64,
        /// Whether everything since the asked position follows.
        recovered: bool,
    },
    /// A notification.
    Notification(Notification),
    /// A channel left.
    Unsubscribed {},
    /// The answer to a ping.
    Pong {},
    /// A refusal.
    Error {
        /// An HTTP-like status.
        code: u16,
        /// The hub's words.
        message: String,
        /// The channel concerned, if one.
        #[serde(default)]
        channel: Option<ChannelName>,
    },
}

/// Reads one text frame from the hub; an error for anything else (the subscriber skips those).
pub fn parse_hub_message(text: &str) -> Result<HubMessage, serde_json::Error> {
    serde_json::from_str(text)
}

/// Subscribes and stays subscribed: reconnects after every loss with `backoff`, resuming each
/// channel from its last position. Ends when `events` is closed (Ok) or the hub refuses.
pub async fn subscribe(
    url: HubUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    request: SubscriptionRequest,
    events: mpsc::Sender<SubscriberEvent>,
    mut backoff: Backoff,
) -> Result<(), SubscribeError> {
    let mut state = State {
        positions: HashMap::new(),
        request,
    };
    loop {
        let reason = match connection(&url, tls.as_ref(), &mut state, &events, &mut backoff).await {
            Ok(Ended::EventsClosed) => return Ok(()),
            Ok(Ended::Lost(reason)) => reason,
            Err(Fatal::Refused(code, message)) => {
                return Err(SubscribeError::Refused { code, message })
            }
            Err(Fatal::Setup(why)) => return Err(SubscribeError::Setup(why)),
        };
        let retry_in = backoff.next_delay();
        let event = SubscriberEvent::Disconnected { reason, retry_in };
        if events.send(event).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(retry_in).await;
    }
}

struct State {
    positions: HashMap<ChannelName, Position>,
    request: SubscriptionRequest,
}

impl State {
    /// The subscribe command: each channel from its last position, or as first asked.
    fn command(&self) -> (String, HashMap<ChannelName, Since>) {
        let mut asked = HashMap::new();
        let channels: Vec<serde_json::Value> = self
            .request
            .channels
            .iter()
            .map(|(channel, first)| {
                let since = match self.positions.get(channel) {
                    Some(position) => Since::Position(position.clone()),
                    None => first.clone(),
                };
                let entry = match &since {
                    Since::Now => serde_json::json!({ "channel": channel }),
                    Since::Start => serde_json::json!({ "channel": channel, "since": "start" }),
                    Since::Position(p) => {
                        serde_json::json!({ "channel": channel, "since": p.to_string() })
                    }
                };
                asked.insert(channel.clone(), since);
                entry
            })
            .collect();
        let command =
            serde_json::json!({ "type": "subscribe", "id": 1, "channels": channels }).to_string();
        (command, asked)
    }
}

enum Ended {
    EventsClosed,
    Lost(String),
}

enum Fatal {
    Refused(u16, String),
    Setup(String),
}

async fn connection(
    url: &HubUrl,
    tls: Option<&Arc<rustls::ClientConfig>>,
    state: &mut State,
    events: &mpsc::Sender<SubscriberEvent>,
    backoff: &mut Backoff,
) -> Result<Ended, Fatal> {
    let address = url.url("/connection/ws", true);
    let stream = match url.connect(tls, CONNECT_TIMEOUT).await {
        Ok(stream) => stream,
        Err(ClientError::BadUrl(why)) => return Err(Fatal::Setup(why)),
        Err(ClientError::Connection(why)) => return Ok(Ended::Lost(why)),
    };
    let mut target = address.clone();
    if let Some(token) = &state.request.token {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        target = format!("{target}?{query}");
    }
    let handshake_request = target
        .into_client_request()
        .map_err(|err| Fatal::Setup(format!("cannot build the WebSocket request: {err}")))?;
    let handshake = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async(handshake_request, stream),
    )
    .await;
    let mut socket = match handshake {
        Err(_) => return Ok(Ended::Lost("the WebSocket handshake timed out".to_owned())),
        Ok(Ok((socket, _))) => socket,
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            if status.is_client_error() && status.as_u16() != 429 {
                return Err(Fatal::Refused(status.as_u16(), message));
            }
            return Ok(Ended::Lost(format!("the hub answered {status}: {message}")));
        }
        Ok(Err(err)) => return Ok(Ended::Lost(format!("WebSocket handshake failed: {err}"))),
    };
    if events
        .send(SubscriberEvent::Connected(address))
        .await
        .is_err()
    {
        return Ok(Ended::EventsClosed);
    }
    let (command, asked) = state.command();
    if let Err(err) = socket.send(Message::text(command)).await {
        return Ok(Ended::Lost(format!("sending subscribe failed: {err}")));
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut ping_id = 1u64;
    loop {
        let message = tokio::select! {
            message = tokio::time::timeout(SILENCE_LIMIT, socket.next()) => message,
            _ = ping.tick() => {
                ping_id += 1;
                let ping = serde_json::json!({ "type": "ping", "id": ping_id }).to_string();
                if let Err(err) = socket.send(Message::text(ping)).await {
                    return Ok(Ended::Lost(format!("sending a ping failed: {err}")));
                }
                continue;
            }
        };
        let text = match message {
            Err(_) => {
                return Ok(Ended::Lost(format!(
                    "nothing from the hub for {SILENCE_LIMIT:?}"
                )))
            }
            Ok(None) => return Ok(Ended::Lost("the connection closed".to_owned())),
            Ok(Some(Err(err))) => return Ok(Ended::Lost(format!("the connection failed: {err}"))),
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Close(frame)))) => {
                let reason = match frame {
                    Some(frame) if frame.code == CloseCode::Away => {
                        "the hub is going away (restarting or stopping)".to_owned()
                    }
                    Some(frame) => format!(
                        "the hub closed the connection ({}): {}",
                        u16::from(frame.code),
                        frame.reason
                    ),
                    None => "the hub closed the connection".to_owned(),
                };
                return Ok(Ended::Lost(reason));
            }
            Ok(Some(Ok(_))) => continue,
        };
        let event = match parse_hub_message(&text) {
            Ok(HubMessage::Subscribed {
                channel,
                epoch,
                offset,
                recovered,
            }) => {
                backoff.reset();
                let since = asked.get(&channel).cloned().unwrap_or(Since::Now);
                let same_epoch = state
                    .positions
                    .get(&channel)
                    .is_some_and(|p| p.epoch == epoch);
                if !same_epoch {
                    // Everything of a new epoch is wanted unless only live ones were asked for.
                    let start = if since == Since::Now { offset } else { 0 };
                    state.positions.insert(
                        channel.clone(),
                        Position {
                            epoch: epoch.clone(),
                            offset: start,
                        },
                    );
                }
                SubscriberEvent::Subscribed {
                    channel,
                    epoch,
                    offset,
                    asked: match since {
                        Since::Position(p) => Some(p),
                        _ => None,
                    },
                    recovered,
                }
            }
            Ok(HubMessage::Notification(notification)) => {
                let position = state.positions.get(&notification.channel);
                if position.is_some_and(|p| {
                    p.epoch == notification.epoch && notification.offset <= p.offset
                }) {
                    continue;
                }
                state
                    .positions
                    .insert(notification.channel.clone(), notification.position());
                SubscriberEvent::Notification(notification)
            }
            Ok(HubMessage::Error {
                code,
                message,
                channel,
            }) => {
                let message = match channel {
                    Some(channel) => format!("channel {channel}: {message}"),
                    None => message,
                };
                if matches!(code, 400 | 401 | 403 | 413) {
                    return Err(Fatal::Refused(code, message));
                }
                return Ok(Ended::Lost(format!("the hub said ({code}): {message}")));
            }
            Ok(HubMessage::Unsubscribed {} | HubMessage::Pong {}) => continue,
            Err(err) => {
                tracing::debug!(%err, "ignoring a message the subscriber does not know");
                continue;
            }
        };
        if events.send(event).await.is_err() {
            return Ok(Ended::EventsClosed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Level;
    use crate::protocol::Reply;

    #[test]
    fn reads_what_the_hub_writes() {
        let channel: ChannelName = "ops".parse().expect("channel");
        let subscribed = Reply::Subscribed {
            id: 1,
            channel: &channel,
            epoch: "e1",
            offset: 4,
            recovered: false,
        }
        .to_json();
        assert_eq!(
            parse_hub_message(&subscribed).expect("subscribed"),
            HubMessage::Subscribed {
                channel: channel.clone(),
                epoch: "e1".to_owned(),
                offset: 4,
                recovered: false
            }
        );
        let notification = Notification {
            channel: channel.clone(),
            offset: 5,
            epoch: "e1".to_owned(),
            level: Level::Warning,
            title: "t".to_owned(),
            body: "b".to_owned(),
            data: Some(serde_json::json!({"host": "a"})),
            time_ms: 9,
        };
        let json = Reply::Notification(&notification).to_json();
        assert_eq!(
            parse_hub_message(&json).expect("notification"),
            HubMessage::Notification(notification)
        );
        let error = Reply::Error {
            id: Some(1),
            code: 403,
            message: "token does not allow channel ops",
            channel: Some(&channel),
        }
        .to_json();
        assert!(matches!(
            parse_hub_message(&error),
            Ok(HubMessage::Error { code: 403, .. })
        ));
        assert!(parse_hub_message(r#"{"type":"surprise"}"#).is_err());
        assert!(parse_hub_message("not json").is_err());
    }
}

//! `GET /connection/ws`: the WebSocket subscriber connection (docs/hub-protocol.md).

use std::sync::Arc;
use std::task::Poll;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamMap;

use crate::app::{ConnectionGuard, SharedState};
use crate::auth::{expired, Grant, TOKEN_EXPIRED_CLOSE, TOKEN_EXPIRED_REASON};
use crate::broker::BrokerError;
use crate::error::ApiError;
use crate::hub::HubError;
use crate::metrics::Transport;
use crate::notification::{ChannelName, Notification};
use crate::protocol::{
    notification_frame, parse_command, Command, Reply, SLOW_SUBSCRIBER_CLOSE,
    SLOW_SUBSCRIBER_REASON,
};

// An idle subscriber holds its buffers for as long as it is connected: commands are small, so a
// small read buffer does. The write buffer is empty until a message is sent; notifications
// already waiting when a subscriber's task runs go out together, up to this many bytes per
// write (tungstenite keeps the buffer's capacity, so this bounds what a connection holds after
// a burst).
const READ_BUFFER: usize = 1024;
const WRITE_BATCH: usize = 4096;
/// Most notifications one turn of a connection's loop sends, so a busy channel cannot keep one
/// task from yielding.
const MAX_BATCH: usize = 64;

/// How long a closing connection waits for its close frame to be written: a slow subscriber
/// that reads again within it learns why it was closed.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn routes() -> Router<SharedState> {
    Router::new().route("/connection/ws", get(upgrade))
}

/// `?token=` of a query string, if any.
pub(crate) fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

/// Runs a write; one blocked past the write timeout makes this a slow subscriber. Nearly every
/// write completes at once: only one that has to wait arms the timer, so a delivery does not
/// add and remove a timer entry.
async fn within_write_timeout(
    state: &SharedState,
    write: impl std::future::Future<Output = Result<(), axum::Error>>,
) -> Result<(), End> {
    let mut write = std::pin::pin!(write);
    let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    let written = match first {
        Poll::Ready(written) => written,
        Poll::Pending => {
            match tokio::time::timeout(state.config.limits.write_timeout, write).await {
                Ok(written) => written,
                Err(_) => return Err(SLOW),
            }
        }
    };
    written.map_err(|_| End::Gone)
}

async fn upgrade(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Before the upgrade, so a refused client gets an HTTP status and never a byte of data.
    state.authorize_origin(&headers)?;
    let grant = state.authorize_subscriber(&headers, query_token(query.as_deref()).as_deref())?;
    let guard = ConnectionGuard::open(&state, Transport::WebSocket)?;
    let max_message = state.config.limits.max_command_bytes;
    Ok(ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BATCH)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            Connection {
                socket,
                grant,
                subscriptions: StreamMap::new(),
                guard,
            }
            .run()
            .await;
        })
        .into_response())
}

struct Connection {
    socket: WebSocket,
    grant: Grant,
    subscriptions: StreamMap<ChannelName, BroadcastStream<Arc<Notification>>>,
    guard: ConnectionGuard,
}

/// How a connection ends.
enum End {
    /// The client went away or the socket failed.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

const SLOW: End = End::Close(SLOW_SUBSCRIBER_CLOSE, SLOW_SUBSCRIBER_REASON);

impl Connection {
    async fn run(mut self) {
        let state = Arc::clone(self.guard.state());
        let keepalive = state.config.limits.keepalive;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        // Made once: a fresh one per turn of the loop would join and leave the token's waiter
        // list on every delivery.
        let shutdown = state.shutdown.cancelled();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut token_expiry = std::pin::pin!(expired(self.grant.deadline()));
        let end = loop {
            tokio::select! {
                () = &mut shutdown => break End::Close(1001, "the hub is shutting down; reconnect and recover"),
                () = &mut token_expiry => break End::Close(TOKEN_EXPIRED_CLOSE, TOKEN_EXPIRED_REASON),
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(end) = self.command(&state, text.as_str()).await {
                            break end;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        break End::Close(1003, "commands are JSON text messages");
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break End::Gone,
                },
                Some((_, item)) = self.subscriptions.next(), if !self.subscriptions.is_empty() => {
                    if let Err(end) = self.deliver(&state, item).await {
                        break end;
                    }
                }
                _ = ping.tick() => {
                    if let Err(end) = self.send_message(Message::Ping(Default::default())).await {
                        break end;
                    }
                }
            }
        };
        if let End::Close(code, reason) = end {
            if code == SLOW_SUBSCRIBER_CLOSE {
                state.metrics.slow_disconnect(Transport::WebSocket);
            }
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            // Queued behind whatever a stalled client has not read yet: it gets the reason if
            // it reads again within the timeout.
            let close = self.socket.send(Message::Close(Some(frame)));
            let _ = tokio::time::timeout(CLOSE_GRACE, close).await;
        }
    }

    /// Sends `first` and every notification already waiting after it, in writes of up to
    /// [`WRITE_BATCH`] bytes: in a burst, one syscall carries several notifications.
    async fn deliver(
        &mut self,
        state: &SharedState,
        first: Result<Arc<Notification>, BroadcastStreamRecvError>,
    ) -> Result<(), End> {
        let mut item = first;
        let mut sent = 0;
        let outcome = loop {
            let notification = match item {
                Ok(notification) => notification,
                Err(BroadcastStreamRecvError::Lagged(_)) => break Err(SLOW),
            };
            let frame = Message::Text(notification_frame(&notification));
            // Buffered; tungstenite writes once the buffer passes WRITE_BATCH.
            if let Err(end) = within_write_timeout(state, self.socket.feed(frame)).await {
                break Err(end);
            }
            sent += 1;
            if sent == MAX_BATCH {
                break Ok(());
            }
            // Polled with this task's own waker, so a pending answer leaves it registered
            // for the next turn of the loop.
            let next =
                std::future::poll_fn(|cx| Poll::Ready(self.subscriptions.poll_next_unpin(cx)))
                    .await;
            match next {
                Poll::Ready(Some((_, next))) => item = next,
                Poll::Ready(None) | Poll::Pending => break Ok(()),
            }
        };
        // What was fed is flushed even when a lag ends the connection: it was in order.
        let flushed = within_write_timeout(state, self.socket.flush()).await;
        if flushed.is_ok() {
            state.metrics.delivered(Transport::WebSocket, sent as u64);
        }
        outcome.and(flushed)
    }

    /// Sends `text`; a write blocked past the write timeout makes this a slow subscriber.
    async fn send(&mut self, text: String) -> Result<(), End> {
        self.send_message(Message::Text(text.into())).await
    }

    async fn send_message(&mut self, message: Message) -> Result<(), End> {
        let state = Arc::clone(self.guard.state());
        within_write_timeout(&state, self.socket.send(message)).await
    }

    async fn command(&mut self, state: &SharedState, text: &str) -> Result<(), End> {
        let command = match parse_command(text, state.config.limits.max_subscriptions) {
            Ok(command) => command,
            Err(err) => {
                let reply = Reply::Error {
                    id: err.id,
                    code: err.code,
                    message: &err.message,
                    channel: None,
                };
                return self.send(reply.to_json()).await;
            }
        };
        match command {
            Command::Ping { id } => self.send(Reply::Pong { id }.to_json()).await,
            Command::Unsubscribe { id, channels } => {
                for channel in &channels {
                    self.subscriptions.remove(channel);
                    self.send(Reply::Unsubscribed { id, channel }.to_json())
                        .await?;
                }
                Ok(())
            }
            Command::Subscribe { id, channels } => {
                for (channel, since) in channels {
                    self.subscribe(state, id, channel, &since).await?;
                }
                Ok(())
            }
        }
    }

    async fn subscribe(
        &mut self,
        state: &SharedState,
        id: u64,
        channel: ChannelName,
        since: &crate::history::Since,
    ) -> Result<(), End> {
        let refuse = |code, message: String| (code, message);
        let refused = if !self.grant.allows(&channel) {
            state.metrics.refused();
            Some(refuse(
                403,
                format!("token does not allow channel {channel}"),
            ))
        } else if !self.subscriptions.contains_key(&channel)
            && self.subscriptions.len() >= state.config.limits.max_subscriptions
        {
            Some(refuse(
                429,
                format!(
                    "this connection has its limit of {} subscriptions; unsubscribe first or open another connection",
                    state.config.limits.max_subscriptions
                ),
            ))
        } else {
            None
        };
        if let Some((code, message)) = refused {
            let reply = Reply::Error {
                id: Some(id),
                code,
                message: &message,
                channel: Some(&channel),
            };
            return self.send(reply.to_json()).await;
        }
        let subscription = match state.broker.subscribe(&channel, since).await {
            Ok(subscription) => subscription,
            Err(err) => {
                // The hub's own limit is the client's to respect (429); a broker that cannot
                // serve is 503: the client may retry the subscribe later.
                let code = match err {
                    BrokerError::Hub(HubError::TooManyChannels { .. }) => 429,
                    _ => 503,
                };
                let message = err.to_string();
                let reply = Reply::Error {
                    id: Some(id),
                    code,
                    message: &message,
                    channel: Some(&channel),
                };
                return self.send(reply.to_json()).await;
            }
        };
        // A resubscribe replaces the old subscription: its live notifications not yet sent
        // are covered by the new one's recovery from the client's position.
        self.subscriptions.remove(&channel);
        let subscribed = Reply::Subscribed {
            id,
            channel: &channel,
            epoch: &subscription.position.epoch,
            offset: subscription.position.offset,
            recovered: subscription.recovery.recovered,
        };
        self.send(subscribed.to_json()).await?;
        let missed = subscription.recovery.missed.len() as u64;
        for notification in &subscription.recovery.missed {
            self.send_message(Message::Text(notification_frame(notification)))
                .await?;
        }
        state.metrics.delivered(Transport::WebSocket, missed);
        // Live notifications published meanwhile wait in the receiver, after the missed ones.
        self.subscriptions
            .insert(channel, BroadcastStream::new(subscription.live));
        Ok(())
    }
}

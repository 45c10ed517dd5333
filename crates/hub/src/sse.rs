//! `GET /connection/sse`: Server-Sent Events subscriptions, resumed with `Last-Event-ID`.
//!
//! Each event's id is where the client stands: `EPOCH:OFFSET` with one channel; with several,
//! every channel's position, `CHANNEL@EPOCH:OFFSET` joined by commas (no channel name holds a
//! comma), so a reconnecting browser recovers every channel from the one id it sends back.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::{Stream, StreamExt as _};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamMap;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::app::{ConnectionGuard, SharedState};
use crate::auth::{expired, TOKEN_EXPIRED_CLOSE, TOKEN_EXPIRED_REASON};
use crate::broker::BrokerError;
use crate::error::ApiError;
use crate::history::Since;
use crate::metrics::Transport;
use crate::notification::{ChannelName, InvalidField, Notification, Position};
use crate::protocol::notification_json;

/// Longest `Last-Event-ID` / `since` accepted, in bytes.
pub const MAX_EVENT_ID_LEN: usize = 16 * 1024;

/// A parsed `/connection/sse` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseQuery {
    /// `channel=` (one or more, no repeats).
    pub channels: Vec<ChannelName>,
    /// `since=`: a position as `Last-Event-ID` carries it.
    pub since: Option<String>,
    /// `token=`: a subscriber JWT.
    pub token: Option<String>,
}

/// Parses the query string of `/connection/sse`, with at most `max_channels` channels.
pub fn parse_sse_query(query: &str, max_channels: usize) -> Result<SseQuery, InvalidField> {
    let mut parsed = SseQuery {
        channels: Vec::new(),
        since: None,
        token: None,
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "channel" => {
                let channel: ChannelName = value.parse()?;
                if parsed.channels.contains(&channel) {
                    return Err(InvalidField::new(
                        "channel",
                        format!("{channel} given twice"),
                    ));
                }
                if parsed.channels.len() == max_channels {
                    return Err(InvalidField::new(
                        "channel",
                        format!("at most {max_channels} channels per connection"),
                    ));
                }
                parsed.channels.push(channel);
            }
            "since" if parsed.since.is_none() => parsed.since = Some(value.into_owned()),
            "token" if parsed.token.is_none() => parsed.token = Some(value.into_owned()),
            "since" | "token" => {
                return Err(InvalidField::new(
                    "query",
                    format!("{key} given more than once"),
                ))
            }
            _ => {
                return Err(InvalidField::new(
                    "query",
                    format!("unknown parameter {key:?}; use channel, since, token"),
                ))
            }
        }
    }
    if parsed.channels.is_empty() {
        return Err(InvalidField::new("channel", "missing; add ?channel=NAME"));
    }
    Ok(parsed)
}

/// Where to start each of `channels`, from a `Last-Event-ID` (or `since=`): `EPOCH:OFFSET`
/// for a single channel, or `CHANNEL@EPOCH:OFFSET` items joined by commas. Channels it does not
/// name start live.
pub fn parse_last_event_id(id: &str, channels: &[ChannelName]) -> Result<Vec<Since>, InvalidField> {
    let refuse = |reason: String| InvalidField::new("Last-Event-ID", reason);
    if id.len() > MAX_EVENT_ID_LEN {
        return Err(refuse(format!("longer than {MAX_EVENT_ID_LEN} bytes")));
    }
    let mut since = vec![Since::Now; channels.len()];
    let id = id.trim();
    if id == "start" {
        return Ok(vec![Since::Start; channels.len()]);
    }
    if !id.contains('@') {
        let [_] = channels else {
            return Err(refuse(
                "with several channels, positions are CHANNEL@EPOCH:OFFSET, comma-separated"
                    .to_owned(),
            ));
        };
        since[0] = Since::Position(id.parse().map_err(|e: InvalidField| refuse(e.reason))?);
        return Ok(since);
    }
    for item in id.split(',') {
        let (name, position) = item
            .trim()
            .rsplit_once('@')
            .ok_or_else(|| refuse(format!("{item:?} is not CHANNEL@EPOCH:OFFSET")))?;
        let index = channels
            .iter()
            .position(|c| c.as_str() == name)
            .ok_or_else(|| refuse(format!("names channel {name:?}, which is not subscribed")))?;
        let position: Position = position
            .parse()
            .map_err(|e: InvalidField| refuse(e.reason))?;
        since[index] = Since::Position(position);
    }
    Ok(since)
}

pub(crate) fn routes() -> Router<SharedState> {
    Router::new().route("/connection/sse", get(subscribe))
}

async fn subscribe(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let limits = state.config.limits;
    let query = parse_sse_query(query.as_deref().unwrap_or(""), limits.max_subscriptions)?;
    let origin = state
        .authorize_origin(&headers)
        .map(|()| headers.get(header::ORIGIN).cloned())?;
    let grant = state.authorize_subscriber(&headers, query.token.as_deref())?;
    if let Some(channel) = query.channels.iter().find(|c| !grant.allows(c)) {
        state.metrics.refused();
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!("token does not allow channel {channel}"),
        ));
    }
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::field("Last-Event-ID", "not ASCII"))
        })
        .transpose()?
        .or(query.since.as_deref());
    let starts = match last_event_id {
        Some(id) => parse_last_event_id(id, &query.channels)?,
        None => vec![Since::Now; query.channels.len()],
    };
    let guard = ConnectionGuard::open(&state, Transport::Sse)?;
    let mut stream = SseStream {
        shutdown: Box::pin(state.shutdown.clone().cancelled_owned()),
        guard,
        subscriptions: StreamMap::new(),
        positions: Vec::new(),
        pending: VecDeque::new(),
        multi: query.channels.len() > 1,
        done: false,
        token_expiry: Box::pin(expired(grant.deadline())),
    };
    for (channel, since) in query.channels.into_iter().zip(starts) {
        let subscription = state
            .broker
            .subscribe(&channel, &since)
            .await
            .map_err(|err| {
                let status = match err {
                    BrokerError::Hub(_) => axum::http::StatusCode::TOO_MANY_REQUESTS,
                    _ => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                };
                ApiError::new(status, err.to_string())
            })?;
        // Until the missed notifications have gone out, the client stands just before the
        // first of them: an id sent with an earlier event must recover them all.
        let start = subscription.recovery.missed.first().map_or_else(
            || subscription.position.clone(),
            |first| Position {
                epoch: first.epoch.clone(),
                offset: first.offset.saturating_sub(1),
            },
        );
        let subscribed = serde_json::json!({
            "channel": channel,
            "epoch": subscription.position.epoch,
            "offset": subscription.position.offset,
            "recovered": subscription.recovery.recovered,
        });
        stream.positions.push((channel.clone(), start));
        stream.pending.push_back(Pending::Subscribed(subscribed));
        stream.pending.extend(
            subscription
                .recovery
                .missed
                .into_iter()
                .map(Pending::Notification),
        );
        stream
            .subscriptions
            .insert(channel, BroadcastStream::new(subscription.live));
    }
    let mut response = Sse::new(stream.into_stream())
        .keep_alive(
            KeepAlive::new()
                .interval(limits.keepalive)
                .text("keepalive"),
        )
        .into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // proxies such as nginx buffer responses unless told not to
    response_headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(origin) = origin {
        response_headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        response_headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(response)
}

enum Pending {
    Subscribed(serde_json::Value),
    Notification(Arc<Notification>),
    SlowSubscriber,
    TokenExpired,
}

struct SseStream {
    /// Made once: a fresh one per event would join and leave the token's waiter list on every
    /// delivery.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    guard: ConnectionGuard,
    subscriptions: StreamMap<ChannelName, BroadcastStream<Arc<Notification>>>,
    positions: Vec<(ChannelName, Position)>,
    pending: VecDeque<Pending>,
    multi: bool,
    done: bool,
    /// Ready when the subscriber's token expires: the stream ends there. Made once, like
    /// `shutdown`.
    token_expiry: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl SseStream {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send {
        futures_util::stream::unfold(self, |mut this| async move {
            let event = this.next_event().await?;
            Some((Ok(event), this))
        })
    }

    async fn next_event(&mut self) -> Option<Event> {
        if let Some(pending) = self.pending.pop_front() {
            return Some(self.event(pending));
        }
        if self.done {
            return None;
        }
        tokio::select! {
            () = self.shutdown.as_mut() => None,
            () = self.token_expiry.as_mut() => {
                self.done = true;
                Some(self.event(Pending::TokenExpired))
            }
            item = self.subscriptions.next() => match item? {
                (_, Ok(notification)) => Some(self.event(Pending::Notification(notification))),
                (_, Err(BroadcastStreamRecvError::Lagged(_))) => {
                    self.guard.state().metrics.slow_disconnect(Transport::Sse);
                    self.done = true;
                    Some(self.event(Pending::SlowSubscriber))
                }
            },
        }
    }

    fn event(&mut self, pending: Pending) -> Event {
        match pending {
            Pending::Subscribed(data) => Event::default()
                .event("subscribed")
                .id(self.id())
                .data(data.to_string()),
            Pending::Notification(notification) => {
                if let Some((_, position)) = self
                    .positions
                    .iter_mut()
                    .find(|(c, _)| *c == notification.channel)
                {
                    *position = notification.position();
                }
                self.guard.state().metrics.delivered(Transport::Sse, 1);
                Event::default()
                    .event("notification")
                    .id(self.id())
                    .data(notification_json(&notification).as_str())
            }
            Pending::SlowSubscriber => Event::default().event("error").data(
                serde_json::json!({
                    "code": 4008,
                    "message": crate::protocol::SLOW_SUBSCRIBER_REASON,
                })
                .to_string(),
            ),
            Pending::TokenExpired => Event::default().event("error").data(
                serde_json::json!({
                    "code": TOKEN_EXPIRED_CLOSE,
                    "message": TOKEN_EXPIRED_REASON,
                })
                .to_string(),
            ),
        }
    }

    fn id(&self) -> String {
        if self.multi {
            let items: Vec<String> = self
                .positions
                .iter()
                .map(|(channel, position)| format!("{channel}@{position}"))
                .collect();
            items.join(",")
        } else {
            self.positions
                .first()
                .map(|(_, position)| position.to_string())
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(names: &[&str]) -> Vec<ChannelName> {
        names.iter().map(|n| n.parse().expect("channel")).collect()
    }

    #[test]
    fn last_event_ids() {
        let one = channels(&["ops"]);
        let at = |e: &str, o| {
            Since::Position(Position {
                epoch: e.into(),
                offset: o,
            })
        };
        assert_eq!(parse_last_event_id("ab:3", &one), Ok(vec![at("ab", 3)]));
        let two = channels(&["ops", "a@b:c"]);
        assert_eq!(
            parse_last_event_id("a@b:c@e1:9, ops@e2:4", &two),
            Ok(vec![at("e2", 4), at("e1", 9)])
        );
        assert_eq!(
            parse_last_event_id("ops@e2:4", &two),
            Ok(vec![at("e2", 4), Since::Now])
        );
        for bad in ["ab:3", "x@e:1", "ops@e:x", "ops@:1"] {
            assert!(parse_last_event_id(bad, &two).is_err(), "{bad}");
        }
        assert!(parse_last_event_id("ab", &one).is_err());
    }

    #[test]
    fn queries() {
        let q = parse_sse_query("channel=ops&channel=x&since=e:1&token=t", 4).expect("valid");
        assert_eq!(q.channels, channels(&["ops", "x"]));
        assert_eq!(
            (q.since.as_deref(), q.token.as_deref()),
            (Some("e:1"), Some("t"))
        );
        for bad in [
            "",
            "channel=ops&channel=ops",
            "channel=a&channel=b&channel=c",
            "channel=ops&x=1",
            "channel=a%20b",
        ] {
            assert!(parse_sse_query(bad, 2).is_err(), "{bad}");
        }
    }
}

//! The WebSocket subscriber protocol's messages (docs/hub-protocol.md): commands a client sends,
//! parsed by a plain function so they can be fuzzed, and the messages the hub sends back.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};

use crate::history::Since;
use crate::notification::{ChannelName, Notification};

/// The close code a subscriber gets when it fell more than the subscriber queue behind (on
/// the WebSocket protocol as a close code, on socket.io and SSE inside an error event).
pub const SLOW_SUBSCRIBER_CLOSE: u16 = 4008;
/// The reason sent with [`SLOW_SUBSCRIBER_CLOSE`].
pub const SLOW_SUBSCRIBER_REASON: &str =
    "slow subscriber: reconnect and recover from your last positions";

/// A command from a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Subscribe to channels, each from where the client stands.
    Subscribe {
        /// Echoed in the answers.
        id: u64,
        /// The channels and where to start each.
        channels: Vec<(ChannelName, Since)>,
    },
    /// Leave channels.
    Unsubscribe {
        /// Echoed in the answers.
        id: u64,
        /// The channels.
        channels: Vec<ChannelName>,
    },
    /// Asks for a pong.
    Ping {
        /// Echoed in the pong.
        id: u64,
    },
}

/// A command refused: answered with an `error` message (code 400, or 413 for too many channels)
/// carrying the command's id when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The command's id, if it had a readable one.
    pub id: Option<u64>,
    /// 400 or 413.
    pub code: u16,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    #[serde(rename = "type")]
    kind: String,
    id: Option<u64>,
    #[serde(default)]
    channels: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscription {
    channel: ChannelName,
    #[serde(default)]
    since: Option<String>,
}

/// Parses one text message into a command. `max_channels` bounds the channels one command may
/// name.
pub fn parse_command(text: &str, max_channels: usize) -> Result<Command, CommandError> {
    let refuse = |id, message: String| CommandError {
        id,
        code: 400,
        message,
    };
    let raw: RawCommand = serde_json::from_str(text).map_err(|err| {
        refuse(
            None,
            format!("not a command: {err}; send {{\"type\":\"subscribe\"|\"unsubscribe\"|\"ping\",\"id\":N,...}}"),
        )
    })?;
    let id = raw
        .id
        .ok_or_else(|| refuse(None, "the command has no numeric `id`".to_owned()))?;
    let channels_of =
        |value: Option<serde_json::Value>| -> Result<Vec<serde_json::Value>, CommandError> {
            let list = match value {
                Some(serde_json::Value::Array(list)) if !list.is_empty() => list,
                _ => {
                    return Err(refuse(
                        Some(id),
                        "`channels` must be a non-empty array".to_owned(),
                    ))
                }
            };
            if list.len() > max_channels {
                return Err(CommandError {
                    id: Some(id),
                    code: 413,
                    message: format!(
                        "{} channels in one command, at most {max_channels} allowed",
                        list.len()
                    ),
                });
            }
            Ok(list)
        };
    match raw.kind.as_str() {
        "subscribe" => {
            let mut channels = Vec::new();
            for value in channels_of(raw.channels)? {
                let sub: RawSubscription = serde_json::from_value(value).map_err(|err| {
                    refuse(
                        Some(id),
                        format!(
                            "a subscribe entry is {{\"channel\":NAME,\"since\":POSITION?}}: {err}"
                        ),
                    )
                })?;
                let since = match sub.since.as_deref() {
                    None => Since::Now,
                    Some("start") => Since::Start,
                    Some(position) => Since::Position(position.parse().map_err(|err| {
                        refuse(
                            Some(id),
                            format!("since for channel {}: {err}; or \"start\"", sub.channel),
                        )
                    })?),
                };
                channels.push((sub.channel, since));
            }
            Ok(Command::Subscribe { id, channels })
        }
        "unsubscribe" => {
            let channels = channels_of(raw.channels)?
                .into_iter()
                .map(|value| {
                    serde_json::from_value::<ChannelName>(value).map_err(|err| {
                        refuse(
                            Some(id),
                            format!("unsubscribe names channels as strings: {err}"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Command::Unsubscribe { id, channels })
        }
        "ping" if raw.channels.is_none() => Ok(Command::Ping { id }),
        "ping" => Err(refuse(Some(id), "ping takes no channels".to_owned())),
        other => Err(refuse(
            Some(id),
            format!("unknown command type {other:?}; use subscribe, unsubscribe or ping"),
        )),
    }
}

/// A message from the hub to a subscriber.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Reply<'a> {
    /// A channel joined: where it stands and whether the missed notifications that follow are
    /// exactly all the client missed.
    Subscribed {
        /// The subscribe command's id.
        id: u64,
        /// The channel.
        channel: &'a ChannelName,
        /// Its epoch.
        epoch: &'a str,
        /// Its last offset when the subscription began.
        offset: u64,
        /// False when history no longer held everything since the client's position.
        recovered: bool,
    },
    /// A notification.
    Notification(&'a Notification),
    /// A channel left.
    Unsubscribed {
        /// The command's id.
        id: u64,
        /// The channel.
        channel: &'a ChannelName,
    },
    /// The answer to a ping.
    Pong {
        /// The ping's id.
        id: u64,
    },
    /// A command, or one channel of it, refused.
    Error {
        /// The command's id, if it had one.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// An HTTP-like status: 400, 401, 403, 413, 429, 503.
        code: u16,
        /// What went wrong and what to do.
        message: &'a str,
        /// The channel concerned, when one.
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a ChannelName>,
    },
}

impl Reply<'_> {
    /// The message as one JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no custom errors.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Notifications whose encodings one thread keeps. A publication reaches every subscriber of its
/// channel before the next few are published, so a handful covers interleaved channels; a miss
/// only costs one more encoding.
const RECENT_ENCODINGS: usize = 64;

/// Encodings of recent notifications, by identity: the `Weak` keeps the allocation alive, so no
/// other notification can have the same address while its entry exists.
struct RecentEncodings(VecDeque<(Weak<Notification>, Utf8Bytes)>);

impl RecentEncodings {
    const fn new() -> Self {
        Self(VecDeque::new())
    }

    fn get_or_encode(
        &mut self,
        notification: &Arc<Notification>,
        encode: impl FnOnce(&Notification) -> String,
    ) -> Utf8Bytes {
        let wanted = Arc::as_ptr(notification);
        // The newest entry is the likeliest: one publication goes to every subscriber in a row.
        if let Some((_, encoded)) = self
            .0
            .iter()
            .rev()
            .find(|(seen, _)| std::ptr::eq(seen.as_ptr(), wanted))
        {
            return encoded.clone();
        }
        let encoded = Utf8Bytes::from(encode(notification));
        if self.0.len() == RECENT_ENCODINGS {
            self.0.pop_front();
        }
        self.0
            .push_back((Arc::downgrade(notification), encoded.clone()));
        encoded
    }
}

thread_local! {
    static WS_FRAMES: RefCell<RecentEncodings> = const { RefCell::new(RecentEncodings::new()) };
    static NOTIFICATION_JSON: RefCell<RecentEncodings> =
        const { RefCell::new(RecentEncodings::new()) };
}

/// The `notification` message for `notification`, serialized once per thread and shared by
/// every WebSocket subscriber it goes to (a clone is a reference count, not a copy): a
/// publication to N subscribers costs one serialization, not N.
pub fn notification_frame(notification: &Arc<Notification>) -> Utf8Bytes {
    WS_FRAMES.with_borrow_mut(|recent| {
        recent.get_or_encode(notification, |n| Reply::Notification(n).to_json())
    })
}

/// `notification` as JSON (an SSE event's data), serialized once per thread like
/// [`notification_frame`].
pub fn notification_json(notification: &Arc<Notification>) -> Utf8Bytes {
    NOTIFICATION_JSON.with_borrow_mut(|recent| {
        recent.get_or_encode(notification, |n| {
            serde_json::to_string(n).unwrap_or_default()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Position;

    #[test]
    fn commands() {
        let cmd = parse_command(
            r#"{"type":"subscribe","id":1,"channels":[{"channel":"ops","since":"e1:7"},{"channel":"x","since":"start"},{"channel":"y"}]}"#,
            8,
        )
        .expect("subscribe");
        let position = Position {
            epoch: "e1".into(),
            offset: 7,
        };
        assert_eq!(
            cmd,
            Command::Subscribe {
                id: 1,
                channels: vec![
                    ("ops".parse().expect("c"), Since::Position(position)),
                    ("x".parse().expect("c"), Since::Start),
                    ("y".parse().expect("c"), Since::Now),
                ]
            }
        );
        assert_eq!(
            parse_command(r#"{"type":"unsubscribe","id":2,"channels":["ops"]}"#, 8),
            Ok(Command::Unsubscribe {
                id: 2,
                channels: vec!["ops".parse().expect("c")]
            })
        );
        assert_eq!(
            parse_command(r#"{"type":"ping","id":3}"#, 8),
            Ok(Command::Ping { id: 3 })
        );
        for (bad, id, code) in [
            ("", None, 400),
            ("[]", None, 400),
            (r#"{"type":"ping"}"#, None, 400),
            (r#"{"type":"ping","id":1,"extra":1}"#, None, 400),
            (r#"{"type":"jump","id":4}"#, Some(4), 400),
            (r#"{"type":"subscribe","id":5,"channels":[]}"#, Some(5), 400),
            (
                r#"{"type":"subscribe","id":6,"channels":[{"channel":"a b"}]}"#,
                Some(6),
                400,
            ),
            (
                r#"{"type":"subscribe","id":7,"channels":[{"channel":"a","since":"7"}]}"#,
                Some(7),
                400,
            ),
            (
                r#"{"type":"subscribe","id":8,"channels":[{"channel":"a","x":1}]}"#,
                Some(8),
                400,
            ),
            (
                r#"{"type":"unsubscribe","id":9,"channels":["a","b","c"]}"#,
                Some(9),
                413,
            ),
        ] {
            let err = parse_command(bad, 2).expect_err(bad);
            assert_eq!((err.id, err.code), (id, code), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn replies() {
        let channel: ChannelName = "ops".parse().expect("c");
        let json = Reply::Subscribed {
            id: 1,
            channel: &channel,
            epoch: "e",
            offset: 3,
            recovered: true,
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"subscribed","id":1,"channel":"ops","epoch":"e","offset":3,"recovered":true}"#
        );
        let json = Reply::Error {
            id: None,
            code: 400,
            message: "m",
            channel: None,
        }
        .to_json();
        assert_eq!(json, r#"{"type":"error","code":400,"message":"m"}"#);
    }

    fn notification(offset: u64) -> Arc<Notification> {
        Arc::new(Notification {
            channel: "ops".parse().expect("c"),
            offset,
            epoch: "e".into(),
            level: crate::notification::Level::Info,
            title: "t".into(),
            body: format!("b{offset}"),
            data: None,
            time_ms: 1,
        })
    }

    #[test]
    fn encodings_are_shared_per_notification_and_never_mixed_up() {
        let first = notification(1);
        let frame = notification_frame(&first);
        assert_eq!(frame.as_str(), Reply::Notification(&first).to_json());
        // the same notification: the same buffer, not a new serialization
        assert_eq!(
            notification_frame(&first).as_str().as_ptr(),
            frame.as_str().as_ptr()
        );
        // equal content but another notification, and many after it: each its own encoding
        for offset in 1..=(RECENT_ENCODINGS as u64 * 2) {
            let other = notification(offset);
            assert_eq!(
                notification_frame(&other).as_str(),
                Reply::Notification(&other).to_json()
            );
            assert_eq!(
                notification_json(&other).as_str(),
                serde_json::to_string(&*other).expect("json")
            );
        }
        // evicted long ago, still encoded right
        assert_eq!(
            notification_frame(&first).as_str(),
            Reply::Notification(&first).to_json()
        );
    }
}

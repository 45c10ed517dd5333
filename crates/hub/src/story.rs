//! The story's own publish interface, unchanged: `GET /notifs?msg=Sdisk%20full`, where the
//! message's first letter is its level (`S`uccess, `W`arning, `E`rror, `I`nfo), accepted only
//! from the addresses in an allow-list, published on channel [`NOTIFS_CHANNEL`].
//!
//! Every socket.io client is in that channel's room and gets the socket.io event `newmessage`
//! `{"message": "<letter><text>"}` the story's page listens to (see [`story_message`]).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ipnet::IpNet;
use serde_json::json;

use crate::broker::Broker;
use crate::notification::{InvalidField, Level, Notification, Publication, PublicationLimits};

/// The channel `/notifs` publishes on and every socket.io client listens to.
pub const NOTIFS_CHANNEL: &str = "notifs";

/// The addresses `/notifs` accepts publications from (`--notifs-allow CIDR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifsAllow(Vec<IpNet>);

impl Default for NotifsAllow {
    /// Loopback only (127.0.0.0/8 and ::1): the daemon runs on the hub's machine.
    fn default() -> Self {
        Self(vec![
            IpNet::from_str("127.0.0.0/8").unwrap_or_default(),
            IpNet::from_str("::1/128").unwrap_or_default(),
        ])
    }
}

impl NotifsAllow {
    /// The given ranges, nothing else.
    pub fn new(ranges: Vec<IpNet>) -> Self {
        Self(ranges)
    }

    /// Parses one `--notifs-allow` value: a CIDR range (`10.0.0.0/8`, `fd00::/8`) or a single
    /// address (`192.0.2.7`).
    pub fn parse_range(s: &str) -> Result<IpNet, InvalidField> {
        let s = s.trim();
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| {
                InvalidField::new(
                    "notifs-allow",
                    format!("{s:?} is not an address or a CIDR range such as 10.0.0.0/8"),
                )
            })
    }

    /// Whether `/notifs` takes publications from `address`. IPv4 addresses mapped into IPv6
    /// (a dual-stack listener's view of an IPv4 peer) count as the IPv4 address.
    pub fn allows(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|range| range.contains(&address))
    }
}

/// The story's level letter for `level`, the inverse of [`Level::from_letter`].
pub fn level_letter(level: Level) -> char {
    match level {
        Level::Success => 'S',
        Level::Warning => 'W',
        Level::Error => 'E',
        Level::Info => 'I',
    }
}

/// The `newmessage` text for `notification`: its level's letter, then its text.
///
/// Rebuilt from the level rather than stored by `/notifs`, so that whatever is published on
/// the channel (`POST /api/publish`, `protolab notify`) reaches the story's page too, and
/// `data` stays the publisher's own. `/notifs?msg=Sdisk full` stores level `success` and body
/// `disk full`, so the rebuilt text is exactly the message as given.
pub fn story_message(notification: &Notification) -> String {
    let letter = level_letter(notification.level);
    match (notification.title.is_empty(), notification.body.is_empty()) {
        (true, _) => format!("{letter}{}", notification.body),
        (false, true) => format!("{letter}{}", notification.title),
        (false, false) => format!("{letter}{}: {}", notification.title, notification.body),
    }
}

/// Reads a `/notifs` query string (without the `?`) into the publication it asks for, or names
/// what is wrong with it: `msg` must be given once, start with a level letter and go on with
/// some text within `limits`.
pub fn parse_notifs_query(
    query: &str,
    limits: &PublicationLimits,
) -> Result<Publication, InvalidField> {
    let pairs = protolab_wire::http1::query::pairs(query)
        .map_err(|e| InvalidField::new("msg", format!("the query does not decode: {e}")))?;
    let mut messages = pairs.into_iter().filter(|(name, _)| name == "msg");
    let (_, message) = messages.next().ok_or_else(|| {
        InvalidField::new(
            "msg",
            "missing; send /notifs?msg=Edisk%20full (S, W, E or I, then the text)",
        )
    })?;
    if messages.next().is_some() {
        return Err(InvalidField::new(
            "msg",
            "given more than once; send one message per request",
        ));
    }
    let mut chars = message.chars();
    let letter = chars
        .next()
        .ok_or_else(|| InvalidField::new("msg", "is empty; send a level letter, then the text"))?;
    let level = Level::from_letter(letter).ok_or_else(|| {
        InvalidField::new(
            "msg",
            format!("starts with {letter:?}; the first letter is the level: S (success), W (warning), E (error) or I (info)"),
        )
    })?;
    let body = chars.as_str();
    if body.trim().is_empty() {
        return Err(InvalidField::new(
            "msg",
            "has a level letter but no text after it",
        ));
    }
    let publication = Publication {
        channel: NOTIFS_CHANNEL
            .parse()
            .map_err(|_| InvalidField::new("channel", "notifs is not a valid channel"))?,
        level,
        title: String::new(),
        body: body.to_owned(),
        data: None,
        idempotency_key: None,
    };
    publication.validate(limits).map_err(|e| {
        // the body is what the story calls the message
        InvalidField::new("msg", e.reason)
    })?;
    Ok(publication)
}

#[derive(Debug)]
struct StoryState {
    broker: Arc<Broker>,
    allow: NotifsAllow,
    limits: PublicationLimits,
}

/// The `/notifs` route. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`: the allow-list needs the peer's
/// address.
pub fn notifs_routes<S>(
    broker: Arc<Broker>,
    allow: NotifsAllow,
    limits: PublicationLimits,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let state = Arc::new(StoryState {
        broker,
        allow,
        limits,
    });
    Router::new()
        .route("/notifs", get(notifs))
        .with_state(state)
}

async fn notifs(
    State(state): State<Arc<StoryState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
) -> Response {
    if !state.allow.allows(peer.ip()) {
        return refuse(
            StatusCode::FORBIDDEN,
            None,
            format!(
                "{} may not publish on /notifs; add its address to --notifs-allow",
                peer.ip().to_canonical()
            ),
        );
    }
    let publication = match parse_notifs_query(query.as_deref().unwrap_or(""), &state.limits) {
        Ok(publication) => publication,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, Some(e.field), e.to_string()),
    };
    match state.broker.publish(publication).await {
        Ok(published) => (StatusCode::ACCEPTED, Json(published)).into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
    }
}

fn refuse(status: StatusCode, field: Option<&str>, message: String) -> Response {
    let body = match field {
        Some(field) => json!({"error": message, "field": field}),
        None => json!({"error": message}),
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_letter_is_the_level_and_the_rest_the_body() {
        let limits = PublicationLimits::default();
        let publication = parse_notifs_query("msg=Edisk%20full", &limits).expect("valid");
        assert_eq!(publication.level, Level::Error);
        assert_eq!(publication.body, "disk full");
        assert_eq!(publication.channel.as_str(), NOTIFS_CHANNEL);
        let publication = parse_notifs_query("x=1&msg=Sok+now", &limits).expect("valid");
        assert_eq!(
            (publication.level, publication.body.as_str()),
            (Level::Success, "ok now")
        );
        for bad in [
            "",
            "msg=",
            "msg=E",
            "msg=E%20",
            "msg=Xdisk",
            "msg=edisk",
            "msg=%ZZ",
            "msg=Ea&msg=Eb",
        ] {
            let err = parse_notifs_query(bad, &limits).expect_err(bad);
            assert_eq!(err.field, "msg", "{bad}");
        }
        let long = format!("msg=E{}", "x".repeat(limits.max_body + 1));
        assert_eq!(
            parse_notifs_query(&long, &limits).map_err(|e| e.field),
            Err("msg")
        );
    }

    #[test]
    fn the_rebuilt_message_is_the_message_as_given() {
        let limits = PublicationLimits::default();
        for given in ["Sdisk full", "Wload 0.9", "Eeth0 down", "Ihello"] {
            let publication = parse_notifs_query(&format!("msg={given}"), &limits).expect(given);
            let notification = Notification {
                channel: publication.channel,
                offset: 1,
                epoch: "e".to_owned(),
                level: publication.level,
                title: publication.title,
                body: publication.body,
                data: None,
                time_ms: 0,
            };
            assert_eq!(story_message(&notification), given);
        }
    }

    #[test]
    fn the_allow_list_matches_ranges_and_mapped_addresses() {
        let allow = NotifsAllow::default();
        assert!(allow.allows("127.0.0.9".parse().expect("ip")));
        assert!(allow.allows("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(allow.allows("::1".parse().expect("ip")));
        assert!(!allow.allows("10.0.0.1".parse().expect("ip")));
        let only = NotifsAllow::new(vec![NotifsAllow::parse_range("192.0.2.7").expect("range")]);
        assert!(only.allows("192.0.2.7".parse().expect("ip")));
        assert!(!only.allows("127.0.0.1".parse().expect("ip")));
        assert!(NotifsAllow::parse_range("10.0.0.0/33").is_err());
    }
}

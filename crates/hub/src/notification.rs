//! What a publisher sends ([`Publication`]), what a subscriber receives ([`Notification`]) and
//! where a subscriber stands in a channel ([`Position`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a notification is shown: the toast colour in a browser, the prefix in a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Neutral information.
    Info,
    /// Something completed.
    Success,
    /// Something needs attention soon.
    Warning,
    /// Something failed.
    Error,
}

impl Level {
    /// Every level, in increasing severity.
    pub const ALL: [Self; 4] = [Self::Info, Self::Success, Self::Warning, Self::Error];

    /// The level's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Success => "success",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }

    /// The level a `/notifs?msg=` message's first letter names (`S`uccess, `W`arning, `E`rror,
    /// `I`nfo), the convention of the daemon-to-GUI service this endpoint keeps compatible with.
    pub fn from_letter(letter: char) -> Option<Self> {
        match letter {
            'S' => Some(Self::Success),
            'W' => Some(Self::Warning),
            'E' => Some(Self::Error),
            'I' => Some(Self::Info),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = InvalidField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str() == s)
            .ok_or_else(|| {
                InvalidField::new("level", "must be one of info, success, warning, error")
            })
    }
}

/// A field of a publication or subscription that was refused, and why: the API's 400 answers
/// name the field so a publisher can fix its request without reading the hub's source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    /// The field's name as the API spells it (`channel`, `title`, `data`...).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl InvalidField {
    /// A refusal of `field` for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// A channel's name: 1 to [`ChannelName::MAX_LEN`] bytes of ASCII letters, digits and `_-.:@`,
/// so it is safe in a URL query, a Redis key, a log line and a metric label without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChannelName(String);

impl ChannelName {
    /// The longest channel name accepted, in bytes.
    pub const MAX_LEN: usize = 128;

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ChannelName {
    type Err = InvalidField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(InvalidField::new("channel", "must not be empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(InvalidField::new(
                "channel",
                format!("is {} bytes, at most {} allowed", s.len(), Self::MAX_LEN),
            ));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-.:@".contains(*c)))
        {
            return Err(InvalidField::new(
                "channel",
                format!("contains {bad:?}; only ASCII letters, digits and _-.:@ are allowed"),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Size limits on what a publisher may send, in bytes of UTF-8 (for `data`, of its compact JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicationLimits {
    /// Longest `title`. Default 256: a toast's heading.
    pub max_title: usize,
    /// Longest `body`. Default 4 KiB: a toast's text, or a log line.
    pub max_body: usize,
    /// Largest `data`, serialized. Default 16 KiB.
    pub max_data: usize,
    /// Longest `idempotency_key`. Default 128.
    pub max_idempotency_key: usize,
}

impl Default for PublicationLimits {
    fn default() -> Self {
        Self {
            max_title: 256,
            max_body: 4096,
            max_data: 16 * 1024,
            max_idempotency_key: 128,
        }
    }
}

/// What a publisher asks the hub to deliver (the body of `POST /api/publish`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publication {
    /// The channel to publish on.
    pub channel: ChannelName,
    /// How it is shown.
    pub level: Level,
    /// A short heading; may be empty when `body` says it all.
    #[serde(default)]
    pub title: String,
    /// The text.
    #[serde(default)]
    pub body: String,
    /// Anything else the publisher wants the subscriber to have, delivered as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// A key the publisher reuses when it retries: the hub delivers a key's publication once
    /// for as long as the channel's history remembers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl Publication {
    /// Checks every field against `limits`, naming the first field that is refused.
    pub fn validate(&self, limits: &PublicationLimits) -> Result<(), InvalidField> {
        let too_long = |field, len: usize, max| {
            InvalidField::new(field, format!("is {len} bytes, at most {max} allowed"))
        };
        if self.title.len() > limits.max_title {
            return Err(too_long("title", self.title.len(), limits.max_title));
        }
        if self.body.len() > limits.max_body {
            return Err(too_long("body", self.body.len(), limits.max_body));
        }
        if self.title.is_empty() && self.body.is_empty() {
            return Err(InvalidField::new(
                "body",
                "title and body are both empty; give at least one",
            ));
        }
        if let Some(data) = &self.data {
            let len = serde_json::to_vec(data).map_or(usize::MAX, |bytes| bytes.len());
            if len > limits.max_data {
                return Err(too_long("data", len, limits.max_data));
            }
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > limits.max_idempotency_key {
                return Err(InvalidField::new(
                    "idempotency_key",
                    format!("must be 1 to {} bytes", limits.max_idempotency_key),
                ));
            }
        }
        Ok(())
    }
}

/// A delivered notification: the publication as stored in its channel's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The channel it was published on.
    pub channel: ChannelName,
    /// Its place in the channel: the first notification of an epoch is 1, each next one 1 more.
    pub offset: u64,
    /// The channel's epoch when it was published (see [`Position`]).
    pub epoch: String,
    /// How it is shown.
    pub level: Level,
    /// Its heading.
    pub title: String,
    /// Its text.
    pub body: String,
    /// The publisher's extra data, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// When the hub accepted it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

impl Notification {
    /// Where a subscriber stands once it has seen this notification.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            offset: self.offset,
        }
    }
}

/// Where a subscriber stands in a channel: the epoch it saw and the last offset it received
/// (0 before any). The epoch changes whenever the channel's history is lost (a restarted
/// in-memory hub, a flushed broker), so offsets from another epoch never alias.
///
/// Written `EPOCH:OFFSET`, the form SSE's `Last-Event-ID` carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The channel's epoch.
    pub epoch: String,
    /// The last offset received.
    pub offset: u64,
}

impl Position {
    /// Longest epoch accepted from a client, in bytes; epochs the hub makes are 16.
    pub const MAX_EPOCH_LEN: usize = 64;
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

impl FromStr for Position {
    type Err = InvalidField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = |reason: &str| InvalidField::new("position", reason.to_owned());
        let (epoch, offset) = s
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| refuse("must be EPOCH:OFFSET"))?;
        if epoch.is_empty()
            || epoch.len() > Self::MAX_EPOCH_LEN
            || !epoch.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(refuse("epoch must be 1 to 64 ASCII letters or digits"));
        }
        if offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse("offset must be a decimal number"));
        }
        let offset = offset
            .parse()
            .map_err(|_| refuse("offset does not fit in 64 bits"))?;
        Ok(Self {
            epoch: epoch.to_owned(),
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_refuse_garbage() {
        let position: Position = "a1b2:42".parse().expect("valid position");
        assert_eq!(position.epoch, "a1b2");
        assert_eq!(position.offset, 42);
        assert_eq!(position.to_string(), "a1b2:42");
        for bad in [
            "",
            ":1",
            "abc",
            "abc:",
            "abc:-1",
            "abc:+1",
            "ab c:1",
            "abc:18446744073709551616",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn channel_names_are_safe_everywhere() {
        assert!("ops.disk:host-1@eu_w".parse::<ChannelName>().is_ok());
        for bad in ["", "a b", "a/b", "é", "a\nb", &"x".repeat(129)] {
            let err = bad.parse::<ChannelName>().expect_err(bad);
            assert_eq!(err.field, "channel");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut publication: Publication =
            serde_json::from_str(r#"{"channel":"ops","level":"error","body":"disk full"}"#)
                .expect("valid publication");
        let limits = PublicationLimits::default();
        assert_eq!(publication.validate(&limits), Ok(()));
        publication.title = "t".repeat(limits.max_title + 1);
        assert_eq!(
            publication.validate(&limits).map_err(|e| e.field),
            Err("title")
        );
        let unknown_level =
            serde_json::from_str::<Publication>(r#"{"channel":"ops","level":"fatal","body":"x"}"#);
        assert!(unknown_level.is_err());
        assert_eq!(Level::from_letter('E'), Some(Level::Error));
        assert_eq!("warning".parse(), Ok(Level::Warning));
    }
}

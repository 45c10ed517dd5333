//! The Redis keys of one hub deployment, all under one prefix.
//!
//! Channel names cannot contain `/` (see [`ChannelName`]), so `/` separates a key's kind, its
//! channel and an idempotency key: no channel's keys can collide with another's.

use crate::notification::ChannelName;

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The channel's epoch, set once per life of the channel's history.
    pub(crate) fn epoch(&self, channel: &ChannelName) -> String {
        format!("{}epoch/{channel}", self.prefix)
    }

    /// The channel's last offset (INCR).
    pub(crate) fn offset(&self, channel: &ChannelName) -> String {
        format!("{}offset/{channel}", self.prefix)
    }

    /// The channel's history: a stream whose entry ids are `OFFSET-0`.
    pub(crate) fn stream(&self, channel: &ChannelName) -> String {
        format!("{}stream/{channel}", self.prefix)
    }

    /// An idempotency key seen on the channel, holding the offset it was published at.
    pub(crate) fn idempotency(&self, channel: &ChannelName, key: &str) -> String {
        format!("{}idem/{channel}/{key}", self.prefix)
    }

    /// The set of channel names, for listing.
    pub(crate) fn channels(&self) -> String {
        format!("{}channels", self.prefix)
    }

    /// The pub/sub channel every hub process listens on.
    pub(crate) fn fanout(&self) -> String {
        format!("{}fanout", self.prefix)
    }
}

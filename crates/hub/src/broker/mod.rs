//! Where the hub's transports publish and subscribe: one in-memory [`Hub`] for a single
//! instance, or Redis ([`RedisBroker`]) so any number of hub processes share fan-out and history.
//!
//! Every method mirrors the [`Hub`] method of the same name, async because a shared broker
//! answers over the network.

use std::sync::Arc;
use std::time::Duration;

use crate::history::{Recovery, Since};
use crate::hub::{ChannelInfo, Hub, HubError, Published, Subscription};
use crate::notification::{ChannelName, Position, Publication};

mod codec;
mod keys;
mod redis_broker;

pub use codec::{decode_notification, MAX_MESSAGE_LEN};
pub use redis_broker::{PublishedObserver, RedisBroker, RedisConfig};

/// The hub's broker: the process's own [`Hub`], or Redis shared by several hub processes.
#[derive(Debug)]
pub enum Broker {
    /// One process: the hub is the broker.
    Memory(Arc<Hub>),
    /// Redis: numbering, history and fan-out are shared; each process's hub delivers to its own
    /// subscribers.
    Redis(RedisBroker),
}

/// Why the broker refused or failed an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The hub's own limits refused it.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// `--broker` is not a Redis URL the client understands.
    #[error("--broker {url}: {reason}; give redis://HOST:PORT[/DB], rediss://HOST:PORT[/DB] or redis+unix:///PATH")]
    InvalidUrl {
        /// The URL, with any password hidden.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis could not be reached or answered with an error.
    #[error("Redis at {url} failed during {operation}: {reason}; check that redis-server runs there and accepts connections (redis-cli -u URL ping)")]
    Unavailable {
        /// The URL, with any password hidden.
        url: String,
        /// What the broker was doing.
        operation: &'static str,
        /// The client's error.
        reason: String,
    },
    /// Redis's TLS certificate is not trusted (or not for its address).
    #[error("Redis at {url} failed the TLS check during {operation}: {reason}; rediss:// trusts the protolab CA (`protolab certs`) or the CA given with --redis-ca FILE: give the CA that signed Redis's certificate")]
    Tls {
        /// The URL, with any password hidden.
        url: String,
        /// What the broker was doing.
        operation: &'static str,
        /// The TLS library's verdict.
        reason: String,
    },
    /// Redis did not answer in time.
    #[error("Redis at {url} did not answer {operation} within {timeout:?}; check that it runs and is not overloaded, or raise the broker timeout")]
    Timeout {
        /// The URL, with any password hidden.
        url: String,
        /// What the broker was doing.
        operation: &'static str,
        /// The limit that passed.
        timeout: Duration,
    },
    /// Redis holds something under the hub's keys that the hub did not write.
    #[error("Redis at {url} holds data under the key prefix {prefix:?} that the hub cannot read ({reason}); give this hub a prefix of its own")]
    Corrupt {
        /// The URL, with any password hidden.
        url: String,
        /// The key prefix.
        prefix: String,
        /// What could not be read.
        reason: String,
    },
}

impl Broker {
    /// The hub this process delivers to its own subscribers from.
    pub fn hub(&self) -> &Arc<Hub> {
        match self {
            Self::Memory(hub) => hub,
            Self::Redis(redis) => redis.hub(),
        }
    }

    /// Numbers `publication`, stores it in history and delivers it to every subscriber of its
    /// channel (in every hub process sharing the broker), unless its idempotency key was seen.
    pub async fn publish(&self, publication: Publication) -> Result<Published, BrokerError> {
        match self {
            Self::Memory(hub) => Ok(hub.publish(publication)?),
            Self::Redis(redis) => redis.publish(publication).await,
        }
    }

    /// Joins `channel`'s live fan-out with what was missed since `since`: no gap and no
    /// repeat between the two.
    pub async fn subscribe(
        &self,
        channel: &ChannelName,
        since: &Since,
    ) -> Result<Subscription, BrokerError> {
        match self {
            Self::Memory(hub) => Ok(hub.subscribe(channel, since)?),
            Self::Redis(redis) => redis.subscribe(channel, since).await,
        }
    }

    /// Reads at most `limit` notifications of `channel`'s history after `since`, and where the
    /// channel stands.
    pub async fn history(
        &self,
        channel: &ChannelName,
        since: &Since,
        limit: usize,
    ) -> Result<(Recovery, Position), BrokerError> {
        match self {
            Self::Memory(hub) => Ok(hub.history(channel, since, limit)),
            Self::Redis(redis) => redis.history(channel, since, limit).await,
        }
    }

    /// Every channel, sorted by name.
    pub async fn channels(&self) -> Result<Vec<ChannelInfo>, BrokerError> {
        match self {
            Self::Memory(hub) => Ok(hub.channels()),
            Self::Redis(redis) => redis.channels().await,
        }
    }

    /// Brings this process's hub up to where the broker stands on `channel`, so reading the
    /// hub's own history and live fan-out afterwards misses nothing published elsewhere (the
    /// socket.io forwarding tasks work on the local hub). Nothing to do in memory.
    pub async fn catch_up(&self, channel: &ChannelName) -> Result<(), BrokerError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(redis) => redis.catch_up(channel).await,
        }
    }

    /// Whether the broker can serve now (for `/readyz`): always for memory; for Redis, the
    /// server answers and this process's fan-out listener is connected.
    pub async fn ready(&self) -> Result<(), BrokerError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(redis) => redis.ready().await,
        }
    }
}

//! The Redis broker: numbering, idempotency, history and fan-out shared by any number of hub
//! processes (docs/architecture.md, "Hub: Redis broker").

// The fan-out listener works on the broker's shared state: a child of this module.
mod listener;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

use super::codec::{decode_notification, Unnumbered};
use super::keys::Keys;
use super::BrokerError;
use crate::history::{Delivery, Recovery, Since};
use crate::hub::{ChannelInfo, Hub, HubError, Published, Subscription};
use crate::notification::{ChannelName, Notification, Position, Publication};

/// Where the Redis broker connects and how long it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://…` (TLS, rustls) or
    /// `redis+unix:///PATH`.
    pub url: String,
    /// For `rediss://`: the CA certificates (PEM) Redis's certificate must chain to, instead of
    /// the system's roots. protolab hub gives its lab CA or `--redis-ca FILE`.
    pub ca_pem: Option<Vec<u8>>,
    /// Prefix of every key and of the fan-out channel; hub deployments sharing one Redis give
    /// each a prefix of its own. Default `protolab:hub:`.
    pub prefix: String,
    /// Longest wait for one Redis call, connecting included. Default 2 s.
    pub timeout: Duration,
}

impl RedisConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_pem: None,
            prefix: "protolab:hub:".to_owned(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// A stream entry as XRANGE returns it: its id and its field-value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// How many channels one pipelined Redis call reads at most (listing, refilling).
const CHANNELS_PER_CALL: usize = 500;

/// A hub process's handle on the shared Redis broker. Dropping it stops its fan-out listener.
#[derive(Debug)]
pub struct RedisBroker {
    shared: Arc<Shared>,
    listener: tokio::task::JoinHandle<()>,
}

/// What the broker's calls and its listener share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) hub: Arc<Hub>,
    pub(crate) client: redis::Client,
    connection: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) timeout: Duration,
    /// The URL with any password hidden, for errors and logs.
    pub(crate) url: String,
    publish_script: redis::Script,
    epoch_script: redis::Script,
    /// Whether the listener is subscribed to the fan-out channel now.
    pub(crate) listening: watch::Sender<bool>,
    /// Told of each notification this process published (not its repeats, not other
    /// processes' publications): see [`RedisBroker::observe_publications`].
    published: OnceLock<ObserverSlot>,
}

/// What [`RedisBroker::observe_publications`] calls: it must not block.
pub type PublishedObserver = Arc<dyn Fn(&Notification) + Send + Sync>;

struct ObserverSlot(PublishedObserver);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublishedObserver")
    }
}

impl RedisBroker {
    /// Connects to Redis, starts this process's fan-out listener feeding `hub`, and returns
    /// once both answer; a Redis that does not answer within the timeout is an error, never a
    /// wait.
    pub async fn connect(config: RedisConfig, hub: Arc<Hub>) -> Result<Self, BrokerError> {
        let url = redact(&config.url);
        let client = match &config.ca_pem {
            Some(ca) if config.url.starts_with("rediss://") => redis::Client::build_with_tls(
                config.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            _ => redis::Client::open(config.url.as_str()),
        }
        .map_err(|e| BrokerError::InvalidUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2)
            .set_max_delay(config.timeout);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|e| BrokerError::Unavailable {
                url: url.clone(),
                operation: "connect",
                reason: e.to_string(),
            })?;
        let (listening, mut listening_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            hub,
            client,
            connection,
            keys: Keys::new(&config.prefix),
            timeout: config.timeout,
            url,
            publish_script: redis::Script::new(include_str!("publish.lua")),
            epoch_script: redis::Script::new(include_str!("epoch.lua")),
            listening,
            published: OnceLock::new(),
        });
        shared
            .call(
                "PING",
                redis::cmd("PING").query_async::<String>(&mut shared.conn()),
            )
            .await?;
        let listener = tokio::spawn(listener::run(Arc::clone(&shared)));
        let broker = Self { shared, listener };
        let subscribed = tokio::time::timeout(
            broker.shared.timeout.saturating_mul(2),
            listening_rx.wait_for(|listening| *listening),
        )
        .await;
        if !matches!(subscribed, Ok(Ok(_))) {
            return Err(BrokerError::Timeout {
                url: broker.shared.url.clone(),
                operation: "SUBSCRIBE to the fan-out channel",
                timeout: broker.shared.timeout.saturating_mul(2),
            });
        }
        Ok(broker)
    }

    /// The hub this process delivers to its own subscribers from.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }

    /// The Redis client, for another protocol on the same server (the socket.io Redis
    /// adapter's channels).
    pub fn client(&self) -> &redis::Client {
        &self.shared.client
    }

    /// The URL, with any password hidden.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Calls `observer` with every notification this process publishes, once, after Redis
    /// took it: the publishing process is the one place that sees each publication exactly
    /// once, which is what relaying it to another protocol needs. One observer; a second
    /// call is refused with `false`.
    pub fn observe_publications(&self, observer: PublishedObserver) -> bool {
        self.shared.published.set(ObserverSlot(observer)).is_ok()
    }

    /// Numbers, stores and fans out `publication` in one atomic script (see publish.lua).
    pub async fn publish(&self, publication: Publication) -> Result<Published, BrokerError> {
        let shared = &self.shared;
        let keys = &shared.keys;
        let limits = shared.hub.config();
        let channel = &publication.channel;
        let time_ms = unix_millis();
        let body = serde_json::to_string(&Unnumbered::new(&publication, time_ms))
            .map_err(|e| shared.corrupt(format!("serializing the notification: {e}")))?;
        let mut invocation = shared.publish_script.prepare_invoke();
        invocation
            .key(keys.epoch(channel))
            .key(keys.offset(channel))
            .key(keys.stream(channel))
            .key(keys.channels());
        if let Some(key) = &publication.idempotency_key {
            invocation.key(keys.idempotency(channel, key));
        }
        invocation
            .arg(new_epoch())
            .arg(channel.as_str())
            .arg(limits.history.max_len.max(1))
            .arg(limits.history.ttl.as_secs().max(1))
            .arg(limits.max_channels)
            .arg(keys.fanout())
            .arg(body);
        let mut connection = shared.conn();
        let answer = tokio::time::timeout(
            shared.timeout,
            invocation.invoke_async::<(String, u64, u8)>(&mut connection),
        )
        .await;
        let (epoch, offset, duplicate) = match answer {
            Err(_) => return Err(shared.timed_out("the publish script")),
            Ok(Err(e)) if e.to_string().contains("TOO_MANY_CHANNELS") => {
                return Err(BrokerError::Hub(HubError::TooManyChannels {
                    limit: limits.max_channels,
                }))
            }
            Ok(Err(e)) => return Err(shared.unavailable("the publish script", &e)),
            Ok(Ok(answer)) => answer,
        };
        let duplicate = duplicate == 1;
        if duplicate {
            shared.hub.count_duplicate();
        }
        if let (false, Some(ObserverSlot(observer))) = (duplicate, shared.published.get()) {
            observer(&Notification {
                channel: publication.channel.clone(),
                offset,
                epoch: epoch.clone(),
                level: publication.level,
                title: publication.title.clone(),
                body: publication.body.clone(),
                data: publication.data.clone(),
                time_ms,
            });
        }
        Ok(Published {
            channel: publication.channel,
            offset,
            epoch,
            duplicate,
        })
    }

    /// Brings this process's hub up to where Redis stands on `channel`, joins its live
    /// fan-out there, then reads what the subscriber missed up to that point from the stream:
    /// live notifications follow the missed ones with no gap and no repeat.
    pub async fn subscribe(
        &self,
        channel: &ChannelName,
        since: &Since,
    ) -> Result<Subscription, BrokerError> {
        let shared = &self.shared;
        let standing = shared.claim_epoch(channel).await?;
        shared.catch_up(channel, &standing).await?;
        let live = shared.hub.subscribe(channel, &Since::Now)?;
        let limit = shared.hub.config().history.max_len;
        let recovery = shared
            .read_history(channel, since, &live.position, limit)
            .await?;
        Ok(Subscription {
            recovery,
            position: live.position,
            live: live.live,
        })
    }

    /// Brings this process's hub up to where Redis stands on `channel`, giving the channel
    /// its epoch in Redis if it has none yet (a subscriber is about to be told it).
    pub async fn catch_up(&self, channel: &ChannelName) -> Result<(), BrokerError> {
        let shared = &self.shared;
        let standing = shared.claim_epoch(channel).await?;
        shared.catch_up(channel, &standing).await
    }

    /// Reads at most `limit` notifications of `channel`'s shared history after `since`, and
    /// where the channel stands in Redis.
    pub async fn history(
        &self,
        channel: &ChannelName,
        since: &Since,
        limit: usize,
    ) -> Result<(Recovery, Position), BrokerError> {
        let shared = &self.shared;
        match shared.position(channel).await? {
            Some(standing) => {
                let recovery = shared
                    .read_history(channel, since, &standing, limit)
                    .await?;
                Ok((recovery, standing))
            }
            // Never published (or flushed): as the in-memory hub answers for a channel it
            // does not have.
            None => Ok(shared.hub.history(channel, since, 0)),
        }
    }

    /// Every channel Redis knows, sorted by name, with this process's subscriber counts.
    pub async fn channels(&self) -> Result<Vec<ChannelInfo>, BrokerError> {
        let shared = &self.shared;
        let keys = &shared.keys;
        let limit = shared.hub.config().max_channels;
        let mut names: Vec<String> = shared
            .call(
                "SRANDMEMBER of the channel set",
                redis::cmd("SRANDMEMBER")
                    .arg(keys.channels())
                    .arg(limit)
                    .query_async(&mut shared.conn()),
            )
            .await?;
        names.sort();
        let local: std::collections::HashMap<ChannelName, usize> = shared
            .hub
            .channels()
            .into_iter()
            .map(|info| (info.channel, info.subscribers))
            .collect();
        let mut infos = Vec::with_capacity(names.len());
        for chunk in names.chunks(CHANNELS_PER_CALL) {
            let channels: Vec<ChannelName> =
                chunk.iter().filter_map(|name| name.parse().ok()).collect();
            let mut pipe = redis::pipe();
            for channel in &channels {
                pipe.get(keys.epoch(channel))
                    .get(keys.offset(channel))
                    .xlen(keys.stream(channel));
            }
            let rows: Vec<(Option<String>, Option<u64>, usize)> = shared
                .call(
                    "reading channel positions",
                    pipe.query_async(&mut shared.conn()),
                )
                .await?;
            for (channel, (epoch, offset, history)) in channels.into_iter().zip(rows) {
                let Some(epoch) = epoch else { continue };
                infos.push(ChannelInfo {
                    subscribers: local.get(&channel).copied().unwrap_or(0),
                    channel,
                    epoch,
                    offset: offset.unwrap_or(0),
                    history,
                });
            }
        }
        Ok(infos)
    }

    /// Ok when Redis answers a PING and this process's fan-out listener is subscribed.
    pub async fn ready(&self) -> Result<(), BrokerError> {
        let shared = &self.shared;
        shared
            .call(
                "PING",
                redis::cmd("PING").query_async::<String>(&mut shared.conn()),
            )
            .await?;
        if *shared.listening.borrow() {
            Ok(())
        } else {
            Err(BrokerError::Unavailable {
                url: shared.url.clone(),
                operation: "the fan-out listener",
                reason: "not subscribed yet; it reconnects with backoff".to_owned(),
            })
        }
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Shared {
    fn conn(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Runs one Redis call within the timeout, naming `operation` in its error.
    pub(crate) async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(self.timed_out(operation)),
            Ok(Err(e)) => Err(self.unavailable(operation, &e)),
            Ok(Ok(value)) => Ok(value),
        }
    }

    fn timed_out(&self, operation: &'static str) -> BrokerError {
        BrokerError::Timeout {
            url: self.url.clone(),
            operation,
            timeout: self.timeout,
        }
    }

    fn unavailable(&self, operation: &'static str, error: &redis::RedisError) -> BrokerError {
        let reason = error.to_string();
        // rustls's verdicts on the server's certificate all say "certificate"
        if self.url.starts_with("rediss://") && reason.contains("certificate") {
            return BrokerError::Tls {
                url: self.url.clone(),
                operation,
                reason,
            };
        }
        BrokerError::Unavailable {
            url: self.url.clone(),
            operation,
            reason,
        }
    }

    fn corrupt(&self, reason: String) -> BrokerError {
        BrokerError::Corrupt {
            url: self.url.clone(),
            prefix: self.keys.prefix().to_owned(),
            reason,
        }
    }

    /// Where `channel` stands in Redis, or `None` before its first publish.
    pub(crate) async fn position(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<Position>, BrokerError> {
        let mut pipe = redis::pipe();
        pipe.get(self.keys.epoch(channel))
            .get(self.keys.offset(channel));
        let (epoch, offset): (Option<String>, Option<u64>) = self
            .call(
                "reading the channel's position",
                pipe.query_async(&mut self.conn()),
            )
            .await?;
        Ok(epoch.map(|epoch| Position {
            epoch,
            offset: offset.unwrap_or(0),
        }))
    }

    /// Where `channel` stands in Redis, setting its epoch first when it has none (before its
    /// first publish): what a subscriber is told then must be the epoch the publications will
    /// carry, or the position it comes back with would not be recovered. The channel counts
    /// against the channel limit from then on, as a subscribed channel does in memory.
    pub(crate) async fn claim_epoch(&self, channel: &ChannelName) -> Result<Position, BrokerError> {
        let keys = &self.keys;
        let mut invocation = self.epoch_script.prepare_invoke();
        invocation
            .key(keys.epoch(channel))
            .key(keys.offset(channel))
            .key(keys.stream(channel))
            .key(keys.channels())
            .arg(new_epoch())
            .arg(channel.as_str())
            .arg(self.hub.config().max_channels);
        let answer = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<(String, u64)>(&mut self.conn()),
        )
        .await;
        match answer {
            Err(_) => Err(self.timed_out("the epoch script")),
            Ok(Err(e)) if e.to_string().contains("TOO_MANY_CHANNELS") => {
                Err(BrokerError::Hub(HubError::TooManyChannels {
                    limit: self.hub.config().max_channels,
                }))
            }
            Ok(Err(e)) => Err(self.unavailable("the epoch script", &e)),
            Ok(Ok((epoch, offset))) => Ok(Position { epoch, offset }),
        }
    }

    /// Brings this process's hub to `standing` on `channel` (its epoch, at least its offset),
    /// delivering what the hub lacks from the stream.
    pub(crate) async fn catch_up(
        &self,
        channel: &ChannelName,
        standing: &Position,
    ) -> Result<(), BrokerError> {
        let after = match self.hub.position(channel) {
            Some(local) if local.epoch == standing.epoch => {
                if local.offset >= standing.offset {
                    return Ok(());
                }
                local.offset
            }
            _ => {
                // Into the broker's epoch first, even with nothing to fill (a channel not
                // published yet): subscribers here are told this hub's position.
                let start = Position {
                    epoch: standing.epoch.clone(),
                    offset: 0,
                };
                self.hub.advance(channel, &start)?;
                0
            }
        };
        self.fill(channel, &standing.epoch, after, standing.offset)
            .await
    }

    /// Delivers `channel`'s offsets `after+1 ..= upto` of `epoch` from the stream to this
    /// process's hub. Offsets the stream no longer has are skipped over: the hub moves past
    /// them, and a subscriber that needed them gets `recovered: false` when it comes back.
    pub(crate) async fn fill(
        &self,
        channel: &ChannelName,
        epoch: &str,
        after: u64,
        upto: u64,
    ) -> Result<(), BrokerError> {
        if upto <= after {
            return Ok(());
        }
        let limit = self.hub.config().history.max_len.max(1);
        let entries = self.range(channel, after + 1, upto, limit).await?;
        let mut next = after + 1;
        for notification in entries {
            if notification.epoch != epoch || notification.offset > upto {
                break;
            }
            if notification.offset > next {
                self.skip_to(channel, epoch, notification.offset - 1)?;
            }
            next = notification.offset + 1;
            self.deliver(notification)?;
        }
        if next <= upto {
            self.skip_to(channel, epoch, upto)?;
        }
        Ok(())
    }

    /// Delivers one notification to this process's hub; a gap before it is filled from the
    /// stream first.
    pub(crate) async fn accept(&self, notification: Notification) -> Result<(), BrokerError> {
        let notification = Arc::new(notification);
        if let Delivery::Gap { after } = self.hub.deliver(Arc::clone(&notification))? {
            let (channel, epoch) = (&notification.channel, &notification.epoch);
            self.fill(channel, epoch, after, notification.offset - 1)
                .await?;
            if let Delivery::Gap { .. } = self.hub.deliver(Arc::clone(&notification))? {
                self.skip_to(channel, epoch, notification.offset - 1)?;
                self.hub.deliver(notification)?;
            }
        }
        Ok(())
    }

    fn deliver(&self, notification: Notification) -> Result<(), HubError> {
        let notification = Arc::new(notification);
        if let Delivery::Gap { .. } = self.hub.deliver(Arc::clone(&notification))? {
            self.skip_to(
                &notification.channel,
                &notification.epoch,
                notification.offset - 1,
            )?;
            self.hub.deliver(notification)?;
        }
        Ok(())
    }

    fn skip_to(&self, channel: &ChannelName, epoch: &str, offset: u64) -> Result<(), HubError> {
        let position = Position {
            epoch: epoch.to_owned(),
            offset,
        };
        tracing::warn!(%channel, %position, "the Redis stream no longer holds offsets this hub missed; moving past them");
        self.hub.advance(channel, &position).map(|_| ())
    }

    /// Offsets `from ..= to` of `channel`'s stream, at most `limit`, oldest first, without
    /// those older than the history TTL.
    async fn range(
        &self,
        channel: &ChannelName,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Notification>, BrokerError> {
        let entries: Vec<StreamEntry> = self
            .call(
                "XRANGE of the channel's stream",
                redis::cmd("XRANGE")
                    .arg(self.keys.stream(channel))
                    .arg(format!("{from}-0"))
                    .arg(format!("{to}-0"))
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut self.conn()),
            )
            .await?;
        let oldest_kept = unix_millis().saturating_sub(millis(self.hub.config().history.ttl));
        let mut notifications = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let Some((_, bytes)) = fields.into_iter().find(|(field, _)| field == "n") else {
                return Err(self.corrupt(format!("stream entry {id} has no field n")));
            };
            let notification = decode_notification(&bytes)
                .map_err(|e| self.corrupt(format!("stream entry {id}: {e}")))?;
            if notification.time_ms >= oldest_kept {
                notifications.push(notification);
            }
        }
        Ok(notifications)
    }

    /// What a subscriber at `since` missed up to `upto`, from the stream, with the same
    /// meaning of `recovered` as [`crate::History::read`].
    async fn read_history(
        &self,
        channel: &ChannelName,
        since: &Since,
        upto: &Position,
        limit: usize,
    ) -> Result<Recovery, BrokerError> {
        let (after, recovered) = match since {
            Since::Now => (upto.offset, true),
            Since::Start => (0, true),
            Since::Position(position) if position.epoch != upto.epoch => (0, false),
            Since::Position(position) if position.offset > upto.offset => (upto.offset, false),
            Since::Position(position) => (position.offset, true),
        };
        if after >= upto.offset || limit == 0 {
            return Ok(Recovery {
                missed: Vec::new(),
                recovered,
            });
        }
        let missed: Vec<Arc<Notification>> = self
            .range(channel, after + 1, upto.offset, limit)
            .await?
            .into_iter()
            .filter(|notification| notification.epoch == upto.epoch)
            .map(Arc::new)
            .collect();
        // Contiguous ids: everything after `after` is there when the first one is next.
        let complete = missed
            .first()
            .is_some_and(|first| first.offset == after + 1);
        let recovered = recovered && (complete || matches!(since, Since::Start));
        Ok(Recovery { missed, recovered })
    }
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A fresh epoch for a channel's first publish (the script keeps the first one set).
fn new_epoch() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 8];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        bytes = unix_millis().to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            redact("redis+unix:///tmp/r.sock"),
            "redis+unix:///tmp/r.sock"
        );
    }
}

//! The in-memory hub: channels created on first use, each with its history and a live fan-out.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::history::{Delivery, History, HistoryLimits, Recovery, Since};
use crate::notification::{ChannelName, Notification, Position, Publication};

/// The hub's limits. Every one bounds memory: history per channel, channels, and how far a
/// subscriber may fall behind before it is disconnected (it recovers from history on reconnect,
/// so a slow subscriber costs itself a reconnect and never slows the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// History kept per channel.
    pub history: HistoryLimits,
    /// Most channels at once. Default 10,000.
    pub max_channels: usize,
    /// Notifications a subscriber may have queued, undelivered, before it is disconnected.
    /// Default 1,024.
    pub subscriber_queue: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            history: HistoryLimits::default(),
            max_channels: 10_000,
            subscriber_queue: 1024,
        }
    }
}

/// Why the hub refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// Creating the channel would pass [`HubConfig::max_channels`].
    #[error("the hub already has its limit of {limit} channels; raise --max-channels or publish on an existing channel")]
    TooManyChannels {
        /// The limit.
        limit: usize,
    },
}

/// What a publish did: where the notification stands, or stood when its idempotency key was
/// first seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The channel.
    pub channel: ChannelName,
    /// The notification's offset.
    pub offset: u64,
    /// The channel's epoch.
    pub epoch: String,
    /// True when the idempotency key had been seen: nothing was delivered this time.
    pub duplicate: bool,
}

/// A subscriber's view of one channel: what it missed, then live notifications.
#[derive(Debug)]
pub struct Subscription {
    /// Notifications missed since the requested position, and whether that is exactly all.
    pub recovery: Recovery,
    /// Where the channel stood when the subscription began: live notifications follow it
    /// with no gap and no repeat.
    pub position: Position,
    /// Live notifications. `Err(Lagged)` means the subscriber fell more than
    /// [`HubConfig::subscriber_queue`] behind: disconnect it with that reason.
    pub live: broadcast::Receiver<Arc<Notification>>,
}

/// A channel as `GET /api/channels` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelInfo {
    /// The channel.
    pub channel: ChannelName,
    /// Its epoch.
    pub epoch: String,
    /// The last offset published.
    pub offset: u64,
    /// Notifications in history.
    pub history: usize,
    /// Live subscriptions in this hub.
    pub subscribers: usize,
}

#[derive(Debug)]
struct Channel {
    history: History,
    live: broadcast::Sender<Arc<Notification>>,
}

/// Channels, their history and their live fan-out, in one process.
///
/// Publishing appends to history and sends to the live subscribers under one lock, and
/// subscribing reads history and joins the fan-out under the same lock: a subscriber sees every
/// offset once, in order, whatever publishes race with its subscribe.
#[derive(Debug)]
pub struct Hub {
    channels: Mutex<HashMap<ChannelName, Channel>>,
    config: HubConfig,
    random: SystemRandom,
    published: AtomicU64,
    duplicates: AtomicU64,
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            config,
            random: SystemRandom::new(),
            published: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        }
    }

    /// The hub's limits.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Stores `publication` in its channel's history and delivers it to the channel's live
    /// subscribers, unless its idempotency key was seen while history still holds it.
    pub fn publish(&self, publication: Publication) -> Result<Published, HubError> {
        let mut channels = self.lock();
        let channel = self.channel(&mut channels, &publication.channel)?;
        let (notification, duplicate) =
            channel
                .history
                .append(publication, unix_millis(), Instant::now());
        if duplicate {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        } else {
            self.published.fetch_add(1, Ordering::Relaxed);
            // No receivers is not an error: history keeps it for whoever comes.
            let _ = channel.live.send(Arc::clone(&notification));
        }
        Ok(Published {
            channel: notification.channel.clone(),
            offset: notification.offset,
            epoch: notification.epoch.clone(),
            duplicate,
        })
    }

    /// Stores a notification a shared broker numbered and sends it to this hub's live
    /// subscribers, if it is the channel's next offset (see [`Delivery`]). A channel this hub
    /// has not seen starts at the notification: nobody here subscribed to anything before it.
    pub fn deliver(&self, notification: Arc<Notification>) -> Result<Delivery, HubError> {
        let mut channels = self.lock();
        if !channels.contains_key(&notification.channel) {
            let before = Position {
                epoch: notification.epoch.clone(),
                offset: notification.offset.saturating_sub(1),
            };
            self.channel_at(&mut channels, &notification.channel, &before)?;
        }
        let channel = self.channel(&mut channels, &notification.channel)?;
        let delivery = channel.history.deliver(&notification, Instant::now());
        if delivery == Delivery::Delivered {
            self.published.fetch_add(1, Ordering::Relaxed);
            let _ = channel.live.send(notification);
        }
        Ok(delivery)
    }

    /// Moves `channel` to `position` when it is in another epoch or behind it, dropping its
    /// history (see [`History::advance_to`]); creates it there when absent. Returns where the
    /// channel stands.
    pub fn advance(
        &self,
        channel: &ChannelName,
        position: &Position,
    ) -> Result<Position, HubError> {
        let mut channels = self.lock();
        if !channels.contains_key(channel) {
            return Ok(self
                .channel_at(&mut channels, channel, position)?
                .history
                .position());
        }
        let channel = self.channel(&mut channels, channel)?;
        channel.history.advance_to(position);
        Ok(channel.history.position())
    }

    /// Where `channel` stands, if this hub has it.
    pub fn position(&self, channel: &ChannelName) -> Option<Position> {
        self.lock()
            .get(channel)
            .map(|channel| channel.history.position())
    }

    /// Joins `channel`'s live fan-out, with what was missed since `since`.
    pub fn subscribe(
        &self,
        channel: &ChannelName,
        since: &Since,
    ) -> Result<Subscription, HubError> {
        let mut channels = self.lock();
        let limit = self.config.history.max_len;
        let channel = self.channel(&mut channels, channel)?;
        let recovery = channel.history.read(since, limit, Instant::now());
        Ok(Subscription {
            recovery,
            position: channel.history.position(),
            live: channel.live.subscribe(),
        })
    }

    /// Reads `channel`'s history without subscribing. An unknown channel reads as empty, in
    /// an epoch of its own that no client can hold.
    pub fn history(
        &self,
        channel: &ChannelName,
        since: &Since,
        limit: usize,
    ) -> (Recovery, Position) {
        let mut channels = self.lock();
        match channels.get_mut(channel) {
            Some(channel) => (
                channel.history.read(since, limit, Instant::now()),
                channel.history.position(),
            ),
            None => (
                Recovery {
                    missed: Vec::new(),
                    recovered: !matches!(since, Since::Position(p) if p.offset > 0),
                },
                Position {
                    epoch: String::new(),
                    offset: 0,
                },
            ),
        }
    }

    /// Every channel, sorted by name.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let channels = self.lock();
        let mut infos: Vec<ChannelInfo> = channels
            .iter()
            .map(|(name, channel)| ChannelInfo {
                channel: name.clone(),
                epoch: channel.history.epoch().to_owned(),
                offset: channel.history.position().offset,
                history: channel.history.len(),
                subscribers: channel.live.receiver_count(),
            })
            .collect();
        infos.sort_by(|a, b| a.channel.cmp(&b.channel));
        infos
    }

    /// Counts a publication a shared broker refused as a repeat of an idempotency key, so
    /// `protolab_hub_duplicates_total` counts this process's duplicates whatever the broker.
    pub fn count_duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// How many channels the hub holds now.
    pub fn channel_count(&self) -> usize {
        self.lock().len()
    }

    /// Notifications published (not counting duplicates) and duplicates refused, since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.published.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
        )
    }

    /// Drops channels whose history has expired and that nobody subscribes to, so a hub that
    /// saw many short-lived channels does not keep them all. Returns how many were dropped.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut channels = self.lock();
        let before = channels.len();
        channels.retain(|_, channel| {
            // a read expires old entries as a side effect
            let _ = channel.history.read(&Since::Now, 0, now);
            !channel.history.is_empty() || channel.live.receiver_count() > 0
        });
        before - channels.len()
    }

    fn channel<'a>(
        &self,
        channels: &'a mut HashMap<ChannelName, Channel>,
        name: &ChannelName,
    ) -> Result<&'a mut Channel, HubError> {
        let count = channels.len();
        match channels.entry(name.clone()) {
            Entry::Occupied(channel) => Ok(channel.into_mut()),
            Entry::Vacant(vacant) => {
                if count >= self.config.max_channels {
                    return Err(HubError::TooManyChannels {
                        limit: self.config.max_channels,
                    });
                }
                let (live, _) = broadcast::channel(self.config.subscriber_queue.max(1));
                let history = History::new(self.new_epoch(), self.config.history);
                Ok(vacant.insert(Channel { history, live }))
            }
        }
    }

    /// Creates `name` standing at `position` (an epoch and offset a shared broker gave).
    fn channel_at<'a>(
        &self,
        channels: &'a mut HashMap<ChannelName, Channel>,
        name: &ChannelName,
        position: &Position,
    ) -> Result<&'a mut Channel, HubError> {
        let channel = self.channel(channels, name)?;
        channel.history.advance_to(position);
        Ok(channel)
    }

    fn new_epoch(&self) -> String {
        let mut bytes = [0u8; 8];
        if self.random.fill(&mut bytes).is_err() {
            // The OS RNG failing is not expected; a clock-derived epoch still differs per
            // channel life, which is all an epoch must do.
            bytes = unix_millis().to_be_bytes();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ChannelName, Channel>> {
        // A panic while holding the lock cannot leave a channel half-updated in a way that
        // matters more than stopping the hub would: keep serving.
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Level;

    fn publication(channel: &str, key: Option<&str>) -> Publication {
        Publication {
            channel: channel.parse().expect("valid channel"),
            level: Level::Warning,
            title: "t".to_owned(),
            body: "b".to_owned(),
            data: None,
            idempotency_key: key.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn a_subscriber_sees_every_offset_once_in_order_across_resubscribes() {
        let hub = Arc::new(Hub::new(HubConfig::default()));
        let channel: ChannelName = "ops".parse().expect("valid channel");
        let publisher = {
            let hub = Arc::clone(&hub);
            tokio::spawn(async move {
                for _ in 0..500 {
                    hub.publish(publication("ops", None)).expect("publish");
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut seen = Vec::new();
        let mut since = Since::Start;
        while seen.len() < 500 {
            let mut subscription = hub.subscribe(&channel, &since).expect("subscribe");
            assert!(subscription.recovery.recovered);
            seen.extend(subscription.recovery.missed.iter().map(|n| n.offset));
            // take a few live ones, then drop the subscription as a reconnecting client would
            for _ in 0..7 {
                if seen.len() >= 500 {
                    break;
                }
                let notification = subscription.live.recv().await.expect("live");
                seen.push(notification.offset);
            }
            let position = Position {
                epoch: subscription.position.epoch.clone(),
                offset: seen.last().copied().unwrap_or(0),
            };
            since = Since::Position(position);
        }
        publisher.await.expect("publisher");
        assert_eq!(seen, (1..=500).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_lagged_and_others_are_not_held_back() {
        let config = HubConfig {
            subscriber_queue: 4,
            ..HubConfig::default()
        };
        let hub = Hub::new(config);
        let channel: ChannelName = "ops".parse().expect("valid channel");
        let mut slow = hub.subscribe(&channel, &Since::Now).expect("subscribe");
        let mut fast = hub.subscribe(&channel, &Since::Now).expect("subscribe");
        for n in 1..=10u64 {
            hub.publish(publication("ops", None)).expect("publish");
            assert_eq!(fast.live.recv().await.expect("fast").offset, n);
        }
        assert!(matches!(
            slow.live.recv().await,
            Err(broadcast::error::RecvError::Lagged(6))
        ));
    }

    #[test]
    fn duplicates_and_channel_limits() {
        let hub = Hub::new(HubConfig {
            max_channels: 1,
            ..HubConfig::default()
        });
        let first = hub.publish(publication("a", Some("k"))).expect("publish");
        let again = hub.publish(publication("a", Some("k"))).expect("publish");
        assert!(again.duplicate && !first.duplicate);
        assert_eq!(again.offset, first.offset);
        assert_eq!(hub.counts(), (1, 1));
        assert_eq!(
            hub.publish(publication("b", None)),
            Err(HubError::TooManyChannels { limit: 1 })
        );
        assert_eq!(hub.channels().len(), 1);
        assert_eq!(hub.channels()[0].history, 1);
    }
}

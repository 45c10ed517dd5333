//! One channel's history: the last notifications, numbered by offset within an epoch, kept for
//! a bounded count and age, and the idempotency keys of the publications still in it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::notification::{Notification, Position, Publication};

/// How much history a channel keeps. Whatever falls out of it can no longer be recovered, and
/// a subscriber asking for it is told `recovered: false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most notifications kept per channel. Default 1,000.
    pub max_len: usize,
    /// Oldest notification kept. Default one hour.
    pub ttl: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            max_len: 1000,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// Where a read of history starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// Whatever history holds.
    Start,
    /// After this position: exactly what a subscriber that saw it missed.
    Position(Position),
    /// Nothing from history: live notifications only.
    Now,
}

/// What a read of history gives back.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// The notifications after the requested position, oldest first.
    pub missed: Vec<Arc<Notification>>,
    /// Whether `missed` is exactly what the subscriber missed. False when the epoch changed or
    /// history no longer reaches back to the position; `missed` then holds what history has.
    pub recovered: bool,
}

/// What [`History::deliver`] did with a notification numbered elsewhere (by a shared broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// It was the next offset: stored, and live subscribers get it.
    Delivered,
    /// History already passed its offset: nothing to do (pub/sub and a stream refill both
    /// brought it).
    Repeat,
    /// Offsets between the last one held and this one are missing: fetch those after `after`
    /// from the broker and deliver them first, then this one again.
    Gap {
        /// The last offset history holds in the notification's epoch (0 when the epoch is new).
        after: u64,
    },
}

#[derive(Debug)]
struct Entry {
    notification: Arc<Notification>,
    idempotency_key: Option<String>,
    accepted: Instant,
}

/// One channel's history (the in-memory broker's; a shared broker keeps the same numbering).
#[derive(Debug)]
pub struct History {
    epoch: String,
    last_offset: u64,
    entries: VecDeque<Entry>,
    offsets_by_key: HashMap<String, u64>,
    limits: HistoryLimits,
}

impl History {
    /// An empty history in a fresh epoch.
    pub fn new(epoch: String, limits: HistoryLimits) -> Self {
        Self {
            epoch,
            last_offset: 0,
            entries: VecDeque::new(),
            offsets_by_key: HashMap::new(),
            limits,
        }
    }

    /// The channel's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Where the channel stands: its epoch and the offset of its last notification (0 before any).
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            offset: self.last_offset,
        }
    }

    /// How many notifications history holds now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether history holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stores `publication` as the next offset and returns it, or returns the notification an
    /// earlier publication with the same idempotency key became (`true`: a duplicate, deliver
    /// nothing).
    pub fn append(
        &mut self,
        publication: Publication,
        time_ms: u64,
        now: Instant,
    ) -> (Arc<Notification>, bool) {
        self.expire(now);
        if let Some(key) = &publication.idempotency_key {
            if let Some(earlier) = self
                .offsets_by_key
                .get(key)
                .and_then(|&offset| self.get(offset))
            {
                return (earlier, true);
            }
        }
        self.last_offset += 1;
        let notification = Arc::new(Notification {
            channel: publication.channel,
            offset: self.last_offset,
            epoch: self.epoch.clone(),
            level: publication.level,
            title: publication.title,
            body: publication.body,
            data: publication.data,
            time_ms,
        });
        if let Some(key) = &publication.idempotency_key {
            self.offsets_by_key.insert(key.clone(), self.last_offset);
        }
        self.entries.push_back(Entry {
            notification: Arc::clone(&notification),
            idempotency_key: publication.idempotency_key,
            accepted: now,
        });
        while self.entries.len() > self.limits.max_len {
            self.pop_oldest();
        }
        (notification, false)
    }

    /// Stores a notification a shared broker numbered, if it is the next offset. A notification
    /// of another epoch resets history to that epoch first: the broker lost its history, so
    /// what this one holds can never be recovered against it.
    pub fn deliver(&mut self, notification: &Arc<Notification>, now: Instant) -> Delivery {
        self.expire(now);
        if notification.epoch != self.epoch {
            self.reset(notification.epoch.clone(), 0);
        }
        if notification.offset <= self.last_offset {
            return Delivery::Repeat;
        }
        if notification.offset > self.last_offset + 1 {
            return Delivery::Gap {
                after: self.last_offset,
            };
        }
        self.last_offset = notification.offset;
        self.entries.push_back(Entry {
            notification: Arc::clone(notification),
            idempotency_key: None,
            accepted: now,
        });
        while self.entries.len() > self.limits.max_len {
            self.pop_oldest();
        }
        Delivery::Delivered
    }

    /// Moves history to `position` when it is in another epoch or further on, dropping what it
    /// holds: for a broker whose own history no longer has the offsets in between. Returns
    /// whether it moved.
    pub fn advance_to(&mut self, position: &Position) -> bool {
        let moves = position.epoch != self.epoch || position.offset > self.last_offset;
        if moves {
            self.reset(position.epoch.clone(), position.offset);
        }
        moves
    }

    fn reset(&mut self, epoch: String, last_offset: u64) {
        self.epoch = epoch;
        self.last_offset = last_offset;
        self.entries.clear();
        self.offsets_by_key.clear();
    }

    /// The notifications after `since`, oldest first, at most `limit` of them (the oldest ones
    /// when there are more: a reader pages forward from the last one it got).
    pub fn read(&mut self, since: &Since, limit: usize, now: Instant) -> Recovery {
        self.expire(now);
        let (after, recovered) = match since {
            Since::Now => (self.last_offset, true),
            Since::Start => (self.first_offset().saturating_sub(1), true),
            Since::Position(position) if position.epoch != self.epoch => {
                (self.first_offset().saturating_sub(1), false)
            }
            Since::Position(position) if position.offset > self.last_offset => {
                (self.last_offset, false)
            }
            Since::Position(position) => {
                // History is contiguous: everything after `position` is here when the oldest
                // entry kept is at most one past it.
                let oldest = self.first_offset();
                if position.offset + 1 >= oldest {
                    (position.offset, true)
                } else {
                    (oldest - 1, false)
                }
            }
        };
        let missed = self
            .entries
            .iter()
            .map(|entry| &entry.notification)
            .filter(|notification| notification.offset > after)
            .take(limit)
            .cloned()
            .collect();
        Recovery { missed, recovered }
    }

    /// The offset the oldest entry has, or the next offset when history is empty.
    fn first_offset(&self) -> u64 {
        self.entries
            .front()
            .map_or(self.last_offset + 1, |entry| entry.notification.offset)
    }

    fn get(&self, offset: u64) -> Option<Arc<Notification>> {
        let index = offset.checked_sub(self.first_offset())?;
        let index = usize::try_from(index).ok()?;
        self.entries
            .get(index)
            .map(|entry| Arc::clone(&entry.notification))
    }

    fn expire(&mut self, now: Instant) {
        while self
            .entries
            .front()
            .is_some_and(|entry| now.saturating_duration_since(entry.accepted) > self.limits.ttl)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            if let Some(key) = entry.idempotency_key {
                self.offsets_by_key.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::{ChannelName, Level};

    fn publication(body: &str, key: Option<&str>) -> Publication {
        Publication {
            channel: "ops".parse::<ChannelName>().expect("valid channel"),
            level: Level::Info,
            title: String::new(),
            body: body.to_owned(),
            data: None,
            idempotency_key: key.map(str::to_owned),
        }
    }

    fn offsets(recovery: &Recovery) -> Vec<u64> {
        recovery.missed.iter().map(|n| n.offset).collect()
    }

    fn at(epoch: &str, offset: u64) -> Since {
        Since::Position(Position {
            epoch: epoch.to_owned(),
            offset,
        })
    }

    #[test]
    fn a_returning_subscriber_gets_exactly_what_it_missed() {
        let now = Instant::now();
        let limits = HistoryLimits {
            max_len: 3,
            ttl: Duration::from_secs(60),
        };
        let mut history = History::new("e1".to_owned(), limits);
        for n in 1..=5 {
            history.append(publication(&n.to_string(), None), 0, now);
        }
        // offsets 3, 4, 5 are kept
        let from_2 = history.read(&at("e1", 2), 100, now);
        assert_eq!((offsets(&from_2), from_2.recovered), (vec![3, 4, 5], true));
        let from_4 = history.read(&at("e1", 4), 100, now);
        assert_eq!((offsets(&from_4), from_4.recovered), (vec![5], true));
        let up_to_date = history.read(&at("e1", 5), 100, now);
        assert_eq!((offsets(&up_to_date), up_to_date.recovered), (vec![], true));
        let too_old = history.read(&at("e1", 1), 100, now);
        assert_eq!(
            (offsets(&too_old), too_old.recovered),
            (vec![3, 4, 5], false)
        );
        let other_epoch = history.read(&at("e0", 4), 100, now);
        assert_eq!(
            (offsets(&other_epoch), other_epoch.recovered),
            (vec![3, 4, 5], false)
        );
        let ahead = history.read(&at("e1", 9), 100, now);
        assert_eq!((offsets(&ahead), ahead.recovered), (vec![], false));
        let paged = history.read(&Since::Start, 2, now);
        assert_eq!(offsets(&paged), vec![3, 4]);
    }

    #[test]
    fn expired_history_cannot_be_recovered() {
        let start = Instant::now();
        let limits = HistoryLimits {
            max_len: 10,
            ttl: Duration::from_secs(10),
        };
        let mut history = History::new("e1".to_owned(), limits);
        history.append(publication("old", None), 0, start);
        history.append(publication("new", None), 0, start + Duration::from_secs(8));
        let later = start + Duration::from_secs(12);
        let recovery = history.read(&at("e1", 0), 100, later);
        assert_eq!((offsets(&recovery), recovery.recovered), (vec![2], false));
        assert!(history.read(&at("e1", 1), 100, later).recovered);
    }

    #[test]
    fn an_idempotency_key_is_delivered_once_while_history_holds_it() {
        let now = Instant::now();
        let limits = HistoryLimits {
            max_len: 2,
            ttl: Duration::from_secs(60),
        };
        let mut history = History::new("e1".to_owned(), limits);
        let (first, duplicate) = history.append(publication("a", Some("k1")), 0, now);
        assert!(!duplicate);
        let (again, duplicate) = history.append(publication("a", Some("k1")), 0, now);
        assert!(duplicate);
        assert_eq!(again.offset, first.offset);
        history.append(publication("b", None), 0, now);
        history.append(publication("c", None), 0, now);
        // k1's publication left history: the key is forgotten with it
        let (third, duplicate) = history.append(publication("a", Some("k1")), 0, now);
        assert!(!duplicate);
        assert_eq!(third.offset, 4);
    }

    #[test]
    fn notifications_numbered_elsewhere_are_taken_in_order_only() {
        let now = Instant::now();
        let mut history = History::new("local".to_owned(), HistoryLimits::default());
        let numbered = |epoch: &str, offset: u64| {
            Arc::new(Notification {
                channel: "ops".parse().expect("valid channel"),
                offset,
                epoch: epoch.to_owned(),
                level: Level::Info,
                title: String::new(),
                body: offset.to_string(),
                data: None,
                time_ms: 0,
            })
        };
        // another epoch resets history; offset 2 of it needs offset 1 first
        assert_eq!(
            history.deliver(&numbered("e1", 2), now),
            Delivery::Gap { after: 0 }
        );
        assert_eq!(
            history.deliver(&numbered("e1", 1), now),
            Delivery::Delivered
        );
        assert_eq!(
            history.deliver(&numbered("e1", 2), now),
            Delivery::Delivered
        );
        assert_eq!(history.deliver(&numbered("e1", 2), now), Delivery::Repeat);
        assert_eq!(
            history.position(),
            Position {
                epoch: "e1".to_owned(),
                offset: 2
            }
        );
        // moving past offsets nobody can fetch any more
        assert!(history.advance_to(&Position {
            epoch: "e1".to_owned(),
            offset: 5
        }));
        assert!(!history.advance_to(&Position {
            epoch: "e1".to_owned(),
            offset: 3
        }));
        assert_eq!(
            history.deliver(&numbered("e1", 6), now),
            Delivery::Delivered
        );
        let recovery = history.read(&at("e1", 2), 100, now);
        assert_eq!((offsets(&recovery), recovery.recovered), (vec![6], false));
        assert_eq!(
            history.deliver(&numbered("e2", 1), now),
            Delivery::Delivered
        );
        assert_eq!(history.epoch(), "e2");
    }
}

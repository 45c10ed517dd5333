//! The lab's event feed: numbered push events on a timer, the last [`RING_EVENTS`] of them
//! kept so that an SSE client that reconnects, or a polling client, gets what it missed.
//!
//! One feed per lab, shared by the SSE app and the HTTPS app's SSE paths, so SSE, long-polling
//! and plain polling clients see the same numbered events and can be compared event by event.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Events kept for clients that come back: about 85 minutes at the default 5 s interval, a
/// little over a second at 1 ms. Each holds about 100 bytes of JSON.
pub(crate) const RING_EVENTS: usize = 1024;

/// An event's position: the feed's epoch (when this lab's feed began, in milliseconds since
/// the Unix epoch) and its number within that feed. Written `EPOCH-SEQ`, which is what goes
/// into an SSE `id:` line and what `Last-Event-ID` and `?after=` give back. The epoch tells an
/// id from before a restart, whose numbers mean other events, from one of this feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventId {
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

impl EventId {
    /// Parses `EPOCH-SEQ`; `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (epoch, seq) = text.trim().split_once('-')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(epoch) || !digits(seq) {
            return None;
        }
        Some(Self {
            epoch: epoch.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// One pushed event: its number, its JSON data (one line, no CR or LF), and the event as an
/// event stream carries it (`id:` and `data:` lines and the blank line), encoded once when
/// pushed and shared by every stream it goes to.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) seq: u64,
    pub(crate) data: Arc<str>,
    pub(crate) frame: Arc<[u8]>,
}

/// What a client that gave an id gets from the ring.
#[derive(Debug)]
pub(crate) struct Since {
    /// Events after the id still in the ring, oldest first.
    pub(crate) events: Vec<Event>,
    /// Events after the id that the ring no longer holds (`from..=to`), or that cannot be
    /// known because the id is from another feed (a restart).
    pub(crate) lost: Option<Lost>,
}

/// Why a client cannot have everything it missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Events `from..=to` of this feed fell out of the ring.
    Dropped { from: u64, to: u64 },
    /// The id belongs to another feed (the lab restarted) or names an event this feed has not
    /// pushed yet: what came in between is unknown.
    OtherFeed,
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Event>,
    /// Number of the next event.
    next: u64,
}

/// The feed: the ring, and a watch that changes whenever an event is added.
#[derive(Debug)]
pub(crate) struct Feed {
    epoch: u64,
    ring: Mutex<Ring>,
    latest: watch::Sender<u64>,
}

impl Feed {
    pub(crate) fn new() -> Self {
        Self {
            epoch: new_epoch(),
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(RING_EVENTS),
                next: 1,
            }),
            latest: watch::Sender::new(0),
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The id of event `seq` of this feed.
    pub(crate) fn id(&self, seq: u64) -> EventId {
        EventId {
            epoch: self.epoch,
            seq,
        }
    }

    /// Number of the newest event (0 before the first).
    pub(crate) fn newest(&self) -> u64 {
        *self.latest.borrow()
    }

    /// Wakes on every new event.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Adds the next push event, dropping the oldest when the ring is full.
    pub(crate) fn push(&self) -> u64 {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = ring.next;
        ring.next += 1;
        if ring.events.len() == RING_EVENTS {
            ring.events.pop_front();
        }
        let id = self.id(seq);
        let data: Arc<str> = push_data(id).into();
        let mut frame = Vec::with_capacity(data.len() + 48);
        frame.extend_from_slice(format!("id: {id}\n").as_bytes());
        super::data_lines(&mut frame, &data);
        ring.events.push_back(Event {
            seq,
            data,
            frame: frame.into(),
        });
        drop(ring);
        self.latest.send_replace(seq);
        seq
    }

    /// Events after `after` (at most [`RING_EVENTS`]), and what of them is lost.
    pub(crate) fn since(&self, after: EventId) -> Since {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let newest = ring.next - 1;
        if after.epoch != self.epoch || after.seq > newest {
            return Since {
                events: Vec::new(),
                lost: Some(Lost::OtherFeed),
            };
        }
        let oldest = ring.events.front().map_or(ring.next, |e| e.seq);
        let lost = (after.seq + 1 < oldest).then_some(Lost::Dropped {
            from: after.seq + 1,
            to: oldest - 1,
        });
        let skip = (after.seq + 1).saturating_sub(oldest);
        let events = ring
            .events
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .cloned()
            .collect();
        Since { events, lost }
    }

    /// What an event stream at `after` (an event of this feed) has not been sent: `each` gets
    /// the events still in the ring, oldest first, under the ring's lock and without a copy of
    /// the list (every stream calls this on every push); returns the events that fell out of
    /// the ring, if any.
    pub(crate) fn each_after(&self, after: u64, mut each: impl FnMut(&Event)) -> Option<Lost> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = ring.events.front().map_or(ring.next, |e| e.seq);
        let lost = (after + 1 < oldest).then_some(Lost::Dropped {
            from: after + 1,
            to: oldest - 1,
        });
        let skip = (after + 1).saturating_sub(oldest);
        ring.events
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .for_each(&mut each);
        lost
    }

    /// Pushes an event every `interval` until `stop` fires.
    pub(crate) async fn run(&self, interval: Duration, stop: &crate::cancel::CancelToken) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        // A busy runtime that misses ticks pushes late, not in a burst.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                () = stopped.as_mut() => return,
                _ = ticks.tick() => { self.push(); }
            }
        }
    }
}

/// A feed's epoch: milliseconds since the Unix epoch, and later than any earlier feed of this
/// process, so two labs started within one millisecond (tests) still tell their ids apart.
fn new_epoch() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// The data of a push event: the WS app's push message with the event's id, so one client
/// can measure delivery delay the same way over every protocol.
fn push_data(id: EventId) -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        r#"{{"type":"push","id":"{id}","seq":{},"sent_at_ms":{},"sent_at_us":{}}}"#,
        id.seq,
        since_epoch.as_millis(),
        since_epoch.as_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_junk_is_refused() {
        let id = EventId {
            epoch: 1_764_750_000_123,
            seq: 42,
        };
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        for junk in [
            "",
            "42",
            "-1",
            "1-",
            "a-1",
            "1-2-3",
            "1-+2",
            "99999999999999999999999-1",
        ] {
            assert_eq!(EventId::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn the_ring_gives_what_was_missed_and_says_what_it_lost() {
        let feed = Feed::new();
        for _ in 0..RING_EVENTS + 10 {
            feed.push();
        }
        let newest = feed.newest();
        assert_eq!(newest, (RING_EVENTS + 10) as u64);
        let recent = feed.since(feed.id(newest - 3));
        assert_eq!(recent.lost, None);
        assert_eq!(
            recent.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![newest - 2, newest - 1, newest]
        );
        let old = feed.since(feed.id(2));
        assert_eq!(old.lost, Some(Lost::Dropped { from: 3, to: 10 }));
        assert_eq!(old.events.len(), RING_EVENTS);
        assert_eq!(old.events[0].seq, 11);
        let none = feed.since(feed.id(newest));
        assert!(none.events.is_empty() && none.lost.is_none());
        let ahead = feed.since(feed.id(newest + 1));
        assert_eq!(ahead.lost, Some(Lost::OtherFeed));
        let other = Feed::new();
        assert!(other.epoch() > feed.epoch());
        assert_eq!(other.since(feed.id(1)).lost, Some(Lost::OtherFeed));
    }

    #[test]
    fn a_stream_walks_the_ring_from_its_position_and_gets_the_shared_frames() {
        let feed = Feed::new();
        for _ in 0..RING_EVENTS + 5 {
            feed.push();
        }
        let newest = feed.newest();
        let mut seen = Vec::new();
        let lost = feed.each_after(newest - 2, |e| seen.push(e.clone()));
        assert_eq!(lost, None);
        assert_eq!(
            seen.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![newest - 1, newest]
        );
        let last = &seen[1];
        let frame = std::str::from_utf8(&last.frame).expect("a frame is text");
        assert_eq!(
            frame,
            format!("id: {}\ndata: {}\n\n", feed.id(newest), last.data)
        );
        let mut count = 0;
        let lost = feed.each_after(1, |_| count += 1);
        assert_eq!(lost, Some(Lost::Dropped { from: 2, to: 5 }));
        assert_eq!(count, RING_EVENTS);
        let mut none = 0;
        assert_eq!(feed.each_after(newest, |_| none += 1), None);
        assert_eq!(none, 0);
    }
}

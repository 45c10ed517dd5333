//! The forwarding task of one channel's room and the emits it makes: see the parent module's
//! documentation for why one task per channel and how joins stay exact.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use serde_json::value::{to_raw_value, RawValue};
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};
use tokio::sync::{broadcast, mpsc};

use super::{Join, Shared, IDLE_CHECK};
use crate::history::Since;
use crate::notification::{ChannelName, Notification, Position};
use crate::protocol::{SLOW_SUBSCRIBER_CLOSE, SLOW_SUBSCRIBER_REASON};
use crate::story::{story_message, NOTIFS_CHANNEL};

/// One channel's delivery to its room: see the module's documentation.
pub(super) struct Forwarder {
    shared: Arc<Shared>,
    channel: ChannelName,
    room: String,
    /// The story's channel: its sockets get `newmessage` too.
    story: bool,
    /// The last notification forwarded (or where the channel stood when the task began).
    last: Position,
}

impl Forwarder {
    pub(super) fn new(shared: Arc<Shared>, channel: ChannelName, last: Position) -> Self {
        Self {
            room: channel.as_str().to_owned(),
            story: channel.as_str() == NOTIFS_CHANNEL,
            shared,
            channel,
            last,
        }
    }

    pub(super) async fn run(
        mut self,
        mut live: broadcast::Receiver<Arc<Notification>>,
        mut joins: mpsc::Receiver<Join>,
    ) {
        let mut idle = tokio::time::interval(IDLE_CHECK);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                join = joins.recv() => match join {
                    Some(join) => self.join(join),
                    None => return,
                },
                received = live.recv() => match received {
                    Ok(notification) => self.forward(&notification),
                    Err(broadcast::error::RecvError::Lagged(_)) => match self.catch_up() {
                        Some(fresh) => live = fresh,
                        None => {
                            self.stop_now();
                            return;
                        }
                    },
                    Err(broadcast::error::RecvError::Closed) => {
                        self.stop_now();
                        return;
                    }
                },
                _ = idle.tick() => {
                    if self.try_stop(&joins) {
                        return;
                    }
                }
            }
        }
    }

    /// Sends `join`'s socket what it missed up to [`Self::last`] and adds it to the room, so
    /// the next notification this task forwards is the next one it needs.
    fn join(&self, join: Join) {
        let Join {
            socket,
            since,
            explicit,
            reply,
        } = join;
        let (missed, recovered) = match &since {
            Since::Now => (Vec::new(), true),
            since => {
                let limit = self.shared.hub.config().history.max_len;
                let (recovery, _) = self.shared.hub.history(&self.channel, since, limit);
                let missed = recovery
                    .missed
                    .into_iter()
                    .filter(|n| n.epoch == self.last.epoch && n.offset <= self.last.offset)
                    .collect();
                (missed, recovery.recovered)
            }
        };
        let subscribed = json!({
            "channel": self.channel,
            "epoch": self.last.epoch,
            "offset": self.last.offset,
            "recovered": recovered,
        });
        let delivered = socket.emit("subscribed", &subscribed).is_ok()
            && missed
                .iter()
                .all(|notification| self.emit(&socket, notification));
        if delivered {
            // Marked here, between two forwarded notifications, like the join itself: the
            // next one reaches the socket as `notification` too.
            if self.story && explicit {
                self.shared.notifs_subscribers().insert(socket.id);
            }
            socket.join(self.room.clone());
            let _ = reply.send(subscribed);
        } else {
            let _ = reply.send(json!({
                "channel": self.channel,
                "error": {"code": SLOW_SUBSCRIBER_CLOSE, "message": SLOW_SUBSCRIBER_REASON},
            }));
        }
    }

    /// Emits `notification` once to each socket of the room: `notification` in a channel's
    /// room; `newmessage` in the story's, plus `notification` to the sockets that subscribed
    /// to it. Each payload is serialized once for the whole room.
    fn forward(&mut self, notification: &Arc<Notification>) {
        self.last = notification.position();
        let Some(record) = Prepared::notification(notification) else {
            return;
        };
        let sockets = self.shared.io.to(self.room.clone()).sockets();
        if !self.story {
            for socket in &sockets {
                emit_prepared(&self.shared, socket, "notification", &record);
            }
            return;
        }
        let Some(message) = Prepared::newmessage(notification) else {
            return;
        };
        // A copy, not the lock: a slow socket's disconnect takes the lock to unmark it.
        let subscribed = {
            let marked = self.shared.notifs_subscribers();
            (!marked.is_empty()).then(|| marked.clone())
        };
        for socket in &sockets {
            if emit_prepared(&self.shared, socket, "newmessage", &message)
                && subscribed.as_ref().is_some_and(|s| s.contains(&socket.id))
            {
                emit_prepared(&self.shared, socket, "notification", &record);
            }
        }
    }

    /// Emits a missed `notification` to a socket that subscribed with a position; false
    /// (and the socket on its way out) when its queue is full or it is gone.
    fn emit(&self, socket: &SocketRef, notification: &Notification) -> bool {
        Prepared::notification(notification)
            .is_some_and(|record| emit_prepared(&self.shared, socket, "notification", &record))
    }

    /// After this task itself fell behind the hub's fan-out: forwards what it missed from
    /// history, or, when history no longer has it, disconnects the room's sockets (they
    /// recover, or learn `recovered: false`, on reconnect). `None` when the channel is gone.
    fn catch_up(&mut self) -> Option<broadcast::Receiver<Arc<Notification>>> {
        let since = Since::Position(self.last.clone());
        let subscription = self.shared.hub.subscribe(&self.channel, &since).ok()?;
        if subscription.recovery.recovered {
            for notification in &subscription.recovery.missed {
                self.forward(notification);
            }
        } else {
            for socket in self.shared.io.to(self.room.clone()).sockets() {
                disconnect_slow(&self.shared, socket);
            }
        }
        self.last = subscription.position;
        Some(subscription.live)
    }

    /// Stops when the room is empty and no join waits, deciding under the registry's lock so
    /// a join is either queued before (and served) or finds no task (and starts one).
    fn try_stop(&self, joins: &mpsc::Receiver<Join>) -> bool {
        let mut forwarders = self.shared.forwarders();
        if !joins.is_empty() || !self.shared.io.to(self.room.clone()).sockets().is_empty() {
            return false;
        }
        forwarders.remove(&self.channel);
        true
    }

    fn stop_now(&self) {
        self.shared.forwarders().remove(&self.channel);
        for socket in self.shared.io.to(self.room.clone()).sockets() {
            socket.leave(self.room.clone());
        }
    }
}

/// An event's payload serialized once, for every socket it goes to.
pub(super) struct Prepared(Box<RawValue>);

impl Prepared {
    fn notification(notification: &Notification) -> Option<Self> {
        to_raw_value(notification).ok().map(Self)
    }

    /// The story's `newmessage` payload, `{message}`: nothing else, as the story's page reads it.
    fn newmessage(notification: &Notification) -> Option<Self> {
        to_raw_value(&json!({ "message": story_message(notification) }))
            .ok()
            .map(Self)
    }
}

/// Emits `event` with `payload` to `socket`; false (and the socket on its way out) when its
/// queue is full or it is gone.
///
/// One emit per socket rather than socketioxide's room broadcast, which also encodes a packet
/// once but reports a full queue without saying whose: the hub must know which socket missed
/// a notification to disconnect it, so that it recovers instead of silently lacking one.
pub(super) fn emit_prepared(
    shared: &Arc<Shared>,
    socket: &SocketRef,
    event: &str,
    payload: &Prepared,
) -> bool {
    match socket.emit(event, &*payload.0) {
        Ok(()) => true,
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            disconnect_slow(shared, socket.clone());
            false
        }
        Err(_) => false,
    }
}

/// Takes a socket whose queue overflowed out of every room, then tells it why and
/// disconnects it as soon as its queue has room for that.
pub(super) fn disconnect_slow(shared: &Arc<Shared>, socket: SocketRef) {
    if !shared.slow_set().insert(socket.id) {
        return;
    }
    shared.slow_disconnects.fetch_add(1, Ordering::Relaxed);
    tracing::info!(socket = %socket.id, "socket.io subscriber disconnected: its queue is full");
    socket.leave_all();
    shared.notifs_subscribers().remove(&socket.id);
    let patience = shared.config.ping_interval + shared.config.ping_timeout;
    tokio::spawn(async move {
        let reason = json!({"code": SLOW_SUBSCRIBER_CLOSE, "message": SLOW_SUBSCRIBER_REASON});
        let deadline = tokio::time::Instant::now() + patience;
        let mut told = false;
        while socket.connected() && tokio::time::Instant::now() < deadline {
            told = told || socket.emit("hub_error", &reason).is_ok();
            if told && socket.clone().disconnect().is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Still full: the Engine.IO heartbeat cannot queue its ping either and closes it.
    });
}

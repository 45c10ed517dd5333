//! The hub on socket.io's Redis adapter: with `--broker redis://…`, socket.io servers that use
//! npm `@socket.io/redis-adapter` on the same Redis share rooms with the hubs.
//!
//! - What such a server broadcasts (`io.to("ops").emit("newmessage", …)`) every hub emits to
//!   its own sockets in those rooms, as the adapter of another socket.io server would. The
//!   hubs do not store it: it is that server's event, not a hub publication.
//! - What a hub publishes, the hub that took the publication (and only that one: the others
//!   receive it through the broker, as their sockets do) broadcasts on the adapter:
//!   `notification` to the channel's room and, on the story's channel, `newmessage` to its
//!   room, so each socket of those servers gets it once.
//! - Hubs ignore each other's adapter messages (their uids start with
//!   [`HUB_UID_PREFIX`]): their sockets already have those publications.
//!
//! Delivery over the adapter is socket.io's own: at most once, no history, no recovery. A
//! full relay queue or a lost Redis connection drops messages, with a warning.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::Serialize;
use serde_json::{json, Value};
use socketioxide::SocketIo;
use tokio::sync::mpsc;

use super::adapter_wire::{
    broadcast_pattern, decode_broadcast, encode_broadcast, room_channel, room_of_channel,
    AdapterBroadcast, HUB_UID_PREFIX,
};
use crate::broker::RedisBroker;
use crate::notification::Notification;
use crate::story::{story_message, NOTIFS_CHANNEL};

/// Adapter messages waiting to be published; past it they are dropped.
const PUBLISH_QUEUE: usize = 4096;
/// First wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts relaying between `redis`'s socket.io adapter channels under `key` and `io`: a
/// listener task, a publisher task and the broker's publication observer.
pub(crate) fn start(redis: &RedisBroker, io: SocketIo, key: String) {
    let uid = format!("{HUB_UID_PREFIX}{}", random_hex());
    let (queue, outgoing) = mpsc::channel::<(String, Vec<u8>)>(PUBLISH_QUEUE);
    let observer_key = key.clone();
    let observed = redis.observe_publications(Arc::new(move |notification: &Notification| {
        for (channel, message) in adapter_messages(&uid, &observer_key, notification) {
            if queue.try_send((channel, message)).is_err() {
                tracing::warn!(
                    channel = %notification.channel,
                    offset = notification.offset,
                    "socket.io adapter publish queue full: this notification does not reach the other socket.io servers"
                );
            }
        }
    }));
    if !observed {
        tracing::warn!(
            "the broker already relays publications elsewhere; socket.io adapter relay not started"
        );
        return;
    }
    tokio::spawn(publish(
        redis.client().clone(),
        redis.url().to_owned(),
        outgoing,
    ));
    tokio::spawn(listen(
        redis.client().clone(),
        redis.url().to_owned(),
        io,
        key,
    ));
}

/// The adapter messages of one hub publication: see the module's documentation.
fn adapter_messages(uid: &str, key: &str, notification: &Notification) -> Vec<(String, Vec<u8>)> {
    let channel = notification.channel.as_str();
    let mut events = vec![("notification", serde_json::to_value(notification))];
    if channel == NOTIFS_CHANNEL {
        events.push((
            "newmessage",
            Ok(json!({ "message": story_message(notification) })),
        ));
    }
    events
        .into_iter()
        .filter_map(|(event, payload)| {
            let encoded = payload.map_err(|e| e.to_string()).and_then(|payload| {
                encode_broadcast(uid, channel, event, &payload).map_err(|e| e.to_string())
            });
            match encoded {
                Ok(bytes) => Some((room_channel(key, channel), bytes)),
                Err(error) => {
                    tracing::warn!(%error, "encoding a socket.io adapter message");
                    None
                }
            }
        })
        .collect()
}

async fn publish(
    client: redis::Client,
    url: String,
    mut outgoing: mpsc::Receiver<(String, Vec<u8>)>,
) {
    let mut connection = None;
    let mut backoff = MIN_BACKOFF;
    while let Some((channel, message)) = outgoing.recv().await {
        loop {
            let conn = match &mut connection {
                Some(conn) => conn,
                None => match client.get_multiplexed_async_connection().await {
                    Ok(conn) => connection.insert(conn),
                    Err(error) => {
                        tracing::warn!(%url, %error, retry_in = ?backoff, "socket.io adapter publisher cannot connect");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            match redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&message)
                .query_async::<i64>(conn)
                .await
            {
                Ok(_) => {
                    backoff = MIN_BACKOFF;
                    break;
                }
                Err(error) => {
                    // At most once, as the adapter itself: this message is dropped.
                    tracing::warn!(%url, %error, "socket.io adapter publish failed; the message is dropped");
                    connection = None;
                    break;
                }
            }
        }
    }
}

/// Relays the other servers' broadcasts to this hub's sockets, reconnecting with backoff.
async fn listen(client: redis::Client, url: String, io: SocketIo, key: String) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let error = listen_once(&client, &io, &key, &mut backoff).await;
        tracing::warn!(%url, %error, retry_in = ?backoff, "socket.io adapter listener lost; reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn listen_once(
    client: &redis::Client,
    io: &SocketIo,
    key: &str,
    backoff: &mut Duration,
) -> String {
    let mut pubsub = match client.get_async_pubsub().await {
        Ok(pubsub) => pubsub,
        Err(error) => return error.to_string(),
    };
    if let Err(error) = pubsub.psubscribe(broadcast_pattern(key)).await {
        return error.to_string();
    }
    *backoff = MIN_BACKOFF;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        relay(
            io,
            key,
            message.get_channel_name(),
            message.get_payload_bytes(),
        )
        .await;
    }
    "the connection closed".to_owned()
}

/// Emits one adapter broadcast to this hub's sockets, unless it is a hub's or for a room
/// this hub has no socket in.
async fn relay(io: &SocketIo, key: &str, channel: &str, payload: &[u8]) {
    let Some(room) = room_of_channel(key, channel) else {
        return;
    };
    if !room.is_empty() && io.to(room.to_owned()).sockets().is_empty() {
        return;
    }
    let broadcast = match decode_broadcast(payload) {
        Ok(broadcast) => broadcast,
        Err(error) => {
            tracing::debug!(%error, channel, "ignoring a socket.io adapter message");
            return;
        }
    };
    let AdapterBroadcast {
        uid,
        event,
        args,
        rooms,
        except,
    } = broadcast;
    if uid.starts_with(HUB_UID_PREFIX) {
        return;
    }
    let operators = if rooms.is_empty() {
        io.except(except)
    } else {
        io.to(rooms).except(except)
    };
    // A room broadcast encodes the packet once. Its errors do not say which socket's queue
    // was full; a socket.io server's broadcast is at most once anyway.
    if let Err(error) = operators.emit(event, &Args(args)).await {
        tracing::debug!(%error, "relaying a socket.io adapter broadcast reached not every socket");
    }
}

/// An event's arguments, spread as socket.io arguments (socketioxide spreads a tuple).
struct Args(Vec<Value>);

impl Serialize for Args {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for arg in &self.0 {
            tuple.serialize_element(arg)?;
        }
        tuple.end()
    }
}

fn random_hex() -> String {
    use ring::rand::{SecureRandom as _, SystemRandom};
    let mut bytes = [0u8; 8];
    // A uid only has to differ from other servers'; the time is enough if the system RNG fails.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (nanos as u64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

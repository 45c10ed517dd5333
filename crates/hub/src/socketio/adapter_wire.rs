//! The broadcast messages of socket.io's Redis adapter (npm `@socket.io/redis-adapter` 8,
//! the default `createAdapter`): how a socket.io server tells the others on one Redis to emit
//! a packet to their own sockets.
//!
//! A broadcast is published on the Redis channel `KEY#NSP#` (`KEY#NSP#ROOM#` when it goes to
//! exactly one room) as the MessagePack array `[uid, packet, opts]`: `uid` names the sending
//! server, `packet` is `{type: 2, data: [event, ...args], nsp}` and `opts` is
//! `{rooms: [...], except: [...], flags: {...}}`. Only that part is spoken here; the
//! adapter's request/response channels (`fetchSockets`, `serverSideEmit`, …) are not.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The adapter's default key (its `key` option).
pub const DEFAULT_KEY: &str = "socket.io";
/// The namespace the hub serves.
pub const NAMESPACE: &str = "/";
/// Largest message read: a notification's fields are bounded well below it.
pub const MAX_ADAPTER_MESSAGE: usize = 256 * 1024;
/// Most rooms (and excepted rooms) one message may name.
pub const MAX_ROOMS: usize = 1024;
/// Every hub's adapter uid starts with this: hubs already share their publications through
/// the broker, so a hub ignores the adapter messages of other hubs.
pub const HUB_UID_PREFIX: &str = "protolab-hub-";
/// socket.io's packet type for an event.
const EVENT: u8 = 2;
/// How deep an event's arguments may nest.
const MAX_DEPTH: usize = 64;

/// A broadcast another socket.io server published.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterBroadcast {
    /// The sending server's adapter uid.
    pub uid: String,
    /// The event's name.
    pub event: String,
    /// The event's arguments.
    pub args: Vec<Value>,
    /// Rooms to emit to; none: every socket of the namespace.
    pub rooms: Vec<String>,
    /// Rooms (or socket ids) not to emit to.
    pub except: Vec<String>,
}

/// Why a message on the adapter's channels was not relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterMessageError {
    /// Larger than [`MAX_ADAPTER_MESSAGE`].
    #[error("adapter message of {0} bytes; at most {MAX_ADAPTER_MESSAGE} are read")]
    TooLarge(usize),
    /// Not the adapter's `[uid, packet, opts]`.
    #[error("not a socket.io Redis adapter broadcast: {0}")]
    Malformed(String),
    /// A packet that is not an event (type 2).
    #[error("packet type {0} is not an event; only events are relayed")]
    NotAnEvent(u8),
    /// For a namespace the hub does not serve.
    #[error("namespace {0:?}: the hub serves only \"/\"")]
    OtherNamespace(String),
}

#[derive(Deserialize)]
struct WireMessage(String, WirePacket, WireOpts);

#[derive(Deserialize)]
struct WirePacket {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    data: Vec<Value>,
    #[serde(default)]
    nsp: Option<String>,
}

#[derive(Deserialize)]
struct WireOpts {
    #[serde(default)]
    rooms: Vec<Value>,
    #[serde(default)]
    except: Vec<Value>,
}

/// Reads a broadcast published on the adapter's channel.
pub fn decode_broadcast(bytes: &[u8]) -> Result<AdapterBroadcast, AdapterMessageError> {
    if bytes.len() > MAX_ADAPTER_MESSAGE {
        return Err(AdapterMessageError::TooLarge(bytes.len()));
    }
    let malformed = |reason: String| AdapterMessageError::Malformed(reason);
    let mut decoder = rmp_serde::Deserializer::from_read_ref(bytes);
    // the message's own three levels, then its data
    decoder.set_max_depth(MAX_DEPTH + 3);
    let WireMessage(uid, packet, opts) =
        WireMessage::deserialize(&mut decoder).map_err(|e| malformed(e.to_string()))?;
    if packet.kind != EVENT {
        return Err(AdapterMessageError::NotAnEvent(packet.kind));
    }
    // The adapter reads a packet without `nsp` as the default namespace's.
    let nsp = packet.nsp.unwrap_or_else(|| NAMESPACE.to_owned());
    if nsp != NAMESPACE {
        return Err(AdapterMessageError::OtherNamespace(nsp));
    }
    let mut data = packet.data.into_iter();
    let event = match data.next() {
        Some(Value::String(event)) if !event.is_empty() => event,
        _ => return Err(malformed("data[0]: the event's name is missing".to_owned())),
    };
    Ok(AdapterBroadcast {
        uid,
        event,
        args: data.collect(),
        rooms: room_names(opts.rooms, "opts.rooms")?,
        except: room_names(opts.except, "opts.except")?,
    })
}

/// Rooms are strings in socket.io; a JavaScript server may use numbers, which it matches
/// by their text.
fn room_names(rooms: Vec<Value>, field: &str) -> Result<Vec<String>, AdapterMessageError> {
    if rooms.len() > MAX_ROOMS {
        return Err(AdapterMessageError::Malformed(format!(
            "{field}: {} rooms, at most {MAX_ROOMS}",
            rooms.len()
        )));
    }
    rooms
        .into_iter()
        .map(|room| match room {
            Value::String(name) => Ok(name),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(AdapterMessageError::Malformed(format!(
                "{field}: {other} is not a room name"
            ))),
        })
        .collect()
}

#[derive(Serialize)]
struct OutPacket<'a, T: ?Sized> {
    #[serde(rename = "type")]
    kind: u8,
    data: (&'a str, &'a T),
    nsp: &'a str,
}

#[derive(Serialize)]
struct OutOpts<'a> {
    rooms: [&'a str; 1],
    except: [&'a str; 0],
    flags: Flags,
}

#[derive(Serialize)]
struct Flags {}

/// The message that emits `event` `payload` to the sockets in `room` of every socket.io
/// server on the adapter, as `io.to(room).emit(event, payload)` on one of them would.
pub fn encode_broadcast<T: Serialize + ?Sized>(
    uid: &str,
    room: &str,
    event: &str,
    payload: &T,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let packet = OutPacket {
        kind: EVENT,
        data: (event, payload),
        nsp: NAMESPACE,
    };
    let opts = OutOpts {
        rooms: [room],
        except: [],
        flags: Flags {},
    };
    rmp_serde::to_vec_named(&(uid, packet, opts))
}

/// The Redis channel a broadcast to exactly `room` goes on.
pub fn room_channel(key: &str, room: &str) -> String {
    format!("{key}#{NAMESPACE}#{room}#")
}

/// The pattern that matches every broadcast of the namespace.
pub fn broadcast_pattern(key: &str) -> String {
    format!("{key}#{NAMESPACE}#*")
}

/// The room a broadcast channel names: `Some("")` for the namespace's own channel (many
/// rooms, or every socket), `None` for a channel that is not a broadcast channel of `key`.
pub fn room_of_channel<'a>(key: &str, channel: &'a str) -> Option<&'a str> {
    let rest = channel
        .strip_prefix(key)?
        .strip_prefix('#')?
        .strip_prefix(NAMESPACE)?
        .strip_prefix('#')?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_suffix('#')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_broadcast_reads_back_as_written() {
        let bytes = encode_broadcast(
            "protolab-hub-1",
            "ops",
            "newmessage",
            &json!({"message": "Sok"}),
        )
        .expect("encodes");
        let read = decode_broadcast(&bytes).expect("decodes");
        assert_eq!(read.uid, "protolab-hub-1");
        assert_eq!(read.event, "newmessage");
        assert_eq!(read.args, [json!({"message": "Sok"})]);
        assert_eq!(read.rooms, ["ops"]);
        assert!(read.except.is_empty());
    }

    #[test]
    fn what_is_not_an_event_broadcast_is_refused_by_reason() {
        let not_event = rmp_serde::to_vec_named(&(
            "u",
            json!({"type": 3, "data": ["x"], "nsp": "/"}),
            json!({"rooms": [], "except": []}),
        ))
        .expect("encodes");
        assert_eq!(
            decode_broadcast(&not_event),
            Err(AdapterMessageError::NotAnEvent(3))
        );
        let admin = rmp_serde::to_vec_named(&(
            "u",
            json!({"type": 2, "data": ["x"], "nsp": "/admin"}),
            json!({"rooms": [1], "except": []}),
        ))
        .expect("encodes");
        assert!(matches!(
            decode_broadcast(&admin),
            Err(AdapterMessageError::OtherNamespace(_))
        ));
        let no_event = rmp_serde::to_vec_named(&(
            "u",
            json!({"type": 2, "data": [], "nsp": "/"}),
            json!({"rooms": [], "except": []}),
        ))
        .expect("encodes");
        assert!(matches!(
            decode_broadcast(&no_event),
            Err(AdapterMessageError::Malformed(m)) if m.starts_with("data[0]")
        ));
        let deep = (0..100).fold(json!(0), |inner, _| json!([inner]));
        let deep = rmp_serde::to_vec_named(&(
            "u",
            json!({"type": 2, "data": ["x", deep], "nsp": "/"}),
            json!({"rooms": [], "except": []}),
        ))
        .expect("encodes");
        assert!(decode_broadcast(&deep).is_err());
        assert!(decode_broadcast(b"\x93").is_err());
        assert!(matches!(
            decode_broadcast(&vec![0; MAX_ADAPTER_MESSAGE + 1]),
            Err(AdapterMessageError::TooLarge(_))
        ));
        // an array that claims 2^32 - 1 items in five bytes is refused, not allocated
        assert!(decode_broadcast(b"\xdd\xff\xff\xff\xff").is_err());
    }

    /// Written by the adapter's own encoder (npm `notepack.io`), as a Node server sends them.
    #[test]
    fn node_servers_messages_are_read() {
        let seeds = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/seeds/socketio_adapter/"
        );
        let room = std::fs::read(format!("{seeds}node-room")).expect("seed");
        let read = decode_broadcast(&room).expect("decodes");
        assert_eq!(
            (
                read.uid.as_str(),
                read.event.as_str(),
                read.rooms.as_slice()
            ),
            ("Ab3xYz", "newmessage", ["ops".to_owned()].as_slice())
        );
        assert_eq!(read.args, [json!({"message": "Wfrom node"})]);
        let all = std::fs::read(format!("{seeds}node-all")).expect("seed");
        let read = decode_broadcast(&all).expect("decodes");
        assert!(read.rooms.is_empty());
        assert_eq!(read.except, ["sid1"]);
        assert_eq!(read.args[0]["n"], json!(1.5));
        // binary arguments are refused with a reason, not relayed half
        let binary = std::fs::read(format!("{seeds}node-binary")).expect("seed");
        assert!(matches!(
            decode_broadcast(&binary),
            Err(AdapterMessageError::Malformed(_))
        ));
    }

    #[test]
    fn channels_name_their_room() {
        assert_eq!(room_channel("socket.io", "ops"), "socket.io#/#ops#");
        assert_eq!(
            room_of_channel("socket.io", "socket.io#/#ops#"),
            Some("ops")
        );
        assert_eq!(room_of_channel("socket.io", "socket.io#/#"), Some(""));
        assert_eq!(room_of_channel("socket.io", "socket.io#/#ops"), None);
        assert_eq!(room_of_channel("socket.io", "other#/#ops#"), None);
        assert_eq!(broadcast_pattern("socket.io"), "socket.io#/#*");
    }
}

//! Bench peer `ws-floor` of `protolab-bench hub`: the least a WebSocket fan-out server can do,
//! so the bench can tell what the kernel costs from what a server adds.
//!
//! Run with `cargo run --release -p protolab-bench --bin bench-peer-fanout-floor -- --port 9003`.
//!
//! One thread. Subscribers complete the WebSocket handshake on `/connection/ws` and send the
//! hub's subscribe command; the answer is the hub's `subscribed` reply. `GET /notifs?msg=TEXT`
//! builds ONE WebSocket frame (the hub's `notification` JSON) and writes it to every subscriber
//! with one nonblocking write each; what a write could not finish waits in that subscriber's
//! backlog and is flushed by its own task when the socket is writable. No task is woken per
//! delivery and nothing is serialized per subscriber: what is left is accept, the handshake,
//! and one `write(2)` per delivery.
//!
//! Every channel name shares the one subscriber list (the bench subscribes to `notifs` only).
//! Parsing is protolab-wire's (HTTP/1 heads, the handshake, WebSocket frames), bounded by
//! `--max-header-bytes` and small frame limits; bad input closes that connection.

use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use protolab_bench::peer::{announce_listening, PeerArgs};
use protolab_wire::http1::{parse_request, query, HeadLimits, RequestHead};
use protolab_wire::ws::{
    close_code, encode_close, encode_frame, handshake, Decoder, DecoderConfig, Message, OpCode,
    Role,
};
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Largest frame or message a subscriber may send: its commands are a few dozen bytes.
const MAX_CLIENT_FRAME: usize = 4096;
/// Bytes a subscriber may owe beyond what the kernel took; past it the subscriber is too slow
/// and is closed, so one stalled reader cannot grow the server without bound.
const MAX_BACKLOG: usize = 256 * 1024;
/// Time a connection gets to send its request head, so idle sockets that never speak go away.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `msg` a publication may carry.
const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    peer: PeerArgs,
    /// Open connections held at once (subscribers and publishers); more are closed at accept.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Largest HTTP request head accepted, in bytes.
    #[arg(long, default_value_t = 8192)]
    max_header_bytes: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.peer.addr()).await?;
    announce_listening();
    let floor = Rc::new(Floor {
        subscribers: RefCell::new(Slots::default()),
        connections: Cell::new(0),
        offset: Cell::new(0),
        limits: HeadLimits {
            max_head_bytes: args.max_header_bytes,
            ..HeadLimits::default()
        },
    });
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors or a connection reset before accept: the listener
                // itself is fine, so wait a moment instead of spinning on the same error.
                eprintln!("accept: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if floor.connections.get() >= args.max_connections {
            drop(stream);
            continue;
        }
        // One small frame per publication: Nagle would hold the next behind the last's ACK.
        let _ = stream.set_nodelay(true);
        let guard = ConnectionGuard::new(&floor);
        let floor = Rc::clone(&floor);
        tokio::task::spawn_local(async move {
            let _guard = guard;
            if let Err(err) = connection(&floor, stream).await {
                if err.kind() != ErrorKind::ConnectionReset {
                    eprintln!("connection: {err}");
                }
            }
        });
    }
}

/// The server's state, on its one thread.
struct Floor {
    subscribers: RefCell<Slots>,
    connections: Cell<usize>,
    /// Publications so far: each notification's `offset`.
    offset: Cell<u64>,
    limits: HeadLimits,
}

/// Subscribers by slot; a freed slot is reused, so the list never grows past the most held.
#[derive(Default)]
struct Slots {
    slots: Vec<Option<Rc<Subscriber>>>,
    free: Vec<usize>,
}

impl Slots {
    fn insert(&mut self, subscriber: Rc<Subscriber>) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(subscriber);
                slot
            }
            None => {
                self.slots.push(Some(subscriber));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        if let Some(entry) = self.slots.get_mut(slot) {
            if entry.take().is_some() {
                self.free.push(slot);
            }
        }
    }
}

/// Counts a connection while it lives.
struct ConnectionGuard(Rc<Floor>);

impl ConnectionGuard {
    fn new(floor: &Rc<Floor>) -> Self {
        floor.connections.set(floor.connections.get() + 1);
        Self(Rc::clone(floor))
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

/// One subscribed socket, shared by the fan-out (which writes) and its own task (which reads,
/// flushes the backlog and closes).
struct Subscriber {
    stream: TcpStream,
    /// Bytes the kernel did not take yet, in order; new frames queue behind them.
    backlog: RefCell<Vec<u8>>,
    /// Set when a write failed or the backlog overflowed: the task closes the socket.
    dead: Cell<bool>,
    /// Wakes the subscriber's task: a write left a backlog, or the subscriber died.
    wake: Notify,
}

impl Subscriber {
    /// One plain write of `frame`; only a write that cannot finish wakes the task.
    fn send(&self, frame: &[u8]) {
        if self.dead.get() {
            return;
        }
        let mut backlog = self.backlog.borrow_mut();
        if !backlog.is_empty() {
            if backlog.len() + frame.len() > MAX_BACKLOG {
                self.die();
            } else {
                backlog.extend_from_slice(frame);
            }
            return;
        }
        match self.stream.try_write(frame) {
            Ok(n) if n == frame.len() => {}
            Ok(n) => {
                backlog.extend_from_slice(&frame[n..]);
                self.wake.notify_one();
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                backlog.extend_from_slice(frame);
                self.wake.notify_one();
            }
            Err(_) => self.die(),
        }
    }

    fn die(&self) {
        self.dead.set(true);
        self.wake.notify_one();
    }

    /// Writes what the backlog holds until the kernel stops taking it.
    fn flush(&self) -> std::io::Result<()> {
        let mut backlog = self.backlog.borrow_mut();
        while !backlog.is_empty() {
            match self.stream.try_write(&backlog) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    backlog.drain(..n);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// Reads the request head and routes: the WebSocket upgrade, a publication, or 404.
async fn connection(floor: &Floor, stream: TcpStream) -> std::io::Result<()> {
    let Some((head, rest)) = tokio::time::timeout(HEAD_TIMEOUT, read_head(floor, &stream))
        .await
        .unwrap_or(Ok(None))?
    else {
        return Ok(());
    };
    let (path, target_query) = head.path_and_query();
    match path {
        "/connection/ws" if handshake::is_upgrade_request(&head) => {
            let upgrade = match handshake::check_request(&head) {
                Ok(upgrade) => upgrade,
                Err(err) => return answer(stream, err.status(), &err.to_string()).await,
            };
            let mut response = Vec::with_capacity(160);
            handshake::write_response(&mut response, &upgrade.key, None, &[]);
            let mut stream = stream;
            stream.write_all(&response).await?;
            subscriber(floor, stream, rest).await
        }
        "/notifs" if head.method == "GET" => {
            let msg = match target_query.map(|q| query::find(q, "msg")).transpose() {
                Ok(Some(Some(msg))) if !msg.is_empty() && msg.len() <= MAX_MESSAGE => msg,
                Ok(_) => {
                    return answer(
                        stream,
                        400,
                        "send /notifs?msg=Sdisk%20full (S, W, E or I, then the text)",
                    )
                    .await
                }
                Err(err) => return answer(stream, 400, &err.to_string()).await,
            };
            publish(floor, &msg);
            answer(stream, 202, "accepted").await
        }
        _ => answer(stream, 404, "not found: /connection/ws or /notifs?msg=").await,
    }
}

/// The request head, and the bytes after it; `None` when the peer closed first or sent a
/// head that does not parse (answered 400 or 431 there).
async fn read_head(
    floor: &Floor,
    stream: &TcpStream,
) -> std::io::Result<Option<(RequestHead, Vec<u8>)>> {
    let mut buf = Vec::new();
    loop {
        stream.readable().await?;
        match read_some(stream, &mut buf, floor.limits.max_head_bytes + 1)? {
            Read::End => return Ok(None),
            Read::Nothing => continue,
            Read::Some => {}
        }
        match parse_request(&buf, &floor.limits) {
            Ok(Some((head, consumed))) => {
                buf.drain(..consumed);
                return Ok(Some((head, buf)));
            }
            Ok(None) => {}
            Err(err) => {
                let status = err.status();
                let _ = stream.try_write(&status_response(status, &err.to_string()));
                return Ok(None);
            }
        }
    }
}

/// What one nonblocking read did.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// Bytes were appended.
    Some,
    /// Nothing there after all (a spurious wake-up): wait again.
    Nothing,
    /// The peer closed its side.
    End,
}

/// One nonblocking read of at most `room - buf.len()` bytes (at least one) onto `buf`.
fn read_some(stream: &TcpStream, buf: &mut Vec<u8>, room: usize) -> std::io::Result<Read> {
    let mut chunk = [0u8; 2048];
    let want = room.saturating_sub(buf.len()).clamp(1, chunk.len());
    match stream.try_read(&mut chunk[..want]) {
        Ok(0) => Ok(Read::End),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(Read::Some)
        }
        Err(err) if err.kind() == ErrorKind::WouldBlock => Ok(Read::Nothing),
        Err(err) => Err(err),
    }
}

fn status_response(status: u16, text: &str) -> Vec<u8> {
    let reason = protolab_wire::http1::reason_phrase(status);
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}\n",
        text.len() + 1
    )
    .into_bytes()
}

async fn answer(mut stream: TcpStream, status: u16, text: &str) -> std::io::Result<()> {
    stream.write_all(&status_response(status, text)).await?;
    stream.shutdown().await
}

/// The subscribe command, as the hub's `/connection/ws` takes it.
#[derive(Deserialize)]
struct Subscribe {
    #[serde(rename = "type")]
    kind: String,
    id: u64,
    channels: Vec<ChannelEntry>,
}

#[derive(Deserialize)]
struct ChannelEntry {
    channel: String,
}

/// A WebSocket subscriber: waits for its subscribe command, joins the list, then reads (pings,
/// close) and flushes its backlog until it goes.
async fn subscriber(floor: &Floor, stream: TcpStream, rest: Vec<u8>) -> std::io::Result<()> {
    let config = DecoderConfig {
        max_frame_bytes: MAX_CLIENT_FRAME,
        max_message_bytes: MAX_CLIENT_FRAME,
        ..DecoderConfig::default()
    };
    let mut decoder = Decoder::new(Role::Server, config);
    let mut inbox = rest;
    let sub = Rc::new(Subscriber {
        stream,
        backlog: RefCell::new(Vec::new()),
        dead: Cell::new(false),
        wake: Notify::new(),
    });
    let mut slot = None;
    let outcome = async {
        loop {
            for message in decode_all(&mut decoder, &mut inbox)? {
                match message {
                    Message::Text(text) if slot.is_none() => {
                        let reply = match subscribe_reply(&text, floor.offset.get()) {
                            Ok(reply) => reply,
                            Err(why) => {
                                sub.send(&text_frame(&error_json(&why)));
                                return Ok(());
                            }
                        };
                        sub.send(&text_frame(&reply));
                        slot = Some(floor.subscribers.borrow_mut().insert(Rc::clone(&sub)));
                    }
                    Message::Ping(data) => {
                        let mut pong = Vec::new();
                        encode_frame(&mut pong, true, OpCode::Pong, None, &data);
                        sub.send(&pong);
                    }
                    Message::Close(_) => {
                        let mut close = Vec::new();
                        encode_close(&mut close, None, close_code::NORMAL, "");
                        sub.send(&close);
                        sub.flush()?;
                        return Ok(());
                    }
                    Message::Text(_) | Message::Binary(_) | Message::Pong(_) => {}
                }
            }
            if sub.dead.get() {
                return Ok(());
            }
            let pending = !sub.backlog.borrow().is_empty();
            tokio::select! {
                ready = sub.stream.readable() => {
                    ready?;
                    // A whole frame (header and payload) always fits, so the decoder never waits
                    // for bytes this buffer has no room for.
                    if read_some(&sub.stream, &mut inbox, MAX_CLIENT_FRAME + 16)? == Read::End {
                        return Ok(());
                    }
                }
                ready = sub.stream.writable(), if pending => {
                    ready?;
                    sub.flush()?;
                }
                () = sub.wake.notified() => {}
            }
        }
    }
    .await;
    if let Some(slot) = slot {
        floor.subscribers.borrow_mut().remove(slot);
    }
    outcome
}

/// Every whole message in `inbox`, consumed from it; a protocol error is an `InvalidData`
/// error that ends the connection.
fn decode_all(decoder: &mut Decoder, inbox: &mut Vec<u8>) -> std::io::Result<Vec<Message>> {
    let mut messages = Vec::new();
    let mut at = 0;
    loop {
        let (used, message) = decoder
            .decode(&inbox[at..])
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e.to_string()))?;
        at += used;
        if let Some(message) = message {
            messages.push(message);
        }
        if used == 0 {
            break;
        }
    }
    inbox.drain(..at);
    if inbox.capacity() > MAX_CLIENT_FRAME * 2 {
        inbox.shrink_to(MAX_CLIENT_FRAME);
    }
    Ok(messages)
}

/// The hub's `subscribed` reply to a subscribe command for one channel, or why not.
fn subscribe_reply(command: &str, offset: u64) -> Result<String, String> {
    let sub: Subscribe = serde_json::from_str(command).map_err(|e| format!("bad command: {e}"))?;
    if sub.kind != "subscribe" {
        return Err(format!("only subscribe is served here, not `{}`", sub.kind));
    }
    let [entry] = sub.channels.as_slice() else {
        return Err("subscribe to exactly one channel".into());
    };
    let channel = serde_json::to_string(&entry.channel).unwrap_or_default();
    Ok(format!(
        r#"{{"type":"subscribed","id":{},"channel":{channel},"epoch":"floor","offset":{offset},"recovered":true}}"#,
        sub.id
    ))
}

fn error_json(message: &str) -> String {
    let message = serde_json::to_string(message).unwrap_or_default();
    format!(r#"{{"type":"error","code":400,"message":{message}}}"#)
}

fn text_frame(text: &str) -> Vec<u8> {
    let mut frame = Vec::with_capacity(text.len() + 4);
    encode_frame(&mut frame, true, OpCode::Text, None, text.as_bytes());
    frame
}

/// One notification frame for `msg`, written to every subscriber.
fn publish(floor: &Floor, msg: &str) {
    let offset = floor.offset.get() + 1;
    floor.offset.set(offset);
    let frame = text_frame(&notification_json(msg, offset));
    for subscriber in floor.subscribers.borrow().slots.iter().flatten() {
        subscriber.send(&frame);
    }
}

/// The hub's `notification` message for a `/notifs?msg=` text: its first letter names the
/// level, as in the story's interface.
fn notification_json(msg: &str, offset: u64) -> String {
    let (level, body) = match msg.as_bytes().first() {
        Some(b'S') => ("success", &msg[1..]),
        Some(b'W') => ("warning", &msg[1..]),
        Some(b'E') => ("error", &msg[1..]),
        Some(b'I') => ("info", &msg[1..]),
        _ => ("info", msg),
    };
    let body = serde_json::to_string(body).unwrap_or_default();
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        r#"{{"type":"notification","channel":"notifs","offset":{offset},"epoch":"floor","level":"{level}","title":"","body":{body},"time_ms":{time_ms}}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_replies_as_the_hub_does() {
        let reply = subscribe_reply(
            r#"{"type":"subscribe","id":1,"channels":[{"channel":"notifs"}]}"#,
            3,
        )
        .expect("a subscribe command");
        assert_eq!(
            reply,
            r#"{"type":"subscribed","id":1,"channel":"notifs","epoch":"floor","offset":3,"recovered":true}"#
        );
        for bad in [
            "",
            "{",
            r#"{"type":"ping","id":1,"channels":[]}"#,
            r#"{"type":"subscribe","id":1,"channels":[]}"#,
            r#"{"type":"subscribe","id":-1,"channels":[{"channel":"a"}]}"#,
        ] {
            assert!(subscribe_reply(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn notifications_carry_the_text_escaped() {
        let json = notification_json("Sdisk \"full\"", 7);
        let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(value["type"], "notification");
        assert_eq!(value["level"], "success");
        assert_eq!(value["body"], "disk \"full\"");
        assert_eq!(value["offset"], 7);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&notification_json("€x", 1)).expect("JSON")
                ["body"],
            "€x"
        );
    }
}

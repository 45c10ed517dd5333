//! One `GET /events` stream: the head, `retry:`, a `hello` event naming the stream, what a
//! resuming client missed, then push events, echo events and heartbeat comments until the
//! client leaves, a write stalls past the write timeout, or the lab shuts down.
//!
//! Memory stays bounded whatever the client does: the stream keeps only its position in the
//! feed (a number), not a queue of events; a client that stops reading stalls one write, which
//! is given up after [`Limits::write_timeout`](crate::Limits::write_timeout), and the stream
//! ends. Events it had not been sent by then are still in the ring for its reconnect.

use std::sync::Arc;

use protolab_wire::http1::{Headers as _, RequestHead};
use tokio::time::Instant;

use super::{millis_param, DEFAULT_HEARTBEAT, RETRY_MS};
use crate::ctx::{close_gracefully, write_out, ConnCtx};
use crate::events::feed::{Event, EventId, Lost};
use crate::events::{data_lines, OpenError, Sse};
use crate::io::{Io, LazyDeadline, READ_CHUNK};
use crate::lend::LentBuf;

/// Shortest heartbeat a client may ask for (`?heartbeat_ms=`).
const MIN_HEARTBEAT_MS: u64 = 10;
/// Longest heartbeat a client may ask for: an hour.
const MAX_HEARTBEAT_MS: u64 = 3_600_000;

/// Output capacity kept between writes; a larger one (the head, a replay of the ring, a big
/// echo) is freed once written, so an idle stream holds next to nothing. Pushes need none:
/// they are written from the feed's shared encoding.
const KEPT_OUT_BYTES: usize = 512;

/// Where the client says it was: `Last-Event-ID` (what `EventSource` sends on reconnect), or
/// `?last_event_id=` for clients that cannot set headers.
fn last_event_id(head: &RequestHead, query: &str) -> Result<Option<String>, String> {
    if let Some(value) = head.header_str("last-event-id") {
        return Ok(Some(value.to_string()));
    }
    protolab_wire::http1::query::find(query, "last_event_id")
        .map(|v| v.map(std::borrow::Cow::into_owned))
        .map_err(|e| format!("bad query string: {e}\n"))
}

/// What went wrong before the stream began: a status and message to answer with.
pub(crate) type Refusal = (u16, String);

/// Serves the stream. `Err` answers before any of it was written.
pub(crate) async fn run<S: Io>(
    stream: &mut S,
    buf: &mut LentBuf<'_>,
    head: &RequestHead,
    ctx: &ConnCtx,
    sse: &Sse,
    hsts: Option<&'static str>,
) -> Result<(), Refusal> {
    let query = head.query().unwrap_or("");
    let heartbeat = millis_param(
        query,
        "heartbeat_ms",
        MIN_HEARTBEAT_MS..=MAX_HEARTBEAT_MS,
        DEFAULT_HEARTBEAT,
    )
    .map_err(|msg| (400, msg))?;
    let last = last_event_id(head, query).map_err(|msg| (400, msg))?;
    let (registration, mut echoes) = sse.open().map_err(|err| match err {
        OpenError::Full(max) => (
            503,
            format!("{max} event streams are open, the most this lab serves; close one or raise --max-connections\n"),
        ),
        OpenError::NoRandom => (503, "no random numbers for a stream id; try again\n".into()),
    })?;
    let feed = &sse.feed;
    // Subscribed before the ring is read: an event pushed in between wakes the loop.
    let mut changes = feed.subscribe();
    let mut out = Vec::with_capacity(1024);
    write_head(&mut out, hsts);
    out.extend_from_slice(format!("retry: {RETRY_MS}\n\n").as_bytes());
    out.extend_from_slice(b"event: hello\n");
    data_lines(
        &mut out,
        &format!(
            r#"{{"stream":"{}","epoch":{},"newest":"{}","heartbeat_ms":{},"echo":"POST /echo?stream={}"}}"#,
            registration.id,
            feed.epoch(),
            feed.id(feed.newest()),
            heartbeat.as_millis(),
            registration.id
        ),
    );
    // The position in the feed: the newest event this client has been sent.
    let mut cursor = match last {
        None => feed.newest(),
        Some(text) => match EventId::parse(&text) {
            Some(id) => {
                let since = feed.since(id);
                match since.lost {
                    Some(Lost::OtherFeed) => reset(
                        &mut out,
                        sse,
                        &text,
                        "the id is from before a lab restart (another feed)",
                    ),
                    _ => {
                        if let Some(lost) = since.lost {
                            gap(&mut out, sse, lost);
                        }
                        let mut cursor = id.seq;
                        for event in &since.events {
                            push_event(&mut out, event);
                            cursor = event.seq;
                        }
                        cursor
                    }
                }
            }
            None => reset(
                &mut out,
                sse,
                &text,
                "the id is not one of this lab's (EPOCH-SEQ)",
            ),
        },
    };

    // The head was the client's whole say: the read buffer goes back while the stream waits,
    // as an idle keep-alive connection's does (bytes after the head were never looked at).
    buf.clear();
    buf.give_back_if_empty();
    // A push for this stream alone, not yet written: the feed's shared encoding of it, so the
    // common case (one new event, nothing else owed) writes it without a copy.
    let mut pending: Option<Arc<[u8]>> = None;
    let graceful = ctx.graceful.cancelled();
    let hard = ctx.hard.cancelled();
    // Moved on every write but fired rarely: resetting a timer per push would touch the
    // runtime's timer wheel once per subscriber per event.
    let mut beat = LazyDeadline::new(Instant::now() + heartbeat);
    tokio::pin!(graceful, hard);
    loop {
        if pending.is_some() || !out.is_empty() {
            let written = match pending.take() {
                Some(frame) => write_out(stream, &frame, ctx).await,
                None => write_out(stream, &out, ctx).await,
            };
            if written.is_err() {
                // Stalled past the write timeout, gone, or a hard shutdown: nothing more can
                // be said, so no lingering close.
                tracing::debug!(stream = %registration.id, "event stream write failed; ending it");
                return Ok(());
            }
            out.clear();
            if out.capacity() > KEPT_OUT_BYTES {
                out = Vec::new();
            }
            beat.push_back(Instant::now() + heartbeat);
        }
        // Biased, with the feed right after shutdown: a push wakes every stream at once, and
        // each then polls only what comes before the branch that woke it.
        tokio::select! {
            biased;
            () = hard.as_mut() => return Ok(()),
            () = graceful.as_mut() => {
                out.extend_from_slice(b": the lab is shutting down\n\n");
                let _ = write_out(stream, &out, ctx).await;
                close_gracefully(stream, ctx).await;
                return Ok(());
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let lost = feed.each_after(cursor, |event| {
                    queue_push(&mut out, &mut pending, event);
                    cursor = event.seq;
                });
                if let Some(lost) = lost {
                    // Before the events that followed it, as a reconnect would have it.
                    let mut told = Vec::new();
                    gap(&mut told, sse, lost);
                    if let Some(frame) = pending.take() {
                        out.extend_from_slice(&frame);
                    }
                    out.splice(0..0, told);
                }
            }
            echo = echoes.recv() => {
                let Some(echo) = echo else { return Ok(()) };
                out.extend_from_slice(&echo.event);
                // What else is queued goes in the same write.
                while let Ok(echo) = echoes.try_recv() {
                    out.extend_from_slice(&echo.event);
                }
            }
            read = buf.read_from(stream, READ_CHUNK) => match read {
                Ok(0) | Err(_) => return Ok(()),
                // A client has nothing to say on an event stream; whatever it sends is dropped.
                Ok(_) => {
                    buf.clear();
                    buf.give_back_if_empty();
                }
            },
            () = beat.expired() => {
                out.extend_from_slice(b": heartbeat\n\n");
                beat.push_back(Instant::now() + heartbeat);
            }
        }
    }
}

/// Queues `event` for the next write: as the feed's own encoding when it is the only thing
/// owed, else copied after what is.
fn queue_push(out: &mut Vec<u8>, pending: &mut Option<Arc<[u8]>>, event: &Event) {
    if out.is_empty() && pending.is_none() {
        *pending = Some(Arc::clone(&event.frame));
        return;
    }
    if let Some(frame) = pending.take() {
        out.extend_from_slice(&frame);
    }
    out.extend_from_slice(&event.frame);
}

/// The response head. No length and no chunking: the body runs until the connection closes
/// (RFC 9112 §6.3), which every SSE client expects and an HTTP/1.0 client understands.
fn write_head(out: &mut Vec<u8>, hsts: Option<&'static str>) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ndate: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.extend_from_slice(
        b"\r\nserver: protolab\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
cache-control: no-store\r\nx-content-type-options: nosniff\r\n\
x-accel-buffering: no\r\nconnection: close\r\n",
    );
    if let Some(hsts) = hsts {
        out.extend_from_slice(b"strict-transport-security: ");
        out.extend_from_slice(hsts.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn push_event(out: &mut Vec<u8>, event: &Event) {
    out.extend_from_slice(&event.frame);
}

/// Tells the client events it missed are gone, and which.
fn gap(out: &mut Vec<u8>, sse: &Sse, lost: Lost) {
    if let Lost::Dropped { from, to } = lost {
        out.extend_from_slice(b"event: gap\n");
        data_lines(
            out,
            &format!(
                r#"{{"from":"{}","to":"{}","missed":{}}}"#,
                sse.feed.id(from),
                sse.feed.id(to),
                to - from + 1
            ),
        );
    }
}

/// Tells the client what it missed cannot be known, and moves it to the newest event (the
/// `id:` line, so its next reconnect resumes from here). Returns the new position.
fn reset(out: &mut Vec<u8>, sse: &Sse, given: &str, reason: &str) -> u64 {
    let newest = sse.feed.newest();
    // The value is echoed back JSON-escaped and cut short: it came from the client.
    let given: String = given.chars().take(64).collect();
    let given = serde_json::Value::String(given).to_string();
    out.extend_from_slice(format!("event: reset\nid: {}\n", sse.feed.id(newest)).as_bytes());
    data_lines(
        out,
        &format!(
            r#"{{"last_event_id":{given},"reason":"{reason}","resume_from":"{}"}}"#,
            sse.feed.id(newest)
        ),
    );
    newest
}

//! The polling paths beside the event stream, over the same feed: `GET /poll?after=ID` answers
//! at once with the events after `ID`; `GET /poll/long?after=ID` holds the request until there
//! is one (or `timeout_ms` passes: 204). Both answer JSON:
//! `{"events":[{"id":…,"data":{…}}…],"last":ID,"gap":null|{"from":…,"to":…,"missed":N},"reset":bool}`;
//! the client asks next with `after=` the `last` it got. Without `after` a client starts at the
//! newest event: `/poll` answers none, `/poll/long` waits for the next one. And `POST
//! /echo?stream=ID`, which puts its body on an open event stream.

use std::time::Duration;

use protolab_wire::http1::{query, RequestHead};

use super::millis_param;
use crate::apps::{not_allowed, Response};
use crate::ctx::ConnCtx;
use crate::events::feed::{EventId, Lost, Since};
use crate::events::{Delivery, Kind, Sse};

/// How long a long poll is held when the client does not say (`?timeout_ms=`): under the
/// 30 s at which many proxies give up on a silent response.
const DEFAULT_HOLD: Duration = Duration::from_secs(25);
/// Longest hold a client may ask for; at most the idle timeout's default.
const MAX_HOLD_MS: u64 = 60_000;

/// Answers a request for one of the SSE paths other than the stream itself.
pub(crate) async fn answer(
    kind: Kind,
    head: &RequestHead,
    body: &[u8],
    ctx: &ConnCtx,
    sse: &Sse,
) -> Response {
    let query = head.query().unwrap_or("");
    let answer = match kind {
        Kind::Poll => poll(query, sse),
        Kind::LongPoll => long_poll(query, ctx, sse).await,
        Kind::Echo => echo(query, body, sse),
        Kind::NotAllowed(allow) => return not_allowed(allow),
        Kind::Stream => return Response::error(500, "the event stream is not answered here\n"),
    };
    answer.unwrap_or_else(|msg| Response::error(400, msg))
}

/// Where the client is: `after=EPOCH-SEQ`, or the newest event when it gives none.
fn after(query: &str, sse: &Sse) -> Result<EventId, String> {
    match query::find(query, "after") {
        Ok(None) => Ok(sse.feed.id(sse.feed.newest())),
        Ok(Some(text)) => EventId::parse(&text).ok_or_else(|| {
            format!("after must be an event id as the feed gives them (EPOCH-SEQ, e.g. {}), not `{text}`\n", sse.feed.id(sse.feed.newest()))
        }),
        Err(e) => Err(format!("bad query string: {e}\n")),
    }
}

fn poll(query: &str, sse: &Sse) -> Result<Response, String> {
    let after = after(query, sse)?;
    Ok(events_json(sse, after, sse.feed.since(after)))
}

async fn long_poll(query: &str, ctx: &ConnCtx, sse: &Sse) -> Result<Response, String> {
    let after = after(query, sse)?;
    let hold = millis_param(query, "timeout_ms", 1..=MAX_HOLD_MS, DEFAULT_HOLD)?;
    let deadline = tokio::time::Instant::now() + hold;
    // Subscribed before the ring is read: an event pushed in between wakes the wait.
    let mut changes = sse.feed.subscribe();
    loop {
        let since = sse.feed.since(after);
        if !since.events.is_empty() || since.lost.is_some() {
            return Ok(events_json(sse, after, since));
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
            // Shutting down: answer now; the connection then closes.
            () = ctx.graceful.cancelled() => break,
        }
    }
    Ok(Response::new(204, "text/plain; charset=utf-8", Vec::new())
        .with_header("cache-control", "no-store"))
}

fn events_json(sse: &Sse, after: EventId, since: Since) -> Response {
    let mut json = String::with_capacity(64 + since.events.len() * 128);
    json.push_str(r#"{"events":["#);
    let mut last = after;
    for (i, event) in since.events.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        last = sse.feed.id(event.seq);
        json.push_str(&format!(r#"{{"id":"{last}","data":{}}}"#, event.data));
    }
    let reset = since.lost == Some(Lost::OtherFeed);
    if reset {
        last = sse.feed.id(sse.feed.newest());
    }
    json.push_str(&format!(r#"],"last":"{last}","gap":"#));
    match since.lost {
        Some(Lost::Dropped { from, to }) => json.push_str(&format!(
            r#"{{"from":"{}","to":"{}","missed":{}}}"#,
            sse.feed.id(from),
            sse.feed.id(to),
            to - from + 1
        )),
        _ => json.push_str("null"),
    }
    json.push_str(&format!(r#","reset":{reset}}}"#));
    json.push('\n');
    Response::json(200, json).with_header("cache-control", "no-store")
}

fn echo(query: &str, body: &[u8], sse: &Sse) -> Result<Response, String> {
    let id = query::find(query, "stream")
        .map_err(|e| format!("bad query string: {e}\n"))?
        .unwrap_or_default();
    let Ok(text) = std::str::from_utf8(body) else {
        return Err("the body must be UTF-8 text: an event stream carries text\n".into());
    };
    Ok(match sse.deliver(&id, text) {
        Delivery::Queued => Response::new(202, "text/plain; charset=utf-8", &b"queued\n"[..]),
        Delivery::NoSuchStream => Response::error(
            404,
            "no open event stream has that id: open GET /events and use the `stream` of its hello event\n",
        ),
        Delivery::QueueFull => Response::error(
            503,
            "that stream's echo queue is full; its client is not reading: try again later\n",
        )
        .with_header("retry-after", "1"),
        Delivery::OverBudget => Response::error(
            503,
            "the lab's message buffer budget is exhausted; try again later (or raise --max-buffered)\n",
        )
        .with_header("retry-after", "1"),
    })
}

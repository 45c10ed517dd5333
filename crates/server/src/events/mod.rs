//! What the SSE app's paths share, below the handlers that serve them (`crate::sse`): the
//! lab's [`feed::Feed`] of numbered events and the registry of open event streams, each with
//! its queue of echoes. `ConnCtx` carries it to the SSE and HTTPS listeners.

pub(crate) mod feed;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use protolab_wire::http1::{query, RequestHead};
use tokio::sync::mpsc;

use crate::budget::MessageBudget;
use feed::Feed;

/// Echo events queued for one stream that has not written them yet; a POST finding the queue
/// full gets 503. Their bytes are charged to the lab's message budget as well.
const ECHO_QUEUE: usize = 32;

/// What the lab's SSE paths share: the feed and the open streams.
#[derive(Debug)]
pub(crate) struct Sse {
    pub(crate) feed: Feed,
    /// Echoes travel boxed: the channel allocates its first block of [`ECHO_QUEUE`] slots
    /// when a stream opens, so each idle stream holds that many pointers, not that many
    /// [`Echo`]s.
    streams: Mutex<HashMap<String, mpsc::Sender<Box<Echo>>>>,
    open: AtomicUsize,
    max_streams: usize,
    budget: Arc<MessageBudget>,
}

/// An echo event, encoded, with its bytes charged to the budget until it is written.
#[derive(Debug)]
pub(crate) struct Echo {
    pub(crate) event: Vec<u8>,
    _charge: crate::budget::OwnedCharge,
}

/// Which SSE path a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Stream,
    Poll,
    LongPoll,
    /// `POST /echo?stream=…`; a POST without `stream` is the HTTP app's plain echo.
    Echo,
    /// One of the paths with a method it does not take.
    NotAllowed(&'static str),
}

impl Kind {
    /// The SSE path `head` asks for, if any.
    pub(crate) fn of(head: &RequestHead) -> Option<Self> {
        let method = head.method.as_str();
        let (path, query) = head.path_and_query();
        let kind = match (path, method) {
            ("/events", "GET") => Self::Stream,
            ("/poll", "GET") => Self::Poll,
            ("/poll/long", "GET") => Self::LongPoll,
            ("/events", _) | ("/poll" | "/poll/long", _) => Self::NotAllowed("GET"),
            ("/echo", "POST")
                if query
                    .is_some_and(|q| matches!(query::find(q, "stream"), Ok(Some(_)) | Err(_))) =>
            {
                Self::Echo
            }
            _ => return None,
        };
        Some(kind)
    }
}

/// Why a stream could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    Full(usize),
    NoRandom,
}

/// An open stream's place in the registry; leaving it (dropping this) frees the place.
pub(crate) struct Registration<'a> {
    sse: &'a Sse,
    pub(crate) id: String,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.sse
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        self.sse.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a POST to a stream found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Queued,
    NoSuchStream,
    QueueFull,
    OverBudget,
}

impl Sse {
    pub(crate) fn new(max_streams: usize, budget: Arc<MessageBudget>) -> Self {
        Self {
            feed: Feed::new(),
            streams: Mutex::default(),
            open: AtomicUsize::new(0),
            max_streams,
            budget,
        }
    }

    /// Streams open right now.
    pub(crate) fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Registers a new stream under a fresh unguessable id (128 random bits: the id is what
    /// lets a POST write into the stream, so another client must not be able to guess it).
    pub(crate) fn open(&self) -> Result<(Registration<'_>, mpsc::Receiver<Box<Echo>>), OpenError> {
        let mut bytes = [0u8; 16];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut bytes)
            .map_err(|_| OpenError::NoRandom)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let (tx, rx) = mpsc::channel(ECHO_QUEUE);
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if streams.len() >= self.max_streams {
            return Err(OpenError::Full(self.max_streams));
        }
        streams.insert(id.clone(), tx);
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok((Registration { sse: self, id }, rx))
    }

    /// Queues `text` as an echo event on stream `id`.
    pub(crate) fn deliver(&self, id: &str, text: &str) -> Delivery {
        let Some(tx) = self
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
        else {
            return Delivery::NoSuchStream;
        };
        let mut event = Vec::with_capacity(text.len() + 32);
        event.extend_from_slice(b"event: echo\n");
        data_lines(&mut event, text);
        let Ok(charge) = MessageBudget::charge_owned(&self.budget, event.len()) else {
            return Delivery::OverBudget;
        };
        match tx.try_send(Box::new(Echo {
            event,
            _charge: charge,
        })) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Delivery::QueueFull,
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::NoSuchStream,
        }
    }
}

/// Appends `text` as an event's `data:` lines and the blank line that ends the event. A line
/// break (CR, LF or CRLF) starts a new `data:` line, which a client joins with LF (the
/// event-stream format has no way to carry a CR).
pub(crate) fn data_lines(out: &mut Vec<u8>, text: &str) {
    let mut rest = text;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest.as_bytes()[..end]);
        out.push(b'\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::data_lines;

    #[test]
    fn every_line_break_starts_a_data_line() {
        let mut out = Vec::new();
        data_lines(&mut out, "one\r\ntwo\nthree\rfour");
        assert_eq!(out, b"data: one\ndata: two\ndata: three\ndata: four\n\n");
        out.clear();
        data_lines(&mut out, "");
        assert_eq!(out, b"data: \n\n");
        out.clear();
        data_lines(&mut out, "end\n");
        assert_eq!(out, b"data: end\ndata: \n\n");
    }
}

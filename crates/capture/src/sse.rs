//! Server-sent events inside a `text/event-stream` response body (the HTML standard's event
//! stream format): each event's id, type, data and retry, and comment lines, which servers
//! send as heartbeats. The body arrives in pieces of any size (after chunked decoding).
//!
//! Limits are explicit: a line keeps at most [`MAX_LINE`] bytes (the rest is dropped, and
//! not counted), and an event's data keeps its first [`crate::limits::PREVIEW_BYTES`] bytes and its length.

use crate::event::Event;
use crate::limits::PREVIEW_BYTES;

/// Most bytes of one line kept; longer lines are cut.
pub const MAX_LINE: usize = 64 << 10;

/// The event being gathered and the line being read.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    /// The last byte was a CR, so an LF right after it ends nothing.
    after_cr: bool,
    /// Any field seen since the last dispatch.
    pending: bool,
    id: Option<String>,
    event: Option<String>,
    data: Vec<u8>,
    data_len: u64,
    /// A data line has been seen (later ones join with a newline).
    has_data: bool,
    retry_ms: Option<u64>,
}

impl SseParser {
    /// Reads body bytes, appending each event or comment they complete to `events`.
    pub(crate) fn feed(&mut self, bytes: &[u8], events: &mut Vec<Event>) {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line(events);
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() < MAX_LINE {
                        self.line.push(b);
                    }
                }
            }
        }
    }

    fn end_line(&mut self, events: &mut Vec<Event>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.pending {
                self.dispatch(events);
            }
            return;
        }
        if let Some(comment) = line.strip_prefix(b":") {
            events.push(Event::SseComment {
                text: preview(comment.strip_prefix(b" ").unwrap_or(comment)),
            });
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.push_data(b"\n");
                }
                self.has_data = true;
                self.push_data(value);
            }
            b"id" => self.id = Some(String::from_utf8_lossy(value).into_owned()),
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"retry" => {
                if let Some(ms) = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse().ok())
                {
                    self.retry_ms = Some(ms);
                }
            }
            _ => return,
        }
        self.pending = true;
    }

    fn push_data(&mut self, bytes: &[u8]) {
        self.data_len += bytes.len() as u64;
        let room = PREVIEW_BYTES.saturating_sub(self.data.len());
        self.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn dispatch(&mut self, events: &mut Vec<Event>) {
        events.push(Event::SseEvent {
            id: self.id.take(),
            event_type: self.event.take(),
            data: String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned(),
            data_len: std::mem::take(&mut self.data_len),
            retry_ms: self.retry_ms.take(),
        });
        self.pending = false;
        self.has_data = false;
    }
}

/// Decodes a `text/event-stream` body given in pieces, as `inspect` does inside an HTTP
/// response: each event and comment line.
pub fn decode_event_stream(pieces: &[&[u8]]) -> Vec<Event> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for piece in pieces {
        parser.feed(piece, &mut events);
    }
    events
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(PREVIEW_BYTES)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_comments_and_line_ends_split_anywhere() {
        let stream = b": hi\r\nretry: 3000\r\nid: 7\r\nevent: tick\r\ndata: a\r\ndata: b\r\n\r\n\
                       data: plain\n\n:\n\rdata\r\rid:8\n\n";
        for split in [1, 2, 3, 7, stream.len()] {
            let mut parser = SseParser::default();
            let mut events = Vec::new();
            for piece in stream.chunks(split) {
                parser.feed(piece, &mut events);
            }
            assert_eq!(
                events,
                [
                    Event::SseComment { text: "hi".into() },
                    Event::SseEvent {
                        id: Some("7".into()),
                        event_type: Some("tick".into()),
                        data: "a\nb".into(),
                        data_len: 3,
                        retry_ms: Some(3000),
                    },
                    Event::SseEvent {
                        id: None,
                        event_type: None,
                        data: "plain".into(),
                        data_len: 5,
                        retry_ms: None,
                    },
                    Event::SseComment { text: "".into() },
                    Event::SseEvent {
                        id: None,
                        event_type: None,
                        data: "".into(),
                        data_len: 0,
                        retry_ms: None,
                    },
                    Event::SseEvent {
                        id: Some("8".into()),
                        event_type: None,
                        data: "".into(),
                        data_len: 0,
                        retry_ms: None,
                    },
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn long_data_is_cut_for_display_and_counted() {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        let mut body = b"data: ".to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_LINE * 2));
        body.extend_from_slice(b"\n\n");
        parser.feed(&body, &mut events);
        match &events[..] {
            [Event::SseEvent { data, data_len, .. }] => {
                assert_eq!(data.len(), PREVIEW_BYTES);
                assert_eq!(*data_len, (MAX_LINE - 6) as u64);
            }
            other => panic!("{other:?}"),
        }
    }
}

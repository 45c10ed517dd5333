//! The `text/event-stream` format (Server-Sent Events, WHATWG HTML §9.2.6), client side:
//! [`Parser::decode`] turns a response body's bytes into [`Event`]s as an `EventSource` would
//! dispatch them — `data:` lines joined with LF, `event:` naming the type (`message` when
//! absent), `id:` setting the last event id, `retry:` the reconnection time, `:` comments
//! skipped (and counted) — with a bounded line and a bounded event, so a server that never
//! ends a line or an event is an error rather than unbounded memory.
//!
//! Lines end with CRLF, LF or CR. A CR at the end of the input is taken as a line end at once
//! and an LF right after it, in the next input, is skipped, so splitting the input anywhere
//! gives the same events. Bytes that are not UTF-8 are replaced with U+FFFD, as the standard
//! says; that is not an error.

/// How much one line and one event may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, without its line end.
    pub max_line: usize,
    /// Most `data` one event may accumulate (its lines and the LFs joining them).
    pub max_event: usize,
}

impl Default for Limits {
    /// 64 KiB lines, 1 MiB events: far above the lab's (~100-byte) events and typical
    /// feeds, far below what would hurt a load generator holding many streams.
    fn default() -> Self {
        Self {
            max_line: 64 << 10,
            max_event: 1 << 20,
        }
    }
}

/// Why a stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line ran past [`Limits::max_line`] without a line end.
    #[error("an event-stream line is longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// An event's data ran past [`Limits::max_event`] before the blank line that ends it.
    #[error("an event's data is longer than {limit} bytes")]
    EventTooLarge {
        /// The limit.
        limit: usize,
    },
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, or `message`.
    pub event_type: String,
    /// The `data:` lines joined with LF.
    pub data: String,
    /// The last event id when it was dispatched (an `id:` of this event or an earlier one;
    /// empty when none was given or an `id:` line cleared it).
    pub last_event_id: String,
}

/// What [`Parser::decode`] did with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input taken; the caller drops them and calls again with the rest.
    pub consumed: usize,
    /// The event a blank line dispatched, if one did.
    pub event: Option<Event>,
}

/// An event-stream reader (sans-IO): feed it a body's bytes, drop what it consumed.
#[derive(Debug, Clone)]
pub struct Parser {
    limits: Limits,
    data: String,
    has_data: bool,
    event_type: String,
    last_event_id: String,
    retry_ms: Option<u64>,
    comments: u64,
    /// The last line ended with CR: an LF at the start of the next input belongs to it.
    after_cr: bool,
    /// The stream's first bytes have been seen (a leading BOM is skipped once).
    started: bool,
}

impl Parser {
    /// A parser with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            data: String::new(),
            has_data: false,
            event_type: String::new(),
            last_event_id: String::new(),
            retry_ms: None,
            comments: 0,
            after_cr: false,
            started: false,
        }
    }

    /// The last `retry:` the server sent, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Comment lines (`:` …, e.g. heartbeats) seen so far.
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// The last event id so far (what a reconnect sends as `Last-Event-ID`).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Reads whole lines of `input` until one dispatches an event or no whole line is left.
    /// A partial line is left unconsumed (call again with more); it is an error once it is
    /// longer than [`Limits::max_line`].
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, SseError> {
        let mut pos = 0;
        if self.after_cr && input.first() == Some(&b'\n') {
            pos = 1;
        }
        if !input.is_empty() {
            self.after_cr = false;
        }
        if !self.started {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let rest = &input[pos..];
            if rest.len() < BOM.len() && BOM.starts_with(rest) {
                return Ok(Decoded {
                    consumed: pos,
                    event: None,
                });
            }
            self.started = true;
            if rest.starts_with(BOM) {
                pos += BOM.len();
            }
        }
        loop {
            let rest = &input[pos..];
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if rest.len() > self.limits.max_line {
                    return Err(SseError::LineTooLong {
                        limit: self.limits.max_line,
                    });
                }
                return Ok(Decoded {
                    consumed: pos,
                    event: None,
                });
            };
            if end > self.limits.max_line {
                return Err(SseError::LineTooLong {
                    limit: self.limits.max_line,
                });
            }
            let line = &rest[..end];
            let mut next = pos + end + 1;
            if rest[end] == b'\r' {
                match rest.get(end + 1) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            pos = next;
            if let Some(event) = self.line(line)? {
                return Ok(Decoded {
                    consumed: pos,
                    event: Some(event),
                });
            }
        }
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<Event>, SseError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line[0] == b':' {
            self.comments += 1;
            return Ok(None);
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                let value = String::from_utf8_lossy(value);
                let grown = self.data.len() + value.len() + usize::from(self.has_data);
                if grown > self.limits.max_event {
                    return Err(SseError::EventTooLarge {
                        limit: self.limits.max_event,
                    });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            // An id containing NUL is ignored (the standard's rule).
            b"id" if !value.contains(&0) => {
                self.last_event_id = String::from_utf8_lossy(value).into_owned();
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Digits beyond u64 are not a time anyone means: ignored.
                if let Some(ms) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// A blank line: the event so far goes out, unless it has no data (then it is dropped,
    /// its type with it).
    fn dispatch(&mut self) -> Option<Event> {
        let event_type = std::mem::take(&mut self.event_type);
        if !std::mem::take(&mut self.has_data) {
            self.data.clear();
            return None;
        }
        Some(Event {
            event_type: if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type
            },
            data: std::mem::take(&mut self.data),
            last_event_id: self.last_event_id.clone(),
        })
    }
}

impl Default for Parser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of `input` fed in pieces of `step` bytes, and the parser after.
    fn events(input: &[u8], step: usize, limits: Limits) -> Result<(Vec<Event>, Parser), SseError> {
        let mut parser = Parser::new(limits);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                let d = parser.decode(&buf)?;
                buf.drain(..d.consumed);
                match d.event {
                    Some(e) => out.push(e),
                    None => break,
                }
            }
        }
        Ok((out, parser))
    }

    #[test]
    fn reads_the_labs_stream_however_it_is_split() {
        let stream = b"\xEF\xBB\xBFretry: 1000\r\n\r\nevent: hello\ndata: {\"stream\":\"ab\"}\n\n: heartbeat\n\nid: 7-1\rdata: one\r\ndata:two\n\nid: 7-2\ndata\n\ndata: x\n";
        for step in 1..=stream.len() {
            let (got, parser) = events(stream, step, Limits::default()).unwrap();
            assert_eq!(got.len(), 3, "step {step}: {got:?}");
            assert_eq!(got[0].event_type, "hello");
            assert_eq!(got[0].data, r#"{"stream":"ab"}"#);
            assert_eq!(got[1].event_type, "message");
            assert_eq!(got[1].data, "one\ntwo");
            assert_eq!(got[1].last_event_id, "7-1");
            assert_eq!(
                (got[2].data.as_str(), got[2].last_event_id.as_str()),
                ("", "7-2")
            );
            assert_eq!(parser.retry_ms(), Some(1000));
            assert_eq!(parser.comments(), 1);
        }
    }

    #[test]
    fn events_without_data_are_dropped_and_fields_are_read_as_written() {
        let (got, _) = events(
            b"event: x\n\nid: a\0b\nretry: 12x\nfoo: bar\ndata:  spaced\n\n",
            64,
            Limits::default(),
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event_type, "message");
        assert_eq!(got[0].data, " spaced");
        assert_eq!(got[0].last_event_id, "");
    }

    #[test]
    fn oversize_lines_and_events_are_errors() {
        let limits = Limits {
            max_line: 16,
            max_event: 20,
        };
        let long_line = [b'a'; 17];
        assert_eq!(
            events(&long_line, 4, limits).unwrap_err(),
            SseError::LineTooLong { limit: 16 }
        );
        let mut ended = long_line.to_vec();
        ended.push(b'\n');
        assert!(events(&ended, 100, limits).is_err());
        assert_eq!(
            events(b"data: 0123456789\ndata: 0123456789\n\n", 5, limits).unwrap_err(),
            SseError::EventTooLarge { limit: 20 }
        );
        // A line exactly at the limit is fine.
        assert!(events(b"data: 0123456789\n\n", 1, limits).is_ok());
    }
}

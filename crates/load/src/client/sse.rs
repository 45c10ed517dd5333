//! The SSE side of a connection (`sse://`, `sses://`): `GET` the event stream, read its
//! events with `protolab_wire::sse::Parser` (a chunked body decoded first), take the stream
//! id from the lab's `hello` event, and for echoes a second, keep-alive connection that
//! `POST`s `/echo?stream=ID`, the answer arriving as an `echo` event on the stream.
//!
//! Both connections count their bytes: the stream's and the echo connection's add up in
//! [`Conn::counts`].

use std::time::{Duration, Instant};

use protolab_wire::http1::{
    parse_response_with, write_request_head, BodyFraming, ChunkedDecoder, HeadLimits,
};
use protolab_wire::sse::{Event, Limits, Parser};
use tokio::io::AsyncWriteExt as _;

use super::ws::{push_sent_at_us, Push};
use super::{bounded, Conn, Exchange, Failure, Plan, Proto};
use crate::report::ErrorKind;

/// Largest echo answer body read (the lab answers `queued`); anything longer is an error.
const MAX_ANSWER: usize = 64 * 1024;

/// An open event stream.
pub(super) struct Stream {
    parser: Parser,
    /// Set when the body is chunked: it is decoded into `body` before parsing.
    chunked: Option<ChunkedDecoder>,
    body: Vec<u8>,
    /// The lab's stream id, from its `hello` event.
    stream_id: Option<String>,
    /// The keep-alive connection echo requests go over (echo workload).
    side: Option<Box<Conn>>,
    /// The echo request's head, built once the stream id is known.
    echo_head: Vec<u8>,
}

fn protocol(what: String) -> Failure {
    Failure::new(ErrorKind::Protocol, what)
}

impl Conn {
    /// Asks for the event stream and reads up to its first event; with `plan.sse_echo`, opens
    /// the echo connection beside it.
    pub(super) async fn open_stream(
        &mut self,
        plan: &Plan,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let authority = plan.target.authority();
        let mut fields: Vec<(&str, &[u8])> = vec![
            ("Host", authority.as_bytes()),
            ("Accept", b"text/event-stream"),
            ("Cache-Control", b"no-store"),
        ];
        fields.extend(plan.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        self.out.clear();
        write_request_head(&mut self.out, "GET", &plan.target.path, &fields);
        self.send_out("sending the event stream request").await?;
        let (head, consumed) = loop {
            let parsed = parse_response_with(&self.buf, &HeadLimits::default(), |head| {
                let event_stream = head.header("content-type").is_some_and(|v| {
                    v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream")
                });
                (
                    head.status,
                    head.reason.to_owned(),
                    event_stream,
                    head.body_framing("GET"),
                )
            })
            .map_err(|e| protocol(format!("event stream response head: {e}")))?;
            if let Some(parsed) = parsed {
                break parsed;
            }
            self.fill("reading the event stream's response").await?;
        };
        let (status, reason, event_stream, framing) = head;
        if status != 200 {
            return Err(protocol(format!(
                "the event stream was refused: status {status} {reason}"
            )));
        }
        if !event_stream {
            return Err(protocol(
                "the response is not text/event-stream: is the URL an SSE endpoint (e.g. /events)?"
                    .into(),
            ));
        }
        let chunked = match framing.map_err(|e| protocol(format!("event stream framing: {e}")))? {
            BodyFraming::Chunked => Some(ChunkedDecoder::with_limit(u64::MAX)),
            BodyFraming::UntilClose | BodyFraming::ContentLength(_) => None,
            BodyFraming::Empty => {
                return Err(protocol("the event stream response has no body".into()))
            }
        };
        self.buf.drain(..consumed);
        // An echo event carries the whole message on one `data:` line.
        let defaults = Limits::default();
        let limits = Limits {
            max_line: defaults.max_line.max(plan.payload.len() + 64),
            max_event: defaults.max_event.max(plan.payload.len() + 64),
        };
        self.proto = Proto::Sse(Box::new(Stream {
            parser: Parser::new(limits),
            chunked,
            body: Vec::new(),
            stream_id: None,
            side: None,
            echo_head: Vec::new(),
        }));
        let first = self
            .next_event("waiting for the event stream's first event")
            .await?;
        let stream_id = (first.event_type == "hello")
            .then(|| json_string_field(&first.data, "stream"))
            .flatten();
        if first.event_type != "hello" {
            self.extras.skipped += 1;
        }
        let mut side = None;
        if plan.sse_echo {
            let Some(id) = &stream_id else {
                return Err(protocol(
                    "the event stream's first event is not a `hello` naming the stream id, so echoes have no stream to go to (the lab's SSE app sends one)"
                        .into(),
                ));
            };
            let (conn, _) = Box::pin(Self::connect(plan, deadline)).await?;
            side = Some(Box::new(conn));
            let path = format!("/echo?stream={id}");
            let length = plan.payload.len().to_string();
            let mut head = Vec::with_capacity(256);
            let mut fields: Vec<(&str, &[u8])> = vec![
                ("Host", authority.as_bytes()),
                ("Content-Type", b"text/plain; charset=utf-8"),
                ("Content-Length", length.as_bytes()),
            ];
            fields.extend(plan.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
            write_request_head(&mut head, "POST", &path, &fields);
            head.extend_from_slice(&plan.payload);
            if let Proto::Sse(stream) = &mut self.proto {
                stream.echo_head = head;
            }
        }
        if let Proto::Sse(stream) = &mut self.proto {
            stream.stream_id = stream_id;
            stream.side = side;
        }
        Ok(())
    }

    /// The next event of the stream; the stream ending is a [`ErrorKind::Closed`] failure.
    async fn next_event(&mut self, what: &str) -> Result<Event, Failure> {
        loop {
            let Proto::Sse(stream) = &mut self.proto else {
                return Err(protocol("not an event stream".into()));
            };
            let source = match &mut stream.chunked {
                Some(decoder) => {
                    if !self.buf.is_empty() {
                        let step = decoder
                            .decode(&self.buf, &mut stream.body)
                            .map_err(|e| protocol(format!("chunked event stream: {e}")))?;
                        self.buf.drain(..step.consumed);
                        if step.done && stream.body.is_empty() {
                            return Err(Failure::new(
                                ErrorKind::Closed,
                                format!("the server ended the event stream while {what}"),
                            ));
                        }
                    }
                    &mut stream.body
                }
                None => &mut self.buf,
            };
            let decoded = stream
                .parser
                .decode(source)
                .map_err(|e| protocol(format!("event stream: {e}")))?;
            source.drain(..decoded.consumed);
            if let Some(event) = decoded.event {
                return Ok(event);
            }
            self.fill(what).await?;
        }
    }

    /// Bytes read and not taken as events yet.
    pub(super) fn sse_read_ahead(&self) -> usize {
        match &self.proto {
            Proto::Sse(stream) => self.buf.len() + stream.body.len(),
            _ => self.buf.len(),
        }
    }

    /// The echo connection's counts, if there is one.
    pub(super) fn side(&self) -> Option<&Self> {
        match &self.proto {
            Proto::Sse(stream) => stream.side.as_deref(),
            _ => None,
        }
    }

    /// Closes the echo connection (it stays, so its bytes still count).
    pub(super) async fn close_side(&mut self, deadline: Instant) {
        if let Proto::Sse(stream) = &mut self.proto {
            if let Some(side) = stream.side.as_mut() {
                Box::pin(side.close(deadline)).await;
            }
        }
    }

    /// The next event carrying the lab's `sent_at_us`, and how long it took to arrive; other
    /// events are skipped.
    pub(super) async fn sse_next_push(&mut self, deadline: Instant) -> Result<Push, Failure> {
        bounded(deadline, "waiting for a pushed event", async {
            loop {
                let event = self.next_event("waiting for a pushed event").await?;
                if let Some(sent_at_us) = push_sent_at_us(&event.data) {
                    let now_us = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_micros());
                    let delay = now_us.saturating_sub(u128::from(sent_at_us));
                    return Ok(Push {
                        delay: Duration::from_micros(u64::try_from(delay).unwrap_or(u64::MAX)),
                        payload: event.data.len(),
                    });
                }
                self.extras.skipped += 1;
            }
        })
        .await
    }

    /// One echo: `POST /echo?stream=ID` on the echo connection, timed until its `echo`
    /// event is read from the stream (the POST's own answer read meanwhile).
    pub(super) async fn sse_exchange(
        &mut self,
        plan: &Plan,
        t0: Instant,
        timed_first: bool,
    ) -> Result<Exchange, Failure> {
        let Proto::Sse(stream) = &mut self.proto else {
            return Err(protocol("not an event stream".into()));
        };
        let Some(mut side) = stream.side.take() else {
            return Err(protocol(
                "no echo connection: the echo workload opens one beside the stream".into(),
            ));
        };
        let request = std::mem::take(&mut stream.echo_head);
        let sent = side.io.write_all(&request).await;
        let result = match sent {
            Err(e) => Err(Failure::io("sending the echo request", &e)),
            Ok(()) => {
                let (answer, echoed) = tokio::join!(
                    async {
                        side.flush("sending the echo request").await?;
                        side.read_echo_answer().await
                    },
                    self.next_echo(&plan.payload)
                );
                answer.and(echoed)
            }
        };
        if let Proto::Sse(stream) = &mut self.proto {
            stream.side = Some(side);
            stream.echo_head = request;
        }
        let done = result?;
        let total = done.saturating_duration_since(t0);
        Ok(Exchange {
            first_byte: timed_first.then_some(total),
            total,
            done,
            reusable: true,
        })
    }

    /// Reads events until the echo of `payload`, and says when it was read.
    async fn next_echo(&mut self, payload: &[u8]) -> Result<Instant, Failure> {
        loop {
            let event = self.next_event("waiting for the echo event").await?;
            if event.event_type == "echo" {
                if event.data.as_bytes() == payload {
                    return Ok(Instant::now());
                }
                return Err(protocol(format!(
                    "a {}-byte echo event is not the {}-byte message sent",
                    event.data.len(),
                    payload.len()
                )));
            }
            self.extras.skipped += 1;
        }
    }

    /// The answer to an echo POST: 2xx, its body read and dropped.
    async fn read_echo_answer(&mut self) -> Result<(), Failure> {
        let (head, mut pos) = loop {
            let parsed = parse_response_with(&self.buf, &HeadLimits::default(), |head| {
                (
                    head.status,
                    head.reason.to_owned(),
                    head.body_framing("POST"),
                )
            })
            .map_err(|e| protocol(format!("echo response head: {e}")))?;
            if let Some(parsed) = parsed {
                break parsed;
            }
            self.fill("reading the echo response").await?;
        };
        let (status, reason, framing) = head;
        if !(200..300).contains(&status) {
            return Err(protocol(format!(
                "the echo POST was refused: status {status} {reason}"
            )));
        }
        match framing.map_err(|e| protocol(format!("echo response framing: {e}")))? {
            BodyFraming::Empty => {}
            BodyFraming::ContentLength(n) => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= MAX_ANSWER)
                    .ok_or_else(|| protocol(format!("a {n}-byte answer to an echo POST")))?;
                while self.buf.len() < pos + n {
                    self.fill("reading the echo response body").await?;
                }
                pos += n;
            }
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::with_limit(MAX_ANSWER as u64);
                let mut sink = Vec::new();
                loop {
                    let step = decoder
                        .decode(&self.buf[pos..], &mut sink)
                        .map_err(|e| protocol(format!("chunked echo response: {e}")))?;
                    pos += step.consumed;
                    if step.done {
                        break;
                    }
                    self.fill("reading the echo response body").await?;
                }
            }
            BodyFraming::UntilClose => {
                return Err(protocol(
                    "the echo response has no length, so its connection cannot be reused".into(),
                ))
            }
        }
        self.buf.drain(..pos);
        Ok(())
    }
}

/// The string value of `"name":"…"` in `json`: a field search, as for pushes, since the
/// load generator reads the lab's own `hello` event (the id is hex, nothing to unescape).
fn json_string_field(json: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":\"");
    let at = json.find(&key)? + key.len();
    let end = json[at..].find('"')?;
    let value = &json[at..at + end];
    (!value.is_empty() && !value.contains('\\')).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::json_string_field;

    #[test]
    fn the_stream_id_is_found() {
        let hello = r#"{"stream":"0a1b","epoch":5,"newest":"5-0"}"#;
        assert_eq!(json_string_field(hello, "stream").as_deref(), Some("0a1b"));
        assert_eq!(json_string_field(hello, "other"), None);
        assert_eq!(json_string_field(r#"{"stream":""}"#, "stream"), None);
    }
}

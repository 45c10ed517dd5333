//! The WebSocket side of a connection: the upgrade (with the permessage-deflate offer and
//! the check of the server's answer), echo exchanges, server pushes, and the message calls
//! [`crate::websocket`] builds on.

use std::time::{Duration, Instant};

use protolab_wire::http1::{parse_response, HeadLimits};
use protolab_wire::ws::deflate::{encode_compressed, DEFAULT_LEVEL};
use protolab_wire::ws::{
    decode_header, encode_close, encode_frame, handshake, Decoder, DecoderConfig, Message, OpCode,
    Role,
};

use super::{bounded, Conn, Exchange, Failure, Plan, Proto, Xorshift};
use crate::payload::Payload;
use crate::report::ErrorKind;

/// One server push received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Push {
    /// From the server's send time (its `sent_at_us`) to its arrival here.
    pub(crate) delay: Duration,
    /// The message's payload bytes.
    pub(crate) payload: usize,
}

const EXTENSIONS: &str = "Sec-WebSocket-Extensions";

impl Conn {
    pub(super) async fn upgrade(&mut self, plan: &Plan) -> Result<(), Failure> {
        let mut rng = Xorshift::seeded(&self.counters);
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&rng.next().to_le_bytes());
        nonce[8..].copy_from_slice(&rng.next().to_le_bytes());
        let key = handshake::encode_key(nonce);
        let protocols: Vec<&str> = plan.subprotocols.iter().map(String::as_str).collect();
        let offer = plan.deflate.map(|offer| offer.to_string());
        let mut extra: Vec<(&str, &[u8])> = plan
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        if let Some(offer) = &offer {
            extra.push((EXTENSIONS, offer.as_bytes()));
        }
        self.out.clear();
        handshake::write_request(
            &mut self.out,
            &plan.target.authority(),
            &plan.target.path,
            &key,
            None,
            &protocols,
            &extra,
        );
        self.send_out("sending the upgrade request").await?;
        let (head, consumed) = loop {
            if let Some(parsed) = parse_response(&self.buf, &HeadLimits::default())
                .map_err(|e| Failure::new(ErrorKind::Protocol, format!("upgrade response: {e}")))?
            {
                break parsed;
            }
            self.fill("reading the upgrade response").await?;
        };
        let refused = |what: String| {
            Failure::new(
                ErrorKind::Protocol,
                format!("WebSocket upgrade refused: {what}"),
            )
        };
        handshake::check_response(&head, &key).map_err(|e| refused(e.to_string()))?;
        let answered = head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(EXTENSIONS))
            .map(|h| &h.value[..]);
        self.deflate = match plan.deflate {
            // RFC 7692 §5: a response the offer does not allow fails the connection.
            Some(offer) => offer
                .accept_response(answered)
                .map_err(|e| refused(e.to_string()))?,
            // RFC 6455 §4.1: an extension the client did not ask for fails it too.
            None if answered.clone().any(|v| !v.trim_ascii().is_empty()) => {
                return Err(refused(
                    "the server accepted an extension that was not offered".into(),
                ))
            }
            None => None,
        };
        // Anything after the head (an early push) is already WebSocket frames.
        self.buf.drain(..consumed);
        let decoder = Decoder::new(Role::Client, DecoderConfig::default());
        self.proto = match self.deflate {
            Some(params) => Proto::Ws {
                decoder: decoder.with_inflater(params.inflater(Role::Client)),
                rng,
                deflater: Some(Box::new(params.deflater(Role::Client, DEFAULT_LEVEL))),
            },
            None => Proto::Ws {
                decoder,
                rng,
                deflater: None,
            },
        };
        Ok(())
    }

    /// Appends one data message to `self.out` as a masked frame, compressed when
    /// permessage-deflate was agreed (and then its framed payload counted).
    fn encode_data(&mut self, opcode: OpCode, data: Option<&[u8]>) -> Result<(), Failure> {
        let Proto::Ws { rng, deflater, .. } = &mut self.proto else {
            return Err(Failure::new(ErrorKind::Protocol, "not a WebSocket"));
        };
        // `None`: the message is in `self.message`.
        let data = data.unwrap_or(&self.message);
        let mask = rng.mask();
        match deflater {
            Some(deflater) => {
                let start = self.out.len();
                encode_compressed(&mut self.out, deflater, opcode, Some(mask), data).map_err(
                    |e| Failure::new(ErrorKind::Io, format!("compressing a message: {e}")),
                )?;
                if let Ok(Some((header, _))) = decode_header(&self.out[start..]) {
                    self.frame_payload.sent =
                        self.frame_payload.sent.saturating_add(header.payload_len);
                }
            }
            None => encode_frame(&mut self.out, true, opcode, Some(mask), data),
        }
        Ok(())
    }

    pub(super) async fn ws_exchange(
        &mut self,
        plan: &Plan,
        t0: Instant,
        timed_first: bool,
    ) -> Result<Exchange, Failure> {
        let varies = plan.payload_kind != Payload::Alphabet;
        self.out.clear();
        if varies {
            let mut message = std::mem::take(&mut self.message);
            plan.payload_kind
                .fill(&mut message, plan.payload.len(), self.exchanges);
            self.message = message;
            self.encode_data(OpCode::Binary, None)?;
        } else {
            self.encode_data(OpCode::Binary, Some(&plan.payload))?;
        }
        self.send_out("sending a message").await?;
        // Untimed exchanges start with `first_read` set, so reads do not look at the clock.
        let mut first_read = if timed_first {
            (!self.buf.is_empty()).then(Instant::now)
        } else {
            Some(t0)
        };
        // Read until our echo arrives; pushes are skipped and pings answered on the way.
        loop {
            match self
                .next_message("waiting for the echo", &mut first_read)
                .await?
            {
                Message::Binary(data) => {
                    let sent = if varies { &self.message } else { &plan.payload };
                    if data == *sent {
                        break;
                    }
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!(
                            "a {}-byte binary message is not the {}-byte message sent",
                            data.len(),
                            sent.len()
                        ),
                    ));
                }
                // Server pushes (`{"type":"push",...}`) and other text, pongs: not our echo.
                _ => self.extras.skipped += 1,
            }
        }
        let done = Instant::now();
        let total = done.saturating_duration_since(t0);
        let first_byte = first_read.map_or(total, |at| at.saturating_duration_since(t0));
        Ok(Exchange {
            first_byte: timed_first.then_some(first_byte),
            total,
            done,
            reusable: true,
        })
    }

    /// Waits for the next server push (a text message carrying `"sent_at_us":N`, as the
    /// lab's WS app sends) and measures how long it took to arrive. Pings are answered and
    /// other messages skipped on the way. Both clocks are this machine's, so the delay is
    /// real as long as client and server run on the same host.
    pub(crate) async fn next_push(&mut self, deadline: Instant) -> Result<Push, Failure> {
        if matches!(self.proto, Proto::Sse(_)) {
            return self.sse_next_push(deadline).await;
        }
        if matches!(self.proto, Proto::H2(_)) {
            return bounded(deadline, "waiting for a server push", self.grpc_next_push()).await;
        }
        if matches!(self.proto, Proto::Poll(_)) {
            return self.poll_next_push(deadline).await;
        }
        bounded(deadline, "waiting for a server push", async {
            loop {
                match self
                    .next_message("waiting for a server push", &mut None)
                    .await?
                {
                    Message::Text(text) => {
                        if let Some(sent_at_us) = push_sent_at_us(&text) {
                            let now_us = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_micros());
                            let delay = now_us.saturating_sub(u128::from(sent_at_us));
                            return Ok(Push {
                                delay: Duration::from_micros(
                                    u64::try_from(delay).unwrap_or(u64::MAX),
                                ),
                                payload: text.len(),
                            });
                        }
                        self.extras.skipped += 1;
                    }
                    _ => self.extras.skipped += 1,
                }
            }
        })
        .await
    }

    /// Bytes read and not taken as messages yet: frames that arrived behind the last one.
    pub(crate) fn read_ahead(&self) -> usize {
        if let Proto::H2(h2) = &self.proto {
            return h2.push.as_ref().map_or(0, |p| p.read_ahead());
        }
        if matches!(self.proto, Proto::Poll(_)) {
            return self.polled_ahead();
        }
        self.sse_read_ahead()
    }

    /// The next data message, answering pings on the way; a close frame is a
    /// [`ErrorKind::Closed`] failure. `first_read` is set to when the first read that was
    /// needed brought bytes, if it is not set yet.
    async fn next_message(
        &mut self,
        what: &str,
        first_read: &mut Option<Instant>,
    ) -> Result<Message, Failure> {
        match self.next_frame(what, first_read).await? {
            Message::Close(frame) => Err(Failure::new(
                ErrorKind::Closed,
                format!("the server sent a close frame: {frame:?}"),
            )),
            other => Ok(other),
        }
    }

    /// The next message or close frame, answering pings on the way. A protocol violation is
    /// a failure carrying the close code to send.
    async fn next_frame(
        &mut self,
        what: &str,
        first_read: &mut Option<Instant>,
    ) -> Result<Message, Failure> {
        loop {
            let Proto::Ws { decoder, rng, .. } = &mut self.proto else {
                return Err(Failure::new(ErrorKind::Protocol, "not a WebSocket"));
            };
            // Under deflate, what data frames carry on the wire is counted from their headers,
            // read only where the buffer starts at one (not inside a frame being streamed).
            let header = self
                .deflate
                .filter(|_| !decoder.mid_frame())
                .and_then(|_| decode_header(&self.buf).ok().flatten());
            let (consumed, message) = decoder
                .decode(&self.buf)
                .map_err(|e| Failure::protocol(&e))?;
            if let Some((header, _)) = header.filter(|_| consumed > 0) {
                if !header.opcode.is_control() {
                    self.frame_payload.received = self
                        .frame_payload
                        .received
                        .saturating_add(header.payload_len);
                }
            }
            self.buf.drain(..consumed);
            match message {
                None if consumed > 0 => {}
                None => {
                    self.fill(what).await?;
                    first_read.get_or_insert_with(Instant::now);
                }
                Some(Message::Ping(data)) => {
                    self.extras.pings += 1;
                    let mask = rng.mask();
                    self.out.clear();
                    encode_frame(&mut self.out, true, OpCode::Pong, Some(mask), &data);
                    self.send_out("answering a ping").await?;
                }
                Some(other) => return Ok(other),
            }
        }
    }

    /// The next text, binary or close message by `deadline`, pings answered on the way.
    pub(crate) async fn receive(&mut self, deadline: Instant) -> Result<Message, Failure> {
        bounded(deadline, "waiting for a message", async {
            loop {
                match self.next_frame("waiting for a message", &mut None).await? {
                    Message::Pong(_) => self.extras.skipped += 1,
                    other => return Ok(other),
                }
            }
        })
        .await
    }

    /// Sends one text or binary message by `deadline`, compressed if deflate was agreed.
    pub(crate) async fn send_message(
        &mut self,
        opcode: OpCode,
        data: &[u8],
        deadline: Instant,
    ) -> Result<(), Failure> {
        self.out.clear();
        self.encode_data(opcode, Some(data))?;
        bounded(
            deadline,
            "sending a message",
            self.send_out("sending a message"),
        )
        .await
    }

    /// Sends a close frame: `code` and `reason`, or an empty body for `None` (RFC 6455
    /// §5.5.1).
    pub(crate) async fn send_close(
        &mut self,
        code: Option<u16>,
        reason: &str,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let Proto::Ws { rng, .. } = &mut self.proto else {
            return Err(Failure::new(ErrorKind::Protocol, "not a WebSocket"));
        };
        let mask = rng.mask();
        self.out.clear();
        match code {
            Some(code) => encode_close(&mut self.out, Some(mask), code, reason),
            None => encode_frame(&mut self.out, true, OpCode::Close, Some(mask), b""),
        }
        bounded(deadline, "sending a close frame", self.send_out("closing")).await
    }
}

impl Conn {
    /// After the close handshake: waits for the server to close TCP first (RFC 6455
    /// §7.1.1), discarding anything else it sends, then closes our side; all by `deadline`.
    pub(crate) async fn await_server_close(&mut self, deadline: Instant) {
        let _ = bounded(deadline, "waiting for the server to close", async {
            let mut sink = [0u8; 4096];
            while tokio::io::AsyncReadExt::read(&mut self.io, &mut sink)
                .await
                .map_err(|e| Failure::io("closing", &e))?
                > 0
            {}
            Ok(())
        })
        .await;
        let _ = bounded(deadline, "closing", async {
            tokio::io::AsyncWriteExt::shutdown(&mut self.io)
                .await
                .map_err(|e| Failure::io("closing", &e))
        })
        .await;
    }
}

/// The `sent_at_us` number of a push like `{"type":"push","seq":1,"sent_at_us":N}`. A
/// field search, not a JSON parser: the load generator reads the lab's own messages and
/// anything else is simply not a push.
pub(super) fn push_sent_at_us(text: &str) -> Option<u64> {
    const FIELD: &str = "\"sent_at_us\":";
    let at = text.find(FIELD)? + FIELD.len();
    let digits = text[at..].trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::push_sent_at_us;

    #[test]
    fn push_timestamps_are_found() {
        assert_eq!(
            push_sent_at_us(r#"{"type":"push","seq":1,"sent_at_ms":5,"sent_at_us":5123}"#),
            Some(5123)
        );
        assert_eq!(push_sent_at_us(r#"{"sent_at_us": 7}"#), Some(7));
        assert_eq!(push_sent_at_us(r#"{"sent_at_us":"x"}"#), None);
        assert_eq!(push_sent_at_us("hello"), None);
    }
}

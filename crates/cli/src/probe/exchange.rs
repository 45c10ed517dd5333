//! The request a client sends and what comes back: a GET and its response (body read to its
//! end, so the connection can be reused), or a WebSocket upgrade, then an echo and a ping.

use std::time::{Duration, Instant};

use protolab_wire::http1::{
    parse_response, BodyFraming, ChunkedDecoder, HeadLimits, Headers as _, ResponseHead,
};
use protolab_wire::ws::{self, handshake, Decoder, DecoderConfig, Message, OpCode, Role};

use super::conn::{preview, Conn, End};
use super::report::{ms, HttpFacts, WsFacts};
use super::target::Target;

/// Largest body read (and thrown away) to reach the end of a response.
const MAX_BODY_BYTES: u64 = 64 << 20;
/// What the probe calls itself in `User-Agent`.
const USER_AGENT: &str = concat!("protolab-probe/", env!("CARGO_PKG_VERSION"));

/// What to put in the request besides the basics.
#[derive(Debug, Clone, Default)]
pub(super) struct RequestOptions {
    /// `Origin` for the upgrade (none by default, as non-browser clients do).
    pub(super) origin: Option<String>,
    /// Subprotocols offered in the upgrade.
    pub(super) subprotocols: Vec<String>,
}

/// `N` random bytes from the TLS provider's generator (masks and keys need no other source).
pub(super) fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // ring's generator reads the OS; a failure leaves zeros, which only makes keys guessable
    // to someone already on the path, not wrong.
    let _ = protolab_tls::provider().secure_random.fill(&mut bytes);
    bytes
}

/// Sends the GET (or upgrade) for `target` and reads the response head, and for plain HTTP the
/// body. Returns the facts and whether the connection may be reused (keep-alive).
pub(super) async fn request(
    conn: &mut Conn,
    target: &Target,
    options: &RequestOptions,
) -> Result<(HttpFacts, bool), (Option<HttpFacts>, String)> {
    let mut out = Vec::new();
    let key = handshake::encode_key(random());
    let websocket = target.scheme.is_websocket();
    if websocket {
        let protocols: Vec<&str> = options.subprotocols.iter().map(String::as_str).collect();
        handshake::write_request(
            &mut out,
            &target.authority,
            &target.path,
            &key,
            options.origin.as_deref(),
            &protocols,
            &[("User-Agent", USER_AGENT.as_bytes())],
        );
    } else {
        out.extend_from_slice(
            format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n\r\n",
                target.path, target.authority
            )
            .as_bytes(),
        );
    }
    let label = if websocket {
        "upgrade request"
    } else {
        "request head"
    };
    conn.send(&out, label).await.map_err(|e| (None, e))?;
    let started = Instant::now();
    let head = read_head(conn).await.map_err(|e| (None, e))?;
    let mut facts = HttpFacts {
        response_ms: ms(started.elapsed()),
        version: format!("HTTP/1.{}", head.version),
        status: head.status,
        reason: head.reason.clone(),
        headers: head
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    String::from_utf8_lossy(&h.value).into_owned(),
                )
            })
            .collect(),
        ..HttpFacts::default()
    };
    if websocket {
        facts.subprotocol = head.header_str("sec-websocket-protocol").map(str::to_owned);
        facts.extensions = head
            .header_str("sec-websocket-extensions")
            .map(str::to_owned);
        if let Err(err) = handshake::check_response(&head, &key) {
            let why = match err {
                handshake::HandshakeError::NotSwitching(status) => format!(
                    "the WebSocket upgrade was refused: the server answered {status} {} instead of 101 Switching Protocols (is the path right? does it check Origin? try --origin)",
                    head.reason
                ),
                other => format!("the 101 answer is not a valid WebSocket handshake: {other}"),
            };
            return Err((Some(facts), why));
        }
        return Ok((facts, false));
    }
    let framing = match head.body_framing("GET") {
        Ok(framing) => framing,
        Err(err) => {
            return Err((
                Some(facts),
                format!("the response's body framing is invalid: {err}"),
            ))
        }
    };
    let keep_alive = head.version >= 1
        && !head.has_token("connection", "close")
        && framing != BodyFraming::UntilClose;
    match read_body(conn, framing).await {
        Ok(n) => facts.body_bytes = n,
        Err(err) => return Err((Some(facts), err)),
    }
    Ok((facts, keep_alive))
}

/// Reads until a whole response head is in the buffer, and takes it out.
async fn read_head(conn: &mut Conn) -> Result<ResponseHead, String> {
    let limits = HeadLimits::default();
    let timeout = humantime::format_duration(conn.timeout).to_string();
    loop {
        match parse_response(&conn.buf, &limits) {
            Ok(Some((head, len))) => {
                conn.buf.drain(..len);
                return Ok(head);
            }
            Ok(None) => {}
            Err(err) => {
                return Err(format!(
                    "the server did not answer with HTTP/1.x ({err}); its first bytes: {}",
                    preview(&conn.buf)
                ))
            }
        }
        let got = conn.buf.len();
        match conn.fill("response").await {
            Ok(_) => {}
            Err(End::Timeout) if got == 0 => {
                return Err(format!(
                    "no answer within {timeout}: the server accepted the connection but sent nothing back (is it an HTTP server? is it overloaded?)"
                ))
            }
            Err(End::Timeout) => {
                return Err(format!(
                    "the response head did not complete within {timeout}; it began with {}",
                    preview(&conn.buf)
                ))
            }
            Err(end) if got == 0 => {
                return Err(format!(
                    "the server closed the connection ({}) without answering the request",
                    end.describe(conn.is_tls())
                ))
            }
            Err(end) => {
                return Err(format!(
                    "the server closed the connection ({}) after {got} bytes that are not a whole HTTP response: {}",
                    end.describe(conn.is_tls()),
                    preview(&conn.buf)
                ))
            }
        }
    }
}

/// Reads the body to its end and throws it away; returns its length. One deadline for all of
/// it.
async fn read_body(conn: &mut Conn, framing: BodyFraming) -> Result<u64, String> {
    let deadline = Instant::now() + conn.timeout;
    let timeout = conn.timeout;
    let late = || {
        format!(
            "the response body did not finish within {} (raise --timeout for large bodies)",
            humantime::format_duration(timeout)
        )
    };
    match framing {
        BodyFraming::Empty => Ok(0),
        BodyFraming::ContentLength(len) => {
            let mut read = 0u64;
            while read < len {
                if conn.buf.is_empty() {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match conn.fill_within(wait, "response body").await {
                        Ok(_) => {}
                        Err(End::Timeout) => return Err(late()),
                        Err(end) => {
                            return Err(format!(
                                "the server closed the connection ({}) {read} bytes into a {len}-byte body",
                                end.describe(conn.is_tls())
                            ))
                        }
                    }
                }
                let take = usize::try_from(len - read)
                    .unwrap_or(usize::MAX)
                    .min(conn.buf.len());
                conn.buf.drain(..take);
                read += take as u64;
            }
            Ok(len)
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::with_limit(MAX_BODY_BYTES);
            let mut body = Vec::new();
            loop {
                body.clear();
                let event = decoder
                    .decode(&conn.buf, &mut body)
                    .map_err(|err| format!("the chunked body is invalid: {err}"))?;
                conn.buf.drain(..event.consumed);
                if event.done {
                    return Ok(decoder.decoded_len());
                }
                let wait = deadline.saturating_duration_since(Instant::now());
                match conn.fill_within(wait, "response body").await {
                    Ok(_) => {}
                    Err(End::Timeout) => return Err(late()),
                    Err(end) => {
                        return Err(format!(
                            "the server closed the connection ({}) inside a chunked body",
                            end.describe(conn.is_tls())
                        ))
                    }
                }
            }
        }
        BodyFraming::UntilClose => {
            let mut read = 0u64;
            loop {
                read += conn.buf.len() as u64;
                conn.buf.clear();
                let wait = deadline.saturating_duration_since(Instant::now());
                match conn.fill_within(wait, "response body").await {
                    Ok(_) => {}
                    Err(End::Timeout) => return Err(late()),
                    Err(_) => return Ok(read),
                }
            }
        }
    }
}

/// How waiting for a WebSocket message ended without one.
pub(super) enum WsEnd {
    /// Nothing within the wait.
    Timeout,
    /// The stream ended.
    Closed(End),
    /// The bytes are not WebSocket frames; the message says what they were.
    Garbage(String),
}

/// The WebSocket side of a probe: a decoder over the connection's buffer.
pub(super) struct WsClient {
    decoder: Decoder,
}

impl WsClient {
    /// A client-role decoder with the wire crate's default limits.
    pub(super) fn new() -> Self {
        Self {
            decoder: Decoder::new(Role::Client, DecoderConfig::default()),
        }
    }

    /// Sends one masked frame.
    pub(super) async fn send(
        &self,
        conn: &mut Conn,
        opcode: OpCode,
        payload: &[u8],
        label: &str,
    ) -> Result<(), String> {
        let mut out = Vec::new();
        ws::encode_frame(&mut out, true, opcode, Some(random()), payload);
        conn.send(&out, label).await
    }

    /// The next message or control frame within `wait`.
    pub(super) async fn next(&mut self, conn: &mut Conn, wait: Duration) -> Result<Message, WsEnd> {
        let deadline = Instant::now() + wait;
        loop {
            match self.decoder.decode(&conn.buf) {
                Ok((used, message)) => {
                    conn.buf.drain(..used);
                    if let Some(message) = message {
                        return Ok(message);
                    }
                    if used > 0 {
                        continue;
                    }
                }
                Err(err) => {
                    return Err(WsEnd::Garbage(format!(
                        "the server sent bytes that are not a valid WebSocket frame ({err}); they begin {}",
                        preview(&conn.buf)
                    )))
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(end) = conn.fill_within(left, "WebSocket frames").await {
                return Err(match end {
                    End::Timeout => WsEnd::Timeout,
                    other => WsEnd::Closed(other),
                });
            }
        }
    }

    /// Echo then ping: sends a text message and waits for it to come back, then a ping and
    /// waits for its pong, answering the server's pings meanwhile.
    pub(super) async fn check(&mut self, conn: &mut Conn) -> Result<WsFacts, String> {
        let mut facts = WsFacts::default();
        let nonce: [u8; 6] = random();
        let text = format!("protolab probe {}", hex(&nonce));
        let sent = Instant::now();
        self.send(
            conn,
            OpCode::Text,
            text.as_bytes(),
            "WebSocket text frame (masked)",
        )
        .await?;
        let wait = conn.timeout;
        loop {
            let left = wait.saturating_sub(sent.elapsed());
            match self.next(conn, left).await {
                Ok(Message::Text(back)) if back == text => {
                    facts.echoed = true;
                    facts.echo_rtt_ms = Some(ms(sent.elapsed()));
                    break;
                }
                Ok(Message::Ping(data)) => self.pong(conn, &data).await?,
                Ok(Message::Close(frame)) => return Err(closed_early(frame.as_ref(), "the echo")),
                Ok(_) => facts.other_messages += 1,
                Err(WsEnd::Timeout) => break,
                Err(end) => return Err(self.ended(conn, end, "the echo")),
            }
        }
        let payload = format!("probe {}", hex(&random::<4>()));
        let pinged = Instant::now();
        self.send(
            conn,
            OpCode::Ping,
            payload.as_bytes(),
            "WebSocket ping (masked)",
        )
        .await?;
        loop {
            let left = wait.saturating_sub(pinged.elapsed());
            match self.next(conn, left).await {
                Ok(Message::Pong(data)) if data == payload.as_bytes() => {
                    facts.ping_rtt_ms = Some(ms(pinged.elapsed()));
                    break;
                }
                Ok(Message::Ping(data)) => self.pong(conn, &data).await?,
                Ok(Message::Close(frame)) => return Err(closed_early(frame.as_ref(), "the pong")),
                Ok(_) => facts.other_messages += 1,
                Err(WsEnd::Timeout) => break,
                Err(end) => return Err(self.ended(conn, end, "the pong")),
            }
        }
        Ok(facts)
    }

    /// Answers a ping.
    pub(super) async fn pong(&self, conn: &mut Conn, data: &[u8]) -> Result<(), String> {
        self.send(conn, OpCode::Pong, data, "WebSocket pong (masked)")
            .await
    }

    fn ended(&self, conn: &Conn, end: WsEnd, waiting_for: &str) -> String {
        match end {
            WsEnd::Garbage(text) => text,
            WsEnd::Closed(end) => format!(
                "the server closed the connection ({}) while we waited for {waiting_for}",
                end.describe(conn.is_tls())
            ),
            WsEnd::Timeout => format!("{waiting_for} did not come"),
        }
    }

    /// Closes with 1000 and waits briefly for the server's close frame.
    pub(super) async fn close(&mut self, conn: &mut Conn) {
        let mut out = Vec::new();
        ws::encode_close(
            &mut out,
            Some(random()),
            ws::close_code::NORMAL,
            "probe done",
        );
        if conn
            .send(&out, "WebSocket close 1000 (masked)")
            .await
            .is_err()
        {
            return;
        }
        let wait = conn.timeout.min(Duration::from_secs(2));
        let started = Instant::now();
        while let Ok(message) = self
            .next(conn, wait.saturating_sub(started.elapsed()))
            .await
        {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    }
}

fn closed_early(frame: Option<&ws::CloseFrame>, waiting_for: &str) -> String {
    match frame {
        Some(f) => format!(
            "the server closed the WebSocket with {} {:?} while we waited for {waiting_for}",
            f.code, f.reason
        ),
        None => {
            format!("the server closed the WebSocket (no code) while we waited for {waiting_for}")
        }
    }
}

/// Lowercase hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

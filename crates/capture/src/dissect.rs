//! Per-connection protocol decoding over the two reassembled byte streams: TLS hellos and
//! records, HTTP/1 start lines, the 101 upgrade, and every WebSocket frame. Decrypted TLS
//! application data goes through the same HTTP/WebSocket decoding as plaintext traffic.
//! permessage-deflate frames are inflated per direction with the terms the 101 agreed.
//! A client that opens with the HTTP/2 preface (h2c prior knowledge, or h2 after ALPN) is
//! decoded as HTTP/2 ([`crate::h2`]); a `text/event-stream` response body as server-sent
//! events ([`crate::sse`]).

use protolab_wire::http1::{self, BodyFraming, ChunkedDecoder, HeadLimits, Headers as _};
use protolab_wire::tls::keylog::KeyLog;
use protolab_wire::tls::{self, content_type};
use protolab_wire::ws::deflate::{self, Inflater};
use protolab_wire::ws::{self, close_code, OpCode, Role};
use serde::Serialize;

use crate::event::Event;
use crate::flow::{Dir, Note};
use crate::h2::{Step, H2};
use crate::limits::{MAX_MESSAGE_BUFFER, PREVIEW_BYTES};
use crate::sse::SseParser;
use crate::tls::Session;

/// Bytes of each layer above TCP, for the cost summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LayerBytes {
    /// TLS's own bytes: record headers, handshake and alert records, and for decrypted
    /// records the AEAD overhead (explicit nonce, tag, TLS 1.3 inner type and padding).
    pub tls: u64,
    /// Application data records that stayed encrypted (no secrets), whole.
    pub tls_encrypted: u64,
    /// HTTP heads.
    pub http_headers: u64,
    /// HTTP bodies.
    pub http_body: u64,
    /// WebSocket frame headers.
    pub ws_framing: u64,
    /// WebSocket payloads, as framed (compressed, under permessage-deflate).
    pub ws_payload: u64,
    /// What compressed WebSocket payloads inflated to (a subset of `ws_payload`'s frames).
    pub ws_inflated: u64,
    /// HTTP/2 connection preface, frame headers, padding and control frames' payloads.
    pub http2_framing: u64,
    /// HTTP/2 HPACK header blocks.
    pub http2_headers: u64,
    /// HTTP/2 DATA payloads.
    pub http2_data: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    #[default]
    Unknown,
    Http,
    Ws,
    H2,
    Lost,
}

#[derive(Debug, Default)]
struct Side {
    /// Application bytes (plaintext, or decrypted from TLS) not decoded yet.
    buf: Vec<u8>,
    /// Application-layer mode.
    mode: Mode,
    body_left: u64,
    chunked: Option<ChunkedDecoder>,
    /// TLS record bytes not framed yet (TLS connections only).
    records: Vec<u8>,
    /// The TLS record stream stopped making sense.
    records_lost: bool,
    /// permessage-deflate for the messages this direction carries, once agreed.
    inflater: Option<Box<Inflater>>,
    /// A compressed message has started and not finished.
    in_compressed: bool,
    /// The body being read is a `text/event-stream`.
    sse: Option<SseParser>,
}

/// The decoder for one connection.
#[derive(Debug, Default)]
pub(crate) struct Dissector {
    sides: [Side; 2],
    /// Set from the first byte: the connection speaks TLS.
    tls: Option<Session>,
    /// Whether the first byte has been seen.
    started: bool,
    /// The client asked to upgrade to WebSocket; a 101 switches both sides.
    upgrade_requested: bool,
    /// HTTP/2 state, once the client's preface was seen.
    h2: Option<Box<H2>>,
    pub(crate) layers: LayerBytes,
    /// TLS notes (missing secrets, failed records).
    pub(crate) notes: Vec<Note>,
}

impl Dissector {
    /// Adds reassembled bytes in `dir` and appends what they complete to `events`, decrypting
    /// TLS records with `keylog`'s secrets when it has this connection's.
    pub(crate) fn feed(
        &mut self,
        dir: Dir,
        bytes: &[u8],
        keylog: &KeyLog,
        events: &mut Vec<Event>,
    ) {
        let i = dir.index();
        if !self.started && !bytes.is_empty() {
            self.started = true;
            if bytes[0] == content_type::HANDSHAKE {
                self.tls = Some(Session::default());
            }
        }
        if self.tls.is_some() {
            if !self.sides[i].records_lost {
                self.sides[i].records.extend_from_slice(bytes);
                self.records(dir, keylog, events);
            }
        } else {
            self.sides[i].buf.extend_from_slice(bytes);
            self.app(dir, events);
        }
    }

    /// What decrypting this connection achieved, if it was decrypted.
    pub(crate) fn decrypted(&self) -> Option<crate::tls::Decrypted> {
        self.tls.as_ref().and_then(|s| s.decrypted.clone())
    }

    /// Frames, opens and hands on every whole TLS record waiting in `dir`.
    fn records(&mut self, dir: Dir, keylog: &KeyLog, events: &mut Vec<Event>) {
        let i = dir.index();
        let records = std::mem::take(&mut self.sides[i].records);
        let mut at = 0;
        while let Some(rest) = records.get(at..) {
            let (record, used) = match tls::decode_record(rest) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    self.sides[i].records_lost = true;
                    events.push(Event::Undecodable {
                        dir,
                        reason: format!("not TLS: {e}"),
                    });
                    return;
                }
            };
            at += used;
            let Some(session) = self.tls.as_mut() else {
                return;
            };
            let side = &mut self.sides[i];
            let bytes =
                session.record(dir, &record, keylog, &mut side.buf, events, &mut self.notes);
            self.layers.tls += bytes.tls as u64;
            self.layers.tls_encrypted += bytes.encrypted as u64;
            if bytes.app > 0 {
                self.app(dir, events);
            }
        }
        let mut records = records;
        records.drain(..at);
        self.sides[i].records = records;
    }

    /// Decodes the application bytes waiting in `dir`.
    fn app(&mut self, dir: Dir, events: &mut Vec<Event>) {
        let i = dir.index();
        if self.sides[i].mode == Mode::Unknown && !self.sides[i].buf.is_empty() {
            // The client's first bytes tell HTTP/2 (its preface, RFC 9113 §3.4, over h2c and
            // TLS alike) from HTTP/1; an HTTP/2 server may speak first, so its bytes wait.
            let client = &self.sides[Dir::ToServer.index()].buf;
            let preface = protolab_wire::http2::PREFACE;
            if client.is_empty() || client.len() < preface.len() && preface.starts_with(client) {
                self.bound(dir, events);
                return;
            }
            let mode = if client.starts_with(preface) {
                self.h2 = Some(Box::default());
                Mode::H2
            } else {
                Mode::Http
            };
            for side in &mut self.sides {
                if side.mode == Mode::Unknown {
                    side.mode = mode;
                }
            }
            let other = match dir {
                Dir::ToServer => Dir::ToClient,
                Dir::ToClient => Dir::ToServer,
            };
            // First the side that waited: the client's preface comes before the server's
            // frames in the timeline whichever arrived first.
            if dir == Dir::ToClient {
                self.decode(other, events);
                self.decode(dir, events);
            } else {
                self.decode(dir, events);
                self.decode(other, events);
            }
            return;
        }
        self.decode(dir, events);
    }

    /// Decodes what `dir` holds in its mode.
    fn decode(&mut self, dir: Dir, events: &mut Vec<Event>) {
        let i = dir.index();
        loop {
            let progressed = match self.sides[i].mode {
                Mode::Http => self.http(dir, events),
                Mode::Ws => self.ws(dir, events),
                Mode::H2 => self.h2(dir, events),
                Mode::Unknown | Mode::Lost => false,
            };
            if !progressed {
                break;
            }
        }
        self.bound(dir, events);
    }

    /// Gives up on `dir` past [`MAX_MESSAGE_BUFFER`] bytes waiting.
    fn bound(&mut self, dir: Dir, events: &mut Vec<Event>) {
        let side = &mut self.sides[dir.index()];
        if side.mode == Mode::Lost {
            side.buf.clear();
        } else if side.buf.len() > MAX_MESSAGE_BUFFER {
            self.lost(
                dir,
                format!(
                    "more than {} MiB buffered without a whole message",
                    MAX_MESSAGE_BUFFER >> 20
                ),
                events,
            );
        }
    }

    fn lost(&mut self, dir: Dir, reason: String, events: &mut Vec<Event>) -> bool {
        let side = &mut self.sides[dir.index()];
        side.mode = Mode::Lost;
        side.buf.clear();
        events.push(Event::Undecodable { dir, reason });
        false
    }

    fn http(&mut self, dir: Dir, events: &mut Vec<Event>) -> bool {
        let limits = HeadLimits {
            max_head_bytes: 64 << 10,
            max_headers: 200,
        };
        let side = &mut self.sides[dir.index()];
        // Finish the previous message's body first.
        if let Some(decoder) = side.chunked.as_mut() {
            let mut sink = Vec::new();
            return match decoder.decode(&side.buf, &mut sink) {
                Ok(progress) => {
                    side.buf.drain(..progress.consumed);
                    self.layers.http_body += progress.consumed as u64;
                    if let Some(sse) = side.sse.as_mut() {
                        sse.feed(&sink, events);
                    }
                    if progress.done {
                        side.chunked = None;
                        side.sse = None;
                    }
                    progress.consumed > 0 || progress.done
                }
                Err(e) => self.lost(dir, format!("bad chunked body: {e}"), events),
            };
        }
        if side.body_left > 0 {
            let n = side.body_left.min(side.buf.len() as u64);
            if let Some(sse) = side.sse.as_mut() {
                sse.feed(&side.buf[..n as usize], events);
            }
            side.buf.drain(..n as usize);
            side.body_left -= n;
            if side.body_left == 0 {
                side.sse = None;
            }
            self.layers.http_body += n;
            return n > 0;
        }
        if side.buf.is_empty() {
            return false;
        }
        match dir {
            Dir::ToServer => match http1::parse_request(&side.buf, &limits) {
                Ok(Some((head, used))) => {
                    side.buf.drain(..used);
                    self.layers.http_headers += used as u64;
                    if ws::handshake::is_upgrade_request(&head) {
                        self.upgrade_requested = true;
                    }
                    match head.body_framing() {
                        Ok(BodyFraming::ContentLength(n)) => side.body_left = n,
                        Ok(BodyFraming::Chunked) => side.chunked = Some(ChunkedDecoder::default()),
                        _ => {}
                    }
                    events.push(Event::HttpRequest {
                        method: head.method,
                        target: head.target,
                        head_bytes: used,
                    });
                    true
                }
                Ok(None) => false,
                Err(e) => self.lost(dir, format!("not an HTTP request: {e}"), events),
            },
            Dir::ToClient => match http1::parse_response(&side.buf, &limits) {
                Ok(Some((head, used))) => {
                    side.buf.drain(..used);
                    self.layers.http_headers += used as u64;
                    let switching = head.status == 101
                        && self.upgrade_requested
                        && head.has_token("upgrade", "websocket");
                    let extensions = head
                        .headers
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                        .map(|h| &h.value[..]);
                    let agreed = switching.then(|| deflate::read_response(extensions));
                    let event_stream = head
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
                        .is_some_and(|h| {
                            h.value
                                .to_ascii_lowercase()
                                .starts_with(b"text/event-stream")
                        });
                    match head.body_framing("GET") {
                        Ok(BodyFraming::ContentLength(n)) => side.body_left = n,
                        Ok(BodyFraming::Chunked) => side.chunked = Some(ChunkedDecoder::default()),
                        // An event stream without framing runs until the connection closes.
                        Ok(BodyFraming::UntilClose) if event_stream => side.body_left = u64::MAX,
                        _ => {}
                    }
                    if event_stream && (side.body_left > 0 || side.chunked.is_some()) {
                        side.sse = Some(SseParser::default());
                    }
                    events.push(Event::HttpResponse {
                        status: head.status,
                        reason: head.reason,
                        head_bytes: used,
                    });
                    if switching {
                        // Both directions speak WebSocket from the byte after their heads.
                        for s in &mut self.sides {
                            s.mode = Mode::Ws;
                        }
                    }
                    match agreed {
                        Some(Ok(Some(params))) => {
                            // Client-to-server messages are the client's compressor's output,
                            // inflated as the server does; the other way as the client does.
                            self.sides[Dir::ToServer.index()].inflater =
                                Some(Box::new(params.inflater(Role::Server)));
                            self.sides[Dir::ToClient.index()].inflater =
                                Some(Box::new(params.inflater(Role::Client)));
                            events.push(Event::WsDeflate {
                                params: params.to_string(),
                            });
                        }
                        Some(Err(e)) => self.notes.push(Note::Deflate {
                            dir: Dir::ToClient,
                            reason: format!("the 101's Sec-WebSocket-Extensions: {e}"),
                        }),
                        _ => {}
                    }
                    true
                }
                Ok(None) => false,
                Err(e) => self.lost(dir, format!("not an HTTP response: {e}"), events),
            },
        }
    }

    fn h2(&mut self, dir: Dir, events: &mut Vec<Event>) -> bool {
        let Some(h2) = self.h2.as_mut() else {
            return false;
        };
        let side = &mut self.sides[dir.index()];
        let step = h2.step(dir, &side.buf, events);
        self.layers.http2_framing = h2.bytes.framing;
        self.layers.http2_headers = h2.bytes.headers;
        self.layers.http2_data = h2.bytes.data;
        match step {
            Step::Used(n) => {
                side.buf.drain(..n);
                true
            }
            Step::More => false,
            Step::Bad(reason) => self.lost(dir, reason, events),
        }
    }

    fn ws(&mut self, dir: Dir, events: &mut Vec<Event>) -> bool {
        let side = &mut self.sides[dir.index()];
        let (header, header_len) = match ws::decode_header(&side.buf) {
            Ok(Some(h)) => h,
            Ok(None) => return false,
            Err(e) => return self.lost(dir, format!("bad WebSocket frame: {e}"), events),
        };
        let Ok(len) = usize::try_from(header.payload_len) else {
            return self.lost(dir, "WebSocket frame too large".into(), events);
        };
        let Some(payload) = side.buf.get(header_len..header_len + len) else {
            return false;
        };
        // RFC 7692 §6: RSV1 on a data message's first frame marks it compressed.
        let compressed = match header.opcode {
            OpCode::Text | OpCode::Binary => {
                side.in_compressed = header.rsv & 0b100 != 0 && !header.fin;
                header.rsv & 0b100 != 0
            }
            OpCode::Continuation => {
                let continued = side.in_compressed;
                side.in_compressed &= !header.fin;
                continued
            }
            _ => false,
        };
        let mut inflated = None;
        if let (true, Some(inflater)) = (compressed, side.inflater.as_mut()) {
            let mut out = Vec::new();
            let result = match header.mask {
                Some(mask) => {
                    inflater.inflate_masked(payload, mask, 0, &mut out, MAX_MESSAGE_BUFFER)
                }
                None => inflater.inflate(payload, &mut out, MAX_MESSAGE_BUFFER),
            }
            .and_then(|()| {
                if header.fin {
                    inflater.finish(&mut out, MAX_MESSAGE_BUFFER)
                } else {
                    Ok(())
                }
            });
            match result {
                Ok(()) => inflated = Some(out),
                Err(e) => {
                    side.inflater = None;
                    self.notes.push(Note::Deflate {
                        dir,
                        reason: format!("{e}; compressed frames shown as sent from here"),
                    });
                }
            }
        }
        let inflated_len = inflated.as_ref().map(|out| out.len() as u64);
        // Only what the preview and a close reason show is unmasked and kept.
        let payload = match inflated {
            Some(mut out) => {
                out.truncate(PREVIEW_BYTES);
                out
            }
            None => {
                let shown_len = if header.opcode == OpCode::Close {
                    payload.len()
                } else {
                    payload.len().min(PREVIEW_BYTES)
                };
                let mut shown = payload[..shown_len].to_vec();
                if let Some(mask) = header.mask {
                    ws::apply_mask(&mut shown, mask, 0);
                }
                shown
            }
        };
        let close = (header.opcode == OpCode::Close && payload.len() >= 2).then(|| {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            (code, String::from_utf8_lossy(&payload[2..]).into_owned())
        });
        let shown = &payload[..payload.len().min(PREVIEW_BYTES)];
        let preview = match (header.opcode, std::str::from_utf8(shown)) {
            (OpCode::Binary, _) | (_, Err(_)) => hex(shown),
            // Compressed bytes that were not inflated are not text, whatever they look like.
            _ if compressed && inflated_len.is_none() => hex(shown),
            (_, Ok(text)) => text.to_string(),
        };
        events.push(Event::WsFrame {
            dir,
            fin: header.fin,
            opcode: opcode_name(header.opcode),
            mask: header.mask,
            len: header.payload_len,
            header_bytes: header_len,
            preview,
            close,
            compressed,
            inflated_len,
        });
        self.layers.ws_framing += header_len as u64;
        self.layers.ws_payload += len as u64;
        self.layers.ws_inflated += inflated_len.unwrap_or(0);
        side.buf.drain(..header_len + len);
        true
    }
}

/// Lower-case hex, without a formatter call per byte (previews are on the hot path).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn opcode_name(op: OpCode) -> &'static str {
    match op {
        OpCode::Continuation => "continuation",
        OpCode::Text => "text",
        OpCode::Binary => "binary",
        OpCode::Close => "close",
        OpCode::Ping => "ping",
        OpCode::Pong => "pong",
    }
}

/// Readable meaning of a close code, for the timeline.
pub fn close_meaning(code: u16) -> &'static str {
    match code {
        close_code::NORMAL => "normal closure",
        close_code::GOING_AWAY => "going away",
        close_code::PROTOCOL => "protocol error",
        close_code::UNSUPPORTED => "unsupported data",
        close_code::INVALID_PAYLOAD => "invalid payload",
        close_code::POLICY => "policy violation",
        close_code::TOO_BIG => "message too big",
        close_code::INTERNAL => "internal error",
        _ => "",
    }
}

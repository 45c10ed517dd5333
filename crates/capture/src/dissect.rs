//! Per-connection protocol decoding over the two reassembled byte streams: TLS hellos and
//! records, HTTP/1 start lines, the 101 upgrade, and every WebSocket frame.

use protolab_wire::http1::{self, BodyFraming, ChunkedDecoder, HeadLimits, Headers as _};
use protolab_wire::tls::{self, content_type};
use protolab_wire::ws::{self, close_code, OpCode};
use serde::Serialize;

use crate::flow::Dir;

/// Most payload bytes shown per WebSocket frame.
pub const PREVIEW_BYTES: usize = 64;

/// One thing that happened on a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The client's SYN.
    TcpSyn,
    /// The three-way handshake completed; `rtt_us` is SYN → final ACK as seen on the capture.
    TcpEstablished {
        /// Round trip in microseconds.
        rtt_us: u64,
    },
    /// A FIN.
    TcpFin {
        /// Who closed.
        dir: Dir,
    },
    /// A RST.
    TcpReset {
        /// Who reset.
        dir: Dir,
    },
    /// The ClientHello's offer.
    TlsClientHello {
        /// SNI.
        server_name: Option<String>,
        /// ALPN protocols offered.
        alpn: Vec<String>,
        /// Versions offered (supported_versions), as names.
        versions: Vec<String>,
    },
    /// The ServerHello's choice.
    TlsServerHello {
        /// Negotiated version.
        version: String,
        /// Chosen cipher suite number.
        cipher_suite: u16,
    },
    /// Other TLS records (encrypted handshake, application data, alerts), summarised.
    TlsRecord {
        /// Direction.
        dir: Dir,
        /// Content type number.
        content_type: u8,
        /// Fragment length.
        len: usize,
    },
    /// An HTTP request head.
    HttpRequest {
        /// Method.
        method: String,
        /// Request target.
        target: String,
        /// Head size in bytes.
        head_bytes: usize,
    },
    /// An HTTP response head.
    HttpResponse {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// Head size in bytes.
        head_bytes: usize,
    },
    /// A WebSocket frame.
    WsFrame {
        /// Direction.
        dir: Dir,
        /// FIN bit.
        fin: bool,
        /// Opcode name (`text`, `binary`, `close` ...).
        opcode: &'static str,
        /// Masking key, if masked.
        mask: Option<[u8; 4]>,
        /// Payload length.
        len: u64,
        /// Header size in bytes.
        header_bytes: usize,
        /// Start of the unmasked payload: text as is, binary as hex.
        preview: String,
        /// Close code and reason, for close frames.
        close: Option<(u16, String)>,
    },
    /// Bytes the decoder could not make sense of; the rest of that direction is skipped.
    Undecodable {
        /// Direction.
        dir: Dir,
        /// Why.
        reason: String,
    },
}

/// Bytes of each layer above TCP, for the cost summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LayerBytes {
    /// TLS record headers, handshake records and AEAD overhead.
    pub tls: u64,
    /// HTTP heads.
    pub http_headers: u64,
    /// HTTP bodies.
    pub http_body: u64,
    /// WebSocket frame headers.
    pub ws_framing: u64,
    /// WebSocket payloads.
    pub ws_payload: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    #[default]
    Unknown,
    Http,
    Tls,
    Ws,
    Lost,
}

#[derive(Debug, Default)]
struct Side {
    buf: Vec<u8>,
    mode: Mode,
    body_left: u64,
    chunked: Option<ChunkedDecoder>,
    saw_hello: bool,
}

/// The decoder for one connection.
#[derive(Debug, Default)]
pub(crate) struct Dissector {
    sides: [Side; 2],
    /// The client asked to upgrade to WebSocket; a 101 switches both sides.
    upgrade_requested: bool,
    pub(crate) layers: LayerBytes,
}

impl Dissector {
    /// Adds reassembled bytes in `dir` and appends what they complete to `events`.
    pub(crate) fn feed(&mut self, dir: Dir, bytes: &[u8], events: &mut Vec<Event>) {
        let i = dir.index();
        self.sides[i].buf.extend_from_slice(bytes);
        if self.sides[i].mode == Mode::Unknown && !self.sides[i].buf.is_empty() {
            let tls = self.sides[i].buf[0] == content_type::HANDSHAKE;
            let mode = if tls { Mode::Tls } else { Mode::Http };
            for side in &mut self.sides {
                if side.mode == Mode::Unknown {
                    side.mode = mode;
                }
            }
        }
        loop {
            let progressed = match self.sides[i].mode {
                Mode::Http => self.http(dir, events),
                Mode::Tls => self.tls(dir, events),
                Mode::Ws => self.ws(dir, events),
                Mode::Unknown | Mode::Lost => false,
            };
            if !progressed {
                break;
            }
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
                    if progress.done {
                        side.chunked = None;
                    }
                    progress.consumed > 0 || progress.done
                }
                Err(e) => self.lost(dir, format!("bad chunked body: {e}"), events),
            };
        }
        if side.body_left > 0 {
            let n = side.body_left.min(side.buf.len() as u64);
            side.buf.drain(..n as usize);
            side.body_left -= n;
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
                    match head.body_framing("GET") {
                        Ok(BodyFraming::ContentLength(n)) => side.body_left = n,
                        Ok(BodyFraming::Chunked) => side.chunked = Some(ChunkedDecoder::default()),
                        _ => {}
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
                    true
                }
                Ok(None) => false,
                Err(e) => self.lost(dir, format!("not an HTTP response: {e}"), events),
            },
        }
    }

    fn tls(&mut self, dir: Dir, events: &mut Vec<Event>) -> bool {
        let side = &mut self.sides[dir.index()];
        let (record, used) = match tls::decode_record(&side.buf) {
            Ok(Some(r)) => r,
            Ok(None) => return false,
            Err(e) => return self.lost(dir, format!("not TLS: {e}"), events),
        };
        let event =
            if record.content_type == content_type::HANDSHAKE && !side.saw_hello {
                side.saw_hello = true;
                match dir {
                    Dir::ToServer => tls::parse_client_hello(record.fragment).ok().map(|h| {
                        Event::TlsClientHello {
                            server_name: h.server_name,
                            alpn: h.alpn,
                            versions: h
                                .supported_versions
                                .iter()
                                .map(|&v| tls::version_name(v))
                                .collect(),
                        }
                    }),
                    Dir::ToClient => tls::parse_server_hello(record.fragment).ok().map(|h| {
                        Event::TlsServerHello {
                            version: tls::version_name(h.version),
                            cipher_suite: h.cipher_suite,
                        }
                    }),
                }
            } else {
                None
            };
        events.push(event.unwrap_or(Event::TlsRecord {
            dir,
            content_type: record.content_type,
            len: record.fragment.len(),
        }));
        self.layers.tls += used as u64;
        side.buf.drain(..used);
        true
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
        let mut payload = payload.to_vec();
        if let Some(mask) = header.mask {
            ws::apply_mask(&mut payload, mask, 0);
        }
        let close = (header.opcode == OpCode::Close && payload.len() >= 2).then(|| {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            (code, String::from_utf8_lossy(&payload[2..]).into_owned())
        });
        let shown = &payload[..payload.len().min(PREVIEW_BYTES)];
        let preview = match (header.opcode, std::str::from_utf8(shown)) {
            (OpCode::Binary, _) | (_, Err(_)) => shown.iter().map(|b| format!("{b:02x}")).collect(),
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
        });
        self.layers.ws_framing += header_len as u64;
        self.layers.ws_payload += len as u64;
        side.buf.drain(..header_len + len);
        true
    }
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

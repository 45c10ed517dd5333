//! The timeline's vocabulary: every [`Event`] a connection's dissector, and the TLS layer
//! inside it, can report.

use serde::Serialize;

use crate::flow::Dir;

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
    /// Records were decrypted from here on with key-log secrets.
    TlsDecrypted {
        /// Negotiated version.
        version: String,
        /// Cipher suite's IANA name.
        cipher_suite: String,
    },
    /// Other TLS records (handshake, alerts, and application data left encrypted),
    /// summarised. Decrypted application data shows as the HTTP/WebSocket events inside it.
    TlsRecord {
        /// Direction.
        dir: Dir,
        /// Content type number (the inner type, when decrypted).
        content_type: u8,
        /// Fragment length (the plaintext length, when decrypted).
        len: usize,
        /// Whether the record was decrypted.
        decrypted: bool,
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
    /// The 101 agreed permessage-deflate (RFC 7692) with these terms; compressed frames are
    /// inflated from here on.
    WsDeflate {
        /// Every parameter spelled out, e.g. `server_max_window_bits=15;
        /// client_max_window_bits=15`.
        params: String,
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
        /// Start of the unmasked payload (inflated, for a compressed frame that could be):
        /// text as is, binary as hex.
        preview: String,
        /// Close code and reason, for close frames.
        close: Option<(u16, String)>,
        /// Part of a permessage-deflate compressed message (RSV1 on its first frame).
        compressed: bool,
        /// What this frame's payload inflated to (the message's final frame includes the
        /// flush tail); `None` when not compressed or not inflatable.
        inflated_len: Option<u64>,
    },
    /// The HTTP/2 client connection preface (RFC 9113 §3.4), sent first over h2c (prior
    /// knowledge) and over TLS with ALPN h2 alike.
    Http2Preface,
    /// One HTTP/2 frame.
    Http2Frame {
        /// Direction.
        dir: Dir,
        /// Frame type name (`HEADERS`, `DATA`, `SETTINGS` ...; `0x..` for an unknown type).
        frame_type: String,
        /// Stream identifier.
        stream_id: u32,
        /// Flags byte.
        flags: u8,
        /// Names of the flags set that this type defines.
        flag_names: Vec<String>,
        /// Payload length.
        len: u32,
        /// The header list decoded from the header block this frame completes (HEADERS,
        /// CONTINUATION, PUSH_PROMISE with END_HEADERS), in order.
        headers: Vec<(String, String)>,
        /// What else the payload says: SETTINGS values, a WINDOW_UPDATE increment, an error
        /// code by name, a PUSH_PROMISE's promised stream; or why it could not be decoded.
        detail: Option<String>,
    },
    /// A gRPC call's request headers (content-type application/grpc*).
    GrpcCall {
        /// HTTP/2 stream.
        stream_id: u32,
        /// The method path (`:path`), e.g. `/protolab.Lab/Echo`.
        path: String,
    },
    /// One length-prefixed gRPC message (its 5-byte prefix seen on a gRPC stream's DATA).
    GrpcMessage {
        /// Direction.
        dir: Dir,
        /// HTTP/2 stream.
        stream_id: u32,
        /// The compressed flag.
        compressed: bool,
        /// Message length from the prefix.
        len: u32,
    },
    /// A gRPC call's status from its trailers.
    GrpcStatus {
        /// HTTP/2 stream.
        stream_id: u32,
        /// `grpc-status` (0 is OK).
        status: String,
        /// `grpc-message`, if any.
        message: Option<String>,
    },
    /// One server-sent event (text/event-stream), dispatched by its blank line.
    SseEvent {
        /// `id:`, if the event had one.
        id: Option<String>,
        /// `event:` (the type), if the event named one (the default is `message`).
        event_type: Option<String>,
        /// The start of `data:` (lines joined by newlines), at most [`crate::PREVIEW_BYTES`].
        data: String,
        /// The whole data's length in bytes.
        data_len: u64,
        /// `retry:` in milliseconds, if the event set it.
        retry_ms: Option<u64>,
    },
    /// An SSE comment line (`:` first), which servers send as heartbeats.
    SseComment {
        /// The comment's start, without the colon, at most [`crate::PREVIEW_BYTES`].
        text: String,
    },
    /// Bytes the decoder could not make sense of; the rest of that direction is skipped.
    Undecodable {
        /// Direction.
        dir: Dir,
        /// Why.
        reason: String,
    },
}

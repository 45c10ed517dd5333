//! Explicit limits, each bounding what one peer can make the lab spend.

use std::time::Duration;

/// Per-listener limits. Every field has a default chosen to let a browser, curl or a load
/// generator work unhindered while a hostile or broken peer is cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest WebSocket message (summed over fragments) and frame, in bytes. Default 16 MiB,
    /// tungstenite's frame default. Bigger ones are refused with close 1009 as soon as a frame
    /// header announces them, before the payload is buffered.
    pub max_message_bytes: usize,
    /// Bytes all WebSocket connections of the lab together may hold for messages in
    /// progress, beyond the read buffer each connection has anyway. Default 1 GiB (the CLI
    /// sets a quarter of the machine's memory). Memory grows only as a message's bytes
    /// arrive, never from a length a header announces; a connection whose message would
    /// take the total past this budget is closed with 1013 (try again later) and the event
    /// is logged, so hostile or merely many large messages cannot take the process down.
    pub max_buffered_bytes: usize,
    /// Time one WebSocket message may take from its first frame to its last. Default 60 s
    /// (16 MiB at about 2 Mbit/s); a message still open then is closed with 1008. Together
    /// with the decoder's bound on frames per message, a message that never ends (empty
    /// continuation frames forever) is cut off.
    pub message_timeout: Duration,
    /// Largest HTTP request head (request line + headers), in bytes. Default 16 KiB; more
    /// gets `431 Request Header Fields Too Large` and the connection is closed.
    pub max_header_bytes: usize,
    /// Most header fields in one request. Default 100; more gets 431.
    pub max_headers: usize,
    /// Largest HTTP request body (`POST /echo`), in bytes. Default 1 MiB; more gets 413.
    pub max_body_bytes: u64,
    /// Time from accept until the first request head has arrived, TLS handshake included (and,
    /// for WebSockets, the upgrade). Default 10 s. A peer that connects and stalls — slowloris —
    /// is closed when it runs out (with 408 if it had sent part of a head).
    pub handshake_timeout: Duration,
    /// Time a request body may take to arrive once its head is in. Default 30 s.
    pub body_timeout: Duration,
    /// How long a connection may stay silent. HTTP keep-alive connections are closed after
    /// it; a WebSocket gets a ping after half of it and is closed with 1001 if nothing at all
    /// (not even a pong) arrived in the whole period. Default 60 s.
    pub idle_timeout: Duration,
    /// Time one write may wait for the peer to make room (a client that stops reading).
    /// Default 30 s; the connection is dropped after it.
    pub write_timeout: Duration,
    /// Connections open at once per listener. Default 10,000 (under the hard file limit
    /// seen here, 20,000). At the limit the listener stops accepting until one closes, so
    /// excess clients wait in the kernel's backlog instead of being reset.
    pub max_connections: usize,
    /// Time [`Lab::shutdown`](crate::Lab::shutdown) gives open connections to finish after
    /// accepting stops and WebSockets are sent 1001. Default 5 s; then the rest are dropped.
    pub drain_timeout: Duration,
    /// After we send a close frame, how long we wait for the peer's. Default 2 s.
    pub close_timeout: Duration,
    /// Largest gRPC message the gRPC app decodes or encodes, in bytes. Default 4 MiB, gRPC's
    /// own default. A bigger request ends its call with RESOURCE_EXHAUSTED as soon as the
    /// message's length prefix announces it; the connection and its other calls go on.
    pub grpc_max_message_bytes: usize,
    /// gRPC calls (HTTP/2 streams) open at once on one connection, as advertised in
    /// SETTINGS_MAX_CONCURRENT_STREAMS. Default 100.
    pub grpc_max_concurrent_streams: u32,
    /// What the HTTP/2 app allows one connection beyond the limits above (which it applies
    /// too: header bytes become SETTINGS_MAX_HEADER_LIST_SIZE, body bytes bound `POST /echo`).
    pub h2: H2Limits,
}

/// Per-connection limits of the HTTP/2 app, advertised in its SETTINGS where HTTP/2 has a
/// setting for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Limits {
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). Default 128,
    /// as nginx; more are refused with RST_STREAM(REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// Largest frame payload the client may send (SETTINGS_MAX_FRAME_SIZE). Default 16,384,
    /// the protocol's minimum; a larger frame ends the connection with FRAME_SIZE_ERROR.
    pub max_frame_size: u32,
    /// Flow-control window of the whole connection: body bytes a client may have in flight
    /// before the lab reads them. Default 1 MiB.
    pub connection_window: u32,
    /// Flow-control window of each stream (SETTINGS_INITIAL_WINDOW_SIZE). Default 256 KiB.
    pub stream_window: u32,
    /// Frames that cost the server work but carry no request — SETTINGS, PING, RST_STREAM,
    /// PRIORITY and empty DATA — a connection may send per second, in bursts of as many.
    /// Default 200. Past it the connection gets GOAWAY(ENHANCE_YOUR_CALM) and is closed:
    /// SETTINGS and PING floods, rapid reset (CVE-2023-44487) and empty-frame floods
    /// (CVE-2019-9518) all look like this.
    pub control_frames_per_second: u32,
}

impl Default for H2Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 128,
            max_frame_size: 16_384,
            connection_window: 1 << 20,
            stream_window: 256 << 10,
            control_frames_per_second: 200,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 << 20,
            max_buffered_bytes: 1 << 30,
            message_timeout: Duration::from_secs(60),
            max_header_bytes: 16 << 10,
            max_headers: 100,
            max_body_bytes: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
            h2: H2Limits::default(),
            grpc_max_message_bytes: 4 << 20,
            grpc_max_concurrent_streams: 100,
        }
    }
}

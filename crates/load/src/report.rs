//! The results model: what one run measured, ready to serialize. Nothing here prints.

use serde::{Deserialize, Serialize};

use crate::histogram::Summary;
use crate::target::Scheme;
use crate::Workload;

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The URL loaded.
    pub target: String,
    /// Its scheme.
    pub scheme: Scheme,
    /// What each connection did.
    pub workload: Workload,
    /// Concurrent connections (workers).
    pub connections: usize,
    /// Payload bytes per message.
    pub message_size: usize,
    /// Open-loop target rate in messages per second (latency then counts from each message's
    /// due time); `None` for a closed loop.
    pub rate: Option<f64>,
    /// Length of the run in seconds: from the start to the last completed exchange, at most
    /// the configured duration.
    pub duration_secs: f64,
    /// Echoes completed.
    pub messages: u64,
    /// `messages / duration_secs`.
    pub throughput_per_sec: f64,
    /// Per-message latency (echo: send to echo; connect: connect start to first echo), merged
    /// over every connection. `None` if nothing completed.
    pub latency: Option<Summary>,
    /// Bytes on the wire (TCP payload, so TLS records and framing included).
    pub bytes: Bytes,
    /// Time spent in each step of opening a connection.
    pub phases: Phases,
    /// Round trips from starting to connect to the first echo, averaged over connections:
    /// the TCP handshake plus every time the client waited for the server (TLS flights, the
    /// upgrade, the request). `None` for the push workload and when nothing completed.
    pub round_trips_to_first_echo: Option<f64>,
    /// Connections that completed their handshakes.
    pub connections_opened: u64,
    /// Push workload: connections that opened but received no push in the whole run (a
    /// subscriber the server never served); zero for the other workloads.
    #[serde(default)]
    pub connections_without_messages: u64,
    /// Packets, frame bytes and retransmissions, from the kernel's TCP counters; absent from
    /// reports of protolab before it counted them.
    #[serde(default)]
    pub tcp: Tcp,
    /// WebSocket messages received that were not echoes (the lab's server pushes, pongs):
    /// skipped, not counted in `messages`, but their bytes are in the byte counts.
    pub skipped_messages: u64,
    /// WebSocket pings the server sent, each answered with a pong.
    pub pings_answered: u64,
    /// Polling runs (`poll://`, `long-poll://`): requests sent, empty answers, and requests
    /// per delivered event. Absent for other schemes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polls: Option<Polls>,
    /// permessage-deflate, for runs that offered it.
    pub compression: Option<Compression>,
    /// What the messages carried.
    pub payload: crate::Payload,
    /// What went wrong, by kind.
    pub errors: Errors,
    /// The histograms behind `latency` and `phases`, for adding reports up exactly
    /// (`protolab merge`). Absent from reports of protolab before `merge`.
    #[serde(default)]
    pub histograms: Histograms,
}

/// What polling for pushes cost in requests.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Polls {
    /// Requests sent (every `GET /poll…`, answered or not when the run ended).
    pub requests: u64,
    /// Answers that carried no event: a plain poll with nothing new, a long poll held until
    /// its timeout.
    pub empty: u64,
    /// Events the lab reported dropped from its ring before they were polled (`gap`).
    pub missed_events: u64,
    /// `requests / messages`: requests per delivered event; `None` when none was delivered.
    pub per_event: Option<f64>,
}

impl Polls {
    /// The sum of two counts; `per_event` is left to [`Polls::per_event`].
    pub(crate) fn plus(self, other: Self) -> Self {
        Self {
            requests: self.requests + other.requests,
            empty: self.empty + other.empty,
            missed_events: self.missed_events + other.missed_events,
            per_event: None,
        }
    }

    /// These counts with `per_event` over `delivered` events.
    pub(crate) fn per_event(self, delivered: u64) -> Self {
        Self {
            #[allow(clippy::cast_precision_loss)]
            per_event: (delivered > 0).then(|| self.requests as f64 / delivered as f64),
            ..self
        }
    }
}

/// Each histogram a report's percentiles come from, as [`crate::histogram::encode`] writes it
/// (HDR histogram V2, base64, nanoseconds); `None` where nothing was recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Histograms {
    /// Behind [`Report::latency`].
    pub latency: Option<String>,
    /// Behind [`Phases::tcp_connect`].
    pub tcp_connect: Option<String>,
    /// Behind [`Phases::tls_handshake`].
    pub tls_handshake: Option<String>,
    /// Behind [`Phases::ws_upgrade`].
    pub ws_upgrade: Option<String>,
    /// Behind [`Phases::first_byte`].
    pub first_byte: Option<String>,
    /// Behind [`Phases::first_echo`].
    pub first_echo: Option<String>,
    /// Behind [`Phases::connect_to_first_echo`].
    pub connect_to_first_echo: Option<String>,
}

/// Bytes on the wire, as counted under TLS: TCP payload, so TLS records, HTTP heads and
/// WebSocket framing are in, the link, IP and TCP headers are not (see [`Tcp`] for those).
///
/// TLS 1.3 servers send session tickets right after the handshake, and they arrive with
/// whatever the server sends next: the WebSocket 101, or the first HTTP response. Wherever
/// they arrive they are counted on their own line, [`Bytes::post_handshake_tls_received_per_connection`],
/// never in the handshake or the message figures, so HTTPS and WSS are charged alike.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Bytes {
    /// Client → server bytes per message. Echo workload: steady state (every exchange after a
    /// connection's first). Connect workload: the first (only) exchange, which under TLS 1.3
    /// also carries the server's session tickets.
    pub sent_per_message: Option<f64>,
    /// Server → client bytes per message, counted like `sent_per_message`.
    pub received_per_message: Option<f64>,
    /// Client → server bytes per message above TLS (HTTP head and body, WebSocket frame);
    /// equal to `sent_per_message` without TLS. The difference is TLS record overhead.
    pub above_tls_sent_per_message: Option<f64>,
    /// Server → client bytes per message above TLS.
    pub above_tls_received_per_message: Option<f64>,
    /// Client → server application payload per message (the message itself): what is left
    /// of `above_tls_sent_per_message` after HTTP or WebSocket framing.
    pub payload_sent_per_message: Option<f64>,
    /// Server → client application payload per message.
    pub payload_received_per_message: Option<f64>,
    /// Client → server WebSocket data-frame payload per message as framed, i.e. compressed:
    /// set when permessage-deflate was agreed. `payload_sent_per_message` minus this is what
    /// compression saved; `above_tls_sent_per_message` minus this is the framing.
    pub frame_payload_sent_per_message: Option<f64>,
    /// Server → client data-frame payload per message as framed (compressed).
    pub frame_payload_received_per_message: Option<f64>,
    /// Server → client post-handshake TLS records per connection: TLS 1.3 session tickets
    /// (and key updates), header and tag included; out of every other figure here but the
    /// totals. `None` without TLS.
    #[serde(default)]
    pub post_handshake_tls_received_per_connection: Option<f64>,
    /// Client → server bytes per connection before its first message: TLS handshake and
    /// WebSocket upgrade request.
    pub handshake_sent_per_connection: Option<f64>,
    /// Server → client bytes per connection before its first message: TLS handshake and
    /// WebSocket 101 response (session tickets are not in it: see
    /// `post_handshake_tls_received_per_connection`).
    pub handshake_received_per_connection: Option<f64>,
    /// Every byte sent on connections that opened, their closing frames included.
    pub total_sent: u64,
    /// Every byte received on connections that opened.
    pub total_received: u64,
}

/// What a packet capture shows beyond TCP payload, from the kernel's counters of the load
/// generator's sockets (`tcp_info`), sampled when each connection opened, after its first
/// exchange and before it closed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Tcp {
    /// Segments both ways per message (data, ACKs, retransmissions), over the same exchanges
    /// as the per-message byte figures. Segments are counted, not attributed: a segment that
    /// brought session tickets during a connect run's exchange is in it (HTTPS connect: 5
    /// where HTTP has 4).
    pub packets_per_message: Option<f64>,
    /// Frame bytes per message as a capture shows them: the TCP payload both ways plus
    /// `header_bytes_per_packet` for every packet.
    pub frame_bytes_per_message: Option<f64>,
    /// Link, IP and TCP header bytes assumed per packet: Ethernet II 14, IPv4 20 (IPv6 40),
    /// TCP 20, plus 12 with TCP timestamps. SYN options and SACK blocks are not in it.
    pub header_bytes_per_packet: u64,
    /// Segments both ways on every connection sampled, from its SYN to just before its
    /// close (the close's few segments are not in it).
    pub packets: u64,
    /// Payload bytes the load generator's sockets sent again (`tcpi_bytes_retrans`):
    /// client → server only; the server's retransmissions are not seen from here.
    pub retransmitted_bytes: u64,
    /// Segments the load generator's sockets sent again (`tcpi_total_retrans`).
    pub retransmitted_segments: u64,
    /// `retransmitted_bytes` over every byte sent: what loss added on top of the figures.
    pub retransmitted_share: Option<f64>,
    /// Connections whose counters could be read (the others are left out of the above).
    pub connections_sampled: u64,
}

/// permessage-deflate as offered and agreed in a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Compression {
    /// The `Sec-WebSocket-Extensions` offer sent.
    pub offer: String,
    /// Connections whose server accepted it (the others ran uncompressed).
    pub connections_accepted: u64,
    /// The first accepting connection's agreed parameters, every one spelled out (e.g.
    /// `server_max_window_bits=15; client_max_window_bits=15`); `None` if no server accepted.
    pub agreed: Option<String>,
}

/// Durations of the steps of opening a connection, each over every connection opened.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Phases {
    /// TCP connect (SYN to established).
    pub tcp_connect: Option<Summary>,
    /// TLS handshake (ClientHello to handshake complete).
    pub tls_handshake: Option<Summary>,
    /// WebSocket upgrade: request sent to 101 parsed.
    pub ws_upgrade: Option<Summary>,
    /// First message: request sent to the first response byte.
    pub first_byte: Option<Summary>,
    /// First message: request sent to the whole echo.
    pub first_echo: Option<Summary>,
    /// Connect start to the first echo: what a new client waits for its first answer.
    pub connect_to_first_echo: Option<Summary>,
}

/// What kind of failure ended a connection or an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Connection refused: nothing listens on the port.
    Refused,
    /// The TLS handshake failed (untrusted certificate, wrong name, no common version...).
    Tls,
    /// No answer within the connect or request timeout.
    Timeout,
    /// The server closed the connection mid-run.
    Closed,
    /// The server's bytes broke HTTP or WebSocket rules, or its answer was not the echo.
    Protocol,
    /// Any other I/O error.
    Io,
}

impl ErrorKind {
    /// A short name: `refused`, `tls`, `timeout`, `closed`, `protocol`, `io`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Protocol => "protocol",
            Self::Io => "io",
        }
    }
}

/// Failures counted by kind, and the first one's message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// [`ErrorKind::Refused`] count.
    pub refused: u64,
    /// [`ErrorKind::Tls`] count.
    pub tls: u64,
    /// [`ErrorKind::Timeout`] count.
    pub timeout: u64,
    /// [`ErrorKind::Closed`] count.
    pub closed: u64,
    /// [`ErrorKind::Protocol`] count.
    pub protocol: u64,
    /// [`ErrorKind::Io`] count.
    pub io: u64,
    /// The first failure's description, e.g. `connecting to 127.0.0.1:1: Connection refused`.
    pub first: Option<String>,
}

impl Errors {
    /// Counts one failure of `kind`.
    pub fn add(&mut self, kind: ErrorKind, detail: &str) {
        *self.slot(kind) += 1;
        if self.first.is_none() {
            self.first = Some(detail.to_owned());
        }
    }

    /// Failures of `kind`.
    pub fn count(&self, kind: ErrorKind) -> u64 {
        match kind {
            ErrorKind::Refused => self.refused,
            ErrorKind::Tls => self.tls,
            ErrorKind::Timeout => self.timeout,
            ErrorKind::Closed => self.closed,
            ErrorKind::Protocol => self.protocol,
            ErrorKind::Io => self.io,
        }
    }

    /// Every kind, in a fixed order.
    pub const KINDS: [ErrorKind; 6] = [
        ErrorKind::Refused,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::Protocol,
        ErrorKind::Io,
    ];

    /// All failures.
    pub fn total(&self) -> u64 {
        Self::KINDS.iter().map(|&k| self.count(k)).sum()
    }

    /// Adds `other`'s counts; keeps our first message if we have one.
    pub fn merge(&mut self, other: &Self) {
        for kind in Self::KINDS {
            *self.slot(kind) += other.count(kind);
        }
        if self.first.is_none() {
            self.first.clone_from(&other.first);
        }
    }

    fn slot(&mut self, kind: ErrorKind) -> &mut u64 {
        match kind {
            ErrorKind::Refused => &mut self.refused,
            ErrorKind::Tls => &mut self.tls,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Closed => &mut self.closed,
            ErrorKind::Protocol => &mut self.protocol,
            ErrorKind::Io => &mut self.io,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_count_and_merge() {
        let mut a = Errors::default();
        a.add(ErrorKind::Refused, "first");
        a.add(ErrorKind::Refused, "second");
        let mut b = Errors::default();
        b.add(ErrorKind::Timeout, "slow");
        a.merge(&b);
        assert_eq!((a.refused, a.timeout, a.total()), (2, 1, 3));
        assert_eq!(a.first.as_deref(), Some("first"));
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["refused"], 2);
    }
}

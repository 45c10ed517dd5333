//! What `probe` found, step by step: the value `--json` prints and the text renderer reads.

use serde::Serialize;

/// The whole probe of one URL.
#[derive(Debug, Default, Serialize)]
pub(super) struct Report {
    /// The URL as given.
    pub(super) url: String,
    /// `ok`, `failing` (reachable, but something is wrong) or `unreachable`.
    pub(super) outcome: Outcome,
    /// What went wrong, in words, when the outcome is not `ok`.
    pub(super) error: Option<String>,
    /// Name resolution.
    pub(super) dns: Option<Dns>,
    /// Each address tried, in order, until one connected.
    pub(super) tcp: Vec<TcpAttempt>,
    /// The TLS handshake (https and wss).
    pub(super) tls: Option<TlsFacts>,
    /// The HTTP response, or the answer to the upgrade request.
    pub(super) http: Option<HttpFacts>,
    /// WebSocket echo and ping (ws and wss, after a 101).
    pub(super) websocket: Option<WsFacts>,
    /// `--idle-timeout-discovery`: how long the idle connection lived.
    pub(super) idle: Option<IdleFacts>,
    /// `--raw`: every byte exchanged (plaintext inside TLS), in order.
    pub(super) raw: Option<Vec<RawChunk>>,
}

/// The verdict scripts read from the exit status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Outcome {
    /// Everything answered as it should: exit 0.
    #[default]
    Ok,
    /// The server was reached but something is wrong (certificate, HTTP error status, upgrade
    /// refused, not HTTP, garbage): exit 1.
    Failing,
    /// No connection at all (name does not resolve, port refused, connect timed out): exit 2.
    Unreachable,
}

/// Name resolution through the system resolver.
#[derive(Debug, Serialize)]
pub(super) struct Dns {
    /// The host looked up.
    pub(super) host: String,
    /// Whether the host was already an IP address (nothing was looked up).
    pub(super) literal: bool,
    /// Every address returned, in the resolver's order.
    pub(super) addresses: Vec<String>,
    /// Time the lookup took, in milliseconds.
    pub(super) ms: f64,
}

/// One TCP connect.
#[derive(Debug, Serialize)]
pub(super) struct TcpAttempt {
    /// The address dialled.
    pub(super) address: String,
    /// Milliseconds until connected or failed.
    pub(super) ms: f64,
    /// `None` when it connected; otherwise why not.
    pub(super) error: Option<String>,
}

/// What the TLS handshake negotiated and what the certificate check says.
#[derive(Debug, Default, Serialize)]
pub(super) struct TlsFacts {
    /// Milliseconds from the ClientHello to the end of the handshake.
    pub(super) handshake_ms: f64,
    /// `TLSv1.3` or `TLSv1.2` (OpenSSL's spelling), when the handshake completed.
    pub(super) version: Option<String>,
    /// IANA name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub(super) cipher: Option<String>,
    /// The ALPN protocol the server picked, if any.
    pub(super) alpn: Option<String>,
    /// Whether the server stapled an OCSP response.
    pub(super) ocsp_stapled: bool,
    /// Whether a second connection resumed the first one's TLS session; `None` when not tried.
    pub(super) resumed: Option<bool>,
    /// The SNI name sent (none for an IP address) and checked against the certificate.
    pub(super) server_name: String,
    /// The same diagnosis as `protolab certs check`.
    pub(super) certificate: Option<protolab_tls::Diagnosis>,
    /// `--insecure`: the handshake went on whatever the diagnosis says.
    pub(super) insecure: bool,
}

/// The HTTP answer.
#[derive(Debug, Default, Serialize)]
pub(super) struct HttpFacts {
    /// Milliseconds from sending the request to the end of the response head.
    pub(super) response_ms: f64,
    /// `HTTP/1.1`.
    pub(super) version: String,
    /// The status code.
    pub(super) status: u16,
    /// The reason phrase as sent.
    pub(super) reason: String,
    /// Header fields in order, values as text (invalid UTF-8 replaced).
    pub(super) headers: Vec<(String, String)>,
    /// Body bytes read (after de-chunking).
    pub(super) body_bytes: u64,
    /// For an upgrade: the subprotocol the server chose.
    pub(super) subprotocol: Option<String>,
    /// For an upgrade: the extensions the server agreed to.
    pub(super) extensions: Option<String>,
}

/// WebSocket checks after the 101.
#[derive(Debug, Default, Serialize)]
pub(super) struct WsFacts {
    /// Whether our text message came back unchanged.
    pub(super) echoed: bool,
    /// Round trip of the echo in milliseconds, when it came back.
    pub(super) echo_rtt_ms: Option<f64>,
    /// Messages that arrived which were not our echo (server pushes, greetings).
    pub(super) other_messages: u32,
    /// Round trip of a ping to its pong in milliseconds, when the pong came.
    pub(super) ping_rtt_ms: Option<f64>,
}

/// How an idle connection ended.
#[derive(Debug, Serialize)]
pub(super) struct IdleFacts {
    /// The most the probe was willing to wait, in seconds.
    pub(super) max_secs: f64,
    /// Seconds from the last byte in either direction until the connection ended (or MAX).
    pub(super) survived_secs: f64,
    /// Whether the connection was still open at MAX (then the probe closed it).
    pub(super) still_open: bool,
    /// Who ended it: `server` or `nobody` (still open).
    pub(super) closed_by: String,
    /// How, e.g. `FIN`, `RST`, `WebSocket close 1001 "going away", then FIN`,
    /// `TLS close_notify, then FIN`.
    pub(super) how: String,
    /// Messages or pings from the server while idle (each resets a proxy's idle clock).
    pub(super) server_traffic: u32,
}

/// One piece of the conversation for `--raw`.
#[derive(Debug, Serialize)]
pub(super) struct RawChunk {
    /// `sent` or `received`.
    pub(super) direction: &'static str,
    /// Milliseconds since the TCP connection opened.
    pub(super) at_ms: f64,
    /// What the probe was doing: `request head`, `WebSocket text frame (masked)`, ...
    pub(super) label: String,
    /// The bytes, as lowercase hex.
    pub(super) hex: String,
    #[serde(skip)]
    /// The bytes themselves, for the text renderer.
    pub(super) bytes: Vec<u8>,
}

/// Milliseconds of a duration, for reports.
pub(super) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

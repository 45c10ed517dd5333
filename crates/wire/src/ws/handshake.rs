//! The opening handshake (RFC 6455 §4): validating an upgrade request, computing
//! `Sec-WebSocket-Accept`, writing the 101 response, and the client side of the same.

use thiserror::Error;

use crate::http1::{RequestHead, ResponseHead};

/// A valid upgrade request's WebSocket fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key` as sent (base64 of 16 bytes).
    pub key: String,
    /// `Origin`, if the client sent one (browsers always do).
    pub origin: Option<String>,
    /// `Sec-WebSocket-Protocol` values offered, in order.
    pub protocols: Vec<String>,
    /// `Sec-WebSocket-Extensions` offers, raw, in order.
    pub extensions: Vec<String>,
}

/// Why an upgrade request or response is not a valid WebSocket handshake.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Method other than GET.
    #[error("WebSocket upgrade must use GET")]
    NotGet,
    /// HTTP/1.0.
    #[error("WebSocket upgrade needs HTTP/1.1")]
    OldHttp,
    /// No `Upgrade: websocket`.
    #[error("missing `Upgrade: websocket`")]
    NoUpgradeHeader,
    /// `Connection` lacks the `upgrade` token.
    #[error("`Connection` header lacks the `upgrade` token")]
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13; answer 426 with `Sec-WebSocket-Version: 13`.
    #[error("unsupported WebSocket version (only 13 is supported)")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing or not base64 of 16 bytes.
    #[error("missing or malformed Sec-WebSocket-Key")]
    BadKey,
    /// Client side: the server answered with a status other than 101.
    #[error("server answered {0} instead of 101 Switching Protocols")]
    NotSwitching(u16),
    /// Client side: `Sec-WebSocket-Accept` does not match our key.
    #[error("Sec-WebSocket-Accept does not match the key we sent")]
    BadAccept,
}

impl HandshakeError {
    /// The status a server answers a bad upgrade request with: 426 for a version mismatch,
    /// 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnsupportedVersion => 426,
            _ => 400,
        }
    }
}

/// Whether `head` asks for a WebSocket upgrade at all (`Upgrade: websocket`), so a server can
/// route it to [`check_request`] instead of its plain HTTP handler.
pub fn is_upgrade_request(head: &RequestHead) -> bool {
    todo!("{head:?}")
}

/// Validates an upgrade request (RFC 6455 §4.2.1) and returns its WebSocket fields.
pub fn check_request(head: &RequestHead) -> Result<Upgrade, HandshakeError> {
    todo!("{head:?}")
}

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2).
pub fn accept_key(client_key: &str) -> String {
    todo!("{client_key}")
}

/// Appends the `101 Switching Protocols` response for `key`, with the chosen subprotocol and
/// any extra header lines, to `out`.
pub fn write_response(out: &mut Vec<u8>, key: &str, protocol: Option<&str>, extra: &[(&str, &[u8])]) {
    todo!("{} {key} {protocol:?} {}", out.len(), extra.len())
}

/// The base64 `Sec-WebSocket-Key` for 16 random bytes the caller supplies.
pub fn encode_key(nonce: [u8; 16]) -> String {
    todo!("{nonce:?}")
}

/// Appends a client upgrade request for `target` on `host`, with `key`, optional `origin`,
/// offered `protocols` and extra header lines, to `out`.
pub fn write_request(
    out: &mut Vec<u8>,
    host: &str,
    target: &str,
    key: &str,
    origin: Option<&str>,
    protocols: &[&str],
    extra: &[(&str, &[u8])],
) {
    todo!("{} {host} {target} {key} {origin:?} {protocols:?} {}", out.len(), extra.len())
}

/// Validates the server's answer to our upgrade request (RFC 6455 §4.1): status 101, the
/// upgrade headers, and `Sec-WebSocket-Accept` matching `key`.
pub fn check_response(head: &ResponseHead, key: &str) -> Result<(), HandshakeError> {
    todo!("{head:?} {key}")
}

//! The opening handshake (RFC 6455 §4): validating an upgrade request, computing
//! `Sec-WebSocket-Accept`, writing the 101 response, and the client side of the same.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::http1::encode::write_field;
use crate::http1::{Headers, RequestHead, ResponseHead};

/// Appended to the client key before hashing (RFC 6455 §1.3, §4.2.2).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

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
    head.has_token("upgrade", "websocket")
}

/// Validates an upgrade request (RFC 6455 §4.2.1) and returns its WebSocket fields.
///
/// `protocols` splits every `Sec-WebSocket-Protocol` field on commas; `extensions` does the
/// same for `Sec-WebSocket-Extensions`, keeping each offer with its parameters
/// (`permessage-deflate; client_max_window_bits`), trimmed.
pub fn check_request(head: &RequestHead) -> Result<Upgrade, HandshakeError> {
    // §4.2.1 (1): "An HTTP/1.1 or higher GET request".
    if head.method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if head.version < 1 {
        return Err(HandshakeError::OldHttp);
    }
    // §4.2.1 (3), (4): Upgrade contains "websocket", Connection contains "Upgrade", both
    // compared case-insensitively.
    if !head.has_token("upgrade", "websocket") {
        return Err(HandshakeError::NoUpgradeHeader);
    }
    if !head.has_token("connection", "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    // §4.2.1 (6): version 13; §4.4 says to answer anything else with 426 and the versions we
    // speak.
    if head.header("sec-websocket-version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    // §4.2.1 (5): a base64-encoded 16-byte nonce. Two keys would leave the accept value
    // ambiguous, so they are refused too.
    let mut keys = head
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"));
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return Err(HandshakeError::BadKey);
    };
    let key = std::str::from_utf8(&key.value).map_err(|_| HandshakeError::BadKey)?;
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    Ok(Upgrade {
        key: key.to_owned(),
        origin: head.header_str("origin").map(str::to_owned),
        protocols: list(head, "sec-websocket-protocol"),
        extensions: list(head, "sec-websocket-extensions"),
    })
}

/// Whether `key` is base64 of exactly 16 bytes (24 characters with `==` padding).
fn is_valid_key(key: &str) -> bool {
    let mut nonce = [0u8; 18];
    key.len() == 24 && matches!(BASE64.decode_slice(key, &mut nonce), Ok(16))
}

/// The comma-separated elements of every `name` field, trimmed, empty ones dropped
/// (RFC 9110 §5.6.1).
fn list(head: &RequestHead, name: &str) -> Vec<String> {
    head.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2).
pub fn accept_key(client_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(client_key.as_bytes());
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

/// Appends the `101 Switching Protocols` response for `key`, with the chosen subprotocol and
/// any extra header lines, to `out`.
pub fn write_response(
    out: &mut Vec<u8>,
    key: &str,
    protocol: Option<&str>,
    extra: &[(&str, &[u8])],
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    write_field(out, "Sec-WebSocket-Accept", accept_key(key).as_bytes());
    if let Some(p) = protocol {
        write_field(out, "Sec-WebSocket-Protocol", p.as_bytes());
    }
    crate::http1::encode::write_fields(out, extra);
}

/// The base64 `Sec-WebSocket-Key` for 16 random bytes the caller supplies.
pub fn encode_key(nonce: [u8; 16]) -> String {
    BASE64.encode(nonce)
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
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_field(out, "Host", host.as_bytes());
    out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
    write_field(out, "Sec-WebSocket-Key", key.as_bytes());
    out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    if let Some(origin) = origin {
        write_field(out, "Origin", origin.as_bytes());
    }
    if !protocols.is_empty() {
        write_field(
            out,
            "Sec-WebSocket-Protocol",
            protocols.join(", ").as_bytes(),
        );
    }
    crate::http1::encode::write_fields(out, extra);
}

/// Validates the server's answer to our upgrade request (RFC 6455 §4.1): status 101, the
/// upgrade headers, and `Sec-WebSocket-Accept` matching `key`.
pub fn check_response(head: &ResponseHead, key: &str) -> Result<(), HandshakeError> {
    // §4.1, client requirements on the server's handshake, points 1-4.
    if head.status != 101 {
        return Err(HandshakeError::NotSwitching(head.status));
    }
    if !head.has_token("upgrade", "websocket") {
        return Err(HandshakeError::NoUpgradeHeader);
    }
    if !head.has_token("connection", "upgrade") {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    match head.header("sec-websocket-accept") {
        Some(v) if v == accept_key(key).as_bytes() => Ok(()),
        _ => Err(HandshakeError::BadAccept),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request, parse_response, HeadLimits};

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn req(s: &str) -> RequestHead {
        parse_request(s.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn res(b: &[u8]) -> ResponseHead {
        parse_response(b, &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    /// The RFC 6455 §1.2 sample request, with the given changes applied.
    fn sample(replace: &[(&str, &str)]) -> String {
        let mut s = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                     Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
                     Sec-WebSocket-Version: 13\r\n\r\n"
            .to_owned();
        for (from, to) in replace {
            assert!(s.contains(from), "{from}");
            s = s.replace(from, to);
        }
        s
    }

    #[test]
    fn rfc6455_accept_key() {
        assert_eq!(accept_key(KEY), ACCEPT);
    }

    #[test]
    fn rfc6455_sample_request() {
        let head = req(&sample(&[]));
        assert!(is_upgrade_request(&head));
        let up = check_request(&head).unwrap();
        assert_eq!(up.key, KEY);
        assert_eq!(up.origin.as_deref(), Some("http://example.com"));
        assert_eq!(up.protocols, ["chat", "superchat"]);
        assert!(up.extensions.is_empty());
    }

    #[test]
    fn tolerant_spellings() {
        let head = req(&sample(&[
            ("Upgrade: websocket", "upgrade: WebSocket"),
            ("Connection: Upgrade", "Connection: keep-alive, UPGRADE"),
            (
                "Sec-WebSocket-Protocol: chat, superchat",
                "Sec-WebSocket-Protocol: chat,\r\nsec-websocket-protocol: ,x",
            ),
            (
                "Origin: http://example.com\r\n",
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-foo\r\n",
            ),
        ]));
        let up = check_request(&head).unwrap();
        assert_eq!(up.protocols, ["chat", "x"]);
        assert_eq!(
            up.extensions,
            ["permessage-deflate; client_max_window_bits", "x-foo"]
        );
        assert_eq!(up.origin, None);
    }

    #[test]
    fn request_errors() {
        use HandshakeError::*;
        let cases: &[(&[(&str, &str)], HandshakeError)] = &[
            (&[("GET /chat", "POST /chat")], NotGet),
            (&[("HTTP/1.1", "HTTP/1.0")], OldHttp),
            (&[("Upgrade: websocket", "Upgrade: h2c")], NoUpgradeHeader),
            (&[("Upgrade: websocket\r\n", "")], NoUpgradeHeader),
            (
                &[("Connection: Upgrade", "Connection: keep-alive")],
                NoConnectionUpgrade,
            ),
            (
                &[("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8")],
                UnsupportedVersion,
            ),
            (&[("Sec-WebSocket-Version: 13\r\n", "")], UnsupportedVersion),
            (
                &[("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")],
                BadKey,
            ),
            (
                &[("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ")],
                BadKey,
            ),
            (
                &[("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZXg=")],
                BadKey,
            ),
            (
                &[("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!==")],
                BadKey,
            ),
            (
                &[(
                    "dGhlIHNhbXBsZSBub25jZQ==",
                    "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==",
                )],
                BadKey,
            ),
        ];
        for (changes, want) in cases {
            let head = req(&sample(changes));
            assert_eq!(check_request(&head).as_ref(), Err(want), "{changes:?}");
        }
        assert_eq!(UnsupportedVersion.status(), 426);
        assert_eq!(BadKey.status(), 400);
        assert!(!is_upgrade_request(&req(
            "GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"
        )));
    }

    #[test]
    fn response_roundtrip() {
        let mut out = Vec::new();
        write_response(&mut out, KEY, Some("chat"), &[("x-lab", b"1")]);
        assert_eq!(
            out,
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\nx-lab: 1\r\n\r\n"
            )
            .as_bytes()
        );
        let head = res(&out);
        assert_eq!(check_response(&head, KEY), Ok(()));
        assert_eq!(
            check_response(&head, "AAAAAAAAAAAAAAAAAAAAAA=="),
            Err(HandshakeError::BadAccept)
        );
    }

    #[test]
    fn response_errors() {
        let head = res(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(
            check_response(&head, KEY),
            Err(HandshakeError::NotSwitching(200))
        );
        let head = res(b"HTTP/1.1 101 X\r\nConnection: upgrade\r\n\r\n");
        assert_eq!(
            check_response(&head, KEY),
            Err(HandshakeError::NoUpgradeHeader)
        );
        let head = res(b"HTTP/1.1 101 X\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(
            check_response(&head, KEY),
            Err(HandshakeError::NoConnectionUpgrade)
        );
        let head = res(b"HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n");
        assert_eq!(check_response(&head, KEY), Err(HandshakeError::BadAccept));
    }

    #[test]
    fn client_request_roundtrip() {
        let key = encode_key(*b"the sample nonce");
        assert_eq!(key, KEY);
        let mut out = Vec::new();
        write_request(
            &mut out,
            "localhost:3002",
            "/ws",
            &key,
            Some("http://localhost"),
            &["a", "b"],
            &[("x-y", b"z")],
        );
        let head = req(std::str::from_utf8(&out).unwrap());
        assert_eq!(head.header_str("host"), Some("localhost:3002"));
        assert_eq!(head.target, "/ws");
        let up = check_request(&head).unwrap();
        assert_eq!(up.key, KEY);
        assert_eq!(up.origin.as_deref(), Some("http://localhost"));
        assert_eq!(up.protocols, ["a", "b"]);
        assert_eq!(head.header_str("x-y"), Some("z"));
        // Minimal form: no origin, no protocols.
        let mut out = Vec::new();
        write_request(&mut out, "h", "/", &key, None, &[], &[]);
        let head = req(std::str::from_utf8(&out).unwrap());
        assert!(head.header("origin").is_none() && head.header("sec-websocket-protocol").is_none());
        assert!(check_request(&head).is_ok());
    }
}

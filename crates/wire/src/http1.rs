//! HTTP/1.x message heads (RFC 9112): request and response parsing, body framing, chunked
//! decoding, head encoding, and what an intermediary forwards ([`forward`] rewrites heads,
//! [`BodyRelay`] re-frames bodies, both from the framing this side parsed).
//!
//! Parsing is strict where leniency enables request smuggling (RFC 9112 §6.3, §11.2):
//! Transfer-Encoding together with Content-Length, differing duplicate Content-Length values,
//! obs-fold, and malformed chunk sizes are errors, never guesses.

use thiserror::Error;

/// Limits applied while parsing a head. Both bound memory a peer can make us hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head in bytes, from the first byte of the start line to the end of the blank
    /// line. Default 16 KiB (nginx's `large_client_header_buffers` is 4 × 8 KiB; HAProxy's
    /// `tune.bufsize` is 16 KiB). Exceeding it yields [`HeadError::TooLarge`] (431 for requests).
    pub max_head_bytes: usize,
    /// Most header fields accepted. Default 100 (Apache's `LimitRequestFields`).
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// Why a head could not be parsed. Each variant maps to one response status via
/// [`HeadError::status`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HeadError {
    /// The head did not end within [`HeadLimits::max_head_bytes`].
    #[error("request head is larger than {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// More header fields than [`HeadLimits::max_headers`].
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The bytes are not an HTTP/1.x head (bad token, bad version, stray bytes, obs-fold ...).
    #[error("malformed head: {reason}")]
    Malformed {
        /// A short description of the first violation found.
        reason: &'static str,
    },
    /// The head is well-formed but its body framing is ambiguous or invalid (RFC 9112 §6.3).
    #[error("invalid message framing: {reason}")]
    Framing {
        /// Which rule was broken, e.g. "both Content-Length and Transfer-Encoding".
        reason: &'static str,
    },
}

impl HeadError {
    /// The HTTP status a server answers with before closing the connection.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } | Self::TooManyHeaders { .. } => 431,
            Self::Malformed { .. } | Self::Framing { .. } => 400,
        }
    }
}

/// One header field. Names keep the peer's spelling; compare them with
/// [`str::eq_ignore_ascii_case`]. Values are raw bytes (RFC 9110 §5.5 allows obs-text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Field name as sent.
    pub name: String,
    /// Field value with surrounding whitespace trimmed.
    pub value: Vec<u8>,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method token, e.g. `GET`.
    pub method: String,
    /// Request target as sent, e.g. `/api/birds?year=2020`.
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header fields in order.
    pub headers: Vec<Header>,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Status code, e.g. 101.
    pub status: u16,
    /// Reason phrase as sent (may be empty).
    pub reason: String,
    /// Header fields in order.
    pub headers: Vec<Header>,
}

/// How the body that follows a head is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes follow.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`; decode with [`ChunkedDecoder`].
    Chunked,
    /// Responses only: the body runs until the connection closes.
    UntilClose,
}

/// Finds header values by case-insensitive name.
pub trait Headers {
    /// All fields, in order.
    fn fields(&self) -> &[Header];

    /// The first value of `name`, if present.
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// The first value of `name` as UTF-8 text, if present and valid.
    fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether any `name` field contains `token` in its comma-separated list, compared
    /// case-insensitively (e.g. `Connection: keep-alive, Upgrade` has token `upgrade`).
    fn has_token(&self, name: &str, token: &str) -> bool {
        has_token(self.fields(), name, token)
    }
}

/// A header field as the framing rules read it: owned ([`Header`]) or borrowed from the
/// parser (in a [`ResponseView`]).
pub(crate) trait Field {
    /// The name as sent.
    fn name(&self) -> &str;
    /// The value without surrounding whitespace.
    fn value(&self) -> &[u8];
}

impl Field for Header {
    fn name(&self) -> &str {
        &self.name
    }

    fn value(&self) -> &[u8] {
        &self.value
    }
}

/// [`Headers::has_token`] over any kind of field.
fn has_token<F: Field>(fields: &[F], name: &str, token: &str) -> bool {
    fields
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(name))
        .any(|h| {
            h.value()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
}

impl Headers for RequestHead {
    fn fields(&self) -> &[Header] {
        &self.headers
    }
}

impl Headers for ResponseHead {
    fn fields(&self) -> &[Header] {
        &self.headers
    }
}

impl RequestHead {
    /// Body framing of this request (RFC 9112 §6.3): chunked, Content-Length, or empty.
    /// Rejects Content-Length together with Transfer-Encoding, differing or malformed
    /// Content-Length values, and any Transfer-Encoding whose final coding is not `chunked`,
    /// or any Transfer-Encoding at all in an HTTP/1.0 request (RFC 9112 §6.1).
    pub fn body_framing(&self) -> Result<BodyFraming, HeadError> {
        crate::http1::framing::request_framing(&self.headers, self.version)
    }

    /// Whether the connection stays open after this exchange: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.version == 0 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }

    /// RFC 9112 §3.2: an HTTP/1.1 request must carry exactly one Host header (HTTP/1.0 may
    /// omit it); a server answers 400 otherwise. Two Host lines are how some request
    /// smuggling and cache poisoning reaches a backend that reads the other one.
    pub fn check_host(&self) -> Result<(), HeadError> {
        let hosts = self
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("host"));
        match (hosts.count(), self.version) {
            (0, 0) | (1, _) => Ok(()),
            (0, _) => Err(HeadError::Malformed {
                reason: "HTTP/1.1 request without a Host header",
            }),
            _ => Err(HeadError::Malformed {
                reason: "more than one Host header",
            }),
        }
    }

    /// The path part of the target, without the query.
    pub fn path(&self) -> &str {
        self.path_and_query().0
    }

    /// [`path`](Self::path) and [`query`](Self::query) from one scan of the target.
    pub fn path_and_query(&self) -> (&str, Option<&str>) {
        let target = self.origin_form();
        match target.bytes().position(|b| b == b'?') {
            Some(i) => (&target[..i], Some(&target[i + 1..])),
            None => (target, None),
        }
    }

    /// The target in origin form: an absolute-form target (`http://host/echo?x`, which
    /// servers MUST accept, RFC 9112 §3.2.2) loses its scheme and authority; `*` and
    /// origin-form targets are returned as they are.
    pub fn origin_form(&self) -> &str {
        let t = self.target.as_str();
        if t.starts_with('/') {
            return t;
        }
        match self.after_scheme() {
            Some(rest) => rest.find(['/', '?']).map_or("/", |i| &rest[i..]),
            None => t,
        }
    }

    /// The authority (`host[:port]`, possibly empty) of an absolute-form target with an
    /// `http`, `https`, `ws` or `wss` scheme; `None` for any other form.
    pub fn target_authority(&self) -> Option<&str> {
        if self.target.starts_with('/') {
            return None;
        }
        let rest = self.after_scheme()?;
        Some(rest.find(['/', '?']).map_or(rest, |i| &rest[..i]))
    }

    /// What follows `scheme://` in an absolute-form target of a scheme we route.
    fn after_scheme(&self) -> Option<&str> {
        let t = self.target.as_str();
        ["http://", "https://", "ws://", "wss://"]
            .iter()
            .find_map(|scheme| {
                t.get(..scheme.len())
                    .filter(|p| p.eq_ignore_ascii_case(scheme))
                    .map(|_| &t[scheme.len()..])
            })
    }

    /// The raw query string (no leading `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query().1
    }
}

impl Default for RequestHead {
    /// An empty HTTP/1.1 head: what [`parse_request_into`] fills.
    fn default() -> Self {
        Self {
            method: String::new(),
            target: String::new(),
            version: 1,
            headers: Vec::new(),
        }
    }
}

impl ResponseHead {
    /// Body framing of this response, given the request method (a response to HEAD, and
    /// 1xx/204/304 responses, have no body; RFC 9112 §6.3).
    pub fn body_framing(&self, request_method: &str) -> Result<BodyFraming, HeadError> {
        framing::response_framing(self.status, self.version, &self.headers, request_method)
    }
}

mod chunked;
pub(crate) mod encode;
pub mod forward;
mod framing;
mod parse;
pub mod query;
mod relay;

pub use chunked::{ChunkedDecoder, ChunkedError, ChunkedEvent};
pub use encode::{reason_phrase, write_decimal, write_request_head, write_response_head};
pub use parse::{
    parse_request, parse_request_into, parse_response, parse_response_with, ResponseView,
};
pub use relay::{BodyRelay, RelayStep};

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            target: target.into(),
            version: 1,
            headers: Vec::new(),
        }
    }

    #[test]
    fn absolute_form_targets_route_like_origin_form() {
        assert_eq!(head("http://localhost:3000/echo?msg=hi").path(), "/echo");
        assert_eq!(
            head("HTTP://localhost:3000/echo?msg=hi").query(),
            Some("msg=hi")
        );
        assert_eq!(head("https://example.test").path(), "/");
        assert_eq!(head("/api/birds?year=2020").path(), "/api/birds");
        assert_eq!(head("/api/birds?year=2020").query(), Some("year=2020"));
        assert_eq!(head("*").path(), "*");
        assert_eq!(head("/http://not-absolute").path(), "/http://not-absolute");
        assert_eq!(
            head("http://localhost:3000/echo?msg=hi").target_authority(),
            Some("localhost:3000")
        );
        assert_eq!(head("WSS://h?x").target_authority(), Some("h"));
        assert_eq!(head("http://").target_authority(), Some(""));
        assert_eq!(head("/a").target_authority(), None);
        assert_eq!(head("*").target_authority(), None);
        assert_eq!(head("ftp://h/").target_authority(), None);
    }

    #[test]
    fn host_is_required_once_in_http_1_1() {
        let host = |v: &str| Header {
            name: "Host".into(),
            value: v.as_bytes().to_vec(),
        };
        let mut h = head("/");
        assert!(h.check_host().is_err(), "1.1 without Host");
        h.headers.push(host("a"));
        assert!(h.check_host().is_ok());
        h.headers.push(host("b"));
        assert_eq!(h.check_host().unwrap_err().status(), 400, "two Host lines");
        let h10 = RequestHead {
            version: 0,
            ..head("/")
        };
        assert!(h10.check_host().is_ok(), "1.0 may omit Host");
    }
}

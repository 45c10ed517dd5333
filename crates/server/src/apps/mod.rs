//! The lab's apps: what each path answers. One router per app kind; responses are built here
//! and encoded by [`Response::encode`], the one place a status becomes bytes.

use std::borrow::Cow;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use protolab_wire::http1::{self, query, Headers as _, RequestHead};

pub mod birds;
pub(crate) mod pages;

use pages::{Connection, Page};

/// Which app a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppKind {
    /// Demo page, `/echo`, `/api/birds`, `/healthz`.
    Http,
    /// Demo page and `/ws` (echo + push).
    Ws,
    /// Demo page, `/events` (SSE), `/poll`, `/poll/long`, `/echo` (see [`crate::sse`]).
    Sse,
    /// The gRPC service (served by [`crate::grpc`], never routed here).
    Grpc,
}

/// A response before encoding.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: Cow<'static, str>,
    pub(crate) body: Cow<'static, [u8]>,
    pub(crate) headers: Vec<(&'static str, Cow<'static, str>)>,
}

impl Response {
    pub(crate) fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<Cow<'static, [u8]>>,
    ) -> Self {
        Self {
            status,
            content_type: Cow::Borrowed(content_type),
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A plain-text error or notice.
    pub(crate) fn error(status: u16, message: impl Into<String>) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            message.into().into_bytes(),
        )
    }

    pub(crate) fn json(status: u16, body: String) -> Self {
        Self::new(status, "application/json", body.into_bytes())
    }

    pub(crate) fn with_header(
        mut self,
        name: &'static str,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Appends the encoded response to `out`. `head_only` leaves the body out but keeps its
    /// Content-Length, as a response to HEAD must.
    pub(crate) fn encode(&self, out: &mut Vec<u8>, keep: KeepAlive, head_only: bool) {
        // Written piece by piece rather than through a list of fields: the head of a small
        // response cost more than parsing its request when every field took four appends.
        let body = if head_only { &[][..] } else { &self.body[..] };
        out.reserve(192 + self.content_type.len() + body.len());
        if self.status == 200 {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        } else {
            out.extend_from_slice(b"HTTP/1.1 ");
            http1::write_decimal(out, self.status);
            // The second SP is there even when the reason is empty (RFC 9112 §4).
            out.push(b' ');
            out.extend_from_slice(http1::reason_phrase(self.status).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        DATE.with(|date| out.extend_from_slice(date.borrow_mut().fields()));
        field(out, "content-type", self.content_type.as_bytes());
        out.extend_from_slice(b"content-length: ");
        http1::write_decimal(out, self.body.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(b"x-content-type-options: nosniff\r\n");
        for (name, value) in &self.headers {
            field(out, name, value.as_bytes());
        }
        match keep {
            KeepAlive::Close => out.extend_from_slice(b"connection: close\r\n"),
            // HTTP/1.0 closes by default; a 1.0 client that asked to keep the connection
            // (ab -k) reuses it only if the answer says so (RFC 9112 §C.2.2).
            KeepAlive::Http10 => out.extend_from_slice(b"connection: keep-alive\r\n"),
            KeepAlive::Http11 => {}
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }
}

/// One `name: value` line. Values are ours or checked for CR and LF where they come from a
/// request (a line break would let them end the head: response splitting, RFC 9112 §11.1).
fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    debug_assert!(
        !value.iter().any(|&b| b == b'\r' || b == b'\n'),
        "CR/LF in the value of {name}"
    );
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether the connection stays open after a response, and how to say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepAlive {
    /// Close after this response (`Connection: close`).
    Close,
    /// Stay open, HTTP/1.1 default (no header needed).
    Http11,
    /// Stay open for an HTTP/1.0 client that asked with `Connection: keep-alive`.
    Http10,
}

impl KeepAlive {
    /// From whether to keep the connection and the request's minor version.
    pub(crate) fn new(keep: bool, minor_version: u8) -> Self {
        match (keep, minor_version) {
            (false, _) => Self::Close,
            (true, 0) => Self::Http10,
            (true, _) => Self::Http11,
        }
    }
}

/// The `Date` header (RFC 9110 §6.6.1) changes once a second; formatting it per response
/// would cost more than the rest of a small response, so each thread caches it, together with
/// the `server` line that follows it in every response.
struct DateCache {
    second: u64,
    fields: Vec<u8>,
}

impl DateCache {
    /// `date: …\r\nserver: protolab\r\n` for the current second.
    fn fields(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.fields.is_empty() {
            self.second = second;
            self.fields.clear();
            self.fields.extend_from_slice(b"date: ");
            self.fields
                .extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            self.fields.extend_from_slice(b"\r\nserver: protolab\r\n");
        }
        &self.fields
    }
}

thread_local! {
    static DATE: RefCell<DateCache> = const { RefCell::new(DateCache { second: 0, fields: Vec::new() }) };
}

/// Answers one request of `app`, which came on `conn`.
pub(crate) fn route(
    app: AppKind,
    head: &RequestHead,
    body: &[u8],
    conn: &Connection<'_>,
) -> Response {
    let method = head.method.as_str();
    let read_only = matches!(method, "GET" | "HEAD");
    let (path, query) = head.path_and_query();
    let query = query.unwrap_or("");
    match (app, path) {
        (_, "/healthz") if read_only => {
            Response::new(200, "text/plain; charset=utf-8", &b"ok\n"[..])
        }
        (AppKind::Http, "/") if read_only => pages::render(Page::Http, conn),
        (AppKind::Ws, "/") if read_only => pages::render(Page::Ws, conn),
        (AppKind::Sse, "/") if read_only => pages::render(Page::Sse, conn),
        (_, "/favicon.ico") if read_only => Response::new(200, "image/svg+xml", pages::FAVICON)
            .with_header("cache-control", "max-age=86400"),
        (AppKind::Http | AppKind::Sse, "/echo") => echo(head, query, body),
        (AppKind::Http, "/api/birds") if read_only => match birds::respond(query) {
            Ok(json) => Response::json(200, json),
            Err(json) => Response::json(400, json),
        },
        (AppKind::Ws, "/ws") => Response::error(
            426,
            "this endpoint speaks WebSocket: connect with ws:// or wss://\n",
        )
        .with_header("upgrade", "websocket"),
        (_, "/healthz" | "/" | "/api/birds" | "/favicon.ico") => not_allowed("GET, HEAD"),
        _ => Response::error(404, format!("no such path: {path}\n")),
    }
}

pub(crate) fn not_allowed(allow: &'static str) -> Response {
    Response::error(405, format!("method not allowed; use {allow}\n")).with_header("allow", allow)
}

/// `GET /echo?msg=…` answers the message; `POST /echo` answers the body with its content type.
fn echo(head: &RequestHead, query: &str, body: &[u8]) -> Response {
    match head.method.as_str() {
        "GET" | "HEAD" => match query::find(query, "msg") {
            Ok(Some(msg)) => Response::new(
                200,
                "text/plain; charset=utf-8",
                msg.into_owned().into_bytes(),
            ),
            Ok(None) => {
                Response::error(400, "missing query parameter `msg`: try /echo?msg=hello\n")
            }
            Err(e) => Response::error(400, format!("bad query string: {e}\n")),
        },
        "POST" => {
            let content_type = head
                .header_str("content-type")
                .filter(|ct| !ct.bytes().any(|b| b == b'\r' || b == b'\n'))
                .unwrap_or("application/octet-stream")
                .to_string();
            let mut resp = Response::new(200, "", body.to_vec());
            resp.content_type = Cow::Owned(content_type);
            resp
        }
        _ => not_allowed("GET, HEAD, POST"),
    }
}

#[cfg(test)]
mod tests {
    use protolab_wire::http1::{parse_response, BodyFraming, HeadLimits, Headers as _};

    use super::{KeepAlive, Response};

    fn encode(resp: &Response, keep: KeepAlive, head_only: bool) -> Vec<u8> {
        let mut out = b"earlier bytes stay".to_vec();
        resp.encode(&mut out, keep, head_only);
        assert!(out.starts_with(b"earlier bytes stay"));
        out.split_off(b"earlier bytes stay".len())
    }

    #[test]
    fn encoded_heads_parse_back_with_every_field() {
        let ok = Response::new(200, "text/plain; charset=utf-8", &b"hello world"[..]);
        let out = encode(&ok, KeepAlive::Http11, false);
        let (head, len) = parse_response(&out, &HeadLimits::default())
            .expect("a valid head")
            .expect("a complete head");
        assert_eq!(
            (head.version, head.status, head.reason.as_str()),
            (1, 200, "OK")
        );
        assert_eq!(head.header_str("content-length"), Some("11"));
        assert_eq!(head.header_str("server"), Some("protolab"));
        assert!(head.header_str("date").is_some_and(|d| d.ends_with(" GMT")));
        assert_eq!(head.header_str("connection"), None);
        assert_eq!(&out[len..], b"hello world");

        // HEAD: the length of the body it would have, and no body.
        let out = encode(&ok, KeepAlive::Close, true);
        let (head, len) = parse_response(&out, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.header_str("content-length"), Some("11"));
        assert_eq!(head.header_str("connection"), Some("close"));
        assert_eq!(len, out.len());

        let refused = super::not_allowed("GET, HEAD");
        let out = encode(&refused, KeepAlive::Http10, false);
        let (head, len) = parse_response(&out, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.status, head.reason.as_str()),
            (405, "Method Not Allowed")
        );
        assert_eq!(head.header_str("allow"), Some("GET, HEAD"));
        assert_eq!(head.header_str("connection"), Some("keep-alive"));
        assert_eq!(
            head.body_framing("GET"),
            Ok(BodyFraming::ContentLength((out.len() - len) as u64))
        );

        // A status without a reason phrase keeps the space before the empty reason.
        let odd = Response::error(599, "odd\n");
        assert!(encode(&odd, KeepAlive::Http11, false).starts_with(b"HTTP/1.1 599 \r\n"));
    }
}

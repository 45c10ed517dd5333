//! The lab's apps: what each path answers. One router per app kind; responses are built here
//! and encoded by [`Response::encode`], the one place a status becomes bytes.

use std::borrow::Cow;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use protolab_wire::http1::{self, query, Headers as _, RequestHead};

use crate::conn::AppKind;

pub mod birds;

const HTTP_PAGE: &str = include_str!("pages/http.html");
const WS_PAGE: &str = include_str!("pages/ws.html");

/// A response before encoding.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: Cow<'static, str>,
    pub(crate) body: Cow<'static, [u8]>,
    pub(crate) headers: Vec<(&'static str, Cow<'static, str>)>,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Self {
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

    fn html(page: &'static str) -> Self {
        Self::new(200, "text/html; charset=utf-8", page.as_bytes())
    }

    fn json(status: u16, body: String) -> Self {
        Self::new(status, "application/json", body.into_bytes())
    }

    fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Appends the encoded response to `out`. `head_only` leaves the body out but keeps its
    /// Content-Length, as a response to HEAD must.
    pub(crate) fn encode(&self, out: &mut Vec<u8>, keep: KeepAlive, head_only: bool) {
        let length = self.body.len().to_string();
        DATE.with(|date| {
            let mut date = date.borrow_mut();
            let date = date.now();
            let mut headers: Vec<(&str, &[u8])> = vec![
                ("date", date.as_bytes()),
                ("server", b"protolab"),
                ("content-type", self.content_type.as_bytes()),
                ("content-length", length.as_bytes()),
                ("x-content-type-options", b"nosniff"),
            ];
            headers.extend(self.headers.iter().map(|(n, v)| (*n, v.as_bytes())));
            match keep {
                KeepAlive::Close => headers.push(("connection", b"close")),
                // HTTP/1.0 closes by default; a 1.0 client that asked to keep the connection
                // (ab -k) reuses it only if the answer says so (RFC 9112 §C.2.2).
                KeepAlive::Http10 => headers.push(("connection", b"keep-alive")),
                KeepAlive::Http11 => {}
            }
            http1::write_response_head(out, self.status, &headers);
        });
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
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
/// would cost more than the rest of a small response, so each thread caches it.
struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}

thread_local! {
    static DATE: RefCell<DateCache> = const { RefCell::new(DateCache { second: 0, text: String::new() }) };
}

/// Answers one request of `app`.
pub(crate) fn route(app: AppKind, head: &RequestHead, body: &[u8]) -> Response {
    let method = head.method.as_str();
    let read_only = matches!(method, "GET" | "HEAD");
    match (app, head.path()) {
        (_, "/healthz") if read_only => {
            Response::new(200, "text/plain; charset=utf-8", &b"ok\n"[..])
        }
        (AppKind::Http, "/") if read_only => Response::html(HTTP_PAGE),
        (AppKind::Ws, "/") if read_only => Response::html(WS_PAGE),
        (AppKind::Http, "/echo") => echo(head, body),
        (AppKind::Http, "/api/birds") if read_only => {
            match birds::respond(head.query().unwrap_or("")) {
                Ok(json) => Response::json(200, json),
                Err(json) => Response::json(400, json),
            }
        }
        (AppKind::Ws, "/ws") => Response::error(
            426,
            "this endpoint speaks WebSocket: connect with ws:// or wss://\n",
        )
        .with_header("upgrade", "websocket"),
        (_, "/healthz" | "/" | "/api/birds") => not_allowed("GET, HEAD"),
        _ => Response::error(404, format!("no such path: {}\n", head.path())),
    }
}

fn not_allowed(allow: &'static str) -> Response {
    Response::error(405, format!("method not allowed; use {allow}\n")).with_header("allow", allow)
}

/// `GET /echo?msg=…` answers the message; `POST /echo` answers the body with its content type.
fn echo(head: &RequestHead, body: &[u8]) -> Response {
    match head.method.as_str() {
        "GET" | "HEAD" => {
            let pairs = match query::pairs(head.query().unwrap_or("")) {
                Ok(p) => p,
                Err(e) => return Response::error(400, format!("bad query string: {e}\n")),
            };
            match pairs.into_iter().find(|(k, _)| k == "msg") {
                Some((_, msg)) => Response::new(200, "text/plain; charset=utf-8", msg.into_bytes()),
                None => {
                    Response::error(400, "missing query parameter `msg`: try /echo?msg=hello\n")
                }
            }
        }
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

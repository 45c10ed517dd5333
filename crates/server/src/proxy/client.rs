//! The client side of a connection through the proxy, as every step of serving it sees it:
//! who the client is, the shutdown signals, how a request ended, the access-log line, and the
//! proxy's own error answer.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use protolab_wire::http1::{self, forward, HeadLimits, RequestHead};
use tokio::time::Instant;

use super::{write_timed, Shared};
use crate::cancel::Cancelled;
use crate::io::{linger_close, Io};

/// Who is on the client side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) tls: bool,
}

/// The shutdown signals, made once per client connection: a fresh `cancelled()` per wait would
/// register and unregister a waiter (a mutex each time) several times per request.
pub(super) struct Cancel<'a> {
    pub(super) hard: Pin<Box<Cancelled<'a>>>,
    pub(super) graceful: Pin<Box<Cancelled<'a>>>,
}

impl<'a> Cancel<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
        Self {
            hard: Box::pin(shared.hard.cancelled()),
            graceful: Box::pin(shared.graceful.cancelled()),
        }
    }
}

/// How one request ended, for the client connection's loop.
pub(super) enum Next {
    /// Keep the client connection for another request.
    KeepAlive,
    /// The connection is over (answered and closed, tunnelled, or broken).
    Close,
}

/// The head limits of the configuration, for requests and responses alike.
pub(super) fn head_limits(shared: &Shared) -> HeadLimits {
    HeadLimits {
        max_head_bytes: shared.config.max_header_bytes,
        max_headers: shared.config.max_headers,
    }
}

/// One access-log line: the request, where it went, and how it ended.
pub(super) struct Access<'a> {
    pub(super) client: Client,
    pub(super) head: &'a RequestHead,
    pub(super) backend: Option<SocketAddr>,
    pub(super) started: Instant,
}

impl Access<'_> {
    /// Emits the line at info, target `protolab::proxy::access`, unless the access log is
    /// off. `status` 0: the client went away before any answer.
    pub(super) fn log(&self, shared: &Shared, status: u16, bytes_up: u64, bytes_down: u64) {
        if !shared.config.access_log {
            return;
        }
        tracing::info!(
            target: "protolab::proxy::access",
            client = %self.client.peer,
            backend = %self.backend.map_or_else(|| "-".to_string(), |b| b.to_string()),
            method = %self.head.method,
            host = %self.host(),
            path = %self.head.path(),
            status,
            tunnel = false,
            duration_ms = self.started.elapsed().as_millis() as u64,
            bytes_up,
            bytes_down,
            "request"
        );
    }
}

impl Access<'_> {
    /// The Host the backend gets, for the log: the request's, or the backend's address for
    /// an HTTP/1.0 request without one (`-` when no backend was reached).
    pub(super) fn host(&self) -> Cow<'_, str> {
        match (forward::forwarded_host(self.head), self.backend) {
            (Some(host), _) => String::from_utf8_lossy(host),
            (None, Some(backend)) => Cow::Owned(backend.to_string()),
            (None, None) => Cow::Borrowed("-"),
        }
    }
}

/// Answers the client with the proxy's own error page and closes the connection.
pub(super) async fn refuse<S: Io>(stream: &mut S, shared: &Shared, status: u16, message: &str) {
    shared.metrics.response(status);
    let body = format!("{status} {}: {message}\n", http1::reason_phrase(status));
    let len = body.len().to_string();
    let mut out = Vec::with_capacity(body.len() + 160);
    http1::write_response_head(
        &mut out,
        status,
        &[
            ("server", b"protolab-proxy"),
            ("content-type", b"text/plain; charset=utf-8"),
            ("content-length", len.as_bytes()),
            ("connection", b"close"),
        ],
    );
    out.extend_from_slice(body.as_bytes());
    let t = shared.config.timeouts;
    if write_timed(stream, &out, t.write.min(t.client), shared)
        .await
        .is_ok()
    {
        close_gracefully(stream, shared).await;
    }
}

/// Shuts our side down and reads until the client closes, at most 2 s (lingering close,
/// RFC 9112 §9.6), so our last response is not destroyed by a RST.
pub(super) async fn close_gracefully<S: Io>(stream: &mut S, shared: &Shared) {
    linger_close(stream, Duration::from_secs(2), &shared.hard).await;
}

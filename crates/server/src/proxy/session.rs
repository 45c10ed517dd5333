//! One client connection through the proxy: read request heads strictly, one after the other,
//! hand each to [`exchange`](super::exchange), and answer what cannot be forwarded with the
//! proxy's own error page.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use protolab_wire::http1::{self, forward, HeadLimits, RequestHead};
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;

use super::exchange::exchange;
use super::relay::write_timed;
use super::upstream::Upstream;
use super::Shared;
use crate::cancel::Cancelled;
use crate::io::{linger_close, Io, LazyDeadline, READ_CHUNK};

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
    fn new(shared: &'a Shared) -> Self {
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

/// Serves requests on `stream` until the client closes, an error closes it, a tunnel ends, or
/// the proxy shuts down. `deadline` bounds the first request head (TLS handshake included).
pub(crate) async fn serve<S: Io>(
    mut stream: S,
    client: Client,
    shared: &Shared,
    deadline: Instant,
) {
    let limits = head_limits(shared);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut upstream: Option<Upstream<'_>> = None;
    let mut deadline = LazyDeadline::new(deadline);
    let mut cancel = Cancel::new(shared);
    loop {
        let head = match read_head(&mut stream, &mut buf, &limits, &mut deadline, &mut cancel).await
        {
            Ok(head) => head,
            Err(HeadFailure::Closed) => return,
            Err(HeadFailure::TimedOut { partial }) => {
                tracing::debug!(peer = %client.peer, partial, "request head did not arrive in time");
                if partial {
                    refuse(
                        &mut stream,
                        shared,
                        408,
                        "request head did not arrive in time",
                    )
                    .await;
                }
                return;
            }
            Err(HeadFailure::Bad(err)) => {
                tracing::debug!(peer = %client.peer, %err, "bad request head");
                shared.metrics.request(None);
                refuse(&mut stream, shared, err.status(), &err.to_string()).await;
                return;
            }
        };
        let next = exchange(
            &mut stream,
            &mut buf,
            head,
            client,
            shared,
            &mut upstream,
            &mut cancel,
        )
        .await;
        match next {
            Next::KeepAlive => {
                // HAProxy's `timeout http-keep-alive` falls back to `timeout client`.
                deadline.move_to(Instant::now() + shared.config.timeouts.client);
            }
            Next::Close => return,
        }
    }
}

/// The head limits of the configuration, for requests and responses alike.
pub(super) fn head_limits(shared: &Shared) -> HeadLimits {
    HeadLimits {
        max_head_bytes: shared.config.max_header_bytes,
        max_headers: shared.config.max_headers,
    }
}

enum HeadFailure {
    Closed,
    TimedOut { partial: bool },
    Bad(http1::HeadError),
}

async fn read_head<S: Io>(
    stream: &mut S,
    buf: &mut BytesMut,
    limits: &HeadLimits,
    deadline: &mut LazyDeadline,
    cancel: &mut Cancel<'_>,
) -> Result<RequestHead, HeadFailure> {
    loop {
        match http1::parse_request(buf, limits) {
            Ok(Some((head, consumed))) => {
                buf.advance(consumed);
                return Ok(head);
            }
            Ok(None) => {}
            Err(err) => return Err(HeadFailure::Bad(err)),
        }
        buf.reserve(READ_CHUNK);
        let idle = buf.is_empty();
        tokio::select! {
            biased;
            read = stream.read_buf(buf) => match read {
                Ok(0) | Err(_) => return Err(HeadFailure::Closed),
                Ok(_) => {}
            },
            () = cancel.hard.as_mut() => return Err(HeadFailure::Closed),
            () = cancel.graceful.as_mut(), if idle => return Err(HeadFailure::Closed),
            () = deadline.expired() => return Err(HeadFailure::TimedOut { partial: !idle }),
        }
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

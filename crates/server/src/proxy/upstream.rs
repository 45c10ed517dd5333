//! The backend side of a client connection: connecting to a backend the balancer picked,
//! telling whether a kept connection is still usable, and reading response heads.

use bytes::{Buf as _, BytesMut};
use protolab_wire::http1::{self, HeadLimits, ResponseHead};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::client::{Cancel, Client};
use super::pool::Lease;
use super::Shared;
use crate::io::{LazyDeadline, READ_CHUNK};

/// A backend connection and the lease that counts it against its backend.
pub(super) struct Upstream<'p> {
    pub(super) tcp: TcpStream,
    /// Bytes read from the backend and not yet relayed.
    pub(super) buf: BytesMut,
    pub(super) lease: Lease<'p>,
    /// `timeout server` for the response head, moved on per request (one timer per
    /// connection, not one per request).
    pub(super) deadline: LazyDeadline,
}

impl Upstream<'_> {
    /// Whether the connection can carry the next request: its backend is still up, it has
    /// not been closed meanwhile, and it sent nothing unasked.
    pub(super) fn reusable(&self, shared: &Shared) -> bool {
        shared.pool.is_up(self.lease.index) && self.buf.is_empty() && !is_closed(&self.tcp)
    }
}

/// Whether the backend has closed (or reset) a kept-alive connection since its last
/// response: a readable socket with nothing to read is at EOF.
fn is_closed(tcp: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    match tcp.try_read(&mut probe) {
        Ok(_) => true, // EOF, or bytes nobody asked for: either way not reusable.
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Connects to a backend chosen by the balancer, trying each up backend at most once.
/// `Err(503)` when none is up, `Err(502)` when none accepted the connection.
pub(super) async fn connect(client: Client, shared: &Shared) -> Result<Upstream<'_>, u16> {
    let mut tried = Vec::new();
    while tried.len() < shared.pool.len() {
        let Some(lease) = shared.pool.pick(client.peer.ip(), &tried) else {
            break;
        };
        tried.push(lease.index);
        let addr = lease.addr();
        let attempt =
            tokio::time::timeout(shared.config.timeouts.connect, TcpStream::connect(addr));
        let tcp = tokio::select! {
            () = shared.hard.cancelled() => return Err(502),
            r = attempt => r,
        };
        match tcp {
            Ok(Ok(mut tcp)) => {
                let _ = tcp.set_nodelay(true);
                if shared.config.proxy_protocol {
                    let mut header = Vec::with_capacity(52);
                    protolab_wire::proxy_v2::encode(&mut header, client.peer, client.local);
                    if tcp.write_all(&header).await.is_err() {
                        shared.metrics.connect_failed(lease.index);
                        continue;
                    }
                }
                return Ok(Upstream {
                    tcp,
                    buf: BytesMut::with_capacity(READ_CHUNK),
                    lease,
                    deadline: LazyDeadline::new(Instant::now() + shared.config.timeouts.server),
                });
            }
            Ok(Err(err)) => {
                shared.metrics.connect_failed(lease.index);
                tracing::debug!(backend = %addr, %err, "backend connect failed");
            }
            Err(_) => {
                shared.metrics.connect_failed(lease.index);
                tracing::debug!(backend = %addr, "backend connect timed out");
            }
        }
    }
    Err(if tried.is_empty() { 503 } else { 502 })
}

/// Why no response head came from the backend.
pub(super) enum UpstreamFailure {
    TimedOut,
    Closed,
    Bad,
}

impl UpstreamFailure {
    /// The status the client gets, and why.
    pub(super) fn status(&self) -> (u16, &'static str) {
        match self {
            Self::TimedOut => (504, "the backend did not answer in time"),
            Self::Closed => (502, "the backend closed the connection"),
            Self::Bad => (502, "the backend sent a malformed response"),
        }
    }
}

/// Reads the next response head (interim ones included) into a parsed head; returns it with
/// its length in bytes. Bytes after it stay in `up.buf`.
pub(super) async fn read_response_head(
    up: &mut Upstream<'_>,
    limits: &HeadLimits,
    cancel: &mut Cancel<'_>,
) -> Result<(ResponseHead, usize), UpstreamFailure> {
    loop {
        match http1::parse_response(&up.buf, limits) {
            Ok(Some((head, consumed))) => {
                up.buf.advance(consumed);
                return Ok((head, consumed));
            }
            Ok(None) => {}
            Err(_) => return Err(UpstreamFailure::Bad),
        }
        up.buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            read = up.tcp.read_buf(&mut up.buf) => match read {
                Ok(0) | Err(_) => return Err(UpstreamFailure::Closed),
                Ok(_) => {}
            },
            () = cancel.hard.as_mut() => return Err(UpstreamFailure::Closed),
            () = up.deadline.expired() => return Err(UpstreamFailure::TimedOut),
        }
    }
}

/// Whether `buf` starts with a complete final response head (after any interim 1xx ones),
/// or with bytes that cannot become one: either way the backend has answered.
pub(super) fn answered(buf: &[u8], limits: &HeadLimits) -> bool {
    let mut at = 0;
    loop {
        let rest = buf.get(at..).unwrap_or_default();
        match http1::parse_response_with(rest, limits, |v| v.status) {
            Ok(Some((status, len))) if (100..200).contains(&status) && status != 101 => at += len,
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) => return false,
        }
    }
}

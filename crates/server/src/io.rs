//! Bounded I/O on the streams the lab and the proxy serve: every write finishes within a
//! timeout or gives up, every close lingers within a bound, and a hard shutdown cuts both
//! short. What bounds a lab connection's waits comes from its [`ConnCtx`](crate::ctx::ConnCtx).

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use protolab_tls::stream::ReadReady;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::cancel::CancelToken;

/// A byte stream the lab serves: plain TCP or TLS over it. Readiness lets an idle connection
/// wait without a read buffer (see [`crate::lend`]).
pub(crate) trait Io: AsyncRead + AsyncWrite + ReadReady + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + ReadReady + Unpin + Send> Io for T {}

/// A stream whose plain TCP socket the WS app's event loop can take over once upgraded.
pub(crate) trait PlainTcp: Sized {
    /// Whether [`into_plain_tcp`](Self::into_plain_tcp) gives the socket (false for TLS).
    fn movable(&self) -> bool;
    /// The socket, out of tokio's reactor (`Err(self)` for TLS, which stays on its task).
    fn into_plain_tcp(self) -> Result<std::io::Result<std::net::TcpStream>, Self>;
}

/// What a stream's TLS handshake settled, for the pages that show it.
pub(crate) trait Negotiation {
    /// `None` on plain TCP.
    fn negotiated(&self) -> Option<&protolab_tls::stream::Negotiated>;
}

impl Negotiation for tokio::net::TcpStream {
    fn negotiated(&self) -> Option<&protolab_tls::stream::Negotiated> {
        None
    }
}

impl<IO> Negotiation for protolab_tls::stream::TlsStream<IO> {
    fn negotiated(&self) -> Option<&protolab_tls::stream::Negotiated> {
        Some(Self::negotiated(self))
    }
}

impl PlainTcp for tokio::net::TcpStream {
    fn movable(&self) -> bool {
        true
    }

    fn into_plain_tcp(self) -> Result<std::io::Result<std::net::TcpStream>, Self> {
        Ok(self.into_std())
    }
}

impl<IO> PlainTcp for protolab_tls::stream::TlsStream<IO> {
    fn movable(&self) -> bool {
        false
    }

    fn into_plain_tcp(self) -> Result<std::io::Result<std::net::TcpStream>, Self> {
        Err(self)
    }
}

/// Smallest free space kept in the read buffer before each read.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// A deadline that moves often but fires rarely. Keep-alive moves the idle deadline after
/// every request; resetting a timer each time would touch the timer wheel per request.
/// Instead the timer stays armed at an older, earlier instant and, when it fires early,
/// re-arms itself once for the current deadline.
pub(crate) struct LazyDeadline {
    timer: Pin<Box<tokio::time::Sleep>>,
    at: Instant,
}

impl LazyDeadline {
    pub(crate) fn new(at: Instant) -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep_until(at)),
            at,
        }
    }

    pub(crate) fn push_back(&mut self, at: Instant) {
        self.at = at;
    }

    /// Moves the deadline to `at`, earlier or later; only an earlier one touches the timer.
    pub(crate) fn move_to(&mut self, at: Instant) {
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
        self.at = at;
    }

    /// Completes once `at` has passed.
    pub(crate) async fn expired(&mut self) {
        loop {
            self.timer.as_mut().await;
            if Instant::now() >= self.at {
                return;
            }
            self.timer.as_mut().reset(self.at);
        }
    }
}

/// Closes our side, then reads and discards until the peer closes too, at most `bound` and not
/// past `hard` ("lingering close", RFC 9112 §9.6). Dropping the socket at once would answer the
/// peer's last bytes — the rest of an oversized request, a pipelined request, its TLS
/// close_notify — with a RST, and a RST can destroy our final response before it is read.
pub(crate) async fn linger_close<S: Io>(stream: &mut S, bound: Duration, hard: &CancelToken) {
    let linger = async {
        if stream.shutdown().await.is_err() {
            return;
        }
        // On the heap, and only while lingering: inline it would make every connection's
        // task 4 KiB larger for its whole life.
        let mut sink = vec![0u8; 4096];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                return;
            }
        }
    };
    tokio::select! {
        () = hard.cancelled() => {}
        _ = tokio::time::timeout(bound, linger) => {}
    }
}

/// Awaits `write` within `timeout`, giving up at once when `hard` is cancelled.
pub(crate) async fn bounded(
    write: impl std::future::Future<Output = std::io::Result<()>>,
    timeout: Duration,
    hard: &CancelToken,
) -> Result<(), ()> {
    tokio::select! {
        biased;
        r = tokio::time::timeout(timeout, write) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(()),
        },
        () = hard.cancelled() => Err(()),
    }
}

/// Writes and flushes `out` within `timeout`, and not past `hard`; flushing matters for TLS,
/// whose writer holds records until flushed.
pub(crate) async fn write_within<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    out: &[u8],
    timeout: Duration,
    hard: &CancelToken,
) -> Result<(), ()> {
    // Almost every write completes at once (the socket buffer has room): try it directly
    // before building the timeout, which reads the clock, and before touching the token.
    let mut written = 0;
    let attempt = std::future::poll_fn(|cx| {
        Poll::Ready(try_write_now(Pin::new(&mut *stream), cx, out, &mut written))
    })
    .await;
    match attempt {
        Poll::Ready(done) => done.map_err(|_| ()),
        Poll::Pending => {
            let rest = &out[written..];
            let write = async {
                stream.write_all(rest).await?;
                stream.flush().await
            };
            // Boxed: a full socket buffer is rare, and this wait's timer inline would be
            // room in every connection's state for its whole life.
            Box::pin(bounded(write, timeout, hard)).await
        }
    }
}

/// Writes what it can of `out[*written..]` and flushes, without waiting: `Ready` once all of
/// it is written and flushed (or on an error), `Pending` with `written` advanced otherwise.
fn try_write_now<S: AsyncWrite + Unpin + ?Sized>(
    mut stream: Pin<&mut S>,
    cx: &mut std::task::Context<'_>,
    out: &[u8],
    written: &mut usize,
) -> Poll<std::io::Result<()>> {
    while *written < out.len() {
        match stream.as_mut().poll_write(cx, &out[*written..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => *written += n,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => return Poll::Pending,
        }
    }
    stream.poll_flush(cx)
}

/// Runs hyper's HTTP/2 connection and stream tasks on the lab's tracker, so that shutdown
/// waits for them (the HTTP/2 and gRPC apps).
#[derive(Clone)]
pub(crate) struct TrackedExecutor(pub(crate) tokio_util::task::TaskTracker);

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

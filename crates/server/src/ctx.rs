//! What every connection of one listener shares ([`ConnCtx`]), and the writes and closes
//! bounded by its limits, for the HTTP and WebSocket paths alike.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use protolab_wire::ws::deflate;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::apps::AppKind;
use crate::budget::MessageBudget;
use crate::cancel::CancelToken;
use crate::io::{bounded, linger_close, write_within, Io};
use crate::lend::ReadBuffers;
use crate::Limits;

/// What every connection of one listener shares.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) app: AppKind,
    /// Whether the listener terminates TLS (its HTTP answers carry HSTS).
    pub(crate) tls: bool,
    pub(crate) limits: Arc<Limits>,
    pub(crate) push_interval: Duration,
    pub(crate) allowed_origins: Arc<[String]>,
    /// Shared by every listener of the lab: what WebSocket messages in progress may hold.
    pub(crate) budget: Arc<MessageBudget>,
    /// Read buffers lent to the lab's connections while they read (see [`crate::lend`]).
    pub(crate) read_buffers: Arc<ReadBuffers>,
    /// permessage-deflate terms the WS app accepts, or `None` to decline every offer.
    pub(crate) ws_deflate: Option<deflate::ServerConfig>,
    /// Cancelled when the lab begins shutting down: stop taking new work.
    pub(crate) graceful: CancelToken,
    /// Cancelled when the drain timeout runs out: drop the connection now.
    pub(crate) hard: CancelToken,
    /// The SSE and polling paths, on the listeners that serve them (the SSE and HTTPS apps).
    pub(crate) sse: Option<Arc<crate::events::Sse>>,
    /// The event loops that take plain WebSocket connections once upgraded (the WS app),
    /// unless the lab runs them as tasks.
    pub(crate) ws_loops: Option<Arc<crate::wsloop::WsLoops>>,
    /// The lab's apps that have a page, as JSON, for the pages' links
    /// ([`crate::apps::pages::apps_json`]).
    pub(crate) apps_json: Arc<str>,
}

/// Closes gracefully: [`linger_close`] within the listener's close timeout.
pub(crate) async fn close_gracefully<S: Io>(stream: &mut S, ctx: &ConnCtx) {
    linger_close(stream, ctx.limits.close_timeout, &ctx.hard).await;
}

/// Writes `first` then `second` with vectored writes (one TLS record or one `writev` for
/// both, no copy to join them) and flushes, within the write timeout.
pub(crate) async fn write_two<S: Io>(
    stream: &mut S,
    first: &[u8],
    second: &[u8],
    ctx: &ConnCtx,
) -> Result<(), ()> {
    let (mut a, mut b) = (first, second);
    // As in `write_within`: almost every write completes at once, and the bounded wait
    // (with its timer) is boxed so that it is no room in the connection's state.
    let attempt = std::future::poll_fn(|cx| {
        Poll::Ready(try_write_two_now(
            Pin::new(&mut *stream),
            cx,
            &mut a,
            &mut b,
        ))
    })
    .await;
    if let Poll::Ready(done) = attempt {
        return done.map_err(|_| ());
    }
    let write = async {
        while !a.is_empty() || !b.is_empty() {
            let n = stream
                .write_vectored(&[std::io::IoSlice::new(a), std::io::IoSlice::new(b)])
                .await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            let from_a = n.min(a.len());
            a = &a[from_a..];
            b = &b[n - from_a..];
        }
        stream.flush().await
    };
    Box::pin(bounded_write(write, ctx)).await
}

/// Writes what it can of `a` then `b` with vectored writes and flushes, without waiting:
/// `Ready` once both are written and flushed (or on an error), `Pending` with the slices
/// advanced past what was written otherwise.
fn try_write_two_now<S: AsyncWrite + Unpin + ?Sized>(
    mut stream: Pin<&mut S>,
    cx: &mut Context<'_>,
    a: &mut &[u8],
    b: &mut &[u8],
) -> Poll<std::io::Result<()>> {
    while !a.is_empty() || !b.is_empty() {
        let slices = [std::io::IoSlice::new(a), std::io::IoSlice::new(b)];
        match stream.as_mut().poll_write_vectored(cx, &slices) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                let from_a = n.min(a.len());
                *a = &a[from_a..];
                *b = &b[n - from_a..];
            }
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => return Poll::Pending,
        }
    }
    stream.poll_flush(cx)
}

/// Awaits `write` within the write timeout, giving up at once on a hard shutdown.
async fn bounded_write(
    write: impl std::future::Future<Output = std::io::Result<()>>,
    ctx: &ConnCtx,
) -> Result<(), ()> {
    bounded(write, ctx.limits.write_timeout, &ctx.hard).await
}

/// Writes and flushes `out` within the listener's write timeout ([`write_within`]).
pub(crate) async fn write_out<S: Io>(stream: &mut S, out: &[u8], ctx: &ConnCtx) -> Result<(), ()> {
    write_within(stream, out, ctx.limits.write_timeout, &ctx.hard).await
}

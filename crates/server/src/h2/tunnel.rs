//! WebSockets over HTTP/2 (RFC 8441): an extended CONNECT with `:protocol websocket` to `/ws`
//! opens a stream that carries WebSocket frames, served by the WS app's echo loop
//! ([`crate::ws::run`]) exactly as an upgraded HTTP/1.1 connection is. permessage-deflate is
//! declined here (RFC 7692 allows that always).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper::Request;
use hyper_util::rt::TokioIo;
use protolab_tls::stream::ReadReady;
use protolab_wire::http1::{Headers as _, RequestHead};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::answer::{to_hyper, Body, Shared};
use crate::apps::Response;
use crate::io::READ_CHUNK;
use crate::ws_core::Move;

/// Answers an extended CONNECT: 200 and the WS app's echo on the stream, or a refusal.
pub(super) fn open(
    mut req: Request<Incoming>,
    head: &RequestHead,
    shared: &Arc<Shared>,
) -> hyper::Response<Body> {
    let ctx = &shared.ctx;
    let protocol = req.extensions().get::<hyper::ext::Protocol>();
    match protocol.map(hyper::ext::Protocol::as_str) {
        Some(p) if p.eq_ignore_ascii_case("websocket") => {}
        Some(other) => {
            let msg = format!("this server tunnels only `:protocol websocket`, not `{other}`\n");
            return to_hyper(Response::error(501, msg), false, None);
        }
        None => {
            let msg = "CONNECT here opens WebSockets only: extended CONNECT with :protocol websocket to /ws (RFC 8441)\n";
            return to_hyper(Response::error(405, msg), false, None);
        }
    }
    if head.path() != "/ws" {
        return to_hyper(
            Response::error(404, "WebSocket endpoint is /ws\n"),
            false,
            None,
        );
    }
    if head.header_str("sec-websocket-version") != Some("13") {
        let mut resp = Response::error(426, "Sec-WebSocket-Version must be 13\n");
        resp.headers.push(("sec-websocket-version", "13".into()));
        return to_hyper(resp, false, None);
    }
    if let Some(origin) = head.header_str("origin") {
        if !crate::conn::origin_allowed(origin, head.header_str("host"), &ctx.allowed_origins) {
            crate::conn::cross_origin_refused(shared.peer, origin);
            let msg = format!(
                "cross-origin WebSocket from {origin} refused; allow it with --allow-origin {origin}\n"
            );
            return to_hyper(Response::error(403, msg), false, None);
        }
    }
    let push_interval = match crate::conn::push_interval(head, ctx.push_interval) {
        Ok(interval) => interval,
        Err(msg) => return to_hyper(Response::error(400, msg), false, None),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let conn = Arc::clone(shared);
    shared.tracker.spawn(async move {
        let stream = match upgrade.await {
            Ok(upgraded) => Tunnel::new(TokioIo::new(upgraded)),
            Err(err) => {
                tracing::debug!(peer = %conn.peer, %err, "WebSocket over HTTP/2 did not open");
                return;
            }
        };
        let ctx = &*conn.ctx;
        let setup = crate::ws::Setup {
            push_interval,
            deflate: None,
            charge: ctx.budget.account(),
        };
        let buf = ctx.read_buffers.buffer(BytesMut::new());
        // A stream of an HTTP/2 connection has no socket of its own to move: it never does.
        let _stays = crate::ws::run(stream, buf, conn.peer, ctx, setup, Move::Never).await;
    });
    let mut ok = hyper::Response::new(Body::default());
    ok.headers_mut().insert(
        "server",
        hyper::header::HeaderValue::from_static("protolab"),
    );
    ok
}

/// An HTTP/2 stream as the WebSocket's transport. A stream cannot say whether data
/// waits without reading it, so readiness reads into `held`, which the next read drains.
struct Tunnel {
    io: TokioIo<Upgraded>,
    held: BytesMut,
    eof: bool,
}

impl Tunnel {
    fn new(io: TokioIo<Upgraded>) -> Self {
        Self {
            io,
            held: BytesMut::new(),
            eof: false,
        }
    }
}

impl ReadReady for Tunnel {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.held.is_empty() || self.eof {
            return Poll::Ready(Ok(()));
        }
        self.held.reserve(READ_CHUNK);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.held) {
            Poll::Ready(Ok(0)) => {
                self.eof = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn release_idle_buffers(&mut self) {
        if self.held.is_empty() {
            self.held = BytesMut::new();
        }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.held.is_empty() {
            let n = this.held.len().min(buf.remaining());
            buf.put_slice(&this.held.split_to(n));
            return Poll::Ready(Ok(()));
        }
        if this.eof {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

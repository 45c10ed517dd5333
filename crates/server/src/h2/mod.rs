//! The HTTP/2 app: h2 over TLS (ALPN `h2`) and h2c with prior knowledge on one port, told
//! apart by the first byte (a TLS record starts 0x16, the client preface `P`). hyper's HTTP/2
//! server (on the `h2` crate) does framing, HPACK, flow control and stream limits; this
//! module adds what the lab's other apps have — the handshake deadline, the idle timeout,
//! graceful shutdown (GOAWAY, then the drain), lingering close — and a guard against control
//! frame floods ([`guard`]). Requests are answered by the HTTP app's router
//! ([`crate::apps::route`]); WebSockets over HTTP/2 (RFC 8441) by the WS app's echo loop.

mod answer;
mod guard;
mod service;
mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioIo, TokioTimer};
use protolab_wire::http2::{encode_empty_settings, encode_goaway, error_code, PREFACE};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::ctx::{close_gracefully, write_out, ConnCtx};
use crate::io::{Io, Negotiation};

/// Streams a client may reset before the server has accepted them, per connection; past it
/// `h2` answers GOAWAY(ENHANCE_YOUR_CALM). hyper's default, named here because it is the
/// first line against rapid reset (CVE-2023-44487).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// Streams the server may reset for a client's errors on one connection before it ends the
/// connection (the "MadeYouReset" shape); hyper's default.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serves one connection of the HTTP/2 app until it ends, the lab shuts down, or the
/// connection breaks a limit.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    ctx: Arc<ConnCtx>,
    tracker: TaskTracker,
) {
    let deadline = Instant::now() + ctx.limits.handshake_timeout;
    let mut first = [0u8; 1];
    let sniffed = tokio::select! {
        () = ctx.hard.cancelled() => return,
        r = tokio::time::timeout_at(deadline, tcp.peek(&mut first)) => r,
    };
    match sniffed {
        Ok(Ok(1..)) => {}
        Ok(_) => return,
        Err(_) => {
            tracing::debug!(%peer, "nothing arrived before the handshake timeout");
            return;
        }
    }
    if first[0] != TLS_HANDSHAKE {
        Box::pin(serve_h2(tcp, peer, ctx, tracker, deadline)).await;
        return;
    }
    let Some(config) = tls else {
        tracing::debug!(%peer, "TLS ClientHello on an HTTP/2 app without a certificate");
        return;
    };
    let handshake = tokio::select! {
        () = ctx.hard.cancelled() => return,
        r = tokio::time::timeout_at(deadline, protolab_tls::stream::accept(config, tcp)) => r,
    };
    match handshake {
        Ok(Ok(stream)) => Box::pin(serve_h2(stream, peer, ctx, tracker, deadline)).await,
        Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// What reading the client preface found.
enum Preface {
    Good,
    /// Bytes that are not the preface: answered with GOAWAY(PROTOCOL_ERROR).
    Bad,
    /// EOF, an error, shutdown or the deadline: nothing to answer.
    Gone,
}

/// Reads the 24-byte client preface within `deadline`, judging it as soon as a byte is off.
async fn read_preface<S: Io>(
    stream: &mut S,
    got: &mut Vec<u8>,
    ctx: &ConnCtx,
    deadline: Instant,
) -> Preface {
    let mut chunk = [0u8; PREFACE.len()];
    while got.len() < PREFACE.len() {
        let want = PREFACE.len() - got.len();
        let read = tokio::select! {
            () = ctx.hard.cancelled() => return Preface::Gone,
            r = tokio::time::timeout_at(deadline, stream.read(&mut chunk[..want])) => r,
        };
        match read {
            Ok(Ok(n @ 1..)) => got.extend_from_slice(&chunk[..n]),
            _ => return Preface::Gone,
        }
        if !PREFACE.starts_with(got) {
            return Preface::Bad;
        }
    }
    Preface::Good
}

async fn serve_h2<S: Io + Negotiation>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Arc<ConnCtx>,
    tracker: TaskTracker,
    deadline: Instant,
) {
    let tls = stream.negotiated().cloned();
    let mut preface = Vec::with_capacity(PREFACE.len());
    match read_preface(&mut stream, &mut preface, &ctx, deadline).await {
        Preface::Good => {}
        Preface::Gone => return,
        Preface::Bad => {
            tracing::debug!(%peer, "not an HTTP/2 client preface");
            let mut out = Vec::with_capacity(128);
            encode_empty_settings(&mut out);
            let debug: &[u8] = if tls.is_some() {
                b"expected the HTTP/2 client preface"
            } else {
                b"expected the HTTP/2 client preface (h2c with prior knowledge) or a TLS ClientHello"
            };
            encode_goaway(&mut out, 0, error_code::PROTOCOL_ERROR, debug);
            if write_out(&mut stream, &out, &ctx).await.is_ok() {
                close_gracefully(&mut stream, &ctx).await;
            }
            return;
        }
    }

    let limits = &ctx.limits;
    let mut builder =
        hyper::server::conn::http2::Builder::new(crate::io::TrackedExecutor(tracker.clone()));
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2.max_concurrent_streams)
        .max_frame_size(limits.h2.max_frame_size)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .initial_connection_window_size(limits.h2.connection_window)
        .initial_stream_window_size(limits.h2.stream_window)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .enable_connect_protocol();
    let activity = guard::Activity::new();
    let shared = Arc::new(answer::Shared {
        ctx: Arc::clone(&ctx),
        tls,
        peer,
        tracker,
    });
    let hard = {
        let guarded = guard::Guarded::new(
            &mut stream,
            &preface,
            limits.h2.control_frames_per_second,
            Arc::clone(&activity),
        );
        let service = hyper::service::service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move { service::handle(req, shared).await }
        });
        let conn = builder.serve_connection(TokioIo::new(guarded), service);
        tokio::pin!(conn);
        let graceful = ctx.graceful.cancelled();
        let hard = ctx.hard.cancelled();
        tokio::pin!(graceful, hard);
        let mut closing = false;
        // A GOAWAY for idleness waits on the client's PING answer before the connection ends;
        // a client that is gone never sends it, so the wait is bounded by the close timeout.
        let mut give_up_at: Option<Instant> = None;
        loop {
            let idle_at = activity.last_read() + limits.idle_timeout;
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(err) = done {
                        tracing::debug!(%peer, %err, "HTTP/2 connection ended with an error");
                    }
                    break false;
                }
                () = hard.as_mut() => break true,
                // GOAWAY(NO_ERROR): no new streams; open ones (a WebSocket closing with
                // 1001) finish within the drain.
                () = graceful.as_mut(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = tokio::time::sleep_until(idle_at), if !closing => {
                    if activity.last_read() + limits.idle_timeout <= Instant::now() {
                        tracing::debug!(%peer, "HTTP/2 connection idle; sending GOAWAY");
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        give_up_at = Some(Instant::now() + limits.close_timeout);
                    }
                }
                () = sleep_until_some(give_up_at) => break false,
            }
        }
    };
    if !hard {
        // The peer reads our last frames (a GOAWAY) before our FIN, not a RST.
        close_gracefully(&mut stream, &ctx).await;
    }
}

/// Completes at `at`, or never when there is none.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

//! One HTTP/1.1 connection: read heads and bodies within limits and timeouts, route, answer,
//! keep alive, and hand upgraded connections to the WebSocket session.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use protolab_wire::http1::{
    self, query, BodyFraming, ChunkedDecoder, ChunkedError, HeadError, HeadLimits, Headers as _,
    RequestHead,
};
use protolab_wire::ws::{deflate, handshake};
use tokio::time::Instant;

use crate::apps::{self, AppKind, KeepAlive, Response};
use crate::cancel::Cancelled;
use crate::ctx::{close_gracefully, write_out, ConnCtx};
use crate::io::{Io, LazyDeadline, Negotiation, PlainTcp, READ_CHUNK};
use crate::lend::LentBuf;
use crate::sse;

enum HeadRead {
    /// A request head is in the connection's head.
    Head,
    /// EOF or an I/O error: the peer is gone, nothing to answer.
    Closed,
    /// Shutdown while idle between requests: close politely (TLS close_notify, FIN).
    ShuttingDown,
    /// The deadline passed; `partial` if some bytes of a head had arrived.
    TimedOut {
        partial: bool,
    },
    Bad(HeadError),
}

/// Serves HTTP/1.1 requests on `stream` until the peer closes, a limit is hit, or the lab
/// shuts down. `deadline` bounds the arrival of the first request head (the handshake
/// timeout, which for TLS started before the TLS handshake).
pub(crate) async fn serve<S: Io + PlainTcp + Negotiation>(
    mut stream: S,
    peer: SocketAddr,
    ctx: &ConnCtx,
    deadline: Instant,
) {
    // The HTTP side's buffers, head and timers are dropped before the WebSocket connection
    // starts: it may last for days, and they would be held all that time.
    // Each phase is boxed: the task then holds the phase that runs, not room for the largest
    // (an async fn's state is as large as its largest await point, for its whole life).
    let requests = Box::pin(serve_requests(&mut stream, peer, ctx, deadline)).await;
    if let Some((buf, head)) = requests {
        // The upgrade's box (its head, answer and refusal paths) is freed before the
        // WebSocket starts, so an idle WebSocket's task holds only the WebSocket loop.
        let Some(setup) = Box::pin(upgrade(&mut stream, head, peer, ctx)).await else {
            return;
        };
        let loops = ctx.ws_loops.as_ref().filter(|_| stream.movable());
        let moves = loops.map_or(crate::ws_core::Move::Never, |l| l.moves());
        let moving = Box::pin(crate::ws::run(stream, buf, peer, ctx, setup, moves)).await;
        if let (Some(moving), Some(loops)) = (moving, loops) {
            if let Some(handoff) = handoff(moving, peer, ctx) {
                Box::pin(loops.serve(handoff, &ctx.graceful, &ctx.hard)).await;
            }
        }
    }
}

/// What the WS app's event loop takes of a plain WebSocket connection leaving its task: the
/// socket out of tokio's reactor and the session as the task left it. Built here rather than
/// in the boxed wait, which would keep its arguments for the connection's life.
fn handoff<S: PlainTcp>(
    moving: crate::ws::Moving<'_, S>,
    peer: SocketAddr,
    ctx: &ConnCtx,
) -> Option<crate::wsloop::Handoff> {
    let tcp = match moving.stream.into_plain_tcp() {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(err)) => {
            tracing::debug!(%peer, %err, "cannot take a WebSocket out of the runtime");
            return None;
        }
        Err(_) => {
            tracing::warn!(%peer, "a TLS WebSocket cannot move to the event loop; dropped");
            return None;
        }
    };
    Some(crate::wsloop::Handoff {
        tcp,
        peer,
        input: moving.buf.into_bytes(),
        limits: std::sync::Arc::clone(&ctx.limits),
        session: moving.session,
        charge: moving.charge.into_owned(&ctx.budget),
        read_buffers: std::sync::Arc::clone(&ctx.read_buffers),
    })
}

/// Serves requests until the connection is done (`None`) or a WebSocket upgrade to the WS
/// app's `/ws` arrived: then its head and the bytes read after it.
async fn serve_requests<'c, S: Io + Negotiation>(
    stream: &mut S,
    peer: SocketAddr,
    ctx: &'c ConnCtx,
    deadline: Instant,
) -> Option<(LentBuf<'c>, RequestHead)> {
    let head_limits = HeadLimits {
        max_head_bytes: ctx.limits.max_header_bytes,
        max_headers: ctx.limits.max_headers,
    };
    // Lent only while a request is arriving: an idle keep-alive connection holds none.
    let mut buf = ctx.read_buffers.buffer(BytesMut::new());
    let mut out = Vec::new();
    // Every request of the connection is parsed into this one head, reusing its allocations.
    let mut head = RequestHead::default();
    let mut deadline = LazyDeadline::new(deadline);
    let graceful = ctx.graceful.cancelled();
    let hard = ctx.hard.cancelled();
    tokio::pin!(graceful, hard);
    loop {
        let waits = Waits {
            deadline: &mut deadline,
            graceful: graceful.as_mut(),
            hard: hard.as_mut(),
        };
        match read_head(stream, &mut buf, &mut head, &head_limits, waits).await {
            HeadRead::Head => {}
            HeadRead::Closed => return None,
            HeadRead::ShuttingDown => {
                // A client racing a request against this close sees a clean end (close_notify
                // under TLS), which HTTP clients treat as "retry on a new connection".
                close_gracefully(stream, ctx).await;
                return None;
            }
            HeadRead::TimedOut { partial } => {
                tracing::debug!(%peer, partial, "request head did not arrive in time");
                if partial {
                    let resp = Response::error(408, "request head did not arrive in time\n");
                    refuse(stream, &mut out, ctx, "GET", resp).await;
                } else {
                    close_gracefully(stream, ctx).await;
                }
                return None;
            }
            HeadRead::Bad(err) => {
                tracing::debug!(%peer, %err, "bad request head");
                let resp = Response::error(err.status(), format!("{err}\n"));
                refuse(stream, &mut out, ctx, "GET", resp).await;
                return None;
            }
        };

        if let Err(err) = head.check_host() {
            tracing::debug!(%peer, %err, "bad Host");
            let resp = Response::error(400, format!("{err}\n"));
            refuse(stream, &mut out, ctx, &head.method, resp).await;
            return None;
        }

        if handshake::is_upgrade_request(&head) {
            if ctx.app == AppKind::Ws && head.path() == "/ws" {
                return Some((buf, head));
            } else {
                let msg = match ctx.app {
                    AppKind::Http => {
                        "this is the HTTP app; WebSockets are served on the WS app's /ws\n"
                    }
                    AppKind::Ws => "WebSocket endpoint is /ws\n",
                    AppKind::Sse => {
                        "this is the SSE app; WebSockets are served on the WS app's /ws\n"
                    }
                    AppKind::Grpc => "this is the gRPC app; it speaks HTTP/2 only\n",
                };
                refuse(
                    stream,
                    &mut out,
                    ctx,
                    &head.method,
                    Response::error(404, msg),
                )
                .await;
            }
            return None;
        }

        let body = match read_body(stream, &mut buf, &head, ctx, &mut out).await {
            Ok(body) => body,
            Err(resp) => {
                if let Some(resp) = resp {
                    refuse(stream, &mut out, ctx, &head.method, resp).await;
                }
                return None;
            }
        };

        let sse = ctx
            .sse
            .as_deref()
            .and_then(|sse| Some((sse, sse::Kind::of(&head)?)));
        let hsts_value = ctx.tls.then(|| hsts(head.header_str("host")));
        if let Some((sse, sse::Kind::Stream)) = sse {
            // The connection is the stream's from here on, however it ends.
            if let Err((status, msg)) = Box::pin(sse::stream::run(
                stream, &mut buf, &head, ctx, sse, hsts_value,
            ))
            .await
            {
                refuse(
                    stream,
                    &mut out,
                    ctx,
                    &head.method,
                    Response::error(status, msg),
                )
                .await;
            }
            return None;
        }
        let mut response = match sse {
            Some((sse, kind)) => Box::pin(sse::answer(kind, &head, &body, ctx, sse)).await,
            None => {
                let conn = apps::pages::Connection {
                    http: "HTTP/1.1",
                    tls: stream.negotiated(),
                    apps: &ctx.apps_json,
                };
                apps::route(ctx.app, &head, &body, &conn)
            }
        };
        if let Some(hsts_value) = hsts_value {
            response
                .headers
                .push(("strict-transport-security", hsts_value.into()));
        }
        let keep_alive = head.keep_alive() && !ctx.graceful.is_cancelled();
        let keep = KeepAlive::new(keep_alive, head.version);
        // With `keep` Close, `respond` has already closed gracefully.
        if respond(stream, &mut out, ctx, &head.method, response, keep)
            .await
            .is_err()
            || !keep_alive
        {
            return None;
        }
        // `move_to`, not `push_back`: an idle timeout shorter than what is left of the
        // handshake deadline must pull the timer in, or the connection outlives it.
        deadline.move_to(Instant::now() + ctx.limits.idle_timeout);
    }
}

/// What a wait for the next request head can be cut short by.
struct Waits<'a, 'd> {
    deadline: &'d mut LazyDeadline,
    graceful: Pin<&'d mut Cancelled<'a>>,
    hard: Pin<&'d mut Cancelled<'a>>,
}

async fn read_head<S: Io>(
    stream: &mut S,
    buf: &mut LentBuf<'_>,
    head: &mut RequestHead,
    limits: &HeadLimits,
    mut waits: Waits<'_, '_>,
) -> HeadRead {
    loop {
        match http1::parse_request_into(buf, limits, head) {
            Ok(Some(consumed)) => {
                buf.advance(consumed);
                return HeadRead::Head;
            }
            Ok(None) => {}
            Err(err) => return HeadRead::Bad(err),
        }
        let idle = buf.is_empty();
        buf.give_back_if_empty();
        // Read first: a pipelined or prompt request is served without polling the rest.
        tokio::select! {
            biased;
            read = buf.read_from(stream, READ_CHUNK) => match read {
                Ok(0) | Err(_) => return HeadRead::Closed,
                Ok(_) => {}
            },
            () = waits.hard.as_mut() => return HeadRead::Closed,
            // An idle keep-alive connection has nothing in flight: close it at shutdown.
            () = waits.graceful.as_mut(), if idle => return HeadRead::ShuttingDown,
            () = waits.deadline.expired() => return HeadRead::TimedOut { partial: !idle },
        }
    }
}

/// Reads the request body. `Err(Some(resp))` answers and closes; `Err(None)` just closes.
async fn read_body<S: Io>(
    stream: &mut S,
    buf: &mut LentBuf<'_>,
    head: &RequestHead,
    ctx: &ConnCtx,
    out: &mut Vec<u8>,
) -> Result<Vec<u8>, Option<Response>> {
    let limit = ctx.limits.max_body_bytes;
    let framing = head
        .body_framing()
        .map_err(|err| Some(Response::error(err.status(), format!("{err}\n"))))?;
    let too_large = || {
        Some(Response::error(
            413,
            format!("request body is larger than {limit} bytes\n"),
        ))
    };
    match framing {
        BodyFraming::Empty | BodyFraming::UntilClose => return Ok(Vec::new()),
        BodyFraming::ContentLength(len) if len > limit => return Err(too_large()),
        _ => {}
    }
    if head.has_token("expect", "100-continue") && head.version == 1 {
        // curl waits up to a second for this before sending a large body (RFC 9110 §10.1.1).
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        write_out(stream, out, ctx).await.map_err(|()| None)?;
    }
    let deadline = Instant::now() + ctx.limits.body_timeout;
    let mut body = Vec::new();
    let mut chunked = ChunkedDecoder::with_limit(limit);
    loop {
        match framing {
            BodyFraming::ContentLength(len) => {
                let len = usize::try_from(len).map_err(|_| too_large())?;
                if buf.len() >= len {
                    body.extend_from_slice(&buf[..len]);
                    buf.advance(len);
                    return Ok(body);
                }
            }
            BodyFraming::Chunked => match chunked.decode(buf, &mut body) {
                Ok(progress) => {
                    buf.advance(progress.consumed);
                    if progress.done {
                        return Ok(body);
                    }
                }
                Err(ChunkedError::TooLarge { .. }) => return Err(too_large()),
                Err(err) => return Err(Some(Response::error(400, format!("{err}\n")))),
            },
            BodyFraming::Empty | BodyFraming::UntilClose => return Ok(body),
        }
        tokio::select! {
            () = ctx.hard.cancelled() => return Err(None),
            () = tokio::time::sleep_until(deadline) => {
                return Err(Some(Response::error(408, "request body did not arrive in time\n")));
            }
            read = buf.read_from(stream, READ_CHUNK) => match read {
                Ok(0) | Err(_) => return Err(None),
                Ok(_) => {}
            },
        }
    }
}

/// Answers `resp` and closes the connection (gracefully, see [`close_gracefully`]); the
/// connection is over whether or not the answer could be written.
async fn refuse<S: Io>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &ConnCtx,
    method: &str,
    resp: Response,
) {
    let _ = respond(stream, out, ctx, method, resp, KeepAlive::Close).await;
}

/// Writes `resp`; a response to HEAD carries the headers but no body (RFC 9110 §9.3.2).
async fn respond<S: Io>(
    stream: &mut S,
    out: &mut Vec<u8>,
    ctx: &ConnCtx,
    method: &str,
    resp: Response,
    keep: KeepAlive,
) -> Result<(), ()> {
    out.clear();
    resp.encode(out, keep, method.eq_ignore_ascii_case("HEAD"));
    let written = write_out(stream, out, ctx).await;
    if keep == KeepAlive::Close && written.is_ok() {
        close_gracefully(stream, ctx).await;
    }
    written
}

/// Validates the upgrade, checks `Origin` and answers 101: then what the WebSocket loop needs,
/// or `None` when the upgrade was refused (the refusal written) or the peer left.
pub(crate) async fn upgrade<'c, S: Io>(
    stream: &mut S,
    head: RequestHead,
    peer: SocketAddr,
    ctx: &'c ConnCtx,
) -> Option<crate::ws::Setup<'c>> {
    let mut out = Vec::with_capacity(512);
    let upgrade = match handshake::check_request(&head) {
        Ok(u) => u,
        Err(err) => {
            tracing::debug!(%peer, %err, "bad WebSocket upgrade");
            let mut resp = Response::error(err.status(), format!("{err}\n"));
            if err.status() == 426 {
                resp.headers.push(("sec-websocket-version", "13".into()));
            }
            refuse(stream, &mut out, ctx, "GET", resp).await;
            return None;
        }
    };
    if let Some(origin) = &upgrade.origin {
        if !origin_allowed(origin, head.header_str("host"), &ctx.allowed_origins) {
            cross_origin_refused(peer, origin);
            let msg = format!(
                "cross-origin WebSocket upgrade from {origin} refused; allow it with --allow-origin {origin}\n"
            );
            refuse(stream, &mut out, ctx, "GET", Response::error(403, msg)).await;
            return None;
        }
    }
    let push_interval = match push_interval(&head, ctx.push_interval) {
        Ok(interval) => interval,
        Err(msg) => {
            refuse(stream, &mut out, ctx, "GET", Response::error(400, msg)).await;
            return None;
        }
    };
    // permessage-deflate when the client offers it and the lab allows it, and when the
    // message budget can hold its state; declining is always allowed (RFC 7692 §5).
    let mut charge = ctx.budget.account();
    let accepted = ctx.ws_deflate.as_ref().and_then(|config| {
        let offers = upgrade.extensions.iter().map(|e| e.as_bytes());
        let accepted = deflate::negotiate(offers, config)?;
        match charge.set(crate::ws_core::DEFLATE_STATE_BYTES) {
            Ok(()) => Some(accepted),
            Err(_) => {
                tracing::debug!(%peer, "declining permessage-deflate: message budget exhausted");
                None
            }
        }
    });
    let extensions = accepted.as_ref().map(|a| a.response.as_bytes());
    let extra: Vec<(&str, &[u8])> = extensions
        .map(|value| ("Sec-WebSocket-Extensions", value))
        .into_iter()
        .collect();
    handshake::write_response(&mut out, &upgrade.key, None, &extra);
    if write_out(stream, &out, ctx).await.is_err() {
        return None;
    }
    tracing::debug!(%peer, deflate = ?accepted.as_ref().map(|a| a.params), "WebSocket open");
    // Nothing of the handshake is needed any more; the connection may last for days.
    drop((out, head, upgrade, extra));
    Some(crate::ws::Setup {
        push_interval,
        deflate: accepted.map(|a| a.params),
        charge,
    })
}

/// Shortest push interval a client may ask for: a millisecond keeps a thousand sockets from
/// asking the server for a million pushes a second.
const MIN_PUSH_MS: u64 = 1;
/// Longest push interval a client may ask for: an hour.
const MAX_PUSH_MS: u64 = 3_600_000;

/// The session's push interval: `?push_ms=N` on the upgrade URL (so a load generator can
/// measure push delivery without changing the server's default), else the lab's.
pub(crate) fn push_interval(head: &RequestHead, default: Duration) -> Result<Duration, String> {
    let pairs =
        query::pairs(head.query().unwrap_or("")).map_err(|e| format!("bad query string: {e}\n"))?;
    let Some((_, value)) = pairs.into_iter().find(|(k, _)| k == "push_ms") else {
        return Ok(default);
    };
    match value.parse::<u64>() {
        Ok(ms) if (MIN_PUSH_MS..=MAX_PUSH_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(format!(
            "push_ms must be a whole number of milliseconds from {MIN_PUSH_MS} to {MAX_PUSH_MS}, not `{value}`\n"
        )),
    }
}

/// The `Strict-Transport-Security` value for a response to `host` (RFC 6797). HSTS holds for
/// a host name on every port (§8.3), so a year-long policy for `localhost` would send the
/// browser's later visits to the lab's plain-HTTP app (same name, other port) over TLS, where
/// nothing answers. Loopback names therefore get `max-age=0`, which also clears a policy some
/// other local server left (§6.1.1); any other name gets a year. Browsers ignore HSTS from IP
/// literals (§8.1.1).
pub(crate) fn hsts(host: Option<&str>) -> &'static str {
    match host.map(host_name) {
        Some(name) if is_loopback_name(name) => "max-age=0",
        _ => "max-age=31536000",
    }
}

/// The name part of a Host value or an origin's authority: `[::1]:3002` → `[::1]`.
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(name, _)| name)
}

fn is_loopback_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a Host name cannot be taken over by DNS rebinding: an IP literal, or `localhost`
/// and its subdomains, which browsers resolve to loopback themselves (RFC 6761 §6.3). Any other
/// name can be pointed at this machine by whoever controls its DNS.
fn is_rebinding_proof(name: &str) -> bool {
    is_loopback_name(name)
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok()
}

/// An upgrade is allowed from the page's own origin (its authority equals the Host header),
/// from a listed origin, or from anywhere if `*` is listed. Browsers always send Origin, so
/// this is what stops another site's page from using a visitor's browser as a client
/// (cross-site WebSocket hijacking); non-browser clients send none and are not affected.
///
/// "Own origin" counts only when Host names the lab by an IP address or a localhost name: a
/// DNS-rebinding page (`http://evil.example:3002`, its name re-pointed at 127.0.0.1) sends a
/// Host and an Origin that agree, so agreement alone proves nothing. Other names must be
/// listed.
/// Cross-origin upgrades refused by the whole lab, for [`cross_origin_refused`].
static CROSS_ORIGIN_REFUSALS: crate::ratelog::EverySecond = crate::ratelog::EverySecond::new();

/// Logs a refused cross-origin upgrade at the default level with what would allow it: the
/// browser only shows the page's author a failed connection. At most once a second (a page
/// that retries could fill the log), and the origin escaped (it is the peer's text).
pub(crate) fn cross_origin_refused(peer: SocketAddr, origin: &str) {
    tracing::debug!(%peer, ?origin, "refused cross-origin WebSocket upgrade");
    if let Some(refused) = CROSS_ORIGIN_REFUSALS.due() {
        let origin = origin.escape_debug();
        tracing::warn!(
            %peer,
            refused_so_far = refused,
            "refused a cross-origin WebSocket upgrade from {origin}; if that page is yours, allow it with --allow-origin {origin}"
        );
    }
}

pub(crate) fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    if host.is_some_and(|h| h.eq_ignore_ascii_case(authority) && is_rebinding_proof(host_name(h))) {
        return true;
    }
    allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn same_origin_and_listed_origins_pass_others_do_not() {
        let allowed = vec!["https://app.example".to_string()];
        assert!(origin_allowed(
            "https://localhost:3003",
            Some("localhost:3003"),
            &allowed
        ));
        assert!(origin_allowed(
            "https://app.example",
            Some("localhost:3003"),
            &allowed
        ));
        assert!(!origin_allowed(
            "https://evil.example",
            Some("localhost:3003"),
            &allowed
        ));
        assert!(!origin_allowed("https://localhost:3003", None, &allowed));
        assert!(origin_allowed(
            "https://evil.example",
            None,
            &["*".to_string()]
        ));
    }

    #[test]
    fn same_origin_counts_only_for_names_dns_rebinding_cannot_take() {
        let none: Vec<String> = Vec::new();
        for (origin, host) in [
            ("http://localhost:3002", "localhost:3002"),
            ("http://app.localhost:3002", "app.localhost:3002"),
            ("http://127.0.0.1:3002", "127.0.0.1:3002"),
            ("http://[::1]:3002", "[::1]:3002"),
            ("http://192.168.56.10:3002", "192.168.56.10:3002"),
        ] {
            assert!(origin_allowed(origin, Some(host), &none), "{origin}");
        }
        // A rebinding page: its own name, re-pointed at the lab.
        assert!(!origin_allowed(
            "http://rebind.evil.example:3002",
            Some("rebind.evil.example:3002"),
            &none
        ));
        // Listed, the same name is fine.
        assert!(origin_allowed(
            "http://lab.example:3002",
            Some("lab.example:3002"),
            &["http://lab.example:3002".to_string()]
        ));
    }

    #[test]
    fn hsts_is_a_year_except_for_loopback_names() {
        use super::hsts;
        assert_eq!(hsts(Some("localhost:3001")), "max-age=0");
        assert_eq!(hsts(Some("[::1]:3001")), "max-age=0");
        assert_eq!(hsts(Some("127.0.0.1:3001")), "max-age=0");
        assert_eq!(hsts(Some("lab.example:3001")), "max-age=31536000");
        assert_eq!(hsts(Some("lab.example")), "max-age=31536000");
        assert_eq!(hsts(None), "max-age=31536000");
    }
}

//! One client connection through the proxy: read a request head strictly, pick and connect a
//! backend, forward the head without hop-by-hop fields, stream the bodies, and turn an
//! accepted upgrade into a tunnel.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use protolab_wire::http1::{
    self, BodyFraming, ChunkedDecoder, HeadLimits, Headers as _, RequestHead, ResponseHead,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::pool::Lease;
use super::{tunnel, Shared};
use crate::cancel::Cancelled;
use crate::conn::{linger_close, Io, LazyDeadline, READ_CHUNK};
use std::pin::Pin;

/// Who is on the client side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) tls: bool,
}

/// Hop-by-hop fields (RFC 9110 §7.6.1, plus the non-standard ones proxies still see): never
/// forwarded as received. Fields named in `Connection` are dropped as well.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// A backend connection and the lease that counts it against its backend.
struct Upstream<'p> {
    tcp: TcpStream,
    buf: BytesMut,
    lease: Lease<'p>,
    /// `timeout server` for the response head, moved on per request (one timer per
    /// connection, not one per request).
    deadline: LazyDeadline,
}

/// The shutdown signals, made once per client connection: a fresh `cancelled()` per wait would
/// register and unregister a waiter (a mutex each time) several times per request.
struct Cancel<'a> {
    hard: Pin<Box<Cancelled<'a>>>,
    graceful: Pin<Box<Cancelled<'a>>>,
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
enum Next {
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
    let limits = HeadLimits {
        max_head_bytes: shared.config.max_header_bytes,
        max_headers: shared.config.max_headers,
    };
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

/// One request and its response (or its tunnel).
async fn exchange<'p, S: Io>(
    stream: &mut S,
    buf: &mut BytesMut,
    head: RequestHead,
    client: Client,
    shared: &'p Shared,
    upstream: &mut Option<Upstream<'p>>,
    cancel: &mut Cancel<'_>,
) -> Next {
    let started = Instant::now();
    // RFC 9112 §3.2 (one Host), §6.3 (CL with TE, differing CLs, bad TE): a proxy that
    // guesses here is how requests get smuggled past it to a backend that guesses otherwise.
    let framing = match head.check_host().and_then(|()| head.body_framing()) {
        Ok(f) => f,
        Err(err) => {
            shared.metrics.request(None);
            tracing::debug!(peer = %client.peer, %err, "refused request");
            refuse(stream, shared, err.status(), &err.to_string()).await;
            return Next::Close;
        }
    };
    let upgrade = head.has_token("connection", "upgrade") && head.header("upgrade").is_some();

    // A backend connection kept from the previous request is reused while its backend is up
    // and it has not been closed meanwhile; otherwise balance afresh.
    if let Some(up) = upstream.as_ref() {
        let alive = shared.pool.is_up(up.lease.index) && !is_closed(&up.tcp);
        if !alive || !up.buf.is_empty() {
            *upstream = None;
        }
    }
    if upstream.is_none() {
        match connect(client, shared).await {
            Ok(u) => *upstream = Some(u),
            Err(status) => {
                shared.metrics.request(None);
                let msg = if status == 503 {
                    "no backend is available"
                } else {
                    "could not connect to any backend"
                };
                access_log(shared, client, &head, None, status, started, 0, 0);
                refuse(stream, shared, status, msg).await;
                return Next::Close;
            }
        }
    }
    let Some(up) = upstream.as_mut() else {
        return Next::Close;
    };
    shared.metrics.request(Some(up.lease.index));
    let backend = up.lease.addr();

    // A client that sent `Expect: 100-continue` waits for the go-ahead before its body. The
    // proxy gives it (as nginx does) rather than relaying the backend's, which would need
    // reading the response while the request is still being sent.
    let expects = head.has_token("expect", "100-continue");
    let mut out = Vec::with_capacity(1024);
    forward_request_head(&mut out, &head, client, backend, framing, upgrade);
    let mut sent = out.len() as u64;
    if write_timed(&mut up.tcp, &out, shared.config.timeouts.server, shared)
        .await
        .is_err()
    {
        *upstream = None;
        access_log(shared, client, &head, Some(backend), 502, started, 0, 0);
        refuse(stream, shared, 502, "the backend closed the connection").await;
        return Next::Close;
    }
    if expects && head.version == 1 && !matches!(framing, BodyFraming::Empty) {
        let _ = write_timed(
            stream,
            b"HTTP/1.1 100 Continue\r\n\r\n",
            shared.config.timeouts.client,
            shared,
        )
        .await;
    }
    let timeouts = shared.config.timeouts;
    match relay_body(
        stream,
        buf,
        &mut up.tcp,
        framing,
        true,
        (timeouts.client, timeouts.server),
        shared,
    )
    .await
    {
        Ok(n) => sent += n,
        Err(err) => {
            *upstream = None;
            let status = match err {
                RelayError::SourceTimeout => 408,
                RelayError::Bad => 400,
                RelayError::SourceClosed => {
                    access_log(shared, client, &head, Some(backend), 0, started, sent, 0);
                    return Next::Close;
                }
                RelayError::DestinationFailed => 502,
            };
            access_log(
                shared,
                client,
                &head,
                Some(backend),
                status,
                started,
                sent,
                0,
            );
            refuse(stream, shared, status, "request body could not be relayed").await;
            return Next::Close;
        }
    }

    // The response head, skipping (and relaying) interim 1xx responses other than 101.
    let limits = HeadLimits {
        max_head_bytes: shared.config.max_header_bytes,
        max_headers: shared.config.max_headers,
    };
    let mut received = 0u64;
    // A backend may send interim responses (100, 103) before the final one; a few are normal,
    // an endless stream of them is not.
    let mut interim_left = 8u8;
    let response = loop {
        up.deadline.move_to(Instant::now() + timeouts.server);
        let read = read_response_head(&mut up.tcp, &mut up.buf, &limits, &mut up.deadline, cancel);
        match read.await {
            Ok((resp, len)) => {
                received += len as u64;
                if (100..200).contains(&resp.status) && resp.status != 101 && interim_left > 0 {
                    interim_left -= 1;
                    if head.version == 1 && resp.status != 100 {
                        let mut interim = Vec::new();
                        write_response_head(&mut interim, &resp, &[]);
                        let _ = write_timed(stream, &interim, timeouts.client, shared).await;
                    }
                    continue;
                }
                break resp;
            }
            Err(failure) => {
                *upstream = None;
                let (status, msg) = match failure {
                    UpstreamFailure::TimedOut => (504, "the backend did not answer in time"),
                    UpstreamFailure::Closed => (502, "the backend closed the connection"),
                    UpstreamFailure::Bad => (502, "the backend sent a malformed response"),
                };
                tracing::debug!(peer = %client.peer, %backend, status, "backend failure");
                access_log(
                    shared,
                    client,
                    &head,
                    Some(backend),
                    status,
                    started,
                    sent,
                    received,
                );
                refuse(stream, shared, status, msg).await;
                return Next::Close;
            }
        }
    };

    if (100..200).contains(&response.status) && response.status != 101 {
        *upstream = None;
        access_log(
            shared,
            client,
            &head,
            Some(backend),
            502,
            started,
            sent,
            received,
        );
        refuse(
            stream,
            shared,
            502,
            "the backend sent too many interim responses",
        )
        .await;
        return Next::Close;
    }
    if response.status == 101 {
        if !upgrade {
            *upstream = None;
            access_log(
                shared,
                client,
                &head,
                Some(backend),
                502,
                started,
                sent,
                received,
            );
            refuse(
                stream,
                shared,
                502,
                "the backend switched protocols unasked",
            )
            .await;
            return Next::Close;
        }
        let Some(up) = upstream.take() else {
            return Next::Close;
        };
        let mut out = Vec::with_capacity(512);
        write_response_head(
            &mut out,
            &response,
            &[
                ("connection", b"Upgrade".as_slice()),
                (
                    "upgrade",
                    response.header("upgrade").unwrap_or(b"websocket"),
                ),
            ],
        );
        if write_timed(stream, &out, timeouts.client, shared)
            .await
            .is_err()
        {
            return Next::Close;
        }
        shared.metrics.response(101);
        let websocket = head
            .header("upgrade")
            .is_some_and(|u| u.trim_ascii().eq_ignore_ascii_case(b"websocket"));
        tracing::debug!(peer = %client.peer, %backend, "tunnel open");
        let stats = tunnel::run(
            stream,
            std::mem::take(buf),
            up.tcp,
            up.buf,
            websocket,
            shared,
        )
        .await;
        drop(up.lease);
        shared
            .metrics
            .bytes(sent + stats.up, received + out.len() as u64 + stats.down);
        if !shared.config.access_log {
            return Next::Close;
        }
        tracing::info!(
            target: "protolab::proxy::access",
            client = %client.peer,
            %backend,
            method = %head.method,
            path = %head.path(),
            status = 101,
            tunnel = true,
            duration_ms = started.elapsed().as_millis() as u64,
            bytes_up = sent + stats.up,
            bytes_down = received + stats.down,
            close_code = stats.close_code,
            ended = stats.ended,
            "tunnel closed"
        );
        return Next::Close;
    }

    let Ok(resp_framing) = response.body_framing(&head.method) else {
        *upstream = None;
        access_log(
            shared,
            client,
            &head,
            Some(backend),
            502,
            started,
            sent,
            received,
        );
        refuse(
            stream,
            shared,
            502,
            "the backend sent an ambiguous response",
        )
        .await;
        return Next::Close;
    };
    // Chunked cannot go to an HTTP/1.0 client: it gets the body raw, ended by closing.
    let dechunk = resp_framing == BodyFraming::Chunked && head.version == 0;
    let client_keep = head.keep_alive()
        && !shared.graceful.is_cancelled()
        && resp_framing != BodyFraming::UntilClose
        && !dechunk;
    let backend_keep = response.version == 1
        && !response.has_token("connection", "close")
        && resp_framing != BodyFraming::UntilClose;
    let mut extra: Vec<(&str, &[u8])> = Vec::new();
    if resp_framing == BodyFraming::Chunked && !dechunk {
        extra.push(("transfer-encoding", b"chunked"));
    }
    if !client_keep {
        extra.push(("connection", b"close"));
    } else if head.version == 0 {
        extra.push(("connection", b"keep-alive"));
    }
    let mut out = Vec::with_capacity(1024);
    write_response_head(&mut out, &response, &extra);
    let mut to_client = out.len() as u64;
    let Some(up) = upstream.as_mut() else {
        return Next::Close;
    };
    // A small body that already arrived with the head goes out in the same write.
    let mut resp_framing = resp_framing;
    if let BodyFraming::ContentLength(n) = resp_framing {
        if let Ok(n) = usize::try_from(n) {
            if up.buf.len() >= n {
                out.extend_from_slice(&up.buf[..n]);
                up.buf.advance(n);
                to_client += n as u64;
                resp_framing = BodyFraming::Empty;
            }
        }
    }
    if write_timed(stream, &out, timeouts.client, shared)
        .await
        .is_err()
    {
        *upstream = None;
        return Next::Close;
    }
    shared.metrics.response(response.status);
    let Some(up) = upstream.as_mut() else {
        return Next::Close;
    };
    let relayed = relay_body(
        &mut up.tcp,
        &mut up.buf,
        stream,
        resp_framing,
        !dechunk,
        (timeouts.server, timeouts.client),
        shared,
    )
    .await;
    let ok = match relayed {
        Ok(n) => {
            to_client += n;
            true
        }
        Err(err) => {
            tracing::debug!(peer = %client.peer, %backend, ?err, "response body relay failed");
            false
        }
    };
    shared.metrics.bytes(sent, to_client);
    access_log(
        shared,
        client,
        &head,
        Some(backend),
        response.status,
        started,
        sent,
        to_client,
    );
    if !ok || !backend_keep {
        *upstream = None;
    }
    if ok && client_keep {
        Next::KeepAlive
    } else {
        if ok {
            close_gracefully(stream, shared).await;
        }
        Next::Close
    }
}

#[allow(clippy::too_many_arguments, reason = "one log line's fields")]
fn access_log(
    shared: &Shared,
    client: Client,
    head: &RequestHead,
    backend: Option<SocketAddr>,
    status: u16,
    started: Instant,
    bytes_up: u64,
    bytes_down: u64,
) {
    if !shared.config.access_log {
        return;
    }
    tracing::info!(
        target: "protolab::proxy::access",
        client = %client.peer,
        backend = %backend.map_or_else(|| "-".to_string(), |b| b.to_string()),
        method = %head.method,
        path = %head.path(),
        status,
        tunnel = false,
        duration_ms = started.elapsed().as_millis() as u64,
        bytes_up,
        bytes_down,
        "request"
    );
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
async fn connect(client: Client, shared: &Shared) -> Result<Upstream<'_>, u16> {
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

/// Appends the request head as the backend gets it: hop-by-hop fields out, forwarding
/// fields in, framing restated.
fn forward_request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    client: Client,
    backend: SocketAddr,
    framing: BodyFraming,
    upgrade: bool,
) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let named = connection_tokens(&head.headers);
    let mut xff: Option<Vec<u8>> = None;
    let mut forwarded: Option<Vec<u8>> = None;
    for h in &head.headers {
        let name = h.name.as_str();
        if is_hop_by_hop(name, &named)
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("x-forwarded-proto")
        {
            continue;
        }
        // Earlier proxies' entries are kept, in order, and ours appended (RFC 7239 §4;
        // nginx's $proxy_add_x_forwarded_for).
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            join(&mut xff, &h.value);
            continue;
        }
        if name.eq_ignore_ascii_case("forwarded") {
            join(&mut forwarded, &h.value);
            continue;
        }
        field(out, name, &h.value);
    }
    if head.header("host").is_none() {
        // An HTTP/1.0 request may lack Host; the HTTP/1.1 request we send may not.
        field(out, "host", backend.to_string().as_bytes());
    }
    let ip = client.peer.ip().to_string();
    let proto: &[u8] = if client.tls { b"https" } else { b"http" };
    join(&mut xff, ip.as_bytes());
    // RFC 7239 §6: an IPv6 address is bracketed and the value quoted; so is a host with a port.
    let node = match client.peer.ip() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let mut element = format!(
        "for={node};proto={}",
        if client.tls { "https" } else { "http" }
    );
    if let Some(host) = head.header_str("host").filter(|h| is_quotable(h)) {
        element.push_str(&format!(";host=\"{host}\""));
    }
    join(&mut forwarded, element.as_bytes());
    if let Some(v) = &xff {
        field(out, "x-forwarded-for", v);
    }
    field(out, "x-forwarded-proto", proto);
    if let Some(v) = &forwarded {
        field(out, "forwarded", v);
    }
    if framing == BodyFraming::Chunked {
        field(out, "transfer-encoding", b"chunked");
    }
    if upgrade {
        field(out, "connection", b"upgrade");
        if let Some(u) = head.header("upgrade") {
            field(out, "upgrade", u);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a response head for the client: the backend's status and reason, its fields
/// without hop-by-hop ones, then `extra`.
fn write_response_head(out: &mut Vec<u8>, resp: &ResponseHead, extra: &[(&str, &[u8])]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(resp.status.to_string().as_bytes());
    out.push(b' ');
    let reason = if resp.reason.is_empty() {
        http1::reason_phrase(resp.status)
    } else {
        resp.reason.as_str()
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let named = connection_tokens(&resp.headers);
    for h in &resp.headers {
        if !is_hop_by_hop(&h.name, &named) {
            field(out, &h.name, &h.value);
        }
    }
    for (name, value) in extra {
        field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn join(acc: &mut Option<Vec<u8>>, value: &[u8]) {
    match acc {
        Some(v) => {
            v.extend_from_slice(b", ");
            v.extend_from_slice(value);
        }
        None => *acc = Some(value.to_vec()),
    }
}

/// A Host value safe inside a quoted-string (no quote, backslash or control characters).
fn is_quotable(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Field names listed in `Connection` (lowercased): hop-by-hop by declaration.
fn connection_tokens(headers: &[http1::Header]) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .filter_map(|t| std::str::from_utf8(t.trim_ascii()).ok())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn is_hop_by_hop(name: &str, named: &[String]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
        || named.iter().any(|n| n.eq_ignore_ascii_case(name))
}

enum UpstreamFailure {
    TimedOut,
    Closed,
    Bad,
}

async fn read_response_head(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    limits: &HeadLimits,
    deadline: &mut LazyDeadline,
    cancel: &mut Cancel<'_>,
) -> Result<(ResponseHead, usize), UpstreamFailure> {
    loop {
        match http1::parse_response(buf, limits) {
            Ok(Some((head, consumed))) => {
                buf.advance(consumed);
                return Ok((head, consumed));
            }
            Ok(None) => {}
            Err(_) => return Err(UpstreamFailure::Bad),
        }
        buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            read = tcp.read_buf(buf) => match read {
                Ok(0) | Err(_) => return Err(UpstreamFailure::Closed),
                Ok(_) => {}
            },
            () = cancel.hard.as_mut() => return Err(UpstreamFailure::Closed),
            () = deadline.expired() => return Err(UpstreamFailure::TimedOut),
        }
    }
}

#[derive(Debug)]
enum RelayError {
    /// The sending side was silent longer than its timeout.
    SourceTimeout,
    /// The sending side closed or failed before the body ended.
    SourceClosed,
    /// The receiving side failed or did not take the bytes in time.
    DestinationFailed,
    /// Malformed chunked encoding.
    Bad,
}

/// Streams one body from `src` (whose already-read bytes are in `buf`) to `dst`, framed as
/// `framing`; chunked bodies are decoded and, if `rechunk`, re-encoded (extensions and
/// trailers dropped, so no odd chunk syntax reaches the other side). `timeouts` is (source
/// inactivity, destination write). Returns the bytes written to `dst`.
async fn relay_body<R: Io, W: Io>(
    src: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    framing: BodyFraming,
    rechunk: bool,
    timeouts: (Duration, Duration),
    shared: &Shared,
) -> Result<u64, RelayError> {
    let (read_timeout, write_timeout) = timeouts;
    let mut written = 0u64;
    let mut left = match framing {
        BodyFraming::Empty => return Ok(0),
        BodyFraming::ContentLength(n) => n,
        BodyFraming::Chunked | BodyFraming::UntilClose => u64::MAX,
    };
    let mut decoder = ChunkedDecoder::with_limit(u64::MAX);
    let mut decoded = Vec::new();
    let mut out = Vec::new();
    loop {
        // Forward what is buffered.
        match framing {
            BodyFraming::ContentLength(_) | BodyFraming::UntilClose => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                if n > 0 {
                    write_timed(dst, &buf[..n], write_timeout, shared)
                        .await
                        .map_err(|()| RelayError::DestinationFailed)?;
                    written += n as u64;
                    buf.advance(n);
                    if framing != BodyFraming::UntilClose {
                        left -= n as u64;
                    }
                }
                if left == 0 {
                    return Ok(written);
                }
            }
            BodyFraming::Chunked => {
                decoded.clear();
                let progress = decoder
                    .decode(buf, &mut decoded)
                    .map_err(|_| RelayError::Bad)?;
                buf.advance(progress.consumed);
                out.clear();
                if !decoded.is_empty() {
                    if rechunk {
                        out.extend_from_slice(format!("{:x}\r\n", decoded.len()).as_bytes());
                        out.extend_from_slice(&decoded);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(&decoded);
                    }
                }
                if progress.done && rechunk {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                if !out.is_empty() {
                    write_timed(dst, &out, write_timeout, shared)
                        .await
                        .map_err(|()| RelayError::DestinationFailed)?;
                    written += out.len() as u64;
                }
                if progress.done {
                    return Ok(written);
                }
            }
            BodyFraming::Empty => return Ok(written),
        }
        buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            read = src.read_buf(buf) => match read {
                Ok(0) if framing == BodyFraming::UntilClose => return Ok(written),
                Ok(0) | Err(_) => return Err(RelayError::SourceClosed),
                Ok(_) => {}
            },
            () = shared.hard.cancelled() => return Err(RelayError::SourceClosed),
            () = tokio::time::sleep(read_timeout) => return Err(RelayError::SourceTimeout),
        }
    }
}

/// Writes and flushes `bytes` within `timeout` (and before the hard shutdown).
pub(crate) async fn write_timed<W: Io>(
    dst: &mut W,
    bytes: &[u8],
    timeout: Duration,
    shared: &Shared,
) -> Result<(), ()> {
    crate::conn::write_within(dst, bytes, timeout, &shared.hard).await
}

/// Answers the client with the proxy's own error page and closes the connection.
async fn refuse<S: Io>(stream: &mut S, shared: &Shared, status: u16, message: &str) {
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
    if write_timed(stream, &out, shared.config.timeouts.client, shared)
        .await
        .is_ok()
    {
        close_gracefully(stream, shared).await;
    }
}

/// Shuts our side down and reads until the client closes, at most 2 s (lingering close,
/// RFC 9112 §9.6), so our last response is not destroyed by a RST.
async fn close_gracefully<S: Io>(stream: &mut S, shared: &Shared) {
    linger_close(stream, Duration::from_secs(2), &shared.hard).await;
}

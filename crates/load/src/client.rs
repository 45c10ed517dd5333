//! One connection of any scheme: open it (TCP, TLS, WebSocket upgrade, each timed), run echo
//! exchanges over it, close it. HTTP/1.1 and WebSocket framing come from `protolab_wire`.
//!
//! Every await is bounded by a deadline the caller passes, so a silent server costs at most
//! that long.

use std::future::{poll_fn, Future as _};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use protolab_wire::http1::{
    parse_response_with, write_request_head, BodyFraming, ChunkedDecoder, HeadError, HeadLimits,
};
use protolab_wire::ws::deflate::{Deflater, Offer, Params};
use protolab_wire::ws::{encode_close, Decoder};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::counting::{Counters, CountingStream, Snapshot};
use crate::payload::Payload;
use crate::report::ErrorKind;
use crate::target::Target;

mod grpc_push;
pub(crate) mod http2;
mod poll;
mod sse;
mod ws;

/// Anything the clients can talk over.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Why a connection stopped.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) kind: ErrorKind,
    pub(crate) detail: String,
    /// For a WebSocket protocol violation by the server: the close code it calls for.
    pub(crate) close_code: Option<u16>,
    /// What a connection that failed while opening carried on the wire: its TCP payload is
    /// in a capture, so it belongs in the run's totals too.
    pub(crate) wire: Option<Snapshot>,
}

impl Failure {
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            close_code: None,
            wire: None,
        }
    }

    fn protocol(err: &protolab_wire::ws::ProtocolError) -> Self {
        Self {
            close_code: Some(err.close_code()),
            ..Self::new(ErrorKind::Protocol, format!("WebSocket frame: {err}"))
        }
    }

    fn io(what: &str, err: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::ConnectionRefused => ErrorKind::Refused,
            K::TimedOut => ErrorKind::Timeout,
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                ErrorKind::Closed
            }
            _ => ErrorKind::Io,
        };
        Self::new(kind, format!("{what}: {err}"))
    }
}

/// Awaits `fut` until `deadline`; a timeout is a [`ErrorKind::Timeout`] failure naming `what`.
pub(crate) async fn bounded<T>(
    deadline: Instant,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout_at(deadline.into(), fut)
        .await
        .unwrap_or_else(|_| {
            Err(Failure::new(
                ErrorKind::Timeout,
                format!("timed out {what}"),
            ))
        })
}

/// What every connection of a run shares: where to go and what to send.
pub(crate) struct Plan {
    pub(crate) target: Target,
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// The message every exchange echoes.
    pub(crate) payload: Vec<u8>,
    /// HTTP: the whole request (head and body), the same for every exchange.
    pub(crate) http_request: Vec<u8>,
    /// WebSocket: extra upgrade request headers.
    pub(crate) headers: Vec<(String, String)>,
    /// WebSocket: subprotocols to offer.
    pub(crate) subprotocols: Vec<String>,
    /// WebSocket: the permessage-deflate offer, if any.
    pub(crate) deflate: Option<Offer>,
    /// HTTP/2 and gRPC: the request every exchange sends.
    pub(crate) h2: Option<http2::H2Request>,
    /// What the messages carry; [`Payload::Json`] changes every WebSocket message.
    pub(crate) payload_kind: Payload,
    /// Bound on TCP connect + TLS handshake + upgrade.
    pub(crate) connect_timeout: Duration,
    /// Bound on one exchange.
    pub(crate) request_timeout: Duration,
    /// SSE: open the keep-alive connection echoes are POSTed on beside each stream.
    pub(crate) sse_echo: bool,
    /// Plain polling: time between requests (the run's push interval).
    pub(crate) poll_interval: Duration,
}

impl Plan {
    /// The HTTP request for an echo of `payload`: `POST` to the target's path (`/echo` when
    /// the URL has none), with `headers` after our own.
    pub(crate) fn http_request(
        target: &Target,
        payload: &[u8],
        headers: &[(String, String)],
    ) -> Vec<u8> {
        let path = if target.path == "/" {
            "/echo"
        } else {
            &target.path
        };
        let authority = target.authority();
        let length = payload.len().to_string();
        let mut fields: Vec<(&str, &[u8])> = vec![
            ("Host", authority.as_bytes()),
            ("Content-Type", b"application/octet-stream"),
            ("Content-Length", length.as_bytes()),
        ];
        fields.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        let mut out = Vec::with_capacity(256 + payload.len());
        write_request_head(&mut out, "POST", path, &fields);
        out.extend_from_slice(payload);
        out
    }
}

/// How long each step of opening took, and the bytes it moved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opened {
    pub(crate) tcp: Duration,
    pub(crate) tls: Option<Duration>,
    pub(crate) upgrade: Option<Duration>,
    /// Bytes on the wire before the first message: TLS handshake and WebSocket upgrade.
    pub(crate) bytes: Counts,
    /// permessage-deflate as agreed, if the server accepted the offer.
    pub(crate) deflate: Option<Params>,
    /// The socket's TCP counters once open.
    pub(crate) tcp_counters: Option<crate::tcp_info::TcpCounters>,
}

/// A connection's byte counts at one moment, on the wire and above TLS.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    /// TCP payload: what the network carries.
    pub(crate) wire: Snapshot,
    /// Above TLS (the same as `wire` without TLS): HTTP heads and bodies, WebSocket frames.
    pub(crate) app: Snapshot,
    /// WebSocket data frames' payload bytes as framed (compressed, under permessage-deflate);
    /// counted only when deflate was agreed. `turns` is unused.
    pub(crate) frame_payload: Snapshot,
    /// Post-handshake TLS records received (TLS 1.3 session tickets, key updates), wire
    /// bytes: part of `wire.received`, and put on their own line by whoever reports.
    pub(crate) post_handshake_tls: u64,
}

impl Counts {
    /// What moved between `earlier` and `self`.
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            wire: self.wire.since(earlier.wire),
            app: self.app.since(earlier.app),
            frame_payload: self.frame_payload.since(earlier.frame_payload),
            post_handshake_tls: self
                .post_handshake_tls
                .saturating_sub(earlier.post_handshake_tls),
        }
    }

    /// The sum of two counts.
    pub(crate) fn plus(self, other: Self) -> Self {
        Self {
            wire: self.wire.plus(other.wire),
            app: self.app.plus(other.app),
            frame_payload: self.frame_payload.plus(other.frame_payload),
            post_handshake_tls: self.post_handshake_tls + other.post_handshake_tls,
        }
    }
}

/// One echo's timing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exchange {
    /// From the first byte of the request written to the first response byte read; timed on
    /// a connection's first exchange only (the clock is read once less on every other).
    pub(crate) first_byte: Option<Duration>,
    /// From the request written to the whole echo read.
    pub(crate) total: Duration,
    /// When the whole echo had been read.
    pub(crate) done: Instant,
    /// Whether the connection can carry another exchange (HTTP `Connection: close` says no).
    pub(crate) reusable: bool,
}

/// What an HTTP exchange needs of a response head.
struct Head {
    framing: Result<BodyFraming, HeadError>,
    /// The error to report when the status is not 200.
    refused: Option<String>,
    reusable: bool,
}

enum Proto {
    Http,
    Ws {
        decoder: Decoder,
        rng: Xorshift,
        /// Compresses what we send, when permessage-deflate was agreed.
        deflater: Option<Box<Deflater>>,
    },
    Sse(Box<sse::Stream>),
    /// HTTP/2 or gRPC: the connection's io belongs to h2's task.
    H2(Box<http2::H2Conn>),
    Poll(Box<poll::Poller>),
}

/// An open connection.
pub(crate) struct Conn {
    io: Box<dyn Io>,
    counters: Counters,
    /// Plaintext counts above TLS; the same counters as `counters` without TLS.
    app_counters: Counters,
    proto: Proto,
    buf: Vec<u8>,
    out: Vec<u8>,
    extras: Extras,
    /// Exchanges started on this connection.
    exchanges: u64,
    /// Bounds exchanges without a timer per exchange; see [`Conn::exchange`].
    watchdog: Option<Pin<Box<Sleep>>>,
    /// The WebSocket message of the exchange in flight, when messages change
    /// ([`Payload::Json`]); otherwise the plan's payload is sent every time.
    message: Vec<u8>,
    /// Data frames' payload bytes (see [`Counts::frame_payload`]).
    frame_payload: Snapshot,
    /// permessage-deflate as agreed in the upgrade.
    deflate: Option<Params>,
    /// Wire bytes of post-handshake TLS records received (see [`Counts::post_handshake_tls`]).
    post_handshake_tls: Arc<AtomicU64>,
    /// The socket's own and its peer's address, to look its TCP counters up by.
    tcp_addrs: Option<(SocketAddr, SocketAddr)>,
}

/// WebSocket messages a connection received besides its echoes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extras {
    /// Text messages (the lab's `{"type":"push",...}`) and pongs skipped.
    pub(crate) skipped: u64,
    /// Pings answered with a pong.
    pub(crate) pings: u64,
    /// Polling: requests sent, and those answered with no event.
    pub(crate) polls: u64,
    pub(crate) empty_polls: u64,
    /// Polling: events the lab reported dropped from its ring before they were polled.
    pub(crate) missed: u64,
}

impl Conn {
    /// Connects, does the TLS handshake and the WebSocket upgrade (or, for SSE, asks for the
    /// event stream and reads its first event), all by `deadline`.
    /// A failure carries the bytes the connection had carried by then.
    pub(crate) async fn open(plan: &Plan, deadline: Instant) -> Result<(Self, Opened), Failure> {
        let counters = Counters::new();
        Self::open_counted(plan, deadline, counters.clone())
            .await
            .map_err(|failure| Failure {
                wire: Some(counters.snapshot()),
                ..failure
            })
    }

    async fn open_counted(
        plan: &Plan,
        deadline: Instant,
        counters: Counters,
    ) -> Result<(Self, Opened), Failure> {
        let deadline = deadline.min(Instant::now() + plan.connect_timeout);
        let (mut conn, mut opened) = Self::connect_counted(plan, deadline, counters).await?;
        if plan.target.scheme.is_ws() {
            let t2 = Instant::now();
            bounded(
                deadline,
                "waiting for the WebSocket upgrade",
                conn.upgrade(plan),
            )
            .await?;
            opened.upgrade = Some(t2.elapsed());
        } else if plan.target.scheme.is_sse() {
            let t2 = Instant::now();
            bounded(
                deadline,
                "waiting for the event stream's first event",
                conn.open_stream(plan, deadline),
            )
            .await?;
            opened.upgrade = Some(t2.elapsed());
        } else if plan.target.scheme.is_poll() {
            conn.start_polling(plan);
        }
        opened.bytes = conn.counts();
        opened.deflate = conn.deflate;
        opened.tcp_counters = conn.tcp_counters();
        Ok((conn, opened))
    }

    /// Connects and does the TLS handshake, by `deadline`: an HTTP/1.1 connection.
    async fn connect(plan: &Plan, deadline: Instant) -> Result<(Self, Opened), Failure> {
        Self::connect_counted(plan, deadline, Counters::new()).await
    }

    /// [`Self::connect`] counting on `counters`.
    async fn connect_counted(
        plan: &Plan,
        deadline: Instant,
        counters: Counters,
    ) -> Result<(Self, Opened), Failure> {
        let t0 = Instant::now();
        let tcp = bounded(deadline, "connecting", async {
            TcpStream::connect(plan.addr)
                .await
                .map_err(|e| Failure::io(&format!("connecting to {}", plan.addr), &e))
        })
        .await?;
        let tcp_time = t0.elapsed();
        // Latency, not throughput: every message is one write.
        let _ = tcp.set_nodelay(true);
        let tcp_addrs = tcp.local_addr().ok().zip(tcp.peer_addr().ok());
        let post_handshake_tls = Arc::new(AtomicU64::new(0));
        let tcp = CountingStream::new(tcp, counters.clone());
        let mut app_counters = counters.clone();
        let (mut io, tls_time): (Box<dyn Io>, _) = match &plan.tls {
            None => (Box::new(tcp), None),
            Some((config, name)) => {
                let t1 = Instant::now();
                // The lab's own record layer (protolab_tls::stream): records are opened in
                // the connection's read buffer, so the client's CPU per message is not
                // inflated by copies the server does not make either.
                let mut stream = bounded(deadline, "in the TLS handshake", async {
                    protolab_tls::stream::connect(Arc::clone(config), name.clone(), tcp)
                        .await
                        .map_err(tls_failure)
                })
                .await?;
                stream.count_post_handshake_records(Arc::clone(&post_handshake_tls));
                if plan.h2.is_some() && stream.negotiated().alpn.as_deref() != Some(http2::ALPN_H2)
                {
                    return Err(Failure::new(
                        ErrorKind::Tls,
                        "the server did not agree to HTTP/2 in the TLS handshake (ALPN h2)",
                    ));
                }
                app_counters = Counters::new();
                let plaintext = CountingStream::new(stream, app_counters.clone());
                (Box::new(plaintext), Some(t1.elapsed()))
            }
        };
        let mut proto = Proto::Http;
        if let Some(request) = &plan.h2 {
            // h2's task owns the stream from here; `io` is left an empty stand-in.
            let h2 = bounded(
                deadline,
                "sending the HTTP/2 preface",
                http2::H2Conn::handshake(
                    std::mem::replace(&mut io, Box::new(tokio::io::empty())),
                    request,
                ),
            )
            .await?;
            proto = Proto::H2(Box::new(h2));
        }
        let conn = Self {
            io,
            counters,
            app_counters,
            proto,
            buf: Vec::with_capacity(plan.payload.len().max(4096) + 256),
            out: Vec::with_capacity(plan.payload.len() + 14),
            extras: Extras::default(),
            exchanges: 0,
            watchdog: None,
            message: Vec::new(),
            frame_payload: Snapshot::default(),
            deflate: None,
            post_handshake_tls,
            tcp_addrs,
        };
        let bytes = conn.counts();
        Ok((
            conn,
            Opened {
                tcp: tcp_time,
                tls: tls_time,
                upgrade: None,
                bytes,
                deflate: None,
                tcp_counters: None,
            },
        ))
    }

    /// permessage-deflate as agreed in the upgrade.
    pub(crate) fn deflate(&self) -> Option<Params> {
        self.deflate
    }

    /// Messages received besides echoes so far.
    pub(crate) fn extras(&self) -> Extras {
        self.extras
    }

    /// This connection's byte counts so far (with an SSE echo connection's).
    pub(crate) fn counts(&self) -> Counts {
        let own = Counts {
            wire: self.counters.snapshot(),
            app: self.app_counters.snapshot(),
            frame_payload: self.frame_payload,
            post_handshake_tls: self.post_handshake_tls.load(Ordering::Relaxed),
        };
        match self.side() {
            Some(side) => {
                let mut with_side = own.plus(side.counts());
                // The echo connection's TCP handshake, below its counting stream like the
                // stream's own (which the run adds once): a round trip no read shows.
                with_side.wire.turns += 1;
                with_side
            }
            None => own,
        }
    }

    /// The socket's TCP counters now (a netlink round trip: sample, do not poll).
    pub(crate) fn tcp_counters(&self) -> Option<crate::tcp_info::TcpCounters> {
        let (local, peer) = self.tcp_addrs?;
        crate::tcp_info::read(local, peer)
    }

    /// Whether the connection is over IPv6 (its headers are 20 bytes longer).
    pub(crate) fn is_ipv6(&self) -> bool {
        self.tcp_addrs.is_some_and(|(local, _)| local.is_ipv6())
    }

    /// Sends the echo message and waits for it to come back, by `deadline`; `t0` is now (the
    /// caller read the clock already), and the exchange's times count from it.
    ///
    /// The bound is a watchdog sleep kept across exchanges, not a timer per exchange (a
    /// `timeout_at` inserted into and removed from the timer wheel every time cost about
    /// 1,300 instructions per request). It is armed at the earliest deadline it has seen;
    /// when it fires before the current exchange's deadline it is moved there, so an
    /// exchange still fails at its own deadline, and the wheel is touched about once per
    /// request timeout instead of once per exchange.
    pub(crate) async fn exchange(
        &mut self,
        plan: &Plan,
        t0: Instant,
        deadline: Instant,
    ) -> Result<Exchange, Failure> {
        let mut watchdog = self
            .watchdog
            .take()
            .unwrap_or_else(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        if watchdog.deadline() > deadline.into() {
            watchdog.as_mut().reset(deadline.into());
        }
        let timed_first = self.exchanges == 0;
        self.exchanges += 1;
        let result = {
            let mut echo = pin!(async {
                match (&self.proto, &plan.h2) {
                    (Proto::H2(_), Some(request)) => {
                        self.h2_exchange(request, t0, timed_first).await
                    }
                    (Proto::Ws { .. }, _) => self.ws_exchange(plan, t0, timed_first).await,
                    (Proto::Sse(_), _) => self.sse_exchange(plan, t0, timed_first).await,
                    // Config::validate keeps polling URLs to the push workload.
                    (Proto::Poll(_), _) => Err(Failure::new(
                        ErrorKind::Protocol,
                        "polling URLs carry the push workload only (--workload push)",
                    )),
                    _ => self.http_exchange(plan, t0, timed_first).await,
                }
            });
            poll_fn(|cx| {
                if let Poll::Ready(result) = echo.as_mut().poll(cx) {
                    return Poll::Ready(result);
                }
                while watchdog.as_mut().poll(cx).is_ready() {
                    if Instant::now() >= deadline {
                        return Poll::Ready(Err(Failure::new(
                            ErrorKind::Timeout,
                            "timed out waiting for the echo",
                        )));
                    }
                    // Armed for an earlier exchange: move it to this one's deadline (later
                    // than now, so the next poll registers it rather than firing).
                    watchdog.as_mut().reset(deadline.into());
                }
                Poll::Pending
            })
            .await
        };
        self.watchdog = Some(watchdog);
        result
    }

    async fn http_exchange(
        &mut self,
        plan: &Plan,
        t0: Instant,
        timed_first: bool,
    ) -> Result<Exchange, Failure> {
        self.io
            .write_all(&plan.http_request)
            .await
            .map_err(|e| Failure::io("sending the request", &e))?;
        self.flush("sending the request").await?;
        let mut first_byte = (timed_first && !self.buf.is_empty()).then(|| t0.elapsed());
        let protocol = |what: String| Failure::new(ErrorKind::Protocol, what);
        // The head is read in place: what the exchange needs of it is taken out, nothing is
        // copied (the reason phrase only when it is reported).
        let (head, mut pos) = loop {
            let parsed = parse_response_with(&self.buf, &HeadLimits::default(), |head| Head {
                framing: head.body_framing("POST"),
                refused: (head.status != 200).then(|| {
                    format!(
                        "status {} {} (the server must echo POST bodies)",
                        head.status, head.reason
                    )
                }),
                // RFC 9112 §9.3: HTTP/1.1 persists unless `Connection: close`; 1.0 only on
                // request.
                reusable: if head.version == 0 {
                    head.has_token("connection", "keep-alive")
                } else {
                    !head.has_token("connection", "close")
                },
            })
            .map_err(|e| protocol(format!("response head: {e}")))?;
            if let Some(parsed) = parsed {
                break parsed;
            }
            self.fill("reading the response").await?;
            if timed_first {
                first_byte.get_or_insert_with(|| t0.elapsed());
            }
        };
        let framing = head
            .framing
            .map_err(|e| protocol(format!("response framing: {e}")))?;
        let mut chunked_body = Vec::new();
        let body_range = match framing {
            BodyFraming::Empty => pos..pos,
            BodyFraming::ContentLength(n) => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= plan.payload.len().max(64 * 1024))
                    .ok_or_else(|| {
                        protocol(format!("{n}-byte response to a {}-byte echo", plan.payload.len()))
                    })?;
                while self.buf.len() < pos + n {
                    self.fill("reading the response body").await?;
                }
                let range = pos..pos + n;
                pos += n;
                range
            }
            BodyFraming::Chunked => {
                let limit = plan.payload.len().max(64 * 1024) as u64;
                let mut decoder = ChunkedDecoder::with_limit(limit);
                loop {
                    let event = decoder
                        .decode(&self.buf[pos..], &mut chunked_body)
                        .map_err(|e| protocol(format!("chunked response body: {e}")))?;
                    pos += event.consumed;
                    if event.done {
                        break;
                    }
                    self.fill("reading the response body").await?;
                }
                0..0
            }
            BodyFraming::UntilClose => {
                return Err(protocol(
                    "the response has no Content-Length and is not chunked, so the connection cannot be reused"
                        .into(),
                ))
            }
        };
        if let Some(refused) = head.refused {
            return Err(protocol(refused));
        }
        let body = if matches!(framing, BodyFraming::Chunked) {
            &chunked_body[..]
        } else {
            &self.buf[body_range]
        };
        if body != plan.payload.as_slice() {
            return Err(protocol(format!(
                "the {}-byte response body is not the {}-byte message sent",
                body.len(),
                plan.payload.len()
            )));
        }
        self.buf.drain(..pos);
        let done = Instant::now();
        let total = done.saturating_duration_since(t0);
        Ok(Exchange {
            first_byte: timed_first.then(|| first_byte.unwrap_or(total)),
            total,
            done,
            reusable: head.reusable,
        })
    }

    /// Closes politely — a WebSocket close frame, TLS close_notify, FIN — then reads what the
    /// server sends back (its close frame, its close_notify) until it closes too, all by
    /// `deadline`. Reading the answer lets the server close TCP first (RFC 6455 §7.1.1) and
    /// keeps the byte counts equal to what a capture of the connection shows.
    pub(crate) async fn close(&mut self, deadline: Instant) {
        if let Proto::H2(h2) = &mut self.proto {
            h2.close(deadline).await;
            return;
        }
        self.close_side(deadline).await;
        let _ = bounded(deadline, "closing", async {
            if let Proto::Ws { rng, .. } = &mut self.proto {
                let mask = rng.mask();
                self.out.clear();
                encode_close(&mut self.out, Some(mask), 1000, "");
                self.send_out("closing").await?;
            }
            self.io
                .shutdown()
                .await
                .map_err(|e| Failure::io("closing", &e))?;
            let mut sink = [0u8; 4096];
            while self
                .io
                .read(&mut sink)
                .await
                .map_err(|e| Failure::io("closing", &e))?
                > 0
            {}
            Ok(())
        })
        .await;
    }

    async fn send_out(&mut self, what: &str) -> Result<(), Failure> {
        self.io
            .write_all(&self.out)
            .await
            .map_err(|e| Failure::io(what, &e))?;
        self.flush(what).await
    }

    async fn flush(&mut self, what: &str) -> Result<(), Failure> {
        self.io.flush().await.map_err(|e| Failure::io(what, &e))
    }

    /// Reads more into `buf`; end of stream is a [`ErrorKind::Closed`] failure.
    async fn fill(&mut self, what: &str) -> Result<(), Failure> {
        self.buf.reserve(16 * 1024);
        match self.io.read_buf(&mut self.buf).await {
            Ok(0) => Err(Failure::new(
                ErrorKind::Closed,
                format!("the server closed the connection while {what}"),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::io(what, &e)),
        }
    }
}

fn tls_failure(err: protolab_tls::stream::HandshakeError) -> Failure {
    use protolab_tls::stream::HandshakeError;
    match err {
        HandshakeError::Io(e) => Failure::io("in the TLS handshake", &e),
        HandshakeError::Eof => Failure::io(
            "in the TLS handshake",
            &std::io::Error::new(std::io::ErrorKind::UnexpectedEof, err.to_string()),
        ),
        HandshakeError::Tls(tls) => Failure::new(
            ErrorKind::Tls,
            format!(
                "TLS handshake failed: {}",
                protolab_tls::describe_handshake_error(&tls)
            ),
        ),
        other => Failure::new(ErrorKind::Tls, format!("TLS handshake failed: {other}")),
    }
}

/// A xorshift64 generator for nonces and masking keys: masks must vary per frame
/// (RFC 6455 §5.3) but need not be cryptographic for load against our own servers.
struct Xorshift(u64);

impl Xorshift {
    fn seeded(salt: &Counters) -> Self {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // The counters' address differs per connection.
        let addr = std::ptr::from_ref(salt) as usize as u64;
        Self((clock ^ addr.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.next() as u32).to_ne_bytes()
    }
}

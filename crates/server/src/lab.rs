//! The lab supervisor's server side: bind one listener per protocol, run accept loops, and
//! shut everything down in order.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::apps::AppKind;
use crate::budget::MessageBudget;
use crate::cancel::CancelToken;
use crate::conn;
use crate::ctx::ConnCtx;
use crate::events::Sse;
use crate::grpc::GrpcApp;
use crate::lend::ReadBuffers;
use crate::ws_core::Move;
use crate::wsloop::WsLoops;
use crate::{Error, Limits, Result};

/// One of the lab's protocols; each gets its own port so a capture filter isolates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 over TCP (default port 3000).
    Http,
    /// HTTP/1.1 over TLS (default port 3001).
    Https,
    /// WebSocket over TCP (default port 3002).
    Ws,
    /// WebSocket over TLS (default port 3003).
    Wss,
    /// Server-sent events, with long-polling and plain polling beside them (default port 3004).
    Sse,
    /// HTTP/2 over TLS (ALPN `h2`) and h2c with prior knowledge on one port (default 3005);
    /// WebSockets over HTTP/2 (RFC 8441) too.
    H2,
    /// gRPC over HTTP/2, cleartext (h2c) and TLS on the same port (default port 3006).
    Grpc,
}

impl Protocol {
    /// Every protocol, in port order.
    pub const ALL: [Self; 7] = [
        Self::Http,
        Self::Https,
        Self::Ws,
        Self::Wss,
        Self::Sse,
        Self::H2,
        Self::Grpc,
    ];

    /// The lab's default port for this protocol.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 3000,
            Self::Https => 3001,
            Self::Ws => 3002,
            Self::Wss => 3003,
            Self::Sse => 3004,
            Self::H2 => 3005,
            Self::Grpc => 3006,
        }
    }

    /// Whether the listener terminates TLS only (the HTTP/2 app also takes h2c beside it; gRPC
    /// serves TLS beside h2c when the lab has a certificate, see `accepts_tls`).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Https | Self::Wss | Self::H2)
    }

    /// Whether the listener accepts TLS: the TLS apps, and gRPC beside h2c.
    pub fn accepts_tls(self) -> bool {
        self.is_tls() || self == Self::Grpc
    }

    /// The lowercase name, which is also the URL scheme (except for `sse`, served over `http`;
    /// gRPC has none).
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Ws => "ws",
            Self::Wss => "wss",
            Self::Sse => "sse",
            Self::H2 => "h2",
            Self::Grpc => "grpc",
        }
    }

    /// Parses a name as given on the command line (`ws`, `WSS` ...).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    fn app(self) -> AppKind {
        match self {
            Self::Http | Self::Https | Self::H2 => AppKind::Http,
            Self::Ws | Self::Wss => AppKind::Ws,
            Self::Sse => AppKind::Sse,
            Self::Grpc => AppKind::Grpc,
        }
    }

    /// Whether the listener serves the SSE and polling paths (`/events`, `/poll` ...).
    fn serves_sse(self) -> bool {
        matches!(self, Self::Sse | Self::Https)
    }

    /// Scheme of the page a browser opens for this app (`http` for ws, `https` for wss).
    fn page_scheme(self) -> &'static str {
        if self.is_tls() {
            "https"
        } else {
            "http"
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Address every listener binds. Default 127.0.0.1: the lab is for this machine unless
    /// the user says otherwise. With 127.0.0.1 each app also listens on ::1 (same port), where
    /// browsers try `localhost` first.
    pub bind: IpAddr,
    /// Protocols to serve and their ports; port 0 picks a free one (tests do that).
    pub apps: Vec<(Protocol, u16)>,
    /// Interval between server-pushed WebSocket messages. Default 5 s.
    pub push_interval: Duration,
    /// Interval between the SSE feed's push events, when it should differ from
    /// `push_interval` (`compare` pushes SSE events as often as its WebSocket clients ask
    /// for pushes, without making the WS app push to every echo connection). Default `None`:
    /// `push_interval`.
    pub event_interval: Option<Duration>,
    /// Extra `Origin`s allowed to open WebSockets besides same-origin pages and the lab's own
    /// pages. `*` allows any origin (not recommended outside a lab).
    pub allowed_origins: Vec<String>,
    /// Limits applied to every listener.
    pub limits: Limits,
    /// permessage-deflate (RFC 7692) terms the WS apps accept when a client offers it, as
    /// browsers do; `None` declines every offer. Default: the extension's defaults (15-bit
    /// windows, context takeover). Each connection that agrees to it holds about 320 KiB of
    /// compressor state, charged to [`Limits::max_buffered_bytes`]; when the budget cannot
    /// take it the offer is declined.
    pub ws_deflate: Option<protolab_wire::ws::deflate::ServerConfig>,
    /// Server TLS configuration; required when any TLS protocol is in `apps`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How the WS app runs its (plain) WebSocket connections once upgraded. Default:
    /// [`WsRuntime::Adaptive`].
    pub ws_runtime: WsRuntime,
    /// Event loop threads (named [`WS_LOOP_THREADS`](crate::WS_LOOP_THREADS)`-N`) for
    /// [`WsRuntime::Adaptive`] and [`WsRuntime::EventLoop`].
    /// Default `None`: one per CPU this process may run on.
    pub ws_loop_threads: Option<usize>,
}

/// How the WS app runs plain WebSocket connections once upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WsRuntime {
    /// A task per connection first; the event loop once the connection has exchanged 32
    /// messages or been open a second, whichever comes first. The move costs a short-lived
    /// connection (upgrade, one echo, close) a third more of the lab's CPU than it saves, and
    /// a long-lived one gets it back within tens of messages.
    #[default]
    Adaptive,
    /// Event loops of the lab's own, one thread per CPU it may use, from the upgrade on: one
    /// `epoll` set, one shared receive buffer and a deadline heap each (about half the user
    /// CPU per message of a task when messages arrive one per wake-up).
    EventLoop,
    /// A tokio task per connection, as WSS and WebSockets over HTTP/2 always run.
    Tasks,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            apps: Protocol::ALL
                .iter()
                .map(|p| (*p, p.default_port()))
                .collect(),
            push_interval: Duration::from_secs(5),
            event_interval: None,
            allowed_origins: Vec::new(),
            limits: Limits::default(),
            ws_deflate: Some(protolab_wire::ws::deflate::ServerConfig::default()),
            tls: None,
            ws_runtime: WsRuntime::default(),
            ws_loop_threads: None,
        }
    }
}

/// A listening app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Its protocol.
    pub protocol: Protocol,
    /// The address it really listens on (port resolved if 0 was asked).
    pub addr: SocketAddr,
}

impl Endpoint {
    /// The URL a user opens: the demo page for HTTP(S), the `/ws` endpoint for WS(S), the
    /// `/events` stream for SSE, the `host:port` target for gRPC.
    /// Loopback addresses are shown as `localhost` because that is the name on the lab's
    /// certificate and what a browser shows as a secure context.
    pub fn url(&self) -> String {
        let host = self.display_host();
        match self.protocol {
            Protocol::Http | Protocol::Https => format!("{}://{host}/", self.protocol),
            Protocol::Ws | Protocol::Wss => format!("{}://{host}/ws", self.protocol),
            Protocol::Sse => format!("http://{host}/events"),
            Protocol::H2 => format!("https://{host}/"),
            // No URL scheme is registered for gRPC; grpcurl and gRPC clients take host:port.
            Protocol::Grpc => host,
        }
    }

    /// The demo page's URL (for WS(S), the page that opens the socket).
    pub fn page_url(&self) -> String {
        format!("{}://{}/", self.protocol.page_scheme(), self.display_host())
    }

    fn display_host(&self) -> String {
        if self.addr.ip().is_loopback() {
            format!("localhost:{}", self.addr.port())
        } else {
            self.addr.to_string()
        }
    }
}

/// What [`Lab::shutdown`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Connections open when shutdown began.
    pub open_at_start: usize,
    /// Connections still open when the drain timeout ran out and that were dropped.
    pub dropped: usize,
}

/// The running lab: listeners, their connections, and the means to stop them.
#[derive(Debug)]
pub struct Lab {
    endpoints: Vec<Endpoint>,
    graceful: CancelToken,
    hard: CancelToken,
    tracker: TaskTracker,
    open: Arc<std::sync::atomic::AtomicUsize>,
    budget: Arc<MessageBudget>,
    read_buffers: Arc<ReadBuffers>,
    drain_timeout: Duration,
    sse: Option<Arc<Sse>>,
    ws_loops: Option<Arc<WsLoops>>,
}

impl Lab {
    /// Binds every app in `config` and starts serving. All listeners are bound before any
    /// accepts, so either the whole lab starts or none of it does (a taken port is an
    /// [`Error::PortInUse`] naming it).
    pub async fn start(config: LabConfig) -> Result<Self> {
        let mut listeners = Vec::with_capacity(config.apps.len());
        for &(protocol, port) in &config.apps {
            if protocol.is_tls() && config.tls.is_none() {
                return Err(Error::MissingTls(protocol));
            }
            let listener = bind(protocol, SocketAddr::new(config.bind, port))?;
            let local = listener.local_addr().map_err(|source| Error::Bind {
                protocol,
                addr: SocketAddr::new(config.bind, port),
                source,
            })?;
            let mut bound = vec![listener];
            // Browsers resolve `localhost` to ::1 first; a lab on 127.0.0.1 alone answered
            // them with a reset before they fell back. Same port on both.
            if config.bind == IpAddr::V4(Ipv4Addr::LOCALHOST) {
                let v6 = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), local.port());
                match bind(protocol, v6) {
                    Ok(listener) => bound.push(listener),
                    // A port of our own choosing (0 asked) may be taken on ::1 by someone
                    // else, and a host may have no IPv6 at all: 127.0.0.1 still serves.
                    Err(err) if port == 0 || !matches!(err, Error::PortInUse { .. }) => {
                        tracing::debug!(%err, "serving {protocol} on 127.0.0.1 only");
                    }
                    Err(err) => return Err(err),
                }
            }
            listeners.push((
                Endpoint {
                    protocol,
                    addr: local,
                },
                bound,
            ));
        }

        let endpoints: Vec<Endpoint> = listeners.iter().map(|(e, _)| *e).collect();
        let grpc_wanted = endpoints.iter().any(|e| e.protocol == Protocol::Grpc);
        let mut allowed_origins = config.allowed_origins.clone();
        for e in &endpoints {
            // The lab's own pages may open its sockets: the HTTP page links to the WS demo.
            allowed_origins.push(format!(
                "{}://localhost:{}",
                e.protocol.page_scheme(),
                e.addr.port()
            ));
            allowed_origins.push(format!("{}://{}", e.protocol.page_scheme(), e.addr));
        }
        let budget = Arc::new(MessageBudget::new(config.limits.max_buffered_bytes));
        // One feed for the SSE app and the HTTPS app's SSE paths; streams of both count
        // against one cap, the connection limit of one listener.
        let sse = endpoints
            .iter()
            .any(|e| e.protocol.serves_sse())
            .then(|| Arc::new(Sse::new(config.limits.max_connections, Arc::clone(&budget))));
        let moves = match config.ws_runtime {
            WsRuntime::Adaptive => Move::WhenLongLived,
            WsRuntime::EventLoop => Move::AtOnce,
            WsRuntime::Tasks => Move::Never,
        };
        let ws_loops =
            if moves != Move::Never && endpoints.iter().any(|e| e.protocol == Protocol::Ws) {
                let threads = config.ws_loop_threads.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
                });
                Some(Arc::new(
                    WsLoops::start(threads, moves).map_err(Error::EventLoop)?,
                ))
            } else {
                None
            };
        let lab = Self {
            ws_loops: ws_loops.clone(),
            endpoints,
            graceful: CancelToken::new(),
            hard: CancelToken::new(),
            tracker: TaskTracker::new(),
            open: Arc::default(),
            budget: Arc::clone(&budget),
            read_buffers: Arc::default(),
            drain_timeout: config.limits.drain_timeout,
            sse: sse.clone(),
        };
        if let Some(sse) = &sse {
            let sse = Arc::clone(sse);
            let stop = lab.graceful.clone();
            let interval = config.event_interval.unwrap_or(config.push_interval);
            lab.tracker
                .spawn(async move { sse.feed.run(interval, &stop).await });
        }
        let limits = Arc::new(config.limits);
        let allowed_origins: Arc<[String]> = allowed_origins.into();
        let grpc = if grpc_wanted {
            Some(Arc::new(GrpcApp::new(
                &limits,
                config.push_interval,
                lab.graceful.clone(),
                lab.tracker.clone(),
            )?))
        } else {
            None
        };
        let apps_json: Arc<str> = crate::apps::pages::apps_json(
            lab.endpoints
                .iter()
                .filter(|e| e.protocol != Protocol::Grpc)
                .map(|e| (e.protocol.name(), e.protocol.is_tls(), e.addr.port())),
        )
        .into();
        for (endpoint, bound) in listeners {
            let ctx = Arc::new(ConnCtx {
                app: endpoint.protocol.app(),
                tls: endpoint.protocol.is_tls(),
                limits: Arc::clone(&limits),
                push_interval: config.push_interval,
                allowed_origins: Arc::clone(&allowed_origins),
                budget: Arc::clone(&budget),
                read_buffers: Arc::clone(&lab.read_buffers),
                ws_deflate: config.ws_deflate,
                graceful: lab.graceful.clone(),
                hard: lab.hard.clone(),
                sse: sse.clone().filter(|_| endpoint.protocol.serves_sse()),
                ws_loops: ws_loops
                    .clone()
                    .filter(|_| endpoint.protocol == Protocol::Ws),
                apps_json: Arc::clone(&apps_json),
            });
            let tls = if endpoint.protocol == Protocol::H2 {
                // The same certificate, offering only h2 in ALPN.
                config.tls.as_ref().map(|tls| {
                    let mut h2 = rustls::ServerConfig::clone(tls);
                    h2.alpn_protocols = vec![b"h2".to_vec()];
                    Arc::new(h2)
                })
            } else if endpoint.protocol.is_tls() {
                config.tls.as_ref().map(Arc::clone)
            } else if endpoint.protocol == Protocol::Grpc {
                config.tls.as_deref().map(grpc_tls)
            } else {
                None
            };
            let grpc = (endpoint.protocol == Protocol::Grpc)
                .then(|| grpc.clone())
                .flatten();
            lab.tracker.spawn(accept_loop(
                bound,
                endpoint,
                tls,
                ctx,
                grpc,
                lab.tracker.clone(),
                Arc::clone(&lab.open),
            ));
        }
        Ok(lab)
    }

    /// The listening apps, in the order they were configured.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The endpoint of `protocol`, if it is being served.
    pub fn endpoint(&self, protocol: Protocol) -> Option<Endpoint> {
        self.endpoints
            .iter()
            .copied()
            .find(|e| e.protocol == protocol)
    }

    /// Connections open right now, over all listeners.
    pub fn open_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes WebSocket connections hold right now for messages in progress, charged against
    /// [`Limits::max_buffered_bytes`].
    pub fn buffered_bytes(&self) -> usize {
        self.budget.used()
    }

    /// Read buffers WebSocket connections hold right now. A connection borrows one only
    /// while it reads and holds bytes it has not answered yet, so with every connection idle
    /// (or closed) this is zero.
    pub fn read_buffers_lent(&self) -> usize {
        self.read_buffers.lent()
    }

    /// WebSocket connections the WS app's event loops serve right now.
    pub fn event_loop_connections(&self) -> usize {
        self.ws_loops.as_ref().map_or(0, |l| l.connections())
    }

    /// Event streams (`GET /events`) open right now, on the SSE and HTTPS apps together.
    pub fn sse_streams(&self) -> usize {
        self.sse.as_ref().map_or(0, |sse| sse.open_streams())
    }

    /// Stops accepting, lets in-flight HTTP requests finish with `Connection: close`, closes
    /// WebSockets with 1001 (going away) and waits for their close handshake, ends event
    /// streams (a last comment, then a close), all within the
    /// drain timeout; whatever is still open then is dropped. Returns once every task has
    /// ended, so nothing keeps running after it.
    pub async fn shutdown(self) -> ShutdownReport {
        let open_at_start = self.open_connections();
        self.graceful.cancel();
        self.tracker.close();
        let mut dropped = 0;
        if tokio::time::timeout(self.drain_timeout, self.tracker.wait())
            .await
            .is_err()
        {
            dropped = self.open_connections();
            tracing::warn!(
                dropped,
                "drain timeout reached; dropping the remaining connections"
            );
            self.hard.cancel();
            self.tracker.wait().await;
        }
        ShutdownReport {
            open_at_start,
            dropped,
        }
    }
}

/// The lab's TLS configuration with HTTP/2 as the only ALPN protocol: gRPC runs on nothing
/// else. The certificate resolver (and with it any renewal) and key log are shared.
fn grpc_tls(config: &rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Binds `addr` for `protocol`'s app, naming the port when it is taken.
fn bind(protocol: Protocol, addr: SocketAddr) -> Result<TcpListener> {
    crate::listen::bind_listener(addr).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            Error::PortInUse {
                protocol,
                ip: addr.ip(),
                port: addr.port(),
            }
        } else {
            Error::Bind {
                protocol,
                addr,
                source,
            }
        }
    })
}

/// Accepts on an app's listeners (127.0.0.1, and ::1 beside it) under one connection limit:
/// a slot is taken first, then the connection from whichever address has one, so a free slot
/// never waits on the quieter address.
async fn accept_loop(
    listeners: Vec<TcpListener>,
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ServerConfig>>,
    ctx: Arc<ConnCtx>,
    grpc: Option<Arc<GrpcApp>>,
    tracker: TaskTracker,
    open: Arc<std::sync::atomic::AtomicUsize>,
) {
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections));
    let (first, second) = (listeners.first(), listeners.get(1));
    loop {
        // Take a slot before accepting: at the limit, new clients wait in the backlog.
        let permit = tokio::select! {
            () = ctx.graceful.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = ctx.graceful.cancelled() => break,
            accepted = accept(first) => accepted,
            accepted = accept(second) => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // EMFILE/ENFILE and ECONNABORTED are transient; back off instead of spinning.
                tracing::warn!(%err, port = endpoint.addr.port(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Echo traffic is many small writes; Nagle would hold each for the peer's delayed ACK.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "set_nodelay failed");
        }
        let ctx = Arc::clone(&ctx);
        let tls = tls.clone();
        let grpc = grpc.clone();
        let open = Arc::clone(&open);
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let streams = tracker.clone();
        let h2 = endpoint.protocol == Protocol::H2;
        tracker.spawn(async move {
            let _permit = permit;
            if h2 {
                Box::pin(crate::h2::serve(tcp, peer, tls, ctx, streams)).await;
            } else if let Some(app) = grpc {
                Box::pin(crate::grpc::serve(tcp, peer, tls, &ctx, &app)).await;
            } else {
                serve(tcp, peer, tls, &ctx).await;
            }
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    tracing::debug!(protocol = %endpoint.protocol, "listener closed");
}

pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    ctx: &ConnCtx,
) {
    let deadline = tokio::time::Instant::now() + ctx.limits.handshake_timeout;
    match tls {
        // Boxed, as every phase is (see `conn::serve`): a plain connection's task then holds
        // no room for a TLS stream.
        None => Box::pin(conn::serve(tcp, peer, ctx, deadline)).await,
        // Boxed too: inline, the TLS path's state (a handshake's result holds a whole
        // `TlsStream`) made every connection's task about 2 KB larger, plain ones included.
        Some(config) => Box::pin(serve_tls(tcp, peer, config, ctx, deadline)).await,
    }
}

async fn serve_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    ctx: &ConnCtx,
    deadline: tokio::time::Instant,
) {
    // protolab_tls's stream: rustls' handshake, then records opened where they land in the
    // connection's read buffer (see its module docs for why). The handshake's state is boxed
    // so that it is freed after it, not kept in the task.
    let handshake = Box::pin(async {
        tokio::select! {
            () = ctx.hard.cancelled() => None,
            r = tokio::time::timeout_at(deadline, protolab_tls::stream::accept(config, tcp)) => Some(r),
        }
    })
    .await;
    let Some(handshake) = handshake else {
        return;
    };
    match handshake {
        Ok(Ok(stream)) => Box::pin(conn::serve(stream, peer, ctx, deadline)).await,
        Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

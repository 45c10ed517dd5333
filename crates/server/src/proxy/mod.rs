//! A TLS-terminating, WebSocket-aware HTTP/1.1 reverse proxy: the shape WSS has in production
//! (HAProxy or nginx on 443 holding the certificates, the upgraded connection pinned to one
//! backend).
//!
//! The principal type is [`Proxy`]: [`Proxy::start`] binds every [`Listen`] of a [`Config`]
//! and starts the backends' health checks; [`Proxy::shutdown`] stops accepting and drains.
//! Per request the proxy reads a strictly parsed head (`protolab_wire::http1`: smuggling shapes
//! are answered 400 and the connection closed), picks a backend with the [`Balance`]
//! algorithm among those up, and sends it a head rewritten by
//! `protolab_wire::http1::forward` — hop-by-hop fields removed, `X-Forwarded-*` and
//! `Forwarded` added ([`ForwardedFor`]), framing restated from what the proxy parsed — then
//! streams both bodies, re-framed the same way. A `101 Switching Protocols` answer to an
//! upgrade turns the connection into a tunnel held to that backend until either side ends it.
//!
//! Timeouts have HAProxy's meanings ([`Timeouts`]); [`emit`] prints the equivalent HAProxy
//! and nginx configurations. What this module does *not* do: HTTP/2, caching, compression,
//! retries of requests that reached a backend, or sticky sessions beyond `source` hashing.

mod client;
mod emit;
mod exchange;
mod metrics;
mod pool;
mod relay;
mod session;
mod tunnel;
mod upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

pub use emit::{emit, Flavor, Runtime, TlsFiles};
pub use metrics::Metrics;
pub use pool::{BackendState, Balance};
pub use protolab_wire::http1::forward::ForwardedFor;

use crate::cancel::CancelToken;
use crate::io::write_within;
use crate::{Error, Result};

/// One listening address of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// Address to bind; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Whether TLS is terminated here (with [`Config::tls`]).
    pub tls: bool,
}

/// Timeouts, with HAProxy's names and meanings (`timeout client`, `connect`, `server`,
/// `tunnel`, `client-fin`, `http-request`), plus a write timeout HAProxy has no name for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Inactivity on the client side while a request is expected or being received (and the
    /// keep-alive wait between requests). Default 30 s.
    pub client: Duration,
    /// Time to receive a whole request head once the connection is open (the TLS handshake
    /// included on a TLS listener); bounds slowloris. Default 10 s.
    pub http_request: Duration,
    /// Time for a TCP connection to a backend to be established. Default 5 s; then the next
    /// backend is tried, and 502 answered when none connects.
    pub connect: Duration,
    /// Inactivity on the server side: waiting for the response head or the next piece of
    /// its body. Default 30 s; a backend that never answers gets the client a 504.
    pub server: Duration,
    /// Inactivity of an upgraded connection in both directions, replacing `client` and
    /// `server` once a 101 has gone through. Default 1 h, so idle WebSockets are not cut at
    /// the 60 s many proxies default to.
    pub tunnel: Duration,
    /// Inactivity allowed once the client has half-closed a tunnel (sent its FIN, or its TLS
    /// close_notify) while the backend side is still open. Default 5 s.
    pub client_fin: Duration,
    /// Time one write may wait for its reader — client or backend — to make room, in every
    /// phase, tunnels included. Default 30 s, the lab's own `Limits::write_timeout`: a
    /// client that stops reading a WebSocket is cut off after it instead of holding its
    /// tunnel (and the data queued for it) until the tunnel timeout. Outside tunnels a write
    /// also never waits longer than `client` or `server`. HAProxy has no separate setting;
    /// nginx has `send_timeout` (toward clients) and `proxy_send_timeout` (toward backends).
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            client: Duration::from_secs(30),
            http_request: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            server: Duration::from_secs(30),
            tunnel: Duration::from_secs(3600),
            client_fin: Duration::from_secs(5),
            write: Duration::from_secs(30),
        }
    }
}

/// Active health checks of every backend: an HTTP `GET` on a fresh connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested, e.g. `/healthz` (the lab's apps answer it). A 2xx or 3xx is healthy.
    pub path: String,
    /// Time between two checks of one backend. Default 2 s (HAProxy's `inter`).
    pub interval: Duration,
    /// Consecutive successes that bring a down backend back. Default 2 (HAProxy's `rise`).
    pub rise: u32,
    /// Consecutive failures that take an up backend out. Default 3 (HAProxy's `fall`).
    pub fall: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: "/healthz".into(),
            interval: Duration::from_secs(2),
            rise: 2,
            fall: 3,
        }
    }
}

/// Everything the proxy needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen. At least one.
    pub listen: Vec<Listen>,
    /// Backends (`host:port`, plain HTTP/1.1). At least one.
    pub backends: Vec<SocketAddr>,
    /// How a backend is picked for a new request or tunnel. Default round-robin.
    pub balance: Balance,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Health checks; `None` trusts every backend (a failed connect still moves on to the next).
    pub health: Option<HealthCheck>,
    /// What happens to the `X-Forwarded-For` and `Forwarded` fields a client sends: kept with
    /// the proxy's entry appended (default, today's behaviour), or replaced by the proxy's
    /// entry alone (the safe choice when the proxy is the edge). `X-Forwarded-Proto` is
    /// always the proxy's own.
    pub forwarded_for: ForwardedFor,
    /// Send a PROXY protocol v2 header first on every backend connection (the backend must
    /// expect it, like HAProxy's `send-proxy-v2`). Default off.
    pub proxy_protocol: bool,
    /// Largest request or response head, in bytes. Default 16 KiB (HAProxy's `tune.bufsize`);
    /// a larger request head gets 431 and the connection is closed.
    pub max_header_bytes: usize,
    /// Most header fields in a request or response head. Default 100.
    pub max_headers: usize,
    /// Client connections open at once per listener; more wait in the backlog. Default 10,000.
    /// The proxy as a whole also admits no more clients than its open-file limit can serve
    /// with a backend connection each, after a reserve for listeners and health checks (see
    /// [`Proxy::client_capacity`]), so a flood cannot take the descriptors health checks need.
    pub max_connections: usize,
    /// Time [`Proxy::shutdown`] lets open requests and tunnels run before dropping them.
    /// Default 5 s.
    pub drain_timeout: Duration,
    /// Server TLS configuration for TLS listeners (SNI and ALPN are its business).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Address of a plain HTTP listener answering `GET /metrics` (Prometheus text) and
    /// nothing else. `None`: no metrics listener.
    pub metrics: Option<SocketAddr>,
    /// Emit one `tracing` event per request and per tunnel at info, target
    /// `protolab::proxy::access` (client, backend, method, path, status, duration, bytes each
    /// way, close code). Default on.
    pub access_log: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            backends: Vec::new(),
            balance: Balance::RoundRobin,
            timeouts: Timeouts::default(),
            health: Some(HealthCheck::default()),
            forwarded_for: ForwardedFor::Append,
            proxy_protocol: false,
            max_header_bytes: 16 << 10,
            max_headers: 100,
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(5),
            tls: None,
            metrics: None,
            access_log: true,
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) pool: pool::Pool,
    pub(crate) metrics: Arc<Metrics>,
    /// Buffers lent to tunnels while bytes pass through them (see [`crate::lend`]).
    pub(crate) read_buffers: crate::lend::ReadBuffers,
    pub(crate) graceful: CancelToken,
    pub(crate) hard: CancelToken,
}

/// Writes and flushes `bytes` within `timeout` (and before the hard shutdown).
async fn write_timed<W: tokio::io::AsyncWrite + Unpin + ?Sized>(
    dst: &mut W,
    bytes: &[u8],
    timeout: Duration,
    shared: &Shared,
) -> Result<(), ()> {
    write_within(dst, bytes, timeout, &shared.hard).await
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    endpoints: Vec<Listen>,
    capacity: usize,
    metrics_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    open: Arc<AtomicUsize>,
}

impl Proxy {
    /// Binds every listener (all or none), starts health checks and accepting.
    pub async fn start(config: Config) -> Result<Self> {
        if config.backends.is_empty() {
            return Err(Error::NoBackends);
        }
        let mut listeners = Vec::new();
        for listen in &config.listen {
            if listen.tls && config.tls.is_none() {
                return Err(Error::ProxyTls(listen.addr));
            }
            let listener = bind(listen.addr)?;
            let addr = local_addr(&listener, listen.addr)?;
            listeners.push((
                Listen {
                    addr,
                    tls: listen.tls,
                },
                listener,
            ));
        }
        let metrics_listener = match config.metrics {
            Some(addr) => {
                let l = bind(addr)?;
                let local = local_addr(&l, addr)?;
                Some((local, l))
            }
            None => None,
        };
        let wanted = config
            .max_connections
            .saturating_mul(config.listen.len())
            .max(1);
        let capacity = match descriptor_budget(&config) {
            Some((budget, limit)) if budget < wanted => {
                tracing::warn!(
                    open_file_limit = limit,
                    admitted = budget,
                    configured = wanted,
                    "the open-file limit lets the proxy serve {budget} client connections at once, \
                     not {wanted}: each needs a backend connection, and health checks keep \
                     descriptors of their own (raise it with `ulimit -n`)"
                );
                budget
            }
            _ => wanted,
        };
        let clients = Arc::new(Semaphore::new(capacity));
        let metrics = Arc::new(Metrics::new(&config.backends));
        let shared = Arc::new(Shared {
            pool: pool::Pool::new(&config.backends, config.balance, Arc::clone(&metrics)),
            config,
            metrics,
            read_buffers: crate::lend::ReadBuffers::default(),
            graceful: CancelToken::new(),
            hard: CancelToken::new(),
        });
        let proxy = Self {
            endpoints: listeners.iter().map(|(l, _)| *l).collect(),
            capacity,
            metrics_addr: metrics_listener.as_ref().map(|(a, _)| *a),
            shared: Arc::clone(&shared),
            tracker: TaskTracker::new(),
            open: Arc::default(),
        };
        if let Some(check) = &shared.config.health {
            for index in 0..shared.config.backends.len() {
                proxy
                    .tracker
                    .spawn(pool::health_loop(Arc::clone(&shared), index, check.clone()));
            }
        }
        for (listen, listener) in listeners {
            let tls = if listen.tls {
                shared.config.tls.as_ref().map(Arc::clone)
            } else {
                None
            };
            proxy.tracker.spawn(accept_loop(
                listener,
                listen,
                tls,
                Arc::clone(&clients),
                Arc::clone(&shared),
                proxy.tracker.clone(),
                Arc::clone(&proxy.open),
            ));
        }
        if let Some((_, listener)) = metrics_listener {
            proxy
                .tracker
                .spawn(metrics::serve(listener, Arc::clone(&shared)));
        }
        Ok(proxy)
    }

    /// The bound listeners (ports resolved), in configuration order.
    pub fn endpoints(&self) -> &[Listen] {
        &self.endpoints
    }

    /// Client connections served at once across all listeners: the sum of
    /// [`Config::max_connections`] over the listeners, or less when the open-file limit
    /// cannot hold that many with a backend connection each (a warning says so at start).
    pub fn client_capacity(&self) -> usize {
        self.capacity
    }

    /// Where `/metrics` is served, if asked for.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Each backend's address, whether it is up, and its open connections.
    pub fn backends(&self) -> Vec<BackendState> {
        self.shared.pool.states()
    }

    /// Copy buffers tunnels hold right now: one is borrowed only while bytes pass through,
    /// so with every tunnel idle (or closed) this is zero.
    pub fn tunnel_buffers_lent(&self) -> usize {
        self.shared.read_buffers.lent()
    }

    /// Client connections open right now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Stops accepting and health checks; requests in flight finish (answered with
    /// `Connection: close`), idle connections close, tunnels run on until the drain timeout,
    /// then everything left is dropped. Returns once every task has ended.
    pub async fn shutdown(self) {
        self.shared.graceful.cancel();
        self.tracker.close();
        let drain = self.shared.config.drain_timeout;
        if tokio::time::timeout(drain, self.tracker.wait())
            .await
            .is_err()
        {
            self.shared.hard.cancel();
            self.tracker.wait().await;
        }
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener> {
    crate::listen::bind_listener(addr).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            Error::ProxyPortInUse(addr)
        } else {
            Error::ProxyBind { addr, source }
        }
    })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr> {
    listener
        .local_addr()
        .map_err(|source| Error::ProxyBind { addr, source })
}

/// File descriptors kept out of the client budget: the listeners, one health-check
/// connection per backend (two, should a check outlive its interval), `/metrics` scrapes,
/// and what the runtime, stdio and the TLS key log hold.
fn reserved_descriptors(config: &Config) -> u64 {
    64 + config.listen.len() as u64 + 2 * config.backends.len() as u64
}

/// How many clients the soft open-file limit can serve at once, each holding its own
/// connection and one to a backend, after [`reserved_descriptors`]; with the limit. `None`
/// when the limit cannot be read or is unlimited.
fn descriptor_budget(config: &Config) -> Option<(usize, u64)> {
    use nix::sys::resource::{getrlimit, Resource};
    let (soft, _hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft == nix::sys::resource::RLIM_INFINITY {
        return None;
    }
    let per_client = 2;
    let budget = soft.saturating_sub(reserved_descriptors(config)) / per_client;
    Some((usize::try_from(budget).unwrap_or(usize::MAX).max(1), soft))
}

async fn accept_loop(
    listener: TcpListener,
    listen: Listen,
    tls: Option<Arc<rustls::ServerConfig>>,
    clients: Arc<Semaphore>,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    open: Arc<AtomicUsize>,
) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    loop {
        // A slot of this listener, then one of the whole proxy's descriptor budget: past
        // either, clients wait in the kernel's backlog rather than taking descriptors that
        // backend connections and health checks need.
        let permit = tokio::select! {
            () = shared.graceful.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let budget = tokio::select! {
            () = shared.graceful.cancelled() => break,
            permit = Arc::clone(&clients).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = shared.graceful.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::warn!(%err, addr = %listen.addr, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        let open = Arc::clone(&open);
        open.fetch_add(1, Ordering::Relaxed);
        tracker.spawn(async move {
            let _permits = (permit, budget);
            serve(tcp, peer, listen.addr, tls, &shared).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: &Shared,
) {
    let deadline = tokio::time::Instant::now() + shared.config.timeouts.http_request;
    let client = client::Client {
        peer,
        local,
        tls: tls.is_some(),
    };
    match tls {
        None => session::serve(tcp, client, shared, deadline).await,
        // Boxed: a task's future is as large as its largest state, so inline, the TLS
        // handshake's and the TLS stream's state would make every plain connection's task as
        // big as a TLS one's for as long as it lives (an idle tunnel, hours).
        Some(config) => Box::pin(serve_tls(tcp, client, config, shared, deadline)).await,
    }
}

async fn serve_tls(
    tcp: TcpStream,
    client: client::Client,
    config: Arc<rustls::ServerConfig>,
    shared: &Shared,
    deadline: tokio::time::Instant,
) {
    let peer = client.peer;
    // As in the lab: rustls' handshake, protolab_tls's record layer.
    let handshake = tokio::select! {
        () = shared.hard.cancelled() => return,
        r = tokio::time::timeout_at(deadline, protolab_tls::stream::accept(config, tcp)) => r,
    };
    match handshake {
        Ok(Ok(stream)) => {
            tracing::trace!(%peer, negotiated = ?stream.negotiated(), "TLS handshake done");
            session::serve(stream, client, shared, deadline).await;
        }
        Ok(Err(err)) => {
            shared.metrics.tls_failed();
            tracing::debug!(%peer, %err, "TLS handshake failed");
        }
        Err(_) => {
            shared.metrics.tls_failed();
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
}

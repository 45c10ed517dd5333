//! What every endpoint of the hub shares: state, limits, auth decisions and connection
//! accounting. The endpoints (`api`, `ws`, `sse`) use this module; [`crate::router`] puts them
//! on one axum Router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::auth::{bearer, ApiKeys, Grant, JwtVerifier, OriginPolicy};
use crate::broker::Broker;
use crate::error::ApiError;
use crate::hub::Hub;
use crate::metrics::{Metrics, Transport};
use crate::notification::PublicationLimits;

/// Explicit bounds on what one request or connection may make the hub hold or do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest `POST /api/publish` body. Default 64 KiB (a publication's fields are bounded
    /// well under it by [`PublicationLimits`]).
    pub max_publish_bytes: usize,
    /// Largest `POST /api/batch` body. Default 1 MiB.
    pub max_batch_bytes: usize,
    /// Most publications in one batch. Default 100.
    pub max_batch: usize,
    /// Most channels one subscriber connection may subscribe to. Default 64.
    pub max_subscriptions: usize,
    /// Largest message a WebSocket subscriber may send. Default 16 KiB: commands are small.
    pub max_command_bytes: usize,
    /// Interval of SSE keep-alive comments and WebSocket pings. Default 15 s.
    pub keepalive: Duration,
    /// Time one write to a subscriber may stay blocked (its client stopped reading and every
    /// buffer on the way is full) before it is closed as a slow subscriber. Default 10 s.
    pub write_timeout: Duration,
    /// Most connections at once: HTTP connections being served, and subscriber connections
    /// (WebSocket, SSE, socket.io) counted apart. Default 10,000.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_publish_bytes: 64 * 1024,
            max_batch_bytes: 1024 * 1024,
            max_batch: 100,
            max_subscriptions: 64,
            max_command_bytes: 16 * 1024,
            keepalive: Duration::from_secs(15),
            write_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// Who may publish and subscribe, and the request limits.
#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// Publish API keys. `None`: publishing is open to loopback peers only.
    pub api_keys: Option<ApiKeys>,
    /// Subscriber token check. `None`: subscribing is open.
    pub jwt: Option<JwtVerifier>,
    /// Pages allowed to open subscriber connections.
    pub origins: OriginPolicy,
    /// Request and connection limits.
    pub limits: Limits,
    /// Field limits of publications.
    pub publication_limits: PublicationLimits,
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// This process's hub: live delivery to its own subscribers, and its counters. Always
    /// `broker.hub()`.
    pub hub: Arc<Hub>,
    /// Where publishing, subscribing and reading history or channels go: this hub alone, or
    /// Redis shared with other hub processes.
    pub broker: Arc<Broker>,
    /// Auth and limits.
    pub config: AppConfig,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Cancelled when the hub shuts down: subscriber connections close (WebSockets with 1001)
    /// and `/readyz` answers 503.
    pub shutdown: CancellationToken,
}

/// The state handlers get.
pub type SharedState = Arc<AppState>;

impl AppState {
    /// State over `hub` alone (the in-memory broker) with `config`.
    pub fn new(hub: Arc<Hub>, config: AppConfig) -> SharedState {
        Self::with_broker(Arc::new(Broker::Memory(hub)), config)
    }

    /// State over `broker` with `config`.
    pub fn with_broker(broker: Arc<Broker>, config: AppConfig) -> SharedState {
        Arc::new(Self {
            hub: Arc::clone(broker.hub()),
            broker,
            config,
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
        })
    }

    /// Checks a publisher: a valid API key when keys are configured, else a loopback peer.
    pub fn authorize_publish(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<(), ApiError> {
        let refused = |message: &str| {
            self.metrics.refused();
            Err(ApiError::new(StatusCode::UNAUTHORIZED, message))
        };
        match &self.config.api_keys {
            Some(keys) => match bearer(headers) {
                Some(key) if keys.accepts(key) => Ok(()),
                Some(_) => refused("wrong API key: send `Authorization: Bearer KEY` with a key from the hub's --api-key-file"),
                None => refused("no API key: send `Authorization: Bearer KEY` with a key from the hub's --api-key-file"),
            },
            None if is_loopback(peer) => Ok(()),
            None => refused("this hub has no --api-key-file, so it takes publications from loopback only; start it with --api-key-file to publish from other addresses"),
        }
    }

    /// The channels a subscriber may subscribe to: from its token (`?token=` or
    /// `Authorization: Bearer`) when a JWT key is configured, else every channel.
    pub fn authorize_subscriber(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Grant, ApiError> {
        let Some(verifier) = &self.config.jwt else {
            return Ok(Grant::open());
        };
        let Some(token) = query_token.or_else(|| bearer(headers)) else {
            self.metrics.refused();
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "no token: pass a JWT as ?token= or `Authorization: Bearer`",
            ));
        };
        verifier.verify(token).map_err(|refused| {
            self.metrics.refused();
            ApiError::new(StatusCode::UNAUTHORIZED, refused.0)
        })
    }

    /// Checks the page a subscriber connection comes from.
    pub fn authorize_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.config.origins.check(headers).map(drop).map_err(|origin| {
            self.metrics.refused();
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!("origin {origin} is not allowed; start the hub with --allow-origin {origin} to allow it"),
            )
        })
    }
}

/// A subscriber connection, counted in the metrics until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    state: SharedState,
    transport: Transport,
}

impl ConnectionGuard {
    /// Counts a connection of `transport` open, or refuses it with 503 when the hub already
    /// holds [`Limits::max_connections`] subscriber connections.
    pub fn open(state: &SharedState, transport: Transport) -> Result<Self, ApiError> {
        let limit = state.config.limits.max_connections;
        if state.metrics.total_connections() >= limit as u64 {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the hub holds its limit of {limit} subscriber connections; try again later or raise --max-connections"),
            ));
        }
        state.metrics.opened(transport);
        Ok(Self {
            state: Arc::clone(state),
            transport,
        })
    }

    /// The hub's state.
    pub fn state(&self) -> &SharedState {
        &self.state
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.state.metrics.closed(self.transport);
    }
}

fn is_loopback(peer: SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

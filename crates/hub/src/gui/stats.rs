//! `GET /api/stats`: channels, connections and counters in one JSON document, for the admin
//! page to poll; it computes rates from the deltas of the counters between two polls.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;

use crate::app::SharedState;
use crate::error::ApiError;
use crate::hub::ChannelInfo;
use crate::metrics::Transport;

/// The answer of `GET /api/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Milliseconds since the Unix epoch when these were read.
    pub time_ms: u64,
    /// Notifications published since the hub started (duplicates not counted).
    pub published: u64,
    /// Publications refused as repeats of an idempotency key.
    pub duplicates: u64,
    /// Publishes and subscribes refused by API key, JWT or Origin checks.
    pub refused: u64,
    /// Per transport (`websocket`, `sse`, `socketio`): connections open now and notifications
    /// delivered since the hub started.
    pub transports: Vec<TransportStats>,
    /// Every channel, sorted by name.
    pub channels: Vec<ChannelInfo>,
}

/// One transport's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TransportStats {
    /// `websocket`, `sse` or `socketio`.
    pub transport: &'static str,
    /// Subscriber connections open now.
    pub connections: u64,
    /// Notifications written to its subscribers since the hub started.
    pub delivered: u64,
}

/// Same access as `/api/channels`: it names every channel.
pub(crate) async fn stats(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Stats>, ApiError> {
    state.authorize_publish(&headers, peer)?;
    // Every channel the broker holds (all hub processes'); the counts are this process's.
    let channels =
        state.broker.channels().await.map_err(|e| {
            ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        })?;
    let (published, duplicates) = state.hub.counts();
    let transports = Transport::ALL
        .iter()
        .map(|&transport| TransportStats {
            transport: transport.as_str(),
            connections: state.metrics.connections(transport),
            delivered: state.metrics.delivered_total(transport),
        })
        .collect();
    let time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok(Json(Stats {
        time_ms,
        published,
        duplicates,
        refused: state.metrics.refused_total(),
        transports,
        channels,
    }))
}

//! The HTTP API: publishing, history, channels, the OpenAPI document, metrics and health.

mod publish;
mod query;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use publish::{parse_batch, parse_publication};
pub use query::{parse_history_query, HistoryQuery};

use crate::app::SharedState;
use crate::error::ApiError;

/// The hub's OpenAPI 3.1 document, served at `/api/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/publish", post(publish::publish))
        .route("/api/batch", post(publish::batch))
        .route("/api/history", get(history))
        .route("/api/channels", get(channels))
        .route("/api/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
}

async fn history(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let max_limit = state.hub.config().history.max_len.max(1);
    let query = parse_history_query(raw.as_deref().unwrap_or(""), max_limit)?;
    // Reading history is subscribing to the past: a publisher's key or a subscriber's token
    // for the channel will do.
    if state.authorize_publish(&headers, peer).is_err() {
        let grant = state.authorize_subscriber(&headers, query.token.as_deref())?;
        if !grant.allows(&query.channel) {
            state.metrics.refused();
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("token does not allow channel {}", query.channel),
            ));
        }
    }
    let (recovery, position) = state
        .broker
        .history(&query.channel, &query.since, query.limit)
        .await
        .map_err(|e| publish::broker_error(&e))?;
    let notifications: Vec<&crate::notification::Notification> =
        recovery.missed.iter().map(|n| &**n).collect();
    Ok(Json(json!({
        "channel": query.channel,
        "epoch": position.epoch,
        "offset": position.offset,
        "recovered": recovery.recovered,
        "notifications": notifications,
    }))
    .into_response())
}

async fn channels(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.authorize_publish(&headers, peer)?;
    let channels = state
        .broker
        .channels()
        .await
        .map_err(|e| publish::broker_error(&e))?;
    Ok(Json(json!({ "channels": channels })).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn metrics(State(state): State<SharedState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state.hub),
    )
        .into_response()
}

async fn ready(State(state): State<SharedState>) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match state.broker.ready().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

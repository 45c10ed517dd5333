//! The axum [`Router`] of every endpoint of the hub.
//!
//! Other transports (socket.io and the `/notifs` endpoint) are separate routers and layers over
//! the same [`crate::Hub`]; whoever serves the hub merges them onto [`router`]'s result, e.g.
//! `router(state).merge(extra_routes).layer(extra_layer)`.

use axum::Router;

use crate::app::SharedState;

/// Every endpoint of the hub: the publish API, `/metrics`, health, the WebSocket and SSE
/// subscriber connections, and the hub's own pages (`/`, `/admin`). Serve it with peer addresses (`ConnectInfo<SocketAddr>`), as
/// [`crate::serve`] does.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .merge(crate::api::routes())
        .merge(crate::ws::routes())
        .merge(crate::sse::routes())
        .merge(crate::gui::routes())
        .with_state(state)
}

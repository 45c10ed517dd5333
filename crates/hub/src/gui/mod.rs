//! The hub's own pages: `GET /` (toasts of the channels a browser watches, with a connection
//! indicator, reconnect-and-resume and a filterable list of past notifications) and `GET /admin`
//! (channels, connections, live rates, a publish form), plus `GET /api/stats`, the small JSON
//! document the admin page polls.
//!
//! The pages are the hub's own HTML, CSS and JS, embedded in the binary: no CDN and no
//! third-party code, so a strict Content-Security-Policy (`'self'` only, no inline script or
//! style) holds them. They speak the documented protocols only (`/connection/ws`, `/api/*`).

mod stats;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use stats::Stats;

use crate::app::SharedState;

/// What the pages may load and connect to: their own origin only (`'self'` covers `ws:`/`wss:`
/// to the same host in CSP 3), nothing inline, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("index.html");
const ADMIN_HTML: &str = include_str!("admin.html");
const APP_JS: &str = include_str!("app.js");
const ADMIN_JS: &str = include_str!("admin.js");
const STYLE_CSS: &str = include_str!("style.css");

pub(crate) fn routes() -> Router<SharedState> {
    Router::new()
        .route("/", get(|| async { page(INDEX_HTML) }))
        .route("/admin", get(|| async { page(ADMIN_HTML) }))
        .route(
            "/gui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/gui/admin.js",
            get(|| async { asset(ADMIN_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/gui/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/stats", get(stats::stats))
}

fn page(html: &'static str) -> Response {
    asset(html, "text/html; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // The page URL may carry ?token=: never hand it to another site.
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

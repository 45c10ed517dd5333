//! What an HTTP/2 connection's requests share, and how an app's answer becomes hyper's: used
//! by plain requests (`service`) and WebSockets over HTTP/2 (`tunnel`) alike.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use tokio_util::task::TaskTracker;

use crate::apps;
use crate::ctx::ConnCtx;

/// What every request of one connection shares.
pub(super) struct Shared {
    pub(super) ctx: Arc<ConnCtx>,
    /// What the connection's TLS handshake settled, on TLS (its answers carry HSTS).
    pub(super) tls: Option<protolab_tls::stream::Negotiated>,
    pub(super) peer: SocketAddr,
    /// Where WebSockets over HTTP/2 run, so the lab's shutdown waits for them.
    pub(super) tracker: TaskTracker,
}

/// Response bodies are whole: every answer of the HTTP app is.
pub(super) type Body = Full<Bytes>;

/// hyper's response for one of the apps'; `head_only` keeps the length but not the body.
pub(super) fn to_hyper(
    resp: apps::Response,
    head_only: bool,
    hsts: Option<&'static str>,
) -> hyper::Response<Body> {
    let mut builder = hyper::Response::builder()
        .status(resp.status)
        .header(CONTENT_TYPE, resp.content_type.as_ref())
        .header(CONTENT_LENGTH, resp.body.len())
        .header("x-content-type-options", "nosniff")
        .header("server", "protolab");
    for (name, value) in &resp.headers {
        builder = builder.header(*name, value.as_ref());
    }
    if let Some(hsts) = hsts {
        builder = builder.header("strict-transport-security", hsts);
    }
    let body = match (head_only, resp.body) {
        (true, _) => Bytes::new(),
        (false, Cow::Borrowed(body)) => Bytes::from_static(body),
        (false, Cow::Owned(body)) => Bytes::from(body),
    };
    builder.body(Full::new(body)).unwrap_or_else(|err| {
        // Only a header value the `http` crate refuses gets here (an echoed content type
        // with bytes HTTP/2 cannot carry).
        tracing::debug!(%err, "response not representable in HTTP/2");
        let mut fallback = hyper::Response::new(Full::new(Bytes::from_static(
            b"the response could not be encoded\n",
        )));
        *fallback.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

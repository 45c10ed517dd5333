//! One HTTP/2 request: adapted to the HTTP app's [`RequestHead`] and body, answered by
//! [`apps::route`], and its [`apps::Response`] turned into hyper's.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Method, Request};
use protolab_wire::http1::{Header, Headers as _, RequestHead};

use super::answer::{to_hyper, Body, Shared};
use crate::apps::{self, AppKind};

/// Answers one request.
pub(super) async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<hyper::Response<Body>, Infallible> {
    let head = request_head(&req);
    if req.method() == Method::CONNECT {
        return Ok(super::tunnel::open(req, &head, &shared));
    }
    let head_only = req.method() == Method::HEAD;
    let body = match read_body(req.into_body(), &head, &shared).await {
        Ok(body) => body,
        Err(refusal) => return Ok(to_hyper(refusal, false, None)),
    };
    let conn = apps::pages::Connection {
        http: "HTTP/2",
        tls: shared.tls.as_ref(),
        apps: &shared.ctx.apps_json,
    };
    let response = apps::route(AppKind::Http, &head, &body, &conn);
    let hsts = shared
        .tls
        .is_some()
        .then(|| crate::conn::hsts(head.header_str("host")));
    Ok(to_hyper(response, head_only, hsts))
}

/// The request as the HTTP app's router reads it: `:authority` becomes `host`, the target is
/// the path and query. The version is HTTP/1.1's, which the router does not look at.
pub(super) fn request_head(req: &Request<Incoming>) -> RequestHead {
    let mut headers = Vec::with_capacity(req.headers().len() + 1);
    if let Some(authority) = req.uri().authority() {
        headers.push(Header {
            name: "host".into(),
            value: authority.as_str().as_bytes().to_vec(),
        });
    }
    for (name, value) in req.headers() {
        headers.push(Header {
            name: name.as_str().into(),
            value: value.as_bytes().to_vec(),
        });
    }
    RequestHead {
        method: req.method().as_str().into(),
        target: req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .into(),
        version: 1,
        headers,
    }
}

/// Body bytes read and dropped after a 413, so that the client, still sending, sees its stream
/// end normally instead of reset (curl reports a reset as an error even after a complete
/// response). Beyond this the stream is reset after all.
const DRAIN_AFTER_REFUSAL: usize = 1 << 20;

/// Reads the body within the body limit and timeout; the refusal to answer otherwise.
async fn read_body(
    mut body: Incoming,
    head: &RequestHead,
    shared: &Shared,
) -> Result<Vec<u8>, apps::Response> {
    let ctx = &shared.ctx;
    let limit = usize::try_from(ctx.limits.max_body_bytes).unwrap_or(usize::MAX);
    let too_large =
        || apps::Response::error(413, format!("request body is larger than {limit} bytes\n"));
    // A declared length past the limit is refused before any of the body is read.
    let declared = head
        .header_str("content-length")
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > ctx.limits.max_body_bytes) {
        drain(body, shared);
        return Err(too_large());
    }
    let reading = async {
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| {
                apps::Response::error(400, format!("request body broke off: {err}\n"))
            })?;
            if let Ok(data) = frame.into_data() {
                if got.len() + data.len() > limit {
                    return Err(too_large());
                }
                got.extend_from_slice(&data);
            }
        }
        Ok(got)
    };
    let read = tokio::select! {
        () = ctx.hard.cancelled() => return Err(apps::Response::error(503, "shutting down\n")),
        r = tokio::time::timeout(ctx.limits.body_timeout, reading) => r,
    };
    match read {
        Ok(Ok(got)) => Ok(got),
        Ok(Err(refusal)) => {
            if refusal.status == 413 {
                drain(body, shared);
            }
            Err(refusal)
        }
        Err(_) => Err(apps::Response::error(
            408,
            "request body did not arrive in time\n",
        )),
    }
}

/// Reads and drops up to [`DRAIN_AFTER_REFUSAL`] more of a refused body, within the body
/// timeout, beside the answer.
fn drain(mut body: Incoming, shared: &Shared) {
    let timeout = shared.ctx.limits.body_timeout;
    let ctx = Arc::clone(&shared.ctx);
    shared.tracker.spawn(async move {
        let draining = async {
            let mut dropped = 0;
            while let Some(Ok(frame)) = body.frame().await {
                dropped += frame.data_ref().map_or(0, Bytes::len);
                if dropped > DRAIN_AFTER_REFUSAL {
                    return;
                }
            }
        };
        tokio::select! {
            () = ctx.hard.cancelled() => {}
            _ = tokio::time::timeout(timeout, draining) => {}
        }
    });
}

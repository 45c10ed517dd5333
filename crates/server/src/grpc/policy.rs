//! What every call passes before the service sees it: a gRPC content type, and a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tonic::codegen::{http, Service};
use tonic::service::Routes;
use tonic::Status;

use super::proto::lab_server::LabServer;
use super::service::LabService;

type HttpResponse = http::Response<tonic::body::Body>;

/// Path prefix of the lab's own methods, which skip the router (see [`CallPolicy`]).
const LAB_METHOD_PREFIX: &str = "/protolab.lab.v1.Lab/";

/// How much of a refused (non-gRPC) request's body is read, and for how long, before the 415.
const REFUSED_BODY_READ: usize = 64 << 10;
const REFUSED_BODY_WAIT: Duration = Duration::from_secs(1);

const GRPC_STATUS: &str = "grpc-status";
/// `tonic::Code::OutOfRange` and `ResourceExhausted` as they appear in grpc-status.
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// The lab's gRPC routes behind two checks and a translation. A request whose content type
/// is not gRPC gets 415 with a grpc-status saying what to send (gRPC over HTTP/2 asks
/// servers to answer 415); a call whose response has not started within the message timeout
/// ends with DEADLINE_EXCEEDED, which bounds a unary call whose request never finishes
/// arriving. Streams are bounded by the service's own idle timeout once they have started.
/// A message over the size limit is refused by tonic's codec with OUT_OF_RANGE; gRPC's
/// other implementations (and its spec of the limit) say RESOURCE_EXHAUSTED, which clients
/// treat as "do not retry as is", so a trailers-only OUT_OF_RANGE is answered as that.
///
/// The lab's own methods go straight to the generated `LabServer`; only reflection and
/// unknown methods pass tonic's `Routes`. `Routes` is an axum router: per call it matched
/// the path and boxed the request body and the response body twice over (axum's body, then
/// tonic's), which perf showed as a large share of the app's CPU per unary call against
/// plain tonic.
#[derive(Clone)]
pub(super) struct CallPolicy {
    lab: LabServer<LabService>,
    /// Reflection, and UNIMPLEMENTED for any other path.
    routes: Routes,
    call_timeout: Duration,
}

impl CallPolicy {
    pub(super) fn new(lab: LabServer<LabService>, routes: Routes, call_timeout: Duration) -> Self {
        Self {
            lab,
            routes,
            call_timeout,
        }
    }
}

impl Service<http::Request<Incoming>> for CallPolicy {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<http::Request<Incoming>>::poll_ready(&mut self.routes, cx)
    }

    fn call(&mut self, request: http::Request<Incoming>) -> Self::Future {
        let content_type = request.headers().get(http::header::CONTENT_TYPE);
        if !content_type.is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc")) {
            let shown = content_type.map_or_else(
                || std::borrow::Cow::Borrowed("none"),
                |ct| String::from_utf8_lossy(ct.as_bytes()),
            );
            let status = Status::invalid_argument(format!(
                "content-type `{shown}` is not gRPC: this port serves gRPC (application/grpc) only"
            ));
            let mut response = status_response(&status);
            *response.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
            let body = request.into_body();
            return Box::pin(async move {
                // Answering before the request body is in makes hyper reset the stream after
                // the answer, and some clients (curl 7.88) then report the reset instead of
                // the 415. A short body is read first; a long or slow one is not waited for.
                let limited = http_body_util::Limited::new(body, REFUSED_BODY_READ);
                let _ = tokio::time::timeout(REFUSED_BODY_WAIT, limited.collect()).await;
                Ok(response)
            });
        }
        let call: Self::Future = if request.uri().path().starts_with(LAB_METHOD_PREFIX) {
            self.lab.call(request)
        } else {
            Box::pin(self.routes.call(request))
        };
        let limit = self.call_timeout;
        Box::pin(async move {
            match tokio::time::timeout(limit, call).await {
                Ok(Ok(mut response)) => {
                    let status = response.headers().get(GRPC_STATUS);
                    if status.is_some_and(|s| s.as_bytes() == OUT_OF_RANGE.as_bytes()) {
                        response.headers_mut().insert(
                            GRPC_STATUS,
                            http::HeaderValue::from_static(RESOURCE_EXHAUSTED),
                        );
                    }
                    Ok(response)
                }
                Ok(Err(never)) => match never {},
                Err(_) => Ok(status_response(&Status::deadline_exceeded(format!(
                    "the call did not complete within {limit:?} (the lab's --message-timeout)"
                )))),
            }
        })
    }
}

/// A trailers-only response carrying `status`.
fn status_response(status: &Status) -> HttpResponse {
    let (parts, ()) = status.clone().into_http::<()>().into_parts();
    http::Response::from_parts(parts, tonic::body::Body::empty())
}

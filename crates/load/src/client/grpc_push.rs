//! The `push` workload over gRPC: one server-streaming `protolab.lab.v1.Lab/Push` call per
//! connection, each `PushMessage` timed from the send time it carries (`unix_ms`).
//!
//! `unix_ms` has millisecond resolution (lab.proto's field), so each delay is measured to the
//! millisecond and reads up to 1 ms high (the server's clock truncated to the millisecond);
//! the WebSocket app's pushes carry microseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

use http::header::CONTENT_TYPE;
use http::{Method, Request, StatusCode};
use prost::Message as _;

use super::http2::{grpc_status_failure, h2_failure, H2Request, PushStream, GRPC_PREFIX};
use super::ws::Push;
use super::{Conn, Failure, Proto};
use crate::report::ErrorKind;
use crate::target::Target;
use crate::Error;

/// The lab's server-streaming method (lab.proto).
pub(crate) const GRPC_PUSH_PATH: &str = "/protolab.lab.v1.Lab/Push";

/// Largest push message taken: the lab's are a few bytes.
const MAX_PUSH_MESSAGE: usize = 64 * 1024;

/// `PushRequest` of lab.proto.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PushRequest {
    #[prost(uint32, tag = "1")]
    pub(crate) interval_ms: u32,
    #[prost(uint32, tag = "2")]
    pub(crate) count: u32,
}

/// `PushMessage` of lab.proto.
#[derive(Clone, PartialEq, prost::Message)]
struct PushMessage {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(int64, tag = "2")]
    unix_ms: i64,
}

impl PushStream {
    pub(super) fn read_ahead(&self) -> usize {
        self.buf.len()
    }

    /// A whole Length-Prefixed-Message at the front of `buf`, taken out.
    fn take_message(&mut self) -> Result<Option<Bytes>, Failure> {
        let used = match crate::grpc_frame::next_message(&self.buf, MAX_PUSH_MESSAGE) {
            Err(e) => return Err(Failure::new(ErrorKind::Protocol, format!("gRPC push: {e}"))),
            Ok(None) => return Ok(None),
            Ok(Some((_, used))) => used,
        };
        let mut message = self.buf.split_to(used);
        message.advance(GRPC_PREFIX);
        Ok(Some(message.freeze()))
    }
}

impl Conn {
    /// The next push of the connection's Push call, starting the call on the first one.
    pub(super) async fn grpc_next_push(&mut self) -> Result<Push, Failure> {
        let Proto::H2(h2) = &mut self.proto else {
            return Err(Failure::new(
                ErrorKind::Protocol,
                "not an HTTP/2 connection",
            ));
        };
        if h2.push.is_none() {
            let request = h2.push_request.clone().ok_or_else(|| {
                Failure::new(ErrorKind::Protocol, "this run asked for no gRPC push")
            })?;
            let send = h2.send.as_mut().ok_or_else(|| {
                Failure::new(ErrorKind::Closed, "the HTTP/2 connection is closed")
            })?;
            h2.push = Some(start(send, &request).await?);
        }
        let Some(stream) = h2.push.as_mut() else {
            return Err(Failure::new(ErrorKind::Protocol, "no push call"));
        };
        loop {
            if let Some(message) = stream.take_message()? {
                let push = PushMessage::decode(message.as_ref()).map_err(|e| {
                    Failure::new(
                        ErrorKind::Protocol,
                        format!("a gRPC push is not a PushMessage: {e}"),
                    )
                })?;
                let now_us = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros());
                let sent_us = u128::try_from(push.unix_ms).unwrap_or(0) * 1000;
                let delay = now_us.saturating_sub(sent_us);
                return Ok(Push {
                    delay: Duration::from_micros(u64::try_from(delay).unwrap_or(u64::MAX)),
                    payload: message.len(),
                });
            }
            match stream.body.data().await {
                Some(chunk) => {
                    let chunk =
                        chunk.map_err(|e| h2_failure("reading the gRPC push stream", &e))?;
                    let _ = stream.body.flow_control().release_capacity(chunk.len());
                    stream.buf.extend_from_slice(&chunk);
                }
                None => {
                    let trailers = stream
                        .body
                        .trailers()
                        .await
                        .map_err(|e| h2_failure("reading the push call's trailers", &e))?
                        .unwrap_or_default();
                    return Err(match trailers.get("grpc-status") {
                        Some(status) if status.as_bytes() != b"0" => {
                            grpc_status_failure(status, &trailers)
                        }
                        _ => Failure::new(ErrorKind::Closed, "the server ended the push call"),
                    });
                }
            }
        }
    }
}

/// Calls Push and waits for the response headers.
async fn start(
    send: &mut h2::client::SendRequest<Bytes>,
    request: &H2Request,
) -> Result<PushStream, Failure> {
    std::future::poll_fn(|cx| send.poll_ready(cx))
        .await
        .map_err(|e| h2_failure("opening the push stream", &e))?;
    let mut head = Request::new(());
    *head.method_mut() = Method::POST;
    *head.uri_mut() = request.uri.clone();
    *head.headers_mut() = request.headers.clone();
    let (response, mut stream) = send
        .send_request(head, false)
        .map_err(|e| h2_failure("calling Push", &e))?;
    stream
        .send_data(request.body.clone(), true)
        .map_err(|e| h2_failure("sending the PushRequest", &e))?;
    let response = response
        .await
        .map_err(|e| h2_failure("waiting for the Push call's response", &e))?;
    let (parts, body) = response.into_parts();
    if parts.status != StatusCode::OK {
        return Err(Failure::new(
            ErrorKind::Protocol,
            format!("the Push call got status {}", parts.status),
        ));
    }
    if let Some(status) = parts.headers.get("grpc-status") {
        return Err(grpc_status_failure(status, &parts.headers));
    }
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .map(http::HeaderValue::as_bytes);
    if !content_type.is_some_and(|c| c.starts_with(b"application/grpc")) {
        return Err(Failure::new(
            ErrorKind::Protocol,
            "the Push call's content-type is not application/grpc",
        ));
    }
    Ok(PushStream {
        body,
        buf: BytesMut::new(),
    })
}

impl H2Request {
    /// The Push call for the `push` workload over gRPC: pushes every `interval` until the
    /// call ends (count 0).
    pub(crate) fn grpc_push(
        target: &Target,
        interval: std::time::Duration,
        headers: &[(String, String)],
    ) -> Result<Self, Error> {
        let mut push_target = target.clone();
        push_target.path = GRPC_PUSH_PATH.to_owned();
        let mut request = Self::new(&push_target, &[], headers)?;
        let message = PushRequest {
            interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
            count: 0,
        };
        let len = message.encoded_len();
        let mut body = BytesMut::with_capacity(GRPC_PREFIX + len);
        body.put_u8(0);
        body.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        message.encode_raw(&mut body);
        request.body = body.freeze();
        request.push = true;
        Ok(request)
    }
}

//! HTTP/2 and gRPC exchanges over the `h2` crate, driven over the connection's
//! [`CountingStream`](crate::CountingStream) (under TLS when the scheme has it), so bytes on
//! the wire are counted like every other protocol's.
//!
//! Each echo is one request stream: `POST` of the message for h2/h2c, a unary
//! `protolab.lab.v1.Lab/Echo` call for gRPC. The gRPC message is prost-encoded and framed by
//! hand with its 5-byte prefix (compression flag, big-endian length; the gRPC over HTTP/2
//! spec's Length-Prefixed-Message): tonic's client wants a tower service of its own (its
//! `transport` feature and hyper's client) and would hide the stream from the counting and
//! timing here, while the prefix is five bytes.
//!
//! The connection's frames are read and written by a task of its own (h2's `Connection`),
//! which the exchange waits on through the request and response handles. That task ends once
//! its own GOAWAY is out, before the server's answering GOAWAY and FIN arrive; it hands the
//! stream back as it ends, and closing reads on to the FIN so the counts match a capture.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{BufMut as _, Bytes, BytesMut};
use h2::client::SendRequest;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, TE};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Conn, Exchange, Failure, Io, Proto};
use crate::report::ErrorKind;
use crate::target::Target;
use crate::Error;

/// The lab's unary echo method (crates/server/proto/protolab/lab/v1/lab.proto).
pub(crate) const GRPC_ECHO_PATH: &str = "/protolab.lab.v1.Lab/Echo";

/// `EchoRequest` and `EchoReply` of lab.proto: both are `bytes payload = 1`.
#[derive(Clone, PartialEq, prost::Message)]
struct EchoMessage {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
}

/// The gRPC Length-Prefixed-Message header: a compression flag and a 4-byte length.
pub(super) const GRPC_PREFIX: usize = crate::grpc_frame::PREFIX;

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2): they describe an HTTP/1.1 connection.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// The request every exchange of an HTTP/2 or gRPC run sends, built once.
#[derive(Debug, Clone)]
pub(crate) struct H2Request {
    pub(super) uri: Uri,
    pub(super) headers: HeaderMap,
    /// The request body: the message, or for gRPC its prefixed encoding.
    pub(super) body: Bytes,
    /// The message the answer must carry back.
    payload: Bytes,
    grpc: bool,
    /// A server-streaming Push call rather than an echo (the `push` workload over gRPC).
    pub(super) push: bool,
}

impl H2Request {
    /// The echo request for `target` carrying `payload`, with `headers` after our own. The
    /// path is the URL's, or `/echo` (HTTP/2) or the lab's Echo method (gRPC) when it has none.
    pub(crate) fn new(
        target: &Target,
        payload: &[u8],
        headers: &[(String, String)],
    ) -> Result<Self, Error> {
        let grpc = target.scheme.is_grpc();
        let path = match target.path.as_str() {
            "/" if grpc => GRPC_ECHO_PATH,
            "/" => "/echo",
            path => path,
        };
        let scheme = if target.scheme.is_tls() {
            "https"
        } else {
            "http"
        };
        let uri: Uri = format!("{scheme}://{}{path}", target.authority())
            .parse()
            .map_err(|_| Error::BadUrl {
                url: target.to_string(),
                reason: "it is not a valid HTTP/2 request target",
            })?;
        let mut map = HeaderMap::new();
        if grpc {
            map.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            // gRPC over HTTP/2: clients send `te: trailers` to say they read trailers
            // (where the call's status comes).
            map.insert(TE, HeaderValue::from_static("trailers"));
        } else {
            map.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        for (name, value) in headers {
            let bad = |reason: &'static str| Error::BadHeader {
                name: name.clone(),
                reason,
            };
            if CONNECTION_SPECIFIC.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(bad("HTTP/2 forbids connection-specific headers"));
            }
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("the name is not a valid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| bad("the value is not a valid header value"))?;
            map.append(name, value);
        }
        let body = if grpc {
            grpc_frame(payload)
        } else {
            Bytes::copy_from_slice(payload)
        };
        Ok(Self {
            uri,
            headers: map,
            body,
            payload: Bytes::copy_from_slice(payload),
            grpc,
            push: false,
        })
    }
}

/// `payload` as a prost-encoded `EchoRequest` behind its 5-byte prefix.
fn grpc_frame(payload: &[u8]) -> Bytes {
    let message = EchoMessage {
        payload: payload.to_vec(),
    };
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(GRPC_PREFIX + len);
    out.put_u8(0);
    // Messages are at most MAX_MESSAGE (16 MiB) plus a few bytes of field header.
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    message.encode_raw(&mut out);
    out.freeze()
}

/// The echoed message out of a gRPC response body: one uncompressed Length-Prefixed-Message
/// holding an `EchoReply`, and nothing after it.
pub(crate) fn grpc_unframe(body: &[u8]) -> Result<Vec<u8>, String> {
    let (message, used) = crate::grpc_frame::next_message(body, body.len())
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "the {}-byte gRPC response body holds no whole message",
                body.len()
            )
        })?;
    if used != body.len() {
        return Err(format!(
            "{} bytes follow the gRPC reply's message",
            body.len() - used
        ));
    }
    EchoMessage::decode(message)
        .map(|m| m.payload)
        .map_err(|e| format!("the gRPC reply is not an EchoReply: {e}"))
}

/// An HTTP/2 connection: the handle that opens streams and the task reading and writing its
/// frames.
pub(super) struct H2Conn {
    pub(super) send: Option<SendRequest<Bytes>>,
    driver: Option<JoinHandle<Result<(), h2::Error>>>,
    /// The Push call to make, for the `push` workload.
    pub(super) push_request: Option<H2Request>,
    /// The Push call once made.
    pub(super) push: Option<PushStream>,
    /// The connection's stream, once h2's task has let go of it.
    returned: Option<oneshot::Receiver<Box<dyn Io>>>,
}

/// The connection's stream while h2's task owns it, sent back through `back` when the task
/// drops it: h2 offers no way to take its I/O back, and the bytes the server sends after the
/// task ended (its GOAWAY, TLS close_notify) are still the connection's.
struct ReturnOnDrop {
    io: Option<Box<dyn Io>>,
    back: Option<oneshot::Sender<Box<dyn Io>>>,
}

impl ReturnOnDrop {
    fn io(&mut self) -> io::Result<Pin<&mut Box<dyn Io>>> {
        self.io
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "the stream was returned"))
    }
}

impl Drop for ReturnOnDrop {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            // Nobody waits when the connection was dropped rather than closed.
            let _ = back.send(io);
        }
    }
}

impl AsyncRead for ReturnOnDrop {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for ReturnOnDrop {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// An open Push call: its response body and the bytes read from it not yet taken.
pub(super) struct PushStream {
    pub(super) body: h2::RecvStream,
    pub(super) buf: BytesMut,
}

impl H2Conn {
    /// Sends the client preface over `io` and starts the task serving the connection. The
    /// SETTINGS frame is queued, not awaited: it goes out with the first request, and the
    /// server's SETTINGS come back with its answer (RFC 9113 §3.4 lets the client send
    /// before it has the server's preface).
    pub(super) async fn handshake(io: Box<dyn Io>, request: &H2Request) -> Result<Self, Failure> {
        let (back, returned) = oneshot::channel();
        let io = ReturnOnDrop {
            io: Some(io),
            back: Some(back),
        };
        let (send, connection) = h2::client::Builder::new()
            // Server push is for browsers' caches; the load generator refuses it.
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| h2_failure("sending the HTTP/2 preface", &e))?;
        Ok(Self {
            send: Some(send),
            driver: Some(tokio::spawn(connection)),
            push_request: request.push.then(|| request.clone()),
            push: None,
            returned: Some(returned),
        })
    }

    /// Lets go of the connection: with no handle left, h2 sends GOAWAY and shuts its side
    /// (FIN); waits for the task, then reads what the server still sends (its own GOAWAY) up
    /// to its FIN, all by `deadline`, so the byte counts equal what a capture shows.
    pub(super) async fn close(&mut self, deadline: Instant) {
        self.send = None;
        self.push = None;
        if let Some(mut driver) = self.driver.take() {
            if tokio::time::timeout_at(deadline.into(), &mut driver)
                .await
                .is_err()
            {
                driver.abort();
                return;
            }
        }
        let Some(returned) = self.returned.take() else {
            return;
        };
        let _ = tokio::time::timeout_at(deadline.into(), async {
            if let Ok(mut io) = returned.await {
                let mut sink = [0u8; 4096];
                // An error ends it like the FIN: the bytes read so far are counted below.
                while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
            }
        })
        .await;
    }
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        if let Some(driver) = &self.driver {
            driver.abort();
        }
    }
}

/// A failure for an h2 error while `what`: I/O errors by their kind, a GOAWAY as the server
/// closing, a stream reset or a broken frame as a protocol error.
pub(super) fn h2_failure(what: &str, err: &h2::Error) -> Failure {
    if let Some(io) = err.get_io() {
        return Failure::io(what, io);
    }
    if err.is_go_away() && err.is_remote() {
        let reason = err
            .reason()
            .map_or_else(|| "no reason".to_owned(), |r| r.to_string());
        return Failure::new(
            ErrorKind::Closed,
            format!("the server sent GOAWAY ({reason}) while {what}"),
        );
    }
    if err.is_reset() && err.is_remote() {
        let reason = err
            .reason()
            .map_or_else(|| "no reason".to_owned(), |r| r.to_string());
        return Failure::new(
            ErrorKind::Protocol,
            format!("the server reset the stream ({reason}) while {what}"),
        );
    }
    Failure::new(ErrorKind::Protocol, format!("HTTP/2 while {what}: {err}"))
}

impl Conn {
    /// One echo on a new stream of the HTTP/2 connection (see [`h2_echo`]).
    pub(super) async fn h2_exchange(
        &mut self,
        request: &H2Request,
        t0: Instant,
        timed_first: bool,
    ) -> Result<Exchange, Failure> {
        let Proto::H2(h2) = &mut self.proto else {
            return Err(Failure::new(
                ErrorKind::Protocol,
                "not an HTTP/2 connection",
            ));
        };
        let send = h2
            .send
            .as_mut()
            .ok_or_else(|| Failure::new(ErrorKind::Closed, "the HTTP/2 connection is closed"))?;
        h2_echo(send, request, t0, timed_first).await
    }

    /// Another handle on the HTTP/2 connection, to open streams beside this one's (`fanin`).
    pub(crate) fn h2_sender(&self) -> Option<SendRequest<Bytes>> {
        match &self.proto {
            Proto::H2(h2) => h2.send.clone(),
            _ => None,
        }
    }
}

/// One echo on a new stream of an HTTP/2 connection: request and message out, status, body
/// (and for gRPC the trailers' `grpc-status`) back. Streams on other handles of the same
/// connection may be in flight meanwhile.
pub(crate) async fn h2_echo(
    send: &mut SendRequest<Bytes>,
    request: &H2Request,
    t0: Instant,
    timed_first: bool,
) -> Result<Exchange, Failure> {
    std::future::poll_fn(|cx| send.poll_ready(cx))
        .await
        .map_err(|e| h2_failure("opening a stream", &e))?;
    let mut head = Request::new(());
    *head.method_mut() = Method::POST;
    *head.uri_mut() = request.uri.clone();
    *head.headers_mut() = request.headers.clone();
    let (response, mut stream) = send
        .send_request(head, false)
        .map_err(|e| h2_failure("sending the request", &e))?;
    stream
        .send_data(request.body.clone(), true)
        .map_err(|e| h2_failure("sending the message", &e))?;
    let response = response
        .await
        .map_err(|e| h2_failure("waiting for the response", &e))?;
    let first_byte = timed_first.then(|| t0.elapsed());
    let protocol = |what: String| Failure::new(ErrorKind::Protocol, what);
    let (parts, mut body) = response.into_parts();
    if parts.status != StatusCode::OK {
        return Err(protocol(format!(
            "status {} (the server must echo POST bodies)",
            parts.status
        )));
    }
    if request.grpc {
        // A trailers-only response carries the status in its headers: the call failed.
        if let Some(status) = parts.headers.get("grpc-status") {
            return Err(grpc_status_failure(status, &parts.headers));
        }
        let content_type = parts.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes);
        if !content_type.is_some_and(|c| c.starts_with(b"application/grpc")) {
            return Err(protocol(
                "the gRPC response's content-type is not application/grpc".into(),
            ));
        }
    }
    let limit = request.body.len().max(64 * 1024);
    let mut received = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| h2_failure("reading the response body", &e))?;
        // Give the window back so the server may send on.
        let _ = body.flow_control().release_capacity(chunk.len());
        if received.len() + chunk.len() > limit {
            return Err(protocol(format!(
                "a response body over {limit} bytes to a {}-byte echo",
                request.payload.len()
            )));
        }
        received.extend_from_slice(&chunk);
    }
    if request.grpc {
        let trailers = body
            .trailers()
            .await
            .map_err(|e| h2_failure("reading the trailers", &e))?
            .unwrap_or_default();
        match trailers.get("grpc-status") {
            Some(status) if status.as_bytes() == b"0" => {}
            Some(status) => return Err(grpc_status_failure(status, &trailers)),
            None => return Err(protocol("the gRPC call ended without a grpc-status".into())),
        }
        let echoed = grpc_unframe(&received).map_err(protocol)?;
        check_echo(&echoed, &request.payload)?;
    } else {
        check_echo(&received, &request.payload)?;
    }
    let done = Instant::now();
    let total = done.saturating_duration_since(t0);
    Ok(Exchange {
        first_byte: first_byte.map(|f| f.min(total)),
        total,
        done,
        reusable: true,
    })
}

fn check_echo(received: &[u8], sent: &[u8]) -> Result<(), Failure> {
    if received == sent {
        Ok(())
    } else {
        Err(Failure::new(
            ErrorKind::Protocol,
            format!(
                "the {}-byte echo is not the {}-byte message sent",
                received.len(),
                sent.len()
            ),
        ))
    }
}

/// A failed gRPC call: its status code and message.
pub(super) fn grpc_status_failure(status: &HeaderValue, headers: &HeaderMap) -> Failure {
    let message = headers
        .get("grpc-message")
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    Failure::new(
        ErrorKind::Protocol,
        format!(
            "the gRPC call failed: grpc-status {} {message}",
            String::from_utf8_lossy(status.as_bytes())
        ),
    )
}

/// The ALPN protocol a TLS server must pick for HTTP/2 (RFC 9113 §3.2).
pub(crate) const ALPN_H2: &[u8] = b"h2";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_round_trip_with_their_prefix() {
        let framed = grpc_frame(b"hello");
        // field 1, wire type 2 (0x0a), length 5, then the bytes: 7 bytes behind 5 of prefix.
        assert_eq!(&framed[..], b"\x00\x00\x00\x00\x07\x0a\x05hello");
        assert_eq!(grpc_unframe(&framed).unwrap(), b"hello");
        assert!(grpc_unframe(b"\x00\x00\x00").is_err());
        assert!(grpc_unframe(b"\x01\x00\x00\x00\x07\x0a\x05hello").is_err());
        assert!(grpc_unframe(b"\x00\x00\x00\x00\x09\x0a\x05hello").is_err());
    }

    #[test]
    fn connection_headers_are_refused() {
        let target = Target::parse("h2c://localhost:3005").unwrap();
        let bad = [("Connection".to_owned(), "close".to_owned())];
        assert!(H2Request::new(&target, b"x", &bad).is_err());
        let ok = [("X-Test".to_owned(), "1".to_owned())];
        let request = H2Request::new(&target, b"x", &ok).unwrap();
        assert_eq!(request.uri.path(), "/echo");
        let grpc =
            H2Request::new(&Target::parse("grpc://localhost:3006").unwrap(), b"x", &[]).unwrap();
        assert_eq!(grpc.uri.path(), GRPC_ECHO_PATH);
    }
}

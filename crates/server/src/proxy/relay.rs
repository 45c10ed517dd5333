//! Bodies streamed through the proxy, never buffered whole, re-framed by
//! `protolab_wire::http1::BodyRelay` from the framing the proxy parsed. The request body is
//! sent while the backend is watched, so a backend that answers before the body is done (a
//! 413 over its size limit) is heard at once instead of after the client's timeout.

use bytes::{Buf as _, BytesMut};
use protolab_wire::http1::{BodyFraming, BodyRelay, HeadLimits};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::upstream::{answered, Upstream};
use super::{write_timed, Shared};
use crate::io::{Io, READ_CHUNK};

/// Why a body could not be relayed.
#[derive(Debug)]
pub(super) enum RelayError {
    /// The sending side was silent longer than its timeout.
    SourceTimeout,
    /// The sending side closed or failed before the body ended.
    SourceClosed,
    /// The receiving side failed or did not take the bytes in time.
    DestinationFailed,
    /// Malformed chunked encoding.
    Bad,
}

/// How a request body's relay ended, when it did not fail.
pub(super) enum RequestBody {
    /// The whole body went to the backend; this many bytes were written.
    Sent(u64),
    /// The backend answered before the body was done (its response head is in the
    /// upstream's buffer); this many bytes had been written. The rest of the body is never
    /// read, so neither connection can carry another request.
    AnsweredEarly(u64),
}

/// Streams the request body from the client (`buf` holds what already arrived) to the
/// backend, framed as `framing`, watching the backend meanwhile.
pub(super) async fn request_body<S: Io>(
    client: &mut S,
    buf: &mut BytesMut,
    up: &mut Upstream<'_>,
    framing: BodyFraming,
    limits: &HeadLimits,
    shared: &Shared,
) -> Result<RequestBody, RelayError> {
    let mut relay = BodyRelay::new(framing, false);
    if relay.is_done() {
        return Ok(RequestBody::Sent(0));
    }
    let t = shared.config.timeouts;
    let write_timeout = t.write.min(t.server);
    let mut out = Vec::new();
    let mut written = 0u64;
    let (mut from_backend, mut to_backend) = up.tcp.split();
    loop {
        out.clear();
        let step = relay.relay(buf, &mut out).map_err(|_| RelayError::Bad)?;
        let bytes = if step.verbatim {
            &buf[..step.consumed]
        } else {
            &out[..]
        };
        if !bytes.is_empty() {
            let sent = write_timed(&mut to_backend, bytes, write_timeout, shared);
            tokio::select! {
                biased;
                r = sent => r.map_err(|()| RelayError::DestinationFailed)?,
                heard = watch(&mut from_backend, &mut up.buf, limits) => {
                    return heard.then_some(RequestBody::AnsweredEarly(written))
                        .ok_or(RelayError::DestinationFailed);
                }
            }
            written += bytes.len() as u64;
        }
        buf.advance(step.consumed);
        if step.done {
            return Ok(RequestBody::Sent(written));
        }
        buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            read = client.read_buf(buf) => match read {
                Ok(0) | Err(_) => return Err(RelayError::SourceClosed),
                Ok(_) => {}
            },
            heard = watch(&mut from_backend, &mut up.buf, limits) => {
                return heard.then_some(RequestBody::AnsweredEarly(written))
                    .ok_or(RelayError::DestinationFailed);
            }
            () = shared.hard.cancelled() => return Err(RelayError::SourceClosed),
            () = tokio::time::sleep(t.client) => return Err(RelayError::SourceTimeout),
        }
    }
}

/// Reads what the backend sends while the request body is still going out. Completes with
/// `true` once a final response head is buffered (interim 1xx responses alone do not
/// count), `false` if the backend closed or failed without one. Cancel-safe: what was read
/// stays in `buf`.
async fn watch<R: AsyncRead + Unpin>(
    from: &mut R,
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> bool {
    loop {
        if answered(buf, limits) {
            return true;
        }
        if buf.len() > limits.max_head_bytes {
            // Too much for a head: let the response reader refuse it.
            return true;
        }
        buf.reserve(READ_CHUNK);
        match from.read_buf(buf).await {
            Ok(0) | Err(_) => return answered(buf, limits),
            Ok(_) => {}
        }
    }
}

/// Streams the response body from the backend to the client. `relay` has already been fed
/// what arrived with the head. Returns the bytes written to the client.
pub(super) async fn response_body<S: Io>(
    up: &mut Upstream<'_>,
    client: &mut S,
    mut relay: BodyRelay,
    shared: &Shared,
) -> Result<u64, RelayError> {
    let t = shared.config.timeouts;
    let write_timeout = t.write.min(t.client);
    let mut out = Vec::new();
    let mut written = 0u64;
    while !relay.is_done() {
        out.clear();
        let step = relay
            .relay(&up.buf, &mut out)
            .map_err(|_| RelayError::Bad)?;
        let bytes = if step.verbatim {
            &up.buf[..step.consumed]
        } else {
            &out[..]
        };
        if !bytes.is_empty() {
            write_timed(client, bytes, write_timeout, shared)
                .await
                .map_err(|()| RelayError::DestinationFailed)?;
            written += bytes.len() as u64;
        }
        up.buf.advance(step.consumed);
        if step.done {
            break;
        }
        up.buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            read = up.tcp.read_buf(&mut up.buf) => match read {
                Ok(0) if relay.end_of_input() => break,
                Ok(0) | Err(_) => return Err(RelayError::SourceClosed),
                Ok(_) => {}
            },
            () = shared.hard.cancelled() => return Err(RelayError::SourceClosed),
            () = tokio::time::sleep(t.server) => return Err(RelayError::SourceTimeout),
        }
    }
    Ok(written)
}

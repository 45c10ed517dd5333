//! Bodies streamed through the proxy, never buffered whole, re-framed by
//! `protolab_wire::http1::BodyRelay` from the framing the proxy parsed.

use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use protolab_wire::http1::{BodyFraming, BodyRelay};
use tokio::io::{AsyncReadExt as _, AsyncWrite};

use super::upstream::Upstream;
use super::Shared;
use crate::conn::{Io, READ_CHUNK};

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

/// Streams the request body from the client (`buf` holds what already arrived) to the
/// backend, framed as `framing`. Returns the bytes written to the backend.
pub(super) async fn request_body<S: Io>(
    client: &mut S,
    buf: &mut BytesMut,
    up: &mut Upstream<'_>,
    framing: BodyFraming,
    shared: &Shared,
) -> Result<u64, RelayError> {
    let mut relay = BodyRelay::new(framing, false);
    if relay.is_done() {
        return Ok(0);
    }
    let t = shared.config.timeouts;
    let mut out = Vec::new();
    let mut written = 0u64;
    loop {
        out.clear();
        let step = relay.relay(buf, &mut out).map_err(|_| RelayError::Bad)?;
        let bytes = if step.verbatim {
            &buf[..step.consumed]
        } else {
            &out[..]
        };
        if !bytes.is_empty() {
            write_timed(&mut up.tcp, bytes, t.server, shared)
                .await
                .map_err(|()| RelayError::DestinationFailed)?;
            written += bytes.len() as u64;
        }
        buf.advance(step.consumed);
        if step.done {
            return Ok(written);
        }
        buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            read = client.read_buf(buf) => match read {
                Ok(0) | Err(_) => return Err(RelayError::SourceClosed),
                Ok(_) => {}
            },
            () = shared.hard.cancelled() => return Err(RelayError::SourceClosed),
            () = tokio::time::sleep(t.client) => return Err(RelayError::SourceTimeout),
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
    let write_timeout = t.client;
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

/// Writes and flushes `bytes` within `timeout` (and before the hard shutdown).
pub(super) async fn write_timed<W: AsyncWrite + Unpin + ?Sized>(
    dst: &mut W,
    bytes: &[u8],
    timeout: Duration,
    shared: &Shared,
) -> Result<(), ()> {
    crate::conn::write_within(dst, bytes, timeout, &shared.hard).await
}

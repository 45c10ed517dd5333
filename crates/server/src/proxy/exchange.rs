//! One request and its response, or its tunnel: check the head
//! (`protolab_wire::http1::forward`), pick or reuse a backend connection, send the rewritten
//! head and the re-framed body, relay interim and final responses, and turn an accepted
//! upgrade into a tunnel.

use bytes::{Buf as _, BytesMut};
use protolab_wire::http1::forward::{self, Hop};
use protolab_wire::http1::{BodyFraming, BodyRelay, Headers as _, RequestHead, ResponseHead};
use tokio::time::Instant;

use super::client::{close_gracefully, head_limits, refuse, Access, Cancel, Client, Next};
use super::relay::{self, RelayError, RequestBody};
use super::upstream::{self, read_response_head, Upstream};
use super::{tunnel, write_timed, Shared};
use crate::io::Io;

/// Interim (1xx) responses relayed before the final one: a few are normal (100, 103), an
/// endless stream of them is not.
const MAX_INTERIM: u8 = 8;

/// One request and its response (or its tunnel).
pub(super) async fn exchange<'p, S: Io>(
    stream: &mut S,
    buf: &mut BytesMut,
    head: RequestHead,
    client: Client,
    shared: &'p Shared,
    upstream: &mut Option<Upstream<'p>>,
    cancel: &mut Cancel<'_>,
) -> Next {
    let started = Instant::now();
    let mut access = Access {
        client,
        head: &head,
        backend: None,
        started,
    };
    // RFC 9112 §3.2 (one Host), §6.3 (CL with TE, differing CLs, bad TE), RFC 9110 §7.6.1
    // (no Connection option may remove framing): a proxy that guesses here is how requests
    // get smuggled past it to a backend that guesses otherwise.
    let accepted = match forward::check_request(&head) {
        Ok(a) => a,
        Err(refusal) => {
            shared.metrics.request(None);
            tracing::debug!(peer = %client.peer, %refusal, "refused request");
            refuse(stream, shared, refusal.status(), &refusal.to_string()).await;
            return Next::Close;
        }
    };

    // A backend connection kept from the previous request is reused while its backend is up
    // and it has not been closed meanwhile; otherwise balance afresh.
    if upstream.as_ref().is_some_and(|up| !up.reusable(shared)) {
        *upstream = None;
    }
    if upstream.is_none() {
        match upstream::connect(client, shared).await {
            Ok(u) => *upstream = Some(u),
            Err(status) => {
                shared.metrics.request(None);
                let msg = if status == 503 {
                    "no backend is available"
                } else {
                    "could not connect to any backend"
                };
                access.log(shared, status, 0, 0);
                refuse(stream, shared, status, msg).await;
                return Next::Close;
            }
        }
    }
    let Some(up) = upstream.as_mut() else {
        return Next::Close;
    };
    shared.metrics.request(Some(up.lease.index));
    let backend = up.lease.addr();
    access.backend = Some(backend);
    let t = shared.config.timeouts;

    // A client that sent `Expect: 100-continue` waits for the go-ahead before its body. The
    // proxy gives it (as nginx does) rather than relaying the backend's, which would need
    // reading the response while the request is still being sent.
    let expects = head.has_token("expect", "100-continue");
    let hop = Hop {
        client: client.peer.ip(),
        tls: client.tls,
        forwarded_for: shared.config.forwarded_for,
    };
    let mut out = Vec::with_capacity(1024);
    forward::write_request_head(
        &mut out,
        &head,
        &accepted,
        &hop,
        up.lease.authority().as_bytes(),
    );
    let mut sent = out.len() as u64;
    if write_timed(&mut up.tcp, &out, t.write.min(t.server), shared)
        .await
        .is_err()
    {
        *upstream = None;
        access.log(shared, 502, 0, 0);
        refuse(stream, shared, 502, "the backend closed the connection").await;
        return Next::Close;
    }
    // Freed now, not when the exchange ends: a tunnel or a long response body would hold it.
    drop(out);
    if expects && head.version == 1 && accepted.framing != BodyFraming::Empty {
        let continue_ = b"HTTP/1.1 100 Continue\r\n\r\n";
        let _ = write_timed(stream, continue_, t.write.min(t.client), shared).await;
    }
    let limits = head_limits(shared);
    let early = match relay::request_body(stream, buf, up, accepted.framing, &limits, shared).await
    {
        Ok(RequestBody::Sent(n)) => {
            sent += n;
            false
        }
        Ok(RequestBody::AnsweredEarly(n)) => {
            sent += n;
            tracing::debug!(peer = %client.peer, %backend, "backend answered before the request body ended");
            true
        }
        Err(err) => {
            *upstream = None;
            let status = match err {
                RelayError::SourceTimeout => 408,
                RelayError::Bad => 400,
                RelayError::SourceClosed => {
                    access.log(shared, 0, sent, 0);
                    return Next::Close;
                }
                RelayError::DestinationFailed => 502,
            };
            access.log(shared, status, sent, 0);
            refuse(stream, shared, status, "request body could not be relayed").await;
            return Next::Close;
        }
    };

    // The response head, relaying interim 1xx responses other than 101.
    let mut received = 0u64;
    let mut interim_left = MAX_INTERIM;
    let response = loop {
        up.deadline.move_to(Instant::now() + t.server);
        match read_response_head(up, &limits, cancel).await {
            Ok((resp, len)) => {
                received += len as u64;
                if (100..200).contains(&resp.status) && resp.status != 101 && interim_left > 0 {
                    interim_left -= 1;
                    if head.version == 1 && resp.status != 100 {
                        let mut interim = Vec::new();
                        forward::write_response_head(
                            &mut interim,
                            &resp,
                            &head.method,
                            BodyFraming::Empty,
                            &[],
                        );
                        let _ = write_timed(stream, &interim, t.write.min(t.client), shared).await;
                    }
                    continue;
                }
                break resp;
            }
            Err(failure) => {
                *upstream = None;
                let (status, msg) = failure.status();
                tracing::debug!(peer = %client.peer, %backend, status, "backend failure");
                access.log(shared, status, sent, received);
                refuse(stream, shared, status, msg).await;
                return Next::Close;
            }
        }
    };

    let unusable = if (100..200).contains(&response.status) && response.status != 101 {
        Some("the backend sent too many interim responses")
    } else if response.status == 101 && (!accepted.upgrade || early) {
        Some("the backend switched protocols unasked")
    } else {
        None
    };
    if let Some(msg) = unusable {
        *upstream = None;
        access.log(shared, 502, sent, received);
        refuse(stream, shared, 502, msg).await;
        return Next::Close;
    }
    if response.status == 101 {
        return switch(
            stream, buf, &head, &response, upstream, &access, shared, sent, received,
        )
        .await;
    }

    let resp_framing = match forward::check_response(&response, &head.method) {
        Ok(f) => f,
        Err(refusal) => {
            *upstream = None;
            tracing::debug!(peer = %client.peer, %backend, %refusal, "unusable response");
            access.log(shared, 502, sent, received);
            refuse(
                stream,
                shared,
                502,
                "the backend sent an ambiguous response",
            )
            .await;
            return Next::Close;
        }
    };
    // Chunked cannot go to an HTTP/1.0 client: it gets the body raw, ended by closing.
    let dechunk = resp_framing == BodyFraming::Chunked && head.version == 0;
    let to_client = if dechunk {
        BodyFraming::UntilClose
    } else {
        resp_framing
    };
    let client_keep = head.keep_alive()
        && !early
        && !shared.graceful.is_cancelled()
        && to_client != BodyFraming::UntilClose;
    let backend_keep = response.version == 1
        && !early
        && !response.has_token("connection", "close")
        && resp_framing != BodyFraming::UntilClose;
    let mut extra: Vec<(&str, &[u8])> = Vec::new();
    if !client_keep {
        extra.push(("connection", b"close"));
    } else if head.version == 0 {
        extra.push(("connection", b"keep-alive"));
    }
    let mut out = Vec::with_capacity(1024);
    forward::write_response_head(&mut out, &response, &head.method, to_client, &extra);
    let mut to_client_bytes = out.len() as u64;
    let Some(up) = upstream.as_mut() else {
        return Next::Close;
    };
    // What of the body already arrived with the head goes out in the same write.
    let mut body = BodyRelay::new(resp_framing, dechunk);
    let ok = match body.relay(&up.buf, &mut out) {
        Ok(step) => {
            let head_len = out.len();
            if step.verbatim {
                out.extend_from_slice(&up.buf[..step.consumed]);
            }
            to_client_bytes += (out.len() - head_len) as u64;
            up.buf.advance(step.consumed);
            true
        }
        Err(_) => false,
    };
    if !ok
        || write_timed(stream, &out, t.write.min(t.client), shared)
            .await
            .is_err()
    {
        *upstream = None;
        access.log(shared, response.status, sent, 0);
        return Next::Close;
    }
    shared.metrics.response(response.status);
    let relayed = relay::response_body(up, stream, body, shared).await;
    let ok = match relayed {
        Ok(n) => {
            to_client_bytes += n;
            true
        }
        Err(err) => {
            tracing::debug!(peer = %client.peer, %backend, ?err, "response body relay failed");
            false
        }
    };
    shared.metrics.bytes(sent, to_client_bytes);
    access.log(shared, response.status, sent, to_client_bytes);
    if !ok || !backend_keep {
        *upstream = None;
    }
    if ok && client_keep {
        Next::KeepAlive
    } else {
        if ok {
            close_gracefully(stream, shared).await;
        }
        Next::Close
    }
}

/// Answers an upgrade the backend accepted and runs the tunnel until it ends.
#[allow(
    clippy::too_many_arguments,
    reason = "the exchange's state, handed over once"
)]
async fn switch<S: Io>(
    stream: &mut S,
    buf: &mut BytesMut,
    head: &RequestHead,
    response: &ResponseHead,
    upstream: &mut Option<Upstream<'_>>,
    access: &Access<'_>,
    shared: &Shared,
    sent: u64,
    received: u64,
) -> Next {
    let Some(up) = upstream.take() else {
        return Next::Close;
    };
    let t = shared.config.timeouts;
    let mut out = Vec::with_capacity(512);
    forward::write_response_head(
        &mut out,
        response,
        &head.method,
        BodyFraming::Empty,
        &[
            ("connection", b"Upgrade".as_slice()),
            (
                "upgrade",
                response.header("upgrade").unwrap_or(b"websocket"),
            ),
        ],
    );
    if write_timed(stream, &out, t.write.min(t.client), shared)
        .await
        .is_err()
    {
        return Next::Close;
    }
    shared.metrics.response(101);
    // An idle tunnel holds no buffer of its own (see `tunnel::run`), this one included.
    let response_head_len = out.len() as u64;
    drop(out);
    let websocket = head
        .header("upgrade")
        .is_some_and(|u| u.trim_ascii().eq_ignore_ascii_case(b"websocket"));
    let client = access.client;
    let backend = up.lease.addr();
    tracing::debug!(peer = %client.peer, %backend, "tunnel open");
    let stats = tunnel::run(
        stream,
        std::mem::take(buf),
        up.tcp,
        up.buf,
        websocket,
        shared,
    )
    .await;
    drop(up.lease);
    shared
        .metrics
        .bytes(sent + stats.up, received + response_head_len + stats.down);
    if shared.config.access_log {
        tracing::info!(
            target: "protolab::proxy::access",
            client = %client.peer,
            %backend,
            method = %head.method,
            host = %access.host(),
            path = %head.path(),
            status = 101,
            tunnel = true,
            duration_ms = access.started.elapsed().as_millis() as u64,
            bytes_up = sent + stats.up,
            bytes_down = received + stats.down,
            close_code = stats.close_code,
            ended = stats.ended,
            "tunnel closed"
        );
    }
    Next::Close
}

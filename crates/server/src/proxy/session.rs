//! One client connection through the proxy: read request heads strictly, one after the other,
//! hand each to [`exchange`](super::exchange), and answer what cannot be forwarded with the
//! proxy's own error page.

use bytes::{Buf as _, BytesMut};
use protolab_wire::http1::{self, HeadLimits, RequestHead};
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;

use super::client::{head_limits, refuse, Cancel, Client, Next};
use super::exchange::exchange;
use super::upstream::Upstream;
use super::Shared;
use crate::io::{Io, LazyDeadline, READ_CHUNK};

/// Serves requests on `stream` until the client closes, an error closes it, a tunnel ends, or
/// the proxy shuts down. `deadline` bounds the first request head (TLS handshake included).
pub(crate) async fn serve<S: Io>(
    mut stream: S,
    client: Client,
    shared: &Shared,
    deadline: Instant,
) {
    let limits = head_limits(shared);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut upstream: Option<Upstream<'_>> = None;
    let mut deadline = LazyDeadline::new(deadline);
    let mut cancel = Cancel::new(shared);
    loop {
        let head = match read_head(&mut stream, &mut buf, &limits, &mut deadline, &mut cancel).await
        {
            Ok(head) => head,
            Err(HeadFailure::Closed) => return,
            Err(HeadFailure::TimedOut { partial }) => {
                tracing::debug!(peer = %client.peer, partial, "request head did not arrive in time");
                if partial {
                    refuse(
                        &mut stream,
                        shared,
                        408,
                        "request head did not arrive in time",
                    )
                    .await;
                }
                return;
            }
            Err(HeadFailure::Bad(err)) => {
                tracing::debug!(peer = %client.peer, %err, "bad request head");
                shared.metrics.request(None);
                refuse(&mut stream, shared, err.status(), &err.to_string()).await;
                return;
            }
        };
        let next = exchange(
            &mut stream,
            &mut buf,
            head,
            client,
            shared,
            &mut upstream,
            &mut cancel,
        )
        .await;
        match next {
            Next::KeepAlive => {
                // HAProxy's `timeout http-keep-alive` falls back to `timeout client`.
                deadline.move_to(Instant::now() + shared.config.timeouts.client);
            }
            Next::Close => return,
        }
    }
}

enum HeadFailure {
    Closed,
    TimedOut { partial: bool },
    Bad(http1::HeadError),
}

async fn read_head<S: Io>(
    stream: &mut S,
    buf: &mut BytesMut,
    limits: &HeadLimits,
    deadline: &mut LazyDeadline,
    cancel: &mut Cancel<'_>,
) -> Result<RequestHead, HeadFailure> {
    loop {
        match http1::parse_request(buf, limits) {
            Ok(Some((head, consumed))) => {
                buf.advance(consumed);
                return Ok(head);
            }
            Ok(None) => {}
            Err(err) => return Err(HeadFailure::Bad(err)),
        }
        buf.reserve(READ_CHUNK);
        let idle = buf.is_empty();
        tokio::select! {
            biased;
            read = stream.read_buf(buf) => match read {
                Ok(0) | Err(_) => return Err(HeadFailure::Closed),
                Ok(_) => {}
            },
            () = cancel.hard.as_mut() => return Err(HeadFailure::Closed),
            () = cancel.graceful.as_mut(), if idle => return Err(HeadFailure::Closed),
            () = deadline.expired() => return Err(HeadFailure::TimedOut { partial: !idle }),
        }
    }
}

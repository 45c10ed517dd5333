//! An upgraded connection: bytes copied both ways between the client and the one backend
//! that accepted the upgrade, until both sides have closed or the tunnel goes idle.

use std::time::Duration;

use bytes::BytesMut;
use protolab_wire::ws::{encode_close, FrameWatcher};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{write_timed, Shared};
use crate::io::{Io, LazyDeadline};

/// Copy buffer per direction: one full TLS record's plaintext.
const BUF: usize = 16 * 1024;
/// The client side's buffer also has room for a full record's header and tag, so a TLS
/// client's records land whole and are opened in place (see `protolab_tls::stream`).
const CLIENT_BUF: usize = BUF + protolab_tls::record::MAX_OVERHEAD;

/// How a tunnel went, for the access log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    /// Bytes from the client to the backend.
    pub(crate) up: u64,
    /// Bytes from the backend to the client (an injected close frame included).
    pub(crate) down: u64,
    /// The first WebSocket close code seen in either direction (or injected).
    pub(crate) close_code: Option<u16>,
    /// Why it ended.
    pub(crate) ended: &'static str,
}

/// Close code sent to a WebSocket client whose backend vanished without a close frame:
/// 1014 "Bad Gateway" (RFC 6455 registry) — the client learns the session ended upstream
/// instead of seeing a bare TCP close (1006).
const BACKEND_GONE: u16 = 1014;

/// Close code sent both ways when the proxy shuts down: 1001 "going away" (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;

/// At shutdown, ends a WebSocket tunnel the way a server going away would: close 1001 to the
/// client and (masked, as a client must) to the backend, after which the tunnel only waits for
/// both answers without forwarding them — each side sees one well-formed close handshake.
/// Only done between frames and before any close went by; returns whether it was done (if not,
/// it is tried again after the next read, and the drain timeout bounds the wait).
async fn go_away<S: Io>(
    client: &mut S,
    backend: &mut TcpStream,
    up: &FrameWatcher,
    down: &FrameWatcher,
    shared: &Shared,
) -> bool {
    let quiet = up.at_boundary() && down.at_boundary();
    if !quiet || up.close_code().is_some() || down.close_code().is_some() {
        return false;
    }
    let t = shared.config.timeouts.client_fin;
    let mut to_client = Vec::with_capacity(32);
    encode_close(&mut to_client, None, GOING_AWAY, "proxy shutting down");
    let mut to_backend = Vec::with_capacity(32);
    encode_close(
        &mut to_backend,
        Some(mask_key()),
        GOING_AWAY,
        "proxy shutting down",
    );
    let _ = write_timed(client, &to_client, t, shared).await;
    let _ = write_timed(backend, &to_backend, t, shared).await;
    true
}

/// A masking key nobody can predict (RFC 6455 §5.3), from the std hasher's random seed.
fn mask_key() -> [u8; 4] {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() as u32).to_be_bytes()
}

struct OpenTunnel<'a>(&'a Shared);

impl Drop for OpenTunnel<'_> {
    fn drop(&mut self) {
        self.0.metrics.tunnel_closed();
    }
}

/// Runs the tunnel. `client_buf` and `backend_buf` hold bytes each side sent after its head
/// (forwarded first). The inactivity limit is `timeouts.tunnel` in both directions, and
/// `timeouts.client_fin` once either side has closed its half. Dropping the future drops
/// both connections.
pub(crate) async fn run<S: Io>(
    client: &mut S,
    client_buf: BytesMut,
    mut backend: TcpStream,
    backend_buf: BytesMut,
    websocket: bool,
    shared: &Shared,
) -> Stats {
    shared.metrics.tunnel_opened();
    let _open = OpenTunnel(shared);
    let t = shared.config.timeouts;
    let mut stats = Stats {
        up: 0,
        down: 0,
        close_code: None,
        ended: "both sides closed",
    };
    let mut up_watch = FrameWatcher::new();
    let mut down_watch = FrameWatcher::new();
    if !client_buf.is_empty() {
        up_watch.feed(&client_buf);
        if write_timed(&mut backend, &client_buf, t.write.min(t.tunnel), shared)
            .await
            .is_err()
        {
            stats.ended = "backend write failed";
            return stats;
        }
        stats.up += client_buf.len() as u64;
    }
    if !backend_buf.is_empty() {
        down_watch.feed(&backend_buf);
        if write_timed(client, &backend_buf, t.write.min(t.tunnel), shared)
            .await
            .is_err()
        {
            stats.ended = "client write failed";
            return stats;
        }
        stats.down += backend_buf.len() as u64;
    }

    drop((client_buf, backend_buf));
    // Borrowed only while bytes pass (see `crate::lend`): an idle tunnel holds no buffer.
    let mut a = shared.read_buffers.buffer(BytesMut::new());
    let mut b = shared.read_buffers.buffer(BytesMut::new());
    let (mut client_open, mut backend_open) = (true, true);
    let mut idle = t.tunnel;
    let mut deadline = LazyDeadline::new(Instant::now() + idle);
    let half_closed = |deadline: &mut LazyDeadline, idle: &mut Duration| {
        *idle = t.client_fin.min(*idle);
        *deadline = LazyDeadline::new(Instant::now() + *idle);
    };
    // Shutdown: WebSocket tunnels are closed with 1001 on both sides (see `go_away`).
    let (mut shutdown_seen, mut going_away) = (false, false);
    // Made once: a fresh `cancelled()` per loop turn would register and unregister a waiter
    // (a mutex each time) for every message relayed.
    let graceful = shared.graceful.cancelled();
    let hard = shared.hard.cancelled();
    tokio::pin!(graceful, hard);
    while client_open || backend_open {
        if shutdown_seen && !going_away && client_open && backend_open {
            going_away = go_away(client, &mut backend, &up_watch, &down_watch, shared).await;
            if going_away {
                stats.close_code = Some(GOING_AWAY);
                stats.ended = "proxy shut down";
                idle = t.client_fin.min(idle);
                deadline = LazyDeadline::new(Instant::now() + idle);
            }
        }
        a.clear();
        a.give_back_if_empty();
        b.clear();
        b.give_back_if_empty();
        tokio::select! {
            r = a.read_from(client, CLIENT_BUF), if client_open => match r {
                Ok(0) | Err(_) => {
                    client_open = false;
                    if backend_open {
                        // Pass the client's FIN on and wait `client-fin` for the backend's.
                        let _ = backend.shutdown().await;
                        half_closed(&mut deadline, &mut idle);
                    }
                }
                Ok(n) if going_away => {
                    // The client's answer to our close; it is not forwarded.
                    up_watch.feed(&a[..n]);
                    if up_watch.close_code().is_some() {
                        let _ = tokio::time::timeout(t.client_fin, client.shutdown()).await;
                    }
                }
                Ok(n) => {
                    up_watch.feed(&a[..n]);
                    if stats.close_code.is_none() {
                        stats.close_code = up_watch.close_code();
                    }
                    if !backend_open {
                        continue; // The backend is gone: drain the client's last words.
                    }
                    if write_timed(&mut backend, &a[..n], t.write.min(idle), shared).await.is_err() {
                        stats.ended = "backend write failed";
                        break;
                    }
                    stats.up += n as u64;
                    deadline.push_back(Instant::now() + idle);
                }
            },
            r = b.read_from(&mut backend, BUF), if backend_open => match r {
                Ok(0) | Err(_) => {
                    backend_open = false;
                    if r.is_err() {
                        stats.ended = "backend reset";
                    }
                    if client_open {
                        if websocket
                            && !going_away
                            && down_watch.close_code().is_none()
                            && down_watch.at_boundary()
                        {
                            let mut close = Vec::with_capacity(32);
                            encode_close(&mut close, None, BACKEND_GONE, "backend went away");
                            if write_timed(client, &close, t.client_fin, shared).await.is_ok() {
                                stats.down += close.len() as u64;
                                stats.close_code.get_or_insert(BACKEND_GONE);
                                stats.ended = "backend closed without a close frame";
                            }
                        }
                        let _ = tokio::time::timeout(t.client_fin, client.shutdown()).await;
                        half_closed(&mut deadline, &mut idle);
                    }
                }
                Ok(n) if going_away => {
                    // The backend's answer to our close; it is not forwarded.
                    down_watch.feed(&b[..n]);
                    if down_watch.close_code().is_some() {
                        let _ = backend.shutdown().await;
                    }
                }
                Ok(n) => {
                    down_watch.feed(&b[..n]);
                    if stats.close_code.is_none() {
                        stats.close_code = down_watch.close_code();
                    }
                    if write_timed(client, &b[..n], t.write.min(idle), shared).await.is_err() {
                        stats.ended = "client write failed";
                        break;
                    }
                    stats.down += n as u64;
                    deadline.push_back(Instant::now() + idle);
                }
            },
            () = deadline.expired() => {
                stats.ended = if client_open && backend_open {
                    "tunnel timeout"
                } else {
                    "client-fin timeout"
                };
                break;
            }
            () = &mut graceful, if websocket && !shutdown_seen => {
                shutdown_seen = true;
            }
            () = &mut hard => {
                stats.ended = "proxy shut down";
                break;
            }
        }
    }
    if client_open {
        let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
    }
    stats
}

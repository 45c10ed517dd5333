//! `--idle-timeout-discovery MAX`: leave the connection idle (answering pings, as any client
//! library does) and see how long it lives, and how it ends: FIN, RST, a TLS close_notify, a
//! WebSocket close frame and its code.
//!
//! The clock runs from the last byte in either direction, because that is what every proxy's
//! idle timer counts from (HAProxy `timeout client`/`tunnel`, nginx `keepalive_timeout`,
//! `proxy_read_timeout`).

use std::time::{Duration, Instant};

use protolab_wire::ws::Message;

use super::conn::{preview, Conn, End};
use super::exchange::{WsClient, WsEnd};
use super::report::IdleFacts;

/// Waits up to `max` for the server to end the idle connection. `ws` is the WebSocket
/// client when the connection was upgraded.
pub(super) async fn discover(
    conn: &mut Conn,
    mut ws: Option<&mut WsClient>,
    max: Duration,
) -> IdleFacts {
    let started = Instant::now();
    let tls = conn.is_tls();
    let mut server_traffic = 0u32;
    let mut prelude = String::new();
    let end = loop {
        let left = max.saturating_sub(started.elapsed());
        if left.is_zero() {
            break None;
        }
        let before = conn.last_activity;
        match ws.as_deref_mut() {
            Some(client) => match client.next(conn, left).await {
                Ok(Message::Ping(data)) => {
                    server_traffic += 1;
                    if client.pong(conn, &data).await.is_err() {
                        break Some((
                            End::Error("could not answer a ping".into()),
                            before.elapsed(),
                        ));
                    }
                }
                Ok(Message::Close(frame)) => {
                    let survived = before.elapsed();
                    prelude = match frame {
                        Some(f) if f.reason.is_empty() => {
                            format!("WebSocket close {}, then ", f.code)
                        }
                        Some(f) => format!("WebSocket close {} {:?}, then ", f.code, f.reason),
                        None => "WebSocket close (no code), then ".to_owned(),
                    };
                    // Answer it as a client must (RFC 6455 §5.5.1), then see how TCP ends.
                    let mut out = Vec::new();
                    protolab_wire::ws::encode_close(
                        &mut out,
                        Some(super::exchange::random()),
                        1000,
                        "",
                    );
                    let _ = conn.send(&out, "WebSocket close reply (masked)").await;
                    let after = tail(conn).await;
                    break Some((after, survived));
                }
                Ok(_) => server_traffic += 1,
                Err(WsEnd::Timeout) => break None,
                Err(WsEnd::Closed(end)) => break Some((end, before.elapsed())),
                Err(WsEnd::Garbage(text)) => break Some((End::Error(text), before.elapsed())),
            },
            None => match conn.fill_within(left, "bytes while idle").await {
                Ok(_) => {
                    server_traffic += 1;
                    if prelude.is_empty() {
                        let first = String::from_utf8_lossy(&conn.buf);
                        let line = first.lines().next().unwrap_or_default().to_owned();
                        prelude = format!("{}, then ", preview(line.as_bytes()));
                    }
                    conn.buf.clear();
                }
                Err(End::Timeout) => break None,
                Err(end) => break Some((end, before.elapsed())),
            },
        }
    };
    match end {
        None => IdleFacts {
            max_secs: max.as_secs_f64(),
            survived_secs: conn.last_activity.elapsed().as_secs_f64(),
            still_open: true,
            closed_by: "nobody".to_owned(),
            how: format!("still open after {}", humantime::format_duration(max)),
            server_traffic,
        },
        Some((end, survived)) => IdleFacts {
            max_secs: max.as_secs_f64(),
            survived_secs: survived.as_secs_f64(),
            still_open: false,
            closed_by: "server".to_owned(),
            how: format!("{prelude}{}", end.describe(tls)),
            server_traffic,
        },
    }
}

/// After a close frame: how the byte stream itself ends (bounded by a second).
async fn tail(conn: &mut Conn) -> End {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.fill_within(left, "bytes after the close frame").await {
            Ok(_) => conn.buf.clear(),
            Err(end) => return end,
        }
    }
}

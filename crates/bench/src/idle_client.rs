//! One cycle of `protolab-bench idle`, run pinned to core 1: open N WebSockets (or WSS) to one
//! server with [`CONNECTING_AT_ONCE`] handshakes in flight, hold them idle (the client sends
//! nothing, not even pings), read the server's RSS and open descriptors from /proc, close
//! them all, wait until the server has let go of them, and read its RSS again.
//!
//! Every connection binds its own source address in 127.0.0.0/8 (as the hub bench does), so
//! cycle after cycle never runs out of ephemeral ports while the last cycle's sockets sit in
//! TIME_WAIT. Every wait is bounded: a server that cannot hold N reports how many it held and
//! the first error, rather than hanging the bench.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use protolab_wire::http1::{parse_response, HeadLimits};
use protolab_wire::ws::handshake;

use crate::fanout_client::{rss_kib, source_address};

/// Handshakes in flight at once: enough to open 10,000 in seconds, few enough that no
/// server's listen backlog overflows.
pub const CONNECTING_AT_ONCE: usize = 256;
/// Bound on opening every connection of a cycle.
pub const OPEN_LIMIT: Duration = Duration::from_secs(120);
/// Bound on one connection's TCP connect, TLS handshake and upgrade.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(30);
/// Idle time after the last connection opened, before RSS is read: lets a server finish
/// whatever it does per new connection (timers, buffers shrinking).
const SETTLE: Duration = Duration::from_secs(2);
/// Bound in seconds on the server closing its side after the client closed everything.
pub const CLOSE_LIMIT_SECS: u64 = 30;
/// Descriptors the server may still hold after a close beyond its count before the cycle
/// (a listener re-armed, a log file): more means it has not let go of the connections.
const FD_SLACK: usize = 16;

/// One cycle.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's port on 127.0.0.1.
    pub port: u16,
    /// Request target of the upgrade.
    pub path: String,
    /// Trust this CA and speak TLS (wss); `None` for ws.
    pub tls_ca: Option<PathBuf>,
    /// Connections to open and hold.
    pub connections: usize,
    /// Server pid, for /proc/PID/status (VmRSS) and /proc/PID/fd.
    pub server_pid: u32,
    /// Second octet of the source addresses (127.X.Y.Z).
    pub source_net: u8,
}

/// What one cycle measured (printed as JSON by the `idle-client` subcommand).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CycleReport {
    /// Connections asked for.
    pub wanted: usize,
    /// Connections that completed the upgrade.
    pub opened: usize,
    /// Connections that failed (refused, reset, timed out, bad upgrade).
    pub failed: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// Seconds from the first connect to the last completed upgrade.
    pub open_secs: f64,
    /// `opened / open_secs`.
    pub accept_per_sec: Option<f64>,
    /// Server RSS before the cycle, KiB.
    pub rss_before_kib: u64,
    /// Server RSS with every connection open and idle, KiB.
    pub rss_open_kib: u64,
    /// Server RSS once it closed every connection again, KiB.
    pub rss_after_close_kib: u64,
    /// `(rss_open − rss_before) / opened`, bytes.
    pub bytes_per_connection: Option<f64>,
    /// Server descriptors before the cycle.
    pub fds_before: usize,
    /// Server descriptors with every connection open: a server holding them all shows about
    /// `fds_before + opened`.
    pub fds_open: usize,
    /// Server descriptors after the close.
    pub fds_after_close: usize,
    /// Seconds until the server's descriptors fell back after the client closed.
    pub close_secs: f64,
    /// Whether the server closed them all within the bound.
    pub closed_all: bool,
}

/// Bytes per connection from two VmRSS readings: `None` when nothing opened. RSS that fell
/// (a collector ran) counts as 0, not as a negative size.
pub fn bytes_per_connection(before_kib: u64, open_kib: u64, opened: usize) -> Option<f64> {
    (opened > 0).then(|| (open_kib.saturating_sub(before_kib) * 1024) as f64 / opened as f64)
}

/// Open descriptors of `pid` (entries of /proc/PID/fd); 0 when unreadable.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// What the client holds per connection; dropped to close it.
type Held = Box<dyn Send>;

/// Runs one cycle on the current (pinned) thread.
pub async fn run(cfg: Config) -> anyhow::Result<CycleReport> {
    anyhow::ensure!(cfg.connections > 0, "--connections must be at least 1");
    let tls = cfg
        .tls_ca
        .as_deref()
        .map(crate::client::tls_config)
        .transpose()?;
    let cfg = Arc::new(cfg);
    let mut report = CycleReport {
        wanted: cfg.connections,
        rss_before_kib: rss_kib(cfg.server_pid),
        fds_before: open_fds(cfg.server_pid),
        ..CycleReport::default()
    };
    anyhow::ensure!(
        report.rss_before_kib > 0,
        "server pid {} is gone (no /proc/{}/status)",
        cfg.server_pid,
        cfg.server_pid
    );

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks: JoinSet<anyhow::Result<Held>> = JoinSet::new();
    for index in 0..cfg.connections {
        let (cfg, gate, tls) = (cfg.clone(), gate.clone(), tls.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await.context("connect gate closed")?;
            tokio::time::timeout(HANDSHAKE_LIMIT, open(&cfg, index, tls))
                .await
                .context("connect, TLS and upgrade took longer than 30 s")?
        });
    }
    let mut held: Vec<Held> = Vec::with_capacity(cfg.connections);
    let deadline = tokio::time::Instant::now() + OPEN_LIMIT;
    let mut last_open = started;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(Ok(Ok(conn)))) => {
                held.push(conn);
                last_open = Instant::now();
            }
            Ok(Some(Ok(Err(err)))) => {
                report.failed += 1;
                report.first_error.get_or_insert_with(|| format!("{err:#}"));
            }
            Ok(Some(Err(join))) => {
                report.failed += 1;
                report.first_error.get_or_insert_with(|| join.to_string());
            }
            Ok(None) => break,
            Err(_) => {
                let left = tasks.len();
                tasks.abort_all();
                report.failed += left;
                report.first_error.get_or_insert_with(|| {
                    format!("{left} connections still opening after {OPEN_LIMIT:?}")
                });
                break;
            }
        }
    }
    report.opened = held.len();
    report.open_secs = last_open.duration_since(started).as_secs_f64();
    report.accept_per_sec = (report.opened > 0 && report.open_secs > 0.0)
        .then(|| report.opened as f64 / report.open_secs);

    tokio::time::sleep(SETTLE).await;
    report.rss_open_kib = rss_kib(cfg.server_pid);
    report.fds_open = open_fds(cfg.server_pid);
    report.bytes_per_connection =
        bytes_per_connection(report.rss_before_kib, report.rss_open_kib, report.opened);
    if report.rss_open_kib == 0 {
        bail!(
            "the server exited while {} connections were open{}",
            report.opened,
            report
                .first_error
                .as_deref()
                .map(|e| format!(" (first failure: {e})"))
                .unwrap_or_default()
        );
    }

    let closing = Instant::now();
    drop(held);
    let want = report.fds_before + FD_SLACK;
    report.closed_all = loop {
        let fds = open_fds(cfg.server_pid);
        if fds <= want {
            break true;
        }
        if closing.elapsed() > Duration::from_secs(CLOSE_LIMIT_SECS) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    report.close_secs = closing.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    report.rss_after_close_kib = rss_kib(cfg.server_pid);
    report.fds_after_close = open_fds(cfg.server_pid);
    Ok(report)
}

/// One connection: bind a source address, connect, TLS when asked, upgrade; returns what
/// keeps it open.
async fn open(
    cfg: &Config,
    index: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Held> {
    let socket = TcpSocket::new_v4()?;
    let source = source_address(cfg.source_net, index);
    socket
        .bind(source)
        .with_context(|| format!("binding {source}"))?;
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.port));
    let tcp = socket
        .connect(server)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    match tls {
        None => {
            let mut tcp = tcp;
            upgrade(&mut tcp, cfg, index).await?;
            Ok(Box::new(tcp))
        }
        Some(tls) => {
            let name =
                rustls::pki_types::ServerName::try_from("127.0.0.1").context("TLS server name")?;
            let mut stream = protolab_tls::stream::connect(tls, name, tcp)
                .await
                .context("TLS handshake")?;
            upgrade(&mut stream, cfg, index).await?;
            Ok(Box::new(stream))
        }
    }
}

/// Sends the upgrade request and reads the 101; anything after it is left unread.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    cfg: &Config,
    index: usize,
) -> anyhow::Result<()> {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&(index as u64).to_le_bytes());
    nonce[8..].copy_from_slice(&u64::from(cfg.source_net).to_le_bytes());
    let key = handshake::encode_key(nonce);
    let host = format!("127.0.0.1:{}", cfg.port);
    let mut out = Vec::with_capacity(256);
    handshake::write_request(&mut out, &host, &cfg.path, &key, None, &[], &[]);
    stream
        .write_all(&out)
        .await
        .context("sending the upgrade request")?;
    stream.flush().await?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let limits = HeadLimits::default();
    loop {
        if let Some((head, _)) =
            parse_response(&buf, &limits).context("parsing the upgrade response")?
        {
            handshake::check_response(&head, &key)?;
            return Ok(());
        }
        if buf.len() > 16 * 1024 {
            bail!("upgrade response head longer than 16 KiB");
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("server closed the connection during the upgrade");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_per_connection_from_two_readings() {
        // 10,000 connections that took 40,000 KiB: 4,096 bytes each.
        assert_eq!(bytes_per_connection(10_000, 50_000, 10_000), Some(4096.0));
        assert_eq!(bytes_per_connection(50_000, 40_000, 10), Some(0.0));
        assert_eq!(bytes_per_connection(1, 2, 0), None);
    }

    #[test]
    fn counts_own_descriptors() {
        let before = open_fds(std::process::id());
        let file = std::fs::File::open("/proc/self/status").unwrap();
        // Other tests may open files at the same time, never fewer.
        assert!(open_fds(std::process::id()) > before);
        drop(file);
    }
}

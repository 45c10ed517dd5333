//! The subscriber load of `protolab-bench hub`: N idle subscribers on one core, a publisher
//! that stamps each publication with its send time, and the three measurements the issue asks
//! for (publish-to-receipt latency, RSS per idle subscriber, deliveries per server CPU-second).
//!
//! Three wire protocols: socket.io over WebSocket only (`EIO=4&transport=websocket`, the minimal
//! Engine.IO framing a subscriber needs: `0` open, `40` connect, `2`/`3` ping/pong, `42` event),
//! the hub's JSON protocol on `/connection/ws`, and the hub's Server-Sent Events on
//! `/connection/sse`. Every server publishes on the story's `GET /notifs?msg=` so all peers do
//! exactly the same fan-out.
//!
//! A throughput run (`--throughput N`) connects its subscribers, then sends N publications with
//! [`PUBLISHERS`] in flight and measures publications per second until the last delivery.
//!
//! Each subscriber binds its own source address in 127.0.0.0/8 before it connects (at most
//! [`PER_SOURCE_ADDRESS`] per address), so 20,000 connections in a row, runs after runs, never
//! run out of ephemeral ports while the previous run's sockets sit in TIME_WAIT.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::cpu;

/// Subscribers sharing one source address.
pub const PER_SOURCE_ADDRESS: usize = 250;
/// Handshakes in flight at once, so the servers' accept backlogs never overflow.
const CONNECTING_AT_ONCE: usize = 200;
/// Bound of every phase.
pub const PHASE_LIMIT: Duration = Duration::from_secs(60);
/// Longest HTTP answer the publisher reads, and longest SSE line a subscriber buffers.
const MAX_ANSWER: usize = 64 * 1024;
/// Publications in flight at once in a throughput run, each on its own connection.
pub const PUBLISHERS: usize = 16;
/// Third octet of the publishers' source addresses: subscribers use 0 to 239 at most.
const PUBLISHER_GROUP: u8 = 255;

/// How subscribers talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Wire {
    /// socket.io v4 over WebSocket only, the `newmessage` event.
    SocketIo,
    /// protolab hub's `/connection/ws` JSON protocol, channel `notifs`.
    HubWs,
    /// protolab hub's `/connection/sse?channel=notifs` Server-Sent Events.
    HubSse,
}

/// One run of the load.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's port on 127.0.0.1.
    pub port: u16,
    /// Wire protocol of the subscribers.
    pub wire: Wire,
    /// Idle subscribers.
    pub subscribers: usize,
    /// Publications of the latency phase, one per second.
    pub publishes: u32,
    /// Publications of the burst phase, back to back.
    pub burst: u32,
    /// Second octet of the subscribers' source addresses (127.X.Y.Z), so runs in a row use
    /// fresh addresses.
    pub source_net: u8,
    /// The server's pid, for RSS and CPU time from /proc.
    pub server_pid: u32,
    /// A throughput run of this many publications instead of the latency and burst phases.
    pub throughput: Option<u32>,
}

/// What one run measured (printed as JSON by the `hub-client` subcommand).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Subscribers that completed their handshake.
    pub connected: usize,
    /// Subscribers that failed to connect or were dropped.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Seconds to connect every subscriber.
    pub connect_secs: f64,
    /// Server RSS before the first subscriber, KiB.
    pub rss_before_kib: u64,
    /// Server RSS with every subscriber connected and idle, KiB.
    pub rss_idle_kib: u64,
    /// (idle − before) / connected, bytes.
    pub rss_per_subscriber: Option<f64>,
    /// Publish-to-receipt latency of the one-per-second phase, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile of it, ms.
    pub p99_ms: Option<f64>,
    /// Its maximum, ms.
    pub max_ms: Option<f64>,
    /// Deliveries expected / received in the latency phase.
    pub latency_expected: u64,
    /// Deliveries received in the latency phase.
    pub latency_received: u64,
    /// Deliveries expected in the burst phase.
    pub burst_expected: u64,
    /// Deliveries received in the burst phase.
    pub burst_received: u64,
    /// Wall seconds of the burst phase.
    pub burst_secs: f64,
    /// Server CPU seconds (utime + stime, with children) during the burst phase.
    pub burst_server_cpu_secs: f64,
    /// burst_received / burst_server_cpu_secs.
    pub deliveries_per_cpu_sec: Option<f64>,
    /// Fewest publications any connected subscriber received, over both phases.
    pub min_received_per_subscriber: u32,
    /// Publications sent (both phases).
    pub publications: u32,
    /// Throughput run: deliveries expected (publications × subscribers).
    #[serde(default)]
    pub throughput_expected: u64,
    /// Throughput run: deliveries received.
    #[serde(default)]
    pub throughput_received: u64,
    /// Throughput run: seconds from the first publication to the last delivery.
    #[serde(default)]
    pub throughput_secs: f64,
    /// Throughput run: publications / throughput_secs, when every delivery arrived.
    #[serde(default)]
    pub publications_per_sec: Option<f64>,
}

/// Publication marker `t:<unix nanos>-n:<sequence>` inside whatever text the server delivers.
pub fn marker(sent_unix_nanos: u64, seq: u32) -> String {
    format!("t:{sent_unix_nanos}-n:{seq}")
}

/// Finds the marker in a delivered frame: `(sent unix nanos, sequence)`. Any text without a
/// whole marker gives `None`.
pub fn parse_marker(frame: &str) -> Option<(u64, u32)> {
    let at = frame.find("t:")?;
    let rest = &frame[at + 2..];
    let t_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let t = rest[..t_len].parse().ok()?;
    let rest = rest[t_len..].strip_prefix("-n:")?;
    let n_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n = rest[..n_len].parse().ok()?;
    Some((t, n))
}

/// What an Engine.IO/socket.io text frame asks of a subscriber.
#[derive(Debug, PartialEq, Eq)]
pub enum SocketIoFrame<'a> {
    /// `0{…}`: the Engine.IO open packet.
    Open,
    /// `40…`: connected to the default namespace.
    Connected,
    /// `2`: a ping to answer with `3`.
    Ping,
    /// `42[…]`: an event (its JSON array).
    Event(&'a str),
    /// `44…` or `41`: refused or disconnected by the server.
    Refused(&'a str),
    /// Anything else (acks, upgrades, noop).
    Other,
}

/// Classifies one socket.io text frame (Engine.IO type digit, then socket.io type digit).
pub fn socketio_frame(text: &str) -> SocketIoFrame<'_> {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.get(1)) {
        (Some(b'0'), _) => SocketIoFrame::Open,
        (Some(b'2'), None) => SocketIoFrame::Ping,
        (Some(b'4'), Some(b'0')) => SocketIoFrame::Connected,
        (Some(b'4'), Some(b'2')) => SocketIoFrame::Event(&text[2..]),
        (Some(b'4'), Some(b'1' | b'4')) => SocketIoFrame::Refused(text),
        (Some(b'1'), _) => SocketIoFrame::Refused(text),
        _ => SocketIoFrame::Other,
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Counters every subscriber updates.
struct Shared {
    /// Deliveries per publication sequence number.
    per_publication: Vec<AtomicU64>,
    /// Publications each subscriber received.
    per_subscriber: Vec<AtomicU32>,
    /// Latencies of the publications below `latency_publications`, µs.
    latency: Mutex<Histogram<u64>>,
    latency_publications: u32,
    connected: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, err: &anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| format!("{err:#}"));
        }
    }

    fn received(&self, subscriber: usize, frame: &str) {
        let Some((sent, seq)) = parse_marker(frame) else {
            return;
        };
        let Some(count) = self.per_publication.get(seq as usize) else {
            return;
        };
        count.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.per_subscriber.get(subscriber) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if seq < self.latency_publications {
            let micros = unix_nanos().saturating_sub(sent) / 1000;
            if let Ok(mut h) = self.latency.lock() {
                h.saturating_record(micros.max(1));
            }
        }
    }

    fn delivered(&self, seqs: std::ops::Range<u32>) -> u64 {
        seqs.filter_map(|s| self.per_publication.get(s as usize))
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

pub(crate) fn source_address(source_net: u8, index: usize) -> SocketAddr {
    let group = index / PER_SOURCE_ADDRESS;
    // 127.NET.G.H with NET at least 1, so never 127.0.0.1 (the servers' own address).
    let net = source_net.wrapping_add((group / 256) as u8).max(1);
    let addr = Ipv4Addr::new(
        127,
        net,
        (group % 256) as u8,
        1 + (index % PER_SOURCE_ADDRESS) as u8,
    );
    SocketAddr::V4(SocketAddrV4::new(addr, 0))
}

async fn subscriber(
    index: usize,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) -> anyhow::Result<()> {
    let permit = gate.acquire().await.context("connect gate closed")?;
    let socket = TcpSocket::new_v4()?;
    let source = source_address(cfg.source_net, index);
    socket
        .bind(source)
        .with_context(|| format!("binding {source}"))?;
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.port));
    let stream = tokio::time::timeout(PHASE_LIMIT, socket.connect(server))
        .await
        .context("TCP connect timed out")?
        .with_context(|| format!("connecting to {server}"))?;
    let socketio = match cfg.wire {
        Wire::SocketIo => true,
        Wire::HubWs => false,
        Wire::HubSse => return sse_subscriber(index, &cfg, &shared, stream, permit).await,
    };
    let url = if socketio {
        format!(
            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
            cfg.port
        )
    } else {
        format!("ws://127.0.0.1:{}/connection/ws", cfg.port)
    };
    let (mut ws, _) = tokio::time::timeout(
        PHASE_LIMIT,
        tokio_tungstenite::client_async(url.as_str(), stream),
    )
    .await
    .context("WebSocket handshake timed out")?
    .context("WebSocket handshake")?;
    if socketio {
        ws.send(Message::text("40")).await?;
    } else {
        ws.send(Message::text(
            r#"{"type":"subscribe","id":1,"channels":[{"channel":"notifs"}]}"#,
        ))
        .await?;
    }
    let mut permit = Some(permit);
    while let Some(msg) = ws.next().await {
        let text = match msg.context("reading")? {
            Message::Text(t) => t,
            Message::Close(frame) => bail!("closed by the server: {frame:?}"),
            _ => continue,
        };
        let ready = if socketio {
            match socketio_frame(&text) {
                SocketIoFrame::Ping => {
                    ws.send(Message::text("3")).await?;
                    false
                }
                SocketIoFrame::Connected => true,
                // Only the story's event: protolab's hub also emits `notification` (the full
                // record) on the same publication, which would count it twice.
                SocketIoFrame::Event(event) if event.starts_with(r#"["newmessage","#) => {
                    shared.received(index, event);
                    false
                }
                SocketIoFrame::Event(_) => false,
                SocketIoFrame::Refused(why) => bail!("refused by the server: {why}"),
                SocketIoFrame::Open | SocketIoFrame::Other => false,
            }
        } else if text.contains(r#""type":"notification""#) {
            shared.received(index, &text);
            false
        } else if text.contains(r#""type":"error""#) {
            bail!("refused by the hub: {text}");
        } else {
            text.contains(r#""type":"subscribed""#)
        };
        if ready && permit.take().is_some() {
            shared.connected.fetch_add(1, Ordering::Relaxed);
        }
    }
    if permit.is_some() {
        bail!("closed before subscribing");
    }
    bail!("the server closed the connection")
}

/// What one line of an SSE response means to a subscriber.
#[derive(Debug, PartialEq, Eq)]
pub enum SseLine<'a> {
    /// `event: subscribed`: the subscription is live.
    Subscribed,
    /// `event: error`: the hub gave up on this subscriber.
    Error,
    /// `data: …`: an event's data (a notification's JSON carries the marker).
    Data(&'a str),
    /// Anything else: ids, other events, keep-alive comments, chunk sizes, blank lines.
    Other,
}

/// Classifies one line of `/connection/sse`'s response (with its `\r` if any).
pub fn sse_line(line: &str) -> SseLine<'_> {
    let line = line.trim_end_matches('\r');
    match line.strip_prefix("event:").map(str::trim) {
        Some("subscribed") => SseLine::Subscribed,
        Some("error") => SseLine::Error,
        Some(_) => SseLine::Other,
        None => line
            .strip_prefix("data:")
            .map_or(SseLine::Other, SseLine::Data),
    }
}

/// An SSE subscriber: one `GET /connection/sse?channel=notifs`, then lines until the end.
async fn sse_subscriber(
    index: usize,
    cfg: &Config,
    shared: &Shared,
    mut stream: TcpStream,
    permit: tokio::sync::SemaphorePermit<'_>,
) -> anyhow::Result<()> {
    let request = format!(
        "GET /connection/sse?channel=notifs HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\n\r\n",
        cfg.port
    );
    stream.write_all(request.as_bytes()).await?;
    let mut permit = Some(permit);
    let mut status_seen = false;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.context("reading")?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&pending[start..start + end]);
            start += end + 1;
            if !status_seen {
                anyhow::ensure!(
                    line.starts_with("HTTP/1.1 200"),
                    "the hub answered `{}`",
                    line.trim_end()
                );
                status_seen = true;
                continue;
            }
            match sse_line(&line) {
                SseLine::Subscribed => {
                    if permit.take().is_some() {
                        shared.connected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                SseLine::Error => bail!("the hub sent an error event: {}", line.trim_end()),
                SseLine::Data(data) => shared.received(index, data),
                SseLine::Other => {}
            }
        }
        pending.drain(..start);
        anyhow::ensure!(
            pending.len() <= MAX_ANSWER,
            "an SSE line longer than {MAX_ANSWER} bytes"
        );
    }
    if permit.is_some() {
        bail!("closed before subscribing");
    }
    bail!("the server closed the connection")
}

/// Sends `GET /notifs?msg=S<marker>` and checks for a 2xx answer.
async fn publish(port: u16, seq: u32) -> anyhow::Result<()> {
    publish_from(port, seq, None).await
}

/// [`publish`] from `source` (a fresh address, so thousands of publications in a row never
/// wait for ports in TIME_WAIT).
async fn publish_from(port: u16, seq: u32, source: Option<SocketAddr>) -> anyhow::Result<()> {
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = match source {
        None => TcpStream::connect(server).await?,
        Some(source) => {
            let socket = TcpSocket::new_v4()?;
            socket
                .bind(source)
                .with_context(|| format!("binding {source}"))?;
            socket.connect(server).await?
        }
    };
    let msg = format!("Sbench-{}", marker(unix_nanos(), seq));
    let request = format!(
        "GET /notifs?msg={msg} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut answer)
        .await?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        bail!(
            "publish {seq}: the server answered `{}`",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(())
}

/// Waits until `done()` or `limit` passes; true when done.
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// Server RSS in KiB (`VmRSS` of /proc/PID/status; every server here is one process).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the three phases on the current (pinned) thread and reports.
pub async fn run(cfg: Config) -> anyhow::Result<Report> {
    anyhow::ensure!(cfg.subscribers > 0, "--subscribers must be at least 1");
    let total = cfg.throughput.unwrap_or(cfg.publishes + cfg.burst);
    let shared = Arc::new(Shared {
        per_publication: (0..total).map(|_| AtomicU64::new(0)).collect(),
        per_subscriber: (0..cfg.subscribers).map(|_| AtomicU32::new(0)).collect(),
        latency: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
        latency_publications: if cfg.throughput.is_some() {
            0
        } else {
            cfg.publishes
        },
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let cfg = Arc::new(cfg);
    let mut report = Report {
        rss_before_kib: rss_kib(cfg.server_pid),
        publications: total,
        ..Report::default()
    };

    // Phase 1: connect and settle.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..cfg.subscribers {
        let (cfg, shared, gate) = (cfg.clone(), shared.clone(), gate.clone());
        tasks.spawn(async move {
            if let Err(err) = subscriber(index, cfg, shared.clone(), gate).await {
                shared.fail(&err);
            }
        });
    }
    let n = cfg.subscribers as u64;
    wait_until(PHASE_LIMIT, || {
        shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) >= n
    })
    .await;
    report.connect_secs = started.elapsed().as_secs_f64();
    let connected = shared.connected.load(Ordering::Relaxed);
    anyhow::ensure!(
        connected > 0,
        "no subscriber connected: {}",
        shared
            .first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| "timed out".into())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.rss_idle_kib = rss_kib(cfg.server_pid);
    report.rss_per_subscriber = Some(
        (report.rss_idle_kib.saturating_sub(report.rss_before_kib) * 1024) as f64
            / connected as f64,
    );

    match cfg.throughput {
        Some(publications) => {
            throughput_phase(&cfg, &shared, connected, publications, &mut report).await?;
        }
        None => latency_and_burst_phases(&cfg, &shared, connected, &mut report).await?,
    }

    report.connected = connected as usize;
    report.failed = shared.failed.load(Ordering::Relaxed) as usize;
    report.first_error = shared.first_error.lock().ok().and_then(|e| e.clone());
    report.min_received_per_subscriber = shared
        .per_subscriber
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    tasks.abort_all();
    Ok(report)
}

/// One publication per second (latency from the stamp in each), then a burst of back-to-back
/// publications (deliveries per server CPU-second).
async fn latency_and_burst_phases(
    cfg: &Config,
    shared: &Shared,
    connected: u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let total = cfg.publishes + cfg.burst;
    // Phase 2: one publication per second; latency from the stamp in each.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut publishers = tokio::task::JoinSet::new();
    for seq in 0..cfg.publishes {
        tick.tick().await;
        let port = cfg.port;
        publishers.spawn(async move { publish(port, seq).await });
    }
    while let Some(done) = publishers.join_next().await {
        done.context("publisher task")??;
    }
    report.latency_expected = connected * u64::from(cfg.publishes);
    wait_until(PHASE_LIMIT / 3, || {
        shared.delivered(0..cfg.publishes) >= report.latency_expected
    })
    .await;
    report.latency_received = shared.delivered(0..cfg.publishes);
    if let Ok(h) = shared.latency.lock() {
        if !h.is_empty() {
            let ms = |v: u64| v as f64 / 1000.0;
            report.p50_ms = Some(ms(h.value_at_quantile(0.50)));
            report.p99_ms = Some(ms(h.value_at_quantile(0.99)));
            report.max_ms = Some(ms(h.max()));
        }
    }

    // Phase 3: a burst, publications back to back; deliveries per server CPU-second.
    let cpu_before = cpu::tree_cpu(cfg.server_pid).context("reading the server's CPU time")?;
    let burst_started = Instant::now();
    for seq in cfg.publishes..total {
        tokio::time::timeout(PHASE_LIMIT, publish(cfg.port, seq))
            .await
            .context("a burst publication timed out")??;
    }
    report.burst_expected = connected * u64::from(cfg.burst);
    let left = PHASE_LIMIT.saturating_sub(burst_started.elapsed());
    wait_until(left, || {
        shared.delivered(cfg.publishes..total) >= report.burst_expected
    })
    .await;
    let cpu_after = cpu::tree_cpu(cfg.server_pid).context("reading the server's CPU time")?;
    report.burst_secs = burst_started.elapsed().as_secs_f64();
    report.burst_received = shared.delivered(cfg.publishes..total);
    report.burst_server_cpu_secs = cpu_after.saturating_sub(cpu_before).as_secs_f64();
    if report.burst_server_cpu_secs > 0.0 {
        report.deliveries_per_cpu_sec =
            Some(report.burst_received as f64 / report.burst_server_cpu_secs);
    }
    Ok(())
}

/// `publications` with [`PUBLISHERS`] in flight, each from its own source address; the clock
/// stops at the last delivery.
async fn throughput_phase(
    cfg: &Config,
    shared: &Shared,
    connected: u64,
    publications: u32,
    report: &mut Report,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for publisher in 0..PUBLISHERS {
        let next = Arc::clone(&next);
        let (port, source_net) = (cfg.port, cfg.source_net);
        publishers.spawn(async move {
            let mut sent = 0usize;
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= publications {
                    return Ok::<(), anyhow::Error>(());
                }
                // 16 publishers × 14 addresses each: every address sees few enough connections
                // that TIME_WAIT never runs it out of ports.
                let host = 1 + (publisher * 14 + sent % 14) as u8;
                let source = SocketAddr::from((
                    Ipv4Addr::new(127, source_net.max(1), PUBLISHER_GROUP, host),
                    0,
                ));
                publish_from(port, seq, Some(source)).await?;
                sent += 1;
            }
        });
    }
    let all_sent = async {
        while let Some(done) = publishers.join_next().await {
            done.context("publisher task")??;
        }
        Ok::<(), anyhow::Error>(())
    };
    tokio::time::timeout(PHASE_LIMIT, all_sent)
        .await
        .context("the throughput publications took longer than the phase limit")??;
    report.throughput_expected = connected * u64::from(publications);
    let left = PHASE_LIMIT.saturating_sub(started.elapsed());
    wait_until(left, || {
        shared.delivered(0..publications) >= report.throughput_expected
    })
    .await;
    report.throughput_secs = started.elapsed().as_secs_f64();
    report.throughput_received = shared.delivered(0..publications);
    if report.throughput_received >= report.throughput_expected && report.throughput_secs > 0.0 {
        report.publications_per_sec = Some(f64::from(publications) / report.throughput_secs);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips_inside_any_frame() {
        let m = marker(1_764_000_000_123_456_789, 42);
        assert_eq!(parse_marker(&m), Some((1_764_000_000_123_456_789, 42)));
        let event = format!(r#"["newmessage",{{"message":"Sbench-{m}"}}]"#);
        assert_eq!(parse_marker(&event), Some((1_764_000_000_123_456_789, 42)));
        assert_eq!(parse_marker("t:12-x:3"), None);
        assert_eq!(parse_marker("t:-n:3"), None);
        assert_eq!(parse_marker("t:1-n:"), None);
        assert_eq!(parse_marker("t:99999999999999999999999-n:1"), None);
        assert_eq!(parse_marker(""), None);
    }

    #[test]
    fn classifies_socketio_frames() {
        assert_eq!(socketio_frame("0{\"sid\":\"a\"}"), SocketIoFrame::Open);
        assert_eq!(
            socketio_frame("40{\"sid\":\"b\"}"),
            SocketIoFrame::Connected
        );
        assert_eq!(socketio_frame("2"), SocketIoFrame::Ping);
        assert_eq!(socketio_frame("42[\"x\"]"), SocketIoFrame::Event("[\"x\"]"));
        assert_eq!(socketio_frame("44{}"), SocketIoFrame::Refused("44{}"));
        assert_eq!(socketio_frame("1"), SocketIoFrame::Refused("1"));
        assert_eq!(socketio_frame("6"), SocketIoFrame::Other);
        assert_eq!(socketio_frame(""), SocketIoFrame::Other);
        assert_eq!(socketio_frame("€"), SocketIoFrame::Other);
    }

    #[test]
    fn classifies_sse_lines() {
        assert_eq!(sse_line("event: subscribed"), SseLine::Subscribed);
        assert_eq!(sse_line("event:subscribed\r"), SseLine::Subscribed);
        assert_eq!(sse_line("event: error"), SseLine::Error);
        assert_eq!(sse_line("event: notification"), SseLine::Other);
        assert_eq!(sse_line("data: {\"x\":1}"), SseLine::Data(" {\"x\":1}"));
        for other in ["id: e:1", ":keepalive", "5a\r", "\r", "", "€"] {
            assert_eq!(sse_line(other), SseLine::Other, "{other:?}");
        }
        let m = marker(7, 3);
        let line = format!("data: {{\"body\":\"Sbench-{m}\"}}");
        let SseLine::Data(data) = sse_line(&line) else {
            panic!("not data")
        };
        assert_eq!(parse_marker(data), Some((7, 3)));
    }

    #[test]
    fn source_addresses_stay_in_loopback_and_spread() {
        let a = source_address(7, 0);
        let b = source_address(7, PER_SOURCE_ADDRESS);
        assert_ne!(a.ip(), b.ip());
        for i in [0, 249, 250, 19_999, 70_000] {
            let SocketAddr::V4(v4) = source_address(0, i) else {
                panic!("not v4")
            };
            assert!(v4.ip().is_loopback());
            assert_ne!(*v4.ip(), Ipv4Addr::LOCALHOST);
        }
    }
}

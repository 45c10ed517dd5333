//! The WebSocket load client: N connections, each a closed loop with one message in flight.
//!
//! Each connection sends one masked frame of `size` bytes, waits for its echo, counts it, and
//! sends the next. It runs on a current-thread tokio runtime because the driver pins it to one
//! core; the handshake and framing are `protolab_wire`'s sans-IO codec over a raw `TcpStream`
//! (or `protolab_tls::stream` for `wss`), so per message it costs one `write` and usually one `read`
//! syscall.
//!
//! The run is bounded in time and in count: after `warmup`, messages are counted for
//! `duration` or until `max_msgs`, whichever comes first. Server CPU (utime + stime of its
//! process tree) and our own CPU are read at the edges of the same window.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use protolab_wire::http1::{parse_response, HeadLimits};
use protolab_wire::ws::{
    decode_header, encode_frame, handshake, Decoder, DecoderConfig, Message, OpCode, Role,
};

use crate::cpu;

/// Where to connect: `ws://host:port/path` or `wss://host:port/path`. The client always
/// connects to 127.0.0.1; `host` is only sent in `Host` and as the TLS server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP as written in the URL.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Request target, e.g. `/ws`.
    pub path: String,
    /// `wss`.
    pub tls: bool,
}

impl std::str::FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(url: &str) -> anyhow::Result<Self> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("ws://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (true, r)
        } else {
            bail!("`{url}` is not a ws:// or wss:// URL");
        };
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
        let (host, port) = authority
            .rsplit_once(':')
            .with_context(|| format!("`{url}` has no port"))?;
        let port = port
            .parse()
            .with_context(|| format!("bad port in `{url}`"))?;
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            tls,
        })
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server to load.
    pub target: Target,
    /// CA certificate (PEM) to trust for `wss`.
    pub ca: Option<PathBuf>,
    /// Concurrent connections, one message in flight each.
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Send text frames (ASCII payload) instead of binary.
    pub text: bool,
    /// Time before counting starts: connections open, caches and TCP windows warm.
    pub warmup: Duration,
    /// Length of the measured window.
    pub duration: Duration,
    /// The window also ends once this many messages were echoed in it.
    pub max_msgs: u64,
    /// Server process whose CPU time (its process tree's) is read at the window's edges.
    pub server_pid: Option<u32>,
}

/// What one run measured. The driver reads it as JSON from the client's stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Echoes counted in the window.
    pub msgs: u64,
    /// Window length in seconds.
    pub secs: f64,
    /// `msgs / secs`.
    pub msgs_per_sec: f64,
    /// Server CPU seconds in the window, if its pid was given and readable.
    pub server_cpu_secs: Option<f64>,
    /// Our own CPU seconds in the window.
    pub client_cpu_secs: Option<f64>,
    /// Connections that failed (handshake, I/O, protocol) before the window ended.
    pub failed_connections: usize,
    /// The first such failure.
    pub first_error: Option<String>,
}

impl Report {
    /// Server CPU as a percentage of one core over the window.
    pub fn server_cpu_pct(&self) -> Option<f64> {
        self.server_cpu_secs.map(|c| 100.0 * c / self.secs)
    }

    /// Client CPU as a percentage of one core over the window.
    pub fn client_cpu_pct(&self) -> Option<f64> {
        self.client_cpu_secs.map(|c| 100.0 * c / self.secs)
    }

    /// Messages per second of server CPU: an efficiency figure that does not depend on the
    /// client keeping the server busy.
    pub fn msgs_per_server_cpu_sec(&self) -> Option<f64> {
        self.server_cpu_secs
            .filter(|&c| c > 0.0)
            .map(|c| self.msgs as f64 / c)
    }
}

/// Runs the load on a current-thread runtime and returns what it measured.
pub fn run(config: Config) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    // Dropping the runtime afterwards aborts any connection still waiting for an echo.
    rt.block_on(run_async(config))
}

async fn run_async(config: Config) -> anyhow::Result<Report> {
    let tls = match (&config.target.tls, &config.ca) {
        (true, Some(ca)) => Some(tls_config(ca)?),
        (true, None) => bail!("wss needs --ca with the server's CA certificate"),
        (false, _) => None,
    };
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let config = Arc::new(config);
    let mut tasks = JoinSet::new();
    for i in 0..config.connections {
        let (config, count, stop, tls) = (config.clone(), count.clone(), stop.clone(), tls.clone());
        tasks.spawn(async move { connection(i as u64, &config, tls, &count, &stop).await });
    }

    tokio::time::sleep(config.warmup).await;
    if let Some(res) = poll_early_failure(&mut tasks, config.connections) {
        stop.store(true, Ordering::Relaxed);
        return Err(res);
    }
    let start = Instant::now();
    let msgs0 = count.load(Ordering::Relaxed);
    let server0 = config.server_pid.and_then(cpu::tree_cpu);
    let client0 = cpu::self_cpu();
    let deadline = start + config.duration;
    loop {
        let now = Instant::now();
        if now >= deadline || count.load(Ordering::Relaxed) - msgs0 >= config.max_msgs {
            break;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(20))).await;
    }
    let msgs = count.load(Ordering::Relaxed) - msgs0;
    let secs = start.elapsed().as_secs_f64();
    let server1 = config.server_pid.and_then(cpu::tree_cpu);
    let client1 = cpu::self_cpu();
    stop.store(true, Ordering::Relaxed);

    // Failures that happened before the window ended; anything still running is aborted.
    let mut failed = 0;
    let mut first_error = None;
    let grace = tokio::time::sleep(Duration::from_millis(500));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(Err(err))) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("{err:#}"));
                }
                Some(_) => {}
                None => break,
            },
            () = &mut grace => break,
        }
    }
    tasks.abort_all();

    let diff = |a: Option<Duration>, b: Option<Duration>| Some((b? - a?).as_secs_f64());
    Ok(Report {
        msgs,
        secs,
        msgs_per_sec: msgs as f64 / secs,
        server_cpu_secs: diff(server0, server1),
        client_cpu_secs: diff(client0, client1),
        failed_connections: failed,
        first_error,
    })
}

/// If every connection already failed during warm-up, there is nothing to measure.
fn poll_early_failure(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    connections: usize,
) -> Option<anyhow::Error> {
    let mut first = None;
    let mut failed = 0;
    while let Some(joined) = tasks.try_join_next() {
        if let Ok(Err(err)) = joined {
            failed += 1;
            first.get_or_insert(err);
        }
    }
    match first {
        Some(err) if failed == connections => {
            Some(err.context(format!("all {connections} connections failed")))
        }
        Some(err) => {
            eprintln!("warning: {failed} of {connections} connections failed: {err:#}");
            None
        }
        None => None,
    }
}

pub(crate) fn tls_config(ca: &std::path::Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("reading CA certificate {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("parsing {}", ca.display()))?)
            .context("adding the CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // protolab_tls::stream takes the traffic keys over after the handshake.
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}

async fn connection(
    id: u64,
    config: &Config,
    tls: Option<Arc<rustls::ClientConfig>>,
    count: &AtomicU64,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(("127.0.0.1", config.target.port))
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{}", config.target.port))?;
    tcp.set_nodelay(true)?;
    match tls {
        None => echo_loop(tcp, id, config, count, stop).await,
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(config.target.host.clone())
                .context("TLS server name")?;
            // The same record layer as the lab's server: records are opened where they land
            // in the echo loop's buffer.
            let stream = protolab_tls::stream::connect(tls, name, tcp)
                .await
                .context("TLS handshake")?;
            echo_loop(stream, id, config, count, stop).await
        }
    }
}

/// A xorshift64 generator for nonces and masking keys: masks must vary per frame
/// (RFC 6455 §5.3) but need not be cryptographic for a benchmark against our own servers.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn echo_loop<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    id: u64,
    config: &Config,
    count: &AtomicU64,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = clock ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = Xorshift(seed | 1);
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&rng.next().to_le_bytes());
    nonce[8..].copy_from_slice(&rng.next().to_le_bytes());
    let key = handshake::encode_key(nonce);
    let host = format!("{}:{}", config.target.host, config.target.port);

    let mut out = Vec::with_capacity(config.size + 14);
    handshake::write_request(&mut out, &host, &config.target.path, &key, None, &[], &[]);
    stream
        .write_all(&out)
        .await
        .context("sending the upgrade request")?;
    stream.flush().await?;

    let mut buf: Vec<u8> = Vec::with_capacity((config.size + 14).max(4096) * 2);
    let limits = HeadLimits::default();
    let mut start = loop {
        if let Some((head, consumed)) =
            parse_response(&buf, &limits).context("parsing the upgrade response")?
        {
            handshake::check_response(&head, &key)?;
            break consumed;
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("server closed the connection during the handshake");
        }
    };

    let opcode = if config.text {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let payload: Vec<u8> = (0..config.size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut decoder = Decoder::new(Role::Client, DecoderConfig::default());

    while !stop.load(Ordering::Relaxed) {
        out.clear();
        encode_frame(&mut out, true, opcode, Some(mask(&mut rng)), &payload);
        stream.write_all(&out).await?;
        stream.flush().await?;
        // Read until our echo arrives; anything else the server sends (pushes, pings) is
        // answered or skipped.
        loop {
            // The usual case, checked in place: the whole echo, unfragmented, as sent. The
            // client must not cost more per message than the servers it compares; anything
            // else goes through the decoder, which enforces every rule.
            if let Some(end) = whole_echo(&buf[start..], &decoder, opcode, &payload) {
                start += end;
                break;
            }
            let (consumed, message) = decoder.decode(&buf[start..])?;
            start += consumed;
            let is_echo = match message {
                None if consumed > 0 => continue, // a fragment was absorbed
                None => {
                    // Compact before reading so the buffer never grows past a frame and a read.
                    buf.drain(..start);
                    start = 0;
                    buf.reserve(4096);
                    if stream.read_buf(&mut buf).await? == 0 {
                        bail!("server closed the connection");
                    }
                    continue;
                }
                Some(Message::Binary(data)) => opcode == OpCode::Binary && data == payload,
                Some(Message::Text(text)) => opcode == OpCode::Text && text.as_bytes() == payload,
                Some(Message::Ping(data)) => {
                    let mut pong = Vec::with_capacity(data.len() + 6);
                    encode_frame(&mut pong, true, OpCode::Pong, Some(mask(&mut rng)), &data);
                    stream.write_all(&pong).await?;
                    false
                }
                Some(Message::Pong(_)) => false,
                Some(Message::Close(frame)) => bail!("server sent a close frame: {frame:?}"),
            };
            // Otherwise a server push or some other message: not our echo.
            if is_echo {
                break;
            }
        }
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The length of the frame at the start of `buf` if it is our echo: final, unmasked,
/// unextended, of `opcode`, carrying exactly `payload`, with no fragmented message open.
fn whole_echo(buf: &[u8], decoder: &Decoder, opcode: OpCode, payload: &[u8]) -> Option<usize> {
    if decoder.in_message() {
        return None;
    }
    let (h, header_len) = decode_header(buf).ok()??;
    let end = header_len + payload.len();
    (h.fin
        && h.rsv == 0
        && h.mask.is_none()
        && h.opcode == opcode
        && h.payload_len == payload.len() as u64
        && buf.get(header_len..end) == Some(payload))
    .then_some(end)
}

fn mask(rng: &mut Xorshift) -> [u8; 4] {
    (rng.next() as u32).to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t: Target = "wss://localhost:3003/ws".parse().unwrap();
        assert_eq!(
            t,
            Target {
                host: "localhost".into(),
                port: 3003,
                path: "/ws".into(),
                tls: true
            }
        );
        let t: Target = "ws://127.0.0.1:9000".parse().unwrap();
        assert_eq!((t.path.as_str(), t.tls), ("/", false));
        assert!("http://x:1/".parse::<Target>().is_err());
    }
}

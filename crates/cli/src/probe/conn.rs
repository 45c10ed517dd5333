//! The probe's connection: DNS through the system resolver and TCP connects, both timed; then
//! one byte stream (plain or TLS) with every read and write bounded by the timeout, recorded
//! for `--raw`, and an end that says how the peer closed (FIN, RST, TLS close_notify).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

use super::report::{ms, Dns, RawChunk, TcpAttempt};

/// Most bytes `--raw` keeps; past it the transcript says it stopped.
pub(super) const MAX_RAW_BYTES: usize = 1 << 20;
/// Most unread bytes held while waiting for a head or a frame to complete (a frame may be up
/// to the WebSocket decoder's own 16 MiB limit; it streams larger payloads itself).
const READ_CHUNK: usize = 16 * 1024;

/// Resolves `host` with the system resolver (or takes an IP literal as is), timed.
pub(super) async fn resolve(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(Dns, Vec<SocketAddr>), String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        let dns = Dns {
            host: host.to_owned(),
            literal: true,
            addresses: vec![ip.to_string()],
            ms: 0.0,
        };
        return Ok((dns, vec![SocketAddr::new(ip, port)]));
    }
    let started = Instant::now();
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await;
    let took = started.elapsed();
    let addrs: Vec<SocketAddr> = match found {
        Err(_) => {
            return Err(format!(
                "looking up `{host}` took longer than {}: the resolver does not answer (check /etc/resolv.conf, or raise --timeout)",
                humantime::format_duration(timeout)
            ))
        }
        Ok(Err(err)) => {
            return Err(format!(
                "`{host}` does not resolve: {err} (is the name spelled right? `getent hosts {host}` asks the same resolver)"
            ))
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if addrs.is_empty() {
        return Err(format!("`{host}` resolves to no address"));
    }
    let dns = Dns {
        host: host.to_owned(),
        literal: false,
        addresses: addrs.iter().map(|a| a.ip().to_string()).collect(),
        ms: ms(took),
    };
    Ok((dns, addrs))
}

/// Connects to each address in turn, each attempt bounded by `timeout`, until one answers.
pub(super) async fn connect(
    addrs: &[SocketAddr],
    timeout: Duration,
    attempts: &mut Vec<TcpAttempt>,
) -> Option<TcpStream> {
    for addr in addrs {
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
        let took = ms(started.elapsed());
        let error = match result {
            Ok(Ok(stream)) => {
                // Small requests and frames go out at once, as a client's would.
                let _ = stream.set_nodelay(true);
                attempts.push(TcpAttempt {
                    address: addr.to_string(),
                    ms: took,
                    error: None,
                });
                return Some(stream);
            }
            Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionRefused => {
                "refused: nothing listens on this port (RST to our SYN)".to_owned()
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!(
                "no answer within {} (a firewall dropping SYNs, or a host that is down)",
                humantime::format_duration(timeout)
            ),
        };
        attempts.push(TcpAttempt {
            address: addr.to_string(),
            ms: took,
            error: Some(error),
        });
    }
    None
}

/// A plain or TLS byte stream.
pub(super) enum Stream {
    /// http, ws.
    Plain(TcpStream),
    /// https, wss.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How the peer ended the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    /// TCP FIN without a TLS close_notify (or on a plain connection).
    Fin,
    /// TCP RST.
    Rst,
    /// A TLS close_notify; `then_fin` when the TCP FIN followed.
    CloseNotify {
        /// Whether the FIN came right after.
        then_fin: bool,
    },
    /// Nothing arrived within the timeout.
    Timeout,
    /// Another I/O error.
    Error(String),
}

impl End {
    /// In words, for reports: `FIN`, `RST`, `TLS close_notify, then FIN`.
    pub(super) fn describe(&self, tls: bool) -> String {
        match self {
            Self::Fin if tls => "FIN (no TLS close_notify)".to_owned(),
            Self::Fin => "FIN".to_owned(),
            Self::Rst => "RST".to_owned(),
            Self::CloseNotify { then_fin: true } => "TLS close_notify, then FIN".to_owned(),
            Self::CloseNotify { then_fin: false } => "TLS close_notify".to_owned(),
            Self::Timeout => "nothing (timed out)".to_owned(),
            Self::Error(err) => err.clone(),
        }
    }
}

/// The open connection: the stream, bytes read but not consumed yet, and the transcript.
pub(super) struct Conn {
    stream: Stream,
    /// Received bytes the caller has not consumed.
    pub(super) buf: Vec<u8>,
    /// Every read and write bound.
    pub(super) timeout: Duration,
    opened: Instant,
    /// When the last byte went out or came in.
    pub(super) last_activity: Instant,
    raw: Option<Vec<RawChunk>>,
    raw_bytes: usize,
}

impl Conn {
    /// Wraps `stream`, opened at `opened`; `raw` turns the transcript on.
    pub(super) fn new(stream: Stream, opened: Instant, timeout: Duration, raw: bool) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            timeout,
            opened,
            last_activity: Instant::now(),
            raw: raw.then(Vec::new),
            raw_bytes: 0,
        }
    }

    /// Whether the stream is TLS.
    pub(super) fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The transcript so far (`--raw`), taken out.
    pub(super) fn take_raw(&mut self) -> Option<Vec<RawChunk>> {
        self.raw.take()
    }

    fn record(&mut self, direction: &'static str, label: &str, bytes: &[u8]) {
        let Some(raw) = &mut self.raw else { return };
        let room = MAX_RAW_BYTES.saturating_sub(self.raw_bytes);
        if room == 0 {
            return;
        }
        let kept = &bytes[..bytes.len().min(room)];
        self.raw_bytes += kept.len();
        let label = if kept.len() < bytes.len() {
            format!("{label} (--raw stops here: {MAX_RAW_BYTES} bytes recorded)")
        } else {
            label.to_owned()
        };
        raw.push(RawChunk {
            direction,
            at_ms: ms(self.opened.elapsed()),
            label,
            hex: kept.iter().map(|b| format!("{b:02x}")).collect(),
            bytes: kept.to_vec(),
        });
    }

    /// Writes all of `bytes` within the timeout.
    pub(super) async fn send(&mut self, bytes: &[u8], label: &str) -> Result<(), String> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(format!("sending the {label} failed: {err}")),
            Err(_) => {
                return Err(format!(
                    "sending the {label} did not finish within {} (the server stopped reading)",
                    humantime::format_duration(self.timeout)
                ))
            }
        }
        self.record("sent", label, bytes);
        self.last_activity = Instant::now();
        Ok(())
    }

    /// Reads more bytes into [`Conn::buf`] within `wait`; `Err` says how the stream ended.
    pub(super) async fn fill_within(&mut self, wait: Duration, label: &str) -> Result<usize, End> {
        let mut chunk = vec![0u8; READ_CHUNK];
        let read = tokio::time::timeout(wait, self.stream.read(&mut chunk)).await;
        match read {
            Err(_) => Err(End::Timeout),
            Ok(Ok(0)) => Err(match &mut self.stream {
                Stream::Plain(_) => End::Fin,
                Stream::Tls(tls) => End::CloseNotify {
                    then_fin: fin_follows(tls.get_mut().0).await,
                },
            }),
            Ok(Ok(n)) => {
                self.record("received", label, &chunk[..n]);
                self.buf.extend_from_slice(&chunk[..n]);
                self.last_activity = Instant::now();
                Ok(n)
            }
            Ok(Err(err)) => Err(classify(&err)),
        }
    }

    /// [`Conn::fill_within`] the timeout.
    pub(super) async fn fill(&mut self, label: &str) -> Result<usize, End> {
        self.fill_within(self.timeout, label).await
    }

    /// Closes our side: close_notify for TLS, then FIN. Errors do not matter any more.
    pub(super) async fn close(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.stream.shutdown()).await;
    }
}

/// After a close_notify: whether the TCP FIN follows promptly.
async fn fin_follows(tcp: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), tcp.read(&mut byte)).await,
        Ok(Ok(0))
    )
}

fn classify(err: &io::Error) -> End {
    match err.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => End::Rst,
        // rustls' word for a FIN that came without a close_notify.
        io::ErrorKind::UnexpectedEof => End::Fin,
        _ => End::Error(err.to_string()),
    }
}

/// The first bytes of `buf` for an error message: text when printable, hex otherwise.
pub(super) fn preview(buf: &[u8]) -> String {
    let head = &buf[..buf.len().min(48)];
    let printable = head
        .iter()
        .all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\r' || b == b'\n' || b == b'\t');
    if printable {
        format!("{:?}", String::from_utf8_lossy(head))
    } else {
        let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
        format!("hex {}", hex.join(" "))
    }
}

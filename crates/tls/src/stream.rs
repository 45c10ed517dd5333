//! A TLS stream whose handshake is rustls' and whose records are sealed and opened here.
//!
//! Why not rustls' own stream: its buffered connection copies every received record three
//! times (socket buffer → deframer → plaintext queue → caller) and every sent record into a
//! fresh allocation; on 16 KiB WSS echoes those copies were a tenth of both the server's and
//! the client's CPU. rustls' kernel API — made for kTLS, which this machine's kernel lacks —
//! hands over the traffic keys once the handshake is done and keeps the two jobs that need the
//! handshake's secrets: key updates and session tickets. [`TlsStream`] does the rest in user
//! space, as the kernel would: records read into the caller's buffer are opened where they
//! lie, each plaintext moved over its own header in the same AEAD pass (so no copy at all when
//! the caller reads with room for whole records), and sent plaintext is copied once, into the
//! output buffer, and sealed there. No allocation per record.
//!
//! The protocol stays rustls' wherever a secret is involved: the handshake, certificate
//! checks, key logging (`SSLKEYLOGFILE`-style, only when the config asks), key derivation for
//! TLS 1.3 key updates (both the peer's and ours at the AEAD's confidentiality limit) and
//! session tickets. Close: a close_notify ends reads cleanly (`Ok(0)`); an EOF without one is
//! an `UnexpectedEof` error, as with rustls, so a truncated response is never taken as whole.

mod handshake;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::{ClientConfig, ProtocolVersion, ServerConfig, SupportedCipherSuite};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::record::{self, alert, content_type, DirectionKeys, RecordError, Version};
use handshake::{handshake, negotiated, HandshakeBuffers};
pub use handshake::{suite_name, HandshakeError, Negotiated};

/// Sealed bytes the socket has not taken yet, beyond which writes wait for it.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Plaintext sealed per write call at most, so one huge write cannot balloon the buffer.
const MAX_WRITE_CHUNK: usize = 4 * record::MAX_PLAINTEXT;
/// Slices of a vectored write gathered into one record at most.
const MAX_PIECES: usize = 16;
/// Smallest free room in a caller's buffer worth reading records straight into.
const DIRECT_MIN: usize = 2048;
/// Post-handshake handshake messages (tickets, key updates) buffered across records at most.
const MAX_POST_HANDSHAKE_BYTES: usize = 64 * 1024;
/// Handshake message types (RFC 8446 §4).
const NEW_SESSION_TICKET: u8 = 4;
const KEY_UPDATE: u8 = 24;
const HELLO_REQUEST: u8 = 0;
const CLIENT_HELLO: u8 = 1;

/// rustls' state after the handshake, which computes key updates and stores tickets.
enum Kernel {
    Server(KernelConnection<ServerConnectionData>),
    Client(KernelConnection<ClientConnectionData>),
}

impl Kernel {
    fn update_tx(&mut self) -> Result<(u64, rustls::ConnectionTrafficSecrets), rustls::Error> {
        match self {
            Self::Server(k) => k.update_tx_secret(),
            Self::Client(k) => k.update_tx_secret(),
        }
    }

    fn update_rx(&mut self) -> Result<(u64, rustls::ConnectionTrafficSecrets), rustls::Error> {
        match self {
            Self::Server(k) => k.update_rx_secret(),
            Self::Client(k) => k.update_rx_secret(),
        }
    }
}

/// How the read side stands.
#[derive(Debug, Clone)]
enum ReadEnd {
    Open,
    /// The peer sent close_notify: reads return end of stream.
    CloseNotify,
    /// The connection failed; every later read returns this.
    Failed(io::ErrorKind, String),
}

/// A TLS connection over `IO` (usually a `TcpStream`) after a completed handshake; read and
/// write plaintext through `AsyncRead` and `AsyncWrite`. Flush after writing: sealed records
/// wait in the stream until the socket takes them.
pub struct TlsStream<IO> {
    io: IO,
    kernel: Kernel,
    version: Version,
    negotiated: Negotiated,
    rx: DirectionKeys,
    tx: DirectionKeys,
    /// Records sealed under the current send keys at which to move to new ones (TLS 1.3) or
    /// stop (TLS 1.2): the suite's confidentiality limit.
    tx_limit: u64,
    /// Ciphertext read but not yet opened: the start of a record the caller had no room for,
    /// or that arrived in pieces. Zero-filled when grown, reused while busy, freed when idle.
    carry: Vec<u8>,
    carry_len: usize,
    /// Opened plaintext the caller had no room for.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Post-handshake handshake bytes (tickets, key updates) not yet a whole message.
    post_handshake: Vec<u8>,
    /// Sealed records the socket has not taken yet.
    out: Vec<u8>,
    out_pos: usize,
    read_end: ReadEnd,
    close_notify_sent: bool,
    /// Where to add the wire size of every post-handshake handshake record received (TLS 1.3
    /// session tickets, key updates), header and AEAD tag included, if someone asked.
    post_handshake_wire: Option<Arc<AtomicU64>>,
}

impl<IO> std::fmt::Debug for TlsStream<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("negotiated", &self.negotiated)
            .field("read_end", &self.read_end)
            .finish_non_exhaustive()
    }
}

/// Accepts a TLS connection on `io` as a server. `config` must allow secret extraction, as
/// every config from this crate's builders does.
pub async fn accept<IO>(
    config: Arc<ServerConfig>,
    mut io: IO,
) -> Result<TlsStream<IO>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    if !config.enable_secret_extraction {
        return Err(HandshakeError::Tls(rustls::Error::General(
            "the server config must set enable_secret_extraction".into(),
        )));
    }
    let mut conn = UnbufferedServerConnection::new(config)?;
    let mut bufs = handshake(&mut conn, &mut io).await?;
    let negotiated = negotiated(&conn)?;
    let (secrets, kernel) = conn.dangerous_into_kernel_connection()?;
    TlsStream::new(io, Kernel::Server(kernel), negotiated, secrets, &mut bufs)
}

/// Connects as a client to `name` over `io`. `config` must allow secret extraction, as every
/// config from this crate's builders does.
pub async fn connect<IO>(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    mut io: IO,
) -> Result<TlsStream<IO>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    if !config.enable_secret_extraction {
        return Err(HandshakeError::Tls(rustls::Error::General(
            "the client config must set enable_secret_extraction".into(),
        )));
    }
    let mut conn = UnbufferedClientConnection::new(config, name)?;
    let mut bufs = handshake(&mut conn, &mut io).await?;
    let negotiated = negotiated(&conn)?;
    let (secrets, kernel) = conn.dangerous_into_kernel_connection()?;
    TlsStream::new(io, Kernel::Client(kernel), negotiated, secrets, &mut bufs)
}

/// The AEAD's confidentiality limit for the negotiated suite, in records.
fn confidentiality_limit(suite: Option<SupportedCipherSuite>) -> u64 {
    match suite {
        Some(SupportedCipherSuite::Tls13(s)) => s.common.confidentiality_limit,
        Some(SupportedCipherSuite::Tls12(s)) => s.common.confidentiality_limit,
        None => u64::MAX,
    }
}

impl<IO> TlsStream<IO> {
    fn new(
        io: IO,
        kernel: Kernel,
        negotiated: Negotiated,
        secrets: rustls::ExtractedSecrets,
        bufs: &mut HandshakeBuffers,
    ) -> Result<Self, HandshakeError> {
        let (version, suite) = match &kernel {
            Kernel::Server(k) => (k.protocol_version(), k.negotiated_cipher_suite()),
            Kernel::Client(k) => (k.protocol_version(), k.negotiated_cipher_suite()),
        };
        let version = match version {
            ProtocolVersion::TLSv1_3 => Version::Tls13,
            ProtocolVersion::TLSv1_2 => Version::Tls12,
            other => {
                return Err(HandshakeError::Tls(rustls::Error::General(format!(
                    "no record layer for {other:?}"
                ))))
            }
        };
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        // Buffers start as small as what they hold: an idle connection keeps none (see
        // `poll_read_ready`), and a busy one grows them on first use.
        let leftover = &bufs.incoming[..bufs.used];
        let carry = leftover.to_vec();
        Ok(Self {
            io,
            kernel,
            version,
            negotiated,
            rx: DirectionKeys::new(version, rx_seq, &rx)?,
            tx: DirectionKeys::new(version, tx_seq, &tx)?,
            tx_limit: confidentiality_limit(Some(suite)),
            carry,
            carry_len: leftover.len(),
            plain: std::mem::take(&mut bufs.early_plain),
            plain_pos: 0,
            post_handshake: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            read_end: ReadEnd::Open,
            close_notify_sent: false,
            post_handshake_wire: None,
        })
    }

    /// Adds the wire size (record header, body and AEAD tag) of every post-handshake
    /// handshake record received from now on — TLS 1.3 session tickets and key updates — to
    /// `counter`, so byte accounting can put them on a line of their own rather than on
    /// whichever message they happened to arrive with.
    pub fn count_post_handshake_records(&mut self, counter: Arc<AtomicU64>) {
        self.post_handshake_wire = Some(counter);
    }

    /// What the handshake agreed.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Moves to new send keys (a TLS 1.3 KeyUpdate) every `records` records, instead of only
    /// at the cipher's confidentiality limit; for rolling keys on long-lived connections.
    /// TLS 1.2 has no key update, and such a connection fails when it reaches the interval.
    pub fn set_key_update_interval(&mut self, records: u64) {
        self.tx_limit = records.max(1).min(self.tx_limit);
    }

    /// The underlying transport.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Seals `pieces` (at most one record's worth) as `content_type`, first moving to new keys
    /// if the current ones reached their limit.
    fn seal(&mut self, content_type: u8, pieces: &[&[u8]]) -> io::Result<()> {
        if self.tx.seq() >= self.tx_limit {
            self.refresh_tx_keys()?;
        }
        record::seal(
            self.version,
            &mut self.tx,
            &mut self.out,
            content_type,
            pieces,
        )
        .map_err(|e| io::Error::other(e.reason))
    }

    /// TLS 1.3: tells the peer we move to new send keys (KeyUpdate, not asking it to do the
    /// same), under the old keys, then moves. TLS 1.2 has no key update: the connection ends.
    fn refresh_tx_keys(&mut self) -> io::Result<()> {
        if self.version != Version::Tls13 {
            return Err(io::Error::other(
                "TLS 1.2 connection reached its cipher's record limit",
            ));
        }
        let key_update = [KEY_UPDATE, 0, 0, 1, 0];
        record::seal(
            self.version,
            &mut self.tx,
            &mut self.out,
            content_type::HANDSHAKE,
            &[&key_update],
        )
        .map_err(|e| io::Error::other(e.reason))?;
        let (seq, secrets) = self.kernel.update_tx().map_err(io::Error::other)?;
        self.tx = DirectionKeys::new(self.version, seq, &secrets)
            .map_err(|e| io::Error::other(e.reason))?;
        Ok(())
    }

    /// Ends the read side with `err`, queueing the fatal alert it names.
    fn fail(&mut self, err: &RecordError) -> io::Error {
        if !self.close_notify_sent {
            // Fatal alert: level 2. Nothing may follow it.
            let _ = record::seal(
                self.version,
                &mut self.tx,
                &mut self.out,
                content_type::ALERT,
                &[&[2, err.alert]],
            );
            self.close_notify_sent = true;
        }
        let kind = io::ErrorKind::InvalidData;
        self.read_end = ReadEnd::Failed(kind, err.reason.clone());
        io::Error::new(kind, err.reason.clone())
    }

    /// Acts on a record that is not application data. Alerts end the read side; handshake
    /// messages go to rustls (tickets, key updates).
    fn control(&mut self, content_type: u8, body: &[u8]) -> Result<(), RecordError> {
        match content_type {
            content_type::ALERT => {
                let [level, description] = body else {
                    return Err(RecordError {
                        alert: alert::DECODE_ERROR,
                        reason: "malformed alert".into(),
                    });
                };
                match (*level, *description) {
                    (_, alert::CLOSE_NOTIFY) => self.read_end = ReadEnd::CloseNotify,
                    // A warning that a close follows; TLS 1.2 peers may also warn about
                    // renegotiation. Neither ends the connection by itself.
                    (1, alert::USER_CANCELED | alert::NO_RENEGOTIATION) => {}
                    (_, description) => {
                        self.read_end = ReadEnd::Failed(
                            io::ErrorKind::ConnectionAborted,
                            format!("the peer sent TLS alert {description}"),
                        );
                    }
                }
                Ok(())
            }
            content_type::HANDSHAKE => {
                if self.post_handshake.len() + body.len() > MAX_POST_HANDSHAKE_BYTES {
                    return Err(RecordError {
                        alert: alert::UNEXPECTED_MESSAGE,
                        reason: "post-handshake messages over the size limit".into(),
                    });
                }
                self.post_handshake.extend_from_slice(body);
                self.post_handshake_messages()
            }
            content_type::APPLICATION_DATA => Ok(()),
            other => Err(RecordError {
                alert: alert::UNEXPECTED_MESSAGE,
                reason: format!("record of type {other} after the handshake"),
            }),
        }
    }

    fn post_handshake_messages(&mut self) -> Result<(), RecordError> {
        let unexpected = |reason: String| RecordError {
            alert: alert::UNEXPECTED_MESSAGE,
            reason,
        };
        let mut at = 0;
        while let Some((kind, body, taken)) =
            record::next_handshake_message(&self.post_handshake[at..])
        {
            let body = body.to_vec();
            at += taken;
            match (kind, self.version, &mut self.kernel) {
                (KEY_UPDATE, Version::Tls13, _) => {
                    let request_update = match body.as_slice() {
                        [0] => false,
                        [1] => true,
                        _ => {
                            return Err(RecordError {
                                alert: alert::DECODE_ERROR,
                                reason: "malformed KeyUpdate".into(),
                            })
                        }
                    };
                    // A key update must end its record (RFC 8446 §5.1).
                    if at != self.post_handshake.len() {
                        return Err(unexpected("data after a KeyUpdate in its record".into()));
                    }
                    let (seq, secrets) = self
                        .kernel
                        .update_rx()
                        .map_err(|e| unexpected(e.to_string()))?;
                    self.rx = DirectionKeys::new(self.version, seq, &secrets)?;
                    if request_update {
                        self.refresh_tx_keys().map_err(|e| RecordError {
                            alert: alert::INTERNAL_ERROR,
                            reason: e.to_string(),
                        })?;
                    }
                }
                (NEW_SESSION_TICKET, Version::Tls13, Kernel::Client(kernel)) => {
                    kernel
                        .handle_new_session_ticket(&body)
                        .map_err(|e| unexpected(format!("bad session ticket: {e}")))?;
                }
                (HELLO_REQUEST, Version::Tls12, Kernel::Client(_))
                | (CLIENT_HELLO, Version::Tls12, Kernel::Server(_)) => {
                    // Renegotiation is refused politely (RFC 5746 §4.2 / §4.4).
                    record::seal(
                        self.version,
                        &mut self.tx,
                        &mut self.out,
                        content_type::ALERT,
                        &[&[1, alert::NO_RENEGOTIATION]],
                    )?;
                }
                (kind, _, _) => {
                    return Err(unexpected(format!(
                        "handshake message {kind} after the handshake"
                    )))
                }
            }
        }
        self.post_handshake.drain(..at);
        Ok(())
    }
}

impl<IO: AsyncWrite + Unpin> TlsStream<IO> {
    /// Writes sealed bytes until none are left or the socket is full.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.out_pos..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.out_pos += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsStream<IO> {
    /// Opens every whole record in `buf[from..]`, moving the plaintext to `buf[to..]`.
    /// Returns the plaintext length and where the unopened rest starts.
    fn open_records(
        &mut self,
        buf: &mut [u8],
        from: usize,
        to: usize,
    ) -> Result<(usize, usize), RecordError> {
        let (mut src, mut dst) = (from, to);
        while matches!(self.read_end, ReadEnd::Open) {
            let Some(len) = record::record_len(self.version, &buf[src..])? else {
                break;
            };
            if buf.len() - src < len {
                break;
            }
            let opened = record::open(self.version, &mut self.rx, buf, dst, src, len)?;
            src += len;
            if opened.content_type == content_type::APPLICATION_DATA {
                dst += opened.len;
            } else {
                if opened.content_type == content_type::HANDSHAKE {
                    if let Some(counter) = &self.post_handshake_wire {
                        counter.fetch_add(len as u64, Ordering::Relaxed);
                    }
                }
                let body = buf[dst..dst + opened.len].to_vec();
                self.control(opened.content_type, &body)?;
            }
        }
        Ok((dst - to, src))
    }

    /// Opens the whole records carried over and hands their plaintext to `buf` (the rest to
    /// `plain`). Returns true if any plaintext came out.
    fn open_carried(&mut self, buf: &mut ReadBuf<'_>) -> Result<bool, RecordError> {
        let mut carry = std::mem::take(&mut self.carry);
        let result = self.open_records(&mut carry[..self.carry_len], 0, 0);
        let (produced, consumed) = match result {
            Ok(r) => r,
            Err(e) => {
                self.carry = carry;
                return Err(e);
            }
        };
        let direct = produced.min(buf.remaining());
        buf.put_slice(&carry[..direct]);
        self.plain.clear();
        self.plain.extend_from_slice(&carry[direct..produced]);
        self.plain_pos = 0;
        carry.copy_within(consumed..self.carry_len, 0);
        self.carry_len -= consumed;
        self.carry = carry;
        Ok(produced > 0)
    }

    /// Whether the carried bytes hold a whole record (or a bad header, which opening reports).
    fn carry_has_record(&self) -> bool {
        match record::record_len(self.version, &self.carry[..self.carry_len]) {
            Ok(Some(len)) => len <= self.carry_len,
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

/// A transport that can say when a read would find something, without reading: what lets a
/// server wait on an idle connection with no read buffer lent to it.
pub trait ReadReady {
    /// Ready once a read would not block (data, end of stream or an error is there).
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Frees whatever buffers the transport holds empty; for a connection that has gone
    /// quiet. A busy one keeps them warm: freeing them after every message cost a fifth of
    /// the 16 KiB WSS echo rate.
    fn release_idle_buffers(&mut self) {}
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Self::poll_read_ready(self, cx)
    }
}

impl<IO: ReadReady + AsyncRead + AsyncWrite + Unpin> ReadReady for TlsStream<IO> {
    /// Ready at once when opened plaintext, a whole carried record or the end of the read side
    /// is waiting; otherwise when the socket is.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.out_pos < self.out.len() {
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                return Poll::Ready(Err(e));
            }
        }
        if self.plain_pos < self.plain.len()
            || !matches!(self.read_end, ReadEnd::Open)
            || (self.carry_len > 0 && self.carry_has_record())
        {
            return Poll::Ready(Ok(()));
        }
        self.io.poll_read_ready(cx)
    }

    /// Frees every buffer that holds nothing right now: an idle TLS connection then costs its
    /// keys and rustls' state, not up to 50 KiB of empty buffers.
    fn release_idle_buffers(&mut self) {
        if self.carry_len == 0 {
            self.carry = Vec::new();
        }
        if self.plain_pos >= self.plain.len() {
            self.plain = Vec::new();
            self.plain_pos = 0;
        }
        if self.out_pos >= self.out.len() {
            self.out = Vec::new();
            self.out_pos = 0;
        }
        if self.post_handshake.is_empty() {
            self.post_handshake = Vec::new();
        }
    }
}

impl<IO> TlsStream<IO> {
    /// Bytes of buffer capacity the stream holds right now (carried and opened records,
    /// post-handshake messages, sealed records not yet sent).
    pub fn buffered_capacity(&self) -> usize {
        self.carry.capacity()
            + self.plain.capacity()
            + self.post_handshake.capacity()
            + self.out.capacity()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Answers queued while reading (key updates, alerts) go out as soon as they can; a
        // full socket is no reason to stop reading.
        if this.out_pos < this.out.len() {
            if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
                return Poll::Ready(Err(e));
            }
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.plain_pos < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_pos);
                buf.put_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                return Poll::Ready(Ok(()));
            }
            match &this.read_end {
                ReadEnd::Open => {}
                ReadEnd::CloseNotify => return Poll::Ready(Ok(())),
                ReadEnd::Failed(kind, msg) => {
                    return Poll::Ready(Err(io::Error::new(*kind, msg.clone())))
                }
            }
            if this.carry_has_record() {
                match this.open_carried(buf) {
                    Ok(true) => return Poll::Ready(Ok(())),
                    Ok(false) => continue,
                    Err(e) => return Poll::Ready(Err(this.fail(&e))),
                }
            }
            if this.carry_len == 0 && buf.remaining() >= DIRECT_MIN {
                // Straight into the caller's buffer, opened where it lands.
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
                let end = buf.filled().len();
                if end == before {
                    return Poll::Ready(Err(truncated()));
                }
                let opened = this.open_records(buf.filled_mut(), before, before);
                let (produced, consumed) = match opened {
                    Ok(r) => r,
                    Err(e) => {
                        buf.set_filled(before);
                        return Poll::Ready(Err(this.fail(&e)));
                    }
                };
                // A record's beginning waits in `carry` for the rest of it.
                let rest = &buf.filled()[consumed..end];
                if rest.len() > this.carry.len() {
                    this.carry.resize(rest.len(), 0);
                }
                this.carry[..rest.len()].copy_from_slice(rest);
                this.carry_len = rest.len();
                buf.set_filled(before + produced);
                if produced > 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // Into `carry`, with room for the whole record whose header is there.
            let want = match record::record_len(this.version, &this.carry[..this.carry_len]) {
                Ok(Some(len)) => len,
                Ok(None) => record::HEADER_LEN,
                Err(e) => return Poll::Ready(Err(this.fail(&e))),
            };
            if this.carry.len() < want.max(record::MAX_RECORD) {
                this.carry.resize(want.max(record::MAX_RECORD), 0);
            }
            let mut into = ReadBuf::new(&mut this.carry[this.carry_len..]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut into))?;
            let n = into.filled().len();
            if n == 0 {
                return Poll::Ready(Err(truncated()));
            }
            this.carry_len += n;
        }
    }
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "peer closed connection without sending TLS close_notify",
    )
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_notify_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS connection is closed for writing",
            )));
        }
        if this.out.len() - this.out_pos >= OUT_HIGH_WATER {
            ready!(this.poll_write_out(cx))?;
        }
        // Gather up to MAX_WRITE_CHUNK bytes into records of at most MAX_PLAINTEXT each. The
        // pieces of one record are listed on the stack; a caller with more slices than that
        // gets a record boundary sooner, which TLS allows anywhere.
        let mut taken = 0;
        let mut pieces: [&[u8]; MAX_PIECES] = [&[]; MAX_PIECES];
        let (mut count, mut in_record) = (0, 0);
        'gather: for slice in bufs.iter().map(|b| &b[..]) {
            let mut slice = slice;
            while !slice.is_empty() {
                if taken == MAX_WRITE_CHUNK {
                    break 'gather;
                }
                let n = slice
                    .len()
                    .min(record::MAX_PLAINTEXT - in_record)
                    .min(MAX_WRITE_CHUNK - taken);
                pieces[count] = &slice[..n];
                count += 1;
                slice = &slice[n..];
                in_record += n;
                taken += n;
                if in_record == record::MAX_PLAINTEXT || count == MAX_PIECES {
                    this.seal(content_type::APPLICATION_DATA, &pieces[..count])?;
                    (count, in_record) = (0, 0);
                }
            }
        }
        if count > 0 {
            this.seal(content_type::APPLICATION_DATA, &pieces[..count])?;
        }
        // Start sending now; whatever the socket does not take waits for the next write or
        // the flush.
        if let Poll::Ready(Err(e)) = this.poll_write_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_notify_sent {
            this.close_notify_sent = true;
            // Warning level (1), close_notify.
            record::seal(
                this.version,
                &mut this.tx,
                &mut this.out,
                content_type::ALERT,
                &[&[1, alert::CLOSE_NOTIFY]],
            )
            .map_err(|e| io::Error::other(e.reason))?;
        }
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

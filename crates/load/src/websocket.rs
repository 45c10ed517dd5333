//! A minimal WebSocket client on the load generator's own connection code: connect to a
//! `ws://` or `wss://` URL (permessage-deflate optional), send and receive messages, close.
//! For tools and tests that need one real, rule-abiding client connection (Autobahn's
//! fuzzing server drives it in the tests); load comes from [`crate::run`].
//!
//! Pings are answered while receiving; a close frame from the server is answered and the
//! connection closed before [`WebSocket::recv`] returns it; a protocol violation by the
//! server is answered with a close frame carrying its code (1002, 1007 or 1009) before the
//! error is returned.

use std::time::{Duration, Instant};

use protolab_wire::ws::deflate::{Offer, Params};
use protolab_wire::ws::{CloseFrame, Message, OpCode};

use crate::client::{Conn, Failure};
use crate::counting::Snapshot;
use crate::{Config, ErrorKind, Target, Trust};

/// How to connect.
#[derive(Debug, Clone)]
pub struct Options {
    /// What TLS trusts (wss only). Default: nothing, which fails for wss.
    pub trust: Trust,
    /// Offer permessage-deflate with this offer. Default `None`.
    pub deflate: Option<Offer>,
    /// Bound on connecting (TCP, TLS, upgrade) and on each send or receive. Default 10 s.
    pub timeout: Duration,
    /// Subprotocols to offer.
    pub subprotocols: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            trust: Trust::Roots(protolab_tls::Roots::new()),
            deflate: None,
            timeout: Duration::from_secs(10),
            subprotocols: Vec::new(),
        }
    }
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// The server closed (with its code and reason, if any); the close was answered and the
    /// connection is closed.
    Close(Option<CloseFrame>),
}

/// Why connecting, sending or receiving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The URL or options were unusable (see [`crate::Error`]).
    #[error(transparent)]
    Setup(#[from] crate::Error),
    /// The connection failed: refused, timed out, closed, TLS, or the server broke the
    /// protocol.
    #[error("{detail}")]
    Failed {
        /// What kind of failure.
        kind: ErrorKind,
        /// What happened.
        detail: String,
        /// For a protocol violation by the server: the close code sent to it.
        close_code: Option<u16>,
    },
}

impl From<Failure> for WsError {
    fn from(f: Failure) -> Self {
        Self::Failed {
            kind: f.kind,
            detail: f.detail,
            close_code: f.close_code,
        }
    }
}

/// One client connection. Dropping it drops the socket (no close handshake); call
/// [`close`](Self::close) for a clean end.
pub struct WebSocket {
    conn: Conn,
    timeout: Duration,
    closed: bool,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("deflate", &self.conn.deflate())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl WebSocket {
    /// Connects to `url` (`ws://` or `wss://`) and completes the opening handshake.
    ///
    /// Cancel safety: dropping the future drops the half-open connection.
    pub async fn connect(url: &str, options: Options) -> Result<Self, WsError> {
        let target = Target::parse(url)?;
        if !target.scheme.is_ws() {
            return Err(crate::Error::BadUrl {
                url: url.to_owned(),
                reason: "a WebSocket client needs a ws:// or wss:// URL",
            }
            .into());
        }
        let mut config = Config::new(target);
        config.trust = options.trust;
        config.deflate = options.deflate;
        config.subprotocols = options.subprotocols;
        config.size = 0;
        config.connect_timeout = options.timeout;
        config.validate()?;
        let plan = crate::run::plan(&config).await?;
        let (conn, _) = Conn::open(&plan, Instant::now() + options.timeout).await?;
        Ok(Self {
            conn,
            timeout: options.timeout,
            closed: false,
        })
    }

    /// permessage-deflate as agreed in the handshake; `None` if not offered or declined.
    pub fn deflate(&self) -> Option<Params> {
        self.conn.deflate()
    }

    /// Bytes sent and received on the wire so far (under TLS: TLS records).
    pub fn wire_bytes(&self) -> Snapshot {
        self.conn.counts().wire
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    fn check_open(&self) -> Result<(), WsError> {
        if self.closed {
            return Err(WsError::Failed {
                kind: ErrorKind::Closed,
                detail: "the connection is closed".into(),
                close_code: None,
            });
        }
        Ok(())
    }

    /// The next text or binary message. A close from the server is answered (its code
    /// echoed, RFC 6455 §5.5.1), the server's TCP close awaited, and returned as
    /// [`Received::Close`]. A protocol violation is answered with a close frame carrying its
    /// code, then returned as an error with that `close_code`.
    ///
    /// Cancel safety: not cancel safe; a message partly read is lost with the future.
    pub async fn recv(&mut self) -> Result<Received, WsError> {
        self.check_open()?;
        let result = self.conn.receive(self.deadline()).await;
        match result {
            Ok(Message::Text(text)) => Ok(Received::Text(text)),
            Ok(Message::Binary(data)) => Ok(Received::Binary(data)),
            Ok(Message::Close(frame)) => {
                self.closed = true;
                let code = frame.as_ref().map(|f| f.code);
                let deadline = self.deadline();
                let _ = self.conn.send_close(code, "", deadline).await;
                self.conn.await_server_close(deadline).await;
                Ok(Received::Close(frame))
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => Err(WsError::Failed {
                kind: ErrorKind::Protocol,
                detail: "a control frame surfaced from the receive loop".into(),
                close_code: None,
            }),
            Err(failure) => {
                if let Some(code) = failure.close_code {
                    // RFC 6455 §7.1.7: fail the connection with a close frame, then wait for
                    // the server to close.
                    self.closed = true;
                    let deadline = self.deadline();
                    let _ = self.conn.send_close(Some(code), "", deadline).await;
                    self.conn.await_server_close(deadline).await;
                }
                Err(failure.into())
            }
        }
    }

    /// Sends a text message (compressed when permessage-deflate was agreed).
    pub async fn send_text(&mut self, text: &str) -> Result<(), WsError> {
        self.check_open()?;
        let deadline = self.deadline();
        Ok(self
            .conn
            .send_message(OpCode::Text, text.as_bytes(), deadline)
            .await?)
    }

    /// Sends a binary message (compressed when permessage-deflate was agreed).
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<(), WsError> {
        self.check_open()?;
        let deadline = self.deadline();
        Ok(self
            .conn
            .send_message(OpCode::Binary, data, deadline)
            .await?)
    }

    /// Closes with `code` and `reason`: sends the close frame, reads until the server's
    /// close frame and its TCP close (messages still arriving are discarded), all within
    /// the timeout.
    pub async fn close(mut self, code: u16, reason: &str) -> Result<(), WsError> {
        self.check_open()?;
        let deadline = self.deadline();
        self.conn.send_close(Some(code), reason, deadline).await?;
        loop {
            match self.conn.receive(deadline).await {
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                // The server may drop the connection without answering.
                Err(f) if f.kind == ErrorKind::Closed => break,
                Err(f) => return Err(f.into()),
            }
        }
        self.conn.await_server_close(deadline).await;
        Ok(())
    }
}

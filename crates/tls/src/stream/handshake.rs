//! The handshake: rustls' unbuffered connection driven over the socket until it is done and
//! hands over the traffic secrets. rustls sees one record at a time, so whatever follows the
//! record that completes the handshake is left for the record layer in [`super`].

use std::io;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::ProtocolVersion;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::record::{self, RecordError};

/// Most handshake bytes buffered while waiting for a whole handshake message.
const MAX_HANDSHAKE_BYTES: usize = 256 * 1024;

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// rustls refused the peer (certificate, version, cipher suite, protocol error).
    #[error("{0}")]
    Tls(#[from] rustls::Error),
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection before the handshake finished.
    #[error("the peer closed the connection during the TLS handshake")]
    Eof,
    /// A handshake message would not fit in the handshake buffer (256 KiB).
    #[error("TLS handshake messages over {MAX_HANDSHAKE_BYTES} bytes")]
    TooLarge,
    /// The negotiated keys could not be used.
    #[error("{0}")]
    Record(#[from] RecordError),
}

impl From<HandshakeError> for io::Error {
    fn from(err: HandshakeError) -> Self {
        match err {
            HandshakeError::Io(e) => e,
            HandshakeError::Eof => Self::new(io::ErrorKind::UnexpectedEof, err.to_string()),
            other => Self::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

/// What the handshake settled, for logs and callers that branch on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// TLS 1.3 or 1.2.
    pub version: ProtocolVersion,
    /// The cipher suite.
    pub suite: rustls::CipherSuite,
    /// The ALPN protocol, if one was agreed.
    pub alpn: Option<Vec<u8>>,
}

/// A cipher suite's IANA name: rustls spells TLS 1.3 suites `TLS13_…`, the registry (and
/// OpenSSL's `-ciphersuites`, and browsers) `TLS_…`.
pub fn suite_name(suite: rustls::CipherSuite) -> String {
    let debug = format!("{suite:?}");
    match debug.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => debug,
    }
}

/// rustls' two unbuffered connection types, driven by one handshake loop.
pub(super) trait Unbuffered {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn handshaking(&self) -> bool;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
}

/// Bytes of a handshake in progress: what arrived (`incoming[..used]`) and what to send.
pub(super) struct HandshakeBuffers {
    pub(super) incoming: Vec<u8>,
    pub(super) used: usize,
    outgoing: Vec<u8>,
    /// Application data that arrived with the end of the handshake.
    pub(super) early_plain: Vec<u8>,
}

pub(super) fn negotiated(common: &rustls::CommonState) -> Result<Negotiated, HandshakeError> {
    let incomplete = || HandshakeError::Tls(rustls::Error::HandshakeNotComplete);
    Ok(Negotiated {
        version: common.protocol_version().ok_or_else(incomplete)?,
        suite: common
            .negotiated_cipher_suite()
            .ok_or_else(incomplete)?
            .suite(),
        alpn: common.alpn_protocol().map(<[u8]>::to_vec),
    })
}

/// Drives rustls through the handshake: encode and send its flights, read until it has a whole
/// message, until it is done and has nothing left to send.
pub(super) async fn handshake<C, IO>(
    conn: &mut C,
    io: &mut IO,
) -> Result<HandshakeBuffers, HandshakeError>
where
    C: Unbuffered,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut bufs = HandshakeBuffers {
        incoming: vec![0; record::MAX_RECORD],
        used: 0,
        outgoing: Vec::with_capacity(4096),
        early_plain: Vec::new(),
    };
    // rustls sees one more record at a time, never past the one that completes the handshake:
    // what follows (application data, a KeyUpdate, tickets) is the record layer's, and a
    // KeyUpdate rustls answered itself would leave its reply queued where nobody sends it.
    let mut fed = 0;
    loop {
        let UnbufferedStatus { discard, state } = conn.process(&mut bufs.incoming[..fed]);
        let mut need_read = false;
        let mut done = false;
        match state {
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                let start = bufs.outgoing.len();
                bufs.outgoing.resize(start + 4096, 0);
                loop {
                    match encode.encode(&mut bufs.outgoing[start..]) {
                        Ok(n) => {
                            bufs.outgoing.truncate(start + n);
                            break;
                        }
                        Err(EncodeError::InsufficientSize(e)) => {
                            bufs.outgoing.resize(start + e.required_size, 0);
                        }
                        Err(EncodeError::AlreadyEncoded) => {
                            bufs.outgoing.truncate(start);
                            break;
                        }
                    }
                }
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                io.write_all(&bufs.outgoing).await?;
                io.flush().await?;
                bufs.outgoing.clear();
                transmit.done();
            }
            Ok(ConnectionState::BlockedHandshake) => need_read = true,
            Ok(ConnectionState::WriteTraffic(_)) => {
                // A TLS 1.3 server may send before the client's Finished has arrived; the
                // keys are only handed over once the handshake is really complete.
                if conn.handshaking() {
                    need_read = true;
                } else {
                    done = true;
                }
            }
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                // The peer's first application data, in the same flight as its Finished.
                while let Some(record) = traffic.next_record() {
                    let record = record?;
                    if bufs.early_plain.len() + record.payload.len() > MAX_HANDSHAKE_BYTES {
                        return Err(HandshakeError::TooLarge);
                    }
                    bufs.early_plain.extend_from_slice(record.payload);
                }
            }
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                return Err(HandshakeError::Eof);
            }
            Ok(ConnectionState::ReadEarlyData(_)) => {
                // 0-RTT is never enabled by this crate's configs.
                return Err(HandshakeError::Tls(rustls::Error::General(
                    "unexpected early data".into(),
                )));
            }
            Ok(_) => {
                return Err(HandshakeError::Tls(rustls::Error::General(
                    "unexpected handshake state".into(),
                )));
            }
            Err(err) => {
                // rustls queued an alert saying why; send it, best effort.
                bufs.incoming.copy_within(discard..bufs.used, 0);
                bufs.used -= discard;
                send_pending_alert(conn, &mut bufs, io).await;
                return Err(err.into());
            }
        }
        bufs.incoming.copy_within(discard..bufs.used, 0);
        bufs.used -= discard;
        fed -= discard;
        if done {
            return Ok(bufs);
        }
        if need_read && fed < bufs.used {
            fed = next_record_end(&bufs.incoming[..bufs.used], fed);
            continue;
        }
        if need_read {
            if bufs.used == bufs.incoming.len() {
                if bufs.incoming.len() >= MAX_HANDSHAKE_BYTES {
                    return Err(HandshakeError::TooLarge);
                }
                let grown = (bufs.incoming.len() * 2).min(MAX_HANDSHAKE_BYTES);
                bufs.incoming.resize(grown, 0);
            }
            let n = io.read(&mut bufs.incoming[bufs.used..]).await?;
            if n == 0 {
                return Err(HandshakeError::Eof);
            }
            bufs.used += n;
            fed = next_record_end(&bufs.incoming[..bufs.used], fed);
        }
    }
}

/// Where the record starting at `from` ends, or the end of `buf` if it is not all there.
fn next_record_end(buf: &[u8], from: usize) -> usize {
    match buf.get(from..from + record::HEADER_LEN) {
        Some(header) => {
            let len = record::HEADER_LEN + usize::from(u16::from_be_bytes([header[3], header[4]]));
            (from + len).min(buf.len())
        }
        None => buf.len(),
    }
}

/// After a handshake error rustls has an alert ready: encode it and send it.
async fn send_pending_alert<C, IO>(conn: &mut C, bufs: &mut HandshakeBuffers, io: &mut IO)
where
    C: Unbuffered,
    IO: AsyncWrite + Unpin,
{
    bufs.outgoing.clear();
    if let Ok(ConnectionState::EncodeTlsData(mut encode)) =
        conn.process(&mut bufs.incoming[..bufs.used]).state
    {
        bufs.outgoing.resize(64, 0);
        if let Ok(n) = encode.encode(&mut bufs.outgoing) {
            let _ = io.write_all(&bufs.outgoing[..n]).await;
            let _ = io.flush().await;
        }
    }
}

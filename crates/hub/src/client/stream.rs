//! The hub's address and a connection to it: plain TCP, or rustls over TCP for `https://`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why talking to the hub failed before it answered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not one the client can use.
    #[error("{0}")]
    BadUrl(String),
    /// No TCP connection, a TLS failure, a reset, a timeout: worth retrying.
    #[error("{0}")]
    Connection(String),
}

/// Where the hub is: `http(s)://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl {
    /// `https`.
    pub tls: bool,
    /// The host as written (a name, an IPv4 address or an IPv6 address without brackets).
    pub host: String,
    /// The port (80/443 unless given).
    pub port: u16,
    /// A path prefix the hub is mounted under (empty, or `/hub` without a trailing slash).
    pub prefix: String,
}

impl HubUrl {
    /// Parses `http://localhost:4000` and the like; the error says what a valid one looks like.
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let bad = |why: &str| {
            ClientError::BadUrl(format!(
                "hub URL {text:?} {why}; write it like http://localhost:4000 or https://hub.example:4000"
            ))
        };
        let uri: Uri = text.parse().map_err(|_| bad("is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("must start with http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| bad("has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        Ok(Self {
            tls,
            host,
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// `host:port` as a Host header writes it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL of `path` (which starts with `/`) on the hub, with `ws(s)` instead of `http(s)`
    /// when `websocket`.
    pub fn url(&self, path: &str, websocket: bool) -> String {
        let scheme = match (self.tls, websocket) {
            (false, false) => "http",
            (true, false) => "https",
            (false, true) => "ws",
            (true, true) => "wss",
        };
        format!("{scheme}://{}{}{path}", self.authority(), self.prefix)
    }

    /// Opens a connection, TLS when the URL is `https` (then `tls` must be given), within
    /// `timeout`.
    pub(crate) async fn connect(
        &self,
        tls: Option<&Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<HubStream, ClientError> {
        let connect = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|err| {
                    ClientError::Connection(format!(
                        "cannot connect to {}: {err}",
                        self.authority()
                    ))
                })?;
            let _ = tcp.set_nodelay(true);
            if !self.tls {
                return Ok(HubStream::Plain(tcp));
            }
            let config = tls.ok_or_else(|| {
                ClientError::BadUrl("an https hub URL needs a TLS configuration".to_owned())
            })?;
            let name = ServerName::try_from(self.host.clone()).map_err(|_| {
                ClientError::BadUrl(format!("{:?} is not a valid TLS server name", self.host))
            })?;
            let stream = TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(|err| {
                    ClientError::Connection(format!(
                        "TLS with {} failed: {err} (`protolab certs check` explains certificate errors)",
                        self.authority()
                    ))
                })?;
            Ok(HubStream::Tls(Box::new(stream)))
        };
        tokio::time::timeout(timeout, connect).await.map_err(|_| {
            ClientError::Connection(format!(
                "no connection to {} within {timeout:?}",
                self.authority()
            ))
        })?
    }
}

/// A connection to the hub.
#[derive(Debug)]
pub(crate) enum HubStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for HubStream {
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

impl AsyncWrite for HubStream {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls() {
        let url = HubUrl::parse("http://localhost:4000").expect("valid");
        assert_eq!(
            (url.tls, url.host.as_str(), url.port, url.prefix.as_str()),
            (false, "localhost", 4000, "")
        );
        assert_eq!(
            url.url("/api/publish", false),
            "http://localhost:4000/api/publish"
        );
        let url = HubUrl::parse("https://[::1]/hub/").expect("valid");
        assert_eq!(
            (url.tls, url.port, url.prefix.as_str()),
            (true, 443, "/hub")
        );
        assert_eq!(
            url.url("/connection/ws", true),
            "wss://[::1]:443/hub/connection/ws"
        );
        for bad in ["", "localhost:4000", "ftp://x", "http://", "http://h/?a=1"] {
            assert!(HubUrl::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}

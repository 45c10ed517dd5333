//! The TLS part of a probe: a rustls client that records the chain and any stapled OCSP
//! response while WebPki decides, the negotiated facts, the same diagnosis as `certs check`,
//! and a second handshake to see whether the server resumes the TLS session.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use super::report::{ms, TlsFacts};

/// What the server presented during a handshake.
#[derive(Debug, Default)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    ocsp: Vec<u8>,
}

/// Records the chain and OCSP response, then lets WebPki decide (or, with `--insecure`,
/// accepts whatever WebPki said, so the probe can go on past a bad certificate).
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    insecure: bool,
    seen: Mutex<Seen>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
            seen.ocsp = ocsp_response.to_vec();
        }
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS client for one probe: its config (shared by the resumption check, so the second
/// handshake can use the first one's ticket) and what it trusts.
pub(super) struct Client {
    config: Arc<rustls::ClientConfig>,
    recorder: Arc<Recorder>,
    roots: protolab_tls::Roots,
    server_name: String,
}

/// A failed handshake, with the facts gathered before it failed.
pub(super) struct Failed {
    /// What is known (the chain's diagnosis, when the server sent one).
    pub(super) facts: TlsFacts,
    /// In words.
    pub(super) error: String,
}

impl Client {
    /// A client trusting `roots`, offering `alpn`, checking the certificate for `server_name`.
    pub(super) fn new(
        roots: protolab_tls::Roots,
        server_name: &str,
        alpn: &[&[u8]],
        insecure: bool,
    ) -> anyhow::Result<Self> {
        let provider = protolab_tls::provider();
        let inner = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots.root_store()),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|err| {
            anyhow::anyhow!(
                "no usable trusted root ({}): {err}; pass --cacert FILE",
                roots.describe()
            )
        })?;
        let recorder = Arc::new(Recorder {
            inner,
            insecure,
            seen: Mutex::new(Seen::default()),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(protolab_tls::VERSIONS)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(&recorder) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
            recorder,
            roots,
            server_name: server_name.to_owned(),
        })
    }

    fn name(&self) -> Result<ServerName<'static>, String> {
        ServerName::try_from(self.server_name.clone())
            .map_err(|_| format!("`{}` is not a valid TLS server name", self.server_name))
    }

    /// Runs the handshake on `tcp` within `timeout` and returns the stream with its facts.
    pub(super) async fn handshake(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, TlsFacts), Failed> {
        let name = self.name().map_err(|error| Failed {
            facts: TlsFacts::default(),
            error,
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, connector.connect(name, tcp)).await;
        let took = started.elapsed();
        let mut facts = TlsFacts {
            handshake_ms: ms(took),
            server_name: self.server_name.clone(),
            ..TlsFacts::default()
        };
        {
            let seen = self
                .recorder
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            facts.ocsp_stapled = !seen.ocsp.is_empty();
            if !seen.chain.is_empty() {
                facts.certificate =
                    protolab_tls::check_chain(&seen.chain, &self.server_name, &self.roots).ok();
            }
        }
        match result {
            Ok(Ok(stream)) => {
                let conn = stream.get_ref().1;
                facts.version = conn.protocol_version().map(version_name);
                facts.cipher = conn
                    .negotiated_cipher_suite()
                    .map(|s| protolab_tls::stream::suite_name(s.suite()));
                facts.alpn = conn
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                Ok((stream, facts))
            }
            Ok(Err(err)) => {
                let error = match err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    Some(tls) => protolab_tls::describe_handshake_error(tls),
                    None if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                        "the server closed the connection during the TLS handshake (does it speak TLS on this port? is the SNI name one it serves?)".to_owned()
                    }
                    None => format!("the TLS handshake failed: {err}"),
                };
                Err(Failed { facts, error })
            }
            Err(_) => Err(Failed {
                facts,
                error: format!(
                    "the TLS handshake did not finish within {}: the server does not answer a ClientHello (is this port TLS?)",
                    humantime::format_duration(timeout)
                ),
            }),
        }
    }

    /// Opens a second connection to `addr` and reports whether its handshake resumed the
    /// TLS session of the first (rustls keeps the ticket in the shared config's cache).
    pub(super) async fn resumes(&self, addr: SocketAddr, timeout: Duration) -> Option<bool> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        let name = self.name().ok()?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let mut stream = tokio::time::timeout(timeout, connector.connect(name, tcp))
            .await
            .ok()?
            .ok()?;
        let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let _ =
            tokio::time::timeout(timeout, tokio::io::AsyncWriteExt::shutdown(&mut stream)).await;
        Some(resumed)
    }
}

/// OpenSSL's spelling, as `openssl s_client` prints it: `TLSv1.3`.
fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    }
}

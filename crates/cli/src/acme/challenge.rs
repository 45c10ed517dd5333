//! The challenge responders protolab runs itself while an order is open: http-01 (a plain HTTP
//! listener answering `/.well-known/acme-challenge/TOKEN`) and tls-alpn-01 (RFC 8737: a TLS
//! listener that, for a client offering only `acme-tls/1`, presents a self-signed certificate
//! for the domain carrying the id-pe-acmeIdentifier extension); for dns-01, the user's hook
//! command publishes and clears the TXT records (protolab is no DNS server).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use protolab_tls::rcgen;
use protolab_tls::rustls;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::ChallengeSpec;

/// The ALPN protocol of tls-alpn-01 (RFC 8737 section 6.2).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// How long one validation connection may take; the CA connects, asks, and leaves.
const CONNECTION_LIMIT: Duration = Duration::from_secs(10);

/// How long a `clear` run of the dns-01 hook may take (a `set` run is bounded by the order's
/// own timeout).
const HOOK_CLEAR_LIMIT: Duration = Duration::from_secs(30);

/// How much of a failed hook's stderr is shown.
const HOOK_STDERR_SHOWN: usize = 600;

/// A running responder; listeners stop when dropped, dns-01 records are removed by
/// [`Responder::finish`].
pub struct Responder {
    answers: Answers,
    stop: CancellationToken,
    addr: Option<SocketAddr>,
}

enum Answers {
    /// token → key authorization.
    Http(Arc<Mutex<HashMap<String, String>>>),
    /// domain (lower case) → validation certificate.
    TlsAlpn(Arc<Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>>),
    /// The hook, and the (domain, TXT value) pairs it published.
    Dns {
        command: String,
        published: Mutex<Vec<(String, String)>>,
    },
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Responder {
    /// Binds the responder's address and starts answering (nothing yet: add answers with
    /// [`Responder::answer`]).
    pub async fn start(spec: &ChallengeSpec) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let (answers, addr) = match spec {
            ChallengeSpec::Http01 { addr } => {
                let listener = bind(*addr, "--http-01").await?;
                let addr = listener.local_addr().unwrap_or(*addr);
                let tokens = Arc::new(Mutex::new(HashMap::new()));
                tokio::spawn(serve_http(listener, Arc::clone(&tokens), stop.clone()));
                (Answers::Http(tokens), Some(addr))
            }
            ChallengeSpec::TlsAlpn01 { addr } => {
                let listener = bind(*addr, "--tls-alpn-01").await?;
                let addr = listener.local_addr().unwrap_or(*addr);
                let certs = Arc::new(Mutex::new(HashMap::new()));
                let config = alpn_config(Arc::clone(&certs))?;
                tokio::spawn(serve_tls_alpn(listener, config, stop.clone()));
                (Answers::TlsAlpn(certs), Some(addr))
            }
            ChallengeSpec::Dns01Hook { command } => (
                Answers::Dns {
                    command: command.clone(),
                    published: Mutex::new(Vec::new()),
                },
                None,
            ),
        };
        Ok(Self {
            answers,
            stop,
            addr,
        })
    }

    /// Who answers, for messages: the listener's address, or the hook.
    pub fn describe(&self) -> String {
        match (&self.answers, self.addr) {
            (Answers::Dns { command, .. }, _) => format!("the --dns-01-hook `{command}`"),
            (_, Some(addr)) => format!("protolab's responder on {addr}"),
            (_, None) => "protolab's responder".to_owned(),
        }
    }

    /// Starts answering the challenge for `domain` with `token` and its key authorization; for
    /// dns-01, runs the hook and returns once it says the record is published.
    pub async fn answer(
        &self,
        domain: &str,
        token: &str,
        key_authorization: &instant_acme::KeyAuthorization,
    ) -> anyhow::Result<()> {
        match &self.answers {
            Answers::Http(tokens) => {
                tokens
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(token.to_owned(), key_authorization.as_str().to_owned());
            }
            Answers::TlsAlpn(certs) => {
                let cert = validation_cert(domain, key_authorization.as_str())?;
                certs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(domain.to_ascii_lowercase(), cert);
            }
            Answers::Dns { command, published } => {
                let value = key_authorization.dns_value();
                run_hook(command, "set", domain, &value).await?;
                published
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((domain.to_owned(), value));
            }
        }
        Ok(())
    }

    /// Stops answering; for dns-01, runs the hook to clear each record it published (a failure
    /// there is a warning: the certificate is not affected).
    pub async fn finish(self) {
        self.stop.cancel();
        if let Answers::Dns { command, published } = &self.answers {
            let records =
                std::mem::take(&mut *published.lock().unwrap_or_else(PoisonError::into_inner));
            for (domain, value) in records {
                let cleared = tokio::time::timeout(
                    HOOK_CLEAR_LIMIT,
                    run_hook(command, "clear", &domain, &value),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "did not finish within {HOOK_CLEAR_LIMIT:?}"
                    ))
                });
                if let Err(err) = cleared {
                    eprintln!("warning: clearing the dns-01 record of {domain}: {err:#}; remove it by hand");
                }
            }
        }
    }
}

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the challenge: pick a free address with {flag} ADDR")
    })
}

/// `_acme-challenge.DOMAIN` (a wildcard's record is its base domain's, RFC 8555 section 8.4).
fn txt_name(domain: &str) -> String {
    format!("_acme-challenge.{}", domain.trim_start_matches("*."))
}

/// Runs the dns-01 hook for one record; the values go through the environment, never through
/// the shell's parsing.
async fn run_hook(command: &str, action: &str, domain: &str, value: &str) -> anyhow::Result<()> {
    let name = txt_name(domain);
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PROTOLAB_ACME_ACTION", action)
        .env("PROTOLAB_ACME_DOMAIN", domain)
        .env("PROTOLAB_ACME_TXT_NAME", &name)
        .env("PROTOLAB_ACME_TXT_VALUE", value)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("--dns-01-hook: cannot run `sh -c {command}`"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        // The end of it, cut at a character boundary.
        let from = stderr.len().saturating_sub(HOOK_STDERR_SHOWN);
        let from = (from..=stderr.len())
            .find(|&i| stderr.is_char_boundary(i))
            .unwrap_or(stderr.len());
        let shown = &stderr[from..];
        anyhow::bail!(
            "--dns-01-hook `{command}` failed to {action} the TXT record {name} ({}){}{}",
            out.status,
            if shown.is_empty() { "" } else { ": " },
            shown
        );
    }
    Ok(())
}

async fn serve_http(
    listener: TcpListener,
    tokens: Arc<Mutex<HashMap<String, String>>>,
    stop: CancellationToken,
) {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::get;

    type Tokens = Arc<Mutex<HashMap<String, String>>>;
    async fn answer(
        State(tokens): State<Tokens>,
        Path(token): Path<String>,
    ) -> (StatusCode, String) {
        let found = tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&token)
            .cloned();
        match found {
            Some(key_authorization) => (StatusCode::OK, key_authorization),
            None => (StatusCode::NOT_FOUND, "no such challenge\n".to_owned()),
        }
    }
    let app = axum::Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer))
        .with_state(tokens);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(err) = served {
        tracing::warn!(%err, "the http-01 responder stopped");
    }
}

/// Validation certificates by SNI; a client without SNI or with another name gets none (and
/// the handshake fails, as RFC 8737 wants).
#[derive(Debug)]
struct ByDomain(Arc<Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>>);

impl rustls::server::ResolvesServerCert for ByDomain {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let offers_acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if !offers_acme {
            return None;
        }
        let name = hello.server_name()?.to_ascii_lowercase();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .cloned()
    }
}

fn alpn_config(
    certs: Arc<Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(protolab_tls::provider())
        .with_protocol_versions(protolab_tls::VERSIONS)
        .context("building the tls-alpn-01 responder's TLS configuration")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ByDomain(certs)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    // protolab_tls::stream, which every protolab TLS listener runs on, takes the keys over.
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}

async fn serve_tls_alpn(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(err) => {
                    tracing::debug!(%err, "tls-alpn-01 accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let config = Arc::clone(&config);
        tokio::spawn(async move {
            // The handshake is the whole validation; the CA closes the connection after it.
            let handshake = protolab_tls::stream::accept(config, tcp);
            if let Ok(Ok(mut tls)) = tokio::time::timeout(CONNECTION_LIMIT, handshake).await {
                use tokio::io::AsyncWriteExt as _;
                let _ = tokio::time::timeout(CONNECTION_LIMIT, tls.shutdown()).await;
            }
        });
    }
}

/// RFC 8737 section 3: self-signed, the domain as its only SAN, and a critical
/// id-pe-acmeIdentifier extension holding SHA-256 of the key authorization.
fn validation_cert(
    domain: &str,
    key_authorization: &str,
) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
    let digest = Sha256::digest(key_authorization.as_bytes());
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])
        .context("building the tls-alpn-01 validation certificate")?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&digest)];
    let key = rcgen::KeyPair::generate().context("generating the validation key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the tls-alpn-01 validation certificate")?;
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing_key = protolab_tls::provider()
        .key_provider
        .load_private_key(key_der)
        .context("loading the validation key")?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}

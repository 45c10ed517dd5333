//! rustls configurations for the lab's servers and clients.
//!
//! Every config is built with the *ring* provider explicitly (never the process-wide default, so
//! two crates picking different providers cannot make this panic) and allows TLS 1.2 and 1.3,
//! the only versions rustls implements.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, KeyLog, RootCertStore, ServerConfig};

use crate::ca::{Ca, Leaf};
use crate::{Error, Result};

/// The provider every config in this crate uses: *ring*, with AES-128-GCM preferred.
///
/// rustls lists AES-256-GCM first. AES-128-GCM is what Chrome and Firefox offer first on
/// hardware with AES instructions: it is as safe against every practical attack and does 10
/// AES rounds instead of 14, which shows on bulk WSS traffic (16 KiB echoes spend most of their
/// server time in AEAD). ChaCha20-Poly1305 stays available for clients without AES hardware.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::CipherSuite as S;
    let mut provider = rustls::crypto::ring::default_provider();
    let rank = |suite: S| match suite {
        S::TLS13_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384 => 1,
        S::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 3,
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 4,
        _ => 5,
    };
    // A stable sort keeps ring's order within a rank (ECDSA before RSA).
    provider.cipher_suites.sort_by_key(|s| rank(s.suite()));
    Arc::new(provider)
}

/// TLS 1.3 first, then 1.2.
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Options shared by server and client configs. The default is no ALPN and no key log.
#[derive(Clone, Default)]
pub struct Options {
    /// ALPN protocols to offer/accept, most preferred first, e.g. `[b"h2", b"http/1.1"]`.
    pub alpn: Vec<Vec<u8>>,
    /// Where to send TLS secrets (NSS key log format) so captures can be decrypted. `None`
    /// (the default) logs nothing.
    pub key_log: Option<Arc<dyn KeyLog>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field(
                "alpn",
                &self
                    .alpn
                    .iter()
                    .map(|p| String::from_utf8_lossy(p))
                    .collect::<Vec<_>>(),
            )
            .field("key_log", &self.key_log.is_some())
            .finish()
    }
}

impl Options {
    /// Options with these ALPN protocols and no key log.
    pub fn alpn(alpn: &[&[u8]]) -> Self {
        Self {
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            key_log: None,
        }
    }

    /// Turns key logging on.
    #[must_use]
    pub fn with_key_log(mut self, key_log: Arc<dyn KeyLog>) -> Self {
        self.key_log = Some(key_log);
        self
    }
}

/// A server config presenting `leaf` (chain and key), accepting `alpn` protocols, without key
/// logging and without client authentication.
pub fn server_config(leaf: &Leaf, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    server_config_with(leaf, &Options::alpn(alpn))
}

/// [`server_config`] with full [`Options`] (e.g. a key log).
pub fn server_config_with(leaf: &Leaf, options: &Options) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())?;
    config.alpn_protocols.clone_from(&options.alpn);
    // Pick from our order (AES-128-GCM first, see `provider`) rather than the client's:
    // OpenSSL-based clients (curl, Python) list AES-256 first, which costs the server ~40% more
    // AES work per record for no practical security gain. Every suite offered is AEAD and
    // forward-secret, so no client can be pushed onto a weak one.
    config.ignore_client_order = true;
    // `stream::accept` takes the traffic keys over from rustls once the handshake is done.
    config.enable_secret_extraction = true;
    if let Some(key_log) = &options.key_log {
        config.key_log = Arc::clone(key_log);
    }
    Ok(Arc::new(config))
}

/// A server config that picks its certificate by the name the client asks for (SNI): each
/// `(name, leaf)` in `by_name` serves that DNS name (compared without regard to case), and
/// `default` serves clients that send no SNI (every client connecting to an IP address) or an
/// unknown name — as HAProxy does with the first `crt` of a `bind` line.
pub fn server_config_sni(
    default: &Leaf,
    by_name: &[(String, Leaf)],
    options: &Options,
) -> Result<Arc<ServerConfig>> {
    server_config_slot(CertSlot::new(default)?, by_name, options)
}

/// [`server_config_sni`] with the default certificate in a [`CertSlot`], which can be replaced
/// while the server runs (a renewed ACME certificate): new handshakes get the new certificate,
/// connections already open keep theirs.
pub fn server_config_slot(
    default: Arc<CertSlot>,
    by_name: &[(String, Leaf)],
    options: &Options,
) -> Result<Arc<ServerConfig>> {
    let resolver = SniResolver {
        default,
        by_name: by_name
            .iter()
            .map(|(name, leaf)| Ok((name.to_ascii_lowercase(), certified_key(leaf)?)))
            .collect::<Result<_>>()?,
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols.clone_from(&options.alpn);
    // As in `server_config_with`: our cipher order, not the client's.
    config.ignore_client_order = true;
    // `stream::accept` takes the traffic keys over from rustls once the handshake is done.
    config.enable_secret_extraction = true;
    if let Some(key_log) = &options.key_log {
        config.key_log = Arc::clone(key_log);
    }
    Ok(Arc::new(config))
}

/// A leaf's chain with its key loaded by this crate's provider, as a resolver hands it out.
pub fn certified_key(leaf: &Leaf) -> Result<Arc<rustls::sign::CertifiedKey>> {
    let key = provider()
        .key_provider
        .load_private_key(leaf.key.clone_key())?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        leaf.chain.clone(),
        key,
    )))
}

/// A certificate that can be replaced while servers use it. rustls asks for the certificate
/// once per handshake, so a replacement reaches every new connection and none already open.
#[derive(Debug)]
pub struct CertSlot {
    current: RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl CertSlot {
    /// A slot holding `leaf`.
    pub fn new(leaf: &Leaf) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            current: RwLock::new(certified_key(leaf)?),
        }))
    }

    /// Serves `leaf` from the next handshake on.
    pub fn replace(&self, leaf: &Leaf) -> Result<()> {
        let next = certified_key(leaf)?;
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value is whole.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<rustls::sign::CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Certificates by SNI name, with a default.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertSlot>,
    by_name: std::collections::HashMap<String, Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        // DNS names compare without case (RFC 4343); rustls has already validated the name.
        let named = hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()));
        Some(named.map_or_else(|| self.default.current(), Arc::clone))
    }
}

/// One named group of trusted certificates.
#[derive(Debug, Clone)]
pub(crate) struct RootSource {
    /// e.g. `protolab CA at /home/a/.local/share/protolab/ca.pem`.
    pub(crate) label: String,
    pub(crate) certs: Vec<CertificateDer<'static>>,
}

/// What a client trusts: the protolab CA, CA files, the system roots, in any combination.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    pub(crate) sources: Vec<RootSource>,
}

impl Roots {
    /// Trusts nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the protolab CA.
    #[must_use]
    pub fn with_ca(mut self, ca: &Ca) -> Self {
        self.sources.push(RootSource {
            label: format!("protolab CA at {}", ca.cert_path().display()),
            certs: vec![ca.cert_der().clone()],
        });
        self
    }

    /// Adds every certificate in a PEM file (e.g. `--cacert ca.pem`).
    pub fn with_ca_file(mut self, path: &Path) -> Result<Self> {
        let certs = read_pem_certs(path)?;
        self.sources.push(RootSource {
            label: format!("CA file {}", path.display()),
            certs,
        });
        Ok(self)
    }

    /// Adds the operating system's trusted roots (via rustls-native-certs, which honours
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub fn with_system(mut self) -> Result<Self> {
        let loaded = rustls_native_certs::load_native_certs();
        if loaded.certs.is_empty() {
            let why = loaded
                .errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::NoRoots {
                detail: format!(
                    "the system trust store is empty or unreadable ({why}); on Debian/Ubuntu install `ca-certificates`, or pass a CA file"
                ),
            });
        }
        for err in &loaded.errors {
            tracing::debug!(%err, "skipping unreadable system root");
        }
        self.sources.push(RootSource {
            label: format!("system roots ({} certificates)", loaded.certs.len()),
            certs: loaded.certs,
        });
        Ok(self)
    }

    /// True if nothing is trusted.
    pub fn is_empty(&self) -> bool {
        self.sources.iter().all(|s| s.certs.is_empty())
    }

    /// What is trusted, for messages: `protolab CA at ... + system roots (140 certificates)`.
    pub fn describe(&self) -> String {
        if self.sources.is_empty() {
            return "nothing".to_owned();
        }
        self.sources
            .iter()
            .map(|s| s.label.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// A rustls root store with everything trusted. Certificates webpki cannot use as anchors
    /// are skipped with a debug log.
    pub fn root_store(&self) -> RootCertStore {
        let mut store = RootCertStore::empty();
        for source in &self.sources {
            let (_, bad) = store.add_parsable_certificates(source.certs.iter().cloned());
            if bad > 0 {
                tracing::debug!(source = %source.label, bad, "skipped unusable root certificates");
            }
        }
        store
    }
}

/// A client config trusting `roots`, no ALPN, no key log.
pub fn client_config(roots: &Roots) -> Result<Arc<ClientConfig>> {
    client_config_with(roots, &Options::default())
}

/// [`client_config`] with full [`Options`].
pub fn client_config_with(roots: &Roots, options: &Options) -> Result<Arc<ClientConfig>> {
    let store = roots.root_store();
    if store.is_empty() {
        return Err(Error::NoRoots {
            detail: format!("no usable root certificate among {}", roots.describe()),
        });
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols.clone_from(&options.alpn);
    // `stream::connect` takes the traffic keys over from rustls once the handshake is done.
    config.enable_secret_extraction = true;
    if let Some(key_log) = &options.key_log {
        config.key_log = Arc::clone(key_log);
    }
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file, in order; an error if there is none.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).map_err(|err| Error::io("read", path, err))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| Error::BadPem {
            path: PathBuf::from(path),
            problem: format!("cannot read the PEM certificates ({err}); is it a PEM file with -----BEGIN CERTIFICATE----- blocks?"),
        })?;
    if certs.is_empty() {
        return Err(Error::BadPem {
            path: path.to_owned(),
            problem: "no -----BEGIN CERTIFICATE----- block found; convert DER with `openssl x509 -inform der -in FILE -out FILE.pem`".into(),
        });
    }
    Ok(certs)
}

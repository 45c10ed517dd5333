//! Certificate diagnosis: why does a client reject this certificate, in plain words.
//!
//! The verdict comes from rustls' own [`WebPkiServerVerifier`], the same code a rustls client
//! runs, so "ok" here means a rustls client accepts it. Its error is then explained using the
//! decoded chain (which name was asked for, which the certificate has, the dates, ...).

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use serde::Serialize;

use crate::config::{provider, read_pem_certs, Roots, VERSIONS};
use crate::inspect::{self, rfc3339, CertInfo};
use crate::{Error, Result};

/// How long [`check_remote`] waits for the TCP connect and for each read during the handshake.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(10);

/// What is wrong with a certificate chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// The leaf signed itself and is not trusted.
    SelfSigned {
        /// Its subject.
        subject: String,
    },
    /// The chain does not lead to a trusted root.
    UnknownIssuer {
        /// The issuer nobody trusts (of the last certificate in the chain).
        issuer: String,
    },
    /// The certificate does not cover the name the client asked for.
    HostnameMismatch {
        /// The name asked for.
        expected: String,
        /// The names the certificate has.
        presented: Vec<String>,
    },
    /// A certificate in the chain has expired.
    Expired {
        /// Which certificate.
        subject: String,
        /// When it expired (RFC 3339).
        not_after: String,
        /// The current time (RFC 3339).
        now: String,
    },
    /// A certificate in the chain is not valid yet.
    NotYetValid {
        /// Which certificate.
        subject: String,
        /// When it becomes valid (RFC 3339).
        not_before: String,
        /// The current time (RFC 3339).
        now: String,
    },
    /// The leaf's extendedKeyUsage lacks serverAuth.
    MissingServerAuth {
        /// The purposes it does have.
        presented: Vec<String>,
    },
    /// The leaf is a CA certificate (basicConstraints CA:TRUE).
    CaCertAsLeaf {
        /// Its subject.
        subject: String,
    },
    /// Anything else rustls rejects.
    Other {
        /// rustls' description.
        detail: String,
    },
}

impl Problem {
    /// A short name: `self-signed`, `unknown issuer`, `hostname mismatch`, ...
    pub fn title(&self) -> &'static str {
        match self {
            Self::SelfSigned { .. } => "self-signed certificate",
            Self::UnknownIssuer { .. } => "unknown issuer",
            Self::HostnameMismatch { .. } => "hostname mismatch",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not yet valid",
            Self::MissingServerAuth { .. } => "not for TLS servers (no serverAuth)",
            Self::CaCertAsLeaf { .. } => "CA certificate used as server certificate",
            Self::Other { .. } => "rejected",
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// A rustls client would accept this chain for this name.
    pub ok: bool,
    /// What is wrong, if anything: the first of [`Diagnosis::problems`].
    pub problem: Option<Problem>,
    /// Everything found wrong: first the reason rustls refused the chain, then the other
    /// faults it did not get to (it stops at the first), e.g. a self-signed certificate that
    /// is also for the wrong name. Each needs its own fix.
    pub problems: Vec<Problem>,
    /// Plain-words explanation of each problem, in the same order: what it means and how to
    /// fix it.
    pub explanation: String,
    /// The name checked against.
    pub server_name: String,
    /// The presented chain, leaf first.
    pub chain: Vec<CertInfo>,
    /// Which trusted root the chain leads to, e.g. `protolab CA at ~/.local/share/protolab/ca.pem`
    /// or `system roots (140 certificates)`, when it verified.
    pub verified_by: Option<String>,
    /// Everything that was trusted for this check.
    pub trusted: String,
    /// For remote checks: the negotiated protocol version and cipher suite, when the handshake
    /// completed.
    pub connection: Option<String>,
}

/// Checks a chain (leaf first) for `server_name` against `roots`.
pub fn check_chain(
    chain: &[CertificateDer<'_>],
    server_name: &str,
    roots: &Roots,
) -> Result<Diagnosis> {
    check_chain_at(chain, server_name, roots, UnixTime::now())
}

/// [`check_chain`] at a given time.
pub fn check_chain_at(
    chain: &[CertificateDer<'_>],
    server_name: &str,
    roots: &Roots,
    now: UnixTime,
) -> Result<Diagnosis> {
    let name = parse_server_name(server_name)?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(Error::BadPem {
            path: "<chain>".into(),
            problem: "the chain is empty".into(),
        });
    };
    let infos = chain
        .iter()
        .map(|der| inspect::cert_info(der))
        .collect::<Result<Vec<_>>>()?;
    let verifier = verifier(roots)?;
    let leaf = leaf.clone().into_owned();
    let intermediates: Vec<CertificateDer<'static>> = intermediates
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    let verdict = verifier.verify_server_cert(&leaf, &intermediates, &name, &[], now);
    let leaf_trusted = roots.sources.iter().any(|s| s.certs.contains(&leaf));
    let mut problems = Vec::new();
    if let Err(err) = verdict {
        problems.push(classify(&err, &infos, server_name, now, leaf_trusted));
        for also in other_problems(&leaf, &infos, &name, server_name, now, leaf_trusted) {
            let kind = std::mem::discriminant(&also);
            if !problems.iter().any(|p| std::mem::discriminant(p) == kind) {
                problems.push(also);
            }
        }
    }
    let verified_by = if problems.is_empty() {
        anchor_label(chain, roots)
    } else {
        None
    };
    let explanation = if problems.is_empty() {
        explain(None, &infos, server_name, roots, verified_by.as_deref())
    } else {
        let each: Vec<String> = problems
            .iter()
            .map(|p| explain(Some(p), &infos, server_name, roots, None))
            .collect();
        each.join("\nAlso: ")
    };
    Ok(Diagnosis {
        ok: problems.is_empty(),
        problem: problems.first().cloned(),
        problems,
        explanation,
        server_name: server_name.to_owned(),
        chain: infos,
        verified_by,
        trusted: roots.describe(),
        connection: None,
    })
}

/// Checks the certificates in a PEM file (leaf first, then intermediates).
pub fn check_pem_file(path: &Path, server_name: &str, roots: &Roots) -> Result<Diagnosis> {
    let chain = read_pem_certs(path)?;
    check_chain(&chain, server_name, roots)
}

fn parse_server_name(server_name: &str) -> Result<ServerName<'static>> {
    let trimmed = server_name
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(trimmed.to_owned()).map_err(|_| Error::InvalidServerName {
        name: server_name.to_owned(),
    })
}

/// The WebPki verifier for `roots`. With nothing trusted, a throwaway root stands in so the
/// other checks (dates, usage, name) still run and the verdict is "unknown issuer".
fn verifier(roots: &Roots) -> Result<Arc<WebPkiServerVerifier>> {
    let mut store = roots.root_store();
    if store.is_empty() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key)?;
        store.add(cert.der().clone())?;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
        .build()
        .map_err(|err| Error::NoRoots {
            detail: err.to_string(),
        })
}

/// Maps a rustls verdict to a [`Problem`], using the decoded chain for the details.
fn classify(
    err: &rustls::Error,
    infos: &[CertInfo],
    server_name: &str,
    now: UnixTime,
    leaf_trusted: bool,
) -> Problem {
    let leaf = &infos[0];
    let now_text = unix_rfc3339(now);
    // Self-signed beats the generic "unknown issuer"/"CA as end entity" verdicts: it is the
    // actual reason and has its own fix.
    let self_signed = leaf.self_signed && !leaf_trusted;
    let rustls::Error::InvalidCertificate(cert_err) = err else {
        return Problem::Other {
            detail: err.to_string(),
        };
    };
    match cert_err {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let expired = infos
                .iter()
                .find(|i| parse_rfc3339(&i.not_after).is_some_and(|t| t < now.as_secs()))
                .unwrap_or(leaf);
            Problem::Expired {
                subject: expired.subject.clone(),
                not_after: expired.not_after.clone(),
                now: now_text,
            }
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            let early = infos
                .iter()
                .find(|i| parse_rfc3339(&i.not_before).is_some_and(|t| t > now.as_secs()))
                .unwrap_or(leaf);
            Problem::NotYetValid {
                subject: early.subject.clone(),
                not_before: early.not_before.clone(),
                now: now_text,
            }
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            Problem::HostnameMismatch {
                expected: server_name.to_owned(),
                presented: leaf.sans.clone(),
            }
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            if self_signed {
                Problem::SelfSigned {
                    subject: leaf.subject.clone(),
                }
            } else {
                Problem::MissingServerAuth {
                    presented: leaf.ext_key_usage.clone(),
                }
            }
        }
        _ if self_signed => Problem::SelfSigned {
            subject: leaf.subject.clone(),
        },
        CertificateError::UnknownIssuer => Problem::UnknownIssuer {
            issuer: infos.last().map_or_else(String::new, |i| i.issuer.clone()),
        },
        // webpki's CaUsedAsEndEntity arrives as `Other`; the decoded leaf says the same thing
        // without depending on webpki's error type.
        CertificateError::Other(other)
            if leaf.is_ca || format!("{other:?}").contains("CaUsedAsEndEntity") =>
        {
            Problem::CaCertAsLeaf {
                subject: leaf.subject.clone(),
            }
        }
        other => Problem::Other {
            detail: other_detail(other),
        },
    }
}

/// The faults of a rejected chain besides the one rustls stopped at, each checked on its own:
/// trust, CA as leaf, the name, the dates, the purpose.
fn other_problems(
    leaf_der: &CertificateDer<'_>,
    infos: &[CertInfo],
    name: &ServerName<'_>,
    server_name: &str,
    now: UnixTime,
    leaf_trusted: bool,
) -> Vec<Problem> {
    let leaf = &infos[0];
    let mut found = Vec::new();
    if leaf.self_signed && !leaf_trusted {
        found.push(Problem::SelfSigned {
            subject: leaf.subject.clone(),
        });
    }
    if leaf.is_ca {
        found.push(Problem::CaCertAsLeaf {
            subject: leaf.subject.clone(),
        });
    }
    let parsed = rustls::server::ParsedCertificate::try_from(leaf_der);
    if parsed.is_ok_and(|p| rustls::client::verify_server_name(&p, name).is_err()) {
        found.push(Problem::HostnameMismatch {
            expected: server_name.to_owned(),
            presented: leaf.sans.clone(),
        });
    }
    let now_secs = now.as_secs();
    if let Some(expired) = infos
        .iter()
        .find(|i| parse_rfc3339(&i.not_after).is_some_and(|t| t < now_secs))
    {
        found.push(Problem::Expired {
            subject: expired.subject.clone(),
            not_after: expired.not_after.clone(),
            now: unix_rfc3339(now),
        });
    }
    if let Some(early) = infos
        .iter()
        .find(|i| parse_rfc3339(&i.not_before).is_some_and(|t| t > now_secs))
    {
        found.push(Problem::NotYetValid {
            subject: early.subject.clone(),
            not_before: early.not_before.clone(),
            now: unix_rfc3339(now),
        });
    }
    // No extendedKeyUsage at all allows every purpose; a list must name serverAuth.
    let purposes = &leaf.ext_key_usage;
    if !purposes.is_empty() && !purposes.iter().any(|p| p == "serverAuth" || p == "any") {
        found.push(Problem::MissingServerAuth {
            presented: purposes.clone(),
        });
    }
    found
}

/// A failed TLS handshake in plain words: what the server did and what that usually means,
/// instead of rustls' variant names (`InvalidContentType`, `Other(OtherError(...))`).
pub fn describe_handshake_error(err: &rustls::Error) -> String {
    use rustls::InvalidMessage;
    match err {
        rustls::Error::InvalidCertificate(cert) => {
            format!("the server's certificate was refused: {}", certificate_reason(cert))
        }
        rustls::Error::InvalidMessage(
            InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
        ) => "the server did not answer with TLS: is it plain HTTP (or another protocol) on this port? Use http:// or ws://, or the TLS port".to_owned(),
        rustls::Error::AlertReceived(alert) => format!(
            "the server refused the handshake with the TLS alert {alert:?} (it may not support TLS 1.2/1.3 or these cipher suites, or want another SNI name)"
        ),
        rustls::Error::PeerIncompatible(why) => format!(
            "the server and protolab have no TLS version or cipher suite in common (protolab speaks TLS 1.2 and 1.3): {why:?}"
        ),
        other => other.to_string(),
    }
}

/// Why a certificate was refused, in words.
fn certificate_reason(err: &CertificateError) -> String {
    match err {
        CertificateError::UnknownIssuer => "no CA this client trusts signed it (unknown issuer): a self-signed certificate, or another machine's CA".to_owned(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => "it is not valid for the host name in the URL".to_owned(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "it has expired".to_owned(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "it is not valid yet (is a clock wrong?)".to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => "it is not for TLS servers (its extended key usage lacks serverAuth)".to_owned(),
        CertificateError::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => "it is a CA certificate, not a server certificate (was the server given ca.pem instead of its own certificate?)".to_owned(),
        other => other_detail(other),
    }
}

fn other_detail(err: &CertificateError) -> String {
    match err {
        CertificateError::BadSignature => "a signature in the chain does not verify: the certificate was altered, or signed by a different key that has the same name as the CA".to_owned(),
        CertificateError::BadEncoding => "a certificate in the chain is not valid DER".to_owned(),
        CertificateError::UnhandledCriticalExtension => "a certificate has a critical extension rustls does not understand".to_owned(),
        CertificateError::Revoked => "the certificate has been revoked".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The label of the root source that anchors a verified chain: the one holding a certificate
/// whose subject is the issuer of the chain's last certificate (or the certificate itself).
fn anchor_label(chain: &[CertificateDer<'_>], roots: &Roots) -> Option<String> {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let last = chain.last()?;
    let (_, top) = X509Certificate::from_der(last).ok()?;
    let issuer = top.issuer().as_raw();
    roots
        .sources
        .iter()
        .find(|source| {
            source.certs.iter().any(|root| {
                root.as_ref() == last.as_ref()
                    || X509Certificate::from_der(root)
                        .is_ok_and(|(_, r)| r.subject().as_raw() == issuer)
            })
        })
        .map(|source| source.label.clone())
}

fn explain(
    problem: Option<&Problem>,
    chain: &[CertInfo],
    server_name: &str,
    roots: &Roots,
    verified_by: Option<&str>,
) -> String {
    let trusted = roots.describe();
    let leaf = &chain[0];
    match problem {
        None => format!(
            "The certificate is valid for {server_name} until {}, and it chains to a trusted root ({}). Clients that trust the same root will connect without warnings.",
            leaf.not_after,
            verified_by.unwrap_or(&trusted)
        ),
        Some(Problem::SelfSigned { subject }) => format!(
            "The server's certificate ({subject}) is self-signed: it vouches for itself and no certificate authority you trust ({trusted}) signed it, so clients cannot tell it apart from an attacker's certificate. \
             Browsers show NET::ERR_CERT_AUTHORITY_INVALID, curl says \"self-signed certificate\" and Python \"certificate verify failed: self-signed certificate\". \
             Fix: serve a certificate from the protolab CA instead (`protolab certs issue {server_name}` and point the server at the files it prints), then trust the CA once (`protolab certs trust`). \
             For a quick test only, you can trust this one certificate directly, e.g. `curl --cacert <the certificate>`."
        ),
        Some(Problem::UnknownIssuer { issuer }) => format!(
            "The certificate chain does not lead to a root you trust. The last certificate the server sent was issued by \"{issuer}\", which is not among the trusted roots ({trusted}). \
             Either the server is using a certificate from a CA this client does not know (a private or development CA, e.g. another machine's protolab or mkcert CA), or it forgot to send an intermediate certificate. \
             Fix: if it is a private CA, give clients that CA's certificate (`curl --cacert ca.pem`, `NODE_EXTRA_CA_CERTS=ca.pem`, or `protolab certs check ... --cacert ca.pem` to confirm); if it is a public CA, configure the server with the full chain file (leaf followed by intermediates); \
             for the lab, issue a certificate from this machine's protolab CA with `protolab certs issue {server_name}`."
        ),
        Some(Problem::HostnameMismatch { expected, presented }) => {
            let names = if presented.is_empty() {
                "no subjectAltName at all (only a Common Name, which modern clients ignore)".to_owned()
            } else {
                presented.join(", ")
            };
            format!(
                "The certificate is not valid for the name you connected to. You asked for \"{expected}\", but the certificate only covers: {names}. \
                 Clients compare the host in the URL against the certificate's subjectAltName list; the Common Name does not count (RFC 6125), and a wildcard covers exactly one label (*.example.test covers a.example.test, not example.test or a.b.example.test). \
                 Fix: connect using one of the names above, or issue a certificate that includes \"{expected}\" (`protolab certs issue {expected} ...`, listing every name you use, including IP addresses like 127.0.0.1 and ::1)."
            )
        }
        Some(Problem::Expired { subject, not_after, now }) => format!(
            "The certificate {subject} expired at {not_after}; it is now {now}. Clients refuse expired certificates even if everything else is right. \
             If the expiry date looks wrong for a certificate you issued recently, check this machine's clock (`date -u`). \
             Fix: issue a new certificate (`protolab certs issue {server_name}`, or restart `protolab up`, which reissues leaves with less than 30 days left) and restart the server so it loads it."
        ),
        Some(Problem::NotYetValid { subject, not_before, now }) => format!(
            "The certificate {subject} only becomes valid at {not_before}; it is now {now}. Either the certificate was made on a machine whose clock is ahead, or this machine's clock is behind. \
             Fix: correct the clock (`timedatectl status`, enable NTP) on whichever machine is wrong, or issue a new certificate."
        ),
        Some(Problem::MissingServerAuth { presented }) => {
            let have = if presented.is_empty() { "none".to_owned() } else { presented.join(", ") };
            format!(
                "The certificate is not allowed to identify a TLS server. Its extended key usage lists {have}, but a server certificate needs serverAuth (\"TLS Web Server Authentication\"). \
                 This happens when a client certificate, or a code/email signing certificate, is installed on a server by mistake. \
                 Fix: issue a server certificate (`protolab certs issue {server_name}` includes serverAuth) and point the server at it."
            )
        }
        Some(Problem::CaCertAsLeaf { subject }) => format!(
            "The server presents a CA certificate ({subject}, basicConstraints CA:TRUE) as its own certificate. A CA certificate is for signing other certificates, not for identifying a server, so clients refuse it. \
             This usually means the server was pointed at ca.pem instead of the leaf certificate. \
             Fix: configure the server with a leaf certificate (`protolab certs issue {server_name}` prints the certificate and key paths) and give clients the CA instead."
        ),
        Some(Problem::Other { detail }) => format!(
            "A TLS client rejects this certificate: {detail}. Trusted roots for this check: {trusted}. \
             Fix: look at the chain below (`openssl x509 -noout -text` shows every field), or issue a fresh certificate with `protolab certs issue {server_name}`."
        ),
    }
}

fn unix_rfc3339(t: UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs).map_or_else(|_| secs.to_string(), rfc3339)
}

fn parse_rfc3339(text: &str) -> Option<u64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// A verifier that remembers the chain the server presented, then lets WebPki decide, so after
/// a failed handshake the chain can still be explained.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Vec<CertificateDer<'static>>>>,
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
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(chain);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
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

/// Connects to `addr` (`HOST:PORT`), performs a TLS handshake sending `server_name` as SNI (not
/// sent for IP addresses, per RFC 6066 §3), and diagnoses the chain the server presented against
/// `roots`. Blocking; every network step has a [`REMOTE_TIMEOUT`].
pub fn check_remote(addr: &str, server_name: &str, roots: &Roots) -> Result<Diagnosis> {
    let name = parse_server_name(server_name)?;
    let recorder = Arc::new(Recorder {
        inner: verifier(roots)?,
        seen: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&recorder) as Arc<dyn ServerCertVerifier>)
        .with_no_client_auth();
    let mut sock = connect(addr)?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let secs = REMOTE_TIMEOUT.as_secs();
    let handshake = loop {
        if !conn.is_handshaking() {
            break Ok(());
        }
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) if conn.is_handshaking() => {
                break Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            Ok(_) => {}
            Err(err) => break Err(err),
        }
    };
    let seen = recorder
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let connection = match &handshake {
        Ok(()) => Some(format!(
            "{} {}",
            conn.protocol_version()
                .map_or_else(|| "?".to_owned(), |v| format!("{v:?}")),
            conn.negotiated_cipher_suite()
                .map_or_else(|| "?".to_owned(), |s| format!("{:?}", s.suite())),
        )),
        Err(_) => None,
    };
    if let Some(chain) = seen {
        if handshake.is_ok() {
            // Say goodbye properly; failure here does not change the verdict.
            conn.send_close_notify();
            let _ = conn.complete_io(&mut sock);
        }
        let mut diagnosis = check_chain(&chain, server_name, roots)?;
        diagnosis.connection = connection;
        if let Err(err) = handshake {
            if diagnosis.ok {
                // The certificate is fine but the handshake still failed (e.g. the server's key
                // does not match its certificate).
                diagnosis.ok = false;
                let problem = Problem::Other {
                    detail: err.to_string(),
                };
                diagnosis.problem = Some(problem.clone());
                diagnosis.problems = vec![problem];
                diagnosis.explanation = format!(
                    "The certificate itself is fine, but the TLS handshake failed after it: {err}. Check that the server's private key matches its certificate."
                );
            }
        }
        return Ok(diagnosis);
    }
    let err = match handshake {
        Ok(()) => {
            return Err(Error::Handshake {
                addr: addr.to_owned(),
                detail: "the server sent no certificate".into(),
            })
        }
        Err(err) => err,
    };
    Err(match err.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            Error::HandshakeTimeout { addr: addr.to_owned(), secs }
        }
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => Error::Handshake {
            addr: addr.to_owned(),
            detail: "the server closed the connection during the handshake (it may not speak TLS on this port, or it refused our SNI name)".into(),
        },
        _ => match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. }) => {
                Error::NotTls { addr: addr.to_owned(), detail: sniff(&mut sock) }
            }
            Some(rustls::Error::AlertReceived(alert)) => Error::Handshake {
                addr: addr.to_owned(),
                detail: format!("the server sent the alert {alert:?} (it may not support TLS 1.2/1.3 or our cipher suites, or did not like the SNI name `{server_name}`)"),
            },
            _ => Error::Handshake { addr: addr.to_owned(), detail: err.to_string() },
        },
    })
}

/// Describes what a non-TLS server answered, e.g. `it answered "HTTP/1.1 400 Bad Request"`.
fn sniff(sock: &mut TcpStream) -> String {
    let mut buf = [0u8; 64];
    let n = sock.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    let first = text.lines().next().unwrap_or_default().trim();
    if first.is_empty() {
        // rustls' words here name its parser's state (`InvalidContentType`), not the server's.
        "its first bytes are not a TLS record".to_owned()
    } else {
        format!("it answered {first:?}")
    }
}

fn connect(addr: &str) -> Result<TcpStream> {
    let secs = REMOTE_TIMEOUT.as_secs();
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|err| Error::Resolve {
            addr: addr.to_owned(),
            detail: err.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::Resolve {
            addr: addr.to_owned(),
            detail: "no addresses".into(),
        });
    }
    let mut last = None;
    for sa in &addrs {
        match TcpStream::connect_timeout(sa, REMOTE_TIMEOUT) {
            Ok(sock) => {
                let timeouts = sock
                    .set_read_timeout(Some(REMOTE_TIMEOUT))
                    .and_then(|()| sock.set_write_timeout(Some(REMOTE_TIMEOUT)));
                timeouts.map_err(|source| Error::Network {
                    addr: addr.to_owned(),
                    source,
                })?;
                let _ = sock.set_nodelay(true);
                return Ok(sock);
            }
            Err(err) => last = Some((sa, err)),
        }
    }
    let Some((sa, err)) = last else {
        return Err(Error::Resolve {
            addr: addr.to_owned(),
            detail: "no addresses".into(),
        });
    };
    Err(match err.kind() {
        std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused {
            addr: sa.to_string(),
        },
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Error::ConnectTimeout {
            addr: sa.to_string(),
            secs,
        },
        _ => Error::Network {
            addr: sa.to_string(),
            source: err,
        },
    })
}

//! TLS client configuration: trust the given roots, or (for `--insecure`) any certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::Error;

/// What a TLS client trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Verify the server's chain against these roots and its name against the URL's host.
    Roots(protolab_tls::Roots),
    /// Accept any certificate for any name. The handshake signature is still checked (so the
    /// peer holds the key of the certificate it sent), but nothing ties that certificate to
    /// the host: anyone on the path can read the traffic. For labs with throwaway
    /// certificates only.
    Insecure,
}

/// A rustls client config for `trust`, using protolab's provider and protocol versions.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, Error> {
    match trust {
        Trust::Roots(roots) => Ok(protolab_tls::client_config(roots)?),
        Trust::Insecure => {
            let provider = protolab_tls::provider();
            let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_protocol_versions(protolab_tls::VERSIONS)
                .map_err(protolab_tls::Error::from)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny { provider }))
                .with_no_client_auth();
            // protolab_tls::stream takes the traffic keys over after the handshake.
            let mut config = config;
            config.enable_secret_extraction = true;
            Ok(Arc::new(config))
        }
    }
}

/// Accepts every certificate chain and name; verifies handshake signatures.
#[derive(Debug)]
struct AcceptAny {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

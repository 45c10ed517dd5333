//! Decoding certificates into plain fields for people and JSON.

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::{Error, Result};

/// The fields of a certificate a developer cares about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject DN, RFC 4514 style (`CN=localhost, O=...`).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// subjectAltName entries: DNS names as-is, IP addresses in their usual notation, others
    /// prefixed with their kind (`email:`, `URI:`).
    pub sans: Vec<String>,
    /// Start of validity, RFC 3339 UTC.
    pub not_before: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after: String,
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// SHA-256 of the DER, colon-separated upper-case hex (what browsers show).
    pub sha256_fingerprint: String,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// keyUsage bits, e.g. `Digital Signature`; empty if the extension is absent.
    pub key_usage: Vec<String>,
    /// extendedKeyUsage purposes: `serverAuth`, `clientAuth`, ... or dotted OIDs.
    pub ext_key_usage: Vec<String>,
    /// Issuer equals subject and the key identifiers (if present) agree: the certificate signs
    /// itself.
    pub self_signed: bool,
    /// Public key kind, e.g. `EC P-256` or `RSA 2048`.
    pub public_key: String,
}

/// Decodes one DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo> {
    let (_, x509) = X509Certificate::from_der(der).map_err(|err| Error::BadPem {
        path: "<certificate>".into(),
        problem: format!("not an X.509 certificate ({err})"),
    })?;
    Ok(info_of(&x509, der))
}

/// A certificate's validity period (notBefore, notAfter) as times, for renewal schedules.
pub fn validity(der: &[u8]) -> Result<(std::time::SystemTime, std::time::SystemTime)> {
    let (_, x509) = X509Certificate::from_der(der).map_err(|err| Error::BadPem {
        path: "<certificate>".into(),
        problem: format!("not an X.509 certificate ({err})"),
    })?;
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        let magnitude = std::time::Duration::from_secs(secs.unsigned_abs());
        if secs >= 0 {
            std::time::UNIX_EPOCH + magnitude
        } else {
            std::time::UNIX_EPOCH - magnitude
        }
    };
    let validity = x509.validity();
    Ok((at(validity.not_before), at(validity.not_after)))
}

pub(crate) fn info_of(x509: &X509Certificate<'_>, der: &[u8]) -> CertInfo {
    let mut sans = Vec::new();
    let mut key_usage = Vec::new();
    let mut ext_key_usage = Vec::new();
    let mut ski: Option<&[u8]> = None;
    let mut aki: Option<&[u8]> = None;
    for ext in x509.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                sans.extend(san.general_names.iter().map(general_name));
            }
            ParsedExtension::KeyUsage(ku) => {
                let flags = [
                    (ku.digital_signature(), "Digital Signature"),
                    (ku.non_repudiation(), "Non Repudiation"),
                    (ku.key_encipherment(), "Key Encipherment"),
                    (ku.data_encipherment(), "Data Encipherment"),
                    (ku.key_agreement(), "Key Agreement"),
                    (ku.key_cert_sign(), "Certificate Sign"),
                    (ku.crl_sign(), "CRL Sign"),
                    (ku.encipher_only(), "Encipher Only"),
                    (ku.decipher_only(), "Decipher Only"),
                ];
                key_usage.extend(
                    flags
                        .iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, n)| (*n).to_owned()),
                );
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let known = [
                    (eku.any, "any"),
                    (eku.server_auth, "serverAuth"),
                    (eku.client_auth, "clientAuth"),
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                    (eku.time_stamping, "timeStamping"),
                    (eku.ocsp_signing, "OCSPSigning"),
                ];
                ext_key_usage.extend(
                    known
                        .iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, n)| (*n).to_owned()),
                );
                ext_key_usage.extend(eku.other.iter().map(|oid| oid.to_id_string()));
            }
            ParsedExtension::SubjectKeyIdentifier(id) => ski = Some(id.0),
            ParsedExtension::AuthorityKeyIdentifier(id) => {
                aki = id.key_identifier.as_ref().map(|k| k.0)
            }
            _ => {}
        }
    }
    let same_name = x509.issuer().as_raw() == x509.subject().as_raw();
    let ids_agree = match (ski, aki) {
        (Some(s), Some(a)) => s == a,
        _ => true,
    };
    CertInfo {
        subject: x509.subject().to_string(),
        issuer: x509.issuer().to_string(),
        sans,
        not_before: rfc3339(x509.validity().not_before.to_datetime()),
        not_after: rfc3339(x509.validity().not_after.to_datetime()),
        serial: x509.raw_serial_as_string(),
        sha256_fingerprint: colon_hex(&Sha256::digest(der)),
        is_ca: x509.is_ca(),
        key_usage,
        ext_key_usage,
        self_signed: same_name && ids_agree,
        public_key: public_key_kind(x509),
    }
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => (*dns).to_owned(),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).unwrap_or_default())
                .to_string(),
            16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).unwrap_or_default())
                .to_string(),
            _ => format!("IP:{}", colon_hex(bytes)),
        },
        GeneralName::RFC822Name(mail) => format!("email:{mail}"),
        GeneralName::URI(uri) => format!("URI:{uri}"),
        other => format!("{other}"),
    }
}

fn public_key_kind(x509: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match x509.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => {
            let curve = x509
                .public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_owned(),
                    "1.3.132.0.34" => "P-384".to_owned(),
                    "1.3.132.0.35" => "P-521".to_owned(),
                    other => other.to_owned(),
                })
                .unwrap_or_else(|| format!("{} bits", point.key_size()));
            format!("EC {curve}")
        }
        Ok(PublicKey::Unknown(_)) | Ok(_) => x509.public_key().algorithm.algorithm.to_id_string(),
        Err(_) => "unparsable".to_owned(),
    }
}

/// RFC 3339 in UTC, whole seconds.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// `AB:CD:...`
pub(crate) fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
